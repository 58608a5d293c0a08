/* error.c — filling and prefixing error messages. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Keeps a message on one line whatever its arguments held (a role name or a path with a newline in it, say):
 * control characters become escapes ("\n", "\x1b"), as far as the buffer holds. */
static void one_line(char msg[G4_ERR_MSG]) {
    const unsigned char *p = (const unsigned char *)msg;
    while (*p >= 0x20 && *p != 0x7f) p++;
    if (!*p) return;
    char out[G4_ERR_MSG];
    size_t o = 0;
    for (p = (const unsigned char *)msg; *p; p++) {
        char esc[8] = {(char)*p, 0};
        if (*p == '\n') memcpy(esc, "\\n", 3);
        else if (*p == '\r') memcpy(esc, "\\r", 3);
        else if (*p == '\t') memcpy(esc, "\\t", 3);
        else if (*p < 0x20 || *p == 0x7f) snprintf(esc, sizeof esc, "\\x%02x", *p);
        const size_t n = strlen(esc);
        if (o + n >= sizeof out) break;
        memcpy(out + o, esc, n);
        o += n;
    }
    out[o] = '\0';
    memcpy(msg, out, o + 1);
}

int g4_fail(g4_err *err, int code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    one_line(err->msg);
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
    one_line(err->msg);
    return err->code;
}

void g4_err_clear(g4_err *err) {
    if (!err) return;
    err->code = 0;
    err->msg[0] = '\0';
}
