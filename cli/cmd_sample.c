/* cmd_sample.c - `bdense sample` and `bdense eval`, and the sampling helper
   that compare uses too. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* shared sampling                                                        */
/* ---------------------------------------------------------------------- */
typedef struct cli__sample_progress {
    cli_progress bar;
    int64_t steps, chunk, done_before;
} cli__sample_progress;

static int cli__sample_cb(void *user, int64_t step, double t, double s, const float *z, const float *x_hat,
                          int64_t n, int64_t D, int64_t first) {
    cli__sample_progress *p = (cli__sample_progress *)user;
    int64_t chunk_index = p->chunk > 0 ? first / p->chunk : 0;
    (void)t, (void)s, (void)z, (void)x_hat, (void)n, (void)D;
    cli_progress_update(&p->bar, chunk_index * p->steps + step, NULL);
    return cli_interrupted() ? 1 : 0;
}

int cli_sampler_setup(const char *cmd, const bd_model *m, const char *sampler, int64_t steps, int steps_given,
                      const char *time_grid, double eta, int clip, bd_sampler_config *cfg, int quiet) {
    bd_sampler_kind kind;
    bd_grid_kind gk;
    if (bd_sampler_parse(sampler, &kind) != BD_SUCCESS) return cli_fail(cmd, "unknown sampler '%s'", sampler);
    if (bd_grid_parse(time_grid, &gk) != BD_SUCCESS)
        return cli_fail(cmd, "unknown time grid '%s' (uniform_t|logsnr|karras)", time_grid);
    if (m->grid && m->steps > 0) {
        /* a distilled student: its own grid, its last branch */
        if (steps_given && steps != m->steps)
            return cli_fail(cmd,
                            "this student was distilled for %lld steps on its own time grid; leave --steps out "
                            "or give --steps %lld",
                            (long long)m->steps, (long long)m->steps);
        *cfg = bd_sampler_config_init(kind, m->steps);
        cfg->custom_grid = m->grid;
        if (kind != BD_SAMPLER_DDIM && !quiet)
            fprintf(stderr, "bdense %s: note: a student is trained for DDIM on its grid; %s may do worse\n", cmd,
                    sampler);
    } else {
        *cfg = bd_sampler_config_init(kind, steps);
        cfg->grid = gk;
    }
    cfg->param = m->param;
    cfg->schedule = m->schedule;
    cfg->eta = eta;
    cfg->clip_x = clip;
    cfg->branch = -1;
    return 0;
}

int cli_sample_run(const char *cmd, bd_context *ctx, bd_model *m, const bd_sampler_config *cfg0, float *x,
                   int64_t n, int64_t max_batch, uint64_t seed, const char *label, int quiet, int64_t *nfe,
                   double *seconds) {
    bd_sampler *s = NULL;
    bd_sampler_config cfg = *cfg0;
    cli__sample_progress prog;
    bd_rng rng = bd_rng_init(seed ^ 0x9E3779B97F4A7C15ull);
    int64_t D = bd_denoiser_sample_size(m->net), nchunks; /* C*H*W of one input */
    double t0;
    bd_result r;
    if (max_batch > n) max_batch = n;
    nchunks = (n + max_batch - 1) / max_batch;
    bd_noise_fill(x, n * D, seed);
    r = bd_sampler_init(ctx, m->net, max_batch, &s);
    if (r != BD_SUCCESS) return cli_fail_bd(cmd, ctx, r, "sampler");
    memset(&prog, 0, sizeof prog);
    prog.steps = cfg.steps;
    prog.chunk = max_batch;
    cli_progress_init(&prog.bar, label, 0, cfg.steps * nchunks, quiet);
    cfg.callback = cli__sample_cb;
    cfg.user_data = &prog;
    t0 = cli_now();
    r = bd_sampler_run(s, &cfg, x, n, &rng, nfe);
    if (seconds) *seconds = cli_now() - t0;
    prog.bar.last = cfg.steps * nchunks;
    if (r == BD_SUCCESS) cli_progress_done(&prog.bar, NULL);
    bd_sampler_free(s);
    if (r != BD_SUCCESS) {
        if (cli_interrupted()) return cli_fail(cmd, "interrupted");
        return cli_fail_bd(cmd, ctx, r, "sampling");
    }
    return 0;
}

/* A PNG grid of x (n,C,H,W) with `cols` columns (<= 0: square), 1 px grey
   padding, every pixel repeated `zoom` times (<= 0: auto, tiles of at
   least 56 px, so 16x16 samples are visible). */
int cli_write_grid_cols(const char *cmd, bd_context *ctx, const char *path, const float *x, int64_t n, int64_t C,
                        int64_t H, int64_t W, int64_t cols, int64_t zoom) {
    int64_t gh = 0, gw = 0, c, i, j, zh, zw;
    float *g, *z;
    bd_result r;
    if (zoom <= 0) zoom = H >= 56 ? 1 : (56 + H - 1) / H;
    if (cols <= 0) cols = (int64_t)ceil(sqrt((double)n));
    if (zoom == 1) {
        r = bd_png_write_grid(ctx, path, x, n, C, H, W, cols, 1);
        if (r != BD_SUCCESS) return cli_fail_bd(cmd, ctx, r, path);
        return 0;
    }
    bd_image_grid(NULL, &gh, &gw, x, n, C, H, W, cols, 1, 0.0f);
    zh = gh * zoom, zw = gw * zoom;
    g = (float *)malloc(sizeof(float) * (size_t)(C * gh * gw));
    z = (float *)malloc(sizeof(float) * (size_t)(C * zh * zw));
    if (!g || !z) {
        free(g);
        free(z);
        return cli_fail(cmd, "out of memory for the picture %s", path);
    }
    bd_image_grid(g, &gh, &gw, x, n, C, H, W, cols, 1, 0.0f);
    for (c = 0; c < C; c++)
        for (i = 0; i < zh; i++)
            for (j = 0; j < zw; j++) z[(c * zh + i) * zw + j] = g[(c * gh + i / zoom) * gw + j / zoom];
    r = bd_png_write(ctx, path, z, C, zh, zw);
    free(g);
    free(z);
    if (r != BD_SUCCESS) return cli_fail_bd(cmd, ctx, r, path);
    return 0;
}

int cli_write_grid(const char *cmd, bd_context *ctx, const char *path, const float *x, int64_t n, int64_t C,
                   int64_t H, int64_t W) {
    return cli_write_grid_cols(cmd, ctx, path, x, n, C, H, W, 0, 0);
}

/* ---------------------------------------------------------------------- */
/* bdense sample                                                          */
/* ---------------------------------------------------------------------- */
int cmd_sample(int argc, char **argv) {
    cli_args a;
    const char *ckpt = NULL, *out = NULL, *grid = NULL, *sampler = "ddim", *time_grid = "uniform_t";
    int64_t n = 64, steps = 50, seed = 0, batch = 64;
    double eta = 0;
    int clip = 0, rc;
    bd_context *ctx = NULL, *gpu = NULL;
    bd_model *m = NULL;
    bd_sampler_config cfg;
    float *x = NULL;
    int64_t nfe = 0, C, H, W;
    double secs = 0;
    bd_result r;
    cli_args_init(&a, "sample", "Draw samples from a teacher, or from a distilled student (which uses its own grid "
                               "and its last branch).",
                  "The starting noise comes from --seed alone, so two models sampled with the same seed and\n"
                  "--n start from the same noise.  Writes float32 (N,C,H,W) .npy and/or a PNG grid.");
    cli_required(cli_add_str(&a, "ckpt", &ckpt, "FILE", "model checkpoint (.safetensors)"));
    cli_range(cli_add_int(&a, "n", &n, "N", "number of samples"), 1, 1e7);
    cli_add_choice(&a, "sampler", &sampler, "ddim|ddpm|euler|heun|dpmpp2m", "sampler");
    cli_range(cli_add_int(&a, "steps", &steps, "S", "sampler steps (a student: its own, by default)"), 1,
              BD_SAMPLER_MAX_STEPS);
    cli_add_choice(&a, "time-grid", &time_grid, "uniform_t|logsnr|karras", "time grid (teachers; see docs/samplers.md)");
    cli_range(cli_add_num(&a, "eta", &eta, "X", "DDIM eta (0 = deterministic)"), 0, 10);
    cli_add_flag(&a, "clip", &clip, "clip x_hat to [-1, 1] at every step");
    cli_add_seed(&a, &seed, "noise seed");
    cli_range(cli_add_int(&a, "batch", &batch, "B", "samples per network call (memory)"), 1, 4096);
    cli_add_str(&a, "out", &out, "FILE", "write samples to this .npy");
    cli_add_str(&a, "grid", &grid, "FILE", "write a PNG grid of the samples");
    rc = cli_parse(&a, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (!out && !grid) return cli_fail("sample", "nothing to write: give --out FILE.npy and/or --grid FILE.png");
    if (cli_prepare_output("sample", out) || cli_prepare_output("sample", grid)) return 1;
    if (cli_context(&a, &ctx)) return 1;
    if (cli_gpu(&a, &gpu)) {
        bd_context_free(ctx);
        return 1;
    }
    r = bd_model_load(ctx, ckpt, &m);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("sample", ctx, r, ckpt);
        goto done;
    }
    if (cli_sampler_setup("sample", m, sampler, steps, cli_given(&a, "steps"), time_grid, eta, clip, &cfg, a.quiet)) {
        rc = 1;
        goto done;
    }
    /* --device cuda: the model moves to the GPU and the sampler runs there */
    if (gpu && (r = bd_denoiser_to_context(m->net, gpu)) != BD_SUCCESS) {
        rc = cli_fail_bd("sample", gpu, r, "moving the model to the GPU");
        goto done;
    }
    C = m->net->in_ch, H = m->net->height, W = m->net->width;
    x = (float *)malloc(sizeof(float) * (size_t)(n * C * H * W));
    if (!x) {
        rc = cli_fail("sample", "out of memory for %lld samples", (long long)n);
        goto done;
    }
    cli_install_interrupt();
    if (cli_sample_run("sample", ctx, m, &cfg, x, n, batch, (uint64_t)seed, "sample", a.quiet, &nfe, &secs)) {
        rc = 1;
        goto done;
    }
    if (out) {
        int64_t shape[4];
        shape[0] = n, shape[1] = C, shape[2] = H, shape[3] = W;
        r = bd_npy_write(ctx, out, x, 4, shape);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("sample", ctx, r, out);
            goto done;
        }
    }
    char title[160];
    snprintf(title, sizeof title, "%.60s: %s, %lld NFE, seed %lld", ckpt, sampler, (long long)nfe, (long long)seed);
    if (grid && cli_write_grid_titled("sample", ctx, grid, x, n, C, H, W, title)) {
        rc = 1;
        goto done;
    }
    cli_note(&a, "%lld samples, %s %lld steps, %lld NFE, %.2f s (%.1f ms/image)%s%s%s%s\n", (long long)n, sampler,
             (long long)cfg.steps, (long long)nfe, secs, 1000 * secs / (double)n, out ? " -> " : "", out ? out : "",
             grid ? " -> " : "", grid ? grid : "");
    rc = 0;
done:
    free(x);
    if (m) bd_model_free(m); /* before the GPU context its network may live on */
    bd_context_free(gpu);
    bd_context_free(ctx);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* bdense eval                                                            */
/* ---------------------------------------------------------------------- */
int cli_fdrf(const char *cmd, bd_context *ctx, const float *x, int64_t n, const float *ref, int64_t nref, int64_t C,
             int64_t H, int64_t W, double *fd) {
    cli_feat *f = NULL;
    double *mu = (double *)malloc(sizeof(double) * 2 * (CLI_FEAT_DIM + CLI_FEAT_DIM * CLI_FEAT_DIM));
    double *cov = mu + 2 * CLI_FEAT_DIM;
    int rc = 0;
    if (!mu) return cli_fail(cmd, "out of memory");
    if (cli_feat_init(ctx, C, H, W, &f)) {
        free(mu);
        return cli_fail(cmd, "cannot build the feature network for %lldx%lldx%lld images", (long long)C,
                        (long long)H, (long long)W);
    }
    if (cli_feat_stats(f, x, n, mu, cov) || cli_feat_stats(f, ref, nref, mu + CLI_FEAT_DIM, cov + CLI_FEAT_DIM * CLI_FEAT_DIM))
        rc = cli_fail(cmd, "feature statistics need at least 2 images on each side");
    else
        *fd = cli_frechet(mu, cov, mu + CLI_FEAT_DIM, cov + CLI_FEAT_DIM * CLI_FEAT_DIM, CLI_FEAT_DIM);
    cli_feat_free(f);
    free(mu);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    cli_args a;
    const char *ckpt = NULL, *samples = NULL, *real = NULL, *data = NULL, *sampler = "ddim", *time_grid = "uniform_t";
    const char *out = NULL, *features = NULL;
    int64_t n = 1000, nref = 10000, steps = 50, seed = 0, batch = 100, skip = 0;
    double noise = 0;
    cli_clf *clf = NULL;
    int clip = 0, rc;
    bd_context *ctx = NULL;
    bd_model *m = NULL;
    cli_data ref;
    float *x = NULL, *xr = NULL;
    int64_t C = 0, H = 0, W = 0;
    double fd = 0;
    bd_result r;
    memset(&ref, 0, sizeof ref);
    cli_args_init(&a, "eval",
                  "Sample-quality number: the Frechet distance between generated and real images in the 128-d "
                  "features of a trained classifier (FD-CLF, --features FILE from bdense classifier) or, without "
                  "--features, of a fixed, seeded random convolutional network (FD-RF, for unlabelled data).",
                  "Give either --ckpt (samples are drawn here, as bdense sample would) or --samples FILE.npy.\n"
                  "Reference images: the first --ref-n of --data (fmnist-test:DIR is the usual choice; builtin\n"
                  "draws fresh shapes from seed 12345).  Lower is better; compare numbers only at equal --n and\n"
                  "--ref-n (the estimate is biased upwards for small n).  docs/cli.md gives the exact networks;\n"
                  "docs/fmnist.md the floors and noise ladders (FD-CLF at n = 2000).");
    cli_add_str(&a, "ckpt", &ckpt, "FILE", "model to sample from");
    cli_add_str(&a, "samples", &samples, "FILE", "or: evaluate these samples (.npy, (N,C,H,W) in [-1,1])");
    cli_add_str(&a, "real", &real, "SPEC", "or: evaluate the first --n images of a data set (the metric's floor)");
    cli_required(cli_add_str(&a, "data", &data, "SPEC", "reference data: fmnist-test:DIR, fmnist:DIR, builtin, npy:FILE"));
    cli_range(cli_add_int(&a, "n", &n, "N", "generated images to use"), 2, 1e7);
    cli_range(cli_add_int(&a, "ref-n", &nref, "N", "reference images to use"), 2, 1e7);
    cli_add_choice(&a, "sampler", &sampler, "ddim|ddpm|euler|heun|dpmpp2m", "sampler (with --ckpt)");
    cli_range(cli_add_int(&a, "steps", &steps, "S", "sampler steps (with --ckpt)"), 1, BD_SAMPLER_MAX_STEPS);
    cli_add_choice(&a, "time-grid", &time_grid, "uniform_t|logsnr|karras", "time grid (teachers; see docs/samplers.md)");
    cli_add_flag(&a, "clip", &clip, "clip x_hat to [-1, 1] at every step");
    cli_add_seed(&a, &seed, "noise seed (with --ckpt)");
    cli_range(cli_add_int(&a, "batch", &batch, "B", "samples per network call"), 1, 4096);
    cli_add_str(&a, "out", &out, "FILE", "also save the generated samples (.npy)");
    cli_add_str(&a, "features", &features, "FILE",
                "FD-CLF: features of this trained classifier (bdense classifier) instead of FD-RF");
    cli_range(cli_add_num(&a, "noise", &noise, "STD", "add N(0, STD^2) noise to the evaluated images (metric checks)"), 0, 10);
    cli_range(cli_add_int(&a, "skip", &skip, "N", "with --real: skip its first N images (disjoint draws)"), 0, 1e7);
    rc = cli_parse(&a, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (!!ckpt + !!samples + !!real != 1)
        return cli_fail("eval", "give exactly one of --ckpt FILE, --samples FILE.npy or --real SPEC");
    if (cli_prepare_output("eval", out)) return 1;
    if (cli_context(&a, &ctx)) return 1;
    cli_install_interrupt();
    if (cli_data_open("eval", ctx, data, 0, &ref)) {
        rc = 1;
        goto done;
    }
    if (real) {
        cli_data rd;
        if (cli_data_open("eval", ctx, real, 0, &rd)) goto done;
        if (rd.kind == CLI_DATA_ARRAY && skip >= rd.n) {
            cli_data_free(&rd);
            rc = cli_fail("eval", "--skip %lld but --real holds %lld images", (long long)skip, (long long)rd.n);
            goto done;
        }
        if (rd.kind == CLI_DATA_ARRAY && n + skip > rd.n) n = rd.n - skip;
        C = rd.c, H = rd.h, W = rd.w;
        x = (float *)malloc(sizeof(float) * (size_t)((n + skip) * C * H * W));
        if (!x || cli_data_take("eval", &rd, x, n + skip, 777)) {
            cli_data_free(&rd);
            rc = x ? 1 : cli_fail("eval", "out of memory");
            goto done;
        }
        if (skip) memmove(x, x + skip * C * H * W, sizeof(float) * (size_t)(n * C * H * W));
        cli_data_free(&rd);
    } else if (samples) {
        int64_t shape[4] = {0, 0, 0, 0};
        int nd = 0;
        r = cli_npy_read(ctx, samples, &x, shape, &nd);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("eval", ctx, r, samples);
            goto done;
        }
        if (nd == 3) shape[3] = shape[2], shape[2] = shape[1], shape[1] = 1, nd = 4;
        if (nd != 4) {
            rc = cli_fail("eval", "%s: expected (N,C,H,W) or (N,H,W), got %d dims", samples, nd);
            goto done;
        }
        if (cli_given(&a, "n") && n < shape[0]) shape[0] = n;
        n = shape[0], C = shape[1], H = shape[2], W = shape[3];
    } else {
        bd_sampler_config cfg;
        int64_t nfe;
        double secs;
        r = bd_model_load(ctx, ckpt, &m);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("eval", ctx, r, ckpt);
            goto done;
        }
        if (cli_sampler_setup("eval", m, sampler, steps, cli_given(&a, "steps"), time_grid, 0, clip, &cfg, a.quiet)) {
            rc = 1;
            goto done;
        }
        C = m->net->in_ch, H = m->net->height, W = m->net->width;
        x = (float *)malloc(sizeof(float) * (size_t)(n * C * H * W));
        if (!x) {
            rc = cli_fail("eval", "out of memory");
            goto done;
        }
        if (cli_sample_run("eval", ctx, m, &cfg, x, n, batch, (uint64_t)seed, "sample", a.quiet, &nfe, &secs)) {
            rc = 1;
            goto done;
        }
        cli_note(&a, "%lld samples, %s %lld steps, %lld NFE, %.2f s (%.1f ms/image)\n", (long long)n, sampler,
                 (long long)cfg.steps, (long long)nfe, secs, 1000 * secs / (double)n);
        if (out) {
            int64_t shape[4];
            shape[0] = n, shape[1] = C, shape[2] = H, shape[3] = W;
            r = bd_npy_write(ctx, out, x, 4, shape);
            if (r != BD_SUCCESS) {
                rc = cli_fail_bd("eval", ctx, r, out);
                goto done;
            }
        }
    }
    if (ref.kind == CLI_DATA_BUILTIN) ref.h = H, ref.w = W;
    if (ref.c != C || ref.h != H || ref.w != W) {
        rc = cli_fail("eval", "samples are %lldx%lldx%lld but the reference data is %lldx%lldx%lld", (long long)C,
                      (long long)H, (long long)W, (long long)ref.c, (long long)ref.h, (long long)ref.w);
        goto done;
    }
    if (ref.kind == CLI_DATA_ARRAY && nref > ref.n) {
        if (cli_given(&a, "ref-n")) {
            rc = cli_fail("eval", "--ref-n %lld but the reference data holds %lld images", (long long)nref,
                          (long long)ref.n);
            goto done;
        }
        nref = ref.n;
    }
    xr = (float *)malloc(sizeof(float) * (size_t)(nref * C * H * W));
    if (!xr || cli_data_take("eval", &ref, xr, nref, 12345)) {
        rc = xr ? 1 : cli_fail("eval", "out of memory");
        goto done;
    }
    if (noise > 0) {
        bd_rng nr = bd_rng_init((uint64_t)seed + 4242);
        float *e = (float *)malloc(sizeof(float) * (size_t)(n * C * H * W));
        int64_t i;
        if (!e) {
            rc = cli_fail("eval", "out of memory");
            goto done;
        }
        bd_rng_normal(&nr, e, n * C * H * W);
        for (i = 0; i < n * C * H * W; i++) x[i] += (float)noise * e[i];
        free(e);
    }
    if (features) {
        char err[512];
        int64_t fc, fh, fw;
        if (cli_clf_load(ctx, features, 100, &clf, err, sizeof err)) {
            rc = cli_fail("eval", "--features %s: %s", features, err);
            goto done;
        }
        cli_clf_shape(clf, &fc, &fh, &fw);
        if (fc != C || fh != H || fw != W) {
            rc = cli_fail("eval", "--features %s takes %lldx%lldx%lld images, the samples are %lldx%lldx%lld", features,
                          (long long)fc, (long long)fh, (long long)fw, (long long)C, (long long)H, (long long)W);
            goto done;
        }
        if (cli_fdclf("eval", clf, x, n, xr, nref, &fd)) {
            rc = 1;
            goto done;
        }
    } else if (cli_fdrf("eval", ctx, x, n, xr, nref, C, H, W, &fd)) {
        rc = 1;
        goto done;
    }
    printf("%s %.4f  (%lld %s vs %lld reference images)\n", features ? "FD-CLF" : "FD-RF", fd, (long long)n,
           real ? "real" : "generated", (long long)nref);
    rc = 0;
done:
    if (samples && !real && x) bd_free(ctx, x);
    else free(x);
    free(xr);
    cli_clf_free(clf);
    cli_data_free(&ref);
    if (m) bd_model_free(m);
    bd_context_free(ctx);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* bdense data                                                            */
/* ---------------------------------------------------------------------- */
int cmd_data(int argc, char **argv) {
    cli_args a;
    const char *data = NULL, *out = NULL, *grid = NULL;
    int64_t n = 64, size = 0, seed = 0;
    int rc = 1;
    bd_context *ctx = NULL;
    cli_data d;
    float *x = NULL;
    memset(&d, 0, sizeof d);
    cli_args_init(&a, "data", "Look at a data source: write its first --n images (builtin: --n fresh ones) as .npy "
                              "and/or a PNG grid.",
                  "The same specs as train --data.  Handy for a picture of the built-in shapes, or to turn\n"
                  "Fashion-MNIST into an .npy for other tools.");
    cli_required(cli_add_str(&a, "data", &data, "SPEC", "builtin[:SIZE] | fmnist:DIR | fmnist-test:DIR | npy:FILE"));
    cli_range(cli_add_int(&a, "n", &n, "N", "images"), 1, 1e7);
    cli_range(cli_add_int(&a, "image-size", &size, "N", "builtin image size (default 28)"), 0, 1024);
    cli_add_seed(&a, &seed, "builtin seed");
    cli_add_str(&a, "out", &out, "FILE", "write (N,C,H,W) float32 .npy");
    cli_add_str(&a, "grid", &grid, "FILE", "write a PNG grid");
    rc = cli_parse(&a, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    rc = 1;
    if (!out && !grid) return cli_fail("data", "nothing to write: give --out FILE.npy and/or --grid FILE.png");
    if (cli_prepare_output("data", out) || cli_prepare_output("data", grid)) return 1;
    if (cli_context(&a, &ctx)) return 1;
    if (cli_data_open("data", ctx, data, size, &d)) goto done;
    if (d.kind == CLI_DATA_ARRAY && n > d.n) n = d.n;
    x = (float *)malloc(sizeof(float) * (size_t)(n * d.c * d.h * d.w));
    if (!x) {
        rc = cli_fail("data", "out of memory");
        goto done;
    }
    if (cli_data_take("data", &d, x, n, (uint64_t)seed)) goto done;
    if (out) {
        int64_t shape[4];
        bd_result r;
        shape[0] = n, shape[1] = d.c, shape[2] = d.h, shape[3] = d.w;
        r = bd_npy_write(ctx, out, x, 4, shape);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("data", ctx, r, out);
            goto done;
        }
    }
    if (grid && cli_write_grid_titled("data", ctx, grid, x, n, d.c, d.h, d.w, data)) goto done;
    cli_note(&a, "%s: %lld images (%lld,%lld,%lld)\n", d.desc, (long long)n, (long long)d.c, (long long)d.h,
             (long long)d.w);
    rc = 0;
done:
    free(x);
    cli_data_free(&d);
    bd_context_free(ctx);
    return rc;
}
