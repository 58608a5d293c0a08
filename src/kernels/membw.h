/* membw.h — measuring the machine's streaming-read bandwidth. */
#ifndef G4_MEMBW_H
#define G4_MEMBW_H

#include <stddef.h>

#include "core/threads.h"

/* Best of `passes` reads over a `bytes` buffer with all workers of the pool, in GB/s (0 when out of memory). */
double g4_read_bandwidth(g4_pool *pool, size_t bytes, int passes);

#endif
