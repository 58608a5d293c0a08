/* audio.c — the Gemma 4 audio tower and embedder, written to be read next to the spec (gemma4-multimodal.md §4.4). */
#include "audio.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

enum { ACT_SILU, ACT_GELU_TANH, ACT_GELU, ACT_RELU };

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

/* torch.clamp: min(max(x, lo), hi), NaN stays NaN. */
static float clampf(float x, float lo, float hi) {
    float y = x < lo ? lo : x;
    return y > hi ? hi : y;
}

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

static float activation(int act, float x) {
    switch (act) {
    case ACT_SILU: return x / (1.0f + expf(-x));
    case ACT_GELU_TANH: return g4_gelu_tanh(x);
    case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    default: return x > 0 ? x : 0;
    }
}

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
    c->act = ACT_SILU;
    if ((v = g4_json_field(&o, "hidden_act"))) {
        const char *s = cJSON_IsString(v) ? v->valuestring : "";
        if (strcmp(s, "silu") == 0 || strcmp(s, "swish") == 0) c->act = ACT_SILU;
        else if (strcmp(s, "gelu_pytorch_tanh") == 0) c->act = ACT_GELU_TANH;
        else if (strcmp(s, "gelu") == 0) c->act = ACT_GELU;
        else if (strcmp(s, "relu") == 0) c->act = ACT_RELU;
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

/* Scratch of one call, sized by its length. */
typedef struct run {
    const g4_audio_encoder *a;
    g4_compute *c;
    int64_t frames, T1, T;  /* input frames, after the first convolution, encoder positions */
    const float *feat;
    const uint8_t *mask;    /* [frames] or NULL */
    uint8_t *valid;         /* [T]: subsampled mask */
    float *x, *h, *q, *k, *v, *att, *wide, *clip_in, *rk, *scores, *y;
    float *h0, *patch, *sub; /* subsampler: layer-0 rows of one step, per-worker patches, flattened output */
    int64_t h0_first;        /* time row of h0[0] */
} run;

static void clamp_rows(float *out, const float *x, int64_t n, float lim) {
    for (int64_t i = 0; i < n; i++) out[i] = clampf(x[i], -lim, lim);
}

/* y[T, N] = CL(x[T, K]) */
static void linear(run *r, const clipped_linear *l, const float *x, int64_t T, int64_t K, float *y) {
    const float *in = x;
    if (l->clipped) {
        for (int64_t i = 0; i < T * K; i++) r->clip_in[i] = clampf(x[i], l->in_lo, l->in_hi);
        in = r->clip_in;
    }
    g4_matmul(r->c, in, T, K, &l->w, y);
    if (l->clipped)
        for (int64_t i = 0; i < T * l->w.shape[0]; i++) y[i] = clampf(y[i], l->out_lo, l->out_hi);
}

/* LayerNorm over the channels of one (time, frequency) cell, no bias, then ReLU. */
static void layer_norm_relu(float *v, int64_t n, const float *w, float eps) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mean += v[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += ((double)v[i] - mean) * ((double)v[i] - mean);
    const double rstd = 1.0 / sqrt(var / (double)n + (double)eps);
    for (int64_t i = 0; i < n; i++) {
        float y = (float)(((double)v[i] - mean) * rstd) * w[i];
        v[i] = y > 0 ? y : 0;
    }
}

/* Layer 0 of the subsampler for time rows h0_first + [begin, end): conv 3x3 stride 2 over (time, mel) of the
 * masked features, LayerNorm, ReLU. Rows outside [0, T1) are layer 1's zero padding; rows whose mask entry is off
 * are zeroed as the reference does before layer 1. Layout [row][F1][C0]. */
static void subsample_layer0(void *ctx, int64_t begin, int64_t end, int worker) {
    run *r = ctx;
    const g4_audio_encoder *a = r->a;
    const int64_t C0 = a->C0, F1 = a->F1, M = G4_AUDIO_ENCODER_MEL_BINS;
    (void)worker;
    for (int64_t row = begin; row < end; row++) {
        const int64_t t1 = r->h0_first + row;
        float *out = r->h0 + row * F1 * C0;
        if (t1 < 0 || t1 >= r->T1 || (r->mask && !r->mask[2 * t1])) {
            memset(out, 0, (size_t)(F1 * C0) * sizeof(float));
            continue;
        }
        for (int64_t f1 = 0; f1 < F1; f1++) {
            float in[9]; /* the 3x3 input patch; invalid frames and padding are zero */
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++) {
                    const int64_t t = 2 * t1 - 1 + kh, f = 2 * f1 - 1 + kw;
                    const int inside = t >= 0 && t < r->frames && f >= 0 && f < M && (!r->mask || r->mask[t]);
                    in[kh * 3 + kw] = inside ? r->feat[t * M + f] : 0.0f;
                }
            float *cell = out + f1 * C0;
            for (int64_t ch = 0; ch < C0; ch++) {
                const float *w = a->conv0 + ch * 9;
                float s = 0;
                for (int k = 0; k < 9; k++) s += w[k] * in[k];
                cell[ch] = s;
            }
            layer_norm_relu(cell, C0, a->norm0, a->eps);
        }
    }
}

/* Layer 1 for encoder positions t_first + [begin, end): conv 3x3 stride 2 over the layer-0 rows, LayerNorm, ReLU,
 * flattened frequency-major (index f*C1 + c) as the reference reshapes it. */
typedef struct layer1_job {
    run *r;
    int64_t t_first; /* encoder position of item 0 */
} layer1_job;

static void subsample_layer1(void *ctx, int64_t begin, int64_t end, int worker) {
    layer1_job *j = ctx;
    run *r = j->r;
    const g4_audio_encoder *a = r->a;
    const int64_t C0 = a->C0, C1 = a->C1, F1 = a->F1, F2 = a->F2;
    float *patch = r->patch + (int64_t)worker * 9 * C0;
    for (int64_t item = begin; item < end; item++) {
        const int64_t t = j->t_first + item;
        float *out = r->sub + t * F2 * C1;
        for (int64_t f2 = 0; f2 < F2; f2++) {
            for (int kh = 0; kh < 3; kh++) {
                const float *row = r->h0 + (2 * t - 1 + kh - r->h0_first) * F1 * C0;
                for (int kw = 0; kw < 3; kw++) {
                    const int64_t f = 2 * f2 - 1 + kw;
                    float *dst = patch + (kh * 3 + kw) * C0;
                    if (f >= 0 && f < F1)
                        memcpy(dst, row + f * C0, (size_t)C0 * sizeof(float));
                    else
                        memset(dst, 0, (size_t)C0 * sizeof(float));
                }
            }
            float *cell = out + f2 * C1;
            for (int64_t o = 0; o < C1; o++) cell[o] = r->c->ops->dot(patch, a->conv1 + o * 9 * C0, 9 * C0);
            layer_norm_relu(cell, C1, a->norm1, a->eps);
        }
    }
}

enum { SUB_STEP = 32 }; /* encoder positions per subsampling step: bounds the layer-0 buffer */

/* Gemma4AudioSubSampleConvProjection: two conv blocks, then the input projection to [T, D]. */
static void subsample(run *r) {
    const g4_audio_encoder *a = r->a;
    for (int64_t t0 = 0; t0 < r->T; t0 += SUB_STEP) {
        const int64_t n = min64(SUB_STEP, r->T - t0);
        r->h0_first = 2 * t0 - 1;
        g4_pool_for(r->c->pool, 2 * n + 1, 1, subsample_layer0, r);
        layer1_job j = {r, t0};
        g4_pool_for(r->c->pool, n, 1, subsample_layer1, &j);
    }
    g4_matmul(r->c, r->sub, r->T, (int64_t)a->F2 * a->C1, &a->in_proj, r->x);
}

/* FFN(x): x + residual_weight * RMSNorm(clamp(CL2(act(CL1(RMSNorm(clamp(x))))))) */
static void feed_forward(run *r, const ffn_weights *f) {
    const g4_audio_encoder *a = r->a;
    const int64_t T = r->T, D = a->D;
    clamp_rows(r->h, r->x, T * D, a->clip);
    g4_rmsnorm_rows(r->c->ops, r->h, r->h, f->pre_norm, T, D, a->layer_eps);
    linear(r, &f->up, r->h, T, D, r->wide);
    for (int64_t i = 0; i < T * 4 * D; i++) r->wide[i] = activation(a->act, r->wide[i]);
    linear(r, &f->down, r->wide, T, 4 * D, r->h);
    clamp_rows(r->h, r->h, T * D, a->clip);
    g4_rmsnorm_rows(r->c->ops, r->h, r->h, f->post_norm, T, D, a->layer_eps);
    for (int64_t i = 0; i < T * D; i++) r->x[i] += r->h[i] * a->residual_weight;
}

typedef struct attn_job {
    run *r;
    const conformer_layer *ly;
} attn_job;

/* One (position, head) per item. The reference's blocked attention (chunks of 12 queries over 24 context slots,
 * a rel-shifted relative term, masked_fill after the softcap) equals this dense form: query t sees the valid keys
 * t-(past-1) .. t and t+1 .. t+(future-1) (sliding_window_mask_function), the relative term of key distance d
 * uses table row past-d (zero beyond the table), and masked slots add exactly nothing to the float32 softmax. */
static void attention_range(void *ctx, int64_t begin, int64_t end, int worker) {
    attn_job *j = ctx;
    run *r = j->r;
    const g4_audio_encoder *a = r->a;
    const g4_kernel_ops *ops = r->c->ops;
    const int64_t D = a->D, hd = a->head_dim, nh = a->dims.heads;
    float *s = r->scores + (int64_t)worker * (a->context + 1);
    for (int64_t item = begin; item < end; item++) {
        const int64_t t = item / nh, h = item % nh;
        const int64_t lo = max64(0, t - a->past + 1), hi = min64(r->T - 1, t + max64(0, a->future - 1));
        const float *q = r->q + t * D + h * hd;
        float *o = r->att + t * D + h * hd;
        int any = 0;
        for (int64_t kk = lo; kk <= hi; kk++) {
            s[kk - lo] = -INFINITY;
            if (!r->valid[kk]) continue;
            const int64_t rel = a->past - (t - kk);
            float logit = ops->dot(q, r->k + kk * D + h * hd, hd);
            if (rel < a->n_rel) logit += ops->dot(q, r->rk + rel * D + h * hd, hd);
            s[kk - lo] = a->logit_cap * tanhf(logit / a->logit_cap);
            any = 1;
        }
        memset(o, 0, (size_t)hd * sizeof(float));
        if (any) {
            g4_softmax(s, hi - lo + 1);
            for (int64_t kk = lo; kk <= hi; kk++)
                if (r->valid[kk]) ops->axpy(o, s[kk - lo], r->v + kk * D + h * hd, hd);
            continue;
        }
        /* No valid key (only for padding positions): every slot of the block's context holds -1e9, so the
         * reference averages all of them uniformly, the zero padding beyond the sequence included. */
        const int64_t first = t / a->chunk * a->chunk - a->past;
        for (int64_t kk = max64(0, first); kk < min64(r->T, first + a->context); kk++)
            ops->axpy(o, 1.0f / (float)a->context, r->v + kk * D + h * hd, hd);
    }
}

/* x = x + RMSNorm(clamp(ATTN(RMSNorm(clamp(x))))) with Gemma4AudioAttention's chunked local attention. */
static void attention_block(run *r, const conformer_layer *ly) {
    const g4_audio_encoder *a = r->a;
    const int64_t T = r->T, D = a->D, hd = a->head_dim;
    clamp_rows(r->h, r->x, T * D, a->clip);
    g4_rmsnorm_rows(r->c->ops, r->h, r->h, ly->norm_pre_attn, T, D, a->layer_eps);
    linear(r, &ly->q, r->h, T, D, r->q);
    linear(r, &ly->k, r->h, T, D, r->k);
    linear(r, &ly->v, r->h, T, D, r->v);
    /* (q * q_scale) * softplus(per_dim_scale) and k * k_scale, in the reference's order */
    for (int64_t i = 0; i < T * D; i++) {
        r->q[i] = (r->q[i] * a->q_scale) * ly->dim_scale[i % hd];
        r->k[i] *= a->k_scale;
    }
    g4_matmul(r->c, a->rel_pos, a->n_rel, D, &ly->rel_k, r->rk);
    attn_job job = {r, ly};
    g4_pool_for(r->c->pool, T * a->dims.heads, 4, attention_range, &job);
    linear(r, &ly->post, r->att, T, D, r->h);
    clamp_rows(r->h, r->h, T * D, a->clip);
    g4_rmsnorm_rows(r->c->ops, r->h, r->h, ly->norm_post_attn, T, D, a->layer_eps);
    for (int64_t i = 0; i < T * D; i++) r->x[i] += r->h[i];
}

/* Light convolution: x + CL_end(act(RMSNorm(clamp(causal_depthwise(GLU(CL_start(RMSNorm(x)))))))) */
static void light_conv(run *r, const conformer_layer *ly) {
    const g4_audio_encoder *a = r->a;
    const int64_t T = r->T, D = a->D, K = a->kernel;
    g4_rmsnorm_rows(r->c->ops, r->h, r->x, ly->conv_pre_norm, T, D, a->eps);
    linear(r, &ly->conv_start, r->h, T, D, r->wide);
    for (int64_t t = 0; t < T; t++) /* GLU: the first half gated by the second */
        for (int64_t ch = 0; ch < D; ch++)
            r->q[t * D + ch] = r->wide[t * 2 * D + ch] * sigmoid(r->wide[t * 2 * D + D + ch]);
    for (int64_t t = 0; t < T; t++) /* causal: K-1 zero frames on the left */
        for (int64_t ch = 0; ch < D; ch++) {
            float s = 0;
            for (int64_t k = max64(0, K - 1 - t); k < K; k++) s += ly->dw[ch * K + k] * r->q[(t - (K - 1) + k) * D + ch];
            r->h[t * D + ch] = s;
        }
    clamp_rows(r->h, r->h, T * D, a->clip);
    g4_rmsnorm_rows(r->c->ops, r->h, r->h, ly->conv_norm, T, D, a->eps);
    for (int64_t i = 0; i < T * D; i++) r->h[i] = activation(a->act, r->h[i]);
    linear(r, &ly->conv_end, r->h, T, D, r->att);
    for (int64_t i = 0; i < T * D; i++) r->x[i] += r->att[i];
}

static void conformer_layer_forward(run *r, const conformer_layer *ly) {
    const g4_audio_encoder *a = r->a;
    feed_forward(r, &ly->ffn1);
    attention_block(r, ly);
    light_conv(r, ly);
    feed_forward(r, &ly->ffn2);
    clamp_rows(r->x, r->x, r->T * a->D, a->clip);
    g4_rmsnorm_rows(r->c->ops, r->x, r->x, ly->norm_out, r->T, a->D, a->layer_eps);
}

static void run_free(run *r) {
    float *bufs[] = {r->x, r->h, r->q, r->k, r->v, r->att, r->wide, r->clip_in, r->rk, r->scores, r->y,
                     r->h0, r->patch, r->sub};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(r->valid);
}

static float *alloc_floats(int64_t n, int *failed) {
    float *p = malloc((size_t)max64(n, 1) * sizeof(float));
    if (!p) *failed = 1;
    return p;
}

int g4_audio_encode(const g4_audio_encoder *a, g4_compute *c, const float *features, const uint8_t *mask,
                    int64_t frames, float *out, int64_t *n_tokens, g4_audio_probe *probe, g4_err *err) {
    if (n_tokens) *n_tokens = 0;
    if (!a || !c || !features || !out || !n_tokens)
        return g4_fail(err, GEMMA4C_ERR_ARG, "audio encoder: missing encoder, compute, features or output");
    if (frames <= 0) return g4_fail(err, GEMMA4C_ERR_ARG, "audio encoder: no feature frames (%lld)", (long long)frames);
    if (frames > G4_AUDIO_ENCODER_MAX_FRAMES)
        return g4_fail(err, GEMMA4C_ERR_ARG, "audio encoder: %lld frames is more than one call takes (%d, 30 s); "
                       "split longer audio into segments", (long long)frames, G4_AUDIO_ENCODER_MAX_FRAMES);
    if (c->max_k < a->dims.max_input_width)
        return g4_fail(err, GEMMA4C_ERR_ARG, "audio encoder: the compute context handles inputs up to %lld wide, "
                       "the encoder needs %lld", (long long)c->max_k, (long long)a->dims.max_input_width);
    const int64_t M = G4_AUDIO_ENCODER_MEL_BINS;
    for (int64_t i = 0; i < frames * M; i++)
        if (!isfinite(features[i]))
            return g4_fail(err, GEMMA4C_ERR_ARG, "audio encoder: feature %lld of frame %lld is not finite",
                           (long long)(i % M), (long long)(i / M));

    const int64_t D = a->D, P = a->dims.proj_dims;
    const int workers = g4_pool_size(c->pool);
    run r = {0};
    r.a = a, r.c = c, r.feat = features, r.mask = mask, r.frames = frames;
    r.T1 = (frames - 1) / 2 + 1;
    r.T = g4_audio_encoder_positions(frames);
    const int64_t T = r.T;
    int failed = 0;
    r.valid = malloc((size_t)T);
    if (!r.valid) failed = 1;
    r.h0 = alloc_floats((2 * SUB_STEP + 1) * (int64_t)a->F1 * a->C0, &failed);
    r.patch = alloc_floats((int64_t)workers * 9 * a->C0, &failed);
    r.sub = alloc_floats(T * a->F2 * a->C1, &failed);
    r.x = alloc_floats(T * D, &failed);
    r.h = alloc_floats(T * D, &failed);
    r.q = alloc_floats(T * D, &failed);
    r.k = alloc_floats(T * D, &failed);
    r.v = alloc_floats(T * D, &failed);
    r.att = alloc_floats(T * D, &failed);
    r.wide = alloc_floats(T * 4 * D, &failed);
    r.clip_in = alloc_floats(T * max64(4 * D, P), &failed);
    r.rk = alloc_floats((int64_t)a->n_rel * D, &failed);
    r.scores = alloc_floats((int64_t)workers * (a->context + 1), &failed);
    r.y = alloc_floats(T * P, &failed);
    if (failed) {
        run_free(&r);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "audio encoder: out of memory for %lld frames", (long long)frames);
    }
    for (int64_t t = 0; t < T; t++) r.valid[t] = !mask || mask[4 * t];

    subsample(&r);
    for (int l = 0; l < a->dims.layers; l++) {
        if (g4_compute_safe_point(c)) {
            run_free(&r);
            return g4_fail(err, GEMMA4C_ERR_CANCELLED, "audio encoder: cancelled");
        }
        conformer_layer_forward(&r, &a->layers[l]);
    }
    g4_matmul(c, r.x, T, D, &a->out_proj, r.y);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < P; i++) r.y[t * P + i] += a->out_bias[i];
    if (probe && probe->tower_output) memcpy(probe->tower_output, r.y, (size_t)(T * P) * sizeof(float));
    if (probe && probe->valid) memcpy(probe->valid, r.valid, (size_t)T);

    /* Gemma4MultimodalEmbedder on the valid positions: weight-free RMSNorm, then the projection to the text width. */
    int64_t n = 0;
    for (int64_t t = 0; t < T; t++)
        if (r.valid[t]) c->ops->rmsnorm(r.clip_in + n++ * P, r.y + t * P, NULL, P, a->eps);
    if (n > 0) g4_matmul(c, r.clip_in, n, P, &a->embed, out);
    *n_tokens = n;
    run_free(&r);
    return 0;
}
