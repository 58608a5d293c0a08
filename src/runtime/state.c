/* state.c — a session's conversation saved to a file and restored: tokens, media identities and the KV cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

/* File layout (little-endian, as the machine writes it; the header's byte-order mark refuses others):
 *   "G4STATE1" | u32 0x01020304 | u64 model fingerprint | i64 tokens | i64 layers
 *   per own-cache layer: i64 kv_heads, head_dim, first position kept
 *   i32 ids[tokens] | u64 keys[tokens]
 *   per layer, per position from its first kept: keys [kv_heads][head_dim] f32, then values likewise
 *   u64 checksum of everything before it. */
static const char MAGIC[8] = {'G', '4', 'S', 'T', 'A', 'T', 'E', '1'};
#define ORDER_MARK 0x01020304u

static int report(const g4_err *e, int rc, char *err, size_t err_len) {
    if (err && err_len) snprintf(err, err_len, "%s", rc ? e->msg : "");
    return rc;
}

static uint64_t mix(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

/* What a state depends on: the cache's shapes, and enough of the weights to tell two checkpoints (or two
 * quantizations) of one shape apart. */
static uint64_t fingerprint(const g4_model *m) {
    const g4_text_config *c = &m->cfg.text;
    uint64_t h = 0xCBF29CE484222325ull;
    int32_t shape[] = {c->vocab_size, c->hidden_size, c->num_layers, c->sliding_window, c->first_kv_shared};
    h = mix(h, shape, sizeof shape);
    for (int l = 0; l < c->num_layers; l++) {
        int32_t ly[] = {c->layer_type[l], c->layer_kv_heads[l], c->layer_head_dim[l], c->kv_donor[l]};
        h = mix(h, ly, sizeof ly);
        h = mix(h, &m->layers[l].layer_scalar, sizeof(float));
        const g4_tensor *q = &m->layers[l].q_proj;
        h = mix(h, q->data, q->nbytes < 256 ? q->nbytes : 256);
    }
    float *row = malloc((size_t)c->hidden_size * sizeof *row);
    if (row) {
        g4_embedding_row(&m->embed, c->vocab_size - 1, row);
        h = mix(h, row, (size_t)c->hidden_size * sizeof *row);
        free(row);
    }
    return mix(h, m->final_norm, (size_t)c->hidden_size * sizeof(float));
}

typedef struct writer {
    FILE *f;
    uint64_t sum;
    int failed;
} writer;

static void put(writer *w, const void *data, size_t n) {
    if (w->failed || !n) return;
    w->sum = mix(w->sum, data, n);
    if (fwrite(data, 1, n, w->f) != n) w->failed = 1;
}

static void put_i64(writer *w, int64_t v) { put(w, &v, sizeof v); }

/* n floats of the backend's memory; row: room for n floats where the backend's memory is not the host's */
static void put_floats(writer *w, g4_backend *be, const float *src, int64_t n, float *row) {
    if (!be->host_memory) be->download(be, row, src, (size_t)n * sizeof(float));
    put(w, be->host_memory ? src : row, (size_t)n * sizeof(float));
}

static int busy_or_missing(const g4_session *s, const char *path, g4_err *err) {
    if (!s || !path) return g4_fail(err, GEMMA4C_ERR_ARG, "missing session or path");
    pthread_mutex_lock(&s->e->mu);
    int busy = s->req || s->building;
    pthread_mutex_unlock(&s->e->mu);
    return busy ? g4_fail(err, GEMMA4C_ERR_BUSY, "the session is running a request") : 0;
}

int gemma4c_session_save(gemma4c_session *s, const char *path, char *err, size_t err_len) {
    g4_err er = {0};
    int rc = busy_or_missing(s, path, &er);
    if (rc) return report(&er, rc, err, err_len);
    const g4_kv_seq *seq = &s->seq;
    const int64_t pos = seq->pos, L = s->e->m->cfg.text.first_kv_shared;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    writer w = {fopen(tmp, "wb"), 0xCBF29CE484222325ull, 0};
    if (!w.f) return report(&er, g4_fail(&er, GEMMA4C_ERR_IO, "%s: cannot create", path), err, err_len);
    const uint32_t order = ORDER_MARK;
    put(&w, MAGIC, sizeof MAGIC);
    put(&w, &order, sizeof order);
    const uint64_t fp = fingerprint(s->e->m);
    put(&w, &fp, sizeof fp);
    put_i64(&w, pos);
    put_i64(&w, L);
    for (int l = 0; l < L; l++) {
        put_i64(&w, seq->layers[l].kv_heads);
        put_i64(&w, seq->layers[l].head_dim);
        put_i64(&w, g4_kv_seq_first_kept(seq, l, pos));
    }
    put(&w, s->cached.v, (size_t)pos * sizeof(int32_t));
    put(&w, s->keys, (size_t)pos * sizeof(uint64_t));
    g4_backend *be = seq->budget->be;
    for (int l = 0; l < L; l++) {
        const g4_kv_pages *k = &seq->layers[l];
        float *row = be->host_memory ? NULL : malloc((size_t)k->head_dim * sizeof(float));
        if (!be->host_memory && !row) w.failed = 1;
        for (int64_t p = g4_kv_seq_first_kept(seq, l, pos); !w.failed && p < pos; p++)
            for (int64_t h = 0; h < k->kv_heads; h++) {
                put_floats(&w, be, g4_kv_key(seq, l, h, p), k->head_dim, row);
                put_floats(&w, be, g4_kv_value(seq, l, h, p), k->head_dim, row);
            }
        free(row);
    }
    const uint64_t sum = w.sum;
    if (!w.failed && fwrite(&sum, sizeof sum, 1, w.f) != 1) w.failed = 1;
    if (fclose(w.f) || w.failed) {
        unlink(tmp);
        return report(&er, g4_fail(&er, GEMMA4C_ERR_IO, "%s: write failed", path), err, err_len);
    }
    if (rename(tmp, path)) {
        unlink(tmp);
        return report(&er, g4_fail(&er, GEMMA4C_ERR_IO, "%s: cannot write", path), err, err_len);
    }
    return 0;
}

typedef struct reader {
    FILE *f;
    uint64_t sum;
    int failed;
} reader;

static void get(reader *r, void *data, size_t n) {
    if (r->failed || !n) return;
    if (fread(data, 1, n, r->f) != n) {
        r->failed = 1;
        return;
    }
    r->sum = mix(r->sum, data, n);
}

static int64_t get_i64(reader *r) {
    int64_t v = 0;
    get(r, &v, sizeof v);
    return v;
}

/* Reads the state into fresh buffers first, so that a bad file changes nothing. */
int gemma4c_session_load(gemma4c_session *s, const char *path, char *err, size_t err_len) {
    g4_err er = {0};
    int rc = busy_or_missing(s, path, &er);
    if (rc) return report(&er, rc, err, err_len);
    reader r = {fopen(path, "rb"), 0xCBF29CE484222325ull, 0};
    if (!r.f) return report(&er, g4_fail(&er, GEMMA4C_ERR_IO, "%s: cannot open", path), err, err_len);
    const g4_model *m = s->e->m;
    const int64_t L = m->cfg.text.first_kv_shared;
    char magic[8];
    uint32_t order = 0;
    uint64_t fp = 0;
    get(&r, magic, sizeof magic);
    get(&r, &order, sizeof order);
    get(&r, &fp, sizeof fp);
    const int64_t pos = get_i64(&r), layers = get_i64(&r);
    int32_t *ids = NULL;
    uint64_t *keys = NULL;
    float **kv = NULL; /* per layer: [positions kept][kv_heads][2][head_dim] */
    if (r.failed || memcmp(magic, MAGIC, sizeof magic) || order != ORDER_MARK)
        rc = g4_fail(&er, GEMMA4C_ERR_FORMAT, "%s: not a gemma4c session state", path);
    else if (fp != fingerprint(m) || layers != L)
        rc = g4_fail(&er, GEMMA4C_ERR_FORMAT, "%s: a state of another model", path);
    else if (pos < 0 || pos > s->seq.n_ctx)
        rc = g4_fail(&er, GEMMA4C_ERR_CONTEXT, "%s: %lld tokens do not fit this session's context of %lld", path,
                     (long long)pos, (long long)s->seq.n_ctx);
    for (int l = 0; !rc && l < L; l++) {
        int64_t heads = get_i64(&r), dim = get_i64(&r), first = get_i64(&r);
        if (r.failed)
            rc = g4_fail(&er, GEMMA4C_ERR_FORMAT, "%s: truncated or corrupt", path);
        else if (heads != s->seq.layers[l].kv_heads || dim != s->seq.layers[l].head_dim ||
                 first != g4_kv_seq_first_kept(&s->seq, l, pos))
            rc = g4_fail(&er, GEMMA4C_ERR_FORMAT, "%s: layer %d of the state does not match the model", path, l);
    }
    if (!rc) { /* the size the header implies, before allocating anything for it */
        int64_t bytes = 8 + 4 + 8 + 8 + 8 + L * 24 + pos * 12 + 8;
        for (int l = 0; l < L; l++)
            bytes += (pos - g4_kv_seq_first_kept(&s->seq, l, pos)) * s->seq.layers[l].kv_heads * 2 *
                     s->seq.layers[l].head_dim * (int64_t)sizeof(float);
        if (fseek(r.f, 0, SEEK_END) || ftell(r.f) != bytes || fseek(r.f, 8 + 4 + 8 + 8 + 8 + L * 24, SEEK_SET))
            rc = g4_fail(&er, GEMMA4C_ERR_FORMAT, "%s: truncated or corrupt", path);
    }
    if (!rc) {
        ids = malloc((size_t)(pos ? pos : 1) * sizeof *ids);
        keys = malloc((size_t)(pos ? pos : 1) * sizeof *keys);
        kv = calloc((size_t)(L ? L : 1), sizeof *kv);
        if (!ids || !keys || !kv) rc = g4_fail(&er, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    if (!rc) {
        get(&r, ids, (size_t)pos * sizeof *ids);
        get(&r, keys, (size_t)pos * sizeof *keys);
        for (int64_t t = 0; t < pos && !r.failed; t++)
            if (ids[t] < 0 || ids[t] >= m->cfg.text.vocab_size) rc = g4_fail(&er, GEMMA4C_ERR_FORMAT, "%s: a token id outside the vocabulary", path);
    }
    for (int l = 0; !rc && l < L; l++) {
        const g4_kv_pages *k = &s->seq.layers[l];
        const size_t n = (size_t)(pos - g4_kv_seq_first_kept(&s->seq, l, pos)) * (size_t)k->kv_heads * 2 * (size_t)k->head_dim;
        if (!(kv[l] = malloc((n ? n : 1) * sizeof(float)))) rc = g4_fail(&er, GEMMA4C_ERR_NOMEM, "out of memory");
        else get(&r, kv[l], n * sizeof(float));
    }
    uint64_t want = r.sum, sum = 0;
    if (!rc && (r.failed || fread(&sum, sizeof sum, 1, r.f) != 1 || sum != want || fgetc(r.f) != EOF))
        rc = g4_fail(&er, GEMMA4C_ERR_FORMAT, "%s: truncated or corrupt", path);
    fclose(r.f);
    /* The file is good: the session takes it. */
    if (!rc && (rc = g4_kv_seq_restore(&s->seq, pos, &er)) && s->seq.pos == 0) s->cached.n = 0; /* emptied on the way */
    if (!rc) {
        s->cached.n = 0;
        uint64_t *grown = NULL;
        if (g4_ids_extend(&s->cached, ids, (size_t)pos) || !(grown = realloc(s->keys, (s->cached.cap ? s->cached.cap : 1) * sizeof *grown))) {
            rc = g4_fail(&er, GEMMA4C_ERR_NOMEM, "out of memory");
            g4_kv_seq_rewind(&s->seq, 0);
            s->cached.n = 0;
        } else {
            s->keys = grown;
            memcpy(s->keys, keys, (size_t)pos * sizeof *keys);
        }
    }
    for (int l = 0; !rc && l < L; l++) {
        const g4_kv_pages *k = &s->seq.layers[l];
        const float *src = kv[l];
        for (int64_t p = g4_kv_seq_first_kept(&s->seq, l, pos); p < pos; p++)
            for (int64_t h = 0; h < k->kv_heads; h++) {
                g4_backend *be = s->seq.budget->be;
                be->upload(be, g4_kv_key(&s->seq, l, h, p), src, (size_t)k->head_dim * sizeof(float));
                be->upload(be, g4_kv_value(&s->seq, l, h, p), src + k->head_dim, (size_t)k->head_dim * sizeof(float));
                src += 2 * k->head_dim;
            }
    }
    free(ids);
    free(keys);
    for (int l = 0; kv && l < L; l++) free(kv[l]);
    free(kv);
    return report(&er, rc, err, err_len);
}
