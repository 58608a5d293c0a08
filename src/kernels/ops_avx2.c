/* ops_avx2.c — AVX2 + FMA primitives (x86-64), compiled for that target and used only when the CPU has it. */
#include "kernels.h"

#include <math.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

/* Only these functions are compiled for AVX2: the rest of the program still runs on any x86-64. */
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

AVX2 static float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float sum = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

AVX2 static void axpy_avx2(float *y, float a, const float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

AVX2 static void to_f32_avx2(float *dst, const void *src, g4_dtype dt, int64_t n) {
    int64_t i = 0;
    if (dt == G4_DT_F32) {
        const float *s = src;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(s + i));
        for (; i < n; i++) dst[i] = s[i];
    } else if (dt == G4_DT_BF16) {
        const uint16_t *s = src;
        for (; i + 8 <= n; i += 8) {
            __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i)));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
        }
        for (; i < n; i++) dst[i] = g4_bf16_to_f32(s[i]);
    } else {
        const uint16_t *s = src;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
        for (; i < n; i++) dst[i] = g4_f16_to_f32(s[i]);
    }
}

/* e^x to about 2 ulp for x in [-87, 88] (Cephes' polynomial after x = n ln2 + r). */
AVX2 static __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* The sum in double (float lanes would lose ~1e-5 over a vocabulary); NaNs are caught by an unordered compare. */
AVX2 static float logsumexp_avx2(const float *x, int64_t n) {
    __m256 vm = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        vm = _mm256_max_ps(v, vm); /* a NaN in v leaves vm as it was */
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    float m = -INFINITY, lanes[8];
    _mm256_storeu_ps(lanes, vm);
    for (int l = 0; l < 8; l++) m = lanes[l] > m ? lanes[l] : m;
    for (int64_t j = i; j < n; j++) m = x[j] > m ? x[j] : m;
    if (!isfinite(m)) return m;
    if (_mm256_movemask_ps(nan)) return NAN;
    const __m256 bm = _mm256_set1_ps(m);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), bm));
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double d[4], sum = 0;
    _mm256_storeu_pd(d, _mm256_add_pd(s0, s1));
    for (int l = 0; l < 4; l++) sum += d[l];
    for (; i < n; i++) sum += exp((double)(x[i] - m));
    return m + (float)log(sum);
}

AVX2 static float softmax_avx2(float *x, int64_t n) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    float m = -INFINITY, lanes[8];
    _mm256_storeu_ps(lanes, vm);
    for (int l = 0; l < 8; l++) m = lanes[l] > m ? lanes[l] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    const __m256 bm = _mm256_set1_ps(m);
    __m256 vs = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), bm));
        e = _mm256_and_ps(e, _mm256_cmp_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(-INFINITY), _CMP_NEQ_OQ));
        vs = _mm256_add_ps(vs, e);
        _mm256_storeu_ps(x + i, e);
    }
    float s = hsum256(vs);
    for (; i < n; i++) s += (x[i] = expf(x[i] - m));
    const __m256 inv = _mm256_set1_ps(1.0f / s);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= 1.0f / s;
    return m + logf(s);
}

/* tanh(u) = 1 - 2 / (e^{2u} + 1): exact to a few ulp of 1, saturating cleanly (exp256 clamps). */
AVX2 static inline __m256 tanh256(__m256 u) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(exp256(_mm256_add_ps(u, u)), one)));
}

/* g4_rmsnorm with the sum of squares in 32 lanes (serial scalar sums ran between every matrix product of a
 * decode step while the other workers waited). */
AVX2 static void rmsnorm_avx2(float *out, const float *x, const float *w, int64_t n, float eps) {
    __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) {
            __m256 v = _mm256_loadu_ps(x + i + 8 * k);
            s[k] = _mm256_fmadd_ps(v, v, s[k]);
        }
    for (; i + 8 <= n; i += 8) s[0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(x + i), s[0]);
    float ss = hsum256(_mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3])));
    for (; i < n; i++) ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss / (float)n + eps);
    const __m256 vr = _mm256_set1_ps(r);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vr);
        _mm256_storeu_ps(out + i, w ? _mm256_mul_ps(v, _mm256_loadu_ps(w + i)) : v);
    }
    for (; i < n; i++) out[i] = w ? x[i] * r * w[i] : x[i] * r;
}

AVX2 static void softcap_avx2(float *x, int64_t n, float cap) {
    const __m256 c = _mm256_set1_ps(cap), inv = _mm256_set1_ps(1.0f / cap);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(c, tanh256(_mm256_mul_ps(_mm256_loadu_ps(x + i), inv))));
    for (; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}

/* The maximum (max_ps returns its second operand, the running maximum, when x is NaN), then the first lane equal
 * to it: one pass over 262144 logits took ~0.6 ms in scalar code, 2 % of an E2B decode step. */
AVX2 static int64_t argmax_avx2(const float *x, int64_t n) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
    }
    m0 = _mm256_max_ps(m0, m1);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float m = _mm_cvtss_f32(h);
    for (; i < n; i++)
        if (x[i] > m) m = x[i];
    const __m256 mv = _mm256_set1_ps(m);
    for (i = 0; i + 8 <= n; i += 8) {
        int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), mv, _CMP_EQ_OQ));
        if (mask) return i + __builtin_ctz((unsigned)mask);
    }
    for (; i < n; i++)
        if (x[i] == m) return i;
    return 0;
}

/* gelu_tanh(x) = x/2 (1 + tanh(u)), u = sqrt(2/pi)(x + 0.044715 x^3), tanh(u) = 1 - 2 / (e^{2u} + 1). */
AVX2 static void gelu_mul_avx2(float *g, const float *up, int64_t n) {
    const __m256 k = _mm256_set1_ps(0.7978845608028654f), c = _mm256_set1_ps(0.044715f), one = _mm256_set1_ps(1.0f);
    const __m256 half = _mm256_set1_ps(0.5f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 u = _mm256_mul_ps(k, _mm256_fmadd_ps(_mm256_mul_ps(c, x), _mm256_mul_ps(x, x), x));
        __m256 y = _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, tanh256(u)));
        if (up) y = _mm256_mul_ps(y, _mm256_loadu_ps(up + i));
        _mm256_storeu_ps(g + i, y);
    }
    for (; i < n; i++) g[i] = g4_gelu_tanh(g[i]) * (up ? up[i] : 1.0f);
}

/* The eight horizontal sums of a0..a7 in one vector, in that order: short heads (64 wide) would otherwise spend
 * a third of a tile on reductions. */
AVX2 static inline __m256 hsum8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6,
                                __m256 a7) {
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* How far ahead (in floats, 16 KiB) the attention tiles prefetch: decode reads each cached key and value row once,
 * straight from memory, and with the hardware prefetcher alone the tiles waited on it (9 GB/s a core here; 15-18
 * with this). */
enum { FLOATS_AHEAD = 4096 };

/* NQ queries against two keys at a time: each loaded key chunk serves every query, each query chunk both keys. */
AVX2 static inline void scores_rows(float *s, int64_t lds, const float *q, int64_t ldq, const int NQ, const float *k,
                                    int64_t ldk, int64_t nk, int64_t D) {
    int64_t j = 0;
    for (; j + 2 <= nk && D % 16 == 0; j += 2) {
        __m256 acc[4][2];
        for (int i = 0; i < NQ; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        const float *k0 = k + j * ldk, *k1 = k0 + ldk;
        const int64_t rows_ahead = FLOATS_AHEAD / D + 1;
        const float *ahead = j + rows_ahead + 2 <= nk ? k0 + rows_ahead * ldk : NULL;
        for (int64_t d = 0; d < D; d += 16) {
            if (ahead) {
                _mm_prefetch((const char *)(ahead + d), _MM_HINT_T0);
                _mm_prefetch((const char *)(ahead + ldk + d), _MM_HINT_T0);
            }
            for (int h = 0; h < 16; h += 8) {
                __m256 a = _mm256_loadu_ps(k0 + d + h), b = _mm256_loadu_ps(k1 + d + h);
                for (int i = 0; i < NQ; i++) {
                    __m256 x = _mm256_loadu_ps(q + i * ldq + d + h);
                    acc[i][0] = _mm256_fmadd_ps(x, a, acc[i][0]);
                    acc[i][1] = _mm256_fmadd_ps(x, b, acc[i][1]);
                }
            }
        }
        if (NQ == 4) {
            float sums[8];
            _mm256_storeu_ps(sums, hsum8(acc[0][0], acc[0][1], acc[1][0], acc[1][1], acc[2][0], acc[2][1], acc[3][0],
                                         acc[3][1]));
            for (int i = 0; i < 4; i++) s[i * lds + j] = sums[2 * i], s[i * lds + j + 1] = sums[2 * i + 1];
        } else {
            for (int i = 0; i < NQ; i++) {
                s[i * lds + j] = hsum256(acc[i][0]);
                s[i * lds + j + 1] = hsum256(acc[i][1]);
            }
        }
    }
    for (; j < nk; j++)
        for (int i = 0; i < NQ; i++) s[i * lds + j] = dot_avx2(q + i * ldq, k + j * ldk, D);
}

AVX2 static void scores_avx2(float *s, int64_t lds, const float *q, int64_t ldq, int64_t nq, const float *k,
                             int64_t ldk, int64_t nk, int64_t D) {
    int64_t i = 0;
    for (; i + 4 <= nq; i += 4) scores_rows(s + i * lds, lds, q + i * ldq, ldq, 4, k, ldk, nk, D);
    for (; i < nq; i++) scores_rows(s + i * lds, lds, q + i * ldq, ldq, 1, k, ldk, nk, D);
}

/* NQ output rows, 16 columns at a time held in registers while a block of value rows streams past; the block
 * (about 16 KiB) stays in L1 for all its column strips, and the next block is prefetched meanwhile. */
AVX2 static inline void weighted_rows(float *o, int64_t ldo, const float *p, int64_t ldp, const int NQ, const float *v,
                                      int64_t ldv, int64_t nk, int64_t D) {
    const int64_t block = D >= 1024 ? 4 : 4096 / D;
    for (int64_t j0 = 0; j0 < nk; j0 += block) {
        const int64_t j1 = j0 + block < nk ? j0 + block : nk;
        const int64_t next = j1 + block <= nk ? block : nk - j1; /* rows of the next block */
        int64_t d = 0;
        for (; d + 16 <= D; d += 16) {
            __m256 acc[4][2];
            for (int i = 0; i < NQ; i++) {
                acc[i][0] = _mm256_loadu_ps(o + i * ldo + d);
                acc[i][1] = _mm256_loadu_ps(o + i * ldo + d + 8);
            }
            for (int64_t j = j0; j < j1; j++) {
                if (j - j0 < next) _mm_prefetch((const char *)(v + (j + block) * ldv + d), _MM_HINT_T0);
                __m256 a = _mm256_loadu_ps(v + j * ldv + d), b = _mm256_loadu_ps(v + j * ldv + d + 8);
                for (int i = 0; i < NQ; i++) {
                    __m256 w = _mm256_broadcast_ss(p + i * ldp + j);
                    acc[i][0] = _mm256_fmadd_ps(w, a, acc[i][0]);
                    acc[i][1] = _mm256_fmadd_ps(w, b, acc[i][1]);
                }
            }
            for (int i = 0; i < NQ; i++) {
                _mm256_storeu_ps(o + i * ldo + d, acc[i][0]);
                _mm256_storeu_ps(o + i * ldo + d + 8, acc[i][1]);
            }
        }
        if (d < D)
            for (int i = 0; i < NQ; i++)
                for (int64_t j = j0; j < j1; j++) axpy_avx2(o + i * ldo + d, p[i * ldp + j], v + j * ldv + d, D - d);
    }
}

AVX2 static void weighted_sum_avx2(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t nq, const float *v,
                                   int64_t ldv, int64_t nk, int64_t D) {
    int64_t i = 0;
    for (; i + 4 <= nq; i += 4) weighted_rows(o + i * ldo, ldo, p + i * ldp, ldp, 4, v, ldv, nk, D);
    for (; i < nq; i++) weighted_rows(o + i * ldo, ldo, p + i * ldp, ldp, 1, v, ldv, nk, D);
}

static const g4_kernel_ops avx2_ops = {"avx2",       dot_avx2,      axpy_avx2,     to_f32_avx2,
                                       softmax_avx2, rmsnorm_avx2,  softcap_avx2,  gelu_mul_avx2,
                                       argmax_avx2,  scores_avx2,   weighted_sum_avx2,
                                       logsumexp_avx2};

const g4_kernel_ops *g4_kernels_avx2(void) {
    unsigned a, b, c, d;
    __builtin_cpu_init();
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) return &avx2_ops;
    return NULL;
}
#else
const g4_kernel_ops *g4_kernels_avx2(void) { return NULL; }
#endif
