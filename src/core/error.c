/* error.c — filling and prefixing error messages. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int g4_fail(g4_err *err, int code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int g4_err_prefix(g4_err *err, const char *fmt, ...) {
    if (!err) return GEMMA4C_ERR_INTERNAL;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char joined[sizeof prefix + sizeof err->msg + 2];
    snprintf(joined, sizeof joined, "%s: %s", prefix, err->msg);
    snprintf(err->msg, sizeof err->msg, "%s", joined);
    return err->code;
}

void g4_err_clear(g4_err *err) {
    if (!err) return;
    err->code = 0;
    err->msg[0] = '\0';
}
