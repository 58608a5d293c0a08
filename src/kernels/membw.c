/* membw.c — streaming-read bandwidth of this machine: the ceiling that decode speed is measured against. */
#include "membw.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct read_job {
    const uint64_t *data;
    int64_t words;
    uint64_t *sinks; /* one per worker, so the reads cannot be optimised away */
} read_job;

/* Eight independent 64-bit lanes: enough loads in flight to saturate the memory system from one core. */
static void read_range(void *ctx, int64_t begin, int64_t end, int worker) {
    read_job *j = ctx;
    const uint64_t *p = j->data + begin * 4096;
    int64_t n = (end - begin) * 4096;
    if (begin * 4096 + n > j->words) n = j->words - begin * 4096;
    uint64_t a[8] = {0};
    for (int64_t i = 0; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) a[k] ^= p[i + k];
    j->sinks[worker] ^= a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
}

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double g4_read_bandwidth(g4_pool *pool, size_t bytes, int passes) {
    int64_t words = (int64_t)(bytes / 8) & ~(int64_t)4095;
    uint64_t *data = malloc((size_t)words * 8);
    uint64_t *sinks = calloc((size_t)g4_pool_size(pool), sizeof *sinks);
    if (!data || !sinks) {
        free(data);
        free(sinks);
        return 0;
    }
    memset(data, 1, (size_t)words * 8); /* touch every page before timing */
    read_job j = {data, words, sinks};
    double best = 0;
    for (int p = 0; p < passes; p++) {
        double t0 = seconds();
        g4_pool_for(pool, words / 4096, 16, read_range, &j);
        double gbps = (double)words * 8 / (seconds() - t0) / 1e9;
        if (gbps > best) best = gbps;
    }
    free(data);
    free(sinks);
    return best;
}
