/* json_number.c — a number's bounds as exact decimals, and a number checked against them as it is written.
 *
 * The digits so far are compared, as they come, with each end of the range for the number's sign, most
 * significant digit first: the prefix against that many leading digits of the end (two 2-bit comparisons in the
 * frame's mask; its integer digits in count, fraction digits in pos). That comparison decides everything once
 * the integer part's length is known: before the point, a number of L integer digits starting with the prefix
 * reaches the range when some L >= the prefix's length suits both ends; after it, the values the prefix still
 * reaches (from it up to one unit of its last digit above) must meet the range. */
#include "runtime/json_number.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CMP_EQ, CMP_LT, CMP_GT };

/* A finite magnitude as the shortest decimal that reads back as the same double. */
static g4_decimal decimal_of(double v) {
    g4_decimal d = {0};
    if (v == 0) return d; /* -0 too, which would print its sign */
    char e[40];
    int p = 1;
    for (; p < 17; p++) { /* 17 significant digits always read back */
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    snprintf(e, sizeof e, "%.*e", p - 1, v); /* d.ddde±x */
    const int exp10 = atoi(strchr(e, 'e') + 1);
    for (const char *c = e; *c != 'e'; c++)
        if (*c != '.') d.sig[d.n_sig++] = *c;
    while (d.n_sig && d.sig[d.n_sig - 1] == '0') d.n_sig--;
    d.n_int = (int16_t)(exp10 >= 0 ? exp10 + 1 : 0);
    d.zeros = (uint16_t)(exp10 < 0 ? -exp10 - 1 : 0); /* a double's exponent is above -330 */
    return d;
}

/* Digit i of the decimal (0: its first integer digit, or its first fraction digit when below 1). */
static int digit_at(const g4_decimal *x, uint32_t i) {
    if (i < x->zeros) return '0';
    i -= x->zeros;
    return i < x->n_sig ? x->sig[i] : '0';
}

/* Characters written so far: the sign, the integer digits (a leading 0 is not in count), the point, the fraction. */
static uint32_t chars_used(const g4_schema_frame *f) {
    return !!(f->scalar & G4_NUM_NEG) + (f->scalar & G4_NUM_ZERO ? 1 : f->count) + !!(f->scalar & G4_NUM_POINT) + f->pos;
}

/* Whether digits from `from` that follow the low end's up to j - 1 and put the low end's digit j plus one at j stay
 * at or below the high end's digits there (the number so far equals the high end's leading digits). */
static int bump_fits(const g4_number_range *r, uint32_t from, uint32_t j) {
    for (uint32_t k = from; k <= j; k++) {
        const int d = digit_at(&r->lo, k) + (k == j), h = digit_at(&r->hi, k);
        if (d != h) return d < h;
    }
    return 1;
}

/* How many more characters, at most, end the number within its range from here (given that reachable's checks of
 * lengths hold): none once it is at or above the low end; else the digits that overtake the low end at one of its
 * digits below 9 (the first that keeps to the high end), or the low end's remaining digits as they are. */
static uint32_t fewest_more(const g4_number_range *r, const g4_schema_frame *f) {
    const int lo = (int)(f->mask & 3), hi = (int)(f->mask >> 2 & 3);
    const int point = !!(f->scalar & G4_NUM_POINT);
    const uint32_t lo_int = (uint32_t)r->lo.n_int, written = f->count + f->pos;
    const uint32_t lo_end = (uint32_t)r->lo.zeros + r->lo.n_sig > lo_int ? (uint32_t)r->lo.zeros + r->lo.n_sig : lo_int;
    if (f->count > lo_int || (f->count == lo_int && (lo == CMP_GT || lo_end <= written))) return 0;
    if (f->count == lo_int && lo == CMP_LT) return 1; /* one more integer digit (reachable checked the high end) */
    const int tight = !r->open && f->count == (uint32_t)r->hi.n_int && hi == CMP_EQ;
    if (f->count < lo_int && !point) {
        if (lo != CMP_EQ) return lo_int - f->count + (lo == CMP_LT); /* longer than the low end, or as long */
        for (uint32_t j = f->count; j < lo_int; j++) /* the high end is longer or as long: compare as it is */
            if (digit_at(&r->lo, j) < '9' && (r->open || (uint32_t)r->hi.n_int > lo_int || bump_fits(r, f->count, j)))
                return lo_int - f->count;
        return lo_int - f->count + 1 + (lo_end - lo_int); /* the low end itself, with its point and fraction */
    }
    /* the integer part is the low end's: a point (and a 0 before it) if not written yet, then fraction digits */
    const uint32_t lead = (uint32_t)!point + (!point && !f->count && !(f->scalar & G4_NUM_ZERO));
    for (uint32_t j = written; j < lo_end; j++)
        if (digit_at(&r->lo, j) < '9' && (!tight || bump_fits(r, written, j))) return lead + (j - written + 1);
    return lead + (lo_end - written);
}

int g4_number_bounds_make(double lo, double hi, g4_number_bounds *b) {
    int any = 0;
    for (int neg = 0; neg < 2; neg++) {
        const double from = neg ? fmax(0, -hi) : fmax(0, lo), to = neg ? -lo : hi;
        g4_number_range *r = &b->sign[neg];
        *r = (g4_number_range){.ok = from <= to, .open = isinf(to)};
        if (!r->ok) continue;
        r->lo = decimal_of(from);
        if (!r->open) r->hi = decimal_of(to);
        const g4_schema_frame none = {.scalar = (uint8_t)(G4_NUM_ON | (neg ? G4_NUM_NEG : 0))};
        r->ok = chars_used(&none) + fewest_more(r, &none) <= G4_JSON_MAX_NUMBER; /* else none can be written */
        any |= r->ok;
    }
    return any;
}

static uint64_t compare_digit(uint64_t cmp, const g4_decimal *x, uint32_t i, int d) {
    if (cmp != CMP_EQ) return cmp;
    const int xd = digit_at(x, i);
    return d < xd ? CMP_LT : d > xd ? CMP_GT : CMP_EQ;
}

/* A number of `len` integer digits beginning with the prefix (compared `cmp` with the end's leading digits). */
static int under_hi(const g4_number_range *r, uint32_t len, int cmp) {
    return r->open || len < (uint32_t)r->hi.n_int || (len == (uint32_t)r->hi.n_int && cmp != CMP_GT);
}

static int over_lo(const g4_number_range *r, uint32_t len, int cmp) {
    return len > (uint32_t)r->lo.n_int || (len == (uint32_t)r->lo.n_int && cmp != CMP_LT);
}

static const g4_number_range *range_of(const g4_number_bounds *b, const g4_schema_frame *f) {
    return &b->sign[f->scalar & G4_NUM_NEG ? 1 : 0];
}

/* Whether the number begun can still end within its range, within JSON mode's length for a number. */
static int reachable(const g4_number_range *r, const g4_schema_frame *f) {
    if (!r->ok || chars_used(f) + fewest_more(r, f) > G4_JSON_MAX_NUMBER) return 0;
    const int lo = (int)(f->mask & 3), hi = (int)(f->mask >> 2 & 3);
    if (!(f->scalar & G4_NUM_DIGIT)) return 1; /* only the sign so far */
    if (f->scalar & G4_NUM_POINT) return over_lo(r, f->count, lo) && under_hi(r, f->count, hi);
    if (f->scalar & G4_NUM_ZERO) return r->lo.n_int == 0; /* 0 or 0.x reach a low end below 1 (an integer's: 0) */
    uint32_t len = f->count; /* the fewest integer digits that reach the low end */
    if (!over_lo(r, len, lo)) {
        const uint32_t lo_len = (uint32_t)r->lo.n_int;
        len = f->count < lo_len ? (lo != CMP_LT ? lo_len : lo_len + 1) : f->count + 1;
    }
    return under_hi(r, len, hi);
}

int g4_number_within(const g4_number_bounds *b, const g4_schema_frame *f) {
    const g4_number_range *r = range_of(b, f);
    const int lo = (int)(f->mask & 3), hi = (int)(f->mask >> 2 & 3);
    const uint32_t written = f->count + f->pos; /* the low end may have nonzero digits beyond those written */
    const int at_lo = f->count > (uint32_t)r->lo.n_int ||
                      (f->count == (uint32_t)r->lo.n_int && (lo == CMP_GT || (lo == CMP_EQ && (uint32_t)r->lo.zeros + r->lo.n_sig <= written)));
    return at_lo && under_hi(r, f->count, hi);
}

int g4_number_byte(const g4_number_bounds *b, g4_schema_frame *f, unsigned char c) {
    const g4_number_range *r = range_of(b, f);
    if (c == 'e' || c == 'E') return -1; /* exponents are not followed here */
    if (c == '.') f->scalar |= G4_NUM_POINT;
    else if (c >= '0' && c <= '9') {
        uint32_t at; /* the digit's place among the end's digits */
        if (f->scalar & G4_NUM_POINT) at = f->count + f->pos, f->pos += f->pos < UINT16_MAX;
        else if (!(f->scalar & G4_NUM_DIGIT) && c == '0') at = UINT32_MAX, f->scalar |= G4_NUM_ZERO;
        else at = f->count, f->count += f->count < UINT32_MAX - UINT16_MAX;
        f->scalar |= G4_NUM_DIGIT;
        if (at != UINT32_MAX) f->mask = compare_digit(f->mask & 3, &r->lo, at, c) | compare_digit(f->mask >> 2 & 3, &r->hi, at, c) << 2;
    }
    return reachable(r, f) ? 0 : -1;
}

int g4_number_begin(const g4_number_bounds *b, g4_schema_frame *f, unsigned char c) {
    f->scalar = (uint8_t)(G4_NUM_ON | (c == '-' ? G4_NUM_NEG : 0));
    return c == '-' ? (reachable(range_of(b, f), f) ? 0 : -1) : g4_number_byte(b, f, c);
}
