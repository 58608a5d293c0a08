/* synth_weights.c — splitmix64-based synthetic weights, bit-exact with golden/make_synthetic.py. */
#include "synth_weights.h"

#include <math.h>
#include <string.h>

uint32_t g4_synth_seed(const char *name) {
    uint32_t h = 0x811C9DC5u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x01000193u;
    return h;
}

float g4_synth_uniform(uint32_t seed, uint64_t index) {
    uint64_t z = ((uint64_t)seed << 32) + index + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) / 16777216.0f;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

int g4_synth_rule_for(const char *name, const int64_t *shape, int ndim, int text_hidden, g4_synth_rule *r) {
    if (ends_with(name, "inv_freq") || ends_with(name, "inv_timescales") || strstr(name, "rotary") ||
        ends_with(name, "softcap"))
        return 0;
    /* The generator evaluates a + b*u in float32 with a, b rounded from Python doubles. */
    const double r3 = sqrt(3.0);
    double a, b;
    if (ends_with(name, "layer_scalar")) a = 0.4, b = 0.6;
    else if (ends_with(name, "input_min") || ends_with(name, "output_min")) a = -1.5, b = -1.5;
    else if (ends_with(name, "input_max") || ends_with(name, "output_max")) a = 1.5, b = 1.5;
    else if (ends_with(name, "per_dim_scale") || ends_with(name, "position_embedding_table")) a = -0.3 * r3, b = 0.6 * r3;
    else if (ends_with(name, "std_bias") || ends_with(name, ".bias")) a = -0.1 * r3, b = 0.2 * r3;
    else if (ends_with(name, "std_scale")) a = 0.5, b = 1.0;
    else if (ends_with(name, "q_norm.weight") || ends_with(name, "k_norm.weight")) a = 0.25, b = 0.2;
    else if (ends_with(name, "embed_tokens.weight")) {
        double s = r3 / sqrt((double)text_hidden);
        a = -s, b = 2 * s;
    } else if (ends_with(name, "embed_tokens_per_layer.weight")) {
        double s = r3 / 16.0;
        a = -s, b = 2 * s;
    } else if (ndim >= 2) {
        double fan_in = 1;
        for (int d = 1; d < ndim; d++) fan_in *= (double)shape[d];
        double s = r3 / sqrt(fan_in);
        a = -s, b = 2 * s;
    } else
        a = 0.6, b = 0.8;
    r->seed = g4_synth_seed(name);
    r->a = (float)a;
    r->b = (float)b;
    return 1;
}

void g4_synth_fill_bf16(const g4_synth_rule *r, uint64_t start, uint64_t n, uint16_t *out) {
    for (uint64_t i = 0; i < n; i++) out[i] = g4_synth_value_bf16(r, start + i);
}

void g4_synth_fill_f32(const g4_synth_rule *r, uint64_t start, uint64_t n, float *out) {
    for (uint64_t i = 0; i < n; i++) out[i] = g4_bf16_to_f32(g4_synth_value_bf16(r, start + i));
}
