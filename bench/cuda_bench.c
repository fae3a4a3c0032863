/* cuda_bench.c - bdense on the CUDA backend, timed like
   bench/cuda_torch_ref.py times PyTorch (same model, same batch):
     train   one bd_trainer_step (model on the GPU) of the `small` UNet at batch B
             (host draws of t and eps, z_t, forward, v loss, backward, clip,
             AdamW, EMA; it ends synchronised)                 median ms
     sample  one network call at batch 1 (bd_denoiser_forward on device
             buffers, then a sync), the cost of one NFE          median ms
     ddim    a whole 50-step DDIM run at batch 1 through bd_sampler_run (model on the GPU)
             (upload noise, 50 NFE, download), per NFE           median ms
   Prints one JSON line.  Without a GPU: "no GPU, skipped", exit 0.
       cuda_bench [--batch 128] [--iters 30] [--calls 200] [--ddim 50] [--tf32] */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define FAIL(what)                                                                            \
    do {                                                                                      \
        fprintf(stderr, "cuda_bench: %s failed: %s\n", what, bd_context_message(ctx));       \
        return 1;                                                                             \
    } while (0)

int main(int argc, char **argv) {
    int64_t B = 128, iters = 30, warm = 5, calls = 200, ddim = 50, i;
    int tf32 = 0;
    char why[256];
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    bd_unet_config ucfg = bd_unet_config_init();
    bd_trainer_config tc = bd_trainer_config_init();
    bd_denoiser *net = NULL;
    bd_trainer *tr = NULL;
    bd_sampler *sm = NULL;
    bd_rng rng = bd_rng_init(1);
    float *x, *z1 = NULL, *t1 = NULL, *o1 = NULL, *xs;
    double *times, loss = 0.0, train_ms, sample_ms, ddim_ms;
    int64_t D, nfe = 0;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--calls") && i + 1 < argc) calls = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--ddim") && i + 1 < argc) ddim = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warm = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--tf32")) tf32 = 1;
        else {
            fprintf(stderr, "usage: cuda_bench [--batch B] [--iters N] [--calls N] [--ddim S] [--warmup N] [--tf32]\n");
            return 2;
        }
    }
    if (B < 1 || iters < 1 || calls < 1 || ddim < 1 || warm < 0) return 2;
    if (bd_cuda_probe(why, sizeof why) <= 0) {
        printf("no GPU, skipped (%s)\n", why);
        return 0;
    }
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;
    if (bd_cuda_init(ctx, 0) != BD_SUCCESS) FAIL("bd_cuda_init");
    if (tf32 && bd_cuda_set_tf32(ctx, 1) != BD_SUCCESS) FAIL("bd_cuda_set_tf32");
    if (bd_unet_init(ctx, &ucfg, &rng, &net) != BD_SUCCESS) FAIL("bd_unet_init");
    D = bd_denoiser_sample_size(net);
    tc.seed = 7;
    if (bd_trainer_init(ctx, net, &tc, B, &tr) != BD_SUCCESS) FAIL("bd_trainer_init");
    x = (float *)malloc((size_t)(B * D) * sizeof(float));
    xs = (float *)malloc((size_t)D * sizeof(float));
    times = (double *)malloc((size_t)(iters > calls ? (iters > 7 ? iters : 7) : (calls > 7 ? calls : 7)) * sizeof(double));
    if (!x || !xs || !times) return 1;
    bd_rng_uniform_fill(&rng, x, B * D, -1.0f, 1.0f);
    for (i = 0; i < warm + iters; i++) {
        double t0 = now_ms();
        if (bd_trainer_step(tr, x, B, &loss) != BD_SUCCESS) FAIL("bd_trainer_step");
        if (i >= warm) times[i - warm] = now_ms() - t0;
    }
    train_ms = median(times, (int)iters);
    /* batch-1 network calls */
    if (bd_backend_alloc(ctx, (size_t)D * sizeof(float), (void **)&z1) != BD_SUCCESS ||
        bd_backend_alloc(ctx, sizeof(float), (void **)&t1) != BD_SUCCESS ||
        bd_backend_alloc(ctx, (size_t)(D * net->branches) * sizeof(float), (void **)&o1) != BD_SUCCESS)
        FAIL("bd_backend_alloc");
    bd_rng_normal(&rng, xs, D);
    bd_backend_upload(ctx, z1, xs, (size_t)D * sizeof(float));
    BD_OP(ctx, vec_fill, t1, 0.5f, 1);
    for (i = 0; i < warm + calls; i++) {
        double t0 = now_ms();
        if (bd_denoiser_forward(net, o1, z1, t1, 1, 0) != BD_SUCCESS) FAIL("forward");
        if (bd_backend_sync(ctx) != BD_SUCCESS) FAIL("sync");
        if (i >= warm) times[i - warm] = now_ms() - t0;
    }
    sample_ms = median(times, (int)calls);
    /* whole DDIM runs at batch 1, per NFE */
    if (bd_sampler_init(ctx, net, 1, &sm) != BD_SUCCESS) FAIL("bd_sampler_init");
    for (i = 0; i < 7; i++) {
        bd_sampler_config sc = bd_sampler_config_init(BD_SAMPLER_DDIM, ddim);
        double t0;
        bd_noise_fill(xs, D, (uint64_t)i);
        t0 = now_ms();
        if (bd_sampler_run(sm, &sc, xs, 1, NULL, &nfe) != BD_SUCCESS) FAIL("bd_sampler_run");
        if (i >= 2) times[i - 2] = (now_ms() - t0) / (double)nfe;
    }
    ddim_ms = median(times, 5);
    printf("{\"train_ms\": %.4f, \"sample_ms\": %.4f, \"ddim_ms_per_nfe\": %.4f, \"params\": %lld, "
           "\"batch\": %lld, \"tf32\": %s, \"last_loss\": %.6f}\n",
           train_ms, sample_ms, ddim_ms, (long long)net->n_params, (long long)B, tf32 ? "true" : "false", loss);
    free(x); free(xs); free(times);
    bd_backend_free(ctx, z1); bd_backend_free(ctx, t1); bd_backend_free(ctx, o1);
    bd_sampler_free(sm);
    bd_trainer_free(tr);
    bd_denoiser_free(net);
    bd_context_free(ctx);
    return 0;
}
