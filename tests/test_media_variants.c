/* test_media_variants.c — images, audio and a mixed prompt through encoders of other shapes, from the files (1e-4). */
#include "test.h"

#include <cjson/cJSON.h>

#include "gemma4c.h"
#include "golden_util.h"

#define TOL 1e-4
#define VARIANT "tests/data/variants/towers"

/* cases.json names its files relative to the golden folder when they start with "media/" (the shared golden
 * media), and relative to the variant's folder otherwise (clips made for it). */
static void media_path(const char *golden, const char *file, char *out, size_t n) {
    if (strncmp(file, "media/", 6) == 0) snprintf(out, n, "%s/%s", golden, file);
    else snprintf(out, n, "%s/%s", VARIANT, file);
}

/* The case's reference file (its "reference", in the variant's folder), or NULL after a failed check. */
static g4_st_file *open_reference(const cJSON *c) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", VARIANT, cJSON_GetStringValue(cJSON_GetObjectItem(c, "reference")));
    g4_st_file *f = NULL;
    g4_err e = {0};
    if (g4_st_open(path, &f, &e)) CHECK(0, "%s", e.msg);
    return f;
}

/* One medium encoded from its file against the reference's features; returns 1 when it was compared. */
static int check_encode(gemma4c_session *s, const char *golden, const cJSON *c) {
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItem(c, "kind"));
    const char *file = cJSON_GetStringValue(cJSON_GetObjectItem(c, "file"));
    const int want_tokens = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(c, "tokens"));
    const int image = strcmp(kind, "image") == 0;
    char path[4400], err[512];
    media_path(golden, file, path, sizeof path);
    gemma4c_media md = {image ? GEMMA4C_MEDIA_IMAGE : GEMMA4C_MEDIA_AUDIO, path, NULL, 0,
                        image ? (int)cJSON_GetNumberValue(cJSON_GetObjectItem(c, "budget")) : 0};
    int64_t n_want = 0;
    g4_st_file *rf = open_reference(c);
    float *want = rf ? g4t_tensor_f32(rf, image ? "image_features" : "audio_features", &n_want) : NULL;
    if (rf) g4_st_close(rf);
    gemma4c_features *f = NULL;
    int rc = gemma4c_encode(s, &md, &f, err, sizeof err);
    CHECK(rc == 0, "%s: %s", file, err);
    int compared = 0;
    if (!rc && want) {
        CHECK(f->n_tokens == want_tokens && f->n_tokens * f->width == n_want, "%s: %lld soft tokens x %lld, reference %d",
              file, (long long)f->n_tokens, (long long)f->width, want_tokens);
        if (f->n_tokens * f->width == n_want) {
            double e = g4t_rel_err(f->tokens, want, n_want);
            char budget[32] = "";
            if (image) snprintf(budget, sizeof budget, " at budget %d", md.max_soft_tokens);
            printf("%-6s %s%s: %lld soft tokens, features rel err %.2e\n", kind, file, budget, (long long)f->n_tokens, e);
            CHECK(e <= TOL, "%s (budget %d): features rel err %.3e", file, md.max_soft_tokens, e);
            compared = 1;
        }
    }
    gemma4c_features_free(f);
    free(want);
    return compared;
}

/* The clip's sampled frames, each through the video resize and the tower; the reference keeps four frames. */
static int check_video(gemma4c_session *s, const char *golden, const cJSON *c) {
    char path[4400], err[512];
    media_path(golden, cJSON_GetStringValue(cJSON_GetObjectItem(c, "file")), path, sizeof path);
    const int64_t frames = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(c, "frames"));
    const int64_t per = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(c, "tokens_per_frame"));
    g4_st_file *f = open_reference(c);
    if (!f) return 0;
    int64_t n_pick = 0, n_want = 0;
    int32_t *pick = g4t_tensor_i32(f, "frames", &n_pick);
    float *want = g4t_tensor_f32(f, "video_features", &n_want);
    g4_st_close(f);
    gemma4c_media md = {GEMMA4C_MEDIA_VIDEO, path, NULL, 0, 0};
    gemma4c_features *v = NULL;
    int rc = gemma4c_encode(s, &md, &v, err, sizeof err), compared = 0;
    CHECK(rc == 0, "%s: %s", path, err);
    if (!rc) {
        CHECK(v->n_blocks == frames && v->n_tokens == frames * per, "video: %lld frames, %lld soft tokens; reference %lld x %lld",
              (long long)v->n_blocks, (long long)v->n_tokens, (long long)frames, (long long)per);
        if (v->n_blocks == frames && v->n_tokens == frames * per && n_want == n_pick * per * v->width) {
            double worst = 0;
            for (int64_t k = 0; k < n_pick; k++) {
                CHECK(pick[k] >= 0 && pick[k] < frames, "frame index %d", pick[k]);
                if (pick[k] < 0 || pick[k] >= frames) continue;
                double ek = g4t_rel_err(v->tokens + pick[k] * per * v->width, want + k * per * v->width, per * v->width);
                CHECK(ek <= TOL, "video frame %d: features rel err %.3e", pick[k], ek);
                worst = ek > worst ? ek : worst;
            }
            printf("video  %-22s %lld frames x %lld soft tokens, features of %lld frames: worst rel err %.2e\n",
                   cJSON_GetStringValue(cJSON_GetObjectItem(c, "file")), (long long)frames, (long long)per,
                   (long long)n_pick, worst);
            compared = 1;
        } else
            CHECK(0, "video reference holds %lld values for %lld frames", (long long)n_want, (long long)n_pick);
    }
    gemma4c_features_free(v);
    free(pick);
    free(want);
    return compared;
}

/* The interleaved prompt: the placeholder runs of the reference's ids take the media from their files. */
static int check_prompt(gemma4c_model *m, gemma4c_session *s, const char *golden, const cJSON *c) {
    const cJSON *files = cJSON_GetObjectItem(c, "media");
    const int budget = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(c, "budget"));
    char img[4400], aud[4400], err[512];
    media_path(golden, cJSON_GetStringValue(cJSON_GetArrayItem(files, 0)), img, sizeof img);
    media_path(golden, cJSON_GetStringValue(cJSON_GetArrayItem(files, 1)), aud, sizeof aud);
    g4_st_file *f = open_reference(c);
    if (!f) return 0;
    int64_t T = 0, n_logits = 0;
    int32_t *ids = g4t_tensor_i32(f, "input_ids", &T);
    float *want = g4t_tensor_f32(f, "logits", &n_logits);
    g4_st_close(f);
    gemma4c_model_info info;
    gemma4c_model_get_info(m, &info);
    const int64_t V = info.vocab_size;
    CHECK(n_logits == T * V, "logits [%lld x %lld]", (long long)T, (long long)V);
    int compared = 0;
    if (n_logits == T * V) {
        gemma4c_media media[] = {{GEMMA4C_MEDIA_IMAGE, img, NULL, 0, budget}, {GEMMA4C_MEDIA_AUDIO, aud, NULL, 0, 0}};
        float *got = malloc((size_t)(T * V) * sizeof(float));
        CHECK(gemma4c_logits(s, ids, (size_t)T, media, 2, got, err, sizeof err) == 0, "%s", err);
        double rel = g4t_rel_err(got, want, T * V);
        int same = 0;
        for (int64_t t = 0; t < T; t++) same += g4t_argmax(got + t * V, V) == g4t_argmax(want + t * V, V);
        printf("prompt of %lld tokens (text, an image, text, audio, text): logits rel err %.2e, argmax %d/%lld\n",
               (long long)T, rel, same, (long long)T);
        CHECK(rel <= TOL, "prompt logits rel err %.3e", rel);
        CHECK(same == T, "argmax differs at %lld positions", (long long)(T - same));
        free(got);
        compared = 1;
    }
    free(ids);
    free(want);
    return compared;
}

int main(void) {
    const char *golden = g4t_require_golden();
    char *text = g4t_read_text(VARIANT "/cases.json");
    cJSON *cases = text ? cJSON_Parse(text) : NULL;
    CHECK(cJSON_IsArray(cases), "cannot read %s/cases.json", VARIANT);
    free(text);
    if (!cJSON_IsArray(cases)) return g4t_finish("test_media_variants");

    char err[512];
    gemma4c_model_params mp = {.model = VARIANT "/checkpoint", .n_threads = 2, .n_batch = 64};
    gemma4c_model *m = NULL;
    gemma4c_session *s = NULL;
    if (gemma4c_model_load(&mp, &m, err, sizeof err) || gemma4c_session_new(m, NULL, &s, err, sizeof err)) {
        CHECK(0, "%s", err);
        cJSON_Delete(cases);
        gemma4c_model_free(m);
        return g4t_finish("test_media_variants");
    }
    int images = 0, clips = 0, videos = 0, prompts = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *kind = cJSON_GetStringValue(cJSON_GetObjectItem(c, "kind"));
        if (!kind) continue;
        if (strcmp(kind, "image") == 0) images += check_encode(s, golden, c);
        else if (strcmp(kind, "audio") == 0) clips += check_encode(s, golden, c);
        else if (strcmp(kind, "video") == 0) videos += check_video(s, golden, c);
        else if (strcmp(kind, "prompt") == 0) prompts += check_prompt(m, s, golden, c);
    }
    /* every budget the processor accepts, both clips, the video, the prompt: a missing case is a failure */
    CHECK(images == 5 && clips == 2 && videos == 1 && prompts == 1,
          "compared %d images, %d clips, %d videos, %d prompts (want 5, 2, 1, 1)", images, clips, videos, prompts);
    cJSON_Delete(cases);
    gemma4c_session_free(s);
    gemma4c_model_free(m);
    return g4t_finish("test_media_variants");
}
