/* cuda_attention.cu — the CUDA backend's attention over paged keys (with the kv writes), the audio encoder's
 * chunked local attention and its strided 3x3 convolution blocks. */
#include "backend/cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Widest head a warp holds in registers (16 values a lane): Gemma 4's global layers use 512. */
enum { MAX_D = 512, PER_LANE = MAX_D / 32, WARPS = 4 };

/* ---- kv writes ---- */

typedef struct kv_dst {
    float *key; /* kv head 0's key at the row's position */
    int64_t head_stride, value_offset;
} kv_dst;

__global__ void kv_write_kernel(const kv_dst *__restrict__ dst, int64_t rows, int64_t kv_heads, int64_t D,
                                const float *__restrict__ k, const float *__restrict__ v) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * kv_heads * D) return;
    const int64_t r = i / (kv_heads * D), h = i / D % kv_heads, d = i % D;
    float *key = dst[r].key + h * dst[r].head_stride + d;
    key[0] = k[i];
    key[dst[r].value_offset] = v[i];
}

void g4_cuda_kv_write(g4_backend *b, const g4_kv_view *const *view, const int64_t *pos, int64_t rows, int64_t kv_heads,
                      int64_t head_dim, const float *k, const float *v) {
    cuda_backend *cb = cuda_of(b);
    if (cb->err.code || rows < 1) return;
    kv_dst *dst = (kv_dst *)malloc((size_t)rows * sizeof *dst);
    if (!dst) {
        if (!cb->err.code) g4_fail(&cb->err, GEMMA4C_ERR_NOMEM, "out of memory for a kv write of %lld rows", (long long)rows);
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        const g4_kv_view *vw = view[r];
        dst[r] = (kv_dst){vw->page[pos[r] / vw->page_len] + pos[r] % vw->page_len * vw->pos_stride, vw->head_stride,
                          vw->value_offset};
    }
    g4_cuda_table_begin(cb);
    const size_t at = g4_cuda_table_add(cb, dst, (size_t)rows * sizeof *dst);
    free(dst);
    char *base = at != (size_t)-1 ? g4_cuda_table_upload(cb) : NULL;
    if (!base) return;
    kv_write_kernel<<<g4_cuda_blocks(rows * kv_heads * head_dim, 256), 256>>>((const kv_dst *)(base + at), rows,
                                                                               kv_heads, head_dim, k, v);
    g4_cuda_launched(cb, "kv_write");
}

/* ---- attention ---- */

/* One distinct view of a call: its geometry and where its pages start in the call's page table. */
typedef struct att_view {
    int64_t page_len, head_stride, pos_stride, value_offset;
    int64_t page0;  /* the first page the call reads */
    int64_t at;     /* index of page page0 in the page table */
} att_view;

typedef struct att_row {
    int64_t first, last;
    int64_t view;
} att_row;

typedef struct att_args {
    const att_row *rows;
    const att_view *views;
    float *const *pages;
    const float *q;
    float *out;
    int64_t heads, group, D, splits;
    float *part; /* splits > 1: [rows * heads][splits][D] outputs, then [rows * heads][splits] log-sum-exps */
} att_args;

/* One block per (row, query head, part of the keys): its 4 warps take every 4th key, each keeping a running
 * maximum, sum and weighted value sum (online softmax), merged at the end. With several parts each part's
 * output is normalised over its own keys and kept with its log-sum-exp for combine_kernel, as the CPU backend
 * does with its key ranges. */
__global__ void __launch_bounds__(WARPS * 32) attention_kernel(const att_args a) {
    __shared__ float qs[MAX_D];
    __shared__ float wm[WARPS], wl[WARPS];
    __shared__ float wo[WARPS][MAX_D];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    const int64_t rh = blockIdx.x, split = blockIdx.y, r = rh / a.heads, h = rh % a.heads, D = a.D;
    const att_row row = a.rows[r];
    const att_view v = a.views[row.view];
    const int64_t n = row.last - row.first + 1;
    const int64_t lo = row.first + (n > 0 ? n * split / a.splits : 0);
    const int64_t hi = row.first + (n > 0 ? n * (split + 1) / a.splits : 0) - 1;
    const int64_t kvh = h / a.group;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) qs[d] = a.q[rh * D + d];
    __syncthreads();
    float m = -INFINITY, l = 0, o[PER_LANE];
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) o[i] = 0;
    for (int64_t p = lo + wid; p <= hi; p += WARPS) {
        const float *key = a.pages[v.at + p / v.page_len - v.page0] + kvh * v.head_stride + p % v.page_len * v.pos_stride;
        float s = 0;
#pragma unroll
        for (int i = 0; i < PER_LANE; i++)
            if (lane + 32 * i < D) s += qs[lane + 32 * i] * key[lane + 32 * i];
        for (int off = 16; off; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        const float m_new = fmaxf(m, s), corr = expf(m - m_new), e = expf(s - m_new);
        const float *val = key + v.value_offset;
        l = l * corr + e;
#pragma unroll
        for (int i = 0; i < PER_LANE; i++)
            if (lane + 32 * i < D) o[i] = o[i] * corr + e * val[lane + 32 * i];
        m = m_new;
    }
    if (lane == 0) wm[wid] = m, wl[wid] = l;
#pragma unroll
    for (int i = 0; i < PER_LANE; i++)
        if (lane + 32 * i < D) wo[wid][lane + 32 * i] = o[i];
    __syncthreads();
    float top = -INFINITY;
    for (int w = 0; w < WARPS; w++) top = fmaxf(top, wm[w]);
    float total = 0;
    for (int w = 0; w < WARPS; w++) total += wm[w] == -INFINITY ? 0.0f : wl[w] * expf(wm[w] - top);
    float *dst = a.splits == 1 ? a.out + rh * D : a.part + (rh * a.splits + split) * D;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float sum = 0;
        if (top != -INFINITY)
            for (int w = 0; w < WARPS; w++)
                if (wm[w] != -INFINITY) sum += wo[w][d] * expf(wm[w] - top);
        dst[d] = top == -INFINITY ? 0.0f : sum / total;
    }
    if (a.splits > 1 && threadIdx.x == 0) {
        float *lse = a.part + gridDim.x * a.splits * D;
        lse[rh * a.splits + split] = top == -INFINITY ? -INFINITY : top + logf(total);
    }
}

/* out = the parts' outputs weighted by exp(their log-sum-exp - the total's). */
__global__ void combine_kernel(const att_args a, int64_t n_rh) {
    const int64_t rh = blockIdx.x, D = a.D, S = a.splits;
    const float *lse = a.part + n_rh * S * D + rh * S;
    float top = -INFINITY, total = 0;
    for (int64_t s = 0; s < S; s++) top = fmaxf(top, lse[s]);
    if (top != -INFINITY)
        for (int64_t s = 0; s < S; s++) total += expf(lse[s] - top);
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float sum = 0;
        if (top != -INFINITY)
            for (int64_t s = 0; s < S; s++) sum += expf(lse[s] - top) / total * a.part[(rh * S + s) * D + d];
        a.out[rh * D + d] = sum;
    }
}

int g4_cuda_attention(g4_backend *b, const g4_attention *a, g4_err *err) {
    cuda_backend *cb = cuda_of(b);
    if (g4_cuda_failed(cb, err)) return cb->err.code;
    if (a->rows < 1) return 0;
    if (a->head_dim > MAX_D || a->kv_heads < 1 || a->heads % a->kv_heads)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "CUDA attention: %lld heads over %lld kv heads of %lld (at most %d)",
                       (long long)a->heads, (long long)a->kv_heads, (long long)a->head_dim, MAX_D);
    /* the distinct views (one per sequence or encoder input), each with the pages its rows read */
    int64_t n_views = 0, max_keys = 1;
    att_row *rows = (att_row *)malloc((size_t)a->rows * sizeof *rows);
    const g4_kv_view **seen = (const g4_kv_view **)malloc((size_t)a->rows * sizeof *seen);
    att_view *views = (att_view *)malloc((size_t)a->rows * sizeof *views);
    int64_t *page_hi = (int64_t *)malloc((size_t)a->rows * sizeof *page_hi);
    int rc = 0;
    if (!rows || !seen || !views || !page_hi) {
        rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for attention over %lld rows", (long long)a->rows);
        goto done;
    }
    for (int64_t r = 0; r < a->rows; r++) {
        const g4_kv_view *v = a->view[r];
        int64_t k = n_views - 1;
        while (k >= 0 && seen[k] != v) k--; /* rows of one sequence are adjacent: the last view matches first */
        if (k < 0) {
            k = n_views++;
            seen[k] = v;
            views[k] = (att_view){v->page_len, v->head_stride, v->pos_stride, v->value_offset, INT64_MAX, 0};
            page_hi[k] = -1;
        }
        rows[r] = (att_row){a->first[r], a->last[r], k};
        if (a->first[r] <= a->last[r]) {
            views[k].page0 = min64(views[k].page0, a->first[r] / v->page_len);
            page_hi[k] = max64(page_hi[k], a->last[r] / v->page_len);
            max_keys = max64(max_keys, a->last[r] - a->first[r] + 1);
        }
    }
    g4_cuda_table_begin(cb);
    {
        size_t at_pages = (size_t)-1, at_rows, at_views;
        for (int64_t k = 0; k < n_views; k++) {
            if (page_hi[k] < 0) views[k].page0 = 0; /* no keys read */
            views[k].at = 0;
            const int64_t count = page_hi[k] - views[k].page0 + 1;
            if (count <= 0) continue;
            /* each view's pointers where the table put them (entries are aligned, so not always end to end) */
            const size_t o = g4_cuda_table_add(cb, seen[k]->page + views[k].page0, (size_t)count * sizeof(float *));
            if (o == (size_t)-1) break;
            if (at_pages == (size_t)-1) at_pages = o;
            views[k].at = (int64_t)((o - at_pages) / sizeof(float *));
        }
        if (at_pages == (size_t)-1) at_pages = g4_cuda_table_add(cb, NULL, 0);
        at_rows = g4_cuda_table_add(cb, rows, (size_t)a->rows * sizeof *rows);
        at_views = g4_cuda_table_add(cb, views, (size_t)n_views * sizeof *views);
        /* A decode step has a block per query head: split the keys until the GPU has about two blocks a
         * multiprocessor, each part at least 256 keys. */
        const int64_t blocks = a->rows * a->heads, want = 2 * (int64_t)cb->info.sm_count;
        int64_t splits = 1;
        if (blocks < want) splits = min64(min64((max_keys + 255) / 256, (want + blocks - 1) / blocks), 64);
        splits = max64(splits, 1);
        char *base = at_pages != (size_t)-1 && at_rows != (size_t)-1 && at_views != (size_t)-1 ? g4_cuda_table_upload(cb) : NULL;
        if (base && splits > 1 &&
            g4_cuda_grow(cb, (void **)&cb->part, &cb->part_bytes, (size_t)(blocks * splits * (a->head_dim + 1)) * sizeof(float),
                         "attention"))
            base = NULL;
        if (!base) {
            rc = g4_cuda_failed(cb, err);
            goto done;
        }
        const att_args args = {(const att_row *)(base + at_rows), (const att_view *)(base + at_views),
                               (float *const *)(base + at_pages), a->q, a->out, a->heads, a->heads / a->kv_heads,
                               a->head_dim, splits, cb->part};
        attention_kernel<<<dim3((unsigned)blocks, (unsigned)splits), WARPS * 32>>>(args);
        if (splits > 1) combine_kernel<<<(unsigned)blocks, 128>>>(args, blocks);
        g4_cuda_launched(cb, "attention");
        rc = g4_cuda_failed(cb, err);
    }
done:
    free(rows), free(seen), free(views), free(page_hi);
    return rc;
}

/* ---- the audio encoder's local attention: a warp per (position, head) ---- */

__global__ void local_attention_kernel(const g4_local_attention a, const uint8_t *__restrict__ valid, int64_t window) {
    extern __shared__ float scores[];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    const int64_t item = (int64_t)blockIdx.x * (blockDim.x >> 5) + wid;
    if (item >= a.T * a.heads) return;
    const int64_t hd = a.head_dim, D = a.heads * hd, t = item / a.heads, h = item % a.heads;
    float *s = scores + wid * window;
    const int64_t lo = t - a.past + 1 > 0 ? t - a.past + 1 : 0;
    const int64_t reach = t + (a.future - 1 > 0 ? a.future - 1 : 0), hi = reach < a.T - 1 ? reach : a.T - 1;
    const float *q = a.q + t * D + h * hd;
    float *o = a.out + t * D + h * hd;
    int any = 0;
    for (int64_t kk = lo; kk <= hi; kk++) {
        if (!valid[kk]) {
            if (lane == 0) s[kk - lo] = -INFINITY;
            continue;
        }
        const int64_t rel = a.past - (t - kk);
        const float *k = a.k + kk * D + h * hd, *rk = a.rel_k + rel * D + h * hd;
        float dot = 0, dot_rel = 0;
        for (int64_t i = lane; i < hd; i += 32) {
            dot += q[i] * k[i];
            if (rel < a.n_rel) dot_rel += q[i] * rk[i];
        }
        for (int off = 16; off; off >>= 1) {
            dot += __shfl_xor_sync(0xffffffffu, dot, off);
            dot_rel += __shfl_xor_sync(0xffffffffu, dot_rel, off);
        }
        const float logit = rel < a.n_rel ? dot + dot_rel : dot;
        if (lane == 0) s[kk - lo] = a.cap * tanhf(logit / a.cap);
        any = 1;
    }
    __syncwarp();
    if (any) {
        if (lane == 0) { /* g4_softmax over the window, invalid keys (-inf) getting 0 */
            const int64_t n = hi - lo + 1;
            float m = -INFINITY, sum = 0;
            for (int64_t i = 0; i < n; i++) m = s[i] > m ? s[i] : m;
            for (int64_t i = 0; i < n; i++) sum += (s[i] = expf(s[i] - m));
            const float inv = 1.0f / sum;
            for (int64_t i = 0; i < n; i++) s[i] *= inv;
        }
        __syncwarp();
        for (int64_t i = lane; i < hd; i += 32) {
            float acc = 0;
            for (int64_t kk = lo; kk <= hi; kk++)
                if (valid[kk]) acc = __fadd_rn(acc, __fmul_rn(s[kk - lo], a.v[kk * D + h * hd + i]));
            o[i] = acc;
        }
        return;
    }
    /* No valid key (padding positions only): the reference's all-masked softmax averages every context slot of
     * the chunk uniformly, the zero padding beyond the sequence included. */
    const int64_t first = t / a.chunk * a.chunk - a.past;
    const int64_t k0 = first > 0 ? first : 0, k1 = first + a.context < a.T ? first + a.context : a.T;
    const float w = 1.0f / (float)a.context;
    for (int64_t i = lane; i < hd; i += 32) {
        float acc = 0;
        for (int64_t kk = k0; kk < k1; kk++) acc = __fadd_rn(acc, __fmul_rn(w, a.v[kk * D + h * hd + i]));
        o[i] = acc;
    }
}

int g4_cuda_local_attention(g4_backend *b, const g4_local_attention *a, g4_err *err) {
    cuda_backend *cb = cuda_of(b);
    if (g4_cuda_failed(cb, err)) return cb->err.code;
    if (a->T < 1) return 0;
    const int64_t window = max64(1, a->past + max64(0, a->future - 1)); /* keys t - past + 1 ..= t + future - 1 */
    if ((size_t)(WARPS * window) * sizeof(float) > 48 * 1024)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "CUDA local attention: a window of %lld keys", (long long)window);
    g4_cuda_table_begin(cb);
    const size_t at = g4_cuda_table_add(cb, a->valid, (size_t)a->T);
    char *base = at != (size_t)-1 ? g4_cuda_table_upload(cb) : NULL;
    if (!base) return g4_cuda_failed(cb, err);
    local_attention_kernel<<<g4_cuda_blocks(a->T * a->heads, WARPS), WARPS * 32, (size_t)(WARPS * window) * sizeof(float)>>>(
        *a, (const uint8_t *)(base + at), window);
    g4_cuda_launched(cb, "local attention");
    return g4_cuda_failed(cb, err);
}

/* ---- the subsampler's 3x3 stride-2 convolution + LayerNorm + ReLU: a block per output cell (time, frequency) ---- */

typedef struct conv_args {
    g4_conv2d c;
    const uint8_t *in_live;  /* [in_rows]: the input row holds data */
    const uint8_t *out_live; /* [out_rows]: the output row is computed (else zero) */
    int64_t F_out;
} conv_args;

__global__ void conv2d_kernel(const conv_args a) {
    extern __shared__ float shared[];
    __shared__ double stats[2];
    const g4_conv2d &c = a.c;
    const int64_t Ci = c.C_in, Co = c.C_out, row = blockIdx.x / a.F_out, f = blockIdx.x % a.F_out;
    const int64_t t = c.out_first + row;
    float *patch = shared, *cell = shared + 9 * Ci;
    float *out = c.out + (row * a.F_out + f) * Co;
    if (!a.out_live[row]) {
        for (int64_t o = threadIdx.x; o < Co; o += blockDim.x) out[o] = 0;
        return;
    }
    for (int64_t i = threadIdx.x; i < 9 * Ci; i += blockDim.x) {
        const int64_t k = i / Ci, ch = i % Ci, ti = 2 * t - 1 + k / 3, fi = 2 * f - 1 + k % 3;
        const int live = ti >= c.in_first && ti < c.in_first + c.in_rows && a.in_live[ti - c.in_first] && fi >= 0 &&
                         fi < c.F_in;
        patch[i] = live ? c.in[((ti - c.in_first) * c.F_in + fi) * Ci + ch] : 0.0f;
    }
    __syncthreads();
    for (int64_t o = threadIdx.x; o < Co; o += blockDim.x) {
        const float *w = c.w + o * 9 * Ci;
        float s = 0;
        for (int64_t j = 0; j < 9 * Ci; j++) s = __fadd_rn(s, __fmul_rn(w[j], patch[j]));
        cell[o] = s;
    }
    __syncthreads();
    if (threadIdx.x == 0) { /* LayerNorm statistics in double, in the CPU's order */
        double mean = 0, var = 0;
        for (int64_t i = 0; i < Co; i++) mean += cell[i];
        mean /= (double)Co;
        for (int64_t i = 0; i < Co; i++) var += ((double)cell[i] - mean) * ((double)cell[i] - mean);
        stats[0] = mean, stats[1] = 1.0 / sqrt(var / (double)Co + (double)c.eps);
    }
    __syncthreads();
    for (int64_t o = threadIdx.x; o < Co; o += blockDim.x) {
        const float y = __fmul_rn((float)(((double)cell[o] - stats[0]) * stats[1]), c.norm[o]);
        out[o] = y > 0 ? y : 0;
    }
}

int g4_cuda_conv2d(g4_backend *b, const g4_conv2d *c, g4_err *err) {
    cuda_backend *cb = cuda_of(b);
    if (g4_cuda_failed(cb, err)) return cb->err.code;
    const int64_t F_out = (c->F_in - 1) / 2 + 1;
    if (c->out_rows < 1) return 0;
    const size_t shared = (size_t)(9 * c->C_in + c->C_out) * sizeof(float);
    if (shared > 48 * 1024)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "CUDA conv2d: %lld input and %lld output channels",
                       (long long)c->C_in, (long long)c->C_out);
    conv_args args = {*c, NULL, NULL, F_out};
    args.c.w = (const float *)g4_cuda_weight(cb, c->w, (size_t)(c->C_out * 9 * c->C_in) * sizeof(float));
    args.c.norm = (const float *)g4_cuda_weight(cb, c->norm, (size_t)c->C_out * sizeof(float));
    if (!args.c.w || !args.c.norm) return g4_cuda_failed(cb, err);
    /* the host's validity arrays, as the CPU backend reads them, turned into one flag per row */
    uint8_t *flags = (uint8_t *)malloc((size_t)(max64(c->in_rows, 0) + c->out_rows));
    if (!flags) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory for a convolution");
    for (int64_t i = 0; i < c->in_rows; i++) {
        const int64_t t = c->in_first + i;
        flags[i] = !c->in_valid || (t >= 0 && c->in_valid[t]);
    }
    for (int64_t r = 0; r < c->out_rows; r++) {
        const int64_t t = c->out_first + r;
        flags[max64(c->in_rows, 0) + r] = t >= 0 && t < c->out_limit && (!c->out_valid || c->out_valid[t]);
    }
    g4_cuda_table_begin(cb);
    const size_t at = g4_cuda_table_add(cb, flags, (size_t)(max64(c->in_rows, 0) + c->out_rows));
    free(flags);
    char *base = at != (size_t)-1 ? g4_cuda_table_upload(cb) : NULL;
    if (!base) return g4_cuda_failed(cb, err);
    args.in_live = (const uint8_t *)(base + at);
    args.out_live = args.in_live + max64(c->in_rows, 0);
    conv2d_kernel<<<(unsigned)(c->out_rows * F_out), 128, shared>>>(args);
    g4_cuda_launched(cb, "conv2d");
    return g4_cuda_failed(cb, err);
}
