/* media.c — decode, preprocess and encode media into soft tokens; expand and check placeholder runs. */
#include "media.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "media/audio.h"
#include "media/image.h"
#include "media/video.h"
#include "model/audio.h"
#include "model/vision.h"
#include "runtime/session.h"

static int add_block_stamped(g4_media_tokens *t, int kind, size_t item, const float *rows, int64_t n, int64_t H,
                             const char *stamp, g4_err *err) {
    g4_soft_tokens *s = &t->soft[kind];
    float *grown = realloc((void *)s->rows, (size_t)(s->n + n) * (size_t)H * sizeof(float));
    struct g4_media_block *b = realloc(t->blocks, (t->n_blocks + 1) * sizeof *b);
    if (grown) s->rows = grown;
    if (b) t->blocks = b;
    if (!grown || !b) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for soft tokens");
    memcpy(grown + s->n * H, rows, (size_t)(n * H) * sizeof(float));
    s->n += n;
    b = &t->blocks[t->n_blocks++];
    *b = (struct g4_media_block){kind, n, item, ""};
    snprintf(b->stamp, sizeof b->stamp, "%s", stamp);
    return 0;
}

static const char *kind_name(int kind) {
    return kind == G4_MEDIA_IMAGE ? "image" : kind == G4_MEDIA_VIDEO ? "video" : "audio";
}

/* Appends rows [n][H] to the kind's stream and records the block. */
static int add_block(g4_media_tokens *t, int kind, size_t item, const float *rows, int64_t n, int64_t H, g4_err *err) {
    return add_block_stamped(t, kind, item, rows, n, H, "", err);
}

static int encode_frame(g4_session *s, const g4_image *img, int budget, int video, float **rows, int *n_soft,
                        g4_err *err) {
    g4_image_patches p = {0};
    int rc = video ? g4_video_frame_preprocess(img, budget, G4_IMAGE_PATCH_SIZE, G4_IMAGE_POOLING_KERNEL, &p, err)
                   : g4_image_preprocess(img, budget, G4_IMAGE_PATCH_SIZE, G4_IMAGE_POOLING_KERNEL, &p, err);
    if (rc) return rc;
    const int64_t H = s->m->cfg.text.hidden_size;
    const size_t values = (size_t)p.max_patches * (size_t)p.patch_dim;
    float *pixels = malloc(values * sizeof(float));
    *rows = malloc((size_t)g4_vision_max_soft_tokens(s->vision, p.max_patches) * (size_t)H * sizeof(float));
    if (!pixels || !*rows) rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for an image");
    if (!rc) {
        g4_image_u8_to_f32(p.pixel_values, values, pixels);
        rc = g4_vision_encode(s->vision, &s->c, pixels, p.positions, p.max_patches, *rows, n_soft, err);
    }
    free(pixels);
    g4_image_patches_free(&p);
    return rc;
}

/* Every sampled frame through the image encoder at the video budget; one block per frame. */
static int encode_video(g4_session *s, const g4_media_item *it, size_t index, g4_media_tokens *t, g4_err *err) {
    int rc;
    if (!s->vision && (rc = g4_session_enable_vision(s, err))) return rc;
    g4_video v = {0};
    rc = it->path ? g4_video_decode_file(it->path, NULL, &v, err) : g4_video_decode_memory(it->data, it->size, "video", NULL, &v, err);
    if (rc) return rc;
    t->seconds += v.duration_s;
    const int64_t H = s->m->cfg.text.hidden_size;
    for (int f = 0; !rc && f < v.n_frames; f++) {
        float *rows = NULL;
        int n_soft = 0;
        char stamp[16];
        g4_video_timestamp_text(v.timestamps_s[f], stamp);
        rc = encode_frame(s, &v.frames[f], G4_VIDEO_DEFAULT_SOFT_TOKENS, 1, &rows, &n_soft, err);
        if (!rc) rc = add_block_stamped(t, G4_MEDIA_VIDEO, index, rows, n_soft, H, stamp, err);
        free(rows);
    }
    g4_video_free(&v);
    return rc;
}

static int encode_image(g4_session *s, const g4_media_item *it, size_t index, g4_media_tokens *t, g4_err *err) {
    int rc;
    if (!s->vision && (rc = g4_session_enable_vision(s, err))) return rc;
    g4_image img = {0};
    rc = it->path ? g4_image_load(it->path, NULL, &img, err) : g4_image_decode(it->data, it->size, NULL, &img, err);
    if (rc) return rc;
    float *rows = NULL;
    int n_soft = 0;
    rc = encode_frame(s, &img, it->max_soft_tokens ? it->max_soft_tokens : G4_IMAGE_DEFAULT_SOFT_TOKENS, 0, &rows,
                      &n_soft, err);
    if (!rc) rc = add_block(t, G4_MEDIA_IMAGE, index, rows, n_soft, s->m->cfg.text.hidden_size, err);
    free(rows);
    g4_image_free(&img);
    return rc;
}

static int encode_audio(g4_session *s, const g4_media_item *it, size_t index, g4_media_tokens *t, g4_err *err) {
    int rc;
    if (!s->audio && (rc = g4_session_enable_audio(s, err))) return rc;
    g4_audio wave = {0};
    rc = it->path ? g4_audio_decode_file(it->path, NULL, &wave, err)
                  : g4_audio_decode_memory(it->data, it->size, "audio", NULL, &wave, err);
    if (rc) return rc;
    t->seconds += (double)wave.n / G4_AUDIO_RATE;
    const int64_t H = s->m->cfg.text.hidden_size;
    size_t n_segs = g4_audio_split(wave.n, NULL, 0);
    g4_audio_segment *segs = calloc(n_segs ? n_segs : 1, sizeof *segs);
    float *rows = malloc((size_t)G4_AUDIO_MAX_TOKENS * (size_t)H * sizeof(float));
    if (!segs || !rows) rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for audio");
    if (!rc) g4_audio_split(wave.n, segs, n_segs);
    for (size_t k = 0; !rc && k < n_segs; k++) {
        g4_audio_features_out f = {0};
        rc = g4_audio_features(wave.samples + segs[k].start, segs[k].length, &f, err);
        int64_t n_tokens = 0;
        /* Clips too short for one token contribute nothing, as the reference's processor counts them. */
        if (!rc && f.n_tokens > 0)
            rc = g4_audio_encode(s->audio, &s->c, f.features, f.mask, (int64_t)f.n_frames, rows, &n_tokens, NULL, err);
        if (!rc && n_tokens > 0) rc = add_block(t, G4_MEDIA_AUDIO, index, rows, n_tokens, H, err);
        g4_audio_features_free(&f);
    }
    free(segs);
    free(rows);
    g4_audio_free(&wave);
    return rc;
}

int g4_media_encode(g4_session *s, const g4_media_item *items, size_t n_items, g4_media_tokens *out, g4_err *err) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n_items; i++) {
        const g4_media_item *it = &items[i];
        if (!it->path && (!it->data || !it->size)) return g4_fail(err, GEMMA4C_ERR_ARG, "media item %zu is empty", i);
        int rc;
        if (it->kind == G4_MEDIA_IMAGE) rc = encode_image(s, it, i, out, err);
        else if (it->kind == G4_MEDIA_AUDIO) rc = encode_audio(s, it, i, out, err);
        else rc = encode_video(s, it, i, out, err);
        if (rc) {
            if (it->path) g4_err_prefix(err, "%s", it->path);
            g4_media_tokens_free(out);
            return rc;
        }
    }
    return 0;
}

void g4_media_tokens_free(g4_media_tokens *t) {
    for (int k = 0; k < G4_SOFT_KINDS; k++) free((void *)t->soft[k].rows);
    free(t->blocks);
    memset(t, 0, sizeof *t);
}

static int placeholder_kind(const g4_model *m, int32_t id) {
    if (id == m->cfg.image_token_id) return G4_MEDIA_IMAGE;
    if (id == m->cfg.video_token_id) return G4_MEDIA_VIDEO;
    if (id == m->cfg.audio_token_id) return G4_MEDIA_AUDIO;
    return -1;
}

/* The text of a special token, as the tokenizer spells it. */
static int token_text(const g4_model *m, int32_t id, char *out, size_t len, g4_err *err) {
    g4_buf b = {0};
    int rc = g4_tokenizer_decode(m->tok, &id, 1, 0, &b, err);
    if (!rc) snprintf(out, len, "%s", b.data ? b.data : "");
    g4_buf_free(&b);
    return rc;
}

static int append_block(g4_buf *out, const char *begin, const char *token, int64_t n, const char *end) {
    if (g4_buf_puts(out, begin)) return -1;
    for (int64_t i = 0; i < n; i++)
        if (g4_buf_puts(out, token)) return -1;
    return g4_buf_puts(out, end);
}

int g4_media_expand_text(const g4_model *m, const char *text, const g4_media_tokens *t, size_t n_items, g4_buf *out,
                         g4_err *err) {
    const g4_model_config *c = &m->cfg;
    char ph[G4_SOFT_KINDS][64], boi[64], eoi[64], boa[64], eoa[64];
    int rc;
    if ((rc = token_text(m, c->image_token_id, ph[G4_MEDIA_IMAGE], 64, err)) ||
        (rc = token_text(m, c->video_token_id, ph[G4_MEDIA_VIDEO], 64, err)) ||
        (rc = token_text(m, c->audio_token_id, ph[G4_MEDIA_AUDIO], 64, err)) ||
        (rc = token_text(m, c->boi_token_id, boi, 64, err)) || (rc = token_text(m, c->eoi_token_id, eoi, 64, err)) ||
        (rc = token_text(m, c->boa_token_id, boa, 64, err)) || (rc = token_text(m, c->eoa_token_id, eoa, 64, err)))
        return rc;
    size_t next_item[G4_SOFT_KINDS] = {0}, placed = 0;
    const char *p = text;
    while (*p) {
        int kind = -1;
        for (int k = 0; k < G4_SOFT_KINDS; k++)
            if (ph[k][0] && strncmp(p, ph[k], strlen(ph[k])) == 0) kind = k;
        if (kind < 0) {
            if (g4_buf_append(out, p, 1)) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
            p++;
            continue;
        }
        p += strlen(ph[kind]);
        size_t item = SIZE_MAX;
        for (size_t b = 0; b < t->n_blocks; b++)
            if (t->blocks[b].kind == kind && t->blocks[b].item >= next_item[kind]) {
                item = t->blocks[b].item;
                break;
            }
        if (item == SIZE_MAX)
            return g4_fail(err, GEMMA4C_ERR_ARG, "the prompt has more %s placeholders than %s inputs", kind_name(kind),
                           kind_name(kind));
        int first = 1;
        for (size_t b = 0; b < t->n_blocks; b++) {
            const struct g4_media_block *blk = &t->blocks[b];
            if (blk->item != item) continue;
            int fail;
            if (kind == G4_MEDIA_VIDEO) /* "MM:SS <|image>" + n x <|video|> + "<image|>", frames joined by a space */
                fail = g4_buf_printf(out, "%s%s ", first ? "" : " ", blk->stamp) ||
                       append_block(out, boi, ph[kind], blk->n, eoi);
            else
                fail = append_block(out, kind == G4_MEDIA_AUDIO ? boa : boi, ph[kind], blk->n,
                                    kind == G4_MEDIA_AUDIO ? eoa : eoi);
            if (fail) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
            first = 0;
        }
        next_item[kind] = item + 1;
        placed++;
    }
    size_t items_with_tokens = 0;
    for (size_t i = 0; i < n_items; i++)
        for (size_t b = 0; b < t->n_blocks; b++)
            if (t->blocks[b].item == i) {
                items_with_tokens++;
                break;
            }
    if (placed != items_with_tokens)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%zu media inputs but %zu placeholders in the prompt", items_with_tokens, placed);
    return 0;
}

int g4_media_check_runs(const g4_model *m, const int32_t *ids, size_t n, const g4_media_tokens *t, g4_err *err) {
    size_t next_block[G4_SOFT_KINDS] = {0};
    for (size_t i = 0; i < n;) {
        int kind = placeholder_kind(m, ids[i]);
        if (kind < 0) {
            i++;
            continue;
        }
        size_t run = 0;
        while (i + run < n && ids[i + run] == ids[i]) run++;
        size_t b = next_block[kind];
        while (b < t->n_blocks && t->blocks[b].kind != kind) b++;
        if (b == t->n_blocks)
            return g4_fail(err, GEMMA4C_ERR_ARG, "a run of %zu %s placeholders at position %zu has no %s input left",
                           run, kind_name(kind), i, kind_name(kind));
        if ((int64_t)run != t->blocks[b].n)
            return g4_fail(err, GEMMA4C_ERR_ARG, "a run of %zu %s placeholders at position %zu, but that %s gives %lld soft tokens",
                           run, kind_name(kind), i, kind_name(kind), (long long)t->blocks[b].n);
        next_block[kind] = b + 1;
        i += run;
    }
    for (int k = 0; k < G4_SOFT_KINDS; k++) {
        size_t b = next_block[k];
        while (b < t->n_blocks && t->blocks[b].kind != k) b++;
        if (b < t->n_blocks)
            return g4_fail(err, GEMMA4C_ERR_ARG, "more %s inputs than %s placeholder runs in the ids", kind_name(k), kind_name(k));
    }
    return 0;
}
