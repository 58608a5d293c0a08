/* cmd_features.c — `gemma4c features`: an encoder's soft tokens and its preprocessed input, as safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "format/safetensors.h"
#include "media/audio.h"
#include "media/image.h"
#include "model/audio.h"
#include "model/vision.h"

static int image_features(g4_session *s, const cli_opts *o, g4_err *err) {
    g4_image img = {0};
    g4_image_patches p = {0};
    float *pixels = NULL, *rows = NULL;
    int n_soft = 0, rc = g4_session_enable_vision(s, err);
    if (!rc) rc = g4_image_load(o->media[0], NULL, &img, err);
    const int budget = o->max_soft_tokens ? o->max_soft_tokens : G4_IMAGE_DEFAULT_SOFT_TOKENS;
    if (!rc) rc = g4_image_preprocess(&img, budget, G4_IMAGE_PATCH_SIZE, G4_IMAGE_POOLING_KERNEL, &p, err);
    const int64_t H = s->m->cfg.text.hidden_size, values = (int64_t)p.max_patches * p.patch_dim;
    if (!rc) {
        pixels = malloc((size_t)values * sizeof(float));
        rows = malloc((size_t)g4_vision_max_soft_tokens(s->vision, p.max_patches) * (size_t)H * sizeof(float));
        if (!pixels || !rows) rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    if (!rc) {
        g4_image_u8_to_f32(p.pixel_values, (size_t)values, pixels);
        rc = g4_vision_encode(s->vision, &s->c, pixels, p.positions, p.max_patches, rows, &n_soft, err);
    }
    if (!rc) {
        int32_t count = n_soft;
        g4_tensor t[] = {
            {"image_features", G4_DT_F32, 2, {n_soft, H}, rows, (size_t)(n_soft * H) * 4},
            {"pixel_values_u8", G4_DT_U8, 2, {p.max_patches, p.patch_dim}, p.pixel_values, (size_t)values},
            {"image_position_ids", G4_DT_I32, 2, {p.max_patches, 2}, p.positions, (size_t)p.max_patches * 8},
            {"num_soft_tokens", G4_DT_I32, 1, {1}, &count, 4},
        };
        g4_st_meta meta[] = {{"about", "gemma4c features: image soft tokens (after the embedder) and the preprocessed patches"}};
        rc = g4_st_write(o->out, t, 4, meta, 1, err);
    }
    free(pixels);
    free(rows);
    g4_image_patches_free(&p);
    g4_image_free(&img);
    return rc;
}

static int audio_features(g4_session *s, const cli_opts *o, g4_err *err) {
    g4_audio wave = {0};
    g4_buf feats = {0}, mask = {0}, tokens = {0};
    int64_t frames = 0, n_tokens_total = 0;
    const int64_t H = s->m->cfg.text.hidden_size;
    float *rows = malloc((size_t)G4_AUDIO_MAX_TOKENS * (size_t)H * sizeof(float));
    int rc = rows ? g4_session_enable_audio(s, err) : g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    if (!rc) rc = g4_audio_decode_file(o->media[0], NULL, &wave, err);
    size_t n_segs = rc ? 0 : g4_audio_split(wave.n, NULL, 0);
    g4_audio_segment *segs = calloc(n_segs ? n_segs : 1, sizeof *segs);
    if (!rc && !segs) rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    if (!rc) g4_audio_split(wave.n, segs, n_segs);
    /* Audio longer than 30 s is several segments: their features and tokens are concatenated. */
    for (size_t k = 0; !rc && k < n_segs; k++) {
        g4_audio_features_out f = {0};
        int64_t n = 0;
        rc = g4_audio_features(wave.samples + segs[k].start, segs[k].length, &f, err);
        if (!rc && f.n_tokens) rc = g4_audio_encode(s->audio, &s->c, f.features, f.mask, (int64_t)f.n_frames, rows, &n, NULL, err);
        if (!rc && (g4_buf_append(&feats, f.features, f.n_frames * G4_AUDIO_MEL_BINS * sizeof(float)) ||
                    g4_buf_append(&mask, f.mask, f.n_frames) || g4_buf_append(&tokens, rows, (size_t)(n * H) * sizeof(float))))
            rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        frames += (int64_t)f.n_frames;
        n_tokens_total += n;
        g4_audio_features_free(&f);
    }
    if (!rc) {
        g4_tensor t[] = {
            {"audio_features", G4_DT_F32, 2, {n_tokens_total, H}, tokens.data, tokens.len},
            {"input_features", G4_DT_F32, 2, {frames, G4_AUDIO_MEL_BINS}, feats.data, feats.len},
            {"input_features_mask", G4_DT_BOOL, 1, {frames}, mask.data, mask.len},
        };
        g4_st_meta meta[] = {{"about", "gemma4c features: audio soft tokens (after the embedder), log-mel input and its mask; "
                                       "audio over 30 s is split into segments, concatenated here"}};
        rc = g4_st_write(o->out, t, 3, meta, 1, err);
    }
    free(rows);
    free(segs);
    g4_buf_free(&feats);
    g4_buf_free(&mask);
    g4_buf_free(&tokens);
    g4_audio_free(&wave);
    return rc;
}

/* Video: the soft tokens of every sampled frame (frame-major), their frame indices and timestamps. */
static int video_features(g4_session *s, const cli_opts *o, g4_err *err) {
    g4_media_item item = {G4_MEDIA_VIDEO, o->media[0], NULL, 0, 0};
    g4_media_tokens mt;
    int rc = g4_media_encode(s, &item, 1, &mt, err);
    if (rc) return rc;
    const int64_t H = s->m->cfg.text.hidden_size, n = mt.soft[G4_SOFT_VIDEO].n;
    int32_t per_frame = mt.n_blocks ? (int32_t)mt.blocks[0].n : 0, frames = (int32_t)mt.n_blocks;
    g4_tensor t[] = {
        {"video_features", G4_DT_F32, 2, {n, H}, mt.soft[G4_SOFT_VIDEO].rows, (size_t)(n * H) * 4},
        {"num_soft_tokens_per_frame", G4_DT_I32, 1, {1}, &per_frame, 4},
        {"num_frames", G4_DT_I32, 1, {1}, &frames, 4},
    };
    g4_st_meta meta[] = {{"about", "gemma4c features: video soft tokens of every sampled frame, frame-major"}};
    rc = g4_st_write(o->out, t, 3, meta, 1, err);
    g4_media_tokens_free(&mt);
    return rc;
}

int cmd_features(int argc, char **argv) {
    cli_opts o;
    int rc = cli_parse(argc, argv, 2, &o, "features");
    if (rc) return rc == 2 ? 0 : 1;
    if (!o.model) return cli_error("features: -m MODEL is required");
    if (!o.out) return cli_error("features: --out FILE.safetensors is required");
    if (o.n_media != 1) return cli_error("features: give exactly one --image, --audio or --video");
    g4_session *s;
    if (cli_open_session(&o, &s)) return 1;
    g4_err err = {0};
    rc = strcmp(o.media_kind[0], "image") == 0   ? image_features(s, &o, &err)
         : strcmp(o.media_kind[0], "audio") == 0 ? audio_features(s, &o, &err)
                                                 : video_features(s, &o, &err);
    g4_session_close(s);
    return rc ? cli_error("%s", err.msg) : 0;
}
