/* ops_portable.c — plain C primitives: the reference every SIMD variant is tested against. */
#include "kernels.h"

#include <math.h>

static float dot_portable(const float *a, const float *b, int64_t n) {
    /* Eight partial sums: keeps rounding close to the SIMD variants and lets compilers vectorize. */
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float tail = 0;
    for (; i < n; i++) tail += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

static void axpy_portable(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void to_f32_portable(float *dst, const void *src, g4_dtype dt, int64_t n) {
    if (dt == G4_DT_F32) {
        const float *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = s[i];
    } else if (dt == G4_DT_BF16) {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = g4_bf16_to_f32(s[i]);
    } else {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = g4_f16_to_f32(s[i]);
    }
}

static void softcap_portable(float *x, int64_t n, float cap) {
    for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}

static void gelu_mul_portable(float *g, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g4_gelu_tanh(g[i]) * (up ? up[i] : 1.0f);
}

/* Two passes, as the SIMD variants do: the largest non-NaN value, then its first position. */
static int64_t argmax_portable(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > m) m = x[i];
    for (int64_t i = 0; i < n; i++)
        if (x[i] == m) return i;
    return 0;
}

static float logsumexp_portable(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    if (!isfinite(m)) return m;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += exp((double)(x[i] - m));
    return m + (float)log(sum);
}

static void scores_portable(float *s, int64_t lds, const float *q, int64_t ldq, int64_t nq, const float *k, int64_t ldk,
                            int64_t nk, int64_t D) {
    for (int64_t i = 0; i < nq; i++)
        for (int64_t j = 0; j < nk; j++) s[i * lds + j] = dot_portable(q + i * ldq, k + j * ldk, D);
}

static void weighted_sum_portable(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t nq, const float *v,
                                  int64_t ldv, int64_t nk, int64_t D) {
    for (int64_t i = 0; i < nq; i++)
        for (int64_t j = 0; j < nk; j++) axpy_portable(o + i * ldo, p[i * ldp + j], v + j * ldv, D);
}

static const g4_kernel_ops portable_ops = {"portable",       dot_portable,      axpy_portable,    to_f32_portable,
                                           g4_softmax,       g4_rmsnorm,        softcap_portable, gelu_mul_portable,
                                           argmax_portable,  scores_portable,   weighted_sum_portable,
                                           logsumexp_portable};

const g4_kernel_ops *g4_kernels_portable(void) { return &portable_ops; }
