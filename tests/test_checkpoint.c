/* test_checkpoint.c — checkpoint variants that must load (text-only, single file, f32/f16) and broken ones that
 * must fail with one clear message. */
#include "test.h"

#include "decoder_util.h"

#include <cjson/cJSON.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "format/safetensors.h"
#include "golden_util.h"
#include "model/decoder.h"
#include "model/model.h"

static char tmp_root[] = "/tmp/gemma4c-ckpt-XXXXXX";
static char golden_ckpt[4200];

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) exit(1);
    fputs(text, f);
    fclose(f);
}

typedef enum { KEEP, TO_F32, TO_F16 } conversion;

/* Writes the golden model's text tensors to dir/model.safetensors (renamed with `prefix`, converted, and with
 * an optional tensor mutated: 0 drops its last row, 1 makes its dtype I16, 2 gives a v_proj its layer's k_proj
 * values, 3 zeroes every tensor whose name ends with `mutate`) plus the config `config_json`. */
static void make_checkpoint(const char *dir, const char *prefix, conversion conv, const char *config_json,
                            const char *mutate, int mutate_kind) {
    mkdir(dir, 0755);
    g4_checkpoint *src;
    g4_err err = {0};
    if (g4_checkpoint_open(golden_ckpt, &src, &err)) exit(1);
    size_t n = g4_checkpoint_count(src), k = 0;
    g4_tensor *out = calloc(n, sizeof *out);
    char **names = calloc(n, sizeof *names);
    void **bufs = calloc(n, sizeof *bufs);
    for (size_t i = 0; i < n; i++) {
        const g4_tensor *t = g4_checkpoint_at(src, i);
        const char *lm = "model.language_model.";
        if (strncmp(t->name, lm, strlen(lm)) != 0) continue;
        names[k] = malloc(strlen(t->name) + 32);
        sprintf(names[k], "%s%s", prefix, t->name + strlen(lm));
        g4_tensor o = *t;
        o.name = names[k];
        int64_t numel = g4_tensor_numel(t);
        if (conv != KEEP) {
            o.dtype = conv == TO_F32 ? G4_DT_F32 : G4_DT_F16;
            o.nbytes = (size_t)numel * g4_dtype_size(o.dtype);
            bufs[k] = malloc(o.nbytes);
            for (int64_t e = 0; e < numel; e++) {
                float v = g4_tensor_get_f32(t, e);
                if (conv == TO_F32) ((float *)bufs[k])[e] = v;
                else ((uint16_t *)bufs[k])[e] = g4_f32_to_f16(v);
            }
            o.data = bufs[k];
        }
        const size_t nl = strlen(t->name), nm = mutate ? strlen(mutate) : 0;
        if (mutate && mutate_kind == 3 && nl >= nm && strcmp(t->name + nl - nm, mutate) == 0) {
            free(bufs[k]);
            o.data = bufs[k] = calloc(1, o.nbytes); /* 0 in every dtype */
        } else if (mutate && mutate_kind != 3 && strcmp(t->name + strlen(lm), mutate) == 0) {
            if (mutate_kind == 0) { /* wrong shape: drop the last row */
                o.shape[0] -= 1;
                o.nbytes = (size_t)(numel / t->shape[0] * o.shape[0]) * g4_dtype_size(o.dtype);
            } else if (mutate_kind == 1) { /* wrong dtype: same bytes reinterpreted as I16 */
                o.dtype = G4_DT_I16;
            } else { /* the values of the layer's k_proj (same shape and dtype in the golden file) */
                char k_name[256];
                snprintf(k_name, sizeof k_name, "%s", t->name);
                char *v = strstr(k_name, "v_proj");
                if (v) *v = 'k';
                const g4_tensor *k = v ? g4_checkpoint_find(src, k_name) : NULL;
                CHECK(k && k->nbytes == t->nbytes && k->dtype == t->dtype && conv == KEEP, "k_proj for %s", t->name);
                if (k && k->nbytes == t->nbytes) o.data = k->data;
            }
        }
        out[k++] = o;
    }
    char path[4300];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(g4_st_write(path, out, k, NULL, 0, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, config_json);
    for (size_t i = 0; i < k; i++) free(names[i]), free(bufs[i]);
    free(out), free(names), free(bufs);
    g4_checkpoint_close(src);
}

/* The last position's logits [vocab] of the reference prompt through the checkpoint in dir; NULL on failure. */
static float *last_logits(const char *dir, const g4_st_file *ref, int64_t *vocab) {
    g4_model *m;
    g4_err err = {0};
    if (g4_model_load_dir(dir, &m, &err)) {
        CHECK(0, "%s: %s", dir, err.msg);
        return NULL;
    }
    int64_t T;
    int32_t *ids = g4t_tensor_i32(ref, "input_ids", &T);
    const int64_t V = *vocab = m->cfg.text.vocab_size;
    g4t_decoder td;
    CHECK(g4t_decoder_open(&td, m, 2, 64, 128, &err) == 0, "%s", err.msg);
    g4_decoder *d = &td.d;
    g4_kv_seq *seq = &td.seq;
    float *last = malloc((size_t)V * 4);
    g4_forward_opts o = {.last_logits = last};
    CHECK(g4_decoder_forward(d, seq, ids, T, &o, &err) == 0, "%s", err.msg);
    g4t_decoder_close(&td);
    g4_model_free(m);
    free(ids);
    return last;
}

static double logits_error(const char *dir, const g4_st_file *ref) {
    int64_t T, V;
    float *last = last_logits(dir, ref, &V), *want = g4t_tensor_f32(ref, "logits", &T);
    double e = last ? g4t_rel_err(last, want + T - V, V) : 1e9;
    free(want), free(last);
    return e;
}

/* Loading must fail with an error whose message contains `needle`. */
static void expect_failure(const char *dir, const char *needle, const char *what) {
    g4_model *m = NULL;
    g4_err err = {0};
    int rc = g4_model_load_dir(dir, &m, &err);
    CHECK(rc != 0, "%s: loaded", what);
    CHECK(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
    CHECK(strchr(err.msg, '\n') == NULL, "%s: message spans lines", what);
    printf("  %-28s -> %s\n", what, err.msg);
    g4_model_free(m);
}

/* The golden config with text_config.key set to value (consumed). */
static char *with_text_item(const char *config, const char *key, cJSON *value) {
    cJSON *root = cJSON_Parse(config), *tc = cJSON_GetObjectItem(root, "text_config");
    if (cJSON_HasObjectItem(tc, key)) cJSON_ReplaceItemInObject(tc, key, value);
    else cJSON_AddItemToObject(tc, key, value);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

/* A config knob checked without a reference of its own: the golden tensors under `edited` must compute exactly
 * what they compute under the golden config once `mutate` is applied to them (kinds as in make_checkpoint), and
 * differ from the tiny model itself, so that the knob's path is the one exercised. */
static void check_equivalent(const char *what, const char *edited, const char *config, const char *mutate, int kind,
                             const char *equivalent, const g4_st_file *ref) {
    static int calls;
    char a[4300], b[4300];
    snprintf(a, sizeof a, "%s/knob%d", tmp_root, calls);
    snprintf(b, sizeof b, "%s/knob%d_equivalent", tmp_root, calls++);
    make_checkpoint(a, "model.language_model.", KEEP, edited, NULL, 0);
    make_checkpoint(b, "model.language_model.", KEEP, config, mutate, kind);
    int64_t V = 0, V2 = 0, T = 0;
    float *knob = last_logits(a, ref, &V), *same_model = last_logits(b, ref, &V2), *tiny = g4t_tensor_f32(ref, "logits", &T);
    if (knob && same_model && V == V2) {
        const double same = g4t_rel_err(knob, same_model, V), moved = g4t_rel_err(knob, tiny + T - V, V);
        printf("%s: against %s %.2e, against the tiny model %.2e\n", what, equivalent, same, moved);
        CHECK(same <= 1e-6, "%s differs from its equivalent checkpoint: %.3e", what, same);
        CHECK(moved >= 1e-3, "%s changed nothing (%.3e)", what, moved);
    } else
        CHECK(0, "%s: a checkpoint did not run", what);
    free(knob), free(same_model), free(tiny);
}

/* attention_k_eq_v as the reference applies it: on full-attention layers the values are the raw key projection
 * (a v_proj the file may carry is not used), while sliding layers keep their own v_proj. So the tiny model with it
 * (as many global kv heads as kv heads, to keep the tensors' shapes) computes what the tiny model without it
 * computes once layer 3 (the one full layer with its own KV; layer 7 borrows it) has its k_proj values in its
 * v_proj. */
static void check_k_eq_v(const char *config, const g4_st_file *ref) {
    char *k_eq_v = with_text_item(config, "attention_k_eq_v", cJSON_CreateTrue());
    char *edited = with_text_item(k_eq_v, "num_global_key_value_heads", cJSON_CreateNumber(2));
    check_equivalent("attention_k_eq_v", edited, config, "layers.3.self_attn.v_proj.weight", 2,
                     "v_proj := k_proj on full layers", ref);
    free(k_eq_v), free(edited);
}

/* A model without per-layer inputs (hidden_size_per_layer_input 0, as the larger Gemma 4 models) skips the
 * per-layer block, which is what the tiny model does when every per_layer_projection is zero (the block then adds
 * RMSNorm(0) = 0). */
static void check_without_ple(const char *config, const g4_st_file *ref) {
    char *edited = with_text_item(config, "hidden_size_per_layer_input", cJSON_CreateNumber(0));
    check_equivalent("no per-layer inputs", edited, config, "per_layer_projection.weight", 3,
                     "zero per_layer_projection", ref);
    free(edited);
}

int main(void) {
    const char *golden = g4t_require_golden();
    snprintf(golden_ckpt, sizeof golden_ckpt, "%s/tiny/checkpoint", golden);
    if (!mkdtemp(tmp_root)) return 1;
    char path[4300], dir[4300];
    g4_err err = {0};
    snprintf(path, sizeof path, "%s/tiny/reference/text.safetensors", golden);
    g4_st_file *ref;
    if (g4_st_open(path, &ref, &err)) return 1;
    snprintf(path, sizeof path, "%s/config.json", golden_ckpt);
    char *config = g4t_read_text(path);
    if (!config) exit(1);

    /* The text_config alone, as a Gemma4ForCausalLM checkpoint stores it. */
    cJSON *root = cJSON_Parse(config);
    cJSON *text_cfg = cJSON_DetachItemFromObject(root, "text_config");
    char *text_only = cJSON_PrintUnformatted(text_cfg);

    snprintf(dir, sizeof dir, "%s/text_only", tmp_root);
    make_checkpoint(dir, "model.", KEEP, text_only, NULL, 0);
    double e = logits_error(dir, ref);
    printf("text-only single-file checkpoint: last logits rel err %.2e\n", e);
    CHECK(e <= 1e-4, "text-only: %.3e", e);

    snprintf(dir, sizeof dir, "%s/f32", tmp_root);
    make_checkpoint(dir, "model.language_model.", TO_F32, config, NULL, 0);
    e = logits_error(dir, ref);
    printf("float32 checkpoint: last logits rel err %.2e\n", e);
    CHECK(e <= 1e-4, "f32: %.3e", e);

    /* float16 cannot hold every bf16 value exactly: the answer moves a little, not a lot. */
    snprintf(dir, sizeof dir, "%s/f16", tmp_root);
    make_checkpoint(dir, "model.language_model.", TO_F16, config, NULL, 0);
    e = logits_error(dir, ref);
    printf("float16 checkpoint: last logits rel err %.2e\n", e);
    CHECK(e <= 2e-2, "f16: %.3e", e);

    check_k_eq_v(config, ref);
    check_without_ple(config, ref);

    printf("broken checkpoints:\n");
    snprintf(dir, sizeof dir, "%s/shape", tmp_root);
    make_checkpoint(dir, "model.language_model.", KEEP, config, "layers.2.self_attn.q_proj.weight", 0);
    expect_failure(dir, "layers.2.self_attn.q_proj.weight has shape [63, 64]", "shape mismatch");
    snprintf(dir, sizeof dir, "%s/dtype", tmp_root);
    make_checkpoint(dir, "model.language_model.", KEEP, config, "layers.1.mlp.up_proj.weight", 1);
    expect_failure(dir, "dtype I16", "wrong dtype");

    snprintf(dir, sizeof dir, "%s/missing_config", tmp_root);
    mkdir(dir, 0755);
    expect_failure(dir, "config.json", "missing config.json");

    snprintf(dir, sizeof dir, "%s/bad_config", tmp_root);
    make_checkpoint(dir, "model.language_model.", KEEP, "{\"text_config\": {\"hidden_size\": ", NULL, 0);
    expect_failure(dir, "config", "truncated config.json");
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, "[1, 2, 3]");
    expect_failure(dir, "config", "config.json not an object");

    /* The golden shards, with the index or a shard broken. */
    snprintf(dir, sizeof dir, "%s/shards", tmp_root);
    mkdir(dir, 0755);
    const char *files[] = {"config.json", "generation_config.json", "model.safetensors.index.json",
                           "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                           "model-00003-of-00003.safetensors", "model-unused-shared-kv.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char from[4400], to[4400];
        snprintf(from, sizeof from, "%s/%s", golden_ckpt, files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        CHECK(symlink(from, to) == 0, "symlink %s", files[i]);
    }
    snprintf(path, sizeof path, "%s/model-00002-of-00003.safetensors", dir);
    unlink(path);
    expect_failure(dir, "model-00002-of-00003.safetensors", "missing shard");
    /* truncated shard: the header promises more data than the file has */
    char from[4400];
    snprintf(from, sizeof from, "%s/model-00002-of-00003.safetensors", golden_ckpt);
    char *bytes;
    size_t len;
    CHECK(g4_read_file(from, 1 << 26, &bytes, &len, &err) == 0, "%s", err.msg);
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, len / 2, f);
    fclose(f);
    free(bytes);
    expect_failure(dir, "model-00002-of-00003.safetensors", "truncated shard");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    unlink(path);
    write_text(path, "{\"weight_map\": {\"model.language_model.norm.weight\": \"../../etc/passwd\"}}");
    expect_failure(dir, "index", "index escaping the directory");
    unlink(path);
    write_text(path, "{\"weight_map\": ");
    expect_failure(dir, "index", "truncated index");

    cJSON_Delete(root);
    cJSON_Delete(text_cfg);
    free(text_only);
    free(config);
    g4_st_close(ref);
    g4t_rm_tree(tmp_root);
    return g4t_finish("test_checkpoint");
}
