/* json.c — typed fields of JSON objects: defaults, bounds, and one-line errors naming the field. */
#include "core/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cJSON *g4_json_parse(const char *text, size_t len, size_t max_len) {
    if (!text || len > max_len || len == SIZE_MAX) return NULL;
    /* A terminated copy keeps the parser from ever looking past `len`. */
    char *copy = malloc(len + 1);
    if (!copy) return NULL;
    memcpy(copy, text, len);
    copy[len] = '\0';
    cJSON *root = cJSON_ParseWithLengthOpts(copy, len + 1, NULL, 1);
    if (root && strlen(copy) != len) {
        cJSON_Delete(root);
        root = NULL;
    }
    free(copy);
    return root;
}

const cJSON *g4_json_field(const g4_json_obj *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o->obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

g4_json_obj g4_json_sub(const g4_json_obj *o, const cJSON *child, const char *key, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%s.", o->path, key);
    return (g4_json_obj){child, o->file, buf};
}

int g4_json_fail(const g4_json_obj *o, const char *key, const char *what, g4_err *err) {
    return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: %s%s %s", o->file, o->path, key, what);
}

int g4_json_as_int(const cJSON *v, int lo, int hi, int *out) {
    if (!cJSON_IsNumber(v)) return -1;
    const double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d)) return -1; /* NaN fails the first test */
    *out = (int)d;
    return 0;
}

static int int_field(const g4_json_obj *o, const char *key, int required, int def, int lo, int hi, int *out,
                     g4_err *err) {
    const cJSON *v = g4_json_field(o, key);
    if (!v) {
        if (required) return g4_json_fail(o, key, "is missing", err);
        *out = def;
        return 0;
    }
    if (g4_json_as_int(v, lo, hi, out) != 0) {
        char what[96];
        snprintf(what, sizeof what, "must be an integer in [%d, %d]", lo, hi);
        return g4_json_fail(o, key, what, err);
    }
    return 0;
}

int g4_json_int(const g4_json_obj *o, const char *key, int def, int lo, int hi, int *out, g4_err *err) {
    return int_field(o, key, 0, def, lo, hi, out, err);
}

int g4_json_int_required(const g4_json_obj *o, const char *key, int lo, int hi, int *out, g4_err *err) {
    return int_field(o, key, 1, 0, lo, hi, out, err);
}

int g4_json_double(const g4_json_obj *o, const char *key, double def, double lo, double hi, int lo_open, double *out,
                   g4_err *err) {
    const cJSON *v = g4_json_field(o, key);
    if (!v) {
        *out = def;
        return 0;
    }
    const double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (isnan(d) || d < lo || d > hi || (lo_open && d == lo)) {
        char what[96];
        snprintf(what, sizeof what, "must be a number in %c%g, %g]", lo_open ? '(' : '[', lo, hi);
        return g4_json_fail(o, key, what, err);
    }
    *out = d;
    return 0;
}

int g4_json_bool(const g4_json_obj *o, const char *key, int def, int *out, g4_err *err) {
    const cJSON *v = g4_json_field(o, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v)) return g4_json_fail(o, key, "must be true or false", err);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
}

int g4_json_id(const g4_json_obj *o, const char *key, int vocab, int *out, g4_err *err) {
    const cJSON *v = g4_json_field(o, key);
    *out = -1;
    if (!v) return 0;
    if (g4_json_as_int(v, 0, vocab - 1, out) != 0)
        return g4_json_fail(o, key, "must be a token id inside the vocabulary", err);
    return 0;
}

int g4_json_id_list(const g4_json_obj *o, const char *key, int vocab, int max, int32_t *ids, int *n, g4_err *err) {
    const cJSON *v = g4_json_field(o, key);
    *n = 0;
    if (!v) return 0;
    int id;
    if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) > max) return g4_json_fail(o, key, "has too many ids", err);
        for (const cJSON *it = v->child; it; it = it->next) {
            if (g4_json_as_int(it, 0, vocab - 1, &id) != 0)
                return g4_json_fail(o, key, "holds an id outside the vocabulary", err);
            ids[(*n)++] = id;
        }
        return 0;
    }
    if (g4_json_as_int(v, 0, vocab - 1, &id) != 0)
        return g4_json_fail(o, key, "must be a token id inside the vocabulary (or a list of them)", err);
    ids[(*n)++] = id;
    return 0;
}
