/* fuzz_state.c — libFuzzer harness: hostile session-state files through gemma4c_session_load on the tiny model. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_model.h"

/* The model: $GEMMA4C_GOLDEN/tiny/checkpoint (else ../shared/golden beside the sources, as the tests find it);
 * without golden data, the synthetic small model. Loaded once, with a session of N_CTX tokens that every input
 * runs on.
 *
 * Each input:
 *   1. the session loads a known good state (a short chat);
 *   2. the input is written to a file and loaded. For half of the inputs (the low bit of the first checksum byte)
 *      the trailing checksum is recomputed first (FNV-1a 64 over every byte before the last 8, as state.c writes
 *      it), so that the structural fields behind it get exercised;
 *   3. refused: one line says why, and the session holds exactly what it held: its tokens, and a continuation
 *      whose logits are bit for bit the reference ones. Accepted: its tokens are in the vocabulary and within
 *      the context, and it goes on from them (reusing the loaded cache; sampled, with log-probabilities, so that
 *      hostile cache values reach the sampler).
 *
 * Seeds: LLVMFuzzerInitialize saves a few real states (an empty session, a short chat, one long enough that the
 * sliding layers have dropped their first page) into $GEMMA4C_FUZZ_SEEDS, else into the first corpus directory
 * named on the command line. */

#define N_CTX 256
#define MAX_BASE 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gemma4c_model *model;
static gemma4c_session *sess;
static int vocab;
static char input_path[64], base_path[64];
static int32_t base_ids[MAX_BASE + 1];
static int64_t n_base;
static int32_t base_next; /* the greedy token after base_ids + [NEXT_ID] ... */
static float *base_logits, *logits; /* ... and the logits it was picked from; [vocab] */
#define NEXT_ID 7

static void die(const char *what, const char *err) { g4f_die("fuzz_state", what, err); }

typedef struct collected {
    int32_t ids[8];
    int n;
} collected;

static int collect(void *user, const gemma4c_token *t) {
    collected *c = user;
    if (t->id < 0 || t->id >= vocab) __builtin_trap();
    if (t->n_top < 0 || t->n_top > GEMMA4C_MAX_TOP_LOGPROBS) __builtin_trap();
    for (int i = 0; i < t->n_top; i++)
        if (t->top[i].id < -1 || t->top[i].id >= vocab) __builtin_trap();
    if (c->n < 8) c->ids[c->n++] = t->id;
    return 0;
}

static void remove_files(void) {
    unlink(input_path);
    unlink(base_path);
}

/* Keeps the logits of the (one) position sampled. */
static int keep_logits(void *user, float *row, int n) {
    if (n != vocab) __builtin_trap();
    memcpy(user, row, (size_t)n * sizeof *row);
    return 0;
}

/* A chat turn (messages NULL: nothing) generated greedily on a fresh session, then saved to dir/name. */
static void save_seed(const char *dir, const char *name, const char *messages, int max_tokens) {
    gemma4c_session *s = NULL;
    char err[512];
    gemma4c_session_params sp = {N_CTX};
    if (gemma4c_session_new(model, &sp, &s, err, sizeof err)) die("session", err);
    if (messages) {
        gemma4c_input in = {.messages_json = messages};
        gemma4c_generate_options o = {.max_tokens = max_tokens, .ignore_eos = 1};
        collected c = {{0}, 0};
        if (gemma4c_generate(s, &in, &o, collect, &c, NULL, err, sizeof err)) die("seed generation", err);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    if (gemma4c_session_save(s, path, err, sizeof err)) die("seed save", err);
    if (stat(path, &st) == 0 && st.st_size > 65536) unlink(path); /* longer than run.sh's -max_len */
    gemma4c_session_free(s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char err[512];
    model = g4f_load_tiny("fuzz_state");
    gemma4c_model_info info;
    gemma4c_model_get_info(model, &info);
    vocab = info.vocab_size;
    base_logits = malloc((size_t)vocab * sizeof *base_logits);
    logits = malloc((size_t)vocab * sizeof *logits);
    if (!base_logits || !logits) die("memory", "out of memory");
    const char *seeds = g4f_seed_dir(*argc, *argv);
    static const char SHORT[] = "[{\"role\":\"user\",\"content\":\"Hi\"}]";
    /* 79 positions with the tiny model's byte-level tokenizer: past its 8-token window and a page of 64
     * positions, so the sliding layers keep positions from 64 on only; and under the 64 KiB seed limit. */
    static const char LONG[] =
        "[{\"role\":\"user\",\"content\":\"Tell me, in one short line, what the far side of the moon is\"}]";
    if (seeds) {
        save_seed(seeds, "seed-state-empty", NULL, 0);
        save_seed(seeds, "seed-state-short", SHORT, 4);
        save_seed(seeds, "seed-state-long", LONG, 4);
    }

    /* The reference: a short chat saved, reloaded and continued. */
    snprintf(input_path, sizeof input_path, "/tmp/fuzz_state_in_%ld", (long)getpid());
    snprintf(base_path, sizeof base_path, "/tmp/fuzz_state_base_%ld", (long)getpid());
    atexit(remove_files);
    save_seed("/tmp", base_path + 5, SHORT, 4);
    gemma4c_session_params sp = {N_CTX};
    if (gemma4c_session_new(model, &sp, &sess, err, sizeof err)) die("session", err);
    if (gemma4c_session_load(sess, base_path, err, sizeof err)) die("base state", err);
    n_base = gemma4c_session_tokens(sess, base_ids, MAX_BASE);
    if (n_base <= 0 || n_base > MAX_BASE) die("base state", "unexpected length");
    base_ids[n_base] = NEXT_ID;
    gemma4c_input in = {.ids = base_ids, .n_ids = (size_t)n_base + 1};
    gemma4c_generate_options o = {
        .max_tokens = 1, .ignore_eos = 1, .on_logits = keep_logits, .logits_user = base_logits};
    collected c = {{0}, 0};
    if (gemma4c_generate(sess, &in, &o, collect, &c, NULL, err, sizeof err) || c.n != 1) die("base continuation", err);
    base_next = c.ids[0];
    return 0;
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    if (gemma4c_session_load(sess, base_path, err, sizeof err)) die("base state", err);
    FILE *f = fopen(input_path, "wb");
    if (!f) die(input_path, "cannot create");
    if (size >= 8 && (data[size - 8] & 1)) { /* the checksum made right */
        uint64_t sum = fnv1a(data, size - 8);
        if (fwrite(data, 1, size - 8, f) != size - 8 || fwrite(&sum, 8, 1, f) != 1) die(input_path, "cannot write");
    } else if (size && fwrite(data, 1, size, f) != size)
        die(input_path, "cannot write");
    if (fclose(f)) die(input_path, "cannot write");

    err[0] = 'x';
    int rc = gemma4c_session_load(sess, input_path, err, sizeof err);
    int32_t held[N_CTX + 1];
    const int64_t n = gemma4c_session_tokens(sess, held, N_CTX);
    collected c = {{0}, 0};
    if (rc) {
        /* Refused: one line saying why, and the session exactly as it was. */
        if (rc != GEMMA4C_ERR_FORMAT && rc != GEMMA4C_ERR_CONTEXT) __builtin_trap();
        if (!err[0] || strchr(err, '\n')) __builtin_trap();
        if (n != n_base || memcmp(held, base_ids, (size_t)n_base * sizeof *held)) __builtin_trap();
        gemma4c_input in = {.ids = base_ids, .n_ids = (size_t)n_base + 1};
        gemma4c_generate_options o = {
            .max_tokens = 1, .ignore_eos = 1, .on_logits = keep_logits, .logits_user = logits};
        if (gemma4c_generate(sess, &in, &o, collect, &c, NULL, err, sizeof err) || c.n != 1 || c.ids[0] != base_next ||
            memcmp(logits, base_logits, (size_t)vocab * sizeof *logits))
            __builtin_trap();
        return 0;
    }
    /* Accepted: what it holds is in range, and it goes on from there. */
    if (err[0] || n < 0 || n > N_CTX) __builtin_trap();
    for (int64_t i = 0; i < n; i++)
        if (held[i] < 0 || held[i] >= vocab) __builtin_trap();
    if (n + 1 >= N_CTX) return 0; /* no room to continue */
    held[n] = NEXT_ID;
    gemma4c_input in = {.ids = held, .n_ids = (size_t)n + 1};
    gemma4c_generate_options o = {
        .sampling = {.temperature = 0.8f, .top_p = 0.9f, .seed = 1}, .max_tokens = 1, .ignore_eos = 1,
        .logprobs = 1, .top_logprobs = 3};
    gemma4c_result r;
    if (gemma4c_generate(sess, &in, &o, collect, &c, &r, err, sizeof err) || c.n != 1 ||
        r.cached_tokens > n)
        __builtin_trap();
    return 0;
}
