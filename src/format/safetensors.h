/* safetensors.h — reading (mmap, hostile-input safe) and writing of safetensors files and sharded checkpoints. */
#ifndef G4_SAFETENSORS_H
#define G4_SAFETENSORS_H

#include <stddef.h>

#include "core/error.h"
#include "core/tensor.h"

/* One mapped .safetensors file. Tensor data points into the mapping. */
typedef struct g4_st_file g4_st_file;

int g4_st_open(const char *path, g4_st_file **out, g4_err *err);
/* Parses an in-memory image (used by the fuzzer); `data` must outlive the handle. */
int g4_st_parse(const unsigned char *data, size_t size, const char *label, g4_st_file **out, g4_err *err);
void g4_st_close(g4_st_file *f);
size_t g4_st_count(const g4_st_file *f);
const g4_tensor *g4_st_at(const g4_st_file *f, size_t i);
const g4_tensor *g4_st_find(const g4_st_file *f, const char *name);
/* The value of a "__metadata__" string entry, or NULL. */
const char *g4_st_metadata(const g4_st_file *f, const char *key);

/* A checkpoint: every tensor of a Hugging Face model directory, through model.safetensors.index.json when
 * present, else model.safetensors, else the single *.safetensors file in the directory. */
typedef struct g4_checkpoint g4_checkpoint;

int g4_checkpoint_open(const char *dir, g4_checkpoint **out, g4_err *err);
void g4_checkpoint_close(g4_checkpoint *c);
const g4_tensor *g4_checkpoint_find(const g4_checkpoint *c, const char *name);
size_t g4_checkpoint_count(const g4_checkpoint *c);
const g4_tensor *g4_checkpoint_at(const g4_checkpoint *c, size_t i);

/* Writes tensors (data copied from each tensor's pointer) with optional string metadata pairs. */
typedef struct g4_st_meta {
    const char *key;
    const char *value;
} g4_st_meta;
int g4_st_write(const char *path, const g4_tensor *tensors, size_t n, const g4_st_meta *meta, size_t n_meta,
                g4_err *err);

#endif
