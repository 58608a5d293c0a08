/* decoder.c — the Gemma 4 text forward pass, written to be read next to the spec (gemma4-text.md §2). */
#include "decoder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static float *alloc_floats(int64_t n, int *failed) {
    float *p = calloc((size_t)max64(n, 1), sizeof(float));
    if (!p) *failed = 1;
    return p;
}

/* The buffers that hold one chunk of C tokens while it runs through the layers; on failure the old ones stay. */
static int alloc_chunk_scratch(g4_decoder *d, int64_t C) {
    const g4_text_config *tc = &d->m->cfg.text;
    const int64_t H = tc->hidden_size, L = tc->num_layers, P = tc->ple_dim;
    int64_t qw = 0, kvw = 0, iw = 0;
    for (int l = 0; l < L; l++) {
        qw = max64(qw, (int64_t)tc->num_heads * tc->layer_head_dim[l]);
        kvw = max64(kvw, (int64_t)tc->layer_kv_heads[l] * tc->layer_head_dim[l]);
        iw = max64(iw, tc->layer_intermediate[l]);
    }
    float **bufs[] = {&d->x, &d->xn, &d->proj, &d->q, &d->attn, &d->k, &d->v, &d->gate, &d->up, &d->ple, &d->ple_gate,
                      &d->rope_cos[0], &d->rope_sin[0], &d->rope_cos[1], &d->rope_sin[1]};
    const int64_t width[] = {H, H, H, qw, qw, kvw, kvw, iw, iw, L * P, P, tc->head_dim / 2, tc->head_dim / 2,
                             tc->global_head_dim / 2, tc->global_head_dim / 2};
    enum { N = sizeof bufs / sizeof *bufs };
    float *fresh[N];
    int failed = 0;
    for (size_t i = 0; i < N; i++) fresh[i] = alloc_floats(C * width[i], &failed);
    int32_t *lookup = calloc((size_t)C, sizeof *lookup);
    int64_t *reach = calloc((size_t)C, sizeof *reach);
    if (failed || !lookup || !reach) {
        for (size_t i = 0; i < N; i++) free(fresh[i]);
        free(lookup);
        free(reach);
        return 1;
    }
    for (size_t i = 0; i < N; i++) {
        free(*bufs[i]);
        *bufs[i] = fresh[i];
    }
    free(d->lookup);
    free(d->reach);
    d->lookup = lookup;
    d->reach = reach;
    d->max_chunk = C;
    return 0;
}

/* Where position p of kv head h lives: the cache is head-major, so that attention streams each head's keys and
 * values as one contiguous run (interleaved heads read at half the speed from memory here). */
static size_t kv_offset(int64_t cap, int64_t h, int64_t p, int64_t D) { return (size_t)((h * cap + p % cap) * D); }

/* Sizes the sliding layers' rings for chunks of C tokens (a query reaches back window-1 positions from the first
 * token of its chunk), keeping the positions the next chunk can still see. */
static int resize_sliding_caches(g4_decoder *d, int64_t C) {
    const g4_text_config *tc = &d->m->cfg.text;
    const int64_t cap = min64(d->n_ctx, tc->sliding_window + C);
    for (int l = 0; l < tc->first_kv_shared; l++) {
        g4_kv_layer *kv = &d->kv[l];
        if (tc->layer_type[l] != G4_LAYER_SLIDING || kv->cap == cap) continue;
        const int64_t nkv = tc->layer_kv_heads[l], D = tc->layer_head_dim[l];
        int failed = 0;
        float *k = alloc_floats(cap * nkv * D, &failed), *v = alloc_floats(cap * nkv * D, &failed);
        if (failed) {
            free(k);
            free(v);
            return 1;
        }
        for (int64_t p = max64(0, d->pos - tc->sliding_window + 1); kv->k && p < d->pos; p++)
            for (int64_t h = 0; h < nkv; h++) {
                memcpy(k + kv_offset(cap, h, p, D), kv->k + kv_offset(kv->cap, h, p, D), (size_t)D * sizeof(float));
                memcpy(v + kv_offset(cap, h, p, D), kv->v + kv_offset(kv->cap, h, p, D), (size_t)D * sizeof(float));
            }
        free(kv->k);
        free(kv->v);
        kv->k = k;
        kv->v = v;
        kv->cap = cap;
    }
    return 0;
}

int g4_decoder_init(g4_decoder *d, const g4_model *m, g4_compute *c, int64_t n_ctx, int64_t max_chunk, g4_err *err) {
    memset(d, 0, sizeof *d);
    const g4_text_config *tc = &m->cfg.text;
    if (tc->use_bidirectional_attention == G4_BIDI_ALL)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED,
                       "use_bidirectional_attention \"all\" makes every layer bidirectional: such a model cannot "
                       "generate text, and gemma4c does not run it");
    if (n_ctx <= 0 || n_ctx > tc->max_position_embeddings) n_ctx = tc->max_position_embeddings;
    if (max_chunk <= 0) max_chunk = 256;
    max_chunk = min64(max_chunk, n_ctx);
    d->m = m;
    d->c = c;
    d->n_ctx = n_ctx;
    const int64_t L = tc->num_layers, P = tc->ple_dim;
    int failed = 0;
    d->kv = calloc((size_t)L, sizeof *d->kv);
    if (!d->kv) failed = 1;
    for (int l = 0; !failed && l < tc->first_kv_shared; l++) {
        if (tc->layer_type[l] == G4_LAYER_SLIDING) continue; /* sized with the chunk below */
        const int64_t width = (int64_t)tc->layer_kv_heads[l] * tc->layer_head_dim[l];
        d->kv[l].cap = n_ctx;
        d->kv[l].k = alloc_floats(n_ctx * width, &failed);
        d->kv[l].v = alloc_floats(n_ctx * width, &failed);
    }
    if (!failed) failed = resize_sliding_caches(d, max_chunk) || alloc_chunk_scratch(d, max_chunk);
    d->ple_row = alloc_floats(L * P, &failed);
    int64_t group = 1, widest = 1; /* query heads per kv head (they score keys together); widest head */
    for (int l = 0; l < L; l++) {
        group = max64(group, tc->num_heads / tc->layer_kv_heads[l]);
        widest = max64(widest, tc->layer_head_dim[l]);
    }
    d->scores_per_worker = group * n_ctx;
    d->scores = alloc_floats((int64_t)g4_pool_size(c->pool) * d->scores_per_worker, &failed);
    /* Key-split attention runs fewer than 2 x threads items (see attention_block), each over one kv head's query
     * heads: at most 2 x threads x num_heads rows of partial output. */
    const int64_t part_rows = 2 * (int64_t)g4_pool_size(c->pool) * tc->num_heads;
    d->attn_parts = alloc_floats(part_rows * widest, &failed);
    d->attn_lse = alloc_floats(part_rows, &failed);
    d->logit_rows = min64(max_chunk, 32);
    d->logits = alloc_floats(d->logit_rows * tc->vocab_size, &failed);
    if (failed) {
        g4_decoder_free(d);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for a %lld-token context", (long long)n_ctx);
    }
    return 0;
}

void g4_decoder_free(g4_decoder *d) {
    if (d->kv && d->m)
        for (int l = 0; l < d->m->cfg.text.num_layers; l++) {
            free(d->kv[l].k);
            free(d->kv[l].v);
        }
    free(d->kv);
    float *bufs[] = {d->x, d->xn, d->q, d->k, d->v, d->attn, d->proj, d->gate, d->up, d->ple, d->ple_gate, d->ple_row,
                     d->rope_cos[0], d->rope_cos[1], d->rope_sin[0], d->rope_sin[1], d->scores, d->attn_parts,
                     d->attn_lse,   d->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(d->lookup);
    free(d->reach);
    memset(d, 0, sizeof *d);
}

int64_t g4_decoder_rewind(g4_decoder *d, int64_t pos) {
    if (pos < 0 || pos >= d->pos) return d->pos;
    const g4_text_config *c = &d->m->cfg.text;
    for (int l = 0; l < c->first_kv_shared && pos > 0; l++) {
        /* position `oldest` went to the slot that position oldest + cap reuses, if that was reached since */
        const int64_t oldest = max64(0, pos - c->sliding_window + 1);
        if (c->layer_type[l] == G4_LAYER_SLIDING && d->pos > oldest + d->kv[l].cap) pos = 0;
    }
    d->pos = pos;
    return pos;
}

/* ---- pieces of the forward pass ---------------------------------------------------------------------- */

/* Which soft-token stream a placeholder id belongs to, or -1 for ordinary tokens. */
static int soft_kind(const g4_model *m, int32_t id) {
    const g4_model_config *c = &m->cfg;
    if (id == c->image_token_id) return G4_SOFT_IMAGE;
    if (id == c->video_token_id) return G4_SOFT_VIDEO;
    if (id == c->audio_token_id) return G4_SOFT_AUDIO;
    return -1;
}

/* x[t] = E[id_t] * sqrt(H) (the model's embed_scale), or the next soft token of its kind, unscaled, at a
 * multimodal placeholder. `lookup` receives the ids for the per-layer table: the pad id at placeholders. */
static void embed_tokens(g4_decoder *d, const int32_t *ids, int64_t n, const g4_forward_opts *opts,
                         int64_t used[G4_SOFT_KINDS], int32_t *lookup) {
    const g4_model *m = d->m;
    const int64_t H = m->cfg.text.hidden_size;
    const float scale = m->embed_scale;
    for (int64_t t = 0; t < n; t++) {
        float *row = d->x + t * H;
        const int kind = soft_kind(m, ids[t]);
        if (kind >= 0 && opts->soft[kind].rows) {
            memcpy(row, opts->soft[kind].rows + used[kind]++ * H, (size_t)H * sizeof(float));
            lookup[t] = m->cfg.text.pad_token_id;
            continue;
        }
        lookup[t] = ids[t];
        g4_embedding_row(&m->embed, ids[t], row);
        for (int64_t i = 0; i < H; i++) row[i] *= scale;
    }
}

/* ple[t][l] = (RMSNorm(x[t] · W_plmp^T / sqrt(H))[l] + E_ple[id_t][l] * sqrt(P)) / sqrt(2), for all layers. */
static void per_layer_inputs(g4_decoder *d, const int32_t *ids, int64_t n) {
    const g4_model *m = d->m;
    const g4_text_config *c = &m->cfg.text;
    const int64_t H = c->hidden_size, L = c->num_layers, P = c->ple_dim, LP = L * P;
    g4_matmul(d->c, d->x, n, H, &m->ple_model_proj, d->ple);
    const float proj_scale = (float)(1.0 / sqrt((double)H));
    const float table_scale = m->ple_embed_scale;
    const float combine = (float)(1.0 / sqrt(2.0));
    for (int64_t t = 0; t < n; t++) {
        float *pt = d->ple + t * LP;
        for (int64_t i = 0; i < LP; i++) pt[i] *= proj_scale;
        g4_rmsnorm_rows(d->c->ops, pt, pt, m->ple_projection_norm, L, P, (float)c->rms_norm_eps);
        /* Ids beyond the per-layer vocabulary use the pad row, as transformers masks them. */
        int64_t id = ids[t] < c->vocab_size_per_layer_input ? ids[t] : c->pad_token_id;
        g4_embedding_row(&m->ple_table, id, d->ple_row);
        for (int64_t i = 0; i < LP; i++) pt[i] = (pt[i] + d->ple_row[i] * table_scale) * combine;
    }
}

/* cos/sin of pos * inv_freq for every position of the chunk, per layer type. */
static void rope_prepare(g4_decoder *d, int64_t pos0, int64_t n) {
    const g4_text_config *c = &d->m->cfg.text;
    for (int type = 0; type < 2; type++) {
        const int64_t half = (type == G4_LAYER_FULL ? c->global_head_dim : c->head_dim) / 2;
        const float *inv = d->m->inv_freq[type];
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < half; i++) {
                float angle = (float)(pos0 + t) * inv[i];
                d->rope_cos[type][t * half + i] = cosf(angle);
                d->rope_sin[type][t * half + i] = sinf(angle);
            }
    }
}

/* Rotate-half RoPE: pairs (i, i + D/2). */
static void rope_apply(float *x, const float *cs, const float *sn, int64_t D) {
    const int64_t half = D / 2;
    for (int64_t i = 0; i < half; i++) {
        float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * cs[i] - x2 * sn[i];
        x[i + half] = x2 * cs[i] + x1 * sn[i];
    }
}

typedef struct attn_job {
    g4_decoder *d;
    int layer;
    int64_t n, pos0;
    int64_t parts; /* ranges of keys per (token, kv head) that run as separate items */
} attn_job;

/* One (token, kv head, range of its allowed keys) per item: the kv head's query heads score those keys together
 * (each key read once for all of them), softmax, weighted values. Keys sit in ring slots p % cap: a range is at
 * most two contiguous runs. With one range the output is final; with several, each range's output is normalised
 * over its own keys and kept with its log-sum-exp for combine_parts. */
static void attention_range(void *ctx, int64_t begin, int64_t end, int worker) {
    attn_job *j = ctx;
    g4_decoder *d = j->d;
    const g4_text_config *c = &d->m->cfg.text;
    const g4_kernel_ops *ops = d->c->ops;
    const int l = j->layer;
    const int64_t D = c->layer_head_dim[l], nq = c->num_heads, nkv = c->layer_kv_heads[l], G = nq / nkv;
    const g4_kv_layer *kv = &d->kv[c->kv_donor[l]];
    const int sliding = c->layer_type[l] == G4_LAYER_SLIDING;
    float *scores = d->scores + (size_t)worker * (size_t)d->scores_per_worker;
    for (int64_t item = begin; item < end; item++) {
        const int64_t t = item / (nkv * j->parts), kvh = item / j->parts % nkv, part = item % j->parts;
        const int64_t p = j->pos0 + t;
        const int64_t first = sliding ? max64(0, p - c->sliding_window + 1) : 0;
        const int64_t last = sliding ? d->reach[t] : p; /* past p only inside a bidirectional vision span */
        const int64_t lo = first + (last - first + 1) * part / j->parts;
        const int64_t hi = first + (last - first + 1) * (part + 1) / j->parts - 1;
        const int64_t nk = hi - lo + 1;
        const float *q = d->q + (t * nq + kvh * G) * D;
        const int split = j->parts > 1;
        float *out = split ? d->attn_parts + item * G * D : d->attn + (t * nq + kvh * G) * D;
        float *lse = split ? d->attn_lse + item * G : NULL;
        memset(out, 0, (size_t)(G * D) * sizeof(float));
        if (nk <= 0) { /* more ranges than keys (so split) */
            for (int64_t g = 0; g < G; g++) lse[g] = -INFINITY;
            continue;
        }
        /* attention scaling is 1: q and k are normalised */
        for (int64_t s = lo, run; s <= hi; s += run) {
            const int64_t slot = s % kv->cap;
            run = min64(hi - s + 1, kv->cap - slot);
            ops->scores(scores + (s - lo), nk, q, D, G, kv->k + kv_offset(kv->cap, kvh, slot, D), D, run, D);
        }
        for (int64_t g = 0; g < G; g++) {
            float log_sum = ops->softmax(scores + g * nk, nk);
            if (split) lse[g] = log_sum;
        }
        for (int64_t s = lo, run; s <= hi; s += run) {
            const int64_t slot = s % kv->cap;
            run = min64(hi - s + 1, kv->cap - slot);
            ops->weighted_sum(out, D, scores + (s - lo), nk, G, kv->v + kv_offset(kv->cap, kvh, slot, D), D, run, D);
        }
    }
}

/* The attention output of each query head from its key ranges: softmax over all keys = each range's softmax
 * weighted by exp(its log-sum-exp - the total's). The log-sum-exps are replaced by those weights. */
static void combine_parts(g4_decoder *d, const attn_job *j, int64_t nkv, int64_t D) {
    const g4_kernel_ops *ops = d->c->ops;
    const int64_t nq = d->m->cfg.text.num_heads, G = nq / nkv;
    for (int64_t t = 0; t < j->n; t++)
        for (int64_t kvh = 0; kvh < nkv; kvh++) {
            const int64_t item0 = (t * nkv + kvh) * j->parts;
            for (int64_t g = 0; g < G; g++) {
                float top = -INFINITY, total = 0;
                for (int64_t r = 0; r < j->parts; r++) top = fmaxf(top, d->attn_lse[(item0 + r) * G + g]);
                for (int64_t r = 0; r < j->parts; r++) {
                    float *lse = &d->attn_lse[(item0 + r) * G + g];
                    total += *lse = expf(*lse - top);
                }
                float *out = d->attn + (t * nq + kvh * G + g) * D;
                memset(out, 0, (size_t)D * sizeof(float));
                for (int64_t r = 0; r < j->parts; r++)
                    ops->axpy(out, d->attn_lse[(item0 + r) * G + g] / total, d->attn_parts + ((item0 + r) * G + g) * D,
                              D);
            }
        }
}

static void attention_block(g4_decoder *d, int l, int64_t n, int64_t pos0) {
    const g4_model *m = d->m;
    const g4_text_config *c = &m->cfg.text;
    const g4_layer *ly = &m->layers[l];
    const int64_t H = c->hidden_size, D = c->layer_head_dim[l], nq = c->num_heads, nkv = c->layer_kv_heads[l];
    const int type = c->layer_type[l];
    const int64_t half = D / 2;
    const float eps = (float)c->rms_norm_eps;

    g4_rmsnorm_rows(d->c->ops, d->xn, d->x, ly->input_norm, n, H, eps);
    /* KV-shared layers attend to their donor's cache: they project queries only */
    const int own_kv = l < c->first_kv_shared;
    const g4_tensor *proj[3] = {&ly->q_proj, &ly->k_proj, &ly->v_proj};
    float *const out[3] = {d->q, d->k, d->v};
    g4_matmul_many(d->c, d->xn, n, H, own_kv ? (c->attention_k_eq_v ? 2 : 3) : 1, proj, out);
    for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < nq; h++) {
            float *qh = d->q + (t * nq + h) * D;
            d->c->ops->rmsnorm(qh, qh, ly->q_norm, D, eps);
            rope_apply(qh, d->rope_cos[type] + t * half, d->rope_sin[type] + t * half, D);
        }
    if (own_kv) {
        g4_kv_layer *kv = &d->kv[l];
        if (c->attention_k_eq_v) memcpy(d->v, d->k, (size_t)(n * nkv * D) * sizeof(float));
        for (int64_t t = 0; t < n; t++) {
            for (int64_t h = 0; h < nkv; h++) {
                float *kh = d->k + (t * nkv + h) * D, *vh = d->v + (t * nkv + h) * D;
                d->c->ops->rmsnorm(kh, kh, ly->k_norm, D, eps);
                rope_apply(kh, d->rope_cos[type] + t * half, d->rope_sin[type] + t * half, D);
                d->c->ops->rmsnorm(vh, vh, NULL, D, eps); /* values are normalised without a weight, never rotated */
                memcpy(kv->k + kv_offset(kv->cap, h, pos0 + t, D), kh, (size_t)D * sizeof(float));
                memcpy(kv->v + kv_offset(kv->cap, h, pos0 + t, D), vh, (size_t)D * sizeof(float));
            }
        }
    }
    /* A decode step has one item per kv head (E2B: one): split the keys so that every worker has some, each reading
     * its share of the cache once. (Splitting the query heads instead had every worker read the whole cache.) */
    const int64_t threads = g4_pool_size(d->c->pool);
    attn_job job = {d, l, n, pos0, n * nkv < threads ? (threads + n * nkv - 1) / (n * nkv) : 1};
    g4_pool_for(d->c->pool, n * nkv * job.parts, 1, attention_range, &job);
    if (job.parts > 1) combine_parts(d, &job, nkv, D);
    g4_matmul(d->c, d->attn, n, nq * D, &ly->o_proj, d->proj);
    g4_rmsnorm_rows(d->c->ops, d->proj, d->proj, ly->post_attention_norm, n, H, eps);
    for (int64_t i = 0; i < n * H; i++) d->x[i] += d->proj[i];
}

static void mlp_block(g4_decoder *d, int l, int64_t n) {
    const g4_model *m = d->m;
    const g4_text_config *c = &m->cfg.text;
    const g4_layer *ly = &m->layers[l];
    const int64_t H = c->hidden_size, I = c->layer_intermediate[l];
    const float eps = (float)c->rms_norm_eps;
    g4_rmsnorm_rows(d->c->ops, d->xn, d->x, ly->pre_feedforward_norm, n, H, eps);
    g4_matmul_gelu(d->c, d->xn, n, H, &ly->gate_proj, &ly->up_proj, d->gate, d->up);
    g4_matmul(d->c, d->gate, n, I, &ly->down_proj, d->proj);
    g4_rmsnorm_rows(d->c->ops, d->proj, d->proj, ly->post_feedforward_norm, n, H, eps);
    for (int64_t i = 0; i < n * H; i++) d->x[i] += d->proj[i];
}

/* x += RMSNorm((gelu(x · W_gate^T) * ple[l]) · W_proj^T) */
static void per_layer_input_block(g4_decoder *d, int l, int64_t n) {
    const g4_model *m = d->m;
    const g4_text_config *c = &m->cfg.text;
    const g4_layer *ly = &m->layers[l];
    const int64_t H = c->hidden_size, L = c->num_layers, P = c->ple_dim;
    g4_matmul(d->c, d->x, n, H, &ly->per_layer_input_gate, d->ple_gate);
    for (int64_t t = 0; t < n; t++) d->c->ops->gelu_mul(d->ple_gate + t * P, d->ple + (t * L + l) * P, P);
    g4_matmul(d->c, d->ple_gate, n, P, &ly->per_layer_projection, d->proj);
    g4_rmsnorm_rows(d->c->ops, d->proj, d->proj, ly->post_per_layer_input_norm, n, H,
                    (float)c->rms_norm_eps);
    for (int64_t i = 0; i < n * H; i++) d->x[i] += d->proj[i];
}

static void decoder_layer(g4_decoder *d, int l, int64_t n, int64_t pos0) {
    const g4_text_config *c = &d->m->cfg.text;
    attention_block(d, l, n, pos0);
    mlp_block(d, l, n);
    if (c->ple_dim > 0) per_layer_input_block(d, l, n);
    const float s = d->m->layers[l].layer_scalar; /* scales the whole residual stream, not just the branch */
    for (int64_t i = 0; i < n * c->hidden_size; i++) d->x[i] *= s;
}

/* logits = softcap(RMSNorm(x) · E^T), in slices of logit_rows positions. */
static int output_logits(g4_decoder *d, int64_t n, int64_t pos0, const g4_forward_opts *opts, g4_err *err) {
    const g4_text_config *c = &d->m->cfg.text;
    const int64_t H = c->hidden_size, V = c->vocab_size;
    const float cap = (float)c->final_logit_softcapping;
    int64_t first = opts->on_logits ? 0 : n - 1; /* only the last row unless every position is wanted */
    for (int64_t r0 = first; r0 < n; r0 += d->logit_rows) {
        int64_t rows = min64(d->logit_rows, n - r0);
        g4_matmul(d->c, d->xn + r0 * H, rows, H, &d->m->lm_head, d->logits);
        if (cap > 0) d->c->ops->softcap(d->logits, rows * V, cap);
        if (opts->on_logits) {
            int rc = opts->on_logits(opts->ctx, pos0 + r0, rows, d->logits, err);
            if (rc) return rc;
        }
        if (opts->last_logits && r0 + rows == n)
            memcpy(opts->last_logits, d->logits + (rows - 1) * V, (size_t)V * sizeof(float));
    }
    return 0;
}

/* With use_bidirectional_attention "vision", each contiguous run of image/video placeholders is one span whose
 * tokens see each other on sliding layers (within the window to the left); full layers stay causal. */
static int in_vision_span(const g4_model *m, int32_t id) {
    if (m->cfg.text.use_bidirectional_attention != G4_BIDI_VISION) return 0;
    const int kind = soft_kind(m, id);
    return kind == G4_SOFT_IMAGE || kind == G4_SOFT_VIDEO;
}

/* reach[t]: the last position row t attends to on sliding layers (its own, or its span's last). */
static void mark_vision_spans(g4_decoder *d, const int32_t *ids, int64_t n, int64_t pos0) {
    for (int64_t t = n - 1; t >= 0; t--)
        d->reach[t] = t + 1 < n && in_vision_span(d->m, ids[t]) && in_vision_span(d->m, ids[t + 1]) ? d->reach[t + 1]
                                                                                                  : pos0 + t;
}

int64_t g4_decoder_split_point(const g4_decoder *d, const int32_t *ids, int64_t n, int64_t at) {
    while (at > 0 && at < n && in_vision_span(d->m, ids[at - 1]) && in_vision_span(d->m, ids[at])) at--;
    return at;
}

/* Tokens of the next chunk from ids[0..T): at most max_chunk, never cutting a vision span; a span longer than
 * max_chunk grows the chunk buffers to hold it whole. */
static int next_chunk(g4_decoder *d, const int32_t *ids, int64_t T, int64_t *n, g4_err *err) {
    int64_t take = min64(d->max_chunk, T);
    int64_t cut = g4_decoder_split_point(d, ids, T, take);
    if (cut > 0) {
        *n = cut;
        return 0;
    }
    while (take < T && in_vision_span(d->m, ids[take - 1]) && in_vision_span(d->m, ids[take])) take++;
    if (take > d->max_chunk && (resize_sliding_caches(d, take) || alloc_chunk_scratch(d, take)))
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for a bidirectional span of %lld tokens", (long long)take);
    *n = take;
    return 0;
}

static int forward_chunk(g4_decoder *d, const int32_t *ids, int64_t n, int64_t row0, int64_t T,
                         const g4_forward_opts *opts, int64_t used[G4_SOFT_KINDS], g4_err *err) {
    const g4_text_config *c = &d->m->cfg.text;
    const int64_t H = c->hidden_size, L = c->num_layers, P = c->ple_dim;
    const int64_t pos0 = d->pos;
    g4_probe *probe = opts->probe;

    mark_vision_spans(d, ids, n, pos0);
    embed_tokens(d, ids, n, opts, used, d->lookup);
    ids = d->lookup;
    if (probe && probe->inputs_embeds) memcpy(probe->inputs_embeds + row0 * H, d->x, (size_t)(n * H) * sizeof(float));
    if (P > 0) {
        per_layer_inputs(d, ids, n);
        if (probe && probe->per_layer_inputs)
            memcpy(probe->per_layer_inputs + row0 * L * P, d->ple, (size_t)(n * L * P) * sizeof(float));
    }
    if (probe && probe->hidden_states) memcpy(probe->hidden_states + row0 * H, d->x, (size_t)(n * H) * sizeof(float));
    rope_prepare(d, pos0, n);
    for (int l = 0; l < L; l++) {
        decoder_layer(d, l, n, pos0);
        if (probe && probe->hidden_states && l < L - 1)
            memcpy(probe->hidden_states + ((int64_t)(l + 1) * T + row0) * H, d->x, (size_t)(n * H) * sizeof(float));
    }
    d->pos += n;
    g4_rmsnorm_rows(d->c->ops, d->xn, d->x, d->m->final_norm, n, H, (float)c->rms_norm_eps);
    if (probe && probe->hidden_states)
        memcpy(probe->hidden_states + (L * T + row0) * H, d->xn, (size_t)(n * H) * sizeof(float));
    if (opts->on_logits || opts->last_logits) return output_logits(d, n, pos0, opts, err);
    return 0;
}

int g4_decoder_forward(g4_decoder *d, const int32_t *ids, int64_t T, const g4_forward_opts *opts, g4_err *err) {
    const g4_text_config *c = &d->m->cfg.text;
    if (T <= 0) return g4_fail(err, GEMMA4C_ERR_ARG, "no tokens to run");
    for (int64_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            return g4_fail(err, GEMMA4C_ERR_ARG, "token id %d at position %lld is outside the vocabulary (0..%d)",
                           ids[t], (long long)t, c->vocab_size - 1);
    if (T > d->n_ctx - d->pos)
        return g4_fail(err, GEMMA4C_ERR_CONTEXT, "%lld tokens do not fit the context: %lld of %lld positions used",
                       (long long)T, (long long)d->pos, (long long)d->n_ctx);
    static const g4_forward_opts none = {0};
    if (!opts) opts = &none;
    /* Every placeholder needs a soft token and every soft token a placeholder: check before running anything. */
    int64_t placeholders[G4_SOFT_KINDS] = {0}, used[G4_SOFT_KINDS] = {0};
    for (int64_t t = 0; t < T; t++) {
        int kind = soft_kind(d->m, ids[t]);
        if (kind >= 0) placeholders[kind]++;
    }
    static const char *kind_name[G4_SOFT_KINDS] = {"image", "video", "audio"};
    for (int k = 0; k < G4_SOFT_KINDS; k++)
        if (opts->soft[k].rows && opts->soft[k].n != placeholders[k])
            return g4_fail(err, GEMMA4C_ERR_ARG, "%lld %s placeholder tokens but %lld %s soft tokens",
                           (long long)placeholders[k], kind_name[k], (long long)opts->soft[k].n, kind_name[k]);
    for (int64_t s = 0, n = 0; s < T; s += n) {
        int rc = next_chunk(d, ids + s, T - s, &n, err);
        if (!rc) rc = forward_chunk(d, ids + s, n, s, T, opts, used, err);
        if (rc) return rc;
    }
    return 0;
}

typedef struct logits_dest {
    float *out;
    int64_t first, V; /* out row 0 is sequence position `first` */
} logits_dest;

static int copy_logits(void *ctx, int64_t pos0, int64_t n, const float *logits, g4_err *err) {
    logits_dest *d = ctx;
    memcpy(d->out + (pos0 - d->first) * d->V, logits, (size_t)(n * d->V) * sizeof(float));
    return 0;
}

int g4_decoder_forward_all_logits_with(g4_decoder *d, const int32_t *ids, int64_t T, const g4_forward_opts *opts,
                                       float *out, g4_err *err) {
    logits_dest dest = {out, d->pos, d->m->cfg.text.vocab_size};
    g4_forward_opts o = {copy_logits, &dest, NULL, NULL};
    if (opts) {
        o.probe = opts->probe;
        memcpy(o.soft, opts->soft, sizeof o.soft);
    }
    return g4_decoder_forward(d, ids, T, &o, err);
}

int g4_decoder_forward_all_logits(g4_decoder *d, const int32_t *ids, int64_t T, float *out, g4_err *err) {
    return g4_decoder_forward_all_logits_with(d, ids, T, NULL, out, err);
}
