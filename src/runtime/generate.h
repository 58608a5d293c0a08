/* generate.h — the generation loop: prefill a prompt, then sample, stream and stop. */
#ifndef G4_GENERATE_H
#define G4_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "model/decoder.h"
#include "runtime/sampler.h"

enum g4_stop_reason { G4_STOP_NONE = 0, G4_STOP_EOS, G4_STOP_STRING, G4_STOP_MAX_TOKENS, G4_STOP_CONTEXT, G4_STOP_CALLER };

typedef struct g4_generate_params {
    int max_tokens;                 /* <= 0: until a stop or the context is full */
    const int32_t *stop_ids;        /* end-of-sequence ids (not printed) */
    size_t n_stop_ids;
    const char *const *stop_strings; /* generation ends before the first occurrence of any (not printed) */
    size_t n_stop_strings;
    int skip_special; /* do not print special tokens */
} g4_generate_params;

/* Receives text as it becomes final (never half a UTF-8 character, never a possible stop-string prefix).
 * Return non-zero to stop generating. */
typedef int (*g4_text_fn)(void *ctx, const char *text, size_t len);

typedef struct g4_generate_stats {
    int64_t prompt_tokens, generated_tokens;
    double prefill_seconds, decode_seconds, time_to_first_token;
    int stop_reason; /* g4_stop_reason */
} g4_generate_stats;

/* Continues the decoder's sequence with `prompt` and generates. Tokens generated are appended to `out_ids`
 * when it is not NULL. */
int g4_generate(g4_decoder *d, g4_sampler *s, const g4_tokenizer *tok, const int32_t *prompt, size_t n_prompt,
                const g4_generate_params *p, g4_text_fn on_text, void *ctx, g4_ids *out_ids,
                g4_generate_stats *stats, g4_err *err);

/* The same, with soft tokens for the prompt's multimodal placeholders (NULL: none). */
int g4_generate_with(g4_decoder *d, g4_sampler *s, const g4_tokenizer *tok, const int32_t *prompt, size_t n_prompt,
                     const g4_soft_tokens *soft, const g4_generate_params *p, g4_text_fn on_text, void *ctx,
                     g4_ids *out_ids, g4_generate_stats *stats, g4_err *err);

/* Streams text while holding back anything that could still turn into a stop string. */
typedef struct g4_stop_filter {
    const char *const *stops;
    size_t n_stops;
    g4_buf held;
    int stopped;
} g4_stop_filter;
/* Adds text; emits what is final through on_text. Sets f->stopped when a stop string appeared. */
int g4_stop_filter_push(g4_stop_filter *f, const char *text, size_t len, g4_text_fn on_text, void *ctx);
/* Emits whatever is held (at the end of generation without a stop string). */
int g4_stop_filter_flush(g4_stop_filter *f, g4_text_fn on_text, void *ctx);
void g4_stop_filter_free(g4_stop_filter *f);

#endif
