/* audio.h — audio in: any common file to 16 kHz mono float, and Gemma 4's log-mel front end exactly as the reference. */
#ifndef G4_MEDIA_AUDIO_H
#define G4_MEDIA_AUDIO_H

#include <stddef.h>

#include "core/error.h"

#define G4_AUDIO_RATE 16000       /* the only rate the feature extractor accepts */
#define G4_AUDIO_MEL_BINS 128
#define G4_AUDIO_FRAME 320        /* 20 ms analysis window */
#define G4_AUDIO_HOP 160          /* 10 ms between frames */
#define G4_AUDIO_MAX_SAMPLES 480000 /* 30 s: the reference truncates here; our segments never exceed it */
#define G4_AUDIO_MAX_TOKENS 750   /* soft tokens of a 30 s clip */
#define G4_AUDIO_SAMPLES_PER_TOKEN 640 /* 40 ms: one soft token after the encoder's two stride-2 convolutions */

/* ---- decoding (FFmpeg underneath; none of its types leak out) ----
 * Any container/codec this FFmpeg build reads: WAV (PCM 8/16/24/32-bit int, float), FLAC, MP3, Ogg Vorbis/Opus,
 * M4A/AAC, and the first audio track of video files (MP4/MOV, Matroska/WebM, AVI, MPEG-TS...).
 * Channels are averaged in float32 (the reference's mean over channels), then the mono signal is resampled to
 * 16 kHz by libswresample with its soxr engine at soxr's "HQ" setting: what librosa.load does (soundfile, mean,
 * python-soxr HQ), which is how transformers' load_audio reads a file when torchcodec is absent. On the golden
 * 44.1 kHz stereo file the result is bit-identical to libsoxr HQ driven as python-soxr drives it. Where FFmpeg
 * was built without soxr, swresample's own filter is used (max 0.02 from soxr on that file; `resampler` says
 * which). The output has ceil(n_in * (16000 / rate_in)) samples, librosa's length; 16 kHz input is copied
 * unchanged (int16 / 32768 exactly: the golden waveform, bit for bit).
 * Bounded: memory grows with the decoded output only (never with what a header claims); output longer than
 * max_samples is an error. A WAV file holding less audio than its header declares (truncated, or an absurd size)
 * is an error; other formats decode what is there, as FFmpeg's tools do, and a stream whose packets mostly fail
 * to decode is an error. Digital silence is valid audio and decodes. FFmpeg's own logging is
 * silenced (av_log_set_level, process-wide): failures come back as one line in err. */
typedef struct g4_audio_decode_opts {
    size_t max_samples; /* output limit in 16 kHz samples; 0 = G4_AUDIO_DEFAULT_MAX (1 hour) */
} g4_audio_decode_opts;

#define G4_AUDIO_DEFAULT_MAX ((size_t)G4_AUDIO_RATE * 3600)

typedef struct g4_audio {
    float *samples;   /* 16 kHz mono; owned, free with g4_audio_free */
    size_t n;         /* >= 1 on success */
    int src_rate;     /* what the stream had */
    int src_channels;
    const char *resampler; /* "none" (16 kHz input), "soxr" or "swr" (FFmpeg without soxr); static string */
} g4_audio;

int g4_audio_decode_file(const char *path, const g4_audio_decode_opts *opts, g4_audio *out, g4_err *err);
/* `data` is only read during the call. `label` names it in error messages (may be NULL). */
int g4_audio_decode_memory(const void *data, size_t size, const char *label, const g4_audio_decode_opts *opts,
                           g4_audio *out, g4_err *err);
void g4_audio_free(g4_audio *a);

/* ---- features (Gemma4AudioFeatureExtractor of transformers 5.17, one clip as a one-element batch) ----
 * The waveform is truncated to 480000 samples, right-padded with zeros to a multiple of 128 samples, and gets 160
 * zeros in front (semi-causal); frame t covers padded samples [160t, 160t + 320) and is valid when padded sample
 * 160t + 320 is real audio. Each frame: periodic Hann (float32) applied as a float32 product, 512-point FFT
 * magnitude, 128 HTK mel filters (no area norm, built in double as the reference does), log(mel + 1e-3) in
 * double rounded to float32; invalid frames are zeroed. Agrees with the reference to about 5e-7. */
typedef struct g4_audio_features_out {
    float *features;        /* [n_frames][128]; owned */
    unsigned char *mask;    /* [n_frames]; 1 = real frame (always a prefix) */
    size_t n_frames;
    size_t n_valid;         /* frames with mask 1 */
    size_t n_tokens;        /* soft tokens the processor puts in the prompt: ceil(n_valid / 4) */
} g4_audio_features_out;

/* n may be 0 (no frames, no tokens). `wave` is 16 kHz mono; a NaN or infinite sample is an error. */
int g4_audio_features(const float *wave, size_t n, g4_audio_features_out *out, g4_err *err);
void g4_audio_features_free(g4_audio_features_out *f);

/* Frames (mask entries) the extractor produces for n samples, after the 30 s truncation. */
size_t g4_audio_frame_count(size_t n_samples);
/* The soft-token count Gemma4Processor assigns to a clip of n samples (30 s truncation included):
 * 0.1 s -> 3, 1 s -> 25, 30 s and longer -> 750; 160 samples or fewer -> 0. */
size_t g4_audio_soft_token_count(size_t n_samples);

/* ---- long audio ----
 * The reference drops everything past 30 s; we split instead, each segment becoming its own audio block.
 * Rule: k = ceil(n / 480000) segments of nearly equal length; every segment but the last is
 * ceil(n / k) rounded up to a multiple of 640 samples (40 ms, one soft token), the last takes the rest.
 * So no segment exceeds 30 s, no tail is a sliver (a 31 s clip gives two ~15.5 s halves, not 30 s + 1 s), each
 * non-final segment of m * 640 samples yields exactly m tokens, and n <= 480000 is one segment (the reference's
 * result). Returns the number of segments (0 for n = 0); fills at most `cap` of them (segs may be NULL). */
typedef struct g4_audio_segment {
    size_t start;  /* first sample */
    size_t length; /* 1 .. 480000 */
} g4_audio_segment;

size_t g4_audio_split(size_t n_samples, g4_audio_segment *segs, size_t cap);

#endif
