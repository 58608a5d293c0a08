/* json_schema.h — a JSON Schema (the subset structured outputs use) as a constraint checked byte by byte. */
#ifndef G4_JSON_SCHEMA_H
#define G4_JSON_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "runtime/json_grammar.h"

/* Bounds on what a schema may hold: a larger one is refused when compiled. */
#define G4_SCHEMA_MAX_NODES 1024
#define G4_SCHEMA_MAX_PROPERTIES 64 /* per object */
#define G4_SCHEMA_MAX_ENUM 64       /* values per enum */
#define G4_SCHEMA_MAX_TEXT 65536    /* bytes of a schema's property names and enum values together */

typedef struct g4_schema g4_schema;

/* Compiles a schema (JSON text, len bytes) whose instances are objects. Understood: type (one or a list: object,
 * array, string, number, integer, boolean, null), properties (generated in the order given; the required ones
 * always, the others when the model chooses), required, items, minItems, maxItems, minLength and maxLength (in
 * characters), pattern (json_pattern.h; beside a length, at most G4_PATTERN_MAX_LENGTH characters), minimum,
 * maximum, exclusiveMinimum and exclusiveMaximum (a bounded number has no exponent and fits G4_JSON_MAX_NUMBER
 * characters), uniqueItems (for items that are
 * enum or const values: each value once, 1 and 1.0 being one), multipleOf (a whole number,
 * not beside bounds or enum; such numbers are integers of at most 15 digits), enum, const, anyOf (alternatives of
 * one type, such as two objects, are followed side by side until the text tells them apart; past
 * G4_SCHEMA_MAX_PATHS readings at once the later alternatives are left out), oneOf (as anyOf, where alternatives
 * of one type differ in a required property's const or enum values: a discriminator), allOf of one
 * schema, $ref to "#" or a JSON
 * pointer into the document ($defs, definitions), recursion included. An object without properties, an array
 * without items or an empty schema take any JSON value of that kind. Annotations (title, description, format,
 * default, examples...) are ignored; a keyword that restricts values and is not enforced here (contains,
 * not...) is refused: an answer never violates the schema, and every text it takes can still be finished
 * within JSON mode's nesting limit (a schema whose instances cannot is refused). Only declared properties are
 * generated, whatever additionalProperties says. NULL with err set on failure. */
g4_schema *g4_schema_compile(const char *text, size_t len, g4_err *err);
void g4_schema_free(g4_schema *s);

/* Where a text stands: the JSON syntax and, per open value, what the schema expects of it. A zeroed struct is the
 * empty text. Copy with g4_schema_copy (only the frames in use). */
typedef struct g4_schema_frame {
    int32_t node;   /* the value's node; -1: any value */
    uint8_t kind;   /* json_schema.c's F_* */
    uint8_t in_key; /* an object: its key is being read */
    uint8_t integer;
    uint8_t scalar; /* a value checked as it is written: G4_NUM_* for a number with bounds (json_number.c: its digits
                       in count and pos, comparisons in mask), json_schema.c's STR_PATTERN for a string with a
                       pattern (the character being decoded in count and pos, the pattern's positions in mask) */
    uint32_t count; /* an object: the index of the next property that may come; an array: items begun; any: values
                       open; a string: characters so far (up to its minLength when it has no maxLength); a bounded
                       number: its integer digits; a number with multipleOf: its digits (their value modulo the
                       multiple in mask) */
    uint16_t pos;   /* bytes of the key or the enum text matched; a bounded number: its fraction digits */
    uint16_t prop;  /* an object: the property whose value comes next; a string with a pattern and a length: its
                       characters so far */
    uint64_t mask;  /* the candidates still matching: properties (a key) or enum texts */
} g4_schema_frame;

/* One reading of the text: anyOf alternatives of one type (two objects, say) are each followed on a path of their
 * own until the text tells them apart. */
typedef struct g4_schema_path {
    int n; /* frames in use */
    g4_schema_frame f[G4_JSON_MAX_DEPTH + 1];
} g4_schema_path;

#define G4_SCHEMA_MAX_PATHS 16

typedef struct g4_schema_state {
    g4_json_state syntax;
    int forks; /* paths in use beyond the first */
    g4_schema_path p[G4_SCHEMA_MAX_PATHS];
} g4_schema_state;

void g4_schema_copy(g4_schema_state *dst, const g4_schema_state *src);
/* Appends bytes: 0 while the text can still become one JSON object matching the schema (NULL: any object),
 * -1 when not (s is then unspecified). */
int g4_schema_feed(const g4_schema *sc, g4_schema_state *s, const unsigned char *bytes, size_t n);
/* Inside a string that any characters may continue (not a key, not an enum value), between characters: how many
 * more it may take (INT64_MAX: no bound); -1 elsewhere. */
int64_t g4_schema_string_room(const g4_schema *sc, const g4_schema_state *s);
/* Inside a string with a pattern, between characters: 1, and a name for what text that stays in the string (no
 * quote, whole characters and escapes) can do from here: the pattern's index and where it stands. Two states with
 * the same name take and refuse the same such text. 0 elsewhere. */
int g4_schema_pattern_at(const g4_schema *sc, const g4_schema_state *s, int *pattern, uint64_t *at);

#endif
