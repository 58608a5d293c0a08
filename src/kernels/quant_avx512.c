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
 * accumulator's start value, spread over the block's 8 lanes. */
VNNI static INLINE __m256i block_values(int qt, const uint8_t *blk) {
    if (qt == G4_QT_Q4) return nibbles(blk + 2);
    if (qt == G4_QT_Q6) return q6_values((const g4_block_q6 *)blk);
    return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 4)), _mm256_set1_epi8(-128));
}

/* Log2 of that offset: 8, 32 or 128. */
static INLINE int offset_log2(int qt) { return qt == G4_QT_Q4 ? 3 : qt == G4_QT_Q6 ? 5 : 7; }

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

/* ---- one activation row (decode) -----------------------------------------------------------------------------
 * Sixteen weight rows at a time. Each row's dot products with a pair of blocks come out of dpbusd as partial sums
 * in 8 lanes a block; integer adds (exact) reduce them while transposing, so that one vector holds block b's whole
 * sum for all 16 rows and another block b + 1's. The float part then runs once per block for the 16 rows, in block
 * order, which is the order every kernel keeps (quant.h). */
enum { VEC_R = 16 };

/* The activation side of blocks (b, b + 1): their 64 int8 values and the dot products' start values, the weights'
 * offset times each block sum spread over the block's 8 lanes. Rows processed together share it. `two` = 0: block
 * b alone (the upper half is then block b again, and its sums are not used). */
typedef struct act_pair {
    __m512i a, start;
} act_pair;

VNNI static INLINE act_pair load_act_pair(int qt, int64_t b, int two, const int8_t *aq, const int32_t *as) {
    const __m256i a0 = _mm256_loadu_si256((const __m256i *)(aq + b * 32));
    const __m256i a1 = two ? _mm256_loadu_si256((const __m256i *)(aq + b * 32 + 32)) : a0;
    const __m256i s0 = _mm256_set1_epi32(as[b]), s1 = two ? _mm256_set1_epi32(as[b + 1]) : s0;
    const __m512i sums = _mm512_inserti64x4(_mm512_castsi256_si512(s0), s1, 1);
    act_pair p;
    p.a = _mm512_inserti64x4(_mm512_castsi256_si512(a0), a1, 1);
    /* spread over the block's 8 lanes: offset / 8 each */
    p.start = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sums, offset_log2(qt) - 3));
    return p;
}

/* Word indices of the permute below, for a pair of Q4 (blocks of 9 words) or Q6 (13 words) blocks. */
#define PAIR_LO(w) 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, w + 1, w + 2, w + 3, w + 4, w + 5, w + 6, w + 7, \
                   w + 8, w + 1, w + 2, w + 3, w + 4, w + 5, w + 6, w + 7, w + 8
static const uint16_t pair_lo_idx[2][32] __attribute__((aligned(64))) = {{PAIR_LO(9)}, {PAIR_LO(13)}};
static const uint16_t pair_hi_idx[32] __attribute__((aligned(64))) = {
    9, 10, 11, 12, 9, 10, 11, 12, 9, 10, 11, 12, 9, 10, 11, 12,
    22, 23, 24, 25, 22, 23, 24, 25, 22, 23, 24, 25, 22, 23, 24, 25};

/* Two consecutive blocks of 18 (Q4) or 26 (Q6) bytes fit in one 64-byte load; word permutes then lay out the
 * values of both in one vector (block b in the low half), at about the cost of one block done alone. */
VNNI static INLINE __m512i pair_dot(int qt, const uint8_t *src, const act_pair *ap) {
    const int q6 = qt == G4_QT_Q6;
    /* 128-bit lanes: block 0 nibbles low/high, block 1 nibbles low/high */
    const __m512i lo_idx = _mm512_load_si512(pair_lo_idx[q6]);
    const __m512i lo_shift = _mm512_setr_epi64(0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0,
                                               0x0004000400040004, 0x0004000400040004);
    __m512i x = _mm512_loadu_si512(src);
    /* Held in a register: compilers fold the load into each permute that reads it, loading the same 64 bytes two
     * or three times. */
    __asm__("" : "+v"(x));
    __m512i v = _mm512_and_si512(_mm512_srlv_epi16(_mm512_permutexvar_epi16(lo_idx, x), lo_shift),
                                 _mm512_set1_epi8(15));
    if (q6) { /* the high bits: a block's qh (words 9..12) in each 64-bit lane of its half, shifted 2 more a lane */
        const __m512i h = _mm512_srlv_epi64(_mm512_permutexvar_epi16(_mm512_load_si512(pair_hi_idx), x),
                                            _mm512_setr_epi64(0, 2, 4, 6, 0, 2, 4, 6));
        v = _mm512_or_si512(v, _mm512_slli_epi16(_mm512_and_si512(h, _mm512_set1_epi8(3)), 4));
    }
    return _mm512_dpbusd_epi32(ap->start, v, ap->a);
}

/* The same for any format from each block's own bytes (G4_Q8, whose 36-byte blocks do not pair in one load, and
 * the last blocks of a row, where a 64-byte load would pass its end); blk1 == blk0 for a block alone. */
VNNI static INLINE __m512i blocks_dot(int qt, const uint8_t *blk0, const uint8_t *blk1, const act_pair *ap) {
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(block_values(qt, blk0)), block_values(qt, blk1), 1);
    return _mm512_dpbusd_epi32(ap->start, v, ap->a);
}

/* Dot vectors of 16 rows (lanes 0-7: block b's partial sums, 8-15: block b + 1's) to each block's whole sums,
 * lane r for row r. In-lane unpacks add pairs of rows and then of row pairs, so that each 128-bit lane holds 4
 * rows; 128-bit shuffles add a block's two lanes and gather the rows in order. */
VNNI static INLINE void reduce_rows(const __m512i d[VEC_R], __m512i *even, __m512i *odd) {
    __m512i w[4];
    for (int q = 0; q < 4; q++) {
        __m512i s[2];
        for (int k = 0; k < 2; k++) {
            const __m512i a = d[4 * q + 2 * k], b = d[4 * q + 2 * k + 1];
            s[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
        }
        w[q] = _mm512_add_epi32(_mm512_unpacklo_epi64(s[0], s[1]), _mm512_unpackhi_epi64(s[0], s[1]));
    }
    const __m512i x01 =
        _mm512_add_epi32(_mm512_shuffle_i32x4(w[0], w[1], 0x88), _mm512_shuffle_i32x4(w[0], w[1], 0xdd));
    const __m512i x23 =
        _mm512_add_epi32(_mm512_shuffle_i32x4(w[2], w[3], 0x88), _mm512_shuffle_i32x4(w[2], w[3], 0xdd));
    *even = _mm512_shuffle_i32x4(x01, x23, 0x88);
    *odd = _mm512_shuffle_i32x4(x01, x23, 0xdd);
}

/* The 16 rows' scales of block b, as floats (bf16 words widen by a shift). */
VNNI static INLINE __m512 row_scales(int qt, const uint8_t *row0, __m512i offsets, int64_t b) {
    const __m512i raw = _mm512_i32gather_epi32(offsets, row0 + (size_t)b * g4_block_size(qt), 1);
    return _mm512_castsi512_ps(qt == G4_QT_Q8 ? raw : _mm512_slli_epi32(raw, 16));
}

/* acc (lane r: row r's sum so far) += blocks b and, when `two`, b + 1, in that order. */
VNNI static INLINE __m512 scale_add(int qt, const __m512i d[VEC_R], int two, const uint8_t *row0, __m512i offsets,
                                    int64_t b, const float *ad, __m512 acc) {
    __m512i even, odd;
    reduce_rows(d, &even, &odd);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(even),
                          _mm512_mul_ps(row_scales(qt, row0, offsets, b), _mm512_set1_ps(ad[b])), acc);
    if (two)
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(odd),
                              _mm512_mul_ps(row_scales(qt, row0, offsets, b + 1), _mm512_set1_ps(ad[b + 1])), acc);
    return acc;
}

/* Prefetches rows [0, n) from `rows` (row_bytes apart, format qt), the part of their blocks at b: every 4 blocks
 * (2 for Q8: 72, 104 or 72 bytes) two cache lines. A fixed stride, not a test of which block starts a line: that
 * branch is taken in a pattern the predictor misses, and measured 25-30 % slower in the few-row product (8 rows,
 * Q4, from memory). b may step by 1 or 2: both strides are even. */
static INLINE void prefetch_rows(int qt, const uint8_t *rows, size_t row_bytes, int n, int64_t b) {
    if (b % (qt == G4_QT_Q8 ? 2 : 4)) return;
    for (int r = 0; r < n; r++) {
        const uint8_t *p = rows + (size_t)r * row_bytes + (size_t)b * g4_block_size(qt);
        __builtin_prefetch(p);
        __builtin_prefetch(p + 64);
    }
}

/* nr (1..16) rows from row0; rows past nr repeat the last one and are not stored. The 16 rows after them are
 * prefetched along the way. */
VNNI static INLINE void vec_group(int qt, const uint8_t *row0, size_t row_bytes, int nr, const int8_t *aq,
                                  const float *ad, const int32_t *as, int64_t nb, float *y) {
    const size_t bb = g4_block_size(qt);
    int32_t off[VEC_R]; /* row r's bytes from row0 (int32: the gathers' offsets) */
    for (int r = 0; r < VEC_R; r++) off[r] = (r < nr ? r : nr - 1) * (int32_t)row_bytes;
    const __m512i offsets = _mm512_loadu_si512(off);
    const uint8_t *next = row0 + (size_t)nr * row_bytes;
    /* the last pair start whose 64-byte load stays inside the row (Q4 and Q6) */
    const int64_t paired = qt == G4_QT_Q8 ? -1 : nb - (64 + (int64_t)bb - 1) / (int64_t)bb;
    __m512 acc = _mm512_setzero_ps();
    __m512i d[VEC_R];
    int64_t b = 0;
    for (; b <= paired; b += 2) {
        prefetch_rows(qt, next, row_bytes, VEC_R, b);
        const act_pair ap = load_act_pair(qt, b, 1, aq, as);
        for (int r = 0; r < VEC_R; r++) d[r] = pair_dot(qt, row0 + off[r] + (size_t)b * bb, &ap);
        acc = scale_add(qt, d, 1, row0, offsets, b, ad, acc);
    }
    for (; b < nb; b += 2) {
        const int two = b + 1 < nb;
        prefetch_rows(qt, next, row_bytes, VEC_R, b);
        const act_pair ap = load_act_pair(qt, b, two, aq, as);
        for (int r = 0; r < VEC_R; r++) {
            const uint8_t *blk = row0 + off[r] + (size_t)b * bb;
            d[r] = blocks_dot(qt, blk, two ? blk + bb : blk, &ap);
        }
        acc = scale_add(qt, d, two, row0, offsets, b, ad, acc);
    }
    _mm512_mask_storeu_ps(y, (__mmask16)((1u << nr) - 1), acc);
}

VNNI static INLINE void vec_qt(int qt, const uint8_t *w, size_t row_bytes, int64_t n, const void *act, int64_t K,
                               float *y) {
    const int8_t *aq = act;
    const float *ad = g4_qact_d(act, K);
    const int32_t *as = g4_qact_s(act, K);
    for (int64_t r = 0; r < n; r += VEC_R) {
        const int nr = n - r < VEC_R ? (int)(n - r) : VEC_R;
        vec_group(qt, w + (size_t)r * row_bytes, row_bytes, nr, aq, ad, as, K / 32, y + r);
    }
}

/* One instance per format, so that the format's branches fold away. */
VNNI static void vec_avx512(int qt, const void *w, size_t row_bytes, int64_t n, const void *act, int64_t K, float *y) {
    if (qt == G4_QT_Q4) vec_qt(G4_QT_Q4, w, row_bytes, n, act, K, y);
    else if (qt == G4_QT_Q6) vec_qt(G4_QT_Q6, w, row_bytes, n, act, K, y);
    else vec_qt(G4_QT_Q8, w, row_bytes, n, act, K, y);
}

/* Unpacked rows hold v + 128 for every format, so the gemm needs one offset correction whatever the weights. */
VNNI static void unpack_w_avx512(int qt, const void *wrow, int64_t b0, int64_t nb, void *dst) {
    size_t bb = g4_block_size(qt);
    uint8_t *v = dst;
    float *d = (float *)(v + nb * 32);
    /* block_values gives v + 8 (Q4), v + 32 (Q6) or v + 128 (Q8) */
    const __m256i to128 = _mm256_set1_epi8(qt == G4_QT_Q4 ? 120 : qt == G4_QT_Q6 ? 96 : 0);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = (const uint8_t *)wrow + (size_t)(b0 + b) * bb;
        _mm256_storeu_si256((__m256i *)(v + b * 32), _mm256_add_epi8(block_values(qt, blk), to128));
        d[b] = qt == G4_QT_Q8 ? g4_readf(blk) : g4_bf16_to_f32(g4_read16(blk));
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
 * Two weight rows at a time: lane t of a vector belongs to activation row t and the first weight row, lane 8 + t
 * to row t and the second. One vector holds both weight rows' blocks (32 value bytes each); a cross-lane dword
 * permute per group g gives lanes 0-7 the first row's group g and lanes 8-15 the second's, against a panel vector
 * holding group g of every activation row in both halves. Eight dpbusd take a whole block for 8 activation rows
 * and 2 weight rows, each lane summing the block exactly, and the float part runs once per block for all 16
 * outputs, in block order (quant.h). */

enum { FEW_R = 4 }; /* weight rows per step: the panel's vectors are loaded once for all four */

/* One panel per G4_QFEW_T rows of the T, one after the other; per block: group g of rows 0..7 (8 dwords) for each
 * g, then each row's block sum (the kernel turns it into the start value for the weights' format), then the
 * scales. */
VNNI static void few_panel_avx512(const void *act, size_t act_stride, int T, int64_t K, void *panels) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i row = _mm256_mullo_epi32(lanes, _mm256_set1_epi32((int)act_stride));
    const __m256i zero = _mm256_setzero_si256();
    uint8_t *out = panels;
    for (int t0 = 0; t0 < T; t0 += G4_QFEW_T) {
        const uint8_t *a = (const uint8_t *)act + (size_t)t0 * act_stride;
        const int nt = T - t0 < G4_QFEW_T ? T - t0 : G4_QFEW_T;
        const __m256i rows = _mm256_cmpgt_epi32(_mm256_set1_epi32(nt), lanes);
        for (int64_t b = 0; b < K / 32; b++, out += G4_QFEW_PANEL_BLOCK) {
            for (int g = 0; g < 8; g++)
                _mm256_store_si256((__m256i *)(out + g * 32),
                                   _mm256_mask_i32gather_epi32(zero, (const int *)(a + b * 32 + g * 4), row, rows, 1));
            _mm256_store_si256((__m256i *)(out + 256),
                               _mm256_mask_i32gather_epi32(zero, (const int *)(g4_qact_s(a, K) + b), row, rows, 1));
            _mm256_store_si256((__m256i *)(out + 288),
                               _mm256_mask_i32gather_epi32(zero, (const int *)(g4_qact_d(a, K) + b), row, rows, 1));
        }
    }
}

/* Two rows' blocks as unsigned bytes, the first's 32 in the low half, and their scales (each in its half). */
VNNI static INLINE __m512i few_pair(int qt, const uint8_t *blk0, const uint8_t *blk1, __m512 *d) {
    __m512i raw = _mm512_mask_set1_epi32(_mm512_set1_epi32((int)g4_read32(blk0)), 0xff00, (int)g4_read32(blk1));
    *d = _mm512_castsi512_ps(qt == G4_QT_Q8 ? raw : _mm512_slli_epi32(raw, 16)); /* bf16: the high half of a float */
    if (qt == G4_QT_Q4) { /* 128-bit lanes: low nibbles, high nibbles of the first row, then of the second */
        const __m512i x = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk0 + 2)))),
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk1 + 2))), 1);
        const __m512i shift = _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4);
        return _mm512_and_si512(_mm512_srlv_epi32(x, shift), _mm512_set1_epi8(15));
    }
    return _mm512_inserti64x4(_mm512_castsi256_si512(block_values(qt, blk0)), block_values(qt, blk1), 1);
}

/* 32 panel bytes (8 activation rows) in both halves of a vector. */
VNNI static INLINE __m512i panel_vector(const uint8_t *p) {
    return _mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)p));
}

VNNI static INLINE void few_rows_qt(int qt, const uint8_t *w, size_t row_bytes, int64_t n, int64_t nb,
                                    const uint8_t *panels, int T, float *y, int64_t ldy, int64_t ahead) {
    const size_t bb = g4_block_size(qt), pass_bytes = (size_t)nb * G4_QFEW_PANEL_BLOCK;
    __m512i group[8]; /* lanes 0-7: dword g of the first row, 8-15: of the second */
    for (int g = 0; g < 8; g++)
        group[g] = _mm512_setr_epi32(g, g, g, g, g, g, g, g, 8 + g, 8 + g, 8 + g, 8 + g, 8 + g, 8 + g, 8 + g, 8 + g);
    for (int64_t r0 = 0; r0 < n; r0 += FEW_R) {
        const int nr = n - r0 < FEW_R ? (int)(n - r0) : FEW_R;
        const int64_t next = n + ahead - (r0 + FEW_R);
        const int n_next = next < 0 ? 0 : next < FEW_R ? (int)next : FEW_R;
        const uint8_t *row[FEW_R];
        for (int r = 0; r < FEW_R; r++) row[r] = w + (size_t)(r0 + (r < nr ? r : nr - 1)) * row_bytes; /* pad: repeat */
        for (int p = 0; p * G4_QFEW_T < T; p++) {
            const uint8_t *panel = panels + (size_t)p * pass_bytes;
            __m512 f[FEW_R / 2];
            for (int k = 0; k < FEW_R / 2; k++) f[k] = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *pb = panel + (size_t)b * G4_QFEW_PANEL_BLOCK;
                if (p == 0 && n_next)
                    prefetch_rows(qt, w + (size_t)(r0 + FEW_R) * row_bytes, row_bytes, n_next, b);
                __m512i a[8];
                for (int g = 0; g < 8; g++) a[g] = panel_vector(pb + 32 * g);
                const __m512i sums = panel_vector(pb + 256);
                const __m512i start = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sums, offset_log2(qt)));
                const __m512 da = _mm512_castsi512_ps(panel_vector(pb + 288));
#pragma GCC unroll 2
                for (int k = 0; k < FEW_R / 2; k++) {
                    __m512 dw;
                    const __m512i v = few_pair(qt, row[2 * k] + (size_t)b * bb, row[2 * k + 1] + (size_t)b * bb, &dw);
                    __m512i acc = start;
#pragma GCC unroll 8
                    for (int g = 0; g < 8; g++)
                        acc = _mm512_dpbusd_epi32(acc, _mm512_permutexvar_epi32(group[g], v), a[g]);
                    f[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(dw, da), f[k]);
                }
            }
            const int nt = T - p * G4_QFEW_T < G4_QFEW_T ? T - p * G4_QFEW_T : G4_QFEW_T;
            for (int k = 0; k < FEW_R / 2; k++) {
                float lanes[16];
                _mm512_storeu_ps(lanes, f[k]);
                for (int h = 0; h < 2 && 2 * k + h < nr; h++)
                    for (int t = 0; t < nt; t++) y[(p * G4_QFEW_T + t) * ldy + r0 + 2 * k + h] = lanes[8 * h + t];
            }
        }
    }
}

/* One instance per format, so that few_pair's branches fold away. */
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
