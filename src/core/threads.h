/* threads.h — a fixed pool of worker threads that runs one parallel loop at a time. */
#ifndef G4_THREADS_H
#define G4_THREADS_H

#include <stdint.h>

typedef struct g4_pool g4_pool;

/* A loop body: handles items [begin, end) on worker `worker` (0..n_threads-1). */
typedef void (*g4_range_fn)(void *ctx, int64_t begin, int64_t end, int worker);

/* n_threads <= 0 means one per online CPU. Returns NULL when threads cannot be created. */
g4_pool *g4_pool_create(int n_threads);
void g4_pool_destroy(g4_pool *p);
int g4_pool_size(const g4_pool *p);

/* Runs fn over [0, n) on all workers (the caller is worker 0) and returns when every item is done. Each worker
 * gets a contiguous span, handed out in ranges of at least `grain` items (fewer at a span's end); a loop of at
 * most `grain` items, or a NULL pool, runs inline. */
void g4_pool_for(g4_pool *p, int64_t n, int64_t grain, g4_range_fn fn, void *ctx);

#endif
