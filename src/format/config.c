/* config.c — parsing and range-checking of Gemma 4 config.json / generation_config.json into fixed structs. */
#include "format/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/mapfile.h"

#define CFG_MAX_FILE ((size_t)16 * 1024 * 1024)

static int parse_rope_one(const g4_json_obj *s, const cJSON *o, const char *type_name, g4_rope_params *r,
                          g4_err *err) {
    char key[96];
    snprintf(key, sizeof key, "rope_parameters.%s", type_name);
    if (!cJSON_IsObject(o)) return g4_json_fail(s, key, "must be an object", err);
    char pre[128];
    g4_json_obj sub = g4_json_sub(s, o, key, pre, sizeof pre);
    const cJSON *ty = g4_json_field(&sub, "rope_type");
    if (ty && !cJSON_IsString(ty)) return g4_json_fail(&sub, "rope_type", "must be a string", err);
    if (!ty || strcmp(ty->valuestring, "default") == 0) {
        r->proportional = 0;
    } else if (strcmp(ty->valuestring, "proportional") == 0) {
        r->proportional = 1;
    } else {
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: %srope_type \"%.40s\" is not supported (default, proportional)",
                       s->file, pre, ty->valuestring);
    }
    int rc;
    if ((rc = g4_json_double(&sub, "rope_theta", r->theta, 0.0, 1e12, 1, &r->theta, err)) != 0) return rc;
    if ((rc = g4_json_double(&sub, "partial_rotary_factor", 1.0, 0.0, 1.0, 1, &r->partial_rotary_factor, err)) != 0)
        return rc;
    if ((rc = g4_json_double(&sub, "factor", 1.0, 0.0, 1e6, 1, &r->factor, err)) != 0) return rc;
    /* Default RoPE with a partial factor rotates a prefix of the dims, a layout this engine does not implement. */
    if (!r->proportional && r->partial_rotary_factor != 1.0)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: %spartial_rotary_factor with rope_type default is not supported", s->file, pre);
    return 0;
}

static int parse_rope(const g4_json_obj *s, g4_text_config *t, g4_err *err) {
    /* Gemma 4's own defaults (configuration_gemma4.py) for each layer type. */
    t->rope[G4_LAYER_SLIDING] = (g4_rope_params){10000.0, 1.0, 1.0, 0};
    t->rope[G4_LAYER_FULL] = (g4_rope_params){1000000.0, 0.25, 1.0, 1};
    const cJSON *rp = g4_json_field(s, "rope_parameters");
    if (!rp) return 0;
    if (!cJSON_IsObject(rp)) return g4_json_fail(s, "rope_parameters", "must be an object", err);
    const cJSON *sl = cJSON_GetObjectItemCaseSensitive(rp, "sliding_attention");
    const cJSON *fu = cJSON_GetObjectItemCaseSensitive(rp, "full_attention");
    int rc;
    if (!sl && !fu) {
        /* A flat rope_parameters applies to every layer. */
        t->rope[G4_LAYER_FULL] = t->rope[G4_LAYER_SLIDING];
        if ((rc = parse_rope_one(s, rp, "sliding_attention", &t->rope[G4_LAYER_SLIDING], err)) != 0) return rc;
        return parse_rope_one(s, rp, "full_attention", &t->rope[G4_LAYER_FULL], err);
    }
    if (sl && (rc = parse_rope_one(s, sl, "sliding_attention", &t->rope[G4_LAYER_SLIDING], err)) != 0) return rc;
    if (fu && (rc = parse_rope_one(s, fu, "full_attention", &t->rope[G4_LAYER_FULL], err)) != 0) return rc;
    return 0;
}

static int parse_layer_types(const g4_json_obj *s, g4_text_config *t, g4_err *err) {
    int L = t->num_layers;
    const cJSON *lt = g4_json_field(s, "layer_types");
    if (!lt) {
        for (int l = 0; l < L; l++) t->layer_type[l] = (l % 6 == 5) ? G4_LAYER_FULL : G4_LAYER_SLIDING;
    } else {
        if (!cJSON_IsArray(lt)) return g4_json_fail(s, "layer_types", "must be a list", err);
        int n = cJSON_GetArraySize(lt);
        if (n != L) {
            char what[96];
            snprintf(what, sizeof what, "has %d entries but num_hidden_layers is %d", n, L);
            return g4_json_fail(s, "layer_types", what, err);
        }
        int l = 0;
        for (const cJSON *it = lt->child; it; it = it->next, l++) {
            if (cJSON_IsString(it) && strcmp(it->valuestring, "sliding_attention") == 0)
                t->layer_type[l] = G4_LAYER_SLIDING;
            else if (cJSON_IsString(it) && strcmp(it->valuestring, "full_attention") == 0)
                t->layer_type[l] = G4_LAYER_FULL;
            else
                return g4_fail(err, GEMMA4C_ERR_FORMAT,
                               "config: %slayer_types[%d] must be \"sliding_attention\" or \"full_attention\"", s->path, l);
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

/* Head sizes and KV-head counts of every layer: global_head_dim or per_layer_config, and attention_k_eq_v (which
 * the reference applies to full-attention layers only: sliding layers keep their v_proj and kv heads). */
static int parse_attention_geometry(const g4_json_obj *s, g4_text_config *t, g4_err *err) {
    int rc, L = t->num_layers;
    int global_kv = 0;
    if (t->attention_k_eq_v) {
        if ((rc = g4_json_int_required(s, "num_global_key_value_heads", 1, 1024, &global_kv, err)) != 0) return rc;
    }
    const cJSON *plc = g4_json_field(s, "per_layer_config");
    int has_global = g4_json_field(s, "global_head_dim") != NULL;
    if ((rc = g4_json_int(s, "global_head_dim", 512, 2, 8192, &t->global_head_dim, err)) != 0) return rc;
    for (int l = 0; l < L; l++) {
        int full = t->layer_type[l] == G4_LAYER_FULL;
        /* With per_layer_config (the 5.17 form) unlisted layers keep head_dim unless global_head_dim is explicit. */
        t->layer_head_dim[l] = full && (!plc || has_global) ? t->global_head_dim : t->head_dim;
        t->layer_k_is_v[l] = (uint8_t)(full && t->attention_k_eq_v);
        t->layer_kv_heads[l] = t->layer_k_is_v[l] ? global_kv : t->num_kv_heads;
    }
    if (plc) {
        if (!cJSON_IsObject(plc)) return g4_json_fail(s, "per_layer_config", "must be an object", err);
        for (const cJSON *it = plc->child; it; it = it->next) {
            int l = parse_layer_index(it->string, L);
            if (l < 0)
                return g4_fail(err, GEMMA4C_ERR_FORMAT, "config: %sper_layer_config key \"%.20s\" is not a layer index",
                               s->path, it->string ? it->string : "");
            if (!cJSON_IsObject(it)) return g4_json_fail(s, "per_layer_config", "entries must be objects", err);
            char key[32], pre[128];
            snprintf(key, sizeof key, "per_layer_config.%d", l);
            g4_json_obj sub = g4_json_sub(s, it, key, pre, sizeof pre);
            if ((rc = g4_json_int(&sub, "head_dim", t->layer_head_dim[l], 2, 8192, &t->layer_head_dim[l], err)) != 0 ||
                (rc = g4_json_int(&sub, "num_key_value_heads", t->layer_kv_heads[l], 1, 1024, &t->layer_kv_heads[l],
                                  err)) != 0)
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
            return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED,
                           "config: layer %d head_dim %d differs from the other %s layers (%d)", l, t->layer_head_dim[l],
                           t->layer_type[l] == G4_LAYER_FULL ? "full-attention" : "sliding", want);
        if (t->layer_head_dim[l] % 2)
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "config: layer %d head_dim %d must be even (RoPE rotates pairs)", l,
                           t->layer_head_dim[l]);
        if (t->layer_kv_heads[l] > t->num_heads || t->num_heads % t->layer_kv_heads[l])
            return g4_fail(err, GEMMA4C_ERR_FORMAT,
                           "config: %snum_attention_heads (%d) is not a multiple of layer %d's key/value heads (%d)",
                           s->path, t->num_heads, l, t->layer_kv_heads[l]);
    }
    return 0;
}

static int parse_text(const g4_json_obj *s, g4_text_config *t, g4_err *err) {
    int rc;
    memset(t, 0, sizeof *t);
    if ((rc = g4_json_int_required(s, "hidden_size", 1, 65536, &t->hidden_size, err))) return rc;
    if ((rc = g4_json_int_required(s, "num_hidden_layers", 1, G4_MAX_LAYERS, &t->num_layers, err))) return rc;
    if ((rc = g4_json_int_required(s, "intermediate_size", 1, 1 << 20, &t->intermediate_size, err))) return rc;
    if ((rc = g4_json_int_required(s, "num_attention_heads", 1, 1024, &t->num_heads, err))) return rc;
    if ((rc = g4_json_int_required(s, "num_key_value_heads", 1, 1024, &t->num_kv_heads, err))) return rc;
    if ((rc = g4_json_int(s, "head_dim", 256, 2, 8192, &t->head_dim, err))) return rc;
    if ((rc = g4_json_int_required(s, "vocab_size", 1, 1 << 24, &t->vocab_size, err))) return rc;
    if ((rc = g4_json_int(s, "vocab_size_per_layer_input", t->vocab_size, 1, 1 << 24, &t->vocab_size_per_layer_input,
                          err)))
        return rc;
    if ((rc = g4_json_int(s, "hidden_size_per_layer_input", 256, 0, 65536, &t->ple_dim, err))) return rc;
    if ((rc = g4_json_int(s, "num_kv_shared_layers", 0, 0, t->num_layers - 1, &t->num_kv_shared_layers, err))) return rc;
    if ((rc = g4_json_bool(s, "use_double_wide_mlp", 0, &t->use_double_wide_mlp, err))) return rc;
    if ((rc = g4_json_int(s, "sliding_window", 512, 1, 1 << 26, &t->sliding_window, err))) return rc;
    if ((rc = g4_json_int(s, "max_position_embeddings", 131072, 1, 1 << 26, &t->max_position_embeddings, err)))
        return rc;
    if ((rc = g4_json_bool(s, "attention_k_eq_v", 0, &t->attention_k_eq_v, err))) return rc;
    if ((rc = g4_json_bool(s, "tie_word_embeddings", 1, &t->tie_word_embeddings, err))) return rc;
    if ((rc = g4_json_double(s, "rms_norm_eps", 1e-6, 0.0, 1.0, 1, &t->rms_norm_eps, err))) return rc;
    if ((rc = g4_json_double(s, "final_logit_softcapping", 0.0, 0.0, 1e9, 0, &t->final_logit_softcapping, err)))
        return rc;
    if (t->num_kv_heads > t->num_heads || t->num_heads % t->num_kv_heads)
        return g4_json_fail(s, "num_attention_heads", "is not a multiple of num_key_value_heads", err);

    const cJSON *act = g4_json_field(s, "hidden_activation");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu_pytorch_tanh") != 0))
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "config: %shidden_activation must be gelu_pytorch_tanh", s->path);
    int moe = 0;
    if ((rc = g4_json_bool(s, "enable_moe_block", 0, &moe, err))) return rc;
    if (moe) return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "config: %senable_moe_block (mixture of experts) is not supported", s->path);

    const cJSON *bidi = g4_json_field(s, "use_bidirectional_attention");
    t->use_bidirectional_attention = G4_BIDI_NONE;
    if (bidi) {
        if (cJSON_IsString(bidi) && strcmp(bidi->valuestring, "vision") == 0)
            t->use_bidirectional_attention = G4_BIDI_VISION;
        else if (cJSON_IsString(bidi) && strcmp(bidi->valuestring, "all") == 0)
            t->use_bidirectional_attention = G4_BIDI_ALL;
        else if (!cJSON_IsFalse(bidi))
            return g4_json_fail(s, "use_bidirectional_attention", "must be null, \"vision\" or \"all\"", err);
    }

    int32_t eos[G4_MAX_STOP_IDS];
    int n_eos = 0;
    if ((rc = g4_json_int(s, "pad_token_id", 0, 0, t->vocab_size - 1, &t->pad_token_id, err))) return rc;
    if ((rc = g4_json_int(s, "bos_token_id", 2 < t->vocab_size ? 2 : 0, 0, t->vocab_size - 1, &t->bos_token_id, err)))
        return rc;
    if ((rc = g4_json_id_list(s, "eos_token_id", t->vocab_size, G4_MAX_STOP_IDS, eos, &n_eos, err))) return rc;
    t->eos_token_id = n_eos ? eos[0] : (1 < t->vocab_size ? 1 : 0);

    if ((rc = parse_rope(s, t, err))) return rc;
    if ((rc = parse_layer_types(s, t, err))) return rc;
    if ((rc = parse_attention_geometry(s, t, err))) return rc;

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
            return g4_fail(err, GEMMA4C_ERR_FORMAT,
                           "config: %snum_kv_shared_layers: shared layer %d has no earlier %s layer to take K/V from", s->path,
                           l, t->layer_type[l] == G4_LAYER_FULL ? "full-attention" : "sliding");
        t->kv_donor[l] = donor;
        if (t->use_double_wide_mlp) t->layer_intermediate[l] = 2 * t->intermediate_size;
    }
    return 0;
}

void g4_config_free(g4_model_config *c) {
    if (!c) return;
    free(c->vision_json);
    free(c->audio_json);
    c->vision_json = NULL;
    c->audio_json = NULL;
}

static int keep_json(const g4_json_obj *s, const char *key, int *has, char **out, g4_err *err) {
    const cJSON *v = g4_json_field(s, key);
    *has = 0;
    *out = NULL;
    if (!v) return 0;
    if (!cJSON_IsObject(v)) return g4_json_fail(s, key, "must be an object or null", err);
    *has = 1;
    *out = cJSON_PrintUnformatted(v);
    if (!*out) return g4_fail(err, GEMMA4C_ERR_NOMEM, "config: out of memory copying %s", key);
    return 0;
}

int g4_config_parse(const char *json, size_t len, g4_model_config *out, g4_err *err) {
    memset(out, 0, sizeof *out);
    cJSON *root = g4_json_parse(json, len, CFG_MAX_FILE);
    if (!root) return g4_fail(err, GEMMA4C_ERR_FORMAT, "config: not valid JSON");
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "config: top level is not a JSON object");
        goto done;
    }
    g4_json_obj top = {root, "config", ""};
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    g4_json_obj text = top;
    if (tc) {
        if (!cJSON_IsObject(tc)) {
            rc = g4_json_fail(&top, "text_config", "must be an object", err);
            goto done;
        }
        text.obj = tc;
        text.path = "text_config.";
    } else if (cJSON_IsString(mt) && strcmp(mt->valuestring, "gemma4_text") != 0) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "config: model_type \"%.40s\" without text_config (expected gemma4 or gemma4_text)",
                     mt->valuestring);
        goto done;
    }
    if ((rc = parse_text(&text, &out->text, err)) != 0) goto done;
    int vocab = out->text.vocab_size;

    if (tc) {
        /* The text section's tie flag rules; the top level is the fallback some exporters use. */
        if (!g4_json_field(&text, "tie_word_embeddings") &&
            (rc = g4_json_bool(&top, "tie_word_embeddings", 1, &out->text.tie_word_embeddings, err)) != 0)
            goto done;
    }
    if ((rc = g4_json_id(&top, "boi_token_id", vocab, &out->boi_token_id, err))) goto done;
    if ((rc = g4_json_id(&top, "eoi_token_id", vocab, &out->eoi_token_id, err))) goto done;
    if ((rc = g4_json_id(&top, "image_token_id", vocab, &out->image_token_id, err))) goto done;
    if ((rc = g4_json_id(&top, "video_token_id", vocab, &out->video_token_id, err))) goto done;
    if ((rc = g4_json_id(&top, "boa_token_id", vocab, &out->boa_token_id, err))) goto done;
    if ((rc = g4_json_id(&top, "audio_token_id", vocab, &out->audio_token_id, err))) goto done;
    /* 5.17 spells it eoa_token_index; accept the regular spelling too. */
    if ((rc = g4_json_id(&top, "eoa_token_index", vocab, &out->eoa_token_id, err))) goto done;
    if (out->eoa_token_id < 0 && (rc = g4_json_id(&top, "eoa_token_id", vocab, &out->eoa_token_id, err))) goto done;

    if ((rc = g4_json_id_list(&top, "eos_token_id", vocab, G4_MAX_STOP_IDS, out->eos_ids, &out->n_eos, err)))
        goto done;
    if (out->n_eos == 0 && tc &&
        (rc = g4_json_id_list(&text, "eos_token_id", vocab, G4_MAX_STOP_IDS, out->eos_ids, &out->n_eos, err)))
        goto done;
    if (out->n_eos == 0) {
        out->eos_ids[0] = out->text.eos_token_id;
        out->n_eos = 1;
    }

    if ((rc = keep_json(&top, "vision_config", &out->has_vision, &out->vision_json, err))) goto done;
    if ((rc = keep_json(&top, "audio_config", &out->has_audio, &out->audio_json, err))) goto done;
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
    cJSON *root = g4_json_parse(json, len, CFG_MAX_FILE);
    if (!root) return g4_fail(err, GEMMA4C_ERR_FORMAT, "generation_config: not valid JSON");
    int rc = 0;
    g4_json_obj s = {root, "generation_config", ""};
    /* Ids are checked against the widest vocabulary Gemma uses here; the model checks them against its own. */
    const int max_vocab = 1 << 24;
    if (!cJSON_IsObject(root)) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "generation_config: top level is not a JSON object");
        goto done;
    }
    if ((rc = g4_json_int(&s, "bos_token_id", -1, 0, max_vocab - 1, &out->bos_token_id, err))) goto done;
    if ((rc = g4_json_int(&s, "pad_token_id", -1, 0, max_vocab - 1, &out->pad_token_id, err))) goto done;
    if ((rc = g4_json_id_list(&s, "eos_token_id", max_vocab, G4_MAX_STOP_IDS, out->eos_ids, &out->n_eos, err)))
        goto done;
    if ((rc = g4_json_bool(&s, "do_sample", 0, &out->do_sample, err))) goto done;
    if ((rc = g4_json_double(&s, "temperature", 1.0, 0.0, 1e6, 0, &out->temperature, err))) goto done;
    if ((rc = g4_json_int(&s, "top_k", 0, 0, max_vocab, &out->top_k, err))) goto done;
    if ((rc = g4_json_double(&s, "top_p", 1.0, 0.0, 1.0, 0, &out->top_p, err))) goto done;
    if ((rc = g4_json_double(&s, "min_p", 0.0, 0.0, 1.0, 0, &out->min_p, err))) goto done;
    if ((rc = g4_json_double(&s, "repetition_penalty", 1.0, 0.0, 1e6, 1, &out->repetition_penalty, err))) goto done;
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
