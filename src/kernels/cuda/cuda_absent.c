/* cuda_absent.c — the CUDA entry points of a build without CUDA: each says so (cmake -DGEMMA4C_CUDA=ON builds them). */
#include "kernels/cuda/cuda_quant.h"

static int absent(g4_err *err) {
    return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "this build of gemma4c has no CUDA backend (configure with -DGEMMA4C_CUDA=ON)");
}

int g4_cuda_probe(g4_cuda_info *info, g4_err *err) { return absent(err); }
int g4_cuda_malloc(void **d_ptr, size_t bytes, g4_err *err) { return absent(err); }
void g4_cuda_free(void *d_ptr) {}
int g4_cuda_upload(void *d_dst, const void *src, size_t bytes, g4_err *err) { return absent(err); }
int g4_cuda_download(void *dst, const void *d_src, size_t bytes, g4_err *err) { return absent(err); }
int g4_cuda_sync(void *stream, g4_err *err) { return absent(err); }
int g4_cuda_quantize_acts(const float *d_x, int64_t T, int64_t K, void *d_act, void *stream, g4_err *err) {
    return absent(err);
}
int g4_cuda_qmatvec_many(int qt, const g4_cuda_qmat *m, int count, int64_t K, const void *d_act, int64_t T,
                         void *stream, g4_err *err) {
    return absent(err);
}
int g4_cuda_qmatvec(int qt, const void *d_w, int64_t N, int64_t K, const void *d_act, int64_t T, float *d_y,
                    void *stream, g4_err *err) {
    return absent(err);
}
