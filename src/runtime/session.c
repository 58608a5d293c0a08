/* session.c — conversations: building requests (tokens, media, the reused prefix), reading their events, state. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "engine.h"
#include "text/chat.h"

#define MAX_MEDIA 1024 /* media per request */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int report(const g4_err *e, int rc, char *err, size_t err_len) {
    if (err && err_len) snprintf(err, err_len, "%s", rc ? e->msg : "");
    return rc;
}

/* ---- media lists ------------------------------------------------------------------------------------------ */

/* Frees the media of a list that `keep` does not hold too, then the list. */
void g4_media_list_free(g4_medium **media, size_t n, g4_medium **keep, size_t n_keep) {
    for (size_t i = 0; i < n; i++) {
        int kept = 0;
        for (size_t j = 0; j < n_keep && !kept; j++) kept = keep[j] == media[i];
        for (size_t j = 0; j < i && !kept; j++) kept = media[j] == media[i]; /* a medium given twice */
        if (!kept) {
            g4_medium_free(media[i]);
            free(media[i]);
        }
    }
    free(media);
}

void g4_engine_leave_media(g4_engine *e, g4_medium **media, size_t n) {
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < n; i++) {
        int again = 0; /* a medium given twice is left once */
        for (size_t j = 0; j < i && !again; j++) again = media[j] == media[i];
        if (again) continue;
        g4_medium *oldest = e->handoff[G4_HANDOFF_MEDIA - 1];
        memmove(e->handoff + 1, e->handoff, (G4_HANDOFF_MEDIA - 1) * sizeof *e->handoff);
        e->handoff[0] = media[i];
        if (oldest) {
            g4_medium_free(oldest);
            free(oldest);
        }
    }
    pthread_mutex_unlock(&e->mu);
    free(media);
}

g4_medium *g4_engine_take_media(g4_engine *e, uint64_t key) {
    g4_medium *found = NULL;
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < G4_HANDOFF_MEDIA && !found; i++)
        if (e->handoff[i] && e->handoff[i]->key == key) {
            found = e->handoff[i];
            memmove(e->handoff + i, e->handoff + i + 1, (size_t)(G4_HANDOFF_MEDIA - 1 - i) * sizeof *e->handoff);
            e->handoff[G4_HANDOFF_MEDIA - 1] = NULL;
        }
    pthread_mutex_unlock(&e->mu);
    return found;
}

/* The input's media: each found in the session's cache by identity, or left on the engine by gemma4c_input_ids, or
 * decoded and measured now. */
static int gather_media(g4_engine *e, const gemma4c_input *in, g4_medium **cache, size_t n_cache, g4_medium ***out,
                        g4_err *err) {
    *out = NULL;
    if (!in->n_media) return 0;
    if (!in->media) return g4_fail(err, GEMMA4C_ERR_ARG, "n_media is %zu but media is NULL", in->n_media);
    if (in->n_media > MAX_MEDIA) return g4_fail(err, GEMMA4C_ERR_ARG, "%zu media in one input (at most %d)", in->n_media, MAX_MEDIA);
    g4_medium **list = calloc(in->n_media, sizeof *list);
    if (!list) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; !rc && i < in->n_media; i++) {
        const gemma4c_media *md = &in->media[i];
        static const int kinds[] = {0, G4_MEDIA_IMAGE, G4_MEDIA_AUDIO, G4_MEDIA_VIDEO};
        if (md->kind < GEMMA4C_MEDIA_IMAGE || md->kind > GEMMA4C_MEDIA_VIDEO) {
            rc = g4_fail(err, GEMMA4C_ERR_ARG, "media %zu: unknown kind %d", i, md->kind);
            break;
        }
        if (kinds[md->kind] != G4_MEDIA_AUDIO && !e->m->cfg.has_vision)
            rc = g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "media %zu: this model has no vision encoder", i);
        else if (kinds[md->kind] == G4_MEDIA_AUDIO && !e->m->cfg.has_audio)
            rc = g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "media %zu: this model has no audio encoder", i);
        if (rc) break;
        g4_media_item item = {kinds[md->kind], md->path, md->data, md->size, md->max_soft_tokens};
        const uint64_t key = g4_media_item_key(&item);
        for (size_t j = 0; j < n_cache && !list[i]; j++)
            if (cache[j]->key == key) list[i] = cache[j];
        for (size_t j = 0; j < i && !list[i]; j++)
            if (list[j]->key == key) list[i] = list[j];
        if (list[i] || (list[i] = g4_engine_take_media(e, key))) continue;
        if (!(list[i] = calloc(1, sizeof **list))) rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        else if ((rc = g4_medium_prepare(&item, &e->geometry, list[i], err))) {
            free(list[i]);
            list[i] = NULL;
            g4_err_prefix(err, "media %zu", i);
        }
    }
    if (rc) {
        size_t n = 0;
        while (n < in->n_media && list[n]) n++;
        g4_media_list_free(list, n, cache, n_cache);
        return rc;
    }
    *out = list;
    return 0;
}

/* Media parts in a chat's messages (the kinds the chat format renders as placeholders). */
static size_t count_media_parts(const cJSON *messages) {
    size_t n = 0;
    const cJSON *msg;
    cJSON_ArrayForEach(msg, messages) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content"), *part;
        if (!cJSON_IsArray(content)) continue;
        cJSON_ArrayForEach(part, content) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
            static const char *const kinds[] = {"image", "image_url", "audio", "input_audio", "video"};
            for (size_t k = 0; cJSON_IsString(type) && k < sizeof kinds / sizeof *kinds; k++)
                n += strcmp(type->valuestring, kinds[k]) == 0;
        }
    }
    return n;
}

/* The text of a chat or a raw prompt, media placeholders expanded when media were given. */
static int input_text(g4_engine *e, const gemma4c_input *in, g4_medium **media, g4_buf *text, g4_err *err) {
    g4_buf rendered = {0};
    int rc = 0;
    if (in->messages_json) {
        cJSON *messages = cJSON_Parse(in->messages_json);
        cJSON *tools = in->tools_json ? cJSON_Parse(in->tools_json) : NULL;
        if (!messages) rc = g4_fail(err, GEMMA4C_ERR_ARG, "messages are not valid JSON");
        else if (in->tools_json && !tools) rc = g4_fail(err, GEMMA4C_ERR_ARG, "tools are not valid JSON");
        else if (count_media_parts(messages) != in->n_media)
            rc = g4_fail(err, GEMMA4C_ERR_ARG, "the messages have %zu media parts but %zu media were given",
                         count_media_parts(messages), in->n_media);
        g4_chat_options copt = {1, in->enable_thinking, 0, NULL};
        if (!rc) rc = g4_chat_render(messages, tools, &copt, &rendered, err);
        cJSON_Delete(messages);
        cJSON_Delete(tools);
    } else {
        const g4_model *m = e->m;
        int32_t bos = m->gen.bos_token_id >= 0 ? m->gen.bos_token_id : m->cfg.text.bos_token_id;
        rc = g4_tokenizer_decode(m->tok, &bos, 1, 0, &rendered, err);
        if (!rc && g4_buf_puts(&rendered, in->prompt)) rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    if (!rc && in->n_media) rc = g4_media_expand_text(e->m, rendered.data ? rendered.data : "", media, in->n_media, text, err);
    else if (!rc && g4_buf_append(text, rendered.data ? rendered.data : "", rendered.len))
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    g4_buf_free(&rendered);
    return rc;
}

int g4_input_tokens(g4_engine *e, const gemma4c_input *in, g4_medium **cache, size_t n_cache, g4_ids *ids,
                    g4_medium ***media, size_t *n_media, int unused, g4_err *err) {
    *media = NULL;
    *n_media = 0;
    if (!in) return g4_fail(err, GEMMA4C_ERR_ARG, "no input");
    if ((in->messages_json != NULL) + (in->prompt != NULL) + (in->ids != NULL) != 1)
        return g4_fail(err, GEMMA4C_ERR_ARG, "an input takes exactly one of messages_json, prompt and ids");
    if (in->ids && in->n_ids == 0) return g4_fail(err, GEMMA4C_ERR_ARG, "ids given but n_ids is 0");
    g4_medium **list = NULL;
    int rc = gather_media(e, in, cache, n_cache, &list, err);
    if (rc) return rc;
    if (in->ids) {
        if (g4_ids_extend(ids, in->ids, in->n_ids)) rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    } else {
        g4_buf text = {0};
        rc = input_text(e, in, list, &text, err);
        if (!rc) rc = g4_tokenizer_encode(e->m->tok, text.data ? text.data : "", text.len, ids, err);
        g4_buf_free(&text);
    }
    if (!rc) { /* every id in the vocabulary, every run matching its medium */
        for (size_t t = 0; !rc && t < ids->n; t++)
            if (ids->v[t] < 0 || ids->v[t] >= e->m->cfg.text.vocab_size)
                rc = g4_fail(err, GEMMA4C_ERR_ARG, "token id %d at position %zu is outside the vocabulary (0..%d)",
                             ids->v[t], t, e->m->cfg.text.vocab_size - 1);
        if (!rc) rc = g4_media_place(e->m, ids->v, ids->n, list, in->n_media, NULL, NULL, err);
    }
    if (rc) {
        g4_media_list_free(list, in->n_media, cache, n_cache);
        return rc;
    }
    *media = list;
    *n_media = in->n_media;
    return 0;
}

/* ---- requests --------------------------------------------------------------------------------------------- */

void g4_request_free(g4_request *r) {
    if (!r) return;
    for (g4_event *ev = r->head, *next; ev; ev = next) {
        next = ev->next;
        g4_buf_free(&ev->piece);
        g4_buf_free(&ev->text);
        free(ev);
    }
    g4_gen_free(&r->gen);
    g4_gen_token_free(&r->tok);
    for (size_t i = 0; r->stops && i < r->gp.n_stop_strings; i++) free(r->stops[i]);
    free(r->stops);
    g4_schema_free(r->schema);
    g4_ids_free(&r->prompt);
    free(r->keys);
    free(r->soft);
    free(r->media); /* the media themselves belong to the session's cache */
    free(r->needed);
    free(r->logits);
    free(r);
}

static int sampler_params(const gemma4c_sampling *in, g4_sampler_params *out, g4_err *err) {
    memset(out, 0, sizeof *out);
    if (!(in->temperature >= 0)) return g4_fail(err, GEMMA4C_ERR_ARG, "temperature must be >= 0");
    if (!(in->top_p >= 0 && in->top_p <= 1)) return g4_fail(err, GEMMA4C_ERR_ARG, "top_p must be in [0, 1]");
    if (!(in->repetition_penalty >= 0)) return g4_fail(err, GEMMA4C_ERR_ARG, "repetition_penalty must be >= 0");
    out->greedy = in->temperature == 0;
    out->temperature = in->temperature > 0 ? in->temperature : 1;
    out->top_k = in->top_k;
    out->top_p = in->top_p > 0 ? in->top_p : 1;
    out->min_p = in->min_p;
    out->repetition_penalty = in->repetition_penalty > 0 ? in->repetition_penalty : 1;
    out->presence_penalty = in->presence_penalty;
    out->frequency_penalty = in->frequency_penalty;
    out->seed = in->seed;
    return 0;
}

/* Generation settings, with copies of the stop strings (the caller's may go away after submit). */
static int request_options(g4_engine *e, g4_request *r, const gemma4c_generate_options *o, g4_err *err) {
    static const gemma4c_generate_options none = {0};
    if (!o) o = &none;
    g4_gen_params *gp = &r->gp;
    int rc = sampler_params(&o->sampling, &gp->sampling, err);
    if (rc) return rc;
    if (o->max_tokens < 0) return g4_fail(err, GEMMA4C_ERR_ARG, "max_tokens must be >= 0");
    if (o->n_stop && !o->stop) return g4_fail(err, GEMMA4C_ERR_ARG, "n_stop is %zu but stop is NULL", o->n_stop);
    if (o->n_stop > 64) return g4_fail(err, GEMMA4C_ERR_ARG, "%zu stop strings (at most 64)", o->n_stop);
    gp->max_tokens = o->max_tokens;
    if (o->keep_special < 0 || o->keep_special > GEMMA4C_KEEP_MARKERS)
        return g4_fail(err, GEMMA4C_ERR_ARG, "keep_special must be 0, 1 or GEMMA4C_KEEP_MARKERS (2)");
    gp->skip_special = o->keep_special == 1 ? 0 : o->keep_special == GEMMA4C_KEEP_MARKERS ? G4_SKIP_SPECIAL_BUT_MARKERS : 1;
    gp->logprobs = o->logprobs != 0;
    gp->top_logprobs = o->top_logprobs;
    if (o->json < 0 || o->json > GEMMA4C_JSON_AFTER_THOUGHT)
        return g4_fail(err, GEMMA4C_ERR_ARG, "json must be 0, 1 or GEMMA4C_JSON_AFTER_THOUGHT (2)");
    gp->json = o->json;
    if (o->json && !(gp->pieces = g4_engine_json_pieces(e, err))) return err->code;
    if (o->json_schema && !o->json) return g4_fail(err, GEMMA4C_ERR_ARG, "json_schema needs json (1 or GEMMA4C_JSON_AFTER_THOUGHT)");
    if (o->json_schema && !(gp->schema = r->schema = g4_schema_compile(o->json_schema, strlen(o->json_schema), err)))
        return err->code;
    if (!o->ignore_eos) {
        const g4_model *m = e->m;
        for (int i = 0; i < m->gen.n_eos && i < G4_MAX_STOP_IDS; i++) r->stop_ids[gp->n_stop_ids++] = m->gen.eos_ids[i];
        gp->stop_ids = r->stop_ids;
    }
    if (o->n_stop && !(r->stops = calloc(o->n_stop, sizeof *r->stops))) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < o->n_stop; i++) {
        if (!o->stop[i]) return g4_fail(err, GEMMA4C_ERR_ARG, "stop string %zu is NULL", i);
        if (strlen(o->stop[i]) > 4096) return g4_fail(err, GEMMA4C_ERR_ARG, "stop string %zu is longer than 4096 bytes", i);
        if (!(r->stops[i] = strdup(o->stop[i]))) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        gp->n_stop_strings = i + 1;
    }
    gp->stop_strings = (const char *const *)r->stops;
    r->on_logits = o->on_logits;
    r->logits_user = o->logits_user;
    r->notify = o->notify;
    r->notify_user = o->notify_user;
    return 0;
}

/* Claims the session for a new request: GEMMA4C_ERR_BUSY while one is being built or has not been collected. */
static int claim(g4_session *s, g4_err *err) {
    pthread_mutex_lock(&s->e->mu);
    int busy = s->req || s->building;
    if (!busy) s->building = 1;
    pthread_mutex_unlock(&s->e->mu);
    return busy ? g4_fail(err, GEMMA4C_ERR_BUSY, "the session is already running a request") : 0;
}

static void unclaim(g4_session *s) {
    pthread_mutex_lock(&s->e->mu);
    s->building = 0;
    pthread_mutex_unlock(&s->e->mu);
}

/* The session keeps the tokens that the new prompt starts with (and what filled them), so they are not computed
 * again; a vision span is never cut, and the last prompt token always runs (its logits start the answer). */
static size_t reuse_prefix(g4_session *s, const g4_request *r) {
    size_t keep = 0;
    if (r->kind == G4_REQ_GENERATE)
        while (keep < s->cached.n && keep + 1 < r->prompt.n && s->cached.v[keep] == r->prompt.v[keep] &&
               s->keys[keep] == r->keys[keep])
            keep++;
    keep = (size_t)g4_decoder_split_point(s->e->m, r->prompt.v, (int64_t)r->prompt.n, (int64_t)keep);
    keep = (size_t)g4_kv_seq_rewind(&s->seq, (int64_t)keep);
    s->cached.n = keep;
    return keep;
}

/* Builds and queues a request of `kind` (the session must be claimed). */
static int submit(g4_session *s, int kind, const gemma4c_input *in, const gemma4c_generate_options *o,
                  float *all_logits, g4_err *err) {
    g4_engine *e = s->e;
    const int64_t V = e->m->cfg.text.vocab_size;
    g4_request *r = calloc(1, sizeof *r);
    if (!r) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    r->t_submit = now_seconds();
    r->s = s;
    r->kind = kind;
    atomic_init(&r->cancel, 0);
    int rc = request_options(e, r, o, err);
    g4_medium **media = NULL;
    size_t n_media = 0;
    if (!rc) rc = g4_input_tokens(e, in, s->media, s->n_media, &r->prompt, &media, &n_media, 0, err);
    if (!rc && r->prompt.n == 0) rc = g4_fail(err, GEMMA4C_ERR_ARG, "empty prompt");
    if (!rc && kind == G4_REQ_GENERATE && (int64_t)r->prompt.n >= s->seq.n_ctx)
        rc = g4_fail(err, GEMMA4C_ERR_CONTEXT, "a prompt of %zu tokens does not fit the context of %lld tokens",
                     r->prompt.n, (long long)s->seq.n_ctx);
    if (!rc && kind == G4_REQ_LOGITS && (int64_t)r->prompt.n > s->seq.n_ctx)
        rc = g4_fail(err, GEMMA4C_ERR_CONTEXT, "%zu tokens exceed the context of %lld tokens", r->prompt.n,
                     (long long)s->seq.n_ctx);
    if (!rc) {
        r->keys = calloc(r->prompt.n, sizeof *r->keys);
        r->soft = calloc(r->prompt.n, sizeof *r->soft);
        r->logits = malloc((size_t)V * sizeof *r->logits);
        if (!r->keys || !r->soft || !r->logits) rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    if (!rc) rc = g4_media_place(e->m, r->prompt.v, r->prompt.n, media, n_media, NULL, r->keys, err);
    if (!rc && kind == G4_REQ_GENERATE)
        rc = g4_gen_init(&r->gen, &r->gp, e->m->tok, (int)V, r->prompt.v, r->prompt.n, err);
    if (rc) {
        g4_media_list_free(media, n_media, s->media, s->n_media);
        g4_request_free(r);
        return rc;
    }
    /* The session's media cache becomes this input's media: the next turn of the conversation brings them again. */
    g4_media_list_free(s->media, s->n_media, media, n_media);
    s->media = media;
    s->n_media = n_media;
    if (!(r->media = malloc((n_media ? n_media : 1) * sizeof *r->media))) {
        g4_request_free(r);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    if (n_media) memcpy(r->media, media, n_media * sizeof *media);
    r->n_media = n_media;
    r->all_logits = all_logits;
    r->next = reuse_prefix(s, r);
    /* Media whose every position is reused need no encoding (a conversation restored from a file, say). */
    if (!(r->needed = calloc(n_media ? n_media : 1, 1))) {
        g4_request_free(r);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    for (size_t t = r->next; t < r->prompt.n; t++)
        for (size_t i = 0; r->keys[t] && i < n_media; i++)
            if (r->keys[t] - 1 - media[i]->key < (uint64_t)media[i]->n_tokens) r->needed[i] = 1;
    for (size_t i = 0; i < n_media; i++)
        if (media[i]->fresh) { /* decoded for this request, not found in the session's cache */
            r->media_seconds += media[i]->prepare_seconds;
            media[i]->fresh = 0;
        }
    r->phase = n_media ? G4_PHASE_MEDIA : G4_PHASE_PREFILL;
    r->result.prompt_tokens = (int64_t)r->prompt.n;
    r->result.cached_tokens = (int64_t)r->next;
    for (size_t i = 0; i < n_media; i++) r->result.media_tokens += media[i]->n_tokens;
    pthread_mutex_lock(&e->mu);
    e->stats.reused_tokens += (int64_t)r->next;
    pthread_mutex_unlock(&e->mu);
    g4_engine_enqueue(e, r);
    return 0;
}

/* ---- the public session functions ------------------------------------------------------------------------ */

int gemma4c_session_new(gemma4c_model *e, const gemma4c_session_params *p, gemma4c_session **out, char *err,
                        size_t err_len) {
    g4_err er = {0};
    if (!out) return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "gemma4c_session_new: out is NULL"), err, err_len);
    *out = NULL;
    if (!e) return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "gemma4c_session_new: model is NULL"), err, err_len);
    int64_t n_ctx = p && p->n_ctx ? p->n_ctx : GEMMA4C_DEFAULT_CONTEXT;
    if (n_ctx < 0) return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "n_ctx must be >= 0"), err, err_len);
    if (n_ctx > e->m->cfg.text.max_position_embeddings) {
        if (p && p->n_ctx)
            return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "a context of %lld tokens (this model takes at most %d)",
                                       (long long)n_ctx, e->m->cfg.text.max_position_embeddings),
                          err, err_len);
        n_ctx = e->m->cfg.text.max_position_embeddings;
    }
    g4_session *s = calloc(1, sizeof *s);
    if (!s) return report(&er, g4_fail(&er, GEMMA4C_ERR_NOMEM, "out of memory"), err, err_len);
    int rc = g4_kv_seq_init(&s->seq, e->m, n_ctx, &e->budget, &er);
    if (!rc && pthread_cond_init(&s->cv, NULL)) rc = g4_fail(&er, GEMMA4C_ERR_INTERNAL, "cannot create a condition variable");
    if (rc) {
        g4_kv_seq_free(&s->seq);
        free(s);
        return report(&er, rc, err, err_len);
    }
    s->e = e;
    pthread_mutex_lock(&e->mu);
    e->refs++;
    pthread_mutex_unlock(&e->mu);
    *out = s;
    return 0;
}

static void free_event(g4_event *ev) {
    if (!ev) return;
    g4_buf_free(&ev->piece);
    g4_buf_free(&ev->text);
    free(ev);
}

void gemma4c_session_free(gemma4c_session *s) {
    if (!s) return;
    g4_engine *e = s->e;
    pthread_mutex_lock(&e->mu);
    while (s->building) pthread_cond_wait(&s->cv, &e->mu); /* a submit on another thread: misuse, but wait it out */
    if (s->req) {
        atomic_store(&s->req->cancel, 1);
        while (!s->req->ended) pthread_cond_wait(&s->cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    g4_request_free(s->req);
    free_event(s->current);
    g4_kv_seq_free(&s->seq);
    g4_ids_free(&s->cached);
    free(s->keys);
    g4_media_list_free(s->media, s->n_media, NULL, 0);
    pthread_cond_destroy(&s->cv);
    free(s);
    g4_engine_unref(e);
}

int gemma4c_submit(gemma4c_session *s, const gemma4c_input *in, const gemma4c_generate_options *o, char *err,
                   size_t err_len) {
    g4_err er = {0};
    if (!s) return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "gemma4c_submit: session is NULL"), err, err_len);
    int rc = claim(s, &er);
    if (rc) return report(&er, rc, err, err_len);
    rc = submit(s, G4_REQ_GENERATE, in, o, NULL, &er);
    if (rc) unclaim(s);
    return report(&er, rc, err, err_len);
}

static struct timespec deadline(int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    return ts;
}

int gemma4c_next(gemma4c_session *s, gemma4c_event *ev, int timeout_ms) {
    if (!s || !ev) return GEMMA4C_ERR_ARG;
    memset(ev, 0, sizeof *ev);
    ev->error = "";
    g4_engine *e = s->e;
    pthread_mutex_lock(&e->mu);
    free_event(s->current);
    s->current = NULL;
    g4_request *r = s->req;
    if (!r) {
        pthread_mutex_unlock(&e->mu);
        return GEMMA4C_ERR_ARG;
    }
    const struct timespec until = deadline(timeout_ms > 0 ? timeout_ms : 0);
    while (!r->head && !r->ended && timeout_ms != 0) {
        if (timeout_ms < 0) pthread_cond_wait(&s->cv, &e->mu);
        else if (pthread_cond_timedwait(&s->cv, &e->mu, &until) == ETIMEDOUT) break;
    }
    if (r->head) {
        g4_event *x = r->head;
        r->head = x->next;
        if (!r->head) r->tail = NULL;
        s->current = x;
        ev->type = GEMMA4C_EVENT_TOKEN;
        ev->token = (gemma4c_token){x->id,        x->piece.data ? x->piece.data : "", x->piece.len,
                                    x->text.data ? x->text.data : "", x->text.len, x->logprob, x->n_top, x->top};
    } else if (r->ended) {
        ev->type = GEMMA4C_EVENT_DONE;
        ev->result = r->result;
        ev->status = r->status;
        snprintf(s->error, sizeof s->error, "%s", r->error);
        ev->error = s->error;
        s->req = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    if (ev->type == GEMMA4C_EVENT_DONE) g4_request_free(r);
    return 0;
}

void gemma4c_cancel(gemma4c_session *s) {
    if (!s) return;
    pthread_mutex_lock(&s->e->mu);
    if (s->req) atomic_store(&s->req->cancel, 1);
    pthread_mutex_unlock(&s->e->mu);
}

int gemma4c_generate(gemma4c_session *s, const gemma4c_input *in, const gemma4c_generate_options *o,
                     gemma4c_token_fn on_token, void *user, gemma4c_result *result, char *err, size_t err_len) {
    if (result) memset(result, 0, sizeof *result);
    int rc = gemma4c_submit(s, in, o, err, err_len);
    if (rc) return rc;
    int stopped = 0;
    for (;;) {
        gemma4c_event ev;
        gemma4c_next(s, &ev, -1);
        if (ev.type == GEMMA4C_EVENT_TOKEN) {
            if (!stopped && on_token && on_token(user, &ev.token)) {
                stopped = 1;
                gemma4c_cancel(s);
            }
            continue;
        }
        if (result) *result = ev.result;
        if (err && err_len) snprintf(err, err_len, "%s", ev.error);
        return ev.status;
    }
}

/* Waits for a request that produces no tokens (logits, encoding) and returns how it ended. */
static int wait_end(g4_session *s, g4_err *err) {
    for (;;) {
        gemma4c_event ev;
        gemma4c_next(s, &ev, -1);
        if (ev.type != GEMMA4C_EVENT_DONE) continue;
        if (ev.status) g4_fail(err, ev.status, "%s", ev.error);
        return ev.status;
    }
}

int gemma4c_logits(gemma4c_session *s, const int32_t *ids, size_t n_ids, const gemma4c_media *media, size_t n_media,
                   float *logits, char *err, size_t err_len) {
    g4_err er = {0};
    if (!s || !ids || !n_ids || !logits)
        return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "gemma4c_logits: missing argument"), err, err_len);
    int rc = claim(s, &er);
    if (rc) return report(&er, rc, err, err_len);
    gemma4c_input in = {0};
    in.ids = ids;
    in.n_ids = n_ids;
    in.media = media;
    in.n_media = n_media;
    rc = submit(s, G4_REQ_LOGITS, &in, NULL, logits, &er);
    if (rc) {
        unclaim(s);
        return report(&er, rc, err, err_len);
    }
    return report(&er, wait_end(s, &er), err, err_len);
}

/* ---- encoders --------------------------------------------------------------------------------------------- */

void gemma4c_features_free(gemma4c_features *f) {
    if (!f) return;
    free(f->tokens);
    free(f->block_tokens);
    free(f->pixel_values);
    free(f->positions);
    free(f->input_features);
    free(f->input_mask);
    free(f);
}

/* The encoder's input as the reference processor gives it: an image's patches, an audio clip's log-mel frames. */
static int copy_encoder_input(const g4_medium *md, gemma4c_features *f, g4_err *err) {
    f->n_blocks = (int64_t)md->n_blocks;
    f->seconds = md->seconds;
    if (!(f->block_tokens = malloc((md->n_blocks ? md->n_blocks : 1) * sizeof *f->block_tokens))) goto nomem;
    for (size_t b = 0; b < md->n_blocks; b++) f->block_tokens[b] = md->blocks[b].n;
    if (md->kind == G4_MEDIA_IMAGE) {
        const g4_image_patches *p = &md->frames[0];
        f->n_patches = p->max_patches;
        f->patch_dim = p->patch_dim;
        f->pixel_values = malloc((size_t)p->max_patches * (size_t)p->patch_dim);
        f->positions = malloc((size_t)p->max_patches * 2 * sizeof(int32_t));
        if (!f->pixel_values || !f->positions) goto nomem;
        memcpy(f->pixel_values, p->pixel_values, (size_t)p->max_patches * (size_t)p->patch_dim);
        memcpy(f->positions, p->positions, (size_t)p->max_patches * 2 * sizeof(int32_t));
    } else if (md->kind == G4_MEDIA_AUDIO) {
        f->n_mel = G4_AUDIO_MEL_BINS;
        for (size_t b = 0; b < md->n_blocks; b++) f->n_frames += (int64_t)md->clips[b].n_frames;
        f->input_features = malloc((size_t)(f->n_frames ? f->n_frames : 1) * G4_AUDIO_MEL_BINS * sizeof(float));
        f->input_mask = malloc((size_t)(f->n_frames ? f->n_frames : 1));
        if (!f->input_features || !f->input_mask) goto nomem;
        for (size_t b = 0, at = 0; b < md->n_blocks; at += md->clips[b].n_frames, b++) {
            memcpy(f->input_features + at * G4_AUDIO_MEL_BINS, md->clips[b].features,
                   md->clips[b].n_frames * G4_AUDIO_MEL_BINS * sizeof(float));
            memcpy(f->input_mask + at, md->clips[b].mask, md->clips[b].n_frames);
        }
    }
    return 0;
nomem:
    return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
}

int gemma4c_encode(gemma4c_session *s, const gemma4c_media *media, gemma4c_features **out, char *err, size_t err_len) {
    g4_err er = {0};
    if (!s || !media || !out) return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "gemma4c_encode: missing argument"), err, err_len);
    *out = NULL;
    int rc = claim(s, &er);
    if (rc) return report(&er, rc, err, err_len);
    g4_engine *e = s->e;
    gemma4c_input in = {0};
    in.media = media;
    in.n_media = 1;
    g4_medium **list = NULL;
    gemma4c_features *f = calloc(1, sizeof *f);
    g4_request *r = calloc(1, sizeof *r);
    if (!f || !r) rc = g4_fail(&er, GEMMA4C_ERR_NOMEM, "out of memory");
    if (!rc) rc = gather_media(e, &in, s->media, s->n_media, &list, &er);
    g4_medium *md = rc ? NULL : list[0];
    if (!rc && !g4_medium_done(md)) rc = copy_encoder_input(md, f, &er);
    else if (!rc) rc = g4_fail(&er, GEMMA4C_ERR_ARG, "this medium was encoded for the session already: its input is gone");
    if (rc) {
        if (list) g4_media_list_free(list, 1, s->media, s->n_media);
        gemma4c_features_free(f);
        free(r);
        unclaim(s);
        return report(&er, rc, err, err_len);
    }
    free(list);
    /* The session's media cache keeps it, so that a conversation about it does not encode it again. */
    g4_medium **grown = realloc(s->media, (s->n_media + 1) * sizeof *grown);
    if (grown) grown[s->n_media] = md, s->media = grown, s->n_media++;
    r->t_submit = now_seconds();
    r->s = s;
    r->kind = G4_REQ_ENCODE;
    r->phase = G4_PHASE_MEDIA;
    atomic_init(&r->cancel, 0);
    r->media = malloc(sizeof *r->media);
    r->needed = calloc(1, 1);
    if (!grown || !r->media || !r->needed) {
        if (!grown) g4_medium_free(md), free(md);
        gemma4c_features_free(f);
        g4_request_free(r);
        unclaim(s);
        return report(&er, g4_fail(&er, GEMMA4C_ERR_NOMEM, "out of memory"), err, err_len);
    }
    r->media[0] = md;
    r->needed[0] = 1;
    r->n_media = 1;
    g4_engine_enqueue(e, r);
    rc = wait_end(s, &er);
    const int64_t H = e->m->cfg.text.hidden_size;
    if (!rc) {
        f->kind = media->kind;
        f->n_tokens = md->n_tokens;
        f->width = H;
        if (!(f->tokens = malloc((size_t)(md->n_tokens ? md->n_tokens : 1) * (size_t)H * sizeof(float))))
            rc = g4_fail(&er, GEMMA4C_ERR_NOMEM, "out of memory");
        else if (md->n_tokens)
            memcpy(f->tokens, md->rows, (size_t)(md->n_tokens * H) * sizeof(float));
    }
    if (rc) {
        gemma4c_features_free(f);
        return report(&er, rc, err, err_len);
    }
    *out = f;
    return 0;
}

/* ---- state ------------------------------------------------------------------------------------------------ */

static int idle(const g4_session *s) {
    pthread_mutex_lock(&s->e->mu);
    int ok = !s->req && !s->building;
    pthread_mutex_unlock(&s->e->mu);
    return ok;
}

int gemma4c_session_reset(gemma4c_session *s, char *err, size_t err_len) {
    g4_err er = {0};
    if (!s) return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "gemma4c_session_reset: session is NULL"), err, err_len);
    if (!idle(s)) return report(&er, g4_fail(&er, GEMMA4C_ERR_BUSY, "the session is running a request"), err, err_len);
    g4_kv_seq_rewind(&s->seq, 0);
    s->cached.n = 0;
    g4_media_list_free(s->media, s->n_media, NULL, 0);
    s->media = NULL;
    s->n_media = 0;
    return report(&er, 0, err, err_len);
}

int64_t gemma4c_session_rewind(gemma4c_session *s, int64_t n_tokens) {
    if (!s || n_tokens < 0) return GEMMA4C_ERR_ARG;
    if (!idle(s)) return GEMMA4C_ERR_BUSY;
    if (n_tokens > (int64_t)s->cached.n) n_tokens = (int64_t)s->cached.n;
    int64_t kept = g4_kv_seq_rewind(&s->seq, n_tokens);
    s->cached.n = (size_t)kept;
    return kept;
}

int64_t gemma4c_session_tokens(const gemma4c_session *s, int32_t *ids, size_t cap) {
    if (!s || (!ids && cap)) return GEMMA4C_ERR_ARG;
    if (!idle(s)) return GEMMA4C_ERR_BUSY;
    if (ids) memcpy(ids, s->cached.v, (s->cached.n < cap ? s->cached.n : cap) * sizeof *ids);
    return (int64_t)s->cached.n;
}
