/* engine.c — the scheduler: one thread that advances every session's request in shared, batched steps. */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/audio.h"
#include "model/vision.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- events and ends (the only places requests are touched under mu) ----------------------------------- */

static void wake(g4_request *r) {
    pthread_cond_broadcast(&r->s->cv);
    if (r->notify) r->notify(r->notify_user);
}

/* Hands one token (or, id -1, text released at the end) to the request's reader. */
static int publish_token(g4_engine *e, g4_request *r, const g4_gen_token *t) {
    if (t->id < 0 && t->text.len == 0) return 0;
    g4_event *ev = calloc(1, sizeof *ev);
    if (!ev || g4_buf_append(&ev->piece, t->piece.data ? t->piece.data : "", t->piece.len) ||
        g4_buf_append(&ev->text, t->text.data ? t->text.data : "", t->text.len)) {
        if (ev) g4_buf_free(&ev->piece), g4_buf_free(&ev->text);
        free(ev);
        return GEMMA4C_ERR_NOMEM;
    }
    ev->type = GEMMA4C_EVENT_TOKEN;
    ev->id = t->id;
    ev->logprob = t->logprob;
    ev->n_top = t->n_top;
    for (int i = 0; i < t->n_top; i++) ev->top[i] = (gemma4c_top_logprob){t->top[i].id, t->top[i].logit};
    pthread_mutex_lock(&e->mu);
    if (r->tail) r->tail->next = ev;
    else r->head = ev;
    r->tail = ev;
    wake(r);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

/* Ends a request: its result, its end event, and it leaves the scheduler's list. */
static void end_request(g4_engine *e, g4_request *r, int status, const char *error) {
    const double t = now_seconds();
    gemma4c_result *res = &r->result;
    res->stop_reason = r->gen.stop_reason;
    res->stop_id = r->gen.stop_id;
    res->stop_string = r->gen.stop_string;
    res->generated_tokens = r->gen.generated;
    if (r->t_first > 0) {
        res->first_token_seconds = r->t_first - r->t_submit;
        res->decode_seconds = r->t_last - r->t_first;
    }
    if (r->t_prefill > 0) res->prefill_seconds = (r->t_first > 0 ? r->t_first : t) - r->t_prefill;
    res->queue_seconds = (r->t_start > 0 ? r->t_start : t) - r->t_submit;
    res->media_seconds = r->media_seconds;
    r->status = status;
    snprintf(r->error, sizeof r->error, "%s", status ? error : "");
    r->phase = G4_PHASE_DONE; /* its reader learns of it once the iteration is over (release_ended) */
}

/* Requests that ended leave the list, and their readers may have (and free) them: only after the scheduler's
 * iteration, which may still look at them, is over. */
static void release_ended(g4_engine *e) {
    pthread_mutex_lock(&e->mu);
    for (g4_request **p = &e->active; *p;) {
        g4_request *r = *p;
        if (r->phase != G4_PHASE_DONE) {
            p = &r->next_active;
            continue;
        }
        *p = r->next_active;
        e->stats.active--;
        r->ended = 1;
        wake(r);
    }
    pthread_mutex_unlock(&e->mu);
}

static void fail_request(g4_engine *e, g4_request *r, const g4_err *err) { end_request(e, r, err->code ? err->code : GEMMA4C_ERR_INTERNAL, err->msg); }

/* Cancelled: generation ends with a stop reason and what was held back; other requests with an error. */
static void cancel_request(g4_engine *e, g4_request *r) {
    if (r->kind != G4_REQ_GENERATE) {
        end_request(e, r, GEMMA4C_ERR_CANCELLED, "cancelled");
        return;
    }
    g4_buf_reset(&r->tok.piece);
    g4_buf_reset(&r->tok.text);
    r->tok.id = -1;
    g4_gen_stop(&r->gen, G4_STOP_CANCELLED, &r->tok.text);
    publish_token(e, r, &r->tok);
    end_request(e, r, 0, NULL);
}

/* ---- the work of one iteration ------------------------------------------------------------------------ */

/* Binds the encoder a medium needs (once per model). */
static int bind_encoder(g4_engine *e, int kind, g4_err *err) {
    if (kind == G4_MEDIA_AUDIO && !e->audio) return g4_audio_encoder_load(e->m, &e->audio, err);
    if (kind != G4_MEDIA_AUDIO && !e->vision) return g4_vision_load(e->m, &e->vision, err);
    return 0;
}

/* One block of the oldest request still encoding media; when its media are all done, it moves on to its prompt. */
static void encode_media(g4_engine *e, g4_request *r) {
    g4_err err = {0};
    if (!r->t_start) r->t_start = now_seconds();
    for (size_t i = 0; i < r->n_media; i++) {
        g4_medium *md = r->media[i];
        if (g4_medium_done(md) || !r->needed[i]) continue;
        const double t0 = now_seconds();
        int rc = bind_encoder(e, md->kind, &err);
        if (!rc) rc = g4_medium_encode_block(md, e->vision, e->audio, &e->be, e->m->cfg.text.hidden_size, &err);
        r->media_seconds += now_seconds() - t0;
        if (rc == GEMMA4C_ERR_CANCELLED) cancel_request(e, r);
        else if (rc) fail_request(e, r, &err);
        return;
    }
    if (r->kind == G4_REQ_ENCODE) {
        end_request(e, r, 0, NULL);
        return;
    }
    if (g4_media_place(e->m, r->prompt.v, r->prompt.n, r->media, r->n_media, r->soft, NULL, &err))
        fail_request(e, r, &err);
    else
        r->phase = G4_PHASE_PREFILL;
}

/* The step's spans and which request each belongs to. */
typedef struct step_plan {
    g4_span *spans;
    g4_request **reqs;
    int n;
} step_plan;

static int any_cancelled(void *ctx) {
    const step_plan *p = ctx;
    for (int i = 0; i < p->n; i++)
        if (atomic_load(&p->reqs[i]->cancel)) return 1;
    return 0;
}

/* Adds a span unless its KV pages cannot be had (the request then ends with that error). */
static void plan_span(g4_engine *e, step_plan *p, g4_request *r, g4_span sp) {
    g4_err err = {0};
    if (g4_kv_seq_reserve(sp.seq, sp.seq->pos + sp.n, &err)) {
        fail_request(e, r, &err);
        return;
    }
    p->spans[p->n] = sp;
    p->reqs[p->n++] = r;
}

/* The session now holds the span's ids (and what filled them). */
static int record_span(g4_request *r, const g4_span *sp, const uint64_t *keys) {
    g4_session *s = r->s;
    size_t at = s->cached.n;
    if (g4_ids_extend(&s->cached, sp->ids, (size_t)sp->n)) return GEMMA4C_ERR_NOMEM;
    if (s->cached.cap > 0) {
        uint64_t *k = realloc(s->keys, s->cached.cap * sizeof *k);
        if (!k) return GEMMA4C_ERR_NOMEM;
        s->keys = k;
    }
    for (int64_t t = 0; t < sp->n; t++) s->keys[at + (size_t)t] = keys ? keys[t] : 0;
    return 0;
}

/* A position's logits are ready: choose its token, stream it, and decide whether generation goes on. */
static void sample(g4_engine *e, g4_request *r) {
    g4_err err = {0};
    const double t = now_seconds();
    if (!r->t_first) r->t_first = t;
    r->t_last = t;
    if (r->on_logits && r->on_logits(r->logits_user, r->logits, e->m->cfg.text.vocab_size)) {
        atomic_store(&r->cancel, 1);
        cancel_request(e, r);
        return;
    }
    int rc = g4_gen_next(&r->gen, r->logits, &r->tok, &err);
    if (!rc && publish_token(e, r, &r->tok)) rc = g4_fail(&err, GEMMA4C_ERR_NOMEM, "out of memory");
    if (rc) {
        fail_request(e, r, &err);
        return;
    }
    if (r->gen.stop_reason) {
        end_request(e, r, 0, NULL);
        return;
    }
    if (r->s->seq.pos >= r->s->seq.n_ctx) { /* the token cannot be fed */
        g4_buf_reset(&r->tok.text);
        r->tok.id = -1;
        g4_gen_stop(&r->gen, G4_STOP_CONTEXT, &r->tok.text);
        publish_token(e, r, &r->tok);
        end_request(e, r, 0, NULL);
        return;
    }
    r->feed = r->tok.id;
    r->phase = G4_PHASE_DECODE;
}

/* One batched step. Decode rows first, one per generating session; prompt chunks (with_prefill) fill the rest of
 * the batch, oldest request first, so a long prompt delays the others by one chunk at a time. */
static void run_step(g4_engine *e, g4_request **reqs, int n, g4_span *spans, g4_request **span_reqs, int with_prefill) {
    const double t0 = now_seconds();
    step_plan plan = {spans, span_reqs, 0};
    int64_t rows = 0, decode_rows = 0;
    for (int i = 0; i < n; i++) {
        g4_request *r = reqs[i];
        if (r->phase != G4_PHASE_DECODE) continue;
        plan_span(e, &plan, r, (g4_span){&r->s->seq, &r->feed, 1, NULL, G4_LOGITS_LAST, r->logits, NULL, NULL});
        rows++;
    }
    decode_rows = rows;
    int64_t budget = e->n_batch - rows;
    if (budget < e->n_batch / 4) budget = e->n_batch / 4 > 0 ? e->n_batch / 4 : 1;
    for (int i = 0; with_prefill && i < n && budget > 0; i++) {
        g4_request *r = reqs[i];
        if (r->phase != G4_PHASE_PREFILL) continue;
        if (!r->t_start) r->t_start = t0;
        if (!r->t_prefill) r->t_prefill = t0;
        const int64_t left = (int64_t)(r->prompt.n - r->next);
        const int64_t take = g4_decoder_chunk(e->m, r->prompt.v + r->next, left, budget);
        g4_span sp = {&r->s->seq, r->prompt.v + r->next, take, r->soft + r->next, G4_LOGITS_NONE, NULL, NULL, NULL};
        if (r->kind == G4_REQ_LOGITS) {
            sp.logits = G4_LOGITS_ALL;
            sp.out = r->all_logits + r->next * (size_t)e->m->cfg.text.vocab_size;
        } else if (take == left) {
            sp.logits = G4_LOGITS_LAST;
            sp.out = r->logits;
        }
        plan_span(e, &plan, r, sp);
        budget -= take;
        rows += take;
    }
    if (plan.n == 0) return;
    g4_err err = {0};
    int rc = g4_decoder_step(&e->d, plan.spans, plan.n, NULL, any_cancelled, &plan, &err);
    if (rc == GEMMA4C_ERR_CANCELLED) return; /* the next iteration ends the cancelled requests and runs the rest */
    int64_t prefill_rows = 0;
    for (int i = 0; !rc && i < plan.n; i++)
        if (plan.reqs[i]->phase == G4_PHASE_PREFILL) prefill_rows += plan.spans[i].n;
    /* counted before any request can end, so that a caller who sees its end sees its step counted */
    pthread_mutex_lock(&e->mu);
    e->stats.steps += !rc;
    e->stats.decode_rows += rc ? 0 : decode_rows;
    e->stats.prefill_rows += prefill_rows;
    e->stats.busy_seconds += now_seconds() - t0;
    pthread_mutex_unlock(&e->mu);
    for (int i = 0; i < plan.n; i++) {
        g4_request *r = plan.reqs[i];
        const g4_span *sp = &plan.spans[i];
        if (rc) {
            fail_request(e, r, &err);
            continue;
        }
        const uint64_t *keys = r->phase == G4_PHASE_PREFILL ? r->keys + r->next : NULL;
        if (record_span(r, sp, keys)) {
            g4_fail(&err, GEMMA4C_ERR_NOMEM, "out of memory");
            fail_request(e, r, &err);
            continue;
        }
        if (r->phase == G4_PHASE_PREFILL) {
            r->next += (size_t)sp->n;
            if (r->next < r->prompt.n) continue;
            if (r->kind == G4_REQ_LOGITS) {
                end_request(e, r, 0, NULL);
                continue;
            }
        }
        sample(e, r);
    }
}

/* While an encoder runs, its safe points end it when its request is cancelled and otherwise let the sessions that
 * are generating take a decode step, so that a long image or audio clip does not stall them. */
typedef struct encoding {
    g4_engine *e;
    g4_request *r, **reqs;
    int n;
    g4_span *spans;
    g4_request **span_reqs;
} encoding;

static int encoder_safe_point(void *ctx) {
    encoding *en = ctx;
    if (atomic_load(&en->r->cancel)) return 1;
    g4_compute *c = &en->e->c;
    c->safe_point = NULL; /* the decoder never reaches it; nothing nests */
    run_step(en->e, en->reqs, en->n, en->spans, en->span_reqs, 0);
    c->safe_point = encoder_safe_point;
    return 0;
}

static void iterate(g4_engine *e, g4_request **reqs, int n, g4_span *spans, g4_request **span_reqs) {
    /* cancellations first: they take effect within this step */
    int live = 0;
    for (int i = 0; i < n; i++) {
        if (atomic_load(&reqs[i]->cancel)) cancel_request(e, reqs[i]);
        else reqs[live++] = reqs[i];
    }
    n = live;
    for (int i = 0; i < n; i++)
        if (reqs[i]->phase == G4_PHASE_MEDIA) {
            encoding en = {e, reqs[i], reqs, n, spans, span_reqs};
            e->c.safe_point = encoder_safe_point;
            e->c.safe_point_ctx = &en;
            encode_media(e, reqs[i]);
            e->c.safe_point = NULL;
            break;
        }
    run_step(e, reqs, n, spans, span_reqs, 1);
    release_ended(e);
}

static void *scheduler_main(void *arg) {
    g4_engine *e = arg;
    g4_request **reqs = NULL, **span_reqs = NULL;
    g4_span *spans = NULL;
    int cap = 0;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->stopping && !e->active) pthread_cond_wait(&e->work, &e->mu);
        if (e->stopping) break;
        int n = 0;
        for (g4_request *r = e->active; r; r = r->next_active) n++;
        if (n > cap) {
            int grown = n * 2;
            g4_request **a = realloc(reqs, (size_t)grown * sizeof *a), **b = a ? realloc(span_reqs, (size_t)grown * sizeof *b) : NULL;
            g4_span *c = b ? realloc(spans, (size_t)grown * sizeof *c) : NULL;
            if (a) reqs = a;
            if (b) span_reqs = b;
            if (c) spans = c;
            if (!c) { /* cannot even plan: fail the newest request so the rest go on */
                g4_request *last = e->active;
                while (last->next_active) last = last->next_active;
                pthread_mutex_unlock(&e->mu);
                g4_err err = {0};
                g4_fail(&err, GEMMA4C_ERR_NOMEM, "out of memory scheduling %d requests", n);
                fail_request(e, last, &err);
                release_ended(e);
                pthread_mutex_lock(&e->mu);
                continue;
            }
            cap = grown;
        }
        n = 0;
        for (g4_request *r = e->active; r; r = r->next_active) reqs[n++] = r;
        pthread_mutex_unlock(&e->mu);
        iterate(e, reqs, n, spans, span_reqs);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    free(reqs);
    free(span_reqs);
    free(spans);
    return NULL;
}

int g4_engine_start(g4_engine *e, g4_err *err) {
    if (pthread_create(&e->thread, NULL, scheduler_main, e))
        return g4_fail(err, GEMMA4C_ERR_INTERNAL, "cannot start the scheduler thread");
    e->thread_started = 1;
    return 0;
}

void g4_engine_enqueue(g4_engine *e, g4_request *r) {
    pthread_mutex_lock(&e->mu);
    g4_request **p = &e->active;
    while (*p) p = &(*p)->next_active;
    *p = r;
    r->s->req = r;
    r->s->building = 0;
    e->stats.active++;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
}

const g4_token_pieces *g4_engine_json_pieces(g4_engine *e, g4_err *err) {
    pthread_mutex_lock(&e->mu);
    const g4_token_pieces *have = e->json_pieces;
    pthread_mutex_unlock(&e->mu);
    if (have) return have;
    /* made outside the lock (tens of milliseconds for a large vocabulary: the scheduler keeps stepping); a request
     * that raced this one may install its copy first */
    g4_token_pieces *made = calloc(1, sizeof *made);
    if (!made) {
        g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (g4_token_pieces_build(made, e->m->tok, (int)e->m->cfg.text.vocab_size, err)) {
        free(made);
        return NULL;
    }
    pthread_mutex_lock(&e->mu);
    if (!e->json_pieces) e->json_pieces = made, made = NULL;
    have = e->json_pieces;
    pthread_mutex_unlock(&e->mu);
    if (made) g4_token_pieces_free(made), free(made);
    return have;
}

void g4_engine_unref(g4_engine *e) {
    pthread_mutex_lock(&e->mu);
    int last = --e->refs == 0;
    if (last) {
        e->stopping = 1;
        pthread_cond_signal(&e->work);
    }
    pthread_mutex_unlock(&e->mu);
    if (!last) return;
    if (e->thread_started) pthread_join(e->thread, NULL);
    g4_vision_free(e->vision);
    g4_audio_encoder_free(e->audio);
    g4_decoder_free(&e->d);
    for (int i = 0; i < G4_HANDOFF_MEDIA; i++)
        if (e->handoff[i]) g4_medium_free(e->handoff[i]), free(e->handoff[i]);
    if (e->json_pieces) g4_token_pieces_free(e->json_pieces), free(e->json_pieces);
    e->be.destroy(&e->be);
    g4_compute_free(&e->c);
    g4_model_free(e->m);
    g4_kv_budget_destroy(&e->budget);
    pthread_cond_destroy(&e->work);
    pthread_mutex_destroy(&e->mu);
    free(e);
}
