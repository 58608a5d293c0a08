/* vision.h — the Gemma 4 vision encoder and its multimodal embedder: preprocessed patches in, soft tokens out. */
#ifndef G4_VISION_H
#define G4_VISION_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "backend/backend.h"
#include "model/model.h"

/* vision_config as transformers reads it (Gemma4VisionConfig defaults for absent fields), plus the text width
 * the embedder projects into. */
typedef struct g4_vision_config {
    int hidden_size, intermediate_size, num_layers;
    int num_heads, num_kv_heads, head_dim;
    int patch_size, pooling_kernel_size, position_embedding_size;
    double rms_norm_eps, rope_theta;
    int use_clipped_linears, standardize;
    int text_hidden_size;
} g4_vision_config;

/* A bias-free linear layer whose input and output are clamped to checkpoint bounds (Gemma4ClippableLinear);
 * bounds are +-infinity when the config has no clipping. */
typedef struct g4_clipped_linear {
    g4_tensor w; /* [out, in] */
    float in_min, in_max, out_min, out_max;
} g4_clipped_linear;

typedef struct g4_vision_layer {
    float *input_norm, *post_attention_norm, *pre_feedforward_norm, *post_feedforward_norm; /* [hidden] */
    float *q_norm, *k_norm;                                                                 /* [head_dim] */
    g4_clipped_linear q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
} g4_vision_layer;

/* The weights are views owned by the model (mapped checkpoint or synthetic): free the vision tower before the
 * model. A loaded tower is read-only, so several threads may encode with it at once (each with its own
 * backend). */
typedef struct g4_vision {
    g4_vision_config cfg;
    g4_tensor input_proj;     /* [hidden, 3 * patch^2] */
    g4_tensor position_table; /* [2, position_embedding_size, hidden]: x (column) table, then y (row) table */
    g4_embedding position_rows; /* the same as 2 * position_embedding_size rows */
    g4_vision_layer *layers;
    float *std_bias, *std_scale; /* [hidden]; NULL unless cfg.standardize */
    g4_tensor embed_proj;        /* model.embed_vision.embedding_projection.weight [text_hidden, hidden] */
    float *inv_freq;             /* [head_dim / 4]: 2-D RoPE frequencies, shared by both axes */
} g4_vision;

/* vision_config text (Gemma4VisionConfig defaults for absent fields), checked. */
int g4_vision_parse_config(const char *json, int text_hidden, g4_vision_config *c, g4_err *err);

/* Parses the model's vision_config and binds model.vision_tower.* and model.embed_vision.*, every shape derived
 * from the config and checked against the checkpoint. A model without a vision tower is an error. */
int g4_vision_load(g4_model *m, g4_vision **out, g4_err *err);
void g4_vision_free(g4_vision *v);

/* The widest input of any vision weight. */
int64_t g4_vision_max_input_width(const g4_vision *v);

/* Rows `out` must have room for when encoding n_patches patches (padding included): n_patches / k^2 for the
 * pooling kernel k. The actual count (n_soft) is the number of pooling cells that real patches fall into. */
int g4_vision_max_soft_tokens(const g4_vision *v, int n_patches);

/* Intermediate results for tests and tools; any pointer may be NULL. */
typedef struct g4_vision_probe {
    float *tower_output; /* [max_soft_tokens][hidden]: pooled and scaled (and standardised), before the embedder */
} g4_vision_probe;

/* One image (or video frame) as the image processor gives it:
 *   pixel_values [n_patches][3 * patch^2], values in [0, 1] (byte / 255), channel fastest within a pixel;
 *   positions    [n_patches][2] = (x, y) patch coordinates, (-1, -1) for padding patches.
 * n_patches includes the padding (max_soft_tokens * k^2 in the reference); it must be a multiple of k^2.
 * Writes the soft tokens to out [n_soft][text_hidden] (room for g4_vision_max_soft_tokens rows) and their
 * count to n_soft. Padding patches are masked out of attention and dropped by the pooling, exactly as the
 * reference does (for the processor's output, removing them changes nothing). Errors: no patches, a count that
 * is not a multiple of k^2, positions outside the position table or beyond the n_patches / k^2 pooling slots,
 * only padding. The encoder runs on backend be; `out` is host memory. */
int g4_vision_encode(const g4_vision *v, g4_backend *be, const float *pixel_values, const int32_t *positions,
                     int n_patches, float *out, int *n_soft, g4_err *err);
int g4_vision_encode_probe(const g4_vision *v, g4_backend *be, const float *pixel_values, const int32_t *positions,
                           int n_patches, float *out, int *n_soft, const g4_vision_probe *probe, g4_err *err);

#endif
