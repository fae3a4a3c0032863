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

int cli_moments(const double *feat0, int64_t n, int d, double *mu, double *cov) {
    double *feat;
    int64_t i;
    int a, b;
    if (n < 2 || d < 1) return 1;
    feat = (double *)malloc(sizeof(double) * (size_t)n * (size_t)d);
    if (!feat) return 1;
    memcpy(feat, feat0, sizeof(double) * (size_t)n * (size_t)d);
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
    free(feat);
    return 0;
}

int cli_feat_stats(cli_feat *f, const float *x, int64_t n, double *mu, double *cov) {
    double *feat;
    int rc;
    if (n < 2) return 1;
    feat = (double *)bd_alloc_array(f->ctx, (size_t)n * CLI_FEAT_DIM, sizeof(double));
    if (!feat) return 1;
    cli_feat_compute(f, feat, x, n);
    rc = cli_moments(feat, n, CLI_FEAT_DIM, mu, cov);
    bd_free(f->ctx, feat);
    return rc;
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

/* ---------------------------------------------------------------------- */
/* FD-CLF: Frechet distance in the features of a trained classifier        */
/* ---------------------------------------------------------------------- */
/* A small CNN of bdense's own layers (docs/fmnist.md "Sample quality"):
       4 x [conv3x3 (stride 1, 2, 2, 2) -> GroupNorm(4) + SiLU],
       widths 16, 32, 64, 128;  global average pool -> feature (128);
       linear 128 -> classes.
   Trained with softmax cross-entropy (bd_cross_entropy_*) and Adam; the
   pooled 128-d vector is the FD feature. */
static const int64_t cli__clf_width[CLI_CLF_LAYERS] = {16, 32, 64, 128};
static const int64_t cli__clf_stride[CLI_CLF_LAYERS] = {1, 2, 2, 2};
#define CLI_CLF_GROUPS 4

struct cli_clf {
    bd_context *ctx;
    int64_t C, H, W, classes, B, n_params;
    int64_t hs[CLI_CLF_LAYERS + 1], ws[CLI_CLF_LAYERS + 1]; /* spatial size into layer l */
    float *params, *grads;
    /* offsets into params / grads */
    int64_t ow[CLI_CLF_LAYERS], ob[CLI_CLF_LAYERS], og[CLI_CLF_LAYERS], obe[CLI_CLF_LAYERS], ofw, ofb;
    /* activations for B images */
    float *a[CLI_CLF_LAYERS], *h[CLI_CLF_LAYERS], *da, *dh0, *dh1, *col, *feat, *logits, *dfeat, *dlogits;
    float *mean, *rstd;
    bd_adam adam;
    int has_adam;
};

static int64_t cli__clf_cin(const cli_clf *c, int l) { return l == 0 ? c->C : cli__clf_width[l - 1]; }

void cli_clf_free(cli_clf *c) {
    int l;
    if (!c) return;
    free(c->params);
    free(c->grads);
    for (l = 0; l < CLI_CLF_LAYERS; l++) {
        free(c->a[l]);
        free(c->h[l]);
    }
    free(c->da);
    free(c->dh0);
    free(c->dh1);
    free(c->col);
    free(c->feat);
    free(c->logits);
    free(c->dfeat);
    free(c->dlogits);
    free(c->mean);
    free(c->rstd);
    if (c->has_adam) bd_adam_free(&c->adam);
    free(c);
}

static float *cli__fz(int64_t n) { return (float *)calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

/* the network without weights (zeros), buffers for batch B */
static int cli__clf_alloc(bd_context *ctx, int64_t C, int64_t H, int64_t W, int64_t classes, int64_t B,
                          cli_clf **out) {
    cli_clf *c;
    int64_t n = 0, amax = 0, colmax = 0;
    int l, ok = 1;
    *out = NULL;
    if (C < 1 || H < 8 || W < 8 || classes < 2 || B < 1 || C * H * W > 1 << 22) return 1;
    c = (cli_clf *)calloc(1, sizeof *c);
    if (!c) return 1;
    c->ctx = ctx;
    c->C = C, c->H = H, c->W = W, c->classes = classes, c->B = B;
    c->hs[0] = H, c->ws[0] = W;
    for (l = 0; l < CLI_CLF_LAYERS; l++) {
        int64_t cin = cli__clf_cin(c, l), co = cli__clf_width[l], s = cli__clf_stride[l], ws;
        c->hs[l + 1] = (c->hs[l] + 2 - 3) / s + 1;
        c->ws[l + 1] = (c->ws[l] + 2 - 3) / s + 1;
        c->ow[l] = n, n += co * cin * 9;
        c->ob[l] = n, n += co;
        c->og[l] = n, n += co;
        c->obe[l] = n, n += co;
        if (co * c->hs[l + 1] * c->ws[l + 1] > amax) amax = co * c->hs[l + 1] * c->ws[l + 1];
        ws = bd_conv2d_workspace_floats(cin, c->hs[l], c->ws[l], 3, s, 1);
        if (ws > colmax) colmax = ws;
    }
    c->ofw = n, n += classes * CLI_CLF_FEAT;
    c->ofb = n, n += classes;
    c->n_params = n;
    c->params = cli__fz(n);
    c->grads = cli__fz(n);
    for (l = 0; l < CLI_CLF_LAYERS; l++) {
        int64_t sz = B * cli__clf_width[l] * c->hs[l + 1] * c->ws[l + 1];
        c->a[l] = cli__fz(sz);
        c->h[l] = cli__fz(sz);
        ok = ok && c->a[l] && c->h[l];
    }
    c->da = cli__fz(B * amax);
    c->dh0 = cli__fz(B * amax);
    c->dh1 = cli__fz(B * amax);
    c->col = cli__fz(colmax);
    c->feat = cli__fz(B * CLI_CLF_FEAT);
    c->dfeat = cli__fz(B * CLI_CLF_FEAT);
    c->logits = cli__fz(B * classes);
    c->dlogits = cli__fz(B * classes);
    c->mean = cli__fz(B * CLI_CLF_GROUPS * CLI_CLF_LAYERS);
    c->rstd = cli__fz(B * CLI_CLF_GROUPS * CLI_CLF_LAYERS);
    if (!ok || !c->params || !c->grads || !c->da || !c->dh0 || !c->dh1 || !c->col || !c->feat || !c->dfeat ||
        !c->logits || !c->dlogits || !c->mean || !c->rstd) {
        cli_clf_free(c);
        return 1;
    }
    *out = c;
    return 0;
}

int cli_clf_create(bd_context *ctx, int64_t C, int64_t H, int64_t W, int64_t classes, int64_t B, uint64_t seed,
                   cli_clf **out) {
    cli_clf *c;
    bd_rng rng = bd_rng_init(seed);
    int l;
    int64_t i;
    if (cli__clf_alloc(ctx, C, H, W, classes, B, out)) return 1;
    c = *out;
    for (l = 0; l < CLI_CLF_LAYERS; l++) {
        int64_t cin = cli__clf_cin(c, l), co = cli__clf_width[l];
        cli__he(&rng, c->params + c->ow[l], co * cin * 9, cin * 9);
        for (i = 0; i < co; i++) c->params[c->og[l] + i] = 1.0f;
    }
    bd_rng_normal(&rng, c->params + c->ofw, classes * CLI_CLF_FEAT);
    for (i = 0; i < classes * CLI_CLF_FEAT; i++) c->params[c->ofw + i] *= (float)(1.0 / sqrt((double)CLI_CLF_FEAT));
    return 0;
}

int64_t cli_clf_params(const cli_clf *c) { return c->n_params; }

/* forward of n <= B images: c->h[], c->feat, c->logits */
static void cli__clf_forward(cli_clf *c, const float *x, int64_t n) {
    int l;
    int64_t i, k;
    const float *in = x;
    for (l = 0; l < CLI_CLF_LAYERS; l++) {
        int64_t cin = cli__clf_cin(c, l), co = cli__clf_width[l], hw = c->hs[l + 1] * c->ws[l + 1];
        bd_conv2d_forward(c->a[l], c->col, in, c->params + c->ow[l], c->params + c->ob[l], n, cin, c->hs[l],
                          c->ws[l], co, 3, cli__clf_stride[l], 1);
        bd_groupnorm_silu_forward(c->h[l], c->mean + l * c->B * CLI_CLF_GROUPS, c->rstd + l * c->B * CLI_CLF_GROUPS, c->a[l], c->params + c->og[l], c->params + c->obe[l],
                                  n, co, hw, CLI_CLF_GROUPS);
        in = c->h[l];
    }
    {
        int64_t hw = c->hs[CLI_CLF_LAYERS] * c->ws[CLI_CLF_LAYERS];
        for (i = 0; i < n * CLI_CLF_FEAT; i++) {
            const float *p = c->h[CLI_CLF_LAYERS - 1] + i * hw;
            double s = 0;
            for (k = 0; k < hw; k++) s += p[k];
            c->feat[i] = (float)(s / (double)hw);
        }
    }
    bd_linear_forward(c->logits, c->feat, c->params + c->ofw, c->params + c->ofb, n, CLI_CLF_FEAT, c->classes);
}

double cli_clf_train_step(cli_clf *c, const float *x, const int32_t *y, int64_t n, double lr, bd_result *res) {
    int l;
    int64_t i, k, hw;
    double loss;
    float *dh = c->dh0;
    *res = BD_SUCCESS;
    if (!c->has_adam) {
        bd_adam_config ac = bd_adam_config_init();
        ac.grad_clip = 5.0;
        ac.weight_decay = 0.0;
        if ((*res = bd_adam_init(c->ctx, &ac, c->n_params, &c->adam)) != BD_SUCCESS) return NAN;
        c->has_adam = 1;
    }
    c->adam.config.lr = lr;
    c->adam.config.warmup_steps = 0;
    c->adam.config.lr_schedule = BD_LR_CONSTANT;
    cli__clf_forward(c, x, n);
    loss = bd_cross_entropy_forward(NULL, c->logits, y, n, c->classes);
    memset(c->grads, 0, sizeof(float) * (size_t)c->n_params);
    memset(c->dlogits, 0, sizeof(float) * (size_t)(n * c->classes));
    memset(c->dfeat, 0, sizeof(float) * (size_t)(n * CLI_CLF_FEAT));
    bd_cross_entropy_backward(c->dlogits, c->logits, y, n, c->classes);
    bd_linear_backward(c->dfeat, c->grads + c->ofw, c->grads + c->ofb, c->dlogits, c->feat, c->params + c->ofw, n,
                       CLI_CLF_FEAT, c->classes);
    hw = c->hs[CLI_CLF_LAYERS] * c->ws[CLI_CLF_LAYERS];
    for (i = 0; i < n * CLI_CLF_FEAT; i++)
        for (k = 0; k < hw; k++) dh[i * hw + k] = c->dfeat[i] / (float)hw;
    for (l = CLI_CLF_LAYERS - 1; l >= 0; l--) {
        int64_t cin = cli__clf_cin(c, l), co = cli__clf_width[l], hwl = c->hs[l + 1] * c->ws[l + 1];
        float *dprev = dh == c->dh0 ? c->dh1 : c->dh0;
        memset(c->da, 0, sizeof(float) * (size_t)(n * co * hwl));
        bd_groupnorm_silu_backward(c->da, c->grads + c->og[l], c->grads + c->obe[l], dh, c->a[l], c->mean + l * c->B * CLI_CLF_GROUPS,
                                   c->rstd + l * c->B * CLI_CLF_GROUPS,
                                   c->params + c->og[l], c->params + c->obe[l], n, co, hwl, CLI_CLF_GROUPS);
        if (l > 0) memset(dprev, 0, sizeof(float) * (size_t)(n * cin * c->hs[l] * c->ws[l]));
        bd_conv2d_backward(l > 0 ? dprev : NULL, c->grads + c->ow[l], c->grads + c->ob[l], c->col, c->da,
                           l > 0 ? c->h[l - 1] : x, c->params + c->ow[l], n, cin, c->hs[l], c->ws[l], co, 3,
                           cli__clf_stride[l], 1);
        dh = dprev;
    }
    *res = bd_adam_step(&c->adam, c->params, c->grads, NULL);
    return loss;
}

/* logits argmax accuracy and mean cross-entropy over n images */
double cli_clf_accuracy(cli_clf *c, const float *x, const int32_t *y, int64_t n, double *mean_loss) {
    int64_t i0, i, k, right = 0, D = c->C * c->H * c->W;
    double loss = 0;
    for (i0 = 0; i0 < n; i0 += c->B) {
        int64_t b = n - i0 < c->B ? n - i0 : c->B;
        cli__clf_forward(c, x + i0 * D, b);
        loss += (double)b * bd_cross_entropy_forward(NULL, c->logits, y + i0, b, c->classes);
        for (i = 0; i < b; i++) {
            int64_t best = 0;
            for (k = 1; k < c->classes; k++)
                if (c->logits[i * c->classes + k] > c->logits[i * c->classes + best]) best = k;
            right += best == y[i0 + i];
        }
    }
    if (mean_loss) *mean_loss = loss / (double)n;
    return (double)right / (double)n;
}

void cli_clf_features(cli_clf *c, double *feat, const float *x, int64_t n) {
    int64_t i0, i, D = c->C * c->H * c->W;
    for (i0 = 0; i0 < n; i0 += c->B) {
        int64_t b = n - i0 < c->B ? n - i0 : c->B;
        cli__clf_forward(c, x + i0 * D, b);
        for (i = 0; i < b * CLI_CLF_FEAT; i++) feat[i0 * CLI_CLF_FEAT + i] = c->feat[i];
    }
}

void cli_clf_shape(const cli_clf *c, int64_t *C, int64_t *H, int64_t *W) { *C = c->C, *H = c->H, *W = c->W; }

bd_result cli_clf_save(cli_clf *c, const char *path, double test_acc) {
    bd_st_write_tensor t[4 * CLI_CLF_LAYERS + 2];
    bd_st_kv kv[6];
    char names[4 * CLI_CLF_LAYERS][32], meta[4][64];
    int l, nt = 0;
    memset(t, 0, sizeof t);
    for (l = 0; l < CLI_CLF_LAYERS; l++) {
        int64_t cin = cli__clf_cin(c, l), co = cli__clf_width[l];
        snprintf(names[4 * l], 32, "conv%d.weight", l);
        snprintf(names[4 * l + 1], 32, "conv%d.bias", l);
        snprintf(names[4 * l + 2], 32, "norm%d.weight", l);
        snprintf(names[4 * l + 3], 32, "norm%d.bias", l);
        t[nt].name = names[4 * l], t[nt].data = c->params + c->ow[l], t[nt].ndim = 4;
        t[nt].shape[0] = co, t[nt].shape[1] = cin, t[nt].shape[2] = 3, t[nt].shape[3] = 3, nt++;
        t[nt].name = names[4 * l + 1], t[nt].data = c->params + c->ob[l], t[nt].ndim = 1, t[nt].shape[0] = co, nt++;
        t[nt].name = names[4 * l + 2], t[nt].data = c->params + c->og[l], t[nt].ndim = 1, t[nt].shape[0] = co, nt++;
        t[nt].name = names[4 * l + 3], t[nt].data = c->params + c->obe[l], t[nt].ndim = 1, t[nt].shape[0] = co, nt++;
    }
    t[nt].name = "fc.weight", t[nt].data = c->params + c->ofw, t[nt].ndim = 2;
    t[nt].shape[0] = c->classes, t[nt].shape[1] = CLI_CLF_FEAT, nt++;
    t[nt].name = "fc.bias", t[nt].data = c->params + c->ofb, t[nt].ndim = 1, t[nt].shape[0] = c->classes, nt++;
    snprintf(meta[0], 64, "%lld,%lld,%lld", (long long)c->C, (long long)c->H, (long long)c->W);
    snprintf(meta[1], 64, "%lld", (long long)c->classes);
    snprintf(meta[2], 64, "%.4f", test_acc);
    snprintf(meta[3], 64, "16,32,64,128;strides 1,2,2,2;gn%d;silu;avgpool", CLI_CLF_GROUPS);
    kv[0].key = "bdense.classifier.input", kv[0].value = meta[0];
    kv[1].key = "bdense.classifier.classes", kv[1].value = meta[1];
    kv[2].key = "bdense.classifier.test_accuracy", kv[2].value = meta[2];
    kv[3].key = "bdense.classifier.arch", kv[3].value = meta[3];
    kv[4].key = "bdense.version", kv[4].value = BDENSE_VERSION_STRING;
    return bd_safetensors_write(c->ctx, path, t, nt, kv, 5);
}

int cli_clf_load(bd_context *ctx, const char *path, int64_t B, cli_clf **out, char *err, size_t errn) {
    bd_safetensors *st = NULL;
    const char *in, *cls, *arch;
    long long C, H, W, K;
    cli_clf *c = NULL;
    int l;
    bd_result r;
    *out = NULL;
    if ((r = bd_safetensors_load(ctx, path, &st)) != BD_SUCCESS) {
        snprintf(err, errn, "%s: %s", bd_result_string(r), bd_context_message(ctx));
        return 1;
    }
    in = bd_safetensors_meta(st, "bdense.classifier.input");
    cls = bd_safetensors_meta(st, "bdense.classifier.classes");
    arch = bd_safetensors_meta(st, "bdense.classifier.arch");
    if (!in || !cls || !arch || sscanf(in, "%lld,%lld,%lld", &C, &H, &W) != 3 || sscanf(cls, "%lld", &K) != 1 ||
        strncmp(arch, "16,32,64,128;", 13) != 0) {
        snprintf(err, errn, "not a bdense classifier (no bdense.classifier.* metadata; make one with bdense classifier)");
        bd_safetensors_free(st);
        return 1;
    }
    if (cli__clf_alloc(ctx, C, H, W, K, B, &c)) {
        snprintf(err, errn, "classifier for %lldx%lldx%lld images, %lld classes: bad shape or out of memory", C, H, W,
                 K);
        bd_safetensors_free(st);
        return 1;
    }
    for (l = 0; l <= CLI_CLF_LAYERS; l++) {
        int j;
        for (j = 0; j < 4; j++) {
            char name[32];
            const bd_st_tensor *t;
            int64_t off, cnt;
            if (l == CLI_CLF_LAYERS) {
                if (j >= 2) break;
                snprintf(name, 32, j == 0 ? "fc.weight" : "fc.bias");
                off = j == 0 ? c->ofw : c->ofb;
                cnt = j == 0 ? c->classes * CLI_CLF_FEAT : c->classes;
            } else {
                int64_t co = cli__clf_width[l];
                snprintf(name, 32, j == 0 ? "conv%d.weight" : j == 1 ? "conv%d.bias" : j == 2 ? "norm%d.weight" : "norm%d.bias", l);
                off = j == 0 ? c->ow[l] : j == 1 ? c->ob[l] : j == 2 ? c->og[l] : c->obe[l];
                cnt = j == 0 ? co * cli__clf_cin(c, l) * 9 : co;
            }
            t = bd_safetensors_find(st, name);
            if (!t || t->numel != cnt) {
                snprintf(err, errn, "tensor %s missing or not of %lld values", name, (long long)cnt);
                cli_clf_free(c);
                bd_safetensors_free(st);
                return 1;
            }
            memcpy(c->params + off, t->data, sizeof(float) * (size_t)cnt);
        }
    }
    bd_safetensors_free(st);
    *out = c;
    return 0;
}

int cli_fdclf(const char *cmd, cli_clf *c, const float *x, int64_t n, const float *ref, int64_t nref, double *fd) {
    const int d = CLI_CLF_FEAT;
    int64_t m = n > nref ? n : nref;
    double *feat = (double *)malloc(sizeof(double) * (size_t)m * d);
    double *mu = (double *)malloc(sizeof(double) * 2 * (size_t)(d + d * d));
    int rc = 0;
    if (!feat || !mu) {
        free(feat);
        free(mu);
        return cli_fail(cmd, "out of memory");
    }
    cli_clf_features(c, feat, x, n);
    if (cli_moments(feat, n, d, mu, mu + 2 * d)) rc = 1;
    cli_clf_features(c, feat, ref, nref);
    if (!rc && cli_moments(feat, nref, d, mu + d, mu + 2 * d + d * d)) rc = 1;
    if (rc)
        rc = cli_fail(cmd, "feature statistics need at least 2 images on each side");
    else
        *fd = cli_frechet(mu, mu + 2 * d, mu + d, mu + 2 * d + d * d, d);
    free(feat);
    free(mu);
    return rc;
}
