/* test_json_mode.c — JSON mode: the byte grammar against hand-made and mutated texts, then generation on the tiny model. */
#include "test.h"

#include <cjson/cJSON.h>

#include "runtime/engine.h"
#include "runtime/json_grammar.h"

/* Feeds text byte by byte: the index of the first byte refused, or -1 when all are taken. */
static long first_refused(const char *text, size_t len, g4_json_state *end) {
    g4_json_state s = {0};
    for (size_t i = 0; i < len; i++)
        if (g4_json_feed(&s, (const unsigned char *)text + i, 1)) return (long)i;
    if (end) *end = s;
    return -1;
}

static void check_valid(void) {
    static const char *const objects[] = {
        "{}",
        "{\"a\":1}",
        "{\"a\":[1,2.5,-0.1e+10,0,-0,1E5,3e-2,true,false,null,{\"b\":\"c\\n\\u00e9 \xc3\xa9 \xf0\x9f\x98\x80\"}]}",
        "{ \"a\" : [ ] ,\n  \"b\":{}\t,\"c\" :\r\n\"\" }",
        "{\"k\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\uABCD\",\"\":[[],[{}]]}",
        "{\"\xe2\x82\xac\":\"\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf\xe0\xa0\x80\"}",
        "{\"s\":\"\\ud83d\\ude00\\uD7FF\\uE000\\uDBFF\\uDFFF\\ud000\"}", /* surrogates in pairs, neighbours alone */
    };
    for (size_t i = 0; i < sizeof objects / sizeof *objects; i++) {
        const char *t = objects[i];
        const size_t n = strlen(t);
        g4_json_state s = {0};
        int prefixes_open = 1;
        for (size_t k = 0; k < n; k++) {
            CHECK(g4_json_feed(&s, (const unsigned char *)t + k, 1) == 0, "object %zu: byte %zu refused", i, k);
            prefixes_open &= (k + 1 == n) == g4_json_complete(&s);
        }
        CHECK(prefixes_open && g4_json_complete(&s), "object %zu is complete at its end and only there", i);
        g4_json_state after = s;
        CHECK(g4_json_feed(&after, (const unsigned char *)" ", 1) == -1 && g4_json_feed(&s, (const unsigned char *)"}", 1) == -1,
              "object %zu: nothing may follow", i);
        cJSON *parsed = cJSON_ParseWithLength(t, n);
        CHECK(cJSON_IsObject(parsed), "object %zu is JSON to cJSON too", i);
        cJSON_Delete(parsed);
    }
}

static void check_refused(void) {
    static const struct {
        const char *text;
        long at; /* the byte refused */
    } bad[] = {
        {"[]", 0},           {" {}", 0},          {"\"a\"", 0},         {"{\"a\":01}", 6},
        {"{\"a\":1.}", 7},   {"{\"a\":.5}", 5},   {"{\"a\":-}", 6},     {"{\"a\" 1}", 5},
        {"{a:1}", 1},        {"{\"a\":1,}", 7},   {"{\"a\":tru}", 8},   {"{\"a\":\"\x01\"}", 6},
        {"{\"a\":\"\\q\"}", 7}, {"{\"a\":\"\\u12G4\"}", 10}, {"{\"a\":[1 2]}", 8}, {"{\"a\":1}}", 7},
        {"{\"a\":\"\xc0\x80\"}", 6}, {"{\"a\":\"\xed\xa0\x80\"}", 7}, {"{\"a\":\"\xf4\x90\x80\x80\"}", 7},
        {"{\"a\":]}", 5},    {"{\"a\":[}", 6},    {"{\"a\":[1]]}", 8},  {"{\"a\":{]}", 6},
        {"{\"a\":1e}", 7},   {"{\"a\":1e+}", 8},  {"{\"a\":\"x\"\"b\"}", 8}, {"{}{}", 2},
        {"{\"a\":nul", -1},  {"{\"a\":\"\xe2\x82\"}", 8},
        /* UTF-16 surrogates: a low half alone, a high half without its low one */
        {"{\"a\":\"\\udc00\"}", 9}, {"{\"a\":\"\\ud800x\"}", 12}, {"{\"a\":\"\\ud800\\u0041\"}", 14},
        {"{\"a\":\"\\uD800\\uD7FF\"}", 15},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        g4_json_state end = {0};
        const long got = first_refused(bad[i].text, strlen(bad[i].text), &end);
        CHECK(got == bad[i].at, "'%s': refused at byte %ld, wanted %ld", bad[i].text, got, bad[i].at);
        if (bad[i].at < 0) CHECK(!g4_json_complete(&end), "'%s' is a prefix, not an object", bad[i].text);
    }
    /* the bounds: 64 levels of nesting, whitespace runs of 64, numbers of 48 bytes */
    char deep[200] = "{\"a\":";
    for (int d = 1; d < G4_JSON_MAX_DEPTH; d++) strcat(deep, "[");
    CHECK(first_refused(deep, strlen(deep), NULL) == -1, "64 levels");
    strcat(deep, "[");
    CHECK(first_refused(deep, strlen(deep), NULL) == (long)strlen(deep) - 1, "a 65th level is refused");
    char spaces[100] = "{";
    memset(spaces + 1, ' ', G4_JSON_MAX_SPACE);
    CHECK(first_refused(spaces, strlen(spaces), NULL) == -1, "64 spaces");
    strcat(spaces, "\n");
    CHECK(first_refused(spaces, strlen(spaces), NULL) == (long)strlen(spaces) - 1, "a 65th whitespace byte is refused");
    char number[100] = "{\"n\":-";
    memset(number + 6, '7', G4_JSON_MAX_NUMBER - 1);
    CHECK(first_refused(number, strlen(number), NULL) == -1, "a 48-byte number");
    strcat(number, "7");
    CHECK(first_refused(number, strlen(number), NULL) == (long)strlen(number) - 1, "a 49th number byte is refused");
    strcpy(number + strlen(number) - 1, "}");
    g4_json_state end;
    CHECK(first_refused(number, strlen(number), &end) == -1 && g4_json_complete(&end), "the 48-byte number ends");
}

/* Random edits of valid objects: whatever the grammar calls a complete object, cJSON parses as one. */
static void check_mutations(void) {
    static const char *const seeds[] = {
        "{\"a\":[1,2.5,-0.1e+10,true,false,null,{\"b\":\"c\\n\\u00e9\"}],\"x\":{\"y\":[]}}",
        "{ \"k\" : \"v\" , \"n\" : -12.5E-3 }",
    };
    static const char alphabet[] = "{}[]\":,.-+eE0123456789 \n\\untrfals\x01\xc3\xa9";
    uint64_t rng = 12345;
    int complete = 0, agreed = 0;
    for (int trial = 0; trial < 20000; trial++) {
        char t[128];
        const char *seed = seeds[trial % 2];
        size_t n = strlen(seed);
        memcpy(t, seed, n);
        for (int e = 0; e < 1 + trial % 3; e++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            const size_t at = (size_t)(rng >> 33) % n;
            const char c = alphabet[(rng >> 20) % (sizeof alphabet - 1)];
            const int op = (int)(rng >> 10) % 3;
            if (op == 0) t[at] = c;
            else if (op == 1 && n > 1) memmove(t + at, t + at + 1, n - at - 1), n--;
            else if (n + 1 < sizeof t) memmove(t + at + 1, t + at, n - at), t[at] = c, n++;
        }
        g4_json_state end;
        if (first_refused(t, n, &end) != -1 || !g4_json_complete(&end)) continue;
        complete++;
        cJSON *parsed = cJSON_ParseWithLength(t, n);
        agreed += cJSON_IsObject(parsed);
        cJSON_Delete(parsed);
    }
    CHECK(complete > 100 && agreed == complete, "mutations: %d complete objects, %d of them parsed by cJSON", complete,
          agreed);
}

/* ---- generation on the tiny model (byte-level: id 238 + byte) ------------------------------------------------- */

typedef struct forced {
    const int32_t *ids; /* ids[i] >= 0: +1000 on that id at step i */
    int n, step;
} forced;

static int force(void *user, float *logits, int vocab) {
    forced *f = user;
    if (f->step < f->n && f->ids[f->step] >= 0 && f->ids[f->step] < vocab) logits[f->ids[f->step]] += 1000;
    f->step++;
    return 0;
}

typedef struct text {
    char bytes[8192];
    size_t len;
    int tokens, finite;
} text;

static int keep(void *user, const gemma4c_token *t) {
    text *x = user;
    if (x->len + t->text_len < sizeof x->bytes) memcpy(x->bytes + x->len, t->text, t->text_len), x->len += t->text_len;
    if (t->id >= 0) x->tokens++, x->finite &= isfinite(t->logprob) && t->logprob <= 0;
    return 0;
}

/* The answer is a prefix of a JSON object, and a whole one exactly when generation stopped for it. */
static int well_formed(const char *what, const text *x, const gemma4c_result *r) {
    g4_json_state end;
    const long at = first_refused(x->bytes, x->len, &end);
    CHECK(at == -1, "%s: byte %ld of '%.*s' breaks JSON", what, at, (int)x->len, x->bytes);
    const int complete = at == -1 && g4_json_complete(&end);
    CHECK(complete == (r->stop_reason == GEMMA4C_STOP_JSON), "%s: complete %d, stop reason %d", what, complete,
          r->stop_reason);
    if (complete) {
        cJSON *parsed = cJSON_ParseWithLength(x->bytes, x->len);
        CHECK(cJSON_IsObject(parsed), "%s: cJSON reads '%.*s' as an object", what, (int)x->len, x->bytes);
        cJSON_Delete(parsed);
    }
    return complete;
}

static void check_generation(gemma4c_model *m) {
    char err[512];
    gemma4c_session_params sp = {1024};
    gemma4c_session *s = NULL;
    CHECK(gemma4c_session_new(m, &sp, &s, err, sizeof err) == 0, "%s", err);
    if (!s) return;
    int32_t prompt[] = {2, 105, 300, 107};
    gemma4c_input in = {.ids = prompt, .n_ids = 4};
    gemma4c_result r;

    /* greedy, with a token that breaks JSON pushed at the first step: masked all the same */
    const int32_t x_first[] = {238 + 'x'};
    forced push = {x_first, 1, 0};
    text g = {.finite = 1};
    gemma4c_generate_options greedy = {.max_tokens = 300, .json = 1, .logprobs = 1, .on_logits = force, .logits_user = &push};
    CHECK(gemma4c_generate(s, &in, &greedy, keep, &g, &r, err, sizeof err) == 0, "%s", err);
    well_formed("greedy", &g, &r);
    CHECK(g.len > 0 && g.bytes[0] == '{' && g.finite, "greedy starts the object; its log-probabilities are the model's");
    CHECK(r.stop_reason == GEMMA4C_STOP_JSON || (r.stop_reason == GEMMA4C_STOP_LENGTH && r.generated_tokens == 300),
          "greedy: stopped by %d", r.stop_reason);

    /* sampled: every answer well formed, some of them whole objects with keys */
    int whole = 0, keyed = 0;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        gemma4c_generate_options o = {.max_tokens = 200, .json = 1,
                                      .sampling = {.temperature = 1.0f, .top_k = 64, .top_p = 0.95f, .seed = seed}};
        text t = {.finite = 1};
        CHECK(gemma4c_generate(s, &in, &o, keep, &t, &r, err, sizeof err) == 0, "%s", err);
        char what[32];
        snprintf(what, sizeof what, "seed %llu", (unsigned long long)seed);
        if (well_formed(what, &t, &r)) whole++, keyed += memchr(t.bytes, ':', t.len) != NULL;
    }
    CHECK(whole >= 1 && keyed >= 1, "sampled: %d whole objects, %d with a key", whole, keyed);

    /* a thought channel first (forced open, two bytes, forced closed): free inside, JSON after */
    const int32_t thought[] = {100, 238 + 'h', 238 + 'm', 101};
    forced think = {thought, 4, 0};
    gemma4c_generate_options th = {.max_tokens = 100, .json = GEMMA4C_JSON_AFTER_THOUGHT, .keep_special = GEMMA4C_KEEP_MARKERS,
                                   .on_logits = force, .logits_user = &think};
    text t = {.finite = 1};
    CHECK(gemma4c_generate(s, &in, &th, keep, &t, &r, err, sizeof err) == 0, "%s", err);
    const char *opened = "<|channel>hm<channel|>";
    const size_t skip = strlen(opened);
    CHECK(t.len > skip && memcmp(t.bytes, opened, skip) == 0 && t.bytes[skip] == '{',
          "the thought channel, then the object: '%.*s'", (int)t.len, t.bytes);
    if (t.len > skip) {
        text after = t;
        memmove(after.bytes, t.bytes + skip, t.len - skip);
        after.len = t.len - skip;
        well_formed("after thinking", &after, &r);
    }
    /* the token pieces are made once per model and shared by its requests */
    g4_err e = {0};
    const g4_token_pieces *pieces = g4_engine_json_pieces(m, &e);
    CHECK(pieces && pieces == g4_engine_json_pieces(m, &e) && pieces->vocab == 512, "one set of pieces per model: %s", e.msg);
    gemma4c_session_free(s);
}

int main(void) {
    check_valid();
    check_refused();
    check_mutations();
    gemma4c_model *m = g4t_load_tiny();
    if (m) check_generation(m);
    gemma4c_model_free(m);
    return g4t_finish("test_json_mode");
}
