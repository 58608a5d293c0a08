/* json_pattern.h — a JSON Schema "pattern" (an ECMA-262 regular expression, a subset) as an automaton stepped one
 * character at a time, for structured outputs. */
#ifndef G4_JSON_PATTERN_H
#define G4_JSON_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* At most 63 character positions once repetitions are written out ("\d{4}" is 4), so that where a text stands is
 * one 64-bit set. */
#define G4_PATTERN_MAX_POSITIONS 63

typedef struct g4_pattern g4_pattern;

/* Compiles `len` bytes of UTF-8. Understood: literal characters, '.', classes ([a-z0-9_], [^...]), \d \D \w \W \s
 * \S, the escapes \t \n \r \f \v \0 \xHH \uHHHH and escaped punctuation, groups ( ) and (?: ) and (?<name> ),
 * alternation, the quantifiers * + ? {n} {n,} {n,m} (lazy ones match the same strings), ^ at the start and $ at the
 * end. As JSON Schema says, the pattern may match anywhere in the string unless anchored. Refused, with the reason:
 * backreferences, lookaround, \b, \p{...}, anchors elsewhere, a pattern no string matches, one too large. NULL
 * with err set on failure (its message has no prefix; the caller adds where). */
g4_pattern *g4_pattern_compile(const char *re, size_t len, g4_err *err);
void g4_pattern_free(g4_pattern *p);

/* Where an empty string stands. */
uint64_t g4_pattern_start(const g4_pattern *p);
/* After one more character (a Unicode code point): 0 when no string going on so can match any more. */
uint64_t g4_pattern_step(const g4_pattern *p, uint64_t at, uint32_t code_point);
/* Whether some code point in [lo, hi] would step on (the rest of a character being written may be any of them). */
int g4_pattern_can_step(const g4_pattern *p, uint64_t at, uint32_t lo, uint32_t hi);
/* The positions some code point in [lo, hi] enters from `at` (0: none steps on). */
uint64_t g4_pattern_step_range(const g4_pattern *p, uint64_t at, uint32_t lo, uint32_t hi);
/* Whether any characters at all may follow now, the string still able to match (inside an unanchored pattern's
 * "anything before" or "anything after"). */
int g4_pattern_anything_goes(const g4_pattern *p, uint64_t at);
/* Whether the string read so far matches. */
int g4_pattern_accepts(const g4_pattern *p, uint64_t at);

/* Lengths (a pattern beside minLength or maxLength): up to G4_PATTERN_MAX_LENGTH more characters are looked at.
 * g4_pattern_count_lengths works out, once, how many characters from each position can end a match (-1: out of
 * memory); then g4_pattern_length_fits says whether some string going on from `at` matches after lo..hi more
 * characters (hi beyond the limit counts up to it), and g4_pattern_matches_all whether every string going on from
 * `at` matches (it matches, and whatever comes next enters a repeated "any character" that matches too). */
#define G4_PATTERN_MAX_LENGTH 4096
int g4_pattern_count_lengths(g4_pattern *p);
int g4_pattern_length_fits(const g4_pattern *p, uint64_t at, int64_t lo, int64_t hi);
int g4_pattern_matches_all(const g4_pattern *p, uint64_t at);
/* Whether a whole UTF-8 string (valid, NUL-terminated) matches. */
int g4_pattern_matches(const g4_pattern *p, const char *utf8);

#endif
