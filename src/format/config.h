/* config.h — Gemma 4 model configuration (config.json) and generation defaults (generation_config.json). */
#ifndef G4_CONFIG_H
#define G4_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define G4_MAX_LAYERS 256
#define G4_MAX_STOP_IDS 16

enum { G4_LAYER_SLIDING = 0, G4_LAYER_FULL = 1 };
enum { G4_BIDI_NONE = 0, G4_BIDI_VISION = 1, G4_BIDI_ALL = 2 };

typedef struct g4_rope_params {
    double theta;
    double partial_rotary_factor; /* 1.0 unless "proportional" */
    double factor;                /* 1.0 when absent */
    int proportional;             /* rope_type == "proportional" */
} g4_rope_params;

typedef struct g4_text_config {
    int hidden_size;
    int num_layers;
    int intermediate_size;
    int num_heads;
    int num_kv_heads;
    int head_dim;        /* sliding layers */
    int global_head_dim; /* full layers (from global_head_dim or per_layer_config) */
    int vocab_size;
    int vocab_size_per_layer_input;
    int ple_dim; /* hidden_size_per_layer_input; 0 = no per-layer embeddings */
    int num_kv_shared_layers;
    int use_double_wide_mlp;
    int sliding_window;
    int max_position_embeddings;
    int attention_k_eq_v;
    int use_bidirectional_attention; /* G4_BIDI_* */
    int tie_word_embeddings;
    double rms_norm_eps;
    double final_logit_softcapping; /* 0 = none */
    int pad_token_id, bos_token_id, eos_token_id;
    g4_rope_params rope[2]; /* indexed by G4_LAYER_* */

    /* Per-layer tables, filled and checked by the parser. */
    uint8_t layer_type[G4_MAX_LAYERS];   /* G4_LAYER_* */
    int layer_head_dim[G4_MAX_LAYERS];
    int layer_kv_heads[G4_MAX_LAYERS];
    uint8_t layer_k_is_v[G4_MAX_LAYERS];  /* attention_k_eq_v on a full-attention layer: no v_proj, values = keys */
    int layer_intermediate[G4_MAX_LAYERS]; /* doubled on KV-shared layers when use_double_wide_mlp */
    int first_kv_shared;                   /* num_layers - num_kv_shared_layers */
    int kv_donor[G4_MAX_LAYERS];           /* layer whose K/V layer l attends to (l itself when not shared) */
} g4_text_config;

typedef struct g4_model_config {
    g4_text_config text;
    int has_vision, has_audio; /* vision_config / audio_config present and non-null */
    /* Multimodal token ids (-1 when absent). */
    int boi_token_id, eoi_token_id, image_token_id, video_token_id;
    int boa_token_id, eoa_token_id, audio_token_id;
    int32_t eos_ids[G4_MAX_STOP_IDS];
    int n_eos;
    char *vision_json; /* the raw vision_config / audio_config objects (NULL when absent), for later issues */
    char *audio_json;
} g4_model_config;

/* Parses config.json text. Accepts the multimodal form (text_config inside) and the text-only form
 * (a gemma4_text config at top level), and both `global_head_dim` and `per_layer_config`. Every value is
 * range-checked; missing required fields and inconsistent values are errors naming the field. */
int g4_config_parse(const char *json, size_t len, g4_model_config *out, g4_err *err);
int g4_config_load(const char *path, g4_model_config *out, g4_err *err);
void g4_config_free(g4_model_config *c);

typedef struct g4_generation_config {
    int bos_token_id, pad_token_id; /* -1 when absent */
    int32_t eos_ids[G4_MAX_STOP_IDS];
    int n_eos;
    int do_sample;
    double temperature;
    int top_k;
    double top_p;
    double min_p;
    double repetition_penalty;
} g4_generation_config;

/* Defaults when the file is absent: greedy (do_sample 0), temperature 1, top_k 0, top_p 1, min_p 0, penalty 1. */
void g4_generation_config_default(g4_generation_config *g);
int g4_generation_config_parse(const char *json, size_t len, g4_generation_config *out, g4_err *err);
int g4_generation_config_load(const char *path, g4_generation_config *out, g4_err *err);

#endif
