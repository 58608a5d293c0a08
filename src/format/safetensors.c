/* safetensors.c — validating reader (over mmap) and writer of safetensors files, and sharded checkpoint loading. */
#include "format/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/mapfile.h"

/* Real headers are well under 1 MB even for 2000-tensor checkpoints; the cap stops hostile files from making
 * the JSON parser allocate gigabytes. */
#define ST_MAX_HEADER ((uint64_t)100 * 1024 * 1024)
/* JSON numbers are doubles: integers beyond 2^53 cannot be represented exactly, so they are rejected. */
#define ST_MAX_JSON_INT 9007199254740992.0
#define ST_MAX_INDEX_BYTES ((size_t)64 * 1024 * 1024)

struct g4_st_file {
    g4_mapfile map; /* zero when the image came from g4_st_parse */
    const unsigned char *data;
    size_t size;
    char *label;
    g4_tensor *tensors; /* header order */
    size_t n;
    size_t *by_name; /* indices into tensors, sorted by name */
    char **meta_kv;  /* key, value, key, value ... */
    size_t n_meta;
};

struct g4_checkpoint {
    g4_st_file **files;
    size_t n_files;
    const g4_tensor **all; /* every tensor of every shard, sorted by name */
    size_t n;
};

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* Reads a non-negative JSON integer; -1 when the item is not one. */
static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double d = item->valuedouble;
    if (!(d >= 0.0) || d >= ST_MAX_JSON_INT || d != (double)(uint64_t)d) return -1;
    *out = (uint64_t)d;
    return 0;
}

/* qsort/bsearch helpers need the tensor array; a context struct would need qsort_r, so the sorted index stores
 * pointers instead for the comparison and is translated back. */
static int cmp_tensor_ptr_name(const void *a, const void *b) {
    const g4_tensor *ta = *(const g4_tensor *const *)a;
    const g4_tensor *tb = *(const g4_tensor *const *)b;
    return strcmp(ta->name, tb->name);
}

typedef struct span {
    uint64_t begin, end;
    size_t idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

void g4_st_close(g4_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    free(f->by_name);
    for (size_t i = 0; i < 2 * f->n_meta; i++) free(f->meta_kv[i]);
    free(f->meta_kv);
    free(f->label);
    g4_mapfile_close(&f->map);
    free(f);
}

static int parse_metadata(g4_st_file *f, const cJSON *meta, g4_err *err) {
    if (cJSON_IsNull(meta)) return 0;
    if (!cJSON_IsObject(meta))
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: __metadata__ is not an object", f->label);
    size_t n = (size_t)cJSON_GetArraySize(meta);
    if (n == 0) return 0;
    f->meta_kv = calloc(2 * n, sizeof *f->meta_kv);
    if (!f->meta_kv) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", f->label);
    for (const cJSON *it = meta->child; it; it = it->next) {
        if (!cJSON_IsString(it) || !it->string)
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: __metadata__ value \"%s\" is not a string", f->label,
                           it->string ? it->string : "?");
        char *k = dup_str(it->string), *v = dup_str(it->valuestring);
        if (!k || !v) {
            free(k);
            free(v);
            return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", f->label);
        }
        f->meta_kv[2 * f->n_meta] = k;
        f->meta_kv[2 * f->n_meta + 1] = v;
        f->n_meta++;
    }
    return 0;
}

/* Fills t from one header entry, checking every field against the data region of `region` bytes. */
static int parse_entry(g4_st_file *f, const cJSON *it, const unsigned char *region, uint64_t region_size,
                       g4_tensor *t, span *sp, g4_err *err) {
    const char *name = it->string;
    const char *lbl = f->label;
    if (!cJSON_IsObject(it)) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": entry is not an object", lbl, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(dt)) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": missing or non-string dtype", lbl, name);
    if (g4_dtype_from_name(dt->valuestring, &t->dtype) != 0)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": unknown dtype \"%.32s\"", lbl, name, dt->valuestring);
    if (!cJSON_IsArray(shape)) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": missing or non-array shape", lbl, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > G4_MAX_DIMS)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": %d dimensions (limit %d)", lbl, name, ndim, G4_MAX_DIMS);
    size_t es = g4_dtype_size(t->dtype);
    uint64_t numel = 1;
    int zero = 0;
    int d = 0;
    for (const cJSON *s = shape->child; s; s = s->next, d++) {
        uint64_t v;
        if (json_uint(s, &v) != 0 || v > (uint64_t)INT64_MAX)
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": shape[%d] is not a non-negative integer", lbl, name, d);
        t->shape[d] = (int64_t)v;
        if (v == 0) zero = 1;
        /* Overflow is judged only while the product is non-zero; a zero dimension makes the tensor empty. */
        if (!zero && numel > (uint64_t)INT64_MAX / es / v)
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": shape overflows", lbl, name);
        numel *= v;
    }
    t->ndim = ndim;
    if (zero) numel = 0;
    uint64_t nbytes = numel * es; /* cannot overflow: checked above */
    uint64_t b, e;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || json_uint(offs->child, &b) != 0 ||
        json_uint(offs->child->next, &e) != 0)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": data_offsets is not two non-negative integers", lbl, name);
    if (e < b) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": data_offsets end < begin", lbl, name);
    if (e > region_size)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": data_offsets [%llu, %llu] past the end of the data (%llu bytes)",
                       lbl, name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)region_size);
    if (e - b != nbytes)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": %llu bytes of data for %llu elements of %s", lbl, name,
                       (unsigned long long)(e - b), (unsigned long long)numel, g4_dtype_name(t->dtype));
    t->data = region + b;
    t->nbytes = (size_t)nbytes;
    /* Consumers read weights through typed pointers; a misaligned tensor would be undefined behaviour there. */
    if (nbytes && (uintptr_t)t->data % es != 0)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": data is not aligned to its %zu-byte elements", lbl, name, es);
    sp->begin = b;
    sp->end = e;
    return 0;
}

int g4_st_parse(const unsigned char *data, size_t size, const char *label, g4_st_file **out, g4_err *err) {
    *out = NULL;
    if (!label) label = "<memory>";
    if (size < 8) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: too short for a safetensors file (%zu bytes)", label, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | data[i];
    if (hlen > ST_MAX_HEADER)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: header length %llu is absurd (limit %llu)", label,
                       (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    if (hlen > size - 8)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: header length %llu exceeds the file (%zu bytes): truncated?", label,
                       (unsigned long long)hlen, size);
    if (hlen < 2) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: header too short", label);

    g4_st_file *f = calloc(1, sizeof *f);
    if (!f) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", label);
    f->data = data;
    f->size = size;
    f->label = dup_str(label);
    /* A private NUL-terminated copy keeps the JSON parser inside the header whatever the bytes are. */
    char *hdr = malloc((size_t)hlen + 1);
    cJSON *root = NULL;
    span *spans = NULL;
    const g4_tensor **sorted = NULL;
    int rc = 0;
    if (!f->label || !hdr) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", label);
        goto done;
    }
    memcpy(hdr, data + 8, (size_t)hlen);
    hdr[hlen] = '\0';
    if (memchr(hdr, '\0', (size_t)hlen)) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: header contains a NUL byte", label);
        goto done;
    }
    const char *end = NULL;
    root = cJSON_ParseWithOpts(hdr, &end, 0);
    if (!root) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu)", label,
                     (size_t)((end ? end : hdr) - hdr));
        goto done;
    }
    for (const char *p = end; p && *p; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: trailing bytes after the header JSON", label);
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: header is not a JSON object", label);
        goto done;
    }
    size_t n_items = (size_t)cJSON_GetArraySize(root);
    f->tensors = calloc(n_items ? n_items : 1, sizeof *f->tensors);
    spans = calloc(n_items ? n_items : 1, sizeof *spans);
    if (!f->tensors || !spans) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", label);
        goto done;
    }
    const unsigned char *region = data + 8 + hlen;
    uint64_t region_size = (uint64_t)size - 8 - hlen;
    int seen_meta = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (!it->string) {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: header entry without a name", label);
            goto done;
        }
        if (strcmp(it->string, "__metadata__") == 0) {
            if (seen_meta++) {
                rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: duplicate __metadata__", label);
                goto done;
            }
            if ((rc = parse_metadata(f, it, err)) != 0) goto done;
            continue;
        }
        if (it->string[0] == '\0') {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor with an empty name", label);
            goto done;
        }
        g4_tensor *t = &f->tensors[f->n];
        if ((rc = parse_entry(f, it, region, region_size, t, &spans[f->n], err)) != 0) goto done;
        t->name = dup_str(it->string);
        if (!t->name) {
            rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", label);
            goto done;
        }
        spans[f->n].idx = f->n;
        f->n++;
    }

    /* Overlapping tensors would alias weights silently: reject them (empty tensors occupy nothing). */
    qsort(spans, f->n, sizeof *spans, cmp_span);
    uint64_t reach = 0;
    size_t reach_idx = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (spans[i].begin == spans[i].end) continue;
        if (spans[i].begin < reach) {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\" overlaps tensor \"%s\"", label,
                         f->tensors[spans[i].idx].name, f->tensors[reach_idx].name);
            goto done;
        }
        reach = spans[i].end;
        reach_idx = spans[i].idx;
    }

    sorted = malloc((f->n ? f->n : 1) * sizeof *sorted);
    f->by_name = malloc((f->n ? f->n : 1) * sizeof *f->by_name);
    if (!sorted || !f->by_name) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", label);
        goto done;
    }
    for (size_t i = 0; i < f->n; i++) sorted[i] = &f->tensors[i];
    qsort(sorted, f->n, sizeof *sorted, cmp_tensor_ptr_name);
    for (size_t i = 0; i < f->n; i++) {
        if (i && strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: duplicate tensor \"%s\"", label, sorted[i]->name);
            goto done;
        }
        f->by_name[i] = (size_t)(sorted[i] - f->tensors);
    }

done:
    free(sorted);
    free(spans);
    cJSON_Delete(root);
    free(hdr);
    if (rc != 0) {
        g4_st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int g4_st_open(const char *path, g4_st_file **out, g4_err *err) {
    *out = NULL;
    g4_mapfile m;
    int rc = g4_mapfile_open(&m, path, err);
    if (rc != 0) return rc;
    rc = g4_st_parse(m.data, m.size, path, out, err);
    if (rc != 0) {
        g4_mapfile_close(&m);
        return rc;
    }
    (*out)->map = m;
    return 0;
}

size_t g4_st_count(const g4_st_file *f) { return f ? f->n : 0; }

const g4_tensor *g4_st_at(const g4_st_file *f, size_t i) {
    if (!f || i >= f->n) return NULL;
    return &f->tensors[i];
}

const g4_tensor *g4_st_find(const g4_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const g4_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *g4_st_metadata(const g4_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_kv[2 * i], key) == 0) return f->meta_kv[2 * i + 1];
    return NULL;
}

/* ---- checkpoints ---------------------------------------------------------------------------------------- */

void g4_checkpoint_close(g4_checkpoint *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_files; i++) g4_st_close(c->files[i]);
    free(c->files);
    free(c->all);
    free(c);
}

size_t g4_checkpoint_count(const g4_checkpoint *c) { return c ? c->n : 0; }

const g4_tensor *g4_checkpoint_at(const g4_checkpoint *c, size_t i) {
    if (!c || i >= c->n) return NULL;
    return c->all[i];
}

const g4_tensor *g4_checkpoint_find(const g4_checkpoint *c, const char *name) {
    if (!c || !name) return NULL;
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(name, c->all[mid]->name);
        if (r == 0) return c->all[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int join_path(char *out, size_t cap, const char *dir, const char *name, g4_err *err) {
    int w = snprintf(out, cap, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= cap) return g4_fail(err, GEMMA4C_ERR_ARG, "%s: path too long", dir);
    return 0;
}

/* Appends an opened shard and builds the combined name table once all are in (see finish_checkpoint). */
static int add_file(g4_checkpoint *c, const char *path, g4_err *err) {
    g4_st_file **nf = realloc(c->files, (c->n_files + 1) * sizeof *nf);
    if (!nf) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", path);
    c->files = nf;
    g4_st_file *f;
    int rc = g4_st_open(path, &f, err);
    if (rc != 0) return rc;
    c->files[c->n_files++] = f;
    return 0;
}

static int finish_checkpoint(g4_checkpoint *c, const char *dir, g4_err *err) {
    size_t total = 0;
    for (size_t i = 0; i < c->n_files; i++) total += c->files[i]->n;
    c->all = malloc((total ? total : 1) * sizeof *c->all);
    if (!c->all) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", dir);
    c->n = 0;
    for (size_t i = 0; i < c->n_files; i++)
        for (size_t j = 0; j < c->files[i]->n; j++) c->all[c->n++] = &c->files[i]->tensors[j];
    qsort(c->all, c->n, sizeof *c->all, cmp_tensor_ptr_name);
    for (size_t i = 1; i < c->n; i++) {
        if (strcmp(c->all[i - 1]->name, c->all[i]->name) == 0)
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\" appears in more than one shard", dir,
                           c->all[i]->name);
    }
    return 0;
}

/* Shard names come from a file we do not trust: only plain names inside the model directory are allowed. */
static int shard_name_ok(const char *s) {
    if (!s[0] || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
    for (const char *p = s; *p; p++)
        if (*p == '/' || *p == '\\') return 0;
    return 1;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int open_from_index(g4_checkpoint *c, const char *dir, const char *index_path, g4_err *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = g4_read_file(index_path, ST_MAX_INDEX_BYTES, &text, &len, err);
    if (rc != 0) return rc;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, NULL, 1);
    const char **names = NULL;
    char path[4096];
    if (!root || !cJSON_IsObject(root)) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: not a JSON object", index_path);
        goto done;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: missing or non-object weight_map", index_path);
        goto done;
    }
    size_t n = (size_t)cJSON_GetArraySize(wm);
    if (n == 0) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: weight_map is empty", index_path);
        goto done;
    }
    names = malloc(n * sizeof *names);
    if (!names) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", index_path);
        goto done;
    }
    size_t k = 0;
    for (const cJSON *it = wm->child; it; it = it->next) {
        if (!cJSON_IsString(it) || !it->string) {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: weight_map entry \"%s\" is not a string", index_path,
                         it->string ? it->string : "?");
            goto done;
        }
        if (!shard_name_ok(it->valuestring)) {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\": shard \"%.200s\" is not a plain file name in the model directory",
                         index_path, it->string, it->valuestring);
            goto done;
        }
        names[k++] = it->valuestring;
    }
    qsort(names, k, sizeof *names, cmp_str_ptr);
    for (size_t i = 0; i < k; i++) {
        if (i && strcmp(names[i], names[i - 1]) == 0) continue;
        if ((rc = join_path(path, sizeof path, dir, names[i], err)) != 0) goto done;
        if (!file_exists(path)) {
            rc = g4_fail(err, GEMMA4C_ERR_IO, "%s: shard \"%s\" named by the index is missing", dir, names[i]);
            goto done;
        }
        if ((rc = add_file(c, path, err)) != 0) goto done;
    }
    /* Every tensor the index names must be in the shard it names; a mismatch means a broken download. */
    for (const cJSON *it = wm->child; it; it = it->next) {
        const g4_st_file *f = NULL;
        for (size_t i = 0; i < c->n_files && !f; i++) {
            const char *base = strrchr(c->files[i]->label, '/');
            base = base ? base + 1 : c->files[i]->label;
            if (strcmp(base, it->valuestring) == 0) f = c->files[i];
        }
        if (!f || !g4_st_find(f, it->string)) {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: tensor \"%s\" is not in shard \"%s\" where the index says it is",
                         dir, it->string, it->valuestring);
            goto done;
        }
    }
    rc = finish_checkpoint(c, dir, err);
done:
    free(names);
    cJSON_Delete(root);
    free(text);
    return rc;
}

static int has_st_suffix(const char *s) {
    size_t n = strlen(s), m = strlen(".safetensors");
    return n > m && strcmp(s + n - m, ".safetensors") == 0;
}

int g4_checkpoint_open(const char *dir, g4_checkpoint **out, g4_err *err) {
    *out = NULL;
    g4_checkpoint *c = calloc(1, sizeof *c);
    if (!c) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", dir);
    char path[4096];
    int rc = join_path(path, sizeof path, dir, "model.safetensors.index.json", err);
    if (rc == 0) {
        if (file_exists(path)) {
            rc = open_from_index(c, dir, path, err);
        } else if ((rc = join_path(path, sizeof path, dir, "model.safetensors", err)) == 0 && file_exists(path)) {
            rc = add_file(c, path, err);
            if (rc == 0) rc = finish_checkpoint(c, dir, err);
        } else if (rc == 0) {
            DIR *d = opendir(dir);
            if (!d) {
                rc = g4_fail(err, GEMMA4C_ERR_IO, "%s: %s", dir, strerror(errno));
            } else {
                char found[1024] = "";
                int count = 0;
                struct dirent *de;
                while ((de = readdir(d)) != NULL) {
                    if (!has_st_suffix(de->d_name)) continue;
                    if (join_path(path, sizeof path, dir, de->d_name, err) != 0 || !file_exists(path)) continue;
                    if (count++ == 0) snprintf(found, sizeof found, "%s", de->d_name);
                }
                closedir(d);
                if (count == 0)
                    rc = g4_fail(err, GEMMA4C_ERR_IO, "%s: no model.safetensors.index.json and no .safetensors file", dir);
                else if (count > 1)
                    rc = g4_fail(err, GEMMA4C_ERR_FORMAT,
                                 "%s: %d .safetensors files but no model.safetensors.index.json to say which to use", dir,
                                 count);
                else if ((rc = join_path(path, sizeof path, dir, found, err)) == 0 &&
                         (rc = add_file(c, path, err)) == 0)
                    rc = finish_checkpoint(c, dir, err);
            }
        }
    }
    if (rc != 0) {
        g4_checkpoint_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* ---- writer ----------------------------------------------------------------------------------------------- */

static int put_json_string(g4_buf *b, const char *s) {
    if (g4_buf_puts(b, "\"")) return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int r;
        if (*p == '"')
            r = g4_buf_puts(b, "\\\"");
        else if (*p == '\\')
            r = g4_buf_puts(b, "\\\\");
        else if (*p < 0x20)
            r = g4_buf_printf(b, "\\u%04x", *p);
        else
            r = g4_buf_append(b, p, 1);
        if (r) return -1;
    }
    return g4_buf_puts(b, "\"");
}

static int cmp_elemsize_desc(const void *a, const void *b) {
    const g4_tensor *x = *(const g4_tensor *const *)a, *y = *(const g4_tensor *const *)b;
    size_t ex = g4_dtype_size(x->dtype), ey = g4_dtype_size(y->dtype);
    if (ex != ey) return ex > ey ? -1 : 1;
    return x < y ? -1 : (x > y); /* stable: keep the caller's order within a size */
}

int g4_st_write(const char *path, const g4_tensor *tensors, size_t n, const g4_st_meta *meta, size_t n_meta,
                g4_err *err) {
    const g4_tensor **order = malloc((n ? n : 1) * sizeof *order);
    g4_buf h = {0};
    FILE *fp = NULL;
    int rc = 0;
    if (!order) return g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory", path);
    int misaligned = 0;
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const g4_tensor *t = &tensors[i];
        order[i] = t;
        if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0 || g4_dtype_size(t->dtype) == 0 ||
            t->ndim < 0 || t->ndim > G4_MAX_DIMS) {
            rc = g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor %zu has an invalid name, dtype or rank", path, i);
            goto done;
        }
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || (t->shape[d] && numel > INT64_MAX / t->shape[d])) {
                rc = g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor \"%s\": invalid shape", path, t->name);
                goto done;
            }
            numel *= t->shape[d];
        }
        size_t es = g4_dtype_size(t->dtype);
        if ((uint64_t)numel > SIZE_MAX / es || (size_t)numel * es != t->nbytes || (t->nbytes && !t->data)) {
            rc = g4_fail(err, GEMMA4C_ERR_ARG, "%s: tensor \"%s\": nbytes %zu does not match its shape and dtype", path,
                         t->name, t->nbytes);
            goto done;
        }
        if (off % es) misaligned = 1;
        off += t->nbytes;
    }
    /* A file with a repeated name would be refused on reading, so refuse to write it. */
    qsort(order, n, sizeof *order, cmp_tensor_ptr_name);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            rc = g4_fail(err, GEMMA4C_ERR_ARG, "%s: duplicate tensor \"%s\"", path, order[i]->name);
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++) order[i] = &tensors[i];
    /* Readers (ours included) need each tensor aligned to its element size; when the caller's order breaks
     * that, fall back to the Hugging Face layout: larger elements first. */
    if (misaligned) qsort(order, n, sizeof *order, cmp_elemsize_desc);

    off = 0;
    int r = g4_buf_puts(&h, "{");
    if (n_meta) {
        r |= g4_buf_puts(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i) r |= g4_buf_puts(&h, ",");
            r |= put_json_string(&h, meta[i].key ? meta[i].key : "");
            r |= g4_buf_puts(&h, ":");
            r |= put_json_string(&h, meta[i].value ? meta[i].value : "");
        }
        r |= g4_buf_puts(&h, "}");
    }
    for (size_t i = 0; i < n; i++) {
        const g4_tensor *t = order[i];
        if (i || n_meta) r |= g4_buf_puts(&h, ",");
        r |= put_json_string(&h, t->name);
        r |= g4_buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", g4_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) r |= g4_buf_printf(&h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        r |= g4_buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                           (unsigned long long)(off + t->nbytes));
        off += t->nbytes;
    }
    r |= g4_buf_puts(&h, "}");
    while (!r && h.len % 8) r |= g4_buf_puts(&h, " ");
    if (r) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "%s: out of memory building the header", path);
        goto done;
    }
    fp = fopen(path, "wb");
    if (!fp) {
        rc = g4_fail(err, GEMMA4C_ERR_IO, "%s: %s", path, strerror(errno));
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(h.data, 1, h.len, fp) == h.len;
    for (size_t i = 0; ok && i < n; i++)
        if (order[i]->nbytes) ok = fwrite(order[i]->data, 1, order[i]->nbytes, fp) == order[i]->nbytes;
    if (fclose(fp) != 0) ok = 0;
    fp = NULL;
    if (!ok) {
        rc = g4_fail(err, GEMMA4C_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        remove(path);
    }
done:
    g4_buf_free(&h);
    free(order);
    return rc;
}
