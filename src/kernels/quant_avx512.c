/* quant_avx512.c — AVX-512 VNNI quantized kernels (x86-64), used only when the CPU and the OS support them. */
#include "quant.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

#include "core/tensor.h"
#include "kernels/quant_bytes.h"

/* Only these functions are compiled for AVX-512: the rest of the program still runs on any x86-64. */
#define VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INLINE inline __attribute__((always_inline))


/* The 32 nibbles of a G4_Q4 block (or the low bits of a G4_Q6 one) as bytes 0..15, in element order: one 16-bit
 * variable shift puts the high nibbles in the upper half. */
VNNI static INLINE __m256i nibbles(const uint8_t *q) {
    __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q));
    __m256i shift = _mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4);
    return _mm256_and_si256(_mm256_srlv_epi16(x, shift), _mm256_set1_epi8(15));
}

/* A G4_Q6 block's values 0..63: the 2 high bits of element j sit in byte j % 8 at bit 2 * (j / 8), so one
 * broadcast and a per-64-bit-lane shift line them up with the nibbles. */
VNNI static INLINE __m256i q6_values(const g4_block_q6 *b) {
    __m256i h = _mm256_set1_epi64x((long long)g4_read64(b->qh));
    h = _mm256_and_si256(_mm256_srlv_epi64(h, _mm256_setr_epi64x(0, 2, 4, 6)), _mm256_set1_epi8(3));
    return _mm256_or_si256(nibbles(b->ql), _mm256_slli_epi16(h, 4));
}

/* dpbusd multiplies unsigned by signed bytes, so weights go in as v + offset (Q4: nibble = v + 8, Q6: v + 32,
 * Q8: v + 128 by flipping the sign bit); the offset times the activation block sum comes off through the
 * accumulator's start value, spread over the 8 lanes. */
VNNI static INLINE __m256 block_step(int qt, const uint8_t *blk, const int8_t *a, float da, int32_t sa, __m256 acc) {
    __m256i wv;
    float d;
    int32_t start;
    if (qt == G4_QT_Q4) {
        wv = nibbles(blk + 2);
        d = g4_bf16_to_f32(g4_read16(blk));
        start = -sa;
    } else if (qt == G4_QT_Q6) {
        wv = q6_values((const g4_block_q6 *)blk);
        d = g4_bf16_to_f32(g4_read16(blk));
        start = -4 * sa;
    } else {
        wv = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 4)), _mm256_set1_epi8(-128));
        d = g4_readf(blk);
        start = -16 * sa;
    }
    __m256i dot = _mm256_dpbusd_epi32(_mm256_set1_epi32(start), wv, _mm256_loadu_si256((const __m256i *)a));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d * da), acc);
}

VNNI static INLINE float hsum256(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* g4_quantize_act_row with the same float operations in the same order, so the bytes are identical: NaN counts
 * as 0 in the maximum (max_ps returns its second operand for NaN) and clamps to -127. */
VNNI static void quantize_act_avx512(const float *x, int64_t K, void *row) {
    int8_t *q = row;
    float *d = (float *)(q + K);
    int32_t *s = (int32_t *)(q + K + K / 8);
    const __m512 zero = _mm512_setzero_ps(), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    const __m512 half = _mm512_set1_ps(0.5f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    for (int64_t b = 0; b < K / 32; b++) {
        __m512 x0 = _mm512_loadu_ps(x + b * 32), x1 = _mm512_loadu_ps(x + b * 32 + 16);
        __m512 m = _mm512_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), zero), _mm512_max_ps(_mm512_abs_ps(x1), zero));
        float amax = _mm512_reduce_max_ps(m);
        float id = amax > 0 ? 127.0f / amax : 0;
        __m512i sum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(h ? x1 : x0, _mm512_set1_ps(id)), lo), hi);
            __m512 r = _mm512_castsi512_ps(
                _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(v), sign), _mm512_castps_si512(half)));
            __m512i iv = _mm512_cvttps_epi32(_mm512_add_ps(v, r));
            sum = _mm512_add_epi32(sum, iv);
            _mm_storeu_si128((__m128i *)(q + b * 32 + 16 * h), _mm512_cvtepi32_epi8(iv));
        }
        d[b] = amax / 127.0f;
        s[b] = _mm512_reduce_add_epi32(sum);
    }
}

/* G4_Q8 (two 36-byte blocks do not fit one load) a block per 256-bit step; two accumulators hide the latency of
 * the float chain, which would otherwise bound the loop. */
VNNI static INLINE void vec_rows(int qt, const uint8_t *w, size_t row_bytes, int64_t n, const int8_t *aq,
                                 const float *ad, const int32_t *as, int64_t nb, float *y) {
    size_t bb = g4_qtype_block_bytes(qt);
    for (int64_t r = 0; r < n; r++) {
        const uint8_t *row = w + (size_t)r * row_bytes;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        int64_t b = 0;
        for (; b + 2 <= nb; b += 2) {
            acc0 = block_step(qt, row + (size_t)b * bb, aq + b * 32, ad[b], as[b], acc0);
            acc1 = block_step(qt, row + (size_t)(b + 1) * bb, aq + (b + 1) * 32, ad[b + 1], as[b + 1], acc1);
        }
        if (b < nb) acc0 = block_step(qt, row + (size_t)b * bb, aq + b * 32, ad[b], as[b], acc0);
        y[r] = hsum256(_mm256_add_ps(acc0, acc1));
    }
}

/* Word indices of the permutes below, for a pair of Q4 (blocks of 9 words) or Q6 (13 words) blocks. */
#define PAIR_LO(w) 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, w + 1, w + 2, w + 3, w + 4, w + 5, w + 6, w + 7, \
                   w + 8, w + 1, w + 2, w + 3, w + 4, w + 5, w + 6, w + 7, w + 8
#define PAIR_D(w) 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, w, w, w, w, w, w, w, w, w, w, w, w, w, w, w, w
static const uint16_t pair_lo_idx[2][32] __attribute__((aligned(64))) = {{PAIR_LO(9)}, {PAIR_LO(13)}};
static const uint16_t pair_d_idx[2][32] __attribute__((aligned(64))) = {{PAIR_D(9)}, {PAIR_D(13)}};
static const uint16_t pair_hi_idx[32] __attribute__((aligned(64))) = {
    9, 10, 11, 12, 9, 10, 11, 12, 9, 10, 11, 12, 9, 10, 11, 12,
    22, 23, 24, 25, 22, 23, 24, 25, 22, 23, 24, 25, 22, 23, 24, 25};

/* The activation side of a pair of blocks (b, b + 1): their 64 int8 values, the weights' offset (8 or 32) times
 * each block sum spread over the block's 8 lanes (the dot product's start value) and each block's scale, also
 * spread. It does not depend on the weight row, so rows processed together share it. */
typedef struct act_pair {
    __m512i a, start;
    __m512 da;
} act_pair;

VNNI static INLINE act_pair load_act_pair(int qt, int64_t b, const int8_t *aq, const float *ad, const int32_t *as) {
    const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512i sums = _mm512_permutexvar_epi32(halves, _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(as + b))));
    act_pair p;
    p.a = _mm512_loadu_si512(aq + b * 32);
    p.start = _mm512_sub_epi32(_mm512_setzero_si512(), qt == G4_QT_Q6 ? _mm512_slli_epi32(sums, 2) : sums);
    p.da = _mm512_permutexvar_ps(halves,
                                 _mm512_castps128_ps512(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(ad + b)))));
    return p;
}

/* Two consecutive blocks of 18 (Q4) or 26 (Q6) bytes fit in one 64-byte load; word permutes then lay out in one
 * vector the nibbles of both blocks, their high bits (Q6) and both bf16 scales as floats, so that a pair of blocks
 * costs about as many instructions as one block done alone. */
VNNI static INLINE __m512 pair_step(int qt, const uint8_t *src, const act_pair *ap, __m512 acc) {
    const int q6 = qt == G4_QT_Q6;
    /* 128-bit lanes: block 0 nibbles low/high, block 1 nibbles low/high */
    const __m512i lo_idx = _mm512_loadu_si512(pair_lo_idx[q6]);
    const __m512i lo_shift = _mm512_setr_epi64(0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0,
                                               0x0004000400040004, 0x0004000400040004);
    /* Q6 high bits: a block's qh (words 9..12) in each 64-bit lane of its half, shifted 2 more per lane */
    const __m512i hi_idx = _mm512_loadu_si512(pair_hi_idx);
    const __m512i hi_shift = _mm512_setr_epi64(0, 2, 4, 6, 0, 2, 4, 6);
    /* the scales: each bf16 word into the high half of 8 float lanes (the low halves masked to zero) */
    const __m512i d_idx = _mm512_loadu_si512(pair_d_idx[q6]);
    const __m512i nib = _mm512_set1_epi8(15), two = _mm512_set1_epi8(3);
    __m512i x = _mm512_loadu_si512(src);
    /* Held in a register: compilers fold the load into each permute that reads it, loading the same 64 bytes two
     * or three times (3 % slower from cache here). */
    __asm__("" : "+v"(x));
    __m512i v = _mm512_and_si512(_mm512_srlv_epi16(_mm512_permutexvar_epi16(lo_idx, x), lo_shift), nib);
    if (q6) {
        __m512i h = _mm512_srlv_epi64(_mm512_permutexvar_epi16(hi_idx, x), hi_shift);
        v = _mm512_or_si512(v, _mm512_slli_epi16(_mm512_and_si512(h, two), 4));
    }
    __m512 dw = _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(0xaaaaaaaa, d_idx, x));
    __m512i dot = _mm512_dpbusd_epi32(ap->start, v, ap->a);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, ap->da), acc);
}

/* A decode step reads each weight row once, from memory. The kernel runs a pointer through the matrix about this
 * many bytes ahead of its reads and prefetches every line up to it. A prefetch per pair of blocks instead (which
 * skipped a line in nine and each row's tail) streamed 2560-wide 4-bit rows at 45 GB/s and 10240-wide ones at 54
 * on this 2-core Zen 4; line by line 48-51 and 58-64 (4 KiB ahead: 47 and 58; 16 KiB: no better; into L2 only: 43
 * and 48). The hardware prefetcher alone streamed 6-bit rows at 27 GB/s. */
enum { PREFETCH_AHEAD = 8192 };

/* Prefetches the lines from pf up to goal; returns where it stopped. */
static INLINE const char *prefetch_until(const char *pf, const char *goal) {
    for (; pf < goal; pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
    return pf;
}

/* Where a kernel's prefetch pointer starts for a matrix at w: its first line, PREFETCH_AHEAD bytes on. */
static INLINE const char *prefetch_start(const void *w) {
    return (const char *)((uintptr_t)w & ~(uintptr_t)63) + PREFETCH_AHEAD;
}

/* `rows` (1, 2 or 4) consecutive rows: rows read together share the activation side of every pair (two rows: 39 vs
 * 36 GB/s from cache on 2560-wide rows, 43 vs 38 on 10240-wide ones; from memory, alternating in one process,
 * 45-52 vs 38-46 and no slower); two accumulators per row hide the float chain's latency. The 64-byte loads of
 * the pairs must stay inside the row (masked loads would, but they stall streaming from memory), so the last few
 * blocks go one by one. */
VNNI static INLINE void row_group(int qt, int rows, const uint8_t *row0, size_t row_bytes, const int8_t *aq,
                                  const float *ad, const int32_t *as, int64_t nb, const char **prefetched, float *y) {
    const int bb = qt == G4_QT_Q6 ? 26 : 18;
    const int64_t full = nb - (64 + bb - 1) / bb; /* the last pair start whose 64 bytes stay in the row */
    const char *pf = *prefetched;
    __m512 acc[4][2];
    for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= full; b += 4) {
        /* ahead of the last row's position, moving `rows` times as fast, so that it meets the next group's start */
        const size_t done = (size_t)(rows - 1) * row_bytes + (size_t)rows * (size_t)(b + 4) * bb;
        pf = prefetch_until(pf, (const char *)row0 + done + PREFETCH_AHEAD);
        for (int half = 0; half < 2; half++) { /* one pair's activation side at a time: fewer live registers */
            const act_pair p = load_act_pair(qt, b + 2 * half, aq, ad, as);
            for (int r = 0; r < rows; r++)
                acc[r][half] =
                    pair_step(qt, row0 + (size_t)r * row_bytes + (size_t)(b + 2 * half) * bb, &p, acc[r][half]);
        }
    }
    *prefetched = prefetch_until(pf, (const char *)row0 + (size_t)(2 * rows - 1) * row_bytes + PREFETCH_AHEAD);
    for (; b <= full; b += 2) {
        act_pair p = load_act_pair(qt, b, aq, ad, as);
        for (int r = 0; r < rows; r++)
            acc[r][0] = pair_step(qt, row0 + (size_t)r * row_bytes + (size_t)b * bb, &p, acc[r][0]);
    }
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = row0 + (size_t)r * row_bytes;
        __m256 tail = _mm256_setzero_ps();
        for (int64_t t = b; t < nb; t++) tail = block_step(qt, row + (size_t)t * bb, aq + t * 32, ad[t], as[t], tail);
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1])) + hsum256(tail);
    }
}

VNNI static INLINE void vec_pair_rows(int qt, const uint8_t *w, size_t row_bytes, int64_t n, const int8_t *aq,
                                      const float *ad, const int32_t *as, int64_t nb, float *y) {
    const char *prefetched = prefetch_start(w);
    int64_t r = 0;
    /* Short rows four at a time. From memory, alternating with two at a time in one process: 4-bit rows of 1536
     * (864 bytes) 58-64 vs 50-56 GB/s, of 2048 (1152 bytes) 54-57 vs 50-53, 6-bit rows of 1536 (1248 bytes) 58-59
     * vs 54-56; but 4-bit rows of 2560 (1440 bytes) 55-57 vs 60-65. */
    if (row_bytes <= 1280)
        for (; r + 4 <= n; r += 4)
            row_group(qt, 4, w + (size_t)r * row_bytes, row_bytes, aq, ad, as, nb, &prefetched, y + r);
    for (; r + 2 <= n; r += 2)
        row_group(qt, 2, w + (size_t)r * row_bytes, row_bytes, aq, ad, as, nb, &prefetched, y + r);
    if (r < n) row_group(qt, 1, w + (size_t)r * row_bytes, row_bytes, aq, ad, as, nb, &prefetched, y + r);
}

VNNI static void vec_avx512(int qt, const void *w, size_t row_bytes, int64_t n, const void *act, int64_t K, float *y) {
    const int8_t *aq = act;
    const float *ad = g4_qact_d(act, K);
    const int32_t *as = g4_qact_s(act, K);
    if (qt == G4_QT_Q4) vec_pair_rows(G4_QT_Q4, w, row_bytes, n, aq, ad, as, K / 32, y);
    else if (qt == G4_QT_Q6) vec_pair_rows(G4_QT_Q6, w, row_bytes, n, aq, ad, as, K / 32, y);
    else vec_rows(G4_QT_Q8, w, row_bytes, n, aq, ad, as, K / 32, y);
}

/* Unpacked rows hold v + 128 for every format, so the gemm needs one offset correction whatever the weights. */
VNNI static void unpack_w_avx512(int qt, const void *wrow, int64_t b0, int64_t nb, void *dst) {
    size_t bb = g4_qtype_block_bytes(qt);
    uint8_t *v = dst;
    float *d = (float *)(v + nb * 32);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = (const uint8_t *)wrow + (size_t)(b0 + b) * bb;
        __m256i x;
        if (qt == G4_QT_Q4) {
            x = _mm256_add_epi8(nibbles(blk + 2), _mm256_set1_epi8(120));
            d[b] = g4_bf16_to_f32(g4_read16(blk));
        } else if (qt == G4_QT_Q6) {
            x = _mm256_add_epi8(q6_values((const g4_block_q6 *)blk), _mm256_set1_epi8(96));
            d[b] = g4_bf16_to_f32(g4_read16(blk));
        } else {
            x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 4)), _mm256_set1_epi8(-128));
            d[b] = g4_readf(blk);
        }
        _mm256_storeu_si256((__m256i *)(v + b * 32), x);
    }
}

enum { T_TILE = 32, N_TILE = 6, PANEL_BLOCK = T_TILE * 40 };

/* X(i) for each row of the tile. The macro (rather than a loop) gives every accumulator a constant index, which is
 * what lets compilers keep the arrays in registers; `i < NR` folds away in each instance. */
#define EACH_ROW(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* The micro-kernel: NR weight rows x NV vectors of 16 activation rows. Each 4-byte weight group is broadcast
 * against 16 rows' matching bytes, so a block costs 8 dpbusd per (row, vector) and 3 float ops to apply the two
 * scales; the int32 accumulator starts at -128 * (activation block sum) to remove the weights' offset. */
VNNI static INLINE void gemm_tile(int NR, int NV, const uint8_t *w, size_t wstride, const uint8_t *panel, int64_t b0,
                                  int64_t nb, float *out, int accumulate) {
    __m512 f[N_TILE][2];
    __m512i acc[N_TILE][2];
    const __m512 zero = _mm512_setzero_ps();
#define INIT(i)                                                                                   \
    if (i < NR) {                                                                                 \
        f[i][0] = accumulate ? _mm512_loadu_ps(out + i * T_TILE) : zero;                          \
        if (NV > 1) f[i][1] = accumulate ? _mm512_loadu_ps(out + i * T_TILE + 16) : zero;         \
    }
    EACH_ROW(INIT)
    const float *wd = (const float *)(w + nb * 32);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)(b0 + b) * PANEL_BLOCK;
        __m512i start0 =
            _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_loadu_si512(p + T_TILE * 36), 7));
        __m512i start1 = NV > 1 ? _mm512_sub_epi32(_mm512_setzero_si512(),
                                                   _mm512_slli_epi32(_mm512_loadu_si512(p + T_TILE * 36 + 64), 7))
                                : start0;
#define START(i)                           \
    if (i < NR) {                          \
        acc[i][0] = start0;                \
        if (NV > 1) acc[i][1] = start1;    \
    }
        EACH_ROW(START)
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m512i a0 = _mm512_loadu_si512(p + g * T_TILE * 4);
            __m512i a1 = NV > 1 ? _mm512_loadu_si512(p + g * T_TILE * 4 + 64) : a0;
#define DOT(i)                                                                                    \
    if (i < NR) {                                                                                 \
        __m512i wb = _mm512_set1_epi32((int)g4_read32(w + (size_t)i * wstride + b * 32 + g * 4));  \
        acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], wb, a0);                                       \
        if (NV > 1) acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], wb, a1);                           \
    }
            EACH_ROW(DOT)
        }
        __m512 da0 = _mm512_loadu_ps((const float *)(p + T_TILE * 32));
        __m512 da1 = NV > 1 ? _mm512_loadu_ps((const float *)(p + T_TILE * 32) + 16) : da0;
#define SCALE(i)                                                                                           \
    if (i < NR) {                                                                                          \
        __m512 dw = _mm512_set1_ps(((const float *)((const uint8_t *)wd + (size_t)i * wstride))[b]);      \
        f[i][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][0]), _mm512_mul_ps(da0, dw), f[i][0]);        \
        if (NV > 1) f[i][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][1]), _mm512_mul_ps(da1, dw), f[i][1]); \
    }
        EACH_ROW(SCALE)
    }
#define STORE(i)                                                          \
    if (i < NR) {                                                         \
        _mm512_storeu_ps(out + i * T_TILE, f[i][0]);                      \
        if (NV > 1) _mm512_storeu_ps(out + i * T_TILE + 16, f[i][1]);     \
    }
    EACH_ROW(STORE)
#undef INIT
#undef START
#undef DOT
#undef SCALE
#undef STORE
}

/* The same over 8 activation rows in 256-bit vectors, for panels of at most 8 real rows (a batch of a few decoding
 * sessions): a 512-bit dpbusd is two 256-bit ones on some CPUs (Zen 4), so half-empty 512-bit vectors would cost
 * as much as full ones. */
VNNI static INLINE void gemm_tile8(int NR, const uint8_t *w, size_t wstride, const uint8_t *panel, int64_t b0, int64_t nb,
                                   float *out, int accumulate) {
    __m256 f[N_TILE];
    __m256i acc[N_TILE];
#define INIT8(i) \
    if (i < NR) f[i] = accumulate ? _mm256_loadu_ps(out + i * T_TILE) : _mm256_setzero_ps();
    EACH_ROW(INIT8)
    const float *wd = (const float *)(w + nb * 32);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)(b0 + b) * PANEL_BLOCK;
        const __m256i start =
            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(p + T_TILE * 36)), 7));
#define START8(i) \
    if (i < NR) acc[i] = start;
        EACH_ROW(START8)
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m256i a = _mm256_loadu_si256((const __m256i *)(p + g * T_TILE * 4));
#define DOT8(i)                                                                                       \
    if (i < NR)                                                                                       \
        acc[i] = _mm256_dpbusd_epi32(acc[i], _mm256_set1_epi32((int)g4_read32(w + (size_t)i * wstride + b * 32 + g * 4)), a);
            EACH_ROW(DOT8)
        }
        const __m256 da = _mm256_loadu_ps((const float *)(p + T_TILE * 32));
#define SCALE8(i)                                                                                            \
    if (i < NR)                                                                                              \
        f[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i]),                                                   \
                               _mm256_mul_ps(da, _mm256_set1_ps(((const float *)((const uint8_t *)wd + (size_t)i * wstride))[b])), f[i]);
        EACH_ROW(SCALE8)
    }
#define STORE8(i) \
    if (i < NR) _mm256_storeu_ps(out + i * T_TILE, f[i]);
    EACH_ROW(STORE8)
#undef INIT8
#undef START8
#undef DOT8
#undef SCALE8
#undef STORE8
}

/* One instance per (rows, vectors) so that every accumulator lives in a register. */
#define GEMM_CASE(nr)                                                          \
    case nr:                                                                   \
        if (nt <= 8) gemm_tile8(nr, w, wstride, panel, b0, nb, out, acc);      \
        else if (nv == 1) gemm_tile(nr, 1, w, wstride, panel, b0, nb, out, acc); \
        else gemm_tile(nr, 2, w, wstride, panel, b0, nb, out, acc);            \
        break;

VNNI static void gemm_avx512(int qt, const void *wrows, size_t wstride, int nr, const void *panel_, int nt, int64_t b0,
                             int64_t nb, float *out, int acc) {
    const uint8_t *w = wrows, *panel = panel_;
    int nv = nt > 16 ? 2 : 1;
    switch (nr) {
        GEMM_CASE(1)
        GEMM_CASE(2)
        GEMM_CASE(3)
        GEMM_CASE(4)
        GEMM_CASE(5)
        default:
        GEMM_CASE(6)
    }
    (void)qt;
}

/* ---- few activation rows: the weights as stored --------------------------------------------------------------
 * Lane h * 8 + t of a vector belongs to activation row t and half h of a block (elements 16h..16h+15). A weight
 * block becomes one vector whose 128-bit lanes hold its first half twice, then its second half twice; broadcasting
 * dword q within each 128-bit lane then gives every lane (t, h) group 4h + q of the block, against panel vector q,
 * which holds group 4h + q of every row t. Four dpbusd take a whole block for 8 rows, and the scales apply once per
 * block and weight row to all 8 rows at once. */

enum { FEW_R = 4 }; /* weight rows per step: the panel's vectors are loaded once for all four */

/* Log2 of the offset that makes a format's values unsigned (Q4: q = v + 8, Q6: v + 32, Q8: v + 128). */
static INLINE int few_offset_shift(int qt) { return qt == G4_QT_Q4 ? 3 : qt == G4_QT_Q6 ? 5 : 7; }

/* One panel per G4_QFEW_T rows of the T, one after the other. */
VNNI static void few_panel_avx512(int qt, const void *act, size_t act_stride, int T, int64_t K, void *panels) {
    const int stride = (int)act_stride, shift = few_offset_shift(qt);
    const __m512i t = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
    const __m512i h = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
    const __m512i row = _mm512_mullo_epi32(t, _mm512_set1_epi32(stride)), group = _mm512_add_epi32(row, h);
    const __m512i zero = _mm512_setzero_si512();
    uint8_t *out = panels;
    for (int t0 = 0; t0 < T; t0 += G4_QFEW_T) {
        const uint8_t *a = (const uint8_t *)act + (size_t)t0 * act_stride;
        const int nt = T - t0 < G4_QFEW_T ? T - t0 : G4_QFEW_T;
        const __mmask16 rows = (__mmask16)((1u << nt) - 1), both = (__mmask16)(rows | rows << 8);
        for (int64_t b = 0; b < K / 32; b++, out += G4_QFEW_PANEL_BLOCK) {
            for (int q = 0; q < 4; q++) {
                const __m512i at = _mm512_add_epi32(group, _mm512_set1_epi32(4 * q));
                _mm512_store_si512(out + q * 64, _mm512_mask_i32gather_epi32(zero, both, at, a + b * 32, 1));
            }
            const __m512i sums = _mm512_mask_i32gather_epi32(zero, rows, row, g4_qact_s(a, K) + b, 1);
            _mm512_store_si512(out + 256, _mm512_sub_epi32(zero, _mm512_slli_epi32(sums, shift)));
            const __m512 da = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), both, row, g4_qact_d(a, K) + b, 1);
            _mm512_store_ps(out + 320, da);
        }
    }
}

/* A block's values as unsigned bytes, laid out as the section's comment says, and its scale in every lane. Q4 (most
 * weights) splits its nibbles in the 512-bit vector; Q6 and Q8 take the one-row kernel's 32 bytes and spread them. */
VNNI static INLINE __m512i few_block(int qt, const uint8_t *blk, __m512 *d) {
    if (qt == G4_QT_Q8) *d = _mm512_set1_ps(g4_readf(blk));
    else /* bf16 scale: the block's first two bytes, as the high half of a float */
        *d = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_set1_epi32((int)g4_read32(blk)), 16));
    if (qt == G4_QT_Q4) {
        const __m512i x = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(blk + 2)));
        const __m512i shift = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4);
        return _mm512_and_si512(_mm512_srlv_epi32(x, shift), _mm512_set1_epi8(15));
    }
    const __m256i v = qt == G4_QT_Q6 ? q6_values((const g4_block_q6 *)blk)
                                     : _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 4)),
                                                        _mm256_set1_epi8(-128));
    const __m512i z = _mm512_castsi256_si512(v);
    return _mm512_shuffle_i64x2(z, z, 0x50); /* 128-bit lanes 0, 0, 1, 1 */
}

/* Prefetches rows [0, n) from `rows` (row_bytes apart), the part of their blocks at b: every `every` blocks
 * (at most 128 bytes of them) two cache lines. A fixed stride, not a test of which block starts a line: that
 * branch is taken in a pattern the predictor misses, and measured 25-30 % slower (8 rows, Q4, from memory). */
static INLINE void few_prefetch(const uint8_t *rows, size_t row_bytes, int n, size_t bb, int every, int64_t b) {
    if (b % every) return;
    for (int r = 0; r < n; r++) {
        const uint8_t *p = rows + (size_t)r * row_bytes + (size_t)b * bb;
        __builtin_prefetch(p);
        __builtin_prefetch(p + 64);
    }
}

VNNI static INLINE void few_rows_qt(int qt, const uint8_t *w, size_t row_bytes, int64_t n, int64_t nb,
                                    const uint8_t *panels, int T, float *y, int64_t ldy, int64_t ahead) {
    const size_t bb = g4_qtype_block_bytes(qt), pass_bytes = (size_t)nb * G4_QFEW_PANEL_BLOCK;
    const int every = qt == G4_QT_Q8 ? 2 : 4; /* 72, 72 or 104 bytes */
    for (int64_t r0 = 0; r0 < n; r0 += FEW_R) {
        const int nr = n - r0 < FEW_R ? (int)(n - r0) : FEW_R;
        const int64_t next = n + ahead - (r0 + FEW_R);
        const int n_next = next < 0 ? 0 : next < FEW_R ? (int)next : FEW_R;
        const uint8_t *row[FEW_R];
        for (int r = 0; r < FEW_R; r++) row[r] = w + (size_t)(r0 + (r < nr ? r : nr - 1)) * row_bytes; /* pad: repeat */
        for (int p = 0; p * G4_QFEW_T < T; p++) {
            const uint8_t *panel = panels + (size_t)p * pass_bytes;
            __m512 f[FEW_R];
            for (int r = 0; r < FEW_R; r++) f[r] = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *pb = panel + (size_t)b * G4_QFEW_PANEL_BLOCK;
                if (p == 0 && n_next)
                    few_prefetch(w + (size_t)(r0 + FEW_R) * row_bytes, row_bytes, n_next, bb, every, b);
                const __m512i a0 = _mm512_load_si512(pb), a1 = _mm512_load_si512(pb + 64);
                const __m512i a2 = _mm512_load_si512(pb + 128), a3 = _mm512_load_si512(pb + 192);
                const __m512i start = _mm512_load_si512(pb + 256);
                const __m512 da = _mm512_load_ps(pb + 320);
#pragma GCC unroll 4
                for (int r = 0; r < FEW_R; r++) {
                    __m512 dw;
                    const __m512i v = few_block(qt, row[r] + (size_t)b * bb, &dw);
                    __m512i acc = _mm512_dpbusd_epi32(start, _mm512_shuffle_epi32(v, _MM_PERM_AAAA), a0);
                    acc = _mm512_dpbusd_epi32(acc, _mm512_shuffle_epi32(v, _MM_PERM_BBBB), a1);
                    acc = _mm512_dpbusd_epi32(acc, _mm512_shuffle_epi32(v, _MM_PERM_CCCC), a2);
                    acc = _mm512_dpbusd_epi32(acc, _mm512_shuffle_epi32(v, _MM_PERM_DDDD), a3);
                    f[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(da, dw), f[r]);
                }
            }
            const int nt = T - p * G4_QFEW_T < G4_QFEW_T ? T - p * G4_QFEW_T : G4_QFEW_T;
            for (int r = 0; r < nr; r++) { /* row t's two halves */
                float lanes[16];
                _mm512_storeu_ps(lanes, f[r]);
                for (int t = 0; t < nt; t++) y[(p * G4_QFEW_T + t) * ldy + r0 + r] = lanes[t] + lanes[8 + t];
            }
        }
    }
}

/* One instance per format, so that few_block's branches fold away. */
VNNI static void few_rows_avx512(int qt, const void *w, size_t row_bytes, int64_t n, int64_t nb, const void *panels,
                                 int T, float *y, int64_t ldy, int64_t ahead) {
    if (qt == G4_QT_Q4) few_rows_qt(G4_QT_Q4, w, row_bytes, n, nb, panels, T, y, ldy, ahead);
    else if (qt == G4_QT_Q6) few_rows_qt(G4_QT_Q6, w, row_bytes, n, nb, panels, T, y, ldy, ahead);
    else few_rows_qt(G4_QT_Q8, w, row_bytes, n, nb, panels, T, y, ldy, ahead);
}

static const g4_quant_ops avx512_ops = {"avx512vnni",    quantize_act_avx512, vec_avx512,       T_TILE,         N_TILE,
                                        unpack_w_avx512, gemm_avx512,         few_panel_avx512, few_rows_avx512};

/* The OS must save the opmask and all 512-bit registers (XCR0 bits 1, 2, 5, 6, 7), or the instructions fault. */
static int os_saves_zmm(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xe6) == 0xe6;
}

const g4_quant_ops *g4_quant_ops_avx512vnni(void) {
    unsigned a, b, c, d;
    if (!os_saves_zmm() || !__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_FMA)) return NULL;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return NULL;
    int avx2 = (b >> 5) & 1, f = (b >> 16) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
    return avx2 && f && bw && vl && vnni ? &avx512_ops : NULL;
}
#else
const g4_quant_ops *g4_quant_ops_avx512vnni(void) { return NULL; }
#endif
