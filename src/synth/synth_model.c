/* synth_model.c — the configs of gemma4c's synthetic models, written as the config.json a checkpoint carries. */
#include "synth_model.h"

#include <string.h>

#define ROPE                                                                                             \
    "\"rope_parameters\":{\"full_attention\":{\"partial_rotary_factor\":0.25,\"rope_theta\":1000000.0," \
    "\"rope_type\":\"proportional\"},\"sliding_attention\":{\"rope_theta\":10000.0,\"rope_type\":\"default\"}}"
#define S "\"sliding_attention\""
#define F "\"full_attention\""
#define COMMON                                                                                                  \
    "\"hidden_size_per_layer_input\":256,\"vocab_size\":262144,\"vocab_size_per_layer_input\":262144,"        \
    "\"sliding_window\":512,\"final_logit_softcapping\":30.0,\"rms_norm_eps\":1e-6,"                           \
    "\"max_position_embeddings\":131072,\"hidden_activation\":\"gelu_pytorch_tanh\",\"attention_bias\":false," \
    "\"pad_token_id\":0,\"eos_token_id\":1,\"bos_token_id\":2,\"tie_word_embeddings\":true,\"head_dim\":256,"  \
    "\"global_head_dim\":512,\"num_attention_heads\":8," ROPE
/* The on-device vision and audio towers (the same for E2B and E4B; gemma4-multimodal.md §1.1 and §4.2). */
#define TOWERS                                                                                                     \
    "\"vision_config\":{\"model_type\":\"gemma4_vision\",\"hidden_size\":768,\"intermediate_size\":3072,"           \
    "\"num_hidden_layers\":16,\"num_attention_heads\":12,\"num_key_value_heads\":12,\"head_dim\":64,"                 \
    "\"hidden_activation\":\"gelu_pytorch_tanh\",\"patch_size\":16,\"pooling_kernel_size\":3,"                      \
    "\"position_embedding_size\":10240,\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-6,"                     \
    "\"rope_parameters\":{\"rope_theta\":100.0,\"rope_type\":\"axial\"},\"standardize\":false,"                   \
    "\"use_clipped_linears\":true,\"attention_bias\":false},"                                                         \
    "\"audio_config\":{\"model_type\":\"gemma4_audio\",\"hidden_size\":1024,\"num_hidden_layers\":12,"              \
    "\"num_attention_heads\":8,\"attention_chunk_size\":12,\"attention_context_left\":13,"                           \
    "\"attention_context_right\":0,\"attention_invalid_logits_value\":-1000000000.0,\"attention_logit_cap\":50.0,"   \
    "\"conv_kernel_size\":5,\"gradient_clipping\":10000000000.0,\"hidden_act\":\"silu\",\"output_proj_dims\":1536,"  \
    "\"residual_weight\":0.5,\"rms_norm_eps\":1e-6,\"subsampling_conv_channels\":[128,32],"                          \
    "\"use_clipped_linears\":true},"

#define MM_IDS                                                                                                 \
    "\"boi_token_id\":255999,\"eoi_token_id\":258882,\"image_token_id\":258880,\"video_token_id\":258884,"    \
    "\"boa_token_id\":256000,\"eoa_token_index\":258883,\"audio_token_id\":258881,\"eos_token_id\":[1,106]"

static const char e4b[] =
    "{\"model_type\":\"gemma4\"," TOWERS MM_IDS ",\"text_config\":{\"model_type\":\"gemma4_text\",\"hidden_size\":2560,"
    "\"num_hidden_layers\":42,\"intermediate_size\":10240,\"num_key_value_heads\":2,\"num_kv_shared_layers\":18,"
    "\"use_double_wide_mlp\":false," COMMON ",\"layer_types\":["
    S "," S "," S "," S "," S "," F "," S "," S "," S "," S "," S "," F "," S "," S "," S "," S "," S "," F ","
    S "," S "," S "," S "," S "," F "," S "," S "," S "," S "," S "," F "," S "," S "," S "," S "," S "," F ","
    S "," S "," S "," S "," S "," F "]}}";

static const char e2b[] =
    "{\"model_type\":\"gemma4\"," TOWERS MM_IDS ",\"text_config\":{\"model_type\":\"gemma4_text\",\"hidden_size\":1536,"
    "\"num_hidden_layers\":35,\"intermediate_size\":6144,\"num_key_value_heads\":1,\"num_kv_shared_layers\":20,"
    "\"use_double_wide_mlp\":true," COMMON ",\"layer_types\":["
    S "," S "," S "," S "," F "," S "," S "," S "," S "," F "," S "," S "," S "," S "," F "," S "," S "," S ","
    S "," F "," S "," S "," S "," S "," F "," S "," S "," S "," S "," F "," S "," S "," S "," S "," F "]}}";

static const char small[] =
    "{\"model_type\":\"gemma4\",\"boi_token_id\":500,\"eoi_token_id\":501,\"image_token_id\":502,"
    "\"video_token_id\":503,\"boa_token_id\":504,\"eoa_token_index\":505,\"audio_token_id\":506,"
    "\"eos_token_id\":[1,106],\"text_config\":{\"model_type\":\"gemma4_text\",\"hidden_size\":256,"
    "\"num_hidden_layers\":6,\"intermediate_size\":768,\"num_attention_heads\":4,\"num_key_value_heads\":1,"
    "\"head_dim\":64,\"global_head_dim\":128,\"num_kv_shared_layers\":2,\"use_double_wide_mlp\":true,"
    "\"hidden_size_per_layer_input\":32,\"vocab_size\":512,\"vocab_size_per_layer_input\":512,"
    "\"sliding_window\":64,\"final_logit_softcapping\":30.0,\"rms_norm_eps\":1e-6,"
    "\"max_position_embeddings\":4096,\"hidden_activation\":\"gelu_pytorch_tanh\",\"pad_token_id\":0,"
    "\"eos_token_id\":1,\"bos_token_id\":2,\"tie_word_embeddings\":true," ROPE ",\"layer_types\":["
    S "," S "," F "," S "," S "," F "]}}";

const char *g4_synth_config_json(const char *shape) {
    if (!shape) return NULL;
    if (strcmp(shape, "e4b") == 0) return e4b;
    if (strcmp(shape, "e2b") == 0) return e2b;
    if (strcmp(shape, "small") == 0) return small;
    return NULL;
}
