/* cuda.h — the CUDA backend's state, shared by the files that implement its ops (compiled as CUDA C++). */
#ifndef G4_BACKEND_CUDA_H
#define G4_BACKEND_CUDA_H

#include <cuda_runtime.h>

extern "C" {
#include "backend/backend.h"
#include "kernels/cuda/cuda_quant.h"
}

/* Every op runs on the legacy default stream, in call order, and returns without waiting for the GPU: what an op
 * sends from the host (its tables, uploads, rows gathered on the host) is copied into a pinned ring and queued as
 * an asynchronous copy, into the ring's device twin or to its destination. A region of the ring is written again
 * only after the GPU has finished with it: the ring wraps after a wait for all queued work. (A synchronous copy
 * from pageable memory would instead wait for the GPU at every op, leaving it idle while the host queues the
 * next few.) Only downloads wait. */

/* A host weight (tensor data, norm vector, embedding table) and its device copy. */
typedef struct cuda_weight {
    const void *host; /* the key: the address the model code passes; NULL: free slot */
    void *dev;
    size_t bytes;
} cuda_weight;

typedef struct cuda_backend {
    const g4_model *m;
    g4_compute *hooks; /* whose safe_point hook ours calls (NULL: none) */
    g4_cuda_info info;
    /* weights by host address: open addressing, a power of two slots, at most half full */
    cuda_weight *map;
    size_t map_cap, map_used;
    size_t weight_bytes; /* device memory held by weights */
    /* scratch, grown on demand */
    void *act;           /* quantized activations */
    size_t act_bytes;
    float *part;         /* split attention: partial outputs, maxima and sums */
    size_t part_bytes;
    /* per-call tables (ids, page pointers, row ranges): packed on the host, then one upload */
    char *stage;
    size_t stage_cap, stage_used;
    /* the ring of host-to-device traffic: pinned host memory and its device twin, used up to ring_at */
    char *ring_host, *ring_dev;
    size_t ring_cap, ring_at;
    float *rows;         /* host rows of embeddings gathered on the host */
    size_t rows_floats;
    /* The first failure of an op that cannot return one (a launch, an upload of a weight): sticky, reported by
     * every later op that returns an error, so that a failed backend never computes on. */
    g4_err err;
} cuda_backend;

static inline cuda_backend *cuda_of(g4_backend *b) { return (cuda_backend *)b->impl; }

/* Records `e` (when it is a failure and the first) with what failed; returns non-zero for a failure. */
int g4_cuda_note(cuda_backend *cb, cudaError_t e, const char *what);
/* The launch of the kernel just queued. */
static inline int g4_cuda_launched(cuda_backend *cb, const char *what) { return g4_cuda_note(cb, cudaGetLastError(), what); }
/* The sticky failure, copied into err (0 when none). */
int g4_cuda_failed(cuda_backend *cb, g4_err *err);

/* The device copy of `bytes` bytes of weight at host address `host`, uploaded on first use (or again, larger,
 * when a later use reaches further). A pointer that is already device memory is returned as it is. NULL (and a
 * sticky failure) when it cannot be had. */
const void *g4_cuda_weight(cuda_backend *cb, const void *host, size_t bytes);

/* Per-call tables: g4_cuda_table_begin empties the host staging area; g4_cuda_table_add copies `bytes` into it
 * at the next 16-byte boundary (so an array goes in as one entry, never element by element) and returns its offset; g4_cuda_table_upload sends the whole area to the device and returns
 * its device address (NULL and a sticky failure when memory runs out). Device address of an entry: base +
 * offset. */
void g4_cuda_table_begin(cuda_backend *cb);
size_t g4_cuda_table_add(cuda_backend *cb, const void *src, size_t bytes); /* (size_t)-1 when out of memory */
char *g4_cuda_table_upload(cuda_backend *cb);

/* Queues a copy of `bytes` of host memory at src to dst (NULL: to the ring's device twin), through the ring, so
 * that src may change as soon as this returns; the device address written (NULL and a sticky failure when memory
 * runs out). */
void *g4_cuda_put(cuda_backend *cb, void *dst, const void *src, size_t bytes);

/* Grows a device scratch buffer to `bytes` (its contents are not kept); -1 and a sticky failure when it cannot. */
int g4_cuda_grow(cuda_backend *cb, void **buf, size_t *have, size_t bytes, const char *what);

/* Blocks of `threads` threads covering n items. */
static inline unsigned g4_cuda_blocks(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

/* ---- ops implemented in cuda_ops.cu ---- */
void g4_cuda_rmsnorm(g4_backend *b, float *out, const float *x, const float *weight, int64_t rows, int64_t n, float eps);
void g4_cuda_rope(g4_backend *b, float *x, int64_t rows, int64_t heads, int64_t D, int sections, const float *cos,
                  const float *sin);
void g4_cuda_add(g4_backend *b, float *y, const float *x, int64_t n, float scale);
void g4_cuda_gelu_mul(g4_backend *b, float *g, int64_t ldg, const float *up, int64_t ldu, int64_t rows, int64_t n);
void g4_cuda_axpy(g4_backend *b, float *y, float a, const float *x, int64_t n);
void g4_cuda_scale_rows(g4_backend *b, float *x, int64_t rows, int64_t n, float s, const float *scale);
void g4_cuda_add_bias(g4_backend *b, float *y, int64_t rows, int64_t n, const float *bias);
void g4_cuda_activation(g4_backend *b, float *x, int64_t n, int act);
void g4_cuda_glu(g4_backend *b, float *out, const float *x, int64_t rows, int64_t n);
void g4_cuda_depthwise_conv(g4_backend *b, float *out, const float *x, int64_t rows, int64_t channels, const float *w,
                            int64_t K);
void g4_cuda_clamp(g4_backend *b, float *out, const float *x, int64_t n, float lo, float hi);
void g4_cuda_softcap(g4_backend *b, float *x, int64_t n, float cap);

/* ---- ops implemented in cuda_attention.cu ---- */
void g4_cuda_kv_write(g4_backend *b, const g4_kv_view *const *view, const int64_t *pos, int64_t rows, int64_t kv_heads,
                      int64_t head_dim, const float *k, const float *v);
int g4_cuda_attention(g4_backend *b, const g4_attention *a, g4_err *err);
int g4_cuda_local_attention(g4_backend *b, const g4_local_attention *a, g4_err *err);
int g4_cuda_conv2d(g4_backend *b, const g4_conv2d *c, g4_err *err);

#endif
