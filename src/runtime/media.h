/* media.h — images and audio turned into soft tokens, and the prompt's placeholder runs that receive them. */
#ifndef G4_MEDIA_RUNTIME_H
#define G4_MEDIA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"
#include "model/decoder.h"

struct g4_session;

typedef enum g4_media_kind { G4_MEDIA_IMAGE = G4_SOFT_IMAGE, G4_MEDIA_VIDEO = G4_SOFT_VIDEO, G4_MEDIA_AUDIO = G4_SOFT_AUDIO } g4_media_kind;

/* One input: a file (path) or bytes in memory (data, size). */
typedef struct g4_media_item {
    g4_media_kind kind;
    const char *path;
    const void *data;
    size_t size;
    int max_soft_tokens; /* images: 70, 140, 280 (0 = default), 560 or 1120 */
} g4_media_item;

/* The soft tokens of every item, grouped by kind in item order, and the blocks they form in the prompt: one per
 * image, one per <= 30 s segment of audio (the reference stops at 30 s; longer audio becomes several blocks). */
typedef struct g4_media_tokens {
    g4_soft_tokens soft[G4_SOFT_KINDS];
    struct g4_media_block {
        int kind;
        int64_t n;     /* soft tokens in the block */
        size_t item;   /* which input it came from */
        char stamp[16]; /* video frames: the "MM:SS" the prompt puts before the frame */
    } *blocks;
    size_t n_blocks;
    double seconds; /* the audio and video items' total length */
} g4_media_tokens;

int g4_media_encode(struct g4_session *s, const g4_media_item *items, size_t n_items, g4_media_tokens *out,
                    g4_err *err);
void g4_media_tokens_free(g4_media_tokens *t);

/* A rendered chat prompt has one placeholder per item: each becomes, as the reference processor writes it,
 * begin + n placeholders + end for each of the item's blocks (video frames: "MM:SS " before each, joined by a
 * space). Done on the text, before tokenizing, exactly as the processor does. Items and placeholders must
 * correspond one to one, per kind, in order. */
int g4_media_expand_text(const g4_model *m, const char *text, const g4_media_tokens *t, size_t n_items, g4_buf *out,
                         g4_err *err);

/* Ids that already hold placeholder runs (gemma4c logits --ids): each maximal run must match the next block of its
 * kind in length. */
int g4_media_check_runs(const g4_model *m, const int32_t *ids, size_t n, const g4_media_tokens *t, g4_err *err);

#endif
