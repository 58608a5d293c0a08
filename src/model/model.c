/* model.c — binding checkpoint (or synthetic) tensors to the decoder's structure, with every shape checked. */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mapfile.h"
#include "core/threads.h"
#include "format/convert.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "kernels/kernels.h"

void g4_embedding_row(const g4_embedding *e, int64_t row, float *out) {
    if (!e->t.data) {
        g4_synth_fill_f32(&e->rule, (uint64_t)row * (uint64_t)e->width, (uint64_t)e->width, out);
        return;
    }
    const unsigned char *p = (const unsigned char *)e->t.data + (size_t)row * g4_row_bytes(e->t.dtype, e->width);
    if (g4_dtype_is_quantized(e->t.dtype))
        g4_dequantize_row(g4_quant_type(e->t.dtype), p, e->width, out);
    else if (e->t.dtype == G4_DT_F32)
        memcpy(out, p, (size_t)e->width * sizeof(float));
    else if (e->t.dtype == G4_DT_BF16)
        for (int64_t i = 0; i < e->width; i++) out[i] = g4_bf16_to_f32(((const uint16_t *)p)[i]);
    else
        for (int64_t i = 0; i < e->width; i++) out[i] = g4_f16_to_f32(((const uint16_t *)p)[i]);
}

static int own(g4_model *m, void *p) {
    if (!p) return -1;
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **q = realloc(m->owned, cap * sizeof *q);
        if (!q) {
            free(p);
            return -1;
        }
        m->owned = q;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return 0;
}

/* Where tensors come from: a checkpoint (checked views into the mapping) or the synthetic formula. */
typedef struct binder {
    g4_model *m;
    int stored;                /* tensors come from the model's file(s); 0: synthetic */
    g4_pool *pool;             /* synthetic: fills weights in parallel */
    char prefix[64];
    g4_err *err;
} binder;

typedef struct fill_job {
    g4_synth_rule rule;
    g4_dtype dt;
    int64_t K;
    unsigned char *out;
} fill_job;

static void fill_rows(void *ctx, int64_t begin, int64_t end, int worker) {
    fill_job *j = ctx;
    const size_t row_bytes = g4_row_bytes(j->dt, j->K);
    float *row = malloc((size_t)j->K * sizeof(float)); /* per call: rows are large, this is cheap */
    for (int64_t r = begin; r < end; r++) {
        unsigned char *dst = j->out + (size_t)r * row_bytes;
        const uint64_t first = (uint64_t)r * (uint64_t)j->K;
        if (j->dt == G4_DT_BF16) {
            g4_synth_fill_bf16(&j->rule, first, (uint64_t)j->K, (uint16_t *)dst);
            continue;
        }
        if (!row) continue; /* out of memory: the row stays as malloc left it; nothing better to do here */
        g4_synth_fill_f32(&j->rule, first, (uint64_t)j->K, row);
        if (j->dt == G4_DT_F32)
            memcpy(dst, row, (size_t)j->K * sizeof(float));
        else
            g4_quantize_row(g4_quant_type(j->dt), row, j->K, dst);
    }
    free(row);
}

/* A stored tensor by full name: 1 found, 0 absent, < 0 an error (a GGUF tensor of a type gemma4c cannot run). */
static int find_stored(const g4_model *m, const char *name, g4_tensor *out, g4_err *err) {
    if (m->ckpt) {
        const g4_tensor *t = g4_checkpoint_find(m->ckpt, name);
        if (t) *out = *t;
        return t != NULL;
    }
    if (m->gguf) {
        const g4_gguf_tensor *gt = g4_gguf_tensor_find(m->gguf, name);
        if (!gt) return 0;
        int rc = g4_gguf_tensor_view(m->gguf, gt, out, err);
        return rc ? rc : 1;
    }
    return 0;
}

static int shape_matches(const g4_tensor *t, int ndim, const int64_t *shape) {
    /* GGUF has no 0-D tensors: a scalar comes back as [1]. */
    if (ndim == 0 && t->ndim == 1 && t->shape[0] == 1) return 1;
    if (t->ndim != ndim) return 0;
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != shape[d]) return 0;
    return 1;
}

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t len) {
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && o < len; d++) o += (size_t)snprintf(buf + o, len - o, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

/* Binds `prefix + name` with the expected shape. lazy: a synthetic tensor is described but not filled. */
static int bind_lazy(binder *b, const char *name, int ndim, const int64_t *shape, int lazy, g4_tensor *out,
                     g4_synth_rule *rule_out) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", b->prefix, name);
    char want[96];
    shape_text(ndim, shape, want, sizeof want);
    if (b->stored) {
        g4_tensor t;
        int rc = find_stored(b->m, full, &t, b->err);
        if (rc < 0) return rc;
        if (rc == 0) return g4_fail(b->err, GEMMA4C_ERR_FORMAT, "%s has no tensor %s (expected shape %s)",
                                    b->m->source, full, want);
        if (t.dtype != G4_DT_BF16 && t.dtype != G4_DT_F16 && t.dtype != G4_DT_F32 &&
            !(g4_dtype_is_quantized(t.dtype) && ndim == 2))
            return g4_fail(b->err, GEMMA4C_ERR_FORMAT, "tensor %s has dtype %s; expected BF16, F16 or F32%s", full,
                           g4_dtype_name(t.dtype), ndim == 2 ? " or a gemma4c quantized type" : "");
        if (!shape_matches(&t, ndim, shape)) {
            char got[96];
            shape_text(t.ndim, t.shape, got, sizeof got);
            return g4_fail(b->err, GEMMA4C_ERR_SHAPE, "tensor %s has shape %s but the config implies %s", full, got, want);
        }
        *out = t;
        return 0;
    }
    memset(out, 0, sizeof *out);
    out->ndim = ndim;
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= (out->shape[d] = shape[d]);
    g4_synth_rule rule;
    if (!g4_synth_rule_for(full, shape, ndim, b->m->cfg.text.hidden_size, &rule))
        return g4_fail(b->err, GEMMA4C_ERR_INTERNAL, "no synthetic rule for %s", full);
    if (rule_out) *rule_out = rule;
    /* Stored as a converted file would store it: the recipe picks the type (bf16 by default). */
    int rc = g4_convert_recipe_type(b->m->synthetic_quant, full, ndim, shape, G4_DT_BF16, &out->dtype, b->err);
    if (rc) return rc;
    const int64_t K = ndim ? shape[ndim - 1] : 1, rows = K ? numel / K : 0;
    out->nbytes = g4_row_bytes(out->dtype, K) * (size_t)rows;
    if (lazy) return 0;
    void *data = malloc(out->nbytes ? out->nbytes : 1);
    if (own(b->m, data)) return g4_fail(b->err, GEMMA4C_ERR_NOMEM, "out of memory for synthetic tensor %s (%zu bytes)", full, out->nbytes);
    /* Row by row, so a quantized model never holds a full-precision copy of a tensor. */
    fill_job j = {rule, out->dtype, K, data};
    g4_pool_for(b->pool, rows, 16, fill_rows, &j);
    out->data = data;
    return 0;
}

static int bind(binder *b, g4_tensor *out, int64_t d0, int64_t d1, const char *fmt, ...) {
    char name[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t shape[2] = {d0, d1};
    return bind_lazy(b, name, d1 > 0 ? 2 : 1, shape, 0, out, NULL);
}

/* A 1-D weight as an owned float32 array. */
static int bind_vec(binder *b, float **out, int64_t n, const char *fmt, ...) {
    char name[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    g4_tensor t;
    int64_t shape[1] = {n};
    int rc = bind_lazy(b, name, 1, shape, 0, &t, NULL);
    if (rc) return rc;
    float *v = malloc((size_t)n * sizeof(float));
    if (own(b->m, v)) return g4_fail(b->err, GEMMA4C_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) v[i] = g4_tensor_get_f32(&t, i);
    *out = v;
    return 0;
}

static int bind_embedding(binder *b, g4_embedding *e, int64_t rows, int64_t width, int lazy, const char *name) {
    int64_t shape[2] = {rows, width};
    e->rows = rows;
    e->width = width;
    return bind_lazy(b, name, 2, shape, lazy, &e->t, &e->rule);
}

/* RoPE inverse frequencies as transformers computes them in float32: theta^(-2i/D) for the rotating pairs
 * (all for "default", int(f*D//2) for "proportional"), zero for the rest, divided by the factor. */
static int rope_tables(g4_model *m) {
    const g4_text_config *c = &m->cfg.text;
    for (int type = 0; type < 2; type++) {
        int D = type == G4_LAYER_FULL ? c->global_head_dim : c->head_dim;
        const g4_rope_params *rp = &c->rope[type];
        int half = D / 2;
        int rotating = rp->proportional ? (int)floor(rp->partial_rotary_factor * D / 2.0) : half;
        if (rotating > half) rotating = half;
        float *f = calloc((size_t)half, sizeof(float));
        if (own(m, f)) return -1;
        for (int i = 0; i < rotating; i++) {
            float expo = (float)(2 * i) / (float)D;
            f[i] = 1.0f / powf((float)rp->theta, expo);
            if (rp->factor != 1.0) f[i] = (float)(f[i] / rp->factor);
        }
        m->inv_freq[type] = f;
    }
    return 0;
}

/* sqrt(width) as transformers computes it for a loaded checkpoint, or the synthetic buffer value. */
static float embedding_scale(const binder *b, const char *name, int64_t width) {
    if (b->stored) return (float)sqrt((double)width);
    char full[256];
    snprintf(full, sizeof full, "%s%s", b->prefix, name);
    g4_synth_rule rule;
    g4_synth_rule_for(full, NULL, 0, b->m->cfg.text.hidden_size, &rule);
    return g4_bf16_to_f32(g4_synth_value_bf16(&rule, 0));
}

static int bind_all(binder *b) {
    g4_model *m = b->m;
    const g4_text_config *c = &m->cfg.text;
    const int64_t H = c->hidden_size, L = c->num_layers, P = c->ple_dim;
    int rc;
    m->embed_scale = embedding_scale(b, "embed_tokens.embed_scale", H);
    m->ple_embed_scale = embedding_scale(b, "embed_tokens_per_layer.embed_scale", P);
    if ((rc = bind_embedding(b, &m->embed, c->vocab_size, H, 0, "embed_tokens.weight"))) return rc;
    m->lm_head = m->embed.t;
    if (!c->tie_word_embeddings) {
        binder head = *b;
        head.prefix[0] = '\0';
        if ((rc = bind(&head, &m->lm_head, c->vocab_size, H, "lm_head.weight"))) return rc;
    }
    if ((rc = bind_vec(b, &m->final_norm, H, "norm.weight"))) return rc;
    if (P > 0) {
        if ((rc = bind_embedding(b, &m->ple_table, c->vocab_size_per_layer_input, L * P, !b->stored,
                                 "embed_tokens_per_layer.weight")))
            return rc;
        if ((rc = bind(b, &m->ple_model_proj, L * P, H, "per_layer_model_projection.weight"))) return rc;
        if ((rc = bind_vec(b, &m->ple_projection_norm, P, "per_layer_projection_norm.weight"))) return rc;
    }
    m->layers = calloc((size_t)L, sizeof *m->layers);
    if (own(m, m->layers)) return g4_fail(b->err, GEMMA4C_ERR_NOMEM, "out of memory");
    for (int l = 0; l < L; l++) {
        g4_layer *ly = &m->layers[l];
        const int64_t D = c->layer_head_dim[l], nq = c->num_heads, nkv = c->layer_kv_heads[l];
        const int64_t I = c->layer_intermediate[l];
        const int shared = l >= c->first_kv_shared;
#define LAYER(s) "layers.%d." s
        if ((rc = bind_vec(b, &ly->input_norm, H, LAYER("input_layernorm.weight"), l)) ||
            (rc = bind_vec(b, &ly->post_attention_norm, H, LAYER("post_attention_layernorm.weight"), l)) ||
            (rc = bind_vec(b, &ly->pre_feedforward_norm, H, LAYER("pre_feedforward_layernorm.weight"), l)) ||
            (rc = bind_vec(b, &ly->post_feedforward_norm, H, LAYER("post_feedforward_layernorm.weight"), l)) ||
            (rc = bind(b, &ly->q_proj, nq * D, H, LAYER("self_attn.q_proj.weight"), l)) ||
            (rc = bind_vec(b, &ly->q_norm, D, LAYER("self_attn.q_norm.weight"), l)) ||
            (rc = bind(b, &ly->o_proj, H, nq * D, LAYER("self_attn.o_proj.weight"), l)) ||
            (rc = bind(b, &ly->gate_proj, I, H, LAYER("mlp.gate_proj.weight"), l)) ||
            (rc = bind(b, &ly->up_proj, I, H, LAYER("mlp.up_proj.weight"), l)) ||
            (rc = bind(b, &ly->down_proj, H, I, LAYER("mlp.down_proj.weight"), l)))
            return rc;
        if (!shared) {
            if ((rc = bind(b, &ly->k_proj, nkv * D, H, LAYER("self_attn.k_proj.weight"), l)) ||
                (rc = bind_vec(b, &ly->k_norm, D, LAYER("self_attn.k_norm.weight"), l)))
                return rc;
            if (!c->layer_k_is_v[l] && (rc = bind(b, &ly->v_proj, nkv * D, H, LAYER("self_attn.v_proj.weight"), l)))
                return rc;
        }
        if (P > 0 && ((rc = bind(b, &ly->per_layer_input_gate, P, H, LAYER("per_layer_input_gate.weight"), l)) ||
                      (rc = bind(b, &ly->per_layer_projection, H, P, LAYER("per_layer_projection.weight"), l)) ||
                      (rc = bind_vec(b, &ly->post_per_layer_input_norm, H, LAYER("post_per_layer_input_norm.weight"), l))))
            return rc;
        float *scalar;
        if ((rc = bind_vec(b, &scalar, 1, LAYER("layer_scalar"), l))) return rc;
        ly->layer_scalar = scalar[0];
#undef LAYER
    }
    if (rope_tables(m)) return g4_fail(b->err, GEMMA4C_ERR_NOMEM, "out of memory");
    return 0;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The checkpoint's tokenizer, or (when it ships none) the byte-level one with the config's special ids. */
static int load_tokenizer(g4_model *m, const char *dir, g4_err *err) {
    char path[1200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir ? dir : "");
    if (dir && file_exists(path)) {
        int rc = g4_tokenizer_load(path, &m->tok, err);
        if (rc) return g4_err_prefix(err, "tokenizer");
        if (g4_tokenizer_vocab_size(m->tok) > m->cfg.text.vocab_size)
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s has %d tokens but the model's vocabulary is %d", path,
                           g4_tokenizer_vocab_size(m->tok), m->cfg.text.vocab_size);
        return 0;
    }
    const g4_model_config *c = &m->cfg;
    g4_special_token extra[] = {
        {"<|image>", c->boi_token_id}, {"<image|>", c->eoi_token_id}, {"<|image|>", c->image_token_id},
        {"<|video|>", c->video_token_id}, {"<|audio>", c->boa_token_id}, {"<audio|>", c->eoa_token_id},
        {"<|audio|>", c->audio_token_id},
    };
    g4_special_token present[7];
    size_t n = 0;
    for (size_t i = 0; i < 7; i++)
        if (extra[i].id >= 0) present[n++] = extra[i];
    m->tokenizer_is_byte_level = 1;
    return g4_tokenizer_byte_level(c->text.vocab_size, present, n, &m->tok, err);
}

static int checkpoint_prefix(binder *b) {
    static const char *candidates[] = {"model.language_model.", "model.", "language_model.model.", ""};
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
        char name[128];
        snprintf(name, sizeof name, "%sembed_tokens.weight", candidates[i]);
        g4_tensor t;
        if (find_stored(b->m, name, &t, NULL) == 1) {
            snprintf(b->prefix, sizeof b->prefix, "%s", candidates[i]);
            return 0;
        }
    }
    return g4_fail(b->err, GEMMA4C_ERR_FORMAT, "checkpoint has no text embedding (model.language_model.embed_tokens.weight)");
}

int g4_model_load_dir(const char *dir, g4_model **out, g4_err *err) {
    *out = NULL;
    g4_model *m = calloc(1, sizeof *m);
    if (!m) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    snprintf(m->source, sizeof m->source, "%s", dir);
    char path[1200];
    int rc;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((rc = g4_config_load(path, &m->cfg, err))) goto fail;
    g4_generation_config_default(&m->gen);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (file_exists(path) && (rc = g4_generation_config_load(path, &m->gen, err))) goto fail;
    if (m->gen.n_eos == 0)
        for (int i = 0; i < m->cfg.n_eos; i++) m->gen.eos_ids[m->gen.n_eos++] = m->cfg.eos_ids[i];
    if ((rc = g4_checkpoint_open(dir, &m->ckpt, err))) goto fail;
    binder b = {m, 1, NULL, "", err};
    if ((rc = checkpoint_prefix(&b)) || (rc = bind_all(&b))) goto fail;
    if ((rc = load_tokenizer(m, dir, err))) goto fail;
    *out = m;
    return 0;
fail:
    g4_model_free(m);
    return rc ? rc : GEMMA4C_ERR_INTERNAL;
}

/* Text kept in a GGUF metadata string: NULL when the key is absent. */
static const char *gguf_text(const g4_gguf *f, const char *key, size_t *len) {
    const char *s = NULL;
    g4_err ignored = {0};
    if (!g4_gguf_find_kv(f, key) || g4_gguf_get_str(f, key, &s, len, &ignored)) return NULL;
    return s;
}

int g4_model_load_gguf(const char *path, g4_model **out, g4_err *err) {
    *out = NULL;
    g4_model *m = calloc(1, sizeof *m);
    if (!m) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    snprintf(m->source, sizeof m->source, "%s", path);
    int rc;
    size_t len;
    if ((rc = g4_gguf_open(path, &m->gguf, err))) goto fail;
    uint32_t version = 0;
    if (!g4_gguf_find_kv(m->gguf, G4_GGUF_KEY_FORMAT) ||
        (rc = g4_gguf_get_u32(m->gguf, G4_GGUF_KEY_FORMAT, &version, err)) || version != G4_GGUF_FORMAT_VERSION) {
        rc = g4_fail(err, GEMMA4C_ERR_UNSUPPORTED,
                     "%s: not a gemma4c GGUF file (format version %u; convert the checkpoint with `gemma4c convert`)",
                     path, version);
        goto fail;
    }
    const char *text = gguf_text(m->gguf, G4_GGUF_KEY_CONFIG, &len);
    if (!text) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: no %s", path, G4_GGUF_KEY_CONFIG);
        goto fail;
    }
    if ((rc = g4_config_parse(text, len, &m->cfg, err))) {
        g4_err_prefix(err, "%s", path);
        goto fail;
    }
    g4_generation_config_default(&m->gen);
    if ((text = gguf_text(m->gguf, G4_GGUF_KEY_GENERATION, &len)) &&
        (rc = g4_generation_config_parse(text, len, &m->gen, err))) {
        g4_err_prefix(err, "%s", path);
        goto fail;
    }
    if (m->gen.n_eos == 0)
        for (int i = 0; i < m->cfg.n_eos; i++) m->gen.eos_ids[m->gen.n_eos++] = m->cfg.eos_ids[i];
    binder b = {m, 1, NULL, "", err};
    if ((rc = checkpoint_prefix(&b)) || (rc = bind_all(&b))) goto fail;
    if ((text = gguf_text(m->gguf, G4_GGUF_KEY_TOKENIZER, &len))) {
        if ((rc = g4_tokenizer_parse(text, len, &m->tok, err))) {
            g4_err_prefix(err, "%s: tokenizer", path);
            goto fail;
        }
    } else if ((rc = load_tokenizer(m, NULL, err)))
        goto fail;
    *out = m;
    return 0;
fail:
    g4_model_free(m);
    return rc ? rc : GEMMA4C_ERR_INTERNAL;
}

int g4_model_load(const char *path, g4_model **out, g4_err *err) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return g4_model_load_gguf(path, out, err);
    return g4_model_load_dir(path, out, err);
}

int g4_model_synthetic(const char *config_json, const char *quant, int n_threads, g4_model **out, g4_err *err) {
    *out = NULL;
    g4_model *m = calloc(1, sizeof *m);
    if (!m) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    m->synthetic = 1;
    snprintf(m->synthetic_quant, sizeof m->synthetic_quant, "%s", quant ? quant : "bf16");
    snprintf(m->source, sizeof m->source, "synthetic");
    int rc;
    g4_pool *pool = NULL;
    if ((rc = g4_config_parse(config_json, strlen(config_json), &m->cfg, err))) goto fail;
    g4_generation_config_default(&m->gen);
    for (int i = 0; i < m->cfg.n_eos && i < G4_MAX_STOP_IDS; i++) m->gen.eos_ids[m->gen.n_eos++] = m->cfg.eos_ids[i];
    pool = g4_pool_create(n_threads);
    binder b = {m, 0, pool, "model.language_model.", err};
    if ((rc = bind_all(&b))) goto fail;
    if ((rc = load_tokenizer(m, NULL, err))) goto fail;
    g4_pool_destroy(pool);
    *out = m;
    return 0;
fail:
    g4_pool_destroy(pool);
    g4_model_free(m);
    return rc ? rc : GEMMA4C_ERR_INTERNAL;
}

void g4_model_free(g4_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    g4_tokenizer_free(m->tok);
    if (m->ckpt) g4_checkpoint_close(m->ckpt);
    if (m->gguf) g4_gguf_close(m->gguf);
    g4_config_free(&m->cfg);
    free(m);
}

int64_t g4_model_max_input_width(const g4_model *m) {
    const g4_text_config *c = &m->cfg.text;
    int64_t w = c->hidden_size > c->ple_dim ? c->hidden_size : c->ple_dim;
    for (int l = 0; l < c->num_layers; l++) {
        int64_t q = (int64_t)c->num_heads * c->layer_head_dim[l];
        if (q > w) w = q;
        if (c->layer_intermediate[l] > w) w = c->layer_intermediate[l];
    }
    return w;
}

int64_t g4_model_weight_bytes_per_token(const g4_model *m) {
    const g4_text_config *c = &m->cfg.text;
    int64_t bytes = (int64_t)m->lm_head.nbytes + (int64_t)m->ple_model_proj.nbytes;
    bytes += (int64_t)g4_row_bytes(m->embed.t.dtype, m->embed.width);
    /* A synthetic table is generated rather than read; count what a converted file would read. */
    if (m->ple_table.rows) bytes += (int64_t)g4_row_bytes(m->ple_table.t.dtype, m->ple_table.width);
    for (int l = 0; l < c->num_layers; l++) {
        const g4_layer *ly = &m->layers[l];
        const g4_tensor *w[] = {&ly->q_proj, &ly->k_proj, &ly->v_proj, &ly->o_proj, &ly->gate_proj,
                                &ly->up_proj, &ly->down_proj, &ly->per_layer_input_gate, &ly->per_layer_projection};
        for (size_t i = 0; i < sizeof w / sizeof *w; i++) bytes += (int64_t)w[i]->nbytes;
    }
    return bytes;
}

int g4_model_tensor(g4_model *m, const char *name, int ndim, const int64_t *shape, g4_tensor *out, g4_err *err) {
    binder b = {m, !m->synthetic, NULL, "", err};
    if (ndim < 0 || ndim > G4_MAX_DIMS) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: bad rank %d", name, ndim);
    return bind_lazy(&b, name, ndim, shape, 0, out, NULL);
}

int g4_model_vector(g4_model *m, const char *name, int64_t n, float **out, g4_err *err) {
    binder b = {m, !m->synthetic, NULL, "", err};
    return bind_vec(&b, out, n, "%s", name);
}
