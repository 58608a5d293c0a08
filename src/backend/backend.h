/* backend.h — the tensor-level op table the forward passes are written against; a backend owns its buffers. */
#ifndef G4_BACKEND_H
#define G4_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/kernels.h"
#include "model/model.h"

/* Buffers are `float *` (or `void *`) that only the backend dereferences: the model code allocates them here,
 * offsets into them and hands them back to ops, and moves data to and from the host through upload/download.
 * Host arrays passed to ops (ids, positions, key ranges, views) are read during the call only. Weights are the
 * model's own (a g4_tensor, a g4_embedding, a float norm vector): a backend that keeps them elsewhere finds its
 * copy by that address. */

/* Keys and values of one attention layer over one sequence (or one encoder input): the key of kv head h at
 * position p is page[p / page_len] + h * head_stride + (p % page_len) * pos_stride, its value value_offset floats
 * after it; one page holds page_len consecutive positions. */
typedef struct g4_kv_view {
    float *const *page;
    int64_t page_len, head_stride, pos_stride, value_offset;
} g4_kv_view;

/* Softmax attention with scaling 1 (Gemma normalises queries and keys): query row r, head h, at
 * q + (r * heads + h) * head_dim, attends to the keys and values of kv head h / (heads / kv_heads) at positions
 * first[r] ..= last[r] of *view[r]; out has q's layout. Rows with first > last get zeros. */
typedef struct g4_attention {
    int64_t rows, heads, kv_heads, head_dim;
    const float *q;
    float *out;
    const g4_kv_view *const *view;
    const int64_t *first, *last;
} g4_attention;

/* The audio encoder's chunked local attention (Gemma4AudioAttention in its dense form): query t, head h (rows of
 * heads * head_dim floats in q, k, v, out) sees the valid keys t - (past - 1) ..= t + (future - 1); its logit
 * q·k + q·rel_k[past - (t - key)] (the relative term only for distances inside the n_rel-row table) is softcapped
 * at cap. A query with no valid key averages the values of its chunk's context slots uniformly, as the
 * reference's all-masked softmax does. valid: host [T]. */
typedef struct g4_local_attention {
    int64_t T, heads, head_dim;
    const float *q, *k, *v, *rel_k;
    float *out;
    int64_t n_rel, past, future, chunk, context;
    float cap;
    const uint8_t *valid;
} g4_local_attention;

/* A 3x3 convolution with stride 2 and padding 1 over (time, frequency), then a bias-free LayerNorm over the
 * output channels and ReLU: output time t, frequency f, channel c (layout [t][f][c]) from input rows of
 * [F_in][C_in] floats. The input holds times in_first .. in_first + in_rows - 1; other times, and times whose
 * in_valid entry is 0, are zero. Output times out_first .. out_first + out_rows - 1 are written; those outside
 * [0, out_limit) or whose out_valid entry is 0 become zero rows. w: [C_out][(kh * 3 + kw) * C_in + c_in].
 * in_valid, out_valid: host arrays indexed by absolute time, or NULL (all valid). */
typedef struct g4_conv2d {
    const float *in;
    int64_t in_first, in_rows, F_in, C_in;
    const uint8_t *in_valid;
    float *out;
    int64_t out_first, out_rows, out_limit, C_out;
    const uint8_t *out_valid;
    const float *w, *norm;
    float eps;
} g4_conv2d;

enum { G4_ACT_SILU, G4_ACT_GELU_TANH, G4_ACT_GELU, G4_ACT_RELU };

typedef struct g4_backend g4_backend;
struct g4_backend {
    const char *name; /* "cpu" */
    int host_memory;  /* buffers are host memory: download may be skipped by reading them in place */
    void *impl;

    /* ---- memory ---- */
    void *(*alloc)(g4_backend *b, size_t bytes); /* zeroed, 64-byte aligned; NULL when out of memory */
    void (*release)(g4_backend *b, void *buf);   /* NULL is a no-op */
    void (*upload)(g4_backend *b, void *dst, const void *host, size_t bytes);
    void (*download)(g4_backend *b, void *host, const void *src, size_t bytes);
    void (*copy)(g4_backend *b, void *dst, const void *src, size_t bytes);

    /* Readies products with inputs up to max_k wide (GEMMA4C_ERR_NOMEM when it cannot). */
    int (*reserve)(g4_backend *b, int64_t max_k, g4_err *err);
    /* Between the layers of a long computation (an encoder), where nothing of it is in flight: the owner may run
     * other work here; non-zero asks the computation to stop. */
    int (*safe_point)(g4_backend *b);

    /* ---- matrix products: y[T, N] = x[T, K] · W[N, K]^T, W in any of the model's storage formats ---- */
    void (*matmul)(g4_backend *b, const float *x, int64_t T, int64_t K, const g4_tensor *w, float *y);
    /* y[i] = x · w[i]^T for count <= 4 weights sharing their input (q, k, v) */
    void (*matmul_many)(g4_backend *b, const float *x, int64_t T, int64_t K, int count, const g4_tensor *const w[],
                        float *const y[]);
    /* g[T, N] = gelu_tanh(x · gate^T) * (x · up^T); u[T, N] is scratch */
    void (*matmul_gelu)(g4_backend *b, const float *x, int64_t T, int64_t K, const g4_tensor *gate,
                        const g4_tensor *up, float *g, float *u);

    /* ---- rows ---- */
    /* out[r] = table row ids[r] * scale, for r < n (ids < table->rows) */
    void (*embed)(g4_backend *b, const g4_embedding *table, const int32_t *ids, int64_t n, float scale, float *out);
    /* out row r = src row idx[r], rows of width floats, r < n */
    void (*gather_rows)(g4_backend *b, float *out, const float *src, const int32_t *idx, int64_t n, int64_t width);
    /* rows of n: out = x / sqrt(mean(x^2) + eps) * weight (weight NULL: none); out may be x */
    void (*rmsnorm)(g4_backend *b, float *out, const float *x, const float *weight, int64_t rows, int64_t n,
                    float eps);
    /* Rotate-half RoPE of rows * heads vectors of D (row r's heads at x + r * heads * D), in `sections` equal
     * parts rotated independently (1: the text model; 2: the vision encoder's two axes); cos and sin hold D / 2
     * floats per row, section by section. */
    void (*rope)(g4_backend *b, float *x, int64_t rows, int64_t heads, int64_t D, int sections, const float *cos,
                 const float *sin);
    /* y[i] = (y[i] + x[i]) * scale for i < n (x NULL: y[i] *= scale) */
    void (*add)(g4_backend *b, float *y, const float *x, int64_t n, float scale);
    /* g[r][i] = gelu_tanh(g[r][i]) * up[r][i] for rows of n, g rows ldg apart and up rows ldu apart (up NULL: the
     * activation alone) */
    void (*gelu_mul)(g4_backend *b, float *g, int64_t ldg, const float *up, int64_t ldu, int64_t rows, int64_t n);
    /* y[i] += x[i] * a */
    void (*axpy)(g4_backend *b, float *y, float a, const float *x, int64_t n);
    /* rows of n: x[r][i] = (x[r][i] * s) * scale[i] (scale NULL: x * s) */
    void (*scale_rows)(g4_backend *b, float *x, int64_t rows, int64_t n, float s, const float *scale);
    /* rows of n: y[r][i] += bias[i] */
    void (*add_bias)(g4_backend *b, float *y, int64_t rows, int64_t n, const float *bias);
    /* x[i] = act(x[i]), act one of G4_ACT_* */
    void (*activation)(g4_backend *b, float *x, int64_t n, int act);
    /* GLU: out[r][i] = x[r][i] * sigmoid(x[r][n + i]) for rows of 2n inputs */
    void (*glu)(g4_backend *b, float *out, const float *x, int64_t rows, int64_t n);
    /* Causal depthwise convolution over time: out[t][c] = sum_k w[c][k] * x[t - (K - 1) + k][c] (zero before
     * the first row), for rows of `channels` */
    void (*depthwise_conv)(g4_backend *b, float *out, const float *x, int64_t rows, int64_t channels, const float *w,
                           int64_t K);
    /* out[i] = min(max(x[i], lo), hi) as torch.clamp (NaN stays NaN); out may be x */
    void (*clamp)(g4_backend *b, float *out, const float *x, int64_t n, float lo, float hi);
    /* x[i] = cap * tanh(x[i] / cap) */
    void (*softcap)(g4_backend *b, float *x, int64_t n, float cap);

    /* ---- attention ---- */
    /* Writes row r's key and value heads (k and v: [rows][kv_heads][head_dim]) at position pos[r] of *view[r]. */
    void (*kv_write)(g4_backend *b, const g4_kv_view *const *view, const int64_t *pos, int64_t rows,
                     int64_t kv_heads, int64_t head_dim, const float *k, const float *v);
    /* GEMMA4C_ERR_NOMEM when the backend cannot hold the scores (out untouched). */
    int (*attention)(g4_backend *b, const g4_attention *a, g4_err *err);
    int (*local_attention)(g4_backend *b, const g4_local_attention *a, g4_err *err);

    /* ---- convolution ---- */
    int (*conv2d)(g4_backend *b, const g4_conv2d *c, g4_err *err);

    void (*destroy)(g4_backend *b);
};

/* The CPU backend over compute context c (not owned: it must outlive the backend). */
int g4_backend_cpu_init(g4_backend *b, g4_compute *c, g4_err *err);

/* The CUDA backend (cmake -DGEMMA4C_CUDA=ON) on the first GPU, serving model m (NULL: ops alone, for tests): the
 * text model's weights are uploaded here, once, in their stored formats; the encoders' weights (and any other
 * weight an op is given) on first use, found again by their host address, so the host weights must stay where
 * they are while the backend lives. GEMMA4C_ERR_UNSUPPORTED with one line when this build has no CUDA or the
 * machine no usable GPU; GEMMA4C_ERR_NOMEM when the weights do not fit. Ops that return nothing report a failure
 * (a launch, a weight that does not fit) through the next op that returns an error, and every later one. */
int g4_backend_cuda_init(g4_backend *b, const g4_model *m, g4_err *err);
/* Waits for the CUDA backend's queued work and returns its first failure, if any (0: none). */
int g4_backend_cuda_sync(g4_backend *b, g4_err *err);
/* Makes the CUDA backend's safe points those of compute context c (its safe_point hook: cancellation, the
 * scheduler's other work while an encoder runs); NULL: none. c must outlive the backend. */
void g4_backend_cuda_set_hooks(g4_backend *b, g4_compute *c);

#endif
