/* test_chat.c — the C chat template against prompts that the real Jinja template rendered, plus hostile input. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/mapfile.h"
#include "test.h"
#include "text/chat.h"

static cJSON *load_json(const char *path) {
    char *text = NULL;
    size_t len = 0;
    g4_err err = {0};
    if (g4_read_file(path, 64u << 20, &text, &len, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    cJSON *json = cJSON_ParseWithLength(text, len);
    free(text);
    return json;
}

static int flag(const cJSON *kwargs, const char *key, int fallback) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(kwargs, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : fallback;
}

/* Prints where two renderings first differ, so a failure is readable. */
static void show_difference(const char *name, const char *want, const char *got) {
    size_t i = 0;
    while (want[i] && want[i] == got[i])
        i++;
    size_t from = i > 60 ? i - 60 : 0;
    fprintf(stderr, "  %s differs at byte %zu\n  want: ...%.120s\n  got:  ...%.120s\n", name, i, want + from,
            got + from);
}

/* Renders one {name, messages, kwargs, prompt | error} case and compares. Returns 1 when it passed. */
static int run_case(const cJSON *c) {
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name"));
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(c, "messages");
    const cJSON *kwargs = cJSON_GetObjectItemCaseSensitive(c, "kwargs");
    const char *prompt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "prompt"));
    const char *error = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "error"));
    g4_chat_options opt = {
        .add_generation_prompt = flag(kwargs, "add_generation_prompt", 1),
        .enable_thinking = flag(kwargs, "enable_thinking", 0),
        .preserve_thinking = flag(kwargs, "preserve_thinking", 0),
        .bos_token = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(kwargs, "bos_token")),
    };
    g4_buf out = {0};
    g4_err err = {0};
    int rc = g4_chat_render(messages, cJSON_GetObjectItemCaseSensitive(kwargs, "tools"), &opt, &out, &err);
    int ok;
    if (error) {
        ok = rc == GEMMA4C_ERR_ARG && strcmp(err.msg, error) == 0;
        CHECK(ok, "%s: expected error \"%s\", got rc %d \"%s\"", name, error, rc, err.msg);
    } else {
        ok = rc == 0 && prompt && out.data && strcmp(out.data, prompt) == 0;
        CHECK(ok, "%s: rendering differs (rc %d %s)", name, rc, err.msg);
        if (!ok && rc == 0 && prompt) show_difference(name, prompt, out.data ? out.data : "");
    }
    g4_buf_free(&out);
    return ok;
}

static int run_file(const char *path, const cJSON *cases, int *total) {
    int passed = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        (*total)++;
        passed += run_case(c);
    }
    printf("%s: %d/%d cases\n", path, passed, cJSON_GetArraySize(cases));
    return passed;
}

/* Renders messages given as JSON text; returns the status and leaves the message in err. */
static int render_text(const char *messages_json, const char *tools_json, g4_buf *out, g4_err *err) {
    cJSON *messages = cJSON_Parse(messages_json);
    cJSON *tools = tools_json ? cJSON_Parse(tools_json) : NULL;
    g4_chat_options opt = {.add_generation_prompt = 1};
    g4_err_clear(err);
    int rc = g4_chat_render(messages, tools, &opt, out, err);
    cJSON_Delete(messages);
    cJSON_Delete(tools);
    return rc;
}

static void expect_error(const char *messages_json, const char *tools_json, const char *needle) {
    g4_buf out = {0};
    g4_err err = {0};
    int rc = render_text(messages_json, tools_json, &out, &err);
    CHECK(rc == GEMMA4C_ERR_ARG, "expected an argument error for %s, got %d", messages_json, rc);
    CHECK(err.msg[0] && strstr(err.msg, needle), "error for %s is \"%s\", expected to mention \"%s\"", messages_json,
          err.msg, needle);
    CHECK(!strchr(err.msg, '\n'), "error for %s is not one line: \"%s\"", messages_json, err.msg);
    CHECK(out.len == 0, "failed render left %zu bytes", out.len);
    g4_buf_free(&out);
}

static void expect_prompt(const char *messages_json, const char *tools_json, const char *want) {
    g4_buf out = {0};
    g4_err err = {0};
    int rc = render_text(messages_json, tools_json, &out, &err);
    CHECK(rc == 0 && out.data && strcmp(out.data, want) == 0, "%s renders \"%s\" (rc %d %s), expected \"%s\"",
          messages_json, out.data ? out.data : "", rc, err.msg, want);
    g4_buf_free(&out);
}

static void hostile_inputs(void) {
    g4_buf out = {0};
    g4_err err = {0};
    cJSON *obj = cJSON_Parse("{\"role\":\"user\",\"content\":\"hi\"}");
    CHECK(g4_chat_render(obj, NULL, NULL, &out, &err) == GEMMA4C_ERR_ARG, "an object is not a message list");
    CHECK(g4_chat_render(NULL, NULL, NULL, &out, &err) == GEMMA4C_ERR_ARG, "NULL messages");
    cJSON *empty = cJSON_CreateArray();
    CHECK(g4_chat_render(empty, NULL, NULL, NULL, &err) == GEMMA4C_ERR_ARG, "NULL output buffer");
    CHECK(g4_chat_render(empty, obj, NULL, &out, &err) == GEMMA4C_ERR_ARG, "tools must be a list");
    CHECK(g4_chat_render(empty, NULL, NULL, &out, NULL) == 0, "no error buffer and defaults");
    CHECK(out.data && strcmp(out.data, "<bos>") == 0, "defaults render only <bos>, got \"%s\"", out.data);
    cJSON_Delete(obj);
    cJSON_Delete(empty);
    g4_buf_free(&out);

    expect_error("[\"hello\"]", NULL, "messages[0] must be an object");
    expect_error("[{\"role\":\"user\",\"content\":\"a\"}, 7]", NULL, "messages[1] must be an object");
    expect_error("[{\"content\":\"hi\"}]", NULL, "messages[0].role must be a string");
    expect_error("[{\"role\":5,\"content\":\"hi\"}]", NULL, "role must be a string");
    expect_error("[{\"role\":\"wizard\",\"content\":\"hi\"}]", NULL, "unknown role \"wizard\"");
    /* What a message quotes is escaped: an error is one line (found by fuzz_openai). */
    expect_error("[{\"role\":\"a\\nb\\r\\u001b\",\"content\":\"hi\"}]", NULL, "unknown role \"a\\nb\\r\\x1b\"");
    expect_error("[{\"role\":\"user\",\"content\":42}]", NULL, "content must be a string or a list");
    expect_error("[{\"role\":\"user\",\"content\":{\"text\":\"hi\"}}]", NULL, "content must be a string or a list");
    expect_error("[{\"role\":\"user\",\"content\":true}]", NULL, "content must be");
    expect_error("[{\"role\":\"user\",\"content\":[\"hi\"]}]", NULL, "content[0] must be an object");
    expect_error("[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]", NULL, "text must be a string");
    expect_error("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":3}]}]", NULL, "text must be a string");
    expect_error("[{\"role\":\"assistant\",\"reasoning\":[1]}]", NULL, "reasoning must be a string");
    expect_error("[{\"role\":\"assistant\",\"tool_calls\":{\"a\":1}}]", NULL, "tool_calls must be a list");
    expect_error("[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{}}]}]", NULL, "tool_calls[0]");
    expect_error("[{\"role\":\"assistant\",\"tool_calls\":[\"f\"]}]", NULL, "tool_calls[0]");
    expect_error("[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{oops\"}}]}]",
                 NULL, "must be a JSON object");
    expect_error("[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"[1]\"}}]}]",
                 NULL, "must be a JSON object");
    expect_error("[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{} x\"}}]}]",
                 NULL, "must be a JSON object");
    expect_error("[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]}]", NULL,
                 "must be a JSON object");
    expect_prompt(
        "[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\" {\\\"b\\\":1,"
        "\\\"a\\\":[true]} \"}}]}]",
        NULL, "<bos><|turn>model\n<|tool_call>call:f{a:[true],b:1}<tool_call|><|tool_response>");
    expect_error("[{\"role\":\"assistant\",\"tool_responses\":[3]}]", NULL, "tool_responses[0]");
    expect_error("[{\"role\":\"tool\",\"name\":7,\"content\":\"x\"}]", NULL, "name must be a string");
    expect_error("[{\"role\":\"user\",\"content\":\"x\"}]", "[{\"name\":\"flat\"}]", "tools[0]");
    expect_error("[{\"role\":\"user\",\"content\":\"x\"}]", "[7]", "tools[0]");
    expect_error("[{\"role\":\"user\",\"content\":\"x\"}]",
                 "[{\"function\":{\"name\":\"f\",\"parameters\":{\"properties\":[1]}}}]", "properties");
    expect_error("[{\"role\":\"user\",\"content\":\"x\"}]",
                 "[{\"function\":{\"name\":\"f\",\"parameters\":{\"required\":5}}}]", "not iterable");
    expect_error("[{\"role\":\"user\",\"content\":\"x\"}]",
                 "[{\"function\":{\"name\":\"f\",\"parameters\":{\"properties\":{\"a\":{\"type\":\"array\","
                 "\"items\":{\"type\":true}}}}}}]",
                 "not iterable");

    /* A tree built in code can nest without cJSON_Parse's limit; it must be refused, not overflow the stack. */
    cJSON *deep = cJSON_CreateArray(), *message = cJSON_CreateObject();
    cJSON_AddItemToArray(deep, message);
    cJSON_AddStringToObject(message, "role", "user");
    cJSON *leaf = cJSON_AddArrayToObject(message, "content");
    for (int i = 0; i < 5000 && leaf; i++) {
        cJSON *inner = cJSON_CreateArray();
        cJSON_AddItemToArray(leaf, inner);
        leaf = inner;
    }
    g4_buf deep_out = {0};
    CHECK(g4_chat_render(deep, NULL, NULL, &deep_out, &err) == GEMMA4C_ERR_ARG, "5000 nested lists are refused");
    CHECK(strstr(err.msg, "deeper"), "deep nesting error: %s", err.msg);
    g4_buf_free(&deep_out);
    cJSON_Delete(deep);

    /* A failed render leaves what the buffer already held. */
    g4_buf kept = {0};
    g4_buf_puts(&kept, "prefix");
    g4_err e2 = {0};
    CHECK(render_text("[{\"role\":\"nobody\"}]", NULL, &kept, &e2) == GEMMA4C_ERR_ARG, "unknown role");
    CHECK(strcmp(kept.data, "prefix") == 0 && kept.len == 6, "buffer restored after an error");
    CHECK(render_text("[{\"role\":\"user\",\"content\":\"x\"}]", NULL, &kept, &e2) == 0, "append render");
    CHECK(strcmp(kept.data, "prefix<bos><|turn>user\nx<turn|>\n<|turn>model\n") == 0, "render appends: %s", kept.data);
    g4_buf_free(&kept);
}

/* Behaviour the generated cases do not reach: Python's str() of odd values, repeated keys, invalid UTF-8. */
static void python_corners(void) {
    /* JSON numbers: integral values print as Python ints, others as Python's shortest float repr. */
    expect_prompt("[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":"
                  "{\"a\":0.1,\"c\":1e-7,\"d\":1.5e+23,\"e\":0.0001,\"g\":-3,\"h\":2.5e-300,"
                  "\"i\":123.456}}}]}]",
                  NULL,
                  "<bos><|turn>model\n<|tool_call>call:f{a:0.1,c:1e-07,d:1.5e+23,e:0.0001,g:-3,h:2.5e-300,i:123.456}"
                  "<tool_call|><|tool_response>");
    /* A repeated key keeps its first place and its last value, as a Python dict built from JSON does. */
    expect_prompt("[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":"
                  "{\"k\":1,\"K\":2,\"k\":3}}}]}]",
                  NULL, "<bos><|turn>model\n<|tool_call>call:f{k:3,K:2}<tool_call|><|tool_response>");
    /* Non-string types and descriptions print as Python's str(): lists, None, booleans. */
    expect_prompt("[]",
                  "[{\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\",\"properties\":{"
                  "\"a\":{\"type\":[\"string\",\"null\"],\"description\":[\"it's\",1.5,null,true,{\"k\":\"v\\n\"}]},"
                  "\"b\":{\"type\":null},\"c\":\"not a schema\"}}}}]",
                  "<bos><|turn>system\n<|tool>declaration:f{description:<|\"|><|\"|>,parameters:{properties:{"
                  "a:{description:<|\"|>[\"it's\", 1.5, None, True, {'k': 'v\\n'}]<|\"|>,"
                  "type:<|\"|>['STRING', 'NULL']<|\"|>},b:{type:<|\"|>NONE<|\"|>},c:{type:<|\"|><|\"|>}},"
                  "type:<|\"|>OBJECT<|\"|>}}<tool|><turn|>\n<|turn>model\n");
    /* Invalid UTF-8 passes through byte for byte. */
    expect_prompt("[{\"role\":\"user\",\"content\":\" \xff\xfe ok \xc3\"}]", NULL,
                  "<bos><|turn>user\n\xff\xfe ok \xc3<turn|>\n<|turn>model\n");
}

int main(void) {
    const char *golden = g4t_require_golden();
    char path[4200]; /* room for the golden directory (at most 4095 bytes) and a file name */
    int total = 0, passed = 0;

    snprintf(path, sizeof path, "%s/tiny/reference/chat.json", golden);
    cJSON *golden_cases = load_json(path);
    CHECK(cJSON_IsArray(golden_cases) && cJSON_GetArraySize(golden_cases) == 9, "%s: 9 cases", path);
    if (golden_cases) passed += run_file(path, golden_cases, &total);
    cJSON_Delete(golden_cases);

    snprintf(path, sizeof path, "%s/tests/data/chat_cases.json", GEMMA4C_SOURCE_DIR);
    cJSON *generated = load_json(path);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(generated, "cases");
    CHECK(cJSON_IsArray(cases) && cJSON_GetArraySize(cases) >= 30, "%s: at least 30 cases", path);
    if (cases) passed += run_file(path, cases, &total);
    cJSON_Delete(generated);
    printf("rendered %d/%d cases byte for byte\n", passed, total);

    hostile_inputs();
    python_corners();
    return g4t_finish("test_chat");
}
