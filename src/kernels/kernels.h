/* kernels.h — the numeric primitives the model is built from; SIMD variants are chosen at run time. */
#ifndef G4_KERNELS_H
#define G4_KERNELS_H

#include <stdint.h>

#include "core/tensor.h"
#include "core/threads.h"
#include "kernels/quant.h"

/* gemma4c's block dtypes and the quantization kernels' format ids. */
static inline int g4_quant_type(g4_dtype dt) {
    return dt == G4_DT_Q8 ? G4_QT_Q8 : dt == G4_DT_Q4 ? G4_QT_Q4 : dt == G4_DT_Q6 ? G4_QT_Q6 : -1;
}

/* The per-ISA primitives. Every implementation computes the same thing up to float rounding order and is
 * tested against the portable one. */
typedef struct g4_kernel_ops {
    const char *name; /* "portable", "avx2" ... */
    float (*dot)(const float *a, const float *b, int64_t n);
    void (*axpy)(float *y, float a, const float *x, int64_t n); /* y += a * x */
    /* dst[i] = float(src[i]) for a weight row of dtype F32, BF16 or F16 */
    void (*to_f32)(float *dst, const void *src, g4_dtype dt, int64_t n);
    /* x = softmax(x) (entries of -inf get 0); returns log(sum(exp(x))) of the input, which lets softmaxes over
     * parts of a row be combined */
    float (*softmax)(float *x, int64_t n);
    /* out = x / sqrt(mean(x^2) + eps) * weight (weight NULL: no weight); out may be x */
    void (*rmsnorm)(float *out, const float *x, const float *weight, int64_t n, float eps);
    /* x[i] = cap * tanh(x[i] / cap) */
    void (*softcap)(float *x, int64_t n, float cap);
    /* g[i] = gelu_tanh(g[i]) * up[i] (up NULL: the activation alone) */
    void (*gelu_mul)(float *g, const float *up, int64_t n);
    /* The index of the largest of x[0..n) (n >= 1), the lowest on ties as torch.argmax; NaNs never win, and 0 when
     * all are NaN. */
    int64_t (*argmax)(const float *x, int64_t n);
    /* Attention tiles. scores: s[i * lds + j] = q_i · k_j for nq query rows (ldq apart) and nk key rows (ldk
     * apart), all D long. weighted_sum: o_i += sum_j p[i * ldp + j] * v_j over nk value rows (ldv apart). */
    void (*scores)(float *s, int64_t lds, const float *q, int64_t ldq, int64_t nq, const float *k, int64_t ldk,
                   int64_t nk, int64_t D);
    void (*weighted_sum)(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t nq, const float *v, int64_t ldv,
                         int64_t nk, int64_t D);
    /* log(sum(exp(x))) without touching x (a token's log-probability over a 262144-entry vocabulary, each step):
     * NaN entries never set the maximum but make the result NaN; a maximum of +-inf is returned as it is. */
    float (*logsumexp)(const float *x, int64_t n);
} g4_kernel_ops;

const g4_kernel_ops *g4_kernels_portable(void);
const g4_kernel_ops *g4_kernels_avx2(void); /* NULL when this build or CPU lacks AVX2+FMA */
/* The best variant this CPU runs; GEMMA4C_KERNELS=portable forces the portable one. */
const g4_kernel_ops *g4_kernels_best(void);

/* What the matrix products run on: the chosen primitives, the worker pool and per-worker scratch. */
typedef struct g4_compute {
    const g4_kernel_ops *ops;
    const g4_quant_ops *qops;
    g4_pool *pool;
    float *scratch; /* per worker: a block of weight rows converted to float */
    int64_t max_k;  /* longest weight row the scratch holds */
    void *qscratch; /* quantized activations of up to G4_QMATMUL_ROWS rows of max_k */
    /* Called by long computations (the encoders) between their layers, where nothing of theirs is in flight: it
     * may run other work on this context meanwhile, and returns non-zero to stop the computation (NULL: none). */
    int (*safe_point)(void *ctx);
    void *safe_point_ctx;
    /* Sees the input of every matrix product (T rows of K floats against weight w) before it runs; conversion
     * learns from it how a calibration text drives each matrix. While set, products run one weight at a time
     * (NULL: none). */
    void (*observe)(void *ctx, const g4_tensor *w, const float *x, int64_t T, int64_t K);
    void *observe_ctx;
} g4_compute;

/* Non-zero when the computation should stop (see g4_compute.safe_point). */
static inline int g4_compute_safe_point(g4_compute *c) { return c->safe_point && c->safe_point(c->safe_point_ctx); }

/* Rows of activations a quantized product takes at once (longer inputs run in slices). */
#define G4_QMATMUL_ROWS 256

/* n_threads <= 0: one per CPU. max_k: the widest input dimension of any weight used. */
int g4_compute_init(g4_compute *c, int n_threads, int64_t max_k);
void g4_compute_free(g4_compute *c);
/* Grows the scratch for weights up to max_k wide (the encoders' widths differ from the text model's). */
int g4_compute_reserve(g4_compute *c, int64_t max_k);

/* y[T, N] = x[T, K] · W[N, K]^T, with W a weight tensor of dtype F32, BF16, F16 or one of gemma4c's quantized
 * types (K <= max_k), rows split over the pool. */
void g4_matmul(g4_compute *c, const float *x, int64_t T, int64_t K, const g4_tensor *w, float *y);

/* y[i] = x · w[i]^T for count weights that share their input (q, k and v; gate and up). When decoding on
 * block-quantized weights the products run as one parallel loop over one quantization of x. */
void g4_matmul_many(g4_compute *c, const float *x, int64_t T, int64_t K, int count, const g4_tensor *const w[],
                    float *const y[]);
/* g[T, N] = gelu_tanh(x · gate^T) * (x · up^T); u[T, N] is scratch. Decoding applies the activation to each range
 * of rows as soon as both products have it, in the same parallel loop. */
void g4_matmul_gelu(g4_compute *c, const float *x, int64_t T, int64_t K, const g4_tensor *gate, const g4_tensor *up,
                    float *g, float *u);

/* g[i] = gelu_tanh(g[i]) * up[i] over the pool (up NULL: the activation alone). */
void g4_gelu_mul(g4_compute *c, float *g, const float *up, int64_t n);

/* ops->rmsnorm over `rows` consecutive rows of n. */
void g4_rmsnorm_rows(const g4_kernel_ops *ops, float *out, const float *x, const float *weight, int64_t rows, int64_t n,
                     float eps);

/* Portable row-wise ops on [n] vectors (the reference the variants are tested against). */
void g4_rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps); /* weight may be NULL */
float g4_gelu_tanh(float x);
float g4_softmax(float *x, int64_t n);

#endif
