/* cuda_quant.cu — quantized matrix-vector products on an NVIDIA GPU: int8 activations against G4_Q4/Q6/Q8 rows. */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "kernels/cuda/cuda_quant.h"
#include "kernels/quant.h"
}

/* ---- errors ---- */

static int cuda_fail(g4_err *err, cudaError_t e, const char *what) {
    const int code = e == cudaErrorMemoryAllocation ? GEMMA4C_ERR_NOMEM
                     : e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInitializationError
                         ? GEMMA4C_ERR_UNSUPPORTED
                         : GEMMA4C_ERR_INTERNAL;
    return g4_fail(err, code, "CUDA: %s: %s", what, cudaGetErrorString(e));
}

#define CUDA_TRY(call, what)                            \
    do {                                                \
        cudaError_t e_ = (call);                        \
        if (e_ != cudaSuccess) return cuda_fail(err, e_, what); \
    } while (0)

/* ---- activations: one warp per block of 32 values ---- */

/* Bit for bit g4_quantize_act_row: amax ignores NaNs, q = round half away from zero of clamp(x * 127 / amax), with
 * each float operation rounded on its own (no fused multiply-add). */
__global__ void quantize_acts_kernel(const float *__restrict__ x, int64_t T, int64_t K, uint8_t *__restrict__ act,
                                     size_t stride) {
    const int lane = threadIdx.x & 31;
    const int64_t nb = K / 32, warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (warp >= T * nb) return;
    const int64_t t = warp / nb, b = warp % nb;
    const float v = x[t * K + b * 32 + lane];
    float amax = fabsf(v);
    amax = amax > 0 ? amax : 0; /* NaN never wins */
    for (int o = 16; o; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float id = amax > 0 ? __fdiv_rn(127.0f, amax) : 0.0f;
    float r = __fmul_rn(v, id);
    r = r >= -127.0f ? r : -127.0f;
    r = r <= 127.0f ? r : 127.0f;
    const int q = (int)__fadd_rn(r, r >= 0 ? 0.5f : -0.5f);
    uint8_t *row = act + (size_t)t * stride;
    row[b * 32 + lane] = (uint8_t)(int8_t)q;
    int sum = q;
    for (int o = 16; o; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) {
        ((float *)(row + K))[b] = __fdiv_rn(amax, 127.0f);
        ((int32_t *)(row + K + K / 8))[b] = sum;
    }
}

/* ---- the product ---- */

/* Blocks of a row staged at a time per warp, and thread blocks per multiprocessor (overridable to measure). */
#ifndef G4_CUDA_CHUNK
#define G4_CUDA_CHUNK 64
#endif
#ifndef G4_CUDA_CTAS_PER_SM
#define G4_CUDA_CTAS_PER_SM 8
#endif
enum { WARPS = 4, CHUNK = G4_CUDA_CHUNK, CTAS_PER_SM = G4_CUDA_CTAS_PER_SM };

template <int QT> struct fmt;
template <> struct fmt<G4_QT_Q4> { enum { bytes = 18, offset = 8 }; };
template <> struct fmt<G4_QT_Q6> { enum { bytes = 26, offset = 32 }; };
template <> struct fmt<G4_QT_Q8> { enum { bytes = 36, offset = 0 }; };

__device__ __forceinline__ uint32_t word16(const uint16_t *p, int i) { return p[i] | (uint32_t)p[i + 1] << 16; }

/* One block's 32 values as stored (offset included: the caller removes it through the activations' block sum),
 * as 8 words of 4 consecutive elements, and its scale. */
template <int QT> __device__ __forceinline__ void block_values(const uint8_t *blk, int *v, float *d) {
    if (QT == G4_QT_Q8) {
        *d = *(const float *)blk;
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = ((const int *)(blk + 4))[i];
        return;
    }
    const uint16_t *h = (const uint16_t *)blk; /* blocks are 2-byte aligned */
    *d = __uint_as_float((uint32_t)h[0] << 16);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t nib = word16(h, 1 + 2 * i); /* bytes 4i..4i+3: elements 4i.. (low), 16 + 4i.. (high) */
        uint32_t lo = nib & 0x0F0F0F0Fu, hi = (nib >> 4) & 0x0F0F0F0Fu;
        if (QT == G4_QT_Q6) { /* bits 4-5 of element j: byte j % 8 of qh, at bit 2 * (j / 8) */
            const uint32_t qh = word16(h, 9 + 2 * (i & 1));
            lo |= ((qh >> (2 * (i >> 1))) & 0x03030303u) << 4;
            hi |= ((qh >> (4 + 2 * (i >> 1))) & 0x03030303u) << 4;
        }
        v[i] = (int)lo, v[4 + i] = (int)hi;
    }
}

/* The matrices of one launch (they share their input): units (rows for a warp per row, groups of 16 rows for the
 * tensor cores) numbered across all of them; first[k] is matrix k's first unit (INT64_MAX past the last). */
struct mats {
    const uint8_t *w[G4_CUDA_QMAT_MAX];
    float *y[G4_CUDA_QMAT_MAX];
    int64_t n[G4_CUDA_QMAT_MAX];
    int64_t first[G4_CUDA_QMAT_MAX];
};

/* Which matrix unit idx falls in; idx becomes the unit within it. Indices into the kernel parameter are constants
 * (unrolled), so that it is not copied to local memory. */
template <bool MANY> __device__ __forceinline__ int locate(const mats &m, int64_t *idx) {
    if (!MANY) return 0; /* one matrix: no search at all (it measured 5-15 % on the largest ones) */
    int which = 0;
#pragma unroll
    for (int k = 1; k < G4_CUDA_QMAT_MAX; k++) which += *idx >= m.first[k];
    int64_t first = 0;
#pragma unroll
    for (int k = 1; k < G4_CUDA_QMAT_MAX; k++)
        if (which == k) first = m.first[k];
    *idx -= first;
    return which;
}

template <typename P> __device__ __forceinline__ P pick(const P (&a)[G4_CUDA_QMAT_MAX], int k) {
    P r = a[0];
#pragma unroll
    for (int i = 1; i < G4_CUDA_QMAT_MAX; i++)
        if (k == i) r = a[i];
    return r;
}

/* Each warp takes whole weight rows, CHUNK blocks at a time: a chunk comes in 16-byte pieces across the warp into
 * registers (block boundaries fall anywhere in them), goes to shared memory, and each lane then takes blocks lane,
 * lane + 32... of it. The next chunk (of this row or the warp's next one) is loaded while the current one is
 * computed, so that every warp keeps a chunk of reads in flight. */
template <int QT, int T, bool MANY>
__global__ void __launch_bounds__(WARPS * 32, T == 1 ? CTAS_PER_SM : CTAS_PER_SM / 2) qmatvec_kernel(const mats M, int64_t N, int64_t K,
                                                              const uint8_t *__restrict__ act, size_t act_stride) {
    constexpr int BB = fmt<QT>::bytes, V = (CHUNK * BB / 16 + 31) / 32;
    __shared__ __align__(16) uint8_t stage[WARPS][CHUNK * BB];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    const int64_t nb = K / 32, row_bytes = nb * BB, chunks = (nb + CHUNK - 1) / CHUNK;
    const int64_t step = (int64_t)gridDim.x * WARPS;
    bool wide = (row_bytes & 15) == 0; /* every chunk starts 16-byte aligned */
    #pragma unroll
    for (int k = 0; k < G4_CUDA_QMAT_MAX; k++) wide = wide && ((uintptr_t)M.w[k] & 15) == 0; /* unused: NULL */
    uint8_t *mine = stage[wid];
    int64_t n = (int64_t)blockIdx.x * WARPS + wid, c = 0; /* n: a row of all the matrices */
    if (n >= N) return;
    uint4 v[V];
    auto row_at = [&](int64_t row) {
        const int k = locate<MANY>(M, &row);
        return pick(M.w, k) + row * row_bytes;
    };
    auto fetch = [&](int64_t row, int64_t chunk) {
        const int n16 = wide ? (int)((nb - chunk * CHUNK < CHUNK ? nb - chunk * CHUNK : CHUNK) * BB / 16) : 0;
        const uint4 *src = (const uint4 *)(row_at(row) + chunk * CHUNK * BB);
#pragma unroll
        for (int k = 0; k < V; k++)
            if (lane + 32 * k < n16) v[k] = __ldg(src + lane + 32 * k);
    };
    fetch(n, c);
    float acc[T];
#pragma unroll
    for (int t = 0; t < T; t++) acc[t] = 0;
    for (;;) {
        const int nblk = (int)(nb - c * CHUNK < CHUNK ? nb - c * CHUNK : CHUNK), bytes = nblk * BB;
        const int n16 = wide ? bytes / 16 : 0;
#pragma unroll
        for (int k = 0; k < V; k++)
            if (lane + 32 * k < n16) ((uint4 *)mine)[lane + 32 * k] = v[k];
        const uint16_t *src = (const uint16_t *)(row_at(n) + c * CHUNK * BB);
        for (int i = n16 * 8 + lane; i < bytes / 2; i += 32) ((uint16_t *)mine)[i] = src[i]; /* the rest */
        __syncwarp();
        int64_t n2 = n, c2 = c + 1;
        if (c2 == chunks) c2 = 0, n2 += step;
        if (n2 < N) fetch(n2, c2);
        for (int j = lane; j < nblk; j += 32) {
            const int64_t b = c * CHUNK + j;
            int wv[8];
            float d;
            block_values<QT>(mine + j * BB, wv, &d);
#pragma unroll
            for (int t = 0; t < T; t++) {
                const uint8_t *ar = act + (size_t)t * act_stride;
                const int4 a0 = *(const int4 *)(ar + b * 32), a1 = *(const int4 *)(ar + b * 32 + 16);
                int dot = __dp4a(wv[0], a0.x, 0);
                dot = __dp4a(wv[1], a0.y, dot), dot = __dp4a(wv[2], a0.z, dot), dot = __dp4a(wv[3], a0.w, dot);
                dot = __dp4a(wv[4], a1.x, dot), dot = __dp4a(wv[5], a1.y, dot), dot = __dp4a(wv[6], a1.z, dot);
                dot = __dp4a(wv[7], a1.w, dot);
                const float da = ((const float *)(ar + K))[b];
                const int sa = ((const int32_t *)(ar + K + K / 8))[b];
                acc[t] += __fmul_rn(d, da) * (float)(dot - fmt<QT>::offset * sa);
            }
        }
        __syncwarp();
        if (c2 == 0) { /* the row is done */
            int64_t local = n;
            const int k = locate<MANY>(M, &local);
#pragma unroll
            for (int t = 0; t < T; t++) {
                float s = acc[t];
                for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                if (lane == 0) pick(M.y, k)[(int64_t)t * pick(M.n, k) + local] = s;
                acc[t] = 0;
            }
        }
        if (n2 >= N) break;
        n = n2, c = c2;
    }
}

/* ---- several activation rows: int8 tensor cores ---- */

/* One mma.m16n8k32 is one block of 16 weight rows against 8 activation rows. Thread (g = lane / 4, i = lane % 4)
 * holds, of weight rows g and g + 8, the elements 4i..4i+3 and 16+4i..16+4i+3: the low and high nibbles of bytes
 * 4i..4i+3 of a Q4 block (bits 4-5 from qh for Q6; two words of a Q8 block); of activation row g the same
 * elements; and gets back rows g, g + 8 x activation rows 2i, 2i + 1. */
template <int QT> __device__ __forceinline__ void block_words(const uint8_t *blk, int i, uint32_t *lo, uint32_t *hi,
                                                              float *d) {
    if (QT == G4_QT_Q8) {
        *d = *(const float *)blk;
        *lo = ((const uint32_t *)(blk + 4))[i], *hi = ((const uint32_t *)(blk + 4))[4 + i];
        return;
    }
    const uint16_t *h = (const uint16_t *)blk;
    *d = __uint_as_float((uint32_t)h[0] << 16);
    const uint32_t nib = word16(h, 1 + 2 * i);
    *lo = nib & 0x0F0F0F0Fu, *hi = (nib >> 4) & 0x0F0F0F0Fu;
    if (QT == G4_QT_Q6) {
        const uint32_t qh = word16(h, 9 + 2 * (i & 1));
        *lo |= ((qh >> (2 * (i >> 1))) & 0x03030303u) << 4;
        *hi |= ((qh >> (4 + 2 * (i >> 1))) & 0x03030303u) << 4;
    }
}

template <int QT> __device__ __forceinline__ void mma_block(const uint32_t a[4], const uint32_t b[2], int c[4]) {
    if (QT == G4_QT_Q8)
        asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%10,%11,%12,%13};\n"
                     : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(0), "r"(0), "r"(0), "r"(0));
    else
        asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%10,%11,%12,%13};\n"
                     : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(0), "r"(0), "r"(0), "r"(0));
}

/* From this many activation rows on, the tensor-core kernel (overridable to measure). */
#ifndef G4_CUDA_MMA_MIN_T
#define G4_CUDA_MMA_MIN_T 2
#endif
#ifndef G4_CUDA_MMA_CTAS
#define G4_CUDA_MMA_CTAS 2
#endif
enum { MMA_ROWS = 16, MMA_CHUNK = 16 /* blocks of 16 rows staged at a time per warp */, MMA_MIN_T = G4_CUDA_MMA_MIN_T };

/* Each thread block takes groups of 16 weight rows; its warps split a group's blocks, MMA_CHUNK at a time (warp w
 * the chunks w, w + WARPS...), staged through shared memory as in qmatvec_kernel with the next chunk loaded while
 * one is computed. A staged chunk serves TG groups of 8 activation rows in turn (T <= 8 * TG), so that prefill
 * reads each weight once per 8 * TG rows. The warps' partial sums meet in shared memory, added in warp order. */
template <int QT, bool MANY, int TG>
__global__ void __launch_bounds__(WARPS * 32, G4_CUDA_MMA_CTAS) qmatmul_kernel(const mats M, int64_t groups, int64_t K,
                                                               const uint8_t *__restrict__ act, size_t act_stride,
                                                               int T) {
    constexpr int BB = fmt<QT>::bytes, PIECES = MMA_CHUNK * BB / 16, V = (MMA_ROWS * PIECES + 31) / 32;
    __shared__ __align__(16) uint8_t stage[WARPS][MMA_ROWS][MMA_CHUNK * BB];
    __shared__ float partial[WARPS][32][4];
    __shared__ float act_d[WARPS][MMA_CHUNK][8];
    __shared__ int act_s[WARPS][MMA_CHUNK][8];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, g = lane >> 2, i = lane & 3;
    const int64_t nb = K / 32, row_bytes = nb * BB, chunks = (nb + MMA_CHUNK - 1) / MMA_CHUNK;
    bool wide = (row_bytes & 15) == 0;
    #pragma unroll
    for (int k = 0; k < G4_CUDA_QMAT_MAX; k++) wide = wide && ((uintptr_t)M.w[k] & 15) == 0; /* unused: NULL */
    uint8_t(*mine)[MMA_CHUNK * BB] = stage[wid];
    uint4 v[V];
    auto fetch = [&](int64_t gr, int64_t chunk) { /* full chunks of real rows come in 16-byte pieces */
        const bool whole = wide && nb - chunk * MMA_CHUNK >= MMA_CHUNK;
        const int k = locate<MANY>(M, &gr);
        const uint8_t *w = pick(M.w, k);
        const int64_t N = pick(M.n, k);
#pragma unroll
        for (int u = 0; u < V; u++) {
            const int p = lane + 32 * u, r = p / PIECES, q = p % PIECES;
            const int64_t row = gr * MMA_ROWS + r;
            if (whole && p < MMA_ROWS * PIECES && row < N)
                v[u] = __ldg((const uint4 *)(w + row * row_bytes + chunk * MMA_CHUNK * BB) + q);
        }
    };
    if (blockIdx.x < groups && wid < chunks) fetch(blockIdx.x, wid);
    for (int64_t all = blockIdx.x; all < groups; all += gridDim.x) { /* a group of all the matrices */
        int64_t grp = all;
        const int mk = locate<MANY>(M, &grp);
        const uint8_t *w = pick(M.w, mk);
        const int64_t N = pick(M.n, mk);
        float acc[TG][4];
#pragma unroll
        for (int tg = 0; tg < TG; tg++) acc[tg][0] = acc[tg][1] = acc[tg][2] = acc[tg][3] = 0;
        for (int64_t c = wid; c < chunks; c += WARPS) {
            const int nblk = (int)(nb - c * MMA_CHUNK < MMA_CHUNK ? nb - c * MMA_CHUNK : MMA_CHUNK);
            const bool whole = wide && nblk == MMA_CHUNK;
#pragma unroll
            for (int k = 0; k < V; k++) {
                const int p = lane + 32 * k, r = p / PIECES, q = p % PIECES;
                if (whole && p < MMA_ROWS * PIECES && grp * MMA_ROWS + r < N) ((uint4 *)mine[r])[q] = v[k];
            }
            if (!whole) /* a short chunk, or unaligned rows: 2-byte reads */
                for (int p = lane; p < MMA_ROWS * nblk * BB / 2; p += 32) {
                    const int r = p / (nblk * BB / 2), q = p % (nblk * BB / 2);
                    const int64_t row = grp * MMA_ROWS + r;
                    if (row < N)
                        ((uint16_t *)mine[r])[q] = ((const uint16_t *)(w + row * row_bytes + c * MMA_CHUNK * BB))[q];
                }
            __syncwarp();
            if (c + WARPS < chunks) fetch(all, c + WARPS);
            else if (all + gridDim.x < groups && wid < chunks) fetch(all + gridDim.x, wid);
            const bool real0 = grp * MMA_ROWS + g < N, real1 = grp * MMA_ROWS + g + 8 < N;
#pragma unroll
            for (int tg = 0; tg < TG; tg++) {
                if (tg * 8 >= T) break;
                for (int p = lane; p < nblk * 8; p += 32) { /* the chunk's activation scales and sums, this group */
                    const int j = p >> 3, t = tg * 8 + (p & 7);
                    const uint8_t *ar = act + (size_t)(t < T ? t : 0) * act_stride;
                    act_d[wid][j][p & 7] = ((const float *)(ar + K))[c * MMA_CHUNK + j];
                    act_s[wid][j][p & 7] = ((const int32_t *)(ar + K + K / 8))[c * MMA_CHUNK + j];
                }
                __syncwarp();
                const int ta = tg * 8 + g; /* activation row g of the group, for B */
                const uint8_t *arow = act + (size_t)(ta < T ? ta : 0) * act_stride;
#pragma unroll 4
                for (int j = 0; j < nblk; j++) {
                    const int64_t b = c * MMA_CHUNK + j;
                    uint32_t a[4] = {0, 0, 0, 0}, bf[2] = {0, 0};
                    float d0 = 0, d1 = 0;
                    if (real0) block_words<QT>(mine[g] + j * BB, i, &a[0], &a[2], &d0);
                    if (real1) block_words<QT>(mine[g + 8] + j * BB, i, &a[1], &a[3], &d1);
                    if (ta < T)
                        bf[0] = *(const uint32_t *)(arow + b * 32 + 4 * i), bf[1] = *(const uint32_t *)(arow + b * 32 + 16 + 4 * i);
                    int cc[4];
                    mma_block<QT>(a, bf, cc);
#pragma unroll
                    for (int k = 0; k < 4; k++) {
                        const int t = 2 * i + (k & 1);
                        acc[tg][k] += __fmul_rn(k < 2 ? d0 : d1, act_d[wid][j][t]) * (float)(cc[k] - fmt<QT>::offset * act_s[wid][j][t]);
                    }
                }
                __syncwarp(); /* before the next group's scales replace these */
            }
        }
#pragma unroll
        for (int tg = 0; tg < TG; tg++) {
            if (tg * 8 >= T) break;
#pragma unroll
            for (int k = 0; k < 4; k++) partial[wid][lane][k] = acc[tg][k];
            __syncthreads();
            if (wid == 0) {
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    float sum = partial[0][lane][k];
                    for (int u = 1; u < WARPS; u++) sum += partial[u][lane][k];
                    const int t = tg * 8 + 2 * i + (k & 1);
                    const int64_t row = grp * MMA_ROWS + g + (k < 2 ? 0 : 8);
                    if (t < T && row < N) pick(M.y, mk)[(int64_t)t * N + row] = sum;
                }
            }
            __syncthreads();
        }
    }
}

template <int QT, int T>
static void launch_t(const mats &m, bool many, int64_t N, int64_t K, const void *act, cudaStream_t s, int grid) {
    if (many) qmatvec_kernel<QT, T, true><<<grid, WARPS * 32, 0, s>>>(m, N, K, (const uint8_t *)act, g4_qact_row_bytes(K));
    else qmatvec_kernel<QT, T, false><<<grid, WARPS * 32, 0, s>>>(m, N, K, (const uint8_t *)act, g4_qact_row_bytes(K));
}

template <int QT, int TG>
static void launch_mma(const mats &m, bool many, int64_t K, const void *act, int64_t T, cudaStream_t s, int grid,
                       int64_t groups) {
    const size_t as = g4_qact_row_bytes(K);
    if (many) qmatmul_kernel<QT, true, TG><<<grid, WARPS * 32, 0, s>>>(m, groups, K, (const uint8_t *)act, as, (int)T);
    else qmatmul_kernel<QT, false, TG><<<grid, WARPS * 32, 0, s>>>(m, groups, K, (const uint8_t *)act, as, (int)T);
}

template <int QT>
static void launch(const mats &m, bool many, int64_t N, int64_t K, const void *act, int64_t T, cudaStream_t s,
                   int grid, int mma_grid, int64_t groups) {
    if (mma_grid) { /* groups of 8 activation rows: 1, 2, 4 or 8 of them */
        if (T <= 8) return launch_mma<QT, 1>(m, many, K, act, T, s, mma_grid, groups);
        if (T <= 16) return launch_mma<QT, 2>(m, many, K, act, T, s, mma_grid, groups);
        if (T <= 32) return launch_mma<QT, 4>(m, many, K, act, T, s, mma_grid, groups);
        return launch_mma<QT, 8>(m, many, K, act, T, s, mma_grid, groups);
    }
    switch (T) {
    case 1: return launch_t<QT, 1>(m, many, N, K, act, s, grid);
    case 2: return launch_t<QT, 2>(m, many, N, K, act, s, grid);
    case 3: return launch_t<QT, 3>(m, many, N, K, act, s, grid);
    case 4: return launch_t<QT, 4>(m, many, N, K, act, s, grid);
    case 5: return launch_t<QT, 5>(m, many, N, K, act, s, grid);
    case 6: return launch_t<QT, 6>(m, many, N, K, act, s, grid);
    case 7: return launch_t<QT, 7>(m, many, N, K, act, s, grid);
    default: return launch_t<QT, 8>(m, many, N, K, act, s, grid);
    }
}

/* ---- the C entry points ---- */

extern "C" int g4_cuda_probe(g4_cuda_info *info, g4_err *err) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) return cuda_fail(err, e, "no usable NVIDIA GPU or driver");
    if (count < 1) return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "CUDA: no GPU found");
    cudaDeviceProp p;
    CUDA_TRY(cudaSetDevice(0), "cudaSetDevice");
    CUDA_TRY(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
    if (p.major < 6 || (p.major == 6 && p.minor < 1)) /* __dp4a */
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "CUDA: %s (compute capability %d.%d) is older than 6.1", p.name,
                       p.major, p.minor);
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->sm_count = p.multiProcessorCount;
    info->cc_major = p.major, info->cc_minor = p.minor;
    info->memory_bytes = p.totalGlobalMem;
    cudaDriverGetVersion(&info->driver_version);
    cudaRuntimeGetVersion(&info->runtime_version);
    return 0;
}

extern "C" int g4_cuda_malloc(void **d_ptr, size_t bytes, g4_err *err) {
    *d_ptr = NULL;
    CUDA_TRY(cudaMalloc(d_ptr, bytes ? bytes : 1), "cudaMalloc");
    return 0;
}

extern "C" void g4_cuda_free(void *d_ptr) {
    if (d_ptr) cudaFree(d_ptr);
}

extern "C" int g4_cuda_upload(void *d_dst, const void *src, size_t bytes, g4_err *err) {
    CUDA_TRY(cudaMemcpy(d_dst, src, bytes, cudaMemcpyHostToDevice), "copy to the GPU");
    return 0;
}

extern "C" int g4_cuda_download(void *dst, const void *d_src, size_t bytes, g4_err *err) {
    CUDA_TRY(cudaMemcpy(dst, d_src, bytes, cudaMemcpyDeviceToHost), "copy from the GPU");
    return 0;
}

extern "C" int g4_cuda_sync(void *stream, g4_err *err) {
    CUDA_TRY(cudaStreamSynchronize((cudaStream_t)stream), "the GPU's work");
    return 0;
}

extern "C" int g4_cuda_quantize_acts(const float *d_x, int64_t T, int64_t K, void *d_act, void *stream, g4_err *err) {
    if (T < 1 || K < 32 || K % 32) return g4_fail(err, GEMMA4C_ERR_ARG, "CUDA: quantize_acts: bad shape %lld x %lld", (long long)T, (long long)K);
    const int64_t warps = T * (K / 32), threads = 256;
    quantize_acts_kernel<<<(unsigned)((warps * 32 + threads - 1) / threads), (unsigned)threads, 0, (cudaStream_t)stream>>>(
        d_x, T, K, (uint8_t *)d_act, g4_qact_row_bytes(K));
    CUDA_TRY(cudaGetLastError(), "quantize_acts launch");
    return 0;
}

extern "C" int g4_cuda_qmatvec_many(int qt, const g4_cuda_qmat *m, int count, int64_t K, const void *d_act, int64_t T,
                                    void *stream, g4_err *err) {
    if (T < 1 || T > G4_CUDA_QMATMUL_MAX_T || count < 1 || count > G4_CUDA_QMAT_MAX || !g4_qrow_bytes(qt, K))
        return g4_fail(err, GEMMA4C_ERR_ARG, "CUDA: qmatvec: bad arguments (format %d, %d matrices, K %lld, %lld rows)",
                       qt, count, (long long)K, (long long)T);
    mats rows = {}, grouped; /* the same matrices numbered by rows, and by groups of 16 rows */
    int64_t N = 0, groups = 0;
    for (int k = 0; k < G4_CUDA_QMAT_MAX; k++) rows.first[k] = INT64_MAX;
    grouped = rows;
    for (int k = 0; k < count; k++) {
        if (m[k].N < 1) return g4_fail(err, GEMMA4C_ERR_ARG, "CUDA: qmatvec: matrix %d has %lld rows", k, (long long)m[k].N);
        rows.w[k] = (const uint8_t *)m[k].d_w, rows.y[k] = m[k].d_y, rows.n[k] = m[k].N;
        rows.first[k] = N, N += m[k].N;
        grouped.w[k] = rows.w[k], grouped.y[k] = rows.y[k], grouped.n[k] = rows.n[k];
        grouped.first[k] = groups, groups += (m[k].N + MMA_ROWS - 1) / MMA_ROWS;
    }
    rows.first[0] = grouped.first[0] = 0;
    /* enough warps to fill the GPU; each then takes several rows, loading the next while computing one */
    int sms = 0;
    CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "cudaDeviceGetAttribute");
    const int64_t ctas = (N + WARPS - 1) / WARPS, most = (int64_t)sms * CTAS_PER_SM;
    const int grid = (int)(ctas < most ? ctas : most);
    /* The tensor cores serve every activation row with one weight read, but need a group of 16 rows per thread
     * block and 4 chunks of blocks per row to keep the GPU busy; smaller matrices (k and v, the per-layer gate and
     * projection) measured faster with a warp per row, which takes at most 8 activation rows. */
    const bool mma = T > G4_CUDA_QMATVEC_MAX_T || (T >= MMA_MIN_T && groups >= sms && K / 32 >= (int64_t)MMA_CHUNK * WARPS);
    const int mma_grid = mma ? (int)(groups < most ? groups : most) : 0;
    cudaStream_t s = (cudaStream_t)stream;
    const mats &all = mma ? grouped : rows;
    if (qt == G4_QT_Q4) launch<G4_QT_Q4>(all, count > 1, N, K, d_act, T, s, grid, mma_grid, groups);
    else if (qt == G4_QT_Q6) launch<G4_QT_Q6>(all, count > 1, N, K, d_act, T, s, grid, mma_grid, groups);
    else launch<G4_QT_Q8>(all, count > 1, N, K, d_act, T, s, grid, mma_grid, groups);
    CUDA_TRY(cudaGetLastError(), "qmatvec launch");
    return 0;
}

extern "C" int g4_cuda_qmatvec(int qt, const void *d_w, int64_t N, int64_t K, const void *d_act, int64_t T,
                               float *d_y, void *stream, g4_err *err) {
    const g4_cuda_qmat m = {d_w, N, d_y};
    return g4_cuda_qmatvec_many(qt, &m, 1, K, d_act, T, stream, err);
}
