/* test_cuda_quant.c — the CUDA quantized products against the CPU's: activations bit for bit, products to rounding. */
#include <math.h>
#include <stdint.h>

#include "core/tensor.h"
#include "kernels/cuda/cuda_quant.h"
#include "kernels/quant.h"
#include "test.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float rnd_normal(void) {
    float s = 0;
    for (int i = 0; i < 12; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        s += (float)((rng >> 40) / 16777216.0);
    }
    return s - 6.0f;
}

/* count matrices W_i[N_i, K] of format qt from random floats against T random activation rows (with an all-zero
 * block, a NaN and an infinity among them when K has room), in one launch; the CPU's portable kernels are the
 * reference. */
static void compare(int qt, const int64_t *Ns, int count, int64_t K, int64_t T) {
    const size_t rb = g4_qrow_bytes(qt, K), ab = g4_qact_row_bytes(K);
    unsigned char *act = malloc(ab * (size_t)T), *act_gpu = malloc(ab * (size_t)T);
    float *row = malloc((size_t)K * sizeof *row), *x = malloc((size_t)(T * K) * sizeof *x);
    void *scratch = malloc(g4_qmatmul_scratch_bytes(g4_quant_ops_portable(), NULL, T, K));
    unsigned char *w[G4_CUDA_QMAT_MAX] = {0};
    float *y[G4_CUDA_QMAT_MAX] = {0}, *y_gpu[G4_CUDA_QMAT_MAX] = {0};
    g4_cuda_qmat m[G4_CUDA_QMAT_MAX] = {0};
    for (int64_t i = 0; i < T * K; i++) x[i] = rnd_normal();
    if (K >= 64) {
        memset(x + 32, 0, 32 * sizeof *x);
        x[K - 1] = NAN;
        x[K - 2] = INFINITY;
    }
    for (int64_t t = 0; t < T; t++) g4_quantize_act_row(x + t * K, K, act + (size_t)t * ab);
    g4_err err = {0};
    void *d_x = NULL, *d_act = NULL;
    int rc = g4_cuda_malloc(&d_x, (size_t)(T * K) * sizeof *x, &err) || g4_cuda_malloc(&d_act, ab * (size_t)T, &err) ||
             g4_cuda_upload(d_x, x, (size_t)(T * K) * sizeof *x, &err);
    for (int i = 0; i < count; i++) {
        const int64_t N = Ns[i];
        w[i] = malloc(rb * (size_t)N), y[i] = malloc((size_t)(T * N) * sizeof(float));
        y_gpu[i] = malloc((size_t)(T * N) * sizeof(float));
        for (int64_t n = 0; n < N; n++) {
            for (int64_t k = 0; k < K; k++) row[k] = 0.05f * rnd_normal();
            g4_quantize_row(qt, row, K, w[i] + (size_t)n * rb);
        }
        g4_qmatmul(g4_quant_ops_portable(), NULL, x, T, K, w[i], qt, N, y[i], scratch);
        for (int64_t k = 0; k < T * N; k++) y_gpu[i][k] = 1e30f; /* every output must be written (NaN can be right) */
        m[i].N = N;
        rc = rc || g4_cuda_malloc((void **)&m[i].d_w, rb * (size_t)N, &err) ||
             g4_cuda_malloc((void **)&m[i].d_y, (size_t)(T * N) * sizeof(float), &err) ||
             g4_cuda_upload((void *)m[i].d_w, w[i], rb * (size_t)N, &err) ||
             g4_cuda_upload(m[i].d_y, y_gpu[i], (size_t)(T * N) * sizeof(float), &err);
    }
    rc = rc || g4_cuda_quantize_acts(d_x, T, K, d_act, NULL, &err) ||
         (count == 1 ? g4_cuda_qmatvec(qt, m[0].d_w, m[0].N, K, d_act, T, m[0].d_y, NULL, &err)
                     : g4_cuda_qmatvec_many(qt, m, count, K, d_act, T, NULL, &err)) ||
         g4_cuda_sync(NULL, &err) || g4_cuda_download(act_gpu, d_act, ab * (size_t)T, &err);
    for (int i = 0; i < count; i++)
        rc = rc || g4_cuda_download(y_gpu[i], m[i].d_y, (size_t)(T * Ns[i]) * sizeof(float), &err);
    CHECK(!rc, "%s %d matrices (first %lldx%lld), %lld rows: %s", g4_qtype_name(qt), count, (long long)Ns[0],
          (long long)K, (long long)T, err.msg);
    if (!rc) {
        int same = 1; /* the bytes that carry data (q, d, s), not the row's padding */
        for (int64_t t = 0; t < T; t++)
            same &= !memcmp(act + (size_t)t * ab, act_gpu + (size_t)t * ab, (size_t)(K + K / 32 * 8));
        CHECK(same, "%s K %lld: activations differ from g4_quantize_act_row", g4_qtype_name(qt), (long long)K);
        for (int i = 0; i < count; i++) {
            /* The infinity in the activations makes its block's scale infinite: outputs there are NaN (a zero
             * integer sum) or +-inf on the CPU, and must be the same on the GPU; the rest agree to rounding. */
            double scale = 0, worst = 0;
            for (int64_t k = 0; k < T * Ns[i]; k++)
                if (isfinite(y[i][k])) scale = fmax(scale, fabs(y[i][k]));
            for (int64_t k = 0; k < T * Ns[i]; k++) {
                const float c = y[i][k], g = y_gpu[i][k];
                if (!isfinite(c)) worst = (isnan(c) ? isnan(g) : g == c) ? worst : INFINITY;
                else worst = isfinite(g) ? fmax(worst, fabs(g - c)) : INFINITY;
            }
            CHECK(worst <= 1e-5 * fmax(scale, 1e-6), "%s matrix %d of %d, %lldx%lld, %lld rows: max |gpu - cpu| %.3g of max |y| %.3g",
                  g4_qtype_name(qt), i, count, (long long)Ns[i], (long long)K, (long long)T, worst, scale);
        }
    }
    for (int i = 0; i < count; i++) {
        g4_cuda_free((void *)m[i].d_w), g4_cuda_free(m[i].d_y);
        free(w[i]), free(y[i]), free(y_gpu[i]);
    }
    g4_cuda_free(d_x), g4_cuda_free(d_act);
    free(act), free(act_gpu), free(row), free(x), free(scratch);
}

int main(void) {
    g4_cuda_info info;
    g4_err err = {0};
    if (g4_cuda_probe(&info, &err)) {
        CHECK(err.code == GEMMA4C_ERR_UNSUPPORTED && err.msg[0], "a machine without CUDA says why: %d %s", err.code, err.msg);
        printf("test_cuda_quant: skipped: %s\n", err.msg);
        return g4t_failures ? 1 : G4T_SKIP;
    }
    printf("device: %s, %d SMs, compute capability %d.%d, %.1f GiB, driver %d, runtime %d\n", info.name,
           info.sm_count, info.cc_major, info.cc_minor, info.memory_bytes / 1073741824.0, info.driver_version,
           info.runtime_version);
    /* the last two are large enough for the tensor-core kernel on a GPU of up to 256 multiprocessors (a partial
     * group of rows; 16-byte and 2-byte staging) */
    static const int64_t shapes[][2] = {{1, 32}, {37, 96}, {300, 2560}, {129, 10240}, {2049, 2048}, {4100, 2048}, {4113, 2080}};
    const int qts[] = {G4_QT_Q4, G4_QT_Q6, G4_QT_Q8};
    /* one row; several sessions (a warp per weight row, or tensor cores); prompts (groups of 8 rows, partial too) */
    const int64_t Ts[] = {1, 2, 3, 5, 8, 13, 33, 64};
    const int nT = (int)(sizeof Ts / sizeof *Ts);
    for (int q = 0; q < 3; q++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int t = 0; t < nT; t++) compare(qts[q], &shapes[s][0], 1, shapes[s][1], Ts[t]);
    /* several matrices in one launch (q, k, v-like; small and tensor-core sized), each against its own product */
    static const int64_t qkv[] = {300, 37, 1, 16}, big[] = {4100, 1024, 17};
    for (int q = 0; q < 3; q++)
        for (int t = 0; t < nT; t++) {
            compare(qts[q], qkv, 4, 2560, Ts[t]);
            compare(qts[q], big, 3, 2048, Ts[t]);
        }
    /* misuse is an error, not a launch */
    CHECK(g4_cuda_qmatvec(G4_QT_Q4, NULL, 16, 2560, NULL, G4_CUDA_QMATMUL_MAX_T + 1, NULL, NULL, &err) == GEMMA4C_ERR_ARG,
          "too many rows refused");
    CHECK(g4_cuda_qmatvec(G4_QT_Q4, NULL, 16, 100, NULL, 1, NULL, NULL, &err) == GEMMA4C_ERR_ARG, "K not a multiple of 32 refused");
    CHECK(g4_cuda_qmatvec_many(G4_QT_Q4, NULL, G4_CUDA_QMAT_MAX + 1, 64, NULL, 1, NULL, &err) == GEMMA4C_ERR_ARG,
          "too many matrices refused");
    CHECK(g4_cuda_quantize_acts(NULL, 0, 64, NULL, NULL, &err) == GEMMA4C_ERR_ARG, "no rows refused");
    return g4t_finish("test_cuda_quant");
}
