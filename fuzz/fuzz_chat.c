/* fuzz_chat.c — libFuzzer harness: any JSON as chat messages must render or fail cleanly, never crash. */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "fuzz_model.h"
#include "text/chat.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

/* Seeds: each case of tests/data/chat_cases.json as an input object (fuzz/run.sh hands the harness its seed
 * directory in $GEMMA4C_FUZZ_SEEDS). */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *dir = g4f_seed_dir(*argc, *argv);
    char path[4200];
    size_t size = 0;
    snprintf(path, sizeof path, "%s/tests/data/chat_cases.json", GEMMA4C_SOURCE_DIR);
    char *text = dir ? (char *)g4f_read(path, &size) : NULL;
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *c;
    int i = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases")) {
        const cJSON *kwargs = cJSON_GetObjectItemCaseSensitive(c, "kwargs");
        cJSON *in = cJSON_CreateObject();
        cJSON_AddItemToObject(in, "messages", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(c, "messages"), 1));
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(kwargs, "tools");
        if (tools) cJSON_AddItemToObject(in, "tools", cJSON_Duplicate(tools, 1));
        cJSON_AddBoolToObject(in, "enable_thinking", flag(kwargs, "enable_thinking"));
        cJSON_AddBoolToObject(in, "preserve_thinking", flag(kwargs, "preserve_thinking"));
        cJSON_AddBoolToObject(in, "no_generation_prompt",
                              cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(kwargs, "add_generation_prompt")));
        char *out = cJSON_PrintUnformatted(in), name[64];
        snprintf(name, sizeof name, "seed-case-%02d.json", i++);
        if (out) g4f_write(dir, name, out, strlen(out));
        cJSON_free(out);
        cJSON_Delete(in);
    }
    cJSON_Delete(root);
    return 0;
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
