/* test_generate.c — sampling rules, stop strings held back while streaming, stop conditions and log-probabilities. */
#include "test.h"

#include "runtime/generate.h"
#include "runtime/sampler.h"

static void check_sampler(void) {
    enum { V = 6 };
    g4_err err = {0};
    g4_sampler s;
    float base[V] = {1.0f, 3.0f, 3.0f, -2.0f, 0.5f, 2.9f};
    float lg[V];

    g4_sampler_params greedy = {1, 1, 0, 1, 0, 1, 0, 0, 0};
    CHECK(g4_sampler_init(&s, &greedy, V, &err) == 0, "%s", err.msg);
    memcpy(lg, base, sizeof lg);
    CHECK(g4_sampler_pick(&s, lg, NULL, 0, 0) == 1, "greedy ties go to the lowest id");
    g4_sampler_free(&s);

    /* The penalty divides positive logits and multiplies negative ones of ids already seen. */
    g4_sampler_params pen = {1, 1, 0, 1, 0, 2.0f, 0, 0, 0};
    CHECK(g4_sampler_init(&s, &pen, V, &err) == 0, "%s", err.msg);
    int32_t hist[] = {1, 2, 1};
    memcpy(lg, base, sizeof lg);
    CHECK(g4_sampler_pick(&s, lg, hist, 3, 0) == 5, "penalised ids lose to id 5");
    CHECK(lg[1] == 1.5f && lg[3] == -2.0f, "penalty applied once per id");
    g4_sampler_free(&s);

    /* top-k 1 and a tiny top-p both leave only the best token, whatever the seed. */
    for (uint64_t seed = 0; seed < 20; seed++) {
        g4_sampler_params k1 = {0, 0.7f, 1, 1, 0, 1, 0, 0, seed}, p0 = {0, 1.0f, 0, 1e-4f, 0, 1, 0, 0, seed};
        CHECK(g4_sampler_init(&s, &k1, V, &err) == 0, "%s", err.msg);
        memcpy(lg, base, sizeof lg);
        CHECK(g4_sampler_pick(&s, lg, NULL, 0, 0) == 1, "top-k 1");
        g4_sampler_free(&s);
        CHECK(g4_sampler_init(&s, &p0, V, &err) == 0, "%s", err.msg);
        memcpy(lg, base, sizeof lg);
        CHECK(g4_sampler_pick(&s, lg, NULL, 0, 0) == 1, "top-p tiny");
        g4_sampler_free(&s);
    }
    /* min-p 0.5 keeps ids 1, 2 and 5 (within ln 2 of the best); the same seed gives the same stream. */
    g4_sampler_params mp = {0, 1.0f, 0, 1, 0.5f, 1, 0, 0, 42};
    int counts[V] = {0};
    int32_t first[50];
    CHECK(g4_sampler_init(&s, &mp, V, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 2000; i++) {
        memcpy(lg, base, sizeof lg);
        int32_t id = g4_sampler_pick(&s, lg, NULL, 0, 0);
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
        same &= g4_sampler_pick(&s, lg, NULL, 0, 0) == first[i];
    }
    CHECK(same, "same seed, same samples");
    g4_sampler_free(&s);

    /* Logits that are no numbers (a logits callback may write anything): every rule still picks an id of the
     * vocabulary (all NaN used to read before the candidate array). */
    const float nan = NAN, inf = INFINITY;
    const float odd[][V] = {{nan, nan, nan, nan, nan, nan}, {-inf, -inf, -inf, -inf, -inf, -inf},
                            {nan, 1.0f, nan, inf, -inf, 2.0f}, {nan, -inf, -40.0f, nan, 3.0f, nan}};
    g4_sampler_params rules[] = {{0, 1.0f, 0, 1, 0, 1, 0, 0, 7}, {0, 0.5f, 3, 0.9f, 0.1f, 1.2f, 0.5f, 0.5f, 7},
                                 {1, 1, 0, 1, 0, 1, 0, 0, 0}};
    for (size_t r = 0; r < sizeof rules / sizeof *rules; r++)
        for (size_t c = 0; c < sizeof odd / sizeof *odd; c++) {
            CHECK(g4_sampler_init(&s, &rules[r], V, &err) == 0, "%s", err.msg);
            memcpy(lg, odd[c], sizeof lg);
            const int32_t id = g4_sampler_pick(&s, lg, hist, 3, 2);
            CHECK(id >= 0 && id < V, "rules %zu, logits %zu: id %d", r, c, id);
            if (c < 2) CHECK(id == 0, "no finite logit: the greedy pick (the lowest id), got %d", id);
            if (c == 2) CHECK(id == 3, "an infinite logit wins: id %d", id);
            if (c == 3) CHECK(id == 4, "NaN logits are never picked: id %d", id);
            g4_sampler_free(&s);
        }

    /* Top-k keeps its k best by selection rather than by sorting every candidate: the same ids as sampling from the
     * k best alone (the rest -inf beforehand, so that every candidate is sorted), with many equal logits. */
    enum { W = 3000 };
    static float wide[W], only[W], work[W];
    static g4_candidate order[W];
    uint64_t x = 99;
    for (int i = 0; i < W; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        wide[i] = (float)((x >> 40) % 64) * 0.25f; /* 64 distinct values over 3000 ids */
        order[i] = (g4_candidate){wide[i], i};
    }
    g4_top_k(wide, W, W, order); /* descending, equal logits by id */
    const int ks[] = {1, 5, 64, 2999};
    int agree = 0, tried = 0;
    for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
        for (uint64_t seed = 1; seed <= 50; seed++, tried++) {
            g4_sampler a, b;
            g4_sampler_params with_k = {0, 1.0f, ks[ki], 0.9f, 0.02f, 1, 0, 0, seed};
            g4_sampler_params best_only = {0, 1.0f, 0, 0.9f, 0.02f, 1, 0, 0, seed};
            for (int i = 0; i < W; i++) only[i] = -INFINITY;
            for (int i = 0; i < ks[ki]; i++) only[order[i].id] = order[i].logit;
            memcpy(work, wide, sizeof work);
            if (g4_sampler_init(&a, &with_k, W, &err) || g4_sampler_init(&b, &best_only, W, &err)) break;
            agree += g4_sampler_pick(&a, work, NULL, 0, 0) == g4_sampler_pick(&b, only, NULL, 0, 0);
            g4_sampler_free(&a);
            g4_sampler_free(&b);
        }
    CHECK(agree == tried && tried == 200, "top-k by selection agrees with sorting the k best: %d of %d", agree, tried);

    g4_sampler_params bad[] = {{0, 0, 0, 1, 0, 1, 0, 0, 0}, {0, 1, -1, 1, 0, 1, 0, 0, 0}, {0, 1, 0, 0, 0, 1, 0, 0, 0},
                               {0, 1, 0, 1, 1.5f, 1, 0, 0, 0}, {0, 1, 0, 1, 0, 0, 0, 0, 0}};
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
        g4_stop_filter f = {stops, 2, {0}, 0, 0};
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

/* Presence and frequency penalties (OpenAI's rule) touch the answer's ids only. */
static void check_penalties(void) {
    enum { V = 6 };
    g4_err err = {0};
    g4_sampler s;
    const float base[V] = {1.0f, 3.0f, 3.0f, -2.0f, 0.5f, 2.9f};
    float lg[V];
    int32_t hist[] = {2, 2, 1};
    g4_sampler_params presence = {1, 1, 0, 1, 0, 1, 1.0f, 0, 0}, frequency = {1, 1, 0, 1, 0, 1, 0, 0.6f, 0};
    CHECK(g4_sampler_init(&s, &presence, V, &err) == 0, "%s", err.msg);
    memcpy(lg, base, sizeof lg);
    CHECK(g4_sampler_pick(&s, lg, hist + 2, 1, 1) == 2 && lg[1] == 2.0f, "presence: id 1 lost one");
    memcpy(lg, base, sizeof lg);
    CHECK(g4_sampler_pick(&s, lg, hist + 2, 1, 0) == 1 && lg[1] == 3.0f, "presence applied to the prompt");
    g4_sampler_free(&s);
    CHECK(g4_sampler_init(&s, &frequency, V, &err) == 0, "%s", err.msg);
    memcpy(lg, base, sizeof lg);
    CHECK(g4_sampler_pick(&s, lg, hist, 3, 3) == 5, "frequency: twice-seen id 2 and once-seen id 1 lose to id 5");
    CHECK(fabsf(lg[2] - 1.8f) < 1e-6f && fabsf(lg[1] - 2.4f) < 1e-6f, "frequency per occurrence: %g %g", lg[2], lg[1]);
    memcpy(lg, base, sizeof lg);
    CHECK(g4_sampler_pick(&s, lg, hist, 3, 3) == 5 && fabsf(lg[2] - 1.8f) < 1e-6f, "counts do not carry over between picks");
    g4_sampler_free(&s);
    g4_sampler_params wild = {1, 1, 0, 1, 0, 1, 200, 0, 0};
    CHECK(g4_sampler_init(&s, &wild, V, &err) == GEMMA4C_ERR_ARG, "a presence penalty of 200 accepted");
    /* top-k of raw logits (the log-sum-exp behind log-probabilities is a kernel: test_kernels) */
    g4_candidate top[3];
    g4_top_k(base, V, 3, top);
    CHECK(top[0].id == 1 && top[1].id == 2 && top[2].id == 5, "top-3 order (ties by id): %d %d %d", top[0].id, top[1].id, top[2].id);
}

/* Logits that make `id` the only likely token. */
static void favour(float *lg, int V, int32_t id) {
    for (int i = 0; i < V; i++) lg[i] = 0;
    lg[id] = 20;
}

static int32_t byte_id(unsigned char c) { return 238 + c; }

/* The generation state: text streamed whole, stop strings, stop ids, max_tokens, log-probabilities. */
static void check_gen(void) {
    enum { V = 512 };
    g4_err err = {0};
    g4_tokenizer *tok = NULL;
    CHECK(g4_tokenizer_byte_level(V, NULL, 0, &tok, &err) == 0, "%s", err.msg);
    float lg[V];
    const int32_t prompt[] = {2};
    const char *stops[] = {"STOP"};
    const int32_t eos[] = {1};
    g4_gen_params p = {{1, 1, 0, 1, 0, 1, 0, 0, 0}, 0, eos, 1, stops, 1, 1, 1, 3};
    g4_gen g;
    g4_gen_token t = {0};
    g4_buf text = {0};
    /* JSON mode needs the tokenizer's pieces, for this vocabulary */
    g4_gen_params jp = p;
    jp.json = 1;
    CHECK(g4_gen_init(&g, &jp, tok, V, prompt, 1, &err) == GEMMA4C_ERR_ARG && strstr(err.msg, "JSON"), "%s", err.msg);
    g4_token_pieces pieces;
    CHECK(g4_token_pieces_build(&pieces, tok, V - 1, &err) == 0, "%s", err.msg);
    jp.pieces = &pieces;
    CHECK(g4_gen_init(&g, &jp, tok, V, prompt, 1, &err) == GEMMA4C_ERR_ARG, "pieces of another vocabulary refused");
    g4_token_pieces_free(&pieces);
    CHECK(g4_gen_init(&g, &p, tok, V, prompt, 1, &err) == 0, "%s", err.msg);
    const char *feed = "abSTOx";
    for (const char *c = feed; *c && !g.stop_reason; c++) {
        favour(lg, V, byte_id((unsigned char)*c));
        CHECK(g4_gen_next(&g, lg, &t, &err) == 0, "%s", err.msg);
        CHECK(t.id == byte_id((unsigned char)*c) && t.piece.len == 1 && t.piece.data[0] == *c, "token %c", *c);
        CHECK(t.n_top == 3 && t.top[0].id == t.id && fabsf(t.logprob - t.top[0].logit) < 1e-6f, "top logprobs");
        CHECK(fabsf(t.logprob - (20.0f - logf(expf(20.0f) + (V - 1)))) < 1e-4f, "logprob %g", t.logprob);
        g4_buf_append(&text, t.text.data ? t.text.data : "", t.text.len);
    }
    /* "ST" and "STO" are held back until "x" shows they were not a stop string */
    CHECK(!g.stop_reason && text.len == 6 && memcmp(text.data, "abSTOx", 6) == 0, "streamed '%s'", text.data ? text.data : "");
    g4_buf_reset(&text);
    const char *stop_feed = "ySTOP!";
    for (const char *c = stop_feed; *c && !g.stop_reason; c++) {
        favour(lg, V, byte_id((unsigned char)*c));
        CHECK(g4_gen_next(&g, lg, &t, &err) == 0, "%s", err.msg);
        g4_buf_append(&text, t.text.data ? t.text.data : "", t.text.len);
    }
    CHECK(g.stop_reason == G4_STOP_STRING && g.stop_string == 0 && g.generated == 11, "stop string: reason %d after %lld",
          g.stop_reason, (long long)g.generated);
    CHECK(text.len == 1 && text.data[0] == 'y', "the stop string leaked: '%s'", text.data);
    g4_gen_free(&g);
    g4_buf_reset(&text);

    /* A stop id ends generation without a token; half a UTF-8 character still held comes out as U+FFFD. */
    CHECK(g4_gen_init(&g, &p, tok, V, prompt, 1, &err) == 0, "%s", err.msg);
    favour(lg, V, byte_id(0xE2));
    CHECK(g4_gen_next(&g, lg, &t, &err) == 0 && t.text.len == 0, "half a character was emitted");
    favour(lg, V, 1);
    CHECK(g4_gen_next(&g, lg, &t, &err) == 0, "%s", err.msg);
    CHECK(g.stop_reason == G4_STOP_EOS && g.stop_id == 1 && t.id == -1 && g.generated == 1, "stop id: reason %d id %d",
          g.stop_reason, t.id);
    CHECK(t.text.len == 3 && memcmp(t.text.data, "\xEF\xBF\xBD", 3) == 0, "released text %zu bytes", t.text.len);
    g4_gen_free(&g);

    /* max_tokens: the last token's text comes with what was held back. */
    g4_gen_params two = p;
    two.max_tokens = 2;
    CHECK(g4_gen_init(&g, &two, tok, V, prompt, 1, &err) == 0, "%s", err.msg);
    favour(lg, V, byte_id('S'));
    CHECK(g4_gen_next(&g, lg, &t, &err) == 0 && t.text.len == 0 && !g.stop_reason, "'S' is held (could start STOP)");
    CHECK(g4_gen_next(&g, lg, &t, &err) == 0 && g.stop_reason == G4_STOP_LENGTH, "max_tokens");
    CHECK(t.text.len == 2 && memcmp(t.text.data, "SS", 2) == 0, "held text released at the limit");
    g4_buf_reset(&t.text);
    CHECK(g4_gen_stop(&g, G4_STOP_CANCELLED, &t.text) == 0 && t.text.len == 0, "nothing left to release");
    g4_gen_free(&g);
    /* Log-probabilities describe the model's distribution, before a penalty: the chosen token (id 2, the prompt's,
     * so penalised to 20 / 2 but still the best) keeps the logit 20, with and without the penalty. */
    for (int penalised = 0; penalised < 2; penalised++) {
        g4_gen_params pen = p;
        pen.sampling.repetition_penalty = penalised ? 2.0f : 1.0f;
        CHECK(g4_gen_init(&g, &pen, tok, V, prompt, 1, &err) == 0, "%s", err.msg);
        favour(lg, V, 2);
        CHECK(g4_gen_next(&g, lg, &t, &err) == 0 && t.id == 2, "penalty %d: picked %d", penalised, t.id);
        CHECK(fabsf(t.logprob - (20.0f - logf(expf(20.0f) + (V - 1)))) < 1e-4f, "penalty %d: logprob %g", penalised,
              t.logprob);
        CHECK(lg[2] == (penalised ? 10.0f : 20.0f), "penalty %d: the logits the sampler saw: %g", penalised, lg[2]);
        g4_gen_free(&g);
    }
    g4_gen_params bad = p;
    bad.top_logprobs = 21;
    CHECK(g4_gen_init(&g, &bad, tok, V, prompt, 1, &err) == GEMMA4C_ERR_ARG, "21 top logprobs accepted");
    g4_gen_token_free(&t);
    g4_buf_free(&text);
    g4_tokenizer_free(tok);
}

int main(void) {
    check_sampler();
    check_stop_filter();
    check_penalties();
    check_gen();
    return g4t_finish("test_generate");
}
