/* fuzz_safetensors.c — libFuzzer harness: arbitrary bytes through the safetensors parser and every accessor. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "format/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g4_st_file *f = NULL;
    g4_err err = {0};
    if (g4_st_parse(data, size, "fuzz", &f, &err) != 0) {
        /* A failure must leave a terminated one-line message. */
        if (memchr(err.msg, '\0', sizeof err.msg) == NULL) __builtin_trap();
        return 0;
    }
    /* Touch every byte the parser vouched for, so out-of-range views are caught by ASan. */
    volatile unsigned sum = 0;
    for (size_t i = 0; i < g4_st_count(f); i++) {
        const g4_tensor *t = g4_st_at(f, i);
        if (g4_st_find(f, t->name) != t) __builtin_trap();
        if ((size_t)g4_tensor_numel(t) * g4_dtype_size(t->dtype) != t->nbytes) __builtin_trap();
        const unsigned char *p = t->data;
        for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
        if (t->nbytes) (void)g4_tensor_get_f32(t, 0);
        char sh[128];
        g4_shape_str(t, sh, sizeof sh);
    }
    (void)sum;
    (void)g4_st_metadata(f, "format");
    g4_st_close(f);
    return 0;
}
