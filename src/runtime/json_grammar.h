/* json_grammar.h — byte by byte, whether a text can still become one JSON object: JSON mode's constraint. */
#ifndef G4_JSON_GRAMMAR_H
#define G4_JSON_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

/* Nesting deeper than this is refused, as are whitespace runs and numbers longer than their limits: every
 * accepted text can still be closed, and no accepted text can go on forever outside a string. */
#define G4_JSON_MAX_DEPTH 64
#define G4_JSON_MAX_SPACE 64
#define G4_JSON_MAX_NUMBER 48

/* A prefix of a JSON text (RFC 8259) whose one value is an object, with no whitespace before it or after it. A
 * zeroed struct is the empty prefix. Small and flat: a caller tries a token on a copy. */
typedef struct g4_json_state {
    uint8_t mode;       /* what the next byte may be (json_grammar.c) */
    uint8_t depth;      /* open objects and arrays */
    uint8_t in_key;     /* the string being read is an object key */
    uint8_t left;       /* a literal's bytes still due, a \u escape's hex digits, or a character's UTF-8 bytes */
    uint8_t lo, hi;     /* the range of the next UTF-8 continuation byte */
    uint8_t run;        /* bytes of the current whitespace run or number */
    uint8_t literal;    /* which of true / false / null is being read */
    uint8_t is_object[G4_JSON_MAX_DEPTH / 8]; /* bit d: the container at depth d is an object (else an array) */
} g4_json_state;

/* Appends bytes: 0 when the text is still a prefix of a JSON object, -1 when not (s is then unspecified). */
int g4_json_feed(g4_json_state *s, const unsigned char *bytes, size_t n);
/* The object is complete: nothing may follow. */
int g4_json_complete(const g4_json_state *s);
/* Inside a string, between whole characters and escapes (where the text of most tokens fits as it is). */
int g4_json_in_string(const g4_json_state *s);

#endif
