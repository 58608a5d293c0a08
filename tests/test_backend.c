/* test_backend.c — the CPU backend's attention and kv writes against a plain softmax, over paged and dense key views,
 * query tiles, grouped heads, key-split parts and empty ranges. */
#include "test.h"

#include "backend/backend.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) / 16777216.0) * 2.0f - 1.0f;
}

/* Keys in pages as the decoder's cache lays them out ([kv_heads][page_len][D] keys, then values), or one dense
 * page as the vision encoder's ([positions][kv_heads][D] keys, then values). */
typedef struct layout {
    int dense;
    int64_t page_len, n_pages, kv_heads, D;
} layout;

static g4_kv_view make_view(g4_backend *be, const layout *l, float **pages) {
    g4_kv_view v;
    if (l->dense) {
        const int64_t n = l->page_len;
        pages[0] = be->alloc(be, (size_t)(2 * n * l->kv_heads * l->D) * sizeof(float));
        v = (g4_kv_view){pages, n, l->D, l->kv_heads * l->D, n * l->kv_heads * l->D};
    } else {
        for (int64_t p = 0; p < l->n_pages; p++)
            pages[p] = be->alloc(be, (size_t)(2 * l->kv_heads * l->page_len * l->D) * sizeof(float));
        v = (g4_kv_view){pages, l->page_len, l->page_len * l->D, l->D, l->kv_heads * l->page_len * l->D};
    }
    return v;
}

/* out = softmax(q · K^T) V for one query vector over keys [first, last] of kv head h, read back through the view. */
static void reference(const g4_kv_view *v, int64_t h, int64_t first, int64_t last, const float *q, int64_t D,
                      float *out) {
    memset(out, 0, (size_t)D * sizeof(float));
    if (first > last) return;
    double top = -INFINITY, sum = 0;
    double *s = malloc((size_t)(last - first + 1) * sizeof *s);
    for (int64_t p = first; p <= last; p++) {
        const float *k = v->page[p / v->page_len] + h * v->head_stride + p % v->page_len * v->pos_stride;
        double dot = 0;
        for (int64_t i = 0; i < D; i++) dot += (double)q[i] * k[i];
        s[p - first] = dot;
        top = dot > top ? dot : top;
    }
    for (int64_t p = first; p <= last; p++) sum += s[p - first] = exp(s[p - first] - top);
    for (int64_t p = first; p <= last; p++) {
        const float *val = v->page[p / v->page_len] + h * v->head_stride + p % v->page_len * v->pos_stride + v->value_offset;
        for (int64_t i = 0; i < D; i++) out[i] += (float)(s[p - first] / sum * val[i]);
    }
    free(s);
}

/* rows query rows against one view; range(r) gives each row's keys. Returns the largest error relative to the
 * largest output. */
static double run_case(g4_backend *be, const layout *l, int64_t rows, int64_t heads, void (*range)(int64_t, int64_t *, int64_t *)) {
    const int64_t D = l->D, nkv = l->kv_heads, positions = l->dense ? l->page_len : l->page_len * l->n_pages;
    float *pages[64];
    g4_kv_view view = make_view(be, l, pages);
    /* every position's keys and values through kv_write, in rows of up to 7 positions */
    const g4_kv_view *views[7] = {&view, &view, &view, &view, &view, &view, &view};
    float *k = malloc((size_t)(7 * nkv * D) * sizeof(float)), *v = malloc((size_t)(7 * nkv * D) * sizeof(float));
    for (int64_t p0 = 0; p0 < positions; p0 += 7) {
        int64_t pos[7], n = 0;
        for (; n < 7 && p0 + n < positions; n++) pos[n] = p0 + n;
        for (int64_t i = 0; i < n * nkv * D; i++) k[i] = rnd(), v[i] = rnd();
        be->kv_write(be, views, pos, n, nkv, D, k, v);
    }
    float *q = malloc((size_t)(rows * heads * D) * sizeof(float)), *out = malloc((size_t)(rows * heads * D) * sizeof(float));
    float *want = malloc((size_t)D * sizeof(float));
    const g4_kv_view **row_view = malloc((size_t)rows * sizeof *row_view);
    int64_t *first = malloc((size_t)rows * sizeof *first), *last = malloc((size_t)rows * sizeof *last);
    for (int64_t i = 0; i < rows * heads * D; i++) q[i] = rnd() * 2.0f, out[i] = NAN;
    for (int64_t r = 0; r < rows; r++) row_view[r] = &view, range(r, &first[r], &last[r]);
    const g4_attention a = {rows, heads, nkv, D, q, out, row_view, first, last};
    g4_err err = {0};
    CHECK(be->attention(be, &a, &err) == 0, "%s", err.msg);
    double worst = 0, scale = 1e-30;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t h = 0; h < heads; h++) {
            reference(&view, h / (heads / nkv), first[r], last[r], q + (r * heads + h) * D, D, want);
            for (int64_t i = 0; i < D; i++) {
                const double got = out[(r * heads + h) * D + i];
                worst = fmax(worst, isnan(got) ? INFINITY : fabs(got - want[i]));
                scale = fmax(scale, fabs(want[i]));
            }
        }
    for (int64_t p = 0; p < (l->dense ? 1 : l->n_pages); p++) be->release(be, pages[p]);
    free(k), free(v), free(q), free(out), free(want), free(row_view), free(first), free(last);
    return worst / scale;
}

/* Key ranges: prefill-like causal rows (each its own), a shared span (rows 3..20 see 0..40 together: tiles of
 * 16 and 2), a sliding window, a row with no keys, and rows that end together but start apart (a bidirectional
 * span past the sliding window: one tile each). */
static void mixed(int64_t r, int64_t *first, int64_t *last) {
    if (r < 3) *first = 0, *last = r;
    else if (r < 21) *first = 0, *last = 40;
    else if (r < 25) *first = r - 8, *last = r + 10;
    else if (r == 25) *first = 5, *last = 4;
    else *first = r - 10, *last = 58;
}
/* One decode row over every key (a split across workers when rows x kv heads are fewer than threads). */
static void one_row(int64_t r, int64_t *first, int64_t *last) { (void)r, *first = 0, *last = 59; }
/* Bidirectional: every row sees every position (the vision encoder). */
static void all_keys(int64_t r, int64_t *first, int64_t *last) { (void)r, *first = 0, *last = 36; }

int main(void) {
    g4_err err = {0};
    const int threads[] = {1, 3, 5};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        g4_compute c;
        g4_backend be;
        CHECK(g4_compute_init(&c, threads[t], 64) == 0 && g4_backend_cpu_init(&be, &c, &err) == 0, "compute");
        const layout paged = {0, 8, 8, 2, 32}, wide = {0, 8, 8, 1, 512}, dense = {1, 37, 1, 3, 64};
        struct {
            const char *name;
            const layout *l;
            int64_t rows, heads;
            void (*range)(int64_t, int64_t *, int64_t *);
        } cases[] = {
            {"paged, 4 query heads per kv head, mixed ranges", &paged, 30, 8, mixed},
            {"paged, one decode row", &paged, 1, 8, one_row},
            {"paged, head size 512, one decode row", &wide, 1, 2, one_row},
            {"paged, head size 512, mixed ranges", &wide, 30, 1, mixed},
            {"dense, bidirectional, 1 query head per kv head", &dense, 37, 3, all_keys},
            {"dense, bidirectional, 2 query heads per kv head", &dense, 20, 6, all_keys},
            /* one tile of 12 rows x 3 kv heads: fewer items than 5 threads, so a tile's keys split too */
            {"dense, one tile of 12 rows, 2 query heads per kv head", &dense, 12, 6, all_keys},
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            const double e = run_case(&be, cases[i].l, cases[i].rows, cases[i].heads, cases[i].range);
            printf("%d threads, %-50s rel err %.2e\n", threads[t], cases[i].name, e);
            CHECK(e < 1e-5, "%d threads, %s: rel err %.3e", threads[t], cases[i].name, e);
        }
        be.destroy(&be);
        g4_compute_free(&c);
    }
    return g4t_finish("test_backend");
}
