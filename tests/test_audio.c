/* test_audio.c — audio decoding (every format, hostile files, 10 minutes in bounded memory) and the log-mel front end against golden data. */
#include <stdint.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>

#include "core/buf.h"
#include "core/mapfile.h"
#include "golden_util.h"
#include "media/audio.h"
#include "test.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Agreement with transformers' features: the spec measured ~5e-7 for a double-precision FFT after the float32
 * window product; 1e-5 absolute leaves room for other libm/FFT orders, and is still 200x below what computing
 * the window product in double costs (1.1e-4). */
#define FEATURE_TOL 1e-5

static int one_line(const char *msg) { return msg[0] != '\0' && strchr(msg, '\n') == NULL; }

/* ---------------------------------------------------------------- features and token counts vs golden */

static void test_golden_features(const char *golden) {
    static const char *names[] = {"speech", "tone", "long"};
    for (int i = 0; i < 3; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/tiny/reference/audio_%s.safetensors", golden, names[i]);
        g4_st_file *f = NULL;
        g4_err err = {0};
        if (g4_st_open(path, &f, &err) != 0) {
            CHECK(0, "%s", err.msg);
            continue;
        }
        int64_t nw, nf, nm, ntm;
        float *wave = g4t_tensor_f32(f, "waveform", &nw);
        float *feat = g4t_tensor_f32(f, "input_features", &nf);
        float *mask = g4t_tensor_f32(f, "input_features_mask", &nm);
        float *tmask = g4t_tensor_f32(f, "audio_token_mask", &ntm);
        const g4_tensor *af = g4_st_find(f, "audio_features");
        CHECK(af && af->ndim == 2, "audio_features missing");

        g4_audio_features_out o;
        int rc = g4_audio_features(wave, (size_t)nw, &o, &err);
        CHECK(rc == 0, "%s: %s", names[i], err.msg);
        if (rc == 0) {
            CHECK((int64_t)o.n_frames == nm && (int64_t)o.n_frames * G4_AUDIO_MEL_BINS == nf,
                  "%s: %zu frames, golden %lld", names[i], o.n_frames, (long long)nm);
            CHECK(o.n_frames == g4_audio_frame_count((size_t)nw), "%s: frame count function", names[i]);
            double worst = 0, worst_rel = 0;
            int64_t n = (int64_t)o.n_frames * G4_AUDIO_MEL_BINS < nf ? (int64_t)o.n_frames * G4_AUDIO_MEL_BINS : nf;
            for (int64_t k = 0; k < n; k++) {
                double e = fabs((double)o.features[k] - (double)feat[k]);
                if (!(e <= worst)) worst = e;
                double r = e / fmax(fabs((double)feat[k]), 1.0);
                if (r > worst_rel) worst_rel = r;
            }
            CHECK(worst <= FEATURE_TOL, "%s: input_features max |diff| %.3g > %g", names[i], worst, FEATURE_TOL);
            size_t mask_bad = 0, golden_valid = 0;
            for (int64_t t = 0; t < nm && t < (int64_t)o.n_frames; t++) {
                if ((o.mask[t] != 0) != (mask[t] != 0)) mask_bad++;
                golden_valid += mask[t] != 0;
            }
            CHECK(mask_bad == 0, "%s: %zu mask entries differ", names[i], mask_bad);
            CHECK(o.n_valid == golden_valid, "%s: %zu valid frames, golden %zu", names[i], o.n_valid, golden_valid);
            size_t golden_tokens = 0;
            for (int64_t t = 0; t < ntm; t++) golden_tokens += tmask[t] != 0;
            CHECK(o.n_tokens == golden_tokens, "%s: %zu tokens, golden mask %zu", names[i], o.n_tokens, golden_tokens);
            if (af) CHECK((int64_t)o.n_tokens == af->shape[0], "%s: tokens vs audio_features rows %lld", names[i],
                          (long long)af->shape[0]);
            CHECK(g4_audio_soft_token_count((size_t)nw) == golden_tokens, "%s: soft token count", names[i]);
            printf("golden %-6s: %lld samples -> %zu frames (%zu valid) -> %zu tokens; input_features max |diff| "
                   "%.3g (max |diff|/max(1,|ref|) %.3g)\n",
                   names[i], (long long)nw, o.n_frames, o.n_valid, o.n_tokens, worst, worst_rel);
        }
        g4_audio_features_free(&o);
        free(wave);
        free(feat);
        free(mask);
        free(tmask);
        g4_st_close(f);
    }
}

static long floor_div(long a, long b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* The processor's count, re-derived literally: truncate, pad to 128, 160 zeros in front, 321-sample windows every
 * 160, mask = the window's last sample is real audio, then twice mask = mask[::2][:(t + 2 - 3) // 2 + 1]. */
static size_t reference_tokens(size_t n, size_t *frames_out) {
    long L = (long)(n > 480000 ? 480000 : n);
    long padded = (L + 127) / 128 * 128 + 160;
    long T = floor_div(padded - 321, 160) + 1;
    if (T < 0) T = 0;
    unsigned char *m = malloc((size_t)T + 1);
    for (long t = 0; t < T; t++) {
        long idx = t * 160 + 320; /* in the left-padded signal */
        m[t] = idx >= 160 && idx - 160 < L;
    }
    long len = T;
    for (int round = 0; round < 2; round++) {
        long out = floor_div(len + 2 - 3, 2) + 1;
        long halved = (len + 1) / 2;
        for (long i = 0; i < halved; i++) m[i] = m[2 * i];
        len = halved < out ? halved : out;
    }
    size_t sum = 0;
    for (long i = 0; i < len; i++) sum += m[i];
    free(m);
    if (frames_out) *frames_out = (size_t)T;
    return sum;
}

static void test_token_counts(void) {
    /* Values from the spec (HF's own test expectations and the golden data) */
    static const struct { size_t n, frames, tokens; } known[] = {
        {16000, 99, 25},     {108433, 678, 170}, {480000, 2999, 750}, {560000, 2999, 750}, {640000, 2999, 750},
        {38560, (size_t)-1, 60}, {48000, (size_t)-1, 75}, {48800, (size_t)-1, 76}, {99360, (size_t)-1, 155},
        {80000, (size_t)-1, 125}, {1600, 10, 3},   {0, 0, 0},          {1, 0, 0},          {128, 0, 0},
        {160, 1, 0},         {161, 1, 1},        {320, 2, 1},        {321, 2, 1},         {641, 4, 1},
        {800, 5, 1},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        size_t tok = g4_audio_soft_token_count(known[i].n);
        CHECK(tok == known[i].tokens, "%zu samples: %zu tokens, want %zu", known[i].n, tok, known[i].tokens);
        if (known[i].frames != (size_t)-1)
            CHECK(g4_audio_frame_count(known[i].n) == known[i].frames, "%zu samples: %zu frames, want %zu",
                  known[i].n, g4_audio_frame_count(known[i].n), known[i].frames);
    }
    size_t bad = 0;
    for (size_t n = 0; n < 700000; n += (n < 20000 ? 1 : 997)) {
        size_t frames, want = reference_tokens(n, &frames);
        if (g4_audio_soft_token_count(n) != want || g4_audio_frame_count(n) != frames) {
            if (bad++ < 5) CHECK(0, "%zu samples: %zu tokens / %zu frames, processor rule %zu / %zu", n,
                                 g4_audio_soft_token_count(n), g4_audio_frame_count(n), want, frames);
        }
    }
    CHECK(bad == 0, "%zu sample counts disagree with the processor's rule", bad);

    /* The features' own counts agree, for short clips too (0.1 s and below one token). */
    static const size_t lens[] = {0, 1, 100, 160, 161, 1600, 1601, 4000};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        float *w = calloc(lens[i] + 1, sizeof(float));
        for (size_t k = 0; k < lens[i]; k++) w[k] = (float)(0.1 * sin(0.05 * (double)k));
        g4_audio_features_out o;
        g4_err err = {0};
        CHECK(g4_audio_features(w, lens[i], &o, &err) == 0, "%s", err.msg);
        CHECK(o.n_frames == g4_audio_frame_count(lens[i]) && o.n_tokens == g4_audio_soft_token_count(lens[i]),
              "%zu samples: counts differ between features and count functions", lens[i]);
        for (size_t t = 0; t < o.n_frames; t++) CHECK(o.mask[t] == (t < o.n_valid), "mask not a prefix");
        g4_audio_features_free(&o);
        free(w);
    }
}

static void test_silence(void) {
    float *w = calloc(16000, sizeof(float));
    g4_audio_features_out o;
    g4_err err = {0};
    CHECK(g4_audio_features(w, 16000, &o, &err) == 0, "%s", err.msg);
    size_t bad = 0;
    for (size_t k = 0; k < o.n_frames * G4_AUDIO_MEL_BINS; k++) bad += o.features[k] != (float)log(1e-3);
    CHECK(o.n_frames == 99 && bad == 0, "silence: %zu values are not log(1e-3)", bad);
    g4_audio_features_free(&o);
    free(w);
}

static void test_split(void) {
    enum { CAP = 128 };
    g4_audio_segment s[CAP];
    CHECK(g4_audio_split(0, s, CAP) == 0, "empty");
    CHECK(g4_audio_split(480000, s, CAP) == 1 && s[0].start == 0 && s[0].length == 480000, "30 s is one segment");
    CHECK(g4_audio_split(1600, s, CAP) == 1 && s[0].length == 1600, "short is one segment");
    CHECK(g4_audio_split(560000, s, CAP) == 2 && s[0].length == 280320 && s[1].length == 279680, "35 s halves");
    CHECK(g4_audio_split(9600000, s, CAP) == 20 && s[19].length == 480000, "10 min: 20 x 30 s");
    CHECK(g4_audio_split(480001, s, 1) == 2 && s[0].length == 240640, "cap limits what is written");
    CHECK(g4_audio_split(480001, NULL, 0) == 2, "count without output");
    uint64_t x = 12345;
    for (int it = 0; it < 2000; it++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t n = (size_t)(x >> 33) % 40000000 + 1;
        size_t k = g4_audio_split(n, s, CAP);
        size_t want = (n + 479999) / 480000;
        int ok = k == want && k <= CAP;
        size_t pos = 0, tokens = 0;
        for (size_t i = 0; ok && i < k; i++) {
            ok = s[i].start == pos && s[i].length >= 1 && s[i].length <= 480000 &&
                 (i + 1 == k || s[i].length % 640 == 0);
            if (i + 1 < k) ok = ok && g4_audio_soft_token_count(s[i].length) == s[i].length / 640;
            pos += s[i].length;
            tokens += g4_audio_soft_token_count(s[i].length);
        }
        ok = ok && pos == n && tokens <= n / 640 + 1;
        if (!ok) {
            CHECK(0, "split of %zu samples breaks the rule (%zu segments)", n, k);
            break;
        }
    }
}

/* ---------------------------------------------------------------- WAV building */

static void put16(g4_buf *b, unsigned v) {
    unsigned char c[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    g4_buf_append(b, c, 2);
}
static void put32(g4_buf *b, uint32_t v) {
    unsigned char c[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    g4_buf_append(b, c, 4);
}

/* A canonical RIFF/WAVE file; `declared` overrides the data chunk's size field when non-zero. */
static void wav_make(g4_buf *b, int tag, int channels, uint32_t rate, int bits, const void *data, size_t bytes,
                     uint32_t declared) {
    g4_buf_reset(b);
    g4_buf_append(b, "RIFF", 4);
    put32(b, (uint32_t)(36 + bytes));
    g4_buf_append(b, "WAVEfmt ", 8);
    put32(b, 16);
    put16(b, (unsigned)tag);
    put16(b, (unsigned)channels);
    put32(b, rate);
    put32(b, rate * (uint32_t)channels * (uint32_t)bits / 8);
    put16(b, (unsigned)(channels * bits / 8));
    put16(b, (unsigned)bits);
    g4_buf_append(b, "data", 4);
    put32(b, declared ? declared : (uint32_t)bytes);
    if (bytes) g4_buf_append(b, data, bytes);
}

static double test_signal(size_t i, int ch, uint32_t rate) {
    double t = (double)i / rate;
    return ch == 0 ? 0.6 * sin(2 * M_PI * 440 * t) : 0.2 * sin(2 * M_PI * 440 * t + 0.3) + 0.05;
}

/* Every PCM flavour at 16 kHz decodes to exactly what numpy/soundfile would read; stereo is the float32 mean. */
static void test_wav_pcm(void) {
    const size_t n = 4000;
    static const struct { int tag, bits; } kinds[] = {{1, 8}, {1, 16}, {1, 24}, {1, 32}, {3, 32}, {3, 64}};
    g4_buf b = {0};
    unsigned char *raw = malloc(n * 2 * 8);
    float *want = malloc(n * sizeof(float));
    for (size_t kind = 0; kind < sizeof kinds / sizeof kinds[0]; kind++) {
        for (int channels = 1; channels <= 2; channels++) {
            int bits = kinds[kind].bits, bytes = bits / 8;
            for (size_t i = 0; i < n; i++) {
                float acc = 0;
                for (int c = 0; c < channels; c++) {
                    double v = test_signal(i, c, 16000);
                    unsigned char *p = raw + (i * (size_t)channels + (size_t)c) * (size_t)bytes;
                    float f;
                    if (kinds[kind].tag == 3 && bits == 32) {
                        f = (float)v;
                        memcpy(p, &f, 4);
                    } else if (kinds[kind].tag == 3) {
                        memcpy(p, &v, 8);
                        f = (float)v;
                    } else {
                        int64_t q = (int64_t)llround(v * (double)(1LL << (bits - 1)));
                        if (q >= (1LL << (bits - 1))) q = (1LL << (bits - 1)) - 1;
                        if (bits == 8) {
                            p[0] = (unsigned char)(q + 128);
                            f = (float)q / 128.0f;
                        } else {
                            for (int k = 0; k < bytes; k++) p[k] = (unsigned char)((uint64_t)q >> (8 * k));
                            f = bits == 32 ? (float)q * (1.0f / 2147483648.0f) : (float)((double)q / (double)(1LL << (bits - 1)));
                        }
                    }
                    acc = c ? acc + f : f;
                }
                want[i] = channels > 1 ? acc / (float)channels : acc;
            }
            wav_make(&b, kinds[kind].tag, channels, 16000, bits, raw, n * (size_t)channels * (size_t)bytes, 0);
            g4_audio a;
            g4_err err = {0};
            int rc = g4_audio_decode_memory(b.data, b.len, "pcm", NULL, &a, &err);
            CHECK(rc == 0, "%s %d-bit x%d: %s", kinds[kind].tag == 3 ? "float" : "int", bits, channels, err.msg);
            if (rc) continue;
            size_t diff = 0;
            for (size_t i = 0; i < n && i < a.n; i++) diff += a.samples[i] != want[i];
            CHECK(a.n == n && diff == 0 && a.src_channels == channels && strcmp(a.resampler, "none") == 0,
                  "%s %d-bit x%d: %zu samples, %zu differ", kinds[kind].tag == 3 ? "float" : "int", bits, channels,
                  a.n, diff);
            g4_audio_free(&a);
        }
    }
    free(raw);
    free(want);
    g4_buf_free(&b);
}

/* ---------------------------------------------------------------- compressed formats, made with libavcodec */

#if LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(59, 37, 100)
static void fill_frame(AVFrame *fr, size_t first, size_t total, int channels, int rate) {
    int planar = av_sample_fmt_is_planar(fr->format);
    enum AVSampleFormat fmt = av_get_packed_sample_fmt(fr->format);
    for (int i = 0; i < fr->nb_samples; i++) {
        for (int c = 0; c < channels; c++) {
            size_t k = first + (size_t)i;
            double v = k < total ? test_signal(k, c, (uint32_t)rate) : 0.0;
            uint8_t *base = planar ? fr->extended_data[c] : fr->extended_data[0];
            size_t idx = planar ? (size_t)i : (size_t)i * (size_t)channels + (size_t)c;
            if (fmt == AV_SAMPLE_FMT_FLT)
                ((float *)base)[idx] = (float)v;
            else if (fmt == AV_SAMPLE_FMT_S16)
                ((int16_t *)base)[idx] = (int16_t)lrint(v * 32767);
            else if (fmt == AV_SAMPLE_FMT_S32)
                ((int32_t *)base)[idx] = (int32_t)lrint(v * 2147483647.0);
            else if (fmt == AV_SAMPLE_FMT_DBL)
                ((double *)base)[idx] = v;
        }
    }
}

static int drain(AVCodecContext *ec, AVFormatContext *oc, AVStream *st, AVPacket *pkt) {
    int r;
    while ((r = avcodec_receive_packet(ec, pkt)) == 0) {
        av_packet_rescale_ts(pkt, ec->time_base, st->time_base);
        pkt->stream_index = st->index;
        if (av_interleaved_write_frame(oc, pkt) < 0) return -1;
    }
    return r == AVERROR(EAGAIN) || r == AVERROR_EOF ? 0 : -1;
}

/* Writes `seconds` of the test signal with `encoder` into `muxer` at `path`, with a small MPEG-4 video track when
 * asked. Returns 0, 1 when this FFmpeg lacks the encoder, -1 on failure. */
static int encode_file(const char *path, const char *muxer, const char *encoder, int rate, int channels,
                       double seconds, int with_video) {
    const AVCodec *ac = avcodec_find_encoder_by_name(encoder);
    const AVCodec *vc = with_video ? avcodec_find_encoder(AV_CODEC_ID_MPEG4) : NULL;
    if (!ac || (with_video && !vc)) return 1;
    AVFormatContext *oc = NULL;
    if (avformat_alloc_output_context2(&oc, NULL, muxer, path) < 0) return 1;
    int ok = -1;
    AVCodecContext *ec = avcodec_alloc_context3(ac), *vec = NULL;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *fr = av_frame_alloc();
    AVStream *as = avformat_new_stream(oc, NULL), *vs = NULL;
    ec->sample_rate = rate;
    av_channel_layout_default(&ec->ch_layout, channels);
    ec->sample_fmt = ac->sample_fmts ? ac->sample_fmts[0] : AV_SAMPLE_FMT_FLTP;
    ec->bit_rate = channels == 1 ? 64000 : 128000;
    ec->time_base = (AVRational){1, rate};
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) ec->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (avcodec_open2(ec, ac, NULL) < 0) goto done;
    avcodec_parameters_from_context(as->codecpar, ec);
    as->time_base = ec->time_base;
    if (vc) {
        vec = avcodec_alloc_context3(vc);
        vec->width = 32, vec->height = 32, vec->pix_fmt = AV_PIX_FMT_YUV420P;
        vec->time_base = (AVRational){1, 5};
        vec->framerate = (AVRational){5, 1};
        vec->gop_size = 5;
        if (oc->oformat->flags & AVFMT_GLOBALHEADER) vec->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
        if (avcodec_open2(vec, vc, NULL) < 0) goto done;
        vs = avformat_new_stream(oc, NULL);
        avcodec_parameters_from_context(vs->codecpar, vec);
        vs->time_base = vec->time_base;
    }
    if (avio_open(&oc->pb, path, AVIO_FLAG_WRITE) < 0) goto done;
    if (avformat_write_header(oc, NULL) < 0) goto done;

    size_t total = (size_t)(seconds * rate);
    int fsize = ec->frame_size > 0 ? ec->frame_size : 1024;
    int small_last = (ac->capabilities & (AV_CODEC_CAP_SMALL_LAST_FRAME | AV_CODEC_CAP_VARIABLE_FRAME_SIZE)) != 0;
    int nvideo = vc ? (int)(seconds * 5) : 0, vdone = 0;
    for (size_t first = 0; first < total; first += (size_t)fsize) {
        av_frame_unref(fr);
        size_t left = total - first;
        fr->nb_samples = (int)(small_last && left < (size_t)fsize ? left : (size_t)fsize);
        fr->format = ec->sample_fmt;
        fr->sample_rate = rate;
        av_channel_layout_copy(&fr->ch_layout, &ec->ch_layout);
        if (av_frame_get_buffer(fr, 0) < 0) goto done;
        fill_frame(fr, first, total, channels, rate);
        fr->pts = (int64_t)first;
        if (avcodec_send_frame(ec, fr) < 0 || drain(ec, oc, as, pkt) < 0) goto done;
        /* Keep the video roughly in step so the muxer's interleaving queue stays short. */
        while (vec && vdone < nvideo && (double)vdone / 5 <= (double)first / rate) {
            AVFrame *vf = av_frame_alloc();
            vf->format = AV_PIX_FMT_YUV420P, vf->width = 32, vf->height = 32;
            av_frame_get_buffer(vf, 0);
            for (int p = 0; p < 3; p++) memset(vf->data[p], 60 + 10 * vdone, (size_t)vf->linesize[p] * (p ? 16 : 32));
            vf->pts = vdone++;
            int r = avcodec_send_frame(vec, vf);
            av_frame_free(&vf);
            if (r < 0 || drain(vec, oc, vs, pkt) < 0) goto done;
        }
    }
    if (avcodec_send_frame(ec, NULL) < 0 || drain(ec, oc, as, pkt) < 0) goto done;
    if (vec && (avcodec_send_frame(vec, NULL) < 0 || drain(vec, oc, vs, pkt) < 0)) goto done;
    if (av_write_trailer(oc) < 0) goto done;
    ok = 0;
done:
    if (oc->pb) avio_closep(&oc->pb);
    avformat_free_context(oc);
    avcodec_free_context(&ec);
    avcodec_free_context(&vec);
    av_packet_free(&pkt);
    av_frame_free(&fr);
    return ok;
}

/* Amplitude of the 440 Hz component over [from, from + len). */
static double amplitude_440(const float *x, size_t from, size_t len) {
    double s = 0, c = 0;
    for (size_t i = from; i < from + len; i++) {
        double ph = 2 * M_PI * 440 * (double)i / 16000;
        s += x[i] * sin(ph), c += x[i] * cos(ph);
    }
    return 2.0 / (double)len * sqrt(s * s + c * c);
}

static void test_encoded_formats(void) {
    static const struct {
        const char *name, *muxer, *encoder, *ext;
        int rate, channels, video, lossless;
    } cases[] = {
        {"FLAC 16 kHz mono", "flac", "flac", "flac", 16000, 1, 0, 1},
        {"FLAC 44.1 kHz stereo", "flac", "flac", "flac", 44100, 2, 0, 0},
        {"MP3 44.1 kHz stereo", "mp3", "libmp3lame", "mp3", 44100, 2, 0, 0},
        {"Ogg Vorbis 22.05 kHz", "ogg", "libvorbis", "ogg", 22050, 1, 0, 0},
        {"Ogg Opus 48 kHz stereo", "ogg", "libopus", "opus", 48000, 2, 0, 0},
        {"M4A AAC 44.1 kHz", "ipod", "aac", "m4a", 44100, 2, 0, 0},
        {"ADTS AAC 32 kHz", "adts", "aac", "aac", 32000, 1, 0, 0},
        {"MP4 video + AAC", "mp4", "aac", "mp4", 48000, 2, 1, 0},
        {"Matroska video + Opus", "matroska", "libopus", "mkv", 48000, 1, 1, 0},
    };
    const double seconds = 2.0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* Mono is test_signal's channel 0; the stereo mix is 0.3 sin(440) + 0.1 sin(440 + 0.3) + 0.025. */
        double want_amp = cases[i].channels == 1 ? 0.6 : sqrt(pow(0.3 + 0.1 * cos(0.3), 2) + pow(0.1 * sin(0.3), 2));
        char path[256];
        snprintf(path, sizeof path, "/tmp/g4_test_audio_%d_%zu.%s", (int)getpid(), i, cases[i].ext);
        int enc = encode_file(path, cases[i].muxer, cases[i].encoder, cases[i].rate, cases[i].channels, seconds,
                              cases[i].video);
        if (enc == 1) {
            printf("%s: encoder or muxer missing in this FFmpeg, not tested\n", cases[i].name);
            unlink(path);
            continue;
        }
        CHECK(enc == 0, "%s: could not make the test file", cases[i].name);
        g4_audio a, m;
        g4_err err = {0};
        int rc = g4_audio_decode_file(path, NULL, &a, &err);
        CHECK(rc == 0, "%s: %s", cases[i].name, err.msg);
        char *bytes = NULL;
        size_t len = 0;
        if (rc == 0 && g4_read_file(path, 64u << 20, &bytes, &len, &err) == 0) {
            int rm = g4_audio_decode_memory(bytes, len, cases[i].name, NULL, &m, &err);
            CHECK(rm == 0, "%s from memory: %s", cases[i].name, err.msg);
            if (rm == 0) {
                CHECK(m.n == a.n && memcmp(m.samples, a.samples, a.n * sizeof(float)) == 0,
                      "%s: file and memory decodes differ", cases[i].name);
                g4_audio_free(&m);
            }
        }
        free(bytes);
        unlink(path);
        if (rc) continue;
        size_t want_n = (size_t)(seconds * 16000);
        long dn = (long)a.n - (long)want_n;
        CHECK(labs(dn) <= 1600, "%s: %zu samples for %.1f s", cases[i].name, a.n, seconds);
        CHECK(a.src_rate == cases[i].rate && a.src_channels == cases[i].channels, "%s: source %d Hz x%d",
              cases[i].name, a.src_rate, a.src_channels);
        if (a.n >= 24000) {
            double amp = amplitude_440(a.samples, 8000, 16000);
            CHECK(fabs(amp - want_amp) < 0.1 * want_amp, "%s: 440 Hz amplitude %.4f, want %.4f", cases[i].name,
                  amp, want_amp);
            printf("%-24s %6zu samples (resampler %s), 440 Hz amplitude %.4f (signal %.4f)\n", cases[i].name, a.n,
                   a.resampler, amp, want_amp);
        }
        if (cases[i].lossless) {
            size_t diff = 0;
            for (size_t k = 0; k < a.n; k++)
                diff += a.samples[k] != (float)lrint(test_signal(k, 0, 16000) * 32767) / 32768.0f;
            CHECK(a.n == want_n && diff == 0, "%s: %zu samples differ from the source", cases[i].name, diff);
        }
        g4_audio_free(&a);
    }
}
#else
static void test_encoded_formats(void) { printf("FFmpeg older than 5.1: compressed-format tests not built\n"); }
#endif

/* ---------------------------------------------------------------- golden media */

static void test_golden_media(const char *golden) {
    char path[4200], ref[4200];
    snprintf(ref, sizeof ref, "%s/tiny/reference/audio_speech.safetensors", golden);
    g4_st_file *f = NULL;
    g4_err err = {0};
    if (g4_st_open(ref, &f, &err) != 0) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int64_t nw, nf;
    float *wave = g4t_tensor_f32(f, "waveform", &nw);
    float *feat = g4t_tensor_f32(f, "input_features", &nf);

    g4_audio a;
    snprintf(path, sizeof path, "%s/media/speech_16k.wav", golden);
    int rc = g4_audio_decode_file(path, NULL, &a, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc == 0) {
        size_t diff = 0;
        for (int64_t i = 0; i < nw && (size_t)i < a.n; i++) diff += a.samples[i] != wave[i];
        CHECK((int64_t)a.n == nw && diff == 0, "speech_16k.wav: %zu samples (golden %lld), %zu differ", a.n,
              (long long)nw, diff);
        printf("speech_16k.wav: %zu samples, identical to the golden waveform: %s\n", a.n, diff == 0 ? "yes" : "NO");
        g4_audio_free(&a);
    }

    snprintf(path, sizeof path, "%s/media/speech_44k_stereo.wav", golden);
    rc = g4_audio_decode_file(path, NULL, &a, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc == 0) {
        /* librosa.load(path, sr=16000) — transformers' load_audio without torchcodec — is soundfile + float32
         * channel mean + python-soxr "HQ" + fix_length(ceil(n * 16000 / 44100)). These values were computed that
         * way with libsoxr 0.1.3 (soxr_create/soxr_process in 48000-output chunks, as python-soxr does). */
        static const size_t at[] = {5000, 22891, 30000, 60000, 90000, 108000};
        static const float soxr_hq[] = {-0.253650039f, 0.764361382f, -0.211164653f, -0.0399107523f, 0.172809392f,
                                        -8.44450642e-06f};
        const double soxr_sumsq = 915.396239;
        CHECK(a.n == 108433 && a.src_rate == 44100 && a.src_channels == 2, "44k stereo: %zu samples, %d Hz x%d",
              a.n, a.src_rate, a.src_channels);
        double sumsq = 0, worst_ref = 0, worst_wave = 0, sq = 0;
        for (size_t i = 0; i < a.n; i++) sumsq += (double)a.samples[i] * a.samples[i];
        for (size_t i = 0; i < 6 && at[i] < a.n; i++) {
            double e = fabs((double)a.samples[at[i]] - soxr_hq[i]);
            if (e > worst_ref) worst_ref = e;
        }
        for (int64_t i = 0; i < nw && (size_t)i < a.n; i++) {
            double e = fabs((double)a.samples[i] - wave[i]);
            if (e > worst_wave) worst_wave = e;
            sq += e * e;
        }
        /* swresample's own filter, used where FFmpeg lacks soxr, is not the reference's: it is held to what it
         * measured here (values 7.9e-4 off, sum of squares 0.20 off), with headroom. */
        const int soxr = strcmp(a.resampler, "soxr") == 0;
        const double ref_tol = soxr ? 1e-6 : 2e-3, sumsq_tol = soxr ? 1e-3 : 0.5;
        CHECK(worst_ref < ref_tol && fabs(sumsq - soxr_sumsq) < sumsq_tol,
              "44k stereo (%s) vs soxr HQ: max |diff| %.3g (tolerance %g), sumsq %.9g (tolerance %g)", a.resampler,
              worst_ref, ref_tol, sumsq, sumsq_tol);
        /* The 44.1 kHz file is the 16 kHz speech upsampled: coming back down must land close to it (swresample's
         * own filter, used where FFmpeg lacks soxr, rolls off earlier: 0.02 on this file). */
        double wave_tol = soxr ? 1e-3 : 0.05;
        CHECK(worst_wave < wave_tol, "44k stereo vs the 16 kHz speech: max |diff| %.3g", worst_wave);
        /* Its log-mel against the golden speech features: the round trip through 44.1 kHz moves the quietest bins
         * most (log of a tiny energy). Measured 0.84 with soxr and 2.66 with swresample; tolerances 1.2 and 4. */
        g4_audio_features_out o;
        double worst_feat = 0;
        const double feat_tol = soxr ? 1.2 : 4.0;
        int frc = g4_audio_features(a.samples, a.n, &o, &err);
        CHECK(frc == 0, "44k stereo features: %s", err.msg);
        if (frc == 0) {
            for (int64_t k = 0; k < nf && k < (int64_t)(o.n_frames * G4_AUDIO_MEL_BINS); k++) {
                double e = fabs((double)o.features[k] - feat[k]);
                if (!(e <= worst_feat)) worst_feat = e; /* a NaN is the worst */
            }
            CHECK(o.n_tokens == 170, "44k stereo: %zu tokens, the 16 kHz file has 170", o.n_tokens);
            CHECK(worst_feat <= feat_tol, "44k stereo (%s): log-mel vs the golden speech max |diff| %.3g > %g",
                  a.resampler, worst_feat, feat_tol);
            g4_audio_features_free(&o);
        }
        printf("speech_44k_stereo.wav: %zu samples via %s; vs librosa/soxr-HQ reference values max |diff| %.3g "
               "(sum of squares %.6f vs %.6f); vs the 16 kHz speech waveform max |diff| %.3g, rms %.3g; log-mel vs "
               "golden speech input_features max |diff| %.3g\n",
               a.n, a.resampler, worst_ref, sumsq, soxr_sumsq, worst_wave, sqrt(sq / (double)a.n), worst_feat);
        g4_audio_free(&a);
    }

    /* Non-audio media of the golden set. */
    static const char *other[] = {"chelsea.png", "coffee.jpg", "clip.mp4"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/media/%s", golden, other[i]);
        rc = g4_audio_decode_file(path, NULL, &a, &err);
        CHECK(rc != 0 && one_line(err.msg), "%s decoded as audio", other[i]);
        if (rc == 0) g4_audio_free(&a);
        else printf("%s -> %s\n", other[i], err.msg);
    }
    free(wave);
    free(feat);
    g4_st_close(f);
}

/* ---------------------------------------------------------------- hostile input */

typedef struct outcome {
    char what[64];
    int rc;
    size_t n;
    char msg[512];
} outcome;

static void try_decode(outcome *o, const char *what, const void *data, size_t size) {
    g4_audio a;
    g4_err err = {0};
    g4_audio_decode_opts opts = {16000 * 60}; /* a minute, so nothing hostile can ask for much */
    snprintf(o->what, sizeof o->what, "%s", what);
    o->rc = g4_audio_decode_memory(data, size, what, &opts, &a, &err);
    o->n = o->rc == 0 ? a.n : 0;
    snprintf(o->msg, sizeof o->msg, "%s", o->rc ? err.msg : "");
    if (o->rc == 0) g4_audio_free(&a);
}

static void test_hostile(const char *golden) {
    enum { MAX_OUT = 4096 };
    outcome *res = calloc(MAX_OUT, sizeof *res);
    size_t nres = 0;
    g4_buf b = {0};

    /* A good 0.5 s WAV to cut up. */
    const size_t n = 8000;
    int16_t *pcm = malloc(n * sizeof(int16_t));
    for (size_t i = 0; i < n; i++) pcm[i] = (int16_t)lrint(test_signal(i, 0, 16000) * 32767);
    wav_make(&b, 1, 1, 16000, 16, pcm, n * 2, 0);
    size_t good_len = b.len;
    unsigned char *good = malloc(good_len);
    memcpy(good, b.data, good_len);

    /* FFmpeg must stay quiet: everything it might print goes to a file we inspect. */
    fflush(stderr);
    int saved = dup(2);
    FILE *cap = tmpfile();
    if (cap) dup2(fileno(cap), 2);

    size_t truncated_first = nres;
    for (size_t cut = 0; cut < good_len; cut += (cut < 64 ? 1 : 397)) {
        char what[64];
        snprintf(what, sizeof what, "WAV cut at %zu", cut);
        try_decode(&res[nres++], what, good, cut);
    }
    size_t truncated_end = nres;
    try_decode(&res[nres++], "intact WAV", good, good_len);
    size_t intact = nres - 1;

    unsigned char *junk = malloc(65536);
    uint64_t x = 99;
    for (int seed = 0; seed < 8; seed++) {
        for (size_t i = 0; i < 65536; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            junk[i] = (unsigned char)(x >> 56);
        }
        char what[64];
        snprintf(what, sizeof what, "random bytes #%d", seed);
        try_decode(&res[nres++], what, junk, 65536);
    }
    size_t junk_end = nres;
    memset(junk, 0, 65536);
    try_decode(&res[nres++], "64 KiB of zeros", junk, 65536);
    try_decode(&res[nres++], "zero bytes", junk, 0);
    try_decode(&res[nres++], "NULL", NULL, 10);
    const char *text = "This is a plain text file.\nIt has a few lines,\nand nothing in it is audio.\n";
    try_decode(&res[nres++], "text", text, strlen(text));
    /* WAV-looking garbage: a RIFF header followed by random bytes. */
    memcpy(junk, good, 44);
    for (size_t i = 44; i < 65536; i++) junk[i] = (unsigned char)(i * 2654435761u >> 24);
    try_decode(&res[nres++], "RIFF header + garbage", junk, 65536);

    char *png = NULL, *readme = NULL;
    size_t png_len = 0, readme_len = 0;
    g4_err err = {0};
    char path[4200];
    if (golden) {
        snprintf(path, sizeof path, "%s/media/chelsea.png", golden);
        if (g4_read_file(path, 1u << 22, &png, &png_len, &err) == 0) try_decode(&res[nres++], "PNG", png, png_len);
    }
    snprintf(path, sizeof path, "%s/README.md", GEMMA4C_SOURCE_DIR);
    if (g4_read_file(path, 1u << 22, &readme, &readme_len, &err) == 0)
        try_decode(&res[nres++], "README.md", readme, readme_len);

    /* Absurd headers. */
    size_t absurd_first = nres;
    wav_make(&b, 1, 1, 16000, 8, pcm, 1000, 0x80000000u); /* claims 2^31 samples, holds 1000 */
    try_decode(&res[nres++], "header claims 2^31 samples", b.data, b.len);
    static const struct { const char *what; int tag, ch, bits; uint32_t rate; } bad[] = {
        {"0 channels", 1, 0, 16, 16000},        {"sample rate 0", 1, 1, 16, 0},
        {"sample rate 2^31-1", 1, 1, 16, 0x7FFFFFFFu}, {"sample rate 1 Hz", 1, 1, 16, 1},
        {"0 bits", 1, 1, 0, 16000},
        {"99 bits", 1, 1, 99, 16000},           {"float 16 bits", 3, 1, 16, 16000},
        {"format tag 0x1234", 0x1234, 1, 16, 16000}, {"300 channels", 1, 300, 16, 16000},
        {"65535 channels", 1, 65535, 16, 16000},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wav_make(&b, bad[i].tag, bad[i].ch, bad[i].rate, bad[i].bits, pcm, n * 2, 0);
        try_decode(&res[nres++], bad[i].what, b.data, b.len);
    }
    size_t absurd_end = nres;
    /* A metadata chunk claiming 4 GB: FFmpeg would allocate (and zero) it at that size. */
    wav_make(&b, 1, 1, 16000, 16, pcm, 200, 0);
    g4_buf_append(&b, "LIST", 4);
    put32(&b, 0xF8FFFF19u);
    g4_buf_append(&b, "INFOISFT", 8);
    put32(&b, 0x5087F2C2u);
    g4_buf_append(&b, "gemma4c", 7);
    try_decode(&res[nres++], "LIST chunk claiming 4 GB", b.data, b.len);
    absurd_end = nres;
    wav_make(&b, 1, 1, 16000, 16, pcm, 0, 0);
    try_decode(&res[nres++], "WAV with no samples", b.data, b.len);
    size_t no_samples = nres - 1;
    float nanv[64];
    for (int i = 0; i < 64; i++) nanv[i] = i == 30 ? NAN : 0.1f;
    wav_make(&b, 3, 1, 16000, 32, nanv, sizeof nanv, 0);
    try_decode(&res[nres++], "float WAV with NaN", b.data, b.len);
    size_t nan_case = nres - 1;
    wav_make(&b, 1, 1, 16000, 16, pcm, n * 2, 0xFFFFFFFFu); /* streaming writers' "size unknown" */
    try_decode(&res[nres++], "WAV of unknown length", b.data, b.len);
    size_t streaming = nres - 1;
    int16_t *zeros = calloc(16000, sizeof(int16_t));
    wav_make(&b, 1, 1, 16000, 16, zeros, 32000, 0);
    try_decode(&res[nres++], "silent WAV", b.data, b.len);
    size_t silent = nres - 1;
    free(zeros);
    /* Longer than the caller's limit. */
    g4_audio a;
    g4_audio_decode_opts small = {4000};
    int limit_rc = g4_audio_decode_memory(good, good_len, "limit", &small, &a, &err);
    char limit_msg[512];
    snprintf(limit_msg, sizeof limit_msg, "%s", err.msg);
    if (limit_rc == 0) g4_audio_free(&a);
    int missing_rc = g4_audio_decode_file("/nonexistent/dir/x.wav", NULL, &a, &err);

    fflush(stderr);
    if (cap) {
        dup2(saved, 2);
        close(saved);
    }
    long noise = 0;
    if (cap) {
        fseek(cap, 0, SEEK_END);
        noise = ftell(cap);
        if (noise > 0) {
            char head[512] = {0};
            fseek(cap, 0, SEEK_SET);
            size_t got = fread(head, 1, sizeof head - 1, cap);
            head[got] = 0;
            fprintf(stderr, "captured stderr: %s\n", head);
        }
        fclose(cap);
    }
    CHECK(noise == 0, "%ld bytes were printed to stderr while decoding hostile input", noise);

    size_t errors = 0;
    for (size_t i = 0; i < nres; i++) {
        outcome *o = &res[i];
        if (o->rc) {
            errors++;
            CHECK(one_line(o->msg), "%s: error message not one line: '%s'", o->what, o->msg);
            CHECK(o->rc == GEMMA4C_ERR_FORMAT || o->rc == GEMMA4C_ERR_UNSUPPORTED || o->rc == GEMMA4C_ERR_ARG,
                  "%s: unexpected code %d (%s)", o->what, o->rc, o->msg);
        }
        int expect_ok = i == intact || i == streaming || i == silent;
        if (expect_ok) CHECK(o->rc == 0 && o->n == n * (i == silent ? 2 : 1), "%s: rc %d, %zu samples: %s",
                             o->what, o->rc, o->n, o->msg);
        else CHECK(o->rc != 0, "%s: decoded (%zu samples) instead of failing", o->what, o->n);
    }
    for (size_t i = truncated_first; i < truncated_end; i += 40) printf("  %-28s -> %s\n", res[i].what, res[i].msg);
    for (size_t i = truncated_end; i < junk_end; i += 4) printf("  %-28s -> %s\n", res[i].what, res[i].msg);
    for (size_t i = junk_end; i < absurd_first; i++) printf("  %-28s -> %s\n", res[i].what, res[i].msg);
    for (size_t i = absurd_first; i < absurd_end; i++) printf("  %-28s -> %s\n", res[i].what, res[i].msg);
    printf("  %-28s -> %s\n  %-28s -> %s\n", res[no_samples].what, res[no_samples].msg, res[nan_case].what,
           res[nan_case].msg);
    printf("hostile input: %zu cases, %zu errors, %ld bytes on stderr\n", nres, errors, noise);
    CHECK(limit_rc == GEMMA4C_ERR_ARG && one_line(limit_msg), "over the limit: rc %d %s", limit_rc, limit_msg);
    CHECK(missing_rc == GEMMA4C_ERR_IO && one_line(err.msg), "missing file: rc %d %s", missing_rc, err.msg);

    free(png);
    free(readme);
    free(junk);
    free(good);
    free(pcm);
    free(res);
    g4_buf_free(&b);
}

/* ---------------------------------------------------------------- ten minutes in bounded memory */

static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0) v = strtol(line + kl, NULL, 10);
    fclose(f);
    return v;
}

static void test_ten_minutes(void) {
    const uint32_t rate = 44100;
    const size_t frames = (size_t)rate * 600;
    size_t bytes = frames * 4;
    int16_t *pcm = malloc(bytes);
    g4_buf b = {0};
    if (!pcm) {
        CHECK(0, "no memory for the 10-minute test");
        return;
    }
    for (size_t i = 0; i < frames; i++) {
        pcm[2 * i] = (int16_t)lrint(test_signal(i, 0, rate) * 32767);
        pcm[2 * i + 1] = (int16_t)lrint(test_signal(i, 1, rate) * 32767);
    }
    wav_make(&b, 1, 2, rate, 16, pcm, bytes, 0);
    free(pcm);

    /* Peak RSS from here on: clear_refs "5" resets the high-water mark (Linux >= 4.0). */
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    int reset = cr && fputs("5", cr) >= 0;
    if (cr) reset = fclose(cr) == 0 && reset;
    long rss0 = status_kb("VmRSS:");
    g4_audio a;
    g4_err err = {0};
    int rc = g4_audio_decode_memory(b.data, b.len, "10 minutes", NULL, &a, &err);
    long hwm = status_kb("VmHWM:");
    CHECK(rc == 0, "%s", err.msg);
    if (rc == 0) {
        CHECK(a.n == 9600000, "10 minutes: %zu samples", a.n);
        double amp = amplitude_440(a.samples, 4800000, 16000);
        double want_amp = sqrt(pow(0.3 + 0.1 * cos(0.3), 2) + pow(0.1 * sin(0.3), 2));
        CHECK(fabs(amp - want_amp) < 1e-3, "10 minutes: 440 Hz amplitude %.5f, want %.5f", amp, want_amp);
        double out_mb = (double)a.n * sizeof(float) / 1048576.0;
        if (reset && rss0 > 0 && hwm > 0) {
            double growth = (double)(hwm - rss0) / 1024.0;
            printf("10 min 44.1 kHz stereo WAV (%.0f MB) from memory: %zu samples (%.1f MB of output); peak RSS "
                   "growth %.1f MB%s\n",
                   (double)b.len / 1048576.0, a.n, out_mb, growth, UNDER_ASAN ? " (ASan: not checked)" : "");
            /* The output itself plus FFmpeg's buffers; nothing proportional to the input or a second copy. */
            if (!UNDER_ASAN) CHECK(growth < out_mb * 1.2 + 32, "peak RSS grew %.1f MB for %.1f MB of output", growth,
                                   out_mb);
        } else {
            printf("10 minutes decoded; peak RSS not measurable here\n");
        }
        /* The long-audio path: 20 segments of 30 s, each with the reference's 750 tokens. */
        g4_audio_segment seg[32];
        size_t k = g4_audio_split(a.n, seg, 32);
        CHECK(k == 20, "10 minutes: %zu segments", k);
        size_t tokens = 0;
        for (size_t i = 0; i < k && i < 32; i++) tokens += g4_audio_soft_token_count(seg[i].length);
        CHECK(tokens == 15000, "10 minutes: %zu tokens over the segments", tokens);
        g4_audio_free(&a);
    }
    g4_buf_free(&b);
}

int main(void) {
    test_token_counts();
    test_silence();
    test_split();
    test_wav_pcm();
    test_encoded_formats();
    const char *golden = g4t_golden_dir();
    test_hostile(golden);
    test_ten_minutes();
    if (golden) {
        test_golden_features(golden);
        test_golden_media(golden);
    } else {
        const char *ci = getenv("CI");
        CHECK(!(ci && strcmp(ci, "true") == 0), "golden data not found (set GEMMA4C_GOLDEN); required under CI");
        printf("golden data not found: the golden comparisons were skipped\n");
    }
    return g4t_finish("test_audio");
}
