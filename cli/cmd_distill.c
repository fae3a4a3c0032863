/* cmd_distill.c - `bdense distill`, `bdense trajectories`, `bdense compare`. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* shared distiller setup                                                 */
/* ---------------------------------------------------------------------- */
typedef struct cli__dopts {
    const char *method, *weights, *space, *distance, *solver, *student_grid, *subdiv, *dense_targets;
    int64_t branches, substeps, student_steps, refine;
    int teacher_forcing;
    double aux_beta, adaptive_decay;
    int64_t anneal_steps;
} cli__dopts;

static void cli__dopts_defaults(cli__dopts *o) {
    memset(o, 0, sizeof *o);
    o->method = "td";
    o->weights = "uniform";
    o->space = "auto";
    o->distance = "l2";
    o->solver = "dpmpp2m";
    o->student_grid = "uniform_t";
    o->subdiv = "auto";
    o->dense_targets = "student";
    o->branches = 2;
    o->substeps = 0;
    o->student_steps = 2;
    o->refine = 1;
    o->aux_beta = 0.1;
    o->adaptive_decay = 0.99;
    o->anneal_steps = 0;
}

static void cli__grid_options(cli_args *a, cli__dopts *o) {
    cli_range(cli_add_int(a, "student-steps", &o->student_steps, "N", "student sampling steps (NFE)"), 1, 4096);
    cli_range(cli_add_int(a, "teacher-substeps", &o->substeps, "KT",
                          "teacher steps per student step, a multiple of --branches (0 = 4 if K divides 4, else K; "
                          "cd: about 32 in all)"),
              0, 4096);
    cli_add_choice(a, "student-grid", &o->student_grid, "uniform_t|logsnr|karras", "student time grid");
    cli_add_choice(a, "subdiv", &o->subdiv, "auto|logsnr|t", "teacher sub-steps inside a student step: uniform in t or in log-SNR (auto: t, the library default)");
    cli_add_choice(a, "teacher-solver", &o->solver, "dpmpp2m|heun|euler|ddim", "TD teacher ODE solver");
    cli_range(cli_add_int(a, "teacher-refine", &o->refine, "R",
                          "teacher solver steps per sub-step (accuracy of the targets, apart from K and KT)"),
              1, 4096);
}

static int cli__dconfig(const char *cmd, const cli__dopts *o, const bd_model *teacher, int64_t total_steps,
                        bd_distill_config *c) {
    bd_distill_method method;
    int64_t K = o->branches, Kt = o->substeps;
    if (bd_distill_method_parse(o->method, &method) != BD_SUCCESS) return cli_fail(cmd, "--method %s?", o->method);
    if (Kt == 0 && method == BD_DISTILL_CD) Kt = bd_distill_config_init(method, K, o->student_steps).teacher_substeps;
    if (Kt == 0) Kt = (4 % K == 0) ? 4 : K;
    if (Kt % K != 0)
        return cli_fail(cmd, "--teacher-substeps %lld must be a multiple of --branches %lld (branch k targets teacher "
                        "sub-state k*KT/K)", (long long)Kt, (long long)K);
    *c = bd_distill_config_init(method, K, o->student_steps);
    c->teacher_substeps = Kt;
    c->teacher_refine = o->refine;
    if (bd_distill_weights_parse(o->weights, &c->weights) != BD_SUCCESS)
        return cli_fail(cmd, "--weights %s?", o->weights);
    if (strcmp(o->space, "x") == 0) c->space = BD_DISTILL_SPACE_X;
    if (strcmp(o->space, "z") == 0) c->space = BD_DISTILL_SPACE_Z;
    c->distance = strcmp(o->distance, "l1") == 0 ? BD_DISTILL_L1 : BD_DISTILL_L2;
    if (c->space == BD_DISTILL_SPACE_X && c->distance == BD_DISTILL_L1)
        return cli_fail(cmd, "--distance l1 needs --space z (the x-space loss is L2)");
    if (bd_sampler_parse(o->solver, &c->teacher_solver) != BD_SUCCESS) return cli_fail(cmd, "--teacher-solver?");
    if (method != BD_DISTILL_TD) c->teacher_solver = BD_SAMPLER_DDIM;
    if (bd_grid_parse(o->student_grid, &c->grid) != BD_SUCCESS) return cli_fail(cmd, "--student-grid?");
    if (strcmp(o->subdiv, "logsnr") == 0) c->subdiv = BD_SUBDIV_LOGSNR;
    if (strcmp(o->subdiv, "t") == 0) c->subdiv = BD_SUBDIV_T;
    c->teacher_forcing = o->teacher_forcing;
    c->dense_targets = strcmp(o->dense_targets, "trajectory") == 0 ? BD_DENSE_FROM_TRAJECTORY : BD_DENSE_FROM_STUDENT;
    c->aux_beta = o->aux_beta;
    c->adaptive_decay = o->adaptive_decay;
    c->anneal_steps = o->anneal_steps > 0 ? o->anneal_steps : (total_steps > 1 ? total_steps : 1);
    c->param = teacher->param;
    c->schedule = teacher->schedule;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* bdense distill                                                         */
/* ---------------------------------------------------------------------- */
typedef struct cli__traj_file {
    float *data;
    int64_t count;
} cli__traj_file;

static int cli__load_traj(const char *cmd, bd_context *ctx, const char *path, const bd_distill *d, cli__traj_file *tf) {
    int64_t shape[4] = {0, 0, 0, 0};
    int nd = 0;
    bd_result r = cli_npy_read(ctx, path, &tf->data, shape, &nd);
    if (r != BD_SUCCESS) return cli_fail_bd(cmd, ctx, r, path);
    if (nd != 3 || shape[1] != d->S + 1 || shape[2] != d->D) {
        return cli_fail(cmd,
                        "%s: expected trajectories of shape (n, %lld, %lld) for %lld student steps x %lld teacher "
                        "sub-steps; make them with bdense trajectories and the same --student-steps, "
                        "--teacher-substeps, --student-grid and --subdiv",
                        path, (long long)(d->S + 1), (long long)d->D, (long long)d->N, (long long)d->Kt);
    }
    tf->count = shape[0];
    return 0;
}

int cmd_distill(int argc, char **argv) {
    cli_args a;
    cli__dopts o;
    const char *teacher_path = NULL, *out = NULL, *data = NULL, *traj = NULL, *log = NULL, *plot = NULL;
    const char *resume = NULL;
    int64_t steps = 1000, batch = 32, seed = 0, warmup = 100, save_every = 500, log_every = 25, rounds = 1;
    int64_t eval_every = 0, eval_n = 64;
    double lr = 1e-4, ema = 0.999, grad_clip = 1.0;
    int rc = 1;
    bd_context *ctx = NULL;
    bd_model *teacher = NULL;
    bd_denoiser *student = NULL;
    bd_distill *dist = NULL;
    bd_distill_config dc;
    cli_data ds;
    cli__traj_file tf;
    bd_npy_stream tstream;
    int stream = 0;
    bd_context *gpu = NULL;              /* --device cuda: the models and the distiller live there */
    float *xb = NULL;
    FILE *csv = NULL;
    char csv_path[1024], png_path[1024];
    double bl[BD_DISTILL_MAX_BRANCHES], acc_bl[BD_DISTILL_MAX_BRANCHES], acc = 0, smooth = -1;
    int64_t round, k, nlog = 0, total_done = 0;
    double t0;
    float *plot_x = NULL, *plot_y = NULL;
    int64_t plot_n = 0, plot_cap = 0;
    bd_result r;
    memset(&ds, 0, sizeof ds);
    memset(&tf, 0, sizeof tf);
    memset(&tstream, 0, sizeof tstream);
    cli__dopts_defaults(&o);
    cli_args_init(&a, "distill",
                  "Distil a teacher into a few-step student with K output branches (B-DENSE, docs/spec.md sec. 5); "
                  "--branches 1 or --weights final is the sparse baseline.",
                  "TD (trajectory distillation, default): teacher ODE trajectories from noise on a grid nesting the\n"
                  "student's (solved on the fly, or read from --trajectories made by bdense trajectories); the\n"
                  "student walks its own grid from the same noise.  PD (progressive distillation) needs --data;\n"
                  "with --rounds R the student becomes the teacher R-1 times and --student-steps halves each round.\n"
                  "CD ((multistep) consistency distillation, a field baseline) needs --data: one teacher DDIM step\n"
                  "of a fine grid and the student's own prediction there are its target (docs/distillation.md).\n"
                  "Writes the student (EMA weights, its grid and K in the metadata; with the distiller's exact\n"
                  "state for --resume) to --out, a CSV of the loss and every branch's loss to --log and a PNG of\n"
                  "them to --plot.  --device cuda moves teacher and student to the GPU (any option).");
    cli_required(cli_add_str(&a, "teacher", &teacher_path, "FILE", "teacher checkpoint"));
    cli_required(cli_add_str(&a, "out", &out, "FILE", "student checkpoint to write"));
    cli_add_choice(&a, "method", &o.method, "td|pd|cd", "trajectory, progressive or consistency distillation");
    cli_range(cli_add_int(&a, "branches", &o.branches, "K", "student output branches (1 = sparse)"), 1,
              BD_DISTILL_MAX_BRANCHES);
    cli_add_choice(&a, "weights", &o.weights, "uniform|final|linear|aux|anneal|adaptive|agree",
                   "branch weights (agree: dense weight = gradient agreement with the final branch)");
    cli__grid_options(&a, &o);
    cli_add_choice(&a, "space", &o.space, "auto|x|z", "loss space (auto: td z, pd x, cd z)");
    cli_add_choice(&a, "distance", &o.distance, "l2|l1", "z-space distance");
    cli_add_flag(&a, "teacher-forcing", &o.teacher_forcing, "TD: feed the teacher's states, not the student's own");
    cli_add_choice(&a, "dense-targets", &o.dense_targets, "student|trajectory",
                   "TD without teacher forcing: dense branches target the teacher solved from the student's own "
                   "state, or the trajectory's states (docs/distillation.md)");
    cli_range(cli_add_num(&a, "aux-beta", &o.aux_beta, "B", "aux weights: weight of each dense branch"), 0, 100);
    cli_range(cli_add_int(&a, "anneal-steps", &o.anneal_steps, "N", "anneal weights: steps to final-only (0 = all)"), 0,
              1e9);
    cli_range(cli_add_num(&a, "adaptive-decay", &o.adaptive_decay, "D", "adaptive weights: EMA decay of branch losses"),
              0, 0.999999);
    cli_add_str(&a, "data", &data, "SPEC", "PD / CD training data: builtin | fmnist:DIR | npy:FILE");
    cli_add_str(&a, "trajectories", &traj, "FILE", "TD: cached teacher trajectories (.npy) instead of on the fly");
    cli_add_flag(&a, "stream", &stream,
                 "with --trajectories: read the drawn trajectories from the file each step instead of loading it "
                 "(for caches larger than memory; bit-identical results)");
    cli_range(cli_add_int(&a, "steps", &steps, "N", "optimisation steps (per round)"), 1, 1e9);
    cli_range(cli_add_int(&a, "rounds", &rounds, "R", "PD rounds (student steps halve each round)"), 1, 20);
    cli_range(cli_add_int(&a, "batch", &batch, "B", "batch (trajectories per step for TD)"), 1, 65536);
    cli_range(cli_add_num(&a, "lr", &lr, "LR", "learning rate"), 0, 10);
    cli_range(cli_add_int(&a, "warmup", &warmup, "N", "linear warm-up steps"), 0, 1e9);
    cli_range(cli_add_num(&a, "grad-clip", &grad_clip, "X", "gradient-norm clip (0 = off)"), 0, 1e9);
    cli_range(cli_add_num(&a, "ema", &ema, "DECAY", "student EMA decay"), 0, 1);
    cli_add_seed(&a, &seed, "seed (noise, steps, trajectories)");
    cli_range(cli_add_int(&a, "save-every", &save_every, "N", "checkpoint every N steps (0 = end only)"), 0, 1e9);
    cli_range(cli_add_int(&a, "eval-every", &eval_every, "N", "log the trajectory error every N steps (0 = end only)"),
              0, 1e9);
    cli_range(cli_add_int(&a, "eval-n", &eval_n, "N", "samples for the trajectory error"), 1, 1e6);
    cli_add_str(&a, "log", &log, "CSV", "loss CSV (default: <out>.loss.csv)");
    cli_add_str(&a, "plot", &plot, "PNG", "per-branch loss picture (default: <out>.loss.png)");
    cli_range(cli_add_int(&a, "log-every", &log_every, "N", "steps per CSV row"), 1, 1e9);
    cli_add_str(&a, "resume", &resume, "FILE",
                "continue exactly from a student checkpoint of this command (its distiller state)");
    rc = cli_parse(&a, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    rc = 1;
    if (strcmp(o.method, "td") != 0 && !data)
        return cli_fail("distill", "--method %s needs --data (builtin, fmnist:DIR, npy:FILE)", o.method);
    if (strcmp(o.method, "td") == 0 && data) return cli_fail("distill", "--data is for --method pd or cd; TD learns from teacher trajectories");
    if (strcmp(o.method, "td") != 0 && traj) return cli_fail("distill", "--trajectories is for --method td");
    if (stream && !traj) return cli_fail("distill", "--stream reads a --trajectories file; give one");
    if (rounds > 1 && strcmp(o.method, "pd") != 0) return cli_fail("distill", "--rounds is for --method pd");
    if (rounds > 1 && resume) return cli_fail("distill", "--resume works for single-round runs (resume each round's output with --rounds 1)");
    cli_sibling(csv_path, sizeof csv_path, out, ".loss.csv");
    cli_sibling(png_path, sizeof png_path, out, ".loss.png");
    if (log) snprintf(csv_path, sizeof csv_path, "%s", log);
    if (plot) snprintf(png_path, sizeof png_path, "%s", plot);
    if (cli_prepare_output("distill", out) || cli_prepare_output("distill", csv_path) ||
        cli_prepare_output("distill", png_path))
        return 1;
    if (cli_context(&a, &ctx)) return 1;
    if (cli_gpu(&a, &gpu)) {
        bd_context_free(ctx);
        return 1;
    }

    r = bd_model_load(ctx, teacher_path, &teacher);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("distill", ctx, r, teacher_path);
        goto done;
    }
    if (cli__dconfig("distill", &o, teacher, steps, &dc)) goto done;
    if (rounds > 1 && dc.teacher_substeps != 2) {
        rc = cli_fail("distill", "--rounds %lld with --teacher-substeps %lld: each round's teacher is the last student, "
                      "trained only on its own grid, so rounds need 2 teacher sub-steps per student step "
                      "(--branches 1 or 2, --teacher-substeps 2; docs/distillation.md)", (long long)rounds,
                      (long long)dc.teacher_substeps);
        goto done;
    }
    dc.adam.lr = lr;
    dc.adam.warmup_steps = warmup;
    dc.adam.grad_clip = grad_clip;
    dc.adam.total_steps = steps;
    dc.ema_decay = ema;
    dc.seed = (uint64_t)seed;
    {
        bd_rng rng = bd_rng_init((uint64_t)seed + 1);
        r = bd_distill_student_from_teacher(teacher->net, o.branches, &rng, &student);
    }
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("distill", ctx, r, "student");
        goto done;
    }
    if (gpu) { /* --device cuda: both models move to the GPU, the distiller runs there */
        r = bd_denoiser_to_context(teacher->net, gpu);
        if (r == BD_SUCCESS) r = bd_denoiser_to_context(student, gpu);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("distill", gpu, r, "moving the models to the GPU");
            goto done;
        }
    }
    r = bd_distill_init(ctx, &dc, teacher->net, student, batch, &dist);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("distill", ctx, r, "distiller");
        goto done;
    }
    if (resume) {
        r = bd_distill_load_state(dist, resume);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("distill", ctx, r, resume);
            goto done;
        }
    }
    if (data) {
        if (cli_data_open("distill", ctx, data, teacher->net->height, &ds)) goto done;
        if (ds.c != teacher->net->in_ch || ds.h != teacher->net->height || ds.w != teacher->net->width) {
            rc = cli_fail("distill", "the data's image shape does not match the teacher's");
            goto done;
        }
        xb = (float *)malloc(sizeof(float) * (size_t)(batch * dist->D));
        if (!xb) {
            rc = cli_fail("distill", "out of memory");
            goto done;
        }
    }
    if (traj && stream) {
        r = bd_npy_stream_open(ctx, traj, &tstream);
        if (r == BD_SUCCESS) r = bd_distill_set_trajectory_stream(dist, &tstream);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("distill", ctx, r, traj);
            goto done;
        }
    } else if (traj) {
        if (cli__load_traj("distill", ctx, traj, dist, &tf)) goto done;
        r = bd_distill_set_trajectories(dist, tf.data, tf.count);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("distill", ctx, r, traj);
            goto done;
        }
    }
    csv = fopen(csv_path, resume ? "a" : "w");
    if (!csv) {
        rc = cli_fail("distill", "cannot write %s", csv_path);
        goto done;
    }
    if (!resume) {
        fprintf(csv, "round,step,student_steps,loss");
        for (k = 0; k < dist->K; k++) fprintf(csv, ",branch%lld", (long long)k);
        for (k = 0; k < dist->K; k++) fprintf(csv, ",w%lld", (long long)k);
        fprintf(csv, ",traj_mse,elapsed_s\n");
    }
    cli_note(&a,
             "distill: %s K=%lld weights %s, student %lld steps (%s grid), teacher %lld sub-steps/step (%s), "
             "batch %lld, %lld steps%s\n",
             o.method, (long long)dist->K, o.weights, (long long)dist->N, o.student_grid, (long long)dist->Kt,
             bd_sampler_name(dc.teacher_solver), (long long)batch, (long long)steps,
             traj ? ", cached trajectories" : "");
    cli_install_interrupt();
    t0 = cli_now();
    for (round = 0; round < rounds; round++) {
        cli_progress bar;
        char label[32];
        int64_t first = dist->step;
        snprintf(label, sizeof label, rounds > 1 ? "round %lld" : "distill", (long long)(round + 1));
        cli_progress_init(&bar, label, first, steps, a.quiet);
        for (k = 0; k < dist->K; k++) acc_bl[k] = 0;
        while (dist->step < steps) {
            double loss = 0, mse = -1;
            char extra[160];
            int n_extra;
            if (xb) { /* one rng for data and step */
                r = cli_data_batch(&ds, xb, batch, &dist->rng);
                if (r != BD_SUCCESS) {
                    rc = cli_fail_bd("distill", ctx, r, "data");
                    goto done;
                }
            }
            r = bd_distill_step(dist, xb, batch, &loss, bl);
            if (r == BD_ERROR_NONFINITE) {
                rc = cli_fail("distill", "non-finite loss at step %lld (lower --lr?)", (long long)(dist->step + 1));
                goto done;
            }
            if (r != BD_SUCCESS) {
                rc = cli_fail_bd("distill", ctx, r, "distillation step");
                goto done;
            }
            total_done++;
            acc += loss;
            for (k = 0; k < dist->K; k++) acc_bl[k] += bl[k];
            nlog++;
            smooth = smooth < 0 ? loss : 0.95 * smooth + 0.05 * loss;
            if (eval_every > 0 && dist->step % eval_every == 0) {
                r = bd_distill_eval(dist, eval_n, (uint64_t)seed + 777, 1, &mse, NULL, NULL);
                if (r != BD_SUCCESS) mse = -1;
            }
            if (nlog == log_every || dist->step == steps || mse >= 0) {
                fprintf(csv, "%lld,%lld,%lld,%.6g", (long long)(dist->round + 1), (long long)dist->step,
                        (long long)dist->N, acc / (double)nlog);
                for (k = 0; k < dist->K; k++) fprintf(csv, ",%.6g", acc_bl[k] / (double)nlog);
                for (k = 0; k < dist->K; k++) fprintf(csv, ",%.4g", dist->weights[k]);
                if (mse >= 0) fprintf(csv, ",%.6g", mse);
                else fprintf(csv, ",");
                fprintf(csv, ",%.1f\n", cli_now() - t0);
                fflush(csv);
                /* plot data: the total and every branch's loss (log y) */
                if (plot_n == plot_cap) {
                    plot_cap = plot_cap ? 2 * plot_cap : 256;
                    plot_x = (float *)realloc(plot_x, sizeof(float) * (size_t)plot_cap);
                    plot_y = (float *)realloc(plot_y, sizeof(float) * (size_t)plot_cap * (size_t)(dist->K + 1));
                    if (!plot_x || !plot_y) {
                        rc = cli_fail("distill", "out of memory");
                        goto done;
                    }
                }
                plot_x[plot_n] = (float)total_done;
                plot_y[plot_n * (dist->K + 1)] = (float)(acc / (double)nlog);
                for (k = 0; k < dist->K; k++)
                    plot_y[plot_n * (dist->K + 1) + 1 + k] = (float)(acc_bl[k] / (double)nlog);
                plot_n++;
                acc = 0;
                for (k = 0; k < dist->K; k++) acc_bl[k] = 0;
                nlog = 0;
            }
            n_extra = snprintf(extra, sizeof extra, "loss %.4g", smooth);
            if (dist->K > 1)
                for (k = 0; k < dist->K && n_extra < (int)sizeof extra - 16; k++)
                    n_extra += snprintf(extra + n_extra, sizeof extra - (size_t)n_extra, "%s%.3g", k ? " " : " [",
                                        bl[k]);
            if (dist->K > 1 && n_extra < (int)sizeof extra - 2) snprintf(extra + n_extra, sizeof extra - (size_t)n_extra, "]");
            cli_progress_update(&bar, dist->step, extra);
            if ((save_every > 0 && dist->step % save_every == 0) || cli_interrupted()) {
                if ((r = bd_distill_save_state(dist, out)) != BD_SUCCESS) {
                    rc = cli_fail_bd("distill", ctx, r, out);
                    goto done;
                }
            }
            if (cli_interrupted()) {
                cli_progress_done(&bar, "interrupted");
                fprintf(stderr, "bdense distill: interrupted at step %lld; saved %s\n", (long long)dist->step, out);
                rc = 130;
                goto done;
            }
        }
        cli_progress_done(&bar, NULL);
        if (round + 1 < rounds) {
            if (dist->N % 2 != 0) {
                cli_note(&a, "stopping after round %lld: %lld student steps cannot halve\n", (long long)(round + 1),
                         (long long)dist->N);
                break;
            }
            r = bd_distill_next_round(dist);
            if (r != BD_SUCCESS) {
                rc = cli_fail_bd("distill", ctx, r, "next PD round");
                goto done;
            }
        }
    }
    if ((r = bd_distill_save_state(dist, out)) != BD_SUCCESS) {
        rc = cli_fail_bd("distill", ctx, r, out);
        goto done;
    }
    {
        double mse = 0;
        r = bd_distill_eval(dist, eval_n, (uint64_t)seed + 777, 1, &mse, NULL, NULL);
        if (r == BD_SUCCESS)
            cli_note(&a, "trajectory error to the teacher (%lld samples, %lld NFE): MSE %.5g, PSNR %.2f dB\n",
                     (long long)eval_n, (long long)dist->N, mse, 10 * log10(4.0 / (mse > 1e-30 ? mse : 1e-30)));
    }
    if (plot_n >= 2) {
        float *ys = (float *)malloc(sizeof(float) * (size_t)plot_n * (size_t)(dist->K + 1));
        int64_t i;
        if (ys) {
            for (k = 0; k <= dist->K; k++)
                for (i = 0; i < plot_n; i++) ys[k * plot_n + i] = plot_y[i * (dist->K + 1) + k];
            {
                static char names[CLI_MAX_LIST + 2][40];
                const char *np[CLI_MAX_LIST + 2];
                char title[128];
                int nk = (int)(dist->K + 1) < CLI_MAX_LIST + 2 ? (int)(dist->K + 1) : CLI_MAX_LIST + 2;
                for (k = 0; k < nk; k++) {
                    if (k == 0) snprintf(names[k], sizeof names[k], "total (weighted)");
                    else snprintf(names[k], sizeof names[k], "branch%d%s", (int)k - 1, k == dist->K ? " (final)" : "");
                    np[k] = names[k];
                }
                snprintf(title, sizeof title, "Distillation loss (%s, K = %lld, %lld steps)", o.method,
                         (long long)dist->K, (long long)dist->N);
                r = cli_plot(ctx, png_path, plot_x, ys, nk, plot_n, title, "distillation step",
                             "loss (log scale)", np);
            }
            if (r != BD_SUCCESS) cli_fail_bd("distill", ctx, r, png_path);
            free(ys);
        }
    }
    cli_note(&a, "done in %.1f s (%.2f steps/s); wrote %s, %s, %s\n", cli_now() - t0,
             (double)total_done / (cli_now() - t0 + 1e-9), out, csv_path, png_path);
    rc = 0;
done:
    if (csv) fclose(csv);
    free(xb);
    free(plot_x);
    free(plot_y);
    if (tf.data) bd_free(ctx, tf.data);
    cli_data_free(&ds);
    if (dist) bd_distill_free(dist);
    bd_npy_stream_close(&tstream);
    if (student) bd_denoiser_free(student);
    if (teacher) bd_model_free(teacher);
    if (gpu) bd_context_free(gpu);
    bd_context_free(ctx);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* bdense trajectories                                                    */
/* ---------------------------------------------------------------------- */
int cmd_trajectories(int argc, char **argv) {
    cli_args a;
    cli__dopts o;
    const char *teacher_path = NULL, *out = NULL;
    int64_t n = 1024, seed = 0, batch = 64;
    int rc;
    bd_context *ctx = NULL;
    bd_model *teacher = NULL;
    bd_denoiser *student = NULL;
    bd_distill *dist = NULL;
    bd_distill_config dc;
    float *traj = NULL;
    bd_result r;
    double t0;
    cli__dopts_defaults(&o);
    o.branches = 1;
    cli_args_init(&a, "trajectories",
                  "Solve teacher ODE trajectories from noise once and cache them (.npy) for bdense distill "
                  "--trajectories.",
                  "Output: float32 (n, S+1, C*H*W), S = student-steps x teacher-substeps; state 0 is the noise,\n"
                  "state S the sample.  The grid options must match the distill run that reads the file.");
    cli_required(cli_add_str(&a, "teacher", &teacher_path, "FILE", "teacher checkpoint"));
    cli_required(cli_add_str(&a, "out", &out, "FILE", "trajectories .npy"));
    cli_range(cli_add_int(&a, "n", &n, "N", "number of trajectories"), 1, 1e8);
    cli__grid_options(&a, &o);
    cli_add_seed(&a, &seed, "noise seed");
    cli_range(cli_add_int(&a, "batch", &batch, "B", "trajectories per solver call"), 1, 65536);
    rc = cli_parse(&a, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    rc = 1;
    if (cli_prepare_output("trajectories", out)) return 1;
    if (cli_context(&a, &ctx)) return 1;
    r = bd_model_load(ctx, teacher_path, &teacher);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("trajectories", ctx, r, teacher_path);
        goto done;
    }
    if (o.substeps == 0) o.substeps = 4;
    if (cli__dconfig("trajectories", &o, teacher, 1, &dc)) goto done;
    dc.seed = (uint64_t)seed;
    {
        bd_rng rng = bd_rng_init(1);
        r = bd_distill_student_from_teacher(teacher->net, 1, &rng, &student);
    }
    if (r == BD_SUCCESS) r = bd_distill_init(ctx, &dc, teacher->net, student, batch, &dist);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("trajectories", ctx, r, "distiller");
        goto done;
    }
    traj = (float *)malloc(sizeof(float) * (size_t)n * (size_t)(dist->S + 1) * (size_t)dist->D);
    if (!traj) {
        rc = cli_fail("trajectories", "out of memory for %lld trajectories of %lld states (%.1f GB)", (long long)n,
                      (long long)(dist->S + 1), 4e-9 * (double)n * (double)(dist->S + 1) * (double)dist->D);
        goto done;
    }
    t0 = cli_now();
    {
        /* in chunks, for progress */
        bd_rng rng = bd_rng_init((uint64_t)seed);
        cli_progress bar;
        int64_t i;
        cli_progress_init(&bar, "trajectories", 0, n, a.quiet);
        cli_install_interrupt();
        for (i = 0; i < n; i += batch) {
            int64_t b = n - i < batch ? n - i : batch;
            r = bd_distill_teacher_trajectories(dist, traj + i * (dist->S + 1) * dist->D, b, &rng);
            if (r != BD_SUCCESS) {
                rc = cli_fail_bd("trajectories", ctx, r, "teacher solver");
                goto done;
            }
            cli_progress_update(&bar, i + b, NULL);
            if (cli_interrupted()) {
                rc = cli_fail("trajectories", "interrupted; nothing written");
                goto done;
            }
        }
        cli_progress_done(&bar, NULL);
    }
    {
        int64_t shape[3];
        shape[0] = n, shape[1] = dist->S + 1, shape[2] = dist->D;
        r = bd_npy_write(ctx, out, traj, 3, shape);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("trajectories", ctx, r, out);
            goto done;
        }
    }
    cli_note(&a, "%s: %lld trajectories x %lld states (%lld student steps x %lld sub-steps, %s) in %.1f s\n", out,
             (long long)n, (long long)(dist->S + 1), (long long)dist->N, (long long)dist->Kt, o.solver,
             cli_now() - t0);
    rc = 0;
done:
    free(traj);
    if (dist) bd_distill_free(dist);
    if (student) bd_denoiser_free(student);
    if (teacher) bd_model_free(teacher);
    bd_context_free(ctx);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* bdense compare                                                         */
/* ---------------------------------------------------------------------- */
typedef struct cli__row {
    char name[200];
    int64_t nfe;
    double mse, psnr, fd, ms;
} cli__row;

static void cli__basename(char *buf, size_t n, const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    cli_sibling(buf, n, b, "");
}

int cmd_compare(int argc, char **argv) {
    cli_args a;
    cli_list students, tsteps;
    const char *teacher_path = NULL, *data = NULL, *grids = NULL, *csv_path = NULL, *ref_sampler = "dpmpp2m";
    const char *teacher_sampler = "ddim", *time_grid = "uniform_t", *ref_npy = NULL, *npy = NULL;
    int64_t n = 256, seed = 1234, ref_steps = 100, batch = 64, nref = 10000, show = 8;
    int rc = 1, i, nrows = 0, fd_against_teacher = 0;
    bd_context *ctx = NULL;
    bd_model *teacher = NULL;
    float *ref = NULL, *x = NULL, *xr = NULL, *strip = NULL;
    int64_t C, H, W, D, nstrip = 0;
    cli__row rows[CLI_MAX_LIST * 2 + 2];
    cli_data ds;
    bd_result r;
    memset(&students, 0, sizeof students);
    memset(&tsteps, 0, sizeof tsteps);
    memset(&ds, 0, sizeof ds);
    cli_args_init(&a, "compare",
                  "Sample the teacher and every student from the same noise and print a table: NFE, trajectory error "
                  "to the teacher's many-step sample (MSE, PSNR), FD-RF, time per image.",
                  "The reference is the teacher with --ref-sampler for --ref-steps.  The teacher is also run with\n"
                  "DDIM at each student's NFE (and at --teacher-steps), the baseline a student must beat.  FD-RF is\n"
                  "measured against --data (e.g. fmnist-test:DIR) or, without it, against the reference samples.\n"
                  "--grids PREFIX writes PREFIX.png: one row of --show samples per model, same noise per column.");
    cli_required(cli_add_str(&a, "teacher", &teacher_path, "FILE", "teacher checkpoint"));
    cli_add_list(&a, "students", &students, "FILE...", "student checkpoints");
    cli_add_list(&a, "teacher-steps", &tsteps, "N...", "extra teacher DDIM step counts to list");
    cli_range(cli_add_int(&a, "n", &n, "N", "samples per model"), 2, 1e7);
    cli_add_seed(&a, &seed, "noise seed (shared by all models)");
    cli_add_choice(&a, "ref-sampler", &ref_sampler, "ddim|ddpm|euler|heun|dpmpp2m", "teacher reference sampler");
    cli_range(cli_add_int(&a, "ref-steps", &ref_steps, "S", "teacher reference steps"), 1, BD_SAMPLER_MAX_STEPS);
    cli_add_str(&a, "ref-npy", &ref_npy, "FILE", "cache of the reference samples: read if it exists, else written");
    cli_add_str(&a, "npy", &npy, "PREFIX", "write every model's samples to PREFIX.<model>.npy");
    cli_add_choice(&a, "teacher-sampler", &teacher_sampler, "ddim|ddpm|euler|heun|dpmpp2m",
                   "sampler of the few-step teacher rows");
    cli_add_choice(&a, "time-grid", &time_grid, "uniform_t|logsnr|karras", "time grid of the teacher rows");
    cli_add_str(&a, "data", &data, "SPEC", "reference images for FD-RF (fmnist-test:DIR, builtin, npy:FILE)");
    cli_range(cli_add_int(&a, "ref-n", &nref, "N", "reference images for FD-RF"), 2, 1e7);
    cli_range(cli_add_int(&a, "batch", &batch, "B", "samples per network call"), 1, 4096);
    cli_add_str(&a, "grids", &grids, "PREFIX", "write PREFIX.png (side by side) and PREFIX.<model>.png");
    cli_range(cli_add_int(&a, "show", &show, "N", "samples per model in the side-by-side picture"), 1, 64);
    cli_add_str(&a, "csv", &csv_path, "FILE", "also write the table as CSV");
    rc = cli_parse(&a, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    rc = 1;
    if (grids) {
        char p[1024];
        snprintf(p, sizeof p, "%s.png", grids);
        if (cli_prepare_output("compare", p)) return 1;
    }
    if (cli_prepare_output("compare", csv_path) || cli_prepare_output("compare", ref_npy)) return 1;
    if (npy) {
        char p[1024];
        snprintf(p, sizeof p, "%s.x.npy", npy);
        if (cli_prepare_output("compare", p)) return 1;
    }
    if (cli_context(&a, &ctx)) return 1;
    cli_install_interrupt();
    r = bd_model_load(ctx, teacher_path, &teacher);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("compare", ctx, r, teacher_path);
        goto done;
    }
    C = teacher->net->in_ch, H = teacher->net->height, W = teacher->net->width, D = C * H * W;
    if (show > n) show = n;
    ref = (float *)malloc(sizeof(float) * (size_t)(n * D));
    x = (float *)malloc(sizeof(float) * (size_t)(n * D));
    strip = (float *)malloc(sizeof(float) * (size_t)(show * D) * (size_t)(2 * CLI_MAX_LIST + 2));
    if (!ref || !x || !strip) {
        rc = cli_fail("compare", "out of memory");
        goto done;
    }
    /* FD-RF reference */
    if (data) {
        if (cli_data_open("compare", ctx, data, H, &ds)) goto done;
        if (ds.kind == CLI_DATA_BUILTIN) ds.h = H, ds.w = W;
        if (ds.c != C || ds.h != H || ds.w != W) {
            rc = cli_fail("compare", "--data images do not match the teacher's shape");
            goto done;
        }
        if (ds.kind == CLI_DATA_ARRAY && nref > ds.n) nref = ds.n;
        xr = (float *)malloc(sizeof(float) * (size_t)(nref * D));
        if (!xr || cli_data_take("compare", &ds, xr, nref, 12345)) {
            rc = xr ? 1 : cli_fail("compare", "out of memory");
            goto done;
        }
    } else {
        fd_against_teacher = 1;
    }
    /* every student must load and be a student, before the expensive part */
    for (i = 0; i < students.n; i++) {
        bd_safetensors *st = NULL;
        r = bd_safetensors_load(ctx, students.items[i], &st);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("compare", ctx, r, students.items[i]);
            goto done;
        }
        if (!bd_safetensors_meta(st, "steps")) {
            bd_safetensors_free(st);
            rc = cli_fail("compare", "%s is not a distilled student (it has no grid); few-step teachers are listed "
                          "with --teacher-steps N", students.items[i]);
            goto done;
        }
        bd_safetensors_free(st);
    }
    /* the teacher's reference */
    {
        bd_sampler_config cfg;
        int64_t nfe = 0;
        double secs = 0;
        cli__row *row = &rows[nrows++];
        int cached = 0;
        if (cli_sampler_setup("compare", teacher, ref_sampler, ref_steps, 1, time_grid, 0, 0, &cfg, a.quiet)) goto done;
        if (ref_npy && cli_file_exists(ref_npy)) {
            /* reuse: must be this teacher's n samples (the caller vouches for seed and sampler) */
            float *cdata = NULL;
            int64_t shape[4] = {0, 0, 0, 0};
            int nd = 0;
            r = cli_npy_read(ctx, ref_npy, &cdata, shape, &nd);
            if (r != BD_SUCCESS) {
                rc = cli_fail_bd("compare", ctx, r, ref_npy);
                goto done;
            }
            if (nd != 4 || shape[0] != n || shape[1] != C || shape[2] != H || shape[3] != W) {
                bd_free(ctx, cdata);
                rc = cli_fail("compare", "--ref-npy %s holds a different shape than %lld samples of (%lld,%lld,%lld); "
                              "delete it to recompute", ref_npy, (long long)n, (long long)C, (long long)H, (long long)W);
                goto done;
            }
            memcpy(ref, cdata, sizeof(float) * (size_t)(n * D));
            bd_free(ctx, cdata);
            nfe = 0;
            cached = 1;
            for (i = 0; i < (int)ref_steps; i++) nfe += cfg.kind == BD_SAMPLER_HEUN && i > 0 ? 2 : 1;
            cli_note(&a, "reference samples from %s\n", ref_npy);
        } else if (cli_sample_run("compare", ctx, teacher, &cfg, ref, n, batch, (uint64_t)seed, "reference", a.quiet,
                                  &nfe, &secs)) {
            goto done;
        }
        if (ref_npy && !cached) {
            int64_t shape[4];
            shape[0] = n, shape[1] = C, shape[2] = H, shape[3] = W;
            r = bd_npy_write(ctx, ref_npy, ref, 4, shape);
            if (r != BD_SUCCESS) {
                rc = cli_fail_bd("compare", ctx, r, ref_npy);
                goto done;
            }
        }
        snprintf(row->name, sizeof row->name, "teacher %s %lld (reference)", ref_sampler, (long long)ref_steps);
        row->nfe = nfe;
        row->mse = 0;
        row->psnr = INFINITY;
        row->ms = cached ? NAN : 1000 * secs / (double)n;
        row->fd = -1;
        if (!fd_against_teacher && cli_fdrf("compare", ctx, ref, n, xr, nref, C, H, W, &row->fd)) goto done;
        memcpy(strip, ref, sizeof(float) * (size_t)(show * D));
        nstrip = 1;
        if (grids) {
            char p[1024];
            snprintf(p, sizeof p, "%s.teacher.png", grids);
            if (cli_write_grid_titled("compare", ctx, p, ref, n < 64 ? n : 64, C, H, W, row->name)) goto done;
        }
    }
    /* few-step teacher rows: each student's NFE, then --teacher-steps */
    {
        int64_t list[2 * CLI_MAX_LIST];
        int nl = 0, j;
        for (i = 0; i < students.n; i++) {
            const char *p = students.items[i];
            bd_safetensors *st = NULL;
            if (bd_safetensors_load(ctx, p, &st) == BD_SUCCESS) {
                const char *s = bd_safetensors_meta(st, "steps");
                int64_t v = 0;
                if (s && cli_parse_integer(s, &v) == 0 && v > 0 && v <= BD_SAMPLER_MAX_STEPS) list[nl++] = v;
                bd_safetensors_free(st);
            }
        }
        for (i = 0; i < tsteps.n; i++) {
            int64_t v = 0;
            if (cli_parse_integer(tsteps.items[i], &v) != 0 || v < 1 || v > BD_SAMPLER_MAX_STEPS) {
                rc = cli_fail("compare", "--teacher-steps '%s' is not a step count", tsteps.items[i]);
                goto done;
            }
            list[nl++] = v;
        }
        for (i = 0; i < nl; i++) {
            bd_sampler_config cfg;
            int64_t nfe = 0;
            double secs = 0, se = 0;
            int64_t e;
            cli__row *row;
            for (j = 0; j < i; j++)
                if (list[j] == list[i]) break;
            if (j < i) continue;
            row = &rows[nrows++];
            if (cli_sampler_setup("compare", teacher, teacher_sampler, list[i], 1, time_grid, 0, 0, &cfg, a.quiet))
                goto done;
            if (cli_sample_run("compare", ctx, teacher, &cfg, x, n, batch, (uint64_t)seed, "teacher", a.quiet, &nfe,
                               &secs))
                goto done;
            for (e = 0; e < n * D; e++) se += ((double)x[e] - ref[e]) * ((double)x[e] - ref[e]);
            snprintf(row->name, sizeof row->name, "teacher %s %lld", teacher_sampler, (long long)list[i]);
            row->nfe = nfe;
            row->mse = se / (double)(n * D);
            row->psnr = 10 * log10(4.0 / (row->mse > 1e-30 ? row->mse : 1e-30));
            row->ms = 1000 * secs / (double)n;
            if (cli_fdrf("compare", ctx, x, n, fd_against_teacher ? ref : xr, fd_against_teacher ? n : nref, C, H, W,
                         &row->fd))
                goto done;
            memcpy(strip + nstrip * show * D, x, sizeof(float) * (size_t)(show * D));
            nstrip++;
        }
    }
    /* students */
    for (i = 0; i < students.n; i++) {
        bd_model *m = NULL;
        bd_sampler_config cfg;
        int64_t nfe = 0, e;
        double secs = 0, se = 0;
        cli__row *row = &rows[nrows++];
        char base[128];
        r = bd_model_load(ctx, students.items[i], &m);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("compare", ctx, r, students.items[i]);
            goto done;
        }
        if (m->net->in_ch != C || m->net->height != H || m->net->width != W) {
            bd_model_free(m);
            rc = cli_fail("compare", "%s: image shape differs from the teacher's", students.items[i]);
            goto done;
        }
        if (!m->grid) {
            bd_model_free(m);
            rc = cli_fail("compare", "%s is not a distilled student (it has no grid); few-step teachers are listed "
                          "with --teacher-steps N", students.items[i]);
            goto done;
        }
        if (cli_sampler_setup("compare", m, "ddim", 1, 0, "uniform_t", 0, 0, &cfg, a.quiet) ||
            cli_sample_run("compare", ctx, m, &cfg, x, n, batch, (uint64_t)seed, "student", a.quiet, &nfe, &secs)) {
            bd_model_free(m);
            goto done;
        }
        cli__basename(base, sizeof base, students.items[i]);
        snprintf(row->name, sizeof row->name, "%s (K=%lld)", base, (long long)m->net->branches);
        bd_model_free(m);
        for (e = 0; e < n * D; e++) se += ((double)x[e] - ref[e]) * ((double)x[e] - ref[e]);
        row->nfe = nfe;
        row->mse = se / (double)(n * D);
        row->psnr = 10 * log10(4.0 / (row->mse > 1e-30 ? row->mse : 1e-30));
        row->ms = 1000 * secs / (double)n;
        if (cli_fdrf("compare", ctx, x, n, fd_against_teacher ? ref : xr, fd_against_teacher ? n : nref, C, H, W,
                     &row->fd))
            goto done;
        memcpy(strip + nstrip * show * D, x, sizeof(float) * (size_t)(show * D));
        nstrip++;
        if (npy) {
            char p[1024];
            int64_t shape[4];
            shape[0] = n, shape[1] = C, shape[2] = H, shape[3] = W;
            snprintf(p, sizeof p, "%s.%s.npy", npy, base);
            r = bd_npy_write(ctx, p, x, 4, shape);
            if (r != BD_SUCCESS) {
                rc = cli_fail_bd("compare", ctx, r, p);
                goto done;
            }
        }
        if (grids) {
            char p[1024];
            snprintf(p, sizeof p, "%s.%s.png", grids, base);
            if (cli_write_grid_titled("compare", ctx, p, x, n < 64 ? n : 64, C, H, W, row->name)) goto done;
        }
    }
    /* table */
    printf("\n%d samples per model, seed %lld; reference: teacher %s %lld steps; FD-RF against %s\n\n", (int)n,
           (long long)seed, ref_sampler, (long long)ref_steps,
           fd_against_teacher ? "the reference samples" : (data ? data : ""));
    printf("| %-34s | %4s | %10s | %9s | %9s | %9s |\n", "model", "NFE", "MSE", "PSNR dB", "FD-RF", "ms/image");
    printf("|%.36s|%.6s|%.12s|%.11s|%.11s|%.11s|\n", "------------------------------------", "------",
           "------------", "-----------", "-----------", "-----------");
    for (i = 0; i < nrows; i++) {
        char fd[32], ps[32];
        if (rows[i].fd >= 0) snprintf(fd, sizeof fd, "%.3f", rows[i].fd);
        else snprintf(fd, sizeof fd, "-");
        if (isinf(rows[i].psnr)) snprintf(ps, sizeof ps, "ref");
        else snprintf(ps, sizeof ps, "%.2f", rows[i].psnr);
        char ms[32];
        if (rows[i].ms == rows[i].ms) snprintf(ms, sizeof ms, "%.2f", rows[i].ms);
        else snprintf(ms, sizeof ms, "cached");
        printf("| %-34s | %4lld | %10.5f | %9s | %9s | %9s |\n", rows[i].name, (long long)rows[i].nfe, rows[i].mse,
               ps, fd, ms);
    }
    fflush(stdout);
    if (csv_path) {
        FILE *f = fopen(csv_path, "w");
        if (!f) {
            rc = cli_fail("compare", "cannot write %s", csv_path);
            goto done;
        }
        fprintf(f, "model,nfe,mse,psnr_db,fd_rf,ms_per_image\n");
        for (i = 0; i < nrows; i++)
            fprintf(f, "\"%s\",%lld,%.6g,%.4f,%.6g,%.4f\n", rows[i].name, (long long)rows[i].nfe, rows[i].mse,
                    isinf(rows[i].psnr) ? 0.0 : rows[i].psnr, rows[i].fd, rows[i].ms);
        fclose(f);
    }
    if (grids) {
        char p[1024];
        snprintf(p, sizeof p, "%s.png", grids);
        static char lab[CLI_MAX_LIST * 2 + 2][80];
        const char *labels[CLI_MAX_LIST * 2 + 2];
        char title[160];
        for (i = 0; i < nstrip && i < nrows; i++) { /* strip row i is table row i */
            snprintf(lab[i], sizeof lab[i], "%.40s%s (%lld NFE)", rows[i].name, strlen(rows[i].name) > 40 ? "~" : "",
                     (long long)rows[i].nfe);
            labels[i] = lab[i];
        }
        snprintf(title, sizeof title, "bdense compare: same noise per column (seed %lld), one model per row",
                 (long long)seed);
        if (cli_write_grid_labeled("compare", ctx, p, strip, nstrip * show, C, H, W, show, title, labels,
                                   nstrip < nrows ? nstrip : nrows))
            goto done;
        cli_note(&a, "\n%s: rows = the models in table order, columns = the same noise\n", p);
    }
    rc = 0;
done:
    free(ref);
    free(x);
    free(xr);
    free(strip);
    cli_data_free(&ds);
    if (teacher) bd_model_free(teacher);
    bd_context_free(ctx);
    return rc;
}
