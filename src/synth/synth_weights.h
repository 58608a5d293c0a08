/* synth_weights.h — the golden README's synthetic weight formula: every value a function of tensor name and index. */
#ifndef G4_SYNTH_WEIGHTS_H
#define G4_SYNTH_WEIGHTS_H

#include <stdint.h>

/* value(i) = bf16(a + b * u(seed, i)), seed = FNV-1a of the Hugging Face tensor name. */
typedef struct g4_synth_rule {
    uint32_t seed;
    float a, b;
} g4_synth_rule;

uint32_t g4_synth_seed(const char *name);
float g4_synth_uniform(uint32_t seed, uint64_t index); /* in [0, 1), exact in float32 */

/* The rule for a tensor by name and shape (text_hidden: the text model's hidden size). Returns 0 when the
 * tensor keeps computed values (rotary inv_freq and the like), 1 when r was filled. */
int g4_synth_rule_for(const char *name, const int64_t *shape, int ndim, int text_hidden, g4_synth_rule *r);

static inline uint16_t g4_synth_value_bf16(const g4_synth_rule *r, uint64_t index);
void g4_synth_fill_bf16(const g4_synth_rule *r, uint64_t start, uint64_t n, uint16_t *out);
void g4_synth_fill_f32(const g4_synth_rule *r, uint64_t start, uint64_t n, float *out); /* bf16-rounded values */

/* ---- inline definitions ---- */
#include "core/tensor.h"
static inline uint16_t g4_synth_value_bf16(const g4_synth_rule *r, uint64_t index) {
    float u = g4_synth_uniform(r->seed, index);
    return g4_f32_to_bf16(r->a + r->b * u);
}

#endif
