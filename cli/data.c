/* data.c - training/evaluation data sources for the command line:
     builtin[:SIZE]      procedural shapes, generated fresh for every batch
     fmnist:DIR          Fashion-MNIST (or MNIST) IDX files in DIR, .gz or raw
     fmnist-test:DIR     the 10k test split
     npy:FILE            float32 (N,C,H,W), (N,H,W) or (N,D) in [-1,1]
   Batches are drawn with the caller's rng only (exact resume). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static int cli__find_idx(char *buf, size_t n, const char *dir, const char *stem) {
    static const char *sfx[] = {"-idx3-ubyte.gz", "-idx3-ubyte", ".idx3-ubyte.gz", ".idx3-ubyte", NULL};
    int i;
    for (i = 0; sfx[i]; i++) {
        snprintf(buf, n, "%s/%s%s", dir, stem, sfx[i]);
        if (cli_file_exists(buf)) return 1;
    }
    return 0;
}

/* warn about values a diffusion model in [-1, 1] should not see */
static void cli__data_check(const char *cmd, cli_data *d) {
    int64_t i, n = d->n * d->c * d->h * d->w, bad = 0;
    float lo = 0, hi = 0;
    for (i = 0; i < n; i++) {
        float v = d->x[i];
        if (!(v == v) || v > 3.0e38f || v < -3.0e38f) {
            bad++;
            continue;
        }
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    if (bad)
        fprintf(stderr, "bdense %s: warning: the data holds %lld non-finite values (training steps that see them are "
                        "refused; see --on-nan)\n", cmd, (long long)bad);
    if (lo < -1.5f || hi > 1.5f)
        fprintf(stderr, "bdense %s: warning: data values span [%g, %g]; bdense expects images scaled to [-1, 1]\n",
                cmd, lo, hi);
}

int cli_data_open(const char *cmd, bd_context *ctx, const char *spec, int64_t image_size, cli_data *d) {
    bd_result r;
    memset(d, 0, sizeof *d);
    d->ctx = ctx;
    if (strcmp(spec, "builtin") == 0 || strncmp(spec, "builtin:", 8) == 0) {
        int64_t size = image_size > 0 ? image_size : 28;
        if (spec[7] == ':') {
            if (cli_parse_integer(spec + 8, &size) != 0 || size < 8 || size > 256)
                return cli_fail(cmd, "--data %s: the size after builtin: must be an integer in 8..256", spec);
        } else if (size < 8 || size > 1024) {
            return cli_fail(cmd, "--data builtin: image size %lld is outside the 8..1024 the shapes are "
                            "drawn at", (long long)size);
        }
        d->kind = CLI_DATA_BUILTIN;
        d->c = 1;
        d->h = d->w = size;
        d->n = 0;
        snprintf(d->desc, sizeof d->desc, "builtin shapes %lldx%lld (fresh every batch)", (long long)size,
                 (long long)size);
        return 0;
    }
    if (strncmp(spec, "fmnist:", 7) == 0 || strncmp(spec, "mnist:", 6) == 0 || strncmp(spec, "fmnist-test:", 12) == 0 ||
        strncmp(spec, "mnist-test:", 11) == 0) {
        const char *dir = strchr(spec, ':') + 1;
        int test = strstr(spec, "-test:") != NULL && strstr(spec, "-test:") < dir;
        char path[1024];
        if (!cli__find_idx(path, sizeof path, dir, test ? "t10k-images" : "train-images"))
            return cli_fail(cmd,
                            "--data %s: no %s-idx3-ubyte(.gz) in '%s' (Fashion-MNIST is in "
                            "/usr/share/datasets/fashion-mnist after apt-get install dataset-fashion-mnist)",
                            spec, test ? "t10k-images" : "train-images", dir);
        {
            bd_tensor t;
            memset(&t, 0, sizeof t);
            r = bd_idx_read_images(ctx, path, &t);
            if (r != BD_SUCCESS) return cli_fail_bd(cmd, ctx, r, path);
            d->x = t.data; /* owned: released with bd_free like bd_tensor_free does */
            d->n = t.n, d->h = t.h, d->w = t.w;
        }
        if (d->n < 1 || d->h < 1 || d->w < 1) {
            cli_data_free(d);
            return cli_fail(cmd, "--data %s: %s holds %lld images of %lldx%lld pixels; need at least one non-empty image",
                            spec, path, (long long)d->n, (long long)d->h, (long long)d->w);
        }
        d->kind = CLI_DATA_ARRAY;
        d->c = 1;
        snprintf(d->desc, sizeof d->desc, "%s: %lld images %lldx%lld", path, (long long)d->n, (long long)d->h,
                 (long long)d->w);
        return 0;
    }
    if (strncmp(spec, "npy:", 4) == 0) {
        const char *path = spec + 4;
        int64_t shape[4] = {0, 0, 0, 0};
        int ndim = 0;
        r = cli_npy_read(ctx, path, &d->x, shape, &ndim);
        if (r != BD_SUCCESS) return cli_fail_bd(cmd, ctx, r, path);
        d->kind = CLI_DATA_ARRAY;
        d->n = shape[0];
        if (ndim == 4) {
            d->c = shape[1], d->h = shape[2], d->w = shape[3];
        } else if (ndim == 3) {
            d->c = 1, d->h = shape[1], d->w = shape[2];
        } else if (ndim == 2) {
            d->c = shape[1], d->h = 1, d->w = 1;
        } else {
            cli_data_free(d);
            return cli_fail(cmd, "--data %s: expected a (N,C,H,W), (N,H,W) or (N,D) array, got %d dims", spec, ndim);
        }
        if (d->n < 1) {
            cli_data_free(d);
            return cli_fail(cmd, "--data %s: the array holds no samples", spec);
        }
        if (d->c < 1 || d->h < 1 || d->w < 1) {
            cli_data_free(d);
            return cli_fail(cmd, "--data %s: each sample is empty (shape %lldx%lldx%lld)", spec, (long long)d->c,
                            (long long)d->h, (long long)d->w);
        }
        cli__data_check(cmd, d);
        snprintf(d->desc, sizeof d->desc, "%s: %lld samples (%lld,%lld,%lld)", path, (long long)d->n, (long long)d->c,
                 (long long)d->h, (long long)d->w);
        return 0;
    }
    return cli_fail(cmd, "--data '%s': expected builtin, builtin:SIZE, fmnist:DIR, fmnist-test:DIR or npy:FILE", spec);
}

bd_result cli_npy_read(bd_context *ctx, const char *path, float **data, int64_t *shape, int *ndim) {
    bd_npy a;
    bd_result r;
    int i;
    memset(&a, 0, sizeof a);
    r = bd_npy_read(ctx, path, &a);
    if (r != BD_SUCCESS) return r;
    *data = a.data;
    *ndim = a.ndim;
    for (i = 0; i < a.ndim; i++) shape[i] = a.shape[i];
    return BD_SUCCESS;
}

bd_result cli_plot(bd_context *ctx, const char *path, const float *xs, const float *ys, int n_series, int64_t n,
                   const char *title, const char *x_label, const char *y_label, const char *const *legend) {
    bd_plot_config pc = bd_plot_config_init();
    bd_plot_series ser[CLI_MAX_LIST + 2];
    double *buf;
    int64_t i;
    int k;
    bd_result r;
    if (n_series > CLI_MAX_LIST + 2) n_series = CLI_MAX_LIST + 2;
    buf = (double *)malloc(sizeof(double) * (size_t)n * (size_t)(n_series + 1));
    if (!buf) return BD_ERROR_OUT_OF_MEMORY;
    for (i = 0; i < n; i++) buf[i] = xs[i];
    for (k = 0; k < n_series; k++) {
        for (i = 0; i < n; i++) buf[(k + 1) * n + i] = ys[k * n + i];
        ser[k].x = buf;
        ser[k].y = buf + (k + 1) * n;
        ser[k].n = n;
    }
    pc.log_y = 1;
    pc.title = title;
    pc.x_label = x_label;
    pc.y_label = y_label;
    pc.legend = legend;
    r = bd_plot_png(ctx, path, &pc, ser, n_series);
    free(buf);
    return r;
}

int cli_write_grid_labeled(const char *cmd, bd_context *ctx, const char *path, const float *x, int64_t n, int64_t C,
                           int64_t H, int64_t W, int64_t cols, const char *title, const char *const *labels,
                           int64_t n_labels) {
    int64_t zoom = H >= 56 ? 1 : (56 + H - 1) / H, gh = 0, gw = 0;
    bd_result r;
    if (n < 1 || H < 1 || W < 1) return cli_fail(cmd, "%s: no images to draw", path);
    bd_image_grid(NULL, &gh, &gw, x, n, C, H, W, cols, 1, 0.0f);
    if (gh > ((int64_t)1 << 28) / gw)
        return cli_fail(cmd, "%s: a grid of %lld images would be %lldx%lld pixels; draw fewer (--n)", path,
                        (long long)n, (long long)gw, (long long)gh);
    while (zoom > 1 && gh * zoom * gw * zoom > ((int64_t)1 << 24)) zoom--; /* big grids: 1:1, not 16 M+ pixels */
    r = bd_png_write_grid_labeled(ctx, path, x, n, C, H, W, cols, zoom, title, labels, n_labels);
    if (r != BD_SUCCESS) return cli_fail_bd(cmd, ctx, r, path);
    return 0;
}

int cli_write_grid_titled(const char *cmd, bd_context *ctx, const char *path, const float *x, int64_t n, int64_t C,
                          int64_t H, int64_t W, const char *title) {
    return cli_write_grid_labeled(cmd, ctx, path, x, n, C, H, W, 0, title, NULL, 0);
}

void cli_data_free(cli_data *d) {
    if (d->x) bd_free(d->ctx, d->x);
    d->x = NULL;
}

bd_result cli_data_batch(void *user, float *x, int64_t n, bd_rng *rng) {
    cli_data *d = (cli_data *)user;
    int64_t D = d->c * d->h * d->w, i;
    if (d->kind == CLI_DATA_BUILTIN) {
        bd_result r = bd_builtin_shapes(d->ctx, x, n, d->h, bd_rng_u64(rng));
        if (r != BD_SUCCESS) return r;
    } else {
        if (d->n < 1 || !d->x || D < 1) return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "the data set is empty");
        for (i = 0; i < n; i++) {
            int64_t j = (int64_t)(bd_rng_u64(rng) % (uint64_t)d->n);
            memcpy(x + i * D, d->x + j * D, sizeof(float) * (size_t)D);
        }
    }
    if (d->hflip) {
        for (i = 0; i < n; i++) {
            int64_t c, y, k;
            if (bd_rng_u64(rng) & 1) continue;
            for (c = 0; c < d->c; c++)
                for (y = 0; y < d->h; y++) {
                    float *row = x + ((i * d->c + c) * d->h + y) * d->w;
                    for (k = 0; k < d->w / 2; k++) {
                        float tmp = row[k];
                        row[k] = row[d->w - 1 - k];
                        row[d->w - 1 - k] = tmp;
                    }
                }
        }
    }
    return BD_SUCCESS;
}

/* the first n samples (array data) or n fresh samples from `seed` (builtin) */
int cli_data_take(const char *cmd, cli_data *d, float *x, int64_t n, uint64_t seed) {
    int64_t D = d->c * d->h * d->w;
    if (d->kind == CLI_DATA_BUILTIN) {
        bd_result r = bd_builtin_shapes(d->ctx, x, n, d->h, seed);
        if (r != BD_SUCCESS) return cli_fail_bd(cmd, d->ctx, r, "builtin data");
        return 0;
    }
    if (n < 0 || n > d->n)
        return cli_fail(cmd, "asked for %lld samples but the data has %lld", (long long)n, (long long)d->n);
    memcpy(x, d->x, sizeof(float) * (size_t)(n * D));
    return 0;
}
