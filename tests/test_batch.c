/* test_batch.c — sessions decoded together in batched steps give what each gives alone, logit for logit. */
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "gemma4c.h"
#include "golden_util.h"

/* On the CPU every product sums in one order whatever the batch (quant.h), so batched logits equal solo ones bit
 * for bit, for float and quantized weights alike. On a GPU, whose products take another kernel past 8 rows (a tiled
 * product instead of a warp per row), 1.00e-5 of the logit range was measured (H100, 8 sessions), so 3e-5 there:
 * far below what a wrong row, position or cache gives. */
static double tolerance(void) { return strcmp(g4t_device, "cpu") == 0 ? 0 : 3e-5; }
#define MAX_STEPS 40
#define V 512

static char image[4200], audio[4200];

/* The test's event loop sleeps until the scheduler has something (polling would take a core from it). */
static pthread_mutex_t wake_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cv = PTHREAD_COND_INITIALIZER;
static int wake_pending;

static void wake(void *user) {
    pthread_mutex_lock(&wake_mu);
    wake_pending = 1;
    pthread_cond_signal(&wake_cv);
    pthread_mutex_unlock(&wake_mu);
}

static void wait_for_events(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    pthread_mutex_lock(&wake_mu);
    if (!wake_pending) pthread_cond_timedwait(&wake_cv, &wake_mu, &ts);
    wake_pending = 0;
    pthread_mutex_unlock(&wake_mu);
}

/* One request: its input, how long it runs, and what it produced. */
typedef struct request {
    int32_t ids[96];
    int n_ids;
    const char *messages; /* a chat with media instead of ids */
    gemma4c_media media[2];
    int n_media;
    int max_tokens, ignore_eos;
    /* outputs */
    int32_t out[MAX_STEPS];
    int n_out;
    float *logits; /* [MAX_STEPS][V] */
    int n_logits;
    gemma4c_result result;
    int status;
} request;

static int keep_logits(void *user, float *logits, int vocab) {
    request *r = user;
    if (r->n_logits < MAX_STEPS) memcpy(r->logits + (size_t)r->n_logits * V, logits, (size_t)vocab * sizeof(float));
    r->n_logits++;
    return 0;
}

static void make_requests(request *rq, int n) {
    static const char *chats[] = {
        "[{\"role\":\"user\",\"content\":[{\"type\":\"image\"},{\"type\":\"text\",\"text\":\"What is this?\"}]}]",
        "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":[{\"type\":\"audio\"},"
        "{\"type\":\"text\",\"text\":\"Transcribe.\"}]}]",
        "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Compare\"},{\"type\":\"image\"},{\"type\":\"audio\"}]}]",
    };
    for (int i = 0; i < n; i++) {
        request *r = &rq[i];
        memset(r, 0, sizeof *r);
        r->logits = calloc((size_t)MAX_STEPS * V, sizeof(float));
        r->max_tokens = 4 + (i * 7) % 30;
        r->ignore_eos = i % 4 != 3;
        if (i % 5 == 2) { /* a chat with media */
            int c = (i / 5) % 3;
            r->messages = chats[c];
            if (c != 1) r->media[r->n_media++] = (gemma4c_media){GEMMA4C_MEDIA_IMAGE, image, NULL, 0, 70};
            if (c != 0) r->media[r->n_media++] = (gemma4c_media){GEMMA4C_MEDIA_AUDIO, audio, NULL, 0, 0};
            continue;
        }
        r->n_ids = 3 + (i * 29) % 90; /* prompts from 3 to 92 tokens: some take several chunks */
        r->ids[0] = 2;
        for (int k = 1; k < r->n_ids; k++) r->ids[k] = 3 + (k * 53 + i * 97) % 497;
    }
}

static void submit(gemma4c_session *s, request *r) {
    gemma4c_input in = {0};
    if (r->messages) in.messages_json = r->messages, in.media = r->media, in.n_media = (size_t)r->n_media;
    else in.ids = r->ids, in.n_ids = (size_t)r->n_ids;
    gemma4c_generate_options o = {.max_tokens = r->max_tokens, .ignore_eos = r->ignore_eos, .on_logits = keep_logits,
                                  .logits_user = r, .notify = wake};
    char err[512];
    r->n_out = r->n_logits = 0;
    r->status = gemma4c_submit(s, &in, &o, err, sizeof err);
    CHECK(r->status == 0, "%s", err);
}

/* Drains a session; returns 1 once its request has ended. */
static int drain(gemma4c_session *s, request *r) {
    gemma4c_event ev;
    while (gemma4c_next(s, &ev, 0) == 0 && ev.type != GEMMA4C_EVENT_NONE) {
        if (ev.type == GEMMA4C_EVENT_DONE) {
            r->result = ev.result;
            r->status = ev.status;
            CHECK(ev.status == 0, "request failed: %s", ev.error);
            return 1;
        }
        if (ev.token.id >= 0 && r->n_out < MAX_STEPS) r->out[r->n_out++] = ev.token.id;
    }
    return 0;
}

/* Runs k requests on k sessions: they join one after another as tokens flow (request i once 2*i tokens were seen
 * in all, or when none is running), and leave when they are done. */
static void run_together(gemma4c_model *m, request *rq, int k) {
    gemma4c_session **s = calloc((size_t)k, sizeof *s);
    int *started = calloc((size_t)k, sizeof *started), *ended = calloc((size_t)k, sizeof *ended);
    char err[512];
    gemma4c_session_params sp = {512};
    for (int i = 0; i < k; i++) CHECK(gemma4c_session_new(m, &sp, &s[i], err, sizeof err) == 0, "%s", err);
    int left = k, seen = 0, waits = 0, running = 0;
    while (left && waits < 100000) {
        for (int i = 0; i < k; i++)
            if (!started[i] && (seen >= 2 * i || !running)) {
                submit(s[i], &rq[i]);
                started[i] = 1;
                if (rq[i].status) ended[i] = 1, left--; /* refused: nothing to wait for */
                else running++;
            }
        seen = 0;
        for (int i = 0; i < k; i++) {
            if (started[i] && !ended[i] && drain(s[i], &rq[i])) ended[i] = 1, left--, running--;
            seen += rq[i].n_out;
        }
        waits++;
        if (left) wait_for_events();
    }
    CHECK(left == 0, "%d requests never ended", left);
    for (int i = 0; i < k; i++) gemma4c_session_free(s[i]);
    free(s), free(started), free(ended);
}

/* Each request alone, on a fresh session: the reference for the batched runs. */
static void run_alone(gemma4c_model *m, request *rq, int n) {
    for (int i = 0; i < n; i++) run_together(m, &rq[i], 1);
}

static void compare(const request *solo, const request *batched, int n, int k) {
    int same_tokens = 0, sessions_with_media = 0;
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const request *a = &solo[i], *b = &batched[i];
        same_tokens += a->n_out == b->n_out && memcmp(a->out, b->out, (size_t)a->n_out * 4) == 0;
        sessions_with_media += a->n_media > 0;
        int steps = a->n_logits < MAX_STEPS ? a->n_logits : MAX_STEPS;
        CHECK(a->n_logits == b->n_logits, "request %d: %d sampled positions alone, %d together", i, a->n_logits, b->n_logits);
        for (int t = 0; t < steps && t < b->n_logits; t++)
            worst = fmax(worst, g4t_rel_err(b->logits + (size_t)t * V, a->logits + (size_t)t * V, V));
        CHECK(a->result.generated_tokens == b->result.generated_tokens && a->result.stop_reason == b->result.stop_reason,
              "request %d: %lld tokens (%d) alone, %lld (%d) together", i, (long long)a->result.generated_tokens,
              a->result.stop_reason, (long long)b->result.generated_tokens, b->result.stop_reason);
    }
    printf("%2d sessions together (%d with media): %d/%d identical token streams, logits rel err %.2e\n", k,
           sessions_with_media, same_tokens, n, worst);
    CHECK(same_tokens == n, "%d of %d sessions changed their tokens in a batch of %d", n - same_tokens, n, k);
    CHECK(worst <= tolerance(), "batch of %d: logits rel err %.3e (tolerance %.0e)", k, worst, tolerance());
}

/* The 17 requests alone, then in batches of 1, 3, 8 and 17, on the model at `path`. */
static void check_model(const char *path, const char *label) {
    /* 24 rows a step: prompts take several chunks, and a 17-session batch runs decode rows and chunks together. */
    gemma4c_model_params mp = {.model = path, .n_threads = 2, .n_batch = 24, .device = g4t_device};
    gemma4c_model *m = NULL;
    char err[512];
    int rc = gemma4c_model_load(&mp, &m, err, sizeof err);
    g4t_skip_without_device(rc, err);
    if (rc) {
        CHECK(0, "%s: %s", label, err);
        return;
    }
    printf("%s:\n", label);
    enum { N = 17 };
    request solo[N], together[N];
    make_requests(solo, N);
    run_alone(m, solo, N);
    const int sizes[] = {1, 3, 8, 17};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        make_requests(together, N);
        for (int first = 0; first < N; first += sizes[i]) {
            int k = N - first < sizes[i] ? N - first : sizes[i];
            run_together(m, together + first, k);
        }
        compare(solo, together, N, sizes[i]);
        for (int j = 0; j < N; j++) free(together[j].logits);
    }
    gemma4c_stats st;
    gemma4c_model_stats(m, &st);
    CHECK(st.kv_bytes == 0 && st.active == 0, "everything released: %lld bytes, %d active", (long long)st.kv_bytes, st.active);
    for (int j = 0; j < N; j++) free(solo[j].logits);
    gemma4c_model_free(m);
}

int main(int argc, char **argv) {
    g4t_parse_device(&argc, argv);
    const char *golden = g4t_require_golden();
    char model[4200];
    snprintf(model, sizeof model, "%s/tiny/checkpoint", golden);
    snprintf(image, sizeof image, "%s/media/small.png", golden);
    snprintf(audio, sizeof audio, "%s/media/speech_16k.wav", golden);
    check_model(model, "float checkpoint");
    /* The same model quantized (4 and 6 bits): the CPU's one-row, few-row and panel kernels all take part. The CUDA
     * quantized kernels make no such promise yet. */
    if (strcmp(g4t_device, "cpu") != 0) return g4t_finish("test_batch");
    char dir[] = "/tmp/g4_batch_XXXXXX", path[4300], err[512];
    CHECK(mkdtemp(dir) != NULL, "temporary directory: %s", strerror(errno));
    snprintf(path, sizeof path, "%s/q4mix.gguf", dir);
    gemma4c_convert_params cp = {.quant = "q4-mix", .no_calibration = 1};
    if (gemma4c_convert(model, path, &cp, err, sizeof err) == 0) check_model(path, "q4-mix conversion");
    else CHECK(0, "convert: %s", err);
    unlink(path);
    rmdir(dir);
    return g4t_finish("test_batch");
}
