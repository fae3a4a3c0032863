/* test_cuda_unet.c - whole-network paths on the CUDA backend against the
   CPU: UNet forward and backward, a full training step (bd_trainer_step
   with the model on the GPU vs on the CPU), sampling runs (bd_sampler_run
   with the model on the GPU vs on the CPU), a B-DENSE
   PD and TD distillation steps (bd_distill with the models on the GPU vs
   on the CPU), a distiller state saved on the GPU and loaded on the CPU, and moving
   a model between contexts.  Without a GPU: "no GPU, skipped", exit 0.

   Tolerances (normalised MSE, sum (gpu-cpu)^2 / sum cpu^2):
     forward output, gradients   1e-9   (float32 GEMM summation order over
                                         ~40 layers: relative errors ~1e-6)
     parameters after 3 steps    1e-9   (AdamW normalises the update, so a
                                         tiny gradient difference changes it
                                         little; weights dominate the norm)
     loss per step               relative 1e-5
     samples (10 DDIM / 8 DPM++ / 5 Heun steps)  1e-7
     distillation loss and branch losses relative 5e-4 (small residuals:
                                         the student starts as the teacher),
                                         student params and EMA nmse 1e-9
   The tiny config runs everywhere; the `small` config (docs/spec.md sec. 6) at batch 4 runs
   only on a real GPU (the host emulator is too slow for it). */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <stdlib.h>

static bd_context *g_cpu, *g_gpu;
static double g_worst = 0.0; /* max nmse / tol */

static double nmse(const float *a, const float *ref, int64_t n) {
    double num = 0.0, den = 0.0;
    int64_t i;
    for (i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    if (num != num) return 1e30;
    return den > 0 ? num / den : num;
}

static void check_nmse(const char *what, const float *gpu_host, const float *cpu, int64_t n, double tol) {
    double e = nmse(gpu_host, cpu, n);
    if (e / tol > g_worst) g_worst = e / tol;
    printf("    %-46s n=%-9lld nmse=%.3e (tol %.0e)\n", what, (long long)n, e, tol);
    BDT_CHECKF(e <= tol, "%s: nmse %.3e > %.0e", what, e, tol);
}

static float *dev_alloc(int64_t n) {
    float *p = NULL;
    if (bd_backend_alloc(g_gpu, (size_t)n * sizeof(float), (void **)&p) != BD_SUCCESS)
        printf("    device alloc failed: %s\n", bd_context_message(g_gpu));
    return p;
}

static float *host_copy_of_device(const float *d, int64_t n) {
    float *h = (float *)malloc((size_t)n * sizeof(float));
    bd_result r = bd_backend_download(g_gpu, h, d, (size_t)n * sizeof(float));
    BDT_CHECKF(r == BD_SUCCESS, "download: %s", bd_context_message(g_gpu));
    return h;
}

/* two identical UNets with random (non-zero) weights: one on the CPU, one
   moved to the GPU */
static int make_pair(const bd_unet_config *cfg, bd_denoiser **cpu, bd_denoiser **gpu) {
    bd_rng r1 = bd_rng_init(21), r2 = bd_rng_init(21), rw = bd_rng_init(22);
    bd_result r;
    *cpu = *gpu = NULL;
    if (bd_unet_init(g_cpu, cfg, &r1, cpu) != BD_SUCCESS || bd_unet_init(g_cpu, cfg, &r2, gpu) != BD_SUCCESS) {
        printf("    unet init failed: %s\n", bd_context_message(g_cpu));
        return 0;
    }
    /* zero-initialised convs would hide half the gradients: randomise all */
    bd_rng_uniform_fill(&rw, (*cpu)->params, (*cpu)->n_params, -0.2f, 0.2f);
    memcpy((*gpu)->params, (*cpu)->params, (size_t)(*cpu)->n_params * sizeof(float));
    r = bd_denoiser_to_context(*gpu, g_gpu);
    BDT_CHECKF(r == BD_SUCCESS, "to_context: %s", bd_context_message(g_gpu));
    return r == BD_SUCCESS;
}

static void fwd_bwd_case(const char *name, const bd_unet_config *cfg, int64_t N) {
    bd_denoiser *mc, *mg;
    bd_rng rng = bd_rng_init(5);
    int64_t D, KD, P;
    float *z, *t, *dout, *out_c, *dz_c, *out_h, *g_h, *dz_h;
    float *zd, *td, *doutd, *outd, *dzd;
    char what[96];
    if (!make_pair(cfg, &mc, &mg)) return;
    D = bd_denoiser_sample_size(mc);
    KD = D * mc->branches;
    P = mc->n_params;
    z = (float *)malloc((size_t)(N * D) * sizeof(float));
    t = (float *)malloc((size_t)N * sizeof(float));
    dout = (float *)malloc((size_t)(N * KD) * sizeof(float));
    out_c = (float *)malloc((size_t)(N * KD) * sizeof(float));
    dz_c = (float *)calloc((size_t)(N * D), sizeof(float));
    bd_rng_normal(&rng, z, N * D);
    bd_rng_uniform_fill(&rng, t, N, 0.02f, 0.98f);
    bd_rng_normal(&rng, dout, N * KD);
    zd = dev_alloc(N * D); td = dev_alloc(N); doutd = dev_alloc(N * KD); outd = dev_alloc(N * KD);
    dzd = dev_alloc(N * D);
    bd_backend_upload(g_gpu, zd, z, (size_t)(N * D) * sizeof(float));
    bd_backend_upload(g_gpu, td, t, (size_t)N * sizeof(float));
    bd_backend_upload(g_gpu, doutd, dout, (size_t)(N * KD) * sizeof(float));
    bd_backend_zero(g_gpu, dzd, (size_t)(N * D) * sizeof(float));
    /* CPU */
    BDT_CHECK(bd_denoiser_forward(mc, out_c, z, t, N, 1) == BD_SUCCESS);
    bd_denoiser_zero_grad(mc);
    BDT_CHECK(bd_denoiser_backward(mc, dz_c, dout, N) == BD_SUCCESS);
    /* GPU */
    BDT_CHECKF(bd_denoiser_forward(mg, outd, zd, td, N, 1) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    bd_denoiser_zero_grad(mg);
    BDT_CHECKF(bd_denoiser_backward(mg, dzd, doutd, N) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    BDT_CHECKF(bd_backend_sync(g_gpu) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    out_h = host_copy_of_device(outd, N * KD);
    g_h = host_copy_of_device(mg->grads, P);
    dz_h = host_copy_of_device(dzd, N * D);
    snprintf(what, sizeof what, "%s forward out (N=%lld)", name, (long long)N);
    check_nmse(what, out_h, out_c, N * KD, 1e-9);
    snprintf(what, sizeof what, "%s backward param grads", name);
    check_nmse(what, g_h, mc->grads, P, 1e-9);
    snprintf(what, sizeof what, "%s backward dz", name);
    check_nmse(what, dz_h, dz_c, N * D, 1e-9);
    free(z); free(t); free(dout); free(out_c); free(dz_c); free(out_h); free(g_h); free(dz_h);
    bd_backend_free(g_gpu, zd); bd_backend_free(g_gpu, td); bd_backend_free(g_gpu, doutd);
    bd_backend_free(g_gpu, outd); bd_backend_free(g_gpu, dzd);
    bd_denoiser_free(mc);
    bd_denoiser_free(mg);
}

static bd_unet_config tiny_config(void) {
    bd_unet_config c = bd_unet_config_init();
    c.image_size = 8;
    c.ch = 8;
    c.levels = 2;
    c.ch_mult[0] = 1; c.ch_mult[1] = 2; c.ch_mult[2] = 0;
    c.attn[0] = 0; c.attn[1] = 1; c.attn[2] = 0;
    c.groups = 2;
    c.heads = 2;
    c.branches = 2;
    return c;
}

static void test_unet_forward_backward(void) {
    bd_unet_config tiny = tiny_config();
    fwd_bwd_case("tiny", &tiny, 3);
#ifndef BDENSE_CUDA_EMULATE
    {
        bd_unet_config small = bd_unet_config_init();
        fwd_bwd_case("small", &small, 4);
    }
#endif
}

static void train_case(const char *name, const bd_unet_config *cfg, int64_t N, bd_loss_weight wt) {
    bd_denoiser *mc, *mg;
    bd_trainer_config tc = bd_trainer_config_init();
    bd_trainer *tr = NULL, *dt = NULL;
    bd_rng data = bd_rng_init(8);
    int64_t D, P, s;
    float *x, *p_h, *ema_h;
    double lc = 0, lg = 0, worst = 0;
    char what[96];
    if (!make_pair(cfg, &mc, &mg)) return;
    D = bd_denoiser_sample_size(mc);
    P = mc->n_params;
    tc.weighting = wt;
    tc.adam.lr = 1e-3;
    tc.seed = 99;
    BDT_CHECK(bd_trainer_init(g_cpu, mc, &tc, N, &tr) == BD_SUCCESS);
    BDT_CHECKF(bd_trainer_init(g_gpu, mg, &tc, N, &dt) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    if (!tr || !dt) return;
    x = (float *)malloc((size_t)(N * D) * sizeof(float));
    for (s = 0; s < 3; s++) {
        bd_rng_uniform_fill(&data, x, N * D, -1.0f, 1.0f);
        BDT_CHECK(bd_trainer_step(tr, x, N, &lc) == BD_SUCCESS);
        BDT_CHECKF(bd_trainer_step(dt, x, N, &lg) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
        if (fabs(lc - lg) / fabs(lc) > worst) worst = fabs(lc - lg) / fabs(lc);
        printf("    %s step %lld: loss cpu %.8f gpu %.8f\n", name, (long long)s + 1, lc, lg);
    }
    BDT_CHECKF(worst < 1e-5, "%s: loss rel diff %.3g", name, worst);
    p_h = (float *)malloc((size_t)P * sizeof(float));
    ema_h = (float *)malloc((size_t)P * sizeof(float));
    BDT_CHECK(bd_backend_download(g_gpu, p_h, mg->params, (size_t)P * sizeof(float)) == BD_SUCCESS);
    BDT_CHECK(bd_backend_download(g_gpu, ema_h, dt->ema, (size_t)P * sizeof(float)) == BD_SUCCESS);
    snprintf(what, sizeof what, "%s params after 3 train steps", name);
    check_nmse(what, p_h, mc->params, P, 1e-9);
    snprintf(what, sizeof what, "%s EMA after 3 train steps", name);
    check_nmse(what, ema_h, tr->ema, P, 1e-9);
    free(x); free(p_h); free(ema_h);
    bd_trainer_free(dt);
    bd_trainer_free(tr);
    bd_denoiser_free(mc);
    bd_denoiser_free(mg);
}

static void test_train_step(void) {
    bd_unet_config tiny = tiny_config();
    train_case("tiny v/none", &tiny, 4, BD_WEIGHT_NONE);
    train_case("tiny v/snr_trunc", &tiny, 4, BD_WEIGHT_SNR_TRUNC);
#ifndef BDENSE_CUDA_EMULATE
    {
        bd_unet_config small = bd_unet_config_init();
        train_case("small v/none", &small, 4, BD_WEIGHT_NONE);
    }
#endif
}

static void sample_case(const char *name, const bd_unet_config *cfg, bd_sampler_kind kind,
                        int64_t steps, int64_t N) {
    bd_denoiser *mc, *mg;
    bd_sampler *cs = NULL, *ds = NULL;
    bd_sampler_config sc = bd_sampler_config_init(kind, steps);
    int64_t D, nfe_c = 0, nfe_g = 0;
    float *xc, *xg;
    char what[96];
    if (!make_pair(cfg, &mc, &mg)) return;
    D = bd_denoiser_sample_size(mc);
    BDT_CHECK(bd_sampler_init(g_cpu, mc, N, &cs) == BD_SUCCESS);
    BDT_CHECKF(bd_sampler_init(g_gpu, mg, N, &ds) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    if (!cs || !ds) return;
    xc = (float *)malloc((size_t)(N * D) * sizeof(float));
    xg = (float *)malloc((size_t)(N * D) * sizeof(float));
    bd_noise_fill(xc, N * D, 2024);
    memcpy(xg, xc, (size_t)(N * D) * sizeof(float));
    BDT_CHECK(bd_sampler_run(cs, &sc, xc, N, NULL, &nfe_c) == BD_SUCCESS);
    BDT_CHECKF(bd_sampler_run(ds, &sc, xg, N, NULL, &nfe_g) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    BDT_CHECK(nfe_c == nfe_g);
    snprintf(what, sizeof what, "%s %s %lld steps (%lld NFE)", name, bd_sampler_name(kind), (long long)steps,
             (long long)nfe_g);
    check_nmse(what, xg, xc, N * D, 1e-7);
    free(xc); free(xg);
    bd_sampler_free(ds);
    bd_sampler_free(cs);
    bd_denoiser_free(mc);
    bd_denoiser_free(mg);
}

/* per-step callback sums (z and x_hat arrive as host arrays on the GPU too) */
typedef struct cb_sum {
    double z, x;
    int64_t calls;
} cb_sum;
static int sum_cb(void *ud, int64_t step, double t, double s, const float *z, const float *x_hat, int64_t n,
                  int64_t D, int64_t first) {
    cb_sum *c = (cb_sum *)ud;
    int64_t i;
    (void)step; (void)t; (void)s; (void)first;
    for (i = 0; i < n * D; i++) {
        c->z += fabs((double)z[i]);
        c->x += fabs((double)x_hat[i]);
    }
    c->calls++;
    return 0;
}

/* the sampler's host features on the GPU: clip_x and the callback, and
   DDPM's noise from the caller's rng */
static void test_sampling_host_features(void) {
    bd_unet_config tiny = tiny_config();
    bd_denoiser *mc, *mg;
    bd_sampler *cs = NULL, *ds = NULL;
    int k;
    if (!make_pair(&tiny, &mc, &mg)) return;
    BDT_CHECK(bd_sampler_init(g_cpu, mc, 2, &cs) == BD_SUCCESS);
    BDT_CHECKF(bd_sampler_init(g_gpu, mg, 2, &ds) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    if (!cs || !ds) return;
    for (k = 0; k < 2; k++) {
        bd_sampler_config sc = bd_sampler_config_init(k ? BD_SAMPLER_DDPM : BD_SAMPLER_DDIM, 6);
        bd_rng q1 = bd_rng_init(3), q2 = bd_rng_init(3);
        int64_t D = bd_denoiser_sample_size(mc), N = 3;
        float *xc = (float *)malloc((size_t)(N * D) * sizeof(float)), *xg = (float *)malloc((size_t)(N * D) * sizeof(float));
        cb_sum c1 = {0, 0, 0}, c2 = {0, 0, 0};
        char what[96];
        sc.clip_x = 1;
        sc.callback = sum_cb;
        bd_noise_fill(xc, N * D, 77);
        memcpy(xg, xc, (size_t)(N * D) * sizeof(float));
        sc.user_data = &c1;
        BDT_CHECK(bd_sampler_run(cs, &sc, xc, N, &q1, NULL) == BD_SUCCESS);
        sc.user_data = &c2;
        BDT_CHECKF(bd_sampler_run(ds, &sc, xg, N, &q2, NULL) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
        snprintf(what, sizeof what, "tiny %s, clip_x and callback", bd_sampler_name(sc.kind));
        check_nmse(what, xg, xc, N * D, 1e-7);
        BDT_CHECKF(c1.calls == c2.calls && c1.calls == 2 * 6 && fabs(c1.z - c2.z) <= 1e-5 * c1.z &&
                       fabs(c1.x - c2.x) <= 1e-5 * c1.x,
                   "callback: %lld vs %lld calls, sums %.9g/%.9g vs %.9g/%.9g", (long long)c1.calls,
                   (long long)c2.calls, c1.z, c1.x, c2.z, c2.x);
        free(xc);
        free(xg);
    }
    bd_sampler_free(ds);
    bd_sampler_free(cs);
    bd_denoiser_free(mc);
    bd_denoiser_free(mg);
}

/* a trainer on the GPU saved with bd_model_save (state downloaded) and
   resumed on the CPU: the next step agrees */
static void test_train_checkpoint(void) {
    bd_unet_config tiny = tiny_config();
    bd_trainer_config tc = bd_trainer_config_init();
    bd_rng r1 = bd_rng_init(1), r2 = bd_rng_init(1), data = bd_rng_init(8);
    bd_model *hm = NULL, *dm = NULL;
    bd_trainer *tr = NULL, *dt = NULL;
    const char *path = "build-emu-ckpt.safetensors";
    float *x;
    int64_t D, N = 2, s;
    double l1 = 0, l2 = 0;
    BDT_CHECK(bd_model_init_unet(g_cpu, &tiny, BD_PARAM_V, BD_SCHEDULE_COSINE, &r1, &hm) == BD_SUCCESS);
    BDT_CHECK(bd_model_init_unet(g_cpu, &tiny, BD_PARAM_V, BD_SCHEDULE_COSINE, &r2, &dm) == BD_SUCCESS);
    if (!hm || !dm) return;
    BDT_CHECKF(bd_denoiser_to_context(dm->net, g_gpu) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    tc.adam.lr = 1e-3;
    tc.seed = 5;
    BDT_CHECK(bd_trainer_init(g_cpu, hm->net, &tc, N, &tr) == BD_SUCCESS);
    BDT_CHECKF(bd_trainer_init(g_cpu, dm->net, &tc, N, &dt) == BD_SUCCESS, "%s", bd_context_message(g_cpu));
    if (!tr || !dt) return;
    D = bd_denoiser_sample_size(hm->net);
    x = (float *)malloc((size_t)(N * D) * sizeof(float));
    for (s = 0; s < 2; s++) {
        bd_rng_uniform_fill(&data, x, N * D, -1.0f, 1.0f);
        BDT_CHECKF(bd_trainer_step(dt, x, N, &l2) == BD_SUCCESS, "%s", bd_context_message(g_cpu));
    }
    BDT_CHECKF(bd_model_save(g_cpu, dm, path, dt) == BD_SUCCESS, "%s", bd_context_message(g_cpu));
    BDT_CHECKF(bd_model_resume(g_cpu, path, hm, tr) == BD_SUCCESS, "%s", bd_context_message(g_cpu));
    BDT_CHECK(tr->adam.step == 2);
    bd_rng_uniform_fill(&data, x, N * D, -1.0f, 1.0f);
    BDT_CHECK(bd_trainer_step(tr, x, N, &l1) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_step(dt, x, N, &l2) == BD_SUCCESS);
    printf("    step 3 after a GPU checkpoint resumed on the CPU: loss cpu %.8f gpu %.8f\n", l1, l2);
    BDT_CHECKF(fabs(l1 - l2) <= 1e-5 * fabs(l1), "loss %.9g vs %.9g", l1, l2);
    remove(path);
    free(x);
    bd_trainer_free(dt);
    bd_trainer_free(tr);
    bd_model_free(dm);
    bd_model_free(hm);
}

static void test_sampling(void) {
    bd_unet_config tiny = tiny_config();
    sample_case("tiny", &tiny, BD_SAMPLER_DDIM, 10, 3);
    sample_case("tiny", &tiny, BD_SAMPLER_DPMPP_2M, 8, 2);
#ifndef BDENSE_CUDA_EMULATE
    {
        bd_unet_config small = bd_unet_config_init();
        sample_case("small", &small, BD_SAMPLER_DDIM, 10, 4);
        sample_case("small", &small, BD_SAMPLER_HEUN, 5, 1);
    }
#endif
}

/* a B-DENSE PD step (K = 2 branches, 4 teacher DDIM sub-steps) on the GPU
   against bd_distill_step on the CPU */
static void test_distill_step(void) {
    bd_unet_config tiny = tiny_config();
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_PD, 2, 4);
    bd_denoiser *tc, *tg, *sc = NULL, *sg = NULL;
    bd_distill *dist = NULL;
    bd_distill *dd = NULL;
    bd_rng r1 = bd_rng_init(6), r2 = bd_rng_init(6), data = bd_rng_init(7);
    int64_t N = 4, D, s, k;
    float *x, *p_h, *e_h;
    double l1 = 0, l2 = 0, b1[2], b2[2], worst = 0;
    tiny.branches = 1;
    if (!make_pair(&tiny, &tc, &tg)) return;
    D = bd_denoiser_sample_size(tc);
    dc.teacher_substeps = 4;
    dc.weights = BD_WEIGHTS_ADAPTIVE;
    dc.adam.lr = 1e-3;
    dc.seed = 17;
    BDT_CHECK(bd_distill_student_from_teacher(tc, 2, &r1, &sc) == BD_SUCCESS);
    BDT_CHECK(bd_distill_student_from_teacher(tc, 2, &r2, &sg) == BD_SUCCESS);
    if (!sc || !sg) return;
    BDT_CHECKF(bd_denoiser_to_context(sg, g_gpu) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    BDT_CHECK(bd_distill_init(g_cpu, &dc, tc, sc, N, &dist) == BD_SUCCESS);
    BDT_CHECKF(bd_distill_init(g_gpu, &dc, tg, sg, N, &dd) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    if (!dist || !dd) return;
    x = (float *)malloc((size_t)(N * D) * sizeof(float));
    for (s = 0; s < 3; s++) {
        bd_rng_uniform_fill(&data, x, N * D, -1.0f, 1.0f);
        BDT_CHECK(bd_distill_step(dist, x, N, &l1, b1) == BD_SUCCESS);
        BDT_CHECKF(bd_distill_step(dd, x, N, &l2, b2) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
        printf("    distill step %lld: loss cpu %.8f gpu %.8f, branches %.6f/%.6f vs %.6f/%.6f\n", (long long)s + 1,
               l1, l2, b1[0], b1[1], b2[0], b2[1]);
        if (fabs(l1 - l2) / fabs(l1) > worst) worst = fabs(l1 - l2) / fabs(l1);
        for (k = 0; k < 2; k++)
            if (fabs(b1[k] - b2[k]) / fabs(b1[k]) > worst) worst = fabs(b1[k] - b2[k]) / fabs(b1[k]);
    }
    /* small residuals (the student starts as the teacher): see test_backend */
    BDT_CHECKF(worst < 5e-4, "distill loss rel diff %.3g", worst);
    p_h = (float *)malloc((size_t)sc->n_params * sizeof(float));
    e_h = (float *)malloc((size_t)sc->n_params * sizeof(float));
    BDT_CHECK(bd_backend_download(g_gpu, p_h, sg->params, (size_t)sc->n_params * sizeof(float)) == BD_SUCCESS);
    BDT_CHECK(bd_backend_download(g_gpu, e_h, dd->ema, (size_t)sc->n_params * sizeof(float)) == BD_SUCCESS);
    check_nmse("distill student params after 3 PD steps", p_h, sc->params, sc->n_params, 1e-9);
    check_nmse("distill student EMA after 3 PD steps", e_h, dist->ema, sc->n_params, 1e-9);
    /* the exact state from the GPU into the CPU distiller: one more step on each */
    BDT_CHECKF(bd_distill_save_state(dd, "build/test_cuda_distill.safetensors") == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    BDT_CHECKF(bd_distill_load_state(dist, "build/test_cuda_distill.safetensors") == BD_SUCCESS, "%s", bd_context_message(g_cpu));
    BDT_CHECK(dist->step == dd->step && memcmp(dist->rng.s, dd->rng.s, sizeof dd->rng.s) == 0);
    BDT_CHECK(memcmp(dist->ema, e_h, (size_t)sc->n_params * sizeof(float)) == 0);
    BDT_CHECK(bd_distill_step(dist, x, N, &l1, b1) == BD_SUCCESS);
    BDT_CHECK(bd_distill_step(dd, x, N, &l2, b2) == BD_SUCCESS);
    BDT_CHECKF(fabs(l1 - l2) <= 5e-4 * fabs(l1), "after loading the GPU state: loss cpu %.8f gpu %.8f", l1, l2);
    remove("build/test_cuda_distill.safetensors");
    free(x); free(p_h); free(e_h);
    bd_distill_free(dd);
    bd_distill_free(dist);
    bd_denoiser_free(sc); bd_denoiser_free(sg); bd_denoiser_free(tc); bd_denoiser_free(tg);
}

/* the B-DENSE TD step on the GPU against bd_distill_step: the teacher's
   DPM-Solver++ trajectories solved on the GPU (cached == 0) or drawn from
   a host cache, the student's N passes, AdamW and EMA */
static void td_case(int cached) {
    bd_unet_config tiny = tiny_config();
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_TD, 2, 2);
    bd_denoiser *tc, *tg, *sc = NULL, *sg = NULL;
    bd_distill *dist = NULL;
    bd_distill *dd = NULL;
    bd_rng r1 = bd_rng_init(6), r2 = bd_rng_init(6), rc = bd_rng_init(9);
    int64_t N = 4, s, k, ncache = 6;
    float *p_h, *e_h, *cache = NULL;
    double l1 = 0, l2 = 0, b1[2], b2[2], worst = 0;
    tiny.branches = 1;
    if (!make_pair(&tiny, &tc, &tg)) return;
    dc.teacher_substeps = 4;
    dc.weights = cached ? BD_WEIGHTS_AGREE : BD_WEIGHTS_UNIFORM; /* dense targets from the student's state */
    dc.adam.lr = 1e-3;
    dc.seed = 19;
    BDT_CHECK(bd_distill_student_from_teacher(tc, 2, &r1, &sc) == BD_SUCCESS);
    BDT_CHECK(bd_distill_student_from_teacher(tc, 2, &r2, &sg) == BD_SUCCESS);
    if (!sc || !sg) return;
    BDT_CHECKF(bd_denoiser_to_context(sg, g_gpu) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    BDT_CHECK(bd_distill_init(g_cpu, &dc, tc, sc, N, &dist) == BD_SUCCESS);
    BDT_CHECKF(bd_distill_init(g_gpu, &dc, tg, sg, N, &dd) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    if (!dist || !dd) return;
    if (cached) {
        cache = (float *)malloc(sizeof(float) * (size_t)(ncache * (dist->S + 1) * dist->D));
        BDT_CHECK(bd_distill_teacher_trajectories(dist, cache, ncache, &rc) == BD_SUCCESS);
        BDT_CHECK(bd_distill_set_trajectories(dist, cache, ncache) == BD_SUCCESS);
        BDT_CHECK(bd_distill_set_trajectories(dd, cache, ncache) == BD_SUCCESS);
    }
    for (s = 0; s < 3; s++) {
        BDT_CHECK(bd_distill_step(dist, NULL, N, &l1, b1) == BD_SUCCESS);
        BDT_CHECKF(bd_distill_step(dd, NULL, N, &l2, b2) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
        printf("    TD%s step %lld: loss cpu %.8f gpu %.8f, branches %.6f/%.6f vs %.6f/%.6f\n",
               cached ? " (cached)" : "", (long long)s + 1, l1, l2, b1[0], b1[1], b2[0], b2[1]);
        if (fabs(l1 - l2) / fabs(l1) > worst) worst = fabs(l1 - l2) / fabs(l1);
        for (k = 0; k < 2; k++)
            if (fabs(b1[k] - b2[k]) / fabs(b1[k]) > worst) worst = fabs(b1[k] - b2[k]) / fabs(b1[k]);
    }
    BDT_CHECKF(worst < 5e-4, "TD loss rel diff %.3g", worst);
    p_h = (float *)malloc((size_t)sc->n_params * sizeof(float));
    e_h = (float *)malloc((size_t)sc->n_params * sizeof(float));
    BDT_CHECK(bd_backend_download(g_gpu, p_h, sg->params, (size_t)sc->n_params * sizeof(float)) == BD_SUCCESS);
    BDT_CHECK(bd_backend_download(g_gpu, e_h, dd->ema, (size_t)sc->n_params * sizeof(float)) == BD_SUCCESS);
    check_nmse(cached ? "TD (cached) student params after 3 steps" : "TD student params after 3 steps", p_h,
               sc->params, sc->n_params, 1e-9);
    check_nmse(cached ? "TD (cached) student EMA after 3 steps" : "TD student EMA after 3 steps", e_h, dist->ema,
               sc->n_params, 1e-9);
    free(p_h); free(e_h); free(cache);
    bd_distill_free(dd);
    bd_distill_free(dist);
    bd_denoiser_free(sc); bd_denoiser_free(sg); bd_denoiser_free(tc); bd_denoiser_free(tg);
}

static void test_distill_td(void) {
    td_case(0);
    td_case(1);
}

/* to the GPU and back: weights intact, forward on the CPU again */
static void test_move_back(void) {
    bd_unet_config tiny = tiny_config();
    bd_denoiser *mc, *mg;
    float z[2 * 64], t[2] = {0.3f, 0.8f}, o1[2 * 128], o2[2 * 128];
    bd_rng rng = bd_rng_init(3);
    if (!make_pair(&tiny, &mc, &mg)) return;
    BDT_CHECK(bd_backend_on_device(mg->ctx));
    BDT_CHECK(bd_denoiser_reserve(mg, 4) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_to_context(mg, g_cpu) == BD_SUCCESS);
    BDT_CHECK(mg->ctx == g_cpu && mg->reserved_batch == 4);
    BDT_CHECK(memcmp(mg->params, mc->params, (size_t)mc->n_params * sizeof(float)) == 0);
    bd_rng_normal(&rng, z, 2 * 64);
    BDT_CHECK(bd_denoiser_forward(mc, o1, z, t, 2, 0) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_forward(mg, o2, z, t, 2, 0) == BD_SUCCESS);
    BDT_CHECK(memcmp(o1, o2, sizeof o1) == 0);
    bd_denoiser_free(mc);
    bd_denoiser_free(mg);
}

/* a UNet created directly on the GPU context equals one made on the CPU */
static void test_init_on_device(void) {
    bd_unet_config tiny = tiny_config();
    bd_denoiser *mc = NULL, *mg = NULL;
    bd_rng r1 = bd_rng_init(44), r2 = bd_rng_init(44);
    float *p;
    BDT_CHECK(bd_unet_init(g_cpu, &tiny, &r1, &mc) == BD_SUCCESS);
    BDT_CHECKF(bd_unet_init(g_gpu, &tiny, &r2, &mg) == BD_SUCCESS, "%s", bd_context_message(g_gpu));
    if (!mc || !mg) return;
    p = host_copy_of_device(mg->params, mg->n_params);
    BDT_CHECK(memcmp(p, mc->params, (size_t)mc->n_params * sizeof(float)) == 0);
    free(p);
    bd_denoiser_free(mc);
    bd_denoiser_free(mg);
}

int main(void) {
    bd_context_config cc = bd_context_config_init();
    bd_result r;
    (void)bdt_close_ratio;
    char why[256];
    if (bd_cuda_probe(why, sizeof why) <= 0) {
        printf("test_cuda_unet: no GPU, skipped (%s)\n", why);
        printf("test_cuda_unet: 0 passed, 0 failed\n");
        return 0;
    }
    if (bd_context_init(&cc, &g_cpu) != BD_SUCCESS || bd_context_init(&cc, &g_gpu) != BD_SUCCESS) return 1;
    r = bd_cuda_init(g_gpu, 0);
    if (r != BD_SUCCESS) {
        printf("test_cuda_unet: bd_cuda_init failed: %s\n", bd_context_message(g_gpu));
        printf("test_cuda_unet: 0 passed, 1 failed\n");
        return 1;
    }
    BDT_RUN(test_unet_forward_backward);
    BDT_RUN(test_train_step);
    BDT_RUN(test_sampling);
    BDT_RUN(test_sampling_host_features);
    BDT_RUN(test_train_checkpoint);
    BDT_RUN(test_distill_step);
    BDT_RUN(test_distill_td);
    BDT_RUN(test_move_back);
    BDT_RUN(test_init_on_device);
    printf("test_cuda_unet: worst nmse/tol over all checks = %.3g\n", g_worst);
    bd_context_free(g_gpu);
    bd_context_free(g_cpu);
    return BDT_SUMMARY("test_cuda_unet");
}
