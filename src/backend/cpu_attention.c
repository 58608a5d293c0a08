/* cpu_attention.c — the CPU backend's attention: softmax attention over paged or dense keys, the kv writes, and
 * the audio encoder's chunked local attention. */
#include "backend/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Query rows that share their keys (same view and range) score them together, up to this many. */
enum { ATTN_TILE = 16 };

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static float *kv_key(const g4_kv_view *v, int64_t h, int64_t p) {
    return v->page[p / v->page_len] + h * v->head_stride + p % v->page_len * v->pos_stride;
}
/* Positions from p on that lie in p's page, up to `last`: what one contiguous read covers. */
static int64_t kv_run(const g4_kv_view *v, int64_t p, int64_t last) {
    const int64_t page_end = (p / v->page_len + 1) * v->page_len - 1;
    return (last < page_end ? last : page_end) - p + 1;
}

void g4_cpu_kv_write(g4_backend *b, const g4_kv_view *const *view, const int64_t *pos, int64_t rows,
                         int64_t kv_heads, int64_t head_dim, const float *k, const float *v) {
    (void)b;
    const size_t bytes = (size_t)head_dim * sizeof(float);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t h = 0; h < kv_heads; h++) {
            float *key = kv_key(view[r], h, pos[r]);
            memcpy(key, k + (r * kv_heads + h) * head_dim, bytes);
            memcpy(key + view[r]->value_offset, v + (r * kv_heads + h) * head_dim, bytes);
        }
}

typedef struct attn_job {
    cpu_backend *cb;
    const g4_attention *a;
    int64_t tiles, parts;
    int64_t scores_per_worker;
} attn_job;

/* The keys of one item: part `part` of the tile's range [first, last]. */
static void item_keys(const attn_job *j, int64_t r0, int64_t part, int64_t *lo, int64_t *hi) {
    const int64_t first = j->a->first[r0], n = j->a->last[r0] - first + 1;
    *lo = first + n * part / j->parts;
    *hi = first + n * (part + 1) / j->parts - 1;
}

/* One (kv head, tile of rows, part of the keys) per item, kv head outermost so that a worker's consecutive items
 * read the same head's keys (a vision tile's neighbours, or prefill rows of one sequence, share them): the tile's
 * queries of that kv head score the keys
 * together (each key read once per query set), softmax, weighted values. A lone row's query heads form the set
 * (a decode step: each key read once for all of them); a tile of rows is scored one query head at a time. With
 * one part the output is final; with several, each part's output is normalised over its own keys and kept with
 * its log-sum-exp for combine_parts. */
static void attention_range(void *ctx, int64_t begin, int64_t end, int worker) {
    const attn_job *j = ctx;
    const g4_attention *a = j->a;
    const g4_kernel_ops *ops = j->cb->c->ops;
    const int64_t D = a->head_dim, nkv = a->kv_heads, G = a->heads / nkv;
    float *scores = j->cb->scores + (size_t)worker * (size_t)j->scores_per_worker;
    for (int64_t item = begin; item < end; item++) {
        const int64_t kvh = item / (j->tiles * j->parts), tile = item / j->parts % j->tiles, part = item % j->parts;
        const int64_t r0 = j->cb->tile[tile], R = j->cb->tile[tile + 1] - r0;
        const g4_kv_view *view = a->view[r0];
        int64_t lo, hi;
        item_keys(j, r0, part, &lo, &hi);
        const int64_t nk = hi - lo + 1;
        const int split = j->parts > 1;
        /* query set s (one row's G heads, or one head's R rows): its first vector, their stride and count */
        const int64_t sets = R == 1 ? 1 : G, per_set = R == 1 ? G : R, qstride = R == 1 ? D : a->heads * D;
        for (int64_t s = 0; s < sets; s++) {
            const int64_t head0 = kvh * G + (R == 1 ? 0 : s);
            const float *q = a->q + (r0 * a->heads + head0) * D;
            float *out = split ? j->cb->parts + ((item * ATTN_TILE * G) + s * per_set) * D : a->out + (r0 * a->heads + head0) * D;
            const int64_t ostride = split ? D : qstride;
            float *lse = split ? j->cb->lse + item * ATTN_TILE * G + s * per_set : NULL;
            for (int64_t i = 0; i < per_set; i++) memset(out + i * ostride, 0, (size_t)D * sizeof(float));
            if (nk <= 0) { /* more parts than keys, or an empty range */
                for (int64_t i = 0; split && i < per_set; i++) lse[i] = -INFINITY;
                continue;
            }
            for (int64_t p = lo, run; p <= hi; p += run) {
                run = kv_run(view, p, hi);
                ops->scores(scores + (p - lo), nk, q, qstride, per_set, kv_key(view, kvh, p), view->pos_stride, run, D);
            }
            for (int64_t i = 0; i < per_set; i++) {
                const float log_sum = ops->softmax(scores + i * nk, nk);
                if (split) lse[i] = log_sum;
            }
            for (int64_t p = lo, run; p <= hi; p += run) {
                run = kv_run(view, p, hi);
                ops->weighted_sum(out, ostride, scores + (p - lo), nk, per_set,
                                  kv_key(view, kvh, p) + view->value_offset, view->pos_stride, run, D);
            }
        }
    }
}

/* Each query's output from its key parts: softmax over all keys = each part's softmax weighted by exp(its
 * log-sum-exp - the total's). */
static void combine_parts(const attn_job *j) {
    const g4_attention *a = j->a;
    const g4_kernel_ops *ops = j->cb->c->ops;
    const int64_t D = a->head_dim, nkv = a->kv_heads, G = a->heads / nkv;
    for (int64_t tile = 0; tile < j->tiles; tile++) {
        const int64_t r0 = j->cb->tile[tile], R = j->cb->tile[tile + 1] - r0;
        for (int64_t kvh = 0; kvh < nkv; kvh++) {
            const int64_t item0 = (kvh * j->tiles + tile) * j->parts;
            for (int64_t i = 0; i < R * G; i++) { /* set-major, as attention_range stored them */
                const int64_t row = R == 1 ? 0 : i % R, head = kvh * G + (R == 1 ? i : i / R);
                float top = -INFINITY, total = 0;
                for (int64_t p = 0; p < j->parts; p++) top = fmaxf(top, j->cb->lse[(item0 + p) * ATTN_TILE * G + i]);
                float *out = a->out + ((r0 + row) * a->heads + head) * D;
                memset(out, 0, (size_t)D * sizeof(float));
                if (top == -INFINITY) continue;
                for (int64_t p = 0; p < j->parts; p++) {
                    float *lse = &j->cb->lse[(item0 + p) * ATTN_TILE * G + i];
                    total += *lse = expf(*lse - top);
                }
                for (int64_t p = 0; p < j->parts; p++)
                    ops->axpy(out, j->cb->lse[(item0 + p) * ATTN_TILE * G + i] / total,
                              j->cb->parts + ((item0 + p) * ATTN_TILE * G + i) * D, D);
            }
        }
    }
}

int g4_cpu_grow(float **buf, int64_t *have, int64_t want) {
    if (want <= *have) return 0;
    float *p = malloc((size_t)want * sizeof(float));
    if (!p) return -1;
    free(*buf);
    *buf = p;
    *have = want;
    return 0;
}

int g4_cpu_attention(g4_backend *b, const g4_attention *a, g4_err *err) {
    cpu_backend *cb = b->impl;
    const int64_t nkv = a->kv_heads, G = a->heads / nkv, threads = g4_pool_size(cb->c->pool);
    if (a->rows + 1 > cb->tile_cap) {
        int64_t *t = realloc(cb->tile, (size_t)(a->rows + 1) * sizeof *t);
        if (!t) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for attention over %lld rows", (long long)a->rows);
        cb->tile = t;
        cb->tile_cap = a->rows + 1;
    }
    /* tiles: runs of rows with one view and one key range */
    int64_t tiles = 0, keys = 1;
    for (int64_t r = 0; r < a->rows; r++) {
        keys = max64(keys, a->last[r] - a->first[r] + 1);
        const int64_t t0 = tiles ? cb->tile[tiles - 1] : -1;
        if (!tiles || r - t0 >= ATTN_TILE || a->view[r] != a->view[t0] || a->first[r] != a->first[t0] ||
            a->last[r] != a->last[t0])
            cb->tile[tiles++] = r;
    }
    cb->tile[tiles] = a->rows;
    /* A decode step of one sequence has one item per kv head (E2B: one): split the keys so that every worker has
     * some, each reading its share of the cache once. (Splitting the query heads instead had every worker read
     * the whole cache.) */
    attn_job job = {cb, a, tiles, tiles * nkv < threads ? (threads + tiles * nkv - 1) / (tiles * nkv) : 1,
                    max64(G, ATTN_TILE) * keys};
    const int64_t items = tiles * nkv * job.parts, per_item = ATTN_TILE * G;
    if (g4_cpu_grow(&cb->scores, &cb->scores_floats, threads * job.scores_per_worker))
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for attention over %lld keys", (long long)keys);
    if (job.parts > 1 && (g4_cpu_grow(&cb->parts, &cb->part_floats, items * per_item * a->head_dim) ||
                          g4_cpu_grow(&cb->lse, &cb->lse_floats, items * per_item)))
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for attention");
    g4_pool_for(cb->c->pool, items, 1, attention_range, &job);
    if (job.parts > 1) combine_parts(&job);
    return 0;
}


typedef struct local_job {
    const g4_local_attention *a;
    const g4_kernel_ops *ops;
    float *scores; /* per worker: context + 1 floats */
} local_job;

/* One (position, head) per item. */
static void local_range(void *ctx, int64_t begin, int64_t end, int worker) {
    const local_job *j = ctx;
    const g4_local_attention *a = j->a;
    const g4_kernel_ops *ops = j->ops;
    const int64_t hd = a->head_dim, nh = a->heads, D = nh * hd;
    float *s = j->scores + (int64_t)worker * (a->context + 1);
    for (int64_t item = begin; item < end; item++) {
        const int64_t t = item / nh, h = item % nh;
        const int64_t lo = max64(0, t - a->past + 1), hi = min64(a->T - 1, t + max64(0, a->future - 1));
        const float *q = a->q + t * D + h * hd;
        float *o = a->out + t * D + h * hd;
        int any = 0;
        for (int64_t kk = lo; kk <= hi; kk++) {
            s[kk - lo] = -INFINITY;
            if (!a->valid[kk]) continue;
            const int64_t rel = a->past - (t - kk);
            float logit = ops->dot(q, a->k + kk * D + h * hd, hd);
            if (rel < a->n_rel) logit += ops->dot(q, a->rel_k + rel * D + h * hd, hd);
            s[kk - lo] = a->cap * tanhf(logit / a->cap);
            any = 1;
        }
        memset(o, 0, (size_t)hd * sizeof(float));
        if (any) {
            g4_softmax(s, hi - lo + 1);
            for (int64_t kk = lo; kk <= hi; kk++)
                if (a->valid[kk]) ops->axpy(o, s[kk - lo], a->v + kk * D + h * hd, hd);
            continue;
        }
        /* No valid key (only for padding positions): every slot of the block's context holds -1e9, so the
         * reference averages all of them uniformly, the zero padding beyond the sequence included. */
        const int64_t first = t / a->chunk * a->chunk - a->past;
        for (int64_t kk = max64(0, first); kk < min64(a->T, first + a->context); kk++)
            ops->axpy(o, 1.0f / (float)a->context, a->v + kk * D + h * hd, hd);
    }
}

int g4_cpu_local_attention(g4_backend *b, const g4_local_attention *a, g4_err *err) {
    cpu_backend *cb = b->impl;
    local_job job = {a, cb->c->ops, NULL};
    if (g4_cpu_grow(&cb->scores, &cb->scores_floats, (int64_t)g4_pool_size(cb->c->pool) * (a->context + 1)))
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for attention");
    job.scores = cb->scores;
    g4_pool_for(cb->c->pool, a->T * a->heads, 4, local_range, &job);
    return 0;
}
