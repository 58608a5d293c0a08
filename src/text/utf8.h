/* utf8.h — UTF-8: the one encoder and decoder of code points, strict as Unicode's table 3-7 of well-formed bytes. */
#ifndef G4_UTF8_H
#define G4_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Well-formed means: no overlong forms (C0, C1, E0 80-9F.., F0 80-8F..), no surrogates (ED A0-BF..), nothing above
 * U+10FFFF (F4 90-BF.., F5-FF), no stray continuation bytes, no truncated sequences. What to do with ill-formed
 * bytes is the caller's choice (byte fallback, U+FFFD, Python's surrogateescape), so the decoder only says so. */

/* The length a first byte announces: 1 for ASCII, 2-4 for C2-DF, E0-EF, F0-F4, and 0 for a byte that starts no
 * well-formed character (80-BF, C0, C1, F5-FF). */
size_t g4_utf8_lead_len(unsigned char lead);

/* Whether c can be byte `at` (1, 2 or 3) of a well-formed character that starts with `lead`: 80-BF, narrowed for
 * the second byte after E0 (A0-BF), ED (80-9F), F0 (90-BF) and F4 (80-8F). */
bool g4_utf8_continues(unsigned char lead, size_t at, unsigned char c);

/* The length (1-4) of the well-formed character at the start of s[0..n), or 0 when there is none (n == 0 too). */
size_t g4_utf8_len(const char *s, size_t n);

/* Decodes the character at the start of s[0..n) into *cp and returns its length, or returns 0 (and leaves *cp
 * alone) when the bytes there are not a well-formed character. */
size_t g4_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Writes the 1-4 bytes of code point cp and returns how many; 0 (nothing written) for a surrogate or a value
 * above U+10FFFF, which have no UTF-8 form. */
size_t g4_utf8_encode(uint32_t cp, char out[4]);

/* Whether all of s[0..n) is well-formed UTF-8. */
bool g4_utf8_valid(const char *s, size_t n);

#endif
