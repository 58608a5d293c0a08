/* json_schema.c — a JSON Schema (the subset structured outputs use) as a constraint checked byte by byte. */
#include "runtime/json_schema.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "runtime/json_number.h"
#include "runtime/json_pattern.h"
#include "text/utf8.h"

enum { T_OBJECT = 1, T_ARRAY = 2, T_STRING = 4, T_NUMBER = 8, T_INTEGER = 16, T_BOOLEAN = 32, T_NULL = 64, T_ALL = 127 };
enum { F_OBJECT = 1, F_ARRAY, F_SCALAR, F_ANY };
enum { NEED_NONE = 0xFFFF };
enum { MAX_PROPS_ALL = 4096, MAX_ALTS_ALL = 1024, MAX_ENUMS_ALL = 4096, MAX_ALTS = 16, MAX_NESTING = 64, MAX_PATTERNS = 64 };

typedef struct schema_text {
    uint32_t at, len; /* in g4_schema.text */
} schema_text;

typedef struct schema_node {
    uint8_t types;            /* T_* its values may have */
    uint8_t reach;            /* the types it admits once $ref and anyOf are followed */
    uint8_t has_props;        /* properties given: an object has those (else it is any object) */
    uint8_t one_of;           /* its alternatives came as oneOf: no value may match two */
    uint8_t unique;           /* uniqueItems: an array's items (enum or const values) differ */
    int ref;                  /* >= 0: this node is that one ($ref, allOf of one) */
    int alt0, n_alts;         /* anyOf / oneOf, in alts[] */
    int prop0, n_props;       /* in props[], in order */
    int items;                /* an array's items; -1: any value */
    int min_items, max_items; /* max -1: no bound */
    int min_len, max_len;     /* a string's characters (code points); max -1: no bound */
    int bounds;               /* >= 0: its numbers lie within bounds[this]; -1: any number */
    int pattern;              /* >= 0: its strings match patterns[this]; -1: any string */
    uint32_t multiple;        /* > 0: its numbers are whole multiples of this (multipleOf); 0: any number */
    int enum0, n_enum;        /* canonical texts in enums[] */
} schema_node;

typedef struct schema_prop {
    schema_text key; /* the name as it stands between the quotes (escaped as cJSON prints it) */
    int node;
    int required;
} schema_prop;

struct g4_schema {
    int n_nodes, n_props, n_alts, n_enums;
    size_t n_text;
    schema_node nodes[G4_SCHEMA_MAX_NODES];
    uint16_t need[G4_SCHEMA_MAX_NODES]; /* levels of nesting its shortest instance needs (0: a scalar); compute_needs */
    const cJSON *source[G4_SCHEMA_MAX_NODES]; /* while compiling: the node of each schema object, once */
    schema_prop props[MAX_PROPS_ALL];
    int alts[MAX_ALTS_ALL];
    schema_text enums[MAX_ENUMS_ALL];
    int n_bounds, n_patterns;
    g4_number_bounds bounds[G4_SCHEMA_MAX_NODES];
    g4_pattern *patterns[MAX_PATTERNS];
    char text[G4_SCHEMA_MAX_TEXT];
};

/* ---- compiling ---- */

typedef struct compiler {
    g4_schema *s;
    const cJSON *root;
    g4_err *err;
} compiler;

static int fail(compiler *c, const char *where, const char *what, const char *name) {
    return g4_fail(c->err, GEMMA4C_ERR_ARG, "json_schema: %s%s%s%s", where, *where ? ": " : "", what, name ? name : "");
}

/* Keywords that restrict values in ways this constraint does not follow: refused rather than ignored. */
static const char *const unenforced[] = {
    "patternProperties", "contains", "minContains", "maxContains", "minProperties",
    "maxProperties", "propertyNames", "dependentRequired", "dependentSchemas", "dependencies", "if", "then", "else",
    "not", "prefixItems", "unevaluatedProperties", "unevaluatedItems", "additionalItems", "$dynamicRef",
    "$recursiveRef", NULL};

static int is_unenforced(const char *key) {
    for (int i = 0; unenforced[i]; i++)
        if (!strcmp(key, unenforced[i])) return 1;
    return 0;
}

static int type_bit(const char *name) {
    static const char *const names[] = {"object", "array", "string", "number", "integer", "boolean", "null"};
    for (int i = 0; i < 7; i++)
        if (!strcmp(name, names[i])) return 1 << i;
    return 0;
}

static int value_type(const cJSON *v) {
    if (cJSON_IsString(v)) return T_STRING;
    if (cJSON_IsBool(v)) return T_BOOLEAN;
    if (cJSON_IsNull(v)) return T_NULL;
    if (cJSON_IsNumber(v)) return v->valuedouble == floor(v->valuedouble) ? T_NUMBER | T_INTEGER : T_NUMBER;
    return 0; /* objects and arrays */
}

/* Keeps `len` bytes in the schema's text: 0, or -1 when they do not fit. */
static int keep_text(g4_schema *s, const char *bytes, size_t len, schema_text *out) {
    if (len > G4_SCHEMA_MAX_TEXT - s->n_text) return -1;
    memcpy(s->text + s->n_text, bytes, len);
    *out = (schema_text){(uint32_t)s->n_text, (uint32_t)len};
    s->n_text += len;
    return 0;
}

static int same_text(const g4_schema *s, schema_text a, schema_text b) {
    return a.len == b.len && !memcmp(s->text + a.at, s->text + b.at, a.len);
}

/* Whether the grammar lets a key (or a value) be written so: cJSON reads strings that are not UTF-8, which an
 * answer can never hold. */
static int writable(const char *printed, int key) {
    g4_json_state st = {0};
    const char *before = key ? "{" : "{\"\":", *after = key ? ":" : "}";
    return !g4_json_feed(&st, (const unsigned char *)before, strlen(before)) &&
           !g4_json_feed(&st, (const unsigned char *)printed, strlen(printed)) &&
           !g4_json_feed(&st, (const unsigned char *)after, 1);
}

/* A JSON value printed compactly, as cJSON prints it: the one spelling an enum value or a key is accepted in. */
static int keep_printed(compiler *c, const cJSON *v, int key, schema_text *out, const char *where) {
    char *printed = cJSON_PrintUnformatted(v);
    if (!printed) return g4_fail(c->err, GEMMA4C_ERR_NOMEM, "out of memory");
    if (!writable(printed, key)) {
        free(printed);
        return fail(c, where, "a property name or enum value is not valid UTF-8 text", NULL);
    }
    size_t len = strlen(printed);
    int rc = keep_text(c->s, printed + key, len - 2 * (size_t)key, out); /* a key without its quotes */
    free(printed);
    return rc ? fail(c, where, "the schema's names and enum values are too long together", NULL) : 0;
}

/* The schema at a JSON pointer into the document ("#", "#/$defs/Name"); NULL when there is none. */
static const cJSON *pointer(const cJSON *root, const char *ref) {
    if (ref[0] != '#') return NULL;
    const cJSON *at = root;
    const char *p = ref + 1;
    char part[256];
    while (*p) {
        if (*p++ != '/') return NULL;
        size_t n = 0;
        for (; *p && *p != '/'; p++) {
            char ch = *p;
            if (ch == '~' && (p[1] == '0' || p[1] == '1')) ch = *++p == '0' ? '~' : '/';
            if (n + 1 >= sizeof part) return NULL;
            part[n++] = ch;
        }
        part[n] = 0;
        at = cJSON_IsArray(at) ? cJSON_GetArrayItem(at, atoi(part)) : cJSON_GetObjectItemCaseSensitive(at, part);
        if (!at) return NULL;
    }
    return at;
}

static int node_of(compiler *c, const cJSON *j, const char *where, int depth, int *out);

static int child_node(compiler *c, const cJSON *j, const char *where, const char *step, int depth, int *out) {
    char path[256];
    snprintf(path, sizeof path, "%s%s%s", where, *where && *step != '[' ? "." : "", step);
    return node_of(c, j, path, depth + 1, out);
}

static int compile_properties(compiler *c, schema_node *n, const cJSON *v, const char *where, int depth) {
    g4_schema *s = c->s;
    if (!cJSON_IsObject(v)) return fail(c, where, "properties must be an object", NULL);
    if (cJSON_GetArraySize(v) > G4_SCHEMA_MAX_PROPERTIES)
        return fail(c, where, "more than 64 properties in one object", NULL);
    if (cJSON_GetArraySize(v) > MAX_PROPS_ALL - s->n_props) return fail(c, where, "too many properties", NULL);
    n->has_props = 1;
    n->prop0 = s->n_props;
    n->n_props = cJSON_GetArraySize(v);
    s->n_props += n->n_props;
    int i = 0;
    for (const cJSON *p = v->child; p; p = p->next, i++) {
        schema_prop *prop = &s->props[n->prop0 + i];
        cJSON *name = cJSON_CreateString(p->string);
        if (!name) return g4_fail(c->err, GEMMA4C_ERR_NOMEM, "out of memory");
        int rc = keep_printed(c, name, 1, &prop->key, where);
        cJSON_Delete(name);
        char step[160];
        snprintf(step, sizeof step, "properties.%.120s", p->string);
        if (rc || (rc = child_node(c, p, where, step, depth, &prop->node))) return rc;
    }
    return 0;
}

static int compile_required(compiler *c, const schema_node *n, const cJSON *v, const char *where) {
    if (!cJSON_IsArray(v)) return fail(c, where, "required must be an array of property names", NULL);
    for (const cJSON *r = v->child; r; r = r->next) {
        if (!cJSON_IsString(r)) return fail(c, where, "required must be an array of property names", NULL);
        int found = 0;
        for (int i = 0; i < n->n_props && !found; i++) {
            const cJSON *p = c->s->source[c->s->props[n->prop0 + i].node];
            if (p && p->string && !strcmp(p->string, r->valuestring)) c->s->props[n->prop0 + i].required = found = 1;
        }
        if (!found) return fail(c, where, "required names a property that properties does not declare: ", r->valuestring);
    }
    return 0;
}

/* minimum, maximum, exclusiveMinimum, exclusiveMaximum as one closed range of doubles: an exclusive end moves to
 * the next double inward (the next integer for an integer), so that an answer compares right as a double too. */
static int number_range(compiler *c, const cJSON *const bound[4], int integer, double *lo, double *hi, const char *where) {
    *lo = -INFINITY, *hi = INFINITY;
    for (int i = 0; i < 4; i++) {
        if (!bound[i]) continue;
        if (!cJSON_IsNumber(bound[i]) || !isfinite(bound[i]->valuedouble)) /* 1e999 reads as infinity */
            return fail(c, where, "minimum, maximum, exclusiveMinimum and exclusiveMaximum must be numbers within "
                                  "a double's range", NULL);
        double v = bound[i]->valuedouble;
        const int upper = i & 1, exclusive = i >= 2;
        if (exclusive) v = nextafter(v, upper ? -INFINITY : INFINITY);
        if (integer) v = upper ? floor(v) : ceil(v);
        if (upper) *hi = fmin(*hi, v);
        else *lo = fmax(*lo, v);
    }
    return 0;
}

/* A string with a pattern and a length: its characters are counted, and it holds at most
 * G4_PATTERN_MAX_LENGTH of them whatever maxLength says (how many more characters can still end a match is known
 * up to there). */
static int has_lengths(const schema_node *n) { return n->min_len > 0 || n->max_len >= 0; }
static int64_t pattern_max_len(const schema_node *n) {
    return n->max_len < 0 || n->max_len > G4_PATTERN_MAX_LENGTH ? G4_PATTERN_MAX_LENGTH : n->max_len;
}

/* pattern: kept compiled; beside a length, a string must be able to match within it. */
static int compile_pattern(compiler *c, schema_node *n, const cJSON *v, const char *where) {
    g4_schema *s = c->s;
    if (!cJSON_IsString(v)) return fail(c, where, "pattern must be a string", NULL);
    if (has_lengths(n) && n->min_len > G4_PATTERN_MAX_LENGTH)
        return fail(c, where, "minLength beside a pattern must be at most 4096", NULL);
    if (s->n_patterns == MAX_PATTERNS) return fail(c, where, "more than 64 patterns", NULL);
    g4_err why = {0};
    g4_pattern *p = g4_pattern_compile(v->valuestring, strlen(v->valuestring), &why);
    if (!p) return why.code == GEMMA4C_ERR_NOMEM ? g4_fail(c->err, why.code, "out of memory") : fail(c, where, "pattern: ", why.msg);
    n->pattern = s->n_patterns;
    s->patterns[s->n_patterns++] = p;
    if (!has_lengths(n)) return 0;
    if (g4_pattern_count_lengths(p)) return g4_fail(c->err, GEMMA4C_ERR_NOMEM, "out of memory");
    if (!g4_pattern_length_fits(p, g4_pattern_start(p), n->min_len, pattern_max_len(n)))
        return fail(c, where, "no string of minLength to maxLength characters matches the pattern", NULL);
    return 0;
}

/* multipleOf: a whole number (validators divide doubles, and 0.3 / 0.1 is not 3 to them), not beside bounds or an
 * enum; such numbers are written as integers of at most MULTIPLE_DIGITS digits, which doubles hold exactly. */
enum { MULTIPLE_DIGITS = 15 };
static int compile_multiple(compiler *c, schema_node *n, const cJSON *v, int bounded, int listed, const char *where) {
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 1 && v->valuedouble <= 2147483647.0) ||
        (double)(uint32_t)v->valuedouble != v->valuedouble)
        return fail(c, where, "multipleOf must be a whole number from 1 to 2147483647 here", NULL);
    if (bounded) return fail(c, where, "multipleOf cannot stand beside minimum or maximum here", NULL);
    if (listed) return fail(c, where, "multipleOf cannot stand beside enum or const here", NULL);
    n->multiple = (uint32_t)v->valuedouble;
    return 0;
}

/* A string's characters (code points) within the node's minLength and maxLength. */
static int length_fits(const schema_node *n, const char *utf8) {
    long chars = 0;
    for (const unsigned char *p = (const unsigned char *)utf8; *p; p++) chars += (*p & 0xC0) != 0x80;
    return chars >= n->min_len && (n->max_len < 0 || chars <= n->max_len);
}

static int compile_enum(compiler *c, schema_node *n, const cJSON *values, int types_given, double lo, double hi,
                        const char *where) {
    g4_schema *s = c->s;
    if (!cJSON_IsArray(values) || !values->child) return fail(c, where, "enum must be a non-empty array", NULL);
    if (cJSON_GetArraySize(values) > G4_SCHEMA_MAX_ENUM) return fail(c, where, "more than 64 enum values", NULL);
    if (cJSON_GetArraySize(values) > MAX_ENUMS_ALL - s->n_enums) return fail(c, where, "too many enum values", NULL);
    n->enum0 = s->n_enums;
    int types = 0;
    for (const cJSON *v = values->child; v; v = v->next) {
        const int t = value_type(v);
        if (!t) return fail(c, where, "enum and const values must be strings, numbers, booleans or null", NULL);
        if (types_given && !(t & n->types)) continue; /* a value the type excludes is never valid */
        if (t == T_STRING && !length_fits(n, v->valuestring)) continue;
        if (t == T_STRING && n->pattern >= 0 && !g4_pattern_matches(c->s->patterns[n->pattern], v->valuestring)) continue;
        if (t & T_NUMBER && !(v->valuedouble >= lo && v->valuedouble <= hi)) continue;
        int rc = keep_printed(c, v, 0, &s->enums[s->n_enums], where);
        if (rc) return rc;
        int again = 0; /* the same value twice (1 and 1.0 print alike): one text, so that items can differ */
        for (int i = 0; i < n->n_enum && !again; i++) again = same_text(s, s->enums[n->enum0 + i], s->enums[s->n_enums]);
        if (again) {
            s->n_text -= s->enums[s->n_enums].len;
            continue;
        }
        s->n_enums++, n->n_enum++;
        types |= t;
    }
    if (!n->n_enum) return fail(c, where, "no enum value has the type, length, pattern and bounds the schema gives", NULL);
    n->types = (uint8_t)types;
    return 0;
}

/* The node a $ref chain ends at. */
static int deref(const g4_schema *s, int id) {
    for (int hops = 0; s->nodes[id].ref >= 0 && hops <= s->n_nodes; hops++) id = s->nodes[id].ref;
    return id;
}

/* uniqueItems: followed for items that are enum or const values (the texts are canonical, so two items are equal
 * exactly when their texts are), each value used once; an array that asks for more items than there are values has
 * no instance. items becomes the enum node itself, past any $ref. */
static int check_unique(compiler *c, schema_node *n, const char *where) {
    const int item = n->items >= 0 ? deref(c->s, n->items) : -1;
    const schema_node *it = item >= 0 ? &c->s->nodes[item] : NULL;
    if (!it || !it->n_enum || it->n_alts)
        return fail(c, where, "uniqueItems is enforced only where the items are enum or const values", NULL);
    if (n->min_items > it->n_enum) return fail(c, where, "uniqueItems: minItems asks for more items than there are values", NULL);
    n->items = item;
    return 0;
}

/* The node of one schema (an object, or true), made once per schema object: a $ref back to it finds it again. */
static int node_of(compiler *c, const cJSON *j, const char *where, int depth, int *out) {
    g4_schema *s = c->s;
    for (int i = 0; i < s->n_nodes; i++)
        if (s->source[i] == j) return *out = i, 0;
    if (depth > MAX_NESTING) return fail(c, where, "schemas nested deeper than 64", NULL);
    if (s->n_nodes >= G4_SCHEMA_MAX_NODES) return fail(c, where, "more than 1024 schemas", NULL);
    const int id = *out = s->n_nodes++;
    s->source[id] = j;
    schema_node *n = &s->nodes[id];
    *n = (schema_node){.types = T_ALL, .ref = -1, .items = -1, .max_items = -1, .max_len = -1, .bounds = -1, .pattern = -1};
    if (cJSON_IsTrue(j)) return 0;
    if (!cJSON_IsObject(j)) return fail(c, where, "a schema must be an object or true", NULL);
    const cJSON *type = NULL, *properties = NULL, *required = NULL, *items = NULL, *values = NULL, *alts = NULL,
                *ref = NULL, *all = NULL, *pattern = NULL, *multiple = NULL,
                *bound[4] = {NULL}; /* minimum, maximum, exclusive... */
    int rc = 0, constant = 0;
    for (const cJSON *k = j->child; k; k = k->next) {
        const char *key = k->string;
        if (is_unenforced(key)) return fail(c, where, "this server does not enforce the keyword ", key);
        if (!strcmp(key, "type")) type = k;
        else if (!strcmp(key, "properties")) properties = k;
        else if (!strcmp(key, "required")) required = k;
        else if (!strcmp(key, "items")) items = k;
        else if (!strcmp(key, "enum")) values = k;
        else if (!strcmp(key, "const")) values = k, constant = 1;
        else if (!strcmp(key, "anyOf") || !strcmp(key, "oneOf")) alts = k;
        else if (!strcmp(key, "allOf")) all = k;
        else if (!strcmp(key, "$ref")) ref = k;
        else if (!strcmp(key, "pattern")) pattern = k;
        else if (!strcmp(key, "minimum")) bound[0] = k;
        else if (!strcmp(key, "maximum")) bound[1] = k;
        else if (!strcmp(key, "exclusiveMinimum")) bound[2] = k;
        else if (!strcmp(key, "exclusiveMaximum")) bound[3] = k;
        else if (!strcmp(key, "multipleOf")) multiple = k;
        else if (!strcmp(key, "additionalProperties") && !cJSON_IsBool(k))
            return fail(c, where, "additionalProperties may only be true or false", NULL);
        else if (!strcmp(key, "uniqueItems")) {
            if (!cJSON_IsBool(k)) return fail(c, where, "uniqueItems may only be true or false", NULL);
            n->unique = (uint8_t)cJSON_IsTrue(k);
        }
        else if (!strcmp(key, "minItems") || !strcmp(key, "maxItems")) {
            int v;
            if (g4_json_as_int(k, 0, 65535, &v)) return fail(c, where, "minItems and maxItems must be integers in [0, 65535]", NULL);
            *(key[1] == 'i' ? &n->min_items : &n->max_items) = v;
        } else if (!strcmp(key, "minLength") || !strcmp(key, "maxLength")) {
            int v;
            if (g4_json_as_int(k, 0, 1 << 20, &v)) return fail(c, where, "minLength and maxLength must be integers in [0, 1048576]", NULL);
            *(key[1] == 'i' ? &n->min_len : &n->max_len) = v;
        }
        /* anything else is an annotation (title, description, format, default...) or a container ($defs) */
    }
    if ((ref || all) && (type || properties || items || values || alts || (ref && all)))
        return fail(c, where, "$ref and allOf cannot stand beside other keywords that describe the value", NULL);
    if (alts && (type || properties || items || values))
        return fail(c, where, "anyOf and oneOf cannot stand beside other keywords that describe the value", NULL);
    if (ref) {
        const cJSON *target = cJSON_IsString(ref) ? pointer(c->root, ref->valuestring) : NULL;
        if (!target) return fail(c, where, "$ref must point into this schema (\"#\", \"#/$defs/Name\")", NULL);
        return child_node(c, target, where, "$ref", depth, &s->nodes[id].ref);
    }
    if (all) {
        if (!cJSON_IsArray(all) || cJSON_GetArraySize(all) != 1) return fail(c, where, "allOf must hold exactly one schema", NULL);
        return child_node(c, all->child, where, "allOf[0]", depth, &s->nodes[id].ref);
    }
    if (alts) {
        const int count = cJSON_GetArraySize(alts);
        if (!cJSON_IsArray(alts) || count < 1 || count > MAX_ALTS) return fail(c, where, "anyOf must hold 1 to 16 schemas", NULL);
        if (count > MAX_ALTS_ALL - s->n_alts) return fail(c, where, "too many anyOf alternatives", NULL);
        n->alt0 = s->n_alts, n->n_alts = count, n->one_of = alts->string[0] == 'o';
        s->n_alts += count;
        int i = 0;
        for (const cJSON *a = alts->child; a; a = a->next, i++) {
            char step[32];
            snprintf(step, sizeof step, "%s[%d]", alts->string, i);
            if ((rc = child_node(c, a, where, step, depth, &s->alts[s->nodes[id].alt0 + i]))) return rc;
        }
        return 0;
    }
    if (type) {
        int types = 0;
        if (cJSON_IsString(type)) types = type_bit(type->valuestring);
        else if (cJSON_IsArray(type))
            for (const cJSON *t = type->child; t; t = t->next) {
                const int bit = cJSON_IsString(t) ? type_bit(t->valuestring) : 0;
                if (!bit) return fail(c, where, "type must name object, array, string, number, integer, boolean or null", NULL);
                types |= bit;
            }
        if (!types) return fail(c, where, "type must name object, array, string, number, integer, boolean or null", NULL);
        n->types = (uint8_t)types;
    } else if (properties) n->types = T_OBJECT;
    else if (items) n->types = T_ARRAY;
    double lo, hi;
    if ((rc = number_range(c, bound, !(n->types & T_NUMBER), &lo, &hi, where))) return rc;
    if ((bound[0] || bound[1] || bound[2] || bound[3]) && n->types & (T_NUMBER | T_INTEGER) && !values) {
        if (g4_number_bounds_make(lo, hi, &s->bounds[s->n_bounds])) n->bounds = s->n_bounds++;
        else if (!(n->types &= (uint8_t)~(T_NUMBER | T_INTEGER)))
            return fail(c, where, "no number lies within its minimum and maximum", NULL);
    }
    if (pattern && (rc = compile_pattern(c, &s->nodes[id], pattern, where))) return rc;
    if (multiple && n->types & (T_NUMBER | T_INTEGER) &&
        (rc = compile_multiple(c, &s->nodes[id], multiple, bound[0] || bound[1] || bound[2] || bound[3], values != NULL, where)))
        return rc;
    if (values) {
        cJSON *one = NULL;
        if (constant && !(one = cJSON_CreateArray())) return g4_fail(c->err, GEMMA4C_ERR_NOMEM, "out of memory");
        if (one) cJSON_AddItemReferenceToArray(one, (cJSON *)values);
        rc = compile_enum(c, &s->nodes[id], one ? one : values, type != NULL, lo, hi, where);
        cJSON_Delete(one);
        if (rc) return rc;
    }
    if (properties && (rc = compile_properties(c, &s->nodes[id], properties, where, depth))) return rc;
    if (required && (rc = compile_required(c, &s->nodes[id], required, where))) return rc;
    if (items && (rc = child_node(c, items, where, "items", depth, &s->nodes[id].items))) return rc;
    n = &s->nodes[id];
    if (n->max_items >= 0 && n->min_items > n->max_items) return fail(c, where, "minItems is above maxItems", NULL);
    if (!(n->types & T_ARRAY)) n->unique = 0; /* it says nothing of other values */
    if (n->unique && (rc = check_unique(c, n, where))) return rc;
    if (n->max_len >= 0 && n->min_len > n->max_len) return fail(c, where, "minLength is above maxLength", NULL);
    return 0;
}

/* The types a node admits through its $ref and alternatives; -1 for a $ref cycle. */
static int reach_of(const g4_schema *s, int id, int hops) {
    if (hops > s->n_nodes) return -1;
    const schema_node *n = &s->nodes[id];
    if (n->ref >= 0) return reach_of(s, n->ref, hops + 1);
    if (!n->n_alts) return n->types;
    int all = 0;
    for (int i = 0; i < n->n_alts; i++) {
        const int t = reach_of(s, s->alts[n->alt0 + i], hops + 1);
        if (t < 0) return -1;
        all |= t;
    }
    return all;
}

/* A value's first character tells types apart, except an integer from a number. */
static int first_char_classes(int types) { return (types & ~T_INTEGER) | (types & T_INTEGER ? T_NUMBER : 0); }

/* Whether no value can match both nodes, as far as this can tell: enum or const texts that share none, or objects
 * with a property both require whose values can match no value in common (a discriminator). */
static int disjoint(const g4_schema *s, int a, int b, int depth) {
    a = deref(s, a), b = deref(s, b);
    const schema_node *x = &s->nodes[a], *y = &s->nodes[b];
    if (!(first_char_classes(x->reach) & first_char_classes(y->reach))) return 1;
    if (depth > 1 || x->n_alts || y->n_alts) return 0;
    if (x->n_enum && y->n_enum) {
        for (int i = 0; i < x->n_enum; i++)
            for (int j = 0; j < y->n_enum; j++)
                if (same_text(s, s->enums[x->enum0 + i], s->enums[y->enum0 + j])) return 0;
        return 1;
    }
    if (!x->has_props || !y->has_props || (x->types | y->types) != T_OBJECT) return 0;
    for (int i = 0; i < x->n_props; i++) {
        const schema_prop *p = &s->props[x->prop0 + i];
        for (int j = 0; p->required && j < y->n_props; j++) {
            const schema_prop *q = &s->props[y->prop0 + j];
            if (q->required && same_text(s, p->key, q->key) && disjoint(s, p->node, q->node, depth + 1))
                return 1;
        }
    }
    return 0;
}

/* The levels of nesting a value of type t (T_OBJECT or T_ARRAY) of node n needs at least, given each node's need
 * (0 for a node that admits a scalar): its own, plus its required properties' or minItems' deepest need. */
static int container_need(const g4_schema *s, const schema_node *n, int t, const uint16_t *need) {
    int deepest = 0;
    if (t == T_ARRAY) deepest = n->min_items > 0 && n->items >= 0 ? need[n->items] : 0;
    for (int p = 0; t == T_OBJECT && p < n->n_props; p++)
        if (s->props[n->prop0 + p].required && need[s->props[n->prop0 + p].node] > deepest)
            deepest = need[s->props[n->prop0 + p].node];
    return deepest >= NEED_NONE ? NEED_NONE : deepest + 1;
}

/* Each node's need, to a fixed point from "none": a node whose need stays none has no instance of finite size (a
 * required property or minItems that recurses forever), and one deeper than JSON mode's nesting limit could
 * never be closed there. A shortest instance repeats no node along a path, so a need is at most n_nodes + 1. */
static void compute_needs(g4_schema *s) {
    for (int i = 0; i < s->n_nodes; i++) s->need[i] = NEED_NONE;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < s->n_nodes; i++) {
            const schema_node *n = &s->nodes[i];
            int v = NEED_NONE;
            if (n->ref >= 0) v = s->need[n->ref];
            else if (n->n_alts)
                for (int a = 0; a < n->n_alts; a++) v = s->need[s->alts[n->alt0 + a]] < v ? s->need[s->alts[n->alt0 + a]] : v;
            else if (n->types & ~(T_OBJECT | T_ARRAY)) v = 0;
            else {
                const int as_array = n->types & T_ARRAY ? container_need(s, n, T_ARRAY, s->need) : NEED_NONE;
                const int as_object = n->types & T_OBJECT ? container_need(s, n, T_OBJECT, s->need) : NEED_NONE;
                v = as_array < as_object ? as_array : as_object;
            }
            if (v < s->need[i]) s->need[i] = (uint16_t)v, changed = 1;
        }
    }
}

static int resolve(const g4_schema *s, int id, int t, int *out);

static int check(compiler *c) {
    g4_schema *s = c->s;
    for (int i = 0; i < s->n_nodes; i++) {
        const int r = reach_of(s, i, 0);
        if (r < 0) return fail(c, "", "a $ref cycle leads to no schema", NULL);
        s->nodes[i].reach = (uint8_t)r;
    }
    for (int i = 0; i < s->n_nodes; i++) {
        const schema_node *n = &s->nodes[i];
        for (int a = 0; n->one_of && a < n->n_alts; a++)
            for (int b = a + 1; b < n->n_alts; b++)
                if (!disjoint(s, s->alts[n->alt0 + a], s->alts[n->alt0 + b], 0))
                    return fail(c, "", "oneOf alternatives that one value could match both of (give alternatives of "
                                       "one type a required property with different const or enum values, or use "
                                       "anyOf)", NULL);
    }
    if (!(s->nodes[0].reach & T_OBJECT)) return fail(c, "", "the schema must describe an object", NULL);
    compute_needs(s);
    for (int i = 0; i < s->n_nodes; i++)
        if (s->need[i] == NEED_NONE)
            return fail(c, "", "a schema in it has no instance of finite size (a required property or minItems that "
                               "recurses forever)", NULL);
    int roots[G4_SCHEMA_MAX_PATHS], fits = 0;
    const int n_roots = resolve(s, 0, T_OBJECT, roots);
    for (int i = 0; i < n_roots; i++) fits |= container_need(s, &s->nodes[roots[i]], T_OBJECT, s->need) <= G4_JSON_MAX_DEPTH;
    if (!fits) return fail(c, "", "its instances need objects and arrays nested deeper than 64", NULL);
    return 0;
}

g4_schema *g4_schema_compile(const char *text, size_t len, g4_err *err) {
    cJSON *doc = g4_json_parse(text, len, (size_t)16 << 20);
    if (!doc) {
        g4_fail(err, GEMMA4C_ERR_ARG, "json_schema: not valid JSON (or larger than 16 MB)");
        return NULL;
    }
    g4_schema *s = calloc(1, sizeof *s);
    compiler c = {s, doc, err};
    int root = 0;
    int rc = s ? node_of(&c, doc, "", 0, &root) : g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    if (!rc) rc = check(&c);
    cJSON_Delete(doc);
    if (s) memset(s->source, 0, sizeof s->source); /* they pointed into the document */
    if (rc) {
        g4_schema_free(s);
        return NULL;
    }
    return s;
}

void g4_schema_free(g4_schema *s) {
    for (int i = 0; s && i < s->n_patterns; i++) g4_pattern_free(s->patterns[i]);
    free(s);
}

/* ---- checking a text ---- */

static void copy_path(g4_schema_path *dst, const g4_schema_path *src) {
    dst->n = src->n;
    memcpy(dst->f, src->f, (size_t)src->n * sizeof *src->f);
}

void g4_schema_copy(g4_schema_state *dst, const g4_schema_state *src) {
    dst->syntax = src->syntax;
    dst->forks = src->forks;
    for (int i = 0; i <= src->forks; i++) copy_path(&dst->p[i], &src->p[i]);
}

static int type_of_first(unsigned char c) {
    switch (c) {
    case '{': return T_OBJECT;
    case '[': return T_ARRAY;
    case '"': return T_STRING;
    case 't':
    case 'f': return T_BOOLEAN;
    case 'n': return T_NULL;
    default: return T_NUMBER | T_INTEGER;
    }
}

static int gather(const g4_schema *s, int id, int t, int *out, int n, int hops) {
    id = deref(s, id);
    const schema_node *a = &s->nodes[id];
    if (hops > s->n_nodes || !(a->reach & t)) return n; /* compiling refused cycles; this bounds the walk anyway */
    if (!a->n_alts) {
        for (int i = 0; i < n; i++)
            if (out[i] == id) return n;
        if (n < G4_SCHEMA_MAX_PATHS) out[n++] = id; /* past that, later alternatives are left out */
        return n;
    }
    for (int i = 0; i < a->n_alts; i++) n = gather(s, s->alts[a->alt0 + i], t, out, n, hops + 1);
    return n;
}

/* The nodes a value beginning with a character of type t may take ($refs followed, every alternative of that type,
 * in order) into out; how many (0: the schema admits no such value). */
static int resolve(const g4_schema *s, int id, int t, int *out) { return gather(s, id, t, out, 0, 0); }

static const char *text_of(const g4_schema *s, schema_text t) { return s->text + t.at; }

/* Candidates (bit i: texts[i]) that still match once byte c is at position pos. */
static uint64_t narrow(const g4_schema *s, const schema_text *texts, int count, uint64_t mask, int pos, unsigned char c) {
    for (int i = 0; i < count; i++)
        if (mask >> i & 1 && ((int)texts[i].len <= pos || (unsigned char)text_of(s, texts[i])[pos] != c))
            mask &= ~(1ull << i);
    return mask;
}

static int some_whole(const schema_text *texts, int count, uint64_t mask, int len) {
    for (int i = 0; i < count; i++)
        if (mask >> i & 1 && (int)texts[i].len == len) return i;
    return -1;
}

/* The frame's scalar: a string with a pattern, a number with multipleOf (G4_NUM_* flag a bounded number). */
enum { STR_PATTERN = 128, NUM_MULTIPLE = 64 };

/* ---- numbers with multipleOf ----
 * mask holds the digits so far modulo the multiple, count how many there are. A digit is taken only when some
 * digits after it (up to MULTIPLE_DIGITS in all, none at all included) make a multiple. */
static int multiple_byte(const schema_node *n, g4_schema_frame *f, unsigned char c) {
    if (c == '-') return 0;
    if (++f->count > MULTIPLE_DIGITS) return -1;
    const uint64_t m = n->multiple;
    uint64_t r = f->mask = (f->mask * 10 + (uint64_t)(c - '0')) % m, power = 1;
    for (uint32_t more = 0; more <= MULTIPLE_DIGITS - f->count; more++, power *= 10, r = r * 10 % m)
        if ((m - r) % m < power) return 0; /* that many digits after these make a multiple */
    return -1;
}

/* ---- strings with a pattern ----
 * The string's bytes are decoded to characters as they come (UTF-8, escapes, surrogate pairs: the grammar has
 * checked their form), and each character steps the pattern. Part of a character is taken only when some
 * character it may still become steps on. pos holds the decoder's mode, the bytes or digits it still expects and
 * a UTF-8 character's length; count the code point so far (a pair's high half above bit 16). */
enum { DEC_CHAR, DEC_UTF8, DEC_ESCAPE, DEC_HEX, DEC_LOW_SLASH, DEC_LOW_U, DEC_LOW_HEX };

static int hex_value(unsigned char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

static uint16_t decoding(int mode, int left, int length) { return (uint16_t)(mode | left << 4 | length << 8); }

/* Whether a character in [lo, hi] would step the pattern on (and, beside a length, leave room to match). */
static int char_may_come(const g4_schema *s, const g4_schema_frame *f, uint32_t lo, uint32_t hi) {
    const schema_node *n = &s->nodes[f->node];
    const g4_pattern *p = s->patterns[n->pattern];
    if (!has_lengths(n)) return g4_pattern_can_step(p, f->mask, lo, hi);
    const int64_t chars = (int64_t)f->prop + 1;
    return g4_pattern_length_fits(p, g4_pattern_step_range(p, f->mask, lo, hi), n->min_len - chars,
                                  pattern_max_len(n) - chars);
}

/* Whether some character the one begun may still become steps the pattern on. */
static int can_finish(const g4_schema *s, const g4_schema_frame *f) {
    const int mode = f->pos & 15, left = f->pos >> 4 & 15, length = f->pos >> 8;
    const uint32_t low_hi = 0x10FFFF; /* a backslash may still become any character, through \u */
    uint32_t lo, hi, high;
    switch (mode) {
    case DEC_ESCAPE: return char_may_come(s, f, 0, low_hi);
    case DEC_UTF8: {
        static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000}; /* overlong forms do not exist */
        lo = f->count << 6 * left, hi = lo + (1u << 6 * left) - 1;
        if (lo < least[length]) lo = least[length];
        return lo <= hi && char_may_come(s, f, lo, hi < 0x10FFFF ? hi : 0x10FFFF);
    }
    case DEC_HEX: { /* \uXXXX so far: a character of the BMP, or the high half of a pair */
        lo = f->count << 4 * left, hi = lo + (1u << 4 * left) - 1;
        if (char_may_come(s, f, lo, hi)) return 1; /* surrogates are in no class */
        const uint32_t h0 = lo > 0xD800 ? lo : 0xD800, h1 = hi < 0xDBFF ? hi : 0xDBFF;
        return h0 <= h1 && char_may_come(s, f, 0x10000 + ((h0 - 0xD800) << 10), 0x10000 + ((h1 - 0xD800) << 10) + 0x3FF);
    }
    case DEC_LOW_SLASH:
    case DEC_LOW_U: high = f->count & 0x3FF; break;
    default: { /* DEC_LOW_HEX */
        high = f->count >> 16 & 0x3FF;
        const uint32_t l0 = (f->count & 0xFFFF) << 4 * left, l1 = l0 + (1u << 4 * left) - 1;
        lo = l0 > 0xDC00 ? l0 : 0xDC00, hi = l1 < 0xDFFF ? l1 : 0xDFFF;
        if (lo > hi) return 0;
        return char_may_come(s, f, 0x10000 + (high << 10) + lo - 0xDC00, 0x10000 + (high << 10) + hi - 0xDC00);
    }
    }
    return char_may_come(s, f, 0x10000 + (high << 10), 0x10000 + (high << 10) + 0x3FF);
}

static int pattern_byte(const g4_schema *s, g4_schema_frame *f, unsigned char c) {
    const schema_node *n = &s->nodes[f->node];
    const g4_pattern *p = s->patterns[n->pattern];
    const int mode = f->pos & 15, left = f->pos >> 4 & 15, length = f->pos >> 8;
    enum { PARTIAL = UINT32_MAX };
    uint32_t cp = PARTIAL; /* a whole character, or part of one so far */
    switch (mode) {
    case DEC_CHAR:
        if (c == '"') return 0; /* the closing quote: end() asks whether the pattern matched */
        if (c == '\\') f->pos = DEC_ESCAPE;
        else if (c < 0x80) cp = c;
        else { /* the grammar let only a well-formed lead byte through */
            const int bytes = (int)g4_utf8_lead_len(c);
            f->count = c & (0x7F >> bytes);
            f->pos = decoding(DEC_UTF8, bytes - 1, bytes);
        }
        break;
    case DEC_UTF8:
        f->count = f->count << 6 | (c & 0x3F);
        if (left > 1) f->pos = decoding(DEC_UTF8, left - 1, length);
        else cp = f->count;
        break;
    case DEC_ESCAPE: {
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        if (c == 'u') f->count = 0, f->pos = decoding(DEC_HEX, 4, 0);
        else cp = (unsigned char)to[strchr(from, c) - from];
        break;
    }
    case DEC_HEX:
    case DEC_LOW_HEX:
        f->count = f->count << 4 | (uint32_t)hex_value(c);
        if (left > 1) f->pos = decoding(mode, left - 1, 0);
        else if (mode == DEC_HEX && f->count >= 0xD800 && f->count <= 0xDBFF) f->pos = DEC_LOW_SLASH; /* its low half next */
        else if (mode == DEC_HEX) cp = f->count;
        else cp = 0x10000 + ((f->count >> 16 & 0x3FF) << 10) + ((f->count & 0xFFFF) - 0xDC00);
        break;
    case DEC_LOW_SLASH: f->pos = DEC_LOW_U; return 0; /* what the pair can become was checked at its high half */
    default: /* DEC_LOW_U: the high half's ten bits go above the low half's digits */
        f->count = (f->count & 0x3FF) << 16;
        f->pos = decoding(DEC_LOW_HEX, 4, 0);
        return 0;
    }
    if (cp == PARTIAL) return can_finish(s, f) ? 0 : -1;
    f->pos = DEC_CHAR;
    f->mask = g4_pattern_step(p, f->mask, cp);
    if (!f->mask) return -1;
    if (!has_lengths(n)) return 0;
    f->prop++; /* characters so far (prop is an object's field) */
    return g4_pattern_length_fits(p, f->mask, n->min_len - (int64_t)f->prop, pattern_max_len(n) - (int64_t)f->prop) ? 0 : -1;
}

static int push(g4_schema_path *st, g4_schema_frame f) {
    if (st->n > G4_JSON_MAX_DEPTH) return -1;
    st->f[st->n++] = f;
    return 0;
}

static int open_value(const g4_schema *s, g4_schema_path *st, int id, unsigned char c);

/* A value begins on path `at`: each node it may take (several for alternatives of its type) on a path of its own,
 * the first on this one, the others on copies of it added to the state (up to G4_SCHEMA_MAX_PATHS). */
static int begin(const g4_schema *s, g4_schema_state *state, int at, unsigned char c) {
    g4_schema_path *st = &state->p[at];
    int id = 0; /* the root */
    uint64_t used = 0; /* uniqueItems: the enum values earlier items took */
    if (st->n) {
        g4_schema_frame *top = &st->f[st->n - 1];
        if (top->kind == F_ANY) return top->count++, 0;
        if (top->kind == F_OBJECT) id = s->props[s->nodes[top->node].prop0 + top->prop].node;
        else { /* an array */
            const schema_node *a = &s->nodes[top->node];
            if (a->max_items >= 0 && top->count >= (uint32_t)a->max_items) return -1;
            top->count++;
            id = a->items;
            if (a->unique) used = top->mask;
        }
    }
    if (id < 0) return open_value(s, st, -1, c);
    int ids[G4_SCHEMA_MAX_PATHS], taken = 0;
    const int k = resolve(s, id, type_of_first(c), ids);
    if (k <= 1) { /* a unique array's items are one enum node */
        if (!k || open_value(s, st, ids[0], c)) return -1;
        if (!used || (st->f[st->n - 1].mask &= ~used)) return 0;
        st->n--;
        return -1;
    }
    g4_schema_path before; /* each alternative starts from here */
    copy_path(&before, st);
    for (int i = 0; i < k; i++) {
        g4_schema_path *p = taken ? NULL : st;
        if (!p && state->forks + 1 < G4_SCHEMA_MAX_PATHS) p = &state->p[++state->forks], copy_path(p, &before);
        if (!p) break; /* past the paths a state holds: the later alternatives are left out */
        if (!open_value(s, p, ids[i], c)) taken++;
        else if (p != st) state->forks--;
        else copy_path(st, &before); /* for the next alternative to try */
    }
    return taken ? 0 : -1;
}

/* The frame of a value of node id (-1: any value) that begins with c. */
static int open_value(const g4_schema *s, g4_schema_path *st, int id, unsigned char c) {
    const int t = type_of_first(c);
    const schema_node *n = id >= 0 ? &s->nodes[id] : NULL;
    if (n && (c == '{' || c == '[') && st->n + container_need(s, n, t, s->need) > G4_JSON_MAX_DEPTH) return -1;
    if (!n || (c == '{' && !n->has_props)) return push(st, (g4_schema_frame){.node = -1, .kind = F_ANY, .count = 1});
    if (c == '{') return push(st, (g4_schema_frame){.node = id, .kind = F_OBJECT});
    if (c == '[') return push(st, (g4_schema_frame){.node = id, .kind = F_ARRAY});
    g4_schema_frame f = {.node = id, .kind = F_SCALAR, .integer = t == (T_NUMBER | T_INTEGER) && !(n->types & T_NUMBER)};
    if (t == T_STRING && n->pattern >= 0 && !n->n_enum) f.scalar = STR_PATTERN, f.mask = g4_pattern_start(s->patterns[n->pattern]);
    if (t == (T_NUMBER | T_INTEGER) && n->bounds >= 0 && !n->n_enum && g4_number_begin(&s->bounds[n->bounds], &f, c)) return -1;
    if (t == (T_NUMBER | T_INTEGER) && n->multiple && !n->n_enum) {
        f.scalar = NUM_MULTIPLE, f.integer = 1;
        if (multiple_byte(n, &f, c)) return -1;
    }
    if (n->n_enum) {
        f.mask = narrow(s, s->enums + n->enum0, n->n_enum, n->n_enum == 64 ? ~0ull : (1ull << n->n_enum) - 1, 0, c);
        if (!f.mask) return -1;
        f.pos = 1;
    }
    return push(st, f);
}

/* A byte of a scalar value (enum texts match it; integers refuse a fraction or an exponent; a string counts its
 * characters when the byte starts one). */
static int scalar_byte(const g4_schema *s, g4_schema_frame *f, unsigned char c, int char_start) {
    if (f->integer && (c == '.' || c == 'e' || c == 'E')) return -1;
    if (f->scalar == STR_PATTERN) return pattern_byte(s, f, c);
    if (f->scalar == NUM_MULTIPLE) return multiple_byte(&s->nodes[f->node], f, c);
    if (f->scalar) return g4_number_byte(&s->bounds[s->nodes[f->node].bounds], f, c);
    const schema_node *n = &s->nodes[f->node];
    if (char_start && n->max_len >= 0 && ++f->count > (uint32_t)n->max_len) return -1;
    if (char_start && n->max_len < 0 && f->count < (uint32_t)n->min_len) f->count++;
    if (!n->n_enum) return 0;
    f->mask = narrow(s, s->enums + n->enum0, n->n_enum, f->mask, f->pos, c);
    f->pos++;
    return f->mask ? 0 : -1;
}

static int end(const g4_schema *s, g4_schema_path *st, unsigned char c, int with_byte) {
    g4_schema_frame *f = &st->f[st->n - 1];
    const schema_node *n = f->node >= 0 ? &s->nodes[f->node] : NULL;
    switch (f->kind) {
    case F_ANY:
        if (--f->count) return 0;
        break;
    case F_SCALAR: {
        if (with_byte && scalar_byte(s, f, c, 0)) return -1;
        const int value = n->n_enum ? some_whole(s->enums + n->enum0, n->n_enum, f->mask, f->pos) : 0;
        if (value < 0) return -1;
        g4_schema_frame *up = &st->f[st->n - 2]; /* the root is an object: a scalar has a container */
        if (n->n_enum && up->kind == F_ARRAY && s->nodes[up->node].unique) up->mask |= 1ull << value;
        if (c == '"' && with_byte && (f->scalar == STR_PATTERN ? f->prop : f->count) < (uint32_t)n->min_len)
            return -1; /* a string too short */
        if (f->scalar == STR_PATTERN && !g4_pattern_accepts(s->patterns[n->pattern], f->mask)) return -1;
        if (f->scalar & G4_NUM_ON && !g4_number_within(&s->bounds[n->bounds], f)) return -1;
        if (f->scalar == NUM_MULTIPLE && f->mask) return -1; /* not a multiple */
        break;
    }
    case F_OBJECT:
        for (int i = (int)f->count; i < n->n_props; i++)
            if (s->props[n->prop0 + i].required) return -1;
        break;
    default: /* an array */
        if (f->count < (uint32_t)n->min_items) return -1;
    }
    st->n--;
    return 0;
}

/* The properties a key may name next: those from `count` on, up to the first required one, whose values fit in
 * the nesting left (`depth` containers are open). */
static uint64_t key_candidates(const g4_schema *s, const schema_node *n, int count, int depth) {
    uint64_t mask = 0;
    for (int i = count; i < n->n_props; i++) {
        const schema_prop *p = &s->props[n->prop0 + i];
        if (depth + s->need[p->node] <= G4_JSON_MAX_DEPTH) mask |= 1ull << i;
        if (p->required) break;
    }
    return mask;
}

static int event(const g4_schema *s, g4_schema_state *state, int at, int what, unsigned char c) {
    g4_schema_path *st = &state->p[at];
    if (what == G4_JEV_BEGIN) return begin(s, state, at, c);
    if (what == G4_JEV_END || what == G4_JEV_END_BEFORE) return end(s, st, c, what == G4_JEV_END);
    g4_schema_frame *f = &st->f[st->n - 1];
    if (f->kind == F_ANY) return 0;
    const schema_node *n = &s->nodes[f->node];
    if (what == G4_JEV_COMMA) {
        /* an item begun fitted, so the next one will; a property after this one may not */
        if (f->kind == F_OBJECT) return key_candidates(s, n, (int)f->count, st->n) ? 0 : -1;
        if (n->unique && __builtin_popcountll(f->mask) >= s->nodes[n->items].n_enum) return -1; /* none left */
        return n->max_items < 0 || f->count < (uint32_t)n->max_items ? 0 : -1;
    }
    if (what == G4_JEV_KEY) {
        f->in_key = 1, f->pos = 0;
        f->mask = key_candidates(s, n, (int)f->count, st->n);
        return f->mask ? 0 : -1;
    }
    /* G4_JEV_KEY_END: the key must be one candidate's whole name */
    for (int i = 0; i < n->n_props; i++) {
        if (!(f->mask >> i & 1) || (int)s->props[n->prop0 + i].key.len != f->pos) continue;
        f->in_key = 0, f->prop = (uint16_t)i, f->count = (uint16_t)(i + 1);
        return 0;
    }
    return -1;
}

/* A byte inside a key or a scalar (or whitespace between tokens, which changes nothing). */
static int plain_byte(const g4_schema *s, g4_schema_path *st, unsigned char c, int char_start) {
    if (!st->n) return 0;
    g4_schema_frame *f = &st->f[st->n - 1];
    if (f->kind == F_SCALAR) return scalar_byte(s, f, c, char_start);
    if (f->kind != F_OBJECT || !f->in_key) return 0;
    const schema_node *n = &s->nodes[f->node];
    for (int i = 0; i < n->n_props; i++) {
        const schema_text k = s->props[n->prop0 + i].key;
        if (f->mask >> i & 1 && ((int)k.len <= f->pos || (unsigned char)text_of(s, k)[f->pos] != c))
            f->mask &= ~(1ull << i);
    }
    f->pos++;
    return f->mask ? 0 : -1;
}

/* One byte on path `at` (its events, or a plain byte); 0, or -1 when the path cannot take it. A value's beginning
 * is the last event of its byte (JSON puts a separator between values), so the paths it adds have taken the byte. */
static int path_byte(const g4_schema *sc, g4_schema_state *s, int at, const g4_json_events *ev, unsigned char c,
                     int char_start) {
    if (!ev->n) return plain_byte(sc, &s->p[at], c, char_start);
    for (int k = 0; k < ev->n; k++)
        if (event(sc, s, at, ev->ev[k], c)) return -1;
    return 0;
}

static int same_path(const g4_schema_path *a, const g4_schema_path *b) {
    return a->n == b->n && !memcmp(a->f, b->f, (size_t)a->n * sizeof *a->f);
}

/* Drops paths that failed (dead[i]) and paths equal to an earlier one (alternatives that took the same text and
 * closed leave the same reading behind); -1 when none is left. */
static int prune(g4_schema_state *s, const uint8_t *dead) {
    int kept = 0;
    for (int i = 0; i <= s->forks; i++) {
        int twin = dead[i];
        for (int j = 0; j < kept && !twin; j++) twin = same_path(&s->p[j], &s->p[i]);
        if (twin) continue;
        if (kept != i) copy_path(&s->p[kept], &s->p[i]);
        kept++;
    }
    s->forks = kept ? kept - 1 : 0;
    return kept ? 0 : -1;
}

int g4_schema_feed(const g4_schema *sc, g4_schema_state *s, const unsigned char *bytes, size_t n) {
    g4_json_events ev;
    for (size_t i = 0; i < n; i++) {
        const int char_start = g4_json_in_string(&s->syntax) && bytes[i] != '"'; /* a character or an escape */
        if (g4_json_feed_byte(&s->syntax, bytes[i], &ev)) return -1;
        if (!sc) continue;
        if (!s->forks) { /* one reading, as nearly always: it may fork here, into paths that differ */
            if (path_byte(sc, s, 0, &ev, bytes[i], char_start)) return -1;
            continue;
        }
        uint8_t dead[G4_SCHEMA_MAX_PATHS] = {0};
        const int paths = s->forks + 1; /* those a value's beginning adds now have taken the byte */
        for (int at = 0; at < paths; at++) dead[at] = (uint8_t)(path_byte(sc, s, at, &ev, bytes[i], char_start) != 0);
        if (prune(s, dead)) return -1;
    }
    return 0;
}

/* A path's room in the string it stands in (see g4_schema_string_room). */
static int64_t path_room(const g4_schema *sc, const g4_schema_path *p) {
    const g4_schema_frame *f = &p->f[p->n - 1];
    if (f->kind == F_ANY) return INT64_MAX;
    if (f->kind != F_SCALAR) return -1; /* a key */
    const schema_node *n = &sc->nodes[f->node];
    if (n->n_enum) return -1;
    if (n->pattern >= 0 && f->scalar == STR_PATTERN && has_lengths(n)) /* only where every string goes on matching */
        return g4_pattern_matches_all(sc->patterns[n->pattern], f->mask) ? pattern_max_len(n) - (int64_t)f->prop : -1;
    if (n->pattern >= 0) return f->scalar == STR_PATTERN && g4_pattern_anything_goes(sc->patterns[n->pattern], f->mask) ? INT64_MAX : -1;
    return n->max_len < 0 ? INT64_MAX : n->max_len - (int64_t)f->count;
}

int64_t g4_schema_string_room(const g4_schema *sc, const g4_schema_state *s) {
    if (!g4_json_in_string(&s->syntax)) return -1;
    if (!sc) return INT64_MAX;
    int64_t most = -1; /* a piece some reading takes is taken: the widest room, where every reading has one */
    for (int i = 0; i <= s->forks; i++) {
        const int64_t room = path_room(sc, &s->p[i]);
        if (room < 0) return -1;
        if (room > most) most = room;
    }
    return most;
}

int g4_schema_pattern_at(const g4_schema *sc, const g4_schema_state *s, int *pattern, uint64_t *at) {
    if (!sc || !g4_json_in_string(&s->syntax) || s->forks) return 0; /* a place is one reading's */
    const g4_schema_frame *f = &s->p[0].f[s->p[0].n - 1];
    if (f->kind != F_SCALAR || f->scalar != STR_PATTERN || f->pos != DEC_CHAR || has_lengths(&sc->nodes[f->node]))
        return 0; /* a length's place includes the characters so far */
    *pattern = sc->nodes[f->node].pattern;
    *at = f->mask;
    return 1;
}
