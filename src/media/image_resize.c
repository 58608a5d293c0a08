/* image_resize.c — bicubic resizing bit-identical to Pillow (images) and to PyTorch's uint8 kernel (video frames). */
#include "image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The weights are computed in double exactly as the references compute them; a fused multiply-add would round
 * differently and move a weight across a fixed-point rounding boundary now and then. */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

typedef enum { KIND_PIL, KIND_TORCH } resize_kind;

/* Per output index along one axis: the first input index, the number of taps and the fixed-point taps. */
typedef struct axis_coeffs {
    int out_size;
    int ksize; /* stride of k */
    int prec;  /* fixed-point bits */
    int *start;
    int *count;
    int32_t *k;
} axis_coeffs;

/* Keys' cubic with a = -0.5, written the way Pillow's Resample.c evaluates it. */
static double cubic_pil(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* The same kernel as ATen's cubic_convolution1/2 evaluate it (a different rounding of the outer lobe). */
static double cubic_torch(double x) {
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0.0;
}

static void axis_free(axis_coeffs *c) {
    free(c->start);
    free(c->count);
    free(c->k);
    memset(c, 0, sizeof *c);
}

static int axis_build(int in_size, int out_size, resize_kind kind, axis_coeffs *c, g4_err *err) {
    memset(c, 0, sizeof *c);
    /* Pillow passes the source extent through a float box; ATen divides the integer sizes. */
    double scale = kind == KIND_PIL ? (double)(float)in_size / out_size : (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale; /* widen the kernel when shrinking: antialiasing */
    double support = 2.0 * filterscale;
    double ksize_d = ceil(support) * 2 + 1;
    if (ksize_d > (double)(1 << 28) || (double)out_size * ksize_d > (double)(SIZE_MAX / sizeof(double)) / 2)
        return g4_fail(err, GEMMA4C_ERR_ARG, "resize %d -> %d: kernel too large", in_size, out_size);
    int ksize = (int)ksize_d;
    size_t nk = (size_t)out_size * (size_t)ksize;
    double *w = malloc(nk * sizeof *w);
    c->start = malloc((size_t)out_size * sizeof *c->start);
    c->count = malloc((size_t)out_size * sizeof *c->count);
    c->k = malloc(nk * sizeof *c->k);
    if (!w || !c->start || !c->count || !c->k) {
        free(w);
        axis_free(c);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "resize %d -> %d: out of memory for weights", in_size, out_size);
    }
    c->out_size = out_size;
    c->ksize = ksize;
    double inv_filterscale = 1.0 / filterscale;
    double wmax = 0.0;
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale;
        /* Both references truncate toward zero here (a C cast), then clamp. */
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        int n = xmax - xmin;
        if (n < 0) n = 0;
        if (n > ksize) n = ksize;
        double *wk = w + (size_t)xx * ksize;
        double total = 0.0;
        for (int x = 0; x < n; x++) {
            double arg = (x + xmin - center + 0.5) * inv_filterscale;
            double v = kind == KIND_PIL ? cubic_pil(arg) : cubic_torch(arg);
            wk[x] = v;
            total += v;
        }
        if (total != 0.0) {
            for (int x = 0; x < n; x++) {
                wk[x] /= total;
                if (wk[x] > wmax) wmax = wk[x];
            }
        }
        for (int x = n; x < ksize; x++) wk[x] = 0.0;
        c->start[xx] = xmin;
        c->count[xx] = n;
    }
    int prec;
    if (kind == KIND_PIL) {
        prec = 22; /* PRECISION_BITS = 32 - 8 - 2 */
    } else {
        /* The most bits that keep the largest weight inside an int16. */
        for (prec = 0; prec < 22; prec++) {
            int next = (int)(0.5 + wmax * (double)(1 << (prec + 1)));
            if (next >= (1 << 15)) break;
        }
        if (prec == 0) prec = 1; /* unreachable for normalised weights; keeps the rounding term defined */
    }
    c->prec = prec;
    double one = (double)(1 << prec);
    for (size_t i = 0; i < nk; i++) {
        double v = w[i] * one;
        c->k[i] = v < 0 ? (int32_t)(-0.5 + v) : (int32_t)(0.5 + v);
    }
    free(w);
    return 0;
}

static inline uint8_t clip_shift(int32_t acc, int prec) {
    if (acc < 0) return 0;
    acc >>= prec;
    return acc > 255 ? 255 : (uint8_t)acc;
}

/* Rows [y0, y0+rows) of `in` resampled along x into `out` (rows x out_w x 3). */
static void pass_horizontal(const uint8_t *in, int in_w, int y0, int rows, const axis_coeffs *c, uint8_t *out) {
    const int32_t half = (int32_t)1 << (c->prec - 1);
    for (int y = 0; y < rows; y++) {
        const uint8_t *line = in + (size_t)(y0 + y) * in_w * 3;
        uint8_t *o = out + (size_t)y * c->out_size * 3;
        for (int xx = 0; xx < c->out_size; xx++) {
            const int32_t *k = c->k + (size_t)xx * c->ksize;
            const uint8_t *p = line + (size_t)c->start[xx] * 3;
            int32_t s0 = half, s1 = half, s2 = half;
            for (int x = 0; x < c->count[xx]; x++) {
                s0 += p[3 * x + 0] * k[x];
                s1 += p[3 * x + 1] * k[x];
                s2 += p[3 * x + 2] * k[x];
            }
            o[3 * xx + 0] = clip_shift(s0, c->prec);
            o[3 * xx + 1] = clip_shift(s1, c->prec);
            o[3 * xx + 2] = clip_shift(s2, c->prec);
        }
    }
}

/* Resampling along y; `row0` is the input row that c->start refers to as 0. Integer sums are exact, so
 * accumulating a whole output row tap by tap gives the same bytes as the references' per-pixel loops. */
static void pass_vertical(const uint8_t *in, int width, int row0, const axis_coeffs *c, int32_t *acc, uint8_t *out) {
    size_t row_len = (size_t)width * 3;
    const int32_t half = (int32_t)1 << (c->prec - 1);
    for (int yy = 0; yy < c->out_size; yy++) {
        for (size_t i = 0; i < row_len; i++) acc[i] = half;
        const int32_t *k = c->k + (size_t)yy * c->ksize;
        for (int y = 0; y < c->count[yy]; y++) {
            const uint8_t *line = in + (size_t)(c->start[yy] - row0 + y) * row_len;
            int32_t ky = k[y];
            for (size_t i = 0; i < row_len; i++) acc[i] += line[i] * ky;
        }
        uint8_t *o = out + (size_t)yy * row_len;
        for (size_t i = 0; i < row_len; i++) o[i] = clip_shift(acc[i], c->prec);
    }
}

static int resize(const g4_image *in, int out_w, int out_h, resize_kind kind, g4_image *out, g4_err *err) {
    memset(out, 0, sizeof *out);
    if (!in || !in->rgb || in->width <= 0 || in->height <= 0)
        return g4_fail(err, GEMMA4C_ERR_ARG, "resize: empty input image");
    if (out_w <= 0 || out_h <= 0 || (uint64_t)out_w * (uint64_t)out_h > ((uint64_t)1 << 32))
        return g4_fail(err, GEMMA4C_ERR_ARG, "resize: invalid output size %dx%d", out_w, out_h);
    size_t out_bytes = (size_t)out_w * (size_t)out_h * 3;
    uint8_t *dst = malloc(out_bytes);
    if (!dst) return g4_fail(err, GEMMA4C_ERR_NOMEM, "resize: out of memory for %dx%d", out_w, out_h);

    int need_h = out_w != in->width, need_v = out_h != in->height;
    if (!need_h && !need_v) {
        memcpy(dst, in->rgb, out_bytes);
        *out = (g4_image){out_w, out_h, dst};
        return 0;
    }
    axis_coeffs cv = {0}, ch = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    int rc = 0;
    const uint8_t *src = in->rgb; /* what the vertical pass reads */
    int row0 = 0;
    if (need_v && (rc = axis_build(in->height, out_h, kind, &cv, err)) != 0) goto done;
    if (need_h) {
        if ((rc = axis_build(in->width, out_w, kind, &ch, err)) != 0) goto done;
        /* Only the input rows the vertical pass reads need the horizontal pass (Pillow's ybox). */
        int first = 0, last = in->height;
        if (need_v) {
            first = cv.start[0];
            last = cv.start[out_h - 1] + cv.count[out_h - 1];
            if (last < first) last = first;
        }
        if (!need_v) {
            pass_horizontal(in->rgb, in->width, 0, in->height, &ch, dst);
            *out = (g4_image){out_w, out_h, dst};
            dst = NULL;
            goto done;
        }
        tmp = malloc((size_t)(last - first > 0 ? last - first : 1) * (size_t)out_w * 3);
        if (!tmp) {
            rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "resize: out of memory for the intermediate image");
            goto done;
        }
        pass_horizontal(in->rgb, in->width, first, last - first, &ch, tmp);
        src = tmp;
        row0 = first;
    }
    acc = malloc((size_t)out_w * 3 * sizeof *acc);
    if (!acc) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "resize: out of memory");
        goto done;
    }
    pass_vertical(src, out_w, row0, &cv, acc, dst);
    *out = (g4_image){out_w, out_h, dst};
    dst = NULL;
done:
    free(dst);
    free(tmp);
    free(acc);
    axis_free(&cv);
    axis_free(&ch);
    return rc;
}

int g4_image_resize_pil_bicubic(const g4_image *in, int out_w, int out_h, g4_image *out, g4_err *err) {
    return resize(in, out_w, out_h, KIND_PIL, out, err);
}

int g4_image_resize_torch_bicubic_aa(const g4_image *in, int out_w, int out_h, g4_image *out, g4_err *err) {
    return resize(in, out_w, out_h, KIND_TORCH, out, err);
}
