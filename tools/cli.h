/* cli.h — what the gemma4c subcommands share: parsed options, the error convention, model loading. */
#ifndef G4_CLI_H
#define G4_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "gemma4c.h"

#define CLI_MAX_LIST 64
#define CLI_MAX_RUNS 20    /* bench --runs */
#define CLI_MAX_PARALLEL 8 /* bench --parallel entries */

typedef struct cli_opts {
    const char *model; /* NULL: the small synthetic model */
    const char *prompt;
    const char *system;
    const char *ids; /* logits: comma-separated token ids */
    const char *input; /* batch: requests.jsonl */
    const char *out;
    const char *stops[CLI_MAX_LIST];
    int n_stops;
    gemma4c_media media[CLI_MAX_LIST]; /* --image/--audio/--video, in order */
    int n_media;
    int max_soft_tokens;
    int max_tokens; /* -1: not given */
    int threads;
    const char *device; /* cpu (NULL) or cuda */
    int64_t ctx, batch;
    int verbose, think, raw, greedy, json_object;
    const char *json_schema; /* --json-schema: a file holding the schema */
    /* convert, synthetic models */
    const char *quant;
    const char *overrides[CLI_MAX_LIST];
    int n_overrides;
    const char *calibration;     /* a text file, or "none" */
    const char *calibration_ids; /* a file of token ids */
    /* bench, batch */
    const char *shape;
    int bench_prompt, bench_runs, json, no_bandwidth;
    int parallel[CLI_MAX_PARALLEL], n_parallel;
    /* serve */
    const char *host, *api_key, *media_dir;
    int port, queue, cache_sessions, max_connections; /* -1: not given */
    int64_t max_body, kv_budget;
    /* sampling overrides; the model's generation_config.json supplies the rest */
    int has_temp, has_top_k, has_top_p, has_min_p, has_penalty, has_seed;
    float temp, top_p, min_p, penalty;
    int top_k;
    uint64_t seed;
} cli_opts;

/* Parses argv[first..] for `command`, refusing options that command does not take. Returns 0, 2 after --help
 * (printed), or 1 after printing one error line. */
int cli_parse(int argc, char **argv, int first, cli_opts *o, const char *command);

/* A whole stream (at most `limit` bytes), NUL-terminated, its length in *len (may be NULL); NULL when it is longer,
 * unreadable or memory runs out. */
char *cli_read_all(FILE *f, size_t limit, size_t *len);

/* Prints "gemma4c: error: <msg>" on stderr and returns 1 (the exit status of a failed command). */
int cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Loads -m (or the synthetic model) with -t, -b and --quant; says so on stderr when its weights are random. */
int cli_load_model(const cli_opts *o, gemma4c_model **m);
/* A session of -c tokens (0: the default). */
int cli_new_session(const cli_opts *o, gemma4c_model *m, gemma4c_session **s);
/* Generation options from the command line: the model's sampling, overridden by --temp etc., --greedy. */
void cli_generate_options(const cli_opts *o, const gemma4c_model *m, gemma4c_generate_options *g);

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_features(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
