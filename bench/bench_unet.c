/* bench_unet.c - speed of the SPEC 6 `small` UNet in bdense.
   One case per process (so peak RSS is the case's own):

       bench_unet CASE [threads] [reps]

   CASE: train32 | train64      teacher training step (fwd + bwd + AdamW + EMA)
         pd64 | td8             B-DENSE distillation step, K = 2 (PD: batch 64;
                                TD: 8 cached trajectories, N = 4 student steps)
         sample1 | sample64     one network call (NFE) in inference mode
         gemm                   cblas_sgemm / built-in GEMM GFLOP/s (the ceiling)
   Prints one JSON line: median and spread (p10, p90, min) in ms over `reps`
   timed repetitions after warm-up, peak RSS (getrusage), FLOPs per step
   and achieved GFLOP/s, plus cblas_sgemm's GFLOP/s measured in the same
   process on a conv-shaped product (BDENSE_USE_CBLAS builds).
   Build: bench/run.sh (or cc -O3 -march=native -fopenmp -DBDENSE_USE_CBLAS
   -I. bench/bench_unet.c -lopenblas -lm). */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}
#define CHECK(expr)                                                                          \
    do {                                                                                     \
        bd_result r_ = (expr);                                                               \
        if (r_ != BD_SUCCESS) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #expr,                \
                    bd_result_string(r_), ctx ? bd_context_message(ctx) : "");               \
            return 1;                                                                        \
        }                                                                                    \
    } while (0)

/* GFLOP/s of one GEMM shape (median of reps) */
static double gemm_gflops(int builtin, int64_t M, int64_t N, int64_t K, int reps) {
    float *A = (float *)malloc((size_t)(M * K) * 4), *B = (float *)malloc((size_t)(K * N) * 4);
    float *C = (float *)malloc((size_t)(M * N) * 4);
    double t[64], med;
    int i;
    bd_rng r = bd_rng_init(3);
    bd_rng_uniform_fill(&r, A, M * K, -1, 1);
    bd_rng_uniform_fill(&r, B, K * N, -1, 1);
    if (reps > 64) reps = 64;
    for (i = -3; i < reps; i++) {
        double t0 = now_s();
#ifdef BDENSE_USE_CBLAS
        if (!builtin)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, A,
                        (int)K, B, (int)N, 0.0f, C, (int)N);
        else
#endif
            bd_sgemm_builtin(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        if (i >= 0) t[i] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    med = t[reps / 2];
    free(A); free(B); free(C);
    return 2.0 * (double)M * N * K / med * 1e-9;
}

int main(int argc, char **argv) {
    const char *cs = argc > 1 ? argv[1] : "train64";
    int threads = argc > 2 ? atoi(argv[2]) : 2, reps = argc > 3 ? atoi(argv[3]) : 0, i;
    bd_context *ctx = NULL;
    bd_context_config cc = bd_context_config_init();
    bd_unet_config ucfg = bd_unet_config_init();
    bd_denoiser *net = NULL, *student = NULL;
    bd_trainer *tr = NULL;
    bd_distill *dist = NULL;
    bd_rng rng = bd_rng_init(1234);
    int64_t n_params = 0, flops1 = 0, B = 1, D;
    double *times, *ctimes, flops_step = 0.0, cblas_gf = 0.0, builtin_gf;
    float *x = NULL, *out = NULL, *tt = NULL, *traj = NULL;
    int kind; /* 0 train, 1 pd, 2 td, 3 sample */

    if (threads < 1) threads = 1;
    cc.n_threads = threads;
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;
#ifdef _OPENMP
    omp_set_num_threads(threads); /* for the ceiling measurement below */
#endif
#ifdef BDENSE_USE_CBLAS
    cblas_gf = gemm_gflops(0, 64, 784, 576, 21);
#endif
    builtin_gf = gemm_gflops(1, 64, 784, 576, 21);
    if (strcmp(cs, "gemm") == 0) {
        printf("{\"impl\":\"bdense\",\"case\":\"gemm\",\"threads\":%d,\"cblas_gflops\":%.1f,"
               "\"builtin_gflops\":%.1f,\"cblas_512\":%.1f,\"builtin_512\":%.1f}\n",
               threads, cblas_gf, builtin_gf,
#ifdef BDENSE_USE_CBLAS
               gemm_gflops(0, 512, 512, 512, 11),
#else
               0.0,
#endif
               gemm_gflops(1, 512, 512, 512, 11));
        bd_context_free(ctx);
        return 0;
    }

    CHECK(bd_unet_init(ctx, &ucfg, &rng, &net));
    CHECK(bd_unet_config_stats(ctx, &ucfg, &n_params, NULL, &flops1));
    D = bd_denoiser_sample_size(net);

    if (strncmp(cs, "train", 5) == 0) {
        bd_trainer_config tc = bd_trainer_config_init();
        kind = 0;
        B = atoi(cs + 5);
        CHECK(bd_trainer_init(ctx, net, &tc, B, &tr));
        flops_step = 3.0 * (double)flops1 * (double)B; /* fwd + bwd (2x) */
        if (!reps) reps = 15;
    } else if (strncmp(cs, "pd", 2) == 0 || strncmp(cs, "td", 2) == 0) {
        bd_distill_config dc;
        int td = cs[0] == 't';
        kind = td ? 2 : 1;
        B = atoi(cs + 2);
        dc = bd_distill_config_init(td ? BD_DISTILL_TD : BD_DISTILL_PD, 2, td ? 4 : 8);
        CHECK(bd_distill_student_from_teacher(net, 2, &rng, &student));
        CHECK(bd_distill_init(ctx, &dc, net, student, B, &dist));
        if (td) {
            /* trajectories solved once and cached (what a real TD run does) */
            int64_t S1 = dist->S + 1;
            traj = (float *)malloc((size_t)(B * S1 * D) * sizeof(float));
            CHECK(bd_distill_teacher_trajectories(dist, traj, B, &rng));
            CHECK(bd_distill_set_trajectories(dist, traj, B));
            /* per step: N student fwd+bwd passes of B */
            flops_step = 3.0 * (double)flops1 * (double)B * (double)dist->N;
        } else {
            /* student fwd+bwd + Kt teacher forwards */
            flops_step = (3.0 + (double)dist->Kt) * (double)flops1 * (double)B;
        }
        if (!reps) reps = td ? 10 : 15;
    } else if (strncmp(cs, "sample", 6) == 0) {
        kind = 3;
        B = atoi(cs + 6);
        CHECK(bd_denoiser_reserve(net, B));
        flops_step = (double)flops1 * (double)B;
        if (!reps) reps = B == 1 ? 300 : 30;
    } else {
        fprintf(stderr, "unknown case %s\n", cs);
        return 2;
    }
    if (B < 1) B = 1;
    x = (float *)malloc((size_t)(B * D) * sizeof(float));
    out = (float *)malloc((size_t)(B * D * 2) * sizeof(float));
    tt = (float *)malloc((size_t)B * sizeof(float));
    bd_rng_uniform_fill(&rng, x, B * D, -1.0f, 1.0f);
    for (i = 0; i < B; i++) tt[i] = (float)((i + 0.5) / (double)B);
    times = (double *)malloc((size_t)reps * sizeof(double));
    ctimes = (double *)malloc((size_t)reps * sizeof(double));

    for (i = -3; i < reps; i++) { /* 3 warm-up repetitions */
        double t0 = now_s(), c0 = cpu_s(), loss;
        switch (kind) {
        case 0: CHECK(bd_trainer_step(tr, x, B, &loss)); break;
        case 1: CHECK(bd_distill_step(dist, x, B, &loss, NULL)); break;
        case 2: CHECK(bd_distill_step(dist, NULL, B, &loss, NULL)); break;
        default: CHECK(bd_denoiser_forward(net, out, x, tt, B, 0)); break;
        }
        if (i >= 0) {
            times[i] = now_s() - t0;
            ctimes[i] = cpu_s() - c0;
        }
    }
    qsort(ctimes, (size_t)reps, sizeof(double), cmp_d);
    qsort(times, (size_t)reps, sizeof(double), cmp_d);
    {
        double med = times[reps / 2];
        printf("{\"impl\":\"bdense\",\"case\":\"%s\",\"threads\":%d,\"batch\":%lld,\"reps\":%d,"
               "\"median_ms\":%.3f,\"p10_ms\":%.3f,\"p90_ms\":%.3f,\"min_ms\":%.3f,"
               "\"cpu_ms\":%.3f,\"rss_mb\":%.1f,\"gflop_per_step\":%.3f,\"gflops\":%.1f,"
               "\"cblas_gflops\":%.1f,\"builtin_gemm_gflops\":%.1f,\"params\":%lld}\n",
               cs, threads, (long long)B, reps, 1e3 * med, 1e3 * times[reps / 10],
               1e3 * times[(reps * 9) / 10 < reps ? (reps * 9) / 10 : reps - 1], 1e3 * times[0],
               1e3 * ctimes[reps / 2], peak_rss_mb(), flops_step * 1e-9, flops_step / med * 1e-9, cblas_gf, builtin_gf,
               (long long)n_params);
    }
    free(times); free(ctimes); free(x); free(out); free(tt); free(traj);
    if (dist) bd_distill_free(dist);
    if (tr) bd_trainer_free(tr);
    if (student) bd_denoiser_free(student);
    bd_denoiser_free(net);
    bd_context_free(ctx);
    return 0;
}
