/* quant_amx.c — batched quantized products on AMX tiles (x86-64 Linux), where the CPU has them and the OS grants them. */
#include "quant.h"

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Only these functions are compiled for AMX: the rest of the program still runs on any x86-64. */
#define AMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512vnni")))

/* Everything but the batched product comes from the AVX-512 VNNI variant, whose activation panels (t_tile 32) and
 * unpacked weight rows (values + 128, then the float scales) this kernel reads as they are. */
enum { T_TILE = 32, N_TILE = 16, PANEL_BLOCK = T_TILE * 40 };

/* Tiles: 0 and 1 the int32 sums of nr weight rows against activation rows 0..15 and 16..31, 2 the nr weight rows
 * of one block (32 bytes each; only nr rows exist), 3 and 4 the block's 4-byte groups of activation rows 0..15 and
 * 16..31. */
typedef struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

AMX static void load_tiles(int nr) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 2; t++) cfg.rows[t] = (uint8_t)nr, cfg.colsb[t] = 64;
    cfg.rows[2] = (uint8_t)nr, cfg.colsb[2] = 32;
    for (int t = 3; t < 5; t++) cfg.rows[t] = 8, cfg.colsb[t] = 64;
    _tile_loadconfig(&cfg);
}

/* out[i * 32 + t] (+)= Σ_b dw[i][b] * da[t][b] * (Σ_k (w[i][k] + 128) * a[t][k] - 128 * Σ_k a[t][k]): the
 * tiles give each block's integer sums for 16 rows x 32 activation rows at once, AVX-512 applies the scales. */
AMX static void gemm_amx(int qt, const void *wrows, size_t wstride, int nr, const void *panel_, int nt, int64_t b0,
                         int64_t nb, float *out, int accumulate) {
    const uint8_t *w = wrows, *panel = panel_;
    const float *wd = (const float *)(w + nb * 32);
    int32_t sums[2][16][16] __attribute__((aligned(64)));
    if (!accumulate)
        for (int i = 0; i < nr; i++) memset(out + i * T_TILE, 0, T_TILE * sizeof(float));
    load_tiles(nr); /* per call: each worker needs it, and the row count varies */
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = panel + (size_t)(b0 + b) * PANEL_BLOCK;
        _tile_zero(0);
        _tile_zero(1);
        _tile_loadd(2, w + b * 32, (long)wstride);
        _tile_loadd(3, p, T_TILE * 4);
        _tile_loadd(4, p + 64, T_TILE * 4);
        _tile_dpbusd(0, 2, 3);
        _tile_dpbusd(1, 2, 4);
        _tile_stored(0, sums[0], 64);
        _tile_stored(1, sums[1], 64);
        const __m512 da0 = _mm512_loadu_ps((const float *)(p + T_TILE * 32));
        const __m512 da1 = _mm512_loadu_ps((const float *)(p + T_TILE * 32) + 16);
        const __m512i off0 = _mm512_slli_epi32(_mm512_loadu_si512(p + T_TILE * 36), 7);
        const __m512i off1 = _mm512_slli_epi32(_mm512_loadu_si512(p + T_TILE * 36 + 64), 7);
        for (int i = 0; i < nr; i++) {
            const __m512 dw = _mm512_set1_ps(((const float *)((const uint8_t *)wd + (size_t)i * wstride))[b]);
            float *o = out + i * T_TILE;
            __m512 x0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(sums[0][i]), off0));
            _mm512_storeu_ps(o, _mm512_fmadd_ps(x0, _mm512_mul_ps(da0, dw), _mm512_loadu_ps(o)));
            if (nt > 16) {
                __m512 x1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(sums[1][i]), off1));
                _mm512_storeu_ps(o + 16, _mm512_fmadd_ps(x1, _mm512_mul_ps(da1, dw), _mm512_loadu_ps(o + 16)));
            }
        }
    }
    _tile_release();
    (void)qt;
}

/* Linux hands out the tile data state only on request (arch_prctl ARCH_REQ_XCOMP_PERM, feature 18). */
static int os_grants_tiles(void) {
    enum { ARCH_GET_XCOMP_PERM = 0x1022, ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    unsigned long mask = 0;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &mask) != 0) return 0;
    return (mask >> XFEATURE_XTILEDATA) & 1;
}

static g4_quant_ops amx_ops;
static int amx_available;

static void detect(void) {
    const g4_quant_ops *vnni = g4_quant_ops_avx512vnni();
    unsigned a, b, c, d;
    if (!vnni || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    const int tile = (d >> 24) & 1, int8 = (d >> 25) & 1;
    if (!tile || !int8 || vnni->t_tile != T_TILE || !os_grants_tiles()) return;
    amx_ops = *vnni;
    amx_ops.name = "amx";
    amx_ops.n_tile = N_TILE;
    amx_ops.gemm = gemm_amx;
    amx_available = 1;
}

const g4_quant_ops *g4_quant_ops_amx(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, detect);
    return amx_available ? &amx_ops : NULL;
}
#else
const g4_quant_ops *g4_quant_ops_amx(void) { return NULL; }
#endif
