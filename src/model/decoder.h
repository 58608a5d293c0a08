/* decoder.h — the Gemma 4 text decoder: one batched step over rows of many sequences, each with its own KV cache. */
#ifndef G4_DECODER_H
#define G4_DECODER_H

#include <stdint.h>

#include "core/error.h"
#include "backend/backend.h"
#include "model/kv_cache.h"
#include "model/model.h"

/* Optional outputs for tests and tools, written for every row of a single-sequence step (row t of the call). */
typedef struct g4_probe {
    float *inputs_embeds;    /* [T, H] */
    float *per_layer_inputs; /* [T, L, P] */
    float *hidden_states;    /* [L + 1, T, H]: embeddings, each layer's output, the last after the final norm */
} g4_probe;

/* Receives logits [n, V] for positions pos0 .. pos0+n-1 of a sequence. */
typedef int (*g4_logits_fn)(void *ctx, int64_t pos0, int64_t n, const float *logits, g4_err *err);

enum { G4_LOGITS_NONE = 0, G4_LOGITS_LAST, G4_LOGITS_ALL };

/* Tokens that continue one sequence from seq->pos. */
typedef struct g4_span {
    g4_kv_seq *seq;
    const int32_t *ids;
    int64_t n;
    /* [n] or NULL: the embedding row a multimodal placeholder takes (a soft token). A placeholder with no row
     * embeds as the pad token, as the reference embeds every placeholder id it is given without media. */
    const float *const *soft;
    int logits;             /* G4_LOGITS_*: which rows' logits are wanted */
    float *out;             /* [1 or n][V] ... */
    g4_logits_fn on_logits; /* ... or (ALL, out NULL) slices of rows through this */
    void *ctx;
} g4_span;

/* Checked between layers; non-zero stops the step (GEMMA4C_ERR_CANCELLED, no sequence advances). */
typedef int (*g4_abort_fn)(void *ctx);

typedef struct g4_decoder {
    const g4_model *m;
    g4_backend *be;
    int64_t max_rows; /* rows the scratch holds (grows for a longer step) */
    /* per row, backend buffers */
    float *x, *xn, *q, *k, *v, *attn, *proj, *gate, *up, *ple, *ple_gate, *ple_row, *rope_cos[2], *rope_sin[2];
    float *logits; /* [logit_rows, V] */
    /* per row, host */
    g4_kv_seq **row_seq;
    int64_t *row_pos;
    int64_t *first[2], *last[2]; /* per layer type: the key positions each row attends to */
    int32_t *lookup;             /* ids for the embedding tables (pad at placeholders) */
    int32_t *span_of;            /* the span each row belongs to */
    float *host_rope;            /* cos/sin tables as computed, before they are uploaded */
    float *host_logits;          /* [logit_rows, V] when the backend's memory is not the host's */
    int64_t logit_rows;
    int32_t *logit_src; /* rows whose logits a slice computes */
    g4_kv_view *views;  /* [max_rows]: one per span */
    const g4_kv_view **row_view;
} g4_decoder;

/* Scratch for steps of up to max_rows rows (<= 0: 256) on backend be, which holds the sequences' caches. */
int g4_decoder_init(g4_decoder *d, const g4_model *m, g4_backend *be, int64_t max_rows, g4_err *err);
void g4_decoder_free(g4_decoder *d);

/* One batched forward: every span's rows go through each matrix product together; attention is per row against
 * its own sequence's cache (sliding windows, KV-shared layers, bidirectional vision spans). Spans must belong to
 * different sequences; a bidirectional vision span must not be cut between steps (g4_decoder_split_point).
 * Reserves the sequences' KV pages first (errors then leave every sequence as it was), then computes; on success
 * each sequence has advanced by its span's length. probe needs exactly one span. */
int g4_decoder_step(g4_decoder *d, const g4_span *spans, int n_spans, g4_probe *probe, g4_abort_fn abort_fn,
                    void *abort_ctx, g4_err *err);

/* Where ids[0..n) may be cut at or before `at` without splitting a bidirectional vision span (config
 * use_bidirectional_attention "vision"): `at` itself unless a span runs across it (then possibly 0). */
int64_t g4_decoder_split_point(const g4_model *m, const int32_t *ids, int64_t n, int64_t at);
/* How many of ids[0..n) the next step should take when at most `budget` rows are free: budget, or less so as
 * not to cut a vision span, or more when a span longer than budget starts at 0 (it runs whole). */
int64_t g4_decoder_chunk(const g4_model *m, const int32_t *ids, int64_t n, int64_t budget);

/* Soft tokens of one kind (image, video or audio), rows [n][H] in sequence order. */
typedef struct g4_soft_tokens {
    const float *rows;
    int64_t n;
} g4_soft_tokens;

enum { G4_SOFT_IMAGE = 0, G4_SOFT_VIDEO, G4_SOFT_AUDIO, G4_SOFT_KINDS };

/* Which soft-token kind a placeholder id is, or -1. */
int g4_soft_kind(const g4_model *m, int32_t id);
/* out[t] for t < T: the next row of its kind's stream at each placeholder of a kind whose stream has rows, else
 * NULL. A kind with rows must have exactly as many as placeholders. */
int g4_soft_assign(const g4_model *m, const int32_t *ids, int64_t T, const g4_soft_tokens soft[G4_SOFT_KINDS],
                   const float **out, g4_err *err);

/* ---- One sequence at a time (tests and tools) ------------------------------------------------------------ */
typedef struct g4_forward_opts {
    float *all_logits;      /* [T, V]: every position's logits ... */
    g4_logits_fn on_logits; /* ... or streamed in slices */
    void *ctx;
    float *last_logits;     /* [V]: the last position's */
    g4_probe *probe;
    const g4_soft_tokens *soft; /* [G4_SOFT_KINDS] or NULL (see g4_soft_assign) */
} g4_forward_opts;

/* Appends T tokens to seq in steps of up to d->max_rows rows. Ids outside the vocabulary and sequences longer
 * than the context are errors (nothing is appended then). */
int g4_decoder_forward(g4_decoder *d, g4_kv_seq *seq, const int32_t *ids, int64_t T, const g4_forward_opts *opts,
                       g4_err *err);

#endif
