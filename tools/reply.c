/* reply.c — splits a Gemma 4 reply into reasoning, content and tool calls while it streams. */
#include "reply.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

enum { IN_CONTENT, IN_REASONING, IN_CALL };

#define MAX_CHANNEL_NAME 32 /* "thought": a longer run before the newline is not a channel name */
#define MAX_DEPTH 64

void reply_init(reply_parser *p, int tools) {
    memset(p, 0, sizeof *p);
    p->tools = tools;
    p->state = IN_CONTENT;
}

int reply_text_append(reply_text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *grown = realloc(t->s, cap);
        if (!grown) return -1;
        t->s = grown;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
    return 0;
}

void reply_free(reply_parser *p) {
    free(p->held.s);
    memset(&p->held, 0, sizeof p->held);
}

static void drop(reply_parser *p, size_t n) {
    memmove(p->held.s, p->held.s + n, p->held.len - n + 1);
    p->held.len -= n;
}

static int emit_text(reply_parser *p, reply_emit_fn emit, void *user, size_t n) {
    if (!n) return 0;
    int rc = emit(user, p->state == IN_REASONING ? REPLY_REASONING : REPLY_CONTENT, p->held.s, n, NULL) ? -1 : 0;
    drop(p, n);
    return rc;
}

/* 1: s (n bytes) is `marker` whole; 0: it cannot become it; 2: it is a proper prefix of it. */
static int match(const char *s, size_t n, const char *marker) {
    const size_t m = strlen(marker);
    if (n >= m) return memcmp(s, marker, m) == 0;
    return memcmp(s, marker, n) == 0 ? 2 : 0;
}

/* A finished tool call: as a call when it parses, else its text as content. */
static int emit_call(reply_parser *p, reply_emit_fn emit, void *user, size_t len) {
    char *name = NULL;
    cJSON *args = reply_parse_call(p->held.s, len, &name);
    char *json = args ? cJSON_PrintUnformatted(args) : NULL;
    int rc;
    if (json) {
        rc = emit(user, REPLY_TOOL_CALL, name, strlen(name), json);
    } else {
        rc = emit(user, REPLY_CONTENT, REPLY_CALL_BEGIN, strlen(REPLY_CALL_BEGIN), NULL) ||
             (len && emit(user, REPLY_CONTENT, p->held.s, len, NULL));
    }
    cJSON_free(json);
    cJSON_Delete(args);
    free(name);
    return rc ? -1 : 0;
}

/* Emits what is final in the held bytes; keeps what may still be the start of a marker. */
static int advance(reply_parser *p, reply_emit_fn emit, void *user) {
    for (;;) {
        if (p->state == IN_CALL) {
            char *end = strstr(p->held.s, REPLY_CALL_END);
            if (!end) return 0;
            const size_t len = (size_t)(end - p->held.s);
            if (emit_call(p, emit, user, len)) return -1;
            drop(p, len + strlen(REPLY_CALL_END));
            p->state = IN_CONTENT;
            continue;
        }
        if (p->skip_channel_name) {
            char *nl = memchr(p->held.s, '\n', p->held.len);
            if (nl) drop(p, (size_t)(nl - p->held.s) + 1);
            else if (p->held.len <= MAX_CHANNEL_NAME) return 0;
            p->skip_channel_name = 0;
        }
        char *lt = memchr(p->held.s, '<', p->held.len);
        if (emit_text(p, emit, user, lt ? (size_t)(lt - p->held.s) : p->held.len)) return -1;
        if (!p->held.len) return 0;
        /* the held bytes start with '<' */
        const char *markers[3];
        int n = 0;
        if (p->state == IN_CONTENT) {
            markers[n++] = REPLY_CHANNEL_BEGIN;
            markers[n++] = REPLY_CHANNEL_END; /* a stray end of a channel is a control mark, not text */
            if (p->tools) markers[n++] = REPLY_CALL_BEGIN;
        } else
            markers[n++] = REPLY_CHANNEL_END;
        int partial = 0, whole = -1;
        for (int i = 0; i < n && whole < 0; i++) {
            const int r = match(p->held.s, p->held.len, markers[i]);
            if (r == 1) whole = i;
            partial |= r == 2;
        }
        if (whole >= 0) {
            const char *mk = markers[whole];
            drop(p, strlen(mk));
            if (!strcmp(mk, REPLY_CHANNEL_BEGIN)) p->state = IN_REASONING, p->skip_channel_name = 1;
            else if (!strcmp(mk, REPLY_CALL_BEGIN)) p->state = IN_CALL;
            else p->state = IN_CONTENT;
            continue;
        }
        if (partial) return 0;
        if (emit_text(p, emit, user, 1)) return -1;
    }
}

int reply_feed(reply_parser *p, const char *text, size_t len, reply_emit_fn emit, void *user) {
    if (p->failed || reply_text_append(&p->held, text, len)) return p->failed = -1;
    return p->failed = advance(p, emit, user);
}

int reply_finish(reply_parser *p, reply_emit_fn emit, void *user) {
    if (p->failed) return -1;
    int rc = 0;
    if (p->state == IN_CALL) { /* cut short: what the model wrote stays visible */
        rc = emit(user, REPLY_CONTENT, REPLY_CALL_BEGIN, strlen(REPLY_CALL_BEGIN), NULL) ||
             (p->held.len && emit(user, REPLY_CONTENT, p->held.s, p->held.len, NULL));
        p->state = IN_CONTENT;
    } else if (p->held.len && !p->skip_channel_name)
        rc = emit(user, p->state == IN_REASONING ? REPLY_REASONING : REPLY_CONTENT, p->held.s, p->held.len, NULL);
    p->held.len = 0;
    return rc ? -1 : 0;
}

/* ---- the call syntax: call:NAME{key:value,...}; strings are quoted with <|"|> ---- */

typedef struct cursor {
    const char *s, *end;
} cursor;

static void spaces(cursor *c) {
    while (c->s < c->end && isspace((unsigned char)*c->s)) c->s++;
}

static int starts(const cursor *c, const char *lit) {
    const size_t n = strlen(lit);
    return (size_t)(c->end - c->s) >= n && memcmp(c->s, lit, n) == 0;
}

static char *copy(const char *s, size_t n) {
    char *t = malloc(n + 1);
    if (t) memcpy(t, s, n), t[n] = '\0';
    return t;
}

/* A quoted string (the cursor on its opening quote). */
static char *quoted(cursor *c) {
    const size_t q = strlen(REPLY_QUOTE);
    const char *from = c->s + q;
    for (const char *s = from; s + q <= c->end; s++)
        if (memcmp(s, REPLY_QUOTE, q) == 0) {
            c->s = s + q;
            return copy(from, (size_t)(s - from));
        }
    return NULL;
}

static cJSON *value(cursor *c, int depth);

static cJSON *object(cursor *c, int depth) {
    cJSON *o = cJSON_CreateObject();
    c->s++; /* { */
    for (int first = 1; o;) {
        spaces(c);
        if (c->s >= c->end) break;
        if (*c->s == '}' && first) return c->s++, o;
        char *key = NULL;
        if (starts(c, REPLY_QUOTE)) key = quoted(c);
        else {
            const char *k = c->s;
            while (c->s < c->end && *c->s != ':' && *c->s != ',' && *c->s != '}') c->s++;
            const char *e = c->s;
            while (e > k && isspace((unsigned char)e[-1])) e--;
            if (e > k) key = copy(k, (size_t)(e - k));
        }
        spaces(c);
        if (!key || c->s >= c->end || *c->s != ':') {
            free(key);
            break;
        }
        c->s++;
        cJSON *v = value(c, depth + 1);
        if (!v || cJSON_GetObjectItemCaseSensitive(o, key)) { /* a repeated key is not an object */
            cJSON_Delete(v);
            free(key);
            break;
        }
        cJSON_AddItemToObject(o, key, v);
        free(key);
        spaces(c);
        if (c->s < c->end && *c->s == ',') {
            c->s++;
            first = 0;
            continue;
        }
        if (c->s < c->end && *c->s == '}') return c->s++, o;
        break;
    }
    cJSON_Delete(o);
    return NULL;
}

static cJSON *array(cursor *c, int depth) {
    cJSON *a = cJSON_CreateArray();
    c->s++; /* [ */
    spaces(c);
    if (c->s < c->end && *c->s == ']') return c->s++, a;
    while (a) {
        cJSON *v = value(c, depth + 1);
        if (!v) break;
        cJSON_AddItemToArray(a, v);
        spaces(c);
        if (c->s < c->end && *c->s == ',') {
            c->s++;
            continue;
        }
        if (c->s < c->end && *c->s == ']') return c->s++, a;
        break;
    }
    cJSON_Delete(a);
    return NULL;
}

/* A number, literal or bare word: up to the next delimiter. */
static cJSON *scalar(cursor *c) {
    const char *from = c->s;
    while (c->s < c->end && !strchr(",}]", *c->s) && !starts(c, REPLY_QUOTE)) c->s++;
    const char *e = c->s;
    while (e > from && isspace((unsigned char)e[-1])) e--;
    const size_t n = (size_t)(e - from);
    if (!n) return NULL;
    if (n == 4 && !memcmp(from, "true", 4)) return cJSON_CreateTrue();
    if (n == 5 && !memcmp(from, "false", 5)) return cJSON_CreateFalse();
    if (n == 4 && !memcmp(from, "null", 4)) return cJSON_CreateNull();
    char *text = copy(from, n), *end = NULL;
    if (!text) return NULL;
    const double d = strtod(text, &end);
    cJSON *v = end && !*end && (isdigit((unsigned char)text[0]) || text[0] == '-') ? cJSON_CreateNumber(d)
                                                                                    : cJSON_CreateString(text);
    free(text);
    return v;
}

static cJSON *value(cursor *c, int depth) {
    if (depth > MAX_DEPTH) return NULL;
    spaces(c);
    if (c->s >= c->end) return NULL;
    if (starts(c, REPLY_QUOTE)) {
        char *s = quoted(c);
        cJSON *v = s ? cJSON_CreateString(s) : NULL;
        free(s);
        return v;
    }
    if (*c->s == '{') return object(c, depth);
    if (*c->s == '[') return array(c, depth);
    return scalar(c);
}

cJSON *reply_parse_call(const char *text, size_t len, char **name) {
    *name = NULL;
    cursor c = {text, text + len};
    spaces(&c);
    if (!starts(&c, "call:")) return NULL;
    c.s += 5;
    const char *from = c.s;
    while (c.s < c.end && (isalnum((unsigned char)*c.s) || strchr("_-.", *c.s))) c.s++;
    const size_t name_len = (size_t)(c.s - from);
    if (!name_len || c.s >= c.end || *c.s != '{') return NULL;
    cJSON *args = object(&c, 0);
    spaces(&c);
    if (args && c.s == c.end && (*name = copy(from, name_len))) return args;
    cJSON_Delete(args);
    return NULL;
}
