/* gemma4c.h — the public C API of gemma4c: load a Gemma 4 model, build prompts, generate text. */
#ifndef GEMMA4C_H
#define GEMMA4C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every function that can fail returns 0 or one of these (negative) codes and, where it takes an error
 * buffer, writes one line saying what went wrong. */
enum gemma4c_status {
    GEMMA4C_OK = 0,
    GEMMA4C_ERR_IO = -1,          /* a file could not be opened or read */
    GEMMA4C_ERR_FORMAT = -2,      /* a file is corrupt, truncated or not what it claims to be */
    GEMMA4C_ERR_SHAPE = -3,       /* a tensor's shape disagrees with the config */
    GEMMA4C_ERR_NOMEM = -4,       /* an allocation failed */
    GEMMA4C_ERR_ARG = -5,         /* an argument is invalid (unknown token id, bad option...) */
    GEMMA4C_ERR_UNSUPPORTED = -6, /* valid input this build does not handle */
    GEMMA4C_ERR_CONTEXT = -7,     /* the prompt or generation does not fit the context */
    GEMMA4C_ERR_INTERNAL = -8,
};

#ifdef __cplusplus
}
#endif
#endif
