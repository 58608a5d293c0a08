/* test_json.c — the typed JSON field readers (core/json): defaults, bounds, hostile values and their messages. */
#include "test.h"

#include <float.h>
#include <stdint.h>

#include "core/json.h"

static cJSON *doc;

static g4_json_obj obj(void) { return (g4_json_obj){doc, "config", "text_config."}; }

/* The message of a failed read must be one line that names the document, the path, the key and what is wrong. */
static void check_message(const g4_err *err, const char *key, const char *what) {
    char want[512];
    snprintf(want, sizeof want, "config: text_config.%s %s", key, what);
    CHECK(err->code == GEMMA4C_ERR_FORMAT && strcmp(err->msg, want) == 0, "message \"%s\", want \"%s\"", err->msg,
          want);
}

static void test_parse(void) {
    const char text[] = "{\"a\": 1}";
    cJSON *j = g4_json_parse(text, strlen(text), 100);
    CHECK(cJSON_IsObject(j), "a plain object");
    cJSON_Delete(j);
    /* Not NUL-terminated: only `len` bytes are read (the rest of the buffer is garbage). */
    char buf[16];
    memcpy(buf, "[1, 2]xxxxxxxxxx", 16);
    j = g4_json_parse(buf, 6, 100);
    CHECK(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 2, "a document without its NUL");
    cJSON_Delete(j);
    CHECK(g4_json_parse(buf, 7, 100) == NULL, "trailing garbage refused");
    CHECK(g4_json_parse("{\"a\": 1}\0{}", 11, 100) == NULL, "an embedded NUL refused");
    CHECK(g4_json_parse(text, strlen(text), 5) == NULL, "longer than the limit refused");
    CHECK(g4_json_parse(NULL, 0, 100) == NULL, "NULL text refused");
    CHECK(g4_json_parse("", 0, 100) == NULL, "empty text refused");
    CHECK(g4_json_parse("{\"a\": NaN}", 10, 100) == NULL, "NaN is not JSON");
    CHECK(g4_json_parse("{\"a\": 1,}", 9, 100) == NULL, "a trailing comma is not JSON");
    /* Deep nesting is refused by cJSON's limit, not by overflowing the stack. */
    size_t depth = 100000;
    char *deep = malloc(depth * 2);
    for (size_t i = 0; i < depth; i++) deep[i] = '[', deep[depth * 2 - 1 - i] = ']';
    CHECK(g4_json_parse(deep, depth * 2, depth * 2) == NULL, "100000 nested lists refused");
    free(deep);
}

static void test_field(void) {
    g4_json_obj o = obj();
    CHECK(g4_json_field(&o, "int") != NULL, "present");
    CHECK(g4_json_field(&o, "null") == NULL, "null reads as absent");
    CHECK(g4_json_field(&o, "nope") == NULL, "absent");
    CHECK(g4_json_field(&o, "INT") == NULL, "keys are case-sensitive");
    char path[64];
    g4_json_obj sub = g4_json_sub(&o, cJSON_GetObjectItem(doc, "sub"), "rope_parameters", path, sizeof path);
    CHECK(strcmp(sub.path, "text_config.rope_parameters.") == 0 && strcmp(sub.file, "config") == 0, "sub path %s",
          sub.path);
    int v = 0;
    g4_err err = {0};
    CHECK(g4_json_int(&sub, "theta", 0, 0, 100, &v, &err) == 0 && v == 7, "a field of the sub-object");
    CHECK(g4_json_int(&sub, "bad", 0, 0, 100, &v, &err) == GEMMA4C_ERR_FORMAT &&
              strcmp(err.msg, "config: text_config.rope_parameters.bad must be an integer in [0, 100]") == 0,
          "sub-object message: %s", err.msg);
    /* A path too long for the caller's buffer is cut, never overrun. */
    char small[8];
    sub = g4_json_sub(&o, NULL, "rope_parameters", small, sizeof small);
    CHECK(strlen(sub.path) == sizeof small - 1, "cut path %s", sub.path);
    /* A field of something that is not an object is absent. */
    g4_json_obj list = {cJSON_GetObjectItem(doc, "list"), "config", ""};
    CHECK(g4_json_field(&list, "int") == NULL, "a list has no fields");
    g4_json_obj none = {NULL, "config", ""};
    CHECK(g4_json_field(&none, "int") == NULL, "no object, no fields");
}

static void test_int(void) {
    g4_json_obj o = obj();
    g4_err err = {0};
    int v = -5;
    CHECK(g4_json_int(&o, "int", 0, 0, 100, &v, &err) == 0 && v == 42, "42");
    CHECK(g4_json_int(&o, "nope", 9, 0, 100, &v, &err) == 0 && v == 9, "absent: default");
    CHECK(g4_json_int(&o, "null", 8, 0, 100, &v, &err) == 0 && v == 8, "null: default");
    CHECK(g4_json_int(&o, "int", 0, 42, 42, &v, &err) == 0 && v == 42, "bounds are inclusive");
    CHECK(g4_json_int(&o, "negzero", 1, 0, 10, &v, &err) == 0 && v == 0, "-0 is 0");
    CHECK(g4_json_int(&o, "whole_float", 0, 0, 10, &v, &err) == 0 && v == 3, "3.0 is an integer");
    CHECK(g4_json_int(&o, "int_max", 0, 0, INT32_MAX, &v, &err) == 0 && v == INT32_MAX, "2^31 - 1");
    CHECK(g4_json_int(&o, "int_min", 0, INT32_MIN, 0, &v, &err) == 0 && v == INT32_MIN, "-2^31");
    /* Everything else is refused with the key's message, and leaves the output alone. */
    static const char *const bad[] = {"fraction", "string_num", "true", "false", "list", "object", "huge", "neg_huge",
                                      "inf", "neg_inf", "nan", "two_pow_31", "tiny"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = -5;
        g4_err_clear(&err);
        int rc = g4_json_int(&o, bad[i], 0, INT32_MIN, INT32_MAX - 1, &v, &err);
        CHECK(rc == GEMMA4C_ERR_FORMAT && v == -5, "%s accepted as an integer (%d)", bad[i], v);
        check_message(&err, bad[i], "must be an integer in [-2147483648, 2147483646]");
    }
    CHECK(g4_json_int(&o, "int", 0, 43, 100, &v, &err) == GEMMA4C_ERR_FORMAT, "below the range");
    check_message(&err, "int", "must be an integer in [43, 100]");
    CHECK(g4_json_int(&o, "int", 0, 0, 41, &v, &err) == GEMMA4C_ERR_FORMAT, "above the range");
    /* Required: absent and null are errors, present values as above. */
    CHECK(g4_json_int_required(&o, "nope", 0, 100, &v, &err) == GEMMA4C_ERR_FORMAT, "required and absent");
    check_message(&err, "nope", "is missing");
    CHECK(g4_json_int_required(&o, "null", 0, 100, &v, &err) == GEMMA4C_ERR_FORMAT, "required and null");
    check_message(&err, "null", "is missing");
    CHECK(g4_json_int_required(&o, "int", 0, 100, &v, &err) == 0 && v == 42, "required and present");
    CHECK(g4_json_int_required(&o, "string_num", 0, 100, &v, &err) == GEMMA4C_ERR_FORMAT, "required, wrong type");
    check_message(&err, "string_num", "must be an integer in [0, 100]");
    /* The bare value check, as lists use it. */
    CHECK(g4_json_as_int(NULL, 0, 1, &v) == -1, "no value");
    CHECK(g4_json_as_int(cJSON_GetObjectItem(doc, "int"), 0, 100, &v) == 0 && v == 42, "value 42");
}

static void test_double(void) {
    g4_json_obj o = obj();
    g4_err err = {0};
    double d = -5;
    CHECK(g4_json_double(&o, "fraction", 0, 0, 10, 0, &d, &err) == 0 && d == 2.5, "2.5");
    CHECK(g4_json_double(&o, "int", 0, 0, 100, 0, &d, &err) == 0 && d == 42, "an integer is a number");
    CHECK(g4_json_double(&o, "nope", 1.5, 0, 10, 0, &d, &err) == 0 && d == 1.5, "absent: default");
    CHECK(g4_json_double(&o, "null", 2.5, 0, 10, 1, &d, &err) == 0 && d == 2.5, "null: default");
    CHECK(g4_json_double(&o, "zero", 1, 0, 10, 0, &d, &err) == 0 && d == 0, "closed lower bound");
    d = -5;
    CHECK(g4_json_double(&o, "zero", 1, 0, 10, 1, &d, &err) == GEMMA4C_ERR_FORMAT && d == -5, "open lower bound");
    check_message(&err, "zero", "must be a number in (0, 10]");
    CHECK(g4_json_double(&o, "tiny", 1, 0, 10, 1, &d, &err) == 0 && d == 1e-300, "just above an open bound");
    CHECK(g4_json_double(&o, "int", 1, 0, 42, 1, &d, &err) == 0 && d == 42, "closed upper bound");
    static const char *const bad[] = {"string_num", "true", "list", "object", "huge", "neg_huge", "inf", "neg_inf", "nan"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        d = -5;
        g4_err_clear(&err);
        int rc = g4_json_double(&o, bad[i], 0, -1e12, 1e12, 0, &d, &err);
        CHECK(rc == GEMMA4C_ERR_FORMAT && d == -5, "%s accepted as a number (%g)", bad[i], d);
        check_message(&err, bad[i], "must be a number in [-1e+12, 1e+12]");
    }
    /* An infinite bound admits the infinity (audio_config.gradient_clipping), never NaN. */
    CHECK(g4_json_double(&o, "inf", 0, 0, INFINITY, 0, &d, &err) == 0 && isinf(d), "inf within [0, inf]");
    CHECK(g4_json_double(&o, "nan", 0, -INFINITY, INFINITY, 0, &d, &err) == GEMMA4C_ERR_FORMAT, "NaN within anything");
    check_message(&err, "nan", "must be a number in [-inf, inf]");
}

static void test_bool(void) {
    g4_json_obj o = obj();
    g4_err err = {0};
    int b = -5;
    CHECK(g4_json_bool(&o, "true", 0, &b, &err) == 0 && b == 1, "true");
    CHECK(g4_json_bool(&o, "false", 1, &b, &err) == 0 && b == 0, "false");
    CHECK(g4_json_bool(&o, "nope", 1, &b, &err) == 0 && b == 1, "absent: default");
    CHECK(g4_json_bool(&o, "null", 0, &b, &err) == 0 && b == 0, "null: default");
    static const char *const bad[] = {"zero", "int", "string_true", "list", "object", "nan"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        b = -5;
        CHECK(g4_json_bool(&o, bad[i], 0, &b, &err) == GEMMA4C_ERR_FORMAT && b == -5, "%s accepted as a bool", bad[i]);
        check_message(&err, bad[i], "must be true or false");
    }
}

static void test_ids(void) {
    g4_json_obj o = obj();
    g4_err err = {0};
    int id = 5;
    CHECK(g4_json_id(&o, "nope", 100, &id, &err) == 0 && id == -1, "absent id is -1");
    CHECK(g4_json_id(&o, "null", 100, &id, &err) == 0 && id == -1, "null id is -1");
    CHECK(g4_json_id(&o, "int", 43, &id, &err) == 0 && id == 42, "the last id of the vocabulary");
    CHECK(g4_json_id(&o, "int", 42, &id, &err) == GEMMA4C_ERR_FORMAT, "one past the vocabulary");
    check_message(&err, "int", "must be a token id inside the vocabulary");
    static const char *const bad[] = {"minus_one", "fraction", "string_num", "true", "list", "huge", "inf", "nan"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(g4_json_id(&o, bad[i], 1000, &id, &err) == GEMMA4C_ERR_FORMAT, "%s accepted as an id", bad[i]);
        check_message(&err, bad[i], "must be a token id inside the vocabulary");
    }

    int32_t ids[4] = {0};
    int n = 9;
    CHECK(g4_json_id_list(&o, "nope", 100, 4, ids, &n, &err) == 0 && n == 0, "absent list");
    CHECK(g4_json_id_list(&o, "int", 100, 4, ids, &n, &err) == 0 && n == 1 && ids[0] == 42, "one id");
    CHECK(g4_json_id_list(&o, "ids", 100, 4, ids, &n, &err) == 0 && n == 3 && ids[0] == 1 && ids[2] == 99, "a list");
    CHECK(g4_json_id_list(&o, "list", 100, 4, ids, &n, &err) == 0 && n == 0, "an empty list");
    CHECK(g4_json_id_list(&o, "ids", 100, 2, ids, &n, &err) == GEMMA4C_ERR_FORMAT, "more ids than room");
    check_message(&err, "ids", "has too many ids");
    CHECK(g4_json_id_list(&o, "ids", 99, 4, ids, &n, &err) == GEMMA4C_ERR_FORMAT, "an id outside the vocabulary");
    check_message(&err, "ids", "holds an id outside the vocabulary");
    static const char *const bad_lists[] = {"mixed_ids", "nested_ids"};
    for (size_t i = 0; i < 2; i++) {
        CHECK(g4_json_id_list(&o, bad_lists[i], 100, 4, ids, &n, &err) == GEMMA4C_ERR_FORMAT, "%s accepted",
              bad_lists[i]);
        check_message(&err, bad_lists[i], "holds an id outside the vocabulary");
    }
    CHECK(g4_json_id_list(&o, "object", 100, 4, ids, &n, &err) == GEMMA4C_ERR_FORMAT, "an object as ids");
    check_message(&err, "object", "must be a token id inside the vocabulary (or a list of them)");
    CHECK(g4_json_id_list(&o, "many_ids", 100, 4, ids, &n, &err) == GEMMA4C_ERR_FORMAT, "100000 ids");
}

static void test_fail(void) {
    g4_json_obj o = {doc, "generation_config", ""};
    g4_err err = {0};
    CHECK(g4_json_fail(&o, "top_k", "is odd", &err) == GEMMA4C_ERR_FORMAT &&
              strcmp(err.msg, "generation_config: top_k is odd") == 0,
          "top-level message: %s", err.msg);
    CHECK(g4_json_fail(&o, "top_k", "is odd", NULL) == GEMMA4C_ERR_FORMAT, "no error struct");
    /* A key as long as the message buffer is cut to one line, not overrun. */
    char key[2000];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    int v;
    CHECK(g4_json_int(&o, key, 0, 0, 1, &v, &err) == 0, "absent long key");
    CHECK(g4_json_int_required(&o, key, 0, 1, &v, &err) == GEMMA4C_ERR_FORMAT && strlen(err.msg) == sizeof err.msg - 1,
          "long key message %zu", strlen(err.msg));
}

int main(void) {
    const char *text = "{\"int\": 42, \"null\": null, \"negzero\": -0.0, \"whole_float\": 3.0, \"int_max\": 2147483647,"
                       " \"int_min\": -2147483648, \"two_pow_31\": 2147483648, \"fraction\": 2.5,"
                       " \"string_num\": \"1\", \"string_true\": \"true\", \"true\": true, \"false\": false, \"zero\": 0,"
                       " \"minus_one\": -1, \"list\": [], \"object\": {\"a\": 1}, \"huge\": 1e300, \"neg_huge\": -1e300,"
                       " \"inf\": 1e999, \"neg_inf\": -1e999, \"tiny\": 1e-300, \"ids\": [1, 2, 99],"
                       " \"mixed_ids\": [1, \"2\"], \"nested_ids\": [[1]], \"sub\": {\"theta\": 7, \"bad\": 0.5}}";
    doc = g4_json_parse(text, strlen(text), 1 << 20);
    CHECK(doc != NULL, "test document");
    if (!doc) return g4t_finish("test_json");
    /* JSON has no NaN, but a tree built in code can hold one. */
    cJSON_AddItemToObject(doc, "nan", cJSON_CreateNumber(NAN));
    cJSON *many = cJSON_CreateArray();
    for (int i = 0; i < 100000; i++) cJSON_AddItemToArray(many, cJSON_CreateNumber(1));
    cJSON_AddItemToObject(doc, "many_ids", many);
    CHECK(isinf(cJSON_GetObjectItem(doc, "inf")->valuedouble), "1e999 parses as infinity");

    test_parse();
    test_field();
    test_int();
    test_double();
    test_bool();
    test_ids();
    test_fail();
    cJSON_Delete(doc);
    return g4t_finish("test_json");
}
