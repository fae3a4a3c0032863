/* libFuzzer target: bd_npy_read_memory on arbitrary bytes. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bd_context *ctx;
    bd_npy a;
    bd_result r;
    if (!ctx) {
        bd_context_config cc = bd_context_config_init();
        if (bd_context_init(&cc, &ctx) != BD_SUCCESS) __builtin_trap();
    }
    r = bd_npy_read_memory(ctx, data, size, &a);
    if (r == BD_SUCCESS) {
        volatile float sink = 0;
        int64_t i, n = 1;
        int d;
        if (a.ndim < 0 || a.ndim > BD_NPY_MAX_DIMS) __builtin_trap();
        for (d = 0; d < a.ndim; d++) n *= a.shape[d];
        if (n != a.numel) __builtin_trap();
        for (i = 0; i < a.numel; i++) sink += a.data[i];
        (void)sink;
    } else if (a.data || (r != BD_ERROR_FORMAT && r != BD_ERROR_UNSUPPORTED && r != BD_ERROR_OVERFLOW &&
                          r != BD_ERROR_OUT_OF_MEMORY)) {
        __builtin_trap();
    }
    bd_npy_free(ctx, &a);
    return 0;
}
