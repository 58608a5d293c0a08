/* media_source.c — the byte source both FFmpeg decoders (audio, video) read through their AVIOContext. */
#include "media_source.h"

#include <errno.h>
#include <libavformat/avio.h>
#include <libavutil/error.h>
#include <string.h>

int g4_media_source_open_file(g4_media_source *s, const char *path, g4_err *err) {
    memset(s, 0, sizeof *s);
    FILE *f = fopen(path, "rb");
    if (!f) return g4_fail(err, GEMMA4C_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseeko(f, 0, SEEK_END) != 0 || (s->file_size = (int64_t)ftello(f)) < 0 || fseeko(f, 0, SEEK_SET) != 0) {
        int e = errno;
        fclose(f);
        return g4_fail(err, GEMMA4C_ERR_IO, "%s: cannot read: %s", path, strerror(e));
    }
    if (s->file_size == 0) {
        fclose(f);
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: empty file", path);
    }
    s->file = f;
    return 0;
}

void g4_media_source_close(g4_media_source *s) {
    if (s->file) fclose(s->file);
    s->file = NULL;
}

int g4_media_source_rewind(g4_media_source *s) {
    if (s->file) return fseeko(s->file, 0, SEEK_SET) == 0 ? 0 : -1;
    s->pos = 0;
    return 0;
}

int g4_media_source_read(void *opaque, uint8_t *buf, int n) {
    g4_media_source *s = opaque;
    if (n <= 0) return 0;
    if (s->file) {
        size_t got = fread(buf, 1, (size_t)n, s->file);
        if (got == 0) return ferror(s->file) ? AVERROR(EIO) : AVERROR_EOF;
        return (int)got;
    }
    if (s->pos >= s->size) return AVERROR_EOF;
    size_t left = s->size - s->pos;
    size_t take = left < (size_t)n ? left : (size_t)n;
    memcpy(buf, s->data + s->pos, take);
    s->pos += take;
    return (int)take;
}

int64_t g4_media_source_seek(void *opaque, int64_t offset, int whence) {
    g4_media_source *s = opaque;
    int64_t size = s->file ? s->file_size : (int64_t)s->size;
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE) return size;
    int64_t cur = s->file ? (int64_t)ftello(s->file) : (int64_t)s->pos;
    int64_t target;
    if (whence == SEEK_SET)
        target = offset;
    else if (whence == SEEK_CUR)
        target = cur + offset;
    else if (whence == SEEK_END)
        target = size + offset;
    else
        return AVERROR(EINVAL);
    if (target < 0 || target > size) return AVERROR(EINVAL);
    if (s->file) {
        if (fseeko(s->file, (off_t)target, SEEK_SET) != 0) return AVERROR(errno ? errno : EIO);
    } else {
        s->pos = (size_t)target;
    }
    return target;
}
