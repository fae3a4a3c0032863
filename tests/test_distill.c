/* test_distill.c - B-DENSE distillation (docs/spec.md sec. 5): branch targets, the
   multi-branch loss and its gradient, branch-weight schedules. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <math.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- helpers */
/* a (alpha, sigma) pair on the unit circle from a logSNR value */
static void ab_from_logsnr(double l, double *a, double *s) {
    *a = sqrt(1.0 / (1.0 + exp(-l)));
    *s = sqrt(1.0 / (1.0 + exp(l)));
}

static double frand(bd_rng *r, double lo, double hi) { return lo + (hi - lo) * bd_rng_uniform(r); }

/* ------------------------------------------------------------------ tests */
/* x_tilde of docs/spec.md sec. 5, computed here in double, and its defining property:
   a DDIM jump from (z_t, t) with x_hat = x_tilde lands on z_s. */
static void test_target_formula(void) {
    enum { N = 5, D = 7 };
    bd_rng rng = bd_rng_init(1);
    float zt[N * D], zs[N * D], xt[N * D];
    double at[N], st[N], as[N], ss[N];
    double worst = 0.0, worst_land = 0.0;
    int n, d;
    bd_rng_normal(&rng, zt, N * D);
    bd_rng_normal(&rng, zs, N * D);
    for (n = 0; n < N; n++) {
        double lt = frand(&rng, -8.0, 4.0), ls = lt + frand(&rng, 0.1, 6.0);
        ab_from_logsnr(lt, &at[n], &st[n]);
        ab_from_logsnr(ls, &as[n], &ss[n]);
    }
    as[N - 1] = 1.0; ss[N - 1] = 0.0; /* s = 0 */
    bd_distill_target(xt, zt, zs, at, st, as, ss, N, D);
    for (n = 0; n < N; n++)
        for (d = 0; d < D; d++) {
            double z_t = zt[n * D + d], z_s = zs[n * D + d], ref, eps_hat, land, e;
            if (ss[n] == 0.0) ref = z_s;
            else ref = (z_s - ss[n] / st[n] * z_t) / (as[n] - ss[n] / st[n] * at[n]);
            e = fabs(ref - xt[n * D + d]) / (1e-6 + fabs(ref));
            if (e > worst) worst = e;
            /* land: z_s' = alpha_s x + sigma_s (z_t - alpha_t x) / sigma_t */
            eps_hat = (z_t - at[n] * (double)xt[n * D + d]) / st[n];
            land = as[n] * (double)xt[n * D + d] + ss[n] * eps_hat;
            e = fabs(land - z_s) / (1e-6 + fabs(z_s));
            if (e > worst_land) worst_land = e;
        }
    {   /* the same problem through the harness comparator, against z_s for s = 0 */
        double mabs, ratio = bdt_close_ratio(xt + (N - 1) * D, zs + (N - 1) * D, D, 0.0, 1e-7, &mabs);
        BDT_CHECKF(ratio <= 1.0 && mabs == 0.0, "s = 0 target differs from z_s by %g", mabs);
    }
    printf("  target: max rel err %.2e, DDIM landing rel err %.2e\n", worst, worst_land);
    BDT_CHECKF(worst < 1e-6, "%g", worst);
    BDT_CHECKF(worst_land < 1e-4, "%g", worst_land);
}

/* Fill o so that every branch's x_hat equals its target exactly (in double,
   rounded to float). */
static void output_from_targets(float *o, const float *zt, const float *xt, const double *at,
                                const double *st, bd_param_kind p, int N, int K, int D) {
    int n, k, d;
    for (n = 0; n < N; n++) {
        double xz, xo;
        bd_param_x_coeffs(p, at[n], st[n], &xz, &xo);
        for (k = 0; k < K; k++)
            for (d = 0; d < D; d++)
                o[(n * K + k) * D + d] =
                    (float)(((double)xt[(k * N + n) * D + d] - xz * zt[n * D + d]) / xo);
    }
}

/* random student problem: N samples, K branches, times s_k descending */
typedef struct problem {
    int N, K, D;
    float *zt, *zs, *xt, *o;
    double *at, *st, *as, *ss, *w;
} problem;

static void problem_init(problem *P, bd_rng *rng, int N, int K, int D, int last_is_zero) {
    int n, k;
    P->N = N; P->K = K; P->D = D;
    P->zt = (float *)malloc(sizeof(float) * N * D);
    P->zs = (float *)malloc(sizeof(float) * K * N * D);
    P->xt = (float *)malloc(sizeof(float) * K * N * D);
    P->o = (float *)malloc(sizeof(float) * N * K * D);
    P->at = (double *)malloc(sizeof(double) * N);
    P->st = (double *)malloc(sizeof(double) * N);
    P->as = (double *)malloc(sizeof(double) * K * N);
    P->ss = (double *)malloc(sizeof(double) * K * N);
    P->w = (double *)malloc(sizeof(double) * K);
    bd_rng_normal(rng, P->zt, N * D);
    bd_rng_normal(rng, P->zs, K * N * D);
    bd_rng_normal(rng, P->o, N * K * D);
    for (n = 0; n < N; n++) {
        double l = frand(rng, -3.0, 2.0);
        ab_from_logsnr(l, &P->at[n], &P->st[n]);
        for (k = 0; k < K; k++) {
            l += frand(rng, 0.3, 1.5);
            ab_from_logsnr(l, &P->as[k * N + n], &P->ss[k * N + n]);
        }
        if (last_is_zero) { P->as[(K - 1) * N + n] = 1.0; P->ss[(K - 1) * N + n] = 0.0; }
    }
    for (k = 0; k < K; k++) {
        bd_distill_target(P->xt + k * N * D, P->zt, P->zs + k * N * D, P->at, P->st,
                          P->as + k * N, P->ss + k * N, N, D);
        P->w[k] = 0.2 + 0.8 * bd_rng_uniform(rng);
    }
}
static void problem_free(problem *P) {
    free(P->zt); free(P->zs); free(P->xt); free(P->o);
    free(P->at); free(P->st); free(P->as); free(P->ss); free(P->w);
}

static double problem_loss(problem *P, float *dout, double *bl, bd_param_kind p,
                           bd_distill_space sp, bd_distill_distance dist) {
    return bd_distill_loss(dout, bl, P->o, P->zt, P->xt, P->zs, P->at, P->st, P->as, P->ss, P->w,
                           p, sp, dist, P->N, P->K, P->D, 1.0);
}

/* A student whose every branch outputs its target has zero loss, in x and
   z space, for every parametrisation; a perturbed one has positive loss and
   the loss equals the weighted sum of the reported branch losses. */
static void test_zero_loss_at_targets(void) {
    bd_rng rng = bd_rng_init(2);
    int p, sp;
    for (p = 0; p < 3; p++)
        for (sp = 0; sp < 3; sp++) {
            problem P;
            double bl[4], L, L0, sum = 0.0;
            bd_distill_space space = sp == 0 ? BD_DISTILL_SPACE_X : BD_DISTILL_SPACE_Z;
            bd_distill_distance dist = sp == 2 ? BD_DISTILL_L1 : BD_DISTILL_L2;
            int k;
            problem_init(&P, &rng, 3, 4, 6, 1);
            L = problem_loss(&P, NULL, bl, (bd_param_kind)p, space, dist);
            for (k = 0; k < 4; k++) sum += P.w[k] * bl[k];
            BDT_CHECKF(L > 1e-3 && fabs(L - sum) <= 1e-12 * L, "L %g sum %g", L, sum);
            output_from_targets(P.o, P.zt, P.xt, P.at, P.st, (bd_param_kind)p, 3, 4, 6);
            L0 = problem_loss(&P, NULL, bl, (bd_param_kind)p, space, dist);
            BDT_CHECKF(L0 < (sp == 2 ? 1e-6 : 1e-9) * L, "param %d space %d: loss at targets %g (random %g)", p, sp, L0, L);
            problem_free(&P);
        }
}

/* dL/do against central differences of the loss, every parametrisation,
   x/L2, z/L2, z/L1, and accumulation (+=) into dout. */
static void test_loss_gradient_fd(void) {
    bd_rng rng = bd_rng_init(3);
    int p, sp;
    double worst = 0.0;
    for (p = 0; p < 3; p++)
        for (sp = 0; sp < 3; sp++) {
            problem P;
            bd_distill_space space = sp == 0 ? BD_DISTILL_SPACE_X : BD_DISTILL_SPACE_Z;
            bd_distill_distance dist = sp == 2 ? BD_DISTILL_L1 : BD_DISTILL_L2;
            float *g;
            int i, total;
            problem_init(&P, &rng, 3, 3, 5, 0);
            total = 3 * 3 * 5;
            g = (float *)malloc(sizeof(float) * total);
            for (i = 0; i < total; i++) g[i] = 0.25f;
            problem_loss(&P, g, NULL, (bd_param_kind)p, space, dist);
            for (i = 0; i < total; i++) {
                float keep = P.o[i];
                double h = 1.0 / 512.0, lp, lm, fd, an, e;
                P.o[i] = (float)(keep + h);
                lp = problem_loss(&P, NULL, NULL, (bd_param_kind)p, space, dist);
                P.o[i] = (float)(keep - h);
                lm = problem_loss(&P, NULL, NULL, (bd_param_kind)p, space, dist);
                P.o[i] = keep;
                fd = (lp - lm) / (2.0 * h);
                an = (double)g[i] - 0.25;
                e = fabs(fd - an) / (1e-4 + fabs(fd));
                if (e > worst) worst = e;
                BDT_CHECKF(e < 2e-3, "param %d space %d elem %d: fd %g analytic %g", p, sp, i, fd, an);
            }
            free(g);
            problem_free(&P);
        }
    printf("  loss gradient vs FD: worst rel err %.2e\n", worst);
}

/* z-space L2 = (alpha_s - sigma_s alpha_t / sigma_t)^2 times the x-space
   term without lambda: the two spaces differ only by a per-branch scale. */
static void test_z_vs_x_scale(void) {
    bd_rng rng = bd_rng_init(4);
    problem P;
    double blx[2], blz[2];
    int n, k;
    problem_init(&P, &rng, 1, 2, 9, 0);
    problem_loss(&P, NULL, blx, BD_PARAM_V, BD_DISTILL_SPACE_X, BD_DISTILL_L2);
    problem_loss(&P, NULL, blz, BD_PARAM_V, BD_DISTILL_SPACE_Z, BD_DISTILL_L2);
    n = 0;
    for (k = 0; k < 2; k++) {
        double c = P.as[k] - P.ss[k] * P.at[n] / P.st[n];
        double lam = bd_distill_lambda(P.at[n], P.st[n]);
        double pred = blx[k] / lam * c * c;
        BDT_CHECKF(fabs(pred - blz[k]) <= 1e-5 * blz[k], "k %d: %g vs %g", k, pred, blz[k]);
    }
    problem_free(&P);
}

static void test_branch_weights(void) {
    double w[4], ema[4] = {0.5, 2.0, 0.1, 1.0};
    int K = 4, k;
    double s;
    BDT_CHECK(bd_distill_branch_weights(NULL, w, BD_WEIGHTS_UNIFORM, K, 0, 0, NULL) == BD_SUCCESS);
    for (k = 0, s = 0; k < K; k++) { s += w[k]; BDT_CHECK(fabs(w[k] - 0.25) < 1e-15); }
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_FINAL, K, 0, 0, NULL);
    BDT_CHECK(w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == 1);
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_LINEAR, K, 0, 0, NULL);
    for (k = 0, s = 0; k < K; k++) s += w[k];
    BDT_CHECK(fabs(s - 1) < 1e-12 && fabs(w[3] / w[0] - 4.0) < 1e-12 && fabs(w[1] / w[0] - 2.0) < 1e-12);
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_AUX, K, 0.3, 0, NULL);
    BDT_CHECK(w[3] == 1.0 && w[0] == 0.3 && w[2] == 0.3);
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_ANNEAL, K, 0, 0.0, NULL);
    BDT_CHECK(fabs(w[0] - 0.25) < 1e-15 && fabs(w[3] - 0.25) < 1e-15);
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_ANNEAL, K, 0, 1.0, NULL);
    BDT_CHECK(w[0] == 0.0 && w[3] == 1.0);
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_ANNEAL, K, 0, 0.5, NULL);
    for (k = 0, s = 0; k < K; k++) s += w[k];
    BDT_CHECK(fabs(s - 1) < 1e-12 && fabs(w[0] - 0.125) < 1e-15 && fabs(w[3] - 0.625) < 1e-15);
    BDT_CHECK(bd_distill_branch_weights(NULL, w, BD_WEIGHTS_ANNEAL, K, 0, 1.5, NULL) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_distill_branch_weights(NULL, w, BD_WEIGHTS_AUX, K, -1, 0, NULL) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_distill_branch_weights(NULL, w, BD_WEIGHTS_UNIFORM, 0, 0, 0, NULL) == BD_ERROR_INVALID_ARGUMENT);
    /* adaptive: the dense branches share one weight, together carry the
       final branch's expected loss, and never outweigh the final branch */
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_ADAPTIVE, K, 0, 0, ema);
    BDT_CHECK(w[3] == 0.5);
    for (k = 0, s = 0; k < K - 1; k++) {
        s += w[k] * ema[k];
        BDT_CHECKF(w[k] == w[0], "k %d", k);
    }
    BDT_CHECKF(fabs(s - w[3] * ema[3]) < 1e-12, "dense %g final %g", s, w[3] * ema[3]);
    {   /* a dense branch with ~zero loss is not amplified; the cap binds */
        double e2[4] = {1e-9, 0.01, 0.02, 1.0};
        bd_distill_branch_weights(NULL, w, BD_WEIGHTS_ADAPTIVE, K, 0, 0, e2);
        BDT_CHECK(w[0] == 0.5 && w[1] == 0.5 && w[2] == 0.5 && w[3] == 0.5);
    }
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_ADAPTIVE, K, 0, 0, NULL);
    BDT_CHECK(fabs(w[0] - 1.0 / 6.0) < 1e-15 && w[3] == 0.5);
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_ADAPTIVE, 1, 0, 0, ema);
    BDT_CHECK(w[0] == 1.0);
}

static void test_names(void) {
    bd_distill_weights wk = BD_WEIGHTS_UNIFORM;
    bd_distill_method m = BD_DISTILL_PD;
    int i;
    for (i = 0; i < 7; i++) {
        BDT_CHECK(bd_distill_weights_parse(bd_distill_weights_name((bd_distill_weights)i), &wk) == BD_SUCCESS);
        BDT_CHECK((int)wk == i);
    }
    BDT_CHECK(bd_distill_weights_parse("nope", &wk) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_distill_method_parse("td", &m) == BD_SUCCESS && m == BD_DISTILL_TD);
    BDT_CHECK(bd_distill_method_parse("pd", &m) == BD_SUCCESS && m == BD_DISTILL_PD);
    BDT_CHECK(bd_distill_method_parse("cd", &m) == BD_SUCCESS && m == BD_DISTILL_CD);
    BDT_CHECK(strcmp(bd_distill_method_name(BD_DISTILL_CD), "cd") == 0);
}


/* ------------------------------------------------- the distiller object */
static bd_context *make_ctx(void) {
    bd_context *ctx = NULL;
    bd_context_config cc = bd_context_config_init();
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return NULL;
    return ctx;
}

/* 2-D mixture: M points on a circle of radius 0.8 */
#define GMM_M 6
#define GMM_STD 0.08
static void gmm_points(float *pts) {
    int m;
    for (m = 0; m < GMM_M; m++) {
        pts[2 * m] = (float)(0.8 * cos(2.0 * BD__PI * m / GMM_M));
        pts[2 * m + 1] = (float)(0.8 * sin(2.0 * BD__PI * m / GMM_M));
    }
}
static void gmm_sample(bd_rng *rng, const float *pts, float *x, int n) {
    int b;
    for (b = 0; b < n; b++) {
        int m = (int)(bd_rng_u64(rng) % GMM_M);
        x[2 * b] = (float)(pts[2 * m] + GMM_STD * bd_rng_normal1(rng));
        x[2 * b + 1] = (float)(pts[2 * m + 1] + GMM_STD * bd_rng_normal1(rng));
    }
}

/* Independent double-precision references: the cosine schedule of docs/spec.md sec. 1
   and the exact posterior mean of the mixture. */
static void ref_alpha_sigma(double t, double *a, double *s) {
    const double off = 0.008;
    double al = cos(BD__PI / 2.0 * (t + off) / (1.0 + off)) / cos(BD__PI / 2.0 * off / (1.0 + off));
    if (al < 1e-4) al = 1e-4;
    if (al > 1.0) al = 1.0;
    *a = al;
    *s = sqrt(1.0 - al * al);
}
static void ref_posterior_mean(const float *pts, const double *z, double t, double *xhat) {
    double a, s, v, lw[GMM_M], mx = -1e300, tot = 0.0, g;
    int m, d;
    ref_alpha_sigma(t, &a, &s);
    v = a * a * GMM_STD * GMM_STD + s * s;
    for (m = 0; m < GMM_M; m++) {
        double r2 = 0.0;
        for (d = 0; d < 2; d++) {
            double e = z[d] - a * pts[2 * m + d];
            r2 += e * e;
        }
        lw[m] = -0.5 * r2 / v;
        if (lw[m] > mx) mx = lw[m];
    }
    for (m = 0; m < GMM_M; m++) { lw[m] = exp(lw[m] - mx); tot += lw[m]; }
    g = a * GMM_STD * GMM_STD / v;
    xhat[0] = xhat[1] = 0.0;
    for (m = 0; m < GMM_M; m++)
        for (d = 0; d < 2; d++)
            xhat[d] += lw[m] / tot * (pts[2 * m + d] + g * (z[d] - a * pts[2 * m + d]));
}
/* one DDIM step t -> u of the exact teacher, in double */
static void ref_ddim(const float *pts, double *z, double t, double u) {
    double xh[2], a, s, au, su;
    int d;
    ref_posterior_mean(pts, z, t, xh);
    ref_alpha_sigma(t, &a, &s);
    ref_alpha_sigma(u, &au, &su);
    for (d = 0; d < 2; d++) {
        double e = (z[d] - a * xh[d]) / s;
        z[d] = au * xh[d] + su * e;
    }
}
static double ref_target(double zt, double zs, double t, double sk) {
    double a, s, as, ss;
    ref_alpha_sigma(t, &a, &s);
    ref_alpha_sigma(sk, &as, &ss);
    if (sk == 0.0) return zs;
    return (zs - ss / s * zt) / (as - ss / s * a);
}
static double rel_err(double got, double ref) { return fabs(got - ref) / (1e-5 + fabs(ref)); }

static bd_result make_analytic(bd_context *ctx, const float *pts, bd_denoiser **out) {
    bd_analytic_config ac = bd_analytic_config_init(2, pts, GMM_M, GMM_STD);
    return bd_analytic_create(ctx, &ac, out);
}
static bd_result make_mlp(bd_context *ctx, int64_t K, uint64_t seed, int64_t hidden, bd_denoiser **out) {
    bd_mlp_config mc = bd_mlp_config_init(2);
    bd_rng r = bd_rng_init(seed);
    mc.hidden = hidden;
    mc.depth = 2;
    mc.branches = K;
    return bd_mlp_create(ctx, &mc, &r, out);
}

/* PD with the exact teacher: z_t, the teacher's K sub-states and every
   branch's target equal an independent double computation of docs/spec.md sec. 5
   (uniform-t grid, Kt = 2 teacher DDIM sub-steps per student step);
   K = 1 gives plain PD (Salimans & Ho) targets; the reported loss equals
   lambda(t) sum_k w_k mean (x_hat_k - x_tilde_k)^2 recomputed here. */
static void check_pd_targets_r(int64_t K, int64_t Kt, int64_t R) {
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher = NULL, *student = NULL;
    bd_distill *dist = NULL;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_PD, K, 4);
    float pts[2 * GMM_M], x[2 * 16];
    bd_rng rng = bd_rng_init(11);
    double loss, bl[4], worst_z = 0, worst_s = 0, worst_t = 0, ref_loss = 0;
    int64_t b, k, j, n = 16, per;
    gmm_points(pts);
    BDT_CHECK(make_analytic(ctx, pts, &teacher) == BD_SUCCESS);
    BDT_CHECK(make_mlp(ctx, K, 5, 32, &student) == BD_SUCCESS);
    dc.teacher_substeps = Kt;
    dc.teacher_refine = R;
    per = Kt / K;
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, n, &dist) == BD_SUCCESS);
    if (!dist) { printf("  %s\n", bd_context_message(ctx)); return; }
    gmm_sample(&rng, pts, x, (int)n);
    BDT_CHECKF(bd_distill_step(dist, x, n, &loss, bl) == BD_SUCCESS, "%s", bd_context_message(ctx));
    for (b = 0; b < n; b++) {
        int64_t i = dist->idx[b];
        double t = 1.0 - (double)i / 4.0, a, s, z[2], z0[2], lam;
        int d;
        BDT_CHECK(i >= 0 && i < 4);
        ref_alpha_sigma(t, &a, &s);
        BDT_CHECK(fabs(dist->tt[b] - t) < 1e-7);
        for (d = 0; d < 2; d++) {
            z0[d] = a * x[2 * b + d] + s * dist->eps[2 * b + d];
            worst_z = fmax(worst_z, rel_err(dist->zt[2 * b + d], z0[d]));
            z[d] = z0[d];
        }
        lam = a * a / (s * s) > 1.0 ? a * a / (s * s) : 1.0;
        for (j = 1; j <= Kt; j++) {
            double tj0 = 1.0 - ((double)i + (double)(j - 1) / Kt) / 4.0;
            double tj = 1.0 - ((double)i + (double)j / Kt) / 4.0;
            if (j == Kt) tj = 1.0 - (double)(i + 1) / 4.0;
            {   /* R fine DDIM steps, uniform in t */
                int64_t q;
                for (q = 1; q <= R; q++)
                    ref_ddim(pts, z, tj0 + (tj - tj0) * (double)(q - 1) / R, q == R ? tj : tj0 + (tj - tj0) * (double)q / R);
            }
            if (j % per == 0) {
                k = j / per - 1;
                for (d = 0; d < 2; d++) {
                    double tgt = ref_target(z0[d], z[d], t, tj), xo, xz, xh;
                    worst_s = fmax(worst_s, rel_err(dist->zs[(k * n + b) * 2 + d], z[d]));
                    {   /* x_tilde is ill-conditioned near t = 1 (small denominator):
                           allow float rounding of z_s and z_t, amplified */
                        double as, ss, den, bound;
                        ref_alpha_sigma(tj, &as, &ss);
                        den = as - ss / s * a;
                        bound = 1e-4 * fabs(tgt) + 1e-6 * (fabs(z[d]) + fabs(z0[d])) / den;
                        worst_t = fmax(worst_t, fabs(dist->xt[(k * n + b) * 2 + d] - tgt) / bound);
                    }
                    /* v: x_hat = alpha z - sigma o */
                    bd_param_x_coeffs(BD_PARAM_V, a, s, &xz, &xo);
                    xh = a * dist->zt[2 * b + d] - s * dist->sout[(b * K + k) * 2 + d];
                    ref_loss += lam * dist->weights[k] * (xh - tgt) * (xh - tgt) / (2.0 * n);
                }
            }
        }
    }
    printf("  PD K=%lld Kt=%lld: z_t rel err %.1e, teacher states %.1e, targets err/bound %.2f, loss %.6g vs %.6g\n",
           (long long)K, (long long)Kt, worst_z, worst_s, worst_t, loss, ref_loss);
    BDT_CHECKF(worst_z < 1e-5, "%g", worst_z);
    BDT_CHECKF(worst_s < 1e-4, "%g", worst_s);
    BDT_CHECKF(worst_t < 1.0, "%g", worst_t);
    BDT_CHECKF(fabs(loss - ref_loss) < 1e-3 * ref_loss, "%g vs %g", loss, ref_loss);
    for (k = 0; k < K; k++) BDT_CHECK(fabs(dist->weights[k] - 1.0 / K) < 1e-15);
    bd_distill_free(dist);
    bd_denoiser_free(student);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}
static void check_pd_targets(int64_t K, int64_t Kt) { check_pd_targets_r(K, Kt, 1); }
static void test_pd_targets_exact_teacher(void) {
    check_pd_targets_r(2, 2, 3); /* teacher_refine: 3 DDIM steps per sub-step */
    check_pd_targets_r(1, 2, 2);
    check_pd_targets(1, 2); /* plain PD */
    check_pd_targets(2, 2); /* B-DENSE PD */
    check_pd_targets(2, 4);
    check_pd_targets(4, 4);
}

/* TD with the exact teacher: recorded trajectories equal an independent
   DDIM solve; with teacher forcing the student's input is the teacher
   state and the targets are docs/spec.md sec. 5's; without it the input of step 2 is
   the student's own DDIM step from the noise (its final branch); K = 1
   (sparse) targets the end of each student step (SFD).  Without forcing,
   the dense branches (k < K) target the teacher's sub-steps solved from the
   student's own state (dense_targets from_student, the default), or the
   trajectory's states (from_trajectory); the final branch always targets
   the trajectory. */
static void check_td(int64_t K, int forcing, int from_traj) {
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher = NULL, *student = NULL;
    bd_distill *dist = NULL;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_TD, K, 2);
    float pts[2 * GMM_M], *keep = NULL;
    double loss, bl[4], worst_tr = 0, worst_t = 0, worst_in = 0;
    double tg[9];
    int64_t b, k, j, n = 8, N = 2, Kt = 4, S = 8, per, n_differ = 0;
    gmm_points(pts);
    BDT_CHECK(make_analytic(ctx, pts, &teacher) == BD_SUCCESS);
    BDT_CHECK(make_mlp(ctx, K, 6, 32, &student) == BD_SUCCESS);
    dc.teacher_solver = BD_SAMPLER_DDIM;
    dc.subdiv = BD_SUBDIV_T;
    dc.teacher_forcing = forcing;
    dc.space = BD_DISTILL_SPACE_X;
    BDT_CHECK(dc.dense_targets == BD_DENSE_FROM_STUDENT);
    if (from_traj) dc.dense_targets = BD_DENSE_FROM_TRAJECTORY;
    BDT_CHECK(dc.teacher_substeps == 4);
    per = Kt / K;
    for (j = 0; j <= S; j++) tg[j] = 1.0 - (double)j / S;
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, n, &dist) == BD_SUCCESS);
    if (!dist) { printf("  %s\n", bd_context_message(ctx)); return; }
    for (j = 0; j <= S; j++) BDT_CHECK(fabs(dist->tgrid[j] - tg[j]) < 1e-12);
    keep = (float *)malloc(sizeof(float) * student->n_params);
    memcpy(keep, student->params, sizeof(float) * student->n_params);
    BDT_CHECK(bd_distill_step(dist, NULL, 8, &loss, bl) == BD_SUCCESS);
    for (b = 0; b < n; b++) {
        double z[2], zi[2];
        int d;
        const float *tr = dist->traj + b * (S + 1) * 2;
        z[0] = tr[0]; z[1] = tr[1];
        for (j = 1; j <= S; j++) {
            ref_ddim(pts, z, tg[j - 1], tg[j]);
            for (d = 0; d < 2; d++) worst_tr = fmax(worst_tr, rel_err(tr[j * 2 + d], z[d]));
            if (j == (N - 1) * Kt) { zi[0] = z[0]; zi[1] = z[1]; }
        }
        /* last batch = student step N-1 = 1 */
        for (d = 0; d < 2; d++) {
            double in = forcing ? zi[d] : (double)dist->zt[b * 2 + d];
            if (forcing) worst_in = fmax(worst_in, rel_err(dist->zt[b * 2 + d], zi[d]));
            for (k = 0; k < K; k++) {
                int64_t jj = Kt + (k + 1) * per;
                double tgt = ref_target(in, tr[jj * 2 + d], 0.5, tg[jj]);
                if (!forcing && !from_traj && k < K - 1) {
                    /* the teacher's DDIM sub-steps from the student's own state */
                    double zz[2];
                    int64_t q;
                    zz[0] = dist->zt[b * 2], zz[1] = dist->zt[b * 2 + 1];
                    for (q = Kt + 1; q <= jj; q++) ref_ddim(pts, zz, tg[q - 1], tg[q]);
                    tgt = ref_target(in, zz[d], 0.5, tg[jj]);
                    /* and it is not the trajectory's target (the student drifted) */
                    if (fabs(tgt - ref_target(in, tr[jj * 2 + d], 0.5, tg[jj])) > 1e-3) n_differ++;
                }
                worst_t = fmax(worst_t, rel_err(dist->xt[(k * n + b) * 2 + d], tgt));
            }
        }
    }
    if (!forcing) {
        /* the input of step 1: DDIM of the pre-step student's final branch from the noise */
        float *now = (float *)malloc(sizeof(float) * student->n_params);
        float *o = (float *)malloc(sizeof(float) * n * K * 2), *zn = (float *)malloc(sizeof(float) * n * 2);
        float tv[8];
        memcpy(now, student->params, sizeof(float) * student->n_params);
        memcpy(student->params, keep, sizeof(float) * student->n_params);
        for (b = 0; b < n; b++) {
            tv[b] = 1.0f;
            zn[2 * b] = dist->traj[b * (S + 1) * 2];
            zn[2 * b + 1] = dist->traj[b * (S + 1) * 2 + 1];
        }
        BDT_CHECK(bd_denoiser_forward(student, o, zn, tv, n, 0) == BD_SUCCESS);
        for (b = 0; b < n; b++) {
            double a, s, au, su;
            int d;
            ref_alpha_sigma(1.0, &a, &s);
            ref_alpha_sigma(0.5, &au, &su);
            for (d = 0; d < 2; d++) {
                double xh = a * zn[2 * b + d] - s * o[(b * K + K - 1) * 2 + d];
                double e = (zn[2 * b + d] - a * xh) / s;
                worst_in = fmax(worst_in, rel_err(dist->zt[2 * b + d], au * xh + su * e));
            }
        }
        memcpy(student->params, now, sizeof(float) * student->n_params);
        free(now); free(o); free(zn);
    }
    printf("  TD K=%lld forcing=%d: trajectory rel err %.1e, student input %.1e, targets %.1e\n",
           (long long)K, forcing, worst_tr, worst_in, worst_t);
    BDT_CHECKF(worst_tr < 1e-4, "%g", worst_tr);
    BDT_CHECKF(worst_in < 1e-4, "%g", worst_in);
    BDT_CHECKF(worst_t < 1e-3, "%g", worst_t);
    if (!forcing && !from_traj && K > 1) BDT_CHECKF(n_differ > 0, "dense targets equal the trajectory's");
    free(keep);
    bd_distill_free(dist);
    bd_denoiser_free(student);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}
static void test_td_targets_exact_teacher(void) {
    check_td(1, 1, 0);
    check_td(2, 1, 0);
    check_td(4, 1, 0);
    check_td(2, 0, 0);
    check_td(4, 0, 0);
    check_td(2, 0, 1);
    check_td(1, 0, 0);
}

/* TD trajectories solved with DPM-Solver++(2M): the recorded last state is
   what bd_sampler_run gives from the same noise, the recorded first state
   is the noise; the cache path replays stored trajectories. */
static void test_td_trajectories_solver(void) {
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher = NULL, *student = NULL;
    bd_distill *dist = NULL;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_TD, 2, 2);
    bd_sampler *smp = NULL;
    bd_sampler_config sc;
    float pts[2 * GMM_M], traj[5 * 9 * 2], x[5 * 2];
    bd_rng r = bd_rng_init(3);
    double worst = 0;
    int b, d;
    gmm_points(pts);
    BDT_CHECK(make_analytic(ctx, pts, &teacher) == BD_SUCCESS);
    BDT_CHECK(make_mlp(ctx, 2, 7, 16, &student) == BD_SUCCESS);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, 4, &dist) == BD_SUCCESS);
    if (!dist) return;
    BDT_CHECK(dist->S == 8);
    BDT_CHECK(bd_distill_teacher_trajectories(dist, traj, 5, &r) == BD_SUCCESS); /* 2 chunks */
    BDT_CHECK(bd_sampler_init(ctx, teacher, 5, &smp) == BD_SUCCESS);
    sc = bd_sampler_config_init(BD_SAMPLER_DPMPP_2M, 8);
    sc.custom_grid = dist->tgrid;
    r = bd_rng_init(3);
    for (b = 0; b < 5; b++) bd_rng_normal(&r, x + 2 * b, 2);
    for (b = 0; b < 5; b++)
        for (d = 0; d < 2; d++) BDT_CHECK(traj[b * 18 + d] == x[2 * b + d]);
    BDT_CHECK(bd_sampler_run(smp, &sc, x, 5, NULL, NULL) == BD_SUCCESS);
    for (b = 0; b < 5; b++)
        for (d = 0; d < 2; d++) worst = fmax(worst, fabs(traj[b * 18 + 16 + d] - x[2 * b + d]));
    BDT_CHECKF(worst < 1e-6, "final state differs by %g", worst);
    /* cache: every student input at step 0 is a cached noise */
    BDT_CHECK(bd_distill_set_trajectories(dist, traj, 5) == BD_SUCCESS);
    dist->config.teacher_forcing = 1;
    BDT_CHECK(bd_distill_step(dist, NULL, 4, NULL, NULL) == BD_SUCCESS);
    for (b = 0; b < 4; b++) {
        int found = 0, c;
        for (c = 0; c < 5; c++)
            found |= memcmp(dist->traj + b * 18, traj + c * 18, sizeof(float) * 18) == 0;
        BDT_CHECK(found);
    }
    bd_sampler_free(smp);
    bd_distill_free(dist);
    bd_denoiser_free(student);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}

/* Cached trajectories streamed from a .npy on disk give the same student,
   bit for bit, as the same trajectories held in memory; a float64 file
   (converted while streaming) too; bad streams are refused. */
static void test_td_stream_matches_cache(void) {
    enum { NT = 7, S1 = 9, D = 2 };
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher = NULL, *s1 = NULL, *s2 = NULL;
    bd_distill *a = NULL, *b = NULL;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_TD, 2, 2);
    bd_npy_stream st, bad;
    float traj[NT * S1 * D], got[5];
    double traj64[NT * S1 * D];
    int64_t shape[3] = {NT, S1, D}, wrong[3] = {NT, S1 - 1, D};
    bd_rng r = bd_rng_init(11);
    const char *path = "test_distill_stream.tmp.npy", *path64 = "test_distill_stream64.tmp.npy";
    int i, same;
    FILE *f;
    BDT_CHECK(make_mlp(ctx, 1, 3, 16, &teacher) == BD_SUCCESS);
    BDT_CHECK(bd_distill_student_from_teacher(teacher, 2, &r, &s1) == BD_SUCCESS);
    r = bd_rng_init(11);
    BDT_CHECK(bd_distill_student_from_teacher(teacher, 2, &r, &s2) == BD_SUCCESS);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, s1, 4, &a) == BD_SUCCESS);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, s2, 4, &b) == BD_SUCCESS);
    if (!a || !b) return;
    BDT_CHECK(a->S + 1 == S1 && a->D == D);
    r = bd_rng_init(5);
    BDT_CHECK(bd_distill_teacher_trajectories(a, traj, NT, &r) == BD_SUCCESS);
    BDT_CHECK(bd_npy_write(ctx, path, traj, 3, shape) == BD_SUCCESS);
    BDT_CHECK(bd_npy_stream_open(ctx, path, &st) == BD_SUCCESS);
    BDT_CHECK(st.ndim == 3 && st.numel == NT * S1 * D && st.item == 4);
    BDT_CHECK(bd_npy_stream_read(ctx, &st, 3, 5, got) == BD_SUCCESS && memcmp(got, traj + 3, sizeof got) == 0);
    BDT_CHECK(bd_npy_stream_read(ctx, &st, NT * S1 * D - 2, 5, got) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_distill_set_trajectories(a, traj, NT) == BD_SUCCESS);
    BDT_CHECK(bd_distill_set_trajectory_stream(b, &st) == BD_SUCCESS);
    for (i = 0; i < 4; i++) {
        BDT_CHECK(bd_distill_step(a, NULL, 4, NULL, NULL) == BD_SUCCESS);
        BDT_CHECK(bd_distill_step(b, NULL, 4, NULL, NULL) == BD_SUCCESS);
    }
    same = memcmp(s1->params, s2->params, sizeof(float) * s1->n_params) == 0 && a->last_loss == b->last_loss;
    printf("  4 TD steps from %d trajectories streamed from .npy vs in memory: %s\n", NT,
           same ? "bit-identical" : "DIFFERENT");
    BDT_CHECK(same);
    bd_npy_stream_close(&st);
    /* float64 on disk, converted while streaming */
    for (i = 0; i < NT * S1 * D; i++) traj64[i] = (double)traj[i];
    f = fopen(path64, "wb");
    BDT_CHECK(f != NULL);
    if (f) {
        char hdr[118];
        memset(hdr, ' ', sizeof hdr);
        memcpy(hdr, "\x93NUMPY\x01\x00\x6c\x00", 10);
        memcpy(hdr + 10, "{'descr': '<f8', 'fortran_order': False, 'shape': (7, 9, 2), }", 62);
        hdr[117] = '\n';
        fwrite(hdr, 1, sizeof hdr, f);
        fwrite(traj64, sizeof(double), NT * S1 * D, f);
        fclose(f);
    }
    BDT_CHECKF(bd_npy_stream_open(ctx, path64, &st) == BD_SUCCESS, "%s", bd_context_message(ctx));
    BDT_CHECK(st.item == 8);
    BDT_CHECK(bd_npy_stream_read(ctx, &st, 1, 5, got) == BD_SUCCESS && memcmp(got, traj + 1, sizeof got) == 0);
    bd_npy_stream_close(&st);
    BDT_CHECK(st.file == NULL);
    /* refused: wrong state shape, a closed stream, a truncated file, no file */
    BDT_CHECK(bd_npy_write(ctx, path, traj, 3, wrong) == BD_SUCCESS);
    BDT_CHECK(bd_npy_stream_open(ctx, path, &bad) == BD_SUCCESS);
    BDT_CHECK(bd_distill_set_trajectory_stream(b, &bad) == BD_ERROR_SHAPE);
    bd_npy_stream_close(&bad);
    BDT_CHECK(bd_distill_set_trajectory_stream(b, &bad) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_npy_stream_read(ctx, &bad, 0, 1, got) == BD_ERROR_STATE);
    f = fopen(path, "rb");
    if (f) { /* cut the data short: keep the header and 40 bytes */
        unsigned char buf[168];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        BDT_CHECK(n == sizeof buf);
        f = fopen(path, "wb");
        if (f) {
            fwrite(buf, 1, n, f);
            fclose(f);
        }
    }
    BDT_CHECK(bd_npy_stream_open(ctx, path, &bad) == BD_ERROR_FORMAT);
    BDT_CHECK(bad.file == NULL);
    BDT_CHECK(bd_npy_stream_open(ctx, "no_such_dir_bdense/x.npy", &bad) == BD_ERROR_IO);
    remove(path);
    remove(path64);
    bd_distill_free(a);
    bd_distill_free(b);
    bd_denoiser_free(s1);
    bd_denoiser_free(s2);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}

static void test_teacher_grid(void) {
    bd_schedule s;
    double g[5], tg[4 * 4 + 1], tmin;
    int i, j;
    bd_schedule_init(&s, BD_SCHEDULE_COSINE);
    tmin = bd_schedule_t_min(&s);
    BDT_CHECK(bd_time_grid(NULL, &s, BD_GRID_UNIFORM_T, 4, g) == BD_SUCCESS);
    BDT_CHECK(bd_distill_teacher_grid(NULL, &s, g, 4, 4, BD_SUBDIV_LOGSNR, tg) == BD_SUCCESS);
    for (i = 0; i < 4; i++) {
        double la = bd_schedule_logsnr(&s, g[i]);
        double lb = bd_schedule_logsnr(&s, g[i + 1] > 0 ? g[i + 1] : tmin);
        BDT_CHECK(tg[i * 4] == g[i]); /* nests */
        for (j = 1; j < 4; j++) {
            double l = bd_schedule_logsnr(&s, tg[i * 4 + j]);
            BDT_CHECKF(fabs(l - (la + j / 4.0 * (lb - la))) < 1e-8, "i %d j %d", i, j);
        }
    }
    BDT_CHECK(tg[16] == 0.0);
    BDT_CHECK(bd_distill_teacher_grid(NULL, &s, g, 4, 3, BD_SUBDIV_T, tg) == BD_SUCCESS);
    for (j = 0; j <= 12; j++) BDT_CHECK(fabs(tg[j] - (1.0 - j / 12.0)) < 1e-12);
    g[2] = g[1];
    BDT_CHECK(bd_distill_teacher_grid(NULL, &s, g, 4, 3, BD_SUBDIV_T, tg) == BD_ERROR_INVALID_ARGUMENT);
}

static void test_config_errors(void) {
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher = NULL, *student = NULL, *s4 = NULL;
    bd_distill *dist = NULL;
    bd_distill_config dc;
    float pts[2 * GMM_M];
    gmm_points(pts);
    make_analytic(ctx, pts, &teacher);
    make_mlp(ctx, 2, 1, 8, &student);
    make_mlp(ctx, 4, 1, 8, &s4);
    dc = bd_distill_config_init(BD_DISTILL_TD, 2, 2);
    dc.teacher_substeps = 3;
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, 4, &dist) == BD_ERROR_CONFIG && !dist);
    dc = bd_distill_config_init(BD_DISTILL_TD, 4, 2);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, 4, &dist) == BD_ERROR_CONFIG);
    BDT_CHECK(strstr(bd_context_message(ctx), "branches") != NULL);
    dc = bd_distill_config_init(BD_DISTILL_PD, 2, 2);
    dc.teacher_solver = BD_SAMPLER_DPMPP_2M;
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, 4, &dist) == BD_ERROR_CONFIG);
    dc = bd_distill_config_init(BD_DISTILL_PD, 2, 2);
    dc.distance = BD_DISTILL_L1;
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, 4, &dist) == BD_ERROR_CONFIG);
    dc = bd_distill_config_init(BD_DISTILL_TD, 2, 2);
    dc.teacher_solver = BD_SAMPLER_DDPM;
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, 4, &dist) == BD_ERROR_CONFIG);
    dc = bd_distill_config_init(BD_DISTILL_TD, 2, 2);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, teacher, 4, &dist) != BD_SUCCESS);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, 4, &dist) == BD_SUCCESS);
    if (dist) {
        float x[8] = {0};
        BDT_CHECK(bd_distill_step(dist, x, 4, NULL, NULL) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_distill_step(dist, NULL, 5, NULL, NULL) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_distill_next_round(dist) == BD_ERROR_STATE);
        bd_distill_free(dist);
        dist = NULL;
    }
    /* CD: a DDIM teacher step, data, no trajectories, no rounds */
    dc = bd_distill_config_init(BD_DISTILL_CD, 2, 2);
    dc.teacher_solver = BD_SAMPLER_DPMPP_2M;
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, 4, &dist) == BD_ERROR_CONFIG && !dist);
    BDT_CHECK(strstr(bd_context_message(ctx), "CD") != NULL);
    dc = bd_distill_config_init(BD_DISTILL_CD, 2, 2);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, 4, &dist) == BD_SUCCESS);
    if (dist) {
        float tr[2 * 33] = {0};
        BDT_CHECK(bd_distill_step(dist, NULL, 4, NULL, NULL) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_distill_set_trajectories(dist, tr, 1) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_distill_next_round(dist) == BD_ERROR_STATE);
        bd_distill_free(dist);
    }
    bd_denoiser_free(s4);
    bd_denoiser_free(student);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}

/* Gradient of the multi-branch loss through a small MLP student with a
   widened (K = 3) head: central differences on every output-layer weight
   and a sample of the others, x space (eps and v) and z space (L2). */
static void test_gradcheck_mlp_student(void) {
    bd_context *ctx = make_ctx();
    bd_denoiser *net = NULL;
    bd_rng rng = bd_rng_init(21);
    problem P;
    float tv[4], *o, *dout;
    int cfg;
    double worst = 0.0;
    BDT_CHECK(make_mlp(ctx, 3, 8, 16, &net) == BD_SUCCESS);
    if (!net) return;
    problem_init(&P, &rng, 4, 3, 2, 0);
    o = (float *)malloc(sizeof(float) * 4 * 3 * 2);
    dout = (float *)malloc(sizeof(float) * 4 * 3 * 2);
    { int n; for (n = 0; n < 4; n++) tv[n] = (float)(0.2 + 0.2 * n); }
    for (cfg = 0; cfg < 3; cfg++) {
        bd_param_kind pk = cfg == 1 ? BD_PARAM_EPS : BD_PARAM_V;
        bd_distill_space sp = cfg == 2 ? BD_DISTILL_SPACE_Z : BD_DISTILL_SPACE_X;
        const bd_param_tensor *ow = bd_denoiser_find_tensor(net, "out.weight");
        int64_t i, checked = 0;
        double gmax = 0.0;
        bd_denoiser_zero_grad(net);
        BDT_CHECK(bd_denoiser_forward(net, o, P.zt, tv, 4, 1) == BD_SUCCESS);
        memset(dout, 0, sizeof(float) * 24);
        bd_distill_loss(dout, NULL, o, P.zt, P.xt, P.zs, P.at, P.st, P.as, P.ss, P.w, pk, sp,
                        BD_DISTILL_L2, 4, 3, 2, 1.0);
        BDT_CHECK(bd_denoiser_backward(net, NULL, dout, 4) == BD_SUCCESS);
        for (i = 0; i < net->n_params; i++) gmax = fmax(gmax, fabs(net->grads[i]));
        BDT_CHECK(ow != NULL && ow->shape[0] == 3 * 2);
        for (i = 0; i < net->n_params; i++) {
            int in_head = ow && i >= ow->offset && i < ow->offset + ow->numel;
            float keep;
            double h = 1e-2, lp, lm, fd, an;
            if (!in_head && (bd_rng_u64(&rng) % 23) != 0) continue;
            keep = net->params[i];
            net->params[i] = (float)(keep + h);
            bd_denoiser_forward(net, o, P.zt, tv, 4, 0);
            lp = bd_distill_loss(NULL, NULL, o, P.zt, P.xt, P.zs, P.at, P.st, P.as, P.ss, P.w, pk, sp, BD_DISTILL_L2, 4, 3, 2, 1.0);
            net->params[i] = (float)(keep - h);
            bd_denoiser_forward(net, o, P.zt, tv, 4, 0);
            lm = bd_distill_loss(NULL, NULL, o, P.zt, P.xt, P.zs, P.at, P.st, P.as, P.ss, P.w, pk, sp, BD_DISTILL_L2, 4, 3, 2, 1.0);
            net->params[i] = keep;
            fd = (lp - lm) / (2.0 * h);
            an = net->grads[i];
            worst = fmax(worst, fabs(fd - an) / (1e-2 * fabs(an) + 1e-3 * gmax));
            checked++;
        }
        BDT_CHECK(checked > 60);
    }
    printf("  MLP student gradient vs FD: worst err / (1e-2|g| + 1e-3 max|g|) = %.3f\n", worst);
    BDT_CHECKF(worst < 1.0, "%g", worst);
    free(o); free(dout);
    problem_free(&P);
    bd_denoiser_free(net);
    bd_context_free(ctx);
}

/* End to end: a quickly trained MLP teacher on the 2-D mixture, TD with
   2 student steps, teacher DPM-Solver++(2M) on 8 sub-steps (Kt = 4):
   sparse (K = 1), B-DENSE K = 2, K = 4 uniform and K = 4 adaptive.  Each
   distilled student's 2-NFE trajectory error to the teacher (MSE of final
   samples from the same noise) must be below a fixed bound and below a
   tenth of the copied teacher's 2-step DDIM error. */
/* an MLP teacher trained 400 steps of batch 128 on the mixture (EMA
   weights); dr: the data rng, left where training stopped */
static bd_denoiser *trained_mlp_teacher(bd_context *ctx, const float *pts, bd_rng *dr) {
    bd_denoiser *teacher = NULL;
    bd_trainer *tr = NULL;
    bd_trainer_config tc = bd_trainer_config_init();
    bd_mlp_config mc = bd_mlp_config_init(2);
    float x[2 * 128];
    bd_rng r = bd_rng_init(1);
    int i;
    mc.hidden = 32;
    mc.depth = 2;
    BDT_CHECK(bd_mlp_create(ctx, &mc, &r, &teacher) == BD_SUCCESS);
    tc.adam.lr = 3e-3;
    tc.ema_decay = 0.99;
    tc.seed = 2;
    BDT_CHECK(bd_trainer_init(ctx, teacher, &tc, 128, &tr) == BD_SUCCESS);
    if (!tr) {
        bd_denoiser_free(teacher);
        return NULL;
    }
    for (i = 0; i < 400; i++) {
        gmm_sample(dr, pts, x, 128);
        BDT_CHECK(bd_trainer_step(tr, x, 128, NULL) == BD_SUCCESS);
    }
    bd_trainer_copy_ema(tr, teacher);
    bd_trainer_free(tr);
    return teacher;
}

static void test_end_to_end_mlp_td(void) {
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher;
    float pts[2 * GMM_M];
    bd_rng dr = bd_rng_init(3);
    int i, run;
    const double bound = 0.01;
    gmm_points(pts);
    teacher = trained_mlp_teacher(ctx, pts, &dr);
    if (!teacher) return;
    for (run = 0; run < 4; run++) {
        int64_t K = run == 0 ? 1 : (run == 1 ? 2 : 4), k;
        bd_denoiser *st = NULL;
        bd_distill *d = NULL;
        bd_distill_config dc = bd_distill_config_init(BD_DISTILL_TD, K, 2);
        bd_rng sr = bd_rng_init(9);
        double m0 = -1, m1 = -1, loss = 0, bl[4], first = 0;
        dc.adam.lr = 2e-3;
        dc.ema_decay = 0.95;
        dc.seed = 4;
        if (run == 3) dc.weights = BD_WEIGHTS_ADAPTIVE;
        BDT_CHECK(dc.teacher_substeps == 4 && dc.teacher_solver == BD_SAMPLER_DPMPP_2M);
        BDT_CHECK(bd_distill_student_from_teacher(teacher, K, &sr, &st) == BD_SUCCESS);
        BDT_CHECK(bd_distill_init(ctx, &dc, teacher, st, 64, &d) == BD_SUCCESS);
        if (!d) break;
        BDT_CHECK(bd_distill_eval(d, 500, 77, 0, &m0, NULL, NULL) == BD_SUCCESS);
        for (i = 0; i < 150; i++) {
            BDT_CHECK(bd_distill_step(d, NULL, 64, &loss, bl) == BD_SUCCESS);
            if (i == 0) first = loss;
            for (k = 0; k < K; k++) BDT_CHECK(bl[k] >= 0.0 && bl[k] == bl[k]);
        }
        BDT_CHECK(d->step == 150);
        BDT_CHECK(bd_distill_eval(d, 500, 77, 1, &m1, NULL, NULL) == BD_SUCCESS);
        printf("  TD 2 steps, K=%lld %-8s: loss %.2e -> %.2e; trajectory MSE copied teacher %.4f -> student %.5f\n",
               (long long)K, bd_distill_weights_name(dc.weights), first, loss, m0, m1);
        BDT_CHECKF(m1 < bound, "K=%lld: MSE %g >= %g", (long long)K, m1, bound);
        BDT_CHECKF(m1 < 0.1 * m0, "K=%lld: MSE %g not well below the copied teacher's %g", (long long)K, m1, m0);
        bd_distill_free(d);
        bd_denoiser_free(st);
    }
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}


/* CD (multistep consistency distillation) with the exact teacher and an
   MLP student: per sample the teacher interval j, z_s = alpha_s x + sigma_s eps,
   the teacher's R DDIM steps to s' (an independent double solve), and for
   every branch k its point r_k of the segment: r_k = s' -> target z' itself,
   r_k < s' -> the DDIM jump to r_k of the student's own branch k at
   (z', s') (an identical copy of the student, evaluated here), r_k > s' ->
   masked out.  The reported loss equals the masked z-space loss recomputed
   from the student's output. */
static void check_cd_targets(int64_t K, int64_t N, int64_t Kt, int64_t R) {
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher = NULL, *student = NULL, *twin = NULL;
    bd_distill *dist = NULL;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_CD, K, N);
    float pts[2 * GMM_M], x[2 * 32], zp[2], tp, o[2 * 64], xh[2], eh[2];
    bd_rng rng = bd_rng_init(21);
    double loss, bl[4], worst_z = 0, worst_b = 0, worst_n = 0, ref_loss = 0, S;
    int64_t b, k, n = 32, per, n_masked = 0, n_boundary = 0, n_net = 0;
    gmm_points(pts);
    BDT_CHECK(make_analytic(ctx, pts, &teacher) == BD_SUCCESS);
    BDT_CHECK(make_mlp(ctx, K, 5, 32, &student) == BD_SUCCESS);
    BDT_CHECK(make_mlp(ctx, K, 5, 32, &twin) == BD_SUCCESS); /* the same initial weights */
    BDT_CHECK(dc.space == BD_DISTILL_SPACE_Z && dc.teacher_solver == BD_SAMPLER_DDIM);
    dc.teacher_substeps = Kt;
    dc.teacher_refine = R;
    per = Kt / K;
    S = (double)(N * Kt);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, n, &dist) == BD_SUCCESS);
    if (!dist) { printf("  %s\n", bd_context_message(ctx)); return; }
    gmm_sample(&rng, pts, x, (int)n);
    BDT_CHECKF(bd_distill_step(dist, x, n, &loss, bl) == BD_SUCCESS, "%s", bd_context_message(ctx));
    for (b = 0; b < n; b++) {
        int64_t j = dist->idx[b], q;
        double s = 1.0 - (double)j / S, sp = 1.0 - (double)(j + 1) / S, a, sg, z[2], z0[2], ap, spg;
        int d;
        BDT_CHECK(j >= 0 && j < N * Kt);
        ref_alpha_sigma(s, &a, &sg);
        ref_alpha_sigma(sp, &ap, &spg);
        BDT_CHECK(fabs(dist->tt[b] - s) < 1e-7);
        for (d = 0; d < 2; d++) {
            z0[d] = a * x[2 * b + d] + sg * dist->eps[2 * b + d];
            worst_z = fmax(worst_z, rel_err(dist->zt[2 * b + d], z0[d]));
            z[d] = z0[d];
        }
        for (q = 1; q <= R; q++) ref_ddim(pts, z, s + (sp - s) * (double)(q - 1) / R, q == R ? sp : s + (sp - s) * (double)q / R);
        zp[0] = (float)z[0]; zp[1] = (float)z[1]; tp = (float)sp;
        BDT_CHECK(bd_denoiser_forward(twin, o, zp, &tp, 1, 0) == BD_SUCCESS);
        for (k = 0; k < K; k++) {
            int64_t m = (j / Kt) * Kt + (k + 1) * per;
            double r = 1.0 - (double)m / S, ar, sr, ck, cz, co, xz, xo;
            ref_alpha_sigma(r, &ar, &sr);
            if (m < j + 1) {
                n_masked++;
                BDT_CHECK(dist->kmask[k * n + b] == 0);
                continue;
            }
            BDT_CHECK(dist->kmask[k * n + b] == 1);
            if (m == j + 1) {
                n_boundary++;
                for (d = 0; d < 2; d++) worst_b = fmax(worst_b, rel_err(dist->zs[(k * n + b) * 2 + d], z[d]));
            } else {
                n_net++;
                bd_param_predict(BD_PARAM_V, xh, eh, o, K, k, zp, &ap, &spg, 1, 2);
                for (d = 0; d < 2; d++)
                    worst_n = fmax(worst_n, rel_err(dist->zs[(k * n + b) * 2 + d], ar * xh[d] + sr * eh[d]));
            }
            /* the student's branch k jumped from (z_s, s) to r, against the target */
            bd_param_x_coeffs(BD_PARAM_V, a, sg, &xz, &xo);
            ck = ar - sr * a / sg;
            cz = sr / sg + ck * xz;
            co = ck * xo;
            for (d = 0; d < 2; d++) {
                double e = cz * dist->zt[2 * b + d] + co * dist->sout[(b * K + k) * 2 + d] - dist->zs[(k * n + b) * 2 + d];
                ref_loss += dist->weights[k] * e * e / (2.0 * n);
            }
        }
    }
    printf("  CD K=%lld N=%lld Kt=%lld R=%lld: z_s %.1e, boundary targets %.1e (%lld), network targets %.1e (%lld), "
           "masked %lld, loss %.6g vs %.6g\n", (long long)K, (long long)N, (long long)Kt, (long long)R, worst_z, worst_b,
           (long long)n_boundary, worst_n, (long long)n_net, (long long)n_masked, loss, ref_loss);
    BDT_CHECKF(worst_z < 1e-5, "%g", worst_z);
    BDT_CHECKF(worst_b < 1e-4, "%g", worst_b);
    BDT_CHECKF(worst_n < 1e-4, "%g", worst_n);
    BDT_CHECK(n_net > 0);
    if (K > 1) BDT_CHECK(n_masked > 0);
    BDT_CHECKF(fabs(loss - ref_loss) < 1e-4 * ref_loss, "%g vs %g", loss, ref_loss);
    bd_distill_free(dist);
    bd_denoiser_free(student);
    bd_denoiser_free(twin);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}
static void test_cd_targets_exact_teacher(void) {
    bd_distill_config c1 = bd_distill_config_init(BD_DISTILL_CD, 1, 1), c2 = bd_distill_config_init(BD_DISTILL_CD, 4, 2);
    /* defaults: about 32 teacher intervals, a multiple of K per segment */
    BDT_CHECK(c1.teacher_substeps == 32 && c2.teacher_substeps == 16 && c2.space == BD_DISTILL_SPACE_Z);
    check_cd_targets(1, 1, 4, 1); /* plain CD: one segment, every target from the network but the last */
    check_cd_targets(1, 2, 3, 2); /* multistep CD, 2 fine teacher steps per interval */
    check_cd_targets(2, 2, 4, 1); /* the B-DENSE head on CD */
    check_cd_targets(4, 1, 8, 1);
}

/* CD learns: a trained MLP teacher, CD students at 1 and 2 steps (sparse
   and K = 2) reach a trajectory error well below the copied teacher's at
   the same NFE. */
static void test_end_to_end_mlp_cd(void) {
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher;
    float pts[2 * GMM_M], x[2 * 128];
    bd_rng dr = bd_rng_init(3);
    int i, run;
    /* TEST_QUICK (valgrind): the two 2-step students, fewer steps and samples */
    int quick = getenv("TEST_QUICK") != NULL, nb = quick ? 64 : 128, steps = quick ? 250 : 400;
    gmm_points(pts);
    teacher = trained_mlp_teacher(ctx, pts, &dr);
    if (!teacher) return;
    for (run = quick ? 1 : 0; run < 3; run++) {
        int64_t K = run == 2 ? 2 : 1, N = run == 0 ? 1 : 2;
        bd_denoiser *st = NULL;
        bd_distill *d = NULL;
        bd_distill_config dc = bd_distill_config_init(BD_DISTILL_CD, K, N);
        bd_rng sr = bd_rng_init(9);
        double m0 = -1, m1 = -1, loss = 0, bl[4], first = 0;
        dc.adam.lr = 2e-3;
        dc.ema_decay = 0.95;
        dc.seed = 4;
        BDT_CHECK(bd_distill_student_from_teacher(teacher, K, &sr, &st) == BD_SUCCESS);
        BDT_CHECK(bd_distill_init(ctx, &dc, teacher, st, 128, &d) == BD_SUCCESS);
        if (!d) break;
        BDT_CHECK(bd_distill_eval(d, 500, 77, 0, &m0, NULL, NULL) == BD_SUCCESS);
        for (i = 0; i < steps; i++) {
            gmm_sample(&dr, pts, x, nb);
            BDT_CHECK(bd_distill_step(d, x, nb, &loss, bl) == BD_SUCCESS);
            if (i == 0) first = loss;
        }
        BDT_CHECK(bd_distill_eval(d, 500, 77, 1, &m1, NULL, NULL) == BD_SUCCESS);
        printf("  CD %lld step(s), K=%lld, %d steps of %d: loss %.2e -> %.2e; trajectory MSE copied teacher %.4f -> "
               "student %.5f\n", (long long)N, (long long)K, steps, nb, first, loss, m0, m1);
        BDT_CHECKF(m1 < 0.25 * m0, "N=%lld K=%lld: MSE %g not well below the copied teacher's %g", (long long)N,
                   (long long)K, m1, m0);
        bd_distill_free(d);
        bd_denoiser_free(st);
    }
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}

/* PD rounds on the exact teacher with a K = 2 MLP student: a round lowers
   the 4-step trajectory error; next_round hands the EMA to an owned K-branch
   teacher, halves N on every other grid point and restarts the optimiser;
   a NaN batch returns BD_ERROR_NONFINITE and changes nothing. */
static void test_pd_rounds_and_nan_guard(void) {
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher = NULL, *st = NULL;
    bd_distill *d = NULL;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_PD, 2, 4);
    bd_trainer *tr = NULL;
    dc.teacher_substeps = 2; /* rounds: the new teacher walks the old grid */
    bd_trainer_config tc = bd_trainer_config_init();
    bd_mlp_config mc = bd_mlp_config_init(2);
    float pts[2 * GMM_M], x[2 * 64], *snap;
    bd_rng r = bd_rng_init(1), dr = bd_rng_init(5);
    double m0, m1, g4[5], loss;
    int i;
    int64_t np;
    gmm_points(pts);
    mc.hidden = 32;
    mc.depth = 2;
    BDT_CHECK(bd_mlp_create(ctx, &mc, &r, &teacher) == BD_SUCCESS);
    tc.adam.lr = 3e-3;
    tc.ema_decay = 0.99;
    BDT_CHECK(bd_trainer_init(ctx, teacher, &tc, 64, &tr) == BD_SUCCESS);
    if (!tr) return;
    for (i = 0; i < 300; i++) {
        gmm_sample(&dr, pts, x, 64);
        bd_trainer_step(tr, x, 64, NULL);
    }
    bd_trainer_copy_ema(tr, teacher);
    dc.adam.lr = 2e-3;
    dc.ema_decay = 0.95;
    BDT_CHECK(bd_distill_student_from_teacher(teacher, 2, &r, &st) == BD_SUCCESS);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, st, 64, &d) == BD_SUCCESS);
    if (!d) return;
    np = st->n_params;
    memcpy(g4, d->grid, sizeof g4);
    BDT_CHECK(bd_distill_eval(d, 400, 8, 0, &m0, NULL, NULL) == BD_SUCCESS);
    for (i = 0; i < 150; i++) {
        gmm_sample(&dr, pts, x, 64);
        BDT_CHECK(bd_distill_step(d, x, 64, &loss, NULL) == BD_SUCCESS);
    }
    BDT_CHECK(bd_distill_eval(d, 400, 8, 1, &m1, NULL, NULL) == BD_SUCCESS);
    printf("  PD K=2, 4 steps: trajectory MSE copied teacher %.2e -> student %.2e\n", m0, m1);
    BDT_CHECKF(m1 < 0.5 * m0, "%g vs %g", m1, m0);
    /* the NaN guard */
    snap = (float *)malloc(sizeof(float) * np * 3);
    memcpy(snap, st->params, sizeof(float) * np);
    memcpy(snap + np, d->ema, sizeof(float) * np);
    memcpy(snap + 2 * np, d->adam.m, sizeof(float) * np);
    {
        int64_t step = d->step, astep = d->adam.step;
        double be = d->branch_ema[0];
        x[3] = NAN;
        BDT_CHECK(bd_distill_step(d, x, 64, &loss, NULL) == BD_ERROR_NONFINITE);
        BDT_CHECK(memcmp(snap, st->params, sizeof(float) * np) == 0);
        BDT_CHECK(memcmp(snap + np, d->ema, sizeof(float) * np) == 0);
        BDT_CHECK(memcmp(snap + 2 * np, d->adam.m, sizeof(float) * np) == 0);
        BDT_CHECK(d->step == step && d->adam.step == astep && d->branch_ema[0] == be);
    }
    /* a round */
    BDT_CHECK(bd_distill_next_round(d) == BD_SUCCESS);
    BDT_CHECK(d->N == 2 && d->round == 1 && d->step == 0 && d->adam.step == 0);
    BDT_CHECK(d->grid[0] == g4[0] && d->grid[1] == g4[2] && d->grid[2] == g4[4]);
    BDT_CHECK(d->teacher == d->owned_teacher && d->teacher != teacher && d->teacher->branches == 2);
    BDT_CHECK(memcmp(d->teacher->params, snap + np, sizeof(float) * np) == 0);
    BDT_CHECK(memcmp(st->params, snap + np, sizeof(float) * np) == 0);
    BDT_CHECK(d->tgrid[0] == 1.0 && d->tgrid[2] == d->grid[1] && d->tgrid[4] == 0.0);
    gmm_sample(&dr, pts, x, 64);
    BDT_CHECK(bd_distill_step(d, x, 64, &loss, NULL) == BD_SUCCESS);
    BDT_CHECK(bd_distill_next_round(d) == BD_SUCCESS && d->N == 1);
    BDT_CHECK(bd_distill_next_round(d) == BD_ERROR_STATE);
    free(snap);
    bd_distill_free(d);
    bd_denoiser_free(st);
    bd_trainer_free(tr);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}

/* PD rounds nest: the round-r teacher is the last student, trained only at
   the times of its own grid, so the new teacher grid must BE the old
   student grid (a Karras grid here, whose midpoints in t are not on it);
   rounds with Kt != 2 would query it at times it never learnt (K = Kt = 4)
   and are refused with a message, changing nothing. */
static void test_pd_round_grids_nest(void) {
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher = NULL, *st = NULL, *st4 = NULL;
    bd_distill *d = NULL, *d4 = NULL;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_PD, 2, 4);
    bd_distill_config dc4 = bd_distill_config_init(BD_DISTILL_PD, 4, 4);
    bd_rng r = bd_rng_init(3);
    float pts[2 * GMM_M], x[2 * 8];
    double old[5];
    int i;
    gmm_points(pts);
    dc.grid = BD_GRID_KARRAS;
    dc.teacher_substeps = 2;
    dc4.teacher_substeps = 4;
    BDT_CHECK(make_mlp(ctx, 1, 3, 16, &teacher) == BD_SUCCESS);
    BDT_CHECK(bd_distill_student_from_teacher(teacher, 2, &r, &st) == BD_SUCCESS);
    BDT_CHECK(bd_distill_student_from_teacher(teacher, 4, &r, &st4) == BD_SUCCESS);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, st, 8, &d) == BD_SUCCESS);
    BDT_CHECK(dc4.teacher_substeps == 4 && bd_distill_init(ctx, &dc4, teacher, st4, 8, &d4) == BD_SUCCESS);
    if (!d || !d4) return;
    memcpy(old, d->grid, sizeof old);
    gmm_sample(&r, pts, x, 8);
    BDT_CHECK(bd_distill_step(d, x, 8, NULL, NULL) == BD_SUCCESS);
    BDT_CHECKF(bd_distill_next_round(d) == BD_SUCCESS, "%s", bd_context_message(ctx));
    BDT_CHECK(d->N == 2 && d->S == 4);
    for (i = 0; i <= 4; i++) BDT_CHECKF(d->tgrid[i] == old[i], "teacher grid %d: %.6f, old student grid %.6f", i, d->tgrid[i], old[i]);
    BDT_CHECK(d->grid[0] == old[0] && d->grid[1] == old[2] && d->grid[2] == old[4]);
    gmm_sample(&r, pts, x, 8);
    BDT_CHECK(bd_distill_step(d, x, 8, NULL, NULL) == BD_SUCCESS);
    /* teacher_refine 2 in a round: refused (the new teacher exists on its grid only) */
    {
        bd_distill *dr = NULL;
        bd_distill_config drc = dc;
        drc.grid = BD_GRID_UNIFORM_T;
        drc.teacher_refine = 2;
        BDT_CHECK(bd_distill_init(ctx, &drc, teacher, st, 8, &dr) == BD_SUCCESS);
        if (dr) BDT_CHECK(bd_distill_next_round(dr) == BD_ERROR_CONFIG && dr->N == 4);
        bd_distill_free(dr);
    }
    /* K = Kt = 4: refused, nothing changed */
    memcpy(old, d4->grid, sizeof old);
    BDT_CHECK(bd_distill_next_round(d4) == BD_ERROR_CONFIG);
    BDT_CHECK(strstr(bd_context_message(ctx), "teacher_substeps") != NULL);
    BDT_CHECK(d4->N == 4 && d4->round == 0 && d4->owned_teacher == NULL && memcmp(old, d4->grid, sizeof old) == 0);
    bd_distill_free(d);
    bd_distill_free(d4);
    bd_denoiser_free(st);
    bd_denoiser_free(st4);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}

/* K = 2: with Kt = K (one teacher step per branch) branch 0's target is the
   teacher's one-step DDIM jump from z_t, i.e. x_tilde_0 = the teacher's own
   x_hat(z_t): no trajectory information.  The PD default (Kt = 2K) and
   teacher_refine >= 2 make it a multi-step solve, which differs. */
static double branch0_vs_jump(int64_t Kt, int64_t R, int dflt) {
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher = NULL, *student = NULL;
    bd_distill *dist = NULL;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_PD, 2, 2);
    float pts[2 * GMM_M], x[2 * 16], xh[2 * 16];
    bd_rng rng = bd_rng_init(12);
    double worst = -1;
    int64_t i, n = 16;
    gmm_points(pts);
    BDT_CHECK(make_analytic(ctx, pts, &teacher) == BD_SUCCESS);
    BDT_CHECK(make_mlp(ctx, 2, 5, 16, &student) == BD_SUCCESS);
    if (dflt) BDT_CHECK(dc.teacher_substeps == 4 && dc.teacher_refine == 1);
    else dc.teacher_substeps = Kt, dc.teacher_refine = R;
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, student, n, &dist) == BD_SUCCESS);
    if (dist) {
        gmm_sample(&rng, pts, x, (int)n);
        BDT_CHECK(bd_distill_step(dist, x, n, NULL, NULL) == BD_SUCCESS);
        BDT_CHECK(bd_analytic_posterior_mean(teacher, xh, dist->zt, dist->tt, n) == BD_SUCCESS);
        worst = 0;
        for (i = 0; i < n * 2; i++) worst = fmax(worst, fabs(dist->xt[i] - xh[i])); /* branch 0 = rows 0..n-1 */
    }
    bd_distill_free(dist);
    bd_denoiser_free(student);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
    return worst;
}
static void test_k2_branch0_carries_information(void) {
    double same = branch0_vs_jump(2, 1, 0), dflt = branch0_vs_jump(0, 0, 1), refined = branch0_vs_jump(2, 3, 0);
    printf("  K=2 branch-0 target vs the teacher's 1-step jump: Kt=2 %.2e, default Kt=4 %.2e, Kt=2 refine 3 %.2e\n",
           same, dflt, refined);
    BDT_CHECKF(same >= 0 && same < 1e-4, "%g", same); /* the fault, documented */
    BDT_CHECKF(dflt > 1e-2, "%g", dflt);
    BDT_CHECKF(refined > 1e-2, "%g", refined);
}

/* agree weights: the dense group's weight is max(0, cos) of its gradient
   with the final branch's.  Unit: the weight function.  Distiller: a K = 2
   student copied from the teacher (identical branch heads), TD with one
   student step and teacher forcing, from a crafted cache whose dense state
   asks branch 0 for x_f (agreeing with the final branch's target x_f) or
   for 2 x_hat - x_f (the mirror image: conflicting).  The measured cosine
   is about +1 / -1 and the dense weight goes up / to 0. */
static void agree_case(int conflict, double *cos_out, double *w0_out) {
    enum { n = 8, D = 2, Kt = 2 };
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher = NULL, *st = NULL;
    bd_distill *d = NULL;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_TD, 2, 1);
    bd_rng r = bd_rng_init(21);
    float cache[n * (Kt + 1) * D], o[n * D], z1[n * D], xh[n * D], eh[n * D], xf[n * D], tv[n];
    double a1[n], s1[n], ah, sh, rr, c;
    bd_schedule sched;
    int64_t b, j;
    dc.teacher_substeps = Kt;
    dc.weights = BD_WEIGHTS_AGREE;
    dc.teacher_forcing = 1;
    dc.adaptive_decay = 0.0; /* the weight follows this step's cosine */
    BDT_CHECK(make_mlp(ctx, 1, 3, 16, &teacher) == BD_SUCCESS);
    BDT_CHECK(bd_distill_student_from_teacher(teacher, 2, &r, &st) == BD_SUCCESS);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, st, n, &d) == BD_SUCCESS);
    if (!d) return;
    bd_schedule_init(&sched, dc.schedule);
    bd_rng_normal(&r, z1, n * D);
    bd_rng_normal(&r, xf, n * D);
    for (b = 0; b < n; b++) {
        tv[b] = 1.0f;
        bd_schedule_alpha_sigma(&sched, 1.0, &a1[b], &s1[b]);
    }
    BDT_CHECK(bd_denoiser_forward(teacher, o, z1, tv, n, 0) == BD_SUCCESS);
    bd_param_predict(dc.param, xh, eh, o, 1, 0, z1, a1, s1, n, D);
    bd_schedule_alpha_sigma(&sched, d->tgrid[1], &ah, &sh);
    rr = sh / s1[0];
    c = ah - rr * a1[0];
    for (b = 0; b < n; b++)
        for (j = 0; j < D; j++) {
            float want = conflict ? 2 * xh[b * D + j] - xf[b * D + j] : xf[b * D + j];
            cache[(b * (Kt + 1) + 0) * D + j] = z1[b * D + j];
            cache[(b * (Kt + 1) + 1) * D + j] = (float)(rr * z1[b * D + j] + c * want);
            cache[(b * (Kt + 1) + 2) * D + j] = xf[b * D + j];
        }
    BDT_CHECK(bd_distill_set_trajectories(d, cache, n) == BD_SUCCESS);
    BDT_CHECKF(bd_distill_step(d, NULL, n, NULL, NULL) == BD_SUCCESS, "%s", bd_context_message(ctx));
    *cos_out = d->last_cos;
    *w0_out = d->weights[0];
    BDT_CHECK(d->weights[1] == 1.0);
    bd_distill_free(d);
    bd_denoiser_free(st);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}
static void test_agree_weights(void) {
    double w[3], c, cos_a = 0, w_a = -1, cos_c = 0, w_c = -1;
    c = -0.4;
    BDT_CHECK(bd_distill_branch_weights(NULL, w, BD_WEIGHTS_AGREE, 3, 0, 0, &c) == BD_SUCCESS);
    BDT_CHECK(w[0] == 0.0 && w[1] == 0.0 && w[2] == 1.0);
    c = 0.6;
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_AGREE, 3, 0, 0, &c);
    BDT_CHECK(fabs(w[0] - 0.3) < 1e-15 && w[1] == w[0] && w[2] == 1.0);
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_AGREE, 3, 0, 0, NULL);
    BDT_CHECK(w[0] == 0.0 && w[2] == 1.0);
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_AGREE, 1, 0, 0, &c);
    BDT_CHECK(w[0] == 1.0);
    agree_case(0, &cos_a, &w_a);
    agree_case(1, &cos_c, &w_c);
    printf("  agree: aligned targets cos %.3f -> dense weight %.3f; mirrored targets cos %.3f -> %.3f\n", cos_a, w_a,
           cos_c, w_c);
    BDT_CHECKF(cos_a > 0.5 && w_a > 0.5, "cos %g w %g", cos_a, w_a);
    BDT_CHECKF(cos_c < -0.5 && w_c == 0.0, "cos %g w %g", cos_c, w_c);
}

/* Steps allocate nothing after init (PD and TD on the fly), counted
   through the context allocator. */
static int64_t n_allocs = 0;
static void *count_alloc(size_t sz, void *u) { (void)u; n_allocs++; return malloc(sz); }
static void count_free(void *p, void *u) { (void)u; free(p); }
static void test_steps_do_not_allocate(void) {
    bd_context *ctx = NULL;
    bd_context_config cc = bd_context_config_init();
    bd_denoiser *teacher = NULL, *st = NULL;
    float pts[2 * GMM_M], x[2 * 16];
    bd_rng r = bd_rng_init(2);
    int m, i;
    cc.allocator.alloc = count_alloc;
    cc.allocator.free = count_free;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    gmm_points(pts);
    BDT_CHECK(make_mlp(ctx, 1, 3, 16, &teacher) == BD_SUCCESS);
    for (m = 0; m < 3; m++) {
        bd_distill *d = NULL;
        bd_distill_config dc = bd_distill_config_init(m == 2 ? BD_DISTILL_CD : m ? BD_DISTILL_TD : BD_DISTILL_PD, 2, 2);
        int64_t before;
        dc.weights = BD_WEIGHTS_ADAPTIVE;
        BDT_CHECK(bd_distill_student_from_teacher(teacher, 2, &r, &st) == BD_SUCCESS);
        BDT_CHECK(bd_distill_init(ctx, &dc, teacher, st, 16, &d) == BD_SUCCESS);
        if (!d) break;
        before = n_allocs;
        for (i = 0; i < 3; i++) {
            gmm_sample(&r, pts, x, 16);
            BDT_CHECK(bd_distill_step(d, m == 1 ? NULL : x, i == 1 ? 7 : 16, NULL, NULL) == BD_SUCCESS);
        }
        BDT_CHECKF(n_allocs == before, "method %d: %lld allocations in steps", m, (long long)(n_allocs - before));
        bd_distill_free(d);
        bd_denoiser_free(st);
    }
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}

/* Resume: save the state mid-run, continue; a fresh distiller that loads
   it continues bit-identically (TD with adaptive weights; PD after a round,
   so the owned teacher is restored too).  A mismatched distiller is refused. */
static void check_resume(bd_distill_method method, bd_distill_weights wts) {
    bd_context *ctx = make_ctx();
    bd_denoiser *teacher = NULL, *s1 = NULL, *s2 = NULL, *s3 = NULL;
    bd_distill *a = NULL, *b = NULL, *c = NULL;
    bd_distill_config dc = bd_distill_config_init(method, 2, 4);
    if (method == BD_DISTILL_PD) dc.teacher_substeps = 2; /* a round below */
    bd_distill_config dc3;
    float pts[2 * GMM_M], x[2 * 16];
    bd_rng r = bd_rng_init(4), ra, rb;
    const char *path = method == BD_DISTILL_PD ? "test_distill_state_pd.tmp.safetensors"
                       : method == BD_DISTILL_CD ? "test_distill_state_cd.tmp.safetensors" : "test_distill_state_td.tmp.safetensors";
    int data = method != BD_DISTILL_TD;
    int i, same;
    gmm_points(pts);
    dc.weights = wts;
    dc.adam.lr = 1e-3;
    BDT_CHECK(make_mlp(ctx, 1, 3, 16, &teacher) == BD_SUCCESS);
    BDT_CHECK(bd_distill_student_from_teacher(teacher, 2, &r, &s1) == BD_SUCCESS);
    BDT_CHECK(bd_distill_student_from_teacher(teacher, 2, &r, &s2) == BD_SUCCESS);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, s1, 16, &a) == BD_SUCCESS);
    BDT_CHECK(bd_distill_init(ctx, &dc, teacher, s2, 16, &b) == BD_SUCCESS);
    if (!a || !b) return;
    ra = bd_rng_init(8);
    for (i = 0; i < 4; i++) {
        gmm_sample(&ra, pts, x, 16);
        BDT_CHECK(bd_distill_step(a, data ? x : NULL, 16, NULL, NULL) == BD_SUCCESS);
    }
    if (method == BD_DISTILL_PD) BDT_CHECK(bd_distill_next_round(a) == BD_SUCCESS);
    for (i = 0; i < 2; i++) {
        gmm_sample(&ra, pts, x, 16);
        BDT_CHECK(bd_distill_step(a, data ? x : NULL, 16, NULL, NULL) == BD_SUCCESS);
    }
    BDT_CHECKF(bd_distill_save_state(a, path) == BD_SUCCESS, "%s", bd_context_message(ctx));
    BDT_CHECKF(bd_distill_load_state(b, path) == BD_SUCCESS, "%s", bd_context_message(ctx));
    rb = ra;
    for (i = 0; i < 3; i++) {
        gmm_sample(&ra, pts, x, 16);
        BDT_CHECK(bd_distill_step(a, data ? x : NULL, 16, NULL, NULL) == BD_SUCCESS);
        gmm_sample(&rb, pts, x, 16);
        BDT_CHECK(bd_distill_step(b, data ? x : NULL, 16, NULL, NULL) == BD_SUCCESS);
    }
    same = memcmp(s1->params, s2->params, sizeof(float) * s1->n_params) == 0 &&
           memcmp(a->ema, b->ema, sizeof(float) * s1->n_params) == 0 &&
           memcmp(a->adam.v, b->adam.v, sizeof(float) * s1->n_params) == 0 && a->step == b->step &&
           a->N == b->N && a->round == b->round && a->branch_ema[0] == b->branch_ema[0] && a->agree_ema == b->agree_ema && a->agree_count == b->agree_count &&
           memcmp(a->tgrid, b->tgrid, sizeof(double) * (a->S + 1)) == 0;
    if (method == BD_DISTILL_PD)
        same = same && b->teacher == b->owned_teacher &&
               memcmp(a->teacher->params, b->teacher->params, sizeof(float) * s1->n_params) == 0;
    printf("  %s resume after %lld steps (round %lld, N %lld): %s\n", bd_distill_method_name(method),
           (long long)a->step, (long long)a->round, (long long)a->N, same ? "bit-identical" : "DIFFERENT");
    BDT_CHECK(same);
    /* another K is refused */
    dc3 = bd_distill_config_init(method, 4, 4);
    BDT_CHECK(bd_distill_student_from_teacher(teacher, 4, &r, &s3) == BD_SUCCESS);
    BDT_CHECK(bd_distill_init(ctx, &dc3, teacher, s3, 16, &c) == BD_SUCCESS);
    if (c) BDT_CHECK(bd_distill_load_state(c, path) == BD_ERROR_CONFIG);
    BDT_CHECK(bd_distill_load_state(b, "no_such_dir_bdense/state.safetensors") == BD_ERROR_IO);
    remove(path);
    bd_distill_free(a); bd_distill_free(b); bd_distill_free(c);
    bd_denoiser_free(s1); bd_denoiser_free(s2); bd_denoiser_free(s3);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}
static void test_resume_bit_exact(void) {
    check_resume(BD_DISTILL_TD, BD_WEIGHTS_ADAPTIVE);
    check_resume(BD_DISTILL_TD, BD_WEIGHTS_AGREE);
    check_resume(BD_DISTILL_PD, BD_WEIGHTS_ADAPTIVE);
    check_resume(BD_DISTILL_CD, BD_WEIGHTS_UNIFORM);
}

int main(void) {
    BDT_RUN(test_target_formula);
    BDT_RUN(test_zero_loss_at_targets);
    BDT_RUN(test_loss_gradient_fd);
    BDT_RUN(test_z_vs_x_scale);
    BDT_RUN(test_branch_weights);
    BDT_RUN(test_names);
    BDT_RUN(test_teacher_grid);
    BDT_RUN(test_config_errors);
    BDT_RUN(test_pd_targets_exact_teacher);
    BDT_RUN(test_td_targets_exact_teacher);
    BDT_RUN(test_td_trajectories_solver);
    BDT_RUN(test_td_stream_matches_cache);
    BDT_RUN(test_gradcheck_mlp_student);
    BDT_RUN(test_end_to_end_mlp_td);
    BDT_RUN(test_cd_targets_exact_teacher);
    BDT_RUN(test_end_to_end_mlp_cd);
    BDT_RUN(test_pd_rounds_and_nan_guard);
    BDT_RUN(test_pd_round_grids_nest);
    BDT_RUN(test_k2_branch0_carries_information);
    BDT_RUN(test_agree_weights);
    BDT_RUN(test_steps_do_not_allocate);
    BDT_RUN(test_resume_bit_exact);
    return BDT_SUMMARY("test_distill");
}
