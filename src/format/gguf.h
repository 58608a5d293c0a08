/* gguf.h — GGUF (v3) files: a validating reader over mmap for hostile input, a streaming writer, tensor types. */
#ifndef G4_GGUF_H
#define G4_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

/* ---- tensor types ----------------------------------------------------------------------------------------
 * Ids below 1000 are ggml's (they must match ggml so that other tools read our files); ids 1000 and up are
 * gemma4c's own quantized types, which only gemma4c reads. */
enum g4_gguf_type {
    G4_GGUF_TYPE_F32 = 0,
    G4_GGUF_TYPE_F16 = 1,
    G4_GGUF_TYPE_Q4_0 = 2,
    G4_GGUF_TYPE_Q4_1 = 3,
    G4_GGUF_TYPE_Q5_0 = 6,
    G4_GGUF_TYPE_Q5_1 = 7,
    G4_GGUF_TYPE_Q8_0 = 8,
    G4_GGUF_TYPE_Q8_1 = 9,
    G4_GGUF_TYPE_Q2_K = 10,
    G4_GGUF_TYPE_Q3_K = 11,
    G4_GGUF_TYPE_Q4_K = 12,
    G4_GGUF_TYPE_Q5_K = 13,
    G4_GGUF_TYPE_Q6_K = 14,
    G4_GGUF_TYPE_Q8_K = 15,
    G4_GGUF_TYPE_IQ2_XXS = 16,
    G4_GGUF_TYPE_IQ2_XS = 17,
    G4_GGUF_TYPE_IQ3_XXS = 18,
    G4_GGUF_TYPE_IQ1_S = 19,
    G4_GGUF_TYPE_IQ4_NL = 20,
    G4_GGUF_TYPE_IQ3_S = 21,
    G4_GGUF_TYPE_IQ2_S = 22,
    G4_GGUF_TYPE_IQ4_XS = 23,
    G4_GGUF_TYPE_I8 = 24,
    G4_GGUF_TYPE_I16 = 25,
    G4_GGUF_TYPE_I32 = 26,
    G4_GGUF_TYPE_I64 = 27,
    G4_GGUF_TYPE_F64 = 28,
    G4_GGUF_TYPE_IQ1_M = 29,
    G4_GGUF_TYPE_BF16 = 30,
    G4_GGUF_TYPE_TQ1_0 = 34,
    G4_GGUF_TYPE_TQ2_0 = 35,
    G4_GGUF_TYPE_MXFP4 = 39,
    G4_GGUF_TYPE_OWN_FIRST = 1000,
};

/* ===== gemma4c's own quantized types: THE ONE TABLE TO EDIT =================================================
 * X(name, id, elements per block, bytes per block). Ids are stored in files: never renumber, only append.
 * The byte sizes are the layouts agreed for the quantization kernels (which define the exact byte order):
 *   G4_Q4: 16 bytes of 4-bit values + one bf16 scale   = 18
 *   G4_Q8: 32 int8 values + one f32 scale              = 36
 *   G4_Q6: 24 bytes of 6-bit values + one bf16 scale   = 26
 * Every row becomes an enum constant G4_GGUF_TYPE_<name> and an entry of g4_gguf_type_info(). */
#define G4_GGUF_OWN_TYPES(X) \
    X(G4_Q4, 1000, 32, 18)   \
    X(G4_Q8, 1001, 32, 36)   \
    X(G4_Q6, 1002, 32, 26)
/* ========================================================================================================= */

#define G4_GGUF_OWN_ENUM_(name, id, be, bb) G4_GGUF_TYPE_##name = (id),
enum g4_gguf_own_type { G4_GGUF_OWN_TYPES(G4_GGUF_OWN_ENUM_) };
#undef G4_GGUF_OWN_ENUM_

typedef struct g4_gguf_type_info {
    const char *name; /* "F32", "Q4_K", "G4_Q4" ... */
    int block_elems;  /* elements per block (1 for plain types); a row's length must be a multiple */
    int block_bytes;  /* bytes per block */
} g4_gguf_type_info;

/* The description of tensor type `type`, or NULL when it is unknown (or a removed ggml type). */
const g4_gguf_type_info *g4_gguf_type_info_get(uint32_t type);
/* Bytes of a tensor of `type` with ggml dims ne[0..n_dims): 0, or -1 when the type is unknown, ne[0] is not a
 * whole number of blocks, a dim is negative, or the size or the product of the non-zero dims passes INT64_MAX. */
int g4_gguf_tensor_bytes(uint32_t type, int n_dims, const int64_t *ne, uint64_t *out);

/* ---- metadata values ------------------------------------------------------------------------------------- */
enum g4_gguf_value_type {
    G4_GGUF_VALUE_U8 = 0,
    G4_GGUF_VALUE_I8 = 1,
    G4_GGUF_VALUE_U16 = 2,
    G4_GGUF_VALUE_I16 = 3,
    G4_GGUF_VALUE_U32 = 4,
    G4_GGUF_VALUE_I32 = 5,
    G4_GGUF_VALUE_F32 = 6,
    G4_GGUF_VALUE_BOOL = 7,
    G4_GGUF_VALUE_STRING = 8,
    G4_GGUF_VALUE_ARRAY = 9,
    G4_GGUF_VALUE_U64 = 10,
    G4_GGUF_VALUE_I64 = 11,
    G4_GGUF_VALUE_F64 = 12,
};

/* "u8", "string", "array" ...; "?" when unknown. */
const char *g4_gguf_value_type_name(uint32_t type);

/* A view of one (already validated) value in the file. Multi-byte numbers in `data` are little-endian and
 * unaligned: read them through the functions below. */
typedef struct g4_gguf_value {
    uint32_t type;               /* enum g4_gguf_value_type */
    uint32_t elem_type;          /* arrays: the elements' type */
    uint64_t count;              /* arrays: elements; strings: bytes */
    const unsigned char *data;   /* scalars: the value; strings: the bytes (not NUL-terminated); arrays: the first
                                    element's encoding */
    size_t size;                 /* bytes at data */
    const char *str;             /* top-level strings: NUL-terminated copy owned by the file handle; else NULL */
    const uint64_t *elem_offset; /* internal: top-level arrays of strings/arrays index their elements */
} g4_gguf_value;

typedef struct g4_gguf_kv {
    const char *key;
    g4_gguf_value value;
} g4_gguf_kv;

/* Element i of an array value: 0, or -1 when v is not an array or i is out of range. */
int g4_gguf_value_elem(const g4_gguf_value *v, uint64_t i, g4_gguf_value *out);
/* Scalar conversions: 0, or -1 when the value's type does not convert or the number does not fit.
 * Integers convert between all integer types (range-checked); floats accept f32, f64 and integers. */
int g4_gguf_value_i64(const g4_gguf_value *v, int64_t *out);
int g4_gguf_value_u64(const g4_gguf_value *v, uint64_t *out);
int g4_gguf_value_f64(const g4_gguf_value *v, double *out);
int g4_gguf_value_bool(const g4_gguf_value *v, int *out);

/* ---- reader ---------------------------------------------------------------------------------------------- */
typedef struct g4_gguf g4_gguf;

typedef struct g4_gguf_tensor {
    const char *name;
    uint32_t type;    /* enum g4_gguf_type */
    int n_dims;       /* 1..4 */
    int64_t ne[4];    /* ggml order: ne[0] is the contiguous (innermost) dim — the REVERSE of a PyTorch shape;
                         dims past n_dims are 1 */
    uint64_t offset;  /* from the start of the data section */
    const void *data; /* into the mapping; NULL when nbytes is 0 */
    size_t nbytes;
} g4_gguf_tensor;

/* Maps and validates the whole file: every key, value and tensor extent is checked before this returns 0. */
int g4_gguf_open(const char *path, g4_gguf **out, g4_err *err);
/* Parses an in-memory image (the fuzzer uses it); `data` must outlive the handle; `label` names it in errors. */
int g4_gguf_parse(const unsigned char *data, size_t size, const char *label, g4_gguf **out, g4_err *err);
void g4_gguf_close(g4_gguf *f);

uint32_t g4_gguf_version(const g4_gguf *f);
uint32_t g4_gguf_alignment(const g4_gguf *f);
uint64_t g4_gguf_data_offset(const g4_gguf *f); /* where the data section starts in the file */
const char *g4_gguf_label(const g4_gguf *f);

size_t g4_gguf_kv_count(const g4_gguf *f);
const g4_gguf_kv *g4_gguf_kv_at(const g4_gguf *f, size_t i); /* file order */
const g4_gguf_kv *g4_gguf_find_kv(const g4_gguf *f, const char *key);

/* Typed reads of a key. Each returns 0, or GEMMA4C_ERR_FORMAT with "<file>: key \"k\" ..." when the key is
 * missing, has another type, or its value does not fit (see g4_gguf_value_*). Use g4_gguf_find_kv first for
 * optional keys. */
int g4_gguf_get_u32(const g4_gguf *f, const char *key, uint32_t *out, g4_err *err);
int g4_gguf_get_i32(const g4_gguf *f, const char *key, int32_t *out, g4_err *err);
int g4_gguf_get_u64(const g4_gguf *f, const char *key, uint64_t *out, g4_err *err);
int g4_gguf_get_i64(const g4_gguf *f, const char *key, int64_t *out, g4_err *err);
int g4_gguf_get_f32(const g4_gguf *f, const char *key, float *out, g4_err *err);
int g4_gguf_get_f64(const g4_gguf *f, const char *key, double *out, g4_err *err);
int g4_gguf_get_bool(const g4_gguf *f, const char *key, int *out, g4_err *err);
/* The string, NUL-terminated, owned by the handle; *len (may be NULL) is its full length (it may hold NULs). */
int g4_gguf_get_str(const g4_gguf *f, const char *key, const char **out, size_t *len, g4_err *err);
/* Arrays, copied into one malloc'd block the caller frees (free(*out)); *out is NULL when the array is empty.
 * Elements convert as the scalar getters do (an array of u8 reads as i32, etc.). */
int g4_gguf_get_arr_i32(const g4_gguf *f, const char *key, int32_t **out, size_t *n, g4_err *err);
int g4_gguf_get_arr_i64(const g4_gguf *f, const char *key, int64_t **out, size_t *n, g4_err *err);
int g4_gguf_get_arr_f32(const g4_gguf *f, const char *key, float **out, size_t *n, g4_err *err);
int g4_gguf_get_arr_bool(const g4_gguf *f, const char *key, uint8_t **out, size_t *n, g4_err *err);
/* An array of strings: (*out)[i] are NUL-terminated; pointers and bytes share one block: free(*out) once. */
int g4_gguf_get_arr_str(const g4_gguf *f, const char *key, char ***out, size_t *n, g4_err *err);

size_t g4_gguf_tensor_count(const g4_gguf *f);
const g4_gguf_tensor *g4_gguf_tensor_at(const g4_gguf *f, size_t i); /* file order */
const g4_gguf_tensor *g4_gguf_tensor_find(const g4_gguf *f, const char *name);
/* A g4_tensor view (shape in PyTorch order: ne reversed) of a tensor of type F32, F16, BF16, F64, I8, I16, I32,
 * I64 or one of gemma4c's block types (G4_Q8/G4_Q4/G4_Q6 -> G4_DT_Q8/Q4/Q6). 0, or GEMMA4C_ERR_UNSUPPORTED for
 * ggml's quantized types, or GEMMA4C_ERR_FORMAT when plain elements are not aligned to their size. */
int g4_gguf_tensor_view(const g4_gguf *f, const g4_gguf_tensor *t, g4_tensor *out, g4_err *err);

/* ---- writer ----------------------------------------------------------------------------------------------
 * Order of use: open; set metadata and add tensors (any interleaving); then stream every tensor's bytes in the
 * order the tensors were added; then close. The header is written before the first data byte (or by
 * g4_gguf_writer_write_header); after that no metadata or tensors can be added. Only metadata and tensor names
 * are held in memory. The file is written as "<path>.partial" and renamed to `path` by a successful close, so
 * `path` never holds a half-written file. Argument errors leave the writer unchanged; a write error (disk full)
 * fails every later call. */
typedef struct g4_gguf_writer g4_gguf_writer;

int g4_gguf_writer_open(const char *path, g4_gguf_writer **out, g4_err *err);

/* Metadata. Keys must be unique and non-empty. Setting "general.alignment" (u32, a power of two) changes the
 * data alignment from the default 32. */
int g4_gguf_writer_set_u8(g4_gguf_writer *w, const char *key, uint8_t v, g4_err *err);
int g4_gguf_writer_set_i8(g4_gguf_writer *w, const char *key, int8_t v, g4_err *err);
int g4_gguf_writer_set_u16(g4_gguf_writer *w, const char *key, uint16_t v, g4_err *err);
int g4_gguf_writer_set_i16(g4_gguf_writer *w, const char *key, int16_t v, g4_err *err);
int g4_gguf_writer_set_u32(g4_gguf_writer *w, const char *key, uint32_t v, g4_err *err);
int g4_gguf_writer_set_i32(g4_gguf_writer *w, const char *key, int32_t v, g4_err *err);
int g4_gguf_writer_set_u64(g4_gguf_writer *w, const char *key, uint64_t v, g4_err *err);
int g4_gguf_writer_set_i64(g4_gguf_writer *w, const char *key, int64_t v, g4_err *err);
int g4_gguf_writer_set_f32(g4_gguf_writer *w, const char *key, float v, g4_err *err);
int g4_gguf_writer_set_f64(g4_gguf_writer *w, const char *key, double v, g4_err *err);
int g4_gguf_writer_set_bool(g4_gguf_writer *w, const char *key, int v, g4_err *err);
int g4_gguf_writer_set_str(g4_gguf_writer *w, const char *key, const char *v, g4_err *err);
/* An array of a fixed-size element type; `elems` holds n host values of that type (bool: one byte, 0 or 1). */
int g4_gguf_writer_set_arr(g4_gguf_writer *w, const char *key, uint32_t elem_type, const void *elems, size_t n,
                           g4_err *err);
int g4_gguf_writer_set_arr_i32(g4_gguf_writer *w, const char *key, const int32_t *v, size_t n, g4_err *err);
int g4_gguf_writer_set_arr_f32(g4_gguf_writer *w, const char *key, const float *v, size_t n, g4_err *err);
int g4_gguf_writer_set_arr_str(g4_gguf_writer *w, const char *key, const char *const *v, size_t n, g4_err *err);
/* Copies a value read from another GGUF file (any type, nested arrays included). */
int g4_gguf_writer_set_value(g4_gguf_writer *w, const char *key, const g4_gguf_value *v, g4_err *err);

/* Declares the next tensor: ne in ggml order (ne[0] contiguous, the reverse of a PyTorch shape), 1..4 dims,
 * ne[0] a multiple of the type's block. Its offset is the previous tensor's end, aligned. */
int g4_gguf_writer_add_tensor(g4_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                              g4_err *err);
int g4_gguf_writer_write_header(g4_gguf_writer *w, g4_err *err);
/* The next n bytes of tensor data (chunks of any size; a chunk may not run past the current tensor's end). */
int g4_gguf_writer_write(g4_gguf_writer *w, const void *bytes, size_t n, g4_err *err);
/* The whole of tensor `name`, which must be the next one to write. */
int g4_gguf_writer_write_tensor(g4_gguf_writer *w, const char *name, const void *bytes, size_t n, g4_err *err);
/* Checks every tensor was written in full, finishes the file and frees w (always). On failure the partial file
 * is removed. */
int g4_gguf_writer_close(g4_gguf_writer *w, g4_err *err);
/* Frees w and removes the partial file. */
void g4_gguf_writer_abort(g4_gguf_writer *w);

#endif
