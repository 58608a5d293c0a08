/* generate.c — prefill, decode loop, streaming detokenisation and stop conditions. */
#include "generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Length of the longest suffix of text[0..len) that is a proper prefix of some stop string. */
static size_t held_suffix(const g4_stop_filter *f, const char *text, size_t len) {
    size_t best = 0;
    for (size_t s = 0; s < f->n_stops; s++) {
        size_t sl = strlen(f->stops[s]);
        for (size_t k = sl > len ? len : sl - 1; k > best; k--)
            if (memcmp(text + len - k, f->stops[s], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

int g4_stop_filter_push(g4_stop_filter *f, const char *text, size_t len, g4_text_fn on_text, void *ctx) {
    if (f->stopped) return 0;
    if (g4_buf_append(&f->held, text, len)) return -1;
    const char *h = f->held.data;
    size_t hl = f->held.len;
    size_t cut = hl; /* first stop-string occurrence */
    for (size_t s = 0; s < f->n_stops; s++) {
        if (!f->stops[s][0]) continue;
        const char *at = memmem(h, hl, f->stops[s], strlen(f->stops[s]));
        if (at && (size_t)(at - h) < cut) cut = (size_t)(at - h);
    }
    if (cut < hl) {
        f->stopped = 1;
        int rc = cut ? on_text(ctx, h, cut) : 0;
        g4_buf_reset(&f->held);
        return rc;
    }
    size_t keep = held_suffix(f, h, hl);
    int rc = 0;
    if (hl - keep > 0) rc = on_text(ctx, h, hl - keep);
    memmove(f->held.data, h + hl - keep, keep);
    f->held.len = keep;
    f->held.data[keep] = '\0';
    return rc;
}

int g4_stop_filter_flush(g4_stop_filter *f, g4_text_fn on_text, void *ctx) {
    int rc = 0;
    if (!f->stopped && f->held.len) rc = on_text(ctx, f->held.data, f->held.len);
    g4_buf_reset(&f->held);
    return rc;
}

void g4_stop_filter_free(g4_stop_filter *f) { g4_buf_free(&f->held); }

static int is_stop_id(const g4_generate_params *p, int32_t id) {
    for (size_t i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] == id) return 1;
    return 0;
}

int g4_generate(g4_decoder *d, g4_sampler *s, const g4_tokenizer *tok, const int32_t *prompt, size_t n_prompt,
                const g4_generate_params *p, g4_text_fn on_text, void *ctx, g4_ids *out_ids,
                g4_generate_stats *stats, g4_err *err) {
    return g4_generate_with(d, s, tok, prompt, n_prompt, NULL, p, on_text, ctx, out_ids, stats, err);
}

int g4_generate_with(g4_decoder *d, g4_sampler *s, const g4_tokenizer *tok, const int32_t *prompt, size_t n_prompt,
                     const g4_soft_tokens *soft, const g4_generate_params *p, g4_text_fn on_text, void *ctx,
                     g4_ids *out_ids, g4_generate_stats *stats, g4_err *err) {
    g4_generate_stats st = {0};
    st.prompt_tokens = (int64_t)n_prompt;
    const int64_t V = d->m->cfg.text.vocab_size;
    float *logits = malloc((size_t)V * sizeof(float));
    g4_ids history = {0};
    g4_buf text = {0};
    g4_detok detok;
    g4_detok_init(&detok, tok, p->skip_special);
    g4_stop_filter filter = {p->stop_strings, p->n_stop_strings, {0}, 0};
    int rc = 0;
    if (!logits || g4_ids_extend(&history, prompt, n_prompt)) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        goto done;
    }
    double t0 = now_seconds();
    g4_forward_opts opts = {NULL, NULL, logits, NULL};
    if (soft) memcpy(opts.soft, soft, sizeof opts.soft);
    if ((rc = g4_decoder_forward(d, prompt, (int64_t)n_prompt, &opts, err))) goto done;
    memset(opts.soft, 0, sizeof opts.soft); /* generated tokens are text */
    st.prefill_seconds = now_seconds() - t0;
    double t1 = now_seconds();
    for (;;) {
        if (p->max_tokens > 0 && st.generated_tokens >= p->max_tokens) {
            st.stop_reason = G4_STOP_MAX_TOKENS;
            break;
        }
        int32_t id = g4_sampler_pick(s, logits, history.v, history.n);
        if (st.generated_tokens == 0) st.time_to_first_token = now_seconds() - t0;
        if (is_stop_id(p, id)) {
            st.stop_reason = G4_STOP_EOS;
            break;
        }
        st.generated_tokens++;
        if (g4_ids_push(&history, id) || (out_ids && g4_ids_push(out_ids, id))) {
            rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
            goto done;
        }
        g4_buf_reset(&text);
        if ((rc = g4_detok_feed(&detok, id, &text, err))) goto done;
        if (text.len && g4_stop_filter_push(&filter, text.data, text.len, on_text, ctx)) {
            st.stop_reason = G4_STOP_CALLER;
            break;
        }
        if (filter.stopped) {
            st.stop_reason = G4_STOP_STRING;
            break;
        }
        if (d->pos >= d->n_ctx) {
            st.stop_reason = G4_STOP_CONTEXT;
            break;
        }
        if ((rc = g4_decoder_forward(d, &id, 1, &opts, err))) goto done;
    }
    st.decode_seconds = now_seconds() - t1;
    if (!filter.stopped) {
        g4_buf_reset(&text);
        g4_detok_flush(&detok, &text);
        if (text.len) g4_stop_filter_push(&filter, text.data, text.len, on_text, ctx);
        g4_stop_filter_flush(&filter, on_text, ctx);
    }
done:
    if (stats) *stats = st;
    free(logits);
    g4_ids_free(&history);
    g4_buf_free(&text);
    g4_stop_filter_free(&filter);
    return rc;
}
