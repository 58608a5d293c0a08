/* gemma4c.c — the gemma4c command: option parsing shared by the subcommands, model loading, and dispatch. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)

static const char usage[] =
    "usage: gemma4c <command> [options]\n"
    "\n"
    "commands:\n"
    "  run     -m MODEL [-p PROMPT]      answer one prompt, streaming (no -m: a small synthetic model)\n"
    "  chat    -m MODEL                  interactive multi-turn chat (/image F, /audio F, /video F, /save F,\n"
    "                                    /load F, /reset, /exit)\n"
    "  batch   -m MODEL -i REQUESTS.jsonl [-o RESULTS.jsonl] [--parallel N]\n"
    "                                    OpenAI Batch API lines, run concurrently; results in input order\n"
    "  logits  -m MODEL --ids 2,105,... --out F.safetensors   logits of every position\n"
    "  convert HF_DIR -o OUT.gguf [--quant q4|q4-mix|q6|q8|bf16|f32] [--tensor-type 'PATTERN=TYPE']...\n"
    "          [--calibration FILE|none | --calibration-ids FILE]\n"
    "                                    one GGUF file: config, tokenizer, template, (quantized) tensors\n"
    "  features -m MODEL (--image F [--max-soft-tokens N] | --video F | --audio F) --out F.safetensors\n"
    "                                    an encoder's soft tokens and its preprocessed input\n"
    "  serve   -m MODEL [--host 127.0.0.1] [--port 8080] [--parallel 4] [--queue 64] [-c N] [--api-key KEY]\n"
    "          [--media-dir DIR] [--max-body BYTES] [--kv-budget MIB] [--cache-sessions N]\n"
    "                                    OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions,\n"
    "                                    /v1/models, /health, /metrics, /tokenize, /detokenize) and a chat page\n"
    "  bench   [-m MODEL | --shape e2b|e4b|small [--quant R]] [-t N] [--prompt-tokens 512] [-n 128] [--runs 3]\n"
    "          [--parallel 1,4,8,16,32] [--json] [--no-bandwidth] [--image F] [--video F] [--audio F]\n"
    "                                    prefill/decode speed (decode: --runs runs from the prompt's state),\n"
    "                                    time to first token, peak RSS, bytes/token, the read bandwidth of\n"
    "                                    this machine around the decode runs, each encoder's time; with\n"
    "                                    --parallel, aggregate decode speed of that many sessions at once\n"
    "\n"
    "MODEL is a Hugging Face model directory, a .gguf file from `gemma4c convert`, a repo id found in the\n"
    "Hugging Face cache (e.g. google/gemma-4-E4B-it after `hf download google/gemma-4-E4B-it`), or\n"
    "synthetic:small|e2b|e4b (random weights; --quant q4|q4-mix|q6|q8|bf16|f32 chooses their storage).\n"
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
    "  --json-object           the answer is one JSON object (enforced token by token; ends when it closes)\n"
    "  --json-schema F         the same, matching the JSON Schema in file F (see the README for what it may use)\n"
    "  --raw                   use the prompt as is, without the chat format\n"
    "  -t, --threads N         worker threads (default: all CPUs)\n"
    "  --device cpu|cuda       where the model runs (default cpu; cuda: the first NVIDIA GPU)\n"
    "  -c, --ctx N             context length in tokens (default " CLI_STR(GEMMA4C_DEFAULT_CONTEXT) ")\n"
    "  -b, --batch N           tokens per batched step (default " CLI_STR(GEMMA4C_DEFAULT_BATCH) ")\n"
    "  --parallel N            batch: requests running at once (default 8); bench: a list of session counts\n"
    "  -v, --verbose           timings (time to first token, tokens/s) on stderr\n"
    "  --calibration F         convert q4/q4-mix/q6: calibrate the rounding on text file F (UTF-8, at most\n"
    "                          1 MiB; its first 8192 tokens) instead of the built-in text; 'none': no calibration\n"
    "  --calibration-ids F     the same from token ids (file F: decimal ids, separated by spaces, commas or lines)\n"
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

char *cli_read_all(FILE *f, size_t limit, size_t *len_out) {
    size_t len = 0, cap = 4096;
    char *b = malloc(cap);
    size_t n;
    while (b && (n = fread(b + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len > limit) {
            free(b);
            return NULL;
        }
        if (cap - len < 2) {
            char *grown = realloc(b, cap *= 2);
            if (!grown) free(b);
            b = grown;
        }
    }
    if (b && ferror(f)) free(b), b = NULL;
    if (b) b[len] = '\0';
    if (len_out) *len_out = len;
    return b;
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

/* Every option, with the commands that take it. */
typedef struct option {
    const char *name, *alias;
    int value; /* takes a value */
    const char *commands;
} option;

#define MODEL_CMDS "run chat logits features bench batch serve"
static const option options[] = {
    {"--model", "-m", 1, MODEL_CMDS},
    {"--prompt", "-p", 1, "run"},
    {"--system", "-s", 1, "run chat"},
    {"--max-tokens", "-n", 1, "run chat bench batch"},
    {"--temp", "--temperature", 1, "run chat"},
    {"--top-k", NULL, 1, "run chat"},
    {"--top-p", NULL, 1, "run chat"},
    {"--min-p", NULL, 1, "run chat"},
    {"--repeat-penalty", NULL, 1, "run chat"},
    {"--seed", NULL, 1, "run chat"},
    {"--greedy", NULL, 0, "run chat"},
    {"--stop", NULL, 1, "run chat"},
    {"--think", NULL, 0, "run chat"},
    {"--json-object", NULL, 0, "run chat"},
    {"--json-schema", NULL, 1, "run chat"},
    {"--raw", NULL, 0, "run"},
    {"--threads", "-t", 1, MODEL_CMDS " convert"},
    {"--device", NULL, 1, MODEL_CMDS},
    {"--ctx", "-c", 1, "run chat logits batch serve"},
    {"--ctx-size", NULL, 1, "serve"},
    {"--batch", "-b", 1, "run chat logits bench batch serve"},
    {"--verbose", "-v", 0, "run chat batch"},
    {"--host", NULL, 1, "serve"},
    {"--port", NULL, 1, "serve"},
    {"--queue", NULL, 1, "serve"},
    {"--api-key", NULL, 1, "serve"},
    {"--media-dir", NULL, 1, "serve"},
    {"--max-body", NULL, 1, "serve"},
    {"--kv-budget", NULL, 1, "serve"},
    {"--cache-sessions", NULL, 1, "serve"},
    {"--max-connections", NULL, 1, "serve"},
    {"--image", NULL, 1, "run chat logits features bench"},
    {"--audio", NULL, 1, "run chat logits features bench"},
    {"--video", NULL, 1, "run chat logits features bench"},
    {"--max-soft-tokens", NULL, 1, "run chat logits features"},
    {"--ids", NULL, 1, "logits"},
    {"--out", "-o", 1, "logits features convert batch"},
    {"--input", "-i", 1, "batch"},
    {"--quant", "-q", 1, MODEL_CMDS " convert"},
    {"--tensor-type", NULL, 1, "convert"},
    {"--calibration", NULL, 1, "convert"},
    {"--calibration-ids", NULL, 1, "convert"},
    {"--shape", NULL, 1, "bench"},
    {"--prompt-tokens", NULL, 1, "bench"},
    {"--runs", NULL, 1, "bench"},
    {"--parallel", NULL, 1, "bench batch serve"},
    {"--json", NULL, 0, "bench"},
    {"--no-bandwidth", NULL, 0, "bench"},
    {"--help", "-h", 0, "run chat logits features convert bench batch serve"},
};

static int takes(const option *op, const char *command) {
    size_t n = strlen(command);
    for (const char *p = op->commands; (p = strstr(p, command)); p += n)
        if ((p == op->commands || p[-1] == ' ') && (p[n] == ' ' || !p[n])) return 1;
    return 0;
}

/* "1,4,8" -> counts of sessions. */
static int parse_parallel_list(const char *v, cli_opts *o) {
    o->n_parallel = 0;
    for (const char *p = v; *p;) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 1 || x > 256) return cli_error("--parallel expects counts in [1, 256], got '%s'", v);
        if (o->n_parallel == CLI_MAX_PARALLEL) return cli_error("--parallel: at most %d counts", CLI_MAX_PARALLEL);
        o->parallel[o->n_parallel++] = (int)x;
        p = end;
        if (*p == ',') p++;
        else if (*p) return cli_error("--parallel expects a comma-separated list, got '%s'", v);
    }
    return o->n_parallel ? 0 : cli_error("--parallel needs a value");
}

int cli_parse(int argc, char **argv, int first, cli_opts *o, const char *command) {
    memset(o, 0, sizeof *o);
    o->max_tokens = -1; /* unset */
    o->port = o->queue = o->cache_sessions = o->max_connections = -1;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const option *op = NULL;
        for (size_t k = 0; k < sizeof options / sizeof *options && !op; k++)
            if (strcmp(a, options[k].name) == 0 || (options[k].alias && strcmp(a, options[k].alias) == 0)) op = &options[k];
        if (!op) return cli_error("%s: unknown option '%s' (see gemma4c --help)", command, a);
        if (!takes(op, command)) return cli_error("%s does not take %s (see gemma4c --help)", command, op->name);
        const char *v = NULL;
        if (op->value) {
            if (i + 1 >= argc) return cli_error("%s needs a value", a);
            v = argv[++i];
        }
        const char *name = op->name;
        long long n = 0;
#define IS(s) (strcmp(name, s) == 0)
        if (IS("--help")) {
            fputs(usage, stdout);
            return 2;
        } else if (IS("--verbose")) o->verbose = 1;
        else if (IS("--think")) o->think = 1;
        else if (IS("--json-object")) o->json_object = 1;
        else if (IS("--json-schema")) o->json_schema = v, o->json_object = 1;
        else if (IS("--raw")) o->raw = 1;
        else if (IS("--greedy")) o->greedy = 1;
        else if (IS("--json")) o->json = 1;
        else if (IS("--no-bandwidth")) o->no_bandwidth = 1;
        else if (IS("--quant")) o->quant = v;
        else if (IS("--model")) o->model = v;
        else if (IS("--prompt")) o->prompt = v;
        else if (IS("--system")) o->system = v;
        else if (IS("--ids")) o->ids = v;
        else if (IS("--out")) o->out = v;
        else if (IS("--input")) o->input = v;
        else if (IS("--host")) o->host = v;
        else if (IS("--api-key")) o->api_key = v;
        else if (IS("--media-dir")) o->media_dir = v;
        else if (IS("--port")) {
            if (parse_long(a, v, 0, 65535, &n)) return 1;
            o->port = (int)n;
        } else if (IS("--queue")) {
            if (parse_long(a, v, 0, 1 << 16, &n)) return 1;
            o->queue = (int)n;
        } else if (IS("--cache-sessions")) {
            if (parse_long(a, v, 0, 1 << 12, &n)) return 1;
            o->cache_sessions = (int)n;
        } else if (IS("--max-connections")) {
            if (parse_long(a, v, 1, 1 << 16, &n)) return 1;
            o->max_connections = (int)n;
        } else if (IS("--max-body")) {
            if (parse_long(a, v, 1024, 1LL << 32, &n)) return 1;
            o->max_body = n;
        } else if (IS("--kv-budget")) {
            if (parse_long(a, v, 1, 1LL << 24, &n)) return 1;
            o->kv_budget = n << 20;
        }
        else if (IS("--calibration")) o->calibration = v;
        else if (IS("--calibration-ids")) o->calibration_ids = v;
        else if (IS("--tensor-type")) {
            if (o->n_overrides == CLI_MAX_LIST) return cli_error("too many --tensor-type overrides");
            o->overrides[o->n_overrides++] = v;
        } else if (IS("--shape")) {
            if (strcmp(v, "e2b") && strcmp(v, "e4b") && strcmp(v, "small"))
                return cli_error("--shape expects e2b, e4b or small, got '%s'", v);
            o->shape = v;
        } else if (IS("--max-soft-tokens")) {
            if (parse_long(a, v, 70, 1120, &n) || (n != 70 && n != 140 && n != 280 && n != 560 && n != 1120))
                return cli_error("--max-soft-tokens expects 70, 140, 280, 560 or 1120, got '%s'", v);
            o->max_soft_tokens = (int)n;
        } else if (IS("--prompt-tokens")) {
            if (parse_long(a, v, 1, 1 << 20, &n)) return 1;
            o->bench_prompt = (int)n;
        } else if (IS("--runs")) {
            if (parse_long(a, v, 1, CLI_MAX_RUNS, &n)) return 1;
            o->bench_runs = (int)n;
        } else if (IS("--parallel")) {
            if (parse_parallel_list(v, o)) return 1;
            if (strcmp(command, "bench") && o->n_parallel != 1) return cli_error("--parallel expects one number here");
        } else if (IS("--stop")) {
            if (o->n_stops == CLI_MAX_LIST) return cli_error("too many --stop strings");
            if (!*v) return cli_error("--stop needs a non-empty string");
            o->stops[o->n_stops++] = v;
        } else if (IS("--image") || IS("--audio") || IS("--video")) {
            if (o->n_media == CLI_MAX_LIST) return cli_error("too many media files");
            o->media[o->n_media++] = (gemma4c_media){IS("--image")   ? GEMMA4C_MEDIA_IMAGE
                                                     : IS("--audio") ? GEMMA4C_MEDIA_AUDIO
                                                                     : GEMMA4C_MEDIA_VIDEO,
                                                     v, NULL, 0, 0};
        } else if (IS("--max-tokens")) {
            if (parse_long(a, v, 0, 1 << 30, &n)) return 1;
            o->max_tokens = (int)n;
        } else if (IS("--device")) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda")) return cli_error("--device expects cpu or cuda, got '%s'", v);
            o->device = v;
        } else if (IS("--threads")) {
            if (parse_long(a, v, 1, 1024, &n)) return 1;
            o->threads = (int)n;
        } else if (IS("--ctx") || IS("--ctx-size")) {
            if (parse_long(a, v, 16, 1 << 24, &n)) return 1;
            o->ctx = n;
        } else if (IS("--batch")) {
            if (parse_long(a, v, 1, 1 << 16, &n)) return 1;
            o->batch = n;
        } else if (IS("--temp")) {
            if (parse_float(a, v, 0, 100, &o->temp)) return 1;
            o->has_temp = 1;
        } else if (IS("--top-k")) {
            if (parse_long(a, v, 0, 1 << 30, &n)) return 1;
            o->top_k = (int)n;
            o->has_top_k = 1;
        } else if (IS("--top-p")) {
            if (parse_float(a, v, 1e-6, 1, &o->top_p)) return 1;
            o->has_top_p = 1;
        } else if (IS("--min-p")) {
            if (parse_float(a, v, 0, 0.999999, &o->min_p)) return 1;
            o->has_min_p = 1;
        } else if (IS("--repeat-penalty")) {
            if (parse_float(a, v, 1e-3, 100, &o->penalty)) return 1;
            o->has_penalty = 1;
        } else if (IS("--seed")) {
            if (parse_long(a, v, 0, (long long)(~0ull >> 1), &n)) return 1;
            o->seed = (uint64_t)n;
            o->has_seed = 1;
        }
#undef IS
    }
    for (int i = 0; i < o->n_media; i++)
        if (o->media[i].kind == GEMMA4C_MEDIA_IMAGE) o->media[i].max_soft_tokens = o->max_soft_tokens;
    return 0;
}

int cli_load_model(const cli_opts *o, gemma4c_model **m) {
    gemma4c_model_params p = {o->model, NULL, o->threads, (int)o->batch, o->kv_budget, o->device};
    if (o->quant) {
        if (o->model && strncmp(o->model, "synthetic:", 10))
            return cli_error("--quant applies to synthetic models (to convert a checkpoint: gemma4c convert)");
        p.synthetic_quant = o->quant;
    }
    char err[512];
    if (gemma4c_model_load(&p, m, err, sizeof err)) return cli_error("%s", err);
    gemma4c_model_info info;
    gemma4c_model_get_info(*m, &info);
    if (info.synthetic && !o->json)
        fprintf(stderr, "gemma4c: %s: a synthetic Gemma 4 model with RANDOM weights; its answers are noise%s\n",
                info.source, o->model ? "" : ". Try -m google/gemma-4-E4B-it for a real one");
    else if (info.byte_level_tokenizer && o->verbose)
        fprintf(stderr, "gemma4c: %s has no tokenizer.json: using a byte-level tokenizer\n", info.source);
    return 0;
}

int cli_new_session(const cli_opts *o, gemma4c_model *m, gemma4c_session **s) {
    gemma4c_session_params p = {o->ctx};
    char err[512];
    if (gemma4c_session_new(m, &p, s, err, sizeof err)) return cli_error("%s", err);
    return 0;
}

void cli_generate_options(const cli_opts *o, const gemma4c_model *m, gemma4c_generate_options *g) {
    memset(g, 0, sizeof *g);
    gemma4c_sampling_from_model(m, &g->sampling);
    gemma4c_sampling *s = &g->sampling;
    if (o->has_temp) s->temperature = o->temp;
    if (o->has_top_k) s->top_k = o->top_k;
    if (o->has_top_p) s->top_p = o->top_p;
    if (o->has_min_p) s->min_p = o->min_p;
    if (o->has_penalty) s->repetition_penalty = o->penalty;
    if (o->greedy) s->temperature = 0;
    s->seed = o->has_seed ? o->seed : (uint64_t)time(NULL);
    g->max_tokens = o->max_tokens < 0 ? 512 : o->max_tokens;
    g->stop = o->stops;
    g->n_stop = (size_t)o->n_stops;
    g->keep_special = o->think; /* thinking mode shows the thought channel's markers */
    g->json = o->json_object ? (o->think ? GEMMA4C_JSON_AFTER_THOUGHT : 1) : 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("gemma4c %s\n", gemma4c_version());
        return 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) return cmd_run(argc, argv);
    if (strcmp(cmd, "chat") == 0) return cmd_chat(argc, argv);
    if (strcmp(cmd, "batch") == 0) return cmd_batch(argc, argv);
    if (strcmp(cmd, "logits") == 0) return cmd_logits(argc, argv);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc, argv);
    if (strcmp(cmd, "convert") == 0) return cmd_convert(argc, argv);
    if (strcmp(cmd, "features") == 0) return cmd_features(argc, argv);
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc, argv);
    return cli_error("unknown command '%s' (see gemma4c --help)", cmd);
}
