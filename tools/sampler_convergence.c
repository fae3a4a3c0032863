/* Prints the error of every deterministic sampler against the closed-form
   probability-flow ODE solution for Gaussian data N(mu, 0.5^2 I) (D = 4,
   64 samples, exact analytic denoiser), for S = 4..256 steps, on every
   schedule and grid, with the empirical order log2(err(S)/err(2S)).
   Build: cc -std=c99 -O2 -I. -o build/sampler_convergence tools/sampler_convergence.c -lm */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include <stdio.h>

enum { N = 64, D = 4 };

int main(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    float mu[D] = {0.3f, -0.5f, 0.8f, 0.0f};
    const double sd = 0.5;
    bd_sampler_kind kinds[4] = {BD_SAMPLER_DDIM, BD_SAMPLER_EULER, BD_SAMPLER_HEUN, BD_SAMPLER_DPMPP_2M};
    int sk, gk, ki;
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;
    for (sk = 0; sk < 2; sk++)
        for (gk = 0; gk < 3; gk++) {
            bd_analytic_config ac = bd_analytic_config_init(D, mu, 1, sd);
            bd_denoiser *den = NULL;
            bd_sampler *smp = NULL;
            bd_schedule s;
            float x0[N * D], ref[N * D], x[N * D];
            double a1, s1;
            int j;
            ac.schedule = (bd_schedule_kind)sk;
            if (bd_analytic_create(ctx, &ac, &den) || bd_sampler_init(ctx, den, N, &smp)) return 1;
            bd_schedule_init(&s, ac.schedule);
            bd_noise_fill(x0, N * D, 7);
            bd_schedule_alpha_sigma(&s, 1.0, &a1, &s1);
            for (j = 0; j < N * D; j++) {
                double m = mu[j % D];
                ref[j] = (float)(m + sd * (x0[j] - a1 * m) / sqrt(a1 * a1 * sd * sd + s1 * s1));
            }
            printf("\n%s schedule, %s grid: max |x - x_exact| (order)\n", bd_schedule_name(ac.schedule),
                   bd_grid_name((bd_grid_kind)gk));
            for (ki = 0; ki < 4; ki++) {
                double prev = 0.0;
                int S;
                printf("  %-8s", bd_sampler_name(kinds[ki]));
                for (S = 4; S <= 256; S *= 2) {
                    bd_sampler_config c = bd_sampler_config_init(kinds[ki], S);
                    double e = 0.0;
                    c.schedule = ac.schedule;
                    c.grid = (bd_grid_kind)gk;
                    memcpy(x, x0, sizeof x);
                    if (bd_sampler_run(smp, &c, x, N, NULL, NULL) != BD_SUCCESS) {
                        printf("error: %s\n", bd_context_message(ctx));
                        return 1;
                    }
                    for (j = 0; j < N * D; j++) {
                        double d = fabs((double)x[j] - (double)ref[j]);
                        if (d > e) e = d;
                    }
                    if (prev > 0.0) printf(" %3d:%.1e(%4.2f)", S, e, log(prev / e) / log(2.0));
                    else printf(" %3d:%.1e(    )", S, e);
                    prev = e;
                }
                printf("\n");
            }
            bd_sampler_free(smp);
            bd_denoiser_free(den);
        }
    bd_context_free(ctx);
    return 0;
}
