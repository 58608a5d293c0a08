/* kernels.c — variant selection, the blocked matrix product, and the small row-wise ops. */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const g4_kernel_ops *g4_kernels_best(void) {
    const char *force = getenv("GEMMA4C_KERNELS");
    if (force && strcmp(force, "portable") == 0) return g4_kernels_portable();
    const g4_kernel_ops *ops = g4_kernels_avx2();
    return ops ? ops : g4_kernels_portable();
}

/* Weight rows are converted to float in blocks small enough to stay in cache while every activation row
 * passes over them: the weight is read from memory once per call whatever T is. */
enum { ROW_BLOCK = 16 };

typedef struct matmul_job {
    const g4_kernel_ops *ops;
    const float *x;
    int64_t T, K, N;
    const unsigned char *w;
    size_t row_bytes;
    g4_dtype dt;
    float *y;
    float *scratch; /* per worker: ROW_BLOCK * K floats */
} matmul_job;

static void matmul_range(void *ctx, int64_t begin, int64_t end, int worker) {
    matmul_job *j = ctx;
    float *wf = j->scratch + (size_t)worker * ROW_BLOCK * (size_t)j->K;
    for (int64_t blk = begin; blk < end; blk++) {
        int64_t n0 = blk * ROW_BLOCK, n1 = n0 + ROW_BLOCK < j->N ? n0 + ROW_BLOCK : j->N;
        for (int64_t n = n0; n < n1; n++)
            j->ops->to_f32(wf + (n - n0) * j->K, j->w + (size_t)n * j->row_bytes, j->dt, j->K);
        for (int64_t t = 0; t < j->T; t++) {
            const float *xr = j->x + t * j->K;
            float *yr = j->y + t * j->N;
            for (int64_t n = n0; n < n1; n++) yr[n] = j->ops->dot(xr, wf + (n - n0) * j->K, j->K);
        }
    }
}

int g4_compute_reserve(g4_compute *c, int64_t max_k) {
    if (max_k <= c->max_k) return 0;
    float *scratch = malloc((size_t)g4_pool_size(c->pool) * ROW_BLOCK * (size_t)max_k * sizeof(float));
    /* Quantized products need K to be a multiple of 32; the scratch is sized for the widest such K. */
    int64_t qk = (max_k + 31) / 32 * 32;
    void *qscratch = malloc(g4_qmatmul_scratch_bytes(c->qops, c->pool, G4_QMATMUL_ROWS, qk));
    if (!scratch || !qscratch) {
        free(scratch);
        free(qscratch);
        return -1;
    }
    free(c->scratch);
    free(c->qscratch);
    c->scratch = scratch;
    c->qscratch = qscratch;
    c->max_k = max_k;
    return 0;
}

int g4_compute_init(g4_compute *c, int n_threads, int64_t max_k) {
    memset(c, 0, sizeof *c);
    c->ops = g4_kernels_best();
    c->qops = g4_quant_ops_best();
    c->pool = g4_pool_create(n_threads);
    if (!c->pool || g4_compute_reserve(c, max_k)) {
        g4_compute_free(c);
        return -1;
    }
    return 0;
}

void g4_compute_free(g4_compute *c) {
    g4_pool_destroy(c->pool);
    free(c->scratch);
    free(c->qscratch);
    memset(c, 0, sizeof *c);
}

void g4_matmul(g4_compute *c, const float *x, int64_t T, int64_t K, const g4_tensor *w, float *y) {
    int64_t N = w->shape[0];
    int qt = g4_quant_type(w->dtype);
    if (c->observe) c->observe(c->observe_ctx, w, x, T, K);
    if (qt >= 0) {
        for (int64_t t0 = 0; t0 < T; t0 += G4_QMATMUL_ROWS) {
            int64_t rows = T - t0 < G4_QMATMUL_ROWS ? T - t0 : G4_QMATMUL_ROWS;
            g4_qmatmul(c->qops, c->pool, x + t0 * K, rows, K, w->data, qt, N, y + t0 * N, c->qscratch);
        }
        return;
    }
    matmul_job j = {c->ops, x, T, K, N, w->data, (size_t)K * g4_dtype_size(w->dtype), w->dtype, y, c->scratch};
    g4_pool_for(c->pool, (N + ROW_BLOCK - 1) / ROW_BLOCK, 1, matmul_range, &j);
}

/* The decode path of g4_matmul_many / g4_matmul_gelu (one row, or the rows of sessions decoding together): one
 * quantization of x, one loop over every weight's rows. 0 when it does not apply (too many rows or weights, a
 * weight that is not block-quantized, unequal heights in lockstep: g4_qmatmul_many refuses before any work); the
 * caller then runs one product per weight. */
static int fused_decode(g4_compute *c, const float *x, int64_t T, int64_t K, int count, const g4_tensor *const w[],
                        float *const y[], g4_qrows_fn rows_done, void *ctx) {
    g4_qmat mats[G4_QMAT_MAX] = {{0}};
    if (T > G4_QMATMUL_ROWS || count > G4_QMAT_MAX || c->observe) return 0; /* qscratch holds this many rows */
    for (int i = 0; i < count; i++) mats[i] = (g4_qmat){w[i]->data, g4_quant_type(w[i]->dtype), w[i]->shape[0], y[i]};
    return g4_qmatmul_many(c->qops, c->pool, x, T, K, mats, count, rows_done, ctx, c->qscratch) == 0;
}

void g4_matmul_many(g4_compute *c, const float *x, int64_t T, int64_t K, int count, const g4_tensor *const w[],
                    float *const y[]) {
    if (fused_decode(c, x, T, K, count, w, y, NULL, NULL)) return;
    for (int i = 0; i < count; i++) g4_matmul(c, x, T, K, w[i], y[i]);
}

typedef struct gated_rows {
    const g4_kernel_ops *ops;
    float *g;
    const float *u;
    int64_t T, N;
} gated_rows;

static void gelu_rows(void *ctx, int64_t n0, int64_t n1) {
    gated_rows *r = ctx;
    for (int64_t t = 0; t < r->T; t++) r->ops->gelu_mul(r->g + t * r->N + n0, r->u + t * r->N + n0, n1 - n0);
}

void g4_matmul_gelu(g4_compute *c, const float *x, int64_t T, int64_t K, const g4_tensor *gate, const g4_tensor *up,
                    float *g, float *u) {
    const g4_tensor *w[2] = {gate, up};
    float *const y[2] = {g, u};
    gated_rows r = {c->ops, g, u, T, gate->shape[0]};
    if (fused_decode(c, x, T, K, 2, w, y, gelu_rows, &r)) return;
    g4_matmul(c, x, T, K, gate, g);
    g4_matmul(c, x, T, K, up, u);
    g4_gelu_mul(c, g, u, T * gate->shape[0]);
}

enum { GELU_SPAN = 4096 }; /* values per pool item */

typedef struct gelu_job {
    const g4_kernel_ops *ops;
    float *g;
    const float *up;
} gelu_job;

static void gelu_range(void *ctx, int64_t begin, int64_t end, int worker) {
    gelu_job *j = ctx;
    (void)worker;
    for (int64_t s = begin; s < end; s++)
        j->ops->gelu_mul(j->g + s * GELU_SPAN, j->up ? j->up + s * GELU_SPAN : NULL, GELU_SPAN);
}

void g4_gelu_mul(g4_compute *c, float *g, const float *up, int64_t n) {
    const int64_t spans = n / GELU_SPAN, done = spans * GELU_SPAN;
    gelu_job j = {c->ops, g, up};
    g4_pool_for(c->pool, spans, 1, gelu_range, &j);
    c->ops->gelu_mul(g + done, up ? up + done : NULL, n - done);
}

void g4_rmsnorm_rows(const g4_kernel_ops *ops, float *out, const float *x, const float *weight, int64_t rows, int64_t n,
                     float eps) {
    for (int64_t r = 0; r < rows; r++) ops->rmsnorm(out + r * n, x + r * n, weight, n, eps);
}

void g4_rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps) {
    float ss = 0;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    if (weight)
        for (int64_t i = 0; i < n; i++) out[i] = x[i] * r * weight[i];
    else
        for (int64_t i = 0; i < n; i++) out[i] = x[i] * r;
}

float g4_gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

float g4_softmax(float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += (x[i] = expf(x[i] - m));
    float inv = 1.0f / s;
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
    return m + logf(s);
}
