/* decoder.c — the Gemma 4 text forward pass over a batch of rows, written to be read next to the spec (gemma4-text.md §2). */
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

/* The buffers that hold R rows while they run through the layers; on failure the old ones stay. */
static int alloc_row_scratch(g4_decoder *d, int64_t R) {
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
    for (size_t i = 0; i < N; i++) fresh[i] = alloc_floats(R * width[i], &failed);
    g4_kv_seq **row_seq = calloc((size_t)R, sizeof *row_seq);
    int64_t *row_pos = calloc((size_t)R, sizeof *row_pos), *reach = calloc((size_t)R, sizeof *reach);
    int32_t *lookup = calloc((size_t)R, sizeof *lookup), *logit_src = calloc((size_t)R, sizeof *logit_src);
    if (failed || !row_seq || !row_pos || !reach || !lookup || !logit_src) {
        for (size_t i = 0; i < N; i++) free(fresh[i]);
        free(row_seq), free(row_pos), free(reach), free(lookup), free(logit_src);
        return 1;
    }
    for (size_t i = 0; i < N; i++) {
        free(*bufs[i]);
        *bufs[i] = fresh[i];
    }
    free(d->row_seq), free(d->row_pos), free(d->reach), free(d->lookup), free(d->logit_src);
    d->row_seq = row_seq;
    d->row_pos = row_pos;
    d->reach = reach;
    d->lookup = lookup;
    d->logit_src = logit_src;
    d->max_rows = R;
    return 0;
}

/* Query heads that score keys together: the most of any layer. */
static int64_t query_group(const g4_text_config *tc) {
    int64_t group = 1;
    for (int l = 0; l < tc->num_layers; l++) group = max64(group, tc->num_heads / tc->layer_kv_heads[l]);
    return group;
}

/* Room for every worker's scores over `keys` keys. */
static int reserve_scores(g4_decoder *d, int64_t keys) {
    const int64_t per_worker = query_group(&d->m->cfg.text) * keys;
    if (per_worker <= d->scores_per_worker) return 0;
    int failed = 0;
    float *s = alloc_floats((int64_t)g4_pool_size(d->c->pool) * per_worker, &failed);
    if (failed) return 1;
    free(d->scores);
    d->scores = s;
    d->scores_per_worker = per_worker;
    return 0;
}

int g4_decoder_init(g4_decoder *d, const g4_model *m, g4_compute *c, int64_t max_rows, g4_err *err) {
    memset(d, 0, sizeof *d);
    const g4_text_config *tc = &m->cfg.text;
    if (tc->use_bidirectional_attention == G4_BIDI_ALL)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED,
                       "use_bidirectional_attention \"all\" makes every layer bidirectional: such a model cannot "
                       "generate text, and gemma4c does not run it");
    if (max_rows <= 0) max_rows = GEMMA4C_DEFAULT_BATCH;
    d->m = m;
    d->c = c;
    const int64_t L = tc->num_layers, P = tc->ple_dim;
    int failed = alloc_row_scratch(d, max_rows) || reserve_scores(d, G4_KV_PAGE);
    int64_t widest = 1;
    for (int l = 0; l < L; l++) widest = max64(widest, tc->layer_head_dim[l]);
    d->ple_row = alloc_floats(L * P, &failed);
    /* Key-split attention runs fewer than 2 x threads items (see attention_block), each over one kv head's query
     * heads: at most 2 x threads x num_heads rows of partial output. */
    const int64_t part_rows = 2 * (int64_t)g4_pool_size(c->pool) * tc->num_heads;
    d->attn_parts = alloc_floats(part_rows * widest, &failed);
    d->attn_lse = alloc_floats(part_rows, &failed);
    d->logit_rows = 32;
    d->logits = alloc_floats(d->logit_rows * tc->vocab_size, &failed);
    if (failed) {
        g4_decoder_free(d);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for steps of %lld rows", (long long)max_rows);
    }
    return 0;
}

void g4_decoder_free(g4_decoder *d) {
    float *bufs[] = {d->x, d->xn, d->q, d->k, d->v, d->attn, d->proj, d->gate, d->up, d->ple, d->ple_gate, d->ple_row,
                     d->rope_cos[0], d->rope_cos[1], d->rope_sin[0], d->rope_sin[1], d->scores, d->attn_parts,
                     d->attn_lse,   d->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(d->row_seq), free(d->row_pos), free(d->reach), free(d->lookup), free(d->logit_src);
    memset(d, 0, sizeof *d);
}

/* ---- pieces of the forward pass ---------------------------------------------------------------------- */

int g4_soft_kind(const g4_model *m, int32_t id) {
    const g4_model_config *c = &m->cfg;
    if (id == c->image_token_id) return G4_SOFT_IMAGE;
    if (id == c->video_token_id) return G4_SOFT_VIDEO;
    if (id == c->audio_token_id) return G4_SOFT_AUDIO;
    return -1;
}

/* x[r] = E[id] * sqrt(H) (the model's embed_scale), or the row's soft token, unscaled. Placeholder ids look up
 * the pad row in both tables (the reference replaces them before either lookup), so a placeholder without a soft
 * token embeds as the pad token. `lookup` receives the ids for the per-layer table. */
static void embed_rows(g4_decoder *d, int64_t r, const g4_span *sp) {
    const g4_model *m = d->m;
    const int64_t H = m->cfg.text.hidden_size;
    for (int64_t t = 0; t < sp->n; t++, r++) {
        float *row = d->x + r * H;
        const int placeholder = g4_soft_kind(m, sp->ids[t]) >= 0;
        d->lookup[r] = placeholder ? m->cfg.text.pad_token_id : sp->ids[t];
        if (placeholder && sp->soft && sp->soft[t]) {
            memcpy(row, sp->soft[t], (size_t)H * sizeof(float));
            continue;
        }
        g4_embedding_row(&m->embed, d->lookup[r], row);
        for (int64_t i = 0; i < H; i++) row[i] *= m->embed_scale;
    }
}

/* ple[r][l] = (RMSNorm(x[r] · W_plmp^T / sqrt(H))[l] + E_ple[id_r][l] * sqrt(P)) / sqrt(2), for all layers. */
static void per_layer_inputs(g4_decoder *d, int64_t n) {
    const g4_model *m = d->m;
    const g4_text_config *c = &m->cfg.text;
    const int64_t H = c->hidden_size, L = c->num_layers, P = c->ple_dim, LP = L * P;
    g4_matmul(d->c, d->x, n, H, &m->ple_model_proj, d->ple);
    const float proj_scale = (float)(1.0 / sqrt((double)H));
    const float table_scale = m->ple_embed_scale;
    const float combine = (float)(1.0 / sqrt(2.0));
    for (int64_t r = 0; r < n; r++) {
        float *pt = d->ple + r * LP;
        for (int64_t i = 0; i < LP; i++) pt[i] *= proj_scale;
        g4_rmsnorm_rows(d->c->ops, pt, pt, m->ple_projection_norm, L, P, (float)c->rms_norm_eps);
        /* Ids beyond the per-layer vocabulary use the pad row, as transformers masks them. */
        int64_t id = d->lookup[r] < c->vocab_size_per_layer_input ? d->lookup[r] : c->pad_token_id;
        g4_embedding_row(&m->ple_table, id, d->ple_row);
        for (int64_t i = 0; i < LP; i++) pt[i] = (pt[i] + d->ple_row[i] * table_scale) * combine;
    }
}

/* cos/sin of pos * inv_freq for every row's position, per layer type. */
static void rope_prepare(g4_decoder *d, int64_t n) {
    const g4_text_config *c = &d->m->cfg.text;
    for (int type = 0; type < 2; type++) {
        const int64_t half = (type == G4_LAYER_FULL ? c->global_head_dim : c->head_dim) / 2;
        const float *inv = d->m->inv_freq[type];
        for (int64_t r = 0; r < n; r++)
            for (int64_t i = 0; i < half; i++) {
                float angle = (float)d->row_pos[r] * inv[i];
                d->rope_cos[type][r * half + i] = cosf(angle);
                d->rope_sin[type][r * half + i] = sinf(angle);
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
    int64_t n;
    int64_t parts; /* ranges of keys per (row, kv head) that run as separate items */
} attn_job;

/* One (row, kv head, range of its allowed keys) per item: the kv head's query heads score those keys together
 * (each key read once for all of them), softmax, weighted values, over the row's own sequence. Keys come in runs
 * that lie within one page. With one range the output is final; with several, each range's output is normalised
 * over its own keys and kept with its log-sum-exp for combine_parts. */
static void attention_range(void *ctx, int64_t begin, int64_t end, int worker) {
    attn_job *j = ctx;
    g4_decoder *d = j->d;
    const g4_text_config *c = &d->m->cfg.text;
    const g4_kernel_ops *ops = d->c->ops;
    const int l = j->layer, src = c->kv_donor[l];
    const int64_t D = c->layer_head_dim[l], nq = c->num_heads, nkv = c->layer_kv_heads[l], G = nq / nkv;
    const int sliding = c->layer_type[l] == G4_LAYER_SLIDING;
    float *scores = d->scores + (size_t)worker * (size_t)d->scores_per_worker;
    for (int64_t item = begin; item < end; item++) {
        const int64_t t = item / (nkv * j->parts), kvh = item / j->parts % nkv, part = item % j->parts;
        const g4_kv_seq *seq = d->row_seq[t];
        const int64_t p = d->row_pos[t];
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
            run = g4_kv_run(s, hi);
            ops->scores(scores + (s - lo), nk, q, D, G, g4_kv_key(seq, src, kvh, s), D, run, D);
        }
        for (int64_t g = 0; g < G; g++) {
            float log_sum = ops->softmax(scores + g * nk, nk);
            if (split) lse[g] = log_sum;
        }
        for (int64_t s = lo, run; s <= hi; s += run) {
            run = g4_kv_run(s, hi);
            ops->weighted_sum(out, D, scores + (s - lo), nk, G, g4_kv_value(seq, src, kvh, s), D, run, D);
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

static void attention_block(g4_decoder *d, int l, int64_t n) {
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
        if (c->attention_k_eq_v) memcpy(d->v, d->k, (size_t)(n * nkv * D) * sizeof(float));
        for (int64_t t = 0; t < n; t++) {
            for (int64_t h = 0; h < nkv; h++) {
                float *kh = d->k + (t * nkv + h) * D, *vh = d->v + (t * nkv + h) * D;
                d->c->ops->rmsnorm(kh, kh, ly->k_norm, D, eps);
                rope_apply(kh, d->rope_cos[type] + t * half, d->rope_sin[type] + t * half, D);
                d->c->ops->rmsnorm(vh, vh, NULL, D, eps); /* values are normalised without a weight, never rotated */
                memcpy(g4_kv_key(d->row_seq[t], l, h, d->row_pos[t]), kh, (size_t)D * sizeof(float));
                memcpy(g4_kv_value(d->row_seq[t], l, h, d->row_pos[t]), vh, (size_t)D * sizeof(float));
            }
        }
    }
    /* A decode step of one sequence has one item per kv head (E2B: one): split the keys so that every worker has
     * some, each reading its share of the cache once. (Splitting the query heads instead had every worker read the
     * whole cache.) */
    const int64_t threads = g4_pool_size(d->c->pool);
    attn_job job = {d, l, n, n * nkv < threads ? (threads + n * nkv - 1) / (n * nkv) : 1};
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
    g4_rmsnorm_rows(d->c->ops, d->proj, d->proj, ly->post_per_layer_input_norm, n, H, (float)c->rms_norm_eps);
    for (int64_t i = 0; i < n * H; i++) d->x[i] += d->proj[i];
}

static void decoder_layer(g4_decoder *d, int l, int64_t n) {
    const g4_text_config *c = &d->m->cfg.text;
    attention_block(d, l, n);
    mlp_block(d, l, n);
    if (c->ple_dim > 0) per_layer_input_block(d, l, n);
    const float s = d->m->layers[l].layer_scalar; /* scales the whole residual stream, not just the branch */
    for (int64_t i = 0; i < n * c->hidden_size; i++) d->x[i] *= s;
}

/* logits = softcap(RMSNorm(x) · E^T) for `rows` rows of xn listed in logit_src, in slices of logit_rows; each
 * slice goes to `deliver`. The rows are gathered into d->proj (free by now). */
typedef int (*deliver_fn)(g4_decoder *d, int64_t first, int64_t rows, void *ctx, g4_err *err);

static int output_logits(g4_decoder *d, int64_t rows, deliver_fn deliver, void *ctx, g4_err *err) {
    const g4_text_config *c = &d->m->cfg.text;
    const int64_t H = c->hidden_size, V = c->vocab_size;
    const float cap = (float)c->final_logit_softcapping;
    for (int64_t r0 = 0; r0 < rows; r0 += d->logit_rows) {
        const int64_t n = min64(d->logit_rows, rows - r0);
        for (int64_t i = 0; i < n; i++)
            memcpy(d->proj + i * H, d->xn + (int64_t)d->logit_src[r0 + i] * H, (size_t)H * sizeof(float));
        g4_matmul(d->c, d->proj, n, H, &d->m->lm_head, d->logits);
        if (cap > 0) d->c->ops->softcap(d->logits, n * V, cap);
        int rc = deliver(d, r0, n, ctx, err);
        if (rc) return rc;
    }
    return 0;
}

/* Last-row logits of every LAST span, gathered across spans so that one product serves them all. */
typedef struct last_rows {
    const g4_span *spans;
    int *span_of; /* [rows]: which span each gathered row is the last of */
} last_rows;

static int deliver_last(g4_decoder *d, int64_t first, int64_t rows, void *ctx, g4_err *err) {
    last_rows *lr = ctx;
    const int64_t V = d->m->cfg.text.vocab_size;
    for (int64_t i = 0; i < rows; i++)
        memcpy(lr->spans[lr->span_of[first + i]].out, d->logits + i * V, (size_t)V * sizeof(float));
    return 0;
}

static int deliver_all(g4_decoder *d, int64_t first, int64_t rows, void *ctx, g4_err *err) {
    const g4_span *sp = ctx;
    const int64_t V = d->m->cfg.text.vocab_size;
    if (sp->out) {
        memcpy(sp->out + first * V, d->logits, (size_t)(rows * V) * sizeof(float));
        return 0;
    }
    return sp->on_logits(sp->ctx, sp->seq->pos + first, rows, d->logits, err);
}

/* With use_bidirectional_attention "vision", each contiguous run of image/video placeholders is one span whose
 * tokens see each other on sliding layers (within the window to the left); full layers stay causal. */
static int in_vision_span(const g4_model *m, int32_t id) {
    if (m->cfg.text.use_bidirectional_attention != G4_BIDI_VISION) return 0;
    const int kind = g4_soft_kind(m, id);
    return kind == G4_SOFT_IMAGE || kind == G4_SOFT_VIDEO;
}

int64_t g4_decoder_split_point(const g4_model *m, const int32_t *ids, int64_t n, int64_t at) {
    while (at > 0 && at < n && in_vision_span(m, ids[at - 1]) && in_vision_span(m, ids[at])) at--;
    return at;
}

int64_t g4_decoder_chunk(const g4_model *m, const int32_t *ids, int64_t n, int64_t budget) {
    int64_t take = min64(max64(budget, 1), n);
    int64_t cut = g4_decoder_split_point(m, ids, n, take);
    if (cut > 0) return cut;
    while (take < n && in_vision_span(m, ids[take - 1]) && in_vision_span(m, ids[take])) take++;
    return take;
}

/* Row r's position, sequence and sliding reach (its own position, or its vision span's last). */
static void place_rows(g4_decoder *d, int64_t r, const g4_span *sp) {
    for (int64_t t = sp->n - 1; t >= 0; t--) {
        d->row_seq[r + t] = sp->seq;
        d->row_pos[r + t] = sp->seq->pos + t;
        d->reach[r + t] = t + 1 < sp->n && in_vision_span(d->m, sp->ids[t]) && in_vision_span(d->m, sp->ids[t + 1])
                              ? d->reach[r + t + 1]
                              : sp->seq->pos + t;
    }
}

static int check_spans(const g4_decoder *d, const g4_span *spans, int n_spans, const g4_probe *probe, int64_t *rows,
                       g4_err *err) {
    const int vocab = d->m->cfg.text.vocab_size;
    if (n_spans <= 0) return g4_fail(err, GEMMA4C_ERR_ARG, "a step needs at least one span");
    if (probe && n_spans != 1) return g4_fail(err, GEMMA4C_ERR_ARG, "a probe needs a single-sequence step");
    *rows = 0;
    for (int s = 0; s < n_spans; s++) {
        const g4_span *sp = &spans[s];
        if (sp->n <= 0 || !sp->ids || !sp->seq) return g4_fail(err, GEMMA4C_ERR_ARG, "no tokens to run");
        if (sp->seq->m != d->m) return g4_fail(err, GEMMA4C_ERR_ARG, "a sequence of another model");
        if (sp->logits != G4_LOGITS_NONE && !sp->out && !(sp->logits == G4_LOGITS_ALL && sp->on_logits))
            return g4_fail(err, GEMMA4C_ERR_ARG, "logits wanted but nowhere to put them");
        for (int64_t t = 0; t < sp->n; t++)
            if (sp->ids[t] < 0 || sp->ids[t] >= vocab)
                return g4_fail(err, GEMMA4C_ERR_ARG, "token id %d at position %lld is outside the vocabulary (0..%d)",
                               sp->ids[t], (long long)(sp->seq->pos + t), vocab - 1);
        for (int o = 0; o < s; o++)
            if (spans[o].seq == sp->seq) return g4_fail(err, GEMMA4C_ERR_ARG, "two spans of one sequence in a step");
        *rows += sp->n;
    }
    return 0;
}

int g4_decoder_step(g4_decoder *d, const g4_span *spans, int n_spans, g4_probe *probe, g4_abort_fn abort_fn,
                    void *abort_ctx, g4_err *err) {
    const g4_text_config *c = &d->m->cfg.text;
    const int64_t H = c->hidden_size, L = c->num_layers, P = c->ple_dim;
    int64_t n = 0, keys = 1;
    int rc = check_spans(d, spans, n_spans, probe, &n, err);
    for (int s = 0; !rc && s < n_spans; s++) {
        rc = g4_kv_seq_reserve(spans[s].seq, spans[s].seq->pos + spans[s].n, err);
        keys = max64(keys, spans[s].seq->pos + spans[s].n);
    }
    if (rc) return rc;
    if ((n > d->max_rows && alloc_row_scratch(d, n)) || reserve_scores(d, keys))
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for a step of %lld rows", (long long)n);

    for (int64_t s = 0, r = 0; s < n_spans; r += spans[s].n, s++) {
        place_rows(d, r, &spans[s]);
        embed_rows(d, r, &spans[s]);
    }
    if (probe && probe->inputs_embeds) memcpy(probe->inputs_embeds, d->x, (size_t)(n * H) * sizeof(float));
    if (P > 0) {
        per_layer_inputs(d, n);
        if (probe && probe->per_layer_inputs)
            memcpy(probe->per_layer_inputs, d->ple, (size_t)(n * L * P) * sizeof(float));
    }
    if (probe && probe->hidden_states) memcpy(probe->hidden_states, d->x, (size_t)(n * H) * sizeof(float));
    rope_prepare(d, n);
    for (int l = 0; l < L; l++) {
        if (abort_fn && abort_fn(abort_ctx)) return g4_fail(err, GEMMA4C_ERR_CANCELLED, "cancelled");
        decoder_layer(d, l, n);
        if (probe && probe->hidden_states && l < L - 1)
            memcpy(probe->hidden_states + (l + 1) * n * H, d->x, (size_t)(n * H) * sizeof(float));
    }
    g4_rmsnorm_rows(d->c->ops, d->xn, d->x, d->m->final_norm, n, H, (float)c->rms_norm_eps);
    if (probe && probe->hidden_states) memcpy(probe->hidden_states + L * n * H, d->xn, (size_t)(n * H) * sizeof(float));

    /* The last rows of LAST spans in one product; ALL spans each in their own slices. */
    int span_of[n_spans];
    int64_t n_last = 0;
    for (int64_t s = 0, r = 0; s < n_spans; r += spans[s].n, s++)
        if (spans[s].logits == G4_LOGITS_LAST) {
            span_of[n_last] = (int)s;
            d->logit_src[n_last++] = (int32_t)(r + spans[s].n - 1);
        }
    last_rows lr = {spans, span_of};
    if (n_last) rc = output_logits(d, n_last, deliver_last, &lr, err);
    for (int64_t s = 0, r = 0; !rc && s < n_spans; r += spans[s].n, s++) {
        if (spans[s].logits != G4_LOGITS_ALL) continue;
        for (int64_t t = 0; t < spans[s].n; t++) d->logit_src[t] = (int32_t)(r + t);
        rc = output_logits(d, spans[s].n, deliver_all, (void *)&spans[s], err);
    }
    if (rc) return rc;
    for (int s = 0; s < n_spans; s++) spans[s].seq->pos += spans[s].n;
    return 0;
}

int g4_soft_assign(const g4_model *m, const int32_t *ids, int64_t T, const g4_soft_tokens soft[G4_SOFT_KINDS],
                   const float **out, g4_err *err) {
    static const char *kind_name[G4_SOFT_KINDS] = {"image", "video", "audio"};
    const int64_t H = m->cfg.text.hidden_size;
    int64_t used[G4_SOFT_KINDS] = {0}, placeholders[G4_SOFT_KINDS] = {0};
    for (int64_t t = 0; t < T; t++) {
        int kind = g4_soft_kind(m, ids[t]);
        if (kind >= 0) placeholders[kind]++;
    }
    for (int k = 0; soft && k < G4_SOFT_KINDS; k++)
        if (soft[k].rows && soft[k].n != placeholders[k])
            return g4_fail(err, GEMMA4C_ERR_ARG, "%lld %s placeholder tokens but %lld %s soft tokens",
                           (long long)placeholders[k], kind_name[k], (long long)soft[k].n, kind_name[k]);
    for (int64_t t = 0; t < T; t++) {
        int kind = g4_soft_kind(m, ids[t]);
        out[t] = kind >= 0 && soft && soft[kind].rows ? soft[kind].rows + used[kind]++ * H : NULL;
    }
    return 0;
}

/* Streams logits to the caller and keeps the last position's when it is wanted too. */
typedef struct stream_ctx {
    const g4_forward_opts *opts;
    int64_t last_pos, V;
} stream_ctx;

static int stream_logits(void *ctx, int64_t pos0, int64_t n, const float *logits, g4_err *err) {
    stream_ctx *sc = ctx;
    if (sc->opts->last_logits && pos0 <= sc->last_pos && sc->last_pos < pos0 + n)
        memcpy(sc->opts->last_logits, logits + (sc->last_pos - pos0) * sc->V, (size_t)sc->V * sizeof(float));
    return sc->opts->on_logits ? sc->opts->on_logits(sc->opts->ctx, pos0, n, logits, err) : 0;
}

int g4_decoder_forward(g4_decoder *d, g4_kv_seq *seq, const int32_t *ids, int64_t T, const g4_forward_opts *opts,
                       g4_err *err) {
    static const g4_forward_opts none = {0};
    if (!opts) opts = &none;
    if (T <= 0) return g4_fail(err, GEMMA4C_ERR_ARG, "no tokens to run");
    if (T > seq->n_ctx - seq->pos)
        return g4_fail(err, GEMMA4C_ERR_CONTEXT, "%lld tokens do not fit the context: %lld of %lld positions used",
                       (long long)T, (long long)seq->pos, (long long)seq->n_ctx);
    const int vocab = d->m->cfg.text.vocab_size;
    for (int64_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= vocab)
            return g4_fail(err, GEMMA4C_ERR_ARG, "token id %d at position %lld is outside the vocabulary (0..%d)",
                           ids[t], (long long)t, vocab - 1);
    const float **soft = malloc((size_t)T * sizeof *soft);
    if (!soft) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    int rc = g4_soft_assign(d->m, ids, T, opts->soft, soft, err);
    const int64_t V = vocab, H = d->m->cfg.text.hidden_size, L = d->m->cfg.text.num_layers;
    const int64_t LP = L * d->m->cfg.text.ple_dim;
    g4_probe *probe = opts->probe;
    stream_ctx sc = {opts, seq->pos + T - 1, V};
    for (int64_t s = 0, n = 0; !rc && s < T; s += n) {
        n = g4_decoder_chunk(d->m, ids + s, T - s, d->max_rows);
        g4_span sp = {seq, ids + s, n, soft + s, G4_LOGITS_NONE, NULL, NULL, NULL};
        if (opts->all_logits || opts->on_logits) {
            sp.logits = G4_LOGITS_ALL;
            sp.out = opts->all_logits ? opts->all_logits + s * V : NULL;
            sp.on_logits = stream_logits;
            sp.ctx = &sc;
        } else if (opts->last_logits && s + n == T) {
            sp.logits = G4_LOGITS_LAST;
            sp.out = opts->last_logits;
        }
        /* A probe covers all T rows: each step writes its rows into it, layer by layer. */
        float *chunk_hidden = NULL;
        g4_probe chunk_probe = {0};
        if (probe) {
            chunk_probe.inputs_embeds = probe->inputs_embeds ? probe->inputs_embeds + s * H : NULL;
            chunk_probe.per_layer_inputs = probe->per_layer_inputs ? probe->per_layer_inputs + s * LP : NULL;
            if (probe->hidden_states && !(chunk_probe.hidden_states = chunk_hidden = malloc((size_t)((L + 1) * n * H) * sizeof(float))))
                rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        }
        if (!rc) rc = g4_decoder_step(d, &sp, 1, probe ? &chunk_probe : NULL, NULL, NULL, err);
        if (!rc && chunk_hidden)
            for (int64_t l = 0; l <= L; l++)
                memcpy(probe->hidden_states + (l * T + s) * H, chunk_hidden + l * n * H, (size_t)(n * H) * sizeof(float));
        free(chunk_hidden);
    }
    if (!rc && opts->last_logits && opts->all_logits)
        memcpy(opts->last_logits, opts->all_logits + (T - 1) * V, (size_t)V * sizeof(float));
    free(soft);
    return rc;
}
