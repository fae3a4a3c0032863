/* sprites - bdense embedded the way a game or a tool would use it.

   Load a distilled few-step student once, then generate a batch of images
   per call: seeded (the same seed gives the same sprites, on every
   machine), with no allocation per call (checked here with a counting
   allocator), and timed.  The shipped student (student.safetensors, 41k
   parameters, 2 steps, 2 branches) was distilled from a teacher trained on
   the built-in 16x16 shapes; make_student.sh recreates it.

   Build and run (from the repository root):
       make examples
       build/examples/sprites/sprites
   Options: --ckpt FILE (a student; default examples/sprites/student.safetensors),
            --batch N (16), --calls N (10), --seed S (1), --out PNG (sprites.png),
            --threads N (1).
   Embedding it in your program is the sprite_gen struct below: init once,
   sprite_gen_batch() per frame/request, free at exit. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#define BDENSE_IMPLEMENTATION
#include "bdense.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the part to copy into a game ------------------------------------- */
typedef struct sprite_gen {
    bd_context *ctx;
    bd_model *model;      /* the student: network + param + schedule + grid */
    bd_sampler *sampler;  /* every buffer reserved for `batch` */
    bd_sampler_config cfg;
    float *images;        /* (batch, C, H, W) in [-1, 1]: the last batch */
    int64_t batch, c, h, w;
} sprite_gen;

/* Everything that allocates happens here, once. */
static bd_result sprite_gen_init(sprite_gen *g, bd_context *ctx, const char *path,
                                 int64_t batch) {
    bd_result r;
    memset(g, 0, sizeof *g);
    g->ctx = ctx;
    g->batch = batch;
    if ((r = bd_model_load(ctx, path, &g->model)) != BD_SUCCESS) return r;
    if (g->model->steps < 1)
        return bd_error(ctx, BD_ERROR_CONFIG, "%s is a teacher, not a distilled student", path);
    g->c = g->model->net->in_ch, g->h = g->model->net->height, g->w = g->model->net->width;
    /* A student samples with DDIM on its own grid, reading its last branch. */
    g->cfg = bd_sampler_config_init(BD_SAMPLER_DDIM, g->model->steps);
    g->cfg.custom_grid = g->model->grid;
    g->cfg.param = g->model->param;
    g->cfg.schedule = g->model->schedule;
    g->cfg.branch = -1;
    g->cfg.clip_x = 1;
    if ((r = bd_sampler_init(ctx, g->model->net, batch, &g->sampler)) != BD_SUCCESS) return r;
    g->images = (float *)bd_alloc_array(ctx, (size_t)(batch * g->c * g->h * g->w), sizeof(float));
    return g->images ? BD_SUCCESS : ctx->last_result;
}

/* One batch of sprites from a seed into g->images.  Allocates nothing. */
static bd_result sprite_gen_batch(sprite_gen *g, uint64_t seed) {
    bd_noise_fill(g->images, g->batch * g->c * g->h * g->w, seed);
    return bd_sampler_run(g->sampler, &g->cfg, g->images, g->batch, NULL, NULL);
}

static void sprite_gen_free(sprite_gen *g) {
    bd_free(g->ctx, g->images);
    bd_sampler_free(g->sampler);
    bd_model_free(g->model);
}

/* ---- the demo around it ------------------------------------------------ */
typedef struct {
    long allocs;
} alloc_count;
static void *count_alloc(size_t n, void *user) {
    ((alloc_count *)user)->allocs++;
    return malloc(n);
}
static void count_free(void *p, void *user) {
    (void)user;
    free(p);
}

static double now_ms(void) {
#ifdef CLOCK_MONOTONIC
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
#else
    return 1e3 * (double)clock() / CLOCKS_PER_SEC;
#endif
}

int main(int argc, char **argv) {
    const char *ckpt = "examples/sprites/student.safetensors", *out = "sprites.png";
    int64_t batch = 16, calls = 10, i;
    uint64_t seed = 1;
    int threads = 1, a;
    alloc_count counter = {0};
    bd_context_config cc = bd_context_config_init();
    bd_context *ctx;
    sprite_gen gen;
    bd_result r;
    double t0, ms, best = 1e30, total = 0;
    long allocs_before;

    for (a = 1; a < argc; a++) {
        if (a + 1 >= argc) goto usage;
        if (!strcmp(argv[a], "--ckpt")) ckpt = argv[++a];
        else if (!strcmp(argv[a], "--out")) out = argv[++a];
        else if (!strcmp(argv[a], "--batch")) batch = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--calls")) calls = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--seed")) seed = strtoull(argv[++a], NULL, 10);
        else if (!strcmp(argv[a], "--threads")) threads = atoi(argv[++a]);
        else goto usage;
    }
    if (batch < 1 || calls < 1 || threads < 1) goto usage;

    cc.allocator.alloc = count_alloc;
    cc.allocator.free = count_free;
    cc.allocator.user_data = &counter;
    cc.n_threads = threads;
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;

    t0 = now_ms();
    if ((r = sprite_gen_init(&gen, ctx, ckpt, batch)) != BD_SUCCESS) {
        fprintf(stderr, "sprites: %s (%s)\n", bd_context_message(ctx), bd_result_string(r));
        sprite_gen_free(&gen);
        bd_context_free(ctx);
        return 1;
    }
    printf("loaded %s: %lld parameters, %lldx%lldx%lld images, %lld steps (NFE), %lld branches "
           "(%.1f ms)\n",
           ckpt, (long long)gen.model->net->n_params, (long long)gen.c, (long long)gen.h,
           (long long)gen.w, (long long)gen.model->steps, (long long)gen.model->net->branches,
           now_ms() - t0);

    allocs_before = counter.allocs;
    for (i = 0; i < calls; i++) {
        t0 = now_ms();
        if ((r = sprite_gen_batch(&gen, seed + (uint64_t)i)) != BD_SUCCESS) {
            fprintf(stderr, "sprites: %s\n", bd_context_message(ctx));
            break;
        }
        ms = now_ms() - t0;
        total += ms;
        if (ms < best) best = ms;
    }
    if (r == BD_SUCCESS) {
        printf("%lld calls x %lld sprites: %.2f ms per call (best %.2f), %.3f ms per sprite\n",
               (long long)calls, (long long)batch, total / calls, best, total / calls / batch);
        printf("allocations during the calls: %ld\n", counter.allocs - allocs_before);
        if (counter.allocs != allocs_before) r = BD_ERROR_STATE;
    }
    /* the batch of the last seed, as a picture */
    if (r == BD_SUCCESS &&
        (r = bd_png_write_grid(ctx, out, gen.images, batch, gen.c, gen.h, gen.w, 0, 2)) ==
            BD_SUCCESS)
        printf("wrote %s (seed %llu)\n", out, (unsigned long long)(seed + (uint64_t)calls - 1));
    else if (r != BD_SUCCESS && r != BD_ERROR_STATE)
        fprintf(stderr, "sprites: %s\n", bd_context_message(ctx));
    sprite_gen_free(&gen);
    bd_context_free(ctx);
    return r == BD_SUCCESS ? 0 : 1;
usage:
    fprintf(stderr, "usage: sprites [--ckpt FILE] [--batch N] [--calls N] [--seed S] [--out PNG] "
                    "[--threads N]\n");
    return 2;
}
