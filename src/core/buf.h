/* buf.h — a growable byte buffer for building strings and arrays without fixed limits. */
#ifndef G4_BUF_H
#define G4_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct g4_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
} g4_buf;

/* Each returns 0, or -1 when memory runs out (the buffer is then unchanged). */
int g4_buf_append(g4_buf *b, const void *bytes, size_t n);
int g4_buf_puts(g4_buf *b, const char *s);
int g4_buf_printf(g4_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void g4_buf_reset(g4_buf *b); /* len = 0, memory kept */
void g4_buf_free(g4_buf *b);

/* A growable array of int32 (token ids). */
typedef struct g4_ids {
    int32_t *v;
    size_t n;
    size_t cap;
} g4_ids;

int g4_ids_push(g4_ids *a, int32_t id);
int g4_ids_extend(g4_ids *a, const int32_t *ids, size_t n);
void g4_ids_free(g4_ids *a);

#endif
