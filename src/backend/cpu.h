/* cpu.h — the CPU backend's state, shared by the files that implement its ops. */
#ifndef G4_BACKEND_CPU_H
#define G4_BACKEND_CPU_H

#include "backend/backend.h"

typedef struct cpu_backend {
    g4_compute *c;
    /* attention scratch, grown on demand */
    float *scores; /* per worker: the current call's share */
    int64_t scores_floats;
    float *parts, *lse; /* key-split attention: each item's output rows and their log-sum-exps */
    int64_t part_floats, lse_floats;
    int64_t *tile; /* [rows + 1]: the first row of each tile */
    int64_t tile_cap;
} cpu_backend;

/* Grows *buf to hold `want` floats (its contents are not kept); -1 when out of memory. */
int g4_cpu_grow(float **buf, int64_t *have, int64_t want);

void g4_cpu_kv_write(g4_backend *b, const g4_kv_view *const *view, const int64_t *pos, int64_t rows, int64_t kv_heads,
                     int64_t head_dim, const float *k, const float *v);
int g4_cpu_attention(g4_backend *b, const g4_attention *a, g4_err *err);
int g4_cpu_local_attention(g4_backend *b, const g4_local_attention *a, g4_err *err);
int g4_cpu_conv2d(g4_backend *b, const g4_conv2d *c, g4_err *err);
void g4_cpu_depthwise_conv(g4_backend *b, float *out, const float *x, int64_t rows, int64_t channels, const float *w,
                           int64_t K);

#endif
