/* tokenizer.c — Hugging Face tokenizer.json BPE: load, encode and decode exactly as the `tokenizers` library does. */
#include "text/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <zlib.h>

#include "core/mapfile.h"
#include "text/utf8.h"

/* Bounds for hostile files: the real Gemma tokenizer.json is 33 MB, nothing legitimate comes near these. */
#define TK_MAX_FILE_BYTES ((size_t)512 << 20)
#define TK_MAX_JSON_BYTES ((size_t)1 << 30)
#define TK_MAX_DEPTH 128
#define TK_MAX_STEPS 32      /* normalizer / pre-tokenizer / decoder steps after flattening Sequences */
#define TK_MAX_SEQ_NESTING 8 /* Sequence inside Sequence */
#define TK_ID_SLACK 65536    /* ids may leave gaps, but only this many beyond twice the number of tokens */
#define TK_BYTE_LEVEL_MAX_VOCAB (1 << 24)

/* ------------------------------------------------------------------------------------------------------------ */
/* Data structures                                                                                               */

/* A slice of the tokenizer's string pool; offsets (not pointers) because the pool grows while loading. */
typedef struct tk_str {
    uint32_t off, len;
} tk_str;

enum { ID_PRESENT = 1, ID_MODEL = 2, ID_ADDED = 4, ID_SPECIAL = 8 };

typedef struct tk_vslot {
    uint32_t tag;      /* high hash bits, to skip most string compares */
    uint32_t id1;      /* id + 1; 0: empty, so that calloc'd pages need no filling */
    uint32_t off, len; /* the text, without a trip through the id table */
} tk_vslot;

typedef struct tk_mslot {
    uint64_t key; /* (left id + 1) << 32 | (right id + 1); 0: empty, so that calloc'd pages need no filling */
    uint32_t rank;
    int32_t new_id;
} tk_mslot;

typedef struct tk_added {
    tk_str text;
    int32_t id;
    bool special, single_word, lstrip, rstrip, normalized;
} tk_added;

typedef struct tk_trie_node {
    int32_t first_child, next_sibling;
    int32_t added; /* index into added[], or -1 */
    unsigned char byte;
} tk_trie_node;

typedef struct tk_trie {
    tk_trie_node *nodes; /* nodes[0] is the root */
    size_t n, cap;
    bool starts[256]; /* first bytes of any token: most text positions are rejected by one lookup */
} tk_trie;

enum { NORM_REPLACE, NORM_PREPEND };
typedef struct tk_norm_step {
    int kind;
    tk_str pattern, content;
} tk_norm_step;

enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
typedef struct tk_split_step {
    tk_str pattern;
    int behavior;
    bool invert;
} tk_split_step;

enum { DEC_REPLACE, DEC_BYTE_FALLBACK, DEC_FUSE, DEC_STRIP };
typedef struct tk_dec_step {
    int kind;
    tk_str pattern, content; /* Replace; Strip keeps its character in content */
    size_t start, stop;      /* Strip */
} tk_dec_step;

struct g4_tokenizer {
    g4_buf pool; /* every token text and pattern */

    int32_t n_ids; /* max id + 1 */
    tk_str *piece; /* per id */
    uint8_t *flags;

    tk_vslot *vocab; /* the BPE model's vocabulary only (added-only tokens are not BPE pieces) */
    size_t vocab_mask;
    tk_mslot *merges;
    size_t merge_mask, n_merges;

    int32_t byte_id[256]; /* <0xNN> pieces for byte fallback, -1 where missing */
    bool byte_fallback, fuse_unk, ignore_merges;
    bool has_unk;
    tk_str unk_text;
    int32_t unk_id; /* -1 when the unk token is not in the vocabulary (an error only once it is needed) */
    bool has_prefix, has_suffix;
    tk_str prefix, suffix;

    tk_added *added;
    size_t n_added, cap_added;
    tk_trie raw_trie;  /* normalized == false: matched in the raw text */
    tk_trie norm_trie; /* normalized == true: matched in each normalized piece */

    tk_norm_step norm[TK_MAX_STEPS];
    size_t n_norm;
    tk_split_step split[TK_MAX_STEPS];
    size_t n_split;
    bool has_decoder, decodes_bytes;
    tk_dec_step dec[TK_MAX_STEPS];
    size_t n_dec;
};

/* Large zero-filled blocks (hash tables, the inflated file). Mapped with MAP_POPULATE they are faulted in by one
 * call instead of one page fault per 4 KiB on first touch, which took a quarter of the load time on virtual
 * machines. Blocks past TK_POPULATE_MAX are mapped lazily, so that a lying gzip header commits nothing. */
#define TK_BIG_BLOCK ((size_t)1 << 20)
#define TK_POPULATE_MAX ((size_t)128 << 20)

static void *big_calloc(size_t bytes) {
    if (bytes < TK_BIG_BLOCK) return calloc(1, bytes ? bytes : 1);
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
#ifdef MAP_POPULATE
    if (bytes <= TK_POPULATE_MAX) flags |= MAP_POPULATE;
#endif
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* bytes: what big_calloc was given. */
static void big_free(void *p, size_t bytes) {
    if (!p) return;
    if (bytes < TK_BIG_BLOCK)
        free(p);
    else
        munmap(p, bytes);
}

static const char *pool_at(const g4_tokenizer *t, tk_str s) { return t->pool.data ? t->pool.data + s.off : ""; }

static int nomem(g4_err *err) { return g4_fail(err, GEMMA4C_ERR_NOMEM, "tokenizer: out of memory"); }

static int pool_add(g4_tokenizer *t, const char *s, size_t n, tk_str *out, g4_err *err) {
    if (t->pool.len + n >= UINT32_MAX) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer: token texts exceed 4 GiB");
    out->off = (uint32_t)t->pool.len;
    out->len = (uint32_t)n;
    return g4_buf_append(&t->pool, s, n) ? nomem(err) : 0;
}

static bool str_eq(const g4_tokenizer *t, tk_str a, const char *s, size_t n) {
    return a.len == n && (n == 0 || memcmp(pool_at(t, a), s, n) == 0);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* UTF-8                                                                                                         */

/* One character for BPE: a well-formed sequence, or a single byte of invalid input (it then goes to byte fallback). */
static size_t char_len(const char *s, size_t n) {
    size_t k = g4_utf8_len(s, n);
    return k ? k : 1;
}

/* Decodes the character at s for the Unicode-property tests; a byte of invalid input decodes to -1 (no
 * property) with length 1. */
static size_t char_decode(const char *s, size_t n, int32_t *cp) {
    uint32_t c;
    size_t k = g4_utf8_decode(s, n, &c);
    *cp = k ? (int32_t)c : -1;
    return k ? k : 1;
}

/* Start of the character that ends at s[end]. */
static size_t utf8_prev(const char *s, size_t end) {
    size_t i = end - 1;
    size_t floor = end >= 4 ? end - 4 : 0;
    while (i > floor && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return char_len(s + i, end - i) == end - i ? i : end - 1;
}

/* Rust's char::is_whitespace (the White_Space property), which tokenizers uses for lstrip / rstrip. */
static bool is_unicode_space(int32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Common non-ASCII characters outside the regex class \w (letters, marks, decimal digits, connector punctuation):
 * punctuation, other numbers, symbols, arrows, box drawing and block elements (Gemma's U+2581 among them), emoji,
 * private use. */
static const int32_t NON_WORD_RANGES[][2] = {
    {0x80, 0xA9},        {0xAB, 0xB4},       {0xB6, 0xB9},       {0xBB, 0xBF},       {0xD7, 0xD7},
    {0xF7, 0xF7},        {0x2C2, 0x2C5},     {0x2D2, 0x2DF},     {0x2E5, 0x2EB},     {0x2ED, 0x2ED},
    {0x2EF, 0x2FF},      {0x2000, 0x200B},   {0x200E, 0x203E},   {0x2041, 0x2053},   {0x2055, 0x206F},
    {0x20A0, 0x20CF},    {0x2190, 0x245F},   {0x2500, 0x2BFF},   {0x2E00, 0x2E7F},   {0x3000, 0x3004},
    {0x3008, 0x3020},    {0x3030, 0x3030},   {0x3036, 0x3037},   {0x303D, 0x303F},   {0x30FB, 0x30FB},
    {0xE000, 0xF8FF},    {0xFE10, 0xFE1F},   {0xFE30, 0xFE32},   {0xFE35, 0xFE4C},   {0xFE50, 0xFE6F},
    {0xFF01, 0xFF0F},    {0xFF1A, 0xFF20},   {0xFF3B, 0xFF3E},   {0xFF40, 0xFF40},   {0xFF5B, 0xFF65},
    {0xFFF0, 0xFFFF},    {0x1F000, 0x1F0FF}, {0x1F1E6, 0x1F1FF}, {0x1F300, 0x1FAFF}, {0xE0000, 0xE00FF},
    {0xF0000, 0x10FFFF},
};

/* single_word boundaries: the library tests the regex class \w. Without the full Unicode tables, non-ASCII
 * characters count as word characters unless they fall in one of the ranges above. */
static bool is_word_char(int32_t c) {
    if (c < 0) return false;
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (is_unicode_space(c)) return false;
    for (size_t i = 0; i < sizeof NON_WORD_RANGES / sizeof NON_WORD_RANGES[0]; i++)
        if (c >= NON_WORD_RANGES[i][0] && c <= NON_WORD_RANGES[i][1]) return false;
    return true;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Hash tables                                                                                                   */

static uint64_t mix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0x100000001b3ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x9fb21c651e98df25ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    return mix64(h ^ w);
}

static size_t table_size_for(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

/* Loading does about two million lookups in tables far larger than any cache; issuing the memory reads of a batch
 * of lookups before using any of them overlaps their latency (several times faster than one at a time). */
#if defined(__GNUC__)
#define TK_PREFETCH(p) __builtin_prefetch(p)
#else
#define TK_PREFETCH(p) ((void)(p))
#endif
#define TK_BATCH 64

static int32_t vocab_find_h(const g4_tokenizer *t, const char *s, size_t n, uint64_t h) {
    if (!t->vocab) return -1;
    uint32_t tag = (uint32_t)(h >> 32);
    const char *pool = pool_at(t, (tk_str){0, 0});
    for (size_t i = h & t->vocab_mask;; i = (i + 1) & t->vocab_mask) {
        const tk_vslot *e = &t->vocab[i];
        if (!e->id1) return -1;
        if (e->tag == tag && e->len == n && memcmp(pool + e->off, s, n) == 0) return (int32_t)e->id1 - 1;
    }
}

static int32_t vocab_find(const g4_tokenizer *t, const char *s, size_t n) {
    return vocab_find_h(t, s, n, hash_bytes(s, n));
}

typedef struct tk_lookup {
    const char *s;
    size_t n;
    uint64_t h;
    int32_t id;
} tk_lookup;

/* vocab_find for k texts at once: slots first, then the candidate texts, then the compares. */
static void vocab_find_many(const g4_tokenizer *t, tk_lookup *q, size_t k) {
    if (!t->vocab) {
        for (size_t i = 0; i < k; i++) q[i].id = -1;
        return;
    }
    for (size_t i = 0; i < k; i++) {
        q[i].h = hash_bytes(q[i].s, q[i].n);
        TK_PREFETCH(&t->vocab[q[i].h & t->vocab_mask]);
    }
    const char *pool = pool_at(t, (tk_str){0, 0});
    for (size_t i = 0; i < k; i++) {
        uint32_t tag = (uint32_t)(q[i].h >> 32);
        for (size_t j = q[i].h & t->vocab_mask; t->vocab[j].id1; j = (j + 1) & t->vocab_mask)
            if (t->vocab[j].tag == tag) {
                TK_PREFETCH(pool + t->vocab[j].off);
                break;
            }
    }
    for (size_t i = 0; i < k; i++) q[i].id = vocab_find_h(t, q[i].s, q[i].n, q[i].h);
}

static int vocab_insert(g4_tokenizer *t, int32_t id, uint64_t h, g4_err *err) {
    tk_str p = t->piece[id];
    const char *s = pool_at(t, p);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = h & t->vocab_mask;
    for (; t->vocab[i].id1; i = (i + 1) & t->vocab_mask) {
        const tk_vslot *e = &t->vocab[i];
        if (e->tag == tag && e->len == p.len && memcmp(pool_at(t, (tk_str){e->off, e->len}), s, p.len) == 0)
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer: vocab token \"%.*s\" appears twice (ids %d and %d)",
                           (int)(p.len > 64 ? 64 : p.len), s, (int)e->id1 - 1, (int)id);
    }
    t->vocab[i] = (tk_vslot){tag, (uint32_t)id + 1, p.off, p.len};
    return 0;
}

/* Indexes every model-vocabulary id by its text; two ids with one text is a broken file. */
static int vocab_build(g4_tokenizer *t, size_t n_model, g4_err *err) {
    size_t cap = table_size_for(n_model);
    t->vocab = big_calloc(cap * sizeof *t->vocab);
    if (!t->vocab) return nomem(err);
    t->vocab_mask = cap - 1;
    int32_t batch[TK_BATCH];
    uint64_t hash[TK_BATCH];
    for (int32_t id = 0; id < t->n_ids;) {
        size_t k = 0;
        for (; id < t->n_ids && k < TK_BATCH; id++) {
            if (!(t->flags[id] & ID_MODEL)) continue;
            batch[k] = id;
            hash[k] = hash_bytes(pool_at(t, t->piece[id]), t->piece[id].len);
            TK_PREFETCH(&t->vocab[hash[k] & t->vocab_mask]);
            k++;
        }
        for (size_t i = 0; i < k; i++) {
            int rc = vocab_insert(t, batch[i], hash[i], err);
            if (rc) return rc;
        }
    }
    return 0;
}

static uint64_t merge_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a + 1) << 32 | ((uint64_t)(uint32_t)b + 1);
}

static bool merge_find(const g4_tokenizer *t, int32_t a, int32_t b, uint32_t *rank, int32_t *new_id) {
    if (!t->merges) return false;
    uint64_t key = merge_key(a, b);
    for (size_t i = mix64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const tk_mslot *e = &t->merges[i];
        if (!e->key) return false;
        if (e->key == key) {
            *rank = e->rank;
            *new_id = e->new_id;
            return true;
        }
    }
}

/* Returns whether the pair is new. A pair listed twice keeps the later rank, as the library's HashMap collect does. */
static bool merge_place(tk_mslot *table, size_t mask, tk_mslot m) {
    size_t i = mix64(m.key) & mask;
    while (table[i].key && table[i].key != m.key) i = (i + 1) & mask;
    bool fresh = !table[i].key;
    table[i] = m;
    return fresh;
}

static int merge_reserve(g4_tokenizer *t, size_t n, g4_err *err) {
    size_t old_cap = t->merges ? t->merge_mask + 1 : 0, cap = table_size_for(n);
    if (cap <= old_cap) return 0;
    tk_mslot *table = big_calloc(cap * sizeof *table);
    if (!table) return nomem(err);
    for (size_t i = 0; i < old_cap; i++)
        if (t->merges[i].key) merge_place(table, cap - 1, t->merges[i]);
    big_free(t->merges, old_cap * sizeof *table);
    t->merges = table;
    t->merge_mask = cap - 1;
    return 0;
}

static int merge_insert(g4_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t new_id, g4_err *err) {
    if (!t->merges || 2 * (t->n_merges + 1) > t->merge_mask + 1) {
        int rc = merge_reserve(t, 2 * (t->n_merges + 1), err);
        if (rc) return rc;
    }
    t->n_merges += merge_place(t->merges, t->merge_mask, (tk_mslot){merge_key(a, b), rank, new_id});
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Id table                                                                                                      */

static int ids_resize(g4_tokenizer *t, int32_t n, g4_err *err) {
    if (n <= t->n_ids) return 0;
    tk_str *piece = realloc(t->piece, (size_t)n * sizeof *piece);
    if (!piece) return nomem(err);
    t->piece = piece;
    uint8_t *flags = realloc(t->flags, (size_t)n);
    if (!flags) return nomem(err);
    t->flags = flags;
    memset(t->piece + t->n_ids, 0, (size_t)(n - t->n_ids) * sizeof *piece);
    memset(t->flags + t->n_ids, 0, (size_t)(n - t->n_ids));
    t->n_ids = n;
    return 0;
}

static bool id_known(const g4_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->flags[id] & ID_PRESENT);
}

static void find_byte_ids(g4_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = vocab_find(t, name, 6);
    }
}

/* ------------------------------------------------------------------------------------------------------------ */
/* A small strict JSON scanner for the two huge arrays (vocab, merges) and the document's outline. cJSON builds a
 * node per value, which takes about a second for the 770k entries of a Gemma tokenizer; everything else is small
 * and goes through cJSON. */

typedef struct jscan {
    const char *begin, *p, *end;
    g4_err *err;
} jscan;

typedef struct tk_span {
    const char *p; /* NULL: absent */
    size_t n;
    size_t count; /* elements of an array, members of an object */
} tk_span;

static int js_fail(jscan *s, const char *what) {
    return g4_fail(s->err, GEMMA4C_ERR_FORMAT, "tokenizer.json: invalid JSON near byte %zu: %s",
                   (size_t)(s->p - s->begin), what);
}

static void js_ws(jscan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

static bool js_at(jscan *s, char c) {
    js_ws(s);
    return s->p < s->end && *s->p == c;
}

static int js_expect(jscan *s, char c, const char *what) {
    if (!js_at(s, c)) return js_fail(s, what);
    s->p++;
    return 0;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int js_hex4(jscan *s, uint32_t *v) {
    if (s->end - s->p < 4) return js_fail(s, "truncated \\u escape");
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(s->p[i]);
        if (d < 0) return js_fail(s, "bad \\u escape");
        x = x * 16 + (uint32_t)d;
    }
    s->p += 4;
    *v = x;
    return 0;
}

/* \uXXXX, with surrogate pairs joined and lone surrogates rejected (as serde_json does). */
static int js_unicode_escape(jscan *s, uint32_t *cp) {
    uint32_t hi = 0;
    int rc = js_hex4(s, &hi);
    if (rc) return rc;
    if (hi >= 0xDC00 && hi <= 0xDFFF) return js_fail(s, "lone low surrogate in \\u escape");
    if (hi < 0xD800 || hi > 0xDBFF) {
        *cp = hi;
        return 0;
    }
    if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u') return js_fail(s, "lone high surrogate in \\u escape");
    s->p += 2;
    uint32_t lo = 0;
    rc = js_hex4(s, &lo);
    if (rc) return rc;
    if (lo < 0xDC00 || lo > 0xDFFF) return js_fail(s, "bad surrogate pair in \\u escape");
    *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    return 0;
}

static int js_escape(jscan *s, g4_buf *out) {
    s->p++; /* the backslash */
    if (s->p >= s->end) return js_fail(s, "truncated escape");
    char c = *s->p++;
    char lit;
    switch (c) {
    case '"': lit = '"'; break;
    case '\\': lit = '\\'; break;
    case '/': lit = '/'; break;
    case 'b': lit = '\b'; break;
    case 'f': lit = '\f'; break;
    case 'n': lit = '\n'; break;
    case 'r': lit = '\r'; break;
    case 't': lit = '\t'; break;
    case 'u': {
        uint32_t cp = 0;
        int rc = js_unicode_escape(s, &cp);
        if (rc) return rc;
        char utf8[4];
        size_t len = g4_utf8_encode(cp, utf8); /* never 0: the escape is a scalar value, surrogates paired */
        if (out && g4_buf_append(out, utf8, len)) return nomem(s->err);
        return 0;
    }
    default: return js_fail(s, "unknown escape");
    }
    if (out && g4_buf_append(out, &lit, 1)) return nomem(s->err);
    return 0;
}

/* Length of the run of string bytes needing no attention (not '"', '\\' or a control character), eight at a time. */
static size_t plain_run(const char *p, const char *end) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    const char *q = p;
    while (end - q >= 8) {
        uint64_t w, quote, slash;
        memcpy(&w, q, 8);
        quote = w ^ (ones * '"');
        slash = w ^ (ones * '\\');
        /* A high bit here marks a zero byte of quote / slash or a byte below 0x20 (with possible false alarms
         * above a true one, which the byte loop below sorts out). */
        if ((((quote - ones) & ~quote) | ((slash - ones) & ~slash) | ((w - ones * 0x20) & ~w)) & highs) break;
        q += 8;
    }
    while (q < end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
    return (size_t)(q - p);
}

/* Appends the decoded string at s->p to out (or only validates it when out is NULL). */
static int js_string(jscan *s, g4_buf *out) {
    if (!js_at(s, '"')) return js_fail(s, "expected a string");
    s->p++;
    for (;;) {
        const char *run = s->p;
        s->p += plain_run(s->p, s->end);
        if (out && s->p > run && g4_buf_append(out, run, (size_t)(s->p - run))) return nomem(s->err);
        if (s->p >= s->end) return js_fail(s, "unterminated string");
        if (*s->p == '"') {
            s->p++;
            return 0;
        }
        if (*s->p != '\\') return js_fail(s, "control character in string");
        int rc = js_escape(s, out);
        if (rc) return rc;
    }
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int js_number(jscan *s) {
    js_ws(s);
    if (s->p < s->end && *s->p == '-') s->p++;
    if (s->p >= s->end || !is_digit(*s->p)) return js_fail(s, "bad number");
    if (*s->p == '0') {
        s->p++;
    } else {
        while (s->p < s->end && is_digit(*s->p)) s->p++;
    }
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (s->p >= s->end || !is_digit(*s->p)) return js_fail(s, "bad number");
        while (s->p < s->end && is_digit(*s->p)) s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (s->p >= s->end || !is_digit(*s->p)) return js_fail(s, "bad number");
        while (s->p < s->end && is_digit(*s->p)) s->p++;
    }
    return 0;
}

static bool js_word(jscan *s, const char *w) {
    size_t n = strlen(w);
    js_ws(s);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0) return false;
    s->p += n;
    return true;
}

/* Next element of an array / member of an object: >0 there is one, 0 the container ended, <0 error. */
static int js_next(jscan *s, char close, bool *first) {
    js_ws(s);
    if (s->p >= s->end) return js_fail(s, "unexpected end of input");
    if (*first) {
        *first = false;
        if (*s->p == close) {
            s->p++;
            return 0;
        }
        return 1;
    }
    if (*s->p == close) {
        s->p++;
        return 0;
    }
    if (*s->p != ',') return js_fail(s, "expected ',' or a closing bracket");
    s->p++;
    return 1;
}

static int js_skip(jscan *s, int depth);

static int js_skip_container(jscan *s, int depth, size_t *count) {
    if (depth > TK_MAX_DEPTH) return js_fail(s, "nesting too deep");
    bool is_object = *s->p == '{';
    char close = is_object ? '}' : ']';
    s->p++;
    bool first = true;
    int more;
    while ((more = js_next(s, close, &first)) > 0) {
        int rc;
        if (is_object) {
            if ((rc = js_string(s, NULL)) || (rc = js_expect(s, ':', "expected ':'"))) return rc;
        }
        if ((rc = js_skip(s, depth + 1))) return rc;
        if (count) ++*count;
    }
    return more;
}

/* Validates and steps over one value. */
static int js_skip(jscan *s, int depth) {
    js_ws(s);
    if (s->p >= s->end) return js_fail(s, "unexpected end of input");
    switch (*s->p) {
    case '{':
    case '[': return js_skip_container(s, depth, NULL);
    case '"': return js_string(s, NULL);
    case 't': return js_word(s, "true") ? 0 : js_fail(s, "bad literal");
    case 'f': return js_word(s, "false") ? 0 : js_fail(s, "bad literal");
    case 'n': return js_word(s, "null") ? 0 : js_fail(s, "bad literal");
    default: return js_number(s);
    }
}

static int js_value_span(jscan *s, tk_span *out) {
    js_ws(s);
    const char *start = s->p;
    size_t count = 0;
    int rc = s->p < s->end && (*s->p == '{' || *s->p == '[') ? js_skip_container(s, 0, &count) : js_skip(s, 0);
    if (rc) return rc;
    *out = (tk_span){start, (size_t)(s->p - start), count};
    return 0;
}

static bool span_is_null(tk_span sp) { return !sp.p || (sp.n == 4 && memcmp(sp.p, "null", 4) == 0); }

/* A token id: a non-negative integer that fits int32 (tokenizers reads u32; larger ids are hostile anyway). */
static int js_id(jscan *s, int64_t *out) {
    js_ws(s);
    const char *start = s->p;
    int rc = js_number(s);
    if (rc) return rc;
    int64_t v = 0;
    for (const char *q = start; q < s->p; q++) {
        if (!is_digit(*q)) {
            s->p = start;
            return js_fail(s, "token id must be a non-negative integer");
        }
        v = v * 10 + (*q - '0');
        if (v > INT32_MAX) {
            s->p = start;
            return js_fail(s, "token id out of range");
        }
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Document outline                                                                                              */

typedef struct tk_model_spans {
    tk_span type, dropout, unk, prefix, suffix, fuse_unk, byte_fallback, ignore_merges, vocab, merges;
} tk_model_spans;

typedef struct tk_sections {
    tk_span model, added, normalizer, pre_tokenizer, decoder;
    tk_model_spans m;
} tk_sections;

typedef struct tk_key {
    const char *name;
    tk_span *slot;
    const struct tk_key *inner; /* an object whose own keys are wanted */
    size_t n_inner;
} tk_key;

static const tk_key *key_lookup(const tk_key *keys, size_t n_keys, const g4_buf *key) {
    for (size_t i = 0; i < n_keys; i++)
        if (key->len == strlen(keys[i].name) && memcmp(key->data, keys[i].name, key->len) == 0) return &keys[i];
    return NULL;
}

static int js_object_spans(jscan *s, const tk_key *keys, size_t n_keys, const char *what);

static int js_member_value(jscan *s, const tk_key *k, const char *what) {
    tk_span value;
    if (k && k->slot->p)
        return g4_fail(s->err, GEMMA4C_ERR_FORMAT, "tokenizer.json: duplicate key \"%s\" in %s", k->name, what);
    if (!k || !k->inner) {
        int rc = js_value_span(s, &value);
        if (!rc && k) *k->slot = value;
        return rc;
    }
    js_ws(s);
    const char *start = s->p;
    int rc = js_object_spans(s, k->inner, k->n_inner, k->name);
    if (!rc) *k->slot = (tk_span){start, (size_t)(s->p - start), 0};
    return rc;
}

/* Walks an object once, storing the value spans of the listed keys; other keys are skipped, repeated ones refused. */
static int js_object_spans(jscan *s, const tk_key *keys, size_t n_keys, const char *what) {
    if (!js_at(s, '{')) return g4_fail(s->err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %s must be an object", what);
    s->p++;
    g4_buf key = {0};
    bool first = true;
    int more;
    while ((more = js_next(s, '}', &first)) > 0) {
        g4_buf_reset(&key);
        int rc = js_string(s, &key);
        if (!rc) rc = js_expect(s, ':', "expected ':'");
        if (!rc) rc = js_member_value(s, key_lookup(keys, n_keys, &key), what);
        if (rc) {
            more = rc;
            break;
        }
    }
    g4_buf_free(&key);
    return more;
}

static int find_sections(const char *json, size_t len, tk_sections *sec, g4_err *err) {
    jscan s = {json, json, json + len, err};
    tk_model_spans *m = &sec->m;
    const tk_key model_keys[] = {{"type", &m->type, NULL, 0},
                                 {"dropout", &m->dropout, NULL, 0},
                                 {"unk_token", &m->unk, NULL, 0},
                                 {"continuing_subword_prefix", &m->prefix, NULL, 0},
                                 {"end_of_word_suffix", &m->suffix, NULL, 0},
                                 {"fuse_unk", &m->fuse_unk, NULL, 0},
                                 {"byte_fallback", &m->byte_fallback, NULL, 0},
                                 {"ignore_merges", &m->ignore_merges, NULL, 0},
                                 {"vocab", &m->vocab, NULL, 0},
                                 {"merges", &m->merges, NULL, 0}};
    const tk_key keys[] = {{"model", &sec->model, model_keys, sizeof model_keys / sizeof model_keys[0]},
                           {"added_tokens", &sec->added, NULL, 0},
                           {"normalizer", &sec->normalizer, NULL, 0},
                           {"pre_tokenizer", &sec->pre_tokenizer, NULL, 0},
                           {"decoder", &sec->decoder, NULL, 0}};
    int rc = js_object_spans(&s, keys, sizeof keys / sizeof keys[0], "the document");
    if (rc) return rc;
    js_ws(&s);
    if (s.p != s.end) return js_fail(&s, "trailing data after the document");
    if (!sec->model.p) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: no \"model\"");
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Model: vocab and merges                                                                                       */

typedef struct tk_entry {
    tk_str text;
    int32_t id;
} tk_entry;

typedef struct tk_entries {
    tk_entry *v;
    size_t n, cap;
} tk_entries;

static int entries_push(tk_entries *e, tk_entry x) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 1024;
        tk_entry *v = realloc(e->v, cap * sizeof *v);
        if (!v) return -1;
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = x;
    return 0;
}

/* Room for `extra` more bytes without the repeated copying of doubling growth (the vocab texts are ~3 MB). */
static int buf_reserve(g4_buf *b, size_t extra) {
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    char *p = realloc(b->data, need);
    if (!p) return -1;
    p[b->len] = '\0';
    b->data = p;
    b->cap = need;
    return 0;
}

static int parse_vocab_entries(g4_tokenizer *t, tk_span sp, tk_entries *ents, g4_err *err) {
    jscan s = {sp.p, sp.p, sp.p + sp.n, err};
    if (!js_at(&s, '{')) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: model.vocab must be an object");
    s.p++;
    /* The outline pass counted the entries, and decoded texts are never longer than their JSON. */
    ents->v = malloc((sp.count + 1) * sizeof *ents->v);
    if (!ents->v || buf_reserve(&t->pool, sp.n)) return nomem(err);
    ents->cap = sp.count + 1;
    bool first = true;
    int more;
    while ((more = js_next(&s, '}', &first)) > 0) {
        size_t off = t->pool.len;
        int rc = js_string(&s, &t->pool);
        if (!rc) rc = js_expect(&s, ':', "expected ':'");
        int64_t id = 0;
        if (!rc) rc = js_id(&s, &id);
        if (rc) return rc;
        if (t->pool.len >= UINT32_MAX) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer: vocab texts exceed 4 GiB");
        tk_entry e = {{(uint32_t)off, (uint32_t)(t->pool.len - off)}, (int32_t)id};
        if (entries_push(ents, e)) return nomem(err);
    }
    return more;
}

static int32_t id_limit(size_t n_tokens) {
    size_t lim = 2 * n_tokens + TK_ID_SLACK;
    return lim > INT32_MAX ? INT32_MAX : (int32_t)lim;
}

static int parse_vocab(g4_tokenizer *t, tk_span sp, size_t n_added_hint, g4_err *err) {
    tk_entries ents = {0};
    int rc = parse_vocab_entries(t, sp, &ents, err);
    int32_t max_id = -1, limit = id_limit(ents.n + n_added_hint);
    for (size_t i = 0; !rc && i < ents.n; i++) {
        if (ents.v[i].id >= limit)
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: vocab id %d out of range (%zu tokens)",
                         (int)ents.v[i].id, ents.n);
        else if (ents.v[i].id > max_id)
            max_id = ents.v[i].id;
    }
    if (!rc) rc = ids_resize(t, max_id + 1, err);
    for (size_t i = 0; !rc && i < ents.n; i++) {
        int32_t id = ents.v[i].id;
        if (t->flags[id] & ID_PRESENT) {
            tk_str a = t->piece[id], b = ents.v[i].text;
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: vocab id %d used twice (\"%.*s\" and \"%.*s\")",
                         (int)id, (int)(a.len > 64 ? 64 : a.len), pool_at(t, a), (int)(b.len > 64 ? 64 : b.len),
                         pool_at(t, b));
            break;
        }
        t->piece[id] = ents.v[i].text;
        t->flags[id] = ID_PRESENT | ID_MODEL;
    }
    if (!rc) rc = vocab_build(t, ents.n, err);
    free(ents.v);
    return rc;
}

/* Merges are read TK_BATCH at a time so that their vocabulary lookups can overlap (see vocab_find_many). */
typedef struct tk_merge_batch {
    g4_buf text, tmp;                          /* left, right and merged texts of each merge, back to back */
    size_t off[TK_BATCH][3], len[TK_BATCH][3]; /* [k][0] left, [k][1] right, [k][2] merged */
    size_t n, first_rank;
} tk_merge_batch;

static void batch_record(tk_merge_batch *mb, int part, size_t off, size_t len) {
    mb->off[mb->n][part] = off;
    mb->len[mb->n][part] = len;
}

/* One merge as its two token texts: either "a b" (split at the first space) or ["a", "b"]. */
static int batch_read_pair(jscan *s, tk_merge_batch *mb, size_t rank) {
    g4_buf *b = &mb->text;
    size_t a0 = b->len;
    int rc;
    if (js_at(s, '"')) {
        if ((rc = js_string(s, b))) return rc;
        /* Like the library, exactly one space: a token with a space in it needs the pair form. */
        const char *sp = b->len > a0 ? memchr(b->data + a0, ' ', b->len - a0) : NULL;
        size_t at = sp ? (size_t)(sp - b->data) : 0;
        if (!sp || memchr(sp + 1, ' ', b->len - at - 1))
            return g4_fail(s->err, GEMMA4C_ERR_FORMAT, "tokenizer.json: merge %zu is not \"left right\"", rank);
        batch_record(mb, 0, a0, at - a0);
        batch_record(mb, 1, at + 1, b->len - at - 1);
        return 0;
    }
    if (!js_at(s, '['))
        return g4_fail(s->err, GEMMA4C_ERR_FORMAT, "tokenizer.json: merge %zu must be a string or a pair", rank);
    s->p++;
    if ((rc = js_string(s, b))) return rc;
    size_t b0 = b->len;
    if ((rc = js_expect(s, ',', "expected ',' in a merge pair")) || (rc = js_string(s, b)) ||
        (rc = js_expect(s, ']', "a merge must be a pair of two strings")))
        return rc;
    batch_record(mb, 0, a0, b0 - a0);
    batch_record(mb, 1, b0, b->len - b0);
    return 0;
}

/* The merged text drops the right part's continuing_subword_prefix. */
static int batch_read_merge(const g4_tokenizer *t, jscan *s, tk_merge_batch *mb, size_t rank) {
    int rc = batch_read_pair(s, mb, rank);
    if (rc) return rc;
    size_t skip = t->has_prefix ? t->prefix.len : 0, *off = mb->off[mb->n], *len = mb->len[mb->n];
    if (len[1] < skip)
        return g4_fail(s->err, GEMMA4C_ERR_FORMAT, "tokenizer.json: merge %zu: right part shorter than the prefix",
                       rank);
    g4_buf_reset(&mb->tmp);
    size_t m0 = mb->text.len;
    if (g4_buf_append(&mb->tmp, mb->text.data + off[0], len[0]) ||
        g4_buf_append(&mb->tmp, mb->text.data + off[1] + skip, len[1] - skip) ||
        g4_buf_append(&mb->text, mb->tmp.data, mb->tmp.len))
        return nomem(s->err);
    batch_record(mb, 2, m0, mb->text.len - m0);
    mb->n++;
    return 0;
}

static int merge_missing(const tk_merge_batch *mb, size_t k, int part, g4_err *err) {
    size_t n = mb->len[k][part];
    return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: merge %zu uses \"%.*s\", which is not in the vocab",
                   mb->first_rank + k, (int)(n > 64 ? 64 : n), mb->text.data + mb->off[k][part]);
}

static int batch_resolve(g4_tokenizer *t, tk_merge_batch *mb, g4_err *err) {
    tk_lookup q[3 * TK_BATCH];
    for (size_t k = 0; k < mb->n; k++)
        for (int part = 0; part < 3; part++)
            q[3 * k + part] = (tk_lookup){mb->text.data + mb->off[k][part], mb->len[k][part], 0, -1};
    vocab_find_many(t, q, 3 * mb->n);
    for (size_t k = 0; k < mb->n; k++) {
        for (int part = 0; part < 3; part++)
            if (q[3 * k + part].id < 0) return merge_missing(mb, k, part, err);
        if (t->merges) TK_PREFETCH(&t->merges[mix64(merge_key(q[3 * k].id, q[3 * k + 1].id)) & t->merge_mask]);
    }
    for (size_t k = 0; k < mb->n; k++) {
        int rc = merge_insert(t, q[3 * k].id, q[3 * k + 1].id, (uint32_t)(mb->first_rank + k), q[3 * k + 2].id, err);
        if (rc) return rc;
    }
    mb->first_rank += mb->n;
    mb->n = 0;
    g4_buf_reset(&mb->text);
    return 0;
}

static int parse_merges(g4_tokenizer *t, tk_span sp, g4_err *err) {
    jscan s = {sp.p, sp.p, sp.p + sp.n, err};
    if (!js_at(&s, '[')) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: model.merges must be an array");
    if (sp.count >= UINT32_MAX) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: too many merges");
    int rc = merge_reserve(t, sp.count, err);
    if (rc) return rc;
    s.p++;
    tk_merge_batch mb = {0};
    if (g4_buf_append(&mb.text, "", 0) || g4_buf_append(&mb.tmp, "", 0)) return nomem(err); /* never NULL below */
    bool first = true;
    int more;
    while ((more = js_next(&s, ']', &first)) > 0) {
        rc = batch_read_merge(t, &s, &mb, mb.first_rank + mb.n);
        if (!rc && mb.n == TK_BATCH) rc = batch_resolve(t, &mb, err);
        if (rc) {
            more = rc;
            break;
        }
    }
    if (more == 0) more = batch_resolve(t, &mb, err);
    g4_buf_free(&mb.text);
    g4_buf_free(&mb.tmp);
    return more;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Model: scalar options                                                                                         */

static int span_bool(tk_span sp, bool dflt, bool *out, const char *what, g4_err *err) {
    if (span_is_null(sp)) {
        *out = dflt;
        return 0;
    }
    if (sp.n == 4 && memcmp(sp.p, "true", 4) == 0) {
        *out = true;
        return 0;
    }
    if (sp.n == 5 && memcmp(sp.p, "false", 5) == 0) {
        *out = false;
        return 0;
    }
    return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %s must be a boolean", what);
}

/* A string (stored in the pool) or null. */
static int span_string(g4_tokenizer *t, tk_span sp, bool *present, tk_str *out, const char *what, g4_err *err) {
    *present = false;
    if (span_is_null(sp)) return 0;
    if (sp.p[0] != '"') return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %s must be a string or null", what);
    g4_buf tmp = {0};
    jscan s = {sp.p, sp.p, sp.p + sp.n, err};
    int rc = js_string(&s, &tmp);
    if (!rc) rc = pool_add(t, tmp.data ? tmp.data : "", tmp.len, out, err);
    g4_buf_free(&tmp);
    *present = rc == 0;
    return rc;
}

static int check_model_type(tk_span type, g4_err *err) {
    if (span_is_null(type)) return 0; /* old files leave it out; vocab + merges make it BPE */
    if (type.n == 5 && memcmp(type.p, "\"BPE\"", 5) == 0) return 0;
    if (type.p[0] != '"') return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: model.type must be a string");
    return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "tokenizer.json: model type %.*s is not supported (only BPE)",
                   (int)(type.n > 40 ? 40 : type.n), type.p);
}

/* BPE dropout samples merges at random; a deterministic engine cannot honour it. */
static int check_dropout(tk_span sp, g4_err *err) {
    if (span_is_null(sp)) return 0;
    char num[64];
    if (sp.n >= sizeof num || (sp.p[0] != '-' && !is_digit(sp.p[0])))
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: model.dropout must be a number or null");
    memcpy(num, sp.p, sp.n);
    num[sp.n] = '\0';
    double d = strtod(num, NULL);
    if (!(d >= 0.0 && d <= 1.0))
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: model.dropout %s out of [0, 1]", num);
    if (d > 0.0) return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "tokenizer.json: BPE dropout %s is not supported", num);
    return 0;
}

static int parse_model_options(g4_tokenizer *t, const tk_model_spans *m, g4_err *err) {
    int rc = check_model_type(m->type, err);
    if (!rc) rc = check_dropout(m->dropout, err);
    if (!rc) rc = span_bool(m->fuse_unk, false, &t->fuse_unk, "model.fuse_unk", err);
    if (!rc) rc = span_bool(m->byte_fallback, false, &t->byte_fallback, "model.byte_fallback", err);
    if (!rc) rc = span_bool(m->ignore_merges, false, &t->ignore_merges, "model.ignore_merges", err);
    if (!rc) rc = span_string(t, m->unk, &t->has_unk, &t->unk_text, "model.unk_token", err);
    if (!rc) rc = span_string(t, m->prefix, &t->has_prefix, &t->prefix, "model.continuing_subword_prefix", err);
    if (!rc) rc = span_string(t, m->suffix, &t->has_suffix, &t->suffix, "model.end_of_word_suffix", err);
    return rc;
}

static int parse_model(g4_tokenizer *t, const tk_model_spans *m, size_t n_added_hint, g4_err *err) {
    if (span_is_null(m->vocab)) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: model.vocab is missing");
    if (span_is_null(m->merges)) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: model.merges is missing");
    int rc;
    if ((rc = parse_model_options(t, m, err))) return rc;
    if ((rc = parse_vocab(t, m->vocab, n_added_hint, err))) return rc;
    if ((rc = parse_merges(t, m->merges, err))) return rc;
    find_byte_ids(t);
    t->unk_id = t->has_unk ? vocab_find(t, pool_at(t, t->unk_text), t->unk_text.len) : -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Pipeline sections (small: cJSON)                                                                              */

static int cj_parse(tk_span sp, const char *what, cJSON **out, g4_err *err) {
    *out = NULL;
    if (span_is_null(sp)) return 0;
    /* cJSON strings end at a NUL, so an escaped NUL would silently cut a token or pattern short. */
    for (size_t i = 0; i + 6 <= sp.n; i++)
        if (sp.p[i] == '\\' && sp.p[i + 1] == 'u' && memcmp(sp.p + i + 2, "0000", 4) == 0)
            return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "tokenizer.json: %s contains a NUL character", what);
    *out = cJSON_ParseWithLength(sp.p, sp.n);
    if (!*out) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: cannot parse %s", what);
    return 0;
}

static int cj_string(const cJSON *obj, const char *key, const char *ctx, const char **out, g4_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v)) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %s.%s must be a string", ctx, key);
    *out = v->valuestring;
    return 0;
}

static int cj_bool(const cJSON *obj, const char *key, bool dflt, const char *ctx, bool *out, g4_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsBool(v)) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %s.%s must be a boolean", ctx, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int cj_uint(const cJSON *obj, const char *key, double max, const char *ctx, int64_t *out, g4_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %s.%s must be an integer in [0, %.0f]", ctx, key, max);
    *out = (int64_t)v->valuedouble;
    return 0;
}

static bool is_regex_meta(char c) { return c && strchr("\\^$.|?*+()[]{}", c) != NULL; }

/* {"String": s} or {"Regex": r}. Only literal regexes are accepted: real tokenizer.json files for Gemma use strings. */
static int cj_pattern(g4_tokenizer *t, const cJSON *obj, const char *ctx, tk_str *out, g4_err *err) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "pattern");
    const cJSON *str = cJSON_GetObjectItemCaseSensitive(p, "String");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(p, "Regex");
    const char *text = "";
    if (cJSON_IsString(str)) {
        text = str->valuestring;
    } else if (cJSON_IsString(re)) {
        text = re->valuestring;
        for (const char *c = text; *c; c++)
            if (is_regex_meta(*c))
                return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "tokenizer.json: %s uses a regular expression (%.60s)",
                               ctx, text);
    } else {
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %s.pattern must be {\"String\": ...}", ctx);
    }
    if (!*text) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %s has an empty pattern", ctx);
    return pool_add(t, text, strlen(text), out, err);
}

static int too_many_steps(const char *what, g4_err *err) {
    return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %s has more than %d steps", what, TK_MAX_STEPS);
}

static int cj_type(const cJSON *obj, const char *ctx, const char **type, g4_err *err) {
    if (!cJSON_IsObject(obj))
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %s must be an object or null", ctx);
    return cj_string(obj, "type", ctx, type, err);
}

typedef int (*tk_step_parser)(g4_tokenizer *t, const cJSON *step, int depth, g4_err *err);

/* A Sequence step ({"type": "Sequence", "<list_key>": [...]}): each of its steps through `parse`, one level deeper. */
static int parse_sequence(g4_tokenizer *t, const cJSON *seq, const char *what, const char *list_key, int depth,
                          tk_step_parser parse, g4_err *err) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(seq, list_key);
    if (!cJSON_IsArray(list))
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %s Sequence needs \"%s\": [...]", what, list_key);
    if (depth >= TK_MAX_SEQ_NESTING) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %s nested too deep", what);
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        if (!cJSON_IsObject(item))
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: a Sequence holds a non-object");
        int rc = parse(t, item, depth + 1, err);
        if (rc) return rc;
    }
    return 0;
}

static int parse_normalizer(g4_tokenizer *t, const cJSON *n, int depth, g4_err *err) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *type = "";
    int rc = cj_type(n, "normalizer", &type, err);
    if (rc) return rc;
    if (strcmp(type, "Sequence") == 0)
        return parse_sequence(t, n, "normalizer", "normalizers", depth, parse_normalizer, err);
    if (t->n_norm == TK_MAX_STEPS) return too_many_steps("normalizer", err);
    tk_norm_step *st = &t->norm[t->n_norm];
    const char *text = "";
    if (strcmp(type, "Replace") == 0) {
        st->kind = NORM_REPLACE;
        if ((rc = cj_pattern(t, n, "normalizer Replace", &st->pattern, err))) return rc;
        if ((rc = cj_string(n, "content", "normalizer Replace", &text, err))) return rc;
    } else if (strcmp(type, "Prepend") == 0) {
        st->kind = NORM_PREPEND;
        if ((rc = cj_string(n, "prepend", "normalizer Prepend", &text, err))) return rc;
    } else {
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED,
                       "tokenizer.json: normalizer type \"%.40s\" is not supported (Replace, Prepend, Sequence are)",
                       type);
    }
    if ((rc = pool_add(t, text, strlen(text), &st->content, err))) return rc;
    t->n_norm++;
    return 0;
}

static int split_behavior(const char *b, int *out) {
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (strcmp(b, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return -1;
}

static int parse_pre_tokenizer(g4_tokenizer *t, const cJSON *p, int depth, g4_err *err) {
    if (!p || cJSON_IsNull(p)) return 0;
    const char *type = "";
    int rc = cj_type(p, "pre_tokenizer", &type, err);
    if (rc) return rc;
    if (strcmp(type, "Sequence") == 0)
        return parse_sequence(t, p, "pre_tokenizer", "pretokenizers", depth, parse_pre_tokenizer, err);
    if (strcmp(type, "Split") != 0)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED,
                       "tokenizer.json: pre_tokenizer type \"%.40s\" is not supported (Split, Sequence are)", type);
    if (t->n_split == TK_MAX_STEPS) return too_many_steps("pre_tokenizer", err);
    tk_split_step *st = &t->split[t->n_split];
    const char *behavior = "";
    if ((rc = cj_pattern(t, p, "pre_tokenizer Split", &st->pattern, err))) return rc;
    if ((rc = cj_string(p, "behavior", "pre_tokenizer Split", &behavior, err))) return rc;
    if (split_behavior(behavior, &st->behavior))
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: unknown Split behavior \"%.40s\"", behavior);
    if ((rc = cj_bool(p, "invert", false, "pre_tokenizer Split", &st->invert, err))) return rc;
    t->n_split++;
    return 0;
}

static int parse_strip(g4_tokenizer *t, const cJSON *d, tk_dec_step *st, g4_err *err) {
    const char *content = "";
    int64_t start = 0, stop = 0;
    int rc = cj_string(d, "content", "decoder Strip", &content, err);
    if (!rc) rc = cj_uint(d, "start", 1e9, "decoder Strip", &start, err);
    if (!rc) rc = cj_uint(d, "stop", 1e9, "decoder Strip", &stop, err);
    if (rc) return rc;
    size_t n = strlen(content);
    if (n == 0 || g4_utf8_len(content, n) != n)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: decoder Strip content must be one character");
    st->start = (size_t)start;
    st->stop = (size_t)stop;
    return pool_add(t, content, n, &st->content, err);
}

static int parse_decoder(g4_tokenizer *t, const cJSON *d, int depth, g4_err *err) {
    if (!d || cJSON_IsNull(d)) return 0;
    const char *type = "";
    int rc = cj_type(d, "decoder", &type, err);
    if (rc) return rc;
    t->has_decoder = true;
    if (strcmp(type, "Sequence") == 0) return parse_sequence(t, d, "decoder", "decoders", depth, parse_decoder, err);
    if (t->n_dec == TK_MAX_STEPS) return too_many_steps("decoder", err);
    tk_dec_step *st = &t->dec[t->n_dec];
    memset(st, 0, sizeof *st);
    if (strcmp(type, "Replace") == 0) {
        const char *content = "";
        st->kind = DEC_REPLACE;
        if ((rc = cj_pattern(t, d, "decoder Replace", &st->pattern, err))) return rc;
        if ((rc = cj_string(d, "content", "decoder Replace", &content, err))) return rc;
        if ((rc = pool_add(t, content, strlen(content), &st->content, err))) return rc;
    } else if (strcmp(type, "ByteFallback") == 0) {
        st->kind = DEC_BYTE_FALLBACK;
        t->decodes_bytes = true;
    } else if (strcmp(type, "Fuse") == 0) {
        st->kind = DEC_FUSE;
    } else if (strcmp(type, "Strip") == 0) {
        st->kind = DEC_STRIP;
        if ((rc = parse_strip(t, d, st, err))) return rc;
    } else {
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED,
                       "tokenizer.json: decoder type \"%.40s\" is not supported (Replace, ByteFallback, Fuse, Strip, "
                       "Sequence are)",
                       type);
    }
    t->n_dec++;
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Added tokens                                                                                                  */

static int added_push(g4_tokenizer *t, tk_added a, g4_err *err) {
    if (t->n_added == t->cap_added) {
        size_t cap = t->cap_added ? t->cap_added * 2 : 64;
        tk_added *v = realloc(t->added, cap * sizeof *v);
        if (!v) return nomem(err);
        t->added = v;
        t->cap_added = cap;
    }
    t->added[t->n_added++] = a;
    return 0;
}

/* Gives an added token its id. As in the library, a text the model already knows keeps the model's id; otherwise
 * the file's id is used, and must not collide with another token. */
static int added_assign_id(g4_tokenizer *t, tk_added *a, int64_t listed, int32_t limit, g4_err *err) {
    const char *s = pool_at(t, a->text);
    int32_t vid = vocab_find(t, s, a->text.len);
    if (vid >= 0) {
        a->id = vid;
        return 0;
    }
    if (listed >= limit)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: added token id %lld out of range", (long long)listed);
    int32_t id = (int32_t)listed;
    int rc = ids_resize(t, id + 1, err);
    if (rc) return rc;
    if (t->flags[id] & ID_PRESENT) {
        tk_str other = t->piece[id];
        if (!str_eq(t, other, s, a->text.len))
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: added token \"%.*s\" has id %d, already \"%.*s\"",
                           (int)(a->text.len > 64 ? 64 : a->text.len), s, (int)id,
                           (int)(other.len > 64 ? 64 : other.len), pool_at(t, other));
    }
    t->piece[id] = a->text;
    t->flags[id] |= ID_PRESENT;
    a->id = id;
    return 0;
}

static int parse_added_token(g4_tokenizer *t, const cJSON *item, int32_t limit, g4_err *err) {
    if (!cJSON_IsObject(item))
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: added_tokens entries must be objects");
    const char *content = "";
    int64_t listed = 0;
    tk_added a = {0};
    int rc = cj_string(item, "content", "added_tokens[]", &content, err);
    if (!rc) rc = cj_uint(item, "id", (double)INT32_MAX, "added_tokens[]", &listed, err);
    if (!rc) rc = cj_bool(item, "special", false, "added_tokens[]", &a.special, err);
    if (!rc) rc = cj_bool(item, "single_word", false, "added_tokens[]", &a.single_word, err);
    if (!rc) rc = cj_bool(item, "lstrip", false, "added_tokens[]", &a.lstrip, err);
    if (!rc) rc = cj_bool(item, "rstrip", false, "added_tokens[]", &a.rstrip, err);
    if (!rc) rc = cj_bool(item, "normalized", !a.special, "added_tokens[]", &a.normalized, err);
    if (rc) return rc;
    if (!*content) return 0; /* the library ignores empty added tokens */
    if ((rc = pool_add(t, content, strlen(content), &a.text, err))) return rc;
    if ((rc = added_assign_id(t, &a, listed, limit, err))) return rc;
    if (t->flags[a.id] & ID_ADDED) return 0; /* listed twice: the first one stands */
    t->flags[a.id] |= ID_ADDED | (a.special ? ID_SPECIAL : 0);
    return added_push(t, a, err);
}

static int parse_added_tokens(g4_tokenizer *t, const cJSON *list, size_t n_vocab, g4_err *err) {
    if (!list || cJSON_IsNull(list)) return 0;
    if (!cJSON_IsArray(list)) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: added_tokens must be an array");
    int32_t limit = id_limit(n_vocab + (size_t)cJSON_GetArraySize(list));
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        int rc = parse_added_token(t, item, limit, err);
        if (rc) return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Tries of added tokens (leftmost-longest matching, like the library's Aho-Corasick automaton)                  */

static int trie_node(tk_trie *tr, unsigned char byte, int32_t *out) {
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 256;
        tk_trie_node *v = realloc(tr->nodes, cap * sizeof *v);
        if (!v) return -1;
        tr->nodes = v;
        tr->cap = cap;
    }
    tr->nodes[tr->n] = (tk_trie_node){-1, -1, -1, byte};
    *out = (int32_t)tr->n++;
    return 0;
}

static int trie_child(tk_trie *tr, int32_t node, unsigned char byte, int32_t *out) {
    int32_t c = tr->nodes[node].first_child;
    while (c >= 0 && tr->nodes[c].byte != byte) c = tr->nodes[c].next_sibling;
    if (c >= 0) {
        *out = c;
        return 0;
    }
    if (trie_node(tr, byte, &c)) return -1;
    tr->nodes[c].next_sibling = tr->nodes[node].first_child;
    tr->nodes[node].first_child = c;
    *out = c;
    return 0;
}

/* A text added twice keeps its first token. */
static int trie_insert(tk_trie *tr, const char *s, size_t n, int32_t added) {
    int32_t node = 0;
    if (tr->n == 0 && trie_node(tr, 0, &node)) return -1;
    for (size_t i = 0; i < n; i++)
        if (trie_child(tr, node, (unsigned char)s[i], &node)) return -1;
    if (tr->nodes[node].added < 0) tr->nodes[node].added = added;
    tr->starts[(unsigned char)s[0]] = true;
    return 0;
}

typedef struct tk_match {
    size_t start, end;
    int32_t added;
} tk_match;

static bool trie_longest_at(const tk_trie *tr, const char *s, size_t n, size_t at, tk_match *m) {
    int32_t node = 0;
    bool found = false;
    for (size_t i = at; i < n; i++) {
        int32_t c = tr->nodes[node].first_child;
        while (c >= 0 && tr->nodes[c].byte != (unsigned char)s[i]) c = tr->nodes[c].next_sibling;
        if (c < 0) break;
        node = c;
        if (tr->nodes[node].added >= 0) {
            *m = (tk_match){at, i + 1, tr->nodes[node].added};
            found = true;
        }
    }
    return found;
}

/* The leftmost match at or after `from`, longest among those starting there. */
static bool trie_find(const tk_trie *tr, const char *s, size_t n, size_t from, tk_match *m) {
    if (tr->n == 0) return false;
    for (size_t at = from; at < n; at++)
        if (tr->starts[(unsigned char)s[at]] && trie_longest_at(tr, s, n, at, m)) return true;
    return false;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Encoding workspace                                                                                            */

typedef struct tk_sym {
    int32_t id, prev, next;
    bool alive;
} tk_sym;

typedef struct tk_heap_item {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
} tk_heap_item;

typedef struct tk_seg {
    size_t off, len;
    bool match;
} tk_seg;

typedef struct tk_segs {
    tk_seg *v;
    size_t n, cap;
} tk_segs;

typedef struct tk_work {
    tk_sym *sym;
    size_t n_sym, cap_sym;
    tk_heap_item *heap;
    size_t n_heap, cap_heap;
    g4_buf norm_a, norm_b, cand;
    tk_segs segs_a, segs_b, found;
} tk_work;

static void work_free(tk_work *w) {
    free(w->sym);
    free(w->heap);
    g4_buf_free(&w->norm_a);
    g4_buf_free(&w->norm_b);
    g4_buf_free(&w->cand);
    free(w->segs_a.v);
    free(w->segs_b.v);
    free(w->found.v);
}

static int segs_push(tk_segs *s, tk_seg x) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        tk_seg *v = realloc(s->v, cap * sizeof *v);
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Normalization                                                                                                 */

static const char *buf_text(const g4_buf *b) { return b->data ? b->data : ""; }

static int replace_all(const char *s, size_t n, const char *pat, size_t pn, const char *with, size_t wn, g4_buf *out) {
    size_t i = 0;
    while (i < n) {
        const char *hit = pn <= n - i ? memmem(s + i, n - i, pat, pn) : NULL;
        if (!hit) break;
        size_t at = (size_t)(hit - s);
        if (g4_buf_append(out, s + i, at - i) || g4_buf_append(out, with, wn)) return -1;
        i = at + pn;
    }
    return g4_buf_append(out, s + i, n - i);
}

/* Runs the normalizer; the result is either the input itself or one of the workspace buffers. */
static int normalize(const g4_tokenizer *t, const char *s, size_t n, tk_work *w, const char **res, size_t *res_n,
                     g4_err *err) {
    g4_buf *bufs[2] = {&w->norm_a, &w->norm_b};
    for (size_t k = 0; k < t->n_norm; k++) {
        const tk_norm_step *st = &t->norm[k];
        g4_buf *dst = bufs[k & 1];
        g4_buf_reset(dst);
        int bad;
        if (st->kind == NORM_REPLACE)
            bad = replace_all(s, n, pool_at(t, st->pattern), st->pattern.len, pool_at(t, st->content), st->content.len,
                              dst);
        else
            bad = n ? g4_buf_append(dst, pool_at(t, st->content), st->content.len) || g4_buf_append(dst, s, n) : 0;
        if (bad) return nomem(err);
        s = buf_text(dst);
        n = dst->len;
    }
    *res = s;
    *res_n = n;
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* BPE                                                                                                           */

static int sym_push(tk_work *w, int32_t id) {
    if (w->n_sym == w->cap_sym) {
        size_t cap = w->cap_sym ? w->cap_sym * 2 : 64;
        tk_sym *v = realloc(w->sym, cap * sizeof *v);
        if (!v) return -1;
        w->sym = v;
        w->cap_sym = cap;
    }
    int32_t i = (int32_t)w->n_sym;
    if (i > 0) w->sym[i - 1].next = i;
    w->sym[w->n_sym++] = (tk_sym){id, i - 1, -1, true};
    return 0;
}

static bool heap_less(tk_heap_item a, tk_heap_item b) { return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos; }

static int heap_push(tk_work *w, tk_heap_item x) {
    if (w->n_heap == w->cap_heap) {
        size_t cap = w->cap_heap ? w->cap_heap * 2 : 64;
        tk_heap_item *v = realloc(w->heap, cap * sizeof *v);
        if (!v) return -1;
        w->heap = v;
        w->cap_heap = cap;
    }
    size_t i = w->n_heap++;
    while (i > 0 && heap_less(x, w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = x;
    return 0;
}

static tk_heap_item heap_pop(tk_work *w) {
    tk_heap_item top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(w->heap[c + 1], w->heap[c])) c++;
        if (!heap_less(w->heap[c], last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static int push_pair(const g4_tokenizer *t, tk_work *w, int32_t pos) {
    const tk_sym *a = &w->sym[pos];
    uint32_t rank;
    int32_t new_id;
    if (a->next < 0 || !merge_find(t, a->id, w->sym[a->next].id, &rank, &new_id)) return 0;
    return heap_push(w, (tk_heap_item){rank, pos, new_id});
}

/* Applies merges lowest rank first (then leftmost), skipping queue entries that went stale: the library's
 * Word::merge_all, including its test that a stale pair still produces the same token. */
static int merge_all(const g4_tokenizer *t, tk_work *w) {
    w->n_heap = 0;
    for (size_t i = 0; i + 1 < w->n_sym; i++)
        if (push_pair(t, w, (int32_t)i)) return -1;
    while (w->n_heap) {
        tk_heap_item top = heap_pop(w);
        tk_sym *cur = &w->sym[top.pos];
        if (!cur->alive || cur->next < 0) continue;
        tk_sym *right = &w->sym[cur->next];
        uint32_t rank;
        int32_t new_id;
        if (!merge_find(t, cur->id, right->id, &rank, &new_id) || new_id != top.new_id) continue;
        cur->id = new_id;
        right->alive = false;
        cur->next = right->next;
        if (cur->next >= 0) w->sym[cur->next].prev = top.pos;
        if (cur->prev >= 0 && push_pair(t, w, cur->prev)) return -1;
        if (push_pair(t, w, top.pos)) return -1;
    }
    return 0;
}

/* The text one character is looked up as: with continuing_subword_prefix / end_of_word_suffix where they apply. */
static int char_candidate(const g4_tokenizer *t, tk_work *w, const char *c, size_t n, bool first, bool last,
                          const char **out, size_t *out_n) {
    bool pre = !first && t->has_prefix, suf = last && t->has_suffix;
    if (!pre && !suf) {
        *out = c;
        *out_n = n;
        return 0;
    }
    g4_buf_reset(&w->cand);
    if ((pre && g4_buf_append(&w->cand, pool_at(t, t->prefix), t->prefix.len)) || g4_buf_append(&w->cand, c, n) ||
        (suf && g4_buf_append(&w->cand, pool_at(t, t->suffix), t->suffix.len)))
        return -1;
    *out = w->cand.data;
    *out_n = w->cand.len;
    return 0;
}

static bool bytes_have_tokens(const g4_tokenizer *t, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (t->byte_id[(unsigned char)s[i]] < 0) return false;
    return true;
}

/* An unknown character: it leaves a <unk> pending, which absorbs the following unknown ones under fuse_unk. */
static int unk_char(const g4_tokenizer *t, tk_work *w, bool *pending, g4_err *err) {
    if (!t->has_unk) return 0; /* no unk token: the library drops the character */
    if (t->unk_id < 0)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer: unk token \"%.*s\" is not in the vocabulary",
                       (int)(t->unk_text.len > 64 ? 64 : t->unk_text.len), pool_at(t, t->unk_text));
    if (*pending && !t->fuse_unk && sym_push(w, t->unk_id)) return nomem(err);
    *pending = true;
    return 0;
}

/* Initial symbols of a word: one per character, else its bytes' <0xNN> tokens, else <unk>. */
static int word_symbols(const g4_tokenizer *t, const char *s, size_t n, tk_work *w, g4_err *err) {
    bool unk_pending = false;
    w->n_sym = 0;
    for (size_t i = 0; i < n;) {
        size_t k = char_len(s + i, n - i);
        const char *c;
        size_t cn;
        if (char_candidate(t, w, s + i, k, i == 0, i + k == n, &c, &cn)) return nomem(err);
        int32_t id = vocab_find(t, c, cn);
        i += k;
        if (id >= 0) {
            if (unk_pending && sym_push(w, t->unk_id)) return nomem(err);
            unk_pending = false;
            if (sym_push(w, id)) return nomem(err);
            continue;
        }
        if (t->byte_fallback && bytes_have_tokens(t, c, cn)) {
            /* Like the library, byte tokens go in before a still-pending <unk>. */
            for (size_t b = 0; b < cn; b++)
                if (sym_push(w, t->byte_id[(unsigned char)c[b]])) return nomem(err);
            continue;
        }
        int rc = unk_char(t, w, &unk_pending, err);
        if (rc) return rc;
    }
    if (unk_pending && sym_push(w, t->unk_id)) return nomem(err);
    return 0;
}

static int bpe_word(const g4_tokenizer *t, const char *s, size_t n, tk_work *w, g4_ids *out, g4_err *err) {
    if (n == 0) return 0;
    if (t->ignore_merges) {
        int32_t id = vocab_find(t, s, n);
        if (id >= 0) return g4_ids_push(out, id) ? nomem(err) : 0;
    }
    int rc = word_symbols(t, s, n, w, err);
    if (rc) return rc;
    if (merge_all(t, w)) return nomem(err);
    for (size_t i = 0; i < w->n_sym; i++)
        if (w->sym[i].alive && g4_ids_push(out, w->sym[i].id)) return nomem(err);
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Pre-tokenization (Split)                                                                                      */

/* Occurrences of the pattern inside one segment, as alternating non-match / match pieces. */
static int split_find(const g4_tokenizer *t, const tk_split_step *st, const char *s, tk_seg seg, tk_segs *out) {
    const char *pat = pool_at(t, st->pattern);
    size_t pn = st->pattern.len, i = seg.off, end = seg.off + seg.len;
    out->n = 0;
    while (i < end) {
        const char *hit = pn <= end - i ? memmem(s + i, end - i, pat, pn) : NULL;
        if (!hit) break;
        size_t at = (size_t)(hit - s);
        if (at > i && segs_push(out, (tk_seg){i, at - i, st->invert})) return -1;
        if (segs_push(out, (tk_seg){at, pn, !st->invert})) return -1;
        i = at + pn;
    }
    if (i < end && segs_push(out, (tk_seg){i, end - i, st->invert})) return -1;
    return 0;
}

static void seg_extend_end(tk_seg *a, const tk_seg *b) { a->len = b->off + b->len - a->off; }

/* The library's SplitDelimiterBehavior, applied to one segment's pieces. */
static int split_apply(int behavior, const tk_segs *in, tk_segs *out) {
    size_t first_out = out->n;
    bool prev_match = false;
    if (behavior == SPLIT_MERGED_NEXT) {
        /* Mirror image of MergedWithPrevious: walk right to left, then restore the order. */
        for (size_t k = in->n; k-- > 0;) {
            tk_seg x = in->v[k];
            if (x.match && !prev_match && out->n > first_out) {
                tk_seg *last = &out->v[out->n - 1];
                last->len = last->off + last->len - x.off;
                last->off = x.off;
            } else if (segs_push(out, x)) {
                return -1;
            }
            prev_match = x.match;
        }
        for (size_t a = first_out, b = out->n; a + 1 < b; a++, b--) {
            tk_seg tmp = out->v[a];
            out->v[a] = out->v[b - 1];
            out->v[b - 1] = tmp;
        }
        return 0;
    }
    for (size_t k = 0; k < in->n; k++) {
        tk_seg x = in->v[k];
        bool join = (behavior == SPLIT_MERGED_PREV && x.match && !prev_match) ||
                    (behavior == SPLIT_CONTIGUOUS && x.match == prev_match);
        if (behavior == SPLIT_REMOVED && x.match) {
            /* dropped */
        } else if (join && out->n > first_out) {
            seg_extend_end(&out->v[out->n - 1], &x);
        } else if (segs_push(out, x)) {
            return -1;
        }
        prev_match = x.match;
    }
    return 0;
}

static int pre_tokenize(const g4_tokenizer *t, const char *s, size_t n, tk_work *w, tk_segs **result) {
    tk_segs *cur = &w->segs_a, *next = &w->segs_b;
    cur->n = 0;
    if (segs_push(cur, (tk_seg){0, n, false})) return -1;
    for (size_t k = 0; k < t->n_split; k++) {
        next->n = 0;
        for (size_t i = 0; i < cur->n; i++) {
            if (split_find(t, &t->split[k], s, cur->v[i], &w->found)) return -1;
            if (split_apply(t->split[k].behavior, &w->found, next)) return -1;
        }
        tk_segs *tmp = cur;
        cur = next;
        next = tmp;
    }
    *result = cur;
    return 0;
}

static int encode_words(const g4_tokenizer *t, const char *s, size_t n, tk_work *w, g4_ids *out, g4_err *err) {
    if (t->n_split == 0) return bpe_word(t, s, n, w, out, err);
    tk_segs *segs;
    if (pre_tokenize(t, s, n, w, &segs)) return nomem(err);
    for (size_t i = 0; i < segs->n; i++) {
        if (segs->v[i].len == 0) continue;
        int rc = bpe_word(t, s + segs->v[i].off, segs->v[i].len, w, out, err);
        if (rc) return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Encoding                                                                                                      */

typedef int (*tk_text_fn)(const g4_tokenizer *t, const char *s, size_t n, tk_work *w, g4_ids *out, g4_err *err);

static bool single_word_ok(const char *s, size_t n, size_t start, size_t end) {
    int32_t before = -1, after = -1;
    if (start > 0) {
        size_t p = utf8_prev(s, start);
        char_decode(s + p, start - p, &before);
    }
    if (end < n) char_decode(s + end, n - end, &after);
    return !is_word_char(before) && !is_word_char(after);
}

static size_t space_start_before(const char *s, size_t start) {
    while (start > 0) {
        size_t p = utf8_prev(s, start);
        int32_t cp;
        char_decode(s + p, start - p, &cp);
        if (!is_unicode_space(cp)) break;
        start = p;
    }
    return start;
}

static size_t space_len_after(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int32_t cp;
        size_t k = char_decode(s + i, n - i, &cp);
        if (!is_unicode_space(cp)) break;
        i += k;
    }
    return i;
}

/* The library's AddedVocabulary::split_with_indices: added tokens out, the text between them to on_text. */
static int split_added(const g4_tokenizer *t, const tk_trie *trie, const char *s, size_t n, tk_text_fn on_text,
                       tk_work *w, g4_ids *out, g4_err *err) {
    size_t done = 0, scan = 0;
    tk_match m;
    while (trie_find(trie, s, n, scan, &m)) {
        const tk_added *a = &t->added[m.added];
        scan = m.end;
        if (a->single_word && !single_word_ok(s, n, m.start, m.end)) continue;
        size_t start = m.start, stop = m.end;
        if (a->lstrip) {
            start = space_start_before(s, start);
            if (start < done) start = done;
        }
        if (a->rstrip) scan = stop = stop + space_len_after(s + stop, n - stop);
        if (start > done) {
            int rc = on_text(t, s + done, start - done, w, out, err);
            if (rc) return rc;
        }
        if (g4_ids_push(out, a->id)) return nomem(err);
        done = stop;
    }
    return done < n ? on_text(t, s + done, n - done, w, out, err) : 0;
}

static int encode_normalized(const g4_tokenizer *t, const char *s, size_t n, tk_work *w, g4_ids *out, g4_err *err) {
    const char *norm;
    size_t nn;
    int rc = normalize(t, s, n, w, &norm, &nn, err);
    if (rc) return rc;
    return split_added(t, &t->norm_trie, norm, nn, encode_words, w, out, err);
}

int g4_tokenizer_encode(const g4_tokenizer *t, const char *text, size_t len, g4_ids *out, g4_err *err) {
    if (!t || !out || (!text && len)) return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: encode: bad arguments");
    if (len > INT32_MAX) return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: text of %zu bytes is too long", len);
    size_t before = out->n;
    tk_work w = {0};
    int rc = split_added(t, &t->raw_trie, text ? text : "", len, encode_normalized, &w, out, err);
    work_free(&w);
    if (rc) out->n = before;
    return rc;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Decoding                                                                                                      */

/* A list of token texts, the unit every decoder step works on. */
typedef struct tk_list {
    g4_buf text;
    size_t *end; /* token k is text[end[k-1] .. end[k]) */
    size_t n, cap;
} tk_list;

static void list_free(tk_list *l) {
    g4_buf_free(&l->text);
    free(l->end);
}

static void list_reset(tk_list *l) {
    g4_buf_reset(&l->text);
    l->n = 0;
}

/* Ends the token being written (its bytes are whatever was appended to l->text since the previous end). */
static int list_close(tk_list *l) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        size_t *v = realloc(l->end, cap * sizeof *v);
        if (!v) return -1;
        l->end = v;
        l->cap = cap;
    }
    l->end[l->n++] = l->text.len;
    return 0;
}

static int list_push(tk_list *l, const char *s, size_t n) { return g4_buf_append(&l->text, s, n) || list_close(l); }

static const char *list_tok(const tk_list *l, size_t k, size_t *n) {
    size_t start = k ? l->end[k - 1] : 0;
    *n = l->end[k] - start;
    return buf_text(&l->text) + start;
}

/* "<0xNN>" -> NN, else -1. The library parses the two characters with u8::from_str_radix, which also takes "+N". */
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
    if (s[3] == '+' && lo >= 0) return lo;
    return hi >= 0 && lo >= 0 ? hi * 16 + lo : -1;
}

static const char REPLACEMENT_CHAR[] = "\xEF\xBF\xBD";

static int flush_bytes(g4_buf *bytes, tk_list *out) {
    if (!bytes->len) return 0;
    int rc;
    if (g4_utf8_valid(bytes->data, bytes->len)) {
        rc = list_push(out, bytes->data, bytes->len);
    } else {
        rc = 0; /* one U+FFFD per byte of the whole run, as the library does */
        for (size_t i = 0; !rc && i < bytes->len; i++) rc = list_push(out, REPLACEMENT_CHAR, 3);
    }
    g4_buf_reset(bytes);
    return rc;
}

static int dec_byte_fallback(const tk_list *in, tk_list *out) {
    g4_buf bytes = {0};
    int rc = 0;
    for (size_t k = 0; !rc && k < in->n; k++) {
        size_t n;
        const char *s = list_tok(in, k, &n);
        int b = byte_token_value(s, n);
        if (b >= 0) {
            unsigned char c = (unsigned char)b;
            rc = g4_buf_append(&bytes, &c, 1);
        } else {
            rc = flush_bytes(&bytes, out) || list_push(out, s, n);
        }
    }
    if (!rc) rc = flush_bytes(&bytes, out);
    g4_buf_free(&bytes);
    return rc;
}

static int dec_strip_one(const tk_dec_step *st, const char *ch, size_t ch_n, const char *s, size_t n, tk_list *out) {
    size_t a = 0, b = n;
    for (size_t k = 0; k < st->start && b - a >= ch_n && memcmp(s + a, ch, ch_n) == 0; k++) a += ch_n;
    for (size_t k = 0; k < st->stop && b - a >= ch_n && memcmp(s + b - ch_n, ch, ch_n) == 0; k++) b -= ch_n;
    return list_push(out, s + a, b - a);
}

static int dec_step(const g4_tokenizer *t, const tk_dec_step *st, const tk_list *in, tk_list *out) {
    if (st->kind == DEC_BYTE_FALLBACK) return dec_byte_fallback(in, out);
    if (st->kind == DEC_FUSE) {
        return list_push(out, buf_text(&in->text), in->text.len);
    }
    for (size_t k = 0; k < in->n; k++) {
        size_t n;
        const char *s = list_tok(in, k, &n);
        int bad;
        if (st->kind == DEC_REPLACE)
            bad = replace_all(s, n, pool_at(t, st->pattern), st->pattern.len, pool_at(t, st->content), st->content.len,
                              &out->text) ||
                  list_close(out);
        else
            bad = dec_strip_one(st, pool_at(t, st->content), st->content.len, s, n, out);
        if (bad) return -1;
    }
    return 0;
}

static int check_id(const g4_tokenizer *t, int32_t id, g4_err *err) {
    if (!id_known(t, id)) return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: unknown token id %d", (int)id);
    return 0;
}

static int decode_list(const g4_tokenizer *t, tk_list *a, tk_list *b, g4_buf *out) {
    for (size_t k = 0; k < t->n_dec; k++) {
        list_reset(b);
        if (dec_step(t, &t->dec[k], a, b)) return -1;
        tk_list tmp = *a;
        *a = *b;
        *b = tmp;
    }
    /* With a decoder the pieces are concatenated; without one the library joins them with spaces. */
    for (size_t k = 0; k < a->n; k++) {
        size_t n;
        const char *s = list_tok(a, k, &n);
        if ((!t->has_decoder && k > 0 && g4_buf_append(out, " ", 1)) || g4_buf_append(out, s, n)) return -1;
    }
    return 0;
}

int g4_tokenizer_decode(const g4_tokenizer *t, const int32_t *ids, size_t n, int skip_special, g4_buf *out,
                        g4_err *err) {
    if (!t || !out || (!ids && n)) return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: decode: bad arguments");
    tk_list a = {0}, b = {0};
    int rc = 0;
    for (size_t k = 0; !rc && k < n; k++) {
        rc = check_id(t, ids[k], err);
        if (rc || (skip_special && (t->flags[ids[k]] & ID_SPECIAL))) continue;
        tk_str p = t->piece[ids[k]];
        if (list_push(&a, pool_at(t, p), p.len)) rc = nomem(err);
    }
    size_t before = out->len;
    if (!rc && decode_list(t, &a, &b, out)) {
        out->len = before;
        if (out->data) out->data[before] = '\0';
        rc = nomem(err);
    }
    list_free(&a);
    list_free(&b);
    return rc;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Streaming decoding                                                                                            */

void g4_detok_init(g4_detok *d, const g4_tokenizer *t, int skip_special) {
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->skip_special = skip_special;
}

static int detok_drop_pending(g4_detok *d, g4_buf *out) {
    for (size_t i = 0; i < d->n_pending; i++)
        if (g4_buf_append(out, REPLACEMENT_CHAR, 3)) return -1;
    d->n_pending = 0;
    return 0;
}

/* Holds back the bytes of an unfinished character; a byte that cannot continue it turns the held bytes into
 * U+FFFD (one each, like the decoder) and starts afresh. */
static int detok_byte(g4_detok *d, unsigned char c, g4_buf *out) {
    if (d->n_pending && !g4_utf8_continues(d->pending[0], d->n_pending, c) && detok_drop_pending(d, out)) return -1;
    if (d->n_pending) {
        d->pending[d->n_pending++] = c;
        if (d->n_pending < g4_utf8_lead_len(d->pending[0])) return 0;
        int rc = g4_buf_append(out, d->pending, d->n_pending);
        d->n_pending = 0;
        return rc;
    }
    if (c < 0x80) return g4_buf_append(out, &c, 1);
    if (g4_utf8_lead_len(c)) { /* 2, 3 or 4 */
        d->pending[d->n_pending++] = c;
        return 0;
    }
    return g4_buf_append(out, REPLACEMENT_CHAR, 3);
}

/* The control tokens that structure a reply: a thought channel, tool calls and their string quotes. */
static int is_reply_marker(const g4_tokenizer *t, int32_t id) {
    static const char *const markers[] = {"<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|\"|>",
                                          "<|tool_response>"};
    tk_str p = t->piece[id];
    for (size_t i = 0; i < sizeof markers / sizeof *markers; i++)
        if (p.len == strlen(markers[i]) && memcmp(pool_at(t, p), markers[i], p.len) == 0) return 1;
    return 0;
}

int g4_detok_feed(g4_detok *d, int32_t id, g4_buf *out, g4_err *err) {
    const g4_tokenizer *t = d->tok;
    int rc = check_id(t, id, err);
    if (rc) return rc;
    if (d->skip_special && (t->flags[id] & ID_SPECIAL)) {
        if (d->skip_special != G4_SKIP_SPECIAL_BUT_MARKERS || !is_reply_marker(t, id)) return 0;
        if (detok_drop_pending(d, out)) return nomem(err);
        return g4_tokenizer_decode(t, &id, 1, 0, out, err);
    }
    tk_str p = t->piece[id];
    int b = t->decodes_bytes ? byte_token_value(pool_at(t, p), p.len) : -1;
    if (b >= 0) return detok_byte(d, (unsigned char)b, out) ? nomem(err) : 0;
    if (detok_drop_pending(d, out)) return nomem(err);
    return g4_tokenizer_decode(t, &id, 1, d->skip_special, out, err);
}

int g4_detok_flush(g4_detok *d, g4_buf *out) { return detok_drop_pending(d, out) ? GEMMA4C_ERR_NOMEM : 0; }

int g4_tokenizer_piece(const g4_tokenizer *t, int32_t id, g4_buf *out, g4_err *err) {
    int rc = check_id(t, id, err);
    if (rc) return rc;
    tk_str p = t->piece[id];
    int b = t->decodes_bytes ? byte_token_value(pool_at(t, p), p.len) : -1;
    if (b >= 0) {
        unsigned char c = (unsigned char)b;
        return g4_buf_append(out, &c, 1) ? nomem(err) : 0;
    }
    return g4_tokenizer_decode(t, &id, 1, 0, out, err);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Loading                                                                                                       */

void g4_tokenizer_free(g4_tokenizer *t) {
    if (!t) return;
    g4_buf_free(&t->pool);
    free(t->piece);
    free(t->flags);
    if (t->vocab) big_free(t->vocab, (t->vocab_mask + 1) * sizeof *t->vocab);
    if (t->merges) big_free(t->merges, (t->merge_mask + 1) * sizeof *t->merges);
    free(t->added);
    free(t->raw_trie.nodes);
    free(t->norm_trie.nodes);
    free(t);
}

static bool is_special_text(const g4_tokenizer *t, const char *s, size_t n) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].special && str_eq(t, t->added[i].text, s, n)) return true;
    return false;
}

/* The library decodes a normalized added token as its normalized text (so that the decoder can undo the
 * normalizer), and skips a token as special by that text: a special token whose text the normalizer changes is
 * then no longer skipped. */
static int decode_as_normalized(g4_tokenizer *t, int32_t id, const char *s, size_t n, g4_err *err) {
    int rc = pool_add(t, s, n, &t->piece[id], err);
    if (!rc && !is_special_text(t, s, n)) t->flags[id] &= (uint8_t)~ID_SPECIAL;
    return rc;
}

/* Added tokens marked `normalized` are matched after normalization, so their own text is normalized too. */
static int build_tries(g4_tokenizer *t, g4_err *err) {
    tk_work w = {0};
    int rc = 0;
    for (size_t i = 0; !rc && i < t->n_added; i++) {
        const tk_added *a = &t->added[i];
        const char *s = pool_at(t, a->text);
        size_t n = a->text.len;
        if (a->normalized) rc = normalize(t, s, n, &w, &s, &n, err);
        if (!rc && n && trie_insert(a->normalized ? &t->norm_trie : &t->raw_trie, s, n, (int32_t)i)) rc = nomem(err);
        if (!rc && a->normalized && !str_eq(t, a->text, s, n)) rc = decode_as_normalized(t, a->id, s, n, err);
    }
    work_free(&w);
    return rc;
}

static int parse_sections(g4_tokenizer *t, const tk_sections *sec, g4_err *err) {
    cJSON *added = NULL, *norm = NULL, *pre = NULL, *dec = NULL;
    int rc = cj_parse(sec->added, "added_tokens", &added, err);
    if (!rc) rc = cj_parse(sec->normalizer, "normalizer", &norm, err);
    if (!rc) rc = cj_parse(sec->pre_tokenizer, "pre_tokenizer", &pre, err);
    if (!rc) rc = cj_parse(sec->decoder, "decoder", &dec, err);
    size_t n_added = cJSON_IsArray(added) ? (size_t)cJSON_GetArraySize(added) : 0;
    if (!rc) rc = parse_model(t, &sec->m, n_added, err);
    size_t n_vocab = 0;
    for (int32_t id = 0; !rc && id < t->n_ids; id++) n_vocab += (t->flags[id] & ID_MODEL) != 0;
    if (!rc) rc = parse_normalizer(t, norm, 0, err);
    if (!rc) rc = parse_pre_tokenizer(t, pre, 0, err);
    if (!rc) rc = parse_decoder(t, dec, 0, err);
    if (!rc) rc = parse_added_tokens(t, added, n_vocab, err);
    if (!rc) rc = build_tries(t, err);
    cJSON_Delete(added);
    cJSON_Delete(norm);
    cJSON_Delete(pre);
    cJSON_Delete(dec);
    return rc;
}

int g4_tokenizer_parse(const char *json, size_t len, g4_tokenizer **out, g4_err *err) {
    if (!out) return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: no output");
    *out = NULL;
    if (!json || len == 0) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: empty");
    if (len > TK_MAX_JSON_BYTES) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: %zu bytes is too large", len);
    if (!g4_utf8_valid(json, len)) return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer.json: not valid UTF-8");
    tk_sections sec = {0};
    int rc = find_sections(json, len, &sec, err);
    if (rc) return rc;
    g4_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return nomem(err);
    rc = parse_sections(t, &sec, err);
    if (rc) {
        g4_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* The gzip trailer's size of the (last) member, trusted only as far as deflate can expand: one allocation for an
 * honest file, growth for anything else. */
static size_t gunzip_size_hint(const unsigned char *in, size_t n) {
    if (n < 18) return 1024;
    size_t isize = (size_t)in[n - 4] | (size_t)in[n - 3] << 8 | (size_t)in[n - 2] << 16 | (size_t)in[n - 1] << 24;
    size_t most = n < TK_MAX_JSON_BYTES / 1032 ? n * 1032 : TK_MAX_JSON_BYTES;
    size_t hint = isize + 1 < most ? isize + 1 : most;
    return hint < 1024 ? 1024 : hint;
}

/* The inflated file: big_calloc'd, so its size travels with it. */
typedef struct tk_block {
    char *p;
    size_t len, cap;
} tk_block;

static int block_grow(tk_block *b, g4_err *err) {
    if (b->cap >= TK_MAX_JSON_BYTES)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer: gzip content larger than %zu bytes", TK_MAX_JSON_BYTES);
    size_t cap = b->cap * 2 > TK_MAX_JSON_BYTES ? TK_MAX_JSON_BYTES : b->cap * 2;
    char *p = big_calloc(cap);
    if (!p) return nomem(err);
    memcpy(p, b->p, b->len);
    big_free(b->p, b->cap);
    b->p = p;
    b->cap = cap;
    return 0;
}

/* One inflate call over at most 1 GiB in and out (zlib counts in uInt). */
static int inflate_some(z_stream *zs, tk_block *b, size_t *in_left) {
    uInt in_chunk = *in_left > (1u << 30) ? (1u << 30) : (uInt)*in_left;
    uInt out_chunk = b->cap - b->len > (1u << 30) ? (1u << 30) : (uInt)(b->cap - b->len);
    zs->avail_in = in_chunk;
    zs->next_out = (Bytef *)b->p + b->len;
    zs->avail_out = out_chunk;
    int z = inflate(zs, Z_NO_FLUSH);
    *in_left -= in_chunk - zs->avail_in;
    b->len += out_chunk - zs->avail_out;
    return z;
}

/* gzip (possibly several members), bounded so that a small bomb cannot take all memory. */
static int gunzip(const unsigned char *in, size_t n, tk_block *b, g4_err *err) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return nomem(err);
    b->cap = gunzip_size_hint(in, n);
    b->len = 0;
    b->p = big_calloc(b->cap);
    int rc = b->p ? 0 : nomem(err);
    zs.next_in = (Bytef *)in;
    size_t in_left = n;
    while (!rc) {
        if (b->len == b->cap && (rc = block_grow(b, err))) break;
        int z = inflate_some(&zs, b, &in_left);
        if (z == Z_STREAM_END) {
            if (in_left == 0) break;
            if (inflateReset(&zs) != Z_OK) rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer: bad gzip member");
        } else if (z == Z_BUF_ERROR && in_left == 0) {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer: truncated gzip data");
        } else if (z != Z_OK && z != Z_BUF_ERROR) {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "tokenizer: corrupt gzip data");
        }
    }
    inflateEnd(&zs);
    if (rc) big_free(b->p, b->cap);
    return rc;
}

int g4_tokenizer_load(const char *path, g4_tokenizer **out, g4_err *err) {
    if (!out) return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: no output");
    *out = NULL;
    g4_mapfile m;
    int rc = g4_mapfile_open(&m, path, err);
    if (rc) return rc;
    if (m.size > TK_MAX_FILE_BYTES) {
        rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "file of %zu bytes is too large for a tokenizer", m.size);
    } else if (m.size >= 2 && m.data[0] == 0x1f && m.data[1] == 0x8b) {
        tk_block json = {0};
        rc = gunzip(m.data, m.size, &json, err);
        if (!rc) {
            rc = g4_tokenizer_parse(json.p, json.len, out, err);
            big_free(json.p, json.cap);
        }
    } else {
        rc = g4_tokenizer_parse((const char *)m.data, m.size, out, err);
    }
    g4_mapfile_close(&m);
    if (rc) g4_err_prefix(err, "%s", path);
    return rc;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Byte-level fallback tokenizer                                                                                 */

#define GEMMA_BYTE_BASE 238

static const g4_special_token GEMMA_CONTROL[] = {
    {"<pad>", 0},
    {"<eos>", 1},
    {"<bos>", 2},
    {"<unk>", 3},
    {"<mask>", 4},
    {"<|tool>", 46},
    {"<tool|>", 47},
    {"<|tool_call>", 48},
    {"<tool_call|>", 49},
    {"<|tool_response>", 50},
    {"<tool_response|>", 51},
    {"<|\"|>", 52},
    {"<|think|>", 98},
    {"<|channel>", 100},
    {"<channel|>", 101},
    {"<|turn>", 105},
    {"<turn|>", 106},
};

static int check_extras(int vocab_size, const g4_special_token *extra, size_t n_extra, g4_err *err) {
    for (size_t i = 0; i < n_extra; i++) {
        const g4_special_token *e = &extra[i];
        if (!e->text || !*e->text)
            return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: extra special token %zu has no text", i);
        if (e->id < 0 || e->id >= vocab_size)
            return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: special token %s id %d outside the vocabulary (%d)",
                           e->text, (int)e->id, vocab_size);
        if (e->id >= GEMMA_BYTE_BASE && e->id < GEMMA_BYTE_BASE + 256)
            return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: special token %s id %d is a byte token", e->text,
                           (int)e->id);
        for (size_t j = 0; j < i; j++)
            if (extra[j].id == e->id || strcmp(extra[j].text, e->text) == 0)
                return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: special tokens %s and %s clash", extra[j].text,
                               e->text);
    }
    return 0;
}

static bool extras_take(const g4_special_token *extra, size_t n_extra, const g4_special_token *c) {
    for (size_t i = 0; i < n_extra; i++)
        if (extra[i].id == c->id || strcmp(extra[i].text, c->text) == 0) return true;
    return false;
}

static int byte_level_token(g4_tokenizer *t, const char *text, int32_t id, bool special, g4_err *err) {
    tk_added a = {0};
    int rc = pool_add(t, text, strlen(text), &a.text, err);
    if (rc) return rc;
    a.id = id;
    a.special = special;
    t->piece[id] = a.text;
    t->flags[id] = ID_PRESENT | ID_MODEL | ID_ADDED | (special ? ID_SPECIAL : 0);
    return added_push(t, a, err);
}

/* Control tokens (unless an extra takes their id or text), extras, byte tokens, and a placeholder for every other
 * id so that whatever a model emits can be shown; placeholders count as special, so streamed text skips them. */
static int byte_level_fill(g4_tokenizer *t, const g4_special_token *extra, size_t n_extra, g4_err *err) {
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof GEMMA_CONTROL / sizeof GEMMA_CONTROL[0]; i++) {
        const g4_special_token *c = &GEMMA_CONTROL[i];
        if (c->id < t->n_ids && !extras_take(extra, n_extra, c))
            rc = byte_level_token(t, c->text, c->id, strcmp(c->text, "<mask>") != 0, err);
    }
    for (size_t i = 0; !rc && i < n_extra; i++) rc = byte_level_token(t, extra[i].text, extra[i].id, true, err);
    for (int32_t id = 0; !rc && id < t->n_ids; id++) {
        if (t->flags[id]) continue;
        char name[24];
        int is_byte = id >= GEMMA_BYTE_BASE && id < GEMMA_BYTE_BASE + 256;
        if (is_byte)
            snprintf(name, sizeof name, "<0x%02X>", (unsigned)(id - GEMMA_BYTE_BASE));
        else
            snprintf(name, sizeof name, "<id_%d>", (int)id);
        rc = pool_add(t, name, strlen(name), &t->piece[id], err);
        t->flags[id] = ID_PRESENT | ID_MODEL | (is_byte ? 0 : ID_SPECIAL);
    }
    return rc;
}

int g4_tokenizer_byte_level(int vocab_size, const g4_special_token *extra, size_t n_extra, g4_tokenizer **out,
                            g4_err *err) {
    if (!out) return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: no output");
    *out = NULL;
    if (vocab_size < GEMMA_BYTE_BASE + 256 || vocab_size > TK_BYTE_LEVEL_MAX_VOCAB)
        return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: byte-level vocabulary of %d ids (needs %d..%d)", vocab_size,
                       GEMMA_BYTE_BASE + 256, TK_BYTE_LEVEL_MAX_VOCAB);
    if (n_extra && !extra) return g4_fail(err, GEMMA4C_ERR_ARG, "tokenizer: extra special tokens missing");
    int rc = check_extras(vocab_size, extra, n_extra, err);
    if (rc) return rc;
    g4_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return nomem(err);
    rc = ids_resize(t, vocab_size, err);
    if (!rc) rc = byte_level_fill(t, extra, n_extra, err);
    if (!rc) rc = vocab_build(t, (size_t)vocab_size, err);
    if (!rc) {
        find_byte_ids(t);
        t->byte_fallback = true;
        t->unk_id = -1;
        t->has_decoder = t->decodes_bytes = true;
        t->dec[0].kind = DEC_BYTE_FALLBACK;
        t->dec[1].kind = DEC_FUSE;
        t->n_dec = 2;
        rc = build_tries(t, err);
    }
    if (rc) {
        g4_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Queries                                                                                                       */

int g4_tokenizer_vocab_size(const g4_tokenizer *t) { return t ? t->n_ids : 0; }

int32_t g4_tokenizer_find(const g4_tokenizer *t, const char *piece) {
    if (!t || !piece) return -1;
    size_t n = strlen(piece);
    /* Added tokens take precedence, as in token_to_id; those the model knows already share its id. */
    for (size_t i = 0; i < t->n_added; i++)
        if (str_eq(t, t->added[i].text, piece, n)) return t->added[i].id;
    return vocab_find(t, piece, n);
}

int g4_tokenizer_is_special(const g4_tokenizer *t, int32_t id) {
    return t && id_known(t, id) && (t->flags[id] & ID_SPECIAL) ? 1 : 0;
}
