/* session.c — opening models by path, repo id or synthetic shape; chat prompts; generation with prefix reuse. */
#include "session.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mapfile.h"
#include "model/audio.h"
#include "model/vision.h"
#include "synth/synth_model.h"

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

int g4_session_open(const char *model, const g4_session_params *p, g4_session **out, g4_err *err) {
    *out = NULL;
    g4_session_params defaults = {0, 0, 0};
    if (!p) p = &defaults;
    g4_session *s = calloc(1, sizeof *s);
    if (!s) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    int rc;
    if (!model || strncmp(model, "synthetic:", 10) == 0) {
        const char *shape = model ? model + 10 : "small";
        const char *cfg = g4_synth_config_json(shape);
        if (!cfg) {
            free(s);
            return g4_fail(err, GEMMA4C_ERR_ARG, "unknown synthetic shape '%s' (small, e2b, e4b)", shape);
        }
        rc = g4_model_synthetic(cfg, p->quant, p->n_threads, &s->m, err);
    } else {
        char dir[4096];
        rc = g4_resolve_model_path(model, dir, sizeof dir, err);
        if (!rc) rc = g4_model_load(dir, &s->m, err);
    }
    if (rc) {
        free(s);
        return rc;
    }
    if (g4_compute_init(&s->c, p->n_threads, g4_model_max_input_width(s->m))) {
        g4_session_close(s);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "cannot start worker threads");
    }
    int64_t n_ctx = p->n_ctx > 0 ? p->n_ctx : 4096;
    if ((rc = g4_decoder_init(&s->d, s->m, &s->c, n_ctx, p->n_batch > 0 ? p->n_batch : 256, err))) {
        g4_session_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

int g4_session_enable_vision(g4_session *s, g4_err *err) {
    if (s->vision) return 0;
    int rc = g4_vision_load(s->m, &s->vision, err);
    if (!rc && g4_compute_reserve(&s->c, g4_vision_max_input_width(s->vision)))
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    return rc;
}

int g4_session_enable_audio(g4_session *s, g4_err *err) {
    if (s->audio) return 0;
    int rc = g4_audio_encoder_load(s->m, &s->audio, err);
    if (!rc && g4_compute_reserve(&s->c, g4_audio_encoder_dims(s->audio).max_input_width))
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    return rc;
}

void g4_session_close(g4_session *s) {
    if (!s) return;
    g4_vision_free(s->vision);
    g4_audio_encoder_free(s->audio);
    g4_decoder_free(&s->d);
    g4_compute_free(&s->c);
    g4_model_free(s->m);
    g4_ids_free(&s->cached);
    free(s);
}

int g4_session_chat_ids(g4_session *s, const cJSON *messages, const cJSON *tools, const g4_chat_options *opt,
                        g4_ids *out, g4_err *err) {
    g4_buf text = {0};
    int rc = g4_chat_render(messages, tools, opt, &text, err);
    if (!rc) rc = g4_tokenizer_encode(s->m->tok, text.data ? text.data : "", text.len, out, err);
    g4_buf_free(&text);
    return rc;
}

void g4_session_default_sampling(const g4_session *s, g4_sampler_params *sp) {
    const g4_generation_config *g = &s->m->gen;
    memset(sp, 0, sizeof *sp);
    sp->greedy = !g->do_sample;
    sp->temperature = g->temperature > 0 ? (float)g->temperature : 1.0f;
    sp->top_k = g->top_k;
    sp->top_p = g->top_p > 0 && g->top_p <= 1 ? (float)g->top_p : 1.0f;
    sp->min_p = (float)g->min_p;
    sp->repetition_penalty = g->repetition_penalty > 0 ? (float)g->repetition_penalty : 1.0f;
}

int g4_session_generate(g4_session *s, const int32_t *prompt, size_t n_prompt, const g4_generate_params *gp,
                        const g4_sampler_params *sp, g4_text_fn on_text, void *ctx, g4_generate_stats *stats,
                        g4_err *err) {
    return g4_session_generate_media(s, prompt, n_prompt, NULL, gp, sp, on_text, ctx, stats, err);
}

int g4_session_generate_media(g4_session *s, const int32_t *prompt, size_t n_prompt, const g4_soft_tokens *soft,
                              const g4_generate_params *gp, const g4_sampler_params *sp, g4_text_fn on_text,
                              void *ctx, g4_generate_stats *stats, g4_err *err) {
    if (n_prompt == 0) return g4_fail(err, GEMMA4C_ERR_ARG, "empty prompt");
    if ((int64_t)n_prompt >= s->d.n_ctx)
        return g4_fail(err, GEMMA4C_ERR_CONTEXT, "prompt of %zu tokens does not fit the context of %lld tokens",
                       n_prompt, (long long)s->d.n_ctx);
    /* Reuse the cached prefix, but always run at least the last prompt token to get fresh logits. */
    size_t keep = 0;
    while (!soft && keep < s->cached.n && keep + 1 < n_prompt && s->cached.v[keep] == prompt[keep]) keep++;
    keep = (size_t)g4_decoder_split_point(&s->d, prompt, (int64_t)n_prompt, (int64_t)keep); /* spans run whole */
    keep = (size_t)g4_decoder_rewind(&s->d, (int64_t)keep); /* 0 when the rings lost that prefix's window */
    s->cached.n = keep;
    g4_sampler sampler;
    int rc = g4_sampler_init(&sampler, sp, s->m->cfg.text.vocab_size, err);
    if (rc) return rc;
    g4_ids generated = {0};
    rc = g4_generate_with(&s->d, &sampler, s->m->tok, prompt + keep, n_prompt - keep, soft, gp, on_text, ctx,
                          &generated, stats, err);
    g4_sampler_free(&sampler);
    if (rc) {
        g4_decoder_rewind(&s->d, 0);
        s->cached.n = 0;
    } else if (g4_ids_extend(&s->cached, prompt + keep, n_prompt - keep) ||
               g4_ids_extend(&s->cached, generated.v, generated.n)) {
        g4_decoder_rewind(&s->d, 0);
        s->cached.n = 0;
    } else {
        /* The decoder holds every generated token but the last one (it was sampled, never fed). */
        if (s->cached.n > (size_t)s->d.pos) s->cached.n = (size_t)s->d.pos;
    }
    if (stats) stats->prompt_tokens = (int64_t)n_prompt;
    g4_ids_free(&generated);
    return rc;
}
