/* mapfile.h — read-only memory mapping of whole files (weights are never copied when they can be mapped). */
#ifndef G4_MAPFILE_H
#define G4_MAPFILE_H

#include <stddef.h>

#include "error.h"

typedef struct g4_mapfile {
    const unsigned char *data;
    size_t size;
} g4_mapfile;

int g4_mapfile_open(g4_mapfile *m, const char *path, g4_err *err);
void g4_mapfile_close(g4_mapfile *m);

/* Reads a whole (small) file into a NUL-terminated heap buffer; refuses files larger than max_bytes. */
int g4_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len, g4_err *err);

#endif
