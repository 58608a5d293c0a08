/* json.h — typed fields of JSON objects (cJSON): defaults, bounds, and one-line errors naming the field. */
#ifndef G4_JSON_H
#define G4_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* An object and how messages name its fields: "<file>: <path><key> <what>". With file "config" and path
 * "text_config." a bad hidden_size reads "config: text_config.hidden_size must be an integer in [1, 65536]". */
typedef struct g4_json_obj {
    const cJSON *obj;
    const char *file; /* the document: "config", "generation_config" */
    const char *path; /* where the object sits in it, ending in '.'; "" at the top level */
} g4_json_obj;

/* Parses `len` bytes (not necessarily NUL-terminated: the parser never reads past them) as one JSON document.
 * NULL for invalid JSON, trailing garbage, an embedded NUL (it would cut the document short), more than
 * `max_len` bytes, or no memory. */
cJSON *g4_json_parse(const char *text, size_t len, size_t max_len);

/* The value of `key`, or NULL when it is absent or JSON null: both mean "the default", as Hugging Face reads
 * its configs. Keys are case-sensitive. */
const cJSON *g4_json_field(const g4_json_obj *o, const char *key);

/* The view of `child`, the object found at `key` of `o`: its path "<o->path><key>." is written into buf. */
g4_json_obj g4_json_sub(const g4_json_obj *o, const cJSON *child, const char *key, char *buf, size_t cap);

/* Fails with GEMMA4C_ERR_FORMAT and the message "<file>: <path><key> <what>"; returns the code. */
int g4_json_fail(const g4_json_obj *o, const char *key, const char *what, g4_err *err);

/* 0 and *out = the value when v is a JSON number that is a whole number in [lo, hi]; -1 otherwise (not a
 * number, a fraction, out of range, NaN or infinite). Sets nothing on failure. */
int g4_json_as_int(const cJSON *v, int lo, int hi, int *out);

/* An integer in [lo, hi]; `def` when absent or null. Anything else is an error "must be an integer in [lo, hi]". */
int g4_json_int(const g4_json_obj *o, const char *key, int def, int lo, int hi, int *out, g4_err *err);
/* The same, but absent or null is an error: "is missing". */
int g4_json_int_required(const g4_json_obj *o, const char *key, int lo, int hi, int *out, g4_err *err);

/* A number in [lo, hi] — (lo, hi] when lo_open — or `def` when absent or null. NaN and any value outside the
 * bounds (an infinity included, unless a bound is one) are an error "must be a number in [lo, hi]". */
int g4_json_double(const g4_json_obj *o, const char *key, double def, double lo, double hi, int lo_open, double *out,
                   g4_err *err);

/* true or false (1 or 0); `def` when absent or null; anything else is an error "must be true or false". */
int g4_json_bool(const g4_json_obj *o, const char *key, int def, int *out, g4_err *err);

/* A token id in [0, vocab); -1 when absent or null. */
int g4_json_id(const g4_json_obj *o, const char *key, int vocab, int *out, g4_err *err);

/* A token id or a list of at most `max` of them (eos_token_id), each in [0, vocab), into ids[0..*n); *n = 0 when
 * absent or null. */
int g4_json_id_list(const g4_json_obj *o, const char *key, int vocab, int max, int32_t *ids, int *n, g4_err *err);

#endif
