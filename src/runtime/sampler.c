/* sampler.c — transformers' logits processing order: repetition penalty, temperature, top-k, top-p, min-p. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256**: small, fast, and the same stream on every platform for a given seed. */
static uint64_t next_u64(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static double next_unit(uint64_t s[4]) { return (double)(next_u64(s) >> 11) / 9007199254740992.0; }

int g4_sampler_init(g4_sampler *s, const g4_sampler_params *p, int vocab, g4_err *err) {
    memset(s, 0, sizeof *s);
    if (vocab <= 0) return g4_fail(err, GEMMA4C_ERR_ARG, "sampler: empty vocabulary");
    if (!p->greedy && !(p->temperature > 0)) return g4_fail(err, GEMMA4C_ERR_ARG, "temperature must be > 0 when sampling");
    if (p->top_k < 0) return g4_fail(err, GEMMA4C_ERR_ARG, "top-k must be >= 0");
    if (!(p->top_p > 0 && p->top_p <= 1)) return g4_fail(err, GEMMA4C_ERR_ARG, "top-p must be in (0, 1]");
    if (!(p->min_p >= 0 && p->min_p < 1)) return g4_fail(err, GEMMA4C_ERR_ARG, "min-p must be in [0, 1)");
    if (!(p->repetition_penalty > 0)) return g4_fail(err, GEMMA4C_ERR_ARG, "repetition penalty must be > 0");
    if (!(fabsf(p->presence_penalty) <= 100) || !(fabsf(p->frequency_penalty) <= 100))
        return g4_fail(err, GEMMA4C_ERR_ARG, "presence and frequency penalties must be in [-100, 100]");
    s->p = *p;
    s->vocab = vocab;
    s->ops = g4_kernels_best();
    s->cand = malloc((size_t)vocab * sizeof *s->cand);
    s->seen = calloc((size_t)vocab, 1);
    s->count = calloc((size_t)vocab, sizeof *s->count);
    if (!s->cand || !s->seen || !s->count) {
        g4_sampler_free(s);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    uint64_t z = p->seed;
    for (int i = 0; i < 4; i++) { /* splitmix64 expands the seed into the generator state */
        z += 0x9E3779B97F4A7C15ull;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        s->rng[i] = x ^ (x >> 31);
    }
    return 0;
}

void g4_sampler_free(g4_sampler *s) {
    free(s->cand);
    free(s->seen);
    free(s->count);
    memset(s, 0, sizeof *s);
}

int g4_sampler_changes_logits(const g4_sampler *s) {
    return s->p.repetition_penalty != 1.0f || s->p.presence_penalty != 0 || s->p.frequency_penalty != 0;
}

static void apply_repetition_penalty(g4_sampler *s, float *logits, const int32_t *history, size_t n) {
    float pen = s->p.repetition_penalty;
    if (pen == 1.0f || !history) return;
    for (size_t i = 0; i < n; i++) {
        int32_t id = history[i];
        if (id < 0 || id >= s->vocab || s->seen[id]) continue;
        s->seen[id] = 1;
        logits[id] = logits[id] < 0 ? logits[id] * pen : logits[id] / pen;
    }
    for (size_t i = 0; i < n; i++)
        if (history[i] >= 0 && history[i] < s->vocab) s->seen[history[i]] = 0;
}

/* Descending by logit; equal logits by id, so the order (and thus sampling) is deterministic. */
static int by_logit_desc(const void *a, const void *b) {
    const g4_candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The k best of n candidates (by_logit_desc), moved to the front in that order. A heap of the k kept, its root the
 * worst of them, costs about one comparison a candidate, where sorting all n (up to the whole vocabulary: Gemma's
 * logits are soft-capped, so 30 below the best keeps most of it) costs about log2(n). */
static int worse(const g4_candidate *a, const g4_candidate *b) { return by_logit_desc(a, b) > 0; }

static void sift_down(g4_candidate *h, int k, int i) {
    for (;;) {
        int w = i;
        const int l = 2 * i + 1, r = l + 1;
        if (l < k && worse(&h[l], &h[w])) w = l;
        if (r < k && worse(&h[r], &h[w])) w = r;
        if (w == i) return;
        const g4_candidate t = h[i];
        h[i] = h[w], h[w] = t;
        i = w;
    }
}

static void keep_best(g4_candidate *c, int n, int k) {
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
    for (int i = k; i < n; i++)
        if (worse(&c[0], &c[i])) {
            c[0] = c[i];
            sift_down(c, k, 0);
        }
    qsort(c, (size_t)k, sizeof *c, by_logit_desc);
}

/* logit -= presence * [count > 0] + frequency * count, over the ids of the answer. */
static void apply_answer_penalties(g4_sampler *s, float *logits, const int32_t *answer, size_t n) {
    if ((s->p.presence_penalty == 0 && s->p.frequency_penalty == 0) || !answer) return;
    for (size_t i = 0; i < n; i++)
        if (answer[i] >= 0 && answer[i] < s->vocab) s->count[answer[i]]++;
    for (size_t i = 0; i < n; i++) {
        int32_t id = answer[i];
        if (id < 0 || id >= s->vocab || !s->count[id]) continue;
        logits[id] -= s->p.presence_penalty + s->p.frequency_penalty * (float)s->count[id];
        s->count[id] = 0;
    }
}

int32_t g4_sampler_pick(g4_sampler *s, float *logits, const int32_t *history, size_t n_history, size_t n_answer) {
    const int V = s->vocab;
    apply_repetition_penalty(s, logits, history, n_history);
    if (n_answer > n_history) n_answer = n_history;
    apply_answer_penalties(s, logits, history ? history + n_history - n_answer : NULL, n_answer);
    if (s->p.greedy) return (int32_t)s->ops->argmax(logits, V);

    /* Temperature, then drop what cannot matter: tokens e^-30 below the best carry < 1e-8 of the mass in
     * total even over a 262144-token vocabulary, and sorting the rest is far cheaper. */
    const float inv_t = 1.0f / s->p.temperature;
    const int32_t top = (int32_t)s->ops->argmax(logits, V);
    const float best = logits[top] * inv_t; /* scaling by inv_t > 0 keeps the order */
    /* Nothing to weigh when the best is not a finite number (every logit NaN or -inf, say, from a logits
     * callback or a broken cache; or +inf): the greedy pick, rather than an empty candidate list. Otherwise the
     * best itself is a candidate, and NaN logits never are. */
    if (!isfinite(best)) return top;
    int n = 0;
    for (int i = 0; i < V; i++) {
        float l = logits[i] * inv_t;
        if (l >= best - 30.0f) s->cand[n++] = (g4_candidate){l, i};
    }
    if (s->p.top_k > 0 && s->p.top_k < n) {
        keep_best(s->cand, n, s->p.top_k);
        n = s->p.top_k;
    } else {
        qsort(s->cand, (size_t)n, sizeof *s->cand, by_logit_desc);
    }

    /* Softmax over the survivors; probabilities stay in cand[].logit from here on. */
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (s->cand[i].logit = expf(s->cand[i].logit - best));
    for (int i = 0; i < n; i++) s->cand[i].logit = (float)(s->cand[i].logit / sum);

    if (s->p.top_p < 1.0f) { /* smallest prefix whose mass reaches top_p; at least one token */
        double cum = 0;
        int keep = 0;
        while (keep < n) {
            cum += s->cand[keep++].logit;
            if (cum >= s->p.top_p) break;
        }
        n = keep;
    }
    if (s->p.min_p > 0) { /* tokens below min_p times the top probability go */
        float floor_p = s->p.min_p * s->cand[0].logit;
        int keep = 1;
        while (keep < n && s->cand[keep].logit >= floor_p) keep++;
        n = keep;
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += s->cand[i].logit;
    double r = next_unit(s->rng) * total;
    for (int i = 0; i < n; i++) {
        r -= s->cand[i].logit;
        if (r < 0) return s->cand[i].id;
    }
    return s->cand[n - 1].id;
}

void g4_top_k(const float *logits, int64_t n, int k, g4_candidate *out) {
    int have = 0;
    for (int64_t i = 0; i < n; i++) {
        float l = logits[i];
        if (have == k && !(l > out[k - 1].logit)) continue; /* NaN never enters */
        if (have < k && !(l == l)) continue;
        int at = have < k ? have++ : k - 1;
        while (at > 0 && l > out[at - 1].logit) {
            out[at] = out[at - 1];
            at--;
        }
        out[at] = (g4_candidate){l, (int32_t)i};
    }
    for (int i = have; i < k; i++) out[i] = (g4_candidate){-INFINITY, -1};
}
