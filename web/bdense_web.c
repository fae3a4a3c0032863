/* bdense_web.c - the browser demo's C side (web/index.html, docs/web.md).

   bdense.h compiled to WebAssembly with Emscripten (`make web`).  A page
   calls these functions to train the toy-2D teacher (an MLP on two moons
   or two rings, as examples/toy2d), distil two students from it by
   trajectory distillation (TD) - the sparse baseline (K = 1, weights
   "final") and a B-DENSE student (K branches, chosen weights) - and read
   back, as float arrays in the wasm heap, what to draw: the data, the
   teacher's ODE trajectories, the branch targets (the teacher's states on
   its sub-grid) and each student's jumps.

   All state is one static `web_state` (a page is one demo); every call
   returns a status or NaN and bdw_message() says what went wrong.  The
   functions do a bounded amount of work per call so the page can call
   them in small chunks per animation frame.  Single-threaded: no OpenMP,
   no pthreads.  Also builds natively (tests/web/native_smoke.c). */
#define BDENSE_IMPLEMENTATION
#include "../bdense.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#ifdef __EMSCRIPTEN__
#include <emscripten.h>
#define WEB_API EMSCRIPTEN_KEEPALIVE
#else
#define WEB_API
#endif

#define WD 2           /* data dimension */
#define N_DATA 1000    /* data points drawn */
#define N_TRAJ 24      /* teacher ODE trajectories drawn */
#define ODE_STEPS 32   /* teacher steps for those (DPM-Solver++) */
#define N_STUD 10      /* noises whose student jumps are drawn */
#define BATCH 128      /* teacher and student batch */
#define CACHE_N 1024   /* cached teacher trajectories for TD */
#define EVAL_N 512     /* noises for the trajectory error */
#define MAX_K 8
#define MAX_NFE 4

typedef struct web_student {
    bd_denoiser *student; /* trained (raw weights) */
    bd_denoiser *view;    /* EMA copy: what is drawn and evaluated */
    bd_distill *dist;
    int64_t K;
    bd_distill_weights weights;
    double mse;           /* last trajectory error at NFE */
    float *jumps;         /* (N, K, N_STUD, 6): z, landing, target */
} web_student;

typedef struct web_state {
    bd_context *ctx;
    int data_kind;        /* 0 moons, 1 rings */
    uint64_t seed;
    bd_rng data_rng;
    bd_denoiser *teacher, *teacher_ema;
    bd_trainer *tr;
    bd_sampler *smp;      /* teacher_ema, N_TRAJ rows */
    bd_schedule sched;
    int64_t teacher_steps, teacher_total;
    float data[N_DATA * WD];
    float batch[BATCH * WD];
    float noise[N_TRAJ * WD];
    float paths[N_TRAJ * (ODE_STEPS + 1) * WD];
    double grid[ODE_STEPS + 1];
    /* distillation */
    int64_t K, Kt, N, S, distill_total;
    web_student st[2];    /* 0 sparse, 1 B-DENSE */
    float *cache;         /* (CACHE_N, S+1, 2) teacher trajectories */
    float *gtraj;         /* (N_STUD, S+1, 2) teacher on its sub-grid, from noise */
    float *work;          /* scratch for bdw_jumps ((6 + MAX_K) * N_STUD * 2) */
    double ddim_mse;      /* teacher alone with N DDIM steps */
    char msg[600];
} web_state;

static web_state W;

/* ---- data (examples/toy2d) ---------------------------------------------- */
static void data_point(int kind, bd_rng *rng, float *x) {
    double u = bd_rng_uniform(rng), nx = bd_rng_normal1(rng), ny = bd_rng_normal1(rng);
    int which = bd_rng_uniform(rng) < 0.5;
    if (kind == 0) {
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

static int fail(const char *what, bd_result r) {
    snprintf(W.msg, sizeof W.msg, "%s: %s (%s)", what, bd_result_string(r),
             W.ctx ? bd_context_message(W.ctx) : "");
    return -1;
}
#define TRY(call)                                             \
    do {                                                      \
        bd_result r_ = (call);                                \
        if (r_ != BD_SUCCESS) return fail(#call, r_);         \
    } while (0)

static void free_students(void) {
    int i;
    for (i = 0; i < 2; i++) {
        web_student *s = &W.st[i];
        bd_distill_free(s->dist);
        bd_denoiser_free(s->student);
        bd_denoiser_free(s->view);
        if (W.ctx) bd_free(W.ctx, s->jumps);
        memset(s, 0, sizeof *s);
    }
    if (W.ctx) {
        bd_free(W.ctx, W.cache);
        bd_free(W.ctx, W.gtraj);
        bd_free(W.ctx, W.work);
    }
    W.cache = W.gtraj = W.work = NULL;
    W.K = W.Kt = W.N = W.S = 0;
}

static void free_all(void) {
    free_students();
    bd_sampler_free(W.smp);
    bd_trainer_free(W.tr);
    bd_denoiser_free(W.teacher);
    bd_denoiser_free(W.teacher_ema);
    bd_context_free(W.ctx);
    memset(&W, 0, sizeof W);
}

/* ---- API ----------------------------------------------------------------- */

/* Last error message ("" if none). */
WEB_API const char *bdw_message(void) { return W.msg; }

/* Start over: data set (0 moons, 1 rings), seed, the teacher's hidden
   width and its total training steps (the cosine learning-rate decay).
   0 on success, -1 (bdw_message). */
WEB_API int bdw_init(int data_kind, int seed, int hidden, int teacher_total) {
    bd_context_config cc = bd_context_config_init();
    bd_mlp_config mc = bd_mlp_config_init(WD);
    bd_trainer_config tc = bd_trainer_config_init();
    bd_rng rng, drng;
    int64_t i;
    free_all();
    if (data_kind < 0 || data_kind > 1 || hidden < 8 || hidden > 512 || teacher_total < 1) {
        snprintf(W.msg, sizeof W.msg, "bdw_init: bad arguments");
        return -1;
    }
    W.data_kind = data_kind;
    W.seed = (uint64_t)seed;
    W.teacher_total = teacher_total;
    TRY(bd_context_init(&cc, &W.ctx));
    rng = bd_rng_init(W.seed);
    mc.hidden = hidden;
    mc.depth = 3;
    tc.adam.lr = 2e-3;
    tc.adam.lr_schedule = BD_LR_COSINE;
    tc.adam.total_steps = teacher_total;
    tc.ema_decay = 0.995;
    tc.seed = W.seed;
    TRY(bd_mlp_create(W.ctx, &mc, &rng, &W.teacher));
    TRY(bd_mlp_create(W.ctx, &mc, &rng, &W.teacher_ema));
    TRY(bd_trainer_init(W.ctx, W.teacher, &tc, BATCH, &W.tr));
    TRY(bd_sampler_init(W.ctx, W.teacher_ema, N_TRAJ, &W.smp));
    TRY(bd_schedule_init(&W.sched, BD_SCHEDULE_COSINE));
    TRY(bd_time_grid(W.ctx, &W.sched, BD_GRID_UNIFORM_T, ODE_STEPS, W.grid));
    drng = bd_rng_init(W.seed + 100);
    for (i = 0; i < N_DATA; i++) data_point(data_kind, &drng, W.data + i * WD);
    W.data_rng = bd_rng_init(W.seed + 200);
    bd_noise_fill(W.noise, N_TRAJ * WD, W.seed + 2);
    W.msg[0] = 0;
    return 0;
}

/* n teacher steps (fresh batches of BATCH points); returns their mean loss,
   NaN on error. */
WEB_API double bdw_train(int n) {
    double sum = 0, loss = 0;
    int i;
    int64_t j;
    if (!W.tr || n < 1) return NAN;
    for (i = 0; i < n; i++) {
        bd_result r;
        for (j = 0; j < BATCH; j++) data_point(W.data_kind, &W.data_rng, W.batch + j * WD);
        r = bd_trainer_step(W.tr, W.batch, BATCH, &loss);
        if (r != BD_SUCCESS) {
            fail("bd_trainer_step", r);
            return NAN;
        }
        sum += loss;
        W.teacher_steps++;
    }
    return sum / n;
}

WEB_API int bdw_teacher_steps(void) { return (int)W.teacher_steps; }

/* Pointer to the data points (N_DATA, 2). */
WEB_API float *bdw_data(void) { return W.data; }

/* sampler callback: every state of every row into traj (n, steps+1, 2) */
typedef struct traj_rec {
    float *traj;
    int64_t steps;
} traj_rec;
static int record_state(void *user, int64_t step, double t, double s, const float *z,
                        const float *x_hat, int64_t n, int64_t dim, int64_t first) {
    traj_rec *rec = (traj_rec *)user;
    int64_t i;
    (void)t, (void)s, (void)x_hat;
    for (i = 0; i < n; i++)
        memcpy(rec->traj + ((first + i) * (rec->steps + 1) + step) * WD, z + i * dim,
               WD * sizeof(float));
    return 0;
}

/* Solve from x (n, 2) on `grid` (steps+1 times) with `kind`, recording every
   state into traj (n, steps+1, 2) (NULL: none); x becomes the samples. */
static bd_result solve(bd_sampler *smp, bd_sampler_kind kind, const double *grid, int64_t steps,
                       float *x, int64_t n, float *traj) {
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
        for (i = 0; i < n; i++)
            memcpy(traj + (i * (steps + 1) + steps) * WD, x + i * WD, WD * sizeof(float));
    return r;
}

/* The teacher's (EMA) probability-flow ODE from N_TRAJ fixed noises,
   DPM-Solver++(2M) with ODE_STEPS steps: returns a pointer to
   (N_TRAJ, ODE_STEPS+1, 2), NULL on error. */
WEB_API float *bdw_teacher_paths(void) {
    float x[N_TRAJ * WD];
    bd_result r;
    if (!W.tr) return NULL;
    if ((r = bd_trainer_copy_ema(W.tr, W.teacher_ema)) != BD_SUCCESS) {
        fail("bd_trainer_copy_ema", r);
        return NULL;
    }
    memcpy(x, W.noise, sizeof x);
    if ((r = solve(W.smp, BD_SAMPLER_DPMPP_2M, W.grid, ODE_STEPS, x, N_TRAJ, W.paths)) != BD_SUCCESS) {
        fail("teacher ODE", r);
        return NULL;
    }
    return W.paths;
}

/* Freeze the teacher (its EMA) and set up two students with NFE = nfe
   student steps: sparse (K = 1, weights final) and B-DENSE (K branches,
   `weights` a bd_distill_weights).  The teacher takes Kt = K sub-steps
   per student step (Kt = 4 when K = 1), so both students see the same
   teacher states.  distill_total: steps planned (cosine lr decay, anneal
   over the first half).  Solves CACHE_N teacher trajectories once, shared
   by both distillers.  0 or -1. */
WEB_API int bdw_distill_init(int K, int weights, int nfe, int distill_total) {
    bd_rng rng;
    bd_sampler *tsm = NULL;
    float *ref = NULL, *x = NULL;
    int i;
    int64_t j, S;
    bd_result r = BD_SUCCESS;
    if (!W.tr) {
        snprintf(W.msg, sizeof W.msg, "bdw_distill_init: call bdw_init first");
        return -1;
    }
    free_students();
    if (K < 1 || K > MAX_K || nfe < 1 || nfe > MAX_NFE || distill_total < 1 || weights < 0 ||
        weights > (int)BD_WEIGHTS_ADAPTIVE) {
        snprintf(W.msg, sizeof W.msg, "bdw_distill_init: bad arguments");
        return -1;
    }
    TRY(bd_trainer_copy_ema(W.tr, W.teacher_ema));
    W.K = K;
    W.Kt = K == 1 ? 4 : K;
    W.N = nfe;
    W.S = S = W.N * W.Kt;
    W.distill_total = distill_total;
    rng = bd_rng_init(W.seed + 10);
    for (i = 0; i < 2; i++) {
        web_student *s = &W.st[i];
        bd_distill_config dc = bd_distill_config_init(BD_DISTILL_TD, i == 0 ? 1 : K, nfe);
        s->K = i == 0 ? 1 : K;
        s->weights = i == 0 ? BD_WEIGHTS_FINAL : (bd_distill_weights)weights;
        s->mse = NAN;
        dc.weights = s->weights;
        dc.teacher_substeps = W.Kt;
        /* the page draws the teacher's cached states as the branch targets:
           read them from the trajectory (the library's default since
           2026-12-06 solves the dense targets from the student's own state,
           docs/distillation.md) */
        dc.dense_targets = BD_DENSE_FROM_TRAJECTORY;
        dc.anneal_steps = distill_total / 2 > 0 ? distill_total / 2 : 1;
        dc.adam.lr = 2e-3;
        dc.adam.lr_schedule = BD_LR_COSINE;
        dc.adam.total_steps = distill_total;
        dc.ema_decay = 0.995;
        dc.seed = W.seed + 10;
        TRY(bd_distill_student_from_teacher(W.teacher_ema, s->K, &rng, &s->student));
        TRY(bd_distill_student_from_teacher(W.teacher_ema, s->K, &rng, &s->view));
        TRY(bd_distill_init(W.ctx, &dc, W.teacher_ema, s->student, BATCH, &s->dist));
        TRY(bd_denoiser_reserve(s->view, N_STUD));
        s->jumps = (float *)bd_alloc_array(W.ctx, (size_t)(W.N * s->K * N_STUD * 6), sizeof(float));
        if (!s->jumps) return fail("bdw_distill_init", BD_ERROR_OUT_OF_MEMORY);
    }
    W.cache = (float *)bd_alloc_array(W.ctx, (size_t)(CACHE_N * (S + 1) * WD), sizeof(float));
    W.gtraj = (float *)bd_alloc_array(W.ctx, (size_t)(N_STUD * (S + 1) * WD), sizeof(float));
    W.work = (float *)bd_alloc_array(W.ctx, (size_t)((6 + MAX_K) * N_STUD * WD), sizeof(float));
    if (!W.cache || !W.gtraj || !W.work) return fail("bdw_distill_init", BD_ERROR_OUT_OF_MEMORY);
    /* the teacher's trajectories: a cache both distillers draw from ... */
    {
        bd_rng crng = bd_rng_init(W.seed + 11);
        TRY(bd_distill_teacher_trajectories(W.st[0].dist, W.cache, CACHE_N, &crng));
    }
    TRY(bd_distill_set_trajectories(W.st[0].dist, W.cache, CACHE_N));
    TRY(bd_distill_set_trajectories(W.st[1].dist, W.cache, CACHE_N));
    /* ... the drawn ones: N_STUD fixed noises on the same sub-grid, and the
       baseline: the teacher alone with N DDIM steps against its own
       solution on the sub-grid (what bd_distill_eval measures) */
    ref = (float *)bd_alloc_array(W.ctx, EVAL_N * WD, sizeof(float));
    x = (float *)bd_alloc_array(W.ctx, EVAL_N * WD, sizeof(float));
    r = ref && x ? BD_SUCCESS : BD_ERROR_OUT_OF_MEMORY;
    if (r == BD_SUCCESS) r = bd_sampler_init(W.ctx, W.teacher_ema, EVAL_N, &tsm);
    if (r == BD_SUCCESS) {
        bd_distill *d = W.st[0].dist;
        double s2 = 0;
        bd_noise_fill(x, N_STUD * WD, W.seed + 2);
        r = solve(tsm, d->config.teacher_solver, d->tgrid, S, x, N_STUD, W.gtraj);
        bd_noise_fill(ref, EVAL_N * WD, W.seed + 1);
        memcpy(x, ref, sizeof(float) * EVAL_N * WD);
        if (r == BD_SUCCESS) r = solve(tsm, d->config.teacher_solver, d->tgrid, S, ref, EVAL_N, NULL);
        if (r == BD_SUCCESS) r = solve(tsm, BD_SAMPLER_DDIM, d->grid, W.N, x, EVAL_N, NULL);
        for (j = 0; r == BD_SUCCESS && j < EVAL_N * WD; j++)
            s2 += ((double)x[j] - ref[j]) * ((double)x[j] - ref[j]);
        W.ddim_mse = s2 / (EVAL_N * WD);
    }
    bd_free(W.ctx, ref);
    bd_free(W.ctx, x);
    bd_sampler_free(tsm);
    if (r != BD_SUCCESS) return fail("teacher baseline", r);
    W.msg[0] = 0;
    return 0;
}

static web_student *student_at(int which) {
    if (which < 0 || which > 1 || !W.st[which].dist) {
        snprintf(W.msg, sizeof W.msg, "no student %d (call bdw_distill_init)", which);
        return NULL;
    }
    return &W.st[which];
}

/* n distillation steps of student `which` (0 sparse, 1 B-DENSE), each on
   BATCH cached teacher trajectories; returns their mean loss, NaN on
   error. */
WEB_API double bdw_distill(int which, int n) {
    web_student *s = student_at(which);
    double sum = 0, loss = 0;
    int i;
    if (!s || n < 1) return NAN;
    for (i = 0; i < n; i++) {
        bd_result r = bd_distill_step(s->dist, NULL, BATCH, &loss, NULL);
        if (r != BD_SUCCESS) {
            fail("bd_distill_step", r);
            return NAN;
        }
        sum += loss;
    }
    return sum / n;
}

/* Steps taken by student `which` (-1 if none). */
WEB_API int bdw_distill_steps(int which) {
    web_student *s = student_at(which);
    return s ? (int)s->dist->step : -1;
}

/* Branch weight w_k of student `which`'s last step. */
WEB_API double bdw_weight(int which, int k) {
    web_student *s = student_at(which);
    if (!s || k < 0 || k >= s->K) return NAN;
    return s->dist->weights[k];
}

/* Trajectory error at NFE (EMA student, DDIM on its grid, final branch)
   against the teacher's solution on the sub-grid, EVAL_N fixed noises
   (bd_distill_eval).  NaN on error. */
WEB_API double bdw_eval(int which) {
    web_student *s = student_at(which);
    bd_result r;
    if (!s) return NAN;
    r = bd_distill_eval(s->dist, EVAL_N, W.seed + 1, 1, &s->mse, NULL, NULL);
    if (r != BD_SUCCESS) {
        fail("bd_distill_eval", r);
        return NAN;
    }
    return s->mse;
}

/* The teacher alone with NFE DDIM steps, measured like bdw_eval. */
WEB_API double bdw_ddim_mse(void) { return W.ddim_mse; }

/* The teacher's trajectories on the distillation sub-grid from the N_STUD
   drawn noises: (N_STUD, S+1, 2); state i*Kt + k*Kt/K is branch k-1's
   target in student step i. */
WEB_API float *bdw_gtraj(void) { return W.gtraj; }

/* Student `which`'s jumps (EMA weights) from the N_STUD drawn noises:
   (N, K, N_STUD, 6) floats, per student step i and branch k:
   the start z_t (2), where one DDIM jump with branch k's x_hat lands at
   s_{k+1} (2), and the teacher state there it is trained to reach (2).
   The student walks on with the final branch's landing.  NULL on error. */
WEB_API float *bdw_jumps(int which) {
    web_student *s = student_at(which);
    bd_distill *d;
    float *out, *xh, *eh, *land, *z, *tt;
    int64_t i, j, k, K;
    bd_result r;
    if (!s) return NULL;
    d = s->dist;
    K = s->K;
    out = W.work;                       /* N_STUD * K * 2 */
    xh = out + MAX_K * N_STUD * WD;     /* N_STUD * 2 each */
    eh = xh + N_STUD * WD;
    land = eh + N_STUD * WD;
    z = land + N_STUD * WD;
    tt = z + N_STUD * WD;               /* N_STUD */
    if ((r = bd_distill_copy_ema(d, s->view)) != BD_SUCCESS) {
        fail("bd_distill_copy_ema", r);
        return NULL;
    }
    for (j = 0; j < N_STUD; j++) memcpy(z + j * WD, W.gtraj + j * (W.S + 1) * WD, WD * sizeof(float));
    for (i = 0; i < W.N; i++) {
        for (j = 0; j < N_STUD; j++) tt[j] = (float)d->grid[i];
        for (k = 0; k < K; k++) {
            int64_t sub = i * W.Kt + (k + 1) * (W.Kt / K);
            double as, ss, av[N_STUD], sv[N_STUD];
            bd_schedule_alpha_sigma(&d->sched, d->tgrid[sub], &as, &ss);
            for (j = 0; j < N_STUD; j++) av[j] = as, sv[j] = ss;
            r = bd_model_predict(s->view, &d->sched, d->config.param, k, out, xh, eh, z, tt, N_STUD);
            if (r != BD_SUCCESS) {
                fail("bd_model_predict", r);
                return NULL;
            }
            bd_ddim_jump(land, xh, eh, av, sv, N_STUD, WD);
            for (j = 0; j < N_STUD; j++) {
                float *e = s->jumps + ((i * K + k) * N_STUD + j) * 6;
                const float *target = W.gtraj + (j * (W.S + 1) + sub) * WD;
                e[0] = z[j * WD], e[1] = z[j * WD + 1];
                e[2] = land[j * WD], e[3] = land[j * WD + 1];
                e[4] = target[0], e[5] = target[1];
            }
        }
        memcpy(z, land, sizeof(float) * N_STUD * WD); /* the final branch's landing */
    }
    return s->jumps;
}

/* Sizes the page needs: 0 N (student steps), 1 K (B-DENSE branches),
   2 Kt, 3 S = N*Kt, 4 N_STUD, 5 N_TRAJ, 6 ODE_STEPS, 7 N_DATA, 8 BATCH. */
WEB_API int bdw_info(int what) {
    switch (what) {
    case 0: return (int)W.N;
    case 1: return (int)W.K;
    case 2: return (int)W.Kt;
    case 3: return (int)W.S;
    case 4: return N_STUD;
    case 5: return N_TRAJ;
    case 6: return ODE_STEPS;
    case 7: return N_DATA;
    case 8: return BATCH;
    default: return -1;
    }
}

/* Free everything (a page may call bdw_init again instead). */
WEB_API void bdw_free(void) { free_all(); }
