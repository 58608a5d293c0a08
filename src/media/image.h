/* image.h — still images in: decoding to 8-bit RGB, reference-exact resampling and Gemma 4 patch preprocessing. */
#ifndef G4_IMAGE_H
#define G4_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* ---- decoding ------------------------------------------------------------------------------------------- */

/* An 8-bit RGB image, rows top to bottom, pixels interleaved R,G,B; `rgb` is owned (free with g4_image_free). */
typedef struct g4_image {
    int width, height;
    uint8_t *rgb;
} g4_image;

/* Pillow refuses images above 2 * Image.MAX_IMAGE_PIXELS (DecompressionBombError); so do we by default. */
#define G4_IMAGE_DEFAULT_MAX_PIXELS 178956970ull

typedef enum g4_image_format {
    G4_IMG_UNKNOWN = 0,
    G4_IMG_PNG,
    G4_IMG_JPEG,
    G4_IMG_WEBP,
    G4_IMG_GIF,
    G4_IMG_BMP,
} g4_image_format;

typedef struct g4_image_decode_opts {
    uint64_t max_pixels;   /* refuse larger images before allocating for them; 0: G4_IMAGE_DEFAULT_MAX_PIXELS */
    int keep_orientation;  /* 1: ignore EXIF/XMP orientation (default 0: apply it as ImageOps.exif_transpose) */
} g4_image_decode_opts;

/* The format the bytes are in, judged by their content only. */
g4_image_format g4_image_sniff(const void *data, size_t size);
const char *g4_image_format_name(g4_image_format f);

/* Decodes PNG, JPEG (baseline, progressive, greyscale, CMYK/YCCK), WebP, GIF (first frame) or BMP into RGB
 * exactly as Pillow's Image.open(...) then ImageOps.exif_transpose(...) then .convert("RGB") would (alpha is
 * dropped, not composited; palettes and greyscale are expanded; 16-bit samples reduced the way Pillow does).
 * `opts` may be NULL. On failure `out` is left empty and err holds one line. */
int g4_image_decode(const void *data, size_t size, const g4_image_decode_opts *opts, g4_image *out, g4_err *err);
int g4_image_load(const char *path, const g4_image_decode_opts *opts, g4_image *out, g4_err *err);
void g4_image_free(g4_image *img);

/* ---- resampling ----------------------------------------------------------------------------------------- */

/* Pillow's Image.resize(size, BICUBIC) on an RGB image (libImaging/Resample.c: separable, horizontal pass
 * first, antialiased when shrinking, 22-bit fixed-point weights): bit-identical output. */
int g4_image_resize_pil_bicubic(const g4_image *in, int out_w, int out_h, g4_image *out, g4_err *err);

/* PyTorch's uint8 bicubic resize with antialias=True (what torchvision's resize does to uint8 video frames):
 * the same weights as Pillow rounded to int16 with a per-axis precision instead of 22 bits. Bit-identical. */
int g4_image_resize_torch_bicubic_aa(const g4_image *in, int out_w, int out_h, g4_image *out, g4_err *err);

/* ---- Gemma 4 preprocessing ------------------------------------------------------------------------------ */

/* The soft-token budgets the reference accepts, and its defaults. */
#define G4_IMAGE_DEFAULT_SOFT_TOKENS 280
#define G4_VIDEO_DEFAULT_SOFT_TOKENS 70
int g4_image_budget_valid(int max_soft_tokens); /* 1 for 70, 140, 280, 560, 1120 */

/* get_aspect_ratio_preserving_size of the reference: the largest size with sides that are multiples of
 * patch_size*pooling_kernel and at most max_patches patches (small images are scaled up). */
int g4_image_target_size(int height, int width, int patch_size, int max_patches, int pooling_kernel,
                         int *target_h, int *target_w, g4_err *err);

/* What the reference image processor hands the vision tower for one image. */
typedef struct g4_image_patches {
    int max_patches;      /* rows of pixel_values / positions: max_soft_tokens * pooling_kernel^2 */
    int patch_dim;        /* 3 * patch_size^2 */
    int num_real_patches; /* rows before the padding */
    int num_soft_tokens;  /* num_real_patches / pooling_kernel^2: placeholders this image takes in the prompt */
    int resized_w, resized_h;
    int patches_w, patches_h; /* patch grid of the resized image */
    /* [max_patches][patch_dim] pixel bytes (the model input is byte/255): patch r*patches_w+c holds pixel
     * (x = c*ps+dx, y = r*ps+dy), channel ch at (dy*ps + dx)*3 + ch; padding rows are 0. */
    uint8_t *pixel_values;
    int32_t *positions; /* [max_patches][2] = (x, y) patch coordinates; padding rows (-1, -1) */
} g4_image_patches;

/* Image processor (Gemma4ImageProcessorPil): budget resize with Pillow's bicubic, then patches. */
int g4_image_preprocess(const g4_image *img, int max_soft_tokens, int patch_size, int pooling_kernel,
                        g4_image_patches *out, g4_err *err);
/* Video processor, per frame (Gemma4VideoProcessor): the same, but resized with PyTorch's bicubic. */
int g4_video_frame_preprocess(const g4_image *frame, int max_soft_tokens, int patch_size, int pooling_kernel,
                              g4_image_patches *out, g4_err *err);
void g4_image_patches_free(g4_image_patches *p);

/* pixel_values as the float32 values the reference feeds the model (byte/255, the correctly rounded float32
 * quotient, which is what both processors produce): n bytes in, n floats out. */
void g4_image_u8_to_f32(const uint8_t *in, size_t n, float *out);

#endif
