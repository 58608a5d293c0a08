/* fuzz_chat.c — libFuzzer harness: any JSON as chat messages must render or fail cleanly, never crash. */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "text/chat.h"

static int flag(const cJSON *obj, const char *key) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key)); }

/* Renders once and checks the contract: success starts with the BOS token, failure leaves the buffer empty
 * and says why. A broken contract traps so that the fuzzer reports it. */
static void render_once(const cJSON *messages, const cJSON *tools, const g4_chat_options *opt) {
    g4_buf out = {0};
    g4_err err = {0};
    int rc = g4_chat_render(messages, tools, opt, &out, &err);
    if (rc == 0) {
        const char *bos = opt->bos_token ? opt->bos_token : "<bos>";
        if (!out.data || strncmp(out.data, bos, strlen(bos)) != 0) __builtin_trap();
    } else if (out.len != 0 || err.code != rc || err.msg[0] == '\0') {
        __builtin_trap();
    }
    g4_buf_free(&out);
}

/* The input is JSON: either a messages array, or {"messages": [...], "tools": [...], "enable_thinking": ...}. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *json = cJSON_ParseWithLength((const char *)data, size);
    if (!json) return 0;
    if (cJSON_IsObject(json)) {
        g4_chat_options opt = {
            .add_generation_prompt = !flag(json, "no_generation_prompt"),
            .enable_thinking = flag(json, "enable_thinking"),
            .preserve_thinking = flag(json, "preserve_thinking"),
        };
        render_once(cJSON_GetObjectItemCaseSensitive(json, "messages"), cJSON_GetObjectItemCaseSensitive(json, "tools"),
                    &opt);
    } else {
        g4_chat_options plain = {.add_generation_prompt = 1};
        g4_chat_options all = {
            .add_generation_prompt = 1, .enable_thinking = 1, .preserve_thinking = 1, .bos_token = ""};
        render_once(json, NULL, &plain);
        render_once(json, NULL, &all);
    }
    cJSON_Delete(json);
    return 0;
}
