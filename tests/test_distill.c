/* test_distill.c - B-DENSE distillation (SPEC 5): branch targets, the
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
/* x_tilde of SPEC 5, computed here in double, and its defining property:
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
    /* adaptive: every dense branch contributes the same expected amount,
       together as much as the final branch, which keeps weight 1/2 */
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_ADAPTIVE, K, 0, 0, ema);
    BDT_CHECK(w[3] == 0.5);
    for (k = 0, s = 0; k < K - 1; k++) {
        s += w[k] * ema[k];
        BDT_CHECKF(fabs(w[k] * ema[k] - w[0] * ema[0]) < 1e-12, "k %d", k);
    }
    BDT_CHECKF(fabs(s - w[3] * ema[3]) < 1e-12, "dense %g final %g", s, w[3] * ema[3]);
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_ADAPTIVE, K, 0, 0, NULL);
    BDT_CHECK(fabs(w[0] - 1.0 / 6.0) < 1e-15 && w[3] == 0.5);
    bd_distill_branch_weights(NULL, w, BD_WEIGHTS_ADAPTIVE, 1, 0, 0, ema);
    BDT_CHECK(w[0] == 1.0);
}

static void test_names(void) {
    bd_distill_weights wk;
    bd_distill_method m;
    int i;
    for (i = 0; i < 6; i++) {
        BDT_CHECK(bd_distill_weights_parse(bd_distill_weights_name((bd_distill_weights)i), &wk) == BD_SUCCESS);
        BDT_CHECK((int)wk == i);
    }
    BDT_CHECK(bd_distill_weights_parse("nope", &wk) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_distill_method_parse("td", &m) == BD_SUCCESS && m == BD_DISTILL_TD);
    BDT_CHECK(bd_distill_method_parse("pd", &m) == BD_SUCCESS && m == BD_DISTILL_PD);
}

int main(void) {
    BDT_RUN(test_target_formula);
    BDT_RUN(test_zero_loss_at_targets);
    BDT_RUN(test_loss_gradient_fd);
    BDT_RUN(test_z_vs_x_scale);
    BDT_RUN(test_branch_weights);
    BDT_RUN(test_names);
    return BDT_SUMMARY("test_distill");
}
