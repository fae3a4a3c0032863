/* libFuzzer target: bd_model_load (checkpoint metadata, config, tensor
   names and shapes, student grid) and bd_model_load_state (optimiser
   tensors, step, RNG strings) on arbitrary bytes.  bd_model_load takes a
   path, so each input goes through a file in $TMPDIR (or /tmp).
   Properties: no crash, leak or UB; a failing load hands out nothing and
   reports one of the documented codes; an accepted checkpoint runs a
   forward pass and its state loads into an optimiser of its size. */
#define _POSIX_C_SOURCE 200809L
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include <unistd.h>

static int ok_code(bd_result r) {
    return r == BD_ERROR_FORMAT || r == BD_ERROR_UNSUPPORTED || r == BD_ERROR_OVERFLOW ||
           r == BD_ERROR_OUT_OF_MEMORY || r == BD_ERROR_CONFIG || r == BD_ERROR_SHAPE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bd_context *ctx;
    static char path[256];
    bd_model *m = NULL;
    bd_result r;
    FILE *f;
    if (!ctx) {
        bd_context_config cc = bd_context_config_init();
        const char *dir = getenv("TMPDIR");
        if (bd_context_init(&cc, &ctx) != BD_SUCCESS) __builtin_trap();
        snprintf(path, sizeof path, "%s/bdense_fuzz_ck_%ld.safetensors", dir ? dir : "/tmp", (long)getpid());
    }
    f = fopen(path, "wb");
    if (!f) return 0;
    if (size && fwrite(data, 1, size, f) != size) { fclose(f); return 0; }
    fclose(f);
    r = bd_model_load(ctx, path, &m);
    if (r != BD_SUCCESS) {
        if (m || !ok_code(r)) __builtin_trap();
        return 0;
    }
    {
        bd_denoiser *d = m->net;
        int64_t D = bd_denoiser_sample_size(d), i;
        float *z = (float *)calloc((size_t)D, sizeof(float));
        float *o = (float *)calloc((size_t)(D * d->branches), sizeof(float));
        float t = 0.5f;
        bd_adam adam;
        bd_adam_config ac = bd_adam_config_init();
        bd_rng r1, r2;
        int found = 0;
        if (!z || !o) __builtin_trap();
        if (m->steps > 0 && (!m->grid || m->grid[0] != 1.0 || m->grid[m->steps] != 0.0)) __builtin_trap();
        r = bd_denoiser_forward(d, o, z, &t, 1, 0);
        if (r != BD_SUCCESS && r != BD_ERROR_OUT_OF_MEMORY && r != BD_ERROR_OVERFLOW) __builtin_trap();
        if (bd_adam_init(ctx, &ac, d->n_params, &adam) == BD_SUCCESS) {
            float *ema = (float *)malloc((size_t)d->n_params * sizeof(float));
            r = bd_model_load_state(ctx, path, m, ema, NULL, &adam, &r1, &r2, &found);
            if (r != BD_SUCCESS && !ok_code(r)) __builtin_trap();
            if (r == BD_SUCCESS)
                for (i = 0; i < d->n_params; i++) {
                    volatile float sink = ema[i];
                    (void)sink;
                }
            free(ema);
            bd_adam_free(&adam);
        }
        free(z);
        free(o);
    }
    bd_model_free(m);
    return 0;
}
