/* test_placeholder.c — placeholder ids without media embed as the reference embeds them (pad), also when generated. */
#include "test.h"

#include "gemma4c.h"
#include "golden_util.h"

/* The reference data comes from tests/reference/make_placeholder.py (transformers 5.17, float32). */
#define TOL 1e-4

typedef struct record {
    float *rows; /* [n][vocab] logits of each sampled position */
    int n, cap;
} record;

static int keep_logits(void *user, float *logits, int vocab) {
    record *r = user;
    if (r->n < r->cap) memcpy(r->rows + (size_t)r->n * (size_t)vocab, logits, (size_t)vocab * sizeof(float));
    r->n++;
    return 0;
}

typedef struct tokens {
    int32_t ids[64];
    int n;
} tokens;

static int keep_token(void *user, const gemma4c_token *t) {
    tokens *k = user;
    if (t->id >= 0 && k->n < 64) k->ids[k->n++] = t->id;
    return 0;
}

int main(void) {
    const char *golden = g4t_require_golden();
    char model[4200], path[4200], err[512];
    snprintf(model, sizeof model, "%s/tiny/checkpoint", golden);
    snprintf(path, sizeof path, "%s/tests/data/placeholder_continuation.safetensors", GEMMA4C_SOURCE_DIR);
    g4_err e = {0};
    g4_st_file *ref;
    if (g4_st_open(path, &ref, &e)) {
        CHECK(0, "%s", e.msg);
        return g4t_finish("test_placeholder");
    }
    int64_t T, N, T2, V = 512;
    int32_t *prompt = g4t_tensor_i32(ref, "input_ids", &T);
    int32_t *want = g4t_tensor_i32(ref, "greedy_ids", &N);
    float *want_steps = g4t_tensor_f32(ref, "greedy_step_logits", NULL);
    float *want_first = g4t_tensor_f32(ref, "prompt_last_logits", NULL);
    int32_t *ids_b = g4t_tensor_i32(ref, "ids_with_placeholders", &T2);
    float *want_b = g4t_tensor_f32(ref, "logits_with_placeholders", NULL);

    gemma4c_model_params mp = {.model = model, .n_threads = 2, .n_batch = 8};
    gemma4c_model *m = NULL;
    gemma4c_session *s = NULL;
    if (gemma4c_model_load(&mp, &m, err, sizeof err) || gemma4c_session_new(m, NULL, &s, err, sizeof err)) {
        CHECK(0, "%s", err);
        return g4t_finish("test_placeholder");
    }
    gemma4c_special_tokens st;
    gemma4c_special_tokens_get(m, &st);
    int placeholders = 0;
    for (int64_t i = 0; i < N; i++) placeholders += want[i] == st.image || want[i] == st.video || want[i] == st.audio;
    CHECK(placeholders >= 2, "the reference continuation has %d placeholder ids: it cannot test this", placeholders);

    /* Case A: the model's own greedy continuation passes through image, video and audio placeholders; each one it
     * feeds back is embedded as pad, in both tables. */
    record rec = {calloc((size_t)(N + 1) * (size_t)V, sizeof(float)), 0, (int)N + 1};
    tokens got = {0};
    gemma4c_input in = {.ids = prompt, .n_ids = (size_t)T};
    gemma4c_generate_options o = {.max_tokens = (int)N, .ignore_eos = 1, .on_logits = keep_logits, .logits_user = &rec};
    CHECK(gemma4c_generate(s, &in, &o, keep_token, &got, NULL, err, sizeof err) == 0, "%s", err);
    int same = 0;
    while (same < got.n && same < N && got.ids[same] == want[same]) same++;
    double worst = g4t_rel_err(rec.rows, want_first, V);
    for (int64_t i = 1; i < N && i < rec.n; i++) worst = fmax(worst, g4t_rel_err(rec.rows + i * V, want_steps + (i - 1) * V, V));
    printf("continuation through %d placeholder ids: %d/%lld greedy ids identical, logits rel err %.2e\n", placeholders,
           same, (long long)N, worst);
    CHECK(same == N && got.n == N, "greedy ids differ from position %d", same);
    CHECK(worst <= TOL, "step logits rel err %.3e", worst);

    /* Case B: a prompt holding placeholder ids and no media at all (`gemma4c logits --ids ...`). */
    float *got_b = malloc((size_t)(T2 * V) * sizeof(float));
    CHECK(gemma4c_logits(s, ids_b, (size_t)T2, NULL, 0, got_b, err, sizeof err) == 0, "%s", err);
    double rel_b = g4t_rel_err(got_b, want_b, T2 * V);
    printf("prompt with placeholder ids and no media: logits rel err %.2e\n", rel_b);
    CHECK(rel_b <= TOL, "placeholder prompt logits rel err %.3e", rel_b);

    free(got_b);
    free(rec.rows);
    free(prompt), free(want), free(want_steps), free(want_first), free(ids_b), free(want_b);
    gemma4c_session_free(s);
    gemma4c_model_free(m);
    g4_st_close(ref);
    return g4t_finish("test_placeholder");
}
