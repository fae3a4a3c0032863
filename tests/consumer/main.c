/* A downstream program that uses an *installed* bdense (found through CMake
   or pkg-config; see run.sh).  It samples a two-point mixture with the
   exact (analytic) denoiser and checks that every sample lands on a point.
   Exit status 0 = the installed library works. */
#include <math.h>
#include <stdio.h>
#include <bdense.h>

int main(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    const float points[4] = {-0.5f, 0.5f, 0.5f, -0.5f}; /* two 2-D points */
    bd_analytic_config ac = bd_analytic_config_init(2, points, 2, 0.0);
    bd_denoiser *model = NULL;
    bd_sampler *sampler = NULL;
    bd_sampler_config sc = bd_sampler_config_init(BD_SAMPLER_DDIM, 16);
    float x[8 * 2];
    int64_t i, nfe = 0;
    int bad = 0;
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;
    if (bd_analytic_create(ctx, &ac, &model) != BD_SUCCESS ||
        bd_sampler_init(ctx, model, 8, &sampler) != BD_SUCCESS) {
        fprintf(stderr, "consumer: %s\n", bd_context_message(ctx));
        return 1;
    }
    bd_noise_fill(x, 8 * 2, 7);
    if (bd_sampler_run(sampler, &sc, x, 8, NULL, &nfe) != BD_SUCCESS) {
        fprintf(stderr, "consumer: %s\n", bd_context_message(ctx));
        return 1;
    }
    for (i = 0; i < 8; i++) {
        double d0 = hypot(x[2 * i] - points[0], x[2 * i + 1] - points[1]);
        double d1 = hypot(x[2 * i] - points[2], x[2 * i + 1] - points[3]);
        if ((d0 < d1 ? d0 : d1) > 1e-2) bad++;
    }
    printf("consumer: bdense %s (CBLAS %s, OpenMP %s), %d/8 samples on a mixture point "
           "after %lld NFE\n",
           BDENSE_VERSION_STRING,
#ifdef BDENSE_USE_CBLAS
           "on",
#else
           "off",
#endif
#ifdef _OPENMP
           "on",
#else
           "off",
#endif
           8 - bad, (long long)nfe);
    bd_sampler_free(sampler);
    bd_denoiser_free(model);
    bd_context_free(ctx);
    return bad ? 1 : 0;
}
