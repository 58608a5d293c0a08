/* decoder.c — the Gemma 4 text forward pass over a batch of rows, written to be read next to the spec (gemma4-text.md §2). */
#include "decoder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The buffers that hold R rows while they run through the layers; on failure the old ones stay. */
static int alloc_row_scratch(g4_decoder *d, int64_t R) {
    const g4_text_config *tc = &d->m->cfg.text;
    g4_backend *be = d->be;
    const int64_t H = tc->hidden_size, L = tc->num_layers, P = tc->ple_dim;
    int64_t qw = 0, kvw = 0, iw = 0;
    for (int l = 0; l < L; l++) {
        qw = max64(qw, (int64_t)tc->num_heads * tc->layer_head_dim[l]);
        kvw = max64(kvw, (int64_t)tc->layer_kv_heads[l] * tc->layer_head_dim[l]);
        iw = max64(iw, tc->layer_intermediate[l]);
    }
    const int64_t half[2] = {tc->head_dim / 2, tc->global_head_dim / 2};
    float **bufs[] = {&d->x, &d->xn, &d->proj, &d->q, &d->attn, &d->k, &d->v, &d->gate, &d->up, &d->ple, &d->ple_gate,
                      &d->rope_cos[0], &d->rope_sin[0], &d->rope_cos[1], &d->rope_sin[1]};
    const int64_t width[] = {H, H, H, qw, qw, kvw, kvw, iw, iw, L * P, P, half[0], half[0], half[1], half[1]};
    enum { N = sizeof bufs / sizeof *bufs };
    float *fresh[N];
    int failed = 0;
    for (size_t i = 0; i < N; i++) failed |= !(fresh[i] = be->alloc(be, (size_t)(R * width[i]) * sizeof(float)));
    /* host side: one allocation per array */
    void **host[] = {(void **)&d->row_seq, (void **)&d->row_pos, (void **)&d->first[0], (void **)&d->first[1],
                     (void **)&d->last[0], (void **)&d->last[1], (void **)&d->lookup, (void **)&d->span_of,
                     (void **)&d->logit_src, (void **)&d->host_rope, (void **)&d->views, (void **)&d->row_view};
    const size_t host_bytes[] = {sizeof(g4_kv_seq *), sizeof(int64_t), sizeof(int64_t), sizeof(int64_t),
                                 sizeof(int64_t), sizeof(int64_t), sizeof(int32_t), sizeof(int32_t),
                                 sizeof(int32_t), 2 * (size_t)max64(half[0], half[1]) * sizeof(float),
                                 sizeof(g4_kv_view), sizeof(g4_kv_view *)};
    enum { NH = sizeof host / sizeof *host };
    void *fresh_host[NH];
    for (size_t i = 0; i < NH; i++) failed |= !(fresh_host[i] = calloc((size_t)R, host_bytes[i]));
    if (failed) {
        for (size_t i = 0; i < N; i++) be->release(be, fresh[i]);
        for (size_t i = 0; i < NH; i++) free(fresh_host[i]);
        return 1;
    }
    for (size_t i = 0; i < N; i++) {
        be->release(be, *bufs[i]);
        *bufs[i] = fresh[i];
    }
    for (size_t i = 0; i < NH; i++) {
        free(*host[i]);
        *host[i] = fresh_host[i];
    }
    d->max_rows = R;
    return 0;
}

int g4_decoder_init(g4_decoder *d, const g4_model *m, g4_backend *be, int64_t max_rows, g4_err *err) {
    memset(d, 0, sizeof *d);
    const g4_text_config *tc = &m->cfg.text;
    if (tc->use_bidirectional_attention == G4_BIDI_ALL)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED,
                       "use_bidirectional_attention \"all\" makes every layer bidirectional: such a model cannot "
                       "generate text, and gemma4c does not run it");
    if (max_rows <= 0) max_rows = GEMMA4C_DEFAULT_BATCH;
    d->m = m;
    d->be = be;
    const int64_t L = tc->num_layers, P = tc->ple_dim, V = tc->vocab_size;
    int failed = alloc_row_scratch(d, max_rows);
    d->logit_rows = 32;
    failed |= !(d->ple_row = be->alloc(be, (size_t)max64(L * P, 1) * sizeof(float)));
    failed |= !(d->logits = be->alloc(be, (size_t)(d->logit_rows * V) * sizeof(float)));
    if (!be->host_memory) failed |= !(d->host_logits = malloc((size_t)(d->logit_rows * V) * sizeof(float)));
    if (failed) {
        g4_decoder_free(d);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for steps of %lld rows", (long long)max_rows);
    }
    return 0;
}

void g4_decoder_free(g4_decoder *d) {
    g4_backend *be = d->be;
    if (be) {
        float *bufs[] = {d->x, d->xn, d->q, d->k, d->v, d->attn, d->proj, d->gate, d->up, d->ple, d->ple_gate, d->ple_row,
                         d->rope_cos[0], d->rope_cos[1], d->rope_sin[0], d->rope_sin[1], d->logits};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) be->release(be, bufs[i]);
    }
    void *host[] = {d->row_seq, d->row_pos, d->first[0], d->first[1], d->last[0], d->last[1], d->lookup, d->span_of,
                    d->logit_src, d->host_rope, d->views, d->row_view, d->host_logits};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) free(host[i]);
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
 * token embeds as the pad token. `lookup` keeps the ids for the per-layer table. */
static void embed_rows(g4_decoder *d, int64_t n, const g4_span *spans, int n_spans) {
    const g4_model *m = d->m;
    const int64_t H = m->cfg.text.hidden_size;
    for (int64_t s = 0, r = 0; s < n_spans; r += spans[s].n, s++)
        for (int64_t t = 0; t < spans[s].n; t++)
            d->lookup[r + t] = g4_soft_kind(m, spans[s].ids[t]) >= 0 ? m->cfg.text.pad_token_id : spans[s].ids[t];
    d->be->embed(d->be, &m->embed, d->lookup, n, m->embed_scale, d->x);
    for (int64_t s = 0, r = 0; s < n_spans; r += spans[s].n, s++)
        for (int64_t t = 0; t < spans[s].n; t++)
            if (g4_soft_kind(m, spans[s].ids[t]) >= 0 && spans[s].soft && spans[s].soft[t])
                d->be->upload(d->be, d->x + (r + t) * H, spans[s].soft[t], (size_t)H * sizeof(float));
}

/* ple[r][l] = (RMSNorm(x[r] · W_plmp^T / sqrt(H))[l] + E_ple[id_r][l] * sqrt(P)) / sqrt(2), for all layers. */
static void per_layer_inputs(g4_decoder *d, int64_t n) {
    const g4_model *m = d->m;
    const g4_text_config *c = &m->cfg.text;
    g4_backend *be = d->be;
    const int64_t H = c->hidden_size, L = c->num_layers, P = c->ple_dim, LP = L * P;
    be->matmul(be, d->x, n, H, &m->ple_model_proj, d->ple);
    be->add(be, d->ple, NULL, n * LP, (float)(1.0 / sqrt((double)H)));
    be->rmsnorm(be, d->ple, d->ple, m->ple_projection_norm, n * L, P, (float)c->rms_norm_eps);
    for (int64_t r = 0; r < n; r++) {
        /* Ids beyond the per-layer vocabulary use the pad row, as transformers masks them. */
        const int32_t id = d->lookup[r] < c->vocab_size_per_layer_input ? d->lookup[r] : c->pad_token_id;
        be->embed(be, &m->ple_table, &id, 1, m->ple_embed_scale, d->ple_row);
        be->add(be, d->ple + r * LP, d->ple_row, LP, (float)(1.0 / sqrt(2.0)));
    }
}

/* cos/sin of pos * inv_freq for every row's position, per layer type, and the key ranges: sliding layers see
 * the window to their left, and up to their reach (place_rows); full layers every position up to their own. */
static void prepare_rows(g4_decoder *d, int64_t n) {
    const g4_text_config *c = &d->m->cfg.text;
    for (int type = 0; type < 2; type++) {
        const int64_t half = (type == G4_LAYER_FULL ? c->global_head_dim : c->head_dim) / 2;
        const float *inv = d->m->inv_freq[type];
        float *cs = d->host_rope, *sn = d->host_rope + n * half;
        for (int64_t r = 0; r < n; r++)
            for (int64_t i = 0; i < half; i++) {
                float angle = (float)d->row_pos[r] * inv[i];
                cs[r * half + i] = cosf(angle);
                sn[r * half + i] = sinf(angle);
            }
        d->be->upload(d->be, d->rope_cos[type], cs, (size_t)(n * half) * sizeof(float));
        d->be->upload(d->be, d->rope_sin[type], sn, (size_t)(n * half) * sizeof(float));
    }
    for (int64_t r = 0; r < n; r++) {
        d->first[G4_LAYER_SLIDING][r] = max64(0, d->row_pos[r] - c->sliding_window + 1);
        d->first[G4_LAYER_FULL][r] = 0;
        d->last[G4_LAYER_FULL][r] = d->row_pos[r];
    }
}

static int attention_block(g4_decoder *d, int l, int64_t n, g4_err *err) {
    const g4_model *m = d->m;
    const g4_text_config *c = &m->cfg.text;
    const g4_layer *ly = &m->layers[l];
    g4_backend *be = d->be;
    const int64_t H = c->hidden_size, D = c->layer_head_dim[l], nq = c->num_heads, nkv = c->layer_kv_heads[l];
    const int type = c->layer_type[l];
    const float eps = (float)c->rms_norm_eps;

    be->rmsnorm(be, d->xn, d->x, ly->input_norm, n, H, eps);
    /* KV-shared layers attend to their donor's cache: they project queries only */
    const int own_kv = l < c->first_kv_shared;
    const g4_tensor *proj[3] = {&ly->q_proj, &ly->k_proj, &ly->v_proj};
    float *const out[3] = {d->q, d->k, d->v};
    be->matmul_many(be, d->xn, n, H, own_kv ? (c->layer_k_is_v[l] ? 2 : 3) : 1, proj, out);
    be->rmsnorm(be, d->q, d->q, ly->q_norm, n * nq, D, eps);
    be->rope(be, d->q, n, nq, D, 1, d->rope_cos[type], d->rope_sin[type]);
    /* every span's view of the cache this layer reads */
    const g4_kv_pages *pages = NULL;
    for (int64_t r = 0; r < n; r++) {
        if (r && d->span_of[r] == d->span_of[r - 1]) continue;
        pages = &d->row_seq[r]->layers[c->kv_donor[l]];
        d->views[d->span_of[r]] = (g4_kv_view){pages->page, G4_KV_PAGE, G4_KV_PAGE * D, D, nkv * G4_KV_PAGE * D};
    }
    if (own_kv) {
        if (c->layer_k_is_v[l]) be->copy(be, d->v, d->k, (size_t)(n * nkv * D) * sizeof(float));
        be->rmsnorm(be, d->k, d->k, ly->k_norm, n * nkv, D, eps);
        be->rope(be, d->k, n, nkv, D, 1, d->rope_cos[type], d->rope_sin[type]);
        be->rmsnorm(be, d->v, d->v, NULL, n * nkv, D, eps); /* values are normalised without a weight, never rotated */
        be->kv_write(be, d->row_view, d->row_pos, n, nkv, D, d->k, d->v);
    }
    const g4_attention a = {n, nq, nkv, D, d->q, d->attn, d->row_view, d->first[type], d->last[type]};
    int rc = be->attention(be, &a, err);
    if (rc) return rc;
    be->matmul(be, d->attn, n, nq * D, &ly->o_proj, d->proj);
    be->rmsnorm(be, d->proj, d->proj, ly->post_attention_norm, n, H, eps);
    be->add(be, d->x, d->proj, n * H, 1.0f);
    return 0;
}

static void mlp_block(g4_decoder *d, int l, int64_t n) {
    const g4_text_config *c = &d->m->cfg.text;
    const g4_layer *ly = &d->m->layers[l];
    g4_backend *be = d->be;
    const int64_t H = c->hidden_size, I = c->layer_intermediate[l];
    const float eps = (float)c->rms_norm_eps;
    be->rmsnorm(be, d->xn, d->x, ly->pre_feedforward_norm, n, H, eps);
    be->matmul_gelu(be, d->xn, n, H, &ly->gate_proj, &ly->up_proj, d->gate, d->up);
    be->matmul(be, d->gate, n, I, &ly->down_proj, d->proj);
    be->rmsnorm(be, d->proj, d->proj, ly->post_feedforward_norm, n, H, eps);
    be->add(be, d->x, d->proj, n * H, 1.0f);
}

/* x += RMSNorm((gelu(x · W_gate^T) * ple[l]) · W_proj^T) */
static void per_layer_input_block(g4_decoder *d, int l, int64_t n) {
    const g4_text_config *c = &d->m->cfg.text;
    const g4_layer *ly = &d->m->layers[l];
    g4_backend *be = d->be;
    const int64_t H = c->hidden_size, L = c->num_layers, P = c->ple_dim;
    be->matmul(be, d->x, n, H, &ly->per_layer_input_gate, d->ple_gate);
    be->gelu_mul(be, d->ple_gate, P, d->ple + l * P, L * P, n, P);
    be->matmul(be, d->ple_gate, n, P, &ly->per_layer_projection, d->proj);
    be->rmsnorm(be, d->proj, d->proj, ly->post_per_layer_input_norm, n, H, (float)c->rms_norm_eps);
    be->add(be, d->x, d->proj, n * H, 1.0f);
}

static int decoder_layer(g4_decoder *d, int l, int64_t n, g4_err *err) {
    const g4_text_config *c = &d->m->cfg.text;
    int rc = attention_block(d, l, n, err);
    if (rc) return rc;
    mlp_block(d, l, n);
    if (c->ple_dim > 0) per_layer_input_block(d, l, n);
    /* the layer scalar scales the whole residual stream, not just the branch */
    d->be->add(d->be, d->x, NULL, n * c->hidden_size, d->m->layers[l].layer_scalar);
    return 0;
}

/* logits = softcap(RMSNorm(x) · E^T) for `rows` rows of xn listed in logit_src, in slices of logit_rows; each
 * slice goes to `deliver` as host memory. The rows are gathered into d->proj (free by now). */
typedef int (*deliver_fn)(g4_decoder *d, int64_t first, int64_t rows, const float *logits, void *ctx, g4_err *err);

static int output_logits(g4_decoder *d, int64_t rows, deliver_fn deliver, void *ctx, g4_err *err) {
    const g4_text_config *c = &d->m->cfg.text;
    g4_backend *be = d->be;
    const int64_t H = c->hidden_size, V = c->vocab_size;
    const float cap = (float)c->final_logit_softcapping;
    for (int64_t r0 = 0; r0 < rows; r0 += d->logit_rows) {
        const int64_t n = min64(d->logit_rows, rows - r0);
        be->gather_rows(be, d->proj, d->xn, d->logit_src + r0, n, H);
        be->matmul(be, d->proj, n, H, &d->m->lm_head, d->logits);
        if (cap > 0) be->softcap(be, d->logits, n * V, cap);
        const float *host = d->logits;
        if (!be->host_memory) be->download(be, (float *)(host = d->host_logits), d->logits, (size_t)(n * V) * sizeof(float));
        int rc = deliver(d, r0, n, host, ctx, err);
        if (rc) return rc;
    }
    return 0;
}

/* Last-row logits of every LAST span, gathered across spans so that one product serves them all. */
typedef struct last_rows {
    const g4_span *spans;
    int *span_of; /* [rows]: which span each gathered row is the last of */
} last_rows;

static int deliver_last(g4_decoder *d, int64_t first, int64_t rows, const float *logits, void *ctx, g4_err *err) {
    (void)err;
    last_rows *lr = ctx;
    const int64_t V = d->m->cfg.text.vocab_size;
    for (int64_t i = 0; i < rows; i++)
        memcpy(lr->spans[lr->span_of[first + i]].out, logits + i * V, (size_t)V * sizeof(float));
    return 0;
}

static int deliver_all(g4_decoder *d, int64_t first, int64_t rows, const float *logits, void *ctx, g4_err *err) {
    const g4_span *sp = ctx;
    const int64_t V = d->m->cfg.text.vocab_size;
    if (sp->out) {
        memcpy(sp->out + first * V, logits, (size_t)(rows * V) * sizeof(float));
        return 0;
    }
    return sp->on_logits(sp->ctx, sp->seq->pos + first, rows, logits, err);
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

/* Row r's position, sequence, span and reach on sliding layers: its own position, or its vision span's last. */
static void place_rows(g4_decoder *d, int64_t r, const g4_span *sp, int span) {
    int64_t *reach = d->last[G4_LAYER_SLIDING];
    for (int64_t t = sp->n - 1; t >= 0; t--) {
        d->row_seq[r + t] = sp->seq;
        d->row_pos[r + t] = sp->seq->pos + t;
        d->span_of[r + t] = span;
        d->row_view[r + t] = &d->views[span];
        reach[r + t] = t + 1 < sp->n && in_vision_span(d->m, sp->ids[t]) && in_vision_span(d->m, sp->ids[t + 1])
                           ? reach[r + t + 1]
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
        if (sp->seq->budget->be != d->be) return g4_fail(err, GEMMA4C_ERR_ARG, "a sequence cached on another backend");
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

/* A probe's copy of n rows of H floats. */
static void probe_rows(g4_decoder *d, float *host, const float *rows, int64_t n) {
    if (host) d->be->download(d->be, host, rows, (size_t)(n * d->m->cfg.text.hidden_size) * sizeof(float));
}

int g4_decoder_step(g4_decoder *d, const g4_span *spans, int n_spans, g4_probe *probe, g4_abort_fn abort_fn,
                    void *abort_ctx, g4_err *err) {
    const g4_text_config *c = &d->m->cfg.text;
    const int64_t H = c->hidden_size, L = c->num_layers, P = c->ple_dim;
    int64_t n = 0;
    int rc = check_spans(d, spans, n_spans, probe, &n, err);
    for (int s = 0; !rc && s < n_spans; s++) rc = g4_kv_seq_reserve(spans[s].seq, spans[s].seq->pos + spans[s].n, err);
    if (rc) return rc;
    if (n > d->max_rows && alloc_row_scratch(d, n))
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for a step of %lld rows", (long long)n);

    for (int64_t s = 0, r = 0; s < n_spans; r += spans[s].n, s++) place_rows(d, r, &spans[s], (int)s);
    embed_rows(d, n, spans, n_spans);
    if (probe) probe_rows(d, probe->inputs_embeds, d->x, n);
    if (P > 0) {
        per_layer_inputs(d, n);
        if (probe && probe->per_layer_inputs)
            d->be->download(d->be, probe->per_layer_inputs, d->ple, (size_t)(n * L * P) * sizeof(float));
    }
    if (probe) probe_rows(d, probe->hidden_states, d->x, n);
    prepare_rows(d, n);
    for (int l = 0; l < L; l++) {
        if (abort_fn && abort_fn(abort_ctx)) return g4_fail(err, GEMMA4C_ERR_CANCELLED, "cancelled");
        if ((rc = decoder_layer(d, l, n, err))) return rc;
        if (probe && probe->hidden_states && l < L - 1) probe_rows(d, probe->hidden_states + (l + 1) * n * H, d->x, n);
    }
    d->be->rmsnorm(d->be, d->xn, d->x, d->m->final_norm, n, H, (float)c->rms_norm_eps);
    if (probe && probe->hidden_states) probe_rows(d, probe->hidden_states + L * n * H, d->xn, n);

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
