/* Writes the seed corpus of tests/fuzz/fuzz_checkpoint.c (run from the
   repository root): a 2-branch MLP student with optimiser state, its
   teacher, and a tiny UNet (eps, linear schedule). */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
int main(void) {
    bd_context *ctx; bd_context_config cc = bd_context_config_init(); bd_context_init(&cc, &ctx);
    bd_rng rng = bd_rng_init(1);
    bd_mlp_config mc = bd_mlp_config_init(2); bd_denoiser *net; bd_model *m; bd_trainer *tr;
    bd_trainer_config tc = bd_trainer_config_init();
    float x[4] = {0.1f, 0.2f, -0.3f, 0.4f};
    double g[3] = {1.0, 0.5, 0.0};
    bd_unet_config uc = bd_unet_config_init();
    mc.hidden = 4; mc.depth = 1; mc.temb_dim = 2; mc.branches = 2;
    bd_mlp_create(ctx, &mc, &rng, &net); bd_model_init(ctx, net, BD_PARAM_V, BD_SCHEDULE_COSINE, &m);
    bd_trainer_init(ctx, m->net, &tc, 2, &tr); bd_trainer_step(tr, x, 2, NULL);
    bd_model_set_grid(m, g, 2);
    if (bd_model_save(ctx, m, "tests/fuzz/corpus/checkpoint/mlp_student_optim.safetensors", tr)) return 1;
    bd_model_set_grid(m, NULL, 0);
    if (bd_model_save(ctx, m, "tests/fuzz/corpus/checkpoint/mlp_teacher.safetensors", NULL)) return 1;
    bd_trainer_free(tr); bd_model_free(m);
    uc.in_ch = 1; uc.image_size = 4; uc.ch = 4; uc.levels = 2; uc.ch_mult[0] = 1; uc.ch_mult[1] = 1; uc.ch_mult[2] = 0;
    uc.nres = 1; uc.attn[0] = 0; uc.attn[1] = 1; uc.attn[2] = 0; uc.groups = 2; uc.heads = 1; uc.branches = 1;
    if (bd_model_init_unet(ctx, &uc, BD_PARAM_EPS, BD_SCHEDULE_LINEAR, &rng, &m)) { printf("%s\n", bd_context_message(ctx)); return 1; }
    if (bd_model_save(ctx, m, "tests/fuzz/corpus/checkpoint/unet_tiny.safetensors", NULL)) return 1;
    bd_model_free(m); bd_context_free(ctx); return 0;
}
