/* cmd_bench.c — `gemma4c bench`: prefill and decode speed, time to first token, peak memory, bytes per token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "kernels/membw.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The read-bandwidth probe runs in a child process so its buffer never counts in this process's peak RSS. */
static double measure_bandwidth(int threads) {
    int fd[2];
    if (pipe(fd) != 0) return 0;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        g4_pool *pool = g4_pool_create(threads);
        double gbps = g4_read_bandwidth(pool, (size_t)1 << 30, 5);
        g4_pool_destroy(pool);
        ssize_t w = write(fd[1], &gbps, sizeof gbps);
        _exit(w == sizeof gbps ? 0 : 1);
    }
    close(fd[1]);
    double gbps = 0;
    if (pid < 0 || read(fd[0], &gbps, sizeof gbps) != sizeof gbps) gbps = 0;
    close(fd[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    return gbps;
}

int cmd_bench(int argc, char **argv) {
    cli_opts o;
    int rc = cli_parse(argc, argv, 2, &o, "bench");
    if (rc) return rc == 2 ? 0 : 1;
    const int n_prompt = o.bench_prompt > 0 ? o.bench_prompt : 512;
    const int n_decode = o.max_tokens >= 0 ? o.max_tokens : 128;
    char model[64];
    if (!o.model) {
        snprintf(model, sizeof model, "synthetic:%s", o.shape ? o.shape : "e4b");
        o.model = model;
    } else if (o.shape)
        return cli_error("bench: give either -m MODEL or --shape, not both");
    const int runs = o.bench_runs > 0 ? o.bench_runs : 3;
    o.ctx = n_prompt + n_decode + 1;
    if (o.batch <= 0) o.batch = n_prompt < 512 ? n_prompt : 512;

    double t_load = now();
    g4_session *s;
    if (cli_open_session(&o, &s)) return 1;
    t_load = now() - t_load;
    const int64_t V = s->m->cfg.text.vocab_size;
    const g4_kernel_ops *ops = s->c.ops; /* greedy decoding: the argmax over the vocabulary */
    int32_t *ids = malloc((size_t)n_prompt * sizeof *ids);
    float *logits = malloc((size_t)V * sizeof *logits);
    if (!ids || !logits) {
        free(ids), free(logits);
        g4_session_close(s);
        return cli_error("out of memory");
    }
    uint64_t x = 0x9E3779B97F4A7C15ull; /* a fixed pseudo-random prompt: <bos>, then ids in [3, V) */
    ids[0] = s->m->cfg.text.bos_token_id;
    for (int i = 1; i < n_prompt; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(3 + x % (uint64_t)(V - 3));
    }
    g4_err err = {0};
    g4_forward_opts fo = {NULL, NULL, logits, NULL};
    double t0 = now();
    rc = g4_decoder_forward(&s->d, ids, n_prompt, &fo, &err);
    double prefill = now() - t0;
    const int32_t first = rc ? 0 : (int32_t)ops->argmax(logits, V);
    const double ttft = now() - t0;
    /* Decode runs `runs` times from the prompt's state. A shared host's memory bandwidth drifts by tens of percent
     * within minutes, so the probe runs right before and right after them: the best decode run against the best
     * probe pass compares like with like, and the two probes apart show how far the host moved meanwhile. */
    double gbps = 0, gbps_before = 0, gbps_after = 0, decode_s[CLI_MAX_RUNS] = {0};
    if (!rc && !o.no_bandwidth) gbps_before = measure_bandwidth(o.threads);
    for (int r = 0; !rc && r < runs; r++) {
        if (r > 0 && g4_decoder_rewind(&s->d, n_prompt) != n_prompt) /* the rings lost the prompt's window */
            rc = g4_decoder_forward(&s->d, ids, n_prompt, &fo, &err);
        int32_t next = first;
        double t1 = now();
        for (int i = 0; i < n_decode && !rc; i++) {
            rc = g4_decoder_forward(&s->d, &next, 1, &fo, &err);
            next = (int32_t)ops->argmax(logits, V);
        }
        decode_s[r] = now() - t1;
    }
    if (!rc && !o.no_bandwidth) gbps_after = measure_bandwidth(o.threads);
    gbps = gbps_after > gbps_before ? gbps_after : gbps_before;
    double decode_best = decode_s[0], decode_sum = 0;
    for (int r = 0; r < runs; r++) {
        decode_best = decode_s[r] < decode_best ? decode_s[r] : decode_best;
        decode_sum += decode_s[r];
    }
    /* Encoders: the time from the media file to soft tokens, per input. */
    g4_media_item items[CLI_MAX_LIST];
    const int n_items = cli_media_items(&o, items);
    double media_s[CLI_MAX_LIST] = {0}, media_len[CLI_MAX_LIST] = {0};
    int64_t media_tokens[CLI_MAX_LIST] = {0};
    for (int i = 0; !rc && i < n_items; i++) {
        g4_media_tokens mt;
        double t1 = now();
        rc = g4_media_encode(s, &items[i], 1, &mt, &err);
        media_s[i] = now() - t1;
        if (rc) break;
        for (int k = 0; k < G4_SOFT_KINDS; k++) media_tokens[i] += mt.soft[k].n;
        media_len[i] = mt.seconds;
        g4_media_tokens_free(&mt);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double rss = (double)ru.ru_maxrss * 1024.0;
    const double bytes_tok = (double)g4_model_weight_bytes_per_token(s->m);
    const double prefill_tps = n_prompt / prefill;
    const double decode_tps = n_decode > 0 ? n_decode * runs / decode_sum : 0; /* the mean rate */
    const double decode_best_tps = n_decode > 0 ? n_decode / decode_best : 0;
    /* Quantized weights run on the integer kernels, float weights on the float ones. */
    const char *kernels = g4_dtype_is_quantized(s->m->layers[0].q_proj.dtype) ? s->c.qops->name : s->c.ops->name;
    if (!rc && o.json)
        printf("{\"prefill_tok_s\":%.3f,\"decode_tok_s\":%.3f,\"ttft_s\":%.4f,\"peak_rss_bytes\":%.0f,"
               "\"weight_bytes_per_token\":%.0f,\"decode_tok_s_best\":%.3f,\"decode_runs\":%d,"
               "\"read_bandwidth_gb_s\":%.2f,\"read_bandwidth_before_gb_s\":%.2f,\"read_bandwidth_after_gb_s\":%.2f,"
               "\"kernels\":\"%s\",\"threads\":%d}\n",
               prefill_tps, decode_tps, ttft, rss, bytes_tok, decode_best_tps, runs, gbps, gbps_before, gbps_after,
               kernels, g4_pool_size(s->c.pool));
    else if (!rc) {
        printf("model            %s (%s weights)\n", s->m->source, s->m->synthetic ? "synthetic" : "checkpoint");
        printf("kernels          %s, %d threads\n", kernels, g4_pool_size(s->c.pool));
        printf("load             %.2f s\n", t_load);
        printf("prefill          %d tokens in %.2f s: %.2f tok/s\n", n_prompt, prefill, prefill_tps);
        printf("time to first    %.3f s\n", ttft);
        printf("decode           %d tokens: %.2f tok/s (mean of %d runs; best %.2f; runs", n_decode, decode_tps, runs,
               decode_best_tps);
        for (int r = 0; r < runs; r++) printf(" %.2f", decode_s[r] > 0 ? n_decode / decode_s[r] : 0);
        printf(")\n");
        printf("weights/token    %.3f GB\n", bytes_tok / 1e9);
        printf("peak RSS         %.2f GB\n", rss / 1e9);
        if (gbps > 0)
            printf("read bandwidth   %.1f GB/s (best probe pass: %.1f before decoding, %.1f after); decode reads %.1f "
                   "GB/s (%.0f%%) at its best run, %.1f GB/s (%.0f%%) on average\n",
                   gbps, gbps_before, gbps_after, bytes_tok * decode_best_tps / 1e9,
                   100.0 * bytes_tok * decode_best_tps / 1e9 / gbps, bytes_tok * decode_tps / 1e9,
                   100.0 * bytes_tok * decode_tps / 1e9 / gbps);
        for (int i = 0; i < n_items; i++) {
            if (items[i].kind == G4_MEDIA_AUDIO)
                printf("audio            %s (%.1f s): %lld soft tokens in %.2f s, real-time factor %.3f\n", items[i].path,
                       media_len[i], (long long)media_tokens[i], media_s[i], media_len[i] > 0 ? media_s[i] / media_len[i] : 0);
            else if (items[i].kind == G4_MEDIA_VIDEO)
                printf("video            %s (%.1f s): %lld soft tokens in %.2f s, %.2f s per second of video\n",
                       items[i].path, media_len[i], (long long)media_tokens[i], media_s[i],
                       media_len[i] > 0 ? media_s[i] / media_len[i] : 0);
            else
                printf("image            %s: %lld soft tokens in %.2f s\n", items[i].path, (long long)media_tokens[i], media_s[i]);
        }
    }
    free(ids);
    free(logits);
    g4_session_close(s);
    return rc ? cli_error("%s", err.msg) : 0;
}
