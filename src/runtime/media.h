/* media.h — media inputs: decoded and measured on any thread, encoded to soft tokens by the scheduler, placed in prompts. */
#ifndef G4_MEDIA_RUNTIME_H
#define G4_MEDIA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "media/audio.h"
#include "media/image.h"
#include "model/decoder.h"

struct g4_vision;
struct g4_audio_encoder;

typedef enum g4_media_kind { G4_MEDIA_IMAGE = G4_SOFT_IMAGE, G4_MEDIA_VIDEO = G4_SOFT_VIDEO, G4_MEDIA_AUDIO = G4_SOFT_AUDIO } g4_media_kind;

/* One input: a file (path) or bytes in memory (data, size). */
typedef struct g4_media_item {
    g4_media_kind kind;
    const char *path;
    const void *data;
    size_t size;
    int max_soft_tokens; /* images: 70, 140, 280 (0 = default), 560 or 1120 */
} g4_media_item;

/* The vision tower's patch geometry (vision_config), which the image preprocessing follows. */
typedef struct g4_media_geometry {
    int patch_size, pooling_kernel;
} g4_media_geometry;

/* One medium: its blocks in the prompt (one per image, one per video frame, one per <= 30 s segment of audio; the
 * reference stops at 30 s, longer audio becomes several blocks), the encoder's input until it is encoded, then
 * its soft tokens. */
typedef struct g4_medium {
    uint64_t key;  /* identity: equal keys, equal soft tokens */
    int kind;
    struct g4_media_block {
        int64_t n;      /* soft tokens */
        char stamp[16]; /* video frames: the "MM:SS" the prompt puts before the frame */
    } *blocks;
    size_t n_blocks;
    int64_t n_tokens; /* all blocks' */
    double seconds;   /* audio and video: the length */
    /* the encoder's input per block, released as blocks are encoded */
    g4_image_patches *frames;      /* images and video */
    g4_audio_features_out *clips;  /* audio */
    size_t encoded;  /* blocks encoded so far */
    float *rows;     /* [n_tokens][H] once encoding started */
    double prepare_seconds, encode_seconds;
    int fresh; /* prepared and not yet counted in a request's media time */
} g4_medium;

/* What identifies a medium before decoding it: a hash of its bytes (in memory) or of its path, size and modification
 * time (a file), with its kind and budget. */
uint64_t g4_media_item_key(const g4_media_item *it);

/* Decodes and preprocesses (as the reference processors do) without encoding: blocks and their soft-token counts
 * are known afterwards. */
int g4_medium_prepare(const g4_media_item *it, const g4_media_geometry *geo, g4_medium *out, g4_err *err);
/* Runs the next block through its encoder (vision for images and video frames, audio otherwise; the caller binds
 * the one needed) on backend be. */
int g4_medium_encode_block(g4_medium *md, const struct g4_vision *v, const struct g4_audio_encoder *a, g4_backend *be,
                           int64_t H, g4_err *err);
int g4_medium_done(const g4_medium *md);
void g4_medium_free(g4_medium *md);

/* A prompt's text holds one placeholder per medium (a chat's media parts, or placeholders written in a raw prompt):
 * each becomes, as the reference processor writes it, begin + n placeholders + end for each of the medium's blocks
 * (video frames: "MM:SS " before each, joined by a space). Media and placeholders correspond one to one, per kind,
 * in order. */
int g4_media_expand_text(const g4_model *m, const char *text, g4_medium *const *media, size_t n_media, g4_buf *out,
                         g4_err *err);

/* Where the media go in ids: each maximal run of one kind's placeholder ids takes that kind's next block (in media
 * order) and must match its length; every block must be placed. With no media at all, placeholders take nothing
 * (they embed as pad). rows[t] (may be NULL): the soft token of position t, or NULL; keys[t] (may be NULL): the
 * identity of what fills position t (0: its id alone). A medium not encoded yet gives NULL rows. */
int g4_media_place(const g4_model *m, const int32_t *ids, size_t n, g4_medium *const *media, size_t n_media,
                   const float **rows, uint64_t *keys, g4_err *err);

#endif
