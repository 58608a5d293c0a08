/* fuzz_config.c — libFuzzer harness: arbitrary bytes through the config.json and generation_config.json parsers. */
#include <stddef.h>
#include <stdint.h>

#include "format/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g4_model_config c;
    g4_err err = {0};
    if (g4_config_parse((const char *)data, size, &c, &err) == 0) {
        const g4_text_config *t = &c.text;
        /* What the parser promises the decoder. */
        if (t->num_layers < 1 || t->num_layers > G4_MAX_LAYERS) __builtin_trap();
        if (t->layer_type[t->num_layers - 1] != G4_LAYER_FULL) __builtin_trap();
        for (int l = 0; l < t->num_layers; l++) {
            if (t->kv_donor[l] < 0 || t->kv_donor[l] > l || t->kv_donor[l] >= t->first_kv_shared) __builtin_trap();
            if (t->layer_type[t->kv_donor[l]] != t->layer_type[l]) __builtin_trap();
            if (t->layer_kv_heads[l] < 1 || t->num_heads % t->layer_kv_heads[l]) __builtin_trap();
            if (t->layer_head_dim[l] < 2 || t->layer_head_dim[l] % 2 || t->layer_intermediate[l] < 1) __builtin_trap();
        }
        for (int i = 0; i < c.n_eos; i++)
            if (c.eos_ids[i] < 0 || c.eos_ids[i] >= t->vocab_size) __builtin_trap();
        g4_config_free(&c);
    }
    g4_generation_config g;
    (void)g4_generation_config_parse((const char *)data, size, &g, &err);
    return 0;
}
