/* read_bandwidth.c — the streaming-read bandwidth probe of `gemma4c bench`, alone (a measurement, not a test).
 *
 * usage: read_bandwidth [threads] [MiB] [passes]   (default 2 threads, 1024 MiB, 5 passes)
 * Prints the best pass in GB/s: the ceiling decode speed is compared with (bench/RESULTS.md). tests/test_kernels.c
 * only checks that a small probe runs and returns a sane number. */
#include <stdio.h>
#include <stdlib.h>

#include "core/threads.h"
#include "kernels/membw.h"

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    const long mib = argc > 2 ? atol(argv[2]) : 1024;
    const int passes = argc > 3 ? atoi(argv[3]) : 5;
    if (threads < 1 || threads > 1024 || mib < 1 || mib > (1L << 20) || passes < 1 || passes > 1000) {
        fprintf(stderr, "usage: read_bandwidth [threads 1..1024] [MiB 1..1048576] [passes 1..1000]\n");
        return 2;
    }
    g4_pool *pool = g4_pool_create(threads);
    if (!pool) {
        fprintf(stderr, "read_bandwidth: cannot start %d threads\n", threads);
        return 1;
    }
    const double gbps = g4_read_bandwidth(pool, (size_t)mib << 20, passes);
    g4_pool_destroy(pool);
    if (gbps <= 0) {
        fprintf(stderr, "read_bandwidth: no memory for %ld MiB\n", mib);
        return 1;
    }
    printf("read bandwidth %.2f GB/s (best of %d passes over %ld MiB, %d threads)\n", gbps, passes, mib, threads);
    return 0;
}
