/* gemm_blas.c - cblas_sgemm against bdense's built-in GEMM on the GEMM
   shapes the models actually produce (docs/performance.md, "CBLAS").

       gemm_blas [threads] [reps]        (defaults: 1, 7)

   1. Collects the shapes: the UNet (`tiny` and `small`, batch 1 and 64)
      runs one training forward + backward on a context whose kernel table
      wraps the CPU one and records every conv2d / linear / attention call;
      the MLP (bd_mlp_config_init(2): 2-D points, hidden 128, depth 3,
      time embedding 32) calls bd_linear_* directly, so its shapes are
      listed from its config.  Each layer call becomes the GEMMs that a
      CBLAS route would run: the plain per-sample formulation of the
      reference kernels (conv: w . im2col(x[n]); dw += dout[n] col^T;
      col = w^T dout[n]; attention per (sample, head): Q^T K, V A^T, and
      the four backward products; linear: x w^T, dout w, dout^T x).
      The fast kernels do the same products with im2col packed inside the
      GEMM and the conv dw of all samples as one deep product, so the
      built-in time here is a fair stand-in, not the kernels' exact cost;
      im2col/col2im copies are not timed (they would favour neither side
      only if CBLAS did not need them: it does).
   2. Times each distinct shape with the same operands, cblas_sgemm and
      bd_sgemm_builtin interleaved (alternating which goes first), `reps`
      times, each timing a loop of >= ~2 ms; reports the medians, the
      ratio, and per model the sum over its calls (count x median).
   Threads: OpenBLAS's own pool (openblas_set_num_threads) and OpenMP's
   (omp_set_num_threads, the built-in GEMM's) are both set to `threads`.
   Build (needs OpenBLAS):
       cc -std=c99 -O2 -fopenmp -DBDENSE_USE_CBLAS -I. bench/gemm_blas.c \
          -o build/gemm_blas -lopenblas -lm
   Prints a table; the machine it ran on and OpenBLAS's core type first. */
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c99 */
#define BDENSE_IMPLEMENTATION
#define BDENSE_REFERENCE_KERNELS /* bd__*_ref: im2col + bd_sgemm (= cblas_sgemm here) */
#include "bdense.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef BDENSE_USE_CBLAS
#error "build with -DBDENSE_USE_CBLAS and link a CBLAS (OpenBLAS)"
#endif
/* OpenBLAS extensions (declared by its cblas.h) */
#ifdef OPENBLAS_VERSION
#define HAVE_OPENBLAS_EXT 1
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

/* ---- shape collection ---------------------------------------------------- */
typedef struct { int ta, tb; int64_t M, N, K; int64_t count; const char *what; } shape;
#define MAX_SHAPES 512
typedef struct { shape s[MAX_SHAPES]; int n; } shape_set;
static shape_set *g_cur;

static void add(shape_set *set, const char *what, int ta, int tb, int64_t M, int64_t N, int64_t K,
                int64_t count) {
    int i;
    if (M <= 0 || N <= 0 || K <= 0 || count <= 0) return;
    for (i = 0; i < set->n; i++) {
        shape *s = &set->s[i];
        if (s->ta == ta && s->tb == tb && s->M == M && s->N == N && s->K == K) {
            s->count += count;
            return;
        }
    }
    if (set->n == MAX_SHAPES) return;
    set->s[set->n].ta = ta, set->s[set->n].tb = tb, set->s[set->n].M = M, set->s[set->n].N = N;
    set->s[set->n].K = K, set->s[set->n].count = count, set->s[set->n].what = what;
    set->n++;
}

/* distinct layer calls, for the layer-level comparison */
typedef struct { int kind; int64_t a[8]; int64_t count; } layer;  /* 0 conv, 1 linear, 2 attention */
typedef struct { layer l[256]; int n; } layer_set;
static layer_set *g_layers;
static void add_layer(int kind, int64_t a0, int64_t a1, int64_t a2, int64_t a3, int64_t a4, int64_t a5,
                      int64_t a6, int64_t a7) {
    int64_t a[8];
    int i;
    if (!g_layers) return;
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3, a[4] = a4, a[5] = a5, a[6] = a6, a[7] = a7;
    for (i = 0; i < g_layers->n; i++)
        if (g_layers->l[i].kind == kind && !memcmp(g_layers->l[i].a, a, sizeof a)) {
            g_layers->l[i].count++;
            return;
        }
    if (g_layers->n == 256) return;
    g_layers->l[g_layers->n].kind = kind, g_layers->l[g_layers->n].count = 1;
    memcpy(g_layers->l[g_layers->n].a, a, sizeof a);
    g_layers->n++;
}

static void conv_shapes(int fwd, int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout,
                        int64_t k, int64_t st, int64_t p) {
    int64_t Ho = (H + 2 * p - k) / st + 1, Wo = (W + 2 * p - k) / st + 1, P = Ho * Wo,
            KK = Cin * k * k;
    const char *w = k == 1 ? "conv1x1" : (st == 1 ? "conv3x3" : "conv3x3/s2");
    if (fwd) add_layer(0, N, Cin, H, W, Cout, k, st, p);
    if (fwd) {
        add(g_cur, w, 0, 0, Cout, P, KK, N);           /* out[n] = w col        */
    } else {
        add(g_cur, w, 0, 1, Cout, KK, P, N);           /* dw += dout[n] col^T   */
        add(g_cur, w, 1, 0, KK, P, Cout, N);           /* col = w^T dout[n]     */
    }
}
static void linear_shapes(int fwd, int64_t N, int64_t In, int64_t Out) {
    if (fwd) add_layer(1, N, In, Out, 0, 0, 0, 0, 0);
    if (fwd) {
        add(g_cur, "linear", 0, 1, N, Out, In, 1);     /* out = x w^T           */
    } else {
        add(g_cur, "linear", 0, 0, N, In, Out, 1);     /* dx += dout w          */
        add(g_cur, "linear", 1, 0, Out, In, N, 1);     /* dw += dout^T x        */
    }
}
static void attn_shapes(int fwd, int64_t N, int64_t C, int64_t HW, int64_t heads) {
    int64_t Ch = C / heads, c = N * heads;
    if (fwd) add_layer(2, N, C, HW, heads, 0, 0, 0, 0);
    if (fwd) {
        add(g_cur, "attention", 1, 0, HW, HW, Ch, c);  /* S = Q^T K             */
        add(g_cur, "attention", 0, 1, Ch, HW, HW, c);  /* O = V A^T             */
    } else {
        add(g_cur, "attention", 0, 0, Ch, HW, HW, 2 * c); /* dV += dO A; dK += Q dS */
        add(g_cur, "attention", 1, 0, HW, HW, Ch, c);     /* dA = dO^T V           */
        add(g_cur, "attention", 0, 1, Ch, HW, HW, c);     /* dQ += K dS^T          */
    }
}

/* the wrapping kernel table: record, then run the CPU kernel */
static bd_backend g_cpu;
static void t_conv_f(void *s, float *out, float *col, const float *x, const float *w, const float *b,
                     int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t k, int64_t st,
                     int64_t p) {
    (void)s;
    conv_shapes(1, N, Cin, H, W, Cout, k, st, p);
    g_cpu.conv2d_forward(g_cpu.state, out, col, x, w, b, N, Cin, H, W, Cout, k, st, p);
}
static void t_conv_b(void *s, float *dx, float *dw, float *db, float *col, const float *dout,
                     const float *x, const float *w, int64_t N, int64_t Cin, int64_t H, int64_t W,
                     int64_t Cout, int64_t k, int64_t st, int64_t p) {
    (void)s;
    conv_shapes(0, N, Cin, H, W, Cout, k, st, p);
    g_cpu.conv2d_backward(g_cpu.state, dx, dw, db, col, dout, x, w, N, Cin, H, W, Cout, k, st, p);
}
static void t_lin_f(void *s, float *out, const float *x, const float *w, const float *b, int64_t N,
                    int64_t In, int64_t Out) {
    (void)s;
    linear_shapes(1, N, In, Out);
    g_cpu.linear_forward(g_cpu.state, out, x, w, b, N, In, Out);
}
static void t_lin_b(void *s, float *dx, float *dw, float *db, const float *dout, const float *x,
                    const float *w, int64_t N, int64_t In, int64_t Out) {
    (void)s;
    linear_shapes(0, N, In, Out);
    g_cpu.linear_backward(g_cpu.state, dx, dw, db, dout, x, w, N, In, Out);
}
static void t_at_f(void *s, float *out, float *att, const float *qkv, int64_t N, int64_t C,
                   int64_t HW, int64_t h) {
    (void)s;
    attn_shapes(1, N, C, HW, h);
    g_cpu.attention_forward(g_cpu.state, out, att, qkv, N, C, HW, h);
}
static void t_at_b(void *s, float *dqkv, float *sc, const float *dout, const float *qkv,
                   const float *att, int64_t N, int64_t C, int64_t HW, int64_t h) {
    (void)s;
    attn_shapes(0, N, C, HW, h);
    g_cpu.attention_backward(g_cpu.state, dqkv, sc, dout, qkv, att, N, C, HW, h);
}

static int unet_shapes(shape_set *set, int tiny, int64_t batch) {
    bd_context *ctx = NULL;
    bd_context_config cc = bd_context_config_init();
    bd_unet_config uc = bd_unet_config_init();
    bd_backend be;
    bd_denoiser *net = NULL;
    bd_rng rng = bd_rng_init(1);
    int64_t D, i;
    float *z = NULL, *out = NULL, *t = NULL;
    int ok = 0;
    if (tiny) { /* the CLI's --config tiny (cli/cmd_model.c) */
        int l;
        uc.image_size = 16, uc.ch = 16, uc.levels = 2, uc.nres = 1, uc.groups = 4, uc.heads = 1;
        for (l = 0; l < BD_UNET_MAX_LEVELS; l++) uc.ch_mult[l] = 0, uc.attn[l] = 0;
        uc.ch_mult[0] = 1, uc.ch_mult[1] = 2;
    }
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 0;
    g_cpu = *bd_backend_cpu();
    be = g_cpu;
    be.conv2d_forward = t_conv_f, be.conv2d_backward = t_conv_b;
    be.linear_forward = t_lin_f, be.linear_backward = t_lin_b;
    be.attention_forward = t_at_f, be.attention_backward = t_at_b;
    if (bd_context_set_backend(ctx, &be) != BD_SUCCESS) goto done;
    if (bd_unet_init(ctx, &uc, &rng, &net) != BD_SUCCESS) goto done;
    if (bd_denoiser_reserve(net, batch) != BD_SUCCESS) goto done;
    D = bd_denoiser_sample_size(net);
    z = (float *)calloc((size_t)(batch * D), sizeof(float));
    out = (float *)calloc((size_t)(batch * D), sizeof(float));
    t = (float *)calloc((size_t)batch, sizeof(float));
    if (!z || !out || !t) goto done;
    bd_rng_normal(&rng, z, batch * D);
    for (i = 0; i < batch; i++) t[i] = 0.5f;
    g_cur = set;
    if (bd_denoiser_forward(net, out, z, t, batch, 1) != BD_SUCCESS) goto done;
    if (bd_denoiser_backward(net, NULL, out, batch) != BD_SUCCESS) goto done;
    ok = 1;
done:
    if (!ok) fprintf(stderr, "unet %s batch %lld: %s\n", tiny ? "tiny" : "small", (long long)batch,
                     ctx ? bd_context_message(ctx) : "no context");
    g_cur = NULL;
    free(z); free(out); free(t);
    bd_denoiser_free(net);
    bd_context_free(ctx);
    return ok;
}

static void mlp_shapes(shape_set *set, int64_t batch) {
    bd_mlp_config mc = bd_mlp_config_init(2);
    int64_t H = mc.hidden, E = mc.temb_dim, D = mc.dim, KD = mc.branches * mc.dim, l;
    g_cur = set;
    linear_shapes(1, batch, E, H), linear_shapes(0, batch, E, H);   /* time_mlp.0 */
    linear_shapes(1, batch, H, H), linear_shapes(0, batch, H, H);   /* time_mlp.2 */
    for (l = 0; l < mc.depth; l++) {
        linear_shapes(1, batch, l == 0 ? D : H, H);
        linear_shapes(0, batch, l == 0 ? D : H, H);
    }
    linear_shapes(1, batch, H, KD), linear_shapes(0, batch, H, KD);
    g_cur = NULL;
}

/* ---- timing --------------------------------------------------------------- */
static void run_one(int blas, const shape *s, const float *A, const float *B, float *C, int iters) {
    int64_t lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    int i;
    for (i = 0; i < iters; i++) {
        if (blas)
            cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                        (int)s->M, (int)s->N, (int)s->K, 1.0f, A, (int)lda, B, (int)ldb, 0.0f, C,
                        (int)s->N);
        else
            bd_sgemm_builtin(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
    }
}

/* medians (seconds per call) of the built-in GEMM and cblas_sgemm, interleaved */
static void time_shape(const shape *s, int reps, double *t_builtin, double *t_blas, double *maxdiff) {
    float *A = (float *)malloc((size_t)(s->M * s->K) * sizeof(float));
    float *B = (float *)malloc((size_t)(s->K * s->N) * sizeof(float));
    float *C1 = (float *)malloc((size_t)(s->M * s->N) * sizeof(float));
    float *C2 = (float *)malloc((size_t)(s->M * s->N) * sizeof(float));
    double tb[64], tc[64], flops = 2.0 * (double)s->M * s->N * s->K, d = 0.0;
    int iters, r, i;
    bd_rng rng = bd_rng_init(7);
    bd_rng_uniform_fill(&rng, A, s->M * s->K, -1, 1);
    bd_rng_uniform_fill(&rng, B, s->K * s->N, -1, 1);
    iters = (int)(2e-3 * 20e9 / flops); /* ~2 ms at 20 GFLOP/s */
    if (iters < 1) iters = 1;
    if (iters > 20000) iters = 20000;
    if (reps > 64) reps = 64;
    run_one(0, s, A, B, C1, 1), run_one(1, s, A, B, C2, 1); /* warm-up and check */
    for (i = 0; i < s->M * s->N; i++) {
        double e = fabs((double)C1[i] - (double)C2[i]);
        if (e > d) d = e;
    }
    for (r = 0; r < reps; r++) {
        int first = r & 1, k;
        for (k = 0; k < 2; k++) {
            int blas = k == 0 ? first : !first;
            double t0 = now_s();
            run_one(blas, s, A, B, blas ? C2 : C1, iters);
            (blas ? tc : tb)[r] = (now_s() - t0) / iters;
        }
    }
    qsort(tb, (size_t)reps, sizeof(double), cmp_d);
    qsort(tc, (size_t)reps, sizeof(double), cmp_d);
    *t_builtin = tb[reps / 2], *t_blas = tc[reps / 2], *maxdiff = d;
    free(A); free(B); free(C1); free(C2);
}

/* ---- layer level: the library's fast kernel vs the same layer routed
   through CBLAS (the reference kernels: im2col + cblas_sgemm per sample;
   linear: cblas_sgemm + bias) -- forward + backward, all buffers given ---- */
static void lin_blas_fb(float *out, float *dx, float *dw, float *db, const float *x, const float *w,
                        const float *b, const float *dout, int64_t N, int64_t In, int64_t Out) {
    int64_t n, o;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)Out, (int)In, 1.0f, x, (int)In, w,
                (int)In, 0.0f, out, (int)Out);
    for (n = 0; n < N; n++)
        for (o = 0; o < Out; o++) out[n * Out + o] += b[o];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)In, (int)Out, 1.0f, dout, (int)Out,
                w, (int)In, 1.0f, dx, (int)In);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)Out, (int)In, (int)N, 1.0f, dout, (int)Out, x,
                (int)In, 1.0f, dw, (int)In);
    for (n = 0; n < N; n++)
        for (o = 0; o < Out; o++) db[o] += dout[n * Out + o];
}

static double layer_run(const layer *L, int blas, float *const *buf, int iters) {
    const int64_t *a = L->a;
    double t0 = now_s();
    int i;
    for (i = 0; i < iters; i++) {
        if (L->kind == 0) {
            int64_t N = a[0], Cin = a[1], H = a[2], W = a[3], Cout = a[4], k = a[5], st = a[6], p = a[7];
            if (blas) {
                bd__conv2d_forward_ref(buf[0], buf[1], buf[2], buf[3], buf[4], N, Cin, H, W, Cout, k, st, p);
                bd__conv2d_backward_ref(buf[5], buf[6], buf[7], buf[1], buf[0], buf[2], buf[3], N, Cin, H, W,
                                        Cout, k, st, p);
            } else {
                bd_conv2d_forward(buf[0], buf[1], buf[2], buf[3], buf[4], N, Cin, H, W, Cout, k, st, p);
                bd_conv2d_backward(buf[5], buf[6], buf[7], buf[1], buf[0], buf[2], buf[3], N, Cin, H, W, Cout,
                                   k, st, p);
            }
        } else if (L->kind == 1) {
            int64_t N = a[0], In = a[1], Out = a[2];
            if (blas) {
                lin_blas_fb(buf[0], buf[5], buf[6], buf[7], buf[2], buf[3], buf[4], buf[0], N, In, Out);
            } else {
                bd_linear_forward(buf[0], buf[2], buf[3], buf[4], N, In, Out);
                bd_linear_backward(buf[5], buf[6], buf[7], buf[0], buf[2], buf[3], N, In, Out);
            }
        } else {
            int64_t N = a[0], C = a[1], HW = a[2], h = a[3];
            if (blas) {
                bd__attention_forward_ref(buf[0], buf[1], buf[2], N, C, HW, h);
                bd__attention_backward_ref(buf[5], buf[6], buf[0], buf[2], buf[1], N, C, HW, h);
            } else {
                bd_attention_forward(buf[0], buf[1], buf[2], N, C, HW, h);
                bd_attention_backward(buf[5], buf[6], buf[0], buf[2], buf[1], N, C, HW, h);
            }
        }
    }
    return (now_s() - t0) / iters;
}

static void report_layers(layer_set *ls, int reps, double *sum_fast, double *sum_blas) {
    int i, r, b, nbest = 0;
    double best_save = 0.0;
    *sum_fast = *sum_blas = 0.0;
    printf("layer level (forward + backward; fast kernel vs im2col + cblas_sgemm reference path):\n");
    for (i = 0; i < ls->n; i++) {
        const layer *L = &ls->l[i];
        const int64_t *a = L->a;
        int64_t sz[8];
        float *buf[8];
        double tf[64], tb[64], fl;
        int iters;
        bd_rng rng = bd_rng_init(5);
        if (L->kind == 0) {
            int64_t Ho = (a[2] + 2 * a[7] - a[5]) / a[6] + 1, Wo = (a[3] + 2 * a[7] - a[5]) / a[6] + 1;
            int64_t ws = bd_conv2d_workspace_floats(a[1], a[2], a[3], a[5], a[6], a[7]);
            int64_t KK = a[1] * a[5] * a[5];
            sz[0] = a[0] * a[4] * Ho * Wo, sz[1] = ws > KK * Ho * Wo ? ws : KK * Ho * Wo;
            sz[2] = a[0] * a[1] * a[2] * a[3], sz[3] = a[4] * KK, sz[4] = a[4];
            sz[5] = sz[2], sz[6] = sz[3], sz[7] = a[4];
            fl = 3.0 * 2.0 * (double)a[0] * a[4] * Ho * Wo * KK;
        } else if (L->kind == 1) {
            sz[0] = a[0] * a[2], sz[1] = 1, sz[2] = a[0] * a[1], sz[3] = a[1] * a[2], sz[4] = a[2];
            sz[5] = sz[2], sz[6] = sz[3], sz[7] = a[2];
            fl = 3.0 * 2.0 * (double)a[0] * a[1] * a[2];
        } else {
            sz[0] = a[0] * a[1] * a[2], sz[1] = a[0] * a[3] * a[2] * a[2], sz[2] = 3 * sz[0];
            sz[3] = sz[4] = 1, sz[5] = sz[2], sz[6] = a[2] * a[2], sz[7] = 1;
            fl = 6.0 * 2.0 * (double)a[0] * a[1] * a[2] * a[2];
        }
        for (b = 0; b < 8; b++) {
            buf[b] = (float *)malloc((size_t)(sz[b] > 0 ? sz[b] : 1) * sizeof(float));
            bd_rng_uniform_fill(&rng, buf[b], sz[b], -1, 1);
        }
        iters = (int)(2e-3 * 20e9 / fl);
        if (iters < 1) iters = 1;
        if (iters > 5000) iters = 5000;
        layer_run(L, 0, buf, 1), layer_run(L, 1, buf, 1);
        for (r = 0; r < reps && r < 64; r++) {
            if (r & 1) tb[r] = layer_run(L, 1, buf, iters), tf[r] = layer_run(L, 0, buf, iters);
            else tf[r] = layer_run(L, 0, buf, iters), tb[r] = layer_run(L, 1, buf, iters);
        }
        r = reps < 64 ? reps : 64;
        qsort(tf, (size_t)r, sizeof(double), cmp_d);
        qsort(tb, (size_t)r, sizeof(double), cmp_d);
        if (L->kind == 0)
            printf("  conv %lldx%lld s%lld N=%-3lld %4lld->%-4lld %3lldx%-3lld x%-3lld", (long long)a[5],
                   (long long)a[5], (long long)a[6], (long long)a[0], (long long)a[1], (long long)a[4],
                   (long long)a[2], (long long)a[3], (long long)L->count);
        else if (L->kind == 1)
            printf("  linear N=%-3lld %4lld->%-4lld %22s x%-3lld", (long long)a[0], (long long)a[1],
                   (long long)a[2], "", (long long)L->count);
        else
            printf("  attention N=%-3lld C=%-4lld HW=%-4lld heads=%lld %9s x%-3lld", (long long)a[0],
                   (long long)a[1], (long long)a[2], (long long)a[3], "", (long long)L->count);
        printf("  fast %9.1fus  cblas %9.1fus  fast/cblas %5.2f\n", tf[r / 2] * 1e6, tb[r / 2] * 1e6,
               tf[r / 2] / tb[r / 2]);
        *sum_fast += tf[r / 2] * (double)L->count, *sum_blas += tb[r / 2] * (double)L->count;
        if (tb[r / 2] < tf[r / 2]) best_save += (tf[r / 2] - tb[r / 2]) * (double)L->count, nbest++;
        for (b = 0; b < 8; b++) free(buf[b]);
    }
    printf("layer total (calls x median): fast %.3f ms, cblas route %.3f ms, fast/cblas %.2f; "
           "the cblas route wins on %d of %d layers, routing just those saves %.3f ms (%.1f%%)\n",
           *sum_fast * 1e3, *sum_blas * 1e3, *sum_fast / *sum_blas, nbest, ls->n, best_save * 1e3,
           100.0 * best_save / *sum_fast);
}

static void report(const char *model, int64_t batch, shape_set *set, int reps) {
    double sum_b = 0.0, sum_c = 0.0, fl = 0.0, win_c = 0.0;
    int i, nwin = 0;
    printf("\n## %s, batch %lld: %d distinct GEMM shapes\n", model, (long long)batch, set->n);
    printf("%-11s %2s %6s %6s %6s %6s  %9s %9s  %7s %7s  %6s\n", "layer", "tt", "M", "N", "K", "calls",
           "builtin", "cblas", "GF/s bi", "GF/s cb", "bi/cb");
    for (i = 0; i < set->n; i++) {
        shape *s = &set->s[i];
        double tb, tc, md, f = 2.0 * (double)s->M * s->N * s->K;
        time_shape(s, reps, &tb, &tc, &md);
        printf("%-11s %c%c %6lld %6lld %6lld %6lld  %7.2fus %7.2fus  %7.1f %7.1f  %6.2f%s\n", s->what,
               s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', (long long)s->M, (long long)s->N, (long long)s->K,
               (long long)s->count, tb * 1e6, tc * 1e6, f / tb * 1e-9, f / tc * 1e-9, tb / tc,
               md > 1e-3 * (double)s->K ? "  (results differ!)" : "");
        sum_b += tb * (double)s->count, sum_c += tc * (double)s->count;
        fl += f * (double)s->count;
        if (tc < tb) nwin++, win_c += (tb - tc) * (double)s->count;
    }
    printf("total (calls x median): builtin %.3f ms, cblas %.3f ms, builtin/cblas %.2f; "
           "cblas faster on %d of %d shapes, per-shape best saves %.3f ms (%.1f%%); %.1f MFLOP\n",
           sum_b * 1e3, sum_c * 1e3, sum_b / sum_c, nwin, set->n, win_c * 1e3,
           100.0 * win_c / sum_b, fl * 1e-6);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 7, tiny, bi;
    static const int64_t batches[2] = {1, 64};
    static shape_set set;
    static layer_set layers;
    double sf, sb;
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    if (threads < 1) threads = 1;
    if (reps < 1) reps = 1;
#ifdef HAVE_OPENBLAS_EXT
    openblas_set_num_threads(threads);
    printf("OpenBLAS %s; core %s; OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s; openblas threads %d\n",
           openblas_get_config(), openblas_get_corename(), ct ? ct : "(unset)", l2 ? l2 : "(unset)",
           openblas_get_num_threads());
#else
    printf("CBLAS (not OpenBLAS): its thread count is not set here\n");
    (void)ct, (void)l2;
#endif
#ifdef _OPENMP
    omp_set_num_threads(threads);
    printf("OpenMP threads %d (built-in GEMM)\n", omp_get_max_threads());
#else
    printf("no OpenMP: the built-in GEMM runs on one thread\n");
#endif
    printf("times: median of %d interleaved repeats, seconds per call\n", reps);
    for (bi = 0; bi < 2; bi++) {
        memset(&set, 0, sizeof set);
        memset(&layers, 0, sizeof layers);
        g_layers = &layers;
        mlp_shapes(&set, batches[bi]);
        g_layers = NULL;
        report("mlp (dim 2, hidden 128, depth 3)", batches[bi], &set, reps);
        report_layers(&layers, reps, &sf, &sb);
    }
    for (tiny = 1; tiny >= 0; tiny--)
        for (bi = 0; bi < 2; bi++) {
            memset(&set, 0, sizeof set);
            memset(&layers, 0, sizeof layers);
            g_layers = &layers;
            if (!unet_shapes(&set, tiny, batches[bi])) return 1;
            g_layers = NULL;
            report(tiny ? "unet tiny (16x16, ch 16, 1,2)" : "unet small (28x28, ch 32, 1,2,2)",
                   batches[bi], &set, reps);
            report_layers(&layers, reps, &sf, &sb);
        }
    return 0;
}
