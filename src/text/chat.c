/* chat.c — Gemma 4 E2B/E4B chat_template.jinja (Google's revision of 2026-07-09), reproduced in C byte for byte. */
#include "text/chat.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/utf8.h"

/* The template is Jinja evaluated by transformers over Python values. To match it byte for byte we keep
 * Python's semantics where they show: a missing key is Jinja's "undefined" (a NULL pointer here), which prints
 * as "" and is falsy, while JSON null is Python's None (prints "None"); non-strings print as Python's str();
 * dictsort orders keys case-insensitively and stably; trim strips Unicode whitespace. */

#define Q "<|\"|>" /* the template's string quote token */

typedef enum { PREV_NONE, PREV_THINK, PREV_TOOL, PREV_TOOL_CALL, PREV_TOOL_RESPONSE } prev_type;

typedef struct render {
    g4_buf *out;
    g4_err *err;
    int rc; /* the first failure; everything after it is skipped, so helpers need not check each write */
} render;

static void fail(render *r, int code, const char *fmt, ...) G4_PRINTF(3, 4);

static void fail(render *r, int code, const char *fmt, ...) {
    if (r->rc) return;
    r->rc = code;
    if (!r->err) return;
    char msg[G4_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    g4_fail(r->err, code, "%s", msg); /* which keeps it on one line */
}

static void emit(render *r, g4_buf *b, const char *s, size_t n) {
    if (r->rc) return;
    if (g4_buf_append(b, s, n)) fail(r, GEMMA4C_ERR_NOMEM, "chat template: out of memory");
}

static void puts_to(render *r, g4_buf *b, const char *s) { emit(r, b, s, strlen(s)); }
static void say(render *r, const char *s) { emit(r, r->out, s, strlen(s)); }

/* ---- UTF-8 and the bits of Python's str that the template relies on ---- */

/* Decodes one code point (n >= 1); bytes that are not valid UTF-8 come back one at a time as U+DC80..U+DCFF
 * (Python's surrogateescape), so they are neither whitespace nor letters. Returns the bytes consumed (>= 1). */
static size_t utf8_next(const char *s, size_t n, uint32_t *cp) {
    size_t k = g4_utf8_decode(s, n, cp);
    if (k) return k;
    *cp = 0xDC00u + (unsigned char)s[0];
    return 1;
}

/* Writes code point c; the callers' code points are scalar values (escaped bytes are written as bytes). */
static void put_cp(render *r, g4_buf *b, uint32_t c) {
    char s[4];
    emit(r, b, s, g4_utf8_encode(c, s));
}

/* Python's str.isspace(), which is what str.strip() (Jinja's trim) removes. */
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Simple case mappings for the scripts that plausibly occur in keys and type names (Latin, Greek, Cyrillic,
 * full-width); Python knows every script, but these are the ones a tool schema realistically uses. */
static uint32_t py_lower(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xC0) return c;
    if (c <= 0xDE) return c == 0xD7 ? c : c + 32;
    if ((c >= 0x100 && c <= 0x137 && c != 0x130) || (c >= 0x14A && c <= 0x177)) return c | 1;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
    if (c == 0x178) return 0xFF;
    if (c == 0x1C4 || c == 0x1C7 || c == 0x1CA || c == 0x1F1) return c + 2; /* the DŽ/LJ/NJ/DZ digraphs */
    if (c == 0x1C5 || c == 0x1C8 || c == 0x1CB || c == 0x1F2) return c + 1;
    if (c >= 0x1CD && c <= 0x1DC) return (c & 1) ? c + 1 : c;
    if ((c >= 0x1DE && c <= 0x1EF) || (c >= 0x1F8 && c <= 0x21F) || c == 0x1F4) return c | 1;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
    if (c >= 0x3D8 && c <= 0x3EF) return c | 1;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F) ||
        (c >= 0x1E00 && c <= 0x1E95) || (c >= 0x1EA0 && c <= 0x1EFF))
        return c | 1;
    if (c >= 0x4C1 && c <= 0x4CE) return (c & 1) ? c + 1 : c;
    if (c == 0x4C0) return 0x4CF;
    if (c >= 0x531 && c <= 0x556) return c + 48; /* Armenian */
    if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
    return c;
}

static uint32_t py_upper(uint32_t c) {
    if (c >= 'a' && c <= 'z') return c - 32;
    if (c < 0xB5) return c;
    if (c == 0xB5) return 0x39C;
    if (c >= 0xE0 && c <= 0xFE) return c == 0xF7 ? c : c - 32;
    if (c == 0xFF) return 0x178;
    if (c == 0x131) return 'I';
    if (c == 0x17F) return 'S';
    if ((c >= 0x101 && c <= 0x137) || (c >= 0x14B && c <= 0x177)) return (c & 1) ? c - 1 : c;
    if ((c >= 0x13A && c <= 0x148) || (c >= 0x17A && c <= 0x17E)) return (c & 1) ? c : c - 1;
    if (c == 0x1C5 || c == 0x1C8 || c == 0x1CB || c == 0x1F2) return c - 1;
    if (c == 0x1C6 || c == 0x1C9 || c == 0x1CC || c == 0x1F3) return c - 2;
    if (c >= 0x1CE && c <= 0x1DC) return (c & 1) ? c : c - 1;
    if ((c >= 0x1DF && c <= 0x1EF) || (c >= 0x1F9 && c <= 0x21F) || c == 0x1F5) return (c & 1) ? c - 1 : c;
    if (c == 0x3C2) return 0x3A3;
    if (c >= 0x3B1 && c <= 0x3CB) return c - 32;
    if (c >= 0x3D8 && c <= 0x3EF) return (c & 1) ? c - 1 : c;
    if (c == 0x3AC) return 0x386;
    if (c >= 0x3AD && c <= 0x3AF) return c - 37;
    if (c == 0x3CC) return 0x38C;
    if (c == 0x3CD || c == 0x3CE) return c - 63;
    if (c >= 0x430 && c <= 0x44F) return c - 32;
    if (c >= 0x450 && c <= 0x45F) return c - 80;
    if ((c >= 0x461 && c <= 0x481) || (c >= 0x48B && c <= 0x4BF) || (c >= 0x4D1 && c <= 0x52F) ||
        (c >= 0x1E01 && c <= 0x1E95) || (c >= 0x1EA1 && c <= 0x1EFF))
        return (c & 1) ? c - 1 : c;
    if (c >= 0x4C2 && c <= 0x4CE) return (c & 1) ? c : c - 1;
    if (c == 0x4CF) return 0x4C0;
    if (c >= 0x561 && c <= 0x586) return c - 48;
    if (c >= 0xFF41 && c <= 0xFF5A) return c - 32;
    return c;
}

/* `s | trim`: Python's str.strip(). */
static void put_trimmed(render *r, g4_buf *b, const char *s, size_t n) {
    size_t start = n, end = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = utf8_next(s + i, n - i, &c);
        if (!py_isspace(c)) {
            if (start == n) start = i;
            end = i + k;
        }
        i += k;
    }
    if (start < end) emit(r, b, s + start, end - start);
}

static int has_non_space(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t c;
        i += utf8_next(s + i, n - i, &c);
        if (!py_isspace(c)) return 1;
    }
    return 0;
}

/* `s | upper`; the one multi-letter mapping kept is ß -> SS, which Latin-1 text can contain. */
static void put_upper(render *r, g4_buf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = utf8_next(s + i, n - i, &c);
        if (c == 0xDF)
            puts_to(r, b, "SS");
        else if (c >= 0xDC80 && c <= 0xDCFF)
            emit(r, b, s + i, 1);
        else
            put_cp(r, b, py_upper(c));
        i += k;
    }
}

/* Python's str.isprintable() decides which characters repr() escapes; this covers the controls, separators
 * and format characters of the Basic Multilingual Plane and the private-use planes. */
static int py_isprintable(uint32_t c) {
    if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return 0;
    if (c == 0x61C || c == 0x1680 || c == 0x180E || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
        (c >= 0x205F && c <= 0x206F) || c == 0x3000)
        return 0;
    if ((c >= 0xD800 && c <= 0xF8FF) || c == 0xFEFF || (c >= 0xFFF0 && c <= 0xFFFB)) return 0;
    if ((c & 0xFFFE) == 0xFFFE || (c >= 0xE0000 && c <= 0xE007F) || c >= 0xF0000) return 0;
    return 1;
}

/* ---- JSON values seen through Jinja ---- */

static const char *json_kind(const cJSON *v) {
    if (!v) return "missing";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "invalid";
}

static int is_str(const cJSON *v) { return v && cJSON_IsString(v) && v->valuestring; }

static int str_is(const cJSON *v, const char *s) { return is_str(v) && strcmp(v->valuestring, s) == 0; }

/* Python's bool(): empty strings, lists and dicts, 0, False, None and undefined are false. */
static int truthy(const cJSON *v) {
    if (!v) return 0;
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    if (cJSON_IsString(v)) return v->valuestring && v->valuestring[0];
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) return v->child != NULL;
    return 0;
}

/* A dict built from JSON keeps the last value of a repeated key at the place of its first occurrence. */
static int key_seen_before(const cJSON *item) {
    if (!item->string) return 0;
    /* cJSON links the first child's prev to the last child (or leaves it NULL), whose next is NULL. */
    for (const cJSON *p = item; p->prev && p->prev->next;) {
        p = p->prev;
        if (p->string && strcmp(p->string, item->string) == 0) return 1;
    }
    return 0;
}

/* `obj[key]`: the value, or NULL (undefined) when obj is not a dict or lacks the key. */
static const cJSON *get(const cJSON *obj, const char *key) {
    if (!obj || !cJSON_IsObject(obj)) return NULL;
    const cJSON *found = NULL;
    for (const cJSON *c = obj->child; c; c = c->next)
        if (c->string && strcmp(c->string, key) == 0) found = c;
    return found;
}

static const char *role_of(const cJSON *m) {
    const cJSON *role = get(m, "role");
    return is_str(role) ? role->valuestring : "";
}

/* Python's == between JSON-derived values (None == missing, since the template compares dict.get results;
 * True == 1 as in Python). */
static int py_equal(const cJSON *a, const cJSON *b) {
    int a_none = !a || cJSON_IsNull(a), b_none = !b || cJSON_IsNull(b);
    if (a_none || b_none) return a_none && b_none;
    int a_num = cJSON_IsNumber(a) || cJSON_IsBool(a), b_num = cJSON_IsNumber(b) || cJSON_IsBool(b);
    if (a_num || b_num) {
        if (!a_num || !b_num) return 0;
        double x = cJSON_IsBool(a) ? cJSON_IsTrue(a) : a->valuedouble;
        double y = cJSON_IsBool(b) ? cJSON_IsTrue(b) : b->valuedouble;
        return x == y;
    }
    if (cJSON_IsString(a) || cJSON_IsString(b))
        return is_str(a) && is_str(b) && strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsArray(a) && cJSON_IsArray(b)) {
        const cJSON *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next)
            if (!py_equal(x, y)) return 0;
        return !x && !y;
    }
    if (cJSON_IsObject(a) && cJSON_IsObject(b)) {
        size_t na = 0, nb = 0;
        for (const cJSON *x = a->child; x; x = x->next) {
            if (key_seen_before(x)) continue;
            na++;
            const cJSON *y = get(b, x->string);
            if (!y || !py_equal(get(a, x->string), y)) return 0;
        }
        for (const cJSON *y = b->child; y; y = y->next)
            if (!key_seen_before(y)) nb++;
        return na == nb;
    }
    return 0;
}

/* ---- Python's str() and repr() of JSON values ---- */

/* Python prints an int as digits and a float as the shortest round-tripping repr ("0.1", "1e-05", "2.0").
 * cJSON keeps no int/float distinction, so integral values below 1e16 print as ints. */
static void py_number(render *r, g4_buf *b, double v) {
    char s[64];
    if (isnan(v)) {
        puts_to(r, b, "nan");
        return;
    }
    if (isinf(v)) {
        puts_to(r, b, v < 0 ? "-inf" : "inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e16) {
        snprintf(s, sizeof s, "%.0f", v == 0 ? 0.0 : v);
        puts_to(r, b, s);
        return;
    }
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(s, sizeof s, "%.*e", prec - 1, v);
        if (strtod(s, NULL) == v) break;
    }
    snprintf(s, sizeof s, "%.*e", prec - 1, v);
    /* s is "[-]d[.ddd]e<sign><exp>": split it into digits and the decimal point position. */
    const char *p = s;
    int neg = *p == '-';
    if (neg) p++;
    char digits[32];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    int decpt = exp10 + 1;
    if (neg) puts_to(r, b, "-");
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            puts_to(r, b, "0.");
            for (int i = 0; i < -decpt; i++)
                puts_to(r, b, "0");
            emit(r, b, digits, (size_t)nd);
        } else if (decpt >= nd) {
            emit(r, b, digits, (size_t)nd);
            for (int i = nd; i < decpt; i++)
                puts_to(r, b, "0");
            puts_to(r, b, ".0");
        } else {
            emit(r, b, digits, (size_t)decpt);
            puts_to(r, b, ".");
            emit(r, b, digits + decpt, (size_t)(nd - decpt));
        }
    } else {
        emit(r, b, digits, 1);
        if (nd > 1) {
            puts_to(r, b, ".");
            emit(r, b, digits + 1, (size_t)(nd - 1));
        }
        snprintf(s, sizeof s, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
        puts_to(r, b, s);
    }
}

static void py_repr_string(render *r, g4_buf *b, const char *s) {
    char quote = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
    emit(r, b, &quote, 1);
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = utf8_next(s + i, n - i, &c);
        char esc[16];
        if (c == (uint32_t)quote || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            emit(r, b, esc, 2);
        } else if (c == '\t' || c == '\n' || c == '\r') {
            puts_to(r, b, c == '\t' ? "\\t" : c == '\n' ? "\\n" : "\\r");
        } else if (c >= 0xDC80 && c <= 0xDCFF) {
            snprintf(esc, sizeof esc, "\\udc%02x", (unsigned)(c & 0xFF));
            puts_to(r, b, esc);
        } else if (py_isprintable(c)) {
            emit(r, b, s + i, k);
        } else {
            if (c <= 0xFF)
                snprintf(esc, sizeof esc, "\\x%02x", (unsigned)c);
            else if (c <= 0xFFFF)
                snprintf(esc, sizeof esc, "\\u%04x", (unsigned)c);
            else
                snprintf(esc, sizeof esc, "\\U%08x", (unsigned)c);
            puts_to(r, b, esc);
        }
        i += k;
    }
    emit(r, b, &quote, 1);
}

static void py_text(render *r, g4_buf *b, const cJSON *v, int repr);

static void py_repr(render *r, g4_buf *b, const cJSON *v) { py_text(r, b, v, 1); }

/* `{{ v }}` is str(v) (repr == 0); inside containers Python uses repr (repr == 1). */
static void py_text(render *r, g4_buf *b, const cJSON *v, int repr) {
    if (!v) return; /* undefined prints as "" */
    if (cJSON_IsNull(v)) {
        puts_to(r, b, "None");
    } else if (cJSON_IsBool(v)) {
        puts_to(r, b, cJSON_IsTrue(v) ? "True" : "False");
    } else if (cJSON_IsNumber(v)) {
        py_number(r, b, v->valuedouble);
    } else if (cJSON_IsString(v)) {
        const char *s = v->valuestring ? v->valuestring : "";
        if (repr)
            py_repr_string(r, b, s);
        else
            puts_to(r, b, s);
    } else if (cJSON_IsArray(v)) {
        puts_to(r, b, "[");
        for (const cJSON *c = v->child; c; c = c->next) {
            py_repr(r, b, c);
            if (c->next) puts_to(r, b, ", ");
        }
        puts_to(r, b, "]");
    } else if (cJSON_IsObject(v)) {
        puts_to(r, b, "{");
        int first = 1;
        for (const cJSON *c = v->child; c; c = c->next) {
            if (key_seen_before(c)) continue;
            if (!first) puts_to(r, b, ", ");
            first = 0;
            py_repr_string(r, b, c->string ? c->string : "");
            puts_to(r, b, ": ");
            py_repr(r, b, get(v, c->string ? c->string : ""));
        }
        puts_to(r, b, "}");
    }
}

static void put_str(render *r, const cJSON *v) { py_text(r, r->out, v, 0); }

/* `v | upper` into a fresh string (caller frees); NULL after a failure. */
static char *upper_of(render *r, const cJSON *v) {
    g4_buf text = {0}, up = {0};
    py_text(r, &text, v, 0);
    put_upper(r, &up, text.data ? text.data : "", text.len);
    if (!r->rc && !up.data) emit(r, &up, "", 0);
    g4_buf_free(&text);
    if (r->rc) {
        g4_buf_free(&up);
        return NULL;
    }
    return up.data;
}

/* ---- iteration as Jinja does it ---- */

typedef struct entry {
    const char *key;
    const cJSON *value;
    size_t index;
} entry;

/* dictsort: case-insensitive key order (Python's str.lower), ties kept in insertion order. */
static int entry_cmp(const void *pa, const void *pb) {
    const entry *a = pa, *b = pb;
    const char *s = a->key, *t = b->key;
    size_t ns = strlen(s), nt = strlen(t), i = 0, j = 0;
    while (i < ns && j < nt) {
        uint32_t x, y;
        i += utf8_next(s + i, ns - i, &x);
        j += utf8_next(t + j, nt - j, &y);
        x = py_lower(x);
        y = py_lower(y);
        if (x != y) return x < y ? -1 : 1;
    }
    if (i < ns || j < nt) return i < ns ? 1 : -1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* `obj | dictsort` as an array the caller frees; *n = 0 and NULL for an empty dict. obj must be a dict. */
static entry *dictsort(render *r, const cJSON *obj, size_t *n) {
    size_t count = 0;
    *n = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        count++;
    if (!count) return NULL;
    entry *e = malloc(count * sizeof *e);
    if (!e) {
        fail(r, GEMMA4C_ERR_NOMEM, "chat template: out of memory");
        return NULL;
    }
    size_t k = 0;
    for (const cJSON *c = obj->child; c; c = c->next) {
        if (key_seen_before(c)) continue;
        const char *key = c->string ? c->string : "";
        e[k] = (entry){key, get(obj, key), k};
        k++;
    }
    qsort(e, k, sizeof *e, entry_cmp);
    *n = k;
    return e;
}

/* `for x in v`: lists yield items, dicts their keys, strings their characters, undefined nothing. Each item
 * goes to the visitor as a JSON value (keys and characters as temporary strings). */
typedef void (*visit_fn)(render *r, const cJSON *item, size_t index, void *ctx);

static void for_each(render *r, const cJSON *v, const char *what, visit_fn visit, void *ctx) {
    if (r->rc || !v) return;
    size_t i = 0;
    if (cJSON_IsArray(v)) {
        for (const cJSON *c = v->child; c && !r->rc; c = c->next)
            visit(r, c, i++, ctx);
    } else if (cJSON_IsObject(v) || cJSON_IsString(v)) {
        const char *s = cJSON_IsString(v) ? (v->valuestring ? v->valuestring : "") : NULL;
        const cJSON *c = s ? NULL : v->child;
        size_t pos = 0, n = s ? strlen(s) : 0;
        char piece[5];
        while (!r->rc && (s ? pos < n : c != NULL)) {
            cJSON tmp;
            memset(&tmp, 0, sizeof tmp);
            tmp.type = cJSON_String;
            if (s) {
                uint32_t cp;
                size_t k = utf8_next(s + pos, n - pos, &cp);
                memcpy(piece, s + pos, k);
                piece[k] = '\0';
                pos += k;
                tmp.valuestring = piece;
            } else {
                int dup = key_seen_before(c);
                tmp.valuestring = c->string ? c->string : (char *)"";
                c = c->next;
                if (dup) continue;
            }
            visit(r, &tmp, i++, ctx);
        }
    } else {
        fail(r, GEMMA4C_ERR_ARG, "chat template: %s is not iterable (it is %s)", what, json_kind(v));
    }
}

/* `<|"|>{{ item }}<|"|>` joined by commas: how the template lists required parameter names. */
static void visit_quoted(render *r, const cJSON *item, size_t index, void *ctx) {
    (void)ctx;
    if (index) say(r, ",");
    say(r, Q);
    put_str(r, item);
    say(r, Q);
}

/* ---- the template's macros ---- */

static void format_argument(render *r, const cJSON *argument, int escape_keys) {
    if (r->rc) return;
    if (!argument) {
        say(r, "[]"); /* Jinja's undefined passes the template's "is sequence" test and iterates as empty */
    } else if (cJSON_IsNull(argument)) {
        say(r, "null");
    } else if (cJSON_IsString(argument)) {
        say(r, Q);
        say(r, argument->valuestring ? argument->valuestring : "");
        say(r, Q);
    } else if (cJSON_IsBool(argument)) {
        say(r, cJSON_IsTrue(argument) ? "true" : "false");
    } else if (cJSON_IsObject(argument)) {
        say(r, "{");
        size_t n;
        entry *e = dictsort(r, argument, &n);
        for (size_t i = 0; i < n; i++) {
            if (i) say(r, ",");
            if (escape_keys) say(r, Q);
            say(r, e[i].key);
            if (escape_keys) say(r, Q);
            say(r, ":");
            format_argument(r, e[i].value, escape_keys);
        }
        free(e);
        say(r, "}");
    } else if (cJSON_IsArray(argument)) {
        say(r, "[");
        for (const cJSON *c = argument->child; c; c = c->next) {
            format_argument(r, c, escape_keys);
            if (c->next) say(r, ",");
        }
        say(r, "]");
    } else {
        put_str(r, argument);
    }
}

/* `{%- if add_comma %},{%- else -%}{%- set add_comma = true -%}{% endif -%}` */
static void comma(render *r, int *add_comma) {
    if (*add_comma)
        say(r, ",");
    else
        *add_comma = 1;
}

static int is_standard_key(const char *key) {
    static const char *const standard[] = {"description", "type", "properties", "required", "nullable"};
    for (size_t i = 0; i < sizeof standard / sizeof *standard; i++)
        if (strcmp(key, standard[i]) == 0) return 1;
    return 0;
}

static void format_parameters(render *r, const cJSON *properties, int filter_keys);

/* `item_value | map('upper') | list`, formatted as a list of strings. */
static void visit_upper_quoted(render *r, const cJSON *item, size_t index, void *ctx) {
    (void)ctx;
    char *up = upper_of(r, item);
    if (!up) return;
    if (index) say(r, ",");
    say(r, Q);
    say(r, up);
    say(r, Q);
    free(up);
}

/* The `items:{...}` of an ARRAY parameter. */
static void format_items(render *r, const cJSON *items) {
    size_t n;
    entry *e = dictsort(r, items, &n);
    int found_first = 0;
    for (size_t i = 0; i < n && !r->rc; i++) {
        const char *item_key = e[i].key;
        const cJSON *item_value = e[i].value;
        if (cJSON_IsNull(item_value)) continue;
        if (found_first) say(r, ",");
        found_first = 1;
        if (strcmp(item_key, "properties") == 0) {
            say(r, "properties:{");
            if (cJSON_IsObject(item_value)) format_parameters(r, item_value, 0);
            say(r, "}");
        } else if (strcmp(item_key, "required") == 0) {
            say(r, "required:[");
            for_each(r, item_value, "items.required", visit_quoted, NULL);
            say(r, "]");
        } else if (strcmp(item_key, "type") == 0) {
            if (cJSON_IsString(item_value)) {
                char *up = upper_of(r, item_value);
                if (up) {
                    say(r, "type:" Q);
                    say(r, up);
                    say(r, Q);
                    free(up);
                }
            } else {
                say(r, "type:[");
                for_each(r, item_value, "items.type", visit_upper_quoted, NULL);
                say(r, "]");
            }
        } else {
            say(r, item_key);
            say(r, ":");
            format_argument(r, item_value, 1);
        }
    }
    free(e);
}

/* One parameter schema: `key:{description,enum|items,nullable,properties,required,type}`. */
static void format_parameter(render *r, const char *key, const cJSON *value) {
    say(r, key);
    say(r, ":{");
    int add_comma = 0;
    const cJSON *description = get(value, "description");
    if (truthy(description)) {
        say(r, "description:" Q);
        put_str(r, description);
        say(r, Q);
        add_comma = 1;
    }
    char *type = upper_of(r, get(value, "type"));
    if (!type) return;
    if (strcmp(type, "STRING") == 0) {
        const cJSON *enumeration = get(value, "enum");
        if (truthy(enumeration)) {
            comma(r, &add_comma);
            say(r, "enum:");
            format_argument(r, enumeration, 1);
        }
    } else if (strcmp(type, "ARRAY") == 0) {
        const cJSON *items = get(value, "items");
        if (cJSON_IsObject(items) && truthy(items)) {
            comma(r, &add_comma);
            say(r, "items:{");
            format_items(r, items);
            say(r, "}");
        }
    }
    if (truthy(get(value, "nullable"))) {
        comma(r, &add_comma);
        say(r, "nullable:true");
    }
    if (strcmp(type, "OBJECT") == 0) {
        const cJSON *properties = get(value, "properties");
        if (cJSON_IsObject(properties)) {
            comma(r, &add_comma);
            say(r, "properties:{");
            format_parameters(r, properties, 0);
            say(r, "}");
        } else if (cJSON_IsObject(value)) {
            /* An object without properties lists its other keys as if they were properties. */
            comma(r, &add_comma);
            say(r, "properties:{");
            format_parameters(r, value, 1);
            say(r, "}");
        }
        const cJSON *required = get(value, "required");
        if (truthy(required)) {
            comma(r, &add_comma);
            say(r, "required:[");
            for_each(r, required, "required", visit_quoted, NULL);
            say(r, "]");
        }
    }
    comma(r, &add_comma);
    say(r, "type:" Q);
    say(r, type);
    say(r, Q "}");
    free(type);
}

static void format_parameters(render *r, const cJSON *properties, int filter_keys) {
    if (r->rc) return;
    if (!cJSON_IsObject(properties)) {
        fail(r, GEMMA4C_ERR_ARG, "chat template: tool parameter \"properties\" must be an object");
        return;
    }
    size_t n;
    entry *e = dictsort(r, properties, &n);
    int found_first = 0;
    for (size_t i = 0; i < n && !r->rc; i++) {
        if (filter_keys && is_standard_key(e[i].key)) continue;
        if (found_first) say(r, ",");
        found_first = 1;
        format_parameter(r, e[i].key, e[i].value);
    }
    free(e);
}

static void format_function_declaration(render *r, const cJSON *tool_data) {
    const cJSON *function = get(tool_data, "function");
    /* The macro's output is trimmed, but it always starts with "declaration:" and ends with "}". */
    say(r, "declaration:");
    put_str(r, get(function, "name"));
    say(r, "{description:" Q);
    put_str(r, get(function, "description"));
    say(r, Q);
    const cJSON *params = get(function, "parameters");
    if (truthy(params)) {
        say(r, ",parameters:{");
        const cJSON *properties = get(params, "properties");
        if (truthy(properties)) {
            say(r, "properties:{");
            format_parameters(r, properties, 0);
            say(r, "},");
        }
        const cJSON *required = get(params, "required");
        if (truthy(required)) {
            say(r, "required:[");
            for_each(r, required, "parameters.required", visit_quoted, NULL);
            say(r, "],");
        }
        /* Without a type the template never closes "parameters:{"; we reproduce that. */
        const cJSON *type = get(params, "type");
        if (truthy(type)) {
            char *up = upper_of(r, type);
            if (up) {
                say(r, "type:" Q);
                say(r, up);
                say(r, Q "}");
                free(up);
            }
        }
    }
    if (get(function, "response")) {
        const cJSON *response_declaration = get(function, "response");
        say(r, ",response:{");
        const cJSON *description = get(response_declaration, "description");
        if (truthy(description)) {
            say(r, "description:" Q);
            put_str(r, description);
            say(r, Q ",");
        }
        char *type = upper_of(r, get(response_declaration, "type"));
        if (type && strcmp(type, "OBJECT") == 0) say(r, "type:" Q "OBJECT" Q "}");
        free(type);
    }
    say(r, "}");
}

/* strip_thinking(text): drop every `<|channel>...<channel|>` span, then trim. */
static void strip_thinking(render *r, const char *text) {
    g4_buf result = {0};
    const char *part = text;
    for (;;) {
        const char *end = strstr(part, "<channel|>");
        size_t len = end ? (size_t)(end - part) : strlen(part);
        const char *open = strstr(part, "<|channel>");
        if (open && (size_t)(open - part) < len) len = (size_t)(open - part);
        emit(r, &result, part, len);
        if (!end) break;
        part = end + strlen("<channel|>");
    }
    put_trimmed(r, r->out, result.data ? result.data : "", result.len);
    g4_buf_free(&result);
}

static void format_tool_response_block(render *r, const char *tool_name, const cJSON *response) {
    say(r, "<|tool_response>");
    say(r, "response:");
    say(r, tool_name);
    if (cJSON_IsObject(response)) {
        say(r, "{");
        size_t n;
        entry *e = dictsort(r, response, &n);
        for (size_t i = 0; i < n; i++) {
            say(r, e[i].key);
            say(r, ":");
            format_argument(r, e[i].value, 0);
            if (i + 1 < n) say(r, ",");
        }
        free(e);
        say(r, "}");
    } else {
        say(r, "{value:");
        format_argument(r, response, 0);
        say(r, "}");
    }
    say(r, "<tool_response|>");
}

/* ---- messages ---- */

static const char *const template_error_arguments =
    "chat_template: tool_calls[].function.arguments must be a JSON object (mapping), not a string. "
    "Deserialize arguments before passing to the template.";

/* `<|tool_call>call:name{key:value,...}<tool_call|>`. Arguments given as a JSON string (the OpenAI wire form)
 * are parsed here; the template itself only takes a mapping. */
static void render_tool_call(render *r, const cJSON *tool_call) {
    const cJSON *function = get(tool_call, "function");
    say(r, "<|tool_call>call:");
    say(r, get(function, "name")->valuestring);
    say(r, "{");
    const cJSON *arguments = get(function, "arguments");
    cJSON *parsed = NULL;
    int none = cJSON_IsNull(arguments); /* null renders no arguments; missing is Jinja's undefined: an error */
    if (is_str(arguments)) {
        none = !has_non_space(arguments->valuestring, strlen(arguments->valuestring));
        if (!none) arguments = parsed = cJSON_ParseWithOpts(arguments->valuestring, NULL, 1);
    }
    if (cJSON_IsObject(arguments)) {
        size_t n;
        entry *e = dictsort(r, arguments, &n);
        for (size_t i = 0; i < n; i++) {
            if (i) say(r, ",");
            say(r, e[i].key);
            say(r, ":");
            format_argument(r, e[i].value, 0);
        }
        free(e);
    } else if (!none) {
        fail(r, GEMMA4C_ERR_ARG, "%s", template_error_arguments);
    }
    cJSON_Delete(parsed);
    say(r, "}<tool_call|>");
}

static void put_media_placeholder(render *r, const cJSON *type) {
    if (str_is(type, "image") || str_is(type, "image_url"))
        say(r, "<|image|>");
    else if (str_is(type, "audio") || str_is(type, "input_audio"))
        say(r, "<|audio|>");
    else if (str_is(type, "video"))
        say(r, "<|video|>");
}

typedef struct chat_state {
    const cJSON **msgs; /* loop_messages: the messages after a leading system/developer message */
    size_t n;
    long last_user_idx;
    const g4_chat_options *opt;
    prev_type prev_message_type;
    const char *prev_non_tool_role;
} chat_state;

/* The role:tool messages right after message i answer its tool calls (OpenAI Chat Completions layout).
 * Returns whether any was rendered. */
static int render_following_tool_responses(render *r, chat_state *st, size_t i, const cJSON *tool_calls) {
    int rendered = 0;
    for (size_t k = i + 1; k < st->n && !r->rc; k++) {
        const cJSON *follow = st->msgs[k];
        if (strcmp(role_of(follow), "tool") != 0) break;
        const cJSON *name = get(follow, "name");
        const char *tool_name = truthy(name) ? name->valuestring : "unknown";
        /* The last call whose id equals tool_call_id names it; a missing id equals a missing tool_call_id. */
        for (const cJSON *tc = tool_calls->child; tc; tc = tc->next)
            if (py_equal(get(tc, "id"), get(follow, "tool_call_id")))
                tool_name = get(get(tc, "function"), "name")->valuestring;
        const cJSON *tool_body = get(follow, "content");
        if (cJSON_IsArray(tool_body)) {
            g4_buf text = {0};
            for (const cJSON *part = tool_body->child; part; part = part->next)
                if (str_is(get(part, "type"), "text")) puts_to(r, &text, get(part, "text")->valuestring);
            cJSON joined;
            memset(&joined, 0, sizeof joined);
            joined.type = cJSON_String;
            joined.valuestring = text.data ? text.data : (char *)"";
            format_tool_response_block(r, tool_name, &joined);
            g4_buf_free(&text);
            for (const cJSON *part = tool_body->child; part; part = part->next)
                put_media_placeholder(r, get(part, "type"));
        } else {
            cJSON none;
            memset(&none, 0, sizeof none);
            none.type = cJSON_NULL;
            format_tool_response_block(r, tool_name, tool_body ? tool_body : &none);
        }
        rendered = 1;
        st->prev_message_type = PREV_TOOL_RESPONSE;
    }
    return rendered;
}

/* The message's content as the template captures it: trimmed text (model turns: thinking stripped) and media
 * placeholders. */
static void render_content(render *r, const cJSON *content, int is_model) {
    if (is_str(content)) {
        if (is_model)
            strip_thinking(r, content->valuestring);
        else
            put_trimmed(r, r->out, content->valuestring, strlen(content->valuestring));
    } else if (cJSON_IsArray(content)) {
        for (const cJSON *item = content->child; item; item = item->next) {
            const cJSON *type = get(item, "type");
            if (str_is(type, "text")) {
                const char *text = get(item, "text")->valuestring;
                if (is_model)
                    strip_thinking(r, text);
                else
                    put_trimmed(r, r->out, text, strlen(text));
            } else {
                put_media_placeholder(r, type);
            }
        }
    }
}

static void render_message(render *r, chat_state *st, size_t i) {
    const cJSON *message = st->msgs[i];
    const char *message_role = role_of(message);
    st->prev_message_type = PREV_NONE;
    const char *role = strcmp(message_role, "assistant") == 0 ? "model" : message_role;
    int is_model = strcmp(role, "model") == 0;
    int continue_same_model_turn =
        is_model && st->prev_non_tool_role && strcmp(st->prev_non_tool_role, "assistant") == 0;
    if (!continue_same_model_turn) {
        say(r, "<|turn>");
        say(r, role);
        say(r, "\n");
    }

    /* reasoning / reasoning_content becomes the thought channel, but only after the last user message or, with
     * preserve_thinking, on a turn that calls tools. */
    const cJSON *thinking_text = get(message, "reasoning");
    if (!truthy(thinking_text)) thinking_text = get(message, "reasoning_content");
    const cJSON *tool_calls = get(message, "tool_calls");
    int thinking_gate = (long)i > st->last_user_idx || (st->opt->preserve_thinking && truthy(tool_calls));
    if (truthy(thinking_text) && thinking_gate) {
        say(r, "<|channel>thought\n");
        say(r, thinking_text->valuestring);
        say(r, "\n<channel|>");
    }

    if (truthy(tool_calls)) {
        for (const cJSON *tool_call = tool_calls->child; tool_call && !r->rc; tool_call = tool_call->next)
            render_tool_call(r, tool_call);
        st->prev_message_type = PREV_TOOL_CALL;
    }

    int responded = 0;
    const cJSON *tool_responses = get(message, "tool_responses");
    if (truthy(tool_responses)) {
        /* Gemma's native layout: the responses travel on the assistant message itself. */
        for (const cJSON *tool_response = tool_responses->child; tool_response; tool_response = tool_response->next) {
            const cJSON *name = get(tool_response, "name");
            format_tool_response_block(r, truthy(name) ? name->valuestring : "unknown", get(tool_response, "response"));
            responded = 1;
            st->prev_message_type = PREV_TOOL_RESPONSE;
        }
    } else if (truthy(tool_calls)) {
        responded = render_following_tool_responses(r, st, i, tool_calls);
    }

    size_t content_start = r->out->len;
    render_content(r, get(message, "content"), is_model);
    int has_content =
        !r->rc && r->out->data && has_non_space(r->out->data + content_start, r->out->len - content_start);

    const char *next_role = NULL; /* the next message that is not a tool response */
    for (size_t j = i + 1; j < st->n && !next_role; j++)
        if (strcmp(role_of(st->msgs[j]), "tool") != 0) next_role = role_of(st->msgs[j]);

    int continues_into_next =
        is_model && next_role && strcmp(next_role, "assistant") == 0 && (!truthy(tool_calls) || responded);

    if (st->prev_message_type == PREV_TOOL_CALL && !responded) {
        say(r, "<|tool_response>"); /* the model turn stays open for the caller to append the response */
    } else if (continues_into_next) {
        /* the next assistant message goes on in the same model turn */
    } else if (!(responded && !has_content && !next_role)) {
        say(r, "<turn|>\n");
    }
    st->prev_non_tool_role = message_role;
}

/* ---- input checks: malformed input gets one clear error instead of whatever Jinja would do with it ---- */

static int is_none(const cJSON *v) { return !v || cJSON_IsNull(v); }

static int check_parts(render *r, const cJSON *content, size_t index, const char *field) {
    size_t p = 0;
    for (const cJSON *part = content->child; part; part = part->next, p++) {
        if (!cJSON_IsObject(part)) {
            fail(r, GEMMA4C_ERR_ARG, "messages[%zu].%s[%zu] must be an object, not %s", index, field, p,
                 json_kind(part));
            return r->rc;
        }
        const cJSON *text = get(part, "text");
        if ((str_is(get(part, "type"), "text") || text) && !is_str(text)) {
            fail(r, GEMMA4C_ERR_ARG, "messages[%zu].%s[%zu].text must be a string, not %s", index, field, p,
                 json_kind(text));
            return r->rc;
        }
    }
    return 0;
}

static int check_message(render *r, const cJSON *m, size_t i) {
    static const char *const roles[] = {"system", "developer", "user", "assistant", "model", "tool"};
    if (!cJSON_IsObject(m)) {
        fail(r, GEMMA4C_ERR_ARG, "messages[%zu] must be an object, not %s", i, json_kind(m));
        return r->rc;
    }
    const cJSON *role = get(m, "role");
    if (!is_str(role)) {
        fail(r, GEMMA4C_ERR_ARG, "messages[%zu].role must be a string, not %s", i, json_kind(role));
        return r->rc;
    }
    int known = 0;
    for (size_t k = 0; k < sizeof roles / sizeof *roles; k++)
        known |= strcmp(role->valuestring, roles[k]) == 0;
    if (!known) {
        fail(r, GEMMA4C_ERR_ARG,
             "messages[%zu]: unknown role \"%.64s\" (expected system, developer, user, assistant or tool)", i,
             role->valuestring);
        return r->rc;
    }
    const cJSON *content = get(m, "content");
    if (!is_none(content) && !cJSON_IsString(content) && !cJSON_IsArray(content)) {
        fail(r, GEMMA4C_ERR_ARG, "messages[%zu].content must be a string or a list of parts, not %s", i,
             json_kind(content));
        return r->rc;
    }
    if (cJSON_IsArray(content) && check_parts(r, content, i, "content")) return r->rc;
    static const char *const reasoning_keys[] = {"reasoning", "reasoning_content"};
    for (size_t k = 0; k < 2; k++) {
        const cJSON *v = get(m, reasoning_keys[k]);
        if (!is_none(v) && !cJSON_IsString(v)) {
            fail(r, GEMMA4C_ERR_ARG, "messages[%zu].%s must be a string, not %s", i, reasoning_keys[k], json_kind(v));
            return r->rc;
        }
    }
    const cJSON *name = get(m, "name");
    if (truthy(name) && !cJSON_IsString(name)) {
        fail(r, GEMMA4C_ERR_ARG, "messages[%zu].name must be a string, not %s", i, json_kind(name));
        return r->rc;
    }
    const cJSON *tool_calls = get(m, "tool_calls");
    if (!is_none(tool_calls) && !cJSON_IsArray(tool_calls)) {
        fail(r, GEMMA4C_ERR_ARG, "messages[%zu].tool_calls must be a list, not %s", i, json_kind(tool_calls));
        return r->rc;
    }
    size_t k = 0;
    for (const cJSON *tc = tool_calls ? tool_calls->child : NULL; tc; tc = tc->next, k++) {
        const cJSON *function = get(tc, "function");
        if (!cJSON_IsObject(function) || !is_str(get(function, "name"))) {
            fail(r, GEMMA4C_ERR_ARG,
                 "messages[%zu].tool_calls[%zu] must be an object with a \"function\" object that has a string "
                 "\"name\"",
                 i, k);
            return r->rc;
        }
    }
    const cJSON *tool_responses = get(m, "tool_responses");
    if (!is_none(tool_responses) && !cJSON_IsArray(tool_responses)) {
        fail(r, GEMMA4C_ERR_ARG, "messages[%zu].tool_responses must be a list, not %s", i, json_kind(tool_responses));
        return r->rc;
    }
    k = 0;
    for (const cJSON *tr = tool_responses ? tool_responses->child : NULL; tr; tr = tr->next, k++) {
        const cJSON *tr_name = get(tr, "name");
        if (!cJSON_IsObject(tr) || (truthy(tr_name) && !cJSON_IsString(tr_name))) {
            fail(r, GEMMA4C_ERR_ARG, "messages[%zu].tool_responses[%zu] must be an object whose \"name\" is a string",
                 i, k);
            return r->rc;
        }
    }
    return 0;
}

static int check_tools(render *r, const cJSON *tools) {
    size_t k = 0;
    for (const cJSON *tool = tools->child; tool; tool = tool->next, k++) {
        if (!cJSON_IsObject(tool) || !cJSON_IsObject(get(tool, "function"))) {
            fail(r, GEMMA4C_ERR_ARG,
                 "tools[%zu] must be an object with a \"function\" object ({\"type\": \"function\", "
                 "\"function\": {name, description, parameters}})",
                 k);
            return r->rc;
        }
    }
    return 0;
}

/* Rendering recurses into nested values; cJSON_Parse stops at CJSON_NESTING_LIMIT levels, but a tree built in
 * code has no limit, so deeper input is refused rather than allowed to exhaust the stack. */
static int too_deep(const cJSON *v, int depth) {
    if (depth > CJSON_NESTING_LIMIT) return 1;
    for (const cJSON *c = v->child; c; c = c->next)
        if (too_deep(c, depth + 1)) return 1;
    return 0;
}

/* ---- the template, top to bottom ---- */

static void render_chat(render *r, const cJSON *messages, const cJSON *tools, const g4_chat_options *opt,
                        const cJSON **loop_buf) {
    chat_state st = {.opt = opt, .last_user_idx = -1, .prev_message_type = PREV_NONE};
    const cJSON *first = messages->child;
    int first_is_system = first && (strcmp(role_of(first), "system") == 0 || strcmp(role_of(first), "developer") == 0);

    say(r, opt->bos_token ? opt->bos_token : "<bos>");
    if (opt->enable_thinking || truthy(tools) || first_is_system) {
        say(r, "<|turn>system\n");
        if (opt->enable_thinking) {
            say(r, "<|think|>\n");
            st.prev_message_type = PREV_THINK;
        }
        if (first_is_system) {
            const cJSON *content = get(first, "content");
            if (is_str(content)) {
                put_trimmed(r, r->out, content->valuestring, strlen(content->valuestring));
            } else if (cJSON_IsArray(content)) {
                /* each part's text (none for media parts), trimmed, then one space */
                for (const cJSON *item = content->child; item; item = item->next) {
                    const cJSON *text = get(item, "text");
                    if (text) put_trimmed(r, r->out, text->valuestring, strlen(text->valuestring));
                    say(r, " ");
                }
            }
        }
        if (truthy(tools)) {
            for (const cJSON *tool = tools->child; tool && !r->rc; tool = tool->next) {
                say(r, "<|tool>");
                format_function_declaration(r, tool);
                say(r, "<tool|>");
            }
            st.prev_message_type = PREV_TOOL;
        }
        say(r, "<turn|>\n");
    }

    for (const cJSON *m = first_is_system ? first->next : first; m; m = m->next)
        loop_buf[st.n++] = m;
    st.msgs = loop_buf;
    for (size_t i = 0; i < st.n; i++)
        if (strcmp(role_of(st.msgs[i]), "user") == 0) st.last_user_idx = (long)i;

    for (size_t i = 0; i < st.n && !r->rc; i++) {
        if (strcmp(role_of(st.msgs[i]), "tool") == 0) continue; /* rendered with the tool calls they answer */
        render_message(r, &st, i);
    }

    if (opt->add_generation_prompt) {
        if (st.prev_message_type != PREV_TOOL_RESPONSE && st.prev_message_type != PREV_TOOL_CALL)
            say(r, "<|turn>model\n");
        else if (st.prev_message_type == PREV_TOOL_RESPONSE && opt->enable_thinking)
            say(r, "<|channel>thought\n");
    }
}

int g4_chat_render(const cJSON *messages, const cJSON *tools, const g4_chat_options *opt, g4_buf *out, g4_err *err) {
    render r = {.out = out, .err = err};
    if (!out) return g4_fail(err, GEMMA4C_ERR_ARG, "chat template: no output buffer");
    if (!messages || !cJSON_IsArray(messages))
        return g4_fail(err, GEMMA4C_ERR_ARG, "chat template: messages must be a JSON array, not %s",
                       json_kind(messages));
    if (tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools))
        return g4_fail(err, GEMMA4C_ERR_ARG, "chat template: tools must be a JSON array, not %s", json_kind(tools));
    g4_chat_options defaults = {0};
    if (!opt) opt = &defaults;

    if (too_deep(messages, 0) || (tools && too_deep(tools, 0)))
        return g4_fail(err, GEMMA4C_ERR_ARG, "chat template: messages or tools nest deeper than %d levels",
                       CJSON_NESTING_LIMIT);
    size_t n = 0;
    for (const cJSON *m = messages->child; m; m = m->next)
        if (check_message(&r, m, n++)) return r.rc;
    if (cJSON_IsArray(tools) && check_tools(&r, tools)) return r.rc;

    const cJSON **loop_buf = malloc((n ? n : 1) * sizeof *loop_buf);
    if (!loop_buf) return g4_fail(err, GEMMA4C_ERR_NOMEM, "chat template: out of memory");
    size_t start_len = out->len;
    render_chat(&r, messages, cJSON_IsArray(tools) ? tools : NULL, opt, loop_buf);
    free(loop_buf);
    if (r.rc) {
        out->len = start_len; /* leave the buffer as it was */
        if (out->data) out->data[start_len] = '\0';
    }
    return r.rc;
}
