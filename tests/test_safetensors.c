/* test_safetensors.c — safetensors reading of the golden files, write/read round trip, and hostile files and checkpoints. */
#include <dirent.h>
#include <stdint.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "format/safetensors.h"
#include "test.h"

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        g4t_failures++;
        return;
    }
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

/* A file with the given header text (its length field set to `claimed`, or the true length when 0) and
 * `data_len` bytes of data. */
static void write_st(const char *path, const char *header, uint64_t claimed, size_t data_len) {
    size_t hl = strlen(header);
    size_t padded = claimed ? hl : (hl + 7) / 8 * 8; /* as real writers do, so the data region is 8-aligned */
    size_t n = 8 + padded + data_len;
    unsigned char *buf = calloc(1, n);
    uint64_t len = claimed ? claimed : padded;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len >> (8 * i));
    memset(buf + 8, ' ', padded);
    memcpy(buf + 8, header, hl);
    hl = padded;
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = (unsigned char)i;
    write_bytes(path, buf, n);
    free(buf);
}

static void test_golden_checkpoint(const char *golden) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tiny/checkpoint", golden);
    g4_checkpoint *c = NULL;
    g4_err err = {0};
    int rc = g4_checkpoint_open(dir, &c, &err);
    CHECK(rc == 0, "open golden checkpoint: %s", err.msg);
    if (rc != 0) return;
    CHECK(g4_checkpoint_count(c) == 358, "count %zu", g4_checkpoint_count(c));
    const g4_tensor *t = g4_checkpoint_find(c, "model.language_model.embed_tokens.weight");
    CHECK(t && t->dtype == G4_DT_BF16 && t->ndim == 2 && t->shape[0] == 512 && t->shape[1] == 64 &&
              t->nbytes == 512 * 64 * 2,
          "embed_tokens");
    t = g4_checkpoint_find(c, "model.language_model.layers.3.self_attn.q_proj.weight");
    CHECK(t && t->dtype == G4_DT_BF16 && t->ndim == 2 && t->shape[0] == 4 * 32 && t->shape[1] == 64, "full q_proj");
    t = g4_checkpoint_find(c, "model.language_model.layers.6.mlp.gate_proj.weight");
    CHECK(t && t->shape[0] == 256 && t->shape[1] == 64, "double-wide gate_proj");
    /* The unused shard's tensors are listed in the index, so they are present (and merely never used). */
    t = g4_checkpoint_find(c, "model.language_model.layers.5.self_attn.k_proj.weight");
    CHECK(t && t->dtype == G4_DT_BF16 && t->shape[0] == 32 && t->shape[1] == 64, "unused shared-kv k_proj");
    t = g4_checkpoint_find(c, "model.vision_tower.patch_embedder.position_embedding_table");
    CHECK(t && t->ndim == 3 && t->shape[0] == 2 && t->shape[1] == 10240 && t->shape[2] == 32, "position table");
    t = g4_checkpoint_find(c, "model.audio_tower.layers.0.feed_forward1.ffw_layer_1.input_max");
    CHECK(t && t->ndim == 0 && t->nbytes == 2 && g4_tensor_numel(t) == 1, "scalar");
    t = g4_checkpoint_find(c, "model.language_model.layers.0.layer_scalar");
    CHECK(t && t->ndim == 1 && t->shape[0] == 1, "layer_scalar");
    if (t) {
        float v = g4_tensor_get_f32(t, 0);
        CHECK(v >= 0.4f && v <= 1.0f, "layer_scalar value %g", v);
    }
    CHECK(g4_checkpoint_find(c, "model.language_model.nonexistent") == NULL, "missing name");
    CHECK(g4_checkpoint_find(c, "") == NULL, "empty name");
    /* at() is sorted by name and every entry is findable. */
    int sorted = 1, found = 1;
    for (size_t i = 0; i < g4_checkpoint_count(c); i++) {
        const g4_tensor *a = g4_checkpoint_at(c, i);
        if (i && strcmp(g4_checkpoint_at(c, i - 1)->name, a->name) >= 0) sorted = 0;
        if (g4_checkpoint_find(c, a->name) != a) found = 0;
    }
    CHECK(sorted && found, "at/find consistent");
    CHECK(g4_checkpoint_at(c, g4_checkpoint_count(c)) == NULL, "at out of range");
    g4_checkpoint_close(c);
}

static void test_golden_files(const char *golden) {
    char path[4400];
    snprintf(path, sizeof path, "%s/tiny/reference/text.safetensors", golden);
    g4_st_file *f = NULL;
    g4_err err = {0};
    int rc = g4_st_open(path, &f, &err);
    CHECK(rc == 0, "open text.safetensors: %s", err.msg);
    if (rc == 0) {
        const g4_tensor *t = g4_st_find(f, "logits");
        CHECK(t && t->dtype == G4_DT_F32 && t->ndim == 2 && t->shape[0] == 48 && t->shape[1] == 512, "logits");
        char sh[64];
        if (t) CHECK(strcmp(g4_shape_str(t, sh, sizeof sh), "[48, 512]") == 0, "shape_str %s", sh);
        CHECK(g4_st_metadata(f, "about") != NULL, "metadata about");
        CHECK(g4_st_metadata(f, "nope") == NULL, "metadata missing key");
        CHECK(g4_st_count(f) == 8, "count %zu", g4_st_count(f));
        t = g4_st_find(f, "input_ids");
        CHECK(t && t->ndim >= 1, "input_ids");
        if (t) CHECK(g4_tensor_get_f32(t, 0) == 2.0f, "input_ids[0] = <bos>");
        g4_st_close(f);
    }
    /* Every golden safetensors file must pass the checks (alignment included). */
    const char *subdirs[] = {"tiny/reference", "tiny/checkpoint", "synthetic"};
    for (size_t s = 0; s < 3; s++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", golden, subdirs[s]);
        DIR *d = opendir(dir);
        CHECK(d != NULL, "cannot list %s", dir);
        if (!d) continue;
        struct dirent *de;
        int files = 0;
        while ((de = readdir(d)) != NULL) {
            size_t n = strlen(de->d_name);
            if (n < 12 || strcmp(de->d_name + n - 12, ".safetensors") != 0) continue;
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            rc = g4_st_open(path, &f, &err);
            CHECK(rc == 0, "open %s: %s", path, err.msg);
            if (rc == 0) g4_st_close(f);
            files++;
        }
        closedir(d);
        CHECK(files > 0, "no .safetensors file in %s", dir);
    }
}

static void test_round_trip(const char *tmp) {
    float a[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    uint16_t b[4] = {g4_f32_to_bf16(1.0f), g4_f32_to_bf16(-3.5f), g4_f32_to_bf16(0.1f), 0x7fc0};
    int64_t ids[3] = {2, 106, 262143};
    unsigned char u[5] = {1, 2, 3, 4, 255};
    uint16_t h[2] = {g4_f32_to_f16(0.5f), g4_f32_to_f16(-65504.0f)};
    g4_tensor ts[] = {
        {.name = "a.weight", .dtype = G4_DT_F32, .ndim = 2, .shape = {2, 3}, .data = a, .nbytes = sizeof a},
        {.name = "b \"quoted\"\\name", .dtype = G4_DT_BF16, .ndim = 1, .shape = {4}, .data = b, .nbytes = sizeof b},
        {.name = "ids", .dtype = G4_DT_I64, .ndim = 1, .shape = {3}, .data = ids, .nbytes = sizeof ids},
        {.name = "empty", .dtype = G4_DT_F32, .ndim = 2, .shape = {0, 4}, .data = NULL, .nbytes = 0},
        {.name = "scalar", .dtype = G4_DT_F16, .ndim = 0, .data = h, .nbytes = 2},
        {.name = "half", .dtype = G4_DT_F16, .ndim = 1, .shape = {2}, .data = h, .nbytes = sizeof h},
        {.name = "bytes", .dtype = G4_DT_U8, .ndim = 1, .shape = {5}, .data = u, .nbytes = sizeof u},
    };
    size_t nt = sizeof ts / sizeof *ts;
    g4_st_meta meta[] = {{"about", "round trip\n\"test\""}, {"format", "pt"}};
    char path[4200];
    snprintf(path, sizeof path, "%s/rt.safetensors", tmp);
    g4_err err = {0};
    int rc = g4_st_write(path, ts, nt, meta, 2, &err);
    CHECK(rc == 0, "write: %s", err.msg);
    g4_mapfile m;
    if (g4_mapfile_open(&m, path, &err) == 0) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | m.data[i];
        CHECK(hl % 8 == 0 && m.data[8 + hl - 1] != 0, "header padded to 8 (len %llu)", (unsigned long long)hl);
        g4_mapfile_close(&m);
    }
    g4_st_file *f = NULL;
    rc = g4_st_open(path, &f, &err);
    CHECK(rc == 0, "reopen: %s", err.msg);
    if (rc == 0) {
        CHECK(g4_st_count(f) == nt, "count");
        for (size_t i = 0; i < nt; i++) {
            const g4_tensor *t = g4_st_find(f, ts[i].name);
            CHECK(t != NULL, "find %s", ts[i].name);
            if (!t) continue;
            CHECK(g4_st_at(f, i) == t, "header order kept for %s", ts[i].name);
            CHECK(t->dtype == ts[i].dtype && t->ndim == ts[i].ndim && t->nbytes == ts[i].nbytes, "meta %s", ts[i].name);
            CHECK(memcmp(t->shape, ts[i].shape, sizeof(int64_t) * (size_t)ts[i].ndim) == 0, "shape %s", ts[i].name);
            CHECK(!t->nbytes || memcmp(t->data, ts[i].data, t->nbytes) == 0, "data %s", ts[i].name);
        }
        const char *about = g4_st_metadata(f, "about");
        CHECK(about && strcmp(about, "round trip\n\"test\"") == 0, "metadata round trip");
        const g4_tensor *t = g4_st_find(f, "half");
        CHECK(t && g4_tensor_get_f32(t, 0) == 0.5f && g4_tensor_get_f32(t, 1) == -65504.0f, "f16 values");
        t = g4_st_find(f, "a.weight");
        CHECK(t && g4_tensor_get_f32(t, 2) == 3.25f && isnan(g4_tensor_get_f32(t, 6)), "f32 values / bounds");
        g4_st_close(f);
    }

    /* A caller order that would misalign (bytes first) is rewritten largest-element first, still readable. */
    g4_tensor mis[] = {ts[6], ts[0], ts[5]};
    rc = g4_st_write(path, mis, 3, NULL, 0, &err);
    CHECK(rc == 0, "write misaligned order: %s", err.msg);
    rc = g4_st_open(path, &f, &err);
    CHECK(rc == 0, "reopen misaligned order: %s", err.msg);
    if (rc == 0) {
        const g4_tensor *t = g4_st_find(f, "a.weight");
        CHECK(t && memcmp(t->data, a, sizeof a) == 0, "data after reorder");
        g4_st_close(f);
    }
    /* No tensors at all is a valid (empty) file. */
    rc = g4_st_write(path, NULL, 0, NULL, 0, &err);
    CHECK(rc == 0, "write empty: %s", err.msg);
    rc = g4_st_open(path, &f, &err);
    CHECK(rc == 0 && g4_st_count(f) == 0, "reopen empty: %s", err.msg);
    if (rc == 0) g4_st_close(f);
    /* Inconsistent input to the writer is refused. */
    g4_tensor wrong = ts[0];
    wrong.nbytes = 5;
    CHECK(g4_st_write(path, &wrong, 1, NULL, 0, &err) == GEMMA4C_ERR_ARG, "writer checks nbytes");
    g4_tensor dup[2] = {ts[0], ts[0]};
    CHECK(g4_st_write(path, dup, 2, NULL, 0, &err) == GEMMA4C_ERR_ARG, "writer refuses duplicate names");
    CHECK(g4_st_write("/nonexistent-dir/x.safetensors", ts, 1, NULL, 0, &err) == GEMMA4C_ERR_IO, "writer io error");

    /* Truncated at every length: every prefix is rejected, none crashes. */
    snprintf(path, sizeof path, "%s/rt.safetensors", tmp);
    rc = g4_st_write(path, ts, nt, meta, 2, &err);
    char *img = NULL;
    size_t len = 0;
    if (rc == 0 && g4_read_file(path, 1 << 20, &img, &len, &err) == 0) {
        int accepted = 0;
        for (size_t k = 0; k < len; k++) {
            unsigned char *cut = malloc(k ? k : 1);
            memcpy(cut, img, k);
            if (g4_st_parse(cut, k, "cut", &f, &err) == 0) {
                accepted++;
                g4_st_close(f);
            }
            free(cut);
        }
        CHECK(accepted == 0, "%d truncated images accepted", accepted);
        /* Truncated files on disk too, at a few points. */
        size_t points[] = {1, 7, 8, 9, 20, len / 2, len - 1};
        char tp[4300];
        for (size_t i = 0; i < sizeof points / sizeof *points; i++) {
            snprintf(tp, sizeof tp, "%s/trunc%zu.safetensors", tmp, i);
            write_bytes(tp, img, points[i]);
            CHECK(g4_st_open(tp, &f, &err) < 0, "truncated file at %zu accepted", points[i]);
            CHECK(strstr(err.msg, tp) != NULL, "message names the file: %s", err.msg);
        }
        /* Every single-byte corruption of the header either parses cleanly or fails cleanly. */
        for (size_t k = 0; k < len && k < 8 + 400; k++) {
            unsigned char *bad = malloc(len);
            memcpy(bad, img, len);
            bad[k] ^= 0x5a;
            if (g4_st_parse(bad, len, "flip", &f, &err) == 0) g4_st_close(f);
            free(bad);
        }
        free(img);
    }
}

typedef struct bad_case {
    const char *header;
    uint64_t claimed; /* header length field, 0 = true length */
    size_t data_len;
    const char *must_name; /* substring the error must contain, or NULL */
} bad_case;

static void test_hostile_files(const char *tmp) {
    const bad_case cases[] = {
        {"{}", 1ull << 62, 0, "header length"},
        {"{}", 0xffffffffffffffffull, 0, "header length"},
        {"{}", 200ull * 1024 * 1024, 0, "header length"},
        {"{}", 3, 0, "header length"},
        {"{\"a\":", 0, 0, "JSON"},
        {"not json at all", 0, 0, "JSON"},
        {"[1,2,3]", 0, 0, "object"},
        {"\"str\"", 0, 0, "object"},
        {"{} xx", 0, 0, "trailing"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 4, "\"t\""},    /* past end */
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 0, 8, "\"t\""},    /* end < begin */
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 16, "\"t\""},   /* nbytes mismatch */
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 0, 16, "overlaps"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 16, "overlaps"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 0, 16, "duplicate"},
        {"{\"t\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, "dtype"},
        {"{\"t\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, "dtype"},
        {"{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, "dtype"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 0, 8, "overflow"},
        {"{\"t\":{\"dtype\":\"F64\",\"shape\":[1125899906842624,1125899906842624],\"data_offsets\":[0,8]}}", 0, 8, "overflow"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 0, 8, "shape"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 0, 8, "shape"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 0, 8, "shape"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 0, 8, "shape"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 0, 8, "shape"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 0, 8, "dimensions"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 0, 8, "data_offsets"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 0, 8, "data_offsets"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 0, 8, "data_offsets"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}", 0, 8, "data_offsets"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":\"0,8\"}}", 0, 8, "data_offsets"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}", 0, 16, "aligned"},
        {"{\"t\":[1,2]}", 0, 8, "\"t\""},
        {"{\"\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, "empty name"},
        {"{\"__metadata__\":{\"k\":5}}", 0, 0, "__metadata__"},
        {"{\"__metadata__\":[\"k\"]}", 0, 0, "__metadata__"},
    };
    char path[4300];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(path, sizeof path, "%s/bad%02zu.safetensors", tmp, i);
        write_st(path, cases[i].header, cases[i].claimed, cases[i].data_len);
        g4_st_file *f = NULL;
        g4_err err = {0};
        int rc = g4_st_open(path, &f, &err);
        CHECK(rc == GEMMA4C_ERR_FORMAT, "case %zu (%s) gives %d", i, cases[i].header, rc);
        if (rc == 0) {
            g4_st_close(f);
            continue;
        }
        CHECK(strstr(err.msg, path) != NULL, "case %zu message names the file: %s", i, err.msg);
        CHECK(strchr(err.msg, '\n') == NULL, "case %zu one line", i);
        if (cases[i].must_name)
            CHECK(strstr(err.msg, cases[i].must_name) != NULL, "case %zu message \"%s\" should mention %s", i, err.msg,
                  cases[i].must_name);
    }
    /* A header containing a NUL byte. */
    {
        unsigned char img[8 + 8] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, ' ', ' ', ' ', ' ', ' '};
        g4_st_file *f = NULL;
        g4_err err = {0};
        CHECK(g4_st_parse(img, sizeof img, "nul", &f, &err) == GEMMA4C_ERR_FORMAT, "NUL in header");
    }
    /* Accepted oddities: gaps between tensors, empty tensors anywhere, no tensors, null metadata. */
    const char *good[] = {
        "{}",
        "{\"__metadata__\":null}",
        "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},\"e\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[2,2]}}",
        "{\"t\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]},\"__metadata__\":{\"a\":\"b\"}}   ",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        snprintf(path, sizeof path, "%s/good%zu.safetensors", tmp, i);
        write_st(path, good[i], 0, 16);
        g4_st_file *f = NULL;
        g4_err err = {0};
        int rc = g4_st_open(path, &f, &err);
        CHECK(rc == 0, "good case %zu: %s", i, err.msg);
        if (rc == 0) g4_st_close(f);
    }
    g4_st_file *f = NULL;
    g4_err err = {0};
    snprintf(path, sizeof path, "%s/empty.safetensors", tmp);
    write_bytes(path, "", 0);
    CHECK(g4_st_open(path, &f, &err) < 0, "empty file");
    CHECK(g4_st_open("/nonexistent/x.safetensors", &f, &err) == GEMMA4C_ERR_IO, "missing file");
    CHECK(g4_st_open(tmp, &f, &err) < 0, "directory");
}

static const char *ST_A = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
static const char *ST_B = "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
static const char *ST_AB = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";

static void make_dir(char *out, size_t cap, const char *tmp, const char *name) {
    snprintf(out, cap, "%s/%s", tmp, name);
    mkdir(out, 0755);
}

static void put(const char *dir, const char *name, const char *text) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    write_bytes(p, text, strlen(text));
}

static void put_st(const char *dir, const char *name, const char *header) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    write_st(p, header, 0, 16);
}

static void expect_ckpt(const char *dir, int want_ok, const char *must_name, const char *what) {
    g4_checkpoint *c = NULL;
    g4_err err = {0};
    int rc = g4_checkpoint_open(dir, &c, &err);
    if (want_ok) {
        CHECK(rc == 0, "%s: %s", what, err.msg);
    } else {
        CHECK(rc < 0, "%s: should fail", what);
        if (rc < 0 && must_name) CHECK(strstr(err.msg, must_name) != NULL, "%s: message \"%s\" should mention %s", what, err.msg, must_name);
    }
    g4_checkpoint_close(c);
}

static void test_checkpoints(const char *tmp) {
    char d[4300];
    make_dir(d, sizeof d, tmp, "ck_index_ok");
    put_st(d, "s1.safetensors", ST_A);
    put_st(d, "s2.safetensors", ST_B);
    put(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
    expect_ckpt(d, 1, NULL, "index ok");
    {
        g4_checkpoint *c = NULL;
        g4_err err = {0};
        if (g4_checkpoint_open(d, &c, &err) == 0) {
            CHECK(g4_checkpoint_count(c) == 2 && g4_checkpoint_find(c, "a") && g4_checkpoint_find(c, "b"), "both shards");
            g4_checkpoint_close(c);
        }
    }

    make_dir(d, sizeof d, tmp, "ck_missing_shard");
    put_st(d, "s1.safetensors", ST_A);
    put(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s9.safetensors\"}}");
    expect_ckpt(d, 0, "s9.safetensors", "missing shard");

    make_dir(d, sizeof d, tmp, "ck_dotdot");
    put_st(d, "s1.safetensors", ST_A);
    put(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"../ck_index_ok/s1.safetensors\"}}");
    expect_ckpt(d, 0, "../ck_index_ok/s1.safetensors", "../ shard path");
    put(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"/etc/passwd\"}}");
    expect_ckpt(d, 0, "/etc/passwd", "absolute shard path");
    put(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"..\"}}");
    expect_ckpt(d, 0, NULL, ".. shard");
    put(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"\"}}");
    expect_ckpt(d, 0, NULL, "empty shard name");
    put(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":5}}");
    expect_ckpt(d, 0, NULL, "non-string shard");
    put(d, "model.safetensors.index.json", "{\"weight_map\":[]}");
    expect_ckpt(d, 0, "weight_map", "weight_map not an object");
    put(d, "model.safetensors.index.json", "{\"weight_map\":{}}");
    expect_ckpt(d, 0, "weight_map", "empty weight_map");
    put(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"s1.safe");
    expect_ckpt(d, 0, "JSON", "truncated index");
    put(d, "model.safetensors.index.json", "{\"weight_map\":{\"zz\":\"s1.safetensors\"}}");
    expect_ckpt(d, 0, "\"zz\"", "index names a tensor its shard lacks");

    make_dir(d, sizeof d, tmp, "ck_dup_across");
    put_st(d, "s1.safetensors", ST_A);
    put_st(d, "s2.safetensors", ST_A);
    put(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"x\":\"s2.safetensors\"}}");
    expect_ckpt(d, 0, NULL, "index tensor missing in second shard");
    put_st(d, "s2.safetensors", ST_AB);
    put(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
    expect_ckpt(d, 0, "more than one shard", "tensor in two shards");

    make_dir(d, sizeof d, tmp, "ck_bad_shard");
    put(d, "s1.safetensors", "garbage that is not a safetensors file");
    put(d, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"s1.safetensors\"}}");
    expect_ckpt(d, 0, "s1.safetensors", "corrupt shard");

    make_dir(d, sizeof d, tmp, "ck_single");
    put_st(d, "model.safetensors", ST_A);
    put_st(d, "other.safetensors", ST_B);
    expect_ckpt(d, 1, NULL, "model.safetensors preferred");

    make_dir(d, sizeof d, tmp, "ck_one_other");
    put_st(d, "weights.safetensors", ST_B);
    put(d, "config.json", "{}");
    expect_ckpt(d, 1, NULL, "single other .safetensors");

    make_dir(d, sizeof d, tmp, "ck_two");
    put_st(d, "x.safetensors", ST_A);
    put_st(d, "y.safetensors", ST_B);
    expect_ckpt(d, 0, "index", "two files, no index");

    make_dir(d, sizeof d, tmp, "ck_empty");
    expect_ckpt(d, 0, NULL, "empty dir");
    expect_ckpt("/nonexistent/dir", 0, NULL, "missing dir");
}

int main(void) {
    const char *golden = g4t_require_golden();
    char tmp[] = "/tmp/g4_test_st_XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_golden_checkpoint(golden);
    test_golden_files(golden);
    test_round_trip(tmp);
    test_hostile_files(tmp);
    test_checkpoints(tmp);
    g4t_rm_tree(tmp);
    return g4t_finish("test_safetensors");
}
