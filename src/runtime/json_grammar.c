/* json_grammar.c — byte by byte, whether a text can still become one JSON object: JSON mode's constraint. */
#include "runtime/json_grammar.h"

#include <string.h>

enum {
    J_START,      /* nothing yet: only '{' */
    J_OBJ_FIRST,  /* after '{': a key or '}' */
    J_OBJ_KEY,    /* after ',' in an object: a key */
    J_COLON,      /* after a key */
    J_VALUE,      /* after ':', or ',' in an array */
    J_ARR_FIRST,  /* after '[': a value or ']' */
    J_AFTER,      /* after a value inside a container: ',' or its closer */
    J_STRING,     /* inside a string, between characters */
    J_UTF8,       /* inside a multi-byte character */
    J_ESCAPE,     /* after a backslash */
    J_HEX,        /* inside \uXXXX */
    J_LOW_SLASH,  /* after a high surrogate's escape: its low half's backslash */
    J_LOW_U,      /* the low half's 'u' */
    J_LITERAL,    /* inside true, false or null */
    J_MINUS,      /* a number's '-' */
    J_ZERO,       /* a number's integer part 0 */
    J_INT,        /* a number's integer digits (not starting with 0) */
    J_DOT,        /* a number's '.' */
    J_FRAC,       /* a number's fraction digits */
    J_EXP,        /* a number's 'e' */
    J_EXP_SIGN,   /* a number's exponent sign */
    J_EXP_DIGITS, /* a number's exponent digits */
    J_DONE        /* the object closed */
};

/* A \u escape's progress, in `lo` while in J_HEX: UTF-16 surrogates must come as a high half then a low one
 * (a lone half is no character, and strict parsers refuse it), so the escape's first two digits are watched. */
enum { HEX_NEED_LOW = 1, HEX_FIRST_D = 2, HEX_HIGH = 4 };

static const char *const literals[3] = {"true", "false", "null"};

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_hex(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static void emit(g4_json_events *ev, int what) {
    if (ev) ev->ev[ev->n++] = (uint8_t)what;
}

static int top_is_object(const g4_json_state *s) {
    const int d = s->depth - 1;
    return s->is_object[d / 8] >> (d % 8) & 1;
}

static int push(g4_json_state *s, int object, int mode) {
    if (s->depth >= G4_JSON_MAX_DEPTH) return -1;
    const int d = s->depth++;
    if (object) s->is_object[d / 8] |= (uint8_t)(1u << (d % 8));
    else s->is_object[d / 8] &= (uint8_t)~(1u << (d % 8));
    s->mode = (uint8_t)mode;
    return 0;
}

/* A value ended: the container goes on, or the whole object is done. */
static void value_done(g4_json_state *s) { s->mode = s->depth ? J_AFTER : J_DONE; }

static int value_start(g4_json_state *s, unsigned char c, g4_json_events *ev) {
    s->run = 0;
    emit(ev, G4_JEV_BEGIN); /* undone by the caller's failure */
    switch (c) {
    case '{': return push(s, 1, J_OBJ_FIRST);
    case '[': return push(s, 0, J_ARR_FIRST);
    case '"': s->mode = J_STRING, s->in_key = 0; return 0;
    case 't': s->literal = 0; break;
    case 'f': s->literal = 1; break;
    case 'n': s->literal = 2; break;
    default:
        if (c != '-' && !is_digit(c)) return -1;
        s->mode = c == '-' ? J_MINUS : c == '0' ? J_ZERO : J_INT;
        s->run = 1; /* a number's length so far */
        return 0;
    }
    s->mode = J_LITERAL;
    s->left = (uint8_t)(strlen(literals[s->literal]) - 1);
    return 0;
}

/* Whitespace where the grammar allows it, in runs of a bounded length. */
static int space(g4_json_state *s) {
    if (s->run >= G4_JSON_MAX_SPACE) return -1;
    s->run++;
    return 0;
}

/* The first byte of a multi-byte UTF-8 character: how many follow and the range of the next one (no overlong
 * forms, surrogates or code points past U+10FFFF). */
static int utf8_lead(g4_json_state *s, unsigned char c) {
    s->lo = 0x80, s->hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) s->left = 1;
    else if (c >= 0xE0 && c <= 0xEF) s->left = 2, s->lo = c == 0xE0 ? 0xA0 : 0x80, s->hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) s->left = 3, s->lo = c == 0xF0 ? 0x90 : 0x80, s->hi = c == 0xF4 ? 0x8F : 0xBF;
    else return -1;
    s->mode = J_UTF8;
    return 0;
}

/* A byte after a number that may end here: 1 when it continues the number (a digit of its part, or the step to
 * the next part), 0 when the number ended before it. */
static int number_goes_on(g4_json_state *s, unsigned char c) {
    const int m = s->mode;
    if (is_digit(c) && m != J_ZERO) return 1;
    if (c == '.' && (m == J_ZERO || m == J_INT)) return s->mode = J_DOT, 1;
    if ((c == 'e' || c == 'E') && m != J_EXP_DIGITS) return s->mode = J_EXP, 1;
    return 0;
}

static int feed_byte(g4_json_state *s, unsigned char c, g4_json_events *ev) {
    switch (s->mode) {
    case J_START:
        return c == '{' ? (emit(ev, G4_JEV_BEGIN), push(s, 1, J_OBJ_FIRST)) : -1;
    case J_OBJ_FIRST:
    case J_OBJ_KEY:
        if (is_space(c)) return space(s);
        s->run = 0;
        if (c == '"') return emit(ev, G4_JEV_KEY), s->mode = J_STRING, s->in_key = 1, 0;
        if (c == '}' && s->mode == J_OBJ_FIRST) return emit(ev, G4_JEV_END), s->depth--, value_done(s), 0;
        return -1;
    case J_COLON:
        if (is_space(c)) return space(s);
        s->run = 0;
        return c == ':' ? (s->mode = J_VALUE, 0) : -1;
    case J_VALUE:
    case J_ARR_FIRST:
        if (is_space(c)) return space(s);
        if (c == ']' && s->mode == J_ARR_FIRST) return emit(ev, G4_JEV_END), s->run = 0, s->depth--, value_done(s), 0;
        return value_start(s, c, ev);
    case J_AFTER:
        if (is_space(c)) return space(s);
        s->run = 0;
        if (c == ',') return emit(ev, G4_JEV_COMMA), s->mode = top_is_object(s) ? J_OBJ_KEY : J_VALUE, 0;
        if (c == (top_is_object(s) ? '}' : ']')) return emit(ev, G4_JEV_END), s->depth--, value_done(s), 0;
        return -1;
    case J_STRING:
        if (c == '"') {
            if (s->in_key) emit(ev, G4_JEV_KEY_END), s->mode = J_COLON, s->run = 0;
            else emit(ev, G4_JEV_END), value_done(s), s->run = 0;
            return 0;
        }
        if (c == '\\') return s->mode = J_ESCAPE, 0;
        if (c < 0x20) return -1;
        return c < 0x80 ? 0 : utf8_lead(s, c);
    case J_UTF8:
        if (c < s->lo || c > s->hi) return -1;
        s->lo = 0x80, s->hi = 0xBF;
        if (--s->left == 0) s->mode = J_STRING;
        return 0;
    case J_ESCAPE:
        if (c == 'u') return s->mode = J_HEX, s->left = 4, s->lo = 0, 0;
        return c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't'
                   ? (s->mode = J_STRING, 0)
                   : -1;
    case J_HEX: {
        if (!is_hex(c)) return -1;
        const int at = 4 - s->left, d = c == 'd' || c == 'D', low = (c >= 'c' && c <= 'f') || (c >= 'C' && c <= 'F');
        if (at == 0 && (s->lo & HEX_NEED_LOW) && !d) return -1;
        if (at == 0 && d) s->lo |= HEX_FIRST_D;
        if (at == 1 && (s->lo & HEX_FIRST_D)) {
            if (low != !!(s->lo & HEX_NEED_LOW)) return -1; /* a lone low half, or no low half where one is due */
            if (c == '8' || c == '9' || c == 'a' || c == 'b' || c == 'A' || c == 'B') s->lo |= HEX_HIGH;
        } else if (at == 1 && (s->lo & HEX_NEED_LOW)) return -1;
        if (--s->left == 0) s->mode = s->lo & HEX_HIGH ? J_LOW_SLASH : J_STRING;
        return 0;
    }
    case J_LOW_SLASH:
        return c == '\\' ? (s->mode = J_LOW_U, 0) : -1;
    case J_LOW_U:
        return c == 'u' ? (s->mode = J_HEX, s->left = 4, s->lo = HEX_NEED_LOW, 0) : -1;
    case J_LITERAL: {
        const char *word = literals[s->literal];
        const size_t at = strlen(word) - s->left;
        if (c != (unsigned char)word[at]) return -1;
        if (--s->left == 0) emit(ev, G4_JEV_END), value_done(s), s->run = 0;
        return 0;
    }
    case J_MINUS:
        if (c == '0') return s->mode = J_ZERO, s->run++, 0;
        if (c >= '1' && c <= '9') return s->mode = J_INT, s->run++, 0;
        return -1;
    case J_DOT:
        return is_digit(c) ? (s->mode = J_FRAC, s->run++, 0) : -1;
    case J_EXP:
        if (c == '+' || c == '-') return s->mode = J_EXP_SIGN, s->run++, 0;
        return is_digit(c) ? (s->mode = J_EXP_DIGITS, s->run++, 0) : -1;
    case J_EXP_SIGN:
        return is_digit(c) ? (s->mode = J_EXP_DIGITS, s->run++, 0) : -1;
    case J_ZERO:
    case J_INT:
    case J_FRAC:
    case J_EXP_DIGITS:
        if (number_goes_on(s, c)) return ++s->run > G4_JSON_MAX_NUMBER ? -1 : 0;
        s->run = 0;
        emit(ev, G4_JEV_END_BEFORE);
        value_done(s); /* the number ended: this byte follows it */
        return feed_byte(s, c, ev);
    default: /* J_DONE: nothing may follow */
        return -1;
    }
}

int g4_json_feed(g4_json_state *s, const unsigned char *bytes, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (feed_byte(s, bytes[i], NULL)) return -1;
    return 0;
}

int g4_json_feed_byte(g4_json_state *s, unsigned char c, g4_json_events *ev) {
    ev->n = 0;
    return feed_byte(s, c, ev);
}

int g4_json_in_key(const g4_json_state *s) { return s->in_key; }

int g4_json_complete(const g4_json_state *s) { return s->mode == J_DONE; }

int g4_json_in_string(const g4_json_state *s) { return s->mode == J_STRING; }
