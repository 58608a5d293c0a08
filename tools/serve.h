/* serve.h — what the server's parts share: the session pool (prompt cache), metrics, the chat page. */
#ifndef G4_SERVE_H
#define G4_SERVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "gemma4c.h"
#include "openai.h"

#define TTFT_BUCKETS 10
#define GAP_BUCKETS 9
#define MAX_STATUS_CODES 16

typedef struct metrics {
    pthread_mutex_t mu;
    int codes[MAX_STATUS_CODES];
    int64_t code_count[MAX_STATUS_CODES];
    int n_codes;
    int64_t prompt_tokens, completion_tokens, cached_tokens, generations, generation_errors;
    int64_t ttft[TTFT_BUCKETS + 1], gap[GAP_BUCKETS + 1]; /* histogram counts; the last: +Inf */
    double ttft_sum, gap_sum;
} metrics;

/* A session of the pool: idle ones keep their conversation for a later request that continues it. */
typedef struct pool_slot {
    gemma4c_session *session;
    int busy;
    double last_used;
} pool_slot;

typedef struct server {
    gemma4c_model *model;
    gemma4c_model_info info;
    gemma4c_sampling defaults;
    const char *model_name, *api_key;
    oai_limits limits;
    size_t max_body;
    int parallel, queue_max, max_sessions;
    int64_t n_ctx;
    time_t started;
    atomic_int stopping;
    pthread_mutex_t mu; /* the pool */
    pthread_cond_t cv;
    pool_slot *slots;
    int n_slots, busy, waiting;
    metrics metrics;
} server;

/* Seconds on a monotonic clock. */
double serve_now(void);

enum { POOL_OK = 0, POOL_FULL, POOL_GONE, POOL_STOPPING };

int pool_init(server *s);
void pool_free(server *s);
/* Cancels every running request and wakes the queued ones (which then get POOL_STOPPING). */
void pool_stop(server *s);
/* A session for a prompt of these ids: the idle one that holds the longest prefix of them, else a new or the
 * least recently used one. Waits in the bounded queue while `parallel` requests run (POOL_FULL when it is full),
 * giving up when client_gone(client) says the client left. */
int pool_acquire(server *s, const int32_t *ids, size_t n_ids, void *client, int (*client_gone)(void *), pool_slot **out);
/* gemma4c_submit; when the KV budget is short, idle sessions' caches are dropped, least recently used first. */
int pool_submit(server *s, pool_slot *slot, const gemma4c_input *in, const gemma4c_generate_options *o, char *err,
                size_t err_len);
void pool_release(server *s, pool_slot *slot);

void metrics_init(metrics *m);
void metrics_free(metrics *m);
void metrics_started(metrics *m);
void metrics_generation(metrics *m, const gemma4c_result *r, int ok);
void metrics_token_gap(metrics *m, double seconds);
void metrics_request(metrics *m, int status);
/* Prometheus text exposition; for free(). */
char *metrics_render(server *s);

/* The chat page (tools/chat.html), built in. */
extern const char serve_page[];
extern const size_t serve_page_len;

#endif
