/* cmd_features.c — `gemma4c features`: an encoder's soft tokens and its preprocessed input, as safetensors. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_features(int argc, char **argv) {
    cli_opts o;
    int rc = cli_parse(argc, argv, 2, &o, "features");
    if (rc) return rc == 2 ? 0 : 1;
    if (!o.model) return cli_error("features: -m MODEL is required");
    if (!o.out) return cli_error("features: --out FILE.safetensors is required");
    if (o.n_media != 1) return cli_error("features: give exactly one --image, --audio or --video");
    gemma4c_model *m = NULL;
    gemma4c_session *s = NULL;
    if (cli_load_model(&o, &m) || cli_new_session(&o, m, &s)) {
        gemma4c_model_free(m);
        return 1;
    }
    char err[512];
    gemma4c_features *f = NULL;
    if (gemma4c_encode(s, &o.media[0], &f, err, sizeof err)) rc = cli_error("%s", err);
    if (!rc) {
        gemma4c_tensor t[4];
        size_t n = 0;
        const char *about = NULL;
        int32_t count = (int32_t)f->n_tokens, frames = (int32_t)f->n_blocks;
        int32_t per_frame = f->n_blocks ? (int32_t)f->block_tokens[0] : 0;
        if (f->kind == GEMMA4C_MEDIA_IMAGE) {
            t[n++] = (gemma4c_tensor){"image_features", GEMMA4C_F32, 2, {f->n_tokens, f->width}, f->tokens};
            t[n++] = (gemma4c_tensor){"pixel_values_u8", GEMMA4C_U8, 2, {f->n_patches, f->patch_dim}, f->pixel_values};
            t[n++] = (gemma4c_tensor){"image_position_ids", GEMMA4C_I32, 2, {f->n_patches, 2}, f->positions};
            t[n++] = (gemma4c_tensor){"num_soft_tokens", GEMMA4C_I32, 1, {1}, &count};
            about = "gemma4c features: image soft tokens (after the embedder) and the preprocessed patches";
        } else if (f->kind == GEMMA4C_MEDIA_AUDIO) {
            t[n++] = (gemma4c_tensor){"audio_features", GEMMA4C_F32, 2, {f->n_tokens, f->width}, f->tokens};
            t[n++] = (gemma4c_tensor){"input_features", GEMMA4C_F32, 2, {f->n_frames, f->n_mel}, f->input_features};
            t[n++] = (gemma4c_tensor){"input_features_mask", GEMMA4C_BOOL, 1, {f->n_frames}, f->input_mask};
            about = "gemma4c features: audio soft tokens (after the embedder), log-mel input and its mask; audio over 30 s "
                    "is split into segments, concatenated here";
        } else {
            t[n++] = (gemma4c_tensor){"video_features", GEMMA4C_F32, 2, {f->n_tokens, f->width}, f->tokens};
            t[n++] = (gemma4c_tensor){"num_soft_tokens_per_frame", GEMMA4C_I32, 1, {1}, &per_frame};
            t[n++] = (gemma4c_tensor){"num_frames", GEMMA4C_I32, 1, {1}, &frames};
            about = "gemma4c features: video soft tokens of every sampled frame, frame-major";
        }
        if (gemma4c_save_tensors(o.out, t, n, about, err, sizeof err)) rc = cli_error("%s", err);
    }
    gemma4c_features_free(f);
    gemma4c_session_free(s);
    gemma4c_model_free(m);
    return rc;
}
