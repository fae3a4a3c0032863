/* test_layers.c - finite-difference gradient checks of every layer backward.

   For a layer y = f(x, params) and a fixed random R (same shape as y) the test
   loss is L = sum(R * y), accumulated in double.  Its gradient with respect to
   any input or parameter is exactly what the backward kernel produces when it
   is fed dout = R.  The numerical gradient uses the fourth-order central
   stencil
       dL/dp ~ (8 (L(p+h) - L(p-h)) - (L(p+2h) - L(p-2h))) / (12 h)
   with h = FD_H * max(1, |p|), FD_H = 0.05: truncation error O(h^4) ~ 1e-6
   (exactly 0 for the layers that are linear in the perturbed tensor), so what is left
   is float32 rounding of the forward pass divided by h.  Every coordinate is
   compared (a random subset of FD_MAX_COORDS for larger tensors) with
       rel = |a - n| / max(|a| + |n|, FD_FLOOR)
   and a tensor fails when its worst rel exceeds FD_TOL.

   The accumulation rule (every backward adds into its gradients) is checked
   by running backward a second time without zeroing: every gradient must
   double.  A second check pre-fills gradients with garbage G and expects
   G + grad. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <stdlib.h>

#define FD_TOL 2e-3
#define FD_H 5e-2
#define FD_FLOOR 1e-2
#define FD_MAX_COORDS 300
#define ACC_TOL 1e-5

/* ---- a tiny "layer under test" description ------------------------------ */
#define MAXT 4
typedef struct layer_case {
    const char *name;
    int ntens;                 /* differentiable tensors (inputs, params) */
    const char *tname[MAXT];
    float *t[MAXT];            /* their values */
    float *g[MAXT];            /* their gradients (backward writes here) */
    int64_t tn[MAXT];
    float *out, *R;
    int64_t nout;
    void (*forward)(struct layer_case *lc);  /* writes lc->out from lc->t */
    void (*backward)(struct layer_case *lc); /* grads += from lc->R */
    void *ud;                                /* layer-specific dims/caches */
    double tol;                              /* 0: FD_TOL */
} layer_case;

static double g_worst_layer;
/* worst error per layer kind (the first word of a case name) */
#define MAXKINDS 16
static char g_kind[MAXKINDS][24];
static double g_kind_worst[MAXKINDS];
static int g_nkinds;

static void note_kind(const char *name, double worst) {
    char k[24];
    int i = 0;
    while (name[i] && name[i] != ' ' && i < 23) { k[i] = name[i]; i++; }
    k[i] = 0;
    for (i = 0; i < g_nkinds; i++)
        if (strcmp(g_kind[i], k) == 0) break;
    if (i == g_nkinds) {
        if (g_nkinds == MAXKINDS) return;
        strcpy(g_kind[g_nkinds], k);
        g_kind_worst[g_nkinds++] = 0.0;
    }
    if (worst > g_kind_worst[i]) g_kind_worst[i] = worst;
}

static double lc_loss(layer_case *lc) {
    int64_t i;
    double s = 0.0;
    lc->forward(lc);
    for (i = 0; i < lc->nout; i++) s += (double)lc->R[i] * (double)lc->out[i];
    return s;
}

static float *fill_normal(bd_rng *rng, int64_t n, float scale) {
    float *p = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int64_t i;
    bd_rng_normal(rng, p, n);
    for (i = 0; i < n; i++) p[i] *= scale;
    return p;
}

static float *zeros(int64_t n) { return (float *)calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

static void lc_add(layer_case *lc, const char *name, float *val, int64_t n) {
    lc->tname[lc->ntens] = name;
    lc->t[lc->ntens] = val;
    lc->g[lc->ntens] = zeros(n);
    lc->tn[lc->ntens] = n;
    lc->ntens++;
}

static void lc_zero_grads(layer_case *lc) {
    int k;
    for (k = 0; k < lc->ntens; k++) memset(lc->g[k], 0, (size_t)lc->tn[k] * sizeof(float));
}

/* Runs every check on one prepared case; frees the tensors afterwards. */
static void lc_check(layer_case *lc, bd_rng *rng) {
    int k;
    double worst_all = 0.0;
    lc->R = fill_normal(rng, lc->nout, 1.0f);
    lc_zero_grads(lc);
    lc->forward(lc);
    lc->backward(lc);
    for (k = 0; k < lc->ntens; k++) {
        int64_t n = lc->tn[k], c, ncheck = n < FD_MAX_COORDS ? n : FD_MAX_COORDS;
        double worst = 0.0, maxa = 0.0;
        for (c = 0; c < ncheck; c++) {
            int64_t i = n <= FD_MAX_COORDS ? c : (int64_t)(bd_rng_u64(rng) % (uint64_t)n);
            float p0 = lc->t[k][i];
            double h = FD_H * (fabs(p0) > 1.0 ? fabs(p0) : 1.0), lp1, lm1, lp2, lm2, num, a, rel,
                   hp, hm;
            /* the actual step sizes in float, so the stencil uses the real h */
            lc->t[k][i] = (float)(p0 + h); hp = (double)lc->t[k][i] - p0; lp1 = lc_loss(lc);
            lc->t[k][i] = (float)(p0 - h); hm = p0 - (double)lc->t[k][i]; lm1 = lc_loss(lc);
            lc->t[k][i] = (float)(p0 + 2 * h); lp2 = lc_loss(lc);
            lc->t[k][i] = (float)(p0 - 2 * h); lm2 = lc_loss(lc);
            lc->t[k][i] = p0;
            h = 0.5 * (hp + hm);
            num = (8.0 * (lp1 - lm1) - (lp2 - lm2)) / (12.0 * h);
            a = lc->g[k][i];
            rel = fabs(a - num) / ((fabs(a) + fabs(num)) > FD_FLOOR ? (fabs(a) + fabs(num)) : FD_FLOOR);
            if (rel > worst) worst = rel;
            if (fabs(a) > maxa) maxa = fabs(a);
        }
        printf("  %-34s d%-6s n=%-5lld checked=%-4lld max|g|=%-9.3g worst rel err %.3g\n",
               lc->name, lc->tname[k], (long long)n, (long long)ncheck, maxa, worst);
        BDT_CHECKF(worst <= (lc->tol > 0 ? lc->tol : FD_TOL), "%s d%s: worst rel err %.3g > %.3g",
                   lc->name, lc->tname[k], worst, lc->tol > 0 ? lc->tol : FD_TOL);
        BDT_CHECKF(maxa > 0.0, "%s d%s: gradient is identically zero", lc->name, lc->tname[k]);
        if (worst > worst_all) worst_all = worst;
    }
    if (worst_all > g_worst_layer) g_worst_layer = worst_all;
    note_kind(lc->name, worst_all);
    /* accumulation: backward twice doubles; then garbage + grad */
    lc->forward(lc);
    {
        float *once[MAXT], *garb[MAXT];
        for (k = 0; k < lc->ntens; k++) {
            once[k] = (float *)malloc((size_t)lc->tn[k] * sizeof(float));
            memcpy(once[k], lc->g[k], (size_t)lc->tn[k] * sizeof(float));
        }
        lc->backward(lc);
        for (k = 0; k < lc->ntens; k++) {
            int64_t i;
            double worst = 0.0;
            for (i = 0; i < lc->tn[k]; i++) {
                double e = fabs((double)lc->g[k][i] - 2.0 * once[k][i]) / (1e-6 + 2.0 * fabs(once[k][i]));
                if (e > worst) worst = e;
            }
            BDT_CHECKF(worst <= ACC_TOL, "%s d%s: second backward does not double (%.3g)", lc->name,
                       lc->tname[k], worst);
        }
        for (k = 0; k < lc->ntens; k++) {
            garb[k] = fill_normal(rng, lc->tn[k], 3.0f);
            memcpy(lc->g[k], garb[k], (size_t)lc->tn[k] * sizeof(float));
        }
        lc->backward(lc);
        for (k = 0; k < lc->ntens; k++) {
            int64_t i;
            double worst = 0.0;
            for (i = 0; i < lc->tn[k]; i++) {
                double want = (double)garb[k][i] + once[k][i];
                double e = fabs((double)lc->g[k][i] - want) / (1e-5 + fabs(garb[k][i]) + fabs(once[k][i]));
                if (e > worst) worst = e;
            }
            BDT_CHECKF(worst <= ACC_TOL, "%s d%s: backward does not add into a prefilled gradient (%.3g)",
                       lc->name, lc->tname[k], worst);
            free(once[k]);
            free(garb[k]);
        }
    }
    for (k = 0; k < lc->ntens; k++) {
        free(lc->t[k]);
        free(lc->g[k]);
    }
    free(lc->out);
    free(lc->R);
}

/* ---- linear ------------------------------------------------------------- */
typedef struct { int64_t N, In, Out; } lin_dims;
static void lin_f(layer_case *lc) {
    lin_dims *d = (lin_dims *)lc->ud;
    bd_linear_forward(lc->out, lc->t[0], lc->t[1], lc->t[2], d->N, d->In, d->Out);
}
static void lin_b(layer_case *lc) {
    lin_dims *d = (lin_dims *)lc->ud;
    bd_linear_backward(lc->g[0], lc->g[1], lc->g[2], lc->R, lc->t[0], lc->t[1], d->N, d->In, d->Out);
}
static void test_linear_grad(void) {
    bd_rng rng = bd_rng_init(101);
    lin_dims d = {3, 7, 5};
    layer_case lc;
    memset(&lc, 0, sizeof lc);
    lc.name = "linear 3x7->5";
    lc.ud = &d; lc.forward = lin_f; lc.backward = lin_b;
    lc_add(&lc, "x", fill_normal(&rng, d.N * d.In, 1.0f), d.N * d.In);
    lc_add(&lc, "w", fill_normal(&rng, d.Out * d.In, 0.5f), d.Out * d.In);
    lc_add(&lc, "b", fill_normal(&rng, d.Out, 0.5f), d.Out);
    lc.nout = d.N * d.Out; lc.out = zeros(lc.nout);
    lc_check(&lc, &rng);
}

/* ---- silu --------------------------------------------------------------- */
static void silu_f(layer_case *lc) { bd_silu_forward(lc->out, lc->t[0], lc->nout); }
static void silu_b(layer_case *lc) { bd_silu_backward(lc->g[0], lc->R, lc->t[0], lc->nout); }
static void test_silu_grad(void) {
    bd_rng rng = bd_rng_init(102);
    layer_case lc;
    memset(&lc, 0, sizeof lc);
    lc.name = "silu n=37";
    lc.forward = silu_f; lc.backward = silu_b;
    lc.nout = 37;
    lc_add(&lc, "x", fill_normal(&rng, lc.nout, 2.0f), lc.nout);
    lc.out = zeros(lc.nout);
    lc_check(&lc, &rng);
}

/* ---- conv2d ------------------------------------------------------------- */
typedef struct { int64_t N, Cin, H, W, Cout, k, s, p; float *col; } conv_dims;
/* the loss of the finite differences: the library's forward, except on the
   16-channel case (the Winograd one), where it is the direct kernel
   (bd__conv2d_fwd wg 0): F(4x4, 3x3)'s forward rounding (~5e-6 of max|out|,
   compared with the reference in test_kernels_fast) divided by the
   stencil's step showed as 2.1e-2 in dx there (tolerance 5e-3); with the
   direct forward it is 8.9e-4 (F(2x2) dx, what bd__wg_rule runs) and 9.0e-4
   (F(4x4) dx), as with the direct dx.  The backward under test is the
   library's. */
static void conv_f(layer_case *lc) {
    conv_dims *d = (conv_dims *)lc->ud;
    bd__conv2d_fwd(lc->out, d->col, lc->t[0], lc->t[1], lc->t[2], d->N, d->Cin, d->H, d->W, d->Cout, d->k,
                   d->s, d->p, d->Cin >= 16 ? 0 : -1);
}
static void conv_b(layer_case *lc) {
    conv_dims *d = (conv_dims *)lc->ud;
    bd_conv2d_backward(lc->g[0], lc->g[1], lc->g[2], d->col, lc->R, lc->t[0], lc->t[1], d->N,
                       d->Cin, d->H, d->W, d->Cout, d->k, d->s, d->p);
}
static void conv_case(bd_rng *rng, int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout,
                      int64_t k, int64_t s, int64_t p) {
    conv_dims d;
    layer_case lc;
    char name[96];
    int64_t Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
    int64_t ws = bd_conv2d_workspace_floats(Cin, H, W, k, s, p);
    float scale = (float)(1.0 / sqrt((double)(Cin * k * k)));
    d.N = N; d.Cin = Cin; d.H = H; d.W = W; d.Cout = Cout; d.k = k; d.s = s; d.p = p;
    if (k == 3 && s == 1 && p == 1 && (W + 1) / 2 <= 32) {
        /* the largest of one sample's im2col, 4 Winograd F(4x4) slots of 36 x (Cin*32 + 16)
           and (from 16 input channels) 2 slots of the Winograd weight gradient for
           cr = half the input channels rounded up to 8: V 36 x (cr*32 + 16), Mt
           36 x (32*32 + 16), dout rows 16 x tiles per row x 32, dU 2 x 36 x cr x 32 */
        int64_t wg = 4 * 36 * (Cin * 32 + 16), im = Cin * k * k * Ho * Wo, cr = ((Cin + 1) / 2 + 7) / 8 * 8;
        int64_t dwg = Cin >= 16 ? 2 * (36 * (cr * 32 + 16) + 36 * (32 * 32 + 16) + 16 * ((W + 3) / 4) * 32 +
                                       2 * 36 * cr * 32)
                                : 0;
        if (dwg > wg) wg = dwg;
        BDT_CHECK(ws == (wg > im ? wg : im));
    } else {
        /* 1x1: 4 per-thread slots of the direct dw kernel (dout rows of 32 channels
           transposed, 9 x 32 sums per group of 9 input channels) */
        BDT_CHECK(ws == ((k == 1 && s == 1 && p == 0) ? 4 * (H * W * 32 + (Cin + 8) / 9 * 288)
                                                       : Cin * k * k * Ho * Wo));
    }
    d.col = ws ? (float *)malloc((size_t)ws * sizeof(float)) : NULL;
    memset(&lc, 0, sizeof lc);
    snprintf(name, sizeof name, "conv2d %lldx%lldx%lldx%lld k%lld s%lld p%lld ->%lld",
             (long long)N, (long long)Cin, (long long)H, (long long)W, (long long)k, (long long)s,
             (long long)p, (long long)Cout);
    lc.name = name; lc.ud = &d; lc.forward = conv_f; lc.backward = conv_b;
    /* 16 -> 16 channels (the Winograd case): the finite differences of the
       float forward are noisier than on the few-channel cases, whatever
       the kernel: dx measured 2.5e-3 with the portable implicit-GEMM
       forward and backward (Winograd switched off), 2.6e-3 with Winograd,
       8.9e-4 with the AVX-512 direct forward.  So 5e-3 here; Winograd's
       forward and dx are compared with the reference kernel at 5e-6
       (F(2x2)) and 2e-5 (F(4x4)) in test_kernels_fast */
    if (Cin >= 16) lc.tol = 5e-3;
    lc_add(&lc, "x", fill_normal(rng, N * Cin * H * W, 1.0f), N * Cin * H * W);
    lc_add(&lc, "w", fill_normal(rng, Cout * Cin * k * k, scale), Cout * Cin * k * k);
    lc_add(&lc, "b", fill_normal(rng, Cout, 0.5f), Cout);
    lc.nout = N * Cout * Ho * Wo; lc.out = zeros(lc.nout);
    lc_check(&lc, rng);
    free(d.col);
}
static void test_conv2d_grad(void) {
    bd_rng rng = bd_rng_init(103);
    conv_case(&rng, 2, 3, 5, 7, 4, 3, 1, 1);  /* 3x3 same, odd sizes */
    conv_case(&rng, 2, 3, 7, 6, 5, 3, 2, 1);  /* 3x3 stride 2 (Down) */
    conv_case(&rng, 1, 2, 8, 8, 3, 3, 2, 1);  /* stride 2, even size */
    conv_case(&rng, 2, 3, 5, 4, 2, 3, 1, 0);  /* valid */
    conv_case(&rng, 2, 5, 3, 5, 4, 1, 1, 0);  /* 1x1 fast path */
    conv_case(&rng, 1, 3, 5, 5, 2, 1, 2, 0);  /* 1x1 stride 2 (im2col path) */
    conv_case(&rng, 1, 2, 4, 3, 3, 3, 1, 2);  /* padding larger than needed */
    conv_case(&rng, 2, 16, 16, 15, 16, 3, 1, 1); /* Winograd (bd__wg_rule: F(4x4) forward, F(2x2) dx) */
}

/* ---- groupnorm ---------------------------------------------------------- */
typedef struct { int64_t N, C, HW, G; float *mean, *rstd; } gn_dims;
static void gn_f(layer_case *lc) {
    gn_dims *d = (gn_dims *)lc->ud;
    bd_groupnorm_forward(lc->out, d->mean, d->rstd, lc->t[0], lc->t[1], lc->t[2], d->N, d->C,
                         d->HW, d->G);
}
static void gn_b(layer_case *lc) {
    gn_dims *d = (gn_dims *)lc->ud;
    bd_groupnorm_backward(lc->g[0], lc->g[1], lc->g[2], lc->R, lc->t[0], d->mean, d->rstd,
                          lc->t[1], d->N, d->C, d->HW, d->G);
}
static void gn_case(bd_rng *rng, int64_t N, int64_t C, int64_t HW, int64_t G, float xs, float xoff) {
    gn_dims d;
    layer_case lc;
    char name[96];
    int64_t i;
    float *x;
    d.N = N; d.C = C; d.HW = HW; d.G = G;
    d.mean = zeros(N * G); d.rstd = zeros(N * G);
    memset(&lc, 0, sizeof lc);
    snprintf(name, sizeof name, "groupnorm N%lld C%lld HW%lld G%lld", (long long)N, (long long)C,
             (long long)HW, (long long)G);
    lc.name = name; lc.ud = &d; lc.forward = gn_f; lc.backward = gn_b;
    x = fill_normal(rng, N * C * HW, xs);
    for (i = 0; i < N * C * HW; i++) x[i] += xoff;
    lc_add(&lc, "x", x, N * C * HW);
    lc_add(&lc, "gamma", fill_normal(rng, C, 0.5f), C);
    for (i = 0; i < C; i++) lc.t[1][i] += 1.0f;
    lc_add(&lc, "beta", fill_normal(rng, C, 0.5f), C);
    lc.nout = N * C * HW; lc.out = zeros(lc.nout);
    lc_check(&lc, rng);
    free(d.mean); free(d.rstd);
}
static void test_groupnorm_grad(void) {
    bd_rng rng = bd_rng_init(104);
    gn_case(&rng, 2, 6, 5, 3, 1.0f, 0.0f);
    gn_case(&rng, 2, 4, 7, 1, 2.0f, 0.5f);
    gn_case(&rng, 1, 8, 9, 8, 1.0f, 0.0f);  /* one channel per group */
    gn_case(&rng, 2, 6, 4, 2, 3.0f, 1.0f);
}

/* ---- upsample2x --------------------------------------------------------- */
typedef struct { int64_t N, C, H, W; } up_dims;
static void up_f(layer_case *lc) {
    up_dims *d = (up_dims *)lc->ud;
    bd_upsample2x_forward(lc->out, lc->t[0], d->N, d->C, d->H, d->W);
}
static void up_b(layer_case *lc) {
    up_dims *d = (up_dims *)lc->ud;
    bd_upsample2x_backward(lc->g[0], lc->R, d->N, d->C, d->H, d->W);
}
static void test_upsample_grad(void) {
    bd_rng rng = bd_rng_init(105);
    up_dims d = {2, 3, 3, 5};
    layer_case lc;
    memset(&lc, 0, sizeof lc);
    lc.name = "upsample2x 2x3x3x5"; lc.ud = &d; lc.forward = up_f; lc.backward = up_b;
    lc_add(&lc, "x", fill_normal(&rng, 2 * 3 * 3 * 5, 1.0f), 2 * 3 * 3 * 5);
    lc.nout = 2 * 3 * 6 * 10; lc.out = zeros(lc.nout);
    lc_check(&lc, &rng);
}

/* ---- concat ------------------------------------------------------------- */
typedef struct { int64_t N, C1, C2, HW; } cat_dims;
static void cat_f(layer_case *lc) {
    cat_dims *d = (cat_dims *)lc->ud;
    bd_concat_forward(lc->out, lc->t[0], lc->t[1], d->N, d->C1, d->C2, d->HW);
}
static void cat_b(layer_case *lc) {
    cat_dims *d = (cat_dims *)lc->ud;
    bd_concat_backward(lc->g[0], lc->g[1], lc->R, d->N, d->C1, d->C2, d->HW);
}
static void test_concat_grad(void) {
    bd_rng rng = bd_rng_init(106);
    cat_dims d = {2, 3, 2, 5};
    layer_case lc;
    memset(&lc, 0, sizeof lc);
    lc.name = "concat 2x(3+2)x5"; lc.ud = &d; lc.forward = cat_f; lc.backward = cat_b;
    lc_add(&lc, "a", fill_normal(&rng, 2 * 3 * 5, 1.0f), 2 * 3 * 5);
    lc_add(&lc, "b", fill_normal(&rng, 2 * 2 * 5, 1.0f), 2 * 2 * 5);
    lc.nout = 2 * 5 * 5; lc.out = zeros(lc.nout);
    lc_check(&lc, &rng);
}

/* ---- add_channel (out = x + e[:, :, None]; x passes through) -------------- */
typedef struct { int64_t N, C, HW; } ac_dims;
static void ac_f(layer_case *lc) {
    ac_dims *d = (ac_dims *)lc->ud;
    memcpy(lc->out, lc->t[0], (size_t)lc->nout * sizeof(float));
    bd_add_channel_forward(lc->out, lc->t[1], d->N, d->C, d->HW);
}
static void ac_b(layer_case *lc) {
    ac_dims *d = (ac_dims *)lc->ud;
    bd_add_backward(lc->g[0], NULL, lc->R, lc->nout); /* the caller's pass-through */
    bd_add_channel_backward(lc->g[1], lc->R, d->N, d->C, d->HW);
}
static void test_add_channel_grad(void) {
    bd_rng rng = bd_rng_init(107);
    ac_dims d = {2, 3, 7};
    layer_case lc;
    memset(&lc, 0, sizeof lc);
    lc.name = "add_channel 2x3x7"; lc.ud = &d; lc.forward = ac_f; lc.backward = ac_b;
    lc_add(&lc, "x", fill_normal(&rng, 2 * 3 * 7, 1.0f), 2 * 3 * 7);
    lc_add(&lc, "e", fill_normal(&rng, 2 * 3, 1.0f), 2 * 3);
    lc.nout = 2 * 3 * 7; lc.out = zeros(lc.nout);
    lc_check(&lc, &rng);
}

/* ---- add ---------------------------------------------------------------- */
static void add_f(layer_case *lc) { bd_add_forward(lc->out, lc->t[0], lc->t[1], lc->nout); }
static void add_b(layer_case *lc) { bd_add_backward(lc->g[0], lc->g[1], lc->R, lc->nout); }
static void test_add_grad(void) {
    bd_rng rng = bd_rng_init(108);
    layer_case lc;
    memset(&lc, 0, sizeof lc);
    lc.name = "add n=23"; lc.forward = add_f; lc.backward = add_b;
    lc.nout = 23;
    lc_add(&lc, "a", fill_normal(&rng, 23, 1.0f), 23);
    lc_add(&lc, "b", fill_normal(&rng, 23, 1.0f), 23);
    lc.out = zeros(lc.nout);
    lc_check(&lc, &rng);
}

/* ---- attention ---------------------------------------------------------- */
typedef struct { int64_t N, C, HW, heads; float *att, *scratch; } att_dims;
static void att_f(layer_case *lc) {
    att_dims *d = (att_dims *)lc->ud;
    bd_attention_forward(lc->out, d->att, lc->t[0], d->N, d->C, d->HW, d->heads);
}
static void att_b(layer_case *lc) {
    att_dims *d = (att_dims *)lc->ud;
    bd_attention_backward(lc->g[0], d->scratch, lc->R, lc->t[0], d->att, d->N, d->C, d->HW,
                          d->heads);
}
static void att_case(bd_rng *rng, int64_t N, int64_t C, int64_t HW, int64_t heads, float qs) {
    att_dims d;
    layer_case lc;
    char name[96];
    d.N = N; d.C = C; d.HW = HW; d.heads = heads;
    d.att = zeros(N * heads * HW * HW);
    d.scratch = zeros(HW * HW);
    memset(&lc, 0, sizeof lc);
    snprintf(name, sizeof name, "attention N%lld C%lld HW%lld heads%lld", (long long)N,
             (long long)C, (long long)HW, (long long)heads);
    lc.name = name; lc.ud = &d; lc.forward = att_f; lc.backward = att_b;
    lc_add(&lc, "qkv", fill_normal(rng, N * 3 * C * HW, qs), N * 3 * C * HW);
    lc.nout = N * C * HW; lc.out = zeros(lc.nout);
    lc_check(&lc, rng);
    free(d.att); free(d.scratch);
}
static void test_attention_grad(void) {
    bd_rng rng = bd_rng_init(109);
    att_case(&rng, 2, 4, 5, 1, 1.0f);
    att_case(&rng, 1, 6, 7, 2, 1.0f);
    att_case(&rng, 2, 6, 4, 3, 1.5f);
    att_case(&rng, 1, 4, 9, 4, 2.0f);  /* Ch = 1, peaky softmax */
}

/* ---- mse ---------------------------------------------------------------- */
typedef struct { int64_t N, D; int weighted; float *target, *w; } mse_dims;
static void mse_f(layer_case *lc) {
    mse_dims *d = (mse_dims *)lc->ud;
    /* scalar output: out[0] = loss (R is a random scalar) */
    lc->out[0] = (float)bd_mse_forward(lc->t[0], d->target, d->weighted ? d->w : NULL, d->N, d->D);
}
static void mse_b(layer_case *lc) {
    mse_dims *d = (mse_dims *)lc->ud;
    int64_t i, n = d->N * d->D;
    float *tmp = zeros(n);
    bd_mse_backward(tmp, lc->t[0], d->target, d->weighted ? d->w : NULL, d->N, d->D);
    for (i = 0; i < n; i++) lc->g[0][i] += lc->R[0] * tmp[i];
    free(tmp);
}
static void mse_case(bd_rng *rng, int weighted) {
    mse_dims d;
    layer_case lc;
    int64_t i;
    d.N = 3; d.D = 11; d.weighted = weighted;
    d.target = fill_normal(rng, d.N * d.D, 1.0f);
    d.w = fill_normal(rng, d.N, 1.0f);
    for (i = 0; i < d.N; i++) d.w[i] = (float)fabs(d.w[i]) + 0.1f;
    memset(&lc, 0, sizeof lc);
    lc.name = weighted ? "mse weighted 3x11" : "mse 3x11"; lc.ud = &d;
    lc.forward = mse_f; lc.backward = mse_b;
    lc_add(&lc, "pred", fill_normal(rng, d.N * d.D, 1.0f), d.N * d.D);
    lc.nout = 1; lc.out = zeros(1);
    lc_check(&lc, rng);
    free(d.target); free(d.w);
}
static void test_mse_grad(void) {
    bd_rng rng = bd_rng_init(110);
    mse_case(&rng, 0);
    mse_case(&rng, 1);
}

/* ---- forward-only sanity that FD cannot see ---------------------------- */
static void test_mse_value(void) {
    float p[6] = {1, 2, 3, 0, 0, 0}, t[6] = {0, 0, 0, 1, 1, 1}, w[2] = {2.0f, 0.5f};
    /* sample 0: mean(1,4,9)=14/3, sample 1: mean(1,1,1)=1 */
    double l = bd_mse_forward(p, t, NULL, 2, 3), lw = bd_mse_forward(p, t, w, 2, 3);
    BDT_CHECK(fabs(l - (14.0 / 3.0 + 1.0) / 2.0) < 1e-12);
    BDT_CHECK(fabs(lw - (2.0 * 14.0 / 3.0 + 0.5) / 2.0) < 1e-12);
}

static void test_timestep_embedding(void) {
    float c[3] = {0.0f, 1.0f, 999.0f}, out[3 * 8];
    int64_t n, i;
    double worst = 0.0;
    bd_timestep_embedding_forward(out, c, 3, 8);
    for (n = 0; n < 3; n++)
        for (i = 0; i < 4; i++) {
            double f = pow(10000.0, -(double)i / 4.0);
            worst = fmax(worst, fabs(out[n * 8 + i] - cos(c[n] * f)));
            worst = fmax(worst, fabs(out[n * 8 + 4 + i] - sin(c[n] * f)));
        }
    BDT_CHECKF(worst < 1e-6, "embedding off by %.3g", worst);
    BDT_CHECK(out[0] == 1.0f && out[4] == 0.0f);
}

static void test_softmax_stability(void) {
    /* huge logits must not overflow: q = 100, k = +-100 gives logits 1e4 */
    float qkv[3 * 2] = {100.0f, 100.0f, 100.0f, -100.0f, 1.0f, 2.0f}, out[2], att[4];
    int64_t i;
    bd_attention_forward(out, att, qkv, 1, 1, 2, 1);
    for (i = 0; i < 4; i++) BDT_CHECK(att[i] == att[i] && att[i] >= 0.0f && att[i] <= 1.0f);
    BDT_CHECK(fabs(att[0] - 1.0f) < 1e-6 && fabs(att[2] - 1.0f) < 1e-6);
    BDT_CHECK(fabs(out[0] - 1.0f) < 1e-5 && fabs(out[1] - 1.0f) < 1e-5);
}

static void test_groupnorm_large_offset(void) {
    /* mean 1e4, std 1: a one-pass float variance would lose everything */
    float x[64], out[64], g[2] = {1, 1}, b[2] = {0, 0}, mean[1], rstd[1];
    bd_rng rng = bd_rng_init(7);
    int64_t i;
    double s = 0, v = 0, m;
    bd_rng_normal(&rng, x, 64);
    for (i = 0; i < 64; i++) { x[i] += 10000.0f; s += x[i]; }
    m = s / 64;
    for (i = 0; i < 64; i++) v += (x[i] - m) * (x[i] - m);
    v /= 64;
    bd_groupnorm_forward(out, mean, rstd, x, g, b, 1, 2, 32, 1);
    BDT_CHECKF(fabs(rstd[0] - 1.0 / sqrt(v + 1e-5)) < 1e-4 / sqrt(v), "rstd %g vs %g", rstd[0],
               1.0 / sqrt(v + 1e-5));
}

int main(void) {
    (void)bdt_close_ratio;
    BDT_RUN(test_linear_grad);
    BDT_RUN(test_silu_grad);
    BDT_RUN(test_conv2d_grad);
    BDT_RUN(test_groupnorm_grad);
    BDT_RUN(test_upsample_grad);
    BDT_RUN(test_concat_grad);
    BDT_RUN(test_add_channel_grad);
    BDT_RUN(test_add_grad);
    BDT_RUN(test_attention_grad);
    BDT_RUN(test_mse_grad);
    BDT_RUN(test_mse_value);
    BDT_RUN(test_timestep_embedding);
    BDT_RUN(test_softmax_stability);
    BDT_RUN(test_groupnorm_large_offset);
    {
        int i;
        printf("worst relative gradient error per layer:\n");
        for (i = 0; i < g_nkinds; i++) printf("  %-12s %.3g\n", g_kind[i], g_kind_worst[i]);
    }
    printf("worst relative gradient error over all layers: %.3g (tolerance %.0e, floor %.0e)\n",
           g_worst_layer, FD_TOL, FD_FLOOR);
    return BDT_SUMMARY("test_layers");
}
