/* audio.h — Gemma 4's audio encoder (conv subsampler + Conformer) and audio embedder: log-mel frames to soft tokens. */
#ifndef G4_MODEL_AUDIO_H
#define G4_MODEL_AUDIO_H

#include <stdint.h>

#include "core/error.h"
#include "backend/backend.h"
#include "model/model.h"

/* The feature width the encoder takes: the reference feature extractor's 128 mel bins. The subsampler's
 * flattened width (mel bins / 4 x its second channel count) is checked against the stored input projection. */
#define G4_AUDIO_ENCODER_MEL_BINS 128
/* Frames one call accepts: 30 s of audio gives 2999 (the reference truncates there; longer audio is split into
 * segments by the caller). The bound keeps a hostile length from becoming an unbounded allocation. */
#define G4_AUDIO_ENCODER_MAX_FRAMES 3000

typedef struct g4_audio_encoder g4_audio_encoder;

/* Sizes of a loaded encoder, every one derived from audio_config and checked against the tensors. */
typedef struct g4_audio_dims {
    int n_mel;     /* feature width of one frame (G4_AUDIO_ENCODER_MEL_BINS) */
    int hidden;    /* Conformer width (1024 for E2B/E4B) */
    int layers, heads;
    int proj_dims; /* output_proj width: audio_tower_output (1536) */
    int out_width; /* the text hidden size: audio_features (2560 E4B, 1536 E2B) */
    int64_t max_input_width; /* the widest matrix-product input */
} g4_audio_dims;

/* Binds model.audio_tower.* and model.embed_audio.* (checked views into the checkpoint, or synthetic weights).
 * The encoder borrows the model's memory: free it before the model. A model without audio_config is an error. */
int g4_audio_encoder_load(g4_model *m, g4_audio_encoder **out, g4_err *err);
void g4_audio_encoder_free(g4_audio_encoder *a);
g4_audio_dims g4_audio_encoder_dims(const g4_audio_encoder *a);

/* Encoder positions for `frames` input frames (two stride-2 convolutions: ceil(ceil(frames/2)/2)). */
int64_t g4_audio_encoder_positions(int64_t frames);
/* Soft tokens a clip yields: positions p whose frame 4p is valid (mask NULL: all frames valid). For the
 * reference's prefix masks this is ceil(valid frames / 4). */
int64_t g4_audio_encoder_tokens(const uint8_t *mask, int64_t frames);

/* Optional outputs for tests and tools. */
typedef struct g4_audio_probe {
    float *tower_output; /* [positions][proj_dims]: output_proj at every position, valid or not (NULL: not wanted) */
    uint8_t *valid;      /* [positions]: 1 where the position becomes a soft token (NULL: not wanted) */
} g4_audio_probe;

/* Runs one clip: features [frames][n_mel] (log-mel as the feature extractor gives them), mask [frames] (1 = real
 * frame; NULL = all real). Writes the soft tokens of the valid positions, [n_tokens][out_width], to `out` (room for
 * g4_audio_encoder_tokens(mask, frames) rows). Computes what transformers 5.17's Gemma4AudioModel + embed_audio
 * compute in float32 with sdpa attention; masked frames are treated as the reference treats them (zeroed before each
 * convolution, never attended to), so any mask works, not only the extractor's valid prefix. No valid position is
 * not an error (n_tokens = 0); no frames at all, more than G4_AUDIO_ENCODER_MAX_FRAMES, or a non-finite feature
 * is. The encoder runs on backend be (`out` is host memory); it is only read, so one encoder serves several
 * threads that each bring their own backend. */
int g4_audio_encode(const g4_audio_encoder *a, g4_backend *be, const float *features, const uint8_t *mask,
                    int64_t frames, float *out, int64_t *n_tokens, g4_audio_probe *probe, g4_err *err);

#endif
