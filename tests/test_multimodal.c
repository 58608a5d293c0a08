/* test_multimodal.c — text, an image, audio and video through the public API, from the files to the logits (1e-4). */
#include "test.h"

#include "gemma4c.h"
#include "golden_util.h"
#include "runtime/engine.h"

int main(int argc, char **argv) {
    g4t_parse_device(&argc, argv);
    const char *golden = g4t_require_golden();
    char ckpt[4200], path[4200], image[4200], audio[4200], video[4200], err[512];
    snprintf(ckpt, sizeof ckpt, "%s/tiny/checkpoint", golden);
    snprintf(path, sizeof path, "%s/tiny/reference/multimodal.safetensors", golden);
    snprintf(image, sizeof image, "%s/media/chelsea.png", golden);
    snprintf(audio, sizeof audio, "%s/media/speech_16k.wav", golden);
    snprintf(video, sizeof video, "%s/media/clip.mp4", golden);
    g4_err e = {0};
    g4_st_file *ref;
    if (g4_st_open(path, &ref, &e)) {
        CHECK(0, "%s", e.msg);
        return g4t_finish("test_multimodal");
    }
    int64_t T, n_logits;
    int32_t *ids = g4t_tensor_i32(ref, "input_ids", &T);
    float *want = g4t_tensor_f32(ref, "logits", &n_logits);
    gemma4c_model_params mp = {.model = ckpt, .n_threads = 2, .n_batch = 128, .device = g4t_device};
    gemma4c_model *m;
    gemma4c_session *s;
    int rc = gemma4c_model_load(&mp, &m, err, sizeof err);
    g4t_skip_without_device(rc, err);
    if (rc || gemma4c_session_new(m, NULL, &s, err, sizeof err)) {
        CHECK(0, "%s", err);
        return g4t_finish("test_multimodal");
    }
    gemma4c_model_info info;
    gemma4c_special_tokens st;
    gemma4c_model_get_info(m, &info);
    gemma4c_special_tokens_get(m, &st);
    const int64_t V = info.vocab_size;
    CHECK(n_logits == T * V, "logits size");

    /* The media from their files, in order, fill the placeholder runs of the reference's ids. */
    gemma4c_media media[] = {{GEMMA4C_MEDIA_IMAGE, image, NULL, 0, 0}, {GEMMA4C_MEDIA_AUDIO, audio, NULL, 0, 0}};
    float *got = malloc((size_t)(T * V) * sizeof(float));
    CHECK(gemma4c_logits(s, ids, (size_t)T, media, 2, got, err, sizeof err) == 0, "%s", err);
    double rel = g4t_rel_err(got, want, T * V);
    int same = 0;
    for (int64_t t = 0; t < T; t++) same += g4t_argmax(got + t * V, V) == g4t_argmax(want + t * V, V);
    printf("multimodal prompt (%lld tokens: 260 image, 170 audio): logits rel err %.2e, argmax %d/%lld\n", (long long)T,
           rel, same, (long long)T);
    CHECK(rel <= 1e-4, "multimodal logits rel err %.3e", rel);
    CHECK(same == T, "argmax differs");

    /* The same media as bytes in memory give the same logits. */
    size_t n_img = 0, n_aud = 0;
    char *img_bytes = NULL, *aud_bytes = NULL;
    CHECK(g4_read_file(image, 1 << 24, &img_bytes, &n_img, &e) == 0 && g4_read_file(audio, 1 << 24, &aud_bytes, &n_aud, &e) == 0,
          "%s", e.msg);
    gemma4c_media in_memory[] = {{GEMMA4C_MEDIA_IMAGE, NULL, img_bytes, n_img, 0}, {GEMMA4C_MEDIA_AUDIO, NULL, aud_bytes, n_aud, 0}};
    float *again = malloc((size_t)(T * V) * sizeof(float));
    CHECK(gemma4c_logits(s, ids, (size_t)T, in_memory, 2, again, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(again, got, (size_t)(T * V) * sizeof(float)) == 0, "media from memory differ from media from files");

    /* A run that does not match its media is refused, as is media without placeholders. */
    int32_t *short_ids = malloc((size_t)T * sizeof *short_ids);
    int64_t k = 0;
    for (int64_t t = 0, dropped = 0; t < T; t++) {
        if (!dropped && ids[t] == st.image) {
            dropped = 1;
            continue;
        }
        short_ids[k++] = ids[t];
    }
    CHECK(gemma4c_logits(s, short_ids, (size_t)k, media, 2, got, err, sizeof err) == GEMMA4C_ERR_ARG, "short run accepted");
    CHECK(strstr(err, "259 image placeholders") != NULL, "message: %s", err);
    int32_t text_only[] = {2, 105, 300};
    CHECK(gemma4c_logits(s, text_only, 3, media, 2, got, err, sizeof err) == GEMMA4C_ERR_ARG, "unused media accepted");
    CHECK(strstr(err, "placeholder runs") != NULL, "message: %s", err);

    /* Video: clip.mp4 through the decoder, frame sampling, the video resize and the encoder. */
    snprintf(path, sizeof path, "%s/tiny/reference/video.safetensors", golden);
    g4_st_file *vref;
    if (g4_st_open(path, &vref, &e) == 0) {
        int64_t n_want;
        float *want_v = g4t_tensor_f32(vref, "video_features", &n_want);
        gemma4c_media vm = {GEMMA4C_MEDIA_VIDEO, video, NULL, 0, 0};
        gemma4c_features *f = NULL;
        CHECK(gemma4c_encode(s, &vm, &f, err, sizeof err) == 0, "%s", err);
        if (f) {
            CHECK(f->n_blocks == 32 && f->n_tokens * f->width == n_want, "video: %lld frames, %lld tokens",
                  (long long)f->n_blocks, (long long)f->n_tokens);
            if (f->n_tokens * f->width == n_want) {
                double ev = g4t_rel_err(f->tokens, want_v, n_want);
                printf("video clip.mp4: %lld frames x %lld soft tokens, video_features rel err %.2e\n",
                       (long long)f->n_blocks, (long long)f->block_tokens[0], ev);
                CHECK(ev <= 1e-4, "video features rel err %.3e", ev);
            }
        }
        gemma4c_features_free(f);
        /* The prompt places each frame after its timestamp, as the processor writes it. */
        gemma4c_input vin = {.messages_json = "[{\"role\":\"user\",\"content\":[{\"type\":\"video\"},{\"type\":\"text\","
                                              "\"text\":\"What happens?\"}]}]",
                             .media = &vm, .n_media = 1};
        int32_t *vids = NULL;
        size_t n_vids = 0, len = 0;
        CHECK(gemma4c_input_ids(m, &vin, &vids, &n_vids, err, sizeof err) == 0, "%s", err);
        char *text = malloc(n_vids * 16 + 1);
        CHECK(gemma4c_detokenize(m, vids, n_vids, 0, text, n_vids * 16 + 1, &len, err, sizeof err) == 0, "%s", err);
        CHECK(strstr(text, "00:00 <|image>") && strstr(text, "<image|> 00:07 <|image>"), "timestamps: %.200s", text);
        free(text);
        gemma4c_free(vids);
        free(want_v);
        g4_st_close(vref);
    }
    /* gemma4c_input_ids leaves the media it decoded for the submission of the same input (a server asks for the
     * ids first), which takes them rather than decoding again; the model keeps only the last few. */
    {
        g4_engine *eng = (g4_engine *)m;
        gemma4c_input chat = {.messages_json = "[{\"role\":\"user\",\"content\":[{\"type\":\"image\"},"
                                               "{\"type\":\"text\",\"text\":\"What is it?\"}]}]",
                              .media = media, .n_media = 1};
        int32_t *cids = NULL;
        size_t n_cids = 0;
        CHECK(gemma4c_input_ids(m, &chat, &cids, &n_cids, err, sizeof err) == 0, "%s", err);
        g4_medium *left = eng->handoff[0];
        CHECK(left != NULL, "the decoded image left on the model");
        gemma4c_session *s2 = NULL;
        gemma4c_input by_ids = {.ids = cids, .n_ids = n_cids, .media = media, .n_media = 1};
        gemma4c_generate_options one = {.max_tokens = 1};
        CHECK(gemma4c_session_new(m, NULL, &s2, err, sizeof err) == 0 &&
                  gemma4c_generate(s2, &by_ids, &one, NULL, NULL, NULL, err, sizeof err) == 0, "%s", err);
        int still = 0;
        for (int k = 0; k < G4_HANDOFF_MEDIA; k++) still |= eng->handoff[k] == left;
        CHECK(left && !still, "the submission took the image");
        CHECK(s2 && ((g4_session *)s2)->n_media == 1 && ((g4_session *)s2)->media[0] == left,
              "the session holds the image gemma4c_input_ids decoded, not a second decoding");
        gemma4c_session_free(s2);
        gemma4c_free(cids);
        static const int budgets[] = {70, 140, 280, 560, 1120, 0}; /* different budgets: different media */
        for (int k = 0; k < 6; k++) {
            gemma4c_media budget = {GEMMA4C_MEDIA_IMAGE, image, NULL, 0, budgets[k]};
            gemma4c_input one_image = {.messages_json = chat.messages_json, .media = &budget, .n_media = 1};
            CHECK(gemma4c_input_ids(m, &one_image, &cids, &n_cids, err, sizeof err) == 0, "%s", err);
            gemma4c_free(cids);
        }
        int held = 0;
        for (int k = 0; k < G4_HANDOFF_MEDIA; k++) held += eng->handoff[k] != NULL;
        CHECK(held == G4_HANDOFF_MEDIA, "%d media left on the model (at most %d)", held, G4_HANDOFF_MEDIA);
    }
    free(img_bytes), free(aud_bytes), free(again);
    free(short_ids);
    free(got);
    free(ids);
    free(want);
    gemma4c_session_free(s);
    gemma4c_model_free(m);
    g4_st_close(ref);
    return g4t_finish("test_multimodal");
}
