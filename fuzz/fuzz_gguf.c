/* fuzz_gguf.c — libFuzzer harness: arbitrary bytes through the GGUF parser and every reader accessor. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Visits a value's elements (bounded, so that nested arrays cannot make one input quadratic), touching every
 * byte the parser vouched for so that out-of-range views are caught by ASan. */
static void walk(const g4_gguf_value *v, int depth, volatile unsigned *sum) {
    const unsigned char *p = v->data;
    for (size_t i = 0; i < v->size; i++) *sum += p[i];
    int64_t s;
    uint64_t u;
    double d;
    int b;
    (void)g4_gguf_value_i64(v, &s);
    (void)g4_gguf_value_u64(v, &u);
    (void)g4_gguf_value_f64(v, &d);
    (void)g4_gguf_value_bool(v, &b);
    if (v->type != G4_GGUF_VALUE_ARRAY || depth > 3) return;
    uint64_t n = v->count < 64 ? v->count : 64;
    for (uint64_t i = 0; i < n; i++) {
        g4_gguf_value e;
        if (g4_gguf_value_elem(v, i, &e) != 0) __builtin_trap();
        if (e.data < v->data || e.data + e.size > v->data + v->size) __builtin_trap();
        walk(&e, depth + 1, sum);
    }
    if (g4_gguf_value_elem(v, v->count, &(g4_gguf_value){0}) != -1) __builtin_trap();
}

/* Every typed getter on one key: each either succeeds or leaves a one-line message. */
static void get_all(const g4_gguf *f, const char *key, size_t size) {
    g4_err err = {0};
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    int b;
    const char *s;
    size_t len, n;
    (void)g4_gguf_get_u32(f, key, &u32, &err);
    (void)g4_gguf_get_i32(f, key, &i32, &err);
    (void)g4_gguf_get_u64(f, key, &u64, &err);
    (void)g4_gguf_get_i64(f, key, &i64, &err);
    (void)g4_gguf_get_f32(f, key, &f32, &err);
    (void)g4_gguf_get_f64(f, key, &f64, &err);
    (void)g4_gguf_get_bool(f, key, &b, &err);
    if (g4_gguf_get_str(f, key, &s, &len, &err) == 0 && s[len] != '\0') __builtin_trap();
    int32_t *ai32;
    int64_t *ai64;
    float *af32;
    uint8_t *ab;
    char **as;
    if (g4_gguf_get_arr_i32(f, key, &ai32, &n, &err) == 0) free(ai32);
    if (g4_gguf_get_arr_i64(f, key, &ai64, &n, &err) == 0) free(ai64);
    if (g4_gguf_get_arr_f32(f, key, &af32, &n, &err) == 0) free(af32);
    if (g4_gguf_get_arr_bool(f, key, &ab, &n, &err) == 0) free(ab);
    if (g4_gguf_get_arr_str(f, key, &as, &n, &err) == 0) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++) total += strlen(as[i]);
        if (total > size) __builtin_trap();
        free(as);
    }
    if (err.code && memchr(err.msg, '\0', sizeof err.msg) == NULL) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    g4_gguf *f = NULL;
    g4_err err = {0};
    if (g4_gguf_parse(data, size, "fuzz", &f, &err) != 0) {
        /* A failure must leave a terminated message on one line. */
        if (memchr(err.msg, '\0', sizeof err.msg) == NULL || strchr(err.msg, '\n')) __builtin_trap();
        return 0;
    }
    volatile unsigned sum = 0;
    for (size_t i = 0; i < g4_gguf_kv_count(f); i++) {
        const g4_gguf_kv *kv = g4_gguf_kv_at(f, i);
        if (g4_gguf_find_kv(f, kv->key) != kv) __builtin_trap();
        walk(&kv->value, 0, &sum);
        get_all(f, kv->key, size);
    }
    for (size_t i = 0; i < g4_gguf_tensor_count(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        if (g4_gguf_tensor_find(f, t->name) != t) __builtin_trap();
        uint64_t nb;
        if (g4_gguf_tensor_bytes(t->type, t->n_dims, t->ne, &nb) != 0 || nb != t->nbytes) __builtin_trap();
        if (t->offset % g4_gguf_alignment(f) != 0) __builtin_trap();
        const unsigned char *p = t->data;
        if (t->nbytes && (p < data || p + t->nbytes > data + size)) __builtin_trap();
        for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
        g4_tensor v;
        g4_err verr = {0};
        if (g4_gguf_tensor_view(f, t, &v, &verr) == 0) {
            int64_t numel = g4_tensor_numel(&v), k = v.shape[v.ndim - 1];
            size_t want = numel == 0 ? 0 : g4_row_bytes(v.dtype, k) * (size_t)(numel / k);
            if (v.nbytes != t->nbytes || v.nbytes != want) __builtin_trap();
        }
    }
    get_all(f, "general.alignment", size);
    g4_gguf_close(f);
    return 0;
}
