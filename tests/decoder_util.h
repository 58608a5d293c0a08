/* decoder_util.h — tests' text decoder with one sequence: a compute context, the CPU backend over it, a KV budget. */
#ifndef G4_TEST_DECODER_UTIL_H
#define G4_TEST_DECODER_UTIL_H

#include <string.h>

#include "backend/backend.h"
#include "model/decoder.h"
#include "model/kv_cache.h"

typedef struct g4t_decoder {
    g4_compute c;
    g4_backend be;
    g4_kv_budget budget;
    g4_decoder d;
    g4_kv_seq seq;
    int opened; /* how many of the above are set up, in that order */
} g4t_decoder;

/* threads <= 0: one per CPU; rows: the decoder's step size; n_ctx: the sequence's positions. */
static inline int g4t_decoder_open(g4t_decoder *t, const g4_model *m, int threads, int64_t rows, int64_t n_ctx,
                                   g4_err *err) {
    memset(t, 0, sizeof *t);
    if (g4_compute_init(&t->c, threads, g4_model_max_input_width(m)))
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "cannot start a compute context");
    t->opened = 1;
    int rc = g4_backend_cpu_init(&t->be, &t->c, err);
    if (!rc) t->opened = 2, rc = g4_kv_budget_init(&t->budget, 0, &t->be) ? g4_fail(err, GEMMA4C_ERR_INTERNAL, "lock") : 0;
    if (!rc) t->opened = 3, rc = g4_decoder_init(&t->d, m, &t->be, rows, err);
    if (!rc) t->opened = 4, rc = g4_kv_seq_init(&t->seq, m, n_ctx, &t->budget, err);
    if (!rc) t->opened = 5;
    return rc;
}

static inline void g4t_decoder_close(g4t_decoder *t) {
    if (t->opened >= 5) g4_kv_seq_free(&t->seq);
    if (t->opened >= 4) g4_decoder_free(&t->d);
    if (t->opened >= 3) g4_kv_budget_destroy(&t->budget);
    if (t->opened >= 2) t->be.destroy(&t->be);
    if (t->opened >= 1) g4_compute_free(&t->c);
    t->opened = 0;
}

#endif
