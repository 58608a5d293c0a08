/* sampler.h — choosing the next token from logits: greedy, or sampled after penalty/temperature/top-k/top-p/min-p. */
#ifndef G4_SAMPLER_H
#define G4_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "kernels/kernels.h"

typedef struct g4_sampler_params {
    int greedy;                /* argmax (ties: the lowest id, as torch.argmax) */
    float temperature;         /* > 0 when sampling */
    int top_k;                 /* 0: off */
    float top_p;               /* 1: off */
    float min_p;               /* 0: off */
    float repetition_penalty;  /* 1: off; applied to every id already in the sequence, as transformers does */
    float presence_penalty;    /* 0: off; subtracted once from every id the answer already has (OpenAI's rule) */
    float frequency_penalty;   /* 0: off; subtracted per occurrence in the answer */
    uint64_t seed;
} g4_sampler_params;

typedef struct g4_candidate {
    float logit;
    int32_t id;
} g4_candidate;

typedef struct g4_sampler {
    g4_sampler_params p;
    uint64_t rng[4];
    int vocab;
    const g4_kernel_ops *ops;  /* the argmax over the vocabulary */
    struct g4_candidate *cand; /* [vocab] */
    uint8_t *seen;  /* [vocab] ids that the penalty applies to */
    int32_t *count; /* [vocab] occurrences in the answer (presence / frequency penalties) */
} g4_sampler;

int g4_sampler_init(g4_sampler *s, const g4_sampler_params *p, int vocab, g4_err *err);
void g4_sampler_free(g4_sampler *s);
/* Whether g4_sampler_pick changes the logits it is given (a penalty is on): a caller that needs them as they were
 * (log-probabilities) copies them only then. */
int g4_sampler_changes_logits(const g4_sampler *s);

/* Picks a token. `logits` is modified; `history` is the sequence so far (for the repetition penalty), of which the
 * last n_answer ids are the answer (for the presence and frequency penalties). */
int32_t g4_sampler_pick(g4_sampler *s, float *logits, const int32_t *history, size_t n_history, size_t n_answer);

/* The k highest logits, highest first (ties: the lower id first); k <= n. */
void g4_top_k(const float *logits, int64_t n, int k, g4_candidate *out);

#endif
