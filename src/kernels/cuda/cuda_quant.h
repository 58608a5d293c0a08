/* cuda_quant.h — the quantized matrix products on an NVIDIA GPU (CUDA), on the weights' stored block formats. */
#ifndef G4_CUDA_QUANT_H
#define G4_CUDA_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Functions return 0 or a negative GEMMA4C_ERR_* code with a one-line message in err: GEMMA4C_ERR_UNSUPPORTED when
 * this build has no CUDA (cmake -DGEMMA4C_CUDA=ON) or the machine has no usable GPU or driver, GEMMA4C_ERR_NOMEM
 * when device memory runs out, GEMMA4C_ERR_ARG for bad arguments, GEMMA4C_ERR_INTERNAL for any other CUDA
 * failure (its message names the call and CUDA's own words). Pointers named d_* are device memory. `stream` is a
 * cudaStream_t, NULL for the default stream. */

typedef struct g4_cuda_info {
    char name[256];
    int device;
    int sm_count;
    int cc_major, cc_minor;
    size_t memory_bytes;
    int driver_version, runtime_version; /* as CUDA writes them: 13000 is 13.0 */
} g4_cuda_info;

/* The first CUDA device, made current for this thread; a machine without one says why. */
int g4_cuda_probe(g4_cuda_info *info, g4_err *err);

int g4_cuda_malloc(void **d_ptr, size_t bytes, g4_err *err);
void g4_cuda_free(void *d_ptr);
int g4_cuda_upload(void *d_dst, const void *src, size_t bytes, g4_err *err);
int g4_cuda_download(void *dst, const void *d_src, size_t bytes, g4_err *err);
int g4_cuda_sync(void *stream, g4_err *err);

/* T rows of K floats (K a multiple of 32) to the int8 activation rows of quant.h, g4_qact_row_bytes(K) apart, bit
 * for bit what g4_quantize_act_row computes. */
int g4_cuda_quantize_acts(const float *d_x, int64_t T, int64_t K, void *d_act, void *stream, g4_err *err);

/* Most activation rows one g4_cuda_qmatvec takes: up to G4_CUDA_QMATVEC_MAX_T (sessions decoding together) a warp
 * may take a weight row; more (a prompt's rows, many sessions) go through the tensor cores, 8 rows an instruction. */
#define G4_CUDA_QMATVEC_MAX_T 8
#define G4_CUDA_QMATMUL_MAX_T 64

/* y[t * N + n] = W[n] · act[t] for t < T <= G4_CUDA_QMATMUL_MAX_T: N weight rows of format qt (G4_QT_*) stored
 * one after the other as on the host (g4_qrow_bytes(qt, K) each), against activation rows from
 * g4_cuda_quantize_acts. The integer parts are exact, so the result differs from the CPU kernels' only by the
 * order of the float additions across blocks. */
int g4_cuda_qmatvec(int qt, const void *d_w, int64_t N, int64_t K, const void *d_act, int64_t T, float *d_y,
                    void *stream, g4_err *err);

/* Several matrices of one format that share their input (q, k and v; gate and up) as one launch:
 * m[i].d_y[t * m[i].N + n] = m[i] row n · act[t]. */
#define G4_CUDA_QMAT_MAX 4
typedef struct g4_cuda_qmat {
    const void *d_w;
    int64_t N;
    float *d_y;
} g4_cuda_qmat;
int g4_cuda_qmatvec_many(int qt, const g4_cuda_qmat *m, int count, int64_t K, const void *d_act, int64_t T,
                         void *stream, g4_err *err);

#endif
