/* fuzz_schema.c — libFuzzer harness: JSON schemas through the compiler, then text through the constraint it makes. */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "runtime/json_schema.h"

/* The input is a schema, a NUL byte, then text for it (fuzz/seeds/schema holds real ones).
 *
 * Checked: a refused schema gets one line starting "json_schema: "; with an accepted one, every prefix of the
 * text that the constraint takes can still be finished: a walk that prefers closing bytes never meets a text no
 * byte continues, and when it reaches a whole object (inside a pattern it may not), cJSON reads an object. */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int allowed(const g4_schema *sc, const g4_schema_state *s, unsigned char c) {
    g4_schema_state t;
    g4_schema_copy(&t, s);
    return !g4_schema_feed(sc, &t, &c, 1);
}

/* The next byte of the walk: a closer if one fits, else the highest digit (toward a bounded number's maximum,
 * which a number of zeros might never reach), else a plain byte, else a comma, else anything (-1: none). */
static int next_byte(const g4_schema *sc, const g4_schema_state *s) {
    static const char closers[] = "\"}]9876543210"; /* a quote first: inside a string, a brace is text */
    for (const char *p = closers; *p; p++)
        if (allowed(sc, s, (unsigned char)*p)) return (unsigned char)*p;
    int fallback = -1;
    for (int c = 0; c < 256; c++) {
        if (!allowed(sc, s, (unsigned char)c)) continue;
        if (!strchr(",[{ \t\r\n", c) || !c) return c;
        if (fallback < 0 || c == ',') fallback = c;
    }
    return fallback;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    const size_t schema_len = nul ? (size_t)(nul - data) : size;
    g4_err err = {0};
    g4_schema *sc = g4_schema_compile((const char *)data, schema_len, &err);
    if (!sc) {
        if (strncmp(err.msg, "json_schema: ", 13) || strchr(err.msg, '\n')) __builtin_trap();
        return 0;
    }
    static g4_schema_state s;
    memset(&s, 0, sizeof s);
    const uint8_t *text = nul ? nul + 1 : data + size;
    const size_t text_len = (size_t)(data + size - text) < 4096 ? (size_t)(data + size - text) : 4096;
    static char out[1 << 14]; /* enough to close any accepted prefix of 4096 bytes; a walk lost in a pattern gives up */
    size_t n = 0;
    for (size_t i = 0; i < text_len; i++) {
        g4_schema_state before;
        g4_schema_copy(&before, &s);
        if (g4_schema_feed(sc, &s, text + i, 1)) {
            g4_schema_copy(&s, &before);
            break;
        }
        out[n++] = (char)text[i];
    }
    while (!g4_json_complete(&s.syntax)) {
        const int c = next_byte(sc, &s);
        if (c < 0) __builtin_trap(); /* an accepted prefix that cannot be finished */
        if (n == sizeof out) { /* a walk this simple need not find the way out of a pattern: not a failure */
            g4_schema_free(sc);
            return 0;
        }
        const unsigned char b = (unsigned char)c;
        g4_schema_feed(sc, &s, &b, 1);
        out[n++] = (char)c;
    }
    cJSON *parsed = cJSON_ParseWithLength(out, n);
    if (!cJSON_IsObject(parsed)) __builtin_trap();
    cJSON_Delete(parsed);
    g4_schema_free(sc);
    return 0;
}
