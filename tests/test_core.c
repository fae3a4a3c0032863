/* test_core.c - RNG, GEMM, context, allocator and tensor basics.

   RNG reference values come from tests/ref/rng_ref.py, an independent
   big-integer Python implementation of splitmix64 + xoshiro256**. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <stdlib.h>

/* ---- RNG ---------------------------------------------------------------- */
static void test_rng_reference(void) {
    /* /usr/bin/python3 tests/ref/rng_ref.py */
    static const uint64_t ref42[8] = {0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull,
                                      0xae17533239e499a1ull, 0xecb8ad4703b360a1ull,
                                      0xfde6dc7fe2ec5e64ull, 0xc50da53101795238ull,
                                      0xb82154855a65ddb2ull, 0xd99a2743ebe60087ull};
    static const uint64_t ref0[8] = {0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull,
                                     0x1a5f849d4933e6e0ull, 0x6aa594f1262d2d2cull,
                                     0xbba5ad4a1f842e59ull, 0xffef8375d9ebcacaull,
                                     0x6c160deed2f54c98ull, 0x8920ad648fc30a3full};
    static const double uref42[4] = {0.083862971059882163, 0.37898025066266861,
                                     0.68004341102813937, 0.92469294532538759};
    bd_rng a = bd_rng_init(42), b = bd_rng_init(0), c = bd_rng_init(42);
    int i;
    for (i = 0; i < 8; i++) {
        uint64_t va = bd_rng_u64(&a), vb = bd_rng_u64(&b);
        BDT_CHECKF(va == ref42[i], "seed 42 output %d: %016llx", i, (unsigned long long)va);
        BDT_CHECKF(vb == ref0[i], "seed 0 output %d: %016llx", i, (unsigned long long)vb);
    }
    for (i = 0; i < 4; i++) {
        double u = bd_rng_uniform(&c);
        BDT_CHECKF(u == uref42[i], "uniform %d: %.17g", i, u);
    }
}

static void test_rng_determinism(void) {
    bd_rng a = bd_rng_init(7), b = bd_rng_init(7), c = bd_rng_init(8), j = bd_rng_init(7);
    float x[100], y[100], z[100];
    int i, same_c = 0, same_j = 0;
    bd_rng_normal(&a, x, 100);
    bd_rng_normal(&b, y, 100);
    bd_rng_normal(&c, z, 100);
    BDT_CHECK(memcmp(x, y, sizeof x) == 0);
    for (i = 0; i < 100; i++) same_c += x[i] == z[i];
    BDT_CHECK(same_c == 0);
    /* a jumped stream differs from the original */
    a = bd_rng_init(7);
    bd_rng_jump(&j);
    for (i = 0; i < 64; i++) same_j += bd_rng_u64(&a) == bd_rng_u64(&j);
    BDT_CHECK(same_j == 0);
    /* an odd number of normals leaves a spare; the state copy reproduces it */
    a = bd_rng_init(9);
    bd_rng_normal1(&a);
    b = a;
    BDT_CHECK(bd_rng_normal1(&a) == bd_rng_normal1(&b));
}

static void test_rng_moments(void) {
    enum { NS = 100000 };
    float *x = (float *)malloc(NS * sizeof(float));
    bd_rng r = bd_rng_init(1234);
    double s = 0, s2 = 0, s3 = 0, mean, var, mn = 1e9, mx = -1e9;
    int i;
    bd_rng_normal(&r, x, NS);
    for (i = 0; i < NS; i++) { s += x[i]; }
    mean = s / NS;
    for (i = 0; i < NS; i++) { double d = x[i] - mean; s2 += d * d; s3 += d * d * d; }
    var = s2 / (NS - 1);
    /* 5 standard errors: se(mean) = 1/sqrt(n), se(var) = sqrt(2/n), se(skew) = sqrt(6/n) */
    BDT_CHECKF(fabs(mean) < 5.0 / sqrt((double)NS), "mean %g", mean);
    BDT_CHECKF(fabs(var - 1.0) < 5.0 * sqrt(2.0 / NS), "var %g", var);
    BDT_CHECKF(fabs(s3 / NS) < 5.0 * sqrt(6.0 / NS), "third moment %g", s3 / NS);
    bd_rng_uniform_fill(&r, x, NS, -2.0f, 3.0f);
    s = 0;
    for (i = 0; i < NS; i++) { s += x[i]; if (x[i] < mn) mn = x[i]; if (x[i] > mx) mx = x[i]; }
    BDT_CHECK(mn >= -2.0 && mx <= 3.0);
    BDT_CHECKF(fabs(s / NS - 0.5) < 5.0 * 5.0 / sqrt(12.0 * NS), "uniform mean %g", s / NS);
    free(x);
}

/* ---- GEMM --------------------------------------------------------------- */
static void naive_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       const float *C0, double *C, int64_t ldc) {
    int64_t i, j, p;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            double s = 0.0;
            for (p = 0; p < K; p++) {
                double a = ta ? A[p * lda + i] : A[i * lda + p];
                double b = tb ? B[j * ldb + p] : B[p * ldb + j];
                s += a * b;
            }
            C[i * ldc + j] = alpha * s + (beta == 0.0f ? 0.0 : beta * (double)C0[i * ldc + j]);
        }
}

/* returns the worst |got - want| / (1e-6 + sum |a||b| scale) over the matrix */
static double gemm_case(bd_rng *rng, int builtin, int ta, int tb, int64_t M, int64_t N,
                        int64_t K, float alpha, float beta, int nan_c) {
    int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
    int64_t ra = ta ? K : M, rb = tb ? N : K, i, j;
    float *A = (float *)malloc((size_t)(ra * lda) * sizeof(float));
    float *B = (float *)malloc((size_t)(rb * ldb) * sizeof(float));
    float *C = (float *)malloc((size_t)(M * ldc) * sizeof(float));
    float *C0 = (float *)malloc((size_t)(M * ldc) * sizeof(float));
    double *R = (double *)malloc((size_t)(M * ldc) * sizeof(double));
    double worst = 0.0;
    bd_rng_normal(rng, A, ra * lda);
    bd_rng_normal(rng, B, rb * ldb);
    bd_rng_normal(rng, C0, M * ldc);
    if (nan_c)
        for (i = 0; i < M * ldc; i++) C0[i] = (i % 2) ? NAN : INFINITY;
    memcpy(C, C0, (size_t)(M * ldc) * sizeof(float));
    naive_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, R, ldc);
    if (builtin) bd_sgemm_builtin(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else bd_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    for (i = 0; i < M; i++) {
        for (j = 0; j < N; j++) {
            double e = fabs((double)C[i * ldc + j] - R[i * ldc + j]);
            double scale = 1e-6 * (fabs(alpha) * sqrt((double)K + 1.0) * 4.0 + fabs(beta) * 4.0 + 1.0);
            if (e != e) e = 1e30;
            if (e / scale > worst) worst = e / scale;
        }
        /* the padding column of C must be untouched */
        if (!nan_c) BDT_CHECK(C[i * ldc + N] == C0[i * ldc + N]);
    }
    free(A); free(B); free(C); free(C0); free(R);
    return worst;
}

static void test_gemm(void) {
    static const int64_t sizes[] = {1, 2, 3, 7, 16, 33, 67};
    static const float alphas[] = {1.0f, -0.5f, 2.0f};
    static const float betas[] = {0.0f, 1.0f, 0.3f};
    bd_rng rng = bd_rng_init(5);
    int builtin, ta, tb, cnt = 0;
    double worst = 0.0;
    for (builtin = 0; builtin < 2; builtin++)
        for (ta = 0; ta < 2; ta++)
            for (tb = 0; tb < 2; tb++) {
                int im, in, ik;
                for (im = 0; im < 7; im++)
                    for (in = 0; in < 7; in++)
                        for (ik = 0; ik < 7; ik += 2) {
                            int s = (im + in + ik) % 3;
                            int64_t M = sizes[im], N = sizes[(in + im) % 7], K = sizes[ik];
                            double w = gemm_case(&rng, builtin, ta, tb, M, N, K, alphas[s],
                                                 betas[(s + im) % 3], 0);
                            if (w > worst) worst = w;
                            cnt++;
                        }
                /* beyond one block in every dimension (64 x 256 x 128) */
                {
                    double w = gemm_case(&rng, builtin, ta, tb, 67, 259, 131, 1.0f, 0.5f, 0);
                    if (w > worst) worst = w;
                    w = gemm_case(&rng, builtin, ta, tb, 5, 3, 0, 1.0f, 0.5f, 0); /* K = 0 */
                    if (w > worst) worst = w;
                    /* beta = 0 must overwrite NaN/Inf garbage in C */
                    w = gemm_case(&rng, builtin, ta, tb, 9, 13, 11, 1.5f, 0.0f, 1);
                    if (w > worst) worst = w;
                    w = gemm_case(&rng, builtin, ta, tb, 9, 13, 0, 1.5f, 0.0f, 1);
                    if (w > worst) worst = w;
                    cnt += 4;
                }
            }
    printf("  %d GEMM cases, worst error / (1e-6 * scale) = %.3g\n", cnt, worst);
    BDT_CHECKF(worst <= 1.0, "GEMM error ratio %.3g", worst);
}

/* ---- context, allocator -------------------------------------------------- */
typedef struct counting_alloc {
    int calls, fail_at; /* fail the fail_at-th call (1-based); 0 = never */
    long live;
} counting_alloc;
static void *ca_alloc(size_t size, void *ud) {
    counting_alloc *c = (counting_alloc *)ud;
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at) return NULL;
    c->live++;
    return malloc(size);
}
static void ca_free(void *p, void *ud) {
    counting_alloc *c = (counting_alloc *)ud;
    if (p) { c->live--; free(p); }
}

typedef struct log_capture {
    int count;
    bd_result last;
    char msg[512];
} log_capture;
static void capture_log(void *ud, bd_result code, const char *message) {
    log_capture *l = (log_capture *)ud;
    l->count++;
    l->last = code;
    snprintf(l->msg, sizeof l->msg, "%s", message);
}

static void test_result_strings(void) {
    int i, j;
    for (i = 0; i < BD_RESULT_COUNT; i++) {
        const char *s = bd_result_string((bd_result)i);
        BDT_CHECK(s && s[0] && strcmp(s, "unknown result") != 0);
        for (j = 0; j < i; j++) BDT_CHECK(strcmp(s, bd_result_string((bd_result)j)) != 0);
    }
    BDT_CHECK(strcmp(bd_result_string(BD_SUCCESS), "success") == 0);
    BDT_CHECK(strcmp(bd_result_string(BD_RESULT_COUNT), "unknown result") == 0);
    BDT_CHECK(strcmp(bd_result_string((bd_result)-1), "unknown result") == 0);
}

static void test_context_config_errors(void) {
    bd_context *ctx = (bd_context *)&ctx; /* must be reset to NULL on failure */
    bd_context_config cc = bd_context_config_init();
    log_capture lc;
    counting_alloc ca;
    memset(&lc, 0, sizeof lc);
    memset(&ca, 0, sizeof ca);
    BDT_CHECK(cc.n_threads == 1 && cc.allocator.alloc == NULL && cc.log == NULL);
    BDT_CHECK(bd_context_init(NULL, &ctx) == BD_ERROR_INVALID_ARGUMENT && ctx == NULL);
    BDT_CHECK(bd_context_init(&cc, NULL) == BD_ERROR_INVALID_ARGUMENT);
    cc.log = capture_log;
    cc.log_user_data = &lc;
    cc.n_threads = 0;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_ERROR_INVALID_ARGUMENT && ctx == NULL);
    BDT_CHECK(lc.count == 1 && lc.last == BD_ERROR_INVALID_ARGUMENT && strstr(lc.msg, "n_threads"));
    cc.n_threads = 2;
    cc.allocator.alloc = ca_alloc; /* free missing */
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_ERROR_INVALID_ARGUMENT && ctx == NULL);
    BDT_CHECK(lc.count == 2 && strstr(lc.msg, "allocator"));
    cc.allocator.free = ca_free;
    cc.allocator.user_data = &ca;
    ca.fail_at = 1;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_ERROR_OUT_OF_MEMORY && ctx == NULL);
    BDT_CHECK(lc.count == 3 && lc.last == BD_ERROR_OUT_OF_MEMORY && ca.live == 0);
    ca.fail_at = 0;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS && ctx != NULL);
    if (!ctx) return;
    BDT_CHECK(ctx->n_threads == 2 && ca.live == 1);
    BDT_CHECK(strcmp(bd_context_message(ctx), "") == 0);
    BDT_CHECK(bd_context_set_threads(ctx, 0) == BD_ERROR_INVALID_ARGUMENT && ctx->n_threads == 2);
    BDT_CHECK(strstr(bd_context_message(ctx), "n_threads") != NULL && lc.count == 4);
    BDT_CHECK(bd_context_set_threads(ctx, 3) == BD_SUCCESS && ctx->n_threads == 3);
    BDT_CHECK(bd_context_set_threads(NULL, 3) == BD_ERROR_INVALID_ARGUMENT);
    bd_context_free(ctx);
    BDT_CHECK(ca.live == 0);
    bd_context_free(NULL);
    BDT_CHECK(strcmp(bd_context_message(NULL), "no context") == 0);
}

static void test_error_and_log(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    log_capture lc;
    memset(&lc, 0, sizeof lc);
    cc.log = capture_log;
    cc.log_user_data = &lc;
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) { BDT_CHECK(0); return; }
    BDT_CHECK(bd_error(ctx, BD_ERROR_SHAPE, "bad shape %d x %s", 3, "w") == BD_ERROR_SHAPE);
    BDT_CHECK(lc.count == 1 && lc.last == BD_ERROR_SHAPE && strcmp(lc.msg, "bad shape 3 x w") == 0);
    BDT_CHECK(strcmp(bd_context_message(ctx), "bad shape 3 x w") == 0);
    BDT_CHECK(ctx->last_result == BD_ERROR_SHAPE);
    BDT_CHECK(bd_error(NULL, BD_ERROR_IO, "x") == BD_ERROR_IO);
    {   /* long messages are truncated, not overflowed */
        char big[2000];
        memset(big, 'a', sizeof big - 1);
        big[sizeof big - 1] = 0;
        bd_error(ctx, BD_ERROR_IO, "%s", big);
        BDT_CHECK(strlen(bd_context_message(ctx)) == sizeof ctx->message - 1);
    }
    bd_context_free(ctx);
}

static void test_alloc_and_overflow(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    counting_alloc ca;
    size_t out = 0;
    void *p;
    memset(&ca, 0, sizeof ca);
    cc.allocator.alloc = ca_alloc;
    cc.allocator.free = ca_free;
    cc.allocator.user_data = &ca;
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) { BDT_CHECK(0); return; }
    BDT_CHECK(bd_size_mul(SIZE_MAX / 2, 3, &out) == 0);
    BDT_CHECK(bd_size_mul(0, SIZE_MAX, &out) == 1 && out == 0);
    BDT_CHECK(bd_size_mul(1000, 1000, &out) == 1 && out == 1000000);
    BDT_CHECK(bd_size_add(SIZE_MAX, 1, &out) == 0);
    BDT_CHECK(bd_size_add(SIZE_MAX - 1, 1, &out) == 1 && out == SIZE_MAX);
    p = bd_alloc_array(ctx, SIZE_MAX / 4 + 1, 8);
    BDT_CHECK(p == NULL && ctx->last_result == BD_ERROR_OVERFLOW && ca.calls == 1);
    p = bd_alloc_array(ctx, 10, sizeof(float));
    BDT_CHECK(p != NULL && ca.live == 2);
    bd_free(ctx, p);
    bd_free(ctx, NULL);
    BDT_CHECK(ca.live == 1);
    p = bd_alloc(ctx, 0); /* zero-size: a valid unique pointer */
    BDT_CHECK(p != NULL);
    bd_free(ctx, p);
    ca.fail_at = ca.calls + 1;
    p = bd_alloc(ctx, 16);
    BDT_CHECK(p == NULL && ctx->last_result == BD_ERROR_OUT_OF_MEMORY);
    BDT_CHECK(bd_alloc(NULL, 16) == NULL);
    bd_context_free(ctx);
    BDT_CHECK(ca.live == 0);
}

static void test_tensor(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    counting_alloc ca;
    bd_tensor t, v;
    float buf[6];
    int64_t i;
    int ok = 1;
    memset(&ca, 0, sizeof ca);
    cc.allocator.alloc = ca_alloc;
    cc.allocator.free = ca_free;
    cc.allocator.user_data = &ca;
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) { BDT_CHECK(0); return; }
    BDT_CHECK(bd_tensor_init(NULL, &t, 1, 1, 1, 1) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_tensor_init(ctx, NULL, 1, 1, 1, 1) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_tensor_init(ctx, &t, 1, -1, 1, 1) == BD_ERROR_SHAPE && t.data == NULL);
    BDT_CHECK(bd_tensor_init(ctx, &t, INT64_MAX / 2, 4, 1, 1) == BD_ERROR_OVERFLOW && t.data == NULL);
    BDT_CHECK(bd_tensor_init(ctx, &t, (int64_t)1 << 31, (int64_t)1 << 31, 4, 1) == BD_ERROR_OVERFLOW);
    BDT_CHECK(ca.live == 1);
    ca.fail_at = ca.calls + 1;
    BDT_CHECK(bd_tensor_init(ctx, &t, 2, 3, 4, 5) == BD_ERROR_OUT_OF_MEMORY && t.data == NULL);
    BDT_CHECK(ca.live == 1);
    ca.fail_at = 0;
    BDT_CHECK(bd_tensor_init(ctx, &t, 2, 3, 4, 5) == BD_SUCCESS);
    BDT_CHECK(bd_tensor_numel(&t) == 120 && t.owned == 1 && ca.live == 2);
    for (i = 0; i < 120; i++) ok &= t.data[i] == 0.0f;
    BDT_CHECK(ok);
    bd_tensor_free(ctx, &t);
    BDT_CHECK(t.data == NULL && ca.live == 1);
    BDT_CHECK(bd_tensor_init(ctx, &t, 0, 3, 4, 5) == BD_SUCCESS && bd_tensor_numel(&t) == 0);
    bd_tensor_free(ctx, &t);
    v = bd_tensor_view(buf, 1, 2, 3, 1);
    BDT_CHECK(v.data == buf && v.owned == 0 && bd_tensor_numel(&v) == 6);
    bd_tensor_free(ctx, &v); /* a view frees nothing */
    BDT_CHECK(bd_tensor_numel(NULL) == 0);
    bd_context_free(ctx);
    BDT_CHECK(ca.live == 0);
}

/* Allocation failure on every possible call of a multi-allocation sequence:
   each prefix fails cleanly and nothing leaks. */
static void test_fail_nth_alloc(void) {
    int n, failures = 0;
    for (n = 1; n <= 5; n++) {
        counting_alloc ca;
        bd_context_config cc = bd_context_config_init();
        bd_context *ctx = NULL;
        bd_tensor a, b, c;
        bd_result r;
        memset(&ca, 0, sizeof ca);
        memset(&a, 0, sizeof a); memset(&b, 0, sizeof b); memset(&c, 0, sizeof c);
        ca.fail_at = n;
        cc.allocator.alloc = ca_alloc;
        cc.allocator.free = ca_free;
        cc.allocator.user_data = &ca;
        r = bd_context_init(&cc, &ctx);
        if (r == BD_SUCCESS) r = bd_tensor_init(ctx, &a, 1, 2, 3, 4);
        if (r == BD_SUCCESS) r = bd_tensor_init(ctx, &b, 2, 2, 3, 4);
        if (r == BD_SUCCESS) r = bd_tensor_init(ctx, &c, 3, 2, 3, 4);
        if (n <= 4) {
            BDT_CHECKF(r == BD_ERROR_OUT_OF_MEMORY, "fail at %d: %s", n, bd_result_string(r));
            failures++;
        } else {
            BDT_CHECK(r == BD_SUCCESS);
        }
        bd_tensor_free(ctx, &a);
        bd_tensor_free(ctx, &b);
        bd_tensor_free(ctx, &c);
        bd_context_free(ctx);
        BDT_CHECKF(ca.live == 0, "fail at %d leaks %ld blocks", n, ca.live);
    }
    BDT_CHECK(failures == 4);
}

int main(void) {
    (void)bdt_close_ratio;
    BDT_RUN(test_rng_reference);
    BDT_RUN(test_rng_determinism);
    BDT_RUN(test_rng_moments);
    BDT_RUN(test_gemm);
    BDT_RUN(test_result_strings);
    BDT_RUN(test_context_config_errors);
    BDT_RUN(test_error_and_log);
    BDT_RUN(test_alloc_and_overflow);
    BDT_RUN(test_tensor);
    BDT_RUN(test_fail_nth_alloc);
    return BDT_SUMMARY("test_core");
}
