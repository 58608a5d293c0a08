/* chat.h — Gemma 4's chat prompt format (the semantics of the checkpoint's chat_template.jinja, in C). */
#ifndef G4_CHAT_H
#define G4_CHAT_H

#include <cjson/cJSON.h>

#include "core/buf.h"
#include "core/error.h"

typedef struct g4_chat_options {
    int add_generation_prompt; /* end with the opening of a model turn */
    int enable_thinking;       /* <|think|> in the system turn */
    int preserve_thinking;     /* keep reasoning on earlier model turns that carry tool calls */
    const char *bos_token;     /* NULL -> "<bos>" */
} g4_chat_options;

/* Renders OpenAI/Hugging Face style messages (a JSON array of {role, content, reasoning?, tool_calls?, ...};
 * content is a string or a list of parts {type: text|image|audio|video}) and optional tool declarations (a JSON
 * array, or NULL) into the prompt text that Google's Gemma 4 template produces. Malformed messages are errors. */
int g4_chat_render(const cJSON *messages, const cJSON *tools, const g4_chat_options *opt, g4_buf *out,
                   g4_err *err);

#endif
