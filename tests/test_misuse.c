/* test_misuse.c - every public entry point called the wrong way.

   A table of cases; each one builds a fresh fixture (a context whose log
   callback captures every message, an allocator that counts live blocks and
   refuses anything above 256 MiB the way a real allocator does, an MLP, an
   analytic denoiser, a sampler and a trainer), makes one bad call and
   checks:
     - the call returns the expected bd_result;
     - where a context was given, a message was recorded on it AND delivered
       to the log callback with the same code;
     - no object was handed out by a failing call (out pointers stay NULL or
       untouched);
     - the objects still work afterwards (one trainer step and one sampler
       run succeed);
     - after freeing the fixture no allocation is live (no leak).
   Nothing here may crash; the suite also runs under ASan+UBSan and
   valgrind. */
#define _POSIX_C_SOURCE 200809L
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <stdint.h>
#include <stdlib.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- capturing log, capped counting allocator ---------------------------- */
typedef struct cap_log {
    int calls;
    bd_result last;
    char msg[512];
} cap_log;

static void cap_fn(void *ud, bd_result code, const char *message) {
    cap_log *c = (cap_log *)ud;
    c->calls++;
    c->last = code;
    snprintf(c->msg, sizeof c->msg, "%s", message ? message : "");
}

#define CAP_BYTES ((size_t)256 << 20)
static long g_live = 0;
static size_t g_max_req = 0; /* largest request seen */
static void *cap_alloc(size_t n, void *ud) {
    void *p;
    (void)ud;
    if (n > g_max_req) g_max_req = n;
    if (n > CAP_BYTES) return NULL;
    p = malloc(n);
    if (p) g_live++;
    return p;
}
static void cap_free(void *p, void *ud) {
    (void)ud;
    if (p) { g_live--; free(p); }
}

/* ---- the fixture ------------------------------------------------------ */
#define FX_D 3
#define FX_B 4
typedef struct fx {
    bd_context *ctx;
    cap_log log;
    bd_rng rng;
    bd_denoiser *mlp, *ana, *mlp_other;
    bd_sampler *smp;
    bd_trainer *tr;
    float pts[2 * FX_D];
    float x[FX_B * FX_D], z[FX_B * FX_D], t[FX_B], out[FX_B * 2 * FX_D], big[256];
    bd_sampler_config scfg;
    /* out-pointers the bad calls write to; preset to a sentinel */
    bd_context *o_ctx;
    bd_denoiser *o_d;
    bd_sampler *o_s;
    bd_trainer *o_t;
    bd_safetensors *o_st;
    bd_adam adam;
    bd_tensor tensor;
    bd_npy npy;
    unsigned char *o_bytes;
    uint8_t *o_labels;
    void *o_mem;
    size_t o_size;
    int64_t o_n;
    char path[64], dir_path[64];
} fx;

static char g_sentinel_obj;
#define SENT(T) ((T *)(void *)&g_sentinel_obj)

static int fx_init(fx *F) {
    bd_context_config cc = bd_context_config_init();
    bd_mlp_config mc = bd_mlp_config_init(FX_D);
    bd_analytic_config ac;
    bd_trainer_config tc = bd_trainer_config_init();
    int i;
    memset(F, 0, sizeof *F);
    cc.allocator.alloc = cap_alloc;
    cc.allocator.free = cap_free;
    cc.log = cap_fn;
    cc.log_user_data = &F->log;
    if (bd_context_init(&cc, &F->ctx) != BD_SUCCESS) return 0;
    F->rng = bd_rng_init(7);
    mc.hidden = 8; mc.depth = 2; mc.temb_dim = 4; mc.branches = 2;
    if (bd_mlp_create(F->ctx, &mc, &F->rng, &F->mlp) != BD_SUCCESS) return 0;
    mc.hidden = 6;
    if (bd_mlp_create(F->ctx, &mc, &F->rng, &F->mlp_other) != BD_SUCCESS) return 0;
    for (i = 0; i < 2 * FX_D; i++) F->pts[i] = (float)(i % 3) - 1.0f;
    ac = bd_analytic_config_init(FX_D, F->pts, 2, 0.1);
    if (bd_analytic_create(F->ctx, &ac, &F->ana) != BD_SUCCESS) return 0;
    if (bd_sampler_init(F->ctx, F->mlp, FX_B, &F->smp) != BD_SUCCESS) return 0;
    tc.seed = 3;
    if (bd_trainer_init(F->ctx, F->mlp, &tc, FX_B, &F->tr) != BD_SUCCESS) return 0;
    for (i = 0; i < FX_B * FX_D; i++) { F->x[i] = 0.5f * (float)((i % 5) - 2); F->z[i] = F->x[i]; }
    for (i = 0; i < FX_B; i++) F->t[i] = 0.25f * (float)(i + 1);
    for (i = 0; i < 256; i++) F->big[i] = (float)i;
    F->scfg = bd_sampler_config_init(BD_SAMPLER_DDIM, 4);
    F->o_ctx = SENT(bd_context);
    F->o_d = SENT(bd_denoiser);
    F->o_s = SENT(bd_sampler);
    F->o_t = SENT(bd_trainer);
    F->o_st = SENT(bd_safetensors);
    F->o_bytes = SENT(unsigned char);
    F->o_labels = SENT(uint8_t);
    F->o_mem = SENT(void);
    snprintf(F->path, sizeof F->path, "build/misuse_%ld.bin", (long)getpid());
    snprintf(F->dir_path, sizeof F->dir_path, "build/no_such_dir_%ld/x.bin", (long)getpid());
    F->log.calls = 0;
    F->log.msg[0] = 0;
    F->ctx->message[0] = 0;
    F->ctx->last_result = BD_SUCCESS;
    return 1;
}

/* objects still usable after the bad call */
static int fx_still_works(fx *F) {
    float xs[2 * FX_D];
    double loss;
    int i;
    bd_sampler_config c = bd_sampler_config_init(BD_SAMPLER_DDIM, 3);
    if (bd_trainer_step(F->tr, F->x, FX_B, &loss) != BD_SUCCESS) return 0;
    for (i = 0; i < 2 * FX_D; i++) xs[i] = 0.1f * (float)i;
    if (bd_sampler_run(F->smp, &c, xs, 2, NULL, NULL) != BD_SUCCESS) return 0;
    for (i = 0; i < 2 * FX_D; i++)
        if (!(xs[i] == xs[i])) return 0;
    return 1;
}

static void fx_free(fx *F) {
    bd_trainer_free(F->tr);
    bd_sampler_free(F->smp);
    bd_denoiser_free(F->mlp);
    bd_denoiser_free(F->mlp_other);
    bd_denoiser_free(F->ana);
    /* a failing call must not have handed out objects; successful ones
       (none in this table) would be freed here */
    if (F->o_d && F->o_d != SENT(bd_denoiser)) bd_denoiser_free(F->o_d);
    if (F->o_s && F->o_s != SENT(bd_sampler)) bd_sampler_free(F->o_s);
    if (F->o_t && F->o_t != SENT(bd_trainer)) bd_trainer_free(F->o_t);
    if (F->o_st && F->o_st != SENT(bd_safetensors)) bd_safetensors_free(F->o_st);
    if (F->o_ctx && F->o_ctx != SENT(bd_context)) bd_context_free(F->o_ctx);
    bd_adam_free(&F->adam);
    bd_tensor_free(F->ctx, &F->tensor);
    bd_npy_free(F->ctx, &F->npy);
    bd_context_free(F->ctx);
    remove(F->path);
}

static int fx_handed_out(const fx *F) {
    return (F->o_d && F->o_d != SENT(bd_denoiser)) || (F->o_s && F->o_s != SENT(bd_sampler)) ||
           (F->o_t && F->o_t != SENT(bd_trainer)) || (F->o_st && F->o_st != SENT(bd_safetensors)) ||
           (F->o_ctx && F->o_ctx != SENT(bd_context)) || F->adam.m || F->tensor.data || F->npy.data ||
           (F->o_bytes && F->o_bytes != SENT(unsigned char)) ||
           (F->o_labels && F->o_labels != SENT(uint8_t)) || (F->o_mem && F->o_mem != SENT(void));
}

/* ---- helpers that build one bad argument ------------------------------- */
static bd_mlp_config mlpc(int which) {
    bd_mlp_config c = bd_mlp_config_init(FX_D);
    c.hidden = 8; c.depth = 2; c.temb_dim = 4;
    switch (which) {
    case 0: c.dim = 0; break;
    case 1: c.dim = -5; break;
    case 2: c.hidden = 0; break;
    case 3: c.depth = 0; break;
    case 4: c.temb_dim = 5; break;
    case 5: c.temb_dim = 0; break;
    case 6: c.branches = 0; break;
    case 7: c.branches = 65; break;
    case 8: c.dim = INT64_MAX; break;
    case 9: c.hidden = INT64_MAX; break;
    case 10: c.depth = INT64_MAX; break;
    case 11: c.dim = (int64_t)1 << 24; c.hidden = (int64_t)1 << 16; break; /* 4 TB of weights */
    default: break;
    }
    return c;
}
static bd_result mlp_bad(fx *F, int which) {
    bd_mlp_config c = mlpc(which);
    return bd_mlp_create(F->ctx, &c, &F->rng, &F->o_d);
}

static bd_analytic_config anac(fx *F, int which) {
    bd_analytic_config c = bd_analytic_config_init(FX_D, F->pts, 2, 0.1);
    switch (which) {
    case 0: c.n_points = 0; break;
    case 1: c.n_points = -1; break;
    case 2: c.std = -1.0; break;
    case 3: c.std = NAN; break;
    case 4: c.param = (bd_param_kind)7; break;
    case 5: c.schedule = (bd_schedule_kind)9; break;
    case 6: c.branches = 0; break;
    case 7: c.in_ch = 0; break;
    case 8: c.height = -1; break;
    case 9: c.in_ch = (int64_t)1 << 24; c.height = (int64_t)1 << 16; c.width = (int64_t)1 << 16; break;
    case 10: c.points = NULL; break;
    default: break;
    }
    return c;
}
static bd_result ana_bad(fx *F, int which) {
    bd_analytic_config c = anac(F, which);
    return bd_analytic_create(F->ctx, &c, &F->o_d);
}

static bd_result adam_bad(fx *F, int which) {
    bd_adam_config c = bd_adam_config_init();
    int64_t n = 10;
    switch (which) {
    case 0: c.lr = -1.0; break;
    case 1: c.lr = NAN; break;
    case 2: c.beta1 = 1.0; break;
    case 3: c.beta2 = -0.1; break;
    case 4: c.eps = 0.0; break;
    case 5: c.weight_decay = -1.0; break;
    case 6: c.warmup_steps = -3; break;
    case 7: c.lr_schedule = (bd_lr_schedule)5; break;
    case 8: n = -1; break;
    case 9: n = INT64_MAX / 2; break;
    case 10: c.grad_clip = NAN; break;
    case 11: c.lr_schedule = BD_LR_COSINE; c.total_steps = -1; break;
    case 12: c.lr_min = NAN; break;
    default: break;
    }
    return bd_adam_init(F->ctx, &c, n, &F->adam);
}

static bd_result trainer_bad(fx *F, int which) {
    bd_trainer_config c = bd_trainer_config_init();
    bd_denoiser *m = F->mlp;
    int64_t B = FX_B;
    switch (which) {
    case 0: c.param = (bd_param_kind)3; break;
    case 1: c.weighting = (bd_loss_weight)4; break;
    case 2: c.ema_decay = 1.5; break;
    case 3: c.ema_decay = NAN; break;
    case 4: c.t_min = 1.0; break;
    case 5: c.t_min = -0.5; break;
    case 6: c.schedule = (bd_schedule_kind)4; break;
    case 7: m = F->ana; break; /* nothing to train */
    case 8: B = 0; break;
    case 9: B = -3; break;
    case 10: B = INT64_MAX; break;
    case 11: B = (int64_t)1 << 36; break; /* passes overflow checks; allocator refuses */
    case 12: c.adam.lr = -1.0; break;
    case 13: c.adam.eps = NAN; break;
    default: break;
    }
    return bd_trainer_init(F->ctx, m, &c, B, &F->o_t);
}

static bd_result sampler_bad(fx *F, int which) {
    bd_sampler_config c = bd_sampler_config_init(BD_SAMPLER_DDIM, 4);
    static const double g_incr[5] = {1.0, 0.5, 0.6, 0.2, 0.0};
    static const double g_hi[5] = {1.5, 0.5, 0.4, 0.2, 0.0};
    static const double g_neg[5] = {1.0, 0.5, 0.4, 0.2, -0.1};
    static const double g_nan[5] = {1.0, 0.5, NAN, 0.2, 0.0};
    static const double g_eq[5] = {1.0, 0.5, 0.5, 0.2, 0.0};
    float x[FX_B * FX_D];
    bd_rng *rng = NULL;
    int64_t n = 2;
    memcpy(x, F->x, sizeof x);
    switch (which) {
    case 0: c.kind = (bd_sampler_kind)9; break;
    case 1: c.kind = (bd_sampler_kind)-1; break;
    case 2: c.steps = 0; break;
    case 3: c.steps = -4; break;
    case 4: c.steps = BD_SAMPLER_MAX_STEPS + 1; break;
    case 5: c.steps = INT64_MAX; break;
    case 6: c.param = (bd_param_kind)3; break;
    case 7: c.schedule = (bd_schedule_kind)2; break;
    case 8: c.grid = (bd_grid_kind)3; break;
    case 9: c.eta = -0.5; break;
    case 10: c.eta = NAN; break;
    case 11: c.branch = 2; break; /* model has K = 2 */
    case 12: c.branch = INT64_MAX; break;
    case 13: c.kind = BD_SAMPLER_DDPM; break; /* no rng */
    case 14: c.eta = 1.0; break;              /* no rng */
    case 15: c.custom_grid = g_incr; break;
    case 16: c.custom_grid = g_hi; break;
    case 17: c.custom_grid = g_neg; break;
    case 18: c.custom_grid = g_nan; break;
    case 19: c.custom_grid = g_eq; break;
    case 20: n = 0; break;
    case 21: n = -1; break;
    case 22: c.branch = -2; break;
    default: break;
    }
    return bd_sampler_run(F->smp, &c, x, n, rng, NULL);
}

static bd_result grid_bad(fx *F, int which) {
    bd_schedule s;
    double g[8];
    bd_schedule_init(&s, BD_SCHEDULE_COSINE);
    switch (which) {
    case 0: return bd_time_grid(F->ctx, &s, BD_GRID_UNIFORM_T, 0, g);
    case 1: return bd_time_grid(F->ctx, &s, BD_GRID_UNIFORM_T, -1, g);
    case 2: return bd_time_grid(F->ctx, &s, (bd_grid_kind)5, 4, g);
    case 3: return bd_time_grid(F->ctx, NULL, BD_GRID_UNIFORM_T, 4, g);
    case 4: return bd_time_grid(F->ctx, &s, BD_GRID_UNIFORM_T, 4, NULL);
    case 5: return bd_time_grid(NULL, &s, BD_GRID_UNIFORM_T, 0, g);
    case 6: {
        bd_sampler_config c = bd_sampler_config_init(BD_SAMPLER_DDIM, 0);
        return bd_sampler_grid(F->ctx, &c, g);
    }
    case 7: return bd_sampler_grid(F->ctx, NULL, g);
    case 8: {
        bd_sampler_config c = bd_sampler_config_init(BD_SAMPLER_DDIM, 4);
        return bd_sampler_grid(F->ctx, &c, NULL);
    }
    default: return BD_SUCCESS;
    }
}

static bd_result ana_backward(fx *F) {
    if (bd_denoiser_reserve(F->ana, 2) != BD_SUCCESS) return BD_SUCCESS;
    return bd_denoiser_backward(F->ana, NULL, F->out, 1);
}
static bd_result backward_without_forward(fx *F) {
    float dout[FX_B * 2 * FX_D];
    memset(dout, 0, sizeof dout);
    return bd_denoiser_backward(F->mlp, NULL, dout, FX_B);
}
static bd_result backward_after_eval_forward(fx *F) {
    float dout[FX_B * 2 * FX_D];
    memset(dout, 0, sizeof dout);
    bd_denoiser_forward(F->mlp, F->out, F->z, F->t, FX_B, 0);
    return bd_denoiser_backward(F->mlp, NULL, dout, FX_B);
}
static bd_result backward_wrong_batch(fx *F) {
    float dout[FX_B * 2 * FX_D];
    memset(dout, 0, sizeof dout);
    bd_denoiser_forward(F->mlp, F->out, F->z, F->t, 2, 1);
    return bd_denoiser_backward(F->mlp, NULL, dout, 3);
}
static bd_result backward_beyond_reserve(fx *F) {
    float dout[FX_B * 2 * FX_D];
    memset(dout, 0, sizeof dout);
    return bd_denoiser_backward(F->mlp, NULL, dout, FX_B + 1);
}
static bd_result zeroed_denoiser(fx *F, int which) {
    bd_denoiser d;
    (void)F;
    memset(&d, 0, sizeof d);
    switch (which) {
    case 0: return bd_denoiser_forward(&d, F->out, F->z, F->t, 1, 0);
    case 1: return bd_denoiser_reserve(&d, 4);
    case 2: return bd_denoiser_backward(&d, NULL, F->out, 1);
    case 3: return bd_denoiser_create_like(&d, 1, &F->rng, &F->o_d);
    default: return bd_sampler_init(F->ctx, &d, 4, &F->o_s);
    }
}
static bd_result zeroed_adam_step(fx *F) {
    bd_adam a;
    float p[4] = {0}, g[4] = {0};
    (void)F;
    memset(&a, 0, sizeof a);
    return bd_adam_step(&a, p, g, NULL);
}
static bd_result freed_adam_step(fx *F) {
    bd_adam a;
    float p[4] = {0}, g[4] = {0};
    bd_adam_config c = bd_adam_config_init();
    if (bd_adam_init(F->ctx, &c, 4, &a) != BD_SUCCESS) return BD_SUCCESS;
    bd_adam_free(&a); /* zeroes the struct: a later step is detectable */
    bd_adam_free(&a); /* double free is a no-op */
    return bd_adam_step(&a, p, g, NULL);
}
static bd_result adam_null_params(fx *F) {
    bd_adam_config c = bd_adam_config_init();
    float g[4] = {0};
    bd_result r;
    if (bd_adam_init(F->ctx, &c, 4, &F->adam) != BD_SUCCESS) return BD_SUCCESS;
    r = bd_adam_step(&F->adam, NULL, g, NULL);
    bd_adam_free(&F->adam);
    return r;
}
static bd_result adam_nan_grad(fx *F) {
    bd_adam_config c = bd_adam_config_init();
    float p[4] = {1, 2, 3, 4}, g[4] = {0, NAN, 0, 0};
    bd_result r;
    if (bd_adam_init(F->ctx, &c, 4, &F->adam) != BD_SUCCESS) return BD_SUCCESS;
    r = bd_adam_step(&F->adam, p, g, NULL);
    if (p[0] != 1 || p[1] != 2 || F->adam.step != 0 || F->adam.m[1] != 0) r = BD_ERROR_BACKEND; /* changed */
    bd_adam_free(&F->adam);
    return r;
}
static bd_result adam_inf_grad(fx *F) {
    bd_adam_config c = bd_adam_config_init();
    float p[4] = {1, 2, 3, 4}, g[4] = {0, 0, INFINITY, 0};
    bd_result r;
    if (bd_adam_init(F->ctx, &c, 4, &F->adam) != BD_SUCCESS) return BD_SUCCESS;
    r = bd_adam_step(&F->adam, p, g, NULL);
    bd_adam_free(&F->adam);
    return r;
}

static bd_data_fn g_nodata = NULL;
static bd_result data_ok(void *ud, float *x, int64_t n, bd_rng *rng) {
    (void)ud;
    bd_rng_normal(rng, x, n * FX_D);
    return BD_SUCCESS;
}
static bd_result data_fail(void *ud, float *x, int64_t n, bd_rng *rng) {
    (void)ud; (void)x; (void)n; (void)rng;
    return BD_ERROR_IO;
}
static bd_result data_nan(void *ud, float *x, int64_t n, bd_rng *rng) {
    int64_t i;
    (void)ud; (void)rng;
    for (i = 0; i < n * FX_D; i++) x[i] = NAN;
    return BD_SUCCESS;
}

static bd_result copy_ema_mismatch(fx *F) { return bd_trainer_copy_ema(F->tr, F->mlp_other); }
static bd_result copy_ema_analytic(fx *F) { return bd_trainer_copy_ema(F->tr, F->ana); }
static bd_result copy_weights_mismatch(fx *F) { return bd_denoiser_copy_weights(F->mlp, F->mlp_other); }
static bd_result copy_weights_kind(fx *F) { return bd_denoiser_copy_weights(F->mlp, F->ana); }

static bd_result predict_bad(fx *F, int which) {
    bd_schedule s;
    bd_schedule_init(&s, BD_SCHEDULE_COSINE);
    switch (which) {
    case 0: return bd_model_predict(F->mlp, &s, BD_PARAM_V, 2, F->out, F->x, NULL, F->z, F->t, 2);
    case 1: return bd_model_predict(F->mlp, &s, BD_PARAM_V, -1, F->out, F->x, NULL, F->z, F->t, 2);
    case 2: return bd_model_predict(F->mlp, NULL, BD_PARAM_V, 0, F->out, F->x, NULL, F->z, F->t, 2);
    case 3: return bd_model_predict(F->mlp, &s, BD_PARAM_V, 0, NULL, F->x, NULL, F->z, F->t, 2);
    case 4: return bd_model_predict(F->mlp, &s, BD_PARAM_V, 0, F->out, F->x, NULL, F->z, F->t, 0);
    case 5: return bd_model_predict(F->mlp, &s, (bd_param_kind)4, 0, F->out, F->x, NULL, F->z, F->t, 2);
    case 6: return bd_model_predict(NULL, &s, BD_PARAM_V, 0, F->out, F->x, NULL, F->z, F->t, 2);
    default: return BD_SUCCESS;
    }
}

static bd_result ctx_init_bad(fx *F, int which) {
    bd_context_config c = bd_context_config_init();
    c.log = cap_fn;
    c.log_user_data = &F->log;
    switch (which) {
    case 0: c.n_threads = 0; break;
    case 1: c.n_threads = -7; break;
    case 2: c.allocator.alloc = cap_alloc; break; /* free missing */
    case 3: c.allocator.free = cap_free; break;   /* alloc missing */
    case 4: return bd_context_init(NULL, &F->o_ctx);
    case 5: return bd_context_init(&c, NULL);
    default: break;
    }
    return bd_context_init(&c, &F->o_ctx);
}

/* ---- io ---- */
static bd_result st_write_bad(fx *F, int which) {
    bd_st_write_tensor t[2];
    bd_st_kv kv[2];
    int64_t nt = 1, nk = 0;
    const char *path = F->path;
    memset(t, 0, sizeof t);
    t[0].name = "a"; t[0].data = F->big; t[0].ndim = 1; t[0].shape[0] = 4;
    t[1] = t[0];
    kv[0].key = "k"; kv[0].value = "v";
    kv[1] = kv[0];
    switch (which) {
    case 0: nt = 2; break;                       /* duplicate names */
    case 1: t[0].name = "__metadata__"; break;
    case 2: t[0].name = NULL; break;
    case 3: t[0].data = NULL; break;
    case 4: t[0].ndim = BD_ST_MAX_DIMS + 1; break;
    case 5: t[0].ndim = -1; break;
    case 6: t[0].shape[0] = -4; break;
    case 7: t[0].name = "bad\xff" "utf8"; break;
    case 8: nk = 2; break;                       /* duplicate keys */
    case 9: kv[0].value = NULL; nk = 1; break;
    case 10: nt = -1; break;
    case 11: return bd_safetensors_write(F->ctx, F->path, NULL, 3, NULL, 0);
    case 12: path = NULL; break;
    case 13: path = ""; break;
    case 14: path = F->dir_path; break;          /* directory does not exist */
    case 15: t[0].ndim = 4; t[0].shape[0] = t[0].shape[1] = t[0].shape[2] = t[0].shape[3] = INT64_MAX / 2; break;
    case 16: return bd_safetensors_write(NULL, F->path, t, 1, NULL, 0);
    case 17: return bd_safetensors_write_memory(F->ctx, t, 1, NULL, 0, NULL, &F->o_size);
    case 18: return bd_safetensors_write_memory(F->ctx, t, 2, NULL, 0, &F->o_mem, &F->o_size);
    case 19: kv[0].key = NULL; nk = 1; break;
    default: break; /* -1: a valid file */
    }
    return bd_safetensors_write(F->ctx, path, t, nt, kv, nk);
}

static bd_result st_load_bad(fx *F, int which) {
    static const unsigned char junk[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    switch (which) {
    case 0: return bd_safetensors_load(F->ctx, NULL, &F->o_st);
    case 1: return bd_safetensors_load(F->ctx, F->dir_path, &F->o_st);
    case 2: return bd_safetensors_load(F->ctx, F->path, NULL);
    case 3: return bd_safetensors_load_memory(F->ctx, NULL, 10, &F->o_st);
    case 4: return bd_safetensors_load_memory(F->ctx, junk, 0, &F->o_st);
    case 5: return bd_safetensors_load_memory(F->ctx, junk, sizeof junk, &F->o_st);
    case 6: return bd_safetensors_load(NULL, F->path, &F->o_st);
    case 7: return bd_safetensors_load(F->ctx, "build", &F->o_st); /* a directory */
    default: return BD_SUCCESS;
    }
}

static bd_result npy_bad(fx *F, int which) {
    int64_t shape[5] = {2, 2, 1, 1, 1};
    static const unsigned char junk[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0xff, '{', '}'};
    switch (which) {
    case 0: return bd_npy_write(F->ctx, F->path, F->big, 5, shape);
    case 1: return bd_npy_write(F->ctx, F->path, F->big, -1, shape);
    case 2: return bd_npy_write(F->ctx, F->path, F->big, 2, NULL);
    case 3: return bd_npy_write(F->ctx, F->path, NULL, 2, shape);
    case 4: shape[0] = -2; return bd_npy_write(F->ctx, F->path, F->big, 2, shape);
    case 5: return bd_npy_write(F->ctx, NULL, F->big, 2, shape);
    case 6: return bd_npy_write(F->ctx, F->dir_path, F->big, 2, shape);
    case 7: return bd_npy_read(F->ctx, F->dir_path, &F->npy);
    case 8: return bd_npy_read(F->ctx, NULL, &F->npy);
    case 9: return bd_npy_read_memory(F->ctx, NULL, 5, &F->npy);
    case 10: return bd_npy_read_memory(F->ctx, junk, sizeof junk, &F->npy);
    case 11: return bd_npy_read_memory(F->ctx, junk, sizeof junk, NULL);
    case 12: shape[0] = shape[1] = INT64_MAX / 2; return bd_npy_write(F->ctx, F->path, F->big, 2, shape);
    case 13: {
        bd_npy_stream st;
        return bd_npy_stream_open(F->ctx, NULL, &st);
    }
    case 14: return bd_npy_stream_open(F->ctx, F->path, NULL);
    case 15: {
        bd_npy_stream st;
        return bd_npy_stream_open(F->ctx, F->dir_path, &st); /* missing */
    }
    case 16: {
        bd_npy_stream st;
        float v;
        memset(&st, 0, sizeof st);
        return bd_npy_stream_read(F->ctx, &st, 0, 1, &v); /* never opened */
    }
    default: return BD_SUCCESS;
    }
}

/* gzip bytes holding `body` (<= 64 KiB) in a stored deflate block, then
   `pad` empty non-final stored blocks in front (valid deflate that makes the
   file large without data) and, when `finish`, the final block and trailer */
static size_t gz_make(unsigned char *g, size_t cap, const unsigned char *body, size_t m, size_t pad, int finish) {
    size_t o = 10, i;
    uint32_t crc = bd_crc32(0, body, m);
    memcpy(g, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10);
    for (i = 0; i < pad && o + 5 + m + 16 < cap; i++) {
        g[o++] = 0; g[o++] = 0; g[o++] = 0; g[o++] = 0xff; g[o++] = 0xff;
    }
    g[o++] = (unsigned char)(finish ? 1 : 0);
    g[o++] = (unsigned char)m; g[o++] = (unsigned char)(m >> 8);
    g[o++] = (unsigned char)~m; g[o++] = (unsigned char)(~m >> 8);
    memcpy(g + o, body, m);
    o += m;
    if (finish) {
        for (i = 0; i < 4; i++) g[o++] = (unsigned char)(crc >> (8 * i));
        for (i = 0; i < 4; i++) g[o++] = (unsigned char)(m >> (8 * i));
    }
    return o;
}
/* an IDX image header n x r x c followed by `extra` zero bytes */
static size_t idx_hdr(unsigned char *b, uint32_t n, uint32_t r, uint32_t c, size_t extra) {
    uint32_t d[4];
    int i, k;
    d[0] = 0x803; d[1] = n; d[2] = r; d[3] = c;
    for (i = 0; i < 4; i++)
        for (k = 0; k < 4; k++) b[4 * i + k] = (unsigned char)(d[i] >> (24 - 8 * k));
    memset(b + 16, 0, extra);
    return 16 + extra;
}

static bd_result idx_bad(fx *F, int which) {
    static const unsigned char junk[8] = {0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff};
    static const unsigned char lab[8] = {0, 0, 8, 1, 0x7f, 0xff, 0xff, 0xff};
    switch (which) {
    case 0: return bd_idx_read_images(F->ctx, F->dir_path, &F->tensor);
    case 1: return bd_idx_read_images(F->ctx, NULL, &F->tensor);
    case 2: return bd_idx_read_images_memory(F->ctx, NULL, 10, &F->tensor);
    case 3: return bd_idx_read_images_memory(F->ctx, junk, sizeof junk, &F->tensor);
    case 4: return bd_idx_read_images_memory(F->ctx, junk, sizeof junk, NULL);
    case 5: return bd_idx_read_labels(F->ctx, F->dir_path, &F->o_labels, &F->o_n);
    case 6: return bd_idx_read_labels_memory(F->ctx, lab, sizeof lab, &F->o_labels, &F->o_n);
    case 7: return bd_idx_read_labels_memory(F->ctx, lab, sizeof lab, NULL, &F->o_n);
    case 8: return bd_idx_read_labels_memory(F->ctx, lab, sizeof lab, &F->o_labels, NULL);
    default: break;
    }
    { /* issue 14: forged and oversized headers, checked before any inflating */
        static unsigned char g[100000], b[2048];
        size_t m, n;
        switch (which) {
        case 9: /* 2M images claimed by a 60-byte gzip file */
            m = idx_hdr(b, 2000000, 28, 28, 16);
            n = gz_make(g, sizeof g, b, m, 0, 1);
            return bd_idx_read_images_memory(F->ctx, g, n, &F->tensor);
        case 10: /* 2^32-1 images: beyond BD_IDX_MAX_BYTES */
            m = idx_hdr(b, 0xffffffffu, 28, 28, 16);
            n = gz_make(g, sizeof g, b, m, 0, 1);
            return bd_idx_read_images_memory(F->ctx, g, n, &F->tensor);
        case 11: /* 100000 images: plausible for the 90 KB file, but the floats
                    (313 MB) exceed the caller's allocator (256 MiB): refused
                    before the (truncated) rest is inflated */
            m = idx_hdr(b, 100000, 28, 28, 0);
            n = gz_make(g, sizeof g, b, m, 19000, 0);
            return bd_idx_read_images_memory(F->ctx, g, n, &F->tensor);
        case 12: /* more data than the header claims */
            m = idx_hdr(b, 1, 8, 8, 1000);
            n = gz_make(g, sizeof g, b, m, 0, 1);
            return bd_idx_read_images_memory(F->ctx, g, n, &F->tensor);
        case 13: /* a raw file shorter than its claim */
            m = idx_hdr(b, 3, 8, 8, 100);
            return bd_idx_read_images_memory(F->ctx, b, m, &F->tensor);
        case 14: /* header cut inside the gzip stream */
            m = idx_hdr(b, 3, 8, 8, 0);
            n = gz_make(g, sizeof g, b, 9, 0, 1);
            return bd_idx_read_images_memory(F->ctx, g, n, &F->tensor);
        case 15: /* labels: forged count */
            b[0] = 0; b[1] = 0; b[2] = 8; b[3] = 1; b[4] = 0x7f; b[5] = 0xff; b[6] = 0xff; b[7] = 0;
            n = gz_make(g, sizeof g, b, 8, 0, 1);
            return bd_idx_read_labels_memory(F->ctx, g, n, &F->o_labels, &F->o_n);
        default: return BD_SUCCESS;
        }
    }
}

static bd_result inflate_bad(fx *F, int which) {
    static const unsigned char junk[6] = {0xff, 0xff, 0xff, 0x00, 0x12, 0x34};
    static const unsigned char gz[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    switch (which) {
    case 0: return bd_inflate(F->ctx, NULL, 5, 100, &F->o_bytes, &F->o_size, NULL);
    case 1: return bd_inflate(F->ctx, junk, sizeof junk, 100, &F->o_bytes, &F->o_size, NULL);
    case 2: return bd_inflate(F->ctx, junk, sizeof junk, 100, NULL, &F->o_size, NULL);
    case 3: return bd_gunzip(F->ctx, junk, sizeof junk, 100, &F->o_bytes, &F->o_size);
    case 4: return bd_gunzip(F->ctx, gz, sizeof gz, 100, &F->o_bytes, &F->o_size);
    case 5: return bd_gunzip(F->ctx, NULL, 5, 100, &F->o_bytes, &F->o_size);
    case 6: return bd_gunzip(F->ctx, gz, sizeof gz, 100, &F->o_bytes, NULL);
    default: return BD_SUCCESS;
    }
}

static bd_result img_bad(fx *F, int which) {
    uint8_t px[16];
    bd_plot_config pc = bd_plot_config_init();
    bd_plot_series ps;
    double ys[3] = {1, 2, 3};
    const char *names[2] = {"a", "b"};
    const double *cols[2];
    memset(px, 0, sizeof px);
    ps.x = NULL; ps.y = ys; ps.n = 3;
    cols[0] = ys; cols[1] = ys;
    switch (which) {
    case 0: return bd_png_write_u8(F->ctx, F->path, px, 0, 2, 1);
    case 1: return bd_png_write_u8(F->ctx, F->path, px, 2, -2, 1);
    case 2: return bd_png_write_u8(F->ctx, F->path, px, 2, 2, 5);
    case 3: return bd_png_write_u8(F->ctx, F->path, NULL, 2, 2, 1);
    case 4: return bd_png_write_u8(F->ctx, F->path, px, INT64_MAX, INT64_MAX, 4);
    case 5: return bd_png_write(F->ctx, F->path, F->big, 2, 2, 2); /* C must be 1 or 3 */
    case 6: return bd_png_write(F->ctx, F->path, NULL, 1, 2, 2);
    case 7: return bd_png_write(F->ctx, F->path, F->big, 1, 0, 2);
    case 8: return bd_png_write_grid(F->ctx, F->path, F->big, 0, 1, 2, 2, 0, 1);
    case 9: return bd_png_write_grid(F->ctx, F->path, F->big, 4, 1, 2, 2, 0, -1);
    case 10: return bd_png_write_grid(F->ctx, F->path, NULL, 4, 1, 2, 2, 0, 1);
    case 11: return bd_png_write_u8(F->ctx, F->dir_path, px, 2, 2, 1);
    case 12: pc.width = 10; return bd_plot_png(F->ctx, F->path, &pc, &ps, 1);
    case 13: return bd_plot_png(F->ctx, F->path, NULL, &ps, 1);
    case 14: return bd_plot_png(F->ctx, F->path, &pc, NULL, 1);
    case 15: ps.n = -1; return bd_plot_png(F->ctx, F->path, &pc, &ps, 1);
    case 16: ps.y = NULL; return bd_plot_png(F->ctx, F->path, &pc, &ps, 1);
    case 17: return bd_csv_write(F->ctx, F->path, names, cols, 0, 3);
    case 18: return bd_csv_write(F->ctx, F->path, NULL, cols, 2, 3);
    case 19: names[1] = "x,y"; return bd_csv_write(F->ctx, F->path, names, cols, 2, 3);
    case 20: cols[1] = NULL; return bd_csv_write(F->ctx, F->path, names, cols, 2, 3);
    case 21: return bd_csv_write(F->ctx, F->path, names, cols, 2, -1);
    case 22: return bd_builtin_shapes(F->ctx, F->big, 1, 4, 1);
    case 23: return bd_builtin_shapes(F->ctx, NULL, 1, 8, 1);
    case 24: return bd_builtin_shapes(F->ctx, F->big, -1, 8, 1);
    case 25: return bd_builtin_shapes_ex(F->ctx, F->big, NULL, -1, 0, 8, 1);
    case 26: return bd_builtin_shapes(F->ctx, F->big, 1, 4096, 1);
    case 27: return bd_png_write_grid(F->ctx, F->path, F->big, 4, 2, 2, 2, 0, 1); /* C = 2 */
    case 28: return bd_png_write_grid(F->ctx, F->path, F->big, INT64_MAX, 1, INT64_MAX, INT64_MAX, 0, 1);
    case 29: return bd_builtin_shapes_ex(F->ctx, F->big, NULL, INT64_MAX, 2, 8, 1); /* first + n overflows */
    case 30: return bd_png_write_grid_labeled(F->ctx, F->path, F->big, 4, 1, 2, 2, 2, 0, NULL, NULL, 0); /* zoom 0 */
    case 31: return bd_png_write_grid_labeled(F->ctx, F->path, F->big, 4, 1, 2, 2, 2, 65, NULL, NULL, 0);
    case 32: return bd_png_write_grid_labeled(F->ctx, F->path, F->big, 4, 1, 2, 2, 2, 1, "t", NULL, 2);
    case 33: return bd_png_write_grid_labeled(F->ctx, F->path, F->big, 4, 1, 2, 2, 2, 1, "t", names, -1);
    case 34: return bd_png_write_grid_labeled(F->ctx, F->path, F->big, 4, 2, 2, 2, 2, 1, NULL, NULL, 0); /* C = 2 */
    case 35: return bd_png_write_grid_labeled(F->ctx, F->path, NULL, 4, 1, 2, 2, 2, 1, NULL, NULL, 0);
    case 36: return bd_png_write_grid_labeled(F->ctx, F->path, F->big, 0, 1, 2, 2, 2, 1, NULL, NULL, 0);
    case 37: return bd_png_write_grid_labeled(F->ctx, F->path, F->big, 4, 1, 40000, 40000, 1, 64, NULL, NULL, 0);
    case 38: return bd_png_write_grid_labeled(F->ctx, F->dir_path, F->big, 4, 1, 2, 2, 2, 1, "t", names, 2);
    case 39: /* a labelled plot too small for its title and axis labels */
        ps.x = NULL; ps.y = ys; ps.n = 3;
        pc.width = 64; pc.height = 64; pc.title = "t"; pc.x_label = "x"; pc.y_label = "y";
        return bd_plot_png(F->ctx, F->path, &pc, &ps, 1);
    default: return BD_SUCCESS;
    }
}

static bd_result json_bad(fx *F, int which) {
    switch (which) {
    case 0: return bd_json_validate(F->ctx, NULL, 5);
    case 1: return bd_json_validate(F->ctx, "{", 1);
    case 2: return bd_json_validate(F->ctx, "", 0);
    case 3: return bd_json_validate(F->ctx, "{\"a\":1}", 3);
    default: return BD_SUCCESS;
    }
}

static bd_result tensor_bad(fx *F, int which) {
    switch (which) {
    case 0: return bd_tensor_init(F->ctx, &F->tensor, -1, 1, 1, 1);
    case 1: return bd_tensor_init(F->ctx, &F->tensor, INT64_MAX, INT64_MAX, 2, 2);
    case 2: return bd_tensor_init(F->ctx, NULL, 1, 1, 1, 1);
    case 3: return bd_tensor_init(NULL, &F->tensor, 1, 1, 1, 1);
    case 4: return bd_tensor_init(F->ctx, &F->tensor, (int64_t)1 << 20, (int64_t)1 << 20, 1, 1); /* 4 TB */
    default: return BD_SUCCESS;
    }
}

static bd_result alloc_bad(fx *F, int which) {
    void *p = NULL;
    switch (which) {
    case 0: p = bd_alloc(F->ctx, SIZE_MAX); break;
    case 1: p = bd_alloc_array(F->ctx, SIZE_MAX / 2, 3); break;
    case 2: p = bd_alloc_array(F->ctx, (size_t)1 << 40, 1); break;
    default: break;
    }
    if (p) { bd_free(F->ctx, p); return BD_SUCCESS; }
    return F->ctx->last_result;
}


/* ---- UNet, bd_model, distillation ---- */
static bd_unet_config tiny_unet(void) {
    bd_unet_config c = bd_unet_config_init();
    c.in_ch = 1; c.image_size = 8; c.ch = 8; c.levels = 2;
    c.ch_mult[0] = 1; c.ch_mult[1] = 2; c.ch_mult[2] = 0;
    c.nres = 1;
    c.attn[0] = 0; c.attn[1] = 1; c.attn[2] = 0;
    c.groups = 2; c.heads = 1; c.branches = 1;
    return c;
}
static bd_result unet_bad(fx *F, int which) {
    bd_unet_config c = tiny_unet();
    switch (which) {
    case 0: c.levels = 0; break;
    case 1: c.levels = 9; break;
    case 2: c.image_size = 9; break;          /* not divisible by 2^(L-1) */
    case 3: c.ch = 7; break;
    case 4: c.groups = 3; break;
    case 5: c.heads = 0; break;
    case 6: c.heads = 3; break;               /* does not divide the attention width */
    case 7: c.branches = 0; break;
    case 8: c.branches = 65; break;
    case 9: c.in_ch = 0; break;
    case 10: c.ch_mult[1] = 0; break;
    case 11: c.image_size = INT64_MAX; break;
    case 12: c.ch = 65536; c.image_size = 1 << 20; break; /* sizes overflow or the allocator refuses */
    case 13: c.nres = -1; break;
    case 14: c.groups = 0; break;
    case 15: return bd_unet_init(F->ctx, NULL, &F->rng, &F->o_d);
    case 16: return bd_unet_init(F->ctx, &c, NULL, &F->o_d);
    case 17: return bd_unet_get_config(F->mlp, &c);
    case 18: return bd_unet_config_validate(F->ctx, NULL);
    case 19: c.nres = INT64_MAX; break;
    default: break;
    }
    return bd_unet_init(F->ctx, &c, &F->rng, &F->o_d);
}
static bd_result unet_parse_bad(fx *F, int which) {
    bd_unet_config c = tiny_unet();
    static const char *mult[] = {"", "1,,2", "1,2,", "a", "1 2", "99999999999999999999", "1,2,2,2,2,2,2,2,2", "-1", "0", ",1"};
    static const char *attn[] = {"9", "-1", "1,", "x", "0,0,0,0,0,0,0,0,0", " 1"};
    if (which < 10) return bd_unet_parse_mult(F->ctx, mult[which], &c);
    if (which < 16) return bd_unet_parse_attn(F->ctx, attn[which - 10], &c);
    if (which == 16) return bd_unet_parse_mult(F->ctx, NULL, &c);
    if (which == 17) return bd_unet_parse_mult(F->ctx, "1,2", NULL);
    if (which == 18) return bd_unet_parse_attn(F->ctx, NULL, &c);
    return bd_unet_parse_attn(F->ctx, "1", NULL);
}
static bd_result unet_stats_bad(fx *F) {
    bd_unet_config c = tiny_unet();
    int64_t np;
    c.groups = 3;
    return bd_unet_config_stats(F->ctx, &c, &np, NULL, NULL);
}
/* a model of its own around a fresh MLP */
static bd_result own_model(fx *F, bd_model **m) {
    bd_mlp_config mc = bd_mlp_config_init(FX_D);
    bd_denoiser *net;
    bd_result r;
    mc.hidden = 8; mc.depth = 2; mc.temb_dim = 4; mc.branches = 2;
    *m = NULL;
    if ((r = bd_mlp_create(F->ctx, &mc, &F->rng, &net)) != BD_SUCCESS) return r;
    return bd_model_init(F->ctx, net, BD_PARAM_V, BD_SCHEDULE_COSINE, m);
}
static bd_result model_bad(fx *F, int which) {
    bd_model *m = NULL, *l = NULL;
    bd_result r = BD_SUCCESS;
    bd_denoiser *net = NULL;
    static const double g_up[4] = {1.0, 0.5, 0.7, 0.0};
    static const double g_start[4] = {0.9, 0.5, 0.2, 0.0};
    static const double g_end[4] = {1.0, 0.5, 0.2, 0.1};
    bd_analytic_config ac = bd_analytic_config_init(FX_D, F->pts, 2, 0.1);
    bd_adam adam;
    bd_adam_config acfg = bd_adam_config_init();
    char junk[300];
    FILE *f;
    switch (which) {
    case 0: /* model_init takes over the network: an analytic one is refused and freed */
        if (bd_analytic_create(F->ctx, &ac, &net) != BD_SUCCESS) return BD_SUCCESS;
        return bd_model_init(F->ctx, net, BD_PARAM_V, BD_SCHEDULE_COSINE, &m);
    case 1: return bd_model_init(F->ctx, NULL, BD_PARAM_V, BD_SCHEDULE_COSINE, &m);
    case 2: {
        bd_mlp_config mc = bd_mlp_config_init(FX_D);
        if (bd_mlp_create(F->ctx, &mc, &F->rng, &net) != BD_SUCCESS) return BD_SUCCESS;
        return bd_model_init(F->ctx, net, (bd_param_kind)5, BD_SCHEDULE_COSINE, &m);
    }
    case 3: return bd_model_init_unet(F->ctx, NULL, BD_PARAM_V, BD_SCHEDULE_COSINE, &F->rng, &m);
    default: break;
    }
    if ((r = own_model(F, &m)) != BD_SUCCESS) return BD_ERROR_BACKEND; /* fixture failure */
    switch (which) {
    case 4: r = bd_model_set_grid(m, g_up, 3); break;
    case 5: r = bd_model_set_grid(m, g_start, 3); break;
    case 6: r = bd_model_set_grid(m, g_end, 3); break;
    case 7: r = bd_model_set_grid(m, g_up, -2); break;
    case 8: r = bd_model_save(F->ctx, m, NULL, NULL); break;
    case 9: r = bd_model_save(F->ctx, m, F->dir_path, NULL); break;
    case 10: r = bd_model_save(F->ctx, m, F->path, F->tr); break; /* trainer of another network */
    case 11: r = bd_model_load(F->ctx, F->dir_path, &l); break;
    case 12: /* a safetensors file that is not a checkpoint */
        if (st_write_bad(F, -1) == BD_SUCCESS) r = bd_model_load(F->ctx, F->path, &l);
        break;
    case 13: /* junk bytes */
        memset(junk, 'x', sizeof junk);
        f = fopen(F->path, "wb");
        if (f) { fwrite(junk, 1, sizeof junk, f); fclose(f); }
        r = bd_model_load(F->ctx, F->path, &l);
        break;
    case 14: /* resume needs optimiser state */
        if (bd_model_save(F->ctx, m, F->path, NULL) == BD_SUCCESS) {
            bd_trainer *tr;
            bd_trainer_config tc = bd_trainer_config_init();
            if (bd_trainer_init(F->ctx, m->net, &tc, 2, &tr) == BD_SUCCESS) {
                r = bd_model_resume(F->ctx, F->path, m, tr);
                bd_trainer_free(tr);
            }
        }
        break;
    case 15: r = bd_model_resume(F->ctx, F->path, m, F->tr); break;
    case 16: /* optimiser of the wrong size */
        if (bd_model_save(F->ctx, m, F->path, NULL) == BD_SUCCESS &&
            bd_adam_init(F->ctx, &acfg, 3, &adam) == BD_SUCCESS) {
            r = bd_model_load_state(F->ctx, F->path, m, NULL, NULL, &adam, NULL, NULL, NULL);
            bd_adam_free(&adam);
        }
        break;
    case 17: /* checkpoint of another architecture into this model */
        if (bd_model_save(F->ctx, m, F->path, NULL) == BD_SUCCESS) {
            bd_model *u = NULL;
            bd_unet_config uc = tiny_unet();
            if (bd_model_init_unet(F->ctx, &uc, BD_PARAM_V, BD_SCHEDULE_COSINE, &F->rng, &u) == BD_SUCCESS) {
                r = bd_model_load_state(F->ctx, F->path, u, u->net->params, NULL, NULL, NULL, NULL, NULL);
                bd_model_free(u);
            }
        }
        break;
    case 18: r = bd_model_load(F->ctx, F->path, NULL); break;
    case 19: r = bd_model_save(NULL, m, F->path, NULL); break;
    default: break;
    }
    bd_model_free(l);
    bd_model_free(m);
    return r;
}

static bd_result distill_bad(fx *F, int which) {
    bd_distill_config c = bd_distill_config_init(BD_DISTILL_PD, 2, 2);
    bd_denoiser *student = NULL, *teacher = F->mlp_other, *st2 = NULL;
    bd_distill *d = NULL;
    bd_result r = BD_SUCCESS;
    double w[4], g[16];
    bd_schedule sch;
    static const double sg[3] = {1.0, 0.5, 0.0};
    float x[4 * FX_D];
    bd_schedule_init(&sch, BD_SCHEDULE_COSINE);
    memcpy(x, F->x, sizeof x);
    /* mlp_other: K = 2; a 2-branch student from it */
    switch (which) {
    case 0: c.branches = 0; break;
    case 1: c.branches = 65; break;
    case 2: c.teacher_substeps = 3; break;   /* not a multiple of K = 2 */
    case 3: c.student_steps = 0; break;
    case 4: c.weights = (bd_distill_weights)9; break;
    case 5: c.method = (bd_distill_method)7; break;
    case 6: c.teacher_solver = BD_SAMPLER_HEUN; break; /* PD: DDIM only */
    case 7: c.space = BD_DISTILL_SPACE_X; c.distance = BD_DISTILL_L1; break; /* x space needs L2 */
    case 8: c.adam.lr = -1; break;
    case 9: c.ema_decay = 2.0; break;
    case 10: c.custom_grid = sg; c.student_steps = 3; break; /* grid has 3 points, needs 4: can't tell; use bad values */
    case 11: return bd_distill_branch_weights(F->ctx, w, (bd_distill_weights)9, 2, 0.1, 0.0, NULL);
    case 12: return bd_distill_branch_weights(F->ctx, w, BD_WEIGHTS_UNIFORM, 0, 0.1, 0.0, NULL);
    case 13: return bd_distill_branch_weights(F->ctx, NULL, BD_WEIGHTS_UNIFORM, 2, 0.1, 0.0, NULL);
    case 14: return bd_distill_teacher_grid(F->ctx, &sch, sg, 2, 0, BD_SUBDIV_T, g);
    case 15: return bd_distill_teacher_grid(F->ctx, &sch, sg, 0, 2, BD_SUBDIV_T, g);
    case 16: return bd_distill_teacher_grid(F->ctx, &sch, NULL, 2, 2, BD_SUBDIV_T, g);
    case 17: return bd_distill_method_parse("PD", &c.method);
    case 18: return bd_distill_weights_parse(NULL, &c.weights);
    default: break;
    }
    if (which == 10) { static const double bad[4] = {1.0, 0.2, 0.5, 0.0}; c.custom_grid = bad; }
    if (bd_distill_student_from_teacher(teacher, 2, &F->rng, &student) != BD_SUCCESS) return BD_ERROR_BACKEND;
    switch (which) {
    case 19: r = bd_distill_init(F->ctx, &c, teacher, student, 0, &d); break;
    case 20: r = bd_distill_init(F->ctx, &c, teacher, NULL, 4, &d); break;
    case 21: r = bd_distill_init(F->ctx, &c, teacher, F->ana, 4, &d); break; /* nothing to train */
    case 22: /* student of another sample size */
        {
            bd_mlp_config mc = bd_mlp_config_init(FX_D + 1);
            mc.branches = 2;
            if (bd_mlp_create(F->ctx, &mc, &F->rng, &st2) == BD_SUCCESS) r = bd_distill_init(F->ctx, &c, teacher, st2, 4, &d);
        }
        break;
    case 23: /* student with K != config.branches */
        c.branches = 1;
        c.teacher_substeps = 2;
        r = bd_distill_init(F->ctx, &c, teacher, student, 4, &d);
        break;
    default:
        r = bd_distill_init(F->ctx, &c, teacher, student, 4, &d);
        if (r != BD_SUCCESS) break;
        switch (which) {
        case 24: r = bd_distill_step(d, NULL, 2, NULL, NULL); break;   /* PD needs data */
        case 25: r = bd_distill_step(d, x, 5, NULL, NULL); break;      /* over max_batch */
        case 26: r = bd_distill_step(d, x, 0, NULL, NULL); break;
        case 27: r = bd_distill_set_trajectories(d, NULL, 3); break;
        case 28: r = bd_distill_teacher_trajectories(d, NULL, 2, &F->rng); break;
        case 29: r = bd_distill_copy_ema(d, F->mlp); break;            /* wrong network */
        case 30: x[1] = NAN; r = bd_distill_step(d, x, 2, NULL, NULL); break;
        case 31: r = bd_distill_eval(d, 0, 1, 1, NULL, NULL, NULL); break;
        case 32: d->N = 1; d->config.student_steps = 1; r = bd_distill_next_round(d); break; /* N odd */
        default: break;
        }
        d->N = 2;
        break;
    }
    bd_distill_free(d);
    bd_denoiser_free(st2);
    bd_denoiser_free(student);
    return r;
}


/* ---- backend table, device drivers (on the CPU context), distill state ---- */
static bd_result backend_bad(fx *F, int which) {
    bd_backend be = *bd_backend_cpu();
    void *p = NULL;
    float h[4] = {0};
    bd_result r;
    switch (which) {
    case 0: return bd_context_set_backend(NULL, NULL);
    case 1: be.device_memory = 1; be.silu_forward = NULL; return bd_context_set_backend(F->ctx, &be);
    case 2: r = bd_backend_alloc(F->ctx, SIZE_MAX, &p); if (p) bd_backend_free(F->ctx, p); return r;
    case 3: return bd_backend_alloc(F->ctx, 16, NULL);
    case 4: return bd_backend_upload(F->ctx, NULL, h, sizeof h);
    case 5: return bd_backend_download(F->ctx, h, NULL, sizeof h);
    case 6: return bd_backend_transfer(NULL, h, F->ctx, h, sizeof h);
    case 7: return bd_backend_copy(F->ctx, NULL, h, sizeof h);
    case 8: return bd_backend_zero(F->ctx, NULL, 4);
    case 9: return bd_denoiser_to_context(F->mlp, NULL);
    default: return BD_SUCCESS;
    }
}
/* a context whose backend claims device memory (the CPU table with
   device_memory = 1): the host-only denoiser kinds are refused there */
static bd_backend g_fake_dev;
static bd_result device_bad(fx *F, int which) {
    bd_trainer_config tc = bd_trainer_config_init();
    bd_trainer *dt = NULL;
    bd_sampler *ds = NULL;
    bd_distill *dd = NULL;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_TD, 2, 2);
    float x[FX_B * FX_D];
    bd_result r = BD_SUCCESS;
    memcpy(x, F->x, sizeof x);
    switch (which) {
    case 0: case 1: { /* an MLP made on a device context: trainer, sampler */
        bd_context *dev = NULL;
        bd_context_config cc = bd_context_config_init();
        bd_mlp_config mc = bd_mlp_config_init(FX_D);
        bd_denoiser *mlp = NULL;
        bd_rng rng = bd_rng_init(1);
        if (bd_context_init(&cc, &dev) != BD_SUCCESS) return BD_ERROR_BACKEND;
        g_fake_dev = *bd_backend_cpu();
        g_fake_dev.device_memory = 1;
        if (bd_context_set_backend(dev, &g_fake_dev) != BD_SUCCESS || bd_mlp_create(dev, &mc, &rng, &mlp) != BD_SUCCESS)
            r = BD_ERROR_BACKEND;
        else if (which == 0) r = bd_trainer_init(F->ctx, mlp, &tc, 4, &dt);
        else r = bd_sampler_init(F->ctx, mlp, 4, &ds);
        bd_trainer_free(dt);
        bd_sampler_free(ds);
        dt = NULL;
        ds = NULL;
        bd_denoiser_free(mlp);
        bd_context_free(dev);
        break;
    }
    case 11: case 18: { /* 11: an MLP teacher and student on a device context (only "unet" runs
                           there); 18: the teacher on the CPU, the student on a device */
        bd_context *dev = NULL;
        bd_context_config cc = bd_context_config_init();
        bd_mlp_config mc = bd_mlp_config_init(FX_D);
        bd_denoiser *tm = NULL, *sm = NULL;
        bd_rng rng = bd_rng_init(1);
        if (bd_context_init(&cc, &dev) != BD_SUCCESS) return BD_ERROR_BACKEND;
        g_fake_dev = *bd_backend_cpu();
        g_fake_dev.device_memory = 1;
        mc.branches = 2;
        if (bd_context_set_backend(dev, &g_fake_dev) != BD_SUCCESS || bd_mlp_create(dev, &mc, &rng, &sm) != BD_SUCCESS)
            r = BD_ERROR_BACKEND;
        mc.branches = 1;
        if (r == BD_SUCCESS && bd_mlp_create(which == 11 ? dev : F->ctx, &mc, &rng, &tm) != BD_SUCCESS) r = BD_ERROR_BACKEND;
        if (r == BD_SUCCESS) r = bd_distill_init(F->ctx, &dc, tm, sm, 4, &dd);
        bd_distill_free(dd);
        dd = NULL;
        bd_denoiser_free(tm);
        bd_denoiser_free(sm);
        bd_context_free(dev);
        break;
    }
    case 13: case 14: case 15: case 16: case 17: {
        /* 13: TD given data; 14: a cache for PD; 15: an empty cache; 16: a
           NULL stream; 17: an unopened one */
        bd_denoiser *st = NULL;
        bd_npy_stream ns;
        memset(&ns, 0, sizeof ns);
        if (which == 14) {
            dc = bd_distill_config_init(BD_DISTILL_PD, 2, 2);
            dc.teacher_substeps = 2;
        }
        if (bd_distill_student_from_teacher(F->mlp_other, 2, &F->rng, &st) != BD_SUCCESS) return BD_ERROR_BACKEND;
        r = bd_distill_init(F->ctx, &dc, F->mlp_other, st, 4, &dd);
        if (r != BD_SUCCESS) r = BD_ERROR_BACKEND;
        else if (which == 13) r = bd_distill_step(dd, x, 2, NULL, NULL);
        else if (which == 14 || which == 15) r = bd_distill_set_trajectories(dd, x, which == 14 ? 1 : 0);
        else if (which == 16) r = bd_distill_set_trajectory_stream(dd, NULL);
        else if (which == 17) r = bd_distill_set_trajectory_stream(dd, &ns);
        bd_distill_free(dd);
        dd = NULL;
        bd_denoiser_free(st);
        break;
    }
    case 12: r = bd_distill_init(F->ctx, NULL, F->mlp, F->mlp, 4, &dd); break;
    default: break;
    }
    bd_trainer_free(dt);
    bd_sampler_free(ds);
    bd_distill_free(dd);
    return r;
}
static bd_result dstate_bad(fx *F, int which) {
    bd_distill_config c = bd_distill_config_init(BD_DISTILL_PD, 2, 2);
    bd_denoiser *student = NULL, *s4 = NULL;
    bd_distill *d = NULL, *d4 = NULL;
    bd_result r = BD_SUCCESS;
    bd_model *tm = NULL, *sm = NULL;
    static const double g_bad[3] = {1.0, 0.7, 0.8};
    if (which >= 4) {
        if (own_model(F, &tm) != BD_SUCCESS) return BD_ERROR_BACKEND;
        if (which == 4) r = bd_model_student_init(F->ctx, tm, 0, NULL, 0, &F->rng, &sm);
        if (which == 5) r = bd_model_student_init(F->ctx, tm, 4, g_bad, 2, &F->rng, &sm);
        if (which == 6) r = bd_model_student_init(F->ctx, tm, 2, NULL, 0, NULL, &sm);
        if (which == 7) r = bd_model_student_init(F->ctx, NULL, 2, NULL, 0, &F->rng, &sm);
        bd_model_free(sm);
        bd_model_free(tm);
        return r;
    }
    if (bd_distill_student_from_teacher(F->mlp_other, 2, &F->rng, &student) != BD_SUCCESS) return BD_ERROR_BACKEND;
    if (bd_distill_init(F->ctx, &c, F->mlp_other, student, 4, &d) != BD_SUCCESS) { bd_denoiser_free(student); return BD_ERROR_BACKEND; }
    switch (which) {
    case 0: r = bd_distill_save_state(d, F->dir_path); break;
    case 1: r = bd_distill_load_state(d, F->dir_path); break;
    case 2: /* a state of a K = 4 distiller into a K = 2 one */
        {
            bd_distill_config c4 = bd_distill_config_init(BD_DISTILL_PD, 4, 2);
            if (bd_distill_student_from_teacher(F->mlp_other, 4, &F->rng, &s4) == BD_SUCCESS &&
                bd_distill_init(F->ctx, &c4, F->mlp_other, s4, 4, &d4) == BD_SUCCESS &&
                bd_distill_save_state(d4, F->path) == BD_SUCCESS)
                r = bd_distill_load_state(d, F->path);
        }
        break;
    case 3: /* a model checkpoint is not a distillation state */
        {
            bd_model *m = NULL;
            if (own_model(F, &m) == BD_SUCCESS && bd_model_save(F->ctx, m, F->path, NULL) == BD_SUCCESS)
                r = bd_distill_load_state(d, F->path);
            bd_model_free(m);
        }
        break;
    default: break;
    }
    bd_distill_free(d4);
    bd_denoiser_free(s4);
    bd_distill_free(d);
    bd_denoiser_free(student);
    return r;
}

/* ---- the table -------------------------------------------------------- */
typedef bd_result (*case_fn)(fx *F);
typedef struct mcase {
    const char *name;
    case_fn fn;
    bd_result want;
    int msg; /* 1: a message must reach ctx and the log; 2: the log only */
} mcase;

#define E_ARG BD_ERROR_INVALID_ARGUMENT
#define E_CFG BD_ERROR_CONFIG
#define E_OOM BD_ERROR_OUT_OF_MEMORY
#define E_OVF BD_ERROR_OVERFLOW
#define E_SHP BD_ERROR_SHAPE
#define E_ST BD_ERROR_STATE
#define E_IO BD_ERROR_IO
#define E_FMT BD_ERROR_FORMAT
#define E_NF BD_ERROR_NONFINITE
#define E_UNS BD_ERROR_UNSUPPORTED

/* C: one case function from an expression over F; list below. */
#define CASES(X)                                                                               \
    X(ctx_threads_0, E_ARG, 2, ctx_init_bad(F, 0))                                             \
    X(ctx_threads_neg, E_ARG, 2, ctx_init_bad(F, 1))                                           \
    X(ctx_alloc_without_free, E_ARG, 2, ctx_init_bad(F, 2))                                    \
    X(ctx_free_without_alloc, E_ARG, 2, ctx_init_bad(F, 3))                                    \
    X(ctx_null_config, E_ARG, 0, ctx_init_bad(F, 4))                                           \
    X(ctx_null_out, E_ARG, 0, ctx_init_bad(F, 5))                                              \
    X(ctx_set_threads_0, E_ARG, 1, bd_context_set_threads(F->ctx, 0))                          \
    X(ctx_set_threads_null, E_ARG, 0, bd_context_set_threads(NULL, 2))                         \
    X(error_null_ctx, E_SHP, 0, bd_error(NULL, BD_ERROR_SHAPE, "x %d", 1))                     \
    X(alloc_size_max, E_OOM, 1, alloc_bad(F, 0))                                               \
    X(alloc_array_overflow, E_OVF, 1, alloc_bad(F, 1))                                         \
    X(alloc_array_huge, E_OOM, 1, alloc_bad(F, 2))                                             \
    X(tensor_negative, E_SHP, 1, tensor_bad(F, 0))                                             \
    X(tensor_overflow, E_OVF, 1, tensor_bad(F, 1))                                             \
    X(tensor_null, E_ARG, 1, tensor_bad(F, 2))                                                 \
    X(tensor_null_ctx, E_ARG, 0, tensor_bad(F, 3))                                             \
    X(tensor_huge, E_OOM, 1, tensor_bad(F, 4))                                                 \
    X(mlp_dim_0, E_CFG, 1, mlp_bad(F, 0))                                                      \
    X(mlp_dim_neg, E_CFG, 1, mlp_bad(F, 1))                                                    \
    X(mlp_hidden_0, E_CFG, 1, mlp_bad(F, 2))                                                   \
    X(mlp_depth_0, E_CFG, 1, mlp_bad(F, 3))                                                    \
    X(mlp_temb_odd, E_CFG, 1, mlp_bad(F, 4))                                                   \
    X(mlp_temb_0, E_CFG, 1, mlp_bad(F, 5))                                                     \
    X(mlp_branches_0, E_CFG, 1, mlp_bad(F, 6))                                                 \
    X(mlp_branches_65, E_CFG, 1, mlp_bad(F, 7))                                                \
    X(mlp_dim_huge, E_CFG, 1, mlp_bad(F, 8))                                                   \
    X(mlp_hidden_huge, E_CFG, 1, mlp_bad(F, 9))                                                \
    X(mlp_depth_huge, E_CFG, 1, mlp_bad(F, 10))                                                \
    X(mlp_weights_4tb, E_OOM, 1, mlp_bad(F, 11))                                               \
    X(mlp_null_config, E_ARG, 1, bd_mlp_create(F->ctx, NULL, &F->rng, &F->o_d))                \
    X(mlp_null_rng, E_ARG, 1, bd_mlp_create(F->ctx, NULL, NULL, &F->o_d))                      \
    X(mlp_null_ctx, E_ARG, 0, bd_mlp_create(NULL, NULL, &F->rng, &F->o_d))                     \
    X(ana_no_points, E_CFG, 1, ana_bad(F, 0))                                                  \
    X(ana_neg_points, E_CFG, 1, ana_bad(F, 1))                                                 \
    X(ana_neg_std, E_CFG, 1, ana_bad(F, 2))                                                    \
    X(ana_nan_std, E_CFG, 1, ana_bad(F, 3))                                                    \
    X(ana_bad_param, E_CFG, 1, ana_bad(F, 4))                                                  \
    X(ana_bad_schedule, E_CFG, 1, ana_bad(F, 5))                                               \
    X(ana_branches_0, E_CFG, 1, ana_bad(F, 6))                                                 \
    X(ana_in_ch_0, E_CFG, 1, ana_bad(F, 7))                                                    \
    X(ana_height_neg, E_CFG, 1, ana_bad(F, 8))                                                 \
    X(ana_dims_huge, E_OVF, 1, ana_bad(F, 9))                                                  \
    X(ana_null_points, E_ARG, 1, ana_bad(F, 10))                                               \
    X(ana_posterior_of_mlp, E_ARG, 1, bd_analytic_posterior_mean(F->mlp, F->x, F->z, F->t, 1)) \
    X(ana_posterior_null, E_ARG, 1, bd_analytic_posterior_mean(F->ana, NULL, F->z, F->t, 1))   \
    X(ana_posterior_neg_n, E_ARG, 1, bd_analytic_posterior_mean(F->ana, F->x, F->z, F->t, -1)) \
    X(ana_backward, E_UNS, 1, ana_backward(F))                   \
    X(reserve_0, E_ARG, 1, bd_denoiser_reserve(F->mlp, 0))                                     \
    X(reserve_neg, E_ARG, 1, bd_denoiser_reserve(F->mlp, -1))                                  \
    X(reserve_max, E_OVF, 1, bd_denoiser_reserve(F->mlp, INT64_MAX))                           \
    X(reserve_huge, E_OOM, 1, bd_denoiser_reserve(F->mlp, (int64_t)1 << 40))                   \
    X(reserve_null, E_ARG, 0, bd_denoiser_reserve(NULL, 4))                                    \
    X(forward_null_out, E_ARG, 1, bd_denoiser_forward(F->mlp, NULL, F->z, F->t, 1, 0))         \
    X(forward_null_z, E_ARG, 1, bd_denoiser_forward(F->mlp, F->out, NULL, F->t, 1, 0))         \
    X(forward_null_t, E_ARG, 1, bd_denoiser_forward(F->mlp, F->out, F->z, NULL, 1, 0))         \
    X(forward_n_0, E_ARG, 1, bd_denoiser_forward(F->mlp, F->out, F->z, F->t, 0, 0))            \
    X(forward_n_neg, E_ARG, 1, bd_denoiser_forward(F->mlp, F->out, F->z, F->t, -9, 1))         \
    X(forward_n_max, E_OVF, 1, bd_denoiser_forward(F->mlp, F->out, F->z, F->t, INT64_MAX, 0))  \
    X(forward_null_d, E_ARG, 0, bd_denoiser_forward(NULL, F->out, F->z, F->t, 1, 0))           \
    X(backward_no_forward, E_ST, 1, backward_without_forward(F))                               \
    X(backward_eval_forward, E_ST, 1, backward_after_eval_forward(F))                          \
    X(backward_wrong_batch, E_ST, 1, backward_wrong_batch(F))                                  \
    X(backward_beyond_reserve, E_ST, 1, backward_beyond_reserve(F))                            \
    X(backward_null_dout, E_ARG, 1, bd_denoiser_backward(F->mlp, NULL, NULL, 1))               \
    X(backward_null_d, E_ARG, 0, bd_denoiser_backward(NULL, NULL, F->out, 1))                  \
    X(zeroed_forward, E_ARG, 0, zeroed_denoiser(F, 0))                                         \
    X(zeroed_reserve, E_ARG, 0, zeroed_denoiser(F, 1))                                         \
    X(zeroed_backward, E_ARG, 0, zeroed_denoiser(F, 2))                                        \
    X(zeroed_create_like, E_ARG, 0, zeroed_denoiser(F, 3))                                     \
    X(zeroed_sampler_init, E_ARG, 1, zeroed_denoiser(F, 4))                                    \
    X(create_like_0, E_ARG, 1, bd_denoiser_create_like(F->mlp, 0, &F->rng, &F->o_d))           \
    X(create_like_65, E_ARG, 1, bd_denoiser_create_like(F->mlp, 65, &F->rng, &F->o_d))         \
    X(create_like_null_rng, E_ARG, 1, bd_denoiser_create_like(F->mlp, 2, NULL, &F->o_d))       \
    X(create_like_null_out, E_ARG, 1, bd_denoiser_create_like(F->mlp, 2, &F->rng, NULL))       \
    X(copy_weights_mismatch, E_SHP, 1, copy_weights_mismatch(F))                               \
    X(copy_weights_kind, E_SHP, 1, copy_weights_kind(F))                                       \
    X(copy_weights_null_src, E_ARG, 1, bd_denoiser_copy_weights(F->mlp, NULL))                 \
    X(copy_weights_null_dst, E_ARG, 0, bd_denoiser_copy_weights(NULL, F->mlp))                 \
    X(schedule_null, E_ARG, 0, bd_schedule_init(NULL, BD_SCHEDULE_COSINE))                     \
    X(schedule_kind, E_ARG, 0, bd_schedule_init(&F->tr->sched, (bd_schedule_kind)3))           \
    X(parse_schedule_unknown, E_ARG, 0, bd_schedule_parse("cosinus", &F->tr->sched.kind))      \
    X(parse_schedule_null, E_ARG, 0, bd_schedule_parse(NULL, &F->tr->sched.kind))              \
    X(parse_schedule_null_out, E_ARG, 0, bd_schedule_parse("cosine", NULL))                    \
    X(parse_param_unknown, E_ARG, 0, bd_param_parse("", &F->scfg.param))                       \
    X(parse_param_null, E_ARG, 0, bd_param_parse(NULL, &F->scfg.param))                        \
    X(parse_grid_unknown, E_ARG, 0, bd_grid_parse("Karras", &F->scfg.grid))                    \
    X(parse_grid_null_out, E_ARG, 0, bd_grid_parse("karras", NULL))                            \
    X(parse_sampler_unknown, E_ARG, 0, bd_sampler_parse("ddim ", &F->scfg.kind))               \
    X(parse_sampler_null, E_ARG, 0, bd_sampler_parse(NULL, &F->scfg.kind))                     \
    X(parse_weight_unknown, E_ARG, 0, bd_loss_weight_parse("snr", &F->tr->config.weighting))   \
    X(parse_weight_null, E_ARG, 0, bd_loss_weight_parse(NULL, NULL))                           \
    X(grid_steps_0, E_ARG, 1, grid_bad(F, 0))                                                  \
    X(grid_steps_neg, E_ARG, 1, grid_bad(F, 1))                                                \
    X(grid_kind, E_ARG, 1, grid_bad(F, 2))                                                     \
    X(grid_null_schedule, E_ARG, 1, grid_bad(F, 3))                                            \
    X(grid_null_out, E_ARG, 1, grid_bad(F, 4))                                                 \
    X(grid_null_ctx, E_ARG, 0, grid_bad(F, 5))                                                 \
    X(sampler_grid_steps_0, E_ARG, 1, grid_bad(F, 6))                                          \
    X(sampler_grid_null_cfg, E_ARG, 1, grid_bad(F, 7))                                         \
    X(sampler_grid_null_out, E_ARG, 1, grid_bad(F, 8))                                         \
    X(sampler_init_batch_0, E_ARG, 1, bd_sampler_init(F->ctx, F->mlp, 0, &F->o_s))             \
    X(sampler_init_batch_max, E_OVF, 1, bd_sampler_init(F->ctx, F->mlp, INT64_MAX, &F->o_s))   \
    X(sampler_init_batch_huge, E_OOM, 1, bd_sampler_init(F->ctx, F->mlp, (int64_t)1 << 34, &F->o_s)) \
    X(sampler_init_null_model, E_ARG, 1, bd_sampler_init(F->ctx, NULL, 4, &F->o_s))            \
    X(sampler_init_null_out, E_ARG, 1, bd_sampler_init(F->ctx, F->mlp, 4, NULL))               \
    X(sampler_init_null_ctx, E_ARG, 0, bd_sampler_init(NULL, F->mlp, 4, &F->o_s))              \
    X(sampler_kind_9, E_ARG, 1, sampler_bad(F, 0))                                             \
    X(sampler_kind_neg, E_ARG, 1, sampler_bad(F, 1))                                           \
    X(sampler_steps_0, E_ARG, 1, sampler_bad(F, 2))                                            \
    X(sampler_steps_neg, E_ARG, 1, sampler_bad(F, 3))                                          \
    X(sampler_steps_over, E_ARG, 1, sampler_bad(F, 4))                                         \
    X(sampler_steps_max, E_ARG, 1, sampler_bad(F, 5))                                          \
    X(sampler_param, E_ARG, 1, sampler_bad(F, 6))                                              \
    X(sampler_schedule, E_CFG, 1, sampler_bad(F, 7))                                           \
    X(sampler_grid_kind, E_ARG, 1, sampler_bad(F, 8))                                          \
    X(sampler_eta_neg, E_ARG, 1, sampler_bad(F, 9))                                            \
    X(sampler_eta_nan, E_ARG, 1, sampler_bad(F, 10))                                           \
    X(sampler_branch_k, E_ARG, 1, sampler_bad(F, 11))                                          \
    X(sampler_branch_max, E_ARG, 1, sampler_bad(F, 12))                                        \
    X(sampler_ddpm_no_rng, E_ARG, 1, sampler_bad(F, 13))                                       \
    X(sampler_eta_no_rng, E_ARG, 1, sampler_bad(F, 14))                                        \
    X(sampler_grid_increasing, E_CFG, 1, sampler_bad(F, 15))                                   \
    X(sampler_grid_above_1, E_CFG, 1, sampler_bad(F, 16))                                      \
    X(sampler_grid_negative, E_CFG, 1, sampler_bad(F, 17))                                     \
    X(sampler_grid_nan, E_CFG, 1, sampler_bad(F, 18))                                          \
    X(sampler_grid_repeat, E_CFG, 1, sampler_bad(F, 19))                                       \
    X(sampler_n_0, E_ARG, 1, sampler_bad(F, 20))                                               \
    X(sampler_n_neg, E_ARG, 1, sampler_bad(F, 21))                                             \
    X(sampler_branch_neg2, E_ARG, 1, sampler_bad(F, 22))                                       \
    X(sampler_run_null_cfg, E_ARG, 1, bd_sampler_run(F->smp, NULL, F->x, 1, NULL, NULL))      \
    X(sampler_run_null_x, E_ARG, 1, bd_sampler_run(F->smp, &F->scfg, NULL, 1, NULL, NULL))    \
    X(sampler_run_null, E_ARG, 0, bd_sampler_run(NULL, &F->scfg, F->x, 1, NULL, NULL))        \
    X(predict_branch_k, E_ARG, 1, predict_bad(F, 0))                                           \
    X(predict_branch_neg, E_ARG, 1, predict_bad(F, 1))                                         \
    X(predict_null_schedule, E_ARG, 1, predict_bad(F, 2))                                      \
    X(predict_null_out, E_ARG, 1, predict_bad(F, 3))                                           \
    X(predict_n_0, E_ARG, 1, predict_bad(F, 4))                                                \
    X(predict_param, E_ARG, 1, predict_bad(F, 5))                                              \
    X(predict_null_model, E_ARG, 0, predict_bad(F, 6))                                         \
    X(adam_lr_neg, E_CFG, 1, adam_bad(F, 0))                                                   \
    X(adam_lr_nan, E_CFG, 1, adam_bad(F, 1))                                                   \
    X(adam_beta1_1, E_CFG, 1, adam_bad(F, 2))                                                  \
    X(adam_beta2_neg, E_CFG, 1, adam_bad(F, 3))                                                \
    X(adam_eps_0, E_CFG, 1, adam_bad(F, 4))                                                    \
    X(adam_wd_neg, E_CFG, 1, adam_bad(F, 5))                                                   \
    X(adam_warmup_neg, E_CFG, 1, adam_bad(F, 6))                                               \
    X(adam_lr_schedule, E_CFG, 1, adam_bad(F, 7))                                              \
    X(adam_n_neg, E_ARG, 1, adam_bad(F, 8))                                                    \
    X(adam_n_huge, E_OOM, 1, adam_bad(F, 9))                                                   \
    X(adam_clip_nan, E_CFG, 1, adam_bad(F, 10))                                                \
    X(adam_total_neg, E_CFG, 1, adam_bad(F, 11))                                               \
    X(adam_lr_min_nan, E_CFG, 1, adam_bad(F, 12))                                              \
    X(adam_init_null_cfg, E_ARG, 1, bd_adam_init(F->ctx, NULL, 4, &F->adam))                   \
    X(adam_init_null_ctx, E_ARG, 0, bd_adam_init(NULL, NULL, 4, &F->adam))                     \
    X(adam_step_zeroed, E_ARG, 0, zeroed_adam_step(F))                                         \
    X(adam_step_freed, E_ARG, 0, freed_adam_step(F))                                           \
    X(adam_step_null_params, E_ARG, 1, adam_null_params(F))                                    \
    X(adam_step_nan_grad, E_NF, 1, adam_nan_grad(F))                                           \
    X(adam_step_inf_grad, E_NF, 1, adam_inf_grad(F))                                           \
    X(trainer_param, E_CFG, 1, trainer_bad(F, 0))                                              \
    X(trainer_weighting, E_CFG, 1, trainer_bad(F, 1))                                          \
    X(trainer_ema_1_5, E_CFG, 1, trainer_bad(F, 2))                                            \
    X(trainer_ema_nan, E_CFG, 1, trainer_bad(F, 3))                                            \
    X(trainer_t_min_1, E_CFG, 1, trainer_bad(F, 4))                                            \
    X(trainer_t_min_neg, E_CFG, 1, trainer_bad(F, 5))                                          \
    X(trainer_schedule, E_CFG, 1, trainer_bad(F, 6))                                           \
    X(trainer_untrainable, E_CFG, 1, trainer_bad(F, 7))                                        \
    X(trainer_batch_0, E_ARG, 1, trainer_bad(F, 8))                                            \
    X(trainer_batch_neg, E_ARG, 1, trainer_bad(F, 9))                                          \
    X(trainer_batch_max, E_OVF, 1, trainer_bad(F, 10))                                         \
    X(trainer_batch_huge, E_OOM, 1, trainer_bad(F, 11))                                        \
    X(trainer_adam_lr, E_CFG, 1, trainer_bad(F, 12))                                           \
    X(trainer_adam_eps_nan, E_CFG, 1, trainer_bad(F, 13))                                      \
    X(trainer_init_null_model, E_ARG, 1, bd_trainer_init(F->ctx, NULL, &F->tr->config, 4, &F->o_t)) \
    X(trainer_init_null_cfg, E_ARG, 1, bd_trainer_init(F->ctx, F->mlp, NULL, 4, &F->o_t))      \
    X(trainer_init_null_ctx, E_ARG, 0, bd_trainer_init(NULL, F->mlp, &F->tr->config, 4, &F->o_t)) \
    X(trainer_step_null_x, E_ARG, 1, bd_trainer_step(F->tr, NULL, 2, NULL))                    \
    X(trainer_step_n_0, E_ARG, 1, bd_trainer_step(F->tr, F->x, 0, NULL))                       \
    X(trainer_step_n_over, E_ARG, 1, bd_trainer_step(F->tr, F->x, FX_B + 1, NULL))             \
    X(trainer_step_n_max, E_ARG, 1, bd_trainer_step(F->tr, F->x, INT64_MAX, NULL))             \
    X(trainer_step_null, E_ARG, 0, bd_trainer_step(NULL, F->x, 1, NULL))                       \
    X(trainer_copy_ema_mismatch, E_SHP, 1, copy_ema_mismatch(F))                               \
    X(trainer_copy_ema_analytic, E_SHP, 1, copy_ema_analytic(F))                               \
    X(trainer_copy_ema_null_dst, E_ARG, 1, bd_trainer_copy_ema(F->tr, NULL))                   \
    X(trainer_run_no_data, E_ARG, 1, bd_trainer_run(F->tr, 2, 2, g_nodata, NULL, NULL, NULL))  \
    X(trainer_run_steps_neg, E_ARG, 1, bd_trainer_run(F->tr, -1, 2, data_ok, NULL, NULL, NULL)) \
    X(trainer_run_batch_0, E_ARG, 1, bd_trainer_run(F->tr, 2, 0, data_ok, NULL, NULL, NULL))   \
    X(trainer_run_batch_over, E_ARG, 1, bd_trainer_run(F->tr, 2, FX_B + 1, data_ok, NULL, NULL, NULL)) \
    X(trainer_run_data_fails, E_IO, 1, bd_trainer_run(F->tr, 2, 2, data_fail, NULL, NULL, NULL)) \
    X(trainer_run_nan_data, E_NF, 1, bd_trainer_run(F->tr, 2, 2, data_nan, NULL, NULL, NULL))  \
    X(trainer_run_null, E_ARG, 0, bd_trainer_run(NULL, 2, 2, data_ok, NULL, NULL, NULL))       \
    X(st_write_duplicate, E_ARG, 1, st_write_bad(F, 0))                                        \
    X(st_write_metadata_name, E_ARG, 1, st_write_bad(F, 1))                                    \
    X(st_write_null_name, E_ARG, 1, st_write_bad(F, 2))                                        \
    X(st_write_null_data, E_ARG, 1, st_write_bad(F, 3))                                        \
    X(st_write_ndim_9, E_ARG, 1, st_write_bad(F, 4))                                           \
    X(st_write_ndim_neg, E_ARG, 1, st_write_bad(F, 5))                                         \
    X(st_write_shape_neg, E_ARG, 1, st_write_bad(F, 6))                                        \
    X(st_write_bad_utf8, E_ARG, 1, st_write_bad(F, 7))                                         \
    X(st_write_duplicate_key, E_ARG, 1, st_write_bad(F, 8))                                    \
    X(st_write_null_value, E_ARG, 1, st_write_bad(F, 9))                                       \
    X(st_write_n_neg, E_ARG, 1, st_write_bad(F, 10))                                           \
    X(st_write_null_tensors, E_ARG, 1, st_write_bad(F, 11))                                    \
    X(st_write_null_path, E_ARG, 1, st_write_bad(F, 12))                                       \
    X(st_write_empty_path, E_ARG, 1, st_write_bad(F, 13))                                      \
    X(st_write_no_dir, E_IO, 1, st_write_bad(F, 14))                                           \
    X(st_write_shape_overflow, E_ARG, 1, st_write_bad(F, 15))                                  \
    X(st_write_null_ctx, E_ARG, 0, st_write_bad(F, 16))                                        \
    X(st_write_mem_null_out, E_ARG, 1, st_write_bad(F, 17))                                    \
    X(st_write_mem_duplicate, E_ARG, 1, st_write_bad(F, 18))                                   \
    X(st_write_null_key, E_ARG, 1, st_write_bad(F, 19))                                        \
    X(st_load_null_path, E_ARG, 1, st_load_bad(F, 0))                                          \
    X(st_load_missing, E_IO, 1, st_load_bad(F, 1))                                             \
    X(st_load_null_out, E_ARG, 1, st_load_bad(F, 2))                                           \
    X(st_load_mem_null, E_ARG, 1, st_load_bad(F, 3))                                           \
    X(st_load_mem_empty, E_FMT, 1, st_load_bad(F, 4))                                          \
    X(st_load_mem_junk, E_FMT, 1, st_load_bad(F, 5))                                           \
    X(st_load_null_ctx, E_ARG, 0, st_load_bad(F, 6))                                           \
    X(st_load_directory, E_IO, 1, st_load_bad(F, 7))                                           \
    X(json_null, E_ARG, 1, json_bad(F, 0))                                                     \
    X(json_open_brace, E_FMT, 1, json_bad(F, 1))                                               \
    X(json_empty, E_FMT, 1, json_bad(F, 2))                                                    \
    X(json_truncated_len, E_FMT, 1, json_bad(F, 3))                                            \
    X(npy_write_ndim_5, E_ARG, 1, npy_bad(F, 0))                                               \
    X(npy_write_ndim_neg, E_ARG, 1, npy_bad(F, 1))                                             \
    X(npy_write_null_shape, E_ARG, 1, npy_bad(F, 2))                                           \
    X(npy_write_null_data, E_ARG, 1, npy_bad(F, 3))                                            \
    X(npy_write_shape_neg, E_ARG, 1, npy_bad(F, 4))                                            \
    X(npy_write_null_path, E_ARG, 1, npy_bad(F, 5))                                            \
    X(npy_write_no_dir, E_IO, 1, npy_bad(F, 6))                                                \
    X(npy_read_missing, E_IO, 1, npy_bad(F, 7))                                                \
    X(npy_read_null_path, E_ARG, 1, npy_bad(F, 8))                                             \
    X(npy_read_mem_null, E_ARG, 1, npy_bad(F, 9))                                              \
    X(npy_read_mem_junk, E_FMT, 1, npy_bad(F, 10))                                             \
    X(npy_read_mem_null_out, E_ARG, 1, npy_bad(F, 11))                                         \
    X(npy_write_shape_overflow, E_ARG, 1, npy_bad(F, 12))                                      \
    X(npy_stream_null_path, E_ARG, 1, npy_bad(F, 13))                                          \
    X(npy_stream_null_out, E_ARG, 1, npy_bad(F, 14))                                           \
    X(npy_stream_missing, E_IO, 1, npy_bad(F, 15))                                             \
    X(npy_stream_read_closed, E_ST, 1, npy_bad(F, 16))                                         \
    X(idx_images_missing, E_IO, 1, idx_bad(F, 0))                                              \
    X(idx_images_null_path, E_ARG, 1, idx_bad(F, 1))                                           \
    X(idx_images_mem_null, E_ARG, 1, idx_bad(F, 2))                                            \
    X(idx_images_mem_junk, E_FMT, 1, idx_bad(F, 3))                                            \
    X(idx_images_null_out, E_ARG, 1, idx_bad(F, 4))                                            \
    X(idx_labels_missing, E_IO, 1, idx_bad(F, 5))                                              \
    X(idx_labels_mem_junk, E_FMT, 1, idx_bad(F, 6))                                            \
    X(idx_labels_null_out, E_ARG, 1, idx_bad(F, 7))                                            \
    X(idx_labels_null_n, E_ARG, 1, idx_bad(F, 8))                                              \
    X(idx_gz_forged_count, E_FMT, 1, idx_bad(F, 9))                                            \
    X(idx_gz_count_2pow32, E_FMT, 1, idx_bad(F, 10))                                           \
    X(idx_gz_over_budget, E_OOM, 1, idx_bad(F, 11))                                            \
    X(idx_gz_longer_than_claim, E_FMT, 1, idx_bad(F, 12))                                      \
    X(idx_raw_shorter_than_claim, E_FMT, 1, idx_bad(F, 13))                                    \
    X(idx_gz_header_cut, E_FMT, 1, idx_bad(F, 14))                                             \
    X(idx_gz_labels_forged, E_FMT, 1, idx_bad(F, 15))                                          \
    X(inflate_null, E_ARG, 1, inflate_bad(F, 0))                                               \
    X(inflate_junk, E_FMT, 1, inflate_bad(F, 1))                                               \
    X(inflate_null_out, E_ARG, 1, inflate_bad(F, 2))                                           \
    X(gunzip_junk, E_FMT, 1, inflate_bad(F, 3))                                                \
    X(gunzip_truncated, E_FMT, 1, inflate_bad(F, 4))                                           \
    X(gunzip_null, E_ARG, 1, inflate_bad(F, 5))                                                \
    X(gunzip_null_size, E_ARG, 1, inflate_bad(F, 6))                                           \
    X(png_width_0, E_ARG, 1, img_bad(F, 0))                                                    \
    X(png_height_neg, E_ARG, 1, img_bad(F, 1))                                                 \
    X(png_channels_5, E_ARG, 1, img_bad(F, 2))                                                 \
    X(png_null_pixels, E_ARG, 1, img_bad(F, 3))                                                \
    X(png_huge, E_ARG, 1, img_bad(F, 4))                                                       \
    X(png_float_c2, E_ARG, 1, img_bad(F, 5))                                                   \
    X(png_float_null, E_ARG, 1, img_bad(F, 6))                                                 \
    X(png_float_h0, E_ARG, 1, img_bad(F, 7))                                                   \
    X(png_grid_n0, E_ARG, 1, img_bad(F, 8))                                                    \
    X(png_grid_pad_neg, E_ARG, 1, img_bad(F, 9))                                               \
    X(png_grid_null, E_ARG, 1, img_bad(F, 10))                                                 \
    X(png_no_dir, E_IO, 1, img_bad(F, 11))                                                     \
    X(plot_width_10, E_ARG, 1, img_bad(F, 12))                                                 \
    X(plot_null_cfg, E_ARG, 1, img_bad(F, 13))                                                 \
    X(plot_null_series, E_ARG, 1, img_bad(F, 14))                                              \
    X(plot_series_n_neg, E_ARG, 1, img_bad(F, 15))                                             \
    X(plot_series_null_y, E_ARG, 1, img_bad(F, 16))                                            \
    X(csv_no_cols, E_ARG, 1, img_bad(F, 17))                                                   \
    X(csv_null_names, E_ARG, 1, img_bad(F, 18))                                                \
    X(csv_comma_name, E_ARG, 1, img_bad(F, 19))                                                \
    X(csv_null_column, E_ARG, 1, img_bad(F, 20))                                               \
    X(csv_rows_neg, E_ARG, 1, img_bad(F, 21))                                                  \
    X(shapes_size_4, E_ARG, 1, img_bad(F, 22))                                                 \
    X(shapes_null_out, E_ARG, 1, img_bad(F, 23))                                               \
    X(shapes_n_neg, E_ARG, 1, img_bad(F, 24))                                                  \
    X(shapes_first_neg, E_ARG, 1, img_bad(F, 25))                                              \
    X(shapes_size_4096, E_ARG, 1, img_bad(F, 26))                                              \
    X(png_grid_c2, E_ARG, 1, img_bad(F, 27))                                                   \
    X(png_grid_huge, E_ARG, 1, img_bad(F, 28))                                                 \
    X(shapes_first_overflow, E_ARG, 1, img_bad(F, 29))                                        \
    X(png_lgrid_zoom_0, E_ARG, 1, img_bad(F, 30))                                              \
    X(png_lgrid_zoom_65, E_ARG, 1, img_bad(F, 31))                                             \
    X(png_lgrid_labels_null, E_ARG, 1, img_bad(F, 32))                                         \
    X(png_lgrid_labels_neg, E_ARG, 1, img_bad(F, 33))                                          \
    X(png_lgrid_c2, E_ARG, 1, img_bad(F, 34))                                                  \
    X(png_lgrid_null_x, E_ARG, 1, img_bad(F, 35))                                              \
    X(png_lgrid_n0, E_ARG, 1, img_bad(F, 36))                                                  \
    X(png_lgrid_huge, E_OVF, 1, img_bad(F, 37))                                                \
    X(png_lgrid_no_dir, E_IO, 1, img_bad(F, 38))                                               \
    X(plot_labels_too_small, E_ARG, 1, img_bad(F, 39))                                         \
    X(unet_levels_0, E_CFG, 1, unet_bad(F, 0))                                                 \
    X(unet_levels_9, E_CFG, 1, unet_bad(F, 1))                                                 \
    X(unet_size_odd, E_CFG, 1, unet_bad(F, 2))                                                 \
    X(unet_ch_odd, E_CFG, 1, unet_bad(F, 3))                                                   \
    X(unet_groups_3, E_CFG, 1, unet_bad(F, 4))                                                 \
    X(unet_heads_0, E_CFG, 1, unet_bad(F, 5))                                                  \
    X(unet_heads_3, E_CFG, 1, unet_bad(F, 6))                                                  \
    X(unet_branches_0, E_CFG, 1, unet_bad(F, 7))                                               \
    X(unet_branches_65, E_CFG, 1, unet_bad(F, 8))                                              \
    X(unet_in_ch_0, E_CFG, 1, unet_bad(F, 9))                                                  \
    X(unet_mult_0, E_CFG, 1, unet_bad(F, 10))                                                  \
    X(unet_size_max, E_CFG, 1, unet_bad(F, 11))                                                \
    X(unet_huge, E_CFG, 1, unet_bad(F, 12))                                                    \
    X(unet_nres_neg, E_CFG, 1, unet_bad(F, 13))                                                \
    X(unet_groups_0, E_CFG, 1, unet_bad(F, 14))                                                \
    X(unet_null_cfg, E_ARG, 1, unet_bad(F, 15))                                                \
    X(unet_null_rng, E_ARG, 1, unet_bad(F, 16))                                                \
    X(unet_get_config_mlp, E_ARG, 0, unet_bad(F, 17))                                          \
    X(unet_validate_null, E_ARG, 1, unet_bad(F, 18))                                           \
    X(unet_nres_max, E_CFG, 1, unet_bad(F, 19))                                                \
    X(unet_stats_bad, E_CFG, 1, unet_stats_bad(F))                                             \
    X(unet_mult_empty, E_CFG, 1, unet_parse_bad(F, 0))                                         \
    X(unet_mult_double_comma, E_CFG, 1, unet_parse_bad(F, 1))                                  \
    X(unet_mult_trailing_comma, E_CFG, 1, unet_parse_bad(F, 2))                                \
    X(unet_mult_letter, E_CFG, 1, unet_parse_bad(F, 3))                                        \
    X(unet_mult_space, E_CFG, 1, unet_parse_bad(F, 4))                                         \
    X(unet_mult_overflow, E_CFG, 1, unet_parse_bad(F, 5))                                      \
    X(unet_mult_9_levels, E_CFG, 1, unet_parse_bad(F, 6))                                      \
    X(unet_mult_neg, E_CFG, 1, unet_parse_bad(F, 7))                                           \
    X(unet_mult_leading_comma, E_CFG, 1, unet_parse_bad(F, 9))                                 \
    X(unet_attn_9, E_CFG, 1, unet_parse_bad(F, 10))                                            \
    X(unet_attn_neg, E_CFG, 1, unet_parse_bad(F, 11))                                          \
    X(unet_attn_trailing, E_CFG, 1, unet_parse_bad(F, 12))                                     \
    X(unet_attn_letter, E_CFG, 1, unet_parse_bad(F, 13))                                       \
    X(unet_attn_many, E_CFG, 1, unet_parse_bad(F, 14))                                         \
    X(unet_attn_space, E_CFG, 1, unet_parse_bad(F, 15))                                        \
    X(unet_parse_null, E_ARG, 1, unet_parse_bad(F, 16))                                        \
    X(unet_parse_null_cfg, E_ARG, 1, unet_parse_bad(F, 17))                                    \
    X(unet_parse_attn_null, E_ARG, 1, unet_parse_bad(F, 18))                                   \
    X(unet_parse_attn_null_cfg, E_ARG, 1, unet_parse_bad(F, 19))                               \
    X(model_analytic_net, E_UNS, 1, model_bad(F, 0))                                           \
    X(model_null_net, E_ARG, 1, model_bad(F, 1))                                               \
    X(model_bad_param, E_ARG, 1, model_bad(F, 2))                                              \
    X(model_unet_null_cfg, E_ARG, 1, model_bad(F, 3))                                          \
    X(model_grid_up, E_CFG, 1, model_bad(F, 4))                                                \
    X(model_grid_start, E_CFG, 1, model_bad(F, 5))                                             \
    X(model_grid_end, E_CFG, 1, model_bad(F, 6))                                               \
    X(model_grid_steps_neg, E_CFG, 1, model_bad(F, 7))                                         \
    X(model_save_null_path, E_ARG, 1, model_bad(F, 8))                                         \
    X(model_save_no_dir, E_IO, 1, model_bad(F, 9))                                             \
    X(model_save_other_trainer, E_ARG, 1, model_bad(F, 10))                                    \
    X(model_load_missing, E_IO, 1, model_bad(F, 11))                                           \
    X(model_load_not_checkpoint, E_FMT, 1, model_bad(F, 12))                                   \
    X(model_load_junk, E_FMT, 1, model_bad(F, 13))                                             \
    X(model_resume_no_optim, E_FMT, 1, model_bad(F, 14))                                       \
    X(model_resume_other_trainer, E_ARG, 1, model_bad(F, 15))                                  \
    X(model_state_adam_size, E_SHP, 1, model_bad(F, 16))                                       \
    X(model_state_other_arch, E_FMT, 1, model_bad(F, 17))                                      \
    X(model_load_null_out, E_ARG, 1, model_bad(F, 18))                                         \
    X(model_save_null_ctx, E_ARG, 0, model_bad(F, 19))                                         \
    X(distill_branches_0, E_CFG, 1, distill_bad(F, 0))                                         \
    X(distill_branches_65, E_CFG, 1, distill_bad(F, 1))                                        \
    X(distill_substeps, E_CFG, 1, distill_bad(F, 2))                                           \
    X(distill_steps_0, E_CFG, 1, distill_bad(F, 3))                                            \
    X(distill_weights, E_CFG, 1, distill_bad(F, 4))                                            \
    X(distill_method, E_CFG, 1, distill_bad(F, 5))                                             \
    X(distill_pd_heun, E_CFG, 1, distill_bad(F, 6))                                            \
    X(distill_x_l1, E_CFG, 1, distill_bad(F, 7))                                               \
    X(distill_adam_lr, E_CFG, 1, distill_bad(F, 8))                                            \
    X(distill_ema_2, E_CFG, 1, distill_bad(F, 9))                                              \
    X(distill_grid_bad, E_ARG, 1, distill_bad(F, 10))                                          \
    X(distill_weights_kind, E_ARG, 1, distill_bad(F, 11))                                      \
    X(distill_weights_k0, E_ARG, 1, distill_bad(F, 12))                                        \
    X(distill_weights_null, E_ARG, 1, distill_bad(F, 13))                                      \
    X(distill_tgrid_kt0, E_ARG, 1, distill_bad(F, 14))                                         \
    X(distill_tgrid_n0, E_ARG, 1, distill_bad(F, 15))                                          \
    X(distill_tgrid_null, E_ARG, 1, distill_bad(F, 16))                                        \
    X(distill_parse_method, E_ARG, 0, distill_bad(F, 17))                                      \
    X(distill_parse_weights, E_ARG, 0, distill_bad(F, 18))                                     \
    X(distill_batch_0, E_ARG, 1, distill_bad(F, 19))                                           \
    X(distill_null_student, E_ARG, 1, distill_bad(F, 20))                                      \
    X(distill_untrainable, E_CFG, 1, distill_bad(F, 21))                                       \
    X(distill_student_size, E_SHP, 1, distill_bad(F, 22))                                      \
    X(distill_student_k, E_CFG, 1, distill_bad(F, 23))                                         \
    X(distill_pd_no_data, E_ARG, 1, distill_bad(F, 24))                                        \
    X(distill_step_over, E_ARG, 1, distill_bad(F, 25))                                         \
    X(distill_step_0, E_ARG, 1, distill_bad(F, 26))                                            \
    X(distill_traj_null, E_ARG, 1, distill_bad(F, 27))                                         \
    X(distill_traj_gen_null, E_ARG, 1, distill_bad(F, 28))                                     \
    X(distill_copy_ema_other, E_SHP, 1, distill_bad(F, 29))                                    \
    X(distill_nan_data, E_NF, 1, distill_bad(F, 30))                                           \
    X(distill_eval_n0, E_ARG, 1, distill_bad(F, 31))                                           \
    X(distill_round_odd, E_ST, 1, distill_bad(F, 32))                                          \
    X(backend_null_ctx, E_ARG, 0, backend_bad(F, 0))                                           \
    X(backend_device_missing_entry, E_UNS, 1, backend_bad(F, 1))                               \
    X(backend_alloc_huge, E_OOM, 1, backend_bad(F, 2))                                         \
    X(backend_alloc_null_out, E_ARG, 1, backend_bad(F, 3))                                     \
    X(backend_upload_null, E_ARG, 1, backend_bad(F, 4))                                        \
    X(backend_download_null, E_ARG, 1, backend_bad(F, 5))                                      \
    X(backend_transfer_null_ctx, E_ARG, 0, backend_bad(F, 6))                                  \
    X(backend_copy_null, E_ARG, 1, backend_bad(F, 7))                                          \
    X(backend_zero_null, E_ARG, 1, backend_bad(F, 8))                                          \
    X(to_context_null, E_ARG, 0, backend_bad(F, 9))                                            \
    X(trainer_mlp_on_device, E_UNS, 1, device_bad(F, 0))                                      \
    X(sampler_mlp_on_device, E_UNS, 1, device_bad(F, 1))                                      \
    X(dev_distill_mlp, E_UNS, 1, device_bad(F, 11))                                            \
    X(dev_distill_null_cfg, E_ARG, 1, device_bad(F, 12))                                       \
    X(dev_distill_td_with_x, E_ARG, 1, device_bad(F, 13))                                      \
    X(dev_distill_pd_cache, E_ARG, 1, device_bad(F, 14))                                       \
    X(dev_distill_cache_0, E_ARG, 1, device_bad(F, 15))                                        \
    X(dev_distill_stream_null, E_ARG, 1, device_bad(F, 16))                                    \
    X(dev_distill_stream_closed, E_ARG, 1, device_bad(F, 17))                                  \
    X(dev_distill_two_backends, E_ARG, 1, device_bad(F, 18))                                   \
    X(dstate_save_no_dir, E_IO, 1, dstate_bad(F, 0))                                           \
    X(dstate_load_missing, E_IO, 1, dstate_bad(F, 1))                                          \
    X(dstate_load_other_k, E_CFG, 1, dstate_bad(F, 2))                                         \
    X(dstate_load_model_file, E_CFG, 1, dstate_bad(F, 3))                                      \
    X(student_init_k0, E_ARG, 1, dstate_bad(F, 4))                                             \
    X(student_init_bad_grid, E_CFG, 1, dstate_bad(F, 5))                                       \
    X(student_init_null_rng, E_ARG, 1, dstate_bad(F, 6))                                       \
    X(student_init_null_teacher, E_ARG, 1, dstate_bad(F, 7))

#define DEFINE_CASE(name, want, msg, expr) \
    static bd_result case_##name(fx *F) { (void)F; return (expr); }
CASES(DEFINE_CASE)
#define TABLE_ROW(name, want, msg, expr) {#name, case_##name, want, msg},
static const mcase g_cases[] = {CASES(TABLE_ROW)};
#define N_CASES ((int)(sizeof g_cases / sizeof g_cases[0]))

static void test_misuse_table(void) {
    int i, bad = 0;
    for (i = 0; i < N_CASES; i++) {
        const mcase *c = &g_cases[i];
        fx F;
        bd_result r;
        long live_before = g_live;
        if (!fx_init(&F)) {
            BDT_CHECKF(0, "fixture for %s failed", c->name);
            return;
        }
        r = c->fn(&F);
        if (r != c->want) {
            BDT_CHECKF(r == c->want, "%s returned %s (%d), expected %s", c->name, bd_result_string(r), (int)r,
                       bd_result_string(c->want));
            bad++;
        }
        if (c->msg == 2) { /* no context exists: the message goes to the log only */
            BDT_CHECKF(F.log.calls > 0 && F.log.last == r && F.log.msg[0] != 0,
                       "%s: no message delivered to the log", c->name);
        } else if (c->msg) {
            BDT_CHECKF(F.log.calls > 0 && F.log.last == r && F.log.msg[0] != 0,
                       "%s: no message delivered to the log (calls %d, code %s)", c->name, F.log.calls,
                       bd_result_string(F.log.last));
            BDT_CHECKF(F.ctx->last_result == r && strcmp(F.ctx->message, F.log.msg) == 0,
                       "%s: context message '%s' / last_result %d disagree with the log", c->name,
                       F.ctx->message, (int)F.ctx->last_result);
        }
        BDT_CHECKF(!fx_handed_out(&F), "%s: a failing call handed out an object", c->name);
        BDT_CHECKF(fx_still_works(&F), "%s: objects unusable after the bad call (%s)", c->name, F.ctx->message);
        fx_free(&F);
        BDT_CHECKF(g_live == live_before, "%s: %ld allocations leaked", c->name, g_live - live_before);
        if (getenv("BDT_VERBOSE")) printf("  %-28s -> %s: %s\n", c->name, bd_result_string(r), F.log.msg);
    }
    printf("  %d misuse cases, %d with an unexpected result\n", N_CASES, bad);
}

/* Functions without a result: NULL and empty arguments are no-ops, queries
   on NULL give neutral answers. */
static void test_null_tolerant(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    bd_tensor t;
    bd_npy a;
    bd_adam adam;
    float x[4] = {1, 2, 3, 4};
    int64_t h = -1, w = -1;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    bd_context_free(NULL);
    bd_denoiser_free(NULL);
    bd_sampler_free(NULL);
    bd_trainer_free(NULL);
    bd_safetensors_free(NULL);
    bd_free(ctx, NULL);
    bd_free(NULL, NULL);
    bd_tensor_free(ctx, NULL);
    memset(&t, 0, sizeof t);
    bd_tensor_free(ctx, &t);
    bd_npy_free(ctx, NULL);
    memset(&a, 0, sizeof a);
    bd_npy_free(ctx, &a);
    bd_adam_free(NULL);
    memset(&adam, 0, sizeof adam);
    bd_adam_free(&adam);
    bd_denoiser_zero_grad(NULL);
    bd_noise_fill(NULL, 4, 1);
    bd_noise_fill(x, 0, 1);
    BDT_CHECK(x[0] == 1.0f);
    BDT_CHECK(bd_denoiser_sample_size(NULL) == 0);
    BDT_CHECK(bd_denoiser_find_tensor(NULL, "x") == NULL);
    BDT_CHECK(bd_tensor_numel(NULL) == 0);
    BDT_CHECK(bd_safetensors_find(NULL, "x") == NULL);
    BDT_CHECK(bd_safetensors_meta(NULL, "x") == NULL);
    BDT_CHECK(strcmp(bd_context_message(NULL), "no context") == 0);
    BDT_CHECK(strcmp(bd_result_string((bd_result)-1), "unknown result") == 0);
    BDT_CHECK(strcmp(bd_result_string(BD_RESULT_COUNT), "unknown result") == 0);
    BDT_CHECK(strcmp(bd_schedule_name((bd_schedule_kind)9), "unknown") == 0);
    BDT_CHECK(strcmp(bd_param_name((bd_param_kind)9), "unknown") == 0);
    BDT_CHECK(strcmp(bd_grid_name((bd_grid_kind)-3), "unknown") == 0);
    BDT_CHECK(strcmp(bd_sampler_name((bd_sampler_kind)9), "unknown") == 0);
    BDT_CHECK(strcmp(bd_loss_weight_name((bd_loss_weight)9), "unknown") == 0);
    BDT_CHECK(bd_adam_lr(NULL, 1) == 0.0);
    bd_image_grid(NULL, &h, &w, NULL, 0, 1, 2, 2, 0, 1, 0.0f);
    BDT_CHECKF(h >= 0 && w >= 0, "image grid size of 0 images: %lld x %lld", (long long)h, (long long)w);
    bd_context_free(ctx);
}

/* Every error the library reports through a context carries a message of
   at least a few words; the log gets exactly one call per error. */
static void test_one_log_call_per_error(void) {
    fx F;
    bd_result r;
    int calls;
    if (!fx_init(&F)) { BDT_CHECK(0); return; }
    r = sampler_bad(&F, 18);
    calls = F.log.calls;
    BDT_CHECKF(r == BD_ERROR_CONFIG && calls == 1, "NaN grid: %s with %d log calls", bd_result_string(r), calls);
    r = bd_trainer_step(F.tr, F.x, 0, NULL);
    BDT_CHECKF(F.log.calls == calls + 1 && strlen(F.log.msg) > 10, "log calls %d, message '%s'", F.log.calls, F.log.msg);
    (void)r;
    fx_free(&F);
}

/* Checkpoint fuzz corpus and regressions (tests/fuzz/fuzz_checkpoint.c):
   the seeds load; the regression files are refused without any allocation
   much larger than the file (a few bytes of metadata once made the loader
   allocate the network they describe, up to terabytes). */
static void replay_dir(const char *dir, int must_load, int *files) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        fx F;
        bd_model *m = NULL;
        bd_result r;
        struct stat sb;
        long live0 = g_live;
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (!fx_init(&F)) { BDT_CHECK(0); break; }
        g_max_req = 0;
        r = bd_model_load(F.ctx, path, &m);
        (*files)++;
        if (must_load) BDT_CHECKF(r == BD_SUCCESS && m, "%s: %s", path, bd_context_message(F.ctx));
        else BDT_CHECKF(r != BD_SUCCESS && !m && F.log.calls > 0, "%s: %s", path, bd_result_string(r));
        BDT_CHECKF(g_max_req <= 64 * (size_t)sb.st_size + ((size_t)1 << 20),
                   "%s (%lld bytes): an allocation of %zu bytes", path, (long long)sb.st_size, g_max_req);
        bd_model_free(m);
        fx_free(&F);
        BDT_CHECKF(g_live == live0, "%s: leaked", path);
    }
    closedir(d);
}
static void test_checkpoint_corpus(void) {
    int files = 0;
    replay_dir("tests/fuzz/corpus/checkpoint", 1, &files);
    replay_dir("tests/fuzz/regress/checkpoint", 0, &files);
    BDT_CHECKF(files >= 5, "only %d checkpoint corpus/regression files found (run from the repository root)", files);
}

int main(void) {
    (void)bdt_close_ratio;
    BDT_RUN(test_misuse_table);
    BDT_RUN(test_null_tolerant);
    BDT_RUN(test_one_log_call_per_error);
    BDT_RUN(test_checkpoint_corpus);
    return BDT_SUMMARY("test_misuse");
}
