/* test_api.c — the public C API: open, chat, complete, tokenize, logits, and its error reporting. */
#include "test.h"

#include "core/buf.h"
#include "gemma4c.h"
#include "golden_util.h"

static int collect(void *user, const char *text, size_t len) { return g4_buf_append(user, text, len); }
static int stop_now(void *user, const char *text, size_t len) { return 1; }

int main(void) {
    const char *golden = g4t_require_golden();
    char path[4200], err[256];
    snprintf(path, sizeof path, "%s/tiny/checkpoint", golden);

    gemma4c_session *s = NULL;
    gemma4c_params bad = {"/nonexistent/model", 1, 0, 0};
    CHECK(gemma4c_open(&bad, &s, err, sizeof err) == GEMMA4C_ERR_IO && s == NULL, "bad path opened");
    CHECK(strstr(err, "/nonexistent/model") != NULL, "message names the path: %s", err);
    CHECK(strcmp(gemma4c_status_name(GEMMA4C_ERR_CONTEXT), "context exceeded") == 0, "status names");

    gemma4c_params p = {path, 2, 128, 32};
    if (gemma4c_open(&p, &s, err, sizeof err)) {
        CHECK(0, "%s", err);
        return g4t_finish("test_api");
    }
    CHECK(gemma4c_vocab_size(s) == 512 && !gemma4c_is_synthetic(s), "model facts");

    gemma4c_generate_options greedy = {0};
    greedy.max_tokens = 6;
    greedy.greedy = 1;
    g4_buf a = {0}, b = {0};
    const char *msgs = "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hello\"}]";
    CHECK(gemma4c_chat(s, msgs, NULL, &greedy, collect, &a, err, sizeof err) == 0, "%s", err);
    CHECK(gemma4c_chat(s, msgs, NULL, &greedy, collect, &b, err, sizeof err) == 0, "%s", err);
    CHECK(a.len > 0 && a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "greedy chat is repeatable");
    CHECK(gemma4c_chat(s, msgs, NULL, &greedy, stop_now, NULL, err, sizeof err) == 0, "caller stop: %s", err);
    gemma4c_generate_options sampled = {0};
    sampled.max_tokens = 5;
    sampled.use_model_sampling = 1;
    sampled.seed = 7;
    CHECK(gemma4c_complete(s, "Once upon", &sampled, NULL, NULL, err, sizeof err) == 0, "%s", err);

    CHECK(gemma4c_chat(s, "[{\"role\":", NULL, &greedy, collect, &a, err, sizeof err) == GEMMA4C_ERR_ARG, "bad JSON");
    CHECK(gemma4c_chat(s, "[{\"role\":\"robot\",\"content\":\"x\"}]", NULL, &greedy, collect, &a, err, sizeof err) != 0,
          "unknown role accepted");
    CHECK(gemma4c_chat(s, msgs, "{not json", &greedy, collect, &a, err, sizeof err) == GEMMA4C_ERR_ARG, "bad tools");

    size_t n = 0;
    int32_t ids[64];
    CHECK(gemma4c_tokenize(s, "<|turn>user\n", ids, 64, &n, err, sizeof err) == 0, "%s", err);
    CHECK(n == 6 && ids[0] == 105 && ids[1] == 238 + 'u', "byte-level ids: n=%zu first=%d", n, ids[0]);

    /* Logits through the API equal the reference. */
    snprintf(path, sizeof path, "%s/tiny/reference/text.safetensors", golden);
    g4_st_file *ref;
    g4_err e = {0};
    if (g4_st_open(path, &ref, &e) == 0) {
        int64_t T;
        int32_t *in = g4t_tensor_i32(ref, "input_ids", &T);
        float *want = g4t_tensor_f32(ref, "logits", NULL);
        float *got = malloc((size_t)(T * 512) * sizeof(float));
        CHECK(gemma4c_logits(s, in, (size_t)T, got, err, sizeof err) == 0, "%s", err);
        double rel = g4t_rel_err(got, want, T * 512);
        CHECK(rel <= 1e-4, "API logits rel err %.3e", rel);
        int32_t too_big[] = {2, 512};
        CHECK(gemma4c_logits(s, too_big, 2, got, err, sizeof err) == GEMMA4C_ERR_ARG, "id outside vocabulary");
        free(in), free(want), free(got);
        g4_st_close(ref);
    }
    g4_buf_free(&a);
    g4_buf_free(&b);
    gemma4c_close(s);
    gemma4c_close(NULL);
    return g4t_finish("test_api");
}
