/* cmd_model.c - `bdense init`, `bdense info`, `bdense forward`, and the
   model presets (--config small|tiny) shared with train. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* presets and architecture options                                       */
/* ---------------------------------------------------------------------- */
void cli_arch_defaults(cli_arch *o) {
    memset(o, 0, sizeof *o);
    o->config = "small";
    o->param = "v";
    o->schedule = "cosine";
    o->image_size = 0;
    o->in_ch = 0;
    o->ch = 0;
    o->nres = -1;
    o->groups = 0;
    o->heads = 0;
    o->branches = 1;
    o->ch_mult = NULL;
    o->attn = NULL;
}

void cli_arch_options(cli_args *a, cli_arch *o) {
    cli_add_choice(a, "config", &o->config, "small|tiny",
                   "architecture preset: small = docs/spec.md sec. 6 (28x28, ch 32, 1,2,2, ~1.1M params); tiny = 16x16, "
                   "ch 16, 1,2 (demos, tests)");
    cli_nodefault(cli_range(cli_add_int(a, "image-size", &o->image_size, "N", "override the preset: image side"), 8, 1024));
    cli_nodefault(cli_range(cli_add_int(a, "in-ch", &o->in_ch, "C", "override the preset: image channels"), 1, 64));
    cli_nodefault(cli_range(cli_add_int(a, "ch", &o->ch, "N", "override the preset: base width"), 1, 4096));
    cli_add_str(a, "ch-mult", &o->ch_mult, "LIST", "override the preset: width multipliers, e.g. 1,2,2");
    cli_nodefault(cli_range(cli_add_int(a, "nres", &o->nres, "N", "override the preset: ResBlocks per level"), 0, 16));
    cli_add_str(a, "attn", &o->attn, "LIST", "override the preset: attention levels, e.g. 2 (or none)");
    cli_nodefault(cli_range(cli_add_int(a, "groups", &o->groups, "G", "override the preset: GroupNorm groups"), 1, 1024));
    cli_nodefault(cli_range(cli_add_int(a, "heads", &o->heads, "N", "override the preset: attention heads"), 1, 64));
    cli_add_choice(a, "param", &o->param, "v|eps|x0", "what the network predicts");
    cli_add_choice(a, "schedule", &o->schedule, "cosine|linear", "noise schedule");
}

static int cli__parse_int_list(const char *s, int64_t *out, int max, int *n) {
    char *end;
    *n = 0;
    if (strcmp(s, "none") == 0) return 0;
    while (*s) {
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0 || v > 64 || *n >= max) return 1;
        out[(*n)++] = v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return 1;
    }
    return 0;
}

int cli_arch_build(const char *cmd, const cli_arch *o, bd_unet_config *cfg, bd_param_kind *param,
                   bd_schedule_kind *sched) {
    *cfg = bd_unet_config_init();
    if (strcmp(o->config, "tiny") == 0) {
        int l;
        cfg->image_size = 16;
        cfg->ch = 16;
        cfg->levels = 2;
        for (l = 0; l < BD_UNET_MAX_LEVELS; l++) cfg->ch_mult[l] = 0, cfg->attn[l] = 0;
        cfg->ch_mult[0] = 1;
        cfg->ch_mult[1] = 2;
        cfg->nres = 1;
        cfg->groups = 4;
        cfg->heads = 1;
    }
    if (o->image_size) cfg->image_size = o->image_size;
    if (o->in_ch) cfg->in_ch = o->in_ch;
    if (o->ch) cfg->ch = o->ch;
    if (o->nres >= 0) cfg->nres = o->nres;
    if (o->groups) cfg->groups = o->groups;
    if (o->heads) cfg->heads = o->heads;
    cfg->branches = o->branches;
    if (o->ch_mult) {
        int64_t v[BD_UNET_MAX_LEVELS];
        int n, l;
        if (cli__parse_int_list(o->ch_mult, v, BD_UNET_MAX_LEVELS, &n) || n < 1)
            return cli_fail(cmd, "--ch-mult '%s': expected 1 to %d comma-separated integers such as 1,2,2",
                            o->ch_mult, BD_UNET_MAX_LEVELS);
        for (l = 0; l < BD_UNET_MAX_LEVELS; l++) cfg->ch_mult[l] = l < n ? v[l] : 0;
        cfg->levels = n;
    }
    if (o->attn) {
        int64_t v[BD_UNET_MAX_LEVELS];
        int n, l;
        if (cli__parse_int_list(o->attn, v, BD_UNET_MAX_LEVELS, &n))
            return cli_fail(cmd, "--attn '%s': expected comma-separated level indices such as 2, or none", o->attn);
        for (l = 0; l < BD_UNET_MAX_LEVELS; l++) cfg->attn[l] = 0;
        for (l = 0; l < n; l++) {
            if (v[l] >= cfg->levels)
                return cli_fail(cmd, "--attn: level %lld does not exist (levels 0..%lld)", (long long)v[l],
                                (long long)(cfg->levels - 1));
            cfg->attn[v[l]] = 1;
        }
    } else {
        int l;
        for (l = (int)cfg->levels; l < BD_UNET_MAX_LEVELS; l++) cfg->attn[l] = 0;
    }
    if (bd_unet_config_validate(NULL, cfg) != BD_SUCCESS) {
        bd_context *tmp = NULL;
        bd_context_config cc = bd_context_config_init();
        if (bd_context_init(&cc, &tmp) == BD_SUCCESS) {
            bd_unet_config_validate(tmp, cfg);
            cli_fail(cmd, "invalid architecture: %s", bd_context_message(tmp));
            bd_context_free(tmp);
            return 1;
        }
        return cli_fail(cmd, "invalid architecture");
    }
    if (bd_param_parse(o->param, param) != BD_SUCCESS) return cli_fail(cmd, "--param '%s' unknown", o->param);
    if (bd_schedule_parse(o->schedule, sched) != BD_SUCCESS)
        return cli_fail(cmd, "--schedule '%s' unknown", o->schedule);
    return 0;
}

int cli_model_new(const char *cmd, bd_context *ctx, const cli_arch *o, uint64_t seed, bd_model **out) {
    bd_unet_config cfg;
    bd_param_kind param;
    bd_schedule_kind sched;
    bd_rng rng = bd_rng_init(seed);
    bd_result r;
    if (cli_arch_build(cmd, o, &cfg, &param, &sched)) return 1;
    r = bd_model_init_unet(ctx, &cfg, param, sched, &rng, out);
    if (r != BD_SUCCESS) return cli_fail_bd(cmd, ctx, r, "model configuration");
    return 0;
}

/* ---------------------------------------------------------------------- */
/* bdense init                                                            */
/* ---------------------------------------------------------------------- */
int cmd_init(int argc, char **argv) {
    cli_args a;
    cli_arch arch;
    const char *out = NULL;
    int64_t seed = 0;
    bd_context *ctx = NULL;
    bd_model *m = NULL;
    bd_result r;
    int rc;
    cli_arch_defaults(&arch);
    cli_args_init(&a, "init", "Write a randomly initialised model (a checkpoint at step 0).", NULL);
    cli_required(cli_add_str(&a, "out", &out, "FILE", "checkpoint to write (.safetensors)"));
    cli_add_seed(&a, &seed, "initialisation seed");
    cli_arch_options(&a, &arch);
    cli_range(cli_add_int(&a, "branches", &arch.branches, "K", "output branches"), 1, 64);
    rc = cli_parse(&a, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (cli_prepare_output("init", out)) return 1;
    if (cli_context(&a, &ctx)) return 1;
    if (cli_model_new("init", ctx, &arch, (uint64_t)seed, &m)) {
        bd_context_free(ctx);
        return 1;
    }
    r = bd_model_save(ctx, m, out, NULL);
    if (r != BD_SUCCESS) rc = cli_fail_bd("init", ctx, r, out);
    else
        cli_note(&a, "%s: %s model, %lld parameters, seed %lld\n", out, arch.config, (long long)m->net->n_params,
                 (long long)seed);
    bd_model_free(m);
    bd_context_free(ctx);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* bdense info                                                            */
/* ---------------------------------------------------------------------- */
int cmd_info(int argc, char **argv) {
    cli_args a;
    const char *ckpt = NULL;
    int tensors = 0, rc;
    bd_context *ctx = NULL;
    bd_safetensors *st = NULL;
    bd_model *m = NULL;
    bd_result r;
    int64_t i, n_model = 0, n_optim = 0, n_other = 0;
    cli_args_init(&a, "info", "Show a checkpoint's configuration, parameter count and training step.",
                  "Every __metadata__ entry is printed as key = value, then the totals; --tensors lists\n"
                  "every tensor with its shape.  The file is also loaded as a model, so a defect shows.");
    cli_required(cli_add_str(&a, "ckpt", &ckpt, "FILE", "checkpoint (.safetensors)"));
    cli_add_flag(&a, "tensors", &tensors, "list every tensor and its shape");
    rc = cli_parse(&a, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (cli_context(&a, &ctx)) return 1;
    r = bd_safetensors_load(ctx, ckpt, &st);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("info", ctx, r, ckpt);
        bd_context_free(ctx);
        return rc;
    }
    printf("file: %s\n", ckpt);
    for (i = 0; i < st->n_metadata; i++) {
        const char *v = st->metadata[i].value;
        if (strcmp(st->metadata[i].key, "grid") == 0 && strlen(v) > 200)
            printf("  %-16s %.200s...\n", st->metadata[i].key, v);
        else
            printf("  %-16s %s\n", st->metadata[i].key, v);
    }
    for (i = 0; i < st->n_tensors; i++) {
        const bd_st_tensor *t = &st->tensors[i];
        if (strncmp(t->name, "optim.", 6) == 0 || strncmp(t->name, "train.", 6) == 0)
            n_optim += t->numel;
        else if (strchr(t->name, '.'))
            n_model += t->numel;
        else
            n_other += t->numel;
        if (tensors) {
            int d;
            printf("  %-44s [", t->name);
            for (d = 0; d < t->ndim; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
            printf("]\n");
        }
    }
    printf("tensors: %lld; model parameters: %lld; optimiser/training state floats: %lld%s\n",
           (long long)st->n_tensors, (long long)n_model, (long long)n_optim, n_other ? " (+ other)" : "");
    {
        const char *step = bd_safetensors_meta(st, "optim.step");
        const char *steps = bd_safetensors_meta(st, "steps");
        printf("training step: %s%s\n", step ? step : "none saved",
               !step ? "" : steps ? " (resumable with bdense distill --resume)" : " (resumable with bdense train --resume)");
        if (steps) printf("distilled student: %s sampling steps on its own grid\n", steps);
    }
    bd_safetensors_free(st);
    r = bd_model_load(ctx, ckpt, &m);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("info", ctx, r, "loading as a model");
    } else {
        printf("model: %s, %lld parameters, %lld branch%s, %lldx%lldx%lld images\n", m->net->vt->kind,
               (long long)m->net->n_params, (long long)m->net->branches, m->net->branches == 1 ? "" : "es",
               (long long)m->net->in_ch, (long long)m->net->height, (long long)m->net->width);
        bd_model_free(m);
    }
    bd_context_free(ctx);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* bdense forward                                                         */
/* ---------------------------------------------------------------------- */
int cmd_forward(int argc, char **argv) {
    cli_args a;
    const char *ckpt = NULL, *input = NULL, *tfile = NULL, *out = NULL;
    double tval = 0.5;
    int rc;
    bd_context *ctx = NULL;
    bd_model *m = NULL;
    float *x = NULL, *tv = NULL, *y = NULL, *tt = NULL;
    int64_t shape[4] = {0, 0, 0, 0}, tshape[4] = {0, 0, 0, 0}, N, D, i;
    int nd = 0, tnd = 0;
    bd_result r;
    cli_args_init(&a, "forward",
                  "One network call on given inputs: raw outputs of all branches, for conformance checks "
                  "against other implementations.",
                  "Input: float32 .npy (N,C,H,W).  Times: --t for all samples, or --t-file (N) .npy.\n"
                  "Output: (N,K*C,H,W) raw network outputs, branch-major, in the model's parametrisation.");
    cli_required(cli_add_str(&a, "ckpt", &ckpt, "FILE", "model checkpoint"));
    cli_required(cli_add_str(&a, "input", &input, "FILE", "noisy inputs z (N,C,H,W) .npy"));
    cli_range(cli_add_num(&a, "t", &tval, "T", "time in [0, 1] for every sample (c_noise = 1000 t)"), 0, 1);
    cli_add_str(&a, "t-file", &tfile, "FILE", "per-sample times (N) .npy instead of --t");
    cli_required(cli_add_str(&a, "out", &out, "FILE", "outputs (N,K*C,H,W) .npy"));
    rc = cli_parse(&a, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (cli_prepare_output("forward", out)) return 1;
    if (cli_context(&a, &ctx)) return 1;
    r = bd_model_load(ctx, ckpt, &m);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("forward", ctx, r, ckpt);
        goto done;
    }
    r = cli_npy_read(ctx, input, &x, shape, &nd);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("forward", ctx, r, input);
        goto done;
    }
    if (nd != 4 || shape[1] != m->net->in_ch || shape[2] != m->net->height || shape[3] != m->net->width) {
        rc = cli_fail("forward", "%s: expected shape (N,%lld,%lld,%lld) for this model", input,
                      (long long)m->net->in_ch, (long long)m->net->height, (long long)m->net->width);
        goto done;
    }
    N = shape[0];
    D = bd_denoiser_sample_size(m->net);
    tt = (float *)malloc(sizeof(float) * (size_t)N);
    y = (float *)malloc(sizeof(float) * (size_t)(N * D * m->net->branches));
    if (!tt || !y) {
        rc = cli_fail("forward", "out of memory");
        goto done;
    }
    if (tfile) {
        r = cli_npy_read(ctx, tfile, &tv, tshape, &tnd);
        if (r != BD_SUCCESS) {
            rc = cli_fail_bd("forward", ctx, r, tfile);
            goto done;
        }
        if (tnd != 1 || tshape[0] != N) {
            rc = cli_fail("forward", "%s: expected %lld times, shape (%lld,)", tfile, (long long)N, (long long)N);
            goto done;
        }
        for (i = 0; i < N; i++) tt[i] = tv[i];
    } else {
        for (i = 0; i < N; i++) tt[i] = (float)tval;
    }
    r = bd_denoiser_reserve(m->net, N);
    if (r == BD_SUCCESS) r = bd_denoiser_forward(m->net, y, x, tt, N, 0);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("forward", ctx, r, "forward");
        goto done;
    }
    shape[1] = m->net->in_ch * m->net->branches;
    r = bd_npy_write(ctx, out, y, 4, shape);
    if (r != BD_SUCCESS) {
        rc = cli_fail_bd("forward", ctx, r, out);
        goto done;
    }
    cli_note(&a, "%s: (%lld, %lld, %lld, %lld)\n", out, (long long)shape[0], (long long)shape[1], (long long)shape[2],
             (long long)shape[3]);
    rc = 0;
done:
    if (x) bd_free(ctx, x);
    if (tv) bd_free(ctx, tv);
    free(tt);
    free(y);
    if (m) bd_model_free(m);
    bd_context_free(ctx);
    return rc;
}
