/* quant.c — quantized formats, int8 activations, the portable reference kernels and the threaded product. */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"

/* ---- Formats ------------------------------------------------------------------------------------------------ */

static const char *const qtype_names[G4_QT_COUNT] = {"G4_Q8", "G4_Q4", "G4_Q6"};
static const size_t qtype_bytes[G4_QT_COUNT] = {sizeof(g4_block_q8), sizeof(g4_block_q4), sizeof(g4_block_q6)};

const char *g4_qtype_name(int qt) { return qt >= 0 && qt < G4_QT_COUNT ? qtype_names[qt] : NULL; }

int g4_qtype_from_name(const char *name) {
    for (int i = 0; name && i < G4_QT_COUNT; i++)
        if (strcmp(name, qtype_names[i]) == 0) return i;
    return -1;
}

size_t g4_qtype_block_bytes(int qt) { return qt >= 0 && qt < G4_QT_COUNT ? qtype_bytes[qt] : 0; }

size_t g4_qrow_bytes(int qt, int64_t K) {
    if (qt < 0 || qt >= G4_QT_COUNT || K <= 0 || K % G4_QBLOCK) return 0;
    return (size_t)(K / G4_QBLOCK) * qtype_bytes[qt];
}

/* Far beyond any real weight, small enough that 32 squared errors of that size stay finite in float. */
#define SANE_MAX 1e18f

static float sanitize(float v) {
    if (v != v) return 0;
    return v > SANE_MAX ? SANE_MAX : v < -SANE_MAX ? -SANE_MAX : v;
}

/* Round half away from zero after clamping to [lo, hi]; written so compilers can vectorize it. */
static int round_clamp(float v, float lo, float hi) {
    v = v >= lo ? v : lo;
    v = v <= hi ? v : hi;
    return (int)(v + (v >= 0 ? 0.5f : -0.5f));
}

/* Squared error of 32 values against d * k with k = round(x / d) in [lo, hi]; writes k. */
static float block_error(const float *x, float d, int lo, int hi, int8_t *k) {
    float id = 1.0f / d, err = 0;
    for (int i = 0; i < G4_QBLOCK; i++) {
        int q = round_clamp(x[i] * id, (float)lo, (float)hi);
        float e = x[i] - d * (float)q;
        k[i] = (int8_t)q;
        err += e * e;
    }
    return err;
}

/* Whether the 32 values are exactly d * k with integers k in [lo, hi] (writes k); gives up at the first value
 * that is not, which is almost always the first or second. */
static int block_exact(const float *x, float d, int lo, int hi, int8_t *k) {
    float id = 1.0f / d;
    for (int i = 0; i < G4_QBLOCK; i++) {
        int q = round_clamp(x[i] * id, (float)lo, (float)hi);
        if (d * (float)q != x[i]) return 0;
        k[i] = (int8_t)q;
    }
    return 1;
}

/* Scales tried per block: the block's extreme put on grid step -lo + 1 down to -lo / 2 in steps of -lo / 32 grid
 * steps (G4_Q4: 9 to 4 by 0.25, 21 scales; G4_Q6: 33 to 16 by 1). On the trained golden model (bench/RESULTS.md)
 * this took q4 from a mean KL of 6.5e-2 (the 4 outermost whole steps) to 6.0e-2; finer steps measured no better. */
#define FIT_STEPS_PER_GRID 32

/* Most scales fit_block tries per pass (G4_Q4: 21, G4_Q6: 18). */
#define FIT_MAX_SCALES 24

/* For each of n scales d[s]: the squared error of 32 values against d[s] * k with k = round(x / d[s]) in
 * [lo, hi], and the sums x·k and k·k of the least-squares scale for those k. The scales run side by side (the
 * inner loop vectorizes across them) while each one's sums add up element by element, in order, exactly as one
 * scale at a time would. */
static void scale_errors(const float *x, const float *d, int n, int lo, int hi, float *err, double *xk, double *kk) {
    float id[FIT_MAX_SCALES], q[G4_QBLOCK][FIT_MAX_SCALES];
    for (int s = 0; s < n; s++) id[s] = 1.0f / d[s], err[s] = 0, xk[s] = 0, kk[s] = 0;
    for (int i = 0; i < G4_QBLOCK; i++)
        for (int s = 0; s < n; s++) {
            q[i][s] = (float)round_clamp(x[i] * id[s], (float)lo, (float)hi);
            const float e = x[i] - d[s] * q[i][s];
            err[s] += e * e;
        }
    for (int i = 0; i < G4_QBLOCK; i++)
        for (int s = 0; s < n; s++) {
            xk[s] += (double)x[i] * (double)q[i][s];
            kk[s] += (double)(q[i][s] * q[i][s]);
        }
}

/* The bf16 scale d and integers k in [lo, hi] (lo = -hi - 1) that reproduce 32 values best. A block that is
 * s * k for a bf16 s and integers k (a QAT checkpoint) has d = s = bf16(max|x| / j) for j its largest |k|: every j
 * is tried for that first, and such a block comes back exactly. Other blocks take the smallest squared error among
 * scales that put the largest magnitude between one step past the grid's end (short of it after rounding) and
 * half of it (the outlier clipped so the other 31 values get a finer grid), the whole steps among them, each also
 * refitted by least squares for the k's it gives (ties go to the earlier scale, a scale before its refit). */
static uint16_t fit_block(const float *x, int lo, int hi, int8_t *k) {
    float amax = 0;
    for (int i = 0; i < G4_QBLOCK; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    memset(k, 0, G4_QBLOCK);
    if (amax == 0) return 0;
    for (int j = -lo; j > 0; j--) {
        uint16_t h = g4_f32_to_bf16(amax / (float)j);
        if (g4_bf16_to_f32(h) > 0 && block_exact(x, g4_bf16_to_f32(h), lo, hi, k)) return h;
    }
    const int n = (-lo / 2 + 1) * FIT_STEPS_PER_GRID / -lo + 1;
    uint16_t h[2][FIT_MAX_SCALES];
    float d[2][FIT_MAX_SCALES], err[2][FIT_MAX_SCALES];
    double xk[FIT_MAX_SCALES], kk[FIT_MAX_SCALES];
    for (int s = 0; s < n; s++) {
        h[0][s] = g4_f32_to_bf16(amax / ((float)(-lo + 1) - (float)(s * -lo) / FIT_STEPS_PER_GRID));
        d[0][s] = g4_bf16_to_f32(h[0][s]);
    }
    scale_errors(x, d[0], n, lo, hi, err[0], xk, kk);
    for (int s = 0; s < n; s++) {
        h[1][s] = g4_f32_to_bf16(kk[s] > 0 ? (float)(xk[s] / kk[s]) : 0);
        d[1][s] = g4_bf16_to_f32(h[1][s]);
    }
    scale_errors(x, d[1], n, lo, hi, err[1], xk, kk);
    float best = INFINITY;
    uint16_t best_d = 0;
    for (int s = 0; s < n; s++)
        for (int refit = 0; refit < 2 && d[refit][s] > 0; refit++)
            if (err[refit][s] < best) best = err[refit][s], best_d = h[refit][s];
    if (best_d) block_error(x, g4_bf16_to_f32(best_d), lo, hi, k);
    return best_d;
}

static void quantize_q8(const float *x, g4_block_q8 *b) {
    float v[G4_QBLOCK], amax = 0;
    for (int i = 0; i < G4_QBLOCK; i++) v[i] = sanitize(x[i]), amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
    b->d = amax / 127.0f;
    float id = amax > 0 ? 127.0f / amax : 0;
    for (int i = 0; i < G4_QBLOCK; i++) b->q[i] = (int8_t)round_clamp(v[i] * id, -127, 127);
}

static void pack_q4(uint16_t d, const int8_t *k, g4_block_q4 *b) {
    b->d = d;
    for (int j = 0; j < 16; j++) b->q[j] = (uint8_t)((k[j] + 8) | (k[j + 16] + 8) << 4);
}

static void pack_q6(uint16_t d, const int8_t *k, g4_block_q6 *b) {
    b->d = d;
    memset(b->qh, 0, sizeof b->qh);
    for (int j = 0; j < 16; j++) b->ql[j] = (uint8_t)(((k[j] + 32) & 15) | ((k[j + 16] + 32) & 15) << 4);
    for (int j = 0; j < G4_QBLOCK; j++) b->qh[j % 8] |= (uint8_t)(((k[j] + 32) >> 4) << (2 * (j / 8)));
}

/* G4_Q4 and G4_Q6 blocks: a bf16 scale and integers in [lo, hi]. */
static int grid_lo(int qt) { return qt == G4_QT_Q4 ? -8 : -32; }

static void pack_block(int qt, uint16_t d, const int8_t *k, void *blk) {
    if (qt == G4_QT_Q4) pack_q4(d, k, blk);
    else pack_q6(d, k, blk);
}

static void quantize_grid(int qt, const float *x, void *blk) {
    float v[G4_QBLOCK];
    int8_t k[G4_QBLOCK];
    for (int i = 0; i < G4_QBLOCK; i++) v[i] = sanitize(x[i]);
    uint16_t d = fit_block(v, grid_lo(qt), -grid_lo(qt) - 1, k);
    pack_block(qt, d, k, blk);
}

/* The signed integer values of one block (value = scale * v). */
static float block_values(int qt, const void *blk, int8_t *v) {
    if (qt == G4_QT_Q8) {
        const g4_block_q8 *b = blk;
        memcpy(v, b->q, G4_QBLOCK);
        return b->d;
    }
    if (qt == G4_QT_Q4) {
        const g4_block_q4 *b = blk;
        for (int j = 0; j < 16; j++) v[j] = (int8_t)((b->q[j] & 15) - 8), v[j + 16] = (int8_t)((b->q[j] >> 4) - 8);
        return g4_bf16_to_f32(b->d);
    }
    const g4_block_q6 *b = blk;
    for (int j = 0; j < G4_QBLOCK; j++) {
        int lo = j < 16 ? b->ql[j] & 15 : b->ql[j - 16] >> 4;
        int hi = (b->qh[j % 8] >> (2 * (j / 8))) & 3;
        v[j] = (int8_t)((lo | hi << 4) - 32);
    }
    return g4_bf16_to_f32(b->d);
}

int g4_quantize_row(int qt, const float *x, int64_t K, void *dst) {
    size_t bytes = g4_qtype_block_bytes(qt);
    if (!g4_qrow_bytes(qt, K)) return -1;
    for (int64_t b = 0; b < K / G4_QBLOCK; b++) {
        void *blk = (char *)dst + (size_t)b * bytes;
        const float *xb = x + b * G4_QBLOCK;
        if (qt == G4_QT_Q8) quantize_q8(xb, blk);
        else quantize_grid(qt, xb, blk);
    }
    return 0;
}

/* Cholesky factor L (lower, L L^T = a) of the n x n matrix a (row stride `stride`), in place; -1 when a is not
 * positive definite. */
static int cholesky(double *a, int n, int stride) {
    for (int j = 0; j < n; j++) {
        double s = a[j * stride + j];
        for (int k = 0; k < j; k++) s -= a[j * stride + k] * a[j * stride + k];
        if (!(s > 0)) return -1;
        a[j * stride + j] = sqrt(s);
        for (int i = j + 1; i < n; i++) {
            double t = a[i * stride + j];
            for (int k = 0; k < j; k++) t -= a[i * stride + k] * a[j * stride + k];
            a[i * stride + j] = t / a[j * stride + j];
        }
    }
    return 0;
}

/* One diagonal block (n x n, row stride G4_GPTQ_SPAN) of a Gram matrix to the upper factor U of its damped
 * inverse: H + damp, then H^-1 = L^-T L^-1 from H = L L^T, then U with U^T U = H^-1. */
static int gptq_factor_block(float *g, int n, double *h, double *li) {
    const int S = G4_GPTQ_SPAN;
    double mean = 0;
    for (int i = 0; i < n; i++) mean += g[i * S + i] / n;
    if (!(mean > 0)) mean = 1; /* inputs that were always 0: plain rounding (U = identity, scaled) */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) h[i * S + j] = g[i * S + j] + (i == j ? G4_GPTQ_DAMP * mean : 0);
    if (cholesky(h, n, S)) return -1;
    for (int i = 0; i < n; i++) { /* li = L^-1, lower */
        for (int j = 0; j < n; j++) li[i * S + j] = 0;
        li[i * S + i] = 1 / h[i * S + i];
        for (int j = 0; j < i; j++) {
            double t = 0;
            for (int k = j; k < i; k++) t += h[i * S + k] * li[k * S + j];
            li[i * S + j] = -t / h[i * S + i];
        }
    }
    for (int i = 0; i < n; i++) /* h = L^-T L^-1 (symmetric) */
        for (int j = 0; j <= i; j++) {
            double t = 0;
            for (int k = i; k < n; k++) t += li[k * S + i] * li[k * S + j];
            h[i * S + j] = h[j * S + i] = t;
        }
    if (cholesky(h, n, S)) return -1;
    for (int i = 0; i < n; i++) /* U = L2^T */
        for (int j = 0; j < n; j++) g[i * S + j] = j >= i ? (float)h[j * S + i] : 0;
    return 0;
}

int g4_gptq_factor(float *gram, int64_t K) {
    const int S = G4_GPTQ_SPAN;
    double *h = malloc((size_t)S * S * sizeof(double)), *li = malloc((size_t)S * S * sizeof(double));
    int rc = h && li ? 0 : -1;
    for (int64_t b0 = 0; rc == 0 && b0 < K; b0 += S)
        rc = gptq_factor_block(gram + b0 * S, (int)(K - b0 < S ? K - b0 : S), h, li);
    free(h), free(li);
    return rc;
}

int g4_quantize_row_gptq(int qt, const float *x, int64_t K, const float *u, float *work, void *dst) {
    if ((qt != G4_QT_Q4 && qt != G4_QT_Q6) || !g4_qrow_bytes(qt, K)) return -1;
    const int S = G4_GPTQ_SPAN, lo = grid_lo(qt), hi = -lo - 1;
    const size_t bytes = g4_qtype_block_bytes(qt);
    float *w = work;
    for (int64_t i = 0; i < K; i++) w[i] = sanitize(x[i]);
    for (int64_t b0 = 0; b0 < K; b0 += S) {
        const int n = (int)(K - b0 < S ? K - b0 : S);
        const float *U = u + b0 * S;
        float *wb = w + b0;
        for (int c0 = 0; c0 < n; c0 += G4_QBLOCK) {
            int8_t k[G4_QBLOCK];
            /* The scale fits the block as earlier roundings left it; each value then rounds in turn and its
             * error, through U, moves the values after it in this span. */
            const uint16_t h = fit_block(wb + c0, lo, hi, k);
            const float d = g4_bf16_to_f32(h);
            for (int i = c0; i < c0 + G4_QBLOCK; i++) {
                int q = d > 0 ? round_clamp(wb[i] / d, (float)lo, (float)hi) : 0;
                float e = (wb[i] - d * (float)q) / U[i * S + i];
                k[i - c0] = (int8_t)q;
                for (int j = i + 1; j < n; j++) wb[j] -= e * U[i * S + j];
            }
            pack_block(qt, h, k, (char *)dst + (size_t)((b0 + c0) / G4_QBLOCK) * bytes);
        }
    }
    return 0;
}

int g4_dequantize_row(int qt, const void *src, int64_t K, float *dst) {
    size_t bytes = g4_qtype_block_bytes(qt);
    if (!g4_qrow_bytes(qt, K)) return -1;
    int8_t v[G4_QBLOCK];
    for (int64_t b = 0; b < K / G4_QBLOCK; b++) {
        float d = block_values(qt, (const char *)src + (size_t)b * bytes, v);
        for (int i = 0; i < G4_QBLOCK; i++) dst[b * G4_QBLOCK + i] = d * (float)v[i];
    }
    return 0;
}

/* ---- Activations -------------------------------------------------------------------------------------------- */

size_t g4_qact_row_bytes(int64_t K) {
    size_t raw = (size_t)K + (size_t)(K / G4_QBLOCK) * 8;
    return (raw + 63) & ~(size_t)63;
}

void g4_quantize_act_row(const float *x, int64_t K, void *row) {
    int8_t *q = row;
    float *d = (float *)((char *)row + K);
    int32_t *s = (int32_t *)((char *)row + K + K / 8);
    for (int64_t b = 0; b < K / G4_QBLOCK; b++) {
        const float *xb = x + b * G4_QBLOCK;
        float amax = 0;
        for (int i = 0; i < G4_QBLOCK; i++) amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
        float id = amax > 0 ? 127.0f / amax : 0;
        int32_t sum = 0;
        for (int i = 0; i < G4_QBLOCK; i++) {
            int v = round_clamp(xb[i] * id, -127, 127);
            q[b * G4_QBLOCK + i] = (int8_t)v;
            sum += v;
        }
        d[b] = amax / 127.0f;
        s[b] = sum;
    }
}

size_t g4_qpanel_bytes(int t_tile, int64_t K) { return (size_t)(K / G4_QBLOCK) * (size_t)t_tile * 40; }

void g4_qpanel_pack(int t_tile, const void *act, size_t act_stride, int nt, int64_t K, void *panel) {
    int64_t nb = K / G4_QBLOCK;
    for (int64_t b = 0; b < nb; b++) {
        unsigned char *p = (unsigned char *)panel + (size_t)b * (size_t)t_tile * 40;
        float *d = (float *)(p + (size_t)t_tile * 32);
        int32_t *s = (int32_t *)(p + (size_t)t_tile * 36);
        for (int t = 0; t < t_tile; t++) {
            const unsigned char *row = (const unsigned char *)act + (size_t)t * act_stride;
            for (int g = 0; g < 8; g++) {
                unsigned char *dst = p + ((size_t)g * t_tile + t) * 4;
                if (t < nt) memcpy(dst, row + b * G4_QBLOCK + g * 4, 4);
                else memset(dst, 0, 4);
            }
            d[t] = t < nt ? g4_qact_d(row, K)[b] : 0;
            s[t] = t < nt ? g4_qact_s(row, K)[b] : 0;
        }
    }
}

/* ---- Portable kernels --------------------------------------------------------------------------------------- */

/* One weight block · 32 activations, straight from the stored bytes (loops simple enough to vectorize). */
static int32_t block_dot(int qt, const unsigned char *blk, const int8_t *a) {
    int32_t s = 0;
    if (qt == G4_QT_Q8) {
        const int8_t *q = (const int8_t *)(blk + 4);
        for (int i = 0; i < G4_QBLOCK; i++) s += q[i] * a[i];
    } else if (qt == G4_QT_Q4) {
        const unsigned char *q = blk + 2;
        for (int j = 0; j < 16; j++) s += ((q[j] & 15) - 8) * a[j] + ((q[j] >> 4) - 8) * a[j + 16];
    } else {
        const unsigned char *ql = blk + 2, *qh = blk + 18;
        for (int h = 0; h < 2; h++) /* elements 8h..8h+7 and 16+8h..16+8h+7 */
            for (int j = 0; j < 8; j++) {
                int v0 = (ql[8 * h + j] & 15) | ((qh[j] >> (2 * h)) & 3) << 4;
                int v1 = (ql[8 * h + j] >> 4) | ((qh[j] >> (2 * h + 4)) & 3) << 4;
                s += (v0 - 32) * a[8 * h + j] + (v1 - 32) * a[16 + 8 * h + j];
            }
    }
    return s;
}

static float block_scale(int qt, const unsigned char *blk) {
    if (qt == G4_QT_Q8) {
        float d;
        memcpy(&d, blk, 4);
        return d;
    }
    uint16_t h;
    memcpy(&h, blk, 2);
    return g4_bf16_to_f32(h);
}

static void vec_portable(int qt, const void *w, size_t row_bytes, int64_t n, const void *act, int64_t K, float *y) {
    size_t bb = g4_qtype_block_bytes(qt);
    const int8_t *aq = act;
    const float *ad = g4_qact_d(act, K);
    for (int64_t r = 0; r < n; r++) {
        const unsigned char *row = (const unsigned char *)w + (size_t)r * row_bytes;
        float acc = 0;
        for (int64_t b = 0; b < K / G4_QBLOCK; b++) {
            const unsigned char *blk = row + (size_t)b * bb;
            acc = fmaf((float)block_dot(qt, blk, aq + b * G4_QBLOCK), block_scale(qt, blk) * ad[b], acc);
        }
        y[r] = acc;
    }
}

/* Portable unpacked rows: signed values, then float scales. */
static void unpack_w_portable(int qt, const void *wrow, int64_t b0, int64_t nb, void *dst) {
    size_t bb = g4_qtype_block_bytes(qt);
    int8_t *v = dst;
    float *d = (float *)((char *)dst + nb * G4_QBLOCK);
    for (int64_t b = 0; b < nb; b++)
        d[b] = block_values(qt, (const char *)wrow + (size_t)(b0 + b) * bb, v + b * G4_QBLOCK);
}

enum { PORTABLE_T = 4, PORTABLE_N = 4 };

static void gemm_portable(int qt, const void *wrows, size_t wstride, int nr, const void *panel, int nt, int64_t b0,
                          int64_t nb, float *out, int accumulate) {
    float acc[PORTABLE_N][PORTABLE_T] = {{0}};
    for (int i = 0; accumulate && i < nr; i++)
        for (int t = 0; t < PORTABLE_T; t++) acc[i][t] = out[i * PORTABLE_T + t];
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *p = (const int8_t *)panel + (size_t)(b0 + b) * PORTABLE_T * 40;
        const float *ad = (const float *)(p + PORTABLE_T * 32);
        for (int i = 0; i < nr; i++) {
            const int8_t *wv = (const int8_t *)wrows + (size_t)i * wstride + b * G4_QBLOCK;
            float wd = ((const float *)((const char *)wrows + (size_t)i * wstride + nb * G4_QBLOCK))[b];
            for (int t = 0; t < PORTABLE_T; t++) {
                int32_t s = 0;
                for (int g = 0; g < 8; g++)
                    for (int j = 0; j < 4; j++) s += wv[4 * g + j] * p[(g * PORTABLE_T + t) * 4 + j];
                acc[i][t] = fmaf((float)s, wd * ad[t], acc[i][t]);
            }
        }
    }
    for (int i = 0; i < nr; i++)
        for (int t = 0; t < PORTABLE_T; t++) out[i * PORTABLE_T + t] = acc[i][t];
    (void)qt, (void)nt;
}

static const g4_quant_ops portable_ops = {"portable",        g4_quantize_act_row, vec_portable, PORTABLE_T,
                                          PORTABLE_N,        unpack_w_portable,   gemm_portable};

const g4_quant_ops *g4_quant_ops_portable(void) { return &portable_ops; }

const g4_quant_ops *g4_quant_ops_best(void) {
    const char *force = getenv("GEMMA4C_KERNELS");
    const g4_quant_ops *ops = NULL;
    if (force && strcmp(force, "portable") == 0) return g4_quant_ops_portable();
    if (force && strcmp(force, "avx2") == 0) ops = g4_quant_ops_avx2();
    else if (force && strcmp(force, "avx512") == 0) ops = g4_quant_ops_avx512vnni();
    else if (force && strcmp(force, "amx") == 0) ops = g4_quant_ops_amx();
    else if (force && strcmp(force, "neon") == 0) ops = g4_quant_ops_neon();
    if (ops) return ops;
    /* AMX only on request: with a scale per 32-value block every tile product is stored and rescaled, and on a
     * Xeon with AMX-INT8 it measured no faster than VNNI (2 and 16 threads, 512 x 2560 x 10240 Q4). */
    if ((ops = g4_quant_ops_avx512vnni())) return ops;
    if ((ops = g4_quant_ops_avx2())) return ops;
    if ((ops = g4_quant_ops_neon())) return ops;
    return g4_quant_ops_portable();
}

/* ---- The threaded product ----------------------------------------------------------------------------------- */

/* From this many activation rows on, products need scratch: the few-row product's panels, the panel product's
 * tiles. */
enum { SCRATCH_MIN_T = G4_QVEC_MAX_ROWS + 1 };
/* Decode work items: enough rows to amortize the call, few enough to balance the workers. */
enum { VEC_ROWS = 32 };
/* gemm work items: this many tiles of n_tile rows, sharing each pass over an activation chunk in cache. */
enum { GROUP_TILES = 8 };
/* The activation chunk (all panels over kc blocks) aims at half of a 1 MiB L2. */
enum { ACT_CHUNK_BYTES = 512 * 1024 };

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }
static void *align_ptr(void *p) { return (void *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

static int64_t n_panels(const g4_quant_ops *ops, int64_t T) { return (T + ops->t_tile - 1) / ops->t_tile; }

static int64_t chunk_blocks(const g4_quant_ops *ops, int64_t T, int64_t K) {
    int64_t nbk = K / G4_QBLOCK, kc = ACT_CHUNK_BYTES / (n_panels(ops, T) * ops->t_tile * 40);
    kc = kc < 8 ? 8 : kc;
    return kc < nbk ? kc : nbk;
}

/* Per worker: the unpacked weight tile of one chunk, and the group's outputs for every panel, summed over the
 * chunks there so that y is written once. The tile is sized for a whole row rather than one chunk (at most a few
 * dozen KiB): chunks grow as T shrinks, and this keeps every size monotonic in T and K, so that a scratch sized
 * for the largest product serves all smaller ones. */
static size_t unpacked_bytes(const g4_quant_ops *ops, int64_t K) {
    size_t tile = (size_t)ops->n_tile * (size_t)(K / G4_QBLOCK) * G4_QUNPACKED_BLOCK;
    size_t rows = (size_t)ops->t_tile * GROUP_TILES * (size_t)ops->n_tile * sizeof(float); /* reused for output */
    return align64(tile > rows ? tile : rows);
}
static size_t worker_bytes(const g4_quant_ops *ops, int64_t T, int64_t K) {
    return unpacked_bytes(ops, K) +
           align64((size_t)n_panels(ops, T) * GROUP_TILES * (size_t)ops->n_tile * (size_t)ops->t_tile * sizeof(float));
}

/* The few-row product (ops->few_rows) takes up to FEW_MAX_T activation rows, in panels of G4_QFEW_T; beyond, the
 * panel product is faster. Work items are FEW_ROWS weight rows. */
enum { FEW_MAX_T = 48, FEW_ROWS = 16 };
static size_t few_bytes(const g4_quant_ops *ops, int64_t T, int64_t K) {
    if (!ops->few_rows) return 0;
    const int64_t t = T < FEW_MAX_T ? T : FEW_MAX_T;
    return (size_t)((t + G4_QFEW_T - 1) / G4_QFEW_T) * (size_t)(K / G4_QBLOCK) * G4_QFEW_PANEL_BLOCK;
}

size_t g4_qmatmul_act_scratch_bytes(const g4_quant_ops *ops, const g4_pool *pool, int64_t T, int64_t K) {
    if (T < SCRATCH_MIN_T) return 0;
    size_t gemm = align64((size_t)n_panels(ops, T) * g4_qpanel_bytes(ops->t_tile, K)) +
                  (size_t)g4_pool_size(pool) * worker_bytes(ops, T, K);
    return 64 + (gemm > few_bytes(ops, T, K) ? gemm : few_bytes(ops, T, K));
}

size_t g4_qmatmul_scratch_bytes(const g4_quant_ops *ops, const g4_pool *pool, int64_t T, int64_t K) {
    return 64 + align64((size_t)T * g4_qact_row_bytes(K)) + g4_qmatmul_act_scratch_bytes(ops, pool, T, K);
}

typedef struct qjob {
    const g4_quant_ops *ops;
    const float *x;
    unsigned char *act;
    size_t act_stride;
    int64_t T, K, N;
    const unsigned char *w;
    size_t row_bytes;
    int qt;
    float *y;
    unsigned char *panels;
    size_t panel_bytes;
    unsigned char *work;
    size_t work_bytes;
    int64_t kc;
} qjob;

static void quantize_range(void *ctx, int64_t begin, int64_t end, int worker) {
    qjob *j = ctx;
    for (int64_t t = begin; t < end; t++)
        j->ops->quantize_act(j->x + t * j->K, j->K, j->act + (size_t)t * j->act_stride);
    (void)worker;
}

void g4_quantize_acts(const g4_quant_ops *ops, g4_pool *pool, const float *x, int64_t T, int64_t K, void *act) {
    qjob j = {.ops = ops, .x = x, .act = act, .act_stride = g4_qact_row_bytes(K), .K = K};
    g4_pool_for(pool, T, 8, quantize_range, &j);
}

/* g4_qmatvec_many's work: items of `item_rows` rows, stacked matrix after matrix or in lockstep. Up to
 * G4_QVEC_MAX_ROWS activation rows each weight row streams once per activation row through ops->vec; more go
 * through the few-row product on the panels. */
typedef struct many_job {
    const g4_quant_ops *ops;
    const unsigned char *act;
    size_t act_stride;
    int64_t T, K, item_rows;
    const unsigned char *panels; /* NULL: ops->vec */
    const g4_qmat *mats;
    int count;
    int64_t first_item[G4_QMAT_MAX + 1]; /* stacked: matrix i has items first_item[i] .. first_item[i + 1] - 1 */
    g4_qrows_fn rows_done;
    void *ctx;
} many_job;

static void mat_rows(const many_job *j, const g4_qmat *m, int64_t n0, int64_t n1) {
    const size_t rb = g4_qrow_bytes(m->qt, j->K);
    const unsigned char *w = (const unsigned char *)m->w + (size_t)n0 * rb;
    if (j->panels) {
        const int64_t ahead = m->N - n1 < j->item_rows ? m->N - n1 : j->item_rows;
        j->ops->few_rows(m->qt, w, rb, n1 - n0, j->K / G4_QBLOCK, j->panels, (int)j->T, m->y + n0, m->N, ahead);
        return;
    }
    for (int64_t t = 0; t < j->T; t++)
        j->ops->vec(m->qt, w, rb, n1 - n0, j->act + (size_t)t * j->act_stride, j->K, m->y + t * m->N + n0);
}

static void many_range(void *ctx, int64_t begin, int64_t end, int worker) {
    many_job *j = ctx;
    (void)worker;
    if (j->rows_done) {
        int64_t n0 = begin * j->item_rows, n1 = end * j->item_rows < j->mats[0].N ? end * j->item_rows : j->mats[0].N;
        for (int i = 0; i < j->count; i++) mat_rows(j, &j->mats[i], n0, n1);
        j->rows_done(j->ctx, n0, n1);
        return;
    }
    for (int i = 0; i < j->count; i++) {
        int64_t b = begin > j->first_item[i] ? begin : j->first_item[i];
        int64_t e = end < j->first_item[i + 1] ? end : j->first_item[i + 1];
        if (b >= e) continue;
        int64_t n0 = (b - j->first_item[i]) * j->item_rows, n1 = (e - j->first_item[i]) * j->item_rows;
        mat_rows(j, &j->mats[i], n0, n1 < j->mats[i].N ? n1 : j->mats[i].N);
    }
}

int64_t g4_qmany_max_rows(const g4_quant_ops *ops) { return ops->few_rows ? FEW_MAX_T : G4_QVEC_MAX_ROWS; }

/* Whether g4_qmatvec_many takes these arguments. */
static int many_args_ok(const g4_quant_ops *ops, int64_t T, int64_t K, const g4_qmat *mats, int count,
                        g4_qrows_fn rows_done) {
    if (T <= 0 || T > g4_qmany_max_rows(ops) || count <= 0 || count > G4_QMAT_MAX) return 0;
    for (int i = 0; i < count; i++)
        if (mats[i].N <= 0 || !g4_qrow_bytes(mats[i].qt, K) || (rows_done && mats[i].N != mats[0].N)) return 0;
    return 1;
}

int g4_qmatvec_many(const g4_quant_ops *ops, g4_pool *pool, const void *act, int64_t T, int64_t K,
                    const g4_qmat *mats, int count, g4_qrows_fn rows_done, void *ctx, void *scratch) {
    if (!many_args_ok(ops, T, K, mats, count, rows_done)) return -1;
    const int few = T > G4_QVEC_MAX_ROWS;
    many_job j = {.ops = ops, .act = act, .act_stride = g4_qact_row_bytes(K), .T = T, .K = K,
                  .item_rows = few ? FEW_ROWS : VEC_ROWS, .mats = mats, .count = count, .rows_done = rows_done,
                  .ctx = ctx};
    for (int i = 0; i < count; i++)
        j.first_item[i + 1] = j.first_item[i] + (mats[i].N + j.item_rows - 1) / j.item_rows;
    if (few) {
        unsigned char *panels = align_ptr(scratch);
        ops->few_panel(act, j.act_stride, (int)T, K, panels);
        j.panels = panels;
    }
    g4_pool_for(pool, rows_done ? j.first_item[1] : j.first_item[count], 1, many_range, &j);
    return 0;
}

static void panel_range(void *ctx, int64_t begin, int64_t end, int worker) {
    qjob *j = ctx;
    int tt = j->ops->t_tile;
    for (int64_t p = begin; p < end; p++) {
        int64_t t0 = p * tt;
        int nt = j->T - t0 < tt ? (int)(j->T - t0) : tt;
        g4_qpanel_pack(tt, j->act + (size_t)t0 * j->act_stride, j->act_stride, nt, j->K,
                       j->panels + p * j->panel_bytes);
    }
    (void)worker;
}

/* The weight bytes of rows [n0, n0 + nr) over blocks [b0, b0 + nb) are first touched by unpack_w: fetching them
 * while the previous tile computes keeps that from waiting on memory. */
static void prefetch_rows(const qjob *j, int64_t n0, int64_t nr, int64_t b0, int64_t nb) {
    size_t bb = j->row_bytes / (size_t)(j->K / G4_QBLOCK), len = (size_t)nb * bb;
    for (int64_t n = n0; n < n0 + nr; n++) {
        const unsigned char *p = j->w + (size_t)n * j->row_bytes + (size_t)b0 * bb;
        for (size_t off = 0; off < len; off += 64) __builtin_prefetch(p + off);
    }
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Writes the group's columns [g0, g1) of y from acc (per panel and tile: [row][t]) through a row-ordered copy in
 * `rows`: whole-row memcpy keeps many cache lines of y in flight, where scattered scalar stores stall. */
static void store_group(const qjob *j, int64_t g0, int64_t g1, const float *acc, float *rows) {
    int tt = j->ops->t_tile, ntile = j->ops->n_tile;
    int64_t width = g1 - g0;
    for (int64_t p = 0; p < n_panels(j->ops, j->T); p++) {
        int64_t t0 = p * tt, nt = min64(j->T - t0, tt);
        for (int64_t n = 0; n < width; n++) {
            const float *src = acc + ((p * GROUP_TILES + n / ntile) * ntile + n % ntile) * tt;
            for (int64_t t = 0; t < nt; t++) rows[t * width + n] = src[t];
        }
        for (int64_t t = 0; t < nt; t++)
            memcpy(j->y + (t0 + t) * j->N + g0, rows + t * width, (size_t)width * sizeof(float));
    }
}

/* Rows [g0, g1) of W (at most GROUP_TILES tiles) against every panel. K is cut into chunks whose activations stay
 * in cache; per chunk each tile is unpacked once and run over all panels, its sums kept in acc across chunks. */
static void gemm_group(const qjob *j, int64_t g0, int64_t g1, unsigned char *wbuf, float *acc) {
    const g4_quant_ops *ops = j->ops;
    int tt = ops->t_tile, ntile = ops->n_tile;
    int64_t nbk = j->K / G4_QBLOCK, panels = n_panels(ops, j->T);
    for (int64_t b0 = 0; b0 < nbk; b0 += j->kc) {
        int64_t nb = min64(nbk - b0, j->kc);
        size_t wstride = (size_t)nb * G4_QUNPACKED_BLOCK;
        for (int64_t n0 = g0, tile = 0; n0 < g1; n0 += ntile, tile++) {
            int nr = (int)min64(g1 - n0, ntile);
            for (int i = 0; i < nr; i++)
                ops->unpack_w(j->qt, j->w + (size_t)(n0 + i) * j->row_bytes, b0, nb, wbuf + i * wstride);
            /* the next tile's weights: this chunk's next rows, or the group's first rows in the next chunk */
            if (n0 + ntile < g1) prefetch_rows(j, n0 + ntile, min64(g1 - n0 - ntile, ntile), b0, nb);
            else if (b0 + nb < nbk) prefetch_rows(j, g0, min64(g1 - g0, ntile), b0 + nb, min64(nbk - b0 - nb, j->kc));
            for (int64_t p = 0; p < panels; p++)
                ops->gemm(j->qt, wbuf, wstride, nr, j->panels + p * j->panel_bytes, (int)min64(j->T - p * tt, tt), b0,
                          nb, acc + (p * GROUP_TILES + tile) * ntile * tt, b0 > 0);
        }
    }
}

static void gemm_range(void *ctx, int64_t begin, int64_t end, int worker) {
    qjob *j = ctx;
    int64_t group = (int64_t)j->ops->n_tile * GROUP_TILES;
    unsigned char *wbuf = j->work + (size_t)worker * j->work_bytes;
    float *acc = (float *)(wbuf + unpacked_bytes(j->ops, j->K));
    for (int64_t g = begin; g < end; g++) {
        int64_t g0 = g * group, g1 = min64(g0 + group, j->N);
        gemm_group(j, g0, g1, wbuf, acc);
        store_group(j, g0, g1, acc, (float *)wbuf); /* the unpacked tile is no longer needed */
    }
}

int g4_qmatmul_act(const g4_quant_ops *ops, g4_pool *pool, const void *act, int64_t T, int64_t K, const void *w,
                   int wtype, int64_t N, float *y, void *scratch) {
    if (T <= 0 || N <= 0 || !g4_qrow_bytes(wtype, K)) return -1;
    if (T <= g4_qmany_max_rows(ops)) {
        g4_qmat m = {w, wtype, N, y};
        return g4_qmatvec_many(ops, pool, act, T, K, &m, 1, NULL, NULL, scratch);
    }
    qjob j = {.ops = ops, .act = (unsigned char *)act, .act_stride = g4_qact_row_bytes(K), .T = T, .K = K, .N = N,
              .w = w, .row_bytes = g4_qrow_bytes(wtype, K), .qt = wtype, .y = y};
    int64_t panels = n_panels(ops, T), group = (int64_t)ops->n_tile * GROUP_TILES;
    j.panels = align_ptr(scratch);
    j.panel_bytes = g4_qpanel_bytes(ops->t_tile, K);
    j.work = j.panels + align64((size_t)panels * j.panel_bytes);
    j.work_bytes = worker_bytes(ops, T, K);
    j.kc = chunk_blocks(ops, T, K);
    g4_pool_for(pool, panels, 1, panel_range, &j);
    g4_pool_for(pool, (N + group - 1) / group, 1, gemm_range, &j);
    return 0;
}

/* g4_qmatmul_scratch_bytes's layout: the quantized rows, then the product's own scratch. */
static unsigned char *quantize_into(const g4_quant_ops *ops, g4_pool *pool, const float *x, int64_t T, int64_t K,
                                    void *scratch, unsigned char **rest) {
    unsigned char *act = align_ptr(scratch);
    g4_quantize_acts(ops, pool, x, T, K, act);
    *rest = act + align64((size_t)T * g4_qact_row_bytes(K));
    return act;
}

int g4_qmatmul(const g4_quant_ops *ops, g4_pool *pool, const float *x, int64_t T, int64_t K, const void *w,
               int wtype, int64_t N, float *y, void *scratch) {
    if (T <= 0 || N <= 0 || !g4_qrow_bytes(wtype, K)) return -1;
    unsigned char *rest, *act = quantize_into(ops, pool, x, T, K, scratch, &rest);
    return g4_qmatmul_act(ops, pool, act, T, K, w, wtype, N, y, rest);
}

int g4_qmatmul_many(const g4_quant_ops *ops, g4_pool *pool, const float *x, int64_t T, int64_t K,
                    const g4_qmat *mats, int count, g4_qrows_fn rows_done, void *ctx, void *scratch) {
    if (!many_args_ok(ops, T, K, mats, count, rows_done)) return -1;
    unsigned char *rest, *act = quantize_into(ops, pool, x, T, K, scratch, &rest);
    return g4_qmatvec_many(ops, pool, act, T, K, mats, count, rows_done, ctx, rest);
}
