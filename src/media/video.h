/* video.h — video in: any common container to the frames, indices and timestamps Gemma 4's video processor samples. */
#ifndef G4_MEDIA_VIDEO_H
#define G4_MEDIA_VIDEO_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "media/image.h"

/* ---- decoding (FFmpeg underneath; none of its types leak out) ----
 * The reference (transformers' Gemma4VideoProcessor fed by OpenCV's VideoCapture) decodes every frame of the first
 * video stream, takes fps from FFmpeg's av_guess_frame_rate, and samples num_frames (default 32) frames uniformly:
 * idx_k = (int)(float)(k * N / num_frames), N = the number of frames that decoded, timestamp_k = idx_k / fps in
 * float32. We do the same: every frame is decoded (to count N exactly, as OpenCV does by reading to the end), but
 * only the sampled ones are converted to RGB and kept, so memory is bounded by the sampled frames, never by the
 * clip's length. Conversion is what OpenCV's FFmpeg backend does: libswscale, SWS_BICUBIC, no colour-space
 * override (so BT.601 matrix, range from the pixel format), then BGR->RGB; display-matrix rotations of 90/180/270
 * degrees are applied (OpenCV's CAP_PROP_ORIENTATION_AUTO default).
 * Differences from the reference, on purpose:
 *  - a clip with fewer than num_frames frames gives all its frames (the reference raises);
 *  - an unknown frame rate is taken as 24 (what the reference's prompt formatting assumes then);
 *  - a stream that stops decoding part-way (truncated file, damaged packet) ends there, as OpenCV's read loop does:
 *    the frames before the damage count; no decodable frame at all is an error.
 * Hostile input: containers are whitelisted (no image, playlist or concat demuxers), the decoder refuses frames
 * above max_pixels before allocating for them, streams longer than max_decoded_frames are refused, and FFmpeg's
 * logging is silenced (av_log_set_level, process-wide): failures come back as one line in err. */
typedef struct g4_video_decode_opts {
    int num_frames;              /* frames to sample; 0 = G4_VIDEO_DEFAULT_FRAMES (32), at most G4_VIDEO_MAX_FRAMES */
    double fps;                  /* > 0: sample this many frames per second instead (the reference's `fps` option:
                                  * num_frames = int(N / video_fps * fps)); num_frames is then ignored */
    uint64_t max_pixels;         /* per frame; 0 = G4_VIDEO_DEFAULT_MAX_PIXELS */
    int64_t max_decoded_frames;  /* frames in the stream; 0 = G4_VIDEO_DEFAULT_MAX_DECODED */
    int threads;                 /* decoder threads; 0 = 1 */
} g4_video_decode_opts;

#define G4_VIDEO_DEFAULT_FRAMES 32
#define G4_VIDEO_MAX_FRAMES 1024
#define G4_VIDEO_DEFAULT_MAX_PIXELS (7680ull * 4320ull) /* 8K UHD */
#define G4_VIDEO_DEFAULT_MAX_DECODED ((int64_t)1 << 20) /* ~9.7 hours at 30 fps */
#define G4_VIDEO_DEFAULT_FPS 24.0                      /* assumed when the stream states none */

typedef struct g4_video {
    int n_frames;            /* sampled frames, >= 1 on success */
    g4_image *frames;        /* [n_frames] 8-bit RGB, each owned */
    double *timestamps_s;    /* [n_frames] idx / fps as the reference computes it (float32 values) */
    int32_t *frame_indices;  /* [n_frames] indices into the decoded stream, increasing */
    int64_t total_frames;    /* N: frames that decoded */
    double fps;              /* the stream's frame rate (av_guess_frame_rate, as OpenCV's CAP_PROP_FPS) */
    double duration_s;       /* total_frames / fps, as the reference's metadata */
} g4_video;

int g4_video_decode_file(const char *path, const g4_video_decode_opts *opts, g4_video *out, g4_err *err);
/* `data` is only read during the call. `label` names it in error messages (may be NULL). */
int g4_video_decode_memory(const void *data, size_t size, const char *label, const g4_video_decode_opts *opts,
                           g4_video *out, g4_err *err);
void g4_video_free(g4_video *v);

/* The reference's frame sampling alone: fills idx[0..n) for a stream of total_frames frames and returns n
 * (<= max), or a negative error. num_frames and fps as in g4_video_decode_opts; video_fps is the stream's rate. */
int g4_video_sample_indices(int64_t total_frames, int num_frames, double fps, double video_fps, int32_t *idx,
                            int max, g4_err *err);
/* idx / fps in float32, as VideoMetadata.timestamps computes it from the int32 index tensor. */
double g4_video_timestamp(int32_t index, double video_fps);

/* "MM:SS" as the processor's prompt prints a timestamp: floor(s/60) and floor(s mod 60), each zero-padded to at
 * least two digits (minutes may grow past two digits, up to 9 of them; fractions are truncated; negative or
 * non-finite input prints 00:00). Returns the length. */
int g4_video_timestamp_text(double seconds, char out[16]);

#endif
