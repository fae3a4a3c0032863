/* test_cli.c - the `bdense` command: option parser, FD-RF metric, and the
   built binary (build/bdense, which `make test` builds first): --help of
   every subcommand, bad arguments rejected with exit status 2, and a tiny
   init / info / forward / sample round trip. */
#define _POSIX_C_SOURCE 200809L
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include "cli/util.c"
#include "cli/metric.c"
#include "cli/data.c"
#define FUZZ_CLI_EMBEDDED
#include "fuzz/fuzz_cli.c" /* LLVMFuzzerTestOneInput, replayed below */
#include <dirent.h>

#include <stdlib.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *bdt_bin = "build/bdense"; /* main() picks the one next to this test */
static char bdt_tmp[256];

/* run a shell command, return its exit status (-1 if it did not exit) */
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

/* whether the first 64 KB of a file contain `needle` (binary-safe) */
static int bdt_file_contains(const char *path, const char *needle) {
    FILE *f = fopen(path, "rb");
    static char buf[65536];
    size_t n, i, k = strlen(needle);
    if (!f) return 0;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    for (i = 0; i + k <= n; i++)
        if (memcmp(buf + i, needle, k) == 0) return 1;
    return 0;
}

/* silence stdout and stderr (1) or bring them back (0); failures found
   while silenced are still counted and the summary prints them */
static void bdt_silence(int on) {
    static int saved1 = -1, saved2 = -1;
    fflush(stdout);
    fflush(stderr);
    if (on) {
        int nul = open("/dev/null", O_WRONLY);
        saved1 = dup(1);
        saved2 = dup(2);
        dup2(nul, 1);
        dup2(nul, 2);
        close(nul);
    } else if (saved1 >= 0) {
        dup2(saved1, 1);
        dup2(saved2, 2);
        close(saved1);
        close(saved2);
        saved1 = saved2 = -1;
    }
}

/* ---------------------------------------------------------------------- */
static void test_parser(void) {
    cli_args a;
    const char *out = NULL, *sampler = "ddim";
    int64_t steps = 10;
    double lr = 1e-3;
    int flag = 0, rc;
    cli_list l;
    char *ok[] = {"x", "--out", "m.st", "--steps=20", "--lr", "2e-4", "--flag", "--sampler", "heun",
                  "--list", "a", "b", "--threads", "3"};
    memset(&l, 0, sizeof l);
    cli_args_init(&a, "x", "test", NULL);
    cli_required(cli_add_str(&a, "out", &out, "FILE", "output"));
    cli_range(cli_add_int(&a, "steps", &steps, "N", "steps"), 1, 1000);
    cli_range(cli_add_num(&a, "lr", &lr, "LR", "lr"), 0, 1);
    cli_add_flag(&a, "flag", &flag, "a flag");
    cli_add_choice(&a, "sampler", &sampler, "ddim|heun", "sampler");
    cli_add_list(&a, "list", &l, "S...", "list");
    rc = cli_parse(&a, (int)(sizeof ok / sizeof ok[0]), ok);
    BDT_CHECK(rc == 0);
    BDT_CHECK(out && strcmp(out, "m.st") == 0);
    BDT_CHECK(steps == 20);
    BDT_CHECK(fabs(lr - 2e-4) < 1e-12);
    BDT_CHECK(flag == 1);
    BDT_CHECK(strcmp(sampler, "heun") == 0);
    BDT_CHECK(l.n == 2 && strcmp(l.items[1], "b") == 0);
    BDT_CHECK(a.threads == 3);
    BDT_CHECK(cli_given(&a, "lr") && !cli_given(&a, "nothing"));
    BDT_CHECK(cli_choice_index("ddim|ddpm|heun", "heun") == 2);
    BDT_CHECK(cli_choice_index("ddim|ddpm|heun", "dd") == -1);
}

static int bdt_parse_one(char **argv, int argc) {
    cli_args a;
    const char *out = NULL, *sampler = "ddim";
    int64_t steps = 10;
    double lr = 1e-3;
    int flag = 0;
    cli_args_init(&a, "x", "test", NULL);
    cli_required(cli_add_str(&a, "out", &out, "FILE", "output"));
    cli_range(cli_add_int(&a, "steps", &steps, "N", "steps"), 1, 1000);
    cli_range(cli_add_num(&a, "lr", &lr, "LR", "lr"), 0, 1);
    cli_add_flag(&a, "flag", &flag, "a flag");
    cli_add_choice(&a, "sampler", &sampler, "ddim|heun", "sampler");
    return cli_parse(&a, argc, argv);
}

static void test_parser_errors(void) {
    char *missing[] = {"x", "--steps", "3"};
    char *unknown[] = {"x", "--out", "a", "--stpes", "3"};
    char *range[] = {"x", "--out", "a", "--steps", "0"};
    char *notint[] = {"x", "--out", "a", "--steps", "3.5"};
    char *notnum[] = {"x", "--out", "a", "--lr", "fast"};
    char *choice[] = {"x", "--out", "a", "--sampler", "euler"};
    char *novalue[] = {"x", "--out"};
    char *twice[] = {"x", "--out", "a", "--out", "b"};
    char *flagval[] = {"x", "--out", "a", "--flag=1"};
    char *positional[] = {"x", "--out", "a", "stray"};
    char *help[] = {"x", "--help"};
    bdt_silence(1);
    BDT_CHECK(bdt_parse_one(missing, 3) == 2);
    BDT_CHECK(bdt_parse_one(unknown, 5) == 2);
    BDT_CHECK(bdt_parse_one(range, 5) == 2);
    BDT_CHECK(bdt_parse_one(notint, 5) == 2);
    BDT_CHECK(bdt_parse_one(notnum, 5) == 2);
    BDT_CHECK(bdt_parse_one(choice, 5) == 2);
    BDT_CHECK(bdt_parse_one(novalue, 2) == 2);
    BDT_CHECK(bdt_parse_one(twice, 5) == 2);
    BDT_CHECK(bdt_parse_one(flagval, 4) == 2);
    BDT_CHECK(bdt_parse_one(positional, 4) == 2);
    BDT_CHECK(bdt_parse_one(help, 2) == 1);
    bdt_silence(0);
}

static void test_sibling_and_duration(void) {
    char b[128];
    cli_sibling(b, sizeof b, "runs/t.safetensors", ".loss.csv");
    BDT_CHECK(strcmp(b, "runs/t.loss.csv") == 0);
    cli_sibling(b, sizeof b, "t", ".png");
    BDT_CHECK(strcmp(b, "t.png") == 0);
    cli_format_duration(b, sizeof b, 3725.2);
    BDT_CHECK(strcmp(b, "1:02:05") == 0);
    cli_format_duration(b, sizeof b, 65);
    BDT_CHECK(strcmp(b, "1:05") == 0);
}

/* ---------------------------------------------------------------------- */
/* Frechet distance: closed forms */
static void test_frechet_closed_forms(void) {
    enum { D = 6 };
    double mu1[D], mu2[D], c1[D * D], c2[D * D], Q[D * D], a[D], b[D], expect = 0, fd;
    bd_rng rng = bd_rng_init(7);
    int i, j, k;
    /* random orthogonal Q by Gram-Schmidt */
    for (i = 0; i < D * D; i++) Q[i] = bd_rng_normal1(&rng);
    for (i = 0; i < D; i++) {
        double nrm = 0;
        for (j = 0; j < i; j++) {
            double dot = 0;
            for (k = 0; k < D; k++) dot += Q[k * D + i] * Q[k * D + j];
            for (k = 0; k < D; k++) Q[k * D + i] -= dot * Q[k * D + j];
        }
        for (k = 0; k < D; k++) nrm += Q[k * D + i] * Q[k * D + i];
        for (k = 0; k < D; k++) Q[k * D + i] /= sqrt(nrm);
    }
    for (i = 0; i < D; i++) {
        a[i] = 0.1 + bd_rng_uniform(&rng) * 3;
        b[i] = 0.1 + bd_rng_uniform(&rng) * 3;
        mu1[i] = bd_rng_normal1(&rng);
        mu2[i] = bd_rng_normal1(&rng);
        expect += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) + (sqrt(a[i]) - sqrt(b[i])) * (sqrt(a[i]) - sqrt(b[i]));
    }
    /* commuting covariances Q diag(a) Q^T, Q diag(b) Q^T */
    for (i = 0; i < D; i++)
        for (j = 0; j < D; j++) {
            double s1 = 0, s2 = 0;
            for (k = 0; k < D; k++) {
                s1 += Q[i * D + k] * a[k] * Q[j * D + k];
                s2 += Q[i * D + k] * b[k] * Q[j * D + k];
            }
            c1[i * D + j] = s1;
            c2[i * D + j] = s2;
        }
    fd = cli_frechet(mu1, c1, mu2, c2, D);
    BDT_CHECKF(fabs(fd - expect) < 1e-9 * (1 + expect), "fd %.12g expect %.12g", fd, expect);
    fd = cli_frechet(mu1, c1, mu1, c1, D);
    BDT_CHECKF(fabs(fd) < 1e-9, "fd(self) %.3g", fd);
    /* 2x2 non-commuting: tr sqrt(S1^1/2 S2 S1^1/2) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)) */
    {
        double p[4] = {2.0, 0.7, 0.7, 1.0}, q[4] = {0.5, -0.3, -0.3, 1.5}, m0[2] = {0, 0};
        double tr12 = p[0] * q[0] + p[1] * q[2] + p[2] * q[1] + p[3] * q[3];
        double det = (p[0] * p[3] - p[1] * p[2]) * (q[0] * q[3] - q[1] * q[2]);
        double e2 = p[0] + p[3] + q[0] + q[3] - 2 * sqrt(tr12 + 2 * sqrt(det));
        fd = cli_frechet(m0, p, m0, q, 2);
        BDT_CHECKF(fabs(fd - e2) < 1e-10, "2x2 fd %.12g expect %.12g", fd, e2);
    }
}

/* features: deterministic, and FD separates distributions */
static void test_feature_metric(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    cli_feat *f = NULL;
    enum { N = 200, H = 16 };
    float *x1 = (float *)malloc(sizeof(float) * N * H * H), *x2 = (float *)malloc(sizeof(float) * N * H * H);
    float *x3 = (float *)malloc(sizeof(float) * N * H * H);
    double *m1 = (double *)malloc(sizeof(double) * CLI_FEAT_DIM * 3);
    double *c1 = (double *)malloc(sizeof(double) * CLI_FEAT_DIM * CLI_FEAT_DIM * 3);
    double *m2 = m1 + CLI_FEAT_DIM, *m3 = m2 + CLI_FEAT_DIM;
    double *c2 = c1 + CLI_FEAT_DIM * CLI_FEAT_DIM, *c3 = c2 + CLI_FEAT_DIM * CLI_FEAT_DIM;
    double same, diff, again;
    bd_rng rng = bd_rng_init(3);
    int64_t i;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    BDT_CHECK(cli_feat_init(ctx, 1, H, H, &f) == 0);
    if (!f) return;
    /* two samples of one distribution (smooth blobs) and one of another (noise) */
    for (i = 0; i < N; i++) {
        int64_t y, xx;
        double cy1 = 3 + 10 * bd_rng_uniform(&rng), cx1 = 3 + 10 * bd_rng_uniform(&rng);
        double cy2 = 3 + 10 * bd_rng_uniform(&rng), cx2 = 3 + 10 * bd_rng_uniform(&rng);
        for (y = 0; y < H; y++)
            for (xx = 0; xx < H; xx++) {
                double d1 = (y - cy1) * (y - cy1) + (xx - cx1) * (xx - cx1);
                double d2 = (y - cy2) * (y - cy2) + (xx - cx2) * (xx - cx2);
                x1[i * H * H + y * H + xx] = (float)(2 * exp(-d1 / 8) - 1);
                x2[i * H * H + y * H + xx] = (float)(2 * exp(-d2 / 8) - 1);
                x3[i * H * H + y * H + xx] = (float)(0.5 * bd_rng_normal1(&rng));
            }
    }
    BDT_CHECK(cli_feat_stats(f, x1, N, m1, c1) == 0);
    BDT_CHECK(cli_feat_stats(f, x2, N, m2, c2) == 0);
    BDT_CHECK(cli_feat_stats(f, x3, N, m3, c3) == 0);
    same = cli_frechet(m1, c1, m2, c2, CLI_FEAT_DIM);
    diff = cli_frechet(m1, c1, m3, c3, CLI_FEAT_DIM);
    printf("  FD-RF same distribution %.4g, different %.4g\n", same, diff);
    BDT_CHECKF(diff > 10 * same, "same %.4g diff %.4g", same, diff);
    BDT_CHECK(cli_feat_stats(f, x1, N, m2, c2) == 0);
    again = cli_frechet(m1, c1, m2, c2, CLI_FEAT_DIM);
    BDT_CHECKF(again < 1e-6 * (1 + same), "recomputed features differ: %.3g", again);
    cli_feat_free(f);
    bd_context_free(ctx);
    free(x1);
    free(x2);
    free(x3);
    free(m1);
    free(c1);
}

/* ---------------------------------------------------------------------- */
/* the binary */
static void test_binary_help(void) {
    static const char *cmds[] = {"init", "train", "sample", "forward", "info", "eval", "distill", "trajectories", "compare", "data"};
    size_t i;
    char out[300], top[300];
    BDT_CHECKF(cli_file_exists(bdt_bin), "%s is missing: run make (make test builds it first)", bdt_bin);
    if (!cli_file_exists(bdt_bin)) return;
    snprintf(out, sizeof out, "%s/help.txt", bdt_tmp);
    snprintf(top, sizeof top, "%s/top.txt", bdt_tmp);
    BDT_CHECK(bdt_sh("%s --help > %s 2>&1", bdt_bin, top) == 0);
    for (i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        BDT_CHECKF(bdt_file_contains(top, cmds[i]), "main --help does not list %s", cmds[i]);
        BDT_CHECKF(bdt_sh("%s %s --help > %s 2>&1", bdt_bin, cmds[i], out) == 0, "%s --help failed", cmds[i]);
        BDT_CHECKF(bdt_file_contains(out, "usage: bdense"), "%s --help has no usage line", cmds[i]);
        BDT_CHECKF(bdt_sh("%s %s --no-such-option > %s 2>&1", bdt_bin, cmds[i], out) == 2,
                   "%s accepted an unknown option", cmds[i]);
        BDT_CHECKF(bdt_file_contains(out, "unknown option"), "%s: no 'unknown option' message", cmds[i]);
    }
    BDT_CHECK(bdt_sh("%s no-such-command > %s 2>&1", bdt_bin, out) == 2);
    BDT_CHECK(bdt_sh("%s > %s 2>&1", bdt_bin, out) == 2);
}

/* read a .npy through the library; NULL on failure */
static float *bdt_npy(bd_context *ctx, const char *path, bd_npy *a) {
    memset(a, 0, sizeof *a);
    if (bd_npy_read(ctx, path, a) != BD_SUCCESS) return NULL;
    return a->data;
}

static int bdt_same_file(const char *p1, const char *p2) {
    FILE *a = fopen(p1, "rb"), *b = fopen(p2, "rb");
    int same = a && b, c1, c2;
    while (same) {
        c1 = fgetc(a);
        c2 = fgetc(b);
        if (c1 != c2) same = 0;
        if (c1 == EOF || c2 == EOF) break;
    }
    if (a) fclose(a);
    if (b) fclose(b);
    return same;
}

/* init -> info -> forward (against an in-process forward) -> sample */
static void test_binary_model_round_trip(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    char m[300], in[300], out[300], txt[300], s1[300], s2[300], png[300];
    bd_npy a, b;
    float *y;
    int64_t shape[4] = {3, 1, 16, 16}, i;
    float z[3 * 256];
    bd_rng rng = bd_rng_init(11);
    if (!cli_file_exists(bdt_bin)) return;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    snprintf(m, sizeof m, "%s/m.safetensors", bdt_tmp);
    snprintf(in, sizeof in, "%s/z.npy", bdt_tmp);
    snprintf(out, sizeof out, "%s/y.npy", bdt_tmp);
    snprintf(txt, sizeof txt, "%s/info.txt", bdt_tmp);
    snprintf(s1, sizeof s1, "%s/s1.npy", bdt_tmp);
    snprintf(s2, sizeof s2, "%s/s2.npy", bdt_tmp);
    snprintf(png, sizeof png, "%s/s.png", bdt_tmp);
    BDT_CHECK(bdt_sh("%s init --config tiny --seed 5 --out %s --quiet", bdt_bin, m) == 0);
    BDT_CHECK(bdt_sh("%s info --ckpt %s > %s 2>&1", bdt_bin, m, txt) == 0);
    BDT_CHECK(bdt_file_contains(txt, "image_size       16"));
    BDT_CHECK(bdt_file_contains(txt, "parameters"));
    /* forward: raw outputs match the library's own forward, bit for bit */
    bd_rng_normal(&rng, z, 3 * 256);
    BDT_CHECK(bd_npy_write(ctx, in, z, 4, shape) == BD_SUCCESS);
    BDT_CHECK(bdt_sh("%s forward --ckpt %s --input %s --t 0.3 --out %s --quiet", bdt_bin, m, in, out) == 0);
    y = bdt_npy(ctx, out, &a);
    BDT_CHECK(y != NULL);
    if (y) {
        bd_model *model = NULL;
        float t[3] = {0.3f, 0.3f, 0.3f}, ref[3 * 256];
        BDT_CHECK(a.ndim == 4 && a.shape[0] == 3 && a.shape[1] == 1 && a.shape[2] == 16 && a.shape[3] == 16);
        BDT_CHECK(bd_model_load(ctx, m, &model) == BD_SUCCESS);
        if (model) {
            BDT_CHECK(bd_denoiser_reserve(model->net, 3) == BD_SUCCESS);
            BDT_CHECK(bd_denoiser_forward(model->net, ref, z, t, 3, 0) == BD_SUCCESS);
            BDT_CHECK(memcmp(ref, y, sizeof ref) == 0);
            bd_model_free(model);
        }
        bd_npy_free(ctx, &a);
    }
    /* forward rejects a wrong input shape with a message */
    shape[2] = 8, shape[3] = 32;
    BDT_CHECK(bd_npy_write(ctx, in, z, 4, shape) == BD_SUCCESS);
    BDT_CHECK(bdt_sh("%s forward --ckpt %s --input %s --out %s > %s 2>&1", bdt_bin, m, in, out, txt) == 1);
    BDT_CHECK(bdt_file_contains(txt, "expected shape"));
    /* sample: same seed, same bytes; PNG written */
    BDT_CHECK(bdt_sh("%s sample --ckpt %s --n 5 --sampler ddim --steps 3 --seed 9 --out %s --grid %s --quiet", bdt_bin,
                     m, s1, png) == 0);
    BDT_CHECK(bdt_sh("%s sample --ckpt %s --n 5 --sampler ddim --steps 3 --seed 9 --out %s --quiet", bdt_bin, m, s2) ==
              0);
    BDT_CHECK(bdt_same_file(s1, s2));
    BDT_CHECK(bdt_file_contains(png, "IHDR"));
    y = bdt_npy(ctx, s1, &b);
    BDT_CHECK(y && b.ndim == 4 && b.shape[0] == 5 && b.shape[1] == 1 && b.shape[2] == 16);
    if (y) {
        for (i = 0; i < b.numel; i++)
            if (!(y[i] == y[i])) break;
        BDT_CHECK(i == b.numel);
        bd_npy_free(ctx, &b);
    }
    BDT_CHECK(bdt_sh("%s sample --ckpt %s --n 2 > %s 2>&1", bdt_bin, m, txt) == 1);
    BDT_CHECK(bdt_file_contains(txt, "nothing to write"));
    bd_context_free(ctx);
}

/* a K=2 student made from a teacher (both branches = the teacher's head),
   on the grid {1, 0.5, 0}, samples what the teacher samples with DDIM on
   the same grid from the same noise */
static void test_binary_student_sample(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    bd_unet_config cfg = bd_unet_config_init();
    bd_model *t = NULL, *s = NULL;
    bd_denoiser *sn = NULL;
    bd_rng rng = bd_rng_init(3);
    double grid[3] = {1.0, 0.5, 0.0};
    char tp[300], sp[300], ta[300], sa[300];
    bd_npy a, b;
    int l;
    if (!cli_file_exists(bdt_bin)) return;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    cfg.image_size = 8, cfg.ch = 8, cfg.levels = 2, cfg.groups = 2;
    for (l = 2; l < BD_UNET_MAX_LEVELS; l++) cfg.ch_mult[l] = 0, cfg.attn[l] = 0;
    BDT_CHECK(bd_model_init_unet(ctx, &cfg, BD_PARAM_V, BD_SCHEDULE_COSINE, &rng, &t) == BD_SUCCESS);
    if (!t) return;
    /* non-zero head so the output depends on the weights */
    for (l = 0; l < (int)t->net->n_params; l++)
        if (t->net->params[l] == 0.0f) t->net->params[l] = 0.01f * (float)bd_rng_normal1(&rng);
    BDT_CHECK(bd_distill_student_from_teacher(t->net, 2, &rng, &sn) == BD_SUCCESS);
    BDT_CHECK(sn && bd_model_init(ctx, sn, BD_PARAM_V, BD_SCHEDULE_COSINE, &s) == BD_SUCCESS);
    BDT_CHECK(s && bd_model_set_grid(s, grid, 2) == BD_SUCCESS);
    snprintf(tp, sizeof tp, "%s/st_teacher.safetensors", bdt_tmp);
    snprintf(sp, sizeof sp, "%s/st_student.safetensors", bdt_tmp);
    snprintf(ta, sizeof ta, "%s/st_t.npy", bdt_tmp);
    snprintf(sa, sizeof sa, "%s/st_s.npy", bdt_tmp);
    BDT_CHECK(bd_model_save(ctx, t, tp, NULL) == BD_SUCCESS);
    BDT_CHECK(s && bd_model_save(ctx, s, sp, NULL) == BD_SUCCESS);
    BDT_CHECK(bdt_sh("%s sample --ckpt %s --n 6 --sampler ddim --steps 2 --time-grid uniform_t --seed 2 --out %s "
                     "--quiet", bdt_bin, tp, ta) == 0);
    BDT_CHECK(bdt_sh("%s sample --ckpt %s --n 6 --seed 2 --out %s --quiet", bdt_bin, sp, sa) == 0);
    BDT_CHECK(bdt_sh("%s sample --ckpt %s --n 6 --steps 3 --out %s > /dev/null 2>&1", bdt_bin, sp, sa) == 1);
    if (bdt_npy(ctx, ta, &a) && bdt_npy(ctx, sa, &b)) {
        double ratio, mabs;
        BDT_CHECK(a.numel == b.numel && a.numel == 6 * 64);
        ratio = bdt_close_ratio(b.data, a.data, (long)a.numel, 1e-5, 1e-4, &mabs);
        BDT_CHECKF(ratio <= 1, "student vs teacher samples: max abs diff %.3g", mabs);
        bd_npy_free(ctx, &a);
        bd_npy_free(ctx, &b);
    } else {
        BDT_CHECK(!"samples missing");
    }
    if (s) bd_model_free(s);
    bd_model_free(t);
    bd_context_free(ctx);
}

/* train 6 steps straight == train 4, then --resume to 6 (bit-exact) */
static void test_binary_train_resume(void) {
    char a[300], b[300], txt[300];
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    bd_safetensors *sa = NULL, *sb = NULL;
    const char *common = "--data builtin:16 --config tiny --batch 3 --lr 1e-3 --warmup 2 --seed 4 --quiet";
    if (!cli_file_exists(bdt_bin)) return;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    snprintf(a, sizeof a, "%s/a.safetensors", bdt_tmp);
    snprintf(b, sizeof b, "%s/b.safetensors", bdt_tmp);
    snprintf(txt, sizeof txt, "%s/train.txt", bdt_tmp);
    BDT_CHECK(bdt_sh("%s train %s --steps 6 --log-every 1 --out %s", bdt_bin, common, a) == 0);
    BDT_CHECK(bdt_sh("%s train %s --steps 4 --log-every 1 --save-every 2 --out %s", bdt_bin, common, b) == 0);
    BDT_CHECK(bdt_sh("%s train --data builtin:16 --steps 6 --batch 3 --lr 1e-3 --warmup 2 --quiet --log-every 1 "
                     "--resume %s", bdt_bin, b) == 0);
    BDT_CHECK(bd_safetensors_load(ctx, a, &sa) == BD_SUCCESS);
    BDT_CHECK(bd_safetensors_load(ctx, b, &sb) == BD_SUCCESS);
    if (sa && sb) {
        int64_t i, differ = 0;
        BDT_CHECK(sa->n_tensors == sb->n_tensors);
        for (i = 0; i < sa->n_tensors && i < sb->n_tensors; i++) {
            const bd_st_tensor *ta = &sa->tensors[i], *tb = bd_safetensors_find(sb, ta->name);
            if (!tb || tb->numel != ta->numel || memcmp(ta->data, tb->data, sizeof(float) * (size_t)ta->numel) != 0) {
                if (differ < 3) printf("  resumed run differs in %s\n", ta->name);
                differ++;
            }
        }
        BDT_CHECKF(differ == 0, "%lld tensors differ between a straight and a resumed run", (long long)differ);
        BDT_CHECK(bd_safetensors_meta(sb, "optim.step") && strcmp(bd_safetensors_meta(sb, "optim.step"), "6") == 0);
    }
    if (sa) bd_safetensors_free(sa);
    if (sb) bd_safetensors_free(sb);
    /* the loss CSV of the resumed run continues the first one: 6 rows + header */
    {
        char csv[300];
        FILE *f;
        int lines = 0, ch;
        snprintf(csv, sizeof csv, "%s/b.loss.csv", bdt_tmp);
        f = fopen(csv, "r");
        BDT_CHECK(f != NULL);
        if (f) {
            while ((ch = fgetc(f)) != EOF) lines += ch == '\n';
            fclose(f);
        }
        BDT_CHECKF(lines == 7, "%d lines in the resumed loss CSV", lines);
    }
    /* helpful failures */
    BDT_CHECK(bdt_sh("%s train --data fmnist:/nonexistent --out %s > %s 2>&1", bdt_bin, a, txt) == 1);
    BDT_CHECK(bdt_file_contains(txt, "train-images"));
    BDT_CHECK(bdt_sh("%s train --data nonsense --out %s > %s 2>&1", bdt_bin, a, txt) == 1);
    BDT_CHECK(bdt_file_contains(txt, "expected builtin"));
    BDT_CHECK(bdt_sh("%s train --data builtin --resume %s --config small > %s 2>&1", bdt_bin, b, txt) == 1);
    BDT_CHECK(bdt_file_contains(txt, "cannot change"));
    bd_context_free(ctx);
}

/* distill 6 steps straight == distill 4, then --resume to 6: the --out
   file is the student checkpoint and the library's exact distiller state
   (bd_distill_save_state: adaptive weights' branch EMA, Adam, rng), so the
   two files are byte for byte the same; `bdense sample` reads it */
static void test_binary_distill_resume(void) {
    char t[300], a[300], b[300], s[300];
    const char *common = "--branches 2 --weights adaptive --student-steps 2 --batch 3 --lr 1e-3 --seed 3 --quiet "
                         "--log-every 1 --eval-n 4";
    if (!cli_file_exists(bdt_bin)) return;
    snprintf(t, sizeof t, "%s/dt.safetensors", bdt_tmp);
    snprintf(a, sizeof a, "%s/da.safetensors", bdt_tmp);
    snprintf(b, sizeof b, "%s/db.safetensors", bdt_tmp);
    snprintf(s, sizeof s, "%s/ds.npy", bdt_tmp);
    BDT_CHECK(bdt_sh("%s init --config tiny --seed 5 --out %s --quiet", bdt_bin, t) == 0);
    BDT_CHECK(bdt_sh("%s distill --teacher %s %s --steps 6 --out %s", bdt_bin, t, common, a) == 0);
    BDT_CHECK(bdt_sh("%s distill --teacher %s %s --steps 4 --save-every 2 --out %s", bdt_bin, t, common, b) == 0);
    BDT_CHECK(bdt_sh("%s distill --teacher %s %s --steps 6 --resume %s --out %s", bdt_bin, t, common, b, b) == 0);
    BDT_CHECKF(bdt_sh("cmp -s %s %s", a, b) == 0, "a straight and a resumed distillation differ (%s, %s)", a, b);
    BDT_CHECK(bdt_sh("%s sample --ckpt %s --n 4 --out %s --quiet", bdt_bin, b, s) == 0);
    /* a resume of another K is refused with a message */
    BDT_CHECK(bdt_sh("%s distill --teacher %s --branches 4 --steps 7 --resume %s --out %s --quiet > /dev/null 2>&1",
                     bdt_bin, t, b, a) == 1);
    /* consistency distillation (data from the distiller's rng) resumes exactly too */
    common = "--method cd --data builtin --branches 2 --student-steps 2 --teacher-substeps 4 --batch 3 --lr 1e-3 "
             "--seed 3 --quiet --log-every 1 --eval-n 4";
    BDT_CHECK(bdt_sh("%s distill --teacher %s %s --steps 5 --out %s", bdt_bin, t, common, a) == 0);
    BDT_CHECK(bdt_sh("%s distill --teacher %s %s --steps 3 --out %s", bdt_bin, t, common, b) == 0);
    BDT_CHECK(bdt_sh("%s distill --teacher %s %s --steps 5 --resume %s --out %s", bdt_bin, t, common, b, b) == 0);
    BDT_CHECKF(bdt_sh("cmp -s %s %s", a, b) == 0, "a straight and a resumed CD run differ (%s, %s)", a, b);
    BDT_CHECK(bdt_sh("%s sample --ckpt %s --n 4 --out %s --quiet", bdt_bin, b, s) == 0);
}

/* ---------------------------------------------------------------------- */
/* hostile inputs (issue 14): every numeric option of every subcommand,
   read from its --help, given values no option accepts; data specs and
   files that are empty, zero-sized, forged or mismatched.  Each must end
   with exit status 1 or 2 and a message, never a signal. */
static int bdt_hostile_runs, bdt_hostile_bad;

/* runs `bdense ARGS`, stderr to a file; returns the exit status (-1: a signal) */
static int bdt_run_err(const char *err, const char *args) {
    int rc = bdt_sh("%s %s > %s 2>&1", bdt_bin, args, err);
    bdt_hostile_runs++;
    return rc >= 128 ? -1 : rc;
}

static void test_binary_hostile_options(void) {
    static const char *cmds[] = {"init", "train", "sample", "forward", "info", "eval", "distill", "trajectories",
                                 "compare", "data"};
    /* not a number any option takes: malformed, non-finite, overflowing */
    static const char *bad[] = {"nan", "inf", "-inf", "1e400", "99999999999999999999", "-99999999999999999999",
                                "abc", "", "0x10", " 3", "3 ", "1e-400", "1,5", "--"};
    /* maybe valid, maybe not: must never crash */
    static const char *edge[] = {"0", "-1", "1.5", "-0", "1e3"};
    static const char *numeric_meta[] = {"N", "S", "B", "X", "LR", "KT", "K", "G", "DECAY", "C", "T", "R", "D", NULL};
    char help[300], err[300], args[600], name[64], meta[64];
    size_t c, v;
    int quick = getenv("TEST_QUICK") != NULL, n_opts = 0;
    if (!cli_file_exists(bdt_bin)) return;
    snprintf(help, sizeof help, "%s/hostile_help.txt", bdt_tmp);
    snprintf(err, sizeof err, "%s/hostile_err.txt", bdt_tmp);
    for (c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
        FILE *f;
        char line[512];
        BDT_CHECK(bdt_sh("%s %s --help > %s 2>&1", bdt_bin, cmds[c], help) == 0);
        f = fopen(help, "r");
        if (!f) continue;
        while (fgets(line, sizeof line, f)) {
            int k, numeric = 0;
            if (sscanf(line, "  --%63s %63s", name, meta) != 2) continue;
            for (k = 0; numeric_meta[k]; k++) numeric |= strcmp(meta, numeric_meta[k]) == 0;
            if (strcmp(name, "threads") == 0) numeric = 1;
            if (!numeric) continue;
            n_opts++;
            for (v = 0; v < sizeof bad / sizeof bad[0]; v++) {
                int rc;
                if (quick && v % 4) continue;
                snprintf(args, sizeof args, "%s --%s '%s'", cmds[c], name, bad[v]);
                rc = bdt_run_err(err, args);
                if (strcmp(bad[v], "--") == 0) { /* "--" is no value: the option lacks one */
                    if (rc != 2) bdt_hostile_bad++;
                    BDT_CHECKF(rc == 2, "bdense %s: exit %d", args, rc);
                    continue;
                }
                snprintf(line, sizeof line, "--%s", name);
                if (rc != 2 || !bdt_file_contains(err, line)) bdt_hostile_bad++;
                BDT_CHECKF(rc == 2 && bdt_file_contains(err, line),
                           "bdense %s: exit %d (want 2 and a message naming --%s)", args, rc, name);
            }
            for (v = 0; v < sizeof edge / sizeof edge[0] && !quick; v++) {
                int rc;
                snprintf(args, sizeof args, "%s --%s %s", cmds[c], name, edge[v]);
                rc = bdt_run_err(err, args);
                if (!(rc == 1 || rc == 2) || !bdt_file_contains(err, "error")) bdt_hostile_bad++;
                BDT_CHECKF((rc == 1 || rc == 2) && bdt_file_contains(err, "error"), "bdense %s: exit %d", args, rc);
            }
        }
        fclose(f);
    }
    BDT_CHECKF(n_opts >= 60, "only %d numeric options found in the --help texts", n_opts);
    printf("  %d numeric options, %d hostile option runs\n", n_opts, bdt_hostile_runs);
}

/* bytes to a file */
static void bdt_put(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}
static void bdt_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}
/* an IDX image file DIR/train-images-idx3-ubyte(.gz) claiming n x r x c, holding `have` payload bytes */
static void bdt_idx(const char *dir, uint32_t n, uint32_t r, uint32_t c, size_t have, int gz) {
    char p[400];
    unsigned char *b = (unsigned char *)calloc(1, 16 + have + 64), *g;
    size_t m = 16 + have;
    bdt_sh("mkdir -p '%s'", dir);
    bdt_be32(b, 0x803), bdt_be32(b + 4, n), bdt_be32(b + 8, r), bdt_be32(b + 12, c);
    if (!gz) {
        snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
        bdt_put(p, b, m);
        snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", dir);
        bdt_put(p, b, m);
    } else { /* one stored deflate block (m < 65536) */
        uint32_t crc = bd_crc32(0, b, m);
        g = (unsigned char *)calloc(1, m + 32);
        memcpy(g, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10);
        g[10] = 1, g[11] = (unsigned char)m, g[12] = (unsigned char)(m >> 8);
        g[13] = (unsigned char)~m, g[14] = (unsigned char)(~m >> 8);
        memcpy(g + 15, b, m);
        g[15 + m] = (unsigned char)crc, g[16 + m] = (unsigned char)(crc >> 8), g[17 + m] = (unsigned char)(crc >> 16),
        g[18 + m] = (unsigned char)(crc >> 24);
        g[19 + m] = (unsigned char)m, g[20 + m] = (unsigned char)(m >> 8), g[21 + m] = 0, g[22 + m] = 0;
        snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
        bdt_put(p, g, m + 23);
        free(g);
    }
    free(b);
}

static void test_binary_hostile_data(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    char t[320], err[300], d[300], args[1200];
    float z[4 * 64];
    int64_t sh[4];
    size_t i;
    struct {
        const char *args; /* %1$s-free: T = teacher, D = the fixture folder, substituted below */
        int want;         /* exit status */
        const char *msg;  /* in the message */
    } cases[] = {
        {"train --data fmnist:D/idx_zero --image-size 8 --out D/o.st", 1, "holds 0 images"},
        {"train --data fmnist-test:D/idx_zero --image-size 8 --out D/o.st", 1, "holds 0 images"},
        {"data --data fmnist:D/idx_zero --n 1 --grid D/o.png", 1, "holds 0 images"},
        {"data --data fmnist:D/idx_rows0 --n 1 --grid D/o.png", 1, "0x8 pixels"},
        {"data --data fmnist:D/idx_forged --n 1 --grid D/o.png", 1, "cannot hold"},
        {"data --data fmnist:D/idx_huge --n 1 --grid D/o.png", 1, "too large"},
        {"data --data fmnist:D/idx_short --n 1 --grid D/o.png", 1, "payload"},
        {"data --data fmnist:D/nothing --n 1 --grid D/o.png", 1, "no train-images"},
        {"data --data fmnist: --n 1 --grid D/o.png", 1, "no train-images"},
        {"data --data builtin:0 --n 1 --grid D/o.png", 1, "8..256"},
        {"data --data builtin:nan --n 1 --grid D/o.png", 1, "8..256"},
        {"data --data builtin:99999999999999999999 --n 1 --grid D/o.png", 1, "8..256"},
        {"data --data builtin: --n 1 --grid D/o.png", 1, "8..256"},
        {"data --data npy:D/zero.npy --n 1 --grid D/o.png", 1, "no samples"},
        {"data --data npy:D/zdim.npy --n 1 --grid D/o.png", 1, "empty"},
        {"data --data npy:D/vec.npy --n 1 --grid D/o.png", 1, "dims"},
        {"data --data npy:D/empty --n 1 --grid D/o.png", 1, "npy"},
        {"data --data npy:D --n 1 --grid D/o.png", 1, "error"},
        {"data --data npy:D/x.npy --n 5 --grid D/o.png", 0, NULL}, /* --n beyond the data: all 4 */
        {"train --data npy:D/x.npy --init T --steps 1 --batch 64 --out D/o.st", 0, NULL}, /* batch > data: drawn with replacement */
        {"train --data npy:D/wrong.npy --init T --steps 1 --out D/o.st", 1, "the model takes"},
        {"train --data builtin --image-size 8 --ch 8 --groups 3 --out D/o.st", 1, "error"},
        {"sample --ckpt D/empty --n 1", 1, "error"},
        {"sample --ckpt D --n 1", 1, "error"},
        {"sample --ckpt D/x.npy --n 1", 1, "error"},
        {"forward --ckpt T --input D/wrong.npy --t 0.5 --out D/o.npy", 1, "error"},
        {"forward --ckpt T --input D/zero.npy --t 0.5 --out D/o.npy", 1, "error"},
        {"eval --samples D/zero.npy --data builtin:8 --n 2", 1, "error"},
        {"eval --samples D/wrong.npy --data builtin:8 --n 2", 1, "error"},
        {"distill --teacher T --trajectories D/wrong.npy --student-steps 2 --teacher-substeps 2 --steps 1 --out D/o.st",
         1, "error"},
        {"distill --teacher T --trajectories D/empty --student-steps 2 --teacher-substeps 2 --steps 1 --out D/o.st", 1,
         "error"},
        {"distill --teacher T --method cd --steps 1 --out D/o.st", 1, "needs --data"},
        {"distill --teacher T --method cd --data builtin --trajectories D/x.npy --steps 1 --out D/o.st", 1, "td"},
        {"distill --teacher T --method cd --data builtin --branches 2 --teacher-substeps 3 --steps 1 --out D/o.st", 1,
         "multiple"},
        {"compare --teacher T --students D/empty --n 2", 1, "error"},
        {"compare --teacher T --students T --n 2 --teacher-steps 1e400", 1, "teacher-steps"},
        {"info --ckpt D/empty", 1, "error"},
    };
    if (!cli_file_exists(bdt_bin)) return;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    snprintf(d, sizeof d, "%s/hd", bdt_tmp);
    snprintf(t, sizeof t, "%s/t.st", d);
    snprintf(err, sizeof err, "%s/hostile_err.txt", bdt_tmp);
    bdt_sh("mkdir -p '%s'", d);
    BDT_CHECK(bdt_sh("%s init --config tiny --image-size 8 --ch 8 --groups 2 --out %s --quiet", bdt_bin, t) == 0);
    {
        char p[400];
        snprintf(p, sizeof p, "%s/idx_zero", d); bdt_idx(p, 0, 8, 8, 0, 0);
        snprintf(p, sizeof p, "%s/idx_rows0", d); bdt_idx(p, 5, 0, 8, 0, 0);
        snprintf(p, sizeof p, "%s/idx_forged", d); bdt_idx(p, 2000000, 28, 28, 100, 1);
        snprintf(p, sizeof p, "%s/idx_huge", d); bdt_idx(p, 0xffffffffu, 28, 28, 100, 1);
        snprintf(p, sizeof p, "%s/idx_short", d); bdt_idx(p, 3, 8, 8, 100, 0);
        snprintf(p, sizeof p, "%s/empty", d); bdt_put(p, "", 0);
        for (i = 0; i < 4 * 64; i++) z[i] = 0.1f;
        sh[0] = 0, sh[1] = 1, sh[2] = 8, sh[3] = 8;
        snprintf(p, sizeof p, "%s/zero.npy", d); BDT_CHECK(bd_npy_write(ctx, p, z, 4, sh) == BD_SUCCESS);
        sh[0] = 4, sh[1] = 0;
        snprintf(p, sizeof p, "%s/zdim.npy", d); BDT_CHECK(bd_npy_write(ctx, p, z, 4, sh) == BD_SUCCESS);
        sh[0] = 5;
        snprintf(p, sizeof p, "%s/vec.npy", d); BDT_CHECK(bd_npy_write(ctx, p, z, 1, sh) == BD_SUCCESS);
        sh[0] = 4, sh[1] = 1;
        snprintf(p, sizeof p, "%s/x.npy", d); BDT_CHECK(bd_npy_write(ctx, p, z, 4, sh) == BD_SUCCESS);
        sh[0] = 2, sh[1] = 2, sh[2] = 8, sh[3] = 8;
        snprintf(p, sizeof p, "%s/wrong.npy", d); BDT_CHECK(bd_npy_write(ctx, p, z, 4, sh) == BD_SUCCESS);
    }
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *s = cases[i].args;
        size_t o = 0;
        int rc;
        for (; *s && o + 400 < sizeof args; s++) { /* T -> teacher, D -> fixture folder (whole words) */
            int word = s == cases[i].args || s[-1] == ' ' || s[-1] == ':';
            if (word && *s == 'T' && (s[1] == ' ' || !s[1])) o += (size_t)snprintf(args + o, sizeof args - o, "%s", t);
            else if (word && *s == 'D' && (s[1] == '/' || s[1] == ' ' || !s[1]))
                o += (size_t)snprintf(args + o, sizeof args - o, "%s", d);
            else args[o++] = *s;
        }
        args[o] = 0;
        rc = bdt_run_err(err, args);
        BDT_CHECKF(rc == cases[i].want, "bdense %s: exit %d, want %d", args, rc, cases[i].want);
        if (cases[i].msg)
            BDT_CHECKF(bdt_file_contains(err, cases[i].msg), "bdense %s: no '%s' in the message", args, cases[i].msg);
    }
    printf("  %d hostile data cases\n", (int)(sizeof cases / sizeof cases[0]));
    bd_context_free(ctx);
}

/* the fuzz_cli seed corpus and its regressions (a zero-image IDX, zero
   rows, a forged gzip claim, ...) through the fuzz target's own checks,
   which trap on a violation */
static void test_fuzz_cli_replay(void) {
    static const char *dirs[] = {"tests/fuzz/corpus/cli", "tests/fuzz/regress/cli"};
    int files = 0, k;
    for (k = 0; k < 2; k++) {
        DIR *d = opendir(dirs[k]);
        struct dirent *e;
        if (!d) continue;
        while ((e = readdir(d)) != NULL) {
            char path[600];
            size_t n = 0;
            unsigned char *b;
            FILE *f;
            if (e->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", dirs[k], e->d_name);
            f = fopen(path, "rb");
            if (!f) continue;
            b = (unsigned char *)malloc(1 << 16);
            if (b) n = fread(b, 1, 1 << 16, f);
            fclose(f);
            bdt_silence(1);
            if (b) LLVMFuzzerTestOneInput(b, n);
            bdt_silence(0);
            free(b);
            files++;
        }
        closedir(d);
    }
    fz_cleanup();
    BDT_CHECKF(files >= 10, "only %d fuzz_cli corpus/regression files (run from the repository root)", files);
    printf("  replayed %d fuzz_cli inputs\n", files);
}

int main(int argc, char **argv) {
    const char *tmpdir = getenv("TMPDIR");
    static char bin[1024];
    /* the binary of the same build: <BUILD>/tests/test_cli -> <BUILD>/bdense */
    if (argc > 0 && argv[0] && strstr(argv[0], "/tests/test_cli")) {
        size_t len = (size_t)(strstr(argv[0], "/tests/test_cli") - argv[0]);
        if (len < sizeof bin - 10) {
            memcpy(bin, argv[0], len);
            memcpy(bin + len, "/bdense", 8);
            bdt_bin = bin;
        }
    }
    snprintf(bdt_tmp, sizeof bdt_tmp, "%s/bdense_test_cli_XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (getenv("BDENSE_BIN")) bdt_bin = getenv("BDENSE_BIN"); /* e.g. build-san/bdense */
    if (!mkdtemp(bdt_tmp)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    BDT_RUN(test_parser);
    BDT_RUN(test_parser_errors);
    BDT_RUN(test_sibling_and_duration);
    BDT_RUN(test_frechet_closed_forms);
    BDT_RUN(test_feature_metric);
    BDT_RUN(test_binary_help);
    BDT_RUN(test_binary_model_round_trip);
    BDT_RUN(test_binary_student_sample);
    BDT_RUN(test_binary_train_resume);
    BDT_RUN(test_binary_distill_resume);
    BDT_RUN(test_binary_hostile_options);
    BDT_RUN(test_binary_hostile_data);
    BDT_RUN(test_fuzz_cli_replay);
    bdt_sh("rm -rf '%s'", bdt_tmp);
    return BDT_SUMMARY("test_cli");
}
