/* cli.h - shared pieces of the `bdense` command: option parsing, progress
   bar, model presets, data sources, small file helpers.  Not part of the
   library; everything here is for the cli sources only. */
#ifndef BDENSE_CLI_H
#define BDENSE_CLI_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdint.h>
#include <stdio.h>
#include "bdense.h"

/* ---------------------------------------------------------------------- */
/* option parsing                                                         */
/* ---------------------------------------------------------------------- */
/* Long options only: `--name value`, `--name=value`, `--flag`.  A LIST
   option takes every following argument up to the next `--option`.
   Every subcommand gets `--help`, `--threads N` and `--quiet`. */
typedef enum cli_type { CLI_STR, CLI_INT, CLI_NUM, CLI_FLAG, CLI_CHOICE, CLI_LIST } cli_type;

#define CLI_MAX_OPTS 64
#define CLI_MAX_LIST 32

typedef struct cli_list {
    const char *items[CLI_MAX_LIST];
    int n;
} cli_list;

typedef struct cli_opt {
    const char *name;    /* without the leading "--" */
    cli_type type;
    void *dst;           /* const char**, int64_t*, double*, int*, const char**, cli_list* */
    const char *meta;    /* value placeholder in --help ("N", "FILE") */
    const char *help;
    const char *choices; /* "a|b|c" for CLI_CHOICE */
    double lo, hi;       /* allowed range for INT/NUM when has_range */
    int has_range;
    int required;
    int seen;
    char defval[64];     /* default as shown in --help ("" = none) */
} cli_opt;

typedef struct cli_args {
    const char *cmd;     /* "train" */
    const char *summary; /* one line */
    const char *details; /* paragraph(s) after the option list, or NULL */
    cli_opt opts[CLI_MAX_OPTS];
    int n;
    /* common options */
    int64_t threads;
    int quiet;
    const char *device;  /* --device cpu|cuda (NULL = cpu) */
} cli_args;

void cli_args_init(cli_args *a, const char *cmd, const char *summary, const char *details);
cli_opt *cli_add_str(cli_args *a, const char *name, const char **dst, const char *meta, const char *help);
cli_opt *cli_add_int(cli_args *a, const char *name, int64_t *dst, const char *meta, const char *help);
cli_opt *cli_add_seed(cli_args *a, int64_t *dst, const char *help); /* --seed S, 0..2^63-1 */
cli_opt *cli_add_num(cli_args *a, const char *name, double *dst, const char *meta, const char *help);
cli_opt *cli_add_flag(cli_args *a, const char *name, int *dst, const char *help);
cli_opt *cli_add_choice(cli_args *a, const char *name, const char **dst, const char *choices, const char *help);
cli_opt *cli_add_list(cli_args *a, const char *name, cli_list *dst, const char *meta, const char *help);
cli_opt *cli_range(cli_opt *o, double lo, double hi);
cli_opt *cli_required(cli_opt *o);
cli_opt *cli_nodefault(cli_opt *o); /* show no "[default: ...]" in --help */
/* 0 = parsed, go on; 1 = --help printed (exit 0); 2 = error printed (exit 2).
   argv[0] is the subcommand name. */
int cli_parse(cli_args *a, int argc, char **argv);
/* the parsers behind every numeric option: plain decimal only (no hex,
   inf, nan, spaces); 0 = ok, 1 = malformed, 2 = out of range (double or
   int64) */
int cli_parse_number(const char *v, double *out);
int cli_parse_integer(const char *v, int64_t *out);
void cli_usage(const cli_args *a, FILE *f);
/* whether the user gave this option on the command line */
int cli_given(const cli_args *a, const char *name);
/* index of `s` in "a|b|c" or -1 */
int cli_choice_index(const char *choices, const char *s);

/* ---------------------------------------------------------------------- */
/* messages                                                               */
/* ---------------------------------------------------------------------- */
/* "bdense <cmd>: error: ..." to stderr; returns 1 (the exit status). */
int cli_fail(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* a library failure: the code's string and the context's message */
int cli_fail_bd(const char *cmd, bd_context *ctx, bd_result r, const char *what);
void cli_note(const cli_args *a, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* context with the --threads setting applied (also to OpenBLAS) */
int cli_context(const cli_args *a, bd_context **ctx);
/* --device cuda: a second context with the CUDA backend in *gpu (NULL for
   --device cpu); fails when bdense was built without CUDA (make CUDA=1) */
int cli_gpu(const cli_args *a, bd_context **gpu);

/* ---------------------------------------------------------------------- */
/* time and progress                                                      */
/* ---------------------------------------------------------------------- */
double cli_now(void); /* monotonic seconds */
void cli_format_duration(char *buf, size_t n, double seconds); /* "1:02:03", "4:05" */

/* One line on stderr: \r-updated on a TTY (at most 10 times a second),
   plain lines otherwise (every `plain_every` seconds and at the end).
     label [#####-----] 120/1000  12%  loss 0.0312  8.1 it/s  ETA 1:48 */
typedef struct cli_progress {
    char label[32];
    int64_t total, first, last;
    double t0, last_print, plain_every;
    int tty, quiet, printed_len;
} cli_progress;

void cli_progress_init(cli_progress *p, const char *label, int64_t first, int64_t total, int quiet);
/* `step` = steps done so far (first..total); extra: e.g. "loss 0.031" */
void cli_progress_update(cli_progress *p, int64_t step, const char *extra);
void cli_progress_done(cli_progress *p, const char *extra);
double cli_progress_rate(const cli_progress *p, int64_t step);

/* ---------------------------------------------------------------------- */
/* files                                                                  */
/* ---------------------------------------------------------------------- */
int cli_file_exists(const char *path);
/* "out.safetensors" + ".loss.csv" style sibling names: strips a known
   extension of `path` and appends `suffix` */
void cli_sibling(char *buf, size_t n, const char *path, const char *suffix);
int cli_ends_with(const char *s, const char *suffix);
/* make the parent directories of an output path (mkdir -p) and check that
   it can be written; 0 = fine, else the error is printed (returns 1) */
int cli_prepare_output(const char *cmd, const char *path);

/* Ctrl-C: the first SIGINT/SIGTERM sets a flag (long loops stop cleanly and
   save); a second one kills the process. */
void cli_install_interrupt(void);
int cli_interrupted(void);

/* ---------------------------------------------------------------------- */
/* data sources (data.c)                                                  */
/* ---------------------------------------------------------------------- */
enum { CLI_DATA_BUILTIN = 1, CLI_DATA_ARRAY = 2 };
typedef struct cli_data {
    bd_context *ctx;
    int kind;
    float *x;            /* (n,c,h,w) for array data */
    int64_t n, c, h, w;
    int hflip;           /* random horizontal flips in batches */
    char desc[1200];
} cli_data;
/* spec: builtin[:SIZE] | fmnist:DIR | fmnist-test:DIR | npy:FILE.
   image_size: builtin size when the spec gives none (0 = 28). */
int cli_data_open(const char *cmd, bd_context *ctx, const char *spec, int64_t image_size, cli_data *d);
void cli_data_free(cli_data *d);
/* a random batch (a bd_data_fn): uniform indices with replacement, or fresh
   builtin images, plus flips, all from rng */
bd_result cli_data_batch(void *user, float *x, int64_t n, bd_rng *rng);
/* the first n samples, or n builtin samples from seed */
int cli_data_take(const char *cmd, cli_data *d, float *x, int64_t n, uint64_t seed);
/* bd_npy_read into a plain pointer (release with bd_free(ctx, *data)) */
bd_result cli_npy_read(bd_context *ctx, const char *path, float **data, int64_t *shape, int *ndim);

/* ---------------------------------------------------------------------- */
/* FD-RF sample-quality metric (metric.c)                                 */
/* ---------------------------------------------------------------------- */
#define CLI_FEAT_DIM 192
typedef struct cli_feat cli_feat;
int cli_feat_init(bd_context *ctx, int64_t C, int64_t H, int64_t W, cli_feat **out);
void cli_feat_free(cli_feat *f);
/* feat (n, CLI_FEAT_DIM) of images x (n,C,H,W) in [-1,1] */
void cli_feat_compute(cli_feat *f, double *feat, const float *x, int64_t n);
/* mean (CLI_FEAT_DIM) and covariance (CLI_FEAT_DIM^2) of x's features; n >= 2 */
int cli_feat_stats(cli_feat *f, const float *x, int64_t n, double *mu, double *cov);
double cli_frechet(const double *mu1, const double *c1, const double *mu2, const double *c2, int d);
/* mean (d) and covariance (d*d, 1/(n-1)) of n feature rows (n, d); n >= 2 */
int cli_moments(const double *feat, int64_t n, int d, double *mu, double *cov);

/* FD-CLF: Frechet distance in the 128-d penultimate features of a small
   classifier CNN trained with labels (metric.c; bdense classifier) */
#define CLI_CLF_FEAT 128
#define CLI_CLF_LAYERS 4
typedef struct cli_clf cli_clf;
/* B: images per forward (buffers); seed: He-normal initialisation */
int cli_clf_create(bd_context *ctx, int64_t C, int64_t H, int64_t W, int64_t classes, int64_t B, uint64_t seed,
                   cli_clf **out);
int cli_clf_load(bd_context *ctx, const char *path, int64_t B, cli_clf **out, char *err, size_t errn);
bd_result cli_clf_save(cli_clf *c, const char *path, double test_acc);
void cli_clf_free(cli_clf *c);
int64_t cli_clf_params(const cli_clf *c);
void cli_clf_shape(const cli_clf *c, int64_t *C, int64_t *H, int64_t *W);
/* one Adam step on n <= B labelled images; returns the batch cross-entropy */
double cli_clf_train_step(cli_clf *c, const float *x, const int32_t *y, int64_t n, double lr, bd_result *res);
/* top-1 accuracy (and mean cross-entropy) over n images */
double cli_clf_accuracy(cli_clf *c, const float *x, const int32_t *y, int64_t n, double *mean_loss);
/* feat (n, CLI_CLF_FEAT) */
void cli_clf_features(cli_clf *c, double *feat, const float *x, int64_t n);
/* FD-CLF of x (n) against ref (nref) */
int cli_fdclf(const char *cmd, cli_clf *c, const float *x, int64_t n, const float *ref, int64_t nref, double *fd);

/* ---------------------------------------------------------------------- */
/* models, sampling, pictures (cmd_model.c, cmd_sample.c)                 */
/* ---------------------------------------------------------------------- */
/* architecture options shared by init and train */
typedef struct cli_arch {
    const char *config;   /* small | tiny */
    const char *param, *schedule;
    int64_t image_size, in_ch, ch, nres, groups, heads, branches; /* 0 (nres -1) = preset's */
    const char *ch_mult, *attn;
} cli_arch;
void cli_arch_defaults(cli_arch *o);
void cli_arch_options(cli_args *a, cli_arch *o);
int cli_arch_build(const char *cmd, const cli_arch *o, bd_unet_config *cfg, bd_param_kind *param,
                   bd_schedule_kind *sched);
int cli_model_new(const char *cmd, bd_context *ctx, const cli_arch *o, uint64_t seed, bd_model **out);

/* sampler config for a model: a student uses its own grid (steps must
   match or be left out), a teacher the sampler/steps/grid given */
int cli_sampler_setup(const char *cmd, const bd_model *m, const char *sampler, int64_t steps, int steps_given,
                      const char *time_grid, double eta, int clip, bd_sampler_config *cfg, int quiet);
/* x (n,C,H,W) <- samples from the noise of `seed`, with a progress bar */
int cli_sample_run(const char *cmd, bd_context *ctx, bd_model *m, const bd_sampler_config *cfg, float *x, int64_t n,
                   int64_t max_batch, uint64_t seed, const char *label, int quiet, int64_t *nfe, double *seconds);
int cli_write_grid_cols(const char *cmd, bd_context *ctx, const char *path, const float *x, int64_t n, int64_t C,
                        int64_t H, int64_t W, int64_t cols, int64_t zoom);
int cli_write_grid(const char *cmd, bd_context *ctx, const char *path, const float *x, int64_t n, int64_t C,
                   int64_t H, int64_t W);
/* FD-RF of x (n) against ref (nref) */
int cli_fdrf(const char *cmd, bd_context *ctx, const float *x, int64_t n, const float *ref, int64_t nref, int64_t C,
             int64_t H, int64_t W, double *fd);
/* line plot PNG with a log y axis: xs (n), ys (n_series, n); title, axis
   labels and legend (n_series names) may be NULL */
bd_result cli_plot(bd_context *ctx, const char *path, const float *xs, const float *ys, int n_series, int64_t n,
                   const char *title, const char *x_label, const char *y_label, const char *const *legend);
/* grid PNG of x (n,C,H,W), `cols` columns, auto zoom (tiles >= 56 px), a
   title line and a name left of every row (n_labels of them) */
/* a square grid (auto zoom) with a title line */
int cli_write_grid_titled(const char *cmd, bd_context *ctx, const char *path, const float *x, int64_t n, int64_t C,
                          int64_t H, int64_t W, const char *title);
int cli_write_grid_labeled(const char *cmd, bd_context *ctx, const char *path, const float *x, int64_t n, int64_t C,
                           int64_t H, int64_t W, int64_t cols, const char *title, const char *const *labels,
                           int64_t n_labels);

/* ---------------------------------------------------------------------- */
/* subcommands                                                            */
/* ---------------------------------------------------------------------- */
int cmd_init(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_trajectories(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_classifier(int argc, char **argv);

#endif
