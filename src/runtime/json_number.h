/* json_number.h — a number's bounds (minimum, maximum and their exclusive forms) kept as exact decimals, and a
 * number being written checked against them digit by digit, for structured outputs. */
#ifndef G4_JSON_NUMBER_H
#define G4_JSON_NUMBER_H

#include <stdint.h>

#include "runtime/json_schema.h"

/* A magnitude's exact decimal digits: `zeros` zeros after the point, then its significant digits (no trailing
 * zero); the integer part is the first n_int digits (zeros once the significant ones run out). 0 has none. */
typedef struct g4_decimal {
    char sig[18];
    uint8_t n_sig;
    uint16_t zeros; /* up to 323 */
    int16_t n_int;
} g4_decimal;

/* The magnitudes a number of one sign may have, both ends included: [lo, hi], hi unbounded when `open`. */
typedef struct g4_number_range {
    uint8_t ok, open;
    g4_decimal lo, hi;
} g4_number_range;

/* [0]: the numbers written without '-'; [1]: those written with it ("-0" included). */
typedef struct g4_number_bounds {
    g4_number_range sign[2];
} g4_number_bounds;

/* The numbers of [lo, hi] (doubles, both ends included, either may be infinite), each end spelled as the shortest
 * decimal that reads back as that double: what a validator compares with. 0 when no number lies within. */
int g4_number_bounds_make(double lo, double hi, g4_number_bounds *b);

/* A frame's `scalar` bits while a bounded number is written (json_schema.h says which fields hold the rest). */
enum { G4_NUM_ON = 1, G4_NUM_NEG = 2, G4_NUM_DIGIT = 4, G4_NUM_ZERO = 8, G4_NUM_POINT = 16 };

/* The number's first byte ('-' or a digit) or a later one: 0 while some number so written still lies within the
 * bounds, -1 when none can (an exponent included: a bounded number has none). */
int g4_number_begin(const g4_number_bounds *b, g4_schema_frame *f, unsigned char c);
int g4_number_byte(const g4_number_bounds *b, g4_schema_frame *f, unsigned char c);
/* Whether the number as written lies within the bounds. */
int g4_number_within(const g4_number_bounds *b, const g4_schema_frame *f);

#endif
