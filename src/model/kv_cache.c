/* kv_cache.c — paged KV caches: pages allocated as a sequence grows, sliding layers' old pages released. */
#include "kv_cache.h"

#include <stdlib.h>
#include <string.h>

int g4_kv_budget_init(g4_kv_budget *b, int64_t limit, g4_backend *be) {
    b->be = be;
    b->limit = limit > 0 ? limit : 0;
    b->used = 0;
    return pthread_mutex_init(&b->mu, NULL) ? -1 : 0;
}

void g4_kv_budget_destroy(g4_kv_budget *b) { pthread_mutex_destroy(&b->mu); }

int64_t g4_kv_budget_used(g4_kv_budget *b) {
    pthread_mutex_lock(&b->mu);
    int64_t used = b->used;
    pthread_mutex_unlock(&b->mu);
    return used;
}

/* Takes `bytes` from the budget; 0 when they do not fit. */
static int budget_take(g4_kv_budget *b, int64_t bytes) {
    pthread_mutex_lock(&b->mu);
    int ok = !b->limit || b->used + bytes <= b->limit;
    if (ok) b->used += bytes;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

static void budget_give(g4_kv_budget *b, int64_t bytes) {
    pthread_mutex_lock(&b->mu);
    b->used -= bytes;
    pthread_mutex_unlock(&b->mu);
}

static int64_t page_bytes(const g4_kv_pages *k) {
    return 2 * k->kv_heads * G4_KV_PAGE * k->head_dim * (int64_t)sizeof(float);
}

void g4_kv_bytes_per_token(const g4_model *m, int64_t *full, int64_t *sliding) {
    const g4_text_config *c = &m->cfg.text;
    *full = *sliding = 0;
    for (int l = 0; l < c->first_kv_shared; l++) {
        int64_t b = 2 * (int64_t)c->layer_kv_heads[l] * c->layer_head_dim[l] * (int64_t)sizeof(float);
        if (c->layer_type[l] == G4_LAYER_SLIDING) *sliding += b;
        else *full += b;
    }
}

int g4_kv_seq_init(g4_kv_seq *s, const g4_model *m, int64_t n_ctx, g4_kv_budget *budget, g4_err *err) {
    memset(s, 0, sizeof *s);
    const g4_text_config *c = &m->cfg.text;
    if (n_ctx <= 0 || n_ctx > c->max_position_embeddings)
        return g4_fail(err, GEMMA4C_ERR_ARG, "a context of %lld tokens (this model takes 1..%d)", (long long)n_ctx,
                       c->max_position_embeddings);
    s->layers = calloc((size_t)(c->first_kv_shared > 0 ? c->first_kv_shared : 1), sizeof *s->layers);
    if (!s->layers) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    s->m = m;
    s->budget = budget;
    s->n_ctx = n_ctx;
    s->keep = 2 * G4_KV_PAGE;
    for (int l = 0; l < c->first_kv_shared; l++)
        s->layers[l] = (g4_kv_pages){NULL, 0, c->layer_kv_heads[l], c->layer_head_dim[l],
                                     c->layer_type[l] == G4_LAYER_SLIDING};
    return 0;
}

static void release_page(g4_kv_seq *s, g4_kv_pages *k, int64_t i) {
    if (!k->page[i]) return;
    s->budget->be->release(s->budget->be, k->page[i]);
    k->page[i] = NULL;
    s->bytes -= page_bytes(k);
    budget_give(s->budget, page_bytes(k));
}

void g4_kv_seq_free(g4_kv_seq *s) {
    if (!s->layers) return;
    for (int l = 0; l < s->m->cfg.text.first_kv_shared; l++) {
        g4_kv_pages *k = &s->layers[l];
        for (int64_t i = 0; i < k->n; i++) release_page(s, k, i);
        free(k->page);
    }
    free(s->layers);
    memset(s, 0, sizeof *s);
}

/* The first position a continuation from `pos` reads on sliding layers, less the kept slack. */
static int64_t sliding_floor(const g4_kv_seq *s, int64_t pos) {
    int64_t f = pos - s->m->cfg.text.sliding_window + 1 - s->keep;
    return f > 0 ? f : 0;
}

int64_t g4_kv_seq_reserve_bytes(const g4_kv_seq *s, int64_t end) {
    int64_t bytes = 0;
    if (end <= s->pos) return 0;
    for (int l = 0; l < s->m->cfg.text.first_kv_shared; l++) {
        const g4_kv_pages *k = &s->layers[l];
        for (int64_t i = s->pos / G4_KV_PAGE; i <= (end - 1) / G4_KV_PAGE; i++)
            if (i >= k->n || !k->page[i]) bytes += page_bytes(k);
    }
    return bytes;
}

int g4_kv_seq_reserve(g4_kv_seq *s, int64_t end, g4_err *err) {
    if (end > s->n_ctx)
        return g4_fail(err, GEMMA4C_ERR_CONTEXT, "%lld tokens do not fit the context: %lld of %lld positions used",
                       (long long)(end - s->pos), (long long)s->pos, (long long)s->n_ctx);
    if (end <= s->pos) return 0;
    const int64_t floor = sliding_floor(s, s->pos), last_page = (end - 1) / G4_KV_PAGE;
    for (int l = 0; l < s->m->cfg.text.first_kv_shared; l++) {
        g4_kv_pages *k = &s->layers[l];
        if (k->sliding)
            for (int64_t i = 0; i < k->n && (i + 1) * G4_KV_PAGE <= floor; i++) release_page(s, k, i);
    }
    const int64_t need = g4_kv_seq_reserve_bytes(s, end);
    if (need && !budget_take(s->budget, need)) {
        int64_t used = g4_kv_budget_used(s->budget);
        return g4_fail(err, GEMMA4C_ERR_CAPACITY,
                       "the KV budget of %.1f MiB is exhausted (%.1f MiB in use; this sequence needs %.1f MiB more)",
                       (double)s->budget->limit / 1048576.0, (double)used / 1048576.0, (double)need / 1048576.0);
    }
    int64_t taken = need; /* what the budget still owes back if an allocation fails */
    for (int l = 0; l < s->m->cfg.text.first_kv_shared; l++) {
        g4_kv_pages *k = &s->layers[l];
        if (last_page >= k->n) {
            int64_t n = last_page + 1 + last_page / 2;
            float **grown = realloc(k->page, (size_t)n * sizeof *grown);
            if (!grown) goto nomem;
            memset(grown + k->n, 0, (size_t)(n - k->n) * sizeof *grown);
            k->page = grown;
            k->n = n;
        }
        for (int64_t i = s->pos / G4_KV_PAGE; i <= last_page; i++) {
            if (k->page[i]) continue;
            if (!(k->page[i] = s->budget->be->alloc(s->budget->be, (size_t)page_bytes(k)))) goto nomem;
            s->bytes += page_bytes(k);
            taken -= page_bytes(k);
        }
    }
    return 0;
nomem:
    budget_give(s->budget, taken);
    return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for the KV cache of %lld positions", (long long)end);
}

int64_t g4_kv_seq_rewind(g4_kv_seq *s, int64_t pos) {
    if (pos < 0 || pos > s->pos) return s->pos;
    const int64_t need = pos - s->m->cfg.text.sliding_window + 1; /* the oldest key a continuation reads */
    for (int l = 0; l < s->m->cfg.text.first_kv_shared && pos > 0; l++) {
        const g4_kv_pages *k = &s->layers[l];
        int64_t i = (need > 0 ? need : 0) / G4_KV_PAGE;
        if (k->sliding && (i >= k->n || !k->page[i])) pos = 0;
    }
    for (int l = 0; l < s->m->cfg.text.first_kv_shared; l++) {
        g4_kv_pages *k = &s->layers[l];
        for (int64_t i = (pos + G4_KV_PAGE - 1) / G4_KV_PAGE; i < k->n; i++) release_page(s, k, i);
    }
    s->pos = pos;
    return pos;
}

int64_t g4_kv_seq_first_kept(const g4_kv_seq *s, int l, int64_t pos) {
    if (!s->layers[l].sliding) return 0;
    int64_t need = pos - s->m->cfg.text.sliding_window + 1;
    return (need > 0 ? need : 0) / G4_KV_PAGE * G4_KV_PAGE;
}

int g4_kv_seq_restore(g4_kv_seq *s, int64_t pos, g4_err *err) {
    if (pos > s->n_ctx)
        return g4_fail(err, GEMMA4C_ERR_CONTEXT, "a state of %lld tokens does not fit a context of %lld", (long long)pos,
                       (long long)s->n_ctx);
    int64_t need = 0;
    for (int l = 0; pos > 0 && l < s->m->cfg.text.first_kv_shared; l++)
        need += ((pos - 1) / G4_KV_PAGE - g4_kv_seq_first_kept(s, l, pos) / G4_KV_PAGE + 1) * page_bytes(&s->layers[l]);
    /* what the sequence holds now is given back first: refuse before touching it if even that is not enough */
    pthread_mutex_lock(&s->budget->mu);
    int fits = !s->budget->limit || s->budget->used - s->bytes + need <= s->budget->limit;
    pthread_mutex_unlock(&s->budget->mu);
    if (!fits)
        return g4_fail(err, GEMMA4C_ERR_CAPACITY, "the KV budget cannot hold a state of %lld tokens (%.1f MiB)",
                       (long long)pos, (double)need / 1048576.0);
    g4_kv_seq_rewind(s, 0);
    if (pos <= 0) return 0;
    if (!budget_take(s->budget, need))
        return g4_fail(err, GEMMA4C_ERR_CAPACITY, "the KV budget cannot hold a state of %lld tokens (%.1f MiB)",
                       (long long)pos, (double)need / 1048576.0);
    for (int l = 0; l < s->m->cfg.text.first_kv_shared; l++) {
        g4_kv_pages *k = &s->layers[l];
        const int64_t last = (pos - 1) / G4_KV_PAGE;
        if (last >= k->n) {
            float **grown = realloc(k->page, (size_t)(last + 1) * sizeof *grown);
            if (!grown) goto nomem;
            memset(grown + k->n, 0, (size_t)(last + 1 - k->n) * sizeof *grown);
            k->page = grown;
            k->n = last + 1;
        }
        for (int64_t i = g4_kv_seq_first_kept(s, l, pos) / G4_KV_PAGE; i <= last; i++) {
            if (!(k->page[i] = s->budget->be->alloc(s->budget->be, (size_t)page_bytes(k)))) goto nomem;
            s->bytes += page_bytes(k);
            need -= page_bytes(k);
        }
    }
    s->pos = pos;
    return 0;
nomem:
    budget_give(s->budget, need);
    s->pos = 0;
    g4_kv_seq_rewind(s, 0);
    return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for a state of %lld tokens", (long long)pos);
}
