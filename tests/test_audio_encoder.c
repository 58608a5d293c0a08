/* test_audio_encoder.c — the audio tower + embedder against transformers on the golden tiny checkpoint, and its errors. */
#include "test.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <unistd.h>

#include "golden_util.h"
#include "model/audio.h"
#include "model/model.h"

#define TOL 1e-4

/* Runs one golden clip and compares the tower output (valid rows), the soft tokens and their count. */
static void check_clip(const g4_audio_encoder *a, g4_backend *c, const char *golden, const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny/reference/audio_%s.safetensors", golden, name);
    g4_st_file *ref;
    g4_err err = {0};
    if (g4_st_open(path, &ref, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const g4_audio_dims dims = g4_audio_encoder_dims(a);
    int64_t nf, nm, nt, nmask, nfeat;
    float *feat = g4t_tensor_f32(ref, "input_features", &nf);
    float *maskf = g4t_tensor_f32(ref, "input_features_mask", &nm);
    float *want_tower = g4t_tensor_f32(ref, "audio_tower_output", &nt);
    float *token_mask = g4t_tensor_f32(ref, "audio_token_mask", &nmask);
    float *want = g4t_tensor_f32(ref, "audio_features", &nfeat);
    const int64_t frames = nm;
    CHECK(nf == frames * dims.n_mel, "%s: input_features size", name);
    uint8_t *mask = malloc((size_t)frames);
    int64_t n_valid_frames = 0;
    for (int64_t t = 0; t < frames; t++) n_valid_frames += (mask[t] = maskf[t] != 0);

    const int64_t T = g4_audio_encoder_positions(frames);
    int64_t want_tokens = 0;
    for (int64_t t = 0; t < nmask; t++) want_tokens += token_mask[t] != 0;
    CHECK(T == nmask && nt == T * dims.proj_dims, "%s: %lld positions, reference %lld", name, (long long)T, (long long)nmask);
    CHECK(g4_audio_encoder_tokens(mask, frames) == want_tokens, "%s: token count %lld, reference %lld", name,
          (long long)g4_audio_encoder_tokens(mask, frames), (long long)want_tokens);
    CHECK(want_tokens == (n_valid_frames + 3) / 4, "%s: ceil(valid frames / 4)", name);
    CHECK(nfeat == want_tokens * dims.out_width, "%s: audio_features size", name);

    float *out = malloc((size_t)(T * dims.out_width) * sizeof(float));
    float *tower = malloc((size_t)(T * dims.proj_dims) * sizeof(float));
    uint8_t *valid = malloc((size_t)T);
    g4_audio_probe probe = {tower, valid};
    int64_t n_tokens = -1;
    int rc = g4_audio_encode(a, c, feat, mask, frames, out, &n_tokens, &probe, &err);
    CHECK(rc == 0, "%s: %s", name, err.msg);
    if (rc == 0 && T == nmask && n_tokens == want_tokens && nfeat == n_tokens * dims.out_width) {
        /* The tower output is compared where the reference's positions are valid (its padding rows are garbage). */
        const int64_t P = dims.proj_dims;
        float *got_v = malloc((size_t)(T * P) * sizeof(float)), *want_v = malloc((size_t)(T * P) * sizeof(float));
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++) {
            CHECK(valid[t] == (token_mask[t] != 0), "%s: validity of position %lld", name, (long long)t);
            if (!token_mask[t]) continue;
            memcpy(got_v + n * P, tower + t * P, (size_t)P * sizeof(float));
            memcpy(want_v + n * P, want_tower + t * P, (size_t)P * sizeof(float));
            n++;
        }
        double e_tower = g4t_rel_err(got_v, want_v, n * P);
        double e_feat = g4t_rel_err(out, want, nfeat);
        printf("audio_%-6s %4lld frames -> %3lld tokens: audio_tower_output %.2e  audio_features %.2e (relative)\n",
               name, (long long)frames, (long long)n_tokens, e_tower, e_feat);
        CHECK(e_tower <= TOL, "%s: audio_tower_output rel err %.3e", name, e_tower);
        CHECK(e_feat <= TOL, "%s: audio_features rel err %.3e", name, e_feat);
        free(got_v);
        free(want_v);

        /* Masked frames are a suffix: running only the valid frames must give the same tokens. */
        if (n_valid_frames < frames) {
            float *out2 = malloc((size_t)(T * dims.out_width) * sizeof(float));
            int64_t n2 = -1;
            CHECK(g4_audio_encode(a, c, feat, NULL, n_valid_frames, out2, &n2, NULL, &err) == 0, "%s", err.msg);
            CHECK(n2 == n_tokens, "%s: valid prefix gives %lld tokens, not %lld", name, (long long)n2, (long long)n_tokens);
            if (n2 == n_tokens) {
                double e = g4t_rel_err(out2, want, nfeat);
                CHECK(e <= TOL, "%s: valid prefix only: rel err %.3e", name, e);
            }
            free(out2);
        }
    } else {
        CHECK(0, "%s: %lld tokens, reference %lld", name, (long long)n_tokens, (long long)want_tokens);
    }
    free(out);
    free(tower);
    free(valid);
    free(mask);
    free(feat);
    free(maskf);
    free(want_tower);
    free(token_mask);
    free(want);
    g4_st_close(ref);
}

/* Bad calls: each must fail with the given code and a message, never crash. */
static void check_bad_calls(const g4_audio_encoder *a, g4_backend *c) {
    const g4_audio_dims dims = g4_audio_encoder_dims(a);
    const int64_t frames = 40;
    float *feat = calloc((size_t)((G4_AUDIO_ENCODER_MAX_FRAMES + 8) * dims.n_mel), sizeof(float));
    float *out = calloc((size_t)((G4_AUDIO_ENCODER_MAX_FRAMES + 8) * dims.out_width), sizeof(float));
    int64_t n = -1;
    g4_err err = {0};
    int rc = g4_audio_encode(a, c, feat, NULL, 0, out, &n, NULL, &err);
    CHECK(rc == GEMMA4C_ERR_ARG && strstr(err.msg, "frames"), "zero frames: rc %d (%s)", rc, err.msg);
    rc = g4_audio_encode(a, c, feat, NULL, -5, out, &n, NULL, &err);
    CHECK(rc == GEMMA4C_ERR_ARG, "negative frames: rc %d", rc);
    rc = g4_audio_encode(a, c, feat, NULL, (int64_t)1 << 40, out, &n, NULL, &err);
    CHECK(rc == GEMMA4C_ERR_ARG && strstr(err.msg, "segments"), "absurd length: rc %d (%s)", rc, err.msg);
    rc = g4_audio_encode(a, c, feat, NULL, G4_AUDIO_ENCODER_MAX_FRAMES + 1, out, &n, NULL, &err);
    CHECK(rc == GEMMA4C_ERR_ARG, "one frame too many: rc %d", rc);
    rc = g4_audio_encode(a, c, NULL, NULL, frames, out, &n, NULL, &err);
    CHECK(rc == GEMMA4C_ERR_ARG, "no features: rc %d", rc);
    feat[7 * dims.n_mel + 3] = NAN;
    rc = g4_audio_encode(a, c, feat, NULL, frames, out, &n, NULL, &err);
    CHECK(rc == GEMMA4C_ERR_ARG && strstr(err.msg, "frame 7"), "NaN feature: rc %d (%s)", rc, err.msg);
    feat[7 * dims.n_mel + 3] = INFINITY;
    rc = g4_audio_encode(a, c, feat, NULL, frames, out, &n, NULL, &err);
    CHECK(rc == GEMMA4C_ERR_ARG, "infinite feature: rc %d", rc);
    feat[7 * dims.n_mel + 3] = 0;

    /* A compute context narrower than the encoder grows to fit it, and computes the same. */
    g4_compute small;
    g4_backend narrow;
    CHECK(g4_compute_init(&small, 1, 16) == 0 && g4_backend_cpu_init(&narrow, &small, &err) == 0, "compute init");
    feat[7 * dims.n_mel + 3] = 0.5f;
    float *wide_out = malloc((size_t)g4_audio_encoder_tokens(NULL, frames) * (size_t)dims.out_width * sizeof(float));
    int64_t n_wide = 0;
    CHECK(g4_audio_encode(a, c, feat, NULL, frames, wide_out, &n_wide, NULL, &err) == 0, "%s", err.msg);
    rc = g4_audio_encode(a, &narrow, feat, NULL, frames, out, &n, NULL, &err);
    CHECK(rc == 0 && small.max_k >= dims.max_input_width, "narrow compute: rc %d (%s)", rc, err.msg);
    CHECK(n == n_wide && g4t_rel_err(out, wide_out, n * dims.out_width) < 1e-6, "a grown compute context computes the same");
    free(wide_out);
    narrow.destroy(&narrow);
    g4_compute_free(&small);

    /* No valid frame at all is not an error: the reference gives no soft tokens. One valid frame gives one. */
    uint8_t mask[40] = {0};
    rc = g4_audio_encode(a, c, feat, mask, frames, out, &n, NULL, &err);
    CHECK(rc == 0 && n == 0, "all frames masked: rc %d, %lld tokens", rc, (long long)n);
    mask[0] = 1;
    rc = g4_audio_encode(a, c, feat, mask, frames, out, &n, NULL, &err);
    CHECK(rc == 0 && n == 1, "one valid frame: rc %d, %lld tokens", rc, (long long)n);
    /* The shortest inputs: one frame, and 0.1 s (10 frames -> 3 tokens, as the reference counts). */
    rc = g4_audio_encode(a, c, feat, NULL, 1, out, &n, NULL, &err);
    CHECK(rc == 0 && n == 1, "one frame: rc %d, %lld tokens", rc, (long long)n);
    rc = g4_audio_encode(a, c, feat, NULL, 10, out, &n, NULL, &err);
    CHECK(rc == 0 && n == 3, "ten frames: rc %d, %lld tokens", rc, (long long)n);
    /* The longest call accepted: every value finite. */
    rc = g4_audio_encode(a, c, feat, NULL, G4_AUDIO_ENCODER_MAX_FRAMES, out, &n, NULL, &err);
    CHECK(rc == 0 && n == g4_audio_encoder_positions(G4_AUDIO_ENCODER_MAX_FRAMES), "longest: rc %d (%s)", rc, err.msg);
    int finite = 1;
    for (int64_t i = 0; i < n * dims.out_width; i++) finite &= isfinite(out[i]) != 0;
    CHECK(finite, "non-finite soft token values");
    free(feat);
    free(out);
}

/* The tiny config with one edit to its audio_config (key NULL: drop audio_config). */
static char *edited_config(const char *config, const char *key, cJSON *value) {
    cJSON *root = cJSON_Parse(config);
    if (!key) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, "audio_config");
        cJSON_Delete(value);
    } else {
        cJSON *ac = cJSON_GetObjectItemCaseSensitive(root, "audio_config");
        cJSON_ReplaceItemInObjectCaseSensitive(ac, key, value);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* A checkpoint directory that holds the tiny checkpoint's files (links) under an edited config.json. */
static int load_with_config(const char *ckpt_dir, const char *config, g4_model **m, g4_err *err) {
    char dir[] = "/tmp/g4_audio_cfg_XXXXXX";
    if (!mkdtemp(dir)) return -100;
    int rc = g4t_link_checkpoint(ckpt_dir, dir, config);
    CHECK(rc == 0, "could not link the checkpoint into %s", dir);
    if (rc == 0) rc = g4_model_load_dir(dir, m, err);
    g4t_rm_tree(dir);
    return rc;
}

/* Loading errors: a model without audio, configs whose shapes disagree with the tensors, unsupported settings. */
static void check_bad_models(const char *ckpt_dir) {
    char path[4400];
    snprintf(path, sizeof path, "%s/config.json", ckpt_dir);
    char *config = g4t_read_text(path);
    CHECK(config != NULL, "read %s", path);
    if (!config) return;
    g4_err err = {0};
    g4_model *m;
    g4_audio_encoder *a;

    /* Text-only (synthetic, same tiny text model). */
    char *text_only = edited_config(config, NULL, NULL);
    CHECK(g4_model_synthetic(text_only, NULL, 1, &m, &err) == 0, "%s", err.msg);
    if (m) {
        int rc = g4_audio_encoder_load(m, &a, &err);
        CHECK(rc == GEMMA4C_ERR_UNSUPPORTED && a == NULL && strstr(err.msg, "no audio tower"), "text-only: rc %d (%s)",
              rc, err.msg);
        g4_model_free(m);
    }
    free(text_only);

    /* The same config with the audio tower, synthetic: loads and runs (shapes come from the config alone). */
    CHECK(g4_model_synthetic(config, NULL, 1, &m, &err) == 0, "%s", err.msg);
    if (m) {
        int rc = g4_audio_encoder_load(m, &a, &err);
        CHECK(rc == 0, "synthetic tiny audio: %s", err.msg);
        if (rc == 0) {
            g4_compute c;
            g4_backend be;
            CHECK(g4_compute_init(&c, 2, g4_audio_encoder_dims(a).max_input_width) == 0 &&
                      g4_backend_cpu_init(&be, &c, &err) == 0,
                  "compute");
            float feat[20 * 128];
            for (int i = 0; i < 20 * 128; i++) feat[i] = (float)sin(i * 0.37) * 3.0f - 4.0f;
            float out[5 * 64];
            int64_t n = 0;
            CHECK(g4_audio_encode(a, &be, feat, NULL, 20, out, &n, NULL, &err) == 0 && n == 5, "synthetic encode: %s",
                  err.msg);
            be.destroy(&be);
            g4_compute_free(&c);
            g4_audio_encoder_free(a);
        }
        g4_model_free(m);
    }

    /* Checkpoint tensors must match what the config implies; each mismatch names the tensor. */
    struct {
        const char *key;
        cJSON *value;
        int code;
        const char *needle;
    } cases[] = {
        {"output_proj_dims", cJSON_CreateNumber(64), GEMMA4C_ERR_SHAPE, "output_proj"},
        {"hidden_size", cJSON_CreateNumber(48), GEMMA4C_ERR_SHAPE, "audio tower"},
        {"subsampling_conv_channels", cJSON_CreateIntArray((const int[]){128, 8}, 2), GEMMA4C_ERR_SHAPE, "layer1"},
        {"num_attention_heads", cJSON_CreateNumber(3), GEMMA4C_ERR_FORMAT, "num_attention_heads"},
        {"hidden_act", cJSON_CreateString("mish"), GEMMA4C_ERR_UNSUPPORTED, "hidden_act"},
        {"conv_kernel_size", cJSON_CreateNumber(-2), GEMMA4C_ERR_FORMAT, "conv_kernel_size"},
        {"subsampling_conv_channels", cJSON_CreateString("x"), GEMMA4C_ERR_FORMAT, "subsampling_conv_channels"},
        {"attention_invalid_logits_value", cJSON_CreateNumber(0), GEMMA4C_ERR_UNSUPPORTED, "invalid_logits"},
        /* the typed readers' messages, naming the field by its path */
        {"subsampling_conv_channels", cJSON_CreateIntArray((const int[]){128, 5000}, 2), GEMMA4C_ERR_FORMAT,
         "audio_config.subsampling_conv_channels must be two channel counts in [1, 4096]"},
        {"use_clipped_linears", cJSON_CreateNumber(1), GEMMA4C_ERR_FORMAT,
         "audio_config.use_clipped_linears must be true or false"},
        {"num_hidden_layers", cJSON_CreateNumber(1e300), GEMMA4C_ERR_FORMAT,
         "audio_config.num_hidden_layers must be an integer in [0, 1024]"},
        {"rms_norm_eps", cJSON_CreateString("1e-6"), GEMMA4C_ERR_FORMAT,
         "audio_config.rms_norm_eps must be a number in [0, 1]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *cfg = edited_config(config, cases[i].key, cases[i].value);
        m = NULL;
        int rc = load_with_config(ckpt_dir, cfg, &m, &err);
        CHECK(rc == 0, "load with edited %s: %s", cases[i].key, err.msg);
        if (rc == 0) {
            a = NULL;
            g4_err_clear(&err);
            rc = g4_audio_encoder_load(m, &a, &err);
            CHECK(rc == cases[i].code && a == NULL && strstr(err.msg, cases[i].needle), "edited %s: rc %d (%s)",
                  cases[i].key, rc, err.msg);
            printf("  edited %-30s -> %s\n", cases[i].key, err.msg);
            g4_audio_encoder_free(a);
        }
        g4_model_free(m);
        free(cfg);
    }
    free(config);
}

int main(void) {
    const char *golden = g4t_require_golden();
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tiny/checkpoint", golden);
    g4_model *m;
    g4_err err = {0};
    if (g4_model_load_dir(dir, &m, &err)) {
        fprintf(stderr, "load %s: %s\n", dir, err.msg);
        return 1;
    }
    g4_audio_encoder *a;
    if (g4_audio_encoder_load(m, &a, &err)) {
        fprintf(stderr, "audio encoder: %s\n", err.msg);
        g4_model_free(m);
        return 1;
    }
    const g4_audio_dims dims = g4_audio_encoder_dims(a);
    /* The golden trap: the tower ends 48 wide, the text model is 64 wide. */
    CHECK(dims.proj_dims == 48 && dims.out_width == 64 && dims.hidden == 32 && dims.n_mel == 128,
          "dims %d %d %d %d", dims.proj_dims, dims.out_width, dims.hidden, dims.n_mel);

    g4_compute c;
    g4_backend be;
    CHECK(g4_compute_init(&c, 4, dims.max_input_width) == 0 && g4_backend_cpu_init(&be, &c, &err) == 0, "compute init");
    printf("kernels: %s\n", c.ops->name);
    const char *clips[] = {"speech", "tone", "long"};
    for (size_t i = 0; i < 3; i++) check_clip(a, &be, golden, clips[i]);
    check_bad_calls(a, &be);
    be.destroy(&be);
    g4_compute_free(&c);
    /* The portable kernels, one thread. */
    setenv("GEMMA4C_KERNELS", "portable", 1);
    CHECK(g4_compute_init(&c, 1, dims.max_input_width) == 0 && g4_backend_cpu_init(&be, &c, &err) == 0, "compute init");
    printf("kernels: %s\n", c.ops->name);
    check_clip(a, &be, golden, "speech");
    be.destroy(&be);
    g4_compute_free(&c);
    unsetenv("GEMMA4C_KERNELS");

    g4_audio_encoder_free(a);
    g4_model_free(m);
    check_bad_models(dir);
    return g4t_finish("test_audio_encoder");
}
