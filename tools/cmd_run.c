/* cmd_run.c — `gemma4c run` (one answer, streamed) and `gemma4c chat` (interactive, multi-turn, with media). */
#include <cjson/cJSON.h>
#include <editline/readline.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char quick_start_prompt[] = "Write a haiku about the sea.";

/* The answer so far, and whether to echo it. */
typedef struct answer {
    char *text;
    size_t len, cap;
} answer;

static int print_token(void *user, const gemma4c_token *t) {
    answer *a = user;
    fwrite(t->text, 1, t->text_len, stdout);
    fflush(stdout);
    if (!a) return 0;
    if (a->len + t->text_len + 1 > a->cap) {
        size_t cap = (a->len + t->text_len + 1) * 2;
        char *grown = realloc(a->text, cap);
        if (!grown) return 1;
        a->text = grown;
        a->cap = cap;
    }
    memcpy(a->text + a->len, t->text, t->text_len);
    a->len += t->text_len;
    a->text[a->len] = '\0';
    return 0;
}

static void report(const cli_opts *o, const gemma4c_result *r) {
    if (!o->verbose) return;
    const double decode_rate = r->decode_seconds > 0 ? (double)(r->generated_tokens - 1) / r->decode_seconds : 0;
    fprintf(stderr,
            "\n[prompt %lld tokens (%lld reused) in %.3f s (%.1f tok/s)%s, time to first token %.3f s, %lld tokens "
            "generated at %.2f tok/s]\n",
            (long long)r->prompt_tokens, (long long)r->cached_tokens, r->prefill_seconds,
            r->prefill_seconds > 0 ? (double)(r->prompt_tokens - r->cached_tokens) / r->prefill_seconds : 0.0,
            r->media_seconds > 0 ? ", media" : "", r->first_token_seconds, (long long)r->generated_tokens, decode_rate);
    if (r->media_seconds > 0) fprintf(stderr, "[media: %lld soft tokens in %.3f s]\n", (long long)r->media_tokens, r->media_seconds);
}

static const char *kind_name(int kind) {
    return kind == GEMMA4C_MEDIA_IMAGE ? "image" : kind == GEMMA4C_MEDIA_AUDIO ? "audio" : "video";
}

/* {"role": role, "content": text} or, with media, content parts: the media first (in order), then the text. */
static int add_message(cJSON *messages, const char *role, const char *text, const gemma4c_media *media, int n_media) {
    cJSON *msg = cJSON_CreateObject();
    int ok = msg && cJSON_AddStringToObject(msg, "role", role);
    if (ok && !n_media) ok = cJSON_AddStringToObject(msg, "content", text) != NULL;
    else if (ok) {
        cJSON *parts = cJSON_AddArrayToObject(msg, "content"), *part;
        ok = parts != NULL;
        for (int i = 0; ok && i < n_media; i++)
            ok = (part = cJSON_CreateObject()) && cJSON_AddItemToArray(parts, part) &&
                 cJSON_AddStringToObject(part, "type", kind_name(media[i].kind));
        ok = ok && (part = cJSON_CreateObject()) && cJSON_AddItemToArray(parts, part) &&
             cJSON_AddStringToObject(part, "type", "text") && cJSON_AddStringToObject(part, "text", text);
    }
    if (!ok) {
        cJSON_Delete(msg);
        return -1;
    }
    cJSON_AddItemToArray(messages, msg);
    return 0;
}

/* --json-schema's file into *text (NULL without the option); 1 after an error line. */
static int read_schema(const cli_opts *o, char **text) {
    *text = NULL;
    if (!o->json_schema) return 0;
    FILE *f = fopen(o->json_schema, "rb");
    if (!f) return cli_error("%s: cannot open the JSON schema", o->json_schema);
    *text = cli_read_all(f, (size_t)1 << 20, NULL);
    fclose(f);
    return *text ? 0 : cli_error("%s: cannot read the JSON schema (at most 1 MiB)", o->json_schema);
}

int cmd_run(int argc, char **argv) {
    cli_opts o;
    int rc = cli_parse(argc, argv, 2, &o, "run");
    if (rc) return rc == 2 ? 0 : 1;
    if (!o.prompt && o.model) return cli_error("run: give a prompt with -p TEXT (or -p - to read standard input)");
    char *stdin_text = NULL, *schema = NULL;
    if (read_schema(&o, &schema)) return 1;
    const char *text = o.prompt ? o.prompt : quick_start_prompt;
    if (o.prompt && strcmp(o.prompt, "-") == 0) {
        if (!(stdin_text = cli_read_all(stdin, (size_t)1 << 30, NULL))) return free(schema), cli_error("cannot read standard input");
        text = stdin_text;
    }
    gemma4c_model *m = NULL;
    gemma4c_session *s = NULL;
    if (cli_load_model(&o, &m) || cli_new_session(&o, m, &s)) {
        gemma4c_model_free(m);
        free(stdin_text);
        free(schema);
        return 1;
    }
    if (!o.model) {
        fprintf(stderr, "> %s\n", text);
        if (o.max_tokens < 0) o.max_tokens = 64; /* noise: keep the demonstration short */
    }
    gemma4c_generate_options g;
    cli_generate_options(&o, m, &g);
    g.json_schema = schema;
    gemma4c_input in = {0};
    in.media = o.media;
    in.n_media = (size_t)o.n_media;
    cJSON *messages = NULL;
    char *json = NULL;
    if (o.raw) in.prompt = text;
    else {
        messages = cJSON_CreateArray();
        if (!messages || (o.system && add_message(messages, "system", o.system, NULL, 0)) ||
            add_message(messages, "user", text, o.media, o.n_media) || !(json = cJSON_PrintUnformatted(messages)))
            rc = cli_error("out of memory");
        in.messages_json = json;
        in.enable_thinking = o.think;
    }
    char err[512];
    gemma4c_result res;
    if (!rc && gemma4c_generate(s, &in, &g, print_token, NULL, &res, err, sizeof err)) rc = cli_error("%s", err);
    if (!rc) {
        printf("\n");
        report(&o, &res);
    }
    cJSON_free(json);
    cJSON_Delete(messages);
    gemma4c_session_free(s);
    gemma4c_model_free(m);
    free(stdin_text);
    free(schema);
    return rc;
}

/* ---- chat ------------------------------------------------------------------------------------------------- */

/* The conversation as the chat command keeps it: the messages and, in order, the files of their media parts. */
typedef struct conversation {
    cJSON *messages;
    gemma4c_media media[CLI_MAX_LIST * 4];
    char *paths[CLI_MAX_LIST * 4];
    int n_media;
    int first_new; /* media not yet attached to a message start here */
} conversation;

static int attach(conversation *c, int kind, const char *path, int max_soft_tokens) {
    if (c->n_media == (int)(sizeof c->media / sizeof *c->media)) return cli_error("too many media in one conversation");
    if (access(path, R_OK)) return cli_error("%s: cannot read this file", path);
    if (!(c->paths[c->n_media] = strdup(path))) return cli_error("out of memory");
    c->media[c->n_media] = (gemma4c_media){kind, c->paths[c->n_media], NULL, 0, kind == GEMMA4C_MEDIA_IMAGE ? max_soft_tokens : 0};
    c->n_media++;
    return 0;
}

/* Back to the system message alone; media forgotten. */
static void clear(conversation *c, int keep_system) {
    while (cJSON_GetArraySize(c->messages) > keep_system) cJSON_DeleteItemFromArray(c->messages, cJSON_GetArraySize(c->messages) - 1);
    for (int i = 0; i < c->n_media; i++) free(c->paths[i]);
    c->n_media = c->first_new = 0;
}

/* /save F writes the session's state to F and the conversation (messages, media files) to F.json. */
static int save_chat(gemma4c_session *s, const conversation *c, const char *path) {
    char err[512], side[4200];
    if (gemma4c_session_save(s, path, err, sizeof err)) return cli_error("%s", err);
    snprintf(side, sizeof side, "%s.json", path);
    cJSON *root = cJSON_CreateObject(), *media = cJSON_CreateArray();
    cJSON_AddItemToObject(root, "messages", cJSON_Duplicate(c->messages, 1));
    cJSON_AddItemToObject(root, "media", media);
    for (int i = 0; i < c->n_media; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "kind", kind_name(c->media[i].kind));
        cJSON_AddStringToObject(m, "path", c->paths[i]);
        cJSON_AddNumberToObject(m, "max_soft_tokens", c->media[i].max_soft_tokens);
        cJSON_AddNumberToObject(m, "attached", i < c->first_new);
        cJSON_AddItemToArray(media, m);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    FILE *f = text ? fopen(side, "w") : NULL;
    int ok = f && fputs(text, f) >= 0;
    if (f && fclose(f)) ok = 0;
    cJSON_free(text);
    return ok ? 0 : cli_error("%s: cannot write the conversation", side);
}

static int load_chat(gemma4c_session *s, conversation *c, const char *path, int keep_system) {
    char err[512], side[4200];
    snprintf(side, sizeof side, "%s.json", path);
    FILE *f = fopen(side, "r");
    if (!f) return cli_error("%s: cannot open the conversation", side);
    char *text = cli_read_all(f, (size_t)64 << 20, NULL);
    fclose(f);
    cJSON *root = text ? cJSON_Parse(text) : NULL, *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    cJSON *media = cJSON_GetObjectItemCaseSensitive(root, "media"), *m;
    if (!cJSON_IsArray(messages) || !cJSON_IsArray(media)) {
        free(text);
        cJSON_Delete(root);
        return cli_error("%s: not a saved conversation", side);
    }
    if (gemma4c_session_load(s, path, err, sizeof err)) {
        free(text);
        cJSON_Delete(root);
        return cli_error("%s", err);
    }
    free(text);
    clear(c, keep_system);
    while (cJSON_GetArraySize(c->messages)) cJSON_DeleteItemFromArray(c->messages, 0);
    cJSON_ArrayForEach(m, messages) cJSON_AddItemToArray(c->messages, cJSON_Duplicate(m, 1));
    int rc = 0;
    cJSON_ArrayForEach(m, media) {
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(m, "kind"), *p = cJSON_GetObjectItemCaseSensitive(m, "path");
        const cJSON *mst = cJSON_GetObjectItemCaseSensitive(m, "max_soft_tokens");
        if (!cJSON_IsString(kind) || !cJSON_IsString(p)) continue;
        int k = !strcmp(kind->valuestring, "image") ? GEMMA4C_MEDIA_IMAGE
                : !strcmp(kind->valuestring, "audio") ? GEMMA4C_MEDIA_AUDIO
                                                      : GEMMA4C_MEDIA_VIDEO;
        if ((rc = attach(c, k, p->valuestring, cJSON_IsNumber(mst) ? mst->valueint : 0))) break;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "attached")) ||
            cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(m, "attached")) == 1)
            c->first_new = c->n_media;
    }
    cJSON_Delete(root);
    return rc;
}

/* One line of input: readline with editing and history on a terminal, plain lines otherwise. */
static char *next_line(int interactive) {
    if (interactive) {
        char *line = readline("> ");
        if (line && *line) add_history(line);
        return line;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    return line;
}

/* "/image F" and the like: 1 when the line was a command (handled), 0 when it is a message, -1 to leave. */
static int chat_command(const char *line, gemma4c_session *s, conversation *c, const cli_opts *o) {
    if (line[0] != '/') return 0;
    char err[512];
    const char *arg = strchr(line, ' ');
    while (arg && *arg == ' ') arg++;
    size_t name_len = arg ? (size_t)(strchr(line, ' ') - line) : strlen(line);
#define IS(s) (name_len == strlen(s) && strncmp(line, s, name_len) == 0)
    if (IS("/exit") || IS("/quit")) return -1;
    if (IS("/reset")) {
        clear(c, o->system ? 1 : 0);
        if (gemma4c_session_reset(s, err, sizeof err)) cli_error("%s", err);
        fprintf(stderr, "(conversation cleared)\n");
    } else if (IS("/image") || IS("/audio") || IS("/video")) {
        if (!arg || !*arg) cli_error("%.*s needs a file", (int)name_len, line);
        else if (!attach(c, IS("/image") ? GEMMA4C_MEDIA_IMAGE : IS("/audio") ? GEMMA4C_MEDIA_AUDIO : GEMMA4C_MEDIA_VIDEO, arg,
                         o->max_soft_tokens))
            fprintf(stderr, "(%s attached to the next message)\n", arg);
    } else if (IS("/save")) {
        if (!arg || !*arg) cli_error("/save needs a file");
        else if (!save_chat(s, c, arg)) fprintf(stderr, "(saved to %s)\n", arg);
    } else if (IS("/load")) {
        if (!arg || !*arg) cli_error("/load needs a file");
        else if (!load_chat(s, c, arg, o->system ? 1 : 0)) fprintf(stderr, "(loaded %s)\n", arg);
    } else
        cli_error("unknown command %.*s (/image F, /audio F, /video F, /save F, /load F, /reset, /exit)", (int)name_len, line);
#undef IS
    return 1;
}

int cmd_chat(int argc, char **argv) {
    cli_opts o;
    int rc = cli_parse(argc, argv, 2, &o, "chat");
    if (rc) return rc == 2 ? 0 : 1;
    char *schema = NULL;
    if (read_schema(&o, &schema)) return 1;
    gemma4c_model *m = NULL;
    gemma4c_session *s = NULL;
    if (cli_load_model(&o, &m) || cli_new_session(&o, m, &s)) {
        gemma4c_model_free(m);
        free(schema);
        return 1;
    }
    const int interactive = isatty(STDIN_FILENO);
    if (interactive)
        fprintf(stderr, "gemma4c chat: type a message; /image F, /audio F, /video F attach media to the next one; "
                        "/save F, /load F, /reset, /exit.\n");
    conversation c = {cJSON_CreateArray()};
    if (!c.messages || (o.system && add_message(c.messages, "system", o.system, NULL, 0))) rc = cli_error("out of memory");
    /* Media given on the command line belong to the conversation's first message. */
    for (int i = 0; !rc && i < o.n_media; i++) rc = attach(&c, o.media[i].kind, o.media[i].path, o.max_soft_tokens);
    gemma4c_generate_options g;
    cli_generate_options(&o, m, &g);
    g.json_schema = schema;
    char *line;
    while (!rc && (line = next_line(interactive))) {
        int cmd = *line ? chat_command(line, s, &c, &o) : 1;
        if (cmd) {
            free(line);
            if (cmd < 0) break;
            continue;
        }
        if (add_message(c.messages, "user", line, c.media + c.first_new, c.n_media - c.first_new)) {
            free(line);
            rc = cli_error("out of memory");
            break;
        }
        free(line);
        char *json = cJSON_PrintUnformatted(c.messages), err[512];
        gemma4c_input in = {json, NULL, o.think, NULL, NULL, 0, c.media, (size_t)c.n_media};
        answer a = {0};
        gemma4c_result res;
        int grc = json ? gemma4c_generate(s, &in, &g, print_token, &a, &res, err, sizeof err) : GEMMA4C_ERR_NOMEM;
        cJSON_free(json);
        printf("\n");
        if (grc) { /* the turn is dropped; the conversation goes on */
            cli_error("%s%s", grc == GEMMA4C_ERR_NOMEM ? "out of memory" : err,
                      grc == GEMMA4C_ERR_CONTEXT ? " (use /reset)" : "");
            cJSON_DeleteItemFromArray(c.messages, cJSON_GetArraySize(c.messages) - 1);
            for (int i = c.first_new; i < c.n_media; i++) free(c.paths[i]);
            c.n_media = c.first_new;
        } else {
            report(&o, &res);
            c.first_new = c.n_media;
            if (add_message(c.messages, "assistant", a.text ? a.text : "", NULL, 0)) rc = cli_error("out of memory");
        }
        free(a.text);
    }
    clear(&c, 0);
    cJSON_Delete(c.messages);
    gemma4c_session_free(s);
    gemma4c_model_free(m);
    free(schema);
    return rc;
}
