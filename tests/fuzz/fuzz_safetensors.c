/* libFuzzer target: bd_safetensors_load_memory on arbitrary bytes.
   Besides "no crash, no leak, no UB", it checks properties of every file the
   reader accepts: each tensor is found by name, its data is readable, and
   writing it back and reading that again gives the same tensors. */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"

static bd_context *fz_ctx(void) {
    static bd_context *ctx; /* the harness may keep state; the library does not */
    if (!ctx) {
        bd_context_config cc = bd_context_config_init();
        if (bd_context_init(&cc, &ctx) != BD_SUCCESS) __builtin_trap();
    }
    return ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bd_context *ctx = fz_ctx();
    bd_safetensors *st = NULL, *st2 = NULL;
    bd_result r = bd_safetensors_load_memory(ctx, data, size, &st);
    int64_t i, k;
    if (r != BD_SUCCESS) {
        if (st) __builtin_trap();
        if (r != BD_ERROR_FORMAT && r != BD_ERROR_UNSUPPORTED && r != BD_ERROR_OVERFLOW &&
            r != BD_ERROR_OUT_OF_MEMORY)
            __builtin_trap();
        return 0;
    }
    {
        bd_st_write_tensor *w = (bd_st_write_tensor *)calloc((size_t)st->n_tensors + 1, sizeof *w);
        bd_st_kv *kv = (bd_st_kv *)calloc((size_t)st->n_metadata + 1, sizeof *kv);
        void *mem = NULL;
        size_t memn = 0;
        volatile float sink = 0;
        for (i = 0; i < st->n_tensors; i++) {
            const bd_st_tensor *t = &st->tensors[i];
            if (bd_safetensors_find(st, t->name) != t) __builtin_trap();
            for (k = 0; k < t->numel; k++) sink += t->data[k];
            w[i].name = t->name; w[i].data = t->data; w[i].ndim = t->ndim;
            memcpy(w[i].shape, t->shape, sizeof w[i].shape);
        }
        (void)sink;
        for (i = 0; i < st->n_metadata; i++) {
            if (bd_safetensors_meta(st, st->metadata[i].key) != st->metadata[i].value) __builtin_trap();
            kv[i] = st->metadata[i];
        }
        if (bd_safetensors_write_memory(ctx, w, st->n_tensors, kv, st->n_metadata, &mem, &memn) != BD_SUCCESS)
            __builtin_trap();
        if (bd_safetensors_load_memory(ctx, mem, memn, &st2) != BD_SUCCESS) __builtin_trap();
        if (st2->n_tensors != st->n_tensors || st2->n_metadata != st->n_metadata) __builtin_trap();
        for (i = 0; i < st->n_tensors; i++) {
            const bd_st_tensor *a = &st->tensors[i], *b = &st2->tensors[i];
            if (strcmp(a->name, b->name) || a->ndim != b->ndim || a->numel != b->numel ||
                memcmp(a->shape, b->shape, sizeof a->shape) ||
                (a->numel && memcmp(a->data, b->data, (size_t)a->numel * 4)))
                __builtin_trap();
        }
        for (i = 0; i < st->n_metadata; i++)
            if (strcmp(st->metadata[i].key, st2->metadata[i].key) ||
                strcmp(st->metadata[i].value, st2->metadata[i].value))
                __builtin_trap();
        bd_safetensors_free(st2);
        bd_free(ctx, mem);
        free(w);
        free(kv);
    }
    bd_safetensors_free(st);
    return 0;
}
