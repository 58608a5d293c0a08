/* test_text_golden.c — the text decoder against transformers on the golden tiny checkpoint (1e-4 relative). */
#include "test.h"

#include "golden_util.h"
#include "model/decoder.h"
#include "model/model.h"

#define TOL 1e-4

/* Runs the whole prompt in chunks of `chunk` tokens and compares every output the reference stored. */
static void check_prefill(const g4_model *m, g4_backend *c, const g4_st_file *ref, int64_t chunk) {
    const g4_text_config *tc = &m->cfg.text;
    int64_t T, n;
    int32_t *ids = g4t_tensor_i32(ref, "input_ids", &T);
    const int64_t H = tc->hidden_size, L = tc->num_layers, P = tc->ple_dim, V = tc->vocab_size;
    float *want_logits = g4t_tensor_f32(ref, "logits", &n);
    float *want_embeds = g4t_tensor_f32(ref, "inputs_embeds", NULL);
    float *want_ple = g4t_tensor_f32(ref, "per_layer_inputs", NULL);
    float *want_hidden = g4t_tensor_f32(ref, "hidden_states", NULL);
    CHECK(n == T * V, "logits size");

    g4_decoder d;
    g4_kv_budget budget;
    g4_kv_seq seq;
    g4_err err = {0};
    g4_kv_budget_init(&budget, 0, c);
    CHECK(g4_decoder_init(&d, m, c, chunk, &err) == 0, "%s", err.msg);
    CHECK(g4_kv_seq_init(&seq, m, 256, &budget, &err) == 0, "%s", err.msg);
    float *all = calloc((size_t)(T * V), sizeof(float));
    g4_probe probe = {calloc((size_t)(T * H), 4), calloc((size_t)(T * L * P), 4), calloc((size_t)((L + 1) * T * H), 4)};
    g4_forward_opts opts = {.all_logits = all, .probe = &probe};
    CHECK(g4_decoder_forward(&d, &seq, ids, T, &opts, &err) == 0, "%s", err.msg);

    double e_emb = g4t_rel_err(probe.inputs_embeds, want_embeds, T * H);
    double e_ple = g4t_rel_err(probe.per_layer_inputs, want_ple, T * L * P);
    double e_logits = g4t_rel_err(all, want_logits, T * V);
    printf("chunk %3lld: inputs_embeds %.2e  per_layer_inputs %.2e  logits %.2e  hidden:", (long long)chunk, e_emb,
           e_ple, e_logits);
    CHECK(e_emb <= TOL, "inputs_embeds rel err %.3e (chunk %lld)", e_emb, (long long)chunk);
    CHECK(e_ple <= TOL, "per_layer_inputs rel err %.3e (chunk %lld)", e_ple, (long long)chunk);
    CHECK(e_logits <= TOL, "logits rel err %.3e (chunk %lld)", e_logits, (long long)chunk);
    for (int64_t l = 0; l <= L; l++) {
        double e = g4t_rel_err(probe.hidden_states + l * T * H, want_hidden + l * T * H, T * H);
        printf(" %.1e", e);
        CHECK(e <= TOL, "hidden_states[%lld] rel err %.3e (chunk %lld)", (long long)l, e, (long long)chunk);
    }
    printf("\n");
    for (int64_t t = 0; t < T; t++)
        CHECK(g4t_argmax(all + t * V, V) == g4t_argmax(want_logits + t * V, V), "argmax differs at %lld", (long long)t);
    g4_decoder_free(&d);
    g4_kv_seq_free(&seq);
    CHECK(g4_kv_budget_used(&budget) == 0, "pages left in the budget");
    g4_kv_budget_destroy(&budget);
    free(all);
    free(probe.inputs_embeds);
    free(probe.per_layer_inputs);
    free(probe.hidden_states);
    free(ids);
    free(want_logits);
    free(want_embeds);
    free(want_ple);
    free(want_hidden);
}

/* Prefill the first greedy_prompt_len tokens, then decode greedily one token at a time with the KV cache. */
static void check_greedy(const g4_model *m, g4_backend *c, const g4_st_file *ref, int64_t chunk) {
    const int64_t V = m->cfg.text.vocab_size;
    int64_t n_steps, one;
    int32_t *ids = g4t_tensor_i32(ref, "input_ids", NULL);
    int32_t *want_ids = g4t_tensor_i32(ref, "greedy_ids", &n_steps);
    int32_t *prompt_len = g4t_tensor_i32(ref, "greedy_prompt_len", &one);
    float *want_steps = g4t_tensor_f32(ref, "greedy_step_logits", NULL);
    g4_decoder d;
    g4_kv_budget budget;
    g4_kv_seq seq;
    g4_err err = {0};
    g4_kv_budget_init(&budget, 0, c);
    CHECK(g4_decoder_init(&d, m, c, chunk, &err) == 0, "%s", err.msg);
    CHECK(g4_kv_seq_init(&seq, m, 256, &budget, &err) == 0, "%s", err.msg);
    float *logits = malloc((size_t)V * sizeof(float));
    g4_forward_opts opts = {.last_logits = logits};
    CHECK(g4_decoder_forward(&d, &seq, ids, prompt_len[0], &opts, &err) == 0, "%s", err.msg);
    double worst = 0;
    int same = 0;
    for (int64_t s = 0; s < n_steps; s++) {
        int32_t next = (int32_t)g4t_argmax(logits, V);
        same += next == want_ids[s];
        CHECK(next == want_ids[s], "greedy step %lld: got %d want %d", (long long)s, next, want_ids[s]);
        CHECK(g4_decoder_forward(&d, &seq, &want_ids[s], 1, &opts, &err) == 0, "%s", err.msg);
        double e = g4t_rel_err(logits, want_steps + s * V, V);
        worst = e > worst ? e : worst;
    }
    printf("greedy (prefill chunk %lld): %d/%lld ids identical, step logits rel err %.2e\n", (long long)chunk, same,
           (long long)n_steps, worst);
    CHECK(worst <= TOL, "greedy step logits rel err %.3e", worst);
    g4_decoder_free(&d);
    g4_kv_seq_free(&seq);
    g4_kv_budget_destroy(&budget);
    free(logits);
    free(ids);
    free(want_ids);
    free(prompt_len);
    free(want_steps);
}

/* Every check above on one checkpoint and its reference: two workers (chunked prefill, greedy decoding), more
 * workers than (token, kv head) pairs, and the portable kernels. */
static void check_checkpoint(const char *checkpoint, const char *reference) {
    g4_err err = {0};
    g4_model *m = NULL;
    g4_st_file *ref = NULL;
    printf("%s\n", checkpoint);
    const int loaded = g4_model_load_dir(checkpoint, &m, &err) == 0;
    CHECK(loaded, "load %s: %s", checkpoint, err.msg);
    if (!loaded) return;
    const int opened = g4_st_open(reference, &ref, &err) == 0;
    CHECK(opened, "%s", err.msg);
    if (!opened) {
        g4_model_free(m);
        return;
    }
    g4_compute c;
    g4_backend be;
    CHECK(g4_compute_init(&c, 2, 4096) == 0 && g4_backend_cpu_init(&be, &c, &err) == 0, "compute init");
    printf("kernels: %s\n", c.ops->name);
    int64_t chunks[] = {64, 48, 7, 1}; /* one batch, exact fit, chunks that straddle the window, token by token */
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) check_prefill(m, &be, ref, chunks[i]);
    check_greedy(m, &be, ref, 64);
    check_greedy(m, &be, ref, 5);
    be.destroy(&be);
    g4_compute_free(&c);
    /* More workers than (token, kv head) pairs: attention splits each kv head's keys into ranges (some empty at
     * the first positions) and combines their softmaxes. */
    CHECK(g4_compute_init(&c, 5, 4096) == 0 && g4_backend_cpu_init(&be, &c, &err) == 0, "compute init");
    check_prefill(m, &be, ref, 1);
    check_greedy(m, &be, ref, 5);
    be.destroy(&be);
    g4_compute_free(&c);
    /* The portable kernels must agree too: they are what every SIMD variant is tested against. */
    setenv("GEMMA4C_KERNELS", "portable", 1);
    CHECK(g4_compute_init(&c, 1, 4096) == 0 && g4_backend_cpu_init(&be, &c, &err) == 0, "compute init");
    check_prefill(m, &be, ref, 16);
    be.destroy(&be);
    g4_compute_free(&c);
    unsetenv("GEMMA4C_KERNELS");
    g4_st_close(ref);
    g4_model_free(m);
}

int main(void) {
    const char *golden = g4t_require_golden();
    char checkpoint[4096], reference[4096];
    snprintf(checkpoint, sizeof checkpoint, "%s/tiny/checkpoint", golden);
    snprintf(reference, sizeof reference, "%s/tiny/reference/text.safetensors", golden);
    check_checkpoint(checkpoint, reference);
    /* Other shapes than tiny's (tests/reference/make_variants.py says which knobs each one turns). */
    const char *variants[] = {"gqa3", "mqa", "keqv"};
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        snprintf(checkpoint, sizeof checkpoint, "%s/tests/data/variants/%s/checkpoint", GEMMA4C_SOURCE_DIR, variants[i]);
        snprintf(reference, sizeof reference, "%s/tests/data/variants/%s/text.safetensors", GEMMA4C_SOURCE_DIR,
                 variants[i]);
        check_checkpoint(checkpoint, reference);
    }
    return g4t_finish("test_text_golden");
}
