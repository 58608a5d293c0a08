/* vision.c — the Gemma 4 vision tower and embedder, written to be read next to the spec (gemma4-multimodal.md §1.4). */
#include "vision.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

/* ---- vision_config ----------------------------------------------------------------------------------- */

/* Fields absent or null take the Gemma4VisionConfig default, as transformers treats them. */
int g4_vision_parse_config(const char *json, int text_hidden, g4_vision_config *c, g4_err *err) {
    memset(c, 0, sizeof *c);
    c->text_hidden_size = text_hidden;
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "config: vision_config is not a JSON object");
    }
    const g4_json_obj o = {root, "config", "vision_config."};
    int rc;
    if ((rc = g4_json_int(&o, "hidden_size", 768, 1, 1 << 16, &c->hidden_size, err)) ||
        (rc = g4_json_int(&o, "intermediate_size", 3072, 1, 1 << 18, &c->intermediate_size, err)) ||
        (rc = g4_json_int(&o, "num_hidden_layers", 16, 1, 1024, &c->num_layers, err)) ||
        (rc = g4_json_int(&o, "num_attention_heads", 12, 1, 1024, &c->num_heads, err)) ||
        (rc = g4_json_int(&o, "num_key_value_heads", 12, 1, 1024, &c->num_kv_heads, err)) ||
        (rc = g4_json_int(&o, "head_dim", 64, 4, 4096, &c->head_dim, err)) ||
        (rc = g4_json_int(&o, "patch_size", 16, 1, 1024, &c->patch_size, err)) ||
        (rc = g4_json_int(&o, "pooling_kernel_size", 3, 1, 64, &c->pooling_kernel_size, err)) ||
        (rc = g4_json_int(&o, "position_embedding_size", 10240, 1, 1 << 20, &c->position_embedding_size, err)) ||
        (rc = g4_json_double(&o, "rms_norm_eps", 1e-6, 0, 1, 1, &c->rms_norm_eps, err)) ||
        (rc = g4_json_bool(&o, "use_clipped_linears", 0, &c->use_clipped_linears, err)) ||
        (rc = g4_json_bool(&o, "standardize", 0, &c->standardize, err)))
        goto done;

    const cJSON *act = g4_json_field(&o, "hidden_activation");
    if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "gelu_pytorch_tanh") == 0)) {
        rc = g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "config: vision_config.hidden_activation %.40s is not supported (only gelu_pytorch_tanh)",
                     cJSON_IsString(act) ? act->valuestring : "(not a string)");
        goto done;
    }
    /* 5.17 rewrites a stored "default" rope type to "axial" and refuses anything else. */
    c->rope_theta = 100.0;
    const cJSON *rp = g4_json_field(&o, "rope_parameters");
    if (rp) {
        if (!cJSON_IsObject(rp)) {
            rc = g4_json_fail(&o, "rope_parameters", "must be an object", err);
            goto done;
        }
        char path[64];
        const g4_json_obj ro = g4_json_sub(&o, rp, "rope_parameters", path, sizeof path);
        const cJSON *ty = g4_json_field(&ro, "rope_type");
        if (ty && !(cJSON_IsString(ty) && (strcmp(ty->valuestring, "axial") == 0 || strcmp(ty->valuestring, "default") == 0))) {
            rc = g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "config: vision_config.rope_parameters.rope_type %.40s is not supported (axial)",
                         cJSON_IsString(ty) ? ty->valuestring : "(not a string)");
            goto done;
        }
        if ((rc = g4_json_double(&ro, "rope_theta", 100.0, 0, 1e12, 1, &c->rope_theta, err))) goto done;
    } else if ((rc = g4_json_double(&o, "rope_theta", 100.0, 0, 1e12, 1, &c->rope_theta, err)))
        goto done;

    if (c->head_dim % 4 != 0)
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "config: vision_config.head_dim %d is not a multiple of 4 (2-D RoPE splits it in quarters)",
                     c->head_dim);
    else if (c->num_heads % c->num_kv_heads != 0)
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "config: vision_config.num_attention_heads %d is not a multiple of num_key_value_heads %d",
                     c->num_heads, c->num_kv_heads);
    else if (c->pooling_kernel_size < 2)
        /* transformers skips the pooler at k = 1 and then keeps the padding rows instead of the real ones */
        rc = g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "config: vision_config.pooling_kernel_size 1 is not supported");
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- binding the weights ----------------------------------------------------------------------------- */

static int bind_matrix(g4_model *m, const char *name, int64_t rows, int64_t cols, g4_tensor *t, g4_err *err) {
    int64_t shape[2] = {rows, cols};
    return g4_model_tensor(m, name, 2, shape, t, err);
}

/* The clip bounds are 0-D tensors (bf16 in published checkpoints). */
static int bind_scalar(g4_model *m, const char *name, float *out, g4_err *err) {
    int64_t none[1] = {0};
    g4_tensor t;
    int rc = g4_model_tensor(m, name, 0, none, &t, err);
    if (rc) return rc;
    *out = g4_tensor_get_f32(&t, 0);
    return 0;
}

static int bind_clipped(g4_model *m, const g4_vision_config *c, const char *base, int64_t out_f, int64_t in_f,
                        g4_clipped_linear *cl, g4_err *err) {
    char name[320];
    snprintf(name, sizeof name, "%s.linear.weight", base);
    int rc = bind_matrix(m, name, out_f, in_f, &cl->w, err);
    if (rc) return rc;
    cl->in_min = cl->out_min = -INFINITY;
    cl->in_max = cl->out_max = INFINITY;
    if (!c->use_clipped_linears) return 0;
    const char *which[4] = {"input_min", "input_max", "output_min", "output_max"};
    float *dst[4] = {&cl->in_min, &cl->in_max, &cl->out_min, &cl->out_max};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", base, which[i]);
        if ((rc = bind_scalar(m, name, dst[i], err))) return rc;
    }
    return 0;
}

static int bind_layer(g4_model *m, const g4_vision_config *c, int l, g4_vision_layer *ly, g4_err *err) {
    const int64_t D = c->hidden_size, I = c->intermediate_size, hd = c->head_dim;
    const int64_t qw = (int64_t)c->num_heads * hd, kvw = (int64_t)c->num_kv_heads * hd;
    char p[96], name[256];
    snprintf(p, sizeof p, "model.vision_tower.encoder.layers.%d.", l);
    struct { const char *suffix; float **dst; int64_t n; } vecs[] = {
        {"input_layernorm.weight", &ly->input_norm, D},
        {"post_attention_layernorm.weight", &ly->post_attention_norm, D},
        {"pre_feedforward_layernorm.weight", &ly->pre_feedforward_norm, D},
        {"post_feedforward_layernorm.weight", &ly->post_feedforward_norm, D},
        {"self_attn.q_norm.weight", &ly->q_norm, hd},
        {"self_attn.k_norm.weight", &ly->k_norm, hd},
    };
    int rc;
    for (size_t i = 0; i < sizeof vecs / sizeof *vecs; i++) {
        snprintf(name, sizeof name, "%s%s", p, vecs[i].suffix);
        if ((rc = g4_model_vector(m, name, vecs[i].n, vecs[i].dst, err))) return rc;
    }
    struct { const char *base; g4_clipped_linear *dst; int64_t out_f, in_f; } lins[] = {
        {"self_attn.q_proj", &ly->q_proj, qw, D},   {"self_attn.k_proj", &ly->k_proj, kvw, D},
        {"self_attn.v_proj", &ly->v_proj, kvw, D},  {"self_attn.o_proj", &ly->o_proj, D, qw},
        {"mlp.gate_proj", &ly->gate_proj, I, D},    {"mlp.up_proj", &ly->up_proj, I, D},
        {"mlp.down_proj", &ly->down_proj, D, I},
    };
    for (size_t i = 0; i < sizeof lins / sizeof *lins; i++) {
        snprintf(name, sizeof name, "%s%s", p, lins[i].base);
        if ((rc = bind_clipped(m, c, name, lins[i].out_f, lins[i].in_f, lins[i].dst, err))) return rc;
    }
    return 0;
}

int g4_vision_load(g4_model *m, g4_vision **out, g4_err *err) {
    *out = NULL;
    if (!m->cfg.has_vision || !m->cfg.vision_json)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: the model has no vision tower (its config has no vision_config)", m->source);
    g4_vision *v = calloc(1, sizeof *v);
    if (!v) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    g4_vision_config *c = &v->cfg;
    int rc;
    if ((rc = g4_vision_parse_config(m->cfg.vision_json, m->cfg.text.hidden_size, c, err))) goto fail;
    const int64_t D = c->hidden_size, p = c->patch_size;
    if ((rc = bind_matrix(m, "model.vision_tower.patch_embedder.input_proj.weight", D, 3 * p * p, &v->input_proj, err)))
        goto fail;
    int64_t table_shape[3] = {2, c->position_embedding_size, D};
    if ((rc = g4_model_tensor(m, "model.vision_tower.patch_embedder.position_embedding_table", 3, table_shape,
                              &v->position_table, err)))
        goto fail;
    v->layers = calloc((size_t)c->num_layers, sizeof *v->layers);
    if (!v->layers) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int l = 0; l < c->num_layers; l++)
        if ((rc = bind_layer(m, c, l, &v->layers[l], err))) goto fail;
    if (c->standardize && ((rc = g4_model_vector(m, "model.vision_tower.std_bias", D, &v->std_bias, err)) ||
                           (rc = g4_model_vector(m, "model.vision_tower.std_scale", D, &v->std_scale, err))))
        goto fail;
    if ((rc = bind_matrix(m, "model.embed_vision.embedding_projection.weight", c->text_hidden_size, D, &v->embed_proj, err)))
        goto fail;

    /* Gemma4VisionRotaryEmbedding in float32: 1 / theta^(2j / (head_dim/2)), one set for both axes. */
    const int quarter = c->head_dim / 4, spatial = c->head_dim / 2;
    v->inv_freq = malloc((size_t)quarter * sizeof(float));
    if (!v->inv_freq) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int j = 0; j < quarter; j++) v->inv_freq[j] = 1.0f / powf((float)c->rope_theta, (float)(2 * j) / (float)spatial);
    *out = v;
    return 0;
fail:
    g4_vision_free(v);
    g4_err_prefix(err, "vision tower");
    return rc;
}

void g4_vision_free(g4_vision *v) {
    if (!v) return;
    free(v->layers);
    free(v->inv_freq);
    free(v);
}

int64_t g4_vision_max_input_width(const g4_vision *v) {
    const g4_vision_config *c = &v->cfg;
    int64_t w = 3LL * c->patch_size * c->patch_size;
    int64_t cand[] = {c->hidden_size, c->intermediate_size, (int64_t)c->num_heads * c->head_dim};
    for (size_t i = 0; i < sizeof cand / sizeof *cand; i++) w = cand[i] > w ? cand[i] : w;
    return w;
}

int g4_vision_max_soft_tokens(const g4_vision *v, int n_patches) {
    const int kk = v->cfg.pooling_kernel_size * v->cfg.pooling_kernel_size;
    return n_patches > 0 ? n_patches / kk : 0;
}

/* ---- the forward pass -------------------------------------------------------------------------------- */

/* Activations of the N real patches; padding patches never enter (see encode). */
typedef struct vis_work {
    const g4_vision *v;
    g4_compute *c;
    int64_t n;
    float *x;                  /* [n, D] the residual stream */
    float *xn;                 /* [n, D] normed input of a block */
    float *xc;                 /* [n, max width] a clipped linear's clamped input */
    float *q, *k, *val, *attn; /* [n, heads * hd] */
    float *proj;               /* [n, D] */
    float *gate, *up;          /* [n, I] */
    float *rope_cos, *rope_sin; /* [n][hd/2]: angles of x (first quarter-set) then of y */
    float *scores;             /* [workers][QUERY_TILE][n] */
} vis_work;

/* y = x · W^T over many patches, in slices of rows: g4_matmul passes every activation row over each block of
 * weight rows, so a slice whose activations stay in cache beats one pass over thousands of patches. */
enum { MATMUL_ROWS = 128 };

/* Query patches whose attention runs together (scores: QUERY_TILE x n per worker). */
enum { QUERY_TILE = 16 };

static void matmul_rows(g4_compute *c, const float *x, int64_t T, int64_t K, const g4_tensor *w, float *y) {
    const int64_t N = w->shape[0];
    for (int64_t t0 = 0; t0 < T; t0 += MATMUL_ROWS)
        g4_matmul(c, x + t0 * K, T - t0 < MATMUL_ROWS ? T - t0 : MATMUL_ROWS, K, w, y + t0 * N);
}

/* torch.clamp(x, lo, hi) = min(max(x, lo), hi): NaN passes through, and hi wins when lo > hi. */
static inline float clampf(float x, float lo, float hi) {
    if (x < lo) x = lo;
    if (x > hi) x = hi;
    return x;
}

/* y[T, out] = clamp(clamp(x, in_min, in_max) · W^T, out_min, out_max). Each projection has its own bounds,
 * so the shared input is clamped into scratch per projection. */
static void clipped_linear(vis_work *w, const g4_clipped_linear *cl, const float *x, int64_t T, int64_t K, float *y) {
    const float *in = x;
    if (cl->in_min > -INFINITY || cl->in_max < INFINITY) {
        for (int64_t i = 0; i < T * K; i++) w->xc[i] = clampf(x[i], cl->in_min, cl->in_max);
        in = w->xc;
    }
    matmul_rows(w->c, in, T, K, &cl->w, y);
    if (cl->out_min > -INFINITY || cl->out_max < INFINITY) {
        const int64_t N = cl->w.shape[0];
        for (int64_t i = 0; i < T * N; i++) y[i] = clampf(y[i], cl->out_min, cl->out_max);
    }
}

/* h = (2 (pixels - 0.5)) · W_in^T + (T[0][x] + T[1][y]) */
static void patch_embed(vis_work *w, const float *pixels, const int64_t *real, const int32_t *positions) {
    const g4_vision *v = w->v;
    const int64_t D = v->cfg.hidden_size, K = v->input_proj.shape[1], P = v->cfg.position_embedding_size;
    for (int64_t r = 0; r < w->n; r++) {
        const float *src = pixels + real[r] * K;
        float *dst = w->xc + r * K;
        /* the reference's own form; (2u - 255)/255 rounded once would differ by an ulp for half the bytes */
        for (int64_t i = 0; i < K; i++) dst[i] = 2.0f * (src[i] - 0.5f);
    }
    matmul_rows(w->c, w->xc, w->n, K, &v->input_proj, w->x);
    const size_t es = g4_dtype_size(v->position_table.dtype);
    const unsigned char *table = v->position_table.data;
    float *tx = w->proj, *ty = w->proj + D; /* proj is free until the first layer */
    for (int64_t r = 0; r < w->n; r++) {
        const int64_t px = positions[2 * real[r]], py = positions[2 * real[r] + 1];
        w->c->ops->to_f32(tx, table + (size_t)(px * D) * es, v->position_table.dtype, D);
        w->c->ops->to_f32(ty, table + (size_t)((P + py) * D) * es, v->position_table.dtype, D);
        float *h = w->x + r * D;
        for (int64_t i = 0; i < D; i++) h[i] += tx[i] + ty[i];
    }
}

/* cos/sin of pos * inv_freq[j] per patch: the x angles for the first half of each head, y for the second. */
static void rope_prepare(vis_work *w, const int64_t *real, const int32_t *positions) {
    const int64_t half = w->v->cfg.head_dim / 2, quarter = half / 2;
    const float *inv = w->v->inv_freq;
    for (int64_t r = 0; r < w->n; r++)
        for (int axis = 0; axis < 2; axis++) {
            const float pos = (float)positions[2 * real[r] + axis];
            for (int64_t j = 0; j < quarter; j++) {
                const float angle = pos * inv[j];
                w->rope_cos[r * half + axis * quarter + j] = cosf(angle);
                w->rope_sin[r * half + axis * quarter + j] = sinf(angle);
            }
        }
}

/* apply_multidimensional_rope: each half of the head is a rotate-half RoPE of its own, pairs (j, j + hd/4). */
static void rope_apply_2d(float *x, const float *cs, const float *sn, int64_t hd) {
    const int64_t half = hd / 2, quarter = hd / 4;
    for (int axis = 0; axis < 2; axis++) {
        float *p = x + axis * half;
        const float *c = cs + axis * quarter, *s = sn + axis * quarter;
        for (int64_t j = 0; j < quarter; j++) {
            const float x1 = p[j], x2 = p[j + quarter];
            p[j] = x1 * c[j] - x2 * s[j];
            p[j + quarter] = x2 * c[j] + x1 * s[j];
        }
    }
}

/* One (head, tile of query patches) per item: scores against every real patch (scaling 1.0: q and k are
 * normed), softmax, weighted values. Bidirectional within the image; a tile shares each key it reads. */
static void attention_range(void *ctx, int64_t begin, int64_t end, int worker) {
    vis_work *w = ctx;
    const g4_vision_config *c = &w->v->cfg;
    const g4_kernel_ops *ops = w->c->ops;
    const int64_t n = w->n, hd = c->head_dim, nq = c->num_heads, nkv = c->num_kv_heads, group = nq / nkv;
    const int64_t tiles = (n + QUERY_TILE - 1) / QUERY_TILE;
    float *scores = w->scores + worker * QUERY_TILE * n;
    for (int64_t item = begin; item < end; item++) {
        const int64_t h = item / tiles, t0 = item % tiles * QUERY_TILE, rows = n - t0 < QUERY_TILE ? n - t0 : QUERY_TILE;
        const float *k = w->k + (h / group) * hd, *v = w->val + (h / group) * hd;
        ops->scores(scores, n, w->q + (t0 * nq + h) * hd, nq * hd, rows, k, nkv * hd, n, hd);
        for (int64_t r = 0; r < rows; r++) ops->softmax(scores + r * n, n);
        float *o = w->attn + (t0 * nq + h) * hd;
        for (int64_t r = 0; r < rows; r++) memset(o + r * nq * hd, 0, (size_t)hd * sizeof(float));
        ops->weighted_sum(o, nq * hd, scores, n, rows, v, nkv * hd, n, hd);
    }
}

static void attention_block(vis_work *w, const g4_vision_layer *ly) {
    const g4_vision_config *c = &w->v->cfg;
    const int64_t n = w->n, D = c->hidden_size, hd = c->head_dim, half = hd / 2;
    const int64_t nq = c->num_heads, nkv = c->num_kv_heads;
    const float eps = (float)c->rms_norm_eps;

    g4_rmsnorm_rows(w->c->ops, w->xn, w->x, ly->input_norm, n, D, eps);
    clipped_linear(w, &ly->q_proj, w->xn, n, D, w->q);
    clipped_linear(w, &ly->k_proj, w->xn, n, D, w->k);
    clipped_linear(w, &ly->v_proj, w->xn, n, D, w->val);
    for (int64_t t = 0; t < n; t++) {
        const float *cs = w->rope_cos + t * half, *sn = w->rope_sin + t * half;
        for (int64_t h = 0; h < nq; h++) {
            float *qh = w->q + (t * nq + h) * hd;
            w->c->ops->rmsnorm(qh, qh, ly->q_norm, hd, eps);
            rope_apply_2d(qh, cs, sn, hd);
        }
        for (int64_t h = 0; h < nkv; h++) {
            float *kh = w->k + (t * nkv + h) * hd, *vh = w->val + (t * nkv + h) * hd;
            w->c->ops->rmsnorm(kh, kh, ly->k_norm, hd, eps);
            rope_apply_2d(kh, cs, sn, hd);
            w->c->ops->rmsnorm(vh, vh, NULL, hd, eps); /* v_norm has no weight, no RoPE */
        }
    }
    g4_pool_for(w->c->pool, nq * ((n + QUERY_TILE - 1) / QUERY_TILE), 1, attention_range, w);
    clipped_linear(w, &ly->o_proj, w->attn, n, nq * hd, w->proj);
    g4_rmsnorm_rows(w->c->ops, w->proj, w->proj, ly->post_attention_norm, n, D, eps);
    for (int64_t i = 0; i < n * D; i++) w->x[i] += w->proj[i];
}

static void mlp_block(vis_work *w, const g4_vision_layer *ly) {
    const g4_vision_config *c = &w->v->cfg;
    const int64_t n = w->n, D = c->hidden_size, I = c->intermediate_size;
    const float eps = (float)c->rms_norm_eps;
    g4_rmsnorm_rows(w->c->ops, w->xn, w->x, ly->pre_feedforward_norm, n, D, eps);
    clipped_linear(w, &ly->gate_proj, w->xn, n, D, w->gate);
    clipped_linear(w, &ly->up_proj, w->xn, n, D, w->up);
    g4_gelu_mul(w->c, w->gate, w->up, n * I);
    clipped_linear(w, &ly->down_proj, w->gate, n, I, w->proj);
    g4_rmsnorm_rows(w->c->ops, w->proj, w->proj, ly->post_feedforward_norm, n, D, eps);
    for (int64_t i = 0; i < n * D; i++) w->x[i] += w->proj[i];
}

static void work_free(vis_work *w) {
    float *bufs[] = {w->x, w->xn, w->xc, w->q, w->k, w->val, w->attn, w->proj, w->gate, w->up,
                     w->rope_cos, w->rope_sin, w->scores};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
}

static float *alloc_floats(int64_t n, int *failed) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) *failed = 1;
    return p;
}

static int work_init(vis_work *w, const g4_vision *v, g4_compute *c, int64_t n) {
    memset(w, 0, sizeof *w);
    const g4_vision_config *cf = &v->cfg;
    const int64_t D = cf->hidden_size, I = cf->intermediate_size, hd = cf->head_dim;
    const int64_t qw = (int64_t)cf->num_heads * hd, kvw = (int64_t)cf->num_kv_heads * hd;
    w->v = v;
    w->c = c;
    w->n = n;
    int failed = 0;
    w->x = alloc_floats(n * D, &failed);
    w->xn = alloc_floats(n * D, &failed);
    w->xc = alloc_floats(n * g4_vision_max_input_width(v), &failed);
    w->q = alloc_floats(n * qw, &failed);
    w->attn = alloc_floats(n * qw, &failed);
    w->k = alloc_floats(n * kvw, &failed);
    w->val = alloc_floats(n * kvw, &failed);
    w->proj = alloc_floats(n * D > 2 * D ? n * D : 2 * D, &failed);
    w->gate = alloc_floats(n * I, &failed);
    w->up = alloc_floats(n * I, &failed);
    w->rope_cos = alloc_floats(n * hd / 2, &failed);
    w->rope_sin = alloc_floats(n * hd / 2, &failed);
    w->scores = alloc_floats((int64_t)g4_pool_size(c->pool) * QUERY_TILE * n, &failed);
    if (failed) {
        work_free(w);
        memset(w, 0, sizeof *w);
    }
    return failed ? -1 : 0;
}

/* Checks the inputs and finds, for every real patch, the pooling cell it averages into (Gemma4VisionPooler:
 * cell = x/k + (max_x/k) * (y/k), max_x = 1 + the largest x, padding clamped to 0). */
static int check_inputs(const g4_vision *v, const g4_compute *c, const int32_t *positions, int n_patches,
                        int64_t *real, int64_t *n_real, int64_t *cell, int *has_padding, g4_err *err) {
    const g4_vision_config *cf = &v->cfg;
    const int64_t k = cf->pooling_kernel_size, P = cf->position_embedding_size;
    const int64_t slots = n_patches / (k * k);
    if (c->max_k < g4_vision_max_input_width(v))
        return g4_fail(err, GEMMA4C_ERR_ARG, "vision: the compute context holds rows of %lld values; the vision tower needs %lld",
                       (long long)c->max_k, (long long)g4_vision_max_input_width(v));
    int64_t nr = 0, max_x = 0;
    *has_padding = 0;
    for (int64_t i = 0; i < n_patches; i++) {
        const int32_t x = positions[2 * i], y = positions[2 * i + 1];
        if (x == -1 && y == -1) {
            *has_padding = 1;
            continue;
        }
        if (x < 0 || y < 0 || x >= P || y >= P)
            return g4_fail(err, GEMMA4C_ERR_ARG, "vision: patch %lld has position (%d, %d), outside [0, %lld) (padding is (-1, -1))",
                           (long long)i, x, y, (long long)P);
        real[nr++] = i;
        if (x + 1 > max_x) max_x = x + 1;
    }
    if (nr == 0) return g4_fail(err, GEMMA4C_ERR_ARG, "vision: all %d patches are padding", n_patches);
    for (int64_t r = 0; r < nr; r++) {
        const int64_t x = positions[2 * real[r]], y = positions[2 * real[r] + 1];
        cell[r] = x / k + (max_x / k) * (y / k);
        if (cell[r] >= slots)
            return g4_fail(err, GEMMA4C_ERR_ARG,
                           "vision: patch (%lld, %lld) pools into cell %lld but %d patches give only %lld soft-token slots",
                           (long long)x, (long long)y, (long long)cell[r], n_patches, (long long)slots);
    }
    *n_real = nr;
    return 0;
}

int g4_vision_encode_probe(const g4_vision *v, g4_compute *c, const float *pixel_values, const int32_t *positions,
                           int n_patches, float *out, int *n_soft, const g4_vision_probe *probe, g4_err *err) {
    if (n_soft) *n_soft = 0;
    if (!v || !c || !pixel_values || !positions || !out || !n_soft)
        return g4_fail(err, GEMMA4C_ERR_ARG, "vision: missing argument");
    const g4_vision_config *cf = &v->cfg;
    const int64_t k = cf->pooling_kernel_size, D = cf->hidden_size;
    if (n_patches <= 0 || n_patches % (k * k) != 0)
        return g4_fail(err, GEMMA4C_ERR_ARG, "vision: %d patches; expected a positive multiple of %lld (the pooling kernel %lldx%lld)",
                       n_patches, (long long)(k * k), (long long)k, (long long)k);
    const int64_t slots = n_patches / (k * k);

    int64_t *real = malloc((size_t)n_patches * sizeof *real), *cell = malloc((size_t)n_patches * sizeof *cell);
    float *pooled = calloc((size_t)(slots * D), sizeof(float));
    unsigned char *used = calloc((size_t)slots, 1);
    vis_work w = {0};
    int rc = 0, has_padding = 0;
    int64_t n = 0;
    if (!real || !cell || !pooled || !used) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "vision: out of memory for %d patches", n_patches);
        goto done;
    }
    if ((rc = check_inputs(v, c, positions, n_patches, real, &n, cell, &has_padding, err))) goto done;
    /* Padding patches are masked out of every attention and zeroed before pooling, so the encoder runs on the
     * real patches alone: the same numbers, without the padding's cost. */
    if (work_init(&w, v, c, n)) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "vision: out of memory for %lld patches", (long long)n);
        goto done;
    }

    /* --- patch embedder and encoder --- */
    patch_embed(&w, pixel_values, real, positions);
    rope_prepare(&w, real, positions);
    for (int l = 0; l < cf->num_layers; l++) {
        if (g4_compute_safe_point(c)) {
            rc = g4_fail(err, GEMMA4C_ERR_CANCELLED, "vision: cancelled");
            goto done;
        }
        attention_block(&w, &v->layers[l]);
        mlp_block(&w, &v->layers[l]);
    }

    /* --- pooler: each cell = sum of h * float32(1/k^2) over its patches, as the reference's one-hot matmul --- */
    const float weight = 1.0f / (float)(k * k);
    for (int64_t r = 0; r < n; r++) {
        float *dst = pooled + cell[r] * D;
        const float *h = w.x + r * D;
        for (int64_t i = 0; i < D; i++) dst[i] += h[i] * weight;
        used[cell[r]] = 1;
    }
    /* Padding patches land in cell 0 with a zero state, which still marks cell 0 as taken in the reference. */
    if (has_padding) used[0] = 1;

    /* Keep the taken cells in order, * sqrt(hidden) in float32, then the optional standardisation. */
    const float root = (float)sqrt((double)D);
    int64_t ns = 0;
    for (int64_t s = 0; s < slots; s++) {
        if (!used[s]) continue;
        float *row = pooled + ns * D;
        memmove(row, pooled + s * D, (size_t)D * sizeof(float));
        for (int64_t i = 0; i < D; i++) row[i] *= root;
        if (cf->standardize)
            for (int64_t i = 0; i < D; i++) row[i] = (row[i] - v->std_bias[i]) * v->std_scale[i];
        ns++;
    }
    if (probe && probe->tower_output) memcpy(probe->tower_output, pooled, (size_t)(ns * D) * sizeof(float));

    /* --- Gemma4MultimodalEmbedder: weightless RMSNorm, projection into the text width --- */
    g4_rmsnorm_rows(c->ops, pooled, pooled, NULL, ns, D, (float)cf->rms_norm_eps);
    matmul_rows(c, pooled, ns, D, &v->embed_proj, out);
    *n_soft = (int)ns;
done:
    work_free(&w);
    free(real);
    free(cell);
    free(pooled);
    free(used);
    return rc;
}

int g4_vision_encode(const g4_vision *v, g4_compute *c, const float *pixel_values, const int32_t *positions,
                     int n_patches, float *out, int *n_soft, g4_err *err) {
    return g4_vision_encode_probe(v, c, pixel_values, positions, n_patches, out, n_soft, NULL, err);
}
