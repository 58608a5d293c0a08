/* audio_decode.c — any audio file or in-memory bytes to 16 kHz mono float32 through FFmpeg, bounded and quiet. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* fseeko/ftello: 64-bit offsets for files past 2 GB */
#endif
#include "media/audio.h"
#include "media/media_source.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>

/* FFmpeg 5.1 replaced channel counts/masks with AVChannelLayout; Debian 12 has 5.1, older Ubuntus 4.x. */
#if LIBAVUTIL_VERSION_INT >= AV_VERSION_INT(57, 28, 100)
#define FRAME_CHANNELS(f) ((f)->ch_layout.nb_channels)
#else
#define FRAME_CHANNELS(f) ((f)->channels)
#endif

/* Only containers that carry audio (or video with an audio track). Everything else — image, playlist, concat and
 * "tty" demuxers among them — is refused before it can read anything, so no demuxer can reach other files. */
#define FORMAT_WHITELIST                                                                                     \
    "wav,w64,aiff,caf,au,flac,mp3,ogg,mov,matroska,webm,aac,ac3,eac3,amr,ape,asf,avi,flv,mpeg,mpegts,wv,tta,dts"

#define MAX_CHANNELS 64
#define MIN_RATE 1000
#define MAX_RATE 768000
#define MAX_FRAME_SAMPLES (1 << 22)


/* The growing 16 kHz output. */
typedef struct sink {
    float *v;
    size_t n, cap, limit; /* limit: the most samples ever held (the caller's maximum plus resampler slack) */
} sink;

typedef struct decoder {
    const char *label;
    g4_media_source src;
    AVFormatContext *fmt;
    AVIOContext *pb;
    AVCodecContext *cc;
    AVPacket *pkt;
    AVFrame *frame;
    SwrContext *swr;
    const char *resampler;
    int stream;
    int rate;          /* source rate, fixed by the first frame */
    int channels;      /* of the first frame, for the caller's information */
    int64_t in_samples;
    int64_t max_in;    /* source samples allowed (the output limit seen at the source rate) */
    size_t max_out;
    float *mono;       /* one frame, mixed down, at the source rate */
    size_t mono_cap;
    long packets, bad_packets;
    sink out;
} decoder;

static int sink_reserve(decoder *d, size_t extra, g4_err *err) {
    sink *s = &d->out;
    if (extra > s->limit || s->n > s->limit - extra)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: audio longer than the limit of %zu s", d->label,
                       d->max_out / G4_AUDIO_RATE);
    size_t need = s->n + extra;
    if (need <= s->cap) return 0;
    size_t cap = s->cap ? s->cap + s->cap / 2 : 65536;
    if (cap < need) cap = need;
    if (cap > s->limit) cap = s->limit;
    float *v = realloc(s->v, cap * sizeof(float));
    if (!v) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory for %zu samples", d->label, cap);
    s->v = v;
    s->cap = cap;
    return 0;
}

/* Converts channel c of a frame to float the way soundfile/numpy read PCM (int / 2^(bits-1), exact for 16 bits)
 * and adds it into dst (or stores it, for the first channel). */
static void add_channel(const AVFrame *f, int c, int nch, float *dst, int first) {
    int planar = av_sample_fmt_is_planar(f->format);
    const uint8_t *base = planar ? f->extended_data[c] : f->extended_data[0];
    size_t step = planar ? 1 : (size_t)nch, off = planar ? 0 : (size_t)c;
    size_t n = (size_t)f->nb_samples;
    enum AVSampleFormat fmt = av_get_packed_sample_fmt(f->format);
    for (size_t i = 0; i < n; i++) {
        size_t k = i * step + off;
        float v;
        switch (fmt) {
        case AV_SAMPLE_FMT_U8: v = (float)((int)base[k] - 128) * (1.0f / 128.0f); break;
        case AV_SAMPLE_FMT_S16: v = (float)((const int16_t *)base)[k] * (1.0f / 32768.0f); break;
        case AV_SAMPLE_FMT_S32: v = (float)((const int32_t *)base)[k] * (1.0f / 2147483648.0f); break;
        case AV_SAMPLE_FMT_S64: v = (float)((double)((const int64_t *)base)[k] * (1.0 / 9223372036854775808.0)); break;
        case AV_SAMPLE_FMT_FLT: v = ((const float *)base)[k]; break;
        case AV_SAMPLE_FMT_DBL: v = (float)((const double *)base)[k]; break;
        default: v = 0.0f; break; /* unreachable: formats are checked before */
        }
        dst[i] = first ? v : dst[i] + v;
    }
}

static int known_format(int format) {
    switch (av_get_packed_sample_fmt(format)) {
    case AV_SAMPLE_FMT_U8:
    case AV_SAMPLE_FMT_S16:
    case AV_SAMPLE_FMT_S32:
    case AV_SAMPLE_FMT_S64:
    case AV_SAMPLE_FMT_FLT:
    case AV_SAMPLE_FMT_DBL: return 1;
    default: return 0;
    }
}

static int open_resampler(decoder *d, g4_err *err) {
    /* soxr first: it is what librosa.load resamples with (soxr "HQ" = 20-bit precision, linear phase), so files
     * at other rates come out as transformers' load_audio would give them. swresample's own filter otherwise. */
    for (int attempt = 0; attempt < 2; attempt++) {
#if LIBSWRESAMPLE_VERSION_INT >= AV_VERSION_INT(4, 5, 100)
        AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
        int r = swr_alloc_set_opts2(&d->swr, &mono, AV_SAMPLE_FMT_FLT, G4_AUDIO_RATE, &mono, AV_SAMPLE_FMT_FLT,
                                    d->rate, 0, NULL);
        if (r < 0) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_NOMEM, "cannot set up the resampler", r);
#else
        d->swr = swr_alloc_set_opts(NULL, AV_CH_LAYOUT_MONO, AV_SAMPLE_FMT_FLT, G4_AUDIO_RATE, AV_CH_LAYOUT_MONO,
                                    AV_SAMPLE_FMT_FLT, d->rate, 0, NULL);
        if (!d->swr) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: cannot set up the resampler", d->label);
#endif
        if (attempt == 0) {
            av_opt_set(d->swr, "resampler", "soxr", 0);
            av_opt_set_double(d->swr, "precision", 20.0, 0);
        }
        r = swr_init(d->swr);
        if (r >= 0) {
            d->resampler = attempt == 0 ? "soxr" : "swr";
            return 0;
        }
        swr_free(&d->swr);
        if (attempt == 1) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_UNSUPPORTED, "cannot resample", r);
    }
    return 0;
}

/* Mixes one decoded frame down to mono and appends it (resampled when needed) to the output. */
static int take_frame(decoder *d, const AVFrame *f, g4_err *err) {
    int nch = FRAME_CHANNELS(f);
    int rate = f->sample_rate > 0 ? f->sample_rate : d->cc->sample_rate;
    if (f->nb_samples <= 0) return 0;
    if (f->nb_samples > MAX_FRAME_SAMPLES)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: implausible frame of %d samples", d->label, f->nb_samples);
    if (nch < 1 || nch > MAX_CHANNELS)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: %d audio channels (1 to %d supported)", d->label, nch,
                       MAX_CHANNELS);
    if (!known_format(f->format))
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: unsupported sample format %s", d->label,
                       av_get_sample_fmt_name(f->format) ? av_get_sample_fmt_name(f->format) : "?");
    if (d->rate == 0) {
        if (rate < MIN_RATE || rate > MAX_RATE)
            return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: sample rate %d Hz (%d to %d supported)", d->label,
                           rate, MIN_RATE, MAX_RATE);
        d->rate = rate;
        d->channels = nch;
        d->max_in = (int64_t)((double)d->max_out * rate / G4_AUDIO_RATE) + 1;
        if (rate != G4_AUDIO_RATE) {
            int r = open_resampler(d, err);
            if (r) return r;
        }
    } else if (rate != d->rate) {
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: sample rate changes mid-stream (%d to %d Hz)", d->label,
                       d->rate, rate);
    }
    size_t n = (size_t)f->nb_samples;
    d->in_samples += (int64_t)n;
    if (d->in_samples > d->max_in)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: audio longer than the limit of %zu s", d->label,
                       d->max_out / G4_AUDIO_RATE);

    float *dst;
    if (!d->swr) { /* already 16 kHz: mix straight into the output */
        int r = sink_reserve(d, n, err);
        if (r) return r;
        dst = d->out.v + d->out.n;
    } else {
        if (n > d->mono_cap) {
            float *m = realloc(d->mono, n * sizeof(float));
            if (!m) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", d->label);
            d->mono = m;
            d->mono_cap = n;
        }
        dst = d->mono;
    }
    for (int c = 0; c < nch; c++) add_channel(f, c, nch, dst, c == 0);
    if (nch > 1) /* the reference's mean over channels, in float32 */
        for (size_t i = 0; i < n; i++) dst[i] /= (float)nch;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: non-finite sample values", d->label);

    if (!d->swr) {
        d->out.n += n;
        return 0;
    }
    int room = swr_get_out_samples(d->swr, (int)n);
    if (room < 0) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_INTERNAL, "resampler failed", room);
    int r = sink_reserve(d, (size_t)room, err);
    if (r) return r;
    uint8_t *o = (uint8_t *)(d->out.v + d->out.n);
    const uint8_t *i = (const uint8_t *)d->mono;
    int got = swr_convert(d->swr, &o, room, &i, (int)n);
    if (got < 0) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_INTERNAL, "resampler failed", got);
    d->out.n += (size_t)got;
    return 0;
}

static int drain_decoder(decoder *d, g4_err *err) {
    for (int errors = 0;;) {
        int r = avcodec_receive_frame(d->cc, d->frame);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
        if (r == AVERROR_INVALIDDATA) {
            d->bad_packets++;
            if (++errors > 64) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_FORMAT, "cannot decode audio", r);
            continue;
        }
        if (r < 0) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_FORMAT, "cannot decode audio", r);
        r = take_frame(d, d->frame, err);
        av_frame_unref(d->frame);
        if (r) return r;
    }
}

static int send_packet(decoder *d, const AVPacket *pkt, g4_err *err) {
    int r = avcodec_send_packet(d->cc, pkt);
    if (pkt) d->packets++;
    if (r == AVERROR(EAGAIN)) { /* output is waiting: take it, then the decoder accepts the packet */
        r = drain_decoder(d, err);
        if (r) return r;
        r = avcodec_send_packet(d->cc, pkt);
    }
    if (r == AVERROR_INVALIDDATA) {
        /* A damaged packet in an otherwise good stream is skipped, as FFmpeg's own tools do; a stream that is
         * mostly damage is refused at the end. */
        d->bad_packets++;
        r = 0;
    } else if (r < 0 && r != AVERROR_EOF) {
        const int unsupported = r == AVERROR_PATCHWELCOME || r == AVERROR(ENOSYS);
        return g4_media_fail_av(err, d->label, unsupported ? GEMMA4C_ERR_UNSUPPORTED : GEMMA4C_ERR_FORMAT,
                                "cannot decode audio", r);
    }
    return drain_decoder(d, err);
}

static int flush_resampler(decoder *d, g4_err *err) {
    if (!d->swr) return 0;
    for (;;) {
        int room = swr_get_out_samples(d->swr, 0);
        if (room <= 0) return 0;
        int r = sink_reserve(d, (size_t)room, err);
        if (r) return r;
        uint8_t *o = (uint8_t *)(d->out.v + d->out.n);
        int got = swr_convert(d->swr, &o, room, NULL, 0);
        if (got < 0) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_INTERNAL, "resampler failed", got);
        if (got == 0) return 0;
        d->out.n += (size_t)got;
    }
}

/* Reads up to n bytes at `off` directly from the source, before FFmpeg has opened it. */
static size_t src_peek(g4_media_source *s, int64_t off, unsigned char *buf, size_t n) {
    if (s->file) {
        if (off < 0 || off >= s->file_size || fseeko(s->file, (off_t)off, SEEK_SET) != 0) return 0;
        size_t got = fread(buf, 1, n, s->file);
        if (fseeko(s->file, 0, SEEK_SET) != 0) return 0;
        return got;
    }
    if (off < 0 || (uint64_t)off >= s->size) return 0;
    size_t left = s->size - (size_t)off;
    size_t take = left < n ? left : n;
    memcpy(buf, s->data + off, take);
    return take;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A RIFF/WAVE file states the size of each chunk. FFmpeg quietly replaces a data size that overruns the file with
 * an estimate, so a cut-off recording (or a header claiming 2^31 samples) would pass as shorter audio, and it
 * allocates metadata chunks (LIST/INFO) at their declared size, so a 100-byte file could make it zero a gigabyte.
 * We refuse any chunk that runs past the end of the file instead. A data size of 0 or 0xFFFFFFFF means "unknown"
 * (streaming writers): the rest of the file is audio. */
static int check_wav_chunks(decoder *d, g4_err *err) {
    unsigned char h[12];
    int64_t total = d->src.file ? d->src.file_size : (int64_t)d->src.size;
    if (src_peek(&d->src, 0, h, 12) != 12 || memcmp(h, "RIFF", 4) != 0 || memcmp(h + 8, "WAVE", 4) != 0) return 0;
    int64_t pos = 12;
    for (int chunks = 0; chunks < 4096 && pos + 8 <= total; chunks++) {
        if (src_peek(&d->src, pos, h, 8) != 8) return 0;
        uint32_t size = le32(h + 4);
        int is_data = memcmp(h, "data", 4) == 0;
        if (is_data && (size == 0 || size == 0xFFFFFFFFu)) return 0;
        int64_t held = total - (pos + 8);
        if ((int64_t)size > held) {
            if (is_data)
                return g4_fail(err, GEMMA4C_ERR_FORMAT,
                               "%s: truncated: the header declares %lu bytes of audio, the file holds %lld",
                               d->label, (unsigned long)size, (long long)held);
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: corrupt WAV: chunk '%.4s' claims %lu bytes, %lld remain",
                           d->label, isprint(h[0]) && isprint(h[1]) && isprint(h[2]) && isprint(h[3]) ? (char *)h : "?",
                           (unsigned long)size, (long long)held);
        }
        pos += 8 + (int64_t)size + (size & 1);
    }
    return 0; /* no chunks left to check; FFmpeg says what else may be wrong */
}

static int run_decoder(decoder *d, g4_err *err) {
    int r = check_wav_chunks(d, err);
    if (r) return r;
    r = g4_media_input_open(&d->src, FORMAT_WHITELIST, d->label, "audio or video", &d->fmt, &d->pb, err);
    if (r) return r;

    r = avformat_find_stream_info(d->fmt, NULL);
    if (r < 0) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_FORMAT, "cannot read the stream layout", r);

    r = av_find_best_stream(d->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
    if (r < 0) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: no audio track", d->label);
    /* Looked up here rather than through av_find_best_stream, whose decoder argument changed constness in 5.0. */
    const AVCodec *codec;
    const int stream = r;
    if ((r = g4_media_find_decoder(d->fmt->streams[stream]->codecpar, d->label, "audio", &codec, err))) return r;
    d->stream = stream;
    for (unsigned i = 0; i < d->fmt->nb_streams; i++)
        if ((int)i != d->stream) d->fmt->streams[i]->discard = AVDISCARD_ALL;

    d->cc = avcodec_alloc_context3(codec);
    if (!d->cc) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", d->label);
    r = avcodec_parameters_to_context(d->cc, d->fmt->streams[d->stream]->codecpar);
    if (r < 0) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_FORMAT, "bad audio parameters", r);
    d->cc->pkt_timebase = d->fmt->streams[d->stream]->time_base;
    d->cc->thread_count = 1;
    r = avcodec_open2(d->cc, codec, NULL);
    if (r < 0) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_FORMAT, "cannot open the audio decoder", r);

    d->pkt = av_packet_alloc();
    d->frame = av_frame_alloc();
    if (!d->pkt || !d->frame) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", d->label);

    int read_error = 0;
    for (;;) {
        r = av_read_frame(d->fmt, d->pkt);
        if (r < 0) {
            read_error = r == AVERROR_EOF ? 0 : r;
            break;
        }
        if (d->pkt->stream_index == d->stream) r = send_packet(d, d->pkt, err);
        av_packet_unref(d->pkt);
        if (r) return r;
    }
    /* A read error after good data ends the stream where it broke (checked below); before any, it is fatal. */
    if (read_error && d->in_samples == 0)
        return g4_media_fail_av(err, d->label, GEMMA4C_ERR_FORMAT, "cannot read", read_error);
    r = send_packet(d, NULL, err);
    if (r) return r;
    if (d->bad_packets > 8 && d->bad_packets * 4 > d->packets)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: corrupt audio (%ld of %ld packets undecodable)", d->label,
                       d->bad_packets, d->packets);
    if (d->in_samples == 0) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: no audio samples", d->label);
    r = flush_resampler(d, err);
    if (r) return r;

    /* librosa's length, computed as librosa does: ceil(n * (16000 / rate)) in double. The resampler's own flush
     * can end a few samples off; the difference is trimmed or zero-filled. */
    uint64_t want = (uint64_t)ceil((double)d->in_samples * ((double)G4_AUDIO_RATE / (double)d->rate));
    if (want > d->out.n) {
        r = sink_reserve(d, (size_t)(want - d->out.n), err);
        if (r) return r;
        memset(d->out.v + d->out.n, 0, (size_t)(want - d->out.n) * sizeof(float));
    }
    d->out.n = (size_t)want;
    if (d->out.n > d->max_out)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: audio longer than the limit of %zu s", d->label,
                       d->max_out / G4_AUDIO_RATE);
    return 0;
}

static void close_decoder(decoder *d) {
    swr_free(&d->swr);
    av_frame_free(&d->frame);
    av_packet_free(&d->pkt);
    avcodec_free_context(&d->cc);
    g4_media_input_close(&d->fmt, &d->pb);
    free(d->mono);
    free(d->out.v);
}

static int decode(decoder *d, const g4_audio_decode_opts *opts, g4_audio *out, g4_err *err) {
    av_log_set_level(AV_LOG_QUIET); /* FFmpeg would print to stderr; our caller gets one line instead */
    d->max_out = opts && opts->max_samples ? opts->max_samples : G4_AUDIO_DEFAULT_MAX;
    /* Resampler flushes can overshoot the final length slightly before it is trimmed. */
    d->out.limit = d->max_out + G4_AUDIO_RATE;
    int r = run_decoder(d, err);
    if (r == 0) {
        float *v = d->out.v;
        if (d->out.n < d->out.cap) {
            float *shrunk = realloc(v, d->out.n * sizeof(float));
            if (shrunk) v = shrunk;
        }
        out->samples = v;
        out->n = d->out.n;
        out->src_rate = d->rate;
        out->src_channels = d->channels;
        out->resampler = d->resampler ? d->resampler : "none";
        d->out.v = NULL;
    }
    close_decoder(d);
    return r;
}

int g4_audio_decode_memory(const void *data, size_t size, const char *label, const g4_audio_decode_opts *opts,
                           g4_audio *out, g4_err *err) {
    if (!out) return g4_fail(err, GEMMA4C_ERR_ARG, "audio: no output");
    memset(out, 0, sizeof *out);
    decoder d;
    memset(&d, 0, sizeof d);
    d.label = label && *label ? label : "audio";
    if (!data || size == 0) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: empty input", d.label);
    d.src.data = data;
    d.src.size = size;
    return decode(&d, opts, out, err);
}

int g4_audio_decode_file(const char *path, const g4_audio_decode_opts *opts, g4_audio *out, g4_err *err) {
    if (!out) return g4_fail(err, GEMMA4C_ERR_ARG, "audio: no output");
    memset(out, 0, sizeof *out);
    if (!path) return g4_fail(err, GEMMA4C_ERR_ARG, "audio: no path");
    decoder d;
    memset(&d, 0, sizeof d);
    d.label = path;
    int r = g4_media_source_open_file(&d.src, path, err);
    if (r) return r;
    r = decode(&d, opts, out, err);
    g4_media_source_close(&d.src);
    return r;
}

void g4_audio_free(g4_audio *a) {
    if (!a) return;
    free(a->samples);
    memset(a, 0, sizeof *a);
}
