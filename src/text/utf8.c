/* utf8.c — UTF-8: the one encoder and decoder of code points, strict as Unicode's table 3-7 of well-formed bytes. */
#include "text/utf8.h"

#include <string.h>

size_t g4_utf8_lead_len(unsigned char lead) {
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 0;
}

bool g4_utf8_continues(unsigned char lead, size_t at, unsigned char c) {
    unsigned lo = 0x80, hi = 0xBF;
    if (at == 1) {
        if (lead == 0xE0) lo = 0xA0; /* overlong below U+0800 */
        if (lead == 0xED) hi = 0x9F; /* surrogates U+D800..U+DFFF */
        if (lead == 0xF0) lo = 0x90; /* overlong below U+10000 */
        if (lead == 0xF4) hi = 0x8F; /* above U+10FFFF */
    }
    return c >= lo && c <= hi;
}

size_t g4_utf8_len(const char *s, size_t n) {
    if (n == 0) return 0;
    const unsigned char *u = (const unsigned char *)s;
    const size_t need = g4_utf8_lead_len(u[0]);
    if (need == 0 || n < need) return 0;
    for (size_t i = 1; i < need; i++)
        if (!g4_utf8_continues(u[0], i, u[i])) return 0;
    return need;
}

size_t g4_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const size_t k = g4_utf8_len(s, n);
    if (k == 0) return 0;
    static const unsigned char lead_bits[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    const unsigned char *u = (const unsigned char *)s;
    uint32_t v = u[0] & lead_bits[k];
    for (size_t i = 1; i < k; i++) v = (v << 6) | (u[i] & 0x3Fu);
    *cp = v;
    return k;
}

size_t g4_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF) return 0;
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool g4_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint64_t w;
        if (n - i >= 8 && (memcpy(&w, u + i, 8), (w & 0x8080808080808080ull) == 0)) { /* eight ASCII bytes */
            i += 8;
            continue;
        }
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        const size_t k = g4_utf8_len(s + i, n - i);
        if (k == 0) return false;
        i += k;
    }
    return true;
}
