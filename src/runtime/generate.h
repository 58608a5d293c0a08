/* generate.h — one request's generation: sampling a position's logits, streaming text, stop conditions. */
#ifndef G4_GENERATE_H
#define G4_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"
#include "runtime/json_schema.h"
#include "runtime/sampler.h"
#include "text/tokenizer.h"

/* Receives text as it becomes final. Return non-zero to stop. */
typedef int (*g4_text_fn)(void *ctx, const char *text, size_t len);

/* Streams text while holding back anything that could still turn into a stop string. */
typedef struct g4_stop_filter {
    const char *const *stops;
    size_t n_stops;
    g4_buf held;
    int stopped; /* a stop string appeared ... */
    int which;   /* ... this one (the earliest occurrence; the lowest index among equal ones) */
} g4_stop_filter;
/* Adds text; emits what is final through on_text. Sets f->stopped when a stop string appeared. */
int g4_stop_filter_push(g4_stop_filter *f, const char *text, size_t len, g4_text_fn on_text, void *ctx);
/* Emits whatever is held (at the end of generation without a stop string). */
int g4_stop_filter_flush(g4_stop_filter *f, g4_text_fn on_text, void *ctx);
void g4_stop_filter_free(g4_stop_filter *f);

/* gemma4c_stop_reason's values. */
enum { G4_STOP_NONE = 0, G4_STOP_EOS, G4_STOP_STRING, G4_STOP_LENGTH, G4_STOP_CONTEXT, G4_STOP_CANCELLED, G4_STOP_JSON };

#define G4_MAX_TOP_LOGPROBS 20
#define G4_PLAIN_MASKS 8
#define G4_JSON_AFTER_THOUGHT 2

/* Every token's bytes, for JSON mode: built once per tokenizer (a few MB for Gemma's 262144 tokens), shared
 * read-only by the requests. kind[id]: G4_PIECE_*. */
enum { G4_PIECE_NONE, G4_PIECE_PLAIN, G4_PIECE_OTHER };
typedef struct g4_token_pieces {
    int vocab;
    uint32_t *at;         /* [vocab + 1]: id's bytes are bytes[at[id] .. at[id + 1]) */
    unsigned char *bytes;
    uint8_t *kind;        /* [vocab] */
    uint8_t *chars;       /* [vocab] a plain piece's characters (code points; 255: that many or more) */
} g4_token_pieces;
int g4_token_pieces_build(g4_token_pieces *p, const g4_tokenizer *tok, int vocab, g4_err *err);
void g4_token_pieces_free(g4_token_pieces *p);

typedef struct g4_gen_params {
    g4_sampler_params sampling;
    int max_tokens;                  /* <= 0: no limit */
    const int32_t *stop_ids;         /* end generation (not emitted) */
    size_t n_stop_ids;
    const char *const *stop_strings; /* generation ends before the first occurrence (not emitted) */
    size_t n_stop_strings;
    int skip_special;                /* control tokens do not appear in the text */
    int logprobs, top_logprobs;
    int json;                        /* 1: the answer is one JSON object; G4_JSON_AFTER_THOUGHT: after a thought
                                        channel, if the model opens one first */
    const g4_token_pieces *pieces;   /* JSON mode's: the tokenizer's, for the generation's vocabulary */
    const g4_schema *schema;         /* JSON mode: the schema the object matches; NULL: any object */
} g4_gen_params;

/* What one position produced. */
typedef struct g4_gen_token {
    int32_t id;     /* -1: no token (a stop id ended generation); text may still hold what was released */
    g4_buf piece;   /* the token's bytes */
    g4_buf text;    /* text that became final */
    float logprob;
    int n_top;
    g4_candidate top[G4_MAX_TOP_LOGPROBS];
} g4_gen_token;

typedef struct g4_gen {
    g4_gen_params p;
    const g4_tokenizer *tok;
    int vocab;
    g4_sampler sampler;
    g4_detok detok;
    g4_stop_filter filter;
    g4_ids history;   /* prompt, then answer: the penalties' window */
    size_t n_prompt;
    int64_t generated;
    int stop_reason;  /* G4_STOP_NONE while generating */
    int32_t stop_id;
    int stop_string;
    float *raw;       /* [vocab] the logits before sampling rules (log-probabilities) */
    /* JSON mode */
    g4_schema_state json;
    g4_schema_state json_trial; /* where json_mask tries a token */
    int json_phase;          /* JSON_* in generate.c */
    int32_t channel_open, channel_close;
    /* Inside a string with a pattern, which plain pieces may come, by where the pattern stands (the last few
     * places, least recently used replaced first): a string's characters keep returning to the same places. */
    struct g4_plain_mask {
        int pattern;       /* g4_schema_pattern_at's name of the place */
        uint64_t at;
        uint64_t used;     /* when last there (mask_steps); 0: never */
        int filled;        /* bits hold the place's answer */
        uint64_t *bits;    /* [vocab / 64 rounded up] a plain piece's bit: it may come */
    } plain_masks[G4_PLAIN_MASKS];
    uint64_t mask_steps;
} g4_gen;

/* `p`'s arrays must outlive the generation. */
int g4_gen_init(g4_gen *g, const g4_gen_params *p, const g4_tokenizer *tok, int vocab, const int32_t *prompt,
                size_t n_prompt, g4_err *err);
void g4_gen_free(g4_gen *g);
/* Chooses the token of the next position from its logits (which it modifies) and fills `out` (reset first).
 * Sets g->stop_reason when generation ends here: a stop id (out->id -1), a stop string, max_tokens; the text
 * held back is then released into out->text. */
int g4_gen_next(g4_gen *g, float *logits, g4_gen_token *out, g4_err *err);
/* Ends generation for `reason` (context full, cancelled), releasing held text into `text`. */
int g4_gen_stop(g4_gen *g, int reason, g4_buf *text);
void g4_gen_token_free(g4_gen_token *t);

#endif
