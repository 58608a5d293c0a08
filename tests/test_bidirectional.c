/* test_bidirectional.c — use_bidirectional_attention "vision": image spans see themselves on sliding layers (1e-4). */
#include "test.h"

#include "decoder_util.h"

#include "golden_util.h"
#include "gemma4c.h"
#include "model/decoder.h"

/* A copy of the golden tiny checkpoint in dir whose config asks for `mode`. */
static int checkpoint_with_mode(const char *src, const char *dir, const char *mode) {
    char path[4400];
    snprintf(path, sizeof path, "%s/config.json", src);
    char *text = g4t_read_text(path);
    const char *key = "\"use_bidirectional_attention\": null";
    char *at = text ? strstr(text, key) : NULL;
    g4_buf edited = {0};
    int rc = at ? 0 : -1;
    if (at) {
        rc |= g4_buf_append(&edited, text, (size_t)(at - text));
        rc |= g4_buf_printf(&edited, "\"use_bidirectional_attention\": \"%s\"%s", mode, at + strlen(key));
    }
    if (rc == 0) rc = g4t_link_checkpoint(src, dir, edited.data);
    g4_buf_free(&edited);
    free(text);
    return rc;
}

static double logsumexp(const float *v, int64_t n) {
    double mx = v[0], s = 0;
    for (int64_t i = 1; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    for (int64_t i = 0; i < n; i++) s += exp(v[i] - mx);
    return mx + log(s);
}

/* Every position's logits through the public API, on a model loaded with `batch` rows per step. */
static float *run(const char *model, int batch, const int32_t *ids, int64_t T, const gemma4c_media *media, size_t n_media,
                  int64_t V) {
    char err[512];
    gemma4c_model_params mp = {.model = model, .n_threads = 2, .n_batch = batch, .device = g4t_device};
    gemma4c_model *m = NULL;
    gemma4c_session *s = NULL;
    float *out = malloc((size_t)(T * V) * sizeof(float));
    int rc = gemma4c_model_load(&mp, &m, err, sizeof err);
    g4t_skip_without_device(rc, err);
    if (!rc) rc = gemma4c_session_new(m, NULL, &s, err, sizeof err);
    if (!rc) rc = gemma4c_logits(s, ids, (size_t)T, media, n_media, out, err, sizeof err);
    CHECK(rc == 0, "batch %d: %s", batch, err);
    gemma4c_session_free(s);
    gemma4c_model_free(m);
    return out;
}

int main(int argc, char **argv) {
    g4t_parse_device(&argc, argv);
    const char *golden = g4t_require_golden();
    char src[4200], image1[4200], image2[4200], audio[4200], path[4200];
    snprintf(src, sizeof src, "%s/tiny/checkpoint", golden);
    snprintf(image1, sizeof image1, "%s/media/chelsea.png", golden);
    snprintf(image2, sizeof image2, "%s/media/small.png", golden);
    snprintf(audio, sizeof audio, "%s/media/speech_16k.wav", golden);
    snprintf(path, sizeof path, "%s/tests/data/bidirectional_vision.safetensors", GEMMA4C_SOURCE_DIR);
    char dir[] = "/tmp/g4bidiXXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(checkpoint_with_mode(src, dir, "vision") == 0, "could not write a checkpoint with a \"vision\" config");

    g4_err err = {0};
    g4_st_file *ref;
    if (g4_st_open(path, &ref, &err)) {
        CHECK(0, "%s", err.msg);
        return g4t_finish("test_bidirectional");
    }
    int64_t T, n_rows, n_row_logits, n;
    int32_t *ids = g4t_tensor_i32(ref, "input_ids", &T);
    int32_t *rows = g4t_tensor_i32(ref, "rows", &n_rows);
    int32_t *want_argmax = g4t_tensor_i32(ref, "argmax", &n);
    float *want_rows = g4t_tensor_f32(ref, "logits_rows", &n_row_logits);
    float *want_lse = g4t_tensor_f32(ref, "logsumexp", &n);
    float *causal_lse = g4t_tensor_f32(ref, "causal_logsumexp", &n);

    /* Batches of 128 tokens: each 260-token image span must still run whole. */
    g4_model *m = NULL;
    if (g4_model_load_dir(dir, &m, &err)) {
        CHECK(0, "%s", err.msg);
        return g4t_finish("test_bidirectional");
    }
    CHECK(m->cfg.text.use_bidirectional_attention == G4_BIDI_VISION, "config not read as \"vision\"");
    const int64_t V = m->cfg.text.vocab_size, H = m->cfg.text.hidden_size;
    const gemma4c_media media[] = {{GEMMA4C_MEDIA_IMAGE, image1, NULL, 0, 0},
                                   {GEMMA4C_MEDIA_IMAGE, image2, NULL, 0, 0},
                                   {GEMMA4C_MEDIA_AUDIO, audio, NULL, 0, 0}};
    float *got = run(dir, 128, ids, T, media, 3, V);
    /* The reference keeps full logits at `rows` and every position's logsumexp and argmax. */
    float *got_rows = malloc((size_t)(n_rows * V) * sizeof(float));
    for (int64_t r = 0; r < n_rows; r++) memcpy(got_rows + r * V, got + (int64_t)rows[r] * V, (size_t)V * sizeof(float));
    double e_rows = g4t_rel_err(got_rows, want_rows, n_rows * V);
    float lo = want_rows[0], hi = want_rows[0];
    for (int64_t i = 0; i < n_rows * V; i++) {
        lo = want_rows[i] < lo ? want_rows[i] : lo;
        hi = want_rows[i] > hi ? want_rows[i] : hi;
    }
    double e_lse = 0, off_causal = 0;
    int same = 0;
    for (int64_t t = 0; t < T; t++) {
        double l = logsumexp(got + t * V, V);
        e_lse = fmax(e_lse, fabs(l - want_lse[t]) / (hi - lo));
        off_causal = fmax(off_causal, fabs(l - causal_lse[t]));
        same += g4t_argmax(got + t * V, V) == want_argmax[t];
    }
    printf("\"vision\" prompt (%lld tokens, spans of 260 + 260 image tokens, 170 audio): logits rel err %.2e over %lld "
           "rows, logsumexp %.2e, argmax %d/%lld; the causal logsumexp is %.2f away\n",
           (long long)T, e_rows, (long long)n_rows, e_lse, same, (long long)T, off_causal);
    CHECK(e_rows <= 1e-4 && e_lse <= 1e-4, "bidirectional logits rel err %.3e, logsumexp %.3e", e_rows, e_lse);
    CHECK(same == T, "argmax differs at %lld positions", (long long)(T - same));
    CHECK(off_causal > 0.01, "the spans changed nothing: the test cannot tell bidirectional from causal");

    /* Any batch size gives the same numbers: spans are never cut, a batch too small for one grows. */
    const int chunks[] = {1, 7, 300, 1024};
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
        float *other = run(dir, chunks[i], ids, T, media, 3, V);
        double e = g4t_rel_err(other, got, T * V);
        printf("  batch %4d: rel err %.2e against batch 128\n", chunks[i], e);
        CHECK(e <= 1e-5, "batch %d differs by %.3e", chunks[i], e);
        free(other);
    }

    /* Video placeholders form spans exactly like image ones: the second image as a "video" changes nothing. The
     * soft tokens come from the encoders through the API, the forward pass from the decoder itself. */
    gemma4c_model_params mp = {.model = dir, .n_threads = 2, .device = g4t_device};
    gemma4c_model *api = NULL;
    gemma4c_session *as = NULL;
    gemma4c_features *f[3] = {0};
    char msg[512];
    CHECK(gemma4c_model_load(&mp, &api, msg, sizeof msg) == 0 && gemma4c_session_new(api, NULL, &as, msg, sizeof msg) == 0,
          "%s", msg);
    for (int i = 0; i < 3; i++) CHECK(gemma4c_encode(as, &media[i], &f[i], msg, sizeof msg) == 0, "%s", msg);
    int32_t *as_video = malloc((size_t)T * sizeof *as_video);
    int64_t seen = 0;
    for (int64_t t = 0; t < T; t++) {
        int img = ids[t] == m->cfg.image_token_id;
        as_video[t] = img && seen++ >= 260 ? m->cfg.video_token_id : ids[t];
    }
    g4_soft_tokens soft[G4_SOFT_KINDS] = {{0}};
    soft[G4_SOFT_IMAGE] = (g4_soft_tokens){f[0] ? f[0]->tokens : NULL, f[0] ? f[0]->n_tokens : 0};
    soft[G4_SOFT_VIDEO] = (g4_soft_tokens){f[1] ? f[1]->tokens : NULL, f[1] ? f[1]->n_tokens : 0};
    soft[G4_SOFT_AUDIO] = (g4_soft_tokens){f[2] ? f[2]->tokens : NULL, f[2] ? f[2]->n_tokens : 0};
    CHECK(f[0] && f[0]->n_tokens == 260 && f[0]->width == H, "first image: 260 soft tokens");
    g4t_decoder td;
    CHECK(g4t_decoder_open(&td, m, 2, 128, 1024, &err) == 0, "%s", err.msg);
    g4_decoder *d = &td.d;
    g4_kv_seq *seq = &td.seq;
    float *video = malloc((size_t)(T * V) * sizeof(float));
    g4_forward_opts fv = {.all_logits = video, .soft = soft};
    CHECK(g4_decoder_forward(d, seq, as_video, T, &fv, &err) == 0 && g4t_decoder_sync(&td, &err) == 0, "%s", err.msg);
    double ev = g4t_rel_err(video, got, T * V);
    printf("  second image as video: rel err %.2e\n", ev);
    CHECK(ev <= 1e-5, "a video span differs from an image span by %.3e", ev);
    g4t_decoder_close(&td);
    for (int i = 0; i < 3; i++) gemma4c_features_free(f[i]);
    gemma4c_session_free(as);
    gemma4c_model_free(api);
    free(video);
    free(as_video);

    /* Cut points move back to a span's start; audio and text never hold them. */
    const int32_t img = m->cfg.image_token_id, aud = m->cfg.audio_token_id;
    int32_t cut[] = {2, img, img, img, 7, aud, aud, img};
    CHECK(g4_decoder_split_point(m, cut, 8, 3) == 1 && g4_decoder_split_point(m, cut, 8, 2) == 1,
          "a cut inside a span was not moved to its start");
    CHECK(g4_decoder_split_point(m, cut, 8, 4) == 4 && g4_decoder_split_point(m, cut, 8, 6) == 6 &&
              g4_decoder_split_point(m, cut, 8, 1) == 1 && g4_decoder_split_point(m, cut, 8, 8) == 8,
          "a cut outside a span was moved");
    g4_model_free(m);

    /* The same prompt on the causal checkpoint is what the reference computes without the spans. */
    if (g4_model_load_dir(src, &m, &err) == 0) {
        CHECK(g4_decoder_split_point(m, cut, 8, 3) == 3, "a causal model moved a cut");
        g4_model_free(m);
    }
    float *causal = run(src, 128, ids, T, media, 3, V);
    double e_causal = 0;
    for (int64_t t = 0; t < T; t++) e_causal = fmax(e_causal, fabs(logsumexp(causal + t * V, V) - causal_lse[t]) / (hi - lo));
    printf("  causal checkpoint: logsumexp rel err %.2e against the reference without spans\n", e_causal);
    CHECK(e_causal <= 1e-4, "causal logsumexp rel err %.3e", e_causal);
    free(causal);

    /* "all" (every layer bidirectional) cannot generate: refused with a reason. */
    CHECK(checkpoint_with_mode(src, dir, "all") == 0, "could not write an \"all\" config");
    gemma4c_model_params all = {.model = dir, .n_threads = 1};
    CHECK(gemma4c_model_load(&all, &api, msg, sizeof msg) == GEMMA4C_ERR_UNSUPPORTED && api == NULL,
          "an \"all\" model was opened");
    printf("  \"all\" -> %s\n", msg);

    free(got);
    free(got_rows);
    free(ids);
    free(rows);
    free(want_argmax);
    free(want_rows);
    free(want_lse);
    free(causal_lse);
    g4_st_close(ref);
    g4t_rm_tree(dir);
    struct stat gone;
    CHECK(stat(dir, &gone) != 0, "could not remove %s", dir);
    return g4t_finish("test_bidirectional");
}
