/* media.c — decode and preprocess media, encode them block by block, expand and place their placeholder runs. */
#include "media.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "media/video.h"
#include "model/audio.h"
#include "model/vision.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *kind_name(int kind) {
    return kind == G4_MEDIA_IMAGE ? "image" : kind == G4_MEDIA_VIDEO ? "video" : "audio";
}

/* 64-bit FNV-1a over bytes, eight at a time after the first byte mix (speed matters for long media in memory). */
static uint64_t hash_bytes(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001B3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

uint64_t g4_media_item_key(const g4_media_item *it) {
    uint64_t h = 0xCBF29CE484222325ull;
    int32_t tag[2] = {(int32_t)it->kind, it->max_soft_tokens};
    h = hash_bytes(h, tag, sizeof tag);
    if (it->path) {
        struct stat st;
        h = hash_bytes(h, it->path, strlen(it->path));
        if (stat(it->path, &st) == 0) {
            int64_t facts[4] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec,
                                (int64_t)st.st_ino};
            h = hash_bytes(h, facts, sizeof facts);
        }
    } else
        h = hash_bytes(h, it->data, it->size);
    return h ? h : 1; /* 0 means "no medium" in placement keys */
}

static int add_blocks(g4_medium *md, size_t n, g4_err *err) {
    struct g4_media_block *b = realloc(md->blocks, (md->n_blocks + n) * sizeof *b);
    if (!b) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    memset(b + md->n_blocks, 0, n * sizeof *b);
    md->blocks = b;
    return 0;
}

static int prepare_frame(g4_medium *md, const g4_image *img, int budget, int video, const g4_media_geometry *geo,
                         const char *stamp, g4_err *err) {
    if (add_blocks(md, 1, err)) return GEMMA4C_ERR_NOMEM;
    g4_image_patches *frames = realloc(md->frames, (md->n_blocks + 1) * sizeof *frames);
    if (!frames) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    md->frames = frames;
    g4_image_patches *p = &frames[md->n_blocks];
    memset(p, 0, sizeof *p);
    int rc = video ? g4_video_frame_preprocess(img, budget, geo->patch_size, geo->pooling_kernel, p, err)
                   : g4_image_preprocess(img, budget, geo->patch_size, geo->pooling_kernel, p, err);
    if (rc) return rc;
    struct g4_media_block *b = &md->blocks[md->n_blocks++];
    b->n = p->num_soft_tokens;
    snprintf(b->stamp, sizeof b->stamp, "%s", stamp);
    md->n_tokens += b->n;
    return 0;
}

static int prepare_image(const g4_media_item *it, const g4_media_geometry *geo, g4_medium *md, g4_err *err) {
    g4_image img = {0};
    int rc = it->path ? g4_image_load(it->path, NULL, &img, err) : g4_image_decode(it->data, it->size, NULL, &img, err);
    if (!rc) rc = prepare_frame(md, &img, it->max_soft_tokens ? it->max_soft_tokens : G4_IMAGE_DEFAULT_SOFT_TOKENS, 0,
                                geo, "", err);
    g4_image_free(&img);
    return rc;
}

/* Every sampled frame at the video budget; one block per frame. */
static int prepare_video(const g4_media_item *it, const g4_media_geometry *geo, g4_medium *md, g4_err *err) {
    g4_video v = {0};
    int rc = it->path ? g4_video_decode_file(it->path, NULL, &v, err)
                      : g4_video_decode_memory(it->data, it->size, "video", NULL, &v, err);
    if (rc) return rc;
    md->seconds = v.duration_s;
    for (int f = 0; !rc && f < v.n_frames; f++) {
        char stamp[16];
        g4_video_timestamp_text(v.timestamps_s[f], stamp);
        rc = prepare_frame(md, &v.frames[f], G4_VIDEO_DEFAULT_SOFT_TOKENS, 1, geo, stamp, err);
    }
    g4_video_free(&v);
    return rc;
}

/* Log-mel features of each <= 30 s segment; clips too short for one token contribute nothing, as the reference's
 * processor counts them. */
static int prepare_audio(const g4_media_item *it, g4_medium *md, g4_err *err) {
    g4_audio wave = {0};
    int rc = it->path ? g4_audio_decode_file(it->path, NULL, &wave, err)
                      : g4_audio_decode_memory(it->data, it->size, "audio", NULL, &wave, err);
    if (rc) return rc;
    md->seconds = (double)wave.n / G4_AUDIO_RATE;
    size_t n_segs = g4_audio_split(wave.n, NULL, 0);
    g4_audio_segment *segs = calloc(n_segs ? n_segs : 1, sizeof *segs);
    md->clips = calloc(n_segs ? n_segs : 1, sizeof *md->clips);
    if (!segs || !md->clips || add_blocks(md, n_segs, err)) rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for audio");
    if (!rc) g4_audio_split(wave.n, segs, n_segs);
    for (size_t k = 0; !rc && k < n_segs; k++) {
        g4_audio_features_out *f = &md->clips[md->n_blocks];
        rc = g4_audio_features(wave.samples + segs[k].start, segs[k].length, f, err);
        if (rc || f->n_tokens == 0) {
            g4_audio_features_free(f);
            continue;
        }
        md->blocks[md->n_blocks++].n = (int64_t)f->n_tokens;
        md->n_tokens += (int64_t)f->n_tokens;
    }
    free(segs);
    g4_audio_free(&wave);
    return rc;
}

int g4_medium_prepare(const g4_media_item *it, const g4_media_geometry *geo, g4_medium *out, g4_err *err) {
    memset(out, 0, sizeof *out);
    if (!it->path && (!it->data || !it->size)) return g4_fail(err, GEMMA4C_ERR_ARG, "a %s input with no data", kind_name(it->kind));
    if (it->kind == G4_MEDIA_IMAGE && it->max_soft_tokens && !g4_image_budget_valid(it->max_soft_tokens))
        return g4_fail(err, GEMMA4C_ERR_ARG, "max_soft_tokens %d: images take 70, 140, 280, 560 or 1120",
                       it->max_soft_tokens);
    const double t0 = now_seconds();
    out->key = g4_media_item_key(it);
    out->kind = it->kind;
    int rc = it->kind == G4_MEDIA_IMAGE   ? prepare_image(it, geo, out, err)
             : it->kind == G4_MEDIA_VIDEO ? prepare_video(it, geo, out, err)
             : it->kind == G4_MEDIA_AUDIO ? prepare_audio(it, out, err)
                                          : g4_fail(err, GEMMA4C_ERR_ARG, "unknown media kind %d", (int)it->kind);
    if (rc) {
        if (it->path) g4_err_prefix(err, "%s", it->path);
        g4_medium_free(out);
        return rc;
    }
    out->prepare_seconds = now_seconds() - t0;
    out->fresh = 1;
    return 0;
}

int g4_medium_done(const g4_medium *md) { return md->encoded == md->n_blocks; }

int g4_medium_encode_block(g4_medium *md, const g4_vision *v, const g4_audio_encoder *a, g4_backend *be, int64_t H,
                           g4_err *err) {
    if (g4_medium_done(md)) return 0;
    const double t0 = now_seconds();
    if (!md->rows && !(md->rows = malloc((size_t)(md->n_tokens > 0 ? md->n_tokens : 1) * (size_t)H * sizeof(float))))
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for %lld soft tokens", (long long)md->n_tokens);
    int64_t offset = 0;
    for (size_t b = 0; b < md->encoded; b++) offset += md->blocks[b].n;
    const struct g4_media_block *blk = &md->blocks[md->encoded];
    float *rows = md->rows + offset * H;
    int rc;
    if (md->kind == G4_MEDIA_AUDIO) {
        g4_audio_features_out *f = &md->clips[md->encoded];
        int64_t n = 0;
        rc = g4_audio_encode(a, be, f->features, f->mask, (int64_t)f->n_frames, rows, &n, NULL, err);
        if (!rc && n != blk->n)
            rc = g4_fail(err, GEMMA4C_ERR_INTERNAL, "audio: %lld soft tokens where %lld were counted", (long long)n,
                         (long long)blk->n);
        g4_audio_features_free(f);
    } else {
        g4_image_patches *p = &md->frames[md->encoded];
        const size_t values = (size_t)p->max_patches * (size_t)p->patch_dim;
        float *pixels = malloc(values * sizeof(float));
        float *out = malloc((size_t)g4_vision_max_soft_tokens(v, p->max_patches) * (size_t)H * sizeof(float));
        int n_soft = 0;
        rc = pixels && out ? 0 : g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for an image");
        if (!rc) {
            g4_image_u8_to_f32(p->pixel_values, values, pixels);
            rc = g4_vision_encode(v, be, pixels, p->positions, p->max_patches, out, &n_soft, err);
        }
        if (!rc && n_soft != blk->n)
            rc = g4_fail(err, GEMMA4C_ERR_INTERNAL, "%s: %d soft tokens where %lld were counted", kind_name(md->kind),
                         n_soft, (long long)blk->n);
        if (!rc) memcpy(rows, out, (size_t)(blk->n * H) * sizeof(float));
        free(pixels);
        free(out);
        g4_image_patches_free(p);
    }
    if (rc) return rc;
    md->encoded++;
    md->encode_seconds += now_seconds() - t0;
    return 0;
}

void g4_medium_free(g4_medium *md) {
    for (size_t b = md->encoded; b < md->n_blocks; b++) {
        if (md->frames) g4_image_patches_free(&md->frames[b]);
        if (md->clips) g4_audio_features_free(&md->clips[b]);
    }
    free(md->frames);
    free(md->clips);
    free(md->blocks);
    free(md->rows);
    memset(md, 0, sizeof *md);
}

/* The text of a special token, as the tokenizer spells it. */
static int token_text(const g4_model *m, int32_t id, char *out, size_t len, g4_err *err) {
    g4_buf b = {0};
    int rc = id >= 0 ? g4_tokenizer_decode(m->tok, &id, 1, 0, &b, err) : 0;
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

int g4_media_expand_text(const g4_model *m, const char *text, g4_medium *const *media, size_t n_media, g4_buf *out,
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
    size_t next[G4_SOFT_KINDS] = {0}, placed = 0, with_tokens = 0;
    for (size_t i = 0; i < n_media; i++) with_tokens += media[i]->n_blocks > 0;
    for (const char *p = text; *p;) {
        int kind = -1;
        for (int k = 0; k < G4_SOFT_KINDS; k++)
            if (ph[k][0] && strncmp(p, ph[k], strlen(ph[k])) == 0) kind = k;
        if (kind < 0) {
            if (g4_buf_append(out, p++, 1)) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
            continue;
        }
        p += strlen(ph[kind]);
        /* The next medium of this kind that has blocks (a clip too short for one token has none: its placeholder
         * becomes nothing, as the reference's processor leaves it out). */
        size_t i = next[kind];
        while (i < n_media && (media[i]->kind != kind || media[i]->n_blocks == 0)) i++;
        if (i == n_media)
            return g4_fail(err, GEMMA4C_ERR_ARG, "the prompt has more %s placeholders than %s inputs", kind_name(kind),
                           kind_name(kind));
        const g4_medium *md = media[i];
        for (size_t b = 0; b < md->n_blocks; b++) {
            int fail;
            if (kind == G4_MEDIA_VIDEO) /* "MM:SS <|image>" + n x <|video|> + "<image|>", frames joined by a space */
                fail = g4_buf_printf(out, "%s%s ", b ? " " : "", md->blocks[b].stamp) ||
                       append_block(out, boi, ph[kind], md->blocks[b].n, eoi);
            else
                fail = append_block(out, kind == G4_MEDIA_AUDIO ? boa : boi, ph[kind], md->blocks[b].n,
                                    kind == G4_MEDIA_AUDIO ? eoa : eoi);
            if (fail) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        }
        next[kind] = i + 1;
        placed++;
    }
    if (placed != with_tokens)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%zu media inputs but %zu placeholders in the prompt", with_tokens, placed);
    return 0;
}

/* Each kind's blocks in media order: where block j of the kind is (medium, offset of its first soft token). */
typedef struct block_ref {
    const g4_medium *md;
    int64_t n, offset;
} block_ref;

int g4_media_place(const g4_model *m, const int32_t *ids, size_t n, g4_medium *const *media, size_t n_media,
                   const float **rows, uint64_t *keys, g4_err *err) {
    const int64_t H = m->cfg.text.hidden_size;
    size_t total = 0;
    for (size_t i = 0; i < n_media; i++) total += media[i]->n_blocks;
    block_ref *refs = malloc((total ? total : 1) * sizeof *refs);
    if (!refs) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    size_t first[G4_SOFT_KINDS + 1] = {0}, count[G4_SOFT_KINDS] = {0}, used[G4_SOFT_KINDS] = {0};
    for (size_t i = 0; i < n_media; i++) count[media[i]->kind] += media[i]->n_blocks;
    for (int k = 0; k < G4_SOFT_KINDS; k++) first[k + 1] = first[k] + count[k];
    for (size_t i = 0, fill[G4_SOFT_KINDS] = {0}; i < n_media; i++)
        for (size_t b = 0, off = 0; b < media[i]->n_blocks; off += (size_t)media[i]->blocks[b].n, b++)
            refs[first[media[i]->kind] + fill[media[i]->kind]++] = (block_ref){media[i], media[i]->blocks[b].n, (int64_t)off};
    int rc = 0;
    for (size_t i = 0; !rc && i < n;) {
        const int kind = g4_soft_kind(m, ids[i]);
        size_t run = 1;
        if (kind >= 0)
            while (i + run < n && ids[i + run] == ids[i]) run++;
        const block_ref *r = NULL;
        if (kind >= 0 && n_media) {
            if (used[kind] == count[kind])
                rc = g4_fail(err, GEMMA4C_ERR_ARG, "a run of %zu %s placeholders at position %zu has no %s input left",
                             run, kind_name(kind), i, kind_name(kind));
            else if ((int64_t)run != (r = &refs[first[kind] + used[kind]++])->n)
                rc = g4_fail(err, GEMMA4C_ERR_ARG,
                             "a run of %zu %s placeholders at position %zu, but that %s gives %lld soft tokens", run,
                             kind_name(kind), i, kind_name(kind), (long long)r->n);
        }
        for (size_t t = 0; !rc && t < run; t++) {
            if (rows) rows[i + t] = r && r->md->rows ? r->md->rows + (r->offset + (int64_t)t) * H : NULL;
            if (keys) keys[i + t] = r ? r->md->key + (uint64_t)(r->offset + (int64_t)t) + 1 : 0;
        }
        i += run;
    }
    for (int k = 0; !rc && k < G4_SOFT_KINDS; k++)
        if (used[k] < count[k])
            rc = g4_fail(err, GEMMA4C_ERR_ARG, "%zu %s blocks but %zu %s placeholder runs", count[k], kind_name(k),
                         used[k], kind_name(k));
    free(refs);
    return rc;
}
