/* Schedules, logSNR and its inverse, parametrisations, time grids (docs/spec.md sec. 1, 2, 4). */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

static void test_alpha_sigma_unit(void) {
    bd_schedule s;
    int k, i;
    for (k = 0; k < 2; k++) {
        double worst = 0.0;
        BDT_CHECK(bd_schedule_init(&s, (bd_schedule_kind)k) == BD_SUCCESS);
        for (i = 0; i <= 4000; i++) {
            double t = i / 4000.0, a, sg, e;
            bd_schedule_alpha_sigma(&s, t, &a, &sg);
            e = fabs(a * a + sg * sg - 1.0);
            if (e > worst) worst = e;
            BDT_CHECKF(a > 0.0 && a <= 1.0 && sg >= 0.0 && sg <= 1.0, "%s t=%g a=%g s=%g", bd_schedule_name(s.kind), t, a, sg);
        }
        printf("  %s: max |alpha^2 + sigma^2 - 1| = %.3g\n", bd_schedule_name(s.kind), worst);
        BDT_CHECK(worst < 1e-14);
        /* monotone: logSNR strictly decreasing on (0, 1) outside the cosine clamp */
        for (i = 1; i < 999; i++)
            BDT_CHECKF(bd_schedule_logsnr(&s, i / 1000.0) > bd_schedule_logsnr(&s, (i + 1) / 1000.0),
                       "%s not decreasing at %d", bd_schedule_name(s.kind), i);
        BDT_CHECK(bd_schedule_logsnr(&s, 0.0) == HUGE_VAL);
    }
}

static void test_cosine_formula(void) {
    bd_schedule s;
    double ts[5] = {0.0, 0.1, 0.5, 0.9, 0.999};
    int i;
    bd_schedule_init(&s, BD_SCHEDULE_COSINE);
    for (i = 0; i < 5; i++) {
        double sh = 0.008, t = ts[i], a, sg;
        double ref = cos(0.5 * 3.14159265358979323846 * (t + sh) / (1 + sh)) /
                     cos(0.5 * 3.14159265358979323846 * sh / (1 + sh));
        if (ref < 1e-4) ref = 1e-4;
        bd_schedule_alpha_sigma(&s, t, &a, &sg);
        BDT_CHECKF(fabs(a - ref) < 1e-14, "t=%g alpha %.17g vs %.17g", t, a, ref);
    }
    /* the clamp near t = 1 keeps logSNR finite */
    {
        double a, sg;
        bd_schedule_alpha_sigma(&s, 1.0, &a, &sg);
        BDT_CHECKF(a == 1e-4, "alpha(1) = %.17g", a);
        BDT_CHECK(isfinite(bd_schedule_logsnr(&s, 1.0)));
        printf("  cosine: logSNR(1) = %.6f\n", bd_schedule_logsnr(&s, 1.0));
    }
}

static void test_linear_table(void) {
    bd_schedule s;
    double prod = 1.0, worst = 0.0;
    int i;
    bd_schedule_init(&s, BD_SCHEDULE_LINEAR);
    BDT_CHECK(s.log_alpha_bar[0] == 0.0);
    for (i = 1; i <= 1000; i++) {
        /* beta = numpy.linspace(1e-4, 0.02, 1000), computed here independently */
        double beta = 1e-4 + (0.02 - 1e-4) * (double)(i - 1) / 999.0, a, sg, e;
        prod *= 1.0 - beta;
        e = fabs(s.log_alpha_bar[i] - log(prod)) / fabs(log(prod));
        if (e > worst) worst = e;
        /* at integer i, alpha_t^2 is the table value itself */
        bd_schedule_alpha_sigma(&s, i / 1000.0, &a, &sg);
        BDT_CHECKF(fabs(a * a - prod) <= 1e-12 * prod + 1e-300, "i=%d alpha^2 %.17g prod %.17g", i, a * a, prod);
    }
    printf("  linear: max rel |table - log prod(1-beta)| = %.3g, alpha_bar(1) = %.6g\n", worst, prod);
    BDT_CHECK(worst < 1e-12);
    /* between entries, log(alpha_bar) is linear */
    for (i = 0; i < 1000; i += 37) {
        double a0, a1, am, s0;
        bd_schedule_alpha_sigma(&s, i / 1000.0, &a0, &s0);
        bd_schedule_alpha_sigma(&s, (i + 1) / 1000.0, &a1, &s0);
        bd_schedule_alpha_sigma(&s, (i + 0.25) / 1000.0, &am, &s0);
        BDT_CHECKF(fabs(log(am) - (0.75 * log(a0) + 0.25 * log(a1))) < 1e-12, "interp at %d", i);
    }
}

static void test_logsnr_inverse(void) {
    bd_schedule s;
    int k, i;
    for (k = 0; k < 2; k++) {
        double worst = 0.0;
        bd_schedule_init(&s, (bd_schedule_kind)k);
        for (i = 1; i < 1000; i++) {
            double t = i / 1000.0 - 0.00037, l = bd_schedule_logsnr(&s, t), t2, e;
            if (k == 0 && bd_schedule_logsnr(&s, t) <= bd_schedule_logsnr(&s, 1.0)) continue; /* clamp */
            t2 = bd_schedule_t_from_logsnr(&s, l);
            e = fabs(t2 - t);
            if (e > worst) worst = e;
        }
        /* tiny t (the grid's t_min region) */
        for (i = 1; i < 8; i++) {
            double t = pow(10.0, -i * 0.7), t2 = bd_schedule_t_from_logsnr(&s, bd_schedule_logsnr(&s, t));
            BDT_CHECKF(fabs(t2 - t) <= 1e-9 * t, "%s tiny t=%g got %.17g", bd_schedule_name(s.kind), t, t2);
        }
        printf("  %s: max |t - t(logSNR(t))| = %.3g\n", bd_schedule_name(s.kind), worst);
        BDT_CHECK(worst < 1e-12);
        BDT_CHECK(bd_schedule_t_from_logsnr(&s, -1e9) == 1.0);
        BDT_CHECK(bd_schedule_t_from_logsnr(&s, HUGE_VAL) == 0.0);
    }
}

static void test_grids(void) {
    bd_schedule s;
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    int64_t steps_list[5] = {1, 2, 3, 8, 50};
    double g[51];
    int k, gk, si;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    for (k = 0; k < 2; k++) {
        double tmin, a, sg;
        bd_schedule_init(&s, (bd_schedule_kind)k);
        tmin = bd_schedule_t_min(&s);
        bd_schedule_alpha_sigma(&s, tmin, &a, &sg);
        printf("  %s: t_min = %.10g, sigma/alpha there = %.12g\n", bd_schedule_name(s.kind), tmin, sg / a);
        BDT_CHECKF(fabs(sg / a - 0.002) < 1e-12, "sigma/alpha at t_min = %.17g", sg / a);
        BDT_CHECK(tmin > 0.0 && tmin < 0.01);
        for (gk = 0; gk < 3; gk++)
            for (si = 0; si < 5; si++) {
                int64_t S = steps_list[si], i;
                BDT_CHECK(bd_time_grid(ctx, &s, (bd_grid_kind)gk, S, g) == BD_SUCCESS);
                BDT_CHECKF(g[0] == 1.0 && g[S] == 0.0, "%s S=%lld ends %g %g", bd_grid_name((bd_grid_kind)gk), (long long)S, g[0], g[S]);
                for (i = 0; i < S; i++) BDT_CHECK(g[i] > g[i + 1]);
                if (gk == BD_GRID_UNIFORM_T) {
                    for (i = 0; i <= S; i++) BDT_CHECK(fabs(g[i] - (1.0 - (double)i / S)) < 1e-15);
                } else if (S >= 2) {
                    BDT_CHECKF(g[S - 1] == tmin, "last non-zero time %g vs t_min %g", g[S - 1], tmin);
                    /* spacing: uniform in logSNR or in (sigma/alpha)^(1/7) */
                    for (i = 1; i + 1 < S; i++) {
                        double f0, f1, f2;
                        if (gk == BD_GRID_LOGSNR) {
                            f0 = bd_schedule_logsnr(&s, g[i - 1]); f1 = bd_schedule_logsnr(&s, g[i]); f2 = bd_schedule_logsnr(&s, g[i + 1]);
                        } else {
                            f0 = pow(exp(-0.5 * bd_schedule_logsnr(&s, g[i - 1])), 1.0 / 7.0);
                            f1 = pow(exp(-0.5 * bd_schedule_logsnr(&s, g[i])), 1.0 / 7.0);
                            f2 = pow(exp(-0.5 * bd_schedule_logsnr(&s, g[i + 1])), 1.0 / 7.0);
                        }
                        BDT_CHECKF(fabs((f1 - f0) - (f2 - f1)) < 1e-8 * (1.0 + fabs(f1 - f0)),
                                   "%s %s S=%lld spacing at %lld: %.12g vs %.12g", bd_schedule_name(s.kind),
                                   bd_grid_name((bd_grid_kind)gk), (long long)S, (long long)i, f1 - f0, f2 - f1);
                    }
                }
            }
    }
    BDT_CHECK(bd_time_grid(ctx, &s, BD_GRID_LOGSNR, 0, g) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(strstr(bd_context_message(ctx), "steps") != NULL);
    BDT_CHECK(bd_time_grid(ctx, &s, (bd_grid_kind)7, 4, g) == BD_ERROR_INVALID_ARGUMENT);
    bd_context_free(ctx);
}

static void test_param_roundtrip(void) {
    bd_rng r = bd_rng_init(5);
    enum { N = 6, D = 5 };
    float x[N * D], eps[N * D], z[N * D], tgt[N * D], xh[N * D], eh[N * D];
    double al[N], sg[N];
    bd_schedule s;
    int p, n, i;
    bd_schedule_init(&s, BD_SCHEDULE_COSINE);
    bd_rng_normal(&r, x, N * D);
    bd_rng_normal(&r, eps, N * D);
    for (n = 0; n < N; n++) bd_schedule_alpha_sigma(&s, 0.02 + 0.19 * n, &al[n], &sg[n]);
    for (n = 0; n < N; n++)
        for (i = 0; i < D; i++) z[n * D + i] = (float)(al[n] * x[n * D + i] + sg[n] * eps[n * D + i]);
    for (p = 0; p < 3; p++) {
        double ex = 0.0, ee = 0.0, ec = 0.0;
        bd_param_target((bd_param_kind)p, tgt, x, eps, al, sg, N, D);
        /* the target read back as an output gives x and eps back */
        bd_param_predict((bd_param_kind)p, xh, eh, tgt, 1, 0, z, al, sg, N, D);
        for (n = 0; n < N; n++) {
            double a, c;
            bd_param_x_coeffs((bd_param_kind)p, al[n], sg[n], &a, &c);
            for (i = 0; i < D; i++) {
                int j = n * D + i;
                double d1 = fabs(xh[j] - x[j]), d2 = fabs(eh[j] - eps[j]), d3 = fabs(a * z[j] + c * tgt[j] - xh[j]);
                if (d1 > ex) ex = d1;
                if (d2 > ee) ee = d2;
                if (d3 > ec) ec = d3;
            }
        }
        printf("  %s: max |x_hat - x| %.2g  |eps_hat - eps| %.2g  |a z + c o - x_hat| %.2g\n",
               bd_param_name((bd_param_kind)p), ex, ee, ec);
        BDT_CHECK(ex < 1e-4 && ee < 1e-4 && ec < 1e-4);
    }
    /* branch selection: o (N, K*D), branch 1 of 2 */
    {
        float o[N * 2 * D];
        for (n = 0; n < N; n++)
            for (i = 0; i < D; i++) { o[(n * 2) * D + i] = 100.0f; o[(n * 2 + 1) * D + i] = x[n * D + i]; }
        bd_param_predict(BD_PARAM_X0, xh, NULL, o, 2, 1, z, al, sg, N, D);
        BDT_CHECK(bdt_close_ratio(xh, x, N * D, 1e-30, 0.0, NULL) < 1.0); /* exact */
    }
}

static void test_names(void) {
    int k;
    for (k = 0; k < 3; k++) {
        bd_param_kind p;
        bd_grid_kind g;
        BDT_CHECK(bd_param_parse(bd_param_name((bd_param_kind)k), &p) == BD_SUCCESS && (int)p == k);
        BDT_CHECK(bd_grid_parse(bd_grid_name((bd_grid_kind)k), &g) == BD_SUCCESS && (int)g == k);
    }
    for (k = 0; k < 2; k++) {
        bd_schedule_kind s;
        BDT_CHECK(bd_schedule_parse(bd_schedule_name((bd_schedule_kind)k), &s) == BD_SUCCESS && (int)s == k);
    }
    {
        bd_param_kind p;
        BDT_CHECK(bd_param_parse("epsilon", &p) == BD_ERROR_INVALID_ARGUMENT);
        BDT_CHECK(bd_schedule_init(NULL, BD_SCHEDULE_COSINE) == BD_ERROR_INVALID_ARGUMENT);
    }
}

int main(void) {
    BDT_RUN(test_alpha_sigma_unit);
    BDT_RUN(test_cosine_formula);
    BDT_RUN(test_linear_table);
    BDT_RUN(test_logsnr_inverse);
    BDT_RUN(test_grids);
    BDT_RUN(test_param_roundtrip);
    BDT_RUN(test_names);
    return BDT_SUMMARY("test_schedule");
}
