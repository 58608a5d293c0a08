/* test_tokenizer.c — golden ids of the tokenizers library, round trips, streaming, byte-level fallback, bad files. */
#include <cjson/cJSON.h>
#include <time.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "test.h"
#include "text/tokenizer.h"

static double clock_s(clockid_t which) {
    struct timespec ts;
    clock_gettime(which, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }

static cJSON *read_json(const char *path) {
    char *text = NULL;
    size_t n = 0;
    g4_err err = {0};
    if (g4_read_file(path, 64u << 20, &text, &n, &err) != 0) {
        CHECK(0, "read %s: %s", path, err.msg);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(text, n);
    free(text);
    CHECK(j != NULL, "parse %s", path);
    return j;
}

/* Reads a JSON array of integers; returns the count (or -1). */
static int json_ids(const cJSON *arr, int32_t **out) {
    int n = cJSON_GetArraySize(arr);
    *out = calloc((size_t)n + 1, sizeof **out);
    if (!*out) return -1;
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) { (*out)[i++] = (int32_t)x->valuedouble; }
    return n;
}

static void print_ids(const char *label, const int32_t *v, size_t n) {
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", (int)v[i]);
    fputc('\n', stderr);
}

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* Whether a chunk of streamed output ends on a character boundary (no half character held back wrongly). */
static int ends_whole(const char *s, size_t n) {
    size_t i = n, k = 0;
    while (i > 0 && k < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--, k++;
    if (i == 0) return k == 0;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return need == k + 1;
}

/* Streams ids one at a time into out. */
static void stream_decode(const g4_tokenizer *t, const int32_t *ids, size_t n, int skip_special, g4_buf *out) {
    g4_detok d;
    g4_detok_init(&d, t, skip_special);
    g4_err err = {0};
    for (size_t i = 0; i < n; i++) {
        size_t before = out->len;
        int rc = g4_detok_feed(&d, ids[i], out, &err);
        CHECK(rc == 0, "detok feed: %s", err.msg);
        CHECK(ends_whole(out->data ? out->data + before : "", out->len - before), "streamed half a character");
    }
    CHECK(g4_detok_flush(&d, out) == 0, "detok flush");
    if (!out->data) g4_buf_puts(out, "");
}

static void check_case(const g4_tokenizer *t, const char *name, const cJSON *c, int *passed) {
    const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
    const char *decoded = cJSON_GetObjectItem(c, "decoded")->valuestring;
    int32_t *want = NULL;
    int n_want = json_ids(cJSON_GetObjectItem(c, "ids"), &want);
    g4_ids got = {0};
    g4_err err = {0};
    int rc = g4_tokenizer_encode(t, text, strlen(text), &got, &err);
    CHECK(rc == 0, "%s: encode \"%s\": %s", name, text, err.msg);
    int ok = rc == 0 && ids_equal(got.v, got.n, want, (size_t)n_want);
    CHECK(ok, "%s: ids of \"%s\" differ", name, text);
    if (!ok) {
        print_ids("want", want, (size_t)n_want);
        print_ids("got ", got.v, got.n);
    }
    g4_buf dec = {0};
    rc = g4_tokenizer_decode(t, want, (size_t)n_want, 0, &dec, &err);
    int dec_ok = rc == 0 && strcmp(dec.data ? dec.data : "", decoded) == 0;
    CHECK(dec_ok, "%s: decode of \"%s\" gave \"%s\" (%s)", name, text, dec.data ? dec.data : "", err.msg);
    g4_buf streamed = {0};
    stream_decode(t, want, (size_t)n_want, 0, &streamed);
    CHECK(strcmp(streamed.data, decoded) == 0, "%s: streamed decode of \"%s\" gave \"%s\"", name, text, streamed.data);
    g4_buf_free(&streamed);
    *passed += ok && dec_ok;
    g4_buf_free(&dec);
    g4_ids_free(&got);
    free(want);
}

static g4_tokenizer *load_timed(const char *path) {
    g4_tokenizer *t = NULL;
    g4_err err = {0};
    /* CPU time too: wall time swings with whatever else the machine runs. */
    double t0 = now_s(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    int rc = g4_tokenizer_load(path, &t, &err);
    double dt = now_s() - t0, dc = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    CHECK(rc == 0, "load %s: %s", path, err.msg);
    if (rc == 0) printf("loaded %s in %.3f s (%.3f s CPU; %d ids)\n", path, dt, dc, g4_tokenizer_vocab_size(t));
    return t;
}

static void test_golden_file(const char *golden, const cJSON *ref, const char *key, const char *file,
                             g4_tokenizer **out) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizers/%s", golden, file);
    g4_tokenizer *t = load_timed(path);
    *out = t;
    if (!t) return;
    const cJSON *cases = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, key), "cases");
    int passed = 0, total = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        check_case(t, key, c, &passed);
        total++;
    }
    CHECK(total == 28, "%s: %d cases", key, total);
    printf("%s: %d/%d golden cases pass\n", key, passed, total);
}

static void test_chat_ids(const g4_tokenizer *t, const char *golden) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny/reference/chat.json", golden);
    cJSON *chat = read_json(path);
    if (!chat) return;
    int passed = 0, total = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, chat) {
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        int32_t *want = NULL;
        int n_want = json_ids(cJSON_GetObjectItem(c, "ids"), &want);
        g4_ids got = {0};
        g4_err err = {0};
        int rc = g4_tokenizer_encode(t, prompt, strlen(prompt), &got, &err);
        int ok = rc == 0 && ids_equal(got.v, got.n, want, (size_t)n_want);
        CHECK(ok, "chat %s: ids differ (%s)", cJSON_GetObjectItem(c, "name")->valuestring, err.msg);
        if (!ok) {
            print_ids("want", want, (size_t)n_want);
            print_ids("got ", got.v, got.n);
        }
        g4_buf dec = {0};
        rc = g4_tokenizer_decode(t, want, (size_t)n_want, 0, &dec, &err);
        CHECK(rc == 0 && strcmp(dec.data, prompt) == 0, "chat round trip: %s", dec.data ? dec.data : err.msg);
        g4_buf_free(&dec);
        passed += ok;
        total++;
        g4_ids_free(&got);
        free(want);
    }
    CHECK(total == 9, "chat cases %d", total);
    printf("chat: %d/%d prompts encode to the reference ids\n", passed, total);
    cJSON_Delete(chat);
}

/* Encode then decode gives the text back, for text the vocabulary covers through byte fallback. */
static void check_round_trip(const g4_tokenizer *t, const char *text, size_t n, const char *what) {
    g4_ids ids = {0};
    g4_buf out = {0};
    g4_err err = {0};
    int rc = g4_tokenizer_encode(t, text, n, &ids, &err);
    CHECK(rc == 0, "%s: encode: %s", what, err.msg);
    rc = g4_tokenizer_decode(t, ids.v, ids.n, 0, &out, &err);
    CHECK(rc == 0 && out.len == n && memcmp(out.data ? out.data : "", text, n) == 0, "%s: round trip differs", what);
    g4_buf streamed = {0};
    stream_decode(t, ids.v, ids.n, 0, &streamed);
    CHECK(streamed.len == n && memcmp(streamed.data, text, n) == 0, "%s: streamed round trip differs", what);
    g4_buf_free(&streamed);
    g4_buf_free(&out);
    g4_ids_free(&ids);
}

static void test_special_and_streaming(const g4_tokenizer *t) {
    int32_t bos = g4_tokenizer_find(t, "<bos>"), turn = g4_tokenizer_find(t, "<|turn>");
    CHECK(bos == 2 && turn == 105, "find: bos %d turn %d", (int)bos, (int)turn);
    CHECK(g4_tokenizer_find(t, "<0xE2>") == 238 + 0xE2, "byte token id");
    CHECK(g4_tokenizer_find(t, "no such token, surely") == -1, "missing piece");
    CHECK(g4_tokenizer_is_special(t, 2) && g4_tokenizer_is_special(t, 106) && !g4_tokenizer_is_special(t, 107),
          "special flags");
    CHECK(g4_tokenizer_vocab_size(t) == 262144, "vocab size %d", g4_tokenizer_vocab_size(t));

    /* skip_special drops control tokens only. */
    int32_t ids[] = {2, 105, 2364, 107, 9259, 106};
    g4_buf out = {0};
    g4_err err = {0};
    CHECK(g4_tokenizer_decode(t, ids, 6, 1, &out, &err) == 0 && strcmp(out.data, "user\nHello") == 0,
          "skip special: \"%s\"", out.data ? out.data : "");
    g4_buf_reset(&out);
    CHECK(g4_tokenizer_decode(t, ids, 6, 0, &out, &err) == 0 && strcmp(out.data, "<bos><|turn>user\nHello<turn|>") == 0,
          "keep special: \"%s\"", out.data ? out.data : "");
    /* Only the markers that structure a reply: the thought channel and tool calls stay; turns and <bos> go. */
    int32_t channel = g4_tokenizer_find(t, "<|channel>"), call = g4_tokenizer_find(t, "<|tool_call>"),
            quote = g4_tokenizer_find(t, "<|\"|>");
    CHECK(channel > 0 && call > 0 && quote > 0, "reply markers in the vocabulary");
    int32_t reply[] = {2, 105, channel, 9259, call, quote, 9259, quote, 106};
    g4_buf_reset(&out);
    stream_decode(t, reply, 9, G4_SKIP_SPECIAL_BUT_MARKERS, &out);
    CHECK(strcmp(out.data, "<|channel>Hello<|tool_call><|\"|>Hello<|\"|>") == 0, "markers kept: \"%s\"", out.data);
    int32_t bad[] = {5, -1};
    CHECK(g4_tokenizer_decode(t, bad, 2, 0, &out, &err) == GEMMA4C_ERR_ARG, "unknown id is an error");
    int32_t huge[] = {262144};
    CHECK(g4_tokenizer_decode(t, huge, 1, 0, &out, &err) == GEMMA4C_ERR_ARG, "id past the vocab is an error");

    /* "€" (E2 82 AC) and "😀" (F0 9F 98 80) as byte tokens: nothing comes out until the character is whole. */
    g4_detok d;
    g4_detok_init(&d, t, 0);
    g4_buf_reset(&out);
    const unsigned char euro[] = {0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80};
    size_t lens_after[] = {0, 0, 3, 3, 3, 3, 7};
    for (int i = 0; i < 7; i++) {
        CHECK(g4_detok_feed(&d, 238 + euro[i], &out, &err) == 0, "feed byte");
        CHECK(out.len == lens_after[i], "after byte %d: %zu bytes out", i, out.len);
    }
    CHECK(out.len == 7 && memcmp(out.data, euro, 7) == 0, "streamed euro + emoji");
    /* A broken sequence: E2 then "Hello" -> U+FFFD then the word; a dangling lead byte at the end -> U+FFFD. */
    g4_buf_reset(&out);
    CHECK(g4_detok_feed(&d, 238 + 0xE2, &out, &err) == 0 && out.len == 0, "lead byte held");
    CHECK(g4_detok_feed(&d, 9259, &out, &err) == 0 && strcmp(out.data, "\xEF\xBF\xBDHello") == 0, "broken char: %s",
          out.data);
    CHECK(g4_detok_feed(&d, 238 + 0xF0, &out, &err) == 0, "lead");
    CHECK(g4_detok_flush(&d, &out) == 0 && strcmp(out.data, "\xEF\xBF\xBDHello\xEF\xBF\xBD") == 0, "flush: %s",
          out.data);
    CHECK(g4_detok_feed(&d, 999999, &out, &err) == GEMMA4C_ERR_ARG, "detok unknown id");
    /* The batch decoder does what the library does with an invalid byte run: one U+FFFD per byte. */
    int32_t broken[] = {238 + 0xE2, 238 + 0x82, 9259};
    g4_buf_reset(&out);
    CHECK(g4_tokenizer_decode(t, broken, 3, 0, &out, &err) == 0 &&
              strcmp(out.data, "\xEF\xBF\xBD\xEF\xBF\xBDHello") == 0,
          "batch broken bytes: %s", out.data);
    g4_buf_free(&out);

    /* Round trips, including characters only byte fallback can spell and invalid UTF-8 (which becomes bytes). */
    const char *texts[] = {"Hello, world!",        "  indented\n\tcode();\n", "<|turn>user\nx<turn|>",
                           "日本語 🦜 Ünï", "\x01\x02\x7f control",    "\xF0\x9F\xAB\xA9 \xE2\x83\xA2"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        check_round_trip(t, texts[i], strlen(texts[i]), texts[i]);
    g4_ids ids2 = {0};
    const char invalid[] = "ok\xff\xfe\xc0\x80 \xed\xa0\x80z";
    CHECK(g4_tokenizer_encode(t, invalid, sizeof invalid - 1, &ids2, &err) == 0, "invalid UTF-8 encodes: %s", err.msg);
    int bytes = 0;
    for (size_t i = 0; i < ids2.n; i++) bytes += ids2.v[i] >= 238 && ids2.v[i] < 494;
    CHECK(bytes >= 7, "invalid bytes went to byte fallback (%d)", bytes);
    g4_ids_free(&ids2);
}

/* Long inputs: one pre-token of 400 KB must not take quadratic time. */
static void test_long_input(const g4_tokenizer *t) {
    size_t n = 400000;
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++) s[i] = "abcdefgh ijk"[(i * 7 + i / 13) % 12];
    s[n] = '\0';
    g4_ids ids = {0};
    g4_err err = {0};
    double t0 = now_s();
    int rc = g4_tokenizer_encode(t, s, n, &ids, &err);
    double dt = now_s() - t0;
    CHECK(rc == 0 && ids.n > 0, "long encode: %s", err.msg);
    printf("encoded %zu bytes into %zu tokens in %.3f s\n", n, ids.n, dt);
    CHECK(dt < 2.0, "long input took %.2f s", dt);
    check_round_trip(t, s, n, "long text");
    g4_ids_free(&ids);
    free(s);
}

static void test_byte_level(void) {
    g4_special_token extra[] = {{"<|image|>", 502}, {"<|audio|>", 506}, {"<image|>", 501}};
    g4_tokenizer *t = NULL;
    g4_err err = {0};
    int rc = g4_tokenizer_byte_level(512, extra, 3, &t, &err);
    CHECK(rc == 0, "byte level: %s", err.msg);
    if (rc) return;
    CHECK(g4_tokenizer_vocab_size(t) == 512, "byte level vocab");
    CHECK(g4_tokenizer_find(t, "<|turn>") == 105 && g4_tokenizer_find(t, "<bos>") == 2 &&
              g4_tokenizer_find(t, "<|image|>") == 502 && g4_tokenizer_find(t, "<|\"|>") == 52,
          "byte level specials");
    const char *text = "<bos><|turn>user\n<|image|>Hé<turn|>";
    g4_ids ids = {0};
    CHECK(g4_tokenizer_encode(t, text, strlen(text), &ids, &err) == 0, "byte level encode: %s", err.msg);
    int32_t want[] = {2,          105, 238 + 'u', 238 + 's',  238 + 'e',  238 + 'r',
                      238 + '\n', 502, 238 + 'H', 238 + 0xC3, 238 + 0xA9, 106};
    CHECK(ids_equal(ids.v, ids.n, want, sizeof want / sizeof want[0]), "byte level ids");
    if (!ids_equal(ids.v, ids.n, want, sizeof want / sizeof want[0])) print_ids("got", ids.v, ids.n);
    g4_buf out = {0};
    CHECK(g4_tokenizer_decode(t, ids.v, ids.n, 0, &out, &err) == 0 && strcmp(out.data, text) == 0,
          "byte level decode: %s", out.data);
    g4_buf_reset(&out);
    CHECK(g4_tokenizer_decode(t, ids.v, ids.n, 1, &out, &err) == 0 && strcmp(out.data, "user\nHé") == 0,
          "byte level skip special: %s", out.data);
    g4_buf_reset(&out);
    int32_t other[] = {7, 511};
    CHECK(g4_tokenizer_decode(t, other, 2, 0, &out, &err) == 0 && strcmp(out.data, "<id_7><id_511>") == 0,
          "placeholder ids: %s", out.data);
    const char any[] = "tab\there \x00 nul \xC3\xA9 \xF0\x9F\xA6\x9C";
    check_round_trip(t, any, sizeof any - 1, "byte level bytes");
    g4_buf_free(&out);
    g4_ids_free(&ids);
    g4_tokenizer_free(t);

    CHECK(g4_tokenizer_byte_level(493, NULL, 0, &t, &err) == GEMMA4C_ERR_ARG && t == NULL, "byte level too small");
    g4_special_token clash[] = {{"<x>", 300}};
    CHECK(g4_tokenizer_byte_level(512, clash, 1, &t, &err) == GEMMA4C_ERR_ARG, "extra on a byte id");
    g4_special_token outside[] = {{"<x>", 512}};
    CHECK(g4_tokenizer_byte_level(512, outside, 1, &t, &err) == GEMMA4C_ERR_ARG, "extra outside the vocab");
}

static g4_tokenizer *parse_ok(const char *json, const char *what) {
    g4_tokenizer *t = NULL;
    g4_err err = {0};
    int rc = g4_tokenizer_parse(json, strlen(json), &t, &err);
    CHECK(rc == 0, "%s: %s", what, err.msg);
    return t;
}

static void expect_ids(const g4_tokenizer *t, const char *text, const int32_t *want, size_t n, const char *what) {
    g4_ids ids = {0};
    g4_err err = {0};
    int rc = g4_tokenizer_encode(t, text, strlen(text), &ids, &err);
    int ok = rc == 0 && ids_equal(ids.v, ids.n, want, n);
    CHECK(ok, "%s: \"%s\" (%s)", what, text, err.msg);
    if (!ok) {
        print_ids("want", want, n);
        print_ids("got ", ids.v, ids.n);
    }
    g4_ids_free(&ids);
}

static void expect_text(const g4_tokenizer *t, const int32_t *ids, size_t n, const char *want, const char *what) {
    g4_buf out = {0};
    g4_err err = {0};
    int rc = g4_tokenizer_decode(t, ids, n, 0, &out, &err);
    CHECK(rc == 0 && strcmp(out.data ? out.data : "", want) == 0, "%s: \"%s\" (%s)", what, out.data ? out.data : "",
          err.msg);
    g4_buf_free(&out);
}

/* Small hand-made files for the parts the Gemma files do not use; expected ids worked out from the library's rules. */
#define SMALL_VOCAB                                                                                                    \
    "\"vocab\":{\"<unk>\":0,\"a\":1,\"b\":2,\"c\":3,\"ab\":4,\"bc\":5,\"abc\":6,\"_\":7,\"_a\":8,\"<0x41>\":9,"        \
    "\"<0x42>\":10,\"d\":11,\"cd\":12}"

static void test_small_files(void) {
    /* Merges as "a b" strings and as pairs give the same model; ties go by rank, then leftmost. */
    const char *pairs =
        "{\"model\":{\"type\":\"BPE\"," SMALL_VOCAB ",\"merges\":[[\"b\",\"c\"],[\"a\",\"b\"],[\"a\",\"bc\"]]}}";
    const char *strs = "{\"model\":{\"type\":\"BPE\"," SMALL_VOCAB ",\"merges\":[\"b c\",\"a b\",\"a bc\"]}}";
    g4_tokenizer *t1 = parse_ok(pairs, "pair merges"), *t2 = parse_ok(strs, "string merges");
    int32_t w1[] = {6, 1};
    int32_t w2[] = {4, 4};
    if (t1 && t2) {
        expect_ids(t1, "abca", w1, 2, "pairs abc");
        expect_ids(t2, "abca", w1, 2, "strings abc");
        expect_ids(t1, "abab", w2, 2, "pairs abab");
        /* No unk token and no byte fallback: unknown characters vanish, as in the library. */
        int32_t w3[] = {1, 3};
        expect_ids(t1, "axc", w3, 2, "dropped unknown");
        /* Without a decoder the library joins tokens with spaces. */
        int32_t d[] = {6, 1};
        expect_text(t1, d, 2, "abc a", "no decoder");
    }
    g4_tokenizer_free(t1);
    g4_tokenizer_free(t2);

    /* unk with and without fuse_unk; byte fallback where <0xNN> exists. */
    const char *unk =
        "{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":false,\"byte_fallback\":true," SMALL_VOCAB
        ",\"merges\":[]}}";
    const char *fused =
        "{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true," SMALL_VOCAB ",\"merges\":[]}}";
    t1 = parse_ok(unk, "unk");
    t2 = parse_ok(fused, "fused unk");
    if (t1 && t2) {
        /* The library adds byte-fallback tokens before a pending <unk> (flushed by the next known character). */
        int32_t w[] = {1, 0, 9, 0, 2};
        expect_ids(t1, "axyAb", w, 5, "unk per char, byte fallback for A");
        int32_t wf[] = {1, 0, 2};
        expect_ids(t2, "axyb", wf, 3, "fused unk");
    }
    g4_tokenizer_free(t1);
    g4_tokenizer_free(t2);

    /* Normalizer Sequence (Replace + Prepend), decoder Replace + Strip, added tokens with lstrip / rstrip /
     * single_word / normalized. */
    const char *full =
        "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"_\"},"
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"_\"}]},"
        "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"_\"},\"behavior\":\"MergedWithNext\","
        "\"invert\":false},"
        "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"_\"},"
        "\"content\":\" \"},"
        "{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
        "\"added_tokens\":[{\"id\":20,\"content\":\"[X]\",\"special\":true,\"lstrip\":true,\"rstrip\":true,"
        "\"normalized\":false,"
        "\"single_word\":false},{\"id\":21,\"content\":\"cat\",\"special\":false,\"single_word\":true,\"normalized\":"
        "false,"
        "\"lstrip\":false,\"rstrip\":false},{\"id\":22,\"content\":\"d d\",\"special\":false,\"normalized\":true,"
        "\"single_word\":false,\"lstrip\":false,\"rstrip\":false}],"
        "\"model\":{\"type\":\"BPE\"," SMALL_VOCAB ",\"merges\":[\"_ a\",\"a b\"]}}";
    t1 = parse_ok(full, "full pipeline");
    if (t1) {
        /* [X] eats the spaces around it; each side is normalized on its own ("_ab", and "_ a" outranks "a b"). */
        int32_t w[] = {8, 2, 20, 8, 2};
        expect_ids(t1, "ab [X]  ab", w, 5, "lstrip/rstrip");
        /* "cat" only as a whole word: inside "acat" it stays text: " acat" -> "__acat" -> "_", "_acat" (t unknown,
         * dropped). */
        int32_t w2[] = {21, 7, 8, 3, 1};
        expect_ids(t1, "cat acat", w2, 5, "single_word");
        /* "d d" is matched after normalization, in its normalized form "_d_d" (Prepend applies to it too). */
        int32_t w3[] = {8, 22};
        expect_ids(t1, "a d d", w3, 2, "normalized added token");
        int32_t d[] = {8, 4, 7, 1};
        expect_text(t1, d, 4, "aab a", "decoder Strip removes the first space");
        /* As in the library, a normalized added token decodes from its normalized text ("_d_d"). */
        int32_t dd[] = {22};
        expect_text(t1, dd, 1, "d d", "normalized added token decodes");
        CHECK(g4_tokenizer_is_special(t1, 20) && !g4_tokenizer_is_special(t1, 21), "added special flags");
        CHECK(g4_tokenizer_find(t1, "[X]") == 20 && g4_tokenizer_vocab_size(t1) == 23, "added ids");
    }
    g4_tokenizer_free(t1);

    /* Split behaviours on "a_b__c" with pattern "_". */
    static const char *const behaviors[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                            "Contiguous"};
    const int32_t want[5][8] = {
        {1, 2, 3}, {1, 7, 2, 7, 7, 3}, {1, 7, 2, 7, 7, 3}, {1, 7, 2, 7, 7, 3}, {1, 7, 2, 7, 7, 3}};
    const size_t want_n[5] = {3, 6, 6, 6, 6};
    for (int b = 0; b < 5; b++) {
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"_\"},\"behavior\":\"%s\",\"invert\":"
                 "false},"
                 "\"model\":{\"type\":\"BPE\"," SMALL_VOCAB ",\"merges\":[\"_ a\",\"a b\",\"b c\"]}}",
                 behaviors[b]);
        g4_tokenizer *t = parse_ok(json, behaviors[b]);
        /* With merges _a / ab, the split decides what can merge: "_a" only forms when "_" and "a" share a piece. */
        if (t) expect_ids(t, "a_b__c", want[b], want_n[b], behaviors[b]);
        g4_tokenizer_free(t);
    }
    /* MergedWithNext keeps "_" with the following "a": "_a" merges; MergedWithPrevious does not. */
    const char *mwn =
        "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"_\"},\"behavior\":\"MergedWithNext\"},"
        "\"model\":{\"type\":\"BPE\"," SMALL_VOCAB ",\"merges\":[\"_ a\",\"a b\"]}}";
    const char *mwp =
        "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"_\"},\"behavior\":\"MergedWithPrevious\"},"
        "\"model\":{\"type\":\"BPE\"," SMALL_VOCAB ",\"merges\":[\"_ a\",\"a b\"]}}";
    t1 = parse_ok(mwn, "MergedWithNext");
    t2 = parse_ok(mwp, "MergedWithPrevious");
    if (t1 && t2) {
        int32_t wn[] = {2, 8, 2};
        int32_t wp[] = {2, 7, 4};
        expect_ids(t1, "b_ab", wn, 3, "MergedWithNext");
        expect_ids(t2, "b_ab", wp, 3, "MergedWithPrevious");
    }
    g4_tokenizer_free(t1);
    g4_tokenizer_free(t2);
}

static void expect_error(const char *json, size_t n, int code, const char *what) {
    g4_tokenizer *t = (g4_tokenizer *)1;
    g4_err err = {0};
    int rc = g4_tokenizer_parse(json, n, &t, &err);
    CHECK(rc != 0 && t == NULL && err.msg[0], "%s: parsed (rc %d)", what, rc);
    if (code) CHECK(rc == code, "%s: rc %d, want %d (%s)", what, rc, code, err.msg);
}

static void test_hostile(const char *golden) {
    const int F = GEMMA4C_ERR_FORMAT, U = GEMMA4C_ERR_UNSUPPORTED;
    const char *base = "{\"model\":{\"type\":\"BPE\"," SMALL_VOCAB ",\"merges\":[\"a b\"]},"
                       "\"added_tokens\":[{\"id\":20,\"content\":\"<s>\",\"special\":true}],"
                       "\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"_\"}}";
    g4_tokenizer *ok = parse_ok(base, "hostile base");
    g4_tokenizer_free(ok);
    /* Every truncation of a valid file is an error. */
    size_t n = strlen(base);
    for (size_t k = 0; k < n; k++) expect_error(base, k, F, "truncated");
    struct {
        const char *json;
        int code;
        const char *what;
    } cases[] = {
        {"", F, "empty"},
        {"[]", F, "array document"},
        {"{}", F, "no model"},
        {"{\"model\":null}", F, "null model"},
        {"{\"model\":1}", F, "model is a number"},
        {"{\"model\":{\"type\":\"BPE\",\"merges\":[]}}", F, "no vocab"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}", F, "no merges"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":[\"a\"],\"merges\":[]}}", F, "vocab array"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", F, "negative id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5},\"merges\":[]}}", F, "fractional id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"1\"},\"merges\":[]}}", F, "string id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":4294967296},\"merges\":[]}}", F, "huge id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":2000000000},\"merges\":[]}}", F, "id far past the vocab"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", F, "duplicate id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"a\":1},\"merges\":[]}}", F, "duplicate text"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a z\"]}}", F, "merge token missing"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a\"]}}", F, "merge result missing"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"aa\"]}}", F, "merge without space"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\"]]}}", F, "merge pair of one"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1},\"merges\":[\"a a a\"]}}", F,
         "merge with two spaces"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Sequence\","
         "\"normalizers\":[null]}}",
         F, "null inside a Sequence"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[1]}}", F, "merge number"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Sequence\"}}",
         F, "Sequence without its list"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"decoder\":{\"type\":\"Sequence\","
         "\"decoders\":[3]}}",
         F, "a number inside a Sequence"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"decoder\":"
         "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Sequence\",\"decoders\":["
         "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Sequence\",\"decoders\":["
         "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Sequence\",\"decoders\":["
         "]}]}]}]}]}]}]}]}]}}",
         F, "Sequences nested 9 deep"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":{\"a\":0},\"merges\":[]}}", U, "unigram"},
        {"{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{\"a\":0},\"merges\":[]}}", U, "dropout"},
        {"{\"model\":{\"type\":\"BPE\",\"byte_fallback\":1,\"vocab\":{\"a\":0},\"merges\":[]}}", F, "bool as number"},
        {"{\"model\":{\"type\":\"BPE\",\"unk_token\":5,\"vocab\":{\"a\":0},\"merges\":[]}}", F, "unk number"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"model\":{}}", F, "duplicate model"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"added_tokens\":{}}", F, "added not array"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"added_tokens\":[{\"id\":1}]}", F,
         "added no content"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"added_tokens\":[{\"id\":-3,\"content\":"
         "\"x\"}]}",
         F, "added negative id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"added_tokens\":[{\"id\":1e12,\"content\":"
         "\"x\"}]}",
         F, "added huge id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"added_tokens\":[{\"id\":0,\"content\":"
         "\"x\"}]}",
         F, "added id taken"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"added_tokens\":[{\"id\":1,\"content\":"
         "\"x\",\"special\":\"yes\"}]}",
         F, "added flag string"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"NFKC\"}}", U,
         "NFKC"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Replace\","
         "\"pattern\":{\"Regex\":\"\\\\s+\"},\"content\":\"_\"}}",
         U, "regex"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Replace\","
         "\"pattern\":{\"String\":\"\"},\"content\":\"_\"}}",
         F, "empty pattern"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Replace\"}}", F,
         "replace without pattern"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":[1]}", F, "normalizer array"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
         U, "ByteLevel"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\","
         "\"pattern\":{\"String\":\" \"},\"behavior\":\"Sideways\"}}",
         F, "bad behavior"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"decoder\":{\"type\":\"Metaspace\"}}", U,
         "Metaspace decoder"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"decoder\":{\"type\":\"Strip\",\"content\":"
         "\"ab\",\"start\":1,\"stop\":0}}",
         F, "strip of two chars"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"decoder\":{\"type\":7}}", F,
         "decoder type number"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}} x", F, "trailing garbage"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"\\ud800\":0},\"merges\":[]}}", F, "lone surrogate"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\\q\":0},\"merges\":[]}}", F, "bad escape"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,},\"merges\":[]}}", F, "trailing comma"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"x\":[01]}", F, "leading zero"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"\xff\":0},\"merges\":[]}}", F, "invalid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i].json, strlen(cases[i].json), cases[i].code, cases[i].what);

    /* Deep nesting in an ignored field. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 64);
    size_t k = 0;
    k += (size_t)sprintf(deep, "{\"x\":");
    for (size_t i = 0; i < depth; i++) deep[k++] = '[';
    for (size_t i = 0; i < depth; i++) deep[k++] = ']';
    deep[k++] = '}';
    expect_error(deep, k, F, "deep nesting");
    free(deep);

    /* Files: a missing one, an empty one, a truncated gzip. */
    g4_tokenizer *t = NULL;
    g4_err err = {0};
    CHECK(g4_tokenizer_load("/nonexistent/tokenizer.json", &t, &err) == GEMMA4C_ERR_IO && !t, "missing file");
    char path[4200];
    snprintf(path, sizeof path, "/tmp/g4_test_tokenizer_%d.json", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (f) fclose(f);
    CHECK(g4_tokenizer_load(path, &t, &err) != 0 && !t, "empty file");
    char gz[4200];
    snprintf(gz, sizeof gz, "%s/tokenizers/gemma3-tokenizer.json.gz", golden);
    char *data = NULL;
    size_t n_gz = 0;
    if (g4_read_file(gz, 64u << 20, &data, &n_gz, &err) == 0) {
        f = fopen(path, "wb");
        if (f) {
            fwrite(data, 1, n_gz / 2, f);
            fclose(f);
        }
        CHECK(g4_tokenizer_load(path, &t, &err) == F && !t, "truncated gzip: %s", err.msg);
        data[n_gz / 3] ^= 0x55;
        f = fopen(path, "wb");
        if (f) {
            fwrite(data, 1, n_gz, f);
            fclose(f);
        }
        CHECK(g4_tokenizer_load(path, &t, &err) != 0 && !t, "corrupt gzip");
        free(data);
    }
    remove(path);
}

int main(void) {
    const char *golden = g4t_require_golden();
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny/reference/tokenizer.json", golden);
    cJSON *ref = read_json(path);
    if (ref) {
        g4_tokenizer *g3 = NULL, *g4 = NULL;
        test_golden_file(golden, ref, "gemma3", "gemma3-tokenizer.json.gz", &g3);
        test_golden_file(golden, ref, "gemma4_reconstructed", "gemma4-reconstructed-tokenizer.json.gz", &g4);
        if (g4) {
            test_chat_ids(g4, golden);
            test_special_and_streaming(g4);
            test_long_input(g4);
        }
        g4_tokenizer_free(g3);
        g4_tokenizer_free(g4);
        cJSON_Delete(ref);
    }
    test_byte_level();
    test_small_files();
    test_hostile(golden);
    return g4t_finish("test_tokenizer");
}
