/* cuda_ops.cu — the CUDA backend's row and element ops: norms, RoPE, residual arithmetic, activations, clamps,
 * the causal depthwise convolution. */
#include "backend/cuda.h"

#include <math.h>

/* Where the CPU backend's op is plain scalar C (no fused multiply-add on the default x86-64 target), the kernel
 * spells each rounding out (__fmul_rn, __fadd_rn) so that it computes the same bits. Transcendentals (tanhf,
 * expf, erff) come from CUDA's library, within an ulp or two of glibc's; reductions add in another order. */

enum { THREADS = 256 };

/* A device copy of a host weight vector of n floats (NULL stays NULL). 0 when it cannot be had. */
static int vector_of(cuda_backend *cb, const float *host, int64_t n, const float **dev) {
    *dev = NULL;
    if (!host) return 1;
    *dev = (const float *)g4_cuda_weight(cb, host, (size_t)n * sizeof(float));
    return *dev != NULL;
}

/* ---- RMS norm: a warp per row ---- */

__global__ void rmsnorm_kernel(float *out, const float *x, const float *__restrict__ w, int64_t rows, int64_t n,
                               float eps) {
    const int lane = threadIdx.x & 31;
    const int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (r >= rows) return;
    const float *xr = x + r * n;
    float *yr = out + r * n;
    float ss = 0;
    for (int64_t i = lane; i < n; i += 32) ss += xr[i] * xr[i];
    for (int o = 16; o; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = lane; i < n; i += 32) /* out may be x: each lane rewrites only what it read */
        yr[i] = w ? __fmul_rn(__fmul_rn(xr[i], inv), w[i]) : __fmul_rn(xr[i], inv);
}

void g4_cuda_rmsnorm(g4_backend *b, float *out, const float *x, const float *weight, int64_t rows, int64_t n,
                     float eps) {
    cuda_backend *cb = cuda_of(b);
    const float *w;
    if (cb->err.code || rows < 1 || !vector_of(cb, weight, n, &w)) return;
    rmsnorm_kernel<<<g4_cuda_blocks(rows * 32, THREADS), THREADS>>>(out, x, w, rows, n, eps);
    g4_cuda_launched(cb, "rmsnorm");
}

/* ---- RoPE (rotate-half, `sections` independent parts of each head) ---- */

__global__ void rope_kernel(float *x, int64_t rows, int64_t heads, int64_t D, int sections, const float *__restrict__ cs,
                            const float *__restrict__ sn) {
    const int64_t width = D / sections, quarter = width / 2;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= rows * heads * sections * quarter) return;
    const int64_t i = idx % quarter, s = idx / quarter % sections, rh = idx / (quarter * sections), r = rh / heads;
    float *p = x + rh * D + s * width;
    const float c = cs[r * (D / 2) + s * quarter + i], si = sn[r * (D / 2) + s * quarter + i];
    const float x1 = p[i], x2 = p[i + quarter];
    p[i] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, si));
    p[i + quarter] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, si));
}

void g4_cuda_rope(g4_backend *b, float *x, int64_t rows, int64_t heads, int64_t D, int sections, const float *cos,
                  const float *sin) {
    cuda_backend *cb = cuda_of(b);
    const int64_t n = rows * heads * (D / 2);
    if (cb->err.code || n < 1) return;
    rope_kernel<<<g4_cuda_blocks(n, THREADS), THREADS>>>(x, rows, heads, D, sections, cos, sin);
    g4_cuda_launched(cb, "rope");
}

/* ---- residual arithmetic ---- */

__global__ void add_kernel(float *y, const float *x, int64_t n, float scale) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (!x) y[i] = __fmul_rn(y[i], scale);
    else if (scale == 1.0f) y[i] = __fadd_rn(y[i], x[i]);
    else y[i] = __fmul_rn(__fadd_rn(y[i], x[i]), scale);
}

void g4_cuda_add(g4_backend *b, float *y, const float *x, int64_t n, float scale) {
    cuda_backend *cb = cuda_of(b);
    if (cb->err.code || n < 1) return;
    add_kernel<<<g4_cuda_blocks(n, THREADS), THREADS>>>(y, x, n, scale);
    g4_cuda_launched(cb, "add");
}

__global__ void axpy_kernel(float *y, float a, const float *x, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fadd_rn(y[i], __fmul_rn(x[i], a));
}

void g4_cuda_axpy(g4_backend *b, float *y, float a, const float *x, int64_t n) {
    cuda_backend *cb = cuda_of(b);
    if (cb->err.code || n < 1) return;
    axpy_kernel<<<g4_cuda_blocks(n, THREADS), THREADS>>>(y, a, x, n);
    g4_cuda_launched(cb, "axpy");
}

__global__ void scale_rows_kernel(float *x, int64_t rows, int64_t n, float s, const float *__restrict__ scale) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * n) return;
    x[i] = scale ? __fmul_rn(__fmul_rn(x[i], s), scale[i % n]) : __fmul_rn(x[i], s);
}

void g4_cuda_scale_rows(g4_backend *b, float *x, int64_t rows, int64_t n, float s, const float *scale) {
    cuda_backend *cb = cuda_of(b);
    const float *sc;
    if (cb->err.code || rows * n < 1 || !vector_of(cb, scale, n, &sc)) return;
    scale_rows_kernel<<<g4_cuda_blocks(rows * n, THREADS), THREADS>>>(x, rows, n, s, sc);
    g4_cuda_launched(cb, "scale_rows");
}

__global__ void add_bias_kernel(float *y, int64_t rows, int64_t n, const float *__restrict__ bias) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * n) y[i] = __fadd_rn(y[i], bias[i % n]);
}

void g4_cuda_add_bias(g4_backend *b, float *y, int64_t rows, int64_t n, const float *bias) {
    cuda_backend *cb = cuda_of(b);
    const float *bs;
    if (cb->err.code || rows * n < 1 || !vector_of(cb, bias, n, &bs) || !bs) return;
    add_bias_kernel<<<g4_cuda_blocks(rows * n, THREADS), THREADS>>>(y, rows, n, bs);
    g4_cuda_launched(cb, "add_bias");
}

/* ---- activations ---- */

/* g4_gelu_tanh's formula */
__device__ __forceinline__ float gelu_tanh(float x) {
    const float k = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

__global__ void gelu_mul_kernel(float *g, int64_t ldg, const float *up, int64_t ldu, int64_t rows, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * n) return;
    const int64_t r = i / n, c = i % n;
    float *p = g + r * ldg + c;
    *p = gelu_tanh(*p) * (up ? up[r * ldu + c] : 1.0f);
}

void g4_cuda_gelu_mul(g4_backend *b, float *g, int64_t ldg, const float *up, int64_t ldu, int64_t rows, int64_t n) {
    cuda_backend *cb = cuda_of(b);
    if (cb->err.code || rows * n < 1) return;
    gelu_mul_kernel<<<g4_cuda_blocks(rows * n, THREADS), THREADS>>>(g, ldg, up, ldu, rows, n);
    g4_cuda_launched(cb, "gelu_mul");
}

__global__ void activation_kernel(float *x, int64_t n, int act) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float v = x[i];
    switch (act) {
    case G4_ACT_SILU: x[i] = v / (1.0f + expf(-v)); break;
    case G4_ACT_GELU_TANH: x[i] = gelu_tanh(v); break;
    case G4_ACT_GELU: x[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
    default: x[i] = v > 0 ? v : 0; break;
    }
}

void g4_cuda_activation(g4_backend *b, float *x, int64_t n, int act) {
    cuda_backend *cb = cuda_of(b);
    if (cb->err.code || n < 1) return;
    activation_kernel<<<g4_cuda_blocks(n, THREADS), THREADS>>>(x, n, act);
    g4_cuda_launched(cb, "activation");
}

__global__ void glu_kernel(float *out, const float *x, int64_t rows, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * n) return;
    const int64_t r = i / n, c = i % n;
    out[i] = x[r * 2 * n + c] * (1.0f / (1.0f + expf(-x[r * 2 * n + n + c])));
}

void g4_cuda_glu(g4_backend *b, float *out, const float *x, int64_t rows, int64_t n) {
    cuda_backend *cb = cuda_of(b);
    if (cb->err.code || rows * n < 1) return;
    glu_kernel<<<g4_cuda_blocks(rows * n, THREADS), THREADS>>>(out, x, rows, n);
    g4_cuda_launched(cb, "glu");
}

__global__ void clamp_kernel(float *out, const float *x, int64_t n, float lo, float hi) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i]; /* comparisons, not fminf/fmaxf: NaN stays NaN as in torch.clamp */
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    out[i] = v;
}

void g4_cuda_clamp(g4_backend *b, float *out, const float *x, int64_t n, float lo, float hi) {
    cuda_backend *cb = cuda_of(b);
    if (cb->err.code || n < 1) return;
    clamp_kernel<<<g4_cuda_blocks(n, THREADS), THREADS>>>(out, x, n, lo, hi);
    g4_cuda_launched(cb, "clamp");
}

__global__ void softcap_kernel(float *x, int64_t n, float cap) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = cap * tanhf(x[i] / cap);
}

void g4_cuda_softcap(g4_backend *b, float *x, int64_t n, float cap) {
    cuda_backend *cb = cuda_of(b);
    if (cb->err.code || n < 1) return;
    softcap_kernel<<<g4_cuda_blocks(n, THREADS), THREADS>>>(x, n, cap);
    g4_cuda_launched(cb, "softcap");
}

/* ---- causal depthwise convolution over time: a thread per (time, channel), taps in the CPU's order ---- */

__global__ void depthwise_kernel(float *__restrict__ out, const float *__restrict__ x, int64_t rows, int64_t channels,
                                 const float *__restrict__ w, int64_t K) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * channels) return;
    const int64_t t = i / channels, ch = i % channels;
    float s = 0;
    for (int64_t k = K - 1 - t > 0 ? K - 1 - t : 0; k < K; k++)
        s = __fadd_rn(s, __fmul_rn(w[ch * K + k], x[(t - (K - 1) + k) * channels + ch]));
    out[i] = s;
}

void g4_cuda_depthwise_conv(g4_backend *b, float *out, const float *x, int64_t rows, int64_t channels, const float *w,
                            int64_t K) {
    cuda_backend *cb = cuda_of(b);
    const float *dw;
    if (cb->err.code || rows * channels < 1 || !vector_of(cb, w, channels * K, &dw) || !dw) return;
    depthwise_kernel<<<g4_cuda_blocks(rows * channels, THREADS), THREADS>>>(out, x, rows, channels, dw, K);
    g4_cuda_launched(cb, "depthwise_conv");
}
