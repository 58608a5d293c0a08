/* gguf.c — GGUF v3 reader (validates every byte of a possibly hostile file before use) and streaming writer. */
#include "format/gguf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mapfile.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_WRITE_VERSION 3u
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_DIMS 4
/* The spec caps keys at 65535 bytes; tensor names get the same cap (ggml's own 64-byte limit is a property of
 * its in-memory struct, and Hugging Face names of the audio tower are longer). */
#define GGUF_MAX_NAME 65535u
/* Nested arrays are legal but unused in practice; the cap keeps recursion on hostile input shallow. */
#define GGUF_MAX_DEPTH 8
/* Smallest encodings, used to refuse claimed counts the remaining bytes cannot hold before looping over them. */
#define GGUF_MIN_KV_BYTES 14u     /* key length 8 + 1 byte of key + type 4 + 1-byte value */
#define GGUF_MIN_TENSOR_BYTES 33u /* name length 8 + 1 + n_dims 4 + one dim 8 + type 4 + offset 8 */
#define GGUF_MIN_STRING_BYTES 8u
#define GGUF_MIN_ARRAY_BYTES 12u

/* ---- tensor types ----------------------------------------------------------------------------------------- */

/* ggml's types, indexed by id; rows left zero are ids ggml removed (4, 5, 31-33, 36-38). */
static const g4_gguf_type_info GGML_TYPES[] = {
    [G4_GGUF_TYPE_F32] = {"F32", 1, 4},
    [G4_GGUF_TYPE_F16] = {"F16", 1, 2},
    [G4_GGUF_TYPE_Q4_0] = {"Q4_0", 32, 18},
    [G4_GGUF_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [G4_GGUF_TYPE_Q5_0] = {"Q5_0", 32, 22},
    [G4_GGUF_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [G4_GGUF_TYPE_Q8_0] = {"Q8_0", 32, 34},
    [G4_GGUF_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [G4_GGUF_TYPE_Q2_K] = {"Q2_K", 256, 84},
    [G4_GGUF_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [G4_GGUF_TYPE_Q4_K] = {"Q4_K", 256, 144},
    [G4_GGUF_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [G4_GGUF_TYPE_Q6_K] = {"Q6_K", 256, 210},
    [G4_GGUF_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [G4_GGUF_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [G4_GGUF_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [G4_GGUF_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [G4_GGUF_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [G4_GGUF_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [G4_GGUF_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [G4_GGUF_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [G4_GGUF_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [G4_GGUF_TYPE_I8] = {"I8", 1, 1},
    [G4_GGUF_TYPE_I16] = {"I16", 1, 2},
    [G4_GGUF_TYPE_I32] = {"I32", 1, 4},
    [G4_GGUF_TYPE_I64] = {"I64", 1, 8},
    [G4_GGUF_TYPE_F64] = {"F64", 1, 8},
    [G4_GGUF_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [G4_GGUF_TYPE_BF16] = {"BF16", 1, 2},
    [G4_GGUF_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [G4_GGUF_TYPE_TQ2_0] = {"TQ2_0", 256, 66},
    [G4_GGUF_TYPE_MXFP4] = {"MXFP4", 32, 17},
};

typedef struct own_type {
    uint32_t id;
    g4_gguf_type_info info;
} own_type;

#define OWN_TYPE_ROW(name, id, be, bb) {(id), {#name, (be), (bb)}},
static const own_type OWN_TYPES[] = {G4_GGUF_OWN_TYPES(OWN_TYPE_ROW)};
#undef OWN_TYPE_ROW

const g4_gguf_type_info *g4_gguf_type_info_get(uint32_t type) {
    if (type < sizeof GGML_TYPES / sizeof GGML_TYPES[0])
        return GGML_TYPES[type].name ? &GGML_TYPES[type] : NULL;
    for (size_t i = 0; i < sizeof OWN_TYPES / sizeof OWN_TYPES[0]; i++)
        if (OWN_TYPES[i].id == type) return &OWN_TYPES[i].info;
    return NULL;
}

/* a * b, failing when the product passes INT64_MAX (sizes must fit ggml's int64 arithmetic). */
static int mul_i63(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > (uint64_t)INT64_MAX / a) return -1;
    *out = a * b;
    return 0;
}

int g4_gguf_tensor_bytes(uint32_t type, int n_dims, const int64_t *ne, uint64_t *out) {
    const g4_gguf_type_info *ti = g4_gguf_type_info_get(type);
    if (!ti || n_dims < 1 || n_dims > GGUF_MAX_DIMS) return -1;
    /* The element count must fit int64 even when a zero dim makes the tensor empty, so that consumers multiplying
     * the dims in any order never overflow. */
    int empty = 0;
    uint64_t numel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0) return -1;
        if (ne[d] == 0)
            empty = 1;
        else if (mul_i63(numel, (uint64_t)ne[d], &numel) != 0)
            return -1;
    }
    if (ne[0] % ti->block_elems != 0) return -1;
    if (empty) {
        *out = 0;
        return 0;
    }
    uint64_t bytes;
    if (mul_i63((uint64_t)ne[0] / (uint64_t)ti->block_elems, (uint64_t)ti->block_bytes, &bytes) != 0) return -1;
    for (int d = 1; d < n_dims; d++)
        if (mul_i63(bytes, (uint64_t)ne[d], &bytes) != 0) return -1;
    *out = bytes;
    return 0;
}

/* ---- little-endian helpers --------------------------------------------------------------------------------- */

static uint64_t load_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void store_le(unsigned char *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++, v >>= 8) p[i] = (unsigned char)(v & 0xff);
}

/* Encoded size of a fixed-size value type; 0 for strings, arrays and unknown types. */
static size_t fixed_size(uint32_t type) {
    switch (type) {
    case G4_GGUF_VALUE_U8:
    case G4_GGUF_VALUE_I8:
    case G4_GGUF_VALUE_BOOL: return 1;
    case G4_GGUF_VALUE_U16:
    case G4_GGUF_VALUE_I16: return 2;
    case G4_GGUF_VALUE_U32:
    case G4_GGUF_VALUE_I32:
    case G4_GGUF_VALUE_F32: return 4;
    case G4_GGUF_VALUE_U64:
    case G4_GGUF_VALUE_I64:
    case G4_GGUF_VALUE_F64: return 8;
    default: return 0;
    }
}

static int known_value_type(uint32_t type) {
    return type <= G4_GGUF_VALUE_F64;
}

static int is_signed_int(uint32_t t) {
    return t == G4_GGUF_VALUE_I8 || t == G4_GGUF_VALUE_I16 || t == G4_GGUF_VALUE_I32 || t == G4_GGUF_VALUE_I64;
}

static int is_unsigned_int(uint32_t t) {
    return t == G4_GGUF_VALUE_U8 || t == G4_GGUF_VALUE_U16 || t == G4_GGUF_VALUE_U32 || t == G4_GGUF_VALUE_U64;
}

const char *g4_gguf_value_type_name(uint32_t type) {
    static const char *const names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    return known_value_type(type) ? names[type] : "?";
}

/* Copies up to 64 bytes of an untrusted name for an error message, keeping the message on one printable line. */
static const char *shown(const unsigned char *s, size_t n, char out[80]) {
    size_t k = 0;
    for (; k < n && k < 64; k++) out[k] = (s[k] < 0x20 || s[k] == 0x7f) ? '?' : (char)s[k];
    if (k < n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

/* shown() for a NUL-terminated name. */
static const char *safe(const char *s, char out[80]) {
    if (!s) return "(null)";
    return shown((const unsigned char *)s, strlen(s), out);
}

/* ---- values ------------------------------------------------------------------------------------------------- */

/* A cursor over bytes; `ctx` names what is being read (the key or tensor) for error messages. */
typedef struct parser {
    const unsigned char *data;
    size_t size;
    size_t pos;
    const char *label;
    g4_err *err;
    char ctx[112];
} parser;

static int pfail(parser *p, int code, const char *fmt, ...) G4_PRINTF(3, 4);
static int pfail(parser *p, int code, const char *fmt, ...) {
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return g4_fail(p->err, code, "%s: %s: %s", p->label, p->ctx, msg);
}

static int need(parser *p, uint64_t n, const char *what) {
    if (n > p->size - p->pos)
        return pfail(p, GEMMA4C_ERR_FORMAT, "truncated: %s needs %llu bytes at offset %zu, only %zu left", what,
                     (unsigned long long)n, p->pos, p->size - p->pos);
    return 0;
}

static int read_u32(parser *p, uint32_t *v, const char *what) {
    int rc = need(p, 4, what);
    if (rc != 0) return rc;
    *v = (uint32_t)load_le(p->data + p->pos, 4);
    p->pos += 4;
    return 0;
}

static int read_u64(parser *p, uint64_t *v, const char *what) {
    int rc = need(p, 8, what);
    if (rc != 0) return rc;
    *v = load_le(p->data + p->pos, 8);
    p->pos += 8;
    return 0;
}

/* A GGUF string: u64 length then bytes. */
static int read_string(parser *p, const unsigned char **s, uint64_t *len, const char *what) {
    int rc = read_u64(p, len, what);
    if (rc != 0) return rc;
    if ((rc = need(p, *len, what)) != 0) return rc;
    *s = p->data + p->pos;
    p->pos += (size_t)*len;
    return 0;
}

static int parse_value(parser *p, uint32_t type, int depth, g4_gguf_value *out, uint64_t **index);

/* The elements of an array whose header (type, count) has been read; `index`, when given, receives a malloc'd
 * table of each element's offset from the first element (only for strings and arrays). */
static int parse_array_elems(parser *p, uint32_t et, uint64_t count, int depth, uint64_t **index) {
    size_t start = p->pos, left = p->size - p->pos;
    size_t es = fixed_size(et);
    if (es) {
        if (count > left / es)
            return pfail(p, GEMMA4C_ERR_FORMAT, "array of %llu %s values runs past the end of the file",
                         (unsigned long long)count, g4_gguf_value_type_name(et));
        if (et == G4_GGUF_VALUE_BOOL)
            for (size_t i = 0; i < (size_t)count; i++)
                if (p->data[start + i] > 1)
                    return pfail(p, GEMMA4C_ERR_FORMAT, "bool element %zu is %u (must be 0 or 1)", i,
                                 p->data[start + i]);
        p->pos += (size_t)count * es;
        return 0;
    }
    uint64_t min = et == G4_GGUF_VALUE_STRING ? GGUF_MIN_STRING_BYTES : GGUF_MIN_ARRAY_BYTES;
    if (count > left / min)
        return pfail(p, GEMMA4C_ERR_FORMAT, "array of %llu %ss runs past the end of the file",
                     (unsigned long long)count, g4_gguf_value_type_name(et));
    uint64_t *offs = NULL;
    if (index) {
        /* Bounded by the file: each element takes at least 8 bytes of it. */
        offs = malloc(count ? (size_t)count * sizeof *offs : 1);
        if (!offs) return pfail(p, GEMMA4C_ERR_NOMEM, "out of memory indexing %llu elements", (unsigned long long)count);
        *index = offs;
    }
    for (uint64_t i = 0; i < count; i++) {
        if (offs) offs[i] = p->pos - start;
        g4_gguf_value elem;
        int rc = parse_value(p, et, depth + 1, &elem, NULL);
        if (rc != 0) return rc;
    }
    return 0;
}

static int parse_value(parser *p, uint32_t type, int depth, g4_gguf_value *out, uint64_t **index) {
    memset(out, 0, sizeof *out);
    out->type = type;
    size_t es = fixed_size(type);
    int rc;
    if (es) {
        if ((rc = need(p, es, g4_gguf_value_type_name(type))) != 0) return rc;
        if (type == G4_GGUF_VALUE_BOOL && p->data[p->pos] > 1)
            return pfail(p, GEMMA4C_ERR_FORMAT, "bool value is %u (must be 0 or 1)", p->data[p->pos]);
        out->data = p->data + p->pos;
        out->size = es;
        p->pos += es;
        return 0;
    }
    if (type == G4_GGUF_VALUE_STRING) {
        const unsigned char *s;
        uint64_t len;
        if ((rc = read_string(p, &s, &len, "string")) != 0) return rc;
        out->data = s;
        out->size = (size_t)len;
        out->count = len;
        return 0;
    }
    if (type != G4_GGUF_VALUE_ARRAY) return pfail(p, GEMMA4C_ERR_FORMAT, "unknown value type %u", type);
    if (depth >= GGUF_MAX_DEPTH)
        return pfail(p, GEMMA4C_ERR_FORMAT, "arrays nested deeper than %d levels", GGUF_MAX_DEPTH);
    uint32_t et;
    uint64_t count;
    if ((rc = read_u32(p, &et, "array element type")) != 0) return rc;
    if (!known_value_type(et)) return pfail(p, GEMMA4C_ERR_FORMAT, "unknown array element type %u", et);
    if ((rc = read_u64(p, &count, "array length")) != 0) return rc;
    out->elem_type = et;
    out->count = count;
    out->data = p->data + p->pos;
    size_t start = p->pos;
    if ((rc = parse_array_elems(p, et, count, depth, index)) != 0) return rc;
    out->size = p->pos - start;
    return 0;
}

int g4_gguf_value_elem(const g4_gguf_value *v, uint64_t i, g4_gguf_value *out) {
    if (!v || v->type != G4_GGUF_VALUE_ARRAY || i >= v->count) return -1;
    size_t es = fixed_size(v->elem_type);
    if (es) {
        memset(out, 0, sizeof *out);
        out->type = v->elem_type;
        out->data = v->data + (size_t)i * es;
        out->size = es;
        return 0;
    }
    /* The bytes were validated when the file was opened, so re-parsing them cannot fail. */
    parser p = {.data = v->data, .size = v->size, .label = "", .err = NULL};
    if (v->elem_offset) {
        p.pos = (size_t)v->elem_offset[i];
    } else {
        g4_gguf_value skip;
        for (uint64_t k = 0; k < i; k++)
            if (parse_value(&p, v->elem_type, 1, &skip, NULL) != 0) return -1;
    }
    return parse_value(&p, v->elem_type, 1, out, NULL) == 0 ? 0 : -1;
}

int g4_gguf_value_i64(const g4_gguf_value *v, int64_t *out) {
    if (!v) return -1;
    size_t n = fixed_size(v->type);
    uint64_t raw = n ? load_le(v->data, (int)n) : 0;
    if (is_unsigned_int(v->type)) {
        if (raw > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)raw;
        return 0;
    }
    if (!is_signed_int(v->type)) return -1;
    int bits = (int)n * 8;
    if (bits < 64 && (raw >> (bits - 1)) & 1u) raw |= ~(uint64_t)0 << bits; /* sign-extend */
    int64_t s;
    memcpy(&s, &raw, sizeof s);
    *out = s;
    return 0;
}

int g4_gguf_value_u64(const g4_gguf_value *v, uint64_t *out) {
    if (!v) return -1;
    if (v->type == G4_GGUF_VALUE_U64) {
        *out = load_le(v->data, 8);
        return 0;
    }
    int64_t s;
    if (g4_gguf_value_i64(v, &s) != 0 || s < 0) return -1;
    *out = (uint64_t)s;
    return 0;
}

int g4_gguf_value_f64(const g4_gguf_value *v, double *out) {
    if (!v) return -1;
    if (v->type == G4_GGUF_VALUE_F32) {
        uint32_t bits = (uint32_t)load_le(v->data, 4);
        float f;
        memcpy(&f, &bits, sizeof f);
        *out = f;
        return 0;
    }
    if (v->type == G4_GGUF_VALUE_F64) {
        uint64_t bits = load_le(v->data, 8);
        memcpy(out, &bits, sizeof *out);
        return 0;
    }
    if (v->type == G4_GGUF_VALUE_U64) {
        *out = (double)load_le(v->data, 8);
        return 0;
    }
    int64_t s;
    if (g4_gguf_value_i64(v, &s) != 0) return -1;
    *out = (double)s;
    return 0;
}

int g4_gguf_value_bool(const g4_gguf_value *v, int *out) {
    if (!v || v->type != G4_GGUF_VALUE_BOOL) return -1;
    *out = v->data[0] != 0;
    return 0;
}

/* ---- reader --------------------------------------------------------------------------------------------------- */

struct g4_gguf {
    g4_mapfile map; /* zero when the image came from g4_gguf_parse */
    const unsigned char *data;
    size_t size;
    char *label;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    g4_gguf_kv *kvs;
    size_t n_kv, cap_kv;
    const g4_gguf_kv **kv_sorted;
    g4_gguf_tensor *tensors;
    size_t n_tensors, cap_tensors;
    const g4_gguf_tensor **tensor_sorted;
};

void g4_gguf_close(g4_gguf *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_kv; i++) {
        free((char *)f->kvs[i].key);
        free((char *)f->kvs[i].value.str);
        free((uint64_t *)f->kvs[i].value.elem_offset);
    }
    free(f->kvs);
    free(f->kv_sorted);
    for (size_t i = 0; i < f->n_tensors; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    free(f->tensor_sorted);
    free(f->label);
    g4_mapfile_close(&f->map);
    free(f);
}

static char *dup_bytes(const void *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Grows an array by doubling, so memory follows the entries actually parsed, never a count the file claims. */
static int grow(void **arr, size_t *cap, size_t need_n, size_t elem) {
    if (need_n <= *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    while (nc < need_n) nc *= 2;
    void *p = realloc(*arr, nc * elem);
    if (!p) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

/* Reads a key or tensor name: non-empty, at most GGUF_MAX_NAME bytes, no NUL (names are used as C strings).
 * Then names it in the error context as `kind "name"`. */
static int read_name(parser *p, char **out, const char *what, const char *kind) {
    const unsigned char *s;
    uint64_t len;
    int rc = read_string(p, &s, &len, what);
    if (rc != 0) return rc;
    char shown_buf[80];
    if (len == 0) return pfail(p, GEMMA4C_ERR_FORMAT, "empty %s", what);
    if (len > GGUF_MAX_NAME)
        return pfail(p, GEMMA4C_ERR_FORMAT, "%s of %llu bytes (limit %u)", what, (unsigned long long)len, GGUF_MAX_NAME);
    if (memchr(s, '\0', (size_t)len))
        return pfail(p, GEMMA4C_ERR_FORMAT, "%s \"%s\" contains a NUL byte", what, shown(s, (size_t)len, shown_buf));
    *out = dup_bytes(s, (size_t)len);
    if (!*out) return pfail(p, GEMMA4C_ERR_NOMEM, "out of memory");
    snprintf(p->ctx, sizeof p->ctx, "%s \"%s\"", kind, shown(s, (size_t)len, shown_buf));
    return 0;
}

static int parse_kv(parser *p, g4_gguf *f) {
    snprintf(p->ctx, sizeof p->ctx, "metadata entry %zu", f->n_kv);
    if (grow((void **)&f->kvs, &f->cap_kv, f->n_kv + 1, sizeof *f->kvs) != 0)
        return pfail(p, GEMMA4C_ERR_NOMEM, "out of memory");
    /* Counted before it is filled so that g4_gguf_close frees whatever a failure leaves in it. */
    g4_gguf_kv *kv = &f->kvs[f->n_kv++];
    memset(kv, 0, sizeof *kv);
    char *key = NULL;
    int rc = read_name(p, &key, "key", "key");
    if (rc != 0) return rc;
    kv->key = key;
    uint32_t type;
    if ((rc = read_u32(p, &type, "value type")) != 0) return rc;
    if (!known_value_type(type)) return pfail(p, GEMMA4C_ERR_FORMAT, "unknown value type %u", type);
    uint64_t *index = NULL;
    rc = parse_value(p, type, 0, &kv->value, &index);
    kv->value.elem_offset = index;
    if (rc != 0) return rc;
    if (type == G4_GGUF_VALUE_STRING) {
        kv->value.str = dup_bytes(kv->value.data, kv->value.size);
        if (!kv->value.str) return pfail(p, GEMMA4C_ERR_NOMEM, "out of memory");
    }
    return 0;
}

static int parse_tensor_info(parser *p, g4_gguf *f) {
    snprintf(p->ctx, sizeof p->ctx, "tensor info %zu", f->n_tensors);
    if (grow((void **)&f->tensors, &f->cap_tensors, f->n_tensors + 1, sizeof *f->tensors) != 0)
        return pfail(p, GEMMA4C_ERR_NOMEM, "out of memory");
    g4_gguf_tensor *t = &f->tensors[f->n_tensors++];
    memset(t, 0, sizeof *t);
    char *name = NULL;
    int rc = read_name(p, &name, "tensor name", "tensor");
    if (rc != 0) return rc;
    t->name = name;
    uint32_t n_dims;
    if ((rc = read_u32(p, &n_dims, "n_dims")) != 0) return rc;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return pfail(p, GEMMA4C_ERR_FORMAT, "%u dimensions (1 to %d supported)", n_dims, GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (int d = 0; d < t->n_dims; d++) {
        uint64_t v;
        if ((rc = read_u64(p, &v, "dimension")) != 0) return rc;
        if (v > (uint64_t)INT64_MAX)
            return pfail(p, GEMMA4C_ERR_FORMAT, "dimension %d is %llu (too large)", d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
    }
    if ((rc = read_u32(p, &t->type, "type")) != 0) return rc;
    const g4_gguf_type_info *ti = g4_gguf_type_info_get(t->type);
    if (!ti) return pfail(p, GEMMA4C_ERR_FORMAT, "unknown tensor type %u", t->type);
    if ((rc = read_u64(p, &t->offset, "offset")) != 0) return rc;
    if (t->ne[0] % ti->block_elems != 0)
        return pfail(p, GEMMA4C_ERR_FORMAT, "row of %lld elements is not a whole number of %s blocks of %d",
                     (long long)t->ne[0], ti->name, ti->block_elems);
    uint64_t nbytes;
    if (g4_gguf_tensor_bytes(t->type, t->n_dims, t->ne, &nbytes) != 0)
        return pfail(p, GEMMA4C_ERR_FORMAT, "size of [%lld, %lld, %lld, %lld] %s overflows", (long long)t->ne[0],
                     (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], ti->name);
    /* Stored provisionally; checked against the data section once its start is known. */
    t->nbytes = nbytes > SIZE_MAX ? SIZE_MAX : (size_t)nbytes;
    return 0;
}

static int parse_header(parser *p, g4_gguf *f, uint64_t *n_tensors, uint64_t *n_kv) {
    snprintf(p->ctx, sizeof p->ctx, "header");
    if (p->size < 4 || memcmp(p->data, GGUF_MAGIC, 4) != 0)
        return pfail(p, GEMMA4C_ERR_FORMAT, "not a GGUF file (bad magic)");
    p->pos = 4;
    int rc;
    if ((rc = read_u32(p, &f->version, "version")) != 0) return rc;
    uint32_t swapped = (uint32_t)load_le(p->data + 4, 4);
    swapped = (swapped >> 24) | ((swapped >> 8) & 0xff00u) | ((swapped << 8) & 0xff0000u) | (swapped << 24);
    if ((f->version & 0xffffu) == 0 && (swapped == 2 || swapped == 3))
        return pfail(p, GEMMA4C_ERR_UNSUPPORTED, "big-endian GGUF files are not supported");
    if (f->version == 1)
        return pfail(p, GEMMA4C_ERR_UNSUPPORTED, "GGUF version 1 is obsolete (versions 2 and 3 are supported)");
    if (f->version != 2 && f->version != 3)
        return pfail(p, GEMMA4C_ERR_UNSUPPORTED, "GGUF version %u (versions 2 and 3 are supported)", f->version);
    if ((rc = read_u64(p, n_tensors, "tensor count")) != 0) return rc;
    if ((rc = read_u64(p, n_kv, "metadata count")) != 0) return rc;
    size_t left = p->size - p->pos;
    if (*n_kv > left / GGUF_MIN_KV_BYTES)
        return pfail(p, GEMMA4C_ERR_FORMAT, "%llu metadata entries cannot fit in the %zu bytes left",
                     (unsigned long long)*n_kv, left);
    if (*n_tensors > left / GGUF_MIN_TENSOR_BYTES)
        return pfail(p, GEMMA4C_ERR_FORMAT, "%llu tensor infos cannot fit in the %zu bytes left",
                     (unsigned long long)*n_tensors, left);
    return 0;
}

static int cmp_kv_key(const void *a, const void *b) {
    return strcmp((*(const g4_gguf_kv *const *)a)->key, (*(const g4_gguf_kv *const *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const g4_gguf_tensor *const *)a)->name, (*(const g4_gguf_tensor *const *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const g4_gguf_tensor *x = *(const g4_gguf_tensor *const *)a, *y = *(const g4_gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return 0;
}

/* Sorts keys for lookup and rejects duplicates, which would make lookups ambiguous. */
static int index_keys(g4_gguf *f, g4_err *err) {
    f->kv_sorted = malloc((f->n_kv ? f->n_kv : 1) * sizeof *f->kv_sorted);
    if (!f->kv_sorted) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", f->label);
    for (size_t i = 0; i < f->n_kv; i++) f->kv_sorted[i] = &f->kvs[i];
    qsort(f->kv_sorted, f->n_kv, sizeof *f->kv_sorted, cmp_kv_key);
    char b[80];
    for (size_t i = 1; i < f->n_kv; i++)
        if (strcmp(f->kv_sorted[i - 1]->key, f->kv_sorted[i]->key) == 0)
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: duplicate key \"%s\"", f->label,
                           shown((const unsigned char *)f->kv_sorted[i]->key, strlen(f->kv_sorted[i]->key), b));
    return 0;
}

static int read_alignment(g4_gguf *f, g4_err *err) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, "general.alignment");
    if (!kv) return 0;
    if (kv->value.type != G4_GGUF_VALUE_U32)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: key \"general.alignment\" is %s (must be u32)", f->label,
                       g4_gguf_value_type_name(kv->value.type));
    uint32_t a = (uint32_t)load_le(kv->value.data, 4);
    if (a == 0 || (a & (a - 1)) != 0)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: key \"general.alignment\" is %u (must be a power of two)",
                       f->label, a);
    f->alignment = a;
    return 0;
}

/* Places every tensor in the data section: aligned, inside the file, no two overlapping, names unique. */
static int place_tensors(g4_gguf *f, g4_err *err) {
    uint64_t data_size = f->data_offset < f->size ? f->size - f->data_offset : 0;
    char b[80];
    for (size_t i = 0; i < f->n_tensors; i++) {
        g4_gguf_tensor *t = &f->tensors[i];
        const char *nm = shown((const unsigned char *)t->name, strlen(t->name), b);
        if (t->offset % f->alignment != 0)
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": offset %llu is not a multiple of the alignment %u",
                           f->label, nm, (unsigned long long)t->offset, f->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return g4_fail(err, GEMMA4C_ERR_FORMAT,
                           "%s: tensor \"%s\": data [%llu, +%zu) runs past the end of the data section (%llu bytes): truncated?",
                           f->label, nm, (unsigned long long)t->offset, t->nbytes, (unsigned long long)data_size);
        t->data = t->nbytes ? f->data + f->data_offset + t->offset : NULL;
    }
    const g4_gguf_tensor **by = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *by);
    if (!by) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", f->label);
    for (size_t i = 0; i < f->n_tensors; i++) by[i] = &f->tensors[i];
    qsort(by, f->n_tensors, sizeof *by, cmp_tensor_offset);
    const g4_gguf_tensor *prev = NULL;
    int rc = 0;
    for (size_t i = 0; i < f->n_tensors && rc == 0; i++) {
        if (by[i]->nbytes == 0) continue;
        if (prev && by[i]->offset < prev->offset + prev->nbytes) {
            char b2[80];
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\" overlaps tensor \"%s\"", f->label,
                         shown((const unsigned char *)by[i]->name, strlen(by[i]->name), b),
                         shown((const unsigned char *)prev->name, strlen(prev->name), b2));
        }
        prev = by[i];
    }
    if (rc == 0) {
        qsort(by, f->n_tensors, sizeof *by, cmp_tensor_name);
        for (size_t i = 1; i < f->n_tensors && rc == 0; i++)
            if (strcmp(by[i - 1]->name, by[i]->name) == 0)
                rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: duplicate tensor \"%s\"", f->label,
                             shown((const unsigned char *)by[i]->name, strlen(by[i]->name), b));
    }
    if (rc != 0) {
        free(by);
        return rc;
    }
    f->tensor_sorted = by;
    return 0;
}

static int parse_all(g4_gguf *f, g4_err *err) {
    parser p = {.data = f->data, .size = f->size, .label = f->label, .err = err};
    uint64_t n_tensors = 0, n_kv = 0;
    int rc = parse_header(&p, f, &n_tensors, &n_kv);
    for (uint64_t i = 0; rc == 0 && i < n_kv; i++) rc = parse_kv(&p, f);
    if (rc == 0) rc = index_keys(f, err);
    if (rc == 0) rc = read_alignment(f, err);
    for (uint64_t i = 0; rc == 0 && i < n_tensors; i++) rc = parse_tensor_info(&p, f);
    if (rc != 0) return rc;
    /* pos <= size < 2^64 and alignment <= 2^31, so rounding up cannot wrap. */
    uint64_t a = f->alignment;
    f->data_offset = ((uint64_t)p.pos + a - 1) / a * a;
    return place_tensors(f, err);
}

int g4_gguf_parse(const unsigned char *data, size_t size, const char *label, g4_gguf **out, g4_err *err) {
    *out = NULL;
    if (!label) label = "<memory>";
    g4_gguf *f = calloc(1, sizeof *f);
    if (!f) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", label);
    f->data = data;
    f->size = data ? size : 0;
    f->label = dup_bytes(label, strlen(label));
    if (!f->label) {
        free(f);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", label);
    }
    int rc = parse_all(f, err);
    if (rc != 0) {
        g4_gguf_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int g4_gguf_open(const char *path, g4_gguf **out, g4_err *err) {
    *out = NULL;
    g4_mapfile m;
    int rc = g4_mapfile_open(&m, path, err);
    if (rc != 0) return rc;
    rc = g4_gguf_parse(m.data, m.size, path, out, err);
    if (rc != 0) {
        g4_mapfile_close(&m);
        return rc;
    }
    (*out)->map = m;
    return 0;
}

uint32_t g4_gguf_version(const g4_gguf *f) { return f ? f->version : 0; }
uint32_t g4_gguf_alignment(const g4_gguf *f) { return f ? f->alignment : 0; }
uint64_t g4_gguf_data_offset(const g4_gguf *f) { return f ? f->data_offset : 0; }
const char *g4_gguf_label(const g4_gguf *f) { return f ? f->label : ""; }
size_t g4_gguf_kv_count(const g4_gguf *f) { return f ? f->n_kv : 0; }
size_t g4_gguf_tensor_count(const g4_gguf *f) { return f ? f->n_tensors : 0; }

const g4_gguf_kv *g4_gguf_kv_at(const g4_gguf *f, size_t i) {
    return f && i < f->n_kv ? &f->kvs[i] : NULL;
}

const g4_gguf_tensor *g4_gguf_tensor_at(const g4_gguf *f, size_t i) {
    return f && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const g4_gguf_kv *g4_gguf_find_kv(const g4_gguf *f, const char *key) {
    if (!f || !key || !f->kv_sorted) return NULL;
    size_t lo = 0, hi = f->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, f->kv_sorted[mid]->key);
        if (c == 0) return f->kv_sorted[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const g4_gguf_tensor *g4_gguf_tensor_find(const g4_gguf *f, const char *name) {
    if (!f || !name || !f->tensor_sorted) return NULL;
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->tensor_sorted[mid]->name);
        if (c == 0) return f->tensor_sorted[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ---- typed getters ----------------------------------------------------------------------------------------- */

static const g4_gguf_kv *require_kv(const g4_gguf *f, const char *key, g4_err *err) {
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, key);
    char b[80];
    if (!kv) g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: key \"%s\" is missing", g4_gguf_label(f), safe(key, b));
    return kv;
}

static int bad_type(const g4_gguf *f, const g4_gguf_kv *kv, const char *want, g4_err *err) {
    char b[80];
    if (kv->value.type == G4_GGUF_VALUE_ARRAY)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: key \"%s\" is an array of %s, expected %s", f->label, safe(kv->key, b),
                       g4_gguf_value_type_name(kv->value.elem_type), want);
    return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: key \"%s\" is %s, expected %s", f->label, safe(kv->key, b),
                   g4_gguf_value_type_name(kv->value.type), want);
}

static int get_int(const g4_gguf *f, const char *key, int64_t lo, uint64_t hi, const char *want, int64_t *s,
                   uint64_t *u, g4_err *err) {
    const g4_gguf_kv *kv = require_kv(f, key, err);
    if (!kv) return GEMMA4C_ERR_FORMAT;
    const g4_gguf_value *v = &kv->value;
    if (!is_signed_int(v->type) && !is_unsigned_int(v->type)) return bad_type(f, kv, want, err);
    int ok;
    char b[80];
    if (u) {
        ok = g4_gguf_value_u64(v, u) == 0 && *u <= hi;
    } else {
        ok = g4_gguf_value_i64(v, s) == 0 && *s >= lo && (*s < 0 || (uint64_t)*s <= hi);
    }
    if (!ok) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: key \"%s\": value does not fit %s", f->label, safe(key, b),
                                want);
    return 0;
}

int g4_gguf_get_u32(const g4_gguf *f, const char *key, uint32_t *out, g4_err *err) {
    uint64_t u;
    int rc = get_int(f, key, 0, UINT32_MAX, "u32", NULL, &u, err);
    if (rc == 0) *out = (uint32_t)u;
    return rc;
}

int g4_gguf_get_i32(const g4_gguf *f, const char *key, int32_t *out, g4_err *err) {
    int64_t s;
    int rc = get_int(f, key, INT32_MIN, INT32_MAX, "i32", &s, NULL, err);
    if (rc == 0) *out = (int32_t)s;
    return rc;
}

int g4_gguf_get_u64(const g4_gguf *f, const char *key, uint64_t *out, g4_err *err) {
    return get_int(f, key, 0, UINT64_MAX, "u64", NULL, out, err);
}

int g4_gguf_get_i64(const g4_gguf *f, const char *key, int64_t *out, g4_err *err) {
    return get_int(f, key, INT64_MIN, INT64_MAX, "i64", out, NULL, err);
}

int g4_gguf_get_f64(const g4_gguf *f, const char *key, double *out, g4_err *err) {
    const g4_gguf_kv *kv = require_kv(f, key, err);
    if (!kv) return GEMMA4C_ERR_FORMAT;
    if (g4_gguf_value_f64(&kv->value, out) != 0) return bad_type(f, kv, "a number", err);
    return 0;
}

int g4_gguf_get_f32(const g4_gguf *f, const char *key, float *out, g4_err *err) {
    double d;
    int rc = g4_gguf_get_f64(f, key, &d, err);
    if (rc == 0) *out = (float)d;
    return rc;
}

int g4_gguf_get_bool(const g4_gguf *f, const char *key, int *out, g4_err *err) {
    const g4_gguf_kv *kv = require_kv(f, key, err);
    if (!kv) return GEMMA4C_ERR_FORMAT;
    if (g4_gguf_value_bool(&kv->value, out) != 0) return bad_type(f, kv, "bool", err);
    return 0;
}

int g4_gguf_get_str(const g4_gguf *f, const char *key, const char **out, size_t *len, g4_err *err) {
    const g4_gguf_kv *kv = require_kv(f, key, err);
    if (!kv) return GEMMA4C_ERR_FORMAT;
    if (kv->value.type != G4_GGUF_VALUE_STRING) return bad_type(f, kv, "string", err);
    *out = kv->value.str;
    if (len) *len = kv->value.size;
    return 0;
}

/* The array under `key`, refusing other types with a message naming what was wanted. */
static const g4_gguf_kv *require_array(const g4_gguf *f, const char *key, const char *want, g4_err *err) {
    const g4_gguf_kv *kv = require_kv(f, key, err);
    if (!kv) return NULL;
    if (kv->value.type != G4_GGUF_VALUE_ARRAY) {
        bad_type(f, kv, want, err);
        return NULL;
    }
    return kv;
}

enum arr_kind { ARR_I32, ARR_I64, ARR_F32, ARR_BOOL };

/* Converts element e into slot i of out, as the scalar getters would. */
static int convert_elem(const g4_gguf_value *e, enum arr_kind kind, void *out, size_t i) {
    int64_t s;
    double d;
    int b;
    switch (kind) {
    case ARR_I32:
        if (g4_gguf_value_i64(e, &s) != 0 || s < INT32_MIN || s > INT32_MAX) return -1;
        ((int32_t *)out)[i] = (int32_t)s;
        return 0;
    case ARR_I64:
        if (g4_gguf_value_i64(e, &s) != 0) return -1;
        ((int64_t *)out)[i] = s;
        return 0;
    case ARR_F32:
        if (g4_gguf_value_f64(e, &d) != 0) return -1;
        ((float *)out)[i] = (float)d;
        return 0;
    case ARR_BOOL:
        if (g4_gguf_value_bool(e, &b) != 0) return -1;
        ((uint8_t *)out)[i] = (uint8_t)b;
        return 0;
    }
    return -1;
}

static int get_arr(const g4_gguf *f, const char *key, enum arr_kind kind, size_t elem, const char *want,
                   void **out, size_t *n, g4_err *err) {
    *out = NULL;
    *n = 0;
    const g4_gguf_kv *kv = require_array(f, key, want, err);
    if (!kv) return GEMMA4C_ERR_FORMAT;
    const g4_gguf_value *v = &kv->value;
    char b[80];
    if (!fixed_size(v->elem_type)) return bad_type(f, kv, want, err);
    if (v->count == 0) return 0;
    /* count * element size <= 8 * the array's bytes in the file; the check matters on 32-bit hosts only. */
    if (v->count > SIZE_MAX / elem) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: key \"%s\": too large", f->label, safe(key, b));
    void *buf = malloc((size_t)v->count * elem);
    if (!buf) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: key \"%s\": out of memory", f->label, safe(key, b));
    for (uint64_t i = 0; i < v->count; i++) {
        g4_gguf_value e;
        g4_gguf_value_elem(v, i, &e);
        if (convert_elem(&e, kind, buf, (size_t)i) != 0) {
            free(buf);
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: key \"%s\": element %llu (%s) does not convert to %s",
                           f->label, safe(key, b), (unsigned long long)i, g4_gguf_value_type_name(v->elem_type), want);
        }
    }
    *out = buf;
    *n = (size_t)v->count;
    return 0;
}

int g4_gguf_get_arr_i32(const g4_gguf *f, const char *key, int32_t **out, size_t *n, g4_err *err) {
    return get_arr(f, key, ARR_I32, sizeof **out, "an array of i32", (void **)out, n, err);
}

int g4_gguf_get_arr_i64(const g4_gguf *f, const char *key, int64_t **out, size_t *n, g4_err *err) {
    return get_arr(f, key, ARR_I64, sizeof **out, "an array of i64", (void **)out, n, err);
}

int g4_gguf_get_arr_f32(const g4_gguf *f, const char *key, float **out, size_t *n, g4_err *err) {
    return get_arr(f, key, ARR_F32, sizeof **out, "an array of f32", (void **)out, n, err);
}

int g4_gguf_get_arr_bool(const g4_gguf *f, const char *key, uint8_t **out, size_t *n, g4_err *err) {
    return get_arr(f, key, ARR_BOOL, sizeof **out, "an array of bool", (void **)out, n, err);
}

int g4_gguf_get_arr_str(const g4_gguf *f, const char *key, char ***out, size_t *n, g4_err *err) {
    *out = NULL;
    *n = 0;
    const g4_gguf_kv *kv = require_array(f, key, "an array of strings", err);
    if (!kv) return GEMMA4C_ERR_FORMAT;
    const g4_gguf_value *v = &kv->value;
    if (v->elem_type != G4_GGUF_VALUE_STRING) return bad_type(f, kv, "an array of strings", err);
    char b[80];
    if (v->count == 0) return 0;
    /* Pointers + bytes + one NUL each: at most twice the array's bytes in the file. */
    size_t cnt = (size_t)v->count;
    if (cnt > (SIZE_MAX - v->size) / (sizeof(char *) + 1))
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: key \"%s\": too large", f->label, safe(key, b));
    size_t total = cnt * sizeof(char *) + v->size + cnt;
    char **ptrs = malloc(total);
    if (!ptrs) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: key \"%s\": out of memory", f->label, safe(key, b));
    char *bytes = (char *)(ptrs + cnt);
    for (size_t i = 0; i < cnt; i++) {
        g4_gguf_value e;
        g4_gguf_value_elem(v, i, &e);
        ptrs[i] = bytes;
        if (e.size) memcpy(bytes, e.data, e.size);
        bytes[e.size] = '\0';
        bytes += e.size + 1;
    }
    *out = ptrs;
    *n = cnt;
    return 0;
}

int g4_gguf_tensor_view(const g4_gguf *f, const g4_gguf_tensor *t, g4_tensor *out, g4_err *err) {
    static const struct {
        uint32_t type;
        g4_dtype dt;
    } plain[] = {
        {G4_GGUF_TYPE_F32, G4_DT_F32}, {G4_GGUF_TYPE_F16, G4_DT_F16}, {G4_GGUF_TYPE_BF16, G4_DT_BF16},
        {G4_GGUF_TYPE_F64, G4_DT_F64}, {G4_GGUF_TYPE_I8, G4_DT_I8},   {G4_GGUF_TYPE_I16, G4_DT_I16},
        {G4_GGUF_TYPE_I32, G4_DT_I32}, {G4_GGUF_TYPE_I64, G4_DT_I64}, {G4_GGUF_TYPE_G4_Q8, G4_DT_Q8},
        {G4_GGUF_TYPE_G4_Q4, G4_DT_Q4}, {G4_GGUF_TYPE_G4_Q6, G4_DT_Q6},
    };
    const char *label = g4_gguf_label(f);
    char b[80];
    if (!t) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: no tensor given", label);
    size_t k = 0, n_plain = sizeof plain / sizeof plain[0];
    while (k < n_plain && plain[k].type != t->type) k++;
    const g4_gguf_type_info *ti = g4_gguf_type_info_get(t->type);
    if (k == n_plain)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "%s: tensor \"%s\" is %s, which has no g4_tensor form", label,
                       safe(t->name, b), ti ? ti->name : "?");
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->dtype = plain[k].dt;
    out->ndim = t->n_dims;
    for (int d = 0; d < t->n_dims; d++) out->shape[d] = t->ne[t->n_dims - 1 - d];
    out->data = t->data;
    out->nbytes = t->nbytes;
    /* Consumers read plain elements through typed pointers: misaligned data would be undefined behaviour there.
     * Block types have no element size; their kernels read blocks bytewise. */
    size_t es = g4_dtype_size(out->dtype);
    if (t->data && es && (uintptr_t)t->data % es != 0)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": data is not aligned to its %zu-byte elements",
                       label, safe(t->name, b), es);
    return 0;
}

/* ---- writer ----------------------------------------------------------------------------------------------- */

typedef struct wtensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;
} wtensor;

struct g4_gguf_writer {
    char *path;
    char *tmp_path;
    FILE *fp;
    g4_buf meta; /* encoded key/value pairs, written with the header */
    uint64_t n_kv;
    char **keys;
    size_t cap_keys;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t alignment;
    int header_written;
    size_t cur;           /* first tensor not yet complete */
    uint64_t cur_written; /* bytes of it written so far */
    uint64_t data_pos;    /* bytes written into the data section */
    g4_err failure;       /* a write error: every later call repeats it */
};

static int wfail_io(g4_gguf_writer *w, g4_err *err, const char *what) {
    int e = errno;
    g4_fail(&w->failure, GEMMA4C_ERR_IO, "%s: %s failed: %s", w->path, what, e ? strerror(e) : "unknown error");
    return g4_fail(err, w->failure.code, "%s", w->failure.msg);
}

/* Refuses calls on a writer that already failed to write, and additions (`adding`) once the header is out. */
static int writer_usable(g4_gguf_writer *w, int adding, g4_err *err) {
    if (!w) return g4_fail(err, GEMMA4C_ERR_ARG, "gguf writer: no writer");
    if (w->failure.code) return g4_fail(err, w->failure.code, "%s", w->failure.msg);
    if (adding && w->header_written)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: metadata and tensors must be added before tensor data is written",
                       w->path);
    return 0;
}

int g4_gguf_writer_open(const char *path, g4_gguf_writer **out, g4_err *err) {
    *out = NULL;
    if (!path || !*path) return g4_fail(err, GEMMA4C_ERR_ARG, "gguf writer: empty path");
    g4_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", path);
    size_t n = strlen(path);
    w->path = dup_bytes(path, n);
    w->tmp_path = malloc(n + sizeof ".partial");
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!w->path || !w->tmp_path) {
        free(w->path);
        free(w->tmp_path);
        free(w);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(w->tmp_path, path, n);
    memcpy(w->tmp_path + n, ".partial", sizeof ".partial");
    w->fp = fopen(w->tmp_path, "wb");
    if (!w->fp) {
        int rc = g4_fail(err, GEMMA4C_ERR_IO, "%s: cannot create: %s", w->tmp_path, strerror(errno));
        free(w->path);
        free(w->tmp_path);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

static void writer_free(g4_gguf_writer *w) {
    for (size_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    g4_buf_free(&w->meta);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

void g4_gguf_writer_abort(g4_gguf_writer *w) {
    if (!w) return;
    if (w->fp) fclose(w->fp);
    remove(w->tmp_path);
    writer_free(w);
}

static int put_le(g4_buf *b, uint64_t v, int n) {
    unsigned char tmp[8];
    store_le(tmp, v, n);
    return g4_buf_append(b, tmp, (size_t)n);
}

static int put_str(g4_buf *b, const void *s, size_t n) {
    if (put_le(b, n, 8) != 0) return -1;
    return n ? g4_buf_append(b, s, n) : 0;
}

/* Starts a key/value pair: checks the key and appends it and the type. The caller appends the value and then
 * calls end_kv; on failure it calls undo_kv to leave the writer as it was. */
static int begin_kv(g4_gguf_writer *w, const char *key, uint32_t type, size_t *mark, g4_err *err) {
    int rc = writer_usable(w, 1, err);
    if (rc != 0) return rc;
    if (!key || !*key) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: empty metadata key", w->path);
    size_t n = strlen(key);
    if (n > GGUF_MAX_NAME) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: metadata key of %zu bytes is too long", w->path, n);
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: duplicate key \"%s\"", w->path, key);
    if (strcmp(key, "general.alignment") == 0 && type != G4_GGUF_VALUE_U32)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: key \"general.alignment\" must be u32", w->path);
    *mark = w->meta.len;
    if (put_str(&w->meta, key, n) != 0 || put_le(&w->meta, type, 4) != 0) {
        w->meta.len = *mark;
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", w->path);
    }
    return 0;
}

static int undo_kv(g4_gguf_writer *w, size_t mark, int rc) {
    w->meta.len = mark;
    if (w->meta.data) w->meta.data[mark] = '\0';
    return rc;
}

static int end_kv(g4_gguf_writer *w, const char *key, size_t mark, g4_err *err) {
    if (grow((void **)&w->keys, &w->cap_keys, w->n_kv + 1, sizeof *w->keys) != 0 ||
        !(w->keys[w->n_kv] = dup_bytes(key, strlen(key))))
        return undo_kv(w, mark, g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", w->path));
    w->n_kv++;
    return 0;
}

static int set_scalar(g4_gguf_writer *w, const char *key, uint32_t type, uint64_t bits, g4_err *err) {
    size_t mark;
    int rc = begin_kv(w, key, type, &mark, err);
    if (rc != 0) return rc;
    if (put_le(&w->meta, bits, (int)fixed_size(type)) != 0)
        return undo_kv(w, mark, g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", w->path));
    return end_kv(w, key, mark, err);
}

int g4_gguf_writer_set_u8(g4_gguf_writer *w, const char *key, uint8_t v, g4_err *err) {
    return set_scalar(w, key, G4_GGUF_VALUE_U8, v, err);
}
int g4_gguf_writer_set_i8(g4_gguf_writer *w, const char *key, int8_t v, g4_err *err) {
    return set_scalar(w, key, G4_GGUF_VALUE_I8, (uint8_t)v, err);
}
int g4_gguf_writer_set_u16(g4_gguf_writer *w, const char *key, uint16_t v, g4_err *err) {
    return set_scalar(w, key, G4_GGUF_VALUE_U16, v, err);
}
int g4_gguf_writer_set_i16(g4_gguf_writer *w, const char *key, int16_t v, g4_err *err) {
    return set_scalar(w, key, G4_GGUF_VALUE_I16, (uint16_t)v, err);
}
int g4_gguf_writer_set_u32(g4_gguf_writer *w, const char *key, uint32_t v, g4_err *err) {
    int is_align = key && strcmp(key, "general.alignment") == 0;
    if (is_align && (v == 0 || (v & (v - 1)) != 0))
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: general.alignment %u is not a power of two", w ? w->path : "?", v);
    int rc = set_scalar(w, key, G4_GGUF_VALUE_U32, v, err);
    if (rc == 0 && is_align) w->alignment = v;
    return rc;
}
int g4_gguf_writer_set_i32(g4_gguf_writer *w, const char *key, int32_t v, g4_err *err) {
    return set_scalar(w, key, G4_GGUF_VALUE_I32, (uint32_t)v, err);
}
int g4_gguf_writer_set_u64(g4_gguf_writer *w, const char *key, uint64_t v, g4_err *err) {
    return set_scalar(w, key, G4_GGUF_VALUE_U64, v, err);
}
int g4_gguf_writer_set_i64(g4_gguf_writer *w, const char *key, int64_t v, g4_err *err) {
    return set_scalar(w, key, G4_GGUF_VALUE_I64, (uint64_t)v, err);
}
int g4_gguf_writer_set_f32(g4_gguf_writer *w, const char *key, float v, g4_err *err) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return set_scalar(w, key, G4_GGUF_VALUE_F32, bits, err);
}
int g4_gguf_writer_set_f64(g4_gguf_writer *w, const char *key, double v, g4_err *err) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return set_scalar(w, key, G4_GGUF_VALUE_F64, bits, err);
}
int g4_gguf_writer_set_bool(g4_gguf_writer *w, const char *key, int v, g4_err *err) {
    return set_scalar(w, key, G4_GGUF_VALUE_BOOL, v ? 1u : 0u, err);
}

int g4_gguf_writer_set_str(g4_gguf_writer *w, const char *key, const char *v, g4_err *err) {
    if (!v) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: key \"%s\": NULL string", w ? w->path : "?", key ? key : "");
    size_t mark;
    int rc = begin_kv(w, key, G4_GGUF_VALUE_STRING, &mark, err);
    if (rc != 0) return rc;
    if (put_str(&w->meta, v, strlen(v)) != 0)
        return undo_kv(w, mark, g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", w->path));
    return end_kv(w, key, mark, err);
}

/* Host value i of a fixed-size type, as the bits to store little-endian. */
static uint64_t host_bits(const void *elems, size_t i, size_t es) {
    const unsigned char *p = (const unsigned char *)elems + i * es;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    switch (es) {
    case 1: memcpy(&u8, p, 1); return u8;
    case 2: memcpy(&u16, p, 2); return u16;
    case 4: memcpy(&u32, p, 4); return u32;
    default: memcpy(&u64, p, 8); return u64;
    }
}

int g4_gguf_writer_set_arr(g4_gguf_writer *w, const char *key, uint32_t elem_type, const void *elems, size_t n,
                           g4_err *err) {
    size_t es = fixed_size(elem_type);
    const char *path = w ? w->path : "?";
    if (!es)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: key \"%s\": %s is not a fixed-size element type", path,
                       key ? key : "", g4_gguf_value_type_name(elem_type));
    if (n && !elems) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: key \"%s\": NULL array", path, key ? key : "");
    if (elem_type == G4_GGUF_VALUE_BOOL)
        for (size_t i = 0; i < n; i++)
            if (((const uint8_t *)elems)[i] > 1)
                return g4_fail(err, GEMMA4C_ERR_ARG, "%s: key \"%s\": bool element %zu is not 0 or 1", path, key, i);
    size_t mark;
    int rc = begin_kv(w, key, G4_GGUF_VALUE_ARRAY, &mark, err);
    if (rc != 0) return rc;
    int bad = put_le(&w->meta, elem_type, 4) != 0 || put_le(&w->meta, n, 8) != 0;
    for (size_t i = 0; i < n && !bad; i++) bad = put_le(&w->meta, host_bits(elems, i, es), (int)es) != 0;
    if (bad) return undo_kv(w, mark, g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", w->path));
    return end_kv(w, key, mark, err);
}

int g4_gguf_writer_set_arr_i32(g4_gguf_writer *w, const char *key, const int32_t *v, size_t n, g4_err *err) {
    return g4_gguf_writer_set_arr(w, key, G4_GGUF_VALUE_I32, v, n, err);
}

int g4_gguf_writer_set_arr_f32(g4_gguf_writer *w, const char *key, const float *v, size_t n, g4_err *err) {
    return g4_gguf_writer_set_arr(w, key, G4_GGUF_VALUE_F32, v, n, err);
}

int g4_gguf_writer_set_arr_str(g4_gguf_writer *w, const char *key, const char *const *v, size_t n, g4_err *err) {
    const char *path = w ? w->path : "?";
    if (n && !v) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: key \"%s\": NULL array", path, key ? key : "");
    for (size_t i = 0; i < n; i++)
        if (!v[i]) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: key \"%s\": string %zu is NULL", path, key ? key : "", i);
    size_t mark;
    int rc = begin_kv(w, key, G4_GGUF_VALUE_ARRAY, &mark, err);
    if (rc != 0) return rc;
    int bad = put_le(&w->meta, G4_GGUF_VALUE_STRING, 4) != 0 || put_le(&w->meta, n, 8) != 0;
    for (size_t i = 0; i < n && !bad; i++) bad = put_str(&w->meta, v[i], strlen(v[i])) != 0;
    if (bad) return undo_kv(w, mark, g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", w->path));
    return end_kv(w, key, mark, err);
}

int g4_gguf_writer_set_value(g4_gguf_writer *w, const char *key, const g4_gguf_value *v, g4_err *err) {
    const char *path = w ? w->path : "?";
    if (!v || !known_value_type(v->type) || (v->size && !v->data))
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: key \"%s\": invalid value", path, key ? key : "");
    /* Re-validate the payload so that a hand-made value can never produce a file our reader would refuse. */
    g4_err perr = {0};
    parser p = {.data = v->data, .size = v->size, .label = path, .err = &perr};
    snprintf(p.ctx, sizeof p.ctx, "key \"%.64s\"", key ? key : "");
    int ok = 0;
    if (v->type == G4_GGUF_VALUE_STRING) {
        ok = v->count == v->size;
    } else if (v->type == G4_GGUF_VALUE_ARRAY) {
        ok = known_value_type(v->elem_type) &&
             parse_array_elems(&p, v->elem_type, v->count, 0, NULL) == 0 && p.pos == v->size;
    } else {
        g4_gguf_value tmp;
        ok = v->size == fixed_size(v->type) && parse_value(&p, v->type, 0, &tmp, NULL) == 0;
    }
    if (!ok)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: key \"%s\": inconsistent value%s%s", path, key ? key : "",
                       perr.code ? ": " : "", perr.msg);
    if (key && strcmp(key, "general.alignment") == 0 && v->type == G4_GGUF_VALUE_U32)
        return g4_gguf_writer_set_u32(w, key, (uint32_t)load_le(v->data, 4), err);
    size_t mark;
    int rc = begin_kv(w, key, v->type, &mark, err);
    if (rc != 0) return rc;
    int bad = 0;
    if (v->type == G4_GGUF_VALUE_STRING)
        bad = put_le(&w->meta, v->size, 8) != 0;
    else if (v->type == G4_GGUF_VALUE_ARRAY)
        bad = put_le(&w->meta, v->elem_type, 4) != 0 || put_le(&w->meta, v->count, 8) != 0;
    if (!bad && v->size) bad = g4_buf_append(&w->meta, v->data, v->size) != 0;
    if (bad) return undo_kv(w, mark, g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", w->path));
    return end_kv(w, key, mark, err);
}

int g4_gguf_writer_add_tensor(g4_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                              g4_err *err) {
    int rc = writer_usable(w, 1, err);
    if (rc != 0) return rc;
    if (!name || !*name) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor with an empty name", w->path);
    if (strlen(name) > GGUF_MAX_NAME) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor name too long", w->path);
    const g4_gguf_type_info *ti = g4_gguf_type_info_get(type);
    if (!ti) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor \"%s\": unknown type %u", w->path, name, type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor \"%s\": %d dimensions (1 to %d supported)", w->path, name,
                       n_dims, GGUF_MAX_DIMS);
    uint64_t nbytes;
    if (g4_gguf_tensor_bytes(type, n_dims, ne, &nbytes) != 0)
        return g4_fail(err, GEMMA4C_ERR_ARG,
                       "%s: tensor \"%s\": bad dims for %s (negative, overflowing, or a row of %lld not a multiple of %d)",
                       w->path, name, ti->name, (long long)ne[0], ti->block_elems);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return g4_fail(err, GEMMA4C_ERR_ARG, "%s: duplicate tensor \"%s\"", w->path, name);
    if (grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors + 1, sizeof *w->tensors) != 0)
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", w->path);
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = dup_bytes(name, strlen(name)))) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", w->path);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = nbytes;
    w->n_tensors++;
    return 0;
}

static int write_bytes(g4_gguf_writer *w, const void *p, size_t n, g4_err *err) {
    errno = 0;
    if (n && fwrite(p, 1, n, w->fp) != n) return wfail_io(w, err, "write");
    return 0;
}

static int write_zeros(g4_gguf_writer *w, uint64_t n, g4_err *err) {
    static const unsigned char zeros[256];
    while (n > 0) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        int rc = write_bytes(w, zeros, k, err);
        if (rc != 0) return rc;
        n -= k;
    }
    return 0;
}

static uint64_t pad_to(uint64_t pos, uint64_t a) {
    return (a - pos % a) % a;
}

/* Skips tensors with no bytes: they are complete as soon as they are reached. */
static void skip_empty(g4_gguf_writer *w) {
    while (w->cur < w->n_tensors && w->tensors[w->cur].nbytes == 0) w->cur++;
}

static int encode_tensor_infos(g4_gguf_writer *w, g4_buf *b) {
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        wtensor *t = &w->tensors[i];
        off += pad_to(off, w->alignment);
        t->offset = off;
        off += t->nbytes;
        if (put_str(b, t->name, strlen(t->name)) != 0 || put_le(b, (uint64_t)t->n_dims, 4) != 0) return -1;
        for (int d = 0; d < t->n_dims; d++)
            if (put_le(b, (uint64_t)t->ne[d], 8) != 0) return -1;
        if (put_le(b, t->type, 4) != 0 || put_le(b, t->offset, 8) != 0) return -1;
    }
    return 0;
}

int g4_gguf_writer_write_header(g4_gguf_writer *w, g4_err *err) {
    int rc = writer_usable(w, 0, err);
    if (rc != 0) return rc;
    if (w->header_written) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: the header was already written", w->path);
    g4_buf head = {0};
    int bad = g4_buf_append(&head, GGUF_MAGIC, 4) != 0 || put_le(&head, GGUF_WRITE_VERSION, 4) != 0 ||
              put_le(&head, w->n_tensors, 8) != 0 || put_le(&head, w->n_kv, 8) != 0 ||
              (w->meta.len && g4_buf_append(&head, w->meta.data, w->meta.len) != 0) ||
              encode_tensor_infos(w, &head) != 0;
    if (bad) {
        g4_buf_free(&head);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", w->path);
    }
    w->header_written = 1;
    rc = write_bytes(w, head.data, head.len, err);
    if (rc == 0) rc = write_zeros(w, pad_to(head.len, w->alignment), err);
    g4_buf_free(&head);
    skip_empty(w);
    return rc;
}

/* Ends the current tensor: pads the data section so that the next tensor starts aligned. */
static int finish_tensor(g4_gguf_writer *w, g4_err *err) {
    uint64_t pad = pad_to(w->data_pos, w->alignment);
    int rc = write_zeros(w, pad, err);
    if (rc != 0) return rc;
    w->data_pos += pad;
    w->cur++;
    w->cur_written = 0;
    skip_empty(w);
    return 0;
}

int g4_gguf_writer_write(g4_gguf_writer *w, const void *bytes, size_t n, g4_err *err) {
    int rc = writer_usable(w, 0, err);
    if (rc != 0) return rc;
    if (!w->header_written && (rc = g4_gguf_writer_write_header(w, err)) != 0) return rc;
    if (n == 0) return 0;
    if (!bytes) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: NULL data", w->path);
    if (w->cur >= w->n_tensors)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: %zu bytes of data beyond the last declared tensor", w->path, n);
    const wtensor *t = &w->tensors[w->cur];
    uint64_t left = t->nbytes - w->cur_written;
    if (n > left)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor \"%s\": a chunk of %zu bytes runs past its end (%llu bytes left)",
                       w->path, t->name, n, (unsigned long long)left);
    if ((rc = write_bytes(w, bytes, n, err)) != 0) return rc;
    w->cur_written += n;
    w->data_pos += n;
    if (w->cur_written == t->nbytes) return finish_tensor(w, err);
    return 0;
}

int g4_gguf_writer_write_tensor(g4_gguf_writer *w, const char *name, const void *bytes, size_t n, g4_err *err) {
    int rc = writer_usable(w, 0, err);
    if (rc != 0) return rc;
    if (!w->header_written && (rc = g4_gguf_writer_write_header(w, err)) != 0) return rc;
    if (!name) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor without a name", w->path);
    if (n == 0) {
        /* Empty tensors are skipped as soon as they are reached; writing one is only a check. */
        for (size_t i = 0; i < w->n_tensors; i++)
            if (strcmp(w->tensors[i].name, name) == 0 && w->tensors[i].nbytes == 0) return 0;
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor \"%s\": no empty tensor of that name was declared", w->path, name);
    }
    if (w->cur >= w->n_tensors)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor \"%s\": every declared tensor was already written", w->path, name);
    const wtensor *t = &w->tensors[w->cur];
    if (strcmp(t->name, name) != 0)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor \"%s\" written out of order: \"%s\" comes next", w->path, name,
                       t->name);
    if (w->cur_written != 0 || n != t->nbytes)
        return g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor \"%s\": %zu bytes given, %llu expected%s", w->path, name, n,
                       (unsigned long long)t->nbytes, w->cur_written ? " (it was partly written already)" : "");
    return g4_gguf_writer_write(w, bytes, n, err);
}

int g4_gguf_writer_close(g4_gguf_writer *w, g4_err *err) {
    if (!w) return g4_fail(err, GEMMA4C_ERR_ARG, "gguf writer: no writer");
    int rc = writer_usable(w, 0, err);
    if (rc == 0 && !w->header_written) rc = g4_gguf_writer_write_header(w, err);
    if (rc == 0 && w->cur < w->n_tensors) {
        const wtensor *t = &w->tensors[w->cur];
        rc = g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor \"%s\": %llu of %llu bytes written (%zu of %zu tensors complete)",
                     w->path, t->name, (unsigned long long)w->cur_written, (unsigned long long)t->nbytes, w->cur,
                     w->n_tensors);
    }
    if (rc == 0) {
        errno = 0;
        if (fflush(w->fp) != 0 || ferror(w->fp)) rc = wfail_io(w, err, "write");
    }
    errno = 0;
    if (fclose(w->fp) != 0 && rc == 0) rc = wfail_io(w, err, "close");
    w->fp = NULL;
    if (rc == 0 && rename(w->tmp_path, w->path) != 0)
        rc = g4_fail(err, GEMMA4C_ERR_IO, "%s: cannot rename %s into place: %s", w->path, w->tmp_path, strerror(errno));
    if (rc != 0) remove(w->tmp_path);
    writer_free(w);
    return rc;
}
