/* toy2d - B-DENSE on 2-D data, in seconds, with pictures.

   1. Trains an MLP teacher (bd_mlp_create + bd_trainer) on two moons or
      two rings.
   2. Solves the teacher's probability-flow ODE from a few noises and draws
      the trajectories (teacher_ode.svg) next to the data (data.svg).
   3. Distills two 2-step students by trajectory distillation (TD): the
      sparse baseline (K = 1 branch, trained only on the end of each step)
      and B-DENSE (K = 4 branches, each trained on one of the teacher's
      intermediate states).  For each student it draws, on top of the
      teacher's trajectories, the student's jumps and where each branch's
      one-jump prediction lands (student_sparse.svg, student_bdense.svg),
      and prints the trajectory error of every sampler at 2 NFE.

   Build and run (from the repository root):
       make examples                  # or: cc -std=c99 -O2 -I. examples/toy2d/toy2d.c -o toy2d -lm
       build/examples/toy2d/toy2d --out toy2d_out
   Options: --data moons|rings, --out DIR, --seed N, --fast (a smoke run).
   SVG needs no library: open the files in any browser. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkdir */
#endif
#define BDENSE_IMPLEMENTATION
#include "bdense.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <direct.h>
#define make_dir(p) _mkdir(p)
#else
#include <sys/stat.h>
#define make_dir(p) mkdir(p, 0755)
#endif

#define D 2          /* data dimension */
#define N_TRAJ 24    /* trajectories drawn (teacher picture) */
#define N_STUD 10    /* trajectories drawn on a student picture */
#define ODE_STEPS 48 /* teacher steps for the ODE picture */

typedef enum { DATA_MOONS, DATA_RINGS } data_kind;

/* ---- data --------------------------------------------------------------- */
/* Both sets fit in about [-1, 1]^2 with per-coordinate std around 0.5. */
static void data_point(data_kind kind, bd_rng *rng, float *x) {
    double u = bd_rng_uniform(rng), nx = bd_rng_normal1(rng), ny = bd_rng_normal1(rng);
    int which = bd_rng_uniform(rng) < 0.5;
    if (kind == DATA_MOONS) {
        double a = u * 3.14159265358979;
        double px = which ? cos(a) : 1.0 - cos(a);
        double py = which ? sin(a) : 0.5 - sin(a);
        x[0] = (float)(0.75 * (px - 0.5) + 0.04 * nx);
        x[1] = (float)(0.75 * (py - 0.25) + 0.04 * ny);
    } else {
        double a = u * 2.0 * 3.14159265358979, r = which ? 0.35 : 0.85;
        x[0] = (float)(r * cos(a) + 0.03 * nx);
        x[1] = (float)(r * sin(a) + 0.03 * ny);
    }
}

/* bd_data_fn: the trainer asks for a batch; its data rng makes runs exact */
static bd_result data_batch(void *user, float *x, int64_t n, bd_rng *rng) {
    data_kind kind = *(const data_kind *)user;
    int64_t i;
    for (i = 0; i < n; i++) data_point(kind, rng, x + i * D);
    return BD_SUCCESS;
}

/* ---- SVG ---------------------------------------------------------------- */
/* The plane [-2, 2]^2 maps to a 560 x 560 picture (y up). */
#define SVG_SIZE 560.0
#define SVG_HALF 2.0
static double px(double x) { return (x + SVG_HALF) / (2 * SVG_HALF) * SVG_SIZE; }
static double py(double y) { return (SVG_HALF - y) / (2 * SVG_HALF) * SVG_SIZE; }
static const char *branch_color[4] = {"#1b9e77", "#d95f02", "#7570b3", "#e7298a"};

static FILE *svg_open(const char *dir, const char *name, const char *title) {
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "toy2d: cannot write %s\n", path);
        return NULL;
    }
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"13\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"10\" y=\"20\" font-size=\"15\">%s</text>\n",
            SVG_SIZE, SVG_SIZE, SVG_SIZE, SVG_SIZE, title);
    return f;
}
static void svg_close(FILE *f) {
    fprintf(f, "</svg>\n");
    fclose(f);
}
static void svg_dot(FILE *f, const float *p, double r, const char *fill, double opacity) {
    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\" fill-opacity=\"%.2f\"/>\n",
            px(p[0]), py(p[1]), r, fill, opacity);
}
static void svg_ring(FILE *f, const float *p, double r, const char *stroke) {
    fprintf(f,
            "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"none\" stroke=\"%s\" "
            "stroke-width=\"1.2\"/>\n",
            px(p[0]), py(p[1]), r, stroke);
}
static void svg_line(FILE *f, const float *a, const float *b, const char *stroke, double width,
                     int dashed) {
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"%.1f\"%s/>\n",
            px(a[0]), py(a[1]), px(b[0]), py(b[1]), stroke, width,
            dashed ? " stroke-dasharray=\"4 3\"" : "");
}
/* a polyline through n points spaced `stride` floats apart */
static void svg_path(FILE *f, const float *p, int64_t n, int64_t stride, const char *stroke,
                     double width, double opacity) {
    int64_t i;
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" stroke-opacity=\"%.2f\" points=\"",
            stroke, width, opacity);
    for (i = 0; i < n; i++) fprintf(f, "%.1f,%.1f ", px(p[i * stride]), py(p[i * stride + 1]));
    fprintf(f, "\"/>\n");
}
static void svg_legend(FILE *f, int row, const char *color, const char *text) {
    if (row == 0)
        fprintf(f, "<rect x=\"6\" y=\"28\" width=\"400\" height=\"110\" fill=\"white\" "
                   "fill-opacity=\"0.85\"/>\n");
    fprintf(f, "<circle cx=\"18\" cy=\"%d\" r=\"5\" fill=\"%s\"/><text x=\"30\" y=\"%d\">%s</text>\n",
            40 + 18 * row, color, 44 + 18 * row, text);
}

/* ---- teacher trajectories: the sampler callback records every state ---- */
typedef struct {
    float *traj;   /* (n, steps+1, D) */
    int64_t steps; /* S */
} traj_rec;

static int record_state(void *user, int64_t step, double t, double s, const float *z,
                        const float *x_hat, int64_t n, int64_t dim, int64_t first) {
    traj_rec *rec = (traj_rec *)user;
    int64_t i;
    (void)t, (void)s, (void)x_hat;
    for (i = 0; i < n; i++)
        memcpy(rec->traj + ((first + i) * (rec->steps + 1) + step) * D, z + i * dim,
               D * sizeof(float));
    return 0;
}

/* Solve the teacher on `grid` (steps+1 times) from noise x (n, D); x becomes
   the samples and traj (n, steps+1, D) every state. */
static bd_result teacher_solve(bd_sampler *smp, bd_sampler_kind kind, const double *grid,
                               int64_t steps, float *x, int64_t n, float *traj) {
    bd_sampler_config sc = bd_sampler_config_init(kind, steps);
    traj_rec rec;
    bd_result r;
    int64_t i;
    rec.traj = traj;
    rec.steps = steps;
    sc.custom_grid = grid;
    sc.callback = traj ? record_state : NULL;
    sc.user_data = &rec;
    r = bd_sampler_run(smp, &sc, x, n, NULL, NULL);
    if (r == BD_SUCCESS && traj)
        for (i = 0; i < n; i++) memcpy(traj + (i * (steps + 1) + steps) * D, x + i * D, D * sizeof(float));
    return r;
}

static double mse(const float *a, const float *b, int64_t n) {
    double s = 0;
    int64_t i;
    for (i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s / (double)n;
}

static double seconds(void) { return (double)clock() / CLOCKS_PER_SEC; }

/* ---- one student: distill, evaluate, draw ------------------------------- */
typedef struct {
    const char *name, *file, *title;
    int64_t K;
    bd_distill_weights weights;
} student_spec;

#define CHECK(call)                                                                        \
    do {                                                                                   \
        if ((r = (call)) != BD_SUCCESS) {                                                  \
            fprintf(stderr, "toy2d: %s failed: %s (%s)\n", #call, bd_result_string(r),     \
                    bd_context_message(ctx));                                              \
            goto done;                                                                     \
        }                                                                                  \
    } while (0)

static bd_result run_student(bd_context *ctx, bd_denoiser *teacher, const student_spec *sp,
                             int64_t steps, uint64_t seed, const char *outdir, const float *data,
                             double *err, double *secs) {
    bd_rng rng = bd_rng_init(seed);
    bd_denoiser *student = NULL;
    bd_distill *dist = NULL;
    bd_sampler *tsmp = NULL;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_TD, sp->K, 2);
    bd_schedule sched;
    float *noise = NULL, *traj = NULL, *out = NULL, *xh = NULL, *eh = NULL, *land = NULL;
    float *z = NULL, *tt = NULL;
    FILE *f = NULL;
    int64_t i, j, k, S, Kt, N;
    double t0, loss;
    bd_result r = BD_SUCCESS;

    dc.weights = sp->weights;
    dc.teacher_substeps = 4; /* SFD's default: 4 teacher steps per student step */
    dc.adam.lr = 2e-3;
    dc.adam.lr_schedule = BD_LR_COSINE;
    dc.adam.total_steps = steps;
    dc.ema_decay = 0.995;
    dc.seed = seed;
    CHECK(bd_distill_student_from_teacher(teacher, sp->K, &rng, &student));
    CHECK(bd_distill_init(ctx, &dc, teacher, student, 256, &dist));
    t0 = seconds();
    printf("  %-8s (K=%lld)", sp->name, (long long)sp->K);
    for (i = 0; i < steps; i++) {
        CHECK(bd_distill_step(dist, NULL, 256, &loss, NULL));
        if (i + 1 == steps / 20 || i + 1 == steps / 5 || i + 1 == steps) {
            /* trajectory error at 2 NFE against the teacher, same noise */
            CHECK(bd_distill_eval(dist, 2000, seed + 1, 1, err, NULL, NULL));
            printf("   %5lld: %.2e", (long long)(i + 1), *err);
            fflush(stdout);
        }
    }
    *secs = seconds() - t0;
    printf("   (%.1f s)\n", *secs);
    CHECK(bd_distill_copy_ema(dist, student));

    /* The picture: N_TRAJ noises, the teacher on its grid (the states the
       branches were trained to reach), then the student's walk. */
    S = dist->S, Kt = dist->Kt, N = dist->N;
    CHECK(bd_schedule_init(&sched, dc.schedule));
    CHECK(bd_sampler_init(ctx, teacher, N_TRAJ, &tsmp));
    noise = (float *)bd_alloc_array(ctx, N_TRAJ * D, sizeof(float));
    z = (float *)bd_alloc_array(ctx, N_TRAJ * D, sizeof(float));
    traj = (float *)bd_alloc_array(ctx, (size_t)(N_TRAJ * (S + 1) * D), sizeof(float));
    out = (float *)bd_alloc_array(ctx, (size_t)(N_TRAJ * sp->K * D), sizeof(float));
    xh = (float *)bd_alloc_array(ctx, N_TRAJ * D, sizeof(float));
    eh = (float *)bd_alloc_array(ctx, N_TRAJ * D, sizeof(float));
    land = (float *)bd_alloc_array(ctx, N_TRAJ * D, sizeof(float));
    tt = (float *)bd_alloc_array(ctx, N_TRAJ, sizeof(float));
    if (!noise || !z || !traj || !out || !xh || !eh || !land || !tt) {
        r = BD_ERROR_OUT_OF_MEMORY;
        goto done;
    }
    bd_noise_fill(noise, N_TRAJ * D, seed + 2);
    memcpy(z, noise, sizeof(float) * N_TRAJ * D);
    CHECK(teacher_solve(tsmp, dc.teacher_solver, dist->tgrid, S, z, N_TRAJ, traj));
    CHECK(bd_denoiser_reserve(student, N_TRAJ));

    f = svg_open(outdir, sp->file, sp->title);
    if (!f) {
        r = BD_ERROR_IO;
        goto done;
    }
    for (j = 0; j < 400; j++) svg_dot(f, data + j * D, 1.4, "#ccc", 0.5);
    memcpy(z, noise, sizeof(float) * N_TRAJ * D);
    for (i = 0; i < N; i++) {
        double t = dist->grid[i];
        for (j = 0; j < N_TRAJ; j++) tt[j] = (float)t;
        for (k = 0; k < sp->K; k++) {
            /* branch k's x_hat, jumped with DDIM from (z_t, t) to s_{k+1} */
            int64_t sub = i * Kt + (k + 1) * (Kt / sp->K);
            double as, ss, av[N_TRAJ], sv[N_TRAJ];
            bd_schedule_alpha_sigma(&sched, dist->tgrid[sub], &as, &ss);
            for (j = 0; j < N_TRAJ; j++) av[j] = as, sv[j] = ss;
            CHECK(bd_model_predict(student, &sched, dc.param, k, out, xh, eh, z, tt, N_TRAJ));
            bd_ddim_jump(land, xh, eh, av, sv, N_TRAJ, D);
            for (j = 0; j < N_STUD; j++) {
                const float *target = traj + (j * (S + 1) + sub) * D;
                const char *col = branch_color[(sp->K == 1 ? 3 : k) % 4];
                svg_ring(f, target, 4.0, "#444");
                svg_line(f, z + j * D, land + j * D, col, k == sp->K - 1 ? 2.0 : 1.0,
                         k != sp->K - 1);
                svg_dot(f, land + j * D, 3.0, col, 0.9);
            }
        }
        memcpy(z, land, sizeof(float) * N_TRAJ * D); /* the final branch's jump */
    }
    /* the teacher's path on top, thin, so the jumps can be read against it */
    for (j = 0; j < N_STUD; j++) svg_path(f, traj + j * (S + 1) * D, S + 1, D, "#333", 0.8, 0.9);
    for (j = 0; j < N_STUD; j++) svg_dot(f, noise + j * D, 2.5, "#000", 0.8);
    svg_legend(f, 0, "#333", "teacher ODE trajectory (DPM-Solver++, 8 steps)");
    svg_legend(f, 1, "#444", "teacher states the branches are trained to reach (rings)");
    if (sp->K == 1) {
        svg_legend(f, 2, branch_color[3], "student jump (the only branch), 2 jumps in all");
    } else {
        for (k = 0; k < sp->K; k++) {
            char text[128];
            snprintf(text, sizeof text, "branch %d: one DDIM jump to s_%d%s", (int)k, (int)k + 1,
                     k == sp->K - 1 ? " (sampling branch)" : "");
            svg_legend(f, 2 + (int)k, branch_color[k], text);
        }
    }
    fprintf(f, "<text x=\"10\" y=\"%.0f\">trajectory MSE to the teacher at 2 NFE: %.2e</text>\n",
            SVG_SIZE - 12, *err);
    svg_close(f);
    f = NULL;
done:
    if (f) fclose(f);
    bd_free(ctx, noise), bd_free(ctx, z), bd_free(ctx, traj), bd_free(ctx, out);
    bd_free(ctx, xh), bd_free(ctx, eh), bd_free(ctx, land), bd_free(ctx, tt);
    bd_sampler_free(tsmp);
    bd_distill_free(dist);
    bd_denoiser_free(student);
    return r;
}

static int usage(void) {
    fprintf(stderr, "usage: toy2d [--data moons|rings] [--out DIR] [--seed N] [--fast]\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *outdir = "toy2d_out";
    data_kind kind = DATA_MOONS;
    uint64_t seed = 1;
    int fast = 0, a;
    int64_t teacher_steps, student_steps, i, j;
    bd_context *ctx = NULL;
    bd_context_config cc = bd_context_config_init();
    bd_denoiser *teacher = NULL;
    bd_trainer *tr = NULL;
    bd_sampler *smp = NULL;
    bd_mlp_config mc = bd_mlp_config_init(D);
    bd_trainer_config tc = bd_trainer_config_init();
    bd_rng rng;
    bd_schedule sched;
    double grid[ODE_STEPS + 1], t0, t_teacher, err_sparse = 0, err_bdense = 0;
    double secs_sparse = 0, secs_bdense = 0, err_ddim2 = 0;
    float data[2000 * D], x[2000 * D], ref[2000 * D], traj[N_TRAJ * (ODE_STEPS + 1) * D];
    FILE *f;
    bd_result r = BD_SUCCESS;
    student_spec sparse = {"sparse", "student_sparse.svg",
                           "Sparse student (K = 1): trained on the end of each step only", 1,
                           BD_WEIGHTS_FINAL};
    student_spec bdense = {"B-DENSE", "student_bdense.svg",
                           "B-DENSE student (K = 4): every branch lands on a teacher state", 4,
                           BD_WEIGHTS_UNIFORM};

    for (a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--fast")) fast = 1;
        else if (!strcmp(argv[a], "--out") && a + 1 < argc) outdir = argv[++a];
        else if (!strcmp(argv[a], "--seed") && a + 1 < argc) seed = strtoull(argv[++a], NULL, 10);
        else if (!strcmp(argv[a], "--data") && a + 1 < argc) {
            a++;
            if (!strcmp(argv[a], "moons")) kind = DATA_MOONS;
            else if (!strcmp(argv[a], "rings")) kind = DATA_RINGS;
            else return usage();
        } else return usage();
    }
    teacher_steps = fast ? 300 : 3000;
    student_steps = fast ? 60 : 1000;

    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;
    make_dir(outdir); /* may exist already; svg_open reports real failures */
    rng = bd_rng_init(seed);

    /* 1. The teacher: an MLP trained with v-prediction on the cosine schedule. */
    mc.hidden = 128;
    mc.depth = 3;
    tc.adam.lr = 2e-3;
    tc.adam.lr_schedule = BD_LR_COSINE;
    tc.adam.total_steps = teacher_steps;
    tc.ema_decay = 0.995;
    tc.seed = seed;
    CHECK(bd_mlp_create(ctx, &mc, &rng, &teacher));
    CHECK(bd_trainer_init(ctx, teacher, &tc, 256, &tr));
    t0 = seconds();
    CHECK(bd_trainer_run(tr, teacher_steps, 256, data_batch, &kind, NULL, NULL));
    t_teacher = seconds() - t0;
    CHECK(bd_trainer_copy_ema(tr, teacher)); /* the EMA is what gets sampled */
    printf("teacher: MLP %lld params, %lld steps in %.1f s, last loss %.4f\n",
           (long long)teacher->n_params, (long long)teacher_steps, t_teacher, tr->last_loss);

    /* 2. The data, teacher samples and ODE trajectories. */
    CHECK(bd_schedule_init(&sched, BD_SCHEDULE_COSINE));
    CHECK(bd_time_grid(ctx, &sched, BD_GRID_UNIFORM_T, ODE_STEPS, grid));
    CHECK(bd_sampler_init(ctx, teacher, 2000, &smp));
    {
        bd_rng drng = bd_rng_init(seed + 100);
        for (i = 0; i < 2000; i++) data_point(kind, &drng, data + i * D);
    }
    bd_noise_fill(x, 2000 * D, seed + 3);
    CHECK(teacher_solve(smp, BD_SAMPLER_DPMPP_2M, grid, ODE_STEPS, x, 2000, NULL));
    f = svg_open(outdir, "data.svg", "Data (grey) and teacher samples (blue, DPM-Solver++ 48 steps)");
    if (!f) {
        r = BD_ERROR_IO;
        goto done;
    }
    for (i = 0; i < 1000; i++) svg_dot(f, data + i * D, 1.6, "#888", 0.5);
    for (i = 0; i < 600; i++) svg_dot(f, x + i * D, 1.6, "#1f5fbf", 0.7);
    svg_close(f);

    bd_noise_fill(x, N_TRAJ * D, seed + 2);
    CHECK(teacher_solve(smp, BD_SAMPLER_DPMPP_2M, grid, ODE_STEPS, x, N_TRAJ, traj));
    f = svg_open(outdir, "teacher_ode.svg",
                 "Teacher probability-flow ODE: noise (black) to data (blue)");
    if (!f) {
        r = BD_ERROR_IO;
        goto done;
    }
    for (i = 0; i < 400; i++) svg_dot(f, data + i * D, 1.4, "#bbb", 0.5);
    for (j = 0; j < N_TRAJ; j++) {
        const float *p = traj + j * (ODE_STEPS + 1) * D;
        svg_path(f, p, ODE_STEPS + 1, D, "#555", 1.2, 0.8);
        svg_dot(f, p, 2.5, "#000", 0.9);
        svg_dot(f, p + ODE_STEPS * D, 3.0, "#1f5fbf", 0.9);
    }
    svg_close(f);

    /* 3. The baseline without distillation: the teacher itself with 2 DDIM
       steps, against its own 8-step DPM-Solver++ solution on the same noise
       (bd_distill_eval measures the students the same way). */
    {
        double g8[9], g2[3];
        CHECK(bd_time_grid(ctx, &sched, BD_GRID_UNIFORM_T, 8, g8));
        CHECK(bd_time_grid(ctx, &sched, BD_GRID_UNIFORM_T, 2, g2));
        bd_noise_fill(ref, 2000 * D, seed + 4);
        memcpy(x, ref, sizeof x);
        CHECK(teacher_solve(smp, BD_SAMPLER_DPMPP_2M, g8, 8, ref, 2000, NULL));
        CHECK(teacher_solve(smp, BD_SAMPLER_DDIM, g2, 2, x, 2000, NULL));
        err_ddim2 = mse(x, ref, 2000 * D);
    }

    /* 4. Two students, 2 steps each. */
    printf("trajectory MSE to the teacher (DPM-Solver++ 8 steps) at 2 NFE, 2000 noises:\n");
    printf("  teacher, DDIM 2 steps (no distillation): %.2e\n", err_ddim2);
    printf("  student  after step:\n");
    CHECK(run_student(ctx, teacher, &sparse, student_steps, seed + 10, outdir, data,
                      &err_sparse, &secs_sparse));
    CHECK(run_student(ctx, teacher, &bdense, student_steps, seed + 10, outdir, data,
                      &err_bdense, &secs_bdense));

    printf("final: sparse %.2e, B-DENSE %.2e (teacher with DDIM 2 steps: %.2e)\n", err_sparse,
           err_bdense, err_ddim2);
    printf("pictures: %s/data.svg %s/teacher_ode.svg %s/student_sparse.svg %s/student_bdense.svg\n",
           outdir, outdir, outdir, outdir);
done:
    bd_sampler_free(smp);
    bd_trainer_free(tr);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
    return r == BD_SUCCESS ? 0 : 1;
}
