/* video_decode.c — a video file or in-memory bytes to the reference's sampled RGB frames through FFmpeg, bounded and quiet. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* fseeko/ftello: 64-bit offsets for files past 2 GB */
#endif
#include "media/video.h"
#include "media/media_source.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

/* Containers that carry video. Image demuxers (png_pipe, image2...), playlists (hls, concat) and "tty" are
 * refused before they read anything, so no demuxer can reach other files and a still image is not a video. */
#define FORMAT_WHITELIST "mov,matroska,webm,avi,flv,mpeg,mpegts,mpegvideo,asf,ogg,ivf,h264,hevc,m4v,gif,nut,dv,mxf,obu"

#define MAX_SIDE 32768
#define MAX_DECODE_ERRORS 64 /* OpenCV's OPENCV_FFMPEG_DECODE_ATTEMPTS default */



typedef struct vdec {
    const char *label;
    g4_media_source src;
    uint64_t max_pixels;
    int64_t max_decoded;
    int threads;
    /* one open of the input */
    AVFormatContext *fmt;
    AVIOContext *pb;
    AVCodecContext *cc;
    AVPacket *pkt;
    AVFrame *frame;
    struct SwsContext *sws;
    uint8_t *rgb_plane[4]; /* sws output, aligned as OpenCV's av_frame_get_buffer(32) output is */
    int rgb_linesize[4];
    int rgb_w, rgb_h;
    int stream;
    int rotation;      /* clockwise degrees to apply: 0, 90, 180, 270 */
    int64_t nb_frames; /* the container's count, 0 if unknown */
    double fps;        /* av_guess_frame_rate, 0 if unknown */
    double container_duration;
    /* one decoding pass */
    const int32_t *want;
    int n_want, next_want;
    g4_image *frames;
    int64_t count;
    long decode_errors;
} vdec;

static void close_input(vdec *d) {
    av_freep(&d->rgb_plane[0]);
    d->rgb_w = d->rgb_h = 0;
    sws_freeContext(d->sws);
    d->sws = NULL;
    av_frame_free(&d->frame);
    av_packet_free(&d->pkt);
    avcodec_free_context(&d->cc);
    g4_media_input_close(&d->fmt, &d->pb);
}

static int stream_rotation(const AVStream *st) {
    const uint8_t *m = NULL;
#if LIBAVFORMAT_VERSION_INT >= AV_VERSION_INT(60, 15, 100)
    const AVPacketSideData *sd =
        av_packet_side_data_get(st->codecpar->coded_side_data, st->codecpar->nb_coded_side_data,
                                AV_PKT_DATA_DISPLAYMATRIX);
    if (sd && sd->size >= 9 * sizeof(int32_t)) m = sd->data;
#else
    size_t size = 0;
    m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &size);
    if (size < 9 * sizeof(int32_t)) m = NULL;
#endif
    if (!m) return 0;
    double a = av_display_rotation_get((const int32_t *)m);
    if (!isfinite(a)) return 0;
    /* OpenCV: angle = -round(rotation), wrapped into [0, 360); only right angles rotate the picture. */
    long r = -lround(a);
    r %= 360;
    if (r < 0) r += 360;
    return r == 90 || r == 180 || r == 270 ? (int)r : 0;
}

static int open_input(vdec *d, g4_err *err) {
    if (g4_media_source_rewind(&d->src) != 0) return g4_fail(err, GEMMA4C_ERR_IO, "%s: cannot rewind: %s", d->label, strerror(errno));
    int r = g4_media_input_open(&d->src, FORMAT_WHITELIST, d->label, "video", &d->fmt, &d->pb, err);
    if (r) return r;

    /* find_stream_info decodes a few frames with its own decoders: they get the same pixel limit as ours. */
    unsigned ns = d->fmt->nb_streams;
    if (ns == 0) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: no video track", d->label);
    AVDictionary **sopts = calloc(ns, sizeof *sopts);
    if (!sopts) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", d->label);
    for (unsigned i = 0; i < ns; i++) {
        char px[32];
        snprintf(px, sizeof px, "%llu", (unsigned long long)d->max_pixels);
        av_dict_set(&sopts[i], "max_pixels", px, 0);
        av_dict_set(&sopts[i], "threads", "1", 0);
    }
    r = avformat_find_stream_info(d->fmt, sopts);
    for (unsigned i = 0; i < ns; i++) av_dict_free(&sopts[i]);
    free(sopts);
    if (r < 0) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_FORMAT, "cannot read the stream layout", r);

    /* OpenCV takes the first video stream; cover art (an attached picture) is not the video. */
    d->stream = -1;
    for (unsigned i = 0; i < d->fmt->nb_streams; i++) {
        const AVStream *st = d->fmt->streams[i];
        if (st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO && !(st->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
            d->stream = (int)i;
            break;
        }
    }
    if (d->stream < 0) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: no video track", d->label);
    AVStream *st = d->fmt->streams[d->stream];
    const AVCodecParameters *par = st->codecpar;
    const AVCodec *codec;
    if ((r = g4_media_find_decoder(par, d->label, "video", &codec, err))) return r;
    if (par->width < 0 || par->height < 0 || par->width > MAX_SIDE || par->height > MAX_SIDE ||
        (uint64_t)par->width * (uint64_t)par->height > d->max_pixels)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: %dx%d video is larger than the limit of %llu pixels",
                       d->label, par->width, par->height, (unsigned long long)d->max_pixels);
    for (unsigned i = 0; i < d->fmt->nb_streams; i++)
        if ((int)i != d->stream) d->fmt->streams[i]->discard = AVDISCARD_ALL;

    d->cc = avcodec_alloc_context3(codec);
    if (!d->cc) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", d->label);
    r = avcodec_parameters_to_context(d->cc, par);
    if (r < 0) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_FORMAT, "bad video parameters", r);
    d->cc->pkt_timebase = st->time_base;
    d->cc->thread_count = d->threads;
    /* The decoder refuses (rather than allocates) pictures above the limit, whatever a header claims. */
    d->cc->max_pixels = d->max_pixels > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)d->max_pixels;
    r = avcodec_open2(d->cc, codec, NULL);
    if (r < 0) return g4_media_fail_av(err, d->label, GEMMA4C_ERR_FORMAT, "cannot open the video decoder", r);

    d->pkt = av_packet_alloc();
    d->frame = av_frame_alloc();
    if (!d->pkt || !d->frame) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", d->label);

    AVRational fr = av_guess_frame_rate(d->fmt, st, NULL);
    d->fps = fr.num > 0 && fr.den > 0 ? (double)fr.num / (double)fr.den : 0.0;
    if (!(d->fps > 0 && d->fps < 1e6)) d->fps = 0.0;
    d->nb_frames = st->nb_frames > 0 ? st->nb_frames : 0;
    /* OpenCV's get_duration_sec: the container's duration, else the stream's. */
    double dur = d->fmt->duration > 0 ? (double)d->fmt->duration / AV_TIME_BASE : 0.0;
    if (!(dur > 0) && st->duration > 0 && st->time_base.num > 0 && st->time_base.den > 0)
        dur = (double)st->duration * st->time_base.num / st->time_base.den;
    d->container_duration = isfinite(dur) && dur > 0 ? dur : 0.0;
    d->rotation = stream_rotation(st);
    return 0;
}

/* Turns the current frame into an owned RGB image the way OpenCV's retrieveFrame + cvtColor(BGR2RGB) do. */
static int convert_frame(vdec *d, const AVFrame *f, g4_image *out, g4_err *err) {
    int w = f->width, h = f->height;
    if (w <= 0 || h <= 0 || w > MAX_SIDE || h > MAX_SIDE || (uint64_t)w * (uint64_t)h > d->max_pixels)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: %dx%d frame is larger than the limit of %llu pixels",
                       d->label, w, h, (unsigned long long)d->max_pixels);
    if (f->format < 0 || !sws_isSupportedInput((enum AVPixelFormat)f->format))
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: unsupported pixel format %s", d->label,
                       av_get_pix_fmt_name((enum AVPixelFormat)f->format) ? av_get_pix_fmt_name(f->format) : "?");
    /* No sws_setColorspaceDetails: OpenCV sets none either, so swscale's defaults (BT.601, range by pixel format)
     * are what the reference saw, whatever the stream's colour tags say. */
    d->sws = sws_getCachedContext(d->sws, w, h, (enum AVPixelFormat)f->format, w, h, AV_PIX_FMT_BGR24, SWS_BICUBIC,
                                  NULL, NULL, NULL);
    if (!d->sws) return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: cannot convert %dx%d %s frames", d->label, w, h,
                                av_get_pix_fmt_name(f->format) ? av_get_pix_fmt_name(f->format) : "?");
    if (w != d->rgb_w || h != d->rgb_h) {
        av_freep(&d->rgb_plane[0]);
        d->rgb_w = d->rgb_h = 0;
        if (av_image_alloc(d->rgb_plane, d->rgb_linesize, w, h, AV_PIX_FMT_BGR24, 32) < 0)
            return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory for a %dx%d frame", d->label, w, h);
        d->rgb_w = w;
        d->rgb_h = h;
    }
    int r = sws_scale(d->sws, (const uint8_t *const *)f->data, f->linesize, 0, h, d->rgb_plane, d->rgb_linesize);
    if (r <= 0) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: cannot convert a frame", d->label);

    int rot = d->rotation;
    int ow = rot == 90 || rot == 270 ? h : w, oh = rot == 90 || rot == 270 ? w : h;
    uint8_t *rgb = malloc((size_t)w * (size_t)h * 3);
    if (!rgb) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory for a %dx%d frame", d->label, w, h);
    for (int y = 0; y < h; y++) {
        const uint8_t *src = d->rgb_plane[0] + (size_t)y * (size_t)d->rgb_linesize[0];
        for (int x = 0; x < w; x++) {
            int ox, oy; /* where source pixel (x, y) lands after rotating clockwise by rot */
            switch (rot) {
            case 90: ox = h - 1 - y; oy = x; break;
            case 180: ox = w - 1 - x; oy = h - 1 - y; break;
            case 270: ox = y; oy = w - 1 - x; break;
            default: ox = x; oy = y; break;
            }
            uint8_t *p = rgb + ((size_t)oy * (size_t)ow + (size_t)ox) * 3;
            p[0] = src[3 * x + 2];
            p[1] = src[3 * x + 1];
            p[2] = src[3 * x + 0];
        }
    }
    out->width = ow;
    out->height = oh;
    out->rgb = rgb;
    return 0;
}

/* One decoded frame: counted, and kept when it is the next one wanted. */
static int take_frame(vdec *d, g4_err *err) {
    int64_t idx = d->count++;
    if (d->count > d->max_decoded)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: more than %lld frames (the limit)", d->label,
                       (long long)d->max_decoded);
    while (d->next_want < d->n_want && d->want[d->next_want] < idx) d->next_want++; /* never: indices increase */
    if (d->next_want < d->n_want && d->want[d->next_want] == idx) {
        int r = convert_frame(d, d->frame, &d->frames[d->next_want], err);
        if (r) return r;
        d->next_want++;
    }
    return 0;
}

/* Every frame of the stream, in the order OpenCV's read loop sees them: a packet the decoder rejects ends the
 * video there (OpenCV's grabFrame gives up on a failed avcodec_send_packet), a read error ends it like the end
 * of the file (the decoder is flushed), and more than MAX_DECODE_ERRORS failed receives end it too. Like OpenCV,
 * at most nb_frames + 1 frames are read when the container states nb_frames. */
static int decode_pass(vdec *d, g4_err *err) {
    int flushing = 0;
    for (;;) {
        if (d->nb_frames > 0 && d->count > d->nb_frames) return 0;
        int r = avcodec_receive_frame(d->cc, d->frame);
        if (r >= 0) {
            d->decode_errors = 0;
            r = take_frame(d, err);
            av_frame_unref(d->frame);
            if (r) return r;
            continue;
        }
        if (r == AVERROR_EOF) return 0;
        if (r != AVERROR(EAGAIN)) {
            if (++d->decode_errors > MAX_DECODE_ERRORS) return 0;
            if (flushing) return 0;
        }
        if (flushing) return 0; /* drained */
        for (;;) {
            r = av_read_frame(d->fmt, d->pkt);
            if (r == AVERROR(EAGAIN)) continue;
            if (r < 0) break;
            if (d->pkt->stream_index == d->stream) break;
            av_packet_unref(d->pkt);
        }
        if (r < 0) {
            flushing = 1;
            r = avcodec_send_packet(d->cc, NULL);
        } else {
            r = avcodec_send_packet(d->cc, d->pkt);
            av_packet_unref(d->pkt);
        }
        if (r < 0 && r != AVERROR(EAGAIN)) return 0;
    }
}

/* Decodes the input once, keeping the frames at want[0..n_want) (increasing); *total gets the frame count. */
static int run_pass(vdec *d, const int32_t *want, int n_want, g4_image *frames, g4_err *err) {
    int r = open_input(d, err);
    if (r) return r;
    d->want = want;
    d->n_want = n_want;
    d->next_want = 0;
    d->frames = frames;
    d->count = 0;
    d->decode_errors = 0;
    return decode_pass(d, err);
}

static void free_frames(g4_image *frames, int n) {
    if (!frames) return;
    for (int i = 0; i < n; i++) free(frames[i].rgb);
    free(frames);
}

int g4_video_sample_indices(int64_t total_frames, int num_frames, double fps, double video_fps, int32_t *idx,
                            int max, g4_err *err) {
    if (total_frames < 1) return g4_fail(err, GEMMA4C_ERR_FORMAT, "video: no frames to sample");
    if (total_frames > INT32_MAX) return g4_fail(err, GEMMA4C_ERR_ARG, "video: too many frames");
    int64_t nf;
    if (fps > 0) {
        if (!(video_fps > 0)) return g4_fail(err, GEMMA4C_ERR_ARG, "video: sampling by fps needs the video's fps");
        double want = (double)total_frames / video_fps * fps; /* int(N / metadata.fps * fps) */
        nf = want >= (double)INT32_MAX ? INT32_MAX : (int64_t)want;
        if (nf < 1) nf = 1;
    } else {
        nf = num_frames > 0 ? num_frames : G4_VIDEO_DEFAULT_FRAMES;
    }
    if (nf > total_frames) nf = total_frames; /* the reference raises here; we take every frame */
    if (nf > G4_VIDEO_MAX_FRAMES)
        return g4_fail(err, GEMMA4C_ERR_ARG, "video: %lld frames to sample (at most %d)", (long long)nf,
                       G4_VIDEO_MAX_FRAMES);
    /* torch.arange(0, N, N / nf) in float32, then .int(): the length is ceil(N / step) in double, element i is
     * computed in double and rounded to float32 (for step = N/32 every value is exact). ATen fills blocks of 8
     * floats (AVX2) from a float32 base plus k * step in double; that is followed here so that non-dyadic steps
     * (the fps option) truncate the same way. */
    double n = (double)total_frames, step = n / (double)nf;
    int64_t len = (int64_t)ceil(n / step);
    int out = 0;
    for (int64_t i = 0; i < len && out < max; i++) {
        int64_t block = len - len % 16 > i ? i - i % 8 : i; /* the scalar tail computes each value itself */
        float base = (float)(step * (double)block);
        float v = (float)((double)base + (double)(i - block) * step);
        int64_t k = (int64_t)v;
        if (k < 0 || k >= total_frames) continue; /* the reference would fail indexing; such an index is dropped */
        if (out > 0 && k <= idx[out - 1]) continue;
        idx[out++] = (int32_t)k;
    }
    return out;
}

double g4_video_timestamp(int32_t index, double video_fps) {
    float fps = (float)(video_fps > 0 ? video_fps : G4_VIDEO_DEFAULT_FPS);
    return (double)((float)index / fps);
}

int g4_video_timestamp_text(double seconds, char out[16]) {
    /* Float32 floor division and remainder as torch computes them (fmod-based), so boundary values round alike. */
    float s = (float)seconds;
    if (!(s >= 0.0f) || !isfinite(s)) s = 0.0f;
    float mod = fmodf(s, 60.0f);
    float div = (s - mod) / 60.0f;
    float fl = floorf(div);
    if (div - fl > 0.5f) fl += 1.0f;
    double minutes = fl > 999999999.0f ? 999999999.0 : (double)fl;
    return snprintf(out, 16, "%02lld:%02d", (long long)minutes, (int)mod);
}

static int decode(vdec *d, const g4_video_decode_opts *opts, g4_video *out, g4_err *err) {
    av_log_set_level(AV_LOG_QUIET); /* FFmpeg would print to stderr; our caller gets one line instead */
    int num_frames = opts && opts->num_frames > 0 ? opts->num_frames : G4_VIDEO_DEFAULT_FRAMES;
    double fps_opt = opts && opts->fps > 0 && isfinite(opts->fps) ? opts->fps : 0.0;
    if (opts && (opts->num_frames < 0 || opts->num_frames > G4_VIDEO_MAX_FRAMES))
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: num_frames %d (1 to %d)", d->label, opts->num_frames,
                       G4_VIDEO_MAX_FRAMES);
    d->max_pixels = opts && opts->max_pixels ? opts->max_pixels : G4_VIDEO_DEFAULT_MAX_PIXELS;
    d->max_decoded = opts && opts->max_decoded_frames > 0 ? opts->max_decoded_frames : G4_VIDEO_DEFAULT_MAX_DECODED;
    d->threads = opts && opts->threads > 0 ? (opts->threads > 64 ? 64 : opts->threads) : 1;

    int32_t *want = malloc((G4_VIDEO_MAX_FRAMES + 1) * sizeof *want);
    int32_t *idx = malloc((G4_VIDEO_MAX_FRAMES + 1) * sizeof *idx);
    int cap = G4_VIDEO_MAX_FRAMES + 1; /* entries of `frames`; unused ones stay empty (calloc) */
    g4_image *frames = calloc((size_t)cap, sizeof *frames);
    int r = 0;
    if (!want || !idx || !frames) r = g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", d->label);
    /* First pass: sample for the frame count the container predicts (OpenCV's CAP_PROP_FRAME_COUNT). The true
     * count is only known at the end; when it samples differently, a second pass takes the right frames. */
    int n_want = 0, n = 0;
    if (!r) r = open_input(d, err);
    if (!r) {
        int64_t predicted = d->nb_frames;
        if (predicted <= 0 && d->fps > 0) predicted = (int64_t)floor(d->container_duration * d->fps + 0.5);
        if (predicted > 0 && predicted <= d->max_decoded) {
            g4_err ignored = {0};
            n_want = g4_video_sample_indices(predicted, num_frames, fps_opt, d->fps > 0 ? d->fps : G4_VIDEO_DEFAULT_FPS,
                                             want, cap, &ignored);
            if (n_want < 0) n_want = 0;
        }
        close_input(d);
        r = run_pass(d, want, n_want, frames, err);
    }
    int64_t total = d->count;
    double fps = d->fps > 0 ? d->fps : G4_VIDEO_DEFAULT_FPS;
    if (!r && total == 0) r = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: no decodable video frames", d->label);
    if (!r) {
        n = g4_video_sample_indices(total, num_frames, fps_opt, fps, idx, cap, err);
        if (n < 0) r = g4_err_prefix(err, "%s", d->label);
        else if (n == 0) r = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: no frames to sample", d->label);
    }
    if (!r && !(n == n_want && d->next_want == n_want && memcmp(idx, want, (size_t)n * sizeof *idx) == 0)) {
        for (int i = 0; i < cap; i++) { /* wrong frames: start over with the right indices */
            free(frames[i].rgb);
            frames[i].rgb = NULL;
        }
        close_input(d);
        r = run_pass(d, idx, n, frames, err);
        /* The same bytes decode the same way twice; anything else is a decoder that is not deterministic. */
        if (!r && (d->count != total || d->next_want != n))
            r = g4_fail(err, GEMMA4C_ERR_INTERNAL, "%s: the stream decoded differently on a second pass", d->label);
    }
    close_input(d);
    free(want);
    if (!r) {
        out->timestamps_s = malloc((size_t)n * sizeof *out->timestamps_s);
        if (!out->timestamps_s) r = g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", d->label);
    }
    if (r) {
        free_frames(frames, cap);
        free(idx);
        return r;
    }
    g4_image *fs = realloc(frames, (size_t)n * sizeof *frames); /* frames past n are empty: give them back */
    if (fs) frames = fs;
    int32_t *is = realloc(idx, (size_t)n * sizeof *idx);
    if (is) idx = is;
    for (int i = 0; i < n; i++) out->timestamps_s[i] = g4_video_timestamp(idx[i], fps);
    out->frame_indices = idx;
    out->frames = frames;
    out->n_frames = n;
    out->total_frames = total;
    out->fps = fps;
    out->duration_s = (double)total / fps;
    return 0;
}

int g4_video_decode_memory(const void *data, size_t size, const char *label, const g4_video_decode_opts *opts,
                           g4_video *out, g4_err *err) {
    if (!out) return g4_fail(err, GEMMA4C_ERR_ARG, "video: no output");
    memset(out, 0, sizeof *out);
    vdec d;
    memset(&d, 0, sizeof d);
    d.label = label && *label ? label : "video";
    if (!data || size == 0) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: empty input", d.label);
    d.src.data = data;
    d.src.size = size;
    return decode(&d, opts, out, err);
}

int g4_video_decode_file(const char *path, const g4_video_decode_opts *opts, g4_video *out, g4_err *err) {
    if (!out) return g4_fail(err, GEMMA4C_ERR_ARG, "video: no output");
    memset(out, 0, sizeof *out);
    if (!path) return g4_fail(err, GEMMA4C_ERR_ARG, "video: no path");
    vdec d;
    memset(&d, 0, sizeof d);
    d.label = path;
    int r = g4_media_source_open_file(&d.src, path, err);
    if (r) return r;
    r = decode(&d, opts, out, err);
    g4_media_source_close(&d.src);
    return r;
}

void g4_video_free(g4_video *v) {
    if (!v) return;
    free_frames(v->frames, v->n_frames);
    free(v->timestamps_s);
    free(v->frame_indices);
    memset(v, 0, sizeof *v);
}
