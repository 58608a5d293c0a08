/* openai.c — OpenAI chat-completion requests parsed into gemma4c inputs and options; results written back. */
#include "openai.h"

#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
        snprintf(what, sizeof what, "must be between %.10g and %.10g", lo, hi); /* integers in full */
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
    cJSON_free(req->json_schema);
    free(req->prompt);
    for (size_t i = 0; i < req->n_media; i++) free(req->media_bytes[i]);
    for (size_t i = 0; i < sizeof req->stops / sizeof *req->stops; i++) free(req->stops[i]); /* the tools' one too */
    free(req->bias_ids);
    free(req->bias);
    memset(req, 0, sizeof *req);
}

/* ---- media parts: image_url, input_audio, video_url -> {"type": kind} plus the medium's bytes ---- */

static int base64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Standard or URL-safe base64, padding optional, line breaks skipped. NULL when malformed. */
static unsigned char *base64_decode(const char *s, size_t len, size_t *out_len) {
    unsigned char *out = malloc(len / 4 * 3 + 3);
    if (!out) return NULL;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n') continue;
        if (c == '=') {
            pad++;
            continue;
        }
        const int v = base64_value(c);
        if (v < 0 || pad) { /* not base64, or data after the padding */
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        if ((bits += 6) >= 8) out[n++] = (unsigned char)(acc >> (bits -= 8));
    }
    if (bits >= 6 || pad > 2) { /* a lone sixth of a byte is no byte */
        free(out);
        return NULL;
    }
    *out_len = n;
    return out;
}

static int hex(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A file:// URL's file, read only when it lies inside the media directory (symbolic links resolved first). */
static unsigned char *read_media_file(const char *url, const oai_limits *limits, size_t *size, char *why, size_t why_len) {
    if (!limits || !limits->media_dir) {
        snprintf(why, why_len, "file:// URLs are refused (the server was started without --media-dir)");
        return NULL;
    }
    char path[4096], real[PATH_MAX], dir[PATH_MAX];
    size_t n = 0;
    for (const char *p = url + 7; *p; p++) { /* percent-decoded */
        char c = *p;
        if (c == '%' && hex(p[1]) >= 0 && hex(p[2]) >= 0) c = (char)(hex(p[1]) * 16 + hex(p[2])), p += 2;
        if (!c || n + 1 >= sizeof path) {
            snprintf(why, why_len, "the file:// URL is not a usable path");
            return NULL;
        }
        path[n++] = c;
    }
    path[n] = '\0';
    if (path[0] != '/' || !realpath(limits->media_dir, dir) || !realpath(path, real)) {
        snprintf(why, why_len, "no such file in the media directory");
        return NULL;
    }
    const size_t dn = strlen(dir);
    if (strncmp(real, dir, dn) || (real[dn] != '/' && strcmp(dir, "/"))) {
        snprintf(why, why_len, "the file is outside the media directory");
        return NULL;
    }
    const int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    unsigned char *data = NULL;
    if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) snprintf(why, why_len, "the file cannot be read");
    else if ((uint64_t)st.st_size > limits->max_media_bytes || st.st_size == 0)
        snprintf(why, why_len, "the file is empty or larger than %zu bytes", limits->max_media_bytes);
    else if ((data = malloc((size_t)st.st_size))) {
        size_t got = 0;
        ssize_t r;
        while (got < (size_t)st.st_size && (r = read(fd, data + got, (size_t)st.st_size - got)) > 0) got += (size_t)r;
        if (got != (size_t)st.st_size) {
            free(data);
            data = NULL;
            snprintf(why, why_len, "the file cannot be read");
        }
        *size = got;
    } else
        snprintf(why, why_len, "out of memory");
    if (fd >= 0) close(fd);
    return data;
}

/* The bytes a media URL stands for: data: (base64) or file:// inside the media directory; never the network. */
static unsigned char *media_bytes(const char *url, const oai_limits *limits, size_t *size, char *why, size_t why_len) {
    if (!strncmp(url, "data:", 5)) {
        const char *comma = strchr(url, ',');
        if (!comma || comma - url < 12 || strncmp(comma - 7, ";base64", 7)) {
            snprintf(why, why_len, "a data: URL must be base64 (data:TYPE;base64,...)");
            return NULL;
        }
        unsigned char *data = base64_decode(comma + 1, strlen(comma + 1), size);
        if (!data || !*size) {
            free(data);
            snprintf(why, why_len, "the data: URL's base64 is malformed or empty");
            return NULL;
        }
        return data;
    }
    if (!strncmp(url, "file://", 7)) return read_media_file(url, limits, size, why, why_len);
    if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8))
        snprintf(why, why_len, "the server does not fetch URLs: send the bytes as a data: URL");
    else
        snprintf(why, why_len, "must be a data: or file:// URL");
    return NULL;
}

/* The URL of a part's field: a string, or an object's "url". */
static const char *part_url(const cJSON *field) {
    if (cJSON_IsString(field)) return field->valuestring;
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(field, "url");
    return cJSON_IsString(url) ? url->valuestring : NULL;
}

static int take_media(cJSON *messages, const oai_limits *limits, oai_request *req, char *err, size_t err_len,
                      const char **param) {
    cJSON *msg;
    int mi = 0;
    cJSON_ArrayForEach(msg, messages) {
        cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        cJSON *part;
        int pi = 0;
        cJSON_ArrayForEach(part, (cJSON_IsArray(content) ? content : NULL)) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
            const char *t = cJSON_IsString(type) ? type->valuestring : "";
            int kind = 0;
            const char *url = NULL, *field = t;
            char what[160] = "";
            if (!strcmp(t, "image_url") || !strcmp(t, "image")) {
                kind = GEMMA4C_MEDIA_IMAGE;
                url = part_url(cJSON_GetObjectItemCaseSensitive(part, "image_url"));
                if (!url) url = part_url(cJSON_GetObjectItemCaseSensitive(part, "url"));
            } else if (!strcmp(t, "video_url") || !strcmp(t, "video")) {
                kind = GEMMA4C_MEDIA_VIDEO;
                url = part_url(cJSON_GetObjectItemCaseSensitive(part, "video_url"));
                if (!url) url = part_url(cJSON_GetObjectItemCaseSensitive(part, "url"));
            } else if (!strcmp(t, "input_audio") || !strcmp(t, "audio")) {
                kind = GEMMA4C_MEDIA_AUDIO;
                const cJSON *audio = cJSON_GetObjectItemCaseSensitive(part, "input_audio");
                const cJSON *data = cJSON_GetObjectItemCaseSensitive(audio, "data");
                url = cJSON_IsString(data) ? data->valuestring : part_url(cJSON_GetObjectItemCaseSensitive(part, "url"));
                field = "input_audio";
            }
            if (kind) {
                snprintf(req->param_buf, sizeof req->param_buf, "messages[%d].content[%d].%s", mi, pi, field);
                if (cJSON_IsString(role) && (!strcmp(role->valuestring, "system") || !strcmp(role->valuestring, "developer")))
                    return bad(err, err_len, param, req->param_buf, "is media in a system message (put it in a user message)");
                if (!url) return bad(err, err_len, param, req->param_buf, "needs the medium (a data: or file:// URL, or base64 data)");
                if (req->n_media == OAI_MAX_MEDIA) return bad(err, err_len, param, req->param_buf, "is one medium too many");
                size_t size = 0;
                unsigned char *bytes = NULL;
                if (kind == GEMMA4C_MEDIA_AUDIO && strncmp(url, "data:", 5) && strncmp(url, "file://", 7)) {
                    bytes = base64_decode(url, strlen(url), &size); /* input_audio.data is plain base64 */
                    if (!bytes || !size) free(bytes), bytes = NULL, snprintf(what, sizeof what, "is not base64 audio");
                } else
                    bytes = media_bytes(url, limits, &size, what, sizeof what);
                if (!bytes) return bad(err, err_len, param, req->param_buf, what);
                req->media_bytes[req->n_media] = bytes;
                req->media[req->n_media++] = (gemma4c_media){kind, NULL, bytes, size, 0};
                /* the template counts {"type": kind} parts */
                cJSON *plain = cJSON_CreateObject();
                cJSON_AddStringToObject(plain, "type", kind == GEMMA4C_MEDIA_IMAGE ? "image" : kind == GEMMA4C_MEDIA_AUDIO ? "audio" : "video");
                if (!plain || !cJSON_ReplaceItemViaPointer(content, part, plain))
                    return bad(err, err_len, param, req->param_buf, "could not be copied (out of memory)");
                part = plain;
            }
            pi++;
        }
        mi++;
    }
    return 0;
}

static int parse_tool_choice(const cJSON *body, const cJSON *tools, oai_request *req, char *err, size_t err_len,
                             const char **param) {
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(body, "tool_choice");
    req->tool_choice = OAI_TOOLS_AUTO;
    if (!choice || cJSON_IsNull(choice)) return 0;
    const int have = cJSON_IsArray(tools) && cJSON_GetArraySize(tools) > 0;
    if (cJSON_IsString(choice)) {
        const char *c = choice->valuestring;
        if (!strcmp(c, "none")) req->tool_choice = OAI_TOOLS_NONE;
        else if (!strcmp(c, "required")) req->tool_choice = OAI_TOOLS_REQUIRED;
        else if (strcmp(c, "auto")) return bad(err, err_len, param, "tool_choice", "must be none, auto, required or a function");
    } else if (cJSON_IsObject(choice)) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(choice, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsString(name) || !*name->valuestring || strlen(name->valuestring) >= sizeof req->tool_name)
            return bad(err, err_len, param, "tool_choice", "must name a function ({\"type\": \"function\", \"function\": {\"name\"}})");
        int found = 0;
        const cJSON *tool;
        cJSON_ArrayForEach(tool, (have ? tools : NULL)) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tool, "function"), "name");
            found |= cJSON_IsString(n) && !strcmp(n->valuestring, name->valuestring);
        }
        if (!found) return bad(err, err_len, param, "tool_choice", "names a function that is not in tools");
        for (const char *p = name->valuestring; *p; p++)
            if (!isalnum((unsigned char)*p) && !strchr("_-.", *p))
                return bad(err, err_len, param, "tool_choice", "names a function with characters outside [A-Za-z0-9_.-]");
        req->tool_choice = OAI_TOOLS_FUNCTION;
        strcpy(req->tool_name, name->valuestring);
    } else
        return bad(err, err_len, param, "tool_choice", "must be a string or an object");
    if (req->tool_choice >= OAI_TOOLS_REQUIRED && !have) return bad(err, err_len, param, "tool_choice", "needs tools");
    return 0;
}

/* The generation's on_logits: OpenAI's rule, the bias added to the logits before sampling. */
static int add_logit_bias(void *user, float *logits, int vocab_size) {
    const oai_request *req = user;
    for (size_t i = 0; i < req->n_bias; i++)
        if (req->bias_ids[i] < vocab_size) logits[req->bias_ids[i]] += req->bias[i];
    return 0;
}

/* logit_bias: {"token id": bias in [-100, 100], ...}; a token named twice keeps its last bias, as a JSON object
 * read into a map would. */
static int parse_logit_bias(const cJSON *body, const oai_limits *limits, oai_request *req, char *err, size_t err_len,
                            const char **param) {
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(body, "logit_bias"), *e;
    if (!map || cJSON_IsNull(map)) return 0;
    if (!cJSON_IsObject(map)) return bad(err, err_len, param, "logit_bias", "must be an object of token ids to numbers");
    const int n = cJSON_GetArraySize(map);
    if (n > OAI_MAX_LOGIT_BIAS) return bad(err, err_len, param, "logit_bias", "takes at most 1024 tokens");
    if (!n) return 0;
    req->bias_ids = malloc((size_t)n * sizeof *req->bias_ids), req->bias = malloc((size_t)n * sizeof *req->bias);
    if (!req->bias_ids || !req->bias) return bad(err, err_len, param, "logit_bias", "could not be copied (out of memory)");
    const long limit = limits && limits->vocab_size > 0 ? limits->vocab_size : INT32_MAX;
    cJSON_ArrayForEach(e, map) {
        const char *key = e->string;
        long id = -1;
        if (key && key[0] >= '0' && key[0] <= '9' && strlen(key) <= 10) {
            char *end;
            id = strtol(key, &end, 10);
            if (*end) id = -1;
        }
        if (id < 0 || id >= limit) {
            char what[96], shown[25] = ""; /* the key as printable ASCII: the message stays one clean line */
            for (size_t i = 0; key && key[i] && i < 24; i++)
                shown[i] = key[i] >= 0x20 && key[i] < 0x7f ? key[i] : '?', shown[i + 1] = 0;
            snprintf(what, sizeof what, "names '%s%s', not a token id below %ld", shown,
                     key && strlen(key) > 24 ? "..." : "", limit);
            return bad(err, err_len, param, "logit_bias", what);
        }
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= -100 && e->valuedouble <= 100))
            return bad(err, err_len, param, "logit_bias", "values must be numbers between -100 and 100");
        size_t at = 0;
        while (at < req->n_bias && req->bias_ids[at] != (int32_t)id) at++;
        if (at == req->n_bias) req->n_bias++;
        req->bias_ids[at] = (int32_t)id, req->bias[at] = (float)e->valuedouble;
    }
    req->options.on_logits = add_logit_bias;
    req->options.logits_user = req;
    return 0;
}

/* response_format: "text" (the default), "json_object" (options.json) or "json_schema" (options.json and
 * options.json_schema: the engine compiles the schema when the request is submitted, and refuses what it cannot
 * enforce). */
static int parse_response_format(const cJSON *body, oai_request *req, char *err, size_t err_len, const char **param) {
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(body, "response_format");
    if (!format || cJSON_IsNull(format)) return 0;
    if (!cJSON_IsObject(format)) return bad(err, err_len, param, "response_format", "must be an object");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(format, "type");
    if (!cJSON_IsString(type)) return bad(err, err_len, param, "response_format.type", "must be a string");
    if (!strcmp(type->valuestring, "text")) return 0;
    if (!strcmp(type->valuestring, "json_object")) return req->options.json = 1, 0;
    if (strcmp(type->valuestring, "json_schema"))
        return bad(err, err_len, param, "response_format.type", "must be text, json_object or json_schema");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(format, "json_schema");
    if (!cJSON_IsObject(spec)) return bad(err, err_len, param, "response_format.json_schema", "must be an object");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(spec, "name");
    if (name && !cJSON_IsString(name)) return bad(err, err_len, param, "response_format.json_schema.name", "must be a string");
    const cJSON *strict = cJSON_GetObjectItemCaseSensitive(spec, "strict");
    if (strict && !cJSON_IsNull(strict) && !cJSON_IsBool(strict))
        return bad(err, err_len, param, "response_format.json_schema.strict", "must be a boolean");
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(spec, "schema");
    if (schema && !cJSON_IsNull(schema) && !cJSON_IsObject(schema))
        return bad(err, err_len, param, "response_format.json_schema.schema", "must be an object");
    req->options.json = 1;
    if (cJSON_IsObject(schema) && !(req->json_schema = cJSON_PrintUnformatted(schema)))
        return bad(err, err_len, param, "response_format.json_schema.schema", "could not be copied (out of memory)");
    req->options.json_schema = req->json_schema;
    return 0;
}

/* The fields chat and text completions share: sampling, limits, stops, logprobs, streaming. */
static int parse_common(const cJSON *body, const gemma4c_sampling *defaults, const oai_limits *limits,
                        oai_request *req, char *err, size_t err_len, const char **param) {
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
        (rc = integer(body, "n", 1, 128, &n, err, err_len, param)))
        return rc;
    if (n != 1) return bad(err, err_len, param, "n", "must be 1: one choice per request");
    if ((rc = parse_logit_bias(body, limits, req, err, err_len, param)) ||
        (rc = parse_response_format(body, req, err, err_len, param)))
        return rc;
    s->temperature = (float)temperature, s->top_p = (float)top_p, s->min_p = (float)min_p;
    s->presence_penalty = (float)presence, s->frequency_penalty = (float)frequency;
    s->repetition_penalty = (float)repetition, s->top_k = (int)top_k, s->seed = (uint64_t)seed;
    o->max_tokens = (int)max_tokens;
    /* chat: logprobs is a boolean and top_logprobs a count; completions: logprobs is the count */
    const cJSON *logprobs = cJSON_GetObjectItemCaseSensitive(body, "logprobs");
    if (cJSON_IsNumber(logprobs) && req->completion) {
        if ((rc = integer(body, "logprobs", 0, GEMMA4C_MAX_TOP_LOGPROBS, &top_logprobs, err, err_len, param))) return rc;
        o->logprobs = 1;
    } else {
        if (logprobs && !cJSON_IsNull(logprobs) && !cJSON_IsBool(logprobs))
            return bad(err, err_len, param, "logprobs", "must be a boolean");
        o->logprobs = cJSON_IsTrue(logprobs);
        if ((rc = integer(body, "top_logprobs", 0, GEMMA4C_MAX_TOP_LOGPROBS, &top_logprobs, err, err_len, param)))
            return rc;
        if (top_logprobs && !o->logprobs) return bad(err, err_len, param, "top_logprobs", "needs logprobs true");
    }
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
    if (stream && !cJSON_IsNull(stream) && !cJSON_IsBool(stream)) return bad(err, err_len, param, "stream", "must be a boolean");
    req->stream = cJSON_IsTrue(stream);
    const cJSON *stream_options = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    if (stream_options && !cJSON_IsNull(stream_options) && !cJSON_IsObject(stream_options))
        return bad(err, err_len, param, "stream_options", "must be an object");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(stream_options, "include_usage");
    if (usage && !cJSON_IsNull(usage) && !cJSON_IsBool(usage))
        return bad(err, err_len, param, "stream_options.include_usage", "must be a boolean");
    req->include_usage = cJSON_IsTrue(usage);
    return 0;
}

int oai_parse_chat_request(const cJSON *body, const gemma4c_sampling *defaults, const oai_limits *limits,
                           oai_request *req, char *err, size_t err_len, const char **param) {
    memset(req, 0, sizeof *req);
    if (param) *param = NULL;
    if (!cJSON_IsObject(body)) return bad(err, err_len, param, "body", "must be a JSON object");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0)
        return bad(err, err_len, param, "messages", "must be a non-empty array");
    int rc = parse_common(body, defaults, limits, req, err, err_len, param);
    if (rc) return rc;
    /* thinking: reasoning_effort "none" is off, anything else on; chat_template_kwargs.enable_thinking likewise */
    const cJSON *effort = cJSON_GetObjectItemCaseSensitive(body, "reasoning_effort");
    if (effort && !cJSON_IsNull(effort) && !cJSON_IsString(effort)) return bad(err, err_len, param, "reasoning_effort", "must be a string");
    if (cJSON_IsString(effort)) req->enable_thinking = strcmp(effort->valuestring, "none") != 0;
    const cJSON *kwargs = cJSON_GetObjectItemCaseSensitive(body, "chat_template_kwargs");
    if (kwargs && !cJSON_IsNull(kwargs) && !cJSON_IsObject(kwargs))
        return bad(err, err_len, param, "chat_template_kwargs", "must be an object");
    const cJSON *think = cJSON_GetObjectItemCaseSensitive(kwargs, "enable_thinking");
    if (think && !cJSON_IsBool(think)) return bad(err, err_len, param, "chat_template_kwargs.enable_thinking", "must be a boolean");
    if (think) req->enable_thinking = cJSON_IsTrue(think);
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(body, "tools");
    if (tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools)) return bad(err, err_len, param, "tools", "must be an array");
    if ((rc = parse_tool_choice(body, tools, req, err, err_len, param))) return rc;
    /* JSON mode never chooses a control token, so it cannot open the tool call these demand */
    if (req->options.json && req->tool_choice >= OAI_TOOLS_REQUIRED)
        return bad(err, err_len, param, "response_format", "JSON output cannot be combined with a tool_choice that demands a call");
    if (req->options.json && req->enable_thinking) req->options.json = GEMMA4C_JSON_AFTER_THOUGHT;
    if (cJSON_IsArray(tools) && cJSON_GetArraySize(tools) && req->tool_choice != OAI_TOOLS_NONE &&
        !(req->tools_json = cJSON_PrintUnformatted(tools)))
        return bad(err, err_len, param, "tools", "could not be copied (out of memory)");
    cJSON *copy = cJSON_Duplicate(messages, 1);
    if (!copy) return bad(err, err_len, param, "messages", "could not be copied (out of memory)");
    rc = take_media(copy, limits, req, err, err_len, param);
    if (!rc && !(req->messages_json = cJSON_PrintUnformatted(copy)))
        rc = bad(err, err_len, param, "messages", "could not be copied (out of memory)");
    cJSON_Delete(copy);
    /* The reply parser reads the model's markers (thought channel, tool calls) in the text; a turn of tool calls
     * ends where the model waits for their results. */
    req->options.keep_special = GEMMA4C_KEEP_MARKERS;
    if (!rc && req->tools_json && !(req->stops[req->options.n_stop++] = strdup(REPLY_AWAIT_RESPONSE)))
        rc = bad(err, err_len, param, "tools", "could not be copied (out of memory)");
    return rc;
}

int oai_parse_completion_request(const cJSON *body, const gemma4c_sampling *defaults, const oai_limits *limits,
                                 oai_request *req, char *err, size_t err_len, const char **param) {
    memset(req, 0, sizeof *req);
    if (param) *param = NULL;
    req->completion = 1;
    if (!cJSON_IsObject(body)) return bad(err, err_len, param, "body", "must be a JSON object");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (cJSON_IsArray(prompt) && cJSON_GetArraySize(prompt) == 1) prompt = cJSON_GetArrayItem(prompt, 0);
    if (!cJSON_IsString(prompt)) return bad(err, err_len, param, "prompt", "must be a string (or an array of one)");
    int rc = parse_common(body, defaults, limits, req, err, err_len, param);
    if (rc) return rc;
    if (!(req->prompt = strdup(prompt->valuestring)))
        return bad(err, err_len, param, "prompt", "could not be copied (out of memory)");
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

int oai_valid_utf8(const char *s) {
    const size_t len = strlen(s);
    for (size_t i = 0, n; i < len; i += n)
        if (!(n = utf8_char((const unsigned char *)s + i, len - i))) return 0;
    return 1;
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

static int on_part(void *user, int part, const char *text, size_t len, const char *arguments) {
    oai_reply *r = user;
    cJSON *call = NULL;
    if (part == REPLY_TOOL_CALL) {
        char id[96], *name = strndup(text, len);
        const int index = r->tool_calls ? cJSON_GetArraySize(r->tool_calls) : 0;
        snprintf(id, sizeof id, "%s_%d", r->call_prefix, index);
        if (!r->tool_calls) r->tool_calls = cJSON_CreateArray();
        call = cJSON_CreateObject();
        cJSON *fn = cJSON_CreateObject();
        cJSON_AddStringToObject(call, "id", id);
        cJSON_AddStringToObject(call, "type", "function");
        cJSON_AddStringToObject(fn, "name", name ? name : "");
        cJSON_AddStringToObject(fn, "arguments", arguments);
        cJSON_AddItemToObject(call, "function", fn);
        cJSON_AddItemToArray(r->tool_calls, call);
        free(name);
        if (!r->tool_calls || !name) return r->failed = 1;
    } else if (reply_text_append(part == REPLY_REASONING ? &r->reasoning : &r->content, text, len))
        return r->failed = 1;
    if (!r->on_piece) return 0;
    cJSON *entry = NULL;
    if (call) {
        entry = cJSON_Duplicate(call, 1);
        cJSON_AddNumberToObject(entry, "index", cJSON_GetArraySize(r->tool_calls) - 1);
    }
    int rc = r->on_piece(r->user, part, text, len, entry, r->pending);
    cJSON_Delete(entry);
    cJSON_Delete(r->pending);
    r->pending = NULL;
    return rc;
}

int oai_reply_init(oai_reply *r, const gemma4c_model *model, const oai_request *req, const char *call_prefix,
                   const char *prefix, oai_piece_fn on_piece, void *user) {
    memset(r, 0, sizeof *r);
    r->model = model;
    r->raw = req->completion;
    r->on_piece = on_piece;
    r->user = user;
    snprintf(r->call_prefix, sizeof r->call_prefix, "%s", call_prefix ? call_prefix : "call");
    reply_init(&r->parser, req->tools_json != NULL);
    if (req->options.logprobs && !(r->logprobs = cJSON_CreateArray())) return -1;
    if (prefix && *prefix && reply_feed(&r->parser, prefix, strlen(prefix), on_part, r)) return -1;
    return 0;
}

int oai_reply_token(oai_reply *r, const gemma4c_token *t) {
    if (r->failed) return -1;
    if (r->logprobs && t->id >= 0) {
        cJSON *e = logprob_entry(r->model, t->id, t->piece, t->piece_len, t->logprob), *top = cJSON_CreateArray();
        for (int i = 0; i < t->n_top; i++)
            cJSON_AddItemToArray(top, logprob_entry(r->model, t->top[i].id, NULL, 0, t->top[i].logprob));
        cJSON_AddItemToObject(e, "top_logprobs", top);
        if (r->on_piece) {
            if (!r->pending) r->pending = cJSON_CreateArray();
            cJSON_AddItemToArray(r->pending, cJSON_Duplicate(e, 1));
        }
        cJSON_AddItemToArray(r->logprobs, e);
    }
    if (!t->text_len) /* streams with log-probabilities show every token, as OpenAI's do */
        return r->on_piece && r->pending ? (on_part(r, REPLY_CONTENT, "", 0, NULL) ? -1 : 0) : 0;
    if (r->raw) return on_part(r, REPLY_CONTENT, t->text, t->text_len, NULL) ? -1 : 0;
    return reply_feed(&r->parser, t->text, t->text_len, on_part, r) || r->failed ? -1 : 0;
}

int oai_reply_finish(oai_reply *r) {
    if (r->failed || (!r->raw && reply_finish(&r->parser, on_part, r))) return -1;
    if (r->on_piece && r->pending && cJSON_GetArraySize(r->pending)) /* log-probabilities of tokens with no text */
        return on_part(r, REPLY_CONTENT, "", 0, NULL) ? -1 : 0;
    return 0;
}

void oai_reply_free(oai_reply *r) {
    reply_free(&r->parser);
    free(r->content.s);
    free(r->reasoning.s);
    cJSON_Delete(r->tool_calls);
    cJSON_Delete(r->logprobs);
    cJSON_Delete(r->pending);
    memset(r, 0, sizeof *r);
}

const char *oai_finish_reason(const oai_reply *r, const gemma4c_result *res) {
    if (r->tool_calls && cJSON_GetArraySize(r->tool_calls)) return "tool_calls";
    return res->stop_reason == GEMMA4C_STOP_LENGTH || res->stop_reason == GEMMA4C_STOP_CONTEXT ? "length" : "stop";
}

cJSON *oai_usage(const gemma4c_result *res) {
    cJSON *usage = cJSON_CreateObject(), *details = cJSON_CreateObject();
    cJSON_AddNumberToObject(usage, "prompt_tokens", (double)res->prompt_tokens);
    cJSON_AddNumberToObject(usage, "completion_tokens", (double)res->generated_tokens);
    cJSON_AddNumberToObject(usage, "total_tokens", (double)(res->prompt_tokens + res->generated_tokens));
    cJSON_AddNumberToObject(details, "cached_tokens", (double)res->cached_tokens);
    cJSON_AddItemToObject(usage, "prompt_tokens_details", details);
    return usage;
}

cJSON *oai_timings(const gemma4c_result *res, double before_submit_seconds) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "before_submit_ms", before_submit_seconds * 1e3);
    cJSON_AddNumberToObject(t, "queue_ms", res->queue_seconds * 1e3);
    cJSON_AddNumberToObject(t, "media_ms", res->media_seconds * 1e3);
    cJSON_AddNumberToObject(t, "prompt_n", (double)res->prompt_tokens);
    cJSON_AddNumberToObject(t, "cached_n", (double)res->cached_tokens);
    cJSON_AddNumberToObject(t, "prompt_ms", res->prefill_seconds * 1e3);
    cJSON_AddNumberToObject(t, "first_token_ms", res->first_token_seconds * 1e3);
    cJSON_AddNumberToObject(t, "predicted_n", (double)res->generated_tokens);
    cJSON_AddNumberToObject(t, "predicted_ms", res->decode_seconds * 1e3);
    /* the first token comes from the prompt's step: the rate counts the steps after it */
    cJSON_AddNumberToObject(t, "predicted_per_second", res->generated_tokens > 1 && res->decode_seconds > 0
                                                           ? (double)(res->generated_tokens - 1) / res->decode_seconds
                                                           : 0);
    return t;
}

/* Characters (code points) of valid UTF-8 text: the bytes that do not continue a sequence. */
static int64_t utf8_chars(const char *s) {
    int64_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

cJSON *oai_choice_logprobs(int completion, const cJSON *entries, int64_t *text_offset) {
    cJSON *lp = cJSON_CreateObject();
    if (!completion) {
        cJSON_AddItemToObject(lp, "content", cJSON_Duplicate(entries, 1));
        return lp;
    }
    cJSON *tokens = cJSON_AddArrayToObject(lp, "tokens"), *values = cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(lp, "top_logprobs"), *offsets = cJSON_AddArrayToObject(lp, "text_offset");
    const cJSON *e, *alt;
    cJSON_ArrayForEach(e, entries) {
        const cJSON *token = cJSON_GetObjectItemCaseSensitive(e, "token");
        const char *text = cJSON_IsString(token) ? token->valuestring : "";
        cJSON_AddItemToArray(tokens, cJSON_CreateString(text));
        cJSON_AddItemToArray(values, cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(e, "logprob"), 0));
        cJSON *top = cJSON_CreateObject();
        cJSON_ArrayForEach(alt, cJSON_GetObjectItemCaseSensitive(e, "top_logprobs")) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(alt, "token");
            if (cJSON_IsString(t) && !cJSON_HasObjectItem(top, t->valuestring)) /* pieces can repeat as text */
                cJSON_AddItemToObject(top, t->valuestring, cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(alt, "logprob"), 0));
        }
        cJSON_AddItemToArray(tops, top);
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)*text_offset));
        *text_offset += utf8_chars(text);
    }
    return lp;
}

cJSON *oai_completion(const char *id, const char *model, const oai_request *req, const oai_reply *r,
                      const gemma4c_result *res) {
    cJSON *o = cJSON_CreateObject(), *choices = cJSON_CreateArray(), *choice = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", req->completion ? "text_completion" : "chat.completion");
    cJSON_AddNumberToObject(o, "created", (double)time(NULL));
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddNumberToObject(choice, "index", 0);
    const char *content = r->content.s ? r->content.s : "";
    if (req->completion)
        cJSON_AddStringToObject(choice, "text", content);
    else {
        cJSON *msg = cJSON_CreateObject();
        cJSON_AddStringToObject(msg, "role", "assistant");
        if (r->tool_calls && !r->content.len) cJSON_AddNullToObject(msg, "content");
        else cJSON_AddStringToObject(msg, "content", content);
        if (r->reasoning.len) cJSON_AddStringToObject(msg, "reasoning_content", r->reasoning.s);
        if (r->tool_calls) cJSON_AddItemToObject(msg, "tool_calls", cJSON_Duplicate(r->tool_calls, 1));
        cJSON_AddItemToObject(choice, "message", msg);
    }
    int64_t text_offset = 0;
    if (r->logprobs) cJSON_AddItemToObject(choice, "logprobs", oai_choice_logprobs(req->completion, r->logprobs, &text_offset));
    else cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddStringToObject(choice, "finish_reason", oai_finish_reason(r, res));
    cJSON_AddItemToArray(choices, choice);
    cJSON_AddItemToObject(o, "choices", choices);
    cJSON_AddItemToObject(o, "usage", oai_usage(res));
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
