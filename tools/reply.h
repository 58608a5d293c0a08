/* reply.h — a Gemma 4 reply split, as it streams, into reasoning, content and tool calls (OpenAI's fields). */
#ifndef G4_REPLY_H
#define G4_REPLY_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* The model's markers, as the text of a generation with keep_special set shows them. */
#define REPLY_CHANNEL_BEGIN "<|channel>"
#define REPLY_CHANNEL_END "<channel|>"
#define REPLY_CALL_BEGIN "<|tool_call>"
#define REPLY_CALL_END "<tool_call|>"
#define REPLY_QUOTE "<|\"|>"
/* What the model writes after its calls, to wait for their results: generation stops there. */
#define REPLY_AWAIT_RESPONSE "<|tool_response>"

/* Growing text (NUL-terminated when not empty); the server's response bodies use it too. */
typedef struct reply_text {
    char *s;
    size_t len, cap;
} reply_text;
int reply_text_append(reply_text *t, const char *s, size_t n);

typedef enum reply_part { REPLY_CONTENT = 1, REPLY_REASONING, REPLY_TOOL_CALL } reply_part;

/* Receives each piece as soon as it is final: text for content and reasoning (any length, possibly empty never),
 * or one whole tool call: its name and its arguments as a JSON object text. Returns non-zero to stop. */
typedef int (*reply_emit_fn)(void *user, int part, const char *text, size_t len, const char *arguments);

typedef struct reply_parser {
    int tools;        /* tool calls are parsed (else their text is content) */
    int state;        /* private */
    reply_text held;  /* bytes that may be the start of a marker, or a tool call being read */
    int skip_channel_name; /* after <|channel>: the channel's name up to its newline is not reasoning */
    int failed;
} reply_parser;

void reply_init(reply_parser *p, int tools);
/* Feeds the next bytes of the reply's text. Returns 0, or -1 (out of memory, or emit stopped). */
int reply_feed(reply_parser *p, const char *text, size_t len, reply_emit_fn emit, void *user);
/* The reply ended: whatever is held is emitted (an unfinished tool call as content). */
int reply_finish(reply_parser *p, reply_emit_fn emit, void *user);
void reply_free(reply_parser *p);

/* One call's text "call:NAME{key:value,...}" (between the call markers) as a name and a JSON object; NULL when it
 * is not well formed. *name is for free(). */
cJSON *reply_parse_call(const char *text, size_t len, char **name);

#endif
