/* slow_fullsize.c — full-size E4B / E2B text wiring against golden/synthetic (weights from the formula). */
#include "test.h"

#include "decoder_util.h"

#include <cjson/cJSON.h>

#include "golden_util.h"
#include "model/decoder.h"
#include "model/model.h"
#include "synth/synth_model.h"

/* The golden README's full-size tolerances: float32 implementations differ by up to 8.5e-3 at this size. */
#define MAX_ABS 2e-2
#define MARGIN 0.05

typedef struct checker {
    const g4_st_file *ref;
    int64_t V;
    const float *top_v, *lse, *rows_logits;
    const int32_t *top_i, *rows;
    int64_t n_rows;
    double worst_top, worst_lse, worst_row;
    int argmax_checked, argmax_same;
} checker;

static double logsumexp(const float *v, int64_t n) {
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
    for (int64_t i = 0; i < n; i++) s += exp((double)v[i] - m);
    return m + log(s);
}

/* Compares one position's logits with the reference's top-64 (values at the reference ids), logsumexp and
 * argmax (where the reference's top-2 margin makes it meaningful). */
static void check_position(checker *c, int64_t pos, const float *lg, const float *top_v, const int32_t *top_i,
                           const float *lse) {
    for (int k = 0; k < 64; k++) {
        double e = fabs((double)lg[top_i[k]] - top_v[k]);
        if (e > c->worst_top) c->worst_top = e;
    }
    if (lse) {
        double e = fabs(logsumexp(lg, c->V) - *lse);
        if (e > c->worst_lse) c->worst_lse = e;
    }
    if (top_v[0] - top_v[1] > MARGIN) {
        c->argmax_checked++;
        int64_t am = g4t_argmax(lg, c->V);
        c->argmax_same += am == top_i[0];
        CHECK(am == top_i[0], "position %lld: argmax %lld, reference %d (margin %.3f)", (long long)pos, (long long)am,
              top_i[0], top_v[0] - top_v[1]);
    }
}

static int on_logits(void *ctx, int64_t pos0, int64_t n, const float *logits, g4_err *err) {
    checker *c = ctx;
    for (int64_t r = 0; r < n; r++) {
        int64_t pos = pos0 + r;
        const float *lg = logits + r * c->V;
        check_position(c, pos, lg, c->top_v + pos * 64, c->top_i + pos * 64, c->lse + pos);
        for (int64_t k = 0; k < c->n_rows; k++)
            if (c->rows[k] == pos) {
                for (int64_t i = 0; i < c->V; i++) {
                    double e = fabs((double)lg[i] - c->rows_logits[k * c->V + i]);
                    if (e > c->worst_row) c->worst_row = e;
                }
            }
    }
    return 0;
}

static void run_shape(const char *golden, const char *shape) {
    char path[4200];
    snprintf(path, sizeof path, "%s/synthetic/%s.safetensors", golden, shape);
    g4_st_file *ref;
    g4_err err = {0};
    if (g4_st_open(path, &ref, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    /* The reference's own config (transformers' expanded form, per_layer_config) drives the model. */
    const char *cfg = g4_st_metadata(ref, "config");
    CHECK(cfg != NULL, "no config in %s", path);
    g4_model *m;
    if (g4_model_synthetic(cfg, NULL, 0, &m, &err)) {
        CHECK(0, "synthetic %s: %s", shape, err.msg);
        return;
    }
    /* ... and gemma4c's built-in shape, used by the benchmarks, must describe the same model. */
    g4_model_config mine;
    const char *builtin = g4_synth_config_json(shape);
    CHECK(g4_config_parse(builtin, strlen(builtin), &mine, &err) == 0, "%s", err.msg);
    CHECK(memcmp(&mine.text, &m->cfg.text, sizeof mine.text) == 0, "built-in %s config differs from the reference's", shape);
    g4_config_free(&mine);

    int64_t T, n_rows, n_greedy;
    int32_t *ids = g4t_tensor_i32(ref, "input_ids", &T);
    checker c = {0};
    c.ref = ref;
    c.V = m->cfg.text.vocab_size;
    float *top_v = g4t_tensor_f32(ref, "top64_values", NULL), *lse = g4t_tensor_f32(ref, "logsumexp", NULL);
    int32_t *top_i = g4t_tensor_i32(ref, "top64_ids", NULL), *rows = g4t_tensor_i32(ref, "logit_rows", &n_rows);
    float *rows_logits = g4t_tensor_f32(ref, "logits_at_rows", NULL);
    c.top_v = top_v, c.top_i = top_i, c.lse = lse, c.rows = rows, c.n_rows = n_rows, c.rows_logits = rows_logits;

    g4t_decoder td;
    CHECK(g4t_decoder_open(&td, m, 0, 256, T + 16, &err) == 0, "%s", err.msg);
    g4_decoder *d = &td.d;
    g4_kv_seq *seq = &td.seq;
    float *last = malloc((size_t)c.V * sizeof(float));
    g4_forward_opts opts = {.on_logits = on_logits, .ctx = &c, .last_logits = last};
    CHECK(g4_decoder_forward(d, seq, ids, T, &opts, &err) == 0 && g4t_decoder_sync(&td, &err) == 0, "%s", err.msg);
    printf("%s prefill %lld tokens: top-64 max|d| %.2e, logsumexp max|d| %.2e, full rows max|d| %.2e, argmax %d/%d\n",
           shape, (long long)T, c.worst_top, c.worst_lse, c.worst_row, c.argmax_same, c.argmax_checked);
    CHECK(c.worst_top <= MAX_ABS && c.worst_lse <= MAX_ABS && c.worst_row <= MAX_ABS, "%s prefill beyond %.0e", shape, MAX_ABS);

    /* Greedy continuation with the KV cache: the reference's ids are fed, so one flip cannot cascade. */
    int32_t *greedy = g4t_tensor_i32(ref, "greedy_ids", &n_greedy);
    float *g_top_v = g4t_tensor_f32(ref, "greedy_top64_values", NULL);
    int32_t *g_top_i = g4t_tensor_i32(ref, "greedy_top64_ids", NULL);
    checker g = c;
    g.worst_top = 0, g.argmax_checked = 0, g.argmax_same = 0;
    g4_forward_opts step = {.last_logits = last};
    for (int64_t s = 0; s < n_greedy; s++) {
        if (s == 0) CHECK(g4t_argmax(last, c.V) == greedy[0], "first greedy id");
        CHECK(g4_decoder_forward(d, seq, &greedy[s], 1, &step, &err) == 0 && g4t_decoder_sync(&td, &err) == 0, "%s",
              err.msg);
        check_position(&g, T + s, last, g_top_v + s * 64, g_top_i + s * 64, NULL);
    }
    printf("%s greedy %lld steps: top-64 max|d| %.2e, argmax %d/%d\n", shape, (long long)n_greedy, g.worst_top,
           g.argmax_same, g.argmax_checked);
    CHECK(g.worst_top <= MAX_ABS, "%s greedy beyond %.0e", shape, MAX_ABS);

    g4t_decoder_close(&td);
    g4_model_free(m);
    g4_st_close(ref);
    free(ids), free(top_v), free(lse), free(top_i), free(rows), free(rows_logits), free(last);
    free(greedy), free(g_top_v), free(g_top_i);
}

int main(int argc, char **argv) {
    g4t_parse_device(&argc, argv);
    g4t_require_device();
    const char *golden = g4t_require_golden();
    if (argc > 1)
        for (int i = 1; i < argc; i++) run_shape(golden, argv[i]);
    else {
        run_shape(golden, "e2b");
        run_shape(golden, "e4b");
    }
    return g4t_finish("slow_fullsize");
}
