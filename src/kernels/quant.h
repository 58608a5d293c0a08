/* quant.h — block-quantized weights (G4_Q8, G4_Q4, G4_Q6), int8 activations and the quantized matrix products. */
#ifndef G4_QUANT_H
#define G4_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/threads.h"

/* Every format cuts a weight row of K elements (K a multiple of 32; other rows stay bf16) into K/32 blocks of
 * 32 consecutive elements, each with its own scale d. Rows are stored one after the other, blocks in order. */
#define G4_QBLOCK 32

typedef enum g4_qtype {
    G4_QT_Q8 = 0, /* 36 bytes a block (9 bits a weight)   */
    G4_QT_Q4 = 1, /* 18 bytes a block (4.5 bits a weight) */
    G4_QT_Q6 = 2, /* 26 bytes a block (6.5 bits a weight) */
    G4_QT_COUNT
} g4_qtype;

/* value = d * q; d = max|x| / 127 (symmetric). */
typedef struct g4_block_q8 {
    float d;
    int8_t q[32];
} g4_block_q8;

/* value = bf16(d) * (q - 8) with q in 0..15; element j is the low nibble of q[j] for j < 16 and the high nibble
 * of q[j - 16] for j >= 16. The scale is chosen so that a block already on a 4-bit grid (s * k, s a bf16 number,
 * k integers in [-8, 7], as in Google's QAT checkpoints) comes back exactly. */
typedef struct g4_block_q4 {
    uint16_t d;
    uint8_t q[16];
} g4_block_q4;

/* value = bf16(d) * (q - 32) with q in 0..63; bits 0-3 of element j sit in ql exactly as the nibbles of G4_Q4,
 * bits 4-5 in qh[j % 8] at bit 2 * (j / 8), so that one shift per 8-element group rebuilds them. */
typedef struct g4_block_q6 {
    uint16_t d;
    uint8_t ql[16];
    uint8_t qh[8];
} g4_block_q6;

#ifndef __cplusplus /* the CUDA kernels include this header as C++ */
_Static_assert(sizeof(g4_block_q8) == 36 && sizeof(g4_block_q4) == 18 && sizeof(g4_block_q6) == 26,
               "block layouts are stored in files");
#endif

const char *g4_qtype_name(int qt); /* "G4_Q8", "G4_Q4", "G4_Q6"; NULL when unknown */
int g4_qtype_from_name(const char *name); /* the g4_qtype, or -1 */
size_t g4_qtype_block_bytes(int qt);      /* 0 when unknown */
/* Bytes of one row of K weights; 0 when K is not a positive multiple of 32 or qt is unknown. */
size_t g4_qrow_bytes(int qt, int64_t K);

/* One row of K floats to format qt and back; -1 (nothing written) when g4_qrow_bytes(qt, K) is 0. Quantizing
 * searches ~40 scales per block for the smallest squared error: meant for conversion, not for the hot path.
 * NaN inputs become 0; infinities saturate. */
int g4_quantize_row(int qt, const float *x, int64_t K, void *dst);
int g4_dequantize_row(int qt, const void *src, int64_t K, float *dst);

/* Error-compensated rounding (GPTQ, Frantar et al. 2022) for G4_Q4 and G4_Q6: the row is rounded left to right and
 * each value's rounding error is spread over the values not yet rounded so that x · W^T, for inputs x like those
 * of a calibration text, moves least. It works on spans of G4_GPTQ_SPAN inputs (the diagonal blocks of the
 * inputs' Gram matrix G = Σ x x^T; a K x K matrix would not fit for E4B's 10240-wide inputs).
 * g4_gptq_factor turns those blocks, K rows of G4_GPTQ_SPAN floats (span s's row i at (s * SPAN + i) * SPAN, the
 * last span's rows and columns as many as it has inputs), into what g4_quantize_row_gptq takes, in place: the upper
 * Cholesky factor of each block's inverse after adding G4_GPTQ_DAMP times its mean diagonal. -1 when a block is
 * not positive definite even so, or out of memory. g4_quantize_row_gptq: work holds K floats; -1 (nothing
 * written) for another format or a bad K. A row already on a format's grid (QAT) comes back exactly, as with
 * g4_quantize_row. */
#define G4_GPTQ_SPAN 256
#define G4_GPTQ_DAMP 0.01
int g4_gptq_factor(float *gram, int64_t K);
int g4_quantize_row_gptq(int qt, const float *x, int64_t K, const float *u, float *work, void *dst);

/* ---- Activations ---------------------------------------------------------------------------------------------
 * A row of K activations (K a multiple of 32) quantized per block of 32: int8 q[K] (|q| <= 127), then float
 * d[K/32] (x ≈ d * q), then int32 s[K/32] (each block's sum of q: the weights' zero offsets are applied through it
 * instead of per element). Rows are g4_qact_row_bytes(K) apart, a multiple of 64. */
size_t g4_qact_row_bytes(int64_t K);
void g4_quantize_act_row(const float *x, int64_t K, void *row);
static inline const float *g4_qact_d(const void *row, int64_t K) { return (const float *)((const char *)row + K); }
static inline const int32_t *g4_qact_s(const void *row, int64_t K) {
    return (const int32_t *)((const char *)row + K + K / 8);
}

/* ---- Kernels -------------------------------------------------------------------------------------------------
 * The per-ISA primitives. Every kernel of every variant computes an output in one order: acc = 0, then for each
 * block b in order acc = fma((float)D_b, dw_b * da_b, acc), D_b the block's exact integer dot product, dw_b and
 * da_b the weight and activation scales (one rounded float product). So a row's results are bit for bit the
 * same whichever kernel the batch size picks, and the same in every variant: a session decodes the same tokens
 * alone or among others.
 *
 * Batched products go through two intermediate layouts built by the driver (g4_qmatmul):
 * - an activation panel: t_tile activation rows regrouped per block so that one vector holds the same 4 bytes
 *   of many rows (g4_qpanel_pack; layout below, shared by all variants);
 * - unpacked weight rows: unpack_w turns nb blocks of one row into nb*32 bytes of values (encoded as the variant
 *   needs them: signed, or unsigned with an offset the kernel removes through the block sums) followed by nb
 *   float scales, G4_QUNPACKED_BLOCK bytes a block.
 * gemm then multiplies up to n_tile unpacked rows by one panel, broadcasting 4 weight bytes against a vector of
 * activation rows: no weight transposition, and the activation layout is paid once for all N rows. */
#define G4_QUNPACKED_BLOCK 36

typedef struct g4_quant_ops {
    const char *name; /* "portable", "avx2", "avx512vnni", "neon" */
    /* g4_quantize_act_row, bit for bit. */
    void (*quantize_act)(const float *x, int64_t K, void *row);
    /* y[i] = W[i] · a for i < n: n weight rows of format qt, row_bytes apart, against one activation row. */
    void (*vec)(int qt, const void *w, size_t row_bytes, int64_t n, const void *act, int64_t K, float *y);
    int t_tile; /* activation rows per panel (a multiple of 4) */
    int n_tile; /* most weight rows one gemm call takes */
    /* Blocks [b0, b0 + nb) of weight row `wrow` (format qt) into dst (nb * G4_QUNPACKED_BLOCK bytes). */
    void (*unpack_w)(int qt, const void *wrow, int64_t b0, int64_t nb, void *dst);
    /* out[i * t_tile + t] (+)= Σ_{b < nb} (unpacked row i, block b) · (panel row t, block b0 + b) for i < nr and
     * t < t_tile, added to what out holds when `accumulate`; nr <= n_tile; unpacked rows are wstride bytes apart;
     * rows t >= nt of the panel are padding the kernel may skip (their outputs are then unspecified). */
    void (*gemm)(int qt, const void *wrows, size_t wstride, int nr, const void *panel, int nt, int64_t b0,
                 int64_t nb, float *out, int accumulate);
    /* Optional (NULL: unused), for a few activation rows (sessions decoding together): the weights are read as
     * stored, each row once, with the activation rows in the vector lanes, so nothing is repacked per product.
     * few_panel arranges T activation rows (act_stride bytes apart) into ceil(T / G4_QFEW_T) panels one after the
     * other (rows 8p.. in panel p, rows past T as zero), G4_QFEW_PANEL_BLOCK bytes per block (K/32 blocks) each, at
     * 64-byte aligned `panels`; they serve weights of every format. few_rows: y[t * ldy + i] = W_i · (activation
     * row t) for i < n and t < T, W_i the n rows at w (format qt, row_bytes apart, nb blocks each), the activations
     * as few_panel left them; the `ahead` rows after the n are prefetched along the way, so that reading memory
     * overlaps the arithmetic. */
    void (*few_panel)(const void *act, size_t act_stride, int T, int64_t K, void *panels);
    void (*few_rows)(int qt, const void *w, size_t row_bytes, int64_t n, int64_t nb, const void *panels, int T,
                     float *y, int64_t ldy, int64_t ahead);
} g4_quant_ops;

/* Activation rows one few-row panel holds, and its bytes per block: 8 groups of 4 activation bytes per row, the
 * offsets' start values, the scales. */
#define G4_QFEW_T 8
#define G4_QFEW_PANEL_BLOCK 320

const g4_quant_ops *g4_quant_ops_portable(void);
const g4_quant_ops *g4_quant_ops_avx2(void);       /* NULL when the build or the CPU lacks AVX2 + FMA */
const g4_quant_ops *g4_quant_ops_avx512vnni(void); /* NULL without AVX512F/BW/VL/VNNI or OS support for them */
const g4_quant_ops *g4_quant_ops_neon(void);       /* NULL unless aarch64 with the dotprod extension */
/* AVX-512 VNNI with the batched product on AMX tiles; NULL without AMX-INT8 or the OS's grant of tile state.
 * Not chosen by g4_quant_ops_best unless GEMMA4C_KERNELS=amx (it measured no faster than VNNI). */
const g4_quant_ops *g4_quant_ops_amx(void);
/* The best variant this CPU runs; GEMMA4C_KERNELS=portable|avx2|avx512|amx|neon forces one (when available). */
const g4_quant_ops *g4_quant_ops_best(void);

/* Activation panel of t_tile rows over K: per block b (K/32 of them, t_tile*40 bytes each): q[8][t_tile][4]
 * (group g holds elements 4g..4g+3 of every row), then float d[t_tile], then int32 s[t_tile]. Rows past nt are 0. */
size_t g4_qpanel_bytes(int t_tile, int64_t K);
void g4_qpanel_pack(int t_tile, const void *act, size_t act_stride, int nt, int64_t K, void *panel);

/* Up to this many activation rows (decode), products stream each weight row once per activation row. */
#define G4_QVEC_MAX_ROWS 3

/* ---- Matrix products -----------------------------------------------------------------------------------------
 * y[T, N] = x[T, K] · W[N, K]^T with W of format wtype (N rows of g4_qrow_bytes(wtype, K) bytes, K a multiple of
 * 32). x rows are quantized once (int8 per block of 32), then the N output rows are split over the pool (NULL:
 * run inline). Up to G4_QVEC_MAX_ROWS rows of x (decode) each weight row streams once per row of x through ops->vec;
 * up to 48 (sessions decoding together) the variant's few-row product, where it has one, reads each weight row
 * once for all of them; above, weight tiles are unpacked once and the register-blocked ops->gemm runs them over
 * panels of x, cut into K-chunks that stay in cache. scratch: g4_qmatmul_scratch_bytes(ops, pool, T, K) bytes for
 * this pool, any alignment, reusable, and enough for any smaller T and K too; nothing is allocated. Returns 0, or -1 (y
 * untouched) for an unknown wtype, a K that is not a multiple of 32, or T or N < 1. One product at a time per
 * pool. */
size_t g4_qmatmul_scratch_bytes(const g4_quant_ops *ops, const g4_pool *pool, int64_t T, int64_t K);
int g4_qmatmul(const g4_quant_ops *ops, g4_pool *pool, const float *x, int64_t T, int64_t K, const void *w,
               int wtype, int64_t N, float *y, void *scratch);

/* The same product from activations already quantized, e.g. once for the q, k and v projections of one input:
 * T rows of g4_qact_row_bytes(K) bytes, at least 4-byte aligned (g4_quantize_acts writes them, rows split over the
 * pool); scratch: g4_qmatmul_act_scratch_bytes(ops, pool, T, K) bytes (0 below 4 rows). */
void g4_quantize_acts(const g4_quant_ops *ops, g4_pool *pool, const float *x, int64_t T, int64_t K, void *act);
size_t g4_qmatmul_act_scratch_bytes(const g4_quant_ops *ops, const g4_pool *pool, int64_t T, int64_t K);
int g4_qmatmul_act(const g4_quant_ops *ops, g4_pool *pool, const void *act, int64_t T, int64_t K, const void *w,
                   int wtype, int64_t N, float *y, void *scratch);

/* Products of one quantized input with several weights (q, k and v; gate and up) as one parallel loop, so that
 * the workers meet once rather than once per weight: decode-sized inputs, up to g4_qmany_max_rows(ops) rows (a
 * few sessions decoding together where the variant has the few-row product, else G4_QVEC_MAX_ROWS).
 * y[T, N] = act · W^T per g4_qmat. */
#define G4_QMAT_MAX 4
typedef struct g4_qmat {
    const void *w;
    int qt;
    int64_t N;
    float *y;
} g4_qmat;
int64_t g4_qmany_max_rows(const g4_quant_ops *ops);
/* Called once rows [n0, n1) of every matrix of a lockstep product are done, on the worker that did them. */
typedef void (*g4_qrows_fn)(void *ctx, int64_t n0, int64_t n1);
/* rows_done NULL: the matrices' rows are one loop, one matrix after the other. rows_done given: the matrices have
 * equal N and are walked in lockstep, each worker calling rows_done on the rows it finished (an epilogue such as
 * gelu(gate) * up, while those rows are in cache). scratch: g4_qmatmul_act_scratch_bytes(ops, pool, T, K) bytes, any
 * alignment (none below 4 rows). Returns -1 (nothing written) for T outside 1..g4_qmany_max_rows(ops), count
 * outside 1..G4_QMAT_MAX, unequal heights in lockstep, or a bad qt, K or N. */
int g4_qmatvec_many(const g4_quant_ops *ops, g4_pool *pool, const void *act, int64_t T, int64_t K,
                    const g4_qmat *mats, int count, g4_qrows_fn rows_done, void *ctx, void *scratch);
/* The same from float rows x[T, K], quantized once (as g4_qmatmul does); scratch: g4_qmatmul_scratch_bytes(ops,
 * pool, T, K) bytes, any alignment. -1 as above, before any work. */
int g4_qmatmul_many(const g4_quant_ops *ops, g4_pool *pool, const float *x, int64_t T, int64_t K,
                    const g4_qmat *mats, int count, g4_qrows_fn rows_done, void *ctx, void *scratch);

#endif
