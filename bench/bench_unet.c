/* bench_unet.c - speed of the docs/spec.md sec. 6 `small` UNet in bdense.
   One case per process (so peak RSS is the case's own):

       bench_unet CASE [threads] [reps]

   CASE: train32 | train64      teacher training step (fwd + bwd + AdamW + EMA)
         profileB               train step at batch B, time per layer type
         sprofileB              network call at batch B, time per layer type
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


/* ---- "profile" case: time per layer type through a wrapping backend ---- */
enum { P_C3F, P_C3B, P_C1F, P_C1B, P_CSF, P_CSB, P_GNSF, P_GNSB, P_GNF, P_GNB, P_ATF, P_ATB,
       P_LIN, P_EW, P_N };
static const char *g_pname[P_N] = {"conv3x3 fwd", "conv3x3 bwd", "conv1x1 fwd", "conv1x1 bwd",
                                   "conv3x3/s2 fwd", "conv3x3/s2 bwd", "gn+silu fwd", "gn+silu bwd",
                                   "groupnorm fwd", "groupnorm bwd", "attention fwd",
                                   "attention bwd", "linear+silu (time)", "add/concat/upsample"};
typedef struct { bd_backend cpu; double t[P_N]; } prof_state;
static prof_state g_prof;
#define PROF(bin, call) do { double t0_ = now_s(); call; g_prof.t[bin] += now_s() - t0_; } while (0)
static void p_conv_f(void *s, float *out, float *col, const float *x, const float *w, const float *b,
                     int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t k, int64_t st,
                     int64_t p) {
    int bin = k == 1 ? P_C1F : (st == 1 ? P_C3F : P_CSF);
    (void)s;
    PROF(bin, g_prof.cpu.conv2d_forward(g_prof.cpu.state, out, col, x, w, b, N, Cin, H, W, Cout, k, st, p));
}
static void p_conv_b(void *s, float *dx, float *dw, float *db, float *col, const float *dout,
                     const float *x, const float *w, int64_t N, int64_t Cin, int64_t H, int64_t W,
                     int64_t Cout, int64_t k, int64_t st, int64_t p) {
    int bin = k == 1 ? P_C1B : (st == 1 ? P_C3B : P_CSB);
    (void)s;
    PROF(bin, g_prof.cpu.conv2d_backward(g_prof.cpu.state, dx, dw, db, col, dout, x, w, N, Cin, H, W,
                                         Cout, k, st, p));
}
static void p_gns_f(void *s, float *out, float *mean, float *rstd, const float *x, const float *g,
                    const float *be, int64_t N, int64_t C, int64_t HW, int64_t G) {
    (void)s;
    PROF(P_GNSF, g_prof.cpu.groupnorm_silu_forward(g_prof.cpu.state, out, mean, rstd, x, g, be, N, C, HW, G));
}
static void p_gns_b(void *s, float *dx, float *dg, float *db, const float *dout, const float *x,
                    const float *mean, const float *rstd, const float *g, const float *be, int64_t N,
                    int64_t C, int64_t HW, int64_t G) {
    (void)s;
    PROF(P_GNSB, g_prof.cpu.groupnorm_silu_backward(g_prof.cpu.state, dx, dg, db, dout, x, mean, rstd, g,
                                                    be, N, C, HW, G));
}
static void p_gn_f(void *s, float *out, float *mean, float *rstd, const float *x, const float *g,
                   const float *be, int64_t N, int64_t C, int64_t HW, int64_t G) {
    (void)s;
    PROF(P_GNF, g_prof.cpu.groupnorm_forward(g_prof.cpu.state, out, mean, rstd, x, g, be, N, C, HW, G));
}
static void p_gn_b(void *s, float *dx, float *dg, float *db, const float *dout, const float *x,
                   const float *mean, const float *rstd, const float *g, int64_t N, int64_t C,
                   int64_t HW, int64_t G) {
    (void)s;
    PROF(P_GNB, g_prof.cpu.groupnorm_backward(g_prof.cpu.state, dx, dg, db, dout, x, mean, rstd, g, N, C,
                                              HW, G));
}
static void p_at_f(void *s, float *out, float *att, const float *qkv, int64_t N, int64_t C,
                   int64_t HW, int64_t h) {
    (void)s;
    PROF(P_ATF, g_prof.cpu.attention_forward(g_prof.cpu.state, out, att, qkv, N, C, HW, h));
}
static void p_at_b(void *s, float *dqkv, float *sc, const float *dout, const float *qkv,
                   const float *att, int64_t N, int64_t C, int64_t HW, int64_t h) {
    (void)s;
    PROF(P_ATB, g_prof.cpu.attention_backward(g_prof.cpu.state, dqkv, sc, dout, qkv, att, N, C, HW, h));
}
static void p_lin_f(void *s, float *out, const float *x, const float *w, const float *b, int64_t N,
                    int64_t In, int64_t Out) {
    (void)s;
    PROF(P_LIN, g_prof.cpu.linear_forward(g_prof.cpu.state, out, x, w, b, N, In, Out));
}
static void p_lin_b(void *s, float *dx, float *dw, float *db, const float *dout, const float *x,
                    const float *w, int64_t N, int64_t In, int64_t Out) {
    (void)s;
    PROF(P_LIN, g_prof.cpu.linear_backward(g_prof.cpu.state, dx, dw, db, dout, x, w, N, In, Out));
}
static void p_silu_f(void *s, float *out, const float *x, int64_t n) {
    (void)s;
    PROF(P_LIN, g_prof.cpu.silu_forward(g_prof.cpu.state, out, x, n));
}
static void p_silu_b(void *s, float *dx, const float *dout, const float *x, int64_t n) {
    (void)s;
    PROF(P_LIN, g_prof.cpu.silu_backward(g_prof.cpu.state, dx, dout, x, n));
}
static void p_add_f(void *s, float *out, const float *a, const float *b, int64_t n) {
    (void)s;
    PROF(P_EW, g_prof.cpu.add_forward(g_prof.cpu.state, out, a, b, n));
}
static void p_add_b(void *s, float *da, float *db, const float *dout, int64_t n) {
    (void)s;
    PROF(P_EW, g_prof.cpu.add_backward(g_prof.cpu.state, da, db, dout, n));
}
static void p_cat_f(void *s, float *out, const float *a, const float *b, int64_t N, int64_t C1,
                    int64_t C2, int64_t HW) {
    (void)s;
    PROF(P_EW, g_prof.cpu.concat_forward(g_prof.cpu.state, out, a, b, N, C1, C2, HW));
}
static void p_cat_b(void *s, float *da, float *db, const float *dout, int64_t N, int64_t C1,
                    int64_t C2, int64_t HW) {
    (void)s;
    PROF(P_EW, g_prof.cpu.concat_backward(g_prof.cpu.state, da, db, dout, N, C1, C2, HW));
}
static void p_up_f(void *s, float *out, const float *x, int64_t N, int64_t C, int64_t H, int64_t W) {
    (void)s;
    PROF(P_EW, g_prof.cpu.upsample2x_forward(g_prof.cpu.state, out, x, N, C, H, W));
}
static void p_up_b(void *s, float *dx, const float *dout, int64_t N, int64_t C, int64_t H, int64_t W) {
    (void)s;
    PROF(P_EW, g_prof.cpu.upsample2x_backward(g_prof.cpu.state, dx, dout, N, C, H, W));
}
static void p_ach_f(void *s, float *x, const float *e, int64_t N, int64_t C, int64_t HW) {
    (void)s;
    PROF(P_EW, g_prof.cpu.add_channel_forward(g_prof.cpu.state, x, e, N, C, HW));
}
static void p_ach_b(void *s, float *de, const float *dout, int64_t N, int64_t C, int64_t HW) {
    (void)s;
    PROF(P_EW, g_prof.cpu.add_channel_backward(g_prof.cpu.state, de, dout, N, C, HW));
}
static bd_backend g_ptable;
static bd_result install_profiler(bd_context *ctx) {
    g_prof.cpu = *bd_backend_cpu();
    g_ptable = g_prof.cpu;
    g_ptable.name = "cpu-profile";
    g_ptable.conv2d_forward = p_conv_f; g_ptable.conv2d_backward = p_conv_b;
    g_ptable.groupnorm_silu_forward = p_gns_f; g_ptable.groupnorm_silu_backward = p_gns_b;
    g_ptable.groupnorm_forward = p_gn_f; g_ptable.groupnorm_backward = p_gn_b;
    g_ptable.attention_forward = p_at_f; g_ptable.attention_backward = p_at_b;
    g_ptable.linear_forward = p_lin_f; g_ptable.linear_backward = p_lin_b;
    g_ptable.silu_forward = p_silu_f; g_ptable.silu_backward = p_silu_b;
    g_ptable.add_forward = p_add_f; g_ptable.add_backward = p_add_b;
    g_ptable.concat_forward = p_cat_f; g_ptable.concat_backward = p_cat_b;
    g_ptable.upsample2x_forward = p_up_f; g_ptable.upsample2x_backward = p_up_b;
    g_ptable.add_channel_forward = p_ach_f; g_ptable.add_channel_backward = p_ach_b;
    return bd_context_set_backend(ctx, &g_ptable);
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

    if (strncmp(cs, "profile", 7) == 0 || strncmp(cs, "sprofile", 8) == 0) CHECK(install_profiler(ctx));
    CHECK(bd_unet_init(ctx, &ucfg, &rng, &net));
    CHECK(bd_unet_config_stats(ctx, &ucfg, &n_params, NULL, &flops1));
    D = bd_denoiser_sample_size(net);

    if (strncmp(cs, "train", 5) == 0 || strncmp(cs, "profile", 7) == 0) {
        bd_trainer_config tc = bd_trainer_config_init();
        kind = 0;
        B = atoi(cs + (cs[0] == 't' ? 5 : 7));
        CHECK(bd_trainer_init(ctx, net, &tc, B, &tr));
        flops_step = 3.0 * (double)flops1 * (double)B; /* fwd + bwd (2x) */
        if (!reps) reps = 15;
    } else if (strncmp(cs, "pd", 2) == 0 || strncmp(cs, "td", 2) == 0) {
        bd_distill_config dc;
        int td = cs[0] == 't';
        kind = td ? 2 : 1;
        B = atoi(cs + 2);
        dc = bd_distill_config_init(td ? BD_DISTILL_TD : BD_DISTILL_PD, 2, td ? 4 : 8);
        /* the work bench/torch_ref.py does: Kt = K = 2 teacher sub-steps, and
           (TD) every branch's target read from the cached trajectory (the
           library's defaults since 2026-12-06, Kt = 2K for PD and dense
           targets solved from the student's state, add teacher calls) */
        dc.teacher_substeps = 2;
        dc.dense_targets = BD_DENSE_FROM_TRAJECTORY;
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
    } else if (strncmp(cs, "sample", 6) == 0 || strncmp(cs, "sprofile", 8) == 0) {
        kind = 3;
        B = atoi(cs + (cs[0] == 's' && cs[1] == 'a' ? 6 : 8));
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
    if (strncmp(cs, "profile", 7) == 0 || strncmp(cs, "sprofile", 8) == 0) {
        /* per layer type, ms per step (warm-up included in the sums: scale) */
        double tot = 0.0, step = 0.0;
        int p;
        for (i = 0; i < reps; i++) step += times[i];
        step /= reps;
        printf("profile: %s, batch %lld, %d threads: %.2f ms per step (mean)\n",
               kind == 3 ? "network call (sampling)" : "training step", (long long)B, threads, 1e3 * step);
        for (p = 0; p < P_N; p++) {
            double ms = 1e3 * g_prof.t[p] / (reps + 3);
            tot += ms;
            printf("  %-22s %8.3f ms  %5.1f%%\n", g_pname[p], ms, 100.0 * ms / (1e3 * step));
        }
        printf("  %-22s %8.3f ms  %5.1f%%\n", "rest (loss, Adam, EMA, copies, zeroing)",
               1e3 * step - tot, 100.0 * (1e3 * step - tot) / (1e3 * step));
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
