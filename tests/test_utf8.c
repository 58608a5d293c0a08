/* test_utf8.c — the UTF-8 encoder and decoder (text/utf8): every code point, short byte sequences, ill-formed input. */
#include "test.h"

#include <stdint.h>

#include "text/utf8.h"

/* An independent decoder for comparison: take the bits the lead byte announces, then refuse what the standard
 * refuses (overlong forms, surrogates, values above U+10FFFF, bad continuation bytes, truncation). */
static size_t reference_decode(const unsigned char *u, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    size_t len = u[0] >= 0xF8 ? 0 : u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC0 ? 2 : 0;
    if (len == 0 || len > n) return 0;
    uint32_t c = u[0] & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (u[i] & 0x3Fu);
    }
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min_for_len[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}

static int mismatches;

static void compare(const unsigned char *u, size_t n) {
    uint32_t want = 0xFFFFFFFF, got = 0xFFFFFFFF;
    size_t kw = reference_decode(u, n, &want), kg = g4_utf8_decode((const char *)u, n, &got);
    size_t kl = g4_utf8_len((const char *)u, n);
    if (kw != kg || want != got || kl != kg) {
        if (mismatches++ < 10)
            CHECK(0, "%zu bytes %02x %02x %02x %02x: decoded %zu bytes U+%04X (len %zu), want %zu bytes U+%04X", n,
                  u[0], n > 1 ? u[1] : 0, n > 2 ? u[2] : 0, n > 3 ? u[3] : 0, kg, got, kl, kw, want);
    }
}

/* Every 1- and 2-byte input, every 3-byte input that starts a 3- or 4-byte character, and 4-byte inputs from
 * every lead byte F0-FF with every second byte and the boundary values of the others. */
static void test_against_reference(void) {
    unsigned char u[4] = {0};
    for (unsigned a = 0; a < 256; a++) {
        u[0] = (unsigned char)a;
        compare(u, 1);
        for (unsigned b = 0; b < 256; b++) {
            u[1] = (unsigned char)b;
            compare(u, 2);
            if (a < 0xE0) continue;
            for (unsigned c = 0; c < 256; c++) {
                u[2] = (unsigned char)c;
                compare(u, 3);
            }
        }
    }
    static const unsigned char edges[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xF4, 0xFF};
    const size_t ne = sizeof edges;
    for (unsigned a = 0xF0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++)
            for (size_t c = 0; c < ne; c++)
                for (size_t d = 0; d < ne; d++) {
                    u[0] = (unsigned char)a, u[1] = (unsigned char)b, u[2] = edges[c], u[3] = edges[d];
                    compare(u, 4);
                }
    CHECK(mismatches == 0, "%d inputs decode differently from the reference", mismatches);
}

/* Every scalar value encodes to the shortest form and decodes back; surrogates and values past U+10FFFF do not
 * encode at all. */
static void test_every_code_point(void) {
    int bad = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        char buf[4] = {0};
        size_t k = g4_utf8_encode(cp, buf);
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            bad += k != 0;
            continue;
        }
        size_t want = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        uint32_t back = 0xFFFFFFFF;
        if (k != want || g4_utf8_decode(buf, k, &back) != k || back != cp || !g4_utf8_valid(buf, k) ||
            g4_utf8_lead_len((unsigned char)buf[0]) != k || (k > 1 && g4_utf8_decode(buf, k - 1, &back) != 0)) {
            if (bad++ < 10) CHECK(0, "U+%04X: %zu bytes", cp, k);
        }
    }
    CHECK(bad == 0, "%d code points do not round-trip", bad);
    char buf[4] = {'x', 'x', 'x', 'x'};
    CHECK(g4_utf8_encode(0x110000, buf) == 0 && g4_utf8_encode(0xFFFFFFFF, buf) == 0 && buf[0] == 'x',
          "values past U+10FFFF have no form");
    CHECK(g4_utf8_encode(0xD800, buf) == 0 && g4_utf8_encode(0xDFFF, buf) == 0 && buf[0] == 'x', "surrogates");
    /* The boundaries, byte for byte. */
    struct {
        uint32_t cp;
        const char *bytes;
    } known[] = {{0, ""}, {0x7F, "\x7F"}, {0x80, "\xC2\x80"}, {0x7FF, "\xDF\xBF"}, {0x800, "\xE0\xA0\x80"},
                 {0xD7FF, "\xED\x9F\xBF"}, {0xE000, "\xEE\x80\x80"}, {0xFFFD, "\xEF\xBF\xBD"}, {0xFFFF, "\xEF\xBF\xBF"},
                 {0x10000, "\xF0\x90\x80\x80"}, {0x10FFFF, "\xF4\x8F\xBF\xBF"}};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
        size_t n = known[i].cp == 0 ? 1 : strlen(known[i].bytes);
        size_t k = g4_utf8_encode(known[i].cp, buf);
        CHECK(k == n && memcmp(buf, known[i].bytes, n) == 0, "U+%04X encodes to %zu bytes", known[i].cp, k);
    }
}

/* Ill-formed input: nothing decodes, nothing moves the output. */
static void test_ill_formed(void) {
    static const struct {
        const char *what, *bytes;
    } cases[] = {
        {"a lone continuation byte", "\x80"}, {"0xBF", "\xBF"}, {"overlong NUL", "\xC0\x80"},
        {"overlong 0x7F", "\xC1\xBF"}, {"overlong U+07FF", "\xE0\x9F\xBF"}, {"overlong U+FFFF", "\xF0\x8F\xBF\xBF"},
        {"overlong 5 bytes", "\xF8\x88\x80\x80\x80"}, {"high surrogate", "\xED\xA0\x80"},
        {"low surrogate", "\xED\xBF\xBF"}, {"a CESU-8 pair", "\xED\xA0\xBD\xED\xB2\xA9"},
        {"U+110000", "\xF4\x90\x80\x80"}, {"lead F5", "\xF5\x80\x80\x80"}, {"lead FF", "\xFF"},
        {"lead FE", "\xFE\xBF"}, {"truncated 2", "\xC3"}, {"truncated 3", "\xE2\x82"}, {"truncated 4", "\xF0\x9F\x98"},
        {"ASCII where a continuation belongs", "\xE2" "A\xAC"}, {"a lead where a continuation belongs", "\xC3\xC3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *s = cases[i].bytes;
        size_t n = strlen(s);
        uint32_t cp = 12345;
        CHECK(g4_utf8_decode(s, n, &cp) == 0 && cp == 12345 && g4_utf8_len(s, n) == 0, "%s decoded", cases[i].what);
        CHECK(!g4_utf8_valid(s, n), "%s valid", cases[i].what);
    }
    uint32_t cp = 12345;
    CHECK(g4_utf8_decode("A", 0, &cp) == 0 && cp == 12345 && g4_utf8_len("A", 0) == 0, "no bytes, no character");
    /* A well-formed character followed by anything decodes alone. */
    CHECK(g4_utf8_decode("\xC3\xA9\xFF", 3, &cp) == 2 && cp == 0xE9, "é then garbage");
    CHECK(g4_utf8_decode("\xED\x9F\xBF", 3, &cp) == 3 && cp == 0xD7FF, "the last code point before the surrogates");
}

static void test_lead_and_continuation(void) {
    for (unsigned c = 0; c < 256; c++) {
        size_t want = c < 0x80 ? 1 : c < 0xC2 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
        CHECK(g4_utf8_lead_len((unsigned char)c) == want, "lead %02X: %zu", c, g4_utf8_lead_len((unsigned char)c));
    }
    CHECK(g4_utf8_continues(0xE0, 1, 0xA0) && !g4_utf8_continues(0xE0, 1, 0x9F) && g4_utf8_continues(0xE0, 2, 0x80),
          "after E0");
    CHECK(g4_utf8_continues(0xED, 1, 0x9F) && !g4_utf8_continues(0xED, 1, 0xA0) && g4_utf8_continues(0xED, 2, 0xBF),
          "after ED");
    CHECK(g4_utf8_continues(0xF0, 1, 0x90) && !g4_utf8_continues(0xF0, 1, 0x8F), "after F0");
    CHECK(g4_utf8_continues(0xF4, 1, 0x8F) && !g4_utf8_continues(0xF4, 1, 0x90) && g4_utf8_continues(0xF4, 3, 0xBF),
          "after F4");
    CHECK(!g4_utf8_continues(0xC3, 1, 0x7F) && !g4_utf8_continues(0xC3, 1, 0xC0), "outside 80-BF");
}

/* The validator's eight-byte ASCII steps must not skip a bad byte at any offset. */
static void test_valid(void) {
    char s[64];
    memset(s, 'a', sizeof s);
    CHECK(g4_utf8_valid(s, sizeof s) && g4_utf8_valid(s, 0) && g4_utf8_valid(NULL, 0), "ASCII");
    for (size_t at = 0; at < sizeof s; at++) {
        memset(s, 'a', sizeof s);
        s[at] = (char)0xFF;
        CHECK(!g4_utf8_valid(s, sizeof s), "0xFF at %zu", at);
        CHECK(g4_utf8_valid(s, at), "the bytes before %zu", at);
        if (at + 2 <= sizeof s) {
            memcpy(s + at, "\xC3\xA9", 2);
            CHECK(g4_utf8_valid(s, sizeof s), "é at %zu", at);
            CHECK(at + 1 == sizeof s || !g4_utf8_valid(s, at + 1), "half an é at the end (%zu)", at);
        }
    }
    const char mixed[] = "Grüße, 世界! 😀 \xEF\xBF\xBD";
    CHECK(g4_utf8_valid(mixed, sizeof mixed - 1), "mixed text");
}

int main(void) {
    test_against_reference();
    test_every_code_point();
    test_ill_formed();
    test_lead_and_continuation();
    test_valid();
    return g4t_finish("test_utf8");
}
