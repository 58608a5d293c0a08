/* test_bidirectional.c — use_bidirectional_attention "vision": image spans see themselves on sliding layers (1e-4). */
#include "test.h"

#include "golden_util.h"
#include "runtime/media.h"
#include "runtime/session.h"

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

/* Every position's logits through a fresh decoder of `chunk` tokens per batch. */
static float *run(g4_session *s, int64_t chunk, const int32_t *ids, int64_t T, const g4_forward_opts *fo) {
    g4_err err = {0};
    g4_decoder d;
    float *out = malloc((size_t)(T * s->m->cfg.text.vocab_size) * sizeof(float));
    CHECK(g4_decoder_init(&d, s->m, &s->c, 1024, chunk, &err) == 0, "%s", err.msg);
    CHECK(g4_decoder_forward_all_logits_with(&d, ids, T, fo, out, &err) == 0, "chunk %lld: %s", (long long)chunk, err.msg);
    g4_decoder_free(&d);
    return out;
}

int main(void) {
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
    g4_session *s;
    g4_session_params sp = {2, 1024, 128, NULL};
    if (g4_session_open(dir, &sp, &s, &err)) {
        CHECK(0, "%s", err.msg);
        return g4t_finish("test_bidirectional");
    }
    CHECK(s->m->cfg.text.use_bidirectional_attention == G4_BIDI_VISION, "config not read as \"vision\"");
    const int64_t V = s->m->cfg.text.vocab_size, H = s->m->cfg.text.hidden_size;
    g4_media_item items[] = {{G4_MEDIA_IMAGE, image1, NULL, 0, 0},
                             {G4_MEDIA_IMAGE, image2, NULL, 0, 0},
                             {G4_MEDIA_AUDIO, audio, NULL, 0, 0}};
    g4_media_tokens media;
    CHECK(g4_media_encode(s, items, 3, &media, &err) == 0, "%s", err.msg);
    CHECK(g4_media_check_runs(s->m, ids, (size_t)T, &media, &err) == 0, "%s", err.msg);
    g4_forward_opts fo = {0};
    memcpy(fo.soft, media.soft, sizeof fo.soft);
    float *got = malloc((size_t)(T * V) * sizeof(float));
    CHECK(g4_decoder_forward_all_logits_with(&s->d, ids, T, &fo, got, &err) == 0, "%s", err.msg);

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
    const int64_t chunks[] = {1, 7, 300, 1024};
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
        float *other = run(s, chunks[i], ids, T, &fo);
        double e = g4t_rel_err(other, got, T * V);
        printf("  batch %4lld: rel err %.2e against batch 128\n", (long long)chunks[i], e);
        CHECK(e <= 1e-5, "batch %lld differs by %.3e", (long long)chunks[i], e);
        free(other);
    }

    /* Video placeholders form spans exactly like image ones: the second image as a "video" changes nothing. */
    int32_t *as_video = malloc((size_t)T * sizeof *as_video);
    int64_t seen = 0;
    for (int64_t t = 0; t < T; t++) {
        int img = ids[t] == s->m->cfg.image_token_id;
        as_video[t] = img && seen++ >= 260 ? s->m->cfg.video_token_id : ids[t];
    }
    g4_forward_opts fv = fo;
    fv.soft[G4_SOFT_IMAGE].n = 260;
    fv.soft[G4_SOFT_VIDEO].rows = media.soft[G4_SOFT_IMAGE].rows + 260 * H;
    fv.soft[G4_SOFT_VIDEO].n = media.soft[G4_SOFT_IMAGE].n - 260;
    float *video = run(s, 128, as_video, T, &fv);
    double ev = g4t_rel_err(video, got, T * V);
    printf("  second image as video: rel err %.2e\n", ev);
    CHECK(ev <= 1e-6, "a video span differs from an image span by %.3e", ev);
    free(video);
    free(as_video);

    /* Cut points move back to a span's start; audio and text never hold them. */
    const int32_t img = s->m->cfg.image_token_id, aud = s->m->cfg.audio_token_id;
    int32_t seq[] = {2, img, img, img, 7, aud, aud, img};
    CHECK(g4_decoder_split_point(&s->d, seq, 8, 3) == 1 && g4_decoder_split_point(&s->d, seq, 8, 2) == 1,
          "a cut inside a span was not moved to its start");
    CHECK(g4_decoder_split_point(&s->d, seq, 8, 4) == 4 && g4_decoder_split_point(&s->d, seq, 8, 6) == 6 &&
              g4_decoder_split_point(&s->d, seq, 8, 1) == 1 && g4_decoder_split_point(&s->d, seq, 8, 8) == 8,
          "a cut outside a span was moved");
    g4_session_close(s);

    /* The same prompt on the causal checkpoint is what the reference computes without the spans. */
    sp.n_batch = 128;
    if (g4_session_open(src, &sp, &s, &err) == 0) {
        CHECK(g4_decoder_split_point(&s->d, seq, 8, 3) == 3, "a causal model moved a cut");
        CHECK(g4_decoder_forward_all_logits_with(&s->d, ids, T, &fo, got, &err) == 0, "%s", err.msg);
        double e_causal = 0;
        for (int64_t t = 0; t < T; t++) e_causal = fmax(e_causal, fabs(logsumexp(got + t * V, V) - causal_lse[t]) / (hi - lo));
        printf("  causal checkpoint: logsumexp rel err %.2e against the reference without spans\n", e_causal);
        CHECK(e_causal <= 1e-4, "causal logsumexp rel err %.3e", e_causal);
        g4_session_close(s);
    } else {
        CHECK(0, "%s", err.msg);
    }

    /* "all" (every layer bidirectional) cannot generate: refused with a reason. */
    CHECK(checkpoint_with_mode(src, dir, "all") == 0, "could not write an \"all\" config");
    CHECK(g4_session_open(dir, &sp, &s, &err) == GEMMA4C_ERR_UNSUPPORTED, "an \"all\" model was opened");
    printf("  \"all\" -> %s\n", err.msg);

    g4_media_tokens_free(&media);
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
