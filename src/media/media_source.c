/* media_source.c — the FFmpeg input both decoders (audio, video) open: their bytes, whitelisted demuxers, errors. */
#include "media_source.h"

#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavutil/error.h>
#include <string.h>

#define IO_BUF 32768

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

int g4_media_input_open(g4_media_source *s, const char *formats, const char *label, const char *kind,
                        AVFormatContext **fmt, AVIOContext **pb, g4_err *err) {
    *fmt = avformat_alloc_context();
    unsigned char *buf = av_malloc(IO_BUF);
    if (buf) *pb = avio_alloc_context(buf, IO_BUF, 0, s, g4_media_source_read, NULL, g4_media_source_seek);
    if (!*fmt || !*pb) {
        if (!*pb) av_free(buf);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", label);
    }
    (*fmt)->pb = *pb;
    (*fmt)->flags |= AVFMT_FLAG_CUSTOM_IO;
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "format_whitelist", formats, 0);
    av_dict_set(&opts, "protocol_whitelist", "none", 0); /* demuxers may not open anything beside our bytes */
    int r = avformat_open_input(fmt, NULL, NULL, &opts);
    av_dict_free(&opts);
    if (r < 0) { /* avformat_open_input freed the context; our AVIOContext stays ours */
        if (r == AVERROR(EIO)) return g4_media_fail_av(err, label, GEMMA4C_ERR_IO, "cannot read", r);
        /* FFmpeg's reason (no format matched, or one outside the whitelist) says nothing more useful. */
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: not a recognised %s file", label, kind);
    }
    return 0;
}

void g4_media_input_close(AVFormatContext **fmt, AVIOContext **pb) {
    avformat_close_input(fmt); /* leaves the custom AVIOContext alone */
    if (*pb) {
        av_freep(&(*pb)->buffer);
        avio_context_free(pb);
    }
}

int g4_media_find_decoder(const AVCodecParameters *par, const char *label, const char *kind, const AVCodec **codec,
                          g4_err *err) {
    *codec = avcodec_find_decoder(par->codec_id);
    if (*codec) return 0;
    if (par->codec_id == AV_CODEC_ID_NONE)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: unknown %s encoding (tag 0x%x)", label, kind, par->codec_tag);
    return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: no decoder for the %s codec %s", label, kind,
                   avcodec_get_name(par->codec_id));
}

int g4_media_fail_av(g4_err *err, const char *label, int code, const char *what, int averr) {
    char msg[128];
    if (av_strerror(averr, msg, sizeof msg) < 0) snprintf(msg, sizeof msg, "error %d", averr);
    return g4_fail(err, code, "%s: %s (%s)", label, what, msg);
}
