/* cpu_conv.c — the CPU backend's convolutions: the audio subsampler's strided 3x3 blocks and the causal depthwise
 * convolution over time. */
#include "backend/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* LayerNorm over n channels without bias (statistics in double), then ReLU. */
static void layer_norm_relu(float *v, int64_t n, const float *w, float eps) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mean += v[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += ((double)v[i] - mean) * ((double)v[i] - mean);
    const double rstd = 1.0 / sqrt(var / (double)n + (double)eps);
    for (int64_t i = 0; i < n; i++) {
        float y = (float)(((double)v[i] - mean) * rstd) * w[i];
        v[i] = y > 0 ? y : 0;
    }
}

typedef struct conv_job {
    const g4_conv2d *c;
    const g4_kernel_ops *ops;
    float *patch; /* per worker: 9 * C_in floats */
} conv_job;

/* Whether input time t holds data. */
static int input_row(const g4_conv2d *c, int64_t t) {
    return t >= c->in_first && t < c->in_first + c->in_rows && (!c->in_valid || c->in_valid[t]);
}

static void conv_rows(void *ctx, int64_t begin, int64_t end, int worker) {
    const conv_job *j = ctx;
    const g4_conv2d *c = j->c;
    const int64_t F_out = (c->F_in - 1) / 2 + 1, Ci = c->C_in, Co = c->C_out;
    float *patch = j->patch + (size_t)worker * 9 * (size_t)Ci;
    for (int64_t row = begin; row < end; row++) {
        const int64_t t = c->out_first + row;
        float *out = c->out + row * F_out * Co;
        if (t < 0 || t >= c->out_limit || (c->out_valid && !c->out_valid[t])) {
            memset(out, 0, (size_t)(F_out * Co) * sizeof(float));
            continue;
        }
        for (int64_t f = 0; f < F_out; f++) {
            for (int kh = 0; kh < 3; kh++) {
                const int64_t ti = 2 * t - 1 + kh;
                const int live = input_row(c, ti);
                for (int kw = 0; kw < 3; kw++) {
                    const int64_t fi = 2 * f - 1 + kw;
                    float *dst = patch + (kh * 3 + kw) * Ci;
                    if (live && fi >= 0 && fi < c->F_in)
                        memcpy(dst, c->in + ((ti - c->in_first) * c->F_in + fi) * Ci, (size_t)Ci * sizeof(float));
                    else
                        memset(dst, 0, (size_t)Ci * sizeof(float));
                }
            }
            float *cell = out + f * Co;
            for (int64_t o = 0; o < Co; o++) {
                const float *w = c->w + o * 9 * Ci;
                if (Ci == 1) { /* a lone input channel: its 9 taps summed in order */
                    float s = 0;
                    for (int k = 0; k < 9; k++) s += w[k] * patch[k];
                    cell[o] = s;
                } else {
                    cell[o] = j->ops->dot(patch, w, 9 * Ci);
                }
            }
            layer_norm_relu(cell, Co, c->norm, c->eps);
        }
    }
}

int g4_cpu_conv2d(g4_backend *b, const g4_conv2d *c, g4_err *err) {
    cpu_backend *cb = b->impl;
    conv_job j = {c, cb->c->ops, malloc((size_t)g4_pool_size(cb->c->pool) * 9 * (size_t)c->C_in * sizeof(float))};
    if (!j.patch) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for a convolution");
    g4_pool_for(cb->c->pool, c->out_rows, 1, conv_rows, &j);
    free(j.patch);
    return 0;
}

void g4_cpu_depthwise_conv(g4_backend *b, float *out, const float *x, int64_t rows, int64_t channels, const float *w,
                           int64_t K) {
    (void)b;
    for (int64_t t = 0; t < rows; t++) /* causal: K-1 zero rows on the left */
        for (int64_t ch = 0; ch < channels; ch++) {
            float s = 0;
            for (int64_t k = max64(0, K - 1 - t); k < K; k++) s += w[ch * K + k] * x[(t - (K - 1) + k) * channels + ch];
            out[t * channels + ch] = s;
        }
}
