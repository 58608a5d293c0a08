/* api.c — the public C API's model-level functions: loading, facts, text utilities, files. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "format/convert.h"
#include "format/safetensors.h"
#include "kernels/membw.h"
#include "model/vision.h"
#include "runtime/model_path.h"
#include "synth/synth_model.h"
#include "text/chat.h"

static int report(const g4_err *e, int rc, char *err, size_t err_len) {
    if (err && err_len) snprintf(err, err_len, "%s", rc ? e->msg : "");
    return rc;
}

const char *gemma4c_version(void) { return GEMMA4C_VERSION_STRING; }

const char *gemma4c_status_name(int status) {
    switch (status) {
    case GEMMA4C_OK: return "ok";
    case GEMMA4C_ERR_IO: return "i/o error";
    case GEMMA4C_ERR_FORMAT: return "format error";
    case GEMMA4C_ERR_SHAPE: return "shape mismatch";
    case GEMMA4C_ERR_NOMEM: return "out of memory";
    case GEMMA4C_ERR_ARG: return "invalid argument";
    case GEMMA4C_ERR_UNSUPPORTED: return "unsupported";
    case GEMMA4C_ERR_CONTEXT: return "context exceeded";
    case GEMMA4C_ERR_CANCELLED: return "cancelled";
    case GEMMA4C_ERR_BUSY: return "busy";
    case GEMMA4C_ERR_CAPACITY: return "KV budget exhausted";
    default: return "internal error";
    }
}

void gemma4c_free(void *p) { free(p); }

/* ---- loading ------------------------------------------------------------------------------------------- */

static int open_model(const gemma4c_model_params *p, g4_model **out, g4_err *err) {
    const char *name = p->model;
    if (!name || strncmp(name, "synthetic:", 10) == 0) {
        const char *shape = name ? name + 10 : "small";
        const char *cfg = g4_synth_config_json(shape);
        if (!cfg) return g4_fail(err, GEMMA4C_ERR_ARG, "unknown synthetic shape '%s' (small, e2b, e4b)", shape);
        int rc = g4_model_synthetic(cfg, p->synthetic_quant, p->n_threads, out, err);
        if (!rc) snprintf((*out)->source, sizeof (*out)->source, "synthetic:%s", shape);
        return rc;
    }
    if (p->synthetic_quant) return g4_fail(err, GEMMA4C_ERR_ARG, "synthetic_quant applies to synthetic models only");
    char path[4096];
    int rc = g4_resolve_model_path(name, path, sizeof path, err);
    return rc ? rc : g4_model_load(path, out, err);
}

/* The image preprocessing follows the vision tower's patch geometry. */
static int media_geometry(const g4_model *m, g4_media_geometry *geo, g4_err *err) {
    geo->patch_size = 16, geo->pooling_kernel = 3; /* unused without a vision tower */
    if (!m->cfg.has_vision || !m->cfg.vision_json) return 0;
    g4_vision_config vc;
    int rc = g4_vision_parse_config(m->cfg.vision_json, m->cfg.text.hidden_size, &vc, err);
    if (!rc) geo->patch_size = vc.patch_size, geo->pooling_kernel = vc.pooling_kernel_size;
    return rc;
}

/* The backend the decoder and the encoders run on, as params.device names it. */
static int open_backend(g4_engine *m, const char *device, g4_err *err) {
    if (!device || !strcmp(device, "cpu")) return g4_backend_cpu_init(&m->be, &m->c, err);
    if (!strcmp(device, "cuda")) {
        int rc = g4_backend_cuda_init(&m->be, m->m, err);
        if (rc) return g4_err_prefix(err, "device cuda");
        g4_backend_cuda_set_hooks(&m->be, &m->c); /* the scheduler's safe points are the compute context's */
        return 0;
    }
    return g4_fail(err, GEMMA4C_ERR_ARG, "unknown device '%s' (cpu or cuda)", device);
}

int gemma4c_model_load(const gemma4c_model_params *params, gemma4c_model **out, char *err, size_t err_len) {
    g4_err e = {0};
    if (!out) return report(&e, g4_fail(&e, GEMMA4C_ERR_ARG, "gemma4c_model_load: out is NULL"), err, err_len);
    *out = NULL;
    static const gemma4c_model_params none = {0};
    const gemma4c_model_params *p = params ? params : &none;
    if (p->n_threads < 0 || p->n_threads > 4096 || p->n_batch < 0 || p->n_batch > (1 << 20) || p->kv_budget_bytes < 0)
        return report(&e, g4_fail(&e, GEMMA4C_ERR_ARG, "gemma4c_model_load: n_threads, n_batch or kv_budget_bytes out of range"),
                      err, err_len);
    g4_engine *m = calloc(1, sizeof *m);
    if (!m) return report(&e, g4_fail(&e, GEMMA4C_ERR_NOMEM, "out of memory"), err, err_len);
    int rc = open_model(p, &m->m, &e);
    if (rc) {
        free(m);
        return report(&e, rc, err, err_len);
    }
    snprintf(m->source, sizeof m->source, "%s", m->m->source);
    m->n_batch = p->n_batch ? p->n_batch : GEMMA4C_DEFAULT_BATCH;
    int locks = 0;
    if (!rc) rc = media_geometry(m->m, &m->geometry, &e);
    if (!rc && g4_compute_init(&m->c, p->n_threads, g4_model_max_input_width(m->m)))
        rc = g4_fail(&e, GEMMA4C_ERR_NOMEM, "cannot start worker threads");
    int backend = !rc && !(rc = open_backend(m, p->device, &e));
    if (!rc) rc = g4_decoder_init(&m->d, m->m, &m->be, m->n_batch, &e);
    if (!rc && !(locks = !g4_kv_budget_init(&m->budget, p->kv_budget_bytes, &m->be) && !pthread_mutex_init(&m->mu, NULL) &&
                         !pthread_cond_init(&m->work, NULL)))
        rc = g4_fail(&e, GEMMA4C_ERR_INTERNAL, "cannot create locks");
    m->refs = 1;
    if (!rc) rc = g4_engine_start(m, &e);
    if (rc) {
        if (locks) {
            g4_engine_unref(m);
        } else {
            g4_decoder_free(&m->d);
            if (backend) m->be.destroy(&m->be);
            g4_compute_free(&m->c);
            g4_model_free(m->m);
            free(m);
        }
        return report(&e, rc, err, err_len);
    }
    *out = m;
    return 0;
}

void gemma4c_model_free(gemma4c_model *model) {
    if (model) g4_engine_unref(model);
}

/* ---- facts ------------------------------------------------------------------------------------------------ */

int gemma4c_model_get_info(const gemma4c_model *e, gemma4c_model_info *info) {
    if (!e || !info) return GEMMA4C_ERR_ARG;
    const g4_model *m = e->m;
    const g4_text_config *c = &m->cfg.text;
    memset(info, 0, sizeof *info);
    info->source = e->source;
    info->synthetic = m->synthetic;
    info->byte_level_tokenizer = m->tokenizer_is_byte_level;
    info->vocab_size = c->vocab_size;
    info->hidden_size = c->hidden_size;
    info->n_layers = c->num_layers;
    info->sliding_window = c->sliding_window;
    info->max_context = c->max_position_embeddings;
    info->has_vision = m->cfg.has_vision;
    info->has_audio = m->cfg.has_audio;
    g4_kv_bytes_per_token(m, &info->kv_bytes_per_token, &info->kv_bytes_per_window_token);
    info->weight_bytes_per_token = g4_model_weight_bytes_per_token(m);
    const g4_dtype dt = m->layers[0].q_proj.dtype;
    info->weight_type = g4_dtype_name(dt);
    /* Quantized weights run on the integer kernels, float weights on the float ones. */
    info->kernels = g4_dtype_is_quantized(dt) ? e->c.qops->name : e->c.ops->name;
    info->n_threads = g4_pool_size(e->c.pool);
    info->n_batch = e->n_batch;
    info->kv_budget_bytes = e->budget.limit;
    info->device = e->be.name;
    return 0;
}

int gemma4c_model_stats(const gemma4c_model *e, gemma4c_stats *stats) {
    if (!e || !stats) return GEMMA4C_ERR_ARG;
    g4_engine *m = (g4_engine *)e; /* the lock is the only thing touched */
    pthread_mutex_lock(&m->mu);
    *stats = m->stats;
    pthread_mutex_unlock(&m->mu);
    stats->kv_bytes = g4_kv_budget_used(&m->budget);
    return 0;
}

int gemma4c_special_tokens_get(const gemma4c_model *e, gemma4c_special_tokens *out) {
    if (!e || !out) return GEMMA4C_ERR_ARG;
    const g4_model *m = e->m;
    const g4_model_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    out->bos = m->gen.bos_token_id >= 0 ? m->gen.bos_token_id : c->text.bos_token_id;
    out->eos = c->text.eos_token_id;
    out->pad = c->text.pad_token_id;
    for (int i = 0; i < m->gen.n_eos && out->n_stop < 8; i++) out->stop[out->n_stop++] = m->gen.eos_ids[i];
    out->image = c->image_token_id, out->audio = c->audio_token_id, out->video = c->video_token_id;
    out->image_begin = c->boi_token_id, out->image_end = c->eoi_token_id;
    out->audio_begin = c->boa_token_id, out->audio_end = c->eoa_token_id;
    out->turn_begin = g4_tokenizer_find(m->tok, "<|turn>");
    out->turn_end = g4_tokenizer_find(m->tok, "<turn|>");
    return 0;
}

void gemma4c_sampling_from_model(const gemma4c_model *e, gemma4c_sampling *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!e) return;
    const g4_generation_config *g = &e->m->gen;
    out->temperature = g->do_sample ? (g->temperature > 0 ? (float)g->temperature : 1.0f) : 0.0f;
    out->top_k = g->top_k;
    out->top_p = g->top_p > 0 && g->top_p <= 1 ? (float)g->top_p : 1.0f;
    out->min_p = (float)g->min_p;
    out->repetition_penalty = g->repetition_penalty > 0 ? (float)g->repetition_penalty : 1.0f;
}

/* ---- text ------------------------------------------------------------------------------------------------- */

/* Copies `len` bytes and a NUL into out (up to cap - 1 bytes). */
static void copy_out(const char *src, size_t len, char *out, size_t cap) {
    if (!out || !cap) return;
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(out, src, n);
    out[n] = '\0';
}

int gemma4c_tokenize(const gemma4c_model *e, const char *text, size_t len, int add_bos, int32_t *ids, size_t cap,
                     size_t *n_ids, char *err, size_t err_len) {
    g4_err er = {0};
    if (!e || !text || !n_ids || (!ids && cap))
        return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "gemma4c_tokenize: missing argument"), err, err_len);
    g4_ids out = {0};
    int rc = 0;
    if (add_bos) {
        gemma4c_special_tokens st;
        gemma4c_special_tokens_get(e, &st);
        if (g4_ids_push(&out, st.bos)) rc = g4_fail(&er, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    if (!rc) rc = g4_tokenizer_encode(e->m->tok, text, len, &out, &er);
    if (!rc) {
        *n_ids = out.n;
        if (ids) memcpy(ids, out.v, (out.n < cap ? out.n : cap) * sizeof *ids);
    }
    g4_ids_free(&out);
    return report(&er, rc, err, err_len);
}

static int decode_ids(const gemma4c_model *e, const int32_t *ids, size_t n, int skip_special, char *text, size_t cap,
                      size_t *len, char *err, size_t err_len) {
    g4_err er = {0};
    if (!e || (!ids && n) || !len || (!text && cap))
        return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "missing argument"), err, err_len);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= e->m->cfg.text.vocab_size)
            return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "token id %d is outside the vocabulary (0..%d)", ids[i],
                                       e->m->cfg.text.vocab_size - 1),
                          err, err_len);
    g4_buf b = {0};
    int rc = g4_tokenizer_decode(e->m->tok, ids, n, skip_special, &b, &er);
    if (!rc) {
        *len = b.len;
        copy_out(b.data ? b.data : "", b.len, text, cap);
    }
    g4_buf_free(&b);
    return report(&er, rc, err, err_len);
}

int gemma4c_detokenize(const gemma4c_model *e, const int32_t *ids, size_t n_ids, int skip_special, char *text,
                       size_t cap, size_t *len, char *err, size_t err_len) {
    return decode_ids(e, ids, n_ids, skip_special, text, cap, len, err, err_len);
}

int gemma4c_token_to_piece(const gemma4c_model *e, int32_t id, char *piece, size_t cap, size_t *len, char *err,
                           size_t err_len) {
    g4_err er = {0};
    if (!e || !len || (!piece && cap)) return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "missing argument"), err, err_len);
    g4_buf b = {0};
    int rc = g4_tokenizer_piece(e->m->tok, id, &b, &er);
    if (!rc) {
        *len = b.len;
        copy_out(b.data ? b.data : "", b.len, piece, cap);
    }
    g4_buf_free(&b);
    return report(&er, rc, err, err_len);
}

int gemma4c_render_chat(const gemma4c_model *e, const char *messages_json, const char *tools_json, int enable_thinking,
                        char **out, char *err, size_t err_len) {
    g4_err er = {0};
    if (!e || !messages_json || !out)
        return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "gemma4c_render_chat: missing argument"), err, err_len);
    *out = NULL;
    cJSON *messages = cJSON_Parse(messages_json);
    cJSON *tools = tools_json ? cJSON_Parse(tools_json) : NULL;
    int rc = 0;
    if (!messages) rc = g4_fail(&er, GEMMA4C_ERR_ARG, "messages are not valid JSON");
    else if (tools_json && !tools) rc = g4_fail(&er, GEMMA4C_ERR_ARG, "tools are not valid JSON");
    g4_buf text = {0};
    g4_chat_options copt = {1, enable_thinking, 0, NULL};
    if (!rc) rc = g4_chat_render(messages, tools, &copt, &text, &er);
    if (!rc && !text.data && g4_buf_puts(&text, "")) rc = g4_fail(&er, GEMMA4C_ERR_NOMEM, "out of memory");
    if (!rc) *out = text.data;
    else g4_buf_free(&text);
    cJSON_Delete(messages);
    cJSON_Delete(tools);
    return report(&er, rc, err, err_len);
}

int gemma4c_input_ids(const gemma4c_model *model, const gemma4c_input *input, int32_t **ids, size_t *n_ids, char *err,
                      size_t err_len) {
    g4_err er = {0};
    if (!model || !input || !ids || !n_ids)
        return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "gemma4c_input_ids: missing argument"), err, err_len);
    *ids = NULL;
    *n_ids = 0;
    g4_ids out = {0};
    g4_medium **media = NULL;
    size_t n_media = 0;
    int rc = g4_input_tokens((g4_engine *)model, input, NULL, 0, &out, &media, &n_media, 0, &er);
    g4_engine_leave_media((g4_engine *)model, media, n_media); /* the submission of this input will want them */
    if (!rc && !out.v && g4_ids_push(&out, 0) == 0) out.n = 0; /* an array even for no ids */
    if (!rc) {
        *ids = out.v;
        *n_ids = out.n;
    } else
        g4_ids_free(&out);
    return report(&er, rc, err, err_len);
}

/* ---- files ------------------------------------------------------------------------------------------------ */

int gemma4c_save_tensors(const char *path, const gemma4c_tensor *tensors, size_t n, const char *about, char *err,
                         size_t err_len) {
    g4_err er = {0};
    if (!path || (!tensors && n) || n > 4096)
        return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "gemma4c_save_tensors: bad arguments"), err, err_len);
    g4_tensor *t = calloc(n ? n : 1, sizeof *t);
    if (!t) return report(&er, g4_fail(&er, GEMMA4C_ERR_NOMEM, "out of memory"), err, err_len);
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const gemma4c_tensor *in = &tensors[i];
        static const g4_dtype types[] = {0, G4_DT_F32, G4_DT_I32, G4_DT_U8, G4_DT_BOOL};
        static const size_t sizes[] = {0, 4, 4, 1, 1};
        if (!in->name || in->dtype < GEMMA4C_F32 || in->dtype > GEMMA4C_BOOL || in->ndim < 1 || in->ndim > 4) {
            rc = g4_fail(&er, GEMMA4C_ERR_ARG, "tensor %zu: a name, a known dtype and 1..4 dimensions are needed", i);
            break;
        }
        size_t bytes = sizes[in->dtype];
        t[i] = (g4_tensor){in->name, types[in->dtype], in->ndim, {0}, in->data, 0};
        for (int d = 0; d < in->ndim; d++) {
            if (in->shape[d] < 0 || (in->shape[d] && bytes > SIZE_MAX / (size_t)in->shape[d])) {
                rc = g4_fail(&er, GEMMA4C_ERR_ARG, "tensor %s: bad shape", in->name);
                break;
            }
            t[i].shape[d] = in->shape[d];
            bytes *= (size_t)in->shape[d];
        }
        if (!rc && bytes && !in->data) rc = g4_fail(&er, GEMMA4C_ERR_ARG, "tensor %s has no data", in->name);
        t[i].nbytes = bytes;
    }
    g4_st_meta meta[] = {{"about", about}};
    if (!rc) rc = g4_st_write(path, t, n, meta, about ? 1 : 0, &er);
    free(t);
    return report(&er, rc, err, err_len);
}

int gemma4c_convert(const char *model, const char *out_path, const gemma4c_convert_params *p, char *err,
                    size_t err_len) {
    g4_err er = {0};
    static const gemma4c_convert_params none = {0};
    if (!p) p = &none;
    if (!model || !out_path) return report(&er, g4_fail(&er, GEMMA4C_ERR_ARG, "gemma4c_convert: missing argument"), err, err_len);
    char resolved[4096];
    int rc = g4_resolve_model_path(model, resolved, sizeof resolved, &er);
    g4_convert_options opt = {p->quant,          p->tensor_types,      p->n_tensor_types,    p->n_threads,
                              p->progress,       p->progress_user,     p->calibration_ids,   p->n_calibration_ids,
                              p->calibration_text, p->calibration_text_len, p->no_calibration};
    if (!rc) rc = g4_convert(resolved, out_path, &opt, &er);
    return report(&er, rc, err, err_len);
}

double gemma4c_read_bandwidth(int n_threads, size_t bytes, int passes) {
    if (n_threads < 0 || passes < 1 || !bytes) return 0;
    g4_pool *pool = g4_pool_create(n_threads);
    if (!pool) return 0;
    double gbps = g4_read_bandwidth(pool, bytes, passes);
    g4_pool_destroy(pool);
    return gbps;
}
