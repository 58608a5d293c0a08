/* media_source.h — bytes for FFmpeg from a caller's buffer or an open file, never a path FFmpeg would parse as a URL. */
#ifndef G4_MEDIA_SOURCE_H
#define G4_MEDIA_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"

typedef struct g4_media_source {
    const unsigned char *data;
    size_t size, pos;
    FILE *file;
    int64_t file_size;
} g4_media_source;

/* Opens `path` for reading; refuses empty or unreadable files with one line. Close with g4_media_source_close. */
int g4_media_source_open_file(g4_media_source *s, const char *path, g4_err *err);
void g4_media_source_close(g4_media_source *s);
int g4_media_source_rewind(g4_media_source *s); /* 0 or -1 (errno set) */

/* AVIOContext callbacks (opaque = the g4_media_source). */
int g4_media_source_read(void *opaque, uint8_t *buf, int n);
int64_t g4_media_source_seek(void *opaque, int64_t offset, int whence);

#endif
