/* cmd_bench.c — `gemma4c bench`: prefill and decode speed, batched decoding of many sessions, memory, bandwidth. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

enum { JOIN_PROMPT = 128, BACKGROUND_PROMPT = 32 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double peak_rss(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

/* The read-bandwidth probe runs in a child process so its buffer never counts in this process's peak RSS. */
static double measure_bandwidth(int threads) {
    int fd[2];
    if (pipe(fd) != 0) return 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        double gbps = gemma4c_read_bandwidth(threads, (size_t)1 << 30, 5);
        ssize_t w = write(fd[1], &gbps, sizeof gbps);
        _exit(w == sizeof gbps ? 0 : 1);
    }
    close(fd[1]);
    double gbps = 0;
    if (pid < 0 || read(fd[0], &gbps, sizeof gbps) != sizeof gbps) gbps = 0;
    close(fd[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    return gbps;
}

/* A fixed pseudo-random prompt: <bos>, then ids in [3, vocab); `salt` makes sessions' prompts differ. */
static void random_prompt(int32_t *ids, int n, int vocab, int32_t bos, uint64_t salt) {
    uint64_t x = 0x9E3779B97F4A7C15ull ^ (salt * 0xD1B54A32D192ED03ull);
    ids[0] = bos;
    for (int i = 1; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(3 + x % (uint64_t)(vocab - 3));
    }
}

/* The event loop's wake-up: the scheduler signals that some session has an event. */
typedef struct waker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
} waker;

static void wake(void *user) {
    waker *w = user;
    pthread_mutex_lock(&w->mu);
    w->pending = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void wait_for_events(waker *w) {
    pthread_mutex_lock(&w->mu);
    if (!w->pending) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    w->pending = 0;
    pthread_mutex_unlock(&w->mu);
}

typedef struct parallel_result {
    int sessions;
    double aggregate, per_session, ttft_join, rss;
} parallel_result;

/* Drains every session's events; counts tokens that arrive inside [from, to). Returns -1 on a failed request. */
static int pump(gemma4c_session **s, int n, int *started, int *done, double from, double to, int64_t *counted) {
    for (int i = 0; i < n; i++) {
        gemma4c_event ev;
        while (!done[i] && gemma4c_next(s[i], &ev, 0) == 0 && ev.type != GEMMA4C_EVENT_NONE) {
            if (ev.type == GEMMA4C_EVENT_DONE) {
                done[i] = 1;
                if (ev.status) return -cli_error("bench: session %d: %s", i, ev.error);
                break;
            }
            if (ev.token.id < 0) continue;
            started[i] = 1;
            const double t = now();
            if (t >= from && t < to) (*counted)++;
        }
    }
    return 0;
}

/* N sessions decoding together: N - 1 start on short prompts; once they decode, the last joins with a longer one
 * (its time to first token is the join latency); decode speed is counted while all N decode, until the joiner
 * has generated n_decode tokens. */
static int run_parallel(gemma4c_model *m, const gemma4c_model_info *info, int N, int n_decode, parallel_result *out) {
    gemma4c_session **s = calloc((size_t)N, sizeof *s);
    int *started = calloc((size_t)N, sizeof *started), *done = calloc((size_t)N, sizeof *done);
    int32_t ids[JOIN_PROMPT];
    waker w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    gemma4c_special_tokens st;
    gemma4c_special_tokens_get(m, &st);
    char err[512];
    int rc = s && started && done ? 0 : cli_error("out of memory");
    gemma4c_generate_options g = {0};
    g.ignore_eos = 1;
    g.notify = wake;
    g.notify_user = &w;
    gemma4c_session_params sp = {JOIN_PROMPT + 3 * n_decode + 64};
    for (int i = 0; !rc && i < N; i++)
        if (gemma4c_session_new(m, &sp, &s[i], err, sizeof err)) rc = cli_error("%s", err);
    for (int i = 0; !rc && i < N - 1; i++) { /* the background: until cancelled */
        random_prompt(ids, BACKGROUND_PROMPT, info->vocab_size, st.bos, (uint64_t)i + 1);
        gemma4c_input in = {.ids = ids, .n_ids = BACKGROUND_PROMPT};
        if (gemma4c_submit(s[i], &in, &g, err, sizeof err)) rc = cli_error("%s", err);
    }
    int64_t counted = 0;
    for (int all = N == 1; !rc && !all;) {
        wait_for_events(&w);
        if (pump(s, N - 1, started, done, 0, 0, &counted)) rc = 1;
        all = 1;
        for (int i = 0; i < N - 1; i++) all &= started[i];
    }
    double t_join = now(), t_first = 0, t_end = 0;
    if (!rc) {
        random_prompt(ids, JOIN_PROMPT, info->vocab_size, st.bos, 0);
        gemma4c_input in = {.ids = ids, .n_ids = JOIN_PROMPT};
        gemma4c_generate_options jg = g;
        jg.max_tokens = n_decode + 1;
        if (gemma4c_submit(s[N - 1], &in, &jg, err, sizeof err)) rc = cli_error("%s", err);
    }
    /* until the joiner's first token, then count everyone's tokens until the joiner is done */
    while (!rc && !done[N - 1]) {
        wait_for_events(&w);
        gemma4c_event ev;
        while (!rc && !done[N - 1] && gemma4c_next(s[N - 1], &ev, 0) == 0 && ev.type != GEMMA4C_EVENT_NONE) {
            if (ev.type == GEMMA4C_EVENT_DONE) {
                done[N - 1] = 1;
                if (ev.status) rc = cli_error("bench: %s", ev.error);
                t_end = now();
            } else if (!t_first) {
                t_first = now();
            } else
                counted++;
        }
        if (!rc && pump(s, N - 1, started, done, t_first ? t_first : 1e300, 1e300, &counted)) rc = 1;
    }
    for (int i = 0; i < N - 1; i++) gemma4c_cancel(s[i]);
    for (int i = 0; i < N; i++) { /* collect the cancelled ends */
        gemma4c_event ev;
        while (s && s[i] && !done[i] && gemma4c_next(s[i], &ev, -1) == 0 && ev.type != GEMMA4C_EVENT_DONE) {}
    }
    if (!rc) {
        out->sessions = N;
        out->aggregate = t_end > t_first ? (double)counted / (t_end - t_first) : 0;
        out->per_session = out->aggregate / N;
        out->ttft_join = t_first - t_join;
        out->rss = peak_rss();
    }
    for (int i = 0; s && i < N; i++) gemma4c_session_free(s[i]);
    free(s);
    free(started);
    free(done);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    cli_opts o;
    int rc = cli_parse(argc, argv, 2, &o, "bench");
    if (rc) return rc == 2 ? 0 : 1;
    const int n_prompt = o.bench_prompt > 0 ? o.bench_prompt : 512;
    const int n_decode = o.max_tokens >= 0 ? o.max_tokens : 128;
    char model[64];
    if (!o.model) {
        snprintf(model, sizeof model, "synthetic:%s", o.shape ? o.shape : "e4b");
        o.model = model;
    } else if (o.shape)
        return cli_error("bench: give either -m MODEL or --shape, not both");
    if (n_decode < 1) return cli_error("bench: -n must be at least 1");
    const int runs = o.bench_runs > 0 ? o.bench_runs : 3;
    if (o.batch <= 0) o.batch = n_prompt < 512 ? n_prompt : 512;

    double t_load = now();
    gemma4c_model *m = NULL;
    gemma4c_session *s = NULL;
    o.ctx = n_prompt + n_decode + 1;
    if (cli_load_model(&o, &m) || cli_new_session(&o, m, &s)) {
        gemma4c_model_free(m);
        return 1;
    }
    t_load = now() - t_load;
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    gemma4c_special_tokens st;
    gemma4c_special_tokens_get(m, &st);
    int32_t *ids = malloc((size_t)n_prompt * sizeof *ids);
    if (!ids) rc = cli_error("out of memory");
    else random_prompt(ids, n_prompt, info.vocab_size, st.bos, 0);
    /* The prompt once (prefill, first token); then `runs` greedy decodes of n_decode steps that never stop early,
     * each from the prompt's state (the session reuses all of it but its last token). A shared host's memory
     * bandwidth drifts by tens of percent within minutes, so the probe runs right before and right after the
     * decode runs: the best run against the best probe pass compares like with like. */
    gemma4c_input in = {.ids = ids, .n_ids = (size_t)n_prompt};
    gemma4c_generate_options g = {.max_tokens = 1, .ignore_eos = 1};
    gemma4c_result first = {0}, r;
    double gbps_before = 0, gbps_after = 0, decode_s[CLI_MAX_RUNS] = {0};
    char err[512];
    if (!rc && gemma4c_generate(s, &in, &g, NULL, NULL, &first, err, sizeof err)) rc = cli_error("%s", err);
    if (!rc && !o.no_bandwidth) gbps_before = measure_bandwidth(o.threads);
    g.max_tokens = n_decode + 1;
    for (int i = 0; !rc && i < runs; i++) {
        if (gemma4c_generate(s, &in, &g, NULL, NULL, &r, err, sizeof err)) rc = cli_error("%s", err);
        decode_s[i] = r.decode_seconds;
    }
    if (!rc && !o.no_bandwidth) gbps_after = measure_bandwidth(o.threads);
    const double gbps = gbps_after > gbps_before ? gbps_after : gbps_before;
    double decode_best = decode_s[0], decode_sum = 0;
    for (int i = 0; i < runs; i++) {
        decode_best = decode_s[i] < decode_best ? decode_s[i] : decode_best;
        decode_sum += decode_s[i];
    }
    /* Encoders: the time from the media file to soft tokens, per input. */
    double media_s[CLI_MAX_LIST] = {0}, media_len[CLI_MAX_LIST] = {0};
    int64_t media_tokens[CLI_MAX_LIST] = {0};
    for (int i = 0; !rc && i < o.n_media; i++) {
        gemma4c_features *f = NULL;
        double t1 = now();
        if (gemma4c_encode(s, &o.media[i], &f, err, sizeof err)) rc = cli_error("%s", err);
        media_s[i] = now() - t1;
        if (f) media_tokens[i] = f->n_tokens, media_len[i] = f->seconds;
        gemma4c_features_free(f);
    }
    gemma4c_session_free(s);
    const double rss = peak_rss();
    parallel_result par[CLI_MAX_PARALLEL] = {0};
    for (int i = 0; !rc && i < o.n_parallel; i++) rc = run_parallel(m, &info, o.parallel[i], n_decode, &par[i]);
    const double bytes_tok = (double)info.weight_bytes_per_token;
    const double prefill_tps = first.prefill_seconds > 0 ? n_prompt / first.prefill_seconds : 0;
    const double decode_tps = decode_sum > 0 ? n_decode * runs / decode_sum : 0; /* the mean rate */
    const double decode_best_tps = decode_best > 0 ? n_decode / decode_best : 0;
    if (!rc && o.json) {
        printf("{\"prefill_tok_s\":%.3f,\"decode_tok_s\":%.3f,\"ttft_s\":%.4f,\"peak_rss_bytes\":%.0f,"
               "\"weight_bytes_per_token\":%.0f,\"decode_tok_s_best\":%.3f,\"decode_runs\":%d,"
               "\"read_bandwidth_gb_s\":%.2f,\"read_bandwidth_before_gb_s\":%.2f,\"read_bandwidth_after_gb_s\":%.2f,"
               "\"kernels\":\"%s\",\"threads\":%d,\"device\":\"%s\"",
               prefill_tps, decode_tps, first.first_token_seconds, rss, bytes_tok, decode_best_tps, runs, gbps,
               gbps_before, gbps_after, info.kernels, info.n_threads, info.device);
        if (o.n_parallel) {
            printf(",\"join_prompt_tokens\":%d,\"parallel\":[", JOIN_PROMPT);
            for (int i = 0; i < o.n_parallel; i++)
                printf("%s{\"sessions\":%d,\"aggregate_decode_tok_s\":%.3f,\"per_session_decode_tok_s\":%.3f,"
                       "\"ttft_join_s\":%.4f,\"peak_rss_bytes\":%.0f}",
                       i ? "," : "", par[i].sessions, par[i].aggregate, par[i].per_session, par[i].ttft_join, par[i].rss);
            printf("]");
        }
        printf("}\n");
    } else if (!rc) {
        printf("model            %s (%s weights)\n", info.source, info.synthetic ? "synthetic" : "checkpoint");
        printf("device           %s\n", info.device);
        printf("kernels          %s, %d threads\n", info.kernels, info.n_threads);
        printf("load             %.2f s\n", t_load);
        printf("prefill          %d tokens in %.2f s: %.2f tok/s\n", n_prompt, first.prefill_seconds, prefill_tps);
        printf("time to first    %.3f s\n", first.first_token_seconds);
        printf("decode           %d tokens: %.2f tok/s (mean of %d runs; best %.2f; runs", n_decode, decode_tps, runs,
               decode_best_tps);
        for (int i = 0; i < runs; i++) printf(" %.2f", decode_s[i] > 0 ? n_decode / decode_s[i] : 0);
        printf(")\n");
        printf("weights/token    %.3f GB\n", bytes_tok / 1e9);
        printf("peak RSS         %.2f GB\n", rss / 1e9);
        if (gbps > 0)
            printf("read bandwidth   %.1f GB/s (best probe pass: %.1f before decoding, %.1f after); decode reads %.1f "
                   "GB/s (%.0f%%) at its best run, %.1f GB/s (%.0f%%) on average\n",
                   gbps, gbps_before, gbps_after, bytes_tok * decode_best_tps / 1e9,
                   100.0 * bytes_tok * decode_best_tps / 1e9 / gbps, bytes_tok * decode_tps / 1e9,
                   100.0 * bytes_tok * decode_tps / 1e9 / gbps);
        for (int i = 0; i < o.n_media; i++) {
            const char *path = o.media[i].path;
            if (o.media[i].kind == GEMMA4C_MEDIA_AUDIO)
                printf("audio            %s (%.1f s): %lld soft tokens in %.2f s, real-time factor %.3f\n", path,
                       media_len[i], (long long)media_tokens[i], media_s[i], media_len[i] > 0 ? media_s[i] / media_len[i] : 0);
            else if (o.media[i].kind == GEMMA4C_MEDIA_VIDEO)
                printf("video            %s (%.1f s): %lld soft tokens in %.2f s, %.2f s per second of video\n", path,
                       media_len[i], (long long)media_tokens[i], media_s[i], media_len[i] > 0 ? media_s[i] / media_len[i] : 0);
            else
                printf("image            %s: %lld soft tokens in %.2f s\n", path, (long long)media_tokens[i], media_s[i]);
        }
        for (int i = 0; i < o.n_parallel; i++)
            printf("parallel %-7d  aggregate decode %.2f tok/s (%.2fx one session's mean), %.2f tok/s per session; "
                   "a session joining with %d prompt tokens: first token after %.3f s; peak RSS %.2f GB\n",
                   par[i].sessions, par[i].aggregate, decode_tps > 0 ? par[i].aggregate / decode_tps : 0,
                   par[i].per_session, JOIN_PROMPT, par[i].ttft_join, par[i].rss / 1e9);
    }
    free(ids);
    gemma4c_model_free(m);
    return rc;
}
