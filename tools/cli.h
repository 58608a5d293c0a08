/* cli.h — what the gemma4c subcommands share: parsed options and the error convention. */
#ifndef G4_CLI_H
#define G4_CLI_H

#include <stdint.h>

#include "runtime/media.h"
#include "runtime/session.h"

#define CLI_MAX_LIST 64
#define CLI_MAX_RUNS 20 /* bench --runs */

typedef struct cli_opts {
    const char *model; /* NULL: the small synthetic model */
    const char *prompt;
    const char *system;
    const char *ids; /* logits: comma-separated token ids */
    const char *out;
    const char *stops[CLI_MAX_LIST];
    int n_stops;
    const char *media[CLI_MAX_LIST]; /* --image/--audio/--video, in order (not supported yet) */
    const char *media_kind[CLI_MAX_LIST]; /* "image", "audio", "video" */
    int n_media;
    int max_soft_tokens;
    int max_tokens; /* -1: not given */
    int threads;
    int64_t ctx, batch;
    int verbose, think, raw, greedy;
    /* convert */
    const char *quant;
    const char *overrides[CLI_MAX_LIST];
    int n_overrides;
    /* bench */
    const char *shape;
    int bench_prompt, bench_runs, json, no_bandwidth;
    /* sampling overrides; the model's generation_config.json supplies the rest */
    int has_temp, has_top_k, has_top_p, has_min_p, has_penalty, has_seed;
    float temp, top_p, min_p, penalty;
    int top_k;
    uint64_t seed;
} cli_opts;

/* Parses argv[first..]; prints one error line and returns non-zero on bad options. `allowed` lists the
 * options this command takes, e.g. "m p n t". */
int cli_parse(int argc, char **argv, int first, cli_opts *o, const char *command);

/* Prints "gemma4c: error: <msg>" on stderr and returns 1 (the exit status of a failed command). */
int cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

int cli_open_session(const cli_opts *o, g4_session **s);
/* The --image/--audio/--video inputs as media items (items has room for CLI_MAX_LIST); returns their count. */
int cli_media_items(const cli_opts *o, g4_media_item *items);
void cli_sampling(const cli_opts *o, const g4_session *s, g4_sampler_params *sp);

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_features(int argc, char **argv);

#endif
