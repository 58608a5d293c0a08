/* json_pattern.c — a regular expression as a position automaton (Glushkov's): each character of the pattern is a
 * state, entered on a character of its class; a set of them says where a string stands. */
#include "runtime/json_pattern.h"

#include <stdlib.h>
#include <string.h>

#include "text/utf8.h"

enum { MAX_RANGES = 4096, MAX_CLASS_RANGES = 128, MAX_REPEAT = 63, MAX_GROUP_DEPTH = 32, MAX_ATOMS_READ = 20000 };
enum { UNICODE_MAX = 0x10FFFF, SURROGATE_LO = 0xD800, SURROGATE_HI = 0xDFFF };

typedef struct range {
    uint32_t lo, hi;
} range;

/* A set of characters: sorted, disjoint ranges; never a surrogate (a JSON string cannot hold a lone one). */
typedef struct charset {
    int n;
    range r[MAX_CLASS_RANGES];
} charset;

struct g4_pattern {
    int n_pos;                                  /* positions 1..n_pos; bit 0 is the start */
    uint64_t follow[G4_PATTERN_MAX_POSITIONS + 1]; /* [0]: the first positions */
    uint64_t last;                              /* positions a match may end on (bit 0: the empty string matches) */
    uint64_t live;                              /* positions from which a match can still end */
    uint64_t anything;                          /* live positions that take any character and repeat */
    int class0[G4_PATTERN_MAX_POSITIONS + 1], n_class[G4_PATTERN_MAX_POSITIONS + 1]; /* in ranges[] */
    uint64_t *lengths; /* g4_pattern_count_lengths: per position, LENGTH_WORDS words; bit k: k more characters
                          from it can end a match */
    int n_ranges;
    range ranges[MAX_RANGES];
};

/* What a piece of the pattern contributes: whether it matches the empty string, the positions that can begin and
 * end it (the follow sets inside it are written to the pattern as it is read). */
typedef struct piece {
    int nullable;
    uint64_t first, last;
} piece;

typedef struct parser {
    const unsigned char *at, *end, *begin;
    g4_pattern *p;
    g4_err *err;
    int depth;
    int atoms_read; /* repeated groups are read again per copy: "((){63}){63}" would take 63^depth reads */
    int failed;
} parser;

static int refuse(parser *ps, const char *why) {
    if (!ps->failed) g4_fail(ps->err, GEMMA4C_ERR_ARG, "%s", why);
    ps->failed = 1;
    return -1;
}

/* ---- character sets ---- */

static void charset_add(charset *s, uint32_t lo, uint32_t hi, parser *ps) {
    if (lo > hi) return;
    if (lo <= SURROGATE_HI && hi >= SURROGATE_LO) { /* split around the surrogates */
        if (lo < SURROGATE_LO) charset_add(s, lo, SURROGATE_LO - 1, ps);
        if (hi > SURROGATE_HI) charset_add(s, SURROGATE_HI + 1, hi, ps);
        return;
    }
    if (s->n == MAX_CLASS_RANGES) {
        refuse(ps, "a character class with too many ranges");
        return;
    }
    int i = s->n++;
    for (; i > 0 && s->r[i - 1].lo > lo; i--) s->r[i] = s->r[i - 1];
    s->r[i] = (range){lo, hi};
    int out = 0; /* merge what overlaps or touches */
    for (int k = 0; k < s->n; k++) {
        if (out && s->r[k].lo <= s->r[out - 1].hi + 1) {
            if (s->r[k].hi > s->r[out - 1].hi) s->r[out - 1].hi = s->r[k].hi;
        } else s->r[out++] = s->r[k];
    }
    s->n = out;
}

static void charset_union(charset *s, const charset *t, parser *ps) {
    for (int i = 0; i < t->n; i++) charset_add(s, t->r[i].lo, t->r[i].hi, ps);
}

static void charset_invert(charset *s, parser *ps) {
    charset in = *s;
    s->n = 0;
    uint32_t next = 0;
    for (int i = 0; i < in.n; i++) {
        if (in.r[i].lo > next) charset_add(s, next, in.r[i].lo - 1, ps);
        next = in.r[i].hi + 1;
    }
    if (next <= UNICODE_MAX) charset_add(s, next, UNICODE_MAX, ps);
}

/* \d, \w, \s and '.', as ECMA-262 defines them (\w and \d are ASCII only). */
static void charset_named(charset *s, int name, parser *ps) {
    static const uint32_t space[][2] = {{0x09, 0x0D}, {0x20, 0x20}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A},
                                        {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
    charset c = {0};
    switch (name | 0x20) {
    case 'd': charset_add(&c, '0', '9', ps); break;
    case 'w':
        charset_add(&c, '0', '9', ps), charset_add(&c, 'A', 'Z', ps), charset_add(&c, 'a', 'z', ps);
        charset_add(&c, '_', '_', ps);
        break;
    case 's':
        for (size_t i = 0; i < sizeof space / sizeof *space; i++) charset_add(&c, space[i][0], space[i][1], ps);
        break;
    default: /* '.': anything but a line terminator */
        charset_add(&c, '\n', '\n', ps), charset_add(&c, '\r', '\r', ps), charset_add(&c, 0x2028, 0x2029, ps);
        charset_invert(&c, ps);
        name = '.';
    }
    if (name >= 'A' && name <= 'Z') charset_invert(&c, ps);
    charset_union(s, &c, ps);
}

static int charset_has(const g4_pattern *p, int pos, uint32_t cp) {
    const range *r = p->ranges + p->class0[pos];
    for (int i = 0; i < p->n_class[pos]; i++)
        if (cp >= r[i].lo && cp <= r[i].hi) return 1;
    return 0;
}

/* ---- reading the pattern ---- */

/* The next UTF-8 character; -1 at the end or on a malformed one. */
static int32_t next_char(parser *ps) {
    if (ps->at >= ps->end) return -1;
    uint32_t cp;
    const size_t len = g4_utf8_decode((const char *)ps->at, (size_t)(ps->end - ps->at), &cp);
    if (!len) return refuse(ps, "the pattern is not valid UTF-8");
    ps->at += len;
    return (int32_t)cp;
}

static int hex_digits(parser *ps, int count) {
    int v = 0;
    for (int i = 0; i < count; i++) {
        const int c = ps->at < ps->end ? *ps->at++ : 0;
        const int d = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
        if (d < 0) return refuse(ps, "\\x takes two hex digits and \\u four");
        v = v * 16 + d;
    }
    return v;
}

/* After a backslash: one character (its code point), or a class into *set (returns -2). */
static int32_t escape(parser *ps, charset *set) {
    const int32_t c = next_char(ps);
    if (c < 0) return refuse(ps, "the pattern ends with a lone backslash");
    switch (c) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S': charset_named(set, c, ps); return -2;
    case 't': return '\t';
    case 'n': return '\n';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    case '0':
        if (ps->at < ps->end && *ps->at >= '0' && *ps->at <= '9') return refuse(ps, "octal escapes are not supported");
        return 0;
    case 'x': return hex_digits(ps, 2);
    case 'u': {
        if (ps->at < ps->end && *ps->at == '{') return refuse(ps, "\\u{...} needs the u flag, which a pattern does not have");
        const int v = hex_digits(ps, 4);
        if (v >= SURROGATE_LO && v <= SURROGATE_HI) return refuse(ps, "surrogates (\\uD800-\\uDFFF) are not supported");
        return v;
    }
    case 'b': case 'B': return refuse(ps, "word boundaries (\\b, \\B) are not supported");
    case 'p': case 'P': return refuse(ps, "Unicode property escapes (\\p{...}) are not supported");
    case 'k': return refuse(ps, "backreferences are not supported");
    default:
        if (c >= '1' && c <= '9') return refuse(ps, "backreferences are not supported");
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            return refuse(ps, "an escape this pattern subset does not know (\\c, or a letter without meaning)");
        return c; /* escaped punctuation stands for itself */
    }
}

/* [...]: the characters it holds. */
static void class_body(parser *ps, charset *set) {
    int negate = 0;
    if (ps->at < ps->end && *ps->at == '^') negate = 1, ps->at++;
    charset c = {0};
    for (;;) {
        if (ps->at >= ps->end) {
            refuse(ps, "a character class is not closed with ]");
            return;
        }
        if (*ps->at == ']') {
            ps->at++;
            break;
        }
        int32_t lo = next_char(ps);
        if (lo == '\\') lo = escape(ps, &c);
        if (lo == -1 || ps->failed) return;
        if (lo == -2) continue; /* \d and the like joined the class */
        int32_t hi = lo;
        if (ps->end - ps->at >= 2 && *ps->at == '-' && ps->at[1] != ']') {
            ps->at++;
            hi = next_char(ps);
            if (hi == '\\') {
                charset named = {0};
                hi = escape(ps, &named);
                if (hi == -2) {
                    refuse(ps, "a class range cannot end with \\d, \\w or \\s");
                    return;
                }
            }
            if (hi < 0 || ps->failed) return;
            if (hi < lo) {
                refuse(ps, "a class range goes backwards");
                return;
            }
        }
        charset_add(&c, (uint32_t)lo, (uint32_t)hi, ps);
    }
    if (negate) charset_invert(&c, ps);
    charset_union(set, &c, ps);
}

/* A new position for a set of characters. */
static piece position(parser *ps, const charset *set) {
    g4_pattern *p = ps->p;
    if (p->n_pos == G4_PATTERN_MAX_POSITIONS) {
        refuse(ps, "the pattern has more than 63 characters once its repetitions are written out");
        return (piece){0};
    }
    if (set->n > MAX_RANGES - p->n_ranges) {
        refuse(ps, "the pattern's character classes are too large together");
        return (piece){0};
    }
    const int pos = ++p->n_pos;
    p->class0[pos] = p->n_ranges;
    p->n_class[pos] = set->n;
    memcpy(p->ranges + p->n_ranges, set->r, (size_t)set->n * sizeof *set->r);
    p->n_ranges += set->n;
    return (piece){0, 1ull << pos, 1ull << pos};
}

static void link(g4_pattern *p, uint64_t from, uint64_t to) {
    for (int i = 1; i <= p->n_pos; i++)
        if (from >> i & 1) p->follow[i] |= to;
}

static piece concat(g4_pattern *p, piece a, piece b) {
    link(p, a.last, b.first);
    return (piece){a.nullable && b.nullable, a.first | (a.nullable ? b.first : 0), b.last | (b.nullable ? a.last : 0)};
}

static piece alternatives(parser *ps);

/* One atom: a character, a class, '.', or a group. */
static piece atom(parser *ps) {
    charset set = {0};
    if (++ps->atoms_read > MAX_ATOMS_READ) return refuse(ps, "the pattern's repetitions are nested too deeply to write out"), (piece){0};
    const int32_t c = next_char(ps);
    if (c < 0) return (piece){0};
    if (c == '(') {
        if (ps->end - ps->at >= 2 && ps->at[0] == '?') {
            if (ps->at[1] == ':') ps->at += 2;
            else if (ps->at[1] == '<' && ps->end - ps->at >= 3 && ps->at[2] != '=' && ps->at[2] != '!') { /* a name */
                const unsigned char *close = memchr(ps->at, '>', (size_t)(ps->end - ps->at));
                if (!close) return refuse(ps, "a group name is not closed with >"), (piece){0};
                ps->at = close + 1;
            } else return refuse(ps, "lookahead and lookbehind are not supported"), (piece){0};
        }
        if (++ps->depth > MAX_GROUP_DEPTH) return refuse(ps, "groups nested deeper than 32"), (piece){0};
        const piece inner = alternatives(ps);
        ps->depth--;
        if (ps->failed) return inner;
        if (ps->at >= ps->end || *ps->at != ')') return refuse(ps, "a group is not closed with )"), (piece){0};
        ps->at++;
        return inner;
    }
    if (c == '[') class_body(ps, &set);
    else if (c == '.') charset_named(&set, '.', ps);
    else if (c == '\\') {
        const int32_t e = escape(ps, &set);
        if (e >= 0) charset_add(&set, (uint32_t)e, (uint32_t)e, ps);
    } else if (c == '*' || c == '+' || c == '?') return refuse(ps, "a quantifier with nothing to repeat"), (piece){0};
    else if (c == '{') return refuse(ps, "a { that does not follow something to repeat as {n,m}"), (piece){0};
    else if (c == '^' || c == '$') return refuse(ps, "^ and $ are supported only at the start and the end of the pattern"), (piece){0};
    else charset_add(&set, (uint32_t)c, (uint32_t)c, ps);
    return ps->failed ? (piece){0} : position(ps, &set);
}

/* {n}, {n,}, {n,m} after an atom: 0 and the bounds (max -1: none), or -1 when the brace is not a quantifier. */
static int braces(parser *ps, int *min, int *max) {
    const unsigned char *q = ps->at + 1;
    long lo = 0, hi;
    if (q >= ps->end || *q < '0' || *q > '9') return -1;
    while (q < ps->end && *q >= '0' && *q <= '9') lo = lo * 10 + (*q++ - '0'), lo = lo > 100000 ? 100000 : lo;
    hi = lo;
    if (q < ps->end && *q == ',') {
        q++;
        hi = -1;
        if (q < ps->end && *q >= '0' && *q <= '9')
            for (hi = 0; q < ps->end && *q >= '0' && *q <= '9';) hi = hi * 10 + (*q++ - '0'), hi = hi > 100000 ? 100000 : hi;
    }
    if (q >= ps->end || *q != '}') return -1;
    ps->at = q + 1;
    *min = (int)lo, *max = (int)hi;
    return 0;
}

/* An atom and its quantifier: each copy of a repeated atom is read again from its text, as new positions. */
static piece repeated(parser *ps) {
    const unsigned char *start = ps->at;
    piece a = atom(ps);
    if (ps->failed || ps->at >= ps->end) return a;
    int min, max;
    const unsigned char q = *ps->at;
    if (q == '*') min = 0, max = -1, ps->at++;
    else if (q == '+') min = 1, max = -1, ps->at++;
    else if (q == '?') min = 0, max = 1, ps->at++;
    else if (q != '{') return a;
    else if (braces(ps, &min, &max)) return refuse(ps, "a { that is not a quantifier {n}, {n,} or {n,m}; write \\{"), a;
    if (max >= 0 && max < min) return refuse(ps, "a quantifier {n,m} with m below n"), a;
    if (min > MAX_REPEAT || max > MAX_REPEAT)
        return refuse(ps, "the pattern has more than 63 characters once its repetitions are written out"), a;
    if (ps->at < ps->end && *ps->at == '?') ps->at++; /* lazy: the same strings */
    if (ps->at < ps->end && (*ps->at == '*' || *ps->at == '+' || *ps->at == '?' || *ps->at == '{'))
        return refuse(ps, "a quantifier with nothing to repeat"), a;
    const unsigned char *after = ps->at;
    piece out = {1, 0, 0}, copy = a;
    const int copies = max < 0 ? (min ? min : 1) : max;
    for (int i = 0; i < copies && !ps->failed; i++) {
        if (i) { /* read the atom again, for new positions */
            ps->at = start;
            copy = atom(ps);
        }
        if (i >= min) copy.nullable = 1;                  /* an optional copy */
        if (max < 0 && i == copies - 1) link(ps->p, copy.last, copy.first); /* the last one repeats */
        out = concat(ps->p, out, copy);
    }
    ps->at = after;
    if (copies == 0) out = (piece){1, 0, 0}; /* a{0}: its positions stay unreachable */
    return out;
}

static piece sequence(parser *ps) {
    piece out = {1, 0, 0};
    while (!ps->failed && ps->at < ps->end && *ps->at != '|' && *ps->at != ')') out = concat(ps->p, out, repeated(ps));
    return out;
}

static piece alternatives(parser *ps) {
    piece out = sequence(ps);
    while (!ps->failed && ps->at < ps->end && *ps->at == '|') {
        ps->at++;
        const piece b = sequence(ps);
        out = (piece){out.nullable || b.nullable, out.first | b.first, out.last | b.last};
    }
    return out;
}

/* ---- the automaton ---- */

g4_pattern *g4_pattern_compile(const char *re, size_t len, g4_err *err) {
    g4_pattern *p = calloc(1, sizeof *p);
    if (!p) {
        g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory");
        return NULL;
    }
    parser ps = {(const unsigned char *)re, (const unsigned char *)re + len, (const unsigned char *)re, p, err, 0, 0, 0};
    const int anchored_start = len && re[0] == '^';
    int anchored_end = 0; /* a final '$' not escaped */
    if (len && re[len - 1] == '$') {
        size_t slashes = 0;
        while (slashes + 2 <= len && re[len - 2 - slashes] == '\\') slashes++;
        anchored_end = slashes % 2 == 0 && len > (size_t)anchored_start;
    }
    ps.at += anchored_start;
    ps.end -= anchored_end;
    charset any = {0};
    charset_add(&any, 0, UNICODE_MAX, &ps);
    piece whole = {1, 0, 0};
    if (!anchored_start) { /* a match may begin anywhere: any characters before it */
        whole = position(&ps, &any);
        link(p, whole.last, whole.first);
        whole.nullable = 1;
    }
    const unsigned char *body = ps.at;
    const piece inner = alternatives(&ps);
    if (!ps.failed && ps.at < ps.end) refuse(&ps, "a ) without its ("); /* alternatives stop only there */
    if (!ps.failed && (anchored_start || anchored_end) && memchr(body, '|', (size_t)(ps.end - body))) {
        /* ^a|b$ anchors one alternative each: only a group says what is meant */
        int top_bar = 0, depth = 0, in_class = 0;
        for (const unsigned char *c = body; c < ps.end; c++) {
            if (*c == '\\') c++;
            else if (in_class) in_class = *c != ']';
            else if (*c == '[') in_class = 1;
            else if (*c == '(') depth++;
            else if (*c == ')') depth--;
            else if (*c == '|' && !depth) top_bar = 1;
        }
        if (top_bar) refuse(&ps, "^ or $ beside a | outside a group: write ^(a|b)$");
    }
    if (!ps.failed) whole = concat(p, whole, inner);
    if (!ps.failed && !anchored_end) { /* and end anywhere: any characters after it */
        piece tail = position(&ps, &any);
        link(p, tail.last, tail.first);
        tail.nullable = 1;
        if (!ps.failed) whole = concat(p, whole, tail);
    }
    if (ps.failed) {
        free(p);
        return NULL;
    }
    p->follow[0] = whole.first;
    p->last = whole.last | (whole.nullable ? 1 : 0);
    /* live: the positions from which a match can end, entering only positions whose class is not empty */
    uint64_t live = p->last, enterable = 1;
    for (int i = 1; i <= p->n_pos; i++) enterable |= (uint64_t)(p->n_class[i] > 0) << i;
    live &= enterable;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i <= p->n_pos; i++)
            if (!(live >> i & 1) && enterable >> i & 1 && p->follow[i] & live) live |= 1ull << i, changed = 1;
    }
    p->live = live;
    for (int i = 1; i <= p->n_pos; i++)
        if (live >> i & 1 && p->follow[i] >> i & 1 && p->n_class[i] == any.n && !memcmp(p->ranges + p->class0[i], any.r, sizeof any.r[0] * (size_t)any.n))
            p->anything |= 1ull << i;
    if (!(live & 1)) {
        free(p);
        g4_fail(err, GEMMA4C_ERR_ARG, "no string matches the pattern");
        return NULL;
    }
    return p;
}

void g4_pattern_free(g4_pattern *p) {
    if (p) free(p->lengths);
    free(p);
}

uint64_t g4_pattern_start(const g4_pattern *p) { return 1; }

/* The live positions a next character may enter. */
static uint64_t may_enter(const g4_pattern *p, uint64_t at) {
    uint64_t may = 0;
    for (int i = 0; i <= p->n_pos; i++)
        if (at >> i & 1) may |= p->follow[i];
    return may & p->live;
}

uint64_t g4_pattern_step(const g4_pattern *p, uint64_t at, uint32_t code_point) {
    uint64_t next = 0;
    const uint64_t may = may_enter(p, at);
    for (int i = 1; i <= p->n_pos; i++)
        if (may >> i & 1 && charset_has(p, i, code_point)) next |= 1ull << i;
    return next;
}

uint64_t g4_pattern_step_range(const g4_pattern *p, uint64_t at, uint32_t lo, uint32_t hi) {
    uint64_t next = 0;
    const uint64_t may = may_enter(p, at);
    for (int i = 1; i <= p->n_pos; i++) {
        const range *r = p->ranges + p->class0[i];
        for (int k = 0; may >> i & 1 && k < p->n_class[i]; k++)
            if (r[k].lo <= hi && r[k].hi >= lo) {
                next |= 1ull << i;
                break;
            }
    }
    return next;
}

int g4_pattern_can_step(const g4_pattern *p, uint64_t at, uint32_t lo, uint32_t hi) {
    return g4_pattern_step_range(p, at, lo, hi) != 0;
}

int g4_pattern_anything_goes(const g4_pattern *p, uint64_t at) { return (may_enter(p, at) & p->anything) != 0; }

int g4_pattern_accepts(const g4_pattern *p, uint64_t at) { return (at & p->last) != 0; }

int g4_pattern_matches(const g4_pattern *p, const char *utf8) {
    parser ps = {(const unsigned char *)utf8, (const unsigned char *)utf8 + strlen(utf8), NULL, NULL, NULL, 0, 0, 1};
    uint64_t at = g4_pattern_start(p);
    for (int32_t c; at && (c = next_char(&ps)) >= 0;) at = g4_pattern_step(p, at, (uint32_t)c);
    return at && ps.at == ps.end && g4_pattern_accepts(p, at);
}

/* ---- lengths ---- */

enum { LENGTH_WORDS = G4_PATTERN_MAX_LENGTH / 64 + 1 };

int g4_pattern_count_lengths(g4_pattern *p) {
    if (p->lengths) return 0;
    if (!(p->lengths = calloc((size_t)(p->n_pos + 1) * LENGTH_WORDS, sizeof *p->lengths))) return -1;
    uint64_t can_end = p->last; /* the positions from which exactly k more characters can end a match */
    for (int k = 0; k <= G4_PATTERN_MAX_LENGTH && can_end; k++) {
        uint64_t before = 0;
        for (int i = 0; i <= p->n_pos; i++) {
            if (can_end >> i & 1) p->lengths[(size_t)i * LENGTH_WORDS + k / 64] |= 1ull << (k % 64);
            if (p->follow[i] & p->live & can_end) before |= 1ull << i;
        }
        can_end = before;
    }
    return 0;
}

int g4_pattern_length_fits(const g4_pattern *p, uint64_t at, int64_t lo, int64_t hi) {
    if (lo < 0) lo = 0;
    if (hi > G4_PATTERN_MAX_LENGTH) hi = G4_PATTERN_MAX_LENGTH;
    for (int i = 0; lo <= hi && i <= p->n_pos; i++) {
        if (!(at >> i & 1)) continue;
        const uint64_t *bits = p->lengths + (size_t)i * LENGTH_WORDS;
        for (int64_t w = lo / 64; w <= hi / 64; w++) {
            uint64_t word = bits[w];
            if (w == lo / 64) word &= ~0ull << (lo % 64);
            if (w == hi / 64 && hi % 64 != 63) word &= (1ull << (hi % 64 + 1)) - 1;
            if (word) return 1;
        }
    }
    return 0;
}

/* Matched already, and any next character enters a repeated "any character" that matches too. */
int g4_pattern_matches_all(const g4_pattern *p, uint64_t at) {
    return (at & p->last) && (may_enter(p, at) & p->anything & p->last);
}
