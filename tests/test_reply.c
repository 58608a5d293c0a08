/* test_reply.c — the reply parser (tools/reply.c): tool calls rendered by the chat template parse back to the same
 * calls, fed whole or in pieces of every size; thinking is split from the answer; malformed calls stay text. */
#include <cjson/cJSON.h>

#include "gemma4c.h"
#include "reply.h"
#include "test.h"

typedef struct collected {
    char content[8192], reasoning[8192];
    size_t content_len, reasoning_len;
    cJSON *calls; /* [{"name", "arguments": object}] */
} collected;

static int collect(void *user, int part, const char *text, size_t len, const char *arguments) {
    collected *c = user;
    if (part == REPLY_TOOL_CALL) {
        cJSON *call = cJSON_CreateObject();
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)len, text);
        cJSON_AddStringToObject(call, "name", name);
        cJSON_AddItemToObject(call, "arguments", cJSON_Parse(arguments));
        cJSON_AddItemToArray(c->calls, call);
        return 0;
    }
    char *buf = part == REPLY_REASONING ? c->reasoning : c->content;
    size_t *n = part == REPLY_REASONING ? &c->reasoning_len : &c->content_len;
    CHECK(len > 0, "no empty pieces");
    if (*n + len < sizeof c->content) memcpy(buf + *n, text, len), *n += len, buf[*n] = '\0';
    return 0;
}

/* Feeds text in pieces of `step` bytes (0: whole). */
static void parse(const char *text, int tools, size_t step, collected *c) {
    memset(c, 0, sizeof *c);
    c->calls = cJSON_CreateArray();
    reply_parser p;
    reply_init(&p, tools);
    const size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        const size_t k = step && step < n - i ? step : n - i;
        CHECK(reply_feed(&p, text + i, k, collect, c) == 0, "feed");
        i += k;
    }
    CHECK(reply_finish(&p, collect, c) == 0, "finish");
    reply_free(&p);
}

static void same_everywhere(const char *name, const char *text, int tools, const char *content, const char *reasoning,
                            const cJSON *calls) {
    static const size_t steps[] = {0, 1, 2, 3, 5, 7, 11, 64};
    for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
        collected c;
        parse(text, tools, steps[s], &c);
        CHECK(strcmp(c.content, content) == 0, "%s, pieces of %zu: content '%s', wanted '%s'", name, steps[s], c.content, content);
        CHECK(strcmp(c.reasoning, reasoning) == 0, "%s, pieces of %zu: reasoning '%s', wanted '%s'", name, steps[s],
              c.reasoning, reasoning);
        if (calls) {
            char *got = cJSON_PrintUnformatted(c.calls), *want = cJSON_PrintUnformatted(calls);
            CHECK(cJSON_Compare(c.calls, calls, 1), "%s, pieces of %zu: calls %s, wanted %s", name, steps[s], got, want);
            cJSON_free(got);
            cJSON_free(want);
        } else
            CHECK(cJSON_GetArraySize(c.calls) == 0, "%s: no calls", name);
        cJSON_Delete(c.calls);
    }
}

/* Calls rendered by the template (an assistant turn holding them) come back as the same names and arguments. */
static void template_round_trip(gemma4c_model *m, const char *calls_json) {
    cJSON *calls = cJSON_Parse(calls_json), *tool_calls = cJSON_CreateArray(), *want = cJSON_CreateArray(), *call;
    CHECK(calls != NULL, "test input parses");
    int i = 0;
    cJSON_ArrayForEach(call, calls) {
        cJSON *tc = cJSON_CreateObject(), *fn = cJSON_CreateObject();
        char id[16];
        snprintf(id, sizeof id, "c%d", i++);
        cJSON_AddStringToObject(tc, "id", id);
        cJSON_AddStringToObject(tc, "type", "function");
        cJSON_AddItemToObject(fn, "name", cJSON_Duplicate(cJSON_GetObjectItem(call, "name"), 1));
        cJSON_AddItemToObject(fn, "arguments", cJSON_Duplicate(cJSON_GetObjectItem(call, "arguments"), 1));
        cJSON_AddItemToObject(tc, "function", fn);
        cJSON_AddItemToArray(tool_calls, tc);
        cJSON_AddItemToArray(want, cJSON_Duplicate(call, 1));
    }
    cJSON *messages = cJSON_CreateArray(), *user = cJSON_CreateObject(), *assistant = cJSON_CreateObject();
    cJSON_AddStringToObject(user, "role", "user");
    cJSON_AddStringToObject(user, "content", "What now?");
    cJSON_AddStringToObject(assistant, "role", "assistant");
    cJSON_AddItemToObject(assistant, "tool_calls", tool_calls);
    cJSON_AddItemToArray(messages, user);
    cJSON_AddItemToArray(messages, assistant);
    char *mj = cJSON_PrintUnformatted(messages), *prompt = NULL, err[512];
    CHECK(gemma4c_render_chat(m, mj, NULL, 0, &prompt, err, sizeof err) == 0, "render: %s", err);
    /* the model's turn: after its opening, up to where it waits for the results */
    const char *turn = prompt ? strstr(prompt, "<|turn>model\n") : NULL;
    CHECK(turn != NULL, "a model turn in %s", prompt ? prompt : "");
    if (turn) {
        char *text = strdup(turn + strlen("<|turn>model\n"));
        char *wait = strstr(text, REPLY_AWAIT_RESPONSE);
        CHECK(wait != NULL, "the turn ends waiting for results: %s", text);
        if (wait) *wait = '\0';
        same_everywhere(calls_json, text, 1, "", "", want);
        free(text);
    }
    gemma4c_free(prompt);
    cJSON_free(mj);
    cJSON_Delete(messages);
    cJSON_Delete(calls);
    cJSON_Delete(want);
}

int main(void) {
    const char *golden = g4t_require_golden();
    char path[4200], err[512];
    snprintf(path, sizeof path, "%s/tiny/checkpoint", golden);
    gemma4c_model_params mp = {path, NULL, 1, 0, 0};
    gemma4c_model *m = NULL;
    CHECK(gemma4c_model_load(&mp, &m, err, sizeof err) == 0, "load: %s", err);
    if (!m) return g4t_finish("test_reply");

    template_round_trip(m, "[{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}]");
    template_round_trip(m, "[{\"name\":\"f\",\"arguments\":{}}]");
    template_round_trip(m, "[{\"name\":\"search.web-v2\",\"arguments\":{\"q\":\"a, b: {c} [d] \\\"e\\\" \\n f\","
                           "\"n\":3,\"neg\":-7,\"x\":2.5,\"ok\":true,\"no\":false,\"none\":null}}]");
    template_round_trip(m, "[{\"name\":\"nested\",\"arguments\":{\"filter\":{\"tags\":[\"a\",\"b\",[1,2]],"
                           "\"range\":{\"from\":1,\"to\":10}},\"list\":[],\"empty\":{},\"text\":\"caf\\u00e9 \\u2603\"}}]");
    template_round_trip(m, "[{\"name\":\"first\",\"arguments\":{\"a\":1}},{\"name\":\"second\",\"arguments\":{\"b\":\"two\"}}]");

    /* thinking, then the answer */
    same_everywhere("thought", "<|channel>thought\nLet me see: 2 < 3.<channel|>Yes, 2 < 3.", 0,
                    "Yes, 2 < 3.", "Let me see: 2 < 3.", NULL);
    same_everywhere("empty thought", "<|channel>thought\n<channel|>Hi", 0, "Hi", "", NULL);
    same_everywhere("unclosed thought", "<|channel>thought\nstill thinking", 0, "", "still thinking", NULL);
    /* text that only looks like the start of a marker */
    same_everywhere("angles", "a < b, <c> and <| x |> <|tool_call", 0, "a < b, <c> and <| x |> <|tool_call", "", NULL);
    /* tool calls off: their text is content */
    same_everywhere("tools off", "<|tool_call>call:f{a:1}<tool_call|>", 0, "<|tool_call>call:f{a:1}<tool_call|>", "", NULL);
    /* malformed calls come back as text, never lost */
    same_everywhere("unterminated string", "<|tool_call>call:f{a:<|\"|>x}<tool_call|>after", 1,
                    "<|tool_call>call:f{a:<|\"|>x}after", "", NULL);
    same_everywhere("no name", "<|tool_call>call:{a:1}<tool_call|>", 1, "<|tool_call>call:{a:1}", "", NULL);
    same_everywhere("repeated key", "<|tool_call>call:f{a:1,a:2}<tool_call|>", 1, "<|tool_call>call:f{a:1,a:2}", "", NULL);
    same_everywhere("cut short", "Sure.<|tool_call>call:f{a:", 1, "Sure.<|tool_call>call:f{a:", "", NULL);
    cJSON *one = cJSON_Parse("[{\"name\":\"f\",\"arguments\":{\"a\":\"bare words\"}}]");
    same_everywhere("bare value", "<|tool_call>call:f{a:bare words}<tool_call|>", 1, "", "", one);
    cJSON_Delete(one);
    /* deep nesting is refused, not recursed into */
    char deep[4096] = "<|tool_call>call:f{a:";
    for (int i = 0; i < 1000; i++) strcat(deep, "[");
    strcat(deep, "<tool_call|>");
    collected c;
    parse(deep, 1, 0, &c);
    CHECK(cJSON_GetArraySize(c.calls) == 0 && strncmp(c.content, "<|tool_call>call:f{a:[[[", 24) == 0, "deep nesting is text");
    cJSON_Delete(c.calls);

    gemma4c_model_free(m);
    return g4t_finish("test_reply");
}
