/* fuzz_image.c — libFuzzer harness: arbitrary bytes through every image decoder, then the Gemma 4 preprocessing. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "media/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A small pixel cap keeps each run fast; the cap itself is what is under test for larger headers. The
     * orientation switch follows the input's length so both paths get covered. */
    g4_image_decode_opts opts = {1u << 18, (int)(size & 1)};
    g4_image img = {0};
    g4_err err = {0};
    if (g4_image_decode(data, size, &opts, &img, &err) != 0) {
        /* A failure must leave one terminated line and no image. */
        if (memchr(err.msg, '\0', sizeof err.msg) == NULL || strchr(err.msg, '\n') || !err.msg[0] || img.rgb)
            __builtin_trap();
        return 0;
    }
    if (img.width <= 0 || img.height <= 0 || (uint64_t)img.width * (uint64_t)img.height > opts.max_pixels)
        __builtin_trap();
    /* Read every decoded byte so that ASan sees a short buffer. */
    volatile unsigned sum = 0;
    for (size_t i = 0, n = (size_t)img.width * img.height * 3; i < n; i++) sum += img.rgb[i];
    /* Preprocessing always produces a budget-sized image (~10 ms under the sanitizers) and hardly depends on
     * the bytes: run it on one input in eight, and on small images only, so the decoders get the time. */
    g4_image_patches p = {0};
    if (size % 8 == 0 && (size_t)img.width * img.height <= (1u << 14) &&
        g4_image_preprocess(&img, 70, 16, 3, &p, &err) == 0) {
        if (p.num_soft_tokens <= 0 || p.num_soft_tokens > 70 || p.num_real_patches > p.max_patches) __builtin_trap();
        sum += p.pixel_values[(size_t)p.max_patches * p.patch_dim - 1];
        g4_image_patches_free(&p);
    }
    (void)sum;
    g4_image_free(&img);
    return 0;
}
