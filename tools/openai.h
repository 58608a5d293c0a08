/* openai.h — OpenAI chat-completion JSON to gemma4c requests and back (shared by `batch` and the server). */
#ifndef G4_OPENAI_H
#define G4_OPENAI_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "gemma4c.h"
#include "reply.h"

#define OAI_MAX_STOP 4
#define OAI_MAX_MEDIA 32
#define OAI_MAX_LOGIT_BIAS 1024

/* What a request may reach beyond its own bytes. */
typedef struct oai_limits {
    const char *media_dir;  /* file:// URLs are read only inside this directory; NULL refuses them */
    size_t max_media_bytes; /* the largest file:// medium */
    int vocab_size;         /* token ids a request names (logit_bias) must be below it */
} oai_limits;

enum { OAI_TOOLS_AUTO = 0, OAI_TOOLS_NONE, OAI_TOOLS_REQUIRED, OAI_TOOLS_FUNCTION };

/* A parsed chat-completion or completion request body. */
typedef struct oai_request {
    char *messages_json;  /* chat: owned; media parts rewritten to {"type": "image"|"audio"|"video"} */
    char *json_schema;    /* response_format json_schema's schema, printed (owned); options.json_schema points here */
    char *tools_json;     /* chat: owned, or NULL (also when tool_choice is none) */
    char *prompt;         /* completion: owned */
    int completion;       /* 1: /v1/completions */
    int enable_thinking;
    int tool_choice;      /* OAI_TOOLS_* */
    char tool_name[128];  /* OAI_TOOLS_FUNCTION */
    int stream, include_usage;
    gemma4c_generate_options options; /* stop points into stops[] */
    char *stops[OAI_MAX_STOP + 1];    /* + the end of a turn of tool calls, added by the caller */
    gemma4c_media media[OAI_MAX_MEDIA]; /* in the order of their parts; data points into media_bytes */
    void *media_bytes[OAI_MAX_MEDIA];
    size_t n_media;
    int32_t *bias_ids;    /* logit_bias: owned, distinct ids; options.on_logits adds bias[i] to logit bias_ids[i] */
    float *bias;
    size_t n_bias;
    const char *model;    /* as the body names it (borrowed from the body), or NULL */
    char param_buf[96];
} oai_request;

/* Reads a /v1/chat/completions body: messages (content as a string or parts: text, image_url, input_audio,
 * video_url, with data: URLs, base64 audio or file:// URLs inside limits->media_dir), max_tokens /
 * max_completion_tokens, temperature, top_p, top_k, min_p, seed, stop, presence_penalty, frequency_penalty,
 * repetition_penalty, logit_bias, response_format (text, json_object), logprobs, top_logprobs, n (1 only), stream,
 * stream_options.include_usage, tools, tool_choice, reasoning_effort / chat_template_kwargs.enable_thinking.
 * Unknown fields are ignored as OpenAI does; a field of the wrong type or range is an error naming it (`param`,
 * valid until req is freed). Sampling defaults to `defaults` (the model's). req is to be freed also after an error, and must stay where it is while
 * its options generate (they point back to it for logit_bias). */
int oai_parse_chat_request(const cJSON *body, const gemma4c_sampling *defaults, const oai_limits *limits,
                           oai_request *req, char *err, size_t err_len, const char **param);
/* A /v1/completions body: prompt (a string), and the sampling fields above (logprobs: a count). */
int oai_parse_completion_request(const cJSON *body, const gemma4c_sampling *defaults, const oai_limits *limits,
                                 oai_request *req, char *err, size_t err_len, const char **param);
void oai_request_free(oai_request *req);

/* 1: s is whole, valid UTF-8 (what JSON text must be). */
int oai_valid_utf8(const char *s);

/* Receives a streamed answer piece by piece: text of a part (reply.h: content or reasoning), or a whole tool
 * call (a tool_calls entry with its index); the log-probabilities of the tokens since the last piece ride along
 * (an array, or NULL). Both are valid during the call. Non-zero stops. */
typedef int (*oai_piece_fn)(void *user, int part, const char *text, size_t len, cJSON *tool_call, cJSON *logprobs);

/* A generation turned into OpenAI's answer: its text split into content, reasoning and tool calls, and the
 * per-token log-probabilities when asked. */
typedef struct oai_reply {
    const gemma4c_model *model;
    int raw;            /* completions: all text is content */
    reply_parser parser;
    reply_text content, reasoning;
    cJSON *tool_calls;  /* [{"id", "type", "function": {"name", "arguments"}}], or NULL */
    cJSON *logprobs;    /* the "content" array of choices[0].logprobs, or NULL */
    cJSON *pending;     /* streaming: log-probabilities not yet sent */
    char call_prefix[48];
    oai_piece_fn on_piece; /* streaming, or NULL */
    void *user;
    int failed;
} oai_reply;

/* The generation's text starts as `prefix` (what the prompt forced the model's turn to begin with, e.g. an
 * opened tool call; may be NULL). */
int oai_reply_init(oai_reply *r, const gemma4c_model *model, const oai_request *req, const char *call_prefix,
                   const char *prefix, oai_piece_fn on_piece, void *user);
int oai_reply_token(oai_reply *r, const gemma4c_token *token);
int oai_reply_finish(oai_reply *r);
void oai_reply_free(oai_reply *r);
/* "stop", "length" or "tool_calls". */
const char *oai_finish_reason(const oai_reply *r, const gemma4c_result *result);
cJSON *oai_usage(const gemma4c_result *result);
/* A choice's "logprobs" for entries of the reply's array: {"content": entries} for chat; for a completion the
 * legacy object {tokens, token_logprobs, top_logprobs (one {token: logprob} object per token), text_offset (in
 * Unicode characters from the start of the answer: *text_offset, counted on across the chunks of a stream)}. */
cJSON *oai_choice_logprobs(int completion, const cJSON *entries, int64_t *text_offset);
/* The engine's own timings of a request (llama.cpp's servers send the same kind of object): what a client's time to
 * first token and token rate owe to the engine, and what to the server around it (before_submit_ms: from the
 * request's arrival to its submission, i.e. parsing, the template, tokenizing and waiting for a session). */
cJSON *oai_timings(const gemma4c_result *result, double before_submit_seconds);

/* A chat.completion (or, for a completion request, a text_completion) object for a finished request. */
cJSON *oai_completion(const char *id, const char *model, const oai_request *req, const oai_reply *r,
                      const gemma4c_result *result);

/* {"error": {"message", "type", "param", "code"}} */
cJSON *oai_error(const char *message, const char *type, const char *param, const char *code);

#endif
