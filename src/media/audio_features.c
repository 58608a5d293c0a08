/* audio_features.c — Gemma 4's log-mel front end, token counts and the long-audio split, matching transformers 5.17. */
#include "media/audio.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FFT_N 512                   /* 2^ceil(log2(320)) */
#define FFT_HALF (FFT_N / 2)        /* the real FFT runs as a complex FFT of this size */
#define N_BINS (FFT_N / 2 + 1)      /* 257 magnitude bins */
#define PAD_MULTIPLE 128            /* the extractor pads the waveform (samples, not frames) to this */
#define LEFT_PAD (G4_AUDIO_FRAME / 2) /* semi-causal: the first window is centred on sample 0 */
#define UNFOLD (G4_AUDIO_FRAME + 1) /* the reference unfolds 321-sample windows and drops the last sample */
#define MEL_FLOOR 1e-3              /* added before the log, not a clamp */

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

typedef struct mel_tables {
    float window[G4_AUDIO_FRAME];
    /* The filterbank's non-zero weights only: filter j covers bins lo[j] .. lo[j] + len[j] - 1, its weights at
     * fb[off[j]] onwards. A bin lies inside at most two triangles, so 2 * 257 weights suffice. */
    double fb[2 * N_BINS];
    int lo[G4_AUDIO_MEL_BINS], len[G4_AUDIO_MEL_BINS], off[G4_AUDIO_MEL_BINS];
    double tw[FFT_HALF / 2][2];   /* e^{-2 pi i k / 256}: the complex FFT's twiddles */
    double post[N_BINS][2];       /* e^{-2 pi i k / 512}: splitting the packed real FFT */
    int rev[FFT_HALF];            /* bit reversal of 8-bit indices */
} mel_tables;

/* numpy.linspace(start, stop, num)[i]: i * step + start, the last point set to stop exactly. */
static double linspace_at(double start, double stop, int num, int i) {
    if (i == num - 1) return stop;
    double step = (stop - start) / (double)(num - 1);
    return (double)i * step + start;
}

static void build_tables(mel_tables *t) {
    /* np.hanning(321)[:-1] in float64 (numpy's own formula, 0.5 + 0.5 cos(pi n / (M-1)) over n = 1-M, 3-M, ...),
     * then rounded to float32: the reference keeps the window in float32, and that rounding shows in the output. */
    for (int i = 0; i < G4_AUDIO_FRAME; i++) {
        double n = (double)(2 * i - G4_AUDIO_FRAME);
        t->window[i] = (float)(0.5 + 0.5 * cos(M_PI * n / (double)G4_AUDIO_FRAME));
    }

    /* mel_filter_bank(257, 128, 0, 8000, 16000, norm=None, mel_scale="htk"), every step in double as numpy does. */
    enum { N_EDGES = G4_AUDIO_MEL_BINS + 2 };
    double mel_max = 2595.0 * log10(1.0 + 8000.0 / 700.0);
    double edge[N_EDGES];
    for (int i = 0; i < N_EDGES; i++) {
        double m = linspace_at(0.0, mel_max, N_EDGES, i);
        edge[i] = 700.0 * (pow(10.0, m / 2595.0) - 1.0);
    }
    int used = 0;
    for (int j = 0; j < G4_AUDIO_MEL_BINS; j++) {
        double down_w = edge[j + 1] - edge[j], up_w = edge[j + 2] - edge[j + 1];
        t->lo[j] = 0, t->len[j] = 0, t->off[j] = used;
        for (int k = 0; k < N_BINS; k++) {
            double f = linspace_at(0.0, (double)(G4_AUDIO_RATE / 2), N_BINS, k);
            double down = -(edge[j] - f) / down_w;
            double up = (edge[j + 2] - f) / up_w;
            double w = down < up ? down : up; /* max(0, min(down, up)) */
            if (!(w > 0.0) || used >= 2 * N_BINS) continue;
            if (t->len[j] == 0) t->lo[j] = k;
            t->len[j] = k - t->lo[j] + 1; /* triangles are contiguous: no zero falls inside */
            t->fb[used++] = w;
        }
        /* Filter 0 (0-28 Hz) covers no bin: an empty sum, log(1e-3), as in the reference. */
    }

    for (int k = 0; k < FFT_HALF / 2; k++) {
        double a = -2.0 * M_PI * (double)k / (double)FFT_HALF;
        t->tw[k][0] = cos(a);
        t->tw[k][1] = sin(a);
    }
    for (int k = 0; k < N_BINS; k++) {
        double a = -2.0 * M_PI * (double)k / (double)FFT_N;
        t->post[k][0] = cos(a);
        t->post[k][1] = sin(a);
    }
    t->post[0][0] = 1.0, t->post[0][1] = 0.0;
    t->post[FFT_HALF][0] = -1.0, t->post[FFT_HALF][1] = 0.0;
    for (int i = 0; i < FFT_HALF; i++) {
        int r = 0;
        for (int b = 0; b < 8; b++) r |= ((i >> b) & 1) << (7 - b);
        t->rev[i] = r;
    }
}

/* In-place radix-2 complex FFT of 256 points (input already in bit-reversed order). The reference's FFT is
 * numpy's float32 pocketfft; doing it in double costs nothing measurable against it (the spec measured 4.8e-7). */
static void fft256(double (*z)[2], const mel_tables *t) {
    for (int len = 2; len <= FFT_HALF; len <<= 1) {
        int half = len / 2, stride = FFT_HALF / len;
        for (int s = 0; s < FFT_HALF; s += len) {
            for (int k = 0; k < half; k++) {
                const double *w = t->tw[k * stride];
                double *a = z[s + k], *b = z[s + k + half];
                double br = b[0] * w[0] - b[1] * w[1];
                double bi = b[0] * w[1] + b[1] * w[0];
                b[0] = a[0] - br, b[1] = a[1] - bi;
                a[0] += br, a[1] += bi;
            }
        }
    }
}

/* |rfft(y, 512)| for a 320-sample frame, rounded to float32 as numpy's complex64 abs is. */
static void frame_magnitude(const float *y, float *mag, const mel_tables *t) {
    double z[FFT_HALF][2];
    /* Pack even/odd samples as one complex sequence of half the length. */
    for (int m = 0; m < FFT_HALF; m++) {
        int r = t->rev[m];
        double re = 0.0, im = 0.0;
        if (2 * m + 1 < G4_AUDIO_FRAME) re = y[2 * m], im = y[2 * m + 1];
        z[r][0] = re, z[r][1] = im;
    }
    fft256(z, t);
    for (int k = 0; k < N_BINS; k++) {
        int a = k % FFT_HALF, b = (FFT_HALF - k) % FFT_HALF;
        double zr = z[a][0], zi = z[a][1], cr = z[b][0], ci = -z[b][1]; /* Z[k] and conj(Z[256-k]) */
        double er = 0.5 * (zr + cr), ei = 0.5 * (zi + ci);                 /* even samples' spectrum */
        double dr = zr - cr, di = zi - ci;
        double or_ = 0.5 * di, oi = -0.5 * dr;                             /* odd samples': (Z - conj)/(2i) */
        double wr = t->post[k][0], wi = t->post[k][1];
        double xr = er + (or_ * wr - oi * wi), xi = ei + (or_ * wi + oi * wr);
        mag[k] = (float)sqrt(xr * xr + xi * xi);
    }
}

size_t g4_audio_frame_count(size_t n_samples) {
    size_t n = n_samples > G4_AUDIO_MAX_SAMPLES ? G4_AUDIO_MAX_SAMPLES : n_samples;
    size_t padded = (n + PAD_MULTIPLE - 1) / PAD_MULTIPLE * PAD_MULTIPLE + LEFT_PAD;
    return padded < UNFOLD ? 0 : (padded - UNFOLD) / G4_AUDIO_HOP + 1;
}

/* Frames whose window ends (padded sample 160t + 320) on real audio: 160t + 160 < n. */
static size_t valid_frames(size_t n_samples) {
    size_t n = n_samples > G4_AUDIO_MAX_SAMPLES ? G4_AUDIO_MAX_SAMPLES : n_samples;
    size_t frames = g4_audio_frame_count(n);
    if (n <= G4_AUDIO_HOP) return 0;
    size_t v = (n - 1) / G4_AUDIO_HOP;
    return v < frames ? v : frames;
}

/* The processor subsamples the frame mask twice (mask[::2] cut to the conv output length) and counts what is
 * left; with a prefix mask that is ceil(n_valid / 4). */
static size_t tokens_from_valid(size_t n_valid) { return (n_valid + 3) / 4; }

size_t g4_audio_soft_token_count(size_t n_samples) { return tokens_from_valid(valid_frames(n_samples)); }

int g4_audio_features(const float *wave, size_t n, g4_audio_features_out *out, g4_err *err) {
    if (!out) return g4_fail(err, GEMMA4C_ERR_ARG, "audio features: no output");
    memset(out, 0, sizeof *out);
    if (n && !wave) return g4_fail(err, GEMMA4C_ERR_ARG, "audio features: no waveform");
    size_t len = n > G4_AUDIO_MAX_SAMPLES ? G4_AUDIO_MAX_SAMPLES : n;
    for (size_t i = 0; i < len; i++)
        if (!isfinite(wave[i]))
            return g4_fail(err, GEMMA4C_ERR_ARG, "audio features: sample %zu is not a finite number", i);
    size_t frames = g4_audio_frame_count(len);
    size_t valid = valid_frames(len);
    out->n_frames = frames;
    out->n_valid = valid;
    out->n_tokens = tokens_from_valid(valid);
    if (frames == 0) return 0;

    out->features = malloc(frames * G4_AUDIO_MEL_BINS * sizeof(float));
    out->mask = malloc(frames);
    if (!out->features || !out->mask) {
        g4_audio_features_free(out);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "audio features: out of memory for %zu frames", frames);
    }
    mel_tables tables; /* about 12 KB, rebuilt per call: microseconds, and no shared state */
    const mel_tables *t = &tables;
    build_tables(&tables);

    float y[G4_AUDIO_FRAME], mag[N_BINS];
    for (size_t f = 0; f < frames; f++) {
        /* Window start in the unpadded waveform; samples before 0 or past the end are the zero padding. */
        ptrdiff_t base = (ptrdiff_t)(f * G4_AUDIO_HOP) - LEFT_PAD;
        for (int i = 0; i < G4_AUDIO_FRAME; i++) {
            ptrdiff_t idx = base + i;
            float x = (idx >= 0 && (size_t)idx < len) ? wave[idx] : 0.0f;
            y[i] = x * t->window[i]; /* a float32 product, as the reference's float32 arrays give */
        }
        frame_magnitude(y, mag, t);
        int ok = f < valid;
        out->mask[f] = (unsigned char)ok;
        float *row = out->features + f * G4_AUDIO_MEL_BINS;
        for (int j = 0; j < G4_AUDIO_MEL_BINS; j++) {
            double s = 0.0;
            const double *w = t->fb + t->off[j];
            for (int k = 0; k < t->len[j]; k++) s += (double)mag[t->lo[j] + k] * w[k];
            float v = (float)log(s + MEL_FLOOR);
            /* The reference multiplies by the mask (-0.0 where the log was negative); copysign gives the same
             * zeros without turning an overflowed +inf into NaN. */
            row[j] = ok ? v : copysignf(0.0f, v);
        }
    }
    return 0;
}

void g4_audio_features_free(g4_audio_features_out *f) {
    if (!f) return;
    free(f->features);
    free(f->mask);
    memset(f, 0, sizeof *f);
}

size_t g4_audio_split(size_t n_samples, g4_audio_segment *segs, size_t cap) {
    if (n_samples == 0) return 0;
    size_t k = (n_samples + G4_AUDIO_MAX_SAMPLES - 1) / G4_AUDIO_MAX_SAMPLES;
    size_t seg = (n_samples + k - 1) / k;
    /* Round up to whole tokens; 480000 is itself 750 tokens, so the rounding never passes 30 s. */
    seg = (seg + G4_AUDIO_SAMPLES_PER_TOKEN - 1) / G4_AUDIO_SAMPLES_PER_TOKEN * G4_AUDIO_SAMPLES_PER_TOKEN;
    size_t count = 0;
    for (size_t start = 0; start < n_samples; start += seg, count++) {
        if (segs && count < cap) {
            segs[count].start = start;
            segs[count].length = n_samples - start < seg ? n_samples - start : seg;
        }
    }
    return count;
}
