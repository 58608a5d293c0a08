/* test_gguf.c — GGUF write/read round trip of every value and several tensor types, writer misuse, hostile files. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/mapfile.h"
#include "format/gguf.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------------------------------------------ */

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Little-endian image builder for hand-made (often hostile) files. */
static void b_u8(g4_buf *b, uint8_t v) { g4_buf_append(b, &v, 1); }
static void b_le(g4_buf *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) b_u8(b, (uint8_t)(v >> (8 * i)));
}
static void b_u32(g4_buf *b, uint32_t v) { b_le(b, v, 4); }
static void b_u64(g4_buf *b, uint64_t v) { b_le(b, v, 8); }
static void b_str(g4_buf *b, const char *s) {
    b_u64(b, strlen(s));
    g4_buf_append(b, s, strlen(s));
}
static void b_header(g4_buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    g4_buf_append(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}
static void b_kv_u32(g4_buf *b, const char *key, uint32_t v) {
    b_str(b, key);
    b_u32(b, G4_GGUF_VALUE_U32);
    b_u32(b, v);
}
static void b_tensor(g4_buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    b_str(b, name);
    b_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) b_u64(b, ne[d]);
    b_u32(b, type);
    b_u64(b, off);
}
static void b_pad(g4_buf *b, size_t a) {
    while (b->len % a) b_u8(b, 0);
}
static void b_fill(g4_buf *b, size_t n) {
    for (size_t i = 0; i < n; i++) b_u8(b, (uint8_t)(i * 7 + 1));
}

/* Parses exactly `n` bytes from a private heap copy so that any read past the end is seen by ASan. */
static int parse_copy(const unsigned char *data, size_t n, const char *label, g4_gguf **out, g4_err *err,
                      unsigned char **keep) {
    unsigned char *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, data, n);
    int rc = g4_gguf_parse(copy, n, label, out, err);
    if (rc == 0 && keep) {
        *keep = copy;
    } else {
        if (rc == 0) g4_gguf_close(*out), *out = NULL;
        free(copy);
        if (keep) *keep = NULL;
    }
    return rc;
}

/* Walks a value completely (bounded), as a consumer might. */
static void walk_value(const g4_gguf_value *v, int depth, unsigned *sum) {
    if (v->type != G4_GGUF_VALUE_ARRAY || depth > 10) {
        for (size_t i = 0; i < v->size; i++) *sum += v->data[i];
        return;
    }
    uint64_t n = v->count < 300 ? v->count : 300;
    for (uint64_t i = 0; i < n; i++) {
        g4_gguf_value e;
        if (g4_gguf_value_elem(v, i, &e) != 0) {
            g4t_failures++;
            fprintf(stderr, "value_elem failed on a validated array\n");
            return;
        }
        walk_value(&e, depth + 1, sum);
    }
}

/* What every successfully parsed image must satisfy: views inside the buffer, lookups consistent. */
static void check_invariants(const g4_gguf *f, const unsigned char *buf, size_t size) {
    unsigned sum = 0;
    for (size_t i = 0; i < g4_gguf_tensor_count(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        if (g4_gguf_tensor_find(f, t->name) != t) g4t_failures++;
        if (t->nbytes) {
            const unsigned char *p = t->data;
            if (p < buf || p + t->nbytes > buf + size) g4t_failures++;
            sum += p[0] + p[t->nbytes - 1];
        }
        uint64_t nb;
        if (g4_gguf_tensor_bytes(t->type, t->n_dims, t->ne, &nb) != 0 || nb != t->nbytes) g4t_failures++;
    }
    for (size_t i = 0; i < g4_gguf_kv_count(f); i++) {
        const g4_gguf_kv *kv = g4_gguf_kv_at(f, i);
        if (g4_gguf_find_kv(f, kv->key) != kv) g4t_failures++;
        walk_value(&kv->value, 0, &sum);
    }
    (void)sum;
}

/* ---- round trip ---------------------------------------------------------------------------------------------- */

typedef struct sample_tensor {
    const char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[4];
    size_t nbytes;
} sample_tensor;

static const sample_tensor SAMPLE[] = {
    {"token_embd.weight", G4_GGUF_TYPE_F32, 2, {5, 3}, 60},
    {"h16", G4_GGUF_TYPE_F16, 1, {7}, 14},
    {"hb", G4_GGUF_TYPE_BF16, 3, {4, 2, 2}, 32},
    {"empty", G4_GGUF_TYPE_F32, 2, {0, 4}, 0},
    {"blk.0.attn_q.weight", G4_GGUF_TYPE_Q8_0, 2, {64, 2}, 136},
    {"q4k", G4_GGUF_TYPE_Q4_K, 1, {256}, 144},
    {"g4q4", G4_GGUF_TYPE_G4_Q4, 2, {32, 3}, 54},
    {"g4q8", G4_GGUF_TYPE_G4_Q8, 1, {64}, 72},
    {"g4q6", G4_GGUF_TYPE_G4_Q6, 1, {96}, 78},
    {"ids", G4_GGUF_TYPE_I32, 1, {3}, 12},
    {"d4", G4_GGUF_TYPE_F64, 4, {2, 1, 1, 3}, 48},
};
#define N_SAMPLE (sizeof SAMPLE / sizeof SAMPLE[0])

static unsigned char sample_byte(size_t tensor, size_t i) {
    return (unsigned char)(tensor * 31 + i * 13 + (i >> 3));
}

/* A nested array value (array of: i32[3], string[2], array[u8[2]]) from a hand-made image, to copy from. */
static void build_nested_image(g4_buf *b) {
    b_header(b, 3, 0, 1);
    b_str(b, "nested");
    b_u32(b, G4_GGUF_VALUE_ARRAY);
    b_u32(b, G4_GGUF_VALUE_ARRAY);
    b_u64(b, 3);
    b_u32(b, G4_GGUF_VALUE_I32);
    b_u64(b, 3);
    b_u32(b, 1), b_u32(b, (uint32_t)-2), b_u32(b, 3);
    b_u32(b, G4_GGUF_VALUE_STRING);
    b_u64(b, 2);
    b_str(b, "x");
    b_str(b, "yz");
    b_u32(b, G4_GGUF_VALUE_ARRAY);
    b_u64(b, 1);
    b_u32(b, G4_GGUF_VALUE_U8);
    b_u64(b, 2);
    b_u8(b, 7), b_u8(b, 8);
}

static const uint8_t ARR_U8[] = {0, 1, 255};
static const int8_t ARR_I8[] = {-128, 0, 127};
static const uint16_t ARR_U16[] = {0, 65535};
static const int16_t ARR_I16[] = {-32768, 32767, -1};
static const uint32_t ARR_U32[] = {4000000000u, 1};
static const int32_t ARR_I32[] = {-2147483647 - 1, 0, 2147483647, 42};
static const float ARR_F32[] = {1.0f, -0.5f, 3.25e10f};
static const uint8_t ARR_BOOL[] = {1, 0, 1, 1};
static const uint64_t ARR_U64[] = {UINT64_MAX, 0};
static const int64_t ARR_I64[] = {INT64_MIN, INT64_MAX, -5};
static const double ARR_F64[] = {1e-300, -2.5};
static const char *const ARR_STR[] = {"<pad>", "", "\xc3\xbcn\xc3\xaf", "<start_of_turn>", "a b\nc"};

static int write_sample(const char *path, uint32_t alignment, g4_err *err) {
    g4_gguf_writer *w = NULL;
    int rc = g4_gguf_writer_open(path, &w, err);
    if (rc != 0) return rc;
    g4_buf nb = {0};
    build_nested_image(&nb);
    g4_gguf *nf = NULL;
    rc = g4_gguf_parse((const unsigned char *)nb.data, nb.len, "nested", &nf, err);
#define TRY(call) \
    if (rc == 0) rc = (call)
    TRY(g4_gguf_writer_set_str(w, "general.architecture", "gemma4", err));
    if (alignment) TRY(g4_gguf_writer_set_u32(w, "general.alignment", alignment, err));
    TRY(g4_gguf_writer_set_u8(w, "t.u8", 200, err));
    TRY(g4_gguf_writer_set_i8(w, "t.i8", -100, err));
    TRY(g4_gguf_writer_set_u16(w, "t.u16", 60000, err));
    TRY(g4_gguf_writer_set_i16(w, "t.i16", -30000, err));
    TRY(g4_gguf_writer_set_u32(w, "t.u32", 4000000000u, err));
    TRY(g4_gguf_writer_set_i32(w, "t.i32", -2000000000, err));
    TRY(g4_gguf_writer_set_u64(w, "t.u64", UINT64_MAX - 5, err));
    TRY(g4_gguf_writer_set_i64(w, "t.i64", INT64_MIN + 7, err));
    TRY(g4_gguf_writer_set_f32(w, "t.f32", 1.5f, err));
    TRY(g4_gguf_writer_set_f64(w, "t.f64", -2.25e300, err));
    TRY(g4_gguf_writer_set_bool(w, "t.bool", 1, err));
    TRY(g4_gguf_writer_set_bool(w, "t.false", 0, err));
    TRY(g4_gguf_writer_set_str(w, "t.str", "h\xc3\xa9llo\nworld", err));
    TRY(g4_gguf_writer_set_str(w, "t.empty_str", "", err));
    TRY(g4_gguf_writer_set_arr(w, "a.u8", G4_GGUF_VALUE_U8, ARR_U8, 3, err));
    TRY(g4_gguf_writer_set_arr(w, "a.i8", G4_GGUF_VALUE_I8, ARR_I8, 3, err));
    TRY(g4_gguf_writer_set_arr(w, "a.u16", G4_GGUF_VALUE_U16, ARR_U16, 2, err));
    TRY(g4_gguf_writer_set_arr(w, "a.i16", G4_GGUF_VALUE_I16, ARR_I16, 3, err));
    TRY(g4_gguf_writer_set_arr(w, "a.u32", G4_GGUF_VALUE_U32, ARR_U32, 2, err));
    TRY(g4_gguf_writer_set_arr_i32(w, "a.i32", ARR_I32, 4, err));
    TRY(g4_gguf_writer_set_arr_f32(w, "a.f32", ARR_F32, 3, err));
    TRY(g4_gguf_writer_set_arr(w, "a.bool", G4_GGUF_VALUE_BOOL, ARR_BOOL, 4, err));
    TRY(g4_gguf_writer_set_arr(w, "a.u64", G4_GGUF_VALUE_U64, ARR_U64, 2, err));
    TRY(g4_gguf_writer_set_arr(w, "a.i64", G4_GGUF_VALUE_I64, ARR_I64, 3, err));
    TRY(g4_gguf_writer_set_arr(w, "a.f64", G4_GGUF_VALUE_F64, ARR_F64, 2, err));
    TRY(g4_gguf_writer_set_arr_str(w, "a.str", ARR_STR, 5, err));
    TRY(g4_gguf_writer_set_arr_i32(w, "a.empty", NULL, 0, err));
    TRY(g4_gguf_writer_set_arr_str(w, "a.empty_str", NULL, 0, err));
    if (rc == 0) {
        const g4_gguf_kv *kv = g4_gguf_find_kv(nf, "nested");
        TRY(g4_gguf_writer_set_value(w, "a.nested", &kv->value, err));
    }
    for (size_t i = 0; i < N_SAMPLE && rc == 0; i++)
        rc = g4_gguf_writer_add_tensor(w, SAMPLE[i].name, SAMPLE[i].type, SAMPLE[i].n_dims, SAMPLE[i].ne, err);
    /* Metadata may follow tensor declarations until data is written. */
    TRY(g4_gguf_writer_set_str(w, "t.late", "after tensors", err));
    for (size_t i = 0; i < N_SAMPLE && rc == 0; i++) {
        unsigned char *buf = malloc(SAMPLE[i].nbytes + 1);
        for (size_t k = 0; k < SAMPLE[i].nbytes; k++) buf[k] = sample_byte(i, k);
        if (i % 3 == 1) {
            /* Chunked streaming, in uneven chunks. */
            for (size_t k = 0; k < SAMPLE[i].nbytes && rc == 0; k += 7) {
                size_t n = SAMPLE[i].nbytes - k < 7 ? SAMPLE[i].nbytes - k : 7;
                rc = g4_gguf_writer_write(w, buf + k, n, err);
            }
        } else {
            rc = g4_gguf_writer_write_tensor(w, SAMPLE[i].name, SAMPLE[i].nbytes ? buf : NULL, SAMPLE[i].nbytes, err);
        }
        free(buf);
    }
#undef TRY
    g4_gguf_close(nf);
    g4_buf_free(&nb);
    if (rc != 0) {
        g4_gguf_writer_abort(w);
        return rc;
    }
    return g4_gguf_writer_close(w, err);
}

static void check_scalars(const g4_gguf *f) {
    g4_err err = {0};
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    int b;
    const char *s;
    size_t len;
    CHECK(g4_gguf_get_u32(f, "t.u8", &u32, &err) == 0 && u32 == 200, "u8 %s", err.msg);
    CHECK(g4_gguf_get_i32(f, "t.i8", &i32, &err) == 0 && i32 == -100, "i8");
    CHECK(g4_gguf_get_u32(f, "t.u16", &u32, &err) == 0 && u32 == 60000, "u16");
    CHECK(g4_gguf_get_i32(f, "t.i16", &i32, &err) == 0 && i32 == -30000, "i16");
    CHECK(g4_gguf_get_u32(f, "t.u32", &u32, &err) == 0 && u32 == 4000000000u, "u32");
    CHECK(g4_gguf_get_i32(f, "t.i32", &i32, &err) == 0 && i32 == -2000000000, "i32");
    CHECK(g4_gguf_get_u64(f, "t.u64", &u64, &err) == 0 && u64 == UINT64_MAX - 5, "u64");
    CHECK(g4_gguf_get_i64(f, "t.i64", &i64, &err) == 0 && i64 == INT64_MIN + 7, "i64");
    CHECK(g4_gguf_get_f32(f, "t.f32", &f32, &err) == 0 && f32 == 1.5f, "f32");
    CHECK(g4_gguf_get_f64(f, "t.f64", &f64, &err) == 0 && f64 == -2.25e300, "f64");
    CHECK(g4_gguf_get_bool(f, "t.bool", &b, &err) == 0 && b == 1, "bool");
    CHECK(g4_gguf_get_bool(f, "t.false", &b, &err) == 0 && b == 0, "false");
    CHECK(g4_gguf_get_str(f, "t.str", &s, &len, &err) == 0 && strcmp(s, "h\xc3\xa9llo\nworld") == 0 && len == 12, "str");
    CHECK(g4_gguf_get_str(f, "t.empty_str", &s, &len, &err) == 0 && s[0] == '\0' && len == 0, "empty str");
    CHECK(g4_gguf_get_str(f, "t.late", &s, NULL, &err) == 0 && strcmp(s, "after tensors") == 0, "late");
    CHECK(g4_gguf_get_str(f, "general.architecture", &s, NULL, &err) == 0 && strcmp(s, "gemma4") == 0, "arch");
    /* Conversions between integer widths, and floats from integers. */
    CHECK(g4_gguf_get_i64(f, "t.u32", &i64, &err) == 0 && i64 == 4000000000LL, "u32 as i64");
    CHECK(g4_gguf_get_f32(f, "t.i16", &f32, &err) == 0 && f32 == -30000.0f, "i16 as f32");
    /* Refusals name the file and the key. */
    g4_err_clear(&err);
    CHECK(g4_gguf_get_i32(f, "t.u32", &i32, &err) == GEMMA4C_ERR_FORMAT && strstr(err.msg, "t.u32") &&
              strstr(err.msg, "does not fit"), "u32 overflowing i32: %s", err.msg);
    CHECK(g4_gguf_get_u32(f, "t.i8", &u32, &err) == GEMMA4C_ERR_FORMAT, "negative as u32");
    CHECK(g4_gguf_get_u64(f, "t.i64", &u64, &err) == GEMMA4C_ERR_FORMAT, "negative i64 as u64");
    CHECK(g4_gguf_get_i64(f, "t.u64", &i64, &err) == GEMMA4C_ERR_FORMAT, "huge u64 as i64");
    CHECK(g4_gguf_get_bool(f, "t.str", &b, &err) == GEMMA4C_ERR_FORMAT && strstr(err.msg, "t.str") &&
              strstr(err.msg, "string"), "%s", err.msg);
    CHECK(g4_gguf_get_str(f, "t.u8", &s, NULL, &err) == GEMMA4C_ERR_FORMAT, "u8 as string");
    CHECK(g4_gguf_get_u32(f, "a.u32", &u32, &err) == GEMMA4C_ERR_FORMAT && strstr(err.msg, "array"), "%s", err.msg);
    CHECK(g4_gguf_get_f32(f, "t.bool", &f32, &err) == GEMMA4C_ERR_FORMAT, "bool as f32");
    CHECK(g4_gguf_get_u32(f, "no.such.key", &u32, &err) == GEMMA4C_ERR_FORMAT && strstr(err.msg, "no.such.key") &&
              strstr(err.msg, "missing"), "%s", err.msg);
    CHECK(g4_gguf_find_kv(f, "no.such.key") == NULL, "find missing");
}

static void check_arrays(const g4_gguf *f) {
    g4_err err = {0};
    int32_t *i32 = NULL;
    int64_t *i64 = NULL;
    float *f32 = NULL;
    uint8_t *bl = NULL;
    char **strs = NULL;
    size_t n = 0;
    CHECK(g4_gguf_get_arr_i32(f, "a.i32", &i32, &n, &err) == 0 && n == 4 && memcmp(i32, ARR_I32, sizeof ARR_I32) == 0,
          "arr i32");
    free(i32);
    CHECK(g4_gguf_get_arr_i32(f, "a.u8", &i32, &n, &err) == 0 && n == 3 && i32[2] == 255, "u8 array as i32");
    free(i32);
    CHECK(g4_gguf_get_arr_i32(f, "a.i16", &i32, &n, &err) == 0 && n == 3 && i32[0] == -32768 && i32[2] == -1, "i16s");
    free(i32);
    CHECK(g4_gguf_get_arr_i32(f, "a.i8", &i32, &n, &err) == 0 && i32[0] == -128 && i32[2] == 127, "i8s");
    free(i32);
    CHECK(g4_gguf_get_arr_i64(f, "a.i64", &i64, &n, &err) == 0 && n == 3 && memcmp(i64, ARR_I64, sizeof ARR_I64) == 0,
          "arr i64");
    free(i64);
    CHECK(g4_gguf_get_arr_i64(f, "a.u16", &i64, &n, &err) == 0 && n == 2 && i64[1] == 65535, "u16s");
    free(i64);
    CHECK(g4_gguf_get_arr_i64(f, "a.u64", &i64, &n, &err) == GEMMA4C_ERR_FORMAT && i64 == NULL &&
              strstr(err.msg, "element 0"), "u64 max as i64: %s", err.msg);
    CHECK(g4_gguf_get_arr_i32(f, "a.u32", &i32, &n, &err) == GEMMA4C_ERR_FORMAT && i32 == NULL, "u32 4e9 as i32");
    CHECK(g4_gguf_get_arr_f32(f, "a.f32", &f32, &n, &err) == 0 && n == 3 && memcmp(f32, ARR_F32, sizeof ARR_F32) == 0,
          "arr f32");
    free(f32);
    CHECK(g4_gguf_get_arr_f32(f, "a.f64", &f32, &n, &err) == 0 && n == 2 && f32[1] == -2.5f, "f64s as f32");
    free(f32);
    CHECK(g4_gguf_get_arr_bool(f, "a.bool", &bl, &n, &err) == 0 && n == 4 && memcmp(bl, ARR_BOOL, 4) == 0, "bools");
    free(bl);
    CHECK(g4_gguf_get_arr_bool(f, "a.u8", &bl, &n, &err) == GEMMA4C_ERR_FORMAT, "u8 as bools");
    CHECK(g4_gguf_get_arr_str(f, "a.str", &strs, &n, &err) == 0 && n == 5, "strs %s", err.msg);
    for (size_t i = 0; strs && i < 5; i++) CHECK(strcmp(strs[i], ARR_STR[i]) == 0, "str %zu: %s", i, strs[i]);
    free(strs);
    CHECK(g4_gguf_get_arr_str(f, "a.i32", &strs, &n, &err) == GEMMA4C_ERR_FORMAT && strstr(err.msg, "a.i32"), "%s",
          err.msg);
    CHECK(g4_gguf_get_arr_i32(f, "a.str", &i32, &n, &err) == GEMMA4C_ERR_FORMAT, "strings as i32");
    CHECK(g4_gguf_get_arr_i32(f, "t.i32", &i32, &n, &err) == GEMMA4C_ERR_FORMAT && strstr(err.msg, "t.i32"), "scalar");
    CHECK(g4_gguf_get_arr_i32(f, "a.empty", &i32, &n, &err) == 0 && n == 0 && i32 == NULL, "empty");
    CHECK(g4_gguf_get_arr_str(f, "a.empty_str", &strs, &n, &err) == 0 && n == 0 && strs == NULL, "empty strs");

    /* Raw element access, including the copied nested array. */
    const g4_gguf_kv *kv = g4_gguf_find_kv(f, "a.u64");
    g4_gguf_value e, e2, e3;
    uint64_t u64;
    CHECK(kv && g4_gguf_value_elem(&kv->value, 0, &e) == 0 && g4_gguf_value_u64(&e, &u64) == 0 && u64 == UINT64_MAX,
          "u64 elem");
    CHECK(kv && g4_gguf_value_elem(&kv->value, 2, &e) == -1, "out of range elem");
    kv = g4_gguf_find_kv(f, "a.f64");
    double d;
    CHECK(kv && g4_gguf_value_elem(&kv->value, 0, &e) == 0 && g4_gguf_value_f64(&e, &d) == 0 && d == 1e-300, "f64");
    kv = g4_gguf_find_kv(f, "a.nested");
    CHECK(kv && kv->value.type == G4_GGUF_VALUE_ARRAY && kv->value.elem_type == G4_GGUF_VALUE_ARRAY &&
              kv->value.count == 3, "nested shape");
    if (!kv) return;
    int64_t s;
    CHECK(g4_gguf_value_elem(&kv->value, 0, &e) == 0 && e.elem_type == G4_GGUF_VALUE_I32 && e.count == 3 &&
              g4_gguf_value_elem(&e, 1, &e2) == 0 && g4_gguf_value_i64(&e2, &s) == 0 && s == -2, "nested[0][1]");
    CHECK(g4_gguf_value_elem(&kv->value, 1, &e) == 0 && e.elem_type == G4_GGUF_VALUE_STRING &&
              g4_gguf_value_elem(&e, 1, &e2) == 0 && e2.size == 2 && memcmp(e2.data, "yz", 2) == 0, "nested[1][1]");
    CHECK(g4_gguf_value_elem(&kv->value, 2, &e) == 0 && e.count == 1 && g4_gguf_value_elem(&e, 0, &e2) == 0 &&
              e2.elem_type == G4_GGUF_VALUE_U8 && g4_gguf_value_elem(&e2, 1, &e3) == 0 &&
              g4_gguf_value_i64(&e3, &s) == 0 && s == 8, "nested[2][0][1]");
    CHECK(g4_gguf_value_elem(&kv->value, 3, &e) == -1, "nested out of range");
}

static void check_tensors(const g4_gguf *f, uint32_t alignment) {
    g4_err err = {0};
    CHECK(g4_gguf_tensor_count(f) == N_SAMPLE, "count %zu", g4_gguf_tensor_count(f));
    CHECK(g4_gguf_alignment(f) == alignment, "alignment %u", g4_gguf_alignment(f));
    CHECK(g4_gguf_data_offset(f) % alignment == 0, "data offset %llu", (unsigned long long)g4_gguf_data_offset(f));
    CHECK(g4_gguf_version(f) == 3, "version");
    for (size_t i = 0; i < N_SAMPLE && i < g4_gguf_tensor_count(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        CHECK(strcmp(t->name, SAMPLE[i].name) == 0, "name %s", t->name);
        CHECK(g4_gguf_tensor_find(f, SAMPLE[i].name) == t, "find %s", SAMPLE[i].name);
        CHECK(t->type == SAMPLE[i].type && t->n_dims == SAMPLE[i].n_dims, "%s type/dims", t->name);
        for (int d = 0; d < 4; d++)
            CHECK(t->ne[d] == (d < SAMPLE[i].n_dims ? SAMPLE[i].ne[d] : 1), "%s ne[%d]=%lld", t->name, d,
                  (long long)t->ne[d]);
        CHECK(t->nbytes == SAMPLE[i].nbytes, "%s nbytes %zu", t->name, t->nbytes);
        CHECK(t->offset % alignment == 0, "%s offset %llu", t->name, (unsigned long long)t->offset);
        CHECK((uintptr_t)t->data % alignment == 0, "%s data pointer not aligned", t->name);
        int same = 1;
        for (size_t k = 0; k < t->nbytes; k++) same &= ((const unsigned char *)t->data)[k] == sample_byte(i, k);
        CHECK(same, "%s data differs", t->name);
        if (t->nbytes == 0) CHECK(t->data == NULL, "empty tensor data");
    }
    CHECK(g4_gguf_tensor_find(f, "nope") == NULL && g4_gguf_tensor_at(f, N_SAMPLE) == NULL, "missing tensor");
    g4_tensor v;
    const g4_gguf_tensor *t = g4_gguf_tensor_find(f, "token_embd.weight");
    CHECK(t && g4_gguf_tensor_view(f, t, &v, &err) == 0 && v.dtype == G4_DT_F32 && v.ndim == 2 && v.shape[0] == 3 &&
              v.shape[1] == 5 && v.nbytes == 60 && v.data == t->data, "F32 view %s", err.msg);
    t = g4_gguf_tensor_find(f, "d4");
    CHECK(t && g4_gguf_tensor_view(f, t, &v, &err) == 0 && v.dtype == G4_DT_F64 && v.ndim == 4 && v.shape[0] == 3 &&
              v.shape[3] == 2, "F64 view");
    t = g4_gguf_tensor_find(f, "g4q4");
    CHECK(t && g4_gguf_tensor_view(f, t, &v, &err) == 0 && v.dtype == G4_DT_Q4 && v.ndim == 2 && v.shape[0] == 3 &&
              v.shape[1] == 32 && v.nbytes == 3 * g4_row_bytes(G4_DT_Q4, 32), "G4_Q4 view %s", err.msg);
    t = g4_gguf_tensor_find(f, "blk.0.attn_q.weight");
    CHECK(t && g4_gguf_tensor_view(f, t, &v, &err) == GEMMA4C_ERR_UNSUPPORTED && strstr(err.msg, "Q8_0"), "%s", err.msg);
}

static void test_type_table(void) {
    const g4_gguf_type_info *ti = g4_gguf_type_info_get(G4_GGUF_TYPE_Q4_0);
    CHECK(ti && ti->block_elems == 32 && ti->block_bytes == 18 && strcmp(ti->name, "Q4_0") == 0, "Q4_0");
    ti = g4_gguf_type_info_get(G4_GGUF_TYPE_Q6_K);
    CHECK(ti && ti->block_elems == 256 && ti->block_bytes == 210, "Q6_K");
    ti = g4_gguf_type_info_get(G4_GGUF_TYPE_BF16);
    CHECK(ti && ti->block_elems == 1 && ti->block_bytes == 2, "BF16");
    ti = g4_gguf_type_info_get(G4_GGUF_TYPE_G4_Q8);
    CHECK(ti && ti->block_elems == 32 && ti->block_bytes == 36 && strcmp(ti->name, "G4_Q8") == 0, "G4_Q8");
    ti = g4_gguf_type_info_get(1000);
    CHECK(ti && strcmp(ti->name, "G4_Q4") == 0 && ti->block_bytes == 18, "G4_Q4");
    ti = g4_gguf_type_info_get(1002);
    CHECK(ti && strcmp(ti->name, "G4_Q6") == 0 && ti->block_bytes == 26, "G4_Q6");
    CHECK(!g4_gguf_type_info_get(4) && !g4_gguf_type_info_get(5) && !g4_gguf_type_info_get(31) &&
              !g4_gguf_type_info_get(40) && !g4_gguf_type_info_get(999) && !g4_gguf_type_info_get(UINT32_MAX),
          "unknown types");
    /* gemma4c's block sizes agree with the kernels' (core/tensor.h). */
    static const struct { uint32_t gguf; g4_dtype dt; } own[] = {
        {G4_GGUF_TYPE_G4_Q8, G4_DT_Q8}, {G4_GGUF_TYPE_G4_Q4, G4_DT_Q4}, {G4_GGUF_TYPE_G4_Q6, G4_DT_Q6}};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        ti = g4_gguf_type_info_get(own[i].gguf);
        CHECK(ti && (size_t)ti->block_bytes == g4_row_bytes(own[i].dt, ti->block_elems) &&
                  strcmp(ti->name, g4_dtype_name(own[i].dt)) == 0, "own type %u agrees with tensor.h", own[i].gguf);
    }
    uint64_t nb;
    int64_t ok[] = {512, 3}, odd[] = {33, 1}, neg[] = {-1, 1}, big[] = {INT64_MAX, 2};
    CHECK(g4_gguf_tensor_bytes(G4_GGUF_TYPE_Q4_K, 2, ok, &nb) == 0 && nb == 2 * 144 * 3, "q4k bytes");
    CHECK(g4_gguf_tensor_bytes(G4_GGUF_TYPE_Q8_0, 2, odd, &nb) == -1, "partial block");
    CHECK(g4_gguf_tensor_bytes(G4_GGUF_TYPE_F32, 2, neg, &nb) == -1, "negative");
    CHECK(g4_gguf_tensor_bytes(G4_GGUF_TYPE_I8, 2, big, &nb) == -1, "overflow");
    CHECK(g4_gguf_tensor_bytes(G4_GGUF_TYPE_F32, 5, ok, &nb) == -1, "5 dims");
}

static void test_round_trip(const char *tmp, uint32_t alignment) {
    char path[4200], partial[4300];
    snprintf(path, sizeof path, "%s/rt%u.gguf", tmp, alignment);
    snprintf(partial, sizeof partial, "%s.partial", path);
    g4_err err = {0};
    int rc = write_sample(path, alignment == 32 ? 0 : alignment, &err);
    CHECK(rc == 0, "write: %s", err.msg);
    CHECK(!file_exists(partial), "partial file left behind");
    g4_gguf *f = NULL;
    rc = g4_gguf_open(path, &f, &err);
    CHECK(rc == 0, "open: %s", err.msg);
    if (rc != 0) return;
    CHECK(strcmp(g4_gguf_label(f), path) == 0, "label");
    CHECK(g4_gguf_kv_count(f) == (alignment == 32 ? 31u : 32u), "kv count %zu", g4_gguf_kv_count(f));
    CHECK(strcmp(g4_gguf_kv_at(f, 0)->key, "general.architecture") == 0, "file order");
    check_scalars(f);
    check_arrays(f);
    check_tensors(f, alignment);

    /* Copying every value into a new file reproduces the metadata byte for byte. */
    char copy[4200];
    snprintf(copy, sizeof copy, "%s/copy%u.gguf", tmp, alignment);
    g4_gguf_writer *w = NULL;
    rc = g4_gguf_writer_open(copy, &w, &err);
    for (size_t i = 0; rc == 0 && i < g4_gguf_kv_count(f); i++)
        rc = g4_gguf_writer_set_value(w, g4_gguf_kv_at(f, i)->key, &g4_gguf_kv_at(f, i)->value, &err);
    CHECK(rc == 0, "copy values: %s", err.msg);
    if (w) rc = g4_gguf_writer_close(w, &err);
    g4_gguf *c = NULL;
    CHECK(rc == 0 && g4_gguf_open(copy, &c, &err) == 0, "copy open: %s", err.msg);
    if (c) {
        CHECK(g4_gguf_kv_count(c) == g4_gguf_kv_count(f) && g4_gguf_alignment(c) == alignment, "copy count");
        for (size_t i = 0; i < g4_gguf_kv_count(c) && i < g4_gguf_kv_count(f); i++) {
            const g4_gguf_kv *a = g4_gguf_kv_at(f, i), *b = g4_gguf_kv_at(c, i);
            CHECK(strcmp(a->key, b->key) == 0 && a->value.type == b->value.type && a->value.size == b->value.size &&
                      memcmp(a->value.data, b->value.data, a->value.size) == 0, "copied %s", a->key);
        }
        CHECK(g4_gguf_tensor_count(c) == 0, "copy has no tensors");
        g4_gguf_close(c);
    }

    /* Truncation anywhere before the end of the last tensor's data is refused; the trailing padding is not needed. */
    g4_mapfile m;
    CHECK(g4_mapfile_open(&m, path, &err) == 0, "map");
    size_t end = 0;
    for (size_t i = 0; i < g4_gguf_tensor_count(f); i++) {
        const g4_gguf_tensor *t = g4_gguf_tensor_at(f, i);
        size_t e = (size_t)(g4_gguf_data_offset(f) + t->offset + t->nbytes);
        if (e > end) end = e;
    }
    size_t wrong = 0;
    for (size_t n = 0; n <= m.size; n++) {
        g4_gguf *g = NULL;
        g4_err e2 = {0};
        int r = parse_copy(m.data, n, "trunc", &g, &e2, NULL);
        int should_fail = n < end;
        if ((r != 0) != should_fail || (r != 0 && (e2.msg[0] == '\0' || strncmp(e2.msg, "trunc: ", 7) != 0))) {
            if (wrong++ < 5) fprintf(stderr, "truncated at %zu of %zu: rc %d (%s)\n", n, m.size, r, e2.msg);
        }
    }
    CHECK(wrong == 0, "%zu truncations misjudged", wrong);
    CHECK(m.size > end, "padding after the last tensor");

    /* Every byte of the header, metadata and tensor infos, changed several ways: an error or a consistent file. */
    static const int muts[] = {-1, 0x00, 0xff, 0x7f, 0x80, 0x01, 0x20};
    unsigned char *img = malloc(m.size);
    size_t hdr = (size_t)g4_gguf_data_offset(f), refused = 0, accepted = 0;
    for (size_t pos = 0; pos < hdr; pos++) {
        for (size_t k = 0; k < sizeof muts / sizeof muts[0]; k++) {
            memcpy(img, m.data, m.size);
            img[pos] = muts[k] < 0 ? (unsigned char)(img[pos] ^ 0xff) : (unsigned char)muts[k];
            if (img[pos] == m.data[pos]) continue;
            g4_gguf *g = NULL;
            g4_err e2 = {0};
            unsigned char *keep = NULL;
            if (parse_copy(img, m.size, "mut", &g, &e2, &keep) == 0) {
                accepted++;
                check_invariants(g, keep, m.size);
                g4_gguf_close(g);
                free(keep);
            } else {
                refused++;
                CHECK(e2.msg[0] && strchr(e2.msg, '\n') == NULL && e2.code < 0, "error message: %s", e2.msg);
            }
        }
    }
    printf("byte mutations: %zu refused, %zu accepted (consistent)\n", refused, accepted);
    CHECK(refused > 0, "no mutation refused");

    /* Random multi-byte corruption with absurd values, seeded for reproducibility. */
    uint64_t x = 0x9e3779b97f4a7c15ull + alignment;
    for (int it = 0; it < 4000; it++) {
        memcpy(img, m.data, m.size);
        int changes = 1 + (int)(x % 4);
        for (int c2 = 0; c2 < changes; c2++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t pos = (size_t)(x % hdr);
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t span = 1 + (size_t)(x % 8);
            for (size_t q = pos; q < pos + span && q < m.size; q++) img[q] = (unsigned char)(x >> (8 * (q - pos)));
        }
        g4_gguf *g = NULL;
        g4_err e2 = {0};
        unsigned char *keep = NULL;
        if (parse_copy(img, m.size, "rnd", &g, &e2, &keep) == 0) {
            check_invariants(g, keep, m.size);
            g4_gguf_close(g);
            free(keep);
        }
    }
    free(img);
    g4_mapfile_close(&m);
    g4_gguf_close(f);
}

/* ---- writer misuse -------------------------------------------------------------------------------------------- */

static void test_writer_errors(const char *tmp) {
    char path[4200], partial[4300];
    snprintf(path, sizeof path, "%s/w.gguf", tmp);
    snprintf(partial, sizeof partial, "%s.partial", path);
    g4_err err = {0};
    g4_gguf_writer *w = NULL;
    int64_t ne[] = {64, 2}, bad_ne[] = {33, 2}, neg[] = {-4}, five[] = {1, 1, 1, 1, 1};
    unsigned char data[256] = {0};

    CHECK(g4_gguf_writer_open(path, &w, &err) == 0, "open %s", err.msg);
    CHECK(file_exists(partial) && !file_exists(path), "writes go to the partial file");
    CHECK(g4_gguf_writer_set_u32(w, "k", 1, &err) == 0, "k");
    CHECK(g4_gguf_writer_set_str(w, "k", "x", &err) == GEMMA4C_ERR_ARG && strstr(err.msg, "duplicate key"), "%s", err.msg);
    CHECK(g4_gguf_writer_set_u32(w, "", 1, &err) == GEMMA4C_ERR_ARG, "empty key");
    CHECK(g4_gguf_writer_set_u32(w, NULL, 1, &err) == GEMMA4C_ERR_ARG, "NULL key");
    CHECK(g4_gguf_writer_set_u32(w, "general.alignment", 48, &err) == GEMMA4C_ERR_ARG, "alignment 48");
    CHECK(g4_gguf_writer_set_u32(w, "general.alignment", 0, &err) == GEMMA4C_ERR_ARG, "alignment 0");
    CHECK(g4_gguf_writer_set_i32(w, "general.alignment", 64, &err) == GEMMA4C_ERR_ARG, "alignment as i32");
    uint8_t bad_bool[] = {0, 2};
    CHECK(g4_gguf_writer_set_arr(w, "bb", G4_GGUF_VALUE_BOOL, bad_bool, 2, &err) == GEMMA4C_ERR_ARG, "bool 2");
    CHECK(g4_gguf_writer_set_arr(w, "bs", G4_GGUF_VALUE_STRING, data, 2, &err) == GEMMA4C_ERR_ARG, "arr of string");
    g4_gguf_value hand = {.type = G4_GGUF_VALUE_ARRAY, .elem_type = G4_GGUF_VALUE_U32, .count = 5, .data = data,
                          .size = 8};
    CHECK(g4_gguf_writer_set_value(w, "hand", &hand, &err) == GEMMA4C_ERR_ARG && strstr(err.msg, "inconsistent"),
          "inconsistent value: %s", err.msg);
    CHECK(g4_gguf_writer_add_tensor(w, "a", G4_GGUF_TYPE_Q8_0, 2, ne, &err) == 0, "a");
    CHECK(g4_gguf_writer_add_tensor(w, "a", G4_GGUF_TYPE_F32, 2, ne, &err) == GEMMA4C_ERR_ARG &&
              strstr(err.msg, "duplicate tensor"), "dup tensor");
    CHECK(g4_gguf_writer_add_tensor(w, "b", 4, 2, ne, &err) == GEMMA4C_ERR_ARG && strstr(err.msg, "unknown type"),
          "removed type: %s", err.msg);
    CHECK(g4_gguf_writer_add_tensor(w, "b", G4_GGUF_TYPE_Q8_0, 2, bad_ne, &err) == GEMMA4C_ERR_ARG, "partial block");
    CHECK(g4_gguf_writer_add_tensor(w, "b", G4_GGUF_TYPE_F32, 1, neg, &err) == GEMMA4C_ERR_ARG, "negative dim");
    CHECK(g4_gguf_writer_add_tensor(w, "b", G4_GGUF_TYPE_F32, 5, five, &err) == GEMMA4C_ERR_ARG, "5 dims");
    CHECK(g4_gguf_writer_add_tensor(w, "", G4_GGUF_TYPE_F32, 1, ne, &err) == GEMMA4C_ERR_ARG, "empty name");
    CHECK(g4_gguf_writer_add_tensor(w, "b", G4_GGUF_TYPE_I8, 1, ne, &err) == 0, "b");
    CHECK(g4_gguf_writer_write_tensor(w, "b", data, 64, &err) == GEMMA4C_ERR_ARG && strstr(err.msg, "out of order"),
          "order: %s", err.msg);
    CHECK(g4_gguf_writer_write_tensor(w, "a", data, 100, &err) == GEMMA4C_ERR_ARG && strstr(err.msg, "136 expected"),
          "size: %s", err.msg);
    CHECK(g4_gguf_writer_write(w, data, 137, &err) == GEMMA4C_ERR_ARG && strstr(err.msg, "runs past"), "chunk past end");
    CHECK(g4_gguf_writer_set_u32(w, "late", 1, &err) == GEMMA4C_ERR_ARG && strstr(err.msg, "before tensor data"),
          "metadata after header: %s", err.msg);
    CHECK(g4_gguf_writer_add_tensor(w, "c", G4_GGUF_TYPE_F32, 1, ne, &err) == GEMMA4C_ERR_ARG, "tensor after header");
    CHECK(g4_gguf_writer_write_header(w, &err) == GEMMA4C_ERR_ARG && strstr(err.msg, "already"), "header twice");
    CHECK(g4_gguf_writer_write(w, data, 100, &err) == 0, "first chunk");
    CHECK(g4_gguf_writer_write_tensor(w, "a", data, 136, &err) == GEMMA4C_ERR_ARG && strstr(err.msg, "partly"),
          "whole after chunk: %s", err.msg);
    CHECK(g4_gguf_writer_write(w, data, 36, &err) == 0, "rest of a");
    /* Closing with "b" unwritten fails and leaves no file at all. */
    CHECK(g4_gguf_writer_close(w, &err) == GEMMA4C_ERR_ARG && strstr(err.msg, "\"b\"") && strstr(err.msg, "0 of 64"),
          "incomplete close: %s", err.msg);
    CHECK(!file_exists(path) && !file_exists(partial), "incomplete file removed");

    /* Data beyond the last tensor. */
    CHECK(g4_gguf_writer_open(path, &w, &err) == 0, "reopen");
    CHECK(g4_gguf_writer_add_tensor(w, "b", G4_GGUF_TYPE_I8, 1, ne, &err) == 0, "b");
    CHECK(g4_gguf_writer_write_tensor(w, "b", data, 64, &err) == 0, "b data");
    CHECK(g4_gguf_writer_write(w, data, 1, &err) == GEMMA4C_ERR_ARG && strstr(err.msg, "beyond"), "extra byte");
    CHECK(g4_gguf_writer_write_tensor(w, "b", data, 64, &err) == GEMMA4C_ERR_ARG, "written twice");
    CHECK(g4_gguf_writer_close(w, &err) == 0, "close %s", err.msg);
    CHECK(file_exists(path) && !file_exists(partial), "complete file in place");
    g4_gguf *f = NULL;
    CHECK(g4_gguf_open(path, &f, &err) == 0 && g4_gguf_tensor_count(f) == 1, "reads back: %s", err.msg);
    g4_gguf_close(f);

    /* Abort removes the partial file. */
    CHECK(g4_gguf_writer_open(path, &w, &err) == 0, "reopen");
    g4_gguf_writer_abort(w);
    CHECK(!file_exists(partial) && file_exists(path), "abort");

    /* An empty file (no metadata, no tensors) is valid. */
    CHECK(g4_gguf_writer_open(path, &w, &err) == 0 && g4_gguf_writer_close(w, &err) == 0, "empty writer");
    CHECK(g4_gguf_open(path, &f, &err) == 0 && g4_gguf_kv_count(f) == 0 && g4_gguf_tensor_count(f) == 0, "empty: %s",
          err.msg);
    g4_gguf_close(f);

    char bad[4200];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.gguf", tmp);
    CHECK(g4_gguf_writer_open(bad, &w, &err) == GEMMA4C_ERR_IO && strstr(err.msg, "x.gguf.partial") && w == NULL,
          "unwritable: %s", err.msg);
}

/* A full disk, simulated with a file size limit: the write fails with an I/O error, later calls repeat it. */
static void test_disk_full(const char *tmp) {
    char path[4200], partial[4300];
    snprintf(path, sizeof path, "%s/full.gguf", tmp);
    snprintf(partial, sizeof partial, "%s.partial", path);
    struct rlimit old;
    int got = getrlimit(RLIMIT_FSIZE, &old);
    CHECK(got == 0, "getrlimit: the full-disk case was not tested");
    if (got != 0) return;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = 64 * 1024; /* lowering the soft limit is always allowed */
    int set = setrlimit(RLIMIT_FSIZE, &lim);
    CHECK(set == 0, "setrlimit: the full-disk case was not tested");
    if (set != 0) {
        signal(SIGXFSZ, prev);
        return;
    }
    g4_err err = {0};
    g4_gguf_writer *w = NULL;
    int64_t ne[] = {1 << 20};
    int rc = g4_gguf_writer_open(path, &w, &err);
    if (rc == 0) rc = g4_gguf_writer_add_tensor(w, "big", G4_GGUF_TYPE_I8, 1, ne, &err);
    unsigned char *chunk = calloc(1, 1 << 16);
    int write_rc = 0;
    for (int i = 0; rc == 0 && i < 16 && write_rc == 0; i++) write_rc = g4_gguf_writer_write(w, chunk, 1 << 16, &err);
    CHECK(write_rc == GEMMA4C_ERR_IO && strstr(err.msg, "write failed") && strstr(err.msg, "full.gguf"),
          "disk full: rc %d %s", write_rc, err.msg);
    g4_err again = {0};
    CHECK(g4_gguf_writer_write(w, chunk, 1, &again) == GEMMA4C_ERR_IO, "failure is sticky");
    CHECK(g4_gguf_writer_close(w, &again) == GEMMA4C_ERR_IO, "close after failure");
    free(chunk);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECK(!file_exists(path) && !file_exists(partial), "nothing left after a failed write");
}

/* ---- hostile hand-made files ------------------------------------------------------------------------------------ */

typedef struct hostile {
    const char *what;
    int code;           /* expected error code */
    const char *needle; /* expected in the message */
} hostile;

static void expect_refused(const g4_buf *b, const hostile *h) {
    g4_gguf *f = NULL;
    g4_err err = {0};
    int rc = parse_copy((const unsigned char *)b->data, b->len, "bad.gguf", &f, &err, NULL);
    CHECK(rc == h->code, "%s: rc %d (want %d): %s", h->what, rc, h->code, err.msg);
    if (getenv("G4T_VERBOSE")) printf("  %-45s -> %s\n", h->what, err.msg);
    CHECK(strncmp(err.msg, "bad.gguf: ", 10) == 0 && strstr(err.msg, h->needle) && !strchr(err.msg, '\n'),
          "%s: message \"%s\" lacks \"%s\"", h->what, err.msg, h->needle);
}

static void expect_accepted(const g4_buf *b, const char *what) {
    g4_gguf *f = NULL;
    g4_err err = {0};
    unsigned char *keep = NULL;
    int rc = parse_copy((const unsigned char *)b->data, b->len, "ok.gguf", &f, &err, &keep);
    CHECK(rc == 0, "%s: %s", what, err.msg);
    if (rc == 0) check_invariants(f, keep, b->len);
    g4_gguf_close(f);
    free(keep);
}

/* One tensor `name` of type/dims at offset, with `data` bytes of data after 32-byte padding. */
static void one_tensor(g4_buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off,
                       size_t data) {
    b_header(b, 3, 1, 0);
    b_tensor(b, name, n_dims, ne, type, off);
    b_pad(b, 32);
    b_fill(b, data);
}

static void test_hostile(void) {
    g4_buf b = {0};
#define CASE(code, needle, what) for (int once_ = (g4_buf_reset(&b), 1); once_; once_ = 0, expect_refused(&b, &(hostile){what, code, needle}))
    const int F = GEMMA4C_ERR_FORMAT, U = GEMMA4C_ERR_UNSUPPORTED;
    uint64_t ne1[] = {16}, ne_q[] = {33}, ne_big[] = {1ull << 63}, ne_ovf[] = {1ull << 32, 1ull << 32};
    uint64_t ne_ovf2[] = {1ull << 40, 1ull << 20, 1ull << 3}, ne_zero_big[] = {0, 1ull << 62};

    CASE(F, "bad magic", "empty image") {}
    CASE(F, "bad magic", "3 bytes") g4_buf_append(&b, "GGU", 3);
    CASE(F, "bad magic", "bad magic") { b_header(&b, 3, 0, 0); b.data[3] = 'G'; }
    CASE(F, "version", "magic only") g4_buf_append(&b, "GGUF", 4);
    CASE(U, "version 1", "v1") b_header(&b, 1, 0, 0);
    CASE(U, "version 4", "v4") b_header(&b, 4, 0, 0);
    CASE(U, "big-endian", "big-endian") { g4_buf_append(&b, "GGUF", 4); b_u8(&b, 0), b_u8(&b, 0), b_u8(&b, 0), b_u8(&b, 3); b_u64(&b, 0); b_u64(&b, 0); }
    CASE(F, "metadata count", "truncated counts") { g4_buf_append(&b, "GGUF", 4); b_u32(&b, 3); b_u64(&b, 0); b_u32(&b, 0); }
    CASE(F, "cannot fit", "huge kv count") b_header(&b, 3, 0, 1ull << 63);
    CASE(F, "cannot fit", "huge tensor count") b_header(&b, 3, UINT64_MAX, 0);
    CASE(F, "truncated", "missing kv") { b_header(&b, 3, 0, 2); b_kv_u32(&b, "a", 1); b_fill(&b, 20); }
    CASE(F, "truncated", "huge key length") { b_header(&b, 3, 0, 1); b_u64(&b, 1ull << 63); b_fill(&b, 40); }
    CASE(F, "empty key", "empty key") { b_header(&b, 3, 0, 1); b_str(&b, ""); b_u32(&b, 4); b_u32(&b, 1); }
    CASE(F, "NUL", "key with NUL") { b_header(&b, 3, 0, 1); b_u64(&b, 3); g4_buf_append(&b, "a\0b", 3); b_u32(&b, 4); b_u32(&b, 1); }
    CASE(F, "unknown value type 13", "value type 13") { b_header(&b, 3, 0, 1); b_str(&b, "my.key"); b_u32(&b, 13); b_u32(&b, 1); }
    CASE(F, "key \"my.key\"", "error names the key") { b_header(&b, 3, 0, 1); b_str(&b, "my.key"); b_u32(&b, 0xffffffffu); b_u32(&b, 1); }
    CASE(F, "key \"a?b\"", "control characters in names are not printed") { b_header(&b, 3, 0, 1); b_str(&b, "a\nb"); b_u32(&b, 77); }
    CASE(F, "truncated", "u64 value cut") { b_header(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, G4_GGUF_VALUE_U64); b_u32(&b, 1); }
    CASE(F, "truncated", "huge string") { b_header(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, G4_GGUF_VALUE_STRING); b_u64(&b, UINT64_MAX); b_fill(&b, 16); }
    CASE(F, "truncated", "string one past end") { b_header(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, G4_GGUF_VALUE_STRING); b_u64(&b, 5); b_fill(&b, 4); }
    CASE(F, "bool value is 2", "bool 2") { b_header(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, G4_GGUF_VALUE_BOOL); b_u8(&b, 2); }
    CASE(F, "unknown array element type 99", "array type") { b_header(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 9); b_u32(&b, 99); b_u64(&b, 0); }
    CASE(F, "runs past", "array count*8 wraps") { b_header(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 9); b_u32(&b, G4_GGUF_VALUE_U64); b_u64(&b, 1ull << 61); b_fill(&b, 64); }
    CASE(F, "runs past", "array count huge") { b_header(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 9); b_u32(&b, G4_GGUF_VALUE_U8); b_u64(&b, UINT64_MAX); b_fill(&b, 64); }
    CASE(F, "runs past", "string array count") { b_header(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 9); b_u32(&b, G4_GGUF_VALUE_STRING); b_u64(&b, 1ull << 60); b_fill(&b, 64); }
    CASE(F, "truncated", "string array element length") { b_header(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 9); b_u32(&b, G4_GGUF_VALUE_STRING); b_u64(&b, 2); b_str(&b, "ok"); b_u64(&b, 1ull << 40); b_fill(&b, 8); }
    CASE(F, "bool element 1 is 3", "bool array") { b_header(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 9); b_u32(&b, G4_GGUF_VALUE_BOOL); b_u64(&b, 2); b_u8(&b, 1); b_u8(&b, 3); }
    CASE(F, "nested deeper", "deep nesting") {
        b_header(&b, 3, 0, 1);
        b_str(&b, "k");
        b_u32(&b, 9);
        for (int i = 0; i < 100000; i++) b_u32(&b, 9), b_u64(&b, 1);
        b_u32(&b, 0), b_u64(&b, 0);
    }
    CASE(F, "duplicate key \"a\"", "duplicate key") { b_header(&b, 3, 0, 3); b_kv_u32(&b, "a", 1); b_kv_u32(&b, "b", 1); b_kv_u32(&b, "a", 2); }
    CASE(F, "must be u32", "alignment type") { b_header(&b, 3, 0, 1); b_str(&b, "general.alignment"); b_u32(&b, G4_GGUF_VALUE_STRING); b_str(&b, "32"); }
    CASE(F, "power of two", "alignment 0") { b_header(&b, 3, 0, 1); b_kv_u32(&b, "general.alignment", 0); }
    CASE(F, "power of two", "alignment 48") { b_header(&b, 3, 0, 1); b_kv_u32(&b, "general.alignment", 48); }
    CASE(F, "past the end", "alignment 2^31 pushes data out") {
        b_header(&b, 3, 1, 1);
        b_kv_u32(&b, "general.alignment", 1u << 31);
        b_tensor(&b, "t", 1, ne1, G4_GGUF_TYPE_F32, 0);
        b_pad(&b, 64);
        b_fill(&b, 64);
    }
    CASE(F, "truncated", "tensor infos missing") { b_header(&b, 3, 2, 0); b_tensor(&b, "t", 1, ne1, 0, 0); b_fill(&b, 40); }
    CASE(F, "empty tensor name", "empty tensor name") one_tensor(&b, "", 1, ne1, G4_GGUF_TYPE_F32, 0, 64);
    CASE(F, "0 dimensions", "0 dims") one_tensor(&b, "t", 0, ne1, G4_GGUF_TYPE_F32, 0, 64);
    CASE(F, "5 dimensions", "5 dims") { uint64_t ne5[] = {1, 1, 1, 1, 1}; one_tensor(&b, "t", 5, ne5, G4_GGUF_TYPE_F32, 0, 64); }
    CASE(F, "too large", "dim 2^63") one_tensor(&b, "t", 1, ne_big, G4_GGUF_TYPE_I8, 0, 64);
    CASE(F, "overflows", "dims product overflows") one_tensor(&b, "t", 2, ne_ovf, G4_GGUF_TYPE_F32, 0, 64);
    CASE(F, "overflows", "empty but dims overflow") { uint64_t ne_z[] = {0, 1ull << 62, 4}; one_tensor(&b, "t", 3, ne_z, G4_GGUF_TYPE_F32, 0, 64); }
    CASE(F, "overflows", "bytes overflow") one_tensor(&b, "t", 3, ne_ovf2, G4_GGUF_TYPE_F64, 0, 64);
    CASE(F, "unknown tensor type 4", "removed type") one_tensor(&b, "t", 1, ne1, 4, 0, 64);
    CASE(F, "unknown tensor type 31", "removed type 31") one_tensor(&b, "t", 1, ne1, 31, 0, 64);
    CASE(F, "unknown tensor type 999", "type 999") one_tensor(&b, "t", 1, ne1, 999, 0, 64);
    CASE(F, "unknown tensor type 4294967295", "type max") one_tensor(&b, "t", 1, ne1, UINT32_MAX, 0, 64);
    CASE(F, "not a whole number of Q4_0 blocks", "partial block") one_tensor(&b, "t", 1, ne_q, G4_GGUF_TYPE_Q4_0, 0, 64);
    CASE(F, "tensor \"w.x\": offset 8 is not a multiple", "offset unaligned") one_tensor(&b, "w.x", 1, ne1, G4_GGUF_TYPE_I8, 8, 64);
    CASE(F, "past the end", "offset out of range") one_tensor(&b, "t", 1, ne1, G4_GGUF_TYPE_I8, 1ull << 40, 64);
    CASE(F, "past the end", "offset wraps") one_tensor(&b, "t", 1, ne1, G4_GGUF_TYPE_F32, UINT64_MAX - 31, 64);
    CASE(F, "past the end", "data truncated") one_tensor(&b, "t", 1, ne1, G4_GGUF_TYPE_F32, 0, 63);
    CASE(F, "past the end", "no data section") { b_header(&b, 3, 1, 0); b_tensor(&b, "t", 1, ne1, G4_GGUF_TYPE_I8, 0); }
    CASE(F, "overlaps", "overlapping tensors") {
        b_header(&b, 3, 2, 0);
        b_tensor(&b, "a", 1, ne1, G4_GGUF_TYPE_F32, 0);
        b_tensor(&b, "b", 1, ne1, G4_GGUF_TYPE_F32, 32);
        b_pad(&b, 32);
        b_fill(&b, 128);
    }
    CASE(F, "duplicate tensor \"a\"", "duplicate tensor") {
        b_header(&b, 3, 2, 0);
        b_tensor(&b, "a", 1, ne1, G4_GGUF_TYPE_F32, 0);
        b_tensor(&b, "a", 1, ne1, G4_GGUF_TYPE_F32, 64);
        b_pad(&b, 32);
        b_fill(&b, 128);
    }
    CASE(F, "truncated", "huge tensor name") { b_header(&b, 3, 1, 0); b_u64(&b, UINT64_MAX); b_fill(&b, 64); }
    CASE(F, "limit 65535", "tensor name too long") {
        b_header(&b, 3, 1, 0);
        b_u64(&b, 70000);
        for (int i = 0; i < 70000; i++) b_u8(&b, 'n');
        b_u32(&b, 1), b_u64(&b, 16), b_u32(&b, G4_GGUF_TYPE_I8), b_u64(&b, 0);
        b_pad(&b, 32);
        b_fill(&b, 16);
    }

    /* Legitimate edge cases. */
    g4_buf_reset(&b);
    b_header(&b, 2, 0, 0);
    expect_accepted(&b, "version 2, empty");
    g4_buf_reset(&b);
    b_header(&b, 3, 1, 0);
    b_tensor(&b, "z", 2, ne_zero_big, G4_GGUF_TYPE_F32, 0);
    expect_accepted(&b, "zero-size tensor without a data section");
    g4_buf_reset(&b);
    b_header(&b, 3, 2, 1);
    b_kv_u32(&b, "general.alignment", 1);
    b_tensor(&b, "a", 1, ne1, G4_GGUF_TYPE_I8, 0);
    b_tensor(&b, "b", 1, ne1, G4_GGUF_TYPE_I8, 16);
    b_fill(&b, 32);
    expect_accepted(&b, "alignment 1, tensors back to back");
    g4_buf_reset(&b);
    one_tensor(&b, "t", 1, ne1, G4_GGUF_TYPE_F32, 0, 64);
    expect_accepted(&b, "exactly enough data");

    /* With alignment 1 a float tensor can sit at an odd address: the file is valid but has no typed view. */
    uint64_t ne4[] = {4};
    size_t data_off = 0;
    for (int pass = 0; pass < 2; pass++) {
        uint64_t off = (data_off + 1) % 4 ? 1 : 2; /* the copy is malloc-aligned: data_off + off must not be */
        g4_buf_reset(&b);
        b_header(&b, 3, 1, 1);
        b_kv_u32(&b, "general.alignment", 1);
        b_tensor(&b, "odd", 1, ne4, G4_GGUF_TYPE_F32, off);
        data_off = b.len;
        b_fill(&b, 32);
        if (pass == 0) continue;
        g4_gguf *f = NULL;
        g4_err err = {0};
        unsigned char *keep = NULL;
        CHECK(parse_copy((const unsigned char *)b.data, b.len, "odd.gguf", &f, &err, &keep) == 0, "%s", err.msg);
        g4_tensor v;
        CHECK(f && g4_gguf_tensor_view(f, g4_gguf_tensor_find(f, "odd"), &v, &err) == GEMMA4C_ERR_FORMAT &&
                  strstr(err.msg, "not aligned"), "odd view: %s", err.msg);
        g4_gguf_close(f);
        free(keep);
    }
#undef CASE
    g4_buf_free(&b);
}

static void test_open_errors(const char *tmp) {
    char path[4200];
    g4_err err = {0};
    g4_gguf *f = NULL;
    snprintf(path, sizeof path, "%s/missing.gguf", tmp);
    CHECK(g4_gguf_open(path, &f, &err) == GEMMA4C_ERR_IO && strstr(err.msg, "missing.gguf") && f == NULL, "%s", err.msg);
    snprintf(path, sizeof path, "%s/empty.gguf", tmp);
    FILE *fp = fopen(path, "wb");
    if (fp) fclose(fp);
    CHECK(g4_gguf_open(path, &f, &err) < 0 && strstr(err.msg, "empty.gguf"), "empty file: %s", err.msg);
    CHECK(g4_gguf_open(tmp, &f, &err) < 0, "directory");
    g4_gguf_close(NULL);
    CHECK(g4_gguf_tensor_count(NULL) == 0 && g4_gguf_find_kv(NULL, "x") == NULL, "NULL handle");
}

int main(void) {
    char tmp[] = "/tmp/test_gguf.XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_type_table();
    test_round_trip(tmp, 32);
    test_round_trip(tmp, 64);
    test_writer_errors(tmp);
    test_disk_full(tmp);
    test_hostile();
    test_open_errors(tmp);
    g4t_rm_tree(tmp);
    return g4t_finish("test_gguf");
}
