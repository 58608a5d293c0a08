/* fuzz_audio.c — libFuzzer harness: arbitrary bytes through the audio decoder (memory input) and the log-mel front end. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "media/audio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A short limit keeps each run fast; long outputs are what the limit check is for. */
    g4_audio_decode_opts opts = {G4_AUDIO_RATE * 2};
    g4_audio a;
    g4_err err = {0};
    if (g4_audio_decode_memory(data, size, "fuzz", &opts, &a, &err) != 0) {
        /* A failure must leave a terminated one-line message and nothing allocated. */
        if (memchr(err.msg, '\0', sizeof err.msg) == NULL || strchr(err.msg, '\n') || err.msg[0] == '\0' ||
            a.samples != NULL)
            __builtin_trap();
        return 0;
    }
    if (a.n == 0 || a.n > opts.max_samples || !a.samples || !a.resampler) __builtin_trap();
    volatile float sum = 0;
    for (size_t i = 0; i < a.n; i++) {
        if (!isfinite(a.samples[i])) __builtin_trap();
        sum += a.samples[i];
    }
    (void)sum;
    /* The first quarter second through the feature extractor, whose counts must agree with the count functions. */
    size_t n = a.n < G4_AUDIO_RATE / 4 ? a.n : G4_AUDIO_RATE / 4;
    g4_audio_features_out f;
    if (g4_audio_features(a.samples, n, &f, &err) != 0) __builtin_trap();
    if (f.n_frames != g4_audio_frame_count(n) || f.n_tokens != g4_audio_soft_token_count(n) ||
        f.n_valid > f.n_frames)
        __builtin_trap();
    /* Absurd sample values may overflow float32 magnitudes to +inf, as in the reference; NaN never. */
    for (size_t i = 0; i < f.n_frames * G4_AUDIO_MEL_BINS; i++)
        if (isnan(f.features[i])) __builtin_trap();
    g4_audio_features_free(&f);
    g4_audio_free(&a);
    return 0;
}
