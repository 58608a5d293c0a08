/* decoder_util.h — tests' text decoder with one sequence: a compute context, a backend (the CPU's over it, or the
 * CUDA one, as the test's --device option says), a KV budget. */
#ifndef G4_TEST_DECODER_UTIL_H
#define G4_TEST_DECODER_UTIL_H

#include <string.h>

#include "backend/backend.h"
#include "kernels/cuda/cuda_quant.h"
#include "model/decoder.h"
#include "model/kv_cache.h"
#include "test.h"

typedef struct g4t_decoder {
    g4_compute c;
    g4_backend be;
    g4_kv_budget budget;
    g4_decoder d;
    g4_kv_seq seq;
    int cuda;
    int opened; /* how many of the above are set up, in that order */
} g4t_decoder;

/* Before a long setup (a full-size model, conversions): a test on "cuda" where no GPU can be used skips now. */
static inline void g4t_require_device(void) {
    g4_cuda_info info;
    g4_err err = {0};
    if (strcmp(g4t_device, "cuda") == 0 && g4_cuda_probe(&info, &err)) g4t_skip_without_device(err.code, err.msg);
}

/* threads <= 0: one per CPU; rows: the decoder's step size; n_ctx: the sequence's positions. On g4t_device. When
 * that is "cuda" and the backend cannot start for want of a GPU or of CUDA in this build, the test ends as skipped. */
static inline int g4t_decoder_open(g4t_decoder *t, const g4_model *m, int threads, int64_t rows, int64_t n_ctx,
                                   g4_err *err) {
    memset(t, 0, sizeof *t);
    if (g4_compute_init(&t->c, threads, g4_model_max_input_width(m)))
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "cannot start a compute context");
    t->opened = 1;
    t->cuda = strcmp(g4t_device, "cuda") == 0;
    if (!t->cuda && strcmp(g4t_device, "cpu") != 0) return g4_fail(err, GEMMA4C_ERR_ARG, "unknown device %s", g4t_device);
    int rc = t->cuda ? g4_backend_cuda_init(&t->be, m, err) : g4_backend_cpu_init(&t->be, &t->c, err);
    g4t_skip_without_device(rc, err->msg);
    if (!rc) t->opened = 2, rc = g4_kv_budget_init(&t->budget, 0, &t->be) ? g4_fail(err, GEMMA4C_ERR_INTERNAL, "lock") : 0;
    if (!rc) t->opened = 3, rc = g4_decoder_init(&t->d, m, &t->be, rows, err);
    if (!rc) t->opened = 4, rc = g4_kv_seq_init(&t->seq, m, n_ctx, &t->budget, err);
    if (!rc) t->opened = 5;
    return rc;
}

/* Waits for the backend's queued work; its first failure, if any. */
static inline int g4t_decoder_sync(g4t_decoder *t, g4_err *err) {
    return t->cuda ? g4_backend_cuda_sync(&t->be, err) : 0;
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
