/* test_api.c — every function of the public API on the golden tiny model: results, errors, misuse, threads, state. */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>

#include "gemma4c.h"
#include "golden_util.h"

static const char *golden;
/* KV bytes of a sequence shorter than one page of G4_KV_PAGE (64) positions and the sliding window's slack. */
#define G4_KV_BYTES(i) (64 * ((i).kv_bytes_per_token + (i).kv_bytes_per_window_token))
static char tiny[4200];

/* ---- helpers ------------------------------------------------------------------------------------------------ */

typedef struct collected {
    int32_t ids[4096];
    int n;
    char text[1 << 16];
    size_t len;
    int stop_after; /* return non-zero at this many tokens (0: never) */
    float logprob[64], top_logprob[64];
    int32_t top_id[64];
    int n_top;
} collected;

static int collect(void *user, const gemma4c_token *t) {
    collected *c = user;
    if (t->id >= 0 && c->n < 4096) {
        if (c->n < 64) {
            c->logprob[c->n] = t->logprob;
            c->top_logprob[c->n] = t->n_top ? t->top[0].logprob : 0;
            c->top_id[c->n] = t->n_top ? t->top[0].id : -1;
            c->n_top = t->n_top;
            for (int i = 1; i < t->n_top; i++)
                if (t->top[i].logprob > t->top[i - 1].logprob) c->n_top = -1; /* not sorted */
        }
        c->ids[c->n++] = t->id;
    }
    if (c->len + t->text_len < sizeof c->text) {
        memcpy(c->text + c->len, t->text, t->text_len);
        c->len += t->text_len;
    }
    return c->stop_after && c->n >= c->stop_after;
}

/* Records every position's logits (and can force a token by biasing them). */
typedef struct logit_log {
    float *rows; /* [cap][vocab] */
    int n, cap, vocab;
    const int32_t *force; /* force[i] >= 0: make that token win at step i */
    int n_force;
} logit_log;

static int log_logits(void *user, float *logits, int vocab) {
    logit_log *l = user;
    if (l->rows && l->n < l->cap) memcpy(l->rows + (size_t)l->n * (size_t)vocab, logits, (size_t)vocab * sizeof(float));
    if (l->force && l->n < l->n_force && l->force[l->n] >= 0) logits[l->force[l->n]] += 1000;
    l->n++;
    return 0;
}

static gemma4c_model *load(const char *model, int threads, int batch, int64_t budget) {
    gemma4c_model_params p = {model, NULL, threads, batch, budget};
    gemma4c_model *m = NULL;
    char err[512];
    if (gemma4c_model_load(&p, &m, err, sizeof err)) CHECK(0, "load %s: %s", model, err);
    return m;
}

static gemma4c_session *session(gemma4c_model *m, int64_t n_ctx) {
    gemma4c_session_params p = {n_ctx};
    gemma4c_session *s = NULL;
    char err[512];
    if (gemma4c_session_new(m, &p, &s, err, sizeof err)) CHECK(0, "session: %s", err);
    return s;
}

/* ---- the checks --------------------------------------------------------------------------------------------- */

static void check_basics(void) {
    CHECK(strcmp(gemma4c_version(), GEMMA4C_VERSION_STRING) == 0, "version %s", gemma4c_version());
    const int codes[] = {GEMMA4C_OK, GEMMA4C_ERR_IO, GEMMA4C_ERR_FORMAT, GEMMA4C_ERR_SHAPE, GEMMA4C_ERR_NOMEM, GEMMA4C_ERR_ARG,
                         GEMMA4C_ERR_UNSUPPORTED, GEMMA4C_ERR_CONTEXT, GEMMA4C_ERR_INTERNAL, GEMMA4C_ERR_CANCELLED,
                         GEMMA4C_ERR_BUSY, GEMMA4C_ERR_CAPACITY, -1000};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        CHECK(gemma4c_status_name(codes[i]) && *gemma4c_status_name(codes[i]), "status %d has no name", codes[i]);
    CHECK(strcmp(gemma4c_status_name(GEMMA4C_ERR_CAPACITY), "KV budget exhausted") == 0, "capacity name");
    gemma4c_free(NULL);
    gemma4c_model_free(NULL);
    gemma4c_session_free(NULL);
    gemma4c_cancel(NULL);
    gemma4c_features_free(NULL);

    char err[512];
    gemma4c_model *m = (gemma4c_model *)&err; /* must be set to NULL on failure */
    gemma4c_model_params bad = {"/nonexistent/model", NULL, 1, 0, 0};
    CHECK(gemma4c_model_load(&bad, &m, err, sizeof err) == GEMMA4C_ERR_IO && m == NULL, "bad path loaded");
    CHECK(strstr(err, "/nonexistent/model") != NULL, "message names the path: %s", err);
    CHECK(gemma4c_model_load(&bad, NULL, err, sizeof err) == GEMMA4C_ERR_ARG, "NULL out accepted");
    gemma4c_model_params neg = {tiny, NULL, -3, 0, 0};
    CHECK(gemma4c_model_load(&neg, &m, err, sizeof err) == GEMMA4C_ERR_ARG, "negative threads accepted");
    gemma4c_model_params shape = {"synthetic:e9b", NULL, 1, 0, 0};
    CHECK(gemma4c_model_load(&shape, &m, err, sizeof err) == GEMMA4C_ERR_ARG && strstr(err, "e9b"), "%s", err);
    gemma4c_model_params quant = {tiny, "q4", 1, 0, 0};
    CHECK(gemma4c_model_load(&quant, &m, err, sizeof err) == GEMMA4C_ERR_ARG, "synthetic_quant on a checkpoint");
    /* A device is cpu or cuda; one this build or machine lacks is an error naming it, never the CPU instead. */
    gemma4c_model_params tpu = {.model = tiny, .n_threads = 1, .device = "tpu"};
    CHECK(gemma4c_model_load(&tpu, &m, err, sizeof err) == GEMMA4C_ERR_ARG && m == NULL && strstr(err, "tpu"), "%s", err);
    gemma4c_model_params cuda = {.model = tiny, .n_threads = 1, .device = "cuda"};
    int rc = gemma4c_model_load(&cuda, &m, err, sizeof err);
    if (rc == 0) {
        gemma4c_model_info info;
        CHECK(gemma4c_model_get_info(m, &info) == 0 && strcmp(info.device, "cuda") == 0, "a CUDA model says so");
        gemma4c_model_free(m);
    } else {
        CHECK(rc == GEMMA4C_ERR_UNSUPPORTED && m == NULL && strstr(err, "device cuda: "), "no CUDA: rc %d, %s", rc, err);
    }
    char small_err[8];
    CHECK(gemma4c_model_load(&bad, &m, small_err, sizeof small_err) == GEMMA4C_ERR_IO && strlen(small_err) == 7,
          "the message is cut to the buffer");
    CHECK(gemma4c_read_bandwidth(1, (size_t)1 << 20, 1) > 0, "bandwidth probe");
    CHECK(gemma4c_read_bandwidth(-1, 1, 1) == 0 && gemma4c_read_bandwidth(1, 0, 1) == 0, "probe arguments");
}

static void check_model_facts(gemma4c_model *m) {
    gemma4c_model_info info;
    CHECK(gemma4c_model_get_info(NULL, &info) == GEMMA4C_ERR_ARG && gemma4c_model_get_info(m, NULL) == GEMMA4C_ERR_ARG,
          "info NULLs");
    CHECK(gemma4c_model_get_info(m, &info) == 0, "info");
    CHECK(info.vocab_size == 512 && info.hidden_size == 64 && info.n_layers == 8 && info.sliding_window == 8, "shape");
    CHECK(!info.synthetic && info.byte_level_tokenizer && info.has_vision && info.has_audio, "facts");
    CHECK(info.n_threads == 2 && info.n_batch == 16 && info.kv_budget_bytes == 0, "settings %d %d", info.n_threads, info.n_batch);
    CHECK(info.kv_bytes_per_token > 0 && info.kv_bytes_per_window_token > 0 && info.weight_bytes_per_token > 0, "bytes");
    CHECK(strcmp(info.weight_type, "BF16") == 0 && info.kernels && *info.kernels, "weights %s", info.weight_type);
    gemma4c_special_tokens st;
    CHECK(gemma4c_special_tokens_get(m, &st) == 0 && gemma4c_special_tokens_get(NULL, &st) == GEMMA4C_ERR_ARG, "special");
    CHECK(st.bos == 2 && st.pad == 0 && st.eos == 1 && st.image == 502 && st.video == 503 && st.audio == 506, "ids");
    CHECK(st.image_begin == 500 && st.image_end == 501 && st.audio_begin == 504 && st.audio_end == 505, "media markers");
    CHECK(st.turn_begin == 105 && st.turn_end == 106 && st.n_stop == 1 && st.stop[0] == 1, "turn markers");
    gemma4c_sampling s;
    gemma4c_sampling_from_model(m, &s);
    CHECK(s.repetition_penalty >= 1 && s.top_p > 0 && s.top_p <= 1, "model sampling");
    gemma4c_stats stats;
    CHECK(gemma4c_model_stats(m, &stats) == 0 && stats.active == 0 && stats.kv_bytes == 0, "fresh stats");
}

static void check_text(gemma4c_model *m) {
    char err[512], text[256];
    int32_t ids[64];
    size_t n = 0, len = 0;
    CHECK(gemma4c_tokenize(m, "<|turn>user\n", 12, 0, ids, 64, &n, err, sizeof err) == 0, "%s", err);
    CHECK(n == 6 && ids[0] == 105 && ids[1] == 238 + 'u', "byte-level ids: n=%zu first=%d", n, ids[0]);
    CHECK(gemma4c_tokenize(m, "<|turn>user\n", 12, 1, NULL, 0, &n, err, sizeof err) == 0 && n == 7, "size query with bos");
    CHECK(gemma4c_tokenize(m, "<|turn>user\n", 12, 1, ids, 2, &n, err, sizeof err) == 0 && n == 7 && ids[0] == 2 &&
              ids[1] == 105,
          "truncated ids");
    CHECK(gemma4c_tokenize(m, NULL, 0, 0, ids, 64, &n, err, sizeof err) == GEMMA4C_ERR_ARG, "NULL text");
    CHECK(gemma4c_tokenize(m, "a", 1, 0, NULL, 5, &n, err, sizeof err) == GEMMA4C_ERR_ARG, "NULL ids with room");
    int32_t hello[] = {105, 238 + 'h', 238 + 'i'};
    CHECK(gemma4c_detokenize(m, hello, 3, 0, text, sizeof text, &len, err, sizeof err) == 0 && len == 9 &&
              strcmp(text, "<|turn>hi") == 0,
          "detokenize: %s", text);
    CHECK(gemma4c_detokenize(m, hello, 3, 1, text, sizeof text, &len, err, sizeof err) == 0 && strcmp(text, "hi") == 0,
          "skip special: %s", text);
    CHECK(gemma4c_detokenize(m, hello, 3, 0, text, 4, &len, err, sizeof err) == 0 && len == 9 && strcmp(text, "<|t") == 0,
          "cut to the buffer: %s", text);
    int32_t outside[] = {2, 512};
    CHECK(gemma4c_detokenize(m, outside, 2, 0, text, sizeof text, &len, err, sizeof err) == GEMMA4C_ERR_ARG, "id 512");
    CHECK(gemma4c_token_to_piece(m, 238 + 0xC3, text, sizeof text, &len, err, sizeof err) == 0 && len == 1 &&
              (unsigned char)text[0] == 0xC3,
          "a byte token is its byte");
    CHECK(gemma4c_token_to_piece(m, -1, text, sizeof text, &len, err, sizeof err) == GEMMA4C_ERR_ARG, "id -1");
    char *prompt = NULL;
    CHECK(gemma4c_render_chat(m, "[{\"role\":\"user\",\"content\":\"Hello\"}]", NULL, 0, &prompt, err, sizeof err) == 0, "%s", err);
    CHECK(prompt && strcmp(prompt, "<bos><|turn>user\nHello<turn|>\n<|turn>model\n") == 0, "rendered: %s", prompt);
    gemma4c_free(prompt);
    CHECK(gemma4c_render_chat(m, "[{\"role\":\"user\",\"content\":\"Hi\"}]", NULL, 1, &prompt, err, sizeof err) == 0 &&
              strstr(prompt, "<|think|>"),
          "thinking: %s", prompt);
    gemma4c_free(prompt);
    CHECK(gemma4c_render_chat(m, "[{\"role\":", NULL, 0, &prompt, err, sizeof err) == GEMMA4C_ERR_ARG && !prompt, "bad JSON");
    CHECK(gemma4c_render_chat(m, "[{\"role\":\"robot\",\"content\":\"x\"}]", NULL, 0, &prompt, err, sizeof err) != 0,
          "unknown role accepted");
    CHECK(gemma4c_render_chat(m, "[]", "{not json", 0, &prompt, err, sizeof err) == GEMMA4C_ERR_ARG, "bad tools");

    /* Inputs to ids: a chat, a raw prompt, ids as they are. */
    int32_t *out = NULL;
    gemma4c_input chat = {.messages_json = "[{\"role\":\"user\",\"content\":\"Hello\"}]"};
    CHECK(gemma4c_input_ids(m, &chat, &out, &n, err, sizeof err) == 0 && n == 21 && out[0] == 2 && out[1] == 105, "chat ids");
    gemma4c_free(out);
    gemma4c_input raw = {.prompt = "hi"};
    CHECK(gemma4c_input_ids(m, &raw, &out, &n, err, sizeof err) == 0 && n == 3 && out[0] == 2 && out[2] == 238 + 'i', "raw");
    gemma4c_free(out);
    gemma4c_input both = {.prompt = "hi", .ids = hello, .n_ids = 3};
    CHECK(gemma4c_input_ids(m, &both, &out, &n, err, sizeof err) == GEMMA4C_ERR_ARG && strstr(err, "exactly one"), "%s", err);
    gemma4c_input none = {0};
    CHECK(gemma4c_input_ids(m, &none, &out, &n, err, sizeof err) == GEMMA4C_ERR_ARG, "empty input");
    gemma4c_input no_media = {.ids = hello, .n_ids = 3, .n_media = 1};
    CHECK(gemma4c_input_ids(m, &no_media, &out, &n, err, sizeof err) == GEMMA4C_ERR_ARG, "n_media without media");
    gemma4c_input part = {.messages_json = "[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]}]"};
    CHECK(gemma4c_input_ids(m, &part, &out, &n, err, sizeof err) == GEMMA4C_ERR_ARG && strstr(err, "media parts"), "%s", err);
    int32_t placeholders[] = {2, 502, 502, 506, 503};
    gemma4c_input bare = {.ids = placeholders, .n_ids = 5};
    CHECK(gemma4c_input_ids(m, &bare, &out, &n, err, sizeof err) == 0 && n == 5, "placeholder ids without media: %s", err);
    gemma4c_free(out);
    gemma4c_media bad_kind = {7, "x.png", NULL, 0, 0};
    gemma4c_input weird = {.ids = placeholders, .n_ids = 5, .media = &bad_kind, .n_media = 1};
    CHECK(gemma4c_input_ids(m, &weird, &out, &n, err, sizeof err) == GEMMA4C_ERR_ARG && strstr(err, "kind"), "%s", err);
    gemma4c_media missing = {GEMMA4C_MEDIA_IMAGE, "/nonexistent.png", NULL, 0, 0};
    gemma4c_input gone = {.prompt = "<|image|>", .media = &missing, .n_media = 1};
    CHECK(gemma4c_input_ids(m, &gone, &out, &n, err, sizeof err) != 0 && strstr(err, "/nonexistent.png"), "%s", err);
}

/* Greedy generation equals the reference's continuation, logit for logit; the cache is reused on a repeat. */
static void check_golden_greedy(gemma4c_model *m) {
    char path[4300], err[512];
    snprintf(path, sizeof path, "%s/tiny/reference/text.safetensors", golden);
    g4_err e = {0};
    g4_st_file *ref;
    if (g4_st_open(path, &ref, &e)) {
        CHECK(0, "%s", e.msg);
        return;
    }
    int64_t T, n_greedy, one;
    int32_t *ids = g4t_tensor_i32(ref, "input_ids", &T);
    int32_t *want = g4t_tensor_i32(ref, "greedy_ids", &n_greedy);
    int32_t *plen = g4t_tensor_i32(ref, "greedy_prompt_len", &one);
    float *want_steps = g4t_tensor_f32(ref, "greedy_step_logits", NULL);
    float *want_logits = g4t_tensor_f32(ref, "logits", NULL);
    gemma4c_session *s = session(m, 256);
    logit_log log = {calloc((size_t)(n_greedy + 1) * 512, sizeof(float)), 0, (int)n_greedy + 1, 512, NULL, 0};
    gemma4c_generate_options o = {.max_tokens = (int)n_greedy, .ignore_eos = 1, .on_logits = log_logits, .logits_user = &log};
    gemma4c_input in = {.ids = ids, .n_ids = (size_t)plen[0]};
    collected c = {0};
    gemma4c_result r;
    CHECK(gemma4c_generate(s, &in, &o, collect, &c, &r, err, sizeof err) == 0, "%s", err);
    int same = 0;
    for (int i = 0; i < n_greedy && i < c.n; i++) same += c.ids[i] == want[i];
    CHECK(c.n == n_greedy && same == n_greedy, "greedy ids: %d/%lld identical", same, (long long)n_greedy);
    /* logits before token i+1 = the reference's step logits after feeding token i */
    double worst = 0;
    for (int64_t i = 1; i < n_greedy; i++) worst = fmax(worst, g4t_rel_err(log.rows + i * 512, want_steps + (i - 1) * 512, 512));
    worst = fmax(worst, g4t_rel_err(log.rows, want_logits + (plen[0] - 1) * 512, 512));
    printf("greedy through the API: %d/%lld ids, logits rel err %.2e\n", same, (long long)n_greedy, worst);
    CHECK(worst <= 1e-4, "step logits rel err %.3e", worst);
    CHECK(r.stop_reason == GEMMA4C_STOP_LENGTH && r.generated_tokens == n_greedy && r.prompt_tokens == plen[0] &&
              r.cached_tokens == 0,
          "result: reason %d, %lld generated, %lld prompt, %lld cached", r.stop_reason, (long long)r.generated_tokens,
          (long long)r.prompt_tokens, (long long)r.cached_tokens);
    CHECK(r.first_token_seconds > 0 && r.decode_seconds > 0 && r.prefill_seconds > 0 && r.queue_seconds >= 0, "timings");
    /* The session holds prompt + all answer tokens but the last. */
    int32_t held[128];
    CHECK(gemma4c_session_tokens(s, held, 128) == plen[0] + n_greedy - 1 && held[plen[0]] == want[0], "held tokens");
    gemma4c_stats st;
    gemma4c_model_info info;
    gemma4c_model_stats(m, &st);
    gemma4c_model_get_info(m, &info);
    CHECK(st.kv_bytes == G4_KV_BYTES(info) && st.decode_rows >= n_greedy - 1 && st.steps > 0, "KV held: %lld bytes",
          (long long)st.kv_bytes);
    /* The same prompt again: all but its last token come from the cache; the answer is the same. */
    collected c2 = {0};
    log.n = 0;
    CHECK(gemma4c_generate(s, &in, &o, collect, &c2, &r, err, sizeof err) == 0, "%s", err);
    CHECK(r.cached_tokens == plen[0] - 1 && c2.n == c.n && memcmp(c2.ids, c.ids, (size_t)c.n * 4) == 0,
          "warm cache: %lld cached", (long long)r.cached_tokens);
    /* Zeroed options (and NULL options) are valid: greedy to the end of the context or a stop id. */
    collected c3 = {0};
    c3.stop_after = 5;
    CHECK(gemma4c_generate(s, &in, NULL, collect, &c3, &r, err, sizeof err) == 0 && r.stop_reason == GEMMA4C_STOP_CANCELLED &&
              memcmp(c3.ids, c.ids, 5 * 4) == 0,
          "NULL options are greedy");
    /* Every position's logits through the API equal the reference. */
    float *all = malloc((size_t)(T * 512) * sizeof(float));
    CHECK(gemma4c_logits(s, ids, (size_t)T, NULL, 0, all, err, sizeof err) == 0, "%s", err);
    double rel = g4t_rel_err(all, want_logits, T * 512);
    CHECK(rel <= 1e-4, "API logits rel err %.3e", rel);
    CHECK(gemma4c_session_tokens(s, NULL, 0) == T, "gemma4c_logits leaves the sequence in the session");
    int32_t too_big[] = {2, 512};
    CHECK(gemma4c_logits(s, too_big, 2, NULL, 0, all, err, sizeof err) == GEMMA4C_ERR_ARG, "id outside the vocabulary");
    CHECK(gemma4c_logits(s, ids, 0, NULL, 0, all, err, sizeof err) == GEMMA4C_ERR_ARG, "no ids");
    CHECK(gemma4c_logits(NULL, ids, 2, NULL, 0, all, err, sizeof err) == GEMMA4C_ERR_ARG, "NULL session");
    gemma4c_session *small = session(m, 16);
    CHECK(gemma4c_logits(small, ids, (size_t)T, NULL, 0, all, err, sizeof err) == GEMMA4C_ERR_CONTEXT, "longer than n_ctx");
    gemma4c_session_free(small);
    free(all);
    free(log.rows);
    gemma4c_session_free(s);
    free(ids), free(want), free(plen), free(want_steps), free(want_logits);
    g4_st_close(ref);
}

static void check_stops(gemma4c_model *m) {
    char err[512];
    gemma4c_session *s = session(m, 64);
    int32_t prompt[] = {2, 105, 300, 107};
    gemma4c_input in = {.ids = prompt, .n_ids = 4};
    gemma4c_result r;
    /* a stop id at the third position (forced through the logits hook) */
    const int32_t eos_at_2[] = {-1, -1, 1};
    logit_log force = {NULL, 0, 0, 512, eos_at_2, 3};
    gemma4c_generate_options o = {.max_tokens = 20, .on_logits = log_logits, .logits_user = &force};
    collected c = {0};
    CHECK(gemma4c_generate(s, &in, &o, collect, &c, &r, err, sizeof err) == 0, "%s", err);
    CHECK(r.stop_reason == GEMMA4C_STOP_EOS && r.stop_id == 1 && r.generated_tokens == 2 && c.n == 2, "stop id: %d %lld",
          r.stop_reason, (long long)r.generated_tokens);
    /* ... unless ignore_eos */
    force.n = 0;
    o.ignore_eos = 1;
    CHECK(gemma4c_generate(s, &in, &o, NULL, NULL, &r, err, sizeof err) == 0 && r.stop_reason == GEMMA4C_STOP_LENGTH &&
              r.generated_tokens == 20,
          "ignore_eos");
    /* a stop string, never emitted */
    const int32_t spell[] = {238 + 'a', 238 + 'b', 238 + 'S', 238 + 'T', 238 + 'O', 238 + 'P', 238 + 'z'};
    logit_log word = {NULL, 0, 0, 512, spell, 7};
    const char *stops[] = {"nope", "STOP"};
    gemma4c_generate_options so = {.max_tokens = 20, .stop = stops, .n_stop = 2, .on_logits = log_logits, .logits_user = &word};
    collected t = {0};
    CHECK(gemma4c_generate(s, &in, &so, collect, &t, &r, err, sizeof err) == 0, "%s", err);
    CHECK(r.stop_reason == GEMMA4C_STOP_STRING && r.stop_string == 1 && t.len == 2 && memcmp(t.text, "ab", 2) == 0 &&
              r.generated_tokens == 6,
          "stop string: reason %d, text '%.*s'", r.stop_reason, (int)t.len, t.text);
    /* the end of the context: 64 positions, 4 of them the prompt */
    gemma4c_generate_options forever = {.ignore_eos = 1};
    CHECK(gemma4c_generate(s, &in, &forever, NULL, NULL, &r, err, sizeof err) == 0, "%s", err);
    CHECK(r.stop_reason == GEMMA4C_STOP_CONTEXT && r.generated_tokens == 61 && gemma4c_session_tokens(s, NULL, 0) == 64,
          "context: %d after %lld", r.stop_reason, (long long)r.generated_tokens);
    /* the callback says stop */
    collected three = {0};
    three.stop_after = 3;
    CHECK(gemma4c_generate(s, &in, &forever, collect, &three, &r, err, sizeof err) == 0 && r.stop_reason == GEMMA4C_STOP_CANCELLED &&
              three.n == 3,
          "caller stop: %d, %d tokens", r.stop_reason, three.n);
    /* prompts that do not fit, bad options */
    int32_t long_prompt[80];
    for (int i = 0; i < 80; i++) long_prompt[i] = 2;
    gemma4c_input too_long = {.ids = long_prompt, .n_ids = 80};
    CHECK(gemma4c_generate(s, &too_long, NULL, NULL, NULL, &r, err, sizeof err) == GEMMA4C_ERR_CONTEXT && strstr(err, "context"),
          "long prompt: %s", err);
    gemma4c_generate_options hot = {.sampling = {.temperature = -1}};
    CHECK(gemma4c_generate(s, &in, &hot, NULL, NULL, &r, err, sizeof err) == GEMMA4C_ERR_ARG, "negative temperature");
    gemma4c_generate_options many = {.top_logprobs = 21};
    CHECK(gemma4c_generate(s, &in, &many, NULL, NULL, &r, err, sizeof err) == GEMMA4C_ERR_ARG, "21 top logprobs");
    gemma4c_generate_options keep = {.keep_special = GEMMA4C_KEEP_MARKERS + 1};
    CHECK(gemma4c_generate(s, &in, &keep, NULL, NULL, &r, err, sizeof err) == GEMMA4C_ERR_ARG && strstr(err, "keep_special"),
          "keep_special out of range: %s", err);
    gemma4c_generate_options nostop = {.n_stop = 1};
    CHECK(gemma4c_generate(s, &in, &nostop, NULL, NULL, &r, err, sizeof err) == GEMMA4C_ERR_ARG, "n_stop without stop");
    CHECK(gemma4c_generate(NULL, &in, NULL, NULL, NULL, &r, err, sizeof err) == GEMMA4C_ERR_ARG, "NULL session");
    CHECK(gemma4c_generate(s, NULL, NULL, NULL, NULL, &r, err, sizeof err) == GEMMA4C_ERR_ARG, "NULL input");
    /* after all those errors the session works */
    CHECK(gemma4c_generate(s, &in, &o, NULL, NULL, &r, err, sizeof err) == 0, "%s", err);
    gemma4c_session_free(s);
}

static void check_sampling_and_logprobs(gemma4c_model *m) {
    char err[512];
    gemma4c_session *s = session(m, 128);
    int32_t prompt[] = {2, 105, 300, 107};
    gemma4c_input in = {.ids = prompt, .n_ids = 4};
    gemma4c_generate_options o = {.max_tokens = 12, .logprobs = 1, .top_logprobs = 5};
    collected g = {0};
    CHECK(gemma4c_generate(s, &in, &o, collect, &g, NULL, err, sizeof err) == 0, "%s", err);
    int ok = g.n == 12 && g.n_top == 5;
    for (int i = 0; i < g.n; i++)
        ok &= g.top_id[i] == g.ids[i] && fabsf(g.logprob[i] - g.top_logprob[i]) < 1e-6f && g.logprob[i] <= 0;
    CHECK(ok, "greedy logprobs: the chosen token is the top alternative, sorted, <= 0");
    gemma4c_generate_options warm = {.max_tokens = 12, .sampling = {.temperature = 1.0f, .top_k = 40, .top_p = 0.9f, .seed = 7}};
    collected a = {0}, b = {0}, other = {0};
    CHECK(gemma4c_generate(s, &in, &warm, collect, &a, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(gemma4c_generate(s, &in, &warm, collect, &b, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(a.n == 12 && b.n == 12 && memcmp(a.ids, b.ids, 12 * 4) == 0, "the same seed gives the same tokens");
    warm.sampling.seed = 8;
    CHECK(gemma4c_generate(s, &in, &warm, collect, &other, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(a.ids, other.ids, 12 * 4) != 0, "another seed gives the same 12 tokens");
    gemma4c_generate_options pen = {.max_tokens = 30, .sampling = {.presence_penalty = 2, .frequency_penalty = 1}};
    collected p = {0};
    CHECK(gemma4c_generate(s, &in, &pen, collect, &p, NULL, err, sizeof err) == 0, "%s", err);
    int repeats = 0;
    for (int i = 1; i < p.n; i++) repeats += p.ids[i] == p.ids[i - 1];
    CHECK(repeats == 0, "penalised greedy repeated a token %d times", repeats);
    gemma4c_session_free(s);
}

/* The event-loop form, cancellation from another thread, misuse of the order of calls. */
static atomic_int notified;
static void notify(void *user) { atomic_fetch_add(&notified, 1); }

typedef struct canceller {
    gemma4c_session *s;
    int delay_us;
} canceller;

static void *cancel_later(void *arg) {
    canceller *c = arg;
    usleep((useconds_t)c->delay_us);
    gemma4c_cancel(c->s);
    return NULL;
}

static void check_event_loop(gemma4c_model *m) {
    char err[512];
    gemma4c_session *s = session(m, 4096);
    gemma4c_event ev;
    CHECK(gemma4c_next(s, &ev, 0) == GEMMA4C_ERR_ARG, "next with nothing submitted");
    CHECK(gemma4c_next(NULL, &ev, 0) == GEMMA4C_ERR_ARG && gemma4c_next(s, NULL, 0) == GEMMA4C_ERR_ARG, "next NULLs");
    int32_t prompt[] = {2, 105, 300, 107};
    gemma4c_input in = {.ids = prompt, .n_ids = 4};
    gemma4c_generate_options o = {.max_tokens = 8, .notify = notify};
    CHECK(gemma4c_submit(s, &in, &o, err, sizeof err) == 0, "%s", err);
    CHECK(gemma4c_submit(s, &in, &o, err, sizeof err) == GEMMA4C_ERR_BUSY, "a second submit on a busy session");
    CHECK(gemma4c_session_reset(s, err, sizeof err) == GEMMA4C_ERR_BUSY && gemma4c_session_rewind(s, 0) == GEMMA4C_ERR_BUSY &&
              gemma4c_session_tokens(s, NULL, 0) == GEMMA4C_ERR_BUSY && gemma4c_session_save(s, "/tmp/x", err, sizeof err) == GEMMA4C_ERR_BUSY,
          "state calls on a busy session");
    int tokens = 0, done = 0, polls = 0;
    while (!done && polls < 100000) {
        CHECK(gemma4c_next(s, &ev, polls % 2 ? 0 : 50) == 0, "next");
        polls++;
        if (ev.type == GEMMA4C_EVENT_TOKEN) tokens += ev.token.id >= 0;
        if (ev.type == GEMMA4C_EVENT_DONE) {
            done = 1;
            CHECK(ev.status == 0 && ev.result.generated_tokens == 8 && *ev.error == 0, "done: %s", ev.error);
        }
    }
    CHECK(done && tokens == 8 && atomic_load(&notified) >= 9, "8 tokens, %d notifications", atomic_load(&notified));
    CHECK(gemma4c_next(s, &ev, 0) == GEMMA4C_ERR_ARG, "next after the end");
    /* cancellation from another thread, within a step: an endless request ends quickly */
    gemma4c_generate_options endless = {.ignore_eos = 1};
    pthread_t th;
    canceller cc = {s, 20000};
    pthread_create(&th, NULL, cancel_later, &cc);
    gemma4c_result r;
    CHECK(gemma4c_generate(s, &in, &endless, NULL, NULL, &r, err, sizeof err) == 0, "%s", err);
    pthread_join(th, NULL);
    CHECK(r.stop_reason == GEMMA4C_STOP_CANCELLED && r.generated_tokens < 4000, "cancelled after %lld tokens",
          (long long)r.generated_tokens);
    gemma4c_cancel(s); /* idle: nothing happens, and the next request is not affected */
    CHECK(gemma4c_generate(s, &in, &o, NULL, NULL, &r, err, sizeof err) == 0 && r.stop_reason == GEMMA4C_STOP_LENGTH,
          "a request after a cancel on an idle session");
    /* freeing a session with a request running cancels it */
    CHECK(gemma4c_submit(s, &in, &endless, err, sizeof err) == 0, "%s", err);
    gemma4c_session_free(s);
    gemma4c_stats st;
    gemma4c_model_stats(m, &st);
    CHECK(st.active == 0 && st.kv_bytes == 0, "a freed session holds nothing: %d active, %lld bytes", st.active,
          (long long)st.kv_bytes);
}

/* A session encoding media does not stall one that is generating; a cancel during encoding ends it. */
static void check_media_interleave(gemma4c_model *m) {
    char err[512], video[4300];
    snprintf(video, sizeof video, "%s/media/clip.mp4", golden);
    gemma4c_session *a = session(m, 4096), *b = session(m, 4096);
    int32_t prompt[] = {2, 105, 300, 107};
    gemma4c_input text = {.ids = prompt, .n_ids = 4};
    gemma4c_media clip = {GEMMA4C_MEDIA_VIDEO, video, NULL, 0, 0};
    gemma4c_input watch = {.messages_json = "[{\"role\":\"user\",\"content\":[{\"type\":\"video\"}]}]", .media = &clip, .n_media = 1};
    gemma4c_generate_options endless = {.ignore_eos = 1}, two = {.max_tokens = 2};
    gemma4c_event ev;
    CHECK(gemma4c_submit(a, &text, &endless, err, sizeof err) == 0, "%s", err);
    for (int got = 0; got < 3 && gemma4c_next(a, &ev, -1) == 0;) got += ev.type == GEMMA4C_EVENT_TOKEN;
    CHECK(gemma4c_submit(b, &watch, &two, err, sizeof err) == 0, "%s", err);
    int a_tokens = 0, b_first = 0;
    while (!b_first) {
        while (gemma4c_next(a, &ev, 0) == 0 && ev.type == GEMMA4C_EVENT_TOKEN) a_tokens++;
        if (gemma4c_next(b, &ev, 1) || ev.type == GEMMA4C_EVENT_DONE) break;
        b_first = ev.type == GEMMA4C_EVENT_TOKEN;
    }
    CHECK(b_first, "the video request ended before its first token: %s", ev.error);
    printf("while 32 video frames were encoded for one session, another generated %d tokens\n", a_tokens);
    CHECK(a_tokens > 0, "a session encoding a video stalled the one generating");
    gemma4c_cancel(a);
    while (gemma4c_next(a, &ev, -1) == 0 && ev.type != GEMMA4C_EVENT_DONE) {}
    CHECK(ev.result.stop_reason == GEMMA4C_STOP_CANCELLED, "cancelled endless request");
    while (gemma4c_next(b, &ev, -1) == 0 && ev.type != GEMMA4C_EVENT_DONE) {}
    CHECK(ev.status == 0 && ev.result.generated_tokens == 2 && ev.result.media_tokens == 32 * 63 && ev.result.media_seconds > 0,
          "video request: %s, %lld media tokens", ev.error, (long long)ev.result.media_tokens);
    /* cancelled while its media are encoded (or before): it ends at once, with no tokens */
    gemma4c_session_reset(b, NULL, 0);
    CHECK(gemma4c_submit(b, &watch, &two, err, sizeof err) == 0, "%s", err);
    gemma4c_cancel(b);
    while (gemma4c_next(b, &ev, -1) == 0 && ev.type != GEMMA4C_EVENT_DONE) {}
    CHECK(ev.status == 0 && ev.result.stop_reason == GEMMA4C_STOP_CANCELLED && ev.result.generated_tokens == 0,
          "cancel during encoding: status %d, reason %d", ev.status, ev.result.stop_reason);
    gemma4c_session_free(a);
    gemma4c_session_free(b);
}

/* Rewind, reset, save and load: a restored session continues bit for bit. */
static void check_state(gemma4c_model *m) {
    char err[512], path[] = "/tmp/g4stateXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    gemma4c_session *s = session(m, 256);
    int32_t prompt[40];
    for (int i = 0; i < 40; i++) prompt[i] = i ? 3 + (i * 37) % 500 : 2;
    gemma4c_input in = {.ids = prompt, .n_ids = 40};
    gemma4c_generate_options o = {.max_tokens = 10, .ignore_eos = 1};
    CHECK(gemma4c_generate(s, &in, &o, NULL, NULL, NULL, err, sizeof err) == 0, "%s", err);
    int32_t held[64];
    const int64_t n = gemma4c_session_tokens(s, held, 64);
    CHECK(n == 49, "held %lld", (long long)n);
    CHECK(gemma4c_session_save(s, path, err, sizeof err) == 0, "%s", err);
    /* continuing: 20 more tokens after the conversation, logits recorded */
    int32_t more[50];
    memcpy(more, held, 49 * 4);
    more[49] = 7;
    gemma4c_input cont = {.ids = more, .n_ids = 50};
    logit_log la = {calloc(21 * 512, 4), 0, 21, 512, NULL, 0}, lb = {calloc(21 * 512, 4), 0, 21, 512, NULL, 0};
    gemma4c_generate_options rec = {.max_tokens = 20, .ignore_eos = 1, .on_logits = log_logits, .logits_user = &la};
    gemma4c_result ra, rb;
    collected ca = {0}, cb = {0};
    CHECK(gemma4c_generate(s, &cont, &rec, collect, &ca, &ra, err, sizeof err) == 0 && ra.cached_tokens == 49, "%s", err);
    gemma4c_session *t = session(m, 256);
    CHECK(gemma4c_session_load(t, path, err, sizeof err) == 0, "%s", err);
    CHECK(gemma4c_session_tokens(t, NULL, 0) == 49, "loaded tokens");
    rec.logits_user = &lb;
    CHECK(gemma4c_generate(t, &cont, &rec, collect, &cb, &rb, err, sizeof err) == 0 && rb.cached_tokens == 49, "%s", err);
    CHECK(ca.n == 20 && cb.n == 20 && memcmp(ca.ids, cb.ids, 20 * 4) == 0 && memcmp(la.rows, lb.rows, 21 * 512 * 4) == 0,
          "a restored session continues bit for bit");
    /* rewind and reset */
    CHECK(gemma4c_session_rewind(t, 45) == 45 && gemma4c_session_tokens(t, NULL, 0) == 45, "rewind to 45");
    CHECK(gemma4c_session_rewind(t, 1000) == 45 && gemma4c_session_rewind(t, -1) == GEMMA4C_ERR_ARG, "rewind bounds");
    CHECK(gemma4c_session_reset(t, err, sizeof err) == 0 && gemma4c_session_tokens(t, NULL, 0) == 0, "reset");
    /* hostile files: truncated, corrupted, of another model, too long for the session; nothing changes */
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *bytes = malloc((size_t)size);
    CHECK(fread(bytes, 1, (size_t)size, f) == (size_t)size, "read back");
    fclose(f);
    char bad[] = "/tmp/g4badXXXXXX";
    fd = mkstemp(bad);
    CHECK(write(fd, bytes, (size_t)size / 2) == size / 2, "write");
    close(fd);
    CHECK(gemma4c_session_load(s, bad, err, sizeof err) == GEMMA4C_ERR_FORMAT && strstr(err, "truncated"), "half a file: %s", err);
    bytes[size - 100] ^= 1;
    f = fopen(bad, "wb");
    fwrite(bytes, 1, (size_t)size, f);
    fclose(f);
    CHECK(gemma4c_session_load(s, bad, err, sizeof err) == GEMMA4C_ERR_FORMAT && strstr(err, "corrupt"), "a flipped bit: %s", err);
    CHECK(gemma4c_session_tokens(s, NULL, 0) == 69, "a refused load left the session as it was");
    gemma4c_session *tight = session(m, 32);
    CHECK(gemma4c_session_load(tight, path, err, sizeof err) == GEMMA4C_ERR_CONTEXT, "a state longer than the context");
    gemma4c_session_free(tight);
    gemma4c_model *other = load("synthetic:small", 1, 0, 0);
    gemma4c_session *os = other ? session(other, 256) : NULL;
    CHECK(os && gemma4c_session_load(os, path, err, sizeof err) == GEMMA4C_ERR_FORMAT && strstr(err, "another model"),
          "a state of another model: %s", err);
    gemma4c_session_free(os);
    gemma4c_model_free(other);
    CHECK(gemma4c_session_load(s, "/nonexistent/state", err, sizeof err) == GEMMA4C_ERR_IO, "missing file");
    CHECK(gemma4c_session_save(s, "/nonexistent/dir/state", err, sizeof err) == GEMMA4C_ERR_IO, "unwritable path");
    free(bytes);
    free(la.rows), free(lb.rows);
    unlink(bad);
    unlink(path);
    gemma4c_session_free(s);
    gemma4c_session_free(t);
}

/* Encoders through the API against the reference; media errors. */
static void check_encode(gemma4c_model *m) {
    char path[4300], image[4300], audio[4300], err[512];
    snprintf(path, sizeof path, "%s/tiny/reference/vision_photo.safetensors", golden);
    snprintf(image, sizeof image, "%s/media/chelsea.png", golden);
    snprintf(audio, sizeof audio, "%s/media/speech_16k.wav", golden);
    gemma4c_session *s = session(m, 0);
    g4_err e = {0};
    g4_st_file *ref;
    if (g4_st_open(path, &ref, &e) == 0) {
        int64_t n, np;
        float *want = g4t_tensor_f32(ref, "image_features", &n);
        float *pixels = g4t_tensor_f32(ref, "pixel_values_u8", &np);
        gemma4c_media img = {GEMMA4C_MEDIA_IMAGE, image, NULL, 0, 0};
        gemma4c_features *f = NULL;
        CHECK(gemma4c_encode(s, &img, &f, err, sizeof err) == 0, "%s", err);
        if (f) {
            CHECK(f->kind == GEMMA4C_MEDIA_IMAGE && f->n_tokens * f->width == n && f->n_blocks == 1 && f->block_tokens[0] == f->n_tokens,
                  "image: %lld tokens", (long long)f->n_tokens);
            CHECK(f->n_tokens * f->width == n && g4t_rel_err(f->tokens, want, n) <= 1e-4, "image features");
            int exact = f->n_patches * f->patch_dim == np;
            for (int64_t i = 0; exact && i < np; i++) exact = f->pixel_values[i] == (uint8_t)pixels[i];
            CHECK(exact, "pixel values differ from the processor's");
        }
        gemma4c_features_free(f);
        free(want), free(pixels);
        g4_st_close(ref);
    }
    gemma4c_media aud = {GEMMA4C_MEDIA_AUDIO, audio, NULL, 0, 0};
    gemma4c_features *f = NULL;
    CHECK(gemma4c_encode(s, &aud, &f, err, sizeof err) == 0 && f && f->n_tokens == 170 && f->n_mel == 128 && f->n_frames > 0 &&
              f->seconds > 6.7 && f->seconds < 6.9,
          "audio: %s", err);
    gemma4c_features_free(f);
    gemma4c_media missing = {GEMMA4C_MEDIA_IMAGE, "/nonexistent.png", NULL, 0, 0}, garbage = {GEMMA4C_MEDIA_AUDIO, NULL, "RIFFxxxx", 8, 0};
    gemma4c_media budget = {GEMMA4C_MEDIA_IMAGE, image, NULL, 0, 100};
    f = (gemma4c_features *)1;
    CHECK(gemma4c_encode(s, &missing, &f, err, sizeof err) != 0 && f == NULL && strstr(err, "nonexistent"), "%s", err);
    CHECK(gemma4c_encode(s, &garbage, &f, err, sizeof err) != 0, "garbage audio encoded");
    CHECK(gemma4c_encode(s, &budget, &f, err, sizeof err) == GEMMA4C_ERR_ARG && strstr(err, "1120"), "%s", err);
    CHECK(gemma4c_encode(s, NULL, &f, err, sizeof err) == GEMMA4C_ERR_ARG, "NULL media");
    gemma4c_session_free(s);
}

/* A small KV budget: what does not fit is refused before its step; sessions within it work. */
static void check_budget(void) {
    char err[512];
    gemma4c_model *m = load(tiny, 2, 16, 1);
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    gemma4c_model_free(m);
    const int64_t page = 64 * (info.kv_bytes_per_token + info.kv_bytes_per_window_token); /* 64 positions, all layers */
    m = load(tiny, 2, 16, page);
    gemma4c_session *a = session(m, 512), *b = session(m, 512);
    int32_t prompt[100];
    for (int i = 0; i < 100; i++) prompt[i] = i ? 3 + i : 2;
    gemma4c_input small = {.ids = prompt, .n_ids = 20}, big = {.ids = prompt, .n_ids = 100};
    gemma4c_generate_options o = {.max_tokens = 5, .ignore_eos = 1};
    gemma4c_result r;
    CHECK(gemma4c_generate(a, &small, &o, NULL, NULL, &r, err, sizeof err) == 0, "%s", err);
    CHECK(gemma4c_generate(b, &small, &o, NULL, NULL, &r, err, sizeof err) == GEMMA4C_ERR_CAPACITY && strstr(err, "KV budget"),
          "a second session beyond the budget: %s", err);
    CHECK(gemma4c_generate(a, &big, &o, NULL, NULL, &r, err, sizeof err) == GEMMA4C_ERR_CAPACITY, "a prompt beyond the budget");
    CHECK(gemma4c_session_reset(a, err, sizeof err) == 0, "%s", err);
    CHECK(gemma4c_generate(b, &small, &o, NULL, NULL, &r, err, sizeof err) == 0, "after a reset the budget is free: %s", err);
    gemma4c_session_free(a);
    gemma4c_session_free(b);
    gemma4c_model_free(m);
}

/* Several threads, one blocking generate each: batched together, each equal to its solo run. */
typedef struct worker {
    gemma4c_session *s;
    int32_t prompt[16];
    int n_prompt;
    collected out;
    int rc;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    gemma4c_input in = {.ids = w->prompt, .n_ids = (size_t)w->n_prompt};
    gemma4c_generate_options o = {.max_tokens = 24, .ignore_eos = 1};
    w->rc = gemma4c_generate(w->s, &in, &o, collect, &w->out, NULL, NULL, 0);
    return NULL;
}

static void check_threads(gemma4c_model *m) {
    enum { N = 6 };
    worker solo[N], many[N];
    memset(solo, 0, sizeof solo);
    for (int i = 0; i < N; i++) {
        solo[i].n_prompt = 5 + i;
        for (int k = 0; k < solo[i].n_prompt; k++) solo[i].prompt[k] = k ? 3 + (k * 31 + i * 7) % 500 : 2;
        solo[i].s = session(m, 128);
        work(&solo[i]);
        many[i] = solo[i];
        memset(&many[i].out, 0, sizeof many[i].out);
        gemma4c_session_reset(many[i].s, NULL, 0);
    }
    pthread_t th[N];
    for (int i = 0; i < N; i++) pthread_create(&th[i], NULL, work, &many[i]);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    int same = 0;
    for (int i = 0; i < N; i++) {
        same += many[i].rc == 0 && many[i].out.n == 24 && memcmp(many[i].out.ids, solo[i].out.ids, 24 * 4) == 0;
        gemma4c_session_free(many[i].s);
    }
    CHECK(same == N, "%d of %d threads got their solo answer", same, N);
}

/* Handles released in any order; the model lives on while a session needs it. */
static void check_lifetimes(void) {
    char err[512];
    gemma4c_model *m = load(tiny, 1, 0, 0);
    gemma4c_session *s = session(m, 64);
    gemma4c_model_free(m); /* before its session */
    int32_t prompt[] = {2, 105, 300, 107};
    gemma4c_input in = {.ids = prompt, .n_ids = 4};
    gemma4c_generate_options o = {.max_tokens = 4};
    gemma4c_result r;
    CHECK(gemma4c_generate(s, &in, &o, NULL, NULL, &r, err, sizeof err) == 0 && r.generated_tokens == 4,
          "a session outlives its model's handle: %s", err);
    gemma4c_session_free(s);
    CHECK(gemma4c_session_new(NULL, NULL, &s, err, sizeof err) == GEMMA4C_ERR_ARG, "session of no model");
    m = load(tiny, 1, 0, 0);
    gemma4c_session_params huge = {1 << 30};
    CHECK(gemma4c_session_new(m, &huge, &s, err, sizeof err) == GEMMA4C_ERR_ARG && s == NULL, "n_ctx beyond the model");
    gemma4c_session_params neg = {-5};
    CHECK(gemma4c_session_new(m, &neg, &s, err, sizeof err) == GEMMA4C_ERR_ARG, "negative n_ctx");
    CHECK(gemma4c_session_new(m, NULL, NULL, err, sizeof err) == GEMMA4C_ERR_ARG, "NULL out");
    gemma4c_model_free(m);
}

/* save_tensors and convert, the API's file writers. */
static void check_files(void) {
    char dir[] = "/tmp/g4apiXXXXXX", path[4300], err[512];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    const float v[6] = {1, 2, 3, 4, 5, 6};
    const int32_t i32[2] = {7, -8};
    gemma4c_tensor t[] = {{"f", GEMMA4C_F32, 2, {2, 3}, v}, {"i", GEMMA4C_I32, 1, {2}, i32}};
    CHECK(gemma4c_save_tensors(path, t, 2, "test", err, sizeof err) == 0, "%s", err);
    g4_err e = {0};
    g4_st_file *f;
    if (g4_st_open(path, &f, &e) == 0) {
        const g4_tensor *a = g4_st_find(f, "f"), *b = g4_st_find(f, "i");
        CHECK(a && b && a->shape[1] == 3 && g4_tensor_get_f32(a, 5) == 6 && g4_tensor_get_f32(b, 1) == -8, "read back");
        g4_st_close(f);
    } else
        CHECK(0, "%s", e.msg);
    gemma4c_tensor bad = {"x", 99, 1, {1}, v};
    CHECK(gemma4c_save_tensors(path, &bad, 1, NULL, err, sizeof err) == GEMMA4C_ERR_ARG, "unknown dtype");
    gemma4c_tensor nodata = {"x", GEMMA4C_F32, 1, {3}, NULL};
    CHECK(gemma4c_save_tensors(path, &nodata, 1, NULL, err, sizeof err) == GEMMA4C_ERR_ARG, "no data");
    snprintf(path, sizeof path, "%s/tiny-q8.gguf", dir);
    gemma4c_convert_params cp = {.quant = "q8", .n_threads = 2};
    CHECK(gemma4c_convert(tiny, path, &cp, err, sizeof err) == 0, "%s", err);
    gemma4c_model *m = load(path, 2, 0, 0);
    gemma4c_model_info info;
    if (m) {
        gemma4c_model_get_info(m, &info);
        CHECK(strcmp(info.weight_type, "G4_Q8") == 0, "converted weights: %s", info.weight_type);
        gemma4c_session *s = session(m, 64);
        int32_t prompt[] = {2, 105, 300, 107};
        gemma4c_input in = {.ids = prompt, .n_ids = 4};
        gemma4c_generate_options o = {.max_tokens = 4};
        gemma4c_result r;
        CHECK(gemma4c_generate(s, &in, &o, NULL, NULL, &r, err, sizeof err) == 0 && r.generated_tokens == 4, "%s", err);
        gemma4c_session_free(s);
        gemma4c_model_free(m);
    }
    gemma4c_convert_params q9 = {.quant = "q9"};
    CHECK(gemma4c_convert(tiny, path, &q9, err, sizeof err) != 0, "unknown recipe");
    CHECK(gemma4c_convert("/nonexistent", path, NULL, err, sizeof err) == GEMMA4C_ERR_IO, "missing model");
    /* What the rounding is calibrated on: one source at most, none empty, and only for the recipes that calibrate
     * (the command line's tests compare the files each source gives). */
    const int32_t ids[] = {2, 105, 300};
    gemma4c_convert_params both = {.quant = "q4", .calibration_text = "hi", .calibration_text_len = 2,
                                   .calibration_ids = ids, .n_calibration_ids = 3};
    CHECK(gemma4c_convert(tiny, path, &both, err, sizeof err) == GEMMA4C_ERR_ARG && strstr(err, "not several"),
          "text and ids: %s", err);
    gemma4c_convert_params none_and_text = {.quant = "q4-mix", .calibration_text = "hi", .calibration_text_len = 2,
                                            .no_calibration = 1};
    CHECK(gemma4c_convert(tiny, path, &none_and_text, err, sizeof err) == GEMMA4C_ERR_ARG, "none and a text");
    gemma4c_convert_params empty = {.quant = "q4", .calibration_ids = ids, .n_calibration_ids = 0};
    CHECK(gemma4c_convert(tiny, path, &empty, err, sizeof err) == GEMMA4C_ERR_ARG && strstr(err, "empty"), "no ids: %s", err);
    gemma4c_convert_params bf16 = {.quant = "bf16", .calibration_ids = ids, .n_calibration_ids = 3};
    CHECK(gemma4c_convert(tiny, path, &bf16, err, sizeof err) == GEMMA4C_ERR_ARG && strstr(err, "not bf16"),
          "bf16 with ids: %s", err);
    const int32_t outside[] = {2, 1 << 30};
    gemma4c_convert_params far = {.quant = "q4", .calibration_ids = outside, .n_calibration_ids = 2, .n_threads = 2};
    CHECK(gemma4c_convert(tiny, path, &far, err, sizeof err) == GEMMA4C_ERR_ARG && strstr(err, "calibration: token id"),
          "an id outside the vocabulary: %s", err);
    gemma4c_convert_params own = {.quant = "q4", .calibration_ids = ids, .n_calibration_ids = 3, .n_threads = 2};
    CHECK(gemma4c_convert(tiny, path, &own, err, sizeof err) == 0, "q4 calibrated on 3 ids: %s", err);
    g4t_rm_tree(dir);
}

int main(void) {
    golden = g4t_require_golden();
    snprintf(tiny, sizeof tiny, "%s/tiny/checkpoint", golden);
    check_basics();
    gemma4c_model *m = load(tiny, 2, 16, 0);
    if (!m) return g4t_finish("test_api");
    check_model_facts(m);
    check_text(m);
    check_golden_greedy(m);
    check_stops(m);
    check_sampling_and_logprobs(m);
    check_event_loop(m);
    check_media_interleave(m);
    check_state(m);
    check_encode(m);
    check_threads(m);
    gemma4c_model_free(m);
    check_budget();
    check_lifetimes();
    check_files();
    return g4t_finish("test_api");
}
