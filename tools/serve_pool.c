/* serve_pool.c — the server's sessions: a bounded queue in front of them, and prompt-cache reuse between requests. */
#include <stdlib.h>
#include <string.h>

#include "serve.h"

double serve_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int pool_init(server *s) {
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    metrics_init(&s->metrics);
    s->slots = calloc((size_t)s->max_sessions, sizeof *s->slots);
    return s->slots ? 0 : -1;
}

void pool_free(server *s) {
    for (int i = 0; s->slots && i < s->n_slots; i++) gemma4c_session_free(s->slots[i].session);
    free(s->slots);
    s->slots = NULL;
    metrics_free(&s->metrics);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

void pool_stop(server *s) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].busy) gemma4c_cancel(s->slots[i].session);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* How many of ids the session already holds, from the start. */
static size_t common_prefix(const gemma4c_session *session, const int32_t *ids, size_t n, int32_t *scratch) {
    const int64_t held = gemma4c_session_tokens(session, scratch, n);
    size_t k = 0;
    const size_t m = held < 0 ? 0 : (size_t)held < n ? (size_t)held : n;
    while (k < m && scratch[k] == ids[k]) k++;
    return k;
}

/* Called with the lock held and a request slot free. */
static int pick(server *s, const int32_t *ids, size_t n_ids, int32_t *scratch, pool_slot **out) {
    pool_slot *best = NULL, *oldest = NULL;
    size_t best_len = 0;
    for (int i = 0; i < s->n_slots; i++) {
        pool_slot *sl = &s->slots[i];
        if (sl->busy) continue;
        const size_t k = scratch ? common_prefix(sl->session, ids, n_ids, scratch) : 0;
        if (k > best_len || (k == best_len && best && sl->last_used > best->last_used)) best = sl, best_len = k;
        if (!oldest || sl->last_used < oldest->last_used) oldest = sl;
    }
    if (!best_len && s->n_slots < s->max_sessions) {
        char err[256];
        pool_slot *sl = &s->slots[s->n_slots];
        gemma4c_session_params p = {s->n_ctx};
        if (gemma4c_session_new(s->model, &p, &sl->session, err, sizeof err)) return -1;
        s->n_slots++;
        best = sl;
    } else if (!best_len)
        best = oldest; /* its conversation gives way */
    if (!best) return -1;
    best->busy = 1;
    s->busy++;
    *out = best;
    return 0;
}

int pool_acquire(server *s, const int32_t *ids, size_t n_ids, void *client, int (*client_gone)(void *), pool_slot **out) {
    int32_t *scratch = malloc((n_ids ? n_ids : 1) * sizeof *scratch); /* without it, no reuse: still correct */
    int rc = POOL_OK;
    pthread_mutex_lock(&s->mu);
    int queued = 0;
    for (;;) {
        if (atomic_load(&s->stopping)) {
            rc = POOL_STOPPING;
            break;
        }
        if (s->busy < s->parallel) {
            rc = pick(s, ids, n_ids, scratch, out) ? POOL_FULL : POOL_OK;
            break;
        }
        if (!queued) {
            if (s->waiting >= s->queue_max) {
                rc = POOL_FULL;
                break;
            }
            queued = 1;
            s->waiting++;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000L;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&s->cv, &s->mu, &until);
        if (client_gone && client_gone(client)) {
            rc = POOL_GONE;
            break;
        }
    }
    if (queued) s->waiting--;
    pthread_mutex_unlock(&s->mu);
    free(scratch);
    return rc;
}

int pool_submit(server *s, pool_slot *slot, const gemma4c_input *in, const gemma4c_generate_options *o, char *err,
                size_t err_len) {
    for (;;) {
        int rc = gemma4c_submit(slot->session, in, o, err, err_len);
        if (rc != GEMMA4C_ERR_CAPACITY) return rc;
        /* The budget is short: the least recently used idle conversation gives its memory back. */
        pthread_mutex_lock(&s->mu);
        pool_slot *oldest = NULL;
        for (int i = 0; i < s->n_slots; i++) {
            pool_slot *sl = &s->slots[i];
            if (!sl->busy && gemma4c_session_tokens(sl->session, NULL, 0) > 0 && (!oldest || sl->last_used < oldest->last_used))
                oldest = sl;
        }
        if (oldest) gemma4c_session_reset(oldest->session, NULL, 0);
        pthread_mutex_unlock(&s->mu);
        if (!oldest) return rc;
    }
}

void pool_release(server *s, pool_slot *slot) {
    if (!slot) return;
    pthread_mutex_lock(&s->mu);
    slot->busy = 0;
    slot->last_used = serve_now();
    s->busy--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}
