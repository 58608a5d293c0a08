/* cuda_quant_speed.c — the matrix products of one E4B q4 decode step on the GPU: time, bandwidth (a measurement).
 *
 * usage: cuda_quant_speed   (CUDA builds only)
 * Every quantized matrix an E4B token passes through with the q4 recipe (42 layers: q, k, v where the layer has
 * its own, o, gate, up, down, the per-layer gate and projection; the per-layer model projection once; the 6-bit
 * output head), with random codes and a fixed scale (speed does not depend on the values), run in order as one
 * CUDA graph for 1 and 8 activation rows: each new input quantized once, then its matrices as one launch (q, k
 * and v; gate and up); median of 20 replays. The weights, 2.8 GB,
 * are far larger than the L2, so every replay reads them from memory. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "kernels/cuda/cuda_quant.h"
#include "kernels/quant.h"

typedef struct mat {
    int part; /* which part of the step (PARTS) */
    int fresh; /* its input is new (quantized before it), not the previous matrix's */
    int qt;
    int64_t N, K;
    void *d_w;
} mat;

static const char *const PARTS[] = {"attention projections", "MLP", "per-layer inputs", "output head"};
enum { ATTN, MLP, PLE_PART, HEAD, NPARTS };
enum { LAYERS = 42, SHARED_FROM = 24, HIDDEN = 2560, FFN = 10240, HEADS = 8, KV_HEADS = 2, PLE = 256, VOCAB = 262144 };

static int build_step(mat *m, int *count) {
    int n = 0;
    m[n++] = (mat){PLE_PART, 1, G4_QT_Q8, (int64_t)LAYERS * PLE, HIDDEN, NULL}; /* per-layer model projection */
    for (int l = 0; l < LAYERS; l++) {
        const int64_t hd = l % 6 == 5 ? 512 : 256; /* every sixth layer attends globally with wider heads */
        m[n++] = (mat){ATTN, 1, G4_QT_Q4, HEADS * hd, HIDDEN, NULL};
        if (l < SHARED_FROM) {
            m[n++] = (mat){ATTN, 0, G4_QT_Q4, KV_HEADS * hd, HIDDEN, NULL};
            m[n++] = (mat){ATTN, 0, G4_QT_Q4, KV_HEADS * hd, HIDDEN, NULL};
        }
        m[n++] = (mat){ATTN, 1, G4_QT_Q4, HIDDEN, HEADS * hd, NULL};
        m[n++] = (mat){MLP, 1, G4_QT_Q4, FFN, HIDDEN, NULL};
        m[n++] = (mat){MLP, 0, G4_QT_Q4, FFN, HIDDEN, NULL};
        m[n++] = (mat){MLP, 1, G4_QT_Q4, HIDDEN, FFN, NULL};
        m[n++] = (mat){PLE_PART, 1, G4_QT_Q4, PLE, HIDDEN, NULL};
        m[n++] = (mat){PLE_PART, 1, G4_QT_Q4, HIDDEN, PLE, NULL};
    }
    m[n++] = (mat){HEAD, 1, G4_QT_Q6, VOCAB, HIDDEN, NULL};
    *count = n;
    return 0;
}

static unsigned char *random_weights(int qt, int64_t N, int64_t K) {
    const size_t rb = g4_qrow_bytes(qt, K), bb = g4_qtype_block_bytes(qt), bytes = rb * (size_t)N;
    unsigned char *w = malloc(bytes);
    if (!w) return NULL;
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (uint64_t)N;
    for (size_t i = 0; i < bytes; i += 8) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        memcpy(w + i, &s, bytes - i < 8 ? bytes - i : 8);
    }
    for (size_t b = 0; b < bytes; b += bb) {
        if (qt == G4_QT_Q8) {
            const float d = 0.001f;
            memcpy(w + b, &d, 4);
        } else {
            const uint16_t d = g4_f32_to_bf16(0.001f);
            memcpy(w + b, &d, 2);
        }
    }
    return w;
}

/* Stored bytes and weights (multiply-adds per activation row) of the step's matrices in `part` (-1: all). */
static void size_of(const mat *m, int count, int part, double *bytes, double *weights) {
    *bytes = *weights = 0;
    for (int i = 0; i < count; i++)
        if (part < 0 || m[i].part == part) {
            *bytes += (double)g4_qrow_bytes(m[i].qt, m[i].K) * (double)m[i].N;
            *weights += (double)m[i].N * (double)m[i].K;
        }
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

#define TRY(call)                                                             \
    do {                                                                      \
        cudaError_t e_ = (call);                                              \
        if (e_ != cudaSuccess) {                                              \
            fprintf(stderr, "cuda_quant_speed: %s: %s\n", #call, cudaGetErrorString(e_)); \
            return 1;                                                         \
        }                                                                     \
    } while (0)

/* Median, least and most of 20 replays of one graph: the step's products (part < 0) or one part's. */
static int time_step(const mat *m, int count, int part, int T, const float *d_x, void *d_act, float *d_y,
                     cudaStream_t s, double *med, double *lo, double *hi) {
    g4_err err = {0};
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < count;) {
        if (part >= 0 && m[i].part != part) {
            i++;
            continue;
        }
        /* the matrices that share this input (of one format) go as one launch */
        g4_cuda_qmat many[G4_CUDA_QMAT_MAX];
        int n = 0;
        int64_t off = 0;
        do {
            many[n] = (g4_cuda_qmat){m[i + n].d_w, m[i + n].N, d_y + off};
            off += T * m[i + n].N;
            n++;
        } while (i + n < count && !m[i + n].fresh && m[i + n].qt == m[i].qt && n < G4_CUDA_QMAT_MAX &&
                 (part < 0 || m[i + n].part == part));
        if (g4_cuda_quantize_acts(d_x, T, m[i].K, d_act, s, &err) ||
            g4_cuda_qmatvec_many(m[i].qt, many, n, m[i].K, d_act, T, s, &err)) {
            fprintf(stderr, "cuda_quant_speed: %s\n", err.msg);
            cudaStreamEndCapture(s, &graph);
            return 1;
        }
        i += n;
    }
    TRY(cudaStreamEndCapture(s, &graph));
    TRY(cudaGraphInstantiate(&exec, graph, 0));
    cudaEvent_t a, b;
    TRY(cudaEventCreate(&a));
    TRY(cudaEventCreate(&b));
    float ms[20];
    for (int r = -3; r < 20; r++) {
        TRY(cudaEventRecord(a, s));
        TRY(cudaGraphLaunch(exec, s));
        TRY(cudaEventRecord(b, s));
        TRY(cudaEventSynchronize(b));
        if (r >= 0) TRY(cudaEventElapsedTime(&ms[r], a, b));
    }
    qsort(ms, 20, sizeof *ms, cmp_float);
    *med = (ms[9] + ms[10]) / 2, *lo = ms[0], *hi = ms[19];
    cudaEventDestroy(a), cudaEventDestroy(b);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    return 0;
}

int main(void) {
    g4_cuda_info info;
    g4_err err = {0};
    if (g4_cuda_probe(&info, &err)) {
        fprintf(stderr, "cuda_quant_speed: %s\n", err.msg);
        return 1;
    }
    mat m[1 + LAYERS * 9 + 1];
    int count = 0;
    build_step(m, &count);
    size_t bytes = 0;
    for (int i = 0; i < count; i++) {
        unsigned char *w = random_weights(m[i].qt, m[i].N, m[i].K);
        const size_t b = g4_qrow_bytes(m[i].qt, m[i].K) * (size_t)m[i].N;
        if (!w || g4_cuda_malloc(&m[i].d_w, b, &err) || g4_cuda_upload(m[i].d_w, w, b, &err)) {
            fprintf(stderr, "cuda_quant_speed: %s\n", w ? err.msg : "out of memory");
            return 1;
        }
        free(w);
        bytes += b;
    }
    const int64_t max_k = FFN > (int64_t)LAYERS * PLE ? FFN : (int64_t)LAYERS * PLE, rows = G4_CUDA_QMATMUL_MAX_T;
    float *x = malloc((size_t)(rows * max_k) * sizeof *x), *d_x, *d_y;
    void *d_act;
    for (int64_t i = 0; i < rows * max_k; i++) x[i] = (float)((i * 7919) % 201 - 100) / 50.0f;
    TRY(cudaMalloc((void **)&d_x, (size_t)(rows * max_k) * sizeof *x));
    TRY(cudaMalloc(&d_act, g4_qact_row_bytes(max_k) * (size_t)rows));
    TRY(cudaMalloc((void **)&d_y, (size_t)(rows * (VOCAB + 2 * FFN)) * sizeof(float)));
    TRY(cudaMemcpy(d_x, x, (size_t)(rows * max_k) * sizeof *x, cudaMemcpyHostToDevice));
    cudaStream_t s;
    TRY(cudaStreamCreate(&s));
    printf("%s, %d SMs, %.1f GiB; %d matrices, %.3f GB of weights a step\n", info.name, info.sm_count,
           info.memory_bytes / 1073741824.0, count, bytes * 1e-9);
    const int Ts[] = {1, 8, 64};
    for (int ti = 0; ti < 3; ti++)
        for (int part = -1; part < NPARTS; part++) { /* the whole step, then each part alone */
            double med, lo, hi, part_bytes, part_weights;
            size_of(m, count, part, &part_bytes, &part_weights);
            if (time_step(m, count, part, Ts[ti], d_x, d_act, d_y, s, &med, &lo, &hi)) return 1;
            printf("%2d row%s, %-22s %8.3f ms (min %.3f, max %.3f): %5.0f GB/s of weights, %4.0f int8 TOPS%s\n", Ts[ti],
                   Ts[ti] > 1 ? "s" : " ", part < 0 ? "the whole step:" : PARTS[part], med, lo, hi,
                   part_bytes / (med * 1e-3) * 1e-9, part_weights * 2.0 * Ts[ti] / (med * 1e-3) * 1e-12,
                   part < 0 ? "" : " (alone)");
        }
    for (int i = 0; i < count; i++) g4_cuda_free(m[i].d_w);
    cudaFree(d_x), cudaFree(d_act), cudaFree(d_y);
    free(x);
    return 0;
}
