/* fuzz_tokenizer.c — libFuzzer harness: bytes as a tokenizer.json (then used), or as text for fixed tokenizers. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every stage the Gemma files use plus the ones they do not (Prepend, Split behaviours, Strip, unk, added-token
 * flags), so that arbitrary text reaches all of the encoder. */
static const char FIXED_TOKENIZER[] =
    "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"String\":\"\\n\"},"
    "\"behavior\":\"Isolated\"},{\"type\":\"Split\",\"pattern\":{\"String\":\"\\u2581\"},\"behavior\":"
    "\"MergedWithNext\","
    "\"invert\":true}]},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},"
    "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" "
    "\",\"start\":1,"
    "\"stop\":1}]},"
    "\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
    "{\"id\":1,\"content\":\"<s>\",\"special\":true,\"lstrip\":true,\"rstrip\":true,\"normalized\":false},"
    "{\"id\":300,\"content\":\"ab\",\"single_word\":true,\"normalized\":false},"
    "{\"id\":301,\"content\":\"x y\",\"normalized\":true}],"
    "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,"
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"a\":2,\"b\":3,\"ab\":4,\"\\u2581\":5,\"\\u2581a\":6,\"\\u2581ab\":7,\"\\n\":8,"
    "\"<0x41>\":9,\"<0xC3>\":10,\"<0xA9>\":11,\"<0xE2>\":12,\"<0x96>\":13,\"<0x81>\":14,\"x\":15,\"y\":16},"
    "\"merges\":[\"a b\",[\"\\u2581\",\"a\"],[\"\\u2581a\",\"b\"]]}}";

static void exercise(const g4_tokenizer *t, const char *text, size_t n) {
    g4_ids ids = {0};
    g4_err err = {0};
    int vocab = g4_tokenizer_vocab_size(t);
    if (g4_tokenizer_encode(t, text, n, &ids, &err) == 0) {
        for (size_t i = 0; i < ids.n; i++)
            if (ids.v[i] < 0 || ids.v[i] >= vocab) __builtin_trap();
        g4_buf out = {0};
        for (int skip = 0; skip < 2; skip++) {
            if (g4_tokenizer_decode(t, ids.v, ids.n, skip, &out, &err) != 0) __builtin_trap();
            g4_detok d;
            g4_detok_init(&d, t, skip);
            for (size_t i = 0; i < ids.n; i++)
                if (g4_detok_feed(&d, ids.v[i], &out, &err) != 0) __builtin_trap();
            g4_detok_flush(&d, &out);
        }
        g4_buf_free(&out);
    }
    g4_ids_free(&ids);
    /* Ids straight from the input: unknown ones must be refused, known ones decoded. */
    int32_t raw[16];
    size_t k = n / 4 < 16 ? n / 4 : 16;
    memcpy(raw, text, k * 4);
    g4_buf out = {0};
    g4_tokenizer_decode(t, raw, k, 0, &out, &err);
    g4_detok d;
    g4_detok_init(&d, t, 0);
    for (size_t i = 0; i < k; i++) g4_detok_feed(&d, raw[i] % (vocab + 1), &out, &err);
    g4_detok_flush(&d, &out);
    g4_buf_free(&out);
    (void)g4_tokenizer_find(t, "<s>");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    g4_tokenizer *t = NULL;
    g4_err err = {0};
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if ((data[0] & 3) == 3) {
        /* The input is text for the byte-level fallback tokenizer. */
        const g4_special_token extra[] = {{"<|image|>", 502}, {"<|audio|>", 506}};
        if (g4_tokenizer_byte_level(512, extra, 2, &t, &err) != 0) __builtin_trap();
        exercise(t, rest, n);
    } else if (data[0] & 1) {
        /* The input is text for the fixed tokenizer. */
        if (g4_tokenizer_parse(FIXED_TOKENIZER, sizeof FIXED_TOKENIZER - 1, &t, &err) != 0) __builtin_trap();
        exercise(t, rest, n);
    } else if (g4_tokenizer_parse(rest, n, &t, &err) == 0) {
        /* The input is a tokenizer.json: run it over its own text and a few fixed strings. */
        static const char *const texts[] = {"Hello world", "  <s> ab ab\n\nx y", "\xff\xfe invalid \xe2\x96", ""};
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) exercise(t, texts[i], strlen(texts[i]));
        exercise(t, rest, n < 4096 ? n : 4096);
    } else if (err.msg[0] == '\0') {
        __builtin_trap(); /* a failure must say why */
    }
    g4_tokenizer_free(t);
    return 0;
}
