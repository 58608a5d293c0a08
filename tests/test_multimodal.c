/* test_multimodal.c — a prompt mixing text, an image and audio, from the media files to the logits (1e-4). */
#include "test.h"

#include "golden_util.h"
#include "runtime/media.h"
#include "runtime/session.h"

int main(void) {
    const char *golden = g4t_require_golden();
    char ckpt[4200], path[4200], image[4200], audio[4200];
    snprintf(ckpt, sizeof ckpt, "%s/tiny/checkpoint", golden);
    snprintf(path, sizeof path, "%s/tiny/reference/multimodal.safetensors", golden);
    snprintf(image, sizeof image, "%s/media/chelsea.png", golden);
    snprintf(audio, sizeof audio, "%s/media/speech_16k.wav", golden);
    g4_err err = {0};
    g4_st_file *ref;
    if (g4_st_open(path, &ref, &err)) {
        CHECK(0, "%s", err.msg);
        return g4t_finish("test_multimodal");
    }
    int64_t T, n_logits;
    int32_t *ids = g4t_tensor_i32(ref, "input_ids", &T);
    float *want = g4t_tensor_f32(ref, "logits", &n_logits);
    g4_session *s;
    g4_session_params sp = {2, 1024, 128, NULL};
    if (g4_session_open(ckpt, &sp, &s, &err)) {
        CHECK(0, "%s", err.msg);
        return g4t_finish("test_multimodal");
    }
    const int64_t V = s->m->cfg.text.vocab_size;
    g4_media_item items[] = {{G4_MEDIA_IMAGE, image, NULL, 0, 0}, {G4_MEDIA_AUDIO, audio, NULL, 0, 0}};
    g4_media_tokens media;
    CHECK(g4_media_encode(s, items, 2, &media, &err) == 0, "%s", err.msg);
    CHECK(media.soft[G4_SOFT_IMAGE].n == 260 && media.soft[G4_SOFT_AUDIO].n == 170, "soft tokens %lld image, %lld audio",
          (long long)media.soft[G4_SOFT_IMAGE].n, (long long)media.soft[G4_SOFT_AUDIO].n);
    CHECK(g4_media_check_runs(s->m, ids, (size_t)T, &media, &err) == 0, "%s", err.msg);
    float *got = malloc((size_t)(T * V) * sizeof(float));
    g4_forward_opts fo = {0};
    memcpy(fo.soft, media.soft, sizeof fo.soft);
    /* One call through the session's decoder, all logits. */
    CHECK(g4_decoder_forward_all_logits_with(&s->d, ids, T, &fo, got, &err) == 0, "%s", err.msg);
    double e = g4t_rel_err(got, want, T * V);
    int same = 0;
    for (int64_t t = 0; t < T; t++) same += g4t_argmax(got + t * V, V) == g4t_argmax(want + t * V, V);
    printf("multimodal prompt (%lld tokens: 260 image, 170 audio): logits rel err %.2e, argmax %d/%lld\n", (long long)T, e,
           same, (long long)T);
    CHECK(e <= 1e-4, "multimodal logits rel err %.3e", e);
    CHECK(same == T, "argmax differs");

    /* A run that does not match its media is refused, as is media without placeholders. */
    int32_t *short_ids = malloc((size_t)T * sizeof *short_ids);
    int64_t k = 0;
    int dropped = 0;
    for (int64_t t = 0; t < T; t++) {
        if (!dropped && ids[t] == s->m->cfg.image_token_id) {
            dropped = 1;
            continue;
        }
        short_ids[k++] = ids[t];
    }
    CHECK(g4_media_check_runs(s->m, short_ids, (size_t)k, &media, &err) == GEMMA4C_ERR_ARG, "short run accepted");
    printf("  short run -> %s\n", err.msg);
    int32_t text_only[] = {2, 105, 300};
    CHECK(g4_media_check_runs(s->m, text_only, 3, &media, &err) == GEMMA4C_ERR_ARG, "unused media accepted");
    printf("  no runs   -> %s\n", err.msg);
    g4_forward_opts mismatch = {0};
    memcpy(mismatch.soft, media.soft, sizeof mismatch.soft);
    g4_decoder_rewind(&s->d, 0);
    CHECK(g4_decoder_forward(&s->d, short_ids, k, &mismatch, &err) == GEMMA4C_ERR_ARG, "decoder took a count mismatch");

    /* Video: clip.mp4 through the decoder, frame sampling, the video resize and the encoder. */
    char video[4200];
    snprintf(video, sizeof video, "%s/media/clip.mp4", golden);
    snprintf(path, sizeof path, "%s/tiny/reference/video.safetensors", golden);
    g4_st_file *vref;
    if (g4_st_open(path, &vref, &err) == 0) {
        int64_t n_want;
        float *want_v = g4t_tensor_f32(vref, "video_features", &n_want);
        g4_media_item vitem = {G4_MEDIA_VIDEO, video, NULL, 0, 0};
        g4_media_tokens vt;
        CHECK(g4_media_encode(s, &vitem, 1, &vt, &err) == 0, "%s", err.msg);
        const int64_t H = s->m->cfg.text.hidden_size;
        CHECK(vt.n_blocks == 32 && vt.soft[G4_SOFT_VIDEO].n * H == n_want, "video: %zu frames, %lld tokens",
              vt.n_blocks, (long long)vt.soft[G4_SOFT_VIDEO].n);
        if (vt.soft[G4_SOFT_VIDEO].n * H == n_want) {
            double ev = g4t_rel_err(vt.soft[G4_SOFT_VIDEO].rows, want_v, n_want);
            printf("video clip.mp4: %zu frames x %lld soft tokens, video_features rel err %.2e\n", vt.n_blocks,
                   (long long)vt.blocks[0].n, ev);
            CHECK(ev <= 1e-4, "video features rel err %.3e", ev);
        }
        CHECK(strcmp(vt.blocks[0].stamp, "00:00") == 0 && strcmp(vt.blocks[31].stamp, "00:07") == 0, "timestamps %s .. %s",
              vt.blocks[0].stamp, vt.blocks[31].stamp);
        g4_media_tokens_free(&vt);
        free(want_v);
        g4_st_close(vref);
    }

    free(short_ids);
    free(got);
    free(ids);
    free(want);
    g4_media_tokens_free(&media);
    g4_session_close(s);
    g4_st_close(ref);
    return g4t_finish("test_multimodal");
}
