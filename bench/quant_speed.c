/* quant_speed.c — speed of every quantized-product kernel variant on this machine (a measurement, not a test).
 *
 * usage: quant_speed [threads]   (default 2)
 * For each format and each variant the CPU has, best of several runs: a 4096 x 4096 matvec (its weights fit in
 * this machine's L3, so it shows the kernel, not DRAM), the same over 16384 x 8192 (past any cache: the
 * DRAM-streaming rate decode gets), 8 rows over the large one (8 sessions decoding together) and a 64 x 4096 x 4096
 * batch (prefill). tests/test_quant.c checks the same kernels' results. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/tensor.h"
#include "core/threads.h"
#include "kernels/quant.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rnd_normal(void) { /* Irwin-Hall: activations shaped like a model's */
    float s = 0;
    for (int i = 0; i < 12; i++) s += (float)(rnd_u32() / 4294967296.0);
    return s - 6.0f;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double best_time(const g4_quant_ops *ops, g4_pool *pool, const float *x, int64_t T, int64_t K,
                        const void *w, int qt, int64_t N, float *y, void *scratch, double budget) {
    double best = 1e30, start = now_s();
    for (int rep = 0; rep < 100 && (rep < 1 || now_s() - start < budget); rep++) {
        double t0 = now_s();
        g4_qmatmul(ops, pool, x, T, K, w, qt, N, y, scratch);
        double dt = now_s() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

/* A weight matrix of random codes with a small fixed scale: speed does not depend on the values, and this is far
 * quicker than quantizing. */
static unsigned char *random_weights(int qt, int64_t N, int64_t K) {
    size_t rb = g4_qrow_bytes(qt, K), bb = g4_qtype_block_bytes(qt);
    unsigned char *w = malloc(rb * (size_t)N);
    if (!w) return NULL;
    for (size_t i = 0; i < rb * (size_t)N; i++) w[i] = (unsigned char)rnd_u32();
    for (size_t b = 0; b < rb * (size_t)N; b += bb) {
        if (qt == G4_QT_Q8) {
            float d = 0.001f;
            memcpy(w + b, &d, 4);
        } else {
            uint16_t d = g4_f32_to_bf16(0.001f);
            memcpy(w + b, &d, 2);
        }
    }
    return w;
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1 || threads > 1024) {
        fprintf(stderr, "usage: quant_speed [threads]   (threads 1..1024)\n");
        return 2;
    }
#if defined(__SANITIZE_ADDRESS__)
    printf("note: built with AddressSanitizer, these numbers mean nothing\n");
#endif
    const g4_quant_ops *all[5] = {g4_quant_ops_portable(), g4_quant_ops_avx2(), g4_quant_ops_avx512vnni(),
                                  g4_quant_ops_amx(), g4_quant_ops_neon()};
    printf("variants:");
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i]) printf(" %s", all[i]->name);
    printf(" (best: %s)\n", g4_quant_ops_best()->name);

    const int64_t K = 4096, N = 4096, T = 64, BIG_N = 16384, BIG_K = 8192;
    g4_pool *pool = g4_pool_create(threads);
    float *x = malloc((size_t)(T * BIG_K) * 4), *y = malloc((size_t)(T * BIG_N) * 4);
    if (!pool || !x || !y) {
        fprintf(stderr, "quant_speed: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < T * BIG_K; i++) x[i] = rnd_normal();
    for (int qt = 0; qt < G4_QT_COUNT; qt++) {
        unsigned char *w = random_weights(qt, N, K), *big = random_weights(qt, BIG_N, BIG_K);
        if (!w || !big) {
            fprintf(stderr, "quant_speed: out of memory\n");
            return 1;
        }
        for (size_t v = 0; v < sizeof all / sizeof *all; v++) {
            const g4_quant_ops *ops = all[v];
            if (!ops) continue;
            void *scratch = malloc(g4_qmatmul_scratch_bytes(ops, pool, T, BIG_K));
            double budget = strcmp(ops->name, "portable") == 0 ? 0.05 : 0.3;
            double tv = best_time(ops, pool, x, 1, K, w, qt, N, y, scratch, budget);
            double tb = best_time(ops, pool, x, 1, BIG_K, big, qt, BIG_N, y, scratch, budget);
            double t8 = best_time(ops, pool, x, 8, BIG_K, big, qt, BIG_N, y, scratch, budget);
            double tm = best_time(ops, pool, x, T, K, w, qt, N, y, scratch, budget);
            printf("speed %-10s %s, %d threads: matvec %6.2f GB/s (%lldx%lld, %.3f ms), %6.2f GB/s (%lldx%lld); "
                   "8 rows %.2f ms (%.2fx one); %lldx%lldx%lld %6.1f GOP/s (%.2f ms)\n",
                   ops->name, g4_qtype_name(qt), threads, g4_qrow_bytes(qt, K) * N / tv * 1e-9, (long long)N,
                   (long long)K, tv * 1e3, g4_qrow_bytes(qt, BIG_K) * BIG_N / tb * 1e-9, (long long)BIG_N,
                   (long long)BIG_K, t8 * 1e3, t8 / tb, (long long)T, (long long)K, (long long)N, 2.0 * T * K * N / tm * 1e-9, tm * 1e3);
            free(scratch);
        }
        free(w), free(big);
    }
    free(x), free(y);
    g4_pool_destroy(pool);
    return 0;
}
