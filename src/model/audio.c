/* audio.c — the Gemma 4 audio tower and embedder, written to be read next to the spec (gemma4-multimodal.md §4.4). */
#include "audio.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

/* Gemma4ClippableLinear: clamp the input, multiply, clamp the output. The bounds are scalars from the
 * checkpoint; a model built without clipped linears has none and the clamps vanish. */
typedef struct clipped_linear {
    g4_tensor w; /* [out, in] */
    int clipped;
    float in_lo, in_hi, out_lo, out_hi;
} clipped_linear;

typedef struct ffn_weights {
    float *pre_norm, *post_norm;
    clipped_linear up, down; /* ffw_layer_1 [4D, D], ffw_layer_2 [D, 4D] */
} ffn_weights;

typedef struct conformer_layer {
    ffn_weights ffn1, ffn2;
    float *norm_pre_attn, *norm_post_attn, *norm_out;
    clipped_linear q, k, v, post;
    g4_tensor rel_k;    /* relative_k_proj [D, D], plain */
    float *dim_scale;   /* [head_dim]: softplus(per_dim_scale) */
    float *conv_pre_norm, *conv_norm;
    clipped_linear conv_start, conv_end; /* linear_start [2D, D], linear_end [D, D] */
    float *dw;          /* depthwise kernel [D][kernel] */
} conformer_layer;

struct g4_audio_encoder {
    g4_audio_dims dims;
    int D, head_dim, C0, C1, F1, F2, kernel;
    int chunk, past, future, context; /* blocked attention: chunk 12, max past 12, max future 0, context 24 */
    int n_rel;                        /* rows of the relative position table (13) */
    int act;
    /* eps: rms_norm_eps (subsampler LayerNorms, light-conv norms, embedder); the FFN and layer norms are built
     * with Gemma4RMSNorm's default 1e-6 whatever the config says. */
    float eps, layer_eps, residual_weight, logit_cap, clip, q_scale, k_scale;

    float *conv0;      /* layer0.conv [C0][3*3] */
    float *norm0;      /* [C0] */
    float *conv1;      /* layer1.conv as [C1][(kh*3 + kw)*C0 + c]: a patch is then a run of contiguous rows */
    float *norm1;      /* [C1] */
    g4_tensor in_proj; /* input_proj_linear [D, F2*C1] */
    conformer_layer *layers;
    float *rel_pos;    /* sinusoids [n_rel][D], row r for relative position n_rel-1-r */
    g4_tensor out_proj;
    float *out_bias;
    g4_tensor embed;   /* embed_audio.embedding_projection [out_width, proj_dims] */

    void **owned;
    size_t n_owned, cap_owned;
};

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }


/* ---- loading ------------------------------------------------------------------------------------------ */

static void *own(g4_audio_encoder *a, void *p) {
    if (!p) return NULL;
    if (a->n_owned == a->cap_owned) {
        size_t cap = a->cap_owned ? a->cap_owned * 2 : 64;
        void **q = realloc(a->owned, cap * sizeof *q);
        if (!q) {
            free(p);
            return NULL;
        }
        a->owned = q;
        a->cap_owned = cap;
    }
    a->owned[a->n_owned++] = p;
    return p;
}

static float *own_floats(g4_audio_encoder *a, int64_t n) { return own(a, calloc((size_t)max64(n, 1), sizeof(float))); }

typedef struct loader {
    g4_model *m;
    g4_audio_encoder *a;
    g4_err *err;
} loader;

static int tensor(loader *ld, g4_tensor *out, int ndim, const int64_t *shape, const char *fmt, ...) G4_PRINTF(5, 6);
static int tensor(loader *ld, g4_tensor *out, int ndim, const int64_t *shape, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return g4_model_tensor(ld->m, name, ndim, shape, out, ld->err);
}

static int matrix(loader *ld, g4_tensor *out, int64_t rows, int64_t cols, const char *name) {
    const int64_t shape[2] = {rows, cols};
    return tensor(ld, out, 2, shape, "%s", name);
}

static int vector(loader *ld, float **out, int64_t n, const char *name) {
    return g4_model_vector(ld->m, name, n, out, ld->err);
}

/* Any-rank tensor as an owned float32 array in its stored order. */
static int floats(loader *ld, float **out, int ndim, const int64_t *shape, const char *name) {
    g4_tensor t;
    int rc = tensor(ld, &t, ndim, shape, "%s", name);
    if (rc) return rc;
    int64_t n = g4_tensor_numel(&t);
    float *v = own_floats(ld->a, n);
    if (!v) return g4_fail(ld->err, GEMMA4C_ERR_NOMEM, "out of memory for %s", name);
    for (int64_t i = 0; i < n; i++) v[i] = g4_tensor_get_f32(&t, i);
    *out = v;
    return 0;
}

static int scalar(loader *ld, float *out, const char *name) {
    float *v;
    int rc = floats(ld, &v, 0, NULL, name);
    if (!rc) *out = v[0];
    return rc;
}

static int clipped(loader *ld, clipped_linear *l, int use_clip, int64_t rows, int64_t cols, const char *prefix) {
    char name[256];
    snprintf(name, sizeof name, "%s.linear.weight", prefix);
    int rc = matrix(ld, &l->w, rows, cols, name);
    if (rc) return rc;
    l->clipped = use_clip;
    l->in_lo = l->out_lo = -INFINITY;
    l->in_hi = l->out_hi = INFINITY;
    if (!use_clip) return 0;
    const char *which[4] = {"input_min", "input_max", "output_min", "output_max"};
    float *dst[4] = {&l->in_lo, &l->in_hi, &l->out_lo, &l->out_hi};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, which[i]);
        if ((rc = scalar(ld, dst[i], name))) return rc;
    }
    return 0;
}

/* ---- audio_config ---- */

typedef struct audio_config {
    int hidden, layers, heads, c0, c1, kernel, chunk, left, right, proj_dims, use_clip, act;
    double residual_weight, logit_cap, eps, clip;
} audio_config;

/* Fields absent or null take transformers' default (Gemma4AudioConfig). */
static int parse_audio_config(const char *json, audio_config *c, g4_err *err) {
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "config: audio_config is not a JSON object");
    }
    const g4_json_obj o = {root, "config", "audio_config."};
    int rc = 0;
    double invalid_logit;
    if ((rc = g4_json_int(&o, "hidden_size", 1024, 2, 65536, &c->hidden, err)) ||
        (rc = g4_json_int(&o, "num_hidden_layers", 12, 0, 1024, &c->layers, err)) ||
        (rc = g4_json_int(&o, "num_attention_heads", 8, 1, 1024, &c->heads, err)) ||
        (rc = g4_json_int(&o, "conv_kernel_size", 5, 1, 1024, &c->kernel, err)) ||
        (rc = g4_json_int(&o, "attention_chunk_size", 12, 1, 4096, &c->chunk, err)) ||
        (rc = g4_json_int(&o, "attention_context_left", 13, 1, 4096, &c->left, err)) ||
        (rc = g4_json_int(&o, "attention_context_right", 0, 0, 4096, &c->right, err)) ||
        (rc = g4_json_int(&o, "output_proj_dims", 1536, 1, 65536, &c->proj_dims, err)) ||
        (rc = g4_json_double(&o, "residual_weight", 0.5, -1e6, 1e6, 0, &c->residual_weight, err)) ||
        (rc = g4_json_double(&o, "attention_logit_cap", 50.0, 1e-6, 1e30, 0, &c->logit_cap, err)) ||
        (rc = g4_json_double(&o, "attention_invalid_logits_value", -1e9, -1e38, 1e38, 0, &invalid_logit, err)) ||
        (rc = g4_json_double(&o, "rms_norm_eps", 1e-6, 0.0, 1.0, 0, &c->eps, err)) ||
        (rc = g4_json_double(&o, "gradient_clipping", 1e10, 0.0, INFINITY, 0, &c->clip, err)))
        goto done;
    /* Masked slots are left out of the softmax, which is exact only while the fill value underflows exp(). */
    if (invalid_logit > -1e4) {
        rc = g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "config: audio_config.attention_invalid_logits_value %g is not "
                     "supported (must be -1e4 or below)", invalid_logit);
        goto done;
    }
    if ((rc = g4_json_bool(&o, "use_clipped_linears", 1, &c->use_clip, err))) goto done;
    c->c0 = 128, c->c1 = 32;
    const cJSON *v;
    if ((v = g4_json_field(&o, "subsampling_conv_channels"))) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 ||
            g4_json_as_int(cJSON_GetArrayItem(v, 0), 1, 4096, &c->c0) != 0 ||
            g4_json_as_int(cJSON_GetArrayItem(v, 1), 1, 4096, &c->c1) != 0) {
            rc = g4_json_fail(&o, "subsampling_conv_channels", "must be two channel counts in [1, 4096]", err);
            goto done;
        }
    }
    c->act = G4_ACT_SILU;
    if ((v = g4_json_field(&o, "hidden_act"))) {
        const char *s = cJSON_IsString(v) ? v->valuestring : "";
        if (strcmp(s, "silu") == 0 || strcmp(s, "swish") == 0) c->act = G4_ACT_SILU;
        else if (strcmp(s, "gelu_pytorch_tanh") == 0) c->act = G4_ACT_GELU_TANH;
        else if (strcmp(s, "gelu") == 0) c->act = G4_ACT_GELU;
        else if (strcmp(s, "relu") == 0) c->act = G4_ACT_RELU;
        else {
            rc = g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "config: audio_config.hidden_act \"%.40s\" is not supported "
                         "(silu, gelu_pytorch_tanh, gelu, relu)", s);
            goto done;
        }
    }
    if (c->hidden % c->heads != 0 || c->hidden % 2 != 0) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "config: audio_config.hidden_size %d must be even and divisible by "
                     "num_attention_heads %d", c->hidden, c->heads);
        goto done;
    }
done:
    cJSON_Delete(root);
    return rc;
}

/* Gemma4AudioRelPositionalEncoding in float32: row r holds [sin(p*inv), cos(p*inv)] at p = n_rel-1-r, with
 * inv[i] = exp(float(i) * float(-ln(10000)/(D/2-1))). */
static void relative_positions(float *P, int n_rel, int D) {
    const int half = D / 2;
    const float step = (float)(-log(10000.0) / (double)(half > 1 ? half - 1 : 1));
    for (int r = 0; r < n_rel; r++) {
        const float p = (float)(n_rel - 1 - r);
        for (int i = 0; i < half; i++) {
            float angle = p * expf((float)i * step);
            P[(int64_t)r * D + i] = sinf(angle);
            P[(int64_t)r * D + half + i] = cosf(angle);
        }
    }
}

static int load_all(loader *ld, const audio_config *cf) {
    g4_audio_encoder *a = ld->a;
    g4_model *m = ld->m;
    const int64_t D = cf->hidden, C0 = cf->c0, C1 = cf->c1, K = cf->kernel, P = cf->proj_dims;
    const int64_t H = m->cfg.text.hidden_size;
    a->D = cf->hidden;
    a->head_dim = cf->hidden / cf->heads;
    a->C0 = cf->c0, a->C1 = cf->c1, a->kernel = cf->kernel;
    a->F1 = (G4_AUDIO_ENCODER_MEL_BINS - 1) / 2 + 1; /* 3x3 kernel, stride 2, padding 1 */
    a->F2 = (a->F1 - 1) / 2 + 1;
    a->chunk = cf->chunk;
    a->past = cf->left - 1;
    a->future = cf->right;
    a->context = cf->chunk + a->past + a->future;
    a->n_rel = a->context / 2 + 1;
    a->act = cf->act;
    a->eps = (float)cf->eps;
    a->layer_eps = 1e-6f;
    a->residual_weight = (float)cf->residual_weight;
    a->logit_cap = (float)cf->logit_cap;
    a->clip = (float)fmin(cf->clip, 3.4028234663852886e38); /* min(gradient_clipping, finfo(float32).max) */
    a->q_scale = (float)(pow((double)a->head_dim, -0.5) / log(2.0));
    a->k_scale = (float)(log(1.0 + exp(1.0)) / log(2.0));
    a->dims = (g4_audio_dims){G4_AUDIO_ENCODER_MEL_BINS, cf->hidden, cf->layers, cf->heads, cf->proj_dims, (int)H, 0};
    a->dims.max_input_width = max64(max64(4 * D, 9 * C0), max64((int64_t)a->F2 * C1, P));

    int rc;
    const char *sub = "model.audio_tower.subsample_conv_projection";
    char name[256];
    const int64_t s0[4] = {C0, 1, 3, 3}, s1[4] = {C1, C0, 3, 3};
    float *w1;
    snprintf(name, sizeof name, "%s.layer0.conv.weight", sub);
    if ((rc = floats(ld, &a->conv0, 4, s0, name))) return rc;
    snprintf(name, sizeof name, "%s.layer0.norm.weight", sub);
    if ((rc = vector(ld, &a->norm0, C0, name))) return rc;
    snprintf(name, sizeof name, "%s.layer1.conv.weight", sub);
    if ((rc = floats(ld, &w1, 4, s1, name))) return rc;
    snprintf(name, sizeof name, "%s.layer1.norm.weight", sub);
    if ((rc = vector(ld, &a->norm1, C1, name))) return rc;
    if (!(a->conv1 = own_floats(a, C1 * 9 * C0))) return g4_fail(ld->err, GEMMA4C_ERR_NOMEM, "out of memory");
    for (int64_t o = 0; o < C1; o++)
        for (int64_t c = 0; c < C0; c++)
            for (int64_t k = 0; k < 9; k++) a->conv1[(o * 9 + k) * C0 + c] = w1[(o * C0 + c) * 9 + k];
    /* transformers sizes this (channels[0] / 4) * channels[1], which equals the real flattened width
     * (mel bins / 4) * channels[1] only when channels[0] is 128: the tensor must have the real width. */
    snprintf(name, sizeof name, "%s.input_proj_linear.weight", sub);
    if ((rc = matrix(ld, &a->in_proj, D, (int64_t)a->F2 * C1, name)))
        return g4_err_prefix(ld->err, "subsampler input projection (%d frequency bins x %lld channels -> hidden_size %lld)",
                             a->F2, (long long)C1, (long long)D);

    if (!(a->layers = own(a, calloc((size_t)max64(cf->layers, 1), sizeof *a->layers))))
        return g4_fail(ld->err, GEMMA4C_ERR_NOMEM, "out of memory");
    for (int l = 0; l < cf->layers; l++) {
        conformer_layer *ly = &a->layers[l];
        char pre[160];
#define NAME(fmt) (snprintf(name, sizeof name, "%s." fmt, pre), name)
        for (int f = 0; f < 2; f++) {
            ffn_weights *w = f ? &ly->ffn2 : &ly->ffn1;
            snprintf(pre, sizeof pre, "model.audio_tower.layers.%d.feed_forward%d", l, f + 1);
            if ((rc = vector(ld, &w->pre_norm, D, NAME("pre_layer_norm.weight"))) ||
                (rc = vector(ld, &w->post_norm, D, NAME("post_layer_norm.weight"))) ||
                (rc = clipped(ld, &w->up, cf->use_clip, 4 * D, D, NAME("ffw_layer_1"))) ||
                (rc = clipped(ld, &w->down, cf->use_clip, D, 4 * D, NAME("ffw_layer_2"))))
                return rc;
        }
        snprintf(pre, sizeof pre, "model.audio_tower.layers.%d", l);
        if ((rc = vector(ld, &ly->norm_pre_attn, D, NAME("norm_pre_attn.weight"))) ||
            (rc = vector(ld, &ly->norm_post_attn, D, NAME("norm_post_attn.weight"))) ||
            (rc = vector(ld, &ly->norm_out, D, NAME("norm_out.weight"))))
            return rc;
        snprintf(pre, sizeof pre, "model.audio_tower.layers.%d.self_attn", l);
        float *raw_scale;
        if ((rc = clipped(ld, &ly->q, cf->use_clip, D, D, NAME("q_proj"))) ||
            (rc = clipped(ld, &ly->k, cf->use_clip, D, D, NAME("k_proj"))) ||
            (rc = clipped(ld, &ly->v, cf->use_clip, D, D, NAME("v_proj"))) ||
            (rc = clipped(ld, &ly->post, cf->use_clip, D, D, NAME("post"))) ||
            (rc = matrix(ld, &ly->rel_k, D, D, NAME("relative_k_proj.weight"))) ||
            (rc = vector(ld, &raw_scale, a->head_dim, NAME("per_dim_scale"))))
            return rc;
        if (!(ly->dim_scale = own_floats(a, a->head_dim))) return g4_fail(ld->err, GEMMA4C_ERR_NOMEM, "out of memory");
        for (int i = 0; i < a->head_dim; i++) /* torch softplus: linear above 20 */
            ly->dim_scale[i] = raw_scale[i] > 20.0f ? raw_scale[i] : log1pf(expf(raw_scale[i]));
        snprintf(pre, sizeof pre, "model.audio_tower.layers.%d.lconv1d", l);
        const int64_t sdw[3] = {D, 1, K};
        if ((rc = vector(ld, &ly->conv_pre_norm, D, NAME("pre_layer_norm.weight"))) ||
            (rc = vector(ld, &ly->conv_norm, D, NAME("conv_norm.weight"))) ||
            (rc = clipped(ld, &ly->conv_start, cf->use_clip, 2 * D, D, NAME("linear_start"))) ||
            (rc = clipped(ld, &ly->conv_end, cf->use_clip, D, D, NAME("linear_end"))) ||
            (rc = floats(ld, &ly->dw, 3, sdw, NAME("depthwise_conv1d.weight"))))
            return rc;
#undef NAME
    }
    if ((rc = matrix(ld, &a->out_proj, P, D, "model.audio_tower.output_proj.weight")) ||
        (rc = vector(ld, &a->out_bias, P, "model.audio_tower.output_proj.bias")))
        return rc;
    /* Square for E2B (1536 -> 1536), not for E4B (1536 -> 2560): both sides come from the configs. */
    if ((rc = matrix(ld, &a->embed, H, P, "model.embed_audio.embedding_projection.weight")))
        return g4_err_prefix(ld->err, "audio embedder (output_proj_dims %lld -> text hidden_size %lld)", (long long)P,
                             (long long)H);
    if (!(a->rel_pos = own_floats(a, (int64_t)a->n_rel * D))) return g4_fail(ld->err, GEMMA4C_ERR_NOMEM, "out of memory");
    relative_positions(a->rel_pos, a->n_rel, a->D);
    return 0;
}

int g4_audio_encoder_load(g4_model *m, g4_audio_encoder **out, g4_err *err) {
    *out = NULL;
    if (!m->cfg.has_audio || !m->cfg.audio_json)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "model %s has no audio tower (its config has no audio_config)",
                       m->source);
    audio_config cf;
    int rc = parse_audio_config(m->cfg.audio_json, &cf, err);
    if (rc) return rc;
    g4_audio_encoder *a = calloc(1, sizeof *a);
    if (!a) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    loader ld = {m, a, err};
    if ((rc = load_all(&ld, &cf))) {
        g4_err_prefix(err, "audio tower");
        g4_audio_encoder_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void g4_audio_encoder_free(g4_audio_encoder *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n_owned; i++) free(a->owned[i]);
    free(a->owned);
    free(a);
}

g4_audio_dims g4_audio_encoder_dims(const g4_audio_encoder *a) { return a->dims; }

int64_t g4_audio_encoder_positions(int64_t frames) {
    if (frames <= 0) return 0;
    int64_t t1 = (frames - 1) / 2 + 1;
    return (t1 - 1) / 2 + 1;
}

/* The subsampler keeps every other mask entry twice: position p is valid when frame 4p is. */
int64_t g4_audio_encoder_tokens(const uint8_t *mask, int64_t frames) {
    const int64_t T2 = g4_audio_encoder_positions(frames);
    if (!mask) return T2;
    int64_t n = 0;
    for (int64_t p = 0; p < T2; p++) n += mask[4 * p] != 0;
    return n;
}

/* ---- the forward pass --------------------------------------------------------------------------------- */

/* Scratch of one call, sized by its length: backend buffers, and the host's masks. */
typedef struct run {
    const g4_audio_encoder *a;
    g4_backend *be;
    int64_t frames, T1, T;  /* input frames, after the first convolution, encoder positions */
    const uint8_t *mask;    /* [frames] or NULL */
    uint8_t *valid;         /* [T]: subsampled mask */
    uint8_t *valid1;        /* [T1]: the first convolution's rows that hold data, or NULL (all) */
    float *feat, *x, *h, *q, *k, *v, *att, *wide, *clip_in, *rk, *y, *rel_pos, *soft;
    float *h0, *sub;        /* subsampler: the first convolution's rows for one step, flattened output */
} run;

/* y[T, N] = CL(x[T, K]) */
static void linear(run *r, const clipped_linear *l, const float *x, int64_t T, int64_t K, float *y) {
    g4_backend *be = r->be;
    const float *in = x;
    if (l->clipped) {
        be->clamp(be, r->clip_in, x, T * K, l->in_lo, l->in_hi);
        in = r->clip_in;
    }
    be->matmul(be, in, T, K, &l->w, y);
    if (l->clipped) be->clamp(be, y, y, T * l->w.shape[0], l->out_lo, l->out_hi);
}

enum { SUB_STEP = 32 }; /* encoder positions per subsampling step: bounds the first convolution's buffer */

/* Gemma4AudioSubSampleConvProjection: two conv blocks (3x3, stride 2, LayerNorm, ReLU), the second's output
 * flattened frequency-major (index f*C1 + c) as the reference reshapes it, then the input projection to [T, D].
 * Masked frames are zero before each convolution, as the reference zeroes them. */
static int subsample(run *r, g4_err *err) {
    const g4_audio_encoder *a = r->a;
    g4_backend *be = r->be;
    int rc = 0;
    for (int64_t t0 = 0; !rc && t0 < r->T; t0 += SUB_STEP) {
        const int64_t n = min64(SUB_STEP, r->T - t0);
        const g4_conv2d layer0 = {r->feat, 0, r->frames, G4_AUDIO_ENCODER_MEL_BINS, 1, r->mask,
                                  r->h0, 2 * t0 - 1, 2 * n + 1, r->T1, a->C0, r->valid1, a->conv0, a->norm0, a->eps};
        const g4_conv2d layer1 = {r->h0, 2 * t0 - 1, 2 * n + 1, a->F1, a->C0, NULL,
                                  r->sub + t0 * a->F2 * a->C1, t0, n, r->T, a->C1, NULL, a->conv1, a->norm1, a->eps};
        if (!(rc = be->conv2d(be, &layer0, err))) rc = be->conv2d(be, &layer1, err);
    }
    if (!rc) be->matmul(be, r->sub, r->T, (int64_t)a->F2 * a->C1, &a->in_proj, r->x);
    return rc;
}

/* FFN(x): x + residual_weight * RMSNorm(clamp(CL2(act(CL1(RMSNorm(clamp(x))))))) */
static void feed_forward(run *r, const ffn_weights *f) {
    const g4_audio_encoder *a = r->a;
    g4_backend *be = r->be;
    const int64_t T = r->T, D = a->D;
    be->clamp(be, r->h, r->x, T * D, -a->clip, a->clip);
    be->rmsnorm(be, r->h, r->h, f->pre_norm, T, D, a->layer_eps);
    linear(r, &f->up, r->h, T, D, r->wide);
    be->activation(be, r->wide, T * 4 * D, a->act);
    linear(r, &f->down, r->wide, T, 4 * D, r->h);
    be->clamp(be, r->h, r->h, T * D, -a->clip, a->clip);
    be->rmsnorm(be, r->h, r->h, f->post_norm, T, D, a->layer_eps);
    be->axpy(be, r->x, a->residual_weight, r->h, T * D);
}

/* x = x + RMSNorm(clamp(ATTN(RMSNorm(clamp(x))))) with Gemma4AudioAttention's chunked local attention. The
 * reference's blocked form (chunks of 12 queries over 24 context slots, a rel-shifted relative term, masked_fill
 * after the softcap) equals the dense form of g4_local_attention. */
static int attention_block(run *r, const conformer_layer *ly, g4_err *err) {
    const g4_audio_encoder *a = r->a;
    g4_backend *be = r->be;
    const int64_t T = r->T, D = a->D, hd = a->head_dim;
    be->clamp(be, r->h, r->x, T * D, -a->clip, a->clip);
    be->rmsnorm(be, r->h, r->h, ly->norm_pre_attn, T, D, a->layer_eps);
    linear(r, &ly->q, r->h, T, D, r->q);
    linear(r, &ly->k, r->h, T, D, r->k);
    linear(r, &ly->v, r->h, T, D, r->v);
    /* (q * q_scale) * softplus(per_dim_scale) and k * k_scale, in the reference's order */
    be->scale_rows(be, r->q, T * D / hd, hd, a->q_scale, ly->dim_scale);
    be->scale_rows(be, r->k, T, D, a->k_scale, NULL);
    be->matmul(be, r->rel_pos, a->n_rel, D, &ly->rel_k, r->rk);
    const g4_local_attention la = {T,        a->dims.heads, hd,       r->q,       r->k,         r->v,
                                   r->rk,    r->att,        a->n_rel, a->past,    a->future,    a->chunk,
                                   a->context, a->logit_cap, r->valid};
    int rc = be->local_attention(be, &la, err);
    if (rc) return rc;
    linear(r, &ly->post, r->att, T, D, r->h);
    be->clamp(be, r->h, r->h, T * D, -a->clip, a->clip);
    be->rmsnorm(be, r->h, r->h, ly->norm_post_attn, T, D, a->layer_eps);
    be->add(be, r->x, r->h, T * D, 1.0f);
    return 0;
}

/* Light convolution: x + CL_end(act(RMSNorm(clamp(causal_depthwise(GLU(CL_start(RMSNorm(x)))))))) */
static void light_conv(run *r, const conformer_layer *ly) {
    const g4_audio_encoder *a = r->a;
    g4_backend *be = r->be;
    const int64_t T = r->T, D = a->D;
    be->rmsnorm(be, r->h, r->x, ly->conv_pre_norm, T, D, a->eps);
    linear(r, &ly->conv_start, r->h, T, D, r->wide);
    be->glu(be, r->q, r->wide, T, D); /* the first half gated by the second */
    be->depthwise_conv(be, r->h, r->q, T, D, ly->dw, a->kernel);
    be->clamp(be, r->h, r->h, T * D, -a->clip, a->clip);
    be->rmsnorm(be, r->h, r->h, ly->conv_norm, T, D, a->eps);
    be->activation(be, r->h, T * D, a->act);
    linear(r, &ly->conv_end, r->h, T, D, r->att);
    be->add(be, r->x, r->att, T * D, 1.0f);
}

static int conformer_layer_forward(run *r, const conformer_layer *ly, g4_err *err) {
    const g4_audio_encoder *a = r->a;
    g4_backend *be = r->be;
    feed_forward(r, &ly->ffn1);
    int rc = attention_block(r, ly, err);
    if (rc) return rc;
    light_conv(r, ly);
    feed_forward(r, &ly->ffn2);
    be->clamp(be, r->x, r->x, r->T * a->D, -a->clip, a->clip);
    be->rmsnorm(be, r->x, r->x, ly->norm_out, r->T, a->D, a->layer_eps);
    return 0;
}

static void run_free(run *r) {
    float *bufs[] = {r->feat, r->x, r->h, r->q, r->k, r->v, r->att, r->wide, r->clip_in, r->rk, r->y, r->rel_pos,
                     r->soft, r->h0, r->sub};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) r->be->release(r->be, bufs[i]);
    free(r->valid);
    free(r->valid1);
}

int g4_audio_encode(const g4_audio_encoder *a, g4_backend *be, const float *features, const uint8_t *mask,
                    int64_t frames, float *out, int64_t *n_tokens, g4_audio_probe *probe, g4_err *err) {
    if (n_tokens) *n_tokens = 0;
    if (!a || !be || !features || !out || !n_tokens)
        return g4_fail(err, GEMMA4C_ERR_ARG, "audio encoder: missing encoder, backend, features or output");
    if (frames <= 0) return g4_fail(err, GEMMA4C_ERR_ARG, "audio encoder: no feature frames (%lld)", (long long)frames);
    if (frames > G4_AUDIO_ENCODER_MAX_FRAMES)
        return g4_fail(err, GEMMA4C_ERR_ARG, "audio encoder: %lld frames is more than one call takes (%d, 30 s); "
                       "split longer audio into segments", (long long)frames, G4_AUDIO_ENCODER_MAX_FRAMES);
    const int64_t M = G4_AUDIO_ENCODER_MEL_BINS;
    for (int64_t i = 0; i < frames * M; i++)
        if (!isfinite(features[i]))
            return g4_fail(err, GEMMA4C_ERR_ARG, "audio encoder: feature %lld of frame %lld is not finite",
                           (long long)(i % M), (long long)(i / M));
    int rc = be->reserve(be, a->dims.max_input_width, err);
    if (rc) return rc;

    const int64_t D = a->D, P = a->dims.proj_dims, W = a->dims.out_width;
    run r = {0};
    r.a = a, r.be = be, r.mask = mask, r.frames = frames;
    r.T1 = (frames - 1) / 2 + 1;
    r.T = g4_audio_encoder_positions(frames);
    const int64_t T = r.T;
    float **bufs[] = {&r.feat, &r.h0, &r.sub, &r.x, &r.h, &r.q, &r.k, &r.v, &r.att, &r.wide, &r.clip_in, &r.rk, &r.y,
                      &r.rel_pos};
    const int64_t floats[] = {frames * M, (2 * SUB_STEP + 1) * (int64_t)a->F1 * a->C0, T * a->F2 * a->C1, T * D, T * D,
                              T * D, T * D, T * D, T * D, T * 4 * D, T * max64(4 * D, P), (int64_t)a->n_rel * D,
                              T * P, (int64_t)a->n_rel * D};
    int failed = 0;
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        failed |= !(*bufs[i] = be->alloc(be, (size_t)floats[i] * sizeof(float)));
    if (!be->host_memory) failed |= !(r.soft = be->alloc(be, (size_t)(T * W) * sizeof(float)));
    failed |= !(r.valid = malloc((size_t)T)) || (mask && !(r.valid1 = malloc((size_t)r.T1)));
    if (failed) {
        run_free(&r);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "audio encoder: out of memory for %lld frames", (long long)frames);
    }
    for (int64_t t = 0; t < T; t++) r.valid[t] = !mask || mask[4 * t];
    for (int64_t t = 0; mask && t < r.T1; t++) r.valid1[t] = mask[2 * t];
    be->upload(be, r.feat, features, (size_t)(frames * M) * sizeof(float));
    be->upload(be, r.rel_pos, a->rel_pos, (size_t)((int64_t)a->n_rel * D) * sizeof(float));

    rc = subsample(&r, err);
    for (int l = 0; !rc && l < a->dims.layers; l++) {
        if (be->safe_point(be)) rc = g4_fail(err, GEMMA4C_ERR_CANCELLED, "audio encoder: cancelled");
        else rc = conformer_layer_forward(&r, &a->layers[l], err);
    }
    if (rc) {
        run_free(&r);
        return rc;
    }
    be->matmul(be, r.x, T, D, &a->out_proj, r.y);
    be->add_bias(be, r.y, T, P, a->out_bias);
    if (probe && probe->tower_output) be->download(be, probe->tower_output, r.y, (size_t)(T * P) * sizeof(float));
    if (probe && probe->valid) memcpy(probe->valid, r.valid, (size_t)T);

    /* Gemma4MultimodalEmbedder on the valid positions: weight-free RMSNorm, then the projection to the text width. */
    int64_t n = 0;
    int32_t *rows = malloc((size_t)max64(T, 1) * sizeof *rows);
    if (!rows) {
        run_free(&r);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "audio encoder: out of memory");
    }
    for (int64_t t = 0; t < T; t++)
        if (r.valid[t]) rows[n++] = (int32_t)t;
    if (n > 0) {
        be->gather_rows(be, r.clip_in, r.y, rows, n, P);
        be->rmsnorm(be, r.clip_in, r.clip_in, NULL, n, P, a->eps);
        be->matmul(be, r.clip_in, n, P, &a->embed, be->host_memory ? out : r.soft);
        if (!be->host_memory) be->download(be, out, r.soft, (size_t)(n * W) * sizeof(float));
    }
    free(rows);
    *n_tokens = n;
    run_free(&r);
    return 0;
}
