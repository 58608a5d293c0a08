/* calibrate.c — the text decoder over the built-in calibration text, each matrix's inputs gathered for GPTQ. */
#include "calibrate.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "model/decoder.h"
#include "model/model.h"

typedef struct calib_entry {
    char *name;
    int64_t K;
    float *gram; /* K rows of G4_GPTQ_SPAN: the diagonal blocks of Σ x x^T, then their factors */
} calib_entry;

struct g4_calib {
    calib_entry *e;
    size_t n, cap;
    int failed; /* out of memory while observing */
};

static calib_entry *entry_for(g4_calib *c, const char *name, int64_t K) {
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].K == K && strcmp(c->e[i].name, name) == 0) return &c->e[i];
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        calib_entry *e = realloc(c->e, cap * sizeof *e);
        if (!e) return NULL;
        c->e = e, c->cap = cap;
    }
    calib_entry *e = &c->e[c->n];
    e->name = strdup(name);
    e->K = K;
    e->gram = calloc((size_t)K * G4_GPTQ_SPAN, sizeof(float));
    if (!e->name || !e->gram) {
        free(e->name), free(e->gram);
        return NULL;
    }
    c->n++;
    return e;
}

/* Adds each row's x x^T, span by span, to the matrix's Gram blocks. */
static void observe(void *ctx, const g4_tensor *w, const float *x, int64_t T, int64_t K) {
    g4_calib *c = ctx;
    calib_entry *e = c->failed ? NULL : entry_for(c, w->name, K);
    if (!e) {
        c->failed = 1;
        return;
    }
    const int S = G4_GPTQ_SPAN;
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * K;
        for (int64_t b0 = 0; b0 < K; b0 += S) {
            const int n = (int)(K - b0 < S ? K - b0 : S);
            for (int i = 0; i < n; i++) {
                const float xi = xr[b0 + i];
                float *g = e->gram + (b0 + i) * S;
                if (xi != 0)
                    for (int j = 0; j < n; j++) g[j] += xi * xr[b0 + j];
            }
        }
    }
}

void g4_calib_free(g4_calib *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) free(c->e[i].name), free(c->e[i].gram);
    free(c->e);
    free(c);
}

const float *g4_calib_factor(const g4_calib *c, const char *name, int64_t K) {
    for (size_t i = 0; c && i < c->n; i++)
        if (c->e[i].K == K && strcmp(c->e[i].name, name) == 0) return c->e[i].gram;
    return NULL;
}

static int drop_logits(void *ctx, int64_t pos0, int64_t n, const float *logits, g4_err *err) {
    (void)ctx, (void)pos0, (void)n, (void)logits, (void)err;
    return 0;
}

/* The calibration tokens (given, or the text's) through the decoder, G4_CALIB_SEQ at a time after <bos>. */
static int run_text(g4_model *m, g4_backend *be, const char *text, size_t text_len, const int32_t *given,
                    size_t n_given, g4_err *err) {
    g4_ids ids = {0};
    g4_decoder d;
    g4_kv_budget budget;
    g4_kv_seq seq;
    int rc = given ? 0 : g4_tokenizer_encode(m->tok, text, text_len, &ids, err);
    if (rc) return rc;
    if (!given && !ids.n) return g4_fail(err, GEMMA4C_ERR_ARG, "the text gives no tokens");
    const int32_t *tokens = given ? given : ids.v;
    const size_t n_tokens = given ? n_given : ids.n;
    int32_t *chunk = malloc((G4_CALIB_SEQ + 1) * sizeof(int32_t));
    g4_kv_budget_init(&budget, 0, be);
    if (!chunk) rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    if (!rc) rc = g4_decoder_init(&d, m, be, 64, err);
    if (!rc && (rc = g4_kv_seq_init(&seq, m, G4_CALIB_SEQ + 1, &budget, err))) g4_decoder_free(&d);
    if (!rc) {
        const size_t n = n_tokens < G4_CALIB_TOKENS ? n_tokens : G4_CALIB_TOKENS;
        /* Every position's logits (streamed, then dropped), so that the output matrix sees every row too. */
        g4_forward_opts o = {.on_logits = drop_logits};
        for (size_t p = 0; !rc && p < n; p += G4_CALIB_SEQ) {
            const size_t len = n - p < G4_CALIB_SEQ ? n - p : G4_CALIB_SEQ;
            chunk[0] = m->cfg.text.bos_token_id;
            memcpy(chunk + 1, tokens + p, len * sizeof(int32_t));
            g4_kv_seq_rewind(&seq, 0);
            rc = g4_decoder_forward(&d, &seq, chunk, (int64_t)len + 1, &o, err);
        }
        g4_kv_seq_free(&seq);
        g4_decoder_free(&d);
    }
    g4_kv_budget_destroy(&budget);
    free(chunk);
    g4_ids_free(&ids);
    return rc;
}

int g4_calibrate(const char *dir, const char *text, size_t text_len, const int32_t *ids, size_t n_ids, int n_threads,
                 g4_calib **out, g4_err *err) {
    *out = NULL;
    if (!text) text = g4_calibration_text, text_len = g4_calibration_text_len;
    g4_model *m = NULL;
    g4_calib *c = calloc(1, sizeof *c);
    if (!c) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    int rc = g4_model_load_dir(dir, &m, err);
    if (!rc) {
        g4_compute comp;
        if (g4_compute_init(&comp, n_threads, g4_model_max_input_width(m)))
            rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        else {
            comp.observe = observe;
            comp.observe_ctx = c;
            g4_backend be;
            if (!(rc = g4_backend_cpu_init(&be, &comp, err))) {
                rc = run_text(m, &be, text, text_len, ids, n_ids, err);
                if (rc) g4_err_prefix(err, "calibration");
                be.destroy(&be);
            }
            g4_compute_free(&comp);
        }
    }
    if (!rc && c->failed) rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "calibration: out of memory");
    for (size_t i = 0; !rc && i < c->n; i++)
        if (g4_gptq_factor(c->e[i].gram, c->e[i].K))
            rc = g4_fail(err, GEMMA4C_ERR_INTERNAL, "calibration: the inputs of %s give no usable factor", c->e[i].name);
    g4_model_free(m);
    if (rc) {
        g4_calib_free(c);
        return rc;
    }
    *out = c;
    return 0;
}
