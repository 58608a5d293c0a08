/* cpu.c — the CPU backend: host buffers, the SIMD kernels and the worker pool of a g4_compute. */
#include "backend/cpu.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static g4_compute *compute(g4_backend *b) { return ((cpu_backend *)b->impl)->c; }

/* ---- memory ---- */

/* Zeroed by calloc, which leaves large blocks as untouched pages: a buffer sized for the most rows a step may have
 * (the logits of 32 rows: 33 MB for Gemma's vocabulary) costs memory only as far as steps use it. The block's own
 * address sits just before the aligned one. */
static void *cpu_alloc(g4_backend *b, size_t bytes) {
    (void)b;
    if (bytes > SIZE_MAX - 72) return NULL;
    char *block = calloc(1, bytes + 72);
    if (!block) return NULL;
    char *p = (char *)(((uintptr_t)block + sizeof(void *) + 63) & ~(uintptr_t)63);
    ((void **)p)[-1] = block;
    return p;
}
static void cpu_release(g4_backend *b, void *buf) {
    (void)b;
    if (buf) free(((void **)buf)[-1]);
}
static void cpu_move(g4_backend *b, void *dst, const void *src, size_t bytes) {
    (void)b;
    if (dst != src) memcpy(dst, src, bytes);
}

static int cpu_reserve(g4_backend *b, int64_t max_k, g4_err *err) {
    if (g4_compute_reserve(compute(b), max_k))
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for products %lld wide", (long long)max_k);
    return 0;
}

static int cpu_safe_point(g4_backend *b) { return g4_compute_safe_point(compute(b)); }

/* ---- products and rows ---- */

static void cpu_matmul(g4_backend *b, const float *x, int64_t T, int64_t K, const g4_tensor *w, float *y) {
    g4_matmul(compute(b), x, T, K, w, y);
}
static void cpu_matmul_many(g4_backend *b, const float *x, int64_t T, int64_t K, int count, const g4_tensor *const w[],
                            float *const y[]) {
    g4_matmul_many(compute(b), x, T, K, count, w, y);
}
static void cpu_matmul_gelu(g4_backend *b, const float *x, int64_t T, int64_t K, const g4_tensor *gate,
                            const g4_tensor *up, float *g, float *u) {
    g4_matmul_gelu(compute(b), x, T, K, gate, up, g, u);
}

static void cpu_embed(g4_backend *b, const g4_embedding *table, const int32_t *ids, int64_t n, float scale,
                      float *out) {
    (void)b;
    for (int64_t r = 0; r < n; r++) {
        float *row = out + r * table->width;
        g4_embedding_row(table, ids[r], row);
        if (scale != 1.0f)
            for (int64_t i = 0; i < table->width; i++) row[i] *= scale;
    }
}

static void cpu_gather_rows(g4_backend *b, float *out, const float *src, const int32_t *idx, int64_t n,
                            int64_t width) {
    (void)b;
    for (int64_t r = 0; r < n; r++) memcpy(out + r * width, src + idx[r] * width, (size_t)width * sizeof(float));
}

static void cpu_rmsnorm(g4_backend *b, float *out, const float *x, const float *weight, int64_t rows, int64_t n,
                        float eps) {
    g4_rmsnorm_rows(compute(b)->ops, out, x, weight, rows, n, eps);
}

static void cpu_rope(g4_backend *b, float *x, int64_t rows, int64_t heads, int64_t D, int sections, const float *cos,
                     const float *sin) {
    (void)b;
    const int64_t width = D / sections, quarter = width / 2;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t h = 0; h < heads; h++)
            for (int s = 0; s < sections; s++) {
                float *p = x + (r * heads + h) * D + s * width;
                const float *cs = cos + r * (D / 2) + s * quarter, *sn = sin + r * (D / 2) + s * quarter;
                for (int64_t i = 0; i < quarter; i++) {
                    const float x1 = p[i], x2 = p[i + quarter];
                    p[i] = x1 * cs[i] - x2 * sn[i];
                    p[i + quarter] = x2 * cs[i] + x1 * sn[i];
                }
            }
}

static void cpu_add(g4_backend *b, float *y, const float *x, int64_t n, float scale) {
    (void)b;
    if (!x)
        for (int64_t i = 0; i < n; i++) y[i] *= scale;
    else if (scale == 1.0f)
        for (int64_t i = 0; i < n; i++) y[i] += x[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] = (y[i] + x[i]) * scale;
}

static void cpu_gelu_mul(g4_backend *b, float *g, int64_t ldg, const float *up, int64_t ldu, int64_t rows, int64_t n) {
    g4_compute *c = compute(b);
    if (ldg == n && (!up || ldu == n)) {
        g4_gelu_mul(c, g, up, rows * n);
        return;
    }
    for (int64_t r = 0; r < rows; r++) c->ops->gelu_mul(g + r * ldg, up ? up + r * ldu : NULL, n);
}

static void cpu_axpy(g4_backend *b, float *y, float a, const float *x, int64_t n) {
    (void)b;
    for (int64_t i = 0; i < n; i++) y[i] += x[i] * a;
}

static void cpu_scale_rows(g4_backend *b, float *x, int64_t rows, int64_t n, float s, const float *scale) {
    (void)b;
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * n;
        if (scale)
            for (int64_t i = 0; i < n; i++) row[i] = (row[i] * s) * scale[i];
        else
            for (int64_t i = 0; i < n; i++) row[i] *= s;
    }
}

static void cpu_add_bias(g4_backend *b, float *y, int64_t rows, int64_t n, const float *bias) {
    (void)b;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) y[r * n + i] += bias[i];
}

static float activate(int act, float x) {
    switch (act) {
    case G4_ACT_SILU: return x / (1.0f + expf(-x));
    case G4_ACT_GELU_TANH: return g4_gelu_tanh(x);
    case G4_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    default: return x > 0 ? x : 0;
    }
}

static void cpu_activation(g4_backend *b, float *x, int64_t n, int act) {
    (void)b;
    for (int64_t i = 0; i < n; i++) x[i] = activate(act, x[i]);
}

static void cpu_glu(g4_backend *b, float *out, const float *x, int64_t rows, int64_t n) {
    (void)b;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) out[r * n + i] = x[r * 2 * n + i] * (1.0f / (1.0f + expf(-x[r * 2 * n + n + i])));
}

static void cpu_clamp(g4_backend *b, float *out, const float *x, int64_t n, float lo, float hi) {
    (void)b;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        if (v < lo) v = lo;
        if (v > hi) v = hi;
        out[i] = v;
    }
}

static void cpu_softcap(g4_backend *b, float *x, int64_t n, float cap) { compute(b)->ops->softcap(x, n, cap); }

static void cpu_destroy(g4_backend *b) {
    cpu_backend *cb = b->impl;
    if (cb) {
        free(cb->scores), free(cb->parts), free(cb->lse), free(cb->tile);
        free(cb);
    }
    memset(b, 0, sizeof *b);
}

int g4_backend_cpu_init(g4_backend *b, g4_compute *c, g4_err *err) {
    memset(b, 0, sizeof *b);
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    cb->c = c;
    *b = (g4_backend){.name = "cpu",
                      .host_memory = 1,
                      .impl = cb,
                      .alloc = cpu_alloc,
                      .release = cpu_release,
                      .upload = cpu_move,
                      .download = cpu_move,
                      .copy = cpu_move,
                      .reserve = cpu_reserve,
                      .safe_point = cpu_safe_point,
                      .matmul = cpu_matmul,
                      .matmul_many = cpu_matmul_many,
                      .matmul_gelu = cpu_matmul_gelu,
                      .embed = cpu_embed,
                      .gather_rows = cpu_gather_rows,
                      .rmsnorm = cpu_rmsnorm,
                      .rope = cpu_rope,
                      .add = cpu_add,
                      .gelu_mul = cpu_gelu_mul,
                      .clamp = cpu_clamp,
                      .softcap = cpu_softcap,
                      .axpy = cpu_axpy,
                      .scale_rows = cpu_scale_rows,
                      .add_bias = cpu_add_bias,
                      .activation = cpu_activation,
                      .glu = cpu_glu,
                      .depthwise_conv = g4_cpu_depthwise_conv,
                      .kv_write = g4_cpu_kv_write,
                      .attention = g4_cpu_attention,
                      .local_attention = g4_cpu_local_attention,
                      .conv2d = g4_cpu_conv2d,
                      .destroy = cpu_destroy};
    return 0;
}
