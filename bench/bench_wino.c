/* bench_wino.c - Winograd F(2x2, 3x3) and F(4x4, 3x3) against the direct / implicit-GEMM
   3x3 kernel on every stride-1 3x3 convolution shape of the SPEC 6 `small`
   UNet, in one process, interleaved (A B A B ...), median of the per-round
   ratios; plus each path's error against the plain reference kernel.

       bench_wino [threads] [rounds] [batch ...]     (defaults: 2 7 64 1)
       BENCH_WINO_DIR=2 bench_wino ...               (only the rows of one direction: 0 fwd, 1 dx, 2 dw)

   Build: cc -O3 -march=native -fopenmp -DBDENSE_REFERENCE_KERNELS -I. bench/bench_wino.c -o bench_wino -lm
   Prints one line per (shape, batch, direction): ms of each path (medians:
   direct, F(2x2), F(4x4)), the median per-round ratios direct / F(2x2) and
   F(2x2) / F(4x4) (> 1: the latter faster), which kernel bd__wg_rule picks,
   and the worst error / max |ref| of the three paths.  At batch
   > 1 also "dw gemm/direct": the weight gradient by the gather-packed GEMM
   (before 2026-12-06) in the first column, the direct dw kernel
   (bd__dw_direct) in the second and the Winograd F(4x4) dw (bd__wg4_dw) in
   the third ("F2/F4" is then direct / F(4x4) dw; "rule" says which the
   library runs), and GEMM vs direct for the UNet's 1x1 and 3x3 stride-2
   convolutions. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
static double relerr(const float *a, const float *b, int64_t n) {
    double md = 0.0, mb = 1e-3;
    int64_t i;
    for (i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return 1e30;
        if (d > md) md = d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return md / mb;
}

/* the stride-1 3x3 convolutions of `small` (ch 32, m 1,2,2): Cin, Cout, H=W */
static const int shapes[][3] = {{1, 32, 28},  {32, 32, 28}, {64, 32, 28}, {96, 32, 28}, {64, 64, 28},
                                {32, 64, 14}, {64, 64, 14}, {96, 64, 14}, {128, 64, 14},
                                {64, 64, 7},  {128, 64, 7}};
/* its 1x1 convolutions (skip connections, qkv, proj) and 3x3 stride-2 ones: Cin, Cout, H=W, k, stride */
static const int shapes_dw[][5] = {{96, 32, 28, 1, 1}, {64, 32, 28, 1, 1}, {128, 64, 14, 1, 1},
                                   {96, 64, 14, 1, 1}, {64, 192, 7, 1, 1}, {64, 64, 7, 1, 1},
                                   {32, 32, 28, 3, 2}, {64, 64, 14, 3, 2}};

/* dir 0: forward (=, bias); 1: dx (+=): wg 0 direct, 1 F(2x2), 2 F(4x4);
   2: dw (+=): the gather-packed GEMM (wg 0), the direct dw kernel (wg 1) and
   the Winograd F(4x4) dw (wg 2: bd__wg4_dw; the direct kernel where it declines) */
static void run(int dir, int wg, float *o, float *col, const float *x, const float *w, const float *b,
                const float *d, float *dx, float *dw, int64_t N, int64_t Cin, int64_t H, int64_t Cout) {
    if (dir == 0) bd__conv2d_fwd(o, col, x, w, b, N, Cin, H, H, Cout, 3, 1, 1, wg);
    else if (dir == 1) bd__conv2d_bwd(dx, NULL, NULL, col, d, x, w, N, Cin, H, H, Cout, 3, 1, 1, wg);
    else if (wg < 2 || !bd__wg4_dw(dw, col, bd_conv2d_workspace_floats(Cin, H, H, 3, 1, 1), d, x, N, Cin, H, H, Cout))
        bd__conv2d_bwd(NULL, dw, NULL, col, d, x, w, N, Cin, H, H, Cout, 3, 1, 1, wg < 2 ? wg : 1);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, rounds = argc > 2 ? atoi(argv[2]) : 7;
    int nb = argc > 3 ? argc - 3 : 2, bi, s, dir, r;
    int64_t batches[16] = {64, 1};
    bd_rng rng = bd_rng_init(7);
    for (bi = 0; bi < nb && argc > 3 && bi < 16; bi++) batches[bi] = atoll(argv[3 + bi]);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    printf("threads %d, rounds %d (median of per-round ratios; interleaved)\n", threads, rounds);
    printf("| conv | batch | dir | direct ms | F2 ms | F4 ms | direct/F2 | F2/F4 | rule | err direct | err F2 | err F4 |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (bi = 0; bi < nb; bi++)
        for (s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++)
            for (dir = 0; dir < 3; dir++) {
                int64_t N = batches[bi], Cin = shapes[s][0], Cout = shapes[s][1], H = shapes[s][2];
                int64_t nx = N * Cin * H * H, no = N * Cout * H * H, nw = Cout * Cin * 9;
                int64_t ws = bd_conv2d_workspace_floats(Cin, H, H, 3, 1, 1), wref = Cin * 9 * H * H;
                float *x = malloc((size_t)nx * 4), *w = malloc((size_t)nw * 4), *b = malloc((size_t)Cout * 4);
                float *d = malloc((size_t)no * 4), *o = malloc((size_t)(no > nx ? no : nx) * 4);
                float *ref = calloc((size_t)(no > nx ? no : nx), 4), *col = malloc((size_t)ws * 4);
                float *cref = malloc((size_t)(wref > ws ? wref : ws) * 4), *dw = calloc((size_t)nw, 4);
                float *dwr = calloc((size_t)nw, 4);
                double tt[3][64], ra[64], rb[64], e[3] = {0, 0, 0};
                int reps = N >= 16 ? 2 : 50, k, wg, rule, nv = 3;
                if (dir == 2 && N == 1) goto next; /* dw at batch 1 is never on a sampling path */
                if (getenv("BENCH_WINO_DIR") && atoi(getenv("BENCH_WINO_DIR")) != dir) goto next; /* one direction */
                bd_rng_normal(&rng, x, nx);
                bd_rng_normal(&rng, w, nw);
                bd_rng_normal(&rng, b, Cout);
                bd_rng_normal(&rng, d, no);
                if (dir == 0) bd__conv2d_forward_ref(ref, cref, x, w, b, N, Cin, H, H, Cout, 3, 1, 1);
                else if (dir == 1) bd__conv2d_backward_ref(ref, NULL, NULL, cref, d, x, w, N, Cin, H, H, Cout, 3, 1, 1);
                else bd__conv2d_backward_ref(NULL, dwr, NULL, cref, d, x, w, N, Cin, H, H, Cout, 3, 1, 1);
                for (wg = 0; wg < nv; wg++) {
                    memset(o, 0, (size_t)(no > nx ? no : nx) * 4);
                    memset(dw, 0, (size_t)nw * 4);
                    run(dir, wg, o, col, x, w, b, d, o, dw, N, Cin, H, Cout);
                    e[wg] = dir == 2 ? relerr(dw, dwr, nw) : relerr(o, ref, dir == 0 ? no : nx);
                }
                for (r = 0; r < rounds && r < 64; r++) {
                    for (wg = 0; wg < nv; wg++) {
                        double t0 = now_s();
                        for (k = 0; k < reps; k++) run(dir, wg, o, col, x, w, b, d, o, dw, N, Cin, H, Cout);
                        tt[wg][r] = (now_s() - t0) / reps * 1e3;
                    }
                    ra[r] = tt[0][r] / tt[1][r];
                    rb[r] = nv > 2 ? tt[1][r] / tt[2][r] : 0.0;
                }
                rule = dir == 2 ? (bd__wg4_dw_rule(N, Cin, H, H, Cout) ? 2 : 1) : bd__wg_rule(N, Cin, H, H, Cout);
                if (nv < 3) for (k = 0; k < r; k++) tt[2][k] = 0.0;
                printf("| %d->%d %dx%d | %d | %s | %.3f | %.3f | %.3f | %.2fx | %.2fx | %s | %.2g | %.2g | %.2g |\n",
                       (int)Cin, (int)Cout, (int)H, (int)H, (int)N,
                       dir == 0 ? "fwd" : (dir == 1 ? "dx" : "dw gemm/direct"), median(tt[0], r), median(tt[1], r),
                       median(tt[2], r), median(ra, r), median(rb, r),
                       dir == 2 ? (rule == 2 ? "F4 dw" : "direct dw") : (rule == 2 ? "F4" : (rule ? "F2" : "direct")),
                       e[0], e[1], e[2]);
                fflush(stdout);
            next:
                free(x); free(w); free(b); free(d); free(o); free(ref); free(col); free(cref); free(dw); free(dwr);
            }
    /* the other convolutions' weight gradients: 1x1 and 3x3 stride 2, GEMM vs direct */
    for (bi = 0; bi < nb; bi++)
        for (s = 0; s < (int)(sizeof shapes_dw / sizeof shapes_dw[0]) && batches[bi] > 1; s++) {
            int64_t N = batches[bi], Cin = shapes_dw[s][0], Cout = shapes_dw[s][1], H = shapes_dw[s][2];
            int64_t k = shapes_dw[s][3], st = shapes_dw[s][4], p = k == 3 ? 1 : 0, Ho = (H + 2 * p - k) / st + 1;
            int64_t nx = N * Cin * H * H, no = N * Cout * Ho * Ho, nw = Cout * Cin * k * k;
            int64_t ws = bd_conv2d_workspace_floats(Cin, H, H, k, st, p), wref = Cin * k * k * Ho * Ho;
            float *x = malloc((size_t)nx * 4), *d = malloc((size_t)no * 4), *w = malloc((size_t)nw * 4);
            float *dw = calloc((size_t)nw, 4), *dwr = calloc((size_t)nw, 4), *col = malloc((size_t)(ws + 1) * 4);
            float *cref = malloc((size_t)(wref + 1) * 4);
            double ta[64], tb[64], ra[64], e[2];
            int wg, kk, reps = 2;
            bd_rng_normal(&rng, x, nx);
            bd_rng_normal(&rng, d, no);
            bd_rng_normal(&rng, w, nw);
            bd__conv2d_backward_ref(NULL, dwr, NULL, cref, d, x, w, N, Cin, H, H, Cout, k, st, p);
            for (wg = 0; wg < 2; wg++) {
                memset(dw, 0, (size_t)nw * 4);
                bd__conv2d_bwd(NULL, dw, NULL, col, d, x, w, N, Cin, H, H, Cout, k, st, p, wg ? -1 : 0);
                e[wg] = relerr(dw, dwr, nw);
            }
            for (r = 0; r < rounds && r < 64; r++) {
                for (wg = 0; wg < 2; wg++) {
                    double t0 = now_s();
                    for (kk = 0; kk < reps; kk++)
                        bd__conv2d_bwd(NULL, dw, NULL, col, d, x, w, N, Cin, H, H, Cout, k, st, p, wg ? -1 : 0);
                    (wg ? tb : ta)[r] = (now_s() - t0) / reps * 1e3;
                }
                ra[r] = ta[r] / tb[r];
            }
            printf("| %d->%d %dx%d k%d s%d | %d | dw gemm/direct | %.3f | %.3f | %.2fx | direct dw | %.2g | %.2g |\n",
                   (int)Cin, (int)Cout, (int)H, (int)H, (int)k, (int)st, (int)N, median(ta, r), median(tb, r),
                   median(ra, r), e[0], e[1]);
            fflush(stdout);
            free(x); free(d); free(w); free(dw); free(dwr); free(col); free(cref);
        }
    return 0;
}
