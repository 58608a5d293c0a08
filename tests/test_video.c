/* test_video.c — video decoding and frame sampling against the reference (OpenCV + Gemma4VideoProcessor) golden file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "format/safetensors.h"
#include "media/video.h"
#include "test.h"
#include "golden_util.h"

/* Measured on the golden clip (FFmpeg 5.1 swscale vs the OpenCV wheel that made the golden file); see
 * check_golden_frames. The limits leave room for other swscale builds, whose yuv->rgb SIMD rounds differently. */
#define FRAME_MAX_ABS_DIFF 3
#define FRAME_MIN_WITHIN_1 0.99

static unsigned char *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return b;
}

static int one_line(const g4_err *e) { return e->msg[0] != '\0' && strchr(e->msg, '\n') == NULL; }

static void check_golden_frames(const g4_video *v, const g4_st_file *ref) {
    const g4_tensor *t = g4_st_find(ref, "decoded_frames_u8");
    CHECK(t != NULL, "decoded_frames_u8 missing");
    if (!t) return;
    int64_t numel = g4_tensor_numel(t);
    int w = v->frames[0].width, h = v->frames[0].height;
    CHECK(w == 160 && h == 120, "frame size %dx%d", w, h);
    CHECK(numel == (int64_t)v->n_frames * w * h * 3, "golden frames hold %lld values", (long long)numel);
    if (numel != (int64_t)v->n_frames * w * h * 3) return;
    int64_t hist[256] = {0};
    int worst = 0, worst_frame = -1;
    int64_t per = (int64_t)w * h * 3;
    for (int f = 0; f < v->n_frames; f++) {
        CHECK(v->frames[f].width == w && v->frames[f].height == h, "frame %d size", f);
        for (int64_t i = 0; i < per; i++) {
            int want = (int)g4_tensor_get_f32(t, f * per + i);
            int d = abs((int)v->frames[f].rgb[i] - want);
            hist[d]++;
            if (d > worst) {
                worst = d;
                worst_frame = f;
            }
        }
    }
    double exact = (double)hist[0] / (double)numel;
    double within1 = (double)(hist[0] + hist[1]) / (double)numel;
    double within2 = (double)(hist[0] + hist[1] + hist[2]) / (double)numel;
    printf("decoded frames vs golden: max |diff| %d (frame %d), exact %.5f, within 1: %.5f, within 2: %.5f\n",
           worst, worst_frame, exact, within1, within2);
    CHECK(worst <= FRAME_MAX_ABS_DIFF, "max abs difference %d", worst);
    CHECK(within1 >= FRAME_MIN_WITHIN_1, "only %.5f within 1 level", within1);
}

static void check_golden(const char *golden) {
    char path[4096], ref_path[4096];
    snprintf(path, sizeof path, "%s/media/clip.mp4", golden);
    snprintf(ref_path, sizeof ref_path, "%s/tiny/reference/video.safetensors", golden);
    g4_err err = {0};
    g4_st_file *ref = NULL;
    int r = g4_st_open(ref_path, &ref, &err);
    CHECK(r == 0, "open %s: %s", ref_path, err.msg);
    if (r) return;

    g4_video v;
    r = g4_video_decode_file(path, NULL, &v, &err);
    CHECK(r == 0, "decode clip.mp4: %s", err.msg);
    if (r == 0) {
        int64_t n_idx, n_ts;
        int32_t *idx = g4t_tensor_i32(ref, "sampled_frame_indices", &n_idx);
        float *ts = g4t_tensor_f32(ref, "timestamps_s", &n_ts);
        CHECK(v.n_frames == 32 && n_idx == 32 && n_ts == 32, "%d frames sampled", v.n_frames);
        CHECK(v.total_frames == 80, "total frames %lld", (long long)v.total_frames);
        CHECK(v.fps == 10.0, "fps %g", v.fps);
        CHECK(v.duration_s == 8.0, "duration %g", v.duration_s);
        int bad_idx = 0, bad_ts = 0;
        for (int i = 0; i < v.n_frames && i < n_idx; i++) {
            bad_idx += v.frame_indices[i] != idx[i];
            bad_ts += (float)v.timestamps_s[i] != ts[i] || (double)(float)v.timestamps_s[i] != v.timestamps_s[i];
        }
        CHECK(bad_idx == 0, "%d frame indices differ", bad_idx);
        CHECK(bad_ts == 0, "%d timestamps differ", bad_ts);
        CHECK(v.frame_indices[1] == 2 && v.frame_indices[31] == 77, "indices %d %d", v.frame_indices[1],
              v.frame_indices[31]);

        /* The prompt's MM:SS for each sampled frame (spec: four 00:00, four 00:01, ..., last 00:07). */
        char txt[16];
        int count00 = 0;
        for (int i = 0; i < v.n_frames; i++) {
            g4_video_timestamp_text(v.timestamps_s[i], txt);
            char want[16];
            snprintf(want, sizeof want, "00:%02d", (int)ts[i]);
            CHECK(strcmp(txt, want) == 0, "frame %d: %s, want %s", i, txt, want);
            count00 += strcmp(txt, "00:00") == 0;
        }
        CHECK(count00 == 4, "%d frames at 00:00", count00);
        g4_video_timestamp_text(v.timestamps_s[31], txt);
        CHECK(strcmp(txt, "00:07") == 0, "last %s", txt);
        check_golden_frames(&v, ref);
        free(idx);
        free(ts);

        /* Memory input decodes the same frames. */
        size_t size = 0;
        unsigned char *bytes = read_all(path, &size);
        CHECK(bytes != NULL, "read clip.mp4");
        g4_video m;
        r = bytes ? g4_video_decode_memory(bytes, size, "clip", NULL, &m, &err) : -1;
        CHECK(r == 0, "decode from memory: %s", err.msg);
        if (r == 0) {
            int same = m.n_frames == v.n_frames;
            for (int i = 0; same && i < v.n_frames; i++)
                same = m.frame_indices[i] == v.frame_indices[i] &&
                       memcmp(m.frames[i].rgb, v.frames[i].rgb, (size_t)v.frames[i].width * v.frames[i].height * 3) == 0;
            CHECK(same, "memory and file decodes differ");
            g4_video_free(&m);
        }

        /* Options: fewer frames, fps sampling, every frame of a short request. */
        g4_video_decode_opts o = {0};
        o.fps = 1.0; /* int(80 / 10 * 1) = 8 frames: 0, 10, ..., 70 */
        r = g4_video_decode_memory(bytes, size, "clip", &o, &m, &err);
        CHECK(r == 0 && m.n_frames == 8 && m.frame_indices[1] == 10 && m.frame_indices[7] == 70 &&
                  m.timestamps_s[7] == 7.0,
              "fps=1 sampling: %s", r ? err.msg : "wrong indices");
        if (r == 0) {
            /* Frame 10 of the fps decode is golden index 4 (idx 10): the same picture. */
            CHECK(memcmp(m.frames[1].rgb, v.frames[4].rgb, 160 * 120 * 3) == 0, "frame 10 differs between decodes");
            g4_video_free(&m);
        }
        memset(&o, 0, sizeof o);
        o.num_frames = 100; /* more than the clip has: every frame */
        r = g4_video_decode_memory(bytes, size, "clip", &o, &m, &err);
        CHECK(r == 0 && m.n_frames == 80 && m.frame_indices[79] == 79, "num_frames=100: %s", r ? err.msg : "count");
        if (r == 0) g4_video_free(&m);

        /* Caps: a frame above max_pixels, a stream longer than max_decoded_frames. */
        memset(&o, 0, sizeof o);
        o.max_pixels = 160 * 120 - 1;
        r = g4_video_decode_memory(bytes, size, "clip", &o, &m, &err);
        CHECK(r != 0 && one_line(&err) && m.frames == NULL, "max_pixels not enforced");
        printf("max_pixels: %s\n", err.msg);
        memset(&o, 0, sizeof o);
        o.max_decoded_frames = 50;
        r = g4_video_decode_memory(bytes, size, "clip", &o, &m, &err);
        CHECK(r != 0 && one_line(&err) && m.frames == NULL, "max_decoded_frames not enforced");
        printf("max_decoded_frames: %s\n", err.msg);
        memset(&o, 0, sizeof o);
        o.num_frames = G4_VIDEO_MAX_FRAMES + 1;
        r = g4_video_decode_memory(bytes, size, "clip", &o, &m, &err);
        CHECK(r == GEMMA4C_ERR_ARG && one_line(&err), "num_frames over the limit accepted");

        /* Truncated at many offsets (clip.mp4 keeps its index at the end, so most cuts lose it), and damaged
         * payloads: an error line or fewer/other frames, never a crash or a leak. */
        if (bytes) {
            size_t cuts[] = {1, 7, 8, 31, 32, 40, 41, 100, 1000, 4096, 20000, 50000, size / 2, size - 4000,
                             size - 1000, size - 100, size - 8, size - 1};
            for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
                if (cuts[c] >= size) continue;
                g4_err e = {0};
                r = g4_video_decode_memory(bytes, cuts[c], "cut", NULL, &m, &e);
                CHECK(r != 0 ? one_line(&e) && m.frames == NULL : m.n_frames >= 1 && m.n_frames <= 32,
                      "cut at %zu", cuts[c]);
                if (r == 0) g4_video_free(&m);
            }
            unsigned char *bad = malloc(size);
            uint32_t seed = 12345;
            for (int round = 0; bad && round < 12; round++) {
                memcpy(bad, bytes, size);
                for (int k = 0; k < 40 * (round + 1); k++) { /* damage only the payload after the header atoms */
                    seed = seed * 1664525u + 1013904223u;
                    size_t at = 48 + (seed >> 8) % (size - 48 - 4000);
                    bad[at] ^= (unsigned char)(1u + (seed & 0x7f));
                }
                g4_err e = {0};
                r = g4_video_decode_memory(bad, size, "damaged", NULL, &m, &e);
                CHECK(r != 0 ? one_line(&e) : m.n_frames >= 1 && m.n_frames <= 32, "damaged round %d", round);
                if (r == 0) g4_video_free(&m);
            }
            free(bad);
        }
        free(bytes);
        g4_video_free(&v);
    }
    g4_st_close(ref);
}

static void check_not_video(const char *golden) {
    const char *files[] = {"media/speech_16k.wav", "media/small.png", "media/coffee.jpg",
                           "tiny/reference/video.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", golden, files[i]);
        g4_err err = {0};
        g4_video v;
        int r = g4_video_decode_file(path, NULL, &v, &err);
        CHECK(r != 0 && one_line(&err) && v.frames == NULL, "%s accepted as video", files[i]);
        printf("%s: %s\n", files[i], err.msg);
    }
}

static void check_hostile_bytes(void) {
    g4_err err = {0};
    g4_video v;
    int r = g4_video_decode_file("/nonexistent/clip.mp4", NULL, &v, &err);
    CHECK(r == GEMMA4C_ERR_IO && one_line(&err), "missing file: %d %s", r, err.msg);
    r = g4_video_decode_memory("", 0, NULL, NULL, &v, &err);
    CHECK(r != 0 && one_line(&err), "empty input");
    unsigned char junk[5000];
    uint32_t s = 99;
    for (size_t i = 0; i < sizeof junk; i++) {
        s = s * 1103515245u + 12345u;
        junk[i] = (unsigned char)(s >> 16);
    }
    r = g4_video_decode_memory(junk, sizeof junk, "junk", NULL, &v, &err);
    CHECK(r != 0 && one_line(&err) && v.frames == NULL, "garbage accepted");
    printf("garbage: %s\n", err.msg);
    /* An MP4 header that claims a huge file and nothing else. */
    unsigned char ftyp[] = {0, 0, 0, 0x20, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm', 0, 0, 2, 0, 'i', 's', 'o', 'm',
                            'i', 's', 'o', '2', 'a', 'v', 'c', '1', 'm', 'p', '4', '1', 0x7f, 0xff, 0xff, 0xff,
                            'm', 'd', 'a', 't'};
    r = g4_video_decode_memory(ftyp, sizeof ftyp, "ftyp", NULL, &v, &err);
    CHECK(r != 0 && one_line(&err), "header-only mp4 accepted");
    printf("header-only mp4: %s\n", err.msg);
    /* An H.264 elementary stream whose SPS claims 8192x8192 would be refused by max_pixels; garbage NAL units
     * must not crash the raw h264 demuxer either. */
    unsigned char nal[64] = {0, 0, 0, 1, 0x67, 0x42, 0x00, 0x0a, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0x68, 0xce};
    r = g4_video_decode_memory(nal, sizeof nal, "nal", NULL, &v, &err);
    CHECK(r != 0 && one_line(&err), "broken h264 accepted");
    printf("broken h264: %s\n", err.msg);
    /* An IVF (VP8) header declaring 65535x65535 frames: refused from the header, before any decoding. */
    unsigned char ivf[32 + 12 + 16] = {'D', 'K', 'I', 'F', 0, 0, 32, 0, 'V', 'P', '8', '0', 0xff, 0xff, 0xff, 0xff,
                                       30, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};
    ivf[32] = 16; /* one 16-byte frame: a VP8 key frame header claiming 16383x16383 */
    unsigned char vp8[16] = {0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0xff, 0x3f, 0xff, 0x3f};
    memcpy(ivf + 44, vp8, sizeof vp8);
    r = g4_video_decode_memory(ivf, sizeof ivf, "huge.ivf", NULL, &v, &err);
    CHECK(r != 0 && one_line(&err) && v.frames == NULL, "65535x65535 IVF accepted");
    printf("65535x65535 ivf: %s\n", err.msg);
    ivf[12] = ivf[14] = 0x40; /* 320x320 in the container; the key frame still claims 16383x16383 */
    ivf[13] = ivf[15] = 0x01;
    g4_video_decode_opts o = {0};
    o.max_pixels = 4096 * 4096;
    r = g4_video_decode_memory(ivf, sizeof ivf, "huge-frame.ivf", &o, &v, &err);
    CHECK(r != 0 && one_line(&err) && v.frames == NULL, "16383x16383 VP8 frame accepted");
    printf("16383x16383 vp8 frame: %s\n", err.msg);
}

static void check_sampling_and_text(void) {
    int32_t idx[G4_VIDEO_MAX_FRAMES + 1];
    g4_err err = {0};
    int n = g4_video_sample_indices(80, 32, 0, 10, idx, G4_VIDEO_MAX_FRAMES + 1, &err);
    CHECK(n == 32 && idx[0] == 0 && idx[1] == 2 && idx[2] == 5 && idx[3] == 7 && idx[31] == 77, "N=80");
    n = g4_video_sample_indices(33, 32, 0, 30, idx, G4_VIDEO_MAX_FRAMES + 1, &err); /* step 1.03125 */
    CHECK(n == 32 && idx[31] == 31 && idx[16] == 16, "N=33: %d", n);
    n = g4_video_sample_indices(1000, 32, 0, 30, idx, G4_VIDEO_MAX_FRAMES + 1, &err); /* step 31.25 */
    CHECK(n == 32 && idx[1] == 31 && idx[2] == 62 && idx[31] == 968, "N=1000");
    n = g4_video_sample_indices(5, 32, 0, 30, idx, G4_VIDEO_MAX_FRAMES + 1, &err);
    CHECK(n == 5 && idx[4] == 4, "N=5 takes every frame");
    n = g4_video_sample_indices(0, 32, 0, 30, idx, G4_VIDEO_MAX_FRAMES + 1, &err);
    CHECK(n < 0 && one_line(&err), "N=0 accepted");
    n = g4_video_sample_indices(300, 0, 1.0, 30, idx, G4_VIDEO_MAX_FRAMES + 1, &err); /* 10 frames, step 30 */
    CHECK(n == 10 && idx[1] == 30 && idx[9] == 270, "fps=1");
    n = g4_video_sample_indices(299, 0, 1.0, 29.97, idx, G4_VIDEO_MAX_FRAMES + 1, &err); /* int(9.976) = 9 */
    CHECK(n == 9 && idx[1] == 33 && idx[8] == 265, "fps=1 at 29.97: n %d idx1 %d idx8 %d", n, idx[1], idx[8]);

    CHECK(g4_video_timestamp(2, 10.0) == (double)0.2f, "0.2 s in float32");
    CHECK(g4_video_timestamp(7, 29.97) == (double)(7.0f / 29.97f), "float32 division");
    CHECK(g4_video_timestamp(48, 0.0) == 2.0, "unknown fps is 24");
    struct {
        double s;
        const char *want;
    } cases[] = {{0, "00:00"},          {0.7, "00:00"},        {1.0, "00:01"},        {59.9, "00:59"},
                 {60.0, "01:00"},       {61.5, "01:01"},       {599.99, "09:59"},     {3599.9, "59:59"},
                 {3600.0, "60:00"},     {6000.5, "100:00"},    {-3, "00:00"},         {1e30, "999999999:00"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char txt[16];
        int len = g4_video_timestamp_text(cases[i].s, txt);
        if (cases[i].s < 1e20) CHECK(strcmp(txt, cases[i].want) == 0, "%g s -> %s, want %s", cases[i].s, txt, cases[i].want);
        CHECK(len > 0 && len < 16 && (size_t)len == strlen(txt), "length %d", len);
    }
}

int main(void) {
    check_sampling_and_text();
    check_hostile_bytes();
    const char *golden = g4t_require_golden();
    check_not_video(golden);
    check_golden(golden);
    return g4t_finish("test_video");
}
