/* test_backend.c - the kernel table (>>backend) on the CPU: default table,
   registration with per-op fallback and refusal, dispatch through BD_OP,
   buffer operations and their errors, the release hook, and the bd_vec_*
   ops against double-precision formulas. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <stdlib.h>

static int g_silu_calls = 0, g_release_calls = 0;
static char g_log[512];

static void capture_log(void *ud, bd_result code, const char *msg) {
    (void)ud;
    (void)code;
    snprintf(g_log, sizeof g_log, "%s", msg);
}

/* a host backend that overrides one kernel (and counts its calls) */
static void counting_silu(void *st, float *out, const float *x, int64_t n) {
    int64_t i;
    (void)st;
    g_silu_calls++;
    for (i = 0; i < n; i++) out[i] = x[i] / (1.0f + expf(-x[i]));
}
static void counting_release(void *st, bd_context *ctx) {
    (void)st;
    (void)ctx;
    g_release_calls++;
}

static bd_context *mkctx(void) {
    bd_context *ctx = NULL;
    bd_context_config cc = bd_context_config_init();
    cc.log = capture_log;
    bd_context_init(&cc, &ctx);
    return ctx;
}

static void test_default_table(void) {
    bd_context *ctx = mkctx();
    const bd_backend *cpu = bd_backend_cpu();
    BDT_CHECK(ctx && ctx->backend == cpu);
    BDT_CHECK(strcmp(cpu->name, "cpu") == 0);
    BDT_CHECK(cpu->device_memory == 0);
    BDT_CHECK(!bd_backend_on_device(ctx));
    /* every entry is set */
    BDT_CHECK(cpu->buffer_alloc && cpu->buffer_free && cpu->buffer_zero && cpu->copy_h2d &&
              cpu->copy_d2h && cpu->copy_d2d && cpu->sync && cpu->sgemm);
    BDT_CHECK(cpu->linear_forward && cpu->linear_backward && cpu->silu_forward && cpu->silu_backward &&
              cpu->conv2d_forward && cpu->conv2d_backward && cpu->groupnorm_forward &&
              cpu->groupnorm_backward && cpu->upsample2x_forward && cpu->upsample2x_backward &&
              cpu->concat_forward && cpu->concat_backward && cpu->add_channel_forward &&
              cpu->add_channel_backward && cpu->add_forward && cpu->add_backward &&
              cpu->attention_forward && cpu->attention_backward &&
              cpu->timestep_embedding_forward && cpu->mse_forward && cpu->mse_backward);
    BDT_CHECK(cpu->vec_axpby && cpu->vec_fill && cpu->vec_adam && cpu->vec_ema && cpu->vec_sumsq);
    bd_context_free(ctx);
}

/* BD_OP through the CPU table gives the bd_ kernel's result bit for bit */
static void test_dispatch_cpu(void) {
    bd_context *ctx = mkctx();
    bd_rng rng = bd_rng_init(7);
    float x[3 * 4 * 5 * 5], w[6 * 4 * 9], b[6], o1[3 * 6 * 25], o2[3 * 6 * 25];
    float col[4 * 9 * 25];
    bd_rng_normal(&rng, x, 3 * 4 * 25);
    bd_rng_normal(&rng, w, 6 * 4 * 9);
    bd_rng_normal(&rng, b, 6);
    bd_conv2d_forward(o1, col, x, w, b, 3, 4, 5, 5, 6, 3, 1, 1);
    BD_OP(ctx, conv2d_forward, o2, col, x, w, b, 3, 4, 5, 5, 6, 3, 1, 1);
    BDT_CHECK(memcmp(o1, o2, sizeof o1) == 0);
    BDT_CHECK(BD_OP(ctx, mse_forward, o1, o2, NULL, 3, 150) == 0.0);
    bd_context_free(ctx);
}

static void test_register_fallback(void) {
    bd_context *ctx = mkctx();
    bd_backend be;
    float x[5] = {-2, -1, 0, 1, 2}, y[5], ref[5];
    memset(&be, 0, sizeof be);
    be.name = "host-override";
    be.silu_forward = counting_silu;
    be.release = counting_release;
    BDT_CHECK(bd_context_set_backend(ctx, &be) == BD_SUCCESS);
    BDT_CHECK(ctx->backend == &be);
    /* NULL entries were filled from the CPU table */
    BDT_CHECK(be.conv2d_forward == bd_backend_cpu()->conv2d_forward);
    BDT_CHECK(be.vec_adam == bd_backend_cpu()->vec_adam);
    BDT_CHECK(be.silu_forward == counting_silu);
    BD_OP(ctx, silu_forward, y, x, 5);
    bd_silu_forward(ref, x, 5);
    BDT_CHECK(g_silu_calls == 1);
    BDT_CHECK(memcmp(y, ref, sizeof y) == 0);
    /* back to the CPU table */
    BDT_CHECK(bd_context_set_backend(ctx, NULL) == BD_SUCCESS);
    BDT_CHECK(ctx->backend == bd_backend_cpu());
    BD_OP(ctx, silu_forward, y, x, 5);
    BDT_CHECK(g_silu_calls == 1);
    /* release hook runs on bd_context_free while installed */
    BDT_CHECK(bd_context_set_backend(ctx, &be) == BD_SUCCESS);
    g_release_calls = 0;
    bd_context_free(ctx);
    BDT_CHECK(g_release_calls == 1);
}

static void test_register_refused(void) {
    bd_context *ctx = mkctx();
    bd_backend be;
    bd_result r;
    be = *bd_backend_cpu();
    be.name = "fake-device";
    be.device_memory = 1;
    be.attention_backward = NULL;
    be.vec_ema = NULL;
    g_log[0] = 0;
    r = bd_context_set_backend(ctx, &be);
    BDT_CHECKF(r == BD_ERROR_UNSUPPORTED, "got %s", bd_result_string(r));
    BDT_CHECK(ctx->backend == bd_backend_cpu()); /* unchanged */
    BDT_CHECK(be.vec_ema == NULL);               /* refused table untouched */
    BDT_CHECKF(strstr(g_log, "attention_backward") != NULL, "message: %s", g_log);
    /* complete device table is accepted */
    be.attention_backward = bd_backend_cpu()->attention_backward;
    be.vec_ema = bd_backend_cpu()->vec_ema;
    BDT_CHECK(bd_context_set_backend(ctx, &be) == BD_SUCCESS);
    BDT_CHECK(bd_backend_on_device(ctx));
    BDT_CHECK(bd_context_set_backend(NULL, &be) == BD_ERROR_INVALID_ARGUMENT);
    bd_context_free(ctx);
}

static void test_buffers(void) {
    bd_context *ctx = mkctx();
    float src[8] = {1, 2, 3, 4, 5, 6, 7, 8}, dst[8];
    float *a = NULL, *b = NULL;
    int i, ok = 1;
    BDT_CHECK(bd_backend_alloc(ctx, sizeof src, (void **)&a) == BD_SUCCESS && a);
    BDT_CHECK(bd_backend_alloc(ctx, sizeof src, (void **)&b) == BD_SUCCESS && b);
    BDT_CHECK(bd_backend_upload(ctx, a, src, sizeof src) == BD_SUCCESS);
    BDT_CHECK(bd_backend_copy(ctx, b, a, sizeof src) == BD_SUCCESS);
    BDT_CHECK(bd_backend_zero(ctx, a, 4 * sizeof(float)) == BD_SUCCESS);
    BDT_CHECK(bd_backend_download(ctx, dst, b, sizeof dst) == BD_SUCCESS);
    for (i = 0; i < 8; i++) ok = ok && dst[i] == src[i];
    BDT_CHECK(ok);
    BDT_CHECK(bd_backend_download(ctx, dst, a, sizeof dst) == BD_SUCCESS);
    BDT_CHECK(dst[0] == 0 && dst[3] == 0 && dst[4] == 5);
    BDT_CHECK(bd_backend_sync(ctx) == BD_SUCCESS);
    /* errors */
    BDT_CHECK(bd_backend_upload(ctx, NULL, src, 4) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_backend_download(ctx, dst, NULL, 4) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_backend_copy(ctx, NULL, a, 4) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_backend_zero(ctx, NULL, 4) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_backend_upload(ctx, NULL, NULL, 0) == BD_SUCCESS); /* zero bytes: no-op */
    BDT_CHECK(bd_backend_alloc(ctx, 16, NULL) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_backend_alloc(NULL, 16, (void **)&a) == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(bd_backend_sync(NULL) == BD_ERROR_INVALID_ARGUMENT);
    bd_backend_free(ctx, a);
    bd_backend_free(ctx, b);
    bd_backend_free(ctx, NULL);
    bd_context_free(ctx);
}

static void test_vec_ops(void) {
    enum { N = 5, D = 7, LDO = 9, LDX = 8, LDY = 11, P = 1000 };
    bd_rng rng = bd_rng_init(99);
    float out[N * LDO], x[N * LDX], y[N * LDY], a[N], b[N];
    float p[P], g[P], m[P], v[P], p0[P], m0[P], v0[P], ema[P], ema0[P];
    bd_vec_adam_args ar;
    double worst = 0.0, s = 0.0;
    int n, d, i, untouched = 1;
    bd_rng_normal(&rng, x, N * LDX);
    bd_rng_normal(&rng, y, N * LDY);
    bd_rng_normal(&rng, a, N);
    bd_rng_normal(&rng, b, N);
    for (i = 0; i < N * LDO; i++) out[i] = 123.0f;
    bd_vec_axpby(out, LDO, x, LDX, a, 0.5f, y, LDY, b, -2.0f, N, D);
    for (n = 0; n < N; n++) {
        for (d = 0; d < D; d++) {
            double ref = 0.5 * a[n] * x[n * LDX + d] - 2.0 * b[n] * y[n * LDY + d];
            double e = fabs(out[n * LDO + d] - ref) / (1e-6 + fabs(ref));
            if (e > worst) worst = e;
        }
        for (d = D; d < LDO; d++) untouched = untouched && out[n * LDO + d] == 123.0f;
    }
    BDT_CHECKF(worst < 1e-5, "axpby rel err %.3g", worst);
    BDT_CHECK(untouched); /* padding between rows is left alone */
    bd_vec_axpby(out, LDO, x, LDX, NULL, 3.0f, NULL, 0, NULL, 0.0f, N, D);
    BDT_CHECK(out[LDO + 2] == 3.0f * x[LDX + 2]);
    bd_vec_fill(out, -1.5f, N * LDO);
    BDT_CHECK(out[0] == -1.5f && out[N * LDO - 1] == -1.5f);
    /* AdamW against the formula in double */
    bd_rng_normal(&rng, p, P);
    bd_rng_normal(&rng, g, P);
    bd_rng_normal(&rng, m, P);
    bd_rng_uniform_fill(&rng, v, P, 0.0f, 0.5f);
    memcpy(p0, p, sizeof p);
    memcpy(m0, m, sizeof m);
    memcpy(v0, v, sizeof v);
    ar.lr = 1e-2; ar.beta1 = 0.9; ar.beta2 = 0.99; ar.eps = 1e-8; ar.weight_decay = 0.1;
    ar.grad_scale = 0.5; ar.bias_c1 = 1 - pow(0.9, 4); ar.bias_c2 = 1 - pow(0.99, 4);
    bd_vec_adam(p, g, m, v, P, &ar);
    for (i = 0; i < P; i++) {
        double gi = 0.5 * g[i], mi = 0.9 * m0[i] + 0.1 * gi, vi = 0.99 * v0[i] + 0.01 * gi * gi;
        double pr = p0[i] * (1.0 - 1e-2 * 0.1) -
                    (1e-2 / ar.bias_c1) * mi / (sqrt(vi) / sqrt((double)ar.bias_c2) + 1e-8);
        p0[i] = (float)pr;
        m0[i] = (float)mi;
        v0[i] = (float)vi;
    }
    /* |a - b| <= 1e-6 + 1e-5 |b| elementwise */
    worst = bdt_close_ratio(p, p0, P, 1e-6, 1e-5, NULL);
    if (bdt_close_ratio(m, m0, P, 1e-6, 1e-5, NULL) > worst) worst = bdt_close_ratio(m, m0, P, 1e-6, 1e-5, NULL);
    if (bdt_close_ratio(v, v0, P, 1e-6, 1e-5, NULL) > worst) worst = bdt_close_ratio(v, v0, P, 1e-6, 1e-5, NULL);
    BDT_CHECKF(worst <= 1.0, "adam: worst error / tolerance %.3g", worst);
    /* EMA and sum of squares */
    bd_rng_normal(&rng, ema, P);
    memcpy(ema0, ema, sizeof ema);
    bd_vec_ema(ema, p, P, 0.99);
    worst = 0.0;
    for (i = 0; i < P; i++) {
        double r = 0.99 * ema0[i] + 0.01 * p[i], e = fabs(ema[i] - r) / (1e-6 + fabs(r));
        if (e > worst) worst = e;
        s += (double)g[i] * g[i];
    }
    BDT_CHECKF(worst < 1e-5, "ema rel err %.3g", worst);
    BDT_CHECK(bd_vec_sumsq(g, P) == s);
    g[17] = NAN;
    BDT_CHECK(!isfinite(bd_vec_sumsq(g, P)));
}

/* bd_adam_step is bd_vec_adam with the arguments of the formula, and
   bd_ema_update is bd_vec_ema: bit for bit */
static void test_vec_matches_adam(void) {
    enum { P = 777 };
    bd_context *ctx = mkctx();
    bd_rng rng = bd_rng_init(5);
    bd_adam_config ac = bd_adam_config_init();
    bd_adam adam;
    bd_vec_adam_args a;
    float p1[P], p2[P], g[P], m[P], v[P], e1[P], e2[P];
    double gn;
    int k, same = 1;
    ac.lr = 3e-3;
    ac.weight_decay = 0.05;
    ac.grad_clip = 0.0;
    BDT_CHECK(bd_adam_init(ctx, &ac, P, &adam) == BD_SUCCESS);
    bd_rng_normal(&rng, p1, P);
    memcpy(p2, p1, sizeof p1);
    memset(m, 0, sizeof m);
    memset(v, 0, sizeof v);
    memcpy(e1, p1, sizeof p1);
    memcpy(e2, p1, sizeof p1);
    for (k = 1; k <= 3; k++) {
        bd_rng_normal(&rng, g, P);
        BDT_CHECK(bd_adam_step(&adam, p1, g, &gn) == BD_SUCCESS);
        a.lr = bd_adam_lr(&ac, k); a.beta1 = ac.beta1; a.beta2 = ac.beta2; a.eps = ac.eps;
        a.weight_decay = ac.weight_decay; a.grad_scale = 1.0;
        a.bias_c1 = 1.0 - pow(ac.beta1, (double)k); a.bias_c2 = 1.0 - pow(ac.beta2, (double)k);
        bd_vec_adam(p2, g, m, v, P, &a);
        bd_ema_update(e1, p1, P, 0.9);
        bd_vec_ema(e2, p2, P, 0.9);
    }
    same = memcmp(p1, p2, sizeof p1) == 0 && memcmp(adam.m, m, sizeof m) == 0 &&
           memcmp(adam.v, v, sizeof v) == 0 && memcmp(e1, e2, sizeof e1) == 0;
    BDT_CHECK(same);
    bd_adam_free(&adam);
    bd_context_free(ctx);
}

/* A "device" backend whose memory is host memory: the CPU table with
   device_memory = 1.  The trainer and the sampler then take their device
   paths (uploads, downloads, host staging for the callback and clip_x,
   the checkpoint's downloads) and must give bit for bit what they give on
   a CPU context: the same kernels run in the same order. */
static bd_backend g_shadow;
static bd_context *mkshadow(void) {
    bd_context *ctx = mkctx();
    g_shadow = *bd_backend_cpu();
    g_shadow.name = "shadow";
    g_shadow.device_memory = 1;
    if (ctx && bd_context_set_backend(ctx, &g_shadow) != BD_SUCCESS) {
        bd_context_free(ctx);
        return NULL;
    }
    return ctx;
}

/* a tiny UNet on ctx, and its copy moved to the shadow context */
static void tiny_unet_pair(bd_context *ctx, bd_context *dev, int64_t K, bd_denoiser **h, bd_denoiser **d) {
    bd_unet_config uc = bd_unet_config_init();
    bd_rng r1 = bd_rng_init(1), r2 = bd_rng_init(1), rw = bd_rng_init(2);
    uc.image_size = 8; uc.ch = 8; uc.levels = 2; uc.ch_mult[1] = 2; uc.ch_mult[2] = 0;
    uc.attn[1] = 1; uc.attn[2] = 0; uc.groups = 2; uc.heads = 2; uc.branches = K;
    *h = *d = NULL;
    BDT_CHECK(bd_unet_init(ctx, &uc, &r1, h) == BD_SUCCESS);
    BDT_CHECK(bd_unet_init(ctx, &uc, &r2, d) == BD_SUCCESS);
    if (!*h || !*d) return;
    bd_rng_uniform_fill(&rw, (*h)->params, (*h)->n_params, -0.2f, 0.2f);
    memcpy((*d)->params, (*h)->params, (size_t)(*h)->n_params * sizeof(float));
    BDT_CHECKF(bd_denoiser_to_context(*d, dev) == BD_SUCCESS, "%s", bd_context_message(dev));
}

static void trainer_case(bd_param_kind param, bd_loss_weight weighting, int64_t K) {
    enum { B = 3, STEPS = 6, DIM = 64 };
    bd_context *ctx = mkctx(), *dev = mkshadow();
    bd_trainer_config tc = bd_trainer_config_init();
    bd_denoiser *m1 = NULL, *m2 = NULL;
    bd_trainer *tr = NULL, *dt = NULL;
    bd_rng data = bd_rng_init(3);
    float x[B * DIM], *pp, *ema, *mm, *vv;
    double l1 = 0, l2 = 0;
    int64_t P;
    int s, same_loss = 1;
    size_t bytes;
    if (!ctx || !dev) return;
    tiny_unet_pair(ctx, dev, K, &m1, &m2);
    if (!m1 || !m2) return;
    tc.param = param;
    tc.weighting = weighting;
    tc.adam.lr = 1e-2;
    tc.adam.weight_decay = 0.01;
    tc.adam.grad_clip = 0.5;
    tc.adam.warmup_steps = 2;
    tc.adam.lr_schedule = BD_LR_COSINE;
    tc.adam.total_steps = STEPS;
    tc.ema_decay = 0.9;
    tc.seed = 77;
    BDT_CHECK(bd_trainer_init(ctx, m1, &tc, B, &tr) == BD_SUCCESS);
    BDT_CHECKF(bd_trainer_init(dev, m2, &tc, B, &dt) == BD_SUCCESS, "%s", bd_context_message(dev));
    if (!tr || !dt) return;
    for (s = 0; s < STEPS; s++) {
        int64_t n = (s / 2) % 2 ? B : B - 1; /* repeats: the drawn-ahead noise is used */
        bd_rng_uniform_fill(&data, x, n * DIM, -1.0f, 1.0f);
        BDT_CHECK(bd_trainer_step(tr, x, n, &l1) == BD_SUCCESS);
        BDT_CHECKF(bd_trainer_step(dt, x, n, &l2) == BD_SUCCESS, "%s", bd_context_message(dev));
        if (l1 != l2) same_loss = 0;
    }
    BDT_CHECKF(same_loss, "loss %.9g vs %.9g", l1, l2);
    BDT_CHECK(dt->adam.step == tr->adam.step && dt->last_lr == tr->last_lr && dt->last_grad_norm == tr->last_grad_norm);
    P = m2->n_params;
    bytes = (size_t)P * sizeof(float);
    pp = (float *)malloc(bytes * 4);
    ema = pp + P; mm = ema + P; vv = mm + P;
    BDT_CHECK(bd_backend_download(dev, pp, m2->params, bytes) == BD_SUCCESS);
    BDT_CHECK(bd_backend_download(dev, ema, dt->ema, bytes) == BD_SUCCESS);
    BDT_CHECK(bd_backend_download(dev, mm, dt->adam.m, bytes) == BD_SUCCESS);
    BDT_CHECK(bd_backend_download(dev, vv, dt->adam.v, bytes) == BD_SUCCESS);
    BDT_CHECK(memcmp(pp, m1->params, bytes) == 0 && memcmp(ema, tr->ema, bytes) == 0);
    BDT_CHECK(memcmp(mm, tr->adam.m, bytes) == 0 && memcmp(vv, tr->adam.v, bytes) == 0);
    printf("    param %s weight %s K %lld: identical after %d steps, last loss %.5f\n", bd_param_name(param),
           bd_loss_weight_name(weighting), (long long)K, STEPS, l2);
    /* a NaN batch: BD_ERROR_NONFINITE and nothing changes */
    x[3] = NAN;
    BDT_CHECK(bd_trainer_step(dt, x, B, &l2) == BD_ERROR_NONFINITE);
    BDT_CHECK(bd_backend_download(dev, mm, m2->params, bytes) == BD_SUCCESS);
    BDT_CHECK(memcmp(pp, mm, bytes) == 0);
    BDT_CHECK(dt->adam.step == STEPS);
    free(pp);
    /* the models first: a trainer outlives its model (ASan checks) */
    bd_denoiser_free(m1);
    bd_denoiser_free(m2);
    bd_trainer_free(dt);
    bd_trainer_free(tr);
    bd_context_free(dev);
    bd_context_free(ctx);
}

static void test_trainer_device_path(void) {
    trainer_case(BD_PARAM_V, BD_WEIGHT_NONE, 1);
    trainer_case(BD_PARAM_EPS, BD_WEIGHT_NONE, 2);
    trainer_case(BD_PARAM_X0, BD_WEIGHT_NONE, 1);
    trainer_case(BD_PARAM_V, BD_WEIGHT_SNR_TRUNC, 2);
}

/* bd_model_save from a trainer on the device and bd_model_resume into one
   on the device and one on the CPU: the exact state crosses both ways */
static void test_trainer_device_checkpoint(void) {
    enum { B = 2, DIM = 64 };
    bd_context *ctx = mkctx(), *dev = mkshadow();
    bd_trainer_config tc = bd_trainer_config_init();
    bd_unet_config uc = bd_unet_config_init();
    bd_rng r1 = bd_rng_init(1), r2 = bd_rng_init(1);
    bd_model *hm = NULL, *dm = NULL;
    bd_denoiser *m1, *m2;
    bd_trainer *tr = NULL, *dt = NULL;
    bd_rng data = bd_rng_init(8);
    float x[B * DIM], *buf;
    double l1 = 0, l2 = 0;
    const char *path = "build/test_backend_ckpt.safetensors";
    size_t bytes;
    int s;
    if (!ctx || !dev) return;
    uc.image_size = 8; uc.ch = 8; uc.levels = 2; uc.ch_mult[1] = 2; uc.ch_mult[2] = 0;
    uc.attn[1] = 1; uc.attn[2] = 0; uc.groups = 2; uc.heads = 2;
    BDT_CHECK(bd_model_init_unet(ctx, &uc, BD_PARAM_V, BD_SCHEDULE_COSINE, &r1, &hm) == BD_SUCCESS);
    BDT_CHECK(bd_model_init_unet(ctx, &uc, BD_PARAM_V, BD_SCHEDULE_COSINE, &r2, &dm) == BD_SUCCESS);
    if (!hm || !dm) return;
    m1 = hm->net;
    m2 = dm->net;
    BDT_CHECKF(bd_denoiser_to_context(m2, dev) == BD_SUCCESS, "%s", bd_context_message(dev));
    tc.seed = 4;
    tc.adam.lr = 1e-2;
    BDT_CHECK(bd_trainer_init(dev, m2, &tc, B, &dt) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_init(ctx, m1, &tc, B, &tr) == BD_SUCCESS);
    if (!tr || !dt) return;
    for (s = 0; s < 3; s++) {
        bd_rng_uniform_fill(&data, x, B * DIM, -1.0f, 1.0f);
        BDT_CHECK(bd_trainer_step(dt, x, B, &l2) == BD_SUCCESS);
        (void)bd_rng_u64(&dt->data_rng);
    }
    BDT_CHECKF(bd_model_save(dev, dm, path, dt) == BD_SUCCESS, "%s", bd_context_message(dev));
    BDT_CHECKF(bd_model_resume(ctx, path, hm, tr) == BD_SUCCESS, "%s", bd_context_message(ctx));
    BDT_CHECK(tr->adam.step == 3 && memcmp(&tr->data_rng.s, &dt->data_rng.s, sizeof tr->data_rng.s) == 0);
    /* one more step on both: identical */
    bd_rng_uniform_fill(&data, x, B * DIM, -1.0f, 1.0f);
    BDT_CHECK(bd_trainer_step(dt, x, B, &l2) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_step(tr, x, B, &l1) == BD_SUCCESS);
    BDT_CHECKF(l1 == l2, "after resume: loss %.9g vs %.9g", l1, l2);
    bytes = (size_t)m1->n_params * sizeof(float);
    buf = (float *)malloc(bytes);
    BDT_CHECK(bd_backend_download(dev, buf, dt->ema, bytes) == BD_SUCCESS);
    BDT_CHECK(memcmp(buf, tr->ema, bytes) == 0);
    /* and back onto the device from the CPU trainer's file */
    BDT_CHECK(bd_model_save(ctx, hm, path, tr) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_step(tr, x, B, &l1) == BD_SUCCESS);
    BDT_CHECKF(bd_model_resume(dev, path, dm, dt) == BD_SUCCESS, "%s", bd_context_message(dev));
    BDT_CHECK(bd_trainer_step(dt, x, B, &l2) == BD_SUCCESS);
    BDT_CHECKF(l1 == l2 && dt->adam.step == 5, "resumed on the device: loss %.9g vs %.9g", l1, l2);
    BDT_CHECK(bd_backend_download(dev, buf, m2->params, bytes) == BD_SUCCESS);
    BDT_CHECK(memcmp(buf, m1->params, bytes) == 0);
    /* the EMA into a host network */
    BDT_CHECK(bd_trainer_copy_ema(dt, m1) == BD_SUCCESS);
    BDT_CHECK(bd_backend_download(dev, buf, dt->ema, bytes) == BD_SUCCESS);
    BDT_CHECK(memcmp(buf, m1->params, bytes) == 0);
    /* without a trainer the network's weights are saved (downloaded) */
    BDT_CHECKF(bd_model_save(dev, dm, path, NULL) == BD_SUCCESS, "%s", bd_context_message(dev));
    free(buf);
    remove(path);
    bd_trainer_free(dt);
    bd_trainer_free(tr);
    bd_model_free(hm);
    bd_model_free(dm);
    bd_context_free(dev);
    bd_context_free(ctx);
}

typedef struct cb_rec {
    double sum;
    int64_t calls;
} cb_rec;
static int record_cb(void *ud, int64_t step, double t, double s, const float *z, const float *x_hat, int64_t n,
                     int64_t D, int64_t first) {
    cb_rec *c = (cb_rec *)ud;
    int64_t i;
    (void)t; (void)s;
    for (i = 0; i < n * D; i++) c->sum += (double)z[i] * 1e-3 + (double)x_hat[i];
    c->sum += (double)(step + first);
    c->calls++;
    return 0;
}

/* every sampler kind on the shadow device against the CPU context, with
   the callback and clip_x (host copies on a device): bit for bit */
static void test_sampler_device_path(void) {
    enum { N = 5, DIM = 64 };
    bd_context *ctx = mkctx(), *dev = mkshadow();
    bd_denoiser *m1 = NULL, *m2 = NULL;
    bd_sampler *cs = NULL, *ds = NULL;
    float x1[N * DIM], x2[N * DIM];
    int kind, p;
    if (!ctx || !dev) return;
    tiny_unet_pair(ctx, dev, 2, &m1, &m2);
    if (!m1 || !m2) return;
    BDT_CHECK(bd_sampler_init(ctx, m1, 3, &cs) == BD_SUCCESS);
    BDT_CHECKF(bd_sampler_init(dev, m2, 3, &ds) == BD_SUCCESS, "%s", bd_context_message(dev));
    if (!cs || !ds) return;
    for (p = 0; p < 3; p++)
        for (kind = BD_SAMPLER_DDIM; kind <= BD_SAMPLER_DPMPP_2M; kind++) {
            static const double grid[6] = {0.9, 0.7, 0.5, 0.3, 0.1, 0.0};
            bd_sampler_config sc = bd_sampler_config_init((bd_sampler_kind)kind, 5);
            bd_rng q1 = bd_rng_init(9), q2 = bd_rng_init(9);
            cb_rec c1 = {0, 0}, c2 = {0, 0};
            int64_t nfe1 = 0, nfe2 = 0;
            sc.param = (bd_param_kind)p;
            sc.eta = kind == BD_SAMPLER_DDIM ? 0.5 : 0.0;
            sc.custom_grid = grid;
            sc.clip_x = (kind + p) % 2;
            sc.callback = record_cb;
            sc.branch = p == 1 ? 0 : -1;
            bd_noise_fill(x1, N * DIM, 123);
            memcpy(x2, x1, sizeof x1);
            sc.user_data = &c1;
            BDT_CHECK(bd_sampler_run(cs, &sc, x1, N, &q1, &nfe1) == BD_SUCCESS);
            sc.user_data = &c2;
            BDT_CHECKF(bd_sampler_run(ds, &sc, x2, N, &q2, &nfe2) == BD_SUCCESS, "%s", bd_context_message(dev));
            BDT_CHECKF(memcmp(x1, x2, sizeof x1) == 0 && nfe1 == nfe2 && c1.sum == c2.sum && c1.calls == c2.calls &&
                           c1.calls == 2 * 5,
                       "param %s sampler %s clip %d: differ (nfe %lld vs %lld, callback %lld calls)",
                       bd_param_name((bd_param_kind)p), bd_sampler_name((bd_sampler_kind)kind), sc.clip_x,
                       (long long)nfe1, (long long)nfe2, (long long)c2.calls);
        }
    bd_denoiser_free(m1); /* a sampler outlives its model (ASan checks) */
    bd_denoiser_free(m2);
    bd_sampler_free(ds);
    bd_sampler_free(cs);
    bd_context_free(dev);
    bd_context_free(ctx);
}

/* bd_distill on the shadow device against the CPU context: the same draws,
   the same kernels in the same order, so loss, branch losses, weights,
   params, EMA, Adam moments and rng are bit for bit the same.  PD, TD and CD,
   several weight schedules (adaptive, agree, anneal), x and z space, L1,
   teacher_refine, TD on the fly / cached / teacher forcing / dense targets
   from the student's state; then save_state on the device, load_state on
   the CPU (and back), and one more step on each: identical. */
typedef struct dcase {
    bd_distill_method method;
    bd_distill_weights weights;
    bd_distill_space space;
    bd_distill_distance distance;
    bd_param_kind param;
    bd_sampler_kind solver;
    int cached, forcing, refine;
    bd_distill_dense_targets dense;
} dcase;

static int dist_same(bd_distill *a, bd_distill *b, float *buf) {
    int64_t P = a->student->n_params, k;
    size_t bytes = (size_t)P * sizeof(float);
    int same = a->step == b->step && a->last_loss == b->last_loss && a->last_grad_norm == b->last_grad_norm &&
               memcmp(a->rng.s, b->rng.s, sizeof a->rng.s) == 0 && a->agree_ema == b->agree_ema &&
               a->branch_ema_count == b->branch_ema_count && a->adam.step == b->adam.step;
    for (k = 0; k < a->K; k++)
        same = same && a->weights[k] == b->weights[k] && a->branch_ema[k] == b->branch_ema[k] &&
               a->last_branch_loss[k] == b->last_branch_loss[k];
    if (bd_backend_download(b->mctx, buf, b->student->params, bytes) != BD_SUCCESS) return 0;
    same = same && memcmp(buf, a->student->params, bytes) == 0;
    if (bd_backend_download(b->mctx, buf, b->ema, bytes) != BD_SUCCESS) return 0;
    same = same && memcmp(buf, a->ema, bytes) == 0;
    if (bd_backend_download(b->mctx, buf, b->adam.m, bytes) != BD_SUCCESS) return 0;
    same = same && memcmp(buf, a->adam.m, bytes) == 0;
    if (bd_backend_download(b->mctx, buf, b->adam.v, bytes) != BD_SUCCESS) return 0;
    return same && memcmp(buf, a->adam.v, bytes) == 0;
}

static void distill_case(const dcase *dc0) {
    enum { B = 3, STEPS = 3, K = 2, NCACHE = 5 };
    bd_context *ctx = mkctx(), *dev = mkshadow();
    bd_distill_config dc = bd_distill_config_init(dc0->method, K, dc0->method == BD_DISTILL_PD ? 4 : 2);
    bd_denoiser *t1 = NULL, *t2 = NULL, *s1 = NULL, *s2 = NULL, *tmp = NULL;
    bd_distill *a = NULL, *b = NULL;
    bd_rng data = bd_rng_init(4), rc = bd_rng_init(8);
    float x[B * 64], *cache = NULL, *buf;
    double l1 = 0, l2 = 0, bl1[K], bl2[K];
    const char *path = "build/test_backend_distill.safetensors";
    int s, same = 1;
    if (!ctx || !dev) return;
    tiny_unet_pair(ctx, dev, 1, &t1, &t2);
    tiny_unet_pair(ctx, dev, K, &s1, &tmp);
    if (!t1 || !t2 || !s1 || !tmp) return;
    bd_denoiser_free(tmp);
    tmp = NULL;
    /* students: K-branch copies of the teacher (as bd_distill_student_from_teacher) */
    BDT_CHECK(bd_denoiser_copy_weights(s1, t1) == BD_SUCCESS);
    {
        bd_rng r = bd_rng_init(3);
        BDT_CHECK(bd_distill_student_from_teacher(t1, K, &r, &s2) == BD_SUCCESS);
        if (!s2) return;
        BDT_CHECK(memcmp(s1->params, s2->params, (size_t)s1->n_params * sizeof(float)) == 0);
        BDT_CHECKF(bd_denoiser_to_context(s2, dev) == BD_SUCCESS, "%s", bd_context_message(dev));
    }
    dc.weights = dc0->weights;
    dc.space = dc0->space;
    dc.distance = dc0->distance;
    dc.param = dc0->param;
    dc.teacher_substeps = 4;
    dc.teacher_refine = dc0->refine;
    dc.anneal_steps = 2;
    dc.adam.lr = 1e-3;
    dc.adam.grad_clip = 0.5;
    dc.seed = 5;
    if (dc0->method == BD_DISTILL_TD) {
        dc.teacher_solver = dc0->solver;
        dc.teacher_forcing = dc0->forcing;
        dc.dense_targets = dc0->dense;
    }
    BDT_CHECKF(bd_distill_init(ctx, &dc, t1, s1, B, &a) == BD_SUCCESS, "%s", bd_context_message(ctx));
    BDT_CHECKF(bd_distill_init(dev, &dc, t2, s2, B, &b) == BD_SUCCESS, "%s", bd_context_message(dev));
    if (!a || !b) return;
    if (dc0->cached) {
        cache = (float *)malloc(sizeof(float) * (size_t)(NCACHE * (a->S + 1) * a->D));
        BDT_CHECK(bd_distill_teacher_trajectories(a, cache, NCACHE, &rc) == BD_SUCCESS);
        BDT_CHECK(bd_distill_set_trajectories(a, cache, NCACHE) == BD_SUCCESS);
        BDT_CHECK(bd_distill_set_trajectories(b, cache, NCACHE) == BD_SUCCESS);
    }
    for (s = 0; s < STEPS; s++) {
        const float *xp = dc0->method != BD_DISTILL_TD ? x : NULL;
        bd_rng_uniform_fill(&data, x, B * 64, -1.0f, 1.0f);
        BDT_CHECK(bd_distill_step(a, xp, B - s % 2, &l1, bl1) == BD_SUCCESS);
        BDT_CHECKF(bd_distill_step(b, xp, B - s % 2, &l2, bl2) == BD_SUCCESS, "%s", bd_context_message(dev));
        same = same && l1 == l2 && memcmp(bl1, bl2, sizeof bl1) == 0;
    }
    buf = (float *)malloc((size_t)s1->n_params * sizeof(float));
    if (!buf) return;
    same = same && dist_same(a, b, buf);
    BDT_CHECKF(same, "%s %s space %s %s: CPU and device differ (loss %.9g vs %.9g)",
               bd_distill_method_name(dc0->method), bd_distill_weights_name(dc0->weights),
               dc0->space == BD_DISTILL_SPACE_X ? "x" : "z", bd_param_name(dc0->param), l1, l2);
    /* the exact state crosses: device -> file -> CPU, CPU -> file -> device */
    BDT_CHECKF(bd_distill_save_state(b, path) == BD_SUCCESS, "%s", bd_context_message(dev));
    {   /* the state is a model checkpoint: the student with the EMA weights and its grid */
        bd_model *mm = NULL;
        BDT_CHECKF(bd_model_load(ctx, path, &mm) == BD_SUCCESS, "%s", bd_context_message(ctx));
        if (mm) {
            BDT_CHECK(mm->net->n_params == s1->n_params && mm->steps == a->N && mm->param == dc.param &&
                      memcmp(mm->grid, a->grid, sizeof(double) * (size_t)(a->N + 1)) == 0);
            BDT_CHECK(memcmp(mm->net->params, a->ema, (size_t)s1->n_params * sizeof(float)) == 0);
            bd_model_free(mm);
        }
    }
    BDT_CHECKF(bd_distill_load_state(a, path) == BD_SUCCESS, "%s", bd_context_message(ctx));
    BDT_CHECK(dist_same(a, b, buf));
    BDT_CHECK(bd_distill_step(a, dc0->method != BD_DISTILL_TD ? x : NULL, B, &l1, bl1) == BD_SUCCESS);
    BDT_CHECK(bd_distill_save_state(a, path) == BD_SUCCESS);
    BDT_CHECK(bd_distill_step(a, dc0->method != BD_DISTILL_TD ? x : NULL, B, &l1, bl1) == BD_SUCCESS);
    BDT_CHECKF(bd_distill_load_state(b, path) == BD_SUCCESS, "%s", bd_context_message(dev));
    BDT_CHECK(bd_distill_step(b, dc0->method != BD_DISTILL_TD ? x : NULL, B, &l2, bl2) == BD_SUCCESS);
    BDT_CHECKF(l1 == l2 && dist_same(a, b, buf), "after the resume: loss %.9g vs %.9g", l1, l2);
    /* the EMA into a host network */
    BDT_CHECK(bd_distill_copy_ema(b, s1) == BD_SUCCESS);
    BDT_CHECK(memcmp(s1->params, a->ema, (size_t)s1->n_params * sizeof(float)) == 0);
    printf("    %s weights %s space %s %s%s%s%s: identical, loss %.5f\n", bd_distill_method_name(dc0->method),
           bd_distill_weights_name(dc0->weights), dc0->space == BD_DISTILL_SPACE_X ? "x" : "z",
           dc0->distance == BD_DISTILL_L1 ? "l1 " : "", bd_param_name(dc0->param),
           dc0->cached ? ", cached" : "", dc0->forcing ? ", teacher forcing" : "", l2);
    remove(path);
    free(buf);
    free(cache);
    /* the models first: a distiller outlives its models' buffers' use */
    bd_distill_free(b);
    bd_distill_free(a);
    bd_denoiser_free(s1);
    bd_denoiser_free(s2);
    bd_denoiser_free(t1);
    bd_denoiser_free(t2);
    bd_context_free(dev);
    bd_context_free(ctx);
}

static void test_distill_device_path(void) {
    static const dcase cases[] = {
        {BD_DISTILL_PD, BD_WEIGHTS_UNIFORM, BD_DISTILL_SPACE_X, BD_DISTILL_L2, BD_PARAM_V, BD_SAMPLER_DDIM, 0, 0, 1, BD_DENSE_FROM_STUDENT},
        {BD_DISTILL_PD, BD_WEIGHTS_ADAPTIVE, BD_DISTILL_SPACE_X, BD_DISTILL_L2, BD_PARAM_EPS, BD_SAMPLER_DDIM, 0, 0, 2, BD_DENSE_FROM_STUDENT},
        {BD_DISTILL_PD, BD_WEIGHTS_ANNEAL, BD_DISTILL_SPACE_Z, BD_DISTILL_L1, BD_PARAM_X0, BD_SAMPLER_DDIM, 0, 0, 1, BD_DENSE_FROM_STUDENT},
        {BD_DISTILL_PD, BD_WEIGHTS_AGREE, BD_DISTILL_SPACE_Z, BD_DISTILL_L2, BD_PARAM_V, BD_SAMPLER_DDIM, 0, 0, 1, BD_DENSE_FROM_STUDENT},
        {BD_DISTILL_TD, BD_WEIGHTS_UNIFORM, BD_DISTILL_SPACE_Z, BD_DISTILL_L2, BD_PARAM_V, BD_SAMPLER_DPMPP_2M, 0, 0, 1, BD_DENSE_FROM_STUDENT},
        {BD_DISTILL_TD, BD_WEIGHTS_ADAPTIVE, BD_DISTILL_SPACE_Z, BD_DISTILL_L1, BD_PARAM_V, BD_SAMPLER_HEUN, 0, 1, 1, BD_DENSE_FROM_STUDENT},
        {BD_DISTILL_TD, BD_WEIGHTS_LINEAR, BD_DISTILL_SPACE_X, BD_DISTILL_L2, BD_PARAM_V, BD_SAMPLER_EULER, 0, 0, 2, BD_DENSE_FROM_TRAJECTORY},
        {BD_DISTILL_TD, BD_WEIGHTS_AGREE, BD_DISTILL_SPACE_Z, BD_DISTILL_L2, BD_PARAM_X0, BD_SAMPLER_DDIM, 1, 0, 1, BD_DENSE_FROM_STUDENT},
        {BD_DISTILL_TD, BD_WEIGHTS_FINAL, BD_DISTILL_SPACE_Z, BD_DISTILL_L2, BD_PARAM_V, BD_SAMPLER_DDIM, 1, 0, 1, BD_DENSE_FROM_TRAJECTORY},
        {BD_DISTILL_CD, BD_WEIGHTS_UNIFORM, BD_DISTILL_SPACE_Z, BD_DISTILL_L2, BD_PARAM_V, BD_SAMPLER_DDIM, 0, 0, 2, BD_DENSE_FROM_STUDENT},
        {BD_DISTILL_CD, BD_WEIGHTS_AGREE, BD_DISTILL_SPACE_X, BD_DISTILL_L2, BD_PARAM_EPS, BD_SAMPLER_DDIM, 0, 0, 1, BD_DENSE_FROM_STUDENT},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) distill_case(&cases[i]);
}

int main(void) {
    BDT_RUN(test_default_table);
    BDT_RUN(test_dispatch_cpu);
    BDT_RUN(test_register_fallback);
    BDT_RUN(test_register_refused);
    BDT_RUN(test_buffers);
    BDT_RUN(test_vec_ops);
    BDT_RUN(test_vec_matches_adam);
    BDT_RUN(test_trainer_device_path);
    BDT_RUN(test_trainer_device_checkpoint);
    BDT_RUN(test_sampler_device_path);
    BDT_RUN(test_distill_device_path);
    return BDT_SUMMARY("test_backend");
}
