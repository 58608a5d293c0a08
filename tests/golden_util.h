/* golden_util.h — reading golden reference tensors and measuring how far an output is from them. */
#ifndef G4_GOLDEN_UTIL_H
#define G4_GOLDEN_UTIL_H

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/mapfile.h"
#include "format/safetensors.h"

/* A whole text file (a config, say), NUL-terminated, or NULL when it cannot be read. */
static inline char *g4t_read_text(const char *path) {
    char *s = NULL;
    g4_err err = {0};
    return g4_read_file(path, (size_t)16 << 20, &s, NULL, &err) ? NULL : s;
}

/* A float copy of a reference tensor (any numeric dtype); exits the test when it is missing. */
static inline float *g4t_tensor_f32(const g4_st_file *f, const char *name, int64_t *numel) {
    const g4_tensor *t = g4_st_find(f, name);
    if (!t) {
        fprintf(stderr, "reference tensor %s missing\n", name);
        exit(1);
    }
    int64_t n = g4_tensor_numel(t);
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!v) exit(1);
    for (int64_t i = 0; i < n; i++) v[i] = g4_tensor_get_f32(t, i);
    if (numel) *numel = n;
    return v;
}

static inline int32_t *g4t_tensor_i32(const g4_st_file *f, const char *name, int64_t *numel) {
    int64_t n;
    float *v = g4t_tensor_f32(f, name, &n);
    int32_t *ids = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    if (!ids) exit(1);
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)v[i];
    free(v);
    if (numel) *numel = n;
    return ids;
}

/* max |got - want| divided by the range (max - min) of want: the "relative over the logit range" measure. */
static inline double g4t_rel_err(const float *got, const float *want, int64_t n) {
    double lo = INFINITY, hi = -INFINITY, worst = 0;
    for (int64_t i = 0; i < n; i++) {
        if (want[i] < lo) lo = want[i];
        if (want[i] > hi) hi = want[i];
        double e = fabs((double)got[i] - (double)want[i]);
        if (!(e <= worst)) worst = e; /* NaN counts as the worst */
    }
    double range = hi - lo;
    return range > 0 ? worst / range : worst;
}

static inline int64_t g4t_argmax(const float *v, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* The same config with a two-layer text stack (one sliding, one full, no KV sharing): the towers' weights do not
 * depend on the text layers, so a full-size tower can be built without the 8 GB text model. Caller frees. */
static inline char *g4t_config_with_small_text(const char *config_json) {
    cJSON *root = cJSON_Parse(config_json);
    cJSON *text = root ? cJSON_GetObjectItem(root, "text_config") : NULL;
    if (!text) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_ReplaceItemInObject(text, "num_hidden_layers", cJSON_CreateNumber(2));
    cJSON_ReplaceItemInObject(text, "num_kv_shared_layers", cJSON_CreateNumber(0));
    const char *types[] = {"sliding_attention", "full_attention"};
    cJSON_ReplaceItemInObject(text, "layer_types", cJSON_CreateStringArray(types, 2));
    cJSON_DeleteItemFromObject(text, "per_layer_config");
    cJSON_DeleteItemFromObject(text, "global_head_dim");
    cJSON_AddNumberToObject(text, "global_head_dim", 512);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

/* Makes `dir` a checkpoint that is `src` (the golden tiny checkpoint, say) under another config.json: a link to
 * every other file of src (replacing what dir had under those names) and `config_text` as config.json. 0 or -1. */
static inline int g4t_link_checkpoint(const char *src, const char *dir, const char *config_text) {
    DIR *dp = opendir(src);
    if (!dp) return -1;
    char from[4400], to[4400];
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(dp));) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "config.json") == 0) continue;
        snprintf(from, sizeof from, "%s/%s", src, e->d_name);
        snprintf(to, sizeof to, "%s/%s", dir, e->d_name);
        unlink(to);
        rc = symlink(from, to) ? -1 : 0;
    }
    closedir(dp);
    snprintf(to, sizeof to, "%s/config.json", dir);
    FILE *f = rc == 0 && config_text ? fopen(to, "wb") : NULL;
    if (!f) return -1;
    int written = fputs(config_text, f) >= 0;
    return fclose(f) == 0 && written ? 0 : -1;
}

#endif
