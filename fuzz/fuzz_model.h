/* fuzz_model.h — what the harnesses that run a model share: finding golden data, loading the tiny model, seeds. */
#ifndef G4_FUZZ_MODEL_H
#define G4_FUZZ_MODEL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gemma4c.h"

#ifndef GEMMA4C_SOURCE_DIR
#define GEMMA4C_SOURCE_DIR "."
#endif

static inline int g4f_is_dir(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* $GEMMA4C_GOLDEN, else ../shared/golden beside the sources (as the tests and fuzz/run.sh find it). */
static inline const char *g4f_golden(void) {
    static char path[4096];
    const char *env = getenv("GEMMA4C_GOLDEN");
    if (env && *env) snprintf(path, sizeof path, "%s", env);
    else snprintf(path, sizeof path, "%s/../shared/golden", GEMMA4C_SOURCE_DIR);
    return path;
}

static inline void g4f_die(const char *who, const char *what, const char *err) {
    fprintf(stderr, "%s: %s: %s\n", who, what, err);
    exit(1);
}

/* The golden tiny checkpoint (one compute thread); without golden data, the synthetic small model. */
static inline gemma4c_model *g4f_load_tiny(const char *who) {
    char ckpt[4200], err[512];
    snprintf(ckpt, sizeof ckpt, "%s/tiny/checkpoint", g4f_golden());
    const int found = g4f_is_dir(ckpt);
    if (!found) fprintf(stderr, "%s: %s not found; using synthetic:small\n", who, ckpt);
    gemma4c_model_params mp = {.model = found ? ckpt : "synthetic:small", .n_threads = 1, .n_batch = 64};
    gemma4c_model *m = NULL;
    if (gemma4c_model_load(&mp, &m, err, sizeof err)) g4f_die(who, mp.model, err);
    return m;
}

/* Where LLVMFuzzerInitialize writes generated seeds: $GEMMA4C_FUZZ_SEEDS (fuzz/run.sh sets it), else the first
 * corpus directory on the command line; NULL when there is neither. */
static inline const char *g4f_seed_dir(int argc, char **argv) {
    const char *env = getenv("GEMMA4C_FUZZ_SEEDS");
    if (env && *env) return env;
    for (int i = 1; i < argc; i++)
        if (argv[i][0] != '-' && g4f_is_dir(argv[i])) return argv[i];
    return NULL;
}

/* The whole of a (small) file, or NULL. */
static inline unsigned char *g4f_read(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *data = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (data = malloc((size_t)n + 1)) &&
        fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
    }
    fclose(f);
    if (data) data[n] = 0, *size = (size_t)n;
    return data;
}

static inline void g4f_write(const char *dir, const char *name, const void *data, size_t size) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f)) g4f_die("seeds", path, "cannot write");
}

#endif
