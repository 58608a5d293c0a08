/* cuda_absent.c — the CUDA backend's entry points in a build without CUDA: each says how to get one. */
#include "backend/backend.h"

static int absent(g4_err *err) {
    return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "this build has no CUDA backend: configure with -DGEMMA4C_CUDA=ON");
}

int g4_backend_cuda_init(g4_backend *b, const g4_model *m, g4_err *err) {
    (void)b, (void)m;
    return absent(err);
}

int g4_backend_cuda_sync(g4_backend *b, g4_err *err) {
    (void)b;
    return absent(err);
}

void g4_backend_cuda_set_hooks(g4_backend *b, g4_compute *c) { (void)b, (void)c; }
