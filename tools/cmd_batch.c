/* cmd_batch.c — `gemma4c batch`: OpenAI Batch API request lines run concurrently through the scheduler. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "openai.h"

#define MAX_LINE_BYTES ((size_t)64 << 20)

/* One input line and, once run, its output line. */
typedef struct job {
    char *line;
    char *custom_id;
    char *output; /* the result line (JSON), once known */
    oai_request req;
    oai_reply reply;
} job;

typedef struct slot {
    gemma4c_session *s;
    job *j; /* running here, or NULL */
    size_t index;
} slot;

/* The event loop sleeps until the scheduler has something for it. */
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
    while (!w->pending) pthread_cond_wait(&w->cv, &w->mu);
    w->pending = 0;
    pthread_mutex_unlock(&w->mu);
}

/* {"id", "custom_id", "response": {"status_code", "request_id", "body"} | null, "error": {...} | null} */
static char *result_line(size_t index, const char *custom_id, int status, cJSON *body, const char *code,
                         const char *message) {
    char id[64];
    snprintf(id, sizeof id, "batch_req_%zu", index);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    if (custom_id) cJSON_AddStringToObject(o, "custom_id", custom_id);
    else cJSON_AddNullToObject(o, "custom_id");
    if (body) {
        cJSON *resp = cJSON_CreateObject();
        cJSON_AddNumberToObject(resp, "status_code", status);
        cJSON_AddStringToObject(resp, "request_id", id);
        cJSON_AddItemToObject(resp, "body", body);
        cJSON_AddItemToObject(o, "response", resp);
        cJSON_AddNullToObject(o, "error");
    } else {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "code", code);
        cJSON_AddStringToObject(e, "message", message);
        cJSON_AddNullToObject(o, "response");
        cJSON_AddItemToObject(o, "error", e);
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* Parses a line into a request; on a bad line, its error line is set instead. */
static void parse_job(job *j, size_t index, const gemma4c_sampling *defaults, const oai_limits *limits) {
    cJSON *root = cJSON_Parse(j->line);
    const cJSON *custom = cJSON_GetObjectItemCaseSensitive(root, "custom_id");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(root, "url");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(root, "method");
    if (cJSON_IsString(custom)) j->custom_id = strdup(custom->valuestring);
    char err[512];
    const char *param = NULL;
    if (!cJSON_IsObject(root))
        j->output = result_line(index, NULL, 0, NULL, "invalid_json", "the line is not a JSON object");
    else if (!cJSON_IsString(custom))
        j->output = result_line(index, NULL, 0, NULL, "invalid_request", "'custom_id' must be a string");
    else if (method && !(cJSON_IsString(method) && strcmp(method->valuestring, "POST") == 0))
        j->output = result_line(index, j->custom_id, 0, NULL, "invalid_request", "'method' must be POST");
    else if (!cJSON_IsString(url) || strcmp(url->valuestring, "/v1/chat/completions") != 0)
        j->output = result_line(index, j->custom_id, 0, NULL, "invalid_url", "'url' must be /v1/chat/completions");
    else if (oai_parse_chat_request(cJSON_GetObjectItemCaseSensitive(root, "body"), defaults, limits, &j->req, err,
                                    sizeof err, &param)) {
        j->output = result_line(index, j->custom_id, 400, oai_error(err, "invalid_request_error", param, NULL), NULL, NULL);
        oai_request_free(&j->req);
    } else if (j->req.stream) {
        j->output = result_line(index, j->custom_id, 400,
                                oai_error("'stream' is not available in a batch", "invalid_request_error", "stream", NULL),
                                NULL, NULL);
        oai_request_free(&j->req);
    } else if (j->req.model)
        j->req.model = NULL; /* it pointed into this line's JSON, about to go */
    cJSON_Delete(root);
}

/* Reads every line of `path` ("-": standard input); blank lines are skipped. */
static int read_jobs(const char *path, job **out, size_t *n) {
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) return cli_error("%s: cannot open", path);
    char *line = NULL;
    size_t cap = 0, have = 0;
    ssize_t len;
    int rc = 0;
    *out = NULL;
    *n = 0;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        if ((size_t)len > MAX_LINE_BYTES) rc = cli_error("%s: line %zu is longer than %zu bytes", path, *n + 1, MAX_LINE_BYTES);
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (rc || len == 0 || strspn(line, " \t") == (size_t)len) continue;
        if (*n == have) {
            job *grown = realloc(*out, (have = have ? 2 * have : 64) * sizeof *grown);
            if (!grown) {
                rc = cli_error("out of memory");
                break;
            }
            *out = grown;
        }
        job *j = &(*out)[(*n)++];
        memset(j, 0, sizeof *j);
        if (!(j->line = strdup(line))) rc = cli_error("out of memory");
    }
    free(line);
    if (f != stdin) fclose(f);
    return rc;
}

static void job_free(job *j) {
    free(j->line);
    free(j->custom_id);
    free(j->output);
    oai_request_free(&j->req);
    oai_reply_free(&j->reply);
}

/* Starts job j on a free slot; a request gemma4c refuses gets its error line at once. */
static void start(slot *sl, job *j, size_t index, const gemma4c_model *m, waker *w) {
    char err[512];
    gemma4c_input in = {0};
    in.messages_json = j->req.messages_json;
    in.tools_json = j->req.tools_json;
    in.enable_thinking = j->req.enable_thinking;
    in.media = j->req.media;
    in.n_media = j->req.n_media;
    j->req.options.notify = wake;
    j->req.options.notify_user = w;
    char call_prefix[48];
    snprintf(call_prefix, sizeof call_prefix, "call_%zu", index);
    int rc = oai_reply_init(&j->reply, m, &j->req, call_prefix, NULL, NULL, NULL) ? GEMMA4C_ERR_NOMEM : 0;
    if (rc) snprintf(err, sizeof err, "out of memory");
    else rc = gemma4c_submit(sl->s, &in, &j->req.options, err, sizeof err);
    if (rc) {
        const int status = rc == GEMMA4C_ERR_NOMEM || rc == GEMMA4C_ERR_INTERNAL ? 500 : 400;
        j->output = result_line(index, j->custom_id, status,
                                oai_error(err, status == 500 ? "server_error" : "invalid_request_error", NULL,
                                          rc == GEMMA4C_ERR_CONTEXT ? "context_length_exceeded" : NULL),
                                NULL, NULL);
        return;
    }
    sl->j = j;
    sl->index = index;
}

/* Drains a slot's events; when its request ends, writes the job's result line and frees the slot. */
static void collect(slot *sl, const char *model_name) {
    gemma4c_event ev;
    while (sl->j && gemma4c_next(sl->s, &ev, 0) == 0 && ev.type != GEMMA4C_EVENT_NONE) {
        job *j = sl->j;
        if (ev.type == GEMMA4C_EVENT_TOKEN) {
            oai_reply_token(&j->reply, &ev.token);
            continue;
        }
        if (ev.status || oai_reply_finish(&j->reply)) {
            j->output = result_line(sl->index, j->custom_id, 500,
                                    oai_error(ev.status ? ev.error : "out of memory", "server_error", NULL, NULL), NULL, NULL);
        } else {
            char id[64];
            snprintf(id, sizeof id, "chatcmpl-%zu", sl->index);
            j->output = result_line(sl->index, j->custom_id, 200, oai_completion(id, model_name, &j->req, &j->reply, &ev.result),
                                    NULL, NULL);
        }
        sl->j = NULL;
    }
}

int cmd_batch(int argc, char **argv) {
    cli_opts o;
    int rc = cli_parse(argc, argv, 2, &o, "batch");
    if (rc) return rc == 2 ? 0 : 1;
    if (!o.input) return cli_error("batch: -i REQUESTS.jsonl is required");
    const int parallel = o.n_parallel ? o.parallel[0] : 8;
    job *jobs = NULL;
    size_t n = 0;
    if (read_jobs(o.input, &jobs, &n)) {
        for (size_t i = 0; i < n; i++) job_free(&jobs[i]);
        free(jobs);
        return 1;
    }
    FILE *out = o.out ? fopen(o.out, "w") : stdout;
    if (!out) rc = cli_error("%s: cannot create", o.out);
    gemma4c_model *m = NULL;
    if (!rc && cli_load_model(&o, &m)) rc = 1;
    slot *slots = rc ? NULL : calloc((size_t)parallel, sizeof *slots);
    if (!rc && !slots) rc = cli_error("out of memory");
    for (int i = 0; !rc && i < parallel; i++) rc = cli_new_session(&o, m, &slots[i].s);
    gemma4c_model_info info = {0};
    gemma4c_sampling defaults = {0};
    if (!rc) {
        gemma4c_model_get_info(m, &info);
        gemma4c_sampling_from_model(m, &defaults);
    }
    const char *slash = info.source ? strrchr(info.source, '/') : NULL;
    const char *model_name = slash && slash[1] ? slash + 1 : info.source ? info.source : "gemma4c";
    const oai_limits limits = {.vocab_size = info.vocab_size}; /* no file:// media in a batch */
    for (size_t i = 0; !rc && i < n; i++) parse_job(&jobs[i], i, &defaults, &limits);
    /* Fill free slots in input order, collect as requests end, write results in input order as they complete. */
    waker w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    const double t0 = (double)clock();
    size_t next = 0, written = 0;
    while (!rc && written < n) {
        int running = 0;
        for (int k = 0; k < parallel; k++) {
            while (!slots[k].j && next < n) {
                if (!jobs[next].output) start(&slots[k], &jobs[next], next, m, &w);
                next++;
            }
            running += slots[k].j != NULL;
        }
        for (; written < n && jobs[written].output; written++) {
            fprintf(out, "%s\n", jobs[written].output);
            fflush(out);
            job_free(&jobs[written]);
        }
        if (!running) continue;
        wait_for_events(&w);
        for (int k = 0; k < parallel; k++) collect(&slots[k], model_name);
    }
    if (!rc && o.verbose) {
        gemma4c_stats st;
        gemma4c_model_stats(m, &st);
        fprintf(stderr, "[%zu requests: %lld prompt tokens computed, %lld generated in %lld steps, %.1f s busy; %.1f s CPU]\n",
                n, (long long)st.prefill_rows, (long long)st.decode_rows, (long long)st.steps, st.busy_seconds,
                ((double)clock() - t0) / CLOCKS_PER_SEC);
    }
    for (int k = 0; slots && k < parallel; k++) gemma4c_session_free(slots[k].s);
    free(slots);
    for (size_t i = written; i < n; i++) job_free(&jobs[i]);
    free(jobs);
    gemma4c_model_free(m);
    if (out && out != stdout && fclose(out)) rc = rc ? rc : cli_error("%s: write failed", o.out);
    return rc;
}
