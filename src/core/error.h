/* error.h — error codes and one-line messages that every library function returns to its caller. */
#ifndef G4_ERROR_H
#define G4_ERROR_H

#include "gemma4c.h"

/* The library never prints or exits: a failing function fills a g4_err and returns its (negative) code.
 * The first failure wins; callers add context with g4_err_prefix as the error travels up. */
#define G4_ERR_MSG 512

typedef struct g4_err {
    int code;
    char msg[G4_ERR_MSG]; /* one line: control characters in what a message quotes are escaped */
} g4_err;

#if defined(__GNUC__)
#define G4_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define G4_PRINTF(a, b)
#endif

int g4_fail(g4_err *err, int code, const char *fmt, ...) G4_PRINTF(3, 4);
/* Prepends "context: " to the message already in err; returns err->code. */
int g4_err_prefix(g4_err *err, const char *fmt, ...) G4_PRINTF(2, 3);
void g4_err_clear(g4_err *err);

#endif
