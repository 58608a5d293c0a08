/* kv_cache.h — one sequence's keys and values, in pages of positions drawn from a budget shared by all sequences. */
#ifndef G4_KV_CACHE_H
#define G4_KV_CACHE_H

#include <pthread.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"

/* Positions per page. A sequence holds at most one partly used page per layer, so small pages waste little; each
 * kv head's keys of a page are contiguous, so attention streams runs of this many keys. */
#define G4_KV_PAGE 64

/* The memory every sequence of a model draws its pages from: the backend's, up to a limit; thread-safe. */
typedef struct g4_kv_budget {
    pthread_mutex_t mu;
    g4_backend *be; /* where the pages live */
    int64_t limit;  /* bytes; 0: none */
    int64_t used;
} g4_kv_budget;

int g4_kv_budget_init(g4_kv_budget *b, int64_t limit, g4_backend *be);
void g4_kv_budget_destroy(g4_kv_budget *b);
int64_t g4_kv_budget_used(g4_kv_budget *b);

/* Pages of one layer that computes its own K/V; page i holds positions [i * G4_KV_PAGE, (i + 1) * G4_KV_PAGE) as
 * keys [kv_heads][G4_KV_PAGE][head_dim], then values in the same layout. NULL: not allocated, or released. */
typedef struct g4_kv_pages {
    float **page;
    int64_t n;              /* entries of page[] */
    int64_t kv_heads, head_dim;
    int sliding;
} g4_kv_pages;

typedef struct g4_kv_seq {
    const g4_model *m;
    g4_kv_budget *budget;
    int64_t n_ctx; /* positions it may hold */
    int64_t pos;   /* positions held */
    int64_t keep;  /* sliding layers keep this many positions before their window (cheap short rewinds) */
    g4_kv_pages *layers; /* [first_kv_shared]; KV-shared layers read their donor's */
    int64_t bytes;       /* held, counted in the budget */
} g4_kv_seq;

/* An empty sequence of at most n_ctx positions (n_ctx <= the model's maximum). */
int g4_kv_seq_init(g4_kv_seq *s, const g4_model *m, int64_t n_ctx, g4_kv_budget *budget, g4_err *err);
void g4_kv_seq_free(g4_kv_seq *s);

/* Makes room for positions [s->pos, end): allocates their pages and releases the sliding layers' pages that
 * positions from s->pos on can no longer see. GEMMA4C_ERR_CONTEXT past n_ctx, GEMMA4C_ERR_CAPACITY when the
 * budget cannot hold the pages, GEMMA4C_ERR_NOMEM; what the sequence holds stays valid on failure. */
int g4_kv_seq_reserve(g4_kv_seq *s, int64_t end, g4_err *err);

/* Bytes that reserving up to `end` would add (0 when the pages exist). */
int64_t g4_kv_seq_reserve_bytes(const g4_kv_seq *s, int64_t end);

/* Forgets positions from `pos` on and returns the count kept: `pos`, or 0 when a sliding layer has released
 * pages that a continuation at `pos` would need (the caller then recomputes from the start). Releases the pages
 * it no longer needs. */
int64_t g4_kv_seq_rewind(g4_kv_seq *s, int64_t pos);

/* The first position a sequence at `pos` keeps in own-cache layer l: 0 for full layers; for sliding layers the start
 * of the page holding the oldest key a continuation reads (what saving a state must write). */
int64_t g4_kv_seq_first_kept(const g4_kv_seq *s, int l, int64_t pos);
/* Empties the sequence and allocates the pages a sequence at `pos` keeps (to be filled by the caller: a restored
 * state). A state longer than the context or beyond the budget is refused before anything changes; an allocation
 * failure leaves the sequence empty. */
int g4_kv_seq_restore(g4_kv_seq *s, int64_t pos, g4_err *err);

/* Key / value row of kv head h at position p of own-cache layer l (its page must be held), in the backend's
 * memory. */
static inline float *g4_kv_key(const g4_kv_seq *s, int l, int64_t h, int64_t p) {
    const g4_kv_pages *k = &s->layers[l];
    return k->page[p / G4_KV_PAGE] + (h * G4_KV_PAGE + p % G4_KV_PAGE) * k->head_dim;
}
static inline float *g4_kv_value(const g4_kv_seq *s, int l, int64_t h, int64_t p) {
    const g4_kv_pages *k = &s->layers[l];
    return k->page[p / G4_KV_PAGE] + ((k->kv_heads + h) * G4_KV_PAGE + p % G4_KV_PAGE) * k->head_dim;
}
/* Positions from p on that lie in p's page, up to `last`: the run one contiguous read covers. */
static inline int64_t g4_kv_run(int64_t p, int64_t last) {
    int64_t page_end = (p / G4_KV_PAGE + 1) * G4_KV_PAGE - 1;
    return (last < page_end ? last : page_end) - p + 1;
}

/* Bytes of cache per token: full-attention layers, and sliding layers (which hold at most their window). */
void g4_kv_bytes_per_token(const g4_model *m, int64_t *full, int64_t *sliding);

#endif
