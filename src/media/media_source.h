/* media_source.h — FFmpeg input for the decoders: bytes from a buffer or a file (never a URL), whitelisted demuxers. */
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

struct AVFormatContext;
struct AVIOContext;
struct AVCodecParameters;
struct AVCodec;

/* Opens `s` as an FFmpeg input read through the callbacks above, with only the demuxers named in `formats` (FFmpeg
 * names, comma-separated) and no protocol at all, so no demuxer can open anything beside these bytes. Errors name
 * `label`: unreadable input (GEMMA4C_ERR_IO), "not a recognised <kind> file" (GEMMA4C_ERR_FORMAT), no memory.
 * Whether it succeeds or not, close with g4_media_input_close. */
int g4_media_input_open(g4_media_source *s, const char *formats, const char *label, const char *kind,
                        struct AVFormatContext **fmt, struct AVIOContext **pb, g4_err *err);
void g4_media_input_close(struct AVFormatContext **fmt, struct AVIOContext **pb);

/* The decoder for a stream's codec, or an error naming `label` and the stream `kind` ("audio", "video"):
 * GEMMA4C_ERR_UNSUPPORTED for an unknown encoding or one this FFmpeg cannot decode. */
int g4_media_find_decoder(const struct AVCodecParameters *par, const char *label, const char *kind,
                          const struct AVCodec **codec, g4_err *err);

/* Fails with `code` and "<label>: <what> (<FFmpeg's text for averr>)"; returns the code. */
int g4_media_fail_av(g4_err *err, const char *label, int code, const char *what, int averr);

#endif
