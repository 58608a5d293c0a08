/* quant_avx2.c — AVX2 quantized kernels (x86-64), compiled for that target, used only when the CPU has it. */
#include "quant.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <string.h>

#include "core/tensor.h"
#include "kernels/quant_bytes.h"

/* Only these functions are compiled for AVX2: the rest of the program still runs on any x86-64. */
#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE inline __attribute__((always_inline))


/* The 32 nibbles of a G4_Q4 block (or the low bits of a G4_Q6 one) as bytes 0..15, in element order. */
AVX2 static INLINE __m256i nibbles(const uint8_t *q) {
    __m128i x = _mm_loadu_si128((const __m128i *)q);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(15));
}

/* A G4_Q6 block's values 0..63: the 2 high bits of element j sit in byte j % 8 at bit 2 * (j / 8). */
AVX2 static INLINE __m256i q6_values(const g4_block_q6 *b) {
    __m256i h = _mm256_set1_epi64x((long long)g4_read64(b->qh));
    h = _mm256_and_si256(_mm256_srlv_epi64(h, _mm256_setr_epi64x(0, 2, 4, 6)), _mm256_set1_epi8(3));
    return _mm256_or_si256(nibbles(b->ql), _mm256_slli_epi16(h, 4));
}

/* maddubs multiplies unsigned by signed bytes into saturating int16 pairs. Q4 and Q6 go in as their stored
 * unsigned codes (v + 8, v + 32: |pair| <= 2 * 63 * 127, no saturation) and the offset comes off through the
 * activation block sum; Q8 is signed, so its sign moves onto the activations instead. The block's products come
 * out as 8 partial sums, without the offset. */
AVX2 static INLINE __m256i block_dot(int qt, const uint8_t *blk, __m256i a) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (qt == G4_QT_Q8) {
        const __m256i wv = _mm256_loadu_si256((const __m256i *)(blk + 4));
        return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(a, wv)), ones);
    }
    const __m256i wv = qt == G4_QT_Q4 ? nibbles(blk + 2) : q6_values((const g4_block_q6 *)blk);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(wv, a), ones);
}

AVX2 static INLINE float hmax256(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* g4_quantize_act_row with the same float operations in the same order, so the bytes are identical: NaN counts
 * as 0 in the maximum (max_ps returns its second operand for NaN) and clamps to -127. */
AVX2 static void quantize_act_avx2(const float *x, int64_t K, void *row) {
    int8_t *q = row;
    float *d = (float *)(q + K);
    int32_t *s = (int32_t *)(q + K + K / 8);
    const __m256 zero = _mm256_setzero_ps(), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256 half = _mm256_set1_ps(0.5f), sign = _mm256_set1_ps(-0.0f);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < K / 32; b++) {
        __m256 xv[4], m = zero;
        for (int h = 0; h < 4; h++) {
            xv[h] = _mm256_loadu_ps(x + b * 32 + 8 * h);
            m = _mm256_max_ps(m, _mm256_max_ps(_mm256_and_ps(xv[h], absm), zero));
        }
        float amax = hmax256(m);
        float id = amax > 0 ? 127.0f / amax : 0;
        __m256i iv[4], sum = _mm256_setzero_si256();
        for (int h = 0; h < 4; h++) {
            __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(xv[h], _mm256_set1_ps(id)), lo), hi);
            iv[h] = _mm256_cvttps_epi32(_mm256_add_ps(v, _mm256_or_ps(_mm256_and_ps(v, sign), half)));
            sum = _mm256_add_epi32(sum, iv[h]);
        }
        /* the packs interleave 128-bit lanes; one dword permute restores element order */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]), _mm256_packs_epi32(iv[2], iv[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + b * 32), p);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        d[b] = amax / 127.0f;
        s[b] = _mm_cvtsi128_si32(s4);
    }
}

/* ---- one activation row (decode) -----------------------------------------------------------------------------
 * Eight weight rows at a time: each row's partial sums of a block are reduced across lanes with integer adds
 * (exact) while transposing, so that one vector holds the block's whole sum for the 8 rows (lane r: row r) and the
 * float part runs once per block for all 8, in block order, the order every kernel keeps (quant.h). */
enum { VEC_R = 8 };

/* Each of 8 rows' 8 partial sums to one: pairs of lanes within 128-bit halves, then the two halves. */
AVX2 static INLINE __m256i reduce_rows(const __m256i d[VEC_R]) {
    const __m256i q0 = _mm256_hadd_epi32(_mm256_hadd_epi32(d[0], d[1]), _mm256_hadd_epi32(d[2], d[3]));
    const __m256i q1 = _mm256_hadd_epi32(_mm256_hadd_epi32(d[4], d[5]), _mm256_hadd_epi32(d[6], d[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31));
}

/* nr (1..8) rows from row0; rows past nr repeat the last one and are not stored. The next 8 rows are prefetched
 * along the way, two cache lines each every 4 blocks (2 for Q8). */
AVX2 static INLINE void vec_group(int qt, const uint8_t *row0, size_t row_bytes, int nr, const int8_t *aq,
                                  const float *ad, const int32_t *as, int64_t nb, float *y) {
    const size_t bb = g4_block_size(qt);
    const int every = qt == G4_QT_Q8 ? 2 : 4, offset = qt == G4_QT_Q4 ? 8 : 32;
    int32_t off[VEC_R]; /* row r's bytes from row0 (int32: the gather's offsets) */
    for (int r = 0; r < VEC_R; r++) off[r] = (r < nr ? r : nr - 1) * (int32_t)row_bytes;
    const __m256i offsets = _mm256_loadu_si256((const __m256i *)off);
    const uint8_t *next = row0 + (size_t)nr * row_bytes;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (b % every == 0)
            for (int r = 0; r < VEC_R; r++) {
                __builtin_prefetch(next + (size_t)r * row_bytes + (size_t)b * bb);
                __builtin_prefetch(next + (size_t)r * row_bytes + (size_t)b * bb + 64);
            }
        const __m256i a = _mm256_loadu_si256((const __m256i *)(aq + b * 32));
        __m256i d[VEC_R];
        for (int r = 0; r < VEC_R; r++) d[r] = block_dot(qt, row0 + off[r] + (size_t)b * bb, a);
        __m256i sums = reduce_rows(d);
        if (qt != G4_QT_Q8) sums = _mm256_sub_epi32(sums, _mm256_set1_epi32(as[b] * offset));
        __m256i raw = _mm256_i32gather_epi32((const int *)(row0 + (size_t)b * bb), offsets, 1);
        const __m256 dw = _mm256_castsi256_ps(qt == G4_QT_Q8 ? raw : _mm256_slli_epi32(raw, 16));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(dw, _mm256_set1_ps(ad[b])), acc);
    }
    _mm256_maskstore_ps(y, _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), acc);
}

AVX2 static INLINE void vec_rows(int qt, const uint8_t *w, size_t row_bytes, int64_t n, const int8_t *aq,
                                 const float *ad, const int32_t *as, int64_t nb, float *y) {
    for (int64_t r = 0; r < n; r += VEC_R)
        vec_group(qt, w + (size_t)r * row_bytes, row_bytes, n - r < VEC_R ? (int)(n - r) : VEC_R, aq, ad, as, nb,
                  y + r);
}

/* One instance per format, so that the format's branches fold away. */
AVX2 static void vec_avx2(int qt, const void *w, size_t row_bytes, int64_t n, const void *act, int64_t K, float *y) {
    const int8_t *aq = act;
    const float *ad = g4_qact_d(act, K);
    const int32_t *as = g4_qact_s(act, K);
    if (qt == G4_QT_Q4) vec_rows(G4_QT_Q4, w, row_bytes, n, aq, ad, as, K / 32, y);
    else if (qt == G4_QT_Q6) vec_rows(G4_QT_Q6, w, row_bytes, n, aq, ad, as, K / 32, y);
    else vec_rows(G4_QT_Q8, w, row_bytes, n, aq, ad, as, K / 32, y);
}

/* Unpacked rows keep each format's own encoding: Q4 and Q6 codes unsigned, Q8 signed (see block_dot). */
AVX2 static void unpack_w_avx2(int qt, const void *wrow, int64_t b0, int64_t nb, void *dst) {
    size_t bb = g4_block_size(qt);
    uint8_t *v = dst;
    float *d = (float *)(v + nb * 32);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = (const uint8_t *)wrow + (size_t)(b0 + b) * bb;
        __m256i x;
        if (qt == G4_QT_Q8) {
            x = _mm256_loadu_si256((const __m256i *)(blk + 4));
            d[b] = g4_readf(blk);
        } else {
            x = qt == G4_QT_Q4 ? nibbles(blk + 2) : q6_values((const g4_block_q6 *)blk);
            d[b] = g4_bf16_to_f32(g4_read16(blk));
        }
        _mm256_storeu_si256((__m256i *)(v + b * 32), x);
    }
}

enum { T_TILE = 8, N_TILE = 4, PANEL_BLOCK = T_TILE * 40 };

/* The int16 pair sums of one weight group (4 bytes, broadcast) with 8 activation rows. */
AVX2 static INLINE __m256i group_product(int qt, const uint8_t *wg, __m256i a) {
    __m256i wb = _mm256_set1_epi32((int)g4_read32(wg));
    return qt == G4_QT_Q8 ? _mm256_maddubs_epi16(_mm256_abs_epi8(wb), _mm256_sign_epi8(a, wb))
                          : _mm256_maddubs_epi16(wb, a);
}

/* Keeps a running sum a chain: gcc otherwise reassociates the integer additions into a tree, which holds every
 * product of a block live at once and spills most of them. */
#define CHAIN(v) __asm__("" : "+x"(v))

/* X(i) for each row of the tile. The macro (rather than a loop) gives every accumulator a constant index, which is
 * what lets compilers keep the arrays in registers; `i < NR` folds away in each instance. */
#define EACH_ROW(X) X(0) X(1) X(2) X(3)

/* The micro-kernel: NR weight rows x 8 activation rows. A 4-byte weight group is broadcast against the matching
 * bytes of the 8 rows. int16 sums of `span` group steps are widened at once: Q4 pairs are at most 3810 in size,
 * so a whole block fits in int16; Q6 pairs (16002) fit two steps; Q8 goes through the sign trick one step at a
 * time. */
AVX2 static INLINE void gemm_tile(int qt, int NR, const uint8_t *w, size_t wstride, const uint8_t *panel, int64_t b0,
                                  int64_t nb, float *out, int accumulate) {
    const int span = qt == G4_QT_Q4 ? 8 : qt == G4_QT_Q6 ? 2 : 1;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 f[N_TILE];
    __m256i acc[N_TILE], s16[N_TILE];
#define INIT(i) \
    if (i < NR) f[i] = accumulate ? _mm256_loadu_ps(out + i * T_TILE) : _mm256_setzero_ps();
    EACH_ROW(INIT)
    const uint8_t *wd = w + nb * 32;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)(b0 + b) * PANEL_BLOCK;
        __m256i start = _mm256_setzero_si256();
        if (qt != G4_QT_Q8)
            start = _mm256_sub_epi32(start, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(p + T_TILE * 36)),
                                                              qt == G4_QT_Q4 ? 3 : 5));
#define START(i) \
    if (i < NR) acc[i] = start;
        EACH_ROW(START)
#pragma GCC unroll 8
        for (int g0 = 0; g0 < 8; g0 += span) {
            __m256i a = _mm256_loadu_si256((const __m256i *)(p + g0 * T_TILE * 4));
#define FIRST(i) \
    if (i < NR) s16[i] = group_product(qt, w + (size_t)i * wstride + b * 32 + g0 * 4, a);
            EACH_ROW(FIRST)
#pragma GCC unroll 8
            for (int g = g0 + 1; g < g0 + span; g++) {
                a = _mm256_loadu_si256((const __m256i *)(p + g * T_TILE * 4));
#define NEXT(i)                                                                                              \
    if (i < NR) {                                                                                            \
        s16[i] = _mm256_add_epi16(s16[i], group_product(qt, w + (size_t)i * wstride + b * 32 + g * 4, a));  \
        CHAIN(s16[i]);                                                                                       \
    }
                EACH_ROW(NEXT)
            }
#define WIDEN(i)                                                                 \
    if (i < NR) {                                                                \
        acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(s16[i], ones));     \
        CHAIN(acc[i]);                                                           \
    }
            EACH_ROW(WIDEN)
        }
        __m256 da = _mm256_loadu_ps((const float *)(p + T_TILE * 32));
#define SCALE(i)                                                                                  \
    if (i < NR) {                                                                                 \
        __m256 dw = _mm256_set1_ps(g4_readf(wd + (size_t)i * wstride + b * 4));                     \
        f[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i]), _mm256_mul_ps(da, dw), f[i]);          \
    }
        EACH_ROW(SCALE)
    }
#define STORE(i) \
    if (i < NR) _mm256_storeu_ps(out + i * T_TILE, f[i]);
    EACH_ROW(STORE)
#undef INIT
#undef START
#undef FIRST
#undef NEXT
#undef WIDEN
#undef SCALE
#undef STORE
}

/* One instance per (format, rows) so that every accumulator lives in a register. */
#define GEMM_ROWS(qt)                                                  \
    switch (nr) {                                                      \
    case 1: gemm_tile(qt, 1, w, wstride, panel, b0, nb, out, acc); break;   \
    case 2: gemm_tile(qt, 2, w, wstride, panel, b0, nb, out, acc); break;   \
    case 3: gemm_tile(qt, 3, w, wstride, panel, b0, nb, out, acc); break;   \
    default: gemm_tile(qt, 4, w, wstride, panel, b0, nb, out, acc); break;  \
    }

AVX2 static void gemm_avx2(int qt, const void *wrows, size_t wstride, int nr, const void *panel_, int nt, int64_t b0,
                           int64_t nb, float *out, int acc) {
    const uint8_t *w = wrows, *panel = panel_;
    if (qt == G4_QT_Q4) GEMM_ROWS(G4_QT_Q4)
    else if (qt == G4_QT_Q6) GEMM_ROWS(G4_QT_Q6)
    else GEMM_ROWS(G4_QT_Q8)
    (void)nt;
}

static const g4_quant_ops avx2_ops = {"avx2", quantize_act_avx2, vec_avx2, T_TILE, N_TILE, unpack_w_avx2, gemm_avx2};

const g4_quant_ops *g4_quant_ops_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &avx2_ops : NULL;
}
#else
const g4_quant_ops *g4_quant_ops_avx2(void) { return NULL; }
#endif
