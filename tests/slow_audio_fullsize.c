/* slow_audio_fullsize.c — the full-size E4B audio tower + embedder (synthetic weights) against golden/synthetic/e4b. */
#include "test.h"

#include <stdint.h>
#include <time.h>

#include "golden_util.h"
#include "media/audio.h"
#include "model/audio.h"
#include "model/model.h"

/* The golden README's full-size tolerance for tower features. */
#define TOL 1e-2

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(void) {
    const char *golden = g4t_require_golden();
    char path[4200];
    snprintf(path, sizeof path, "%s/synthetic/e4b.safetensors", golden);
    g4_st_file *ref;
    g4_err err = {0};
    if (g4_st_open(path, &ref, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const char *cfg = g4_st_metadata(ref, "config");
    CHECK(cfg != NULL, "no config in %s", path);
    if (!cfg) return g4t_finish("slow_audio_fullsize");

    /* The waveform as the reference read it (16-bit PCM / 32768), then the reference's log-mel. */
    snprintf(path, sizeof path, "%s/media/speech_16k.wav", golden);
    g4_audio wave;
    if (g4_audio_decode_file(path, NULL, &wave, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    g4_audio_features_out feats;
    if (g4_audio_features(wave.samples, wave.n, &feats, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }

    double t0 = seconds();
    g4_model *m;
    char *small_text = g4t_config_with_small_text(cfg);
    CHECK(small_text != NULL, "config without text_config");
    if (!small_text || g4_model_synthetic(small_text, NULL, 0, &m, &err)) {
        fprintf(stderr, "synthetic e4b: %s\n", err.msg);
        return 1;
    }
    g4_audio_encoder *a;
    int rc = g4_audio_encoder_load(m, &a, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc) return g4t_finish("slow_audio_fullsize");
    const g4_audio_dims dims = g4_audio_encoder_dims(a);
    printf("e4b synthetic model + audio weights: %.1f s\n", seconds() - t0);
    CHECK(dims.hidden == 1024 && dims.layers == 12 && dims.proj_dims == 1536 && dims.out_width == 2560,
          "dims %d x %d, %d -> %d", dims.hidden, dims.layers, dims.proj_dims, dims.out_width);

    int64_t n_want;
    float *want = g4t_tensor_f32(ref, "audio_features", &n_want);
    const int64_t frames = (int64_t)feats.n_frames;
    const int64_t expect = g4_audio_encoder_tokens(feats.mask, frames);
    CHECK(expect == (int64_t)feats.n_tokens, "token count %lld, feature extractor says %zu", (long long)expect,
          feats.n_tokens);
    CHECK(n_want == expect * dims.out_width, "reference has %lld values, expected %lld tokens x %d", (long long)n_want,
          (long long)expect, dims.out_width);

    g4_compute c;
    g4_backend be;
    CHECK(g4_compute_init(&c, 0, dims.max_input_width) == 0 && g4_backend_cpu_init(&be, &c, &err) == 0, "compute init");
    float *out = malloc((size_t)(expect * dims.out_width) * sizeof(float));
    int64_t n = 0;
    t0 = seconds();
    rc = g4_audio_encode(a, &be, feats.features, feats.mask, frames, out, &n, NULL, &err);
    double dt = seconds() - t0;
    CHECK(rc == 0, "%s", err.msg);
    if (rc == 0 && n == expect && n_want == n * dims.out_width) {
        double e = g4t_rel_err(out, want, n_want);
        printf("e4b audio: %lld frames -> %lld tokens in %.2f s (%d threads, %s), audio_features %.2e relative\n",
               (long long)frames, (long long)n, dt, g4_pool_size(c.pool), c.ops->name, e);
        CHECK(e <= TOL, "audio_features rel err %.3e", e);
    } else {
        CHECK(0, "%lld tokens, reference %lld", (long long)n, (long long)(n_want / dims.out_width));
    }
    free(out);
    free(want);
    be.destroy(&be);
    g4_compute_free(&c);
    g4_audio_encoder_free(a);
    g4_model_free(m);
    free(small_text);
    g4_audio_features_free(&feats);
    g4_audio_free(&wave);
    g4_st_close(ref);
    return g4t_finish("slow_audio_fullsize");
}
