/* test.h — the few macros every test program uses: checks that count failures, golden-data lookup, skipping. */
#ifndef G4_TEST_H
#define G4_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gemma4c.h"

static int g4t_failures;
static int g4t_checks;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        g4t_checks++;                                                      \
        if (!(cond)) {                                                     \
            g4t_failures++;                                                \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

/* Exit code 77 tells ctest the test was skipped. */
#define G4T_SKIP 77

/* The golden directory: $GEMMA4C_GOLDEN, else ../shared/golden beside the repository. Returns NULL (and the
 * test should skip) when it is missing; under CI (CI=true) a missing golden directory is a failure. */
static inline const char *g4t_golden_dir(void) {
    static char path[4096];
    const char *env = getenv("GEMMA4C_GOLDEN");
    if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    else
        snprintf(path, sizeof path, "%s/../shared/golden", GEMMA4C_SOURCE_DIR);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return path;
    return NULL;
}

/* Call when golden data is needed: returns the directory or ends the test (skip, or fail under CI). */
static inline const char *g4t_require_golden(void) {
    const char *dir = g4t_golden_dir();
    if (dir) return dir;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        fprintf(stderr, "golden data not found (set GEMMA4C_GOLDEN); required under CI\n");
        exit(1);
    }
    printf("SKIPPED: golden data not found (set GEMMA4C_GOLDEN or place ../shared/golden)\n");
    exit(G4T_SKIP);
}

/* The golden tiny checkpoint through the public API, on two threads (NULL after a failed check). */
static inline gemma4c_model *g4t_load_tiny(void) {
    char path[4200], err[512];
    snprintf(path, sizeof path, "%s/tiny/checkpoint", g4t_require_golden());
    gemma4c_model_params p = {path, NULL, 2, 16, 0};
    gemma4c_model *m = NULL;
    if (gemma4c_model_load(&p, &m, err, sizeof err)) {
        g4t_checks++, g4t_failures++;
        fprintf(stderr, "loading %s: %s\n", path, err);
    }
    return m;
}

/* The device a test runs its models on: "--device cuda" among the arguments (removed from them) selects the CUDA
 * backend; without it, the CPU. On CUDA a test that cannot start the backend (no GPU, or a build without CUDA)
 * skips: see g4t_decoder_open. */
static const char *g4t_device = "cpu";
static inline void g4t_parse_device(int *argc, char **argv) {
    for (int i = 1; i + 1 < *argc; i++)
        if (strcmp(argv[i], "--device") == 0) {
            g4t_device = argv[i + 1];
            memmove(argv + i, argv + i + 2, (size_t)(*argc - i - 1) * sizeof *argv); /* keeps argv[argc] NULL */
            *argc -= 2;
            return;
        }
}

/* Where starting the model on g4t_device failed with rc for want of that device (no GPU, no driver, a build
 * without CUDA): the test ends as skipped, saying why. */
static inline void g4t_skip_without_device(int rc, const char *why) {
    if (rc != GEMMA4C_ERR_UNSUPPORTED || strcmp(g4t_device, "cpu") == 0) return;
    printf("SKIPPED on %s: %s\n", g4t_device, why);
    exit(G4T_SKIP);
}

/* Removes a file or a directory tree (a test's scratch directory). */
static inline void g4t_rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *de;
    char sub[4200];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        g4t_rm_tree(sub);
    }
    closedir(d);
    rmdir(path);
}

/* The test's exit code. A program that ran no check proved nothing, so it fails (one that cannot run skips
 * with G4T_SKIP instead). */
static inline int g4t_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, g4t_checks, g4t_failures);
    if (g4t_checks == 0) {
        fprintf(stderr, "%s: no check ran, so nothing was tested (a test that cannot run must exit %d)\n", name,
                G4T_SKIP);
        return 1;
    }
    return g4t_failures ? 1 : 0;
}

#endif
