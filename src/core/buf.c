/* buf.c — growable byte buffer and id array. */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(g4_buf *b, size_t extra) {
    if (extra > SIZE_MAX - b->len - 1) return -1;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int g4_buf_append(g4_buf *b, const void *bytes, size_t n) {
    if (reserve(b, n)) return -1;
    if (n) memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int g4_buf_puts(g4_buf *b, const char *s) { return g4_buf_append(b, s, strlen(s)); }

int g4_buf_printf(g4_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void g4_buf_reset(g4_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void g4_buf_free(g4_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int g4_ids_push(g4_ids *a, int32_t id) { return g4_ids_extend(a, &id, 1); }

int g4_ids_extend(g4_ids *a, const int32_t *ids, size_t n) {
    if (n > (SIZE_MAX / sizeof(int32_t)) - a->n) return -1;
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap : 16;
        while (cap < a->n + n) cap *= 2;
        int32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) return -1;
        a->v = p;
        a->cap = cap;
    }
    if (n) memcpy(a->v + a->n, ids, n * sizeof *ids);
    a->n += n;
    return 0;
}

void g4_ids_free(g4_ids *a) {
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}
