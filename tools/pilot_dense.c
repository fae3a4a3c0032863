/* pilot_dense.c - a small, fast pilot of where dense supervision pays:
   TD students (MLP, 2-D) of the exact 8-component Gaussian-mixture teacher
   (bd_analytic: no teacher training, no teacher error), sparse K = 1 vs
   K = 4 with uniform / adaptive / agree weights and dense targets from the
   student's state or from the trajectory, NFE 1 and 2, several seeds.
   Score: trajectory MSE of the EMA student against the teacher's solve on
   its grid (bd_distill_eval, 4000 samples), mean ± std over seeds and the
   paired difference to sparse.  A pilot on toy data, not the issue's
   converged image experiment.
     cc -O2 -std=c99 -I. tools/pilot_dense.c -o build/pilot_dense -lm && build/pilot_dense [steps] [seeds] */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define M 8
typedef struct cfg {
    const char *name;
    int64_t K;
    bd_distill_weights w;
    bd_distill_dense_targets dt;
} cfg;

static double run(bd_context *ctx, bd_denoiser *teacher, const cfg *c, int64_t N, int64_t steps, uint64_t seed) {
    bd_mlp_config mc = bd_mlp_config_init(2);
    bd_rng r = bd_rng_init(100 + seed);
    bd_denoiser *st = NULL;
    bd_distill *d = NULL;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_TD, c->K, N);
    double mse = -1;
    int64_t s;
    mc.hidden = 64;
    mc.depth = 3;
    mc.branches = c->K;
    dc.teacher_substeps = 4;
    dc.weights = c->w;
    dc.dense_targets = c->dt;
    dc.adam.lr = 2e-3;
    dc.ema_decay = 0.995;
    dc.seed = seed;
    if (bd_mlp_create(ctx, &mc, &r, &st) != BD_SUCCESS || bd_distill_init(ctx, &dc, teacher, st, 64, &d) != BD_SUCCESS) {
        fprintf(stderr, "init: %s\n", bd_context_message(ctx));
        exit(1);
    }
    for (s = 0; s < steps; s++)
        if (bd_distill_step(d, NULL, 64, NULL, NULL) != BD_SUCCESS) {
            fprintf(stderr, "step: %s\n", bd_context_message(ctx));
            exit(1);
        }
    if (bd_distill_eval(d, 4000, 999, 1, &mse, NULL, NULL) != BD_SUCCESS) exit(1);
    bd_distill_free(d);
    bd_denoiser_free(st);
    return mse;
}

int main(int argc, char **argv) {
    const cfg cfgs[] = {
        {"sparse K=1", 1, BD_WEIGHTS_UNIFORM, BD_DENSE_FROM_STUDENT},
        {"K=4 uniform, targets from trajectory", 4, BD_WEIGHTS_UNIFORM, BD_DENSE_FROM_TRAJECTORY},
        {"K=4 uniform, targets from student", 4, BD_WEIGHTS_UNIFORM, BD_DENSE_FROM_STUDENT},
        {"K=4 adaptive, from student", 4, BD_WEIGHTS_ADAPTIVE, BD_DENSE_FROM_STUDENT},
        {"K=4 agree, from student", 4, BD_WEIGHTS_AGREE, BD_DENSE_FROM_STUDENT},
        {"K=4 agree, from trajectory", 4, BD_WEIGHTS_AGREE, BD_DENSE_FROM_TRAJECTORY},
    };
    const int nc = (int)(sizeof cfgs / sizeof cfgs[0]);
    int64_t steps = argc > 1 ? atoll(argv[1]) : 600, seeds = argc > 2 ? atoll(argv[2]) : 3, N;
    float pts[2 * M];
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    bd_denoiser *teacher;
    int m, i;
    for (m = 0; m < M; m++) {
        pts[2 * m] = (float)(0.8 * cos(2.0 * BD__PI * m / M));
        pts[2 * m + 1] = (float)(0.8 * sin(2.0 * BD__PI * m / M));
    }
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;
    {
        bd_analytic_config ac = bd_analytic_config_init(2, pts, M, 0.05);
        if (bd_analytic_create(ctx, &ac, &teacher) != BD_SUCCESS) return 1;
    }
    printf("pilot: TD, exact 2-D GMM teacher (8 modes, std 0.05), MLP 64x3 students, Kt 4, %lld steps of batch 64,\n"
           "lr 2e-3, EMA 0.995, %lld seeds; trajectory MSE x1e3 of 4000 EMA samples (mean ± std; paired diff to sparse)\n\n",
           (long long)steps, (long long)seeds);
    for (N = 1; N <= 2; N++) {
        double *v = (double *)malloc(sizeof(double) * (size_t)(nc * seeds));
        int64_t sd;
        printf("| NFE %lld | MSE x1e3 | paired diff to sparse x1e3 |\n|---|---|---|\n", (long long)N);
        for (i = 0; i < nc; i++)
            for (sd = 0; sd < seeds; sd++) v[i * seeds + sd] = 1e3 * run(ctx, teacher, &cfgs[i], N, steps, (uint64_t)sd);
        for (i = 0; i < nc; i++) {
            double mu = 0, var = 0, dm = 0, dv = 0;
            for (sd = 0; sd < seeds; sd++) mu += v[i * seeds + sd], dm += v[i * seeds + sd] - v[sd];
            mu /= (double)seeds, dm /= (double)seeds;
            for (sd = 0; sd < seeds; sd++) {
                double dd = v[i * seeds + sd] - v[sd] - dm;
                var += (v[i * seeds + sd] - mu) * (v[i * seeds + sd] - mu);
                dv += dd * dd;
            }
            var = seeds > 1 ? sqrt(var / (double)(seeds - 1)) : 0;
            dv = seeds > 1 ? sqrt(dv / (double)(seeds - 1)) : 0;
            printf("| %s | %.3f ± %.3f | %+.3f ± %.3f |\n", cfgs[i].name, mu, var, dm, dv);
        }
        printf("\n");
        free(v);
    }
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
    return 0;
}
