/* test_kernels.c — every SIMD variant against the portable kernels on random inputs of odd sizes. */
#include "test.h"

#include "core/threads.h"
#include "kernels/kernels.h"
#include "kernels/membw.h"

static uint64_t rng = 0x1234567;
static float rnd(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / 16777216.0) * 2.0f - 1.0f;
}

static void check_ops(const g4_kernel_ops *ops) {
    const g4_kernel_ops *ref = g4_kernels_portable();
    int64_t sizes[] = {1, 3, 7, 8, 9, 31, 33, 100, 257, 1023};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int64_t n = sizes[si];
        float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4), *y1 = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4);
        uint16_t *h = malloc((size_t)n * 2);
        for (int64_t i = 0; i < n; i++) a[i] = rnd(), b[i] = rnd(), y1[i] = y2[i] = rnd();
        double d1 = ref->dot(a, b, n), d2 = ops->dot(a, b, n);
        CHECK(fabs(d1 - d2) <= 1e-5 * (1 + fabs(d1)) * sqrt((double)n), "%s dot n=%lld: %g vs %g", ops->name, (long long)n, d1, d2);
        ref->axpy(y1, 0.37f, a, n);
        ops->axpy(y2, 0.37f, a, n);
        for (int64_t i = 0; i < n; i++) CHECK(fabsf(y1[i] - y2[i]) <= 1e-6f, "%s axpy n=%lld i=%lld", ops->name, (long long)n, (long long)i);
        for (int dt = 0; dt < 3; dt++) {
            g4_dtype type = dt == 0 ? G4_DT_F32 : dt == 1 ? G4_DT_BF16 : G4_DT_F16;
            const void *src = a;
            if (type != G4_DT_F32) {
                for (int64_t i = 0; i < n; i++) h[i] = type == G4_DT_BF16 ? g4_f32_to_bf16(a[i]) : g4_f32_to_f16(a[i]);
                src = h;
            }
            ref->to_f32(y1, src, type, n);
            ops->to_f32(y2, src, type, n);
            CHECK(memcmp(y1, y2, (size_t)n * 4) == 0, "%s to_f32 dtype %d n=%lld", ops->name, dt, (long long)n);
        }
        /* rmsnorm with and without a weight, into another buffer and in place */
        ref->rmsnorm(y1, a, b, n, 1e-6f);
        ops->rmsnorm(y2, a, b, n, 1e-6f);
        for (int64_t i = 0; i < n; i++)
            CHECK(fabsf(y1[i] - y2[i]) <= 1e-6f * (1 + fabsf(y1[i])), "%s rmsnorm n=%lld i=%lld: %g vs %g", ops->name,
                  (long long)n, (long long)i, y1[i], y2[i]);
        memcpy(y1, a, (size_t)n * 4), memcpy(y2, a, (size_t)n * 4);
        ref->rmsnorm(y1, y1, NULL, n, 1e-6f);
        ops->rmsnorm(y2, y2, NULL, n, 1e-6f);
        for (int64_t i = 0; i < n; i++)
            CHECK(fabsf(y1[i] - y2[i]) <= 1e-6f * (1 + fabsf(y1[i])), "%s rmsnorm in place n=%lld", ops->name, (long long)n);
        /* gelu over [-12, 12] (saturated tails included), alone and gated */
        for (int64_t i = 0; i < n; i++) y1[i] = y2[i] = a[i] * 12.0f;
        ref->gelu_mul(y1, b, n);
        ops->gelu_mul(y2, b, n);
        for (int64_t i = 0; i < n; i++)
            CHECK(fabsf(y1[i] - y2[i]) <= 2e-6f * (1 + fabsf(y1[i])), "%s gelu_mul n=%lld x=%g: %g vs %g", ops->name,
                  (long long)n, a[i] * 12.0f, y1[i], y2[i]);
        for (int64_t i = 0; i < n; i++) y1[i] = y2[i] = a[i] * 12.0f;
        ref->gelu_mul(y1, NULL, n);
        ops->gelu_mul(y2, NULL, n);
        for (int64_t i = 0; i < n; i++) CHECK(fabsf(y1[i] - y2[i]) <= 2e-6f * (1 + fabsf(y1[i])), "%s gelu n=%lld", ops->name, (long long)n);
        /* softcap 30 over [-120, 120] */
        for (int64_t i = 0; i < n; i++) y1[i] = y2[i] = a[i] * 120.0f;
        ref->softcap(y1, n, 30.0f);
        ops->softcap(y2, n, 30.0f);
        for (int64_t i = 0; i < n; i++)
            CHECK(fabsf(y1[i] - y2[i]) <= 4e-6f * 30, "%s softcap n=%lld: %g vs %g", ops->name, (long long)n, y1[i], y2[i]);
        /* softmax with a wide range and a masked (-inf) entry */
        for (int64_t i = 0; i < n; i++) y1[i] = y2[i] = a[i] * 40.0f;
        if (n > 1) y1[n / 2] = y2[n / 2] = -INFINITY;
        double m = -INFINITY, sum = 0;
        for (int64_t i = 0; i < n; i++) m = y1[i] > m ? y1[i] : m;
        for (int64_t i = 0; i < n; i++) sum += exp((double)y1[i] - m);
        const double lse = m + log(sum);
        const float lse1 = ref->softmax(y1, n), lse2 = ops->softmax(y2, n);
        CHECK(fabs(lse1 - lse) <= 1e-6 * (1 + fabs(lse)) && fabs(lse2 - lse) <= 1e-6 * (1 + fabs(lse)),
              "%s softmax n=%lld log-sum-exp %.9g and %.9g, want %.9g", ops->name, (long long)n, lse1, lse2, lse);
        for (int64_t i = 0; i < n; i++)
            CHECK(fabsf(y1[i] - y2[i]) <= 1e-6f * (1 + y1[i] * 10), "%s softmax n=%lld i=%lld: %g vs %g", ops->name,
                  (long long)n, (long long)i, y1[i], y2[i]);
        CHECK(n == 1 ? y2[0] == 1 : y2[n / 2] == 0, "%s softmax gave a masked entry weight", ops->name);
        /* log-sum-exp: the same wide values, left as they are; then the special cases */
        for (int64_t i = 0; i < n; i++) y1[i] = y2[i] = a[i] * 40.0f;
        if (n > 1) y1[n / 2] = y2[n / 2] = -INFINITY;
        const float lse_got = ops->logsumexp(y2, n);
        CHECK(fabs(lse_got - lse) <= 1e-6 * (1 + fabs(lse)) && !memcmp(y1, y2, (size_t)n * 4),
              "%s logsumexp n=%lld: %.9g, want %.9g (input kept)", ops->name, (long long)n, lse_got, lse);
        y2[n - 1] = NAN;
        CHECK(n == 1 || isnan(ops->logsumexp(y2, n)), "%s logsumexp n=%lld with a NaN", ops->name, (long long)n);
        y2[0] = INFINITY;
        CHECK(ops->logsumexp(y2, n) == INFINITY, "%s logsumexp n=%lld with +inf", ops->name, (long long)n);
        for (int64_t i = 0; i < n; i++) y2[i] = -INFINITY;
        CHECK(ops->logsumexp(y2, n) == -INFINITY, "%s logsumexp n=%lld of -inf", ops->name, (long long)n);
        /* argmax: the maximum at every position in turn, a tie behind it, NaNs and -inf around it */
        for (int64_t at = 0; at < n; at++) {
            for (int64_t i = 0; i < n; i++) y1[i] = a[i];
            y1[at] = 2.0f;
            if (at + 1 < n) y1[n - 1] = 2.0f; /* a later tie */
            if (at > 0) y1[at - 1] = NAN;
            if (at > 1) y1[0] = -INFINITY;
            int64_t want = ref->argmax(y1, n), got = ops->argmax(y1, n);
            CHECK(want == at && got == at, "%s argmax n=%lld at %lld: %lld (portable %lld)", ops->name, (long long)n,
                  (long long)at, (long long)got, (long long)want);
        }
        for (int64_t i = 0; i < n; i++) y1[i] = NAN;
        CHECK(ops->argmax(y1, n) == 0, "%s argmax of NaNs", ops->name);
        y1[n - 1] = -INFINITY;
        CHECK(ops->argmax(y1, n) == n - 1, "%s argmax of NaNs and -inf", ops->name);
        for (int64_t i = 0; i < n; i++) y1[i] = a[i];
        CHECK(ops->argmax(y1, n) == ref->argmax(y1, n), "%s argmax n=%lld of random values", ops->name, (long long)n);
        free(a), free(b), free(y1), free(y2), free(h);
    }
    { /* log-sum-exp over a vocabulary-sized row of logits, in double as the reference does it */
        const int64_t V = 262147;
        float *x = malloc((size_t)V * 4);
        for (int64_t i = 0; i < V; i++) x[i] = rnd() * 25.0f;
        double m = -INFINITY, sum = 0;
        for (int64_t i = 0; i < V; i++) m = x[i] > m ? x[i] : m;
        for (int64_t i = 0; i < V; i++) sum += exp((double)x[i] - m);
        const double want = m + log(sum), got = ops->logsumexp(x, V);
        CHECK(fabs(got - want) <= 2e-6 * fabs(want), "%s logsumexp of %lld logits: %.9g, want %.9g", ops->name,
              (long long)V, got, want);
        free(x);
    }
    /* attention tiles: odd query/key counts, head sizes with and without a multiple of 8 or 16, padded strides */
    const int64_t shapes[][3] = {{1, 1, 1}, {4, 2, 8}, {5, 7, 64}, {8, 33, 256}, {3, 9, 72}, {9, 5, 13}, {16, 40, 24}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int64_t nq = shapes[si][0], nk = shapes[si][1], D = shapes[si][2], ld = D + 3, lds = nk + 2;
        float *q = malloc((size_t)(nq * ld) * 4), *k = malloc((size_t)(nk * ld) * 4);
        float *s1 = malloc((size_t)(nq * lds) * 4), *s2 = malloc((size_t)(nq * lds) * 4);
        float *o1 = malloc((size_t)(nq * ld) * 4), *o2 = malloc((size_t)(nq * ld) * 4);
        for (int64_t i = 0; i < nq * ld; i++) q[i] = rnd(), o1[i] = o2[i] = rnd();
        for (int64_t i = 0; i < nk * ld; i++) k[i] = rnd();
        for (int64_t i = 0; i < nq * lds; i++) s1[i] = s2[i] = rnd();
        ref->scores(s1, lds, q, ld, nq, k, ld, nk, D);
        ops->scores(s2, lds, q, ld, nq, k, ld, nk, D);
        for (int64_t i = 0; i < nq; i++)
            for (int64_t j = 0; j < lds; j++)
                CHECK(fabsf(s1[i * lds + j] - s2[i * lds + j]) <= 1e-5f * sqrtf((float)D), "%s scores %lldx%lldx%lld [%lld,%lld]",
                      ops->name, (long long)nq, (long long)nk, (long long)D, (long long)i, (long long)j);
        ref->weighted_sum(o1, ld, s1, lds, nq, k, ld, nk, D);
        ops->weighted_sum(o2, ld, s1, lds, nq, k, ld, nk, D);
        for (int64_t i = 0; i < nq * ld; i++)
            CHECK(fabsf(o1[i] - o2[i]) <= 1e-5f * (float)D, "%s weighted_sum %lldx%lldx%lld at %lld", ops->name,
                  (long long)nq, (long long)nk, (long long)D, (long long)i);
        free(q), free(k), free(s1), free(s2), free(o1), free(o2);
    }
}

/* The blocked, threaded matrix product against a direct double-precision loop. */
static void check_matmul(int threads, int64_t T, int64_t K, int64_t N) {
    g4_compute c;
    CHECK(g4_compute_init(&c, threads, K) == 0, "compute init");
    float *x = malloc((size_t)(T * K) * 4), *y = malloc((size_t)(T * N) * 4);
    uint16_t *w = malloc((size_t)(N * K) * 2);
    for (int64_t i = 0; i < T * K; i++) x[i] = rnd();
    for (int64_t i = 0; i < N * K; i++) w[i] = g4_f32_to_bf16(rnd());
    g4_tensor wt = {"w", G4_DT_BF16, 2, {N, K}, w, (size_t)(N * K) * 2};
    g4_matmul(&c, x, T, K, &wt, y);
    double worst = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)x[t * K + k] * g4_bf16_to_f32(w[n * K + k]);
            double e = fabs(s - y[t * N + n]);
            worst = e > worst ? e : worst;
        }
    CHECK(worst < 1e-4, "matmul %s T=%lld K=%lld N=%lld threads=%d: max err %g", c.ops->name, (long long)T,
          (long long)K, (long long)N, threads, worst);
    free(x), free(y), free(w);
    g4_compute_free(&c);
}

/* A random [N, K] weight of dtype dt (bf16 or one of the block-quantized types). */
static g4_tensor make_weight(g4_dtype dt, int64_t N, int64_t K) {
    int qt = g4_quant_type(dt);
    size_t rb = qt >= 0 ? g4_qrow_bytes(qt, K) : (size_t)K * 2;
    unsigned char *data = malloc(rb * (size_t)N);
    float *row = malloc((size_t)K * 4);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++) row[k] = rnd();
        if (qt >= 0) g4_quantize_row(qt, row, K, data + (size_t)n * rb);
        else
            for (int64_t k = 0; k < K; k++) ((uint16_t *)data)[n * K + k] = g4_f32_to_bf16(row[k]);
    }
    free(row);
    return (g4_tensor){"w", dt, 2, {N, K}, data, rb * (size_t)N};
}

/* Products sharing an input give what one g4_matmul per weight gives (bit for bit: the decode loop runs the same
 * kernels on the same quantized input), fused or not: decode rows and prefill rows, quantized and bf16 weights.
 * The gated product matches gelu(gate) * up computed apart. */
static void check_shared_input(int threads, int64_t T, g4_dtype third) {
    const int64_t K = 96, I = 75;
    g4_compute c;
    CHECK(g4_compute_init(&c, threads, K) == 0, "compute init");
    g4_tensor w[3] = {make_weight(G4_DT_Q4, 70, K), make_weight(G4_DT_Q8, 9, K), make_weight(third, 33, K)};
    float *x = malloc((size_t)(T * K) * 4), *want[3], *got[3];
    for (int64_t i = 0; i < T * K; i++) x[i] = rnd();
    for (int i = 0; i < 3; i++) {
        want[i] = malloc((size_t)(T * w[i].shape[0]) * 4), got[i] = malloc((size_t)(T * w[i].shape[0]) * 4);
        g4_matmul(&c, x, T, K, &w[i], want[i]);
    }
    const g4_tensor *ws[3] = {&w[0], &w[1], &w[2]};
    g4_matmul_many(&c, x, T, K, 3, ws, got);
    int same = 1;
    for (int i = 0; i < 3; i++) same &= memcmp(want[i], got[i], (size_t)(T * w[i].shape[0]) * 4) == 0;
    CHECK(same, "matmul_many T=%lld threads=%d third %s: differs from one product per weight", (long long)T,
          threads, g4_dtype_name(third));

    g4_tensor gate = make_weight(G4_DT_Q4, I, K), up = make_weight(third, I, K);
    float *g = malloc((size_t)(T * I) * 4), *u = malloc((size_t)(T * I) * 4), *ref = malloc((size_t)(T * I) * 4);
    float *ru = malloc((size_t)(T * I) * 4);
    g4_matmul(&c, x, T, K, &gate, ref);
    g4_matmul(&c, x, T, K, &up, ru);
    g4_matmul_gelu(&c, x, T, K, &gate, &up, g, u);
    /* the SIMD activation is within 2e-6 (1 + |gelu|) of the scalar one (check_ops) */
    double worst = 0;
    for (int64_t i = 0; i < T * I; i++) {
        double act = g4_gelu_tanh(ref[i]);
        double e = fabs(g[i] - act * ru[i]) / (2e-6 * (1 + fabs(act)) * fabs(ru[i]) + 1e-30);
        worst = e > worst ? e : worst;
    }
    CHECK(worst <= 1, "matmul_gelu T=%lld threads=%d up %s: error %g of the bound", (long long)T, threads,
          g4_dtype_name(third), worst);
    for (int i = 0; i < 3; i++) free(want[i]), free(got[i]), free((void *)w[i].data);
    free((void *)gate.data), free((void *)up.data), free(g), free(u), free(ref), free(ru), free(x);
    g4_compute_free(&c);
}

static void check_norms(void) {
    float x[5] = {1, -2, 3, -4, 5}, w[5] = {1, 0.5f, 2, 1, 1}, out[5];
    g4_rmsnorm(out, x, w, 5, 1e-6f);
    double r = 1.0 / sqrt((1 + 4 + 9 + 16 + 25) / 5.0 + 1e-6);
    for (int i = 0; i < 5; i++) CHECK(fabs(out[i] - x[i] * r * w[i]) < 1e-6, "rmsnorm %d", i);
    CHECK(fabsf(g4_gelu_tanh(1.0f) - 0.8411920f) < 1e-6f, "gelu(1) = %.7f", g4_gelu_tanh(1.0f));
    CHECK(g4_gelu_tanh(0.0f) == 0.0f, "gelu(0)");
    float p[4] = {1000, 1000, -INFINITY, 999};
    g4_softmax(p, 4);
    CHECK(fabsf(p[0] - p[1]) < 1e-7f && p[2] == 0 && fabsf(p[0] + p[1] + p[3] - 1) < 1e-6f, "softmax stable");
}

/* The read-bandwidth probe on a small buffer: it runs and gives a positive, finite number (its 1 GiB measurement
 * is bench/read_bandwidth.c's and `gemma4c bench`'s); a buffer smaller than one 32 KiB chunk reads nothing. */
static void check_read_probe(void) {
    g4_pool *pool = g4_pool_create(2);
    CHECK(pool != NULL, "pool");
    if (!pool) return;
    double gbps = g4_read_bandwidth(pool, (size_t)4 << 20, 2);
    CHECK(gbps > 0 && isfinite(gbps), "4 MiB read probe: %g GB/s", gbps);
    CHECK(g4_read_bandwidth(pool, 1000, 1) == 0, "a probe over less than one chunk measured something");
    g4_pool_destroy(pool);
}

int main(void) {
    check_ops(g4_kernels_portable());
    const g4_kernel_ops *avx2 = g4_kernels_avx2();
    if (avx2) check_ops(avx2);
    else printf("AVX2 not available on this CPU: only the portable kernels were tested\n");
    check_matmul(1, 1, 37, 19);
    check_matmul(2, 5, 129, 33);
    check_matmul(3, 17, 64, 100);
    for (int threads = 1; threads <= 3; threads++)
        for (int64_t T = 1; T <= 5; T += 2) {
            check_shared_input(threads, T, G4_DT_Q6);
            check_shared_input(threads, T, G4_DT_BF16);
        }
    check_norms();
    check_read_probe();
    return g4t_finish("test_kernels");
}
