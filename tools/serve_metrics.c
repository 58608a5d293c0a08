/* serve_metrics.c — the server's counters and histograms in Prometheus' text format (GET /metrics). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

static const double ttft_le[TTFT_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double gap_le[GAP_BUCKETS] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5};

void metrics_init(metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void metrics_free(metrics *m) { pthread_mutex_destroy(&m->mu); }

static void observe(int64_t *counts, const double *le, int n, double *sum, double v) {
    int b = 0;
    while (b < n && v > le[b]) b++;
    counts[b]++;
    *sum += v;
}

void metrics_started(metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->generations++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_generation(metrics *m, const gemma4c_result *r, int ok) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += r->prompt_tokens;
    m->cached_tokens += r->cached_tokens;
    m->completion_tokens += r->generated_tokens;
    if (!ok) m->generation_errors++;
    if (r->generated_tokens > 0) observe(m->ttft, ttft_le, TTFT_BUCKETS, &m->ttft_sum, r->first_token_seconds);
    pthread_mutex_unlock(&m->mu);
}

void metrics_token_gap(metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    observe(m->gap, gap_le, GAP_BUCKETS, &m->gap_sum, seconds);
    pthread_mutex_unlock(&m->mu);
}

void metrics_request(metrics *m, int status) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_codes && m->codes[i] != status) i++;
    if (i == m->n_codes && m->n_codes < MAX_STATUS_CODES) m->codes[m->n_codes++] = status;
    if (i < m->n_codes) m->code_count[i]++;
    pthread_mutex_unlock(&m->mu);
}

typedef struct out {
    char *s;
    size_t len, cap;
    int failed;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...) {
    for (int attempt = 0; attempt < 2 && !o->failed; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        const int n = vsnprintf(o->s ? o->s + o->len : NULL, o->s ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if (o->s && o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = (o->len + (size_t)n + 1) * 2;
        char *grown = realloc(o->s, cap);
        if (!grown) o->failed = 1;
        else o->s = grown, o->cap = cap;
    }
}

static void histogram(out *o, const char *name, const char *help, const int64_t *counts, const double *le, int n,
                      double sum) {
    put(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    int64_t total = 0;
    for (int b = 0; b < n; b++) {
        total += counts[b];
        put(o, "%s_bucket{le=\"%g\"} %lld\n", name, le[b], (long long)total);
    }
    total += counts[n];
    put(o, "%s_bucket{le=\"+Inf\"} %lld\n%s_sum %.6f\n%s_count %lld\n", name, (long long)total, name, sum, name,
        (long long)total);
}

char *metrics_render(server *s) {
    metrics m;
    pthread_mutex_lock(&s->metrics.mu);
    m = s->metrics;
    pthread_mutex_unlock(&s->metrics.mu);
    pthread_mutex_lock(&s->mu);
    const int waiting = s->waiting, busy = s->busy, sessions = s->n_slots;
    pthread_mutex_unlock(&s->mu);
    gemma4c_stats st = {0};
    gemma4c_model_stats(s->model, &st);
    out o = {0};
    put(&o, "# HELP gemma4c_requests_total HTTP requests answered, by status code.\n# TYPE gemma4c_requests_total counter\n");
    for (int i = 0; i < m.n_codes; i++)
        put(&o, "gemma4c_requests_total{code=\"%d\"} %lld\n", m.codes[i], (long long)m.code_count[i]);
    put(&o, "# HELP gemma4c_generations_total Generations started.\n# TYPE gemma4c_generations_total counter\n"
            "gemma4c_generations_total %lld\n", (long long)m.generations);
    put(&o, "# HELP gemma4c_generation_errors_total Generations that ended in an error.\n"
            "# TYPE gemma4c_generation_errors_total counter\ngemma4c_generation_errors_total %lld\n",
        (long long)m.generation_errors);
    put(&o, "# HELP gemma4c_prompt_tokens_total Prompt tokens of finished generations.\n"
            "# TYPE gemma4c_prompt_tokens_total counter\ngemma4c_prompt_tokens_total %lld\n", (long long)m.prompt_tokens);
    put(&o, "# HELP gemma4c_prompt_tokens_cached_total Prompt tokens reused from a session's cache.\n"
            "# TYPE gemma4c_prompt_tokens_cached_total counter\ngemma4c_prompt_tokens_cached_total %lld\n",
        (long long)m.cached_tokens);
    put(&o, "# HELP gemma4c_completion_tokens_total Tokens generated.\n"
            "# TYPE gemma4c_completion_tokens_total counter\ngemma4c_completion_tokens_total %lld\n",
        (long long)m.completion_tokens);
    put(&o, "# HELP gemma4c_queue_length Requests waiting for a session.\n# TYPE gemma4c_queue_length gauge\n"
            "gemma4c_queue_length %d\n", waiting);
    put(&o, "# HELP gemma4c_active_sessions Sessions running a request.\n# TYPE gemma4c_active_sessions gauge\n"
            "gemma4c_active_sessions %d\n", busy);
    put(&o, "# HELP gemma4c_sessions Sessions held (running or keeping a conversation for reuse).\n"
            "# TYPE gemma4c_sessions gauge\ngemma4c_sessions %d\n", sessions);
    put(&o, "# HELP gemma4c_kv_cache_bytes KV cache memory held by all sessions.\n# TYPE gemma4c_kv_cache_bytes gauge\n"
            "gemma4c_kv_cache_bytes %lld\n", (long long)st.kv_bytes);
    put(&o, "# HELP gemma4c_scheduler_steps_total Batched steps the scheduler ran.\n"
            "# TYPE gemma4c_scheduler_steps_total counter\ngemma4c_scheduler_steps_total %lld\n", (long long)st.steps);
    histogram(&o, "gemma4c_time_to_first_token_seconds", "From a generation's submission to its first token.", m.ttft,
              ttft_le, TTFT_BUCKETS, m.ttft_sum);
    histogram(&o, "gemma4c_inter_token_seconds", "Time between a stream's consecutive tokens.", m.gap, gap_le,
              GAP_BUCKETS, m.gap_sum);
    if (o.failed) {
        free(o.s);
        return NULL;
    }
    return o.s;
}
