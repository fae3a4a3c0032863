/* Samplers against the exact (analytic) denoiser: DDIM exactness on a point
   mass, convergence orders on a Gaussian whose probability-flow ODE is
   solved in closed form, DDPM moments, and the sampler object's contract
   (NFE, chunking, custom grids, errors, no allocation per run). */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

static long g_allocs = 0;
static void *count_alloc(size_t n, void *ud) { (void)ud; g_allocs++; return malloc(n); }
static void count_free(void *p, void *ud) { (void)ud; free(p); }

static bd_context *new_ctx(void) {
    bd_context *ctx = NULL;
    bd_context_config cc = bd_context_config_init();
    cc.allocator.alloc = count_alloc;
    cc.allocator.free = count_free;
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return NULL;
    return ctx;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    int64_t i;
    for (i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return 1e30;
        if (d > m) m = d;
    }
    return m;
}

/* exact PF-ODE flow for data N(mu, sd^2 I) from (z, t) to time u, per dim:
   (z_u - alpha_u mu)/sqrt(alpha_u^2 sd^2 + sigma_u^2) is conserved */
static void gaussian_flow(float *out, const float *z, const float *mu, double sd, int64_t n,
                          int64_t D, const bd_schedule *s, double t, double u) {
    double at, st, au, su, rt, ru;
    int64_t i;
    bd_schedule_alpha_sigma(s, t, &at, &st);
    bd_schedule_alpha_sigma(s, u, &au, &su);
    rt = sqrt(at * at * sd * sd + st * st);
    ru = sqrt(au * au * sd * sd + su * su);
    for (i = 0; i < n * D; i++) {
        double m = mu[i % D];
        out[i] = (float)(au * m + ru * ((double)z[i] - at * m) / rt);
    }
}

/* ---- DDIM is exact on a point mass, at every step count ---- */
typedef struct { const bd_schedule *s; const float *z1; const float *mu; int64_t D; double worst; } pm_check;
static int pm_callback(void *ud, int64_t step, double t, double s, const float *z, const float *x_hat,
                       int64_t n, int64_t D, int64_t first) {
    pm_check *c = (pm_check *)ud;
    float ref[64];
    int64_t i;
    (void)step; (void)s; (void)x_hat;
    /* for a point mass x = mu the flow keeps (z - alpha mu)/sigma */
    gaussian_flow(ref, c->z1 + first * D, c->mu, 0.0, n, D, c->s, 1.0, t);
    for (i = 0; i < n * D; i++) {
        double d = fabs((double)z[i] - (double)ref[i]);
        if (d > c->worst) c->worst = d;
    }
    return 0;
}

static void test_ddim_point_mass_exact(void) {
    enum { N = 8, D = 3 };
    float mu[D] = {0.25f, -0.7f, 0.9f}, z1[N * D], x[N * D], target[N * D];
    int64_t steps[4] = {1, 2, 5, 17};
    bd_context *ctx = new_ctx();
    int sk, gk, si, i;
    for (sk = 0; sk < 2; sk++) {
        bd_analytic_config ac = bd_analytic_config_init(D, mu, 1, 0.0);
        bd_denoiser *den = NULL;
        bd_sampler *smp = NULL;
        bd_schedule s;
        double worst_out = 0.0, worst_path = 0.0;
        ac.schedule = (bd_schedule_kind)sk;
        BDT_CHECK(bd_analytic_create(ctx, &ac, &den) == BD_SUCCESS);
        BDT_CHECK(bd_sampler_init(ctx, den, N, &smp) == BD_SUCCESS);
        bd_schedule_init(&s, ac.schedule);
        bd_noise_fill(z1, N * D, 11);
        for (i = 0; i < N * D; i++) target[i] = mu[i % D];
        for (gk = 0; gk < 3; gk++)
            for (si = 0; si < 4; si++) {
                bd_sampler_config c = bd_sampler_config_init(BD_SAMPLER_DDIM, steps[si]);
                pm_check chk;
                double e;
                chk.s = &s; chk.z1 = z1; chk.mu = mu; chk.D = D; chk.worst = 0.0;
                c.schedule = ac.schedule;
                c.grid = (bd_grid_kind)gk;
                c.callback = pm_callback;
                c.user_data = &chk;
                memcpy(x, z1, sizeof x);
                BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, NULL) == BD_SUCCESS);
                e = max_abs_diff(x, target, N * D);
                if (e > worst_out) worst_out = e;
                if (chk.worst > worst_path) worst_path = chk.worst;
            }
        printf("  %s: DDIM on a point mass, max |x - mu| = %.2g, max |z_t - exact z_t| on the path = %.2g\n",
               bd_schedule_name(ac.schedule), worst_out, worst_path);
        BDT_CHECK(worst_out < 2e-6);
        BDT_CHECK(worst_path < 2e-5);
        bd_sampler_free(smp);
        bd_denoiser_free(den);
    }
    bd_context_free(ctx);
}

/* ---- convergence orders against the closed-form ODE solution ---- */
static void test_convergence_orders(void) {
    enum { N = 64, D = 4 };
    float mu[D] = {0.3f, -0.5f, 0.8f, 0.0f}, z1[N * D], ref[N * D], x[N * D];
    const double sd = 0.5;
    const int64_t S1 = 64, S2 = 128;
    bd_sampler_kind kinds[4] = {BD_SAMPLER_DDIM, BD_SAMPLER_EULER, BD_SAMPLER_HEUN, BD_SAMPLER_DPMPP_2M};
    double expect[4] = {1.0, 1.0, 2.0, 2.0};
    bd_context *ctx = new_ctx();
    int sk, ki;
    for (sk = 0; sk < 2; sk++) {
        bd_analytic_config ac = bd_analytic_config_init(D, mu, 1, sd);
        bd_denoiser *den = NULL;
        bd_sampler *smp = NULL;
        bd_schedule s;
        ac.schedule = (bd_schedule_kind)sk;
        BDT_CHECK(bd_analytic_create(ctx, &ac, &den) == BD_SUCCESS);
        BDT_CHECK(bd_sampler_init(ctx, den, N, &smp) == BD_SUCCESS);
        bd_schedule_init(&s, ac.schedule);
        bd_noise_fill(z1, N * D, 7);
        gaussian_flow(ref, z1, mu, sd, N, D, &s, 1.0, 0.0);
        for (ki = 0; ki < 4; ki++) {
            double e1, e2, p;
            int64_t nfe1 = 0, nfe2 = 0;
            bd_sampler_config c = bd_sampler_config_init(kinds[ki], S1);
            c.schedule = ac.schedule;
            c.grid = BD_GRID_LOGSNR;
            memcpy(x, z1, sizeof x);
            BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, &nfe1) == BD_SUCCESS);
            e1 = max_abs_diff(x, ref, N * D);
            c.steps = S2;
            memcpy(x, z1, sizeof x);
            BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, &nfe2) == BD_SUCCESS);
            e2 = max_abs_diff(x, ref, N * D);
            p = log(e1 / e2) / log(2.0);
            printf("  %s %-8s logSNR grid: err(S=%lld, %lld NFE) = %.3e, err(S=%lld, %lld NFE) = %.3e, order %.2f\n",
                   bd_schedule_name(ac.schedule), bd_sampler_name(kinds[ki]), (long long)S1, (long long)nfe1, e1,
                   (long long)S2, (long long)nfe2, e2, p);
            BDT_CHECKF(fabs(p - expect[ki]) < 0.3, "%s order %.3f, expected %.0f", bd_sampler_name(kinds[ki]), p, expect[ki]);
            BDT_CHECK(e2 < e1 && e2 < 0.1);
            BDT_CHECK(nfe2 == (kinds[ki] == BD_SAMPLER_HEUN ? 2 * S2 - 2 : S2));
        }
        /* few steps on the default (uniform t) grid: Heun's first step from
           t = 1 is Euler, so Heun is never worse than DDIM at equal steps
           (before: cosine, 8 steps, error 12 vs DDIM's 0.24) */
        {
            double eh, ed;
            bd_sampler_config c = bd_sampler_config_init(BD_SAMPLER_HEUN, 8);
            c.schedule = ac.schedule;
            memcpy(x, z1, sizeof x);
            BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, NULL) == BD_SUCCESS);
            eh = max_abs_diff(x, ref, N * D);
            c.kind = BD_SAMPLER_DDIM;
            memcpy(x, z1, sizeof x);
            BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, NULL) == BD_SUCCESS);
            ed = max_abs_diff(x, ref, N * D);
            printf("  %s uniform-t grid, 8 steps: heun err %.3e, ddim err %.3e\n", bd_schedule_name(ac.schedule), eh, ed);
            BDT_CHECKF(eh < ed, "heun %.3e vs ddim %.3e", eh, ed);
        }
        bd_sampler_free(smp);
        bd_denoiser_free(den);
    }
    bd_context_free(ctx);
}

/* ---- DDIM (eta 0) and EDM Euler are the same method; DDIM eta = 1 is DDPM ---- */
static void test_sampler_equivalences(void) {
    enum { N = 32, D = 2 };
    float pts[3 * D] = {-1.0f, 0.0f, 1.0f, 0.5f, 0.0f, -0.8f};
    float z1[N * D], a[N * D], b[N * D];
    bd_context *ctx = new_ctx();
    bd_analytic_config ac = bd_analytic_config_init(D, pts, 3, 0.1);
    bd_denoiser *den = NULL;
    bd_sampler *smp = NULL;
    bd_sampler_config c;
    bd_rng r1, r2;
    double d;
    BDT_CHECK(bd_analytic_create(ctx, &ac, &den) == BD_SUCCESS);
    BDT_CHECK(bd_sampler_init(ctx, den, N, &smp) == BD_SUCCESS);
    bd_noise_fill(z1, N * D, 3);
    c = bd_sampler_config_init(BD_SAMPLER_DDIM, 16);
    memcpy(a, z1, sizeof a);
    BDT_CHECK(bd_sampler_run(smp, &c, a, N, NULL, NULL) == BD_SUCCESS);
    c.kind = BD_SAMPLER_EULER;
    memcpy(b, z1, sizeof b);
    BDT_CHECK(bd_sampler_run(smp, &c, b, N, NULL, NULL) == BD_SUCCESS);
    d = max_abs_diff(a, b, N * D);
    printf("  max |DDIM - Euler| (16 steps, mixture) = %.2g\n", d);
    BDT_CHECK(d < 1e-4);
    c.kind = BD_SAMPLER_DDIM;
    c.eta = 1.0;
    r1 = bd_rng_init(99);
    r2 = bd_rng_init(99);
    memcpy(a, z1, sizeof a);
    BDT_CHECK(bd_sampler_run(smp, &c, a, N, &r1, NULL) == BD_SUCCESS);
    c.kind = BD_SAMPLER_DDPM;
    memcpy(b, z1, sizeof b);
    BDT_CHECK(bd_sampler_run(smp, &c, b, N, &r2, NULL) == BD_SUCCESS);
    d = max_abs_diff(a, b, N * D);
    printf("  max |DDIM(eta=1) - DDPM| (same noise) = %.2g\n", d);
    BDT_CHECK(d < 1e-4);
    /* eta = 0.5 is stochastic: differs from eta = 0 and from eta = 1 */
    c.kind = BD_SAMPLER_DDIM;
    c.eta = 0.5;
    r1 = bd_rng_init(99);
    memcpy(a, z1, sizeof a);
    BDT_CHECK(bd_sampler_run(smp, &c, a, N, &r1, NULL) == BD_SUCCESS);
    BDT_CHECK(max_abs_diff(a, b, N * D) > 1e-3);
    bd_sampler_free(smp);
    bd_denoiser_free(den);
    bd_context_free(ctx);
}

/* ---- DDPM ancestral sampling reproduces the data's moments ---- */
static void test_ddpm_moments(void) {
    enum { N = 4000, D = 2 };
    static float x[N * D];
    float one[D] = {0.4f, -0.3f};
    float two[2 * D] = {-0.6f, 0.2f, 0.6f, -0.2f};
    bd_context *ctx = new_ctx();
    int which;
    for (which = 0; which < 2; which++) {
        double sd = which == 0 ? 0.5 : 0.15, mean[D] = {0, 0}, var[D] = {0, 0}, tm[D], tv[D];
        bd_analytic_config ac = bd_analytic_config_init(D, which == 0 ? one : two, which == 0 ? 1 : 2, sd);
        bd_denoiser *den = NULL;
        bd_sampler *smp = NULL;
        bd_sampler_config c = bd_sampler_config_init(BD_SAMPLER_DDPM, 1000);
        bd_rng rng = bd_rng_init(1234 + which);
        int64_t i, k;
        BDT_CHECK(bd_analytic_create(ctx, &ac, &den) == BD_SUCCESS);
        BDT_CHECK(bd_sampler_init(ctx, den, 512, &smp) == BD_SUCCESS);
        bd_noise_fill(x, N * D, 77 + which);
        BDT_CHECK(bd_sampler_run(smp, &c, x, N, &rng, NULL) == BD_SUCCESS);
        for (i = 0; i < N; i++)
            for (k = 0; k < D; k++) mean[k] += x[i * D + k] / (double)N;
        for (i = 0; i < N; i++)
            for (k = 0; k < D; k++) var[k] += (x[i * D + k] - mean[k]) * (x[i * D + k] - mean[k]) / (double)(N - 1);
        for (k = 0; k < D; k++) {
            if (which == 0) {
                tm[k] = one[k];
                tv[k] = sd * sd;
            } else { /* equal mixture: mean of means, var = sd^2 + var of means */
                tm[k] = 0.5 * (two[k] + two[D + k]);
                tv[k] = sd * sd + 0.25 * (two[k] - two[D + k]) * (two[k] - two[D + k]);
            }
            printf("  %s dim %lld: mean %.4f (true %.4f), var %.4f (true %.4f)\n",
                   which == 0 ? "gaussian" : "mixture ", (long long)k, mean[k], tm[k], var[k], tv[k]);
            /* 4 standard errors of the mean and of the variance (sd of the
               sample variance ~ sqrt(2/N) var for near-Gaussian data) + 2% bias */
            BDT_CHECK(fabs(mean[k] - tm[k]) < 4.0 * sqrt(tv[k] / N));
            BDT_CHECK(fabs(var[k] - tv[k]) < (4.0 * sqrt(2.0 / N) + 0.02) * tv[k]);
        }
        bd_sampler_free(smp);
        bd_denoiser_free(den);
    }
    bd_context_free(ctx);
}

/* ---- contract: chunking, custom grids, NFE, no allocation per run ---- */
static void test_contract(void) {
    enum { N = 10, D = 3 };
    float pts[2 * D] = {1, 0, 0, 0, 1, -1};
    float z1[N * D], a[N * D], b[N * D], ref[N * D];
    double grid[BD_SAMPLER_MAX_STEPS + 1];
    bd_context *ctx = new_ctx();
    bd_analytic_config ac = bd_analytic_config_init(D, pts, 2, 0.2);
    bd_denoiser *den = NULL;
    bd_sampler *small = NULL, *big = NULL;
    bd_sampler_config c;
    int ki;
    long before;
    ac.branches = 3;
    BDT_CHECK(bd_analytic_create(ctx, &ac, &den) == BD_SUCCESS);
    BDT_CHECK(bd_sampler_init(ctx, den, 4, &small) == BD_SUCCESS);
    BDT_CHECK(bd_sampler_init(ctx, den, 16, &big) == BD_SUCCESS);
    bd_noise_fill(z1, N * D, 5);
    bd_noise_fill(a, N * D, 5);
    BDT_CHECK(bdt_close_ratio(a, z1, N * D, 1e-30, 0.0, NULL) < 1.0); /* same seed, same noise */
    bd_noise_fill(a, N * D, 6);
    BDT_CHECK(memcmp(a, z1, sizeof a) != 0);
    for (ki = 0; ki < 5; ki++) {
        bd_rng r1 = bd_rng_init(1), r2 = bd_rng_init(1);
        int64_t nfe_a = 0, nfe_b = 0;
        c = bd_sampler_config_init((bd_sampler_kind)ki, 6);
        memcpy(a, z1, sizeof a);
        memcpy(b, z1, sizeof b);
        before = g_allocs;
        BDT_CHECK(bd_sampler_run(small, &c, a, N, &r1, &nfe_a) == BD_SUCCESS); /* 3 chunks */
        BDT_CHECK(bd_sampler_run(big, &c, b, N, &r2, &nfe_b) == BD_SUCCESS);
        BDT_CHECKF(g_allocs == before, "%s allocated %ld times", bd_sampler_name(c.kind), g_allocs - before);
        BDT_CHECK(nfe_a == nfe_b && nfe_a == (ki == BD_SAMPLER_HEUN ? 10 : 6));
        if (ki != BD_SAMPLER_DDPM) /* deterministic: chunking changes nothing */
            BDT_CHECKF(memcmp(a, b, sizeof a) == 0, "%s chunked differs", bd_sampler_name(c.kind));
    }
    /* a caller grid equal to the built-in one gives the same samples */
    c = bd_sampler_config_init(BD_SAMPLER_DPMPP_2M, 9);
    BDT_CHECK(bd_sampler_grid(ctx, &c, grid) == BD_SUCCESS);
    memcpy(a, z1, sizeof a);
    BDT_CHECK(bd_sampler_run(big, &c, a, N, NULL, NULL) == BD_SUCCESS);
    c.custom_grid = grid;
    c.grid = BD_GRID_UNIFORM_T; /* ignored */
    c.branch = 1;               /* all branches of the analytic denoiser agree */
    memcpy(b, z1, sizeof b);
    BDT_CHECK(bd_sampler_run(big, &c, b, N, NULL, NULL) == BD_SUCCESS);
    BDT_CHECK(memcmp(a, b, sizeof a) == 0);
    /* a grid that stops at t = 0.3 returns z_0.3 (not x_hat): on a Gaussian
       it matches the closed-form flow to 0.3 */
    {
        double g2[101];
        float mu[D] = {0.5f, -0.5f, 0.0f};
        bd_analytic_config gc = bd_analytic_config_init(D, mu, 1, 0.4);
        bd_denoiser *gd = NULL;
        bd_sampler *gs = NULL;
        bd_schedule sc;
        double l0, l1, e;
        int i;
        BDT_CHECK(bd_analytic_create(ctx, &gc, &gd) == BD_SUCCESS);
        BDT_CHECK(bd_sampler_init(ctx, gd, N, &gs) == BD_SUCCESS);
        bd_schedule_init(&sc, BD_SCHEDULE_COSINE);
        l0 = bd_schedule_logsnr(&sc, 1.0);
        l1 = bd_schedule_logsnr(&sc, 0.3);
        g2[0] = 1.0;
        for (i = 1; i <= 100; i++) g2[i] = bd_schedule_t_from_logsnr(&sc, l0 + (l1 - l0) * i / 100.0);
        g2[100] = 0.3;
        c = bd_sampler_config_init(BD_SAMPLER_DPMPP_2M, 100);
        c.custom_grid = g2;
        memcpy(a, z1, sizeof a);
        BDT_CHECK(bd_sampler_run(gs, &c, a, N, NULL, NULL) == BD_SUCCESS);
        gaussian_flow(ref, z1, mu, 0.4, N, D, &sc, 1.0, 0.3);
        e = max_abs_diff(a, ref, N * D);
        printf("  grid ending at t = 0.3: max |z - exact z_0.3| = %.2g\n", e);
        BDT_CHECK(e < 2e-3);
        bd_sampler_free(gs);
        bd_denoiser_free(gd);
    }
    bd_sampler_free(small);
    bd_sampler_free(big);
    bd_denoiser_free(den);
    bd_context_free(ctx);
}

static int stop_at_2(void *ud, int64_t step, double t, double s, const float *z, const float *x_hat,
                     int64_t n, int64_t D, int64_t first) {
    (void)ud; (void)t; (void)s; (void)z; (void)x_hat; (void)n; (void)D; (void)first;
    return step == 2;
}

static void test_errors(void) {
    enum { N = 2, D = 2 };
    float pts[D] = {0, 0}, x[N * D] = {0};
    double bad[4] = {1.0, 0.5, 0.6, 0.0};
    bd_context *ctx = new_ctx();
    bd_analytic_config ac = bd_analytic_config_init(D, pts, 1, 0.3);
    bd_denoiser *den = NULL;
    bd_sampler *smp = NULL;
    bd_sampler_config c;
    BDT_CHECK(bd_analytic_create(ctx, &ac, &den) == BD_SUCCESS);
    BDT_CHECK(bd_sampler_init(ctx, den, 0, &smp) == BD_ERROR_INVALID_ARGUMENT && smp == NULL);
    BDT_CHECK(bd_sampler_init(ctx, NULL, 4, &smp) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_sampler_init(ctx, den, 4, &smp) == BD_SUCCESS);
    c = bd_sampler_config_init(BD_SAMPLER_DDIM, 0);
    BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, NULL) == BD_ERROR_INVALID_ARGUMENT);
    c.steps = BD_SAMPLER_MAX_STEPS + 1;
    BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, NULL) == BD_ERROR_INVALID_ARGUMENT);
    c.steps = 3;
    c.custom_grid = bad;
    BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, NULL) == BD_ERROR_CONFIG);
    BDT_CHECK(strstr(bd_context_message(ctx), "decreasing") != NULL);
    c = bd_sampler_config_init(BD_SAMPLER_DDPM, 3);
    BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, NULL) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(strstr(bd_context_message(ctx), "rng") != NULL);
    c = bd_sampler_config_init(BD_SAMPLER_DDIM, 3);
    c.eta = -1.0;
    BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, NULL) == BD_ERROR_INVALID_ARGUMENT);
    c.eta = 0.0;
    c.branch = 1;
    BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, NULL) == BD_ERROR_INVALID_ARGUMENT);
    c.branch = -1;
    BDT_CHECK(bd_sampler_run(smp, &c, x, 0, NULL, NULL) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_sampler_run(smp, &c, NULL, N, NULL, NULL) == BD_ERROR_INVALID_ARGUMENT);
    c.kind = (bd_sampler_kind)9;
    BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, NULL) == BD_ERROR_INVALID_ARGUMENT);
    c = bd_sampler_config_init(BD_SAMPLER_HEUN, 5);
    c.callback = stop_at_2;
    BDT_CHECK(bd_sampler_run(smp, &c, x, N, NULL, NULL) == BD_ERROR_STATE);
    BDT_CHECK(bd_denoiser_backward(den, NULL, x, N) != BD_SUCCESS);
    {
        bd_sampler_kind k;
        int i;
        for (i = 0; i < 5; i++)
            BDT_CHECK(bd_sampler_parse(bd_sampler_name((bd_sampler_kind)i), &k) == BD_SUCCESS && (int)k == i);
        BDT_CHECK(bd_sampler_parse("plms", &k) == BD_ERROR_INVALID_ARGUMENT);
    }
    bd_sampler_free(smp);
    bd_denoiser_free(den);
    bd_context_free(ctx);
}

/* the analytic posterior mean is what a Monte-Carlo average says it is */
static void test_analytic_posterior(void) {
    enum { D = 2, M = 3 };
    float pts[M * D] = {-1, 0, 1, 0.5f, 0, -1};
    bd_context *ctx = new_ctx();
    bd_analytic_config ac = bd_analytic_config_init(D, pts, M, 0.2);
    bd_denoiser *den = NULL;
    bd_schedule s;
    float z[D] = {0.3f, -0.1f}, t = 0.6f, xh[D], o[D];
    double al, sg, num[D] = {0, 0}, den_w = 0.0;
    bd_rng r = bd_rng_init(8);
    int i, k, p;
    BDT_CHECK(bd_analytic_create(ctx, &ac, &den) == BD_SUCCESS);
    BDT_CHECK(bd_analytic_posterior_mean(den, xh, z, &t, 1) == BD_SUCCESS);
    bd_schedule_init(&s, BD_SCHEDULE_COSINE);
    bd_schedule_alpha_sigma(&s, t, &al, &sg);
    /* importance sampling: x from the prior, weight N(z; alpha x, sigma^2) */
    for (i = 0; i < 200000; i++) {
        int m = (int)(bd_rng_uniform(&r) * M);
        double x[D], w = 0.0;
        for (k = 0; k < D; k++) {
            x[k] = pts[m * D + k] + 0.2 * bd_rng_normal1(&r);
            w += (z[k] - al * x[k]) * (z[k] - al * x[k]);
        }
        w = exp(-w / (2 * sg * sg));
        for (k = 0; k < D; k++) num[k] += w * x[k];
        den_w += w;
    }
    for (k = 0; k < D; k++) {
        printf("  posterior mean dim %d: closed form %.4f, Monte Carlo %.4f\n", k, xh[k], num[k] / den_w);
        BDT_CHECK(fabs(xh[k] - num[k] / den_w) < 0.01);
    }
    /* every parametrisation decodes to the same x_hat */
    for (p = 0; p < 3; p++) {
        bd_denoiser *d2 = NULL;
        float x2[D];
        ac.param = (bd_param_kind)p;
        BDT_CHECK(bd_analytic_create(ctx, &ac, &d2) == BD_SUCCESS);
        BDT_CHECK(bd_denoiser_forward(d2, o, z, &t, 1, 0) == BD_SUCCESS);
        bd_param_predict(ac.param, x2, NULL, o, 1, 0, z, &al, &sg, 1, D);
        BDT_CHECK(max_abs_diff(x2, xh, D) < 1e-6);
        bd_denoiser_free(d2);
    }
    bd_denoiser_free(den);
    bd_context_free(ctx);
}

int main(void) {
    BDT_RUN(test_ddim_point_mass_exact);
    BDT_RUN(test_convergence_orders);
    BDT_RUN(test_sampler_equivalences);
    BDT_RUN(test_ddpm_moments);
    BDT_RUN(test_contract);
    BDT_RUN(test_errors);
    BDT_RUN(test_analytic_posterior);
    return BDT_SUMMARY("test_sampler");
}
