/* libFuzzer target: the command line's own input paths, as `bdense`
   runs them (cli/util.c and cli/data.c compiled in).  The first byte picks:
     0  the bytes as DIR/train-images-idx3-ubyte (raw or gzip) behind
        --data fmnist:DIR: cli_data_open, then batches and cli_data_take
        (the zero-image IDX that once ended in SIGFPE lives here);
     1  the bytes as an .npy behind --data npy:FILE, the same calls;
     2  the bytes as a data spec string (no '/': nothing outside the
        scratch folder is read);
     3  the bytes as an argument vector (NUL or newline separated) for
        cli_parse with an option of every kind (ranges, seed, number,
        choice, flag, list, string) plus --threads and --device.
   The context's allocator refuses more than 64 MiB at once, as a caller's
   budget would.  Messages go to stderr: run with -close_fd_mask=2. */
#ifndef FUZZ_CLI_EMBEDDED /* tests/test_cli.c replays the corpus with this file included */
#define _POSIX_C_SOURCE 200809L
#include "cli/cli.h"
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "cli/util.c"
#include "cli/data.c"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void *fz_alloc(size_t n, void *ud) {
    (void)ud;
    return n > ((size_t)64 << 20) ? NULL : malloc(n);
}
static void fz_free(void *p, void *ud) {
    (void)ud;
    free(p);
}

static char fz_dir[256], fz_home[1024];

static void fz_cleanup(void) { /* the scratch folder goes with the process */
    static const char *files[] = {"train-images-idx3-ubyte", "d.npy", NULL};
    char p[400];
    int i;
    for (i = 0; files[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", fz_dir, files[i]);
        remove(p);
    }
    rmdir(fz_dir);
}

static void fz_write(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) __builtin_trap();
    if (n && fwrite(p, 1, n, f) != n) __builtin_trap();
    fclose(f);
}

/* what the commands do with an open data set */
static void fz_use(cli_data *d) {
    float *x;
    int64_t D, n = 3;
    bd_rng rng = bd_rng_init(7);
    if (d->kind == CLI_DATA_ARRAY && (d->n < 1 || d->c < 1 || d->h < 1 || d->w < 1 || !d->x)) __builtin_trap();
    D = d->c * d->h * d->w;
    if (D < 1 || D > ((int64_t)1 << 22)) __builtin_trap();
    x = (float *)malloc(sizeof(float) * (size_t)(n * D));
    if (!x) return;
    d->hflip = 1;
    if (cli_data_batch(d, x, n, &rng) != BD_SUCCESS && d->kind == CLI_DATA_ARRAY) __builtin_trap();
    cli_data_take("fuzz", d, x, d->kind == CLI_DATA_ARRAY && d->n < n ? d->n : n, 1);
    free(x);
}

static void fz_parse(const uint8_t *data, size_t size) {
    char buf[4096], *argv[64];
    int argc = 1;
    size_t i, n = size < sizeof buf - 1 ? size : sizeof buf - 1;
    cli_args a;
    const char *out = NULL, *choice = "ddim";
    int64_t steps = 10, seed = 0, any = 0;
    double lr = 1e-3, x = 0;
    int flag = 0;
    cli_list l;
    memcpy(buf, data, n);
    buf[n] = 0;
    argv[0] = (char *)"x";
    argv[argc++] = buf;
    for (i = 0; i < n && argc < 63; i++)
        if (buf[i] == 0 || buf[i] == '\n') {
            buf[i] = 0;
            argv[argc++] = buf + i + 1;
        }
    argv[argc] = NULL;
    memset(&l, 0, sizeof l);
    cli_args_init(&a, "fuzz", "fuzz", NULL);
    cli_add_str(&a, "out", &out, "FILE", "output");
    cli_range(cli_add_int(&a, "steps", &steps, "N", "steps"), 1, 1e9);
    cli_add_int(&a, "any", &any, "N", "no range");
    cli_add_seed(&a, &seed, "seed");
    cli_range(cli_add_num(&a, "lr", &lr, "LR", "lr"), 0, 10);
    cli_add_num(&a, "x", &x, "X", "no range");
    cli_add_flag(&a, "flag", &flag, "a flag");
    cli_add_choice(&a, "sampler", &choice, "ddim|heun|dpmpp2m", "sampler");
    cli_add_list(&a, "list", &l, "S...", "list");
    if (cli_parse(&a, argc, argv) == 0) {
        /* accepted values are what the options promise */
        if (steps < 1 || steps > 1000000000 || seed < 0 || !(lr >= 0 && lr <= 10) || !isfinite(x)) __builtin_trap();
        if (cli_choice_index("ddim|heun|dpmpp2m", choice) < 0) __builtin_trap();
        if (out && !*out) __builtin_trap();
        if (a.threads < 0 || a.threads > 256 || l.n > CLI_MAX_LIST) __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bd_context *ctx;
    char path[400], spec[600];
    cli_data d;
    if (!ctx) {
        bd_context_config cc = bd_context_config_init();
        cc.allocator.alloc = fz_alloc;
        cc.allocator.free = fz_free;
        if (bd_context_init(&cc, &ctx) != BD_SUCCESS) __builtin_trap();
        snprintf(fz_dir, sizeof fz_dir, "/tmp/bdense_fuzz_cli_%ld", (long)getpid());
        mkdir(fz_dir, 0700);
        if (!getcwd(fz_home, sizeof fz_home)) __builtin_trap();
        atexit(fz_cleanup);
    }
    if (size < 1) return 0;
    memset(&d, 0, sizeof d);
    switch (data[0] & 3) {
    case 0:
        snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", fz_dir);
        fz_write(path, data + 1, size - 1);
        snprintf(spec, sizeof spec, "fmnist:%s", fz_dir);
        if (cli_data_open("fuzz", ctx, spec, 0, &d) == 0) fz_use(&d);
        else if (d.x) __builtin_trap();
        cli_data_free(&d);
        break;
    case 1:
        snprintf(path, sizeof path, "%s/d.npy", fz_dir);
        fz_write(path, data + 1, size - 1);
        snprintf(spec, sizeof spec, "npy:%s", path);
        if (cli_data_open("fuzz", ctx, spec, 0, &d) == 0) fz_use(&d);
        else if (d.x) __builtin_trap();
        cli_data_free(&d);
        break;
    case 2: {
        size_t i, n = size - 1 < 200 ? size - 1 : 200;
        for (i = 0; i < n; i++) spec[i] = data[1 + i] == '/' ? '_' : (char)data[1 + i];
        spec[n] = 0;
        if (chdir(fz_dir) != 0) __builtin_trap();
        if (cli_data_open("fuzz", ctx, spec, data[0] >> 2, &d) == 0) fz_use(&d);
        cli_data_free(&d);
        if (chdir(fz_home) != 0) __builtin_trap();
        break;
    }
    default:
        fz_parse(data + 1, size - 1);
        break;
    }
    return 0;
}
