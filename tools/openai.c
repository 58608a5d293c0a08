/* openai.c — OpenAI chat-completion requests parsed into gemma4c inputs and options; results written back. */
#include "openai.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int bad(char *err, size_t err_len, const char **param, const char *name, const char *what) {
    snprintf(err, err_len, "'%s' %s", name, what);
    if (param) *param = name;
    return GEMMA4C_ERR_ARG;
}

/* A number field within [lo, hi]; absent or null leaves *out alone. */
static int number(const cJSON *body, const char *name, double lo, double hi, double *out, char *err, size_t err_len,
                  const char **param) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return bad(err, err_len, param, name, "must be a number");
    if (!(v->valuedouble >= lo && v->valuedouble <= hi)) {
        char what[96];
        snprintf(what, sizeof what, "must be between %g and %g", lo, hi);
        return bad(err, err_len, param, name, what);
    }
    *out = v->valuedouble;
    return 0;
}

static int integer(const cJSON *body, const char *name, double lo, double hi, int64_t *out, char *err, size_t err_len,
                   const char **param) {
    double d = (double)*out;
    int rc = number(body, name, lo, hi, &d, err, err_len, param);
    if (rc) return rc;
    if (d != floor(d)) return bad(err, err_len, param, name, "must be an integer");
    *out = (int64_t)d;
    return 0;
}

void oai_request_free(oai_request *req) {
    cJSON_free(req->messages_json);
    cJSON_free(req->tools_json);
    for (int i = 0; i < OAI_MAX_STOP; i++) free(req->stops[i]);
    memset(req, 0, sizeof *req);
}

int oai_parse_chat_request(const cJSON *body, const gemma4c_sampling *defaults, oai_request *req, char *err,
                           size_t err_len, const char **param) {
    memset(req, 0, sizeof *req);
    if (param) *param = NULL;
    if (!cJSON_IsObject(body)) return bad(err, err_len, param, "body", "must be a JSON object");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0)
        return bad(err, err_len, param, "messages", "must be a non-empty array");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (model && !cJSON_IsNull(model) && !cJSON_IsString(model)) return bad(err, err_len, param, "model", "must be a string");
    req->model = cJSON_IsString(model) ? model->valuestring : NULL;
    gemma4c_generate_options *o = &req->options;
    o->sampling = *defaults;
    gemma4c_sampling *s = &o->sampling;
    double temperature = s->temperature, top_p = s->top_p, min_p = s->min_p, presence = 0, frequency = 0,
           repetition = s->repetition_penalty;
    int64_t max_tokens = 0, top_k = s->top_k, seed = (int64_t)(s->seed & 0x7fffffffffffffffull), n = 1, top_logprobs = 0;
    int rc;
    if ((rc = number(body, "temperature", 0, 2, &temperature, err, err_len, param)) ||
        (rc = number(body, "top_p", 0, 1, &top_p, err, err_len, param)) ||
        (rc = number(body, "min_p", 0, 1, &min_p, err, err_len, param)) ||
        (rc = number(body, "presence_penalty", -2, 2, &presence, err, err_len, param)) ||
        (rc = number(body, "frequency_penalty", -2, 2, &frequency, err, err_len, param)) ||
        (rc = number(body, "repetition_penalty", 0, 10, &repetition, err, err_len, param)) ||
        (rc = integer(body, "max_tokens", 1, 1 << 30, &max_tokens, err, err_len, param)) ||
        (rc = integer(body, "max_completion_tokens", 1, 1 << 30, &max_tokens, err, err_len, param)) ||
        (rc = integer(body, "top_k", 0, 1 << 30, &top_k, err, err_len, param)) ||
        (rc = integer(body, "seed", -9.2e18, 9.2e18, &seed, err, err_len, param)) ||
        (rc = integer(body, "n", 1, 128, &n, err, err_len, param)) ||
        (rc = integer(body, "top_logprobs", 0, GEMMA4C_MAX_TOP_LOGPROBS, &top_logprobs, err, err_len, param)))
        return rc;
    if (n != 1) return bad(err, err_len, param, "n", "must be 1: one choice per request");
    s->temperature = (float)temperature, s->top_p = (float)top_p, s->min_p = (float)min_p;
    s->presence_penalty = (float)presence, s->frequency_penalty = (float)frequency;
    s->repetition_penalty = (float)repetition, s->top_k = (int)top_k, s->seed = (uint64_t)seed;
    o->max_tokens = (int)max_tokens;
    const cJSON *logprobs = cJSON_GetObjectItemCaseSensitive(body, "logprobs");
    if (logprobs && !cJSON_IsNull(logprobs) && !cJSON_IsBool(logprobs)) return bad(err, err_len, param, "logprobs", "must be a boolean");
    o->logprobs = cJSON_IsTrue(logprobs);
    if (top_logprobs && !o->logprobs) return bad(err, err_len, param, "top_logprobs", "needs logprobs true");
    o->top_logprobs = (int)top_logprobs;
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(body, "stop");
    if (cJSON_IsString(stop)) {
        if (!*stop->valuestring) return bad(err, err_len, param, "stop", "must not be empty");
        req->stops[o->n_stop++] = strdup(stop->valuestring);
    } else if (cJSON_IsArray(stop)) {
        const cJSON *one;
        if (cJSON_GetArraySize(stop) > OAI_MAX_STOP) return bad(err, err_len, param, "stop", "takes at most 4 strings");
        cJSON_ArrayForEach(one, stop) {
            if (!cJSON_IsString(one) || !*one->valuestring) return bad(err, err_len, param, "stop", "must hold non-empty strings");
            req->stops[o->n_stop++] = strdup(one->valuestring);
        }
    } else if (stop && !cJSON_IsNull(stop))
        return bad(err, err_len, param, "stop", "must be a string or an array of strings");
    for (size_t i = 0; i < o->n_stop; i++)
        if (!req->stops[i]) return bad(err, err_len, param, "stop", "could not be copied (out of memory)");
    o->stop = (const char *const *)req->stops;
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(body, "stream");
    if (cJSON_IsTrue(stream)) return bad(err, err_len, param, "stream", "is not available here");
    /* thinking: reasoning_effort "none" is off, anything else on; chat_template_kwargs.enable_thinking likewise */
    const cJSON *effort = cJSON_GetObjectItemCaseSensitive(body, "reasoning_effort");
    if (effort && !cJSON_IsNull(effort) && !cJSON_IsString(effort)) return bad(err, err_len, param, "reasoning_effort", "must be a string");
    if (cJSON_IsString(effort)) req->enable_thinking = strcmp(effort->valuestring, "none") != 0;
    const cJSON *kwargs = cJSON_GetObjectItemCaseSensitive(body, "chat_template_kwargs");
    const cJSON *think = cJSON_GetObjectItemCaseSensitive(kwargs, "enable_thinking");
    if (think && !cJSON_IsBool(think)) return bad(err, err_len, param, "chat_template_kwargs.enable_thinking", "must be a boolean");
    if (think) req->enable_thinking = cJSON_IsTrue(think);
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(body, "tools");
    if (tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools)) return bad(err, err_len, param, "tools", "must be an array");
    if (cJSON_IsArray(tools) && cJSON_GetArraySize(tools) && !(req->tools_json = cJSON_PrintUnformatted(tools)))
        return bad(err, err_len, param, "tools", "could not be copied (out of memory)");
    if (!(req->messages_json = cJSON_PrintUnformatted(messages)))
        return bad(err, err_len, param, "messages", "could not be copied (out of memory)");
    return 0;
}

static int grow(oai_collector *c, size_t extra) {
    if (c->len + extra + 1 <= c->cap) return 0;
    size_t cap = (c->len + extra + 1) * 2;
    char *t = realloc(c->text, cap);
    if (!t) return -1;
    c->text = t;
    c->cap = cap;
    return 0;
}

/* The length of the whole, valid UTF-8 character at s (at most `left` bytes), or 0 when there is none there. */
static size_t utf8_char(const unsigned char *s, size_t left) {
    const size_t n = s[0] < 0x80                    ? 1
                     : s[0] >= 0xC2 && s[0] <= 0xDF ? 2
                     : (s[0] & 0xF0) == 0xE0        ? 3
                     : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                                    : 0;
    if (!n || n > left) return 0;
    for (size_t k = 1; k < n; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0) || (s[0] == 0xF0 && s[1] < 0x90) ||
        (s[0] == 0xF4 && s[1] >= 0x90))
        return 0; /* overlong forms, surrogates, beyond U+10FFFF */
    return n;
}

/* A token's bytes as JSON text, which must be UTF-8: a byte that starts no whole character (a byte-fallback token
 * holding part of one) becomes U+FFFD; "bytes" keeps the exact bytes. out holds 3 * len + 1 bytes. */
static void utf8_text(const char *piece, size_t len, char *out) {
    const unsigned char *s = (const unsigned char *)piece;
    size_t o = 0;
    for (size_t i = 0, n; i < len; i += n ? n : 1) {
        if ((n = utf8_char(s + i, len - i))) memcpy(out + o, s + i, n), o += n;
        else memcpy(out + o, "\xEF\xBF\xBD", 3), o += 3;
    }
    out[o] = '\0';
}

/* {"token", "logprob", "bytes"} for one id. */
static cJSON *logprob_entry(const gemma4c_model *m, int32_t id, const char *piece, size_t len, float logprob) {
    char buf[256];
    size_t n = 0;
    if (!piece && gemma4c_token_to_piece(m, id, buf, sizeof buf, &n, NULL, 0) == 0) piece = buf, len = n < sizeof buf ? n : sizeof buf - 1;
    cJSON *e = cJSON_CreateObject(), *bytes = cJSON_CreateArray();
    char *token = malloc(3 * len + 1);
    if (token) utf8_text(piece ? piece : "", piece ? len : 0, token);
    cJSON_AddStringToObject(e, "token", token ? token : "");
    cJSON_AddNumberToObject(e, "logprob", logprob);
    for (size_t i = 0; i < len; i++) cJSON_AddItemToArray(bytes, cJSON_CreateNumber((unsigned char)piece[i]));
    cJSON_AddItemToObject(e, "bytes", bytes);
    free(token);
    return e;
}

int oai_collect_token(void *collector, const gemma4c_token *t) {
    oai_collector *c = collector;
    if (grow(c, t->text_len)) return c->failed = 1;
    memcpy(c->text + c->len, t->text, t->text_len);
    c->len += t->text_len;
    c->text[c->len] = '\0';
    if (c->logprobs && t->id >= 0) {
        cJSON *e = logprob_entry(c->model, t->id, t->piece, t->piece_len, t->logprob), *top = cJSON_CreateArray();
        for (int i = 0; i < t->n_top; i++)
            cJSON_AddItemToArray(top, logprob_entry(c->model, t->top[i].id, NULL, 0, t->top[i].logprob));
        cJSON_AddItemToObject(e, "top_logprobs", top);
        cJSON_AddItemToArray(c->logprobs, e);
    }
    return 0;
}

void oai_collector_free(oai_collector *c) {
    free(c->text);
    cJSON_Delete(c->logprobs);
    memset(c, 0, sizeof *c);
}

cJSON *oai_chat_completion(const char *id, const char *model, const oai_collector *c, const gemma4c_result *r) {
    cJSON *o = cJSON_CreateObject(), *choices = cJSON_CreateArray(), *choice = cJSON_CreateObject();
    cJSON *msg = cJSON_CreateObject(), *usage = cJSON_CreateObject(), *details = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "chat.completion");
    cJSON_AddNumberToObject(o, "created", (double)time(NULL));
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddNumberToObject(choice, "index", 0);
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddStringToObject(msg, "content", c->text ? c->text : "");
    cJSON_AddItemToObject(choice, "message", msg);
    if (c->logprobs) {
        cJSON *lp = cJSON_CreateObject();
        cJSON_AddItemToObject(lp, "content", cJSON_Duplicate(c->logprobs, 1));
        cJSON_AddItemToObject(choice, "logprobs", lp);
    } else
        cJSON_AddNullToObject(choice, "logprobs");
    const int length = r->stop_reason == GEMMA4C_STOP_LENGTH || r->stop_reason == GEMMA4C_STOP_CONTEXT;
    cJSON_AddStringToObject(choice, "finish_reason", length ? "length" : "stop");
    cJSON_AddItemToArray(choices, choice);
    cJSON_AddItemToObject(o, "choices", choices);
    cJSON_AddNumberToObject(usage, "prompt_tokens", (double)r->prompt_tokens);
    cJSON_AddNumberToObject(usage, "completion_tokens", (double)r->generated_tokens);
    cJSON_AddNumberToObject(usage, "total_tokens", (double)(r->prompt_tokens + r->generated_tokens));
    cJSON_AddNumberToObject(details, "cached_tokens", (double)r->cached_tokens);
    cJSON_AddItemToObject(usage, "prompt_tokens_details", details);
    cJSON_AddItemToObject(o, "usage", usage);
    return o;
}

cJSON *oai_error(const char *message, const char *type, const char *param, const char *code) {
    cJSON *o = cJSON_CreateObject(), *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    if (code) cJSON_AddStringToObject(e, "code", code);
    else cJSON_AddNullToObject(e, "code");
    cJSON_AddItemToObject(o, "error", e);
    return o;
}
