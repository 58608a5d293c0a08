/* threads.c — the worker pool: workers spin briefly, then sleep, waiting for a loop; each owns a contiguous span of
 * it and, when done, steals chunks from the back of the others'. */
#include "threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/* Decoding one token runs hundreds of short loops with a little serial work between them. Waking a sleeping
 * thread costs tens of microseconds in a virtual machine, so workers poll for the next loop this many times
 * (a few hundred microseconds) before they sleep, and the caller polls for the end of a loop. */
enum { SPINS = 20000 };

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* A worker's share of the current loop: chunks front..back-1 (packed as front << 32 | back) are left. The owner
 * takes from the front, others steal from the back, so a worker that keeps its share reads it as one stream. */
typedef struct span {
    _Alignas(64) atomic_uint_fast64_t left;
    int64_t begin, end, chunk;
} span;

struct g4_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    atomic_uint_fast64_t generation; /* bumped for every loop: workers wait for it to change */
    atomic_int sleepers;             /* workers asleep on work_cv (or about to be) */
    atomic_int busy;                 /* workers still inside the current loop */
    atomic_int shutting_down;
    /* the current loop, published by the generation bump */
    g4_range_fn fn;
    void *ctx;
    span *spans; /* one per worker */
};

typedef struct worker_arg {
    g4_pool *pool;
    int index;
} worker_arg;

/* Takes chunk `front` (owner) or `back - 1` (thief) of a span; -1 when it is empty. */
static int64_t take_chunk(span *sp, int from_back) {
    uint64_t v = atomic_load(&sp->left);
    for (;;) {
        uint64_t front = v >> 32, back = v & 0xffffffffu;
        if (front >= back) return -1;
        uint64_t next = from_back ? (front << 32 | (back - 1)) : ((front + 1) << 32 | back);
        if (atomic_compare_exchange_weak(&sp->left, &v, next)) return (int64_t)(from_back ? back - 1 : front);
    }
}

static void run_chunk(g4_pool *p, const span *sp, int64_t c, int worker) {
    int64_t begin = sp->begin + c * sp->chunk;
    int64_t end = begin + sp->chunk < sp->end ? begin + sp->chunk : sp->end;
    p->fn(p->ctx, begin, end, worker);
}

static void run_chunks(g4_pool *p, int worker) {
    span *own = &p->spans[worker];
    for (int64_t c; (c = take_chunk(own, 0)) >= 0;) run_chunk(p, own, c, worker);
    for (int i = 1; i < p->n_threads; i++) {
        span *other = &p->spans[(worker + i) % p->n_threads];
        for (int64_t c; (c = take_chunk(other, 1)) >= 0;) run_chunk(p, other, c, worker);
    }
}

/* Waits until the generation differs from `seen`: polling first, then asleep. The sleeper count and the
 * generation are sequentially consistent, so either the worker sees the new generation or the caller sees the
 * sleeper and wakes it under the mutex. */
static uint64_t wait_for_work(g4_pool *p, uint64_t seen) {
    for (int i = 0; i < SPINS; i++) {
        uint64_t g = atomic_load(&p->generation);
        if (g != seen) return g;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    while (atomic_load(&p->generation) == seen) pthread_cond_wait(&p->work_cv, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return atomic_load(&p->generation);
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    g4_pool *p = wa->pool;
    int index = wa->index;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        seen = wait_for_work(p, seen);
        if (atomic_load(&p->shutting_down)) break;
        run_chunks(p, index);
        atomic_fetch_sub(&p->busy, 1);
    }
    return NULL;
}

/* Publishes a generation change and wakes the workers that went to sleep. */
static void announce(g4_pool *p) {
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
    }
}

g4_pool *g4_pool_create(int n_threads) {
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 1024) n_threads = 1024;
    g4_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->shutting_down, 0);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    p->spans = aligned_alloc(64, (size_t)n_threads * sizeof *p->spans);
    if (!p->threads || !p->spans) {
        free(p->threads);
        free(p->spans);
        free(p);
        return NULL;
    }
    for (int i = 0; i < n_threads; i++) atomic_init(&p->spans[i].left, 0);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->pool = p;
            wa->index = i;
        }
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n_threads = i; /* keep the ones that started */
            break;
        }
    }
    return p;
}

void g4_pool_destroy(g4_pool *p) {
    if (!p) return;
    atomic_store(&p->shutting_down, 1);
    announce(p);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    free(p->threads);
    free(p->spans);
    free(p);
}

int g4_pool_size(const g4_pool *p) { return p ? p->n_threads : 1; }

void g4_pool_for(g4_pool *p, int64_t n, int64_t grain, g4_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!p || p->n_threads == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    /* Contiguous spans keep each worker's memory reads one stream (interleaved chunks of weight rows streamed
     * 25-30 % slower here); a few chunks per span let idle workers take over the tail of a late one. */
    const int64_t T = p->n_threads;
    for (int64_t w = 0; w < T; w++) {
        span *sp = &p->spans[w];
        sp->begin = n * w / T;
        sp->end = n * (w + 1) / T;
        int64_t len = sp->end - sp->begin;
        sp->chunk = (len + 15) / 16 > grain ? (len + 15) / 16 : grain;
        atomic_store(&sp->left, (uint64_t)((len + sp->chunk - 1) / sp->chunk));
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->busy, p->n_threads - 1);
    announce(p);
    run_chunks(p, 0);
    for (int i = 0; atomic_load(&p->busy) > 0; i++) {
        if (i < SPINS) cpu_relax();
        else sched_yield(); /* a worker was descheduled: let it finish */
    }
}
