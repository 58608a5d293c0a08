/* cmd_convert.c — `gemma4c convert HF_DIR -o OUT.gguf [--quant q4|q4-mix|q8|bf16|f32] [--tensor-type PATTERN=TYPE]`. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void progress(void *ctx, size_t done, size_t total, const char *name) {
    if (isatty(STDERR_FILENO)) fprintf(stderr, "\r[%zu/%zu] %-70.70s", done, total, name);
    if (done == total && isatty(STDERR_FILENO)) fputc('\n', stderr);
}

int cmd_convert(int argc, char **argv) {
    if (argc < 3 || argv[2][0] == '-') return cli_error("convert: usage: gemma4c convert HF_DIR -o OUT.gguf [--quant q4|q4-mix|q8|bf16|f32]");
    cli_opts o;
    int rc = cli_parse(argc, argv, 3, &o, "convert");
    if (rc) return rc == 2 ? 0 : 1;
    if (!o.out) return cli_error("convert: -o OUT.gguf is required");
    gemma4c_convert_params p = {o.quant, o.overrides, (size_t)o.n_overrides, o.threads, progress, NULL};
    char err[512];
    if (gemma4c_convert(argv[2], o.out, &p, err, sizeof err)) return cli_error("%s", err);
    return 0;
}
