/* test_kv_cache.c — paged KV caches: pages as a sequence grows, sliding layers' release, the budget, rewinds. */
#include "test.h"

#include "golden_util.h"
#include "model/kv_cache.h"

int main(void) {
    const char *golden = g4t_require_golden();
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny/checkpoint", golden);
    g4_err err = {0};
    g4_model *m = NULL;
    if (g4_model_load_dir(path, &m, &err)) {
        CHECK(0, "%s", err.msg);
        return g4t_finish("test_kv_cache");
    }
    /* tiny: layers s s s F s own their caches (5..7 share), window 8, 2 kv heads; head_dim 16, 32 on full layers */
    int64_t full, sliding;
    g4_kv_bytes_per_token(m, &full, &sliding);
    CHECK(full == 2 * 2 * 32 * 4 && sliding == 4 * 2 * 2 * 16 * 4, "bytes per token: %lld full, %lld sliding",
          (long long)full, (long long)sliding);
    const int64_t page_set = G4_KV_PAGE * (full + sliding); /* one page in every own layer */

    g4_compute c;
    g4_backend be;
    CHECK(g4_compute_init(&c, 1, 64) == 0 && g4_backend_cpu_init(&be, &c, &err) == 0, "compute");
    g4_kv_budget budget;
    g4_kv_budget_init(&budget, 3 * page_set, &be);
    g4_kv_seq s;
    CHECK(g4_kv_seq_init(&s, m, 0, &budget, &err) == GEMMA4C_ERR_ARG, "a context of 0");
    CHECK(g4_kv_seq_init(&s, m, 1 << 30, &budget, &err) == GEMMA4C_ERR_ARG, "a context beyond the model");
    CHECK(g4_kv_seq_init(&s, m, 1000, &budget, &err) == 0, "%s", err.msg);
    CHECK(s.bytes == 0 && g4_kv_budget_used(&budget) == 0, "an empty sequence holds nothing");
    /* Growing: one page per layer per 64 positions, counted in the budget. */
    CHECK(g4_kv_seq_reserve_bytes(&s, 10) == page_set, "bytes to reserve 10 positions");
    CHECK(g4_kv_seq_reserve(&s, 10, &err) == 0 && s.bytes == page_set && g4_kv_budget_used(&budget) == page_set, "first page");
    s.pos = 10;
    CHECK(g4_kv_seq_reserve(&s, 64, &err) == 0 && s.bytes == page_set, "the same page");
    s.pos = 64;
    CHECK(g4_kv_seq_reserve(&s, 130, &err) == 0 && s.bytes == 3 * page_set, "positions 64..129 take two more pages");
    /* Writes land in their page: key and value rows apart, per head. */
    float *k0 = g4_kv_key(&s, 3, 1, 70), *v0 = g4_kv_value(&s, 3, 1, 70), *k1 = g4_kv_key(&s, 3, 1, 71);
    CHECK(k1 - k0 == 32 && v0 != k0 && g4_kv_run(70, 200) == 58 && g4_kv_run(127, 200) == 1 && g4_kv_run(3, 5) == 3, "layout");
    /* The budget holds three page sets: a fourth is refused, and nothing changes. */
    s.pos = 130;
    CHECK(g4_kv_seq_reserve(&s, 200, &err) == GEMMA4C_ERR_CAPACITY && strstr(err.msg, "KV budget"), "%s", err.msg);
    CHECK(s.bytes == 3 * page_set && g4_kv_budget_used(&budget) == 3 * page_set, "a refused reserve changed nothing");
    CHECK(g4_kv_seq_reserve(&s, 1001, &err) == GEMMA4C_ERR_CONTEXT, "past the context");
    /* Sliding layers release pages their window (and the kept slack) no longer reaches. */
    g4_kv_budget_destroy(&budget);
    g4_kv_seq_free(&s);
    g4_kv_budget_init(&budget, 0, &be);
    CHECK(g4_kv_seq_init(&s, m, 1000, &budget, &err) == 0, "%s", err.msg);
    for (int64_t p = 0; p < 600; p += 50) {
        CHECK(g4_kv_seq_reserve(&s, p + 50, &err) == 0, "%s", err.msg);
        s.pos = p + 50;
    }
    int held_sliding = 0, held_full = 0;
    for (int64_t i = 0; i < s.layers[0].n; i++) held_sliding += s.layers[0].page[i] != NULL;
    for (int64_t i = 0; i < s.layers[3].n; i++) held_full += s.layers[3].page[i] != NULL;
    CHECK(held_full == 10 && held_sliding <= 4, "600 positions: %d full pages, %d sliding pages", held_full, held_sliding);
    CHECK(s.bytes == held_full * G4_KV_PAGE * full + held_sliding * G4_KV_PAGE * sliding, "bytes follow the pages");
    /* A rewind keeps what the window still holds, and starts over when it does not. */
    CHECK(g4_kv_seq_rewind(&s, 580) == 580 && s.pos == 580, "a short rewind");
    CHECK(g4_kv_seq_rewind(&s, 100) == 0 && s.pos == 0, "a rewind past the released pages starts over");
    CHECK(s.bytes == 0 && g4_kv_budget_used(&budget) == 0, "rewinding to 0 frees everything");
    /* Restoring a state: exactly the pages a sequence at `pos` keeps. */
    CHECK(g4_kv_seq_restore(&s, 300, &err) == 0 && s.pos == 300, "%s", err.msg);
    CHECK(g4_kv_seq_first_kept(&s, 0, 300) == 256 && g4_kv_seq_first_kept(&s, 3, 300) == 0, "first kept");
    CHECK(s.bytes == 5 * G4_KV_PAGE * full + 1 * G4_KV_PAGE * sliding, "restored pages: %lld bytes", (long long)s.bytes);
    CHECK(g4_kv_seq_restore(&s, 2000, &err) == GEMMA4C_ERR_CONTEXT && s.pos == 300, "a state too long changed the sequence");
    budget.limit = 2 * page_set;
    CHECK(g4_kv_seq_restore(&s, 900, &err) == GEMMA4C_ERR_CAPACITY && s.pos == 300, "a state beyond the budget: %s", err.msg);
    budget.limit = 0;
    g4_kv_seq_free(&s);
    CHECK(g4_kv_budget_used(&budget) == 0, "freed");
    g4_kv_budget_destroy(&budget);
    be.destroy(&be);
    g4_compute_free(&c);
    g4_model_free(m);
    return g4t_finish("test_kv_cache");
}
