/* convert.c — streaming conversion of a Hugging Face model directory to a gemma4c GGUF file. */
#include "convert.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mapfile.h"
#include "core/threads.h"
#include "format/config.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "model/calibrate.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The token embedding, which the tied output matrix is too. */
static int is_token_embedding(const char *name) {
    return ends_with(name, "embed_tokens.weight") || strcmp(name, "lm_head.weight") == 0;
}

static int parse_type(const char *s, g4_dtype *out) {
    static const struct {
        const char *name;
        g4_dtype dt;
    } types[] = {{"f32", G4_DT_F32}, {"f16", G4_DT_F16}, {"bf16", G4_DT_BF16},
                 {"q8", G4_DT_Q8},   {"q6", G4_DT_Q6},   {"q4", G4_DT_Q4}};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strcmp(s, types[i].name) == 0) return *out = types[i].dt, 0;
    return -1;
}

int g4_convert_recipe_calibrates(const char *quant) {
    return !quant || !strcmp(quant, "q4") || !strcmp(quant, "q4-mix") || !strcmp(quant, "q6");
}

static int is_float(g4_dtype dt) { return dt == G4_DT_F32 || dt == G4_DT_F16 || dt == G4_DT_BF16 || dt == G4_DT_F64; }

int g4_convert_recipe_type(const char *quant, const char *name, int ndim, const int64_t *shape, g4_dtype src,
                           g4_dtype *out, g4_err *err) {
    if (!quant) quant = "q4";
    const int mix = strcmp(quant, "q4-mix") == 0, six = strcmp(quant, "q6") == 0;
    if (strcmp(quant, "q4") && !mix && !six && strcmp(quant, "q8") && strcmp(quant, "bf16") && strcmp(quant, "f32"))
        return g4_fail(err, GEMMA4C_ERR_ARG, "unknown --quant '%s' (q4, q4-mix, q6, q8, bf16, f32)", quant);
    if (!is_float(src)) return *out = src, 0; /* integer buffers are stored as they are */
    /* Norm weights, scalars, biases and clip bounds are tiny and sensitive: always float32. */
    if (ndim < 2 || strcmp(quant, "f32") == 0) return *out = G4_DT_F32, 0;
    const int64_t K = shape[ndim - 1];
    /* Only matrices whose rows split into 32-element blocks are quantized; convolutions stay bf16. */
    if (strcmp(quant, "bf16") == 0 || ndim != 2 || K % 32) return *out = G4_DT_BF16, 0;
    if (strcmp(quant, "q8") == 0) return *out = G4_DT_Q8, 0;
    /* q4: 4-bit transformer matrices (q6: 6-bit); the per-layer embedding table at 8 bits (4-bit flips greedy
     * tokens); the token embedding / tied output matrix at 6 bits; the encoders and the per-layer projection at 8
     * bits. */
    if (ends_with(name, "embed_tokens_per_layer.weight") || strstr(name, "per_layer_model_projection") ||
        strstr(name, "vision_tower") || strstr(name, "audio_tower") || strstr(name, "embed_vision") ||
        strstr(name, "embed_audio"))
        return *out = G4_DT_Q8, 0;
    if (is_token_embedding(name)) return *out = G4_DT_Q6, 0;
    /* q4-mix: the matrices that cost the most quality per byte at 4 bits on the trained golden model go to 8 bits
     * (the k and v projections, the per-layer input gate and projection: KL 6.0e-2 -> 4.1e-2 there); on E4B they
     * are 2.6 % of the bytes a token reads (bench/RESULTS.md). */
    if (mix && (ends_with(name, "self_attn.k_proj.weight") || ends_with(name, "self_attn.v_proj.weight") ||
                ends_with(name, "per_layer_input_gate.weight") || ends_with(name, "per_layer_projection.weight")))
        return *out = G4_DT_Q8, 0;
    return *out = six ? G4_DT_Q6 : G4_DT_Q4, 0;
}

/* Overrides to a quantized type touch only matrices (a pattern like "*.mlp.*" also matches clip bounds). */
static int apply_overrides(const g4_convert_options *opt, const char *name, int ndim, int64_t K, g4_dtype *dt,
                           g4_err *err) {
    for (size_t i = 0; i < opt->n_overrides; i++) {
        const char *eq = strrchr(opt->overrides[i], '=');
        if (!eq || eq == opt->overrides[i])
            return g4_fail(err, GEMMA4C_ERR_ARG, "override '%s' is not PATTERN=TYPE", opt->overrides[i]);
        char pattern[512];
        snprintf(pattern, sizeof pattern, "%.*s", (int)(eq - opt->overrides[i]), opt->overrides[i]);
        g4_dtype t;
        if (parse_type(eq + 1, &t))
            return g4_fail(err, GEMMA4C_ERR_ARG, "override '%s': type must be f32, f16, bf16, q8, q6 or q4",
                           opt->overrides[i]);
        if (fnmatch(pattern, name, 0) != 0 || (g4_dtype_is_quantized(t) && ndim != 2)) continue;
        if (g4_dtype_is_quantized(t) && K % 32)
            return g4_fail(err, GEMMA4C_ERR_ARG, "override '%s': %s has rows of %lld, not a multiple of 32",
                           opt->overrides[i], name, (long long)K);
        *dt = t;
    }
    return 0;
}

static uint32_t gguf_type(g4_dtype dt) {
    switch (dt) {
    case G4_DT_F32: return G4_GGUF_TYPE_F32;
    case G4_DT_F16: return G4_GGUF_TYPE_F16;
    case G4_DT_BF16: return G4_GGUF_TYPE_BF16;
    case G4_DT_Q8: return G4_GGUF_TYPE_G4_Q8;
    case G4_DT_Q4: return G4_GGUF_TYPE_G4_Q4;
    case G4_DT_Q6: return G4_GGUF_TYPE_G4_Q6;
    case G4_DT_I8: return G4_GGUF_TYPE_I8;
    case G4_DT_I16: return G4_GGUF_TYPE_I16;
    case G4_DT_I32: return G4_GGUF_TYPE_I32;
    case G4_DT_I64: return G4_GGUF_TYPE_I64;
    case G4_DT_F64: return G4_GGUF_TYPE_F64;
    default: return UINT32_MAX;
    }
}

/* k/v projections of KV-shared layers are never used: such checkpoints may carry them, converted files do not. */
static int unused_tensor(const char *name, const g4_model_config *cfg) {
    if (strcmp(name, "lm_head.weight") == 0 && cfg->text.tie_word_embeddings) return 1;
    const char *p = strstr(name, "layers.");
    if (!p || strstr(name, "vision_tower") || strstr(name, "audio_tower")) return 0;
    int layer, end = 0;
    char what[32];
    if (sscanf(p, "layers.%d.self_attn.%31[a-z_].weight%n", &layer, what, &end) != 2 || p[end] != '\0') return 0;
    return layer >= cfg->text.first_kv_shared &&
           (!strcmp(what, "k_proj") || !strcmp(what, "v_proj") || !strcmp(what, "k_norm") || !strcmp(what, "v_norm"));
}

/* One planned output tensor. */
typedef struct plan_item {
    const g4_tensor *src;
    g4_dtype dt;
    int64_t rows, K; /* the tensor as rows of K elements (a 1-D tensor is one row) */
} plan_item;

typedef struct convert_job {
    const plan_item *it;
    const g4_kernel_ops *ops;
    const float *gptq; /* the tensor's calibration factor (g4_calib_factor), or NULL: plain rounding */
    int64_t row0;
    size_t out_row_bytes;
    unsigned char *out;
    float *scratch; /* per worker: 2 K floats */
} convert_job;

static void convert_rows(void *ctx, int64_t begin, int64_t end, int worker) {
    convert_job *j = ctx;
    const plan_item *it = j->it;
    const g4_tensor *t = it->src;
    const size_t in_row_bytes = g4_row_bytes(t->dtype, it->K);
    float *f = j->scratch + (size_t)worker * 2 * (size_t)it->K;
    for (int64_t r = begin; r < end; r++) {
        const unsigned char *src = (const unsigned char *)t->data + (size_t)(j->row0 + r) * in_row_bytes;
        unsigned char *dst = j->out + (size_t)r * j->out_row_bytes;
        if (t->dtype == it->dt) { /* same type: the bytes as they are (bf16 stays bit-exact) */
            memcpy(dst, src, in_row_bytes);
            continue;
        }
        if (t->dtype == G4_DT_F32 || t->dtype == G4_DT_BF16 || t->dtype == G4_DT_F16)
            j->ops->to_f32(f, src, t->dtype, it->K);
        else
            for (int64_t k = 0; k < it->K; k++) f[k] = g4_tensor_get_f32(t, (j->row0 + r) * it->K + k);
        switch (it->dt) {
        case G4_DT_F32: memcpy(dst, f, (size_t)it->K * 4); break;
        case G4_DT_BF16:
            for (int64_t k = 0; k < it->K; k++) ((uint16_t *)dst)[k] = g4_f32_to_bf16(f[k]);
            break;
        case G4_DT_F16:
            for (int64_t k = 0; k < it->K; k++) ((uint16_t *)dst)[k] = g4_f32_to_f16(f[k]);
            break;
        case G4_DT_Q8: g4_quantize_row(G4_QT_Q8, f, it->K, dst); break;
        case G4_DT_Q4:
        case G4_DT_Q6:
            if (j->gptq) g4_quantize_row_gptq(g4_quant_type(it->dt), f, it->K, j->gptq, f + it->K, dst);
            else g4_quantize_row(g4_quant_type(it->dt), f, it->K, dst);
            break;
        default: break;
        }
    }
}

static int add_text_file(g4_gguf_writer *w, const char *dir, const char *file, const char *key, size_t limit,
                         int required, g4_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    struct stat st;
    if (stat(path, &st) != 0) return required ? g4_fail(err, GEMMA4C_ERR_IO, "%s: missing", path) : 0;
    char *text;
    int rc = g4_read_file(path, limit, &text, NULL, err);
    if (rc) return rc;
    if (strlen(text) != (size_t)st.st_size) rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: contains a NUL byte", path);
    if (!rc) rc = g4_gguf_writer_set_str(w, key, text, err);
    free(text);
    return rc;
}

static int write_metadata(g4_gguf_writer *w, const char *dir, const char *quant, g4_err *err) {
    int rc;
    if ((rc = g4_gguf_writer_set_str(w, "general.architecture", "gemma4", err)) ||
        (rc = g4_gguf_writer_set_u32(w, G4_GGUF_KEY_FORMAT, G4_GGUF_FORMAT_VERSION, err)) ||
        (rc = g4_gguf_writer_set_str(w, G4_GGUF_KEY_QUANT, quant, err)) ||
        (rc = add_text_file(w, dir, "config.json", G4_GGUF_KEY_CONFIG, 1 << 20, 1, err)) ||
        (rc = add_text_file(w, dir, "generation_config.json", G4_GGUF_KEY_GENERATION, 1 << 20, 0, err)) ||
        (rc = add_text_file(w, dir, "tokenizer.json", G4_GGUF_KEY_TOKENIZER, (size_t)256 << 20, 0, err)) ||
        (rc = add_text_file(w, dir, "chat_template.jinja", G4_GGUF_KEY_TEMPLATE, 1 << 20, 0, err)))
        return rc;
    return 0;
}

int g4_convert(const char *hf_dir, const char *out_path, const g4_convert_options *opt, g4_err *err) {
    g4_convert_options defaults = {0};
    if (!opt) opt = &defaults;
    const char *quant = opt->quant ? opt->quant : "q4";
    if (!!opt->calibration_ids + !!opt->calibration_text + !!opt->no_calibration > 1)
        return g4_fail(err, GEMMA4C_ERR_ARG, "calibration: give a text, ids or none, not several");
    if ((opt->calibration_ids && !opt->n_calibration_ids) || (opt->calibration_text && !opt->calibration_text_len))
        return g4_fail(err, GEMMA4C_ERR_ARG, "calibration: the text or ids given are empty");
    const int calibrated = g4_convert_recipe_calibrates(quant);
    if (!calibrated && (opt->calibration_ids || opt->calibration_text || opt->no_calibration))
        return g4_fail(err, GEMMA4C_ERR_ARG, "calibration: only q4, q4-mix and q6 calibrate, not %s", quant);
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", hf_dir);
    g4_model_config cfg;
    int rc = g4_config_load(path, &cfg, err);
    if (rc) return rc;
    g4_checkpoint *ck = NULL;
    g4_gguf_writer *w = NULL;
    plan_item *plan = NULL;
    g4_pool *pool = NULL;
    g4_calib *calib = NULL;
    float *scratch = NULL;
    unsigned char *out = NULL;
    if ((rc = g4_checkpoint_open(hf_dir, &ck, err))) goto done;
    size_t n = g4_checkpoint_count(ck), n_plan = 0;
    int64_t max_k = 1;
    plan = calloc(n ? n : 1, sizeof *plan);
    if (!plan) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const g4_tensor *t = g4_checkpoint_at(ck, i);
        if (unused_tensor(t->name, &cfg)) continue;
        plan_item *it = &plan[n_plan];
        it->src = t;
        it->K = t->ndim ? t->shape[t->ndim - 1] : 1;
        it->rows = it->K ? g4_tensor_numel(t) / it->K : 0;
        if (t->ndim > 2) { /* convolutions: one row per output channel */
            it->K = t->shape[0] ? g4_tensor_numel(t) / t->shape[0] : 0;
            it->rows = t->shape[0];
        }
        if ((rc = g4_convert_recipe_type(quant, t->name, t->ndim, t->shape, t->dtype, &it->dt, err)) ||
            (rc = apply_overrides(opt, t->name, t->ndim, t->ndim >= 2 ? t->shape[t->ndim - 1] : 1, &it->dt, err)))
            goto done;
        if (g4_dtype_is_quantized(it->dt) && t->ndim != 2) it->dt = G4_DT_BF16;
        if (gguf_type(it->dt) == UINT32_MAX) {
            rc = g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: dtype %s cannot be stored", t->name, g4_dtype_name(t->dtype));
            goto done;
        }
        if (it->K > max_k) max_k = it->K;
        n_plan++;
    }
    if ((rc = g4_gguf_writer_open(out_path, &w, err)) || (rc = write_metadata(w, hf_dir, quant, err))) goto done;
    for (size_t i = 0; i < n_plan; i++) {
        const g4_tensor *t = plan[i].src;
        int64_t ne[4] = {1, 1, 1, 1};
        int nd = t->ndim ? t->ndim : 1;
        if (nd > 4) {
            rc = g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: %d dimensions (GGUF holds 4)", t->name, nd);
            goto done;
        }
        for (int d = 0; d < t->ndim; d++) ne[d] = t->shape[t->ndim - 1 - d];
        if ((rc = g4_gguf_writer_add_tensor(w, t->name, gguf_type(plan[i].dt), nd, ne, err))) goto done;
    }
    if ((rc = g4_gguf_writer_write_header(w, err))) goto done;

    /* q4, q4-mix and q6 round their 4- and 6-bit matrices with error compensation, calibrated on the text; not the
     * token embedding, whose rows are looked up as much as multiplied (it measured worse with it). */
    if (calibrated && !opt->no_calibration &&
        (rc = g4_calibrate(hf_dir, opt->calibration_text, opt->calibration_text_len, opt->calibration_ids,
                           opt->n_calibration_ids, opt->n_threads, &calib, err)))
        goto done;
    pool = g4_pool_create(opt->n_threads);
    const int workers = g4_pool_size(pool);
    const size_t chunk_bytes = (size_t)32 << 20;
    scratch = malloc((size_t)workers * 2 * (size_t)max_k * sizeof(float));
    out = malloc(chunk_bytes + (size_t)max_k * 8);
    if (!pool || !scratch || !out) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_plan; i++) {
        const plan_item *it = &plan[i];
        const size_t out_row = g4_row_bytes(it->dt, it->K);
        int64_t rows_per_chunk = out_row ? (int64_t)(chunk_bytes / out_row) : 1;
        if (rows_per_chunk < 1) rows_per_chunk = 1;
        const int compensated = (it->dt == G4_DT_Q4 || it->dt == G4_DT_Q6) && !is_token_embedding(it->src->name);
        const float *gptq = compensated ? g4_calib_factor(calib, it->src->name, it->K) : NULL;
        for (int64_t r0 = 0; r0 < it->rows; r0 += rows_per_chunk) {
            int64_t nr = it->rows - r0 < rows_per_chunk ? it->rows - r0 : rows_per_chunk;
            convert_job j = {it, g4_kernels_best(), gptq, r0, out_row, out, scratch};
            g4_pool_for(pool, nr, 4, convert_rows, &j);
            if ((rc = g4_gguf_writer_write(w, out, (size_t)nr * out_row, err))) goto done;
        }
        if (opt->progress) opt->progress(opt->progress_ctx, i + 1, n_plan, it->src->name);
    }
    rc = g4_gguf_writer_close(w, err);
    w = NULL;
done:
    if (w) g4_gguf_writer_abort(w);
    g4_pool_destroy(pool);
    g4_calib_free(calib);
    free(scratch);
    free(out);
    free(plan);
    if (ck) g4_checkpoint_close(ck);
    g4_config_free(&cfg);
    return rc;
}
