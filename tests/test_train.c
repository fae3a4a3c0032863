/* MLP denoiser gradients, Adam/AdamW, EMA, the teacher trainer (loss,
   NaN guard, exact resume) and a short training run on 2-D mixture data. */
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

/* L = sum(out * R): dL/dout = R */
static double probe_loss(bd_denoiser *d, float *out, const float *z, const float *t, const float *R,
                         int64_t n) {
    int64_t i, m = n * d->branches * bd_denoiser_sample_size(d);
    double s = 0.0;
    bd_denoiser_forward(d, out, z, t, n, 0);
    for (i = 0; i < m; i++) s += (double)out[i] * (double)R[i];
    return s;
}

static void test_mlp_gradcheck(void) {
    enum { N = 3, D = 3 };
    bd_context *ctx = new_ctx();
    bd_mlp_config mc = bd_mlp_config_init(D);
    bd_denoiser *d = NULL;
    bd_rng rng = bd_rng_init(21);
    float z[N * D], t[N] = {0.1f, 0.5f, 0.93f}, dz[N * D], out[N * 2 * D], R[N * 2 * D];
    float *g1 = NULL;
    double worst = 0.0, worst_z = 0.0;
    int64_t i, checked = 0;
    mc.hidden = 8;
    mc.depth = 3;
    mc.temb_dim = 6;
    mc.branches = 2;
    BDT_CHECK(bd_mlp_create(ctx, &mc, &rng, &d) == BD_SUCCESS);
    BDT_CHECK(d->n_params == 8 * 6 + 8 + 8 * 8 + 8 + (8 * 3 + 8) + 2 * (8 * 8 + 8) + 6 * 8 + 6);
    BDT_CHECK(bd_denoiser_find_tensor(d, "layers.0.weight") && bd_denoiser_find_tensor(d, "out.bias") &&
              bd_denoiser_find_tensor(d, "time_mlp.2.weight"));
    BDT_CHECK(strcmp(d->vt->kind, "mlp") == 0);
    BDT_CHECK(bd_denoiser_reserve(d, N) == BD_SUCCESS);
    bd_rng_normal(&rng, z, N * D);
    bd_rng_normal(&rng, R, N * 2 * D);
    /* random biases too, so no gradient is trivially zero */
    bd_rng_uniform_fill(&rng, d->params, d->n_params, -0.7f, 0.7f);
    bd_denoiser_zero_grad(d);
    memset(dz, 0, sizeof dz);
    BDT_CHECK(bd_denoiser_forward(d, out, z, t, N, 1) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_backward(d, dz, R, N) == BD_SUCCESS);
    g1 = (float *)malloc((size_t)d->n_params * sizeof(float));
    memcpy(g1, d->grads, (size_t)d->n_params * sizeof(float));
    /* central differences in float with h = 1e-2: compare to |g| + 1e-2 */
    for (i = 0; i < d->n_params; i++) {
        float keep = d->params[i];
        double lp, lm, fd, err;
        const float h = 1e-2f;
        d->params[i] = keep + h;
        lp = probe_loss(d, out, z, t, R, N);
        d->params[i] = keep - h;
        lm = probe_loss(d, out, z, t, R, N);
        d->params[i] = keep;
        fd = (lp - lm) / (2.0 * h);
        err = fabs(fd - g1[i]) / (fabs(g1[i]) + 1e-2);
        if (err > worst) worst = err;
        checked++;
    }
    for (i = 0; i < N * D; i++) {
        float keep = z[i];
        double lp, lm, fd, err;
        const float h = 1e-2f;
        z[i] = keep + h;
        lp = probe_loss(d, out, z, t, R, N);
        z[i] = keep - h;
        lm = probe_loss(d, out, z, t, R, N);
        z[i] = keep;
        fd = (lp - lm) / (2.0 * h);
        err = fabs(fd - dz[i]) / (fabs(dz[i]) + 1e-2);
        if (err > worst_z) worst_z = err;
    }
    printf("  MLP (%lld params, K=2): max rel FD error params %.2e, input %.2e\n", (long long)checked, worst, worst_z);
    BDT_CHECK(worst < 5e-3);
    BDT_CHECK(worst_z < 5e-3);
    /* backward accumulates: a second backward doubles the gradient */
    BDT_CHECK(bd_denoiser_forward(d, out, z, t, N, 1) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_backward(d, NULL, R, N) == BD_SUCCESS);
    {
        double e = 0.0;
        for (i = 0; i < d->n_params; i++) {
            double q = fabs(d->grads[i] - 2.0 * g1[i]);
            if (q > e) e = q;
        }
        BDT_CHECK(e < 1e-5);
    }
    /* backward without a train-mode forward of that batch is a state error */
    BDT_CHECK(bd_denoiser_forward(d, out, z, t, N, 0) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_backward(d, NULL, R, N) == BD_ERROR_STATE);
    free(g1);
    bd_denoiser_free(d);
    bd_context_free(ctx);
}

static void test_mlp_create_like_and_copy(void) {
    bd_context *ctx = new_ctx();
    bd_mlp_config mc = bd_mlp_config_init(2);
    bd_denoiser *t = NULL, *s = NULL;
    bd_rng rng = bd_rng_init(4);
    float z[2] = {0.3f, -0.2f}, tt = 0.4f, ot[2], os[6];
    BDT_CHECK(bd_mlp_create(ctx, &mc, &rng, &t) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_create_like(t, 3, &rng, &s) == BD_SUCCESS);
    BDT_CHECK(s->branches == 3 && s->n_params > t->n_params);
    BDT_CHECK(bd_denoiser_copy_weights(s, t) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_forward(t, ot, z, &tt, 1, 0) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_forward(s, os, z, &tt, 1, 0) == BD_SUCCESS);
    /* every branch of the student starts as the teacher's output (up to
       GEMM rounding: a BLAS may pick other kernels for 6 outputs than for 2) */
    BDT_CHECK(bdt_close_ratio(os, ot, 2, 1e-6, 1e-6, NULL) < 1.0 && bdt_close_ratio(os + 2, ot, 2, 1e-6, 1e-6, NULL) < 1.0 &&
              bdt_close_ratio(os + 4, ot, 2, 1e-6, 1e-6, NULL) < 1.0);
    mc.depth = 0;
    {
        bd_denoiser *bad = NULL;
        BDT_CHECK(bd_mlp_create(ctx, &mc, &rng, &bad) == BD_ERROR_CONFIG && bad == NULL);
        BDT_CHECK(strstr(bd_context_message(ctx), "depth") != NULL);
    }
    bd_denoiser_free(s);
    bd_denoiser_free(t);
    bd_context_free(ctx);
}

static void test_adam_formula(void) {
    enum { P = 5 };
    bd_context *ctx = new_ctx();
    bd_adam_config ac = bd_adam_config_init();
    bd_adam a;
    float p[P] = {0.5f, -1.0f, 2.0f, 0.0f, 0.1f}, g[P];
    double rp[P], rm[P] = {0}, rv[P] = {0};
    int k, i;
    ac.lr = 1e-2;
    ac.weight_decay = 0.1;
    ac.grad_clip = 0.0;
    ac.beta1 = 0.8;
    ac.beta2 = 0.95;
    ac.eps = 1e-6;
    BDT_CHECK(bd_adam_init(ctx, &ac, P, &a) == BD_SUCCESS);
    for (i = 0; i < P; i++) rp[i] = p[i];
    for (k = 1; k <= 4; k++) {
        double worst = 0.0;
        for (i = 0; i < P; i++) g[i] = (float)(0.3 * (i - 2) + 0.1 * k);
        BDT_CHECK(bd_adam_step(&a, p, g, NULL) == BD_SUCCESS);
        /* textbook AdamW (Loshchilov & Hutter, PyTorch order) in double */
        for (i = 0; i < P; i++) {
            double mh, vh;
            rm[i] = 0.8 * rm[i] + 0.2 * g[i];
            rv[i] = 0.95 * rv[i] + 0.05 * g[i] * g[i];
            rp[i] -= 1e-2 * 0.1 * rp[i];
            mh = rm[i] / (1 - pow(0.8, k));
            vh = rv[i] / (1 - pow(0.95, k));
            rp[i] -= 1e-2 * mh / (sqrt(vh) + 1e-6);
            if (fabs(rp[i] - p[i]) > worst) worst = fabs(rp[i] - p[i]);
        }
        BDT_CHECKF(worst < 1e-6, "step %d: max |p - ref| = %g", k, worst);
    }
    BDT_CHECK(a.step == 4);
    /* clipping: with clip c and |g| > c the update equals that for g c/|g| */
    {
        bd_adam a1, a2;
        float p1[P] = {0}, p2[P] = {0}, gs[P];
        double gn;
        ac.grad_clip = 0.5;
        BDT_CHECK(bd_adam_init(ctx, &ac, P, &a1) == BD_SUCCESS);
        ac.grad_clip = 0.0;
        BDT_CHECK(bd_adam_init(ctx, &ac, P, &a2) == BD_SUCCESS);
        for (i = 0; i < P; i++) g[i] = (float)(i + 1);
        BDT_CHECK(bd_adam_step(&a1, p1, g, &gn) == BD_SUCCESS);
        BDT_CHECK(fabs(gn - sqrt(55.0)) < 1e-6);
        for (i = 0; i < P; i++) gs[i] = (float)(g[i] * 0.5 / (sqrt(55.0) + 1e-6));
        BDT_CHECK(bd_adam_step(&a2, p2, gs, NULL) == BD_SUCCESS);
        for (i = 0; i < P; i++) BDT_CHECK(fabs(a1.m[i] - a2.m[i]) < 1e-7 && fabs(p1[i] - p2[i]) < 1e-7);
        /* a non-finite gradient changes nothing */
        {
            float pc[P], mc[P], vc[P];
            memcpy(pc, p1, sizeof pc);
            memcpy(mc, a1.m, sizeof mc);
            memcpy(vc, a1.v, sizeof vc);
            g[2] = (float)NAN;
            BDT_CHECK(bd_adam_step(&a1, p1, g, NULL) == BD_ERROR_NONFINITE);
            BDT_CHECK(memcmp(pc, p1, sizeof pc) == 0 && memcmp(mc, a1.m, sizeof mc) == 0 &&
                      memcmp(vc, a1.v, sizeof vc) == 0 && a1.step == 1);
        }
        bd_adam_free(&a1);
        bd_adam_free(&a2);
    }
    bd_adam_free(&a);
    bd_context_free(ctx);
}

static void test_lr_schedule_and_ema(void) {
    bd_adam_config c = bd_adam_config_init();
    float e[3] = {1, 2, 3}, p[3] = {3, 2, 1};
    c.lr = 1.0;
    c.warmup_steps = 10;
    BDT_CHECK(fabs(bd_adam_lr(&c, 1) - 0.1) < 1e-15 && fabs(bd_adam_lr(&c, 10) - 1.0) < 1e-15);
    BDT_CHECK(bd_adam_lr(&c, 1000) == 1.0);
    c.lr_schedule = BD_LR_COSINE;
    c.total_steps = 110;
    c.lr_min = 0.1;
    BDT_CHECK(fabs(bd_adam_lr(&c, 60) - 0.55) < 1e-12);  /* half way: mean of lr and lr_min */
    BDT_CHECK(fabs(bd_adam_lr(&c, 110) - 0.1) < 1e-12);
    BDT_CHECK(fabs(bd_adam_lr(&c, 500) - 0.1) < 1e-12);
    bd_ema_update(e, p, 3, 0.75);
    BDT_CHECK(e[0] == 1.5f && e[1] == 2.0f && e[2] == 2.5f);
    /* the one warm-up rule: k = optimiser steps before this update */
    BDT_CHECK(bd_ema_decay(0.999, 1, 0) == 0.1 && fabs(bd_ema_decay(0.999, 1, 1) - 2.0 / 11.0) < 1e-15);
    BDT_CHECK(bd_ema_decay(0.5, 1, 100) == 0.5 && bd_ema_decay(0.999, 0, 0) == 0.999);
}

/* 2-D data: 8 Gaussians (std 0.05) on a circle of radius 0.8 */
static bd_result ring_data(void *ud, float *x, int64_t n, bd_rng *rng) {
    int64_t i;
    (void)ud;
    for (i = 0; i < n; i++) {
        int m = (int)(bd_rng_uniform(rng) * 8);
        double a = 2.0 * 3.14159265358979 * m / 8.0;
        x[2 * i] = (float)(0.8 * cos(a) + 0.05 * bd_rng_normal1(rng));
        x[2 * i + 1] = (float)(0.8 * sin(a) + 0.05 * bd_rng_normal1(rng));
    }
    return BD_SUCCESS;
}

typedef struct { double first, last; int64_t nf, nl, total, calls; } loss_log;
static int log_progress(void *ud, int64_t step, int64_t total, double loss, double lr) {
    loss_log *l = (loss_log *)ud;
    (void)lr;
    l->calls++;
    if (step <= 50) { l->first += loss; l->nf++; }
    if (step > total - 100) { l->last += loss; l->nl++; }
    return 0;
}

/* mean v-loss of a model on a fixed evaluation set (x, t, eps fixed) */
enum { EVAL_N = 2048 };
static double eval_v_loss(bd_denoiser *d, const float *x, const float *t, const float *eps, const float *z) {
    static float o[EVAL_N * 2];
    bd_schedule sc;
    double L = 0.0;
    int i, j;
    bd_schedule_init(&sc, BD_SCHEDULE_COSINE);
    for (i = 0; i < EVAL_N; i += 128) bd_denoiser_forward(d, o + i * 2, z + i * 2, t + i, 128, 0);
    for (i = 0; i < EVAL_N; i++) {
        double al, sg;
        bd_schedule_alpha_sigma(&sc, t[i], &al, &sg);
        for (j = 0; j < 2; j++) {
            double v = al * eps[2 * i + j] - sg * x[2 * i + j], e = o[2 * i + j] - v;
            L += e * e / (2.0 * EVAL_N);
        }
    }
    return L;
}

static void test_training_lowers_loss(void) {
    enum { B = 128, STEPS = 600 };
    static float ex[EVAL_N * 2], et[EVAL_N], eeps[EVAL_N * 2], ez[EVAL_N * 2];
    bd_context *ctx = new_ctx();
    bd_mlp_config mc = bd_mlp_config_init(2);
    bd_trainer_config tc = bd_trainer_config_init();
    bd_denoiser *d = NULL, *ema = NULL, *opt = NULL;
    bd_trainer *tr = NULL;
    bd_sampler *smp = NULL;
    bd_rng rng = bd_rng_init(1), er = bd_rng_init(4242);
    bd_schedule sc;
    float pts[16];
    loss_log lg;
    long before;
    double l_init, l_opt, l_ema;
    int i, j;
    memset(&lg, 0, sizeof lg);
    /* the exact minimiser of the loss: the analytic denoiser of the same data */
    for (i = 0; i < 8; i++) {
        double a = 2.0 * 3.14159265358979 * i / 8.0;
        pts[2 * i] = (float)(0.8 * cos(a));
        pts[2 * i + 1] = (float)(0.8 * sin(a));
    }
    {
        bd_analytic_config ac = bd_analytic_config_init(2, pts, 8, 0.05);
        BDT_CHECK(bd_analytic_create(ctx, &ac, &opt) == BD_SUCCESS);
    }
    ring_data(NULL, ex, EVAL_N, &er);
    bd_rng_normal(&er, eeps, EVAL_N * 2);
    bd_schedule_init(&sc, BD_SCHEDULE_COSINE);
    for (i = 0; i < EVAL_N; i++) {
        double al, sg;
        et[i] = (float)((i + 0.5) / EVAL_N);
        bd_schedule_alpha_sigma(&sc, et[i], &al, &sg);
        for (j = 0; j < 2; j++) ez[2 * i + j] = (float)(al * ex[2 * i + j] + sg * eeps[2 * i + j]);
    }
    mc.hidden = 64;
    mc.depth = 3;
    BDT_CHECK(bd_mlp_create(ctx, &mc, &rng, &d) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_create_like(d, 1, &rng, &ema) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_reserve(d, 128) == BD_SUCCESS && bd_denoiser_reserve(opt, 128) == BD_SUCCESS);
    l_init = eval_v_loss(d, ex, et, eeps, ez);
    l_opt = eval_v_loss(opt, ex, et, eeps, ez);
    tc.adam.lr = 1e-2;
    tc.adam.warmup_steps = 20;
    tc.adam.lr_schedule = BD_LR_COSINE;
    tc.adam.total_steps = STEPS;
    tc.ema_decay = 0.99;
    tc.seed = 9;
    BDT_CHECK(bd_trainer_init(ctx, d, &tc, B, &tr) == BD_SUCCESS);
    before = g_allocs;
    BDT_CHECK(bd_trainer_run(tr, STEPS, B, ring_data, NULL, log_progress, &lg) == BD_SUCCESS);
    BDT_CHECKF(g_allocs == before, "training allocated %ld times", g_allocs - before);
    lg.first /= (double)lg.nf;
    lg.last /= (double)lg.nl;
    BDT_CHECK(bd_trainer_copy_ema(tr, ema) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_reserve(ema, 256) == BD_SUCCESS);
    l_ema = eval_v_loss(ema, ex, et, eeps, ez);
    printf("  training v-loss: first 50 steps %.4f, last 100 steps %.4f (%lld steps, batch %d)\n",
           lg.first, lg.last, (long long)tr->adam.step, B);
    printf("  eval v-loss: init %.4f, EMA after training %.4f, exact optimum %.4f; excess %.4f -> %.4f (%.1fx lower)\n",
           l_init, l_ema, l_opt, l_init - l_opt, l_ema - l_opt, (l_init - l_opt) / (l_ema - l_opt));
    BDT_CHECK(lg.calls == STEPS && tr->adam.step == STEPS);
    BDT_CHECK(lg.last < 0.95 * lg.first);
    BDT_CHECK(l_ema >= l_opt - 0.01);                      /* nothing beats the optimum (up to eval noise) */
    BDT_CHECK((l_ema - l_opt) < (l_init - l_opt) / 3.0);  /* excess loss at least 3x lower */
    /* the EMA model samples points near the ring */
    BDT_CHECK(bd_sampler_init(ctx, ema, 256, &smp) == BD_SUCCESS);
    {
        static float x[256 * 2];
        bd_sampler_config c = bd_sampler_config_init(BD_SAMPLER_DPMPP_2M, 25);
        double mr = 0.0, near = 0.0;
        bd_noise_fill(x, 256 * 2, 3);
        BDT_CHECK(bd_sampler_run(smp, &c, x, 256, NULL, NULL) == BD_SUCCESS);
        for (i = 0; i < 256; i++) {
            double r = sqrt((double)x[2 * i] * x[2 * i] + (double)x[2 * i + 1] * x[2 * i + 1]);
            mr += r / 256.0;
            if (fabs(r - 0.8) < 0.2) near += 1.0 / 256.0;
        }
        printf("  EMA samples (DPM++ 25 steps): mean radius %.3f (data 0.8), %.0f%% within 0.2 of the ring\n", mr, 100 * near);
        BDT_CHECK(fabs(mr - 0.8) < 0.1 && near > 0.75);
    }
    bd_sampler_free(smp);
    bd_trainer_free(tr);
    bd_denoiser_free(opt);
    bd_denoiser_free(ema);
    bd_denoiser_free(d);
    bd_context_free(ctx);
}

static void test_trainer_ema_and_loss(void) {
    enum { B = 4 };
    bd_context *ctx = new_ctx();
    bd_mlp_config mc = bd_mlp_config_init(2);
    bd_trainer_config tc = bd_trainer_config_init();
    bd_denoiser *d = NULL;
    bd_trainer *tr = NULL;
    bd_rng rng = bd_rng_init(2);
    float x[B * 2] = {0.1f, 0.2f, -0.5f, 0.4f, 0.9f, -0.9f, 0.0f, 0.3f}, *p0, *e0;
    double loss = 0.0, al, sg, ref = 0.0, w;
    float out[B * 2], tgt[B * 2];
    bd_rng saved;
    int64_t i, j, P;
    mc.hidden = 16;
    mc.depth = 2;
    BDT_CHECK(bd_mlp_create(ctx, &mc, &rng, &d) == BD_SUCCESS);
    P = d->n_params;
    tc.weighting = BD_WEIGHT_SNR_TRUNC;
    tc.seed = 77;
    BDT_CHECK(bd_trainer_init(ctx, d, &tc, B, &tr) == BD_SUCCESS);
    p0 = (float *)malloc((size_t)P * sizeof(float));
    e0 = (float *)malloc((size_t)P * sizeof(float));
    memcpy(p0, d->params, (size_t)P * sizeof(float));
    BDT_CHECK(memcmp(tr->ema, p0, (size_t)P * sizeof(float)) == 0);
    /* recompute the loss independently from the same draws (snr_trunc, v) */
    saved = tr->rng;
    BDT_CHECK(bd_trainer_step(tr, x, B, &loss) == BD_SUCCESS);
    {
        bd_rng r = saved;
        float t[B], eps[B * 2], z[B * 2];
        for (i = 0; i < B; i++) t[i] = (float)(1.0 - bd_rng_uniform(&r));
        bd_rng_normal(&r, eps, B * 2);
        for (i = 0; i < B; i++) {
            bd_schedule_alpha_sigma(&tr->sched, t[i], &al, &sg);
            for (j = 0; j < 2; j++) z[i * 2 + j] = (float)(al * x[i * 2 + j] + sg * eps[i * 2 + j]);
        }
        /* forward with the pre-step weights */
        memcpy(e0, d->params, (size_t)P * sizeof(float));
        memcpy(d->params, p0, (size_t)P * sizeof(float));
        BDT_CHECK(bd_denoiser_forward(d, out, z, t, B, 0) == BD_SUCCESS);
        memcpy(d->params, e0, (size_t)P * sizeof(float));
        for (i = 0; i < B; i++) {
            bd_schedule_alpha_sigma(&tr->sched, t[i], &al, &sg);
            w = al * al / (sg * sg);
            if (w < 1.0) w = 1.0;
            for (j = 0; j < 2; j++) {
                double xh = al * z[i * 2 + j] - sg * out[i * 2 + j], e = xh - x[i * 2 + j];
                ref += w * e * e / (B * 2);
            }
        }
        (void)tgt;
    }
    printf("  snr_trunc loss %.6f, independent recomputation %.6f\n", loss, ref);
    BDT_CHECK(fabs(loss - ref) < 1e-5 * (1.0 + ref));
    /* EMA warm-up (bd_ema_decay, k = 0 steps before the first update):
       decay = min(0.999, 1/10) */
    {
        double worst = 0.0, dec = 1.0 / 10.0;
        for (i = 0; i < P; i++) {
            double r = dec * p0[i] + (1.0 - dec) * d->params[i];
            if (fabs(r - tr->ema[i]) > worst) worst = fabs(r - tr->ema[i]);
        }
        BDT_CHECK(worst < 1e-6);
        BDT_CHECK(memcmp(d->params, p0, (size_t)P * sizeof(float)) != 0);
    }
    free(p0);
    free(e0);
    bd_trainer_free(tr);
    bd_denoiser_free(d);
    bd_context_free(ctx);
}

static void test_nan_guard(void) {
    enum { B = 8 };
    bd_context *ctx = new_ctx();
    bd_mlp_config mc = bd_mlp_config_init(2);
    bd_trainer_config tc = bd_trainer_config_init();
    bd_denoiser *d = NULL;
    bd_trainer *tr = NULL;
    bd_rng rng = bd_rng_init(3);
    float x[B * 2], *sp, *se, *sm, *sv;
    double loss;
    int64_t P, step;
    mc.hidden = 16;
    BDT_CHECK(bd_mlp_create(ctx, &mc, &rng, &d) == BD_SUCCESS);
    P = d->n_params;
    BDT_CHECK(bd_trainer_init(ctx, d, &tc, B, &tr) == BD_SUCCESS);
    ring_data(NULL, x, B, &rng);
    BDT_CHECK(bd_trainer_step(tr, x, B, &loss) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_step(tr, x, B, &loss) == BD_SUCCESS);
    sp = (float *)malloc((size_t)P * sizeof(float)); memcpy(sp, d->params, (size_t)P * sizeof(float));
    se = (float *)malloc((size_t)P * sizeof(float)); memcpy(se, tr->ema, (size_t)P * sizeof(float));
    sm = (float *)malloc((size_t)P * sizeof(float)); memcpy(sm, tr->adam.m, (size_t)P * sizeof(float));
    sv = (float *)malloc((size_t)P * sizeof(float)); memcpy(sv, tr->adam.v, (size_t)P * sizeof(float));
    step = tr->adam.step;
    x[5] = (float)NAN;
    BDT_CHECK(bd_trainer_step(tr, x, B, &loss) == BD_ERROR_NONFINITE);
    x[5] = (float)INFINITY;
    BDT_CHECK(bd_trainer_step(tr, x, B, &loss) == BD_ERROR_NONFINITE);
    BDT_CHECK(strstr(bd_context_message(ctx), "non-finite") != NULL);
    BDT_CHECK(memcmp(sp, d->params, (size_t)P * sizeof(float)) == 0);
    BDT_CHECK(memcmp(se, tr->ema, (size_t)P * sizeof(float)) == 0);
    BDT_CHECK(memcmp(sm, tr->adam.m, (size_t)P * sizeof(float)) == 0);
    BDT_CHECK(memcmp(sv, tr->adam.v, (size_t)P * sizeof(float)) == 0);
    BDT_CHECK(tr->adam.step == step);
    /* and training goes on afterwards */
    x[5] = 0.1f;
    BDT_CHECK(bd_trainer_step(tr, x, B, &loss) == BD_SUCCESS && tr->adam.step == step + 1);
    BDT_CHECK(bd_trainer_step(tr, x, 0, &loss) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_trainer_step(tr, x, B + 1, &loss) == BD_ERROR_INVALID_ARGUMENT);
    free(sp); free(se); free(sm); free(sv);
    bd_trainer_free(tr);
    bd_denoiser_free(d);
    bd_context_free(ctx);
}

/* N steps, save everything, M more == N+M uninterrupted, bit for bit */
static void test_exact_resume(void) {
    enum { B = 16, N1 = 7, M1 = 5 };
    bd_context *ctx = new_ctx();
    bd_mlp_config mc = bd_mlp_config_init(2);
    bd_trainer_config tc = bd_trainer_config_init();
    bd_denoiser *a = NULL, *b = NULL;
    bd_trainer *ta = NULL, *tb = NULL;
    bd_rng rng = bd_rng_init(5), rng2 = bd_rng_init(5);
    int64_t P;
    mc.hidden = 16;
    tc.adam.lr = 1e-2;
    tc.adam.lr_schedule = BD_LR_COSINE;
    tc.adam.total_steps = N1 + M1;
    tc.adam.warmup_steps = 3;
    tc.seed = 11;
    BDT_CHECK(bd_mlp_create(ctx, &mc, &rng, &a) == BD_SUCCESS);
    BDT_CHECK(bd_mlp_create(ctx, &mc, &rng2, &b) == BD_SUCCESS);
    P = a->n_params;
    BDT_CHECK(bd_trainer_init(ctx, a, &tc, B, &ta) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_run(ta, N1, B, ring_data, NULL, NULL, NULL) == BD_SUCCESS);
    /* "checkpoint": weights, EMA, m, v, step, both rngs */
    BDT_CHECK(bd_trainer_init(ctx, b, &tc, B, &tb) == BD_SUCCESS);
    memcpy(b->params, a->params, (size_t)P * sizeof(float));
    memcpy(tb->ema, ta->ema, (size_t)P * sizeof(float));
    memcpy(tb->adam.m, ta->adam.m, (size_t)P * sizeof(float));
    memcpy(tb->adam.v, ta->adam.v, (size_t)P * sizeof(float));
    tb->adam.step = ta->adam.step;
    tb->rng = ta->rng;
    tb->data_rng = ta->data_rng;
    BDT_CHECK(bd_trainer_run(ta, M1, B, ring_data, NULL, NULL, NULL) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_run(tb, M1, B, ring_data, NULL, NULL, NULL) == BD_SUCCESS);
    BDT_CHECK(memcmp(a->params, b->params, (size_t)P * sizeof(float)) == 0);
    BDT_CHECK(memcmp(ta->ema, tb->ema, (size_t)P * sizeof(float)) == 0);
    BDT_CHECK(memcmp(ta->adam.m, tb->adam.m, (size_t)P * sizeof(float)) == 0);
    BDT_CHECK(ta->adam.step == N1 + M1 && tb->adam.step == N1 + M1);
    bd_trainer_free(ta);
    bd_trainer_free(tb);
    bd_denoiser_free(a);
    bd_denoiser_free(b);
    bd_context_free(ctx);
}

static int stop_at_3(void *ud, int64_t step, int64_t total, double loss, double lr) {
    (void)ud; (void)total; (void)loss; (void)lr;
    return step >= 3;
}
static bd_result failing_data(void *ud, float *x, int64_t n, bd_rng *rng) {
    (void)ud; (void)x; (void)n; (void)rng;
    return BD_ERROR_IO;
}

static void test_trainer_errors(void) {
    bd_context *ctx = new_ctx();
    bd_mlp_config mc = bd_mlp_config_init(2);
    bd_trainer_config tc = bd_trainer_config_init();
    bd_denoiser *d = NULL, *an = NULL;
    bd_trainer *tr = NULL;
    bd_rng rng = bd_rng_init(6);
    float pts[2] = {0, 0};
    bd_analytic_config ac = bd_analytic_config_init(2, pts, 1, 0.1);
    mc.hidden = 8;
    BDT_CHECK(bd_mlp_create(ctx, &mc, &rng, &d) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_init(ctx, d, &tc, 0, &tr) == BD_ERROR_INVALID_ARGUMENT && tr == NULL);
    tc.adam.beta2 = 1.5;
    BDT_CHECK(bd_trainer_init(ctx, d, &tc, 4, &tr) == BD_ERROR_CONFIG && tr == NULL);
    tc = bd_trainer_config_init();
    BDT_CHECK(bd_analytic_create(ctx, &ac, &an) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_init(ctx, an, &tc, 4, &tr) == BD_ERROR_CONFIG && tr == NULL);
    BDT_CHECK(bd_trainer_init(ctx, d, &tc, 4, &tr) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_run(tr, 10, 4, ring_data, NULL, stop_at_3, NULL) == BD_SUCCESS);
    BDT_CHECK(tr->adam.step == 3);
    BDT_CHECK(bd_trainer_run(tr, 10, 4, failing_data, NULL, NULL, NULL) == BD_ERROR_IO);
    BDT_CHECK(bd_trainer_run(tr, 10, 5, ring_data, NULL, NULL, NULL) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_trainer_copy_ema(tr, an) == BD_ERROR_SHAPE);
    {
        bd_loss_weight w;
        BDT_CHECK(bd_loss_weight_parse("snr_trunc", &w) == BD_SUCCESS && w == BD_WEIGHT_SNR_TRUNC);
        BDT_CHECK(bd_loss_weight_parse(bd_loss_weight_name(BD_WEIGHT_NONE), &w) == BD_SUCCESS && w == BD_WEIGHT_NONE);
        BDT_CHECK(bd_loss_weight_parse("snr", &w) == BD_ERROR_INVALID_ARGUMENT);
    }
    bd_trainer_free(tr);
    bd_denoiser_free(an);
    bd_denoiser_free(d);
    bd_context_free(ctx);
}

/* allocation failure at every allocation point of create/init/train/sample:
   an out-of-memory error, nothing leaked, no crash */
static long fa_calls = 0, fa_fail_at = -1, fa_live = 0;
static void *fail_alloc(size_t n, void *ud) {
    (void)ud;
    if (++fa_calls == fa_fail_at) return NULL;
    fa_live++;
    return malloc(n);
}
static void fail_free(void *p, void *ud) {
    (void)ud;
    if (p) { fa_live--; free(p); }
}

static bd_result alloc_scenario(bd_context *ctx) {
    bd_mlp_config mc = bd_mlp_config_init(2);
    bd_trainer_config tc = bd_trainer_config_init();
    bd_denoiser *d = NULL, *s = NULL, *an = NULL;
    bd_trainer *tr = NULL;
    bd_sampler *smp = NULL;
    bd_rng rng = bd_rng_init(1);
    float x[16 * 2], pts[4] = {0.5f, 0.5f, -0.5f, -0.5f};
    bd_analytic_config ac = bd_analytic_config_init(2, pts, 2, 0.1);
    bd_sampler_config sc = bd_sampler_config_init(BD_SAMPLER_HEUN, 4);
    double loss;
    bd_result r;
    mc.hidden = 8;
    mc.depth = 2;
    ring_data(NULL, x, 16, &rng);
    if ((r = bd_mlp_create(ctx, &mc, &rng, &d)) != BD_SUCCESS) goto done;
    if ((r = bd_trainer_init(ctx, d, &tc, 16, &tr)) != BD_SUCCESS) goto done;
    if ((r = bd_trainer_step(tr, x, 16, &loss)) != BD_SUCCESS) goto done;
    if ((r = bd_denoiser_create_like(d, 2, &rng, &s)) != BD_SUCCESS) goto done;
    if ((r = bd_sampler_init(ctx, s, 8, &smp)) != BD_SUCCESS) goto done;
    if ((r = bd_sampler_run(smp, &sc, x, 16, NULL, NULL)) != BD_SUCCESS) goto done;
    bd_sampler_free(smp);
    smp = NULL;
    if ((r = bd_analytic_create(ctx, &ac, &an)) != BD_SUCCESS) goto done;
    if ((r = bd_sampler_init(ctx, an, 8, &smp)) != BD_SUCCESS) goto done;
    r = bd_sampler_run(smp, &sc, x, 16, NULL, NULL);
done:
    bd_sampler_free(smp);
    bd_trainer_free(tr);
    bd_denoiser_free(an);
    bd_denoiser_free(s);
    bd_denoiser_free(d);
    return r;
}

static void test_alloc_failures(void) {
    long k, points = 0;
    int ok_seen = 0;
    for (k = 1; k < 200 && !ok_seen; k++) {
        bd_context *ctx = NULL;
        bd_context_config cc = bd_context_config_init();
        bd_result r;
        cc.allocator.alloc = fail_alloc;
        cc.allocator.free = fail_free;
        fa_calls = 0;
        fa_fail_at = -1;
        fa_live = 0;
        BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
        fa_fail_at = fa_calls + k; /* the k-th allocation after the context */
        r = alloc_scenario(ctx);
        if (fa_calls < fa_fail_at) {
            ok_seen = 1; /* no allocation left to fail: the whole scenario ran */
            BDT_CHECKF(r == BD_SUCCESS, "unfailed run returned %s: %s", bd_result_string(r), bd_context_message(ctx));
        } else {
            points++;
            BDT_CHECKF(r == BD_ERROR_OUT_OF_MEMORY, "allocation %ld failed: got %s", k, bd_result_string(r));
        }
        BDT_CHECKF(fa_live == 1, "allocation %ld failed: %ld blocks leaked", k, fa_live - 1);
        bd_context_free(ctx);
        BDT_CHECK(fa_live == 0);
    }
    printf("  %ld allocation points failed one by one: each an out-of-memory error, no leak\n", points);
    BDT_CHECK(ok_seen && points > 20);
}

int main(void) {
    BDT_RUN(test_mlp_gradcheck);
    BDT_RUN(test_mlp_create_like_and_copy);
    BDT_RUN(test_adam_formula);
    BDT_RUN(test_lr_schedule_and_ema);
    BDT_RUN(test_trainer_ema_and_loss);
    BDT_RUN(test_nan_guard);
    BDT_RUN(test_exact_resume);
    BDT_RUN(test_trainer_errors);
    BDT_RUN(test_alloc_failures);
    BDT_RUN(test_training_lowers_loss);
    return BDT_SUMMARY("test_train");
}
