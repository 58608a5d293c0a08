/* model_path.h — where a model named on the command line or in the API lives on disk. */
#ifndef G4_MODEL_PATH_H
#define G4_MODEL_PATH_H

#include <stddef.h>

#include "core/error.h"

/* Finds a model: a directory with config.json, a file (GGUF), or a Hugging Face repo id ("google/gemma-4-E4B-it")
 * in the local Hugging Face cache. Writes the path to `dir`. */
int g4_resolve_model_path(const char *name, char *dir, size_t dir_len, g4_err *err);

#endif
