/* tutorial - train -> distill -> sample, all from C (docs/tutorial.md, part 3).

   1. Train a small UNet teacher on the built-in 16x16 shapes and save it.
   2. Distill it (trajectory distillation, B-DENSE with K = 2 branches) into
      a 2-step student and save the student with its grid.
   3. Load the student back, as an application would, and sample 16 images
      in 2 network calls; write them as a PNG grid.

   Build: make examples     Run: build/examples/tutorial [--fast] [--out DIR]
   (DIR must exist; default out/tutorial.)  --fast is a smoke run. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"

#include <stdio.h>
#include <string.h>

#define SIZE 16
#define BATCH 32

/* bd_data_fn: a batch of shapes.  Sample i of the built-in set depends only
   on (seed, i), so drawing the indices from the trainer's data rng makes
   the data order part of the (resumable) training state. */
static bd_result shapes_batch(void *user, float *x, int64_t n, bd_rng *rng) {
    int64_t first = (int64_t)(bd_rng_u64(rng) % 1000000000u);
    return bd_builtin_shapes_ex((bd_context *)user, x, NULL, first, n, SIZE, 7);
}

#define CHECK(call)                                                                        \
    do {                                                                                   \
        if ((r = (call)) != BD_SUCCESS) {                                                  \
            fprintf(stderr, "tutorial: %s: %s\n", #call, bd_context_message(ctx));          \
            goto done;                                                                     \
        }                                                                                  \
    } while (0)

int main(int argc, char **argv) {
    const char *dir = "out/tutorial";
    int fast = 0, a;
    int64_t train_steps, distill_steps, i;
    char path_t[512], path_s[512], path_png[512];
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    bd_rng rng = bd_rng_init(1);
    bd_model *teacher = NULL, *student = NULL, *loaded = NULL;
    bd_denoiser *student_net = NULL;
    bd_trainer *tr = NULL;
    bd_distill *dist = NULL;
    bd_sampler *smp = NULL;
    bd_result r = BD_SUCCESS;
    double loss, mse;
    static float images[16 * SIZE * SIZE];

    for (a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--fast")) fast = 1;
        else if (!strcmp(argv[a], "--out") && a + 1 < argc) dir = argv[++a];
        else {
            fprintf(stderr, "usage: tutorial [--fast] [--out DIR]\n");
            return 2;
        }
    }
    train_steps = fast ? 20 : 1500;
    distill_steps = fast ? 10 : 300;
    snprintf(path_t, sizeof path_t, "%s/c_teacher.safetensors", dir);
    snprintf(path_s, sizeof path_s, "%s/c_student.safetensors", dir);
    snprintf(path_png, sizeof path_png, "%s/c_student.png", dir);
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;

    /* 1. The teacher: a 16x16 UNet (two levels, attention in the middle). */
    {
        bd_unet_config uc = bd_unet_config_init();
        bd_trainer_config tc = bd_trainer_config_init(); /* v, cosine, AdamW, EMA */
        uc.image_size = SIZE;
        uc.ch = 16;
        uc.levels = 2;
        uc.ch_mult[0] = 1, uc.ch_mult[1] = 2;
        uc.attn[0] = uc.attn[1] = uc.attn[2] = 0; /* the middle block always has attention */
        uc.groups = 4;
        tc.adam.lr = 1e-3;
        tc.adam.warmup_steps = 100;
        tc.ema_decay = 0.995;
        CHECK(bd_model_init_unet(ctx, &uc, BD_PARAM_V, BD_SCHEDULE_COSINE, &rng, &teacher));
        CHECK(bd_trainer_init(ctx, teacher->net, &tc, BATCH, &tr));
        CHECK(bd_trainer_run(tr, train_steps, BATCH, shapes_batch, ctx, NULL, NULL));
        printf("teacher: %lld parameters, %lld steps, loss %.4f\n",
               (long long)teacher->net->n_params, (long long)train_steps, tr->last_loss);
        CHECK(bd_model_save(ctx, teacher, path_t, tr)); /* EMA weights + resume state */
        CHECK(bd_trainer_copy_ema(tr, teacher->net));   /* distill the EMA weights */
    }

    /* 2. The student: K = 2 branches, 2 steps, trajectory distillation. */
    {
        bd_distill_config dc = bd_distill_config_init(BD_DISTILL_TD, 2, 2);
        dc.adam.lr = 2e-4;
        dc.ema_decay = 0.99;
        dc.seed = 3;
        CHECK(bd_distill_student_from_teacher(teacher->net, 2, &rng, &student_net));
        CHECK(bd_distill_init(ctx, &dc, teacher->net, student_net, BATCH, &dist));
        for (i = 0; i < distill_steps; i++) CHECK(bd_distill_step(dist, NULL, BATCH, &loss, NULL));
        CHECK(bd_distill_eval(dist, 64, 4, 1, &mse, NULL, NULL));
        printf("student: %lld steps, trajectory MSE to the teacher at 2 NFE %.4f\n",
               (long long)distill_steps, mse);
        CHECK(bd_distill_copy_ema(dist, student_net));
        /* a bd_model owns its network and knows its grid: that is the file */
        CHECK(bd_model_init(ctx, student_net, dc.param, dc.schedule, &student));
        student_net = NULL; /* owned by `student` now */
        CHECK(bd_model_set_grid(student, dist->grid, dist->N));
        CHECK(bd_model_save(ctx, student, path_s, NULL));
    }

    /* 3. An application: load the student, sample with DDIM on its grid. */
    {
        bd_sampler_config sc;
        int64_t nfe;
        CHECK(bd_model_load(ctx, path_s, &loaded));
        sc = bd_sampler_config_init(BD_SAMPLER_DDIM, loaded->steps);
        sc.custom_grid = loaded->grid;
        sc.param = loaded->param;
        sc.schedule = loaded->schedule;
        sc.clip_x = 1;
        CHECK(bd_sampler_init(ctx, loaded->net, 16, &smp));
        bd_noise_fill(images, 16 * SIZE * SIZE, 5);
        CHECK(bd_sampler_run(smp, &sc, images, 16, NULL, &nfe));
        CHECK(bd_png_write_grid(ctx, path_png, images, 16, 1, SIZE, SIZE, 4, 2));
        printf("sampled 16 images with %lld NFE: %s\n", (long long)nfe, path_png);
    }
done:
    bd_sampler_free(smp);
    bd_model_free(loaded);
    bd_distill_free(dist);
    bd_model_free(student);
    bd_denoiser_free(student_net);
    bd_trainer_free(tr);
    bd_model_free(teacher);
    bd_context_free(ctx);
    return r == BD_SUCCESS ? 0 : 1;
}
