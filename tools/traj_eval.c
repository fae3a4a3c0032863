/* traj_eval.c - trajectory error of models on held-out teacher trajectories.
   For every checkpoint: sample from the starting noises of a cached
   trajectory file (state 0, `bdense trajectories`), and compare with its
   last state (the teacher's solve from the same noise): MSE per pixel over
   the first n trajectories, its standard error (std of the per-sample MSE /
   sqrt(n)), PSNR.  A distilled student samples on its own grid with its
   last branch (as `bdense sample`); a teacher with --sampler/--steps.
   --samples-dir DIR also writes each model's samples to DIR/<name>.npy
   (n,C,H,W), e.g. for `bdense eval --samples ... --features` (FD-CLF).
   --endpoints FILE writes the cache's last states as (n,C,H,W).
   Prints one CSV row per model: model,n,nfe,mse,mse_se,psnr_db.
   Build: cc -std=c99 -O2 -fopenmp -I. tools/traj_eval.c -o build/traj_eval -lm
   Usage: traj_eval [--n N] [--threads T] [--sampler S --steps S] [--samples-dir DIR]
                    [--endpoints FILE] HELDOUT.npy [CKPT ...] */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *base_name(const char *p, char *buf, size_t cap) {
    const char *s = strrchr(p, '/');
    size_t len;
    s = s ? s + 1 : p;
    len = strlen(s);
    if (len > 12 && strcmp(s + len - 12, ".safetensors") == 0) len -= 12;
    if (len >= cap) len = cap - 1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return buf;
}

int main(int argc, char **argv) {
    bd_context_config cc = bd_context_config_init();
    bd_context *ctx = NULL;
    bd_npy_stream st;
    const char *held = NULL, *sdir = NULL, *endpoints = NULL, *sampler = "ddim";
    int64_t n = 0, steps = 2, threads = 1, S1, D, i, j, nckpt = 0;
    float *noise = NULL, *ref = NULL, *x = NULL;
    char **ckpts = (char **)calloc((size_t)argc, sizeof(char *));
    int rc = 1, a;
    memset(&st, 0, sizeof st);
    for (a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--n") && a + 1 < argc) n = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--threads") && a + 1 < argc) threads = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--sampler") && a + 1 < argc) sampler = argv[++a];
        else if (!strcmp(argv[a], "--steps") && a + 1 < argc) steps = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--samples-dir") && a + 1 < argc) sdir = argv[++a];
        else if (!strcmp(argv[a], "--endpoints") && a + 1 < argc) endpoints = argv[++a];
        else if (argv[a][0] == '-') {
            fprintf(stderr, "traj_eval: unknown option %s\n", argv[a]);
            return 2;
        } else if (!held) held = argv[a];
        else ckpts[nckpt++] = argv[a];
    }
    if (!held || !ckpts || threads < 1) {
        free(ckpts);
        fprintf(stderr, "usage: traj_eval [--n N] [--threads T] [--sampler S --steps S] [--samples-dir DIR] "
                        "[--endpoints FILE] HELDOUT.npy [CKPT ...]\n");
        return 2;
    }
    cc.n_threads = (int)threads;
    if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;
    if (bd_npy_stream_open(ctx, held, &st) != BD_SUCCESS || st.ndim != 3) {
        fprintf(stderr, "traj_eval: %s: %s\n", held, st.ndim != 3 ? "not (n, S+1, D)" : bd_context_message(ctx));
        goto done;
    }
    S1 = st.shape[1], D = st.shape[2];
    if (n <= 0 || n > st.shape[0]) n = st.shape[0];
    noise = (float *)malloc(sizeof(float) * (size_t)(n * D));
    ref = (float *)malloc(sizeof(float) * (size_t)(n * D));
    x = (float *)malloc(sizeof(float) * (size_t)(n * D));
    if (!noise || !ref || !x) goto done;
    for (i = 0; i < n; i++) {
        if (bd_npy_stream_read(ctx, &st, i * S1 * D, D, noise + i * D) != BD_SUCCESS ||
            bd_npy_stream_read(ctx, &st, (i * S1 + S1 - 1) * D, D, ref + i * D) != BD_SUCCESS) {
            fprintf(stderr, "traj_eval: %s: %s\n", held, bd_context_message(ctx));
            goto done;
        }
    }
    if (endpoints) {
        int64_t side = (int64_t)(sqrt((double)D) + 0.5), shape[4];
        shape[0] = n, shape[1] = 1, shape[2] = side, shape[3] = side;
        if (side * side != D || bd_npy_write(ctx, endpoints, ref, 4, shape) != BD_SUCCESS) {
            fprintf(stderr, "traj_eval: cannot write %s (D = %lld)\n", endpoints, (long long)D);
            goto done;
        }
    }
    printf("model,n,nfe,mse,mse_se,psnr_db\n");
    for (j = 0; j < nckpt; j++) {
        bd_model *m = NULL;
        bd_sampler *s = NULL;
        bd_sampler_config cfg;
        bd_sampler_kind kind = BD_SAMPLER_DDIM;
        int64_t nfe = 0, Dm;
        double acc = 0, acc2 = 0, mse, var;
        char name[256];
        if (bd_model_load(ctx, ckpts[j], &m) != BD_SUCCESS) {
            fprintf(stderr, "traj_eval: %s: %s\n", ckpts[j], bd_context_message(ctx));
            goto done;
        }
        Dm = bd_denoiser_sample_size(m->net);
        if (Dm != D) {
            fprintf(stderr, "traj_eval: %s: sample size %lld, trajectories %lld\n", ckpts[j], (long long)Dm,
                    (long long)D);
            bd_model_free(m);
            goto done;
        }
        if (m->grid && m->steps > 0) {
            cfg = bd_sampler_config_init(BD_SAMPLER_DDIM, m->steps);
            cfg.custom_grid = m->grid;
        } else {
            if (bd_sampler_parse(sampler, &kind) != BD_SUCCESS) {
                fprintf(stderr, "traj_eval: unknown sampler %s\n", sampler);
                bd_model_free(m);
                goto done;
            }
            cfg = bd_sampler_config_init(kind, steps);
        }
        cfg.param = m->param;
        cfg.schedule = m->schedule;
        cfg.branch = -1;
        memcpy(x, noise, sizeof(float) * (size_t)(n * D));
        if (bd_sampler_init(ctx, m->net, n < 100 ? n : 100, &s) != BD_SUCCESS ||
            bd_sampler_run(s, &cfg, x, n, NULL, &nfe) != BD_SUCCESS) {
            fprintf(stderr, "traj_eval: %s: %s\n", ckpts[j], bd_context_message(ctx));
            bd_sampler_free(s);
            bd_model_free(m);
            goto done;
        }
        bd_sampler_free(s);
        for (i = 0; i < n; i++) {
            double e = 0;
            int64_t d;
            for (d = 0; d < D; d++) {
                double r = (double)x[i * D + d] - (double)ref[i * D + d];
                e += r * r;
            }
            e /= (double)D;
            acc += e, acc2 += e * e;
        }
        mse = acc / (double)n;
        var = n > 1 ? (acc2 - acc * acc / (double)n) / (double)(n - 1) : 0.0;
        base_name(ckpts[j], name, sizeof name);
        if (!(m->grid && m->steps > 0)) {
            size_t len = strlen(name);
            snprintf(name + len, sizeof name - len, "_%s%lld", sampler, (long long)steps);
        }
        printf("%s,%lld,%lld,%.6g,%.3g,%.3f\n", name, (long long)n, (long long)nfe, mse,
               sqrt(var > 0 ? var : 0) / sqrt((double)n), 10 * log10(4.0 / (mse > 1e-30 ? mse : 1e-30)));
        fflush(stdout);
        if (sdir) {
            char path[1200];
            int64_t shape[4];
            shape[0] = n, shape[1] = m->cfg.in_ch > 0 ? m->cfg.in_ch : 1;
            shape[2] = (int64_t)(sqrt((double)(D / shape[1])) + 0.5), shape[3] = shape[2];
            snprintf(path, sizeof path, "%s/%s.npy", sdir, name);
            if (bd_npy_write(ctx, path, x, 4, shape) != BD_SUCCESS) {
                fprintf(stderr, "traj_eval: %s: %s\n", path, bd_context_message(ctx));
                bd_model_free(m);
                goto done;
            }
        }
        bd_model_free(m);
    }
    rc = 0;
done:
    if (st.file) bd_npy_stream_close(&st);
    free(noise);
    free(ref);
    free(x);
    free(ckpts);
    bd_context_free(ctx);
    return rc;
}
