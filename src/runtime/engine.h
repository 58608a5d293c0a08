/* engine.h — what stands behind the public handles: the shared model with its scheduler, sessions and requests. */
#ifndef G4_ENGINE_H
#define G4_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/buf.h"
#include "core/error.h"
#include "gemma4c.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "runtime/generate.h"
#include "runtime/media.h"

typedef struct gemma4c_model g4_engine;
enum { G4_HANDOFF_MEDIA = 4 };
typedef struct gemma4c_session g4_session;
typedef struct g4_request g4_request;

/* The model as the API shares it. `mu` guards the request list, every request's events and end, the sessions'
 * `req` links, the counters and refs; everything the scheduler computes with is its own while it runs. */
struct gemma4c_model {
    g4_model *m;
    g4_compute c;         /* the scheduler's: its pool, scratch */
    g4_backend be;        /* the decoder's ops and memory, over c */
    g4_decoder d;         /* rows of a step */
    g4_kv_budget budget;
    int n_batch;
    g4_media_geometry geometry;
    struct g4_vision *vision;        /* bound by the scheduler on first use */
    struct g4_audio_encoder *audio;
    char source[1024];

    pthread_mutex_t mu;
    pthread_cond_t work;  /* the scheduler waits here for requests */
    pthread_t thread;
    int thread_started, stopping;
    int refs;             /* the loader's hold + one per session */
    g4_request *active;   /* submitted and not yet ended, oldest first */
    gemma4c_stats stats;
    /* Media that gemma4c_input_ids decoded, left for the request that submits the same input next (a server asks for
     * a prompt's ids, then submits it): taken, not copied, by the first input that names one; the oldest are freed
     * past G4_HANDOFF_MEDIA. */
    g4_medium *handoff[G4_HANDOFF_MEDIA];
    g4_token_pieces *json_pieces; /* JSON mode's, made by the first request that needs them */
};

enum { G4_REQ_GENERATE = 0, G4_REQ_LOGITS, G4_REQ_ENCODE };
enum { G4_PHASE_MEDIA = 0, G4_PHASE_PREFILL, G4_PHASE_DECODE, G4_PHASE_DONE };

/* One event for gemma4c_next. */
typedef struct g4_event {
    struct g4_event *next;
    int type; /* gemma4c_event_type */
    int32_t id;
    g4_buf piece, text;
    float logprob;
    int n_top;
    gemma4c_top_logprob top[G4_MAX_TOP_LOGPROBS];
} g4_event;

struct g4_request {
    g4_request *next_active;
    g4_session *s;
    int kind, phase;
    g4_ids prompt;              /* every token of the input */
    size_t next;                /* prompt tokens in the cache (reused ones included) */
    uint64_t *keys;             /* [prompt.n] what fills each position (media identity; 0: the id alone) */
    const float **soft;         /* [prompt.n] soft tokens, once the media are encoded */
    g4_medium **media;          /* the input's media, in order (owned by the session's media cache) */
    uint8_t *needed;            /* [n_media] 0: every position it fills is reused, so it need not be encoded */
    size_t n_media;
    double media_seconds;       /* decoding and encoding this request's media took */
    /* generation */
    g4_gen gen;
    g4_gen_params gp;
    char **stops;               /* copies of the stop strings */
    g4_schema *schema;          /* JSON mode's schema, compiled from the options */
    int32_t stop_ids[G4_MAX_STOP_IDS];
    gemma4c_logits_fn on_logits;
    void *logits_user;
    gemma4c_notify_fn notify;
    void *notify_user;
    float *logits;              /* [V] the position being sampled */
    int32_t feed;               /* the token the next decode step feeds */
    g4_gen_token tok;
    float *all_logits;          /* G4_REQ_LOGITS: [prompt.n][V], the caller's */
    /* control and outcome */
    atomic_int cancel;
    g4_event *head, *tail;      /* under mu */
    int ended;                  /* under mu */
    int status;
    char error[512];
    gemma4c_result result;
    double t_submit, t_start, t_prefill, t_first, t_last;
};

struct gemma4c_session {
    g4_engine *e;
    g4_kv_seq seq;
    g4_ids cached;        /* the ids the cache holds, position by position */
    uint64_t *keys;       /* [cached.cap] what filled each position */
    g4_medium **media;    /* media of the last request: reused when the next one brings them again */
    size_t n_media;
    g4_request *req;      /* submitted and not yet collected (under mu) */
    int building;         /* a submit is preparing a request (under mu) */
    pthread_cond_t cv;    /* events and ends (with mu) */
    g4_event *current;    /* the event gemma4c_next handed out last */
    char error[512];
};

/* Starts the scheduler (engine.c). */
int g4_engine_start(g4_engine *e, g4_err *err);
/* Drops one reference; the last one stops the scheduler and frees the model. */
void g4_engine_unref(g4_engine *e);
/* Queues a built request (its session's req is set), waking the scheduler. */
void g4_engine_enqueue(g4_engine *e, g4_request *r);

/* Request building on the caller's thread (session.c): the input's ids and media, the prefix the session reuses. */
int g4_input_tokens(g4_engine *e, const gemma4c_input *in, g4_medium **cache, size_t n_cache, g4_ids *ids,
                    g4_medium ***media, size_t *n_media, int keep_media_input, g4_err *err);
void g4_request_free(g4_request *r);
void g4_media_list_free(g4_medium **media, size_t n, g4_medium **keep, size_t n_keep);
/* A list of decoded media left on the engine for a later input (the list itself is freed), and one taken back by
 * its identity (NULL when none waits). Both lock the engine. */
void g4_engine_leave_media(g4_engine *e, g4_medium **media, size_t n);
/* The tokenizer's token pieces for JSON mode, made on first use and kept while the model lives; NULL on failure. */
const g4_token_pieces *g4_engine_json_pieces(g4_engine *e, g4_err *err);
g4_medium *g4_engine_take_media(g4_engine *e, uint64_t key);

#endif
