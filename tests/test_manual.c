/* test_manual: the MANUAL at the top of bdense.h cannot rot.
   Every ```c block of the manual has a copy below between the markers
   / * ```c * / and / * ``` * /, compiled here and run with its results
   checked.  test_copies_match_header reads bdense.h and this file at run
   time and checks that the copies are the manual's blocks, in order, line
   for line (leading/trailing blanks and empty lines ignored).  So editing a
   snippet in the header without updating (and so compiling) its copy fails
   the test.  Run from the repository root (tests/run.sh does). */
#define BDENSE_IMPLEMENTATION
#include "bdense.h"
#include "bdtest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers the manual's prose names ---------------------------------- */
static int log_calls = 0;
static void my_log(void *user, bd_result code, const char *msg) {
    (void)user, (void)code, (void)msg;
    log_calls++;
}

typedef struct {
    long allocs, frees;
} alloc_counter;
static alloc_counter counter = {0, 0};
static void *counting_alloc(size_t size, void *user) {
    ((alloc_counter *)user)->allocs++;
    return malloc(size);
}
static void counting_free(void *p, void *user) {
    if (p) ((alloc_counter *)user)->frees++;
    free(p);
}

/* points on the circle of radius 0.8 */
static bd_result ring_data(void *user, float *x, int64_t n, bd_rng *rng) {
    int64_t i;
    (void)user;
    for (i = 0; i < n; i++) {
        double a = 6.283185307179586 * bd_rng_uniform(rng);
        x[2 * i] = (float)(0.8 * cos(a));
        x[2 * i + 1] = (float)(0.8 * sin(a));
    }
    return BD_SUCCESS;
}

/* ---- 1. Contexts and errors --------------------------------------------- */
static bd_result snippet_1(void) {
    /* ```c */
    bd_context_config cc = bd_context_config_init();
    cc.log = my_log;            // optional: sees every message
    cc.log_user_data = NULL;
    bd_context *ctx2;
    if (bd_context_init(&cc, &ctx2) != BD_SUCCESS) return BD_ERROR_OUT_OF_MEMORY;
    bd_result r = bd_context_set_threads(ctx2, 0);   // invalid: n >= 1
    if (r != BD_SUCCESS)
        printf("%s: %s\n", bd_result_string(r), bd_context_message(ctx2));
    bd_context_free(ctx2);
    /* ``` */
    return r;
}
static void test_contexts_and_errors(void) {
    log_calls = 0;
    BDT_CHECK(snippet_1() == BD_ERROR_INVALID_ARGUMENT);
    BDT_CHECK(log_calls == 1);
}

/* ---- 2. Memory ------------------------------------------------------------ */
static bd_result snippet_2(void) {
    /* ```c */
    bd_context_config cc = bd_context_config_init();
    cc.allocator.alloc = counting_alloc;   // void *(size_t, void *)
    cc.allocator.free = counting_free;     // void (void *, void *)
    cc.allocator.user_data = &counter;
    bd_context *ctx2;
    if (bd_context_init(&cc, &ctx2) != BD_SUCCESS) return BD_ERROR_OUT_OF_MEMORY;
    float *buf = (float *)bd_alloc_array(ctx2, 1000, sizeof(float));
    bd_free(ctx2, buf);
    bd_context_free(ctx2);
    /* ``` */
    return buf ? BD_SUCCESS : BD_ERROR_OUT_OF_MEMORY;
}
static void test_memory(void) {
    counter.allocs = counter.frees = 0;
    BDT_CHECK(snippet_2() == BD_SUCCESS);
    BDT_CHECKF(counter.allocs == 2 && counter.frees == 2, "allocs %ld frees %ld",
               counter.allocs, counter.frees);
}

/* ---- 3. Random numbers ---------------------------------------------------- */
static void test_random_numbers(void) {
    float ref[8];
    bd_rng r7 = bd_rng_init(7);
    /* ```c */
    bd_rng rng = bd_rng_init(42);
    float noise[8];
    bd_rng_normal(&rng, noise, 8);           // N(0, 1)
    double u = bd_rng_uniform(&rng);         // [0, 1)
    bd_noise_fill(noise, 8, 7);              // = bd_rng_normal from bd_rng_init(7)
    /* ``` */
    bd_rng_normal(&r7, ref, 8);
    BDT_CHECK(u >= 0.0 && u < 1.0);
    BDT_CHECK(memcmp(ref, noise, sizeof ref) == 0);
}

/* ---- 4. Kernels ----------------------------------------------------------- */
static void test_kernels(void) {
    int i;
    /* ```c */
    float x[2 * 3] = {1, 2, 3, 4, 5, 6}, w[4 * 3] = {0}, b[4] = {0}, y[2 * 4];
    bd_linear_forward(y, x, w, b, 2, 3, 4);  // y (2,4) = x (2,3) w^T + b
    float dy[2 * 4] = {1, 1, 1, 1, 1, 1, 1, 1}, dw[4 * 3] = {0}, db[4] = {0};
    bd_linear_backward(NULL, dw, db, dy, x, w, 2, 3, 4);   // dw +=, db +=
    /* ``` */
    for (i = 0; i < 8; i++) BDT_CHECK(y[i] == 0.0f);
    for (i = 0; i < 4; i++) {
        BDT_CHECK(db[i] == 2.0f);
        BDT_CHECK(dw[3 * i] == 5.0f && dw[3 * i + 1] == 7.0f && dw[3 * i + 2] == 9.0f);
    }
}

/* ---- 5. Denoisers --------------------------------------------------------- */
static bd_result snippet_5(bd_context *ctx, float *out_copy) {
    /* ```c */
    bd_rng rng = bd_rng_init(1);
    bd_mlp_config mc = bd_mlp_config_init(2);   // 2-D points
    bd_denoiser *net;
    bd_result r = bd_mlp_create(ctx, &mc, &rng, &net);
    if (r != BD_SUCCESS) return r;              // message: bd_context_message(ctx)
    float z[3 * 2] = {0}, t[3] = {0.1f, 0.5f, 0.9f}, out[3 * 2];
    r = bd_denoiser_reserve(net, 3);
    if (r == BD_SUCCESS) r = bd_denoiser_forward(net, out, z, t, 3, 0);
    bd_denoiser_free(net);
    /* ``` */
    memcpy(out_copy, out, sizeof out);
    return r;
}
static void test_denoisers(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    float out[6];
    int i;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    BDT_CHECK(snippet_5(ctx, out) == BD_SUCCESS);
    for (i = 0; i < 6; i++) BDT_CHECK(isfinite(out[i]));
    /* different times give different outputs (the time embedding works) */
    BDT_CHECK(out[0] != out[2] || out[1] != out[3]);
    bd_context_free(ctx);
}

/* ---- 6. Schedules, parametrisations, grids ------------------------------- */
static void test_schedules(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    int i;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    {
        /* ```c */
        bd_schedule sched;
        bd_schedule_init(&sched, BD_SCHEDULE_COSINE);
        double alpha, sigma, grid[5];
        bd_schedule_alpha_sigma(&sched, 0.5, &alpha, &sigma);  // alpha^2+sigma^2 = 1
        bd_time_grid(ctx, &sched, BD_GRID_UNIFORM_T, 4, grid); // 1, .75, .5, .25, 0
        /* ``` */
        BDT_CHECK(fabs(alpha * alpha + sigma * sigma - 1.0) < 1e-12);
        for (i = 0; i < 5; i++) BDT_CHECKF(fabs(grid[i] - (1.0 - 0.25 * i)) < 1e-15, "%g", grid[i]);
    }
    bd_context_free(ctx);
}

/* ---- 7. Sampling ------------------------------------------------------------ */
static bd_result snippet_7(bd_context *ctx, float *x_copy, int64_t *nfe_copy) {
    /* ```c */
    const float pts[4] = {-0.5f, 0.5f, 0.5f, -0.5f};
    bd_analytic_config ac = bd_analytic_config_init(2, pts, 2, 0.0);
    bd_denoiser *exact;
    bd_sampler *smp;
    bd_result r = bd_analytic_create(ctx, &ac, &exact);
    if (r != BD_SUCCESS) return r;
    if ((r = bd_sampler_init(ctx, exact, 16, &smp)) != BD_SUCCESS) return r;
    bd_sampler_config sc = bd_sampler_config_init(BD_SAMPLER_DPMPP_2M, 10);
    float x[16 * 2];
    int64_t nfe;
    bd_noise_fill(x, 16 * 2, 123);                       // the starting noise
    r = bd_sampler_run(smp, &sc, x, 16, NULL, &nfe);     // x: the samples
    bd_sampler_free(smp);
    bd_denoiser_free(exact);
    /* ``` */
    memcpy(x_copy, x, sizeof x);
    *nfe_copy = nfe;
    return r;
}
static void test_sampling(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    float x[32];
    int64_t nfe = 0;
    int i;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    BDT_CHECK(snippet_7(ctx, x, &nfe) == BD_SUCCESS);
    BDT_CHECK(nfe == 10);
    for (i = 0; i < 16; i++) {
        /* every sample lands on one of the two points */
        double d = fmin(hypot(x[2 * i] + 0.5, x[2 * i + 1] - 0.5),
                        hypot(x[2 * i] - 0.5, x[2 * i + 1] + 0.5));
        BDT_CHECKF(d < 5e-2, "sample %d at distance %g", i, d);
    }
    bd_context_free(ctx);
}

/* ---- 8. Training a teacher ------------------------------------------------- */
static bd_result snippet_8(bd_context *ctx) {
    /* ```c */
    bd_rng rng = bd_rng_init(1);
    bd_mlp_config mc = bd_mlp_config_init(2);
    bd_denoiser *net;
    bd_trainer *tr;
    bd_result r = bd_mlp_create(ctx, &mc, &rng, &net);
    if (r != BD_SUCCESS) return r;
    bd_trainer_config tc = bd_trainer_config_init();      // v, cosine, EMA 0.999
    tc.adam.lr = 1e-3;
    if ((r = bd_trainer_init(ctx, net, &tc, 64, &tr)) != BD_SUCCESS) return r;
    // ring_data: bd_result (void *user, float *x, int64_t n, bd_rng *rng)
    r = bd_trainer_run(tr, 100, 64, ring_data, NULL, NULL, NULL);
    if (r == BD_SUCCESS) r = bd_trainer_copy_ema(tr, net);   // sample the EMA
    bd_trainer_free(tr);
    bd_denoiser_free(net);
    /* ``` */
    return r;
}
static void test_training(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    BDT_CHECK(snippet_8(ctx) == BD_SUCCESS);
    bd_context_free(ctx);
}

/* ---- 9. Distilling a student ----------------------------------------------- */
static bd_result snippet_9(bd_context *ctx, bd_denoiser *teacher, double *mse_out) {
    /* ```c */
    bd_rng rng = bd_rng_init(2);
    bd_denoiser *student;
    bd_distill *dist;
    bd_result r = bd_distill_student_from_teacher(teacher, 2, &rng, &student);
    if (r != BD_SUCCESS) return r;
    bd_distill_config dc = bd_distill_config_init(BD_DISTILL_TD, 2, 2); // K = 2, 2 steps
    dc.weights = BD_WEIGHTS_UNIFORM;
    if ((r = bd_distill_init(ctx, &dc, teacher, student, 32, &dist)) != BD_SUCCESS) return r;
    double loss, mse = 0;
    for (int i = 0; i < 20 && r == BD_SUCCESS; i++)
        r = bd_distill_step(dist, NULL, 32, &loss, NULL);   // TD: no data batch
    if (r == BD_SUCCESS) r = bd_distill_eval(dist, 64, 9, 1, &mse, NULL, NULL);
    if (r == BD_SUCCESS) r = bd_distill_copy_ema(dist, student);  // what gets sampled
    if (r == BD_SUCCESS) r = bd_distill_save_state(dist, "student.safetensors"); // resumable
    bd_distill_free(dist);
    bd_denoiser_free(student);
    /* ``` */
    *mse_out = mse;
    return r;
}
static void test_distilling(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    bd_rng rng = bd_rng_init(5);
    bd_mlp_config mc = bd_mlp_config_init(2);
    bd_denoiser *teacher = NULL;
    double mse = -1;
    mc.hidden = 32;
    mc.depth = 2;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    BDT_CHECK(bd_mlp_create(ctx, &mc, &rng, &teacher) == BD_SUCCESS);
    BDT_CHECK(snippet_9(ctx, teacher, &mse) == BD_SUCCESS);
    remove("student.safetensors");
    BDT_CHECKF(mse >= 0 && isfinite(mse), "mse %g", mse);
    bd_denoiser_free(teacher);
    bd_context_free(ctx);
}

/* ---- 10. Models and checkpoints ---------------------------------------------- */
static bd_result snippet_10(bd_context *ctx, const char *path, bd_model **loaded) {
    /* ```c */
    bd_unet_config uc = bd_unet_config_init();   // docs/spec.md sec. 6 `small`: 28x28, ch 32
    uc.image_size = 16, uc.ch = 8, uc.levels = 2, uc.attn[2] = 0, uc.groups = 4;
    bd_rng rng = bd_rng_init(3);
    bd_model *m, *back = NULL;
    bd_result r = bd_model_init_unet(ctx, &uc, BD_PARAM_V, BD_SCHEDULE_COSINE, &rng, &m);
    if (r != BD_SUCCESS) return r;
    const double grid[3] = {1.0, 0.5, 0.0};
    r = bd_model_set_grid(m, grid, 2);               // now a 2-step student
    if (r == BD_SUCCESS) r = bd_model_save(ctx, m, path, NULL);
    if (r == BD_SUCCESS) r = bd_model_load(ctx, path, &back);
    bd_model_free(m);
    /* ``` */
    *loaded = back;
    return r;
}

/* ---- 11. Embedding --------------------------------------------------------------- */
static bd_result snippet_11(bd_context *ctx, bd_model *m, float *first) {
    /* ```c */
    bd_sampler *smp;
    bd_result r = bd_sampler_init(ctx, m->net, 8, &smp);   // once
    if (r != BD_SUCCESS) return r;
    bd_sampler_config sc = bd_sampler_config_init(BD_SAMPLER_DDIM, m->steps);
    sc.custom_grid = m->grid;
    sc.param = m->param;
    sc.schedule = m->schedule;
    static float img[8 * 16 * 16];
    for (uint64_t seed = 0; seed < 3 && r == BD_SUCCESS; seed++) {   // per call
        bd_noise_fill(img, 8 * 16 * 16, seed);
        r = bd_sampler_run(smp, &sc, img, 8, NULL, NULL);     // no allocation
    }
    bd_sampler_free(smp);
    /* ``` */
    memcpy(first, img, sizeof(float) * 16 * 16);
    return r;
}
static void test_models_and_embedding(void) {
    bd_context *ctx;
    bd_context_config cc = bd_context_config_init();
    bd_model *m = NULL;
    const char *path = "test_manual_tmp.safetensors";
    float img[256];
    int i, finite = 1, moved = 0;
    BDT_CHECK(bd_context_init(&cc, &ctx) == BD_SUCCESS);
    BDT_CHECKF(snippet_10(ctx, path, &m) == BD_SUCCESS, "%s", bd_context_message(ctx));
    remove(path);
    BDT_CHECK(m != NULL);
    if (m) {
        BDT_CHECK(m->steps == 2 && m->grid && m->grid[1] == 0.5);
        BDT_CHECK(m->net->height == 16 && m->net->in_ch == 1);
        BDT_CHECKF(snippet_11(ctx, m, img) == BD_SUCCESS, "%s", bd_context_message(ctx));
        for (i = 0; i < 256; i++) {
            if (!isfinite(img[i])) finite = 0;
            if (img[i] != 0.0f) moved = 1;
        }
        BDT_CHECK(finite && moved);
    }
    bd_model_free(m);
    bd_context_free(ctx);
}

/* ---- the copies are the manual's blocks ------------------------------------ */
static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    long n;
    char *buf;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (char *)malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(f);
    return buf;
}

#define MAX_SNIPPETS 64
/* Collect the blocks between lines whose trimmed text equals `open` and
   `close`, each normalised (lines trimmed, empty lines dropped), stopping at
   a line starting with `stop` (NULL: none).  Returns the count; the texts
   are malloc'ed into out. */
static int collect(const char *text, const char *open, const char *close, const char *stop,
                   char **out) {
    int n = 0, inside = 0;
    size_t cap = 0, len = 0;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n'), *a = p, *b;
        if (!e) e = p + strlen(p);
        b = e;
        if (stop && strncmp(p, stop, strlen(stop)) == 0) break;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r')) b--;
        if (!inside && (size_t)(b - a) == strlen(open) && strncmp(a, open, strlen(open)) == 0) {
            if (n == MAX_SNIPPETS) break;
            inside = 1;
            cap = 4096;
            len = 0;
            out[n] = (char *)malloc(cap);
            if (!out[n]) return n;
            out[n][0] = 0;
        } else if (inside && (size_t)(b - a) == strlen(close) &&
                   strncmp(a, close, strlen(close)) == 0) {
            inside = 0;
            n++;
        } else if (inside && b > a) {
            size_t l = (size_t)(b - a);
            if (len + l + 2 > cap) {
                char *q;
                while (len + l + 2 > cap) cap *= 2;
                q = (char *)realloc(out[n], cap);
                if (!q) return n;
                out[n] = q;
            }
            memcpy(out[n] + len, a, l);
            len += l;
            out[n][len++] = '\n';
            out[n][len] = 0;
        }
        p = *e ? e + 1 : e;
    }
    if (inside) free(out[n]);
    return n;
}

static void test_copies_match_header(void) {
    char *hdr = read_all("bdense.h"), *me = read_all(__FILE__);
    char *hs[MAX_SNIPPETS], *ts[MAX_SNIPPETS];
    int nh = 0, nt = 0, i;
    BDT_CHECKF(hdr && me, "cannot read bdense.h or %s (run from the repository root)", __FILE__);
    if (!hdr || !me) {
        free(hdr), free(me);
        return;
    }
    /* the manual lives in the first comment, before the include guard */
    nh = collect(hdr, "```c", "```", "#ifndef BDENSE_H", hs);
    nt = collect(me, "/* ```c */", "/* ``` */", NULL, ts);
    BDT_CHECKF(nh >= 11, "only %d snippets in the manual", nh);
    BDT_CHECKF(nh == nt, "%d snippets in the manual, %d copies in %s", nh, nt, __FILE__);
    for (i = 0; i < nh && i < nt; i++) {
        if (strcmp(hs[i], ts[i]) != 0) {
            BDT_CHECKF(0, "snippet %d differs:\n--- bdense.h\n%s--- %s\n%s", i + 1, hs[i],
                       __FILE__, ts[i]);
        }
    }
    printf("  %d manual snippets, %d compiled copies\n", nh, nt);
    for (i = 0; i < nh; i++) free(hs[i]);
    for (i = 0; i < nt; i++) free(ts[i]);
    free(hdr), free(me);
}

int main(void) {
    (void)bdt_close_ratio;
    BDT_RUN(test_contexts_and_errors);
    BDT_RUN(test_memory);
    BDT_RUN(test_random_numbers);
    BDT_RUN(test_kernels);
    BDT_RUN(test_denoisers);
    BDT_RUN(test_schedules);
    BDT_RUN(test_sampling);
    BDT_RUN(test_training);
    BDT_RUN(test_distilling);
    BDT_RUN(test_models_and_embedding);
    BDT_RUN(test_copies_match_header);
    return BDT_SUMMARY("test_manual");
}
