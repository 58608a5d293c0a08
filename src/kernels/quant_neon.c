/* quant_neon.c — ARM NEON quantized kernels on the dot product extension (aarch64), used only when the CPU has it. */
#include "quant.h"

#if defined(__aarch64__) && defined(__GNUC__)
#include <arm_neon.h>
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif

#include "core/tensor.h"
#include "kernels/quant_bytes.h"

/* Only these functions need the dot product extension, so the rest of the program runs on any ARMv8. A build for
 * a CPU that has it (-march=...+dotprod, Apple) needs no attribute. */
#if defined(__ARM_FEATURE_DOTPROD)
#define DOTPROD
#elif defined(__clang__)
#define DOTPROD __attribute__((target("dotprod")))
#else
#define DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#define INLINE inline __attribute__((always_inline))

/* acc[k] += Σ_j a[4k+j] * b[4k+j]. clang before 16 declares vdotq_s32 only when the whole file targets dotprod,
 * so it gets the builtin behind the intrinsic (34: the int32x4 type code). */
DOTPROD static INLINE int32x4_t sdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if !defined(__ARM_FEATURE_DOTPROD) && defined(__clang__) && __clang_major__ < 16
    return (int32x4_t)__builtin_neon_vdotq_v((int8x16_t)acc, a, b, 34);
#else
    return vdotq_s32(acc, a, b);
#endif
}


/* A block's signed values (elements 0..15 in v[0], 16..31 in v[1]) and its scale. */
DOTPROD static INLINE float block_values(int qt, const uint8_t *blk, int8x16_t v[2]) {
    if (qt == G4_QT_Q8) {
        v[0] = vld1q_s8((const int8_t *)blk + 4);
        v[1] = vld1q_s8((const int8_t *)blk + 20);
        return g4_readf(blk);
    }
    uint8x16_t x = vld1q_u8(blk + 2), lo = vandq_u8(x, vdupq_n_u8(15)), hi = vshrq_n_u8(x, 4);
    if (qt == G4_QT_Q4) {
        v[0] = vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8(8));
        v[1] = vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8(8));
    } else {
        /* bits 4-5 of element j sit in qh[j % 8] at bit 2 * (j / 8) */
        uint8x8_t h = vld1_u8(blk + 18);
        uint8x16_t h0 = vcombine_u8(h, vshr_n_u8(h, 2)), h1 = vcombine_u8(vshr_n_u8(h, 4), vshr_n_u8(h, 6));
        h0 = vshlq_n_u8(vandq_u8(h0, vdupq_n_u8(3)), 4);
        h1 = vshlq_n_u8(vandq_u8(h1, vdupq_n_u8(3)), 4);
        v[0] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, h0)), vdupq_n_s8(32));
        v[1] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(hi, h1)), vdupq_n_s8(32));
    }
    return g4_bf16_to_f32(g4_read16(blk));
}

/* One activation row (decode), four weight rows at a time: each row's block dot product comes out of sdot as 4
 * partial sums; pairwise adds (exact) reduce 4 rows' at once into one vector, lane r for row r, and the float part
 * runs once per block for the 4, in block order, the order every kernel keeps (quant.h). */
enum { VEC_R = 4 };

DOTPROD static INLINE int32x4_t block_dot(int qt, const uint8_t *blk, int8x16_t a0, int8x16_t a1, float *d) {
    int8x16_t v[2];
    *d = block_values(qt, blk, v);
    return sdot(sdot(vdupq_n_s32(0), v[0], a0), v[1], a1);
}

/* nr (1..4) rows from row0; rows past nr repeat the last one and are not stored. */
DOTPROD static INLINE void vec_group(int qt, const uint8_t *row0, size_t row_bytes, int nr, const int8_t *aq,
                                     const float *ad, int64_t nb, float *y) {
    const size_t bb = g4_block_size(qt);
    const uint8_t *row[VEC_R];
    for (int r = 0; r < VEC_R; r++) row[r] = row0 + (size_t)(r < nr ? r : nr - 1) * row_bytes;
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t b = 0; b < nb; b++) {
        const int8x16_t a0 = vld1q_s8(aq + b * 32), a1 = vld1q_s8(aq + b * 32 + 16);
        int32x4_t d[VEC_R];
        float dw[VEC_R];
        for (int r = 0; r < VEC_R; r++) d[r] = block_dot(qt, row[r] + (size_t)b * bb, a0, a1, &dw[r]);
        const int32x4_t sums = vpaddq_s32(vpaddq_s32(d[0], d[1]), vpaddq_s32(d[2], d[3]));
        acc = vfmaq_f32(acc, vcvtq_f32_s32(sums), vmulq_n_f32(vld1q_f32(dw), ad[b]));
    }
    float out[VEC_R];
    vst1q_f32(out, acc);
    for (int r = 0; r < nr; r++) y[r] = out[r];
}

DOTPROD static INLINE void vec_rows(int qt, const uint8_t *w, size_t row_bytes, int64_t n, const int8_t *aq,
                                    const float *ad, int64_t nb, float *y) {
    for (int64_t r = 0; r < n; r += VEC_R)
        vec_group(qt, w + (size_t)r * row_bytes, row_bytes, n - r < VEC_R ? (int)(n - r) : VEC_R, aq, ad, nb, y + r);
}

DOTPROD static void vec_neon(int qt, const void *w, size_t row_bytes, int64_t n, const void *act, int64_t K, float *y) {
    const int8_t *aq = act;
    const float *ad = g4_qact_d(act, K);
    if (qt == G4_QT_Q4) vec_rows(G4_QT_Q4, w, row_bytes, n, aq, ad, K / 32, y);
    else if (qt == G4_QT_Q6) vec_rows(G4_QT_Q6, w, row_bytes, n, aq, ad, K / 32, y);
    else vec_rows(G4_QT_Q8, w, row_bytes, n, aq, ad, K / 32, y);
}

/* sdot multiplies signed by signed, so unpacked rows are the plain signed values. */
DOTPROD static void unpack_w_neon(int qt, const void *wrow, int64_t b0, int64_t nb, void *dst) {
    size_t bb = g4_block_size(qt);
    int8_t *v = dst;
    float *d = (float *)((char *)dst + nb * 32);
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t x[2];
        d[b] = block_values(qt, (const uint8_t *)wrow + (size_t)(b0 + b) * bb, x);
        vst1q_s8(v + b * 32, x[0]);
        vst1q_s8(v + b * 32 + 16, x[1]);
    }
}

enum { T_TILE = 8, N_TILE = 4, PANEL_BLOCK = T_TILE * 40 };

/* X(i) for each row of the tile. The macro (rather than a loop) gives every accumulator a constant index, which is
 * what lets compilers keep the arrays in registers; `i < NR` folds away in each instance. */
#define EACH_ROW(X) X(0) X(1) X(2) X(3)

/* The micro-kernel: NR weight rows x 2 vectors of 4 activation rows; each 4-byte weight group is loaded
 * broadcast (ld1r) against the matching bytes of 4 rows. */
DOTPROD static INLINE void gemm_tile(int NR, const uint8_t *w, size_t wstride, const uint8_t *panel, int64_t b0,
                                     int64_t nb, float *out, int accumulate) {
    float32x4_t f[N_TILE][2];
    int32x4_t acc[N_TILE][2];
#define INIT(i)                                                                 \
    if (i < NR) {                                                               \
        f[i][0] = accumulate ? vld1q_f32(out + i * T_TILE) : vdupq_n_f32(0);    \
        f[i][1] = accumulate ? vld1q_f32(out + i * T_TILE + 4) : vdupq_n_f32(0); \
    }
    EACH_ROW(INIT)
    const uint8_t *wd = w + nb * 32;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)(b0 + b) * PANEL_BLOCK;
#define START(i) \
    if (i < NR) acc[i][0] = acc[i][1] = vdupq_n_s32(0);
        EACH_ROW(START)
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            int8x16_t a0 = vld1q_s8((const int8_t *)p + g * T_TILE * 4);
            int8x16_t a1 = vld1q_s8((const int8_t *)p + g * T_TILE * 4 + 16);
#define DOT(i)                                                                                                    \
    if (i < NR) {                                                                                                 \
        const int32_t *wg = (const int32_t *)(w + (size_t)i * wstride + b * 32 + g * 4);                  \
        int8x16_t wb = vreinterpretq_s8_s32(vld1q_dup_s32(wg));                                            \
        acc[i][0] = sdot(acc[i][0], a0, wb);                                                                      \
        acc[i][1] = sdot(acc[i][1], a1, wb);                                                                      \
    }
            EACH_ROW(DOT)
        }
        float32x4_t da0 = vld1q_f32((const float *)(p + T_TILE * 32));
        float32x4_t da1 = vld1q_f32((const float *)(p + T_TILE * 32) + 4);
#define SCALE(i)                                                                        \
    if (i < NR) {                                                                       \
        float dw = g4_readf(wd + (size_t)i * wstride + b * 4);                             \
        f[i][0] = vfmaq_f32(f[i][0], vcvtq_f32_s32(acc[i][0]), vmulq_n_f32(da0, dw));   \
        f[i][1] = vfmaq_f32(f[i][1], vcvtq_f32_s32(acc[i][1]), vmulq_n_f32(da1, dw));   \
    }
        EACH_ROW(SCALE)
    }
#define STORE(i)                                  \
    if (i < NR) {                                 \
        vst1q_f32(out + i * T_TILE, f[i][0]);     \
        vst1q_f32(out + i * T_TILE + 4, f[i][1]); \
    }
    EACH_ROW(STORE)
#undef INIT
#undef START
#undef DOT
#undef SCALE
#undef STORE
}

DOTPROD static void gemm_neon(int qt, const void *wrows, size_t wstride, int nr, const void *panel, int nt, int64_t b0,
                              int64_t nb, float *out, int acc) {
    switch (nr) {
    case 1: gemm_tile(1, wrows, wstride, panel, b0, nb, out, acc); break;
    case 2: gemm_tile(2, wrows, wstride, panel, b0, nb, out, acc); break;
    case 3: gemm_tile(3, wrows, wstride, panel, b0, nb, out, acc); break;
    default: gemm_tile(4, wrows, wstride, panel, b0, nb, out, acc); break;
    }
    (void)qt, (void)nt;
}

/* Activations are quantized by the portable code: it is a small part of the work here. */
static const g4_quant_ops neon_ops = {"neon", g4_quantize_act_row, vec_neon, T_TILE, N_TILE, unpack_w_neon, gemm_neon};

const g4_quant_ops *g4_quant_ops_neon(void) {
#if defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) ? &neon_ops : NULL;
#elif defined(__APPLE__)
    int has = 0;
    size_t len = sizeof has;
    return sysctlbyname("hw.optional.arm.FEAT_DotProd", &has, &len, NULL, 0) == 0 && has ? &neon_ops : NULL;
#elif defined(__ARM_FEATURE_DOTPROD)
    return &neon_ops;
#else
    return NULL;
#endif
}
#else
const g4_quant_ops *g4_quant_ops_neon(void) { return NULL; }
#endif
