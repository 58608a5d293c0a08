/* test_cuda_backend.c — the CUDA backend against the CPU backend op by op on random inputs, then the golden tiny
 * model (text, an image, an audio clip) through the decoder and the encoders on the GPU. */
#include "test.h"

#include <stdint.h>

#include "backend/backend.h"
#include "golden_util.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "model/audio.h"
#include "model/decoder.h"
#include "model/model.h"
#include "model/vision.h"

/* Tolerances, as max |gpu - cpu| over max |cpu|:
 * - EXACT: ops whose kernels spell out the CPU's roundings (residual arithmetic, RoPE, gathers, clamps, the
 *   depthwise and 3x3 convolutions' sums): the same bits are expected; the margin only covers a CPU build that
 *   contracts to fused multiply-adds.
 * - SUM: sums of products in another order (float products, norms, attention), and CUDA's tanhf/expf/erff, which
 *   are within an ulp or two of glibc's.
 * - GOLDEN: the tiny model against transformers, as tests/test_text_golden.c.
 * Whole quantized models are judged on the trained checkpoint (test_trained --device cuda): on random weights one
 * activation that rounds to another int8 value moves the logits by 1e-2, between two CPU kernels as much as between
 * CPU and GPU. */
#define EXACT 1e-6
#define SUM 2e-5
#define GOLDEN 1e-4

static g4_backend cpu, gpu;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float rnd(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 4503599627370496.0 - 1.0);
}
static float *rnd_vec(int64_t n, float scale) {
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = rnd() * scale;
    return v;
}

/* Host weights stay alive until the end: the GPU backend keys its copies by their address. */
static void *kept[1024];
static int n_kept;
static void *keep(void *p) {
    if (n_kept < (int)(sizeof kept / sizeof *kept)) kept[n_kept++] = p;
    return p;
}

/* One buffer on each backend holding the same values. */
typedef struct pair {
    float *c, *g;
    int64_t n;
} pair;

static pair mk(const float *host, int64_t n) {
    pair p = {cpu.alloc(&cpu, (size_t)n * sizeof(float)), gpu.alloc(&gpu, (size_t)n * sizeof(float)), n};
    if (!p.c || !p.g) {
        fprintf(stderr, "out of memory for %lld floats\n", (long long)n);
        exit(1);
    }
    if (host) {
        cpu.upload(&cpu, p.c, host, (size_t)n * sizeof(float));
        gpu.upload(&gpu, p.g, host, (size_t)n * sizeof(float));
    }
    return p;
}
static pair mk_rnd(int64_t n, float scale) {
    float *h = rnd_vec(n, scale);
    pair p = mk(h, n);
    free(h);
    return p;
}
static void drop(pair p) {
    cpu.release(&cpu, p.c);
    gpu.release(&gpu, p.g);
}

/* max |gpu - cpu| / max |cpu| over the pair (NaN where the CPU has none counts as infinitely far). */
static double pair_err(pair p) {
    float *g = malloc((size_t)p.n * sizeof *g);
    gpu.download(&gpu, g, p.g, (size_t)p.n * sizeof(float));
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < p.n; i++)
        if (!isnan(p.c[i])) scale = fmax(scale, fabs(p.c[i]));
    for (int64_t i = 0; i < p.n; i++) {
        if (isnan(p.c[i]) && isnan(g[i])) continue;
        const double e = fabs((double)g[i] - (double)p.c[i]);
        if (!(e <= worst)) worst = e;
    }
    free(g);
    return scale > 0 ? worst / scale : worst;
}

static void expect(const char *what, pair p, double tol) {
    g4_err err = {0};
    const int rc = g4_backend_cuda_sync(&gpu, &err);
    CHECK(rc == 0, "%s: %s", what, err.msg);
    const double e = pair_err(p);
    CHECK(e <= tol, "%s: max |gpu - cpu| %.3g of the largest value (tolerance %.1g)", what, e, tol);
}

/* ---- products ---- */

/* A weight [N, K] of dtype dt from random values. */
static g4_tensor weight(g4_dtype dt, int64_t N, int64_t K) {
    g4_tensor t = {.name = "test", .dtype = dt, .ndim = 2, .shape = {N, K}};
    const size_t rb = g4_row_bytes(dt, K);
    unsigned char *data = keep(malloc(rb * (size_t)N));
    float *row = rnd_vec(K, 0.5f);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++) row[k] = rnd() * 0.5f;
        unsigned char *dst = data + rb * (size_t)n;
        if (g4_quant_type(dt) >= 0) g4_quantize_row(g4_quant_type(dt), row, K, dst);
        else if (dt == G4_DT_F32) memcpy(dst, row, (size_t)K * sizeof(float));
        else
            for (int64_t k = 0; k < K; k++) {
                uint16_t h = dt == G4_DT_BF16 ? g4_f32_to_bf16(row[k]) : g4_f32_to_f16(row[k]);
                memcpy(dst + 2 * k, &h, 2);
            }
    }
    free(row);
    t.data = data;
    t.nbytes = rb * (size_t)N;
    return t;
}

static void check_matmul(void) {
    const g4_dtype dts[] = {G4_DT_F32, G4_DT_BF16, G4_DT_F16, G4_DT_Q8, G4_DT_Q4, G4_DT_Q6};
    const int64_t Ts[] = {1, 3, 8, 13, 70};
    char what[128];
    for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
        const int64_t N = 67, K = 96;
        g4_tensor w = weight(dts[d], N, K);
        for (size_t i = 0; i < sizeof Ts / sizeof *Ts; i++) {
            const int64_t T = Ts[i];
            pair x = mk_rnd(T * K, 2.0f), y = mk(NULL, T * N);
            cpu.matmul(&cpu, x.c, T, K, &w, y.c);
            gpu.matmul(&gpu, x.g, T, K, &w, y.g);
            snprintf(what, sizeof what, "matmul %s %lldx%lld, %lld rows", g4_dtype_name(dts[d]), (long long)N,
                     (long long)K, (long long)T);
            expect(what, y, SUM);
            drop(x), drop(y);
        }
    }
    /* q, k and v of one format in one launch, and weights of different formats that share an input */
    for (int mixed = 0; mixed < 2; mixed++)
        for (int64_t T = 2; T <= 20; T += 18) {
            const int64_t K = 128;
            g4_tensor w[3] = {weight(G4_DT_Q4, 96, K), weight(mixed ? G4_DT_BF16 : G4_DT_Q4, 40, K),
                              weight(mixed ? G4_DT_Q8 : G4_DT_Q4, 40, K)};
            const g4_tensor *wp[3] = {&w[0], &w[1], &w[2]};
            pair x = mk_rnd(T * K, 1.0f), y[3] = {mk(NULL, T * 96), mk(NULL, T * 40), mk(NULL, T * 40)};
            float *const yc[3] = {y[0].c, y[1].c, y[2].c}, *const yg[3] = {y[0].g, y[1].g, y[2].g};
            cpu.matmul_many(&cpu, x.c, T, K, 3, wp, yc);
            gpu.matmul_many(&gpu, x.g, T, K, 3, wp, yg);
            for (int i = 0; i < 3; i++) {
                snprintf(what, sizeof what, "matmul_many (%s) weight %d, %lld rows", mixed ? "mixed" : "q4", i, (long long)T);
                expect(what, y[i], SUM);
                drop(y[i]);
            }
            drop(x);
        }
    for (int q = 0; q < 2; q++) {
        const int64_t T = 5, K = 64, N = 48;
        g4_tensor gate = weight(q ? G4_DT_Q6 : G4_DT_BF16, N, K), up = weight(q ? G4_DT_Q6 : G4_DT_BF16, N, K);
        pair x = mk_rnd(T * K, 1.0f), g = mk(NULL, T * N), u = mk(NULL, T * N);
        cpu.matmul_gelu(&cpu, x.c, T, K, &gate, &up, g.c, u.c);
        gpu.matmul_gelu(&gpu, x.g, T, K, &gate, &up, g.g, u.g);
        expect(q ? "matmul_gelu q6" : "matmul_gelu bf16", g, SUM);
        drop(x), drop(g), drop(u);
    }
}

/* ---- rows ---- */

static void check_rows(void) {
    char what[128];
    /* embed: every stored format, scaled and not */
    const g4_dtype dts[] = {G4_DT_F32, G4_DT_BF16, G4_DT_F16, G4_DT_Q8, G4_DT_Q4, G4_DT_Q6};
    for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
        const int64_t rows = 50, W = 64, n = 9;
        g4_embedding e = {.t = weight(dts[d], rows, W), .rows = rows, .width = W};
        int32_t ids[9];
        for (int i = 0; i < n; i++) {
            rnd();
            ids[i] = (int32_t)((rng >> 20) % rows);
        }
        ids[0] = rows - 1;
        for (int s = 0; s < 2; s++) {
            pair out = mk(NULL, n * W);
            cpu.embed(&cpu, &e, ids, n, s ? 1.0f : 7.25f, out.c);
            gpu.embed(&gpu, &e, ids, n, s ? 1.0f : 7.25f, out.g);
            snprintf(what, sizeof what, "embed %s (scale %s)", g4_dtype_name(dts[d]), s ? "1" : "7.25");
            expect(what, out, 0);
            drop(out);
        }
    }
    {
        const int32_t idx[5] = {3, 0, 3, 7, 1};
        pair src = mk_rnd(8 * 33, 1.0f), out = mk(NULL, 5 * 33);
        cpu.gather_rows(&cpu, out.c, src.c, idx, 5, 33);
        gpu.gather_rows(&gpu, out.g, src.g, idx, 5, 33);
        expect("gather_rows", out, 0);
        drop(src), drop(out);
    }
    /* rmsnorm: heads of 16 to the text width, with and without weight, in place */
    const int64_t widths[] = {16, 64, 256, 512, 2560};
    for (size_t i = 0; i < sizeof widths / sizeof *widths; i++) {
        const int64_t n = widths[i], rows = 7;
        float *w = keep(rnd_vec(n, 1.0f));
        for (int with = 0; with < 2; with++) {
            pair x = mk_rnd(rows * n, 3.0f), out = mk(NULL, rows * n);
            cpu.rmsnorm(&cpu, out.c, x.c, with ? w : NULL, rows, n, 1e-6f);
            gpu.rmsnorm(&gpu, out.g, x.g, with ? w : NULL, rows, n, 1e-6f);
            cpu.rmsnorm(&cpu, x.c, x.c, with ? w : NULL, rows, n, 1e-6f);
            gpu.rmsnorm(&gpu, x.g, x.g, with ? w : NULL, rows, n, 1e-6f);
            snprintf(what, sizeof what, "rmsnorm %lld%s", (long long)n, with ? " with weight" : "");
            expect(what, out, SUM);
            snprintf(what, sizeof what, "rmsnorm %lld%s in place", (long long)n, with ? " with weight" : "");
            expect(what, x, SUM);
            drop(x), drop(out);
        }
    }
    /* rope: one section (text) and two (vision) */
    for (int sections = 1; sections <= 2; sections++) {
        const int64_t rows = 6, heads = 3, D = 64;
        pair x = mk_rnd(rows * heads * D, 2.0f), cs = mk_rnd(rows * D / 2, 1.0f), sn = mk_rnd(rows * D / 2, 1.0f);
        cpu.rope(&cpu, x.c, rows, heads, D, sections, cs.c, sn.c);
        gpu.rope(&gpu, x.g, rows, heads, D, sections, cs.g, sn.g);
        snprintf(what, sizeof what, "rope, %d section(s)", sections);
        expect(what, x, EXACT);
        drop(x), drop(cs), drop(sn);
    }
    /* residual arithmetic */
    {
        const int64_t n = 1000;
        const float scales[3] = {1.0f, 0.37f, 0.37f};
        for (int v = 0; v < 3; v++) {
            pair y = mk_rnd(n, 2.0f), x = mk_rnd(n, 2.0f);
            cpu.add(&cpu, y.c, v == 2 ? NULL : x.c, n, scales[v]);
            gpu.add(&gpu, y.g, v == 2 ? NULL : x.g, n, scales[v]);
            snprintf(what, sizeof what, "add variant %d", v);
            expect(what, y, EXACT);
            drop(y), drop(x);
        }
        pair y = mk_rnd(n, 2.0f), x = mk_rnd(n, 2.0f);
        cpu.axpy(&cpu, y.c, 0.61f, x.c, n);
        gpu.axpy(&gpu, y.g, 0.61f, x.g, n);
        expect("axpy", y, EXACT);
        drop(y), drop(x);
        float *scale = keep(rnd_vec(40, 1.0f)), *bias = keep(rnd_vec(40, 1.0f));
        for (int with = 0; with < 2; with++) {
            pair z = mk_rnd(25 * 40, 2.0f);
            cpu.scale_rows(&cpu, z.c, 25, 40, 1.7f, with ? scale : NULL);
            gpu.scale_rows(&gpu, z.g, 25, 40, 1.7f, with ? scale : NULL);
            expect(with ? "scale_rows with scale" : "scale_rows", z, EXACT);
            drop(z);
        }
        pair z = mk_rnd(25 * 40, 2.0f);
        cpu.add_bias(&cpu, z.c, 25, 40, bias);
        gpu.add_bias(&gpu, z.g, 25, 40, bias);
        expect("add_bias", z, EXACT);
        drop(z);
    }
    /* activations */
    {
        const char *names[] = {"silu", "gelu_tanh", "gelu", "relu"};
        for (int act = G4_ACT_SILU; act <= G4_ACT_RELU; act++) {
            pair x = mk_rnd(3000, 6.0f);
            cpu.activation(&cpu, x.c, 3000, act);
            gpu.activation(&gpu, x.g, 3000, act);
            snprintf(what, sizeof what, "activation %s", names[act]);
            expect(what, x, SUM);
            drop(x);
        }
        /* gelu_mul over strided rows (the PLE gate), contiguous, and alone */
        for (int v = 0; v < 3; v++) {
            const int64_t rows = 4, n = 24, ldg = v == 0 ? 40 : n, ldu = v == 0 ? 56 : n;
            pair g = mk_rnd(rows * ldg, 4.0f), u = mk_rnd(rows * ldu, 2.0f);
            cpu.gelu_mul(&cpu, g.c, ldg, v == 2 ? NULL : u.c, ldu, rows, n);
            gpu.gelu_mul(&gpu, g.g, ldg, v == 2 ? NULL : u.g, ldu, rows, n);
            snprintf(what, sizeof what, "gelu_mul variant %d", v);
            expect(what, g, SUM);
            drop(g), drop(u);
        }
        pair x = mk_rnd(6 * 2 * 32, 5.0f), out = mk(NULL, 6 * 32);
        cpu.glu(&cpu, out.c, x.c, 6, 32);
        gpu.glu(&gpu, out.g, x.g, 6, 32);
        expect("glu", out, SUM);
        drop(x), drop(out);
    }
    /* clamp (NaN passes through), softcap */
    {
        float *h = rnd_vec(500, 10.0f);
        h[7] = NAN, h[8] = INFINITY, h[9] = -INFINITY;
        pair x = mk(h, 500), out = mk(NULL, 500);
        cpu.clamp(&cpu, out.c, x.c, 500, -3.5f, 2.25f);
        gpu.clamp(&gpu, out.g, x.g, 500, -3.5f, 2.25f);
        expect("clamp", out, 0);
        cpu.clamp(&cpu, x.c, x.c, 500, -1.0f, 1.0f);
        gpu.clamp(&gpu, x.g, x.g, 500, -1.0f, 1.0f);
        expect("clamp in place", x, 0);
        drop(x), drop(out);
        free(h);
        pair y = mk_rnd(4000, 80.0f);
        cpu.softcap(&cpu, y.c, 4000, 30.0f);
        gpu.softcap(&gpu, y.g, 4000, 30.0f);
        expect("softcap", y, SUM);
        drop(y);
    }
    /* causal depthwise convolution */
    {
        const int64_t rows = 9, ch = 20, K = 5;
        float *w = keep(rnd_vec(ch * K, 1.0f));
        pair x = mk_rnd(rows * ch, 1.0f), out = mk(NULL, rows * ch);
        cpu.depthwise_conv(&cpu, out.c, x.c, rows, ch, w, K);
        gpu.depthwise_conv(&gpu, out.g, x.g, rows, ch, w, K);
        expect("depthwise_conv", out, EXACT);
        drop(x), drop(out);
    }
}

/* ---- attention ---- */

/* One sequence's paged cache on one backend: pages of page_len positions, [kv heads][page_len][D] keys then
 * values, as kv_cache.c lays them out. */
typedef struct cache {
    g4_backend *be;
    float *page[64];
    int n;
    g4_kv_view view;
} cache;

static void cache_init(cache *c, g4_backend *be, int64_t positions, int64_t page_len, int64_t kv_heads, int64_t D) {
    memset(c, 0, sizeof *c);
    c->be = be;
    c->n = (int)((positions + page_len - 1) / page_len);
    for (int i = 0; i < c->n; i++) c->page[i] = be->alloc(be, (size_t)(2 * kv_heads * page_len * D) * sizeof(float));
    c->view = (g4_kv_view){c->page, page_len, page_len * D, D, kv_heads * page_len * D};
}
static void cache_free(cache *c) {
    for (int i = 0; i < c->n; i++) c->be->release(c->be, c->page[i]);
}

/* Two sequences' caches filled through kv_write, then query rows of both with various key ranges (an empty
 * one, one key, windows, everything) in one call. */
static void check_attention_case(int64_t heads, int64_t kv_heads, int64_t D, int64_t positions, int64_t page_len,
                                 int64_t rows) {
    cache cc[2], gc[2];
    for (int s = 0; s < 2; s++) {
        cache_init(&cc[s], &cpu, positions, page_len, kv_heads, D);
        cache_init(&gc[s], &gpu, positions, page_len, kv_heads, D);
        /* written in two calls, as a prompt and then its continuation would be */
        for (int64_t p0 = 0; p0 < positions; p0 += positions / 2 + 1) {
            const int64_t n = p0 + positions / 2 + 1 < positions ? positions / 2 + 1 : positions - p0;
            pair k = mk_rnd(n * kv_heads * D, 1.0f), v = mk_rnd(n * kv_heads * D, 1.0f);
            int64_t *pos = malloc((size_t)n * sizeof *pos);
            const g4_kv_view **cv = malloc((size_t)n * sizeof *cv), **gv = malloc((size_t)n * sizeof *gv);
            for (int64_t r = 0; r < n; r++) pos[r] = p0 + r, cv[r] = &cc[s].view, gv[r] = &gc[s].view;
            cpu.kv_write(&cpu, cv, pos, n, kv_heads, D, k.c, v.c);
            gpu.kv_write(&gpu, gv, pos, n, kv_heads, D, k.g, v.g);
            drop(k), drop(v);
            free(pos), free(cv), free(gv);
        }
    }
    {   /* the caches themselves must match */
        char what[96];
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < cc[s].n; i++) {
                pair pg = {cc[s].page[i], gc[s].page[i], 2 * kv_heads * page_len * D};
                snprintf(what, sizeof what, "kv_write D %lld sequence %d page %d", (long long)D, s, i);
                expect(what, pg, 0);
            }
    }
    pair q = mk_rnd(rows * heads * D, 0.6f), out = mk(NULL, rows * heads * D);
    const g4_kv_view **cv = malloc((size_t)rows * sizeof *cv), **gv = malloc((size_t)rows * sizeof *gv);
    int64_t *first = malloc((size_t)rows * sizeof *first), *last = malloc((size_t)rows * sizeof *last);
    for (int64_t r = 0; r < rows; r++) {
        const int s = r >= rows / 2;
        cv[r] = &cc[s].view, gv[r] = &gc[s].view;
        last[r] = (r * 7 + 3) % positions;
        first[r] = r % 3 == 0 ? 0 : (last[r] - 5 > 0 ? last[r] - 5 : 0);
    }
    last[0] = positions - 1, first[0] = 0;   /* every key */
    if (rows > 2) first[1] = 4, last[1] = 2; /* no key: zeros */
    if (rows > 3) first[2] = last[2];        /* one key */
    const g4_attention ac = {rows, heads, kv_heads, D, q.c, out.c, cv, first, last};
    const g4_attention ag = {rows, heads, kv_heads, D, q.g, out.g, gv, first, last};
    g4_err err = {0};
    CHECK(cpu.attention(&cpu, &ac, &err) == 0, "%s", err.msg);
    CHECK(gpu.attention(&gpu, &ag, &err) == 0, "%s", err.msg);
    char what[128];
    snprintf(what, sizeof what, "attention %lld heads / %lld kv, D %lld, %lld keys, pages of %lld, %lld rows",
             (long long)heads, (long long)kv_heads, (long long)D, (long long)positions, (long long)page_len, (long long)rows);
    expect(what, out, SUM);
    drop(q), drop(out);
    free(cv), free(gv), free(first), free(last);
    for (int s = 0; s < 2; s++) cache_free(&cc[s]), cache_free(&gc[s]);
}

static void check_attention(void) {
    check_attention_case(4, 2, 16, 40, 4, 9);      /* the tiny model's heads, GQA, small pages */
    check_attention_case(8, 2, 256, 300, 64, 6);   /* E4B's sliding layers */
    check_attention_case(8, 2, 512, 700, 64, 1);   /* a decode step on a global layer: keys split over blocks */
    check_attention_case(8, 1, 512, 130, 64, 2);
    check_attention_case(4, 4, 64, 200, 200, 300); /* an encoder: one page, many rows */
    check_attention_case(2, 1, 48, 33, 8, 5);      /* a head that is not a multiple of 32 */
}

static void check_local_attention(void) {
    const int64_t T = 60, heads = 2, hd = 40, D = heads * hd, n_rel = 13;
    const int64_t chunk = 12, past = 13, future = 0, context = chunk + past - 1 + future;
    pair q = mk_rnd(T * D, 1.0f), k = mk_rnd(T * D, 1.0f), v = mk_rnd(T * D, 1.0f), rk = mk_rnd(n_rel * D, 1.0f);
    pair out = mk(NULL, T * D);
    uint8_t valid[60];
    for (int64_t t = 0; t < T; t++) valid[t] = t < 45 && t != 10; /* a hole, then padding: all-masked queries */
    const g4_local_attention ac = {T, heads, hd, q.c, k.c, v.c, rk.c, out.c, n_rel, past, future, chunk, context, 50.0f, valid};
    const g4_local_attention ag = {T, heads, hd, q.g, k.g, v.g, rk.g, out.g, n_rel, past, future, chunk, context, 50.0f, valid};
    g4_err err = {0};
    CHECK(cpu.local_attention(&cpu, &ac, &err) == 0, "%s", err.msg);
    CHECK(gpu.local_attention(&gpu, &ag, &err) == 0, "%s", err.msg);
    expect("local_attention", out, SUM);
    drop(q), drop(k), drop(v), drop(rk), drop(out);
}

static void check_conv2d(void) {
    /* the subsampler's two layers: one input channel with a frame mask, then 8 channels from a window that
     * starts before time 0 */
    const int64_t frames = 23, F0 = 16, C0 = 8, C1 = 4, F1 = (F0 - 1) / 2 + 1, F2 = (F1 - 1) / 2 + 1;
    const int64_t T1 = (frames + 1) / 2, T = (T1 + 1) / 2;
    uint8_t mask[23];
    for (int64_t t = 0; t < frames; t++) mask[t] = t < 19;
    float *w0 = keep(rnd_vec(C0 * 9, 1.0f)), *n0 = keep(rnd_vec(C0, 1.0f));
    float *w1 = keep(rnd_vec(C1 * 9 * C0, 1.0f)), *n1 = keep(rnd_vec(C1, 1.0f));
    pair feat = mk_rnd(frames * F0, 2.0f), h0 = mk(NULL, (2 * T + 1) * F1 * C0), sub = mk(NULL, T * F2 * C1);
    uint8_t valid1[12];
    for (int64_t t = 0; t < T1; t++) valid1[t] = t < 10;
    const g4_conv2d l0c = {feat.c, 0, frames, F0, 1, mask, h0.c, -1, 2 * T + 1, T1, C0, valid1, w0, n0, 1e-6f};
    const g4_conv2d l0g = {feat.g, 0, frames, F0, 1, mask, h0.g, -1, 2 * T + 1, T1, C0, valid1, w0, n0, 1e-6f};
    const g4_conv2d l1c = {h0.c, -1, 2 * T + 1, F1, C0, NULL, sub.c, 0, T, T, C1, NULL, w1, n1, 1e-6f};
    const g4_conv2d l1g = {h0.g, -1, 2 * T + 1, F1, C0, NULL, sub.g, 0, T, T, C1, NULL, w1, n1, 1e-6f};
    g4_err err = {0};
    CHECK(cpu.conv2d(&cpu, &l0c, &err) == 0 && cpu.conv2d(&cpu, &l1c, &err) == 0, "%s", err.msg);
    CHECK(gpu.conv2d(&gpu, &l0g, &err) == 0 && gpu.conv2d(&gpu, &l1g, &err) == 0, "%s", err.msg);
    expect("conv2d, one input channel", h0, EXACT);
    expect("conv2d, 8 input channels", sub, SUM);
    drop(feat), drop(h0), drop(sub);
}

/* ---- the golden tiny model ---- */

/* The whole prompt in chunks of `chunk`, every position's logits against the reference; then greedy decoding
 * from its first tokens. Returns the logits for comparisons between backends. */
static void check_text(const g4_model *m, g4_backend *be, const g4_st_file *ref, int64_t chunk, const char *label) {
    const int64_t V = m->cfg.text.vocab_size;
    int64_t T, n_steps, one;
    int32_t *ids = g4t_tensor_i32(ref, "input_ids", &T);
    float *want = g4t_tensor_f32(ref, "logits", NULL);
    int32_t *want_ids = g4t_tensor_i32(ref, "greedy_ids", &n_steps);
    int32_t *prompt_len = g4t_tensor_i32(ref, "greedy_prompt_len", &one);
    float *want_steps = g4t_tensor_f32(ref, "greedy_step_logits", NULL);
    g4_decoder d;
    g4_kv_budget budget;
    g4_kv_seq seq;
    g4_err err = {0};
    g4_kv_budget_init(&budget, 0, be);
    int rc = g4_decoder_init(&d, m, be, chunk, &err);
    CHECK(rc == 0, "%s: %s", label, err.msg);
    if (rc) return;
    CHECK(g4_kv_seq_init(&seq, m, 256, &budget, &err) == 0, "%s", err.msg);
    float *all = calloc((size_t)(T * V), sizeof(float)), *logits = malloc((size_t)V * sizeof(float));
    g4_forward_opts opts = {.all_logits = all};
    CHECK(g4_decoder_forward(&d, &seq, ids, T, &opts, &err) == 0, "%s: %s", label, err.msg);
    if (be == &gpu) CHECK(g4_backend_cuda_sync(be, &err) == 0, "%s: %s", label, err.msg);
    const double e = g4t_rel_err(all, want, T * V);
    int argmax_same = 1;
    for (int64_t t = 0; t < T; t++) argmax_same &= g4t_argmax(all + t * V, V) == g4t_argmax(want + t * V, V);
    CHECK(e <= GOLDEN, "%s: prefill (chunk %lld) logits rel err %.3e", label, (long long)chunk, e);
    CHECK(argmax_same, "%s: prefill (chunk %lld) argmax differs", label, (long long)chunk);
    /* greedy, from a fresh sequence */
    g4_kv_seq_free(&seq);
    CHECK(g4_kv_seq_init(&seq, m, 256, &budget, &err) == 0, "%s", err.msg);
    g4_forward_opts last = {.last_logits = logits};
    CHECK(g4_decoder_forward(&d, &seq, ids, prompt_len[0], &last, &err) == 0, "%s: %s", label, err.msg);
    double worst = 0;
    int same = 0;
    for (int64_t s = 0; s < n_steps; s++) {
        same += (int32_t)g4t_argmax(logits, V) == want_ids[s];
        if (g4_decoder_forward(&d, &seq, &want_ids[s], 1, &last, &err)) {
            CHECK(0, "%s: %s", label, err.msg);
            break;
        }
        worst = fmax(worst, g4t_rel_err(logits, want_steps + s * V, V));
    }
    printf("%s, chunk %lld: prefill logits %.2e, greedy %d/%lld ids, step logits %.2e\n", label, (long long)chunk, e,
           same, (long long)n_steps, worst);
    CHECK(same == n_steps, "%s: greedy ids %d/%lld identical", label, same, (long long)n_steps);
    CHECK(worst <= GOLDEN, "%s: greedy step logits rel err %.3e", label, worst);
    g4_kv_seq_free(&seq);
    g4_decoder_free(&d);
    CHECK(g4_kv_budget_used(&budget) == 0, "%s: pages left in the budget", label);
    g4_kv_budget_destroy(&budget);
    free(all), free(logits), free(ids), free(want), free(want_ids), free(prompt_len), free(want_steps);
}

static void check_vision(g4_model *m, g4_backend *be, const char *golden) {
    char path[4200];
    g4_vision *v = NULL;
    g4_err err = {0};
    if (g4_vision_load(m, &v, &err)) {
        CHECK(0, "vision: %s", err.msg);
        return;
    }
    snprintf(path, sizeof path, "%s/tiny/reference/vision_photo.safetensors", golden);
    g4_st_file *f = NULL;
    if (g4_st_open(path, &f, &err)) {
        CHECK(0, "%s", err.msg);
        g4_vision_free(v);
        return;
    }
    const g4_tensor *t = g4_st_find(f, "pixel_values_u8");
    const int64_t n_patches = t ? t->shape[0] : 0, dim = t ? t->shape[1] : 0;
    float *pixels = g4t_tensor_f32(f, "pixel_values_u8", NULL);
    for (int64_t i = 0; i < n_patches * dim; i++) pixels[i] = pixels[i] / 255.0f;
    int32_t *positions = g4t_tensor_i32(f, "image_position_ids", NULL);
    int64_t n_want;
    float *want = g4t_tensor_f32(f, "image_features", &n_want);
    const int cap = g4_vision_max_soft_tokens(v, (int)n_patches);
    float *out = calloc((size_t)cap * (size_t)v->cfg.text_hidden_size, sizeof(float));
    int n_soft = 0;
    int rc = g4_vision_encode(v, be, pixels, positions, (int)n_patches, out, &n_soft, &err);
    if (!rc) rc = g4_backend_cuda_sync(be, &err);
    CHECK(rc == 0, "vision on the GPU: %s", err.msg);
    if (!rc) {
        CHECK((int64_t)n_soft * v->cfg.text_hidden_size == n_want, "vision: %d soft tokens", n_soft);
        const double e = g4t_rel_err(out, want, n_want);
        printf("vision photo on the GPU: image_features rel err %.2e\n", e);
        CHECK(e <= GOLDEN, "vision photo on the GPU: image_features rel err %.3e", e);
    }
    free(pixels), free(positions), free(want), free(out);
    g4_st_close(f);
    g4_vision_free(v);
}

static void check_audio(g4_model *m, g4_backend *be, const char *golden) {
    char path[4200];
    g4_audio_encoder *a = NULL;
    g4_err err = {0};
    if (g4_audio_encoder_load(m, &a, &err)) {
        CHECK(0, "audio: %s", err.msg);
        return;
    }
    snprintf(path, sizeof path, "%s/tiny/reference/audio_speech.safetensors", golden);
    g4_st_file *f = NULL;
    if (g4_st_open(path, &f, &err)) {
        CHECK(0, "%s", err.msg);
        g4_audio_encoder_free(a);
        return;
    }
    const g4_audio_dims dims = g4_audio_encoder_dims(a);
    int64_t frames, n_want;
    float *feat = g4t_tensor_f32(f, "input_features", NULL);
    float *maskf = g4t_tensor_f32(f, "input_features_mask", &frames);
    float *want = g4t_tensor_f32(f, "audio_features", &n_want);
    uint8_t *mask = malloc((size_t)frames);
    for (int64_t t = 0; t < frames; t++) mask[t] = maskf[t] != 0;
    const int64_t T = g4_audio_encoder_positions(frames);
    float *out = calloc((size_t)(T * dims.out_width), sizeof(float));
    int64_t n_tokens = 0;
    int rc = g4_audio_encode(a, be, feat, mask, frames, out, &n_tokens, NULL, &err);
    if (!rc) rc = g4_backend_cuda_sync(be, &err);
    CHECK(rc == 0, "audio on the GPU: %s", err.msg);
    if (!rc) {
        CHECK(n_tokens * dims.out_width == n_want, "audio: %lld tokens", (long long)n_tokens);
        const double e = g4t_rel_err(out, want, n_want);
        printf("audio speech on the GPU: audio_features rel err %.2e\n", e);
        CHECK(e <= GOLDEN, "audio speech on the GPU: audio_features rel err %.3e", e);
    }
    free(feat), free(maskf), free(want), free(mask), free(out);
    g4_st_close(f);
    g4_audio_encoder_free(a);
}

static void check_golden(void) {
    const char *golden = g4t_golden_dir();
    if (!golden) {
        printf("golden data not found (set GEMMA4C_GOLDEN): the model checks are skipped\n");
        return;
    }
    char path[4200];
    g4_err err = {0};
    g4_model *m = NULL;
    snprintf(path, sizeof path, "%s/tiny/checkpoint", golden);
    if (g4_model_load_dir(path, &m, &err)) {
        CHECK(0, "load %s: %s", path, err.msg);
        return;
    }
    snprintf(path, sizeof path, "%s/tiny/reference/text.safetensors", golden);
    g4_st_file *ref = NULL;
    if (g4_st_open(path, &ref, &err)) {
        CHECK(0, "%s", err.msg);
        g4_model_free(m);
        return;
    }
    g4_backend be;
    int rc = g4_backend_cuda_init(&be, m, &err);
    CHECK(rc == 0, "CUDA backend for the tiny model: %s", err.msg);
    if (!rc) {
        g4_backend saved = gpu;
        gpu = be; /* check_text syncs the backend it is given when it is the global one */
        const int64_t chunks[] = {64, 7, 1};
        for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) check_text(m, &gpu, ref, chunks[i], "tiny on the GPU");
        check_vision(m, &gpu, golden);
        check_audio(m, &gpu, golden);
        gpu.destroy(&gpu);
        gpu = saved;
    }
    g4_st_close(ref);
    g4_model_free(m);
}

int main(void) {
    g4_err err = {0};
    int rc = g4_backend_cuda_init(&gpu, NULL, &err);
    if (rc) {
        printf("SKIPPED: %s\n", err.msg);
        return G4T_SKIP;
    }
    /* The portable kernels are what every SIMD variant is tested against: the closest CPU reference. */
    setenv("GEMMA4C_KERNELS", "portable", 1);
    g4_compute c;
    if (g4_compute_init(&c, 2, 4096) || g4_backend_cpu_init(&cpu, &c, &err)) {
        fprintf(stderr, "CPU backend: %s\n", err.msg);
        return 1;
    }
    check_matmul();
    check_rows();
    check_attention();
    check_local_attention();
    check_conv2d();
    printf("ops: %d checks, %d failed\n", g4t_checks, g4t_failures);
    check_golden();
    gpu.destroy(&gpu);
    cpu.destroy(&cpu);
    g4_compute_free(&c);
    for (int i = 0; i < n_kept; i++) free(kept[i]);
    return g4t_finish("test_cuda_backend");
}
