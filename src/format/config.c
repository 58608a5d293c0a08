/* config.c — parsing and range-checking of Gemma 4 config.json / generation_config.json into fixed structs. */
#include "format/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"

#define CFG_MAX_FILE ((size_t)16 * 1024 * 1024)

/* Where values are read from, so every message can name the field as the file spells it. */
typedef struct src {
    const cJSON *obj;
    const char *file;   /* "config" or "generation_config" */
    const char *prefix; /* "text_config." or "" */
    g4_err *err;
} src;

/* Absent and JSON null both mean "use the default", as Hugging Face treats them. */
static const cJSON *field(const src *s, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

static int bad(const src *s, const char *key, const char *what) {
    return g4_fail(s->err, GEMMA4C_ERR_FORMAT, "%s: %s%s %s", s->file, s->prefix, key, what);
}

static int int_value(const cJSON *v, long long lo, long long hi, int *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d)) return -1;
    *out = (int)d;
    return 0;
}

/* Reads an integer in [lo, hi]; `def` when absent, or an error when required. */
static int get_int(const src *s, const char *key, int required, int def, int lo, int hi, int *out) {
    const cJSON *v = field(s, key);
    if (!v) {
        if (required) return bad(s, key, "is missing");
        *out = def;
        return 0;
    }
    if (int_value(v, lo, hi, out) != 0) {
        char what[96];
        snprintf(what, sizeof what, "must be an integer in [%d, %d]", lo, hi);
        return bad(s, key, what);
    }
    return 0;
}

static int get_double(const src *s, const char *key, double def, double lo, double hi, int lo_open, double *out) {
    const cJSON *v = field(s, key);
    if (!v) {
        *out = def;
        return 0;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d > hi || d < lo || (lo_open && d == lo)) {
        char what[96];
        snprintf(what, sizeof what, "must be a number in %c%g, %g]", lo_open ? '(' : '[', lo, hi);
        return bad(s, key, what);
    }
    *out = d;
    return 0;
}

static int get_bool(const src *s, const char *key, int def, int *out) {
    const cJSON *v = field(s, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v)) return bad(s, key, "must be true or false");
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
}

/* A token id, or a list of them (eos_token_id); ids must lie in [0, vocab). */
static int get_id_list(const src *s, const char *key, int vocab, int32_t *ids, int *n) {
    const cJSON *v = field(s, key);
    *n = 0;
    if (!v) return 0;
    int id;
    if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) > G4_MAX_STOP_IDS) return bad(s, key, "has too many ids");
        for (const cJSON *it = v->child; it; it = it->next) {
            if (int_value(it, 0, vocab - 1, &id) != 0) return bad(s, key, "holds an id outside the vocabulary");
            ids[(*n)++] = id;
        }
        return 0;
    }
    if (int_value(v, 0, vocab - 1, &id) != 0) return bad(s, key, "must be a token id inside the vocabulary (or a list of them)");
    ids[(*n)++] = id;
    return 0;
}

static int get_token_id(const src *s, const char *key, int vocab, int *out) {
    const cJSON *v = field(s, key);
    *out = -1;
    if (!v) return 0;
    if (int_value(v, 0, vocab - 1, out) != 0) return bad(s, key, "must be a token id inside the vocabulary");
    return 0;
}

static int parse_rope_one(const src *s, const cJSON *o, const char *type_name, g4_rope_params *r) {
    char key[96];
    snprintf(key, sizeof key, "rope_parameters.%s", type_name);
    if (!cJSON_IsObject(o)) return bad(s, key, "must be an object");
    src sub = {o, s->file, "", s->err};
    char pre[128];
    snprintf(pre, sizeof pre, "%srope_parameters.%s.", s->prefix, type_name);
    sub.prefix = pre;
    const cJSON *ty = field(&sub, "rope_type");
    if (ty && !cJSON_IsString(ty)) return bad(&sub, "rope_type", "must be a string");
    if (!ty || strcmp(ty->valuestring, "default") == 0) {
        r->proportional = 0;
    } else if (strcmp(ty->valuestring, "proportional") == 0) {
        r->proportional = 1;
    } else {
        return g4_fail(s->err, GEMMA4C_ERR_UNSUPPORTED, "%s: %srope_type \"%.40s\" is not supported (default, proportional)",
                       s->file, pre, ty->valuestring);
    }
    int rc;
    if ((rc = get_double(&sub, "rope_theta", r->theta, 0.0, 1e12, 1, &r->theta)) != 0) return rc;
    if ((rc = get_double(&sub, "partial_rotary_factor", 1.0, 0.0, 1.0, 1, &r->partial_rotary_factor)) != 0) return rc;
    if ((rc = get_double(&sub, "factor", 1.0, 0.0, 1e6, 1, &r->factor)) != 0) return rc;
    /* Default RoPE with a partial factor rotates a prefix of the dims, a layout this engine does not implement. */
    if (!r->proportional && r->partial_rotary_factor != 1.0)
        return g4_fail(s->err, GEMMA4C_ERR_UNSUPPORTED, "%s: %spartial_rotary_factor with rope_type default is not supported", s->file, pre);
    return 0;
}

static int parse_rope(const src *s, g4_text_config *t) {
    /* Gemma 4's own defaults (configuration_gemma4.py) for each layer type. */
    t->rope[G4_LAYER_SLIDING] = (g4_rope_params){10000.0, 1.0, 1.0, 0};
    t->rope[G4_LAYER_FULL] = (g4_rope_params){1000000.0, 0.25, 1.0, 1};
    const cJSON *rp = field(s, "rope_parameters");
    if (!rp) return 0;
    if (!cJSON_IsObject(rp)) return bad(s, "rope_parameters", "must be an object");
    const cJSON *sl = cJSON_GetObjectItemCaseSensitive(rp, "sliding_attention");
    const cJSON *fu = cJSON_GetObjectItemCaseSensitive(rp, "full_attention");
    int rc;
    if (!sl && !fu) {
        /* A flat rope_parameters applies to every layer. */
        t->rope[G4_LAYER_FULL] = t->rope[G4_LAYER_SLIDING];
        if ((rc = parse_rope_one(s, rp, "sliding_attention", &t->rope[G4_LAYER_SLIDING])) != 0) return rc;
        return parse_rope_one(s, rp, "full_attention", &t->rope[G4_LAYER_FULL]);
    }
    if (sl && (rc = parse_rope_one(s, sl, "sliding_attention", &t->rope[G4_LAYER_SLIDING])) != 0) return rc;
    if (fu && (rc = parse_rope_one(s, fu, "full_attention", &t->rope[G4_LAYER_FULL])) != 0) return rc;
    return 0;
}

static int parse_layer_types(const src *s, g4_text_config *t) {
    int L = t->num_layers;
    const cJSON *lt = field(s, "layer_types");
    if (!lt) {
        for (int l = 0; l < L; l++) t->layer_type[l] = (l % 6 == 5) ? G4_LAYER_FULL : G4_LAYER_SLIDING;
    } else {
        if (!cJSON_IsArray(lt)) return bad(s, "layer_types", "must be a list");
        int n = cJSON_GetArraySize(lt);
        if (n != L) {
            char what[96];
            snprintf(what, sizeof what, "has %d entries but num_hidden_layers is %d", n, L);
            return bad(s, "layer_types", what);
        }
        int l = 0;
        for (const cJSON *it = lt->child; it; it = it->next, l++) {
            if (cJSON_IsString(it) && strcmp(it->valuestring, "sliding_attention") == 0)
                t->layer_type[l] = G4_LAYER_SLIDING;
            else if (cJSON_IsString(it) && strcmp(it->valuestring, "full_attention") == 0)
                t->layer_type[l] = G4_LAYER_FULL;
            else
                return g4_fail(s->err, GEMMA4C_ERR_FORMAT,
                               "config: %slayer_types[%d] must be \"sliding_attention\" or \"full_attention\"", s->prefix, l);
        }
    }
    /* transformers 5.17 forces the last layer to full attention whatever the config says. */
    t->layer_type[L - 1] = G4_LAYER_FULL;
    return 0;
}

static int parse_layer_index(const char *k, int L) {
    if (!k || !k[0] || strlen(k) > 4) return -1;
    int v = 0;
    for (const char *p = k; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    /* transformers writes zero-padded keys ("05") when it saves a per_layer_config. */
    return v < L ? v : -1;
}

/* Head sizes and KV-head counts of every layer: global_head_dim or per_layer_config, and attention_k_eq_v. */
static int parse_attention_geometry(const src *s, g4_text_config *t) {
    int rc, L = t->num_layers;
    int global_kv = 0;
    if (t->attention_k_eq_v) {
        if ((rc = get_int(s, "num_global_key_value_heads", 1, 0, 1, 1024, &global_kv)) != 0) return rc;
    }
    const cJSON *plc = field(s, "per_layer_config");
    int has_global = field(s, "global_head_dim") != NULL;
    if ((rc = get_int(s, "global_head_dim", 0, 512, 2, 8192, &t->global_head_dim)) != 0) return rc;
    for (int l = 0; l < L; l++) {
        int full = t->layer_type[l] == G4_LAYER_FULL;
        /* With per_layer_config (the 5.17 form) unlisted layers keep head_dim unless global_head_dim is explicit. */
        t->layer_head_dim[l] = full && (!plc || has_global) ? t->global_head_dim : t->head_dim;
        t->layer_kv_heads[l] = full && t->attention_k_eq_v ? global_kv : t->num_kv_heads;
    }
    if (plc) {
        if (!cJSON_IsObject(plc)) return bad(s, "per_layer_config", "must be an object");
        for (const cJSON *it = plc->child; it; it = it->next) {
            int l = parse_layer_index(it->string, L);
            if (l < 0)
                return g4_fail(s->err, GEMMA4C_ERR_FORMAT, "config: %sper_layer_config key \"%.20s\" is not a layer index",
                               s->prefix, it->string ? it->string : "");
            if (!cJSON_IsObject(it)) return bad(s, "per_layer_config", "entries must be objects");
            char pre[128];
            snprintf(pre, sizeof pre, "%sper_layer_config.%d.", s->prefix, l);
            src sub = {it, s->file, pre, s->err};
            if ((rc = get_int(&sub, "head_dim", 0, t->layer_head_dim[l], 2, 8192, &t->layer_head_dim[l])) != 0) return rc;
            if ((rc = get_int(&sub, "num_key_value_heads", 0, t->layer_kv_heads[l], 1, 1024, &t->layer_kv_heads[l])) != 0)
                return rc;
        }
    }
    /* RoPE tables are built per layer type, so every layer of a type must share one head size. */
    int first_full = -1;
    for (int l = 0; l < L && first_full < 0; l++)
        if (t->layer_type[l] == G4_LAYER_FULL) first_full = l;
    t->global_head_dim = t->layer_head_dim[first_full];
    for (int l = 0; l < L; l++) {
        int want = t->layer_type[l] == G4_LAYER_FULL ? t->global_head_dim : t->head_dim;
        if (t->layer_head_dim[l] != want)
            return g4_fail(s->err, GEMMA4C_ERR_UNSUPPORTED,
                           "config: layer %d head_dim %d differs from the other %s layers (%d)", l, t->layer_head_dim[l],
                           t->layer_type[l] == G4_LAYER_FULL ? "full-attention" : "sliding", want);
        if (t->layer_head_dim[l] % 2)
            return g4_fail(s->err, GEMMA4C_ERR_FORMAT, "config: layer %d head_dim %d must be even (RoPE rotates pairs)", l,
                           t->layer_head_dim[l]);
        if (t->layer_kv_heads[l] > t->num_heads || t->num_heads % t->layer_kv_heads[l])
            return g4_fail(s->err, GEMMA4C_ERR_FORMAT,
                           "config: %snum_attention_heads (%d) is not a multiple of layer %d's key/value heads (%d)",
                           s->prefix, t->num_heads, l, t->layer_kv_heads[l]);
    }
    return 0;
}

static int parse_text(const src *s, g4_text_config *t) {
    int rc;
    memset(t, 0, sizeof *t);
    if ((rc = get_int(s, "hidden_size", 1, 0, 1, 65536, &t->hidden_size))) return rc;
    if ((rc = get_int(s, "num_hidden_layers", 1, 0, 1, G4_MAX_LAYERS, &t->num_layers))) return rc;
    if ((rc = get_int(s, "intermediate_size", 1, 0, 1, 1 << 20, &t->intermediate_size))) return rc;
    if ((rc = get_int(s, "num_attention_heads", 1, 0, 1, 1024, &t->num_heads))) return rc;
    if ((rc = get_int(s, "num_key_value_heads", 1, 0, 1, 1024, &t->num_kv_heads))) return rc;
    if ((rc = get_int(s, "head_dim", 0, 256, 2, 8192, &t->head_dim))) return rc;
    if ((rc = get_int(s, "vocab_size", 1, 0, 1, 1 << 24, &t->vocab_size))) return rc;
    if ((rc = get_int(s, "vocab_size_per_layer_input", 0, t->vocab_size, 1, 1 << 24, &t->vocab_size_per_layer_input))) return rc;
    if ((rc = get_int(s, "hidden_size_per_layer_input", 0, 256, 0, 65536, &t->ple_dim))) return rc;
    if ((rc = get_int(s, "num_kv_shared_layers", 0, 0, 0, t->num_layers - 1, &t->num_kv_shared_layers))) return rc;
    if ((rc = get_bool(s, "use_double_wide_mlp", 0, &t->use_double_wide_mlp))) return rc;
    if ((rc = get_int(s, "sliding_window", 0, 512, 1, 1 << 26, &t->sliding_window))) return rc;
    if ((rc = get_int(s, "max_position_embeddings", 0, 131072, 1, 1 << 26, &t->max_position_embeddings))) return rc;
    if ((rc = get_bool(s, "attention_k_eq_v", 0, &t->attention_k_eq_v))) return rc;
    if ((rc = get_bool(s, "tie_word_embeddings", 1, &t->tie_word_embeddings))) return rc;
    if ((rc = get_double(s, "rms_norm_eps", 1e-6, 0.0, 1.0, 1, &t->rms_norm_eps))) return rc;
    if ((rc = get_double(s, "final_logit_softcapping", 0.0, 0.0, 1e9, 0, &t->final_logit_softcapping))) return rc;
    if (t->num_kv_heads > t->num_heads || t->num_heads % t->num_kv_heads)
        return bad(s, "num_attention_heads", "is not a multiple of num_key_value_heads");

    const cJSON *act = field(s, "hidden_activation");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu_pytorch_tanh") != 0))
        return g4_fail(s->err, GEMMA4C_ERR_UNSUPPORTED, "config: %shidden_activation must be gelu_pytorch_tanh", s->prefix);
    int moe = 0;
    if ((rc = get_bool(s, "enable_moe_block", 0, &moe))) return rc;
    if (moe) return g4_fail(s->err, GEMMA4C_ERR_UNSUPPORTED, "config: %senable_moe_block (mixture of experts) is not supported", s->prefix);

    const cJSON *bidi = field(s, "use_bidirectional_attention");
    t->use_bidirectional_attention = G4_BIDI_NONE;
    if (bidi) {
        if (cJSON_IsString(bidi) && strcmp(bidi->valuestring, "vision") == 0)
            t->use_bidirectional_attention = G4_BIDI_VISION;
        else if (cJSON_IsString(bidi) && strcmp(bidi->valuestring, "all") == 0)
            t->use_bidirectional_attention = G4_BIDI_ALL;
        else if (!cJSON_IsFalse(bidi))
            return bad(s, "use_bidirectional_attention", "must be null, \"vision\" or \"all\"");
    }

    int32_t eos[G4_MAX_STOP_IDS];
    int n_eos = 0;
    if ((rc = get_int(s, "pad_token_id", 0, 0, 0, t->vocab_size - 1, &t->pad_token_id))) return rc;
    if ((rc = get_int(s, "bos_token_id", 0, 2 < t->vocab_size ? 2 : 0, 0, t->vocab_size - 1, &t->bos_token_id))) return rc;
    if ((rc = get_id_list(s, "eos_token_id", t->vocab_size, eos, &n_eos))) return rc;
    t->eos_token_id = n_eos ? eos[0] : (1 < t->vocab_size ? 1 : 0);

    if ((rc = parse_rope(s, t))) return rc;
    if ((rc = parse_layer_types(s, t))) return rc;
    if ((rc = parse_attention_geometry(s, t))) return rc;

    int L = t->num_layers;
    t->first_kv_shared = L - t->num_kv_shared_layers;
    for (int l = 0; l < L; l++) {
        t->kv_donor[l] = l;
        t->layer_intermediate[l] = t->intermediate_size;
        if (l < t->first_kv_shared) continue;
        /* The last non-shared layer of the same type publishes its K/V to the shared layers. */
        int donor = -1;
        for (int j = t->first_kv_shared - 1; j >= 0 && donor < 0; j--)
            if (t->layer_type[j] == t->layer_type[l]) donor = j;
        if (donor < 0)
            return g4_fail(s->err, GEMMA4C_ERR_FORMAT,
                           "config: %snum_kv_shared_layers: shared layer %d has no earlier %s layer to take K/V from", s->prefix,
                           l, t->layer_type[l] == G4_LAYER_FULL ? "full-attention" : "sliding");
        t->kv_donor[l] = donor;
        if (t->use_double_wide_mlp) t->layer_intermediate[l] = 2 * t->intermediate_size;
    }
    return 0;
}

/* The caller's text need not be NUL-terminated (fuzzer input, mapped files); a terminated copy keeps the JSON
 * parser from ever looking past `len`. NULL for invalid JSON, trailing garbage, or no memory. */
static cJSON *parse_json(const char *json, size_t len) {
    if (!json || len > CFG_MAX_FILE) return NULL;
    char *copy = malloc(len + 1);
    if (!copy) return NULL;
    memcpy(copy, json, len);
    copy[len] = '\0';
    cJSON *root = cJSON_ParseWithLengthOpts(copy, len + 1, NULL, 1);
    if (root && strlen(copy) != len) {
        /* An embedded NUL would silently cut the document short. */
        cJSON_Delete(root);
        root = NULL;
    }
    free(copy);
    return root;
}

void g4_config_free(g4_model_config *c) {
    if (!c) return;
    free(c->vision_json);
    free(c->audio_json);
    c->vision_json = NULL;
    c->audio_json = NULL;
}

static int keep_json(const src *s, const char *key, int *has, char **out) {
    const cJSON *v = field(s, key);
    *has = 0;
    *out = NULL;
    if (!v) return 0;
    if (!cJSON_IsObject(v)) return bad(s, key, "must be an object or null");
    *has = 1;
    *out = cJSON_PrintUnformatted(v);
    if (!*out) return g4_fail(s->err, GEMMA4C_ERR_NOMEM, "config: out of memory copying %s", key);
    return 0;
}

int g4_config_parse(const char *json, size_t len, g4_model_config *out, g4_err *err) {
    memset(out, 0, sizeof *out);
    cJSON *root = parse_json(json, len);
    if (!root) return g4_fail(err, GEMMA4C_ERR_FORMAT, "config: not valid JSON");
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "config: top level is not a JSON object");
        goto done;
    }
    src top = {root, "config", "", err};
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    src text = top;
    if (tc) {
        if (!cJSON_IsObject(tc)) {
            rc = bad(&top, "text_config", "must be an object");
            goto done;
        }
        text.obj = tc;
        text.prefix = "text_config.";
    } else if (cJSON_IsString(mt) && strcmp(mt->valuestring, "gemma4_text") != 0) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "config: model_type \"%.40s\" without text_config (expected gemma4 or gemma4_text)",
                     mt->valuestring);
        goto done;
    }
    if ((rc = parse_text(&text, &out->text)) != 0) goto done;
    int vocab = out->text.vocab_size;

    if (tc) {
        /* The text section's tie flag rules; the top level is the fallback some exporters use. */
        if (!field(&text, "tie_word_embeddings") &&
            (rc = get_bool(&top, "tie_word_embeddings", 1, &out->text.tie_word_embeddings)) != 0)
            goto done;
    }
    if ((rc = get_token_id(&top, "boi_token_id", vocab, &out->boi_token_id))) goto done;
    if ((rc = get_token_id(&top, "eoi_token_id", vocab, &out->eoi_token_id))) goto done;
    if ((rc = get_token_id(&top, "image_token_id", vocab, &out->image_token_id))) goto done;
    if ((rc = get_token_id(&top, "video_token_id", vocab, &out->video_token_id))) goto done;
    if ((rc = get_token_id(&top, "boa_token_id", vocab, &out->boa_token_id))) goto done;
    if ((rc = get_token_id(&top, "audio_token_id", vocab, &out->audio_token_id))) goto done;
    /* 5.17 spells it eoa_token_index; accept the regular spelling too. */
    if ((rc = get_token_id(&top, "eoa_token_index", vocab, &out->eoa_token_id))) goto done;
    if (out->eoa_token_id < 0 && (rc = get_token_id(&top, "eoa_token_id", vocab, &out->eoa_token_id))) goto done;

    if ((rc = get_id_list(&top, "eos_token_id", vocab, out->eos_ids, &out->n_eos))) goto done;
    if (out->n_eos == 0 && tc && (rc = get_id_list(&text, "eos_token_id", vocab, out->eos_ids, &out->n_eos))) goto done;
    if (out->n_eos == 0) {
        out->eos_ids[0] = out->text.eos_token_id;
        out->n_eos = 1;
    }

    if ((rc = keep_json(&top, "vision_config", &out->has_vision, &out->vision_json))) goto done;
    if ((rc = keep_json(&top, "audio_config", &out->has_audio, &out->audio_json))) goto done;
done:
    cJSON_Delete(root);
    if (rc != 0) g4_config_free(out);
    return rc;
}

int g4_config_load(const char *path, g4_model_config *out, g4_err *err) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    int rc = g4_read_file(path, CFG_MAX_FILE, &text, &len, err);
    if (rc != 0) return rc;
    rc = g4_config_parse(text, len, out, err);
    free(text);
    if (rc != 0) g4_err_prefix(err, "%s", path);
    return rc;
}

void g4_generation_config_default(g4_generation_config *g) {
    memset(g, 0, sizeof *g);
    g->bos_token_id = -1;
    g->pad_token_id = -1;
    g->n_eos = 0;
    g->do_sample = 0;
    g->temperature = 1.0;
    g->top_k = 0;
    g->top_p = 1.0;
    g->min_p = 0.0;
    g->repetition_penalty = 1.0;
}

int g4_generation_config_parse(const char *json, size_t len, g4_generation_config *out, g4_err *err) {
    g4_generation_config_default(out);
    cJSON *root = parse_json(json, len);
    if (!root) return g4_fail(err, GEMMA4C_ERR_FORMAT, "generation_config: not valid JSON");
    int rc = 0;
    src s = {root, "generation_config", "", err};
    /* Ids are checked against the widest vocabulary Gemma uses here; the model checks them against its own. */
    const int max_vocab = 1 << 24;
    if (!cJSON_IsObject(root)) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "generation_config: top level is not a JSON object");
        goto done;
    }
    if ((rc = get_int(&s, "bos_token_id", 0, -1, 0, max_vocab - 1, &out->bos_token_id))) goto done;
    if ((rc = get_int(&s, "pad_token_id", 0, -1, 0, max_vocab - 1, &out->pad_token_id))) goto done;
    if ((rc = get_id_list(&s, "eos_token_id", max_vocab, out->eos_ids, &out->n_eos))) goto done;
    if ((rc = get_bool(&s, "do_sample", 0, &out->do_sample))) goto done;
    if ((rc = get_double(&s, "temperature", 1.0, 0.0, 1e6, 0, &out->temperature))) goto done;
    if ((rc = get_int(&s, "top_k", 0, 0, 0, max_vocab, &out->top_k))) goto done;
    if ((rc = get_double(&s, "top_p", 1.0, 0.0, 1.0, 0, &out->top_p))) goto done;
    if ((rc = get_double(&s, "min_p", 0.0, 0.0, 1.0, 0, &out->min_p))) goto done;
    if ((rc = get_double(&s, "repetition_penalty", 1.0, 0.0, 1e6, 1, &out->repetition_penalty))) goto done;
done:
    cJSON_Delete(root);
    if (rc != 0) {
        g4_generation_config_default(out);
    }
    return rc;
}

int g4_generation_config_load(const char *path, g4_generation_config *out, g4_err *err) {
    g4_generation_config_default(out);
    char *text;
    size_t len;
    int rc = g4_read_file(path, CFG_MAX_FILE, &text, &len, err);
    if (rc != 0) return rc;
    rc = g4_generation_config_parse(text, len, out, err);
    free(text);
    if (rc != 0) g4_err_prefix(err, "%s", path);
    return rc;
}
