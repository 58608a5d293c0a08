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

/* A prefix of a JSON text (RFC 8259) whose one value is an object, with no whitespace before it or after it, and
 * whose strings hold whole characters (UTF-8 ones, \u escapes with UTF-16 surrogates only in pairs). A zeroed
 * struct is the empty prefix. Small and flat: a caller tries a token on a copy. */
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
/* What one byte did, for a layer that checks more than syntax (json_schema.c), in the order it happened. */
enum {
    G4_JEV_BEGIN = 1,  /* a value starts with this byte */
    G4_JEV_END,        /* a value ends with this byte: a string's quote, a literal's last letter, a closer */
    G4_JEV_END_BEFORE, /* a number ended just before this byte */
    G4_JEV_KEY,        /* an object key starts with this quote */
    G4_JEV_KEY_END,    /* the key ends with this quote */
    G4_JEV_COMMA       /* another member or item follows */
};
typedef struct g4_json_events {
    int n;
    uint8_t ev[4];
} g4_json_events;
/* g4_json_feed of one byte, telling what it did: nothing (inside a key or a value, or whitespace) or ev[0..n). */
int g4_json_feed_byte(g4_json_state *s, unsigned char c, g4_json_events *ev);
/* The string being read (g4_json_in_string) is an object key. */
int g4_json_in_key(const g4_json_state *s);
/* The object is complete: nothing may follow. */
int g4_json_complete(const g4_json_state *s);
/* Inside a string, between whole characters and escapes (where the text of most tokens fits as it is). */
int g4_json_in_string(const g4_json_state *s);

#endif
