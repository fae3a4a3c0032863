/* test_noalloc.c - no heap allocation inside a training, distillation or
   sampling step after the first.  Every allocation bdense makes goes
   through the context allocator; a counting allocator records them, and the
   count must not move across the second and later steps (the first one may
   reserve).  A UNet of the docs/spec.md sec. 6 layout, small enough for ASan. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"
#include <stdlib.h>

static long g_allocs = 0, g_frees = 0;
static void *count_alloc(size_t n, void *ud) { (void)ud; g_allocs++; return malloc(n); }
static void count_free(void *p, void *ud) {
    (void)ud;
    if (p) g_frees++;
    free(p);
}

static bd_context *new_ctx(int threads) {
    bd_context *ctx = NULL;
    bd_context_config cc = bd_context_config_init();
    cc.allocator.alloc = count_alloc;
    cc.allocator.free = count_free;
    cc.n_threads = threads;
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return NULL;
    return ctx;
}

/* 8x8, ch 8, m = (1, 2), attention at level 1 and in the middle, G 2, 2 heads */
static bd_unet_config tiny_cfg(void) {
    bd_unet_config c = bd_unet_config_init();
    c.image_size = 8;
    c.ch = 8;
    c.levels = 2;
    c.ch_mult[0] = 1;
    c.ch_mult[1] = 2;
    c.attn[0] = 0;
    c.attn[1] = 1;
    c.attn[2] = 0;
    c.groups = 2;
    c.heads = 2;
    return c;
}

static void fill_data(float *x, int64_t n, bd_rng *r) { bd_rng_uniform_fill(r, x, n, -1.0f, 1.0f); }

static void run_threads(int threads) {
    enum { B = 4 };
    bd_context *ctx = new_ctx(threads);
    bd_unet_config cfg = tiny_cfg();
    bd_denoiser *net = NULL, *student = NULL;
    bd_trainer *tr = NULL;
    bd_trainer_config tc = bd_trainer_config_init();
    bd_sampler *sm = NULL;
    bd_sampler_config sc;
    bd_distill *pd = NULL, *td = NULL;
    bd_distill_config pc, dc;
    bd_rng rng = bd_rng_init(7);
    float x[B * 64], out[B * 2 * 64], t[B] = {0.2f, 0.5f, 0.7f, 0.95f};
    float *traj = NULL;
    double loss;
    long before;
    int i;
    BDT_CHECK(ctx != NULL);
    if (!ctx) return;
    BDT_CHECK(bd_unet_init(ctx, &cfg, &rng, &net) == BD_SUCCESS);
    fill_data(x, B * 64, &rng);

    /* teacher training */
    BDT_CHECK(bd_trainer_init(ctx, net, &tc, B, &tr) == BD_SUCCESS);
    BDT_CHECK(bd_trainer_step(tr, x, B, &loss) == BD_SUCCESS);
    before = g_allocs;
    for (i = 0; i < 3; i++) BDT_CHECK(bd_trainer_step(tr, x, B - (i & 1), &loss) == BD_SUCCESS);
    BDT_CHECKF(g_allocs == before, "trainer: %ld allocations in steps 2..4 (%d threads)",
               g_allocs - before, threads);

    /* sampling: network calls and a whole sampler run */
    BDT_CHECK(bd_denoiser_forward(net, out, x, t, B, 0) == BD_SUCCESS);
    BDT_CHECK(bd_sampler_init(ctx, net, B, &sm) == BD_SUCCESS);
    sc = bd_sampler_config_init(BD_SAMPLER_DPMPP_2M, 4);
    BDT_CHECK(bd_sampler_run(sm, &sc, x, B, &rng, NULL) == BD_SUCCESS);
    before = g_allocs;
    BDT_CHECK(bd_denoiser_forward(net, out, x, t, 1, 0) == BD_SUCCESS);
    BDT_CHECK(bd_denoiser_forward(net, out, x, t, B, 0) == BD_SUCCESS);
    {
        /* the same call again gives the same numbers */
        float out2[B * 64];
        double ma;
        BDT_CHECK(bd_denoiser_forward(net, out2, x, t, B, 0) == BD_SUCCESS);
        BDT_CHECK(bdt_close_ratio(out2, out, B * 64, 1e-30, 0.0, &ma) == 0.0);
    }
    BDT_CHECK(bd_sampler_run(sm, &sc, x, B, &rng, NULL) == BD_SUCCESS);
    sc = bd_sampler_config_init(BD_SAMPLER_DDIM, 3);
    BDT_CHECK(bd_sampler_run(sm, &sc, x, 2, &rng, NULL) == BD_SUCCESS);
    BDT_CHECKF(g_allocs == before, "sampling: %ld allocations (%d threads)", g_allocs - before,
               threads);

    /* B-DENSE distillation, K = 2: PD online, TD on cached trajectories */
    BDT_CHECK(bd_distill_student_from_teacher(net, 2, &rng, &student) == BD_SUCCESS);
    pc = bd_distill_config_init(BD_DISTILL_PD, 2, 4);
    BDT_CHECK(bd_distill_init(ctx, &pc, net, student, B, &pd) == BD_SUCCESS);
    if (pd) {
        BDT_CHECK(bd_distill_step(pd, x, B, &loss, NULL) == BD_SUCCESS);
        before = g_allocs;
        for (i = 0; i < 3; i++) BDT_CHECK(bd_distill_step(pd, x, B, &loss, NULL) == BD_SUCCESS);
        BDT_CHECKF(g_allocs == before, "PD step: %ld allocations (%d threads)", g_allocs - before,
                   threads);
    }
    dc = bd_distill_config_init(BD_DISTILL_TD, 2, 2);
    BDT_CHECK(bd_distill_init(ctx, &dc, net, student, B, &td) == BD_SUCCESS);
    if (td) {
        traj = (float *)malloc((size_t)(B * (td->S + 1) * 64) * sizeof(float));
        BDT_CHECK(bd_distill_teacher_trajectories(td, traj, B, &rng) == BD_SUCCESS);
        BDT_CHECK(bd_distill_set_trajectories(td, traj, B) == BD_SUCCESS);
        BDT_CHECK(bd_distill_step(td, NULL, B, &loss, NULL) == BD_SUCCESS);
        before = g_allocs;
        for (i = 0; i < 3; i++) BDT_CHECK(bd_distill_step(td, NULL, B, &loss, NULL) == BD_SUCCESS);
        BDT_CHECKF(g_allocs == before, "TD step (cached): %ld allocations (%d threads)",
                   g_allocs - before, threads);
        /* on the fly (no cache): the teacher solve happens inside the step */
        bd_distill_set_trajectories(td, NULL, 0);
        BDT_CHECK(bd_distill_step(td, NULL, B, &loss, NULL) == BD_SUCCESS);
        before = g_allocs;
        BDT_CHECK(bd_distill_step(td, NULL, B, &loss, NULL) == BD_SUCCESS);
        BDT_CHECKF(g_allocs == before, "TD step (on the fly): %ld allocations (%d threads)",
                   g_allocs - before, threads);
    }
    printf("  %d thread(s): %ld allocations in all (all during set-up), %ld frees\n", threads,
           g_allocs, g_frees);
    bd_distill_free(td);
    bd_distill_free(pd);
    bd_denoiser_free(student);
    bd_sampler_free(sm);
    bd_trainer_free(tr);
    bd_denoiser_free(net);
    bd_context_free(ctx);
    free(traj);
}

static void test_no_alloc_1_thread(void) { run_threads(1); }
static void test_no_alloc_2_threads(void) { run_threads(2); }
static void test_everything_freed(void) {
    BDT_CHECKF(g_allocs == g_frees, "%ld allocations, %ld frees", g_allocs, g_frees);
}

int main(void) {
    BDT_RUN(test_no_alloc_1_thread);
    BDT_RUN(test_no_alloc_2_threads);
    BDT_RUN(test_everything_freed);
    return BDT_SUMMARY("test_noalloc");
}
