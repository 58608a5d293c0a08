/* convert.h — Hugging Face checkpoint to one self-describing GGUF file, with gemma4c's quantization recipes. */
#ifndef G4_CONVERT_H
#define G4_CONVERT_H

#include <stddef.h>

#include "core/error.h"
#include "core/tensor.h"

/* Metadata keys of gemma4c's GGUF files. */
#define G4_GGUF_KEY_FORMAT "gemma4c.format_version"
#define G4_GGUF_KEY_CONFIG "gemma4c.config_json"
#define G4_GGUF_KEY_GENERATION "gemma4c.generation_config_json"
#define G4_GGUF_KEY_QUANT "gemma4c.quant"
#define G4_GGUF_KEY_TOKENIZER "tokenizer.huggingface.json"
#define G4_GGUF_KEY_TEMPLATE "tokenizer.chat_template"
#define G4_GGUF_FORMAT_VERSION 1

typedef struct g4_convert_options {
    const char *quant;                /* "q4" (default), "q4-mix", "q6", "q8", "bf16", "f32" */
    const char *const *overrides;     /* "PATTERN=TYPE": fnmatch pattern on tensor names; TYPE f32|f16|bf16|q8|q6|q4 */
    size_t n_overrides;
    int n_threads;                    /* for quantizing; <= 0: all CPUs */
    /* Called after each tensor (may be NULL). */
    void (*progress)(void *ctx, size_t done, size_t total, const char *name);
    void *progress_ctx;
    /* q4, q4-mix and q6 calibrate their rounding on the built-in text through the checkpoint's tokenizer; this
     * text (UTF-8, NULL: the built-in one) or these ids (NULL: none; for a checkpoint whose tokenizer gemma4c cannot
     * know, see g4_calibrate) replace it, or no_calibration rounds each block on its own. At most one of the three. */
    const int32_t *calibration_ids;
    size_t n_calibration_ids;
    const char *calibration_text;
    size_t calibration_text_len;
    int no_calibration;
} g4_convert_options;

/* Whether the recipe calibrates its rounding (q4, q4-mix, q6; NULL is q4): the calibration options apply to it. */
int g4_convert_recipe_calibrates(const char *quant);

/* The storage type the recipe gives a tensor (before overrides). */
int g4_convert_recipe_type(const char *quant, const char *name, int ndim, const int64_t *shape, g4_dtype src,
                           g4_dtype *out, g4_err *err);

/* Converts the model directory `hf_dir` to `out_path`. Streams one block of rows at a time: memory stays far
 * below the model's size. The output appears only when complete. */
int g4_convert(const char *hf_dir, const char *out_path, const g4_convert_options *opt, g4_err *err);

#endif
