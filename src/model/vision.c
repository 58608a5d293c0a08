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
    if (g4_dtype_size(v->position_table.dtype) == 0) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "vision: the position table must be stored as floats");
        goto fail;
    }
    v->position_rows = (g4_embedding){.t = v->position_table, .rows = 2 * table_shape[1], .width = D};
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

/* Activations of the N real patches (padding patches never enter, see encode): backend buffers. */
typedef struct vis_work {
    const g4_vision *v;
    g4_backend *be;
    int64_t n;
    float *x;                  /* [n, D] the residual stream */
    float *xn;                 /* [n, D] normed input of a block */
    float *xc;                 /* [n, max width] a clipped linear's clamped input */
    float *q, *attn;           /* [n, heads * hd] */
    float *kv;                 /* keys [n, kv heads * hd], then values alike */
    float *proj;               /* [n, D] */
    float *gate, *up;          /* [n, I] */
    float *rope_cos, *rope_sin; /* [n][hd/2]: angles of x (first quarter-set) then of y */
    float *pooled;             /* [n + 1, D] the pooler's cells, then the soft tokens' input */
    float *soft;               /* [n + 1, text hidden] where the backend's memory is not the host's */
    g4_kv_view view;           /* keys and values as attention reads them: one page of n positions */
    float *page[1];
    /* host */
    const g4_kv_view **row_view;
    int64_t *first, *last;     /* every patch sees every real patch */
    float *host;               /* staging: [n, max(3 * patch^2, D, hd)] floats */
    int32_t *ids;              /* [2n] rows of the position table */
} vis_work;

/* y = x · W^T over many patches, in slices of rows: a product passes every activation row over each block of
 * weight rows, so a slice whose activations stay in cache beats one pass over thousands of patches. */
enum { MATMUL_ROWS = 128 };

static void matmul_rows(g4_backend *be, const float *x, int64_t T, int64_t K, const g4_tensor *w, float *y) {
    const int64_t N = w->shape[0];
    for (int64_t t0 = 0; t0 < T; t0 += MATMUL_ROWS)
        be->matmul(be, x + t0 * K, T - t0 < MATMUL_ROWS ? T - t0 : MATMUL_ROWS, K, w, y + t0 * N);
}

/* y[T, out] = clamp(clamp(x, in_min, in_max) · W^T, out_min, out_max). Each projection has its own bounds,
 * so the shared input is clamped into scratch per projection. */
static void clipped_linear(vis_work *w, const g4_clipped_linear *cl, const float *x, int64_t T, int64_t K, float *y) {
    const float *in = x;
    if (cl->in_min > -INFINITY || cl->in_max < INFINITY) {
        w->be->clamp(w->be, w->xc, x, T * K, cl->in_min, cl->in_max);
        in = w->xc;
    }
    matmul_rows(w->be, in, T, K, &cl->w, y);
    if (cl->out_min > -INFINITY || cl->out_max < INFINITY)
        w->be->clamp(w->be, y, y, T * cl->w.shape[0], cl->out_min, cl->out_max);
}

/* h = (2 (pixels - 0.5)) · W_in^T + (T[0][x] + T[1][y]) */
static void patch_embed(vis_work *w, const float *pixels, const int64_t *real, const int32_t *positions) {
    const g4_vision *v = w->v;
    g4_backend *be = w->be;
    const int64_t D = v->cfg.hidden_size, K = v->input_proj.shape[1], P = v->cfg.position_embedding_size;
    for (int64_t r = 0; r < w->n; r++) {
        const float *src = pixels + real[r] * K;
        float *dst = w->host + r * K;
        /* the reference's own form; (2u - 255)/255 rounded once would differ by an ulp for half the bytes */
        for (int64_t i = 0; i < K; i++) dst[i] = 2.0f * (src[i] - 0.5f);
        w->ids[r] = positions[2 * real[r]];
        w->ids[w->n + r] = (int32_t)P + positions[2 * real[r] + 1];
    }
    be->upload(be, w->xc, w->host, (size_t)(w->n * K) * sizeof(float));
    matmul_rows(be, w->xc, w->n, K, &v->input_proj, w->x);
    /* proj and xn are free until the first layer */
    be->embed(be, &v->position_rows, w->ids, w->n, 1.0f, w->proj);
    be->embed(be, &v->position_rows, w->ids + w->n, w->n, 1.0f, w->xn);
    be->add(be, w->proj, w->xn, w->n * D, 1.0f);
    be->add(be, w->x, w->proj, w->n * D, 1.0f);
}

/* cos/sin of pos * inv_freq[j] per patch: the x angles for the first half of each head, y for the second. */
static void rope_prepare(vis_work *w, const int64_t *real, const int32_t *positions) {
    const int64_t half = w->v->cfg.head_dim / 2, quarter = half / 2;
    const float *inv = w->v->inv_freq;
    float *cs = w->host, *sn = w->host + w->n * half;
    for (int64_t r = 0; r < w->n; r++)
        for (int axis = 0; axis < 2; axis++) {
            const float pos = (float)positions[2 * real[r] + axis];
            for (int64_t j = 0; j < quarter; j++) {
                const float angle = pos * inv[j];
                cs[r * half + axis * quarter + j] = cosf(angle);
                sn[r * half + axis * quarter + j] = sinf(angle);
            }
        }
    w->be->upload(w->be, w->rope_cos, cs, (size_t)(w->n * half) * sizeof(float));
    w->be->upload(w->be, w->rope_sin, sn, (size_t)(w->n * half) * sizeof(float));
}

/* Bidirectional attention over the image's real patches (scaling 1.0: q and k are normed); apply_multidimensional_rope
 * rotates each half of a head by its own axis. */
static int attention_block(vis_work *w, const g4_vision_layer *ly, g4_err *err) {
    const g4_vision_config *c = &w->v->cfg;
    g4_backend *be = w->be;
    const int64_t n = w->n, D = c->hidden_size, hd = c->head_dim;
    const int64_t nq = c->num_heads, nkv = c->num_kv_heads;
    const float eps = (float)c->rms_norm_eps;
    float *k = w->kv, *val = w->kv + n * nkv * hd;

    be->rmsnorm(be, w->xn, w->x, ly->input_norm, n, D, eps);
    clipped_linear(w, &ly->q_proj, w->xn, n, D, w->q);
    clipped_linear(w, &ly->k_proj, w->xn, n, D, k);
    clipped_linear(w, &ly->v_proj, w->xn, n, D, val);
    be->rmsnorm(be, w->q, w->q, ly->q_norm, n * nq, hd, eps);
    be->rope(be, w->q, n, nq, hd, 2, w->rope_cos, w->rope_sin);
    be->rmsnorm(be, k, k, ly->k_norm, n * nkv, hd, eps);
    be->rope(be, k, n, nkv, hd, 2, w->rope_cos, w->rope_sin);
    be->rmsnorm(be, val, val, NULL, n * nkv, hd, eps); /* v_norm has no weight, no RoPE */
    const g4_attention a = {n, nq, nkv, hd, w->q, w->attn, w->row_view, w->first, w->last};
    int rc = be->attention(be, &a, err);
    if (rc) return rc;
    clipped_linear(w, &ly->o_proj, w->attn, n, nq * hd, w->proj);
    be->rmsnorm(be, w->proj, w->proj, ly->post_attention_norm, n, D, eps);
    be->add(be, w->x, w->proj, n * D, 1.0f);
    return 0;
}

static void mlp_block(vis_work *w, const g4_vision_layer *ly) {
    const g4_vision_config *c = &w->v->cfg;
    g4_backend *be = w->be;
    const int64_t n = w->n, D = c->hidden_size, I = c->intermediate_size;
    const float eps = (float)c->rms_norm_eps;
    be->rmsnorm(be, w->xn, w->x, ly->pre_feedforward_norm, n, D, eps);
    clipped_linear(w, &ly->gate_proj, w->xn, n, D, w->gate);
    clipped_linear(w, &ly->up_proj, w->xn, n, D, w->up);
    be->gelu_mul(be, w->gate, I, w->up, I, n, I);
    clipped_linear(w, &ly->down_proj, w->gate, n, I, w->proj);
    be->rmsnorm(be, w->proj, w->proj, ly->post_feedforward_norm, n, D, eps);
    be->add(be, w->x, w->proj, n * D, 1.0f);
}

static void work_free(vis_work *w) {
    if (w->be) {
        float *bufs[] = {w->x, w->xn, w->xc, w->q, w->kv, w->attn, w->proj, w->gate, w->up,
                         w->rope_cos, w->rope_sin, w->pooled, w->soft};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) w->be->release(w->be, bufs[i]);
    }
    free(w->row_view), free(w->first), free(w->last), free(w->host), free(w->ids);
    memset(w, 0, sizeof *w);
}

static int work_init(vis_work *w, const g4_vision *v, g4_backend *be, int64_t n) {
    memset(w, 0, sizeof *w);
    const g4_vision_config *cf = &v->cfg;
    const int64_t D = cf->hidden_size, I = cf->intermediate_size, hd = cf->head_dim;
    const int64_t qw = (int64_t)cf->num_heads * hd, kvw = (int64_t)cf->num_kv_heads * hd;
    const int64_t K = v->input_proj.shape[1];
    w->v = v;
    w->be = be;
    w->n = n;
    float **bufs[] = {&w->x, &w->xn, &w->xc, &w->q, &w->attn, &w->kv, &w->proj, &w->gate, &w->up,
                      &w->rope_cos, &w->rope_sin, &w->pooled};
    const int64_t floats[] = {n * D, n * D, n * g4_vision_max_input_width(v), n * qw, n * qw, 2 * n * kvw, n * D,
                              n * I, n * I, n * hd / 2, n * hd / 2, (n + 1) * D};
    int failed = 0;
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        failed |= !(*bufs[i] = be->alloc(be, (size_t)floats[i] * sizeof(float)));
    if (!be->host_memory) failed |= !(w->soft = be->alloc(be, (size_t)((n + 1) * cf->text_hidden_size) * sizeof(float)));
    failed |= !(w->row_view = malloc((size_t)n * sizeof *w->row_view));
    failed |= !(w->first = calloc((size_t)n, sizeof *w->first)) || !(w->last = malloc((size_t)n * sizeof *w->last));
    const int64_t staging = K > D ? (K > hd ? K : hd) : (D > hd ? D : hd);
    failed |= !(w->host = malloc((size_t)(n * staging) * sizeof(float)));
    failed |= !(w->ids = malloc((size_t)(2 * n) * sizeof *w->ids));
    if (failed) {
        work_free(w);
        return -1;
    }
    w->page[0] = w->kv;
    w->view = (g4_kv_view){w->page, n, hd, kvw, n * kvw};
    for (int64_t r = 0; r < n; r++) {
        w->row_view[r] = &w->view;
        w->last[r] = n - 1;
    }
    return 0;
}

/* Checks the inputs and finds, for every real patch, the pooling cell it averages into (Gemma4VisionPooler:
 * cell = x/k + (max_x/k) * (y/k), max_x = 1 + the largest x, padding clamped to 0). */
static int check_inputs(const g4_vision *v, const int32_t *positions, int n_patches,
                        int64_t *real, int64_t *n_real, int64_t *cell, int *has_padding, g4_err *err) {
    const g4_vision_config *cf = &v->cfg;
    const int64_t k = cf->pooling_kernel_size, P = cf->position_embedding_size;
    const int64_t slots = n_patches / (k * k);
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

int g4_vision_encode_probe(const g4_vision *v, g4_backend *be, const float *pixel_values, const int32_t *positions,
                           int n_patches, float *out, int *n_soft, const g4_vision_probe *probe, g4_err *err) {
    if (n_soft) *n_soft = 0;
    if (!v || !be || !pixel_values || !positions || !out || !n_soft)
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
    if ((rc = check_inputs(v, positions, n_patches, real, &n, cell, &has_padding, err))) goto done;
    if ((rc = be->reserve(be, g4_vision_max_input_width(v), err))) goto done;
    /* Padding patches are masked out of every attention and zeroed before pooling, so the encoder runs on the
     * real patches alone: the same numbers, without the padding's cost. */
    if (work_init(&w, v, be, n)) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "vision: out of memory for %lld patches", (long long)n);
        goto done;
    }

    /* --- patch embedder and encoder --- */
    patch_embed(&w, pixel_values, real, positions);
    rope_prepare(&w, real, positions);
    for (int l = 0; l < cf->num_layers; l++) {
        if (be->safe_point(be)) {
            rc = g4_fail(err, GEMMA4C_ERR_CANCELLED, "vision: cancelled");
            goto done;
        }
        if ((rc = attention_block(&w, &v->layers[l], err))) goto done;
        mlp_block(&w, &v->layers[l]);
    }

    /* --- pooler: each cell = sum of h * float32(1/k^2) over its patches, as the reference's one-hot matmul --- */
    const float *x = w.x;
    if (!be->host_memory) be->download(be, (float *)(x = w.host), w.x, (size_t)(n * D) * sizeof(float));
    const float weight = 1.0f / (float)(k * k);
    for (int64_t r = 0; r < n; r++) {
        float *dst = pooled + cell[r] * D;
        const float *h = x + r * D;
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
    be->upload(be, w.pooled, pooled, (size_t)(ns * D) * sizeof(float));
    be->rmsnorm(be, w.pooled, w.pooled, NULL, ns, D, (float)cf->rms_norm_eps);
    matmul_rows(be, w.pooled, ns, D, &v->embed_proj, be->host_memory ? out : w.soft);
    if (!be->host_memory) be->download(be, out, w.soft, (size_t)(ns * cf->text_hidden_size) * sizeof(float));
    *n_soft = (int)ns;
done:
    work_free(&w);
    free(real);
    free(cell);
    free(pooled);
    free(used);
    return rc;
}

int g4_vision_encode(const g4_vision *v, g4_backend *be, const float *pixel_values, const int32_t *positions,
                     int n_patches, float *out, int *n_soft, g4_err *err) {
    return g4_vision_encode_probe(v, be, pixel_values, positions, n_patches, out, n_soft, NULL, err);
}
