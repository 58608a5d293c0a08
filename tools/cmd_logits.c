/* cmd_logits.c — `gemma4c logits`: float32 logits of every position of a token sequence, as safetensors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* "2,105,300" -> ids (malloc'ed). */
static int parse_ids(const char *text, int32_t **out, size_t *n) {
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    for (const char *p = text; *p;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX)
            return cli_error("--ids: '%.20s' is not a token id (expected comma-separated integers)", p);
        if (*n == cap) {
            int32_t *grown = realloc(*out, (cap = cap ? 2 * cap : 256) * sizeof *grown);
            if (!grown) return cli_error("out of memory");
            *out = grown;
        }
        (*out)[(*n)++] = (int32_t)v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') {
            p++;
            if (!*p) return cli_error("--ids: trailing comma");
        } else if (*p)
            return cli_error("--ids: unexpected '%c'", *p);
    }
    return *n ? 0 : cli_error("--ids: no token ids given");
}

int cmd_logits(int argc, char **argv) {
    cli_opts o;
    int rc = cli_parse(argc, argv, 2, &o, "logits");
    if (rc) return rc == 2 ? 0 : 1;
    if (!o.model) return cli_error("logits: -m MODEL is required");
    if (!o.ids) return cli_error("logits: --ids is required");
    if (!o.out) return cli_error("logits: --out FILE.safetensors is required");
    int32_t *ids = NULL;
    size_t T = 0;
    if (parse_ids(o.ids, &ids, &T)) {
        free(ids);
        return 1;
    }
    gemma4c_model *m = NULL;
    gemma4c_session *s = NULL;
    gemma4c_model_info info;
    if (!o.ctx) o.ctx = (int64_t)T;
    if (cli_load_model(&o, &m) || gemma4c_model_get_info(m, &info) ||
        (o.ctx > info.max_context && (rc = cli_error("%zu tokens exceed the model's context of %lld", T,
                                                     (long long)info.max_context))) ||
        cli_new_session(&o, m, &s)) {
        gemma4c_model_free(m);
        free(ids);
        return 1;
    }
    const int64_t V = info.vocab_size;
    float *all = malloc(T * (size_t)V * sizeof(float));
    char err[512];
    if (!all) rc = cli_error("out of memory for %zu x %lld logits", T, (long long)V);
    else if (gemma4c_logits(s, ids, T, o.media, (size_t)o.n_media, all, err, sizeof err)) rc = cli_error("%s", err);
    if (!rc) {
        gemma4c_tensor t = {"logits", GEMMA4C_F32, 2, {(int64_t)T, V}, all};
        if (gemma4c_save_tensors(o.out, &t, 1, "logits[t] predicts token t+1 (softcapped), float32, computed by gemma4c",
                                 err, sizeof err))
            rc = cli_error("%s", err);
    }
    free(all);
    free(ids);
    gemma4c_session_free(s);
    gemma4c_model_free(m);
    return rc;
}
