/* cuda.cu — the CUDA backend: device memory, the model's weights on the GPU in their stored formats, the matrix
 * products and the embedding gathers. */
#include "backend/cuda.h"

#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "kernels/quant.h"
}

/* ---- failures ---- */

int g4_cuda_note(cuda_backend *cb, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    if (!cb->err.code) {
        const int code = e == cudaErrorMemoryAllocation ? GEMMA4C_ERR_NOMEM : GEMMA4C_ERR_INTERNAL;
        g4_fail(&cb->err, code, "CUDA: %s: %s", what, cudaGetErrorString(e));
    }
    return -1;
}

int g4_cuda_failed(cuda_backend *cb, g4_err *err) {
    if (!cb->err.code) return 0;
    if (err) *err = cb->err;
    return cb->err.code;
}

/* A failure a cuda_quant.h function reported in its own g4_err. */
static void note_err(cuda_backend *cb, const g4_err *e) {
    if (!cb->err.code) cb->err = *e;
}

int g4_cuda_grow(cuda_backend *cb, void **buf, size_t *have, size_t bytes, const char *what) {
    if (bytes <= *have) return 0;
    bytes += bytes / 4; /* steps of a growing size reuse the buffer */
    if (*buf) {
        /* the buffer may still be read by queued work */
        if (g4_cuda_note(cb, cudaDeviceSynchronize(), what)) return -1;
        cudaFree(*buf);
        *buf = NULL, *have = 0;
    }
    if (g4_cuda_note(cb, cudaMalloc(buf, bytes), what)) {
        *buf = NULL;
        return -1;
    }
    *have = bytes;
    return 0;
}

/* ---- memory ---- */

static void *cu_alloc(g4_backend *b, size_t bytes) {
    void *p = NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    if (cudaMalloc(&p, bytes ? bytes : 64) != cudaSuccess) {
        cudaGetLastError(); /* out of memory is the caller's to report, not a failure of later launches */
        return NULL;
    }
    if (g4_cuda_note(cuda_of(b), cudaMemset(p, 0, bytes ? bytes : 64), "clearing a buffer")) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cu_release(g4_backend *b, void *buf) {
    (void)b;
    if (buf) cudaFree(buf);
}

static void cu_upload(g4_backend *b, void *dst, const void *host, size_t bytes) {
    if (bytes) g4_cuda_put(cuda_of(b), dst, host, bytes);
}

/* A failed backend (now or earlier) gives zeros, so that a caller that cannot see the error reads no stale data. */
static void cu_download(g4_backend *b, void *host, const void *src, size_t bytes) {
    cuda_backend *cb = cuda_of(b);
    if (bytes && (cb->err.code || g4_cuda_note(cb, cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost), "copy from the GPU")))
        memset(host, 0, bytes);
}

static void cu_copy(g4_backend *b, void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src)
        g4_cuda_note(cuda_of(b), cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0), "copy on the GPU");
}

static int cu_reserve(g4_backend *b, int64_t max_k, g4_err *err) {
    (void)max_k; /* scratch grows with each product's own size */
    return g4_cuda_failed(cuda_of(b), err);
}

static int cu_safe_point(g4_backend *b) {
    g4_compute *c = cuda_of(b)->hooks;
    return c ? g4_compute_safe_point(c) : 0;
}

extern "C" void g4_backend_cuda_set_hooks(g4_backend *b, g4_compute *c) { cuda_of(b)->hooks = c; }

/* ---- per-call tables ---- */

void g4_cuda_table_begin(cuda_backend *cb) { cb->stage_used = 0; }

size_t g4_cuda_table_add(cuda_backend *cb, const void *src, size_t bytes) {
    const size_t at = (cb->stage_used + 15) & ~(size_t)15;
    if (at + bytes > cb->stage_cap) {
        size_t cap = (at + bytes) * 2;
        char *p = (char *)realloc(cb->stage, cap);
        if (!p) {
            if (!cb->err.code) g4_fail(&cb->err, GEMMA4C_ERR_NOMEM, "out of memory for a CUDA call's tables");
            return (size_t)-1;
        }
        cb->stage = p, cb->stage_cap = cap;
    }
    if (bytes) memcpy(cb->stage + at, src, bytes);
    cb->stage_used = at + bytes;
    return at;
}

char *g4_cuda_table_upload(cuda_backend *cb) { return (char *)g4_cuda_put(cb, NULL, cb->stage, cb->stage_used); }

/* ---- the ring of host-to-device copies ---- */

enum { RING_MIN = 32 << 20, RING_ALIGN = 256 };

/* Replaces the ring by one of at least `bytes`, once the GPU is done with the old one. */
static int ring_grow(cuda_backend *cb, size_t bytes) {
    if (g4_cuda_note(cb, cudaDeviceSynchronize(), "growing the copy ring")) return -1;
    cudaFreeHost(cb->ring_host), cudaFree(cb->ring_dev);
    cb->ring_host = cb->ring_dev = NULL, cb->ring_cap = cb->ring_at = 0;
    size_t cap = bytes > RING_MIN / 2 ? bytes * 2 : RING_MIN;
    if (g4_cuda_note(cb, cudaHostAlloc((void **)&cb->ring_host, cap, cudaHostAllocDefault), "pinned memory for copies") ||
        g4_cuda_note(cb, cudaMalloc((void **)&cb->ring_dev, cap), "the copy ring")) {
        cudaFreeHost(cb->ring_host), cb->ring_host = NULL;
        return -1;
    }
    cb->ring_cap = cap;
    return 0;
}

void *g4_cuda_put(cuda_backend *cb, void *dst, const void *src, size_t bytes) {
    if (cb->err.code) return NULL;
    const size_t need = (bytes + RING_ALIGN - 1) / RING_ALIGN * RING_ALIGN + RING_ALIGN;
    if (need > cb->ring_cap && ring_grow(cb, need)) return NULL;
    if (cb->ring_at + need > cb->ring_cap) { /* wrap: the GPU must be done with what the ring holds */
        if (g4_cuda_note(cb, cudaStreamSynchronize(0), "waiting for the GPU")) return NULL;
        cb->ring_at = 0;
    }
    char *host = cb->ring_host + cb->ring_at, *dev = cb->ring_dev + cb->ring_at;
    cb->ring_at += need;
    if (!dst) dst = dev;
    if (bytes) {
        memcpy(host, src, bytes);
        if (g4_cuda_note(cb, cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, 0), "a copy to the GPU"))
            return NULL;
    }
    return dst;
}

/* ---- weights ---- */

static size_t slot_of(const void *p, size_t cap) {
    return (size_t)(((uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

static cuda_weight *map_find(cuda_backend *cb, const void *host) {
    if (!cb->map_cap) return NULL;
    for (size_t i = slot_of(host, cb->map_cap);; i = (i + 1) & (cb->map_cap - 1)) {
        if (cb->map[i].host == host) return &cb->map[i];
        if (!cb->map[i].host) return NULL;
    }
}

static cuda_weight *map_insert(cuda_backend *cb, const void *host) {
    if (2 * (cb->map_used + 1) > cb->map_cap) {
        const size_t cap = cb->map_cap ? 2 * cb->map_cap : 256;
        cuda_weight *fresh = (cuda_weight *)calloc(cap, sizeof *fresh);
        if (!fresh) return NULL;
        for (size_t i = 0; i < cb->map_cap; i++) {
            if (!cb->map[i].host) continue;
            size_t j = slot_of(cb->map[i].host, cap);
            while (fresh[j].host) j = (j + 1) & (cap - 1);
            fresh[j] = cb->map[i];
        }
        free(cb->map);
        cb->map = fresh, cb->map_cap = cap;
    }
    size_t i = slot_of(host, cb->map_cap);
    while (cb->map[i].host) i = (i + 1) & (cb->map_cap - 1);
    cb->map[i].host = host;
    cb->map_used++;
    return &cb->map[i];
}

const void *g4_cuda_weight(cuda_backend *cb, const void *host, size_t bytes) {
    if (!host) {
        if (!cb->err.code) g4_fail(&cb->err, GEMMA4C_ERR_INTERNAL, "CUDA: an op was given a weight with no data");
        return NULL;
    }
    cuda_weight *w = map_find(cb, host);
    if (w && w->bytes >= bytes) return w->dev;
    if (!w) {
        /* device memory passed where a weight is expected (a buffer computed on the GPU) is used in place */
        cudaPointerAttributes attr;
        if (cudaPointerGetAttributes(&attr, host) == cudaSuccess && attr.type == cudaMemoryTypeDevice) return host;
        cudaGetLastError();
        if (!(w = map_insert(cb, host))) {
            if (!cb->err.code) g4_fail(&cb->err, GEMMA4C_ERR_NOMEM, "out of memory for the CUDA weight table");
            return NULL;
        }
    } else { /* a later use reaches further than the first: upload it again, whole */
        if (g4_cuda_note(cb, cudaDeviceSynchronize(), "replacing a weight")) return NULL;
        cudaFree(w->dev);
        cb->weight_bytes -= w->bytes;
        w->dev = NULL, w->bytes = 0;
    }
    void *dev = NULL;
    if (cudaMalloc(&dev, bytes ? bytes : 16) != cudaSuccess) {
        cudaGetLastError();
        if (!cb->err.code)
            g4_fail(&cb->err, GEMMA4C_ERR_NOMEM, "CUDA: out of GPU memory for weights (%.1f MiB held, %.1f MiB more)",
                    (double)cb->weight_bytes / 1048576.0, (double)bytes / 1048576.0);
        return NULL;
    }
    if (g4_cuda_note(cb, cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice), "uploading a weight")) {
        cudaFree(dev);
        return NULL;
    }
    w->dev = dev, w->bytes = bytes;
    cb->weight_bytes += bytes;
    return dev;
}

/* Bytes of a stored tensor: its rows of its last dimension. */
static size_t tensor_bytes(const g4_tensor *t) {
    if (t->ndim < 1) return g4_dtype_size(t->dtype);
    const int64_t K = t->shape[t->ndim - 1], n = g4_tensor_numel(t);
    return K > 0 ? g4_row_bytes(t->dtype, K) * (size_t)(n / K) : 0;
}

static void upload_tensor(cuda_backend *cb, const g4_tensor *t) {
    if (t->data && tensor_bytes(t)) g4_cuda_weight(cb, t->data, tensor_bytes(t));
}
static void upload_vector(cuda_backend *cb, const float *v, int64_t n) {
    if (v && n > 0) g4_cuda_weight(cb, v, (size_t)n * sizeof(float));
}

/* Everything of the text model up front (its weights are read on every step); the encoders' weights come with
 * their first use. The per-layer embedding table (5.6 GB in E4B, one row read per token) stays on the host. */
static void upload_model(cuda_backend *cb, const g4_model *m) {
    const g4_text_config *c = &m->cfg.text;
    const int64_t H = c->hidden_size;
    upload_tensor(cb, &m->lm_head);
    upload_tensor(cb, &m->embed.t);
    upload_tensor(cb, &m->ple_model_proj);
    upload_vector(cb, m->ple_projection_norm, c->ple_dim);
    upload_vector(cb, m->final_norm, H);
    for (int l = 0; l < c->num_layers && !cb->err.code; l++) {
        const g4_layer *ly = &m->layers[l];
        const int64_t D = c->layer_head_dim[l];
        upload_vector(cb, ly->input_norm, H);
        upload_vector(cb, ly->post_attention_norm, H);
        upload_vector(cb, ly->pre_feedforward_norm, H);
        upload_vector(cb, ly->post_feedforward_norm, H);
        upload_vector(cb, ly->q_norm, D);
        upload_vector(cb, ly->k_norm, D);
        if (c->ple_dim > 0) upload_vector(cb, ly->post_per_layer_input_norm, H);
        const g4_tensor *t[] = {&ly->q_proj, &ly->k_proj, &ly->v_proj, &ly->o_proj, &ly->gate_proj, &ly->up_proj,
                                &ly->down_proj, &ly->per_layer_input_gate, &ly->per_layer_projection};
        for (size_t i = 0; i < sizeof t / sizeof *t; i++) upload_tensor(cb, t[i]);
    }
}

/* ---- float weights (F32, BF16, F16): y[T, N] = x[T, K] · W[N, K]^T ---- */

template <int DT> __device__ __forceinline__ float wload(const void *w, int64_t i) {
    if (DT == G4_DT_F32) return ((const float *)w)[i];
    const unsigned short h = ((const unsigned short *)w)[i];
    if (DT == G4_DT_BF16) return __uint_as_float((unsigned)h << 16);
    return __half2float(__ushort_as_half(h));
}

/* A few activation rows: a warp per weight row, each weight read once for all of them. */
template <int DT, int T>
__global__ void fgemv_kernel(const void *__restrict__ w, int64_t N, int64_t K, const float *__restrict__ x,
                             float *__restrict__ y) {
    const int lane = threadIdx.x & 31;
    const int64_t n = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (n >= N) return;
    const char *row = (const char *)w + (size_t)n * (size_t)K * (DT == G4_DT_F32 ? 4 : 2);
    float acc[T];
#pragma unroll
    for (int t = 0; t < T; t++) acc[t] = 0;
    for (int64_t k = lane; k < K; k += 32) {
        const float wv = wload<DT>(row, k);
#pragma unroll
        for (int t = 0; t < T; t++) acc[t] += wv * x[t * K + k];
    }
#pragma unroll
    for (int t = 0; t < T; t++) {
        float s = acc[t];
        for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) y[t * N + n] = s;
    }
}

/* Many rows: tiles of 64 activation rows x 64 weight rows through shared memory, 4x4 outputs a thread. */
enum { GT = 64, GK = 16 };
template <int DT>
__global__ void __launch_bounds__(256) fgemm_kernel(const void *__restrict__ w, int64_t N, int64_t K,
                                                    const float *__restrict__ x, int64_t T, float *__restrict__ y) {
    __shared__ float xs[GK][GT + 1], ws[GK][GT + 1];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int64_t n0 = (int64_t)blockIdx.x * GT, t0 = (int64_t)blockIdx.y * GT;
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < K; k0 += GK) {
        for (int i = tid; i < GT * GK; i += 256) {
            const int r = i / GK, kk = i % GK;
            const int64_t k = k0 + kk, t = t0 + r, n = n0 + r;
            xs[kk][r] = t < T && k < K ? x[t * K + k] : 0.0f;
            ws[kk][r] = n < N && k < K ? wload<DT>(w, n * K + k) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < GK; kk++) {
            float a[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = xs[kk][ty * 4 + i], bv[i] = ws[kk][tx * 4 + i];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += a[i] * bv[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t t = t0 + ty * 4 + i, n = n0 + tx * 4 + j;
            if (t < T && n < N) y[t * N + n] = acc[i][j];
        }
}

template <int DT> static void fgemv_t(const void *w, int64_t N, int64_t K, const float *x, int64_t T, float *y) {
    const unsigned grid = g4_cuda_blocks(N * 32, 256);
    switch (T) {
    case 1: fgemv_kernel<DT, 1><<<grid, 256>>>(w, N, K, x, y); break;
    case 2: fgemv_kernel<DT, 2><<<grid, 256>>>(w, N, K, x, y); break;
    case 3: fgemv_kernel<DT, 3><<<grid, 256>>>(w, N, K, x, y); break;
    case 4: fgemv_kernel<DT, 4><<<grid, 256>>>(w, N, K, x, y); break;
    case 5: fgemv_kernel<DT, 5><<<grid, 256>>>(w, N, K, x, y); break;
    case 6: fgemv_kernel<DT, 6><<<grid, 256>>>(w, N, K, x, y); break;
    case 7: fgemv_kernel<DT, 7><<<grid, 256>>>(w, N, K, x, y); break;
    default: fgemv_kernel<DT, 8><<<grid, 256>>>(w, N, K, x, y); break;
    }
}

template <int DT> static void fmatmul_t(const void *w, int64_t N, int64_t K, const float *x, int64_t T, float *y) {
    if (T <= 8) return fgemv_t<DT>(w, N, K, x, T, y);
    fgemm_kernel<DT><<<dim3(g4_cuda_blocks(N, GT), g4_cuda_blocks(T, GT)), 256>>>(w, N, K, x, T, y);
}

static void float_matmul(cuda_backend *cb, const float *x, int64_t T, int64_t K, const g4_tensor *w, float *y) {
    const int64_t N = w->shape[0];
    const void *dw = g4_cuda_weight(cb, w->data, g4_row_bytes(w->dtype, K) * (size_t)N);
    if (!dw) return;
    switch (w->dtype) {
    case G4_DT_F32: fmatmul_t<G4_DT_F32>(dw, N, K, x, T, y); break;
    case G4_DT_BF16: fmatmul_t<G4_DT_BF16>(dw, N, K, x, T, y); break;
    case G4_DT_F16: fmatmul_t<G4_DT_F16>(dw, N, K, x, T, y); break;
    default:
        if (!cb->err.code)
            g4_fail(&cb->err, GEMMA4C_ERR_UNSUPPORTED, "CUDA: weight %s is stored as %s, which products do not take",
                    w->name ? w->name : "(unnamed)", g4_dtype_name(w->dtype));
        return;
    }
    g4_cuda_launched(cb, "a float matrix product");
}

/* ---- quantized weights: int8 activations against the stored blocks (kernels/cuda/cuda_quant.cu) ---- */

/* y[i] = x · w[i]^T for weights of one block format: x quantized once, then the products G4_CUDA_QMATMUL_MAX_T
 * rows at a time (each slice reads the weights again). */
static void quant_matmul(cuda_backend *cb, const float *x, int64_t T, int64_t K, int count, const g4_tensor *const w[],
                         float *const y[]) {
    const int qt = g4_quant_type(w[0]->dtype);
    const size_t ab = g4_qact_row_bytes(K);
    g4_err e = {0, {0}};
    g4_cuda_qmat mats[G4_CUDA_QMAT_MAX];
    for (int i = 0; i < count; i++) {
        mats[i].N = w[i]->shape[0];
        if (!(mats[i].d_w = g4_cuda_weight(cb, w[i]->data, g4_row_bytes(w[i]->dtype, K) * (size_t)mats[i].N))) return;
    }
    if (g4_cuda_grow(cb, &cb->act, &cb->act_bytes, ab * (size_t)T, "quantized activations")) return;
    if (g4_cuda_quantize_acts(x, T, K, cb->act, NULL, &e)) return note_err(cb, &e);
    for (int64_t t0 = 0; t0 < T; t0 += G4_CUDA_QMATMUL_MAX_T) {
        const int64_t n = T - t0 < G4_CUDA_QMATMUL_MAX_T ? T - t0 : G4_CUDA_QMATMUL_MAX_T;
        for (int i = 0; i < count; i++) mats[i].d_y = y[i] + t0 * mats[i].N;
        if (g4_cuda_qmatvec_many(qt, mats, count, K, (const char *)cb->act + (size_t)t0 * ab, n, NULL, &e))
            return note_err(cb, &e);
    }
}

static void cu_matmul_many(g4_backend *b, const float *x, int64_t T, int64_t K, int count, const g4_tensor *const w[],
                           float *const y[]) {
    cuda_backend *cb = cuda_of(b);
    if (cb->err.code || T < 1) return;
    /* weights of one block format that share x go as one launch; anything else one product at a time */
    int same = count <= G4_CUDA_QMAT_MAX && g4_quant_type(w[0]->dtype) >= 0;
    for (int i = 1; i < count; i++) same &= w[i]->dtype == w[0]->dtype;
    if (same) return quant_matmul(cb, x, T, K, count, w, y);
    for (int i = 0; i < count; i++) {
        if (g4_quant_type(w[i]->dtype) >= 0) quant_matmul(cb, x, T, K, 1, &w[i], &y[i]);
        else float_matmul(cb, x, T, K, w[i], y[i]);
    }
}

static void cu_matmul(g4_backend *b, const float *x, int64_t T, int64_t K, const g4_tensor *w, float *y) {
    cu_matmul_many(b, x, T, K, 1, &w, &y);
}

static void cu_matmul_gelu(g4_backend *b, const float *x, int64_t T, int64_t K, const g4_tensor *gate,
                           const g4_tensor *up, float *g, float *u) {
    const g4_tensor *w[2] = {gate, up};
    float *const y[2] = {g, u};
    const int64_t N = gate->shape[0];
    cu_matmul_many(b, x, T, K, 2, w, y);
    g4_cuda_gelu_mul(b, g, N, u, N, T, N);
}

/* ---- embeddings and row gathers ---- */

/* Element i of a stored row, as g4_embedding_row reads it (the same float operations, so the same bits). */
__device__ __forceinline__ float stored_value(const unsigned char *row, int dt, int64_t i) {
    const int64_t b = i / 32;
    const int j = (int)(i % 32);
    switch (dt) {
    case G4_DT_F32: return ((const float *)row)[i];
    case G4_DT_BF16: return __uint_as_float((unsigned)((const unsigned short *)row)[i] << 16);
    case G4_DT_F16: return __half2float(__ushort_as_half(((const unsigned short *)row)[i]));
    case G4_DT_Q8: {
        const unsigned char *blk = row + b * 36;
        return *(const float *)blk * (float)(signed char)blk[4 + j];
    }
    case G4_DT_Q4: {
        const unsigned char *blk = row + b * 18;
        const int q = j < 16 ? blk[2 + j] & 15 : blk[2 + j - 16] >> 4;
        return __uint_as_float((unsigned)*(const unsigned short *)blk << 16) * (float)(q - 8);
    }
    default: { /* G4_DT_Q6 */
        const unsigned char *blk = row + b * 26;
        const int lo = j < 16 ? blk[2 + j] & 15 : blk[2 + j - 16] >> 4;
        const int hi = (blk[18 + j % 8] >> (2 * (j / 8))) & 3;
        return __uint_as_float((unsigned)*(const unsigned short *)blk << 16) * (float)((lo | hi << 4) - 32);
    }
    }
}

__global__ void embed_kernel(const unsigned char *__restrict__ table, int dt, size_t row_bytes, int64_t width,
                             const int32_t *__restrict__ ids, int64_t n, float scale, float *__restrict__ out) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * width) return;
    const int64_t r = i / width, c = i % width;
    out[i] = stored_value(table + (size_t)ids[r] * row_bytes, dt, c) * scale;
}

static int stored_dtype(g4_dtype dt) {
    return dt == G4_DT_F32 || dt == G4_DT_BF16 || dt == G4_DT_F16 || dt == G4_DT_Q8 || dt == G4_DT_Q4 || dt == G4_DT_Q6;
}

/* Rows gathered on the host (a synthetic table, the per-layer table), scaled as the CPU backend scales them. */
static void host_embed(cuda_backend *cb, const g4_embedding *table, const int32_t *ids, int64_t n, float scale,
                       float *out) {
    const int64_t W = table->width;
    if ((size_t)(n * W) > cb->rows_floats) {
        float *p = (float *)realloc(cb->rows, (size_t)(n * W) * sizeof(float));
        if (!p) {
            if (!cb->err.code) g4_fail(&cb->err, GEMMA4C_ERR_NOMEM, "out of memory for %lld embedding rows", (long long)n);
            return;
        }
        cb->rows = p, cb->rows_floats = (size_t)(n * W);
    }
    for (int64_t r = 0; r < n; r++) {
        float *row = cb->rows + r * W;
        g4_embedding_row(table, ids[r], row);
        if (scale != 1.0f)
            for (int64_t i = 0; i < W; i++) row[i] *= scale;
    }
    g4_cuda_put(cb, out, cb->rows, (size_t)(n * W) * sizeof(float));
}

static void cu_embed(g4_backend *b, const g4_embedding *table, const int32_t *ids, int64_t n, float scale, float *out) {
    cuda_backend *cb = cuda_of(b);
    if (cb->err.code || n < 1) return;
    if (!table->t.data || (cb->m && table == &cb->m->ple_table) || !stored_dtype(table->t.dtype))
        return host_embed(cb, table, ids, n, scale, out);
    const size_t row_bytes = g4_row_bytes(table->t.dtype, table->width);
    const void *dev = g4_cuda_weight(cb, table->t.data, row_bytes * (size_t)table->rows);
    g4_cuda_table_begin(cb);
    const size_t at = g4_cuda_table_add(cb, ids, (size_t)n * sizeof *ids);
    char *base = dev && at != (size_t)-1 ? g4_cuda_table_upload(cb) : NULL;
    if (!base) return;
    embed_kernel<<<g4_cuda_blocks(n * table->width, 256), 256>>>((const unsigned char *)dev, (int)table->t.dtype,
                                                                   row_bytes, table->width, (const int32_t *)(base + at),
                                                                   n, scale, out);
    g4_cuda_launched(cb, "embedding gather");
}

__global__ void gather_kernel(float *__restrict__ out, const float *__restrict__ src, const int32_t *__restrict__ idx,
                              int64_t n, int64_t width) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * width) return;
    out[i] = src[(int64_t)idx[i / width] * width + i % width];
}

static void cu_gather_rows(g4_backend *b, float *out, const float *src, const int32_t *idx, int64_t n, int64_t width) {
    cuda_backend *cb = cuda_of(b);
    if (cb->err.code || n < 1) return;
    g4_cuda_table_begin(cb);
    const size_t at = g4_cuda_table_add(cb, idx, (size_t)n * sizeof *idx);
    char *base = at != (size_t)-1 ? g4_cuda_table_upload(cb) : NULL;
    if (!base) return;
    gather_kernel<<<g4_cuda_blocks(n * width, 256), 256>>>(out, src, (const int32_t *)(base + at), n, width);
    g4_cuda_launched(cb, "row gather");
}

/* ---- the backend ---- */

static void cu_destroy(g4_backend *b) {
    cuda_backend *cb = cuda_of(b);
    if (cb) {
        cudaDeviceSynchronize();
        for (size_t i = 0; i < cb->map_cap; i++)
            if (cb->map[i].host) cudaFree(cb->map[i].dev);
        free(cb->map);
        cudaFree(cb->act), cudaFree(cb->part), cudaFree(cb->ring_dev), cudaFreeHost(cb->ring_host);
        free(cb->stage), free(cb->rows);
        free(cb);
    }
    memset(b, 0, sizeof *b);
}

extern "C" int g4_backend_cuda_sync(g4_backend *b, g4_err *err) {
    cuda_backend *cb = cuda_of(b);
    g4_cuda_note(cb, cudaDeviceSynchronize(), "the GPU's work");
    return g4_cuda_failed(cb, err);
}

extern "C" int g4_backend_cuda_init(g4_backend *b, const g4_model *m, g4_err *err) {
    memset(b, 0, sizeof *b);
    cuda_backend *cb = (cuda_backend *)calloc(1, sizeof *cb);
    if (!cb) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    int rc = g4_cuda_probe(&cb->info, err);
    if (rc) {
        free(cb);
        return rc;
    }
    cb->m = m;
    b->name = "cuda";
    b->host_memory = 0;
    b->impl = cb;
    b->alloc = cu_alloc;
    b->release = cu_release;
    b->upload = cu_upload;
    b->download = cu_download;
    b->copy = cu_copy;
    b->reserve = cu_reserve;
    b->safe_point = cu_safe_point;
    b->matmul = cu_matmul;
    b->matmul_many = cu_matmul_many;
    b->matmul_gelu = cu_matmul_gelu;
    b->embed = cu_embed;
    b->gather_rows = cu_gather_rows;
    b->rmsnorm = g4_cuda_rmsnorm;
    b->rope = g4_cuda_rope;
    b->add = g4_cuda_add;
    b->gelu_mul = g4_cuda_gelu_mul;
    b->axpy = g4_cuda_axpy;
    b->scale_rows = g4_cuda_scale_rows;
    b->add_bias = g4_cuda_add_bias;
    b->activation = g4_cuda_activation;
    b->glu = g4_cuda_glu;
    b->depthwise_conv = g4_cuda_depthwise_conv;
    b->clamp = g4_cuda_clamp;
    b->softcap = g4_cuda_softcap;
    b->kv_write = g4_cuda_kv_write;
    b->attention = g4_cuda_attention;
    b->local_attention = g4_cuda_local_attention;
    b->conv2d = g4_cuda_conv2d;
    b->destroy = cu_destroy;
    if (m) upload_model(cb, m);
    if ((rc = g4_backend_cuda_sync(b, err))) {
        g4_err_prefix(err, "%s (%.1f GiB)", cb->info.name, (double)cb->info.memory_bytes / 1073741824.0);
        cu_destroy(b);
    }
    return rc;
}
