/* fuzz_openai.c — libFuzzer harness: chat-completion request bodies through the OpenAI parser (tools/openai.c) and
 * the parsed messages and tools through gemma4c_input_ids on the tiny model (chat template, media placeholders,
 * tokenizer). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>

#include "fuzz_model.h"
#include "openai.h"
#include "runtime/json_schema.h"

/* The seeds carry media as the server receives them (data: URLs, base64 audio): the golden small PNG for
 * images, a quarter second of WAV for audio, a two-frame animated GIF for video (a real clip takes seconds to
 * decode and sample under the sanitizers).
 *
 * Checked: a refused body names the field and says why on one line; an accepted one gives options inside their
 * documented ranges; input_ids either fails with one line or gives ids in the vocabulary; without media, those
 * ids are exactly the tokens of gemma4c_render_chat's text (render and input_ids agree). */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gemma4c_model *model;
static gemma4c_sampling defaults;
static int vocab;
static unsigned char *png, *gif, wav[44 + 2 * 4000];
static size_t png_size, gif_size, gif_cap;

static void le(unsigned char *p, uint32_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* 16 kHz mono 16-bit PCM: a 440 Hz tone. */
static void make_wav(void) {
    const uint32_t n = 4000;
    memcpy(wav, "RIFF", 4), le(wav + 4, 36 + 2 * n, 4), memcpy(wav + 8, "WAVEfmt ", 8);
    le(wav + 16, 16, 4), le(wav + 20, 1, 2), le(wav + 22, 1, 2), le(wav + 24, 16000, 4), le(wav + 28, 32000, 4);
    le(wav + 32, 2, 2), le(wav + 34, 16, 2), memcpy(wav + 36, "data", 4), le(wav + 40, 2 * n, 4);
    for (uint32_t i = 0; i < n; i++)
        le(wav + 44 + 2 * i, (uint32_t)(int16_t)(8000 * sin(2 * 3.14159265358979 * 440 * i / 16000.0)), 2);
}

static int gif_out(GifFileType *g, const GifByteType *data, int n) {
    (void)g;
    if (gif_size + (size_t)n > gif_cap) {
        size_t cap = (gif_size + (size_t)n) * 2;
        unsigned char *grown = realloc(gif, cap);
        if (!grown) return 0;
        gif = grown, gif_cap = cap;
    }
    memcpy(gif + gif_size, data, (size_t)n);
    gif_size += (size_t)n;
    return n;
}

/* Two 16x12 frames, 0.1 s each: ten frames a second. */
static void make_gif(void) {
    int gerr = 0;
    GifFileType *g = EGifOpen(NULL, gif_out, &gerr);
    GifColorType colors[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
    ColorMapObject *map = GifMakeMapObject(4, colors);
    if (!g || !map || EGifPutScreenDesc(g, 16, 12, 2, 0, map) == GIF_ERROR)
        g4f_die("fuzz_openai", "gif", "cannot make");
    EGifSetGifVersion(g, true);
    for (int f = 0; f < 2; f++) {
        GifByteType gce[4] = {0x04, 10, 0, 0}; /* no transparency, delay 10/100 s */
        GifPixelType line[16];
        if (EGifPutExtension(g, GRAPHICS_EXT_FUNC_CODE, 4, gce) == GIF_ERROR ||
            EGifPutImageDesc(g, 0, 0, 16, 12, false, NULL) == GIF_ERROR)
            g4f_die("fuzz_openai", "gif", "cannot make");
        for (int y = 0; y < 12; y++) {
            for (int x = 0; x < 16; x++) line[x] = (GifPixelType)((x / 4 + y / 4 + f) % 4);
            if (EGifPutLine(g, line, 16) == GIF_ERROR) g4f_die("fuzz_openai", "gif", "cannot make");
        }
    }
    if (EGifCloseFile(g, &gerr) == GIF_ERROR) g4f_die("fuzz_openai", "gif", "cannot make");
    GifFreeMapObject(map);
}

static char *base64(const unsigned char *p, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *o++ = abc[v >> 18 & 63], *o++ = abc[v >> 12 & 63];
        *o++ = i + 1 < n ? abc[v >> 6 & 63] : '=', *o++ = i + 2 < n ? abc[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* {"type": "image"|"audio"|"video"} parts become what a client sends: a data: URL or base64 audio. */
static void attach_media(cJSON *messages) {
    cJSON *msg, *part;
    cJSON_ArrayForEach(msg, messages) {
        cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        cJSON_ArrayForEach(part, (cJSON_IsArray(content) ? content : NULL)) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
            if (!cJSON_IsString(type)) continue;
            const char *t = type->valuestring;
            const int image = !strcmp(t, "image"), audio = !strcmp(t, "audio"), video = !strcmp(t, "video");
            if (!image && !audio && !video) continue;
            char *b64 = image ? base64(png, png_size) : audio ? base64(wav, sizeof wav) : base64(gif, gif_size);
            if (!b64 || (image && !png)) {
                free(b64);
                continue;
            }
            char *url = malloc(strlen(b64) + 32);
            sprintf(url, "data:%s;base64,%s", image ? "image/png" : "image/gif", b64);
            cJSON *plain = cJSON_CreateObject(), *inner = cJSON_CreateObject();
            cJSON_AddStringToObject(plain, "type", image ? "image_url" : audio ? "input_audio" : "video_url");
            if (audio) {
                cJSON_AddStringToObject(inner, "data", b64);
                cJSON_AddStringToObject(inner, "format", "wav");
            } else
                cJSON_AddStringToObject(inner, "url", url);
            cJSON_AddItemToObject(plain, image ? "image_url" : audio ? "input_audio" : "video_url", inner);
            cJSON_ReplaceItemViaPointer(content, part, plain);
            part = plain;
            free(url);
            free(b64);
        }
    }
}

/* Request bodies from the chat-template cases (tests/data/chat_cases.json), each with a different set of the
 * other fields, and the raw seeds of fuzz/seeds/openai are copied by run.sh. */
static void write_seeds(const char *dir) {
    char path[4200];
    size_t size = 0;
    snprintf(path, sizeof path, "%s/tests/data/chat_cases.json", GEMMA4C_SOURCE_DIR);
    char *text = (char *)g4f_read(path, &size);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *c;
    int i = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases")) {
        const cJSON *messages = cJSON_GetObjectItemCaseSensitive(c, "messages");
        if (!cJSON_IsArray(messages) || !cJSON_GetArraySize(messages)) continue;
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "model", "gemma-4");
        cJSON *copy = cJSON_Duplicate(messages, 1);
        attach_media(copy);
        cJSON_AddItemToObject(body, "messages", copy);
        const cJSON *kwargs = cJSON_GetObjectItemCaseSensitive(c, "kwargs");
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(kwargs, "tools");
        if (tools) cJSON_AddItemToObject(body, "tools", cJSON_Duplicate(tools, 1));
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(kwargs, "enable_thinking"))) {
            cJSON *kw = cJSON_AddObjectToObject(body, "chat_template_kwargs");
            cJSON_AddTrueToObject(kw, "enable_thinking");
        }
        switch (i % 4) {
        case 0:
            cJSON_AddNumberToObject(body, "max_tokens", 64);
            cJSON_AddNumberToObject(body, "temperature", 0.7);
            break;
        case 1:
            cJSON_AddTrueToObject(body, "logprobs");
            cJSON_AddNumberToObject(body, "top_logprobs", 3);
            break;
        case 2:
            cJSON_AddItemToObject(body, "stop", cJSON_CreateString("\n\n"));
            cJSON_AddNumberToObject(body, "seed", 42);
            break;
        default:
            cJSON_AddStringToObject(body, "reasoning_effort", "none");
            cJSON_AddNumberToObject(body, "top_k", 40);
        }
        char *out = cJSON_PrintUnformatted(body), name[64];
        snprintf(name, sizeof name, "seed-case-%02d.json", i++);
        if (out) g4f_write(dir, name, out, strlen(out));
        cJSON_free(out);
        cJSON_Delete(body);
    }
    cJSON_Delete(root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    model = g4f_load_tiny("fuzz_openai");
    gemma4c_model_info info;
    gemma4c_model_get_info(model, &info);
    vocab = info.vocab_size;
    gemma4c_sampling_from_model(model, &defaults);
    char path[4200];
    snprintf(path, sizeof path, "%s/media/small.png", g4f_golden());
    png = info.has_vision ? g4f_read(path, &png_size) : NULL;
    if (info.has_vision) make_gif();
    make_wav();
    const char *seeds = g4f_seed_dir(*argc, *argv);
    if (seeds) write_seeds(seeds);
    return 0;
}

static int one_line(const char *s) { return s[0] && !strchr(s, '\n'); }

/* What the parser promises about an accepted body. */
static void check_request(const oai_request *req) {
    const gemma4c_generate_options *o = &req->options;
    const gemma4c_sampling *s = &o->sampling;
    cJSON *messages = req->messages_json ? cJSON_Parse(req->messages_json) : NULL;
    if (!cJSON_IsArray(messages) || !cJSON_GetArraySize(messages)) __builtin_trap();
    cJSON_Delete(messages);
    if (req->tools_json) {
        cJSON *tools = cJSON_Parse(req->tools_json);
        if (!cJSON_IsArray(tools)) __builtin_trap();
        cJSON_Delete(tools);
    }
    if (!(s->temperature >= 0 && s->temperature <= 2) || !(s->top_p >= 0 && s->top_p <= 1) ||
        !(s->min_p >= 0 && s->min_p <= 1) || s->top_k < 0 || !(fabsf(s->presence_penalty) <= 2) ||
        !(fabsf(s->frequency_penalty) <= 2) || !(s->repetition_penalty >= 0 && s->repetition_penalty <= 10))
        __builtin_trap();
    if (o->max_tokens < 0 || o->top_logprobs < 0 || o->top_logprobs > GEMMA4C_MAX_TOP_LOGPROBS ||
        (o->top_logprobs && !o->logprobs))
        __builtin_trap();
    if (o->n_stop > OAI_MAX_STOP + 1 || (o->n_stop && o->stop != (const char *const *)req->stops)) __builtin_trap();
    if (req->n_media > OAI_MAX_MEDIA) __builtin_trap();
    for (size_t i = 0; i < req->n_media; i++)
        if (!req->media[i].data || !req->media[i].size || req->media[i].path) __builtin_trap();
    for (size_t i = 0; i < o->n_stop; i++)
        if (!o->stop[i] || !o->stop[i][0]) __builtin_trap();
    if (o->json < 0 || o->json > GEMMA4C_JSON_AFTER_THOUGHT || (o->json == GEMMA4C_JSON_AFTER_THOUGHT && !req->enable_thinking))
        __builtin_trap();
    if (o->json_schema && (!o->json || o->json_schema != req->json_schema)) __builtin_trap();
    if (o->json_schema) { /* a printed object, which the engine compiles or refuses with one line */
        g4_err e = {0};
        g4_schema *sc = g4_schema_compile(o->json_schema, strlen(o->json_schema), &e);
        if (!sc && (strncmp(e.msg, "json_schema: ", 13) || strchr(e.msg, '\n'))) __builtin_trap();
        g4_schema_free(sc);
    }
    if (req->n_bias > OAI_MAX_LOGIT_BIAS || (req->n_bias != 0) != (o->on_logits != NULL)) __builtin_trap();
    for (size_t i = 0; i < req->n_bias; i++) {
        if (req->bias_ids[i] < 0 || req->bias_ids[i] >= vocab || !(fabsf(req->bias[i]) <= 100)) __builtin_trap();
        for (size_t k = 0; k < i; k++)
            if (req->bias_ids[k] == req->bias_ids[i]) __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *body = cJSON_ParseWithLength((const char *)data, size);
    if (!body) return 0;
    oai_request req;
    char err[512] = "";
    const char *param = NULL;
    const oai_limits limits = {.vocab_size = vocab};
    if (oai_parse_chat_request(body, &defaults, &limits, &req, err, sizeof err, &param) != 0) {
        /* Refused: the field and why, on one line, and nothing left allocated once freed. */
        if (!param || !one_line(err) || !strstr(err, param)) __builtin_trap();
        oai_request_free(&req);
        cJSON_Delete(body);
        return 0;
    }
    check_request(&req);

    const size_t n_media = req.n_media;
    gemma4c_input in = {.messages_json = req.messages_json, .tools_json = req.tools_json,
                        .enable_thinking = req.enable_thinking, .media = req.media, .n_media = n_media};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = gemma4c_input_ids(model, &in, &ids, &n_ids, err, sizeof err);
    if (rc) {
        if (!one_line(err) || ids) __builtin_trap();
    } else {
        if (!ids || !n_ids) __builtin_trap();
        for (size_t i = 0; i < n_ids; i++)
            if (ids[i] < 0 || ids[i] >= vocab) __builtin_trap();
    }
    /* Without media the ids are the tokens of the rendered chat. */
    char *text = NULL;
    const int rrc =
        gemma4c_render_chat(model, req.messages_json, req.tools_json, req.enable_thinking, &text, err, sizeof err);
    if (rrc && !one_line(err)) __builtin_trap();
    if (n_media == 0) {
        if ((rrc == 0) != (rc == 0)) __builtin_trap();
        if (rrc == 0) {
            size_t n = 0;
            if (gemma4c_tokenize(model, text, strlen(text), 0, NULL, 0, &n, err, sizeof err) || n != n_ids)
                __builtin_trap();
            int32_t *again = malloc((n ? n : 1) * sizeof *again);
            if (!again || gemma4c_tokenize(model, text, strlen(text), 0, again, n, &n, err, sizeof err) ||
                memcmp(again, ids, n * sizeof *again))
                __builtin_trap();
            free(again);
        }
    }
    gemma4c_free(text);
    gemma4c_free(ids);
    oai_request_free(&req);
    cJSON_Delete(body);
    return 0;
}
