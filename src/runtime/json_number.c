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
    d.zeros = (uint8_t)(exp10 < 0 ? -exp10 - 1 : 0); /* a double's exponent is above -330 */
    return d;
}

/* Digit i of the decimal (0: its first integer digit, or its first fraction digit when below 1). */
static int digit_at(const g4_decimal *x, uint32_t i) {
    if (i < x->zeros) return '0';
    i -= x->zeros;
    return i < x->n_sig ? x->sig[i] : '0';
}

int g4_number_bounds_make(double lo, double hi, g4_number_bounds *b) {
    int any = 0;
    for (int neg = 0; neg < 2; neg++) {
        const double from = neg ? fmax(0, -hi) : fmax(0, lo), to = neg ? -lo : hi;
        g4_number_range *r = &b->sign[neg];
        *r = (g4_number_range){.ok = from <= to, .open = isinf(to)};
        if (!r->ok) continue;
        any = 1;
        r->lo = decimal_of(from);
        if (!r->open) r->hi = decimal_of(to);
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

/* Whether the number begun can still end within its range. */
static int reachable(const g4_number_range *r, const g4_schema_frame *f) {
    const int lo = (int)(f->mask & 3), hi = (int)(f->mask >> 2 & 3);
    if (!r->ok) return 0;
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
