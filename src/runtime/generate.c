/* generate.c — sampling, streaming detokenisation, stop strings and stop conditions of one request. */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
        if (at && (size_t)(at - h) < cut) {
            cut = (size_t)(at - h);
            f->which = (int)s;
        }
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

static int append_text(void *ctx, const char *text, size_t len) { return g4_buf_append(ctx, text, len); }

/* JSON mode's phases: at the answer's first token a thought channel may open (G4_JSON_AFTER_THOUGHT); inside it
 * nothing is constrained; once it closes, or when the answer starts otherwise, every token must keep the text a
 * prefix of a JSON object. */
enum { JSON_START, JSON_THOUGHT, JSON_OBJECT };
/* What a token can be in JSON mode: never text (a control token, no bytes, an id the tokenizer lacks), text that
 * continues any string between its characters and leaves it there (no quote or control byte, whole UTF-8
 * characters and escapes: most of a vocabulary, checked at once inside strings), or other text. */
int g4_token_pieces_build(g4_token_pieces *p, const g4_tokenizer *tok, int vocab, g4_err *err) {
    memset(p, 0, sizeof *p);
    const int n_tok = g4_tokenizer_vocab_size(tok);
    p->vocab = vocab;
    p->at = malloc(((size_t)vocab + 1) * sizeof *p->at);
    p->kind = malloc((size_t)vocab);
    p->chars = calloc((size_t)vocab, 1);
    g4_buf all = {0}, one = {0};
    g4_json_state in_string = {0};
    g4_json_feed(&in_string, (const unsigned char *)"{\"\":\"", 5);
    int rc = p->at && p->kind && p->chars ? 0 : g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    for (int id = 0; !rc && id < vocab; id++) {
        p->at[id] = (uint32_t)all.len;
        p->kind[id] = G4_PIECE_NONE;
        if (id >= n_tok || g4_tokenizer_is_special(tok, id)) continue;
        g4_buf_reset(&one);
        if ((rc = g4_tokenizer_piece(tok, id, &one, err))) break;
        if (!one.len) continue;
        g4_json_state t = in_string;
        int bad = 0, chars = 0; /* characters as a schema's length counts them: bytes that begin one or an escape */
        for (size_t i = 0; !bad && i < one.len; i++) {
            const unsigned char c = (unsigned char)one.data[i];
            chars += g4_json_in_string(&t);
            bad = (g4_json_in_string(&t) && c == '"') || g4_json_feed(&t, &c, 1); /* a quote would end the string */
        }
        const int plain = !bad && g4_json_in_string(&t);
        p->kind[id] = plain ? G4_PIECE_PLAIN : G4_PIECE_OTHER;
        p->chars[id] = (uint8_t)(plain && chars < 255 ? chars : 255);
        if (all.len + one.len > UINT32_MAX || g4_buf_append(&all, one.data, one.len))
            rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    if (!rc) p->at[vocab] = (uint32_t)all.len;
    g4_buf_free(&one);
    p->bytes = (unsigned char *)all.data; /* owned now */
    if (rc) g4_token_pieces_free(p);
    return rc;
}

void g4_token_pieces_free(g4_token_pieces *p) {
    free(p->at);
    free(p->kind);
    free(p->chars);
    free(p->bytes);
    memset(p, 0, sizeof *p);
}

/* Feeds token id's bytes to a JSON state. */
static int feed_token(const g4_gen *g, g4_schema_state *s, int32_t id) {
    const g4_token_pieces *p = g->p.pieces;
    return g4_schema_feed(g->p.schema, s, p->bytes + p->at[id], p->at[id + 1] - p->at[id]);
}

/* Inside a string with a pattern, the place the pattern stands at, when it has been there before: what plain pieces
 * may come from it is remembered then (a wide class lets most of a vocabulary through, each piece decoded and
 * stepped), not at a first visit (most of a date's or an identifier's places are visited once). *memo NULL:
 * nothing remembered nor to remember; not yet filled: json_mask's pass fills it. */
static int place_memo(g4_gen *g, struct g4_plain_mask **memo, g4_err *err) {
    int pattern;
    uint64_t at;
    *memo = NULL;
    if (!g4_schema_pattern_at(g->p.schema, &g->json, &pattern, &at)) return 0;
    g->mask_steps++;
    struct g4_plain_mask *slot = &g->plain_masks[0];
    for (int i = 0; i < G4_PLAIN_MASKS; i++) {
        struct g4_plain_mask *m = &g->plain_masks[i];
        if (m->used && m->pattern == pattern && m->at == at) {
            m->used = g->mask_steps;
            const size_t words = ((size_t)g->vocab + 63) / 64;
            if (!m->bits && !(m->bits = malloc(words * sizeof *m->bits)))
                return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
            if (!m->filled) memset(m->bits, 0, words * sizeof *m->bits);
            *memo = m;
            return 0;
        }
        if (m->used < slot->used) slot = m; /* the least recently used, or one never used */
    }
    slot->pattern = pattern;
    slot->at = at;
    slot->used = g->mask_steps;
    slot->filled = 0;
    return 0;
}

/* Logits of the tokens that cannot continue the JSON text become -inf. Most tokens fail on their first byte, so
 * the bytes that may come next are found once, and only tokens starting with one of them are tried whole. */
static int json_mask(g4_gen *g, float *logits, g4_err *err) {
    const g4_token_pieces *p = g->p.pieces;
    const int64_t room = g4_schema_string_room(g->p.schema, &g->json); /* characters a plain piece may add */
    g4_schema_state *t = &g->json_trial;
    uint8_t first_ok[256];
    for (int c = 0; c < 256; c++) {
        const unsigned char byte = (unsigned char)c;
        g4_schema_copy(t, &g->json);
        first_ok[c] = !g4_schema_feed(g->p.schema, t, &byte, 1);
    }
    struct g4_plain_mask *memo = NULL;
    int rc = room < 0 ? place_memo(g, &memo, err) : 0;
    if (rc) return rc;
    const uint64_t *known = memo && memo->filled ? memo->bits : NULL; /* plain pieces answered before */
    uint64_t *record = memo && !memo->filled ? memo->bits : NULL;     /* plain pieces to answer for later */
    int allowed = 0;
    for (int id = 0; id < g->vocab; id++) {
        int ok;
        const int kind = p->kind[id];
        if (kind == G4_PIECE_NONE) ok = g->json_phase == JSON_START && g->p.json == G4_JSON_AFTER_THOUGHT && id == g->channel_open;
        else if (kind == G4_PIECE_PLAIN && room >= 0) ok = p->chars[id] <= room;
        else if (kind == G4_PIECE_PLAIN && known) ok = (int)(known[id / 64] >> (id % 64) & 1);
        else if (!first_ok[p->bytes[p->at[id]]]) ok = 0;
        else {
            g4_schema_copy(t, &g->json);
            ok = !feed_token(g, t, id);
            if (ok && kind == G4_PIECE_PLAIN && record) record[id / 64] |= (uint64_t)1 << (id % 64);
        }
        if (!ok) logits[id] = -INFINITY;
        allowed += ok;
    }
    if (memo) memo->filled = 1;
    return allowed ? 0 : g4_fail(err, GEMMA4C_ERR_ARG, "JSON mode: no token of the vocabulary continues the JSON text");
}

/* The chosen token moves JSON mode along. */
static void json_advance(g4_gen *g, int32_t id) {
    if (g->json_phase == JSON_THOUGHT) {
        if (id == g->channel_close) g->json_phase = JSON_OBJECT;
        return;
    }
    if (g->json_phase == JSON_START && g->p.json == G4_JSON_AFTER_THOUGHT && id == g->channel_open) {
        g->json_phase = JSON_THOUGHT;
        return;
    }
    g->json_phase = JSON_OBJECT;
    feed_token(g, &g->json, id); /* the mask let only fitting tokens through */
}

int g4_gen_init(g4_gen *g, const g4_gen_params *p, const g4_tokenizer *tok, int vocab, const int32_t *prompt,
                size_t n_prompt, g4_err *err) {
    memset(g, 0, sizeof *g);
    g->p = *p;
    g->tok = tok;
    g->vocab = vocab;
    if (p->top_logprobs < 0 || p->top_logprobs > G4_MAX_TOP_LOGPROBS)
        return g4_fail(err, GEMMA4C_ERR_ARG, "top_logprobs must be in [0, %d]", G4_MAX_TOP_LOGPROBS);
    int rc = g4_sampler_init(&g->sampler, &p->sampling, vocab, err);
    if (rc) return rc;
    g4_detok_init(&g->detok, tok, p->skip_special);
    g->filter = (g4_stop_filter){p->stop_strings, p->n_stop_strings, {0}, 0, 0};
    g->n_prompt = n_prompt;
    if (g4_ids_extend(&g->history, prompt, n_prompt)) {
        g4_gen_free(g);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    if (p->schema && !p->json) {
        g4_gen_free(g);
        return g4_fail(err, GEMMA4C_ERR_ARG, "a JSON schema needs JSON mode");
    }
    if (p->json && (!p->pieces || p->pieces->vocab != vocab)) {
        g4_gen_free(g);
        return g4_fail(err, GEMMA4C_ERR_ARG, "JSON mode needs the token pieces of a %d-token vocabulary", vocab);
    }
    if (p->json) {
        g->channel_open = g4_tokenizer_find(tok, "<|channel>");
        g->channel_close = g4_tokenizer_find(tok, "<channel|>");
    }
    return 0;
}

void g4_gen_free(g4_gen *g) {
    for (int i = 0; i < G4_PLAIN_MASKS; i++) free(g->plain_masks[i].bits);
    g4_sampler_free(&g->sampler);
    g4_stop_filter_free(&g->filter);
    g4_ids_free(&g->history);
    free(g->raw);
    memset(g, 0, sizeof *g);
}

void g4_gen_token_free(g4_gen_token *t) {
    g4_buf_free(&t->piece);
    g4_buf_free(&t->text);
}

static int is_stop_id(const g4_gen_params *p, int32_t id) {
    for (size_t i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] == id) return 1;
    return 0;
}

/* What the detokenizer and the stop filter still hold becomes text, unless a stop string ended things. */
static int release_held(g4_gen *g, g4_buf *text) {
    if (g->filter.stopped) return 0;
    g4_buf rest = {0};
    int rc = g4_detok_flush(&g->detok, &rest);
    if (!rc && rest.len && g4_stop_filter_push(&g->filter, rest.data, rest.len, append_text, text)) rc = -1;
    if (!rc && g4_stop_filter_flush(&g->filter, append_text, text)) rc = -1;
    g4_buf_free(&rest);
    return rc ? GEMMA4C_ERR_NOMEM : 0;
}

int g4_gen_stop(g4_gen *g, int reason, g4_buf *text) {
    g->stop_reason = reason;
    return release_held(g, text);
}

int g4_gen_next(g4_gen *g, float *logits, g4_gen_token *out, g4_err *err) {
    g4_buf_reset(&out->piece);
    g4_buf_reset(&out->text);
    out->n_top = 0;
    out->logprob = 0;
    /* Log-probabilities describe the model's distribution, before any sampling rule touches it. */
    float lse = g->p.logprobs || g->p.top_logprobs ? g->sampler.ops->logsumexp(logits, g->vocab) : 0;
    if (g->p.top_logprobs) {
        g4_top_k(logits, g->vocab, g->p.top_logprobs, out->top);
        out->n_top = g->p.top_logprobs;
        for (int i = 0; i < out->n_top; i++) out->top[i].logit -= lse;
    }
    const size_t n_answer = g->history.n - g->n_prompt;
    /* Without a penalty the chosen logit is read in place (a copy of a 262144-entry row costs a millisecond of page
     * faults on a request's first token). */
    const int constrained = g->p.json && g->json_phase != JSON_THOUGHT;
    const int keep_raw = g->p.logprobs && (g4_sampler_changes_logits(&g->sampler) || constrained);
    if (keep_raw && !g->raw && !(g->raw = malloc((size_t)g->vocab * sizeof(float))))
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    if (keep_raw) memcpy(g->raw, logits, (size_t)g->vocab * sizeof(float));
    int rc = constrained ? json_mask(g, logits, err) : 0;
    if (rc) return rc;
    int32_t id = g4_sampler_pick(&g->sampler, logits, g->history.v, g->history.n, n_answer);
    out->id = id;
    if (g->p.logprobs) out->logprob = (keep_raw ? g->raw[id] : logits[id]) - lse;
    if (is_stop_id(&g->p, id)) {
        out->id = -1;
        g->stop_reason = G4_STOP_EOS;
        g->stop_id = id;
        rc = release_held(g, &out->text);
        return rc ? g4_fail(err, rc, "out of memory") : 0;
    }
    g->generated++;
    if (g->p.json) json_advance(g, id);
    if (g4_ids_push(&g->history, id)) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    if ((rc = g4_tokenizer_piece(g->tok, id, &out->piece, err))) return rc;
    g4_buf fresh = {0};
    rc = g4_detok_feed(&g->detok, id, &fresh, err);
    if (!rc && fresh.len && g4_stop_filter_push(&g->filter, fresh.data, fresh.len, append_text, &out->text))
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    g4_buf_free(&fresh);
    if (rc) return rc;
    const int json_done = g->p.json && g4_json_complete(&g->json.syntax);
    if (g->filter.stopped) {
        g->stop_reason = G4_STOP_STRING;
        g->stop_string = g->filter.which;
    } else if (json_done || (g->p.max_tokens > 0 && g->generated >= g->p.max_tokens)) {
        g->stop_reason = json_done ? G4_STOP_JSON : G4_STOP_LENGTH;
        if (release_held(g, &out->text)) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    return 0;
}
