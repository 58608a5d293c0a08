/* api.c — the public C API (include/gemma4c.h) over sessions: JSON in, streamed text out, messages as strings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemma4c.h"
#include "runtime/session.h"

struct gemma4c_session {
    g4_session *s;
};

static int report(const g4_err *e, int rc, char *err, size_t err_len) {
    if (rc && err && err_len) snprintf(err, err_len, "%s", e->msg);
    return rc;
}

const char *gemma4c_status_name(int status) {
    switch (status) {
    case GEMMA4C_OK: return "ok";
    case GEMMA4C_ERR_IO: return "i/o error";
    case GEMMA4C_ERR_FORMAT: return "format error";
    case GEMMA4C_ERR_SHAPE: return "shape mismatch";
    case GEMMA4C_ERR_NOMEM: return "out of memory";
    case GEMMA4C_ERR_ARG: return "invalid argument";
    case GEMMA4C_ERR_UNSUPPORTED: return "unsupported";
    case GEMMA4C_ERR_CONTEXT: return "context exceeded";
    default: return "internal error";
    }
}

int gemma4c_open(const gemma4c_params *params, gemma4c_session **out, char *err, size_t err_len) {
    g4_err e = {0};
    if (!out) return report(&e, g4_fail(&e, GEMMA4C_ERR_ARG, "gemma4c_open: out is NULL"), err, err_len);
    *out = NULL;
    gemma4c_params none = {0};
    if (!params) params = &none;
    gemma4c_session *h = calloc(1, sizeof *h);
    if (!h) return report(&e, g4_fail(&e, GEMMA4C_ERR_NOMEM, "out of memory"), err, err_len);
    g4_session_params sp = {params->n_threads, params->n_ctx, params->n_batch, NULL};
    int rc = g4_session_open(params->model, &sp, &h->s, &e);
    if (rc) {
        free(h);
        return report(&e, rc, err, err_len);
    }
    *out = h;
    return 0;
}

void gemma4c_close(gemma4c_session *s) {
    if (!s) return;
    g4_session_close(s->s);
    free(s);
}

int gemma4c_vocab_size(const gemma4c_session *s) { return s->s->m->cfg.text.vocab_size; }
int gemma4c_is_synthetic(const gemma4c_session *s) { return s->s->m->synthetic; }

static void to_params(const gemma4c_session *s, const gemma4c_generate_options *o, g4_generate_params *gp,
                      g4_sampler_params *sp) {
    memset(gp, 0, sizeof *gp);
    gp->max_tokens = o ? o->max_tokens : 0;
    gp->stop_ids = s->s->m->gen.eos_ids;
    gp->n_stop_ids = (size_t)s->s->m->gen.n_eos;
    gp->stop_strings = o ? o->stop : NULL;
    gp->n_stop_strings = o ? o->n_stop : 0;
    gp->skip_special = 1;
    if (!o || o->use_model_sampling) {
        g4_session_default_sampling(s->s, sp);
        if (o) sp->seed = o->seed;
        return;
    }
    sp->greedy = o->greedy;
    sp->temperature = o->temperature;
    sp->top_k = o->top_k;
    sp->top_p = o->top_p > 0 ? o->top_p : 1.0f;
    sp->min_p = o->min_p;
    sp->repetition_penalty = o->repetition_penalty > 0 ? o->repetition_penalty : 1.0f;
    sp->seed = o->seed;
}

static int generate_ids(gemma4c_session *s, const g4_ids *ids, const gemma4c_generate_options *opt,
                        gemma4c_text_fn on_text, void *user, g4_err *e) {
    g4_generate_params gp;
    g4_sampler_params sp;
    to_params(s, opt, &gp, &sp);
    return g4_session_generate(s->s, ids->v, ids->n, &gp, &sp, on_text, user, NULL, e);
}

static int ignore_text(void *user, const char *text, size_t len) { return 0; }

int gemma4c_chat(gemma4c_session *s, const char *messages_json, const char *tools_json,
                 const gemma4c_generate_options *opt, gemma4c_text_fn on_text, void *user, char *err, size_t err_len) {
    g4_err e = {0};
    if (!s || !messages_json) return report(&e, g4_fail(&e, GEMMA4C_ERR_ARG, "gemma4c_chat: missing session or messages"), err, err_len);
    cJSON *messages = cJSON_Parse(messages_json);
    cJSON *tools = tools_json ? cJSON_Parse(tools_json) : NULL;
    int rc = 0;
    if (!messages) rc = g4_fail(&e, GEMMA4C_ERR_ARG, "messages are not valid JSON");
    else if (tools_json && !tools) rc = g4_fail(&e, GEMMA4C_ERR_ARG, "tools are not valid JSON");
    g4_ids ids = {0};
    if (!rc) {
        g4_chat_options copt = {1, opt ? opt->enable_thinking : 0, 0, NULL};
        rc = g4_session_chat_ids(s->s, messages, tools, &copt, &ids, &e);
    }
    if (!rc) rc = generate_ids(s, &ids, opt, on_text ? on_text : ignore_text, user, &e);
    g4_ids_free(&ids);
    cJSON_Delete(messages);
    cJSON_Delete(tools);
    return report(&e, rc, err, err_len);
}

int gemma4c_complete(gemma4c_session *s, const char *prompt, const gemma4c_generate_options *opt,
                     gemma4c_text_fn on_text, void *user, char *err, size_t err_len) {
    g4_err e = {0};
    if (!s || !prompt) return report(&e, g4_fail(&e, GEMMA4C_ERR_ARG, "gemma4c_complete: missing session or prompt"), err, err_len);
    g4_ids ids = {0};
    const g4_model *m = s->s->m;
    int bos = m->gen.bos_token_id >= 0 ? m->gen.bos_token_id : m->cfg.text.bos_token_id;
    int rc = g4_ids_push(&ids, bos) ? g4_fail(&e, GEMMA4C_ERR_NOMEM, "out of memory") : 0;
    if (!rc) rc = g4_tokenizer_encode(m->tok, prompt, strlen(prompt), &ids, &e);
    if (!rc) rc = generate_ids(s, &ids, opt, on_text ? on_text : ignore_text, user, &e);
    g4_ids_free(&ids);
    return report(&e, rc, err, err_len);
}

int gemma4c_tokenize(gemma4c_session *s, const char *text, int32_t *ids, size_t cap, size_t *n_ids, char *err,
                     size_t err_len) {
    g4_err e = {0};
    if (!s || !text || !n_ids) return report(&e, g4_fail(&e, GEMMA4C_ERR_ARG, "gemma4c_tokenize: missing argument"), err, err_len);
    g4_ids out = {0};
    int rc = g4_tokenizer_encode(s->s->m->tok, text, strlen(text), &out, &e);
    if (!rc) {
        *n_ids = out.n;
        if (ids) memcpy(ids, out.v, (out.n < cap ? out.n : cap) * sizeof *ids);
    }
    g4_ids_free(&out);
    return report(&e, rc, err, err_len);
}

int gemma4c_logits(gemma4c_session *s, const int32_t *ids, size_t n_ids, float *logits, char *err, size_t err_len) {
    g4_err e = {0};
    if (!s || !ids || !logits) return report(&e, g4_fail(&e, GEMMA4C_ERR_ARG, "gemma4c_logits: missing argument"), err, err_len);
    g4_decoder_rewind(&s->s->d, 0);
    s->s->cached.n = 0;
    int rc = g4_decoder_forward_all_logits(&s->s->d, ids, (int64_t)n_ids, logits, &e);
    g4_decoder_rewind(&s->s->d, 0); /* the cache no longer matches any conversation */
    return report(&e, rc, err, err_len);
}
