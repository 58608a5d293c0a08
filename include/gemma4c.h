/* gemma4c.h — the public C API of gemma4c: load a Gemma 4 model, build prompts, generate text. */
#ifndef GEMMA4C_H
#define GEMMA4C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every function that can fail returns 0 or one of these (negative) codes and, where it takes an error
 * buffer, writes one line saying what went wrong. */
enum gemma4c_status {
    GEMMA4C_OK = 0,
    GEMMA4C_ERR_IO = -1,          /* a file could not be opened or read */
    GEMMA4C_ERR_FORMAT = -2,      /* a file is corrupt, truncated or not what it claims to be */
    GEMMA4C_ERR_SHAPE = -3,       /* a tensor's shape disagrees with the config */
    GEMMA4C_ERR_NOMEM = -4,       /* an allocation failed */
    GEMMA4C_ERR_ARG = -5,         /* an argument is invalid (unknown token id, bad option...) */
    GEMMA4C_ERR_UNSUPPORTED = -6, /* valid input this build does not handle */
    GEMMA4C_ERR_CONTEXT = -7,     /* the prompt or generation does not fit the context */
    GEMMA4C_ERR_INTERNAL = -8,
};

/* A short name for a status code ("format error", ...). */
const char *gemma4c_status_name(int status);

/* ---- sessions -------------------------------------------------------------------------------------------
 * A session owns one model, its worker threads and one conversation's KV cache. Calls on one session must not
 * overlap; separate sessions are independent. Every function that can fail takes `err` (may be NULL) and writes
 * one line there, truncated to err_len. */
typedef struct gemma4c_session gemma4c_session;

typedef struct gemma4c_params {
    const char *model; /* model directory, Hugging Face repo id (from the local cache), "synthetic:small|e2b|e4b",
                          or NULL for the small synthetic model (random weights) */
    int n_threads;     /* 0: one per CPU */
    int64_t n_ctx;     /* context length in tokens; 0: 4096 */
    int64_t n_batch;   /* prefill chunk; 0: 256 */
} gemma4c_params;

int gemma4c_open(const gemma4c_params *params, gemma4c_session **out, char *err, size_t err_len);
void gemma4c_close(gemma4c_session *s);

/* Model facts. */
int gemma4c_vocab_size(const gemma4c_session *s);
int gemma4c_is_synthetic(const gemma4c_session *s); /* 1 when the weights are random */

/* Receives generated text as it becomes final (whole UTF-8 characters). Return non-zero to stop. */
typedef int (*gemma4c_text_fn)(void *user, const char *text, size_t len);

typedef struct gemma4c_generate_options {
    int max_tokens;                 /* 0: until a stop condition or the end of the context */
    const char *const *stop;        /* stop strings (not emitted) */
    size_t n_stop;
    int enable_thinking;            /* chat only: thinking mode */
    int use_model_sampling;         /* 1: the model's generation_config.json; 0: the fields below */
    int greedy;
    float temperature, top_p, min_p, repetition_penalty;
    int top_k;
    uint64_t seed;
} gemma4c_generate_options;

/* Chat: `messages_json` is a JSON array of {"role": "system"|"user"|"assistant"|"tool", "content": ...} as in the
 * OpenAI / Hugging Face format; `tools_json` an optional JSON array of function declarations (or NULL). The answer
 * is streamed to `on_text`. Consecutive calls that extend the same conversation reuse the KV cache. */
int gemma4c_chat(gemma4c_session *s, const char *messages_json, const char *tools_json,
                 const gemma4c_generate_options *opt, gemma4c_text_fn on_text, void *user, char *err, size_t err_len);

/* Raw completion: <bos> + the tokens of `prompt` (special tokens written in it are honoured), no chat format. */
int gemma4c_complete(gemma4c_session *s, const char *prompt, const gemma4c_generate_options *opt,
                     gemma4c_text_fn on_text, void *user, char *err, size_t err_len);

/* Tokenizes text (no <bos> added). Writes up to `cap` ids and the full count to *n_ids. */
int gemma4c_tokenize(gemma4c_session *s, const char *text, int32_t *ids, size_t cap, size_t *n_ids, char *err,
                     size_t err_len);

/* Logits [n_ids, vocab] of every position of a fresh sequence (the session's cache is reset). */
int gemma4c_logits(gemma4c_session *s, const int32_t *ids, size_t n_ids, float *logits, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif
