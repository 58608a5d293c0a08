/* test_vision.c — the vision tower and embedder against transformers on the golden tiny checkpoint (1e-4 relative). */
#include "test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <unistd.h>

#include "golden_util.h"
#include "model/model.h"
#include "model/vision.h"

#define TOL 1e-4

typedef struct golden_image {
    int64_t n_patches, patch_dim;
    float *pixels;      /* [n_patches][patch_dim], pixel_values_u8 / 255 as the processor gives them */
    int32_t *positions; /* [n_patches][2] */
    int32_t n_soft;
    float *tower, *features;
} golden_image;

static void golden_image_read(const g4_st_file *f, golden_image *g) {
    const g4_tensor *t = g4_st_find(f, "pixel_values_u8");
    CHECK(t && t->ndim == 2, "pixel_values_u8 [n, patch_dim]");
    if (!t || t->ndim != 2) exit(1);
    g->n_patches = t->shape[0], g->patch_dim = t->shape[1];
    g->pixels = g4t_tensor_f32(f, "pixel_values_u8", NULL);
    /* The golden README: pixel_values = pixel_values_u8 / 255 exactly (the correctly rounded float32 quotient). */
    for (int64_t i = 0; i < g->n_patches * g->patch_dim; i++) g->pixels[i] = g->pixels[i] / 255.0f;
    g->positions = g4t_tensor_i32(f, "image_position_ids", NULL);
    int32_t *ns = g4t_tensor_i32(f, "num_soft_tokens", NULL);
    g->n_soft = ns[0];
    free(ns);
    g->tower = g4t_tensor_f32(f, "vision_tower_output", NULL);
    g->features = g4t_tensor_f32(f, "image_features", NULL);
}

static void golden_image_free(golden_image *g) {
    free(g->pixels), free(g->positions), free(g->tower), free(g->features);
}

/* Encodes one golden image and compares both outputs; returns the image-features error. */
static double check_image(const g4_vision *v, g4_backend *c, const char *label, const golden_image *g) {
    const int64_t D = v->cfg.hidden_size, TH = v->cfg.text_hidden_size;
    const int cap = g4_vision_max_soft_tokens(v, (int)g->n_patches);
    float *out = calloc((size_t)cap * (size_t)TH, sizeof(float)), *tower = calloc((size_t)cap * (size_t)D, sizeof(float));
    g4_vision_probe probe = {tower};
    g4_err err = {0};
    int n_soft = -1;
    int rc = g4_vision_encode_probe(v, c, g->pixels, g->positions, (int)g->n_patches, out, &n_soft, &probe, &err);
    CHECK(rc == 0, "%s: %s", label, err.msg);
    CHECK(n_soft == g->n_soft, "%s: %d soft tokens, reference %d", label, n_soft, g->n_soft);
    double e_tower = 1, e_feat = 1;
    if (rc == 0 && n_soft == g->n_soft) {
        e_tower = g4t_rel_err(tower, g->tower, (int64_t)n_soft * D);
        e_feat = g4t_rel_err(out, g->features, (int64_t)n_soft * TH);
    }
    printf("%-28s %4lld patches -> %3d soft tokens: vision_tower_output %.2e  image_features %.2e\n", label,
           (long long)g->n_patches, n_soft, e_tower, e_feat);
    CHECK(e_tower <= TOL, "%s: vision_tower_output rel err %.3e", label, e_tower);
    CHECK(e_feat <= TOL, "%s: image_features rel err %.3e", label, e_feat);
    free(out);
    free(tower);
    return e_feat;
}

/* The padding must not matter: the same image without its padding rows gives the same numbers. */
static void check_without_padding(const g4_vision *v, g4_backend *c, const golden_image *g) {
    golden_image s = *g;
    s.n_patches = 0;
    for (int64_t i = 0; i < g->n_patches; i++)
        if (!(g->positions[2 * i] == -1 && g->positions[2 * i + 1] == -1)) s.n_patches++;
    CHECK(s.n_patches < g->n_patches, "the photo has padding");
    check_image(v, c, "photo, padding removed", &s);
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void check_golden_files(const g4_vision *v, g4_backend *c, const char *golden) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tiny/reference", golden);
    DIR *d = opendir(dir);
    CHECK(d != NULL, "cannot list %s", dir);
    if (!d) return;
    char *names[64];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 64;) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "vision_", 7) == 0 && len > 12 && strcmp(e->d_name + len - 12, ".safetensors") == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, compare_names);
    CHECK(n >= 5, "expected the five vision golden files, found %d", n);
    for (int i = 0; i < n; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        g4_st_file *f = NULL;
        g4_err err = {0};
        CHECK(g4_st_open(path, &f, &err) == 0, "%s", err.msg);
        if (f) {
            golden_image g;
            golden_image_read(f, &g);
            CHECK(g.patch_dim == 3LL * v->cfg.patch_size * v->cfg.patch_size, "%s: patch width %lld", names[i], (long long)g.patch_dim);
            check_image(v, c, names[i], &g);
            if (strcmp(names[i], "vision_photo.safetensors") == 0) check_without_padding(v, c, &g);
            golden_image_free(&g);
            g4_st_close(f);
        }
        free(names[i]);
    }
}

/* Bad calls give an error and a message, never a crash or a write past the output. */
static void check_bad_inputs(const g4_vision *v, g4_backend *c, const golden_image *g) {
    const int64_t TH = v->cfg.text_hidden_size;
    const int cap = g4_vision_max_soft_tokens(v, (int)g->n_patches);
    float *out = calloc((size_t)cap * (size_t)TH, sizeof(float));
    int32_t *pos = malloc((size_t)g->n_patches * 2 * sizeof(int32_t));
    g4_err err = {0};
    int n_soft = 123;

    CHECK(g4_vision_encode(v, c, g->pixels, g->positions, 0, out, &n_soft, &err) == GEMMA4C_ERR_ARG, "0 patches");
    CHECK(n_soft == 0 && err.msg[0], "0 patches: n_soft %d, message \"%s\"", n_soft, err.msg);
    printf("0 patches -> %s\n", err.msg);
    g4_err_clear(&err);
    CHECK(g4_vision_encode(v, c, g->pixels, g->positions, -9, out, &n_soft, &err) == GEMMA4C_ERR_ARG, "negative count");
    CHECK(g4_vision_encode(v, c, g->pixels, g->positions, (int)g->n_patches - 1, out, &n_soft, &err) == GEMMA4C_ERR_ARG,
          "a count that is not a multiple of k^2");
    printf("%lld patches -> %s\n", (long long)g->n_patches - 1, err.msg);
    CHECK(g4_vision_encode(v, c, NULL, g->positions, (int)g->n_patches, out, &n_soft, &err) == GEMMA4C_ERR_ARG, "NULL pixels");

    int32_t bad[][2] = {{(int32_t)v->cfg.position_embedding_size, 0}, {0, (int32_t)v->cfg.position_embedding_size},
                        {-2, 0}, {-1, 0}, {0, -1}, {INT32_MIN, 3}};
    for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
        memcpy(pos, g->positions, (size_t)g->n_patches * 2 * sizeof(int32_t));
        pos[2 * 7] = bad[b][0], pos[2 * 7 + 1] = bad[b][1];
        g4_err_clear(&err);
        int rc = g4_vision_encode(v, c, g->pixels, pos, (int)g->n_patches, out, &n_soft, &err);
        CHECK(rc == GEMMA4C_ERR_ARG && err.msg[0], "position (%d, %d): rc %d", bad[b][0], bad[b][1], rc);
        if (b == 0) printf("position out of range -> %s\n", err.msg);
    }
    /* A grid too wide for the slots: one patch far to the right pools beyond n_patches / k^2 cells. */
    memcpy(pos, g->positions, (size_t)g->n_patches * 2 * sizeof(int32_t));
    pos[0] = 5000, pos[1] = 9000;
    g4_err_clear(&err);
    CHECK(g4_vision_encode(v, c, g->pixels, pos, (int)g->n_patches, out, &n_soft, &err) == GEMMA4C_ERR_ARG,
          "positions beyond the pooling slots");
    printf("positions beyond the slots -> %s\n", err.msg);
    for (int64_t i = 0; i < g->n_patches * 2; i++) pos[i] = -1;
    g4_err_clear(&err);
    CHECK(g4_vision_encode(v, c, g->pixels, pos, (int)g->n_patches, out, &n_soft, &err) == GEMMA4C_ERR_ARG,
          "all padding");
    printf("all padding -> %s\n", err.msg);

    /* A compute context narrower than the tower grows to fit it, and computes the same. */
    g4_compute small;
    g4_backend narrow;
    CHECK(g4_compute_init(&small, 1, 8) == 0 && g4_backend_cpu_init(&narrow, &small, &err) == 0, "compute init");
    const int rows = g4_vision_max_soft_tokens(v, (int)g->n_patches);
    float *wide_out = malloc((size_t)rows * (size_t)v->cfg.text_hidden_size * sizeof(float));
    int n_wide = 0;
    CHECK(g4_vision_encode(v, c, g->pixels, g->positions, (int)g->n_patches, wide_out, &n_wide, &err) == 0, "%s", err.msg);
    CHECK(g4_vision_encode(v, &narrow, g->pixels, g->positions, (int)g->n_patches, out, &n_soft, &err) == 0, "%s", err.msg);
    CHECK(small.max_k >= g4_vision_max_input_width(v), "the narrow compute grew to %lld", (long long)small.max_k);
    CHECK(n_soft == n_wide && g4t_rel_err(out, wide_out, (int64_t)n_soft * v->cfg.text_hidden_size) < 1e-6,
          "a grown compute context computes the same");
    free(wide_out);
    narrow.destroy(&narrow);
    g4_compute_free(&small);
    free(out);
    free(pos);
}

/* The tiny config with vision_config removed, or its `key` set to `value` (taken over), as JSON text. */
static char *edited_config(const char *golden, int drop_vision, const char *key, cJSON *value) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny/checkpoint/config.json", golden);
    char *text = g4t_read_text(path);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!root) {
        cJSON_Delete(value);
        return NULL;
    }
    if (drop_vision)
        cJSON_DeleteItemFromObjectCaseSensitive(root, "vision_config");
    else {
        cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
        if (!cJSON_ReplaceItemInObjectCaseSensitive(vc, key, value)) cJSON_AddItemToObject(vc, key, value);
    }
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    return out;
}

/* A model without a vision tower, and a checkpoint whose config disagrees with its vision weights. */
static void check_load_errors(const char *golden) {
    g4_err err = {0};
    char *cfg = edited_config(golden, 1, NULL, NULL);
    CHECK(cfg != NULL, "tiny config");
    g4_model *m = NULL;
    CHECK(cfg && g4_model_synthetic(cfg, NULL, 1, &m, &err) == 0, "text-only synthetic model: %s", err.msg);
    if (m) {
        g4_vision *v = (g4_vision *)1;
        int rc = g4_vision_load(m, &v, &err);
        CHECK(rc == GEMMA4C_ERR_UNSUPPORTED && v == NULL, "loading vision from a text-only model: rc %d", rc);
        CHECK(strstr(err.msg, "no vision tower") != NULL, "message: %s", err.msg);
        printf("text-only model -> %s\n", err.msg);
        g4_model_free(m);
    }
    free(cfg);

    /* The real checkpoint files beside a config.json that claims another vision width. */
    char tmpl[] = "/tmp/g4_vision_test_XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL, "mkdtemp");
    cfg = edited_config(golden, 0, "intermediate_size", cJSON_CreateNumber(48));
    if (!dir || !cfg) {
        free(cfg);
        return;
    }
    char src[4400];
    snprintf(src, sizeof src, "%s/tiny/checkpoint", golden);
    CHECK(g4t_link_checkpoint(src, dir, cfg) == 0, "could not link the checkpoint into %s", dir);
    m = NULL;
    g4_err_clear(&err);
    CHECK(g4_model_load_dir(dir, &m, &err) == 0, "edited checkpoint: %s", err.msg);
    if (m) {
        g4_vision *v = NULL;
        int rc = g4_vision_load(m, &v, &err);
        CHECK(rc == GEMMA4C_ERR_SHAPE && v == NULL, "a vision width the weights do not have: rc %d", rc);
        printf("config disagrees with weights -> %s\n", err.msg);
        g4_model_free(m);
    }
    g4t_rm_tree(dir);
    free(cfg);
}

/* Bad vision_config fields: refused when the tower loads, with a message naming the field by its full path. */
static void check_bad_config(const char *golden) {
    struct {
        const char *key;
        const char *value; /* JSON */
        const char *needle;
    } cases[] = {
        {"hidden_size", "1e300", "vision_config.hidden_size must be an integer in [1, 65536]"},
        {"num_hidden_layers", "2.5", "vision_config.num_hidden_layers must be an integer"},
        {"patch_size", "\"16\"", "vision_config.patch_size must be an integer"},
        {"rms_norm_eps", "0", "vision_config.rms_norm_eps must be a number in (0, 1]"},
        {"standardize", "1", "vision_config.standardize must be true or false"},
        {"rope_parameters", "[]", "vision_config.rope_parameters must be an object"},
        {"rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": -1}",
         "vision_config.rope_parameters.rope_theta must be a number in (0, 1e+12]"},
        {"rope_parameters", "{\"rope_theta\": 1e13}", "vision_config.rope_parameters.rope_theta must be a number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *cfg = edited_config(golden, 0, cases[i].key, cJSON_Parse(cases[i].value));
        g4_model *m = NULL;
        g4_err err = {0};
        CHECK(cfg && g4_model_synthetic(cfg, NULL, 1, &m, &err) == 0, "%s: synthetic model: %s", cases[i].key, err.msg);
        free(cfg);
        if (!m) continue;
        g4_vision *v = NULL;
        g4_err_clear(&err);
        int rc = g4_vision_load(m, &v, &err);
        CHECK(rc == GEMMA4C_ERR_FORMAT && v == NULL && strstr(err.msg, cases[i].needle) != NULL,
              "vision_config.%s = %s: rc %d \"%s\"", cases[i].key, cases[i].value, rc, err.msg);
        if (v) g4_vision_free(v);
        g4_model_free(m);
    }
}

/* Encodes one image with the tiny config's tower built from the synthetic formula, its matrices stored as
 * `quant` would store them (NULL: bf16). Returns the features (caller frees) or NULL. */
static float *synthetic_features(const char *golden, const char *quant, const golden_image *g, int *n_soft, int64_t *width) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny/checkpoint/config.json", golden);
    char *cfg = g4t_read_text(path);
    g4_model *m = NULL;
    g4_err err = {0};
    CHECK(cfg && g4_model_synthetic(cfg, quant, 1, &m, &err) == 0, "synthetic tiny (%s): %s", quant ? quant : "bf16", err.msg);
    free(cfg);
    if (!m) return NULL;
    g4_vision *v = NULL;
    float *out = NULL;
    CHECK(g4_vision_load(m, &v, &err) == 0, "synthetic vision: %s", err.msg);
    if (v) {
        /* 0-D clip bounds come from the formula too: input_min lies in [-3, -1.5] */
        CHECK(v->layers[0].q_proj.in_min <= -1.5f && v->layers[0].q_proj.in_min >= -3.0f, "synthetic input_min %g",
              v->layers[0].q_proj.in_min);
        g4_compute c;
        g4_backend be;
        CHECK(g4_compute_init(&c, 2, g4_vision_max_input_width(v)) == 0 && g4_backend_cpu_init(&be, &c, &err) == 0,
              "compute init");
        const int cap = g4_vision_max_soft_tokens(v, (int)g->n_patches);
        *width = v->cfg.text_hidden_size;
        out = malloc((size_t)cap * (size_t)*width * sizeof(float));
        CHECK(g4_vision_encode(v, &be, g->pixels, g->positions, (int)g->n_patches, out, n_soft, &err) == 0, "%s", err.msg);
        CHECK(*n_soft == g->n_soft, "synthetic: %d soft tokens", *n_soft);
        int finite = 1;
        for (int64_t i = 0; i < (int64_t)*n_soft * *width; i++) finite &= isfinite(out[i]) != 0;
        CHECK(finite, "synthetic features are finite");
        be.destroy(&be);
        g4_compute_free(&c);
        g4_vision_free(v);
    }
    g4_model_free(m);
    return out;
}

/* The synthetic formula binds the same tensors and runs through the same code, and 8-bit matrices (what
 * `gemma4c convert` stores encoders as) stay close to bf16. */
static void check_synthetic_tiny(const char *golden, const golden_image *g) {
    int n_bf16 = 0, n_q8 = 0;
    int64_t width = 0;
    float *bf16 = synthetic_features(golden, NULL, g, &n_bf16, &width);
    float *q8 = synthetic_features(golden, "q8", g, &n_q8, &width);
    if (bf16 && q8 && n_bf16 == n_q8) {
        double e = g4t_rel_err(q8, bf16, (int64_t)n_q8 * width);
        printf("synthetic tiny tower: q8 matrices vs bf16: image_features rel err %.2e\n", e);
        CHECK(e <= 2e-2, "q8 vs bf16 rel err %.3e", e);
    }
    free(bf16);
    free(q8);
}

/* standardize (the 26B/31B towers): tower output = (pooled - std_bias) * std_scale, checked on the synthetic
 * tiny tower with and without it (the formula gives both the same weights). */
static void check_standardize(const char *golden, const golden_image *g) {
    float *tower[2] = {NULL, NULL};
    int n_soft[2] = {0, 0};
    g4_vision *keep = NULL;
    g4_model *models[2] = {NULL, NULL};
    for (int on = 0; on < 2; on++) {
        char *cfg = edited_config(golden, 0, "standardize", cJSON_CreateBool(on));
        g4_err err = {0};
        CHECK(cfg && g4_model_synthetic(cfg, NULL, 1, &models[on], &err) == 0, "synthetic: %s", err.msg);
        free(cfg);
        if (!models[on]) continue;
        g4_vision *v = NULL;
        CHECK(g4_vision_load(models[on], &v, &err) == 0, "standardize %d: %s", on, err.msg);
        if (!v) continue;
        CHECK((v->std_bias != NULL) == on && v->cfg.standardize == on, "std_bias bound only with standardize");
        g4_compute c;
        g4_backend be;
        CHECK(g4_compute_init(&c, 2, g4_vision_max_input_width(v)) == 0 && g4_backend_cpu_init(&be, &c, &err) == 0,
              "compute init");
        const int cap = g4_vision_max_soft_tokens(v, (int)g->n_patches);
        float *out = malloc((size_t)cap * (size_t)v->cfg.text_hidden_size * sizeof(float));
        tower[on] = malloc((size_t)cap * (size_t)v->cfg.hidden_size * sizeof(float));
        g4_vision_probe probe = {tower[on]};
        CHECK(g4_vision_encode_probe(v, &be, g->pixels, g->positions, (int)g->n_patches, out, &n_soft[on], &probe, &err) == 0,
              "%s", err.msg);
        free(out);
        be.destroy(&be);
        g4_compute_free(&c);
        if (on)
            keep = v;
        else
            g4_vision_free(v);
    }
    if (keep && tower[0] && tower[1] && n_soft[0] == n_soft[1] && n_soft[0] > 0) {
        const int64_t D = keep->cfg.hidden_size;
        int64_t differ = 0;
        for (int64_t t = 0; t < n_soft[0]; t++)
            for (int64_t i = 0; i < D; i++)
                differ += tower[1][t * D + i] != (tower[0][t * D + i] - keep->std_bias[i]) * keep->std_scale[i];
        printf("standardize: %lld of %lld tower values differ from (pooled - std_bias) * std_scale\n", (long long)differ,
               (long long)(n_soft[0] * D));
        CHECK(differ == 0, "standardize: %lld values differ", (long long)differ);
    }
    g4_vision_free(keep);
    g4_model_free(models[0]);
    g4_model_free(models[1]);
    free(tower[0]);
    free(tower[1]);
}

int main(void) {
    const char *golden = g4t_require_golden();
    char path[4200];
    g4_err err = {0};
    snprintf(path, sizeof path, "%s/tiny/checkpoint", golden);
    g4_model *m = NULL;
    if (g4_model_load_dir(path, &m, &err)) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 1;
    }
    g4_vision *v = NULL;
    if (g4_vision_load(m, &v, &err)) {
        fprintf(stderr, "vision: %s\n", err.msg);
        g4_model_free(m);
        return 1;
    }
    const g4_vision_config *vc = &v->cfg;
    printf("vision: %d layers, hidden %d, mlp %d, %d heads x %d, patch %d, pooling %d, clipped %d, standardize %d -> text %d\n",
           vc->num_layers, vc->hidden_size, vc->intermediate_size, vc->num_heads, vc->head_dim, vc->patch_size,
           vc->pooling_kernel_size, vc->use_clipped_linears, vc->standardize, vc->text_hidden_size);
    CHECK(vc->hidden_size == 32 && vc->text_hidden_size == m->cfg.text.hidden_size, "tiny vision widths");
    CHECK(v->layers[0].q_proj.in_min > -INFINITY && v->layers[0].q_proj.out_max < INFINITY, "clip bounds bound");

    int64_t max_k = g4_model_max_input_width(m);
    if (g4_vision_max_input_width(v) > max_k) max_k = g4_vision_max_input_width(v);
    g4_compute c;
    g4_backend be;
    CHECK(g4_compute_init(&c, 2, max_k) == 0 && g4_backend_cpu_init(&be, &c, &err) == 0, "compute init");
    printf("kernels: %s\n", c.ops->name);
    check_golden_files(v, &be, golden);

    snprintf(path, sizeof path, "%s/tiny/reference/vision_photo.safetensors", golden);
    g4_st_file *f = NULL;
    if (g4_st_open(path, &f, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    golden_image photo;
    golden_image_read(f, &photo);
    check_bad_inputs(v, &be, &photo);
    be.destroy(&be);
    g4_compute_free(&c);

    /* The portable kernels must agree too: they are what every SIMD variant is tested against. */
    setenv("GEMMA4C_KERNELS", "portable", 1);
    CHECK(g4_compute_init(&c, 1, max_k) == 0 && g4_backend_cpu_init(&be, &c, &err) == 0, "compute init");
    check_image(v, &be, "photo, portable kernels", &photo);
    be.destroy(&be);
    g4_compute_free(&c);
    unsetenv("GEMMA4C_KERNELS");

    check_load_errors(golden);
    check_bad_config(golden);
    check_synthetic_tiny(golden, &photo);
    check_standardize(golden, &photo);
    golden_image_free(&photo);
    g4_st_close(f);
    g4_vision_free(v);
    g4_model_free(m);
    return g4t_finish("test_vision");
}
