/* cmd_logits.c — `gemma4c logits`: float32 logits of every position of a token sequence, as safetensors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "format/safetensors.h"

static int parse_ids(const char *text, g4_ids *ids) {
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX)
            return cli_error("--ids: '%.20s' is not a token id (expected comma-separated integers)", p);
        if (g4_ids_push(ids, (int32_t)v)) return cli_error("out of memory");
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') {
            p++;
            if (!*p) return cli_error("--ids: trailing comma");
        } else if (*p)
            return cli_error("--ids: unexpected '%c'", *p);
    }
    if (ids->n == 0) return cli_error("--ids: no token ids given");
    return 0;
}

int cmd_logits(int argc, char **argv) {
    cli_opts o;
    int rc = cli_parse(argc, argv, 2, &o, "logits");
    if (rc) return rc == 2 ? 0 : 1;
    if (!o.model) return cli_error("logits: -m MODEL is required");
    if (!o.ids) return cli_error("logits: --ids is required");
    if (!o.out) return cli_error("logits: --out FILE.safetensors is required");
    g4_ids ids = {0};
    if (parse_ids(o.ids, &ids)) {
        g4_ids_free(&ids);
        return 1;
    }
    o.ctx = (int64_t)ids.n; /* the decoder checks it against the model's maximum */
    g4_session *s;
    if (cli_open_session(&o, &s)) {
        g4_ids_free(&ids);
        return 1;
    }
    g4_err err = {0};
    const int64_t T = (int64_t)ids.n, V = s->m->cfg.text.vocab_size;
    if (T > s->d.n_ctx)
        rc = g4_fail(&err, GEMMA4C_ERR_CONTEXT, "%lld tokens exceed the model's context of %lld", (long long)T,
                     (long long)s->d.n_ctx);
    float *all = NULL;
    if (!rc && !(all = malloc((size_t)(T * V) * sizeof(float))))
        rc = g4_fail(&err, GEMMA4C_ERR_NOMEM, "out of memory for %lld x %lld logits", (long long)T, (long long)V);
    g4_media_item items[CLI_MAX_LIST];
    g4_media_tokens media = {0};
    int n_items = cli_media_items(&o, items);
    if (!rc && n_items) rc = g4_media_encode(s, items, (size_t)n_items, &media, &err);
    if (!rc) rc = g4_media_check_runs(s->m, ids.v, ids.n, &media, &err);
    if (!rc) {
        g4_forward_opts fo = {0};
        memcpy(fo.soft, media.soft, sizeof fo.soft);
        rc = g4_decoder_forward_all_logits_with(&s->d, ids.v, T, &fo, all, &err);
    }
    g4_media_tokens_free(&media);
    if (!rc) {
        g4_tensor t = {"logits", G4_DT_F32, 2, {T, V}, all, (size_t)(T * V) * sizeof(float)};
        g4_st_meta meta[] = {{"about", "logits[t] predicts token t+1 (softcapped), float32, computed by gemma4c"}};
        rc = g4_st_write(o.out, &t, 1, meta, 1, &err);
    }
    free(all);
    g4_ids_free(&ids);
    g4_session_close(s);
    return rc ? cli_error("%s", err.msg) : 0;
}
