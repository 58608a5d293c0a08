/* test_quant.c — quantized formats and every kernel variant against exact references (speeds: bench/quant_speed.c). */
#include "test.h"

#include <stdint.h>

#include "core/tensor.h"
#include "core/threads.h"
#include "kernels/quant.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rnd_normal(void) { /* Irwin-Hall: close enough to a Gaussian for error statistics */
    float s = 0;
    for (int i = 0; i < 12; i++) s += (float)(rnd_u32() / 4294967296.0);
    return s - 6.0f;
}
/* Rows like a trained model's: Gaussian, a few large outliers, some blocks much smaller than others. */
static void fill_weights(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = 0.02f * rnd_normal();
    for (int64_t i = 0; i < n; i += 97) x[i] *= 8;
    for (int64_t b = 0; b + 32 <= n; b += 32 * 7)
        for (int j = 0; j < 32; j++) x[b + j] *= 0.01f;
}

static const g4_quant_ops *variants[5];
static int n_variants;

/* ---- Formats ------------------------------------------------------------------------------------------------ */

static void check_names_sizes(void) {
    CHECK(g4_qtype_from_name("G4_Q8") == G4_QT_Q8 && g4_qtype_from_name("G4_Q4") == G4_QT_Q4 &&
              g4_qtype_from_name("G4_Q6") == G4_QT_Q6 && g4_qtype_from_name("Q4_0") == -1,
          "names");
    CHECK(strcmp(g4_qtype_name(G4_QT_Q6), "G4_Q6") == 0 && g4_qtype_name(7) == NULL, "name of type");
    CHECK(g4_qrow_bytes(G4_QT_Q8, 64) == 72 && g4_qrow_bytes(G4_QT_Q4, 64) == 36 && g4_qrow_bytes(G4_QT_Q6, 64) == 52,
          "row bytes");
    CHECK(g4_qrow_bytes(G4_QT_Q4, 48) == 0 && g4_qrow_bytes(G4_QT_Q4, 0) == 0 && g4_qrow_bytes(3, 32) == 0, "bad K");
    float x[48] = {0};
    unsigned char buf[64];
    CHECK(g4_quantize_row(G4_QT_Q4, x, 48, buf) == -1 && g4_dequantize_row(-1, buf, 32, x) == -1, "bad args refused");
}

/* Error of every format on model-like rows: Q8 must be within half a step of d = max/127 everywhere; Q4 and Q6
 * pick their scale by search, so each block must do at least as well as the plain max/7 (max/31) scale would,
 * and the whole row must stay within the relative RMS error such a grid gives on Gaussian data. */
static void check_round_trips(void) {
    const int64_t K = 4096;
    float *x = malloc(K * 4), *y = malloc(K * 4);
    unsigned char *q = malloc(g4_qrow_bytes(G4_QT_Q8, K));
    fill_weights(x, K);
    for (int qt = 0; qt < G4_QT_COUNT; qt++) {
        CHECK(g4_quantize_row(qt, x, K, q) == 0 && g4_dequantize_row(qt, q, K, y) == 0, "%s row", g4_qtype_name(qt));
        double se = 0, ss = 0;
        int worse = 0;
        for (int64_t b = 0; b < K / 32; b++) {
            const float *xb = x + b * 32, *yb = y + b * 32;
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
            double bse = 0, plain = 0;
            int hi = qt == G4_QT_Q4 ? 7 : 31;
            float dp = g4_bf16_to_f32(g4_f32_to_bf16(amax / (float)hi));
            for (int i = 0; i < 32; i++) {
                double e = (double)xb[i] - yb[i];
                bse += e * e, ss += (double)xb[i] * xb[i];
                if (qt == G4_QT_Q8)
                    CHECK(fabs(e) <= amax / 127.0 * 0.5000001 + 1e-30, "Q8 element %lld: error %g, max %g",
                          (long long)(b * 32 + i), e, amax);
                double k = dp > 0 ? round(xb[i] / dp) : 0;
                k = k > hi ? hi : k < -hi - 1 ? -hi - 1 : k;
                plain += ((double)xb[i] - dp * k) * ((double)xb[i] - dp * k);
            }
            se += bse;
            if (qt != G4_QT_Q8 && bse > plain * (1 + 1e-5) + 1e-30) worse++;
        }
        CHECK(worse == 0, "%s: %d blocks worse than the plain max scale", g4_qtype_name(qt), worse);
        /* Measured 0.0095, 0.1601, 0.0370 (Q8, Q4, Q6) on these rows; the limits leave about 12 % headroom. */
        const double model_limit[G4_QT_COUNT] = {0.0107, 0.18, 0.0415};
        const double rel = sqrt(se / ss);
        CHECK(rel < model_limit[qt], "%s: model-like rows' relative RMS error %.4f (limit %.4f)", g4_qtype_name(qt),
              rel, model_limit[qt]);
        printf("%s round trip, model-like rows: relative RMS error %.4f\n", g4_qtype_name(qt), rel);
    }
    /* On Gaussian rows the largest |x| of 32 is about 2.37 sigma, so grid steps of max/127, max/7, max/31 leave an
     * RMS error of step / sqrt(12) = 0.0054, 0.098, 0.022 sigma. Q8 may be 15 % over that (the largest of 32
     * varies); Q4 and Q6 search their scale and must do better than the plain max/7, max/31 steps. */
    const double rms_limit[G4_QT_COUNT] = {0.0062, 0.098, 0.022};
    for (int64_t i = 0; i < K; i++) x[i] = rnd_normal();
    for (int qt = 0; qt < G4_QT_COUNT; qt++) {
        g4_quantize_row(qt, x, K, q);
        g4_dequantize_row(qt, q, K, y);
        double se = 0, ss = 0;
        for (int64_t i = 0; i < K; i++) se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]), ss += (double)x[i] * x[i];
        double rel = sqrt(se / ss);
        CHECK(rel < rms_limit[qt], "%s: relative RMS error %.4f (limit %.4f)", g4_qtype_name(qt), rel, rms_limit[qt]);
        printf("%s round trip, Gaussian rows: relative RMS error %.4f\n", g4_qtype_name(qt), rel);
    }
    /* NaN becomes 0, infinities saturate, zeros stay zeros; nothing non-finite comes back */
    float odd[64] = {0};
    odd[3] = NAN, odd[5] = INFINITY, odd[6] = -1.0f, odd[40] = -INFINITY;
    for (int qt = 0; qt < G4_QT_COUNT; qt++) {
        g4_quantize_row(qt, odd, 64, q);
        g4_dequantize_row(qt, q, 64, y);
        int finite = 1;
        for (int i = 0; i < 64; i++) finite &= isfinite(y[i]) != 0;
        CHECK(finite && y[3] == 0 && y[0] == 0 && y[5] > 1e17f && y[40] < -1e17f, "%s non-finite input",
              g4_qtype_name(qt));
    }
    free(x), free(y), free(q);
}

/* Google's QAT checkpoints store blocks s * k (s bf16, k integer in [-8, 7]): they must come back bit for bit,
 * whatever the largest |k| of the block is. The same holds for 6-bit grids. */
static void check_grid_exact(void) {
    enum { NB = 4000 };
    float *x = malloc(NB * 32 * 4), *y = malloc(NB * 32 * 4);
    unsigned char *q = malloc(g4_qrow_bytes(G4_QT_Q6, NB * 32));
    for (int qt = G4_QT_Q4; qt <= G4_QT_Q6; qt++) {
        int kmin = qt == G4_QT_Q4 ? -8 : -32, kmax = -kmin - 1;
        for (int b = 0; b < NB; b++) {
            /* a bf16 scale anywhere from 2^-20 to 2^4 with a random 7-bit mantissa */
            uint16_t sb = (uint16_t)(((127 - 20 + rnd_u32() % 25) << 7) | (rnd_u32() & 127));
            float s = g4_bf16_to_f32(sb);
            /* even blocks: the full range; odd blocks: any narrower range [-m, m] or [-m, m - 1] */
            int lo = kmin, hi = kmax;
            if (b % 2) lo = -(int)(1 + rnd_u32() % (uint32_t)-kmin), hi = -lo - (int)(rnd_u32() & 1);
            if (hi > kmax) hi = kmax;
            if (hi < 1) hi = 1;
            for (int i = 0; i < 32; i++) x[b * 32 + i] = s * (float)(lo + (int)(rnd_u32() % (uint32_t)(hi - lo + 1)));
            x[b * 32 + rnd_u32() % 32] = s * (float)((rnd_u32() & 1) ? lo : hi);
        }
        g4_quantize_row(qt, x, NB * 32, q);
        g4_dequantize_row(qt, q, NB * 32, y);
        int64_t bad = 0;
        for (int64_t i = 0; i < NB * 32; i++) bad += memcmp(&x[i], &y[i], 4) != 0;
        CHECK(bad == 0, "%s: %lld of %d grid values changed", g4_qtype_name(qt), (long long)bad, NB * 32);
    }
    free(x), free(y), free(q);
}

/* Error-compensated rounding: on inputs with correlated channels (a shared component plus channels of unequal
 * size, like a model's), x · (w - ŵ) must come out smaller than with plain rounding; rows already on a grid must
 * come back exactly; K = 288 covers a short last span. */
static void check_gptq(void) {
    enum { K = 288, T = 1000, N = 16, S = G4_GPTQ_SPAN };
    float *x = malloc((size_t)T * K * 4), *gram = calloc((size_t)K * S, 4), *w = malloc(K * 4), *y = malloc(K * 4);
    float *work = malloc(K * 4), mix[K];
    unsigned char *q = malloc(g4_qrow_bytes(G4_QT_Q6, K));
    for (int k = 0; k < K; k++) mix[k] = rnd_normal();
    for (int t = 0; t < T; t++) {
        float z = rnd_normal();
        for (int k = 0; k < K; k++) x[t * K + k] = rnd_normal() * (float)(1 + k % 7) + 3 * z * mix[k];
    }
    for (int t = 0; t < T; t++)
        for (int b0 = 0; b0 < K; b0 += S)
            for (int i = 0; i < S && b0 + i < K; i++)
                for (int j = 0; j < S && b0 + j < K; j++) gram[(b0 + i) * S + j] += x[t * K + b0 + i] * x[t * K + b0 + j];
    CHECK(g4_gptq_factor(gram, K) == 0, "factor");
    CHECK(g4_quantize_row_gptq(G4_QT_Q8, w, K, gram, work, q) == -1 &&
              g4_quantize_row_gptq(G4_QT_Q4, w, 48, gram, work, q) == -1, "bad arguments refused");
    for (int qt = G4_QT_Q4; qt <= G4_QT_Q6; qt++) {
        double plain = 0, comp = 0;
        for (int n = 0; n < N; n++) {
            fill_weights(w, K);
            for (int pass = 0; pass < 2; pass++) {
                if (pass) g4_quantize_row_gptq(qt, w, K, gram, work, q);
                else g4_quantize_row(qt, w, K, q);
                g4_dequantize_row(qt, q, K, y);
                for (int t = 0; t < T; t++) {
                    double e = 0;
                    for (int k = 0; k < K; k++) e += (double)x[t * K + k] * (w[k] - y[k]);
                    *(pass ? &comp : &plain) += e * e;
                }
            }
        }
        /* Measured 0.57 (G4_Q4) and 0.63 (G4_Q6) of the plain rounding's squared output error. */
        CHECK(comp < 0.7 * plain, "%s: compensated output error %.4g vs plain %.4g", g4_qtype_name(qt), comp, plain);
        printf("%s error-compensated rounding: output error %.2f of plain rounding's\n", g4_qtype_name(qt), comp / plain);
        const int lo = qt == G4_QT_Q4 ? -8 : -32;
        const float s = g4_bf16_to_f32(g4_f32_to_bf16(0.0123f));
        for (int k = 0; k < K; k++) w[k] = s * (float)(lo + (int)(rnd_u32() % (uint32_t)(-2 * lo)));
        g4_quantize_row_gptq(qt, w, K, gram, work, q);
        g4_dequantize_row(qt, q, K, y);
        CHECK(memcmp(w, y, K * 4) == 0, "%s: a row on the grid changed", g4_qtype_name(qt));
    }
    free(x), free(gram), free(w), free(y), free(work), free(q);
}

static void check_act_quant(void) {
    const int64_t K = 320;
    float x[320];
    for (int i = 0; i < K; i++) x[i] = rnd_normal() * (i < 32 ? 1e-3f : 3.0f);
    for (int i = 64; i < 96; i++) x[i] = 0;
    unsigned char *row = malloc(g4_qact_row_bytes(K));
    g4_quantize_act_row(x, K, row);
    const int8_t *qv = (const int8_t *)row;
    const float *d = g4_qact_d(row, K);
    const int32_t *s = g4_qact_s(row, K);
    CHECK(g4_qact_row_bytes(K) % 64 == 0 && g4_qact_row_bytes(K) >= (size_t)K * 5 / 4, "activation row size");
    for (int b = 0; b < K / 32; b++) {
        int32_t sum = 0;
        for (int i = 0; i < 32; i++) {
            sum += qv[b * 32 + i];
            CHECK(fabsf(x[b * 32 + i] - d[b] * qv[b * 32 + i]) <= d[b] * 0.5001f, "activation %d", b * 32 + i);
            CHECK(qv[b * 32 + i] >= -127 && qv[b * 32 + i] <= 127, "activation range");
        }
        CHECK(sum == s[b], "block sum %d", b);
    }
    CHECK(d[2] == 0 && s[2] == 0, "zero block");
    free(row);
}

/* Every variant's activation quantizer writes the portable one's bytes, NaN, infinities and zeros included. */
static void check_act_variants(void) {
    const int64_t K = 1024;
    float *x = malloc(K * 4);
    size_t rb = g4_qact_row_bytes(K);
    unsigned char *ref = calloc(1, rb), *got = calloc(1, rb);
    for (int64_t i = 0; i < K; i++) x[i] = rnd_normal() * (i % 37 == 0 ? 1e4f : 1.0f) * (i < 64 ? 1e-30f : 1.0f);
    for (int i = 64; i < 96; i++) x[i] = 0;
    for (int i = 96; i < 128; i++) x[i] = (float)(i - 112) * 0.5f; /* ties at the rounding boundary */
    x[200] = NAN, x[300] = INFINITY, x[301] = -INFINITY, x[400] = -0.0f;
    g4_quantize_act_row(x, K, ref);
    for (int v = 0; v < n_variants; v++) {
        memset(got, 0, rb);
        variants[v]->quantize_act(x, K, got);
        CHECK(memcmp(ref, got, (size_t)K + (size_t)K / 4) == 0, "%s quantize_act differs from the portable one",
              variants[v]->name);
    }
    free(x), free(ref), free(got);
}

/* ---- Kernels against exact references ---------------------------------------------------------------------- */

typedef struct testmat {
    int qt;
    int64_t N, K;
    unsigned char *w; /* quantized */
    float *wdeq;      /* dequantized, exact */
} testmat;

/* The exact value of weight row n · quantized activation row over blocks [b0, b0 + nb) (dequantized weights are
 * exact products, activations exact integers times their scale), and Σ|terms| to scale tolerances by. The terms
 * include each block's zero offset (8 for G4_Q4, 32 for G4_Q6, 128 for G4_Q8) times its scales and activation sum:
 * kernels that run the weights as unsigned values remove it through that sum in float, so a block whose exact value
 * is 0 can come back as the rounding of two equal products. */
static double ref_dot(const testmat *m, int64_t n, const unsigned char *act, int64_t b0, int64_t nb, double *mag) {
    const int64_t K = m->K;
    const float *wdeq = m->wdeq + n * K;
    const int8_t *aq = (const int8_t *)act;
    const float *ad = g4_qact_d(act, K);
    const int32_t *as = g4_qact_s(act, K);
    const size_t bb = g4_qtype_block_bytes(m->qt);
    const double offset = m->qt == G4_QT_Q4 ? 8 : m->qt == G4_QT_Q6 ? 32 : 128;
    double s = 0, mg = 0;
    for (int64_t b = b0; b < b0 + nb; b++) {
        const unsigned char *blk = m->w + (size_t)n * g4_qrow_bytes(m->qt, K) + (size_t)b * bb;
        float wd;
        if (m->qt == G4_QT_Q8) {
            memcpy(&wd, blk, 4);
        } else {
            uint16_t h;
            memcpy(&h, blk, 2);
            wd = g4_bf16_to_f32(h);
        }
        double blk_sum = 0;
        for (int i = 0; i < 32; i++) blk_sum += (double)wdeq[b * 32 + i] * aq[b * 32 + i];
        s += blk_sum * ad[b];
        mg += fabs(blk_sum * ad[b]) + fabs(offset * wd * ad[b] * as[b]);
    }
    *mag = mg;
    return s;
}

/* Float sums over at most K/32 block terms in another order: 1e-5 of Σ|terms| is ~100x the rounding there. */
#define KTOL 1e-5

static testmat make_mat(int qt, int64_t N, int64_t K) {
    testmat m = {qt, N, K, malloc(g4_qrow_bytes(qt, K) * (size_t)N + 1), malloc((size_t)(N * K) * 4)};
    float *row = malloc((size_t)K * 4);
    for (int64_t n = 0; n < N; n++) {
        fill_weights(row, K);
        g4_quantize_row(qt, row, K, m.w + (size_t)n * g4_qrow_bytes(qt, K));
        g4_dequantize_row(qt, m.w + (size_t)n * g4_qrow_bytes(qt, K), K, m.wdeq + n * K);
    }
    free(row);
    return m;
}
static void free_mat(testmat *m) { free(m->w), free(m->wdeq); }

static unsigned char *make_acts(int64_t T, int64_t K) {
    size_t rb = g4_qact_row_bytes(K);
    unsigned char *a = malloc(rb * (size_t)T);
    float *x = malloc((size_t)K * 4);
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < K; i++) x[i] = rnd_normal() * (i % 61 == 0 ? 20.0f : 1.0f);
        g4_quantize_act_row(x, K, a + (size_t)t * rb);
    }
    free(x);
    return a;
}

/* vec of every variant (portable included) against the exact reference, odd row counts. */
static void check_vec(const g4_quant_ops *ops, const testmat *m, const unsigned char *act) {
    float *y = malloc((size_t)m->N * 4);
    ops->vec(m->qt, m->w, g4_qrow_bytes(m->qt, m->K), m->N, act, m->K, y);
    int bad = 0;
    for (int64_t n = 0; n < m->N; n++) {
        double mag, r = ref_dot(m, n, act, 0, m->K / 32, &mag);
        if (fabs(y[n] - r) > KTOL * mag + 1e-30) {
            if (bad++ < 3)
                fprintf(stderr, "  %s vec %s K=%lld row %lld: %.9g vs %.9g\n", ops->name, g4_qtype_name(m->qt),
                        (long long)m->K, (long long)n, y[n], r);
        }
    }
    CHECK(bad == 0, "%s vec %s N=%lld K=%lld: %d rows off", ops->name, g4_qtype_name(m->qt), (long long)m->N,
          (long long)m->K, bad);
    free(y);
}

/* The register-blocked gemm (nr weight rows x nt activation rows, over a block range) against the single-row
 * reference, for every nr up to n_tile and a partial panel. */
static void check_gemm(const g4_quant_ops *ops, const testmat *m, const unsigned char *act, int nt) {
    int64_t nbk = m->K / 32, b0 = nbk > 2 ? 1 : 0, nb = nbk - b0 - (nbk > 3 ? 1 : 0);
    size_t rb = g4_qact_row_bytes(m->K), wstride = (size_t)nb * G4_QUNPACKED_BLOCK + 4; /* odd stride on purpose */
    unsigned char *panel = malloc(g4_qpanel_bytes(ops->t_tile, m->K));
    unsigned char *wu = malloc(wstride * (size_t)ops->n_tile);
    float *out = malloc((size_t)ops->n_tile * ops->t_tile * 4);
    g4_qpanel_pack(ops->t_tile, act, rb, nt, m->K, panel);
    int bad = 0;
    for (int nr = 1; nr <= ops->n_tile && nr <= m->N; nr++) {
        /* in two halves: the second adds to the first's sums, as the product does across K-chunks */
        int64_t h = nb / 2;
        for (int i = 0; i < nr; i++)
            ops->unpack_w(m->qt, m->w + (size_t)i * g4_qrow_bytes(m->qt, m->K), b0, h, wu + i * wstride);
        ops->gemm(m->qt, wu, wstride, nr, panel, nt, b0, h, out, 0);
        for (int i = 0; i < nr; i++)
            ops->unpack_w(m->qt, m->w + (size_t)i * g4_qrow_bytes(m->qt, m->K), b0 + h, nb - h, wu + i * wstride);
        ops->gemm(m->qt, wu, wstride, nr, panel, nt, b0 + h, nb - h, out, 1);
        for (int i = 0; i < nr; i++)
            for (int t = 0; t < nt; t++) {
                double mag, r = ref_dot(m, i, act + (size_t)t * rb, b0, nb, &mag);
                float v = out[i * ops->t_tile + t];
                if (fabs(v - r) > KTOL * mag + 1e-30 && bad++ < 3)
                    fprintf(stderr, "  %s gemm %s K=%lld nr=%d i=%d t=%d: %.9g vs %.9g\n", ops->name,
                            g4_qtype_name(m->qt), (long long)m->K, nr, i, t, v, r);
            }
    }
    CHECK(bad == 0, "%s gemm %s K=%lld nt=%d: %d outputs off", ops->name, g4_qtype_name(m->qt), (long long)m->K, nt,
          bad);
    /* over the whole row, a full tile against the same variant's single-row kernel */
    int nr = ops->n_tile < m->N ? ops->n_tile : (int)m->N;
    size_t full_stride = (size_t)nbk * G4_QUNPACKED_BLOCK;
    unsigned char *wf = malloc(full_stride * (size_t)nr);
    float *yv = malloc((size_t)nr * 4);
    for (int i = 0; i < nr; i++)
        ops->unpack_w(m->qt, m->w + (size_t)i * g4_qrow_bytes(m->qt, m->K), 0, nbk, wf + i * full_stride);
    ops->gemm(m->qt, wf, full_stride, nr, panel, nt, 0, nbk, out, 0);
    bad = 0;
    for (int t = 0; t < nt; t++) {
        ops->vec(m->qt, m->w, g4_qrow_bytes(m->qt, m->K), nr, act + (size_t)t * rb, m->K, yv);
        for (int i = 0; i < nr; i++) {
            double mag;
            ref_dot(m, i, act + (size_t)t * rb, 0, nbk, &mag);
            bad += fabs(out[i * ops->t_tile + t] - yv[i]) > 2 * KTOL * mag + 1e-30;
        }
    }
    CHECK(bad == 0, "%s gemm %s K=%lld nt=%d: %d outputs differ from vec", ops->name, g4_qtype_name(m->qt),
          (long long)m->K, nt, bad);
    free(wf), free(yv);
    free(panel), free(wu), free(out);
}

static void check_kernels(void) {
    const int64_t Ks[] = {32, 64, 96, 256, 1536, 2560, 10240};
    for (int qt = 0; qt < G4_QT_COUNT; qt++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
            int64_t K = Ks[ki], N = K > 2560 ? 7 : 13;
            testmat m = make_mat(qt, N, K);
            unsigned char *act = make_acts(40, K);
            for (int v = 0; v < n_variants; v++) {
                const g4_quant_ops *ops = variants[v];
                check_vec(ops, &m, act);
                check_gemm(ops, &m, act, ops->t_tile);
                check_gemm(ops, &m, act, ops->t_tile > 4 ? ops->t_tile / 2 + 1 : 3);
            }
            free(act);
            free_mat(&m);
        }
}

/* ---- The threaded product ----------------------------------------------------------------------------------- */

/* y against a double product of the float x with the dequantized weights. The only approximation is rounding x
 * to int8 per block: |x - d q| <= d / 2 = max|x_block| / 254, so each output can be off by at most
 * Σ_b max|x_b| / 254 · Σ_{i in b} |w_i| (plus float summation, KTOL of Σ|w x|). The bound is checked exactly. */
static void check_qmatmul(const g4_quant_ops *ops, int threads, int qt, int64_t T, int64_t K, int64_t N) {
    g4_pool *pool = g4_pool_create(threads);
    testmat m = make_mat(qt, N, K);
    float *x = malloc((size_t)(T * K) * 4), *y = malloc((size_t)(T * N) * 4);
    for (int64_t i = 0; i < T * K; i++) x[i] = rnd_normal() * (i % 53 == 0 ? 10.0f : 1.0f);
    size_t sb = g4_qmatmul_scratch_bytes(ops, pool, T, K);
    unsigned char *scratch = malloc(sb + 1);
    /* scratch of any alignment: the product aligns what it needs inside the size it asked for */
    CHECK(g4_qmatmul(ops, pool, x, T, K, m.w, qt, N, y, scratch + 1) == 0, "qmatmul accepted its arguments");
    int bad = 0;
    double worst = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            double ref = 0, bound = 0, mag = 0;
            for (int64_t b = 0; b < K / 32; b++) {
                double amax = 0, wabs = 0;
                for (int i = 0; i < 32; i++) {
                    double xv = x[t * K + b * 32 + i], wv = m.wdeq[n * K + b * 32 + i];
                    ref += xv * wv, mag += fabs(xv * wv), wabs += fabs(wv);
                    amax = fabs(xv) > amax ? fabs(xv) : amax;
                }
                bound += amax / 254.0 * wabs;
            }
            bound = bound * 1.0001 + KTOL * mag + 1e-30;
            double e = fabs(y[t * N + n] - ref);
            worst = e / bound > worst ? e / bound : worst;
            if (e > bound && bad++ < 3)
                fprintf(stderr, "  qmatmul t=%lld n=%lld: %.9g vs %.9g (bound %.3g)\n", (long long)t, (long long)n,
                        y[t * N + n], ref, bound);
        }
    CHECK(bad == 0, "%s qmatmul %s T=%lld K=%lld N=%lld threads=%d: %d outputs outside the bound", ops->name,
          g4_qtype_name(qt), (long long)T, (long long)K, (long long)N, threads, bad);
    CHECK(worst > 0.001 || T * N < 4, "%s qmatmul: suspiciously exact (worst %.3g of the bound)", ops->name, worst);
    /* the pre-quantized entry gives the same numbers */
    unsigned char *act = malloc(g4_qact_row_bytes(K) * (size_t)T);
    float *y2 = malloc((size_t)(T * N) * 4);
    g4_quantize_acts(ops, pool, x, T, K, act);
    unsigned char *s2 = malloc(g4_qmatmul_act_scratch_bytes(ops, pool, T, K) + 1);
    CHECK(g4_qmatmul_act(ops, pool, act, T, K, m.w, qt, N, y2, s2 + 1) == 0, "qmatmul_act accepted its arguments");
    CHECK(g4_qmatmul(ops, pool, x, T, K + 1, m.w, qt, N, y2, scratch) == -1 &&
              g4_qmatmul(ops, pool, x, T, K, m.w, 9, N, y2, scratch) == -1 &&
              g4_qmatmul_act(ops, pool, act, 0, K, m.w, qt, N, y2, s2) == -1,
          "bad arguments refused");
    CHECK(memcmp(y, y2, (size_t)(T * N) * 4) == 0, "%s qmatmul_act differs from qmatmul", ops->name);
    /* the fused entry from float rows: the same numbers where it applies, refused before any work elsewhere */
    g4_qmat one = {m.w, qt, N, y2};
    memset(y2, 0, (size_t)(T * N) * 4);
    const int many = g4_qmatmul_many(ops, pool, x, T, K, &one, 1, NULL, NULL, scratch + 1);
    CHECK(T <= g4_qmany_max_rows(ops) ? many == 0 && memcmp(y, y2, (size_t)(T * N) * 4) == 0
                                      : many == -1 && y2[0] == 0 && y2[T * N - 1] == 0,
          "%s qmatmul_many T=%lld: %d", ops->name, (long long)T, many);
    free(act), free(y2), free(s2);
    free(x), free(y), free(scratch);
    free_mat(&m);
    g4_pool_destroy(pool);
}

/* One scratch of exactly the size asked for the largest product serves every smaller T and K (callers size it
 * once); the sanitizers see any byte past its end. */
static void check_shared_scratch(const g4_quant_ops *ops) {
    const int64_t maxT = 150, maxK = 2560, N = 37;
    g4_pool *pool = g4_pool_create(2);
    size_t sb = g4_qmatmul_scratch_bytes(ops, pool, maxT, maxK);
    unsigned char *shared = malloc(sb);
    testmat m[2] = {make_mat(G4_QT_Q4, N, 96), make_mat(G4_QT_Q4, N, maxK)};
    float *x = malloc((size_t)(maxT * maxK) * 4);
    float *y = malloc((size_t)(maxT * N) * 4), *y2 = malloc((size_t)(maxT * N) * 4);
    for (int64_t i = 0; i < maxT * maxK; i++) x[i] = rnd_normal();
    const int64_t Ts[] = {1, 3, 4, 5, 6, 12, 17, 33, 64, 100, 149, 150};
    int bad = 0;
    for (int k = 0; k < 2; k++)
        for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
            int64_t T = Ts[ti], K = m[k].K;
            unsigned char *own = malloc(g4_qmatmul_scratch_bytes(ops, pool, T, K) + 1);
            g4_qmatmul(ops, pool, x, T, K, m[k].w, G4_QT_Q4, N, y, shared);
            g4_qmatmul(ops, pool, x, T, K, m[k].w, G4_QT_Q4, N, y2, own);
            bad += memcmp(y, y2, (size_t)(T * N) * 4) != 0;
            CHECK(g4_qmatmul_scratch_bytes(ops, pool, T, K) <= sb, "%s scratch for T=%lld K=%lld exceeds the largest",
                  ops->name, (long long)T, (long long)K);
            free(own);
        }
    CHECK(bad == 0, "%s: %d products differ with a shared scratch", ops->name, bad);
    free(x), free(y), free(y2), free(shared);
    free_mat(&m[0]), free_mat(&m[1]);
    g4_pool_destroy(pool);
}

/* What rows_done saw: each row once, after both lockstep products had written it. */
typedef struct lockstep_log {
    const float *y[2], *want[2];
    int64_t N;
    int *seen, *early; /* per row: workers own disjoint rows */
} lockstep_log;

static void log_rows(void *ctx, int64_t n0, int64_t n1) {
    lockstep_log *g = ctx;
    for (int64_t n = n0; n < n1; n++) {
        g->seen[n]++;
        for (int i = 0; i < 2; i++) g->early[n] += g->y[i][n] != g->want[i][n]; /* row 0 of the activations */
    }
}

/* The fused decode products give exactly what one product per matrix gives: stacked matrices of several formats
 * and heights, and a lockstep pair whose epilogue sees every row once, after both products wrote it. */
static void check_many(const g4_quant_ops *ops, int threads, int64_t T, int64_t K) {
    g4_pool *pool = g4_pool_create(threads);
    testmat m[3] = {make_mat(G4_QT_Q4, 131, K), make_mat(G4_QT_Q8, 17, K), make_mat(G4_QT_Q6, 131, K)};
    unsigned char *act = make_acts(T, K);
    unsigned char *scratch = malloc(g4_qmatmul_act_scratch_bytes(ops, pool, T, K) + 1);
    float *want[3], *got[3];
    g4_qmat mats[3];
    for (int i = 0; i < 3; i++) {
        want[i] = malloc((size_t)(T * m[i].N) * 4), got[i] = malloc((size_t)(T * m[i].N) * 4);
        memset(got[i], 0, (size_t)(T * m[i].N) * 4);
        g4_qmatmul_act(ops, pool, act, T, K, m[i].w, m[i].qt, m[i].N, want[i], scratch + 1);
        mats[i] = (g4_qmat){m[i].w, m[i].qt, m[i].N, got[i]};
    }
    CHECK(g4_qmatvec_many(ops, pool, act, T, K, mats, 3, NULL, NULL, scratch + 1) == 0, "stacked product accepted");
    int bad = 0;
    for (int i = 0; i < 3; i++) bad += memcmp(want[i], got[i], (size_t)(T * m[i].N) * 4) != 0;
    CHECK(bad == 0, "%s stacked T=%lld K=%lld threads=%d: %d matrices differ from single products", ops->name,
          (long long)T, (long long)K, threads, bad);

    g4_qmat pair[2] = {mats[0], mats[2]};
    for (int i = 0; i < 2; i++) memset(pair[i].y, 0, (size_t)(T * pair[i].N) * 4);
    int seen[131] = {0}, early[131] = {0};
    lockstep_log log = {{pair[0].y, pair[1].y}, {want[0], want[2]}, 131, seen, early};
    CHECK(g4_qmatvec_many(ops, pool, act, T, K, pair, 2, log_rows, &log, scratch + 1) == 0,
          "lockstep product accepted");
    int once = 1, n_early = 0;
    for (int n = 0; n < 131; n++) once &= seen[n] == 1, n_early += early[n];
    CHECK(once && n_early == 0 && memcmp(want[0], pair[0].y, (size_t)(T * 131) * 4) == 0 &&
              memcmp(want[2], pair[1].y, (size_t)(T * 131) * 4) == 0,
          "%s lockstep T=%lld K=%lld threads=%d: every row once, after both products (early %d)", ops->name,
          (long long)T, (long long)K, threads, n_early);

    g4_qmat uneven[2] = {mats[0], mats[1]}, badk = {m[0].w, G4_QT_Q4, 131, got[0]};
    CHECK(g4_qmatvec_many(ops, pool, act, g4_qmany_max_rows(ops) + 1, K, mats, 3, NULL, NULL, scratch) == -1 &&
              g4_qmatvec_many(ops, pool, act, 0, K, mats, 3, NULL, NULL, scratch) == -1 &&
              g4_qmatvec_many(ops, pool, act, T, K, mats, 0, NULL, NULL, scratch) == -1 &&
              g4_qmatvec_many(ops, pool, act, T, K, mats, G4_QMAT_MAX + 1, NULL, NULL, scratch) == -1 &&
              g4_qmatvec_many(ops, pool, act, T, K, uneven, 2, log_rows, &log, scratch) == -1 &&
              g4_qmatvec_many(ops, pool, act, T, K + 1, &badk, 1, NULL, NULL, scratch) == -1,
          "bad fused products refused");
    for (int i = 0; i < 3; i++) free(want[i]), free(got[i]), free_mat(&m[i]);
    free(act), free(scratch);
    g4_pool_destroy(pool);
}

static void check_products(void) {
    /* 4 to 48: the few-row product where a variant has one (in panels of 8 rows: 37 as 8 + 8 + 8 + 8 + 5); 150 x
     * 2560 cuts K into chunks for every variant */
    const int64_t Ts[] = {1, 3, 4, 5, 6, 8, 9, 12, 13, 16, 24, 37, 48, 49, 70, 150};
    for (int v = 0; v < n_variants; v++)
        for (int threads = 1; threads <= 3; threads++)
            for (int qt = 0; qt < G4_QT_COUNT; qt++)
                for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
                    int64_t T = Ts[ti], K = ti % 2 ? 2560 : 96, N = ti % 2 ? 61 : 131;
                    if (T == 150 && (threads != 2 || qt != G4_QT_Q4)) continue; /* slow check: once is enough */
                    check_qmatmul(variants[v], threads, qt, T, K, N);
                }
    /* rows of 515 blocks: a few-row panel of 198 KB, larger than L1 and half of L2 */
    for (int v = 0; v < n_variants; v++) check_qmatmul(variants[v], 2, G4_QT_Q4, 7, 515 * 32, 21);
}

/* One summation order for every kernel, variant and batch: each output is Σ over the blocks in order of
 * fma(exact block dot, weight scale * activation scale, sum), so a row's results do not depend on how many rows
 * run with it (the one-row, few-row and panel products) nor on the variant (all equal to the portable one, bit for
 * bit). That is what makes a session's greedy tokens the same alone or in a batch. */
static void check_canonical(void) {
    const int64_t Ts[] = {1, 2, 3, 4, 7, 8, 9, 16, 17, 48, 49, 150};
    const int64_t Ks[] = {32, 96, 2560, 10240};
    const g4_quant_ops *portable = g4_quant_ops_portable();
    for (int qt = 0; qt < G4_QT_COUNT; qt++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
            const int64_t K = Ks[ki], N = 37, maxT = 150;
            const size_t rb = g4_qact_row_bytes(K);
            testmat m = make_mat(qt, N, K);
            unsigned char *act = make_acts(maxT, K);
            float *want = malloc((size_t)(maxT * N) * 4), *y = malloc((size_t)(maxT * N) * 4);
            for (int64_t t = 0; t < maxT; t++)
                portable->vec(qt, m.w, g4_qrow_bytes(qt, K), N, act + (size_t)t * rb, K, want + t * N);
            for (int v = 0; v < n_variants; v++)
                for (int threads = 1; threads <= 2; threads++) {
                    g4_pool *pool = g4_pool_create(threads);
                    int bad = 0;
                    for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
                        const int64_t T = Ts[ti];
                        if (K == 10240 && T == 150 && threads == 1) continue; /* slow; chunked K once is enough */
                        unsigned char *s = malloc(g4_qmatmul_act_scratch_bytes(variants[v], pool, T, K) + 1);
                        g4_qmatmul_act(variants[v], pool, act, T, K, m.w, qt, N, y, s + 1);
                        for (int64_t i = 0; i < T * N; i++)
                            if (memcmp(&y[i], &want[i], 4) && bad++ < 3)
                                fprintf(stderr, "  %s %s K=%lld T=%lld row %lld col %lld: %.9g vs %.9g\n",
                                        variants[v]->name, g4_qtype_name(qt), (long long)K, (long long)T,
                                        (long long)(i / N), (long long)(i % N), y[i], want[i]);
                        free(s);
                    }
                    CHECK(bad == 0, "%s %s K=%lld threads=%d: %d outputs not bit-identical to one row alone",
                          variants[v]->name, g4_qtype_name(qt), (long long)K, threads, bad);
                    g4_pool_destroy(pool);
                }
            free(want), free(y), free(act);
            free_mat(&m);
        }
}

int main(void) {
    const g4_quant_ops *all[5] = {g4_quant_ops_portable(), g4_quant_ops_avx2(), g4_quant_ops_avx512vnni(),
                                  g4_quant_ops_amx(), g4_quant_ops_neon()};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i]) variants[n_variants++] = all[i];
    printf("variants:");
    for (int i = 0; i < n_variants; i++) printf(" %s", variants[i]->name);
    printf(" (best: %s)\n", g4_quant_ops_best()->name);
    check_names_sizes();
    check_round_trips();
    check_grid_exact();
    check_gptq();
    check_act_quant();
    check_act_variants();
    check_kernels();
    check_canonical();
    check_products();
    /* one-row and few-row products (where a variant has them: 4 up to g4_qmany_max_rows) */
    const int64_t many_rows[] = {1, G4_QVEC_MAX_ROWS, G4_QVEC_MAX_ROWS + 1, 8, 13, 48};
    for (int v = 0; v < n_variants; v++) {
        check_shared_scratch(variants[v]);
        for (int threads = 1; threads <= 3; threads++)
            for (size_t ti = 0; ti < sizeof many_rows / sizeof *many_rows; ti++) {
                if (many_rows[ti] > g4_qmany_max_rows(variants[v])) continue;
                check_many(variants[v], threads, many_rows[ti], 96);
                check_many(variants[v], threads, many_rows[ti], 2560);
            }
    }
    return g4t_finish("test_quant");
}
