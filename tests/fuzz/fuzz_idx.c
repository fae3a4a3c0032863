/* libFuzzer target: the IDX readers (raw and gzip, told apart by the magic
   bytes: gzip inputs go through bd_gunzip and bd_inflate inside the reader)
   and, on the same bytes, a raw bd_inflate. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"

#define FZ_MAX_OUT ((size_t)1 << 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bd_context *ctx;
    bd_tensor t;
    uint8_t *labels;
    int64_t n;
    unsigned char *out;
    size_t on, used;
    bd_result r;
    int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    if (!ctx) {
        bd_context_config cc = bd_context_config_init();
        if (bd_context_init(&cc, &ctx) != BD_SUCCESS) __builtin_trap();
    }
    r = bd_idx_read_images_memory(ctx, data, size, &t);
    if (r == BD_SUCCESS) {
        int64_t i, m = t.n * t.c * t.h * t.w;
        for (i = 0; i < m; i++)
            if (!(t.data[i] >= -1.0f && t.data[i] <= 1.0f)) __builtin_trap();
    } else if (t.data) {
        __builtin_trap();
    }
    bd_tensor_free(ctx, &t);
    /* labels: the gzip layer is the same code as above, so raw bytes only
       (and gzip members whose payload claims to be labels) */
    if (!gz || r == BD_ERROR_FORMAT) {
        r = bd_idx_read_labels_memory(ctx, data, size, &labels, &n);
        if (r == BD_SUCCESS) {
            volatile int sink = 0;
            int64_t i;
            for (i = 0; i < n; i++) sink += labels[i];
            (void)sink;
        } else if (labels) {
            __builtin_trap();
        }
        bd_free(ctx, labels);
    }
    if (bd_inflate(ctx, data, size, FZ_MAX_OUT, &out, &on, &used) == BD_SUCCESS) {
        if (on > FZ_MAX_OUT || used > size) __builtin_trap();
        bd_free(ctx, out);
    }
    return 0;
}
