/* model.h — a loaded Gemma 4 text model: config, tokenizer and weights bound to the decoder's structure. */
#ifndef G4_MODEL_H
#define G4_MODEL_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "format/config.h"
#include "synth/synth_weights.h"
#include "text/tokenizer.h"

/* A [rows, width] table that the decoder reads one row at a time (token embeddings, per-layer embeddings).
 * Its rows come from the mapped file, or from the synthetic formula without ever being stored. */
typedef struct g4_embedding {
    g4_tensor t;        /* t.data is NULL for a synthetic table */
    g4_synth_rule rule; /* synthetic tables only */
    int64_t rows, width;
} g4_embedding;

/* Reads row `row` as float32. */
void g4_embedding_row(const g4_embedding *e, int64_t row, float *out);

typedef struct g4_layer {
    /* Norm weights are small: held as float32 copies. k_norm is NULL on KV-shared layers. */
    float *input_norm, *post_attention_norm, *pre_feedforward_norm, *post_feedforward_norm;
    float *q_norm, *k_norm, *post_per_layer_input_norm;
    g4_tensor q_proj, k_proj, v_proj, o_proj; /* k/v unused (zero) on KV-shared layers */
    g4_tensor gate_proj, up_proj, down_proj;
    g4_tensor per_layer_input_gate, per_layer_projection; /* unused when the model has no PLE */
    float layer_scalar;
} g4_layer;

typedef struct g4_model {
    g4_model_config cfg;
    g4_generation_config gen;
    g4_tokenizer *tok;
    int tokenizer_is_byte_level; /* the checkpoint shipped no tokenizer.json */
    int synthetic;               /* weights come from the synthetic formula (random, not a real model) */
    char synthetic_quant[8];     /* ... stored as `gemma4c convert --quant` would store them */
    char source[1024];           /* where the model came from, for messages */

    g4_embedding embed;         /* embed_tokens [V, H]; its tensor is also the tied output matrix */
    g4_tensor lm_head;          /* [V, H]: embed.t when tied */
    g4_embedding ple_table;     /* embed_tokens_per_layer [V_ple, L * P] */
    g4_tensor ple_model_proj;   /* per_layer_model_projection [L * P, H] */
    float *ple_projection_norm; /* [P] */
    float *final_norm;          /* [H] */
    g4_layer *layers;
    /* Embedding multipliers: sqrt(H) and sqrt(P) in float32 for real checkpoints. They are module buffers in
     * transformers, so a synthetic model takes them from the formula like any other 0-D tensor. */
    float embed_scale, ple_embed_scale;
    float *inv_freq[2]; /* RoPE frequencies per layer type, [head_dim / 2] (zeros for pairs that don't rotate) */

    /* ownership */
    struct g4_checkpoint *ckpt; /* a Hugging Face directory ... */
    struct g4_gguf *gguf;       /* ... or a gemma4c GGUF file */
    void **owned;
    size_t n_owned, cap_owned;
} g4_model;

/* Loads a Hugging Face model directory (config.json, generation_config.json, safetensors, tokenizer.json).
 * Every tensor is mapped, not copied; shapes and dtypes are checked against the config. */
int g4_model_load_dir(const char *dir, g4_model **out, g4_err *err);

/* Loads a GGUF file written by `gemma4c convert` (config, tokenizer and tensors inside). */
int g4_model_load_gguf(const char *path, g4_model **out, g4_err *err);
/* A directory or a .gguf file. */
int g4_model_load(const char *path, g4_model **out, g4_err *err);

/* Builds a model whose weights follow the synthetic formula for the given config.json text (the full-size
 * golden references use it; so do the quick start and the benchmarks). The per-layer embedding table is
 * never materialised. quant: the convert recipe (q4, q4-mix, q6, q8, bf16, f32; NULL = bf16) the weights are stored in.
 * n_threads: for filling the weights. */
int g4_model_synthetic(const char *config_json, const char *quant, int n_threads, g4_model **out, g4_err *err);

void g4_model_free(g4_model *m);

/* For the towers (vision, audio) and anything bound after loading: the tensor `name` (its full Hugging Face
 * name, e.g. "model.vision_tower.patch_embedder.input_proj.weight") with the shape the caller derives from the
 * config. Checkpoint tensors are checked views (shape and dtype mismatches are errors naming both); a synthetic
 * model generates them from the formula. Memory it allocates belongs to the model. */
int g4_model_tensor(g4_model *m, const char *name, int ndim, const int64_t *shape, g4_tensor *out, g4_err *err);
/* A 1-D tensor of n values as a float32 array owned by the model. */
int g4_model_vector(g4_model *m, const char *name, int64_t n, float **out, g4_err *err);

/* Bytes of weights read from memory to decode one token: every layer's matrices (K/V only where computed), the
 * per-layer projection, the output matrix, and one row of each embedding table. */
int64_t g4_model_weight_bytes_per_token(const g4_model *m);

/* The widest input (K) of any weight matrix: sizes the matrix-product scratch. */
int64_t g4_model_max_input_width(const g4_model *m);

#endif
