/* tensor.h — a named, typed, shaped view of bytes that live elsewhere (a mapped file or an owned buffer). */
#ifndef G4_TENSOR_H
#define G4_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define G4_MAX_DIMS 8

typedef enum g4_dtype {
    G4_DT_F32 = 0,
    G4_DT_F16,
    G4_DT_BF16,
    G4_DT_F64,
    G4_DT_I8,
    G4_DT_U8,
    G4_DT_I16,
    G4_DT_U16,
    G4_DT_I32,
    G4_DT_U32,
    G4_DT_I64,
    G4_DT_U64,
    G4_DT_BOOL,
    G4_DT_F8_E4M3,
    G4_DT_F8_E5M2,
    /* gemma4c's block-quantized weights (layouts in kernels/quant.h): 32 elements a block. */
    G4_DT_Q8,
    G4_DT_Q4,
    G4_DT_Q6,
    G4_DT_COUNT
} g4_dtype;

#define G4_DT_FIRST_BLOCK G4_DT_Q8

typedef struct g4_tensor {
    const char *name;
    g4_dtype dtype;
    int ndim;
    int64_t shape[G4_MAX_DIMS];
    const void *data; /* not owned */
    size_t nbytes;
} g4_tensor;

size_t g4_dtype_size(g4_dtype dt);  /* bytes per element; 0 for block-quantized types */
int g4_dtype_is_quantized(g4_dtype dt);
/* Bytes of one row of K elements (0 when a block type's K is not a multiple of its block). */
size_t g4_row_bytes(g4_dtype dt, int64_t K);
const char *g4_dtype_name(g4_dtype dt); /* safetensors spelling: "F32", "BF16", ... */
/* The dtype spelled `name` (safetensors spelling): 0, or -1 when unknown. */
int g4_dtype_from_name(const char *name, g4_dtype *out);
int64_t g4_tensor_numel(const g4_tensor *t);
/* Writes "[a, b, c]" into buf. */
const char *g4_shape_str(const g4_tensor *t, char *buf, size_t len);

/* Scalar conversions used wherever weights are read. */
static inline float g4_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}
static inline uint16_t g4_f32_to_bf16(float f) { /* round to nearest even; NaN stays NaN */
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + rounding) >> 16);
}
float g4_f16_to_f32(uint16_t h);
uint16_t g4_f32_to_f16(float f);

/* Reads element i of any float or integer tensor as float (slow path, for tests and small tensors). */
float g4_tensor_get_f32(const g4_tensor *t, int64_t i);

#endif
