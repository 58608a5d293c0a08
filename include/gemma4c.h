/* gemma4c.h — the public C API of gemma4c: one loaded Gemma 4 model serving many conversations in batched steps. */
#ifndef GEMMA4C_H
#define GEMMA4C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define GEMMA4C_API
#else
#define GEMMA4C_API __attribute__((visibility("default")))
#endif

/* ==== Overview ================================================================================================
 *
 *   gemma4c_model    weights, tokenizer, chat template, image/audio encoders, compute threads and the scheduler.
 *                    Loaded once; read-only afterwards; every function taking a const model is thread-safe.
 *   gemma4c_session  one conversation: its KV cache, its position and the tokens it holds (reused when the next
 *                    prompt starts with them), a cache of its encoded media. Cheap: memory grows with use.
 *   the scheduler    a thread inside the model that advances every session with work in the same steps: one
 *                    step computes each weight matrix once over the rows of all of them (decode tokens and chunks
 *                    of prompts alike), attention per row against its own session's cache.
 *
 * Two ways to drive it, mixable:
 *   - blocking: gemma4c_generate() from any number of threads, one session each; tokens reach the callback on
 *     the calling thread; concurrent calls are batched together;
 *   - event loop: gemma4c_submit() on many sessions from one thread, then gemma4c_next() on each (poll or wait),
 *     optionally woken by the `notify` callback of gemma4c_generate_options.
 *
 * Errors: every function that can fail returns GEMMA4C_OK (0) or a negative gemma4c_status and, given a buffer
 * (`err`, `err_len`; both may be 0), writes one line there saying what went wrong (truncated to err_len).
 * Functions never print, never exit, and never crash on hostile input: truncated or corrupt files, invalid
 * JSON, wrong ids, media bombs and NULL handles are errors.
 *
 * Ownership: the library copies what it needs from arguments before a call returns (media bytes included);
 * pointers it returns stay valid as each function says. Strings and arrays it allocates are released with
 * gemma4c_free() unless a dedicated function is named.
 *
 * Memory per session (float32 KV cache, from the published configs): full-attention layers hold every token of
 * the conversation, sliding-window layers only the last window (and up to 192 positions more, in pages of 64,
 * which keep short rewinds cheap):
 *   E4B: 32 KiB per token + 80 KiB per token of the 512-token window (≈ 40 MiB once it is full)
 *   E2B: 12 KiB per token + 24 KiB per token of the 512-token window (≈ 12 MiB once it is full)
 * so a 4096-token E4B conversation holds ≈ 168 MiB. gemma4c_model_info gives the exact figures of a model; the
 * total over all sessions is bounded by gemma4c_model_params.kv_budget_bytes. */

#define GEMMA4C_VERSION_MAJOR 0
#define GEMMA4C_VERSION_MINOR 3
#define GEMMA4C_VERSION_PATCH 0
#define GEMMA4C_VERSION_STRING "0.3.0"

/* The version of the library actually linked (GEMMA4C_VERSION_STRING when header and library agree). */
GEMMA4C_API const char *gemma4c_version(void);

typedef enum gemma4c_status {
    GEMMA4C_OK = 0,
    GEMMA4C_ERR_IO = -1,          /* a file could not be opened, read or written */
    GEMMA4C_ERR_FORMAT = -2,      /* a file or buffer is corrupt, truncated or not what it claims to be */
    GEMMA4C_ERR_SHAPE = -3,       /* a tensor's shape disagrees with the config */
    GEMMA4C_ERR_NOMEM = -4,       /* an allocation failed */
    GEMMA4C_ERR_ARG = -5,         /* an argument is invalid (NULL handle, unknown token id, bad option...) */
    GEMMA4C_ERR_UNSUPPORTED = -6, /* valid input this build does not handle */
    GEMMA4C_ERR_CONTEXT = -7,     /* the prompt does not fit the session's context */
    GEMMA4C_ERR_INTERNAL = -8,
    GEMMA4C_ERR_CANCELLED = -9,   /* gemma4c_cancel() ended the call (generation itself ends with a stop reason) */
    GEMMA4C_ERR_BUSY = -10,       /* the session is already running a request */
    GEMMA4C_ERR_CAPACITY = -11,   /* the KV budget (kv_budget_bytes) cannot hold what the request needs */
} gemma4c_status;

/* A short name for a status code ("format error", ...); never NULL. */
GEMMA4C_API const char *gemma4c_status_name(int status);

/* Releases memory the library allocated for the caller (rendered prompts, token arrays). NULL is ignored. */
GEMMA4C_API void gemma4c_free(void *p);

/* ==== Models ================================================================================================== */

typedef struct gemma4c_model gemma4c_model;

#define GEMMA4C_DEFAULT_BATCH 256 /* token rows per scheduler step */
#define GEMMA4C_DEFAULT_CONTEXT 4096 /* tokens per session */

/* All fields may be zero. */
typedef struct gemma4c_model_params {
    const char *model;           /* a Hugging Face model directory, a .gguf file from `gemma4c convert`, a repo id
                                    found in the local Hugging Face cache ("google/gemma-4-E4B-it"), or
                                    "synthetic:small|e2b|e4b" (random weights, for demos and benchmarks);
                                    NULL: "synthetic:small" */
    const char *synthetic_quant; /* synthetic models only: "q4", "q4-mix", "q6", "q8", "bf16" (NULL) or "f32" storage */
    int n_threads;               /* compute threads; 0: one per CPU */
    int n_batch;                 /* most token rows one step computes; 0: GEMMA4C_DEFAULT_BATCH */
    int64_t kv_budget_bytes;     /* KV memory of all sessions together; 0: no limit but the machine's. A request
                                    that would exceed it fails with GEMMA4C_ERR_CAPACITY before its step runs. */
    const char *device;          /* where the model runs: "cpu" (NULL) or "cuda" (the first NVIDIA GPU: weights,
                                    KV caches and encoders there). A device this build or machine lacks is an
                                    error (GEMMA4C_ERR_UNSUPPORTED), never a silent fallback to the CPU. */
} gemma4c_model_params;

/* Loads a model and starts its scheduler thread and compute threads. Weights are memory-mapped; every tensor the
 * config needs is checked (shape, dtype) before this returns. *out is NULL on failure. */
GEMMA4C_API int gemma4c_model_load(const gemma4c_model_params *params, gemma4c_model **out, char *err, size_t err_len);

/* Releases the caller's hold on the model. The model lives on until its last session is freed, so sessions may be
 * freed before or after it. NULL is ignored. Not to be called twice for one load. */
GEMMA4C_API void gemma4c_model_free(gemma4c_model *model);

typedef struct gemma4c_model_info {
    const char *source;              /* what was loaded (path, or "synthetic:e4b") */
    int synthetic;                   /* 1: random weights */
    int byte_level_tokenizer;        /* 1: the checkpoint has no tokenizer.json; bytes are tokens */
    int vocab_size, hidden_size, n_layers, sliding_window;
    int64_t max_context;             /* the model's longest context (max_position_embeddings) */
    int has_vision, has_audio;
    int64_t kv_bytes_per_token;      /* full-attention layers: bytes of cache per token of a conversation */
    int64_t kv_bytes_per_window_token; /* sliding layers: bytes per token, for the last sliding_window tokens */
    int64_t weight_bytes_per_token;  /* weights read from memory to decode one token */
    const char *weight_type;         /* storage of the decoder's matrices: "bf16", "G4_Q4", ... */
    const char *kernels;             /* the matrix-product kernels this CPU runs ("avx512vnni", "neon", ...) */
    int n_threads, n_batch;
    int64_t kv_budget_bytes;         /* 0: unlimited */
    const char *device;              /* where the model runs: "cpu" or "cuda" */
} gemma4c_model_info;

/* Facts about a loaded model; the strings live as long as the model. Thread-safe. */
GEMMA4C_API int gemma4c_model_get_info(const gemma4c_model *model, gemma4c_model_info *info);

/* The scheduler's counters since the model was loaded (for metrics and benchmarks). Thread-safe. */
typedef struct gemma4c_stats {
    int64_t steps;          /* batched steps run */
    int64_t decode_rows;    /* tokens generated (one row each) */
    int64_t prefill_rows;   /* prompt tokens computed (reused ones excluded) */
    int64_t reused_tokens;  /* prompt tokens served from sessions' caches */
    int active;             /* sessions with a request in the scheduler now */
    int64_t kv_bytes;       /* KV memory held by all sessions now */
    double busy_seconds;    /* time the scheduler spent computing */
} gemma4c_stats;
GEMMA4C_API int gemma4c_model_stats(const gemma4c_model *model, gemma4c_stats *stats);

/* Ids of the tokens a program may need; -1 where the vocabulary has none. */
typedef struct gemma4c_special_tokens {
    int32_t bos, eos, pad;
    int32_t stop[8]; int n_stop;        /* ids that end generation (generation_config.json's eos_token_id) */
    int32_t image, audio, video;        /* the soft-token placeholders */
    int32_t image_begin, image_end, audio_begin, audio_end;
    int32_t turn_begin, turn_end;       /* <|turn> and <turn|> */
} gemma4c_special_tokens;
GEMMA4C_API int gemma4c_special_tokens_get(const gemma4c_model *model, gemma4c_special_tokens *out);

/* ==== Text utilities (thread-safe) ============================================================================ */

/* Tokenizes UTF-8 text; special tokens written in it ("<|turn>") are matched; add_bos puts <bos> first. Writes
 * up to `cap` ids to `ids` (may be NULL with cap 0) and the full count to *n_ids. */
GEMMA4C_API int gemma4c_tokenize(const gemma4c_model *model, const char *text, size_t len, int add_bos, int32_t *ids,
                                 size_t cap, size_t *n_ids, char *err, size_t err_len);

/* The text of ids (skip_special: leave control tokens out). Writes up to cap - 1 bytes and a NUL to `text` (may
 * be NULL with cap 0) and the full length to *len. Ids outside the vocabulary are an error. */
GEMMA4C_API int gemma4c_detokenize(const gemma4c_model *model, const int32_t *ids, size_t n_ids, int skip_special,
                                   char *text, size_t cap, size_t *len, char *err, size_t err_len);

/* The bytes of one token (a byte-fallback token is its single byte, which may be part of a UTF-8 character);
 * written like gemma4c_detokenize. */
GEMMA4C_API int gemma4c_token_to_piece(const gemma4c_model *model, int32_t id, char *piece, size_t cap, size_t *len,
                                       char *err, size_t err_len);

/* Renders a conversation with Gemma 4's chat template (byte for byte as Google's Jinja template does).
 * messages_json: a JSON array of {"role": "system"|"developer"|"user"|"assistant"|"tool", "content": string or
 * [{"type": "text", "text": ...} | {"type": "image"|"audio"|"video"}], "tool_calls"?, "reasoning"?...};
 * tools_json: a JSON array of function declarations, or NULL. The prompt ends with the opening of a model turn.
 * *out is a NUL-terminated string for gemma4c_free. */
GEMMA4C_API int gemma4c_render_chat(const gemma4c_model *model, const char *messages_json, const char *tools_json,
                                    int enable_thinking, char **out, char *err, size_t err_len);

/* ==== Inputs ================================================================================================== */

typedef enum gemma4c_media_kind { GEMMA4C_MEDIA_IMAGE = 1, GEMMA4C_MEDIA_AUDIO = 2, GEMMA4C_MEDIA_VIDEO = 3 } gemma4c_media_kind;

/* One image, audio clip or video, from a file or from bytes in memory (PNG, JPEG, WebP, GIF, BMP; WAV, FLAC,
 * MP3, Ogg, M4A...; MP4, WebM, MOV, MKV...). Audio longer than 30 s is split into blocks of at most 30 s. */
typedef struct gemma4c_media {
    int kind;              /* gemma4c_media_kind */
    const char *path;      /* a file ... */
    const void *data;      /* ... or its bytes (used when path is NULL) */
    size_t size;
    int max_soft_tokens;   /* images: 70, 140, 280, 560 or 1120 soft tokens; 0: 280 */
} gemma4c_media;

/* What to run. Exactly one of messages_json, prompt and ids. Media are taken in order by the media
 * placeholders of the input: parts {"type": "image"|"audio"|"video"} of chat messages, the placeholder tokens
 * ("<|image|>", "<|audio|>", "<|video|>") written in a raw prompt, or, in ids, each maximal run of placeholder
 * ids (whose length must then equal the medium's soft-token count). Placeholder ids with no media at all are
 * embedded as the reference embeds them (as the pad token): this is what a model's own generated placeholders
 * get too. */
typedef struct gemma4c_input {
    const char *messages_json;   /* a chat (see gemma4c_render_chat) */
    const char *tools_json;      /* chat only: function declarations, or NULL */
    int enable_thinking;         /* chat only: thinking mode */
    const char *prompt;          /* raw text: <bos> + its tokens, no chat format */
    const int32_t *ids;          /* token ids as they are (no <bos> added) */
    size_t n_ids;
    const gemma4c_media *media;
    size_t n_media;
} gemma4c_input;

/* The token ids an input becomes (chat rendered, media placeholders expanded to their soft-token runs as the
 * reference processor writes them, tokenized). Media are decoded and measured, not encoded; the model keeps the last
 * few decoded media so that submitting the same input next (e.g. as ids + the same media) does not decode them
 * again. *ids is for gemma4c_free. Thread-safe. */
GEMMA4C_API int gemma4c_input_ids(const gemma4c_model *model, const gemma4c_input *input, int32_t **ids, size_t *n_ids,
                                  char *err, size_t err_len);

/* ==== Sessions ================================================================================================ */

typedef struct gemma4c_session gemma4c_session;

typedef struct gemma4c_session_params {
    int64_t n_ctx; /* the most tokens the conversation may hold; 0: GEMMA4C_DEFAULT_CONTEXT (capped by the model) */
} gemma4c_session_params;

/* A new, empty conversation on `model` (params may be NULL). It holds no KV memory until it runs. Thread-safe. */
GEMMA4C_API int gemma4c_session_new(gemma4c_model *model, const gemma4c_session_params *params, gemma4c_session **out,
                                    char *err, size_t err_len);

/* Frees a session: a request still running on it is cancelled and waited for. NULL is ignored. No other call
 * on the session may run or follow. */
GEMMA4C_API void gemma4c_session_free(gemma4c_session *session);

/* ==== Generation ============================================================================================== */

/* Sampling; a zeroed struct is greedy decoding. */
typedef struct gemma4c_sampling {
    float temperature;        /* 0: greedy (the most likely token; ties go to the lowest id) */
    int top_k;                /* 0: off */
    float top_p;              /* 0 or 1: off */
    float min_p;              /* 0: off */
    float repetition_penalty; /* 0 or 1: off; ids of the prompt and the answer (transformers' rule) */
    float presence_penalty;   /* 0: off; subtracted once from every id the answer already has (OpenAI's rule) */
    float frequency_penalty;  /* 0: off; subtracted per occurrence in the answer */
    uint64_t seed;            /* the same seed, input and options give the same tokens */
} gemma4c_sampling;

/* The model's recommended sampling (generation_config.json; Gemma 4: temperature 1, top-k 64, top-p 0.95). */
GEMMA4C_API void gemma4c_sampling_from_model(const gemma4c_model *model, gemma4c_sampling *out);

#define GEMMA4C_MAX_TOP_LOGPROBS 20

/* May change logits [vocab] of one position before sampling (a bias, a grammar); 0 to go on, non-zero to stop
 * (GEMMA4C_STOP_CANCELLED). Runs on the scheduler's thread: keep it quick and do not call gemma4c from it. */
typedef int (*gemma4c_logits_fn)(void *user, float *logits, int vocab_size);
/* Tells an event loop that gemma4c_next() has something for a session. Runs on the scheduler's thread, possibly
 * while its locks are held: only signal (write to a pipe, post to a queue); never call gemma4c from it. */
typedef void (*gemma4c_notify_fn)(void *user);

#define GEMMA4C_KEEP_MARKERS 2
#define GEMMA4C_JSON_AFTER_THOUGHT 2

/* A zeroed struct: greedy, no token limit but the context, the model's stop ids. */
typedef struct gemma4c_generate_options {
    gemma4c_sampling sampling;
    int max_tokens;              /* 0: until a stop or the end of the context */
    const char *const *stop;     /* stop strings: generation ends before the first occurrence (never emitted) */
    size_t n_stop;
    int ignore_eos;              /* 1: the model's stop ids do not end generation */
    int keep_special;            /* 1: control tokens (turn and channel markers) appear in the text;
                                    GEMMA4C_KEEP_MARKERS: only those that structure a reply: <|channel> <channel|>
                                    (thinking), <|tool_call> <tool_call|> <|"|> <|tool_response> (tool calls) */
    int logprobs;                /* 1: every token's log-probability under the model (before sampling rules) */
    int top_logprobs;            /* 0..GEMMA4C_MAX_TOP_LOGPROBS most likely alternatives per token */
    gemma4c_logits_fn on_logits;
    void *logits_user;
    gemma4c_notify_fn notify;    /* event loops: see gemma4c_notify_fn */
    void *notify_user;
    int json;                    /* 1: the answer is one JSON object (RFC 8259): every token must keep the text a
                                    prefix of one, control tokens (tool calls included) are never chosen, and
                                    generation ends as the object closes (GEMMA4C_STOP_JSON); nesting deeper than
                                    64, whitespace runs over 64 bytes and numbers over 48 bytes are not generated.
                                    GEMMA4C_JSON_AFTER_THOUGHT: the same after a thought channel, if the model
                                    opens one first (thinking mode) */
    const char *json_schema;     /* with json: a JSON Schema (text) the object also matches, token by token. The
                                    subset structured outputs use: type, properties (written in the order given),
                                    required, items, minItems, maxItems, uniqueItems (of enum values),
                                    minLength, maxLength, pattern (a
                                    regular expression without backreferences or lookaround), minimum, maximum,
                                    exclusiveMinimum, exclusiveMaximum, multipleOf (whole numbers), enum,
                                    const, anyOf (unions of objects too), oneOf (alternatives no value could
                                    match two of: different types, or a discriminator), allOf of one, $ref into the schema
                                    ($defs, recursion). A keyword that restricts values otherwise (contains,
                                    not...) is refused with GEMMA4C_ERR_ARG, as is json_schema without json */
} gemma4c_generate_options;

typedef struct gemma4c_top_logprob {
    int32_t id;
    float logprob;
} gemma4c_top_logprob;

/* One generated token. Pointers are valid until the callback returns / the next gemma4c_next on the session. */
typedef struct gemma4c_token {
    int32_t id;                  /* -1: no token, only text released at the end (held back while it could still
                                    have become a stop string, or an unfinished UTF-8 character) */
    const char *piece;           /* the token's own bytes (may be part of a UTF-8 character) */
    size_t piece_len;
    const char *text;            /* text that became final with this token: whole UTF-8 characters, nothing that
                                    may still turn into a stop string; often empty, never NUL-terminated */
    size_t text_len;
    float logprob;               /* options.logprobs */
    int n_top;                   /* options.top_logprobs: the alternatives, most likely first */
    const gemma4c_top_logprob *top;
} gemma4c_token;

typedef enum gemma4c_stop_reason {
    GEMMA4C_STOP_NONE = 0,
    GEMMA4C_STOP_EOS,       /* the model produced one of its stop ids (stop_id) */
    GEMMA4C_STOP_STRING,    /* a stop string appeared (stop_string: its index) */
    GEMMA4C_STOP_LENGTH,    /* max_tokens */
    GEMMA4C_STOP_CONTEXT,   /* the session's context is full */
    GEMMA4C_STOP_CANCELLED, /* gemma4c_cancel(), or a callback returned non-zero */
    GEMMA4C_STOP_JSON,      /* options.json: the object closed */
} gemma4c_stop_reason;

/* How a request went. Durations in seconds; first_token_seconds counts from the request's submission. */
typedef struct gemma4c_result {
    int stop_reason;          /* gemma4c_stop_reason */
    int32_t stop_id;
    int stop_string;
    int64_t prompt_tokens;    /* the input's tokens */
    int64_t cached_tokens;    /* ... of which the session's cache already held */
    int64_t generated_tokens;
    int64_t media_tokens;     /* soft tokens of the input's media */
    double queue_seconds;     /* waiting for the scheduler */
    double media_seconds;     /* encoding media (decoding and preprocessing included) */
    double prefill_seconds;   /* computing the prompt */
    double decode_seconds;    /* from the first token to the last */
    double first_token_seconds; /* time to first token */
} gemma4c_result;

/* Receives each generated token on the calling thread; non-zero stops (GEMMA4C_STOP_CANCELLED). */
typedef int (*gemma4c_token_fn)(void *user, const gemma4c_token *token);

/* Runs `input` on the session (continuing the conversation it holds: the longest prefix of the input's tokens
 * and media that the session already holds is reused, the rest is computed) and generates until a stop. Blocks;
 * tokens stream to on_token (may be NULL). `result` (may be NULL) is filled also when generation stopped early.
 * Safe to call from several threads at once on different sessions of one model: they run batched together. The
 * session then holds the input and the generated tokens (all but the last one, which was never fed).
 * Errors: bad input (GEMMA4C_ERR_ARG / _FORMAT / _IO for media), a prompt that does not fit (GEMMA4C_ERR_CONTEXT),
 * the KV budget (GEMMA4C_ERR_CAPACITY), a session already running (GEMMA4C_ERR_BUSY). After an error the session
 * holds what it held before the call, or nothing. */
GEMMA4C_API int gemma4c_generate(gemma4c_session *session, const gemma4c_input *input,
                                 const gemma4c_generate_options *options, gemma4c_token_fn on_token, void *user,
                                 gemma4c_result *result, char *err, size_t err_len);

/* The event-loop form: queues the request and returns at once (after rendering, tokenizing and decoding media,
 * which happen on the calling thread). Its tokens and end are then read with gemma4c_next. */
GEMMA4C_API int gemma4c_submit(gemma4c_session *session, const gemma4c_input *input,
                               const gemma4c_generate_options *options, char *err, size_t err_len);

typedef enum gemma4c_event_type {
    GEMMA4C_EVENT_NONE = 0,  /* nothing yet (timeout) */
    GEMMA4C_EVENT_TOKEN,     /* event.token */
    GEMMA4C_EVENT_DONE,      /* the request ended: event.result, event.status (0, or the error) and event.error */
} gemma4c_event_type;

typedef struct gemma4c_event {
    int type;
    gemma4c_token token;
    gemma4c_result result;
    int status;
    const char *error; /* "" unless status != 0 */
} gemma4c_event;

/* The next event of the session's submitted request: waits up to timeout_ms (0: poll; -1: until there is one).
 * After GEMMA4C_EVENT_DONE the session is idle again. Returns GEMMA4C_ERR_ARG when nothing was submitted. Pointers
 * in the event stay valid until the next call on the session. One thread at a time per session. */
GEMMA4C_API int gemma4c_next(gemma4c_session *session, gemma4c_event *event, int timeout_ms);

/* Ends the session's running request (generation, media encoding, logits) within one scheduler step, from any
 * thread; also inside a long prompt chunk or media encoding. The request then ends with GEMMA4C_STOP_CANCELLED
 * (generation) or GEMMA4C_ERR_CANCELLED. A no-op when the session is idle; the next request is not affected. */
GEMMA4C_API void gemma4c_cancel(gemma4c_session *session);

/* ==== Session state =========================================================================================== *
 * These run on an idle session only (GEMMA4C_ERR_BUSY otherwise). */

/* Forgets the conversation and releases its KV memory (the media cache too). */
GEMMA4C_API int gemma4c_session_reset(gemma4c_session *session, char *err, size_t err_len);

/* Keeps the first n_tokens tokens of the conversation and forgets the rest. Returns the count kept: n_tokens,
 * or 0 when the sliding layers have since dropped what that prefix needs (then the next request recomputes from
 * the start), or a negative status. */
GEMMA4C_API int64_t gemma4c_session_rewind(gemma4c_session *session, int64_t n_tokens);

/* The tokens the session holds: writes up to cap ids (ids may be NULL with cap 0) and returns how many there are
 * (or a negative status). */
GEMMA4C_API int64_t gemma4c_session_tokens(const gemma4c_session *session, int32_t *ids, size_t cap);

/* Saves the conversation's state (tokens, media identities, KV cache) to a file, and restores it into a session
 * of the same model (checked: a file of another model, or a corrupt one, is an error and changes nothing).
 * Generating after a load gives bit for bit what generating without save and load gives. */
GEMMA4C_API int gemma4c_session_save(gemma4c_session *session, const char *path, char *err, size_t err_len);
GEMMA4C_API int gemma4c_session_load(gemma4c_session *session, const char *path, char *err, size_t err_len);

/* ==== Scoring and encoders ==================================================================================== */

/* Logits [n_ids][vocab] of every position of `ids` as a fresh sequence (the session's conversation is reset);
 * placeholder runs in ids take `media` in order (see gemma4c_input). `logits` must hold n_ids * vocab floats. */
GEMMA4C_API int gemma4c_logits(gemma4c_session *session, const int32_t *ids, size_t n_ids, const gemma4c_media *media,
                               size_t n_media, float *logits, char *err, size_t err_len);

/* What an encoder makes of one medium, with its input as the reference processor prepares it. */
typedef struct gemma4c_features {
    int kind;                 /* gemma4c_media_kind */
    int64_t n_tokens, width;  /* soft tokens [n_tokens][width]: what replaces the placeholders (after the embedder) */
    float *tokens;
    int64_t n_blocks;         /* image: 1; audio: its <= 30 s segments; video: its sampled frames */
    int64_t *block_tokens;    /* [n_blocks] soft tokens per block */
    double seconds;           /* audio and video: the length */
    /* images (the last frame's for video: NULL): patches [n_patches][patch_dim] as bytes (pixel x 255), positions
     * [n_patches][2] (x, y), (-1, -1) for padding */
    int64_t n_patches, patch_dim;
    uint8_t *pixel_values;
    int32_t *positions;
    /* audio: log-mel [n_frames][n_mel] and the valid-frame mask [n_frames] (segments concatenated) */
    int64_t n_frames, n_mel;
    float *input_features;
    uint8_t *input_mask;
} gemma4c_features;

/* Encodes one medium on the session's model (gemma4c_cancel on the session interrupts it). *out is for
 * gemma4c_features_free. */
GEMMA4C_API int gemma4c_encode(gemma4c_session *session, const gemma4c_media *media, gemma4c_features **out, char *err,
                               size_t err_len);
GEMMA4C_API void gemma4c_features_free(gemma4c_features *features);

/* ==== Files =================================================================================================== */

typedef enum gemma4c_dtype { GEMMA4C_F32 = 1, GEMMA4C_I32, GEMMA4C_U8, GEMMA4C_BOOL } gemma4c_dtype;

typedef struct gemma4c_tensor {
    const char *name;
    int dtype;           /* gemma4c_dtype */
    int ndim;            /* 1..4 */
    int64_t shape[4];
    const void *data;    /* row-major */
} gemma4c_tensor;

/* Writes tensors to a safetensors file (about: the "__metadata__" note, may be NULL). The file appears whole or
 * not at all. */
GEMMA4C_API int gemma4c_save_tensors(const char *path, const gemma4c_tensor *tensors, size_t n, const char *about,
                                     char *err, size_t err_len);

/* Converts a Hugging Face checkpoint (directory or cached repo id) to one GGUF file. All fields may be zero. */
typedef struct gemma4c_convert_params {
    const char *quant;                /* "q4" (NULL), "q4-mix", "q6", "q8", "bf16", "f32" */
    const char *const *tensor_types;  /* overrides "PATTERN=TYPE" (fnmatch on tensor names; TYPE f32|f16|bf16|q8|q6|q4) */
    size_t n_tensor_types;
    int n_threads;                    /* 0: one per CPU */
    void (*progress)(void *user, size_t done, size_t total, const char *tensor); /* after each tensor; may be NULL */
    void *progress_user;
    /* What q4, q4-mix and q6 calibrate their rounding on (all unset: a built-in text of prose, code and a few languages,
     * through the model's tokenizer); its first 8192 tokens run through the float model. Read during the call only.
     * GEMMA4C_ERR_ARG when more than one is set, one is empty, the recipe is not q4/q4-mix/q6, or an id lies outside
     * the vocabulary. At most one of: */
    const char *calibration_text;     /* UTF-8 text through the model's tokenizer (e.g. from your own domain) */
    size_t calibration_text_len;
    const int32_t *calibration_ids;   /* token ids (for a checkpoint without a tokenizer gemma4c reads) */
    size_t n_calibration_ids;
    int no_calibration;               /* 1: round each block on its own (faster; measurably worse output) */
} gemma4c_convert_params;
GEMMA4C_API int gemma4c_convert(const char *model, const char *out_path, const gemma4c_convert_params *params, char *err,
                                size_t err_len);

/* ==== Measuring ================================================================================================ */

/* The machine's streaming-read bandwidth in GB/s: the best of `passes` reads of a `bytes` buffer by n_threads
 * threads (0: one per CPU); 0 when the buffer cannot be had. What decode speed is bounded by (benchmarks). */
GEMMA4C_API double gemma4c_read_bandwidth(int n_threads, size_t bytes, int passes);

#ifdef __cplusplus
}
#endif
#endif
