/* test_unet.c - the reference UNet (docs/spec.md sec. 6): whole-network finite-difference
   gradient check, parameter count and tensor names of `small`, config
   validation, batch independence, backward accumulation; bd_model and
   checkpoints; conformance against PyTorch vectors (tests/ref/data). */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <stdlib.h>
#include <time.h>

static bd_context *new_ctx(void) {
    bd_context *ctx = NULL;
    bd_context_config cc = bd_context_config_init();
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return NULL;
    return ctx;
}

/* the gradcheck config: 8x8, C=2, ch=8, m=(1,2), attention at level 1 (and
   the middle), G=2, heads=2, K=2 */
static bd_unet_config tiny_config(void) {
    bd_unet_config c = bd_unet_config_init();
    c.in_ch = 2;
    c.image_size = 8;
    c.ch = 8;
    c.levels = 2;
    c.ch_mult[0] = 1; c.ch_mult[1] = 2; c.ch_mult[2] = 0;
    c.nres = 1;
    c.attn[0] = 0; c.attn[1] = 1; c.attn[2] = 0;
    c.groups = 2;
    c.heads = 2;
    c.branches = 2;
    return c;
}

/* every weight random (no zero-initialised tensors), GN weights around 1 */
static void randomise(bd_denoiser *d, bd_rng *rng, float scale) {
    int64_t i, j;
    for (i = 0; i < d->n_tensors; i++) {
        const bd_param_tensor *t = &d->tensors[i];
        float *p = d->params + t->offset;
        int is_gn_w = t->ndim == 1 && strstr(t->name, "norm") && strstr(t->name, ".weight");
        float s = t->ndim == 1 ? scale : scale / sqrtf((float)(t->numel / t->shape[0]));
        for (j = 0; j < t->numel; j++) p[j] = (is_gn_w ? 1.0f : 0.0f) + s * (float)bd_rng_normal1(rng);
    }
}

/* L = sum_i R_i out_i in double */
static double loss_of(bd_denoiser *d, float *out, const float *z, const float *t, int64_t n,
                      const float *R) {
    int64_t i, m = n * d->branches * bd_denoiser_sample_size(d);
    double L = 0.0;
    if (bd_denoiser_forward(d, out, z, t, n, 0) != BD_SUCCESS) return NAN;
    for (i = 0; i < m; i++) L += (double)R[i] * (double)out[i];
    return L;
}

/* 4th-order central difference of L in *x */
static double fd(bd_denoiser *d, float *x, float h, float *out, const float *z, const float *t,
                 int64_t n, const float *R) {
    float x0 = *x;
    double lp2, lp1, lm1, lm2;
    *x = x0 + 2 * h; lp2 = loss_of(d, out, z, t, n, R);
    *x = x0 + h;     lp1 = loss_of(d, out, z, t, n, R);
    *x = x0 - h;     lm1 = loss_of(d, out, z, t, n, R);
    *x = x0 - 2 * h; lm2 = loss_of(d, out, z, t, n, R);
    *x = x0;
    return (-lp2 + 8 * lp1 - 8 * lm1 + lm2) / (12.0 * (double)h);
}

static void gradcheck_config(bd_unet_config c, int per_tensor, const char *label) {
    bd_context *ctx = new_ctx();
    bd_rng rng = bd_rng_init(1234);
    bd_denoiser *d = NULL;
    int64_t n = 2, D, O, i, k, checked = 0, bad = 0, tensors_hit = 0;
    float *z, *dz, *out, *R, t[2] = {0.25f, 0.8f};
    double worst = 0.0, worst_abs = 0.0;
    const double atol = 2e-3, rtol = 1e-2;
    BDT_CHECK(ctx != NULL);
    BDT_CHECK(bd_unet_init(ctx, &c, &rng, &d) == BD_SUCCESS);
    if (!d) { bd_context_free(ctx); return; }
    randomise(d, &rng, 0.5f);
    D = bd_denoiser_sample_size(d);
    O = D * d->branches;
    z = (float *)malloc(sizeof(float) * (size_t)(n * D));
    dz = (float *)malloc(sizeof(float) * (size_t)(n * D));
    out = (float *)malloc(sizeof(float) * (size_t)(n * O));
    R = (float *)malloc(sizeof(float) * (size_t)(n * O));
    bd_rng_normal(&rng, z, n * D);
    bd_rng_normal(&rng, R, n * O);
    memset(dz, 0, sizeof(float) * (size_t)(n * D));
    bd_denoiser_zero_grad(d);
    BDT_CHECK(bd_denoiser_forward(d, out, z, t, n, 1) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_backward(d, dz, R, n) == BD_SUCCESS);
    /* inputs: 12 random entries of z */
    for (k = 0; k < 12; k++) {
        int64_t j = (int64_t)(bd_rng_uniform(&rng) * (double)(n * D));
        double g = fd(d, &z[j], 1e-2f, out, z, t, n, R), e = fabs(g - dz[j]);
        double r = e / (atol + rtol * fabs(g));
        if (r > worst) worst = r;
        if (e > worst_abs) worst_abs = e;
        if (r > 1.0) { bad++; printf("  dz[%lld]: fd %.6g analytic %.6g\n", (long long)j, g, (double)dz[j]); }
        checked++;
    }
    /* parameters: 3 random entries of every tensor */
    for (i = 0; i < d->n_tensors; i++) {
        const bd_param_tensor *pt = &d->tensors[i];
        for (k = 0; k < per_tensor; k++) {
            int64_t j = pt->offset + (int64_t)(bd_rng_uniform(&rng) * (double)pt->numel);
            double g = fd(d, &d->params[j], 1e-2f, out, z, t, n, R), e = fabs(g - d->grads[j]);
            double r = e / (atol + rtol * fabs(g));
            if (r > worst) worst = r;
            if (e > worst_abs) worst_abs = e;
            if (r > 1.0) { bad++; printf("  %s[%lld]: fd %.6g analytic %.6g\n", pt->name, (long long)(j - pt->offset), g, (double)d->grads[j]); }
            checked++;
        }
        tensors_hit++;
    }
    printf("  gradcheck %s: %lld entries (%lld tensors + z), worst |err|/(%.0e + %.0e|g|) = %.3f, worst |err| = %.3g\n",
           label, (long long)checked, (long long)tensors_hit, atol, rtol, worst, worst_abs);
    BDT_CHECKF(bad == 0, "%lld of %lld gradient entries off", (long long)bad, (long long)checked);
    BDT_CHECK(tensors_hit == d->n_tensors);
    free(z); free(dz); free(out); free(R);
    bd_denoiser_free(d);
    bd_context_free(ctx);
}



static void test_gradcheck(void) { gradcheck_config(tiny_config(), 3, "tiny"); }

/* another shape of the plan: 3 levels, nres 2, attention at levels 0 and 2
   (4 heads), C = 3, K = 1, 8x8 */
static void test_gradcheck_deep(void) {
    bd_unet_config c = tiny_config();
    c.in_ch = 3; c.image_size = 8; c.ch = 8; c.levels = 3;
    c.ch_mult[0] = 1; c.ch_mult[1] = 1; c.ch_mult[2] = 2;
    c.nres = 2; c.attn[0] = 1; c.attn[1] = 0; c.attn[2] = 1;
    c.groups = 4; c.heads = 4; c.branches = 1;
    gradcheck_config(c, 1, "deep");
}

/* one level: no down/up, middle block at full resolution, G = 1 */
static void test_gradcheck_flat(void) {
    bd_unet_config c = tiny_config();
    c.in_ch = 1; c.image_size = 6; c.ch = 4; c.levels = 1; c.ch_mult[0] = 2; c.ch_mult[1] = 0;
    c.nres = 1; c.attn[0] = 0; c.attn[1] = 0; c.groups = 1; c.heads = 1; c.branches = 3;
    gradcheck_config(c, 2, "flat");
}

static char tmp_path_buf[4][512];
/* a fresh temporary file name (slot 0..3) */
static const char *tmp_path(int slot, const char *tag) {
    const char *dir = getenv("TMPDIR");
    static unsigned long salt = 0;
    if (!salt) salt = (unsigned long)time(NULL) ^ ((unsigned long)clock() << 16);
    snprintf(tmp_path_buf[slot], sizeof tmp_path_buf[slot], "%s/bdense_test_unet_%lu_%s.safetensors",
             dir && *dir ? dir : "/tmp", salt, tag);
    return tmp_path_buf[slot];
}

static double rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0.0, den = 0.0;
    int64_t i;
    for (i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_small_count_and_names(void) {
    /* docs/spec.md sec. 6 names and PyTorch shapes of `small`, written out by hand from
       docs/spec.md sec. 6 (and identical to tools/bdense_torch.py's state_dict). */
    static const char *const expect[] = {
        "time_mlp.0.weight 128,32", "time_mlp.0.bias 128", "time_mlp.2.weight 128,128", "time_mlp.2.bias 128",
        "conv_in.weight 32,1,3,3", "conv_in.bias 32",
        "down.0.res.0.norm1.weight 32", "down.0.res.0.conv1.weight 32,32,3,3", "down.0.res.0.temb.weight 32,128",
        "down.0.res.0.norm2.bias 32", "down.0.res.0.conv2.weight 32,32,3,3", "down.0.down.weight 32,32,3,3",
        "down.1.res.0.norm1.weight 32", "down.1.res.0.conv1.weight 64,32,3,3", "down.1.res.0.skip.weight 64,32,1,1",
        "down.1.res.0.skip.bias 64", "down.1.down.weight 64,64,3,3", "down.2.res.0.conv1.weight 64,64,3,3",
        "down.2.attn.0.norm.weight 64", "down.2.attn.0.qkv.weight 192,64,1,1", "down.2.attn.0.qkv.bias 192",
        "down.2.attn.0.proj.weight 64,64,1,1", "mid.res1.conv1.weight 64,64,3,3", "mid.attn.qkv.weight 192,64,1,1",
        "mid.res2.conv2.bias 64", "up.2.res.0.norm1.weight 128", "up.2.res.0.conv1.weight 64,128,3,3",
        "up.2.res.0.skip.weight 64,128,1,1", "up.2.res.1.conv1.weight 64,128,3,3", "up.2.attn.1.proj.bias 64",
        "up.2.up.weight 64,64,3,3", "up.1.res.0.conv1.weight 64,128,3,3", "up.1.res.1.conv1.weight 64,96,3,3",
        "up.1.res.1.temb.bias 64", "up.1.up.bias 64", "up.0.res.0.conv1.weight 32,96,3,3",
        "up.0.res.0.skip.weight 32,96,1,1", "up.0.res.1.conv1.weight 32,64,3,3", "up.0.res.1.skip.weight 32,64,1,1",
        "norm_out.weight 32", "conv_out.weight 1,32,3,3", "conv_out.bias 1"};
    static const char *const absent[] = {"down.2.down.weight", "up.0.up.weight", "down.0.attn.0.norm.weight",
                                         "up.1.attn.0.qkv.weight", "down.0.res.0.skip.weight", "mid.res1.skip.weight",
                                         "down.2.res.0.skip.weight", "up.2.res.2.conv1.weight"};
    bd_context *ctx = new_ctx();
    bd_unet_config c = bd_unet_config_init();
    bd_rng rng = bd_rng_init(1);
    bd_denoiser *d = NULL;
    int64_t np = 0, act = 0, flops = 0, i, j, sum = 0;
    BDT_CHECK(bd_unet_config_stats(ctx, &c, &np, &act, &flops) == BD_SUCCESS);
    BDT_CHECK(bd_unet_init(ctx, &c, &rng, &d) == BD_SUCCESS);
    if (!d) { bd_context_free(ctx); return; }
    printf("  small: %lld parameters in %lld tensors, %lld activation floats/sample, %.1f MFLOP/forward\n",
           (long long)d->n_params, (long long)d->n_tensors, (long long)act, (double)flops / 1e6);
    BDT_CHECKF(d->n_params == 1112801, "%lld", (long long)d->n_params); /* = sum(p.numel()) in PyTorch */
    BDT_CHECK(np == d->n_params);
    BDT_CHECK(d->n_tensors == 166);
    BDT_CHECK(d->in_ch == 1 && d->height == 28 && d->width == 28 && d->branches == 1);
    for (i = 0; i < d->n_tensors; i++) {
        BDT_CHECK(d->tensors[i].offset == sum);
        sum += d->tensors[i].numel;
        for (j = 0; j < i; j++) BDT_CHECK(strcmp(d->tensors[i].name, d->tensors[j].name) != 0);
    }
    BDT_CHECK(sum == d->n_params);
    for (i = 0; i < (int64_t)(sizeof expect / sizeof expect[0]); i++) {
        char name[96], shape[64] = "";
        const char *sp = strchr(expect[i], ' ');
        const bd_param_tensor *t;
        size_t len = 0;
        memcpy(name, expect[i], (size_t)(sp - expect[i]));
        name[sp - expect[i]] = '\0';
        t = bd_denoiser_find_tensor(d, name);
        BDT_CHECKF(t != NULL, "missing %s", name);
        if (!t) continue;
        for (j = 0; j < t->ndim; j++) len += (size_t)snprintf(shape + len, sizeof shape - len, j ? ",%lld" : "%lld", (long long)t->shape[j]);
        BDT_CHECKF(strcmp(shape, sp + 1) == 0, "%s: shape %s, want %s", name, shape, sp + 1);
    }
    for (i = 0; i < (int64_t)(sizeof absent / sizeof absent[0]); i++)
        BDT_CHECKF(bd_denoiser_find_tensor(d, absent[i]) == NULL, "unexpected %s", absent[i]);
    /* init: GN weight 1 / bias 0, zero_module tensors zero, others within +-1/sqrt(fan_in) and not all 0 */
    for (i = 0; i < d->n_tensors; i++) {
        const bd_param_tensor *t = &d->tensors[i];
        const float *p = d->params + t->offset;
        int is_norm = strstr(t->name, "norm") != NULL, zero = strstr(t->name, "conv2.") || strstr(t->name, "proj.") || strstr(t->name, "conv_out.");
        double bound = 0.0, mx = 0.0;
        int ok = 1;
        for (j = 0; j < t->numel; j++) if (fabs(p[j]) > mx) mx = fabs(p[j]);
        if (is_norm) {
            float want = strstr(t->name, ".weight") ? 1.0f : 0.0f;
            for (j = 0; j < t->numel; j++) ok = ok && p[j] == want;
        } else if (zero) {
            ok = mx == 0.0;
        } else {
            const bd_param_tensor *w = strstr(t->name, ".bias") ? &d->tensors[i - 1] : t;
            bound = 1.0 / sqrt((double)(w->numel / w->shape[0]));
            ok = mx <= bound * (1.0 + 1e-6) && mx > 0.5 * bound;
        }
        BDT_CHECKF(ok, "init of %s (max %g, bound %g)", t->name, mx, bound);
    }
    bd_denoiser_free(d);
    bd_context_free(ctx);
}

static void test_config_validation(void) {
    bd_context *ctx = new_ctx();
    bd_unet_config c;
    bd_rng rng = bd_rng_init(1);
    bd_denoiser *d = (bd_denoiser *)&rng; /* must be reset to NULL on failure */
    char buf[64];
    c = bd_unet_config_init(); BDT_CHECK(bd_unet_config_validate(ctx, &c) == BD_SUCCESS);
    c = bd_unet_config_init(); c.groups = 7;
    BDT_CHECK(bd_unet_config_validate(ctx, &c) == BD_ERROR_CONFIG && strstr(bd_context_message(ctx), "divisible by groups"));
    c = bd_unet_config_init(); c.image_size = 30;
    BDT_CHECK(bd_unet_config_validate(ctx, &c) == BD_ERROR_CONFIG && strstr(bd_context_message(ctx), "2^(levels-1)"));
    c = bd_unet_config_init(); c.heads = 3;
    BDT_CHECK(bd_unet_config_validate(ctx, &c) == BD_ERROR_CONFIG && strstr(bd_context_message(ctx), "heads"));
    c = bd_unet_config_init(); c.ch = 31;
    BDT_CHECK(bd_unet_config_validate(ctx, &c) == BD_ERROR_CONFIG && strstr(bd_context_message(ctx), "even"));
    c = bd_unet_config_init(); c.levels = 0;
    BDT_CHECK(bd_unet_config_validate(ctx, &c) == BD_ERROR_CONFIG && strstr(bd_context_message(ctx), "levels"));
    c = bd_unet_config_init(); c.ch_mult[1] = 0;
    BDT_CHECK(bd_unet_config_validate(ctx, &c) == BD_ERROR_CONFIG && strstr(bd_context_message(ctx), "ch_mult[1]"));
    c = bd_unet_config_init(); c.attn[5] = 1;
    BDT_CHECK(bd_unet_config_validate(ctx, &c) == BD_ERROR_CONFIG && strstr(bd_context_message(ctx), "attention at level 5"));
    c = bd_unet_config_init(); c.branches = 0;
    BDT_CHECK(bd_unet_config_validate(ctx, &c) == BD_ERROR_CONFIG && strstr(bd_context_message(ctx), "branches"));
    c = bd_unet_config_init(); c.nres = 0;
    BDT_CHECK(bd_unet_config_validate(ctx, &c) == BD_ERROR_CONFIG);
    c = bd_unet_config_init(); c.in_ch = 0;
    BDT_CHECK(bd_unet_config_validate(ctx, &c) == BD_ERROR_CONFIG && strstr(bd_context_message(ctx), "in_ch"));
    BDT_CHECK(bd_unet_init(ctx, &c, &rng, &d) == BD_ERROR_CONFIG && d == NULL);
    /* sizes that overflow are refused before anything is allocated */
    c = bd_unet_config_init();
    c.image_size = 65536; c.levels = 1; c.attn[2] = 0; c.attn[0] = 1;
    BDT_CHECK(bd_unet_config_validate(ctx, &c) == BD_SUCCESS);
    BDT_CHECK(bd_unet_config_stats(ctx, &c, NULL, NULL, NULL) == BD_ERROR_OVERFLOW);
    BDT_CHECK(bd_unet_init(ctx, &c, &rng, &d) == BD_ERROR_OVERFLOW && d == NULL);
    c = tiny_config();
    BDT_CHECK(bd_unet_init(ctx, &c, &rng, &d) == BD_SUCCESS);
    if (d) {
        BDT_CHECK(bd_denoiser_reserve(d, (int64_t)1 << 50) == BD_ERROR_OVERFLOW && strstr(bd_context_message(ctx), "overflows"));
        BDT_CHECK(d->reserved_batch == 0);
        bd_denoiser_free(d);
        d = NULL;
    }
    /* metadata strings */
    c = bd_unet_config_init();
    BDT_CHECK(bd_unet_format_mult(&c, buf, sizeof buf) == 5 && strcmp(buf, "1,2,2") == 0);
    BDT_CHECK(bd_unet_format_attn(&c, buf, sizeof buf) == 1 && strcmp(buf, "2") == 0);
    BDT_CHECK(bd_unet_format_mult(&c, buf, 3) == 5 && strcmp(buf, "1,") == 0); /* truncated, terminated */
    BDT_CHECK(bd_unet_parse_mult(ctx, "1,2,4,8", &c) == BD_SUCCESS && c.levels == 4 && c.ch_mult[3] == 8);
    BDT_CHECK(bd_unet_parse_attn(ctx, "0,3", &c) == BD_SUCCESS && c.attn[0] && c.attn[3] && !c.attn[2]);
    BDT_CHECK(bd_unet_parse_attn(ctx, "", &c) == BD_SUCCESS && !c.attn[0] && !c.attn[3]);
    BDT_CHECK(bd_unet_parse_mult(ctx, "1, 2", &c) == BD_ERROR_CONFIG);
    BDT_CHECK(bd_unet_parse_mult(ctx, "", &c) == BD_ERROR_CONFIG);
    BDT_CHECK(bd_unet_parse_mult(ctx, "1,2,", &c) == BD_ERROR_CONFIG);
    BDT_CHECK(bd_unet_parse_mult(ctx, "1,1,1,1,1,1,1,1,1", &c) == BD_ERROR_CONFIG);
    BDT_CHECK(bd_unet_parse_attn(ctx, "1,1", &c) == BD_ERROR_CONFIG);
    BDT_CHECK(bd_unet_parse_attn(ctx, "9", &c) == BD_ERROR_CONFIG);
    bd_context_free(ctx);
}

/* batch independence (a batch of 3 = three batches of 1, with a reserve
   larger than the batch), determinism, backward accumulation, state errors */
static void test_batch_and_accumulate(void) {
    bd_context *ctx = new_ctx();
    bd_unet_config c = tiny_config();
    bd_rng rng = bd_rng_init(99);
    bd_denoiser *d = NULL;
    int64_t n = 3, D, O, i;
    float z[3 * 128], t[3] = {0.1f, 0.5f, 0.95f}, out[3 * 256], o1[256], R[3 * 256], dz[3 * 128], dz2[3 * 128];
    float *g1;
    double e = 0.0;
    BDT_CHECK(bd_unet_init(ctx, &c, &rng, &d) == BD_SUCCESS);
    if (!d) { bd_context_free(ctx); return; }
    randomise(d, &rng, 0.5f);
    D = bd_denoiser_sample_size(d);
    O = D * d->branches;
    BDT_CHECK(D == 128 && O == 256);
    bd_rng_normal(&rng, z, n * D);
    bd_rng_normal(&rng, R, n * O);
    BDT_CHECK(bd_denoiser_reserve(d, 5) == BD_SUCCESS && d->reserved_batch == 5);
    BDT_CHECK(bd_denoiser_forward(d, out, z, t, n, 0) == BD_SUCCESS);
    for (i = 0; i < n; i++) {
        BDT_CHECK(bd_denoiser_forward(d, o1, z + i * D, t + i, 1, 0) == BD_SUCCESS);
        e = fmax(e, rel_l2(o1, out + i * O, O));
    }
    BDT_CHECKF(e < 1e-6, "batch of 1 vs batch of 3: rel L2 %.3g", e);
    /* backward without a train forward */
    BDT_CHECK(bd_denoiser_backward(d, NULL, R, 1) == BD_ERROR_STATE);
    /* accumulation: two backward calls give twice the gradients */
    g1 = (float *)malloc(sizeof(float) * (size_t)d->n_params);
    bd_denoiser_zero_grad(d);
    memset(dz, 0, sizeof dz);
    BDT_CHECK(bd_denoiser_forward(d, out, z, t, n, 1) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_backward(d, dz, R, 2) == BD_ERROR_STATE); /* batch mismatch */
    BDT_CHECK(bd_denoiser_backward(d, dz, R, n) == BD_SUCCESS);
    memcpy(g1, d->grads, sizeof(float) * (size_t)d->n_params);
    memcpy(dz2, dz, sizeof dz);
    BDT_CHECK(bd_denoiser_backward(d, dz, R, n) == BD_SUCCESS);
    for (i = 0; i < d->n_params; i++) g1[i] *= 2.0f;
    for (i = 0; i < n * D; i++) dz2[i] *= 2.0f;
    e = fmax(rel_l2(d->grads, g1, d->n_params), rel_l2(dz, dz2, n * D));
    BDT_CHECKF(e < 1e-6, "second backward does not accumulate: rel L2 %.3g", e);
    /* output head is branch-major: channel k*C + c; with conv_out rows of
       branch 1 copied from branch 0 both branches agree */
    {
        const bd_param_tensor *w = bd_denoiser_find_tensor(d, "conv_out.weight");
        const bd_param_tensor *b = bd_denoiser_find_tensor(d, "conv_out.bias");
        int64_t half_w = w->numel / 2;
        memcpy(d->params + w->offset + half_w, d->params + w->offset, sizeof(float) * (size_t)half_w);
        memcpy(d->params + b->offset + 2, d->params + b->offset, sizeof(float) * 2);
        BDT_CHECK(bd_denoiser_forward(d, out, z, t, 1, 0) == BD_SUCCESS);
        BDT_CHECK(memcmp(out, out + D, sizeof(float) * (size_t)D) == 0);
    }
    free(g1);
    bd_denoiser_free(d);
    bd_context_free(ctx);
}

static void test_create_like_and_copy(void) {
    bd_context *ctx = new_ctx();
    bd_unet_config c = tiny_config(), c2;
    bd_rng rng = bd_rng_init(5);
    bd_denoiser *t = NULL, *s = NULL;
    float z[128], tt[1] = {0.4f}, ot[256], os[4 * 256];
    int64_t k;
    c.branches = 1;
    c.in_ch = 2;
    BDT_CHECK(bd_unet_init(ctx, &c, &rng, &t) == BD_SUCCESS);
    if (!t) { bd_context_free(ctx); return; }
    randomise(t, &rng, 0.5f);
    BDT_CHECK(bd_denoiser_create_like(t, 4, &rng, &s) == BD_SUCCESS);
    if (!s) { bd_denoiser_free(t); bd_context_free(ctx); return; }
    BDT_CHECK(s->branches == 4 && strcmp(s->vt->kind, "unet") == 0);
    BDT_CHECK(bd_unet_get_config(s, &c2) == BD_SUCCESS && c2.branches == 4 && c2.ch == c.ch);
    BDT_CHECK(bd_denoiser_find_tensor(s, "conv_out.weight")->shape[0] == 8);
    BDT_CHECK(bd_denoiser_copy_weights(s, t) == BD_SUCCESS);
    bd_rng_normal(&rng, z, 128);
    BDT_CHECK(bd_denoiser_forward(t, ot, z, tt, 1, 0) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_forward(s, os, z, tt, 1, 0) == BD_SUCCESS);
    for (k = 0; k < 4; k++) BDT_CHECKF(rel_l2(os + k * 128, ot, 128) < 1e-6, "branch %lld", (long long)k);
    bd_denoiser_free(s);
    bd_denoiser_free(t);
    bd_context_free(ctx);
}

/* conformance: PyTorch -> bdense (tiny checkpoint written by PyTorch) */
static void test_conformance_torch_tiny(void) {
    bd_context *ctx = new_ctx();
    bd_model *m = NULL;
    bd_safetensors *io = NULL;
    const bd_st_tensor *z, *t, *o;
    float *out;
    double e;
    BDT_CHECKF(bd_model_load(ctx, "tests/ref/data/unet_tiny.safetensors", &m) == BD_SUCCESS, "%s", bd_context_message(ctx));
    BDT_CHECK(bd_safetensors_load(ctx, "tests/ref/data/unet_tiny_io.safetensors", &io) == BD_SUCCESS);
    if (!m || !io) { bd_model_free(m); bd_safetensors_free(io); bd_context_free(ctx); return; }
    z = bd_safetensors_find(io, "z"); t = bd_safetensors_find(io, "t"); o = bd_safetensors_find(io, "out");
    BDT_CHECK(z && t && o);
    if (!z || !t || !o) { bd_model_free(m); bd_safetensors_free(io); bd_context_free(ctx); return; }
    BDT_CHECK(strcmp(m->arch, "unet") == 0 && m->cfg.levels == 2 && m->cfg.attn[0] && m->cfg.attn[1] &&
              m->cfg.heads == 2 && m->cfg.branches == 2 && m->param == BD_PARAM_V && m->steps == 0);
    BDT_CHECK(o->numel == t->numel * bd_denoiser_sample_size(m->net) * m->net->branches);
    out = (float *)malloc(sizeof(float) * (size_t)o->numel);
    BDT_CHECK(bd_denoiser_forward(m->net, out, z->data, t->data, t->numel, 0) == BD_SUCCESS);
    e = rel_l2(out, o->data, o->numel);
    {
        double max_abs = 0.0, ratio = bdt_close_ratio(out, o->data, (long)o->numel, 1e-5, 1e-4, &max_abs);
        printf("  torch -> bdense (tiny, %lld params, t = 0, 0.37, 1): rel L2 = %.3e, max |diff| = %.2e (first %.6f vs %.6f)\n",
               (long long)m->net->n_params, e, max_abs, (double)out[0], (double)o->data[0]);
        BDT_CHECKF(ratio <= 1.0, "max |diff| %.3g exceeds 1e-5 + 1e-4 |ref|", max_abs);
    }
    BDT_CHECKF(e <= 1e-5, "rel L2 %.3g", e);
    free(out);
    bd_safetensors_free(io);
    bd_model_free(m);
    bd_context_free(ctx);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 0x100000001B3ull; }
    return h;
}
/* the same deterministic weights as make_unet_refs.py formula_weights() */
static void formula_weights(bd_denoiser *d) {
    int64_t i, j;
    for (i = 0; i < d->n_tensors; i++) {
        const bd_param_tensor *t = &d->tensors[i];
        double ph = (double)(fnv1a(t->name) % 1000) / 1000.0 * 2.0 * 3.14159265358979323846;
        int gn_w = t->ndim == 1 && strstr(t->name, "norm") && strlen(t->name) > 7 && strcmp(t->name + strlen(t->name) - 7, ".weight") == 0;
        for (j = 0; j < t->numel; j++) {
            double v = sin(ph + 0.37 * (double)j);
            if (t->ndim > 1) v = v / sqrt((double)(t->numel / t->shape[0]));
            else if (gn_w) v = 1.0 + 0.1 * v;
            else v = 0.1 * v;
            d->params[t->offset + j] = (float)v;
        }
    }
}

/* conformance: PyTorch -> bdense on a config with formula weights */
static void formula_conformance(bd_unet_config c, const char *path, const char *label) {
    bd_context *ctx = new_ctx();
    bd_rng rng = bd_rng_init(1);
    bd_denoiser *d = NULL;
    bd_safetensors *io = NULL;
    const bd_st_tensor *z, *t, *o;
    float *out;
    double e;
    int64_t D;
    BDT_CHECK(bd_unet_init(ctx, &c, &rng, &d) == BD_SUCCESS);
    BDT_CHECKF(bd_safetensors_load(ctx, path, &io) == BD_SUCCESS, "%s", bd_context_message(ctx));
    if (!d || !io) { bd_denoiser_free(d); bd_safetensors_free(io); bd_context_free(ctx); return; }
    formula_weights(d);
    D = bd_denoiser_sample_size(d);
    z = bd_safetensors_find(io, "z"); t = bd_safetensors_find(io, "t"); o = bd_safetensors_find(io, "out");
    BDT_CHECK(z && t && o && z->numel == t->numel * D && o->numel == z->numel * d->branches);
    if (!z || !t || !o || o->numel != t->numel * D * d->branches) {
        bd_denoiser_free(d); bd_safetensors_free(io); bd_context_free(ctx); return;
    }
    out = (float *)malloc(sizeof(float) * (size_t)o->numel);
    BDT_CHECK(bd_denoiser_forward(d, out, z->data, t->data, t->numel, 0) == BD_SUCCESS);
    e = rel_l2(out, o->data, o->numel);
    printf("  torch -> bdense (%s, formula weights): rel L2 = %.3e\n", label, e);
    BDT_CHECKF(e <= 1e-5, "rel L2 %.3g", e);
    free(out);
    bd_safetensors_free(io);
    bd_denoiser_free(d);
    bd_context_free(ctx);
}

static void test_conformance_torch_small(void) {
    formula_conformance(bd_unet_config_init(), "tests/ref/data/unet_small_io.safetensors", "small, t = 0.05, 0.73");
}

static void test_conformance_torch_deep(void) {
    bd_unet_config c = tiny_config();
    c.in_ch = 3; c.image_size = 8; c.ch = 8; c.levels = 3;
    c.ch_mult[0] = 1; c.ch_mult[1] = 1; c.ch_mult[2] = 2;
    c.nres = 2; c.attn[0] = 1; c.attn[1] = 0; c.attn[2] = 1;
    c.groups = 4; c.heads = 4; c.branches = 1;
    formula_conformance(c, "tests/ref/data/unet_deep_io.safetensors", "deep: nres 2, 4 heads, attention at 0 and 2");
}

/* backward conformance: PyTorch autograd -> bdense on `small` (formula
   weights): dz and per-tensor [sum, L2, cos-weighted sum] of the parameter
   gradients of L = sum(dout * out) */
static void test_conformance_torch_small_grad(void) {
    bd_context *ctx = new_ctx();
    bd_unet_config c = bd_unet_config_init();
    bd_rng rng = bd_rng_init(1);
    bd_denoiser *d = NULL;
    bd_safetensors *io = NULL, *gr = NULL;
    const bd_st_tensor *z, *t, *dout, *dzr;
    float *out, *dz;
    double e, worst = 0.0;
    int64_t i, j, bad = 0;
    BDT_CHECK(bd_unet_init(ctx, &c, &rng, &d) == BD_SUCCESS);
    BDT_CHECK(bd_safetensors_load(ctx, "tests/ref/data/unet_small_io.safetensors", &io) == BD_SUCCESS);
    BDT_CHECK(bd_safetensors_load(ctx, "tests/ref/data/unet_small_grad.safetensors", &gr) == BD_SUCCESS);
    if (!d || !io || !gr) { bd_denoiser_free(d); bd_safetensors_free(io); bd_safetensors_free(gr); bd_context_free(ctx); return; }
    formula_weights(d);
    z = bd_safetensors_find(io, "z"); t = bd_safetensors_find(io, "t");
    dout = bd_safetensors_find(gr, "dout"); dzr = bd_safetensors_find(gr, "dz");
    BDT_CHECK(z && t && dout && dzr && dout->numel == t->numel * 784 && dzr->numel == z->numel);
    if (!z || !t || !dout || !dzr) { bd_denoiser_free(d); bd_safetensors_free(io); bd_safetensors_free(gr); bd_context_free(ctx); return; }
    out = (float *)malloc(sizeof(float) * (size_t)dout->numel);
    dz = (float *)calloc((size_t)z->numel, sizeof(float));
    bd_denoiser_zero_grad(d);
    BDT_CHECK(bd_denoiser_forward(d, out, z->data, t->data, t->numel, 1) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_backward(d, dz, dout->data, t->numel) == BD_SUCCESS);
    e = rel_l2(dz, dzr->data, z->numel);
    for (i = 0; i < d->n_tensors; i++) {
        const bd_param_tensor *pt = &d->tensors[i];
        char name[96];
        const bd_st_tensor *ref;
        double s = 0.0, l2 = 0.0, dot = 0.0, tol;
        snprintf(name, sizeof name, "g.%s", pt->name);
        ref = bd_safetensors_find(gr, name);
        BDT_CHECKF(ref && ref->numel == 3, "missing %s", name);
        if (!ref || ref->numel != 3) continue;
        for (j = 0; j < pt->numel; j++) {
            double g = d->grads[pt->offset + j];
            s += g; l2 += g * g; dot += g * cos(0.11 * (double)j);
        }
        l2 = sqrt(l2);
        tol = 1e-4 * (double)ref->data[1];
        {
            double r = fabs(l2 - ref->data[1]) / (tol + 1e-12);
            double r2 = fabs(s - ref->data[0]) / (tol * sqrt((double)pt->numel) + 1e-9);
            double r3 = fabs(dot - ref->data[2]) / (tol * sqrt((double)pt->numel) + 1e-9);
            double w = fmax(r, fmax(r2, r3));
            if (w > worst) worst = w;
            if (w > 1.0) {
                bad++;
                printf("  %s: bdense [%.6g %.6g %.6g] torch [%.6g %.6g %.6g]\n", pt->name, s, l2, dot,
                       (double)ref->data[0], (double)ref->data[1], (double)ref->data[2]);
            }
        }
    }
    printf("  torch -> bdense backward (small): dz rel L2 = %.3e; %lld parameter tensors, worst stat error / tolerance = %.3f\n",
           e, (long long)d->n_tensors, worst);
    BDT_CHECKF(e <= 1e-5, "dz rel L2 %.3g", e);
    BDT_CHECKF(bad == 0, "%lld tensors' gradients differ from PyTorch's", (long long)bad);
    free(out); free(dz);
    bd_safetensors_free(io);
    bd_safetensors_free(gr);
    bd_denoiser_free(d);
    bd_context_free(ctx);
}

/* the bdense-initialised tiny model (same config as unet_tiny) whose
   checkpoint + output make the bdense -> torch pair */
static bd_model *c_tiny_model(bd_context *ctx) {
    bd_unet_config c = tiny_config();
    bd_rng rng = bd_rng_init(2026);
    bd_model *m = NULL;
    int64_t i, j;
    c.image_size = 16;
    c.attn[0] = 1;
    if (bd_model_init_unet(ctx, &c, BD_PARAM_V, BD_SCHEDULE_COSINE, &rng, &m) != BD_SUCCESS) return NULL;
    /* bdense init, then the zero-initialised tensors (conv2, proj, conv_out)
       and GroupNorm made random so that every weight matters */
    for (i = 0; i < m->net->n_tensors; i++) {
        const bd_param_tensor *t = &m->net->tensors[i];
        float *p = m->net->params + t->offset;
        int all0 = 1;
        for (j = 0; j < t->numel; j++) all0 = all0 && p[j] == 0.0f;
        if (all0 || strstr(t->name, "norm"))
            for (j = 0; j < t->numel; j++) p[j] += (float)(0.2 * bd_rng_normal1(&rng));
    }
    return m;
}

/* conformance: bdense -> PyTorch.  The checkpoint and output of a
   bdense-initialised tiny model are compared with the committed pair
   (written by this test with BDENSE_WRITE_REFS=1, checked in PyTorch by
   make_unet_refs.py --check). */
static void test_conformance_c_vectors(void) {
    bd_context *ctx = new_ctx();
    bd_model *m = c_tiny_model(ctx), *ref = NULL;
    bd_rng rng = bd_rng_init(77);
    float z[3 * 512], t[3] = {0.0f, 0.61f, 1.0f}, out[3 * 1024];
    int write = getenv("BDENSE_WRITE_REFS") && getenv("BDENSE_WRITE_REFS")[0] == '1';
    BDT_CHECK(m != NULL);
    if (!m) { bd_context_free(ctx); return; }
    BDT_CHECK(bd_denoiser_sample_size(m->net) == 512 && m->net->branches == 2);
    bd_rng_normal(&rng, z, 3 * 512);
    BDT_CHECK(bd_denoiser_forward(m->net, out, z, t, 3, 0) == BD_SUCCESS);
    if (write) {
        bd_st_write_tensor w[3];
        memset(w, 0, sizeof w);
        w[0].name = "z"; w[0].data = z; w[0].ndim = 4; w[0].shape[0] = 3; w[0].shape[1] = 2; w[0].shape[2] = 16; w[0].shape[3] = 16;
        w[1].name = "t"; w[1].data = t; w[1].ndim = 1; w[1].shape[0] = 3;
        w[2].name = "out"; w[2].data = out; w[2].ndim = 4; w[2].shape[0] = 3; w[2].shape[1] = 4; w[2].shape[2] = 16; w[2].shape[3] = 16;
        BDT_CHECK(bd_model_save(ctx, m, "tests/ref/data/unet_tiny_c.safetensors", NULL) == BD_SUCCESS);
        BDT_CHECK(bd_safetensors_write(ctx, "tests/ref/data/unet_tiny_c_io.safetensors", w, 3, NULL, 0) == BD_SUCCESS);
        printf("  wrote tests/ref/data/unet_tiny_c*.safetensors\n");
    }
    /* the committed checkpoint holds exactly these weights, and the committed
       output is reproduced */
    BDT_CHECKF(bd_model_load(ctx, "tests/ref/data/unet_tiny_c.safetensors", &ref) == BD_SUCCESS, "%s", bd_context_message(ctx));
    if (ref) {
        bd_safetensors *io = NULL;
        BDT_CHECK(ref->net->n_params == m->net->n_params &&
                  memcmp(ref->net->params, m->net->params, sizeof(float) * (size_t)m->net->n_params) == 0);
        BDT_CHECK(bd_safetensors_load(ctx, "tests/ref/data/unet_tiny_c_io.safetensors", &io) == BD_SUCCESS);
        if (io) {
            const bd_st_tensor *o = bd_safetensors_find(io, "out"), *zz = bd_safetensors_find(io, "z");
            BDT_CHECK(o && zz && o->numel == 3 * 1024 && zz->numel == 3 * 512);
            if (o && zz && o->numel == 3 * 1024 && zz->numel == 3 * 512) {
                double e = rel_l2(out, o->data, o->numel);
                BDT_CHECK(memcmp(zz->data, z, sizeof z) == 0);
                printf("  bdense tiny vs committed bdense output: rel L2 = %.3e\n", e);
                BDT_CHECKF(e <= 1e-6, "rel L2 %.3g", e);
            }
            bd_safetensors_free(io);
        }
        bd_model_free(ref);
    }
    bd_model_free(m);
    bd_context_free(ctx);
}


static int same_config(const bd_unet_config *a, const bd_unet_config *b) {
    int64_t l;
    if (a->in_ch != b->in_ch || a->image_size != b->image_size || a->ch != b->ch || a->levels != b->levels ||
        a->nres != b->nres || a->groups != b->groups || a->heads != b->heads || a->branches != b->branches)
        return 0;
    for (l = 0; l < BD_UNET_MAX_LEVELS; l++)
        if ((l < a->levels && a->ch_mult[l] != b->ch_mult[l]) || a->attn[l] != b->attn[l]) return 0;
    return 1;
}

/* student with grid and EMA: save, load, bit-exact */
static void test_checkpoint_roundtrip(void) {
    bd_context *ctx = new_ctx();
    bd_model *m = c_tiny_model(ctx), *l = NULL;
    double grid[5] = {1.0, 0.73123456789012345, 0.3, 1.0 / 3.0 * 0.1, 0.0};
    const char *path = tmp_path(0, "rt");
    int64_t i;
    BDT_CHECK(m != NULL);
    if (!m) { bd_context_free(ctx); return; }
    BDT_CHECK(bd_model_set_grid(m, grid, 4) == BD_SUCCESS && m->steps == 4);
    BDT_CHECK(bd_model_enable_ema(m) == BD_SUCCESS);
    for (i = 0; i < m->net->n_params; i++) m->ema[i] = m->net->params[i] * 0.5f + 1e-3f * (float)i;
    m->param = BD_PARAM_X0;
    m->schedule = BD_SCHEDULE_LINEAR;
    BDT_CHECKF(bd_model_save(ctx, m, path, NULL) == BD_SUCCESS, "%s", bd_context_message(ctx));
    BDT_CHECKF(bd_model_load(ctx, path, &l) == BD_SUCCESS, "%s", bd_context_message(ctx));
    if (l) {
        BDT_CHECK(strcmp(l->arch, "unet") == 0 && same_config(&l->cfg, &m->cfg));
        BDT_CHECK(l->param == BD_PARAM_X0 && l->schedule == BD_SCHEDULE_LINEAR);
        BDT_CHECK(l->steps == 4 && l->grid && memcmp(l->grid, grid, sizeof grid) == 0);
        BDT_CHECK(l->ema == NULL && l->train_step == 0);
        /* the EMA weights are the model tensors */
        BDT_CHECK(l->net->n_params == m->net->n_params &&
                  memcmp(l->net->params, m->ema, sizeof(float) * (size_t)m->net->n_params) == 0);
        bd_model_free(l);
    }
    /* without EMA the network weights are written; teacher again */
    bd_free(ctx, m->ema);
    m->ema = NULL;
    BDT_CHECK(bd_model_set_grid(m, NULL, 0) == BD_SUCCESS && m->steps == 0 && m->grid == NULL);
    BDT_CHECK(bd_model_save(ctx, m, path, NULL) == BD_SUCCESS);
    l = NULL;
    BDT_CHECK(bd_model_load(ctx, path, &l) == BD_SUCCESS);
    if (l) {
        BDT_CHECK(l->steps == 0 && l->grid == NULL);
        BDT_CHECK(memcmp(l->net->params, m->net->params, sizeof(float) * (size_t)m->net->n_params) == 0);
        bd_model_free(l);
    }
    /* a student of it (the teacher has K = 2; the student K = 4 gets the
       teacher's head tiled twice), grid kept */
    {
        bd_model *st = NULL;
        bd_rng rng = bd_rng_init(8);
        float z[512], tt[1] = {0.3f}, ot[2 * 512], os[4 * 512];
        BDT_CHECK(bd_model_student_init(ctx, m, 3, grid, 4, &rng, &st) == BD_ERROR_SHAPE && st == NULL);
        BDT_CHECKF(bd_model_student_init(ctx, m, 4, grid, 4, &rng, &st) == BD_SUCCESS, "%s", bd_context_message(ctx));
        if (st) {
            BDT_CHECK(st->net->branches == 4 && st->cfg.branches == 4 && st->steps == 4 && st->grid[1] == grid[1]);
            BDT_CHECK(st->param == m->param && st->schedule == m->schedule && st->ema == NULL);
            bd_rng_normal(&rng, z, 512);
            BDT_CHECK(bd_denoiser_forward(m->net, ot, z, tt, 1, 0) == BD_SUCCESS);
            BDT_CHECK(bd_denoiser_forward(st->net, os, z, tt, 1, 0) == BD_SUCCESS);
            BDT_CHECK(rel_l2(os, ot, 1024) < 1e-6 && rel_l2(os + 1024, ot, 1024) < 1e-6);
            bd_model_free(st);
        }
    }
    /* bad grids */
    grid[2] = 0.8;
    BDT_CHECK(bd_model_set_grid(m, grid, 4) == BD_ERROR_CONFIG && strstr(bd_context_message(ctx), "decreasing"));
    grid[2] = 0.3; grid[4] = 0.01;
    BDT_CHECK(bd_model_set_grid(m, grid, 4) == BD_ERROR_CONFIG);
    remove(path);
    bd_model_free(m);
    bd_context_free(ctx);
}

/* MLP models save and load too */
static void test_checkpoint_mlp(void) {
    bd_context *ctx = new_ctx();
    bd_mlp_config mc = bd_mlp_config_init(2);
    bd_rng rng = bd_rng_init(3);
    bd_denoiser *net = NULL;
    bd_model *m = NULL, *l = NULL;
    const char *path = tmp_path(0, "mlp");
    mc.hidden = 16; mc.depth = 2; mc.branches = 3;
    BDT_CHECK(bd_mlp_create(ctx, &mc, &rng, &net) == BD_SUCCESS);
    BDT_CHECK(bd_model_init(ctx, net, BD_PARAM_EPS, BD_SCHEDULE_COSINE, &m) == BD_SUCCESS);
    if (!m) { bd_context_free(ctx); return; }
    BDT_CHECK(strcmp(m->arch, "mlp") == 0 && m->mlp.hidden == 16);
    BDT_CHECK(bd_model_save(ctx, m, path, NULL) == BD_SUCCESS);
    BDT_CHECKF(bd_model_load(ctx, path, &l) == BD_SUCCESS, "%s", bd_context_message(ctx));
    if (l) {
        BDT_CHECK(strcmp(l->arch, "mlp") == 0 && l->mlp.hidden == 16 && l->mlp.depth == 2 && l->mlp.branches == 3 &&
                  l->mlp.dim == 2 && l->mlp.temb_dim == mc.temb_dim && l->param == BD_PARAM_EPS);
        BDT_CHECK(l->net->n_params == m->net->n_params &&
                  memcmp(l->net->params, m->net->params, sizeof(float) * (size_t)m->net->n_params) == 0);
        bd_model_free(l);
    }
    remove(path);
    bd_model_free(m);
    bd_context_free(ctx);
}

/* training resumed from a checkpoint continues bit-exactly */
static void test_checkpoint_resume(void) {
    bd_context *ctx = new_ctx();
    bd_unet_config c = tiny_config();
    bd_rng rng = bd_rng_init(11);
    bd_model *m = NULL, *l = NULL;
    bd_trainer *tr = NULL, *tr2 = NULL;
    bd_trainer_config tc = bd_trainer_config_init();
    const char *path = tmp_path(0, "resume");
    float x[2 * 128];
    float *p_ref = NULL, *ema_ref = NULL, *m_ref = NULL;
    int64_t P, step_ref = 0, k;
    double loss;
    c.branches = 1;
    bd_rng_uniform_fill(&rng, x, 2 * 128, -1.0f, 1.0f);
    BDT_CHECK(bd_model_init_unet(ctx, &c, BD_PARAM_V, BD_SCHEDULE_COSINE, &rng, &m) == BD_SUCCESS);
    if (!m) { bd_context_free(ctx); return; }
    tc.adam.lr = 1e-3;
    tc.ema_decay = 0.9;
    tc.seed = 5;
    BDT_CHECKF(bd_trainer_init(ctx, m->net, &tc, 2, &tr) == BD_SUCCESS, "%s", bd_context_message(ctx));
    if (!tr) { bd_model_free(m); bd_context_free(ctx); return; }
    P = m->net->n_params;
    for (k = 0; k < 2; k++) BDT_CHECK(bd_trainer_step(tr, x, 2, &loss) == BD_SUCCESS);
    BDT_CHECKF(bd_model_save(ctx, m, path, tr) == BD_SUCCESS, "%s", bd_context_message(ctx));
    for (k = 0; k < 2; k++) BDT_CHECK(bd_trainer_step(tr, x, 2, &loss) == BD_SUCCESS);
    p_ref = (float *)malloc(sizeof(float) * (size_t)P);
    ema_ref = (float *)malloc(sizeof(float) * (size_t)P);
    m_ref = (float *)malloc(sizeof(float) * (size_t)P);
    memcpy(p_ref, m->net->params, sizeof(float) * (size_t)P);
    memcpy(ema_ref, tr->ema, sizeof(float) * (size_t)P);
    memcpy(m_ref, tr->adam.m, sizeof(float) * (size_t)P);
    step_ref = tr->adam.step;
    /* load: the EMA weights are the model tensors */
    BDT_CHECKF(bd_model_load(ctx, path, &l) == BD_SUCCESS, "%s", bd_context_message(ctx));
    if (l) {
        BDT_CHECK(l->train_step == 2);
        BDT_CHECK(bd_trainer_init(ctx, l->net, &tc, 2, &tr2) == BD_SUCCESS);
        if (tr2) {
            BDT_CHECKF(bd_model_resume(ctx, path, l, tr2) == BD_SUCCESS, "%s", bd_context_message(ctx));
            BDT_CHECK(tr2->adam.step == 2 && l->train_step == 2);
            for (k = 0; k < 2; k++) BDT_CHECK(bd_trainer_step(tr2, x, 2, &loss) == BD_SUCCESS);
            BDT_CHECK(tr2->adam.step == step_ref);
            BDT_CHECK(memcmp(l->net->params, p_ref, sizeof(float) * (size_t)P) == 0);
            BDT_CHECK(memcmp(tr2->ema, ema_ref, sizeof(float) * (size_t)P) == 0);
            BDT_CHECK(memcmp(tr2->adam.m, m_ref, sizeof(float) * (size_t)P) == 0);
            /* a trainer of another network is refused */
            BDT_CHECK(bd_model_resume(ctx, path, m, tr2) == BD_ERROR_INVALID_ARGUMENT);
            bd_trainer_free(tr2);
        }
        bd_model_free(l);
    }
    /* a file without optimiser state cannot be resumed */
    BDT_CHECK(bd_model_save(ctx, m, path, NULL) == BD_SUCCESS);
    BDT_CHECK(bd_model_resume(ctx, path, m, tr) == BD_ERROR_FORMAT && strstr(bd_context_message(ctx), "no optimiser state"));
    remove(path);
    free(p_ref); free(ema_ref); free(m_ref);
    bd_trainer_free(tr);
    bd_model_free(m);
    bd_context_free(ctx);
}

/* rewrite a checkpoint with one defect: drop a tensor, change a tensor's
   shape (same data), add a tensor, set or delete a metadata key */
typedef struct defect {
    const char *drop;
    const char *reshape;           /* tensor name: flatten to 1-D */
    const char *add;               /* extra tensor name (shape [4]) */
    const char *key, *value;       /* value NULL: delete key */
    bd_result want;
    const char *msg;               /* substring of the error message */
} defect;

static int write_defect(bd_context *ctx, const char *src, const char *dst, const defect *df) {
    bd_safetensors *st = NULL;
    bd_st_write_tensor *w;
    bd_st_kv kv[64];
    static const float extra[4] = {1, 2, 3, 4};
    int64_t i, n = 0, nk = 0;
    int j, have_key = 0;
    if (bd_safetensors_load(ctx, src, &st) != BD_SUCCESS) return 0;
    w = (bd_st_write_tensor *)calloc((size_t)st->n_tensors + 1, sizeof *w);
    for (i = 0; i < st->n_tensors; i++) {
        const bd_st_tensor *t = &st->tensors[i];
        if (df->drop && strcmp(t->name, df->drop) == 0) continue;
        w[n].name = t->name; w[n].data = t->data; w[n].ndim = t->ndim;
        for (j = 0; j < t->ndim; j++) w[n].shape[j] = t->shape[j];
        if (df->reshape && strcmp(t->name, df->reshape) == 0) { w[n].ndim = 1; w[n].shape[0] = t->numel; }
        n++;
    }
    if (df->add) { w[n].name = df->add; w[n].data = extra; w[n].ndim = 1; w[n].shape[0] = 4; n++; }
    for (i = 0; i < st->n_metadata && nk < 63; i++) {
        if (df->key && strcmp(st->metadata[i].key, df->key) == 0) {
            have_key = 1;
            if (!df->value) continue;
            kv[nk].key = df->key; kv[nk].value = df->value; nk++;
            continue;
        }
        kv[nk++] = st->metadata[i];
    }
    if (df->key && df->value && !have_key) { kv[nk].key = df->key; kv[nk].value = df->value; nk++; }
    j = bd_safetensors_write(ctx, dst, w, n, kv, nk) == BD_SUCCESS;
    free(w);
    bd_safetensors_free(st);
    return j;
}

static void test_checkpoint_errors(void) {
    static const defect defects[] = {
        {"conv_out.bias", NULL, NULL, NULL, NULL, BD_ERROR_FORMAT, "conv_out.bias is missing"},
        {NULL, "conv_in.weight", NULL, NULL, NULL, BD_ERROR_SHAPE, "conv_in.weight has shape [144], the config needs [8,2,3,3]"},
        {NULL, NULL, "down.0.extra.weight", NULL, NULL, BD_ERROR_FORMAT, "unexpected tensor down.0.extra.weight"},
        {NULL, "optim.m.conv_in.weight", NULL, NULL, NULL, BD_ERROR_SHAPE, "optim.m.conv_in.weight has shape [144]"},
        {NULL, NULL, "optim.q.conv_in.bias", NULL, NULL, BD_ERROR_FORMAT, "unexpected tensor optim.q.conv_in.bias"},
        {"optim.v.conv_in.bias", NULL, NULL, NULL, NULL, BD_ERROR_FORMAT, "optim.v.* tensors present"},
        {NULL, NULL, NULL, "ch", "8x", BD_ERROR_FORMAT, "ch = \"8x\" is not a non-negative integer"},
        {NULL, NULL, NULL, "ch", "-8", BD_ERROR_FORMAT, "not a non-negative integer"},
        {NULL, NULL, NULL, "ch", "", BD_ERROR_FORMAT, "not a non-negative integer"},
        {NULL, NULL, NULL, "groups", NULL, BD_ERROR_FORMAT, "\"groups\" is missing"},
        {NULL, NULL, NULL, "groups", "3", BD_ERROR_CONFIG, "divisible by groups"},
        {NULL, NULL, NULL, "ch", "16", BD_ERROR_SHAPE, "the config needs"},
        {NULL, NULL, NULL, "attn_levels", "0", BD_ERROR_FORMAT, "unexpected tensor down.1.attn.0."},
        {NULL, NULL, NULL, "attn_levels", "", BD_ERROR_FORMAT, "unexpected tensor"},
        {NULL, NULL, NULL, "attn_levels", "0;1", BD_ERROR_FORMAT, "attn_levels \"0;1\" is not"},
        {NULL, NULL, NULL, "ch_mult", "1,2,2", BD_ERROR_FORMAT, "is missing"},
        {NULL, NULL, NULL, "ch_mult", "1,2,2,2,2,2", BD_ERROR_CONFIG, "2^(levels-1) = 32"},
        {NULL, NULL, NULL, "param", "vv", BD_ERROR_FORMAT, "param = \"vv\""},
        {NULL, NULL, NULL, "schedule", NULL, BD_ERROR_FORMAT, "schedule = \"(missing)\""},
        {NULL, NULL, NULL, "bdense.version", NULL, BD_ERROR_FORMAT, "bdense.version"},
        {NULL, NULL, NULL, "arch", "resnet", BD_ERROR_UNSUPPORTED, "arch \"resnet\""},
        {NULL, NULL, NULL, "steps", "4", BD_ERROR_FORMAT, "both \"steps\""},
        {NULL, NULL, NULL, "grid", "1,0.5,0", BD_ERROR_FORMAT, "both \"steps\""},
        {NULL, NULL, NULL, "optim.step", "x", BD_ERROR_FORMAT, "optim.step"},
    };
    static const char *const bad_grids[][2] = {
        {"2", "1,0.5,x"}, {"2", "1,0.5"}, {"2", "1,0.5,0,0"}, {"2", "1,0.6,0.7"}, {"2", "1, 0.5,0"},
        {"2", "0.9,0.5,0"}, {"2", "1,0.5,0,"}, {"0", "1,0"}};
    bd_context *ctx = new_ctx();
    bd_model *m = c_tiny_model(ctx), *l = NULL;
    bd_adam adam;
    bd_adam_config ac = bd_adam_config_init();
    const char *good = tmp_path(0, "good"), *bad = tmp_path(1, "bad");
    size_t i;
    BDT_CHECK(m != NULL);
    if (!m) { bd_context_free(ctx); return; }
    BDT_CHECK(bd_adam_init(ctx, &ac, m->net->n_params, &adam) == BD_SUCCESS);
    BDT_CHECK(bd_model_save_state(ctx, m, good, NULL, NULL, &adam, NULL, NULL) == BD_SUCCESS);
    for (i = 0; i < sizeof defects / sizeof defects[0]; i++) {
        const defect *df = &defects[i];
        bd_result r;
        l = NULL;
        BDT_CHECK(write_defect(ctx, good, bad, df));
        r = bd_model_load(ctx, bad, &l);
        BDT_CHECKF(r == df->want && l == NULL && strstr(bd_context_message(ctx), df->msg),
                   "defect %d: got %s \"%s\", want %s \"%s\"", (int)i, bd_result_string(r),
                   bd_context_message(ctx), bd_result_string(df->want), df->msg);
        bd_model_free(l);
    }
    for (i = 0; i < sizeof bad_grids / sizeof bad_grids[0]; i++) {
        defect df;
        bd_result r;
        memset(&df, 0, sizeof df);
        df.key = "steps"; df.value = bad_grids[i][0];
        l = NULL;
        BDT_CHECK(write_defect(ctx, good, tmp_path(2, "bad2"), &df));
        df.key = "grid"; df.value = bad_grids[i][1];
        BDT_CHECK(write_defect(ctx, tmp_path(2, "bad2"), bad, &df));
        r = bd_model_load(ctx, bad, &l);
        BDT_CHECKF(r == BD_ERROR_FORMAT && l == NULL, "grid %s/%s: %s %s", bad_grids[i][0], bad_grids[i][1],
                   bd_result_string(r), bd_context_message(ctx));
        bd_model_free(l);
    }
    {   /* a good student grid for contrast */
        defect df;
        memset(&df, 0, sizeof df);
        df.key = "steps"; df.value = "2";
        BDT_CHECK(write_defect(ctx, good, tmp_path(2, "bad2"), &df));
        df.key = "grid"; df.value = "1,0.25,0";
        BDT_CHECK(write_defect(ctx, tmp_path(2, "bad2"), bad, &df));
        l = NULL;
        BDT_CHECKF(bd_model_load(ctx, bad, &l) == BD_SUCCESS, "%s", bd_context_message(ctx));
        BDT_CHECK(l && l->steps == 2 && l->grid[1] == 0.25);
        bd_model_free(l);
    }
    {   /* malformed rng state is refused by load_state; a truncated file by the reader */
        defect df;
        bd_rng r1 = bd_rng_init(1);
        int found = -1;
        FILE *f;
        memset(&df, 0, sizeof df);
        df.key = "train.rng"; df.value = "0123,4,5";
        BDT_CHECK(write_defect(ctx, good, bad, &df));
        BDT_CHECK(bd_model_load_state(ctx, bad, m, NULL, NULL, &adam, &r1, NULL, &found) == BD_ERROR_FORMAT &&
                  strstr(bd_context_message(ctx), "train.rng") && found == 0);
        BDT_CHECK(bd_model_load_state(ctx, good, m, NULL, NULL, &adam, &r1, NULL, &found) == BD_SUCCESS && found == 1);
        f = fopen(good, "r+b");
        BDT_CHECK(f != NULL);
        if (f) {
            char buf[256];
            size_t got = fread(buf, 1, sizeof buf, f);
            fclose(f);
            f = fopen(bad, "wb");
            if (f) { fwrite(buf, 1, got, f); fclose(f); }
            l = NULL;
            BDT_CHECK(bd_model_load(ctx, bad, &l) != BD_SUCCESS && l == NULL);
        }
    }
    l = NULL;
    BDT_CHECK(bd_model_load(ctx, "/nonexistent/dir/x.safetensors", &l) == BD_ERROR_IO && l == NULL);
    remove(good);
    remove(bad);
    remove(tmp_path(2, "bad2"));
    bd_adam_free(&adam);
    bd_model_free(m);
    bd_context_free(ctx);
}


/* an allocator that fails after `budget` allocations and counts live blocks */
typedef struct fail_alloc { long budget, live, calls; } fail_alloc;
static void *fa_alloc(size_t size, void *ud) {
    fail_alloc *f = (fail_alloc *)ud;
    void *p;
    f->calls++;
    if (f->budget-- <= 0) return NULL;
    p = malloc(size);
    if (p) f->live++;
    return p;
}
static void fa_free(void *p, void *ud) {
    fail_alloc *f = (fail_alloc *)ud;
    if (p) { f->live--; free(p); }
}

/* every allocation point of init, reserve, save, load and resume fails
   cleanly (an error code, no leak, no crash) */
static void test_allocation_failures(void) {
    const char *path = tmp_path(3, "alloc");
    bd_context *ctx0 = new_ctx();
    bd_model *m0 = c_tiny_model(ctx0);
    long k, points = 0, leaks = 0, wrong = 0;
    int stage;
    BDT_CHECK(m0 && bd_model_save(ctx0, m0, path, NULL) == BD_SUCCESS);
    for (stage = 0; stage < 2; stage++) {
        for (k = 0; k < 200; k++) {
            fail_alloc fa = {0, 0, 0};
            bd_context_config cc = bd_context_config_init();
            bd_context *ctx = NULL;
            bd_model *m = NULL;
            bd_result r;
            cc.allocator.alloc = fa_alloc;
            cc.allocator.free = fa_free;
            cc.allocator.user_data = &fa;
            fa.budget = 1000;
            if (bd_context_init(&cc, &ctx) != BD_SUCCESS) break;
            fa.budget = k;
            if (stage == 0) {
                bd_unet_config c = tiny_config();
                bd_rng rng = bd_rng_init(1);
                r = bd_model_init_unet(ctx, &c, BD_PARAM_V, BD_SCHEDULE_COSINE, &rng, &m);
                if (r == BD_SUCCESS) {
                    float z[128] = {0}, t[1] = {0.5f}, o[256];
                    r = bd_denoiser_forward(m->net, o, z, t, 1, 1);
                }
            } else {
                r = bd_model_load(ctx, path, &m);
                if (r == BD_SUCCESS) r = bd_model_save(ctx, m, path, NULL);
            }
            if (r != BD_SUCCESS && r != BD_ERROR_OUT_OF_MEMORY) wrong++;
            bd_model_free(m);
            if (fa.live != 1) leaks++; /* the context itself */
            bd_context_free(ctx);
            points++;
            if (r == BD_SUCCESS) break;
        }
    }
    printf("  %ld allocation-failure points: %ld leaks, %ld wrong codes\n", points, leaks, wrong);
    BDT_CHECK(leaks == 0 && wrong == 0 && points > 10);
    remove(path);
    bd_model_free(m0);
    bd_context_free(ctx0);
}

/* after reserve, forward and backward never touch the allocator */
static void test_no_alloc_in_steps(void) {
    fail_alloc fa = {1000000, 0, 0};
    bd_context_config cc = bd_context_config_init();
    bd_context *ctx = NULL;
    bd_unet_config c = tiny_config();
    bd_rng rng = bd_rng_init(4);
    bd_denoiser *d = NULL;
    float z[2 * 128], t[2] = {0.3f, 0.6f}, out[2 * 256], dz[2 * 128];
    long before;
    int k;
    cc.allocator.alloc = fa_alloc;
    cc.allocator.free = fa_free;
    cc.allocator.user_data = &fa;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    BDT_CHECK(bd_unet_init(ctx, &c, &rng, &d) == BD_SUCCESS);
    if (!d) { bd_context_free(ctx); return; }
    BDT_CHECK(bd_denoiser_reserve(d, 2) == BD_SUCCESS);
    bd_rng_normal(&rng, z, 2 * 128);
    memset(dz, 0, sizeof dz);
    before = fa.calls;
    for (k = 0; k < 3; k++) {
        BDT_CHECK(bd_denoiser_forward(d, out, z, t, 2 - (k & 1), 1) == BD_SUCCESS);
        BDT_CHECK(bd_denoiser_backward(d, dz, out, 2 - (k & 1)) == BD_SUCCESS);
        BDT_CHECK(bd_denoiser_forward(d, out, z, t, 2, 0) == BD_SUCCESS);
    }
    BDT_CHECKF(fa.calls == before, "%ld allocations during forward/backward", fa.calls - before);
    bd_denoiser_free(d);
    BDT_CHECK(fa.live == 1);
    bd_context_free(ctx);
}

/* docs/unet.md "Quick use": the snippet below is compiled here, and its
   text must match the docs (comments and whitespace runs ignored) */
#define DOC_SNIPPET(...)                                                        \
    static int doc_snippet(void) { __VA_ARGS__ return 0; }                      \
    static const char *const doc_snippet_text = #__VA_ARGS__;
DOC_SNIPPET(
bd_context *ctx;  bd_context_config cc = bd_context_config_init();
bd_rng rng = bd_rng_init(42);
bd_model *m = NULL;
bd_unet_config cfg = bd_unet_config_init();
float z[2 * 28 * 28], t[2] = {0.25f, 0.75f}, out[2 * 28 * 28];
if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;
if (bd_model_init_unet(ctx, &cfg, BD_PARAM_V, BD_SCHEDULE_COSINE, &rng, &m) != BD_SUCCESS ||
    bd_denoiser_reserve(m->net, 2) != BD_SUCCESS) {
    fprintf(stderr, "%s\n", bd_context_message(ctx));
    bd_context_free(ctx);
    return 1;
}
bd_rng_normal(&rng, z, 2 * 28 * 28);
bd_denoiser_forward(m->net, out, z, t, 2, 0);
bd_model_free(m);
bd_context_free(ctx);
)

/* remove comments, collapse whitespace runs to one space, trim */
static void normalise(const char *in, size_t n, char *out, size_t cap) {
    size_t i = 0, o = 0;
    int space = 0;
    while (i < n && o + 2 < cap) {
        if (in[i] == '/' && i + 1 < n && in[i + 1] == '*') {
            const char *e = strstr(in + i + 2, "*/");
            i = e ? (size_t)(e - in) + 2 : n;
            space = 1;
            continue;
        }
        if (in[i] == ' ' || in[i] == '\n' || in[i] == '\t') { space = 1; i++; continue; }
        if (space && o > 0) out[o++] = ' ';
        space = 0;
        out[o++] = in[i++];
    }
    out[o] = '\0';
}

static void test_doc_snippet(void) {
    FILE *f = fopen("docs/unet.md", "rb");
    static char doc[65536], a[8192], b[8192];
    size_t n = 0;
    const char *s, *e;
    BDT_CHECK(doc_snippet() == 0);
    BDT_CHECK(f != NULL);
    if (!f) return;
    n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    s = strstr(doc, "## 0. Quick use");
    s = s ? strstr(s, "```c\n") : NULL;
    e = s ? strstr(s + 5, "```") : NULL;
    BDT_CHECK(s && e);
    if (!s || !e) return;
    normalise(s + 5, (size_t)(e - s - 5), a, sizeof a);
    normalise(doc_snippet_text, strlen(doc_snippet_text), b, sizeof b);
    BDT_CHECKF(strcmp(a, b) == 0, "docs/unet.md snippet differs from the compiled one:\n%s\n%s", a, b);
}

int main(void) {
    BDT_RUN(test_small_count_and_names);
    BDT_RUN(test_config_validation);
    BDT_RUN(test_gradcheck);
    BDT_RUN(test_gradcheck_deep);
    BDT_RUN(test_gradcheck_flat);
    BDT_RUN(test_batch_and_accumulate);
    BDT_RUN(test_create_like_and_copy);
    BDT_RUN(test_conformance_torch_tiny);
    BDT_RUN(test_conformance_torch_small);
    BDT_RUN(test_conformance_torch_deep);
    BDT_RUN(test_conformance_torch_small_grad);
    BDT_RUN(test_conformance_c_vectors);
    BDT_RUN(test_checkpoint_roundtrip);
    BDT_RUN(test_checkpoint_mlp);
    BDT_RUN(test_checkpoint_resume);
    BDT_RUN(test_checkpoint_errors);
    BDT_RUN(test_allocation_failures);
    BDT_RUN(test_no_alloc_in_steps);
    BDT_RUN(test_doc_snippet);
    return BDT_SUMMARY("test_unet");
}
