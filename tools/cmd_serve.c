/* cmd_serve.c — `gemma4c serve`: an OpenAI-compatible HTTP server (libmicrohttpd) on one loaded model. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cli.h"
#include "openai.h"
#include "serve.h"

#define WAIT_MS 100 /* how often a waiting request looks at its client and at shutdown */
#define IDLE_TIMEOUT_S 30 /* a connection that sends nothing for this long is closed (slow clients) */

/* ---- one HTTP request ---- */

enum { GEN_NONE, GEN_RUNNING, GEN_DONE };

typedef struct request {
    server *srv;
    struct MHD_Connection *conn;
    char method[8], path[64];
    char *body;
    size_t len, cap;
    int too_big, status;
    double t_start, t_submit;
    /* a generation */
    oai_request req;
    oai_reply reply;
    int generation, stream;
    pool_slot *slot;
    char id[48], *prefix;
    reply_text out; /* stream bytes not yet sent */
    size_t out_off;
    double t_first, t_last;
    int64_t text_offset; /* completions' log-probabilities: characters streamed so far */
    gemma4c_result result;
} request;

static int client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    struct pollfd p = {ci->connect_fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return 1;
    char byte;
    return recv(ci->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static int connection_gone(void *connection) { return client_gone(connection); }

static enum MHD_Result respond(request *r, int status, const char *type, const char *body, size_t len,
                               const char *retry_after) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    if (retry_after) MHD_add_response_header(resp, "Retry-After", retry_after);
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    return rc;
}

static enum MHD_Result respond_json(request *r, int status, cJSON *o, const char *retry_after) {
    static const char oom[] =
        "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) return respond(r, 500, "application/json", oom, sizeof oom - 1, NULL);
    enum MHD_Result rc = respond(r, status, "application/json", text, strlen(text), retry_after);
    cJSON_free(text);
    return rc;
}

static const char *error_type(int status) {
    return status == 401 ? "authentication_error" : status == 404 ? "not_found_error" : status == 503 ? "server_busy"
           : status >= 500 ? "server_error" : "invalid_request_error";
}

static enum MHD_Result respond_error(request *r, int status, const char *message, const char *param, const char *code) {
    return respond_json(r, status, oai_error(message, error_type(status), param, code), status == 503 ? "1" : NULL);
}

/* The HTTP status of a gemma4c error. */
static int status_of(int rc) {
    return rc == GEMMA4C_ERR_NOMEM || rc == GEMMA4C_ERR_INTERNAL ? 500 : rc == GEMMA4C_ERR_CAPACITY ? 503 : 400;
}

/* ---- streams: Server-Sent Events as OpenAI sends them ---- */

static int sse(request *r, cJSON *o) {
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    int rc = !text || reply_text_append(&r->out, "data: ", 6) || reply_text_append(&r->out, text, strlen(text)) ||
             reply_text_append(&r->out, "\n\n", 2);
    cJSON_free(text);
    return rc ? -1 : 0;
}

static cJSON *chunk(request *r, cJSON *delta, const char *finish_reason, cJSON *logprobs) {
    cJSON *o = cJSON_CreateObject(), *choices = cJSON_CreateArray(), *choice = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "object", r->req.completion ? "text_completion" : "chat.completion.chunk");
    cJSON_AddNumberToObject(o, "created", (double)time(NULL));
    cJSON_AddStringToObject(o, "model", r->srv->model_name);
    cJSON_AddNumberToObject(choice, "index", 0);
    if (r->req.completion) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(delta, "content");
        cJSON_AddStringToObject(choice, "text", cJSON_IsString(text) ? text->valuestring : "");
        cJSON_Delete(delta);
    } else
        cJSON_AddItemToObject(choice, "delta", delta ? delta : cJSON_CreateObject());
    if (logprobs) cJSON_AddItemToObject(choice, "logprobs", oai_choice_logprobs(r->req.completion, logprobs, &r->text_offset));
    else cJSON_AddNullToObject(choice, "logprobs");
    if (finish_reason) cJSON_AddStringToObject(choice, "finish_reason", finish_reason);
    else cJSON_AddNullToObject(choice, "finish_reason");
    cJSON_AddItemToArray(choices, choice);
    cJSON_AddItemToObject(o, "choices", choices);
    if (r->req.include_usage) cJSON_AddNullToObject(o, "usage");
    return o;
}

static int on_piece(void *user, int part, const char *text, size_t len, cJSON *tool_call, cJSON *logprobs) {
    request *r = user;
    cJSON *delta = cJSON_CreateObject();
    if (part == REPLY_TOOL_CALL) {
        cJSON *calls = cJSON_AddArrayToObject(delta, "tool_calls");
        cJSON_AddItemToArray(calls, cJSON_Duplicate(tool_call, 1));
    } else {
        char *s = strndup(text, len);
        if (!s) return cJSON_Delete(delta), -1;
        cJSON_AddStringToObject(delta, part == REPLY_REASONING ? "reasoning_content" : "content", s);
        free(s);
    }
    return sse(r, chunk(r, delta, NULL, logprobs));
}

/* The end of a stream: the finish reason, usage when asked, [DONE]; or an error event. */
static int stream_end(request *r, int status, const char *error) {
    int rc = 0;
    if (status) {
        rc = sse(r, oai_error(error, "server_error", NULL, NULL));
    } else {
        cJSON *o = chunk(r, NULL, oai_finish_reason(&r->reply, &r->result), NULL);
        cJSON_AddItemToObject(o, "timings", oai_timings(&r->result, r->t_submit - r->t_start));
        rc = sse(r, o);
        if (!rc && r->req.include_usage) {
            cJSON *o = chunk(r, NULL, NULL, NULL);
            cJSON_ReplaceItemInObjectCaseSensitive(o, "choices", cJSON_CreateArray());
            cJSON_ReplaceItemInObjectCaseSensitive(o, "usage", oai_usage(&r->result));
            rc = sse(r, o);
        }
    }
    return rc || reply_text_append(&r->out, "data: [DONE]\n\n", 14) ? -1 : 0;
}

/* ---- running a generation ---- */

/* Ends the request's generation: metrics, the session back to the pool. */
static void finish_generation(request *r, int status, const char *error) {
    server *s = r->srv;
    if (r->generation != GEN_RUNNING) return;
    r->generation = GEN_DONE;
    if (!status && oai_reply_finish(&r->reply)) status = GEMMA4C_ERR_NOMEM, error = "out of memory";
    metrics_generation(&s->metrics, &r->result, status == 0);
    pool_release(s, r->slot);
    r->slot = NULL;
    if (r->stream && stream_end(r, status, error)) r->out.len = 0;
}

/* Waits for the next event of the running generation and handles it. Returns 0, or -1 when the client left. */
static int pump(request *r) {
    gemma4c_event ev;
    gemma4c_session *sess = r->slot->session;
    if (gemma4c_next(sess, &ev, WAIT_MS) != 0) {
        finish_generation(r, GEMMA4C_ERR_INTERNAL, "the session lost its request");
        return 0;
    }
    if (ev.type == GEMMA4C_EVENT_NONE) {
        if (client_gone(r->conn)) {
            gemma4c_cancel(sess);
            return -1;
        }
        if (atomic_load(&r->srv->stopping)) gemma4c_cancel(sess);
        return 0;
    }
    if (ev.type == GEMMA4C_EVENT_TOKEN) {
        const double t = serve_now();
        if (ev.token.id >= 0) {
            if (!r->t_first) r->t_first = t;
            else metrics_token_gap(&r->srv->metrics, t - r->t_last);
            r->t_last = t;
        }
        if (oai_reply_token(&r->reply, &ev.token)) gemma4c_cancel(sess);
        return 0;
    }
    r->result = ev.result;
    if (ev.status) finish_generation(r, ev.status, ev.error);
    else if (atomic_load(&r->srv->stopping) && ev.result.stop_reason == GEMMA4C_STOP_CANCELLED)
        finish_generation(r, GEMMA4C_ERR_CANCELLED, "the server is shutting down");
    else if (r->reply.failed)
        finish_generation(r, GEMMA4C_ERR_NOMEM, "out of memory");
    else
        finish_generation(r, 0, NULL);
    return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    request *r = cls;
    (void)pos;
    for (;;) {
        if (r->out_off < r->out.len) {
            const size_t n = r->out.len - r->out_off < max ? r->out.len - r->out_off : max;
            memcpy(buf, r->out.s + r->out_off, n);
            r->out_off += n;
            return (ssize_t)n;
        }
        r->out.len = r->out_off = 0;
        if (r->generation != GEN_RUNNING) return MHD_CONTENT_READER_END_OF_STREAM;
        if (pump(r)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

/* The prompt's token ids: the input's, plus what tool_choice forces the model's turn to start with. */
static int prompt_ids(request *r, int32_t **ids, size_t *n_ids, char *err, size_t err_len) {
    server *s = r->srv;
    gemma4c_input in = {0};
    if (r->req.completion) in.prompt = r->req.prompt;
    else {
        in.messages_json = r->req.messages_json;
        in.tools_json = r->req.tools_json;
        in.enable_thinking = r->req.enable_thinking;
        in.media = r->req.media;
        in.n_media = r->req.n_media;
    }
    int rc = gemma4c_input_ids(s->model, &in, ids, n_ids, err, err_len);
    if (rc) return rc;
    char forced[200] = "";
    if (r->req.tool_choice == OAI_TOOLS_REQUIRED) snprintf(forced, sizeof forced, "%scall:", REPLY_CALL_BEGIN);
    else if (r->req.tool_choice == OAI_TOOLS_FUNCTION)
        snprintf(forced, sizeof forced, "%scall:%s{", REPLY_CALL_BEGIN, r->req.tool_name);
    /* The template opens a thought channel itself after tool results in thinking mode. */
    char tail[64] = "";
    size_t tail_len = 0;
    const size_t k = *n_ids < 4 ? *n_ids : 4;
    if (!r->req.completion && gemma4c_detokenize(s->model, *ids + *n_ids - k, k, 0, tail, sizeof tail, &tail_len, NULL, 0) == 0) {
        const char *open = REPLY_CHANNEL_BEGIN "thought\n";
        const size_t ol = strlen(open);
        if (tail_len >= ol && !memcmp(tail + tail_len - ol, open, ol)) r->prefix = strdup(open);
    }
    if (!*forced) return 0;
    size_t n = 0;
    if ((rc = gemma4c_tokenize(s->model, forced, strlen(forced), 0, NULL, 0, &n, err, err_len))) return rc;
    int32_t *grown = realloc(*ids, (*n_ids + n) * sizeof *grown);
    if (!grown) return GEMMA4C_ERR_NOMEM;
    *ids = grown;
    if ((rc = gemma4c_tokenize(s->model, forced, strlen(forced), 0, grown + *n_ids, n, &n, err, err_len))) return rc;
    *n_ids += n;
    char *both = malloc((r->prefix ? strlen(r->prefix) : 0) + strlen(forced) + 1);
    if (!both) return GEMMA4C_ERR_NOMEM;
    sprintf(both, "%s%s", r->prefix ? r->prefix : "", forced);
    free(r->prefix);
    r->prefix = both;
    return 0;
}

static enum MHD_Result run_generation(request *r, cJSON *body) {
    server *s = r->srv;
    char err[512] = "";
    const char *param = NULL;
    int rc;
    if (!strcmp(r->path, "/v1/completions"))
        rc = oai_parse_completion_request(body, &s->defaults, &s->limits, &r->req, err, sizeof err, &param);
    else
        rc = oai_parse_chat_request(body, &s->defaults, &s->limits, &r->req, err, sizeof err, &param);
    if (rc) return respond_error(r, 400, err, param, NULL);
    r->stream = r->req.stream;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if ((rc = prompt_ids(r, &ids, &n_ids, err, sizeof err))) {
        gemma4c_free(ids);
        return respond_error(r, status_of(rc), rc == GEMMA4C_ERR_NOMEM ? "out of memory" : err, NULL, NULL);
    }
    if ((int64_t)n_ids >= s->n_ctx) {
        gemma4c_free(ids);
        snprintf(err, sizeof err, "the prompt is %zu tokens; the context holds %lld", n_ids, (long long)s->n_ctx);
        return respond_error(r, 400, err, "messages", "context_length_exceeded");
    }
    /* Waiting for a session and computing a long prompt is not a slow client: no idle timeout until the answer is
     * out (on_completed sets it back for the next request on the connection). */
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    r->slot = NULL;
    rc = pool_acquire(s, ids, n_ids, r->conn, connection_gone, &r->slot);
    if (rc) {
        gemma4c_free(ids);
        return rc == POOL_GONE ? MHD_NO
               : rc == POOL_STOPPING ? respond_error(r, 503, "the server is shutting down", NULL, NULL)
                                     : respond_error(r, 503, "the server is busy: try again shortly", NULL, "queue_full");
    }
    static atomic_uint_fast64_t serial;
    snprintf(r->id, sizeof r->id, "%s-%llx%04llx", r->req.completion ? "cmpl" : "chatcmpl", (unsigned long long)time(NULL),
             (unsigned long long)(atomic_fetch_add(&serial, 1) & 0xffff));
    char call_prefix[64];
    snprintf(call_prefix, sizeof call_prefix, "call_%s", r->id + (r->req.completion ? 5 : 9));
    gemma4c_input in = {.ids = ids, .n_ids = n_ids, .media = r->req.media, .n_media = r->req.n_media};
    r->t_submit = serve_now();
    rc = oai_reply_init(&r->reply, s->model, &r->req, call_prefix, r->prefix, r->stream ? on_piece : NULL, r)
             ? GEMMA4C_ERR_NOMEM
             : pool_submit(s, r->slot, &in, &r->req.options, err, sizeof err);
    gemma4c_free(ids);
    if (rc) {
        pool_release(s, r->slot);
        r->slot = NULL;
        const int schema = !strncmp(err, "json_schema", 11); /* the engine refused the response_format's schema */
        return respond_error(r, status_of(rc), rc == GEMMA4C_ERR_NOMEM ? "out of memory" : err,
                             schema ? "response_format.json_schema.schema" : NULL,
                             rc == GEMMA4C_ERR_CONTEXT ? "context_length_exceeded" : NULL);
    }
    r->generation = GEN_RUNNING;
    metrics_started(&s->metrics);
    if (r->stream) {
        if (!r->req.completion) { /* the first chunk names the role */
            cJSON *delta = cJSON_CreateObject();
            cJSON_AddStringToObject(delta, "role", "assistant");
            cJSON_AddStringToObject(delta, "content", "");
            if (sse(r, chunk(r, delta, NULL, NULL))) return MHD_NO;
        }
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, r, NULL);
        if (!resp) return MHD_NO;
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        enum MHD_Result q = MHD_queue_response(r->conn, 200, resp);
        MHD_destroy_response(resp);
        r->status = 200;
        return q;
    }
    while (r->generation == GEN_RUNNING)
        if (pump(r)) return MHD_NO; /* the client left: the completion callback collects the end */
    if (r->result.stop_reason == GEMMA4C_STOP_CANCELLED && atomic_load(&s->stopping))
        return respond_error(r, 503, "the server is shutting down", NULL, NULL);
    if (r->reply.failed) return respond_error(r, 500, "out of memory", NULL, NULL);
    cJSON *o = oai_completion(r->id, s->model_name, &r->req, &r->reply, &r->result);
    cJSON_AddItemToObject(o, "timings", oai_timings(&r->result, r->t_submit - r->t_start));
    return respond_json(r, 200, o, NULL);
}

/* ---- the other endpoints ---- */

static enum MHD_Result tokenize(request *r, cJSON *body) {
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(body, "content");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(body, "add_special");
    const cJSON *pieces = cJSON_GetObjectItemCaseSensitive(body, "with_pieces");
    if (!cJSON_IsString(content)) return respond_error(r, 400, "'content' must be a string", "content", NULL);
    if (add && !cJSON_IsBool(add)) return respond_error(r, 400, "'add_special' must be a boolean", "add_special", NULL);
    if (pieces && !cJSON_IsBool(pieces)) return respond_error(r, 400, "'with_pieces' must be a boolean", "with_pieces", NULL);
    char err[512];
    size_t n = 0, len = strlen(content->valuestring);
    int rc = gemma4c_tokenize(r->srv->model, content->valuestring, len, cJSON_IsTrue(add), NULL, 0, &n, err, sizeof err);
    int32_t *ids = rc ? NULL : malloc((n ? n : 1) * sizeof *ids);
    if (!rc && !ids) rc = GEMMA4C_ERR_NOMEM, snprintf(err, sizeof err, "out of memory");
    if (!rc) rc = gemma4c_tokenize(r->srv->model, content->valuestring, len, cJSON_IsTrue(add), ids, n, &n, err, sizeof err);
    if (rc) {
        free(ids);
        return respond_error(r, status_of(rc), err, "content", NULL);
    }
    cJSON *o = cJSON_CreateObject(), *tokens = cJSON_AddArrayToObject(o, "tokens");
    for (size_t i = 0; i < n; i++) {
        if (!cJSON_IsTrue(pieces)) {
            cJSON_AddItemToArray(tokens, cJSON_CreateNumber(ids[i]));
            continue;
        }
        char piece[256];
        size_t plen = 0;
        gemma4c_token_to_piece(r->srv->model, ids[i], piece, sizeof piece, &plen, NULL, 0);
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", ids[i]);
        cJSON_AddStringToObject(t, "piece", oai_valid_utf8(piece) ? piece : "\xEF\xBF\xBD");
        cJSON_AddItemToArray(tokens, t);
    }
    free(ids);
    return respond_json(r, 200, o, NULL);
}

static enum MHD_Result detokenize(request *r, cJSON *body) {
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(body, "tokens"), *t;
    if (!cJSON_IsArray(tokens)) return respond_error(r, 400, "'tokens' must be an array of token ids", "tokens", NULL);
    const int n = cJSON_GetArraySize(tokens);
    int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    if (!ids) return respond_error(r, 500, "out of memory", NULL, NULL);
    int i = 0;
    cJSON_ArrayForEach(t, tokens) {
        if (!cJSON_IsNumber(t) || t->valuedouble != (double)(int32_t)t->valuedouble) {
            free(ids);
            return respond_error(r, 400, "'tokens' must hold integer token ids", "tokens", NULL);
        }
        ids[i++] = (int32_t)t->valuedouble;
    }
    char err[512];
    size_t len = 0;
    int rc = gemma4c_detokenize(r->srv->model, ids, (size_t)n, 0, NULL, 0, &len, err, sizeof err);
    char *text = rc ? NULL : malloc(len + 1);
    if (!rc && !text) rc = GEMMA4C_ERR_NOMEM, snprintf(err, sizeof err, "out of memory");
    if (!rc) rc = gemma4c_detokenize(r->srv->model, ids, (size_t)n, 0, text, len + 1, &len, err, sizeof err);
    free(ids);
    if (rc) {
        free(text);
        return respond_error(r, status_of(rc), err, "tokens", NULL);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "content", oai_valid_utf8(text) ? text : "");
    free(text);
    return respond_json(r, 200, o, NULL);
}

static enum MHD_Result models(request *r) {
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddStringToObject(m, "id", r->srv->model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)r->srv->started);
    cJSON_AddStringToObject(m, "owned_by", "gemma4c");
    cJSON *meta = cJSON_AddObjectToObject(m, "meta");
    cJSON_AddNumberToObject(meta, "n_ctx", (double)r->srv->n_ctx);
    cJSON_AddNumberToObject(meta, "n_vocab", r->srv->info.vocab_size);
    cJSON_AddBoolToObject(meta, "vision", r->srv->info.has_vision);
    cJSON_AddBoolToObject(meta, "audio", r->srv->info.has_audio);
    cJSON_AddItemToArray(data, m);
    return respond_json(r, 200, o, NULL);
}

/* The bearer token, compared in time that does not depend on where it differs. */
static int authorized(const server *s, struct MHD_Connection *c) {
    if (!s->api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    const char *got = h + 7;
    const size_t want = strlen(s->api_key), have = strlen(got);
    unsigned diff = (unsigned)(want ^ have);
    for (size_t i = 0; i < want; i++) diff |= (unsigned char)s->api_key[i] ^ (unsigned char)(i < have ? got[i] : 0);
    return diff == 0;
}

static enum MHD_Result route(request *r) {
    server *s = r->srv;
    const int get = !strcmp(r->method, "GET"), post = !strcmp(r->method, "POST");
    if (get && !strcmp(r->path, "/health")) return respond(r, 200, "application/json", "{\"status\":\"ok\"}", 15, NULL);
    if (get && (!strcmp(r->path, "/") || !strcmp(r->path, "/index.html")))
        return respond(r, 200, "text/html; charset=utf-8", serve_page, serve_page_len, NULL);
    static const char *const known[] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/metrics",
                                        "/tokenize", "/detokenize"};
    int k = -1;
    for (int i = 0; i < 6; i++)
        if (!strcmp(r->path, known[i])) k = i;
    if (k < 0) return respond_error(r, 404, "no such endpoint", NULL, NULL);
    if ((k == 2 || k == 3) ? !get : !post) return respond_error(r, 405, "method not allowed here", NULL, NULL);
    if (!authorized(s, r->conn)) return respond_error(r, 401, "a valid API key is required (Authorization: Bearer KEY)", NULL, "invalid_api_key");
    if (k == 2) return models(r);
    if (k == 3) {
        char *text = metrics_render(s);
        enum MHD_Result rc = text ? respond(r, 200, "text/plain; version=0.0.4", text, strlen(text), NULL)
                                  : respond_error(r, 500, "out of memory", NULL, NULL);
        free(text);
        return rc;
    }
    if (r->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", s->max_body);
        return respond_error(r, 413, msg, NULL, "body_too_large");
    }
    cJSON *body = cJSON_ParseWithLength(r->body ? r->body : "", r->len);
    if (!body) return respond_error(r, 400, "the body is not valid JSON", NULL, "invalid_json");
    enum MHD_Result rc;
    if (!cJSON_IsObject(body)) rc = respond_error(r, 400, "the body must be a JSON object", NULL, "invalid_json");
    else if (k <= 1) rc = run_generation(r, body);
    else if (k == 4) rc = tokenize(r, body);
    else rc = detokenize(r, body);
    cJSON_Delete(body);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *data_size, void **con_cls) {
    server *s = cls;
    (void)version;
    request *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->srv = s;
        r->conn = c;
        r->t_start = serve_now();
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->max_body) { /* answered at once: the body is never read */
            char msg[96];
            snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", s->max_body);
            return respond_error(r, 413, msg, NULL, "body_too_large");
        }
        return MHD_YES;
    }
    if (*data_size) { /* more of the body */
        if (!r->too_big && r->len + *data_size > s->max_body) {
            r->too_big = 1;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
        }
        if (!r->too_big) {
            if (r->len + *data_size > r->cap) {
                size_t cap = (r->len + *data_size) * 2;
                char *b = realloc(r->body, cap > s->max_body ? s->max_body : cap);
                if (!b) return MHD_NO;
                r->body = b;
                r->cap = cap > s->max_body ? s->max_body : cap;
            }
            memcpy(r->body + r->len, data, *data_size);
            r->len += *data_size;
        }
        *data_size = 0;
        return MHD_YES;
    }
    return route(r);
}

/* After the response (or when the client went away): the generation ends, the session goes back. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    server *s = cls;
    request *r = *con_cls;
    if (!r) return;
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S);
    if (r->generation == GEN_RUNNING) {
        gemma4c_cancel(r->slot->session);
        r->stream = 0;
        while (r->generation == GEN_RUNNING) pump(r);
        if (!r->status || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) r->status = 499; /* the client closed it */
    }
    metrics_request(&s->metrics, r->status ? r->status : 499);
    char tokens[96] = "";
    if (r->generation)
        snprintf(tokens, sizeof tokens, ", prompt %lld tokens (%lld cached) + %lld generated", (long long)r->result.prompt_tokens,
                 (long long)r->result.cached_tokens, (long long)r->result.generated_tokens);
    fprintf(stderr, "gemma4c serve: %s %s %d %.3f s%s\n", r->method, r->path, r->status ? r->status : 499,
            serve_now() - r->t_start, tokens);
    oai_request_free(&r->req);
    oai_reply_free(&r->reply);
    free(r->out.s);
    free(r->body);
    free(r->prefix);
    free(r);
    *con_cls = NULL;
}

/* ---- the command ---- */

int cmd_serve(int argc, char **argv) {
    cli_opts o;
    int rc = cli_parse(argc, argv, 2, &o, "serve");
    if (rc) return rc == 2 ? 0 : 1;
    server s;
    memset(&s, 0, sizeof s);
    s.parallel = o.n_parallel ? o.parallel[0] : 4;
    s.queue_max = o.queue >= 0 ? o.queue : 64;
    s.max_sessions = s.parallel + (o.cache_sessions >= 0 ? o.cache_sessions : s.parallel);
    s.api_key = o.api_key ? o.api_key : getenv("GEMMA4C_API_KEY");
    if (s.api_key && !*s.api_key) s.api_key = NULL;
    s.limits.media_dir = o.media_dir;
    s.limits.max_media_bytes = (size_t)256 << 20;
    s.max_body = o.max_body ? (size_t)o.max_body : (size_t)64 << 20;
    s.started = time(NULL);
    const char *host = o.host ? o.host : "127.0.0.1";
    const int port = o.port >= 0 ? o.port : 8080;
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) return cli_error("--host expects an IPv4 address, got '%s'", host);
    if (o.media_dir) {
        char real[4096];
        if (!realpath(o.media_dir, real)) return cli_error("--media-dir %s: no such directory", o.media_dir);
    }
    /* SIGINT and SIGTERM reach this thread alone (sigwait below), not the threads the model and the HTTP library
     * start (they inherit the mask); a client that vanishes must not kill the process (SIGPIPE). */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (cli_load_model(&o, &s.model)) return 1;
    gemma4c_model_get_info(s.model, &s.info);
    s.limits.vocab_size = s.info.vocab_size;
    gemma4c_sampling_from_model(s.model, &s.defaults);
    s.n_ctx = o.ctx ? o.ctx : GEMMA4C_DEFAULT_CONTEXT;
    if (s.n_ctx > s.info.max_context && s.info.max_context > 0) s.n_ctx = s.info.max_context;
    const char *slash = strrchr(s.info.source, '/');
    s.model_name = slash && slash[1] ? slash + 1 : s.info.source;
    if (pool_init(&s)) {
        gemma4c_model_free(s.model);
        return cli_error("out of memory");
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
        on_request, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o.max_connections > 0 ? o.max_connections : 256),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 << 10),
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(4 << 20), MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    if (!d) {
        pool_free(&s);
        gemma4c_model_free(s.model);
        return cli_error("cannot listen on %s:%d (%s)", host, port, errno ? strerror(errno) : "in use?");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "gemma4c serve: %s on http://%s:%u (%d at once, %d queued; context %lld)%s\n", s.model_name, host,
            di ? di->port : (unsigned)port, s.parallel, s.queue_max, (long long)s.n_ctx,
            s.api_key ? "; API key required" : "");
    fflush(stderr);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "gemma4c serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    atomic_store(&s.stopping, 1);
    pool_stop(&s); /* wakes queued requests, cancels running ones: their streams end with an error event */
    MHD_stop_daemon(d);
    pool_free(&s);
    gemma4c_model_free(s.model);
    return 0;
}
