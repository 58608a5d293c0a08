/* cmd_run.c — `gemma4c run` (one answer, streamed) and `gemma4c chat` (interactive, multi-turn). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "format/config.h"

static const char quick_start_prompt[] = "Write a haiku about the sea.";

static int print_text(void *ctx, const char *text, size_t len) {
    g4_buf *collect = ctx;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (collect && g4_buf_append(collect, text, len)) return -1;
    return 0;
}

static void announce_model(const cli_opts *o, const g4_session *s) {
    if (s->m->synthetic)
        fprintf(stderr, "gemma4c: no model given (-m): running a small synthetic Gemma 4 model with RANDOM weights; "
                        "its answer is noise. Try -m google/gemma-4-E4B-it for a real one.\n");
    else if (s->m->tokenizer_is_byte_level && o->verbose)
        fprintf(stderr, "gemma4c: %s has no tokenizer.json: using a byte-level tokenizer\n", s->m->source);
}

static void report(const cli_opts *o, const g4_generate_stats *st) {
    if (!o->verbose) return;
    fprintf(stderr, "\n[prompt %lld tokens in %.3f s (%.1f tok/s), time to first token %.3f s, %lld tokens generated "
                    "in %.3f s (%.2f tok/s)]\n",
            (long long)st->prompt_tokens, st->prefill_seconds,
            st->prefill_seconds > 0 ? (double)st->prompt_tokens / st->prefill_seconds : 0.0, st->time_to_first_token,
            (long long)st->generated_tokens, st->decode_seconds,
            st->decode_seconds > 0 ? (double)st->generated_tokens / st->decode_seconds : 0.0);
}

/* A user message whose content lists the media parts first (in the order given), then the text. */
static int add_user_with_media(cJSON *messages, const cli_opts *o, const char *text) {
    cJSON *msg = cJSON_CreateObject(), *parts = cJSON_CreateArray();
    int ok = msg && parts && cJSON_AddStringToObject(msg, "role", "user");
    for (int i = 0; ok && i < o->n_media; i++) {
        cJSON *part = cJSON_CreateObject();
        ok = part && cJSON_AddStringToObject(part, "type", o->media_kind[i]);
        if (part) cJSON_AddItemToArray(parts, part);
    }
    cJSON *tp = cJSON_CreateObject();
    ok = ok && tp && cJSON_AddStringToObject(tp, "type", "text") && cJSON_AddStringToObject(tp, "text", text);
    if (tp) cJSON_AddItemToArray(parts, tp);
    if (!ok) {
        cJSON_Delete(msg);
        cJSON_Delete(parts);
        return -1;
    }
    cJSON_AddItemToObject(msg, "content", parts);
    cJSON_AddItemToArray(messages, msg);
    return 0;
}

static int add_message(cJSON *messages, const char *role, const char *content) {
    cJSON *msg = cJSON_CreateObject();
    if (!msg || !cJSON_AddStringToObject(msg, "role", role) || !cJSON_AddStringToObject(msg, "content", content)) {
        cJSON_Delete(msg);
        return -1;
    }
    cJSON_AddItemToArray(messages, msg);
    return 0;
}

static void generate_params(const cli_opts *o, const g4_session *s, g4_generate_params *gp) {
    memset(gp, 0, sizeof *gp);
    gp->max_tokens = o->max_tokens < 0 ? 512 : o->max_tokens;
    gp->stop_ids = s->m->gen.eos_ids;
    gp->n_stop_ids = (size_t)s->m->gen.n_eos;
    gp->stop_strings = o->stops;
    gp->n_stop_strings = (size_t)o->n_stops;
    gp->skip_special = !o->think; /* thinking mode shows the thought channel markers */
}

static char *read_stdin(void) {
    g4_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        if (g4_buf_append(&b, chunk, n)) {
            g4_buf_free(&b);
            return NULL;
        }
    if (!b.data) g4_buf_puts(&b, "");
    return b.data;
}

/* Tokens for one prompt: through the chat format (media placeholders expanded as the reference processor does),
 * or (--raw) the text itself after <bos>. */
static int prompt_ids(const cli_opts *o, g4_session *s, const char *text, const g4_media_tokens *media,
                      size_t n_items, g4_ids *ids, g4_err *err) {
    if (o->raw) {
        if (n_items) return g4_fail(err, GEMMA4C_ERR_ARG, "--raw prompts cannot take media (use the chat format)");
        int bos = s->m->gen.bos_token_id >= 0 ? s->m->gen.bos_token_id : s->m->cfg.text.bos_token_id;
        if (g4_ids_push(ids, bos)) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        return g4_tokenizer_encode(s->m->tok, text, strlen(text), ids, err);
    }
    cJSON *messages = cJSON_CreateArray();
    if (!messages || (o->system && add_message(messages, "system", o->system)) ||
        (o->n_media ? add_user_with_media(messages, o, text) : add_message(messages, "user", text))) {
        cJSON_Delete(messages);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    g4_chat_options copt = {1, o->think, 0, NULL};
    g4_buf rendered = {0}, expanded = {0};
    int rc = g4_chat_render(messages, NULL, &copt, &rendered, err);
    if (!rc && n_items) rc = g4_media_expand_text(s->m, rendered.data, media, n_items, &expanded, err);
    const g4_buf *final = n_items ? &expanded : &rendered;
    if (!rc) rc = g4_tokenizer_encode(s->m->tok, final->data ? final->data : "", final->len, ids, err);
    g4_buf_free(&rendered);
    g4_buf_free(&expanded);
    cJSON_Delete(messages);
    return rc;
}

int cmd_run(int argc, char **argv) {
    cli_opts o;
    int rc = cli_parse(argc, argv, 2, &o, "run");
    if (rc) return rc == 2 ? 0 : 1;
    if (!o.prompt && o.model) return cli_error("run: give a prompt with -p TEXT (or -p - to read standard input)");
    char *stdin_text = NULL;
    const char *text = o.prompt ? o.prompt : quick_start_prompt;
    if (o.prompt && strcmp(o.prompt, "-") == 0) {
        if (!(stdin_text = read_stdin())) return cli_error("out of memory reading standard input");
        text = stdin_text;
    }
    g4_session *s;
    if (cli_open_session(&o, &s)) {
        free(stdin_text);
        return 1;
    }
    announce_model(&o, s);
    if (!o.model) {
        fprintf(stderr, "> %s\n", text);
        if (o.max_tokens < 0) o.max_tokens = 64; /* noise: keep the demonstration short */
    }
    g4_err err = {0};
    g4_ids ids = {0};
    g4_sampler_params sp;
    g4_generate_params gp;
    g4_generate_stats st;
    cli_sampling(&o, s, &sp);
    generate_params(&o, s, &gp);
    g4_media_item items[CLI_MAX_LIST];
    g4_media_tokens media = {0};
    int n_items = cli_media_items(&o, items);
    rc = n_items ? g4_media_encode(s, items, (size_t)n_items, &media, &err) : 0;
    if (!rc) rc = prompt_ids(&o, s, text, &media, (size_t)n_items, &ids, &err);
    if (!rc) rc = g4_session_generate_media(s, ids.v, ids.n, n_items ? media.soft : NULL, &gp, &sp, print_text, NULL, &st, &err);
    g4_media_tokens_free(&media);
    if (!rc) {
        printf("\n");
        report(&o, &st);
    }
    g4_ids_free(&ids);
    g4_session_close(s);
    free(stdin_text);
    return rc ? cli_error("%s", err.msg) : 0;
}

/* The conversation's tokens, media placeholders expanded. */
static int chat_ids(g4_session *s, const cJSON *messages, const g4_chat_options *copt, const g4_media_tokens *media,
                    size_t n_items, g4_ids *ids, g4_err *err) {
    if (!n_items) return g4_session_chat_ids(s, messages, NULL, copt, ids, err);
    g4_buf rendered = {0}, expanded = {0};
    int rc = g4_chat_render(messages, NULL, copt, &rendered, err);
    if (!rc) rc = g4_media_expand_text(s->m, rendered.data, media, n_items, &expanded, err);
    if (!rc) rc = g4_tokenizer_encode(s->m->tok, expanded.data ? expanded.data : "", expanded.len, ids, err);
    g4_buf_free(&rendered);
    g4_buf_free(&expanded);
    return rc;
}

int cmd_chat(int argc, char **argv) {
    cli_opts o;
    int rc = cli_parse(argc, argv, 2, &o, "chat");
    if (rc) return rc == 2 ? 0 : 1;
    g4_session *s;
    if (cli_open_session(&o, &s)) return 1;
    announce_model(&o, s);
    const int interactive = isatty(STDIN_FILENO);
    if (interactive) fprintf(stderr, "gemma4c chat: type a message; /reset starts over, /exit leaves.\n");
    cJSON *messages = cJSON_CreateArray();
    if (!messages || (o.system && add_message(messages, "system", o.system))) {
        cJSON_Delete(messages);
        g4_session_close(s);
        return cli_error("out of memory");
    }
    g4_sampler_params sp;
    g4_generate_params gp;
    cli_sampling(&o, s, &sp);
    generate_params(&o, s, &gp);
    /* The media are encoded once; every turn re-renders the conversation and places them again. */
    g4_media_item items[CLI_MAX_LIST];
    g4_media_tokens media = {0};
    const int n_items = cli_media_items(&o, items);
    g4_err err = {0};
    if (n_items && g4_media_encode(s, items, (size_t)n_items, &media, &err)) {
        cJSON_Delete(messages);
        g4_session_close(s);
        return cli_error("%s", err.msg);
    }
    char *line = NULL;
    size_t cap = 0;
    rc = 0;
    for (;;) {
        if (interactive) fputs("> ", stdout), fflush(stdout);
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (n == 0) continue;
        if (strcmp(line, "/exit") == 0 || strcmp(line, "/quit") == 0) break;
        if (strcmp(line, "/reset") == 0) {
            while (cJSON_GetArraySize(messages) > (o.system ? 1 : 0)) cJSON_DeleteItemFromArray(messages, cJSON_GetArraySize(messages) - 1);
            fprintf(stderr, "(conversation cleared)\n");
            continue;
        }
        /* Media given on the command line belong to the first user message of the conversation. */
        const int first_user = cJSON_GetArraySize(messages) == (o.system ? 1 : 0);
        if (first_user && n_items ? add_user_with_media(messages, &o, line) : add_message(messages, "user", line)) {
            rc = g4_fail(&err, GEMMA4C_ERR_NOMEM, "out of memory");
            break;
        }
        g4_ids ids = {0};
        g4_buf answer = {0};
        g4_generate_stats st;
        g4_chat_options copt = {1, o.think, 0, NULL};
        rc = chat_ids(s, messages, &copt, &media, (size_t)n_items, &ids, &err);
        if (!rc)
            rc = g4_session_generate_media(s, ids.v, ids.n, n_items ? media.soft : NULL, &gp, &sp, print_text, &answer,
                                           &st, &err);
        g4_ids_free(&ids);
        if (!rc) {
            printf("\n");
            report(&o, &st);
            rc = add_message(messages, "assistant", answer.data ? answer.data : "")
                     ? g4_fail(&err, GEMMA4C_ERR_NOMEM, "out of memory")
                     : 0;
        }
        g4_buf_free(&answer);
        if (rc == GEMMA4C_ERR_CONTEXT) { /* keep chatting: the user can /reset */
            fprintf(stderr, "gemma4c: %s (use /reset)\n", err.msg);
            cJSON_DeleteItemFromArray(messages, cJSON_GetArraySize(messages) - 1);
            rc = 0;
            continue;
        }
        if (rc) break;
    }
    free(line);
    g4_media_tokens_free(&media);
    cJSON_Delete(messages);
    g4_session_close(s);
    return rc ? cli_error("%s", err.msg) : 0;
}
