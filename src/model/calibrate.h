/* calibrate.h — how a calibration text drives each text matrix: the Gram matrices error-compensated rounding needs. */
#ifndef G4_CALIBRATE_H
#define G4_CALIBRATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* At most this many tokens of the calibration text run, in sequences of G4_CALIB_SEQ after <bos> each (the built-in
 * text is 5 KB: all of it, whatever the tokenizer). */
#define G4_CALIB_TOKENS 8192
#define G4_CALIB_SEQ 512

typedef struct g4_calib g4_calib;

/* Runs the text decoder of the checkpoint in `dir` (float, as stored) over a calibration text through the
 * checkpoint's tokenizer (`text`, or the built-in one when NULL), or over `ids` when given (n_ids of them: for a
 * checkpoint whose tokenizer gemma4c cannot know, such as golden/trained's bytes at 3 + byte), and keeps, for every
 * matrix it multiplies, the diagonal blocks of its inputs' Gram matrix factored by g4_gptq_factor. */
int g4_calibrate(const char *dir, const char *text, size_t text_len, const int32_t *ids, size_t n_ids, int n_threads,
                 g4_calib **out, g4_err *err);
/* The built-in calibration text (prose, Python, C, SQL, JSON, a little German, French and Spanish; written for
 * gemma4c, src/model/calibration.txt). */
extern const char g4_calibration_text[];
extern const size_t g4_calibration_text_len;
/* The factor for the matrix `name` with rows of K, or NULL when the calibration run did not use it. */
const float *g4_calib_factor(const g4_calib *c, const char *name, int64_t K);
void g4_calib_free(g4_calib *c);

#endif
