/* test_json_schema.c — JSON schemas: what compiles, texts checked byte by byte, random walks, generation on the tiny model. */
#include "test.h"

#include <cjson/cJSON.h>
#include <math.h>

#include "runtime/generate.h"
#include "runtime/json_pattern.h"
#include "runtime/json_schema.h"
#include "text/tokenizer.h"

static const char *const person_schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"description\":\"annotations are ignored\",\"format\":\"x\"},"
    "\"age\":{\"type\":\"integer\"},"
    "\"height\":{\"type\":[\"number\",\"null\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":1,\"maxItems\":3},"
    "\"color\":{\"enum\":[\"red\",\"green\",7,true,null]},"
    "\"nick\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":3},"
    "\"pet\":{\"$ref\":\"#/$defs/pet\"},"
    "\"extra\":{},"
    "\"kind\":{\"const\":\"person\"},"
    "\"q\\\"\\u00e9\":{\"type\":\"boolean\"}},"
    "\"required\":[\"name\",\"age\",\"height\",\"tags\",\"color\",\"pet\",\"kind\"],"
    "\"additionalProperties\":false,"
    "\"$defs\":{\"pet\":{\"type\":\"object\",\"properties\":{\"species\":{\"type\":\"string\"},"
    "\"friend\":{\"anyOf\":[{\"$ref\":\"#/$defs/pet\"},{\"type\":\"null\"}]}},\"required\":[\"species\",\"friend\"]}}}";

static g4_schema *compile(const char *text, g4_err *err) {
    *err = (g4_err){0};
    return g4_schema_compile(text, strlen(text), err);
}

static void check_refusals(void) {
    static const struct {
        const char *schema, *message;
    } bad[] = {
        {"{\"type\":", "not valid JSON"},
        {"[1]", "a schema must be an object or true"},
        {"{\"type\":\"string\"}", "the schema must describe an object"},
        {"{\"patternProperties\":{\"x\":{}}}", "this server does not enforce the keyword patternProperties"},
        {"{\"properties\":{\"a\":{\"type\":\"array\",\"uniqueItems\":true}}}", "uniqueItems is enforced only where the items are enum"},
        {"{\"properties\":{\"a\":{\"type\":\"array\",\"uniqueItems\":true,\"items\":{\"type\":\"string\"}}}}", "uniqueItems is enforced only"},
        {"{\"properties\":{\"a\":{\"type\":\"array\",\"uniqueItems\":true,\"items\":{\"anyOf\":[{\"enum\":[1]},{\"enum\":[\"a\"]}]}}}}", "uniqueItems is enforced only"},
        {"{\"properties\":{\"a\":{\"type\":\"array\",\"uniqueItems\":true,\"minItems\":3,\"items\":{\"enum\":[1,2,1.0]}}}}", "minItems asks for more items than there are values"},
        {"{\"properties\":{\"a\":{\"type\":\"array\",\"uniqueItems\":1,\"items\":{\"enum\":[1]}}}}", "uniqueItems may only be true or false"},
        {"{\"properties\":{\"a\":{\"type\":\"array\",\"contains\":{\"const\":1}}}}", "keyword contains"},
        {"{\"properties\":{\"a\":{\"type\":\"number\",\"multipleOf\":0.5}}}", "multipleOf must be a whole number from 1"},
        {"{\"properties\":{\"a\":{\"type\":\"integer\",\"multipleOf\":0}}}", "multipleOf must be a whole number"},
        {"{\"properties\":{\"a\":{\"type\":\"integer\",\"multipleOf\":\"2\"}}}", "multipleOf must be a whole number"},
        {"{\"properties\":{\"a\":{\"type\":\"integer\",\"multipleOf\":4294967296}}}", "multipleOf must be a whole number"},
        {"{\"properties\":{\"a\":{\"type\":\"integer\",\"multipleOf\":2,\"minimum\":0}}}", "multipleOf cannot stand beside minimum"},
        {"{\"properties\":{\"a\":{\"enum\":[2,4],\"multipleOf\":2}}}", "multipleOf cannot stand beside enum"},
        {"{\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":\"0\"}}}", "minimum, maximum, exclusiveMinimum and exclusiveMaximum must be numbers"},
        {"{\"properties\":{\"a\":{\"maximum\":3,\"exclusiveMaximum\":true}}}", "must be numbers"},
        {"{\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":1e999}}}", "must be numbers within a double's range"},
        {"{\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":0.2,\"maximum\":0.8}}}", "no number lies within its minimum and maximum"},
        {"{\"properties\":{\"a\":{\"type\":\"number\",\"exclusiveMinimum\":1,\"maximum\":1}}}", "no number lies within"},
        /* no number of JSON mode's 48 characters reaches these (check_number_lengths) */
        {"{\"properties\":{\"a\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":1e-300}}}", "no number lies within"},
        {"{\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":1e60}}}", "no number lies within"},
        {"{\"properties\":{\"a\":{\"type\":\"number\",\"maximum\":-5e77}}}", "no number lies within"},
        {"{\"properties\":{\"a\":{\"enum\":[1,2],\"minimum\":3}}}", "no enum value has the type, length, pattern and bounds"},
        {"{\"properties\":{\"a\":{\"type\":\"string\",\"minLength\":3,\"maxLength\":2}}}", "minLength is above maxLength"},
        {"{\"properties\":{\"a\":{\"enum\":[\"abc\"],\"maxLength\":2}}}", "no enum value has the type, length"},
        {"{\"properties\":{\"a\":{\"oneOf\":[{\"properties\":{}},{\"type\":\"object\"}]}}}", "oneOf alternatives that one value"},
        {"{\"properties\":{\"a\":{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}}}", "oneOf alternatives that one value"},
        {"{\"properties\":{\"a\":{\"oneOf\":[{\"type\":\"string\"},{}]}}}", "oneOf alternatives that one value"},
        /* a discriminator must be required in both, and its values must differ */
        {"{\"properties\":{\"a\":{\"oneOf\":[{\"properties\":{\"k\":{\"const\":1}},\"required\":[\"k\"]},"
         "{\"properties\":{\"k\":{\"const\":2}}}]}}}", "oneOf alternatives that one value"},
        {"{\"properties\":{\"a\":{\"oneOf\":[{\"properties\":{\"k\":{\"enum\":[1,2]}},\"required\":[\"k\"]},"
         "{\"properties\":{\"k\":{\"enum\":[2,3]}},\"required\":[\"k\"]}]}}}", "oneOf alternatives that one value"},
        {"{\"properties\":{\"a\":{\"$ref\":\"#/$defs/missing\"}}}", "$ref must point into this schema"},
        {"{\"properties\":{\"a\":{\"$ref\":\"http://example.com/s.json\"}}}", "$ref must point into this schema"},
        {"{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},\"properties\":{\"x\":{\"$ref\":\"#/$defs/a\"}}}", "cycle"},
        {"{\"required\":[\"b\"],\"properties\":{\"a\":true}}", "required names a property that properties does not declare: b"},
        {"{\"properties\":{\"a\":{\"type\":\"wat\"}}}", "type must name"},
        {"{\"properties\":{\"a\":{\"type\":[]}}}", "type must name"},
        {"{\"properties\":{\"a\":{\"enum\":[]}}}", "enum must be a non-empty array"},
        {"{\"properties\":{\"a\":{\"enum\":[{\"x\":1}]}}}", "enum and const values must be strings"},
        {"{\"properties\":{\"a\":{\"enum\":[\"x\"],\"type\":\"integer\"}}}", "no enum value has the type"},
        {"{\"properties\":{\"a\":{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}}}", "minItems is above maxItems"},
        {"{\"properties\":{\"a\":{\"type\":\"array\",\"minItems\":-1}}}", "minItems and maxItems must be integers"},
        {"{\"additionalProperties\":{\"type\":\"string\"}}", "additionalProperties may only be true or false"},
        {"{\"properties\":{\"a\":{\"allOf\":[{},{}]}}}", "allOf must hold exactly one schema"},
        {"{\"properties\":{\"a\":{\"$ref\":\"#\",\"type\":\"string\"}}}", "$ref and allOf cannot stand beside"},
        {"{\"properties\":{\"a\":{\"anyOf\":[{\"type\":\"string\"}],\"type\":\"string\"}}}", "anyOf and oneOf cannot stand beside"},
        {"{\"properties\":{\"a\":false}}", "a schema must be an object or true"},
        {"{\"properties\":{\"a\x8e\":true}}", "not valid UTF-8"},
        {"{\"properties\":{\"a\":{\"enum\":[\"\xc0\x80\"]}}}", "not valid UTF-8"},
        {"{\"$defs\":{\"n\":{\"properties\":{\"next\":{\"$ref\":\"#/$defs/n\"}},\"required\":[\"next\"]}},"
         "\"properties\":{\"list\":{\"$ref\":\"#/$defs/n\"}}}", "no instance of finite size"},
        {"{\"properties\":{\"a\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"$ref\":\"#/properties/a\"}}}}",
         "no instance of finite size"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        g4_err err;
        g4_schema *s = compile(bad[i].schema, &err);
        CHECK(!s && err.code == GEMMA4C_ERR_ARG && strstr(err.msg, bad[i].message) && !strncmp(err.msg, "json_schema: ", 13),
              "refusal %zu: '%s' gave '%s'", i, bad[i].schema, err.msg);
        g4_schema_free(s);
    }
    /* the bounds: 65 properties, nesting 70 deep, 65 enum values */
    char big[8192];
    size_t n = (size_t)snprintf(big, sizeof big, "{\"properties\":{");
    for (int i = 0; i < 65; i++) n += (size_t)snprintf(big + n, sizeof big - n, "%s\"p%d\":true", i ? "," : "", i);
    snprintf(big + n, sizeof big - n, "}}");
    g4_err err;
    g4_schema *s = compile(big, &err);
    CHECK(!s && strstr(err.msg, "more than 64 properties"), "65 properties: %s", err.msg);
    n = 0;
    for (int i = 0; i < 70; i++) n += (size_t)snprintf(big + n, sizeof big - n, "{\"properties\":{\"a\":");
    n += (size_t)snprintf(big + n, sizeof big - n, "true");
    for (int i = 0; i < 70; i++) n += (size_t)snprintf(big + n, sizeof big - n, "}}");
    s = compile(big, &err);
    CHECK(!s && strstr(err.msg, "nested deeper than 64"), "70 levels: %s", err.msg);
    n = (size_t)snprintf(big, sizeof big, "{\"properties\":{\"a\":{\"enum\":[");
    for (int i = 0; i < 65; i++) n += (size_t)snprintf(big + n, sizeof big - n, "%s%d", i ? "," : "", i);
    snprintf(big + n, sizeof big - n, "]}}}");
    s = compile(big, &err);
    CHECK(!s && strstr(err.msg, "more than 64 enum values"), "65 enum values: %s", err.msg);
    /* required objects nested as deep as a schema may be written, one level deeper than JSON mode nests an
     * answer: it could never close */
    for (int levels = 64; levels <= 65; levels++) {
        n = 0;
        for (int i = 0; i < levels - 1; i++) n += (size_t)snprintf(big + n, sizeof big - n, "{\"required\":[\"a\"],\"properties\":{\"a\":");
        n += (size_t)snprintf(big + n, sizeof big - n, "{\"type\":\"object\"}");
        for (int i = 0; i < levels - 1; i++) n += (size_t)snprintf(big + n, sizeof big - n, "}}");
        s = compile(big, &err);
        CHECK(levels == 64 ? s != NULL : !s && strstr(err.msg, "need objects and arrays nested deeper than 64"),
              "%d required levels: %s", levels, s ? "compiles" : err.msg);
        g4_schema_free(s);
    }
}


/* Feeds text byte by byte: the index of the first byte refused, or -1 when all are taken (and *complete says
 * whether the object closed at the last byte and not before). */
static long first_refused(const g4_schema *sc, const char *text, int *complete) {
    g4_schema_state s = {0};
    int early = 0;
    const size_t n = strlen(text);
    for (size_t i = 0; i < n; i++) {
        if (g4_schema_feed(sc, &s, (const unsigned char *)text + i, 1)) return (long)i;
        early |= i + 1 < n && g4_json_complete(&s.syntax);
    }
    *complete = !early && g4_json_complete(&s.syntax);
    return -1;
}

/* Where JSON mode's nesting ends, an optional property or item that would need deeper is never begun: every
 * text the constraint takes can still be closed. */
static void check_depth_limit(void) {
    g4_err err;
    g4_schema *sc = compile("{\"properties\":{\"v\":{\"type\":\"number\"},\"k\":{\"$ref\":\"#\"},"
                            "\"l\":{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}}}", &err);
    CHECK(sc != NULL, "the tree schema compiles: %s", err.msg);
    if (!sc) return;
    struct {
        int open;         /* objects opened through k first */
        const char *then;
        long refused;     /* the index in `then` of the byte refused, -1 none */
    } cases[] = {{63, "{\"v\":1", -1}, {63, "{\"k", 2}, {63, "{\"l", 2}, {63, "{\"v\":1,", 6}, {63, "{}", -1},
                 {63, "[", 0}, {63, "{\"v\":1}", -1}, {62, "{\"l\":[]", -1}, {62, "{\"l\":[{", 6}, {62, "{\"l\":[]}", -1}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char text[1024];
        size_t n = 0;
        for (int i = 0; i < cases[c].open; i++) n += (size_t)snprintf(text + n, sizeof text - n, "{\"k\":");
        snprintf(text + n, sizeof text - n, "%s", cases[c].then);
        int complete;
        const long at = first_refused(sc, text, &complete);
        const long want = cases[c].refused < 0 ? -1 : (long)n + cases[c].refused;
        CHECK(at == want, "%d levels, then '%s': refused at %ld, wanted %ld", cases[c].open, cases[c].then, at, want);
    }
    g4_schema_free(sc);
}

static void check_texts(const g4_schema *sc) {
    static const char *const good[] = {
        "{\"name\":\"Ann\",\"age\":31,\"height\":1.7,\"tags\":[\"a\"],\"color\":\"red\",\"nick\":\"A\\u00e9\\ud83d\\ude00\",\"pet\":{\"species\":"
        "\"cat\",\"friend\":{\"species\":\"dog\",\"friend\":null}},\"extra\":{\"x\":[1,{\"y\":null}],\"z\":\"}\"},"
        "\"kind\":\"person\",\"q\\\"\xc3\xa9\":true}",
        "{ \"name\" : \"B\\\"\\u00e9\" , \"age\":-0,\"height\":null,\"tags\":[\"x\" , \"y\",\"z\"],\"color\":7,\"pet\":"
        "{\"species\":\"\",\"friend\":null},\"kind\":\"person\"}",
        "{\"name\":\"\",\"age\":7,\"height\":-2e3,\"tags\":[\"\"],\"color\":true,\"pet\":{\"species\":\"s\",\"friend\":"
        "null},\"extra\":[[],{}],\"kind\":\"person\"}",
        "{\"name\":\"\",\"age\":7,\"height\":0,\"tags\":[\"\"],\"color\":null,\"pet\":{\"species\":\"s\",\"friend\":"
        "null},\"extra\":-1.5,\"kind\":\"person\"}",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        int complete = 0;
        const long at = first_refused(sc, good[i], &complete);
        CHECK(at == -1 && complete, "good text %zu: refused at byte %ld, complete %d", i, at, complete);
    }
    static const struct {
        const char *prefix, *rest; /* the prefix is taken, the first byte of rest refused */
    } bad[] = {
        {"", "[]"},
        {"{\"", "age\":1}"},
        {"{\"name\":\"A\"", "}"},
        {"{\"name\":\"A\",\"age\":1", ".5"},
        {"{\"name\":\"A\",\"age\":1", "e5"},
        {"{\"name\":\"A\",\"age\":", "\"1\""},
        {"{\"name\":\"A\",\"age\":1,\"height\":", "\"1\""},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[", "]"},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\",\"b\",\"c\"", ","},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[", "1"},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":\"", "blue\""},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":7", "0"},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":\"re", "\""},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":", "false"},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":null,\"p", "at\""},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":null,\"nick\":\"\xc3\xa9", "\""},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":null,\"nick\":\"a\\n\xc3\xa9", "b"},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":null,\"", "kind\""},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":null,\"pet\":{\"species\":\"c\",\"friend\":", "\"x\""},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":null,\"pet\":{\"species\":\"c\",\"friend\":null", ","},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":null,\"pet\":{\"species\":\"c\",\"friend\":null},"
         "\"kind\":\"person",
         "s"},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":null,\"pet\":{\"species\":\"c\",\"friend\":null},"
         "\"kind\":\"person\",\"q\\\"\xc3\xa9\":true",
         ","},
        {"{\"name\":\"A\",\"age\":1,\"height\":1,\"tags\":[\"a\"],\"color\":null,\"pet\":{\"species\":\"c\",\"friend\":null},"
         "\"kind\":\"person\",\"q",
         "\xc3"}, /* the key is written as cJSON prints it: q, an escaped quote, then é */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[1024];
        snprintf(text, sizeof text, "%s%s", bad[i].prefix, bad[i].rest);
        int complete = 0;
        const long at = first_refused(sc, text, &complete);
        CHECK(at == (long)strlen(bad[i].prefix), "bad text %zu: refused at byte %ld, not %zu: '%s'", i, at,
              strlen(bad[i].prefix), text);
    }
}

/* ---- an independent check of an instance against the schema's subset ---- */

static int valid(const cJSON *root, const cJSON *schema, const cJSON *v, int depth);

static int valid_type(const char *t, const cJSON *v) {
    if (!strcmp(t, "object")) return cJSON_IsObject(v);
    if (!strcmp(t, "array")) return cJSON_IsArray(v);
    if (!strcmp(t, "string")) return cJSON_IsString(v);
    if (!strcmp(t, "number")) return cJSON_IsNumber(v);
    if (!strcmp(t, "integer")) return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    if (!strcmp(t, "boolean")) return cJSON_IsBool(v);
    return !strcmp(t, "null") && cJSON_IsNull(v);
}

/* minimum, maximum, exclusiveMinimum, exclusiveMaximum as a validator reads them: on doubles. */
static int within_bounds(const cJSON *schema, double x) {
    const cJSON *k;
    if ((k = cJSON_GetObjectItemCaseSensitive(schema, "minimum")) && !(x >= k->valuedouble)) return 0;
    if ((k = cJSON_GetObjectItemCaseSensitive(schema, "maximum")) && !(x <= k->valuedouble)) return 0;
    if ((k = cJSON_GetObjectItemCaseSensitive(schema, "exclusiveMinimum")) && !(x > k->valuedouble)) return 0;
    if ((k = cJSON_GetObjectItemCaseSensitive(schema, "exclusiveMaximum")) && !(x < k->valuedouble)) return 0;
    return 1;
}

static int valid(const cJSON *root, const cJSON *schema, const cJSON *v, int depth) {
    if (depth > 100) return 0;
    if (cJSON_IsTrue(schema)) return 1;
    const cJSON *k;
    if ((k = cJSON_GetObjectItemCaseSensitive(schema, "$ref"))) {
        const char *ref = k->valuestring;
        if (!strcmp(ref, "#")) return valid(root, root, v, depth + 1);
        const cJSON *defs = cJSON_GetObjectItemCaseSensitive(root, "$defs");
        return valid(root, cJSON_GetObjectItemCaseSensitive(defs, ref + strlen("#/$defs/")), v, depth + 1);
    }
    if ((k = cJSON_GetObjectItemCaseSensitive(schema, "anyOf"))) {
        for (const cJSON *a = k->child; a; a = a->next)
            if (valid(root, a, v, depth + 1)) return 1;
        return 0;
    }
    if ((k = cJSON_GetObjectItemCaseSensitive(schema, "oneOf"))) {
        int matches = 0;
        for (const cJSON *a = k->child; a; a = a->next) matches += valid(root, a, v, depth + 1);
        return matches == 1;
    }
    if ((k = cJSON_GetObjectItemCaseSensitive(schema, "type"))) {
        int any = 0;
        if (cJSON_IsString(k)) any = valid_type(k->valuestring, v);
        for (const cJSON *t = cJSON_IsArray(k) ? k->child : NULL; t; t = t->next) any |= valid_type(t->valuestring, v);
        if (!any) return 0;
    }
    const cJSON *values = cJSON_GetObjectItemCaseSensitive(schema, "enum");
    if ((k = cJSON_GetObjectItemCaseSensitive(schema, "const"))) {
        if (!cJSON_Compare(k, v, 1)) return 0;
    } else if (values) {
        int found = 0;
        for (const cJSON *e = values->child; e; e = e->next) found |= cJSON_Compare(e, v, 1);
        if (!found) return 0;
    }
    const cJSON *lo = cJSON_GetObjectItemCaseSensitive(schema, "minLength");
    const cJSON *hi = cJSON_GetObjectItemCaseSensitive(schema, "maxLength");
    if (cJSON_IsString(v) && (lo || hi)) {
        int chars = 0;
        for (const unsigned char *p = (const unsigned char *)v->valuestring; *p; p++) chars += (*p & 0xC0) != 0x80;
        if ((lo && chars < lo->valueint) || (hi && chars > hi->valueint)) return 0;
    }
    if (cJSON_IsNumber(v) && !within_bounds(schema, v->valuedouble)) return 0;
    const cJSON *multiple = cJSON_GetObjectItemCaseSensitive(schema, "multipleOf");
    if (multiple && cJSON_IsNumber(v) && fmod(v->valuedouble, multiple->valuedouble) != 0) return 0;
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(schema, "pattern");
    if (re && cJSON_IsString(v)) { /* the string as cJSON decodes it, against the whole-string matcher */
        g4_err err;
        g4_pattern *p = g4_pattern_compile(re->valuestring, strlen(re->valuestring), &err);
        const int ok = p && g4_pattern_matches(p, v->valuestring);
        g4_pattern_free(p);
        if (!ok) return 0;
    }
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    if (props && cJSON_IsObject(v)) {
        for (const cJSON *m = v->child; m; m = m->next) {
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(props, m->string);
            if (!p || !valid(root, p, m, depth + 1)) return 0;
        }
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(schema, "required");
        for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
            if (!cJSON_GetObjectItemCaseSensitive(v, r->valuestring)) return 0;
    }
    if (cJSON_IsArray(v)) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(schema, "items");
        const cJSON *lo = cJSON_GetObjectItemCaseSensitive(schema, "minItems");
        const cJSON *hi = cJSON_GetObjectItemCaseSensitive(schema, "maxItems");
        const int count = cJSON_GetArraySize(v);
        if ((lo && count < lo->valueint) || (hi && count > hi->valueint)) return 0;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(schema, "uniqueItems")))
            for (const cJSON *e = v->child; e; e = e->next)
                for (const cJSON *f = e->next; f; f = f->next)
                    if (cJSON_Compare(e, f, 1)) return 0;
        for (const cJSON *e = v->child; e && items; e = e->next)
            if (!valid(root, items, e, depth + 1)) return 0;
    }
    return 1;
}

static int valid_text(const char *schema_text, const char *text, size_t len) {
    cJSON *schema = cJSON_Parse(schema_text), *v = cJSON_ParseWithLength(text, len);
    const int ok = schema && cJSON_IsObject(v) && valid(schema, schema, v, 0);
    cJSON_Delete(schema);
    cJSON_Delete(v);
    return ok;
}

/* Random texts the constraint lets through, one byte at a time: every prefix must be able to go on (some byte is
 * always allowed), and every finished object must be valid. Closers are preferred half the time, so that walks end. */
static void check_walks(const g4_schema *sc, const char *schema_text, int walks) {
    uint64_t rng = 12345;
    int finished = 0, stuck = 0, invalid = 0;
    static char text[1 << 16];
    for (int w = 0; w < walks; w++) {
        g4_schema_state s = {0}, t;
        size_t len = 0;
        while (!g4_json_complete(&s.syntax) && len + 1 < sizeof text) {
            unsigned char ok[256];
            int n_ok = 0;
            for (int c = 0; c < 256; c++) {
                const unsigned char b = (unsigned char)c;
                g4_schema_copy(&t, &s);
                if (!g4_schema_feed(sc, &t, &b, 1)) ok[n_ok++] = b;
            }
            if (!n_ok) {
                if (!stuck) fprintf(stderr, "  stuck after: %.*s\n", (int)len, text);
                stuck++;
                break;
            }
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            unsigned char pick = ok[(rng >> 33) % (uint64_t)n_ok];
            if (rng >> 63) /* prefer a byte that ends something */
                for (int i = 0; i < n_ok; i++)
                    if (strchr("\"}],", ok[i]) && ok[i]) pick = ok[i];
            g4_schema_feed(sc, &s, &pick, 1);
            text[len++] = (char)pick;
        }
        if (g4_json_complete(&s.syntax) && (finished++, !valid_text(schema_text, text, len)) && invalid++ < 3)
            fprintf(stderr, "  not an instance: %.*s\n", (int)len, text);
    }
    CHECK(!stuck && finished == walks && !invalid, "walks: %d of %d finished, %d stuck, %d invalid", finished, walks,
          stuck, invalid);
}

/* Numbers with bounds: texts the constraint takes whole against a validator's reading of them, for integer and
 * number properties, ranges of each kind; then random walks through a schema of bounded numbers. */
static void check_numbers(void) {
    static const char *const ranges[] = {
        "\"minimum\":1,\"maximum\":120", "\"exclusiveMinimum\":-10,\"exclusiveMaximum\":10", "\"minimum\":-1000.5",
        "\"maximum\":-7,\"minimum\":-905", "\"exclusiveMaximum\":0.5", "\"minimum\":0,\"maximum\":0",
        "\"minimum\":99.75,\"maximum\":101.125", "\"minimum\":1e3", "\"exclusiveMinimum\":0,\"maximum\":1",
        "\"minimum\":-2.5,\"exclusiveMaximum\":-0.25", "\"maximum\":0.001,\"minimum\":-0.001"};
    static const char *const fractions[] = {"", ".0", ".5", ".25", ".125", ".999", ".0001", ".75"};
    uint64_t rng = 99;
    int tried = 0, wrong = 0;
    for (size_t r = 0; r < sizeof ranges / sizeof *ranges; r++)
        for (int integer = 0; integer < 2; integer++) {
            char schema_text[256];
            snprintf(schema_text, sizeof schema_text, "{\"properties\":{\"a\":{\"type\":\"%s\",%s}},\"required\":[\"a\"]}",
                     integer ? "integer" : "number", ranges[r]);
            g4_err err;
            g4_schema *sc = compile(schema_text, &err);
            CHECK(sc != NULL, "%s: %s", schema_text, err.msg);
            cJSON *schema = cJSON_Parse(schema_text);
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(schema, "properties"), "a");
            for (int i = 0; sc && i < 6000; i++) {
                char value[64], text[96];
                if (i < 2201 * 2) { /* every integer of [-1100, 1100], and each with a fraction */
                    const int v = i % 2201 - 1100;
                    snprintf(value, sizeof value, "%s%d%s", v == 0 && i / 2201 ? "-" : "", v,
                             i / 2201 ? fractions[(unsigned)v % 8] : "");
                } else { /* random: sign, integer part, fraction */
                    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                    const int digits = (int)(rng >> 40) % 5, frac = (int)(rng >> 50) % 7;
                    size_t n = (size_t)snprintf(value, sizeof value, "%s", rng >> 63 ? "-" : "");
                    n += (size_t)snprintf(value + n, sizeof value - n, "%llu", digits ? (unsigned long long)(rng >> 20) % 100000 % (unsigned long long)pow(10, digits) : 0ull);
                    if (frac) n += (size_t)snprintf(value + n, sizeof value - n, ".%0*llu", frac, (unsigned long long)(rng >> 8) % (unsigned long long)pow(10, frac));
                }
                snprintf(text, sizeof text, "{\"a\":%s}", value);
                const double x = strtod(value, NULL);
                const int want = within_bounds(a, x) && (!integer || !strchr(value, '.'));
                int complete = 0;
                const int got = first_refused(sc, text, &complete) < 0 && complete;
                tried++;
                if (got != want && wrong++ < 5) fprintf(stderr, "  %s: %s %s\n", schema_text, text, got ? "taken" : "refused");
            }
            cJSON_Delete(schema);
            g4_schema_free(sc);
        }
    CHECK(wrong == 0, "%d of %d bounded numbers judged otherwise than a validator", wrong, tried);

    const char *walk_schema =
        "{\"type\":\"object\",\"properties\":{\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
        "\"p\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":1},\"t\":{\"type\":[\"number\",\"null\"],\"minimum\":-40.5,"
        "\"maximum\":-39.75},\"big\":{\"type\":\"integer\",\"minimum\":1e15},\"neg\":{\"type\":\"integer\",\"exclusiveMaximum\":-99},"
        "\"pick\":{\"enum\":[1,2.5,\"x\",40],\"minimum\":2,\"maximum\":39},\"z\":{\"maximum\":0,\"minimum\":0}},"
        "\"required\":[\"age\",\"p\",\"t\",\"big\",\"neg\",\"pick\",\"z\"]}";
    g4_err err;
    g4_schema *sc = compile(walk_schema, &err);
    CHECK(sc != NULL, "the bounded walk schema compiles: %s", err.msg);
    if (sc) check_walks(sc, walk_schema, 300);
    int complete;
    const char *exp = "{\"age\":1e1}";
    CHECK(sc && first_refused(sc, exp, &complete) == 8, "a bounded number takes no exponent");
    g4_schema_free(sc);
}

/* Each text taken whole by the constraint, complete at its end, and an instance to the validator. */
static void check_taken(const g4_schema *sc, const char *schema_text, const char *const *texts, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++) {
        int complete;
        const long at = first_refused(sc, texts[i], &complete);
        CHECK(at < 0 && complete && valid_text(schema_text, texts[i], strlen(texts[i])), "%s text %zu taken whole (refused at %ld)",
              what, i, at);
    }
}

/* prefix then last: refused where last begins. */
static void check_refused_after(const g4_schema *sc, const char *prefix, const char *last, const char *what) {
    char text[512];
    const int n = snprintf(text, sizeof text, "%s", prefix);
    snprintf(text + n, sizeof text - (size_t)n, "%s", last);
    int complete;
    CHECK(first_refused(sc, text, &complete) == (long)n, "%s text '%s' refused at its last part", what, text);
}

typedef struct refused_at {
    const char *prefix, *refused; /* the text is refused where `refused` begins */
} refused_at;

/* A schema that must compile: its instances taken whole, texts refused where their last part begins, and `walks`
 * random walks judged by the validator. The compiled schema for more checks (the caller frees it), or NULL. */
static g4_schema *check_schema(const char *what, const char *schema_text, const char *const *good, size_t n_good,
                               const refused_at *bad, size_t n_bad, int walks) {
    g4_err err = {0};
    g4_schema *sc = compile(schema_text, &err);
    CHECK(sc != NULL, "the %s schema compiles: %s", what, err.msg);
    if (!sc) return NULL;
    check_taken(sc, schema_text, good, n_good, what);
    for (size_t i = 0; i < n_bad; i++) check_refused_after(sc, bad[i].prefix, bad[i].refused, what);
    check_walks(sc, schema_text, walks);
    return sc;
}

/* multipleOf (whole numbers): a digit is taken only when some digits after it make a multiple, a number ends only on
 * one, no fraction or exponent, at most 15 digits; judged by a validator that divides doubles. */
static void check_multiples(void) {
    const char *schema_text =
        "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"multipleOf\":7},"
        "\"m\":{\"type\":[\"number\",\"null\"],\"multipleOf\":250},\"big\":{\"type\":\"integer\",\"multipleOf\":2147483647},"
        "\"s\":{\"type\":\"string\",\"multipleOf\":3}},\"required\":[\"n\",\"m\",\"big\",\"s\"]}";
    static const char *const good[] = {
        "{\"n\":14,\"m\":-500,\"big\":0,\"s\":\"x\"}",
        "{\"n\":-7,\"m\":0,\"big\":4294967294,\"s\":\"\"}",
        "{\"n\":0,\"m\":null,\"big\":-2147483647,\"s\":\"4\"}",
        "{\"n\":700000000000007,\"m\":250,\"big\":999999382545667,\"s\":\"\"}", /* 15 digits */
    };
    static const refused_at bad[] = {
        {"{\"n\":15", ","},          /* 15 is no multiple of 7 (though 154 would be: the 5 was taken) */
        {"{\"n\":-1", "}"},
        {"{\"n\":7", "."},           /* no fraction */
        {"{\"n\":7", "e"},           /* no exponent */
        {"{\"n\":700000000000000", "0"}, /* a 16th digit */
        {"{\"n\":70000000000000", "1"},  /* 15 digits ending in 1 (7000...01..09): none a multiple of 7 but ...07 */
        {"{\"n\":14,\"m\":25", ","},     /* 25 is no multiple of 250 (though 251000 is: digits go on) */
        {"{\"n\":14,\"m\":1", "."},
    };
    g4_schema_free(check_schema("multiple", schema_text, good, sizeof good / sizeof *good, bad, sizeof bad / sizeof *bad, 300));
}

/* A pattern beside minLength / maxLength: characters counted as a length counts them (an escape or a surrogate pair
 * one), no text taken that could not match within the length left, strings held to G4_PATTERN_MAX_LENGTH. */
static void check_pattern_lengths(void) {
    static const struct {
        const char *schema, *message;
    } refused[] = {
        {"{\"type\":\"string\",\"pattern\":\"a\",\"minLength\":5000}", "minLength beside a pattern must be at most 4096"},
        {"{\"type\":\"string\",\"pattern\":\"^abc$\",\"maxLength\":2}", "no string of minLength to maxLength characters matches"},
        {"{\"type\":\"string\",\"pattern\":\"^(ab)+$\",\"minLength\":3,\"maxLength\":3}", "no string of minLength to maxLength"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        char schema[256];
        snprintf(schema, sizeof schema, "{\"properties\":{\"a\":%s}}", refused[i].schema);
        g4_err err = {0};
        g4_schema *sc = compile(schema, &err);
        CHECK(!sc && strstr(err.msg, "properties.a: ") && strstr(err.msg, refused[i].message), "%s refused: %s",
              refused[i].schema, err.msg);
        g4_schema_free(sc);
    }
    const char *schema_text =
        "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"pattern\":\"^[a-z]+$\",\"minLength\":3,\"maxLength\":5},"
        "\"word\":{\"type\":\"string\",\"pattern\":\"ab\",\"maxLength\":4},"
        "\"num\":{\"type\":\"string\",\"pattern\":\"^(\\\\d\\\\d)+$\",\"minLength\":3},"
        "\"any\":{\"type\":\"string\",\"pattern\":\"x\",\"minLength\":2,\"maxLength\":6},"
        "\"long\":{\"type\":\"string\",\"pattern\":\"^a*$\",\"maxLength\":100000}},"
        "\"required\":[\"id\",\"word\",\"num\",\"any\",\"long\"]}";
    g4_err err = {0};
    g4_schema *sc = compile(schema_text, &err);
    CHECK(sc != NULL, "the pattern and length schema compiles: %s", err.msg);
    if (!sc) return;
    static const char *const good[] = {
        "{\"id\":\"abc\",\"word\":\"xab\",\"num\":\"1234\",\"any\":\"xy\",\"long\":\"aaa\"}",
        "{\"id\":\"abcde\",\"word\":\"ab\",\"num\":\"123456\",\"any\":\"\\u00e9\\u0078\",\"long\":\"\"}",
        "{\"id\":\"xyz\",\"word\":\"\\u0061b\",\"num\":\"0000\",\"any\":\"\\ud83d\\ude00\xc3\xa9x\\\"\\n\",\"long\":\"a\"}",
    };
    const char *id = "{\"id\":\"abc\",", *to_num = "{\"id\":\"abc\",\"word\":\"ab\",";
    const char *to_any = "{\"id\":\"abc\",\"word\":\"ab\",\"num\":\"1234\",";
    static char at_any[4][128];
    static const struct {
        int base; /* 0: none, 1: id, 2: to_num, 3: to_any */
        const char *prefix, *refused;
    } bad_texts[] = {
        {0, "{\"id\":\"ab", "\""},          /* two characters: minLength 3 */
        {0, "{\"id\":\"abcde", "f"},        /* a sixth: maxLength 5 */
        {1, "\"word\":\"xx", "x"},           /* then one character left, and "ab" takes two */
        {1, "\"word\":\"xa", "x"},
        {2, "\"num\":\"12", "\""},           /* two digits: minLength 3 */
        {2, "\"num\":\"123", "\""},          /* an odd count of digits */
        {3, "\"any\":\"x", "\""},            /* minLength 2 */
        {3, "\"any\":\"aaaaa", "a"},         /* the sixth character must be the x */
        {3, "\"any\":\"aaaaa", "\xc3"},      /* not even the start of one that is not */
        {3, "\"any\":\"aaaaa\\u007", "9"},   /* an escape that is not an x */
        {3, "\"any\":\"aaaaa\\u", "d"},     /* nor the start of a surrogate pair */
    };
    check_taken(sc, schema_text, good, sizeof good / sizeof *good, "length");
    for (size_t i = 0; i < sizeof bad_texts / sizeof *bad_texts; i++) {
        const char *base = bad_texts[i].base == 1 ? id : bad_texts[i].base == 2 ? to_num : bad_texts[i].base == 3 ? to_any : "";
        char prefix[256];
        snprintf(prefix, sizeof prefix, "%s%s", base, bad_texts[i].prefix);
        check_refused_after(sc, prefix, bad_texts[i].refused, "length");
    }
    /* what may still come: a lead byte or an escape that can still become the x, in the last character's place */
    const char *allowed[] = {"\"any\":\"aaaaa\\u00", "\"any\":\"aaaa\xc3", "\"any\":\"aaaaa\\", "\"any\":\"aaaax"};
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) {
        snprintf(at_any[i], sizeof at_any[i], "%s%s", to_any, allowed[i]);
        int complete;
        CHECK(first_refused(sc, at_any[i], &complete) < 0, "'%s' taken", at_any[i]);
    }
    /* plain pieces go in unchecked only where every string matches, and as many characters as are left */
    static const struct {
        const char *prefix;
        int64_t room;
    } rooms[] = {{"\"any\":\"z", -1}, {"\"any\":\"zx", 4}, {"\"any\":\"zx\\u00e9", 3}};
    for (size_t i = 0; i < sizeof rooms / sizeof *rooms; i++) {
        char text[256];
        snprintf(text, sizeof text, "%s%s", to_any, rooms[i].prefix);
        g4_schema_state st = {0};
        const int fed = !g4_schema_feed(sc, &st, (const unsigned char *)text, strlen(text));
        const int64_t room = g4_schema_string_room(sc, &st);
        CHECK(fed && room == rooms[i].room, "string room after '%s': %lld", text, (long long)room);
    }
    /* at most G4_PATTERN_MAX_LENGTH characters, whatever maxLength says */
    g4_buf longest = {0};
    g4_buf_append(&longest, to_any, strlen(to_any));
    const char *rest = "\"any\":\"xx\",\"long\":\"";
    g4_buf_append(&longest, rest, strlen(rest));
    for (int i = 0; i < G4_PATTERN_MAX_LENGTH; i++) g4_buf_append(&longest, "a", 1);
    g4_schema_state st = {0};
    int fed = longest.data && !g4_schema_feed(sc, &st, (const unsigned char *)longest.data, longest.len);
    g4_schema_state more = st;
    CHECK(fed && g4_schema_feed(sc, &more, (const unsigned char *)"a", 1) && !g4_schema_feed(sc, &st, (const unsigned char *)"\"}", 2),
          "a string of %d characters ends there", G4_PATTERN_MAX_LENGTH);
    g4_buf_free(&longest);
    check_walks(sc, schema_text, 300);
    g4_schema_free(sc);
}

/* Patterns: what the regular expressions match (a table written from ECMA-262's rules), what is refused, and
 * strings inside JSON texts, escapes and surrogate pairs included, checked as they are written. */
static void check_patterns(void) {
    static const struct {
        const char *re, *text;
        int match;
    } table[] = {
        {"^\\d{4}-\\d{2}-\\d{2}$", "2024-01-31", 1}, {"^\\d{4}-\\d{2}-\\d{2}$", "2024-1-31", 0},
        {"^\\d{4}-\\d{2}-\\d{2}$", "x2024-01-31", 0}, {"^\\d{4}-\\d{2}-\\d{2}$", "2024-01-311", 0},
        {"abc", "xxabcxx", 1}, {"abc", "ab", 0}, {"abc", "abc", 1}, {"", "anything", 1},
        {"^[A-Z][a-z]+$", "Hello", 1}, {"^[A-Z][a-z]+$", "hello", 0}, {"^[A-Z][a-z]+$", "H", 0},
        {"^(cat|dog)s?$", "cats", 1}, {"^(cat|dog)s?$", "dog", 1}, {"^(cat|dog)s?$", "cow", 0},
        {"^[^0-9]*$", "abc", 1}, {"^[^0-9]*$", "a1", 0}, {"^[^0-9]*$", "", 1},
        {"^a{2,3}$", "a", 0}, {"^a{2,3}$", "aa", 1}, {"^a{2,3}$", "aaa", 1}, {"^a{2,3}$", "aaaa", 0},
        {"^a{2,}$", "a", 0}, {"^a{2,}$", "aaaaaaa", 1}, {"^a{0}b$", "b", 1}, {"^a{0}b$", "ab", 0},
        {"^\\w+@\\w+\\.com$", "me@x.com", 1}, {"^\\w+@\\w+\\.com$", "me@x-com", 0},
        {"^.$", "\xc3\xa9", 1}, {"^.$", "\n", 0}, {"^.$", "\xf0\x9f\x98\x80", 1}, {"^.$", "ab", 0},
        {"^\\s*$", " \t", 1}, {"^\\S+$", "a b", 0}, {"^[\\u00e0-\\u00ff]+$", "\xc3\xa0\xc3\xa9", 1},
        {"^[\\u00e0-\\u00ff]+$", "a", 0}, {"^\\$\\d+$", "$5", 1}, {"a$", "ba", 1}, {"a$", "ab", 0},
        {"^$", "", 1}, {"^$", "a", 0}, {"^(?:ab)*c?$", "ababc", 1}, {"^(?:ab)*c?$", "abac", 0},
        {"^[-a]+$", "-a-", 1}, {"^[a-]+$", "b", 0}, {"^(a|)b$", "b", 1}, {"^(a|)b$", "ab", 1},
        {"^(?<year>\\d+)!$", "12!", 1}, {"^[\\d.]+$", "1.5", 1}, {"^[\\d.]+$", "1,5", 0},
        {"^\\x41\\u0042\\/\\t$", "AB/\t", 1}, {"^[^]$", "\n", 1}, {"^a+?b??$", "aab", 1},
        {"^((a|b)c){2}$", "acbc", 1}, {"^((a|b)c){2}$", "acb", 0}, {"^\\D\\W$", "a!", 1}, {"^\\D\\W$", "1!", 0},
        {"}]", "x}]", 1}, {"^\\0$", "", 0},
    };
    int wrong = 0;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        g4_err err = {0};
        g4_pattern *p = g4_pattern_compile(table[i].re, strlen(table[i].re), &err);
        CHECK(p != NULL, "pattern '%s' compiles: %s", table[i].re, err.msg);
        if (p && g4_pattern_matches(p, table[i].text) != table[i].match && wrong++ < 5)
            fprintf(stderr, "  '%s' on '%s': wanted %d\n", table[i].re, table[i].text, table[i].match);
        g4_pattern_free(p);
    }
    CHECK(wrong == 0, "%d of %zu pattern matches wrong", wrong, sizeof table / sizeof *table);

    static const struct {
        const char *re, *message;
    } bad[] = {
        {"(a)\\1", "backreferences"}, {"(?=a)", "lookahead"}, {"(?<!a)b", "lookahead"}, {"\\bx", "word boundaries"},
        {"\\p{L}", "property escapes"}, {"a{64}", "more than 63"}, {"^a|b$", "outside a group"}, {"x[]", "no string matches"},
        {"(a", "not closed with )"}, {"a)", "without its ("}, {"a**", "nothing to repeat"}, {"\\q", "a letter without meaning"},
        {"a{2,1}", "below n"}, {"{", "does not follow something to repeat"}, {"a{x}", "not a quantifier"}, {"[b-a]", "backwards"}, {"[a", "not closed with ]"},
        {"a^b", "only at the start and the end"}, {"\\u{41}", "u flag"}, {"\\uD800", "surrogates"}, {"\\", "lone backslash"},
        {"\xff", "not valid UTF-8"}, {"[\\d-z]", NULL}, {"\\07", "octal"},
        {"((((((){63}){63}){63}){63}){9})", "nested too deeply"}, {"(((((((((((x?){9}){9}){9}){9}){9}){9}){9}){9}){9}){9}", "more than 63"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char schema[256];
        cJSON *re = cJSON_CreateString(bad[i].re);
        char *quoted = re ? cJSON_PrintUnformatted(re) : NULL;
        snprintf(schema, sizeof schema, "{\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":%s}}}", quoted ? quoted : "\"\"");
        free(quoted);
        cJSON_Delete(re);
        g4_err err = {0};
        g4_schema *sc = compile(schema, &err);
        if (!bad[i].message) { /* [\d-z]: '-' after a class escape is a literal '-' */
            CHECK(sc != NULL, "pattern '%s' compiles: %s", bad[i].re, err.msg);
        } else {
            CHECK(!sc && strstr(err.msg, "json_schema: properties.a: pattern: ") && strstr(err.msg, bad[i].message),
                  "pattern '%s' refused: %s", bad[i].re, err.msg);
        }
        g4_schema_free(sc);
    }
    g4_err err = {0};
    check_pattern_lengths();
    g4_schema *sc = compile("{\"properties\":{\"a\":{\"enum\":[\"ab\",\"b\"],\"pattern\":\"^a\"}}}", &err);
    int complete;
    CHECK(sc && first_refused(sc, "{\"a\":\"b\"}", &complete) == 6 && first_refused(sc, "{\"a\":\"ab\"}", &complete) < 0,
          "enum values the pattern refuses are dropped");
    g4_schema_free(sc);

    const char *schema_text =
        "{\"type\":\"object\",\"properties\":{\"day\":{\"type\":\"string\",\"pattern\":\"^\\\\d{4}-\\\\d{2}-\\\\d{2}$\"},"
        "\"e\":{\"type\":\"string\",\"pattern\":\"^\\u00e9+\\\"?$\"},\"one\":{\"type\":[\"string\",\"null\"],\"pattern\":\"^.$\"},"
        "\"code\":{\"type\":\"string\",\"pattern\":\"[A-Z]{2}\\\\d\"},\"tag\":{\"type\":\"string\",\"pattern\":\"^(#[a-z]+ ?)+$\"}},"
        "\"required\":[\"day\",\"e\",\"one\",\"code\",\"tag\"]}";
    sc = compile(schema_text, &err);
    CHECK(sc != NULL, "the pattern schema compiles: %s", err.msg);
    if (!sc) return;
    static const char *const good[] = {
        "{\"day\":\"2024-12-07\",\"e\":\"\\u00e9\xc3\xa9\\\"\",\"one\":\"\\ud83d\\ude00\",\"code\":\"xxAB1yy\",\"tag\":\"#a #bc\"}",
        "{\"day\":\"0000-00-00\",\"e\":\"\xc3\xa9\",\"one\":null,\"code\":\"ZZ9\",\"tag\":\"#x\"}",
        "{\"day\":\"1999-01-01\",\"e\":\"\\u00E9\",\"one\":\"\\t\",\"code\":\"AA0\",\"tag\":\"#q \"}",
    };
    static const struct {
        const char *prefix, *refused;
    } bad_texts[] = {
        {"{\"day\":\"2024-1", "x"}, {"{\"day\":\"202", "x"}, {"{\"day\":\"2024-12-07", "0"}, {"{\"day\":\"2024-12-0", "\""},
        {"{\"day\":\"2024-12-07\",\"e\":\"", "e"}, {"{\"day\":\"2024-12-07\",\"e\":\"\\u00e", "8"},
        {"{\"day\":\"2024-12-07\",\"e\":\"", "\""}, {"{\"day\":\"2024-12-07\",\"e\":\"\\u00e9\\\"", "x"},
        {"{\"day\":\"2024-12-07\",\"e\":\"\xc3\xa9\",\"one\":\"a", "b"},
        {"{\"day\":\"2024-12-07\",\"e\":\"\xc3\xa9\",\"one\":\"\\ud83d\\ude00", "x"},
        {"{\"day\":\"2024-12-07\",\"e\":\"\xc3\xa9\",\"one\":\"\\t\",\"code\":\"aB1", "\""},
        {"{\"day\":\"2024-12-07\",\"e\":\"\xc3\xa9\",\"one\":\"\\t\",\"code\":\"AB1\",\"tag\":\"#", " "},
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        const long at = first_refused(sc, good[i], &complete);
        CHECK(at < 0 && complete && valid_text(schema_text, good[i], strlen(good[i])), "pattern text %zu taken whole (refused at %ld)", i, at);
    }
    for (size_t i = 0; i < sizeof bad_texts / sizeof *bad_texts; i++) {
        char text[512];
        snprintf(text, sizeof text, "%s%s", bad_texts[i].prefix, bad_texts[i].refused);
        CHECK(first_refused(sc, text, &complete) == (long)strlen(bad_texts[i].prefix), "pattern text '%s' refused at its last part", text);
    }
    /* inside an unanchored pattern, before or after its match, any characters go: the mask lets plain pieces in
     * unchecked there, and only there */
    static const struct {
        const char *prefix;
        int free;
    } rooms[] = {{"{\"day\":\"20", 0}, {"{\"day\":\"2024-12-07\",\"e\":\"", 0},
                 {"{\"day\":\"2024-12-07\",\"e\":\"\xc3\xa9\",\"one\":null,\"code\":\"", 1},
                 {"{\"day\":\"2024-12-07\",\"e\":\"\xc3\xa9\",\"one\":null,\"code\":\"xy", 1},
                 {"{\"day\":\"2024-12-07\",\"e\":\"\xc3\xa9\",\"one\":null,\"code\":\"xyAB1zz", 1}};
    for (size_t i = 0; i < sizeof rooms / sizeof *rooms; i++) {
        g4_schema_state st = {0};
        const int fed = !g4_schema_feed(sc, &st, (const unsigned char *)rooms[i].prefix, strlen(rooms[i].prefix));
        const int64_t room = g4_schema_string_room(sc, &st);
        CHECK(fed && (rooms[i].free ? room == INT64_MAX : room == -1), "string room after '%s': %lld", rooms[i].prefix, (long long)room);
    }
    check_walks(sc, schema_text, 300);
    g4_schema_free(sc);
}

/* anyOf / oneOf whose alternatives share a type (pydantic's unions of models): each is followed on its own path
 * until the text tells them apart; a text is taken while some alternative takes it. */
static const char *const union_schema =
    "{\"$defs\":{\"cat\":{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"cat\"},\"lives\":{\"type\":"
    "\"integer\",\"minimum\":1,\"maximum\":9}},\"required\":[\"kind\",\"lives\"]},"
    "\"dog\":{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"dog\"},\"name\":{\"type\":\"string\","
    "\"maxLength\":3}},\"required\":[\"kind\"]},"
    "\"note\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":6},\"lives\":"
    "{\"type\":\"number\",\"maximum\":0}},\"required\":[\"name\"]}},"
    "\"type\":\"object\",\"properties\":{"
    "\"pet\":{\"oneOf\":[{\"$ref\":\"#/$defs/cat\"},{\"$ref\":\"#/$defs/dog\"},{\"type\":\"null\"}]},"
    "\"any\":{\"anyOf\":[{\"$ref\":\"#/$defs/cat\"},{\"$ref\":\"#/$defs/dog\"},{\"$ref\":\"#/$defs/note\"},"
    "{\"type\":\"integer\",\"minimum\":10},{\"type\":\"number\",\"maximum\":0}]},"
    "\"list\":{\"type\":\"array\",\"maxItems\":40,\"items\":{\"anyOf\":[{\"type\":\"object\",\"properties\":"
    "{\"a\":{\"type\":\"string\"}},\"required\":[\"a\"]},{\"type\":\"object\",\"properties\":{\"a\":{\"type\":"
    "\"string\"},\"b\":{\"type\":\"integer\"}},\"required\":[\"a\"]}]}}},"
    "\"required\":[\"pet\",\"any\"]}";

static void check_unions(void) {
    static const char *const good[] = {
        "{\"pet\":{\"kind\":\"cat\",\"lives\":9},\"any\":{\"kind\":\"dog\",\"name\":\"Rex\"}}",
        "{\"pet\":{\"kind\":\"dog\"},\"any\":{\"name\":\"Felix\",\"lives\":-1.5}}", /* only the note has a 5-letter name */
        "{\"pet\":null,\"any\":{\"name\":\"Rex\"}}",                    /* a note, or a dog's name without its kind? a note */
        "{\"pet\":null,\"any\":12}",
        "{\"pet\":null,\"any\":-0.5}",
        "{\"pet\":null,\"any\":{\"kind\":\"cat\",\"lives\":1},\"list\":[{\"a\":\"x\"},{\"a\":\"y\",\"b\":2},{\"a\":\"\"}]}",
    };
    static const refused_at bad[] = {
        {"{\"pet\":{\"kind\":\"", "b"},                        /* neither cat nor dog */
        {"{\"pet\":{\"kind\":\"cat\",\"", "n"},              /* a cat has no name */
        {"{\"pet\":{\"kind\":\"cat\"", "}"},                  /* nor goes without lives */
        {"{\"pet\":{\"kind\":\"dog\",\"name\":\"Rex", "x"},    /* a dog's name is at most 3 letters long */
        {"{\"pet\":null,\"any\":{\"name\":\"Felixe", "s"},     /* a note's name is at most 6 */
        {"{\"pet\":null,\"any\":{\"name\":\"Felix\",\"lives\":", "3"}, /* a note's lives are at most 0 */
        {"{\"pet\":null,\"any\":{\"kind\":\"dog\",\"", "l"},   /* a dog has no lives, a cat's kind is cat */
        {"{\"pet\":null,\"any\":5", "}"},                       /* at least 10 as an integer, at most 0 as a number */
        {"{\"pet\":null,\"any\":1", "."},                       /* 1. leads to neither */
        {"{\"pet\":null,\"any\":10,\"list\":[{\"a\":\"x\",\"b\":1", "."},
    };
    g4_schema *sc = check_schema("union", union_schema, good, sizeof good / sizeof *good, bad, sizeof bad / sizeof *bad, 300);
    if (!sc) return;
    /* Alternatives that took the same item leave one path behind when it closes: 40 items both take, then one that
     * only the second takes (without that, paths would double with each item, past what a state holds). */
    char text[2048];
    int n = snprintf(text, sizeof text, "{\"pet\":null,\"any\":10,\"list\":[");
    for (int i = 0; i < 39; i++) n += snprintf(text + n, sizeof text - (size_t)n, "{\"a\":\"%d\"},", i);
    snprintf(text + n, sizeof text - (size_t)n, "{\"a\":\"z\",\"b\":7}]}");
    int complete;
    const long at = first_refused(sc, text, &complete);
    CHECK(at < 0 && complete && valid_text(union_schema, text, strlen(text)), "40 items of a union: refused at %ld", at);
    g4_schema_state st = {0};
    g4_schema_feed(sc, &st, (const unsigned char *)text, (size_t)n + 8); /* inside the last item's first string */
    CHECK(st.forks == 1, "inside an item of two alternatives: %d paths", st.forks + 1);
    g4_schema_free(sc);
    /* More alternatives of one type than a state holds paths for: the later ones are left out, never wrongly taken. */
    char wide[4096];
    n = snprintf(wide, sizeof wide, "{\"properties\":{\"v\":{\"anyOf\":[");
    for (int i = 0; i < 16; i++)
        n += snprintf(wide + n, sizeof wide - (size_t)n, "%s{\"anyOf\":[{\"properties\":{\"k%d\":{\"const\":%d}},"
                      "\"required\":[\"k%d\"]},{\"properties\":{\"j%d\":{\"const\":%d}},\"required\":[\"j%d\"]}]}",
                      i ? "," : "", i, i, i, i, i, i);
    snprintf(wide + n, sizeof wide - (size_t)n, "]}},\"required\":[\"v\"]}");
    static const char *const first[] = {"{\"v\":{\"k0\":0}}", "{\"v\":{\"j7\":7}}"}; /* the first 16 alternatives */
    static const refused_at later[] = {{"{\"v\":{\"k", "8"}};                      /* the 17th alternative on */
    g4_schema_free(check_schema("32 object alternatives", wide, first, 2, later, 1, 100));
}

/* Bounded numbers within JSON mode's 48 characters for a number: a prefix is taken only when the rest still fits
 * (a run of zeros after "0." stops where one more digit is needed), and ends far from 1 are kept exactly (a maximum
 * of 1e-300 is not 1e-44); ranges no number of 48 characters reaches are among check_refusals'. */
static void check_number_lengths(void) {
    const char *schema_text =
        "{\"properties\":{\"p\":{\"type\":\"number\",\"exclusiveMinimum\":0},\"tiny\":{\"type\":\"number\","
        "\"minimum\":1e-30,\"maximum\":1e-29},\"big\":{\"type\":\"integer\",\"minimum\":1e40},"
        "\"small\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1e-300}},\"required\":[\"p\",\"tiny\",\"big\",\"small\"]}";
    static const char *const good[] = {
        "{\"p\":0.5,\"tiny\":0.000000000000000000000000000001,\"big\":10000000000000000000000000000000000000000,\"small\":0}",
        "{\"p\":0.0000000000000000000000000000000000000000000001," /* 48 characters */
        "\"tiny\":0.0000000000000000000000000000099,"
        "\"big\":123456789012345678901234567890123456789012345678,\"small\":0.0}",
    };
    char zeros[128], small[160];
    snprintf(zeros, sizeof zeros, "{\"p\":0.%.45d", 0); /* "0." and 45 zeros: 47 characters */
    snprintf(small, sizeof small, "{\"p\":1,\"tiny\":0.00000000000000000000000000001,\"big\":10000000000000000000000000000000000000000,"
             "\"small\":0.%.44d", 0);
    const refused_at bad[] = {
        {zeros, "0"}, /* a 46th zero leaves no room for the digit p needs */
        {small, "1"}, /* 1e-45 is above a maximum of 1e-300 */
    };
    g4_schema_free(check_schema("long number", schema_text, good, sizeof good / sizeof *good, bad, sizeof bad / sizeof *bad, 300));
}

/* uniqueItems over enum values: each value once (1 and 1.0 are one value), the array ends when none is left. */
static void check_unique_items(void) {
    const char *schema_text =
        "{\"$defs\":{\"yn\":{\"enum\":[true,false]}},\"properties\":{\"tags\":{\"type\":\"array\",\"uniqueItems\":true,"
        "\"minItems\":1,\"items\":{\"enum\":[\"red\",\"green\",\"blue\",1,1.0,null,\"r\"]}},"
        "\"two\":{\"type\":\"array\",\"uniqueItems\":true,\"minItems\":2,\"items\":{\"$ref\":\"#/$defs/yn\"}},"
        "\"free\":{\"type\":\"array\",\"uniqueItems\":false,\"items\":{\"enum\":[1]}}},\"required\":[\"tags\",\"two\"]}";
    static const char *const good[] = {
        "{\"tags\":[\"red\",\"blue\",1,null,\"r\",\"green\"],\"two\":[false,true]}",
        "{\"tags\":[\"r\",\"red\"],\"two\":[true,false],\"free\":[1,1,1]}",
    };
    static const refused_at bad[] = {
        {"{\"tags\":[\"red\",\"r", "e"},     /* red again (r is another value: the quote would be taken) */
        {"{\"tags\":[\"r\",\"red\",\"", "r"},  /* both used */
        {"{\"tags\":[1,", "1"},                  /* 1 again (1.0 was the same value) */
        {"{\"tags\":[\"red\",\"green\",\"blue\",1,null,\"r\"", ","}, /* no value left */
        {"{\"tags\":[\"red\"],\"two\":[true,", "t"},
        {"{\"tags\":[\"red\"],\"two\":[true", "]"}, /* minItems 2 */
        {"{\"tags\":[", "]"},                    /* minItems 1 */
    };
    g4_schema_free(check_schema("unique", schema_text, good, sizeof good / sizeof *good, bad, sizeof bad / sizeof *bad, 300));
}

/* ---- generation on the tiny model ---- */

typedef struct text {
    char bytes[8192];
    size_t len;
} text;

static int keep(void *user, const gemma4c_token *t) {
    text *x = user;
    if (x->len + t->text_len < sizeof x->bytes) memcpy(x->bytes + x->len, t->text, t->text_len), x->len += t->text_len;
    return 0;
}

static void check_generation(gemma4c_model *m) {
    static const char *const small_schema =
        "{\"type\":\"object\",\"properties\":{\"a\":{\"enum\":[\"x\",\"yy\"]},\"b\":{\"type\":\"integer\"},"
        "\"c\":{\"type\":\"boolean\"},\"d\":{\"type\":\"array\",\"items\":{\"enum\":[1,2]},\"maxItems\":2},"
        "\"e\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":3}},\"required\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}";
    char err[512];
    gemma4c_session_params sp = {2048};
    gemma4c_session *s = NULL;
    CHECK(gemma4c_session_new(m, &sp, &s, err, sizeof err) == 0, "%s", err);
    if (!s) return;
    int32_t prompt[] = {2, 105, 300, 107};
    gemma4c_input in = {.ids = prompt, .n_ids = 4};
    gemma4c_result r;
    int whole = 0;
    for (uint64_t seed = 0; seed <= 8; seed++) { /* seed 0: greedy */
        gemma4c_generate_options o = {.max_tokens = 1500, .json = 1, .json_schema = small_schema};
        if (seed) o.sampling = (gemma4c_sampling){.temperature = 1.0f, .top_k = 64, .top_p = 0.95f, .seed = seed};
        text t = {0};
        CHECK(gemma4c_generate(s, &in, &o, keep, &t, &r, err, sizeof err) == 0, "%s", err);
        const int ok = r.stop_reason == GEMMA4C_STOP_JSON && valid_text(small_schema, t.bytes, t.len);
        CHECK(ok, "seed %llu: stop %d, '%.*s'", (unsigned long long)seed, r.stop_reason, (int)t.len, t.bytes);
        whole += ok;
    }
    CHECK(whole == 9, "every answer a valid instance: %d of 9", whole);
    /* refusals through the API */
    gemma4c_generate_options no_json = {.max_tokens = 4, .json_schema = small_schema};
    CHECK(gemma4c_generate(s, &in, &no_json, keep, &(text){0}, &r, err, sizeof err) == GEMMA4C_ERR_ARG &&
              strstr(err, "json_schema needs json"),
          "a schema without JSON mode: %s", err);
    gemma4c_generate_options unenforced = {.max_tokens = 4, .json = 1,
                                           .json_schema = "{\"properties\":{\"a\":{\"type\":\"array\",\"contains\":{}}}}"};
    CHECK(gemma4c_generate(s, &in, &unenforced, keep, &(text){0}, &r, err, sizeof err) == GEMMA4C_ERR_ARG &&
              strstr(err, "json_schema: properties.a: this server does not enforce the keyword contains"),
          "an unenforced keyword: %s", err);
    gemma4c_session_free(s);
}

/* What greedy walks on random logits met, over Gemma 4's whole vocabulary: at every step the mask must let through
 * exactly the tokens that fit, each tried whole from the state before the step. Every 8th step the pieces with a
 * quote get the best logits, so that strings close and the walk goes on to the next value; outside strings,
 * blank pieces get the worst. */
typedef struct walk_stats {
    int steps, wrong;
    int in_pattern, remembered; /* steps inside a string with a pattern; at a place seen twice before */
    int properties;             /* pieces that began a value */
    int forked;                 /* steps that began with more than one reading of the text */
} walk_stats;

static walk_stats mask_walks(const g4_tokenizer *tok, const g4_token_pieces *p, const g4_schema *sc, int walks,
                             int steps_each) {
    walk_stats w = {0};
    const int vocab = p->vocab;
    float *logits = malloc((size_t)vocab * sizeof *logits);
    uint8_t *quoted = calloc((size_t)vocab, 1), *blank = calloc((size_t)vocab, 1);
    for (int id = 0; logits && quoted && blank && id < vocab; id++) {
        const unsigned char *b = p->bytes + p->at[id];
        const size_t n = p->at[id + 1] - p->at[id];
        quoted[id] = p->kind[id] != G4_PIECE_NONE && memchr(b, '"', n);
        blank[id] = n > 0 && strspn((const char *)b, " \t\r\n") >= n;
    }
    uint64_t rng = 7;
    g4_err err = {0};
    for (int walk = 0; logits && quoted && blank && walk < walks; walk++) {
        g4_gen_params gp = {.sampling = {.greedy = 1, .top_p = 1.0f, .repetition_penalty = 1.0f}, .json = 1, .pieces = p, .schema = sc};
        g4_gen g;
        const int32_t prompt[] = {2};
        if (g4_gen_init(&g, &gp, tok, vocab, prompt, 1, &err)) {
            CHECK(0, "%s", err.msg);
            break;
        }
        struct place {
            int pattern;
            uint64_t at;
            int visits;
        } seen[64];
        int n_seen = 0;
        for (int step = 0; step < steps_each && !g.stop_reason; step++, w.steps++) {
            const int closing = step % 8 == 7, outside = !g4_json_in_string(&g.json.syntax);
            for (int id = 0; id < vocab; id++) {
                rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
                logits[id] = (float)(rng >> 40) / (float)(1 << 24) + (closing && quoted[id] ? 100.0f : 0.0f) -
                             (outside && blank[id] ? 50.0f : 0.0f); /* on to the next value */
            }
            int pattern;
            uint64_t at;
            if (g4_schema_pattern_at(sc, &g.json, &pattern, &at) && n_seen < 64) { /* a place seen twice before is read back */
                int k = 0;
                while (k < n_seen && (seen[k].pattern != pattern || seen[k].at != at)) k++;
                if (k == n_seen) seen[n_seen++] = (struct place){pattern, at, 0};
                w.remembered += seen[k].visits++ >= 2;
                w.in_pattern++;
            }
            w.forked += g.json.forks > 0;
            g4_schema_state before;
            g4_schema_copy(&before, &g.json);
            g4_gen_token t = {0};
            if (g4_gen_next(&g, logits, &t, &err)) {
                CHECK(0, "walk %d step %d: %s", walk, step, err.msg);
                g4_gen_token_free(&t);
                break;
            }
            for (int id = 0; id < vocab; id++) {
                g4_schema_state trial;
                g4_schema_copy(&trial, &before);
                const int fits = p->kind[id] != G4_PIECE_NONE &&
                                 !g4_schema_feed(sc, &trial, p->bytes + p->at[id], p->at[id + 1] - p->at[id]);
                if (fits != (logits[id] != -INFINITY) && w.wrong++ < 3)
                    fprintf(stderr, "  walk %d step %d: token %d '%.*s' fits %d, masked %d\n", walk, step, id,
                            (int)(p->at[id + 1] - p->at[id]), p->bytes + p->at[id], fits, logits[id] == -INFINITY);
            }
            w.properties += t.piece.len && memchr(t.piece.data, ':', t.piece.len) != NULL;
            g4_gen_token_free(&t);
        }
        g4_gen_free(&g);
    }
    free(logits);
    free(quoted);
    free(blank);
    return w;
}

/* Strings with patterns: the mask remembers, by where a pattern stands, the plain pieces that may come. Two of the
 * patterns stand at the same place when their strings begin, so a mask remembered for the wrong pattern would
 * show; another moves between places, more than are remembered; two have lengths (nothing remembered; plain
 * pieces let in by their characters once the unanchored one has matched). */
static void check_pattern_masks(const g4_tokenizer *tok, const g4_token_pieces *p) {
    static const char *const schema =
        "{\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"^[a-z ]+$\"},"
        "\"d\":{\"type\":\"string\",\"pattern\":\"x\",\"minLength\":2,\"maxLength\":12},"
        "\"b\":{\"type\":\"string\",\"pattern\":\"^[A-Z0-9 ]+$\"},"
        "\"e\":{\"type\":\"string\",\"pattern\":\"^[a-z ]+$\",\"maxLength\":9},"
        "\"c\":{\"type\":\"string\",\"pattern\":\"^(a|bb|ccc|dddd|e{5}|f{6}|g{7}|h{8}|i{9})+$\"}},"
        "\"required\":[\"a\",\"d\",\"b\",\"e\",\"c\"]}";
    g4_err err = {0};
    g4_schema *sc = compile(schema, &err);
    CHECK(sc != NULL, "the pattern schema compiles: %s", err.msg);
    if (!sc) return;
    const walk_stats w = mask_walks(tok, p, sc, 3, 40);
    CHECK(w.wrong == 0, "%d masks differ from trying every token whole (%d steps)", w.wrong, w.steps);
    CHECK(w.in_pattern >= 30 && w.remembered >= 5 && w.properties >= 8,
          "the walks stayed in patterns for %d of %d steps (%d at places seen twice before) and began %d values",
          w.in_pattern, w.steps, w.remembered, w.properties);
    g4_schema_free(sc);
}

/* Alternatives of one type read side by side: inside a string both may still take, the mask lets in the plain
 * pieces that fit the longer of their lengths (a piece fits when some reading takes it). */
static void check_union_masks(const g4_tokenizer *tok, const g4_token_pieces *p) {
    static const char *const schema =
        "{\"properties\":{\"v\":{\"anyOf\":[{\"properties\":{\"s\":{\"type\":\"string\",\"maxLength\":4},"
        "\"t\":{\"const\":1}},\"required\":[\"s\",\"t\"]},{\"properties\":{\"s\":{\"type\":\"string\","
        "\"maxLength\":12},\"u\":{\"type\":\"boolean\"}},\"required\":[\"s\",\"u\"]}]},"
        "\"w\":{\"type\":\"array\",\"maxItems\":3,\"items\":{\"anyOf\":[{\"type\":\"integer\",\"minimum\":10},"
        "{\"type\":\"number\",\"maximum\":0}]}}},\"required\":[\"v\",\"w\"]}";
    g4_err err = {0};
    g4_schema *sc = compile(schema, &err);
    CHECK(sc != NULL, "the union schema compiles: %s", err.msg);
    if (!sc) return;
    const walk_stats w = mask_walks(tok, p, sc, 4, 30);
    CHECK(w.wrong == 0, "%d masks differ from trying every token whole (%d steps)", w.wrong, w.steps);
    CHECK(w.forked >= 8, "the walks read two alternatives at once for %d of %d steps", w.forked, w.steps);
    g4_schema_free(sc);
}

/* Over Gemma 4's whole vocabulary: a piece the mask lets into any string between characters stays inside it (a
 * key too: pieces such as '","' close one string and open the next), and adds the characters a length counts. */
static void check_pieces(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizers/gemma4-reconstructed-tokenizer.json.gz", g4t_golden_dir());
    g4_tokenizer *tok = NULL;
    g4_err err = {0};
    CHECK(g4_tokenizer_load(path, &tok, &err) == 0, "load %s: %s", path, err.msg);
    if (!tok) return;
    g4_token_pieces p;
    const int vocab = g4_tokenizer_vocab_size(tok);
    CHECK(g4_token_pieces_build(&p, tok, vocab, &err) == 0, "pieces: %s", err.msg);
    if (!p.at) {
        g4_tokenizer_free(tok);
        return;
    }
    check_pattern_masks(tok, &p);
    check_union_masks(tok, &p);
    int plain = 0, quoted = 0, bad_key = 0, bad_len = 0;
    g4_schema *by_max_len[255] = {NULL}; /* the schema of each maxLength tried, made once */
    for (int id = 0; id < vocab; id++) {
        const unsigned char *b = p.bytes + p.at[id];
        const size_t n = p.at[id + 1] - p.at[id];
        if (p.kind[id] != G4_PIECE_PLAIN) {
            quoted += n == 3 && !memcmp(b, "\",\"", 3);
            continue;
        }
        plain++;
        g4_schema_state st = {0};
        const unsigned char *key_open = (const unsigned char *)"{\"", *key_close = (const unsigned char *)"\":1}";
        int ok = !g4_schema_feed(NULL, &st, key_open, 2) && !g4_schema_feed(NULL, &st, b, n) &&
                 !g4_schema_feed(NULL, &st, key_close, 4) && g4_json_complete(&st.syntax);
        if (!ok && bad_key++ < 3) fprintf(stderr, "  piece %d '%.*s' does not stay inside a key\n", id, (int)n, b);
        if (p.chars[id] >= 255) continue;
        for (int extra = -1; extra <= 0; extra++) { /* maxLength = its characters fits it; one less does not */
            const int max_len = p.chars[id] + extra;
            if (max_len < 0) continue;
            if (!by_max_len[max_len]) {
                char schema[128];
                snprintf(schema, sizeof schema, "{\"properties\":{\"a\":{\"type\":\"string\",\"maxLength\":%d}}}", max_len);
                by_max_len[max_len] = compile(schema, &err);
            }
            const g4_schema *sc = by_max_len[max_len];
            if (!sc) { bad_len++; continue; }
            memset(&st, 0, sizeof st);
            const int fits = !g4_schema_feed(sc, &st, (const unsigned char *)"{\"a\":\"", 6) && !g4_schema_feed(sc, &st, b, n) &&
                             !g4_schema_feed(sc, &st, (const unsigned char *)"\"}", 2);
            if (fits != (extra == 0) && bad_len++ < 3)
                fprintf(stderr, "  piece %d '%.*s': %d characters, maxLength %d %s\n", id, (int)n, b, p.chars[id],
                        p.chars[id] + extra, fits ? "fits" : "does not fit");
        }
    }
    CHECK(plain > vocab / 2 && quoted >= 1, "%d of %d pieces plain; '\",\"' is a piece and not plain", plain, vocab);
    CHECK(bad_key == 0, "%d plain pieces leave a key", bad_key);
    CHECK(bad_len == 0, "%d plain pieces counted wrong", bad_len);
    for (int i = 0; i < 255; i++) g4_schema_free(by_max_len[i]);
    g4_token_pieces_free(&p);
    g4_tokenizer_free(tok);
}

int main(void) {
    check_refusals();
    check_depth_limit();
    check_numbers();
    check_multiples();
    check_unions();
    check_unique_items();
    check_number_lengths();
    check_patterns();
    check_pieces();
    g4_err err;
    g4_schema *sc = compile(person_schema, &err);
    CHECK(sc != NULL, "the person schema compiles: %s", err.msg);
    if (sc) {
        check_texts(sc);
        check_walks(sc, person_schema, 200);
    }
    g4_schema_free(sc);
    gemma4c_model *m = g4t_load_tiny();
    if (m) check_generation(m);
    gemma4c_model_free(m);
    return g4t_finish("test_json_schema");
}
