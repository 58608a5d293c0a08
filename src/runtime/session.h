/* session.h — a model ready to talk: weights, threads, KV cache, and a prompt cache that reuses shared prefixes. */
#ifndef G4_SESSION_H
#define G4_SESSION_H

#include <cjson/cJSON.h>

#include "core/buf.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "model/model.h"
#include "runtime/generate.h"
#include "runtime/sampler.h"
#include "text/chat.h"

typedef struct g4_session_params {
    int n_threads;   /* <= 0: one per CPU */
    int64_t n_ctx;   /* <= 0: 4096 (capped by the model) */
    int64_t n_batch; /* prefill chunk; <= 0: 256 */
    const char *quant; /* synthetic models only: the convert recipe their weights follow (NULL: bf16) */
} g4_session_params;

typedef struct g4_session {
    g4_model *m;
    g4_compute c;
    g4_decoder d;
    g4_ids cached; /* the ids whose K/V the decoder holds, for prefix reuse */
    /* The encoders are bound on first use, so text-only work never touches their weights. */
    struct g4_vision *vision;
    struct g4_audio_encoder *audio;
} g4_session;

int g4_session_enable_vision(g4_session *s, g4_err *err);
int g4_session_enable_audio(g4_session *s, g4_err *err);

/* Finds a model: a directory, or a Hugging Face repo id ("google/gemma-4-E4B-it") in the local Hugging Face
 * cache. Writes the directory to `dir`. */
int g4_resolve_model_path(const char *name, char *dir, size_t dir_len, g4_err *err);

/* model: a directory or repo id, "synthetic:small|e2b|e4b", or NULL for the small synthetic model. */
int g4_session_open(const char *model, const g4_session_params *p, g4_session **out, g4_err *err);
void g4_session_close(g4_session *s);

/* Renders messages with the chat format and tokenizes the result (special tokens matched). */
int g4_session_chat_ids(g4_session *s, const cJSON *messages, const cJSON *tools, const g4_chat_options *opt,
                        g4_ids *out, g4_err *err);

/* Generates after `prompt`, reusing the longest prefix of it that the cache already holds. */
int g4_session_generate(g4_session *s, const int32_t *prompt, size_t n_prompt, const g4_generate_params *gp,
                        const g4_sampler_params *sp, g4_text_fn on_text, void *ctx, g4_generate_stats *stats,
                        g4_err *err);
/* The same for a prompt with multimodal placeholder runs (soft: G4_SOFT_KINDS streams); the cache is not
 * reused across media prompts. */
int g4_session_generate_media(g4_session *s, const int32_t *prompt, size_t n_prompt, const g4_soft_tokens *soft,
                              const g4_generate_params *gp, const g4_sampler_params *sp, g4_text_fn on_text,
                              void *ctx, g4_generate_stats *stats, g4_err *err);

/* Sampling settings from the model's generation_config.json (greedy when it says do_sample false). */
void g4_session_default_sampling(const g4_session *s, g4_sampler_params *sp);

#endif
