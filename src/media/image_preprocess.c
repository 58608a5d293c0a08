/* image_preprocess.c — Gemma 4's image and video-frame processor: budget resize, 16x16 patches, positions, padding. */
#include "image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int g4_image_budget_valid(int max_soft_tokens) {
    return max_soft_tokens == 70 || max_soft_tokens == 140 || max_soft_tokens == 280 || max_soft_tokens == 560 ||
           max_soft_tokens == 1120;
}

int g4_image_target_size(int height, int width, int patch_size, int max_patches, int pooling_kernel,
                         int *target_h, int *target_w, g4_err *err) {
    if (height <= 0 || width <= 0 || patch_size <= 0 || max_patches <= 0 || pooling_kernel <= 0 ||
        patch_size > 4096 || pooling_kernel > 64 || max_patches > (1 << 24))
        return g4_fail(err, GEMMA4C_ERR_ARG, "image size %dx%d / patch %d / max patches %d / pooling %d: invalid",
                       width, height, patch_size, max_patches, pooling_kernel);
    /* Python doubles throughout, as the reference: every integer here is exact in a double. */
    double total_px = (double)height * (double)width;
    double target_px = (double)max_patches * (double)patch_size * (double)patch_size;
    double factor = sqrt(target_px / total_px);
    double ideal_h = factor * height, ideal_w = factor * width;
    int64_t side = (int64_t)pooling_kernel * patch_size;
    int64_t th = (int64_t)floor(ideal_h / (double)side) * side;
    int64_t tw = (int64_t)floor(ideal_w / (double)side) * side;
    if (th == 0 && tw == 0)
        return g4_fail(err, GEMMA4C_ERR_ARG, "image %dx%d cannot be resized to a non-empty multiple of %lld", width,
                       height, (long long)side);
    int64_t max_side = (int64_t)(max_patches / (pooling_kernel * pooling_kernel)) * side;
    if (th == 0) {
        th = side;
        int64_t w = (int64_t)floor((double)width / (double)height) * side;
        tw = w < max_side ? w : max_side;
    } else if (tw == 0) {
        tw = side;
        int64_t h = (int64_t)floor((double)height / (double)width) * side;
        th = h < max_side ? h : max_side;
    }
    if ((double)th * (double)tw > target_px || th > INT32_MAX || tw > INT32_MAX)
        return g4_fail(err, GEMMA4C_ERR_ARG, "resizing %dx%d to %lldx%lld exceeds %d patches of %d pixels", width,
                       height, (long long)tw, (long long)th, max_patches, patch_size);
    *target_h = (int)th;
    *target_w = (int)tw;
    return 0;
}

typedef int (*resize_fn)(const g4_image *, int, int, g4_image *, g4_err *);

static int preprocess(const g4_image *img, int max_soft_tokens, int patch_size, int pooling_kernel, resize_fn fn,
                      g4_image_patches *out, g4_err *err) {
    memset(out, 0, sizeof *out);
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return g4_fail(err, GEMMA4C_ERR_ARG, "preprocess: empty image");
    if (!g4_image_budget_valid(max_soft_tokens))
        return g4_fail(err, GEMMA4C_ERR_ARG, "max_soft_tokens must be one of 70, 140, 280, 560, 1120 (got %d)",
                       max_soft_tokens);
    if (patch_size <= 0 || patch_size > 256 || pooling_kernel <= 0 || pooling_kernel > 16)
        return g4_fail(err, GEMMA4C_ERR_ARG, "preprocess: invalid patch size %d or pooling kernel %d", patch_size,
                       pooling_kernel);
    int max_patches = max_soft_tokens * pooling_kernel * pooling_kernel;
    int th, tw, rc;
    if ((rc = g4_image_target_size(img->height, img->width, patch_size, max_patches, pooling_kernel, &th, &tw,
                                   err)) != 0)
        return rc;

    g4_image resized = {0};
    const g4_image *src = img;
    if (th != img->height || tw != img->width) {
        if ((rc = fn(img, tw, th, &resized, err)) != 0) return rc;
        src = &resized;
    }
    int pw = tw / patch_size, ph = th / patch_size;
    int n_real = pw * ph;
    int patch_dim = 3 * patch_size * patch_size;
    out->pixel_values = calloc((size_t)max_patches * (size_t)patch_dim, 1);
    out->positions = malloc((size_t)max_patches * 2 * sizeof *out->positions);
    if (!out->pixel_values || !out->positions) {
        g4_image_free(&resized);
        g4_image_patches_free(out);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "preprocess: out of memory for %d patches", max_patches);
    }
    out->max_patches = max_patches;
    out->patch_dim = patch_dim;
    out->num_real_patches = n_real;
    out->num_soft_tokens = n_real / (pooling_kernel * pooling_kernel);
    out->resized_w = tw;
    out->resized_h = th;
    out->patches_w = pw;
    out->patches_h = ph;
    /* Channel fastest, then dx, then dy: a patch row of the input is ps consecutive RGB pixels. */
    size_t row_bytes = (size_t)patch_size * 3;
    for (int r = 0; r < ph; r++) {
        for (int c = 0; c < pw; c++) {
            uint8_t *dst = out->pixel_values + (size_t)(r * pw + c) * patch_dim;
            for (int dy = 0; dy < patch_size; dy++) {
                const uint8_t *s = src->rgb + ((size_t)(r * patch_size + dy) * tw + (size_t)c * patch_size) * 3;
                memcpy(dst + (size_t)dy * row_bytes, s, row_bytes);
            }
            out->positions[2 * (r * pw + c) + 0] = c;
            out->positions[2 * (r * pw + c) + 1] = r;
        }
    }
    for (int i = n_real; i < max_patches; i++) out->positions[2 * i] = out->positions[2 * i + 1] = -1;
    g4_image_free(&resized);
    return 0;
}

int g4_image_preprocess(const g4_image *img, int max_soft_tokens, int patch_size, int pooling_kernel,
                        g4_image_patches *out, g4_err *err) {
    return preprocess(img, max_soft_tokens, patch_size, pooling_kernel, g4_image_resize_pil_bicubic, out, err);
}

int g4_video_frame_preprocess(const g4_image *frame, int max_soft_tokens, int patch_size, int pooling_kernel,
                              g4_image_patches *out, g4_err *err) {
    return preprocess(frame, max_soft_tokens, patch_size, pooling_kernel, g4_image_resize_torch_bicubic_aa, out, err);
}

void g4_image_patches_free(g4_image_patches *p) {
    if (!p) return;
    free(p->pixel_values);
    free(p->positions);
    memset(p, 0, sizeof *p);
}

void g4_image_u8_to_f32(const uint8_t *in, size_t n, float *out) {
    /* float64(u) * (1/255) rounded once to float32: the correctly rounded u/255 for every byte. */
    float table[256];
    for (int i = 0; i < 256; i++) table[i] = (float)((double)i * (1.0 / 255.0));
    for (size_t i = 0; i < n; i++) out[i] = table[in[i]];
}
