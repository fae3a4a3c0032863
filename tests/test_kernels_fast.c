/* test_kernels_fast.c - every fast kernel against the plain reference kernel
   kept beside it (bd__*_ref), including the += accumulation rule, shapes that
   cross the GEMM blocking (MC, KC, NR) and, when built with OpenMP, bit-equal
   results for 1, 2 and 3 threads. */
#define BDENSE_IMPLEMENTATION
#define BDENSE_REFERENCE_KERNELS /* the bd__*_ref kernels below */
#include "bdense.h"
#include "bdtest.h"
#include <stdlib.h>

static float *randv(bd_rng *r, int64_t n) {
    float *p = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    bd_rng_normal(r, p, n);
    return p;
}
static float *copyv(const float *a, int64_t n) {
    float *p = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    memcpy(p, a, (size_t)n * sizeof(float));
    return p;
}
/* max |a - b| / max(|b|, 1e-3 * 1): error relative to the tensor's scale */
static double rel_err(const float *a, const float *b, int64_t n) {
    double md = 0.0, mb = 1e-3;
    int64_t i;
    for (i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return 1e30;
        if (d > md) md = d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return md / mb;
}
static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}
static double g_worst_conv = 0, g_worst_gemm = 0, g_worst_gn = 0, g_worst_att = 0;

/* ---------------- GEMM ---------------- */
static void test_gemm_builtin_blocks(void) {
    static const int64_t shapes[][3] = {{1, 1, 1},   {9, 33, 257}, {130, 70, 300},
                                        {64, 784, 288}, {3, 200, 17}, {257, 5, 40}};
    bd_rng r = bd_rng_init(11);
    int s, ta, tb;
    for (s = 0; s < 6; s++)
        for (ta = 0; ta < 2; ta++)
            for (tb = 0; tb < 2; tb++) {
                int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], i, j, p;
                int64_t lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 2, ldc = N + 3;
                float *A = randv(&r, (ta ? K : M) * lda), *B = randv(&r, (tb ? N : K) * ldb);
                float *C = randv(&r, M * ldc), *C0 = copyv(C, M * ldc);
                float *R = (float *)malloc((size_t)(M * ldc) * sizeof(float));
                double err;
                bd_sgemm_builtin(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.5f, C, ldc);
                for (i = 0; i < M; i++)
                    for (j = 0; j < ldc; j++) {
                        double acc = 0.0;
                        if (j >= N) { R[i * ldc + j] = C0[i * ldc + j]; continue; }
                        for (p = 0; p < K; p++)
                            acc += (double)(ta ? A[p * lda + i] : A[i * lda + p]) *
                                   (tb ? B[j * ldb + p] : B[p * ldb + j]);
                        R[i * ldc + j] = (float)(0.7 * acc + 0.5 * C0[i * ldc + j]);
                    }
                err = rel_err(C, R, M * ldc);
                if (err > g_worst_gemm) g_worst_gemm = err;
                BDT_CHECKF(err < 2e-6, "M%lld N%lld K%lld ta%d tb%d err %.3g", (long long)M,
                           (long long)N, (long long)K, ta, tb, err);
                for (i = 0; i < M; i++) /* padding columns untouched */
                    for (j = N; j < ldc; j++) BDT_CHECK(C[i * ldc + j] == C0[i * ldc + j]);
                free(A); free(B); free(C); free(C0); free(R);
            }
    printf("  gemm: worst error / max|ref| = %.3g\n", g_worst_gemm);
}

/* ---------------- conv2d ---------------- */
typedef struct { int64_t N, Cin, H, W, Cout, k, s, p; } conv_case;
static const conv_case conv_cases[] = {
    {2, 3, 7, 9, 5, 3, 1, 1},    {2, 1, 28, 28, 32, 3, 1, 1}, {3, 64, 14, 14, 64, 3, 1, 1},
    {2, 32, 28, 28, 32, 3, 2, 1}, {2, 96, 7, 7, 64, 1, 1, 0},  {1, 5, 6, 6, 7, 3, 1, 0},
    {2, 4, 9, 9, 3, 5, 1, 2},    {2, 6, 8, 8, 4, 3, 2, 0},    {1, 300, 4, 4, 10, 3, 1, 1},
    {1, 8, 5, 5, 130, 3, 1, 1},  {5, 128, 7, 7, 64, 3, 1, 1}, {2, 32, 28, 28, 1, 3, 1, 1},
    /* the direct 3x3 path: odd rows, W > 16, more than 128 input channels (AVX2: 8-pixel
       row segments 3 per tile, 1 to 4 per row, the last one partial; 1 to 8 output channels
       in the last panel) */
    {2, 5, 13, 14, 11, 3, 1, 1}, {1, 200, 12, 17, 9, 3, 1, 1}, {3, 3, 16, 32, 17, 3, 1, 1},
    /* W <= 7: two rows per vector */
    {3, 64, 7, 7, 20, 3, 1, 1}, {2, 9, 6, 5, 7, 3, 1, 1}, {1, 140, 5, 4, 8, 3, 1, 1},
    /* the direct dw kernel: stride 2 with odd sizes, 1x1 with a partial group of 9 input
       channels, output channels past a block of 32 */
    {3, 20, 9, 7, 40, 3, 2, 1}, {2, 13, 5, 6, 33, 1, 1, 0}, {2, 19, 11, 10, 70, 3, 1, 1},
    /* Winograd with few tile blocks, split by output channels over the threads
       (bd__wg_conv3): batch 1 at 28x28 (F(4x4) forward, F(2x2) dx; 5 panels in
       groups of 3 + 2), batch 2 at 14x14 (F(4x4), one block, 3 panels) */
    {1, 64, 28, 28, 40, 3, 1, 1}, {2, 32, 14, 14, 24, 3, 1, 1}};

static void conv_run(const conv_case *c, int fast, int nthr, const float *x, const float *w,
                     const float *b, const float *dout, float *out, float *dx, float *dw,
                     float *db) {
    int64_t ws = bd_conv2d_workspace_floats(c->Cin, c->H, c->W, c->k, c->s, c->p);
    float *col = (float *)malloc((size_t)(ws + 1) * sizeof(float));
    set_threads(nthr);
    if (fast) {
        bd_conv2d_forward(out, col, x, w, b, c->N, c->Cin, c->H, c->W, c->Cout, c->k, c->s, c->p);
        bd_conv2d_backward(dx, dw, db, col, dout, x, w, c->N, c->Cin, c->H, c->W, c->Cout, c->k,
                           c->s, c->p);
    } else {
        bd__conv2d_forward_ref(out, col, x, w, b, c->N, c->Cin, c->H, c->W, c->Cout, c->k, c->s,
                               c->p);
        bd__conv2d_backward_ref(dx, dw, db, col, dout, x, w, c->N, c->Cin, c->H, c->W, c->Cout,
                                c->k, c->s, c->p);
    }
    set_threads(1);
    free(col);
}

static void test_conv_fast_vs_ref(void) {
    bd_rng r = bd_rng_init(12);
    size_t ci;
    for (ci = 0; ci < sizeof conv_cases / sizeof conv_cases[0]; ci++) {
        const conv_case *c = &conv_cases[ci];
        int64_t Ho = (c->H + 2 * c->p - c->k) / c->s + 1, Wo = (c->W + 2 * c->p - c->k) / c->s + 1;
        int64_t nx = c->N * c->Cin * c->H * c->W, nw = c->Cout * c->Cin * c->k * c->k;
        int64_t no = c->N * c->Cout * Ho * Wo;
        float *x = randv(&r, nx), *w = randv(&r, nw), *b = randv(&r, c->Cout), *dout = randv(&r, no);
        float *dx0 = randv(&r, nx), *dw0 = randv(&r, nw), *db0 = randv(&r, c->Cout);
        float *o1 = randv(&r, no), *o2 = randv(&r, no);
        float *dx1 = copyv(dx0, nx), *dw1 = copyv(dw0, nw), *db1 = copyv(db0, c->Cout);
        float *dx2 = copyv(dx0, nx), *dw2 = copyv(dw0, nw), *db2 = copyv(db0, c->Cout);
        double e[4];
        int i;
        conv_run(c, 0, 1, x, w, b, dout, o1, dx1, dw1, db1);
        conv_run(c, 1, 1, x, w, b, dout, o2, dx2, dw2, db2);
        e[0] = rel_err(o2, o1, no);
        e[1] = rel_err(dx2, dx1, nx);
        e[2] = rel_err(dw2, dw1, nw);
        e[3] = rel_err(db2, db1, c->Cout);
        for (i = 0; i < 4; i++) {
            if (e[i] > g_worst_conv) g_worst_conv = e[i];
            BDT_CHECKF(e[i] < 1e-5, "case %d (Cin %lld %lldx%lld Cout %lld k%lld s%lld p%lld) part %d err %.3g",
                       (int)ci, (long long)c->Cin, (long long)c->H, (long long)c->W,
                       (long long)c->Cout, (long long)c->k, (long long)c->s, (long long)c->p, i, e[i]);
        }
        /* NULL gradients are skipped */
        {
            float *o3 = randv(&r, no);
            int64_t ws = bd_conv2d_workspace_floats(c->Cin, c->H, c->W, c->k, c->s, c->p);
            float *col = (float *)malloc((size_t)(ws + 1) * sizeof(float));
            float *dw3 = copyv(dw0, nw);
            bd_conv2d_backward(NULL, dw3, NULL, col, dout, x, w, c->N, c->Cin, c->H, c->W, c->Cout,
                               c->k, c->s, c->p);
            BDT_CHECK(rel_err(dw3, dw1, nw) < 1e-5);
            free(o3); free(col); free(dw3);
        }
        free(x); free(w); free(b); free(dout); free(dx0); free(dw0); free(db0); free(o1); free(o2);
        free(dx1); free(dw1); free(db1); free(dx2); free(dw2); free(db2);
    }
    printf("  conv2d: worst error / max|ref| = %.3g over %d shapes\n", g_worst_conv,
           (int)(sizeof conv_cases / sizeof conv_cases[0]));
}

/* ---------------- GroupNorm, fused GroupNorm + SiLU, SiLU ---------------- */
static void test_groupnorm_fast_vs_ref(void) {
    /* the last case has groups too large for the on-stack SiLU gradient */
    static const int64_t cases[][4] = {{2, 32, 784, 8}, {3, 64, 49, 8}, {1, 6, 5, 3}, {2, 8, 13, 2},
                                       {1, 16, 2100, 2}};
    bd_rng r = bd_rng_init(13);
    int ci;
    for (ci = 0; ci < 5; ci++) {
        int64_t N = cases[ci][0], C = cases[ci][1], HW = cases[ci][2], G = cases[ci][3];
        int64_t n = N * C * HW, i;
        float *x = randv(&r, n), *gamma = randv(&r, C), *beta = randv(&r, C), *dout = randv(&r, n);
        float *o1 = randv(&r, n), *o2 = randv(&r, n), *o3 = randv(&r, n), *y = randv(&r, n);
        float m1[64 * 4], s1[64 * 4], m2[64 * 4], s2[64 * 4];
        float *dx0 = randv(&r, n), *dg0 = randv(&r, C), *dbt0 = randv(&r, C);
        float *dx1 = copyv(dx0, n), *dg1 = copyv(dg0, C), *db1 = copyv(dbt0, C);
        float *dx2 = copyv(dx0, n), *dg2 = copyv(dg0, C), *db2 = copyv(dbt0, C);
        float *dy = (float *)calloc((size_t)n, sizeof(float));
        double e;
        for (i = 0; i < n; i++) x[i] = 3.0f * x[i] + 1.5f; /* non-zero mean */
        /* plain GroupNorm */
        bd__groupnorm_forward_ref(o1, m1, s1, x, gamma, beta, N, C, HW, G);
        bd_groupnorm_forward(o2, m2, s2, x, gamma, beta, N, C, HW, G);
        e = rel_err(o2, o1, n); if (e > g_worst_gn) g_worst_gn = e;
        BDT_CHECKF(e < 1e-5, "gn fwd case %d err %.3g", ci, e);
        bd__groupnorm_backward_ref(dx1, dg1, db1, dout, x, m1, s1, gamma, N, C, HW, G);
        bd_groupnorm_backward(dx2, dg2, db2, dout, x, m2, s2, gamma, N, C, HW, G);
        e = rel_err(dx2, dx1, n); if (e > g_worst_gn) g_worst_gn = e;
        BDT_CHECKF(e < 1e-5, "gn bwd dx case %d err %.3g", ci, e);
        e = rel_err(dg2, dg1, C) + rel_err(db2, db1, C); if (e > g_worst_gn) g_worst_gn = e;
        BDT_CHECKF(e < 1e-5, "gn bwd dgamma/dbeta case %d err %.3g", ci, e);
        /* fused: silu(GN(x)) against GN then SiLU (reference kernels) */
        bd__silu_forward_ref(o1, o1, n);
        bd_groupnorm_silu_forward(o3, m2, s2, x, gamma, beta, N, C, HW, G);
        e = rel_err(o3, o1, n); if (e > g_worst_gn) g_worst_gn = e;
        BDT_CHECKF(e < 1e-5, "gn+silu fwd case %d err %.3g", ci, e);
        memcpy(dx1, dx0, (size_t)n * sizeof(float)); memcpy(dg1, dg0, (size_t)C * sizeof(float));
        memcpy(db1, dbt0, (size_t)C * sizeof(float));
        memcpy(dx2, dx0, (size_t)n * sizeof(float)); memcpy(dg2, dg0, (size_t)C * sizeof(float));
        memcpy(db2, dbt0, (size_t)C * sizeof(float));
        bd__groupnorm_forward_ref(y, m1, s1, x, gamma, beta, N, C, HW, G);
        bd__silu_backward_ref(dy, dout, y, n);
        bd__groupnorm_backward_ref(dx1, dg1, db1, dy, x, m1, s1, gamma, N, C, HW, G);
        bd_groupnorm_silu_backward(dx2, dg2, db2, dout, x, m2, s2, gamma, beta, N, C, HW, G);
        e = rel_err(dx2, dx1, n); if (e > g_worst_gn) g_worst_gn = e;
        BDT_CHECKF(e < 2e-5, "gn+silu bwd dx case %d err %.3g", ci, e);
        e = rel_err(dg2, dg1, C) + rel_err(db2, db1, C); if (e > g_worst_gn) g_worst_gn = e;
        BDT_CHECKF(e < 2e-5, "gn+silu bwd dgamma/dbeta case %d err %.3g", ci, e);
        /* SiLU alone (fast exp) */
        bd__silu_forward_ref(o1, x, n);
        bd_silu_forward(o2, x, n);
        e = rel_err(o2, o1, n); if (e > g_worst_gn) g_worst_gn = e;
        BDT_CHECKF(e < 1e-6, "silu fwd err %.3g", e);
        memcpy(dx1, dx0, (size_t)n * sizeof(float)); memcpy(dx2, dx0, (size_t)n * sizeof(float));
        bd__silu_backward_ref(dx1, dout, x, n);
        bd_silu_backward(dx2, dout, x, n);
        e = rel_err(dx2, dx1, n); if (e > g_worst_gn) g_worst_gn = e;
        BDT_CHECKF(e < 1e-6, "silu bwd err %.3g", e);
        free(x); free(gamma); free(beta); free(dout); free(o1); free(o2); free(o3); free(y);
        free(dx0); free(dg0); free(dbt0); free(dx1); free(dg1); free(db1); free(dx2); free(dg2);
        free(db2); free(dy);
    }
    printf("  groupnorm / gn+silu / silu: worst error / max|ref| = %.3g\n", g_worst_gn);
}

static void test_expf(void) {
    double worst = 0.0;
    float v;
    for (v = -87.0f; v <= 87.0f; v += 0.01234f) {
        double ref = exp((double)v), e = fabs((double)bd__expf(v) - ref) / ref;
        if (e > worst) worst = e;
    }
    printf("  bd__expf: worst relative error %.3g on [-87, 87]\n", worst);
    BDT_CHECKF(worst < 4e-7, "worst %.3g", worst);
    {
        float xs[5] = {-30.0f, -2.5f, 0.0f, 1.0f, 40.0f}, y1[5], y2[5];
        double ma;
        bd_silu_forward(y1, xs, 5);
        bd__silu_forward_ref(y2, xs, 5);
        BDT_CHECK(bdt_close_ratio(y1, y2, 5, 1e-7, 1e-6, &ma) <= 1.0);
    }
    BDT_CHECK(bd__expf(-1000.0f) >= 0.0f && bd__expf(-1000.0f) < 1e-37f);
    BDT_CHECK(bd__expf(1000.0f) > 1e37f && bd__expf(1000.0f) == bd__expf(1000.0f));
}

/* ---------------- attention ---------------- */
static void test_attention_fast_vs_ref(void) {
    static const int64_t cases[][4] = {{3, 64, 49, 1}, {2, 8, 70, 2}, {1, 6, 5, 3}};
    bd_rng r = bd_rng_init(14);
    int ci;
    for (ci = 0; ci < 3; ci++) {
        int64_t N = cases[ci][0], C = cases[ci][1], HW = cases[ci][2], H = cases[ci][3];
        int64_t nq = N * 3 * C * HW, no = N * C * HW, na = N * H * HW * HW;
        float *qkv = randv(&r, nq), *dout = randv(&r, no), *o1 = randv(&r, no), *o2 = randv(&r, no);
        float *a1 = randv(&r, na), *a2 = randv(&r, na), *sc = randv(&r, HW * HW);
        float *d0 = randv(&r, nq), *d1 = copyv(d0, nq), *d2 = copyv(d0, nq);
        double e;
        bd__attention_forward_ref(o1, a1, qkv, N, C, HW, H);
        bd_attention_forward(o2, a2, qkv, N, C, HW, H);
        e = rel_err(o2, o1, no) + rel_err(a2, a1, na); if (e > g_worst_att) g_worst_att = e;
        BDT_CHECKF(e < 1e-5, "attention fwd case %d err %.3g", ci, e);
        bd__attention_backward_ref(d1, sc, dout, qkv, a1, N, C, HW, H);
        bd_attention_backward(d2, sc, dout, qkv, a1, N, C, HW, H);
        e = rel_err(d2, d1, nq); if (e > g_worst_att) g_worst_att = e;
        BDT_CHECKF(e < 1e-5, "attention bwd case %d err %.3g", ci, e);
        free(qkv); free(dout); free(o1); free(o2); free(a1); free(a2); free(sc); free(d0);
        free(d1); free(d2);
    }
    printf("  attention: worst error / max|ref| = %.3g\n", g_worst_att);
}

/* ---------------- Winograd F(2x2, 3x3) ---------------- */
/* every stride-1 3x3 shape of the `small` UNet (Cin, Cout, H, W) and odd
   edge shapes (odd sizes, W > 32 tiles in two chunks, 1-pixel images),
   forward (=, bias) and dx (+= onto random values), Winograd forced,
   against the reference (im2col + GEMM) and the kernel otherwise used
   (direct 3x3 or implicit GEMM).  The shapes cover every case of the
   vector transforms: 8- and 16-tile chunks with partial ones (W 11,
   17, 28, 33, 40), chunks of no tile (W 33, 40: 17 and 20 tiles in 32
   lanes), 4-tile rows (W 7: two tile rows per AVX2 vector), 1- and
   2-tile rows (W <= 4), odd H (no second output row), Cin > 128 (two
   weight chunks: the product's += path), Cout not a multiple of 8.  Stated tolerance: 5e-6 of max |ref|
   (measured worst: ~1e-6). */
static void test_winograd_vs_direct(void) {
    static const int shapes[][4] = {{1, 32, 28, 28},  {32, 32, 28, 28}, {64, 32, 28, 28}, {96, 32, 28, 28},
                                    {64, 64, 28, 28}, {32, 64, 14, 14}, {64, 64, 14, 14}, {96, 64, 14, 14},
                                    {128, 64, 14, 14}, {64, 64, 7, 7},  {128, 64, 7, 7},  {32, 1, 28, 28},
                                    {5, 13, 9, 11},   {20, 9, 1, 3},    {3, 17, 2, 1},    {7, 9, 5, 40},
                                    {4, 8, 3, 64},    {3, 5, 6, 33},    {9, 10, 17, 17},  {200, 9, 3, 2}};
    bd_rng r = bd_rng_init(21);
    double worst_ref = 0.0, worst_dir = 0.0;
    size_t si;
    for (si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t N = 2, Cin = shapes[si][0], Cout = shapes[si][1], H = shapes[si][2], W = shapes[si][3];
        int64_t nx = N * Cin * H * W, no = N * Cout * H * W, nw = Cout * Cin * 9;
        int64_t ws = bd_conv2d_workspace_floats(Cin, H, W, 3, 1, 1), wr = Cin * 9 * H * W;
        float *x = randv(&r, nx), *w = randv(&r, nw), *b = randv(&r, Cout), *d = randv(&r, no);
        float *dx0 = randv(&r, nx), *o[3], *dx[3];
        float *col = (float *)malloc((size_t)(ws > wr ? ws : wr) * sizeof(float));
        int k;
        double e;
        for (k = 0; k < 3; k++) {
            o[k] = randv(&r, no);
            dx[k] = copyv(dx0, nx);
        }
        bd__conv2d_forward_ref(o[0], col, x, w, b, N, Cin, H, W, Cout, 3, 1, 1);
        bd__conv2d_backward_ref(dx[0], NULL, NULL, col, d, x, w, N, Cin, H, W, Cout, 3, 1, 1);
        for (k = 1; k < 3; k++) {
            bd__conv2d_fwd(o[k], col, x, w, b, N, Cin, H, W, Cout, 3, 1, 1, k == 2);
            bd__conv2d_bwd(dx[k], NULL, NULL, col, d, x, w, N, Cin, H, W, Cout, 3, 1, 1, k == 2);
        }
        e = rel_err(o[2], o[0], no);
        if (rel_err(dx[2], dx[0], nx) > e) e = rel_err(dx[2], dx[0], nx);
        if (e > worst_ref) worst_ref = e;
        BDT_CHECKF(e < 5e-6, "winograd vs ref %d->%d %dx%d: %.3g", (int)Cin, (int)Cout, (int)H, (int)W, e);
        e = rel_err(o[2], o[1], no);
        if (rel_err(dx[2], dx[1], nx) > e) e = rel_err(dx[2], dx[1], nx);
        if (e > worst_dir) worst_dir = e;
        BDT_CHECKF(e < 5e-6, "winograd vs direct %d->%d %dx%d: %.3g", (int)Cin, (int)Cout, (int)H, (int)W, e);
        for (k = 0; k < 3; k++) { free(o[k]); free(dx[k]); }
        free(x); free(w); free(b); free(d); free(dx0); free(col);
    }
    printf("  winograd: worst error / max|ref| = %.3g vs reference, %.3g vs direct, %d shapes\n",
           worst_ref, worst_dir, (int)(sizeof shapes / sizeof shapes[0]));
#ifdef _OPENMP
    {
        /* batch 1 at 7x7: fewer blocks than threads, output channels split
           into groups; 28x28: blocks split.  Same bits for 1, 2, 3 threads. */
        static const int ts[][3] = {{128, 64, 7}, {32, 32, 28}};
        int s2, t;
        for (s2 = 0; s2 < 2; s2++) {
            int64_t Cin = ts[s2][0], Cout = ts[s2][1], H = ts[s2][2], nx = Cin * H * H, no = Cout * H * H;
            int64_t ws = bd_conv2d_workspace_floats(Cin, H, H, 3, 1, 1);
            float *x = randv(&r, nx), *w = randv(&r, Cout * Cin * 9), *b = randv(&r, Cout), *o[3];
            float *col = (float *)malloc((size_t)ws * sizeof(float));
            for (t = 0; t < 3; t++) {
                o[t] = (float *)malloc((size_t)no * sizeof(float));
                set_threads(t + 1);
                bd__conv2d_fwd(o[t], col, x, w, b, 1, Cin, H, H, Cout, 3, 1, 1, 1);
                set_threads(1);
            }
            for (t = 1; t < 3; t++)
                BDT_CHECKF(memcmp(o[t], o[0], (size_t)no * 4) == 0, "winograd %dx%d %d threads", (int)H, (int)H, t + 1);
            for (t = 0; t < 3; t++) free(o[t]);
            free(x); free(w); free(b); free(col);
        }
    }
#endif
}

/* ---------------- Winograd F(4x4, 3x3) ---------------- */
/* F(4x4, 3x3) forced (wg 2) against the reference (im2col + GEMM) and the
   direct kernel, forward (=, bias) and dx (+= onto random values), batch 1
   and 2: every stride-1 3x3 shape of the `small` UNet and edge shapes
   (H, W not multiples of 4: partial 4x4 tiles in both directions; odd
   sizes; 1- and 2-pixel images; W 33, 40, 64: 9, 10, 16 tiles in a row;
   Cin > 64: several weight chunks, the product's += path; Cout not a
   multiple of 8).  Error per shape printed; stated tolerance 2e-5 of max
   |ref| (F(4x4)'s transforms have entries up to 8 and 1/24: ~10x the
   rounding of F(2x2)). */
static void test_winograd4_vs_direct(void) {
    static const int shapes[][4] = {{32, 32, 28, 28},  {64, 32, 28, 28}, {96, 32, 28, 28},  {64, 64, 28, 28},
                                    {32, 64, 14, 14},  {64, 64, 14, 14}, {96, 64, 14, 14},  {128, 64, 14, 14},
                                    {64, 64, 7, 7},    {128, 64, 7, 7},  {1, 32, 28, 28},   {32, 1, 28, 28},
                                    {5, 13, 9, 11},    {20, 9, 1, 3},    {3, 17, 2, 1},     {7, 9, 5, 40},
                                    {4, 8, 3, 64},     {3, 5, 6, 33},    {9, 10, 17, 17},   {200, 9, 3, 2},
                                    {16, 24, 10, 30},  {70, 8, 6, 6},    {16, 16, 13, 13}};
    bd_rng r = bd_rng_init(23);
    double worst_ref = 0.0, worst_dir = 0.0;
    size_t si;
    int nb;
    for (nb = 1; nb <= 2; nb++)
        for (si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int64_t N = nb, Cin = shapes[si][0], Cout = shapes[si][1], H = shapes[si][2], W = shapes[si][3];
            int64_t nx = N * Cin * H * W, no = N * Cout * H * W, nw = Cout * Cin * 9;
            int64_t ws = bd_conv2d_workspace_floats(Cin, H, W, 3, 1, 1), wr = Cin * 9 * H * W;
            float *x = randv(&r, nx), *w = randv(&r, nw), *b = randv(&r, Cout), *d = randv(&r, no);
            float *dx0 = randv(&r, nx), *o[3], *dx[3];
            float *col = (float *)malloc((size_t)(ws > wr ? ws : wr) * sizeof(float));
            int k;
            double ef, ed, e2f, e2d;
            for (k = 0; k < 3; k++) {
                o[k] = randv(&r, no);
                dx[k] = copyv(dx0, nx);
            }
            bd__conv2d_forward_ref(o[0], col, x, w, b, N, Cin, H, W, Cout, 3, 1, 1);
            bd__conv2d_backward_ref(dx[0], NULL, NULL, col, d, x, w, N, Cin, H, W, Cout, 3, 1, 1);
            for (k = 1; k < 3; k++) {
                bd__conv2d_fwd(o[k], col, x, w, b, N, Cin, H, W, Cout, 3, 1, 1, k == 2 ? 2 : 0);
                bd__conv2d_bwd(dx[k], NULL, NULL, col, d, x, w, N, Cin, H, W, Cout, 3, 1, 1, k == 2 ? 2 : 0);
            }
            ef = rel_err(o[2], o[0], no);
            ed = rel_err(dx[2], dx[0], nx);
            e2f = rel_err(o[2], o[1], no);
            e2d = rel_err(dx[2], dx[1], nx);
            if (ef > worst_ref) worst_ref = ef;
            if (ed > worst_ref) worst_ref = ed;
            if (e2f > worst_dir) worst_dir = e2f;
            if (e2d > worst_dir) worst_dir = e2d;
            printf("    F(4x4) %3d->%-3d %2dx%-2d batch %d: fwd %.2g (vs direct %.2g), dx %.2g (vs direct %.2g)\n",
                   (int)Cin, (int)Cout, (int)H, (int)W, nb, ef, e2f, ed, e2d);
            BDT_CHECKF(ef < 2e-5 && ed < 2e-5, "winograd4 vs ref %d->%d %dx%d: %.3g %.3g", (int)Cin, (int)Cout,
                       (int)H, (int)W, ef, ed);
            BDT_CHECKF(e2f < 2e-5 && e2d < 2e-5, "winograd4 vs direct %d->%d %dx%d: %.3g %.3g", (int)Cin,
                       (int)Cout, (int)H, (int)W, e2f, e2d);
            for (k = 0; k < 3; k++) { free(o[k]); free(dx[k]); }
            free(x); free(w); free(b); free(d); free(dx0); free(col);
        }
    printf("  winograd F(4x4): worst error / max|ref| = %.3g vs reference, %.3g vs direct, %d shapes x 2 batches\n",
           worst_ref, worst_dir, (int)(sizeof shapes / sizeof shapes[0]));
#ifdef _OPENMP
    {
        /* forward and dx, same bits for 1, 2, 3 threads: batch 1 at 7x7
           (fewer blocks than threads: channel groups), 28x28 and 14x14
           (blocks split), batch 3 at 9x11 */
        static const int ts[][5] = {{128, 64, 7, 7, 1}, {32, 32, 28, 28, 1}, {64, 64, 14, 14, 2}, {5, 13, 9, 11, 3}};
        int s2, t;
        for (s2 = 0; s2 < 4; s2++) {
            int64_t Cin = ts[s2][0], Cout = ts[s2][1], H = ts[s2][2], W = ts[s2][3], N = ts[s2][4];
            int64_t nx = N * Cin * H * W, no = N * Cout * H * W;
            int64_t ws = bd_conv2d_workspace_floats(Cin, H, W, 3, 1, 1);
            float *x = randv(&r, nx), *w = randv(&r, Cout * Cin * 9), *b = randv(&r, Cout), *d = randv(&r, no);
            float *o[3], *dx[3];
            float *col = (float *)malloc((size_t)ws * sizeof(float));
            for (t = 0; t < 3; t++) {
                o[t] = (float *)malloc((size_t)no * sizeof(float));
                dx[t] = (float *)calloc((size_t)nx, sizeof(float));
                set_threads(t + 1);
                bd__conv2d_fwd(o[t], col, x, w, b, N, Cin, H, W, Cout, 3, 1, 1, 2);
                bd__conv2d_bwd(dx[t], NULL, NULL, col, d, x, w, N, Cin, H, W, Cout, 3, 1, 1, 2);
                set_threads(1);
            }
            for (t = 1; t < 3; t++) {
                BDT_CHECKF(memcmp(o[t], o[0], (size_t)no * 4) == 0, "winograd4 fwd %dx%d %d threads", (int)H, (int)W, t + 1);
                BDT_CHECKF(memcmp(dx[t], dx[0], (size_t)nx * 4) == 0, "winograd4 dx %dx%d %d threads", (int)H, (int)W, t + 1);
            }
            for (t = 0; t < 3; t++) { free(o[t]); free(dx[t]); }
            free(x); free(w); free(b); free(d); free(col);
        }
        printf("  winograd F(4x4): 1, 2 and 3 threads give identical bits\n");
    }
#endif
}

/* the Winograd F(4x4) weight gradient (bd__wg4_dw, AVX-512) against the
   reference and the direct dw kernel, over the UNet's stride-1 3x3 shapes
   and odd ones (H, W not multiples of 4, 1- and 2-pixel images, W 33 and
   64, input channels not a multiple of 8 and several of the item's
   ranges, output channels over 64: two items), at batch 1, 2 and 5; and
   the same bits for 1, 2 and 3 threads.  Stated tolerance 2e-5 (F(4x4)'s
   transforms round ~10x more than the direct kernel: measured worst
   ~3e-6). */
static void test_winograd4_dw(void) {
    static const int shapes[][4] = {{32, 32, 28, 28},  {64, 32, 28, 28}, {96, 32, 28, 28},  {64, 64, 28, 28},
                                    {32, 64, 14, 14},  {64, 64, 14, 14}, {96, 64, 14, 14},  {128, 64, 14, 14},
                                    {64, 64, 7, 7},    {128, 64, 7, 7},  {16, 16, 13, 13},  {5, 13, 9, 11},
                                    {20, 9, 1, 3},     {3, 17, 2, 1},    {7, 9, 5, 40},     {4, 8, 3, 64},
                                    {3, 5, 6, 33},     {9, 70, 17, 17},  {200, 9, 3, 2},    {16, 24, 10, 30},
                                    {70, 130, 6, 6},   {17, 33, 7, 5}};
    static const int batches[] = {1, 2, 5};
    bd_rng r = bd_rng_init(29);
    double worst_ref = 0.0, worst_dir = 0.0;
    size_t si;
    int bi, ran = 0;
    for (bi = 0; bi < 3; bi++)
        for (si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int64_t N = batches[bi], Cin = shapes[si][0], Cout = shapes[si][1], H = shapes[si][2], W = shapes[si][3];
            int64_t nx = N * Cin * H * W, no = N * Cout * H * W, nw = Cout * Cin * 9;
            /* a workspace with room for the dw slots below 16 input channels too */
            int64_t ws = bd_conv2d_workspace_floats(Cin, H, W, 3, 1, 1) + 2 * bd__wgdw_slot(Cin, W), wr = Cin * 9 * H * W;
            float *x = randv(&r, nx), *d = randv(&r, no), *w = randv(&r, nw), *dw0 = randv(&r, nw);
            float *dw[3], *col = (float *)malloc((size_t)(ws > wr ? ws : wr) * sizeof(float));
            double er, ed;
            int k, ok;
            for (k = 0; k < 3; k++) dw[k] = copyv(dw0, nw);
            bd__conv2d_backward_ref(NULL, dw[0], NULL, col, d, x, w, N, Cin, H, W, Cout, 3, 1, 1);
            bd__conv2d_bwd(NULL, dw[1], NULL, col, d, x, w, N, Cin, H, W, Cout, 3, 1, 1, 1); /* direct dw */
            ok = bd__wg4_dw(dw[2], col, ws, d, x, N, Cin, H, W, Cout);
            BDT_CHECKF(ok || !bd__wg4_dw_rule(64, 32, 28, 28, 32), "winograd4 dw %d->%d declined", (int)Cin, (int)Cout);
            if (ok) {
                ran++;
                er = rel_err(dw[2], dw[0], nw);
                ed = rel_err(dw[2], dw[1], nw);
                if (er > worst_ref) worst_ref = er;
                if (ed > worst_dir) worst_dir = ed;
                printf("    F(4x4) dw %3d->%-3d %2dx%-2d batch %d: %.2g vs reference, %.2g vs direct\n", (int)Cin,
                       (int)Cout, (int)H, (int)W, (int)N, er, ed);
                BDT_CHECKF(er < 2e-5 && ed < 2e-5, "winograd4 dw %d->%d %dx%d batch %d: %.3g %.3g", (int)Cin,
                           (int)Cout, (int)H, (int)W, (int)N, er, ed);
            }
            for (k = 0; k < 3; k++) free(dw[k]);
            free(x); free(d); free(w); free(dw0); free(col);
        }
    if (!ran) {
        printf("  winograd F(4x4) dw: not applicable on this CPU / build (AVX-512 only)\n");
        return;
    }
    printf("  winograd F(4x4) dw: worst error / max|ref| = %.3g vs reference, %.3g vs direct, %d cases\n", worst_ref,
           worst_dir, ran);
#ifdef _OPENMP
    {
        /* same bits for 1, 2, 3 threads: 2 input-channel ranges and 2 output
           ranges (130 channels: 3 items), channels not a multiple of 8, 28x28 */
        static const int ts[][5] = {{128, 64, 7, 7, 8}, {32, 32, 28, 28, 2}, {70, 130, 6, 6, 3}, {17, 33, 9, 11, 3}};
        int s2, t;
        for (s2 = 0; s2 < 4; s2++) {
            int64_t Cin = ts[s2][0], Cout = ts[s2][1], H = ts[s2][2], W = ts[s2][3], N = ts[s2][4];
            int64_t nx = N * Cin * H * W, no = N * Cout * H * W, nw = Cout * Cin * 9;
            int64_t ws = bd_conv2d_workspace_floats(Cin, H, W, 3, 1, 1);
            float *x = randv(&r, nx), *d = randv(&r, no), *dw0 = randv(&r, nw), *dw[3];
            float *col = (float *)malloc((size_t)ws * sizeof(float));
            for (t = 0; t < 3; t++) {
                dw[t] = copyv(dw0, nw);
                set_threads(t + 1);
                BDT_CHECK(bd__wg4_dw(dw[t], col, ws, d, x, N, Cin, H, W, Cout));
                set_threads(1);
            }
            for (t = 1; t < 3; t++)
                BDT_CHECKF(memcmp(dw[t], dw[0], (size_t)nw * 4) == 0, "winograd4 dw %dx%d %d threads", (int)H, (int)W,
                           t + 1);
            for (t = 0; t < 3; t++) free(dw[t]);
            free(x); free(d); free(dw0); free(col);
        }
        printf("  winograd F(4x4) dw: 1, 2 and 3 threads give identical bits\n");
    }
#endif
}

/* ---------------- thread-count determinism ---------------- */
/* every conv path (Winograd, direct fwd/dx, direct dw at stride 1 and 2 and
   1x1, implicit GEMM): the same bits for 1, 2 and 3 threads */
static void conv_threads_same_bits(const conv_case *c) {
    bd_rng r = bd_rng_init(16);
    int64_t Ho = (c->H + 2 * c->p - c->k) / c->s + 1, Wo = (c->W + 2 * c->p - c->k) / c->s + 1;
    int64_t nx = c->N * c->Cin * c->H * c->W, nw = c->Cout * c->Cin * c->k * c->k, no = c->N * c->Cout * Ho * Wo;
    float *x = randv(&r, nx), *w = randv(&r, nw), *b = randv(&r, c->Cout), *dout = randv(&r, no);
    float *o[3], *dx[3], *dw[3], *db[3];
    int t;
    for (t = 0; t < 3; t++) {
        o[t] = (float *)calloc((size_t)no, 4); dx[t] = (float *)calloc((size_t)nx, 4);
        dw[t] = (float *)calloc((size_t)nw, 4); db[t] = (float *)calloc((size_t)c->Cout, 4);
        conv_run(c, 1, t + 1, x, w, b, dout, o[t], dx[t], dw[t], db[t]);
    }
    for (t = 1; t < 3; t++) {
        BDT_CHECKF(memcmp(o[t], o[0], (size_t)no * 4) == 0, "conv k%lld s%lld fwd %d threads", (long long)c->k,
                   (long long)c->s, t + 1);
        BDT_CHECKF(memcmp(dx[t], dx[0], (size_t)nx * 4) == 0, "conv k%lld s%lld dx %d threads", (long long)c->k,
                   (long long)c->s, t + 1);
        BDT_CHECKF(memcmp(dw[t], dw[0], (size_t)nw * 4) == 0, "conv k%lld s%lld dw %d threads", (long long)c->k,
                   (long long)c->s, t + 1);
    }
    for (t = 0; t < 3; t++) { free(o[t]); free(dx[t]); free(dw[t]); free(db[t]); }
    free(x); free(w); free(b); free(dout);
}

static void test_threads_bit_identical(void) {
#ifdef _OPENMP
    bd_rng r = bd_rng_init(15);
    size_t ci;
    for (ci = 0; ci < sizeof conv_cases / sizeof conv_cases[0]; ci++)
        /* TEST_QUICK (valgrind): the stride-2, 1x1 and direct-dw cases only */
        if (!getenv("TEST_QUICK") || ci == 3 || ci == 4 || (ci >= 18 && ci <= 20)) conv_threads_same_bits(&conv_cases[ci]);
    const conv_case *c = &conv_cases[2];
    int64_t nx = c->N * c->Cin * c->H * c->W, nw = c->Cout * c->Cin * 9, no = c->N * c->Cout * c->H * c->W;
    float *x = randv(&r, nx), *w = randv(&r, nw), *b = randv(&r, c->Cout), *dout = randv(&r, no);
    float *o[3], *dx[3], *dw[3], *db[3], *a[3], *ao[3], *dq[3], *gn[3], *gdx[3], *gdg[3], *a1[3], *ao1[3];
    float m[3][64], s[3][64], *qkv = randv(&r, 5 * 3 * 64 * 49), *sc = randv(&r, 49 * 49);
    int t;
    for (t = 0; t < 3; t++) {
        o[t] = randv(&r, no); dx[t] = (float *)calloc((size_t)nx, 4); dw[t] = (float *)calloc((size_t)nw, 4);
        db[t] = (float *)calloc((size_t)c->Cout, 4);
        conv_run(c, 1, t + 1, x, w, b, dout, o[t], dx[t], dw[t], db[t]);
        a[t] = (float *)calloc(5 * 49 * 49, 4); ao[t] = (float *)calloc(5 * 64 * 49, 4);
        dq[t] = (float *)calloc(5 * 3 * 64 * 49, 4);
        gn[t] = (float *)calloc((size_t)no, 4); gdx[t] = (float *)calloc((size_t)no, 4);
        gdg[t] = (float *)calloc(128, 4);
        set_threads(t + 1);
        bd_attention_forward(ao[t], a[t], qkv, 5, 64, 49, 1);
        /* batch 1: the queries split over the threads */
        a1[t] = (float *)calloc(49 * 49, 4); ao1[t] = (float *)calloc(64 * 49, 4);
        bd_attention_forward(ao1[t], a1[t], qkv, 1, 64, 49, 1);
        bd_attention_backward(dq[t], sc, ao[t], qkv, a[t], 5, 64, 49, 1);
        bd_groupnorm_silu_forward(gn[t], m[t], s[t], o[0], w, b, c->N, c->Cout, c->H * c->W, 8);
        bd_groupnorm_silu_backward(gdx[t], gdg[t], gdg[t] + 64, dout, o[0], m[t], s[t], w, b,
                                   c->N, c->Cout, c->H * c->W, 8);
        set_threads(1);
    }
    for (t = 1; t < 3; t++) {
        BDT_CHECKF(memcmp(o[t], o[0], (size_t)no * 4) == 0, "conv fwd %d threads", t + 1);
        BDT_CHECKF(memcmp(dx[t], dx[0], (size_t)nx * 4) == 0, "conv dx %d threads", t + 1);
        BDT_CHECKF(memcmp(dw[t], dw[0], (size_t)nw * 4) == 0, "conv dw %d threads", t + 1);
        BDT_CHECKF(memcmp(db[t], db[0], (size_t)c->Cout * 4) == 0, "conv db %d threads", t + 1);
        BDT_CHECKF(memcmp(ao[t], ao[0], 5 * 64 * 49 * 4) == 0, "attention fwd %d threads", t + 1);
        BDT_CHECKF(memcmp(ao1[t], ao1[0], 64 * 49 * 4) == 0 && memcmp(a1[t], a1[0], 49 * 49 * 4) == 0,
                   "attention fwd batch 1, %d threads", t + 1);
        BDT_CHECKF(memcmp(ao1[t], ao[0], 64 * 49 * 4) == 0, "attention fwd batch 1 = sample 0 of 5, %d threads",
                   t + 1);
        BDT_CHECKF(memcmp(dq[t], dq[0], 5 * 3 * 64 * 49 * 4) == 0, "attention bwd %d threads", t + 1);
        BDT_CHECKF(memcmp(gn[t], gn[0], (size_t)no * 4) == 0, "gn+silu fwd %d threads", t + 1);
        BDT_CHECKF(memcmp(gdx[t], gdx[0], (size_t)no * 4) == 0, "gn+silu bwd %d threads", t + 1);
        BDT_CHECKF(memcmp(gdg[t], gdg[0], 128 * 4) == 0, "gn+silu dgamma %d threads", t + 1);
    }
    for (t = 0; t < 3; t++) {
        free(o[t]); free(dx[t]); free(dw[t]); free(db[t]); free(a[t]); free(ao[t]); free(dq[t]);
        free(gn[t]); free(gdx[t]); free(gdg[t]); free(a1[t]); free(ao1[t]);
    }
    free(x); free(w); free(b); free(dout); free(qkv); free(sc);
    printf("  1, 2 and 3 threads give identical bits (conv, attention, gn+silu)\n");
#else
    printf("  (built without OpenMP: single-threaded, nothing to compare)\n");
#endif
}

int main(void) {
    set_threads(1);
    /* which vector kernels this build runs (CI also builds with -DBDENSE_NO_AVX512:
       the AVX2+FMA direct 3x3 tile, Winograd transforms and product, dw kernel
       and gather packer; and with -DBDENSE_NO_SIMD: the portable C) */
#ifdef BD__X86
    printf("  vector kernels: %s\n", BD__CPU_AVX512() ? "AVX-512"
                                     : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "AVX2+FMA"
                                                                                                          : "plain C"));
#else
    printf("  vector kernels: plain C\n");
#endif
    BDT_RUN(test_gemm_builtin_blocks);
    BDT_RUN(test_conv_fast_vs_ref);
    BDT_RUN(test_winograd_vs_direct);
    BDT_RUN(test_winograd4_vs_direct);
    BDT_RUN(test_winograd4_dw);
    BDT_RUN(test_expf);
    BDT_RUN(test_groupnorm_fast_vs_ref);
    BDT_RUN(test_attention_fast_vs_ref);
    BDT_RUN(test_threads_bit_identical);
    return BDT_SUMMARY("test_kernels_fast");
}
