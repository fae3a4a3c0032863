/* metric.c - FD-RF: Frechet distance in the feature space of a fixed,
   seeded random convolutional network.  Needs no downloads and gives the
   same number on every machine for the same images (up to float rounding of
   the GEMM).  docs/cli.md describes it; the constants below ARE the metric,
   so changing any of them changes every reported number.

   Network (weights drawn once from bd_rng seed CLI_FEAT_SEED, He-normal,
   zero biases), input (N,C,H,W) in [-1,1]:
       h1 = avgpool2(relu(conv3x3(x,  C -> 32)))
       h2 = avgpool2(relu(conv3x3(h1, 32 -> 64)))
       h3 = relu(conv3x3(h2, 64 -> 128))
       feature = [global mean of h2 (64) | global mean of h3 (128)]  (192)
   FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2),
   means and covariances (1/(n-1)) in double, matrix roots by Jacobi
   eigendecomposition. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CLI_FEAT_SEED 20240229u
#define CLI_FEAT_C1 32
#define CLI_FEAT_C2 64
#define CLI_FEAT_C3 128
#define CLI_FEAT_BATCH 50

struct cli_feat {
    bd_context *ctx;
    int64_t C, H, W, H2, W2, H4, W4;
    float *w1, *w2, *w3, *b1, *b2, *b3;
    float *a1, *p1, *a2, *p2, *a3, *col;
};

static void cli__he(bd_rng *rng, float *w, int64_t n, int64_t fan_in) {
    int64_t i;
    float s = (float)sqrt(2.0 / (double)fan_in);
    bd_rng_normal(rng, w, n);
    for (i = 0; i < n; i++) w[i] *= s;
}

static void cli__relu(float *x, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++)
        if (x[i] < 0) x[i] = 0;
}

/* out (N,C,H/2,W/2) = 2x2 mean of x (N,C,H,W) (floor for odd sizes) */
static void cli__avgpool2(float *out, const float *x, int64_t NC, int64_t H, int64_t W) {
    int64_t Ho = H / 2, Wo = W / 2, c, i, j;
    for (c = 0; c < NC; c++) {
        const float *xp = x + c * H * W;
        float *op = out + c * Ho * Wo;
        for (i = 0; i < Ho; i++)
            for (j = 0; j < Wo; j++)
                op[i * Wo + j] = 0.25f * (xp[(2 * i) * W + 2 * j] + xp[(2 * i) * W + 2 * j + 1] +
                                          xp[(2 * i + 1) * W + 2 * j] + xp[(2 * i + 1) * W + 2 * j + 1]);
    }
}

void cli_feat_free(cli_feat *f) {
    if (!f) return;
    bd_free(f->ctx, f->w1);
    bd_free(f->ctx, f->a1);
    bd_free(f->ctx, f);
}

int cli_feat_init(bd_context *ctx, int64_t C, int64_t H, int64_t W, cli_feat **out) {
    cli_feat *f;
    bd_rng rng;
    int64_t nw, na, ws1, ws2, ws3, ws;
    *out = NULL;
    if (C < 1 || H < 4 || W < 4) return 1;
    f = (cli_feat *)bd_alloc(ctx, sizeof *f);
    if (!f) return 1;
    memset(f, 0, sizeof *f);
    f->ctx = ctx;
    f->C = C;
    f->H = H;
    f->W = W;
    f->H2 = H / 2;
    f->W2 = W / 2;
    f->H4 = f->H2 / 2;
    f->W4 = f->W2 / 2;
    nw = CLI_FEAT_C1 * C * 9 + CLI_FEAT_C2 * CLI_FEAT_C1 * 9 + CLI_FEAT_C3 * CLI_FEAT_C2 * 9 + CLI_FEAT_C1 +
         CLI_FEAT_C2 + CLI_FEAT_C3;
    f->w1 = (float *)bd_alloc_array(ctx, (size_t)nw, sizeof(float));
    if (!f->w1) {
        cli_feat_free(f);
        return 1;
    }
    f->w2 = f->w1 + CLI_FEAT_C1 * C * 9;
    f->w3 = f->w2 + CLI_FEAT_C2 * CLI_FEAT_C1 * 9;
    f->b1 = f->w3 + CLI_FEAT_C3 * CLI_FEAT_C2 * 9;
    f->b2 = f->b1 + CLI_FEAT_C1;
    f->b3 = f->b2 + CLI_FEAT_C2;
    rng = bd_rng_init(CLI_FEAT_SEED);
    cli__he(&rng, f->w1, CLI_FEAT_C1 * C * 9, C * 9);
    cli__he(&rng, f->w2, CLI_FEAT_C2 * CLI_FEAT_C1 * 9, CLI_FEAT_C1 * 9);
    cli__he(&rng, f->w3, CLI_FEAT_C3 * CLI_FEAT_C2 * 9, CLI_FEAT_C2 * 9);
    memset(f->b1, 0, sizeof(float) * (CLI_FEAT_C1 + CLI_FEAT_C2 + CLI_FEAT_C3));
    ws1 = bd_conv2d_workspace_floats(C, H, W, 3, 1, 1);
    ws2 = bd_conv2d_workspace_floats(CLI_FEAT_C1, f->H2, f->W2, 3, 1, 1);
    ws3 = bd_conv2d_workspace_floats(CLI_FEAT_C2, f->H4, f->W4, 3, 1, 1);
    ws = ws1 > ws2 ? ws1 : ws2;
    ws = ws > ws3 ? ws : ws3;
    na = CLI_FEAT_BATCH * (CLI_FEAT_C1 * H * W + CLI_FEAT_C1 * f->H2 * f->W2 + CLI_FEAT_C2 * f->H2 * f->W2 +
                           CLI_FEAT_C2 * f->H4 * f->W4 + CLI_FEAT_C3 * f->H4 * f->W4) +
         ws;
    f->a1 = (float *)bd_alloc_array(ctx, (size_t)na, sizeof(float));
    if (!f->a1) {
        cli_feat_free(f);
        return 1;
    }
    f->p1 = f->a1 + CLI_FEAT_BATCH * CLI_FEAT_C1 * H * W;
    f->a2 = f->p1 + CLI_FEAT_BATCH * CLI_FEAT_C1 * f->H2 * f->W2;
    f->p2 = f->a2 + CLI_FEAT_BATCH * CLI_FEAT_C2 * f->H2 * f->W2;
    f->a3 = f->p2 + CLI_FEAT_BATCH * CLI_FEAT_C2 * f->H4 * f->W4;
    f->col = f->a3 + CLI_FEAT_BATCH * CLI_FEAT_C3 * f->H4 * f->W4;
    *out = f;
    return 0;
}

/* feat (n, CLI_FEAT_DIM) of x (n,C,H,W) */
void cli_feat_compute(cli_feat *f, double *feat, const float *x, int64_t n) {
    int64_t i0;
    for (i0 = 0; i0 < n; i0 += CLI_FEAT_BATCH) {
        int64_t b = n - i0 < CLI_FEAT_BATCH ? n - i0 : CLI_FEAT_BATCH, i, c, k;
        int64_t hw2 = f->H2 * f->W2, hw4 = f->H4 * f->W4;
        bd_conv2d_forward(f->a1, f->col, x + i0 * f->C * f->H * f->W, f->w1, f->b1, b, f->C, f->H, f->W,
                          CLI_FEAT_C1, 3, 1, 1);
        cli__relu(f->a1, b * CLI_FEAT_C1 * f->H * f->W);
        cli__avgpool2(f->p1, f->a1, b * CLI_FEAT_C1, f->H, f->W);
        bd_conv2d_forward(f->a2, f->col, f->p1, f->w2, f->b2, b, CLI_FEAT_C1, f->H2, f->W2, CLI_FEAT_C2, 3, 1, 1);
        cli__relu(f->a2, b * CLI_FEAT_C2 * hw2);
        cli__avgpool2(f->p2, f->a2, b * CLI_FEAT_C2, f->H2, f->W2);
        bd_conv2d_forward(f->a3, f->col, f->p2, f->w3, f->b3, b, CLI_FEAT_C2, f->H4, f->W4, CLI_FEAT_C3, 3, 1, 1);
        cli__relu(f->a3, b * CLI_FEAT_C3 * hw4);
        for (i = 0; i < b; i++) {
            double *o = feat + (i0 + i) * CLI_FEAT_DIM;
            for (c = 0; c < CLI_FEAT_C2; c++) {
                const float *p = f->a2 + (i * CLI_FEAT_C2 + c) * hw2;
                double s = 0;
                for (k = 0; k < hw2; k++) s += p[k];
                o[c] = s / (double)hw2;
            }
            for (c = 0; c < CLI_FEAT_C3; c++) {
                const float *p = f->a3 + (i * CLI_FEAT_C3 + c) * hw4;
                double s = 0;
                for (k = 0; k < hw4; k++) s += p[k];
                o[CLI_FEAT_C2 + c] = s / (double)hw4;
            }
        }
    }
}

int cli_feat_stats(cli_feat *f, const float *x, int64_t n, double *mu, double *cov) {
    const int d = CLI_FEAT_DIM;
    double *feat;
    int64_t i;
    int a, b;
    if (n < 2) return 1;
    feat = (double *)bd_alloc_array(f->ctx, (size_t)n * d, sizeof(double));
    if (!feat) return 1;
    cli_feat_compute(f, feat, x, n);
    for (a = 0; a < d; a++) {
        double s = 0;
        for (i = 0; i < n; i++) s += feat[i * d + a];
        mu[a] = s / (double)n;
    }
    for (i = 0; i < n; i++)
        for (a = 0; a < d; a++) feat[i * d + a] -= mu[a];
    for (a = 0; a < d; a++)
        for (b = a; b < d; b++) {
            double s = 0;
            for (i = 0; i < n; i++) s += feat[i * d + a] * feat[i * d + b];
            cov[a * d + b] = cov[b * d + a] = s / (double)(n - 1);
        }
    bd_free(f->ctx, feat);
    return 0;
}

/* Cyclic Jacobi eigendecomposition of a symmetric d x d matrix A (destroyed):
   eigenvalues in ev, eigenvectors as the columns of V. */
static void cli__jacobi(double *A, double *V, double *ev, int d) {
    int sweep, p, q, k;
    for (p = 0; p < d; p++)
        for (q = 0; q < d; q++) V[p * d + q] = p == q ? 1.0 : 0.0;
    for (sweep = 0; sweep < 100; sweep++) {
        double off = 0, tot = 0;
        for (p = 0; p < d; p++)
            for (q = 0; q < d; q++) {
                double v = A[p * d + q] * A[p * d + q];
                tot += v;
                if (p != q) off += v;
            }
        if (off <= 1e-30 * tot || off == 0) break;
        for (p = 0; p < d - 1; p++)
            for (q = p + 1; q < d; q++) {
                double apq = A[p * d + q], app, aqq, theta, t, c, s;
                if (fabs(apq) < 1e-300) continue;
                app = A[p * d + p];
                aqq = A[q * d + q];
                theta = (aqq - app) / (2 * apq);
                t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                c = 1 / sqrt(t * t + 1);
                s = t * c;
                for (k = 0; k < d; k++) { /* columns p, q */
                    double akp = A[k * d + p], akq = A[k * d + q];
                    A[k * d + p] = c * akp - s * akq;
                    A[k * d + q] = s * akp + c * akq;
                }
                for (k = 0; k < d; k++) { /* rows p, q */
                    double apk = A[p * d + k], aqk = A[q * d + k];
                    A[p * d + k] = c * apk - s * aqk;
                    A[q * d + k] = s * apk + c * aqk;
                }
                for (k = 0; k < d; k++) {
                    double vkp = V[k * d + p], vkq = V[k * d + q];
                    V[k * d + p] = c * vkp - s * vkq;
                    V[k * d + q] = s * vkp + c * vkq;
                }
            }
    }
    for (p = 0; p < d; p++) ev[p] = A[p * d + p];
}

double cli_frechet(const double *mu1, const double *c1, const double *mu2, const double *c2, int d) {
    double *A = (double *)malloc(sizeof(double) * (size_t)d * d * 4 + sizeof(double) * (size_t)d);
    double *V, *R, *T, *ev, fd = 0, tr = 0;
    int i, j, k;
    if (!A) return NAN;
    V = A + d * d;
    R = V + d * d;
    T = R + d * d;
    ev = T + d * d;
    for (i = 0; i < d; i++) fd += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
    for (i = 0; i < d; i++) fd += c1[i * d + i] + c2[i * d + i];
    /* R = S1^1/2 */
    memcpy(A, c1, sizeof(double) * (size_t)d * d);
    cli__jacobi(A, V, ev, d);
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            double s = 0;
            for (k = 0; k < d; k++) s += V[i * d + k] * sqrt(ev[k] > 0 ? ev[k] : 0) * V[j * d + k];
            R[i * d + j] = s;
        }
    /* A = R S2 R (symmetric PSD) */
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            double s = 0;
            for (k = 0; k < d; k++) s += R[i * d + k] * c2[k * d + j];
            T[i * d + j] = s;
        }
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            double s = 0;
            for (k = 0; k < d; k++) s += T[i * d + k] * R[k * d + j];
            A[i * d + j] = s;
        }
    for (i = 0; i < d; i++)
        for (j = i + 1; j < d; j++) A[i * d + j] = A[j * d + i] = 0.5 * (A[i * d + j] + A[j * d + i]);
    cli__jacobi(A, V, ev, d);
    for (i = 0; i < d; i++) tr += sqrt(ev[i] > 0 ? ev[i] : 0);
    fd -= 2 * tr;
    free(A);
    return fd < 0 ? 0 : fd;
}
