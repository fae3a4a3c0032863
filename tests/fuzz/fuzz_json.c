/* libFuzzer target: the strict JSON tokenizer (bd_json_validate), and the
   same bytes as a safetensors header behind a correct length prefix, so
   the header validator sees every JSON the tokenizer accepts. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bd_context *ctx;
    bd_result r;
    unsigned char *buf;
    bd_safetensors *st = NULL;
    size_t i;
    if (!ctx) {
        bd_context_config cc = bd_context_config_init();
        if (bd_context_init(&cc, &ctx) != BD_SUCCESS) __builtin_trap();
    }
    r = bd_json_validate(ctx, (const char *)data, size);
    if (r != BD_SUCCESS && r != BD_ERROR_FORMAT) __builtin_trap();
    buf = (unsigned char *)malloc(size + 8);
    for (i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)size >> (8 * i));
    if (size) memcpy(buf + 8, data, size);
    if (bd_safetensors_load_memory(ctx, buf, size + 8, &st) == BD_SUCCESS) {
        if (r != BD_SUCCESS) __builtin_trap(); /* accepted a header that is not JSON */
        bd_safetensors_free(st);
    }
    free(buf);
    return 0;
}
