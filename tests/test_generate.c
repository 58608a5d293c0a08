/* test_generate.c — sampling rules, stop strings held back while streaming, and the generation loop on the tiny model. */
#include "test.h"

#include "runtime/generate.h"
#include "runtime/sampler.h"
#include "runtime/session.h"

static void check_sampler(void) {
    enum { V = 6 };
    g4_err err = {0};
    g4_sampler s;
    float base[V] = {1.0f, 3.0f, 3.0f, -2.0f, 0.5f, 2.9f};
    float lg[V];

    g4_sampler_params greedy = {1, 1, 0, 1, 0, 1, 0};
    CHECK(g4_sampler_init(&s, &greedy, V, &err) == 0, "%s", err.msg);
    memcpy(lg, base, sizeof lg);
    CHECK(g4_sampler_pick(&s, lg, NULL, 0) == 1, "greedy ties go to the lowest id");
    g4_sampler_free(&s);

    /* The penalty divides positive logits and multiplies negative ones of ids already seen. */
    g4_sampler_params pen = {1, 1, 0, 1, 0, 2.0f, 0};
    CHECK(g4_sampler_init(&s, &pen, V, &err) == 0, "%s", err.msg);
    int32_t hist[] = {1, 2, 1};
    memcpy(lg, base, sizeof lg);
    CHECK(g4_sampler_pick(&s, lg, hist, 3) == 5, "penalised ids lose to id 5");
    CHECK(lg[1] == 1.5f && lg[3] == -2.0f, "penalty applied once per id");
    g4_sampler_free(&s);

    /* top-k 1 and a tiny top-p both leave only the best token, whatever the seed. */
    for (uint64_t seed = 0; seed < 20; seed++) {
        g4_sampler_params k1 = {0, 0.7f, 1, 1, 0, 1, seed}, p0 = {0, 1.0f, 0, 1e-4f, 0, 1, seed};
        CHECK(g4_sampler_init(&s, &k1, V, &err) == 0, "%s", err.msg);
        memcpy(lg, base, sizeof lg);
        CHECK(g4_sampler_pick(&s, lg, NULL, 0) == 1, "top-k 1");
        g4_sampler_free(&s);
        CHECK(g4_sampler_init(&s, &p0, V, &err) == 0, "%s", err.msg);
        memcpy(lg, base, sizeof lg);
        CHECK(g4_sampler_pick(&s, lg, NULL, 0) == 1, "top-p tiny");
        g4_sampler_free(&s);
    }
    /* min-p 0.5 keeps ids 1, 2 and 5 (within ln 2 of the best); the same seed gives the same stream. */
    g4_sampler_params mp = {0, 1.0f, 0, 1, 0.5f, 1, 42};
    int counts[V] = {0};
    int32_t first[50];
    CHECK(g4_sampler_init(&s, &mp, V, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 2000; i++) {
        memcpy(lg, base, sizeof lg);
        int32_t id = g4_sampler_pick(&s, lg, NULL, 0);
        counts[id]++;
        if (i < 50) first[i] = id;
    }
    g4_sampler_free(&s);
    CHECK(counts[0] == 0 && counts[3] == 0 && counts[4] == 0, "min-p removed low tokens");
    CHECK(counts[1] > 500 && counts[2] > 500 && counts[5] > 500, "min-p kept the top three (%d %d %d)", counts[1], counts[2], counts[5]);
    CHECK(g4_sampler_init(&s, &mp, V, &err) == 0, "%s", err.msg);
    int same = 1;
    for (int i = 0; i < 50; i++) {
        memcpy(lg, base, sizeof lg);
        same &= g4_sampler_pick(&s, lg, NULL, 0) == first[i];
    }
    CHECK(same, "same seed, same samples");
    g4_sampler_free(&s);

    g4_sampler_params bad[] = {{0, 0, 0, 1, 0, 1, 0}, {0, 1, -1, 1, 0, 1, 0}, {0, 1, 0, 0, 0, 1, 0},
                               {0, 1, 0, 1, 1.5f, 1, 0}, {0, 1, 0, 1, 0, 0, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(g4_sampler_init(&s, &bad[i], V, &err) == GEMMA4C_ERR_ARG, "bad sampler params %zu accepted", i);
}

static int collect(void *ctx, const char *text, size_t len) { return g4_buf_append(ctx, text, len); }

static void check_stop_filter(void) {
    const char *stops[] = {"STOP", "<end>"};
    struct {
        const char *pieces[6];
        const char *want;
        int stopped;
    } cases[] = {
        {{"hello ", "wor", "ld", NULL}, "hello world", 0},
        {{"abc S", "TO", "P def", NULL}, "abc ", 1},
        {{"ST", "OOP", NULL}, "STOOP", 0},
        {{"a<en", "d>b", NULL}, "a", 1},
        {{"<e", "<end", ">", NULL}, "<e", 1},
        {{"STO", NULL}, "STO", 0}, /* a held prefix is released at the end */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        g4_stop_filter f = {stops, 2, {0}, 0};
        g4_buf out = {0};
        for (int i = 0; cases[c].pieces[i]; i++) g4_stop_filter_push(&f, cases[c].pieces[i], strlen(cases[c].pieces[i]), collect, &out);
        g4_stop_filter_flush(&f, collect, &out);
        CHECK(out.len == strlen(cases[c].want) && memcmp(out.data ? out.data : "", cases[c].want, out.len) == 0,
              "stop case %zu: got '%s' want '%s'", c, out.data ? out.data : "", cases[c].want);
        CHECK(f.stopped == cases[c].stopped, "stop case %zu: stopped %d", c, f.stopped);
        g4_buf_free(&out);
        g4_stop_filter_free(&f);
    }
}

/* Generation on the golden tiny checkpoint: greedy ids match the reference; limits and errors behave. */
static void check_session(void) {
    const char *golden = g4t_require_golden();
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny/checkpoint", golden);
    g4_session *s;
    g4_err err = {0};
    g4_session_params sp = {2, 64, 16};
    if (g4_session_open(path, &sp, &s, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int32_t prompt[] = {2, 105, 300, 107}; /* the tiny vocabulary has 512 ids */
    g4_sampler_params greedy = {1, 1, 0, 1, 0, 1, 0};
    g4_generate_params gp = {10, NULL, 0, NULL, 0, 0};
    g4_generate_stats st;
    g4_buf out = {0};
    CHECK(g4_session_generate(s, prompt, 4, &gp, &greedy, collect, &out, &st, &err) == 0, "%s", err.msg);
    CHECK(st.generated_tokens == 10 && st.stop_reason == G4_STOP_MAX_TOKENS, "max tokens: %lld", (long long)st.generated_tokens);
    /* Same prompt again: the cache is reused and the answer is identical. */
    g4_buf again = {0};
    CHECK(g4_session_generate(s, prompt, 4, &gp, &greedy, collect, &again, &st, &err) == 0, "%s", err.msg);
    CHECK(out.len == again.len && memcmp(out.data, again.data, out.len) == 0, "greedy answer repeats with a warm cache");
    /* A shared prefix whose window the sliding layers' rings no longer hold (the conversation went on past it by
     * more than their slack: window 8 + batch 16 slots) must not be reused as is: the answer equals a cold start's. */
    int32_t p1[40], p2[40];
    for (int i = 0; i < 40; i++) p1[i] = 3 + (i * 37) % 500, p2[i] = i < 12 ? p1[i] : 3 + (i * 53) % 500;
    g4_generate_params gp40 = {40, NULL, 0, NULL, 0, 0};
    g4_buf warm = {0}, cold = {0};
    CHECK(g4_session_generate(s, p1, 40, &gp40, &greedy, collect, &warm, &st, &err) == 0, "%s", err.msg);
    g4_buf_free(&warm);
    CHECK(g4_session_generate(s, p2, 20, &gp, &greedy, collect, &warm, &st, &err) == 0, "%s", err.msg);
    g4_decoder_rewind(&s->d, 0);
    s->cached.n = 0;
    CHECK(g4_session_generate(s, p2, 20, &gp, &greedy, collect, &cold, &st, &err) == 0, "%s", err.msg);
    CHECK(warm.len == cold.len && memcmp(warm.data, cold.data, warm.len) == 0,
          "a prefix the rings lost gives another answer than a cold start");
    g4_buf_free(&warm);
    g4_buf_free(&cold);
    /* Stopping on the first generated id ends at once. */
    g4_ids ids = {0};
    g4_sampler sampler;
    g4_sampler_init(&sampler, &greedy, s->m->cfg.text.vocab_size, &err);
    g4_decoder_rewind(&s->d, 0);
    s->cached.n = 0;
    CHECK(g4_generate(&s->d, &sampler, s->m->tok, prompt, 4, &gp, collect, &out, &ids, &st, &err) == 0, "%s", err.msg);
    CHECK(ids.n > 0, "no ids generated");
    int32_t first = ids.n ? ids.v[0] : 0;
    g4_generate_params stop_first = {10, &first, 1, NULL, 0, 0};
    g4_decoder_rewind(&s->d, 0);
    s->cached.n = 0;
    CHECK(g4_generate(&s->d, &sampler, s->m->tok, prompt, 4, &stop_first, collect, &out, NULL, &st, &err) == 0, "%s", err.msg);
    CHECK(st.generated_tokens == 0 && st.stop_reason == G4_STOP_EOS, "stop id");
    g4_sampler_free(&sampler);
    g4_ids_free(&ids);
    /* A prompt longer than the context is refused with a clear error; so is an id outside the vocabulary. */
    int32_t long_prompt[80];
    for (int i = 0; i < 80; i++) long_prompt[i] = 2;
    CHECK(g4_session_generate(s, long_prompt, 80, &gp, &greedy, collect, &out, &st, &err) == GEMMA4C_ERR_CONTEXT,
          "long prompt accepted");
    CHECK(strstr(err.msg, "context") != NULL, "message: %s", err.msg);
    int32_t bad_ids[] = {2, 99999};
    CHECK(g4_session_generate(s, bad_ids, 2, &gp, &greedy, collect, &out, &st, &err) == GEMMA4C_ERR_ARG, "bad id accepted");
    /* Generation that fills the context stops cleanly. */
    g4_generate_params unlimited = {0, NULL, 0, NULL, 0, 0};
    CHECK(g4_session_generate(s, prompt, 4, &unlimited, &greedy, collect, &out, &st, &err) == 0, "%s", err.msg);
    CHECK(st.stop_reason == G4_STOP_CONTEXT, "context stop: reason %d", st.stop_reason);
    g4_buf_free(&out);
    g4_buf_free(&again);
    g4_session_close(s);
}

int main(void) {
    check_sampler();
    check_stop_filter();
    check_session();
    return g4t_finish("test_generate");
}
