/* test_faults.c - faults from outside: allocation failure, non-finite
   numbers, concurrency, resuming from a file.

   - Allocation failure at every allocation point of a whole session
     (context, MLP, trainer, steps, training loop, student creation,
     samplers of every kind, analytic denoiser, safetensors and .npy round
     trips): an allocator that fails on the N-th call (and, second sweep,
     on every call from the N-th on), N swept over all of them.  Each run
     must return BD_ERROR_OUT_OF_MEMORY with a message, leave no allocation
     live and no temporary file behind; with N past the end it succeeds.
   - NaN/Inf guard through the public API: a non-finite loss or gradient
     returns BD_ERROR_NONFINITE and leaves weights, EMA, Adam moments and
     step bit-identical; bd_trainer_run stops or skips per the config.
   - Two models trained (and sampled) in two threads give bit-identical
     results to the same work done one after the other, also with two
     compute threads per context in the threaded run (also built with
     ThreadSanitizer by .ci/run).
   - Exact resume through a file: N steps, save weights, EMA, Adam moments,
     step and both RNG states to safetensors, load into a fresh trainer,
     M more steps == N+M uninterrupted steps, bit for bit.
   POSIX (pthreads, dirent). */
#define _POSIX_C_SOURCE 200809L
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int quick(void) { return getenv("TEST_QUICK") != NULL; }

/* ---- a failing allocator ------------------------------------------------ */
typedef struct fail_alloc {
    long calls, fail_at, live;
    int from_on; /* 0: only call fail_at fails; 1: every call from fail_at on */
    long failures;
} fail_alloc;

static void *fa_alloc(size_t n, void *ud) {
    fail_alloc *a = (fail_alloc *)ud;
    void *p;
    a->calls++;
    if (a->fail_at > 0 && (a->calls == a->fail_at || (a->from_on && a->calls > a->fail_at))) {
        a->failures++;
        return NULL;
    }
    p = malloc(n);
    if (p) a->live++;
    return p;
}
static void fa_free(void *p, void *ud) {
    fail_alloc *a = (fail_alloc *)ud;
    if (p) { a->live--; free(p); }
}

typedef struct logcap {
    int calls;
    bd_result last;
    char msg[512];
} logcap;
static void log_cap(void *ud, bd_result code, const char *m) {
    logcap *l = (logcap *)ud;
    l->calls++;
    l->last = code;
    snprintf(l->msg, sizeof l->msg, "%s", m);
}

#define SD 4 /* data dimension */
static bd_result ring_data(void *ud, float *x, int64_t n, bd_rng *rng) {
    int64_t i, j;
    (void)ud;
    for (i = 0; i < n; i++) {
        double a = 2.0 * BD__PI * bd_rng_uniform(rng);
        for (j = 0; j < SD; j++) x[i * SD + j] = (float)(j % 2 ? sin(a + j) : cos(a + j));
    }
    return BD_SUCCESS;
}

static char g_dir[128];

static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}
static void dir_clean(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    if (!d) return;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            remove(p);
        }
    closedir(d);
}

/* tiny UNet (C=1, 8x8, ch 8, m=(1,2), attention at level 1, G=2) */
static bd_unet_config tiny_unet(void) {
    bd_unet_config c = bd_unet_config_init();
    c.in_ch = 1; c.image_size = 8; c.ch = 8; c.levels = 2;
    c.ch_mult[0] = 1; c.ch_mult[1] = 2; c.ch_mult[2] = 0;
    c.nres = 1;
    c.attn[0] = 0; c.attn[1] = 1; c.attn[2] = 0;
    c.groups = 2; c.heads = 1; c.branches = 1;
    return c;
}

/* Second half of the session: a UNet model trained a step, saved with its
   optimiser state, loaded, resumed, sampled, then trained and sampled by
   again (a second trainer and sampler); an MLP student distilled with
   PD and TD for a step each, its state saved and loaded back. */
static bd_result session_model(bd_context *ctx, bd_rng *rng) {
    bd_unet_config uc = tiny_unet();
    bd_model *m = NULL, *l = NULL;
    bd_trainer *tr = NULL, *tr2 = NULL;
    bd_sampler *s = NULL;
    bd_denoiser *teacher = NULL, *student = NULL;
    bd_distill *dist = NULL;
    bd_trainer_config tc = bd_trainer_config_init();
    bd_mlp_config mc = bd_mlp_config_init(SD);
    bd_sampler_config sc = bd_sampler_config_init(BD_SAMPLER_DPMPP_2M, 2);
    float x[2 * 64], xd[3 * SD];
    char path[256], dpath[256];
    int k;
    bd_result r;
    snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
    snprintf(dpath, sizeof dpath, "%s/distill.safetensors", g_dir);
    if ((r = bd_model_init_unet(ctx, &uc, BD_PARAM_V, BD_SCHEDULE_COSINE, rng, &m)) != BD_SUCCESS) goto done;
    if ((r = bd_trainer_init(ctx, m->net, &tc, 2, &tr)) != BD_SUCCESS) goto done;
    if ((r = bd_builtin_shapes(ctx, x, 2, 8, 3)) != BD_SUCCESS) goto done;
    if ((r = bd_trainer_step(tr, x, 2, NULL)) != BD_SUCCESS) goto done;
    if ((r = bd_model_save(ctx, m, path, tr)) != BD_SUCCESS) goto done;
    if ((r = bd_model_load(ctx, path, &l)) != BD_SUCCESS) goto done;
    if ((r = bd_trainer_init(ctx, l->net, &tc, 2, &tr2)) != BD_SUCCESS) goto done;
    if ((r = bd_model_resume(ctx, path, l, tr2)) != BD_SUCCESS) goto done;
    if ((r = bd_sampler_init(ctx, l->net, 2, &s)) != BD_SUCCESS) goto done;
    bd_noise_fill(x, 2 * 64, 4);
    if ((r = bd_sampler_run(s, &sc, x, 2, NULL, NULL)) != BD_SUCCESS) goto done;
    mc.hidden = 8; mc.depth = 1; mc.temb_dim = 4;
    if ((r = bd_mlp_create(ctx, &mc, rng, &teacher)) != BD_SUCCESS) goto done;
    for (k = 0; k < 2; k++) {
        bd_distill_config dc = bd_distill_config_init(k ? BD_DISTILL_TD : BD_DISTILL_PD, 2, 2);
        if ((r = bd_distill_student_from_teacher(teacher, 2, rng, &student)) != BD_SUCCESS) goto done;
        if ((r = bd_distill_init(ctx, &dc, teacher, student, 3, &dist)) != BD_SUCCESS) goto done;
        ring_data(NULL, xd, 3, rng);
        if ((r = bd_distill_step(dist, k ? NULL : xd, 3, NULL, NULL)) != BD_SUCCESS) goto done;
        if ((r = bd_distill_save_state(dist, dpath)) != BD_SUCCESS) goto done;
        if ((r = bd_distill_load_state(dist, dpath)) != BD_SUCCESS) goto done;
        bd_distill_free(dist);
        dist = NULL;
        bd_denoiser_free(student);
        student = NULL;
    }
done:
    bd_distill_free(dist);
    bd_denoiser_free(student);
    bd_denoiser_free(teacher);
    bd_sampler_free(s);
    bd_trainer_free(tr2);
    bd_model_free(l);
    bd_trainer_free(tr);
    bd_model_free(m);
    return r;
}

/* The whole session; every object is released before returning. */
static bd_result session(fail_alloc *fa, logcap *lc, int *ctx_made) {
    bd_context_config cc = bd_context_config_init();
    bd_context *ctx = NULL;
    bd_denoiser *m = NULL, *student = NULL, *ana = NULL;
    bd_trainer *tr = NULL;
    bd_sampler *s = NULL, *sa = NULL;
    bd_safetensors *st = NULL, *st2 = NULL;
    bd_npy npy;
    bd_tensor tens;
    bd_mlp_config mc = bd_mlp_config_init(SD);
    bd_trainer_config tc = bd_trainer_config_init();
    bd_rng rng = bd_rng_init(11);
    bd_st_write_tensor wt[2];
    void *mem = NULL;
    size_t mem_n = 0;
    float x[4 * SD], xs[5 * SD], pts[3 * SD];
    double loss;
    char path[256], npath[256];
    int64_t shape[2] = {5, SD};
    int k;
    bd_result r;
    memset(&npy, 0, sizeof npy);
    memset(&tens, 0, sizeof tens);
    *ctx_made = 0;
    cc.allocator.alloc = fa_alloc;
    cc.allocator.free = fa_free;
    cc.allocator.user_data = fa;
    cc.log = log_cap;
    cc.log_user_data = lc;
    if ((r = bd_context_init(&cc, &ctx)) != BD_SUCCESS) return r;
    *ctx_made = 1;
    mc.hidden = 8; mc.depth = 2; mc.temb_dim = 4; mc.branches = 1;
    if ((r = bd_mlp_create(ctx, &mc, &rng, &m)) != BD_SUCCESS) goto done;
    tc.seed = 5;
    if ((r = bd_trainer_init(ctx, m, &tc, 4, &tr)) != BD_SUCCESS) goto done;
    ring_data(NULL, x, 4, &rng);
    if ((r = bd_trainer_step(tr, x, 4, &loss)) != BD_SUCCESS) goto done;
    if ((r = bd_trainer_step(tr, x, 3, &loss)) != BD_SUCCESS) goto done;
    if ((r = bd_trainer_run(tr, 2, 4, ring_data, NULL, NULL, NULL)) != BD_SUCCESS) goto done;
    if ((r = bd_denoiser_create_like(m, 3, &rng, &student)) != BD_SUCCESS) goto done;
    if ((r = bd_denoiser_copy_weights(student, m)) != BD_SUCCESS) goto done;
    if ((r = bd_sampler_init(ctx, student, 2, &s)) != BD_SUCCESS) goto done;
    for (k = 0; k <= BD_SAMPLER_DPMPP_2M; k++) {
        bd_sampler_config sc = bd_sampler_config_init((bd_sampler_kind)k, 3);
        if (k == BD_SAMPLER_DDIM) sc.eta = 0.5;
        bd_noise_fill(xs, 5 * SD, (uint64_t)k);
        if ((r = bd_sampler_run(s, &sc, xs, 5, &rng, NULL)) != BD_SUCCESS) goto done;
    }
    ring_data(NULL, pts, 3, &rng);
    {
        bd_analytic_config ac = bd_analytic_config_init(SD, pts, 3, 0.05);
        bd_sampler_config sc = bd_sampler_config_init(BD_SAMPLER_HEUN, 3);
        if ((r = bd_analytic_create(ctx, &ac, &ana)) != BD_SUCCESS) goto done;
        if ((r = bd_sampler_init(ctx, ana, 5, &sa)) != BD_SUCCESS) goto done;
        bd_noise_fill(xs, 5 * SD, 9);
        if ((r = bd_sampler_run(sa, &sc, xs, 5, NULL, NULL)) != BD_SUCCESS) goto done;
    }
    memset(wt, 0, sizeof wt);
    wt[0].name = "params"; wt[0].data = m->params; wt[0].ndim = 1; wt[0].shape[0] = m->n_params;
    wt[1].name = "ema"; wt[1].data = tr->ema; wt[1].ndim = 1; wt[1].shape[0] = m->n_params;
    {
        bd_st_kv kv;
        kv.key = "step"; kv.value = "4";
        if ((r = bd_safetensors_write_memory(ctx, wt, 2, &kv, 1, &mem, &mem_n)) != BD_SUCCESS) goto done;
        if ((r = bd_safetensors_load_memory(ctx, mem, mem_n, &st)) != BD_SUCCESS) goto done;
        snprintf(path, sizeof path, "%s/ck.safetensors", g_dir);
        if ((r = bd_safetensors_write(ctx, path, wt, 2, &kv, 1)) != BD_SUCCESS) goto done;
        if ((r = bd_safetensors_load(ctx, path, &st2)) != BD_SUCCESS) goto done;
    }
    snprintf(npath, sizeof npath, "%s/x.npy", g_dir);
    if ((r = bd_npy_write(ctx, npath, xs, 2, shape)) != BD_SUCCESS) goto done;
    if ((r = bd_npy_read(ctx, npath, &npy)) != BD_SUCCESS) goto done;
    if ((r = bd_tensor_init(ctx, &tens, 2, 1, 3, 3)) != BD_SUCCESS) goto done;
    if ((r = session_model(ctx, &rng)) != BD_SUCCESS) goto done;
    r = BD_SUCCESS;
done:
    bd_tensor_free(ctx, &tens);
    bd_npy_free(ctx, &npy);
    bd_safetensors_free(st2);
    bd_safetensors_free(st);
    bd_free(ctx, mem);
    bd_sampler_free(sa);
    bd_denoiser_free(ana);
    bd_sampler_free(s);
    bd_denoiser_free(student);
    bd_trainer_free(tr);
    bd_denoiser_free(m);
    bd_context_free(ctx);
    return r;
}

static void sweep(int from_on) {
    fail_alloc fa;
    logcap lc;
    long total, n, bad = 0, step;
    int made;
    bd_result r;
    memset(&fa, 0, sizeof fa);
    memset(&lc, 0, sizeof lc);
    dir_clean(g_dir);
    r = session(&fa, &lc, &made);
    BDT_CHECKF(r == BD_SUCCESS && fa.live == 0, "clean session: %s, %ld live (%s)", bd_result_string(r), fa.live, lc.msg);
    total = fa.calls;
    step = quick() ? 7 : 1;
    for (n = 1; n <= total + 1; n += (n < total ? step : 1)) {
        dir_clean(g_dir);
        memset(&fa, 0, sizeof fa);
        memset(&lc, 0, sizeof lc);
        fa.fail_at = n;
        fa.from_on = from_on;
        r = session(&fa, &lc, &made);
        if (n <= total) {
            int ok = r == BD_ERROR_OUT_OF_MEMORY && fa.failures >= 1 && lc.calls >= 1 &&
                     lc.last == BD_ERROR_OUT_OF_MEMORY && lc.msg[0];
            if (!ok) {
                bad++;
                BDT_CHECKF(ok, "fail at %ld/%ld (from_on %d): %s, %d log calls, last '%s'", n, total, from_on,
                           bd_result_string(r), lc.calls, lc.msg);
            }
        } else {
            BDT_CHECKF(r == BD_SUCCESS && fa.failures == 0, "fail at %ld (past the end): %s", n, bd_result_string(r));
        }
        if (fa.live != 0) {
            bad++;
            BDT_CHECKF(fa.live == 0, "fail at %ld/%ld (from_on %d): %ld allocations leaked", n, total, from_on, fa.live);
        }
        {
            /* a failed write leaves no temporary behind: at most the two
               four finished files of the session exist */
            int e = dir_entries(g_dir);
            if (e > 4) {
                bad++;
                BDT_CHECKF(e <= 4, "fail at %ld: %d files left in %s (temporary not removed?)", n, e, g_dir);
            }
        }
    }
    printf("  %s: %ld allocation points, %ld bad runs\n", from_on ? "fail from N on" : "fail N-th only", total, bad);
}
static void test_alloc_fail_nth(void) { sweep(0); }
static void test_alloc_fail_from_n(void) { sweep(1); }

/* ---- NaN / Inf guard ------------------------------------------------------ */
typedef struct snap {
    float *p, *ema, *m, *v;
    int64_t step, n;
} snap;
static void snap_take(snap *s, const bd_trainer *tr) {
    size_t b = (size_t)tr->model->n_params * sizeof(float);
    s->n = tr->model->n_params;
    s->p = (float *)malloc(b); s->ema = (float *)malloc(b); s->m = (float *)malloc(b); s->v = (float *)malloc(b);
    memcpy(s->p, tr->model->params, b);
    memcpy(s->ema, tr->ema, b);
    memcpy(s->m, tr->adam.m, b);
    memcpy(s->v, tr->adam.v, b);
    s->step = tr->adam.step;
}
static int snap_same(const snap *s, const bd_trainer *tr) {
    size_t b = (size_t)s->n * sizeof(float);
    return memcmp(s->p, tr->model->params, b) == 0 && memcmp(s->ema, tr->ema, b) == 0 &&
           memcmp(s->m, tr->adam.m, b) == 0 && memcmp(s->v, tr->adam.v, b) == 0 && s->step == tr->adam.step;
}
static void snap_free(snap *s) { free(s->p); free(s->ema); free(s->m); free(s->v); }

typedef struct trio {
    bd_context *ctx;
    bd_denoiser *m;
    bd_trainer *tr;
    logcap lc;
} trio;
static int trio_init(trio *T, uint64_t seed, int skip) {
    bd_context_config cc = bd_context_config_init();
    bd_mlp_config mc = bd_mlp_config_init(SD);
    bd_trainer_config tc = bd_trainer_config_init();
    bd_rng rng = bd_rng_init(seed);
    memset(T, 0, sizeof *T);
    cc.log = log_cap;
    cc.log_user_data = &T->lc;
    if (bd_context_init(&cc, &T->ctx) != BD_SUCCESS) return 0;
    mc.hidden = 16; mc.depth = 2; mc.temb_dim = 8;
    if (bd_mlp_create(T->ctx, &mc, &rng, &T->m) != BD_SUCCESS) return 0;
    tc.seed = seed;
    tc.skip_nonfinite = skip;
    tc.adam.lr = 1e-2;
    return bd_trainer_init(T->ctx, T->m, &tc, 8, &T->tr) == BD_SUCCESS;
}
static void trio_free(trio *T) {
    bd_trainer_free(T->tr);
    bd_denoiser_free(T->m);
    bd_context_free(T->ctx);
}

/* ring data, but every `every`-th batch (1-based) is poisoned */
typedef struct poison {
    int calls, every;
    float value;
} poison;
static bd_result poisoned_data(void *ud, float *x, int64_t n, bd_rng *rng) {
    poison *p = (poison *)ud;
    ring_data(NULL, x, n, rng);
    p->calls++;
    if (p->every > 0 && p->calls % p->every == 0) x[n * SD / 2] = p->value;
    return BD_SUCCESS;
}

static void test_nonfinite_step(void) {
    static const float bads[3] = {NAN, INFINITY, -INFINITY};
    trio T;
    snap s;
    float x[8 * SD];
    double loss = 0.0;
    int i;
    bd_rng rng = bd_rng_init(3);
    if (!trio_init(&T, 21, 0)) { BDT_CHECK(0); return; }
    ring_data(NULL, x, 8, &rng);
    BDT_CHECK(bd_trainer_step(T.tr, x, 8, &loss) == BD_SUCCESS); /* moments non-zero */
    for (i = 0; i < 3; i++) {
        bd_result r;
        ring_data(NULL, x, 8, &rng);
        x[5] = bads[i];
        snap_take(&s, T.tr);
        r = bd_trainer_step(T.tr, x, 8, &loss);
        BDT_CHECKF(r == BD_ERROR_NONFINITE, "input %g: %s", (double)bads[i], bd_result_string(r));
        BDT_CHECKF(snap_same(&s, T.tr), "input %g changed the state", (double)bads[i]);
        BDT_CHECK(T.lc.last == BD_ERROR_NONFINITE && strstr(T.lc.msg, "non-finite") != NULL);
        snap_free(&s);
    }
    /* a weight that overflows the forward pass: loss or gradient non-finite */
    {
        const bd_param_tensor *w = bd_denoiser_find_tensor(T.m, "layers.1.weight");
        float keep;
        bd_result r;
        BDT_CHECK(w != NULL);
        if (w) {
            keep = T.m->params[w->offset];
            T.m->params[w->offset] = 3e38f;
            ring_data(NULL, x, 8, &rng);
            for (i = 0; i < 8 * SD; i++) x[i] *= 1e30f;
            snap_take(&s, T.tr);
            r = bd_trainer_step(T.tr, x, 8, &loss);
            BDT_CHECKF(r == BD_ERROR_NONFINITE, "overflowing weight: %s (loss %g)", bd_result_string(r), loss);
            BDT_CHECKF(snap_same(&s, T.tr), "overflowing weight changed the state");
            snap_free(&s);
            T.m->params[w->offset] = keep;
        }
    }
    /* and the trainer is fine afterwards */
    ring_data(NULL, x, 8, &rng);
    BDT_CHECK(bd_trainer_step(T.tr, x, 8, &loss) == BD_SUCCESS && isfinite(loss));
    BDT_CHECK(T.tr->adam.step == 2);
    trio_free(&T);
}

static void test_nonfinite_run_stop_and_skip(void) {
    trio A, R;
    poison p;
    bd_result r;
    int64_t i;
    /* stop: the third batch is bad -> NONFINITE, state == after 2 good steps */
    if (!trio_init(&A, 33, 0) || !trio_init(&R, 33, 0)) { BDT_CHECK(0); return; }
    p.calls = 0; p.every = 3; p.value = NAN;
    r = bd_trainer_run(A.tr, 9, 8, poisoned_data, &p, NULL, NULL);
    BDT_CHECKF(r == BD_ERROR_NONFINITE && A.tr->adam.step == 2, "stop mode: %s after %lld steps",
               bd_result_string(r), (long long)A.tr->adam.step);
    BDT_CHECK(bd_trainer_run(R.tr, 2, 8, ring_data, NULL, NULL, NULL) == BD_SUCCESS);
    BDT_CHECK(memcmp(A.m->params, R.m->params, (size_t)A.m->n_params * sizeof(float)) == 0);
    BDT_CHECK(memcmp(A.tr->ema, R.tr->ema, (size_t)A.m->n_params * sizeof(float)) == 0);
    trio_free(&A);
    trio_free(&R);
    /* skip: 3 of 9 batches bad -> success, 6 steps taken, 3 skipped */
    if (!trio_init(&A, 34, 1)) { BDT_CHECK(0); return; }
    p.calls = 0; p.every = 3; p.value = INFINITY;
    r = bd_trainer_run(A.tr, 9, 8, poisoned_data, &p, NULL, NULL);
    BDT_CHECKF(r == BD_SUCCESS && A.tr->adam.step == 6 && A.tr->skipped == 3, "skip mode: %s, %lld steps, %lld skipped",
               bd_result_string(r), (long long)A.tr->adam.step, (long long)A.tr->skipped);
    for (i = 0; i < A.m->n_params; i++)
        if (!isfinite(A.m->params[i]) || !isfinite(A.tr->ema[i])) break;
    BDT_CHECK(i == A.m->n_params);
    trio_free(&A);
}

static void test_nonfinite_sampler(void) {
    trio T;
    bd_sampler *s = NULL;
    bd_sampler_config c = bd_sampler_config_init(BD_SAMPLER_DPMPP_2M, 4);
    float x[3 * SD];
    bd_result r;
    if (!trio_init(&T, 5, 0)) { BDT_CHECK(0); return; }
    BDT_CHECK(bd_sampler_init(T.ctx, T.m, 3, &s) == BD_SUCCESS);
    T.m->params[bd_denoiser_find_tensor(T.m, "out.bias")->offset] = NAN;
    bd_noise_fill(x, 3 * SD, 1);
    r = bd_sampler_run(s, &c, x, 3, NULL, NULL);
    BDT_CHECKF(r == BD_ERROR_NONFINITE && T.lc.last == r, "NaN weight while sampling: %s", bd_result_string(r));
    bd_sampler_free(s);
    trio_free(&T);
}

/* ---- two threads == one after the other ---------------------------------- */
typedef struct job {
    int n_threads; /* context threads (OpenMP team inside library calls) */
    uint64_t seed;
    int64_t dim, hidden, steps;
    float *params, *ema, *samples; /* results (malloc) */
    int64_t n_params;
    bd_result r;
} job;

static bd_result job_data(void *ud, float *x, int64_t n, bd_rng *rng) {
    const job *J = (const job *)ud;
    int64_t i, j;
    for (i = 0; i < n; i++) {
        double a = 2.0 * BD__PI * bd_rng_uniform(rng);
        for (j = 0; j < J->dim; j++) x[i * J->dim + j] = (float)cos(a + 0.7 * (double)j);
    }
    return BD_SUCCESS;
}

static void *job_run(void *arg) {
    job *J = (job *)arg;
    bd_context_config cc = bd_context_config_init();
    bd_context *ctx = NULL;
    bd_denoiser *m = NULL;
    bd_trainer *tr = NULL;
    bd_sampler *s = NULL;
    bd_mlp_config mc = bd_mlp_config_init(J->dim);
    bd_trainer_config tc = bd_trainer_config_init();
    bd_sampler_config sc = bd_sampler_config_init(BD_SAMPLER_DDPM, 6);
    bd_rng rng = bd_rng_init(J->seed);
    bd_result r;
    cc.n_threads = J->n_threads > 0 ? J->n_threads : 1;
    if ((r = bd_context_init(&cc, &ctx)) != BD_SUCCESS) { J->r = r; return NULL; }
    mc.hidden = J->hidden; mc.depth = 2; mc.temb_dim = 8;
    tc.seed = J->seed;
    tc.adam.lr = 5e-3;
    if ((r = bd_mlp_create(ctx, &mc, &rng, &m)) != BD_SUCCESS) goto done;
    if ((r = bd_trainer_init(ctx, m, &tc, 16, &tr)) != BD_SUCCESS) goto done;
    if ((r = bd_trainer_run(tr, J->steps, 16, job_data, J, NULL, NULL)) != BD_SUCCESS) goto done;
    if ((r = bd_trainer_copy_ema(tr, m)) != BD_SUCCESS) goto done;
    if ((r = bd_sampler_init(ctx, m, 8, &s)) != BD_SUCCESS) goto done;
    J->n_params = m->n_params;
    J->params = (float *)malloc((size_t)m->n_params * sizeof(float));
    J->ema = (float *)malloc((size_t)m->n_params * sizeof(float));
    J->samples = (float *)malloc((size_t)(20 * J->dim) * sizeof(float));
    memcpy(J->params, tr->model->params, (size_t)m->n_params * sizeof(float));
    memcpy(J->ema, tr->ema, (size_t)m->n_params * sizeof(float));
    bd_noise_fill(J->samples, 20 * J->dim, J->seed + 1);
    r = bd_sampler_run(s, &sc, J->samples, 20, &rng, NULL);
done:
    J->r = r;
    bd_sampler_free(s);
    bd_trainer_free(tr);
    bd_denoiser_free(m);
    bd_context_free(ctx);
    return NULL;
}

static void job_free(job *J) { free(J->params); free(J->ema); free(J->samples); }

static void test_two_threads(void) {
    job seq[2], par[2];
    pthread_t th[2];
    int i, rounds = quick() ? 2 : 4, round;
    int64_t steps = quick() ? 20 : 60;
    for (round = 0; round < rounds; round++) {
        memset(seq, 0, sizeof seq);
        seq[0].seed = 100 + (uint64_t)round; seq[0].dim = 4; seq[0].hidden = 32; seq[0].steps = steps;
        seq[1].seed = 200 + (uint64_t)round; seq[1].dim = 6; seq[1].hidden = 24; seq[1].steps = steps;
        if (round == 2) seq[1] = seq[0]; /* the very same work in both threads */
        par[0] = seq[0];
        par[1] = seq[1];
        /* last round: the threaded jobs use 2 compute threads each (OpenMP
           teams inside two host threads); results must not depend on it */
        if (round == rounds - 1) par[0].n_threads = par[1].n_threads = 2;
        job_run(&seq[0]);
        job_run(&seq[1]);
        for (i = 0; i < 2; i++) BDT_CHECK(pthread_create(&th[i], NULL, job_run, &par[i]) == 0);
        for (i = 0; i < 2; i++) pthread_join(th[i], NULL);
        for (i = 0; i < 2; i++) {
            int same = seq[i].r == BD_SUCCESS && par[i].r == BD_SUCCESS && seq[i].n_params == par[i].n_params &&
                       memcmp(seq[i].params, par[i].params, (size_t)seq[i].n_params * sizeof(float)) == 0 &&
                       memcmp(seq[i].ema, par[i].ema, (size_t)seq[i].n_params * sizeof(float)) == 0 &&
                       memcmp(seq[i].samples, par[i].samples, (size_t)(20 * seq[i].dim) * sizeof(float)) == 0;
            BDT_CHECKF(same, "round %d job %d: threaded result differs from sequential (%s / %s)", round, i,
                       bd_result_string(seq[i].r), bd_result_string(par[i].r));
            job_free(&seq[i]);
            job_free(&par[i]);
        }
    }
}

/* ---- exact resume through a safetensors file ------------------------------ */
static void rng_meta(char *buf, size_t cap, const bd_rng *r) {
    uint64_t spare_bits;
    memcpy(&spare_bits, &r->spare, sizeof spare_bits);
    snprintf(buf, cap, "%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64 ",%d,%016" PRIx64, r->s[0], r->s[1],
             r->s[2], r->s[3], r->has_spare, spare_bits);
}
static int rng_parse(const char *s, bd_rng *r) {
    unsigned long long a[5];
    int hs;
    if (!s || sscanf(s, "%llx,%llx,%llx,%llx,%d,%llx", &a[0], &a[1], &a[2], &a[3], &hs, &a[4]) != 6) return 0;
    r->s[0] = a[0]; r->s[1] = a[1]; r->s[2] = a[2]; r->s[3] = a[3];
    r->has_spare = hs;
    {
        uint64_t bits = a[4];
        memcpy(&r->spare, &bits, sizeof bits);
    }
    return 1;
}

static bd_result save_trainer(bd_trainer *tr, const char *path) {
    bd_st_write_tensor t[4];
    bd_st_kv kv[3];
    char step[32], r1[160], r2[160];
    int i;
    memset(t, 0, sizeof t);
    t[0].name = "params"; t[0].data = tr->model->params;
    t[1].name = "ema"; t[1].data = tr->ema;
    t[2].name = "optim.m"; t[2].data = tr->adam.m;
    t[3].name = "optim.v"; t[3].data = tr->adam.v;
    for (i = 0; i < 4; i++) { t[i].ndim = 1; t[i].shape[0] = tr->model->n_params; }
    snprintf(step, sizeof step, "%lld", (long long)tr->adam.step);
    rng_meta(r1, sizeof r1, &tr->rng);
    rng_meta(r2, sizeof r2, &tr->data_rng);
    kv[0].key = "optim.step"; kv[0].value = step;
    kv[1].key = "rng"; kv[1].value = r1;
    kv[2].key = "data_rng"; kv[2].value = r2;
    return bd_safetensors_write(tr->ctx, path, t, 4, kv, 3);
}
static bd_result load_trainer(bd_trainer *tr, const char *path) {
    bd_safetensors *st;
    const char *names[4] = {"params", "ema", "optim.m", "optim.v"};
    float *dst[4];
    bd_result r = bd_safetensors_load(tr->ctx, path, &st);
    int i;
    if (r != BD_SUCCESS) return r;
    dst[0] = tr->model->params; dst[1] = tr->ema; dst[2] = tr->adam.m; dst[3] = tr->adam.v;
    for (i = 0; i < 4; i++) {
        const bd_st_tensor *t = bd_safetensors_find(st, names[i]);
        if (!t || t->numel != tr->model->n_params) { bd_safetensors_free(st); return BD_ERROR_SHAPE; }
        memcpy(dst[i], t->data, (size_t)t->numel * sizeof(float));
    }
    if (!bd_safetensors_meta(st, "optim.step") || !rng_parse(bd_safetensors_meta(st, "rng"), &tr->rng) ||
        !rng_parse(bd_safetensors_meta(st, "data_rng"), &tr->data_rng)) {
        bd_safetensors_free(st);
        return BD_ERROR_FORMAT;
    }
    tr->adam.step = strtoll(bd_safetensors_meta(st, "optim.step"), NULL, 10);
    bd_safetensors_free(st);
    return BD_SUCCESS;
}

static void test_exact_resume_through_file(void) {
    trio full, a, b;
    char path[256];
    const int64_t N = 7, M = 5;
    size_t bytes;
    snprintf(path, sizeof path, "%s/resume.safetensors", g_dir);
    if (!trio_init(&full, 77, 0) || !trio_init(&a, 77, 0) || !trio_init(&b, 999, 0)) { BDT_CHECK(0); return; }
    bytes = (size_t)full.m->n_params * sizeof(float);
    BDT_CHECK(bd_trainer_run(full.tr, N + M, 8, ring_data, NULL, NULL, NULL) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_run(a.tr, N, 8, ring_data, NULL, NULL, NULL) == BD_SUCCESS);
    BDT_CHECK(save_trainer(a.tr, path) == BD_SUCCESS);
    /* b started from another seed: everything must come from the file */
    BDT_CHECK(load_trainer(b.tr, path) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_run(b.tr, M, 8, ring_data, NULL, NULL, NULL) == BD_SUCCESS);
    BDT_CHECKF(memcmp(full.m->params, b.m->params, bytes) == 0, "weights differ after resume");
    BDT_CHECKF(memcmp(full.tr->ema, b.tr->ema, bytes) == 0, "EMA differs after resume");
    BDT_CHECKF(memcmp(full.tr->adam.m, b.tr->adam.m, bytes) == 0 && memcmp(full.tr->adam.v, b.tr->adam.v, bytes) == 0,
               "Adam moments differ after resume");
    BDT_CHECK(full.tr->adam.step == b.tr->adam.step && b.tr->adam.step == N + M);
    /* a file missing its RNG state is refused, not half-applied */
    {
        bd_st_write_tensor t;
        memset(&t, 0, sizeof t);
        t.name = "params"; t.data = a.m->params; t.ndim = 1; t.shape[0] = a.m->n_params;
        BDT_CHECK(bd_safetensors_write(a.ctx, path, &t, 1, NULL, 0) == BD_SUCCESS);
        BDT_CHECK(load_trainer(b.tr, path) == BD_ERROR_SHAPE);
    }
    remove(path);
    trio_free(&full);
    trio_free(&a);
    trio_free(&b);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "build/faults_%ld", (long)getpid());
    mkdir("build", 0777);
    if (mkdir(g_dir, 0777) != 0) { printf("cannot create %s\n", g_dir); return 1; }
    BDT_RUN(test_alloc_fail_nth);
    BDT_RUN(test_alloc_fail_from_n);
    BDT_RUN(test_nonfinite_step);
    BDT_RUN(test_nonfinite_run_stop_and_skip);
    BDT_RUN(test_nonfinite_sampler);
    BDT_RUN(test_two_threads);
    BDT_RUN(test_exact_resume_through_file);
    (void)bdt_close_ratio;
    dir_clean(g_dir);
    rmdir(g_dir);
    return BDT_SUMMARY("test_faults");
}
