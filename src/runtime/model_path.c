/* model_path.c — finding a model: a directory, a GGUF file, or a repo id in the local Hugging Face cache. */
#include "model_path.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mapfile.h"
static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_config(const char *dir) {
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/config.json", dir);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The Hugging Face hub cache root, following the hub library's environment variables. */
static void hub_cache_root(char *out, size_t len) {
    const char *v;
    if ((v = getenv("HF_HUB_CACHE")) && *v)
        snprintf(out, len, "%s", v);
    else if ((v = getenv("HF_HOME")) && *v)
        snprintf(out, len, "%s/hub", v);
    else if ((v = getenv("XDG_CACHE_HOME")) && *v)
        snprintf(out, len, "%s/huggingface/hub", v);
    else
        snprintf(out, len, "%s/.cache/huggingface/hub", getenv("HOME") ? getenv("HOME") : ".");
}

int g4_resolve_model_path(const char *name, char *dir, size_t dir_len, g4_err *err) {
    if (is_dir(name)) {
        if (!has_config(name)) return g4_fail(err, GEMMA4C_ERR_IO, "%s: no config.json in this directory", name);
        snprintf(dir, dir_len, "%s", name);
        return 0;
    }
    struct stat st;
    if (stat(name, &st) == 0 && S_ISREG(st.st_mode)) { /* a GGUF file */
        snprintf(dir, dir_len, "%s", name);
        return 0;
    }
    size_t n = strlen(name);
    if (n > 5 && strcmp(name + n - 5, ".gguf") == 0) return g4_fail(err, GEMMA4C_ERR_IO, "%s: no such file", name);
    const char *slash = strchr(name, '/');
    if (!slash || strchr(slash + 1, '/') || slash == name || !slash[1] || strstr(name, ".."))
        return g4_fail(err, GEMMA4C_ERR_IO, "%s: no such model directory", name);
    char root[2048], repo[4096], ref[4300];
    hub_cache_root(root, sizeof root);
    snprintf(repo, sizeof repo, "%s/models--%.*s--%s", root, (int)(slash - name), name, slash + 1);
    if (!is_dir(repo))
        return g4_fail(err, GEMMA4C_ERR_IO,
                       "%s: not a directory and not in the Hugging Face cache (%s); download it with `hf download %s`",
                       name, root, name);
    /* refs/main names the snapshot the hub client considers current. */
    snprintf(ref, sizeof ref, "%s/refs/main", repo);
    char *hash = NULL;
    g4_err ignored = {0};
    if (g4_read_file(ref, 256, &hash, NULL, &ignored) == 0) {
        hash[strcspn(hash, " \r\n")] = '\0';
        if (!strchr(hash, '/') && !strstr(hash, "..")) {
            snprintf(dir, dir_len, "%s/snapshots/%s", repo, hash);
            free(hash);
            if (has_config(dir)) return 0;
        } else
            free(hash);
    }
    char snaps[4300];
    snprintf(snaps, sizeof snaps, "%s/snapshots", repo);
    DIR *dh = opendir(snaps);
    if (dh) {
        struct dirent *e;
        while ((e = readdir(dh))) {
            if (e->d_name[0] == '.') continue;
            snprintf(dir, dir_len, "%s/%s", snaps, e->d_name);
            if (has_config(dir)) {
                closedir(dh);
                return 0;
            }
        }
        closedir(dh);
    }
    return g4_fail(err, GEMMA4C_ERR_IO, "%s: found in the Hugging Face cache but no snapshot has config.json", name);
}
