/* tokenizer.h — Hugging Face tokenizer.json BPE (Gemma's: byte fallback, ▁ normalizer, special tokens first). */
#ifndef G4_TOKENIZER_H
#define G4_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"

typedef struct g4_tokenizer g4_tokenizer;

/* Loads tokenizer.json (or tokenizer.json.gz, by content). */
int g4_tokenizer_load(const char *path, g4_tokenizer **out, g4_err *err);
int g4_tokenizer_parse(const char *json, size_t len, g4_tokenizer **out, g4_err *err);

/* A tokenizer for checkpoints that ship none (the golden tiny model, gemma4c's synthetic model): every byte is
 * its own token at Gemma's byte-fallback ids <0x00>..<0xFF> = 238..493, the control tokens at Gemma's ids
 * (<pad> 0, <eos> 1, <bos> 2, <unk> 3, <mask> 4, <|turn> 105, <turn|> 106, and the tool / channel / think
 * markers) where they fit, plus the given extra special tokens (multimodal markers at the config's ids).
 * Needs vocab_size >= 494. */
typedef struct g4_special_token {
    const char *text;
    int32_t id;
} g4_special_token;
int g4_tokenizer_byte_level(int vocab_size, const g4_special_token *extra, size_t n_extra, g4_tokenizer **out,
                            g4_err *err);

void g4_tokenizer_free(g4_tokenizer *t);

int g4_tokenizer_vocab_size(const g4_tokenizer *t); /* number of ids (max id + 1) */
/* Id of a token by its exact piece text (e.g. "<|turn>"), or -1. */
int32_t g4_tokenizer_find(const g4_tokenizer *t, const char *piece);
/* Special (control) tokens are the ones decode skips when asked to. */
int g4_tokenizer_is_special(const g4_tokenizer *t, int32_t id);

/* Encodes UTF-8 text (no BOS added). Special tokens written literally in the text are matched first, as the
 * Hugging Face tokenizers library does. Invalid UTF-8 is encoded byte by byte through byte fallback. */
int g4_tokenizer_encode(const g4_tokenizer *t, const char *text, size_t len, g4_ids *out, g4_err *err);

/* Appends the text of ids (▁ -> space, <0xNN> byte tokens -> bytes). Unknown ids are an error. */
int g4_tokenizer_decode(const g4_tokenizer *t, const int32_t *ids, size_t n, int skip_special, g4_buf *out,
                        g4_err *err);

/* The bytes one token stands for: a byte-fallback token's single byte (which may be part of a UTF-8 character),
 * otherwise its decoded text. */
int g4_tokenizer_piece(const g4_tokenizer *t, int32_t id, g4_buf *out, g4_err *err);
/* Streaming decode: feed ids one at a time, get back only complete UTF-8 characters (byte-fallback tokens that
 * form one character arrive one by one). */
/* skip_special: 0 keeps every token; 1 skips control tokens; G4_SKIP_SPECIAL_BUT_MARKERS keeps the ones that
 * structure a reply (thought channel, tool calls). */
#define G4_SKIP_SPECIAL_BUT_MARKERS 2
typedef struct g4_detok {
    const g4_tokenizer *tok;
    int skip_special;
    unsigned char pending[8];
    size_t n_pending;
} g4_detok;
void g4_detok_init(g4_detok *d, const g4_tokenizer *t, int skip_special);
/* Appends to out whatever text became complete with this id. */
int g4_detok_feed(g4_detok *d, int32_t id, g4_buf *out, g4_err *err);
/* Appends what is left (an incomplete character becomes U+FFFD). */
int g4_detok_flush(g4_detok *d, g4_buf *out);

#endif
