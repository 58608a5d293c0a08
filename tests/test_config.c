/* test_config.c — config.json / generation_config.json parsing: golden tiny config, alternative forms, E2B/E4B, hostile input. */
#include <cjson/cJSON.h>

#include "core/mapfile.h"
#include "format/config.h"
#include "test.h"

static int parse_str(const char *json, g4_model_config *c, g4_err *err) {
    return g4_config_parse(json, strlen(json), c, err);
}

/* Parses a cJSON tree (consumed) and returns the parse result. */
static int parse_tree(cJSON *root, g4_model_config *c, g4_err *err) {
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    int rc = parse_str(s, c, err);
    free(s);
    return rc;
}

static void check_tables_equal(const g4_text_config *a, const g4_text_config *b, const char *what) {
    CHECK(a->num_layers == b->num_layers, "%s: num_layers", what);
    CHECK(a->head_dim == b->head_dim && a->global_head_dim == b->global_head_dim, "%s: head dims %d/%d vs %d/%d", what,
          a->head_dim, a->global_head_dim, b->head_dim, b->global_head_dim);
    CHECK(a->first_kv_shared == b->first_kv_shared, "%s: first_kv_shared", what);
    for (int l = 0; l < a->num_layers; l++) {
        CHECK(a->layer_type[l] == b->layer_type[l], "%s: layer_type[%d]", what, l);
        CHECK(a->layer_head_dim[l] == b->layer_head_dim[l], "%s: layer_head_dim[%d] %d vs %d", what, l,
              a->layer_head_dim[l], b->layer_head_dim[l]);
        CHECK(a->layer_kv_heads[l] == b->layer_kv_heads[l], "%s: layer_kv_heads[%d]", what, l);
        CHECK(a->layer_intermediate[l] == b->layer_intermediate[l], "%s: layer_intermediate[%d]", what, l);
        CHECK(a->kv_donor[l] == b->kv_donor[l], "%s: kv_donor[%d]", what, l);
    }
    CHECK(memcmp(a->rope, b->rope, sizeof a->rope) == 0, "%s: rope", what);
}

static void test_golden(const char *golden, g4_model_config *out_cfg, char **out_text) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny/checkpoint/config.json", golden);
    g4_err err = {0};
    g4_model_config c;
    int rc = g4_config_load(path, &c, &err);
    CHECK(rc == 0, "load golden config: %s", err.msg);
    if (rc != 0) return;
    const g4_text_config *t = &c.text;
    CHECK(t->hidden_size == 64, "hidden_size %d", t->hidden_size);
    CHECK(t->num_layers == 8, "num_layers %d", t->num_layers);
    CHECK(t->intermediate_size == 128, "intermediate %d", t->intermediate_size);
    CHECK(t->num_heads == 4 && t->num_kv_heads == 2, "heads %d/%d", t->num_heads, t->num_kv_heads);
    CHECK(t->head_dim == 16 && t->global_head_dim == 32, "head dims %d/%d", t->head_dim, t->global_head_dim);
    CHECK(t->vocab_size == 512 && t->vocab_size_per_layer_input == 512, "vocab %d", t->vocab_size);
    CHECK(t->ple_dim == 8, "ple_dim %d", t->ple_dim);
    CHECK(t->num_kv_shared_layers == 3 && t->first_kv_shared == 5, "first_kv_shared %d", t->first_kv_shared);
    CHECK(t->use_double_wide_mlp == 1, "double wide");
    CHECK(t->sliding_window == 8, "sliding_window %d", t->sliding_window);
    CHECK(t->max_position_embeddings == 4096, "max_pos");
    CHECK(t->attention_k_eq_v == 0, "k_eq_v");
    for (int l = 0; l < 8; l++) CHECK(t->layer_k_is_v[l] == 0, "layer_k_is_v[%d]", l);
    CHECK(t->use_bidirectional_attention == G4_BIDI_NONE, "bidi");
    CHECK(t->tie_word_embeddings == 1, "tie");
    CHECK(t->rms_norm_eps == 1e-6, "eps %g", t->rms_norm_eps);
    CHECK(t->final_logit_softcapping == 30.0, "softcap %g", t->final_logit_softcapping);
    CHECK(t->pad_token_id == 0 && t->bos_token_id == 2 && t->eos_token_id == 1, "text ids");
    const uint8_t types[8] = {0, 0, 0, 1, 0, 0, 0, 1};
    const int donors[8] = {0, 1, 2, 3, 4, 4, 4, 3};
    for (int l = 0; l < 8; l++) {
        CHECK(t->layer_type[l] == types[l], "layer_type[%d]", l);
        CHECK(t->layer_head_dim[l] == (types[l] ? 32 : 16), "layer_head_dim[%d] %d", l, t->layer_head_dim[l]);
        CHECK(t->layer_kv_heads[l] == 2, "layer_kv_heads[%d]", l);
        CHECK(t->layer_intermediate[l] == (l >= 5 ? 256 : 128), "layer_intermediate[%d] %d", l, t->layer_intermediate[l]);
        CHECK(t->kv_donor[l] == donors[l], "kv_donor[%d] = %d", l, t->kv_donor[l]);
    }
    CHECK(t->rope[G4_LAYER_SLIDING].theta == 10000.0 && !t->rope[G4_LAYER_SLIDING].proportional &&
              t->rope[G4_LAYER_SLIDING].partial_rotary_factor == 1.0 && t->rope[G4_LAYER_SLIDING].factor == 1.0,
          "sliding rope");
    CHECK(t->rope[G4_LAYER_FULL].theta == 1e6 && t->rope[G4_LAYER_FULL].proportional &&
              t->rope[G4_LAYER_FULL].partial_rotary_factor == 0.25 && t->rope[G4_LAYER_FULL].factor == 1.0,
          "full rope");
    CHECK(c.boi_token_id == 500 && c.eoi_token_id == 501 && c.image_token_id == 502 && c.video_token_id == 503,
          "image ids");
    CHECK(c.boa_token_id == 504 && c.eoa_token_id == 505 && c.audio_token_id == 506, "audio ids");
    CHECK(c.n_eos == 2 && c.eos_ids[0] == 1 && c.eos_ids[1] == 106, "eos ids n=%d", c.n_eos);
    CHECK(c.has_vision && c.has_audio, "towers");
    CHECK(c.vision_json && strstr(c.vision_json, "\"pooling_kernel_size\":3"), "vision_json");
    CHECK(c.audio_json && strstr(c.audio_json, "\"output_proj_dims\":48"), "audio_json");
    *out_cfg = c;

    char *text = NULL;
    CHECK(g4_read_file(path, 1 << 20, &text, NULL, &err) == 0, "read: %s", err.msg);
    *out_text = text;
}

/* The golden config rewritten as transformers 5.17 saves it: per_layer_config instead of global_head_dim. */
static void test_per_layer_form(const char *text, const g4_model_config *ref) {
    cJSON *root = cJSON_Parse(text);
    cJSON *tc = cJSON_GetObjectItem(root, "text_config");
    cJSON_DeleteItemFromObject(tc, "global_head_dim");
    cJSON *plc = cJSON_AddObjectToObject(tc, "per_layer_config");
    cJSON *l3 = cJSON_AddObjectToObject(plc, "3");
    cJSON_AddNumberToObject(l3, "head_dim", 32);
    cJSON *l7 = cJSON_AddObjectToObject(plc, "7");
    cJSON_AddNumberToObject(l7, "head_dim", 32);
    cJSON_AddNumberToObject(l7, "num_key_value_heads", 2);
    g4_model_config c;
    g4_err err = {0};
    int rc = parse_tree(root, &c, &err);
    CHECK(rc == 0, "per_layer_config form: %s", err.msg);
    if (rc != 0) return;
    check_tables_equal(&c.text, &ref->text, "per_layer_config form");
    g4_config_free(&c);

    /* Same, with eoa_token_id spelled the regular way and the towers null. */
    root = cJSON_Parse(text);
    cJSON_DeleteItemFromObject(root, "eoa_token_index");
    cJSON_AddNumberToObject(root, "eoa_token_id", 505);
    cJSON_ReplaceItemInObject(root, "vision_config", cJSON_CreateNull());
    cJSON_DeleteItemFromObject(root, "audio_config");
    rc = parse_tree(root, &c, &err);
    CHECK(rc == 0, "eoa_token_id form: %s", err.msg);
    CHECK(c.eoa_token_id == 505, "eoa_token_id %d", c.eoa_token_id);
    CHECK(!c.has_vision && !c.has_audio && !c.vision_json && !c.audio_json, "null towers");
    g4_config_free(&c);
}

/* Text-only form: the text section at top level, model_type gemma4_text. */
static void test_text_only(const char *text, const g4_model_config *ref) {
    cJSON *root = cJSON_Parse(text);
    cJSON *tc = cJSON_DetachItemFromObject(root, "text_config");
    cJSON_Delete(root);
    cJSON_ReplaceItemInObject(tc, "eos_token_id", cJSON_CreateIntArray((const int[]){1, 106}, 2));
    g4_model_config c;
    g4_err err = {0};
    int rc = parse_tree(tc, &c, &err);
    CHECK(rc == 0, "text-only form: %s", err.msg);
    if (rc != 0) return;
    check_tables_equal(&c.text, &ref->text, "text-only form");
    CHECK(c.boi_token_id == -1 && c.audio_token_id == -1 && c.eoa_token_id == -1, "no multimodal ids");
    CHECK(!c.has_vision && !c.has_audio, "no towers");
    CHECK(c.n_eos == 2 && c.eos_ids[1] == 106, "eos list");
    CHECK(c.text.eos_token_id == 1, "text eos");
    g4_config_free(&c);
}

static const char *layer_pattern(char *buf, size_t cap, int n_layers, int period) {
    size_t pos = 0;
    pos += (size_t)snprintf(buf + pos, cap - pos, "[");
    for (int l = 0; l < n_layers; l++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s\"%s\"", l ? "," : "",
                                (l % period == period - 1) ? "full_attention" : "sliding_attention");
    snprintf(buf + pos, cap - pos, "]");
    return buf;
}

static char *make_e_config(int hidden, int layers, int inter, int kv, int shared, int double_wide, int period) {
    char lt[4096];
    layer_pattern(lt, sizeof lt, layers, period);
    char *s = malloc(16384);
    snprintf(s, 16384,
             "{\"architectures\":[\"Gemma4ForConditionalGeneration\"],\"model_type\":\"gemma4\","
             "\"boi_token_id\":255999,\"eoi_token_id\":258882,\"image_token_id\":258880,\"video_token_id\":258884,"
             "\"boa_token_id\":256000,\"eoa_token_index\":258883,\"audio_token_id\":258881,\"eos_token_id\":[1,106],"
             "\"vision_config\":{\"hidden_size\":768},\"audio_config\":null,"
             "\"text_config\":{\"model_type\":\"gemma4_text\",\"hidden_size\":%d,\"num_hidden_layers\":%d,"
             "\"intermediate_size\":%d,\"num_attention_heads\":8,\"num_key_value_heads\":%d,"
             "\"num_global_key_value_heads\":null,\"head_dim\":256,\"global_head_dim\":512,\"attention_k_eq_v\":false,"
             "\"vocab_size\":262144,\"vocab_size_per_layer_input\":262144,\"hidden_size_per_layer_input\":256,"
             "\"num_kv_shared_layers\":%d,\"use_double_wide_mlp\":%s,\"sliding_window\":512,"
             "\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-06,\"hidden_activation\":\"gelu_pytorch_tanh\","
             "\"final_logit_softcapping\":30.0,\"attention_bias\":false,\"tie_word_embeddings\":true,"
             "\"use_bidirectional_attention\":null,\"enable_moe_block\":false,\"pad_token_id\":0,\"eos_token_id\":1,"
             "\"bos_token_id\":2,\"layer_types\":%s,"
             "\"rope_parameters\":{\"full_attention\":{\"partial_rotary_factor\":0.25,\"rope_theta\":1000000.0,"
             "\"rope_type\":\"proportional\"},\"sliding_attention\":{\"rope_theta\":10000.0,\"rope_type\":\"default\"}}}}",
             hidden, layers, inter, kv, shared, double_wide ? "true" : "false", lt);
    return s;
}

static void test_e_models(void) {
    g4_err err = {0};
    g4_model_config c;
    char *e4b = make_e_config(2560, 42, 10240, 2, 18, 0, 6);
    int rc = parse_str(e4b, &c, &err);
    CHECK(rc == 0, "E4B: %s", err.msg);
    if (rc == 0) {
        const g4_text_config *t = &c.text;
        CHECK(t->first_kv_shared == 24, "E4B first_kv_shared %d", t->first_kv_shared);
        for (int l = 0; l < 42; l++) {
            int full = (l % 6 == 5);
            CHECK(t->layer_type[l] == full, "E4B type %d", l);
            CHECK(t->layer_head_dim[l] == (full ? 512 : 256), "E4B head dim %d", l);
            CHECK(t->layer_kv_heads[l] == 2, "E4B kv %d", l);
            CHECK(t->layer_intermediate[l] == 10240, "E4B inter %d", l);
            CHECK(t->kv_donor[l] == (l < 24 ? l : full ? 23 : 22), "E4B donor[%d] = %d", l, t->kv_donor[l]);
        }
        CHECK(c.boi_token_id == 255999 && c.eoa_token_id == 258883 && c.video_token_id == 258884, "E4B ids");
        CHECK(c.has_vision && !c.has_audio, "E4B towers");
        g4_config_free(&c);
    }
    free(e4b);

    char *e2b = make_e_config(1536, 35, 6144, 1, 20, 1, 5);
    rc = parse_str(e2b, &c, &err);
    CHECK(rc == 0, "E2B: %s", err.msg);
    if (rc == 0) {
        const g4_text_config *t = &c.text;
        CHECK(t->first_kv_shared == 15, "E2B first_kv_shared %d", t->first_kv_shared);
        for (int l = 0; l < 35; l++) {
            int full = (l % 5 == 4);
            CHECK(t->layer_type[l] == full, "E2B type %d", l);
            CHECK(t->layer_kv_heads[l] == 1, "E2B kv %d", l);
            CHECK(t->layer_intermediate[l] == (l >= 15 ? 12288 : 6144), "E2B inter[%d] %d", l, t->layer_intermediate[l]);
            CHECK(t->kv_donor[l] == (l < 15 ? l : full ? 14 : 13), "E2B donor[%d] = %d", l, t->kv_donor[l]);
        }
        g4_config_free(&c);
    }
    free(e2b);
}

/* Small text-only config used as the base for hostile edits. */
static const char *BASE =
    "{\"model_type\":\"gemma4_text\",\"hidden_size\":64,\"num_hidden_layers\":6,\"intermediate_size\":128,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":16,\"global_head_dim\":32,\"vocab_size\":512,"
    "\"hidden_size_per_layer_input\":8,\"num_kv_shared_layers\":2,\"sliding_window\":8,"
    "\"layer_types\":[\"sliding_attention\",\"sliding_attention\",\"full_attention\",\"sliding_attention\","
    "\"sliding_attention\",\"full_attention\"],"
    "\"rope_parameters\":{\"full_attention\":{\"partial_rotary_factor\":0.25,\"rope_theta\":1000000.0,"
    "\"rope_type\":\"proportional\"},\"sliding_attention\":{\"rope_theta\":10000.0,\"rope_type\":\"default\"}}}";

/* Applies `edit` as "key=JSON value" (value "DELETE" removes the key) to BASE and expects `want` (0 or < 0). */
static void hostile(const char *key, const char *value, int want_ok, const char *must_name) {
    cJSON *root = cJSON_Parse(BASE);
    cJSON_DeleteItemFromObject(root, key);
    if (strcmp(value, "DELETE") != 0) {
        cJSON *v = cJSON_Parse(value);
        if (!v) {
            fprintf(stderr, "bad test value %s\n", value);
            g4t_failures++;
            cJSON_Delete(root);
            return;
        }
        cJSON_AddItemToObject(root, key, v);
    }
    g4_model_config c;
    g4_err err = {0};
    int rc = parse_tree(root, &c, &err);
    if (want_ok) {
        CHECK(rc == 0, "%s=%s should parse: %s", key, value, err.msg);
        if (rc == 0) g4_config_free(&c);
    } else {
        CHECK(rc < 0, "%s=%s should fail", key, value);
        CHECK(rc >= 0 || strchr(err.msg, '\n') == NULL, "one-line message");
        if (must_name) CHECK(rc >= 0 || strstr(err.msg, must_name), "message \"%s\" names %s", err.msg, must_name);
    }
}

static void test_hostile(void) {
    g4_model_config c;
    g4_err err = {0};
    CHECK(parse_str(BASE, &c, &err) == 0, "base: %s", err.msg);
    CHECK(c.text.kv_donor[4] == 3 && c.text.kv_donor[5] == 2, "base donors");
    g4_config_free(&c);

    hostile("hidden_size", "DELETE", 0, "hidden_size");
    hostile("hidden_size", "-64", 0, "hidden_size");
    hostile("hidden_size", "64.5", 0, "hidden_size");
    hostile("hidden_size", "\"64\"", 0, "hidden_size");
    hostile("hidden_size", "1e300", 0, "hidden_size");
    hostile("num_hidden_layers", "0", 0, "num_hidden_layers");
    hostile("num_hidden_layers", "100000", 0, "num_hidden_layers");
    hostile("num_hidden_layers", "7", 0, "layer_types");
    hostile("intermediate_size", "-1", 0, "intermediate_size");
    hostile("num_attention_heads", "3", 0, "num_attention_heads");
    hostile("num_key_value_heads", "0", 0, "num_key_value_heads");
    hostile("num_key_value_heads", "8", 0, NULL);
    hostile("head_dim", "15", 0, "head_dim");
    hostile("head_dim", "-16", 0, "head_dim");
    hostile("vocab_size", "0", 0, "vocab_size");
    hostile("vocab_size", "DELETE", 0, "vocab_size");
    hostile("sliding_window", "-8", 0, "sliding_window");
    hostile("num_kv_shared_layers", "6", 0, "num_kv_shared_layers");
    hostile("num_kv_shared_layers", "-1", 0, "num_kv_shared_layers");
    hostile("num_kv_shared_layers", "5", 0, "num_kv_shared_layers"); /* shared full layers, no full donor */
    hostile("rms_norm_eps", "0", 0, "rms_norm_eps");
    hostile("rms_norm_eps", "-1e-6", 0, "rms_norm_eps");
    hostile("final_logit_softcapping", "null", 1, NULL);
    hostile("final_logit_softcapping", "-3", 0, "final_logit_softcapping");
    hostile("layer_types", "[\"sliding_attention\"]", 0, "layer_types");
    hostile("layer_types", "[1,2,3,4,5,6]", 0, "layer_types");
    hostile("layer_types",
            "[\"sliding_attention\",\"sliding_attention\",\"chunked_attention\",\"sliding_attention\","
            "\"sliding_attention\",\"full_attention\"]",
            0, "layer_types");
    hostile("layer_types", "\"sliding_attention\"", 0, "layer_types");
    hostile("layer_types", "DELETE", 0, NULL); /* default 5:1 pattern: layer 5 full, no full donor for... */
    hostile("rope_parameters", "{\"full_attention\":{\"rope_type\":\"yarn\",\"rope_theta\":10000}}", 0, "rope_type");
    hostile("rope_parameters", "{\"full_attention\":{\"rope_type\":\"proportional\",\"rope_theta\":-1}}", 0, "rope_theta");
    hostile("rope_parameters", "{\"sliding_attention\":{\"rope_type\":7}}", 0, "rope_type");
    hostile("rope_parameters", "[]", 0, "rope_parameters");
    hostile("hidden_activation", "\"silu\"", 0, "hidden_activation");
    hostile("enable_moe_block", "true", 0, "enable_moe_block");
    hostile("enable_moe_block", "false", 1, NULL);
    hostile("use_bidirectional_attention", "\"vision\"", 1, NULL);
    hostile("use_bidirectional_attention", "\"sideways\"", 0, "use_bidirectional_attention");
    hostile("bos_token_id", "512", 0, "bos_token_id");
    hostile("eos_token_id", "[1, 9999]", 0, "eos_token_id");
    hostile("eos_token_id", "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]", 0, "eos_token_id");
    hostile("boi_token_id", "-3", 0, "boi_token_id");
    hostile("attention_k_eq_v", "true", 0, "num_global_key_value_heads");
    hostile("attention_k_eq_v", "1", 0, "attention_k_eq_v");
    hostile("per_layer_config", "{\"9\":{\"head_dim\":32}}", 0, "per_layer_config");
    hostile("per_layer_config", "{\"x\":{}}", 0, "per_layer_config");
    hostile("per_layer_config", "{\"2\":{\"head_dim\":-32}}", 0, "head_dim");
    hostile("per_layer_config", "{\"2\":{\"num_key_value_heads\":3}}", 0, NULL);
    hostile("per_layer_config", "{\"2\":{\"head_dim\":64},\"5\":{\"head_dim\":64}}", 1, NULL);
    hostile("per_layer_config", "{\"2\":{\"head_dim\":64}}", 0, NULL); /* full layers disagree */
    hostile("text_config", "5", 0, "text_config");
    hostile("model_type", "\"llama\"", 0, "model_type");

    /* k_eq_v with global kv heads: full layers take num_global_key_value_heads. */
    cJSON *root = cJSON_Parse(BASE);
    cJSON_AddTrueToObject(root, "attention_k_eq_v");
    cJSON_AddNumberToObject(root, "num_global_key_value_heads", 1);
    int rc = parse_tree(root, &c, &err);
    CHECK(rc == 0, "k_eq_v: %s", err.msg);
    if (rc == 0) {
        CHECK(c.text.layer_kv_heads[2] == 1 && c.text.layer_kv_heads[5] == 1 && c.text.layer_kv_heads[0] == 2, "k_eq_v heads");
        for (int l = 0; l < 6; l++) /* keys double as values on the full-attention layers (2, 5) only */
            CHECK(c.text.layer_k_is_v[l] == (l == 2 || l == 5), "layer_k_is_v[%d] = %d", l, c.text.layer_k_is_v[l]);
        g4_config_free(&c);
    }

    /* The last layer is forced to full attention. */
    root = cJSON_Parse(BASE);
    cJSON_ReplaceItemInObject(root, "layer_types", cJSON_Parse("[\"sliding_attention\",\"sliding_attention\","
                                                               "\"full_attention\",\"sliding_attention\","
                                                               "\"sliding_attention\",\"sliding_attention\"]"));
    cJSON_ReplaceItemInObject(root, "num_kv_shared_layers", cJSON_CreateNumber(0));
    rc = parse_tree(root, &c, &err);
    CHECK(rc == 0 && c.text.layer_type[5] == G4_LAYER_FULL, "last layer forced full: %s", err.msg);
    if (rc == 0) g4_config_free(&c);

    const char *bad_docs[] = {"", "{", "[]", "null", "42", "\"str\"", "{\"text_config\":", "{\"hidden_size\":64,}", "\xff\xfe"};
    for (size_t i = 0; i < sizeof bad_docs / sizeof *bad_docs; i++) {
        rc = g4_config_parse(bad_docs[i], strlen(bad_docs[i]), &c, &err);
        CHECK(rc == GEMMA4C_ERR_FORMAT, "bad doc %zu gives %d", i, rc);
    }
    /* Truncated at every length: never crashes, only the full text parses. */
    size_t n = strlen(BASE);
    int ok = 0;
    for (size_t k = 0; k < n; k++) {
        char *cut = malloc(k + 1);
        memcpy(cut, BASE, k);
        cut[k] = '\0';
        if (g4_config_parse(cut, k, &c, &err) == 0) {
            ok++;
            g4_config_free(&c);
        }
        free(cut);
    }
    CHECK(ok == 0, "%d truncations parsed", ok);
    /* Trailing garbage and embedded NULs are not JSON. */
    char *junk = malloc(n + 8);
    memcpy(junk, BASE, n);
    memcpy(junk + n, " junk", 6);
    CHECK(g4_config_parse(junk, n + 5, &c, &err) == GEMMA4C_ERR_FORMAT, "trailing garbage");
    junk[n] = '\0';
    CHECK(g4_config_parse(junk, n + 5, &c, &err) == GEMMA4C_ERR_FORMAT, "embedded NUL");
    rc = g4_config_parse(junk, n, &c, &err);
    CHECK(rc == 0, "exact length: %s", err.msg);
    if (rc == 0) g4_config_free(&c);
    free(junk);
    /* The length argument bounds parsing even when the buffer holds more. */
    CHECK(g4_config_parse(BASE, n - 1, &c, &err) < 0, "length respected");
    CHECK(g4_config_load("/nonexistent/config.json", &c, &err) == GEMMA4C_ERR_IO, "missing file");
}

static void test_generation(const char *golden) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny/checkpoint/generation_config.json", golden);
    g4_generation_config g;
    g4_err err = {0};
    int rc = g4_generation_config_load(path, &g, &err);
    CHECK(rc == 0, "golden generation config: %s", err.msg);
    CHECK(g.bos_token_id == 2 && g.pad_token_id == 0, "bos/pad");
    CHECK(g.n_eos == 1 && g.eos_ids[0] == 1, "eos");
    CHECK(g.do_sample == 1 && g.temperature == 1.0 && g.top_k == 64 && g.top_p == 0.95, "sampling");
    CHECK(g.min_p == 0.0 && g.repetition_penalty == 1.0, "defaults kept");

    g4_generation_config_default(&g);
    CHECK(g.do_sample == 0 && g.temperature == 1.0 && g.top_k == 0 && g.top_p == 1.0 && g.min_p == 0.0 &&
              g.repetition_penalty == 1.0 && g.bos_token_id == -1 && g.n_eos == 0,
          "defaults");

    const char *spec = "{\"bos_token_id\": 2, \"do_sample\": true, \"eos_token_id\": [1, 106, 50], \"pad_token_id\": 0,"
                       " \"temperature\": 0.7, \"top_k\": 64, \"top_p\": 0.95, \"min_p\": 0.05, \"repetition_penalty\": 1.1,"
                       " \"transformers_version\": \"5.5.0.dev0\"}";
    rc = g4_generation_config_parse(spec, strlen(spec), &g, &err);
    CHECK(rc == 0, "spec generation config: %s", err.msg);
    CHECK(g.n_eos == 3 && g.eos_ids[2] == 50, "eos list");
    CHECK(g.temperature == 0.7 && g.min_p == 0.05 && g.repetition_penalty == 1.1, "values");

    const char *bad[] = {"{\"top_p\": 1.5}", "{\"top_k\": -1}", "{\"temperature\": -1}", "{\"do_sample\": 1}",
                         "{\"eos_token_id\": \"x\"}", "{\"repetition_penalty\": 0}", "[", "{\"min_p\": 2}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rc = g4_generation_config_parse(bad[i], strlen(bad[i]), &g, &err);
        CHECK(rc == GEMMA4C_ERR_FORMAT, "bad generation config %zu: %d", i, rc);
        CHECK(rc >= 0 || strncmp(err.msg, "generation_config", 17) == 0, "message: %s", err.msg);
    }
}

int main(void) {
    const char *golden = g4t_require_golden();
    g4_model_config ref;
    memset(&ref, 0, sizeof ref);
    char *text = NULL;
    test_golden(golden, &ref, &text);
    if (text) {
        test_per_layer_form(text, &ref);
        test_text_only(text, &ref);
    }
    free(text);
    g4_config_free(&ref);
    test_e_models();
    test_hostile();
    test_generation(golden);
    return g4t_finish("test_config");
}
