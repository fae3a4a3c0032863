/* cmd_train.c - `bdense train`: teacher training with progress, a loss
   curve (CSV + PNG), periodic atomic checkpoints and exact resume. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The loss log in memory: every logged row, rewritten in full (atomically)
   at every save so that a resumed run continues the same file. */
typedef struct cli__loss_row {
    int64_t step;
    double loss, smooth, lr, grad_norm, rate, elapsed;
    int64_t skipped;
} cli__loss_row;

typedef struct cli__loss_log {
    cli__loss_row *rows;
    int64_t n, cap;
} cli__loss_log;

static int cli__log_push(cli__loss_log *l, const cli__loss_row *r) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 1024;
        cli__loss_row *p = (cli__loss_row *)realloc(l->rows, sizeof *p * (size_t)cap);
        if (!p) return 1;
        l->rows = p;
        l->cap = cap;
    }
    l->rows[l->n++] = *r;
    return 0;
}

/* read back rows with step <= max_step from an earlier run's CSV */
static void cli__log_read(cli__loss_log *l, const char *path, int64_t max_step) {
    FILE *f = fopen(path, "r");
    char line[512];
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        cli__loss_row r;
        long long step, skipped;
        memset(&r, 0, sizeof r);
        if (sscanf(line, "%lld,%lf,%lf,%lf,%lf,%lf,%lf,%lld", &step, &r.loss, &r.smooth, &r.lr, &r.grad_norm, &r.rate,
                   &r.elapsed, &skipped) != 8)
            continue;
        if (step > max_step) break;
        r.step = step;
        r.skipped = skipped;
        if (cli__log_push(l, &r)) break;
    }
    fclose(f);
}

static int cli__log_write(const char *cmd, bd_context *ctx, const cli__loss_log *l, const char *csv, const char *png) {
    char tmp[1100];
    FILE *f;
    int64_t i;
    snprintf(tmp, sizeof tmp, "%s.tmp", csv);
    f = fopen(tmp, "w");
    if (!f) return cli_fail(cmd, "cannot write %s", tmp);
    fprintf(f, "step,loss,loss_smooth,lr,grad_norm,steps_per_s,elapsed_s,skipped\n");
    for (i = 0; i < l->n; i++) {
        const cli__loss_row *r = &l->rows[i];
        fprintf(f, "%lld,%.6g,%.6g,%.6g,%.6g,%.4g,%.1f,%lld\n", (long long)r->step, r->loss, r->smooth, r->lr,
                r->grad_norm, r->rate, r->elapsed, (long long)r->skipped);
    }
    if (fclose(f) != 0 || rename(tmp, csv) != 0) {
        remove(tmp);
        return cli_fail(cmd, "cannot write %s", csv);
    }
    if (png && l->n >= 2) {
        /* the interval mean and the smoothed loss against step (log y) */
        float *xs = (float *)malloc(sizeof(float) * (size_t)l->n * 3);
        bd_result r;
        if (!xs) return 0;
        for (i = 0; i < l->n; i++) {
            xs[i] = (float)l->rows[i].step;
            xs[l->n + i] = (float)l->rows[i].loss;
            xs[2 * l->n + i] = (float)l->rows[i].smooth;
        }
        {
            static const char *const names[2] = {"loss, mean per logged row", "loss, EMA (0.98)"};
            r = cli_plot(ctx, png, xs, xs + l->n, 2, l->n, "Teacher training loss", "training step",
                         "loss (MSE, log scale)", names);
        }
        free(xs);
        if (r != BD_SUCCESS) return cli_fail_bd(cmd, ctx, r, png);
    }
    return 0;
}

int cmd_train(int argc, char **argv) {
    cli_args a;
    cli_arch arch;
    const char *data = NULL, *out = NULL, *resume = NULL, *init = NULL, *log = NULL, *plot = NULL;
    const char *weighting = "none", *on_nan = "stop", *lr_sched = "constant";
    int64_t steps = 20000, batch = 64, seed = 0, save_every = 500, log_every = 25, warmup = 200, max_skips = 100;
    int64_t sample_every = 0;
    bd_denoiser *snet = NULL;
    char samples_path[1024];
    double lr = 2e-4, ema = 0.999, grad_clip = 1.0, wd = 0.0;
    int hflip = 0, rc = 1;
    bd_context *ctx = NULL;
    bd_model *m = NULL;
    bd_trainer *tr = NULL;
    bd_context *gpu = NULL;
    bd_trainer_config tcfg;
    cli_data ds;
    cli__loss_log lg;
    cli_progress bar;
    float *xb = NULL;
    char csv_path[1024], png_path[1024];
    int64_t start = 0, step, skipped = 0, consecutive = 0, nlog = 0;
    double acc = 0, smooth = -1, gn_acc = 0, t_start, t_last_save, elapsed0 = 0;
    bd_result r;
    memset(&ds, 0, sizeof ds);
    memset(&lg, 0, sizeof lg);
    cli_arch_defaults(&arch);
    cli_args_init(
        &a, "train", "Train a diffusion teacher (docs/spec.md sec. 3) and write it as a checkpoint.",
        "data:  builtin[:SIZE] (procedural shapes, no download), fmnist:DIR (Fashion-MNIST or MNIST IDX\n"
        "       files, .gz or raw; /usr/share/datasets/fashion-mnist), npy:FILE ((N,C,H,W) float32 in [-1,1]).\n"
        "The checkpoint (--out) is rewritten atomically every --save-every steps, at the end and on Ctrl-C,\n"
        "with the optimiser state; --resume FILE continues exactly where it stopped (same data order,\n"
        "noise, Adam moments and EMA), up to --steps in total.  The loss curve goes to --log (CSV) and a\n"
        "PNG next to it.  A non-finite loss or gradient changes nothing; --on-nan stop saves and exits,\n"
        "--on-nan skip goes on with the next batch (up to --max-skips in a row).");
    cli_required(cli_add_str(&a, "data", &data, "SPEC", "builtin[:SIZE] | fmnist:DIR | npy:FILE"));
    cli_add_str(&a, "out", &out, "FILE", "checkpoint to write (default: the --resume file)");
    cli_add_str(&a, "resume", &resume, "FILE", "continue from this checkpoint (with optimiser state)");
    cli_add_str(&a, "init", &init, "FILE", "start from this model's weights (e.g. bdense init), fresh optimiser");
    cli_range(cli_add_int(&a, "steps", &steps, "N", "total optimisation steps"), 1, 1e9);
    cli_range(cli_add_int(&a, "batch", &batch, "B", "batch size"), 1, 65536);
    cli_range(cli_add_num(&a, "lr", &lr, "LR", "peak learning rate"), 0, 10);
    cli_add_choice(&a, "lr-schedule", &lr_sched, "constant|cosine", "after warm-up");
    cli_range(cli_add_int(&a, "warmup", &warmup, "N", "linear warm-up steps"), 0, 1e9);
    cli_range(cli_add_num(&a, "grad-clip", &grad_clip, "X", "global gradient-norm clip (0 = off)"), 0, 1e9);
    cli_range(cli_add_num(&a, "weight-decay", &wd, "X", "AdamW decoupled weight decay"), 0, 10);
    cli_range(cli_add_num(&a, "ema", &ema, "DECAY", "EMA decay of the weights that get sampled"), 0, 1);
    cli_add_choice(&a, "weighting", &weighting, "none|snr_trunc", "loss weighting");
    cli_add_seed(&a, &seed, "seed of the initialisation, noise and data order");
    cli_add_flag(&a, "hflip", &hflip, "random horizontal flips");
    cli_range(cli_add_int(&a, "save-every", &save_every, "N", "checkpoint every N steps (0 = only at the end)"), 0,
              1e9);
    cli_add_str(&a, "log", &log, "CSV", "loss curve CSV (default: <out>.loss.csv)");
    cli_add_str(&a, "plot", &plot, "PNG", "loss curve picture (default: <out>.loss.png)");
    cli_range(cli_add_int(&a, "log-every", &log_every, "N", "steps per CSV row"), 1, 1e9);
    cli_range(cli_add_int(&a, "sample-every", &sample_every, "N",
                          "every N steps write <out>.samples.png: 16 EMA samples, dpmpp2m 20 steps (0 = never)"),
              0, 1e9);
    cli_add_choice(&a, "on-nan", &on_nan, "stop|skip", "what a non-finite loss or gradient does");
    cli_range(cli_add_int(&a, "max-skips", &max_skips, "N", "with --on-nan skip: give up after N in a row"), 1, 1e9);
    cli_arch_options(&a, &arch);
    rc = cli_parse(&a, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    rc = 1;
    if (!out) out = resume;
    if (!out) return cli_fail("train", "--out FILE is required (or --resume FILE, which is then also the output)");
    if (resume && init) return cli_fail("train", "--resume and --init exclude each other");
    cli_sibling(csv_path, sizeof csv_path, out, ".loss.csv");
    cli_sibling(png_path, sizeof png_path, out, ".loss.png");
    cli_sibling(samples_path, sizeof samples_path, out, ".samples.png");
    if (log) snprintf(csv_path, sizeof csv_path, "%s", log);
    if (plot) snprintf(png_path, sizeof png_path, "%s", plot);
    if (cli_prepare_output("train", out) || cli_prepare_output("train", csv_path) ||
        cli_prepare_output("train", png_path))
        return 1;
    if (cli_context(&a, &ctx)) return 1;
    if (cli_gpu(&a, &gpu)) {
        bd_context_free(ctx);
        return 1;
    }

    /* model */
    if (resume || init) {
        const char *path = resume ? resume : init;
        static const char *arch_opts[] = {"config", "image-size", "in-ch", "ch", "ch-mult", "nres",
                                          "attn", "groups", "heads", "param", "schedule", NULL};
        int i;
        for (i = 0; arch_opts[i]; i++)
            if (cli_given(&a, arch_opts[i])) {
                rc = cli_fail("train", "--%s cannot change a model loaded with --%s (its checkpoint fixes it)",
                              arch_opts[i], resume ? "resume" : "init");
                goto done;
            }
        r = bd_model_load(ctx, path, &m);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("train", ctx, r, path);
            goto done;
        }
        if (m->grid) {
            rc = cli_fail("train", "%s is a distilled student; train takes a teacher", path);
            goto done;
        }
    } else if (cli_model_new("train", ctx, &arch, (uint64_t)seed, &m)) {
        goto done;
    }

    /* data */
    if (cli_data_open("train", ctx, data, m->net->height, &ds)) goto done;
    ds.hflip = hflip;
    if (ds.c != m->net->in_ch || ds.h != m->net->height || ds.w != m->net->width) {
        rc = cli_fail("train", "the data is %lldx%lldx%lld but the model takes %lldx%lldx%lld (use --image-size/--in-ch)",
                      (long long)ds.c, (long long)ds.h, (long long)ds.w, (long long)m->net->in_ch,
                      (long long)m->net->height, (long long)m->net->width);
        goto done;
    }

    /* trainer */
    tcfg = bd_trainer_config_init();
    tcfg.param = m->param;
    tcfg.schedule = m->schedule;
    if (bd_loss_weight_parse(weighting, &tcfg.weighting) != BD_SUCCESS) goto done;
    tcfg.adam.lr = lr;
    tcfg.adam.warmup_steps = warmup;
    tcfg.adam.lr_schedule = strcmp(lr_sched, "cosine") == 0 ? BD_LR_COSINE : BD_LR_CONSTANT;
    tcfg.adam.total_steps = steps;
    tcfg.adam.grad_clip = grad_clip;
    tcfg.adam.weight_decay = wd;
    tcfg.ema_decay = ema;
    tcfg.seed = (uint64_t)seed;
    /* --device cuda: the model moves to the GPU and the trainer runs there;
       checkpoints download its state */
    if (gpu && (r = bd_denoiser_to_context(m->net, gpu)) != BD_SUCCESS) {
        rc = cli_fail_bd("train", gpu, r, "moving the model to the GPU");
        goto done;
    }
    r = bd_trainer_init(ctx, m->net, &tcfg, batch, &tr);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("train", ctx, r, "trainer");
        goto done;
    }
    if (resume) {
        r = bd_model_resume(ctx, resume, m, tr);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("train", ctx, r, "restoring the optimiser state");
            goto done;
        }
        start = tr->adam.step;
        cli__log_read(&lg, csv_path, start);
        if (start >= steps) {
            cli_note(&a, "%s is already at step %lld >= --steps %lld: nothing to do\n", resume, (long long)start,
                     (long long)steps);
            rc = 0;
            goto done;
        }
        if (lg.n) smooth = lg.rows[lg.n - 1].smooth, elapsed0 = lg.rows[lg.n - 1].elapsed;
    }
    xb = (float *)malloc(sizeof(float) * (size_t)(batch * ds.c * ds.h * ds.w));
    if (!xb) {
        rc = cli_fail("train", "out of memory for a batch of %lld", (long long)batch);
        goto done;
    }
    cli_note(&a, "train: %s model, %lld parameters, %s, param %s, schedule %s, batch %lld, lr %g, ema %g\n"
                 "       data %s\n       steps %lld -> %lld, checkpoint %s, log %s\n",
             m->net->vt->kind, (long long)m->net->n_params,
             resume ? "resumed" : init ? "from --init" : arch.config, bd_param_name(m->param),
             bd_schedule_name(m->schedule), (long long)batch, lr, ema, ds.desc, (long long)start, (long long)steps, out,
             csv_path);
    cli_install_interrupt();
    cli_progress_init(&bar, "train", start, steps, a.quiet);
    t_start = cli_now();
    t_last_save = t_start;
    for (step = start; step < steps;) {
        double loss = 0;
        char extra[96];
        int stop = 0, save = 0;
        r = cli_data_batch(&ds, xb, batch, &tr->data_rng);
        if (r == BD_SUCCESS) r = bd_trainer_step(tr, xb, batch, &loss);
        if (r == BD_ERROR_NONFINITE) {
            skipped++;
            consecutive++;
            if (strcmp(on_nan, "stop") == 0) {
                cli_fail("train", "non-finite loss or gradient at step %lld; the model is unchanged since step %lld "
                         "and is saved (lower --lr, raise --warmup, or use --on-nan skip)",
                         (long long)(step + 1), (long long)step);
                stop = 2;
            } else if (consecutive >= max_skips) {
                cli_fail("train", "%lld non-finite steps in a row; giving up (lower --lr?)", (long long)consecutive);
                stop = 2;
            } else {
                continue;
            }
        } else if (r != BD_SUCCESS) {
            cli_fail_bd("train", ctx, r, "training step");
            stop = 2;
        } else {
            consecutive = 0;
            step++;
            acc += loss;
            gn_acc += tr->last_grad_norm;
            nlog++;
            smooth = smooth < 0 ? loss : 0.98 * smooth + 0.02 * loss;
            if (nlog == log_every || step == steps) {
                cli__loss_row row;
                row.step = step;
                row.loss = acc / (double)nlog;
                row.smooth = smooth;
                row.lr = tr->last_lr;
                row.grad_norm = gn_acc / (double)nlog;
                row.rate = cli_progress_rate(&bar, step);
                row.elapsed = elapsed0 + cli_now() - t_start;
                row.skipped = skipped;
                cli__log_push(&lg, &row);
                acc = gn_acc = 0;
                nlog = 0;
            }
            snprintf(extra, sizeof extra, "loss %.4f", smooth);
            cli_progress_update(&bar, step, extra);
            if (save_every > 0 && step % save_every == 0) save = 1;
            if (sample_every > 0 && (step % sample_every == 0 || step == steps)) {
                /* a picture of the EMA model so far (on its own network copy,
                   where the model lives) */
                bd_rng srng = bd_rng_init(1);
                r = snet ? BD_SUCCESS : bd_denoiser_create_like(m->net, m->net->branches, &srng, &snet);
                if (r == BD_SUCCESS) r = bd_trainer_copy_ema(tr, snet);
                if (r == BD_SUCCESS) {
                    bd_model sm = *m;
                    bd_sampler_config scfg;
                    float *sx = (float *)malloc(sizeof(float) * 16 * (size_t)(ds.c * ds.h * ds.w));
                    sm.net = snet;
                    if (sx && cli_sampler_setup("train", &sm, "dpmpp2m", 20, 1, "uniform_t", 0, 0, &scfg, 1) == 0 &&
                        cli_sample_run("train", ctx, &sm, &scfg, sx, 16, 16, 0, "samples", 1, NULL, NULL) == 0)
                    {
                        char title[96];
                        snprintf(title, sizeof title, "EMA samples at step %lld (dpmpp2m, 20 steps)", (long long)step);
                        cli_write_grid_titled("train", ctx, samples_path, sx, 16, ds.c, ds.h, ds.w, title);
                    }
                    free(sx);
                } else {
                    cli_fail_bd("train", ctx, r, "--sample-every");
                }
            }
        }
        if (cli_interrupted() && !stop) stop = 1;
        if (save || stop || step == steps) {
            r = bd_model_save(ctx, m, out, tr);
            if (r != BD_SUCCESS) {
                cli_fail_bd("train", ctx, r, out);
                rc = 1;
                goto done;
            }
            if (cli__log_write("train", ctx, &lg, csv_path, png_path)) goto done;
            t_last_save = cli_now();
        }
        if (stop == 1) {
            cli_progress_done(&bar, "interrupted");
            fprintf(stderr, "bdense train: interrupted at step %lld; saved %s (continue with --resume %s)\n",
                    (long long)step, out, out);
            rc = 130;
            goto done;
        }
        if (stop == 2) {
            rc = 1;
            goto done;
        }
    }
    (void)t_last_save;
    {
        char extra[96];
        snprintf(extra, sizeof extra, "loss %.4f", smooth);
        cli_progress_done(&bar, extra);
    }
    cli_note(&a, "done: %lld steps in %.1f s (%.2f steps/s at batch %lld); wrote %s, %s, %s\n",
             (long long)(steps - start), cli_now() - t_start, (double)(steps - start) / (cli_now() - t_start),
             (long long)batch, out, csv_path, png_path);
    if (skipped)
        fprintf(stderr, "bdense train: warning: %lld non-finite steps were skipped\n", (long long)skipped);
    rc = 0;
done:
    free(xb);
    free(lg.rows);
    if (snet) bd_denoiser_free(snet);
    if (tr) bd_trainer_free(tr);
    if (m) bd_model_free(m);
    if (gpu) bd_context_free(gpu);
    cli_data_free(&ds);
    bd_context_free(ctx);
    return rc;
}
