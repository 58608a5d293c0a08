/* decoder.h — the Gemma 4 text decoder over one sequence: batched prefill and one-token decode with a KV cache. */
#ifndef G4_DECODER_H
#define G4_DECODER_H

#include <stdint.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "model/model.h"

/* The KV cache of one layer that computes its own K/V. Position p lives in slot p % cap: sliding layers keep
 * only the window plus one chunk, full layers the whole context. Layout [kv_heads][cap][head_dim]. */
typedef struct g4_kv_layer {
    float *k, *v;
    int64_t cap;
} g4_kv_layer;

/* Optional outputs for tests and tools, written for every position of a forward call (row t of the call). */
typedef struct g4_probe {
    float *inputs_embeds;    /* [T, H] */
    float *per_layer_inputs; /* [T, L, P] */
    float *hidden_states;    /* [L + 1, T, H]: embeddings, each layer's output, the last after the final norm */
} g4_probe;

/* Receives logits [n, V] for positions pos0 .. pos0+n-1 of the sequence. */
typedef int (*g4_logits_fn)(void *ctx, int64_t pos0, int64_t n, const float *logits, g4_err *err);

typedef struct g4_decoder {
    const g4_model *m;
    g4_compute *c;
    int64_t n_ctx;     /* positions the cache can hold */
    int64_t pos;       /* positions already in the cache */
    int64_t max_chunk; /* tokens per batched step */
    g4_kv_layer *kv;   /* [num_layers]; empty for KV-shared layers */

    /* chunk scratch */
    float *x, *xn, *q, *k, *v, *attn, *proj, *gate, *up, *ple, *ple_gate, *ple_row, *rope_cos[2], *rope_sin[2];
    float *scores; /* per worker: scores_per_worker (query heads per kv head x n_ctx) */
    int64_t scores_per_worker;
    float *attn_parts, *attn_lse; /* key-split attention: each part's output rows and their log-sum-exp */
    float *logits; /* [logit_rows, V] */
    int32_t *lookup; /* [max_chunk] ids for the embedding tables (pad at multimodal placeholders) */
    int64_t *reach;  /* [max_chunk] last position each row attends to on sliding layers */
    int64_t logit_rows;
} g4_decoder;

int g4_decoder_init(g4_decoder *d, const g4_model *m, g4_compute *c, int64_t n_ctx, int64_t max_chunk, g4_err *err);
void g4_decoder_free(g4_decoder *d);
/* Forget everything after `pos` tokens (0: start a new sequence) and return the position kept: 0 instead of pos
 * when a sliding layer's ring has since reused the slots of the window before pos, so the caller recomputes. */
int64_t g4_decoder_rewind(g4_decoder *d, int64_t pos);

/* Soft tokens for the multimodal placeholders of one kind (image, video or audio): rows [n][H] that replace the
 * embeddings at that kind's placeholder ids, consumed in sequence order. */
typedef struct g4_soft_tokens {
    const float *rows;
    int64_t n;
} g4_soft_tokens;

enum { G4_SOFT_IMAGE = 0, G4_SOFT_VIDEO, G4_SOFT_AUDIO, G4_SOFT_KINDS };

typedef struct g4_forward_opts {
    g4_logits_fn on_logits; /* every position's logits (NULL: none) */
    void *ctx;
    float *last_logits;     /* [V]: the last position's logits (NULL: not needed) */
    g4_probe *probe;
    /* Placeholder ids (config image/video/audio_token_id) take these rows; their count must match exactly. */
    g4_soft_tokens soft[G4_SOFT_KINDS];
} g4_forward_opts;

/* Where a sequence of n tokens may be cut at or before `at` so that no bidirectional vision span (config
 * use_bidirectional_attention "vision") is split: `at` itself unless a span runs across it. */
int64_t g4_decoder_split_point(const g4_decoder *d, const int32_t *ids, int64_t n, int64_t at);

/* Appends T tokens to the sequence, running them in batches of max_chunk (a batch grows to hold a bidirectional
 * vision span whole). Ids outside the vocabulary and
 * sequences longer than the context are errors (nothing is appended then). */
int g4_decoder_forward(g4_decoder *d, const int32_t *ids, int64_t T, const g4_forward_opts *opts, g4_err *err);

/* Appends T tokens and writes the logits of every one of them to out [T, V]. */
int g4_decoder_forward_all_logits(g4_decoder *d, const int32_t *ids, int64_t T, float *out, g4_err *err);
/* The same with the soft tokens (and probe) of `opts`; its logit outputs are ignored. */
int g4_decoder_forward_all_logits_with(g4_decoder *d, const int32_t *ids, int64_t T, const g4_forward_opts *opts,
                                       float *out, g4_err *err);

#endif
