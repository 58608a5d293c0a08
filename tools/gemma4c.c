/* gemma4c.c — the gemma4c command: option parsing shared by the subcommands, and dispatch. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char usage[] =
    "usage: gemma4c <command> [options]\n"
    "\n"
    "commands:\n"
    "  run     -m MODEL [-p PROMPT]      answer one prompt, streaming (no -m: a small synthetic model)\n"
    "  chat    -m MODEL                  interactive multi-turn chat\n"
    "  logits  -m MODEL --ids 2,105,... --out F.safetensors   logits of every position\n"
    "  convert HF_DIR -o OUT.gguf [--quant q4|q8|bf16|f32] [--tensor-type 'PATTERN=TYPE']...\n"
    "                                    one GGUF file: config, tokenizer, template, (quantized) tensors\n"
    "  features -m MODEL (--image F [--max-soft-tokens N] | --video F | --audio F) --out F.safetensors\n"
    "                                    an encoder's soft tokens and its preprocessed input\n"
    "  bench   [-m MODEL | --shape e2b|e4b|small [--quant R]] [-t N] [--prompt-tokens 512] [-n 128] [--runs 3]\n"
    "          [--json] [--no-bandwidth] [--image F] [--video F] [--audio F]\n"
    "                                    prefill/decode speed (decode: --runs runs from the prompt's state),\n"
    "                                    time to first token, peak RSS, bytes/token, the read bandwidth of\n"
    "                                    this machine around the decode runs, each encoder's time\n"
    "\n"
    "MODEL is a Hugging Face model directory, a repo id found in the Hugging Face cache\n"
    "(e.g. google/gemma-4-E4B-it after `hf download google/gemma-4-E4B-it`), or synthetic:small|e2b|e4b.\n"
    "\n"
    "options:\n"
    "  -p, --prompt TEXT       the user message (run; '-' reads standard input)\n"
    "  -s, --system TEXT       a system message\n"
    "  -n, --max-tokens N      stop after N generated tokens (default 512; 0 = until a stop or the context ends)\n"
    "  --temp T, --top-k K, --top-p P, --min-p P, --repeat-penalty R, --seed S\n"
    "                          sampling (defaults from the model's generation_config.json)\n"
    "  --greedy                always take the most likely token\n"
    "  --stop TEXT             stop before TEXT (repeatable)\n"
    "  --think                 let the model think first (thinking mode)\n"
    "  --raw                   use the prompt as is, without the chat format\n"
    "  -t, --threads N         worker threads (default: all CPUs)\n"
    "  -c, --ctx N             context length in tokens (default 4096)\n"
    "  -b, --batch N           prefill batch (default 256)\n"
    "  -v, --verbose           timings (time to first token, tokens/s) on stderr\n"
    "  --image F, --video F, --audio F\n"
    "                          media for the prompt (repeatable, in order); --max-soft-tokens N for images\n";

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("gemma4c: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static int parse_long(const char *opt, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return cli_error("%s expects an integer in [%lld, %lld], got '%s'", opt, lo, hi, v);
    *out = x;
    return 0;
}

static int parse_float(const char *opt, const char *v, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi))
        return cli_error("%s expects a number in [%g, %g], got '%s'", opt, lo, hi, v);
    *out = (float)x;
    return 0;
}

static int is_option(const char *arg, const char *name, const char *alias) {
    return strcmp(arg, name) == 0 || (alias && strcmp(arg, alias) == 0);
}

int cli_parse(int argc, char **argv, int first, cli_opts *o, const char *command) {
    memset(o, 0, sizeof *o);
    o->max_tokens = -1; /* unset: 512 */
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define IS(s1, s2) is_option(a, s1, s2)
#define NEED_VALUE() \
    if (!v) return cli_error("%s needs a value", a); \
    i++
        long long n = 0;
        if (IS("-v", "--verbose")) o->verbose = 1;
        else if (IS("--think", NULL)) o->think = 1;
        else if (IS("--raw", NULL)) o->raw = 1;
        else if (IS("--greedy", NULL)) o->greedy = 1;
        else if (IS("--json", NULL)) o->json = 1;
        else if (IS("--quant", "-q")) { NEED_VALUE(); o->quant = v; }
        else if (IS("--tensor-type", NULL)) {
            NEED_VALUE();
            if (o->n_overrides == CLI_MAX_LIST) return cli_error("too many --tensor-type overrides");
            o->overrides[o->n_overrides++] = v;
        }
        else if (IS("--no-bandwidth", NULL)) o->no_bandwidth = 1;
        else if (IS("--shape", NULL)) {
            NEED_VALUE();
            if (strcmp(v, "e2b") && strcmp(v, "e4b") && strcmp(v, "small"))
                return cli_error("--shape expects e2b, e4b or small, got '%s'", v);
            o->shape = v;
        } else if (IS("--max-soft-tokens", NULL)) {
            NEED_VALUE();
            if (parse_long(a, v, 70, 1120, &n) || (n != 70 && n != 140 && n != 280 && n != 560 && n != 1120))
                return cli_error("--max-soft-tokens expects 70, 140, 280, 560 or 1120, got '%s'", v);
            o->max_soft_tokens = (int)n;
        } else if (IS("--prompt-tokens", NULL)) {
            NEED_VALUE();
            if (parse_long(a, v, 1, 1 << 20, &n)) return 1;
            o->bench_prompt = (int)n;
        } else if (IS("--runs", NULL)) {
            NEED_VALUE();
            if (parse_long(a, v, 1, CLI_MAX_RUNS, &n)) return 1;
            o->bench_runs = (int)n;
        }
        else if (IS("-h", "--help")) {
            fputs(usage, stdout);
            return 2;
        } else if (IS("-m", "--model")) { NEED_VALUE(); o->model = v; }
        else if (IS("-p", "--prompt")) { NEED_VALUE(); o->prompt = v; }
        else if (IS("-s", "--system")) { NEED_VALUE(); o->system = v; }
        else if (IS("--ids", NULL)) { NEED_VALUE(); o->ids = v; }
        else if (IS("-o", "--out")) { NEED_VALUE(); o->out = v; }
        else if (IS("--stop", NULL)) {
            NEED_VALUE();
            if (o->n_stops == CLI_MAX_LIST) return cli_error("too many --stop strings");
            if (!*v) return cli_error("--stop needs a non-empty string");
            o->stops[o->n_stops++] = v;
        } else if (IS("--image", NULL) || IS("--audio", NULL) || IS("--video", NULL)) {
            NEED_VALUE();
            if (o->n_media == CLI_MAX_LIST) return cli_error("too many media files");
            o->media_kind[o->n_media] = a + 2;
            o->media[o->n_media++] = v;
        } else if (IS("-n", "--max-tokens")) {
            NEED_VALUE();
            if (parse_long(a, v, 0, 1 << 30, &n)) return 1;
            o->max_tokens = (int)n;
        } else if (IS("-t", "--threads")) {
            NEED_VALUE();
            if (parse_long(a, v, 1, 1024, &n)) return 1;
            o->threads = (int)n;
        } else if (IS("-c", "--ctx")) {
            NEED_VALUE();
            if (parse_long(a, v, 16, 1 << 24, &n)) return 1;
            o->ctx = n;
        } else if (IS("-b", "--batch")) {
            NEED_VALUE();
            if (parse_long(a, v, 1, 1 << 16, &n)) return 1;
            o->batch = n;
        } else if (IS("--temp", "--temperature")) {
            NEED_VALUE();
            if (parse_float(a, v, 0, 100, &o->temp)) return 1;
            o->has_temp = 1;
        } else if (IS("--top-k", NULL)) {
            NEED_VALUE();
            if (parse_long(a, v, 0, 1 << 30, &n)) return 1;
            o->top_k = (int)n;
            o->has_top_k = 1;
        } else if (IS("--top-p", NULL)) {
            NEED_VALUE();
            if (parse_float(a, v, 1e-6, 1, &o->top_p)) return 1;
            o->has_top_p = 1;
        } else if (IS("--min-p", NULL)) {
            NEED_VALUE();
            if (parse_float(a, v, 0, 0.999999, &o->min_p)) return 1;
            o->has_min_p = 1;
        } else if (IS("--repeat-penalty", NULL)) {
            NEED_VALUE();
            if (parse_float(a, v, 1e-3, 100, &o->penalty)) return 1;
            o->has_penalty = 1;
        } else if (IS("--seed", NULL)) {
            NEED_VALUE();
            if (parse_long(a, v, 0, (long long)(~0ull >> 1), &n)) return 1;
            o->seed = (uint64_t)n;
            o->has_seed = 1;
        } else
            return cli_error("%s: unknown option '%s' (see gemma4c --help)", command, a);
#undef IS
#undef NEED_VALUE
    }
    return 0;
}

int cli_media_items(const cli_opts *o, g4_media_item *items) {
    for (int i = 0; i < o->n_media; i++) {
        const char *k = o->media_kind[i];
        items[i] = (g4_media_item){strcmp(k, "image") == 0   ? G4_MEDIA_IMAGE
                                   : strcmp(k, "audio") == 0 ? G4_MEDIA_AUDIO
                                                             : G4_MEDIA_VIDEO,
                                   o->media[i], NULL, 0, o->max_soft_tokens};
    }
    return o->n_media;
}

int cli_open_session(const cli_opts *o, g4_session **s) {
    g4_session_params p = {o->threads, o->ctx, o->batch, o->quant};
    g4_err err = {0};
    if (g4_session_open(o->model, &p, s, &err)) return cli_error("%s", err.msg);
    return 0;
}

void cli_sampling(const cli_opts *o, const g4_session *s, g4_sampler_params *sp) {
    g4_session_default_sampling(s, sp);
    if (o->has_temp) {
        sp->temperature = o->temp;
        sp->greedy = o->temp == 0;
    }
    if (o->has_top_k) sp->top_k = o->top_k;
    if (o->has_top_p) sp->top_p = o->top_p;
    if (o->has_min_p) sp->min_p = o->min_p;
    if (o->has_penalty) sp->repetition_penalty = o->penalty;
    if (o->greedy) sp->greedy = 1;
    sp->seed = o->has_seed ? o->seed : (uint64_t)time(NULL);
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) return cmd_run(argc, argv);
    if (strcmp(cmd, "chat") == 0) return cmd_chat(argc, argv);
    if (strcmp(cmd, "logits") == 0) return cmd_logits(argc, argv);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc, argv);
    if (strcmp(cmd, "convert") == 0) return cmd_convert(argc, argv);
    if (strcmp(cmd, "features") == 0) return cmd_features(argc, argv);
    if (strcmp(cmd, "serve") == 0)
        return cli_error("'%s' is not available in this build yet", cmd);
    return cli_error("unknown command '%s' (see gemma4c --help)", cmd);
}
