/* openai.h — OpenAI chat-completion JSON to gemma4c requests and back (shared by `batch` and the server). */
#ifndef G4_OPENAI_H
#define G4_OPENAI_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "gemma4c.h"

#define OAI_MAX_STOP 4

/* A parsed chat-completion request body. */
typedef struct oai_request {
    char *messages_json;  /* owned */
    char *tools_json;     /* owned, or NULL */
    int enable_thinking;
    gemma4c_generate_options options; /* stop points into stops[] */
    char *stops[OAI_MAX_STOP];
    const char *model;    /* as the body names it (borrowed from the body), or NULL */
} oai_request;

/* Reads a /v1/chat/completions body: messages, max_tokens / max_completion_tokens, temperature, top_p, top_k,
 * min_p, seed, stop, presence_penalty, frequency_penalty, repetition_penalty, logprobs, top_logprobs, n (1 only),
 * tools, reasoning_effort / chat_template_kwargs.enable_thinking. Unknown fields are ignored as OpenAI does; a
 * field of the wrong type or range is an error naming it (`param`). Sampling defaults to `defaults` (the model's). */
int oai_parse_chat_request(const cJSON *body, const gemma4c_sampling *defaults, oai_request *req, char *err,
                           size_t err_len, const char **param);
void oai_request_free(oai_request *req);

/* Collects a generation's text and, when asked, its per-token log-probabilities. */
typedef struct oai_collector {
    const gemma4c_model *model;
    char *text;
    size_t len, cap;
    cJSON *logprobs; /* the "content" array of choices[0].logprobs, or NULL */
    int failed;
} oai_collector;
int oai_collect_token(void *collector, const gemma4c_token *token);
void oai_collector_free(oai_collector *c);

/* A chat.completion object for a finished request (takes the collector's logprobs). */
cJSON *oai_chat_completion(const char *id, const char *model, const oai_collector *c, const gemma4c_result *result);

/* {"error": {"message", "type", "param", "code"}} */
cJSON *oai_error(const char *message, const char *type, const char *param, const char *code);

#endif
