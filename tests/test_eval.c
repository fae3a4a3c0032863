/* test_eval.c - FD-CLF, the trained-feature Frechet distance of `bdense
   eval --features`: the cross-entropy layer (finite differences in double
   and the PyTorch vector of tests/ref/make_ce_refs.py), the sample moments
   + Frechet distance on Gaussians with a closed form, the classifier
   (gradient check through its backward, training on a toy task, save and
   load), and the binary on tiny labelled IDX files and on the built-in
   shapes: bdense classifier -> bdense eval --features. */
#define _POSIX_C_SOURCE 200809L
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include "cli/util.c"
#include "cli/metric.c"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *bdt_bin = "build/bdense";
static char bdt_tmp[256];
/* TEST_QUICK=1: the CI's second and third passes (tests/run.sh TEST_QUICK_ONLY) */
static int quick(void) { return getenv("TEST_QUICK") != NULL; }

static int bdt_sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    int st;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

/* ---- cross-entropy ----------------------------------------------------- */
static double ce_loss_d(const double *l, const int32_t *y, int64_t N, int64_t C) {
    /* the loss in double from double logits (independent of the kernel) */
    int64_t n, c;
    double t = 0;
    for (n = 0; n < N; n++) {
        double m = l[n * C], s = 0;
        for (c = 1; c < C; c++) m = l[n * C + c] > m ? l[n * C + c] : m;
        for (c = 0; c < C; c++) s += exp(l[n * C + c] - m);
        t += log(s) + m - l[n * C + y[n]];
    }
    return t / (double)N;
}

static void test_cross_entropy_fd(void) {
    enum { N = 5, C = 7 };
    float l[N * C], g[N * C], p[N * C];
    double ld[N * C];
    int32_t y[N] = {0, 6, 3, 3, 1};
    bd_rng rng = bd_rng_init(3);
    int64_t i, n;
    double worst = 0, L, Ld;
    bd_rng_normal(&rng, l, N * C);
    for (i = 0; i < N * C; i++) l[i] *= 2.0f, ld[i] = l[i], g[i] = 0.25f; /* g pre-filled: backward adds */
    L = bd_cross_entropy_forward(p, l, y, N, C);
    Ld = ce_loss_d(ld, y, N, C);
    BDT_CHECKF(fabs(L - Ld) < 1e-12, "loss %.15g vs %.15g", L, Ld);
    for (n = 0; n < N; n++) {
        double s = 0;
        for (i = 0; i < C; i++) s += p[n * C + i];
        BDT_CHECKF(fabs(s - 1) < 1e-6, "softmax row %lld sums to %g", (long long)n, s);
    }
    bd_cross_entropy_backward(g, l, y, N, C);
    for (i = 0; i < N * C; i++) {
        /* central 4th-order difference in double on the double loss */
        double h = 1e-3, keep = ld[i], a, b, a2, b2, num, err;
        ld[i] = keep + h; a = ce_loss_d(ld, y, N, C);
        ld[i] = keep - h; b = ce_loss_d(ld, y, N, C);
        ld[i] = keep + 2 * h; a2 = ce_loss_d(ld, y, N, C);
        ld[i] = keep - 2 * h; b2 = ce_loss_d(ld, y, N, C);
        ld[i] = keep;
        num = (8 * (a - b) - (a2 - b2)) / (12 * h);
        err = fabs((g[i] - 0.25) - num);
        if (err > worst) worst = err;
    }
    BDT_CHECKF(worst < 1e-6, "worst |analytic - numeric| %.3g", worst);
    /* a label outside 0..C-1: NaN loss, backward leaves that row alone */
    {
        int32_t bad[2] = {1, 7};
        float gb[2 * C];
        memset(gb, 0, sizeof gb);
        BDT_CHECK(isnan(bd_cross_entropy_forward(NULL, l, bad, 2, C)));
        bd_cross_entropy_backward(gb, l, bad, 2, C);
        for (i = C; i < 2 * C; i++) BDT_CHECK(gb[i] == 0.0f);
    }
}

static void test_cross_entropy_torch(void) {
    FILE *f = fopen("tests/ref/data/cross_entropy.txt", "r");
    int cases = 0;
    BDT_CHECKF(f != NULL, "tests/ref/data/cross_entropy.txt missing (tests/ref/make_ce_refs.py)");
    if (!f) return;
    for (;;) {
        long long N, C;
        int64_t i;
        float *l, *g;
        int32_t *y;
        double ref, L, worst = 0;
        if (fscanf(f, " case %lld %lld", &N, &C) != 2) break;
        l = (float *)malloc(sizeof(float) * (size_t)(N * C));
        g = (float *)calloc((size_t)(N * C), sizeof(float));
        y = (int32_t *)malloc(sizeof(int32_t) * (size_t)N);
        for (i = 0; i < N * C; i++) BDT_CHECK(fscanf(f, "%f", &l[i]) == 1);
        for (i = 0; i < N; i++) {
            int v = 0;
            BDT_CHECK(fscanf(f, "%d", &v) == 1);
            y[i] = v;
        }
        BDT_CHECK(fscanf(f, "%lf", &ref) == 1);
        L = bd_cross_entropy_forward(NULL, l, y, N, C);
        BDT_CHECKF(fabs(L - ref) <= 1e-6 + 1e-6 * fabs(ref), "case %d loss %.9g vs torch %.9g", cases, L, ref);
        bd_cross_entropy_backward(g, l, y, N, C);
        for (i = 0; i < N * C; i++) {
            double r;
            BDT_CHECK(fscanf(f, "%lf", &r) == 1);
            if (fabs(g[i] - r) > worst) worst = fabs(g[i] - r);
        }
        BDT_CHECKF(worst < 1e-6, "case %d dlogits worst diff %.3g", cases, worst);
        free(l);
        free(g);
        free(y);
        cases++;
    }
    fclose(f);
    BDT_CHECKF(cases == 3, "read %d cases", cases);
}

/* ---- Frechet distance from samples of Gaussians ------------------------- */
static void test_frechet_sampled_gaussians(void) {
    /* N(mu1, diag(a)) vs N(mu2, L L^T) with a 2x2 non-diagonal block:
       closed form |dmu|^2 + tr S1 + tr S2 - 2 tr sqrt(S1^1/2 S2 S1^1/2) */
    enum { D = 3 };
    const int64_t n = 40000;
    double *f1 = (double *)malloc(sizeof(double) * (size_t)n * D), *f2 = (double *)malloc(sizeof(double) * (size_t)n * D);
    double mu1[D] = {0.5, -1, 0}, mu2[D] = {0, 0, 0.3}, a[D] = {1.0, 2.0, 0.5};
    double Lc[4] = {1.2, 0, 0.6, 0.8}; /* S2 block = L L^T for dims 0,1; dim 2 var 1.5 */
    double m1[D], m2[D], c1[D * D], c2[D * D], fd, expect, S2[4], p[4], tr12, det;
    bd_rng rng = bd_rng_init(11);
    int64_t i;
    int k;
    for (i = 0; i < n; i++) {
        double z[D];
        for (k = 0; k < D; k++) f1[i * D + k] = mu1[k] + sqrt(a[k]) * bd_rng_normal1(&rng);
        for (k = 0; k < D; k++) z[k] = bd_rng_normal1(&rng);
        f2[i * D + 0] = mu2[0] + Lc[0] * z[0];
        f2[i * D + 1] = mu2[1] + Lc[2] * z[0] + Lc[3] * z[1];
        f2[i * D + 2] = mu2[2] + sqrt(1.5) * z[2];
    }
    BDT_CHECK(cli_moments(f1, n, D, m1, c1) == 0 && cli_moments(f2, n, D, m2, c2) == 0);
    BDT_CHECK(cli_moments(f1, 1, D, m1, c1) != 0); /* n >= 2 */
    fd = cli_frechet(m1, c1, m2, c2, D);
    S2[0] = Lc[0] * Lc[0], S2[1] = S2[2] = Lc[0] * Lc[2], S2[3] = Lc[2] * Lc[2] + Lc[3] * Lc[3];
    p[0] = a[0], p[1] = p[2] = 0, p[3] = a[1];
    tr12 = p[0] * S2[0] + p[3] * S2[3];
    det = (p[0] * p[3]) * (S2[0] * S2[3] - S2[1] * S2[2]);
    expect = 0;
    for (k = 0; k < D; k++) expect += (mu1[k] - mu2[k]) * (mu1[k] - mu2[k]);
    expect += a[0] + a[1] + S2[0] + S2[3] - 2 * sqrt(tr12 + 2 * sqrt(det));
    expect += (sqrt(a[2]) - sqrt(1.5)) * (sqrt(a[2]) - sqrt(1.5));
    /* sampling error of the moments at n = 40000: ~ 1e-2 */
    BDT_CHECKF(fabs(fd - expect) < 0.03, "fd %.5f closed form %.5f", fd, expect);
    /* two draws of the same Gaussian: near 0, bias O(D/n) */
    BDT_CHECK(cli_moments(f1, n / 2, D, m1, c1) == 0 && cli_moments(f1 + n / 2 * D, n / 2, D, m2, c2) == 0);
    fd = cli_frechet(m1, c1, m2, c2, D);
    BDT_CHECKF(fd >= 0 && fd < 2e-3, "same-Gaussian fd %.5f", fd);
    free(f1);
    free(f2);
}

/* ---- the classifier ------------------------------------------------------ */
/* toy labelled images (n, 1, 8, 8): class k = a bright horizontal bar at row
   2k+1 (4 classes) plus noise; values in [-1, 1] */
static void toy_images(float *x, int32_t *y, int64_t n, uint64_t seed) {
    bd_rng rng = bd_rng_init(seed);
    int64_t i, j;
    for (i = 0; i < n; i++) {
        int k = (int)(bd_rng_u64(&rng) % 4);
        y[i] = k;
        for (j = 0; j < 64; j++) {
            float v = -0.8f + 0.2f * (float)bd_rng_normal1(&rng);
            if (j / 8 == 2 * k + 1) v += 1.5f;
            x[i * 64 + j] = v < -1 ? -1 : v > 1 ? 1 : v;
        }
    }
}

static void test_classifier_gradient(void) {
    /* the train step's gradient (c->grads after the step's backward, before
       Adam moves params: compare against the loss at fixed params) */
    enum { N = 3 };
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    cli_clf *c = NULL;
    float x[N * 64];
    int32_t y[N];
    int64_t idx[6], t;
    float *p0;
    bd_result r;
    bd_rng rng = bd_rng_init(5);
    double worst = 0;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    BDT_CHECK(cli_clf_create(ctx, 1, 8, 8, 4, 4, 9, &c) == 0);
    if (!c) { bd_context_free(ctx); return; }
    toy_images(x, y, N, 1);
    p0 = (float *)malloc(sizeof(float) * (size_t)c->n_params);
    memcpy(p0, c->params, sizeof(float) * (size_t)c->n_params);
    cli_clf_train_step(c, x, y, N, 0.0, &r); /* lr 0: the gradient is in c->grads, params unchanged */
    BDT_CHECK(r == BD_SUCCESS);
    BDT_CHECK(memcmp(p0, c->params, sizeof(float) * (size_t)c->n_params) == 0);
    /* first conv weight, a mid GN gamma, the last conv bias, fc weight, fc bias, a GN beta */
    idx[0] = c->ow[0] + 3, idx[1] = c->og[1] + 5, idx[2] = c->ow[2] + 100, idx[3] = c->ofw + 17, idx[4] = c->ofb + 2,
    idx[5] = c->obe[3] + 7;
    for (t = 0; t < 6; t++) {
        int64_t i = idx[t];
        float keep = c->params[i], h = 1e-2f;
        double lp, lm, num, ana = c->grads[i], rel;
        c->params[i] = keep + h;
        cli__clf_forward(c, x, N);
        lp = bd_cross_entropy_forward(NULL, c->logits, y, N, c->classes);
        c->params[i] = keep - h;
        cli__clf_forward(c, x, N);
        lm = bd_cross_entropy_forward(NULL, c->logits, y, N, c->classes);
        c->params[i] = keep;
        num = (lp - lm) / (2.0 * (double)h);
        rel = fabs(num - ana) / (fabs(num) + fabs(ana) > 1e-3 ? fabs(num) + fabs(ana) : 1e-3);
        if (rel > worst) worst = rel;
    }
    BDT_CHECKF(worst < 2e-2, "classifier gradient worst rel %.3g", worst);
    (void)rng;
    free(p0);
    cli_clf_free(c);
    bd_context_free(ctx);
}

static void test_classifier_trains_and_saves(void) {
    enum { N = 256, B = 32 };
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    cli_clf *c = NULL, *back = NULL;
    static float x[N * 64], xt[N * 64];
    static int32_t y[N], yt[N];
    double *f1, *f2, acc0, acc, loss;
    char path[512], err[256];
    int64_t s, i;
    bd_result r = BD_SUCCESS;
    /* TEST_QUICK (the CI's sanitizer pass): fewer steps, the same bar
       (measured: accuracy 1.000 after 15 steps as after 60) */
    int steps = quick() ? 15 : 60;
    double min_acc = 0.95;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    BDT_CHECK(cli_clf_create(ctx, 1, 8, 8, 4, B, 1, &c) == 0);
    if (!c) { bd_context_free(ctx); return; }
    toy_images(x, y, N, 2);
    toy_images(xt, yt, N, 3);
    acc0 = cli_clf_accuracy(c, xt, yt, N, NULL);
    for (s = 0; s < steps && r == BD_SUCCESS; s++) cli_clf_train_step(c, x + (s % (N / B)) * B * 64, y + (s % (N / B)) * B, B, 3e-3, &r);
    BDT_CHECK(r == BD_SUCCESS);
    acc = cli_clf_accuracy(c, xt, yt, N, &loss);
    printf("  in-process classifier: accuracy %.3f after %d steps (bar %.2f)\n", acc, steps, min_acc);
    BDT_CHECKF(acc > min_acc && acc > acc0, "accuracy %.3f after %d steps (before %.3f), loss %.3f", acc, steps, acc0, loss);
    snprintf(path, sizeof path, "%s/clf.safetensors", bdt_tmp);
    BDT_CHECK(cli_clf_save(c, path, acc) == BD_SUCCESS);
    BDT_CHECKF(cli_clf_load(ctx, path, 7, &back, err, sizeof err) == 0, "%s", err);
    if (back) {
        f1 = (double *)malloc(sizeof(double) * 10 * CLI_CLF_FEAT);
        f2 = (double *)malloc(sizeof(double) * 10 * CLI_CLF_FEAT);
        cli_clf_features(c, f1, xt, 10);
        cli_clf_features(back, f2, xt, 10); /* batch 7: two chunks */
        for (i = 0; i < 10 * CLI_CLF_FEAT; i++) BDT_CHECK(f1[i] == f2[i]);
        free(f1);
        free(f2);
        cli_clf_free(back);
    }
    /* a diffusion model file is not a classifier */
    {
        bd_st_write_tensor t;
        float v = 1;
        memset(&t, 0, sizeof t);
        t.name = "x", t.data = &v, t.ndim = 0;
        snprintf(path, sizeof path, "%s/notclf.safetensors", bdt_tmp);
        BDT_CHECK(bd_safetensors_write(ctx, path, &t, 1, NULL, 0) == BD_SUCCESS);
        BDT_CHECK(cli_clf_load(ctx, path, 7, &back, err, sizeof err) != 0 && back == NULL);
    }
    cli_clf_free(c);
    bd_context_free(ctx);
}

/* ---- the binary ------------------------------------------------------- */
static void write_idx(const char *path, const float *x, const int32_t *y, int64_t n, int images) {
    FILE *f = fopen(path, "wb");
    unsigned char h[16];
    int64_t i;
    if (!f) return;
    h[0] = h[1] = 0, h[2] = 8, h[3] = images ? 3 : 1;
    h[4] = (unsigned char)(n >> 24), h[5] = (unsigned char)(n >> 16), h[6] = (unsigned char)(n >> 8), h[7] = (unsigned char)n;
    h[8] = h[9] = h[10] = 0, h[11] = 8, h[12] = h[13] = h[14] = 0, h[15] = 8;
    fwrite(h, 1, images ? 16 : 8, f);
    for (i = 0; i < n * (images ? 64 : 1); i++) {
        unsigned char b = images ? (unsigned char)((x[i] + 1.0f) * 127.5f + 0.5f) : (unsigned char)y[i];
        fputc(b, f);
    }
    fclose(f);
}

static double parse_fd(const char *path) {
    FILE *f = fopen(path, "r");
    char line[256];
    double v = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "FD-CLF %lf", &v) == 1) break;
    fclose(f);
    return v;
}

/* FD-CLF of real images (eval ARGS) and of the same images + noise 0.3: the
   noisy ones must score higher than the real-vs-real floor */
static void fd_noise_raises(const char *tag, const char *args) {
    char p[512];
    double floor_fd, noisy_fd;
    BDT_CHECK(bdt_sh("%s eval %s --threads 1 > %s/%s0.txt 2>&1", bdt_bin, args, bdt_tmp, tag) == 0);
    BDT_CHECK(bdt_sh("%s eval %s --noise 0.3 --threads 1 > %s/%s1.txt 2>&1", bdt_bin, args, bdt_tmp, tag) == 0);
    snprintf(p, sizeof p, "%s/%s0.txt", bdt_tmp, tag);
    floor_fd = parse_fd(p);
    snprintf(p, sizeof p, "%s/%s1.txt", bdt_tmp, tag);
    noisy_fd = parse_fd(p);
    BDT_CHECKF(floor_fd >= 0 && noisy_fd > floor_fd, "%s: floor %.4f noisy %.4f", tag, floor_fd, noisy_fd);
}

static void test_binary_classifier_eval(void) {
    enum { N = 300 };
    static float x[N * 64];
    static int32_t y[N];
    char p[512];
    toy_images(x, y, N, 4);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", bdt_tmp); write_idx(p, x, y, N, 1);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", bdt_tmp); write_idx(p, x, y, N, 0);
    toy_images(x, y, N, 5);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", bdt_tmp); write_idx(p, x, y, N, 1);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", bdt_tmp); write_idx(p, x, y, N, 0);
    /* TEST_QUICK: 25 steps, the same bar (measured: accuracy 1.000 as after 80) */
    BDT_CHECK(bdt_sh("%s classifier --data fmnist:%s --out %s/f.safetensors --steps %d --batch 16 --quiet --threads 1 "
                     "> %s/clf.txt 2>&1", bdt_bin, bdt_tmp, bdt_tmp, quick() ? 25 : 80, bdt_tmp) == 0);
    snprintf(p, sizeof p, "%s/clf.txt", bdt_tmp);
    {
        FILE *f = fopen(p, "r");
        char line[256];
        double acc = -1;
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "classifier: test accuracy %lf", &acc) == 1) break;
        if (f) fclose(f);
        printf("  toy classifier: test accuracy %.3f (bar 0.90)\n", acc);
        BDT_CHECKF(acc > 0.9, "toy test accuracy %.3f", acc);
    }
    /* floor: two disjoint halves of the test split; noise must raise it */
    {
        char a[1024];
        snprintf(a, sizeof a, "--features %s/f.safetensors --real fmnist-test:%s --skip 150 --n 150 "
                 "--data fmnist-test:%s --ref-n 150", bdt_tmp, bdt_tmp, bdt_tmp);
        fd_noise_raises("fd", a);
    }
    /* errors: not a classifier; wrong image size; --skip past the data */
    BDT_CHECK(bdt_sh("%s eval --features %s/train-images-idx3-ubyte --real fmnist-test:%s --n 10 --data "
                     "fmnist-test:%s --ref-n 10 > /dev/null 2>&1", bdt_bin, bdt_tmp, bdt_tmp, bdt_tmp) == 1);
    BDT_CHECK(bdt_sh("%s eval --features %s/f.safetensors --real builtin:16 --n 10 --data builtin:16 --ref-n 10 "
                     "> /dev/null 2>&1", bdt_bin, bdt_tmp) == 1);
    BDT_CHECK(bdt_sh("%s eval --real fmnist-test:%s --skip 300 --n 10 --data fmnist-test:%s --ref-n 10 "
                     "> /dev/null 2>&1", bdt_bin, bdt_tmp, bdt_tmp) == 1);
    BDT_CHECK(bdt_sh("%s classifier --data rings --out %s/x.safetensors > /dev/null 2>&1", bdt_bin, bdt_tmp) == 1);
    BDT_CHECK(bdt_sh("%s classifier --data builtin:7 --out %s/x.safetensors > /dev/null 2>&1", bdt_bin, bdt_tmp) == 1);
}

/* the built-in shapes with their 4 labels (make demo's FD-CLF): a few steps
   beat chance (0.25) on the held-out shapes, and eval takes the file with
   builtin references */
static void test_binary_classifier_builtin(void) {
    char p[512];
    double acc = -1;
    /* TEST_QUICK: 40 steps (measured accuracy 0.505; 60 steps: 0.550), FD on 150 images */
    BDT_CHECK(bdt_sh("%s classifier --data builtin:16 --out %s/b.safetensors --steps %d --batch 16 --quiet --threads 1 "
                     "> %s/bclf.txt 2>&1", bdt_bin, bdt_tmp, quick() ? 40 : 60, bdt_tmp) == 0);
    snprintf(p, sizeof p, "%s/bclf.txt", bdt_tmp);
    {
        FILE *f = fopen(p, "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "classifier: test accuracy %lf", &acc) == 1) break;
        if (f) fclose(f);
    }
    printf("  builtin classifier: test accuracy %.3f (bar 0.40)\n", acc);
    BDT_CHECKF(acc > 0.4, "builtin test accuracy %.3f (chance 0.25)", acc);
    {
        char a[1024];
        int n = quick() ? 150 : 300;
        snprintf(a, sizeof a, "--features %s/b.safetensors --real builtin:16 --n %d --data builtin:16 --ref-n %d",
                 bdt_tmp, n, n);
        fd_noise_raises("bfd", a);
    }
    /* a 16x16 classifier does not take 28x28 shapes */
    BDT_CHECK(bdt_sh("%s eval --features %s/b.safetensors --real builtin:28 --n 10 --data builtin:28 --ref-n 10 "
                     "> /dev/null 2>&1", bdt_bin, bdt_tmp) == 1);
}

int main(int argc, char **argv) {
    const char *tmpdir = getenv("TMPDIR");
    static char bin[1024];
    if (argc > 0 && argv[0] && strstr(argv[0], "/tests/test_eval")) {
        size_t len = (size_t)(strstr(argv[0], "/tests/test_eval") - argv[0]);
        if (len < sizeof bin - 10) {
            memcpy(bin, argv[0], len);
            memcpy(bin + len, "/bdense", 8);
            bdt_bin = bin;
        }
    }
    if (getenv("BDENSE_BIN")) bdt_bin = getenv("BDENSE_BIN");
    snprintf(bdt_tmp, sizeof bdt_tmp, "%s/bdense_test_eval_XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(bdt_tmp)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    (void)bdt_close_ratio;
    BDT_RUN(test_cross_entropy_fd);
    BDT_RUN(test_cross_entropy_torch);
    BDT_RUN(test_frechet_sampled_gaussians);
    BDT_RUN(test_classifier_gradient);
    BDT_RUN(test_classifier_trains_and_saves);
    BDT_RUN(test_binary_classifier_eval);
    BDT_RUN(test_binary_classifier_builtin);
    bdt_sh("rm -rf '%s'", bdt_tmp);
    return BDT_SUMMARY("test_eval");
}
