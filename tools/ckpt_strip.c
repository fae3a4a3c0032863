/* ckpt_strip: copy a bdense checkpoint without its optimiser/resume state
   (raw weights, Adam moments, rng): only the model tensors (the EMA
   weights) and the metadata, e.g. a student's grid.  A quarter of the size;
   what you ship with an application.
   Build: cc -std=c99 -O2 -I. tools/ckpt_strip.c -o ckpt_strip -lm
   Usage: ckpt_strip IN.safetensors OUT.safetensors */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include <stdio.h>

int main(int argc, char **argv) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    bd_model *m = NULL;
    bd_result r;
    if (argc != 3) {
        fprintf(stderr, "usage: ckpt_strip IN.safetensors OUT.safetensors\n");
        return 2;
    }
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;
    r = bd_model_load(ctx, argv[1], &m);
    if (r == BD_SUCCESS) r = bd_model_save(ctx, m, argv[2], NULL);
    if (r != BD_SUCCESS) fprintf(stderr, "ckpt_strip: %s\n", bd_context_message(ctx));
    else printf("%s: %lld parameters, %s\n", argv[2], (long long)m->net->n_params,
                m->steps ? "student" : "teacher");
    bd_model_free(m);
    bd_context_free(ctx);
    return r == BD_SUCCESS ? 0 : 1;
}
