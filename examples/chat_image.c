/* chat_image.c — a first gemma4c program: ask a Gemma 4 model about an image, stream the answer, show timings.
 *
 *   cc chat_image.c -o chat_image $(pkg-config --cflags --libs gemma4c)
 *   ./chat_image MODEL IMAGE ["What is in this picture?"]
 *
 * MODEL is a Hugging Face model directory, a .gguf file from `gemma4c convert` or a repo id in the local
 * Hugging Face cache (google/gemma-4-E2B-it). */
#include <gemma4c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Called for every generated token, on this thread: print the text that became final with it. */
static int print_token(void *user, const gemma4c_token *token) {
    (void)user;
    fwrite(token->text, 1, token->text_len, stdout);
    fflush(stdout);
    return 0; /* non-zero would stop the generation */
}

/* s as a JSON string literal (malloc'ed): quotes, backslashes and control characters escaped. */
static char *json_string(const char *s) {
    char *out = malloc(strlen(s) * 6 + 3), *p = out;
    if (!out) return NULL;
    *p++ = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') p += sprintf(p, "\\%c", c);
        else if (c < 0x20) p += sprintf(p, "\\u%04x", c);
        else *p++ = (char)c;
    }
    strcpy(p, "\"");
    return out;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL IMAGE [PROMPT]\n", argv[0]);
        return 2;
    }
    char err[512] = "out of memory"; /* each gemma4c call that fails writes its own line here */
    int rc = 1;

    /* 1. The model: weights (memory-mapped), tokenizer, chat template, encoders. Zeroed fields are defaults. */
    gemma4c_model_params params = {0};
    params.model = argv[1];
    gemma4c_model *model = NULL;
    if (gemma4c_model_load(&params, &model, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    /* 2. A session: one conversation with its own KV cache. */
    gemma4c_session *session = NULL;
    char *prompt = json_string(argc > 3 ? argv[3] : "Describe this image."), *messages = NULL;
    if (gemma4c_session_new(model, NULL, &session, err, sizeof err)) goto done;

    /* 3. The request: one user message with an image part and a text part. Each {"type": "image"} part takes
     *    the next entry of `media`, here a file (gemma4c_media can also hold the bytes of one in memory). */
    const char *format = "[{\"role\": \"user\", \"content\": "
                         "[{\"type\": \"image\"}, {\"type\": \"text\", \"text\": %s}]}]";
    if (!prompt || !(messages = malloc(strlen(format) + strlen(prompt)))) goto done;
    sprintf(messages, format, prompt);
    gemma4c_media image = {0};
    image.kind = GEMMA4C_MEDIA_IMAGE;
    image.path = argv[2];
    gemma4c_input input = {0};
    input.messages_json = messages;
    input.media = &image;
    input.n_media = 1;

    /* 4. Generate: zeroed options are greedy decoding until the model ends its turn; here at most 256 tokens. */
    gemma4c_generate_options options = {0};
    options.max_tokens = 256;
    gemma4c_result r;
    if (gemma4c_generate(session, &input, &options, print_token, NULL, &r, err, sizeof err)) goto done;
    printf("\n");

    /* 5. How it went: times are in seconds from the request's submission. */
    const double computed = (double)(r.prompt_tokens - r.cached_tokens);
    fprintf(stderr, "timings: time to first token %.3f s, prefill %.1f tok/s, decode %.1f tok/s, media %.3f s\n",
            r.first_token_seconds, r.prefill_seconds > 0 ? computed / r.prefill_seconds : 0.0,
            r.decode_seconds > 0 ? (double)(r.generated_tokens - 1) / r.decode_seconds : 0.0, r.media_seconds);
    fprintf(stderr, "tokens: %lld prompt (%lld cached, %lld from the image), %lld generated\n",
            (long long)r.prompt_tokens, (long long)r.cached_tokens, (long long)r.media_tokens,
            (long long)r.generated_tokens);
    rc = 0;

done:
    if (rc) fprintf(stderr, "%s\n", err);
    free(messages);
    free(prompt);
    gemma4c_session_free(session);
    gemma4c_model_free(model);
    return rc;
}
