/* quant_quality.c — how far the quantized recipes move the full-size model: logit error, KL, greedy agreement.
 *
 * usage: quant_quality [e4b|e2b] [recipe...]   (default: e4b q8 q4)
 * Builds the synthetic model of golden/synthetic in bf16 and in each recipe, runs the 600-token reference prompt,
 * and compares with the reference's top-64 logits and logsumexp at every position; then decodes 256 greedy tokens
 * with the bf16 model and with each recipe (from the same prompt) and counts agreeing tokens. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/safetensors.h"
#include "model/decoder.h"
#include "model/model.h"

#define GREEDY_STEPS 256

typedef struct reference {
    int64_t T, V;
    int32_t *ids, *top_i;
    float *top_v, *lse;
} reference;

typedef struct scores {
    double max_abs, kl_sum;
    int64_t n;
    int argmax_same;
} scores;

static float *read_f32(const g4_st_file *f, const char *name, int64_t *n) {
    const g4_tensor *t = g4_st_find(f, name);
    if (!t) return NULL;
    int64_t k = g4_tensor_numel(t);
    float *v = malloc((size_t)k * sizeof *v);
    for (int64_t i = 0; v && i < k; i++) v[i] = g4_tensor_get_f32(t, i);
    if (n) *n = k;
    return v;
}

static int32_t *read_i32(const g4_st_file *f, const char *name, int64_t *n) {
    int64_t k;
    float *v = read_f32(f, name, &k);
    int32_t *out = v ? malloc((size_t)k * sizeof *out) : NULL;
    for (int64_t i = 0; out && i < k; i++) out[i] = (int32_t)v[i];
    free(v);
    if (n) *n = k;
    return out;
}

/* KL(reference || model) over the reference's top-64 ids plus one bucket for the rest of the mass. */
static double kl_top64(const float *lg, int64_t V, const float *top_v, const int32_t *top_i, float lse_ref) {
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < V; i++) m = fmax(m, lg[i]);
    for (int64_t i = 0; i < V; i++) s += exp(lg[i] - m);
    const double lse = m + log(s);
    double kl = 0, p_rest = 1, q_rest = 1;
    for (int k = 0; k < 64; k++) {
        double p = exp(top_v[k] - lse_ref), q = exp(lg[top_i[k]] - lse);
        p_rest -= p, q_rest -= q;
        if (p > 0) kl += p * log(p / fmax(q, 1e-300));
    }
    if (p_rest > 1e-12) kl += p_rest * log(p_rest / fmax(q_rest, 1e-300));
    return kl;
}

static int score_logits(void *ctx, int64_t pos0, int64_t n, const float *logits, g4_err *err) {
    void **pair = ctx;
    const reference *r = pair[0];
    scores *s = pair[1];
    for (int64_t j = 0; j < n; j++) {
        const int64_t t = pos0 + j;
        const float *lg = logits + j * r->V;
        for (int k = 0; k < 64; k++) s->max_abs = fmax(s->max_abs, fabs(lg[r->top_i[t * 64 + k]] - r->top_v[t * 64 + k]));
        s->kl_sum += kl_top64(lg, r->V, r->top_v + t * 64, r->top_i + t * 64, r->lse[t]);
        int64_t am = 0;
        for (int64_t i = 1; i < r->V; i++) am = lg[i] > lg[am] ? i : am;
        s->argmax_same += am == r->top_i[t * 64];
        s->n++;
    }
    return 0;
}

static int64_t argmax(const float *v, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++) b = v[i] > v[b] ? i : b;
    return b;
}

/* Scores the prompt against the reference, then decodes GREEDY_STEPS greedy tokens into `out`. */
static int evaluate(const char *config, const char *recipe, const reference *r, scores *s, int32_t *out) {
    g4_err err = {0};
    g4_model *m;
    clock_t t0 = clock();
    if (g4_model_synthetic(config, recipe, 0, &m, &err)) {
        fprintf(stderr, "%s: %s\n", recipe, err.msg);
        return 1;
    }
    g4_compute c;
    g4_backend be;
    if (g4_compute_init(&c, 0, g4_model_max_input_width(m)) || g4_backend_cpu_init(&be, &c, &err)) {
        fprintf(stderr, "%s: out of memory\n", recipe);
        return 1;
    }
    g4_decoder d;
    g4_kv_budget budget;
    g4_kv_seq seq;
    g4_kv_budget_init(&budget, 0, &be);
    if (g4_decoder_init(&d, m, &be, 256, &err) || g4_kv_seq_init(&seq, m, r->T + GREEDY_STEPS + 1, &budget, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    float *last = malloc((size_t)r->V * sizeof *last);
    void *pair[2] = {(void *)r, s};
    g4_forward_opts opts = {.on_logits = score_logits, .ctx = pair, .last_logits = last};
    int rc = g4_decoder_forward(&d, &seq, r->ids, r->T, &opts, &err);
    g4_forward_opts step = {.last_logits = last};
    for (int i = 0; !rc && i < GREEDY_STEPS; i++) {
        out[i] = (int32_t)argmax(last, r->V);
        rc = g4_decoder_forward(&d, &seq, &out[i], 1, &step, &err);
    }
    if (rc) fprintf(stderr, "%s: %s\n", recipe, err.msg);
    fprintf(stderr, "%s: %.0f s of CPU\n", recipe, (double)(clock() - t0) / CLOCKS_PER_SEC);
    free(last);
    g4_decoder_free(&d);
    g4_kv_seq_free(&seq);
    g4_kv_budget_destroy(&budget);
    be.destroy(&be);
    g4_compute_free(&c);
    g4_model_free(m);
    return rc != 0;
}

int main(int argc, char **argv) {
    const char *shape = argc > 1 ? argv[1] : "e4b";
    const char *default_recipes[] = {"q8", "q4"};
    const char **recipes = argc > 2 ? (const char **)argv + 2 : default_recipes;
    const int n_recipes = argc > 2 ? argc - 2 : 2;
    const char *golden = getenv("GEMMA4C_GOLDEN") ? getenv("GEMMA4C_GOLDEN") : GEMMA4C_SOURCE_DIR "/../shared/golden";
    char path[4200];
    snprintf(path, sizeof path, "%s/synthetic/%s.safetensors", golden, shape);
    g4_st_file *f;
    g4_err err = {0};
    if (g4_st_open(path, &f, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const char *config = g4_st_metadata(f, "config");
    reference r = {0};
    r.ids = read_i32(f, "input_ids", &r.T);
    r.top_i = read_i32(f, "top64_ids", NULL);
    r.top_v = read_f32(f, "top64_values", NULL);
    r.lse = read_f32(f, "logsumexp", NULL);
    r.V = 262144;
    int32_t base[GREEDY_STEPS], mine[GREEDY_STEPS];
    scores s0 = {0};
    if (!config || evaluate(config, "bf16", &r, &s0, base)) return 1;
    printf("%s, %lld-token prompt vs the transformers reference (top-64 + logsumexp); greedy %d tokens vs bf16\n", shape,
           (long long)r.T, GREEDY_STEPS);
    printf("recipe  max|dlogit|  mean KL     argmax agree  greedy agree\n");
    printf("%-6s  %.3e    %.3e   %4d/%lld      (reference)\n", "bf16", s0.max_abs, s0.kl_sum / s0.n, s0.argmax_same,
           (long long)s0.n);
    fflush(stdout);
    for (int q = 0; q < n_recipes; q++) {
        scores s = {0};
        if (evaluate(config, recipes[q], &r, &s, mine)) return 1;
        int same = 0, first_diff = -1;
        for (int i = 0; i < GREEDY_STEPS; i++) {
            same += mine[i] == base[i];
            if (first_diff < 0 && mine[i] != base[i]) first_diff = i;
        }
        printf("%-6s  %.3e    %.3e   %4d/%lld      %d/%d (first difference at %d)\n", recipes[q], s.max_abs,
               s.kl_sum / s.n, s.argmax_same, (long long)s.n, same, GREEDY_STEPS, first_diff);
        fflush(stdout);
    }
    g4_st_close(f);
    return 0;
}
