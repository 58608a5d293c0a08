/* fuzz_video.c — libFuzzer harness: arbitrary bytes through the video decoder (memory input) and frame sampling. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "media/video.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Small caps keep each run fast (every frame of the stream is decoded to count them); the caps themselves are
     * what is under test for larger headers. The sample count follows the input so both sampling passes run. */
    g4_video_decode_opts opts = {0};
    opts.num_frames = 1 + (int)(size % 8);
    opts.max_pixels = 1u << 16;
    opts.max_decoded_frames = 64;
    g4_video v;
    g4_err err = {0};
    if (g4_video_decode_memory(data, size, "fuzz", &opts, &v, &err) != 0) {
        /* A failure must leave one terminated line and nothing allocated. */
        if (memchr(err.msg, '\0', sizeof err.msg) == NULL || strchr(err.msg, '\n') || !err.msg[0] || v.frames ||
            v.timestamps_s || v.frame_indices)
            __builtin_trap();
        return 0;
    }
    if (v.n_frames < 1 || v.n_frames > opts.num_frames || v.total_frames < v.n_frames ||
        v.total_frames > opts.max_decoded_frames || !(v.fps > 0))
        __builtin_trap();
    volatile unsigned sum = 0;
    for (int i = 0; i < v.n_frames; i++) {
        const g4_image *f = &v.frames[i];
        if (f->width <= 0 || f->height <= 0 || (uint64_t)f->width * (uint64_t)f->height > opts.max_pixels || !f->rgb)
            __builtin_trap();
        if (v.frame_indices[i] < 0 || v.frame_indices[i] >= v.total_frames ||
            (i > 0 && v.frame_indices[i] <= v.frame_indices[i - 1]))
            __builtin_trap();
        /* Read every byte so that ASan sees a short buffer. */
        for (size_t k = 0, n = (size_t)f->width * f->height * 3; k < n; k++) sum += f->rgb[k];
        char txt[16];
        int len = g4_video_timestamp_text(v.timestamps_s[i], txt);
        if (len <= 0 || len >= 16) __builtin_trap();
    }
    (void)sum;
    g4_video_free(&v);
    return 0;
}
