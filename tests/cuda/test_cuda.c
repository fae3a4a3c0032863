/* test_cuda.c - every kernel of the CUDA backend against the CPU kernel.
   Build (tests/cuda/run_all.sh or `make CUDA=1`): this file with cc, the
   backend with nvcc, linked by nvcc with -lcublas.
   Without a usable GPU it prints "no GPU, skipped" and exits 0.

   Comparison: normalised MSE  nmse = sum (gpu - cpu)^2 / sum cpu^2  per
   output tensor, against a tolerance stated per op:
     TOL_EXACT 1e-12  elementwise ops and gathers (same float formula; only
                      libm vs CUDA expf/sin/cos rounding can differ)
     TOL_RED   1e-11  double-accumulated reductions (order differs)
     TOL_GEMM  1e-9   anything through a float32 GEMM (order of K-sums
                      differs: rel. error ~1e-6 per element at most)
     TOL_TF32  1e-4   the same GEMM ops with TF32 switched on (10-bit
                      mantissa inputs)
   Backward kernels get gradient buffers pre-filled with random values on
   both sides, so the accumulate (+=) rule is checked too. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <limits.h>
#include <stdlib.h>

#define TOL_EXACT 1e-12
#define TOL_RED 1e-11
#define TOL_GEMM 1e-9
#define TOL_TF32 1e-4

static bd_context *g_ctx; /* the CUDA context */
static bd_rng g_rng;
static double g_worst_ratio = 0.0; /* max over checks of nmse / tol */

/* a host array and its device twin, filled with the same values */
typedef struct pair {
    float *h;
    float *d;
    int64_t n;
} pair;

static pair mk(int64_t n, float scale) {
    pair p;
    int64_t i;
    p.n = n;
    p.h = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    p.d = NULL;
    for (i = 0; i < n; i++) p.h[i] = scale * (float)bd_rng_normal1(&g_rng);
    if (bd_backend_alloc(g_ctx, (size_t)(n > 0 ? n : 1) * sizeof(float), (void **)&p.d) != BD_SUCCESS ||
        bd_backend_upload(g_ctx, p.d, p.h, (size_t)n * sizeof(float)) != BD_SUCCESS) {
        printf("  device alloc/upload failed: %s\n", bd_context_message(g_ctx));
    }
    return p;
}

static pair mk_uniform(int64_t n, float lo, float hi) {
    pair p = mk(n, 1.0f);
    bd_rng_uniform_fill(&g_rng, p.h, n, lo, hi);
    bd_backend_upload(g_ctx, p.d, p.h, (size_t)n * sizeof(float));
    return p;
}

static void drop(pair *p) {
    free(p->h);
    bd_backend_free(g_ctx, p->d);
    p->h = p->d = NULL;
}

/* download p.d and compare with p.h (the CPU result) */
static void cmp(const char *what, const pair *p, double tol) {
    float *g = (float *)malloc((size_t)(p->n > 0 ? p->n : 1) * sizeof(float));
    double num = 0.0, den = 0.0, nmse, maxd = 0.0;
    int64_t i;
    bd_result r = bd_backend_sync(g_ctx);
    BDT_CHECKF(r == BD_SUCCESS, "%s: sync: %s", what, bd_context_message(g_ctx));
    r = bd_backend_download(g_ctx, g, p->d, (size_t)p->n * sizeof(float));
    BDT_CHECKF(r == BD_SUCCESS, "%s: download: %s", what, bd_context_message(g_ctx));
    for (i = 0; i < p->n; i++) {
        double d = (double)g[i] - (double)p->h[i];
        num += d * d;
        den += (double)p->h[i] * (double)p->h[i];
        if (fabs(d) > maxd || d != d) maxd = d != d ? 1e30 : fabs(d);
    }
    nmse = den > 0 ? num / den : num;
    if (nmse != nmse) nmse = 1e30;
    if (nmse / tol > g_worst_ratio) g_worst_ratio = nmse / tol;
    printf("    %-44s n=%-8lld nmse=%.3e (tol %.0e) max|d|=%.3e\n", what, (long long)p->n, nmse,
           tol, maxd);
    BDT_CHECKF(nmse <= tol, "%s: nmse %.3e > %.0e", what, nmse, tol);
    free(g);
}

static void cmp_scalar(const char *what, double gpu, double cpu, double tol) {
    double rel = fabs(gpu - cpu) / (fabs(cpu) > 1e-30 ? fabs(cpu) : 1.0);
    double nmse = rel * rel;
    if (nmse != nmse) nmse = 1e30;
    if (nmse / tol > g_worst_ratio) g_worst_ratio = nmse / tol;
    printf("    %-44s gpu=%.12g cpu=%.12g nmse=%.3e (tol %.0e)\n", what, gpu, cpu, nmse, tol);
    BDT_CHECKF(nmse <= tol, "%s: nmse %.3e > %.0e", what, nmse, tol);
}

#define OP(op, ...) BD_OP(g_ctx, op, __VA_ARGS__)

/* ---------------------------------------------------------------------- */
static void test_sgemm(void) {
    int ta, tb, c;
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 130, 9}, {3, 4, 0}};
    for (c = 0; c < 5; c++)
        for (ta = 0; ta < 2; ta++)
            for (tb = 0; tb < 2; tb++) {
                int64_t M = shapes[c][0], N = shapes[c][1], K = shapes[c][2];
                int64_t lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 1, ldc = N + 3;
                int64_t ra = ta ? K : M, rb = tb ? N : K;
                pair A = mk(ra * lda + 1, 1.0f), B = mk(rb * ldb + 1, 1.0f), C = mk(M * ldc, 1.0f);
                float alpha = 0.75f, beta = (c % 2) ? 0.0f : -0.5f;
                char name[96];
                bd_sgemm(ta, tb, M, N, K, alpha, A.h, lda, B.h, ldb, beta, C.h, ldc);
                OP(sgemm, ta, tb, M, N, K, alpha, A.d, lda, B.d, ldb, beta, C.d, ldc);
                snprintf(name, sizeof name, "sgemm ta=%d tb=%d M=%lld N=%lld K=%lld beta=%g", ta, tb,
                         (long long)M, (long long)N, (long long)K, beta);
                cmp(name, &C, TOL_GEMM);
                drop(&A); drop(&B); drop(&C);
            }
}

static void test_linear(void) {
    int withb;
    for (withb = 0; withb < 2; withb++) {
        int64_t N = 13, In = 37, Out = 29;
        pair x = mk(N * In, 1.0f), w = mk(Out * In, 0.3f), b = mk(Out, 1.0f), out = mk(N * Out, 1.0f);
        pair dout = mk(N * Out, 1.0f), dx = mk(N * In, 1.0f), dw = mk(Out * In, 1.0f), db = mk(Out, 1.0f);
        bd_linear_forward(out.h, x.h, w.h, withb ? b.h : NULL, N, In, Out);
        OP(linear_forward, out.d, x.d, w.d, withb ? b.d : NULL, N, In, Out);
        cmp(withb ? "linear_forward out (bias)" : "linear_forward out (no bias)", &out, TOL_GEMM);
        bd_linear_backward(dx.h, dw.h, withb ? db.h : NULL, dout.h, x.h, w.h, N, In, Out);
        OP(linear_backward, dx.d, dw.d, withb ? db.d : NULL, dout.d, x.d, w.d, N, In, Out);
        cmp("linear_backward dx +=", &dx, TOL_GEMM);
        cmp("linear_backward dw +=", &dw, TOL_GEMM);
        cmp("linear_backward db +=", &db, TOL_RED);
        drop(&x); drop(&w); drop(&b); drop(&out); drop(&dout); drop(&dx); drop(&dw); drop(&db);
    }
}

static void test_silu(void) {
    int64_t n = 100003;
    pair x = mk(n, 3.0f), out = mk(n, 1.0f), dout = mk(n, 1.0f), dx = mk(n, 1.0f);
    bd_silu_forward(out.h, x.h, n);
    OP(silu_forward, out.d, x.d, n);
    cmp("silu_forward", &out, TOL_EXACT);
    bd_silu_backward(dx.h, dout.h, x.h, n);
    OP(silu_backward, dx.d, dout.d, x.d, n);
    cmp("silu_backward dx +=", &dx, TOL_EXACT);
    /* in place forward (out == x) */
    bd_silu_forward(x.h, x.h, n);
    OP(silu_forward, x.d, x.d, n);
    cmp("silu_forward in place", &x, TOL_EXACT);
    drop(&x); drop(&out); drop(&dout); drop(&dx);
}

static void conv_case(int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t k,
                      int64_t s, int64_t p, int withb, double tol) {
    int64_t Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
    int64_t ws = bd_conv2d_workspace_floats(Cin, H, W, k, s, p);
    pair x = mk(N * Cin * H * W, 1.0f), w = mk(Cout * Cin * k * k, 0.2f), b = mk(Cout, 1.0f);
    pair out = mk(N * Cout * Ho * Wo, 1.0f), dout = mk(N * Cout * Ho * Wo, 1.0f);
    pair dx = mk(N * Cin * H * W, 1.0f), dw = mk(Cout * Cin * k * k, 1.0f), db = mk(Cout, 1.0f);
    pair col = mk(ws > 0 ? ws : 1, 0.0f);
    char name[128];
    bd_conv2d_forward(out.h, col.h, x.h, w.h, withb ? b.h : NULL, N, Cin, H, W, Cout, k, s, p);
    OP(conv2d_forward, out.d, col.d, x.d, w.d, withb ? b.d : NULL, N, Cin, H, W, Cout, k, s, p);
    snprintf(name, sizeof name, "conv2d_forward N%lld Cin%lld %lldx%lld Cout%lld k%lld s%lld p%lld%s",
             (long long)N, (long long)Cin, (long long)H, (long long)W, (long long)Cout, (long long)k,
             (long long)s, (long long)p, withb ? "" : " nobias");
    cmp(name, &out, tol);
    bd_conv2d_backward(dx.h, dw.h, withb ? db.h : NULL, col.h, dout.h, x.h, w.h, N, Cin, H, W, Cout, k, s, p);
    OP(conv2d_backward, dx.d, dw.d, withb ? db.d : NULL, col.d, dout.d, x.d, w.d, N, Cin, H, W, Cout, k, s, p);
    cmp("  conv2d_backward dx +=", &dx, tol);
    cmp("  conv2d_backward dw +=", &dw, tol);
    cmp("  conv2d_backward db +=", &db, TOL_RED);
    drop(&x); drop(&w); drop(&b); drop(&out); drop(&dout); drop(&dx); drop(&dw); drop(&db); drop(&col);
}

static void test_conv2d(void) {
    conv_case(2, 3, 7, 5, 4, 3, 1, 1, 1, TOL_GEMM);
    conv_case(2, 3, 7, 5, 4, 3, 2, 1, 1, TOL_GEMM);
    conv_case(3, 5, 8, 8, 6, 3, 2, 1, 0, TOL_GEMM);
    conv_case(2, 6, 5, 9, 7, 1, 1, 0, 1, TOL_GEMM); /* 1x1 fast path */
    conv_case(1, 6, 5, 9, 7, 1, 1, 0, 1, TOL_GEMM); /* batch 1: plain GEMM */
    conv_case(2, 4, 6, 6, 3, 1, 2, 0, 1, TOL_GEMM); /* 1x1 stride 2: im2col path */
    conv_case(2, 2, 6, 7, 3, 5, 1, 2, 1, TOL_GEMM); /* 5x5 */
    conv_case(2, 3, 4, 4, 2, 3, 1, 0, 1, TOL_GEMM); /* no padding */
    conv_case(8, 64, 14, 14, 64, 3, 1, 1, 1, TOL_GEMM); /* UNet-sized */
    conv_case(4, 96, 28, 28, 32, 3, 1, 1, 1, TOL_GEMM); /* decoder level 0 */
}

static void gn_case(int64_t N, int64_t C, int64_t HW, int64_t G) {
    pair x = mk(N * C * HW, 2.0f), gamma = mk(C, 1.0f), beta = mk(C, 1.0f);
    pair out = mk(N * C * HW, 1.0f), mean = mk(N * G, 1.0f), rstd = mk(N * G, 1.0f);
    pair dout = mk(N * C * HW, 1.0f), dx = mk(N * C * HW, 1.0f), dg = mk(C, 1.0f), dbt = mk(C, 1.0f);
    char name[96];
    int64_t i;
    for (i = 0; i < x.n; i++) x.h[i] += 3.0f; /* a non-zero mean */
    bd_backend_upload(g_ctx, x.d, x.h, (size_t)x.n * sizeof(float));
    bd_groupnorm_forward(out.h, mean.h, rstd.h, x.h, gamma.h, beta.h, N, C, HW, G);
    OP(groupnorm_forward, out.d, mean.d, rstd.d, x.d, gamma.d, beta.d, N, C, HW, G);
    snprintf(name, sizeof name, "groupnorm_forward N%lld C%lld HW%lld G%lld", (long long)N,
             (long long)C, (long long)HW, (long long)G);
    cmp(name, &out, TOL_RED);
    cmp("  groupnorm mean", &mean, TOL_RED);
    cmp("  groupnorm rstd", &rstd, TOL_RED);
    bd_groupnorm_backward(dx.h, dg.h, dbt.h, dout.h, x.h, mean.h, rstd.h, gamma.h, N, C, HW, G);
    OP(groupnorm_backward, dx.d, dg.d, dbt.d, dout.d, x.d, mean.d, rstd.d, gamma.d, N, C, HW, G);
    cmp("  groupnorm_backward dx +=", &dx, TOL_RED);
    cmp("  groupnorm_backward dgamma +=", &dg, TOL_RED);
    cmp("  groupnorm_backward dbeta +=", &dbt, TOL_RED);
    drop(&x); drop(&gamma); drop(&beta); drop(&out); drop(&mean); drop(&rstd);
    drop(&dout); drop(&dx); drop(&dg); drop(&dbt);
}

static void test_groupnorm(void) {
    gn_case(2, 8, 12, 4);
    gn_case(3, 6, 49, 3);
    gn_case(2, 5, 7, 1);
    gn_case(2, 4, 9, 4);
    gn_case(16, 64, 196, 8); /* UNet-sized */
    gn_case(4, 32, 784, 8);
}

static void test_upsample_concat_add(void) {
    int64_t N = 3, C = 5, H = 4, W = 7, C2 = 3, HW = H * W, n = N * C * HW;
    pair x = mk(n, 1.0f), up = mk(4 * n, 1.0f), dup = mk(4 * n, 1.0f), dx = mk(n, 1.0f);
    pair b = mk(N * C2 * HW, 1.0f), cat = mk(N * (C + C2) * HW, 1.0f), dcat = mk(N * (C + C2) * HW, 1.0f);
    pair da = mk(n, 1.0f), db = mk(N * C2 * HW, 1.0f);
    pair e = mk(N * C, 1.0f), de = mk(N * C, 1.0f), y = mk(n, 1.0f), s = mk(n, 1.0f);
    bd_upsample2x_forward(up.h, x.h, N, C, H, W);
    OP(upsample2x_forward, up.d, x.d, N, C, H, W);
    cmp("upsample2x_forward", &up, TOL_EXACT);
    bd_upsample2x_backward(dx.h, dup.h, N, C, H, W);
    OP(upsample2x_backward, dx.d, dup.d, N, C, H, W);
    cmp("upsample2x_backward dx +=", &dx, TOL_EXACT);
    bd_concat_forward(cat.h, x.h, b.h, N, C, C2, HW);
    OP(concat_forward, cat.d, x.d, b.d, N, C, C2, HW);
    cmp("concat_forward", &cat, TOL_EXACT);
    bd_concat_backward(da.h, db.h, dcat.h, N, C, C2, HW);
    OP(concat_backward, da.d, db.d, dcat.d, N, C, C2, HW);
    cmp("concat_backward da +=", &da, TOL_EXACT);
    cmp("concat_backward db +=", &db, TOL_EXACT);
    bd_concat_backward(NULL, db.h, dcat.h, N, C, C2, HW);
    OP(concat_backward, NULL, db.d, dcat.d, N, C, C2, HW);
    cmp("concat_backward da=NULL db +=", &db, TOL_EXACT);
    bd_add_channel_forward(y.h, e.h, N, C, HW);
    OP(add_channel_forward, y.d, e.d, N, C, HW);
    cmp("add_channel_forward (in place)", &y, TOL_EXACT);
    bd_add_channel_backward(de.h, dx.h, N, C, HW);
    OP(add_channel_backward, de.d, dx.d, N, C, HW);
    cmp("add_channel_backward de +=", &de, TOL_RED);
    bd_add_forward(s.h, x.h, y.h, n);
    OP(add_forward, s.d, x.d, y.d, n);
    cmp("add_forward", &s, TOL_EXACT);
    bd_add_forward(s.h, s.h, y.h, n);
    OP(add_forward, s.d, s.d, y.d, n);
    cmp("add_forward out aliases a", &s, TOL_EXACT);
    bd_add_backward(da.h, y.h, s.h, n);
    OP(add_backward, da.d, y.d, s.d, n);
    cmp("add_backward da +=", &da, TOL_EXACT);
    cmp("add_backward db +=", &y, TOL_EXACT);
    drop(&x); drop(&up); drop(&dup); drop(&dx); drop(&b); drop(&cat); drop(&dcat);
    drop(&da); drop(&db); drop(&e); drop(&de); drop(&y); drop(&s);
}

static void att_case(int64_t N, int64_t C, int64_t HW, int64_t heads, double tol) {
    pair qkv = mk(N * 3 * C * HW, 1.0f), out = mk(N * C * HW, 1.0f), att = mk(N * heads * HW * HW, 1.0f);
    pair dout = mk(N * C * HW, 1.0f), dqkv = mk(N * 3 * C * HW, 1.0f), scr = mk(HW * HW, 0.0f);
    char name[96];
    bd_attention_forward(out.h, att.h, qkv.h, N, C, HW, heads);
    OP(attention_forward, out.d, att.d, qkv.d, N, C, HW, heads);
    snprintf(name, sizeof name, "attention_forward N%lld C%lld HW%lld heads%lld", (long long)N,
             (long long)C, (long long)HW, (long long)heads);
    cmp(name, &out, tol);
    cmp("  attention att (softmax cache)", &att, tol);
    bd_attention_backward(dqkv.h, scr.h, dout.h, qkv.h, att.h, N, C, HW, heads);
    OP(attention_backward, dqkv.d, scr.d, dout.d, qkv.d, att.d, N, C, HW, heads);
    cmp("  attention_backward dqkv +=", &dqkv, tol);
    drop(&qkv); drop(&out); drop(&att); drop(&dout); drop(&dqkv); drop(&scr);
}

static void test_attention(void) {
    att_case(2, 8, 9, 1, TOL_GEMM);
    att_case(3, 12, 16, 3, TOL_GEMM);
    att_case(2, 8, 49, 2, TOL_GEMM);
    att_case(1, 4, 70, 1, TOL_GEMM);
    att_case(16, 64, 49, 1, TOL_GEMM); /* UNet middle block */
    att_case(4, 32, 196, 4, TOL_GEMM);
}

static void test_embedding_mse(void) {
    int64_t N = 17, dim = 32, D = 301;
    pair c = mk_uniform(N, 0.0f, 1000.0f), emb = mk(N * dim, 1.0f), emb7 = mk(N * 7, 1.0f);
    pair p = mk(N * D, 1.0f), t = mk(N * D, 1.0f), w = mk_uniform(N, 0.1f, 5.0f), dp = mk(N * D, 1.0f);
    bd_timestep_embedding_forward(emb.h, c.h, N, dim);
    OP(timestep_embedding_forward, emb.d, c.d, N, dim);
    cmp("timestep_embedding dim 32", &emb, TOL_EXACT);
    bd_timestep_embedding_forward(emb7.h, c.h, N, 7);
    OP(timestep_embedding_forward, emb7.d, c.d, N, 7);
    cmp("timestep_embedding dim 7 (odd)", &emb7, TOL_EXACT);
    cmp_scalar("mse_forward w=NULL", OP(mse_forward, p.d, t.d, NULL, N, D), bd_mse_forward(p.h, t.h, NULL, N, D), TOL_RED);
    cmp_scalar("mse_forward weighted", OP(mse_forward, p.d, t.d, w.d, N, D), bd_mse_forward(p.h, t.h, w.h, N, D), TOL_RED);
    bd_mse_backward(dp.h, p.h, t.h, w.h, N, D);
    OP(mse_backward, dp.d, p.d, t.d, w.d, N, D);
    cmp("mse_backward weighted dpred +=", &dp, TOL_EXACT);
    bd_mse_backward(dp.h, p.h, t.h, NULL, N, D);
    OP(mse_backward, dp.d, p.d, t.d, NULL, N, D);
    cmp("mse_backward w=NULL dpred +=", &dp, TOL_EXACT);
    drop(&c); drop(&emb); drop(&emb7); drop(&p); drop(&t); drop(&w); drop(&dp);
}

static void test_vec_ops(void) {
    int64_t N = 9, D = 50, ldo = 60, ldx = 55, ldy = 70, n = 200001;
    pair out = mk(N * ldo, 1.0f), x = mk(N * ldx, 1.0f), y = mk(N * ldy, 1.0f);
    pair a = mk(N, 1.0f), b = mk(N, 1.0f);
    pair p = mk(n, 1.0f), g = mk(n, 1.0f), m = mk(n, 0.1f), v = mk_uniform(n, 0.0f, 0.1f), ema = mk(n, 1.0f);
    bd_vec_adam_args args;
    bd_vec_axpby(out.h, ldo, x.h, ldx, a.h, 0.5f, y.h, ldy, b.h, -2.0f, N, D);
    OP(vec_axpby, out.d, ldo, x.d, ldx, a.d, 0.5f, y.d, ldy, b.d, -2.0f, N, D);
    cmp("vec_axpby strided, per-row a and b", &out, TOL_EXACT);
    bd_vec_axpby(out.h, ldo, x.h, ldx, NULL, 3.0f, NULL, 0, NULL, 0.0f, N, D);
    OP(vec_axpby, out.d, ldo, x.d, ldx, NULL, 3.0f, NULL, 0, NULL, 0.0f, N, D);
    cmp("vec_axpby y=NULL", &out, TOL_EXACT);
    bd_vec_axpby(x.h, ldx, x.h, ldx, a.h, 1.0f, y.h, ldy, NULL, 0.25f, N, D);
    OP(vec_axpby, x.d, ldx, x.d, ldx, a.d, 1.0f, y.d, ldy, NULL, 0.25f, N, D);
    cmp("vec_axpby in place", &x, TOL_EXACT);
    bd_vec_fill(out.h, 0.125f, N * ldo);
    OP(vec_fill, out.d, 0.125f, N * ldo);
    cmp("vec_fill", &out, TOL_EXACT);
    args.lr = 1e-3; args.beta1 = 0.9; args.beta2 = 0.999; args.eps = 1e-8;
    args.weight_decay = 0.01; args.grad_scale = 0.7;
    args.bias_c1 = 1.0 - pow(0.9, 3); args.bias_c2 = 1.0 - pow(0.999, 3);
    bd_vec_adam(p.h, g.h, m.h, v.h, n, &args);
    OP(vec_adam, p.d, g.d, m.d, v.d, n, &args);
    cmp("vec_adam p", &p, TOL_EXACT);
    cmp("vec_adam m", &m, TOL_EXACT);
    cmp("vec_adam v", &v, TOL_EXACT);
    bd_vec_ema(ema.h, p.h, n, 0.999);
    OP(vec_ema, ema.d, p.d, n, 0.999);
    cmp("vec_ema", &ema, TOL_EXACT);
    cmp_scalar("vec_sumsq", OP(vec_sumsq, g.d, n), bd_vec_sumsq(g.h, n), TOL_RED);
    cmp_scalar("vec_sumsq n=1", OP(vec_sumsq, g.d, 1), bd_vec_sumsq(g.h, 1), TOL_RED);
    drop(&out); drop(&x); drop(&y); drop(&a); drop(&b); drop(&p); drop(&g); drop(&m); drop(&v); drop(&ema);
}

/* the same GEMM-heavy ops with TF32 on, looser tolerance */
static void test_tf32(void) {
    bd_result r = bd_cuda_set_tf32(g_ctx, 1);
    BDT_CHECKF(r == BD_SUCCESS, "set_tf32: %s", bd_context_message(g_ctx));
    conv_case(8, 64, 14, 14, 64, 3, 1, 1, 1, TOL_TF32);
    att_case(4, 32, 49, 1, TOL_TF32);
    r = bd_cuda_set_tf32(g_ctx, 0);
    BDT_CHECK(r == BD_SUCCESS);
}

/* deterministic: the same backward twice gives bitwise the same bits */
static void test_determinism(void) {
    int64_t N = 8, C = 64, HW = 196, G = 8, n = N * C * HW, i;
    pair x = mk(n, 1.0f), gamma = mk(C, 1.0f), beta = mk(C, 1.0f), out = mk(n, 1.0f);
    pair mean = mk(N * G, 1.0f), rstd = mk(N * G, 1.0f), dout = mk(n, 1.0f);
    pair dx1 = mk(n, 0.0f), dx2 = mk(n, 0.0f), dg1 = mk(C, 0.0f), dg2 = mk(C, 0.0f);
    float *h1 = (float *)malloc((size_t)n * sizeof(float)), *h2 = (float *)malloc((size_t)n * sizeof(float));
    int same = 1;
    OP(groupnorm_forward, out.d, mean.d, rstd.d, x.d, gamma.d, beta.d, N, C, HW, G);
    OP(groupnorm_backward, dx1.d, dg1.d, NULL, dout.d, x.d, mean.d, rstd.d, gamma.d, N, C, HW, G);
    OP(groupnorm_backward, dx2.d, dg2.d, NULL, dout.d, x.d, mean.d, rstd.d, gamma.d, N, C, HW, G);
    bd_backend_download(g_ctx, h1, dx1.d, (size_t)n * sizeof(float));
    bd_backend_download(g_ctx, h2, dx2.d, (size_t)n * sizeof(float));
    for (i = 0; i < n; i++) same = same && memcmp(&h1[i], &h2[i], sizeof(float)) == 0;
    bd_backend_download(g_ctx, h1, dg1.d, (size_t)C * sizeof(float));
    bd_backend_download(g_ctx, h2, dg2.d, (size_t)C * sizeof(float));
    for (i = 0; i < C; i++) same = same && memcmp(&h1[i], &h2[i], sizeof(float)) == 0;
    BDT_CHECKF(same, "groupnorm backward differs between two identical runs");
    free(h1); free(h2);
    drop(&x); drop(&gamma); drop(&beta); drop(&out); drop(&mean); drop(&rstd); drop(&dout);
    drop(&dx1); drop(&dx2); drop(&dg1); drop(&dg2);
}

/* errors come back as bd_result with a message, and the backend recovers */
static void test_errors(void) {
    void *p = NULL;
    pair a = mk(4, 1.0f);
    bd_result r;
    float dummy = 0.0f;
    r = bd_backend_alloc(g_ctx, (size_t)1 << 60, &p);
    BDT_CHECKF(r == BD_ERROR_OUT_OF_MEMORY, "huge alloc gave %s", bd_result_string(r));
    BDT_CHECK(p == NULL);
    printf("    huge alloc -> %s: %s\n", bd_result_string(r), bd_context_message(g_ctx));
    /* M beyond INT_MAX: recorded by the launcher, reported by sync */
    OP(sgemm, 0, 0, (int64_t)INT_MAX + 1, 1, 1, 1.0f, a.d, 1, a.d, 1, 0.0f, a.d, 1);
    r = bd_backend_sync(g_ctx);
    BDT_CHECKF(r == BD_ERROR_OVERFLOW, "oversized sgemm gave %s", bd_result_string(r));
    printf("    oversized sgemm -> %s: %s\n", bd_result_string(r), bd_context_message(g_ctx));
    r = bd_backend_sync(g_ctx);
    BDT_CHECK(r == BD_SUCCESS); /* cleared after being reported */
    OP(vec_fill, a.d, 2.0f, 4);
    bd_vec_fill(a.h, 2.0f, 4);
    cmp("vec_fill after a reported error", &a, TOL_EXACT);
    r = bd_cuda_init(g_ctx, 0);
    BDT_CHECK(r == BD_ERROR_STATE); /* already installed */
    r = bd_backend_download(g_ctx, &dummy, NULL, 4);
    BDT_CHECK(r == BD_ERROR_INVALID_ARGUMENT);
    drop(&a);
}

/* shutdown restores the CPU table; init again works */
static void test_shutdown_reinit(void) {
    bd_result r;
    bd_cuda_shutdown(g_ctx);
    BDT_CHECK(g_ctx->backend == bd_backend_cpu());
    BDT_CHECK(!bd_backend_on_device(g_ctx));
    r = bd_cuda_init(g_ctx, 0);
    BDT_CHECKF(r == BD_SUCCESS, "re-init: %s", bd_context_message(g_ctx));
    BDT_CHECK(bd_backend_on_device(g_ctx));
    BDT_CHECK(strcmp(g_ctx->backend->name, "cuda") == 0);
}

int main(void) {
    bd_context_config cc = bd_context_config_init();
    bd_result r;
    char why[256];
    int ndev = bd_cuda_probe(why, sizeof why);
    (void)bdt_close_ratio;
    if (ndev <= 0) {
        printf("test_cuda: no GPU, skipped (%s)\n", why);
        printf("test_cuda: 0 passed, 0 failed\n");
        return 0;
    }
    if (bd_context_init(&cc, &g_ctx) != BD_SUCCESS) return 1;
    r = bd_cuda_init(g_ctx, 0);
    if (r != BD_SUCCESS) {
        printf("test_cuda: bd_cuda_init failed: %s (%s)\n", bd_result_string(r), bd_context_message(g_ctx));
        printf("test_cuda: 0 passed, 1 failed\n");
        bd_context_free(g_ctx);
        return 1;
    }
    g_rng = bd_rng_init(1234);
    BDT_RUN(test_sgemm);
    BDT_RUN(test_linear);
    BDT_RUN(test_silu);
    BDT_RUN(test_conv2d);
    BDT_RUN(test_groupnorm);
    BDT_RUN(test_upsample_concat_add);
    BDT_RUN(test_attention);
    BDT_RUN(test_embedding_mse);
    BDT_RUN(test_vec_ops);
    BDT_RUN(test_tf32);
    BDT_RUN(test_determinism);
    BDT_RUN(test_errors);
    BDT_RUN(test_shutdown_reinit);
    printf("test_cuda: worst nmse/tol over all checks = %.3g\n", g_worst_ratio);
    bd_context_free(g_ctx); /* releases the CUDA backend too */
    return BDT_SUMMARY("test_cuda");
}
