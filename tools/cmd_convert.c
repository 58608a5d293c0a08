/* cmd_convert.c — `gemma4c convert HF_DIR -o OUT.gguf [--quant q4|q4-mix|q6|q8|bf16|f32] [--tensor-type PATTERN=TYPE]
 * [--calibration FILE|none | --calibration-ids FILE]`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void progress(void *ctx, size_t done, size_t total, const char *name) {
    if (isatty(STDERR_FILENO)) fprintf(stderr, "\r[%zu/%zu] %-70.70s", done, total, name);
    if (done == total && isatty(STDERR_FILENO)) fputc('\n', stderr);
}

enum { CALIBRATION_MAX_BYTES = 1 << 20 };

/* A calibration file, whole (text or ids); NULL after an error line. */
static char *read_calibration(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("%s: cannot open the calibration file (%s)", path, strerror(errno));
        return NULL;
    }
    char *text = cli_read_all(f, CALIBRATION_MAX_BYTES, len);
    fclose(f);
    if (!text) cli_error("%s: cannot read the calibration file (at most 1 MiB)", path);
    return text;
}

/* Decimal token ids separated by spaces, commas or line breaks; NULL after an error line. */
static int32_t *parse_ids(const char *path, const char *text, size_t *n) {
    int32_t *ids = malloc((strlen(text) / 2 + 1) * sizeof *ids); /* each id takes a digit and a separator */
    *n = 0;
    if (!ids) {
        cli_error("out of memory");
        return NULL;
    }
    for (const char *p = text;;) {
        p += strspn(p, " \t\r\n,");
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && !strchr(" \t\r\n,", *end))) {
            cli_error("%s: token id %zu is not a non-negative integer ('%.20s')", path, *n + 1, p);
            free(ids);
            return NULL;
        }
        ids[(*n)++] = (int32_t)v;
        p = end;
    }
    if (!*n) {
        cli_error("%s: no token ids", path);
        free(ids);
        return NULL;
    }
    return ids;
}

int cmd_convert(int argc, char **argv) {
    if (argc < 3 || argv[2][0] == '-') return cli_error("convert: usage: gemma4c convert HF_DIR -o OUT.gguf [--quant q4|q4-mix|q6|q8|bf16|f32]");
    cli_opts o;
    int rc = cli_parse(argc, argv, 3, &o, "convert");
    if (rc) return rc == 2 ? 0 : 1;
    if (!o.out) return cli_error("convert: -o OUT.gguf is required");
    if (o.calibration && o.calibration_ids) return cli_error("convert: give --calibration or --calibration-ids, not both");
    gemma4c_convert_params p = {o.quant, o.overrides, (size_t)o.n_overrides, o.threads, progress, NULL};
    char *text = NULL;
    int32_t *ids = NULL;
    if (o.calibration && !strcmp(o.calibration, "none")) p.no_calibration = 1;
    else if (o.calibration) {
        if (!(text = read_calibration(o.calibration, &p.calibration_text_len))) return 1;
        if (!p.calibration_text_len) return free(text), cli_error("%s: the calibration text is empty", o.calibration);
        p.calibration_text = text;
    } else if (o.calibration_ids) {
        size_t len;
        if (!(text = read_calibration(o.calibration_ids, &len))) return 1;
        if (strlen(text) != len) return free(text), cli_error("%s: a NUL byte among the token ids", o.calibration_ids);
        ids = parse_ids(o.calibration_ids, text, &p.n_calibration_ids);
        if (!ids) return free(text), 1;
        p.calibration_ids = ids;
    }
    char err[512];
    rc = gemma4c_convert(argv[2], o.out, &p, err, sizeof err);
    free(text);
    free(ids);
    return rc ? cli_error("%s", err) : 0;
}
