/* cmd_classifier.c - `bdense classifier`: train the small labelled CNN whose
   penultimate features give FD-CLF (bdense eval --features).  Fashion-MNIST
   (or MNIST) IDX files with their labels, or the built-in shapes with their
   4 shape labels; softmax cross-entropy, Adam with a cosine learning rate;
   reports the test accuracy and saves a safetensors file (metric.c documents
   the network). */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cli__find_labels(char *buf, size_t n, const char *dir, const char *stem) {
    static const char *sfx[] = {"-idx1-ubyte.gz", "-idx1-ubyte", ".idx1-ubyte.gz", ".idx1-ubyte", NULL};
    int i;
    for (i = 0; sfx[i]; i++) {
        snprintf(buf, n, "%s/%s%s", dir, stem, sfx[i]);
        if (cli_file_exists(buf)) return 1;
    }
    return 0;
}

/* images (cli_data) and labels (int32) of one split of an IDX directory */
static int cli__labelled(const char *cmd, bd_context *ctx, const char *dir, int test, cli_data *d, int32_t **y) {
    char spec[1100], path[1100];
    uint8_t *lab = NULL;
    int64_t n = 0, i;
    bd_result r;
    *y = NULL;
    snprintf(spec, sizeof spec, "%s:%s", test ? "fmnist-test" : "fmnist", dir);
    if (cli_data_open(cmd, ctx, spec, 0, d)) return 1;
    if (!cli__find_labels(path, sizeof path, dir, test ? "t10k-labels" : "train-labels")) {
        cli_data_free(d);
        return cli_fail(cmd, "no %s-idx1-ubyte(.gz) in '%s'", test ? "t10k-labels" : "train-labels", dir);
    }
    if ((r = bd_idx_read_labels(ctx, path, &lab, &n)) != BD_SUCCESS) {
        cli_data_free(d);
        return cli_fail_bd(cmd, ctx, r, path);
    }
    if (n != d->n) {
        bd_free(ctx, lab);
        cli_data_free(d);
        return cli_fail(cmd, "%s holds %lld labels for %lld images", path, (long long)n, (long long)d->n);
    }
    *y = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
    if (!*y) {
        bd_free(ctx, lab);
        cli_data_free(d);
        return cli_fail(cmd, "out of memory");
    }
    for (i = 0; i < n; i++) (*y)[i] = lab[i];
    bd_free(ctx, lab);
    return 0;
}

/* builtin shapes: the training stream (fresh images every batch, image i of
   the stream is shape first + i of this seed) and the held-out test set come
   from different seeds, both apart from bdense eval's builtin reference
   (seed 12345) and --real (777) draws. */
#define CLI__CLF_BUILTIN_TEST_N 2000
static uint64_t cli__clf_train_seed(int64_t seed) { return 0xC1A5u + 2 * (uint64_t)seed; }
static uint64_t cli__clf_test_seed(int64_t seed) { return 0xC1A5u + 2 * (uint64_t)seed + 1; }

static int cli__builtin_labelled(const char *cmd, bd_context *ctx, const char *spec, int64_t n, uint64_t seed,
                                 cli_data *d, int32_t **y) {
    uint8_t *lab;
    int64_t i;
    bd_result r;
    *y = NULL;
    if (cli_data_open(cmd, ctx, spec, 0, d)) return 1;
    d->n = n;
    d->x = (float *)bd_alloc_array(ctx, (size_t)(n * d->h * d->w), sizeof(float));
    lab = (uint8_t *)malloc((size_t)n);
    *y = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
    if (!d->x || !lab || !*y) {
        free(lab);
        return cli_fail(cmd, "out of memory");
    }
    r = bd_builtin_shapes_ex(ctx, d->x, lab, 0, n, d->h, seed);
    for (i = 0; i < n; i++) (*y)[i] = lab[i];
    free(lab);
    if (r != BD_SUCCESS) return cli_fail_bd(cmd, ctx, r, "builtin shapes");
    snprintf(d->desc, sizeof d->desc, "builtin shapes %lldx%lld (4 classes)", (long long)d->h, (long long)d->w);
    return 0;
}

int cmd_classifier(int argc, char **argv) {
    cli_args a;
    const char *data = NULL, *out = NULL;
    int64_t steps = 3000, batch = 64, seed = 1;
    double lr = 2e-3;
    int rc = 1;
    bd_context *ctx = NULL;
    cli_data tr, te;
    int32_t *ytr = NULL, *yte = NULL;
    cli_clf *c = NULL;
    float *xb = NULL;
    int32_t *yb = NULL;
    const char *dir = NULL;
    int builtin, classes = 10;
    uint8_t *lb = NULL;
    cli_progress bar;
    bd_rng rng;
    double acc, tloss, smooth = 0;
    int64_t step, D;
    memset(&tr, 0, sizeof tr);
    memset(&te, 0, sizeof te);
    cli_args_init(&a, "classifier",
                  "Train the small classifier CNN whose 128-d penultimate features define FD-CLF "
                  "(bdense eval --features).",
                  "--data fmnist:DIR (or mnist:DIR): the train split with its labels; the test accuracy on the\n"
                  "t10k split of the same directory is printed and stored in the file's metadata.\n"
                  "--data builtin[:SIZE] (default 28): the built-in shapes, labelled 0 disc, 1 square, 2 triangle,\n"
                  "3 ring; fresh images every batch, test accuracy on 2000 held-out shapes of another seed.\n"
                  "Network: 4 x [conv3x3 (strides 1,2,2,2), GroupNorm(4)+SiLU], widths 16-32-64-128, global\n"
                  "average pool, linear -> 10 (4 for builtin); softmax cross-entropy, Adam, cosine learning rate.");
    cli_required(cli_add_str(&a, "data", &data, "SPEC",
                             "fmnist:DIR or mnist:DIR (IDX images and labels), or builtin[:SIZE] (SIZE 8..256)"));
    cli_required(cli_add_str(&a, "out", &out, "FILE", "classifier checkpoint (.safetensors)"));
    cli_range(cli_add_int(&a, "steps", &steps, "N", "Adam steps"), 1, 1e8);
    cli_range(cli_add_int(&a, "batch", &batch, "B", "images per step"), 2, 1024);
    cli_range(cli_add_num(&a, "lr", &lr, "LR", "peak learning rate (cosine to 0)"), 1e-8, 1);
    cli_add_int(&a, "seed", &seed, "S", "initialisation and batch seed");
    rc = cli_parse(&a, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    rc = 1;
    builtin = strcmp(data, "builtin") == 0 || strncmp(data, "builtin:", 8) == 0;
    if (!builtin && strncmp(data, "fmnist:", 7) != 0 && strncmp(data, "mnist:", 6) != 0)
        return cli_fail("classifier", "--data %s: expected fmnist:DIR or mnist:DIR (labelled IDX files) or "
                        "builtin[:SIZE]", data);
    if (!builtin) dir = strchr(data, ':') + 1;
    if (cli_prepare_output("classifier", out)) return 1;
    if (cli_context(&a, &ctx)) return 1;
    cli_install_interrupt();
    if (builtin) {
        /* the training images are drawn per batch below; tr only carries the shape */
        classes = 4;
        if (cli_data_open("classifier", ctx, data, 0, &tr) ||
            cli__builtin_labelled("classifier", ctx, data, CLI__CLF_BUILTIN_TEST_N, cli__clf_test_seed(seed), &te,
                                  &yte))
            goto done;
        lb = (uint8_t *)malloc((size_t)batch);
        if (!lb) {
            cli_fail("classifier", "out of memory");
            goto done;
        }
    } else if (cli__labelled("classifier", ctx, dir, 0, &tr, &ytr) ||
               cli__labelled("classifier", ctx, dir, 1, &te, &yte))
        goto done;
    if (te.c != tr.c || te.h != tr.h || te.w != tr.w) {
        cli_fail("classifier", "train and test images differ in shape");
        goto done;
    }
    if (cli_clf_create(ctx, tr.c, tr.h, tr.w, classes, batch > 100 ? batch : 100, (uint64_t)seed, &c)) {
        cli_fail("classifier", "cannot build the classifier for %lldx%lldx%lld images (H, W >= 8)", (long long)tr.c,
                 (long long)tr.h, (long long)tr.w);
        goto done;
    }
    for (step = 0; ytr && step < tr.n; step++)
        if (ytr[step] < 0 || ytr[step] > 9) {
            cli_fail("classifier", "label %d of image %lld is not in 0..9", (int)ytr[step], (long long)step);
            goto done;
        }
    D = tr.c * tr.h * tr.w;
    xb = (float *)malloc(sizeof(float) * (size_t)(batch * D));
    yb = (int32_t *)malloc(sizeof(int32_t) * (size_t)batch);
    if (!xb || !yb) {
        cli_fail("classifier", "out of memory");
        goto done;
    }
    cli_note(&a, "classifier: %lld parameters; train %s; %lld steps of %lld\n", (long long)cli_clf_params(c), tr.desc,
             (long long)steps, (long long)batch);
    rng = bd_rng_init((uint64_t)seed + 1000);
    cli_progress_init(&bar, "classifier", 0, steps, a.quiet);
    for (step = 0; step < steps && !cli_interrupted(); step++) {
        int64_t b;
        bd_result r;
        double l, cur = lr * 0.5 * (1.0 + cos(3.14159265358979323846 * (double)step / (double)steps));
        if (builtin) {
            r = bd_builtin_shapes_ex(ctx, xb, lb, step * batch, batch, tr.h, cli__clf_train_seed(seed));
            if (r != BD_SUCCESS) {
                cli_fail_bd("classifier", ctx, r, "builtin shapes");
                goto done;
            }
            for (b = 0; b < batch; b++) yb[b] = lb[b];
        } else {
            for (b = 0; b < batch; b++) {
                int64_t j = (int64_t)(bd_rng_u64(&rng) % (uint64_t)tr.n);
                memcpy(xb + b * D, tr.x + j * D, sizeof(float) * (size_t)D);
                yb[b] = ytr[j];
            }
        }
        l = cli_clf_train_step(c, xb, yb, batch, cur, &r);
        if (r != BD_SUCCESS) {
            cli_fail_bd("classifier", ctx, r, "Adam step");
            goto done;
        }
        smooth = step == 0 ? l : 0.98 * smooth + 0.02 * l;
        if ((step + 1) % 20 == 0 || step + 1 == steps) {
            char extra[64];
            snprintf(extra, sizeof extra, "loss %.4f", smooth);
            cli_progress_update(&bar, step + 1, extra);
        }
    }
    cli_progress_done(&bar, NULL);
    acc = cli_clf_accuracy(c, te.x, yte, te.n, &tloss);
    printf("classifier: test accuracy %.4f (%lld images), test cross-entropy %.4f, %lld steps\n", acc,
           (long long)te.n, tloss, (long long)step);
    {
        bd_result r = cli_clf_save(c, out, acc);
        if (r != BD_SUCCESS) {
            cli_fail_bd("classifier", ctx, r, out);
            goto done;
        }
    }
    cli_note(&a, "wrote %s\n", out);
    rc = 0;
done:
    free(xb);
    free(yb);
    free(lb);
    free(ytr);
    free(yte);
    cli_clf_free(c);
    cli_data_free(&tr);
    cli_data_free(&te);
    bd_context_free(ctx);
    return rc;
}
