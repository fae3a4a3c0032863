/* bdense.h - v0.1.0 - diffusion training, B-DENSE distillation and fast sampling
   in one C99 header.  Licence: MIT (see end of file).

   Do this:
       #define BDENSE_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the
   implementation.  Every other file includes it plainly.

   OPTION MACROS (define before the implementation include)
       BDENSE_STATIC          all functions `static` (private to one TU)
       BDENSE_USE_CBLAS       bd_sgemm (the public GEMM and the CPU
                              backend's sgemm entry) calls cblas_sgemm (link
                              a CBLAS, e.g. -lopenblas).  The layer kernels
                              always use the built-in blocked GEMM, which
                              packs im2col inside the GEMM and gives the
                              same bits for any thread count; the default
                              `make` links no BLAS (docs/performance.md,
                              "CBLAS", has the per-shape measurements)
       BDENSE_CBLAS_HEADER    header to include for CBLAS (default <cblas.h>)
       BDENSE_MALLOC(sz) / BDENSE_FREE(p)
                              default allocator (define both or neither)
       BDENSE_REFERENCE_KERNELS
                              test-only: also compile the plain reference
                              kernels (static bd__*_ref) that
                              tests/test_kernels_fast.c checks the fast
                              ones against; a normal build has none

   QUICK START (the MANUAL below has the details; docs/tutorial.md the story)
       bd_context *ctx;  bd_context_config cc = bd_context_config_init();
       if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;
       bd_rng rng = bd_rng_init(42);
       float x[4]; bd_rng_normal(&rng, x, 4);        // 4 N(0,1) draws
       ...                                           // see the MANUAL
       bd_context_free(ctx);

   MANUAL
   Every ```c block below is compiled and run by tests/test_manual.c, which
   also checks that its copies match this text; ctx is a bd_context *.

   1. Contexts and errors
       A bd_context holds the allocator, the thread count, the kernel table
       and the message of the last error.  Every fallible call returns a
       bd_result; BD_SUCCESS is 0.  Nothing aborts or exits: a bad argument
       or a bad file is a code plus a message.  Use one context per thread.
       ```c
       bd_context_config cc = bd_context_config_init();
       cc.log = my_log;            // optional: sees every message
       cc.log_user_data = NULL;
       bd_context *ctx2;
       if (bd_context_init(&cc, &ctx2) != BD_SUCCESS) return BD_ERROR_OUT_OF_MEMORY;
       bd_result r = bd_context_set_threads(ctx2, 0);   // invalid: n >= 1
       if (r != BD_SUCCESS)
           printf("%s: %s\n", bd_result_string(r), bd_context_message(ctx2));
       bd_context_free(ctx2);
       ```
       where my_log is void my_log(void *user, bd_result code, const char *msg).

   2. Memory
       The library allocates only through the context's allocator
       {alloc, free, user_data} (default BDENSE_MALLOC/BDENSE_FREE), and only
       in *_init, *_create and reserve calls: forward, backward, sampler runs and
       training or distillation steps allocate nothing.  Sizes are int64_t
       or size_t; bd_alloc_array and bd_size_mul check for overflow.
       ```c
       bd_context_config cc = bd_context_config_init();
       cc.allocator.alloc = counting_alloc;   // void *(size_t, void *)
       cc.allocator.free = counting_free;     // void (void *, void *)
       cc.allocator.user_data = &counter;
       bd_context *ctx2;
       if (bd_context_init(&cc, &ctx2) != BD_SUCCESS) return BD_ERROR_OUT_OF_MEMORY;
       float *buf = (float *)bd_alloc_array(ctx2, 1000, sizeof(float));
       bd_free(ctx2, buf);
       bd_context_free(ctx2);
       ```

   3. Random numbers
       No global state: every random draw takes an explicit bd_rng
       (xoshiro256**), the same numbers on every platform.  bd_noise_fill
       makes sampler noise from a seed, so two samplers compare on the same
       noise.  bd_rng_jump gives an independent stream.
       ```c
       bd_rng rng = bd_rng_init(42);
       float noise[8];
       bd_rng_normal(&rng, noise, 8);           // N(0, 1)
       double u = bd_rng_uniform(&rng);         // [0, 1)
       bd_noise_fill(noise, 8, 7);              // = bd_rng_normal from bd_rng_init(7)
       ```

   4. Kernels
       One function per layer direction, forward and backward side by side
       (>>layers).  ALL backward kernels ACCUMULATE (+=) into every gradient
       they write, parameter or activation; the caller zeroes gradient
       buffers.  Their GEMMs run on the built-in blocked GEMM
       (bd_sgemm_builtin); bd_sgemm, for the caller's own products, uses
       CBLAS when built with BDENSE_USE_CBLAS.
       ```c
       float x[2 * 3] = {1, 2, 3, 4, 5, 6}, w[4 * 3] = {0}, b[4] = {0}, y[2 * 4];
       bd_linear_forward(y, x, w, b, 2, 3, 4);  // y (2,4) = x (2,3) w^T + b
       float dy[2 * 4] = {1, 1, 1, 1, 1, 1, 1, 1}, dw[4 * 3] = {0}, db[4] = {0};
       bd_linear_backward(NULL, dw, db, dy, x, w, 2, 3, 4);   // dw +=, db +=
       ```

   5. Denoisers
       A bd_denoiser maps z (N,C,H,W) and times t (N) to outputs
       (N,K*C,H,W): K branches, branch-major.  Samplers, training and
       distillation only see this interface; the MLP (flat data), the
       analytic Gaussian mixture (exact, for tests) and the UNet implement
       it.  reserve(max_batch) once, then forward/backward allocate nothing.
       ```c
       bd_rng rng = bd_rng_init(1);
       bd_mlp_config mc = bd_mlp_config_init(2);   // 2-D points
       bd_denoiser *net;
       bd_result r = bd_mlp_create(ctx, &mc, &rng, &net);
       if (r != BD_SUCCESS) return r;              // message: bd_context_message(ctx)
       float z[3 * 2] = {0}, t[3] = {0.1f, 0.5f, 0.9f}, out[3 * 2];
       r = bd_denoiser_reserve(net, 3);
       if (r == BD_SUCCESS) r = bd_denoiser_forward(net, out, z, t, 3, 0);
       bd_denoiser_free(net);
       ```

   6. Schedules, parametrisations, grids
       bd_schedule is the only thing that knows alpha_t and sigma_t (cosine
       or linear, docs/spec.md sec. 1).  The network output is read as eps, x0 or v (v by
       default).  Time grids run from t = 1 to t = 0.
       ```c
       bd_schedule sched;
       bd_schedule_init(&sched, BD_SCHEDULE_COSINE);
       double alpha, sigma, grid[5];
       bd_schedule_alpha_sigma(&sched, 0.5, &alpha, &sigma);  // alpha^2+sigma^2 = 1
       bd_time_grid(ctx, &sched, BD_GRID_UNIFORM_T, 4, grid); // 1, .75, .5, .25, 0
       ```

   7. Sampling
       A bd_sampler reserves its buffers for max_batch once; bd_sampler_run
       walks a grid (DDIM, DDPM, Euler, Heun, DPM-Solver++(2M)) from the
       caller's noise, in place, and reports the NFE.  A student samples with
       DDIM on its own grid, last branch (the defaults read branch K-1).
       ```c
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
       ```

   8. Training a teacher
       bd_trainer does docs/spec.md sec. 3: t ~ U, eps, z_t, loss in the model's
       parametrisation, AdamW with clipping, an EMA (what gets sampled).
       Data comes from a callback that fills a batch from the rng it is
       given, so a run and its resume are bit-exact.
       ```c
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
       ```

   9. Distilling a student (B-DENSE)
       A student is the teacher's network with a K-times wider output layer,
       every branch starting as the teacher's output.  bd_distill trains it
       by progressive (PD, needs data batches) or trajectory distillation
       (TD, the teacher's ODE solved from noise); branch k learns the x_hat
       whose DDIM jump lands on the teacher's k-th intermediate state.
       K = 1 (or BD_WEIGHTS_FINAL) is the sparse baseline.  The state file
       is a model checkpoint of the student (EMA weights, its grid: what
       bd_model_load and `bdense sample` read) that also holds everything
       bd_distill_load_state needs to continue bit for bit.
       ```c
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
       ```
       where teacher is a trained bd_denoiser (section 8).

   10. Models and checkpoints
       A bd_model is a network plus what gives its outputs a meaning: the
       parametrisation, the schedule and, for a student, its time grid.
       bd_model_save writes a safetensors file with docs/spec.md sec. 6 names (loadable
       by tools/bdense_torch.py); bd_model_load reads it back, validated.
       ```c
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
       ```

   11. Embedding: generate on demand
       Load once, reserve once, then every call is allocation-free and
       seeded.  A student samples with DDIM on its own grid (m->grid), last
       branch.  examples/sprites/ is the complete program.
       ```c
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
       ```

   12. Threads, BLAS and backends
       bd_context_set_threads bounds the compute threads a context uses
       (OpenMP teams; the kernels never call a BLAS, so there is no second
       thread pool).  With BDENSE_USE_CBLAS only bd_sgemm runs in the
       CBLAS (OpenBLAS threads follow OPENBLAS_NUM_THREADS).  The context
       also carries the kernel table (>>backend): the CPU kernels by
       default; an accelerator backend replaces operations there, the rest
       stay on the CPU.
       There is one trainer, one sampler and one distiller: each runs
       where its models live, through their context's kernel table.  To
       train, sample or distil on a GPU, move the models
       (bd_denoiser_to_context(net, gpu), a UNet) and make the trainer,
       sampler or distiller after the move; batches and samples stay host
       arrays, and bd_model_save / bd_model_resume and
       bd_distill_save_state / _load_state download and upload the
       state (docs/cuda.md).

   (further sections are added as the library grows)

   TABLE OF CONTENTS (search for the tag)
       >>core         result codes, context and allocator, rng, tensors, file plumbing
       >>gemm         built-in blocked GEMM; bd_sgemm (optionally CBLAS)
       >>layers       layer kernels, forward and backward
       >>backend      kernel table (CPU default, CUDA override), vector ops
       >>denoiser     the network interface samplers and training use; MLP denoiser
       >>unet         the reference UNet (docs/spec.md sec. 6)
       >>schedule     noise schedules, parametrisations, time grids
       >>sampler      DDIM, DDPM, Euler, Heun, DPM-Solver++(2M)
       >>train        Adam/AdamW, EMA, teacher training
       >>distill      B-DENSE distillation (PD and TD)
       >>checkpoint   bd_model, safetensors container and its JSON, save/load/resume
       >>formats      files and pictures: .npy, IDX, gzip, PNG, plots, CSV, built-in data
*/
#ifndef BDENSE_H
#define BDENSE_H

#include <stddef.h>
#include <stdint.h>

#define BDENSE_VERSION_MAJOR 0
#define BDENSE_VERSION_MINOR 1
#define BDENSE_VERSION_PATCH 0
#define BDENSE_VERSION_STRING "0.1.0"

#ifndef BDAPI
#ifdef BDENSE_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define BDAPI static __attribute__((unused))
#else
#define BDAPI static
#endif
#else
#define BDAPI extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* >>core                                                                   */
/* ======================================================================== */
#define BD_RESULT_LIST(X)                                                    \
    X(BD_SUCCESS, "success")                                                 \
    X(BD_ERROR_INVALID_ARGUMENT, "invalid argument")                         \
    X(BD_ERROR_OUT_OF_MEMORY, "out of memory")                               \
    X(BD_ERROR_OVERFLOW, "size overflow")                                    \
    X(BD_ERROR_SHAPE, "shape mismatch")                                      \
    X(BD_ERROR_CONFIG, "invalid or mismatched configuration")                \
    X(BD_ERROR_IO, "file i/o error")                                         \
    X(BD_ERROR_FORMAT, "malformed or corrupted file")                        \
    X(BD_ERROR_UNSUPPORTED, "unsupported feature")                           \
    X(BD_ERROR_NONFINITE, "non-finite value (NaN or Inf)")                   \
    X(BD_ERROR_STATE, "object used in the wrong state")                      \
    X(BD_ERROR_BACKEND, "compute backend error")

typedef enum bd_result {
#define BD__ENUM(name, str) name,
    BD_RESULT_LIST(BD__ENUM)
#undef BD__ENUM
    BD_RESULT_COUNT
} bd_result;

/* Static string for a code ("unknown result" for values out of range). */
BDAPI const char *bd_result_string(bd_result r);

typedef struct bd_allocator {
    void *(*alloc)(size_t size, void *user_data); /* NULL on failure */
    void (*free)(void *ptr, void *user_data);     /* free(NULL) is a no-op */
    void *user_data;
} bd_allocator;

/* Called with every error (and warnings/info) the library reports. */
typedef void (*bd_log_fn)(void *user_data, bd_result code, const char *message);

typedef struct bd_context_config {
    bd_allocator allocator; /* all-NULL fields = BDENSE_MALLOC/BDENSE_FREE */
    bd_log_fn log;          /* optional */
    void *log_user_data;
    int n_threads;          /* >= 1; compute threads this context may use */
} bd_context_config;

typedef struct bd_backend bd_backend;

/* A context owns no model: it is the allocator, the message buffer, the
   thread count and the kernel table.  Use one context per host thread. */
typedef struct bd_context {
    bd_allocator allocator;
    bd_log_fn log;
    void *log_user_data;
    int n_threads;
    const bd_backend *backend; /* kernel table; CPU by default */
    bd_result last_result;
    char message[512];
} bd_context;

BDAPI bd_context_config bd_context_config_init(void);
BDAPI bd_result bd_context_init(const bd_context_config *config, bd_context **out);
BDAPI void bd_context_free(bd_context *ctx);
/* Detailed message of the last error on this context ("" if none). */
BDAPI const char *bd_context_message(const bd_context *ctx);
BDAPI bd_result bd_context_set_threads(bd_context *ctx, int n_threads);

/* Allocation through the context's allocator.  bd_alloc_array checks
   count*size for overflow.  Both report failure on ctx and return NULL. */
BDAPI void *bd_alloc(bd_context *ctx, size_t size);
BDAPI void *bd_alloc_array(bd_context *ctx, size_t count, size_t size);
BDAPI void bd_free(bd_context *ctx, void *ptr);
/* Overflow-checked size arithmetic: 1 = ok (result in *out), 0 = overflow. */
BDAPI int bd_size_mul(size_t a, size_t b, size_t *out);
BDAPI int bd_size_add(size_t a, size_t b, size_t *out);
/* Record an error on ctx (message printf-style), call the log, return code. */
BDAPI bd_result bd_error(bd_context *ctx, bd_result code, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* xoshiro256** seeded by splitmix64.  Same numbers on every platform:
   uniforms are built from integer bits; normals use Box-Muller in double. */
typedef struct bd_rng {
    uint64_t s[4];
    int has_spare;
    double spare;
} bd_rng;

BDAPI bd_rng bd_rng_init(uint64_t seed);
BDAPI uint64_t bd_rng_u64(bd_rng *rng);
BDAPI double bd_rng_uniform(bd_rng *rng);          /* [0, 1) */
BDAPI double bd_rng_normal1(bd_rng *rng);          /* N(0, 1) */
BDAPI void bd_rng_normal(bd_rng *rng, float *out, int64_t n);
BDAPI void bd_rng_uniform_fill(bd_rng *rng, float *out, int64_t n, float lo, float hi);
/* Jump: an independent stream (2^128 steps ahead). */
BDAPI void bd_rng_jump(bd_rng *rng);

/* A float32 NCHW tensor.  `owned` tensors were allocated by bd_tensor_init
   and are released by bd_tensor_free; views point into other memory. */
typedef struct bd_tensor {
    float *data;
    int64_t n, c, h, w;
    int owned;
} bd_tensor;

BDAPI bd_result bd_tensor_init(bd_context *ctx, bd_tensor *t, int64_t n, int64_t c, int64_t h, int64_t w);
BDAPI bd_tensor bd_tensor_view(float *data, int64_t n, int64_t c, int64_t h, int64_t w);
BDAPI void bd_tensor_free(bd_context *ctx, bd_tensor *t);
BDAPI int64_t bd_tensor_numel(const bd_tensor *t);

/* ======================================================================== */
/* >>gemm                                                                   */
/* ======================================================================== */
/* Row-major C = alpha * op(A) op(B) + beta * C; op(A) is (M,K), op(B) (K,N).
   trans_a/trans_b: 0 = as stored, 1 = transposed.  bd_sgemm uses CBLAS when
   built with BDENSE_USE_CBLAS, else the built-in blocked GEMM;
   bd_sgemm_builtin is always the built-in one (tests compare the two), and
   it is the one the layer kernels use. */
BDAPI void bd_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                    float alpha, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float beta, float *C, int64_t ldc);
BDAPI void bd_sgemm_builtin(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                            float alpha, const float *A, int64_t lda, const float *B,
                            int64_t ldb, float beta, float *C, int64_t ldc);

/* ======================================================================== */
/* >>layers                                                                 */
/* ======================================================================== */
/* Conventions: arguments are outputs, caches, inputs, parameters, dims.
   Shapes in PyTorch order.  Backward kernels ACCUMULATE (+=) into every
   gradient (parameter and activation); a NULL gradient pointer is skipped. */

/* linear: out (N,Out) = x (N,In) w^T + b;  w (Out,In), b (Out) or NULL */
BDAPI void bd_linear_forward(float *out, const float *x, const float *w, const float *b,
                             int64_t N, int64_t In, int64_t Out);
BDAPI void bd_linear_backward(float *dx, float *dw, float *db, const float *dout,
                              const float *x, const float *w, int64_t N, int64_t In, int64_t Out);

/* silu: out = x * sigmoid(x), n elements (out may equal x for forward) */
BDAPI void bd_silu_forward(float *out, const float *x, int64_t n);
BDAPI void bd_silu_backward(float *dx, const float *dout, const float *x, int64_t n);

/* conv2d (k x k, stride s, zero padding p), via im2col + GEMM; k = 1,
   s = 1, p = 0 skips im2col.  Ho = (H + 2p - k)/s + 1, Wo likewise.
   out (N,Cout,Ho,Wo), x (N,Cin,H,W), w (Cout,Cin,k,k), b (Cout) or NULL.
   col: workspace of bd_conv2d_workspace_floats(...) floats (for a 1x1
   convolution it may be NULL: only the fast weight gradient uses it there,
   and a plain GEMM replaces it).  Backward: dx (N,Cin,H,W) +=, dw +=,
   db +=. */
BDAPI int64_t bd_conv2d_workspace_floats(int64_t Cin, int64_t H, int64_t W, int64_t k,
                                         int64_t stride, int64_t pad);
BDAPI void bd_conv2d_forward(float *out, float *col, const float *x, const float *w,
                             const float *b, int64_t N, int64_t Cin, int64_t H, int64_t W,
                             int64_t Cout, int64_t k, int64_t stride, int64_t pad);
BDAPI void bd_conv2d_backward(float *dx, float *dw, float *db, float *col, const float *dout,
                              const float *x, const float *w, int64_t N, int64_t Cin,
                              int64_t H, int64_t W, int64_t Cout, int64_t k, int64_t stride,
                              int64_t pad);

/* GroupNorm with affine, eps 1e-5: out (N,C,HW), mean/rstd (N,G) caches,
   x (N,C,HW), gamma/beta (C).  C % G == 0.  Backward: dx +=, dgamma +=,
   dbeta +=. */
BDAPI void bd_groupnorm_forward(float *out, float *mean, float *rstd, const float *x,
                                const float *gamma, const float *beta, int64_t N, int64_t C,
                                int64_t HW, int64_t G);
BDAPI void bd_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout,
                                 const float *x, const float *mean, const float *rstd,
                                 const float *gamma, int64_t N, int64_t C, int64_t HW, int64_t G);

/* fused GroupNorm + SiLU: out = silu(groupnorm(x)), same caches as
   groupnorm.  The GroupNorm output is not stored: backward recomputes it
   from x, mean, rstd, gamma, beta.  Backward: dout is the gradient of out;
   dx +=, dgamma +=, dbeta +=. */
BDAPI void bd_groupnorm_silu_forward(float *out, float *mean, float *rstd, const float *x,
                                     const float *gamma, const float *beta, int64_t N, int64_t C,
                                     int64_t HW, int64_t G);
BDAPI void bd_groupnorm_silu_backward(float *dx, float *dgamma, float *dbeta, const float *dout,
                                      const float *x, const float *mean, const float *rstd,
                                      const float *gamma, const float *beta, int64_t N,
                                      int64_t C, int64_t HW, int64_t G);

/* nearest x2 upsample: out (N,C,2H,2W), x (N,C,H,W).  Backward dx +=. */
BDAPI void bd_upsample2x_forward(float *out, const float *x, int64_t N, int64_t C, int64_t H,
                                 int64_t W);
BDAPI void bd_upsample2x_backward(float *dx, const float *dout, int64_t N, int64_t C, int64_t H,
                                  int64_t W);

/* channel concat: out (N,C1+C2,HW) = [a (N,C1,HW) | b (N,C2,HW)].
   Backward da +=, db +=. */
BDAPI void bd_concat_forward(float *out, const float *a, const float *b, int64_t N, int64_t C1,
                             int64_t C2, int64_t HW);
BDAPI void bd_concat_backward(float *da, float *db, const float *dout, int64_t N, int64_t C1,
                              int64_t C2, int64_t HW);

/* per-channel broadcast add, in place: x (N,C,HW) += e (N,C)[:, :, None].
   Backward: de (N,C) += sum over HW of dout (the x gradient passes through
   unchanged, so the caller keeps it). */
BDAPI void bd_add_channel_forward(float *x, const float *e, int64_t N, int64_t C, int64_t HW);
BDAPI void bd_add_channel_backward(float *de, const float *dout, int64_t N, int64_t C,
                                   int64_t HW);

/* residual add: out = a + b (n elements; out may alias a or b).
   Backward: da += dout, db += dout. */
BDAPI void bd_add_forward(float *out, const float *a, const float *b, int64_t n);
BDAPI void bd_add_backward(float *da, float *db, const float *dout, int64_t n);

/* multi-head self-attention core over HW positions.
   qkv (N,3C,HW) = [q | k | v] channel blocks; head h owns channels
   h*Ch..(h+1)*Ch-1 of each block, Ch = C/heads.
   att (N,heads,HW,HW) cache: att[n,h,i,j] = softmax_j(q_i . k_j / sqrt(Ch)).
   out (N,C,HW): out[n, h*Ch+c, i] = sum_j att[n,h,i,j] v[n, h*Ch+c, j].
   Backward: dqkv (N,3C,HW) +=; scratch (HW*HW floats) is workspace. */
BDAPI void bd_attention_forward(float *out, float *att, const float *qkv, int64_t N, int64_t C,
                                int64_t HW, int64_t heads);
BDAPI void bd_attention_backward(float *dqkv, float *scratch, const float *dout,
                                 const float *qkv, const float *att, int64_t N, int64_t C,
                                 int64_t HW, int64_t heads);

/* sinusoidal embedding of c_noise (N): out (N,dim),
   out[n,i] = cos(c*f_i), out[n,half+i] = sin(c*f_i), f_i = exp(-ln(1e4) i/half),
   half = dim/2 (dim even).  Forward only: time is not trained through. */
BDAPI void bd_timestep_embedding_forward(float *out, const float *c_noise, int64_t N,
                                         int64_t dim);

/* weighted MSE: loss = (1/N) sum_n w_n * mean_d (pred - target)^2, with
   pred/target (N,D), w (N) or NULL (= all 1).  Returns the loss (double
   accumulation).  Backward: dpred += 2 w_n (pred - target) / (N D). */
BDAPI double bd_mse_forward(const float *pred, const float *target, const float *w, int64_t N,
                            int64_t D);
BDAPI void bd_mse_backward(float *dpred, const float *pred, const float *target,
                           const float *w, int64_t N, int64_t D);

/* softmax cross-entropy over C classes, mean over the batch:
       loss = -(1/N) sum_n log softmax(logits_n)[labels_n]
   logits (N,C), labels (N) in 0..C-1.  prob (N,C) or NULL receives the
   softmax.  Returns the loss (double accumulation, max-shifted); a label
   outside 0..C-1 makes it NaN (and backward skips that row).
   Backward: dlogits += (softmax(logits) - onehot(label)) / N. */
BDAPI double bd_cross_entropy_forward(float *prob, const float *logits, const int32_t *labels,
                                      int64_t N, int64_t C);
BDAPI void bd_cross_entropy_backward(float *dlogits, const float *logits,
                                     const int32_t *labels, int64_t N, int64_t C);

/* ======================================================================== */
/* >>backend                                                                */
/* ======================================================================== */
/* Vector ops that training and sampling need on whichever memory holds the
   model (every backend provides them; the CPU versions are here).
   bd_vec_axpby: for n < N, d < D
       out[n*ldo + d] = sa * (a ? a[n] : 1) * x[n*ldx + d]
                      + sb * (b ? b[n] : 1) * y[n*ldy + d]
   y may be NULL (second term dropped); out may alias x or y (same ld);
   a, b are per-row coefficient arrays (N) in the backend's memory, or NULL.
   bd_vec_adam (PyTorch AdamW order, per element in double as bd_adam_step),
   with g' = grad_scale * g:
       m = beta1 m + (1-beta1) g';  v = beta2 v + (1-beta2) g'^2;
       p = p * (1 - lr*weight_decay);
       p = p - (lr/bias_c1) * m / (sqrt(v)/sqrt(bias_c2) + eps)
   with bias_c1 = 1-beta1^t, bias_c2 = 1-beta2^t (caller computes them).
   bd_vec_ema: ema = decay*ema + (1-decay)*p, in double (as bd_ema_update).
   bd_vec_sumsq: sum of squares in double (NaN/Inf propagate: a finite
   result means every element is finite). */
typedef struct bd_vec_adam_args {
    double lr, beta1, beta2, eps, weight_decay, grad_scale, bias_c1, bias_c2;
} bd_vec_adam_args;
BDAPI void bd_vec_axpby(float *out, int64_t ldo, const float *x, int64_t ldx, const float *a,
                        float sa, const float *y, int64_t ldy, const float *b, float sb,
                        int64_t N, int64_t D);
BDAPI void bd_vec_fill(float *out, float value, int64_t n);
BDAPI void bd_vec_adam(float *p, const float *g, float *m, float *v, int64_t n,
                       const bd_vec_adam_args *args);
BDAPI void bd_vec_ema(float *ema, const float *p, int64_t n, double decay);
BDAPI double bd_vec_sumsq(const float *x, int64_t n);

/* A backend is a table of kernel function pointers plus the buffer
   operations that go with its memory.  Every context has one; the CPU table
   (bd_backend_cpu) is the default and points at the bd_ kernels above.
   The CUDA translation unit (bdense_cuda.cu, bd_cuda_init) installs a table
   whose buffers live in device memory.

   Entries have the signature of the bd_ kernel of the same name with one
   extra first argument, `state` (the backend's private state, be->state),
   and follow the same accumulation rule (backward +=).  Call them through
   BD_OP:   BD_OP(ctx, conv2d_forward, out, col, x, w, b, N, Cin, H, W, Cout, k, s, p);

   Fallback rule (bd_context_set_backend): an entry left NULL is filled with
   the CPU kernel when the backend's buffers are host memory
   (device_memory == 0).  A device-memory backend must provide every entry
   (the CPU kernels cannot read device pointers); a missing one is
   BD_ERROR_UNSUPPORTED at registration, never a crash later.

   Errors: kernels return void (as the CPU ones).  A device backend records
   its first failure (launch error, cuBLAS error, scratch allocation)
   internally, skips further work, and reports it with bd_error from the
   next `sync` (bd_backend_sync); buffer operations report at once. */
struct bd_backend {
    const char *name;    /* "cpu", "cuda" */
    int device_memory;   /* 1: buffers are device memory, host must not touch */
    void *state;         /* first argument of every entry */
    /* called by bd_context_free while this backend is installed (may be NULL) */
    void (*release)(void *state, bd_context *ctx);

    /* ---- buffers: bytes, never elements ---- */
    bd_result (*buffer_alloc)(void *state, bd_context *ctx, size_t bytes, void **out);
    void (*buffer_free)(void *state, bd_context *ctx, void *ptr);
    bd_result (*buffer_zero)(void *state, bd_context *ctx, void *ptr, size_t bytes);
    bd_result (*copy_h2d)(void *state, bd_context *ctx, void *dst, const void *src, size_t bytes);
    bd_result (*copy_d2h)(void *state, bd_context *ctx, void *dst, const void *src, size_t bytes);
    bd_result (*copy_d2d)(void *state, bd_context *ctx, void *dst, const void *src, size_t bytes);
    /* wait for queued work; reports (and clears) the first recorded error */
    bd_result (*sync)(void *state, bd_context *ctx);

    /* ---- GEMM and >>layers kernels (same arguments as the bd_ versions) ---- */
    void (*sgemm)(void *state, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                  float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                  float beta, float *C, int64_t ldc);
    void (*linear_forward)(void *state, float *out, const float *x, const float *w,
                           const float *b, int64_t N, int64_t In, int64_t Out);
    void (*linear_backward)(void *state, float *dx, float *dw, float *db, const float *dout,
                            const float *x, const float *w, int64_t N, int64_t In, int64_t Out);
    void (*silu_forward)(void *state, float *out, const float *x, int64_t n);
    void (*silu_backward)(void *state, float *dx, const float *dout, const float *x, int64_t n);
    void (*conv2d_forward)(void *state, float *out, float *col, const float *x, const float *w,
                           const float *b, int64_t N, int64_t Cin, int64_t H, int64_t W,
                           int64_t Cout, int64_t k, int64_t stride, int64_t pad);
    void (*conv2d_backward)(void *state, float *dx, float *dw, float *db, float *col,
                            const float *dout, const float *x, const float *w, int64_t N,
                            int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t k,
                            int64_t stride, int64_t pad);
    void (*groupnorm_forward)(void *state, float *out, float *mean, float *rstd, const float *x,
                              const float *gamma, const float *beta, int64_t N, int64_t C,
                              int64_t HW, int64_t G);
    void (*groupnorm_backward)(void *state, float *dx, float *dgamma, float *dbeta,
                               const float *dout, const float *x, const float *mean,
                               const float *rstd, const float *gamma, int64_t N, int64_t C,
                               int64_t HW, int64_t G);
    void (*upsample2x_forward)(void *state, float *out, const float *x, int64_t N, int64_t C,
                               int64_t H, int64_t W);
    void (*upsample2x_backward)(void *state, float *dx, const float *dout, int64_t N, int64_t C,
                                int64_t H, int64_t W);
    void (*concat_forward)(void *state, float *out, const float *a, const float *b, int64_t N,
                           int64_t C1, int64_t C2, int64_t HW);
    void (*concat_backward)(void *state, float *da, float *db, const float *dout, int64_t N,
                            int64_t C1, int64_t C2, int64_t HW);
    void (*add_channel_forward)(void *state, float *x, const float *e, int64_t N, int64_t C,
                                int64_t HW);
    void (*add_channel_backward)(void *state, float *de, const float *dout, int64_t N, int64_t C,
                                 int64_t HW);
    void (*add_forward)(void *state, float *out, const float *a, const float *b, int64_t n);
    void (*add_backward)(void *state, float *da, float *db, const float *dout, int64_t n);
    void (*attention_forward)(void *state, float *out, float *att, const float *qkv, int64_t N,
                              int64_t C, int64_t HW, int64_t heads);
    void (*attention_backward)(void *state, float *dqkv, float *scratch, const float *dout,
                               const float *qkv, const float *att, int64_t N, int64_t C,
                               int64_t HW, int64_t heads);
    void (*timestep_embedding_forward)(void *state, float *out, const float *c_noise, int64_t N,
                                       int64_t dim);
    /* returns the loss on the host (a device backend waits for it) */
    double (*mse_forward)(void *state, const float *pred, const float *target, const float *w,
                          int64_t N, int64_t D);
    void (*mse_backward)(void *state, float *dpred, const float *pred, const float *target,
                         const float *w, int64_t N, int64_t D);

    /* ---- vector ops for training and sampling (bd_vec_* below) ---- */
    void (*vec_axpby)(void *state, float *out, int64_t ldo, const float *x, int64_t ldx,
                      const float *a, float sa, const float *y, int64_t ldy, const float *b,
                      float sb, int64_t N, int64_t D);
    void (*vec_fill)(void *state, float *out, float value, int64_t n);
    void (*vec_adam)(void *state, float *p, const float *g, float *m, float *v, int64_t n,
                     const bd_vec_adam_args *args);
    void (*vec_ema)(void *state, float *ema, const float *p, int64_t n, double decay);
    double (*vec_sumsq)(void *state, const float *x, int64_t n);

    /* ---- fused kernels (same arguments as the bd_ versions) ---- */
    void (*groupnorm_silu_forward)(void *state, float *out, float *mean, float *rstd,
                                   const float *x, const float *gamma, const float *beta,
                                   int64_t N, int64_t C, int64_t HW, int64_t G);
    void (*groupnorm_silu_backward)(void *state, float *dx, float *dgamma, float *dbeta,
                                    const float *dout, const float *x, const float *mean,
                                    const float *rstd, const float *gamma, const float *beta,
                                    int64_t N, int64_t C, int64_t HW, int64_t G);
};

/* The CPU table (host memory; entries are the bd_ kernels). */
BDAPI const bd_backend *bd_backend_cpu(void);
/* Install `be` on ctx (NULL = the CPU table).  NULL entries are filled from
   the CPU table when be->device_memory == 0; otherwise a NULL entry is
   BD_ERROR_UNSUPPORTED and the context keeps its backend.  `be` must outlive
   its use on ctx. */
BDAPI bd_result bd_context_set_backend(bd_context *ctx, bd_backend *be);
/* 1 when the context's buffers are device memory */
BDAPI int bd_backend_on_device(const bd_context *ctx);
/* Buffers of the context's backend (host memory for the CPU backend). */
BDAPI bd_result bd_backend_alloc(bd_context *ctx, size_t bytes, void **out);
BDAPI void bd_backend_free(bd_context *ctx, void *ptr);
BDAPI bd_result bd_backend_zero(bd_context *ctx, void *ptr, size_t bytes);
BDAPI bd_result bd_backend_upload(bd_context *ctx, void *dst, const void *host_src, size_t bytes);
BDAPI bd_result bd_backend_download(bd_context *ctx, void *host_dst, const void *src, size_t bytes);
BDAPI bd_result bd_backend_copy(bd_context *ctx, void *dst, const void *src, size_t bytes);
BDAPI bd_result bd_backend_sync(bd_context *ctx);
/* Copy between the buffers of two contexts' backends (host <-> device,
   host <-> host, device <-> device through a host bounce buffer). */
BDAPI bd_result bd_backend_transfer(bd_context *dst_ctx, void *dst, bd_context *src_ctx,
                                    const void *src, size_t bytes);
/* Run kernel `op` of ctx's backend: BD_OP(ctx, silu_forward, out, x, n). */
#define BD_OP(ctx, op, ...) ((ctx)->backend->op((ctx)->backend->state, __VA_ARGS__))

/* CUDA backend, defined in bdense_cuda.cu (link it and cuBLAS; not
   available with BDENSE_STATIC).  bd_cuda_init selects `device`, creates a
   stream and a cuBLAS handle, and installs the CUDA table on ctx (float32
   GEMMs, TF32 off).  bd_cuda_shutdown puts the CPU table back and frees
   everything (bd_context_free does it too).  bd_cuda_device_count is 0 when
   there is no driver or no GPU. */
extern int bd_cuda_device_count(void);
/* The same, with the runtime's reason when it is 0 (e.g. "CUDA driver
   version is insufficient for CUDA runtime version") written to why. */
extern int bd_cuda_probe(char *why, size_t cap);
extern bd_result bd_cuda_init(bd_context *ctx, int device);
extern bd_result bd_cuda_set_tf32(bd_context *ctx, int on);
extern void bd_cuda_shutdown(bd_context *ctx);

/* BACKEND-DECLARATIONS */

/* ======================================================================== */
/* >>denoiser                                                               */
/* ======================================================================== */
/* A denoiser maps noisy inputs z (N,C,H,W) and times t (N, in [0,1]) to
   raw network outputs o (N,K*C,H,W): K branches, branch-major (channel
   k*C + c is branch k).  Samplers, training and distillation only talk to
   this interface, so the UNet and the MLP denoiser are interchangeable.
   Parameters and their gradients are flat float slabs; `tensors` names the
   pieces (docs/spec.md sec. 6 names for the UNet).  Memory for activations is reserved
   for a maximum batch once (reserve); forward/backward then allocate
   nothing.  Internally the network sees c_noise = 1000 t. */
typedef struct bd_param_tensor {
    char name[80];
    int ndim;
    int64_t shape[4];
    int64_t offset; /* in floats, into params/grads */
    int64_t numel;
} bd_param_tensor;

typedef struct bd_denoiser bd_denoiser;

typedef struct bd_denoiser_vtable {
    const char *kind; /* "unet", "mlp" */
    bd_result (*reserve)(bd_denoiser *d, int64_t max_batch);
    /* train != 0 keeps the activation caches that backward needs */
    bd_result (*forward)(bd_denoiser *d, float *out, const float *z, const float *t, int64_t n,
                         int train);
    /* dout (N,K*C,H,W) of the last train forward; grads +=; dz (N,C,H,W) +=
       when not NULL */
    bd_result (*backward)(bd_denoiser *d, float *dz, const float *dout, int64_t n);
    /* a fresh network of the same architecture with `branches` output
       branches, randomly initialised from rng (weights not copied) */
    bd_result (*create_like)(const bd_denoiser *d, int64_t branches, bd_rng *rng,
                             bd_denoiser **out);
    void (*destroy)(bd_denoiser *d);
} bd_denoiser_vtable;

struct bd_denoiser {
    const bd_denoiser_vtable *vt;
    bd_context *ctx;
    int64_t in_ch, height, width; /* C, H, W of one sample (MLP: dim, 1, 1) */
    int64_t branches;             /* K */
    float *params;                /* (n_params) */
    float *grads;                 /* (n_params) */
    int64_t n_params;
    bd_param_tensor *tensors;
    int64_t n_tensors;
    int64_t reserved_batch;
    void *impl;
};

BDAPI bd_result bd_denoiser_reserve(bd_denoiser *d, int64_t max_batch);
BDAPI bd_result bd_denoiser_forward(bd_denoiser *d, float *out, const float *z, const float *t,
                                    int64_t n, int train);
BDAPI bd_result bd_denoiser_backward(bd_denoiser *d, float *dz, const float *dout, int64_t n);
BDAPI bd_result bd_denoiser_create_like(const bd_denoiser *d, int64_t branches, bd_rng *rng,
                                        bd_denoiser **out);
BDAPI void bd_denoiser_free(bd_denoiser *d);
BDAPI void bd_denoiser_zero_grad(bd_denoiser *d);
/* numbers of floats in one sample's input (C*H*W) and output (K*C*H*W) */
BDAPI int64_t bd_denoiser_sample_size(const bd_denoiser *d);
BDAPI const bd_param_tensor *bd_denoiser_find_tensor(const bd_denoiser *d, const char *name);
/* Copy weights from src into dst by tensor name.  Same shape: copied.  A
   dst tensor whose first dimension is K times src's (the widened output
   conv) gets src tiled K times: every branch starts as the teacher's
   output.  Any other difference is BD_ERROR_SHAPE. */
BDAPI bd_result bd_denoiser_copy_weights(bd_denoiser *dst, const bd_denoiser *src);

/* MLP denoiser (kind "mlp") for flat data of `dim` floats (C = dim,
   H = W = 1):
       temb = time_mlp.2(SiLU(time_mlp.0(sinusoidal(1000 t, temb_dim))))
       a_0  = layers.0(z) + temb;   a_l = layers.l(SiLU(a_{l-1})) + temb
       out  = out(SiLU(a_{depth-1}))            -> K*dim (branch-major)
   Linear layers are initialised like PyTorch's nn.Linear
   (U(-1/sqrt(in), 1/sqrt(in)) for weight and bias). */
typedef struct bd_mlp_config {
    int64_t dim;      /* D >= 1 */
    int64_t hidden;   /* width (128) */
    int64_t depth;    /* hidden layers >= 1 (3) */
    int64_t temb_dim; /* sinusoidal embedding size, even (32) */
    int64_t branches; /* K (1) */
} bd_mlp_config;
BDAPI bd_mlp_config bd_mlp_config_init(int64_t dim);
BDAPI bd_result bd_mlp_create(bd_context *ctx, const bd_mlp_config *config, bd_rng *rng,
                              bd_denoiser **out);

/* MLP-DECLARATIONS (MLP denoiser, analytic Gaussian-mixture denoiser) */

/* ======================================================================== */
/* >>unet                                                                   */
/* ======================================================================== */
/* The reference UNet of docs/spec.md sec. 6 behind the bd_denoiser interface (kind
   "unet").  docs/unet.md walks through the architecture. */
#define BD_UNET_MAX_LEVELS 8

typedef struct bd_unet_config {
    int64_t in_ch;                          /* C: image channels */
    int64_t image_size;                     /* H = W; divisible by 2^(levels-1) */
    int64_t ch;                             /* base width (even, divisible by groups) */
    int64_t levels;                         /* L = number of ch_mult entries, 1..8 */
    int64_t ch_mult[BD_UNET_MAX_LEVELS];    /* m_0..m_{L-1} */
    int64_t nres;                           /* ResBlocks per level (encoder) */
    int attn[BD_UNET_MAX_LEVELS];           /* 1 = attention after each ResBlock of level l */
    int64_t groups;                         /* GroupNorm groups G (eps 1e-5) */
    int64_t heads;                          /* attention heads (also the middle block's) */
    int64_t branches;                       /* K output branches, 1..64 */
} bd_unet_config;

/* docs/spec.md sec. 6 `small`: C=1, 28x28, ch=32, m=(1,2,2), nres=1, attention at level 2
   (and in the middle), G=8, heads=1, K=1. */
BDAPI bd_unet_config bd_unet_config_init(void);
/* Checks every field; the message says which rule failed.  ctx may be NULL. */
BDAPI bd_result bd_unet_config_validate(bd_context *ctx, const bd_unet_config *cfg);
/* Sizes of a valid config without building it: parameters (floats),
   activation floats kept per sample by a training forward (caches; the
   gradient and scratch slabs come on top, see docs/unet.md), and the FLOPs of
   one forward at batch 1 (2 per multiply-add; GEMM-like work only).  Any
   pointer may be NULL. */
BDAPI bd_result bd_unet_config_stats(bd_context *ctx, const bd_unet_config *cfg,
                                     int64_t *n_params, int64_t *act_floats_per_sample,
                                     int64_t *flops);
/* Config string helpers for checkpoint metadata: "1,2,2" and "2" (the
   attention levels, "" for none).  Return the length written (buf is always
   NUL-terminated when cap > 0). */
BDAPI int bd_unet_format_mult(const bd_unet_config *cfg, char *buf, size_t cap);
BDAPI int bd_unet_format_attn(const bd_unet_config *cfg, char *buf, size_t cap);
/* Parse them back (strict: comma-separated decimal integers, no spaces). */
BDAPI bd_result bd_unet_parse_mult(bd_context *ctx, const char *s, bd_unet_config *cfg);
BDAPI bd_result bd_unet_parse_attn(bd_context *ctx, const char *s, bd_unet_config *cfg);

/* A UNet denoiser initialised from rng: conv/linear weights and biases
   U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default), GroupNorm weight 1
   bias 0, and zero weights+bias for every ResBlock's conv2, every attention
   proj and conv_out (DDPM/ADM zero_module).  *out is freed with
   bd_denoiser_free. */
BDAPI bd_result bd_unet_init(bd_context *ctx, const bd_unet_config *cfg, bd_rng *rng,
                             bd_denoiser **out);
/* The config of a "unet" denoiser (BD_ERROR_INVALID_ARGUMENT for other kinds). */
BDAPI bd_result bd_unet_get_config(const bd_denoiser *d, bd_unet_config *cfg);

/* ---- where a model lives -------------------------------------------------
   bd_trainer, bd_sampler and bd_distill run in the model's context backend
   (above): on a CPU context on the CPU, on a device context (CUDA) their
   networks, Adam and EMA on the device.  bd_distill needs its teacher and
   student on one backend.

   Moving a model: bd_denoiser_to_context(d, ctx) re-homes a denoiser's
   parameters, gradients and activation slab in ctx's backend (host <->
   device); both contexts must share one host allocator.  Trainers and
   samplers made before a move must be freed and made again.  Functions
   that read d->params on the host (bd_model_save without a trainer,
   copy_weights) need the model moved back first.  Only the "unet" kind
   supports device contexts. */
BDAPI bd_result bd_denoiser_to_context(bd_denoiser *d, bd_context *ctx);

/* UNET-DECLARATIONS */

/* ======================================================================== */
/* >>schedule                                                               */
/* ======================================================================== */
typedef enum bd_param_kind { BD_PARAM_EPS = 0, BD_PARAM_X0 = 1, BD_PARAM_V = 2 } bd_param_kind;
typedef enum bd_schedule_kind { BD_SCHEDULE_COSINE = 0, BD_SCHEDULE_LINEAR = 1 } bd_schedule_kind;

/* The only thing that knows alpha_t and sigma_t (docs/spec.md sec. 1).  `linear` keeps the
   log(alpha_bar) table of docs/spec.md sec. 6 (entries 0..1000, entry 0 = 0). */
typedef struct bd_schedule {
    bd_schedule_kind kind;
    double log_alpha_bar[1001];
} bd_schedule;

BDAPI bd_result bd_schedule_init(bd_schedule *s, bd_schedule_kind kind);
BDAPI void bd_schedule_alpha_sigma(const bd_schedule *s, double t, double *alpha, double *sigma);
BDAPI double bd_schedule_logsnr(const bd_schedule *s, double t);
/* inverse of logsnr (monotone decreasing in t), computed in double */
BDAPI double bd_schedule_t_from_logsnr(const bd_schedule *s, double logsnr);
BDAPI const char *bd_schedule_name(bd_schedule_kind k);               /* "cosine" */
BDAPI bd_result bd_schedule_parse(const char *name, bd_schedule_kind *out);
BDAPI const char *bd_param_name(bd_param_kind k);                     /* "eps", "x0", "v" */
BDAPI bd_result bd_param_parse(const char *name, bd_param_kind *out);
/* sigma_t / alpha_t at the smallest non-zero grid time (EDM's sigma_min) */
#define BD_GRID_SIGMA_MIN 0.002
/* Karras/EDM rho */
#define BD_GRID_RHO 7.0

/* Smallest non-zero time of the logSNR and Karras grids: the t where
   sigma_t/alpha_t = BD_GRID_SIGMA_MIN, clipped to [0, 1]. */
BDAPI double bd_schedule_t_min(const bd_schedule *s);

/* Parametrisations (docs/spec.md sec. 2), per sample n with its own alpha[n], sigma[n]
   (double).  o is (N, K*D): K branches, branch-major; `branch` picks one.
   z, x_hat, eps_hat are (N, D).  x_hat or eps_hat may be NULL.  Where
   sigma = 0 (x0 param) or alpha = 0 (eps param) the undefined quantity is
   taken from the other one (eps_hat = 0, x_hat = z). */
BDAPI void bd_param_predict(bd_param_kind p, float *x_hat, float *eps_hat, const float *o,
                            int64_t K, int64_t branch, const float *z, const double *alpha,
                            const double *sigma, int64_t N, int64_t D);
/* Training target of the network output: eps -> eps, x0 -> x,
   v -> alpha*eps - sigma*x.  target, x, eps are (N, D). */
BDAPI void bd_param_target(bd_param_kind p, float *target, const float *x, const float *eps,
                           const double *alpha, const double *sigma, int64_t N, int64_t D);
/* x_hat = a*z + c*o is affine in the output o: the two coefficients for one
   (alpha, sigma).  Losses in x space backpropagate through c. */
BDAPI void bd_param_x_coeffs(bd_param_kind p, double alpha, double sigma, double *a, double *c);

/* Time grids (docs/spec.md sec. 4 and 6 details): steps+1 doubles, out[0] = 1 > ... >
   out[steps] = 0, computed in double.  uniform_t: 1 - i/steps.  logsnr and
   karras: steps points from t = 1 to bd_schedule_t_min (uniform in logSNR,
   or Karras rho = 7 in sigma/alpha), then 0; with steps = 1 the grid is
   {1, 0}. */
typedef enum bd_grid_kind {
    BD_GRID_UNIFORM_T = 0,
    BD_GRID_LOGSNR = 1,
    BD_GRID_KARRAS = 2
} bd_grid_kind;
BDAPI bd_result bd_time_grid(bd_context *ctx, const bd_schedule *s, bd_grid_kind kind,
                             int64_t steps, double *out);
BDAPI const char *bd_grid_name(bd_grid_kind k); /* "uniform_t", "logsnr", "karras" */
BDAPI bd_result bd_grid_parse(const char *name, bd_grid_kind *out);
/* SCHEDULE-DECLARATIONS */

/* ======================================================================== */
/* >>sampler                                                                */
/* ======================================================================== */
/* Samplers walk a time grid t_0 = 1 > ... > t_S = 0 from the caller's
   starting noise (x ~ N(0, I) taken as z_1; bd_noise_fill makes it from a
   seed) and return x_hat at t = 0.  One network call = one NFE:
       DDIM      z_s = alpha_s x_hat + sqrt(sigma_s^2 - c^2) eps_hat + c noise,
                 c = eta (sigma_s/sigma_t) sqrt(1 - alpha_t^2/alpha_s^2)   (S NFE)
       DDPM      ancestral: z_s ~ q(z_s | z_t, x = x_hat), posterior
                 variance (beta tilde)                                      (S NFE)
       EULER     EDM Euler on dx/dsig = (x - D)/sig, x = z/alpha,
                 sig = sigma/alpha                                          (S NFE)
       HEUN      EDM Heun (2nd order); the first step from t = 1 and the
                 last to sig = 0 are Euler                                 (2S-2 NFE)
       DPMPP_2M  DPM-Solver++(2M), data prediction, multistep; first and
                 last (to t = 0) steps first order                          (S NFE)
   A sampler object reserves every buffer for max_batch once; runs then
   allocate nothing.  Batches larger than max_batch run in chunks.  It runs
   where the model lives: its buffers are in the model's context backend
   and every step is a chain of backend ops (vec_axpby, vec_fill), so with
   the CUDA backend only the starting noise, the samples and the DDPM/DDIM
   noise cross the bus.  The step coefficients are computed in double and
   applied in float. */
typedef enum bd_sampler_kind {
    BD_SAMPLER_DDIM = 0,
    BD_SAMPLER_DDPM = 1,
    BD_SAMPLER_EULER = 2,
    BD_SAMPLER_HEUN = 3,
    BD_SAMPLER_DPMPP_2M = 4
} bd_sampler_kind;

/* Largest number of steps a sampler run accepts. */
#define BD_SAMPLER_MAX_STEPS 4096

/* Called once per grid step i = 0..S-1 (before the step is taken) with the
   current state z = z_{t_i} (n, D), the model's x_hat at t_i (n, D), the
   step's times t = t_i and s = t_{i+1}, and the first sample's index in the
   caller's batch (runs over max_batch go in chunks).  The final state is
   the run's output.  Return nonzero to stop the run (BD_ERROR_STATE). */
typedef int (*bd_sampler_callback)(void *user_data, int64_t step, double t, double s,
                                   const float *z, const float *x_hat, int64_t n, int64_t D,
                                   int64_t first);

typedef struct bd_sampler_config {
    bd_sampler_kind kind;
    int64_t steps;             /* S >= 1 */
    bd_grid_kind grid;         /* used when custom_grid is NULL */
    const double *custom_grid; /* steps+1 times, 1 -> 0, strictly decreasing, or NULL */
    int64_t branch;            /* output branch to read; -1 = the last (K-1) */
    bd_param_kind param;       /* how the network output is read */
    bd_schedule_kind schedule;
    double eta;                /* DDIM only; 0 = deterministic */
    int clip_x;                /* clip x_hat to [-1, 1] (images); default 0 */
    bd_sampler_callback callback;
    void *user_data;
} bd_sampler_config;

/* Defaults: the kind and steps given, uniform_t grid (for the cosine
   schedule the logSNR and Karras grids start at sigma/alpha = 1e4 because
   of the alpha >= 1e-4 clamp and spend early steps on almost pure noise;
   see docs/samplers.md), last branch, v, cosine, eta 0, no clipping, no
   callback. */
BDAPI bd_sampler_config bd_sampler_config_init(bd_sampler_kind kind, int64_t steps);
BDAPI const char *bd_sampler_name(bd_sampler_kind k); /* "ddim","ddpm","euler","heun","dpmpp2m" */
BDAPI bd_result bd_sampler_parse(const char *name, bd_sampler_kind *out);

typedef struct bd_sampler {
    bd_context *ctx;    /* host allocations and messages (the init ctx) */
    bd_denoiser *model; /* computes in model->ctx */
    bd_context *model_ctx; /* model->ctx at init: owns the buffers below (the
                              sampler may be freed after its model) */
    int64_t max_batch, D, KD;
    bd_schedule sched; /* cached for the last run's schedule kind */
    int sched_valid;
    double grid[BD_SAMPLER_MAX_STEPS + 1];
    /* buffers in the model's backend (max_batch rows): */
    float *z;       /* (B, D) state on a device backend (a host run works in x) */
    float *out;     /* (B, K*D) raw network output */
    float *t;       /* (B) */
    float *x_hat;   /* (B, D) */
    float *eps_hat; /* (B, D) */
    float *aux;     /* (B, D) DPM++ previous x_hat / Heun first slope */
    float *aux2;    /* (B, D) Heun predictor */
    float *noise;   /* (B, D) */
    /* host staging, device backends only (NULL on the CPU): noise draws,
       and z, x_hat, eps_hat for the callback and clip_x */
    float *h_noise, *h_z, *h_x, *h_e;
} bd_sampler;

BDAPI bd_result bd_sampler_init(bd_context *ctx, bd_denoiser *model, int64_t max_batch,
                                bd_sampler **out);
BDAPI void bd_sampler_free(bd_sampler *s);
/* x (n, C, H, W), host memory: in the starting noise, out the samples.
   rng: needed by DDPM and DDIM with eta > 0 (may be NULL otherwise).  nfe
   (may be NULL): network calls made per sample (the same for every chunk).
   The state is checked once per chunk, at the end (BD_ERROR_NONFINITE).
   On a device backend the callback and clip_x work on host copies (one
   download per step, and an upload per step for clip_x). */
BDAPI bd_result bd_sampler_run(bd_sampler *s, const bd_sampler_config *cfg, float *x, int64_t n,
                               bd_rng *rng, int64_t *nfe);
/* The grid a config resolves to (steps+1 doubles). */
BDAPI bd_result bd_sampler_grid(bd_context *ctx, const bd_sampler_config *cfg, double *out);

/* Fill x (count floats) with N(0,1) from a seed (bd_rng_init(seed)): two
   samplers given the same seed start from the same noise. */
BDAPI void bd_noise_fill(float *x, int64_t count, uint64_t seed);

/* One network call read as x_hat and eps_hat: out (N, K*D) is scratch for
   the raw output, t (N) the times; x_hat/eps_hat (N, D), either may be
   NULL.  Allocation-free once the model is reserved for N. */
BDAPI bd_result bd_model_predict(bd_denoiser *d, const bd_schedule *s, bd_param_kind p,
                                 int64_t branch, float *out, float *x_hat, float *eps_hat,
                                 const float *z, const float *t, int64_t N);

/* One DDIM jump per sample: z_s = alpha_s[n] x_hat + sigma_s[n] eps_hat.
   z_s, x_hat, eps_hat (N, D); z_s may alias either input. */
BDAPI void bd_ddim_jump(float *z_s, const float *x_hat, const float *eps_hat,
                        const double *alpha_s, const double *sigma_s, int64_t N, int64_t D);
/* Analytic denoiser (kind "analytic", no parameters): data is an equal-
   weight mixture of isotropic Gaussians N(points[m], std^2 I) in D =
   C*H*W dims.  Its output is the exact posterior mean E[x | z_t] in closed
   form, written in the parametrisation `param` on every branch.  backward
   is unsupported (there is nothing to train). */
typedef struct bd_analytic_config {
    int64_t in_ch, height, width; /* D = in_ch*height*width (dim, 1, 1) */
    const float *points;          /* (n_points, D), copied */
    int64_t n_points;
    double std;                   /* >= 0; 0 = point masses */
    bd_param_kind param;          /* v */
    bd_schedule_kind schedule;    /* cosine */
    int64_t branches;             /* K (1) */
} bd_analytic_config;
BDAPI bd_analytic_config bd_analytic_config_init(int64_t dim, const float *points,
                                                 int64_t n_points, double std);
BDAPI bd_result bd_analytic_create(bd_context *ctx, const bd_analytic_config *config,
                                   bd_denoiser **out);
/* The exact posterior mean alone: x_hat (N, D) for z (N, D) at times t (N). */
BDAPI bd_result bd_analytic_posterior_mean(bd_denoiser *d, float *x_hat, const float *z,
                                           const float *t, int64_t N);
/* SAMPLER-DECLARATIONS */

/* ======================================================================== */
/* >>train                                                                  */
/* ======================================================================== */
typedef enum bd_lr_schedule { BD_LR_CONSTANT = 0, BD_LR_COSINE = 1 } bd_lr_schedule;

typedef struct bd_adam_config {
    double lr;           /* peak learning rate (2e-4) */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* decoupled (AdamW); 0 = Adam */
    int64_t warmup_steps;        /* linear warm-up from lr/warmup to lr (0) */
    bd_lr_schedule lr_schedule;  /* after warm-up: constant or cosine to lr_min */
    int64_t total_steps;         /* cosine horizon (steps) */
    double lr_min;               /* cosine floor (0) */
    double grad_clip;            /* global L2 norm clip; <= 0 = off (1.0) */
} bd_adam_config;

BDAPI bd_adam_config bd_adam_config_init(void);
/* Learning rate used by step number `step` (1-based). */
BDAPI double bd_adam_lr(const bd_adam_config *c, int64_t step);

/* Optimiser state: m, v (n floats each, in the memory of the context's
   backend: host memory on the CPU, device memory on a device context) and
   the step count are public so a checkpoint can save and restore them. */
typedef struct bd_adam {
    bd_context *ctx;
    bd_adam_config config;
    int64_t n;
    float *m, *v;
    int64_t step; /* steps taken */
} bd_adam;

BDAPI bd_result bd_adam_init(bd_context *ctx, const bd_adam_config *config, int64_t n,
                             bd_adam *out);
BDAPI void bd_adam_free(bd_adam *a);
/* One AdamW step on params (n) with grads (n), both in the memory of the
   optimiser's context: clip by the global norm, bias-corrected moments,
   decoupled weight decay (PyTorch AdamW order), through the backend's
   vec_sumsq and vec_adam.  This is the one Adam update of the library: the
   trainer and the distiller take their steps through it.  A non-finite
   gradient returns BD_ERROR_NONFINITE and changes nothing.  grad_norm (may
   be NULL): the norm before clipping. */
BDAPI bd_result bd_adam_step(bd_adam *a, float *params, const float *grads, double *grad_norm);
/* ema = decay*ema + (1-decay)*params over n host floats */
BDAPI void bd_ema_update(float *ema, const float *params, int64_t n, double decay);
/* The EMA decay of one update (trainer and distiller): `decay`, or with
   warmup != 0 min(decay, (1+k)/(10+k)), where k counts the optimiser steps
   taken BEFORE this update (k = 0 on the first: decay 0.1), as diffusers'
   EMAModel.  The one warm-up rule of the library. */
BDAPI double bd_ema_decay(double decay, int warmup, int64_t k);

/* Teacher training (docs/spec.md sec. 3). */
typedef enum bd_loss_weight { BD_WEIGHT_NONE = 0, BD_WEIGHT_SNR_TRUNC = 1 } bd_loss_weight;
BDAPI const char *bd_loss_weight_name(bd_loss_weight w); /* "none", "snr_trunc" */
BDAPI bd_result bd_loss_weight_parse(const char *name, bd_loss_weight *out);

typedef struct bd_trainer_config {
    bd_param_kind param;       /* v */
    bd_schedule_kind schedule; /* cosine */
    bd_loss_weight weighting;  /* none */
    bd_adam_config adam;
    double ema_decay;    /* 0.999 */
    int ema_warmup;      /* 1: bd_ema_decay's warm-up, min(ema_decay, (1+k)/(10+k)) */
    double t_min;        /* t = max(1 - u, t_min), u ~ U[0,1): t in [t_min, 1]  (1e-5) */
    uint64_t seed;       /* trainer rng (t, eps) and data rng (a jumped copy) */
    int skip_nonfinite;  /* bd_trainer_run: skip non-finite steps instead of stopping */
} bd_trainer_config;

BDAPI bd_trainer_config bd_trainer_config_init(void);

/* Everything a resume needs is public: the model's params, ema, adam (m, v,
   step), rng and data_rng.  The trainer runs where the model lives: its
   tensors (ema, adam.m, adam.v and the work buffers) are buffers of the
   model's context backend (model->ctx; bd_denoiser_to_context moves a
   model), and every operation goes through that backend's table, so with
   the CUDA backend a step copies no layer data to the host.  On a CPU
   context they are plain host arrays.  Per step only the batch, the random
   draws (made on the host), a few per-sample coefficients (in) and the
   loss and gradient norm (out) cross the bus.  bd_model_save / _resume
   download and upload the state as needed. */
typedef struct bd_trainer {
    bd_context *ctx;     /* host allocations and messages (the init ctx) */
    bd_denoiser *model;  /* not owned; computes in model->ctx */
    bd_context *model_ctx; /* model->ctx at init: owns the backend buffers
                              (the trainer may be freed after its model) */
    bd_trainer_config config;
    bd_schedule sched;
    bd_adam adam;        /* m, v in the model's backend; step = steps taken */
    float *ema;          /* (n_params) EMA weights: what gets sampled */
    bd_rng rng;          /* draws t and eps */
    bd_rng data_rng;     /* handed to bd_trainer_run's data provider */
    int64_t max_batch, D, KD;
    double last_loss, last_grad_norm, last_lr;
    int64_t skipped;     /* non-finite steps skipped by bd_trainer_run */
    float *xbuf;         /* host (B, D): bd_trainer_run's batch */
    /* backend buffers (max_batch rows) */
    float *x, *eps, *z, *t;     /* (B,D) (B,D) (B,D) (B) */
    float *out, *dout;          /* (B, K*D) */
    float *tgt, *ybuf;          /* (B*K, D) */
    float *coef;                /* per-sample and per-row coefficients */
    /* host staging */
    float *h_eps, *h_t, *h_coef;
    double *h_alpha, *h_sigma;
    /* the next step's t and eps are drawn while a device runs this step's
       forward; they are used only if rng is still pre_from and n matches
       (rng always holds the state of the draws made so far) */
    int pre_valid;
    int64_t pre_n;
    bd_rng pre_from, pre_to;
} bd_trainer;

/* The trainer keeps `model` (not owned); EMA starts as a copy of its
   weights.  Reserves the model and every buffer for max_batch in the
   model's context backend; host staging and messages use ctx (normally
   model->ctx).  A model on a device context must be of kind "unet". */
BDAPI bd_result bd_trainer_init(bd_context *ctx, bd_denoiser *model,
                                const bd_trainer_config *config, int64_t max_batch,
                                bd_trainer **out);
BDAPI void bd_trainer_free(bd_trainer *tr);
/* One optimisation step on x (n, C, H, W), n <= max_batch: t, eps from the
   trainer rng, z_t, forward, loss (every branch gets the same target, the
   loss is the mean over branches), backward, clip, AdamW, EMA.  loss (may
   be NULL) receives the loss.  x is host memory on every backend.
   Non-finite loss or gradient: returns BD_ERROR_NONFINITE and leaves
   weights, EMA, Adam state and step as they were (the rng has advanced). */
BDAPI bd_result bd_trainer_step(bd_trainer *tr, const float *x, int64_t n, double *loss);
/* Copy the EMA weights into dst (same n_params), e.g. a sampling copy; dst
   may live on another context (host <-> device). */
BDAPI bd_result bd_trainer_copy_ema(const bd_trainer *tr, bd_denoiser *dst);

/* Data provider: fill x (n, C, H, W) with a batch; rng is the trainer's
   data_rng (use it for exact resume).  Non-success stops the loop. */
typedef bd_result (*bd_data_fn)(void *user_data, float *x, int64_t n, bd_rng *rng);
/* Progress: called after every step; return nonzero to stop early. */
typedef int (*bd_train_progress_fn)(void *user_data, int64_t step, int64_t total_steps,
                                    double loss, double lr);
/* `steps` calls of bd_trainer_step with batches of `batch` from `data`. */
BDAPI bd_result bd_trainer_run(bd_trainer *tr, int64_t steps, int64_t batch, bd_data_fn data,
                               void *data_user_data, bd_train_progress_fn progress,
                               void *progress_user_data);
/* ADAM-DECLARATIONS */

/* ======================================================================== */
/* >>distill                                                                */
/* ======================================================================== */
/* B-DENSE distillation (docs/spec.md sec. 5).  A K-branch student learns, from every
   student step t -> u, the x_hat that one DDIM jump from (z_t, t) needs to
   land on each of the teacher's intermediate states z_{s_1..s_K}.
   Layouts: a batch of N samples of D = C*H*W floats; student output o is
   (N, K*D) branch-major (branch k = o[n, k*D .. k*D+D-1]); per-branch
   quantities (teacher states, targets, times s_k) are (K, N, ...). */
typedef enum bd_distill_method {
    BD_DISTILL_PD = 0, /* progressive distillation (needs data) */
    BD_DISTILL_TD = 1, /* trajectory distillation (teacher ODE solutions) */
    BD_DISTILL_CD = 2  /* (multistep) consistency distillation (needs data), see bd_distill_step */
} bd_distill_method;
typedef enum bd_distill_weights {
    BD_WEIGHTS_UNIFORM = 0,  /* w_k = 1/K */
    BD_WEIGHTS_FINAL = 1,    /* w_K = 1, others 0 (sparse) */
    BD_WEIGHTS_LINEAR = 2,   /* w_k = k / (K(K+1)/2) */
    BD_WEIGHTS_AUX = 3,      /* w_K = 1, w_k = beta for k < K */
    BD_WEIGHTS_ANNEAL = 4,   /* w_k = (1-tau)/K + tau [k=K] */
    BD_WEIGHTS_ADAPTIVE = 5, /* loss-balanced, see bd_distill_branch_weights */
    BD_WEIGHTS_AGREE = 6     /* gradient agreement: dense group weight max(0, cos), see below */
} bd_distill_weights;
typedef enum bd_distill_space { BD_DISTILL_SPACE_X = 0, BD_DISTILL_SPACE_Z = 1 } bd_distill_space;
typedef enum bd_distill_distance { BD_DISTILL_L2 = 0, BD_DISTILL_L1 = 1 } bd_distill_distance;

BDAPI const char *bd_distill_method_name(bd_distill_method m);        /* "pd", "td", "cd" */
BDAPI bd_result bd_distill_method_parse(const char *name, bd_distill_method *out);
BDAPI const char *bd_distill_weights_name(bd_distill_weights w);      /* "uniform", ... */
BDAPI bd_result bd_distill_weights_parse(const char *name, bd_distill_weights *out);

/* Branch target x_tilde (N,D) of one teacher state (docs/spec.md sec. 5):
       x_tilde = (z_s - (sigma_s/sigma_t) z_t) / (alpha_s - (sigma_s/sigma_t) alpha_t)
   and x_tilde = z_s where sigma_s == 0 (s = 0).  z_t, z_s (N,D); alpha_t,
   sigma_t, alpha_s, sigma_s (N) per sample.  Computed in double. */
BDAPI void bd_distill_target(float *x_tilde, const float *z_t, const float *z_s,
                             const double *alpha_t, const double *sigma_t,
                             const double *alpha_s, const double *sigma_s, int64_t N, int64_t D);

/* lambda(t) = max(alpha_t^2 / sigma_t^2, 1) (docs/spec.md sec. 5); 1e30 cap at sigma = 0. */
BDAPI double bd_distill_lambda(double alpha_t, double sigma_t);

/* The multi-branch loss and its gradient w.r.t. the raw student output.
     o (N,K*D): student output, every branch read in `param`;  z_t (N,D);
     alpha_t, sigma_t (N);  alpha_s, sigma_s (K,N): times s_k of each branch;
     w (K): branch weights.
   space X: needs x_tilde (K,N,D) (bd_distill_target); z_s may be NULL.
       L = (1/N) sum_n lambda(t_n) sum_k w_k (1/D) sum_d (x_hat_k - x_tilde_k)^2
       (distance must be L2).
   space Z: needs z_s (K,N,D) (the teacher states); x_tilde may be NULL.
       z_hat_k = DDIM jump of branch k from (z_t, t) to s_k; no lambda:
       L = (1/N) sum_n sum_k w_k (1/D) sum_d dist(z_hat_k - z_s_k),
       dist = d^2 (L2) or |d| (L1).
   Returns L.  branch_loss (K) or NULL receives the unweighted per-branch
   terms (L = sum_k w_k branch_loss[k]).  dout (N,K*D) or NULL: dL/do is
   ADDED (+=), scaled by `grad_scale` (e.g. 1/steps when averaging). */
BDAPI double bd_distill_loss(float *dout, double *branch_loss, const float *o, const float *z_t,
                             const float *x_tilde, const float *z_s, const double *alpha_t,
                             const double *sigma_t, const double *alpha_s, const double *sigma_s,
                             const double *w, bd_param_kind param, bd_distill_space space,
                             bd_distill_distance distance, int64_t N, int64_t K, int64_t D,
                             double grad_scale);

/* Branch weights w (K) for a schedule.  beta: aux weight; tau in [0,1]:
   anneal progress.  ADAPTIVE uses ema (K), a running (bias-corrected) mean
   of each branch's own loss (NULL or non-positive final entry = not yet
   known: dense weights 1/(2(K-1))):  w_K = 1/2 and every dense branch
   w_k = min(1/2, (1/2) ema_K / sum_{j<K} ema_j), so the dense branches
   together (each at its natural scale) carry as much loss as the final
   branch, and none outweighs it; K = 1 gives w = 1.  In z space the early
   branches' losses are small (the c_k^2 factor), so ADAPTIVE drifts to the
   1/2 cap and behaves like uniform.
   AGREE: ema points to ONE value, the running (bias-corrected) cosine c
   between the gradients of the dense group (branches k < K, equal weights)
   and of the final branch w.r.t. the student's shared parameters (every
   tensor but the K*C-output head; measured by the distiller every step,
   at the cost of a second forward and backward): w_K = 1, w_k = max(0, c)/(K-1) for k < K; NULL =
   not yet measured (c = 0: sparse).  Dense terms that pull the shared
   network against the sampling branch get no weight.  See
   docs/distillation.md.  Invalid arguments: BD_ERROR_INVALID_ARGUMENT. */
BDAPI bd_result bd_distill_branch_weights(bd_context *ctx, double *w, bd_distill_weights kind,
                                          int64_t K, double beta, double tau,
                                          const double *ema);

/* Teacher grid: every student interval [t_i, t_{i+1}] of `student_grid`
   (N+1 times, 1 -> 0) split into Kt sub-steps, so the teacher grid (N*Kt+1
   times) nests the student grid (out[i*Kt] = student_grid[i]).
   LOGSNR: interior points uniform in logSNR between the ends, an end at
   t = 0 replaced by bd_schedule_t_min for placing them; T: uniform in t. */
typedef enum bd_distill_subdiv { BD_SUBDIV_LOGSNR = 0, BD_SUBDIV_T = 1 } bd_distill_subdiv;
BDAPI bd_result bd_distill_teacher_grid(bd_context *ctx, const bd_schedule *s,
                                        const double *student_grid, int64_t N, int64_t Kt,
                                        bd_distill_subdiv subdiv, double *out);

/* Trajectory source for TD: fill traj (n, S+1, C, H, W) with n teacher
   trajectories on the distiller's teacher grid (S = N*Kt; state 0 is the
   starting noise, state S the sample).  rng: the distiller's. */
typedef bd_result (*bd_traj_fn)(void *user_data, float *traj, int64_t n, bd_rng *rng);

/* TD, student input = its own detached state (teacher_forcing 0): where the
   dense (k < K) branches' teacher states come from.  A drift d of the
   student's z_t from the teacher's moves the x-target of a state from the
   teacher's z_t by (r_k/c_k) d (r_k = sigma_s/sigma_t, c_k = alpha_s -
   r_k alpha_t), 2.9-10x for the early branches at N = 2-4.
   FROM_STUDENT (default): the teacher solves the student interval's Kt
   sub-steps from the student's own detached z_t (Kt teacher NFE per student
   step) and branches k < K target those states; the final branch keeps the
   trajectory state (the SFD drift correction).
   FROM_TRAJECTORY: every branch targets the cached/solved trajectory
   (before 0.1.0's fix; cheaper, biased by the drift).
   With teacher forcing (or K = 1) both are the same. */
typedef enum bd_distill_dense_targets {
    BD_DENSE_FROM_STUDENT = 0,
    BD_DENSE_FROM_TRAJECTORY = 1
} bd_distill_dense_targets;

#define BD_DISTILL_MAX_BRANCHES 64

typedef struct bd_distill_config {
    bd_distill_method method;
    int64_t branches;           /* K, student output branches (1..64) */
    int64_t teacher_substeps;   /* Kt, teacher steps per student step, a multiple of K;
                                   branch k-1 (k = 1..K) targets sub-state k*Kt/K */
    bd_distill_weights weights; /* uniform */
    double aux_beta;            /* aux: weight of each dense branch (0.1) */
    int64_t anneal_steps;       /* anneal: tau = min(1, step / anneal_steps) (1000) */
    double adaptive_decay;      /* adaptive: EMA decay of the branch losses (0.99) */
    bd_distill_space space;     /* PD: x; TD: z */
    bd_distill_distance distance; /* L2 (x space needs L2) */
    int64_t student_steps;      /* N */
    bd_grid_kind grid;          /* student grid kind (uniform_t) */
    const double *custom_grid;  /* N+1 times 1 -> 0 (copied at init), or NULL */
    bd_distill_subdiv subdiv;   /* teacher sub-grid (t) */
    bd_sampler_kind teacher_solver; /* PD: ddim (only); TD: dpmpp2m (or heun, euler, ddim) */
    int64_t teacher_refine;     /* R >= 1: teacher solver steps per sub-step (1): the teacher
                                   solves the grid with every sub-step split R times (same
                                   subdiv) and the states are read on the sub-grid, so solve
                                   accuracy is set apart from K and Kt */
    int teacher_forcing;        /* TD: student input = teacher state (0: own detached state) */
    bd_distill_dense_targets dense_targets; /* TD, own state: from_student (see above) */
    bd_param_kind param;        /* teacher and student parametrisation (v) */
    bd_schedule_kind schedule;  /* cosine */
    bd_adam_config adam;        /* bd_adam_config_init(), lr 1e-4 */
    double ema_decay;           /* student EMA (0.999) */
    int ema_warmup;             /* bd_ema_decay's warm-up (1) */
    uint64_t seed;              /* distiller rng: data noise, steps, trajectories */
} bd_distill_config;

/* Defaults for a method, K and N (see the field comments). */
BDAPI bd_distill_config bd_distill_config_init(bd_distill_method method, int64_t branches,
                                               int64_t student_steps);
typedef struct bd_npy_stream bd_npy_stream; /* defined in >>formats */

/* The distiller.  Public, like bd_trainer, so a checkpoint can save and
   restore everything a resume needs (student params, ema, adam, rng, step,
   branch_ema) and tests can read the last batch.  Buffers are reserved for
   max_batch at init; steps allocate nothing.  It runs in the models'
   context (one backend, "where a model lives" in >>backend): networks,
   Adam and EMA through the table (ema, adam.m/v, student->params are
   backend buffers); the per-sample rules run on host arrays on every
   backend, the networks' inputs/outputs crossing through the b_* twins
   (== the host arrays on a CPU context).  docs/distillation.md sec. 9. */
typedef struct bd_distill {
    bd_context *ctx;
    bd_context *mctx;           /* the models' context (student->ctx) */
    bd_distill_config config;
    bd_denoiser *teacher;       /* not owned (after a PD round: owned_teacher) */
    bd_denoiser *student;       /* not owned */
    bd_denoiser *owned_teacher; /* created by bd_distill_next_round, or NULL */
    bd_schedule sched;
    bd_adam adam;
    float *ema;                 /* (n_params) student EMA: what gets sampled */
    bd_rng rng;
    int64_t step;               /* optimisation steps taken this round */
    int64_t round;              /* PD rounds completed */
    int64_t max_batch, D, K, Kt, N, S; /* S = N*Kt teacher steps */
    int64_t R;                  /* teacher_refine; the solver walks fgrid, S*R steps */
    int64_t N_max;              /* grid capacity: N at init */
    double *grid;               /* (N+1) student grid */
    double *tgrid;              /* (S+1) teacher grid */
    double *fgrid;              /* (S*R+1) the teacher solver's grid (tgrid when R = 1) */
    double branch_ema[BD_DISTILL_MAX_BRANCHES]; /* raw EMA of each branch's loss */
    int64_t branch_ema_count;   /* updates so far (bias correction) */
    double weights[BD_DISTILL_MAX_BRANCHES];    /* weights of the last step */
    double last_loss, last_grad_norm;
    double last_branch_loss[BD_DISTILL_MAX_BRANCHES];
    double agree_ema;           /* agree: raw EMA (decay adaptive_decay) of the gradient cosine */
    int64_t agree_count;        /* its updates (bias correction) */
    double last_cos;            /* agree: the cosine measured by the last step */
    float *gdense, *gfinal;     /* agree: (n_params) gradients of the dense group / final branch */
    bd_traj_fn traj_fn;         /* TD trajectory source; NULL = solve on the fly */
    void *traj_user_data;
    const float *traj_cache;    /* bd_distill_set_trajectories */
    int64_t traj_cache_count;
    bd_npy_stream *traj_stream; /* bd_distill_set_trajectory_stream */
    bd_sampler *tsampler;       /* teacher solver (TD), on tgrid */
    bd_sampler *ssampler;       /* student sampler (eval) */
    /* last batch (n = last_n rows); per-branch arrays are (K, n, ...) */
    int64_t last_n;
    float *zt;                  /* (B, D) student input z_t */
    float *tt;                  /* (B) student time t */
    double *at, *st;            /* (B) alpha_t, sigma_t */
    double *as, *ss;            /* (K, B) alpha, sigma at s_k */
    float *zs;                  /* (K, B, D) teacher states z_{s_k} */
    float *xt;                  /* (K, B, D) targets x_tilde_k */
    int64_t *idx;               /* (B) PD: student step of each sample; CD: teacher interval */
    unsigned char *kmask;       /* (K, B) CD: 1 where branch k has a target (NULL otherwise) */
    /* work */
    float *eps, *zcur, *xh, *eh, *sout, *dout, *tout, *tcur, *traj;
    float *sub;                 /* (B, Kt+1, D) TD: teacher sub-solve from the student's state */
    double *an, *sn;
    float *b_zt, *b_tt, *b_zcur, *b_tcur, *b_sout, *b_dout, *b_tout; /* backend twins */
    float *h_grads;             /* agree on a device: host copy of the student's grads */
} bd_distill;

/* student: K = config.branches branches, same sample shape as the teacher,
   usually bd_distill_student_from_teacher's.  Both stay the caller's. */
BDAPI bd_result bd_distill_init(bd_context *ctx, const bd_distill_config *config,
                                bd_denoiser *teacher, bd_denoiser *student, int64_t max_batch,
                                bd_distill **out);
BDAPI void bd_distill_free(bd_distill *dist);

/* A K-branch copy of the teacher: create_like + copy_weights (every branch
   starts as the teacher's output; a K-branch teacher is copied as is). */
BDAPI bd_result bd_distill_student_from_teacher(const bd_denoiser *teacher, int64_t branches,
                                                bd_rng *rng, bd_denoiser **out);

/* One optimisation step of the student.
   PD: x (n, C, H, W) data, n <= max_batch.  Per sample a student step i,
       eps, z_t = alpha_t x + sigma_t eps; the teacher's final branch takes
       Kt DDIM sub-steps on the teacher grid; targets; loss; AdamW; EMA.
   TD: x must be NULL.  n teacher trajectories (source, on the fly or
       cached); the student walks its grid from the same noise, input its
       own detached previous state (or the teacher's, teacher forcing);
       the loss is the MEAN over the N student steps of the batch loss.
   CD: x (n, C, H, W) data.  Per sample a teacher interval j, z_s, one
       teacher DDIM step to s' (R fine steps), the target network (the
       student's current weights, no gradient) at (z', s'); branch k's
       target at its point r_k of the segment: z' (r_k = s'), the target
       network's branch-k DDIM jump (r_k < s'), none (r_k > s', masked);
       docs/distillation.md sec. 7b.
   loss (may be NULL): L;  branch_loss (K, may be NULL): its unweighted
   per-branch terms, same averaging.  A non-finite loss or gradient
   returns BD_ERROR_NONFINITE and leaves params, EMA, Adam, step and the
   branch EMA untouched (the rng has advanced). */
BDAPI bd_result bd_distill_step(bd_distill *dist, const float *x, int64_t n, double *loss,
                                double *branch_loss);

/* Teacher trajectories for TD, count of them in chunks of max_batch: traj
   (count, S+1, C, H, W); the starting noise is drawn from rng. */
BDAPI bd_result bd_distill_teacher_trajectories(bd_distill *dist, float *traj, int64_t count,
                                                bd_rng *rng);
/* TD trajectory source: a callback (NULL = solve on the fly) ... */
BDAPI void bd_distill_set_trajectory_source(bd_distill *dist, bd_traj_fn fn, void *user_data);
/* ... or a cache in memory (count, S+1, C, H, W), kept by the caller; each
   step draws n of them uniformly with replacement. */
BDAPI bd_result bd_distill_set_trajectories(bd_distill *dist, const float *traj, int64_t count);
/* The same, streamed from an open .npy of shape (count, S+1, C, H, W) (or
   (count, S+1, C*H*W)) that stays on disk: each step reads only the
   trajectories it draws, with the same draws as bd_distill_set_trajectories,
   so the student is bit-identical to the in-memory run.  The stream must
   stay open while the distiller uses it. */
BDAPI bd_result bd_distill_set_trajectory_stream(bd_distill *dist, bd_npy_stream *stream);

/* PD: end a round.  The student's EMA weights become the teacher (an owned
   K-branch copy when the shapes differ) and the student's new start; N
   halves (N must be even), the new grid is every other point of the old
   one and the new teacher grid IS the old student grid (the only times the
   new teacher learnt; any grid kind nests), so rounds need
   teacher_substeps 2 (K = 1 or 2): other Kt return BD_ERROR_CONFIG and
   change nothing.  Adam, EMA, step and branch EMA restart.  Allocates (a
   round is not a hot path). */
BDAPI bd_result bd_distill_next_round(bd_distill *dist);

/* Copy the student EMA into dst (same n_params). */
BDAPI bd_result bd_distill_copy_ema(const bd_distill *dist, bd_denoiser *dst);

/* Trajectory error at the student's NFE: n starting noises from `seed`;
   the teacher solves its grid (teacher_solver, S steps); the student
   (EMA weights if use_ema) samples with DDIM on its grid, final branch.
   mse: mean over all elements of (student - teacher)^2.  teacher_x,
   student_x (n, D) or NULL receive the samples.  Allocates. */
BDAPI bd_result bd_distill_eval(bd_distill *dist, int64_t n, uint64_t seed, int use_ema,
                                double *mse, float *teacher_x, float *student_x);

/* DISTILL-DECLARATIONS */

/* ======================================================================== */
/* >>checkpoint                                                             */
/* ======================================================================== */
/* Files.  Every writer is atomic: it writes a temporary file in the same
   directory (fwrite, fflush, fsync), then renames it over the target; on any
   error the temporary is removed and an existing target is left untouched.
   Every reader validates all it reads and reports each defect as
   BD_ERROR_FORMAT (or BD_ERROR_UNSUPPORTED) with a message naming it;
   readers never trust a length, offset or shape from the file.
   See docs/formats.md. */

/* --- safetensors (docs/spec.md sec. 7) ----------------------------------- */
#define BD_ST_MAX_DIMS 8
#define BD_ST_MAX_HEADER 100000000 /* bytes of JSON header accepted (as safetensors) */

/* One F32 tensor to write.  data holds prod(shape) floats in host order. */
typedef struct bd_st_write_tensor {
    const char *name; /* UTF-8, unique, not "__metadata__" */
    const float *data;
    int ndim;         /* 0..BD_ST_MAX_DIMS (0 = scalar, one float) */
    int64_t shape[BD_ST_MAX_DIMS];
} bd_st_write_tensor;

/* A __metadata__ entry (both UTF-8 strings). */
typedef struct bd_st_kv {
    const char *key;
    const char *value;
} bd_st_kv;

/* Write tensors (stored sorted by name, as the safetensors library does)
   and metadata (sorted by key) to path, atomically.  The JSON header is
   padded with spaces to a multiple of 8 bytes.  Duplicate names, invalid
   UTF-8 or a NULL data pointer (for numel > 0) are BD_ERROR_INVALID_ARGUMENT. */
BDAPI bd_result bd_safetensors_write(bd_context *ctx, const char *path,
                                     const bd_st_write_tensor *tensors, int64_t n_tensors,
                                     const bd_st_kv *metadata, int64_t n_metadata);
/* The same bytes into a buffer allocated on ctx (release with bd_free). */
BDAPI bd_result bd_safetensors_write_memory(bd_context *ctx, const bd_st_write_tensor *tensors,
                                            int64_t n_tensors, const bd_st_kv *metadata,
                                            int64_t n_metadata, void **out, size_t *out_size);

/* A tensor of a loaded file.  data is 4-byte aligned, in host byte order. */
typedef struct bd_st_tensor {
    const char *name;
    int ndim;
    int64_t shape[BD_ST_MAX_DIMS];
    int64_t numel;
    const float *data;
} bd_st_tensor;

/* A loaded, fully validated safetensors file.  tensors are sorted by name
   (iterate i = 0..n_tensors-1), metadata by key. */
typedef struct bd_safetensors {
    bd_context *ctx;
    int64_t n_tensors;
    const bd_st_tensor *tensors;
    int64_t n_metadata;
    const bd_st_kv *metadata;
    void *table; /* private: tensor/metadata tables and strings */
    void *data;  /* private: the data section */
} bd_safetensors;

/* Load and validate: header length against the file size and
   BD_ST_MAX_HEADER; strict JSON; every tensor F32 (another dtype is
   BD_ERROR_UNSUPPORTED naming the tensor); shape product * 4 == offset span;
   offsets inside the data section, non-overlapping and covering it without
   gaps; no duplicate names or keys; __metadata__ values strings. */
BDAPI bd_result bd_safetensors_load(bd_context *ctx, const char *path, bd_safetensors **out);
BDAPI bd_result bd_safetensors_load_memory(bd_context *ctx, const void *bytes, size_t size,
                                           bd_safetensors **out);
BDAPI void bd_safetensors_free(bd_safetensors *st);
/* NULL when absent (binary search, no error recorded). */
BDAPI const bd_st_tensor *bd_safetensors_find(const bd_safetensors *st, const char *name);
BDAPI const char *bd_safetensors_meta(const bd_safetensors *st, const char *key);

/* Strict JSON check (RFC 8259: UTF-8, escapes incl. \uXXXX surrogate pairs,
   nesting depth <= 64).  BD_SUCCESS or BD_ERROR_FORMAT with position. */
BDAPI bd_result bd_json_validate(bd_context *ctx, const char *text, size_t len);

/* A model = a network + the diffusion settings that give its outputs a
   meaning.  Teacher: steps = 0, grid = NULL.  Distilled student: its time
   grid (steps+1 values from 1 to 0) and K = net->branches.  `ema`, when not
   NULL, holds EMA weights (n_params) that bd_model_save writes as the main
   tensors.  arch is "unet" (cfg valid) or "mlp" (mlp valid). */
typedef struct bd_model {
    bd_context *ctx;
    bd_denoiser *net;        /* owned */
    char arch[8];            /* "unet" | "mlp" */
    bd_unet_config cfg;      /* arch "unet" */
    bd_mlp_config mlp;       /* arch "mlp" */
    bd_param_kind param;
    bd_schedule_kind schedule;
    int64_t steps;           /* student grid steps; 0 = teacher */
    double *grid;            /* (steps+1) student only; NULL for a teacher */
    float *ema;              /* (n_params) optional */
    int64_t train_step;      /* optimiser step loaded from / saved to metadata optim.step */
} bd_model;

/* A model around `net` ("unet" or "mlp"), which it takes over (freed by
   bd_model_free, also when this call fails). */
BDAPI bd_result bd_model_init(bd_context *ctx, bd_denoiser *net, bd_param_kind param,
                              bd_schedule_kind schedule, bd_model **out);
/* bd_unet_init + bd_model_init. */
BDAPI bd_result bd_model_init_unet(bd_context *ctx, const bd_unet_config *cfg,
                                   bd_param_kind param, bd_schedule_kind schedule, bd_rng *rng,
                                   bd_model **out);
BDAPI void bd_model_free(bd_model *m);
/* Make the model a student on `grid` (steps+1 doubles, grid[0] = 1 >
   grid[1] > ... > grid[steps] = 0; copied); steps = 0 / grid = NULL makes it
   a teacher again. */
BDAPI bd_result bd_model_set_grid(bd_model *m, const double *grid, int64_t steps);
/* Allocate m->ema as a copy of the current weights (no-op if present). */
BDAPI bd_result bd_model_enable_ema(bd_model *m);
/* A student of `teacher` (docs/spec.md sec. 5): the same architecture with `branches`
   output branches (bd_denoiser_create_like, rng only feeds the throw-away
   initialisation), the teacher's weights copied in (bd_denoiser_copy_weights:
   conv_out tiled, every branch starts as the teacher), its param and
   schedule, and the student grid (steps+1 values, 1 -> 0; NULL/0 = none).
   The teacher's EMA is not copied: the student starts from net->params. */
BDAPI bd_result bd_model_student_init(bd_context *ctx, const bd_model *teacher, int64_t branches,
                                      const double *grid, int64_t steps, bd_rng *rng,
                                      bd_model **out);

/* Checkpoints (docs/spec.md sec. 7, docs/unet.md).  Model tensors carry the docs/spec.md sec. 6
   names (the MLP its own names); metadata as docs/spec.md sec. 7.  Which weights are the
   model tensors: the EMA weights when there are any (tr->ema, else m->ema),
   else the network's.  With a trainer, everything an exact resume needs is
   written as well: train.raw.<name> (the raw weights), optim.m.<name>,
   optim.v.<name>, and metadata optim.step, train.rng, train.data_rng.
   tr (may be NULL) must train m->net.  The write is atomic.  A model (and
   its trainer) on a device context is downloaded first. */
BDAPI bd_result bd_model_save(bd_context *ctx, const bd_model *m, const char *path,
                              const bd_trainer *tr);
/* Generic form for other optimisation loops (distillation): each of adam,
   ema, raw, rng, data_rng may be NULL.  `ema`: weights written as the model
   tensors (NULL: m->ema, else the network's); `raw`: written as
   train.raw.<name> (needs adam or ema to make sense, not enforced).  Every
   array is host memory; a network on a device context needs `ema`. */
BDAPI bd_result bd_model_save_state(bd_context *ctx, const bd_model *m, const char *path,
                                    const float *ema, const float *raw, const bd_adam *adam,
                                    const bd_rng *rng, const bd_rng *data_rng);
/* Load a checkpoint: the model tensors become the network's weights (ready
   to sample), m->ema stays NULL.  Validates the metadata (every key, strict
   numbers), builds the network from it and checks every tensor (name, shape,
   none missing, none unexpected); errors name what is wrong. */
BDAPI bd_result bd_model_load(bd_context *ctx, const char *path, bd_model **out);
/* Resume training: after bd_model_load(path, &m) and bd_trainer_init on
   m->net, restore the exact training state from the same file: raw weights
   into m->net, EMA into tr->ema, Adam m, v, step and both rng streams
   (uploaded when the trainer runs on a device context).
   BD_ERROR_FORMAT if the file has no optimiser state. */
BDAPI bd_result bd_model_resume(bd_context *ctx, const char *path, bd_model *m, bd_trainer *tr);
/* Generic form: any output may be NULL (not restored).  adam->n must equal
   the network's n_params; ema/raw receive n_params floats.  *found (may be
   NULL) gets bit flags: 1 optimiser moments+step, 2 raw weights, 4 rng,
   8 data_rng.  raw falls back to the model tensors when the file has none.
   Every output is host memory. */
BDAPI bd_result bd_model_load_state(bd_context *ctx, const char *path, const bd_model *m,
                                    float *ema, float *raw, bd_adam *adam, bd_rng *rng,
                                    bd_rng *data_rng, int *found);

/* Resume: everything a distillation needs to continue bit-exactly (student
   raw weights, EMA, Adam m/v/step, rng, step, round, N and grid, adaptive
   EMAs, and after a PD round the owned teacher) to a safetensors file
   (tensors student.params, student.ema, optim.m, optim.v[, teacher.params];
   metadata bdense.distill.*).  load_state needs a distiller initialised
   with the same method, K, Kt, loss and student architecture. */
BDAPI bd_result bd_distill_save_state(bd_distill *dist, const char *path);
BDAPI bd_result bd_distill_load_state(bd_distill *dist, const char *path);

/* ======================================================================== */
/* >>formats                                                                */
/* ======================================================================== */
/* --- NumPy .npy ----------------------------------------------------------- */
#define BD_NPY_MAX_DIMS 4
/* A float32 array read from .npy (data on the context allocator). */
typedef struct bd_npy {
    float *data;
    int ndim; /* 0..BD_NPY_MAX_DIMS */
    int64_t shape[BD_NPY_MAX_DIMS];
    int64_t numel;
} bd_npy;

/* Write float32, C order, format version 1.0 (header padded to 64 bytes),
   atomically.  ndim 0..4; shape entries >= 0. */
BDAPI bd_result bd_npy_write(bd_context *ctx, const char *path, const float *data, int ndim,
                             const int64_t *shape);
/* Read '<f4', '>f4', '<f8' or '>f8' (f8 converted), C order, versions 1, 2
   and 3.  Fortran order, other dtypes and ndim > 4 are
   BD_ERROR_UNSUPPORTED; a malformed header, short data or trailing bytes
   BD_ERROR_FORMAT.  Release with bd_npy_free. */
BDAPI bd_result bd_npy_read(bd_context *ctx, const char *path, bd_npy *out);
BDAPI bd_result bd_npy_read_memory(bd_context *ctx, const void *bytes, size_t size, bd_npy *out);
BDAPI void bd_npy_free(bd_context *ctx, bd_npy *a);
/* A .npy file read piece by piece (arrays larger than memory, e.g. cached
   teacher trajectories): open parses and checks the header and the file
   size, read copies elements [first, first + count) in C order as float32
   (converting '>f4', '<f8', '>f8' as bd_npy_read does), close releases the
   file.  The reader allocates nothing after open. */
struct bd_npy_stream {
    void *file;            /* FILE * */
    int ndim;
    int64_t shape[BD_NPY_MAX_DIMS];
    int64_t numel;
    int64_t data_offset;   /* bytes before the first element */
    int item;              /* 4 or 8 bytes per element on disk */
    int swap;              /* byte order differs from the host's */
};
BDAPI bd_result bd_npy_stream_open(bd_context *ctx, const char *path, bd_npy_stream *s);
BDAPI bd_result bd_npy_stream_read(bd_context *ctx, bd_npy_stream *s, int64_t first, int64_t count, float *out);
BDAPI void bd_npy_stream_close(bd_npy_stream *s);

/* --- gzip / deflate, CRC-32, Adler-32 -------------------------------------- */
/* CRC-32 (IEEE, as gzip and PNG): start with crc = 0, chain calls. */
BDAPI uint32_t bd_crc32(uint32_t crc, const void *data, size_t n);
BDAPI uint32_t bd_adler32(uint32_t adler, const void *data, size_t n); /* start with 1 */
/* Decode a raw deflate stream (RFC 1951).  *out is allocated on ctx
   (release with bd_free); output beyond max_out bytes is BD_ERROR_FORMAT
   (a decompression-bomb guard).  *consumed (may be NULL) = input bytes used. */
BDAPI bd_result bd_inflate(bd_context *ctx, const void *in, size_t n, size_t max_out,
                           unsigned char **out, size_t *out_size, size_t *consumed);
/* Decode a gzip file (RFC 1952, one or more members): header flags,
   CRC-32 and length trailers are all checked. */
BDAPI bd_result bd_gunzip(bd_context *ctx, const void *in, size_t n, size_t max_out,
                          unsigned char **out, size_t *out_size);

/* --- IDX (MNIST, Fashion-MNIST) ------------------------------------------- */
#define BD_IDX_MAX_BYTES ((size_t)1 << 31) /* decoded size accepted */
/* Unsigned-byte IDX images (magic 0x00000803, dims N,R,C), raw or gzip
   (detected by its magic bytes, not the name) -> out (N,1,R,C) floats in
   [-1,1] (v/127.5 - 1), allocated with bd_tensor_init (bd_tensor_free). */
BDAPI bd_result bd_idx_read_images(bd_context *ctx, const char *path, bd_tensor *out);
BDAPI bd_result bd_idx_read_images_memory(bd_context *ctx, const void *bytes, size_t size,
                                          bd_tensor *out);
/* Unsigned-byte IDX labels (magic 0x00000801) -> *labels (n bytes on ctx,
   release with bd_free). */
BDAPI bd_result bd_idx_read_labels(bd_context *ctx, const char *path, uint8_t **labels,
                                   int64_t *n);
BDAPI bd_result bd_idx_read_labels_memory(bd_context *ctx, const void *bytes, size_t size,
                                          uint8_t **labels, int64_t *n);

/* --- PNG, image grids, line plots, CSV ------------------------------------ */
/* 8-bit PNG from interleaved pixels (H,W,channels); channels 1 = gray,
   2 = gray+alpha, 3 = RGB, 4 = RGBA.  Each row gets the PNG filter (None,
   Sub, Up or Paeth) with the smallest residuals; the zlib stream is LZ77 +
   fixed Huffman codes (one deflate block), CRC-32 and Adler-32 checked by
   any reader.  At most 2 GiB of pixel rows. */
BDAPI bd_result bd_png_write_u8(bd_context *ctx, const char *path, const uint8_t *pixels,
                                int64_t width, int64_t height, int channels);
/* img (C,H,W) planar floats in [-1,1] (clamped; NaN -> 0 intensity), C = 1 or 3. */
BDAPI bd_result bd_png_write(bd_context *ctx, const char *path, const float *img, int64_t c,
                             int64_t h, int64_t w);
/* Tile x (N,C,H,W) into a grid of `cols` columns (cols <= 0: ceil(sqrt(N)))
   and ceil(N/cols) rows, `pad` pixels between and around tiles filled with
   pad_value.  out is (C, rows*(H+pad)+pad, cols*(W+pad)+pad); with out NULL
   only the size is returned in *out_h, *out_w. */
BDAPI void bd_image_grid(float *out, int64_t *out_h, int64_t *out_w, const float *x, int64_t n,
                         int64_t c, int64_t h, int64_t w, int64_t cols, int64_t pad,
                         float pad_value);
/* bd_image_grid (mid-grey padding) straight to a PNG file. */
BDAPI bd_result bd_png_write_grid(bd_context *ctx, const char *path, const float *x, int64_t n,
                                  int64_t c, int64_t h, int64_t w, int64_t cols, int64_t pad);
/* A grid of `cols` columns (<= 0: square), 1 px mid-grey padding, every
   pixel repeated zoom (1..64) times, on a white page with an optional title
   line above and row_labels[r] (n_labels of them, NULL entries blank) to
   the left of row r, in the built-in font; grey (C = 1) or RGB (C = 3). */
BDAPI bd_result bd_png_write_grid_labeled(bd_context *ctx, const char *path, const float *x, int64_t n,
                                          int64_t c, int64_t h, int64_t w, int64_t cols, int64_t zoom,
                                          const char *title, const char *const *row_labels, int64_t n_labels);

/* A line plot (loss curves): several series, automatic "nice" axes, a light
   grid, axis numbers in a built-in 5x7 font.  Non-finite points are gaps. */
typedef struct bd_plot_series {
    const double *x; /* (n) or NULL for 0..n-1 */
    const double *y; /* (n) */
    int64_t n;
} bd_plot_series;
typedef struct bd_plot_config {
    int64_t width, height; /* pixels, >= 64 */
    int log_y;             /* 1: logarithmic y axis (non-positive y skipped) */
    const char *title;     /* above the plot, 2x text; NULL = none */
    const char *x_label, *y_label; /* axis titles (with units); NULL = none */
    const char *const *legend;     /* n_series names (NULL entries: not listed)
                                      in a box at the top right; NULL = none */
} bd_plot_config;
/* 640 x 400, linear, no title, labels or legend.  Text is printable ASCII
   in a built-in 5x7 font (other bytes draw as '?'). */
BDAPI bd_plot_config bd_plot_config_init(void);
BDAPI bd_result bd_plot_png(bd_context *ctx, const char *path, const bd_plot_config *cfg,
                            const bd_plot_series *series, int64_t n_series);

/* CSV with a header row: columns[j] holds n_rows doubles ("%.9g"). */
BDAPI bd_result bd_csv_write(bd_context *ctx, const char *path, const char *const *names,
                             const double *const *columns, int64_t n_cols, int64_t n_rows);

/* --- built-in data ---------------------------------------------------------- */
/* Procedural shapes, no download: one anti-aliased disc, square, triangle
   or ring per image, of random position, size, rotation and intensity on a
   black background.  out (N,1,size,size) in [-1,1]; size 8..1024.
   Sample i depends only on (seed, first + i), so a data set of N samples is
   the prefix of any larger one.  labels (N) or NULL: 0 disc, 1 square,
   2 triangle, 3 ring.  ctx may be NULL. */
BDAPI bd_result bd_builtin_shapes(bd_context *ctx, float *out, int64_t n, int64_t size,
                                  uint64_t seed);
BDAPI bd_result bd_builtin_shapes_ex(bd_context *ctx, float *out, uint8_t *labels,
                                     int64_t first, int64_t n, int64_t size, uint64_t seed);

/* IO-DECLARATIONS */

#ifdef __cplusplus
}
#endif
#endif /* BDENSE_H */

/* ************************************************************************ */
/*                             IMPLEMENTATION                               */
/* ************************************************************************ */
#ifdef BDENSE_IMPLEMENTATION
#ifndef BDENSE_IMPLEMENTATION_DONE
#define BDENSE_IMPLEMENTATION_DONE

#include <math.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(BDENSE_NO_SIMD)
#include <immintrin.h>
#define BD__X86 1 /* x86 vector paths (AVX-512 / AVX2+FMA, picked at run time) */
#endif

#if defined(BDENSE_MALLOC) && defined(BDENSE_FREE)
#elif !defined(BDENSE_MALLOC) && !defined(BDENSE_FREE)
#define BDENSE_MALLOC(sz) malloc(sz)
#define BDENSE_FREE(p) free(p)
#else
#error "bdense: define both BDENSE_MALLOC and BDENSE_FREE, or neither"
#endif

#ifdef BDENSE_USE_CBLAS
#ifndef BDENSE_CBLAS_HEADER
#define BDENSE_CBLAS_HEADER <cblas.h>
#endif
#include BDENSE_CBLAS_HEADER
#endif

#ifdef __cplusplus
#define BD__CAST(T, x) static_cast<T>(x)
#else
#define BD__CAST(T, x) ((T)(x))
#endif

#if defined(__GNUC__) || defined(__clang__)
#define BD__UNUSED __attribute__((unused))
#else
#define BD__UNUSED
#endif

#ifndef BD__PI
#define BD__PI 3.14159265358979323846
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* >>core                                                                   */
/* ------------------------------------------------------------------------ */
#include <time.h>
#include <float.h>

BDAPI const char *bd_result_string(bd_result r) {
    switch (r) {
#define BD__STR(name, str) case name: return str;
        BD_RESULT_LIST(BD__STR)
#undef BD__STR
    default: break;
    }
    return "unknown result";
}

/* index of name in names[0..n) (-1 if absent or NULL): the *_parse
   functions of the enums with names */
static int bd__enum_find(const char *const *names, int n, const char *name) {
    int i;
    for (i = 0; name && i < n; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

static void *bd__default_alloc(size_t size, void *user_data) {
    (void)user_data;
    return BDENSE_MALLOC(size);
}
static void bd__default_free(void *ptr, void *user_data) {
    (void)user_data;
    BDENSE_FREE(ptr);
}

BDAPI int bd_size_mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}
BDAPI int bd_size_add(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

BDAPI bd_result bd_error(bd_context *ctx, bd_result code, const char *fmt, ...) {
    if (!ctx) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->message, sizeof ctx->message, fmt, ap);
    va_end(ap);
    ctx->last_result = code;
    if (ctx->log) ctx->log(ctx->log_user_data, code, ctx->message);
    return code;
}
/* record an error and leave through the function's `fail:` cleanup (needs
   bd_context *ctx and bd_result r in scope) */
#define BD__FAIL(...) do { r = bd_error(ctx, __VA_ARGS__); goto fail; } while (0)

BDAPI void *bd_alloc(bd_context *ctx, size_t size) {
    void *p;
    if (!ctx) return NULL;
    if (size == 0) size = 1;
    p = ctx->allocator.alloc(size, ctx->allocator.user_data);
    if (!p) bd_error(ctx, BD_ERROR_OUT_OF_MEMORY, "allocation of %zu bytes failed", size);
    return p;
}
BDAPI void *bd_alloc_array(bd_context *ctx, size_t count, size_t size) {
    size_t total;
    if (!bd_size_mul(count, size, &total)) {
        bd_error(ctx, BD_ERROR_OVERFLOW, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    return bd_alloc(ctx, total);
}
BDAPI void bd_free(bd_context *ctx, void *ptr) {
    if (ctx && ptr) ctx->allocator.free(ptr, ctx->allocator.user_data);
}

static const bd_backend *bd__backend_cpu(void);

BDAPI bd_context_config bd_context_config_init(void) {
    bd_context_config c;
    memset(&c, 0, sizeof c);
    c.n_threads = 1;
    return c;
}

BDAPI bd_result bd_context_init(const bd_context_config *config, bd_context **out) {
    bd_allocator a;
    bd_context *ctx;
    if (!out) return BD_ERROR_INVALID_ARGUMENT;
    *out = NULL;
    if (!config) return BD_ERROR_INVALID_ARGUMENT;
    a = config->allocator;
    if (!a.alloc && !a.free) {
        a.alloc = bd__default_alloc;
        a.free = bd__default_free;
        a.user_data = NULL;
    } else if (!a.alloc || !a.free) {
        if (config->log) config->log(config->log_user_data, BD_ERROR_INVALID_ARGUMENT,
                                     "allocator needs both alloc and free");
        return BD_ERROR_INVALID_ARGUMENT;
    }
    if (config->n_threads < 1) {
        if (config->log) config->log(config->log_user_data, BD_ERROR_INVALID_ARGUMENT,
                                     "n_threads must be >= 1");
        return BD_ERROR_INVALID_ARGUMENT;
    }
    ctx = BD__CAST(bd_context *, a.alloc(sizeof(bd_context), a.user_data));
    if (!ctx) {
        if (config->log) config->log(config->log_user_data, BD_ERROR_OUT_OF_MEMORY,
                                     "allocation of the context failed");
        return BD_ERROR_OUT_OF_MEMORY;
    }
    memset(ctx, 0, sizeof *ctx);
    ctx->allocator = a;
    ctx->log = config->log;
    ctx->log_user_data = config->log_user_data;
    ctx->n_threads = config->n_threads;
    ctx->backend = bd__backend_cpu();
    ctx->last_result = BD_SUCCESS;
    *out = ctx;
    return BD_SUCCESS;
}

BDAPI void bd_context_free(bd_context *ctx) {
    bd_allocator a;
    if (!ctx) return;
    if (ctx->backend && ctx->backend->release) ctx->backend->release(ctx->backend->state, ctx);
    a = ctx->allocator;
    a.free(ctx, a.user_data);
}

BDAPI const char *bd_context_message(const bd_context *ctx) {
    return ctx ? ctx->message : "no context";
}

BDAPI bd_result bd_context_set_threads(bd_context *ctx, int n_threads) {
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (n_threads < 1) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "n_threads must be >= 1 (got %d)", n_threads);
    ctx->n_threads = n_threads;
    return BD_SUCCESS;
}

static uint64_t bd__rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

BDAPI bd_rng bd_rng_init(uint64_t seed) {
    bd_rng r;
    int i;
    uint64_t z = seed;
    for (i = 0; i < 4; i++) {
        uint64_t x;
        z += 0x9E3779B97F4A7C15ull;
        x = z;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        r.s[i] = x ^ (x >> 31);
    }
    r.has_spare = 0;
    r.spare = 0.0;
    return r;
}

BDAPI uint64_t bd_rng_u64(bd_rng *r) {
    uint64_t result = bd__rotl(r->s[1] * 5, 7) * 9;
    uint64_t t = r->s[1] << 17;
    r->s[2] ^= r->s[0];
    r->s[3] ^= r->s[1];
    r->s[1] ^= r->s[2];
    r->s[0] ^= r->s[3];
    r->s[2] ^= t;
    r->s[3] = bd__rotl(r->s[3], 45);
    return result;
}

BDAPI double bd_rng_uniform(bd_rng *r) {
    return (double)(bd_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

BDAPI double bd_rng_normal1(bd_rng *r) {
    double u1, u2, rad;
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    do { u1 = bd_rng_uniform(r); } while (u1 <= 0.0);
    u2 = bd_rng_uniform(r);
    rad = sqrt(-2.0 * log(u1));
    r->spare = rad * sin(2.0 * BD__PI * u2);
    r->has_spare = 1;
    return rad * cos(2.0 * BD__PI * u2);
}

BDAPI void bd_rng_normal(bd_rng *r, float *out, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) out[i] = (float)bd_rng_normal1(r);
}

BDAPI void bd_rng_uniform_fill(bd_rng *r, float *out, int64_t n, float lo, float hi) {
    int64_t i;
    for (i = 0; i < n; i++) out[i] = (float)(lo + (hi - lo) * bd_rng_uniform(r));
}

BDAPI void bd_rng_jump(bd_rng *r) {
    static const uint64_t J[4] = {0x180ec6d33cfd0abaull, 0xd5a61266f0c9392cull,
                                  0xa9582618e03fc9aaull, 0x39abdc4529b1661cull};
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i, b;
    for (i = 0; i < 4; i++)
        for (b = 0; b < 64; b++) {
            if (J[i] & (1ull << b)) {
                s0 ^= r->s[0]; s1 ^= r->s[1]; s2 ^= r->s[2]; s3 ^= r->s[3];
            }
            bd_rng_u64(r);
        }
    r->s[0] = s0; r->s[1] = s1; r->s[2] = s2; r->s[3] = s3;
    r->has_spare = 0;
}

BDAPI int64_t bd_tensor_numel(const bd_tensor *t) { return t ? t->n * t->c * t->h * t->w : 0; }

BDAPI bd_tensor bd_tensor_view(float *data, int64_t n, int64_t c, int64_t h, int64_t w) {
    bd_tensor t;
    t.data = data; t.n = n; t.c = c; t.h = h; t.w = w; t.owned = 0;
    return t;
}

BDAPI bd_result bd_tensor_init(bd_context *ctx, bd_tensor *t, int64_t n, int64_t c, int64_t h, int64_t w) {
    size_t count = 1;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!t) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_tensor_init: tensor is NULL");
    memset(t, 0, sizeof *t);
    if (n < 0 || c < 0 || h < 0 || w < 0)
        return bd_error(ctx, BD_ERROR_SHAPE, "bd_tensor_init: negative dimension (%lld,%lld,%lld,%lld)",
                        (long long)n, (long long)c, (long long)h, (long long)w);
    if (!bd_size_mul(count, (size_t)n, &count) || !bd_size_mul(count, (size_t)c, &count) ||
        !bd_size_mul(count, (size_t)h, &count) || !bd_size_mul(count, (size_t)w, &count) ||
        count > (size_t)INT64_MAX / sizeof(float))
        return bd_error(ctx, BD_ERROR_OVERFLOW, "bd_tensor_init: element count overflows");
    t->data = BD__CAST(float *, bd_alloc_array(ctx, count, sizeof(float)));
    if (!t->data) return ctx->last_result;
    memset(t->data, 0, count * sizeof(float));
    t->n = n; t->c = c; t->h = h; t->w = w; t->owned = 1;
    return BD_SUCCESS;
}

BDAPI void bd_tensor_free(bd_context *ctx, bd_tensor *t) {
    if (!t) return;
    if (t->owned) bd_free(ctx, t->data);
    memset(t, 0, sizeof *t);
}

/* File plumbing that checkpoints and formats share: atomic writes, byte
   order, whole-file reads, a growable buffer, UTF-8 checks. */
#if defined(_WIN32)
#include <io.h>
#ifdef __cplusplus
extern "C" {
#endif
__declspec(dllimport) int __stdcall MoveFileExA(const char *from, const char *to,
                                                unsigned long flags);
#ifdef __cplusplus
}
#endif
#define BD__FSYNC(f) _commit(_fileno(f))
#elif defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#ifndef __cplusplus
/* strict -std=c99 hides these POSIX declarations; C++ modes expose them */
#ifndef fileno /* a macro in some C libraries */
int fileno(FILE *stream);
#endif
int fsync(int fd);
#endif
#define BD__FSYNC(f) fsync(fileno(f))
#else
#define BD__FSYNC(f) 0
#endif

static int bd__host_is_le(void) {
    uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}
static void bd__bswap32_array(void *p, size_t n) {
    unsigned char *b = BD__CAST(unsigned char *, p);
    size_t i;
    for (i = 0; i < n; i++, b += 4) {
        unsigned char t0 = b[0], t1 = b[1];
        b[0] = b[3]; b[1] = b[2]; b[2] = t1; b[3] = t0;
    }
}
static uint64_t bd__rd_le64(const unsigned char *p) {
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint32_t bd__rd_be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static void bd__wr_le64(unsigned char *p, uint64_t v) {
    int i;
    for (i = 0; i < 8; i++) { p[i] = (unsigned char)(v & 0xff); v >>= 8; }
}
static void bd__wr_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}

/* ---- atomic writer: temp file in the same directory, then rename ---- */
typedef struct bd__afile {
    bd_context *ctx;
    const char *path;
    char *tmp;
    FILE *f;
} bd__afile;

static bd_result bd__afile_open(bd_context *ctx, bd__afile *af, const char *path) {
    size_t len, cap;
    uint64_t h;
    int attempt;
    af->ctx = ctx; af->path = path; af->tmp = NULL; af->f = NULL;
    if (!path || !path[0]) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "empty output path");
    len = strlen(path);
    if (!bd_size_add(len, 32, &cap)) return bd_error(ctx, BD_ERROR_OVERFLOW, "path too long");
    af->tmp = BD__CAST(char *, bd_alloc(ctx, cap));
    if (!af->tmp) return BD_ERROR_OUT_OF_MEMORY;
    /* a name unlikely to collide with a concurrent writer: hash of the
       time, the clock and a stack address (no global counter by design) */
    h = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uint64_t)clock() ^
        (uint64_t)(size_t)af * 0xBF58476D1CE4E5B9ull;
    for (attempt = 0; attempt < 8; attempt++) {
        FILE *probe;
        h ^= h >> 29; h *= 0x94D049BB133111EBull; h ^= h >> 32;
        snprintf(af->tmp, cap, "%s.tmp%08lx", path, (unsigned long)(h & 0xffffffffu));
        probe = fopen(af->tmp, "rb");
        if (!probe) break;
        fclose(probe);
    }
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        bd_error(ctx, BD_ERROR_IO, "cannot create temporary file '%s' for '%s'", af->tmp, path);
        bd_free(ctx, af->tmp);
        af->tmp = NULL;
        return BD_ERROR_IO;
    }
    return BD_SUCCESS;
}
static void bd__afile_abort(bd__afile *af) {
    if (af->f) { fclose(af->f); af->f = NULL; }
    if (af->tmp) { remove(af->tmp); bd_free(af->ctx, af->tmp); af->tmp = NULL; }
}
static bd_result bd__afile_write(bd__afile *af, const void *p, size_t n) {
    if (n == 0) return BD_SUCCESS;
    if (fwrite(p, 1, n, af->f) != n) {
        bd_error(af->ctx, BD_ERROR_IO, "write to '%s' failed (disk full?)", af->tmp);
        bd__afile_abort(af);
        return BD_ERROR_IO;
    }
    return BD_SUCCESS;
}
static bd_result bd__afile_commit(bd__afile *af) {
    int bad = 0;
    if (fflush(af->f) != 0) bad = 1;
    if (!bad && BD__FSYNC(af->f) != 0) bad = 1;
    if (fclose(af->f) != 0) bad = 1;
    af->f = NULL;
    if (bad) {
        bd_error(af->ctx, BD_ERROR_IO, "flushing '%s' to disk failed", af->tmp);
        bd__afile_abort(af);
        return BD_ERROR_IO;
    }
#if defined(_WIN32)
    if (!MoveFileExA(af->tmp, af->path, 0x1 | 0x8)) bad = 1; /* REPLACE_EXISTING|WRITE_THROUGH */
#else
    if (rename(af->tmp, af->path) != 0) bad = 1;
#endif
    if (bad) {
        bd_error(af->ctx, BD_ERROR_IO, "cannot rename '%s' to '%s'", af->tmp, af->path);
        bd__afile_abort(af);
        return BD_ERROR_IO;
    }
    bd_free(af->ctx, af->tmp);
    af->tmp = NULL;
    return BD_SUCCESS;
}

/* fopen(path, "rb") and its size; NULL (error recorded on ctx) when it
   cannot be opened, read or measured */
static FILE *bd__open_sized(bd_context *ctx, const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        bd_error(ctx, BD_ERROR_IO, "cannot open '%s'", path);
        return NULL;
    }
    /* a directory opens on POSIX but cannot be read (and its "size" is junk) */
    if ((fgetc(f) == EOF && ferror(f)) ||
        fseek(f, 0, SEEK_END) != 0 || (*size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        bd_error(ctx, BD_ERROR_IO, "cannot read '%s' or determine its size", path);
        return NULL;
    }
    return f;
}
/* Whole file into memory (allocated on ctx), at most max_size bytes. */
static bd_result bd__read_file(bd_context *ctx, const char *path, size_t max_size,
                               unsigned char **out, size_t *out_size) {
    FILE *f;
    long end;
    size_t n;
    unsigned char *buf;
    *out = NULL; *out_size = 0;
    if (!path) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "NULL path");
    if (!(f = bd__open_sized(ctx, path, &end))) return ctx->last_result;
    if ((unsigned long)end > max_size) {
        fclose(f);
        return bd_error(ctx, BD_ERROR_FORMAT, "'%s' is %ld bytes, more than the limit of %zu",
                        path, end, max_size);
    }
    n = (size_t)end;
    buf = BD__CAST(unsigned char *, bd_alloc(ctx, n ? n : 1));
    if (!buf) { fclose(f); return BD_ERROR_OUT_OF_MEMORY; }
    if (n && fread(buf, 1, n, f) != n) {
        fclose(f);
        bd_free(ctx, buf);
        return bd_error(ctx, BD_ERROR_IO, "read of '%s' failed", path);
    }
    fclose(f);
    *out = buf; *out_size = n;
    return BD_SUCCESS;
}

/* ---- a growable byte buffer on the context allocator ---- */
typedef struct bd__buf {
    bd_context *ctx;
    unsigned char *p;
    size_t n, cap;
    int failed;
} bd__buf;
static void bd__buf_put(bd__buf *b, const void *src, size_t n) {
    size_t need;
    if (b->failed || n == 0) return;
    if (!bd_size_add(b->n, n, &need)) { b->failed = 1; return; }
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        unsigned char *np;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) { cap = need; break; }
            cap *= 2;
        }
        np = BD__CAST(unsigned char *, bd_alloc(b->ctx, cap));
        if (!np) { b->failed = 1; return; }
        if (b->n) memcpy(np, b->p, b->n);
        bd_free(b->ctx, b->p);
        b->p = np; b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void bd__buf_str(bd__buf *b, const char *s) { bd__buf_put(b, s, strlen(s)); }
static void bd__buf_i64(bd__buf *b, int64_t v) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    bd__buf_str(b, tmp);
}

/* ---- UTF-8 ---- */
/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if
   invalid (overlong, surrogate, > U+10FFFF, truncated). */
static size_t bd__utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    uint32_t cp;
    size_t len, i;
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) { len = 2; cp = c & 0x1F; }
    else if (c < 0xF0) { len = 3; cp = c & 0x0F; }
    else if (c < 0xF5) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len) return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}
static int bd__utf8_valid(const char *s) {
    const unsigned char *p = BD__CAST(const unsigned char *, (const void *)s);
    size_t n = strlen(s);
    while (n) {
        size_t k = bd__utf8_seq(p, n);
        if (!k) return 0;
        p += k; n -= k;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* >>gemm                                                                   */
/* ------------------------------------------------------------------------ */
/* Threads: OpenMP when compiled with -fopenmp (else everything runs on the
   calling thread).  Kernels take the team size from OpenMP's nthreads ICV,
   which the denoiser entry points set from the context's n_threads for the
   duration of each call; parallel loops split independent outputs only, so
   results are the same bits for every thread count. */
#ifdef _OPENMP
#define BD__PRAGMA(x) _Pragma(#x)
#define BD__OMP_FOR_IF(cond) BD__PRAGMA(omp parallel for schedule(static) if (cond))
#define BD__OMP_FOR_NT(nthr, cond) BD__PRAGMA(omp parallel for schedule(static) num_threads(nthr) if (cond))
static int bd__omp_threads(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }
/* Set the calling thread's OpenMP team size to the context's n_threads for
   one library call; returns the previous setting for bd__threads_leave. */
static int bd__threads_enter(const bd_context *ctx) {
    int prev = omp_get_max_threads();
    if (ctx && ctx->n_threads >= 1 && ctx->n_threads != prev) omp_set_num_threads(ctx->n_threads);
    return prev;
}
static void bd__threads_leave(int prev) {
    if (prev != omp_get_max_threads()) omp_set_num_threads(prev);
}
#else
#define BD__OMP_FOR_IF(cond)
#define BD__OMP_FOR_NT(nthr, cond)
static int bd__omp_threads(void) { return 1; }
static int bd__threads_enter(const bd_context *ctx) { (void)ctx; return 1; }
static void bd__threads_leave(int prev) { (void)prev; }
#endif

/* Built-in GEMM (Goto/BLIS scheme).  C is scaled by beta once; then for
   each KC-deep slice of K, a KC x NC block of op(B) is packed into NR-wide
   column panels and an MC x KC block of op(A) into MR-tall row panels, and
   a register-blocked MR x NR micro-kernel accumulates alpha * A B into C.
   Packing reads through a `bd__gsrc` (a pointer, strides and a pack
   function), so the transposes cost nothing extra and convolutions pack
   im2col columns straight from the image (implicit GEMM: no col buffer).
   Each C element sums its K terms in the same order whatever the blocking
   of M and N, so splitting the work over threads changes no bits.
   The micro-kernel is AVX-512 or AVX2+FMA when the CPU has them (GCC/clang
   target attributes, chosen at run time), else plain C.  Pack buffers live
   on the stack (BD__GEMM_STACK_FLOATS floats): nothing is allocated. */
#define BD__MR 8
#define BD__NR 32
#define BD__MC 128
#define BD__KC 256
#define BD__NC 128
#define BD__GEMM_STACK_FLOATS (BD__MC * BD__KC + BD__KC * BD__NR)

typedef struct bd__gsrc bd__gsrc;
/* Pack rows r0..r0+nr-1 (A: rows of op(A); B: columns of op(B)) and depth
   k0..k0+kc-1 into panels of `w` (= MR or NR) lanes: dst[(panel*kc + k)*w + lane],
   zero-filling lanes past nr. */
typedef void (*bd__pack_fn)(const bd__gsrc *s, float *dst, int64_t r0, int64_t nr, int64_t k0,
                            int64_t kc, int64_t w);
struct bd__gsrc {
    bd__pack_fn pack;
    const float *p;
    int64_t ld;     /* leading dimension (plain sources) */
    int64_t nstr;   /* per-sample stride when K runs over (sample, position) */
    int64_t C, H, W, k, stride, pad, Ho, Wo; /* conv geometry */
};

#ifdef BD__X86
/* One full 8-lane panel of bd__pack_rowmajor (rows r0..r0+7, depth k0..k0+kc-1)
   by 8x8 AVX transposes: the scalar version's strided stores made it ~10% of a
   batch-1 network call (the direct 3x3 kernel packs its weights per call). */
__attribute__((target("avx2"))) static void bd__pack_rowmajor8_avx2(const float *p, int64_t ld, float *d,
                                                                    int64_t kc) {
    int64_t kk, r;
    for (kk = 0; kk + 8 <= kc; kk += 8) {
        __m256 a0 = _mm256_loadu_ps(p + kk), a1 = _mm256_loadu_ps(p + ld + kk),
               a2 = _mm256_loadu_ps(p + 2 * ld + kk), a3 = _mm256_loadu_ps(p + 3 * ld + kk),
               a4 = _mm256_loadu_ps(p + 4 * ld + kk), a5 = _mm256_loadu_ps(p + 5 * ld + kk),
               a6 = _mm256_loadu_ps(p + 6 * ld + kk), a7 = _mm256_loadu_ps(p + 7 * ld + kk);
        __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1), t2 = _mm256_unpacklo_ps(a2, a3),
               t3 = _mm256_unpackhi_ps(a2, a3), t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5),
               t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
               u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
               u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
               u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        float *o = d + kk * 8;
        _mm256_storeu_ps(o, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(o + 16, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(o + 24, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(o + 32, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(o + 40, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(o + 48, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(o + 56, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (; kk < kc; kk++)
        for (r = 0; r < 8; r++) d[kk * 8 + r] = p[r * ld + kk];
}
#endif

/* element (r, kk) is p[r*ld + kk]: A as stored, or B transposed */
static void bd__pack_rowmajor(const bd__gsrc *s, float *dst, int64_t r0, int64_t nr, int64_t k0,
                              int64_t kc, int64_t w) {
    int64_t pr, r, kk;
    for (pr = 0; pr < nr; pr += w) {
        int64_t lanes = nr - pr < w ? nr - pr : w;
        float *d = dst + pr * kc;
#ifdef BD__X86
        if (w == 8 && lanes == 8 && __builtin_cpu_supports("avx2")) {
            bd__pack_rowmajor8_avx2(s->p + (r0 + pr) * s->ld + k0, s->ld, d, kc);
            continue;
        }
#endif
        for (r = 0; r < lanes; r++) {
            const float *src = s->p + (r0 + pr + r) * s->ld + k0;
            for (kk = 0; kk < kc; kk++) d[kk * w + r] = src[kk];
        }
        for (; r < w; r++)
            for (kk = 0; kk < kc; kk++) d[kk * w + r] = 0.0f;
    }
}
/* element (r, kk) is p[kk*ld + r]: A transposed, or B as stored */
static void bd__pack_colmajor(const bd__gsrc *s, float *dst, int64_t r0, int64_t nr, int64_t k0,
                              int64_t kc, int64_t w) {
    int64_t pr, r, kk;
    for (pr = 0; pr < nr; pr += w) {
        int64_t lanes = nr - pr < w ? nr - pr : w;
        float *d = dst + pr * kc;
        for (kk = 0; kk < kc; kk++) {
            const float *src = s->p + (k0 + kk) * s->ld + r0 + pr;
            float *dk = d + kk * w;
            for (r = 0; r < lanes; r++) dk[r] = src[r];
            for (; r < w; r++) dk[r] = 0.0f;
        }
    }
}

/* ---- micro-kernels: C[0..mr, 0..nr] += alpha * sum_k a[k*MR + i] b[k*NR + j] ---- */
static void bd__ukernel_c(int64_t kc, const float *a, const float *b, float *C, int64_t ldc,
                          float alpha, int64_t mr, int64_t nr) {
    float acc[BD__MR][BD__NR];
    int64_t i, j, k;
    memset(acc, 0, sizeof acc);
    for (k = 0; k < kc; k++) {
        const float *ak = a + k * BD__MR, *bk = b + k * BD__NR;
        for (i = 0; i < BD__MR; i++) {
            float ai = ak[i];
            for (j = 0; j < BD__NR; j++) acc[i][j] += ai * bk[j];
        }
    }
    for (i = 0; i < mr; i++)
        for (j = 0; j < nr; j++) C[i * ldc + j] += alpha * acc[i][j];
}

#ifdef BD__X86
/* Which vector paths run is decided at run time from the CPU; the test
   suite also builds with -DBDENSE_NO_AVX512 (AVX2 paths) and
   -DBDENSE_NO_SIMD (portable C) so every path is exercised on one machine. */
#ifdef BDENSE_NO_AVX512
#define BD__CPU_AVX512() 0
#else
#define BD__CPU_AVX512() __builtin_cpu_supports("avx512f")
#endif
/* One k step of the 8 x 32 AVX-512 FMA tile that the GEMM micro-kernel, the
   direct conv and the Winograd products share: r[2i] += a[i] x0,
   r[2i+1] += a[i] x1 for i < 8 (r: 16 __m512; unrolled by hand). */
#define BD__FMA8X32(r, a, x0, x1)                                                                                                               \
    do {                                                                                                                                        \
        __m512 bd__ai_;                                                                                                                         \
        bd__ai_ = _mm512_set1_ps((a)[0]); (r)[0] = _mm512_fmadd_ps(bd__ai_, (x0), (r)[0]); (r)[1] = _mm512_fmadd_ps(bd__ai_, (x1), (r)[1]);     \
        bd__ai_ = _mm512_set1_ps((a)[1]); (r)[2] = _mm512_fmadd_ps(bd__ai_, (x0), (r)[2]); (r)[3] = _mm512_fmadd_ps(bd__ai_, (x1), (r)[3]);     \
        bd__ai_ = _mm512_set1_ps((a)[2]); (r)[4] = _mm512_fmadd_ps(bd__ai_, (x0), (r)[4]); (r)[5] = _mm512_fmadd_ps(bd__ai_, (x1), (r)[5]);     \
        bd__ai_ = _mm512_set1_ps((a)[3]); (r)[6] = _mm512_fmadd_ps(bd__ai_, (x0), (r)[6]); (r)[7] = _mm512_fmadd_ps(bd__ai_, (x1), (r)[7]);     \
        bd__ai_ = _mm512_set1_ps((a)[4]); (r)[8] = _mm512_fmadd_ps(bd__ai_, (x0), (r)[8]); (r)[9] = _mm512_fmadd_ps(bd__ai_, (x1), (r)[9]);     \
        bd__ai_ = _mm512_set1_ps((a)[5]); (r)[10] = _mm512_fmadd_ps(bd__ai_, (x0), (r)[10]); (r)[11] = _mm512_fmadd_ps(bd__ai_, (x1), (r)[11]); \
        bd__ai_ = _mm512_set1_ps((a)[6]); (r)[12] = _mm512_fmadd_ps(bd__ai_, (x0), (r)[12]); (r)[13] = _mm512_fmadd_ps(bd__ai_, (x1), (r)[13]); \
        bd__ai_ = _mm512_set1_ps((a)[7]); (r)[14] = _mm512_fmadd_ps(bd__ai_, (x0), (r)[14]); (r)[15] = _mm512_fmadd_ps(bd__ai_, (x1), (r)[15]); \
    } while (0)
__attribute__((target("avx512f"))) static void
bd__ukernel_avx512(int64_t kc, const float *a, const float *b, float *C, int64_t ldc, float alpha,
                   int64_t mr, int64_t nr) {
    __m512 r[16];
    int64_t k, i;
    for (i = 0; i < 16; i++) r[i] = _mm512_setzero_ps();
    for (k = 0; k < kc; k++, a += BD__MR, b += BD__NR)
        BD__FMA8X32(r, a, _mm512_loadu_ps(b), _mm512_loadu_ps(b + 16));
    {
        __m512 al = _mm512_set1_ps(alpha);
        if (nr == BD__NR) {
            for (i = 0; i < mr; i++) {
                float *ci = C + i * ldc;
                _mm512_storeu_ps(ci, _mm512_fmadd_ps(al, r[2 * i], _mm512_loadu_ps(ci)));
                _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(al, r[2 * i + 1], _mm512_loadu_ps(ci + 16)));
            }
        } else {
            float t[BD__MR * BD__NR];
            int64_t j;
            for (i = 0; i < BD__MR; i++) {
                _mm512_storeu_ps(t + i * BD__NR, r[2 * i]);
                _mm512_storeu_ps(t + i * BD__NR + 16, r[2 * i + 1]);
            }
            for (i = 0; i < mr; i++)
                for (j = 0; j < nr; j++) C[i * ldc + j] += alpha * t[i * BD__NR + j];
        }
    }
}

/* AVX2: the 8 x 32 tile in four 4 x 16 passes (8 accumulators each) */
__attribute__((target("avx2,fma"))) static void
bd__ukernel_avx2(int64_t kc, const float *a, const float *b, float *C, int64_t ldc, float alpha,
                 int64_t mr, int64_t nr) {
    int64_t ih, jh, k, i, j;
    float t[BD__MR * BD__NR];
    for (ih = 0; ih < 2; ih++)
        for (jh = 0; jh < 2; jh++) {
            const float *ap = a + 4 * ih, *bp = b + 16 * jh;
            __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00,
                   c21 = c00, c30 = c00, c31 = c00;
            float *tt = t + (4 * ih) * BD__NR + 16 * jh;
            for (k = 0; k < kc; k++) {
                __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8), ai;
                ai = _mm256_broadcast_ss(ap + 0); c00 = _mm256_fmadd_ps(ai, b0, c00); c01 = _mm256_fmadd_ps(ai, b1, c01);
                ai = _mm256_broadcast_ss(ap + 1); c10 = _mm256_fmadd_ps(ai, b0, c10); c11 = _mm256_fmadd_ps(ai, b1, c11);
                ai = _mm256_broadcast_ss(ap + 2); c20 = _mm256_fmadd_ps(ai, b0, c20); c21 = _mm256_fmadd_ps(ai, b1, c21);
                ai = _mm256_broadcast_ss(ap + 3); c30 = _mm256_fmadd_ps(ai, b0, c30); c31 = _mm256_fmadd_ps(ai, b1, c31);
                ap += BD__MR;
                bp += BD__NR;
            }
            _mm256_storeu_ps(tt, c00); _mm256_storeu_ps(tt + 8, c01);
            _mm256_storeu_ps(tt + BD__NR, c10); _mm256_storeu_ps(tt + BD__NR + 8, c11);
            _mm256_storeu_ps(tt + 2 * BD__NR, c20); _mm256_storeu_ps(tt + 2 * BD__NR + 8, c21);
            _mm256_storeu_ps(tt + 3 * BD__NR, c30); _mm256_storeu_ps(tt + 3 * BD__NR + 8, c31);
        }
    for (i = 0; i < mr; i++)
        for (j = 0; j < nr; j++) C[i * ldc + j] += alpha * t[i * BD__NR + j];
}
#endif

typedef void (*bd__ukernel_fn)(int64_t kc, const float *a, const float *b, float *C, int64_t ldc,
                               float alpha, int64_t mr, int64_t nr);
static bd__ukernel_fn bd__ukernel_pick(void) {
#ifdef BD__X86
    if (BD__CPU_AVX512()) return bd__ukernel_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return bd__ukernel_avx2;
#endif
    return bd__ukernel_c;
}

/* C (M,N; ldc) += alpha * op(A) op(B) for rows i0.. of op(A) and columns j0.. of
   op(B), K deep; buf: BD__GEMM_STACK_FLOATS floats.  Loop order for the
   short-and-wide products of convolutions (M = channels, N = positions):
   an MC x KC block of A is packed once and streamed against every KC x NR
   micro-panel of B, each packed just in time (it stays in L1). */
static void bd__gemm_run(const bd__gsrc *A, int64_t i0, const bd__gsrc *B, int64_t j0, int64_t M,
                         int64_t N, int64_t K, float alpha, float *C, int64_t ldc, float *buf) {
    float *pa = buf, *pb = buf + BD__MC * BD__KC;
    bd__ukernel_fn uk = bd__ukernel_pick();
    int64_t pc, ic, jr, ir;
    for (ic = 0; ic < M; ic += BD__MC) {
        int64_t mc = M - ic < BD__MC ? M - ic : BD__MC;
        for (pc = 0; pc < K; pc += BD__KC) {
            int64_t kc = K - pc < BD__KC ? K - pc : BD__KC;
            A->pack(A, pa, i0 + ic, mc, pc, kc, BD__MR);
            for (jr = 0; jr < N; jr += BD__NR) {
                int64_t nr = N - jr < BD__NR ? N - jr : BD__NR;
                B->pack(B, pb, j0 + jr, nr, pc, kc, BD__NR);
                for (ir = 0; ir < mc; ir += BD__MR) {
                    int64_t mr = mc - ir < BD__MR ? mc - ir : BD__MR;
                    uk(kc, pa + ir * kc, pb, C + (ic + ir) * ldc + jr, ldc, alpha, mr, nr);
                }
            }
        }
    }
}

/* the whole of C, or (in parallel) MC x NC tiles of it; no nested parallelism */
static void bd__gemm_tiles(const bd__gsrc *A, const bd__gsrc *B, int64_t M, int64_t N, int64_t K,
                           float alpha, float *C, int64_t ldc) {
    int64_t mt = (M + BD__MC - 1) / BD__MC, nt = (N + BD__NC - 1) / BD__NC, t;
    int par = bd__omp_threads() > 1 && mt * nt > 1 && (double)M * N * K >= 1e6;
    if (!par) {
        float buf[BD__GEMM_STACK_FLOATS];
        bd__gemm_run(A, 0, B, 0, M, N, K, alpha, C, ldc, buf);
        return;
    }
    BD__OMP_FOR_IF(par)
    for (t = 0; t < mt * nt; t++) {
        float buf[BD__GEMM_STACK_FLOATS];
        int64_t i0 = (t / nt) * BD__MC, j0 = (t % nt) * BD__NC;
        int64_t m = M - i0 < BD__MC ? M - i0 : BD__MC, n = N - j0 < BD__NC ? N - j0 : BD__NC;
        bd__gemm_run(A, i0, B, j0, m, n, K, alpha, C + i0 * ldc + j0, ldc, buf);
    }
}

BDAPI void bd_sgemm_builtin(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                            float alpha, const float *A, int64_t lda, const float *B,
                            int64_t ldb, float beta, float *C, int64_t ldc) {
    bd__gsrc sa, sb;
    int64_t i, j;
    if (M <= 0 || N <= 0) return;
    for (i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f) for (j = 0; j < N; j++) c[j] = 0.0f;
        else if (beta != 1.0f) for (j = 0; j < N; j++) c[j] *= beta;
    }
    if (alpha == 0.0f || K <= 0) return;
    memset(&sa, 0, sizeof sa);
    memset(&sb, 0, sizeof sb);
    sa.p = A; sa.ld = lda; sa.pack = trans_a ? bd__pack_colmajor : bd__pack_rowmajor;
    sb.p = B; sb.ld = ldb; sb.pack = trans_b ? bd__pack_rowmajor : bd__pack_colmajor;
    bd__gemm_tiles(&sa, &sb, M, N, K, alpha, C, ldc);
}

BDAPI void bd_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                    float alpha, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef BDENSE_USE_CBLAS
    if (K > 0) {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A,
                    (int)lda, B, (int)ldb, beta, C, (int)ldc);
        return;
    }
#endif
    bd_sgemm_builtin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ------------------------------------------------------------------------ */
/* >>layers                                                                 */
/* ------------------------------------------------------------------------ */
BDAPI void bd_linear_forward(float *out, const float *x, const float *w, const float *b,
                             int64_t N, int64_t In, int64_t Out) {
    int64_t n, o;
    bd_sgemm_builtin(0, 1, N, Out, In, 1.0f, x, In, w, In, 0.0f, out, Out);
    if (b)
        for (n = 0; n < N; n++)
            for (o = 0; o < Out; o++) out[n * Out + o] += b[o];
}

BDAPI void bd_linear_backward(float *dx, float *dw, float *db, const float *dout,
                              const float *x, const float *w, int64_t N, int64_t In, int64_t Out) {
    int64_t n, o;
    /* the built-in GEMM, as every kernel: no BLAS thread pool competing with
       OpenMP's, and the same bits for every thread count */
    if (dx) bd_sgemm_builtin(0, 0, N, In, Out, 1.0f, dout, Out, w, In, 1.0f, dx, In);   /* dx += dout w   */
    if (dw) bd_sgemm_builtin(1, 0, Out, In, N, 1.0f, dout, Out, x, In, 1.0f, dw, In);   /* dw += dout^T x */
    if (db)
        for (n = 0; n < N; n++)
            for (o = 0; o < Out; o++) db[o] += dout[n * Out + o];
}

#ifdef BDENSE_REFERENCE_KERNELS
static BD__UNUSED void bd__silu_forward_ref(float *out, const float *x, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) {
        float v = x[i];
        out[i] = v / (1.0f + expf(-v));
    }
}

static BD__UNUSED void bd__silu_backward_ref(float *dx, const float *dout, const float *x, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] += dout[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}
#endif

/* conv2d.  im2col layout: col is (Cin*k*k, Ho*Wo) row-major; row
   r = (ci*k + ky)*k + kx holds x[ci, oy*s - p + ky, ox*s - p + kx] (0 outside
   the image) at column oy*Wo + ox.  Then out[n] (Cout, Ho*Wo) =
   w (Cout, Cin*k*k) col, which is one GEMM per sample. */
#define BD__WG_L 32    /* Winograd: tiles per block = BD__NR */
#define BD__WG_SLOTS 4 /* Winograd: per-thread V slots the conv workspace provides */
static int bd__conv_is_1x1(int64_t k, int64_t stride, int64_t pad) {
    return k == 1 && stride == 1 && pad == 0;
}

/* the floats of col that bd__dw_direct needs per thread for cr input channels */
static int64_t bd__dw_slot(int64_t cr, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t k) {
    return Ho * Wo * 32 + (k == 3 ? (H + 2) * (W + 2) + cr * 288 : (cr + 8) / 9 * 288);
}
#define BD__WGDW_MS (BD__WG_L * 32 + 16) /* bd__wg4_dw's Mt: stride between the 36 positions */
/* the floats of col that bd__wg4_dw needs per thread for cr input channels:
   V (36 x (cr x 32 + 16), as bd__wg4_slot_floats), Mt, the transposed dout
   rows and dU (2 panels of 32 output channels x 36 x cr rounded up to 8) */
static int64_t bd__wgdw_slot(int64_t cr, int64_t W) {
    int64_t crp = (cr + 7) / 8 * 8;
    return 36 * (cr * BD__WG_L + 16) + 36 * BD__WGDW_MS + 4 * 4 * ((W + 3) / 4) * 32 + 2 * 36 * crp * 32;
}
BDAPI int64_t bd_conv2d_workspace_floats(int64_t Cin, int64_t H, int64_t W, int64_t k,
                                         int64_t stride, int64_t pad) {
    int64_t Ho, Wo;
    if (Cin <= 0 || H <= 0 || W <= 0 || k <= 0 || stride <= 0 || pad < 0) return 0;
    if (bd__conv_is_1x1(k, stride, pad)) /* the direct dw's slots (bd__dw_direct) */
        return BD__WG_SLOTS * bd__dw_slot(Cin, H, W, H, W, 1);
    Ho = (H + 2 * pad - k) / stride + 1;
    Wo = (W + 2 * pad - k) / stride + 1;
    if (Ho <= 0 || Wo <= 0) return 0;
    if (k == 3 && stride == 1 && pad == 1 && (W + 1) / 2 <= BD__WG_L) {
        /* Winograd: BD__WG_SLOTS per-thread slots of 36 x Cin x 32 floats
           (F(4x4, 3x3); F(2x2) uses 16 x Cin x 32), and two slots of the
           Winograd weight gradient (bd__wg4_dw) for half the channels each */
        int64_t wg = BD__WG_SLOTS * 36 * (Cin * BD__WG_L + 16), im = Cin * k * k * Ho * Wo;
        int64_t dw = Cin >= 16 ? 2 * bd__wgdw_slot(((Cin + 1) / 2 + 7) / 8 * 8, W) : 0;
        if (dw > wg) wg = dw;
        return wg > im ? wg : im;
    }
    return Cin * k * k * Ho * Wo;
}

/* col (Cin*k*k, Ho*Wo) <- x (Cin,H,W) of one sample */
#ifdef BDENSE_REFERENCE_KERNELS
static void bd__im2col(float *col, const float *x, int64_t Cin, int64_t H, int64_t W, int64_t k,
                       int64_t stride, int64_t pad, int64_t Ho, int64_t Wo) {
    int64_t ci, ky, kx, oy, ox;
    for (ci = 0; ci < Cin; ci++)
        for (ky = 0; ky < k; ky++)
            for (kx = 0; kx < k; kx++) {
                float *row = col + ((ci * k + ky) * k + kx) * Ho * Wo;
                const float *xc = x + ci * H * W;
                for (oy = 0; oy < Ho; oy++) {
                    int64_t iy = oy * stride - pad + ky;
                    float *r = row + oy * Wo;
                    if (iy < 0 || iy >= H) {
                        for (ox = 0; ox < Wo; ox++) r[ox] = 0.0f;
                        continue;
                    }
                    for (ox = 0; ox < Wo; ox++) {
                        int64_t ix = ox * stride - pad + kx;
                        r[ox] = (ix >= 0 && ix < W) ? xc[iy * W + ix] : 0.0f;
                    }
                }
            }
}
#endif

/* dx (Cin,H,W) += col2im(col): the adjoint of bd__im2col */
static void bd__col2im_add(float *dx, const float *col, int64_t Cin, int64_t H, int64_t W,
                           int64_t k, int64_t stride, int64_t pad, int64_t Ho, int64_t Wo) {
    int64_t ci, ky, kx, oy, ox;
    for (ci = 0; ci < Cin; ci++)
        for (ky = 0; ky < k; ky++)
            for (kx = 0; kx < k; kx++) {
                const float *row = col + ((ci * k + ky) * k + kx) * Ho * Wo;
                float *xc = dx + ci * H * W;
                for (oy = 0; oy < Ho; oy++) {
                    int64_t iy = oy * stride - pad + ky;
                    const float *r = row + oy * Wo;
                    if (iy < 0 || iy >= H) continue;
                    for (ox = 0; ox < Wo; ox++) {
                        int64_t ix = ox * stride - pad + kx;
                        if (ix >= 0 && ix < W) xc[iy * W + ix] += r[ox];
                    }
                }
            }
}

/* Plain reference conv2d (im2col + bd_sgemm per sample), kept beside the
   fast kernels below; tests/test_kernels_fast.c compares the two. */
#ifdef BDENSE_REFERENCE_KERNELS
static BD__UNUSED void bd__conv2d_forward_ref(float *out, float *col, const float *x, const float *w,
                             const float *b, int64_t N, int64_t Cin, int64_t H, int64_t W,
                             int64_t Cout, int64_t k, int64_t stride, int64_t pad) {
    int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    int64_t P = Ho * Wo, KK = Cin * k * k, n, o, i;
    int fast = bd__conv_is_1x1(k, stride, pad);
    for (n = 0; n < N; n++) {
        const float *xn = x + n * Cin * H * W;
        float *on = out + n * Cout * P;
        if (fast) {
            bd_sgemm(0, 0, Cout, P, Cin, 1.0f, w, Cin, xn, P, 0.0f, on, P);
        } else {
            bd__im2col(col, xn, Cin, H, W, k, stride, pad, Ho, Wo);
            bd_sgemm(0, 0, Cout, P, KK, 1.0f, w, KK, col, P, 0.0f, on, P);
        }
        if (b)
            for (o = 0; o < Cout; o++) {
                float bo = b[o], *r = on + o * P;
                for (i = 0; i < P; i++) r[i] += bo;
            }
    }
}

/* dw += dout[n] col^T, db += sum over positions of dout, dx += col2im(w^T dout[n]).
   col is reused: first as im2col(x) for dw, then as w^T dout for dx. */
static BD__UNUSED void bd__conv2d_backward_ref(float *dx, float *dw, float *db, float *col, const float *dout,
                              const float *x, const float *w, int64_t N, int64_t Cin,
                              int64_t H, int64_t W, int64_t Cout, int64_t k, int64_t stride,
                              int64_t pad) {
    int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    int64_t P = Ho * Wo, KK = Cin * k * k, n, o, i;
    int fast = bd__conv_is_1x1(k, stride, pad);
    for (n = 0; n < N; n++) {
        const float *xn = x + n * Cin * H * W;
        const float *dn = dout + n * Cout * P;
        if (db)
            for (o = 0; o < Cout; o++) {
                const float *r = dn + o * P;
                double s = 0.0;
                for (i = 0; i < P; i++) s += r[i];
                db[o] += (float)s;
            }
        if (fast) {
            if (dw) bd_sgemm(0, 1, Cout, Cin, P, 1.0f, dn, P, xn, P, 1.0f, dw, Cin);
            if (dx) bd_sgemm(1, 0, Cin, P, Cout, 1.0f, w, Cin, dn, P, 1.0f, dx + n * Cin * H * W, P);
        } else {
            if (dw) {
                bd__im2col(col, xn, Cin, H, W, k, stride, pad, Ho, Wo);
                bd_sgemm(0, 1, Cout, KK, P, 1.0f, dn, P, col, P, 1.0f, dw, KK);
            }
            if (dx) {
                bd_sgemm(1, 0, KK, P, Cout, 1.0f, w, KK, dn, P, 0.0f, col, P);
                bd__col2im_add(dx + n * Cin * H * W, col, Cin, H, W, k, stride, pad, Ho, Wo);
            }
        }
    }
}
#endif

/* ---- fast conv2d: implicit GEMM on the packed built-in GEMM ----
   Forward, per sample n: out[n] (Cout, P) = w (Cout, KK) . im2col(x[n]) (KK, P),
   where the B packer gathers im2col columns straight from x[n] (no col
   buffer).  Work items are (sample, column block) pairs, run in parallel.
   Backward: dw (Cout, KK) += sum_n dout[n] im2col(x[n])^T is ONE GEMM whose
   depth runs over (sample, position) pairs, split over column blocks of dw
   (each dw element is summed by one thread, in one order);
   dx for stride 1 is the convolution of dout with the flipped, transposed
   kernel (padding k-1-p), again implicit; other strides go through col
   and col2im.  None of them needs the col workspace except the last. */

/* op(B) = im2col of one image: element (depth kk, column j), kk = (ci*k + ky)*k + kx,
   j = oy*Wo + ox; pack columns r0.. */
static void bd__pack_im2col(const bd__gsrc *s, float *dst, int64_t r0, int64_t nr, int64_t k0,
                            int64_t kc, int64_t w) {
    int64_t pr, kk, k = s->k, H = s->H, W = s->W, Wo = s->Wo, st = s->stride, pad = s->pad;
    for (pr = 0; pr < nr; pr += w) {
        /* the panel's lanes as output-row segments, computed once */
        int64_t lanes = nr - pr < w ? nr - pr : w, j = r0 + pr, nseg = 0, l = 0;
        int64_t sl[BD__NR + 1], sn[BD__NR + 1], sy[BD__NR + 1], sx[BD__NR + 1];
        int64_t ci = k0 / (k * k), ky = (k0 / k) % k, kx = k0 % k;
        float *d = dst + pr * kc;
        while (l < lanes) {
            int64_t oy = j / Wo, ox = j % Wo, len = Wo - ox < lanes - l ? Wo - ox : lanes - l;
            sl[nseg] = l; sn[nseg] = len; sy[nseg] = oy * st - pad; sx[nseg] = ox * st - pad;
            nseg++;
            l += len;
            j += len;
        }
        for (kk = 0; kk < kc; kk++) {
            const float *xc = s->p + ci * H * W;
            float *dk = d + kk * w;
            int64_t g, e;
            for (g = 0; g < nseg; g++) {
                float *o = dk + sl[g];
                int64_t iy = sy[g] + ky, ix = sx[g] + kx, len = sn[g];
                if (iy < 0 || iy >= H) {
                    for (e = 0; e < len; e++) o[e] = 0.0f;
                } else if (st == 1) {
                    const float *xr = xc + iy * W;
                    int64_t a = ix < 0 ? -ix : 0, b = ix + len > W ? W - ix : len;
                    if (b < a) b = a;
                    for (e = 0; e < a; e++) o[e] = 0.0f;
                    for (e = a; e < b; e++) o[e] = xr[ix + e];
                    for (e = b; e < len; e++) o[e] = 0.0f;
                } else {
                    const float *xr = xc + iy * W;
                    for (e = 0; e < len; e++, ix += st) o[e] = (ix >= 0 && ix < W) ? xr[ix] : 0.0f;
                }
            }
            for (e = lanes; e < w; e++) dk[e] = 0.0f;
            if (++kx == k) {
                kx = 0;
                if (++ky == k) { ky = 0; ci++; }
            }
        }
    }
}

/* op(B) = im2col(x[n])^T stacked over samples: element (depth q, column kk),
   q = n*P + j, read from x + n*nstr */
static void bd__pack_im2col_t(const bd__gsrc *s, float *dst, int64_t r0, int64_t nr, int64_t k0,
                              int64_t kc, int64_t w) {
    int64_t pr, lane, k = s->k, H = s->H, W = s->W, Wo = s->Wo, P = s->Ho * s->Wo, st = s->stride;
    for (pr = 0; pr < nr; pr += w) {
        int64_t lanes = nr - pr < w ? nr - pr : w;
        float *d = dst + pr * kc;
        for (lane = 0; lane < lanes; lane++) {
            int64_t row = r0 + pr + lane, ci = row / (k * k), ky = (row / k) % k, kx = row % k;
            int64_t n = k0 / P, j = k0 % P, oy = j / Wo, ox = j % Wo, q = 0;
            const float *xc = s->p + n * s->nstr + ci * H * W;
            float *dl = d + lane;
            while (q < kc) {
                /* one output row segment ox .. ox + seg - 1 */
                int64_t seg = Wo - ox < kc - q ? Wo - ox : kc - q, e;
                int64_t iy = oy * st - s->pad + ky, ix = ox * st - s->pad + kx;
                if (iy < 0 || iy >= H) {
                    for (e = 0; e < seg; e++) dl[(q + e) * w] = 0.0f;
                } else {
                    const float *xr = xc + iy * W;
                    for (e = 0; e < seg; e++, ix += st)
                        dl[(q + e) * w] = (ix >= 0 && ix < W) ? xr[ix] : 0.0f;
                }
                q += seg;
                ox += seg;
                if (ox == Wo) {
                    ox = 0;
                    if (++oy == s->Ho) { oy = 0; xc += s->nstr; }
                }
            }
        }
        for (; lane < w; lane++) {
            int64_t q;
            for (q = 0; q < kc; q++) d[q * w + lane] = 0.0f;
        }
    }
}

#ifdef BD__X86
/* bd__pack_im2col_t with AVX-512 masked gathers: the 32 lanes (kk) of a
   depth row q are two 16-wide gathers from x at fixed per-lane offsets
   (ci*H*W + ky*W + kx) plus the position's base, masked where the tap falls
   in the zero padding. */
__attribute__((target("avx512f"))) static void
bd__pack_im2col_t_avx512(const bd__gsrc *s, float *dst, int64_t r0, int64_t nr, int64_t k0,
                         int64_t kc, int64_t w) {
    int64_t pr, k = s->k, H = s->H, W = s->W, Wo = s->Wo, P = s->Ho * s->Wo, st = s->stride;
    for (pr = 0; pr < nr; pr += w) {
        int32_t ofs[32], kys[32], kxs[32];
        int64_t lanes = nr - pr < w ? nr - pr : w, l, q;
        int64_t n = k0 / P, j = k0 % P, oy = j / Wo, ox = j % Wo;
        const float *xn = s->p + n * s->nstr;
        float *d = dst + pr * kc;
        __m512i vo0, vo1, vy0, vy1, vx0, vx1, vH = _mm512_set1_epi32((int32_t)H),
                                            vW = _mm512_set1_epi32((int32_t)W);
        __mmask16 lm0, lm1;
        for (l = 0; l < 32; l++) {
            int64_t row = r0 + pr + (l < lanes ? l : 0), ci = row / (k * k);
            kys[l] = (int32_t)((row / k) % k);
            kxs[l] = (int32_t)(row % k);
            ofs[l] = (int32_t)(ci * H * W + kys[l] * W + kxs[l]);
        }
        vo0 = _mm512_loadu_si512(ofs); vo1 = _mm512_loadu_si512(ofs + 16);
        vy0 = _mm512_loadu_si512(kys); vy1 = _mm512_loadu_si512(kys + 16);
        vx0 = _mm512_loadu_si512(kxs); vx1 = _mm512_loadu_si512(kxs + 16);
        lm0 = (__mmask16)(lanes >= 16 ? 0xFFFF : ((1u << lanes) - 1u));
        lm1 = (__mmask16)(lanes >= 32 ? 0xFFFF : (lanes > 16 ? ((1u << (lanes - 16)) - 1u) : 0u));
        for (q = 0; q < kc; q++) {
            int32_t iy0 = (int32_t)(oy * st - s->pad), ix0 = (int32_t)(ox * st - s->pad);
            __m512i by = _mm512_set1_epi32(iy0), bx = _mm512_set1_epi32(ix0);
            __m512i base = _mm512_set1_epi32(iy0 * (int32_t)W + ix0);
            __m512i iy = _mm512_add_epi32(vy0, by), ix = _mm512_add_epi32(vx0, bx);
            __mmask16 m = lm0 & _mm512_cmpge_epi32_mask(iy, _mm512_setzero_si512()) &
                          _mm512_cmplt_epi32_mask(iy, vH) &
                          _mm512_cmpge_epi32_mask(ix, _mm512_setzero_si512()) &
                          _mm512_cmplt_epi32_mask(ix, vW);
            _mm512_storeu_ps(d + q * w, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m,
                                                                 _mm512_add_epi32(vo0, base), xn, 4));
            iy = _mm512_add_epi32(vy1, by);
            ix = _mm512_add_epi32(vx1, bx);
            m = lm1 & _mm512_cmpge_epi32_mask(iy, _mm512_setzero_si512()) &
                _mm512_cmplt_epi32_mask(iy, vH) & _mm512_cmpge_epi32_mask(ix, _mm512_setzero_si512()) &
                _mm512_cmplt_epi32_mask(ix, vW);
            _mm512_storeu_ps(d + q * w + 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m,
                                                                      _mm512_add_epi32(vo1, base), xn, 4));
            if (++ox == Wo) {
                ox = 0;
                if (++oy == s->Ho) { oy = 0; xn += s->nstr; }
            }
        }
    }
}

/* the same with AVX2 masked gathers: four 8-wide gathers per depth row */
__attribute__((target("avx2,fma"))) static void
bd__pack_im2col_t_avx2(const bd__gsrc *s, float *dst, int64_t r0, int64_t nr, int64_t k0,
                       int64_t kc, int64_t w) {
    int64_t pr, k = s->k, H = s->H, W = s->W, Wo = s->Wo, P = s->Ho * s->Wo, st = s->stride;
    for (pr = 0; pr < nr; pr += w) {
        int32_t ofs[32], kys[32], kxs[32], lv[32];
        int64_t lanes = nr - pr < w ? nr - pr : w, l, q, g;
        int64_t n = k0 / P, j = k0 % P, oy = j / Wo, ox = j % Wo;
        const float *xn = s->p + n * s->nstr;
        float *d = dst + pr * kc;
        __m256i vo[4], vy[4], vx[4], vl[4], vH = _mm256_set1_epi32((int32_t)H), vW = _mm256_set1_epi32((int32_t)W);
        __m256i m1 = _mm256_set1_epi32(-1);
        for (l = 0; l < 32; l++) {
            int64_t row = r0 + pr + (l < lanes ? l : 0), ci = row / (k * k);
            kys[l] = (int32_t)((row / k) % k);
            kxs[l] = (int32_t)(row % k);
            ofs[l] = (int32_t)(ci * H * W + kys[l] * W + kxs[l]);
            lv[l] = l < lanes ? -1 : 0;
        }
        for (g = 0; g < 4; g++) {
            vo[g] = _mm256_loadu_si256((const __m256i *)(ofs + 8 * g));
            vy[g] = _mm256_loadu_si256((const __m256i *)(kys + 8 * g));
            vx[g] = _mm256_loadu_si256((const __m256i *)(kxs + 8 * g));
            vl[g] = _mm256_loadu_si256((const __m256i *)(lv + 8 * g));
        }
        for (q = 0; q < kc; q++) {
            int32_t iy0 = (int32_t)(oy * st - s->pad), ix0 = (int32_t)(ox * st - s->pad);
            __m256i by = _mm256_set1_epi32(iy0), bx = _mm256_set1_epi32(ix0);
            __m256i base = _mm256_set1_epi32(iy0 * (int32_t)W + ix0);
            for (g = 0; g < 4; g++) {
                __m256i iy = _mm256_add_epi32(vy[g], by), ix = _mm256_add_epi32(vx[g], bx);
                __m256i m = _mm256_and_si256(vl[g], _mm256_and_si256(
                    _mm256_and_si256(_mm256_cmpgt_epi32(iy, m1), _mm256_cmpgt_epi32(vH, iy)),
                    _mm256_and_si256(_mm256_cmpgt_epi32(ix, m1), _mm256_cmpgt_epi32(vW, ix))));
                _mm256_storeu_ps(d + q * w + 8 * g,
                                 _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xn, _mm256_add_epi32(vo[g], base),
                                                          _mm256_castsi256_ps(m), 4));
            }
            if (++ox == Wo) {
                ox = 0;
                if (++oy == s->Ho) { oy = 0; xn += s->nstr; }
            }
        }
    }
}
#endif

/* element (r, depth q) = p[(q / P)*nstr + r*ld + q % P], P = s->Ho*s->Wo:
   a per-sample (rows, P) matrix with the samples laid side by side */
static void bd__pack_cat(const bd__gsrc *s, float *dst, int64_t r0, int64_t nr, int64_t k0,
                         int64_t kc, int64_t w) {
    int64_t pr, lane, q, P = s->Ho * s->Wo;
    for (pr = 0; pr < nr; pr += w) {
        int64_t lanes = nr - pr < w ? nr - pr : w;
        float *d = dst + pr * kc;
        for (lane = 0; lane < lanes; lane++) {
            int64_t n = k0 / P, j = k0 % P;
            const float *src = s->p + n * s->nstr + (r0 + pr + lane) * s->ld;
            for (q = 0; q < kc; q++) {
                d[q * w + lane] = src[j];
                if (++j == P) { j = 0; src += s->nstr; }
            }
        }
        for (; lane < w; lane++)
            for (q = 0; q < kc; q++) d[q * w + lane] = 0.0f;
    }
}

/* flipped, transposed kernel: element (ci, depth j), j = (co*k + ky)*k + kx,
   = w[co, ci, k-1-ky, k-1-kx]; s->C = Cin of the forward conv */
static void bd__pack_wflip(const bd__gsrc *s, float *dst, int64_t r0, int64_t nr, int64_t k0,
                           int64_t kc, int64_t w) {
    int64_t pr, lane, q, k = s->k, kk2 = s->k * s->k;
    for (pr = 0; pr < nr; pr += w) {
        int64_t lanes = nr - pr < w ? nr - pr : w;
        int64_t co = k0 / kk2, ky = (k0 / k) % k, kx = k0 % k;
        float *d = dst + pr * kc;
        for (q = 0; q < kc; q++) {
            const float *src = s->p + ((co * s->C + r0 + pr) * k + (k - 1 - ky)) * k + (k - 1 - kx);
            float *dq = d + q * w;
            for (lane = 0; lane < lanes; lane++) dq[lane] = src[lane * kk2];
            for (; lane < w; lane++) dq[lane] = 0.0f;
            if (++kx == k) {
                kx = 0;
                if (++ky == k) { ky = 0; co++; }
            }
        }
    }
}

/* ---- direct 3x3 stride-1 convolution (AVX-512; AVX2+FMA) ----
   No im2col at all: the input is copied once into a zero-padded image
   (C, H+2, W+2), and the micro-kernel loads each input vector straight
   from it (a row segment shifted by (ky, kx)), against 8 output channels
   of weights packed as for the GEMM (8 rows x Cin*9).  Tile: 8 output
   channels x 2 vectors of 16 output pixels (row segments; for W <= 16 two
   rows); AVX2+FMA: 4 output channels x 3 row segments of 8 pixels.  Used
   for the forward and, with the flipped kernel on the padded dout, for dx;
   the padded copies live in the `col` workspace. */
#define BD__DC_SLACK 64
static int bd__direct_ok(int64_t H, int64_t W, int64_t k, int64_t stride, int64_t pad) {
#ifdef BD__X86
    return k == 3 && stride == 1 && pad == 1 && ((W >= 4 && W <= 7) || (W >= 12 && W <= 32)) &&
           H >= 1 &&
           (BD__CPU_AVX512() || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")));
#else
    (void)H; (void)W; (void)k; (void)stride; (void)pad;
    return 0;
#endif
}
/* xp (C, H+2, W+2) <- zero-padded x (C, H, W) */
/* (rows of 7..64 floats: fixed-size 8-float copies the compiler inlines,
   not a libc call per row, which cost ~10% of a 7x7 convolution at batch 1) */
static void bd__pad1(float *xp, const float *x, int64_t C, int64_t H, int64_t W) {
    int64_t c, y, i, Wp = W + 2, Hp = H + 2;
    for (c = 0; c < C; c++) {
        float *pc = xp + c * Hp * Wp;
        const float *xc = x + c * H * W;
        for (i = 0; i < Wp; i++) pc[i] = 0.0f;
        for (y = 0; y < H; y++) {
            float *r = pc + (y + 1) * Wp;
            const float *src = xc + y * W;
            r[0] = 0.0f;
            for (i = 0; i + 8 <= W; i += 8) memcpy(r + 1 + i, src + i, 8 * sizeof(float));
            for (; i < W; i++) r[1 + i] = src[i];
            r[W + 1] = 0.0f;
        }
        for (i = 0; i < Wp; i++) pc[(H + 1) * Wp + i] = 0.0f;
    }
    memset(xp + C * Hp * Wp, 0, BD__DC_SLACK * sizeof(float));
}
#ifdef BD__X86
/* out rows co0..co0+mr of one sample (Cout, H, W):
   acc = sum_kk a[kk*8 + r] * xp[off[kk] + pixel];  out = acc + bias (accum = 0)
   or out += acc (accum = 1).  Rows of output pixels: y0..y1-1. */
__attribute__((target("avx512f"))) static void
bd__direct_tile(float *out, const float *ap, const float *xp, const int32_t *off, int64_t KK,
                int64_t H, int64_t W, int64_t mr, const float *bias, int accum, int64_t y0,
                int64_t y1) {
    int64_t Wp = W + 2, HW = H * W, y, i, kk;
    int two_rows = W <= 16, quad = W <= 7;
    __mmask16 m0, m1;
    if (quad) {
        /* each vector holds two output rows: lanes 0..W-1 and Wp..Wp+W-1 (the
           two lanes between are the padding columns: junk, not stored) */
        m0 = (__mmask16)(((1u << W) - 1u) | (((1u << W) - 1u) << Wp));
        m1 = m0;
    } else if (two_rows) {
        m0 = (__mmask16)((1u << W) - 1u);
        m1 = m0;
    } else {
        m0 = (__mmask16)0xFFFF;
        m1 = (__mmask16)((1u << (W - 16)) - 1u);
    }
    for (y = y0; y < y1; y += quad ? 4 : (two_rows ? 2 : 1)) {
        /* vector 0: (y, 0..15); vector 1: (y, 16..) or (y+1, 0..);
           quad: vector 0 = rows y, y+1; vector 1 = rows y+2, y+3 */
        int64_t b0 = y * Wp, b1 = quad ? (y + 2) * Wp : (two_rows ? (y + 1) * Wp : y * Wp + 16);
        int64_t o0 = y * W, o1 = quad ? (y + 2) * W : (two_rows ? (y + 1) * W : y * W + 16);
        int has1 = quad ? y + 2 < y1 : (!two_rows || y + 1 < y1);
        __mmask16 q0 = m0, q1 = m1;
        if (quad) {
            if (y + 1 >= y1) q0 = (__mmask16)((1u << W) - 1u);
            if (y + 3 >= y1) q1 = (__mmask16)((1u << W) - 1u);
        }
        const float *a = ap;
        __m512 r[16];
        for (i = 0; i < 16; i++) r[i] = _mm512_setzero_ps();
        for (kk = 0; kk < KK; kk++, a += 8)
            BD__FMA8X32(r, a, _mm512_loadu_ps(xp + off[kk] + b0), _mm512_loadu_ps(xp + off[kk] + b1));
        for (i = 0; quad && i < mr; i++) {
            float *oc = out + i * HW;
            __m512 v0 = r[2 * i], v1 = r[2 * i + 1];
            if (accum) {
                v0 = _mm512_add_ps(v0, _mm512_maskz_expandloadu_ps(q0, oc + o0));
                if (has1) v1 = _mm512_add_ps(v1, _mm512_maskz_expandloadu_ps(q1, oc + o1));
            } else if (bias) {
                __m512 bv = _mm512_set1_ps(bias[i]);
                v0 = _mm512_add_ps(v0, bv);
                v1 = _mm512_add_ps(v1, bv);
            }
            _mm512_mask_compressstoreu_ps(oc + o0, q0, v0);
            if (has1) _mm512_mask_compressstoreu_ps(oc + o1, q1, v1);
        }
        for (i = 0; !quad && i < mr; i++) {
            float *oc = out + i * HW;
            __m512 v0 = r[2 * i], v1 = r[2 * i + 1];
            if (accum) {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, oc + o0));
                if (has1) v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, oc + o1));
            } else if (bias) {
                __m512 bv = _mm512_set1_ps(bias[i]);
                v0 = _mm512_add_ps(v0, bv);
                v1 = _mm512_add_ps(v1, bv);
            }
            _mm512_mask_storeu_ps(oc + o0, m0, v0);
            if (has1) _mm512_mask_storeu_ps(oc + o1, m1, v1);
        }
    }
}
/* AVX2+FMA: the same with 8-pixel row segments (x0 = 0, 8, .. < W, masked
   at the row's end) taken 3 at a time across the rows y0..y1-1, against 4
   output channels (12 ymm accumulators, 3 input loads and 4 broadcasts per
   12 FMAs); the 8-row weight panel in two halves */
static const int32_t bd__m8tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
/* AVX2 mask of the first n (0..8) lanes */
#define BD__M8(n) _mm256_loadu_si256((const __m256i *)(bd__m8tab + 8 - (n)))
/* o[0 .. n-1] = the first n (0..8) lanes of v, as 4 + 2 + 1 lane stores:
   AMD runs a masked ymm store (vmaskmovps) as a slow microcoded sequence */
__attribute__((target("avx2,fma"))) static inline void bd__store8(float *o, __m256 v, int64_t n) {
    __m128 q = _mm256_castps256_ps128(v);
    if (n >= 8) {
        _mm256_storeu_ps(o, v);
        return;
    }
    if (n >= 4) {
        _mm_storeu_ps(o, q);
        q = _mm256_extractf128_ps(v, 1);
        o += 4;
        n -= 4;
    }
    if (n >= 2) {
        _mm_storel_pi((__m64 *)o, q);
        q = _mm_movehl_ps(q, q);
        o += 2;
        n -= 2;
    }
    if (n) _mm_store_ss(o, q);
}
__attribute__((target("avx2,fma"))) static void
bd__direct_tile_avx2(float *out, const float *ap, const float *xp, const int32_t *off, int64_t KK,
                     int64_t H, int64_t W, int64_t mr, const float *bias, int accum, int64_t y0,
                     int64_t y1) {
    int64_t Wp = W + 2, HW = H * W, nseg = (W + 7) / 8, nv = (y1 - y0) * nseg, v, kk, hf, i, j;
    for (v = 0; v < nv; v += 3) {
        int64_t bi[3], bo[3], cnt[3], nvv = nv - v < 3 ? nv - v : 3;
        for (j = 0; j < 3; j++) {
            int64_t q = v + (j < nvv ? j : 0), y = y0 + q / nseg, x0 = q % nseg * 8;
            bi[j] = y * Wp + x0;
            bo[j] = y * W + x0;
            cnt[j] = j < nvv ? (W - x0 < 8 ? W - x0 : 8) : 0;
        }
        for (hf = 0; hf * 4 < mr; hf++) {
            const float *a = ap + 4 * hf, *p0 = xp + bi[0], *p1 = xp + bi[1], *p2 = xp + bi[2];
            /* named accumulators: an array indexed after the loop is kept in memory by GCC */
            __m256 r0 = _mm256_setzero_ps(), r1 = r0, r2 = r0, r3 = r0, r4 = r0, r5 = r0, r6 = r0, r7 = r0,
                   r8 = r0, r9 = r0, r10 = r0, r11 = r0, s0, s1, s2, w, r[12];
            for (kk = 0; kk < KK; kk++, a += 8) {
                int64_t o = off[kk];
                s0 = _mm256_loadu_ps(p0 + o); s1 = _mm256_loadu_ps(p1 + o); s2 = _mm256_loadu_ps(p2 + o);
                w = _mm256_broadcast_ss(a + 0);
                r0 = _mm256_fmadd_ps(w, s0, r0); r1 = _mm256_fmadd_ps(w, s1, r1); r2 = _mm256_fmadd_ps(w, s2, r2);
                w = _mm256_broadcast_ss(a + 1);
                r3 = _mm256_fmadd_ps(w, s0, r3); r4 = _mm256_fmadd_ps(w, s1, r4); r5 = _mm256_fmadd_ps(w, s2, r5);
                w = _mm256_broadcast_ss(a + 2);
                r6 = _mm256_fmadd_ps(w, s0, r6); r7 = _mm256_fmadd_ps(w, s1, r7); r8 = _mm256_fmadd_ps(w, s2, r8);
                w = _mm256_broadcast_ss(a + 3);
                r9 = _mm256_fmadd_ps(w, s0, r9); r10 = _mm256_fmadd_ps(w, s1, r10); r11 = _mm256_fmadd_ps(w, s2, r11);
            }
            r[0] = r0; r[1] = r1; r[2] = r2; r[3] = r3; r[4] = r4; r[5] = r5;
            r[6] = r6; r[7] = r7; r[8] = r8; r[9] = r9; r[10] = r10; r[11] = r11;
            for (i = 0; i < 4 && 4 * hf + i < mr; i++) {
                float *oc = out + (4 * hf + i) * HW;
                __m256 bv = _mm256_set1_ps(!accum && bias ? bias[4 * hf + i] : 0.0f);
                for (j = 0; j < nvv; j++) {
                    float *o = oc + bo[j];
                    __m256 val = r[3 * i + j];
                    if (cnt[j] == 8)
                        _mm256_storeu_ps(o, accum ? _mm256_add_ps(val, _mm256_loadu_ps(o)) : _mm256_add_ps(val, bv));
                    else
                        bd__store8(o, accum ? _mm256_add_ps(val, _mm256_maskload_ps(o, BD__M8(cnt[j]))) : _mm256_add_ps(val, bv),
                                   cnt[j]);
                }
            }
        }
    }
}
#endif

/* One sample: out (Cout, H, W) (=) or += conv3x3(xp padded (Cin, H+2, W+2)) with A
   packed by `A` (rows = output channels, depth = Cin*9 in (ci, ky, kx) order).
   Items (output-channel panel x row band) split over threads when par. */
static void bd__direct_sample(float *out, const float *xp, const bd__gsrc *A, const float *apk,
                              int64_t Cin, int64_t H, int64_t W, int64_t Cout, const float *bias,
                              int accum, int par) {
#ifdef BD__X86
    int nt = bd__omp_threads(), v512 = BD__CPU_AVX512();
    /* rows per band: AVX-512 as its tile; AVX2 a multiple of 3 row segments */
    int64_t npan = (Cout + 7) / 8, band = v512 ? (W <= 7 ? 4 : (W <= 16 ? 2 : 1)) : ((W + 7) / 8 % 3 ? 3 : 1);
    int64_t nbands = (H + band - 1) / band, bands_per = nbands, items, t;
    if (par && nt > 1 && npan < 2 * nt) bands_per = (nbands * npan + 2 * nt - 1) / (2 * nt);
    if (bands_per < 1) bands_per = 1;
    items = npan * ((nbands + bands_per - 1) / bands_per);
    BD__OMP_FOR_IF(par && nt > 1 && items > 1)
    for (t = 0; t < items; t++) {
        float ap[8 * 9 * 128];
        int32_t off[9 * 128];
        int64_t nb = (nbands + bands_per - 1) / bands_per, HpWp = (H + 2) * (W + 2);
        int64_t p = t / nb, b = t % nb, co0 = p * 8, mr = Cout - co0 < 8 ? Cout - co0 : 8;
        int64_t y0 = b * bands_per * band, y1 = y0 + bands_per * band, c0, ci, ky, kx;
        if (y1 > H) y1 = H;
        for (ci = 0; ci < Cin && ci < 128; ci++)
            for (ky = 0; ky < 3; ky++)
                for (kx = 0; kx < 3; kx++)
                    off[(ci * 3 + ky) * 3 + kx] = (int32_t)((ci * (H + 2) + ky) * (W + 2) + kx);
        /* depth in chunks of up to 128 input channels (the stack buffers) */
        for (c0 = 0; c0 < Cin; c0 += 128) {
            int64_t cc = Cin - c0 < 128 ? Cin - c0 : 128;
            const float *a = apk ? apk + p * 8 * Cin * 9 + c0 * 9 * 8 : ap;
            if (!apk) A->pack(A, ap, co0, mr, c0 * 9, cc * 9, 8);
            if (v512)
                bd__direct_tile(out + co0 * H * W, a, xp + c0 * HpWp, off, cc * 9, H, W, mr,
                                c0 == 0 && bias ? bias + co0 : NULL, accum || c0 > 0, y0, y1);
            else
                bd__direct_tile_avx2(out + co0 * H * W, a, xp + c0 * HpWp, off, cc * 9, H, W, mr,
                                     c0 == 0 && bias ? bias + co0 : NULL, accum || c0 > 0, y0, y1);
        }
    }
#else
    (void)out; (void)xp; (void)A; (void)apk; (void)Cin; (void)H; (void)W; (void)Cout; (void)bias;
    (void)accum; (void)par;
#endif
}

#ifdef _OPENMP
static int bd__omp_tid(void) { return omp_get_thread_num(); }
#else
static int bd__omp_tid(void) { return 0; }
#endif
/* out[n] (Cout, H, W) (= + bias, or += when accum) = direct 3x3 conv of x[n]
   (Cin, H, W); padded copies in col (colsize floats).  0 = not applicable. */
static int bd__conv3_direct(float *out, float *col, int64_t colsize, const float *x,
                            const bd__gsrc *A, int64_t N, int64_t Cin, int64_t H, int64_t W,
                            int64_t Cout, const float *bias, int accum) {
    int64_t pad = Cin * (H + 2) * (W + 2) + BD__DC_SLACK, n, npan = (Cout + 7) / 8;
    int64_t packed = npan * 8 * Cin * 9, slots;
    int nt = bd__omp_threads(), multi;
    float *apk = NULL;
    if (!col || pad > colsize) return 0;
#ifdef BD__X86
    if (!BD__CPU_AVX512() && Cin < 4) return 0; /* AVX2: the implicit GEMM is faster (conv_in, 1 channel) */
#endif
    multi = nt > 1 && N >= nt && (int64_t)nt * pad <= colsize;
    slots = multi ? nt : 1;
    if (N > 1 && slots * pad + packed <= colsize) {
        /* weights packed once for all samples, after the padded images */
        apk = col + slots * pad;
        for (n = 0; n < npan; n++)
            A->pack(A, apk + n * 8 * Cin * 9, n * 8, Cout - n * 8 < 8 ? Cout - n * 8 : 8, 0, Cin * 9, 8);
    }
    if (multi) {
        BD__OMP_FOR_IF(1)
        for (n = 0; n < N; n++) {
            float *xp = col + (int64_t)bd__omp_tid() * pad;
            bd__pad1(xp, x + n * Cin * H * W, Cin, H, W);
            bd__direct_sample(out + n * Cout * H * W, xp, A, apk, Cin, H, W, Cout, bias, accum, 0);
        }
    } else {
        for (n = 0; n < N; n++) {
            bd__pad1(col, x + n * Cin * H * W, Cin, H, W);
            bd__direct_sample(out + n * Cout * H * W, col, A, apk, Cin, H, W, Cout, bias, accum, 1);
        }
    }
    return 1;
}

/* ---- Direct weight gradient (3x3 pad 1, stride 1 or 2; 1x1) ----
   dw[o][c][ky][kx] += sum over n and output pixels (y, x) of
   dout[n][o][y][x] xp[n][c][s*y+ky][s*x+kx] (xp: x with a zero border).
   Vectorised over output channels: the kernel keeps 9 taps x 32 output
   channels of sums in registers (AVX-512: 18 zmm; AVX2+FMA: three taps at
   a time, 12 ymm) and, per output pixel, loads the 32 dout values once and
   broadcasts the 9 input values under the taps (18 FMAs per 2 vector loads
   and 9 broadcasts: no packing, no gathers).  A 1x1 convolution uses the
   same kernel with 9 input channels as the "taps".  A work item owns 32
   output channels x a range of input channels; per sample it transposes
   its dout rows to (pixel, 32 channels) and per input channel copies the
   image into a zero-bordered one (its slot of `col`).  Each (sample,
   channel) sum over pixels starts from zero and is added to the item's
   running sums, which are added to dw at the end: every element is summed
   in one order (pixels, then samples) whatever the split over threads.
   1.3-1.9x the gather-packed GEMM on the UNet's 3x3 shapes
   (docs/performance.md). */
#ifdef BD__X86
/* acc[t*32 + o] += sum over y < Ho, x < Wo of b[y*rs + x*ps + off[t]] dT[(y*Wo + x)*32 + o] */
__attribute__((target("avx512f"))) static void
bd__dwk_avx512(float *acc, const float *b0, const int64_t *off, int64_t rs, int64_t ps, const float *dT,
               int64_t Ho, int64_t Wo) {
    __m512 r[18];
    const int64_t o0 = off[0], o1 = off[1], o2 = off[2], o3 = off[3], o4 = off[4], o5 = off[5], o6 = off[6],
                  o7 = off[7], o8 = off[8];
    int64_t y, x, i;
    for (i = 0; i < 18; i++) r[i] = _mm512_setzero_ps();
    for (y = 0; y < Ho; y++) {
        const float *b = b0 + y * rs, *d = dT + y * Wo * 32;
        for (x = 0; x < Wo; x++, b += ps, d += 32) {
            __m512 d0 = _mm512_loadu_ps(d), d1 = _mm512_loadu_ps(d + 16), a;
#define BD__DWT(t, off)                                                                                \
    a = _mm512_set1_ps(b[off]);                                                                       \
    r[2 * (t)] = _mm512_fmadd_ps(a, d0, r[2 * (t)]);                                                  \
    r[2 * (t) + 1] = _mm512_fmadd_ps(a, d1, r[2 * (t) + 1]);
            BD__DWT(0, o0) BD__DWT(1, o1) BD__DWT(2, o2) BD__DWT(3, o3) BD__DWT(4, o4)
            BD__DWT(5, o5) BD__DWT(6, o6) BD__DWT(7, o7) BD__DWT(8, o8)
#undef BD__DWT
        }
    }
    for (i = 0; i < 18; i++) _mm512_storeu_ps(acc + 16 * i, _mm512_add_ps(r[i], _mm512_loadu_ps(acc + 16 * i)));
}
__attribute__((target("avx2,fma"))) static void
bd__dwk_avx2(float *acc, const float *b0, const int64_t *off, int64_t rs, int64_t ps, const float *dT,
             int64_t Ho, int64_t Wo) {
    int64_t g, y, x, i, j;
    for (g = 0; g < 3; g++) {
        __m256 r[12];
        const int64_t q0 = off[3 * g], q1 = off[3 * g + 1], q2 = off[3 * g + 2];
        for (i = 0; i < 12; i++) r[i] = _mm256_setzero_ps();
        for (y = 0; y < Ho; y++) {
            const float *b = b0 + y * rs, *d = dT + y * Wo * 32;
            for (x = 0; x < Wo; x++, b += ps, d += 32) {
                __m256 dd[4], a0 = _mm256_broadcast_ss(b + q0), a1 = _mm256_broadcast_ss(b + q1),
                              a2 = _mm256_broadcast_ss(b + q2);
                for (j = 0; j < 4; j++) dd[j] = _mm256_loadu_ps(d + 8 * j);
                for (j = 0; j < 4; j++) {
                    r[j] = _mm256_fmadd_ps(a0, dd[j], r[j]);
                    r[4 + j] = _mm256_fmadd_ps(a1, dd[j], r[4 + j]);
                    r[8 + j] = _mm256_fmadd_ps(a2, dd[j], r[8 + j]);
                }
            }
        }
        for (i = 0; i < 12; i++) {
            float *ac = acc + g * 96 + 8 * i;
            _mm256_storeu_ps(ac, _mm256_add_ps(r[i], _mm256_loadu_ps(ac)));
        }
    }
}
#endif
/* dw += the weight gradient above (k = 3: pad 1, stride 1 or 2; k = 1:
   stride 1, pad 0); col holds colsize floats.  0 = not applicable (shape,
   no AVX-512 or AVX2+FMA, or col too small). */
static int bd__dw_direct(float *dw, float *col, int64_t colsize, const float *dout, const float *x,
                         int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t k, int64_t stride,
                         int64_t pad) {
#ifdef BD__X86
    int64_t HW = H * W, Wp = W + 2, Hp = H + 2, Ho, Wo, P, nob = (Cout + 31) / 32, ncs = 1, cr, slot, items, t;
    int nt = bd__omp_threads(), use, v512 = BD__CPU_AVX512();
    if (!((k == 3 && pad == 1 && (stride == 1 || stride == 2)) || bd__conv_is_1x1(k, stride, pad))) return 0;
    if (!v512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
    if (!col || N <= 0 || Cin <= 0 || Cout <= 0 || H <= 0 || W <= 0) return 0;
    Ho = (H + 2 * pad - k) / stride + 1;
    Wo = (W + 2 * pad - k) / stride + 1;
    P = Ho * Wo;
    while (nob * ncs < nt && ncs < Cin) ncs++; /* input-channel ranges: an item per thread */
    cr = (Cin + ncs - 1) / ncs;
    if (k == 1) cr = (cr + 8) / 9 * 9; /* whole groups of 9 channels */
    ncs = (Cin + cr - 1) / cr;
    slot = bd__dw_slot(cr, H, W, Ho, Wo, k);
    if (colsize < slot) return 0;
    use = (int64_t)nt < colsize / slot ? nt : (int)(colsize / slot);
    items = nob * ncs;
    (void)use; /* (unused without OpenMP) */
    BD__OMP_FOR_NT(use, use > 1 && items > 1)
    for (t = 0; t < items; t++) {
        int64_t o0 = t / ncs * 32, om = Cout - o0 < 32 ? Cout - o0 : 32, c0 = t % ncs * cr;
        int64_t c1 = c0 + cr < Cin ? c0 + cr : Cin, n, c, p, o, y, i, off[9];
        float *dT = col + (int64_t)bd__omp_tid() * slot, *xp = dT + P * 32, *acc = xp + (k == 3 ? Hp * Wp : 0);
        memset(acc, 0, (size_t)(k == 3 ? (c1 - c0) * 288 : (c1 - c0 + 8) / 9 * 288) * sizeof(float));
        if (k == 3) {
            memset(xp, 0, (size_t)(Hp * Wp) * sizeof(float));
            for (i = 0; i < 9; i++) off[i] = i / 3 * Wp + i % 3;
        }
        for (n = 0; n < N; n++) {
            const float *dn = dout + (n * Cout + o0) * P;
            for (o = 0; o < 32; o++) {
                const float *s = dn + o * P;
                if (o < om)
                    for (p = 0; p < P; p++) dT[p * 32 + o] = s[p];
                else
                    for (p = 0; p < P; p++) dT[p * 32 + o] = 0.0f;
            }
            for (c = c0; c < c1; c += k == 3 ? 1 : 9) {
                const float *xc = x + (n * Cin + c) * HW, *b0 = xp;
                float *a = acc + (k == 3 ? (c - c0) : (c - c0) / 9) * 288;
                if (k == 3) {
                    for (y = 0; y < H; y++) memcpy(xp + (y + 1) * Wp + 1, xc + y * W, (size_t)W * sizeof(float));
                } else {
                    b0 = xc; /* 9 channels as the taps (the last group repeats channel c) */
                    for (i = 0; i < 9; i++) off[i] = c + i < c1 ? i * HW : 0;
                }
                if (v512) bd__dwk_avx512(a, b0, off, k == 3 ? stride * Wp : W, k == 3 ? stride : 1, dT, Ho, Wo);
                else bd__dwk_avx2(a, b0, off, k == 3 ? stride * Wp : W, k == 3 ? stride : 1, dT, Ho, Wo);
            }
        }
        if (k == 3) {
            for (c = c0; c < c1; c++)
                for (o = 0; o < om; o++)
                    for (i = 0; i < 9; i++) dw[((o0 + o) * Cin + c) * 9 + i] += acc[(c - c0) * 288 + i * 32 + o];
        } else {
            for (c = c0; c < c1; c++)
                for (o = 0; o < om; o++) dw[(o0 + o) * Cin + c] += acc[(c - c0) / 9 * 288 + (c - c0) % 9 * 32 + o];
        }
    }
    return 1;
#else
    (void)dw; (void)col; (void)colsize; (void)dout; (void)x; (void)N; (void)Cin; (void)H; (void)W; (void)Cout;
    (void)k; (void)stride; (void)pad;
    return 0;
#endif
}

/* ---- Winograd F(2x2, 3x3) for stride-1, pad-1 3x3 convolutions ----
   Lavin & Gray's minimal filtering: an output tile of 2x2 pixels is
   A^T [ (G g G^T) (.) (B^T d B) ] A for the 4x4 input tile d around it, so
   per tile and channel pair 16 multiplies replace 36 (2.25x fewer).  The
   16 positions xi of the 4x4 transformed tile are 16 independent GEMMs
   M_xi (Cout x tiles) = U_xi (Cout x Cin) V_xi (Cin x tiles), run on the
   built-in GEMM micro-kernel (AVX-512 and AVX2+FMA: their own transforms
   and products, bd__wg_*_avx512 / _avx2; plain C otherwise).
   Fused tiling, no large buffers: a work item is a block of whole tile rows
   (32 / tiles-per-row of them: 32 tiles, the micro-kernel's NR) and a group
   of output-channel panels; it transforms its input tiles for all input
   channels into V (its slot of the `col` workspace: 16 x Cin x 32 floats),
   then per panel of 8 output channels runs the 16 products into M (16 x 8
   x 32 floats, on the stack) and transforms M straight into the output
   (with the bias, or += for dx).  The transformed weights U are computed
   once per call into `col` when it has room, else per item and panel on
   the stack (0.5% of the work).  Every output element is summed in one
   fixed order (ci ascending inside each of the 16 products, then the fixed
   output transform), whatever the split over threads: the same bits for
   every thread count.  Used for the forward and, with the flipped,
   transposed kernel on dout, for dx (see bd__wg_rule).  F(4x4, 3x3)
   (bd__wg4_*, below) shares the blocking, the slots and the product
   kernels, with 6x6 input tiles and 36 positions. */
#define BD__WG_KC 128  /* input channels per stack-transformed weight chunk */
#define BD__WG_MS (8 * BD__WG_L + 16) /* M: stride between the 16 positions (padded: no 4K aliasing) */
/* weight (o, i, ky, kx) = w[o*so + i*si + ky*3 + kx], or at (2-ky, 2-kx) when flip */
typedef struct {
    const float *w;
    int64_t so, si;
    int flip;
} bd__wg_wsrc;
/* V's stride between the 16 positions: padded by 64 bytes (a power-of-two
   stride made the 16 stores of a tile alias in the store buffer) */
static int64_t bd__wg_vs(int64_t C) { return C * BD__WG_L + 16; }
static int64_t bd__wg_slot_floats(int64_t C) { return 16 * bd__wg_vs(C); }
static int bd__wg_shape_ok(int64_t H, int64_t W, int64_t k, int64_t stride, int64_t pad) {
    return k == 3 && stride == 1 && pad == 1 && H >= 1 && W >= 1 && (W + 1) / 2 <= BD__WG_L;
}
/* ua[(xi*kc + c)*8 + r] = (G g G^T)[xi] of weight (o0 + r, c0 + c); rows r >= mr are 0 */
static void bd__wg_wtrans(float *ua, const bd__wg_wsrc *s, int64_t o0, int64_t mr, int64_t c0,
                          int64_t kc) {
    int64_t r, c, i;
    for (r = 0; r < 8; r++)
        for (c = 0; c < kc; c++) {
            float g[9], t[4][3];
            if (r >= mr) {
                for (i = 0; i < 16; i++) ua[(i * kc + c) * 8 + r] = 0.0f;
                continue;
            }
            {
                const float *src = s->w + (o0 + r) * s->so + (c0 + c) * s->si;
                for (i = 0; i < 9; i++) g[i] = src[s->flip ? 8 - i : i];
            }
            for (i = 0; i < 3; i++) { /* G g: along ky, per column kx = i */
                float a = g[i], b = g[3 + i], e = g[6 + i];
                t[0][i] = a;
                t[1][i] = 0.5f * (a + b + e);
                t[2][i] = 0.5f * (a - b + e);
                t[3][i] = e;
            }
            for (i = 0; i < 4; i++) { /* (G g) G^T: along kx */
                float a = t[i][0], b = t[i][1], e = t[i][2];
                ua[((i * 4 + 0) * kc + c) * 8 + r] = a;
                ua[((i * 4 + 1) * kc + c) * 8 + r] = 0.5f * (a + b + e);
                ua[((i * 4 + 2) * kc + c) * 8 + r] = 0.5f * (a - b + e);
                ua[((i * 4 + 3) * kc + c) * 8 + r] = e;
            }
        }
}
/* V[(xi*C + c)*32 + lane] = (B^T d B)[xi] of the input tile of lane
   (lane = r*TWp + tx: tile row g0 + r, g = n*TH + ty) of channel c of x
   (N, C, H, W); lanes of no tile are 0 */
static void bd__wg_itrans(float *V, const float *x, int64_t C, int64_t H, int64_t W, int64_t TH,
                          int64_t TW, int64_t TWp, int64_t g0, int64_t nrows) {
    int64_t c, r, j, q, tx, Wq = 2 * TW + 2, HW = H * W, vs = bd__wg_vs(C);
    for (c = 0; c < C; c++) {
        for (j = 0; j < 16; j++) memset(V + j * vs + c * BD__WG_L, 0, BD__WG_L * sizeof(float));
        for (r = 0; r < nrows; r++) {
            float p[4][2 * BD__WG_L + 2], d[4][2 * BD__WG_L + 2];
            int64_t g = g0 + r, n = g / TH, ty = g % TH;
            const float *xc = x + (n * C + c) * HW;
            for (j = 0; j < 4; j++) { /* padded input rows 2ty-1 .. 2ty+2, columns -1 .. */
                int64_t y = 2 * ty - 1 + j;
                for (q = 0; q < Wq; q++) p[j][q] = 0.0f;
                if (y >= 0 && y < H) memcpy(&p[j][1], xc + y * W, (size_t)W * sizeof(float));
            }
            for (q = 0; q < Wq; q++) { /* B^T d: along y */
                d[0][q] = p[0][q] - p[2][q];
                d[1][q] = p[1][q] + p[2][q];
                d[2][q] = p[2][q] - p[1][q];
                d[3][q] = p[1][q] - p[3][q];
            }
            for (j = 0; j < 4; j++) { /* (B^T d) B: along x */
                float *v0 = V + (j * 4) * vs + c * BD__WG_L + r * TWp;
                float *v1 = v0 + vs, *v2 = v1 + vs, *v3 = v2 + vs;
                const float *e = d[j];
                for (tx = 0; tx < TW; tx++) {
                    float e0 = e[2 * tx], e1 = e[2 * tx + 1], e2 = e[2 * tx + 2], e3 = e[2 * tx + 3];
                    v0[tx] = e0 - e2;
                    v1[tx] = e1 + e2;
                    v2[tx] = e2 - e1;
                    v3[tx] = e1 - e3;
                }
            }
        }
    }
}
/* out rows o0 .. o0+mr-1 of the block's tiles = A^T M A (+ bias, or +=) */
static void bd__wg_otrans(float *out, const float *M, int64_t Cout, int64_t H, int64_t W, int64_t TH,
                          int64_t TW, int64_t TWp, int64_t g0, int64_t nrows, int64_t o0, int64_t mr,
                          const float *bias, int accum) {
    int64_t r, l, rr, tx, HW = H * W;
    for (r = 0; r < mr; r++) {
        float y0[BD__WG_L], y1[BD__WG_L], y2[BD__WG_L], y3[BD__WG_L];
        const float *m = M + r * BD__WG_L;
        float b = (!accum && bias) ? bias[o0 + r] : 0.0f;
        for (l = 0; l < BD__WG_L; l++) {
#define BD__WGM(i, j) m[((i) * 4 + (j)) * BD__WG_MS + l]
            float t00 = BD__WGM(0, 0) + BD__WGM(1, 0) + BD__WGM(2, 0);
            float t01 = BD__WGM(0, 1) + BD__WGM(1, 1) + BD__WGM(2, 1);
            float t02 = BD__WGM(0, 2) + BD__WGM(1, 2) + BD__WGM(2, 2);
            float t03 = BD__WGM(0, 3) + BD__WGM(1, 3) + BD__WGM(2, 3);
            float t10 = BD__WGM(1, 0) - BD__WGM(2, 0) - BD__WGM(3, 0);
            float t11 = BD__WGM(1, 1) - BD__WGM(2, 1) - BD__WGM(3, 1);
            float t12 = BD__WGM(1, 2) - BD__WGM(2, 2) - BD__WGM(3, 2);
            float t13 = BD__WGM(1, 3) - BD__WGM(2, 3) - BD__WGM(3, 3);
#undef BD__WGM
            y0[l] = t00 + t01 + t02 + b;
            y1[l] = t01 - t02 - t03 + b;
            y2[l] = t10 + t11 + t12 + b;
            y3[l] = t11 - t12 - t13 + b;
        }
        for (rr = 0; rr < nrows; rr++) {
            int64_t g = g0 + rr, n = g / TH, ty = g % TH, oy = 2 * ty;
            float *o = out + (n * Cout + o0 + r) * HW + oy * W;
            int two = oy + 1 < H;
            for (tx = 0; tx < TW; tx++) {
                int64_t ln = rr * TWp + tx, ox = 2 * tx;
                if (accum) {
                    o[ox] += y0[ln];
                    if (ox + 1 < W) o[ox + 1] += y1[ln];
                    if (two) {
                        o[W + ox] += y2[ln];
                        if (ox + 1 < W) o[W + ox + 1] += y3[ln];
                    }
                } else {
                    o[ox] = y0[ln];
                    if (ox + 1 < W) o[ox + 1] = y1[ln];
                    if (two) {
                        o[W + ox] = y2[ln];
                        if (ox + 1 < W) o[W + ox + 1] = y3[ln];
                    }
                }
            }
        }
    }
}
/* ---- Winograd F(4x4, 3x3): 6x6 input tiles, 36 products per tile and
   channel pair for 16 outputs (4x fewer multiplies than direct, 1.78x fewer
   than F(2x2, 3x3)); points 0, +-2/3, +-3/2, infinity (a reciprocal pair
   +-c, +-1/c with c = 3/2: Barabasz et al. 2020, Alam et al. 2022; against
   Lavin & Gray's 0, +-1, +-2: rms error 2.2-2.5x smaller in float32 over 64
   channels (tools/winograd_points.py, the best of the sets tried), worst
   error of test_winograd4_vs_direct 8.2e-6 -> 1.9e-6):
     B^T = [1 0 -97/36 0 1 0; 0 -3/2 -9/4 2/3 1 0; 0 3/2 -9/4 -2/3 1 0;
            0 -2/3 -4/9 3/2 1 0; 0 2/3 -4/9 -3/2 1 0; 0 1 0 -97/36 0 1]
     G = [1 0 0; -81/130 -27/65 -18/65; -81/130 27/65 -18/65;
          8/65 12/65 18/65; 8/65 -12/65 18/65; 0 0 1]
     A^T = [1 1 1 1 1 0; 0 2/3 -2/3 3/2 -3/2 0; 0 4/9 4/9 9/4 9/4 0;
            0 8/27 -8/27 27/8 -27/8 1]
   Rows 1, 2 (points +-2/3) and 3, 4 (+-3/2) are pairs: even part +- odd
   part, the structure of every transform below.  The same blocking as
   F(2x2) (a block: whole rows of 4x4-pixel tiles in
   32 lanes; V: 36 x C x 32 floats per thread slot, M: 36 x 8 x 32 on the
   stack), the products chunked by BD__WG4_KC input channels. */
/* the transforms' constants (rounded to float; the products of the paired
   rows of B^T are (9/4)(2/3) = 3/2 and (4/9)(3/2) = 2/3) */
#define BD__WG4_B0 (97.0f / 36.0f)
#define BD__WG4_A1 (2.0f / 3.0f)
#define BD__WG4_A1SQ (4.0f / 9.0f)
#define BD__WG4_A1CU (8.0f / 27.0f)
#define BD__WG4_A3 1.5f
#define BD__WG4_A3SQ 2.25f
#define BD__WG4_A3CU 3.375f
#define BD__WG4_KC 64
#define BD__WG4_NEED_AVX2 48 /* F(4x4) from this many tile lanes off AVX-512 (bd__wg_rule) */
static int64_t bd__wg4_slot_floats(int64_t C) { return 36 * bd__wg_vs(C); }
/* ua[(xi*kc + c)*8 + r] = (G g G^T)[xi] (xi = 6 i + j) of weight (o0 + r, c0 + c);
   rows r >= mr are 0.  The 8 rows innermost (vectorisable loops of 8) */
static void bd__wg4_wtrans(float *ua, const bd__wg_wsrc *s, int64_t o0, int64_t mr, int64_t c0,
                           int64_t kc) {
    int64_t r, c, i;
    for (c = 0; c < kc; c++) {
        float g[9][8], t[6][3][8];
        for (r = 0; r < 8; r++) {
            const float *src = s->w + (o0 + (r < mr ? r : 0)) * s->so + (c0 + c) * s->si;
            for (i = 0; i < 9; i++) g[i][r] = r < mr ? src[s->flip ? 8 - i : i] : 0.0f;
        }
        for (i = 0; i < 3; i++) /* G g: along ky, per column kx = i */
            for (r = 0; r < 8; r++) {
                float a = g[i][r], b = g[3 + i][r], e = g[6 + i][r];
                float e1 = a * (-81.0f / 130.0f) - e * (18.0f / 65.0f), o1 = b * (27.0f / 65.0f);
                float e3 = a * (8.0f / 65.0f) + e * (18.0f / 65.0f), o3 = b * (12.0f / 65.0f);
                t[0][i][r] = a;
                t[1][i][r] = e1 - o1;
                t[2][i][r] = e1 + o1;
                t[3][i][r] = e3 + o3;
                t[4][i][r] = e3 - o3;
                t[5][i][r] = e;
            }
        for (i = 0; i < 6; i++) { /* (G g) G^T: along kx */
            float *u = ua + ((i * 6) * kc + c) * 8, v[6][8];
            int64_t q;
            for (r = 0; r < 8; r++) {
                float a = t[i][0][r], b = t[i][1][r], e = t[i][2][r];
                float e1 = a * (-81.0f / 130.0f) - e * (18.0f / 65.0f), o1 = b * (27.0f / 65.0f);
                float e3 = a * (8.0f / 65.0f) + e * (18.0f / 65.0f), o3 = b * (12.0f / 65.0f);
                v[0][r] = a;
                v[1][r] = e1 - o1;
                v[2][r] = e1 + o1;
                v[3][r] = e3 + o3;
                v[4][r] = e3 - o3;
                v[5][r] = e;
            }
            for (q = 0; q < 6; q++) memcpy(u + q * kc * 8, v[q], sizeof v[q]);
        }
    }
}
/* B^T d of 6 values (a vector along y or x) */
#define BD__WG4_BT(d0, d1, d2, d3, d4, d5, r0, r1, r2, r3, r4, r5)                                       \
    do {                                                                                               \
        float bd__p_ = (d4) - BD__WG4_A3SQ * (d2), bd__q_ = BD__WG4_A1 * ((d3) - BD__WG4_A3SQ * (d1));   \
        float bd__s_ = (d4) - BD__WG4_A1SQ * (d2), bd__t_ = BD__WG4_A3 * ((d3) - BD__WG4_A1SQ * (d1));   \
        (r0) = (d0) + (d4) - BD__WG4_B0 * (d2);                                                        \
        (r1) = bd__p_ + bd__q_;                                                                        \
        (r2) = bd__p_ - bd__q_;                                                                        \
        (r3) = bd__s_ + bd__t_;                                                                        \
        (r4) = bd__s_ - bd__t_;                                                                        \
        (r5) = (d1) + (d5) - BD__WG4_B0 * (d3);                                                        \
    } while (0)
/* V[(xi*C + c)*32 + lane] = (B^T d B)[xi] of the 6x6 input tile of lane
   (lane = r*TWp + tx: tile row g0 + r, g = n*TH + ty; the tile's pixels
   4ty-1 .. 4ty+4, 4tx-1 .. 4tx+4) of channel c < C of x (sample n at
   x + n*ns: C*H*W for the forward, the full channel count for the weight
   gradient's channel ranges, bd__wg4_dw); lanes of no tile are 0.  The
   weight gradient's A dY A^T and G^T dU G (bd__wg4_dw) are the transposes
   of this section's A^T and G: they change with the points */
static void bd__wg4_itrans(float *V, const float *x, int64_t C, int64_t H, int64_t W, int64_t TH,
                           int64_t TW, int64_t TWp, int64_t g0, int64_t nrows, int64_t ns) {
    int64_t c, r, j, q, tx, Wq = 4 * TW + 2, HW = H * W, vs = bd__wg_vs(C), lanes = nrows * TWp;
    for (c = 0; c < C; c++) {
        if (lanes < BD__WG_L)
            for (j = 0; j < 36; j++)
                memset(V + j * vs + c * BD__WG_L + lanes, 0, (size_t)(BD__WG_L - lanes) * sizeof(float));
        for (r = 0; r < nrows; r++) {
            float p[6][4 * BD__WG_L + 2], d[6][4 * BD__WG_L + 2];
            int64_t g = g0 + r, n = g / TH, ty = g % TH;
            const float *xc = x + n * ns + c * HW;
            for (j = 0; j < 6; j++) { /* padded input rows 4ty-1 .. 4ty+4, columns -1 .. */
                int64_t y = 4 * ty - 1 + j;
                for (q = 0; q < Wq; q++) p[j][q] = 0.0f;
                if (y >= 0 && y < H) memcpy(&p[j][1], xc + y * W, (size_t)(W < Wq - 1 ? W : Wq - 1) * sizeof(float));
            }
            for (q = 0; q < Wq; q++) /* B^T d: along y */
                BD__WG4_BT(p[0][q], p[1][q], p[2][q], p[3][q], p[4][q], p[5][q], d[0][q], d[1][q], d[2][q], d[3][q],
                           d[4][q], d[5][q]);
            for (j = 0; j < 6; j++) { /* (B^T d) B: along x */
                float *v0 = V + (j * 6) * vs + c * BD__WG_L + r * TWp;
                const float *e = d[j];
                for (tx = 0; tx < TW; tx++) {
                    const float *f = e + 4 * tx;
                    BD__WG4_BT(f[0], f[1], f[2], f[3], f[4], f[5], v0[tx], v0[vs + tx], v0[2 * vs + tx],
                               v0[3 * vs + tx], v0[4 * vs + tx], v0[5 * vs + tx]);
                }
                for (; tx < TWp; tx++)
                    for (q = 0; q < 6; q++) v0[q * vs + tx] = 0.0f;
            }
        }
    }
}
/* A^T m of 6 values */
#define BD__WG4_AT(m0, m1, m2, m3, m4, m5, y0, y1, y2, y3)                                              \
    do {                                                                                               \
        float bd__a_ = (m1) + (m2), bd__b_ = (m1) - (m2), bd__c_ = (m3) + (m4), bd__d_ = (m3) - (m4);  \
        (y0) = (m0) + bd__a_ + bd__c_;                                                                 \
        (y1) = BD__WG4_A1 * bd__b_ + BD__WG4_A3 * bd__d_;                                              \
        (y2) = BD__WG4_A1SQ * bd__a_ + BD__WG4_A3SQ * bd__c_;                                          \
        (y3) = BD__WG4_A1CU * bd__b_ + (BD__WG4_A3CU * bd__d_ + (m5));                                 \
    } while (0)
/* out rows o0 .. o0+mr-1 of the block's tiles = A^T M A (+ bias, or +=) */
static void bd__wg4_otrans(float *out, const float *M, int64_t Cout, int64_t H, int64_t W, int64_t TH,
                           int64_t TW, int64_t TWp, int64_t g0, int64_t nrows, int64_t o0, int64_t mr,
                           const float *bias, int accum) {
    int64_t r, l, rr, tx, a, bq, HW = H * W, lanes = nrows * TWp;
    for (r = 0; r < mr; r++) {
        float y[16][BD__WG_L];
        const float *m = M + r * BD__WG_L;
        float b = (!accum && bias) ? bias[o0 + r] : 0.0f;
        for (l = 0; l < lanes; l++) {
            float t[4][6];
            int64_t j;
            for (j = 0; j < 6; j++) /* A^T m: along y, per column j */
                BD__WG4_AT(m[j * BD__WG_MS + l], m[(6 + j) * BD__WG_MS + l], m[(12 + j) * BD__WG_MS + l],
                           m[(18 + j) * BD__WG_MS + l], m[(24 + j) * BD__WG_MS + l], m[(30 + j) * BD__WG_MS + l],
                           t[0][j], t[1][j], t[2][j], t[3][j]);
            for (j = 0; j < 4; j++) { /* (A^T m) A: along x */
                BD__WG4_AT(t[j][0], t[j][1], t[j][2], t[j][3], t[j][4], t[j][5], y[4 * j][l], y[4 * j + 1][l],
                           y[4 * j + 2][l], y[4 * j + 3][l]);
                y[4 * j][l] += b; y[4 * j + 1][l] += b; y[4 * j + 2][l] += b; y[4 * j + 3][l] += b;
            }
        }
        for (rr = 0; rr < nrows; rr++) {
            int64_t g = g0 + rr, n = g / TH, ty = g % TH, oy = 4 * ty;
            for (a = 0; a < 4 && oy + a < H; a++) {
                float *o = out + (n * Cout + o0 + r) * HW + (oy + a) * W;
                const float *y0 = y[4 * a] + rr * TWp, *y1 = y[4 * a + 1] + rr * TWp;
                const float *y2 = y[4 * a + 2] + rr * TWp, *y3 = y[4 * a + 3] + rr * TWp;
                int64_t full = W / 4 < TW ? W / 4 : TW;
                if (accum) {
                    for (tx = 0; tx < full; tx++) {
                        o[4 * tx] += y0[tx]; o[4 * tx + 1] += y1[tx]; o[4 * tx + 2] += y2[tx]; o[4 * tx + 3] += y3[tx];
                    }
                    for (bq = 4 * full; bq < W; bq++) o[bq] += y[4 * a + (bq & 3)][rr * TWp + full];
                } else {
                    for (tx = 0; tx < full; tx++) {
                        o[4 * tx] = y0[tx]; o[4 * tx + 1] = y1[tx]; o[4 * tx + 2] = y2[tx]; o[4 * tx + 3] = y3[tx];
                    }
                    for (bq = 4 * full; bq < W; bq++) o[bq] = y[4 * a + (bq & 3)][rr * TWp + full];
                }
            }
        }
    }
}
#ifdef BD__X86
static __mmask16 bd__wg_m16(int64_t n) {
    return (__mmask16)(n >= 16 ? 0xFFFF : (n <= 0 ? 0 : (1u << n) - 1u));
}
/* bd__wg_itrans, AVX-512: per tile row and chunk of 16 tiles, the 4 padded
   input rows as 3 vectors each (columns 32k-1 .. 32k+46), B^T d along y,
   then even/odd column permutes for (B^T d) B along x */
__attribute__((target("avx512f"))) static void
bd__wg_itrans_avx512(float *V, const float *x, int64_t C, int64_t H, int64_t W, int64_t TH, int64_t TW,
                     int64_t TWp, int64_t g0, int64_t nrows) {
    int64_t c, r, k, j, i, HW = H * W, nch = (TW + 15) / 16, lanes = nrows * TWp, vs = bd__wg_vs(C);
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512 z = _mm512_setzero_ps();
    __mmask16 sm = bd__wg_m16(TWp);
    for (c = 0; c < C; c++) {
        if (lanes < BD__WG_L)
            for (j = 0; j < 16; j++)
                memset(V + j * vs + c * BD__WG_L + lanes, 0, (size_t)(BD__WG_L - lanes) * sizeof(float));
        for (r = 0; r < nrows; r++) {
            int64_t g = g0 + r, n = g / TH, ty = g % TH;
            const float *xc = x + (n * C + c) * HW;
            for (k = 0; k < nch; k++) {
                /* raw columns 32k .. 32k+32 of the 4 input rows (l0, l1, l2 lane 0)
                   and column 32k-1 (pv), combined along y first (B^T d is linear) */
                __m512 l0[4], l1[4], l2[4], pv[4], D0, D1, D2, P;
                __mmask16 lm = bd__wg_m16(TW - 16 * k);
                int64_t c0 = 32 * k;
                for (j = 0; j < 4; j++) {
                    int64_t y = 2 * ty - 1 + j;
                    if (y < 0 || y >= H) {
                        l0[j] = z; l1[j] = z; l2[j] = z; pv[j] = z;
                    } else {
                        const float *row = xc + y * W;
                        l0[j] = _mm512_maskz_loadu_ps(bd__wg_m16(W - c0), row + c0);
                        l1[j] = _mm512_maskz_loadu_ps(bd__wg_m16(W - c0 - 16), row + c0 + 16);
                        l2[j] = _mm512_maskz_loadu_ps(bd__wg_m16(W - c0 - 32 < 1 ? W - c0 - 32 : 1), row + c0 + 32);
                        pv[j] = _mm512_set1_ps(k > 0 ? row[c0 - 1] : 0.0f);
                    }
                }
                for (i = 0; i < 4; i++) {
                    /* B^T d along y: rows (0 - 2, 1 + 2, 2 - 1, 1 - 3) */
                    int ja = i == 0 ? 0 : (i == 2 ? 2 : 1), jb = i == 0 ? 2 : (i == 1 ? 2 : (i == 2 ? 1 : 3));
                    __m512 e0, o0, e1, o1;
                    float *v = V + (i * 4) * vs + c * BD__WG_L + r * TWp + 16 * k;
                    if (i == 1) {
                        D0 = _mm512_add_ps(l0[ja], l0[jb]); D1 = _mm512_add_ps(l1[ja], l1[jb]);
                        D2 = _mm512_add_ps(l2[ja], l2[jb]); P = _mm512_add_ps(pv[ja], pv[jb]);
                    } else {
                        D0 = _mm512_sub_ps(l0[ja], l0[jb]); D1 = _mm512_sub_ps(l1[ja], l1[jb]);
                        D2 = _mm512_sub_ps(l2[ja], l2[jb]); P = _mm512_sub_ps(pv[ja], pv[jb]);
                    }
                    /* tile t covers columns 32k-1+2t .. 32k+2+2t: e0, o0, e1, o1 */
                    o0 = _mm512_permutex2var_ps(D0, ev, D1);
                    e1 = _mm512_permutex2var_ps(D0, od, D1);
                    o1 = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(D2), _mm512_castps_si512(o0), 1));
                    e0 = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(e1), _mm512_castps_si512(P), 15));
                    _mm512_mask_storeu_ps(v, sm, _mm512_maskz_sub_ps(lm, e0, e1));
                    _mm512_mask_storeu_ps(v + vs, sm, _mm512_maskz_add_ps(lm, o0, e1));
                    _mm512_mask_storeu_ps(v + 2 * vs, sm, _mm512_maskz_sub_ps(lm, e1, o0));
                    _mm512_mask_storeu_ps(v + 3 * vs, sm, _mm512_maskz_sub_ps(lm, o0, o1));
                }
            }
        }
    }
}
/* the 16 (F(4x4): 36) products of one 8-channel panel: M[xi] (8 x 32) (=, or += when
   !first) U[xi] (8 x kc) V[xi] (kc x 32); V's xi stride vs floats */
__attribute__((target("avx512f"))) static void
bd__wg_mm_avx512(int64_t kc, const float *u, const float *V, int64_t vs, float *M, int first, int npos) {
    int64_t xi, k, i;
    for (xi = 0; xi < npos; xi++) {
        const float *a = u + xi * kc * 8, *b = V + xi * vs;
        float *Cm = M + xi * BD__WG_MS;
        __m512 rr[16];
        for (i = 0; i < 16; i++) rr[i] = _mm512_setzero_ps();
        for (k = 0; k < kc; k++, a += 8, b += BD__WG_L)
            BD__FMA8X32(rr, a, _mm512_loadu_ps(b), _mm512_loadu_ps(b + 16));
        for (i = 0; i < 16; i++) {
            float *ci = Cm + i * 16;
            _mm512_storeu_ps(ci, first ? rr[i] : _mm512_add_ps(rr[i], _mm512_loadu_ps(ci)));
        }
    }
}
/* bd__wg_otrans, AVX-512: A^T M A on 16-lane halves, then the 2x2 output
   pixels of each tile interleaved into output rows by permutes */
__attribute__((target("avx512f"))) static void
bd__wg_otrans_avx512(float *out, const float *M, int64_t Cout, int64_t H, int64_t W, int64_t TH,
                     int64_t TW, int64_t TWp, int64_t g0, int64_t nrows, int64_t o0, int64_t mr,
                     const float *bias, int accum) {
    int64_t r, h, s, HW = H * W, lanes = nrows * TWp;
    int32_t ia[16], ib[16];
    for (r = 0; r < mr; r++) {
        __m512 bv = _mm512_set1_ps((!accum && bias) ? bias[o0 + r] : 0.0f);
        for (h = 0; h * 16 < lanes; h++) {
            const float *m = M + r * BD__WG_L + 16 * h;
            __m512 mm[16], t0[4], t1[4], y[4];
            int64_t per = TWp >= 16 ? 1 : 16 / TWp, j;
            for (j = 0; j < 16; j++) mm[j] = _mm512_loadu_ps(m + j * BD__WG_MS);
            for (j = 0; j < 4; j++) {
                t0[j] = _mm512_add_ps(_mm512_add_ps(mm[j], mm[4 + j]), mm[8 + j]);
                t1[j] = _mm512_sub_ps(_mm512_sub_ps(mm[4 + j], mm[8 + j]), mm[12 + j]);
            }
            y[0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(t0[0], t0[1]), t0[2]), bv);
            y[1] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(t0[1], t0[2]), t0[3]), bv);
            y[2] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(t1[0], t1[1]), t1[2]), bv);
            y[3] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(t1[1], t1[2]), t1[3]), bv);
            for (s = 0; s < per; s++) {
                /* lanes lo .. lo+TW-1 (or 16 of them): tile row rr, tiles tb.. */
                int64_t lo = TWp >= 16 ? 0 : s * TWp, lane0 = 16 * h + lo;
                int64_t rr = lane0 / TWp, tb = lane0 % TWp, g = g0 + rr, n, ty, oy, col0, q;
                float *o;
                if (rr >= nrows) break;
                n = g / TH; ty = g % TH; oy = 2 * ty; col0 = 2 * tb;
                o = out + (n * Cout + o0 + r) * HW + oy * W + col0;
                for (q = 0; q < 8; q++) {
                    ia[2 * q] = (int32_t)((lo + q) & 15); ia[2 * q + 1] = (int32_t)(16 + ((lo + q) & 15));
                    ib[2 * q] = (int32_t)((lo + 8 + q) & 15); ib[2 * q + 1] = (int32_t)(16 + ((lo + 8 + q) & 15));
                }
                {
                    __m512i xa = _mm512_loadu_si512(ia), xb = _mm512_loadu_si512(ib);
                    __mmask16 ma = bd__wg_m16(W - col0), mb = bd__wg_m16(W - col0 - 16);
                    int two = oy + 1 < H, wide = TW - tb > 8;
                    __m512 z0 = _mm512_permutex2var_ps(y[0], xa, y[1]);
                    __m512 z2 = _mm512_permutex2var_ps(y[2], xa, y[3]);
                    if (accum) {
                        z0 = _mm512_add_ps(z0, _mm512_maskz_loadu_ps(ma, o));
                        if (two) z2 = _mm512_add_ps(z2, _mm512_maskz_loadu_ps(ma, o + W));
                    }
                    _mm512_mask_storeu_ps(o, ma, z0);
                    if (two) _mm512_mask_storeu_ps(o + W, ma, z2);
                    if (wide) {
                        __m512 z1 = _mm512_permutex2var_ps(y[0], xb, y[1]);
                        __m512 z3 = _mm512_permutex2var_ps(y[2], xb, y[3]);
                        if (accum) {
                            z1 = _mm512_add_ps(z1, _mm512_maskz_loadu_ps(mb, o + 16));
                            if (two) z3 = _mm512_add_ps(z3, _mm512_maskz_loadu_ps(mb, o + W + 16));
                        }
                        _mm512_mask_storeu_ps(o + 16, mb, z1);
                        if (two) _mm512_mask_storeu_ps(o + W + 16, mb, z3);
                    }
                }
            }
        }
    }
}
/* a 16-lane store under mask m: a plain store when m is full (Zen 4's
   masked zmm stores are slower) */
__attribute__((target("avx512f"))) static inline void bd__wg4_st16(float *p, __mmask16 m, __m512 v) {
    if (m == 0xFFFF) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, m, v);
}
/* B^T along x on the 6 column vectors (e0, cl[0..3], e5) of the AVX-512
   input transforms: the 6 transformed rows to v + i*vs, lanes outside lm
   zeroed, stored under sm */
__attribute__((target("avx512f"))) static inline void bd__wg4_btx16(float *v, int64_t vs, __mmask16 sm,
                                                                     __mmask16 lm, __m512 e0, const __m512 *cl,
                                                                     __m512 e5) {
    const __m512 kb0 = _mm512_set1_ps(BD__WG4_B0), k23 = _mm512_set1_ps(BD__WG4_A1);
    const __m512 k49 = _mm512_set1_ps(BD__WG4_A1SQ), k32 = _mm512_set1_ps(BD__WG4_A3), k94 = _mm512_set1_ps(BD__WG4_A3SQ);
    __m512 p = _mm512_fnmadd_ps(k94, cl[1], cl[3]), q = _mm512_fnmadd_ps(k94, cl[0], cl[2]);
    __m512 s = _mm512_fnmadd_ps(k49, cl[1], cl[3]), t = _mm512_fnmadd_ps(k49, cl[0], cl[2]);
    bd__wg4_st16(v, sm, _mm512_maskz_fnmadd_ps(lm, kb0, cl[1], _mm512_add_ps(e0, cl[3])));
    bd__wg4_st16(v + vs, sm, _mm512_maskz_fmadd_ps(lm, k23, q, p));
    bd__wg4_st16(v + 2 * vs, sm, _mm512_maskz_fnmadd_ps(lm, k23, q, p));
    bd__wg4_st16(v + 3 * vs, sm, _mm512_maskz_fmadd_ps(lm, k32, t, s));
    bd__wg4_st16(v + 4 * vs, sm, _mm512_maskz_fnmadd_ps(lm, k32, t, s));
    bd__wg4_st16(v + 5 * vs, sm, _mm512_maskz_fnmadd_ps(lm, kb0, cl[2], _mm512_add_ps(cl[0], e5)));
}
/* bd__wg4_itrans_avx512 when TWp <= 8 (W <= 32): P tile rows per vector
   (P = 2 at TWp 8, 4 at TWp <= 4; lanes k*TWp + tx, k < P, as in V), so a
   28x28 or 14x14 image fills the 16 lanes instead of 8 or 4.  Per row the
   input rows as 2 (TWp 8) or 1 vector, B^T d along y; the column classes
   4t+m of two row-vector pairs by permutes and one blend; the one-lane
   shifts masked at each tile row's ends.  Per lane the same operations on
   the same inputs as one row per vector: the same bits. */
__attribute__((target("avx512f"))) static void
bd__wg4_itrans_avx512_rows(float *V, const float *x, int64_t C, int64_t H, int64_t W, int64_t TH, int64_t TW,
                           int64_t TWp, int64_t g0, int64_t nrows, int64_t ns) {
    int64_t c, r, j, k, i, m, L, HW = H * W, nv = TWp == 8 ? 2 : 1, P = TWp == 8 ? 2 : 4;
    int64_t lanes = nrows * TWp, vs = bd__wg_vs(C);
    const __m512 z = _mm512_setzero_ps(), kb0 = _mm512_set1_ps(BD__WG4_B0), k23 = _mm512_set1_ps(BD__WG4_A1);
    const __m512 k49 = _mm512_set1_ps(BD__WG4_A1SQ), k32 = _mm512_set1_ps(BD__WG4_A3), k94 = _mm512_set1_ps(BD__WG4_A3SQ);
    int32_t ix[4][16];
    __m512i ci[4];
    __mmask16 e0m = 0, e5m = 0, lm = 0, bm = (__mmask16)(bd__wg_m16(P * TWp) & ~bd__wg_m16(P / 2 * TWp));
    for (L = 0; L < 16; L++) { /* lane L: row k, tile tx; column 4tx+m of (row k, k+1) or (k's 2 vectors) */
        int64_t tx = L % TWp;
        k = L / TWp;
        for (m = 0; m < 4; m++) ix[m][L] = (int32_t)(k < P ? (TWp == 8 ? 0 : (k & 1) * 16) + 4 * tx + m : 0);
        if (k >= P) continue;
        if (tx != 0) e0m = (__mmask16)(e0m | (1u << L));
        if (tx != TWp - 1) e5m = (__mmask16)(e5m | (1u << L));
        if (tx < TW) lm = (__mmask16)(lm | (1u << L));
    }
    for (m = 0; m < 4; m++) ci[m] = _mm512_loadu_si512(ix[m]);
    for (c = 0; c < C; c++) {
        if (lanes < BD__WG_L)
            for (j = 0; j < 36; j++)
                memset(V + j * vs + c * BD__WG_L + lanes, 0, (size_t)(BD__WG_L - lanes) * sizeof(float));
        for (r = 0; r < nrows; r += P) {
            int64_t nr = nrows - r < P ? nrows - r : P;
            __mmask16 sm = bd__wg_m16(nr * TWp);
            __m512 d[6][4]; /* d[j][k * nv + i]: transformed row j, tile row r + k, columns 16i .. */
            for (k = 0; k < P; k++) {
                int64_t g = g0 + r + k, n = g / TH, ty = g % TH;
                const float *xc = x + n * ns + c * HW;
                __m512 l[6][2];
                if (k >= nr) {
                    for (j = 0; j < 6; j++)
                        for (i = 0; i < nv; i++) d[j][k * nv + i] = z;
                    continue;
                }
                for (j = 0; j < 6; j++) {
                    int64_t y = 4 * ty - 1 + j;
                    for (i = 0; i < nv; i++)
                        l[j][i] = (y < 0 || y >= H) ? z : _mm512_maskz_loadu_ps(bd__wg_m16(W - 16 * i), xc + y * W + 16 * i);
                }
                for (i = 0; i < nv; i++) { /* B^T d along y */
                    __m512 p = _mm512_fnmadd_ps(k94, l[2][i], l[4][i]), q = _mm512_fnmadd_ps(k94, l[1][i], l[3][i]);
                    __m512 s = _mm512_fnmadd_ps(k49, l[2][i], l[4][i]), t = _mm512_fnmadd_ps(k49, l[1][i], l[3][i]);
                    d[0][k * nv + i] = _mm512_fnmadd_ps(kb0, l[2][i], _mm512_add_ps(l[0][i], l[4][i]));
                    d[1][k * nv + i] = _mm512_fmadd_ps(k23, q, p);
                    d[2][k * nv + i] = _mm512_fnmadd_ps(k23, q, p);
                    d[3][k * nv + i] = _mm512_fmadd_ps(k32, t, s);
                    d[4][k * nv + i] = _mm512_fnmadd_ps(k32, t, s);
                    d[5][k * nv + i] = _mm512_fnmadd_ps(kb0, l[3][i], _mm512_add_ps(l[1][i], l[5][i]));
                }
            }
            for (j = 0; j < 6; j++) {
                __m512 cl[4], e0, e5;
                float *v = V + (j * 6) * vs + c * BD__WG_L + r * TWp;
                cl[0] = _mm512_mask_blend_ps(bm, _mm512_permutex2var_ps(d[j][0], ci[0], d[j][1]),
                                             _mm512_permutex2var_ps(d[j][2], ci[0], d[j][3]));
                cl[1] = _mm512_mask_blend_ps(bm, _mm512_permutex2var_ps(d[j][0], ci[1], d[j][1]),
                                             _mm512_permutex2var_ps(d[j][2], ci[1], d[j][3]));
                cl[2] = _mm512_mask_blend_ps(bm, _mm512_permutex2var_ps(d[j][0], ci[2], d[j][1]),
                                             _mm512_permutex2var_ps(d[j][2], ci[2], d[j][3]));
                cl[3] = _mm512_mask_blend_ps(bm, _mm512_permutex2var_ps(d[j][0], ci[3], d[j][1]),
                                             _mm512_permutex2var_ps(d[j][2], ci[3], d[j][3]));
                /* columns 4t-1 and 4t+4 within each tile row (zero padding at its ends) */
                e0 = _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(e0m, _mm512_castps_si512(cl[3]), _mm512_castps_si512(z), 15));
                e5 = _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(e5m, _mm512_castps_si512(z), _mm512_castps_si512(cl[0]), 1));
                bd__wg4_btx16(v, vs, sm, lm, e0, cl, e5);
            }
        }
    }
}
/* bd__wg4_itrans, AVX-512: per tile row (at most 16 tiles: W <= 64), the 6
   input rows as up to 4 vectors (columns 0 .. 63; column -1 and those past
   the row are the zero padding), B^T d along y, then per transformed row the
   4 column classes 4t+m by permutes (4t-1 and 4t+4: one-lane shifts of
   classes 3 and 0) and (B^T d) B along x on 16 tiles at once; rows of <= 8
   lanes (W <= 32) go to bd__wg4_itrans_avx512_rows, several per vector */
__attribute__((target("avx512f"))) static void
bd__wg4_itrans_avx512(float *V, const float *x, int64_t C, int64_t H, int64_t W, int64_t TH, int64_t TW,
                      int64_t TWp, int64_t g0, int64_t nrows, int64_t ns) {
    int64_t c, r, j, i, m, HW = H * W, nv = (W + 15) / 16, lanes = nrows * TWp, vs = bd__wg_vs(C);
    const __m512 z = _mm512_setzero_ps(), kb0 = _mm512_set1_ps(BD__WG4_B0), k23 = _mm512_set1_ps(BD__WG4_A1);
    const __m512 k49 = _mm512_set1_ps(BD__WG4_A1SQ), k32 = _mm512_set1_ps(BD__WG4_A3), k94 = _mm512_set1_ps(BD__WG4_A3SQ);
    __m512i ci[4];
    __mmask16 sm = bd__wg_m16(TWp), lm = bd__wg_m16(TW);
    if (TWp <= 8) { /* several tile rows per vector */
        bd__wg4_itrans_avx512_rows(V, x, C, H, W, TH, TW, TWp, g0, nrows, ns);
        return;
    }
    for (m = 0; m < 4; m++) /* lanes 0..7: 4i+m of (v0, v1); lanes 8..15: 4(i-8)+m of (v2, v3) */
        ci[m] = _mm512_setr_epi32((int)m, (int)m + 4, (int)m + 8, (int)m + 12, (int)m + 16, (int)m + 20, (int)m + 24,
                                  (int)m + 28, (int)m, (int)m + 4, (int)m + 8, (int)m + 12, (int)m + 16, (int)m + 20,
                                  (int)m + 24, (int)m + 28);
    for (c = 0; c < C; c++) {
        if (lanes < BD__WG_L)
            for (j = 0; j < 36; j++)
                memset(V + j * vs + c * BD__WG_L + lanes, 0, (size_t)(BD__WG_L - lanes) * sizeof(float));
        for (r = 0; r < nrows; r++) {
            int64_t g = g0 + r, n = g / TH, ty = g % TH;
            const float *xc = x + n * ns + c * HW;
            __m512 l[6][4], d[6][4];
            for (j = 0; j < 6; j++) {
                int64_t y = 4 * ty - 1 + j;
                for (i = 0; i < 4; i++)
                    l[j][i] = (y < 0 || y >= H || i >= nv) ? z : _mm512_maskz_loadu_ps(bd__wg_m16(W - 16 * i), xc + y * W + 16 * i);
            }
            for (i = 0; i < nv; i++) { /* B^T d along y */
                __m512 p = _mm512_fnmadd_ps(k94, l[2][i], l[4][i]), q = _mm512_fnmadd_ps(k94, l[1][i], l[3][i]);
                __m512 s = _mm512_fnmadd_ps(k49, l[2][i], l[4][i]), t = _mm512_fnmadd_ps(k49, l[1][i], l[3][i]);
                d[0][i] = _mm512_fnmadd_ps(kb0, l[2][i], _mm512_add_ps(l[0][i], l[4][i]));
                d[1][i] = _mm512_fmadd_ps(k23, q, p);
                d[2][i] = _mm512_fnmadd_ps(k23, q, p);
                d[3][i] = _mm512_fmadd_ps(k32, t, s);
                d[4][i] = _mm512_fnmadd_ps(k32, t, s);
                d[5][i] = _mm512_fnmadd_ps(kb0, l[3][i], _mm512_add_ps(l[1][i], l[5][i]));
            }
            for (j = 0; j < 6; j++) {
                __m512 cl[4], e0, e5;
                float *v = V + (j * 6) * vs + c * BD__WG_L + r * TWp;
                { /* written out: at -O2 a loop kept cl[] on the stack */
                    __m512 d1 = nv > 1 ? d[j][1] : z, d3 = nv > 3 ? d[j][3] : z;
                    cl[0] = _mm512_maskz_permutex2var_ps(0x00FF, d[j][0], ci[0], d1);
                    cl[1] = _mm512_maskz_permutex2var_ps(0x00FF, d[j][0], ci[1], d1);
                    cl[2] = _mm512_maskz_permutex2var_ps(0x00FF, d[j][0], ci[2], d1);
                    cl[3] = _mm512_maskz_permutex2var_ps(0x00FF, d[j][0], ci[3], d1);
                    if (nv > 2) {
                        cl[0] = _mm512_mask_blend_ps(0xFF00, cl[0], _mm512_permutex2var_ps(d[j][2], ci[0], d3));
                        cl[1] = _mm512_mask_blend_ps(0xFF00, cl[1], _mm512_permutex2var_ps(d[j][2], ci[1], d3));
                        cl[2] = _mm512_mask_blend_ps(0xFF00, cl[2], _mm512_permutex2var_ps(d[j][2], ci[2], d3));
                        cl[3] = _mm512_mask_blend_ps(0xFF00, cl[3], _mm512_permutex2var_ps(d[j][2], ci[3], d3));
                    }
                }
                /* columns 4t-1 (class 3, one tile back) and 4t+4 (class 0, one tile on) */
                e0 = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(cl[3]), _mm512_castps_si512(z), 15));
                e5 = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(z), _mm512_castps_si512(cl[0]), 1));
                /* B^T along x on (e0, cl0, cl1, cl2, cl3, e5) */
                bd__wg4_btx16(v, vs, sm, lm, e0, cl, e5);
            }
        }
    }
}
/* bd__wg4_otrans, AVX-512: A^T M A on 16-lane halves, then the 4x4 output
   pixels of up to 8 tiles of a tile row interleaved into output row segments
   by permutes (pairs of columns, then pairs of pairs) */
__attribute__((target("avx512f"))) static void
bd__wg4_otrans_avx512(float *out, const float *M, int64_t Cout, int64_t H, int64_t W, int64_t TH,
                      int64_t TW, int64_t TWp, int64_t g0, int64_t nrows, int64_t o0, int64_t mr,
                      const float *bias, int accum) {
    int64_t r, h, s, a, j, HW = H * W, lanes = nrows * TWp, segw = TWp < 8 ? TWp : 8;
    const __m512 k23 = _mm512_set1_ps(BD__WG4_A1), k49 = _mm512_set1_ps(BD__WG4_A1SQ), k827 = _mm512_set1_ps(BD__WG4_A1CU);
    const __m512 k32 = _mm512_set1_ps(BD__WG4_A3), k94 = _mm512_set1_ps(BD__WG4_A3SQ), k278 = _mm512_set1_ps(BD__WG4_A3CU);
    const __m512i plo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), phi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    for (r = 0; r < mr; r++) {
        __m512 bv = _mm512_set1_ps((!accum && bias) ? bias[o0 + r] : 0.0f);
        for (h = 0; h * 16 < lanes; h++) {
            const float *m = M + r * BD__WG_L + 16 * h;
            __m512 t[4][6], y[16];
            for (j = 0; j < 6; j++) { /* A^T m along y, per column j */
                __m512 m0 = _mm512_loadu_ps(m + j * BD__WG_MS), m1 = _mm512_loadu_ps(m + (6 + j) * BD__WG_MS);
                __m512 m2 = _mm512_loadu_ps(m + (12 + j) * BD__WG_MS), m3 = _mm512_loadu_ps(m + (18 + j) * BD__WG_MS);
                __m512 m4 = _mm512_loadu_ps(m + (24 + j) * BD__WG_MS), m5 = _mm512_loadu_ps(m + (30 + j) * BD__WG_MS);
                __m512 pa = _mm512_add_ps(m1, m2), pb = _mm512_sub_ps(m1, m2), pc = _mm512_add_ps(m3, m4), pd = _mm512_sub_ps(m3, m4);
                t[0][j] = _mm512_add_ps(_mm512_add_ps(m0, pa), pc);
                t[1][j] = _mm512_fmadd_ps(k23, pb, _mm512_mul_ps(k32, pd));
                t[2][j] = _mm512_fmadd_ps(k49, pa, _mm512_mul_ps(k94, pc));
                t[3][j] = _mm512_fmadd_ps(k827, pb, _mm512_fmadd_ps(k278, pd, m5));
            }
            for (j = 0; j < 4; j++) { /* (A^T m) A along x: y[4j + b] = pixel (j, b) */
                __m512 pa = _mm512_add_ps(t[j][1], t[j][2]), pb = _mm512_sub_ps(t[j][1], t[j][2]);
                __m512 pc = _mm512_add_ps(t[j][3], t[j][4]), pd = _mm512_sub_ps(t[j][3], t[j][4]);
                y[4 * j] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(t[j][0], pa), pc), bv);
                y[4 * j + 1] = _mm512_add_ps(_mm512_fmadd_ps(k23, pb, _mm512_mul_ps(k32, pd)), bv);
                y[4 * j + 2] = _mm512_add_ps(_mm512_fmadd_ps(k49, pa, _mm512_mul_ps(k94, pc)), bv);
                y[4 * j + 3] = _mm512_add_ps(_mm512_fmadd_ps(k827, pb, _mm512_fmadd_ps(k278, pd, t[j][5])), bv);
            }
            for (s = 0; s * segw < 16; s++) {
                /* lanes lo .. lo+segw-1: tiles tb .. of tile row rr */
                int64_t lo = s * segw, lane0 = 16 * h + lo, rr = lane0 / TWp, tb = lane0 % TWp, g, n, ty, oy, col0, q;
                int32_t ia[16];
                __m512i xa;
                __mmask16 ma, mb;
                if (rr >= nrows) break;
                if (tb >= TW) continue;
                g = g0 + rr; n = g / TH; ty = g % TH; oy = 4 * ty; col0 = 4 * tb;
                for (q = 0; q < 8; q++) {
                    ia[2 * q] = (int32_t)((lo + q) & 15); ia[2 * q + 1] = (int32_t)(16 + ((lo + q) & 15));
                }
                xa = _mm512_loadu_si512(ia);
                ma = bd__wg_m16(W - col0); mb = bd__wg_m16(W - col0 - 16);
                for (a = 0; a < 4 && oy + a < H; a++) {
                    float *o = out + (n * Cout + o0 + r) * HW + (oy + a) * W + col0;
                    __m512d p01 = _mm512_castps_pd(_mm512_permutex2var_ps(y[4 * a], xa, y[4 * a + 1]));
                    __m512d p23 = _mm512_castps_pd(_mm512_permutex2var_ps(y[4 * a + 2], xa, y[4 * a + 3]));
                    __m512 z0 = _mm512_castpd_ps(_mm512_permutex2var_pd(p01, plo, p23));
                    if (accum) z0 = _mm512_add_ps(z0, _mm512_maskz_loadu_ps(ma, o));
                    _mm512_mask_storeu_ps(o, ma, z0);
                    if (segw > 4 && TW - tb > 4) {
                        __m512 z1 = _mm512_castpd_ps(_mm512_permutex2var_pd(p01, phi, p23));
                        if (accum) z1 = _mm512_add_ps(z1, _mm512_maskz_loadu_ps(mb, o + 16));
                        _mm512_mask_storeu_ps(o + 16, mb, z1);
                    }
                }
            }
        }
    }
}
/* bd__wg_itrans, AVX2: per tile row and chunk of 8 tiles, the 4 input rows
   as 2 vectors + 2 scalars each (columns 16k-1 .. 16k+16), B^T d along y,
   then even/odd deinterleaves (shuffle + 64-bit permute) and one-lane
   shifts for (B^T d) B along x */
__attribute__((target("avx2,fma"))) static void
bd__wg_itrans_avx2(float *V, const float *x, int64_t C, int64_t H, int64_t W, int64_t TH, int64_t TW,
                   int64_t TWp, int64_t g0, int64_t nrows) {
    int64_t c, r, k, j, i, HW = H * W, nch = (TW + 7) / 8, lanes = nrows * TWp, vs = bd__wg_vs(C);
    const __m256i up = _mm256_setr_epi32(7, 0, 1, 2, 3, 4, 5, 6), dn = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
    const __m256 z = _mm256_setzero_ps();
    for (c = 0; c < C; c++) {
        if (lanes < BD__WG_L)
            for (j = 0; j < 16; j++)
                memset(V + j * vs + c * BD__WG_L + lanes, 0, (size_t)(BD__WG_L - lanes) * sizeof(float));
        for (r = 0; r < nrows; r++) {
            int64_t g = g0 + r, n = g / TH, ty = g % TH;
            const float *xc = x + (n * C + c) * HW;
            if (TWp > 8 * nch) /* 8-lane chunks of no tile: zero */
                for (j = 0; j < 16; j++)
                    memset(V + j * vs + c * BD__WG_L + r * TWp + 8 * nch, 0, (size_t)(TWp - 8 * nch) * sizeof(float));
            for (k = 0; k < nch; k++) {
                __m256 l0[4], l1[4], l2[4], pv[4], lm = _mm256_castsi256_ps(BD__M8(TW - 8 * k < 8 ? TW - 8 * k : 8));
                int64_t c0 = 16 * k;
                for (j = 0; j < 4; j++) {
                    int64_t y = 2 * ty - 1 + j;
                    if (y < 0 || y >= H) {
                        l0[j] = z; l1[j] = z; l2[j] = z; pv[j] = z;
                    } else {
                        const float *row = xc + y * W;
                        int64_t n0 = W - c0, n1 = W - c0 - 8;
                        l0[j] = n0 >= 8 ? _mm256_loadu_ps(row + c0) : _mm256_maskload_ps(row + c0, BD__M8(n0 < 0 ? 0 : n0));
                        l1[j] = n1 >= 8 ? _mm256_loadu_ps(row + c0 + 8)
                                        : _mm256_maskload_ps(row + c0 + 8, BD__M8(n1 < 0 ? 0 : n1));
                        l2[j] = _mm256_set1_ps(c0 + 16 < W ? row[c0 + 16] : 0.0f);
                        pv[j] = _mm256_set1_ps(k > 0 ? row[c0 - 1] : 0.0f);
                    }
                }
                for (i = 0; i < 4; i++) {
                    /* B^T d along y: rows (0 - 2, 1 + 2, 2 - 1, 1 - 3) */
                    int ja = i == 0 ? 0 : (i == 2 ? 2 : 1), jb = i == 0 ? 2 : (i == 1 ? 2 : (i == 2 ? 1 : 3));
                    __m256 D0, D1, D2, P, ev, od, pr, nx;
                    float *v = V + (i * 4) * vs + c * BD__WG_L + r * TWp + 8 * k;
                    if (i == 1) {
                        D0 = _mm256_add_ps(l0[ja], l0[jb]); D1 = _mm256_add_ps(l1[ja], l1[jb]);
                        D2 = _mm256_add_ps(l2[ja], l2[jb]); P = _mm256_add_ps(pv[ja], pv[jb]);
                    } else {
                        D0 = _mm256_sub_ps(l0[ja], l0[jb]); D1 = _mm256_sub_ps(l1[ja], l1[jb]);
                        D2 = _mm256_sub_ps(l2[ja], l2[jb]); P = _mm256_sub_ps(pv[ja], pv[jb]);
                    }
                    /* tile t covers columns c0-1+2t .. c0+2+2t: pr, ev, od, nx */
                    ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(D0, D1, 0x88)), 0xD8));
                    od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(D0, D1, 0xDD)), 0xD8));
                    pr = _mm256_blend_ps(_mm256_permutevar8x32_ps(od, up), P, 0x01);
                    nx = _mm256_blend_ps(_mm256_permutevar8x32_ps(ev, dn), D2, 0x80);
                    if (TWp >= 8) {
                        _mm256_storeu_ps(v, _mm256_and_ps(lm, _mm256_sub_ps(pr, od)));
                        _mm256_storeu_ps(v + vs, _mm256_and_ps(lm, _mm256_add_ps(ev, od)));
                        _mm256_storeu_ps(v + 2 * vs, _mm256_and_ps(lm, _mm256_sub_ps(od, ev)));
                        _mm256_storeu_ps(v + 3 * vs, _mm256_and_ps(lm, _mm256_sub_ps(ev, nx)));
                    } else {
                        bd__store8(v, _mm256_and_ps(lm, _mm256_sub_ps(pr, od)), TWp);
                        bd__store8(v + vs, _mm256_and_ps(lm, _mm256_add_ps(ev, od)), TWp);
                        bd__store8(v + 2 * vs, _mm256_and_ps(lm, _mm256_sub_ps(od, ev)), TWp);
                        bd__store8(v + 3 * vs, _mm256_and_ps(lm, _mm256_sub_ps(ev, nx)), TWp);
                    }
                }
            }
        }
    }
}
/* the 16 (F(4x4): 36) products of one 8-channel panel, AVX2: M[xi] (8 x 32) (=, or +=
   when !first) U[xi] (8 x kc) V[xi] (kc x 32) in four 4 x 16 passes (8
   accumulators, 2 loads and 4 broadcasts per 8 FMAs) */
__attribute__((target("avx2,fma"))) static void
bd__wg_mm_avx2(int64_t kc, const float *u, const float *V, int64_t vs, float *M, int first, int npos) {
    int64_t xi, k, ih, jh;
    for (xi = 0; xi < npos; xi++)
        for (ih = 0; ih < 2; ih++)
            for (jh = 0; jh < 2; jh++) {
                const float *a = u + xi * kc * 8 + 4 * ih, *b = V + xi * vs + 16 * jh;
                float *Cm = M + xi * BD__WG_MS + 4 * ih * BD__WG_L + 16 * jh;
                __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
                       c30 = c00, c31 = c00;
                for (k = 0; k < kc; k++, a += 8, b += BD__WG_L) {
                    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), ai;
                    ai = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(ai, b0, c00); c01 = _mm256_fmadd_ps(ai, b1, c01);
                    ai = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(ai, b0, c10); c11 = _mm256_fmadd_ps(ai, b1, c11);
                    ai = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(ai, b0, c20); c21 = _mm256_fmadd_ps(ai, b1, c21);
                    ai = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(ai, b0, c30); c31 = _mm256_fmadd_ps(ai, b1, c31);
                }
                if (!first) {
                    c00 = _mm256_add_ps(c00, _mm256_loadu_ps(Cm)); c01 = _mm256_add_ps(c01, _mm256_loadu_ps(Cm + 8));
                    c10 = _mm256_add_ps(c10, _mm256_loadu_ps(Cm + BD__WG_L)); c11 = _mm256_add_ps(c11, _mm256_loadu_ps(Cm + BD__WG_L + 8));
                    c20 = _mm256_add_ps(c20, _mm256_loadu_ps(Cm + 2 * BD__WG_L)); c21 = _mm256_add_ps(c21, _mm256_loadu_ps(Cm + 2 * BD__WG_L + 8));
                    c30 = _mm256_add_ps(c30, _mm256_loadu_ps(Cm + 3 * BD__WG_L)); c31 = _mm256_add_ps(c31, _mm256_loadu_ps(Cm + 3 * BD__WG_L + 8));
                }
                _mm256_storeu_ps(Cm, c00); _mm256_storeu_ps(Cm + 8, c01);
                _mm256_storeu_ps(Cm + BD__WG_L, c10); _mm256_storeu_ps(Cm + BD__WG_L + 8, c11);
                _mm256_storeu_ps(Cm + 2 * BD__WG_L, c20); _mm256_storeu_ps(Cm + 2 * BD__WG_L + 8, c21);
                _mm256_storeu_ps(Cm + 3 * BD__WG_L, c30); _mm256_storeu_ps(Cm + 3 * BD__WG_L + 8, c31);
            }
}
/* bd__wg_otrans, AVX2: A^T M A on 8-lane vectors, then the 2x2 output
   pixels of each tile interleaved into output rows (unpack + 128-bit
   permutes) and stored by (masked) row segments of 8 */
__attribute__((target("avx2,fma"))) static void
bd__wg_otrans_avx2(float *out, const float *M, int64_t Cout, int64_t H, int64_t W, int64_t TH,
                   int64_t TW, int64_t TWp, int64_t g0, int64_t nrows, int64_t o0, int64_t mr,
                   const float *bias, int accum) {
    int64_t r, h, s, HW = H * W, lanes = nrows * TWp;
    if (TWp < 4) { /* 1- or 2-tile rows (W <= 4): the C transform */
        bd__wg_otrans(out, M, Cout, H, W, TH, TW, TWp, g0, nrows, o0, mr, bias, accum);
        return;
    }
    for (r = 0; r < mr; r++) {
        __m256 bv = _mm256_set1_ps((!accum && bias) ? bias[o0 + r] : 0.0f);
        for (h = 0; h * 8 < lanes; h++) {
            const float *m = M + r * BD__WG_L + 8 * h;
            __m256 mm[16], t0[4], t1[4], y[4], lo, hi, z[4];
            int64_t j;
            for (j = 0; j < 16; j++) mm[j] = _mm256_loadu_ps(m + j * BD__WG_MS);
            for (j = 0; j < 4; j++) {
                t0[j] = _mm256_add_ps(_mm256_add_ps(mm[j], mm[4 + j]), mm[8 + j]);
                t1[j] = _mm256_sub_ps(_mm256_sub_ps(mm[4 + j], mm[8 + j]), mm[12 + j]);
            }
            y[0] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(t0[0], t0[1]), t0[2]), bv);
            y[1] = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(t0[1], t0[2]), t0[3]), bv);
            y[2] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(t1[0], t1[1]), t1[2]), bv);
            y[3] = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(t1[1], t1[2]), t1[3]), bv);
            /* z[0], z[1]: tiles 0-3, 4-7 of output row 2ty; z[2], z[3]: row 2ty+1 */
            lo = _mm256_unpacklo_ps(y[0], y[1]); hi = _mm256_unpackhi_ps(y[0], y[1]);
            z[0] = _mm256_permute2f128_ps(lo, hi, 0x20); z[1] = _mm256_permute2f128_ps(lo, hi, 0x31);
            lo = _mm256_unpacklo_ps(y[2], y[3]); hi = _mm256_unpackhi_ps(y[2], y[3]);
            z[2] = _mm256_permute2f128_ps(lo, hi, 0x20); z[3] = _mm256_permute2f128_ps(lo, hi, 0x31);
            for (s = 0; s < 2; s++) {
                /* TWp >= 8: one tile row, tiles tb .. tb+7 (s: the 8 output columns of tiles tb+4s ..);
                   TWp == 4: two tile rows (s: which), tiles 0..3 */
                int64_t lane0 = 8 * h + (TWp >= 8 ? 0 : 4 * s), rr = lane0 / TWp, tb = lane0 % TWp + (TWp >= 8 ? 4 * s : 0);
                int64_t g = g0 + rr, n, ty, oy, col0, cnt;
                float *o;
                if (rr >= nrows || tb >= TW) continue;
                n = g / TH; ty = g % TH; oy = 2 * ty; col0 = 2 * tb;
                cnt = W - col0 < 8 ? W - col0 : 8;
                o = out + (n * Cout + o0 + r) * HW + oy * W + col0;
                if (cnt == 8) {
                    _mm256_storeu_ps(o, accum ? _mm256_add_ps(z[s], _mm256_loadu_ps(o)) : z[s]);
                    if (oy + 1 < H)
                        _mm256_storeu_ps(o + W, accum ? _mm256_add_ps(z[2 + s], _mm256_loadu_ps(o + W)) : z[2 + s]);
                } else {
                    __m256i mk = BD__M8(cnt);
                    bd__store8(o, accum ? _mm256_add_ps(z[s], _mm256_maskload_ps(o, mk)) : z[s], cnt);
                    if (oy + 1 < H)
                        bd__store8(o + W, accum ? _mm256_add_ps(z[2 + s], _mm256_maskload_ps(o + W, mk)) : z[2 + s], cnt);
                }
            }
        }
    }
}
/* bd__wg4_itrans, AVX2: per tile row and chunk of 8 tiles, the 6 input rows
   as 4 vectors (columns 32k .. 32k+31) and 2 scalars (32k-1, 32k+32), B^T d
   along y, then the 4 column classes 4t+m by a transpose within 128-bit
   lanes (each lane: the 4 columns of one tile) and a tile-order permute;
   4t-1 and 4t+4 by one-lane shifts of classes 3 and 0 */
__attribute__((target("avx2,fma"))) static void
bd__wg4_itrans_avx2(float *V, const float *x, int64_t C, int64_t H, int64_t W, int64_t TH, int64_t TW,
                    int64_t TWp, int64_t g0, int64_t nrows, int64_t ns) {
    int64_t c, r, k, j, i, HW = H * W, nch = (TW + 7) / 8, lanes = nrows * TWp, vs = bd__wg_vs(C);
    const __m256i up = _mm256_setr_epi32(7, 0, 1, 2, 3, 4, 5, 6), dn = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
    const __m256i ord = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256 z = _mm256_setzero_ps(), kb0 = _mm256_set1_ps(BD__WG4_B0), k23 = _mm256_set1_ps(BD__WG4_A1);
    const __m256 k49 = _mm256_set1_ps(BD__WG4_A1SQ), k32 = _mm256_set1_ps(BD__WG4_A3), k94 = _mm256_set1_ps(BD__WG4_A3SQ);
    for (c = 0; c < C; c++) {
        if (lanes < BD__WG_L)
            for (j = 0; j < 36; j++)
                memset(V + j * vs + c * BD__WG_L + lanes, 0, (size_t)(BD__WG_L - lanes) * sizeof(float));
        for (r = 0; r < nrows; r++) {
            int64_t g = g0 + r, n = g / TH, ty = g % TH;
            const float *xc = x + n * ns + c * HW;
            for (k = 0; k < nch; k++) {
                __m256 l[6][6], d[6][6], lm = _mm256_castsi256_ps(BD__M8(TW - 8 * k < 8 ? TW - 8 * k : 8));
                int64_t c0 = 32 * k, nst = TWp < 8 ? TWp : 8;
                for (j = 0; j < 6; j++) { /* l[j][0..3]: columns c0 .., l[j][4]: c0-1, l[j][5]: c0+32 */
                    int64_t y = 4 * ty - 1 + j;
                    if (y < 0 || y >= H) {
                        for (i = 0; i < 6; i++) l[j][i] = z;
                    } else {
                        const float *row = xc + y * W;
                        for (i = 0; i < 4; i++) {
                            int64_t nn = W - c0 - 8 * i;
                            l[j][i] = nn >= 8 ? _mm256_loadu_ps(row + c0 + 8 * i)
                                              : (nn <= 0 ? z : _mm256_maskload_ps(row + c0 + 8 * i, BD__M8(nn)));
                        }
                        l[j][4] = _mm256_set1_ps(k > 0 ? row[c0 - 1] : 0.0f);
                        l[j][5] = _mm256_set1_ps(c0 + 32 < W ? row[c0 + 32] : 0.0f);
                    }
                }
                for (i = 0; i < 6; i++) { /* B^T d along y */
                    __m256 p = _mm256_fnmadd_ps(k94, l[2][i], l[4][i]), q = _mm256_fnmadd_ps(k94, l[1][i], l[3][i]);
                    __m256 s = _mm256_fnmadd_ps(k49, l[2][i], l[4][i]), t = _mm256_fnmadd_ps(k49, l[1][i], l[3][i]);
                    d[0][i] = _mm256_fnmadd_ps(kb0, l[2][i], _mm256_add_ps(l[0][i], l[4][i]));
                    d[1][i] = _mm256_fmadd_ps(k23, q, p);
                    d[2][i] = _mm256_fnmadd_ps(k23, q, p);
                    d[3][i] = _mm256_fmadd_ps(k32, t, s);
                    d[4][i] = _mm256_fnmadd_ps(k32, t, s);
                    d[5][i] = _mm256_fnmadd_ps(kb0, l[3][i], _mm256_add_ps(l[1][i], l[5][i]));
                }
                for (j = 0; j < 6; j++) {
                    __m256 u0, u1, u2, u3, cl[4], e0, e5, p, q, s, t, o[6];
                    float *v = V + (j * 6) * vs + c * BD__WG_L + r * TWp + 8 * k;
                    /* lanes of d[j][i]: tiles 2i (low) and 2i+1 (high), 4 columns each */
                    u0 = _mm256_unpacklo_ps(d[j][0], d[j][1]); u1 = _mm256_unpackhi_ps(d[j][0], d[j][1]);
                    u2 = _mm256_unpacklo_ps(d[j][2], d[j][3]); u3 = _mm256_unpackhi_ps(d[j][2], d[j][3]);
                    cl[0] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(u0, u2, 0x44), ord);
                    cl[1] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(u0, u2, 0xEE), ord);
                    cl[2] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(u1, u3, 0x44), ord);
                    cl[3] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(u1, u3, 0xEE), ord);
                    e0 = _mm256_blend_ps(_mm256_permutevar8x32_ps(cl[3], up), d[j][4], 0x01);
                    e5 = _mm256_blend_ps(_mm256_permutevar8x32_ps(cl[0], dn), d[j][5], 0x80);
                    p = _mm256_fnmadd_ps(k94, cl[1], cl[3]);
                    q = _mm256_fnmadd_ps(k94, cl[0], cl[2]);
                    s = _mm256_fnmadd_ps(k49, cl[1], cl[3]);
                    t = _mm256_fnmadd_ps(k49, cl[0], cl[2]);
                    o[0] = _mm256_fnmadd_ps(kb0, cl[1], _mm256_add_ps(e0, cl[3]));
                    o[1] = _mm256_fmadd_ps(k23, q, p);
                    o[2] = _mm256_fnmadd_ps(k23, q, p);
                    o[3] = _mm256_fmadd_ps(k32, t, s);
                    o[4] = _mm256_fnmadd_ps(k32, t, s);
                    o[5] = _mm256_fnmadd_ps(kb0, cl[2], _mm256_add_ps(cl[0], e5));
                    for (i = 0; i < 6; i++) {
                        if (nst >= 8) _mm256_storeu_ps(v + i * vs, _mm256_and_ps(lm, o[i]));
                        else bd__store8(v + i * vs, _mm256_and_ps(lm, o[i]), nst);
                    }
                }
            }
            if (TWp > 8 * nch) /* 8-lane chunks of no tile: zero */
                for (j = 0; j < 36; j++)
                    memset(V + j * vs + c * BD__WG_L + r * TWp + 8 * nch, 0, (size_t)(TWp - 8 * nch) * sizeof(float));
        }
    }
}
/* bd__wg4_otrans, AVX2: A^T M A on 8-lane vectors, then per output row the
   4 pixels of each tile interleaved (unpack, shuffle, 128-bit permutes) into
   segments of 2 tiles (8 columns), stored whole or as 4 + 2 + 1 lanes */
__attribute__((target("avx2,fma"))) static void
bd__wg4_otrans_avx2(float *out, const float *M, int64_t Cout, int64_t H, int64_t W, int64_t TH,
                    int64_t TW, int64_t TWp, int64_t g0, int64_t nrows, int64_t o0, int64_t mr,
                    const float *bias, int accum) {
    int64_t r, h, a, j, q, HW = H * W, lanes = nrows * TWp;
    const __m256 k23 = _mm256_set1_ps(BD__WG4_A1), k49 = _mm256_set1_ps(BD__WG4_A1SQ), k827 = _mm256_set1_ps(BD__WG4_A1CU);
    const __m256 k32 = _mm256_set1_ps(BD__WG4_A3), k94 = _mm256_set1_ps(BD__WG4_A3SQ), k278 = _mm256_set1_ps(BD__WG4_A3CU);
    if (TWp < 2) { /* 1-tile rows (W <= 4): the C transform */
        bd__wg4_otrans(out, M, Cout, H, W, TH, TW, TWp, g0, nrows, o0, mr, bias, accum);
        return;
    }
    for (r = 0; r < mr; r++) {
        __m256 bv = _mm256_set1_ps((!accum && bias) ? bias[o0 + r] : 0.0f);
        for (h = 0; h * 8 < lanes; h++) {
            const float *m = M + r * BD__WG_L + 8 * h;
            __m256 t[4][6], y[16];
            for (j = 0; j < 6; j++) { /* A^T m along y, per column j */
                __m256 m0 = _mm256_loadu_ps(m + j * BD__WG_MS), m1 = _mm256_loadu_ps(m + (6 + j) * BD__WG_MS);
                __m256 m2 = _mm256_loadu_ps(m + (12 + j) * BD__WG_MS), m3 = _mm256_loadu_ps(m + (18 + j) * BD__WG_MS);
                __m256 m4 = _mm256_loadu_ps(m + (24 + j) * BD__WG_MS), m5 = _mm256_loadu_ps(m + (30 + j) * BD__WG_MS);
                __m256 pa = _mm256_add_ps(m1, m2), pb = _mm256_sub_ps(m1, m2), pc = _mm256_add_ps(m3, m4), pd = _mm256_sub_ps(m3, m4);
                t[0][j] = _mm256_add_ps(_mm256_add_ps(m0, pa), pc);
                t[1][j] = _mm256_fmadd_ps(k23, pb, _mm256_mul_ps(k32, pd));
                t[2][j] = _mm256_fmadd_ps(k49, pa, _mm256_mul_ps(k94, pc));
                t[3][j] = _mm256_fmadd_ps(k827, pb, _mm256_fmadd_ps(k278, pd, m5));
            }
            for (j = 0; j < 4; j++) { /* (A^T m) A along x: y[4j + b] = pixel (j, b) */
                __m256 pa = _mm256_add_ps(t[j][1], t[j][2]), pb = _mm256_sub_ps(t[j][1], t[j][2]);
                __m256 pc = _mm256_add_ps(t[j][3], t[j][4]), pd = _mm256_sub_ps(t[j][3], t[j][4]);
                y[4 * j] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(t[j][0], pa), pc), bv);
                y[4 * j + 1] = _mm256_add_ps(_mm256_fmadd_ps(k23, pb, _mm256_mul_ps(k32, pd)), bv);
                y[4 * j + 2] = _mm256_add_ps(_mm256_fmadd_ps(k49, pa, _mm256_mul_ps(k94, pc)), bv);
                y[4 * j + 3] = _mm256_add_ps(_mm256_fmadd_ps(k827, pb, _mm256_fmadd_ps(k278, pd, t[j][5])), bv);
            }
            for (a = 0; a < 4; a++) {
                __m256 u0 = _mm256_unpacklo_ps(y[4 * a], y[4 * a + 1]), u1 = _mm256_unpackhi_ps(y[4 * a], y[4 * a + 1]);
                __m256 u2 = _mm256_unpacklo_ps(y[4 * a + 2], y[4 * a + 3]), u3 = _mm256_unpackhi_ps(y[4 * a + 2], y[4 * a + 3]);
                /* tiles (0, 4), (1, 5), (2, 6), (3, 7) of the vector, 4 pixels each */
                __m256 s04 = _mm256_shuffle_ps(u0, u2, 0x44), s15 = _mm256_shuffle_ps(u0, u2, 0xEE);
                __m256 s26 = _mm256_shuffle_ps(u1, u3, 0x44), s37 = _mm256_shuffle_ps(u1, u3, 0xEE), sg[4];
                sg[0] = _mm256_permute2f128_ps(s04, s15, 0x20); sg[1] = _mm256_permute2f128_ps(s26, s37, 0x20);
                sg[2] = _mm256_permute2f128_ps(s04, s15, 0x31); sg[3] = _mm256_permute2f128_ps(s26, s37, 0x31);
                for (q = 0; q < 4; q++) { /* tiles 2q, 2q+1 of the vector */
                    int64_t lane0 = 8 * h + 2 * q, rr = lane0 / TWp, tb = lane0 % TWp, g, oy, col0, cnt;
                    float *o;
                    if (rr >= nrows || tb >= TW) continue;
                    g = g0 + rr; oy = 4 * (g % TH) + a;
                    if (oy >= H) continue;
                    col0 = 4 * tb;
                    cnt = W - col0 < 8 ? W - col0 : 8;
                    o = out + ((g / TH) * Cout + o0 + r) * HW + oy * W + col0;
                    if (cnt == 8) {
                        _mm256_storeu_ps(o, accum ? _mm256_add_ps(sg[q], _mm256_loadu_ps(o)) : sg[q]);
                    } else {
                        bd__store8(o, accum ? _mm256_add_ps(sg[q], _mm256_maskload_ps(o, BD__M8(cnt))) : sg[q], cnt);
                    }
                }
            }
        }
    }
}
#endif
/* out (N, Cout, H, W) (= + bias, or += when accum) = conv3x3 (stride 1, pad 1)
   of x (N, Cin, H, W) with the weights of ws, by Winograd F(2x2, 3x3), or
   F(4x4, 3x3) when f4; col holds colsize floats.  0 = not applicable
   (shape, or col too small). */
static int bd__wg_conv3(float *out, float *col, int64_t colsize, const float *x, const bd__wg_wsrc *ws,
                        int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout, const float *bias,
                        int accum, int f4) {
    int np = f4 ? 36 : 16, tsz = f4 ? 4 : 2;
    int64_t TW = (W + tsz - 1) / tsz, TH = (H + tsz - 1) / tsz, TWp = 1;
    int64_t slot = f4 ? bd__wg4_slot_floats(Cin) : bd__wg_slot_floats(Cin), KC = f4 ? BD__WG4_KC : BD__WG_KC;
    int64_t npan = (Cout + 7) / 8, upan = np * Cin * 8, R, nblk, slots, cg, ppg, items, t;
    int nt = bd__omp_threads(), use, v512 = 0, v256 = 0;
    float *upre = NULL;
    bd__ukernel_fn uk = bd__ukernel_pick();
    if (!col || !bd__wg_shape_ok(H, W, 3, 1, 1) || colsize < slot || N <= 0 || Cout <= 0) return 0;
#ifdef BD__X86
    v512 = BD__CPU_AVX512();
    v256 = !v512 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    while (TWp < TW) TWp *= 2; /* tile rows padded to a power of two of lanes */
    slots = colsize / slot;
    use = (int64_t)nt < slots ? nt : (int)slots;
    R = BD__WG_L / TWp;
    nblk = (N * TH + R - 1) / R;
    if (colsize - use * slot >= npan * upan) {
        /* transformed weights once per call, after the V slots */
        upre = col + use * slot;
        BD__OMP_FOR_NT(use, use > 1 && npan > 1)
        for (t = 0; t < npan; t++) {
            int64_t c0;
            for (c0 = 0; c0 < Cin; c0 += KC) {
                int64_t kc = Cin - c0 < KC ? Cin - c0 : KC, mr = Cout - t * 8 < 8 ? Cout - t * 8 : 8;
                if (f4) bd__wg4_wtrans(upre + t * upan + c0 * 36 * 8, ws, t * 8, mr, c0, kc);
                else bd__wg_wtrans(upre + t * upan + c0 * 16 * 8, ws, t * 8, mr, c0, kc);
            }
        }
    }
    /* Work items: a block of tile rows x a group of output-channel panels
       (each item transforms its block's input: cheap next to the products).
       Items run group-major: with cg = the thread count, each thread takes
       one group of panels over every block, and reads only the transformed
       weights it made itself (upre is split over panels the same way).
       Used when there are few blocks (< 8 per thread): batch 1 at 28x28,
       2 threads, F(4x4) (2 blocks of 4 and 3 tile rows) 320 -> 175 us and
       F(2x2) (7 blocks, 4 + 3) 253 -> 216 us on the 64->64 layer
       (docs/performance.md "Batch 1"); with many blocks, cg = 1. */
    cg = 1;
    if (use > 1 && nblk < 8 * (int64_t)use) cg = use < npan ? use : npan;
    ppg = (npan + cg - 1) / cg;
    cg = (npan + ppg - 1) / ppg;
    items = nblk * cg;
    BD__OMP_FOR_NT(use, use > 1 && items > 1)
    for (t = 0; t < items; t++) {
        /* ua: 16 x 128 or 36 x 64 x 8 floats */
        float M[36 * BD__WG_MS], ua[36 * BD__WG4_KC * 8];
        int64_t b = t % nblk, grp = t / nblk, g0 = b * R, nrows = N * TH - g0 < R ? N * TH - g0 : R, p;
        int64_t p1 = (grp + 1) * ppg < npan ? (grp + 1) * ppg : npan;
        float *V = col + (int64_t)bd__omp_tid() * slot;
        if (f4) {
#ifdef BD__X86
            if (v512) bd__wg4_itrans_avx512(V, x, Cin, H, W, TH, TW, TWp, g0, nrows, Cin * H * W);
            else if (v256) bd__wg4_itrans_avx2(V, x, Cin, H, W, TH, TW, TWp, g0, nrows, Cin * H * W);
            else
#endif
                bd__wg4_itrans(V, x, Cin, H, W, TH, TW, TWp, g0, nrows, Cin * H * W);
        } else {
#ifdef BD__X86
            if (v512) bd__wg_itrans_avx512(V, x, Cin, H, W, TH, TW, TWp, g0, nrows);
            else if (v256) bd__wg_itrans_avx2(V, x, Cin, H, W, TH, TW, TWp, g0, nrows);
            else
#endif
                bd__wg_itrans(V, x, Cin, H, W, TH, TW, TWp, g0, nrows);
        }
        for (p = grp * ppg; p < p1; p++) {
            int64_t o0 = p * 8, mr = Cout - o0 < 8 ? Cout - o0 : 8, c0, xi;
            if (!v512 && !v256) memset(M, 0, (size_t)np * BD__WG_MS * sizeof(float));
            for (c0 = 0; c0 < Cin; c0 += KC) {
                int64_t kc = Cin - c0 < KC ? Cin - c0 : KC;
                const float *u = upre ? upre + p * upan + c0 * np * 8 : ua;
                if (!upre) {
                    if (f4) bd__wg4_wtrans(ua, ws, o0, mr, c0, kc);
                    else bd__wg_wtrans(ua, ws, o0, mr, c0, kc);
                }
#ifdef BD__X86
                if (v512) {
                    bd__wg_mm_avx512(kc, u, V + c0 * BD__WG_L, bd__wg_vs(Cin), M, c0 == 0, np);
                    continue;
                }
                if (v256) {
                    bd__wg_mm_avx2(kc, u, V + c0 * BD__WG_L, bd__wg_vs(Cin), M, c0 == 0, np);
                    continue;
                }
#endif
                for (xi = 0; xi < np; xi++)
                    uk(kc, u + xi * kc * 8, V + xi * bd__wg_vs(Cin) + c0 * BD__WG_L, M + xi * BD__WG_MS,
                       BD__WG_L, 1.0f, 8, BD__WG_L);
            }
            if (f4) {
#ifdef BD__X86
                if (v512) {
                    bd__wg4_otrans_avx512(out, M, Cout, H, W, TH, TW, TWp, g0, nrows, o0, mr, bias, accum);
                    continue;
                }
                if (v256) {
                    bd__wg4_otrans_avx2(out, M, Cout, H, W, TH, TW, TWp, g0, nrows, o0, mr, bias, accum);
                    continue;
                }
#endif
                bd__wg4_otrans(out, M, Cout, H, W, TH, TW, TWp, g0, nrows, o0, mr, bias, accum);
                continue;
            }
#ifdef BD__X86
            if (v512) {
                bd__wg_otrans_avx512(out, M, Cout, H, W, TH, TW, TWp, g0, nrows, o0, mr, bias, accum);
                continue;
            }
            if (v256) {
                bd__wg_otrans_avx2(out, M, Cout, H, W, TH, TW, TWp, g0, nrows, o0, mr, bias, accum);
                continue;
            }
#endif
            bd__wg_otrans(out, M, Cout, H, W, TH, TW, TWp, g0, nrows, o0, mr, bias, accum);
        }
    }
    return 1;
}

/* ---- Winograd F(4x4, 3x3) weight gradient (AVX-512) ----
   With U = G g G^T and V = B^T d B (the forward's input transform) the
   forward is Y = A^T [U (.) V] A per tile, so per (output, input) channel
   pair dU = sum over tiles of M (.) V with M = A dY A^T (the 4x4 dout tile
   to 6x6), and dw += G^T dU G once per layer: 36 multiplies per 4x4 tile
   and pair instead of the direct kernel's 144.  The sum is, per position
   xi, a GEMM with a long reduction over the tiles of all samples:
   dU[xi] (Cin x Cout) += V[xi] (Cin x tiles) M[xi]^T (tiles x Cout).
   A work item owns a range of input channels (a multiple of 8) and up to
   64 output channels (2 panels of 32) and walks the forward's blocks of 32
   tile lanes in order: V for its channels by bd__wg4_itrans_avx512 (the
   forward's, with the sample stride), M for a panel of 32 output channels
   (dout rows transposed to (pixel, 32 channels), then A dY A^T on 2
   vectors per pixel, one row of 32 channels per tile: Mt), then per xi and
   8 input channels 16 zmm of sums over the block's tiles (8 V values
   broadcast per tile, 2 Mt vectors: 16 FMAs), added to the item's dU (its
   slot of `col`, 36 x channels x 32 floats per panel).  Lanes of no tile
   (rows of tiles padded to a power of two) are skipped.  Every dU element
   is one sum over tiles in one order and every dw element is written by
   one item, whatever the split over threads: the same bits for every
   thread count. */
#ifdef BD__X86
/* the transpose of A^T applied to 4 values (m_i = sum_a A^T[a][i] y_a) */
#define BD__WGDW_AT(y0, y1, y2, y3, m)                                                                 \
    do {                                                                                               \
        __m512 bd__s_ = _mm512_fmadd_ps(_mm512_set1_ps(4.0f / 9.0f), (y2), (y0));                      \
        __m512 bd__t_ = _mm512_fmadd_ps(_mm512_set1_ps(8.0f / 27.0f), (y3),                            \
                                        _mm512_mul_ps(_mm512_set1_ps(2.0f / 3.0f), (y1)));             \
        __m512 bd__u_ = _mm512_fmadd_ps(_mm512_set1_ps(9.0f / 4.0f), (y2), (y0));                      \
        __m512 bd__v_ = _mm512_fmadd_ps(_mm512_set1_ps(27.0f / 8.0f), (y3),                            \
                                        _mm512_mul_ps(_mm512_set1_ps(3.0f / 2.0f), (y1)));             \
        (m)[0] = (y0);                                                                                 \
        (m)[1] = _mm512_add_ps(bd__s_, bd__t_);                                                        \
        (m)[2] = _mm512_sub_ps(bd__s_, bd__t_);                                                        \
        (m)[3] = _mm512_add_ps(bd__u_, bd__v_);                                                        \
        (m)[4] = _mm512_sub_ps(bd__u_, bd__v_);                                                        \
        (m)[5] = (y3);                                                                                 \
    } while (0)
/* r[i][j] <-> r[j][i] (16 x 16 floats) */
__attribute__((target("avx512f"))) static void bd__tr16_avx512(__m512 *r) {
    __m512 a[16], b[16], s[4];
    int i, k;
    for (i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (i = 0; i < 4; i++) {
        __m512d a0 = _mm512_castps_pd(a[4 * i]), a1 = _mm512_castps_pd(a[4 * i + 1]);
        __m512d a2 = _mm512_castps_pd(a[4 * i + 2]), a3 = _mm512_castps_pd(a[4 * i + 3]);
        b[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    /* b[4m + k], 128-bit lane L: column 4L + k of rows 4m .. 4m+3 */
    for (k = 0; k < 4; k++) {
        s[0] = _mm512_shuffle_f32x4(b[k], b[4 + k], 0x88);
        s[1] = _mm512_shuffle_f32x4(b[k], b[4 + k], 0xDD);
        s[2] = _mm512_shuffle_f32x4(b[8 + k], b[12 + k], 0x88);
        s[3] = _mm512_shuffle_f32x4(b[8 + k], b[12 + k], 0xDD);
        r[k] = _mm512_shuffle_f32x4(s[0], s[2], 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(s[0], s[2], 0xDD);
        r[4 + k] = _mm512_shuffle_f32x4(s[1], s[3], 0x88);
        r[12 + k] = _mm512_shuffle_f32x4(s[1], s[3], 0xDD);
    }
}
/* Mt[xi*BD__WGDW_MS + (r*TW + tx)*32 + o] = (A dY A^T)[xi] of the 4x4 dout
   tile (r, tx) of the block (tile row g0 + r, g = n*TH + ty), channel o < om
   of d (sample n at d + n*ns), 0 for o >= om; dT: 4 x 4TW x 32 floats */
__attribute__((target("avx512f"))) static void
bd__wgdw_mtrans_avx512(float *Mt, float *dT, const float *d, int64_t om, int64_t ns, int64_t H, int64_t W,
                       int64_t TH, int64_t TW, int64_t g0, int64_t nrows) {
    int64_t HW = H * W, Wq = 4 * TW, r, a, b, o, q, tx, h, i, j;
    for (r = 0; r < nrows; r++) {
        int64_t g = g0 + r, n = g / TH, ty = g % TH;
        for (a = 0; a < 4; a++) { /* dT[(a*Wq + q)*32 + o] = dout[n][o][4ty + a][q], 0 outside */
            int64_t y = 4 * ty + a;
            float *t = dT + a * Wq * 32;
            if (y >= H) {
                memset(t, 0, (size_t)(Wq * 32) * sizeof(float));
                continue;
            }
            for (h = 0; h < 2; h++) /* 16 channels x 16 pixels at a time, transposed in registers */
                for (q = 0; q < Wq; q += 16) {
                    __m512 rr[16];
                    __mmask16 mk = bd__wg_m16(W - q);
                    for (o = 0; o < 16; o++)
                        rr[o] = 16 * h + o < om ? _mm512_maskz_loadu_ps(mk, d + n * ns + (16 * h + o) * HW + y * W + q)
                                                : _mm512_setzero_ps();
                    bd__tr16_avx512(rr);
                    for (o = 0; o < 16 && q + o < Wq; o++) _mm512_storeu_ps(t + (q + o) * 32 + 16 * h, rr[o]);
                }
        }
        for (tx = 0; tx < TW; tx++) {
            float *m = Mt + (r * TW + tx) * 32;
            for (h = 0; h < 2; h++) {
                __m512 e[4][4], t[4][6], u[6];
                for (a = 0; a < 4; a++)
                    for (b = 0; b < 4; b++) e[a][b] = _mm512_loadu_ps(dT + (a * Wq + 4 * tx + b) * 32 + 16 * h);
                for (a = 0; a < 4; a++) BD__WGDW_AT(e[a][0], e[a][1], e[a][2], e[a][3], t[a]); /* along x */
                for (j = 0; j < 6; j++) { /* along y, per column j */
                    BD__WGDW_AT(t[0][j], t[1][j], t[2][j], t[3][j], u);
                    for (i = 0; i < 6; i++) _mm512_storeu_ps(m + (6 * i + j) * BD__WGDW_MS + 16 * h, u[i]);
                }
            }
        }
    }
}
/* dU[c*32 + o] += sum over the block's tiles (lane r*TWp + tx of V, row
   r*TW + tx of Mt; tx < TW, r < nrows) of V[c*32 + lane] Mt[row*32 + o],
   c < 8 (rows c >= nc are not read and stay 0) */
__attribute__((target("avx512f"))) static void
bd__wgdw_mm_avx512(float *dU, const float *V, const float *Mt, int64_t nc, int64_t nrows, int64_t TW,
                   int64_t TWp) {
    static const float zero[BD__WG_L] = {0};
    const float *v0, *v1, *v2, *v3, *v4, *v5, *v6, *v7;
    __m512 acc[16];
    int64_t r, tx, i;
    v0 = V; v1 = nc > 1 ? V + 32 : zero; v2 = nc > 2 ? V + 64 : zero; v3 = nc > 3 ? V + 96 : zero;
    v4 = nc > 4 ? V + 128 : zero; v5 = nc > 5 ? V + 160 : zero; v6 = nc > 6 ? V + 192 : zero;
    v7 = nc > 7 ? V + 224 : zero;
    for (i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (r = 0; r < nrows; r++) {
        int64_t l0 = r * TWp;
        for (tx = 0; tx < TW; tx++, Mt += 32) {
            __m512 m0 = _mm512_loadu_ps(Mt), m1 = _mm512_loadu_ps(Mt + 16), a;
            int64_t l = l0 + tx;
#define BD__WGDW_T(k, vk)                                                                              \
    a = _mm512_set1_ps((vk)[l]);                                                                       \
    acc[2 * (k)] = _mm512_fmadd_ps(a, m0, acc[2 * (k)]);                                               \
    acc[2 * (k) + 1] = _mm512_fmadd_ps(a, m1, acc[2 * (k) + 1]);
            BD__WGDW_T(0, v0) BD__WGDW_T(1, v1) BD__WGDW_T(2, v2) BD__WGDW_T(3, v3)
            BD__WGDW_T(4, v4) BD__WGDW_T(5, v5) BD__WGDW_T(6, v6) BD__WGDW_T(7, v7)
#undef BD__WGDW_T
        }
    }
    for (i = 0; i < 2 * (nc < 8 ? nc : 8); i++)
        _mm512_storeu_ps(dU + 16 * i, _mm512_add_ps(acc[i], _mm512_loadu_ps(dU + 16 * i)));
}
#endif
/* dw (Cout, Cin, 3, 3) += the Winograd F(4x4) weight gradient above of a
   stride-1, pad-1 3x3 convolution; col holds colsize floats.  0 = not
   applicable (no AVX-512, shape, or col too small). */
static int bd__wg4_dw(float *dw, float *col, int64_t colsize, const float *dout, const float *x, int64_t N,
                      int64_t Cin, int64_t H, int64_t W, int64_t Cout) {
#ifdef BD__X86
    int64_t TW = (W + 3) / 4, TH = (H + 3) / 4, TWp = 1, HW = H * W, R, nblk, nor = (Cout + 63) / 64;
    int64_t ncs = 1, cr, slot, items, t;
    int nt = bd__omp_threads(), use;
    if (!BD__CPU_AVX512() || !col || !bd__wg_shape_ok(H, W, 3, 1, 1) || N <= 0 || Cin <= 0 || Cout <= 0) return 0;
    while (TWp < TW) TWp *= 2;
    R = BD__WG_L / TWp;
    nblk = (N * TH + R - 1) / R;
    while (nor * ncs < nt && ncs * 8 < Cin) ncs++; /* input-channel ranges: an item per thread */
    cr = ((Cin + ncs - 1) / ncs + 7) / 8 * 8;
    ncs = (Cin + cr - 1) / cr;
    slot = bd__wgdw_slot(cr, W);
    if (colsize < slot) return 0;
    use = (int64_t)nt < colsize / slot ? nt : (int)(colsize / slot);
    items = nor * ncs;
    (void)use; /* (unused without OpenMP) */
    BD__OMP_FOR_NT(use, use > 1 && items > 1)
    for (t = 0; t < items; t++) {
        int64_t q0 = t / ncs * 64, c0 = t % ncs * cr, nc = Cin - c0 < cr ? Cin - c0 : cr, ncp = (nc + 7) / 8 * 8;
        int64_t np = Cout - q0 > 32 ? 2 : 1, vs = bd__wg_vs(nc), b, p, xi, ct, c, o, i, j;
        float *V = col + (int64_t)bd__omp_tid() * slot, *Mt = V + bd__wg4_slot_floats(cr);
        float *dT = Mt + 36 * BD__WGDW_MS, *dU = dT + 16 * TW * 32;
        memset(dU, 0, (size_t)(np * 36 * ncp * 32) * sizeof(float));
        for (b = 0; b < nblk; b++) {
            int64_t g0 = b * R, nrows = N * TH - g0 < R ? N * TH - g0 : R;
            bd__wg4_itrans_avx512(V, x + c0 * HW, nc, H, W, TH, TW, TWp, g0, nrows, Cin * HW);
            for (p = 0; p < np; p++) {
                int64_t o0 = q0 + 32 * p, om = Cout - o0 < 32 ? Cout - o0 : 32;
                bd__wgdw_mtrans_avx512(Mt, dT, dout + o0 * HW, om, Cout * HW, H, W, TH, TW, g0, nrows);
                for (xi = 0; xi < 36; xi++)
                    for (ct = 0; ct < nc; ct += 8)
                        bd__wgdw_mm_avx512(dU + ((p * 36 + xi) * ncp + ct) * 32, V + xi * vs + ct * BD__WG_L,
                                           Mt + xi * BD__WGDW_MS, nc - ct, nrows, TW, TWp);
            }
        }
        for (p = 0; p < np; p++) { /* dw += G^T dU G (in double, 32 output channels at a time) */
            static const double G[6][3] = {{1, 0, 0},
                                           {-81.0 / 130, -27.0 / 65, -18.0 / 65},
                                           {-81.0 / 130, 27.0 / 65, -18.0 / 65},
                                           {8.0 / 65, 12.0 / 65, 18.0 / 65},
                                           {8.0 / 65, -12.0 / 65, 18.0 / 65},
                                           {0, 0, 1}};
            int64_t o0 = q0 + 32 * p, om = Cout - o0 < 32 ? Cout - o0 : 32, k;
            for (c = 0; c < nc; c++) {
                double T[3][6][32], Y[9][32];
                const float *D = dU + (p * 36 * ncp + c) * 32; /* position xi: D + xi * ncp * 32 */
                for (i = 0; i < 3; i++) /* G^T D: along y */
                    for (j = 0; j < 6; j++) {
                        for (o = 0; o < 32; o++) T[i][j][o] = 0.0;
                        for (k = 0; k < 6; k++)
                            if (G[k][i] != 0.0)
                                for (o = 0; o < 32; o++) T[i][j][o] += G[k][i] * D[(6 * k + j) * ncp * 32 + o];
                    }
                for (i = 0; i < 3; i++) /* (G^T D) G: along x */
                    for (j = 0; j < 3; j++) {
                        for (o = 0; o < 32; o++) Y[3 * i + j][o] = 0.0;
                        for (k = 0; k < 6; k++)
                            if (G[k][j] != 0.0)
                                for (o = 0; o < 32; o++) Y[3 * i + j][o] += T[i][k][o] * G[k][j];
                    }
                for (o = 0; o < om; o++) {
                    float *g = dw + ((o0 + o) * Cin + c0 + c) * 9;
                    for (i = 0; i < 9; i++) g[i] += (float)Y[i][o];
                }
            }
        }
    }
    return 1;
#else
    (void)dw; (void)col; (void)colsize; (void)dout; (void)x; (void)N; (void)Cin; (void)H; (void)W; (void)Cout;
    return 0;
#endif
}

/* Winograd F(4x4), F(2x2) or the direct/implicit-GEMM kernel, per layer
   shape (never per thread count: the bits must not depend on it): 2 =
   F(4x4, 3x3), 1 = F(2x2, 3x3), 0 = direct.  The forward and dx share the
   rule (dx is the same convolution of dout with the flipped, transposed
   kernel).  F(4x4) in dx too since its points are 0, +-2/3, +-3/2 (2-4x
   less rounding than 0, +-1, +-2): the PyTorch conformance test of the
   UNet's backward (tests/test_unet.c, dz rel L2 <= 1e-5) measures
   4.6e-6 / 4.5e-6 / 4.5e-6 (AVX-512 / AVX2 / plain C) with F(4x4) forward
   and dx, against 9.6e-6 / 1.02e-5 / 1.05e-5 with the old points (F(4x4)
   dx was kept out of the rule then) and 5.2e-6 / 5.0e-6 / 6.7e-6 for the
   old points in the forward only.  F(4x4) dx over F(2x2): 1.25-1.42x per
   layer at batch 64 (AVX-512), 1.08-1.49x (AVX2).  Measured with
   bench/bench_wino.c (docs/performance.md, "Winograd"): both Winograd
   forms need >= 16 channels on both sides (conv_in, 1 channel, and the
   output conv, 1 channel out, are faster direct).  AVX-512: F(4x4) beats
   F(2x2) and the direct kernel once the call has >= 32 F(4x4) tile lanes
   on one thread (batch 1 at 28x28: 56 lanes, 1.1-1.2x over F(2x2); batch 2
   at 14x14: 1.1-1.6x over the direct kernel; batch 64: 1.2-1.6x over F(2x2)
   on every shape; with 2 threads too since bd__wg_conv3 splits a call of
   few blocks by output channels: batch 1 at 28x28 1.2-1.4x over F(2x2),
   docs/performance.md "Batch 1"); below that (batch 1 at 14x14, 7x7 up
   to batch 4) the per-call weight transform does not pay off and the
   direct kernel is faster.
   F(2x2) would need >= 128 of its lanes, which no UNet shape reaches
   without reaching 32 F(4x4) lanes first.  AVX2+FMA (256-bit direct tile
   and transforms, docs/performance.md "AVX2 paths") and plain C (not
   measured separately): F(2x2) beats the direct kernel from 48 lanes, and
   F(4x4) beats F(2x2) from 48 F(4x4) lanes (batch 64: 1.1-1.7x; batch 1
   at 28x28, 56 lanes: ~1.1x; at 32 lanes, batch 2 at 14x14 and batch 8 at
   7x7, 0.7-1.4x: F(2x2) kept there). */
static int bd__wg_rule(int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout) {
    int64_t TW = (W + 1) / 2, TWp = 1, TW4 = (W + 3) / 4, TWp4 = 1, need = 48, need4 = BD__WG4_NEED_AVX2;
#ifdef BD__X86
    if (BD__CPU_AVX512() && bd__direct_ok(H, W, 3, 1, 1)) {
        need = 4 * BD__WG_L;
        need4 = BD__WG_L;
    }
#endif
    while (TWp < TW) TWp *= 2;
    while (TWp4 < TW4) TWp4 *= 2;
    if (Cin < 16 || Cout < 16) return 0;
    if (N * ((H + 3) / 4) * TWp4 >= need4) return 2;
    return N * ((H + 1) / 2) * TWp >= need;
}

/* the weight gradient of a stride-1 3x3 convolution: Winograd F(4x4)
   (bd__wg4_dw, AVX-512) or the direct kernel (bd__dw_direct), per layer
   shape (never per thread count).  Measured with bench/bench_wino.c
   (docs/performance.md, "Winograd weight gradient"): on one thread 1.2-2.4x
   the direct kernel at batch 64 on every UNet shape and 1.2-2x at batch 8,
   from 16 channels on both sides and one block of 32 tiles (batch 8 at
   7x7); the 2-thread calls were not slower. */
static int bd__wg4_dw_rule(int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout) {
#ifdef BD__X86
    return BD__CPU_AVX512() && Cin >= 16 && Cout >= 16 && N * ((H + 3) / 4) * ((W + 3) / 4) >= BD__WG_L;
#else
    (void)N; (void)Cin; (void)H; (void)W; (void)Cout;
    return 0;
#endif
}

/* number of column blocks (multiples of NR) per sample so that N * blocks
   gives every thread work */
static int64_t bd__col_blocks(int64_t N, int64_t P, int nt) {
    int64_t panels = (P + BD__NR - 1) / BD__NR, want;
    if (nt <= 1) return 1;
    want = (2 * nt + N - 1) / N;
    if (want > panels) want = panels;
    return want < 1 ? 1 : want;
}

/* wg: -1 = the fast 3x3 kernels where their rules pick them (Winograd for the
   forward and dx by bd__wg_rule; the direct dw wherever it applies), 0 = never
   (the direct / implicit-GEMM kernels: the baseline of tests and bench_wino),
   1 = wherever they apply (Winograd F(2x2, 3x3)), 2 = the same with Winograd
   F(4x4, 3x3) */
static void bd__conv2d_fwd(float *out, float *col, const float *x, const float *w, const float *b,
                           int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t k,
                           int64_t stride, int64_t pad, int wg) {
    int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    int64_t P = Ho * Wo, KK = Cin * k * k, nb, cb, t;
    int nt = bd__omp_threads();
    if (N <= 0 || Cout <= 0 || P <= 0) return;
    if (bd__wg_shape_ok(H, W, k, stride, pad) && (wg > 0 || (wg < 0 && bd__wg_rule(N, Cin, H, W, Cout)))) {
        bd__wg_wsrc ws;
        ws.w = w; ws.so = Cin * 9; ws.si = 9; ws.flip = 0;
        if (bd__wg_conv3(out, col, bd_conv2d_workspace_floats(Cin, H, W, k, stride, pad), x, &ws, N, Cin,
                         H, W, Cout, b, 0, (wg > 0 ? wg : bd__wg_rule(N, Cin, H, W, Cout)) == 2))
            return;
    }
    if (bd__direct_ok(H, W, k, stride, pad)) {
        bd__gsrc sa;
        memset(&sa, 0, sizeof sa);
        sa.pack = bd__pack_rowmajor; sa.p = w; sa.ld = KK;
        if (bd__conv3_direct(out, col, bd_conv2d_workspace_floats(Cin, H, W, k, stride, pad), x, &sa,
                             N, Cin, H, W, Cout, b, 0))
            return;
    }
    nb = bd__col_blocks(N, P, nt);
    cb = ((P + nb - 1) / nb + BD__NR - 1) / BD__NR * BD__NR;
    nb = (P + cb - 1) / cb;
    BD__OMP_FOR_IF(nt > 1 && N * nb > 1)
    for (t = 0; t < N * nb; t++) {
        float buf[BD__GEMM_STACK_FLOATS];
        bd__gsrc sa, sb;
        int64_t n = t / nb, p0 = (t % nb) * cb, m = P - p0 < cb ? P - p0 : cb, o, i;
        float *on = out + n * Cout * P + p0;
        for (o = 0; o < Cout; o++) {
            float bo = b ? b[o] : 0.0f, *r = on + o * P;
            for (i = 0; i < m; i++) r[i] = bo;
        }
        memset(&sa, 0, sizeof sa);
        memset(&sb, 0, sizeof sb);
        sa.pack = bd__pack_rowmajor; sa.p = w; sa.ld = KK;
        sb.p = x + n * Cin * H * W;
        if (bd__conv_is_1x1(k, stride, pad)) {
            sb.pack = bd__pack_colmajor; sb.ld = P;
        } else {
            sb.pack = bd__pack_im2col; sb.C = Cin; sb.H = H; sb.W = W; sb.k = k;
            sb.stride = stride; sb.pad = pad; sb.Ho = Ho; sb.Wo = Wo;
        }
        bd__gemm_run(&sa, 0, &sb, p0, Cout, m, KK, 1.0f, on, P, buf);
    }
}

BDAPI void bd_conv2d_forward(float *out, float *col, const float *x, const float *w,
                             const float *b, int64_t N, int64_t Cin, int64_t H, int64_t W,
                             int64_t Cout, int64_t k, int64_t stride, int64_t pad) {
    bd__conv2d_fwd(out, col, x, w, b, N, Cin, H, W, Cout, k, stride, pad, -1);
}

static void bd__conv2d_bwd(float *dx, float *dw, float *db, float *col, const float *dout,
                           const float *x, const float *w, int64_t N, int64_t Cin, int64_t H,
                           int64_t W, int64_t Cout, int64_t k, int64_t stride, int64_t pad, int wg) {
    int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    int64_t P = Ho * Wo, KK = Cin * k * k, HW = H * W, t;
    int nt = bd__omp_threads(), fast = bd__conv_is_1x1(k, stride, pad);
    if (N <= 0 || Cout <= 0 || P <= 0) return;
    if (db) {
        BD__OMP_FOR_IF(nt > 1 && N * Cout * P >= 65536)
        for (t = 0; t < Cout; t++) {
            int64_t n, i;
            double s = 0.0;
            for (n = 0; n < N; n++) {
                const float *r = dout + (n * Cout + t) * P;
                float s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                for (i = 0; i + 8 <= P; i += 8) {
                    int e;
                    for (e = 0; e < 8; e++) s8[e] += r[i + e];
                }
                for (; i < P; i++) s += r[i];
                s += ((double)s8[0] + s8[1]) + ((double)s8[2] + s8[3]) + ((double)s8[4] + s8[5]) +
                     ((double)s8[6] + s8[7]);
            }
            db[t] += (float)s;
        }
    }
    if (dw && wg < 0 && k == 3 && stride == 1 && pad == 1 && bd__wg4_dw_rule(N, Cin, H, W, Cout) &&
        bd__wg4_dw(dw, col, bd_conv2d_workspace_floats(Cin, H, W, k, stride, pad), dout, x, N, Cin, H, W, Cout))
        dw = NULL; /* done: Winograd F(4x4) */
    if (dw && wg != 0 &&
        bd__dw_direct(dw, col, bd_conv2d_workspace_floats(Cin, H, W, k, stride, pad), dout, x, N, Cin, H, W,
                      Cout, k, stride, pad))
        dw = NULL; /* done */
    if (dw) {
        /* dw (Cout, KK) += dout_cat (Cout, N*P) . im2col_cat^T (N*P, KK) */
        int64_t nbj = (KK + BD__NR - 1) / BD__NR, per = nbj, nblk;
        if (nt > 1) per = (nbj + nt - 1) / nt; /* one block per thread: dout is packed once per block */
        if (per < 1) per = 1;
        nblk = (nbj + per - 1) / per;
        BD__OMP_FOR_IF(nt > 1 && nblk > 1)
        for (t = 0; t < nblk; t++) {
            float buf[BD__GEMM_STACK_FLOATS];
            bd__gsrc sa, sb;
            int64_t j0 = t * per * BD__NR, m = KK - j0 < per * BD__NR ? KK - j0 : per * BD__NR;
            memset(&sa, 0, sizeof sa);
            memset(&sb, 0, sizeof sb);
            sa.pack = bd__pack_cat; sa.p = dout; sa.ld = P; sa.nstr = Cout * P; sa.Ho = Ho; sa.Wo = Wo;
            sb.p = x; sb.nstr = Cin * HW; sb.Ho = Ho; sb.Wo = Wo;
            if (fast) {
                sb.pack = bd__pack_cat; sb.ld = P;
            }
            {
                /* (a 1x1 conv is the k = 1 case: the gather packer beats pack_cat) */
                if (!fast) sb.pack = bd__pack_im2col_t;
                sb.C = Cin; sb.H = H; sb.W = W; sb.k = k;
                sb.stride = stride; sb.pad = pad;
#ifdef BD__X86
                if (BD__CPU_AVX512() && Cin * HW < ((int64_t)1 << 30))
                    sb.pack = bd__pack_im2col_t_avx512;
                else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         Cin * HW < ((int64_t)1 << 30))
                    sb.pack = bd__pack_im2col_t_avx2;
#endif
            }
            bd__gemm_run(&sa, 0, &sb, j0, Cout, m, N * P, 1.0f, dw + j0, KK, buf);
        }
    }
    if (dx && bd__wg_shape_ok(H, W, k, stride, pad) &&
        (wg > 0 || (wg < 0 && bd__wg_rule(N, Cin, H, W, Cout)))) {
        /* dx = conv3x3 of dout with w'[ci][co] = w[co][ci] flipped */
        bd__wg_wsrc ws;
        ws.w = w; ws.so = 9; ws.si = Cin * 9; ws.flip = 1;
        if (bd__wg_conv3(dx, col, bd_conv2d_workspace_floats(Cin, H, W, k, stride, pad), dout, &ws, N,
                         Cout, H, W, Cin, NULL, 1, (wg > 0 ? wg : bd__wg_rule(N, Cin, H, W, Cout)) == 2))
            dx = NULL; /* done */
    }
    if (dx && bd__direct_ok(H, W, k, stride, pad)) {
        bd__gsrc sa;
        memset(&sa, 0, sizeof sa);
        sa.pack = bd__pack_wflip; sa.p = w; sa.C = Cin; sa.k = k;
        if (bd__conv3_direct(dx, col, bd_conv2d_workspace_floats(Cin, H, W, k, stride, pad), dout,
                             &sa, N, Cout, H, W, Cin, NULL, 1))
            dx = NULL; /* done */
    }
    if (dx && (fast || (stride == 1 && pad <= k - 1))) {
        /* dx[n] (Cin, HW) += w' (Cin, Cout*k*k) . im2col(dout[n], pad k-1-p) */
        int64_t nb = bd__col_blocks(N, HW, nt), cb;
        cb = ((HW + nb - 1) / nb + BD__NR - 1) / BD__NR * BD__NR;
        nb = (HW + cb - 1) / cb;
        BD__OMP_FOR_IF(nt > 1 && N * nb > 1)
        for (t = 0; t < N * nb; t++) {
            float buf[BD__GEMM_STACK_FLOATS];
            bd__gsrc sa, sb;
            int64_t n = t / nb, p0 = (t % nb) * cb, m = HW - p0 < cb ? HW - p0 : cb;
            memset(&sa, 0, sizeof sa);
            memset(&sb, 0, sizeof sb);
            sb.p = dout + n * Cout * P;
            if (fast) {
                sa.pack = bd__pack_colmajor; sa.p = w; sa.ld = Cin;
                sb.pack = bd__pack_colmajor; sb.ld = P;
            } else {
                sa.pack = bd__pack_wflip; sa.p = w; sa.C = Cin; sa.k = k;
                sb.pack = bd__pack_im2col; sb.C = Cout; sb.H = Ho; sb.W = Wo; sb.k = k;
                sb.stride = 1; sb.pad = k - 1 - pad; sb.Ho = H; sb.Wo = W;
            }
            bd__gemm_run(&sa, 0, &sb, p0, Cin, m, Cout * k * k, 1.0f, dx + n * Cin * HW + p0, HW, buf);
        }
    } else if (dx) {
        /* strided: col = w^T dout[n], then col2im, sample by sample */
        int64_t n;
        for (n = 0; n < N; n++) {
            bd_sgemm_builtin(1, 0, KK, P, Cout, 1.0f, w, KK, dout + n * Cout * P, P, 0.0f, col, P);
            bd__col2im_add(dx + n * Cin * HW, col, Cin, H, W, k, stride, pad, Ho, Wo);
        }
    }
}

BDAPI void bd_conv2d_backward(float *dx, float *dw, float *db, float *col, const float *dout,
                              const float *x, const float *w, int64_t N, int64_t Cin,
                              int64_t H, int64_t W, int64_t Cout, int64_t k, int64_t stride,
                              int64_t pad) {
    bd__conv2d_bwd(dx, dw, db, col, dout, x, w, N, Cin, H, W, Cout, k, stride, pad, -1);
}

/* GroupNorm.  Statistics per (n, g) over Cg*HW values, two-pass in double
   (mean first, then the centred sum of squares: no cancellation). */
#ifdef BDENSE_REFERENCE_KERNELS
static BD__UNUSED void bd__groupnorm_forward_ref(float *out, float *mean, float *rstd, const float *x,
                                const float *gamma, const float *beta, int64_t N, int64_t C,
                                int64_t HW, int64_t G) {
    int64_t Cg = C / G, M = Cg * HW, n, g, c, i;
    for (n = 0; n < N; n++)
        for (g = 0; g < G; g++) {
            const float *xg = x + (n * C + g * Cg) * HW;
            float *og = out + (n * C + g * Cg) * HW;
            double s = 0.0, v = 0.0, mu, rs;
            for (i = 0; i < M; i++) s += xg[i];
            mu = s / (double)M;
            for (i = 0; i < M; i++) {
                double d = xg[i] - mu;
                v += d * d;
            }
            rs = 1.0 / sqrt(v / (double)M + 1e-5);
            mean[n * G + g] = (float)mu;
            rstd[n * G + g] = (float)rs;
            for (c = 0; c < Cg; c++) {
                int64_t ch = g * Cg + c;
                float a = (float)rs * gamma[ch];
                float bb = beta[ch] - (float)mu * a;
                const float *xc = xg + c * HW;
                float *oc = og + c * HW;
                for (i = 0; i < HW; i++) oc[i] = xc[i] * a + bb;
            }
        }
}

/* With xh = (x - mu) rstd and g = dout * gamma (per channel):
   dx = rstd (g - mean(g) - xh mean(g xh)), means over the group;
   dgamma += sum dout xh, dbeta += sum dout (over n and positions). */
static BD__UNUSED void bd__groupnorm_backward_ref(float *dx, float *dgamma, float *dbeta, const float *dout,
                                 const float *x, const float *mean, const float *rstd,
                                 const float *gamma, int64_t N, int64_t C, int64_t HW, int64_t G) {
    int64_t Cg = C / G, M = Cg * HW, n, g, c, i;
    for (n = 0; n < N; n++)
        for (g = 0; g < G; g++) {
            float mu = mean[n * G + g], rs = rstd[n * G + g];
            double sg = 0.0, sgx = 0.0;
            float mg, mgx;
            for (c = 0; c < Cg; c++) {
                int64_t ch = g * Cg + c;
                const float *xc = x + (n * C + ch) * HW;
                const float *dc = dout + (n * C + ch) * HW;
                double sd = 0.0, sdx = 0.0;
                for (i = 0; i < HW; i++) {
                    float xh = (xc[i] - mu) * rs;
                    sd += dc[i];
                    sdx += (double)dc[i] * xh;
                }
                if (dgamma) dgamma[ch] += (float)sdx;
                if (dbeta) dbeta[ch] += (float)sd;
                sg += gamma[ch] * sd;
                sgx += gamma[ch] * sdx;
            }
            if (!dx) continue;
            mg = (float)(sg / (double)M);
            mgx = (float)(sgx / (double)M);
            for (c = 0; c < Cg; c++) {
                int64_t ch = g * Cg + c;
                const float *xc = x + (n * C + ch) * HW;
                const float *dc = dout + (n * C + ch) * HW;
                float *dxc = dx + (n * C + ch) * HW;
                float gm = gamma[ch];
                for (i = 0; i < HW; i++) {
                    float xh = (xc[i] - mu) * rs;
                    dxc[i] += rs * (dc[i] * gm - mg - xh * mgx);
                }
            }
        }
}
#endif

/* ---- fast elementwise helpers ----
   bd__expf: exp for |x| <= 87 to ~2 ulp (Cody-Waite reduction x = n ln2 + r,
   degree-6 polynomial, 2^n built in the exponent bits), branch-free so that
   loops over it vectorise; inputs are clamped to [-87, 87]. */
#if defined(__GNUC__) || defined(__clang__)
#define BD__HOT_INLINE __attribute__((always_inline)) inline
#else
#define BD__HOT_INLINE
#endif
static BD__HOT_INLINE float bd__expf(float x) {
    float n, r, p, sc;
    int32_t e;
    /* clamp with selects (maxps/minps: GCC vectorises this form).  NaN and
       -Inf go to -87, +Inf to 87: the cast to int below must never see a
       NaN (undefined behaviour, found by UBSan with NaN inputs); callers
       still propagate NaN through x itself. */
    x = x > -87.0f ? x : -87.0f;
    x = x < 87.0f ? x : 87.0f;
    /* round to nearest with the 1.5 * 2^23 trick (|x log2 e| < 2^22) */
    n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    e = ((int32_t)n + 127) * (1 << 23);
    memcpy(&sc, &e, sizeof sc);
    return p * sc;
}
static void bd__silu_rows(float *out, const float *x, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) out[i] = x[i] / (1.0f + bd__expf(-x[i]));
}

/* ---- fast GroupNorm (+ fused SiLU) ----
   Work is split over (sample, group) pairs for the forward and over groups
   for the backward (dgamma/dbeta sum over samples in a fixed order).
   Sums use eight float lanes per channel row combined in double: the same
   result for every thread count, and vectorisable.  Split from
   BD__GN_PAR_MIN values: a fork/join costs ~1.3 us on 2 cores, a 2048-value
   GroupNorm+SiLU ~2 us; with the earlier 32768 nearly every GroupNorm of a
   batch-1 call (28x28 x 32 channels and below) ran on one thread. */
#define BD__GN_PAR_MIN 2048
static double bd__sum8(const float *x, int64_t n) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    double t = 0.0;
    int64_t i;
    int e;
    for (i = 0; i + 8 <= n; i += 8)
        for (e = 0; e < 8; e++) s[e] += x[i + e];
    for (; i < n; i++) t += x[i];
    for (e = 0; e < 8; e++) t += s[e];
    return t;
}
static double bd__sqdev8(const float *x, int64_t n, float mu) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    double t = 0.0;
    int64_t i;
    int e;
    for (i = 0; i + 8 <= n; i += 8)
        for (e = 0; e < 8; e++) {
            float d = x[i + e] - mu;
            s[e] += d * d;
        }
    for (; i < n; i++) t += (double)(x[i] - mu) * (x[i] - mu);
    for (e = 0; e < 8; e++) t += s[e];
    return t;
}

static void bd__gn_fwd(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                       const float *beta, int64_t N, int64_t C, int64_t HW, int64_t G, int silu) {
    int64_t Cg = C / G, M = Cg * HW, t;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && N * C * HW >= BD__GN_PAR_MIN)
    for (t = 0; t < N * G; t++) {
        int64_t n = t / G, g = t % G, c, i;
        const float *xg = x + (n * C + g * Cg) * HW;
        float *og = out + (n * C + g * Cg) * HW;
        double s = 0.0, v = 0.0, mu, rs;
        for (c = 0; c < Cg; c++) s += bd__sum8(xg + c * HW, HW);
        mu = s / (double)M;
        for (c = 0; c < Cg; c++) v += bd__sqdev8(xg + c * HW, HW, (float)mu);
        rs = 1.0 / sqrt(v / (double)M + 1e-5);
        mean[t] = (float)mu;
        rstd[t] = (float)rs;
        for (c = 0; c < Cg; c++) {
            int64_t ch = g * Cg + c;
            float a = (float)rs * gamma[ch], bb = beta[ch] - (float)mu * a;
            const float *xc = xg + c * HW;
            float *oc = og + c * HW;
            if (silu) {
                for (i = 0; i < HW; i++) {
                    float y = xc[i] * a + bb;
                    oc[i] = y / (1.0f + bd__expf(-y));
                }
            } else {
                for (i = 0; i < HW; i++) oc[i] = xc[i] * a + bb;
            }
        }
    }
}

/* g = dout * silu'(y), y = x a + b (the GroupNorm output, recomputed) */
static void bd__silu_grad_rows(float *g, const float *dout, const float *x, float a, float b,
                               int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) {
        float y = x[i] * a + b, s = 1.0f / (1.0f + bd__expf(-y));
        g[i] = dout[i] * (s * (1.0f + y * (1.0f - s)));
    }
}

/* GroupNorm backward; with silu, dout is the gradient of silu(GN(x)) and
   y = GN(x) is recomputed from x, mean, rstd, gamma, beta (never stored),
   in chunks of BD__GN_CHUNK positions on the stack. */
#define BD__GN_CHUNK 512
/* whole groups up to this many floats keep the SiLU gradient on the stack
   (computed once instead of once per pass) */
#define BD__GN_GROUP_STACK 8192
static void bd__gn_bwd(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                       const float *mean, const float *rstd, const float *gamma,
                       const float *beta, int64_t N, int64_t C, int64_t HW, int64_t G, int silu) {
    int64_t Cg = C / G, M = Cg * HW, g;
    int keep = silu && M <= BD__GN_GROUP_STACK;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && N * C * HW >= BD__GN_PAR_MIN)
    for (g = 0; g < G; g++) {
        float gb[BD__GN_CHUNK], gall[BD__GN_GROUP_STACK];
        int64_t n, c, i, i0;
        for (n = 0; n < N; n++) {
            float mu = mean[n * G + g], rs = rstd[n * G + g], mg, mgx;
            double sg = 0.0, sgx = 0.0;
            for (c = 0; c < Cg; c++) {
                int64_t ch = g * Cg + c;
                const float *xc = x + (n * C + ch) * HW;
                const float *dc = dout + (n * C + ch) * HW;
                float a = rs * gamma[ch], bb = (beta ? beta[ch] : 0.0f) - mu * a;
                double sd = 0.0, sdx = 0.0;
                for (i0 = 0; i0 < HW; i0 += BD__GN_CHUNK) {
                    int64_t m = HW - i0 < BD__GN_CHUNK ? HW - i0 : BD__GN_CHUNK;
                    const float *d = dc + i0;
                    float sd8[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sx8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                    int e;
                    if (silu) {
                        float *gd = keep ? gall + c * HW + i0 : gb;
                        bd__silu_grad_rows(gd, dc + i0, xc + i0, a, bb, m);
                        d = gd;
                    }
                    for (i = 0; i + 8 <= m; i += 8)
                        for (e = 0; e < 8; e++) {
                            float xh = (xc[i0 + i + e] - mu) * rs;
                            sd8[e] += d[i + e];
                            sx8[e] += d[i + e] * xh;
                        }
                    for (; i < m; i++) {
                        float xh = (xc[i0 + i] - mu) * rs;
                        sd += d[i];
                        sdx += (double)d[i] * xh;
                    }
                    for (e = 0; e < 8; e++) { sd += sd8[e]; sdx += sx8[e]; }
                }
                if (dgamma) dgamma[ch] += (float)sdx;
                if (dbeta) dbeta[ch] += (float)sd;
                sg += gamma[ch] * sd;
                sgx += gamma[ch] * sdx;
            }
            if (!dx) continue;
            mg = (float)(sg / (double)M);
            mgx = (float)(sgx / (double)M);
            for (c = 0; c < Cg; c++) {
                int64_t ch = g * Cg + c;
                const float *xc = x + (n * C + ch) * HW;
                const float *dc = dout + (n * C + ch) * HW;
                float *dxc = dx + (n * C + ch) * HW;
                float gm = gamma[ch], a = rs * gm, bb = (beta ? beta[ch] : 0.0f) - mu * a;
                for (i0 = 0; i0 < HW; i0 += BD__GN_CHUNK) {
                    int64_t m = HW - i0 < BD__GN_CHUNK ? HW - i0 : BD__GN_CHUNK;
                    const float *d = dc + i0, *xx = xc + i0;
                    float *o = dxc + i0;
                    if (keep) {
                        d = gall + c * HW + i0;
                    } else if (silu) {
                        bd__silu_grad_rows(gb, dc + i0, xc + i0, a, bb, m);
                        d = gb;
                    }
                    for (i = 0; i < m; i++) o[i] += rs * (d[i] * gm - mg - ((xx[i] - mu) * rs) * mgx);
                }
            }
        }
    }
}

BDAPI void bd_groupnorm_forward(float *out, float *mean, float *rstd, const float *x,
                                const float *gamma, const float *beta, int64_t N, int64_t C,
                                int64_t HW, int64_t G) {
    bd__gn_fwd(out, mean, rstd, x, gamma, beta, N, C, HW, G, 0);
}
BDAPI void bd_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout,
                                 const float *x, const float *mean, const float *rstd,
                                 const float *gamma, int64_t N, int64_t C, int64_t HW, int64_t G) {
    bd__gn_bwd(dx, dgamma, dbeta, dout, x, mean, rstd, gamma, NULL, N, C, HW, G, 0);
}
BDAPI void bd_groupnorm_silu_forward(float *out, float *mean, float *rstd, const float *x,
                                     const float *gamma, const float *beta, int64_t N, int64_t C,
                                     int64_t HW, int64_t G) {
    bd__gn_fwd(out, mean, rstd, x, gamma, beta, N, C, HW, G, 1);
}
BDAPI void bd_groupnorm_silu_backward(float *dx, float *dgamma, float *dbeta, const float *dout,
                                      const float *x, const float *mean, const float *rstd,
                                      const float *gamma, const float *beta, int64_t N,
                                      int64_t C, int64_t HW, int64_t G) {
    bd__gn_bwd(dx, dgamma, dbeta, dout, x, mean, rstd, gamma, beta, N, C, HW, G, 1);
}

/* Element-wise and copy kernels split over threads from BD__EW_PAR_MIN
   values (a fork/join costs ~1.3 us on 2 cores; the earlier 65536 left
   every one of them on one thread in a batch-1 network call). */
#define BD__EW_PAR_MIN 8192
BDAPI void bd_silu_forward(float *out, const float *x, int64_t n) {
    int64_t t, nb = (n + 16383) / 16384;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && nb > 3)
    for (t = 0; t < nb; t++) {
        int64_t i0 = t * 16384, m = n - i0 < 16384 ? n - i0 : 16384;
        bd__silu_rows(out + i0, x + i0, m);
    }
}
BDAPI void bd_silu_backward(float *dx, const float *dout, const float *x, int64_t n) {
    int64_t t, nb = (n + 16383) / 16384;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && nb > 3)
    for (t = 0; t < nb; t++) {
        int64_t i, i1 = (t + 1) * 16384 < n ? (t + 1) * 16384 : n;
        for (i = t * 16384; i < i1; i++) {
            float s = 1.0f / (1.0f + bd__expf(-x[i]));
            dx[i] += dout[i] * s * (1.0f + x[i] * (1.0f - s));
        }
    }
}

BDAPI void bd_upsample2x_forward(float *out, const float *x, int64_t N, int64_t C, int64_t H,
                                 int64_t W) {
    int64_t p, W2 = 2 * W;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && 4 * N * C * H * W >= BD__EW_PAR_MIN)
    for (p = 0; p < N * C; p++) {
        int64_t y, xx;
        const float *xp = x + p * H * W;
        float *op = out + p * 4 * H * W;
        for (y = 0; y < H; y++) {
            float *r0 = op + (2 * y) * W2, *r1 = r0 + W2;
            for (xx = 0; xx < W; xx++) {
                float v = xp[y * W + xx];
                r0[2 * xx] = v; r0[2 * xx + 1] = v;
                r1[2 * xx] = v; r1[2 * xx + 1] = v;
            }
        }
    }
}

BDAPI void bd_upsample2x_backward(float *dx, const float *dout, int64_t N, int64_t C, int64_t H,
                                  int64_t W) {
    int64_t p, W2 = 2 * W;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && 4 * N * C * H * W >= BD__EW_PAR_MIN)
    for (p = 0; p < N * C; p++) {
        int64_t y, xx;
        float *xp = dx + p * H * W;
        const float *op = dout + p * 4 * H * W;
        for (y = 0; y < H; y++) {
            const float *r0 = op + (2 * y) * W2, *r1 = r0 + W2;
            for (xx = 0; xx < W; xx++)
                xp[y * W + xx] += (r0[2 * xx] + r0[2 * xx + 1]) + (r1[2 * xx] + r1[2 * xx + 1]);
        }
    }
}

/* one channel row per item: batch 1 splits too */
BDAPI void bd_concat_forward(float *out, const float *a, const float *b, int64_t N, int64_t C1,
                             int64_t C2, int64_t HW) {
    int64_t p, C = C1 + C2;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && N * C * HW >= BD__EW_PAR_MIN)
    for (p = 0; p < N * C; p++) {
        int64_t n = p / C, c = p % C;
        memcpy(out + p * HW, c < C1 ? a + (n * C1 + c) * HW : b + (n * C2 + c - C1) * HW,
               (size_t)HW * sizeof(float));
    }
}

BDAPI void bd_concat_backward(float *da, float *db, const float *dout, int64_t N, int64_t C1,
                              int64_t C2, int64_t HW) {
    int64_t p, C = C1 + C2;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && N * C * HW >= BD__EW_PAR_MIN)
    for (p = 0; p < N * C; p++) {
        int64_t n = p / C, c = p % C, i;
        const float *dn = dout + p * HW;
        float *r = c < C1 ? (da ? da + (n * C1 + c) * HW : NULL) : (db ? db + (n * C2 + c - C1) * HW : NULL);
        if (r)
            for (i = 0; i < HW; i++) r[i] += dn[i];
    }
}

BDAPI void bd_add_channel_forward(float *x, const float *e, int64_t N, int64_t C, int64_t HW) {
    int64_t p;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && N * C * HW >= BD__EW_PAR_MIN)
    for (p = 0; p < N * C; p++) {
        int64_t i;
        float v = e[p], *r = x + p * HW;
        for (i = 0; i < HW; i++) r[i] += v;
    }
}

BDAPI void bd_add_channel_backward(float *de, const float *dout, int64_t N, int64_t C,
                                   int64_t HW) {
    int64_t p;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && N * C * HW >= BD__EW_PAR_MIN)
    for (p = 0; p < N * C; p++) {
        int64_t i;
        const float *r = dout + p * HW;
        double s = 0.0;
        for (i = 0; i < HW; i++) s += r[i];
        de[p] += (float)s;
    }
}

/* elementwise loops split in blocks of BD__EW_BLOCK over threads */
#define BD__EW_BLOCK 4096
BDAPI void bd_add_forward(float *out, const float *a, const float *b, int64_t n) {
    int64_t t, nb = (n + BD__EW_BLOCK - 1) / BD__EW_BLOCK;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && nb > 1)
    for (t = 0; t < nb; t++) {
        int64_t i, i1 = (t + 1) * BD__EW_BLOCK < n ? (t + 1) * BD__EW_BLOCK : n;
        for (i = t * BD__EW_BLOCK; i < i1; i++) out[i] = a[i] + b[i];
    }
}

BDAPI void bd_add_backward(float *da, float *db, const float *dout, int64_t n) {
    int64_t t, nb = (n + BD__EW_BLOCK - 1) / BD__EW_BLOCK;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && nb > 1)
    for (t = 0; t < nb; t++) {
        int64_t i, i1 = (t + 1) * BD__EW_BLOCK < n ? (t + 1) * BD__EW_BLOCK : n;
        if (da) for (i = t * BD__EW_BLOCK; i < i1; i++) da[i] += dout[i];
        if (db) for (i = t * BD__EW_BLOCK; i < i1; i++) db[i] += dout[i];
    }
}

/* Attention, per (n, head): Q, K, V are (Ch, HW) row-major blocks of qkv.
   S = Q^T K / sqrt(Ch) (HW, HW) -> row softmax (max subtracted) = A;
   O = V A^T (Ch, HW). */
#ifdef BDENSE_REFERENCE_KERNELS
static BD__UNUSED void bd__attention_forward_ref(float *out, float *att, const float *qkv, int64_t N, int64_t C,
                                int64_t HW, int64_t heads) {
    int64_t Ch = C / heads, n, h, i, j;
    float scale = (float)(1.0 / sqrt((double)Ch));
    for (n = 0; n < N; n++)
        for (h = 0; h < heads; h++) {
            const float *q = qkv + (n * 3 * C + h * Ch) * HW;
            const float *kk = q + C * HW;
            const float *v = kk + C * HW;
            float *a = att + (n * heads + h) * HW * HW;
            bd_sgemm(1, 0, HW, HW, Ch, scale, q, HW, kk, HW, 0.0f, a, HW);
            for (i = 0; i < HW; i++) {
                float *r = a + i * HW, m = r[0];
                double s = 0.0;
                float inv;
                for (j = 1; j < HW; j++) if (r[j] > m) m = r[j];
                for (j = 0; j < HW; j++) {
                    r[j] = expf(r[j] - m);
                    s += r[j];
                }
                inv = (float)(1.0 / s);
                for (j = 0; j < HW; j++) r[j] *= inv;
            }
            bd_sgemm(0, 1, Ch, HW, HW, 1.0f, v, HW, a, HW, 0.0f, out + (n * C + h * Ch) * HW, HW);
        }
}

/* dV += dO A;  dA = dO^T V;  dS = A * (dA - rowsum(dA * A)) / sqrt(Ch);
   dQ += K dS^T;  dK += Q dS.  scratch holds dA, then dS. */
static BD__UNUSED void bd__attention_backward_ref(float *dqkv, float *scratch, const float *dout,
                                 const float *qkv, const float *att, int64_t N, int64_t C,
                                 int64_t HW, int64_t heads) {
    int64_t Ch = C / heads, n, h, i, j;
    float scale = (float)(1.0 / sqrt((double)Ch));
    for (n = 0; n < N; n++)
        for (h = 0; h < heads; h++) {
            const float *q = qkv + (n * 3 * C + h * Ch) * HW;
            const float *kk = q + C * HW;
            const float *v = kk + C * HW;
            float *dq = dqkv + (n * 3 * C + h * Ch) * HW;
            float *dk = dq + C * HW;
            float *dv = dk + C * HW;
            const float *a = att + (n * heads + h) * HW * HW;
            const float *dO = dout + (n * C + h * Ch) * HW;
            bd_sgemm(0, 0, Ch, HW, HW, 1.0f, dO, HW, a, HW, 1.0f, dv, HW);
            bd_sgemm(1, 0, HW, HW, Ch, 1.0f, dO, HW, v, HW, 0.0f, scratch, HW);
            for (i = 0; i < HW; i++) {
                float *r = scratch + i * HW;
                const float *ar = a + i * HW;
                double s = 0.0;
                float sf;
                for (j = 0; j < HW; j++) s += (double)r[j] * ar[j];
                sf = (float)s;
                for (j = 0; j < HW; j++) r[j] = ar[j] * (r[j] - sf) * scale;
            }
            bd_sgemm(0, 1, Ch, HW, HW, 1.0f, kk, HW, scratch, HW, 1.0f, dq, HW);
            bd_sgemm(0, 0, Ch, HW, HW, 1.0f, q, HW, scratch, HW, 1.0f, dk, HW);
        }
}
#endif

/* ---- fast attention ----
   One (sample, head) pair per work item, in parallel; the two products of
   the forward and the four of the backward run on the packed GEMM (Q^T and
   the transposes are just other pack functions).  Backward items need their
   own dA/dS scratch: up to BD__ATT_STACK floats it lives on each thread's
   stack; beyond that the caller's scratch is used and items run in turn. */
#define BD__ATT_STACK 4096
static void bd__softmax_rows(float *a, int64_t rows, int64_t n) {
    int64_t i, j;
    for (i = 0; i < rows; i++) {
        float *r = a + i * n, m = r[0], inv;
        double s = 0.0;
        for (j = 1; j < n; j++) m = r[j] > m ? r[j] : m;
        for (j = 0; j < n; j++) r[j] = bd__expf(r[j] - m);
        s = bd__sum8(r, n);
        inv = (float)(1.0 / s);
        for (j = 0; j < n; j++) r[j] *= inv;
    }
}
static void bd__gsrc_plain(bd__gsrc *s, const float *p, int64_t ld, int colmajor) {
    memset(s, 0, sizeof *s);
    s->p = p;
    s->ld = ld;
    s->pack = colmajor ? bd__pack_colmajor : bd__pack_rowmajor;
}
/* one (n, h) item of the forward, query positions i0..i1-1 (rows of S and
   A, columns of O: the GEMM sums every element in the same order whatever
   the split) */
static void bd__att_fwd_item(float *o, float *a, const float *q, const float *kk, const float *v,
                             int64_t Ch, int64_t HW, int64_t i0, int64_t i1, float scale, float *buf) {
    bd__gsrc sa, sb;
    int64_t c;
    /* S (HW,HW) = scale Q^T K: A(i,c) = q[c*HW+i], B(c,j) = k[c*HW+j] */
    memset(a + i0 * HW, 0, (size_t)((i1 - i0) * HW) * sizeof(float));
    bd__gsrc_plain(&sa, q, HW, 1);
    bd__gsrc_plain(&sb, kk, HW, 1);
    bd__gemm_run(&sa, i0, &sb, 0, i1 - i0, HW, Ch, scale, a + i0 * HW, HW, buf);
    bd__softmax_rows(a + i0 * HW, i1 - i0, HW);
    /* O (Ch,HW) = V A^T: A(c,j) = v[c*HW+j], B(j,i) = a[i*HW+j] */
    for (c = 0; c < Ch; c++) memset(o + c * HW + i0, 0, (size_t)(i1 - i0) * sizeof(float));
    bd__gsrc_plain(&sa, v, HW, 0);
    bd__gsrc_plain(&sb, a, HW, 0);
    bd__gemm_run(&sa, 0, &sb, i0, Ch, i1 - i0, HW, 1.0f, o + i0, HW, buf);
}
static void bd__att_bwd_item(float *dq, float *dk, float *dv, float *sc, const float *dO,
                             const float *q, const float *kk, const float *v, const float *a,
                             int64_t Ch, int64_t HW, float scale, float *buf) {
    bd__gsrc sa, sb;
    int64_t i, j;
    /* dV += dO A: A(c,i) = dO[c*HW+i], B(i,j) = a[i*HW+j] */
    bd__gsrc_plain(&sa, dO, HW, 0);
    bd__gsrc_plain(&sb, a, HW, 1);
    bd__gemm_run(&sa, 0, &sb, 0, Ch, HW, HW, 1.0f, dv, HW, buf);
    /* dA = dO^T V: A(i,c) = dO[c*HW+i], B(c,j) = v[c*HW+j] */
    memset(sc, 0, (size_t)(HW * HW) * sizeof(float));
    bd__gsrc_plain(&sa, dO, HW, 1);
    bd__gsrc_plain(&sb, v, HW, 1);
    bd__gemm_run(&sa, 0, &sb, 0, HW, HW, Ch, 1.0f, sc, HW, buf);
    for (i = 0; i < HW; i++) {
        float *r = sc + i * HW;
        const float *ar = a + i * HW;
        double s = 0.0;
        float sf;
        for (j = 0; j < HW; j++) s += (double)r[j] * ar[j];
        sf = (float)s;
        for (j = 0; j < HW; j++) r[j] = ar[j] * (r[j] - sf) * scale;
    }
    /* dQ += K dS^T: A(c,j) = k[c*HW+j], B(j,i) = dS[i*HW+j] */
    bd__gsrc_plain(&sa, kk, HW, 0);
    bd__gsrc_plain(&sb, sc, HW, 0);
    bd__gemm_run(&sa, 0, &sb, 0, Ch, HW, HW, 1.0f, dq, HW, buf);
    /* dK += Q dS: A(c,i) = q[c*HW+i], B(i,j) = dS[i*HW+j] */
    bd__gsrc_plain(&sa, q, HW, 0);
    bd__gsrc_plain(&sb, sc, HW, 1);
    bd__gemm_run(&sa, 0, &sb, 0, Ch, HW, HW, 1.0f, dk, HW, buf);
}

BDAPI void bd_attention_forward(float *out, float *att, const float *qkv, int64_t N, int64_t C,
                                int64_t HW, int64_t heads) {
    int64_t Ch = C / heads, t, nt = bd__omp_threads(), rs = 1, rb;
    float scale = (float)(1.0 / sqrt((double)Ch));
    /* fewer (sample, head) pairs than threads (batch 1): split the queries */
    if (nt > 1 && N * heads < nt) rs = (nt + N * heads - 1) / (N * heads);
    rb = (HW + rs - 1) / rs;
    rs = (HW + rb - 1) / rb;
    BD__OMP_FOR_IF(nt > 1 && N * heads * rs > 1)
    for (t = 0; t < N * heads * rs; t++) {
        float buf[BD__GEMM_STACK_FLOATS];
        int64_t p = t / rs, n = p / heads, h = p % heads, i0 = (t % rs) * rb;
        const float *q = qkv + (n * 3 * C + h * Ch) * HW;
        bd__att_fwd_item(out + (n * C + h * Ch) * HW, att + p * HW * HW, q, q + C * HW,
                         q + 2 * C * HW, Ch, HW, i0, i0 + rb < HW ? i0 + rb : HW, scale, buf);
    }
}

BDAPI void bd_attention_backward(float *dqkv, float *scratch, const float *dout,
                                 const float *qkv, const float *att, int64_t N, int64_t C,
                                 int64_t HW, int64_t heads) {
    int64_t Ch = C / heads, t;
    float scale = (float)(1.0 / sqrt((double)Ch));
    int small = HW * HW <= BD__ATT_STACK;
    BD__OMP_FOR_IF(bd__omp_threads() > 1 && small && N * heads > 1)
    for (t = 0; t < N * heads; t++) {
        float buf[BD__GEMM_STACK_FLOATS], sbuf[BD__ATT_STACK];
        int64_t n = t / heads, h = t % heads;
        const float *q = qkv + (n * 3 * C + h * Ch) * HW;
        float *dq = dqkv + (n * 3 * C + h * Ch) * HW;
        bd__att_bwd_item(dq, dq + C * HW, dq + 2 * C * HW, small ? sbuf : scratch,
                         dout + (n * C + h * Ch) * HW, q, q + C * HW, q + 2 * C * HW,
                         att + t * HW * HW, Ch, HW, scale, buf);
    }
}

/* Frequencies and angles in double: c_noise goes up to 1000, where a float
   angle would already be off by ~1e-4 rad. */
BDAPI void bd_timestep_embedding_forward(float *out, const float *c_noise, int64_t N,
                                         int64_t dim) {
    int64_t half = dim / 2, n, i;
    for (n = 0; n < N; n++) {
        double c = c_noise[n];
        for (i = 0; i < half; i++) {
            double f = exp(-log(10000.0) * (double)i / (double)half);
            out[n * dim + i] = (float)cos(c * f);
            out[n * dim + half + i] = (float)sin(c * f);
        }
        for (i = 2 * half; i < dim; i++) out[n * dim + i] = 0.0f; /* odd dim: pad */
    }
}

BDAPI double bd_mse_forward(const float *pred, const float *target, const float *w, int64_t N,
                            int64_t D) {
    int64_t n, d;
    double total = 0.0;
    if (N <= 0 || D <= 0) return 0.0;
    for (n = 0; n < N; n++) {
        double s = 0.0;
        for (d = 0; d < D; d++) {
            double e = (double)pred[n * D + d] - (double)target[n * D + d];
            s += e * e;
        }
        total += (w ? (double)w[n] : 1.0) * s / (double)D;
    }
    return total / (double)N;
}

BDAPI void bd_mse_backward(float *dpred, const float *pred, const float *target,
                           const float *w, int64_t N, int64_t D) {
    int64_t n, d;
    if (N <= 0 || D <= 0) return;
    for (n = 0; n < N; n++) {
        float c = (float)(2.0 * (w ? (double)w[n] : 1.0) / ((double)N * (double)D));
        for (d = 0; d < D; d++) dpred[n * D + d] += c * (pred[n * D + d] - target[n * D + d]);
    }
}

BDAPI double bd_cross_entropy_forward(float *prob, const float *logits, const int32_t *labels,
                                      int64_t N, int64_t C) {
    int64_t n, c;
    double total = 0.0;
    if (N <= 0 || C <= 0) return 0.0;
    for (n = 0; n < N; n++) {
        const float *l = logits + n * C;
        double m = (double)l[0], s = 0.0, lse;
        for (c = 1; c < C; c++)
            if ((double)l[c] > m) m = (double)l[c];
        for (c = 0; c < C; c++) s += exp((double)l[c] - m);
        lse = log(s) + m;
        if (prob)
            for (c = 0; c < C; c++) prob[n * C + c] = (float)exp((double)l[c] - lse);
        if (labels[n] < 0 || (int64_t)labels[n] >= C) total += NAN;
        else total += lse - (double)l[labels[n]];
    }
    return total / (double)N;
}

BDAPI void bd_cross_entropy_backward(float *dlogits, const float *logits,
                                     const int32_t *labels, int64_t N, int64_t C) {
    int64_t n, c;
    double inv;
    if (N <= 0 || C <= 0) return;
    inv = 1.0 / (double)N;
    for (n = 0; n < N; n++) {
        const float *l = logits + n * C;
        double m = (double)l[0], s = 0.0, lse;
        if (labels[n] < 0 || (int64_t)labels[n] >= C) continue;
        for (c = 1; c < C; c++)
            if ((double)l[c] > m) m = (double)l[c];
        for (c = 0; c < C; c++) s += exp((double)l[c] - m);
        lse = log(s) + m;
        for (c = 0; c < C; c++)
            dlogits[n * C + c] += (float)((exp((double)l[c] - lse) - (c == labels[n] ? 1.0 : 0.0)) * inv);
    }
}

/* LAYERS-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>backend                                                                */
/* ------------------------------------------------------------------------ */
BDAPI void bd_vec_axpby(float *out, int64_t ldo, const float *x, int64_t ldx, const float *a,
                        float sa, const float *y, int64_t ldy, const float *b, float sb,
                        int64_t N, int64_t D) {
    int64_t n, d;
    for (n = 0; n < N; n++) {
        float ca = sa * (a ? a[n] : 1.0f), cb = sb * (b ? b[n] : 1.0f);
        float *o = out + n * ldo;
        const float *xr = x + n * ldx;
        if (y) {
            const float *yr = y + n * ldy;
            for (d = 0; d < D; d++) o[d] = ca * xr[d] + cb * yr[d];
        } else {
            for (d = 0; d < D; d++) o[d] = ca * xr[d];
        }
    }
}

BDAPI void bd_vec_fill(float *out, float value, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) out[i] = value;
}

BDAPI void bd_vec_adam(float *p, const float *g, float *m, float *v, int64_t n,
                       const bd_vec_adam_args *a) {
    int64_t i;
    double decay = 1.0 - a->lr * a->weight_decay, step = a->lr / a->bias_c1;
    double sq2 = sqrt(a->bias_c2);
    for (i = 0; i < n; i++) {
        double gi = a->grad_scale * (double)g[i];
        double mi = a->beta1 * (double)m[i] + (1.0 - a->beta1) * gi;
        double vi = a->beta2 * (double)v[i] + (1.0 - a->beta2) * gi * gi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)((double)p[i] * decay - step * mi / (sqrt(vi) / sq2 + a->eps));
    }
}

BDAPI void bd_vec_ema(float *ema, const float *p, int64_t n, double decay) {
    int64_t i;
    for (i = 0; i < n; i++) ema[i] = (float)(decay * (double)ema[i] + (1.0 - decay) * (double)p[i]);
}

BDAPI double bd_vec_sumsq(const float *x, int64_t n) {
    int64_t i;
    double s = 0.0;
    for (i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

/* CPU table entries: the bd_ kernels behind the unused state argument. */
static bd_result bd__cpu_buffer_alloc(void *st, bd_context *ctx, size_t bytes, void **out) {
    (void)st;
    if (!out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "buffer_alloc: out is NULL");
    *out = bd_alloc(ctx, bytes);
    return *out ? BD_SUCCESS : ctx->last_result;
}
static void bd__cpu_buffer_free(void *st, bd_context *ctx, void *p) { (void)st; bd_free(ctx, p); }
static bd_result bd__cpu_buffer_zero(void *st, bd_context *ctx, void *p, size_t bytes) {
    (void)st; (void)ctx;
    if (bytes) memset(p, 0, bytes);
    return BD_SUCCESS;
}
static bd_result bd__cpu_copy(void *st, bd_context *ctx, void *dst, const void *src, size_t bytes) {
    (void)st; (void)ctx;
    if (bytes && dst != src) memmove(dst, src, bytes);
    return BD_SUCCESS;
}
static bd_result bd__cpu_sync(void *st, bd_context *ctx) { (void)st; (void)ctx; return BD_SUCCESS; }
static void bd__cpu_sgemm(void *st, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                          float *C, int64_t ldc) {
    (void)st;
    bd_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
static void bd__cpu_linear_forward(void *st, float *out, const float *x, const float *w,
                                   const float *b, int64_t N, int64_t In, int64_t Out) {
    (void)st;
    bd_linear_forward(out, x, w, b, N, In, Out);
}
static void bd__cpu_linear_backward(void *st, float *dx, float *dw, float *db, const float *dout,
                                    const float *x, const float *w, int64_t N, int64_t In,
                                    int64_t Out) {
    (void)st;
    bd_linear_backward(dx, dw, db, dout, x, w, N, In, Out);
}
static void bd__cpu_silu_forward(void *st, float *out, const float *x, int64_t n) {
    (void)st;
    bd_silu_forward(out, x, n);
}
static void bd__cpu_silu_backward(void *st, float *dx, const float *dout, const float *x, int64_t n) {
    (void)st;
    bd_silu_backward(dx, dout, x, n);
}
static void bd__cpu_conv2d_forward(void *st, float *out, float *col, const float *x, const float *w,
                                   const float *b, int64_t N, int64_t Cin, int64_t H, int64_t W,
                                   int64_t Cout, int64_t k, int64_t s, int64_t p) {
    (void)st;
    bd_conv2d_forward(out, col, x, w, b, N, Cin, H, W, Cout, k, s, p);
}
static void bd__cpu_conv2d_backward(void *st, float *dx, float *dw, float *db, float *col,
                                    const float *dout, const float *x, const float *w, int64_t N,
                                    int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t k,
                                    int64_t s, int64_t p) {
    (void)st;
    bd_conv2d_backward(dx, dw, db, col, dout, x, w, N, Cin, H, W, Cout, k, s, p);
}
static void bd__cpu_groupnorm_forward(void *st, float *out, float *mean, float *rstd,
                                      const float *x, const float *gamma, const float *beta,
                                      int64_t N, int64_t C, int64_t HW, int64_t G) {
    (void)st;
    bd_groupnorm_forward(out, mean, rstd, x, gamma, beta, N, C, HW, G);
}
static void bd__cpu_groupnorm_backward(void *st, float *dx, float *dgamma, float *dbeta,
                                       const float *dout, const float *x, const float *mean,
                                       const float *rstd, const float *gamma, int64_t N,
                                       int64_t C, int64_t HW, int64_t G) {
    (void)st;
    bd_groupnorm_backward(dx, dgamma, dbeta, dout, x, mean, rstd, gamma, N, C, HW, G);
}
static void bd__cpu_upsample2x_forward(void *st, float *out, const float *x, int64_t N, int64_t C,
                                       int64_t H, int64_t W) {
    (void)st;
    bd_upsample2x_forward(out, x, N, C, H, W);
}
static void bd__cpu_upsample2x_backward(void *st, float *dx, const float *dout, int64_t N,
                                        int64_t C, int64_t H, int64_t W) {
    (void)st;
    bd_upsample2x_backward(dx, dout, N, C, H, W);
}
static void bd__cpu_concat_forward(void *st, float *out, const float *a, const float *b, int64_t N,
                                   int64_t C1, int64_t C2, int64_t HW) {
    (void)st;
    bd_concat_forward(out, a, b, N, C1, C2, HW);
}
static void bd__cpu_concat_backward(void *st, float *da, float *db, const float *dout, int64_t N,
                                    int64_t C1, int64_t C2, int64_t HW) {
    (void)st;
    bd_concat_backward(da, db, dout, N, C1, C2, HW);
}
static void bd__cpu_add_channel_forward(void *st, float *x, const float *e, int64_t N, int64_t C,
                                        int64_t HW) {
    (void)st;
    bd_add_channel_forward(x, e, N, C, HW);
}
static void bd__cpu_add_channel_backward(void *st, float *de, const float *dout, int64_t N,
                                         int64_t C, int64_t HW) {
    (void)st;
    bd_add_channel_backward(de, dout, N, C, HW);
}
static void bd__cpu_add_forward(void *st, float *out, const float *a, const float *b, int64_t n) {
    (void)st;
    bd_add_forward(out, a, b, n);
}
static void bd__cpu_add_backward(void *st, float *da, float *db, const float *dout, int64_t n) {
    (void)st;
    bd_add_backward(da, db, dout, n);
}
static void bd__cpu_attention_forward(void *st, float *out, float *att, const float *qkv,
                                      int64_t N, int64_t C, int64_t HW, int64_t heads) {
    (void)st;
    bd_attention_forward(out, att, qkv, N, C, HW, heads);
}
static void bd__cpu_attention_backward(void *st, float *dqkv, float *scratch, const float *dout,
                                       const float *qkv, const float *att, int64_t N, int64_t C,
                                       int64_t HW, int64_t heads) {
    (void)st;
    bd_attention_backward(dqkv, scratch, dout, qkv, att, N, C, HW, heads);
}
static void bd__cpu_timestep_embedding_forward(void *st, float *out, const float *c_noise,
                                               int64_t N, int64_t dim) {
    (void)st;
    bd_timestep_embedding_forward(out, c_noise, N, dim);
}
static double bd__cpu_mse_forward(void *st, const float *pred, const float *target, const float *w,
                                  int64_t N, int64_t D) {
    (void)st;
    return bd_mse_forward(pred, target, w, N, D);
}
static void bd__cpu_mse_backward(void *st, float *dpred, const float *pred, const float *target,
                                 const float *w, int64_t N, int64_t D) {
    (void)st;
    bd_mse_backward(dpred, pred, target, w, N, D);
}
static void bd__cpu_vec_axpby(void *st, float *out, int64_t ldo, const float *x, int64_t ldx,
                              const float *a, float sa, const float *y, int64_t ldy,
                              const float *b, float sb, int64_t N, int64_t D) {
    (void)st;
    bd_vec_axpby(out, ldo, x, ldx, a, sa, y, ldy, b, sb, N, D);
}
static void bd__cpu_vec_fill(void *st, float *out, float value, int64_t n) {
    (void)st;
    bd_vec_fill(out, value, n);
}
static void bd__cpu_vec_adam(void *st, float *p, const float *g, float *m, float *v, int64_t n,
                             const bd_vec_adam_args *args) {
    (void)st;
    bd_vec_adam(p, g, m, v, n, args);
}
static void bd__cpu_vec_ema(void *st, float *ema, const float *p, int64_t n, double decay) {
    (void)st;
    bd_vec_ema(ema, p, n, decay);
}
static double bd__cpu_vec_sumsq(void *st, const float *x, int64_t n) {
    (void)st;
    return bd_vec_sumsq(x, n);
}
static void bd__cpu_groupnorm_silu_forward(void *st, float *out, float *mean, float *rstd,
                                           const float *x, const float *gamma, const float *beta,
                                           int64_t N, int64_t C, int64_t HW, int64_t G) {
    (void)st;
    bd_groupnorm_silu_forward(out, mean, rstd, x, gamma, beta, N, C, HW, G);
}
static void bd__cpu_groupnorm_silu_backward(void *st, float *dx, float *dgamma, float *dbeta,
                                            const float *dout, const float *x, const float *mean,
                                            const float *rstd, const float *gamma,
                                            const float *beta, int64_t N, int64_t C, int64_t HW,
                                            int64_t G) {
    (void)st;
    bd_groupnorm_silu_backward(dx, dgamma, dbeta, dout, x, mean, rstd, gamma, beta, N, C, HW, G);
}

/* Positional initialiser: the order is the field order of struct bd_backend. */
static const bd_backend bd__cpu_backend = {
    "cpu", 0, NULL, NULL,
    bd__cpu_buffer_alloc, bd__cpu_buffer_free, bd__cpu_buffer_zero,
    bd__cpu_copy, bd__cpu_copy, bd__cpu_copy, bd__cpu_sync,
    bd__cpu_sgemm,
    bd__cpu_linear_forward, bd__cpu_linear_backward,
    bd__cpu_silu_forward, bd__cpu_silu_backward,
    bd__cpu_conv2d_forward, bd__cpu_conv2d_backward,
    bd__cpu_groupnorm_forward, bd__cpu_groupnorm_backward,
    bd__cpu_upsample2x_forward, bd__cpu_upsample2x_backward,
    bd__cpu_concat_forward, bd__cpu_concat_backward,
    bd__cpu_add_channel_forward, bd__cpu_add_channel_backward,
    bd__cpu_add_forward, bd__cpu_add_backward,
    bd__cpu_attention_forward, bd__cpu_attention_backward,
    bd__cpu_timestep_embedding_forward,
    bd__cpu_mse_forward, bd__cpu_mse_backward,
    bd__cpu_vec_axpby, bd__cpu_vec_fill, bd__cpu_vec_adam, bd__cpu_vec_ema, bd__cpu_vec_sumsq,
    bd__cpu_groupnorm_silu_forward, bd__cpu_groupnorm_silu_backward};

static const bd_backend *bd__backend_cpu(void) { return &bd__cpu_backend; }
BDAPI const bd_backend *bd_backend_cpu(void) { return &bd__cpu_backend; }

BDAPI bd_result bd_context_set_backend(bd_context *ctx, bd_backend *be) {
    const bd_backend *cpu = &bd__cpu_backend;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!be) {
        ctx->backend = cpu;
        return BD_SUCCESS;
    }
    /* check first (so a refused table is left untouched), then fill */
#define BD__BE_CHECK(op)                                                                      \
    if (!be->op && be->device_memory)                                                         \
        return bd_error(ctx, BD_ERROR_UNSUPPORTED,                                            \
                        "backend '%s' has device memory but no '" #op "' entry",             \
                        be->name ? be->name : "?");
#define BD__BE_FILL(op) if (!be->op) be->op = cpu->op;
#define BD__BE_ENTRIES(X)                                                                      \
    X(buffer_alloc) X(buffer_free) X(buffer_zero) X(copy_h2d) X(copy_d2h) X(copy_d2d) X(sync)  \
    X(sgemm) X(linear_forward) X(linear_backward) X(silu_forward) X(silu_backward)             \
    X(conv2d_forward) X(conv2d_backward) X(groupnorm_forward) X(groupnorm_backward)            \
    X(upsample2x_forward) X(upsample2x_backward) X(concat_forward) X(concat_backward)          \
    X(add_channel_forward) X(add_channel_backward) X(add_forward) X(add_backward)              \
    X(attention_forward) X(attention_backward) X(timestep_embedding_forward)                   \
    X(mse_forward) X(mse_backward) X(vec_axpby) X(vec_fill) X(vec_adam) X(vec_ema) X(vec_sumsq) \
    X(groupnorm_silu_forward) X(groupnorm_silu_backward)
    BD__BE_ENTRIES(BD__BE_CHECK)
    BD__BE_ENTRIES(BD__BE_FILL)
#undef BD__BE_CHECK
#undef BD__BE_FILL
#undef BD__BE_ENTRIES
    ctx->backend = be;
    return BD_SUCCESS;
}

BDAPI int bd_backend_on_device(const bd_context *ctx) {
    return ctx && ctx->backend && ctx->backend->device_memory;
}

BDAPI bd_result bd_backend_alloc(bd_context *ctx, size_t bytes, void **out) {
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    return ctx->backend->buffer_alloc(ctx->backend->state, ctx, bytes, out);
}
BDAPI void bd_backend_free(bd_context *ctx, void *ptr) {
    if (ctx && ptr) ctx->backend->buffer_free(ctx->backend->state, ctx, ptr);
}
BDAPI bd_result bd_backend_zero(bd_context *ctx, void *ptr, size_t bytes) {
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!bytes) return BD_SUCCESS;
    if (!ptr) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_backend_zero: NULL buffer");
    return ctx->backend->buffer_zero(ctx->backend->state, ctx, ptr, bytes);
}
BDAPI bd_result bd_backend_upload(bd_context *ctx, void *dst, const void *src, size_t bytes) {
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!bytes) return BD_SUCCESS;
    if (!dst || !src) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_backend_upload: NULL pointer");
    return ctx->backend->copy_h2d(ctx->backend->state, ctx, dst, src, bytes);
}
BDAPI bd_result bd_backend_download(bd_context *ctx, void *dst, const void *src, size_t bytes) {
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!bytes) return BD_SUCCESS;
    if (!dst || !src) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_backend_download: NULL pointer");
    return ctx->backend->copy_d2h(ctx->backend->state, ctx, dst, src, bytes);
}
BDAPI bd_result bd_backend_copy(bd_context *ctx, void *dst, const void *src, size_t bytes) {
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!bytes) return BD_SUCCESS;
    if (!dst || !src) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_backend_copy: NULL pointer");
    return ctx->backend->copy_d2d(ctx->backend->state, ctx, dst, src, bytes);
}
BDAPI bd_result bd_backend_sync(bd_context *ctx) {
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    return ctx->backend->sync(ctx->backend->state, ctx);
}

BDAPI bd_result bd_backend_transfer(bd_context *dst_ctx, void *dst, bd_context *src_ctx,
                                    const void *src, size_t bytes) {
    int dd, sd;
    void *bounce;
    bd_result r;
    if (!dst_ctx || !src_ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!bytes) return BD_SUCCESS;
    if (!dst || !src) return bd_error(dst_ctx, BD_ERROR_INVALID_ARGUMENT, "bd_backend_transfer: NULL pointer");
    dd = bd_backend_on_device(dst_ctx);
    sd = bd_backend_on_device(src_ctx);
    if (!dd && !sd) {
        memmove(dst, src, bytes);
        return BD_SUCCESS;
    }
    if (!sd) return bd_backend_upload(dst_ctx, dst, src, bytes);
    if (!dd) return bd_backend_download(src_ctx, dst, src, bytes);
    if (dst_ctx == src_ctx) return bd_backend_copy(dst_ctx, dst, src, bytes);
    bounce = bd_alloc(dst_ctx, bytes);
    if (!bounce) return dst_ctx->last_result;
    r = bd_backend_download(src_ctx, bounce, src, bytes);
    if (r == BD_SUCCESS) r = bd_backend_upload(dst_ctx, dst, bounce, bytes);
    bd_free(dst_ctx, bounce);
    return r;
}

/* BACKEND-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>denoiser                                                               */
/* ------------------------------------------------------------------------ */
BDAPI bd_result bd_denoiser_reserve(bd_denoiser *d, int64_t max_batch) {
    if (!d || !d->vt) return BD_ERROR_INVALID_ARGUMENT;
    if (max_batch < 1) return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "reserve: max_batch must be >= 1");
    if (max_batch <= d->reserved_batch) return BD_SUCCESS;
    return d->vt->reserve(d, max_batch);
}

BDAPI bd_result bd_denoiser_forward(bd_denoiser *d, float *out, const float *z, const float *t,
                                    int64_t n, int train) {
    bd_result r;
    if (!d || !d->vt) return BD_ERROR_INVALID_ARGUMENT;
    if (!out || !z || !t) return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "denoiser forward: NULL pointer");
    if (n < 1) return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "denoiser forward: batch %lld < 1", (long long)n);
    if (n > d->reserved_batch && (r = bd_denoiser_reserve(d, n)) != BD_SUCCESS) return r;
    {
        int prev = bd__threads_enter(d->ctx);
        r = d->vt->forward(d, out, z, t, n, train);
        bd__threads_leave(prev);
        return r;
    }
}

BDAPI bd_result bd_denoiser_backward(bd_denoiser *d, float *dz, const float *dout, int64_t n) {
    if (!d || !d->vt) return BD_ERROR_INVALID_ARGUMENT;
    if (!dout) return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "denoiser backward: NULL dout");
    if (n < 1 || n > d->reserved_batch)
        return bd_error(d->ctx, BD_ERROR_STATE, "denoiser backward: batch %lld does not match the reserved caches", (long long)n);
    {
        int prev = bd__threads_enter(d->ctx);
        bd_result r = d->vt->backward(d, dz, dout, n);
        bd__threads_leave(prev);
        return r;
    }
}

BDAPI bd_result bd_denoiser_create_like(const bd_denoiser *d, int64_t branches, bd_rng *rng,
                                        bd_denoiser **out) {
    if (!d || !d->vt || !out || !rng) return d ? bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "create_like: NULL argument") : BD_ERROR_INVALID_ARGUMENT;
    if (branches < 1 || branches > 64) return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "create_like: branches %lld not in 1..64", (long long)branches);
    return d->vt->create_like(d, branches, rng, out);
}

BDAPI void bd_denoiser_free(bd_denoiser *d) {
    if (d && d->vt) d->vt->destroy(d);
}

BDAPI void bd_denoiser_zero_grad(bd_denoiser *d) {
    /* through the backend: the grads may be device memory */
    if (d && d->grads) bd_backend_zero(d->ctx, d->grads, (size_t)d->n_params * sizeof(float));
}

BDAPI int64_t bd_denoiser_sample_size(const bd_denoiser *d) {
    return d ? d->in_ch * d->height * d->width : 0;
}

BDAPI const bd_param_tensor *bd_denoiser_find_tensor(const bd_denoiser *d, const char *name) {
    int64_t i;
    if (!d || !name) return NULL;
    for (i = 0; i < d->n_tensors; i++)
        if (strcmp(d->tensors[i].name, name) == 0) return &d->tensors[i];
    return NULL;
}

BDAPI bd_result bd_denoiser_copy_weights(bd_denoiser *dst, const bd_denoiser *src) {
    int64_t i, j;
    if (!dst) return BD_ERROR_INVALID_ARGUMENT;
    if (!src) return bd_error(dst->ctx, BD_ERROR_INVALID_ARGUMENT, "copy_weights: NULL source");
    if (dst->n_tensors != src->n_tensors)
        return bd_error(dst->ctx, BD_ERROR_SHAPE, "copy_weights: %lld tensors vs %lld",
                        (long long)dst->n_tensors, (long long)src->n_tensors);
    for (i = 0; i < dst->n_tensors; i++) {
        const bd_param_tensor *dt = &dst->tensors[i];
        const bd_param_tensor *st = bd_denoiser_find_tensor(src, dt->name);
        int same = st && st->ndim == dt->ndim, tile = 0;
        if (!st) return bd_error(dst->ctx, BD_ERROR_SHAPE, "copy_weights: source has no tensor %s", dt->name);
        for (j = 0; same && j < dt->ndim; j++) same = st->shape[j] == dt->shape[j];
        if (!same && st->ndim == dt->ndim && st->shape[0] > 0 && dt->shape[0] % st->shape[0] == 0 &&
            dt->numel == st->numel * (dt->shape[0] / st->shape[0])) {
            tile = 1;
            for (j = 1; j < dt->ndim; j++) tile = tile && st->shape[j] == dt->shape[j];
        }
        if (same) {
            memcpy(dst->params + dt->offset, src->params + st->offset, (size_t)dt->numel * sizeof(float));
        } else if (tile) {
            int64_t reps = dt->shape[0] / st->shape[0], k;
            for (k = 0; k < reps; k++)
                memcpy(dst->params + dt->offset + k * st->numel, src->params + st->offset,
                       (size_t)st->numel * sizeof(float));
        } else {
            return bd_error(dst->ctx, BD_ERROR_SHAPE, "copy_weights: tensor %s has incompatible shapes", dt->name);
        }
    }
    return BD_SUCCESS;
}

/* MLP denoiser.  Parameter order in the slab (and the tensor table):
   time_mlp.0, time_mlp.2, layers.0..depth-1, out (weight then bias each).
   Activation slab per reserved batch B: c_noise (B), emb (B,E), t1, t1s,
   temb (B,H), a_l and s_l = SiLU(a_l) for every layer (depth*B*H each), a
   copy of z (B,D), and three (B,H) gradient scratch buffers. */
typedef struct bd__mlp {
    bd_mlp_config cfg;
    float *act; /* activation slab */
    float *cn, *emb, *t1, *t1s, *temb, *a, *s, *zc, *d1, *d2, *dtemb;
    int64_t train_n; /* batch of the last train forward, 0 = no caches */
} bd__mlp;

BDAPI bd_mlp_config bd_mlp_config_init(int64_t dim) {
    bd_mlp_config c;
    memset(&c, 0, sizeof c);
    c.dim = dim;
    c.hidden = 128;
    c.depth = 3;
    c.temb_dim = 32;
    c.branches = 1;
    return c;
}

/* offsets of tensor j in the table: 0,1 time_mlp.0 w/b; 2,3 time_mlp.2;
   4+2l, 5+2l layers.l; 4+2L, 5+2L out */
static float *bd__mlp_p(bd_denoiser *d, float *base, int64_t j) { return base + d->tensors[j].offset; }

static bd_result bd__mlp_reserve(bd_denoiser *d, int64_t B) {
    bd__mlp *m = BD__CAST(bd__mlp *, d->impl);
    int64_t H = m->cfg.hidden, E = m->cfg.temb_dim, D = m->cfg.dim, L = m->cfg.depth;
    int64_t per = 1 + E + 3 * H + 2 * L * H + D + 3 * H; /* floats per row */
    float *p;
    if (B > (int64_t)(((size_t)INT64_MAX / sizeof(float)) / (size_t)per))
        return bd_error(d->ctx, BD_ERROR_OVERFLOW, "mlp reserve: batch %lld too large", (long long)B);
    p = BD__CAST(float *, bd_alloc_array(d->ctx, (size_t)(B * per), sizeof(float)));
    if (!p) return d->ctx->last_result;
    bd_free(d->ctx, m->act);
    m->act = p;
    memset(p, 0, (size_t)(B * per) * sizeof(float));
    m->cn = p; p += B;
    m->emb = p; p += B * E;
    m->t1 = p; p += B * H;
    m->t1s = p; p += B * H;
    m->temb = p; p += B * H;
    m->a = p; p += L * B * H;
    m->s = p; p += L * B * H;
    m->zc = p; p += B * D;
    m->d1 = p; p += B * H;
    m->d2 = p; p += B * H;
    m->dtemb = p;
    m->train_n = 0;
    d->reserved_batch = B;
    return BD_SUCCESS;
}

/* docs/spec.md sec. 6 sinusoidal embedding [cos(c f_i), sin(c f_i)], f_i =
   exp(-ln(1e4) i / half); kept local so the MLP depends only on linear and
   SiLU kernels. */
static void bd__mlp_time_embedding(float *out, const float *c_noise, int64_t N, int64_t dim) {
    int64_t n, i, half = dim / 2;
    for (n = 0; n < N; n++)
        for (i = 0; i < half; i++) {
            double f = exp(-log(10000.0) * (double)i / (double)half);
            double a = (double)c_noise[n] * f;
            out[n * dim + i] = (float)cos(a);
            out[n * dim + half + i] = (float)sin(a);
        }
}

static bd_result bd__mlp_forward(bd_denoiser *d, float *out, const float *z, const float *t,
                                 int64_t n, int train) {
    bd__mlp *m = BD__CAST(bd__mlp *, d->impl);
    int64_t H = m->cfg.hidden, E = m->cfg.temb_dim, D = m->cfg.dim, L = m->cfg.depth;
    int64_t KD = m->cfg.branches * D, i, l, B = d->reserved_batch;
    float *P = d->params;
    (void)B;
    for (i = 0; i < n; i++) m->cn[i] = 1000.0f * t[i];
    bd__mlp_time_embedding(m->emb, m->cn, n, E);
    bd_linear_forward(m->t1, m->emb, bd__mlp_p(d, P, 0), bd__mlp_p(d, P, 1), n, E, H);
    bd_silu_forward(m->t1s, m->t1, n * H);
    bd_linear_forward(m->temb, m->t1s, bd__mlp_p(d, P, 2), bd__mlp_p(d, P, 3), n, H, H);
    memcpy(m->zc, z, (size_t)(n * D) * sizeof(float));
    for (l = 0; l < L; l++) {
        float *a = m->a + l * B * H, *s = m->s + l * B * H;
        if (l == 0) bd_linear_forward(a, m->zc, bd__mlp_p(d, P, 4), bd__mlp_p(d, P, 5), n, D, H);
        else bd_linear_forward(a, m->s + (l - 1) * B * H, bd__mlp_p(d, P, 4 + 2 * l), bd__mlp_p(d, P, 5 + 2 * l), n, H, H);
        for (i = 0; i < n * H; i++) a[i] += m->temb[i];
        bd_silu_forward(s, a, n * H);
    }
    bd_linear_forward(out, m->s + (L - 1) * B * H, bd__mlp_p(d, P, 4 + 2 * L), bd__mlp_p(d, P, 5 + 2 * L), n, H, KD);
    m->train_n = train ? n : 0;
    return BD_SUCCESS;
}

static bd_result bd__mlp_backward(bd_denoiser *d, float *dz, const float *dout, int64_t n) {
    bd__mlp *m = BD__CAST(bd__mlp *, d->impl);
    int64_t H = m->cfg.hidden, E = m->cfg.temb_dim, D = m->cfg.dim, L = m->cfg.depth;
    int64_t KD = m->cfg.branches * D, l, B = d->reserved_batch;
    float *P = d->params, *G = d->grads;
    size_t nh = (size_t)(n * H) * sizeof(float);
    if (m->train_n != n)
        return bd_error(d->ctx, BD_ERROR_STATE, "mlp backward: batch %lld has no train-mode forward caches", (long long)n);
    memset(m->dtemb, 0, nh);
    memset(m->d1, 0, nh);
    /* d1 = ds_{L-1} */
    bd_linear_backward(m->d1, bd__mlp_p(d, G, 4 + 2 * L), bd__mlp_p(d, G, 5 + 2 * L), dout,
                       m->s + (L - 1) * B * H, bd__mlp_p(d, P, 4 + 2 * L), n, H, KD);
    for (l = L - 1; l >= 0; l--) {
        memset(m->d2, 0, nh); /* d2 = da_l */
        bd_silu_backward(m->d2, m->d1, m->a + l * B * H, n * H);
        {
            int64_t i; /* temb was added to every layer: its gradient sums */
            for (i = 0; i < n * H; i++) m->dtemb[i] += m->d2[i];
        }
        if (l > 0) {
            memset(m->d1, 0, nh);
            bd_linear_backward(m->d1, bd__mlp_p(d, G, 4 + 2 * l), bd__mlp_p(d, G, 5 + 2 * l), m->d2,
                               m->s + (l - 1) * B * H, bd__mlp_p(d, P, 4 + 2 * l), n, H, H);
        } else {
            bd_linear_backward(dz, bd__mlp_p(d, G, 4), bd__mlp_p(d, G, 5), m->d2, m->zc,
                               bd__mlp_p(d, P, 4), n, D, H);
        }
    }
    memset(m->d1, 0, nh);
    bd_linear_backward(m->d1, bd__mlp_p(d, G, 2), bd__mlp_p(d, G, 3), m->dtemb, m->t1s,
                       bd__mlp_p(d, P, 2), n, H, H);
    memset(m->d2, 0, nh);
    bd_silu_backward(m->d2, m->d1, m->t1, n * H);
    bd_linear_backward(NULL, bd__mlp_p(d, G, 0), bd__mlp_p(d, G, 1), m->d2, m->emb,
                       bd__mlp_p(d, P, 0), n, E, H);
    return BD_SUCCESS;
}

static void bd__mlp_destroy(bd_denoiser *d) {
    bd_context *ctx = d->ctx;
    bd__mlp *m = BD__CAST(bd__mlp *, d->impl);
    if (m) bd_free(ctx, m->act);
    bd_free(ctx, m);
    bd_free(ctx, d->params);
    bd_free(ctx, d->grads);
    bd_free(ctx, d->tensors);
    bd_free(ctx, d);
}

static bd_result bd__mlp_create_like(const bd_denoiser *d, int64_t branches, bd_rng *rng,
                                     bd_denoiser **out) {
    const bd__mlp *m = BD__CAST(const bd__mlp *, d->impl);
    bd_mlp_config c = m->cfg;
    c.branches = branches;
    return bd_mlp_create(d->ctx, &c, rng, out);
}

static const bd_denoiser_vtable bd__mlp_vtable = {
    "mlp", bd__mlp_reserve, bd__mlp_forward, bd__mlp_backward, bd__mlp_create_like, bd__mlp_destroy};

static void bd__tensor_set(bd_param_tensor *pt, const char *name, int ndim, int64_t s0, int64_t s1,
                           int64_t *offset) {
    memset(pt, 0, sizeof *pt);
    snprintf(pt->name, sizeof pt->name, "%s", name);
    pt->ndim = ndim;
    pt->shape[0] = s0;
    pt->shape[1] = ndim > 1 ? s1 : 0;
    pt->numel = ndim > 1 ? s0 * s1 : s0;
    pt->offset = *offset;
    *offset += pt->numel;
}

BDAPI bd_result bd_mlp_create(bd_context *ctx, const bd_mlp_config *config, bd_rng *rng,
                              bd_denoiser **out) {
    bd_denoiser *d;
    bd__mlp *m;
    int64_t H, E, D, L, K, nt, off = 0, l, j;
    char name[80];
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!config || !rng || !out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_mlp_create: NULL argument");
    *out = NULL;
    H = config->hidden; E = config->temb_dim; D = config->dim; L = config->depth; K = config->branches;
    if (D < 1 || H < 1 || L < 1 || L > 64 || E < 2 || E % 2 || K < 1 || K > 64 ||
        D > ((int64_t)1 << 24) || H > ((int64_t)1 << 16) || E > ((int64_t)1 << 16))
        return bd_error(ctx, BD_ERROR_CONFIG,
                        "bd_mlp_create: need dim >= 1, hidden >= 1, depth 1..64, even temb_dim >= 2, branches 1..64 "
                        "(got dim %lld hidden %lld depth %lld temb_dim %lld branches %lld)",
                        (long long)D, (long long)H, (long long)L, (long long)E, (long long)K);
    d = BD__CAST(bd_denoiser *, bd_alloc(ctx, sizeof(bd_denoiser)));
    if (!d) return ctx->last_result;
    memset(d, 0, sizeof *d);
    d->vt = &bd__mlp_vtable;
    d->ctx = ctx;
    d->in_ch = D; d->height = 1; d->width = 1; d->branches = K;
    m = BD__CAST(bd__mlp *, bd_alloc(ctx, sizeof(bd__mlp)));
    nt = 4 + 2 * L + 2;
    d->tensors = BD__CAST(bd_param_tensor *, bd_alloc_array(ctx, (size_t)nt, sizeof(bd_param_tensor)));
    if (!m || !d->tensors) {
        bd_result r = ctx->last_result;
        bd_free(ctx, m);
        bd__mlp_destroy(d);
        return r;
    }
    memset(m, 0, sizeof *m);
    m->cfg = *config;
    d->impl = m;
    d->n_tensors = nt;
    bd__tensor_set(&d->tensors[0], "time_mlp.0.weight", 2, H, E, &off);
    bd__tensor_set(&d->tensors[1], "time_mlp.0.bias", 1, H, 0, &off);
    bd__tensor_set(&d->tensors[2], "time_mlp.2.weight", 2, H, H, &off);
    bd__tensor_set(&d->tensors[3], "time_mlp.2.bias", 1, H, 0, &off);
    for (l = 0; l < L; l++) {
        snprintf(name, sizeof name, "layers.%lld.weight", (long long)l);
        bd__tensor_set(&d->tensors[4 + 2 * l], name, 2, H, l == 0 ? D : H, &off);
        snprintf(name, sizeof name, "layers.%lld.bias", (long long)l);
        bd__tensor_set(&d->tensors[5 + 2 * l], name, 1, H, 0, &off);
    }
    bd__tensor_set(&d->tensors[4 + 2 * L], "out.weight", 2, K * D, H, &off);
    bd__tensor_set(&d->tensors[5 + 2 * L], "out.bias", 1, K * D, 0, &off);
    d->n_params = off;
    d->params = BD__CAST(float *, bd_alloc_array(ctx, (size_t)off, sizeof(float)));
    d->grads = BD__CAST(float *, bd_alloc_array(ctx, (size_t)off, sizeof(float)));
    if (!d->params || !d->grads) {
        bd_result r = ctx->last_result;
        bd__mlp_destroy(d);
        return r;
    }
    memset(d->grads, 0, (size_t)off * sizeof(float));
    /* nn.Linear default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    for (j = 0; j < nt; j += 2) {
        int64_t fan_in = d->tensors[j].shape[1];
        float bound = (float)(1.0 / sqrt((double)fan_in));
        bd_rng_uniform_fill(rng, d->params + d->tensors[j].offset, d->tensors[j].numel, -bound, bound);
        bd_rng_uniform_fill(rng, d->params + d->tensors[j + 1].offset, d->tensors[j + 1].numel, -bound, bound);
    }
    *out = d;
    return BD_SUCCESS;
}
/* MLP-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>unet                                                                   */
/* ------------------------------------------------------------------------ */
/* The UNet is compiled into a flat plan at init: a list of "values" (the
   tensors that flow between blocks: block outputs and skips), a list of ops
   (ResBlock, attention, down, up) in execution order, and a size table of
   per-sample cache offsets (llm.c style).  reserve() turns the size table
   into one slab per batch size; forward/backward then only index it.
   Activation slab layout: a region of `size * batch` floats per cache, at
   offset `per_sample_offset * batch`; a batch n <= batch uses its prefix. */
enum { BD__UOP_RES = 0, BD__UOP_ATTN = 1, BD__UOP_DOWN = 2, BD__UOP_UP = 3 };
/* cache slots of a ResBlock */
enum { BD__R_CAT, BD__R_N1, BD__R_A1, BD__R_H1, BD__R_N2, BD__R_A2, BD__R_MEAN1, BD__R_RSTD1,
       BD__R_MEAN2, BD__R_RSTD2, BD__R_TPROJ };
/* cache slots of an attention block */
enum { BD__A_N, BD__A_MEAN, BD__A_RSTD, BD__A_QKV, BD__A_ATT, BD__A_O };
/* cache slot of an up block */
enum { BD__U_UP };
/* parameter tensors of a ResBlock, relative to op->pt */
enum { BD__RP_N1W, BD__RP_N1B, BD__RP_C1W, BD__RP_C1B, BD__RP_TW, BD__RP_TB, BD__RP_N2W,
       BD__RP_N2B, BD__RP_C2W, BD__RP_C2B, BD__RP_SW, BD__RP_SB };
enum { BD__AP_NW, BD__AP_NB, BD__AP_QW, BD__AP_QB, BD__AP_PW, BD__AP_PB };

typedef struct bd__unet_val {
    int64_t c, h, w; /* one sample */
    int64_t act;     /* per-sample offset in the activation slab */
    int64_t grad;    /* per-sample offset in the gradient slab */
} bd__unet_val;

typedef struct bd__unet_op {
    int type;
    int has_skip_conv;       /* ResBlock with cin != cout */
    int64_t in, skip, out;   /* value indices; skip < 0: no concat */
    int64_t cin_h, cskip;    /* channels of `in` and of `skip` */
    int64_t cin, cout;       /* cin = cin_h + cskip */
    int64_t h, w;            /* input resolution */
    int64_t pt;              /* first parameter tensor (order: BD__RP_* / BD__AP_* / w,b) */
    int64_t a[11];           /* per-sample cache offsets (BD__R_* / BD__A_* / BD__U_*) */
} bd__unet_op;

typedef struct bd__unet {
    bd_unet_config cfg;
    /* plan (built twice: a counting pass with NULL arrays, then a filling pass) */
    bd_param_tensor *tensors;
    int64_t *tfan; /* per tensor: > 0 uniform(+-1/sqrt(fan)), 0 zeros, -1 ones */
    int64_t n_tensors, n_params;
    bd__unet_val *vals;
    int64_t n_vals;
    bd__unet_op *ops;
    int64_t n_ops;
    int64_t act_ps, grad_ps, scratch_ps, col_floats, attn_hw2, tproj_max, flops;
    int overflow;
    int64_t pt_time, pt_conv_in, pt_out; /* time_mlp.{0,2}.{w,b}; conv_in.{w,b}; norm_out, conv_out */
    int64_t v_in, v_final;
    int64_t a_z, a_cnoise, a_emb, a_t1, a_t1s, a_temb, a_stemb, a_nout, a_mout, a_rout, a_aout;
    int64_t g_stemb;
    /* slab (reserve) */
    float *slab, *act, *grad, *s1, *s2, *s3, *col, *ascr, *gsmall;
    int64_t batch;
    int64_t last_n;
    int last_train;
} bd__unet;

static int64_t bd__umul(bd__unet *u, int64_t a, int64_t b) {
    if (a < 0 || b < 0 || (a != 0 && b > INT64_MAX / a)) { u->overflow = 1; return 0; }
    return a * b;
}
static int64_t bd__uadd(bd__unet *u, int64_t a, int64_t b) {
    if (a < 0 || b < 0 || b > INT64_MAX - a) { u->overflow = 1; return 0; }
    return a + b;
}
static int64_t bd__umax(int64_t a, int64_t b) { return a > b ? a : b; }

/* one named parameter tensor (PyTorch shape); fan: see tfan */
static void bd__ub_tensor(bd__unet *u, const char *prefix, const char *name, int64_t fan, int ndim,
                          int64_t s0, int64_t s1, int64_t s2, int64_t s3) {
    int64_t numel = s0;
    if (ndim > 1) numel = bd__umul(u, numel, s1);
    if (ndim > 2) numel = bd__umul(u, numel, s2);
    if (ndim > 3) numel = bd__umul(u, numel, s3);
    if (u->tensors) {
        bd_param_tensor *t = &u->tensors[u->n_tensors];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s%s", prefix, name);
        t->ndim = ndim;
        t->shape[0] = s0; t->shape[1] = ndim > 1 ? s1 : 0;
        t->shape[2] = ndim > 2 ? s2 : 0; t->shape[3] = ndim > 3 ? s3 : 0;
        t->offset = u->n_params;
        t->numel = numel;
        u->tfan[u->n_tensors] = fan;
    }
    u->n_tensors++;
    u->n_params = bd__uadd(u, u->n_params, numel);
}
/* conv (cout, cin, k, k) + bias, or linear (cout, cin) + bias when k == 0 */
static void bd__ub_conv(bd__unet *u, const char *prefix, const char *name, int64_t cin,
                        int64_t cout, int64_t k, int zero) {
    char nm[64];
    int64_t fan = k ? bd__umul(u, cin, k * k) : cin;
    snprintf(nm, sizeof nm, "%s.weight", name);
    if (k) bd__ub_tensor(u, prefix, nm, zero ? 0 : fan, 4, cout, cin, k, k);
    else bd__ub_tensor(u, prefix, nm, zero ? 0 : fan, 2, cout, cin, 0, 0);
    snprintf(nm, sizeof nm, "%s.bias", name);
    bd__ub_tensor(u, prefix, nm, zero ? 0 : fan, 1, cout, 0, 0, 0);
}
static void bd__ub_norm(bd__unet *u, const char *prefix, const char *name, int64_t c) {
    char nm[64];
    snprintf(nm, sizeof nm, "%s.weight", name);
    bd__ub_tensor(u, prefix, nm, -1, 1, c, 0, 0, 0);
    snprintf(nm, sizeof nm, "%s.bias", name);
    bd__ub_tensor(u, prefix, nm, 0, 1, c, 0, 0, 0);
}
static int64_t bd__ub_cache(bd__unet *u, int64_t size) {
    int64_t off = u->act_ps;
    u->act_ps = bd__uadd(u, u->act_ps, size);
    return off;
}
static int64_t bd__ub_val(bd__unet *u, int64_t c, int64_t h, int64_t w) {
    int64_t size = bd__umul(u, c, bd__umul(u, h, w));
    if (u->vals) {
        bd__unet_val *v = &u->vals[u->n_vals];
        v->c = c; v->h = h; v->w = w;
        v->act = u->act_ps;
        v->grad = u->grad_ps;
    }
    u->act_ps = bd__uadd(u, u->act_ps, size);
    u->grad_ps = bd__uadd(u, u->grad_ps, size);
    return u->n_vals++;
}
static void bd__ub_scratch(bd__unet *u, int64_t per_sample) {
    u->scratch_ps = bd__umax(u->scratch_ps, per_sample);
}
static void bd__ub_col(bd__unet *u, int64_t cin, int64_t h, int64_t w, int64_t k, int64_t s,
                       int64_t p) {
    if (cin > 0 && h > 0 && w > 0 && !u->overflow)
        u->col_floats = bd__umax(u->col_floats, bd_conv2d_workspace_floats(cin, h, w, k, s, p));
}
static void bd__ub_flops_conv(bd__unet *u, int64_t cin, int64_t cout, int64_t k, int64_t ho,
                              int64_t wo) {
    int64_t f = bd__umul(u, 2, bd__umul(u, bd__umul(u, cin, k * k), bd__umul(u, cout, bd__umul(u, ho, wo))));
    u->flops = bd__uadd(u, u->flops, f);
}
static bd__unet_op *bd__ub_op(bd__unet *u, int type, bd__unet_op *tmp) {
    bd__unet_op *op = u->ops ? &u->ops[u->n_ops] : tmp;
    memset(op, 0, sizeof *op);
    op->type = type;
    op->skip = -1;
    op->pt = u->n_tensors;
    u->n_ops++;
    return op;
}

/* ResBlock(cin_h + cskip -> cout) at h x w; returns the output value */
static int64_t bd__ub_res(bd__unet *u, const char *prefix, int64_t in, int64_t cin_h, int64_t skip,
                          int64_t cskip, int64_t cout, int64_t h, int64_t w) {
    bd__unet_op tmp, *op = bd__ub_op(u, BD__UOP_RES, &tmp);
    int64_t cin = cin_h + cskip, hw = bd__umul(u, h, w), G = u->cfg.groups, tc = 4 * u->cfg.ch;
    op->in = in; op->skip = skip; op->cin_h = cin_h; op->cskip = cskip;
    op->cin = cin; op->cout = cout; op->h = h; op->w = w;
    op->has_skip_conv = cin != cout;
    bd__ub_norm(u, prefix, "norm1", cin);
    bd__ub_conv(u, prefix, "conv1", cin, cout, 3, 0);
    bd__ub_conv(u, prefix, "temb", tc, cout, 0, 0);
    bd__ub_norm(u, prefix, "norm2", cout);
    bd__ub_conv(u, prefix, "conv2", cout, cout, 3, 1);
    if (op->has_skip_conv) bd__ub_conv(u, prefix, "skip", cin, cout, 1, 0);
    op->a[BD__R_CAT] = bd__ub_cache(u, skip >= 0 ? bd__umul(u, cin, hw) : 0);
    op->a[BD__R_N1] = bd__ub_cache(u, 0); /* fused GroupNorm+SiLU: not stored */
    op->a[BD__R_A1] = bd__ub_cache(u, bd__umul(u, cin, hw));
    op->a[BD__R_H1] = bd__ub_cache(u, bd__umul(u, cout, hw));
    op->a[BD__R_N2] = bd__ub_cache(u, 0);
    op->a[BD__R_A2] = bd__ub_cache(u, bd__umul(u, cout, hw));
    op->a[BD__R_MEAN1] = bd__ub_cache(u, G);
    op->a[BD__R_RSTD1] = bd__ub_cache(u, G);
    op->a[BD__R_MEAN2] = bd__ub_cache(u, G);
    op->a[BD__R_RSTD2] = bd__ub_cache(u, G);
    op->a[BD__R_TPROJ] = bd__ub_cache(u, cout);
    bd__ub_scratch(u, bd__umul(u, bd__umax(cin, cout), hw));
    bd__ub_col(u, cin, h, w, 3, 1, 1);
    bd__ub_col(u, cout, h, w, 3, 1, 1);
    bd__ub_col(u, cin, h, w, 1, 1, 0);
    u->tproj_max = bd__umax(u->tproj_max, cout);
    bd__ub_flops_conv(u, cin, cout, 3, h, w);
    bd__ub_flops_conv(u, cout, cout, 3, h, w);
    if (op->has_skip_conv) bd__ub_flops_conv(u, cin, cout, 1, h, w);
    u->flops = bd__uadd(u, u->flops, bd__umul(u, 2, bd__umul(u, tc, cout)));
    op->out = bd__ub_val(u, cout, h, w);
    return op->out;
}

static int64_t bd__ub_attn(bd__unet *u, const char *prefix, int64_t in, int64_t c, int64_t h,
                           int64_t w) {
    bd__unet_op tmp, *op = bd__ub_op(u, BD__UOP_ATTN, &tmp);
    int64_t hw = bd__umul(u, h, w), hw2 = bd__umul(u, hw, hw);
    op->in = in; op->cin_h = c; op->cin = c; op->cout = c; op->h = h; op->w = w;
    bd__ub_norm(u, prefix, "norm", c);
    bd__ub_conv(u, prefix, "qkv", c, 3 * c, 1, 0);
    bd__ub_conv(u, prefix, "proj", c, c, 1, 1);
    op->a[BD__A_N] = bd__ub_cache(u, bd__umul(u, c, hw));
    op->a[BD__A_MEAN] = bd__ub_cache(u, u->cfg.groups);
    op->a[BD__A_RSTD] = bd__ub_cache(u, u->cfg.groups);
    op->a[BD__A_QKV] = bd__ub_cache(u, bd__umul(u, 3 * c, hw));
    op->a[BD__A_ATT] = bd__ub_cache(u, bd__umul(u, u->cfg.heads, hw2));
    op->a[BD__A_O] = bd__ub_cache(u, bd__umul(u, c, hw));
    bd__ub_scratch(u, bd__umul(u, 3 * c, hw));
    u->attn_hw2 = bd__umax(u->attn_hw2, hw2);
    bd__ub_flops_conv(u, c, 3 * c, 1, h, w);
    bd__ub_flops_conv(u, c, c, 1, h, w);
    u->flops = bd__uadd(u, u->flops, bd__umul(u, 4, bd__umul(u, hw2, c)));
    op->out = bd__ub_val(u, c, h, w);
    return op->out;
}

/* down (conv3x3 stride 2) or up (nearest x2 + conv3x3); h, w: input size */
static int64_t bd__ub_resample(bd__unet *u, int up, const char *prefix, int64_t in, int64_t c,
                               int64_t h, int64_t w) {
    bd__unet_op tmp, *op = bd__ub_op(u, up ? BD__UOP_UP : BD__UOP_DOWN, &tmp);
    int64_t ho = up ? 2 * h : (h - 1) / 2 + 1, wo = up ? 2 * w : (w - 1) / 2 + 1;
    op->in = in; op->cin_h = c; op->cin = c; op->cout = c; op->h = h; op->w = w;
    bd__ub_conv(u, prefix, up ? "up" : "down", c, c, 3, 0);
    if (up) {
        op->a[BD__U_UP] = bd__ub_cache(u, bd__umul(u, c, bd__umul(u, ho, wo)));
        bd__ub_scratch(u, bd__umul(u, c, bd__umul(u, ho, wo)));
        bd__ub_col(u, c, ho, wo, 3, 1, 1);
    } else {
        bd__ub_col(u, c, h, w, 3, 2, 1);
    }
    bd__ub_flops_conv(u, c, c, 3, ho, wo);
    op->out = bd__ub_val(u, c, ho, wo);
    return op->out;
}

/* Builds the plan (docs/spec.md sec. 6).  With NULL arrays it only counts. */
static void bd__unet_build(bd__unet *u) {
    const bd_unet_config *c = &u->cfg;
    int64_t stack_v[BD_UNET_MAX_LEVELS * 17 + 1], stack_c[BD_UNET_MAX_LEVELS * 17 + 1];
    int64_t sp = 0, L = c->levels, l, j, C = c->in_ch, ch = c->ch, tc = 4 * c->ch;
    int64_t H = c->image_size, h = H, cur, cc, hw = bd__umul(u, H, H);
    char prefix[64];
    u->n_tensors = 0; u->n_params = 0; u->n_vals = 0; u->n_ops = 0;
    u->act_ps = 0; u->grad_ps = 0; u->scratch_ps = 0; u->col_floats = 0;
    u->attn_hw2 = 0; u->tproj_max = 0; u->flops = 0; u->overflow = 0;
    /* time embedding MLP: ch -> 4ch -> SiLU -> 4ch */
    u->pt_time = u->n_tensors;
    bd__ub_conv(u, "", "time_mlp.0", ch, tc, 0, 0);
    bd__ub_conv(u, "", "time_mlp.2", tc, tc, 0, 0);
    u->a_z = bd__ub_cache(u, bd__umul(u, C, hw));
    u->a_cnoise = bd__ub_cache(u, 1);
    u->a_emb = bd__ub_cache(u, ch);
    u->a_t1 = bd__ub_cache(u, tc);
    u->a_t1s = bd__ub_cache(u, tc);
    u->a_temb = bd__ub_cache(u, tc);
    u->a_stemb = bd__ub_cache(u, tc);
    u->g_stemb = u->grad_ps;
    u->grad_ps = bd__uadd(u, u->grad_ps, tc);
    bd__ub_scratch(u, tc);
    u->flops = bd__uadd(u, u->flops, bd__umul(u, 2, bd__umul(u, tc, ch + tc)));
    /* conv_in */
    u->pt_conv_in = u->n_tensors;
    bd__ub_conv(u, "", "conv_in", C, ch, 3, 0);
    bd__ub_col(u, C, H, H, 3, 1, 1);
    bd__ub_flops_conv(u, C, ch, 3, H, H);
    cur = bd__ub_val(u, ch, H, H);
    u->v_in = cur;
    cc = ch;
    stack_v[sp] = cur; stack_c[sp] = cc; sp++;
    /* encoder */
    for (l = 0; l < L; l++) {
        int64_t co = ch * c->ch_mult[l];
        for (j = 0; j < c->nres; j++) {
            snprintf(prefix, sizeof prefix, "down.%lld.res.%lld.", (long long)l, (long long)j);
            cur = bd__ub_res(u, prefix, cur, cc, -1, 0, co, h, h);
            cc = co;
            if (c->attn[l]) {
                snprintf(prefix, sizeof prefix, "down.%lld.attn.%lld.", (long long)l, (long long)j);
                cur = bd__ub_attn(u, prefix, cur, cc, h, h);
            }
            stack_v[sp] = cur; stack_c[sp] = cc; sp++;
        }
        if (l < L - 1) {
            snprintf(prefix, sizeof prefix, "down.%lld.", (long long)l);
            cur = bd__ub_resample(u, 0, prefix, cur, cc, h, h);
            h = (h - 1) / 2 + 1;
            stack_v[sp] = cur; stack_c[sp] = cc; sp++;
        }
    }
    /* middle */
    cur = bd__ub_res(u, "mid.res1.", cur, cc, -1, 0, cc, h, h);
    cur = bd__ub_attn(u, "mid.attn.", cur, cc, h, h);
    cur = bd__ub_res(u, "mid.res2.", cur, cc, -1, 0, cc, h, h);
    /* decoder */
    for (l = L - 1; l >= 0; l--) {
        int64_t co = ch * c->ch_mult[l];
        for (j = 0; j <= c->nres; j++) {
            sp--;
            snprintf(prefix, sizeof prefix, "up.%lld.res.%lld.", (long long)l, (long long)j);
            cur = bd__ub_res(u, prefix, cur, cc, stack_v[sp], stack_c[sp], co, h, h);
            cc = co;
            if (c->attn[l]) {
                snprintf(prefix, sizeof prefix, "up.%lld.attn.%lld.", (long long)l, (long long)j);
                cur = bd__ub_attn(u, prefix, cur, cc, h, h);
            }
        }
        if (l > 0) {
            snprintf(prefix, sizeof prefix, "up.%lld.", (long long)l);
            cur = bd__ub_resample(u, 1, prefix, cur, cc, h, h);
            h *= 2;
        }
    }
    u->v_final = cur;
    /* output head */
    u->pt_out = u->n_tensors;
    bd__ub_norm(u, "", "norm_out", cc);
    bd__ub_conv(u, "", "conv_out", cc, c->branches * C, 3, 1);
    u->a_nout = bd__ub_cache(u, 0); /* fused GroupNorm+SiLU: not stored */
    u->a_mout = bd__ub_cache(u, c->groups);
    u->a_rout = bd__ub_cache(u, c->groups);
    u->a_aout = bd__ub_cache(u, bd__umul(u, cc, hw));
    bd__ub_scratch(u, bd__umul(u, cc, hw));
    bd__ub_scratch(u, bd__umul(u, c->branches * C, hw));
    bd__ub_col(u, cc, H, H, 3, 1, 1);
    bd__ub_flops_conv(u, cc, c->branches * C, 3, H, H);
}

BDAPI bd_unet_config bd_unet_config_init(void) {
    bd_unet_config c;
    memset(&c, 0, sizeof c);
    c.in_ch = 1;
    c.image_size = 28;
    c.ch = 32;
    c.levels = 3;
    c.ch_mult[0] = 1; c.ch_mult[1] = 2; c.ch_mult[2] = 2;
    c.nres = 1;
    c.attn[2] = 1;
    c.groups = 8;
    c.heads = 1;
    c.branches = 1;
    return c;
}

BDAPI bd_result bd_unet_config_validate(bd_context *ctx, const bd_unet_config *c) {
    int64_t l, div = 1;
    if (!c) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "unet config: NULL");
    if (c->in_ch < 1 || c->in_ch > 4096)
        return bd_error(ctx, BD_ERROR_CONFIG, "unet config: in_ch %lld not in 1..4096", (long long)c->in_ch);
    if (c->levels < 1 || c->levels > BD_UNET_MAX_LEVELS)
        return bd_error(ctx, BD_ERROR_CONFIG, "unet config: levels %lld not in 1..%d", (long long)c->levels, BD_UNET_MAX_LEVELS);
    if (c->ch < 2 || c->ch > 65536 || c->ch % 2)
        return bd_error(ctx, BD_ERROR_CONFIG, "unet config: ch %lld must be even and in 2..65536 (the time embedding has ch/2 frequencies)", (long long)c->ch);
    if (c->groups < 1 || c->ch % c->groups)
        return bd_error(ctx, BD_ERROR_CONFIG, "unet config: ch %lld is not divisible by groups %lld", (long long)c->ch, (long long)c->groups);
    if (c->heads < 1)
        return bd_error(ctx, BD_ERROR_CONFIG, "unet config: heads %lld < 1", (long long)c->heads);
    if (c->nres < 1 || c->nres > 16)
        return bd_error(ctx, BD_ERROR_CONFIG, "unet config: nres %lld not in 1..16", (long long)c->nres);
    if (c->branches < 1 || c->branches > 64)
        return bd_error(ctx, BD_ERROR_CONFIG, "unet config: branches %lld not in 1..64", (long long)c->branches);
    for (l = 0; l < c->levels; l++) {
        int64_t cl;
        if (c->ch_mult[l] < 1 || c->ch_mult[l] > 1024)
            return bd_error(ctx, BD_ERROR_CONFIG, "unet config: ch_mult[%lld] = %lld not in 1..1024", (long long)l, (long long)c->ch_mult[l]);
        cl = c->ch * c->ch_mult[l];
        if (cl > 65536)
            return bd_error(ctx, BD_ERROR_CONFIG, "unet config: level %lld width ch*ch_mult = %lld exceeds 65536", (long long)l, (long long)cl);
        if (cl % c->groups)
            return bd_error(ctx, BD_ERROR_CONFIG, "unet config: level %lld width %lld is not divisible by groups %lld", (long long)l, (long long)cl, (long long)c->groups);
        if (c->attn[l] != 0 && c->attn[l] != 1)
            return bd_error(ctx, BD_ERROR_CONFIG, "unet config: attn[%lld] = %d must be 0 or 1", (long long)l, c->attn[l]);
        if ((c->attn[l] || l == c->levels - 1) && cl % c->heads)
            return bd_error(ctx, BD_ERROR_CONFIG, "unet config: attention width %lld at level %lld is not divisible by heads %lld", (long long)cl, (long long)l, (long long)c->heads);
        if (l > 0) div *= 2;
    }
    for (l = c->levels; l < BD_UNET_MAX_LEVELS; l++)
        if (c->attn[l])
            return bd_error(ctx, BD_ERROR_CONFIG, "unet config: attention at level %lld but only %lld levels", (long long)l, (long long)c->levels);
    if (c->image_size < 1 || c->image_size > 65536)
        return bd_error(ctx, BD_ERROR_CONFIG, "unet config: image_size %lld not in 1..65536", (long long)c->image_size);
    if (c->image_size % div)
        return bd_error(ctx, BD_ERROR_CONFIG, "unet config: image_size %lld is not divisible by 2^(levels-1) = %lld", (long long)c->image_size, (long long)div);
    return BD_SUCCESS;
}

BDAPI bd_result bd_unet_config_stats(bd_context *ctx, const bd_unet_config *cfg,
                                     int64_t *n_params, int64_t *act_floats_per_sample,
                                     int64_t *flops) {
    bd__unet u;
    bd_result r = bd_unet_config_validate(ctx, cfg);
    if (r != BD_SUCCESS) return r;
    memset(&u, 0, sizeof u);
    u.cfg = *cfg;
    bd__unet_build(&u);
    if (u.overflow) return bd_error(ctx, BD_ERROR_OVERFLOW, "unet config: sizes overflow");
    if (n_params) *n_params = u.n_params;
    if (act_floats_per_sample) *act_floats_per_sample = u.act_ps;
    if (flops) *flops = u.flops;
    return BD_SUCCESS;
}

static int bd__unet_format_list(const int64_t *v, int64_t n, char *buf, size_t cap) {
    size_t len = 0;
    int64_t i;
    if (cap > 0) buf[0] = '\0';
    for (i = 0; i < n; i++) {
        int k = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, i ? ",%lld" : "%lld",
                         (long long)v[i]);
        if (k > 0) len += (size_t)k;
    }
    return (int)len;
}
BDAPI int bd_unet_format_mult(const bd_unet_config *cfg, char *buf, size_t cap) {
    return bd__unet_format_list(cfg->ch_mult, cfg->levels, buf, cap);
}
BDAPI int bd_unet_format_attn(const bd_unet_config *cfg, char *buf, size_t cap) {
    int64_t v[BD_UNET_MAX_LEVELS], n = 0, l;
    for (l = 0; l < cfg->levels && l < BD_UNET_MAX_LEVELS; l++)
        if (cfg->attn[l]) v[n++] = l;
    return bd__unet_format_list(v, n, buf, cap);
}
/* strict "a,b,c" of non-negative decimals; returns count or -1 */
static int64_t bd__unet_parse_list(const char *s, int64_t *v, int64_t cap) {
    int64_t n = 0;
    if (!s) return -1;
    if (*s == '\0') return 0;
    for (;;) {
        int64_t x = 0;
        int digits = 0;
        while (*s >= '0' && *s <= '9') {
            if (x > 100000000) return -1;
            x = x * 10 + (*s - '0');
            s++; digits++;
        }
        if (!digits || n >= cap) return -1;
        v[n++] = x;
        if (*s == '\0') return n;
        if (*s != ',') return -1;
        s++;
    }
}
BDAPI bd_result bd_unet_parse_mult(bd_context *ctx, const char *s, bd_unet_config *cfg) {
    int64_t v[BD_UNET_MAX_LEVELS], n = bd__unet_parse_list(s, v, BD_UNET_MAX_LEVELS), l;
    if (!s || !cfg) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_unet_parse_mult: NULL argument");
    if (n < 1) return bd_error(ctx, BD_ERROR_CONFIG, "unet config: ch_mult \"%s\" is not 1..%d comma-separated integers", s ? s : "(null)", BD_UNET_MAX_LEVELS);
    for (l = 0; l < BD_UNET_MAX_LEVELS; l++) cfg->ch_mult[l] = l < n ? v[l] : 0;
    cfg->levels = n;
    return BD_SUCCESS;
}
BDAPI bd_result bd_unet_parse_attn(bd_context *ctx, const char *s, bd_unet_config *cfg) {
    int64_t v[BD_UNET_MAX_LEVELS], n = bd__unet_parse_list(s, v, BD_UNET_MAX_LEVELS), l;
    if (!s || !cfg) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_unet_parse_attn: NULL argument");
    if (n < 0) return bd_error(ctx, BD_ERROR_CONFIG, "unet config: attn_levels \"%s\" is not a comma-separated list of level indices", s ? s : "(null)");
    for (l = 0; l < BD_UNET_MAX_LEVELS; l++) cfg->attn[l] = 0;
    for (l = 0; l < n; l++) {
        if (v[l] >= BD_UNET_MAX_LEVELS || cfg->attn[v[l]])
            return bd_error(ctx, BD_ERROR_CONFIG, "unet config: attn_levels \"%s\": level %lld out of range or repeated", s, (long long)v[l]);
        cfg->attn[v[l]] = 1;
    }
    return BD_SUCCESS;
}

#define BD__UACT(u, off) ((u)->act + (off) * (u)->batch)
#define BD__UVAL(u, v) ((u)->act + (u)->vals[v].act * (u)->batch)
#define BD__UGRAD(u, v) ((u)->grad + (u)->vals[v].grad * (u)->batch)
#define BD__UP(d, u, op, k) ((d)->params + (u)->tensors[(op)->pt + (k)].offset)
#define BD__UG(d, u, op, k) ((d)->grads + (u)->tensors[(op)->pt + (k)].offset)

static void bd__unet_op_forward(bd_denoiser *d, bd__unet *u, const bd__unet_op *op, int64_t n) {
    int64_t G = u->cfg.groups, tc = 4 * u->cfg.ch, hw = op->h * op->w, c = op->cin;
    const float *x = BD__UVAL(u, op->in);
    float *y = BD__UVAL(u, op->out);
    if (op->type == BD__UOP_RES) {
        float *a1 = BD__UACT(u, op->a[BD__R_A1]), *h1 = BD__UACT(u, op->a[BD__R_H1]);
        float *a2 = BD__UACT(u, op->a[BD__R_A2]), *tp = BD__UACT(u, op->a[BD__R_TPROJ]);
        int64_t co = op->cout;
        if (op->skip >= 0) {
            float *cat = BD__UACT(u, op->a[BD__R_CAT]);
            BD_OP(d->ctx, concat_forward, cat, x, BD__UVAL(u, op->skip), n, op->cin_h, op->cskip, hw);
            x = cat;
        }
        BD_OP(d->ctx, groupnorm_silu_forward, a1, BD__UACT(u, op->a[BD__R_MEAN1]), BD__UACT(u, op->a[BD__R_RSTD1]), x,
                                  BD__UP(d, u, op, BD__RP_N1W), BD__UP(d, u, op, BD__RP_N1B), n, c, hw, G);
        BD_OP(d->ctx, conv2d_forward, h1, u->col, a1, BD__UP(d, u, op, BD__RP_C1W), BD__UP(d, u, op, BD__RP_C1B),
                          n, c, op->h, op->w, co, 3, 1, 1);
        BD_OP(d->ctx, linear_forward, tp, BD__UACT(u, u->a_stemb), BD__UP(d, u, op, BD__RP_TW),
                          BD__UP(d, u, op, BD__RP_TB), n, tc, co);
        BD_OP(d->ctx, add_channel_forward, h1, tp, n, co, hw);
        BD_OP(d->ctx, groupnorm_silu_forward, a2, BD__UACT(u, op->a[BD__R_MEAN2]), BD__UACT(u, op->a[BD__R_RSTD2]), h1,
                                  BD__UP(d, u, op, BD__RP_N2W), BD__UP(d, u, op, BD__RP_N2B), n, co, hw, G);
        BD_OP(d->ctx, conv2d_forward, y, u->col, a2, BD__UP(d, u, op, BD__RP_C2W), BD__UP(d, u, op, BD__RP_C2B),
                          n, co, op->h, op->w, co, 3, 1, 1);
        if (op->has_skip_conv) {
            BD_OP(d->ctx, conv2d_forward, u->s1, u->col, x, BD__UP(d, u, op, BD__RP_SW), BD__UP(d, u, op, BD__RP_SB),
                              n, c, op->h, op->w, co, 1, 1, 0);
            BD_OP(d->ctx, add_forward, y, y, u->s1, n * co * hw);
        } else {
            BD_OP(d->ctx, add_forward, y, y, x, n * co * hw);
        }
    } else if (op->type == BD__UOP_ATTN) {
        float *nn = BD__UACT(u, op->a[BD__A_N]), *qkv = BD__UACT(u, op->a[BD__A_QKV]);
        float *o = BD__UACT(u, op->a[BD__A_O]);
        BD_OP(d->ctx, groupnorm_forward, nn, BD__UACT(u, op->a[BD__A_MEAN]), BD__UACT(u, op->a[BD__A_RSTD]), x,
                             BD__UP(d, u, op, BD__AP_NW), BD__UP(d, u, op, BD__AP_NB), n, c, hw, G);
        BD_OP(d->ctx, conv2d_forward, qkv, u->col, nn, BD__UP(d, u, op, BD__AP_QW), BD__UP(d, u, op, BD__AP_QB),
                          n, c, op->h, op->w, 3 * c, 1, 1, 0);
        BD_OP(d->ctx, attention_forward, o, BD__UACT(u, op->a[BD__A_ATT]), qkv, n, c, hw, u->cfg.heads);
        BD_OP(d->ctx, conv2d_forward, y, u->col, o, BD__UP(d, u, op, BD__AP_PW), BD__UP(d, u, op, BD__AP_PB),
                          n, c, op->h, op->w, c, 1, 1, 0);
        BD_OP(d->ctx, add_forward, y, y, x, n * c * hw);
    } else if (op->type == BD__UOP_DOWN) {
        BD_OP(d->ctx, conv2d_forward, y, u->col, x, BD__UP(d, u, op, 0), BD__UP(d, u, op, 1), n, c, op->h, op->w,
                          c, 3, 2, 1);
    } else {
        float *up = BD__UACT(u, op->a[BD__U_UP]);
        BD_OP(d->ctx, upsample2x_forward, up, x, n, c, op->h, op->w);
        BD_OP(d->ctx, conv2d_forward, y, u->col, up, BD__UP(d, u, op, 0), BD__UP(d, u, op, 1), n, c, 2 * op->h,
                          2 * op->w, c, 3, 1, 1);
    }
}

/* zeroing and copies go through the backend: the slabs may be device memory */
static void bd__unet_zero(bd_context *ctx, float *p, int64_t n) {
    if (n > 0) bd_backend_zero(ctx, p, (size_t)n * sizeof(float));
}

static void bd__unet_op_backward(bd_denoiser *d, bd__unet *u, const bd__unet_op *op, int64_t n) {
    int64_t G = u->cfg.groups, tc = 4 * u->cfg.ch, hw = op->h * op->w, c = op->cin;
    const float *x = BD__UVAL(u, op->in);
    const float *gy = BD__UGRAD(u, op->out);
    float *gx = BD__UGRAD(u, op->in);
    if (op->type == BD__UOP_RES) {
        const float *a1 = BD__UACT(u, op->a[BD__R_A1]), *h1 = BD__UACT(u, op->a[BD__R_H1]);
        const float *a2 = BD__UACT(u, op->a[BD__R_A2]);
        int64_t co = op->cout;
        float *gin = gx; /* gradient of the block's (concatenated) input */
        if (op->skip >= 0) {
            x = BD__UACT(u, op->a[BD__R_CAT]);
            gin = u->s3;
            bd__unet_zero(d->ctx, gin, n * c * hw);
        }
        /* out = skip(x) + conv2(a2) */
        if (op->has_skip_conv)
            BD_OP(d->ctx, conv2d_backward, gin, BD__UG(d, u, op, BD__RP_SW), BD__UG(d, u, op, BD__RP_SB), u->col, gy, x,
                               BD__UP(d, u, op, BD__RP_SW), n, c, op->h, op->w, co, 1, 1, 0);
        else
            BD_OP(d->ctx, add_backward, gin, NULL, gy, n * c * hw);
        bd__unet_zero(d->ctx, u->s1, n * co * hw);
        BD_OP(d->ctx, conv2d_backward, u->s1, BD__UG(d, u, op, BD__RP_C2W), BD__UG(d, u, op, BD__RP_C2B), u->col, gy,
                           a2, BD__UP(d, u, op, BD__RP_C2W), n, co, op->h, op->w, co, 3, 1, 1);
        bd__unet_zero(d->ctx, u->s2, n * co * hw); /* s2 = d h1 (fused GroupNorm+SiLU) */
        BD_OP(d->ctx, groupnorm_silu_backward, u->s2, BD__UG(d, u, op, BD__RP_N2W), BD__UG(d, u, op, BD__RP_N2B), u->s1,
                                   h1, BD__UACT(u, op->a[BD__R_MEAN2]), BD__UACT(u, op->a[BD__R_RSTD2]),
                                   BD__UP(d, u, op, BD__RP_N2W), BD__UP(d, u, op, BD__RP_N2B), n, co, hw, G);
        bd__unet_zero(d->ctx, u->gsmall, n * co);
        BD_OP(d->ctx, add_channel_backward, u->gsmall, u->s2, n, co, hw);
        BD_OP(d->ctx, linear_backward, u->grad + u->g_stemb * u->batch, BD__UG(d, u, op, BD__RP_TW),
                           BD__UG(d, u, op, BD__RP_TB), u->gsmall, BD__UACT(u, u->a_stemb),
                           BD__UP(d, u, op, BD__RP_TW), n, tc, co);
        bd__unet_zero(d->ctx, u->s1, n * c * hw); /* s1 = d a1 */
        BD_OP(d->ctx, conv2d_backward, u->s1, BD__UG(d, u, op, BD__RP_C1W), BD__UG(d, u, op, BD__RP_C1B), u->col, u->s2,
                           a1, BD__UP(d, u, op, BD__RP_C1W), n, c, op->h, op->w, co, 3, 1, 1);
        BD_OP(d->ctx, groupnorm_silu_backward, gin, BD__UG(d, u, op, BD__RP_N1W), BD__UG(d, u, op, BD__RP_N1B), u->s1, x,
                                   BD__UACT(u, op->a[BD__R_MEAN1]), BD__UACT(u, op->a[BD__R_RSTD1]),
                                   BD__UP(d, u, op, BD__RP_N1W), BD__UP(d, u, op, BD__RP_N1B), n, c, hw, G);
        if (op->skip >= 0)
            BD_OP(d->ctx, concat_backward, gx, BD__UGRAD(u, op->skip), gin, n, op->cin_h, op->cskip, hw);
    } else if (op->type == BD__UOP_ATTN) {
        BD_OP(d->ctx, add_backward, gx, NULL, gy, n * c * hw);
        bd__unet_zero(d->ctx, u->s1, n * c * hw); /* d o */
        BD_OP(d->ctx, conv2d_backward, u->s1, BD__UG(d, u, op, BD__AP_PW), BD__UG(d, u, op, BD__AP_PB), u->col, gy,
                           BD__UACT(u, op->a[BD__A_O]), BD__UP(d, u, op, BD__AP_PW), n, c, op->h, op->w,
                           c, 1, 1, 0);
        bd__unet_zero(d->ctx, u->s2, n * 3 * c * hw); /* d qkv */
        BD_OP(d->ctx, attention_backward, u->s2, u->ascr, u->s1, BD__UACT(u, op->a[BD__A_QKV]),
                              BD__UACT(u, op->a[BD__A_ATT]), n, c, hw, u->cfg.heads);
        bd__unet_zero(d->ctx, u->s3, n * c * hw); /* d n */
        BD_OP(d->ctx, conv2d_backward, u->s3, BD__UG(d, u, op, BD__AP_QW), BD__UG(d, u, op, BD__AP_QB), u->col, u->s2,
                           BD__UACT(u, op->a[BD__A_N]), BD__UP(d, u, op, BD__AP_QW), n, c, op->h, op->w,
                           3 * c, 1, 1, 0);
        BD_OP(d->ctx, groupnorm_backward, gx, BD__UG(d, u, op, BD__AP_NW), BD__UG(d, u, op, BD__AP_NB), u->s3, x,
                              BD__UACT(u, op->a[BD__A_MEAN]), BD__UACT(u, op->a[BD__A_RSTD]),
                              BD__UP(d, u, op, BD__AP_NW), n, c, hw, G);
    } else if (op->type == BD__UOP_DOWN) {
        BD_OP(d->ctx, conv2d_backward, gx, BD__UG(d, u, op, 0), BD__UG(d, u, op, 1), u->col, gy, x, BD__UP(d, u, op, 0),
                           n, c, op->h, op->w, c, 3, 2, 1);
    } else {
        bd__unet_zero(d->ctx, u->s1, n * c * hw * 4);
        BD_OP(d->ctx, conv2d_backward, u->s1, BD__UG(d, u, op, 0), BD__UG(d, u, op, 1), u->col, gy,
                           BD__UACT(u, op->a[BD__U_UP]), BD__UP(d, u, op, 0), n, c, 2 * op->h, 2 * op->w,
                           c, 3, 1, 1);
        BD_OP(d->ctx, upsample2x_backward, gx, u->s1, n, c, op->h, op->w);
    }
}

static bd_result bd__unet_reserve(bd_denoiser *d, int64_t batch) {
    bd__unet *u = BD__CAST(bd__unet *, d->impl);
    size_t total = 0, part;
    float *slab;
    int ok = 1;
    /* act, grad, 3 scratch, col, attention scratch, tproj grad */
    ok = ok && bd_size_mul((size_t)u->act_ps, (size_t)batch, &part) && bd_size_add(total, part, &total);
    ok = ok && bd_size_mul((size_t)u->grad_ps, (size_t)batch, &part) && bd_size_add(total, part, &total);
    ok = ok && bd_size_mul((size_t)u->scratch_ps, (size_t)batch, &part) && bd_size_mul(part, 3, &part) &&
         bd_size_add(total, part, &total);
    ok = ok && bd_size_add(total, (size_t)u->col_floats, &total);
    ok = ok && bd_size_add(total, (size_t)u->attn_hw2, &total);
    ok = ok && bd_size_mul((size_t)u->tproj_max, (size_t)batch, &part) && bd_size_add(total, part, &total);
    if (!ok || total > (size_t)INT64_MAX / sizeof(float))
        return bd_error(d->ctx, BD_ERROR_OVERFLOW, "unet reserve: activation memory for batch %lld overflows", (long long)batch);
    if (bd_backend_alloc(d->ctx, total * sizeof(float), (void **)&slab) != BD_SUCCESS)
        return d->ctx->last_result;
    if (bd_backend_zero(d->ctx, slab, total * sizeof(float)) != BD_SUCCESS) {
        bd_backend_free(d->ctx, slab);
        return d->ctx->last_result;
    }
    bd_backend_free(d->ctx, u->slab);
    u->slab = slab;
    u->act = slab;
    u->grad = u->act + u->act_ps * batch;
    u->s1 = u->grad + u->grad_ps * batch;
    u->s2 = u->s1 + u->scratch_ps * batch;
    u->s3 = u->s2 + u->scratch_ps * batch;
    u->col = u->s3 + u->scratch_ps * batch;
    u->ascr = u->col + u->col_floats;
    u->gsmall = u->ascr + u->attn_hw2;
    u->batch = batch;
    u->last_n = 0;
    u->last_train = 0;
    d->reserved_batch = batch;
    return BD_SUCCESS;
}

static bd_result bd__unet_forward(bd_denoiser *d, float *out, const float *z, const float *t,
                                  int64_t n, int train) {
    bd__unet *u = BD__CAST(bd__unet *, d->impl);
    const bd_unet_config *c = &u->cfg;
    int64_t C = c->in_ch, H = c->image_size, HW = H * H, ch = c->ch, tc = 4 * ch, i;
    int64_t cf = u->vals[u->v_final].c;
    const bd_param_tensor *T = u->tensors;
    const float *P = d->params;
    float *zc = BD__UACT(u, u->a_z), *cn = BD__UACT(u, u->a_cnoise), *emb = BD__UACT(u, u->a_emb);
    float *t1 = BD__UACT(u, u->a_t1), *t1s = BD__UACT(u, u->a_t1s), *temb = BD__UACT(u, u->a_temb);
    float *st = BD__UACT(u, u->a_stemb), *ao = BD__UACT(u, u->a_aout);
    if (n > u->batch) return bd_error(d->ctx, BD_ERROR_STATE, "unet forward: batch %lld > reserved %lld", (long long)n, (long long)u->batch);
    u->last_train = 0;
    if (bd_backend_copy(d->ctx, zc, z, (size_t)(n * C * HW) * sizeof(float)) != BD_SUCCESS)
        return d->ctx->last_result;
    BD_OP(d->ctx, vec_axpby, cn, 1, t, 1, NULL, 1000.0f, NULL, 0, NULL, 0.0f, n, 1); /* c_noise */
    BD_OP(d->ctx, timestep_embedding_forward, emb, cn, n, ch);
    BD_OP(d->ctx, linear_forward, t1, emb, P + T[u->pt_time].offset, P + T[u->pt_time + 1].offset, n, ch, tc);
    BD_OP(d->ctx, silu_forward, t1s, t1, n * tc);
    BD_OP(d->ctx, linear_forward, temb, t1s, P + T[u->pt_time + 2].offset, P + T[u->pt_time + 3].offset, n, tc, tc);
    BD_OP(d->ctx, silu_forward, st, temb, n * tc);
    BD_OP(d->ctx, conv2d_forward, BD__UVAL(u, u->v_in), u->col, zc, P + T[u->pt_conv_in].offset,
                      P + T[u->pt_conv_in + 1].offset, n, C, H, H, ch, 3, 1, 1);
    for (i = 0; i < u->n_ops; i++) bd__unet_op_forward(d, u, &u->ops[i], n);
    BD_OP(d->ctx, groupnorm_silu_forward, ao, BD__UACT(u, u->a_mout), BD__UACT(u, u->a_rout), BD__UVAL(u, u->v_final),
                              P + T[u->pt_out].offset, P + T[u->pt_out + 1].offset, n, cf, HW, c->groups);
    BD_OP(d->ctx, conv2d_forward, out, u->col, ao, P + T[u->pt_out + 2].offset, P + T[u->pt_out + 3].offset, n, cf,
                      H, H, c->branches * C, 3, 1, 1);
    u->last_n = n;
    u->last_train = train != 0;
    return BD_SUCCESS;
}

static bd_result bd__unet_backward(bd_denoiser *d, float *dz, const float *dout, int64_t n) {
    bd__unet *u = BD__CAST(bd__unet *, d->impl);
    const bd_unet_config *c = &u->cfg;
    int64_t C = c->in_ch, H = c->image_size, HW = H * H, ch = c->ch, tc = 4 * ch, i;
    int64_t cf = u->vals[u->v_final].c;
    const bd_param_tensor *T = u->tensors;
    const float *P = d->params;
    float *Gp = d->grads, *gst = u->grad + u->g_stemb * u->batch;
    if (!u->last_train || n != u->last_n)
        return bd_error(d->ctx, BD_ERROR_STATE, "unet backward: needs a train forward of the same batch (%lld) first", (long long)n);
    bd__unet_zero(d->ctx, u->grad, u->grad_ps * u->batch);
    /* output head */
    bd__unet_zero(d->ctx, u->s1, n * cf * HW);
    BD_OP(d->ctx, conv2d_backward, u->s1, Gp + T[u->pt_out + 2].offset, Gp + T[u->pt_out + 3].offset, u->col, dout,
                       BD__UACT(u, u->a_aout), P + T[u->pt_out + 2].offset, n, cf, H, H, c->branches * C,
                       3, 1, 1);
    BD_OP(d->ctx, groupnorm_silu_backward, BD__UGRAD(u, u->v_final), Gp + T[u->pt_out].offset,
                               Gp + T[u->pt_out + 1].offset, u->s1, BD__UVAL(u, u->v_final),
                               BD__UACT(u, u->a_mout), BD__UACT(u, u->a_rout), P + T[u->pt_out].offset,
                               P + T[u->pt_out + 1].offset, n, cf, HW, c->groups);
    for (i = u->n_ops - 1; i >= 0; i--) bd__unet_op_backward(d, u, &u->ops[i], n);
    BD_OP(d->ctx, conv2d_backward, dz, Gp + T[u->pt_conv_in].offset, Gp + T[u->pt_conv_in + 1].offset, u->col,
                       BD__UGRAD(u, u->v_in), BD__UACT(u, u->a_z), P + T[u->pt_conv_in].offset, n, C, H, H,
                       ch, 3, 1, 1);
    /* time MLP: st = silu(temb), temb = L2(silu(t1)), t1 = L0(emb) */
    bd__unet_zero(d->ctx, u->s1, n * tc);
    BD_OP(d->ctx, silu_backward, u->s1, gst, BD__UACT(u, u->a_temb), n * tc);
    bd__unet_zero(d->ctx, u->s2, n * tc);
    BD_OP(d->ctx, linear_backward, u->s2, Gp + T[u->pt_time + 2].offset, Gp + T[u->pt_time + 3].offset, u->s1,
                       BD__UACT(u, u->a_t1s), P + T[u->pt_time + 2].offset, n, tc, tc);
    bd__unet_zero(d->ctx, u->s3, n * tc);
    BD_OP(d->ctx, silu_backward, u->s3, u->s2, BD__UACT(u, u->a_t1), n * tc);
    BD_OP(d->ctx, linear_backward, NULL, Gp + T[u->pt_time].offset, Gp + T[u->pt_time + 1].offset, u->s3,
                       BD__UACT(u, u->a_emb), P + T[u->pt_time].offset, n, ch, tc);
    return BD_SUCCESS;
}

static void bd__unet_destroy(bd_denoiser *d) {
    bd__unet *u;
    bd_context *ctx;
    if (!d) return;
    ctx = d->ctx;
    u = BD__CAST(bd__unet *, d->impl);
    if (u) {
        bd_backend_free(ctx, u->slab);
        bd_free(ctx, u->tensors);
        bd_free(ctx, u->tfan);
        bd_free(ctx, u->vals);
        bd_free(ctx, u->ops);
        bd_free(ctx, u);
    }
    bd_backend_free(ctx, d->params);
    bd_backend_free(ctx, d->grads);
    bd_free(ctx, d);
}

static bd_result bd__unet_create_like(const bd_denoiser *d, int64_t branches, bd_rng *rng,
                                      bd_denoiser **out) {
    bd_unet_config cfg = BD__CAST(const bd__unet *, d->impl)->cfg;
    cfg.branches = branches;
    return bd_unet_init(d->ctx, &cfg, rng, out);
}

static const bd_denoiser_vtable bd__unet_vtable = {"unet", bd__unet_reserve, bd__unet_forward,
                                                   bd__unet_backward, bd__unet_create_like,
                                                   bd__unet_destroy};

BDAPI bd_result bd_unet_init(bd_context *ctx, const bd_unet_config *cfg, bd_rng *rng,
                             bd_denoiser **out) {
    bd_result r;
    bd__unet *u;
    bd_denoiser *d;
    float *host = NULL;
    int64_t i, j;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!out || !rng) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_unet_init: NULL argument");
    *out = NULL;
    if ((r = bd_unet_config_validate(ctx, cfg)) != BD_SUCCESS) return r;
    u = BD__CAST(bd__unet *, bd_alloc(ctx, sizeof(bd__unet)));
    if (!u) return ctx->last_result;
    memset(u, 0, sizeof *u);
    u->cfg = *cfg;
    bd__unet_build(u); /* counting pass */
    if (u->overflow) {
        bd_free(ctx, u);
        return bd_error(ctx, BD_ERROR_OVERFLOW, "bd_unet_init: network sizes overflow");
    }
    d = BD__CAST(bd_denoiser *, bd_alloc(ctx, sizeof(bd_denoiser)));
    if (!d) { bd_free(ctx, u); return ctx->last_result; }
    memset(d, 0, sizeof *d);
    d->vt = &bd__unet_vtable;
    d->ctx = ctx;
    d->impl = u;
    u->tensors = BD__CAST(bd_param_tensor *, bd_alloc_array(ctx, (size_t)u->n_tensors, sizeof(bd_param_tensor)));
    u->tfan = BD__CAST(int64_t *, bd_alloc_array(ctx, (size_t)u->n_tensors, sizeof(int64_t)));
    u->vals = BD__CAST(bd__unet_val *, bd_alloc_array(ctx, (size_t)u->n_vals, sizeof(bd__unet_val)));
    u->ops = BD__CAST(bd__unet_op *, bd_alloc_array(ctx, (size_t)u->n_ops, sizeof(bd__unet_op)));
    /* params and grads live in the context's backend (device memory for
       CUDA); the initial values are drawn into a host buffer, then copied */
    host = BD__CAST(float *, bd_alloc_array(ctx, (size_t)u->n_params, sizeof(float)));
    if (host && bd_backend_alloc(ctx, (size_t)u->n_params * sizeof(float), (void **)&d->params) == BD_SUCCESS)
        bd_backend_alloc(ctx, (size_t)u->n_params * sizeof(float), (void **)&d->grads);
    if (!u->tensors || !u->tfan || !u->vals || !u->ops || !host || !d->params || !d->grads) {
        r = ctx->last_result;
        bd_free(ctx, host);
        bd__unet_destroy(d);
        return r;
    }
    bd__unet_build(u); /* filling pass */
    d->in_ch = cfg->in_ch;
    d->height = cfg->image_size;
    d->width = cfg->image_size;
    d->branches = cfg->branches;
    d->n_params = u->n_params;
    d->tensors = u->tensors;
    d->n_tensors = u->n_tensors;
    for (i = 0; i < u->n_tensors; i++) {
        const bd_param_tensor *t = &u->tensors[i];
        float *p = host + t->offset;
        if (u->tfan[i] > 0) {
            float bound = (float)(1.0 / sqrt((double)u->tfan[i]));
            bd_rng_uniform_fill(rng, p, t->numel, -bound, bound);
        } else {
            float v = u->tfan[i] < 0 ? 1.0f : 0.0f;
            for (j = 0; j < t->numel; j++) p[j] = v;
        }
    }
    r = bd_backend_zero(ctx, d->grads, (size_t)u->n_params * sizeof(float));
    if (r == BD_SUCCESS) r = bd_backend_upload(ctx, d->params, host, (size_t)u->n_params * sizeof(float));
    bd_free(ctx, host);
    if (r != BD_SUCCESS) {
        bd__unet_destroy(d);
        return r;
    }
    *out = d;
    return BD_SUCCESS;
}

BDAPI bd_result bd_unet_get_config(const bd_denoiser *d, bd_unet_config *cfg) {
    if (!d || !cfg) return BD_ERROR_INVALID_ARGUMENT;
    if (d->vt != &bd__unet_vtable)
        return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_unet_get_config: denoiser kind \"%s\" is not unet", d->vt ? d->vt->kind : "?");
    *cfg = BD__CAST(const bd__unet *, d->impl)->cfg;
    return BD_SUCCESS;
}

/* Re-home params, grads and the activation slab in `to`'s backend (see
   bd_denoiser_to_context).  The host-side plan stays; it was
   allocated with from's allocator, so both contexts must share it. */
static bd_result bd__unet_to_context(bd_denoiser *d, bd_context *to) {
    bd__unet *u = BD__CAST(bd__unet *, d->impl);
    bd_context *from = d->ctx;
    size_t bytes = (size_t)d->n_params * sizeof(float);
    int64_t batch = u->batch;
    float *np = NULL, *ng = NULL;
    bd_result r;
    r = bd_backend_alloc(to, bytes, (void **)&np);
    if (r == BD_SUCCESS) r = bd_backend_alloc(to, bytes, (void **)&ng);
    if (r == BD_SUCCESS) r = bd_backend_transfer(to, np, from, d->params, bytes);
    if (r == BD_SUCCESS) r = bd_backend_transfer(to, ng, from, d->grads, bytes);
    if (r != BD_SUCCESS) {
        bd_backend_free(to, np);
        bd_backend_free(to, ng);
        return r;
    }
    bd_backend_free(from, d->params);
    bd_backend_free(from, d->grads);
    bd_backend_free(from, u->slab);
    u->slab = NULL;
    u->batch = 0;
    u->last_n = 0;
    u->last_train = 0;
    d->reserved_batch = 0;
    d->params = np;
    d->grads = ng;
    d->ctx = to;
    return batch > 0 ? bd__unet_reserve(d, batch) : BD_SUCCESS;
}

/* ---- drivers: training and sampling in the model's backend -------------- */
BDAPI bd_result bd_denoiser_to_context(bd_denoiser *d, bd_context *ctx) {
    bd_context *from;
    if (!d || !ctx) return BD_ERROR_INVALID_ARGUMENT;
    from = d->ctx;
    if (from == ctx) return BD_SUCCESS;
    if (d->vt != &bd__unet_vtable)
        return bd_error(ctx, BD_ERROR_UNSUPPORTED, "bd_denoiser_to_context: kind \"%s\" cannot move between contexts (only \"unet\")",
                        d->vt ? d->vt->kind : "?");
    if (from->allocator.alloc != ctx->allocator.alloc || from->allocator.free != ctx->allocator.free ||
        from->allocator.user_data != ctx->allocator.user_data)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_denoiser_to_context: the two contexts must share one host allocator");
    return bd__unet_to_context(d, ctx);
}

/* UNET-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>schedule                                                               */
/* ------------------------------------------------------------------------ */
/* Cosine: alpha = cos(a)/cos(b), a = pi/2 (t+s)/(1+s), b = pi/2 s/(1+s).
   sigma^2 = 1 - alpha^2 = sin(a-b) sin(a+b) / cos^2(b) exactly, which keeps
   full relative precision near t = 0 where 1 - alpha^2 would cancel.
   Linear: log(alpha_bar) interpolated in the table; sigma^2 = -expm1(.). */
#define BD__COSINE_S 0.008
#define BD__COSINE_ALPHA_MIN 1e-4

static void bd__cosine_alpha_sigma2(double t, double *alpha, double *sigma2) {
    double a = 0.5 * BD__PI * (t + BD__COSINE_S) / (1.0 + BD__COSINE_S);
    double b = 0.5 * BD__PI * BD__COSINE_S / (1.0 + BD__COSINE_S);
    double cb = cos(b);
    double al = cos(a) / cb;
    if (al < BD__COSINE_ALPHA_MIN) {
        *alpha = BD__COSINE_ALPHA_MIN;
        *sigma2 = 1.0 - BD__COSINE_ALPHA_MIN * BD__COSINE_ALPHA_MIN;
        return;
    }
    *alpha = al;
    *sigma2 = sin(a - b) * sin(a + b) / (cb * cb);
}

static double bd__linear_log_alpha_bar(const bd_schedule *s, double t) {
    double x = t * 1000.0, f;
    int64_t i;
    if (x <= 0.0) return 0.0;
    if (x >= 1000.0) return s->log_alpha_bar[1000];
    i = (int64_t)x;
    if (i > 999) i = 999;
    f = x - (double)i;
    return s->log_alpha_bar[i] + f * (s->log_alpha_bar[i + 1] - s->log_alpha_bar[i]);
}

static double bd__clamp01(double t) {
    if (!(t >= 0.0)) return 0.0; /* also NaN */
    return t > 1.0 ? 1.0 : t;
}

BDAPI bd_result bd_schedule_init(bd_schedule *s, bd_schedule_kind kind) {
    int64_t i;
    if (!s) return BD_ERROR_INVALID_ARGUMENT;
    if (kind != BD_SCHEDULE_COSINE && kind != BD_SCHEDULE_LINEAR) return BD_ERROR_INVALID_ARGUMENT;
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->log_alpha_bar[0] = 0.0;
    for (i = 1; i <= 1000; i++) {
        /* beta_j = linspace(1e-4, 0.02, 1000)[j-1] */
        double beta = 1e-4 + (double)(i - 1) * ((0.02 - 1e-4) / 999.0);
        s->log_alpha_bar[i] = s->log_alpha_bar[i - 1] + log1p(-beta);
    }
    return BD_SUCCESS;
}

static void bd__alpha_sigma2(const bd_schedule *s, double t, double *alpha, double *sigma2) {
    t = bd__clamp01(t);
    if (s->kind == BD_SCHEDULE_LINEAR) {
        double lab = bd__linear_log_alpha_bar(s, t);
        *alpha = exp(0.5 * lab);
        *sigma2 = -expm1(lab);
    } else {
        bd__cosine_alpha_sigma2(t, alpha, sigma2);
    }
}

BDAPI void bd_schedule_alpha_sigma(const bd_schedule *s, double t, double *alpha, double *sigma) {
    double a, s2;
    bd__alpha_sigma2(s, t, &a, &s2);
    if (alpha) *alpha = a;
    if (sigma) *sigma = sqrt(s2 > 0.0 ? s2 : 0.0);
}

BDAPI double bd_schedule_logsnr(const bd_schedule *s, double t) {
    double a, s2;
    bd__alpha_sigma2(s, t, &a, &s2);
    if (s2 <= 0.0) return HUGE_VAL;
    return 2.0 * log(a) - log(s2);
}

BDAPI double bd_schedule_t_from_logsnr(const bd_schedule *s, double l) {
    if (l != l) return 1.0;
    if (l <= bd_schedule_logsnr(s, 1.0)) return 1.0;
    if (l == HUGE_VAL) return 0.0;
    if (s->kind == BD_SCHEDULE_COSINE) {
        /* alpha^2 = sigmoid(l), sigma^2 = sigmoid(-l); cos(a) = alpha cos(b);
           sin(a)^2 = sin^2 b + sigma^2 cos^2 b (no cancellation) */
        double b = 0.5 * BD__PI * BD__COSINE_S / (1.0 + BD__COSINE_S);
        double al2 = l >= 0 ? 1.0 / (1.0 + exp(-l)) : exp(l) / (1.0 + exp(l));
        double sg2 = l >= 0 ? exp(-l) / (1.0 + exp(-l)) : 1.0 / (1.0 + exp(l));
        double cb = cos(b), sb = sin(b);
        double a = atan2(sqrt(sb * sb + sg2 * cb * cb), sqrt(al2) * cb);
        return bd__clamp01(a * (1.0 + BD__COSINE_S) / (0.5 * BD__PI) - BD__COSINE_S);
    } else {
        /* logSNR is strictly decreasing in t: bisection in double */
        double lo = 0.0, hi = 1.0;
        int it;
        for (it = 0; it < 200; it++) {
            double mid = 0.5 * (lo + hi);
            if (mid <= lo || mid >= hi) break;
            if (bd_schedule_logsnr(s, mid) > l) lo = mid;
            else hi = mid;
        }
        return 0.5 * (lo + hi);
    }
}

BDAPI double bd_schedule_t_min(const bd_schedule *s) {
    double l = -2.0 * log(BD_GRID_SIGMA_MIN);
    return bd__clamp01(bd_schedule_t_from_logsnr(s, l));
}

static const char *const bd__schedule_names[] = {"cosine", "linear"};
BDAPI const char *bd_schedule_name(bd_schedule_kind k) {
    return (int)k >= 0 && (int)k < 2 ? bd__schedule_names[k] : "unknown";
}
BDAPI bd_result bd_schedule_parse(const char *name, bd_schedule_kind *out) {
    int k = bd__enum_find(bd__schedule_names, 2, name);
    if (k < 0 || !out) return BD_ERROR_INVALID_ARGUMENT;
    *out = (bd_schedule_kind)k;
    return BD_SUCCESS;
}

static const char *const bd__param_names[] = {"eps", "x0", "v"};
BDAPI const char *bd_param_name(bd_param_kind k) {
    return (int)k >= 0 && (int)k < 3 ? bd__param_names[k] : "unknown";
}
BDAPI bd_result bd_param_parse(const char *name, bd_param_kind *out) {
    int k = bd__enum_find(bd__param_names, 3, name);
    if (k < 0 || !out) return BD_ERROR_INVALID_ARGUMENT;
    *out = (bd_param_kind)k;
    return BD_SUCCESS;
}

BDAPI void bd_param_predict(bd_param_kind p, float *x_hat, float *eps_hat, const float *o,
                            int64_t K, int64_t branch, const float *z, const double *alpha,
                            const double *sigma, int64_t N, int64_t D) {
    int64_t n, i;
    for (n = 0; n < N; n++) {
        const float *on = o + (n * K + branch) * D;
        const float *zn = z + n * D;
        float *xn = x_hat ? x_hat + n * D : NULL;
        float *en = eps_hat ? eps_hat + n * D : NULL;
        double a = alpha[n], s = sigma[n];
        for (i = 0; i < D; i++) {
            double ov = on[i], zv = zn[i], xv, ev;
            if (p == BD_PARAM_EPS) {
                ev = ov;
                xv = a > 0.0 ? (zv - s * ov) / a : zv;
            } else if (p == BD_PARAM_X0) {
                xv = ov;
                ev = s > 0.0 ? (zv - a * ov) / s : 0.0;
            } else {
                xv = a * zv - s * ov;
                ev = s * zv + a * ov;
            }
            if (xn) xn[i] = (float)xv;
            if (en) en[i] = (float)ev;
        }
    }
}

BDAPI void bd_param_target(bd_param_kind p, float *target, const float *x, const float *eps,
                           const double *alpha, const double *sigma, int64_t N, int64_t D) {
    int64_t n, i;
    for (n = 0; n < N; n++) {
        double a = alpha[n], s = sigma[n];
        for (i = 0; i < D; i++) {
            int64_t j = n * D + i;
            if (p == BD_PARAM_EPS) target[j] = eps[j];
            else if (p == BD_PARAM_X0) target[j] = x[j];
            else target[j] = (float)(a * (double)eps[j] - s * (double)x[j]);
        }
    }
}

BDAPI void bd_param_x_coeffs(bd_param_kind p, double alpha, double sigma, double *a, double *c) {
    if (p == BD_PARAM_EPS) {
        *a = alpha > 0.0 ? 1.0 / alpha : 1.0;
        *c = alpha > 0.0 ? -sigma / alpha : 0.0;
    } else if (p == BD_PARAM_X0) {
        *a = 0.0;
        *c = 1.0;
    } else {
        *a = alpha;
        *c = -sigma;
    }
}

BDAPI bd_result bd_time_grid(bd_context *ctx, const bd_schedule *s, bd_grid_kind kind,
                             int64_t steps, double *out) {
    int64_t i;
    if (!s || !out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_time_grid: NULL argument");
    if (steps < 1) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_time_grid: steps %lld < 1", (long long)steps);
    if (kind != BD_GRID_UNIFORM_T && kind != BD_GRID_LOGSNR && kind != BD_GRID_KARRAS)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_time_grid: unknown grid kind %d", (int)kind);
    out[0] = 1.0;
    out[steps] = 0.0;
    if (kind == BD_GRID_UNIFORM_T) {
        for (i = 1; i < steps; i++) out[i] = 1.0 - (double)i / (double)steps;
    } else if (steps > 1) {
        double tmin = bd_schedule_t_min(s);
        double l0 = bd_schedule_logsnr(s, 1.0), l1 = bd_schedule_logsnr(s, tmin);
        double r0 = pow(exp(-0.5 * l0), 1.0 / BD_GRID_RHO), r1 = pow(exp(-0.5 * l1), 1.0 / BD_GRID_RHO);
        for (i = 1; i < steps - 1; i++) {
            double f = (double)i / (double)(steps - 1), l;
            if (kind == BD_GRID_LOGSNR) l = l0 + f * (l1 - l0);
            else l = -2.0 * BD_GRID_RHO * log(r0 + f * (r1 - r0));
            out[i] = bd_schedule_t_from_logsnr(s, l);
        }
        out[steps - 1] = tmin;
    }
    for (i = 0; i < steps; i++)
        if (!(out[i] > out[i + 1]))
            return bd_error(ctx, BD_ERROR_CONFIG, "bd_time_grid: %lld steps give a non-decreasing grid at %lld (t=%g)",
                            (long long)steps, (long long)i, out[i]);
    return BD_SUCCESS;
}

static const char *const bd__grid_names[] = {"uniform_t", "logsnr", "karras", "uniform"};
BDAPI const char *bd_grid_name(bd_grid_kind k) {
    return (int)k >= 0 && (int)k < 3 ? bd__grid_names[k] : "unknown";
}
BDAPI bd_result bd_grid_parse(const char *name, bd_grid_kind *out) {
    int k = bd__enum_find(bd__grid_names, 4, name);
    if (k >= 3) k = BD_GRID_UNIFORM_T; /* the alias */
    if (k < 0 || !out) return BD_ERROR_INVALID_ARGUMENT;
    *out = (bd_grid_kind)k;
    return BD_SUCCESS;
}
/* SCHEDULE-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>sampler                                                                */
/* ------------------------------------------------------------------------ */
/* Analytic denoiser.  For z = alpha x + sigma eps with x from component m,
   z ~ N(alpha mu_m, v I), v = alpha^2 std^2 + sigma^2, so
       p(m | z) = softmax_m(-|z - alpha mu_m|^2 / (2 v))
       E[x | z] = (sigma^2 mbar + alpha std^2 z) / v,  mbar = sum_m p_m mu_m
       E[eps | z] = sigma (z - alpha mbar) / v
   (no division by sigma, so it is exact down to t -> 0).  All in double. */
typedef struct bd__analytic {
    bd_analytic_config cfg; /* cfg.points -> points */
    float *points;          /* (M, D) */
    double *logw;           /* (M) scratch */
    double *mbar;           /* (D) scratch */
    bd_schedule sched;
} bd__analytic;

static bd_result bd__analytic_reserve(bd_denoiser *d, int64_t B) {
    d->reserved_batch = B;
    return BD_SUCCESS;
}

/* x_hat and eps_hat (double) of one sample into xh/eh (D doubles each) */
static void bd__analytic_one(bd__analytic *a, double *xh, double *eh, const float *z, double t,
                             int64_t D) {
    int64_t M = a->cfg.n_points, m, i;
    double al, sg, s2 = a->cfg.std * a->cfg.std, v, mx = -HUGE_VAL, tot = 0.0;
    bd_schedule_alpha_sigma(&a->sched, t, &al, &sg);
    v = al * al * s2 + sg * sg;
    if (!(v > 0.0)) { /* t = 0 with point masses: the data is z itself */
        for (i = 0; i < D; i++) { xh[i] = z[i]; eh[i] = 0.0; }
        return;
    }
    for (m = 0; m < M; m++) {
        const float *mu = a->points + m * D;
        double d2 = 0.0;
        for (i = 0; i < D; i++) {
            double e = (double)z[i] - al * (double)mu[i];
            d2 += e * e;
        }
        a->logw[m] = -d2 / (2.0 * v);
        if (a->logw[m] > mx) mx = a->logw[m];
    }
    for (m = 0; m < M; m++) {
        a->logw[m] = exp(a->logw[m] - mx);
        tot += a->logw[m];
    }
    for (i = 0; i < D; i++) a->mbar[i] = 0.0;
    for (m = 0; m < M; m++) {
        const float *mu = a->points + m * D;
        double p = a->logw[m] / tot;
        for (i = 0; i < D; i++) a->mbar[i] += p * (double)mu[i];
    }
    for (i = 0; i < D; i++) {
        xh[i] = (sg * sg * a->mbar[i] + al * s2 * (double)z[i]) / v;
        eh[i] = sg * ((double)z[i] - al * a->mbar[i]) / v;
    }
}

static bd_result bd__analytic_forward(bd_denoiser *d, float *out, const float *z, const float *t,
                                      int64_t n, int train) {
    bd__analytic *a = BD__CAST(bd__analytic *, d->impl);
    int64_t D = d->in_ch * d->height * d->width, K = d->branches, j, k, i;
    (void)train;
    for (j = 0; j < n; j++) {
        /* mbar scratch holds 3 D doubles: [mbar | x_hat | eps_hat] */
        double al, sg;
        float *o0 = out + j * K * D;
        bd_schedule_alpha_sigma(&a->sched, (double)t[j], &al, &sg);
        bd__analytic_one(a, a->mbar + D, a->mbar + 2 * D, z + j * D, (double)t[j], D);
        for (i = 0; i < D; i++) {
            double xh = a->mbar[D + i], eh = a->mbar[2 * D + i], o;
            if (a->cfg.param == BD_PARAM_EPS) o = eh;
            else if (a->cfg.param == BD_PARAM_X0) o = xh;
            else o = al * eh - sg * xh;
            o0[i] = (float)o;
        }
        for (k = 1; k < K; k++) memcpy(o0 + k * D, o0, (size_t)D * sizeof(float));
    }
    return BD_SUCCESS;
}

static bd_result bd__analytic_backward(bd_denoiser *d, float *dz, const float *dout, int64_t n) {
    (void)dz; (void)dout; (void)n;
    return bd_error(d->ctx, BD_ERROR_UNSUPPORTED, "analytic denoiser has no backward pass");
}

static void bd__analytic_destroy(bd_denoiser *d) {
    bd_context *ctx = d->ctx;
    bd__analytic *a = BD__CAST(bd__analytic *, d->impl);
    if (a) {
        bd_free(ctx, a->points);
        bd_free(ctx, a->logw);
        bd_free(ctx, a->mbar);
    }
    bd_free(ctx, a);
    bd_free(ctx, d);
}

static bd_result bd__analytic_create_like(const bd_denoiser *d, int64_t branches, bd_rng *rng,
                                          bd_denoiser **out) {
    const bd__analytic *a = BD__CAST(const bd__analytic *, d->impl);
    bd_analytic_config c = a->cfg;
    (void)rng;
    c.points = a->points;
    c.branches = branches;
    return bd_analytic_create(d->ctx, &c, out);
}

static const bd_denoiser_vtable bd__analytic_vtable = {
    "analytic", bd__analytic_reserve, bd__analytic_forward, bd__analytic_backward,
    bd__analytic_create_like, bd__analytic_destroy};

BDAPI bd_analytic_config bd_analytic_config_init(int64_t dim, const float *points,
                                                 int64_t n_points, double std) {
    bd_analytic_config c;
    memset(&c, 0, sizeof c);
    c.in_ch = dim;
    c.height = 1;
    c.width = 1;
    c.points = points;
    c.n_points = n_points;
    c.std = std;
    c.param = BD_PARAM_V;
    c.schedule = BD_SCHEDULE_COSINE;
    c.branches = 1;
    return c;
}

BDAPI bd_result bd_analytic_create(bd_context *ctx, const bd_analytic_config *config,
                                   bd_denoiser **out) {
    bd_denoiser *d;
    bd__analytic *a;
    int64_t D, M, i;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!config || !out || !config->points)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_analytic_create: NULL argument");
    *out = NULL;
    M = config->n_points;
    if (config->in_ch < 1 || config->height < 1 || config->width < 1 || M < 1 ||
        config->in_ch > ((int64_t)1 << 24) || config->height > ((int64_t)1 << 16) ||
        config->width > ((int64_t)1 << 16) || M > ((int64_t)1 << 24) ||
        !(config->std >= 0.0) || config->branches < 1 || config->branches > 64 ||
        (config->param != BD_PARAM_EPS && config->param != BD_PARAM_X0 && config->param != BD_PARAM_V) ||
        (config->schedule != BD_SCHEDULE_COSINE && config->schedule != BD_SCHEDULE_LINEAR))
        return bd_error(ctx, BD_ERROR_CONFIG, "bd_analytic_create: invalid configuration");
    D = config->in_ch * config->height * config->width;
    if (D > ((int64_t)1 << 28) || M > (((int64_t)1 << 40) / D))
        return bd_error(ctx, BD_ERROR_OVERFLOW, "bd_analytic_create: %lld points of %lld dims is too large",
                        (long long)M, (long long)D);
    d = BD__CAST(bd_denoiser *, bd_alloc(ctx, sizeof(bd_denoiser)));
    if (!d) return ctx->last_result;
    memset(d, 0, sizeof *d);
    d->vt = &bd__analytic_vtable;
    d->ctx = ctx;
    d->in_ch = config->in_ch; d->height = config->height; d->width = config->width;
    d->branches = config->branches;
    a = BD__CAST(bd__analytic *, bd_alloc(ctx, sizeof(bd__analytic)));
    if (!a) { bd_free(ctx, d); return ctx->last_result; }
    memset(a, 0, sizeof *a);
    d->impl = a;
    a->cfg = *config;
    a->points = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(M * D), sizeof(float)));
    a->logw = BD__CAST(double *, bd_alloc_array(ctx, (size_t)M, sizeof(double)));
    a->mbar = BD__CAST(double *, bd_alloc_array(ctx, (size_t)(3 * D), sizeof(double)));
    if (!a->points || !a->logw || !a->mbar) {
        bd_result r = ctx->last_result;
        bd__analytic_destroy(d);
        return r;
    }
    for (i = 0; i < M * D; i++) a->points[i] = config->points[i];
    a->cfg.points = a->points;
    bd_schedule_init(&a->sched, config->schedule);
    *out = d;
    return BD_SUCCESS;
}

BDAPI bd_result bd_analytic_posterior_mean(bd_denoiser *d, float *x_hat, const float *z,
                                           const float *t, int64_t N) {
    bd__analytic *a;
    int64_t D, j, i;
    if (!d || !d->vt) return BD_ERROR_INVALID_ARGUMENT;
    if (d->vt != &bd__analytic_vtable)
        return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_analytic_posterior_mean: not an analytic denoiser");
    if (!x_hat || !z || !t || N < 0)
        return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_analytic_posterior_mean: bad argument");
    a = BD__CAST(bd__analytic *, d->impl);
    D = d->in_ch * d->height * d->width;
    for (j = 0; j < N; j++) {
        bd__analytic_one(a, a->mbar + D, a->mbar + 2 * D, z + j * D, (double)t[j], D);
        for (i = 0; i < D; i++) x_hat[j * D + i] = (float)a->mbar[D + i];
    }
    return BD_SUCCESS;
}

/* ---- samplers ---- */
BDAPI bd_sampler_config bd_sampler_config_init(bd_sampler_kind kind, int64_t steps) {
    bd_sampler_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.steps = steps;
    c.grid = BD_GRID_UNIFORM_T;
    c.custom_grid = NULL;
    c.branch = -1;
    c.param = BD_PARAM_V;
    c.schedule = BD_SCHEDULE_COSINE;
    c.eta = 0.0;
    c.clip_x = 0;
    return c;
}

/* The update a step t -> s uses.  Heun's step that starts at the top of the
   schedule (t = 1, where sig = sigma/alpha is the schedule's clamp: 1e4 for
   cosine, 157 for linear) is an Euler step: the trapezoid rule would
   multiply the difference of the two slopes by an interval ~sig_max long
   (13 uniform-t steps of the Fashion-MNIST teacher: FD-RF 2e4, samples
   saturated; Euler 0.28).  EDM's Heun never starts above sig = 80.  One first-order step
   keeps the global order 2 (its local error is O(h^2)); NFE = 2S - 2 on a
   grid from 1 to 0.  docs/samplers.md. */
static bd_sampler_kind bd__sampler_step_kind(bd_sampler_kind kind, double t) {
    return (kind == BD_SAMPLER_HEUN && t >= 1.0) ? BD_SAMPLER_EULER : kind;
}
static const char *const bd__sampler_names[] = {"ddim", "ddpm", "euler", "heun", "dpmpp2m", "dpmpp"};
BDAPI const char *bd_sampler_name(bd_sampler_kind k) {
    return (int)k >= 0 && (int)k < 5 ? bd__sampler_names[k] : "unknown";
}
BDAPI bd_result bd_sampler_parse(const char *name, bd_sampler_kind *out) {
    int k = bd__enum_find(bd__sampler_names, 6, name);
    if (k >= 5) k = BD_SAMPLER_DPMPP_2M; /* the alias */
    if (k < 0 || !out) return BD_ERROR_INVALID_ARGUMENT;
    *out = (bd_sampler_kind)k;
    return BD_SUCCESS;
}

BDAPI void bd_noise_fill(float *x, int64_t count, uint64_t seed) {
    bd_rng r = bd_rng_init(seed);
    if (x && count > 0) bd_rng_normal(&r, x, count);
}

BDAPI void bd_ddim_jump(float *z_s, const float *x_hat, const float *eps_hat,
                        const double *alpha_s, const double *sigma_s, int64_t N, int64_t D) {
    int64_t n, i;
    for (n = 0; n < N; n++)
        for (i = 0; i < D; i++) {
            int64_t j = n * D + i;
            z_s[j] = (float)(alpha_s[n] * (double)x_hat[j] + sigma_s[n] * (double)eps_hat[j]);
        }
}

BDAPI bd_result bd_model_predict(bd_denoiser *d, const bd_schedule *s, bd_param_kind p,
                                 int64_t branch, float *out, float *x_hat, float *eps_hat,
                                 const float *z, const float *t, int64_t N) {
    bd_result r;
    int64_t D, K, n;
    if (!d || !d->vt) return BD_ERROR_INVALID_ARGUMENT;
    if (!s || !out || !z || !t) return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_predict: NULL argument");
    K = d->branches;
    D = bd_denoiser_sample_size(d);
    if (branch < 0 || branch >= K)
        return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_predict: branch %lld not in 0..%lld",
                        (long long)branch, (long long)(K - 1));
    if (p != BD_PARAM_EPS && p != BD_PARAM_X0 && p != BD_PARAM_V)
        return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_predict: unknown param kind %d", (int)p);
    r = bd_denoiser_forward(d, out, z, t, N, 0);
    if (r != BD_SUCCESS) return r;
    for (n = 0; n < N; n++) {
        double al, sg;
        bd_schedule_alpha_sigma(s, (double)t[n], &al, &sg);
        bd_param_predict(p, x_hat ? x_hat + n * D : NULL, eps_hat ? eps_hat + n * D : NULL,
                         out + n * K * D, K, branch, z + n * D, &al, &sg, 1, D);
    }
    return BD_SUCCESS;
}

/* Only the UNet runs its layers through the backend table; the other
   kinds compute on the host and cannot use device buffers. */
static bd_result bd__backend_model_ok(bd_denoiser *d, const char *who) {
    if (bd_backend_on_device(d->ctx) && (!d->vt || strcmp(d->vt->kind, "unet") != 0))
        return bd_error(d->ctx, BD_ERROR_UNSUPPORTED, "%s: a \"%s\" denoiser cannot run on the device backend '%s' (only \"unet\")",
                        who, d->vt ? d->vt->kind : "?", d->ctx->backend->name);
    return BD_SUCCESS;
}

/* A failure recorded on the model's context `from` (a backend op, a
   forward) is repeated on the caller's context `to` when they differ. */
static bd_result bd__relay(bd_context *to, bd_context *from, bd_result r) {
    if (r != BD_SUCCESS && to && from && to != from) return bd_error(to, r, "%s", bd_context_message(from));
    return r;
}

BDAPI void bd_sampler_free(bd_sampler *s) {
    bd_context *ctx, *bc;
    if (!s) return;
    ctx = s->ctx;
    bc = s->model_ctx; /* the model may be gone already */
    bd_backend_free(bc, s->z);
    bd_backend_free(bc, s->out);
    bd_backend_free(bc, s->t);
    bd_backend_free(bc, s->x_hat);
    bd_backend_free(bc, s->eps_hat);
    bd_backend_free(bc, s->aux);
    bd_backend_free(bc, s->aux2);
    bd_backend_free(bc, s->noise);
    bd_free(ctx, s->h_noise);
    bd_free(ctx, s->h_z);
    bd_free(ctx, s->h_x);
    bd_free(ctx, s->h_e);
    bd_free(ctx, s);
}

BDAPI bd_result bd_sampler_init(bd_context *ctx, bd_denoiser *model, int64_t max_batch,
                                bd_sampler **out) {
    bd_sampler *s;
    bd_context *bc;
    bd_result r;
    int64_t B = max_batch, D, KD;
    size_t fs = sizeof(float);
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!model || !out || !model->vt || !model->ctx) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_init: NULL argument or uninitialised model");
    *out = NULL;
    bc = model->ctx;
    if (B < 1) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_init: max_batch %lld < 1", (long long)B);
    if ((r = bd__backend_model_ok(model, "bd_sampler_init")) != BD_SUCCESS) return bd__relay(ctx, bc, r);
    D = bd_denoiser_sample_size(model);
    KD = D * model->branches;
    if (D < 1 || KD < 1 || B > (((int64_t)1 << 40) / KD))
        return bd_error(ctx, BD_ERROR_OVERFLOW, "bd_sampler_init: batch %lld of %lld floats is too large",
                        (long long)B, (long long)KD);
    if ((r = bd_denoiser_reserve(model, B)) != BD_SUCCESS) return bd__relay(ctx, bc, r);
    s = BD__CAST(bd_sampler *, bd_alloc(ctx, sizeof(bd_sampler)));
    if (!s) return ctx->last_result;
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->model = model;
    s->model_ctx = bc;
    s->max_batch = B;
    s->D = D;
    s->KD = KD;
    r = bd_backend_alloc(bc, (size_t)(B * D) * fs, (void **)&s->z);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * KD) * fs, (void **)&s->out);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)B * fs, (void **)&s->t);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * D) * fs, (void **)&s->x_hat);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * D) * fs, (void **)&s->eps_hat);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * D) * fs, (void **)&s->aux);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * D) * fs, (void **)&s->aux2);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * D) * fs, (void **)&s->noise);
    if (r == BD_SUCCESS && bd_backend_on_device(bc)) {
        s->h_noise = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(B * D), fs));
        s->h_z = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(B * D), fs));
        s->h_x = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(B * D), fs));
        s->h_e = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(B * D), fs));
        if (!s->h_noise || !s->h_z || !s->h_x || !s->h_e) r = ctx->last_result;
    }
    if (r != BD_SUCCESS) {
        bd_sampler_free(s);
        return bd__relay(ctx, bc, r);
    }
    *out = s;
    return BD_SUCCESS;
}

BDAPI bd_result bd_sampler_grid(bd_context *ctx, const bd_sampler_config *cfg, double *out) {
    bd_schedule sc;
    int64_t i, S;
    if (!cfg || !out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_grid: NULL argument");
    S = cfg->steps;
    if (S < 1 || S > BD_SAMPLER_MAX_STEPS)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "sampler: steps %lld not in 1..%d", (long long)S, BD_SAMPLER_MAX_STEPS);
    if (cfg->custom_grid) {
        const double *g = cfg->custom_grid;
        if (!(g[0] <= 1.0) || !(g[S] >= 0.0))
            return bd_error(ctx, BD_ERROR_CONFIG, "sampler: custom grid must run within [0, 1] (got %g .. %g)", g[0], g[S]);
        for (i = 0; i < S; i++)
            if (!(g[i] > g[i + 1]))
                return bd_error(ctx, BD_ERROR_CONFIG, "sampler: custom grid not strictly decreasing at %lld (%g, %g)",
                                (long long)i, g[i], g[i + 1]);
        for (i = 0; i <= S; i++) out[i] = g[i];
        return BD_SUCCESS;
    }
    if (bd_schedule_init(&sc, cfg->schedule) != BD_SUCCESS)
        return bd_error(ctx, BD_ERROR_CONFIG, "sampler: unknown schedule %d", (int)cfg->schedule);
    return bd_time_grid(ctx, &sc, cfg->grid, S, out);
}

/* A host pointer to the first n floats of backend buffer buf: buf itself
   on a host backend, else stage after a download. */
static bd_result bd__host_view(bd_context *bc, float *buf, float *stage, int64_t n, float **out) {
    if (!bd_backend_on_device(bc)) {
        *out = buf;
        return BD_SUCCESS;
    }
    *out = stage;
    return bd_backend_download(bc, stage, buf, (size_t)n * sizeof(float));
}

/* one network call on z at time t: x_hat, eps_hat (nb rows), then clip_x */
static bd_result bd__sampler_eval(bd_sampler *s, const bd_sampler_config *cfg, const bd_schedule *sc,
                                  int64_t branch, float *z, double t, int64_t nb) {
    bd_context *ctx = s->model->ctx;
    int64_t D = s->D, KD = s->KD, m = nb * D, j;
    const float *o = s->out + branch * D;
    double al, sg;
    bd_result r;
    bd_schedule_alpha_sigma(sc, t, &al, &sg);
    BD_OP(ctx, vec_fill, s->t, (float)t, nb);
    if ((r = bd_denoiser_forward(s->model, s->out, z, s->t, nb, 0)) != BD_SUCCESS) return r;
    /* bd_param_predict, as row operations */
    if (cfg->param == BD_PARAM_EPS) {
        BD_OP(ctx, vec_axpby, s->eps_hat, D, o, KD, NULL, 1.0f, NULL, 0, NULL, 0.0f, nb, D);
        if (al > 0.0)
            BD_OP(ctx, vec_axpby, s->x_hat, D, z, D, NULL, (float)(1.0 / al), o, KD, NULL, (float)(-sg / al), nb, D);
        else
            BD_OP(ctx, vec_axpby, s->x_hat, D, z, D, NULL, 1.0f, NULL, 0, NULL, 0.0f, nb, D);
    } else if (cfg->param == BD_PARAM_X0) {
        BD_OP(ctx, vec_axpby, s->x_hat, D, o, KD, NULL, 1.0f, NULL, 0, NULL, 0.0f, nb, D);
        if (sg > 0.0)
            BD_OP(ctx, vec_axpby, s->eps_hat, D, z, D, NULL, (float)(1.0 / sg), o, KD, NULL, (float)(-al / sg), nb, D);
        else
            BD_OP(ctx, vec_fill, s->eps_hat, 0.0f, m);
    } else {
        BD_OP(ctx, vec_axpby, s->x_hat, D, z, D, NULL, (float)al, o, KD, NULL, (float)(-sg), nb, D);
        BD_OP(ctx, vec_axpby, s->eps_hat, D, z, D, NULL, (float)sg, o, KD, NULL, (float)al, nb, D);
    }
    if (cfg->clip_x) { /* x_hat into [-1, 1], eps_hat made consistent (host copies on a device) */
        float *hz, *hx, *he;
        if ((r = bd__host_view(ctx, z, s->h_z, m, &hz)) != BD_SUCCESS) return r;
        if ((r = bd__host_view(ctx, s->x_hat, s->h_x, m, &hx)) != BD_SUCCESS) return r;
        if ((r = bd__host_view(ctx, s->eps_hat, s->h_e, m, &he)) != BD_SUCCESS) return r;
        for (j = 0; j < m; j++) {
            float v = hx[j] < -1.0f ? -1.0f : (hx[j] > 1.0f ? 1.0f : hx[j]);
            if (v != hx[j] && sg > 0.0) he[j] = (float)(((double)hz[j] - al * (double)v) / sg);
            hx[j] = v;
        }
        if (bd_backend_on_device(ctx)) {
            if ((r = bd_backend_upload(ctx, s->x_hat, hx, (size_t)m * sizeof(float))) != BD_SUCCESS) return r;
            if ((r = bd_backend_upload(ctx, s->eps_hat, he, (size_t)m * sizeof(float))) != BD_SUCCESS) return r;
        }
    }
    return BD_SUCCESS;
}

/* z = a z + b y (m floats as one row) */
#define BD__S_AXPBY(ctx, zz, a, yy, b, m)                                                    \
    BD_OP(ctx, vec_axpby, zz, m, zz, m, NULL, (float)(a), yy, m, NULL, (float)(b), 1, m)

/* N(0, 1) draws into the backend buffer s->noise (m floats) */
static bd_result bd__sampler_noise(bd_sampler *s, bd_rng *rng, int64_t m) {
    bd_context *ctx = s->model->ctx;
    if (!bd_backend_on_device(ctx)) {
        bd_rng_normal(rng, s->noise, m);
        return BD_SUCCESS;
    }
    bd_rng_normal(rng, s->h_noise, m);
    return bd_backend_upload(ctx, s->noise, s->h_noise, (size_t)m * sizeof(float));
}

/* The S steps of cfg on z (nb samples, a backend buffer; the grid in
   s->grid).  first: index of the chunk's first sample, for the callback. */
static bd_result bd__sampler_solve(bd_sampler *s, const bd_sampler_config *cfg, const bd_schedule *sc,
                                   int64_t branch, float *z, int64_t nb, bd_rng *rng, int64_t first,
                                   int64_t *count_out) {
    bd_context *ctx = s->model->ctx;
    int64_t S = cfg->steps, D = s->D, m = nb * D, i, count = 0;
    double h_prev = 0.0;
    int have_prev = 0;
    bd_result r;
    for (i = 0; i < S; i++) {
        double t = s->grid[i], u = s->grid[i + 1], at, st, as, ss;
        bd_schedule_alpha_sigma(sc, t, &at, &st);
        bd_schedule_alpha_sigma(sc, u, &as, &ss);
        if ((r = bd__sampler_eval(s, cfg, sc, branch, z, t, nb)) != BD_SUCCESS) return r;
        count++;
        if (cfg->callback) {
            float *hz, *hx;
            if ((r = bd__host_view(ctx, z, s->h_z, m, &hz)) != BD_SUCCESS) return r;
            if ((r = bd__host_view(ctx, s->x_hat, s->h_x, m, &hx)) != BD_SUCCESS) return r;
            if (cfg->callback(cfg->user_data, i, t, u, hz, hx, nb, D, first))
                return bd_error(ctx, BD_ERROR_STATE, "sampler: stopped by the callback at step %lld", (long long)i);
        }
        if (ss <= 0.0) { /* landing on t = 0: every sampler returns x_hat */
            if ((r = bd_backend_copy(ctx, z, s->x_hat, (size_t)m * sizeof(float))) != BD_SUCCESS) return r;
            continue;
        }
        switch (bd__sampler_step_kind(cfg->kind, t)) {
        case BD_SAMPLER_DDIM: {
            /* z_s = alpha_s x_hat + sqrt(sigma_s^2 - c^2) eps_hat + c noise */
            double cn = 0.0, dir;
            if (cfg->eta > 0.0) {
                double q = 1.0 - (at * at) / (as * as);
                cn = cfg->eta * (ss / st) * sqrt(q > 0.0 ? q : 0.0);
                if (cn > ss) cn = ss;
                if ((r = bd__sampler_noise(s, rng, m)) != BD_SUCCESS) return r;
            }
            dir = sqrt(ss * ss - cn * cn);
            BD_OP(ctx, vec_axpby, z, m, s->x_hat, m, NULL, (float)as, s->eps_hat, m, NULL, (float)dir, 1, m);
            if (cn > 0.0) BD__S_AXPBY(ctx, z, 1.0, s->noise, cn, m);
            break;
        }
        case BD_SAMPLER_DDPM: {
            /* q(z_s | z_t, x): sigma_ts^2 = alpha_t^2 (sig_t^2 - sig_s^2) with
               sig = sigma/alpha; mean = (alpha_t/alpha_s)(sigma_s^2/sigma_t^2) z_t
               + alpha_s sigma_ts^2/sigma_t^2 x; var = sigma_ts^2 sigma_s^2/sigma_t^2 */
            double gt = st / at, gs = ss / as, vts = at * at * (gt * gt - gs * gs), cz, cx, sd;
            if (vts < 0.0) vts = 0.0;
            cz = (at / as) * (ss * ss) / (st * st);
            cx = as * vts / (st * st);
            sd = sqrt(vts * ss * ss / (st * st));
            if ((r = bd__sampler_noise(s, rng, m)) != BD_SUCCESS) return r;
            BD__S_AXPBY(ctx, z, cz, s->x_hat, cx, m);
            BD__S_AXPBY(ctx, z, 1.0, s->noise, sd, m);
            break;
        }
        case BD_SAMPLER_EULER: {
            /* EDM Euler in x = z/alpha, sig = sigma/alpha:
               z_s = as (z/at + (gs - gt)(z/at - x_hat)/gt) */
            double gt = st / at, gs = ss / as;
            BD__S_AXPBY(ctx, z, as * (1.0 + (gs - gt) / gt) / at, s->x_hat, -as * (gs - gt) / gt, m);
            break;
        }
        case BD_SAMPLER_HEUN: {
            double gt = st / at, gs = ss / as, h = as * (gs - gt);
            /* aux = d1 = (z/at - x_hat)/gt;  aux2 = as (z/at + (gs - gt) d1) */
            BD_OP(ctx, vec_axpby, s->aux, m, z, m, NULL, (float)(1.0 / (at * gt)), s->x_hat, m, NULL, (float)(-1.0 / gt), 1, m);
            BD_OP(ctx, vec_axpby, s->aux2, m, z, m, NULL, (float)(as / at), s->aux, m, NULL, (float)h, 1, m);
            if ((r = bd__sampler_eval(s, cfg, sc, branch, s->aux2, u, nb)) != BD_SUCCESS) return r;
            count++;
            /* aux2 = d2 = (aux2/as - x_hat)/gs;  z = as z/at + h/2 (d1 + d2) */
            BD__S_AXPBY(ctx, s->aux2, 1.0 / (as * gs), s->x_hat, -1.0 / gs, m);
            BD__S_AXPBY(ctx, z, as / at, s->aux, 0.5 * h, m);
            BD__S_AXPBY(ctx, z, 1.0, s->aux2, 0.5 * h, m);
            break;
        }
        case BD_SAMPLER_DPMPP_2M: {
            /* Lu et al. 2022, DPM-Solver++(2M), lambda = log(alpha/sigma):
               z_s = (sigma_s/sigma_t) z_t - alpha_s expm1(-h) D,
               D = x_hat (first step) or (1 + 1/(2r)) x_hat - 1/(2r) x_prev,
               r = h_prev/h */
            double lt = log(at / st), ls = log(as / ss), h = ls - lt;
            double cz = ss / st, cx = -as * expm1(-h), w1 = 1.0, w0 = 0.0;
            if (have_prev) {
                double rr = h_prev / h;
                w1 = 1.0 + 1.0 / (2.0 * rr);
                w0 = -1.0 / (2.0 * rr);
            }
            BD__S_AXPBY(ctx, z, cz, s->x_hat, cx * w1, m);
            if (have_prev) BD__S_AXPBY(ctx, z, 1.0, s->aux, cx * w0, m);
            if ((r = bd_backend_copy(ctx, s->aux, s->x_hat, (size_t)m * sizeof(float))) != BD_SUCCESS) return r;
            have_prev = 1;
            h_prev = h;
            break;
        }
        default:
            return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "sampler: unknown kind");
        }
    }
    *count_out += count;
    return BD_SUCCESS;
}

/* the checks of bd_sampler_run; *branch: the branch to read */
static bd_result bd__sampler_check(bd_context *ctx, const bd_sampler_config *cfg, const bd_denoiser *model,
                                   bd_rng *rng, int64_t *branch) {
    if (cfg->kind < BD_SAMPLER_DDIM || cfg->kind > BD_SAMPLER_DPMPP_2M)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: unknown sampler kind %d", (int)cfg->kind);
    if (cfg->param != BD_PARAM_EPS && cfg->param != BD_PARAM_X0 && cfg->param != BD_PARAM_V)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: unknown param kind %d", (int)cfg->param);
    if (!(cfg->eta >= 0.0))
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: eta must be >= 0 (got %g)", cfg->eta);
    *branch = cfg->branch == -1 ? model->branches - 1 : cfg->branch;
    if (*branch < 0 || *branch >= model->branches)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: branch %lld but the model has %lld",
                        (long long)cfg->branch, (long long)model->branches);
    if (!rng && (cfg->kind == BD_SAMPLER_DDPM || (cfg->kind == BD_SAMPLER_DDIM && cfg->eta > 0.0)))
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: %s needs an rng", bd_sampler_name(cfg->kind));
    return BD_SUCCESS;
}

static bd_result bd__sampler_run(bd_sampler *s, const bd_sampler_config *cfg, float *x, int64_t n,
                                 bd_rng *rng, int64_t *nfe) {
    bd_context *bc = s->model->ctx;
    int dev = bd_backend_on_device(bc);
    int64_t c0, D = s->D, branch = 0, count = 0;
    bd_result r;
    if ((r = bd__sampler_check(s->ctx, cfg, s->model, rng, &branch)) != BD_SUCCESS) return r;
    if ((r = bd_sampler_grid(s->ctx, cfg, s->grid)) != BD_SUCCESS) return r;
    if (!s->sched_valid || s->sched.kind != cfg->schedule) {
        if (bd_schedule_init(&s->sched, cfg->schedule) != BD_SUCCESS)
            return bd_error(s->ctx, BD_ERROR_CONFIG, "sampler: unknown schedule %d", (int)cfg->schedule);
        s->sched_valid = 1;
    }
    for (c0 = 0; c0 < n; c0 += s->max_batch) {
        int64_t nb = n - c0 < s->max_batch ? n - c0 : s->max_batch, m = nb * D;
        float *z = dev ? s->z : x + c0 * D; /* a host run works in place */
        double fin;
        if (dev && (r = bd_backend_upload(bc, z, x + c0 * D, (size_t)m * sizeof(float))) != BD_SUCCESS) return r;
        count = 0;
        if ((r = bd__sampler_solve(s, cfg, &s->sched, branch, z, nb, rng, c0, &count)) != BD_SUCCESS)
            return r;
        fin = BD_OP(bc, vec_sumsq, z, m);
        if ((r = bd_backend_sync(bc)) != BD_SUCCESS) return r;
        if (!isfinite(fin))
            return bd_error(bc, BD_ERROR_NONFINITE, "sampler: non-finite samples after %lld steps", (long long)cfg->steps);
        if (dev && (r = bd_backend_download(bc, x + c0 * D, z, (size_t)m * sizeof(float))) != BD_SUCCESS) return r;
    }
    if (nfe) *nfe = count;
    return BD_SUCCESS;
}

BDAPI bd_result bd_sampler_run(bd_sampler *s, const bd_sampler_config *cfg, float *x, int64_t n,
                               bd_rng *rng, int64_t *nfe) {
    if (!s) return BD_ERROR_INVALID_ARGUMENT;
    if (!cfg || !x) return bd_error(s->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: NULL argument");
    if (n < 1) return bd_error(s->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: n %lld < 1", (long long)n);
    return bd__relay(s->ctx, s->model->ctx, bd__sampler_run(s, cfg, x, n, rng, nfe));
}
/* SAMPLER-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>train                                                                  */
/* ------------------------------------------------------------------------ */
BDAPI bd_adam_config bd_adam_config_init(void) {
    bd_adam_config c;
    memset(&c, 0, sizeof c);
    c.lr = 2e-4;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.weight_decay = 0.0;
    c.warmup_steps = 0;
    c.lr_schedule = BD_LR_CONSTANT;
    c.total_steps = 0;
    c.lr_min = 0.0;
    c.grad_clip = 1.0;
    return c;
}

BDAPI double bd_adam_lr(const bd_adam_config *c, int64_t step) {
    double p;
    int64_t span;
    if (!c) return 0.0;
    if (step < 1) step = 1;
    if (c->warmup_steps > 0 && step <= c->warmup_steps)
        return c->lr * (double)step / (double)c->warmup_steps;
    if (c->lr_schedule != BD_LR_COSINE) return c->lr;
    span = c->total_steps - c->warmup_steps;
    if (span < 1) return c->lr_min;
    p = (double)(step - c->warmup_steps) / (double)span;
    if (p > 1.0) p = 1.0;
    return c->lr_min + 0.5 * (c->lr - c->lr_min) * (1.0 + cos(BD__PI * p));
}

/* The one check of an Adam configuration (bd_adam_init, bd_distill). */
static bd_result bd__adam_check(bd_context *ctx, const bd_adam_config *c, const char *who) {
    if (!(c->lr >= 0.0 && c->lr <= 1e30) || !(c->beta1 >= 0.0 && c->beta1 < 1.0) ||
        !(c->beta2 >= 0.0 && c->beta2 < 1.0) || !(c->eps > 0.0) || !(c->weight_decay >= 0.0) ||
        c->warmup_steps < 0 || c->total_steps < 0 || !(c->lr_min >= 0.0 && c->lr_min <= 1e30) ||
        c->grad_clip != c->grad_clip || (c->lr_schedule != BD_LR_CONSTANT && c->lr_schedule != BD_LR_COSINE))
        return bd_error(ctx, BD_ERROR_CONFIG, "%s: need finite lr, lr_min >= 0, betas in [0,1), eps > 0, weight_decay >= 0, "
                        "warmup and total_steps >= 0, grad_clip not NaN", who);
    return BD_SUCCESS;
}

BDAPI bd_result bd_adam_init(bd_context *ctx, const bd_adam_config *config, int64_t n,
                             bd_adam *out) {
    bd_result r;
    size_t bytes;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!config || !out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_adam_init: NULL argument");
    memset(out, 0, sizeof *out);
    if (n < 0) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_adam_init: n %lld < 0", (long long)n);
    if ((r = bd__adam_check(ctx, config, "bd_adam_init")) != BD_SUCCESS) return r;
    if ((uint64_t)n > (uint64_t)(SIZE_MAX / sizeof(float)))
        return bd_error(ctx, BD_ERROR_OVERFLOW, "bd_adam_init: %lld floats is too large", (long long)n);
    bytes = (size_t)(n ? n : 1) * sizeof(float);
    r = bd_backend_alloc(ctx, bytes, (void **)&out->m);
    if (r == BD_SUCCESS) r = bd_backend_alloc(ctx, bytes, (void **)&out->v);
    if (r == BD_SUCCESS) r = bd_backend_zero(ctx, out->m, bytes);
    if (r == BD_SUCCESS) r = bd_backend_zero(ctx, out->v, bytes);
    if (r != BD_SUCCESS) {
        bd_backend_free(ctx, out->m);
        bd_backend_free(ctx, out->v);
        memset(out, 0, sizeof *out);
        return r;
    }
    out->ctx = ctx;
    out->config = *config;
    out->n = n;
    out->step = 0;
    return BD_SUCCESS;
}

BDAPI void bd_adam_free(bd_adam *a) {
    if (!a || !a->ctx) return;
    bd_backend_free(a->ctx, a->m);
    bd_backend_free(a->ctx, a->v);
    memset(a, 0, sizeof *a);
}

/* The AdamW-with-clipping update number k (1-based) on p, g, m, v (n
   floats in ctx's backend), through vec_sumsq and vec_adam; *gn_out: the
   gradient norm before clipping.  A non-finite norm changes nothing.  The
   caller syncs (bd_adam_step, the trainer, bd_distill). */
static bd_result bd__adam_update(bd_context *ctx, const bd_adam_config *c, int64_t k, float *p,
                                 const float *g, float *m, float *v, int64_t n, double *gn_out) {
    bd_vec_adam_args aa;
    double gn, scale = 1.0;
    bd_result r;
    gn = sqrt(BD_OP(ctx, vec_sumsq, g, n));
    if ((r = bd_backend_sync(ctx)) != BD_SUCCESS) return r;
    if (gn_out) *gn_out = gn;
    if (!isfinite(gn))
        return bd_error(ctx, BD_ERROR_NONFINITE, "adam: non-finite gradient norm at step %lld; nothing changed",
                        (long long)k);
    /* torch.nn.utils.clip_grad_norm_: scale by clip / (norm + 1e-6) when < 1 */
    if (c->grad_clip > 0.0 && gn > c->grad_clip) scale = c->grad_clip / (gn + 1e-6);
    aa.lr = bd_adam_lr(c, k);
    aa.beta1 = c->beta1;
    aa.beta2 = c->beta2;
    aa.eps = c->eps;
    aa.weight_decay = c->weight_decay;
    aa.grad_scale = scale;
    aa.bias_c1 = 1.0 - pow(c->beta1, (double)k);
    aa.bias_c2 = 1.0 - pow(c->beta2, (double)k);
    BD_OP(ctx, vec_adam, p, g, m, v, n, &aa);
    return BD_SUCCESS;
}

BDAPI bd_result bd_adam_step(bd_adam *a, float *params, const float *grads, double *grad_norm) {
    bd_result r;
    if (!a || !a->ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!params || !grads) return bd_error(a->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_adam_step: NULL argument");
    r = bd__adam_update(a->ctx, &a->config, a->step + 1, params, grads, a->m, a->v, a->n, grad_norm);
    if (r != BD_SUCCESS) return r;
    a->step++;
    return bd_backend_sync(a->ctx);
}

BDAPI void bd_ema_update(float *ema, const float *params, int64_t n, double decay) {
    bd_vec_ema(ema, params, n, decay);
}

BDAPI double bd_ema_decay(double decay, int warmup, int64_t k) {
    if (warmup) {
        double w = (1.0 + (double)k) / (10.0 + (double)k);
        if (w < decay) decay = w;
    }
    return decay;
}

static const char *const bd__loss_weight_names[] = {"none", "snr_trunc"};
BDAPI const char *bd_loss_weight_name(bd_loss_weight w) {
    return (int)w >= 0 && (int)w < 2 ? bd__loss_weight_names[w] : "unknown";
}
BDAPI bd_result bd_loss_weight_parse(const char *name, bd_loss_weight *out) {
    int k = bd__enum_find(bd__loss_weight_names, 2, name);
    if (k < 0 || !out) return BD_ERROR_INVALID_ARGUMENT;
    *out = (bd_loss_weight)k;
    return BD_SUCCESS;
}

BDAPI bd_trainer_config bd_trainer_config_init(void) {
    bd_trainer_config c;
    memset(&c, 0, sizeof c);
    c.param = BD_PARAM_V;
    c.schedule = BD_SCHEDULE_COSINE;
    c.weighting = BD_WEIGHT_NONE;
    c.adam = bd_adam_config_init();
    c.ema_decay = 0.999;
    c.ema_warmup = 1;
    c.t_min = 1e-5;
    c.seed = 0;
    c.skip_nonfinite = 0;
    return c;
}

BDAPI void bd_trainer_free(bd_trainer *tr) {
    bd_context *ctx, *bc;
    if (!tr) return;
    ctx = tr->ctx;
    bc = tr->model_ctx; /* the model may be gone already */
    bd_adam_free(&tr->adam);
    bd_backend_free(bc, tr->ema);
    bd_backend_free(bc, tr->x);
    bd_backend_free(bc, tr->eps);
    bd_backend_free(bc, tr->z);
    bd_backend_free(bc, tr->t);
    bd_backend_free(bc, tr->out);
    bd_backend_free(bc, tr->dout);
    bd_backend_free(bc, tr->tgt);
    bd_backend_free(bc, tr->ybuf);
    bd_backend_free(bc, tr->coef);
    bd_free(ctx, tr->xbuf);
    bd_free(ctx, tr->h_eps);
    bd_free(ctx, tr->h_t);
    bd_free(ctx, tr->h_coef);
    bd_free(ctx, tr->h_alpha);
    bd_free(ctx, tr->h_sigma);
    bd_free(ctx, tr);
}

/* floats of the coefficient block: alpha, sigma, ca, cc (B each), w_rows,
   cc_rows (B*K each) */
#define BD__TR_COEF(B, K) (4 * (B) + 2 * (B) * (K))

static bd_result bd__trainer_init(bd_context *ctx, bd_denoiser *model, const bd_trainer_config *config,
                                  int64_t B, bd_trainer **out) {
    bd_context *bc = model->ctx;
    bd_trainer *tr;
    bd_result r;
    int64_t D, K, KD, P;
    size_t fs = sizeof(float);
    if ((config->param != BD_PARAM_EPS && config->param != BD_PARAM_X0 && config->param != BD_PARAM_V) ||
        (config->weighting != BD_WEIGHT_NONE && config->weighting != BD_WEIGHT_SNR_TRUNC) ||
        !(config->ema_decay >= 0.0 && config->ema_decay <= 1.0) || !(config->t_min >= 0.0 && config->t_min < 1.0))
        return bd_error(ctx, BD_ERROR_CONFIG, "bd_trainer_init: need a known param and weighting, ema_decay in [0,1], t_min in [0,1)");
    if (model->n_params < 1 || !model->params || !model->grads)
        return bd_error(ctx, BD_ERROR_CONFIG, "bd_trainer_init: the model has no trainable parameters");
    if ((r = bd__backend_model_ok(model, "bd_trainer_init")) != BD_SUCCESS) return r;
    D = bd_denoiser_sample_size(model);
    K = model->branches;
    KD = D * K;
    P = model->n_params;
    if (D < 1 || K < 1 || B > (((int64_t)1 << 40) / KD))
        return bd_error(ctx, BD_ERROR_OVERFLOW, "bd_trainer_init: batch %lld of %lld floats is too large", (long long)B, (long long)KD);
    if ((r = bd_denoiser_reserve(model, B)) != BD_SUCCESS) return r;
    tr = BD__CAST(bd_trainer *, bd_alloc(ctx, sizeof(bd_trainer)));
    if (!tr) return ctx->last_result;
    memset(tr, 0, sizeof *tr);
    tr->ctx = ctx;
    tr->model = model;
    tr->model_ctx = bc;
    tr->config = *config;
    tr->max_batch = B;
    tr->D = D;
    tr->KD = KD;
    if (bd_schedule_init(&tr->sched, config->schedule) != BD_SUCCESS) {
        bd_free(ctx, tr);
        return bd_error(ctx, BD_ERROR_CONFIG, "bd_trainer_init: unknown schedule %d", (int)config->schedule);
    }
    r = bd_adam_init(bc, &config->adam, P, &tr->adam);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)P * fs, (void **)&tr->ema);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * D) * fs, (void **)&tr->x);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * D) * fs, (void **)&tr->eps);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * D) * fs, (void **)&tr->z);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)B * fs, (void **)&tr->t);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * KD) * fs, (void **)&tr->out);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * KD) * fs, (void **)&tr->dout);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * KD) * fs, (void **)&tr->tgt);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)(B * KD) * fs, (void **)&tr->ybuf);
    if (r == BD_SUCCESS) r = bd_backend_alloc(bc, (size_t)BD__TR_COEF(B, K) * fs, (void **)&tr->coef);
    if (r == BD_SUCCESS) {
        tr->xbuf = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(B * D), fs));
        tr->h_eps = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(B * D), fs));
        tr->h_t = BD__CAST(float *, bd_alloc_array(ctx, (size_t)B, fs));
        tr->h_coef = BD__CAST(float *, bd_alloc_array(ctx, (size_t)BD__TR_COEF(B, K), fs));
        tr->h_alpha = BD__CAST(double *, bd_alloc_array(ctx, (size_t)B, sizeof(double)));
        tr->h_sigma = BD__CAST(double *, bd_alloc_array(ctx, (size_t)B, sizeof(double)));
        if (!tr->xbuf || !tr->h_eps || !tr->h_t || !tr->h_coef || !tr->h_alpha || !tr->h_sigma) r = ctx->last_result;
    }
    if (r == BD_SUCCESS) r = bd_backend_copy(bc, tr->ema, model->params, (size_t)P * fs);
    if (r == BD_SUCCESS) r = bd_backend_sync(bc);
    if (r != BD_SUCCESS) {
        bd_trainer_free(tr);
        return r;
    }
    tr->rng = bd_rng_init(config->seed);
    tr->data_rng = tr->rng;
    bd_rng_jump(&tr->data_rng);
    *out = tr;
    return BD_SUCCESS;
}

BDAPI bd_result bd_trainer_init(bd_context *ctx, bd_denoiser *model,
                                const bd_trainer_config *config, int64_t max_batch,
                                bd_trainer **out) {
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!model || !model->ctx || !config || !out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_trainer_init: NULL argument");
    *out = NULL;
    if (max_batch < 1) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_trainer_init: max_batch %lld < 1", (long long)max_batch);
    return bd__relay(ctx, model->ctx, bd__trainer_init(ctx, model, config, max_batch, out));
}

/* t ~ U(0, 1] (as 1 - U[0,1)), clamped below at t_min, and eps ~ N(0, I):
   n times and n*D floats into the host staging buffers */
static void bd__trainer_draw(bd_trainer *tr, int64_t n) {
    int64_t j;
    for (j = 0; j < n; j++) {
        double t = 1.0 - bd_rng_uniform(&tr->rng);
        if (t < tr->config.t_min) t = tr->config.t_min;
        tr->h_t[j] = (float)t;
        bd_schedule_alpha_sigma(&tr->sched, (double)tr->h_t[j], &tr->h_alpha[j], &tr->h_sigma[j]);
    }
    bd_rng_normal(&tr->rng, tr->h_eps, n * tr->D);
}

static bd_result bd__trainer_step(bd_trainer *tr, const float *x, int64_t n, double *loss_out) {
    bd_denoiser *d = tr->model;
    bd_context *ctx = d->ctx;
    const bd_trainer_config *c = &tr->config;
    int64_t D = tr->D, K = d->branches, KD = tr->KD, B = tr->max_batch, j, k;
    float *cf, *al, *sg, *ca, *cc, *wr, *ccr;
    double loss, gn, decay;
    bd_result r;
    /* host draws (or the ones made ahead, the same numbers).  Field by
       field: bd_rng has padding, memcmp would read uninitialised bytes */
    if (tr->pre_valid && tr->pre_n == n && memcmp(tr->rng.s, tr->pre_from.s, sizeof tr->rng.s) == 0 &&
        tr->rng.has_spare == tr->pre_from.has_spare && (!tr->rng.has_spare || tr->rng.spare == tr->pre_from.spare))
        tr->rng = tr->pre_to;
    else
        bd__trainer_draw(tr, n);
    tr->pre_valid = 0;
    /* per-sample coefficients: alpha, sigma, and for snr_trunc the x-space
       map x_hat = ca z + cc o with weight w = max(snr, 1) per (sample, branch) row */
    cf = tr->h_coef;
    al = cf; sg = cf + B; ca = cf + 2 * B; cc = cf + 3 * B; wr = cf + 4 * B; ccr = wr + B * K;
    for (j = 0; j < n; j++) {
        double a = 0.0, cx = 1.0, w = 1.0;
        al[j] = (float)tr->h_alpha[j];
        sg[j] = (float)tr->h_sigma[j];
        if (c->weighting == BD_WEIGHT_SNR_TRUNC) {
            double snr = (tr->h_alpha[j] * tr->h_alpha[j]) / (tr->h_sigma[j] * tr->h_sigma[j]);
            w = snr > 1.0 ? snr : 1.0;
            bd_param_x_coeffs(c->param, tr->h_alpha[j], tr->h_sigma[j], &a, &cx);
        }
        ca[j] = (float)a;
        cc[j] = (float)cx;
        for (k = 0; k < K; k++) {
            wr[j * K + k] = (float)w;
            ccr[j * K + k] = (float)cx;
        }
    }
    if ((r = bd_backend_upload(ctx, tr->x, x, (size_t)(n * D) * sizeof(float))) != BD_SUCCESS) return r;
    if ((r = bd_backend_upload(ctx, tr->eps, tr->h_eps, (size_t)(n * D) * sizeof(float))) != BD_SUCCESS) return r;
    if ((r = bd_backend_upload(ctx, tr->t, tr->h_t, (size_t)n * sizeof(float))) != BD_SUCCESS) return r;
    if ((r = bd_backend_upload(ctx, tr->coef, cf, (size_t)BD__TR_COEF(B, K) * sizeof(float))) != BD_SUCCESS) return r;
    al = tr->coef; sg = al + B; ca = al + 2 * B; cc = al + 3 * B; wr = al + 4 * B; ccr = wr + B * K;
    /* z = alpha x + sigma eps */
    BD_OP(ctx, vec_axpby, tr->z, D, tr->x, D, al, 1.0f, tr->eps, D, sg, 1.0f, n, D);
    if ((r = bd_backend_zero(ctx, d->grads, (size_t)d->n_params * sizeof(float))) != BD_SUCCESS) return r;
    if ((r = bd_denoiser_forward(d, tr->out, tr->z, tr->t, n, 1)) != BD_SUCCESS) return r;
    if ((r = bd_backend_zero(ctx, tr->dout, (size_t)(n * KD) * sizeof(float))) != BD_SUCCESS) return r;
    /* the staging buffers are uploaded: draw the next step's noise while a
       device runs the forward (the loss below waits for it) */
    tr->pre_from = tr->rng;
    bd__trainer_draw(tr, n);
    tr->pre_to = tr->rng;
    tr->rng = tr->pre_from;
    tr->pre_n = n;
    tr->pre_valid = 1;
    /* loss = 1/(N K) sum_{n,k} w_n mean_d (y_nk - y*_n)^2, rows (n, k) of
       out are (n*K, D): every branch gets the same target.  none: y = o,
       y* the target of the parametrisation, w = 1; snr_trunc: y = x_hat =
       ca z + cc o, y* = x, dout = cc dL/dy */
    if (c->weighting == BD_WEIGHT_NONE) {
        for (k = 0; k < K; k++) {
            float *tk = tr->tgt + k * D;
            if (c->param == BD_PARAM_EPS)
                BD_OP(ctx, vec_axpby, tk, KD, tr->eps, D, NULL, 1.0f, NULL, 0, NULL, 0.0f, n, D);
            else if (c->param == BD_PARAM_X0)
                BD_OP(ctx, vec_axpby, tk, KD, tr->x, D, NULL, 1.0f, NULL, 0, NULL, 0.0f, n, D);
            else /* v = alpha eps - sigma x */
                BD_OP(ctx, vec_axpby, tk, KD, tr->eps, D, al, 1.0f, tr->x, D, sg, -1.0f, n, D);
        }
        loss = BD_OP(ctx, mse_forward, tr->out, tr->tgt, NULL, n * K, D);
        BD_OP(ctx, mse_backward, tr->dout, tr->out, tr->tgt, NULL, n * K, D);
    } else {
        for (k = 0; k < K; k++) {
            BD_OP(ctx, vec_axpby, tr->ybuf + k * D, KD, tr->z, D, ca, 1.0f, tr->out + k * D, KD, cc, 1.0f, n, D);
            BD_OP(ctx, vec_axpby, tr->tgt + k * D, KD, tr->x, D, NULL, 1.0f, NULL, 0, NULL, 0.0f, n, D);
        }
        loss = BD_OP(ctx, mse_forward, tr->ybuf, tr->tgt, wr, n * K, D);
        BD_OP(ctx, mse_backward, tr->dout, tr->ybuf, tr->tgt, wr, n * K, D);
        BD_OP(ctx, vec_axpby, tr->dout, D, tr->dout, D, ccr, 1.0f, NULL, 0, NULL, 0.0f, n * K, D);
    }
    if ((r = bd_backend_sync(ctx)) != BD_SUCCESS) return r;
    tr->last_loss = loss;
    if (loss_out) *loss_out = loss;
    if (!isfinite(loss))
        return bd_error(ctx, BD_ERROR_NONFINITE, "trainer: non-finite loss at step %lld; nothing changed",
                        (long long)(tr->adam.step + 1));
    if ((r = bd_denoiser_backward(d, NULL, tr->dout, n)) != BD_SUCCESS) return r;
    r = bd__adam_update(ctx, &c->adam, tr->adam.step + 1, d->params, d->grads, tr->adam.m, tr->adam.v,
                        d->n_params, &gn);
    tr->last_grad_norm = gn;
    if (r != BD_SUCCESS) return r;
    decay = bd_ema_decay(c->ema_decay, c->ema_warmup, tr->adam.step);
    tr->adam.step++;
    tr->last_lr = bd_adam_lr(&c->adam, tr->adam.step);
    BD_OP(ctx, vec_ema, tr->ema, d->params, d->n_params, decay);
    return bd_backend_sync(ctx);
}

BDAPI bd_result bd_trainer_step(bd_trainer *tr, const float *x, int64_t n, double *loss_out) {
    if (!tr) return BD_ERROR_INVALID_ARGUMENT;
    if (!x) return bd_error(tr->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_trainer_step: NULL batch");
    if (n < 1 || n > tr->max_batch)
        return bd_error(tr->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_trainer_step: batch %lld not in 1..%lld",
                        (long long)n, (long long)tr->max_batch);
    return bd__relay(tr->ctx, tr->model->ctx, bd__trainer_step(tr, x, n, loss_out));
}

BDAPI bd_result bd_trainer_copy_ema(const bd_trainer *tr, bd_denoiser *dst) {
    if (!tr) return BD_ERROR_INVALID_ARGUMENT;
    if (!dst || !dst->ctx) return bd_error(tr->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_trainer_copy_ema: NULL destination");
    if (dst->n_params != tr->model->n_params || !dst->params)
        return bd_error(tr->ctx, BD_ERROR_SHAPE, "bd_trainer_copy_ema: destination has %lld params, EMA has %lld",
                        (long long)dst->n_params, (long long)tr->model->n_params);
    return bd__relay(tr->ctx, dst->ctx,
                     bd_backend_transfer(dst->ctx, dst->params, tr->model->ctx, tr->ema,
                                         (size_t)dst->n_params * sizeof(float)));
}

BDAPI bd_result bd_trainer_run(bd_trainer *tr, int64_t steps, int64_t batch, bd_data_fn data,
                               void *data_user_data, bd_train_progress_fn progress,
                               void *progress_user_data) {
    int64_t s;
    bd_result r;
    if (!tr) return BD_ERROR_INVALID_ARGUMENT;
    if (!data) return bd_error(tr->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_trainer_run: no data provider");
    if (steps < 0 || batch < 1 || batch > tr->max_batch)
        return bd_error(tr->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_trainer_run: steps %lld, batch %lld (max %lld)",
                        (long long)steps, (long long)batch, (long long)tr->max_batch);
    for (s = 0; s < steps; s++) {
        double loss = 0.0;
        r = data(data_user_data, tr->xbuf, batch, &tr->data_rng);
        if (r != BD_SUCCESS) return bd_error(tr->ctx, r, "bd_trainer_run: the data provider failed at step %lld", (long long)s);
        r = bd_trainer_step(tr, tr->xbuf, batch, &loss);
        if (r == BD_ERROR_NONFINITE && tr->config.skip_nonfinite) {
            tr->skipped++;
            continue;
        }
        if (r != BD_SUCCESS) return r;
        if (progress && progress(progress_user_data, s + 1, steps, loss, tr->last_lr)) break;
    }
    return BD_SUCCESS;
}
/* ADAM-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>distill                                                                */
/* ------------------------------------------------------------------------ */
static const char *const bd__distill_method_names[] = {"pd", "td", "cd"};
static const char *const bd__distill_weights_names[] = {"uniform", "final", "linear",
                                                        "aux", "anneal", "adaptive", "agree"};

BDAPI const char *bd_distill_method_name(bd_distill_method m) {
    return (m >= 0 && (int)m < 3) ? bd__distill_method_names[m] : "unknown";
}
BDAPI bd_result bd_distill_method_parse(const char *name, bd_distill_method *out) {
    int k = bd__enum_find(bd__distill_method_names, 3, name);
    if (k < 0 || !out) return BD_ERROR_INVALID_ARGUMENT;
    *out = (bd_distill_method)k;
    return BD_SUCCESS;
}
BDAPI const char *bd_distill_weights_name(bd_distill_weights w) {
    return (w >= 0 && (int)w < 7) ? bd__distill_weights_names[w] : "unknown";
}
BDAPI bd_result bd_distill_weights_parse(const char *name, bd_distill_weights *out) {
    int k = bd__enum_find(bd__distill_weights_names, 7, name);
    if (k < 0 || !out) return BD_ERROR_INVALID_ARGUMENT;
    *out = (bd_distill_weights)k;
    return BD_SUCCESS;
}

BDAPI void bd_distill_target(float *x_tilde, const float *z_t, const float *z_s,
                             const double *alpha_t, const double *sigma_t,
                             const double *alpha_s, const double *sigma_s, int64_t N, int64_t D) {
    int64_t n, d;
    for (n = 0; n < N; n++) {
        const float *zt = z_t + n * D, *zs = z_s + n * D;
        float *xt = x_tilde + n * D;
        if (sigma_s[n] == 0.0) {
            /* s = 0: the jump lands on x_hat itself */
            for (d = 0; d < D; d++) xt[d] = zs[d];
        } else {
            double r = sigma_s[n] / sigma_t[n];
            double inv = 1.0 / (alpha_s[n] - r * alpha_t[n]);
            for (d = 0; d < D; d++) xt[d] = (float)(((double)zs[d] - r * (double)zt[d]) * inv);
        }
    }
}

BDAPI double bd_distill_lambda(double alpha_t, double sigma_t) {
    double snr;
    if (sigma_t <= 0.0) return 1e30;
    snr = (alpha_t * alpha_t) / (sigma_t * sigma_t);
    return snr > 1.0 ? snr : 1.0;
}

/* x_hat = xz z + xo o (bd_param_x_coeffs) is affine in o, and so is the
   DDIM jump of docs/spec.md sec. 4 with eps_hat = (z_t - alpha_t x_hat)/sigma_t:
       z_hat = (sigma_s/sigma_t) z_t + c_k x_hat,  c_k = alpha_s - sigma_s alpha_t/sigma_t
   (z_hat = x_hat at s = 0).  So the gradient is a per-(sample, branch)
   scalar times the residual r:  x space  dL/do = lambda w_k 2 r xo / (N D),
   z space  dL/do = w_k dist'(r) c_k xo / (N D). */
/* mask (K,N) or NULL: a (branch, sample) with mask 0 has no target
   (consistency distillation: a branch point the sample has passed) and
   adds nothing */
static double bd__distill_loss_masked(float *dout, double *branch_loss, const float *o, const float *z_t,
                                      const float *x_tilde, const float *z_s, const double *alpha_t,
                                      const double *sigma_t, const double *alpha_s, const double *sigma_s,
                                      const double *w, bd_param_kind param, bd_distill_space space,
                                      bd_distill_distance distance, int64_t N, int64_t K, int64_t D,
                                      double grad_scale, const unsigned char *mask) {
    int64_t n, k, d;
    double total = 0.0;
    double inv_nd = 1.0 / ((double)N * (double)D);
    if (branch_loss)
        for (k = 0; k < K; k++) branch_loss[k] = 0.0;
    for (n = 0; n < N; n++) {
        double xz, xo;
        const float *zt = z_t + n * D;
        bd_param_x_coeffs(param, alpha_t[n], sigma_t[n], &xz, &xo);
        for (k = 0; k < K; k++) {
            const float *ok = o + (n * K + k) * D;
            float *dk = dout ? dout + (n * K + k) * D : NULL;
            double acc = 0.0, g;
            if (mask && !mask[k * N + n]) continue;
            if (space == BD_DISTILL_SPACE_X) {
                const float *xt = x_tilde + (k * N + n) * D;
                double lam = bd_distill_lambda(alpha_t[n], sigma_t[n]);
                for (d = 0; d < D; d++) {
                    double r = xz * zt[d] + xo * ok[d] - (double)xt[d];
                    acc += r * r;
                }
                acc *= lam;
                g = dk ? 2.0 * lam * w[k] * xo * inv_nd * grad_scale : 0.0;
                if (dk)
                    for (d = 0; d < D; d++)
                        dk[d] += (float)(g * (xz * zt[d] + xo * ok[d] - (double)xt[d]));
            } else {
                /* z_hat = alpha_s x_hat + sigma_s eps_hat = cz z_t + co o */
                const float *zs = z_s + (k * N + n) * D;
                double as = alpha_s[k * N + n], ss = sigma_s[k * N + n];
                double ck = as - ss * alpha_t[n] / sigma_t[n];
                double cz = ss / sigma_t[n] + ck * xz, co = ck * xo;
                if (distance == BD_DISTILL_L1) {
                    for (d = 0; d < D; d++) acc += fabs(cz * zt[d] + co * ok[d] - (double)zs[d]);
                    g = w[k] * co * inv_nd * grad_scale;
                    if (dk)
                        for (d = 0; d < D; d++) {
                            double r = cz * zt[d] + co * ok[d] - (double)zs[d];
                            dk[d] += (float)(r > 0.0 ? g : (r < 0.0 ? -g : 0.0));
                        }
                } else {
                    for (d = 0; d < D; d++) {
                        double r = cz * zt[d] + co * ok[d] - (double)zs[d];
                        acc += r * r;
                    }
                    g = 2.0 * w[k] * co * inv_nd * grad_scale;
                    if (dk)
                        for (d = 0; d < D; d++)
                            dk[d] += (float)(g * (cz * zt[d] + co * ok[d] - (double)zs[d]));
                }
            }
            acc *= inv_nd;
            if (branch_loss) branch_loss[k] += acc;
            total += w[k] * acc;
        }
    }
    return total;
}
BDAPI double bd_distill_loss(float *dout, double *branch_loss, const float *o, const float *z_t,
                             const float *x_tilde, const float *z_s, const double *alpha_t,
                             const double *sigma_t, const double *alpha_s, const double *sigma_s,
                             const double *w, bd_param_kind param, bd_distill_space space,
                             bd_distill_distance distance, int64_t N, int64_t K, int64_t D,
                             double grad_scale) {
    return bd__distill_loss_masked(dout, branch_loss, o, z_t, x_tilde, z_s, alpha_t, sigma_t, alpha_s, sigma_s, w,
                                   param, space, distance, N, K, D, grad_scale, NULL);
}

BDAPI bd_result bd_distill_branch_weights(bd_context *ctx, double *w, bd_distill_weights kind,
                                          int64_t K, double beta, double tau,
                                          const double *ema) {
    int64_t k;
    if (!w || K < 1) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "branch weights: need w and K >= 1");
    switch (kind) {
    case BD_WEIGHTS_UNIFORM:
        for (k = 0; k < K; k++) w[k] = 1.0 / (double)K;
        break;
    case BD_WEIGHTS_FINAL:
        for (k = 0; k < K; k++) w[k] = (k == K - 1) ? 1.0 : 0.0;
        break;
    case BD_WEIGHTS_LINEAR:
        for (k = 0; k < K; k++) w[k] = (double)(k + 1) / ((double)K * (double)(K + 1) / 2.0);
        break;
    case BD_WEIGHTS_AUX:
        if (!(beta >= 0.0)) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "aux weights: beta %g must be >= 0", beta);
        for (k = 0; k < K; k++) w[k] = (k == K - 1) ? 1.0 : beta;
        break;
    case BD_WEIGHTS_ANNEAL:
        if (!(tau >= 0.0 && tau <= 1.0)) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "anneal weights: tau %g not in [0, 1]", tau);
        for (k = 0; k < K; k++) w[k] = (1.0 - tau) / (double)K + ((k == K - 1) ? tau : 0.0);
        break;
    case BD_WEIGHTS_ADAPTIVE: {
        /* the dense group, at its natural relative scale, carries as much
           loss as the final branch; no dense branch outweighs it */
        double dense = 0.0, wd = 1.0 / (2.0 * (double)(K - 1));
        int known = ema != NULL && ema[K - 1] > 0.0;
        if (K == 1) { w[0] = 1.0; break; }
        for (k = 0; k < K - 1 && known; k++) {
            if (!(ema[k] >= 0.0)) known = 0;
            else dense += ema[k];
        }
        if (known && dense > 0.0) wd = 0.5 * ema[K - 1] / dense;
        if (wd > 0.5) wd = 0.5;
        for (k = 0; k < K - 1; k++) w[k] = wd;
        w[K - 1] = 0.5;
        break;
    }
    case BD_WEIGHTS_AGREE: {
        double c = ema ? ema[0] : 0.0;
        if (!(c == c)) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "agree weights: cosine is NaN");
        if (c < 0.0) c = 0.0;
        if (c > 1.0) c = 1.0;
        for (k = 0; k < K; k++) w[k] = (k == K - 1) ? 1.0 : c / (double)(K - 1);
        break;
    }
    default:
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "branch weights: unknown schedule %d", (int)kind);
    }
    return BD_SUCCESS;
}

BDAPI bd_result bd_distill_teacher_grid(bd_context *ctx, const bd_schedule *s,
                                        const double *student_grid, int64_t N, int64_t Kt,
                                        bd_distill_subdiv subdiv, double *out) {
    int64_t i, j;
    double tmin;
    if (!s || !student_grid || !out || N < 1 || Kt < 1)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "teacher grid: bad arguments");
    tmin = bd_schedule_t_min(s);
    for (i = 0; i < N; i++) {
        double a = student_grid[i], b = student_grid[i + 1];
        if (!(a > b)) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "teacher grid: student grid not decreasing at %lld", (long long)i);
        out[i * Kt] = a;
        for (j = 1; j < Kt; j++) {
            double f = (double)j / (double)Kt, bb = b > 0.0 ? b : tmin;
            if (subdiv == BD_SUBDIV_LOGSNR && a > bb && bb > 0.0) {
                double la = bd_schedule_logsnr(s, a), lb = bd_schedule_logsnr(s, bb);
                out[i * Kt + j] = bd_schedule_t_from_logsnr(s, la + f * (lb - la));
            } else {
                out[i * Kt + j] = a + f * (b - a);
            }
        }
    }
    out[N * Kt] = student_grid[N];
    for (i = 0; i < N * Kt; i++)
        if (!(out[i] > out[i + 1])) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "teacher grid: not strictly decreasing at %lld (%g, %g)", (long long)i, out[i], out[i + 1]);
    return BD_SUCCESS;
}

BDAPI bd_distill_config bd_distill_config_init(bd_distill_method method, int64_t branches,
                                               int64_t student_steps) {
    bd_distill_config c;
    memset(&c, 0, sizeof c);
    c.method = method;
    c.branches = branches;
    c.student_steps = student_steps;
    if (branches < 1) c.teacher_substeps = 1;
    /* PD: 2K, so branch 0 (sub-state Kt/K = 2) is two teacher steps, not the
       teacher's own one-step jump (x_hat = the teacher's x_hat) */
    else if (method == BD_DISTILL_PD) c.teacher_substeps = branches == 1 ? 2 : 2 * branches;
    else if (method == BD_DISTILL_CD) {
        /* CD: about 32 teacher intervals in all (N Kt), Kt a multiple of K */
        int64_t per = student_steps >= 1 ? (32 + student_steps - 1) / student_steps : 32;
        c.teacher_substeps = ((per + branches - 1) / branches) * branches;
    } else c.teacher_substeps = ((4 + branches - 1) / branches) * branches; /* SFD: 4 */
    c.weights = BD_WEIGHTS_UNIFORM;
    c.aux_beta = 0.1;
    c.anneal_steps = 1000;
    c.adaptive_decay = 0.99;
    c.space = method == BD_DISTILL_PD ? BD_DISTILL_SPACE_X : BD_DISTILL_SPACE_Z; /* TD, CD: z */
    c.distance = BD_DISTILL_L2;
    c.grid = BD_GRID_UNIFORM_T;
    c.custom_grid = NULL;
    /* uniform in t: with the cosine schedule's alpha clamp (sigma/alpha =
       1e4 at t = 1) logSNR-uniform sub-steps would crowd into pure noise */
    c.subdiv = BD_SUBDIV_T;
    c.teacher_solver = method == BD_DISTILL_TD ? BD_SAMPLER_DPMPP_2M : BD_SAMPLER_DDIM;
    c.teacher_refine = 1;
    c.teacher_forcing = 0;
    c.dense_targets = BD_DENSE_FROM_STUDENT;
    c.param = BD_PARAM_V;
    c.schedule = BD_SCHEDULE_COSINE;
    c.adam = bd_adam_config_init();
    c.adam.lr = 1e-4;
    c.ema_decay = 0.999;
    c.ema_warmup = 1;
    c.seed = 0;
    return c;
}

BDAPI bd_result bd_distill_student_from_teacher(const bd_denoiser *teacher, int64_t branches,
                                                bd_rng *rng, bd_denoiser **out) {
    bd_result r;
    if (!teacher || !out) return BD_ERROR_INVALID_ARGUMENT;
    *out = NULL;
    if ((r = bd_denoiser_create_like(teacher, branches, rng, out)) != BD_SUCCESS) return r;
    if ((r = bd_denoiser_copy_weights(*out, teacher)) != BD_SUCCESS) {
        bd_denoiser_free(*out);
        *out = NULL;
    }
    return r;
}

/* backend twin of host array h (n floats): h itself on a host backend */
static bd_result bd__distill_twin(bd_distill *d, float *h, int64_t n, float **out) {
    *out = h;
    if (!bd_backend_on_device(d->mctx)) return BD_SUCCESS;
    *out = NULL;
    return bd_backend_alloc(d->mctx, (size_t)n * sizeof(float), (void **)out);
}
static void bd__distill_twin_free(bd_distill *d, float **b, const float *h) {
    if (*b && *b != h) bd_backend_free(d->mctx, *b);
    *b = NULL;
}
/* host <-> backend copies of n floats; nothing to do on a host backend */
static bd_result bd__distill_up(bd_distill *d, float *b, const float *h, int64_t n) {
    return b == h ? BD_SUCCESS : bd_backend_upload(d->mctx, b, h, (size_t)n * sizeof(float));
}
static bd_result bd__distill_down(bd_distill *d, float *h, const float *b, int64_t n) {
    return b == h ? BD_SUCCESS : bd_backend_download(d->mctx, h, b, (size_t)n * sizeof(float));
}

static void bd__distill_free_buffers(bd_distill *d) {
    bd_context *ctx = d->ctx;
    float **bp[] = {&d->b_zt, &d->b_tt, &d->b_zcur, &d->b_tcur, &d->b_sout, &d->b_dout, &d->b_tout};
    const float *hp[] = {d->zt, d->tt, d->zcur, d->tcur, d->sout, d->dout, d->tout};
    float **fp[] = {&d->h_grads, &d->zt, &d->tt, &d->zs, &d->xt, &d->eps, &d->zcur, &d->xh,
                    &d->eh, &d->sout, &d->dout, &d->tout, &d->tcur, &d->traj, &d->sub,
                    &d->gdense, &d->gfinal};
    double **dp[] = {&d->grid, &d->tgrid, &d->fgrid, &d->at, &d->st, &d->as, &d->ss, &d->an, &d->sn};
    size_t i;
    for (i = 0; i < sizeof bp / sizeof bp[0]; i++) bd__distill_twin_free(d, bp[i], hp[i]);
    if (d->mctx) bd_backend_free(d->mctx, d->ema);
    d->ema = NULL;
    for (i = 0; i < sizeof fp / sizeof fp[0]; i++) { bd_free(ctx, *fp[i]); *fp[i] = NULL; }
    for (i = 0; i < sizeof dp / sizeof dp[0]; i++) { bd_free(ctx, *dp[i]); *dp[i] = NULL; }
    bd_free(ctx, d->idx);
    d->idx = NULL;
    bd_free(ctx, d->kmask);
    d->kmask = NULL;
}

BDAPI void bd_distill_free(bd_distill *dist) {
    bd_context *ctx;
    if (!dist) return;
    ctx = dist->ctx;
    bd__distill_free_buffers(dist);
    bd_adam_free(&dist->adam);
    bd_sampler_free(dist->tsampler);
    bd_sampler_free(dist->ssampler);
    if (dist->owned_teacher) bd_denoiser_free(dist->owned_teacher);
    bd_free(ctx, dist);
}

/* a zeroed host array of a*b*c elements of `size` bytes; *ok = 0 on failure */
static void *bd__distill_zalloc(bd_context *ctx, int64_t a, int64_t b, int64_t c, size_t size, int *ok) {
    size_t n = 1;
    void *p = NULL;
    if (!bd_size_mul(n, (size_t)a, &n) || !bd_size_mul(n, (size_t)b, &n) || !bd_size_mul(n, (size_t)c, &n))
        bd_error(ctx, BD_ERROR_OVERFLOW, "distill: buffer size overflows");
    else if ((p = bd_alloc_array(ctx, n, size)) != NULL)
        memset(p, 0, n * size);
    if (!p) *ok = 0;
    return p;
}
#define bd__distill_falloc(ctx, a, b, c, ok) BD__CAST(float *, bd__distill_zalloc(ctx, a, b, c, sizeof(float), ok))
#define bd__distill_dalloc(ctx, a, b, ok) BD__CAST(double *, bd__distill_zalloc(ctx, a, b, 1, sizeof(double), ok))

static bd_result bd__distill_check_config(bd_context *ctx, const bd_distill_config *c) {
    bd_result r;
    if (c->method != BD_DISTILL_PD && c->method != BD_DISTILL_TD && c->method != BD_DISTILL_CD)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: unknown method %d", (int)c->method);
    if (c->branches < 1 || c->branches > BD_DISTILL_MAX_BRANCHES)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: branches %lld not in 1..%d", (long long)c->branches, BD_DISTILL_MAX_BRANCHES);
    if (c->teacher_substeps < 1 || c->teacher_substeps % c->branches != 0)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: teacher_substeps %lld must be a positive multiple of branches %lld",
                        (long long)c->teacher_substeps, (long long)c->branches);
    if (c->teacher_refine < 1 || c->teacher_refine > BD_SAMPLER_MAX_STEPS)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: teacher_refine %lld must be >= 1", (long long)c->teacher_refine);
    if (c->student_steps >= 1 && c->student_steps * c->teacher_substeps <= BD_SAMPLER_MAX_STEPS &&
        c->student_steps * c->teacher_substeps * c->teacher_refine > BD_SAMPLER_MAX_STEPS)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: %lld x %lld x teacher_refine %lld teacher steps exceed %d",
                        (long long)c->student_steps, (long long)c->teacher_substeps, (long long)c->teacher_refine,
                        BD_SAMPLER_MAX_STEPS);
    if (c->student_steps < 1 || c->student_steps > BD_SAMPLER_MAX_STEPS / c->teacher_substeps)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: student_steps %lld x teacher_substeps %lld not in 1..%d",
                        (long long)c->student_steps, (long long)c->teacher_substeps, BD_SAMPLER_MAX_STEPS);
    if ((int)c->weights < 0 || (int)c->weights > (int)BD_WEIGHTS_AGREE)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: unknown weight schedule %d", (int)c->weights);
    if (c->weights == BD_WEIGHTS_AUX && !(c->aux_beta >= 0.0))
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: aux_beta %g must be >= 0", c->aux_beta);
    if (c->weights == BD_WEIGHTS_ANNEAL && c->anneal_steps < 1)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: anneal_steps must be >= 1");
    if ((c->weights == BD_WEIGHTS_ADAPTIVE || c->weights == BD_WEIGHTS_AGREE) &&
        !(c->adaptive_decay >= 0.0 && c->adaptive_decay < 1.0))
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: adaptive_decay %g not in [0, 1)", c->adaptive_decay);
    if (c->space != BD_DISTILL_SPACE_X && c->space != BD_DISTILL_SPACE_Z)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: unknown loss space %d", (int)c->space);
    if (c->distance != BD_DISTILL_L2 && c->distance != BD_DISTILL_L1)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: unknown distance %d", (int)c->distance);
    if (c->space == BD_DISTILL_SPACE_X && c->distance != BD_DISTILL_L2)
        return bd_error(ctx, BD_ERROR_CONFIG,
                        "distill: the x-space loss is L2 (docs/spec.md sec. 5); L1 needs space z");
    if (c->method != BD_DISTILL_TD && c->teacher_solver != BD_SAMPLER_DDIM)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: %s runs the teacher with DDIM sub-steps (teacher_solver must be ddim)",
                        c->method == BD_DISTILL_PD ? "PD" : "CD");
    if (c->method == BD_DISTILL_TD && c->teacher_solver != BD_SAMPLER_DDIM && c->teacher_solver != BD_SAMPLER_EULER &&
        c->teacher_solver != BD_SAMPLER_HEUN && c->teacher_solver != BD_SAMPLER_DPMPP_2M)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: TD needs a deterministic teacher solver (dpmpp2m, heun, euler, ddim)");
    if (c->dense_targets != BD_DENSE_FROM_STUDENT && c->dense_targets != BD_DENSE_FROM_TRAJECTORY)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: unknown dense_targets %d", (int)c->dense_targets);
    if (c->subdiv != BD_SUBDIV_LOGSNR && c->subdiv != BD_SUBDIV_T)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: unknown sub-grid kind %d", (int)c->subdiv);
    if (!(c->ema_decay >= 0.0 && c->ema_decay <= 1.0))
        return bd_error(ctx, BD_ERROR_CONFIG, "distill: ema_decay %g not in [0, 1]", c->ema_decay);
    if ((r = bd__adam_check(ctx, &c->adam, "distill")) != BD_SUCCESS) return r;
    return BD_SUCCESS;
}

/* (re)derive the teacher grid from dist->grid and cache alpha/sigma-free
   state; used at init and after a round */
static bd_result bd__distill_fine(bd_distill *d) {
    int64_t i;
    if (d->R == 1) {
        for (i = 0; i <= d->S; i++) d->fgrid[i] = d->tgrid[i];
        return BD_SUCCESS;
    }
    return bd_distill_teacher_grid(d->ctx, &d->sched, d->tgrid, d->S, d->R, d->config.subdiv, d->fgrid);
}
static bd_result bd__distill_grids(bd_distill *d) {
    bd_result r;
    d->S = d->N * d->Kt;
    r = bd_distill_teacher_grid(d->ctx, &d->sched, d->grid, d->N, d->Kt, d->config.subdiv, d->tgrid);
    return r == BD_SUCCESS ? bd__distill_fine(d) : r;
}

BDAPI bd_result bd_distill_init(bd_context *ctx, const bd_distill_config *config,
                                bd_denoiser *teacher, bd_denoiser *student, int64_t max_batch,
                                bd_distill **out) {
    bd_distill *d;
    bd_result r;
    int ok = 1;
    int64_t B, D, K, i;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!config || !teacher || !student || !out)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "distill init: NULL argument");
    *out = NULL;
    if ((r = bd__distill_check_config(ctx, config)) != BD_SUCCESS) return r;
    if (max_batch < 1) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "distill init: max_batch %lld < 1", (long long)max_batch);
    if (student->branches != config->branches)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill init: student has %lld branches, config %lld",
                        (long long)student->branches, (long long)config->branches);
    if (teacher->in_ch != student->in_ch || teacher->height != student->height || teacher->width != student->width)
        return bd_error(ctx, BD_ERROR_SHAPE, "distill init: teacher sample (%lld,%lld,%lld) vs student (%lld,%lld,%lld)",
                        (long long)teacher->in_ch, (long long)teacher->height, (long long)teacher->width,
                        (long long)student->in_ch, (long long)student->height, (long long)student->width);
    if (student->n_params < 1 || !student->grads)
        return bd_error(ctx, BD_ERROR_CONFIG, "distill init: the student has no trainable parameters");
    if ((bd_backend_on_device(teacher->ctx) || bd_backend_on_device(student->ctx)) &&
        teacher->ctx->backend != student->ctx->backend)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "distill init: teacher (backend '%s') and student (backend '%s') "
                        "must live on one backend (bd_denoiser_to_context)", teacher->ctx->backend->name,
                        student->ctx->backend->name);
    if ((r = bd__backend_model_ok(student, "distill init")) != BD_SUCCESS ||
        (r = bd__backend_model_ok(teacher, "distill init")) != BD_SUCCESS)
        return bd__relay(ctx, student->ctx, r);
    d = BD__CAST(bd_distill *, bd_alloc(ctx, sizeof(bd_distill)));
    if (!d) return ctx->last_result;
    memset(d, 0, sizeof *d);
    d->ctx = ctx;
    d->mctx = student->ctx;
    d->config = *config;
    d->config.custom_grid = NULL;
    d->teacher = teacher;
    d->student = student;
    d->rng = bd_rng_init(config->seed);
    d->max_batch = B = max_batch;
    d->D = D = bd_denoiser_sample_size(student);
    d->K = K = config->branches;
    d->Kt = config->teacher_substeps;
    d->N = config->student_steps;
    d->N_max = d->N;
    if ((r = bd_schedule_init(&d->sched, config->schedule)) != BD_SUCCESS) { bd_free(ctx, d); return r; }
    d->grid = bd__distill_dalloc(ctx, d->N + 1, 1, &ok);
    d->tgrid = bd__distill_dalloc(ctx, d->N * d->Kt + 1, 1, &ok);
    d->R = config->teacher_refine;
    d->fgrid = bd__distill_dalloc(ctx, d->N * d->Kt * d->R + 1, 1, &ok);
    d->zt = bd__distill_falloc(ctx, B, D, 1, &ok);
    d->tt = bd__distill_falloc(ctx, B, 1, 1, &ok);
    d->tcur = bd__distill_falloc(ctx, B, 1, 1, &ok);
    d->zs = bd__distill_falloc(ctx, K, B, D, &ok);
    d->xt = bd__distill_falloc(ctx, K, B, D, &ok);
    d->eps = bd__distill_falloc(ctx, B, D, 1, &ok);
    d->zcur = bd__distill_falloc(ctx, B, D, 1, &ok);
    d->xh = bd__distill_falloc(ctx, B, D, 1, &ok);
    d->eh = bd__distill_falloc(ctx, B, D, 1, &ok);
    d->sout = bd__distill_falloc(ctx, B, K * D, 1, &ok);
    d->dout = bd__distill_falloc(ctx, B, K * D, 1, &ok);
    d->tout = bd__distill_falloc(ctx, B, teacher->branches * D, 1, &ok);
    if (config->method == BD_DISTILL_TD) {
        d->traj = bd__distill_falloc(ctx, B, d->N * d->Kt + 1, D, &ok);
        d->sub = bd__distill_falloc(ctx, B, d->Kt + 1, D, &ok);
    }
    if (config->weights == BD_WEIGHTS_AGREE && K > 1) {
        d->gdense = bd__distill_falloc(ctx, student->n_params, 1, 1, &ok);
        d->gfinal = bd__distill_falloc(ctx, student->n_params, 1, 1, &ok);
    }
    d->at = bd__distill_dalloc(ctx, B, 1, &ok);
    d->st = bd__distill_dalloc(ctx, B, 1, &ok);
    d->an = bd__distill_dalloc(ctx, B, 1, &ok);
    d->sn = bd__distill_dalloc(ctx, B, 1, &ok);
    d->as = bd__distill_dalloc(ctx, K, B, &ok);
    d->ss = bd__distill_dalloc(ctx, K, B, &ok);
    if (ok) {
        d->idx = BD__CAST(int64_t *, bd_alloc_array(ctx, (size_t)B, sizeof(int64_t)));
        ok = d->idx != NULL;
    }
    if (ok && config->method == BD_DISTILL_CD) {
        d->kmask = BD__CAST(unsigned char *, bd_alloc_array(ctx, (size_t)(K * B), 1));
        ok = d->kmask != NULL;
    }
    if (ok && bd_backend_on_device(d->mctx) && d->gdense) d->h_grads = bd__distill_falloc(ctx, student->n_params, 1, 1, &ok);
    if (!ok) { r = ctx->last_result; goto fail; }
    r = bd_backend_alloc(d->mctx, (size_t)student->n_params * sizeof(float), (void **)&d->ema);
    if (r == BD_SUCCESS) r = bd__distill_twin(d, d->zt, B * D, &d->b_zt);
    if (r == BD_SUCCESS) r = bd__distill_twin(d, d->tt, B, &d->b_tt);
    if (r == BD_SUCCESS) r = bd__distill_twin(d, d->zcur, B * D, &d->b_zcur);
    if (r == BD_SUCCESS) r = bd__distill_twin(d, d->tcur, B, &d->b_tcur);
    if (r == BD_SUCCESS) r = bd__distill_twin(d, d->sout, B * K * D, &d->b_sout);
    if (r == BD_SUCCESS) r = bd__distill_twin(d, d->dout, B * K * D, &d->b_dout);
    if (r == BD_SUCCESS) r = bd__distill_twin(d, d->tout, B * teacher->branches * D, &d->b_tout);
    if (r != BD_SUCCESS) { r = bd__relay(ctx, d->mctx, r); goto fail; }
    if (config->custom_grid) {
        for (i = 0; i <= d->N; i++) d->grid[i] = config->custom_grid[i];
        if (d->grid[0] != 1.0 || d->grid[d->N] != 0.0) {
            r = bd_error(ctx, BD_ERROR_CONFIG, "distill init: custom grid must run from 1 to 0");
            goto fail;
        }
    } else if ((r = bd_time_grid(ctx, &d->sched, config->grid, d->N, d->grid)) != BD_SUCCESS) {
        goto fail;
    }
    if ((r = bd__distill_grids(d)) != BD_SUCCESS) goto fail;
    if ((r = bd_adam_init(d->mctx, &config->adam, student->n_params, &d->adam)) != BD_SUCCESS ||
        (r = bd_backend_copy(d->mctx, d->ema, student->params, (size_t)student->n_params * sizeof(float))) != BD_SUCCESS ||
        (r = bd_denoiser_reserve(teacher, B)) != BD_SUCCESS || (r = bd_denoiser_reserve(student, B)) != BD_SUCCESS) {
        r = bd__relay(ctx, d->mctx, r);
        goto fail;
    }
    if ((r = bd_sampler_init(ctx, teacher, B, &d->tsampler)) != BD_SUCCESS) goto fail;
    if ((r = bd_sampler_init(ctx, student, B, &d->ssampler)) != BD_SUCCESS) goto fail;
    *out = d;
    return BD_SUCCESS;
fail:
    bd_distill_free(d);
    return r;
}

/* ---- the teacher: recording a TD trajectory through the sampler callback */
typedef struct bd__traj_rec {
    float *traj; /* (n, S+1, D) */
    int64_t S, D;
    int64_t every; /* solver steps per recorded state (teacher_refine) */
} bd__traj_rec;

static int bd__distill_record(void *user_data, int64_t step, double t, double s, const float *z,
                              const float *x_hat, int64_t n, int64_t D, int64_t first) {
    bd__traj_rec *rec = BD__CAST(bd__traj_rec *, user_data);
    int64_t b;
    (void)t; (void)s; (void)x_hat;
    if (step % rec->every != 0) return 0;
    step /= rec->every;
    for (b = 0; b < n; b++)
        memcpy(rec->traj + ((first + b) * (rec->S + 1) + step) * D, z + b * D, (size_t)D * sizeof(float));
    return 0;
}

/* the teacher's ODE solve of S solver steps on grid g (TD trajectories) */
static bd_sampler_config bd__distill_teacher_cfg(const bd_distill *d, int64_t S, const double *g) {
    bd_sampler_config sc = bd_sampler_config_init(d->config.teacher_solver, S);
    sc.custom_grid = g;
    sc.branch = -1;
    sc.param = d->config.param;
    sc.schedule = d->config.schedule;
    sc.eta = 0.0;
    return sc;
}

/* solve n <= max_batch trajectories whose state 0 is already in traj */
static bd_result bd__distill_solve(bd_distill *d, float *traj, int64_t n) {
    bd_sampler_config sc = bd__distill_teacher_cfg(d, d->S * d->R, d->fgrid);
    bd__traj_rec rec;
    int64_t b, D = d->D, S = d->S;
    bd_result r;
    rec.traj = traj; rec.S = S; rec.D = D; rec.every = d->R;
    sc.callback = bd__distill_record;
    sc.user_data = &rec;
    for (b = 0; b < n; b++) memcpy(d->zcur + b * D, traj + b * (S + 1) * D, (size_t)D * sizeof(float));
    if ((r = bd_sampler_run(d->tsampler, &sc, d->zcur, n, NULL, NULL)) != BD_SUCCESS) return r;
    for (b = 0; b < n; b++) memcpy(traj + (b * (S + 1) + S) * D, d->zcur + b * D, (size_t)D * sizeof(float));
    return BD_SUCCESS;
}

BDAPI bd_result bd_distill_teacher_trajectories(bd_distill *dist, float *traj, int64_t count,
                                                bd_rng *rng) {
    int64_t c0, b, D, S;
    bd_result r;
    if (!dist) return BD_ERROR_INVALID_ARGUMENT;
    if (!traj || !rng || count < 0) return bd_error(dist->ctx, BD_ERROR_INVALID_ARGUMENT, "teacher trajectories: bad arguments");
    D = dist->D; S = dist->S;
    for (c0 = 0; c0 < count; c0 += dist->max_batch) {
        int64_t n = count - c0 < dist->max_batch ? count - c0 : dist->max_batch;
        float *tr = traj + c0 * (S + 1) * D;
        for (b = 0; b < n; b++) bd_rng_normal(rng, tr + b * (S + 1) * D, D);
        if ((r = bd__distill_solve(dist, tr, n)) != BD_SUCCESS) return r;
    }
    return BD_SUCCESS;
}

BDAPI void bd_distill_set_trajectory_source(bd_distill *dist, bd_traj_fn fn, void *user_data) {
    if (!dist) return;
    dist->traj_fn = fn;
    dist->traj_user_data = user_data;
    dist->traj_cache = NULL;
    dist->traj_cache_count = 0;
    dist->traj_stream = NULL;
}

/* n trajectories, each picked by one bd_rng_u64 draw from the cache (in
   memory, or read from the stream) */
static bd_result bd__distill_cache_fn(void *user_data, float *traj, int64_t n, bd_rng *rng) {
    bd_distill *d = BD__CAST(bd_distill *, user_data);
    size_t len = (size_t)((d->S + 1) * d->D);
    int64_t b;
    for (b = 0; b < n; b++) {
        int64_t j = (int64_t)(bd_rng_u64(rng) % (uint64_t)d->traj_cache_count);
        bd_result r = BD_SUCCESS;
        if (d->traj_stream) r = bd_npy_stream_read(d->ctx, d->traj_stream, j * (int64_t)len, (int64_t)len, traj + (size_t)b * len);
        else memcpy(traj + (size_t)b * len, d->traj_cache + (size_t)j * len, len * sizeof(float));
        if (r != BD_SUCCESS) return r;
    }
    return BD_SUCCESS;
}

BDAPI bd_result bd_distill_set_trajectories(bd_distill *dist, const float *traj, int64_t count) {
    if (!dist) return BD_ERROR_INVALID_ARGUMENT;
    if (dist->config.method != BD_DISTILL_TD)
        return bd_error(dist->ctx, BD_ERROR_INVALID_ARGUMENT, "set trajectories: trajectories are for TD");
    if (!traj || count < 1) return bd_error(dist->ctx, BD_ERROR_INVALID_ARGUMENT, "set trajectories: need count >= 1 trajectories");
    dist->traj_fn = bd__distill_cache_fn;
    dist->traj_user_data = dist;
    dist->traj_cache = traj;
    dist->traj_cache_count = count;
    dist->traj_stream = NULL;
    return BD_SUCCESS;
}

BDAPI bd_result bd_distill_set_trajectory_stream(bd_distill *dist, bd_npy_stream *stream) {
    int64_t per;
    if (!dist) return BD_ERROR_INVALID_ARGUMENT;
    if (dist->config.method != BD_DISTILL_TD)
        return bd_error(dist->ctx, BD_ERROR_INVALID_ARGUMENT, "set trajectory stream: trajectories are for TD");
    if (!stream || !stream->file)
        return bd_error(dist->ctx, BD_ERROR_INVALID_ARGUMENT, "set trajectory stream: the stream is not open");
    per = (dist->S + 1) * dist->D;
    if (stream->ndim < 3 || stream->shape[0] < 1 || stream->shape[1] != dist->S + 1 ||
        stream->numel != stream->shape[0] * per)
        return bd_error(dist->ctx, BD_ERROR_SHAPE,
                        "set trajectory stream: need (count >= 1, %lld, %lld values) for %lld student steps x %lld "
                        "teacher sub-steps", (long long)(dist->S + 1), (long long)dist->D, (long long)dist->N,
                        (long long)dist->Kt);
    dist->traj_fn = bd__distill_cache_fn;
    dist->traj_user_data = dist;
    dist->traj_cache = NULL;
    dist->traj_cache_count = stream->shape[0];
    dist->traj_stream = stream;
    return BD_SUCCESS;
}

/* ---- one step */
static void bd__distill_current_weights(bd_distill *d) {
    const bd_distill_config *c = &d->config;
    double tau = 0.0, ema[BD_DISTILL_MAX_BRANCHES];
    const double *e = NULL;
    int64_t k;
    if (c->weights == BD_WEIGHTS_ANNEAL) {
        tau = (double)d->step / (double)c->anneal_steps;
        if (tau > 1.0) tau = 1.0;
    }
    if (c->weights == BD_WEIGHTS_ADAPTIVE && d->branch_ema_count > 0) {
        double corr = 1.0 - pow(c->adaptive_decay, (double)d->branch_ema_count);
        for (k = 0; k < d->K; k++) ema[k] = d->branch_ema[k] / corr;
        e = ema;
    }
    if (c->weights == BD_WEIGHTS_AGREE && d->agree_count > 0) {
        ema[0] = d->agree_ema / (1.0 - pow(c->adaptive_decay, (double)d->agree_count));
        e = ema;
    }
    bd_distill_branch_weights(d->ctx, d->weights, c->weights, d->K, c->aux_beta, tau, e);
}

static int bd__finite(double x) { return x == x && x < 1e300 && x > -1e300; }

/* the student's forward on (zt, tt) into sout (uploads, downloads) */
static bd_result bd__distill_student_forward(bd_distill *d, int64_t n) {
    bd_result r;
    if ((r = bd__distill_up(d, d->b_zt, d->zt, n * d->D)) != BD_SUCCESS) return r;
    if ((r = bd__distill_up(d, d->b_tt, d->tt, n)) != BD_SUCCESS) return r;
    if ((r = bd_denoiser_forward(d->student, d->b_sout, d->b_zt, d->b_tt, n, 1)) != BD_SUCCESS) return r;
    return bd__distill_down(d, d->sout, d->b_sout, n * d->K * d->D);
}
static bd_result bd__distill_student_backward(bd_distill *d, int64_t n) {
    bd_result r;
    if ((r = bd__distill_up(d, d->b_dout, d->dout, n * d->K * d->D)) != BD_SUCCESS) return r;
    return bd_denoiser_backward(d->student, NULL, d->b_dout, n);
}
/* the student's gradient as a host array (downloaded on a device) */
static bd_result bd__distill_host_grads(bd_distill *d, float **out) {
    *out = d->student->grads;
    if (!bd_backend_on_device(d->mctx)) return BD_SUCCESS;
    *out = d->h_grads;
    return bd_backend_download(d->mctx, d->h_grads, d->student->grads, (size_t)d->student->n_params * sizeof(float));
}

/* forward the student on (zt, tt), loss against the current targets,
   backward; accumulates loss/branch losses scaled by `scale` */
static bd_result bd__distill_student_pass(bd_distill *d, int64_t n, double scale, double *loss,
                                          double *bl) {
    bd_result r;
    double bl_i[BD_DISTILL_MAX_BRANCHES], L;
    int64_t k;
    const bd_distill_config *c = &d->config;
    if (d->gdense) {
        /* agree: the dense group's and the final branch's gradients apart
           (two forward/backward passes; bd_distill_step mixes them) */
        double wd[BD_DISTILL_MAX_BRANCHES], wf[BD_DISTILL_MAX_BRANCHES], Ld = 0.0, Lf = 0.0;
        int64_t np = d->student->n_params, pass, i;
        for (k = 0; k < d->K; k++) {
            wd[k] = k < d->K - 1 ? 1.0 / (double)(d->K - 1) : 0.0;
            wf[k] = k < d->K - 1 ? 0.0 : 1.0;
        }
        for (pass = 0; pass < 2; pass++) {
            float *acc = pass == 0 ? d->gdense : d->gfinal, *g;
            if ((r = bd__distill_student_forward(d, n)) != BD_SUCCESS) return r;
            memset(d->dout, 0, (size_t)(n * d->K * d->D) * sizeof(float));
            L = bd__distill_loss_masked(d->dout, bl_i, d->sout, d->zt, d->xt, d->zs, d->at, d->st, d->as, d->ss,
                                        pass == 0 ? wd : wf, c->param, c->space, c->distance, n, d->K, d->D, scale,
                                        d->kmask);
            if (pass == 0) Ld = L;
            else Lf = L;
            if (!bd__finite(L)) return BD_ERROR_NONFINITE;
            bd_denoiser_zero_grad(d->student);
            if ((r = bd__distill_student_backward(d, n)) != BD_SUCCESS) return r;
            if ((r = bd__distill_host_grads(d, &g)) != BD_SUCCESS) return r;
            for (i = 0; i < np; i++) acc[i] += g[i];
        }
        for (k = 0; k < d->K; k++) bl[k] += scale * bl_i[k];
        *loss += scale * (Ld + Lf); /* per-group; bd_distill_step reweights */
        return BD_SUCCESS;
    }
    if ((r = bd__distill_student_forward(d, n)) != BD_SUCCESS) return r;
    memset(d->dout, 0, (size_t)(n * d->K * d->D) * sizeof(float));
    L = bd__distill_loss_masked(d->dout, bl_i, d->sout, d->zt, d->xt, d->zs, d->at, d->st, d->as, d->ss,
                                d->weights, c->param, c->space, c->distance, n, d->K, d->D, scale, d->kmask);
    *loss += scale * L;
    for (k = 0; k < d->K; k++) bl[k] += scale * bl_i[k];
    if (!bd__finite(L)) return BD_ERROR_NONFINITE;
    return bd__distill_student_backward(d, n);
}

/* the teacher's final branch walks `steps` DDIM steps of fgrid from d->zcur,
   sample b starting at fine index d->idx[b] * mult; every rec_every-th state
   (0: none) is branch (j / rec_every - 1)'s target state in d->zs/as/ss */
static bd_result bd__distill_teacher_walk(bd_distill *d, int64_t n, int64_t mult, int64_t steps, int64_t rec_every) {
    int64_t b, j, k, D = d->D, TB = d->teacher->branches;
    bd_result r;
    for (j = 1; j <= steps; j++) {
        for (b = 0; b < n; b++) {
            double tn = d->fgrid[d->idx[b] * mult + j];
            d->tcur[b] = (float)d->fgrid[d->idx[b] * mult + j - 1];
            bd_schedule_alpha_sigma(&d->sched, tn, &d->an[b], &d->sn[b]);
        }
        /* bd_model_predict with the final branch, the network in the backend */
        if ((r = bd__distill_up(d, d->b_zcur, d->zcur, n * D)) != BD_SUCCESS ||
            (r = bd__distill_up(d, d->b_tcur, d->tcur, n)) != BD_SUCCESS ||
            (r = bd_denoiser_forward(d->teacher, d->b_tout, d->b_zcur, d->b_tcur, n, 0)) != BD_SUCCESS ||
            (r = bd__distill_down(d, d->tout, d->b_tout, n * TB * D)) != BD_SUCCESS)
            return r;
        for (b = 0; b < n; b++) {
            double al, sg;
            bd_schedule_alpha_sigma(&d->sched, (double)d->tcur[b], &al, &sg);
            bd_param_predict(d->config.param, d->xh + b * D, d->eh + b * D, d->tout + b * TB * D, TB, TB - 1,
                             d->zcur + b * D, &al, &sg, 1, D);
        }
        bd_ddim_jump(d->zcur, d->xh, d->eh, d->an, d->sn, n, D);
        if (rec_every > 0 && j % rec_every == 0) {
            k = j / rec_every - 1;
            memcpy(d->zs + k * n * D, d->zcur, (size_t)(n * D) * sizeof(float));
            for (b = 0; b < n; b++) { d->as[k * n + b] = d->an[b]; d->ss[k * n + b] = d->sn[b]; }
        }
    }
    return BD_SUCCESS;
}

/* z_t = alpha_t x + sigma_t eps at each sample's d->tt (alpha, sigma in at, st) */
static void bd__distill_noise_data(bd_distill *d, const float *x, int64_t n) {
    int64_t b, e, D = d->D;
    bd_rng_normal(&d->rng, d->eps, n * D);
    for (b = 0; b < n; b++)
        for (e = 0; e < D; e++)
            d->zt[b * D + e] = (float)(d->at[b] * x[b * D + e] + d->st[b] * d->eps[b * D + e]);
}

static bd_result bd__distill_pd_batch(bd_distill *d, const float *x, int64_t n, double *loss,
                                      double *bl) {
    int64_t b, k, D = d->D, K = d->K, per = d->Kt / d->K, R = d->R;
    bd_result r;
    for (b = 0; b < n; b++) {
        double a, s;
        int64_t i = (int64_t)(bd_rng_u64(&d->rng) % (uint64_t)d->N);
        d->idx[b] = i;
        bd_schedule_alpha_sigma(&d->sched, d->grid[i], &a, &s);
        d->at[b] = a; d->st[b] = s;
        d->tt[b] = (float)d->grid[i];
    }
    bd__distill_noise_data(d, x, n);
    /* the teacher: Kt DDIM sub-steps (each R fine steps) with its final branch */
    memcpy(d->zcur, d->zt, (size_t)(n * D) * sizeof(float));
    if ((r = bd__distill_teacher_walk(d, n, d->Kt * R, d->Kt * R, per * R)) != BD_SUCCESS) return r;
    for (k = 0; k < K; k++)
        bd_distill_target(d->xt + k * n * D, d->zt, d->zs + k * n * D, d->at, d->st, d->as + k * n,
                          d->ss + k * n, n, D);
    return bd__distill_student_pass(d, n, 1.0, loss, bl);
}

/* CD, multistep consistency distillation (Song et al. 2023; Heek et al.
   2024), docs/spec.md sec. 5.  Per sample a teacher interval j uniform in
   0..S-1 of the teacher grid, s = tgrid[j] in student segment i = j / Kt
   (end u = tgrid[(i+1) Kt]); z_s = alpha_s x + sigma_s eps; the teacher
   takes one DDIM step (R fine steps) to s' = tgrid[j+1], giving z'.
   Branch k-1 (k = 1..K) owns the point r_k = tgrid[i Kt + k Kt/K] of the
   segment (r_K = u).  Its target state at r_k:
     r_k = s'  : z' itself (the boundary condition),
     r_k < s'  : the DDIM jump to r_k of the target network's branch k-1 at
                 (z', s'); the target network is the student's current
                 weights without gradient (stopgrad theta, Song & Dhariwal 2023),
     r_k > s'  : none (the sample has passed it: masked out of the loss).
   The student's branch k-1 at (z_s, s) is trained so its DDIM jump to r_k
   lands there (the z-space loss; or its x-space form with lambda(s)).
   K = 1 is plain multistep CD (N = 1: CD), the sparse baseline; K > 1 is
   the B-DENSE head on it: each branch a consistency function to its own
   boundary r_k inside the segment. */
static bd_result bd__distill_cd_batch(bd_distill *d, const float *x, int64_t n, double *loss,
                                      double *bl) {
    int64_t b, k, D = d->D, K = d->K, Kt = d->Kt, per = d->Kt / d->K;
    int need_net = 0;
    bd_result r;
    for (b = 0; b < n; b++) {
        int64_t j = (int64_t)(bd_rng_u64(&d->rng) % (uint64_t)d->S);
        d->idx[b] = j;
        bd_schedule_alpha_sigma(&d->sched, d->tgrid[j], &d->at[b], &d->st[b]);
        d->tt[b] = (float)d->tgrid[j];
        if ((j / Kt + 1) * Kt > j + 1) need_net = 1; /* the segment end lies past s' */
    }
    bd__distill_noise_data(d, x, n);
    memcpy(d->zcur, d->zt, (size_t)(n * D) * sizeof(float));
    if ((r = bd__distill_teacher_walk(d, n, d->R, d->R, 0)) != BD_SUCCESS) return r;
    /* the target network at (z', s') (only when some branch point lies past s') */
    if (need_net) {
        for (b = 0; b < n; b++) d->tcur[b] = (float)d->tgrid[d->idx[b] + 1];
        if ((r = bd__distill_up(d, d->b_zcur, d->zcur, n * D)) != BD_SUCCESS ||
            (r = bd__distill_up(d, d->b_tcur, d->tcur, n)) != BD_SUCCESS ||
            (r = bd_denoiser_forward(d->student, d->b_sout, d->b_zcur, d->b_tcur, n, 0)) != BD_SUCCESS ||
            (r = bd__distill_down(d, d->sout, d->b_sout, n * K * D)) != BD_SUCCESS)
            return r;
    }
    for (k = 0; k < K; k++) {
        for (b = 0; b < n; b++) {
            int64_t j = d->idx[b], m = (j / Kt) * Kt + (k + 1) * per, e;
            float *zs = d->zs + (k * n + b) * D;
            double ar, sr;
            bd_schedule_alpha_sigma(&d->sched, d->tgrid[m], &ar, &sr);
            d->as[k * n + b] = ar; d->ss[k * n + b] = sr;
            d->kmask[k * n + b] = (unsigned char)(m >= j + 1);
            if (m <= j + 1) {
                memcpy(zs, d->zcur + b * D, (size_t)D * sizeof(float)); /* boundary (or unused) */
            } else {
                double al, sg;
                bd_schedule_alpha_sigma(&d->sched, d->tgrid[j + 1], &al, &sg);
                bd_param_predict(d->config.param, d->xh, d->eh, d->sout + b * K * D, K, k, d->zcur + b * D,
                                 &al, &sg, 1, D);
                for (e = 0; e < D; e++) zs[e] = (float)(ar * (double)d->xh[e] + sr * (double)d->eh[e]);
            }
            if (d->kmask[k * n + b])
                bd_distill_target(d->xt + (k * n + b) * D, d->zt + b * D, zs, d->at + b, d->st + b, &ar, &sr, 1, D);
        }
    }
    return bd__distill_student_pass(d, n, 1.0, loss, bl);
}

/* dense targets from the student's state: the teacher solves student
   interval i (Kt sub-steps of tgrid) from the student's detached z_t (d->zt);
   branches k < K get the states it passes (d->zs), the final branch keeps
   the trajectory's */
static bd_result bd__distill_dense_from_student(bd_distill *d, int64_t i, int64_t n) {
    bd_sampler_config sc = bd__distill_teacher_cfg(d, d->Kt * d->R, d->fgrid + i * d->Kt * d->R);
    bd__traj_rec rec;
    int64_t b, k, D = d->D, Kt = d->Kt, per = d->Kt / d->K;
    bd_result r;
    rec.traj = d->sub; rec.S = Kt; rec.D = D; rec.every = d->R;
    sc.callback = bd__distill_record;
    sc.user_data = &rec;
    memcpy(d->eps, d->zt, (size_t)(n * D) * sizeof(float)); /* eps: free in TD */
    if ((r = bd_sampler_run(d->tsampler, &sc, d->eps, n, NULL, NULL)) != BD_SUCCESS) return r;
    for (k = 0; k < d->K - 1; k++)
        for (b = 0; b < n; b++)
            memcpy(d->zs + (k * n + b) * D, d->sub + (b * (Kt + 1) + (k + 1) * per) * D, (size_t)D * sizeof(float));
    return BD_SUCCESS;
}

static bd_result bd__distill_td_batch(bd_distill *d, int64_t n, double *loss, double *bl) {
    int64_t b, i, k, D = d->D, K = d->K, Kt = d->Kt, S = d->S, per = d->Kt / d->K;
    bd_result r;
    double scale = 1.0 / (double)d->N;
    int resolve = !d->config.teacher_forcing && d->config.dense_targets == BD_DENSE_FROM_STUDENT && K > 1;
    if (d->traj_fn) {
        if ((r = d->traj_fn(d->traj_user_data, d->traj, n, &d->rng)) != BD_SUCCESS) return r;
    } else {
        for (b = 0; b < n; b++) bd_rng_normal(&d->rng, d->traj + b * (S + 1) * D, D);
        if ((r = bd__distill_solve(d, d->traj, n)) != BD_SUCCESS) return r;
    }
    for (b = 0; b < n; b++) memcpy(d->zcur + b * D, d->traj + b * (S + 1) * D, (size_t)D * sizeof(float));
    for (i = 0; i < d->N; i++) {
        double a, s, au, su;
        bd_schedule_alpha_sigma(&d->sched, d->grid[i], &a, &s);
        bd_schedule_alpha_sigma(&d->sched, d->grid[i + 1], &au, &su);
        for (b = 0; b < n; b++) {
            const float *src = d->config.teacher_forcing ? d->traj + (b * (S + 1) + i * Kt) * D : d->zcur + b * D;
            memcpy(d->zt + b * D, src, (size_t)D * sizeof(float));
            d->tt[b] = (float)d->grid[i];
            d->at[b] = a; d->st[b] = s;
            d->an[b] = au; d->sn[b] = su;
        }
        for (k = 0; k < K; k++) {
            int64_t j = i * Kt + (k + 1) * per;
            double ak, sk;
            bd_schedule_alpha_sigma(&d->sched, d->tgrid[j], &ak, &sk);
            for (b = 0; b < n; b++) {
                memcpy(d->zs + (k * n + b) * D, d->traj + (b * (S + 1) + j) * D, (size_t)D * sizeof(float));
                d->as[k * n + b] = ak; d->ss[k * n + b] = sk;
            }
        }
        if (resolve && (r = bd__distill_dense_from_student(d, i, n)) != BD_SUCCESS) return r;
        for (k = 0; k < K; k++)
            bd_distill_target(d->xt + k * n * D, d->zt, d->zs + k * n * D, d->at, d->st,
                              d->as + k * n, d->ss + k * n, n, D);
        if ((r = bd__distill_student_pass(d, n, scale, loss, bl)) != BD_SUCCESS) return r;
        /* the student's own next state, detached: DDIM with its final branch */
        bd_param_predict(d->config.param, d->xh, d->eh, d->sout, K, K - 1, d->zt, d->at, d->st, n, D);
        bd_ddim_jump(d->zcur, d->xh, d->eh, d->an, d->sn, n, D);
    }
    return BD_SUCCESS;
}

/* A failure recorded on the models' context during a call is repeated on
   the distiller's (when they differ); call bd__distill_enter first. */
static void bd__distill_enter(bd_distill *d) {
    if (d->mctx != d->ctx) d->mctx->last_result = BD_SUCCESS;
}
static bd_result bd__distill_leave(bd_distill *d, bd_result r) {
    if (r != BD_SUCCESS && d->mctx != d->ctx && d->mctx->last_result != BD_SUCCESS)
        return bd_error(d->ctx, r, "%s", bd_context_message(d->mctx));
    return r;
}

static bd_result bd__distill_step(bd_distill *dist, const float *x, int64_t n, double *loss,
                                  double *branch_loss);
BDAPI bd_result bd_distill_step(bd_distill *dist, const float *x, int64_t n, double *loss,
                                double *branch_loss) {
    if (!dist) return BD_ERROR_INVALID_ARGUMENT;
    bd__distill_enter(dist);
    return bd__distill_leave(dist, bd__distill_step(dist, x, n, loss, branch_loss));
}

/* One step, top to bottom: the branch weights; the batch (PD: draws, the
   teacher's sub-steps, targets; TD: trajectories, then the student's N
   passes), each student pass a forward, the multi-branch loss and its
   gradient on the host, a backward; agree's gradient mix; then AdamW with
   clipping (bd_adam_step), the EMA (bd_ema_decay, vec_ema) and the branch
   EMA, every one of them in the models' backend. */
static bd_result bd__distill_step(bd_distill *dist, const float *x, int64_t n, double *loss,
                                  double *branch_loss) {
    bd_result r;
    double L = 0.0, bl[BD_DISTILL_MAX_BRANCHES], gnorm = 0.0, decay, cosv = 0.0, agree_next = 0.0;
    int64_t k;
    if (n < 1 || n > dist->max_batch)
        return bd_error(dist->ctx, BD_ERROR_INVALID_ARGUMENT, "distill step: batch %lld not in 1..%lld", (long long)n, (long long)dist->max_batch);
    if (dist->config.method != BD_DISTILL_TD && !x)
        return bd_error(dist->ctx, BD_ERROR_INVALID_ARGUMENT, "distill step: %s needs a data batch x",
                        dist->config.method == BD_DISTILL_PD ? "PD" : "CD");
    if (dist->config.method == BD_DISTILL_TD && x)
        return bd_error(dist->ctx, BD_ERROR_INVALID_ARGUMENT, "distill step: TD takes no data (x must be NULL)");
    for (k = 0; k < dist->K; k++) bl[k] = 0.0;
    bd__distill_current_weights(dist);
    bd_denoiser_zero_grad(dist->student);
    dist->last_n = n;
    if (dist->gdense) {
        memset(dist->gdense, 0, (size_t)dist->student->n_params * sizeof(float));
        memset(dist->gfinal, 0, (size_t)dist->student->n_params * sizeof(float));
    }
    if (dist->config.method == BD_DISTILL_PD) r = bd__distill_pd_batch(dist, x, n, &L, bl);
    else if (dist->config.method == BD_DISTILL_CD) r = bd__distill_cd_batch(dist, x, n, &L, bl);
    else r = bd__distill_td_batch(dist, n, &L, bl);
    if (r == BD_SUCCESS && dist->gdense) {
        /* agree: cosine of the two gradients, its EMA, the weights, the mix */
        double dd = 0.0, ff = 0.0, df = 0.0, ema1, e1;
        int64_t i, np = dist->student->n_params, ti;
        const bd_denoiser *sd = dist->student;
        float *g = bd_backend_on_device(dist->mctx) ? dist->h_grads : dist->student->grads;
        /* over the shared trunk: skip the branch heads (tensors of K*C
           outputs, the widened output layer), which the two groups never share */
        for (ti = 0; ti < (sd->n_tensors > 0 ? sd->n_tensors : 1); ti++) {
            int64_t o0 = 0, o1 = np;
            if (sd->n_tensors > 0) {
                const bd_param_tensor *pt = &sd->tensors[ti];
                if (pt->ndim >= 1 && pt->shape[0] == dist->K * sd->in_ch) continue;
                o0 = pt->offset, o1 = pt->offset + pt->numel;
            }
            for (i = o0; i < o1; i++) {
                dd += (double)dist->gdense[i] * dist->gdense[i];
                ff += (double)dist->gfinal[i] * dist->gfinal[i];
                df += (double)dist->gdense[i] * dist->gfinal[i];
            }
        }
        cosv = (dd > 0.0 && ff > 0.0) ? df / sqrt(dd * ff) : 0.0;
        if (!bd__finite(cosv)) r = BD_ERROR_NONFINITE;
        else {
            ema1 = dist->config.adaptive_decay * dist->agree_ema + (1.0 - dist->config.adaptive_decay) * cosv;
            e1 = ema1 / (1.0 - pow(dist->config.adaptive_decay, (double)(dist->agree_count + 1)));
            bd_distill_branch_weights(dist->ctx, dist->weights, BD_WEIGHTS_AGREE, dist->K, 0.0, 0.0, &e1);
            for (i = 0; i < np; i++)
                g[i] = (float)(dist->weights[0] * (double)(dist->K - 1) * dist->gdense[i] + dist->gfinal[i]);
            r = bd__distill_up(dist, dist->student->grads, g, np);
            /* L was the per-group sum: the weighted loss */
            L = 0.0;
            for (k = 0; k < dist->K; k++) L += dist->weights[k] * bl[k];
            agree_next = ema1;
        }
    }
    if (loss) *loss = L;
    if (branch_loss) for (k = 0; k < dist->K; k++) branch_loss[k] = bl[k];
    dist->last_loss = L;
    for (k = 0; k < dist->K; k++) dist->last_branch_loss[k] = bl[k];
    if (r == BD_ERROR_NONFINITE || (r == BD_SUCCESS && !bd__finite(L)))
        return bd_error(dist->ctx, BD_ERROR_NONFINITE, "distill step %lld: non-finite loss %g", (long long)dist->step, L);
    if (r != BD_SUCCESS) return r;
    if ((r = bd_adam_step(&dist->adam, dist->student->params, dist->student->grads, &gnorm)) != BD_SUCCESS)
        return r;
    dist->last_grad_norm = gnorm;
    decay = bd_ema_decay(dist->config.ema_decay, dist->config.ema_warmup, dist->step);
    BD_OP(dist->mctx, vec_ema, dist->ema, dist->student->params, dist->student->n_params, decay);
    if ((r = bd_backend_sync(dist->mctx)) != BD_SUCCESS) return r;
    for (k = 0; k < dist->K; k++)
        dist->branch_ema[k] = dist->config.adaptive_decay * dist->branch_ema[k] +
                              (1.0 - dist->config.adaptive_decay) * bl[k];
    dist->branch_ema_count++;
    if (dist->gdense) {
        dist->agree_ema = agree_next;
        dist->agree_count++;
        dist->last_cos = cosv;
    }
    dist->step++;
    return BD_SUCCESS;
}

BDAPI bd_result bd_distill_copy_ema(const bd_distill *dist, bd_denoiser *dst) {
    if (!dist || !dst) return BD_ERROR_INVALID_ARGUMENT;
    if (dst->n_params != dist->student->n_params)
        return bd_error(dist->ctx, BD_ERROR_SHAPE, "copy_ema: %lld params vs %lld", (long long)dst->n_params, (long long)dist->student->n_params);
    return bd__relay(dist->ctx, dst->ctx,
                     bd_backend_transfer(dst->ctx, dst->params, dist->mctx, dist->ema, (size_t)dst->n_params * sizeof(float)));
}

/* the caller's teacher is never overwritten: a round's teacher is a
   K-branch network of the student's architecture owned by the distiller */
static bd_result bd__distill_own_teacher(bd_distill *dist) {
    bd_context *ctx = dist->ctx;
    bd_denoiser *st = dist->student;
    bd_result r;
    bd_denoiser *nt = NULL;
    bd_sampler *ns = NULL;
    int ok = 1;
    float *tout;
    if ((r = bd_denoiser_create_like(st, st->branches, &dist->rng, &nt)) != BD_SUCCESS) return r;
    tout = bd__distill_falloc(ctx, dist->max_batch, st->branches * dist->D, 1, &ok);
    if (!ok || (r = bd_denoiser_reserve(nt, dist->max_batch)) != BD_SUCCESS ||
        (r = bd_sampler_init(ctx, nt, dist->max_batch, &ns)) != BD_SUCCESS) {
        if (!ok) r = ctx->last_result;
        bd_free(ctx, tout);
        bd_denoiser_free(nt);
        return r;
    }
    {
        float *bt = NULL;
        if ((r = bd__distill_twin(dist, tout, dist->max_batch * st->branches * dist->D, &bt)) != BD_SUCCESS) {
            bd_sampler_free(ns);
            bd_free(ctx, tout);
            bd_denoiser_free(nt);
            return bd__relay(ctx, dist->mctx, r);
        }
        bd__distill_twin_free(dist, &dist->b_tout, dist->tout);
        dist->b_tout = bt;
    }
    bd_sampler_free(dist->tsampler);
    bd_free(ctx, dist->tout);
    dist->tsampler = ns;
    dist->tout = tout;
    dist->owned_teacher = nt;
    dist->teacher = nt;
    return BD_SUCCESS;
}

BDAPI bd_result bd_distill_next_round(bd_distill *dist) {
    bd_context *ctx;
    bd_denoiser *st;
    bd_result r;
    int64_t i;
    if (!dist) return BD_ERROR_INVALID_ARGUMENT;
    ctx = dist->ctx;
    st = dist->student;
    if (dist->config.method != BD_DISTILL_PD)
        return bd_error(ctx, BD_ERROR_STATE, "next_round: rounds are for progressive distillation");
    if (dist->N < 2 || dist->N % 2 != 0)
        return bd_error(ctx, BD_ERROR_STATE, "next_round: student steps %lld cannot be halved", (long long)dist->N);
    if (dist->R != 1)
        return bd_error(ctx, BD_ERROR_CONFIG, "next_round: teacher_refine %lld: the next round's teacher is this "
                        "student, which can only be queried on its own grid (teacher_refine 1)", (long long)dist->R);
    if (dist->Kt != 2)
        return bd_error(ctx, BD_ERROR_CONFIG,
                        "next_round: teacher_substeps %lld: the next round's teacher is this student, trained only "
                        "at the %lld times of its own grid, so the new teacher grid must be that grid (2 sub-steps "
                        "per new student step); PD rounds need teacher_substeps 2 (branches 1 or 2)",
                        (long long)dist->Kt, (long long)dist->N);
    if (dist->teacher != dist->owned_teacher && (r = bd__distill_own_teacher(dist)) != BD_SUCCESS)
        return r;
    if ((r = bd_backend_copy(dist->mctx, dist->teacher->params, dist->ema, (size_t)st->n_params * sizeof(float))) != BD_SUCCESS ||
        (r = bd_backend_copy(dist->mctx, st->params, dist->ema, (size_t)st->n_params * sizeof(float))) != BD_SUCCESS ||
        (r = bd_backend_zero(dist->mctx, dist->adam.m, (size_t)dist->adam.n * sizeof(float))) != BD_SUCCESS ||
        (r = bd_backend_zero(dist->mctx, dist->adam.v, (size_t)dist->adam.n * sizeof(float))) != BD_SUCCESS)
        return bd__relay(ctx, dist->mctx, r);
    /* the new teacher walks exactly the old student grid (whatever its
       kind: uniform, Karras, logSNR, custom): it nests the new grid */
    for (i = 0; i <= dist->N; i++) dist->tgrid[i] = dist->grid[i];
    for (i = 0; i <= dist->N / 2; i++) dist->grid[i] = dist->grid[2 * i];
    dist->N /= 2;
    dist->S = dist->N * dist->Kt;
    dist->config.student_steps = dist->N;
    if ((r = bd__distill_fine(dist)) != BD_SUCCESS) return r;
    dist->adam.step = 0;
    for (i = 0; i < dist->K; i++) dist->branch_ema[i] = 0.0;
    dist->branch_ema_count = 0;
    dist->agree_ema = 0.0;
    dist->agree_count = 0;
    dist->step = 0;
    dist->round++;
    return BD_SUCCESS;
}

BDAPI bd_result bd_distill_eval(bd_distill *dist, int64_t n, uint64_t seed, int use_ema,
                                double *mse, float *teacher_x, float *student_x) {
    bd_context *ctx;
    bd_sampler_config tc, sc;
    float *xt = NULL, *xs = NULL, *keep = NULL;
    bd_result r = BD_SUCCESS;
    int ok = 1;
    int64_t i, D, np;
    double acc = 0.0;
    if (!dist) return BD_ERROR_INVALID_ARGUMENT;
    ctx = dist->ctx;
    if (n < 1 || !mse) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "distill eval: need n >= 1 and mse");
    D = dist->D;
    np = dist->student->n_params;
    xt = bd__distill_falloc(ctx, n, D, 1, &ok);
    xs = bd__distill_falloc(ctx, n, D, 1, &ok);
    if (!ok) { r = ctx->last_result; goto done; }
    if (use_ema && (r = bd__relay(ctx, dist->mctx, bd_backend_alloc(dist->mctx, (size_t)np * sizeof(float), (void **)&keep))) != BD_SUCCESS)
        goto done;
    bd_noise_fill(xt, n * D, seed);
    memcpy(xs, xt, (size_t)(n * D) * sizeof(float));
    tc = bd__distill_teacher_cfg(dist, dist->S * dist->R, dist->fgrid);
    if ((r = bd_sampler_run(dist->tsampler, &tc, xt, n, NULL, NULL)) != BD_SUCCESS) goto done;
    sc = bd_sampler_config_init(BD_SAMPLER_DDIM, dist->N);
    sc.custom_grid = dist->grid;
    sc.branch = dist->K - 1;
    sc.param = dist->config.param;
    sc.schedule = dist->config.schedule;
    if (use_ema) {
        size_t bytes = (size_t)np * sizeof(float);
        if ((r = bd_backend_copy(dist->mctx, keep, dist->student->params, bytes)) != BD_SUCCESS ||
            (r = bd_backend_copy(dist->mctx, dist->student->params, dist->ema, bytes)) != BD_SUCCESS) {
            r = bd__relay(ctx, dist->mctx, r);
            goto done;
        }
        r = bd_sampler_run(dist->ssampler, &sc, xs, n, NULL, NULL);
        if (bd_backend_copy(dist->mctx, dist->student->params, keep, bytes) != BD_SUCCESS && r == BD_SUCCESS)
            r = bd__relay(ctx, dist->mctx, dist->mctx->last_result);
    } else {
        r = bd_sampler_run(dist->ssampler, &sc, xs, n, NULL, NULL);
    }
    if (r != BD_SUCCESS) goto done;
    for (i = 0; i < n * D; i++) {
        double e = (double)xs[i] - (double)xt[i];
        acc += e * e;
    }
    *mse = acc / (double)(n * D);
    if (teacher_x) memcpy(teacher_x, xt, (size_t)(n * D) * sizeof(float));
    if (student_x) memcpy(student_x, xs, (size_t)(n * D) * sizeof(float));
done:
    bd_free(ctx, xt);
    bd_free(ctx, xs);
    bd_backend_free(dist->mctx, keep);
    return r;
}

/* The state's arrays as host arrays: the arrays themselves on a host
   backend, else downloaded into one block *blk (bd_free it on dist->ctx). */
static bd_result bd__distill_host_state(bd_distill *d, float **blk, float **p, float **e, float **m, float **v,
                                        float **t) {
    bd_context *bc = d->mctx;
    int64_t np = d->student->n_params;
    size_t bytes = (size_t)np * sizeof(float);
    bd_result r;
    *blk = NULL;
    *p = d->student->params; *e = d->ema; *m = d->adam.m; *v = d->adam.v;
    *t = d->teacher == d->owned_teacher && d->teacher ? d->teacher->params : NULL;
    if (!bd_backend_on_device(bc)) return BD_SUCCESS;
    *blk = BD__CAST(float *, bd_alloc_array(d->ctx, (size_t)np, 5 * sizeof(float)));
    if (!*blk) return d->ctx->last_result;
    *p = *blk; *e = *p + np; *m = *e + np; *v = *m + np;
    r = bd_backend_download(bc, *p, d->student->params, bytes);
    if (r == BD_SUCCESS) r = bd_backend_download(bc, *e, d->ema, bytes);
    if (r == BD_SUCCESS) r = bd_backend_download(bc, *m, d->adam.m, bytes);
    if (r == BD_SUCCESS) r = bd_backend_download(bc, *v, d->adam.v, bytes);
    if (r == BD_SUCCESS && *t) {
        r = bd_backend_download(bc, *v + np, d->teacher->params, bytes);
        *t = *v + np;
    }
    if (r != BD_SUCCESS) {
        bd_free(d->ctx, *blk);
        *blk = NULL;
    }
    return bd__relay(d->ctx, bc, r);
}

/* DISTILL-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>checkpoint                                                             */
/* ------------------------------------------------------------------------ */
/* ---- strict JSON tokenizer (no recursion; explicit depth-limited stack) ---- */
#define BD__JSON_MAX_DEPTH 64
/* values a parsed header may hold: ~12 per tensor, so 4M allows 300k tensors
   and bounds the token table at 4M * 40 bytes whatever the header length */
#define BD__JSON_MAX_TOKENS ((int64_t)1 << 22)
enum { BD__J_OBJ = 1, BD__J_ARR, BD__J_STR, BD__J_NUM, BD__J_TRUE, BD__J_FALSE, BD__J_NULL };
typedef struct bd__jtok {
    int type;
    size_t start, end; /* STR: between the quotes; others: the raw text */
    int64_t size;      /* OBJ: pairs; ARR: elements */
    int64_t next;      /* index of the token after this one's subtree */
} bd__jtok;
typedef struct bd__jparse {
    const char *s;
    size_t n, pos;
    bd__jtok *tok; /* NULL: count only */
    int64_t ntok;
    char err[160];
} bd__jparse;

static int bd__j_fail(bd__jparse *p, const char *what) {
    snprintf(p->err, sizeof p->err, "%s at byte %zu", what, p->pos);
    return 0;
}
static void bd__j_ws(bd__jparse *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->pos++;
        else break;
    }
}
static int64_t bd__j_new(bd__jparse *p, int type, size_t start) {
    int64_t i = p->ntok++;
    if (p->tok) {
        p->tok[i].type = type; p->tok[i].start = start; p->tok[i].end = start;
        p->tok[i].size = 0; p->tok[i].next = i + 1;
    }
    return i;
}
static int bd__j_hex4(const char *s, uint32_t *v) {
    int i;
    *v = 0;
    for (i = 0; i < 4; i++) {
        char c = s[i];
        uint32_t d;
        if (c >= '0' && c <= '9') d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (uint32_t)(c - 'A' + 10);
        else return 0;
        *v = (*v << 4) | d;
    }
    return 1;
}
static int bd__j_string(bd__jparse *p) {
    int64_t t;
    size_t start;
    p->pos++; /* opening quote */
    start = p->pos;
    t = bd__j_new(p, BD__J_STR, start);
    for (;;) {
        unsigned char c;
        if (p->pos >= p->n) return bd__j_fail(p, "unterminated string");
        c = (unsigned char)p->s[p->pos];
        if (c == '"') break;
        if (c < 0x20) return bd__j_fail(p, "control character in string");
        if (c == '\\') {
            char e;
            if (p->pos + 1 >= p->n) return bd__j_fail(p, "unterminated escape");
            e = p->s[p->pos + 1];
            if (e == 'u') {
                uint32_t u, lo;
                if (p->n - p->pos < 6 || !bd__j_hex4(p->s + p->pos + 2, &u))
                    return bd__j_fail(p, "bad \\u escape");
                p->pos += 6;
                if (u >= 0xDC00 && u <= 0xDFFF) return bd__j_fail(p, "lone low surrogate");
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (p->n - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                        !bd__j_hex4(p->s + p->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                        return bd__j_fail(p, "high surrogate without low surrogate");
                    p->pos += 6;
                }
                continue;
            }
            if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' &&
                e != 'r' && e != 't')
                return bd__j_fail(p, "invalid escape");
            p->pos += 2;
            continue;
        }
        {
            size_t k = bd__utf8_seq(BD__CAST(const unsigned char *, (const void *)p->s) + p->pos, p->n - p->pos);
            if (!k) return bd__j_fail(p, "invalid UTF-8 in string");
            p->pos += k;
        }
    }
    if (p->tok) p->tok[t].end = p->pos;
    p->pos++; /* closing quote */
    return 1;
}
static int bd__j_digits(bd__jparse *p) {
    size_t s0 = p->pos;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    return p->pos > s0;
}
static int bd__j_number(bd__jparse *p) {
    int64_t t = bd__j_new(p, BD__J_NUM, p->pos);
    if (p->s[p->pos] == '-') p->pos++;
    if (p->pos >= p->n) return bd__j_fail(p, "truncated number");
    if (p->s[p->pos] == '0') p->pos++;
    else if (!bd__j_digits(p)) return bd__j_fail(p, "bad number");
    if (p->pos < p->n && p->s[p->pos] == '.') {
        p->pos++;
        if (!bd__j_digits(p)) return bd__j_fail(p, "bad fraction");
    }
    if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (!bd__j_digits(p)) return bd__j_fail(p, "bad exponent");
    }
    if (p->tok) p->tok[t].end = p->pos;
    return 1;
}
static int bd__j_literal(bd__jparse *p, const char *lit, int type) {
    size_t k = strlen(lit);
    int64_t t;
    if (p->n - p->pos < k || memcmp(p->s + p->pos, lit, k) != 0)
        return bd__j_fail(p, "unexpected character");
    t = bd__j_new(p, type, p->pos);
    p->pos += k;
    if (p->tok) p->tok[t].end = p->pos;
    return 1;
}
/* Parse the whole text as one JSON value.  1 = ok (p->ntok tokens). */
static int bd__json_run(bd__jparse *p) {
    int64_t stack[BD__JSON_MAX_DEPTH];
    char kind[BD__JSON_MAX_DEPTH]; /* '{' or '[' */
    int depth = 0;
    p->pos = 0; p->ntok = 0; p->err[0] = 0;
    bd__j_ws(p);
    for (;;) {
        char c;
        /* ---- a value is expected here ---- */
        if (p->pos >= p->n) return bd__j_fail(p, "unexpected end of input");
        c = p->s[p->pos];
        if (c == '{' || c == '[') {
            int64_t t;
            if (depth >= BD__JSON_MAX_DEPTH) return bd__j_fail(p, "nesting too deep");
            t = bd__j_new(p, c == '{' ? BD__J_OBJ : BD__J_ARR, p->pos);
            stack[depth] = t; kind[depth] = c; depth++;
            p->pos++;
            bd__j_ws(p);
            if (p->pos < p->n && p->s[p->pos] == (c == '{' ? '}' : ']')) {
                p->pos++;
                depth--;
                if (p->tok) { p->tok[t].end = p->pos; p->tok[t].next = p->ntok; }
                goto after_value;
            }
            if (p->tok) p->tok[t].size = 1;
            if (c == '{') goto expect_key;
            continue;
        } else if (c == '"') {
            if (!bd__j_string(p)) return 0;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            if (!bd__j_number(p)) return 0;
        } else if (c == 't') {
            if (!bd__j_literal(p, "true", BD__J_TRUE)) return 0;
        } else if (c == 'f') {
            if (!bd__j_literal(p, "false", BD__J_FALSE)) return 0;
        } else if (c == 'n') {
            if (!bd__j_literal(p, "null", BD__J_NULL)) return 0;
        } else {
            return bd__j_fail(p, "unexpected character");
        }
    after_value:
        bd__j_ws(p);
        if (depth == 0) {
            if (p->pos != p->n) return bd__j_fail(p, "trailing characters after JSON value");
            return 1;
        }
        if (p->pos >= p->n) return bd__j_fail(p, "unexpected end of input");
        c = p->s[p->pos];
        if (c == ',') {
            p->pos++;
            bd__j_ws(p);
            if (p->tok) p->tok[stack[depth - 1]].size++;
            if (kind[depth - 1] == '{') goto expect_key;
            continue;
        }
        if (c == (kind[depth - 1] == '{' ? '}' : ']')) {
            int64_t t = stack[--depth];
            p->pos++;
            if (p->tok) { p->tok[t].end = p->pos; p->tok[t].next = p->ntok; }
            goto after_value;
        }
        return bd__j_fail(p, kind[depth - 1] == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
    expect_key:
        if (p->pos >= p->n || p->s[p->pos] != '"') return bd__j_fail(p, "expected a string key");
        if (!bd__j_string(p)) return 0;
        bd__j_ws(p);
        if (p->pos >= p->n || p->s[p->pos] != ':') return bd__j_fail(p, "expected ':'");
        p->pos++;
        bd__j_ws(p);
    }
}
/* Tokenize text into a table allocated on ctx.  Two passes: count, fill. */
static bd_result bd__json_parse(bd_context *ctx, const char *what, const char *s, size_t n,
                                bd__jtok **out, int64_t *ntok) {
    bd__jparse p;
    *out = NULL; *ntok = 0;
    memset(&p, 0, sizeof p);
    p.s = s; p.n = n;
    if (!bd__json_run(&p)) return bd_error(ctx, BD_ERROR_FORMAT, "%s: bad JSON: %s", what, p.err);
    if (p.ntok > BD__JSON_MAX_TOKENS)
        return bd_error(ctx, BD_ERROR_FORMAT, "%s: %lld JSON values, more than the limit %lld", what,
                        (long long)p.ntok, (long long)BD__JSON_MAX_TOKENS);
    p.tok = BD__CAST(bd__jtok *, bd_alloc_array(ctx, (size_t)p.ntok, sizeof(bd__jtok)));
    if (!p.tok) return ctx ? ctx->last_result : BD_ERROR_OUT_OF_MEMORY;
    if (!bd__json_run(&p)) { /* cannot differ from the first pass */
        bd_free(ctx, p.tok);
        return bd_error(ctx, BD_ERROR_FORMAT, "%s: bad JSON: %s", what, p.err);
    }
    *out = p.tok; *ntok = p.ntok;
    return BD_SUCCESS;
}
/* Decode the string token t into out (capacity >= raw length + 1).
   Returns the byte length, or -1 when it contains U+0000. */
static int64_t bd__json_decode(const char *s, const bd__jtok *t, char *out) {
    size_t i = t->start, o = 0;
    while (i < t->end) {
        char c = s[i];
        if (c != '\\') { out[o++] = c; i++; continue; }
        c = s[i + 1];
        if (c == 'u') {
            uint32_t u, lo;
            bd__j_hex4(s + i + 2, &u);
            i += 6;
            if (u >= 0xD800 && u <= 0xDBFF) {
                bd__j_hex4(s + i + 2, &lo);
                i += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (u == 0) return -1;
            if (u < 0x80) out[o++] = (char)u;
            else if (u < 0x800) {
                out[o++] = (char)(0xC0 | (u >> 6)); out[o++] = (char)(0x80 | (u & 0x3F));
            } else if (u < 0x10000) {
                out[o++] = (char)(0xE0 | (u >> 12)); out[o++] = (char)(0x80 | ((u >> 6) & 0x3F));
                out[o++] = (char)(0x80 | (u & 0x3F));
            } else {
                out[o++] = (char)(0xF0 | (u >> 18)); out[o++] = (char)(0x80 | ((u >> 12) & 0x3F));
                out[o++] = (char)(0x80 | ((u >> 6) & 0x3F)); out[o++] = (char)(0x80 | (u & 0x3F));
            }
            continue;
        }
        switch (c) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        default: out[o++] = c; break; /* " \ / */
        }
        i += 2;
    }
    out[o] = 0;
    return (int64_t)o;
}
/* Raw string token equals the literal (no escapes in the literal). */
static int bd__json_eq(const char *s, const bd__jtok *t, const char *lit) {
    size_t k = strlen(lit);
    return t->type == BD__J_STR && t->end - t->start == k && memcmp(s + t->start, lit, k) == 0;
}
/* Non-negative integer token (digits only) <= INT64_MAX.  1 = ok. */
static int bd__json_u63(const char *s, const bd__jtok *t, int64_t *v) {
    size_t i;
    uint64_t x = 0;
    if (t->type != BD__J_NUM || t->end == t->start) return 0;
    for (i = t->start; i < t->end; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9') return 0;
        d = (unsigned)(s[i] - '0');
        if (x > (UINT64_C(0x7FFFFFFFFFFFFFFF) - d) / 10) return 0;
        x = x * 10 + d;
    }
    *v = (int64_t)x;
    return 1;
}
/* Append s as a JSON string literal. */
static void bd__buf_jstr(bd__buf *b, const char *s) {
    const unsigned char *p = BD__CAST(const unsigned char *, (const void *)s);
    bd__buf_put(b, "\"", 1);
    for (; *p; p++) {
        if (*p == '"') bd__buf_put(b, "\\\"", 2);
        else if (*p == '\\') bd__buf_put(b, "\\\\", 2);
        else if (*p < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", (unsigned)*p);
            bd__buf_put(b, e, 6);
        } else bd__buf_put(b, p, 1);
    }
    bd__buf_put(b, "\"", 1);
}

BDAPI bd_result bd_json_validate(bd_context *ctx, const char *text, size_t len) {
    bd__jparse p;
    if (!text && len) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "NULL text");
    memset(&p, 0, sizeof p);
    p.s = text ? text : ""; p.n = len;
    if (!bd__json_run(&p)) return bd_error(ctx, BD_ERROR_FORMAT, "bad JSON: %s", p.err);
    return BD_SUCCESS;
}

/* ---- safetensors: writer ---- */
static int bd__st_wcmp(const void *a, const void *b) {
    const bd_st_write_tensor *x = *BD__CAST(const bd_st_write_tensor *const *, a);
    const bd_st_write_tensor *y = *BD__CAST(const bd_st_write_tensor *const *, b);
    return strcmp(x->name, y->name);
}
static int bd__st_kvcmp(const void *a, const void *b) {
    const bd_st_kv *x = *BD__CAST(const bd_st_kv *const *, a);
    const bd_st_kv *y = *BD__CAST(const bd_st_kv *const *, b);
    return strcmp(x->key, y->key);
}
static int bd__st_numel(const int64_t *shape, int ndim, int64_t *numel) {
    int64_t n = 1;
    int i;
    for (i = 0; i < ndim; i++) {
        if (shape[i] < 0) return 0;
        if (shape[i] != 0 && n > (INT64_MAX / 4) / shape[i]) return 0;
        n *= shape[i];
    }
    *numel = n;
    return 1;
}
/* Validates the inputs, sorts them (order arrays allocated on ctx) and
   builds the padded JSON header.  data_bytes = size of the data section. */
static bd_result bd__st_prepare(bd_context *ctx, const bd_st_write_tensor *tensors, int64_t nt,
                                const bd_st_kv *meta, int64_t nm, bd__buf *hdr,
                                const bd_st_write_tensor ***order_out, uint64_t *data_bytes) {
    const bd_st_write_tensor **order = NULL;
    const bd_st_kv **morder = NULL;
    int64_t i;
    uint64_t off = 0;
    bd_result r = BD_SUCCESS;
    hdr->ctx = ctx; hdr->p = NULL; hdr->n = hdr->cap = 0; hdr->failed = 0;
    *order_out = NULL;
    if (nt < 0 || nm < 0 || (nt > 0 && !tensors) || (nm > 0 && !meta))
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "safetensors: bad tensor/metadata arrays");
    order = BD__CAST(const bd_st_write_tensor **,
                     bd_alloc_array(ctx, (size_t)(nt ? nt : 1), sizeof *order));
    morder = BD__CAST(const bd_st_kv **, bd_alloc_array(ctx, (size_t)(nm ? nm : 1), sizeof *morder));
    if (!order || !morder) { r = BD_ERROR_OUT_OF_MEMORY; goto fail; }
    for (i = 0; i < nt; i++) {
        const bd_st_write_tensor *t = &tensors[i];
        int64_t numel;
        if (!t->name || !bd__utf8_valid(t->name) || strcmp(t->name, "__metadata__") == 0)
            BD__FAIL(BD_ERROR_INVALID_ARGUMENT,
                     "safetensors: tensor %lld has a NULL, non-UTF-8 or reserved name", (long long)i);
        if (t->ndim < 0 || t->ndim > BD_ST_MAX_DIMS || !bd__st_numel(t->shape, t->ndim, &numel))
            BD__FAIL(BD_ERROR_INVALID_ARGUMENT, "safetensors: tensor '%s' has a bad shape", t->name);
        if (numel > 0 && !t->data)
            BD__FAIL(BD_ERROR_INVALID_ARGUMENT, "safetensors: tensor '%s' has NULL data", t->name);
        order[i] = t;
    }
    for (i = 0; i < nm; i++) {
        if (!meta[i].key || !meta[i].value || !bd__utf8_valid(meta[i].key) ||
            !bd__utf8_valid(meta[i].value))
            BD__FAIL(BD_ERROR_INVALID_ARGUMENT,
                     "safetensors: metadata entry %lld has a NULL or non-UTF-8 key or value", (long long)i);
        morder[i] = &meta[i];
    }
    if (nt > 1) qsort(order, (size_t)nt, sizeof *order, bd__st_wcmp);
    if (nm > 1) qsort(morder, (size_t)nm, sizeof *morder, bd__st_kvcmp);
    for (i = 1; i < nt; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0)
            BD__FAIL(BD_ERROR_INVALID_ARGUMENT, "safetensors: duplicate tensor name '%s'", order[i]->name);
    for (i = 1; i < nm; i++)
        if (strcmp(morder[i - 1]->key, morder[i]->key) == 0)
            BD__FAIL(BD_ERROR_INVALID_ARGUMENT, "safetensors: duplicate metadata key '%s'", morder[i]->key);
    bd__buf_put(hdr, "{", 1);
    if (nm > 0) {
        bd__buf_str(hdr, "\"__metadata__\":{");
        for (i = 0; i < nm; i++) {
            if (i) bd__buf_put(hdr, ",", 1);
            bd__buf_jstr(hdr, morder[i]->key);
            bd__buf_put(hdr, ":", 1);
            bd__buf_jstr(hdr, morder[i]->value);
        }
        bd__buf_put(hdr, "}", 1);
        if (nt > 0) bd__buf_put(hdr, ",", 1);
    }
    for (i = 0; i < nt; i++) {
        const bd_st_write_tensor *t = order[i];
        int64_t numel = 0;
        int d;
        bd__st_numel(t->shape, t->ndim, &numel);
        if (i) bd__buf_put(hdr, ",", 1);
        bd__buf_jstr(hdr, t->name);
        bd__buf_str(hdr, ":{\"dtype\":\"F32\",\"shape\":[");
        for (d = 0; d < t->ndim; d++) {
            if (d) bd__buf_put(hdr, ",", 1);
            bd__buf_i64(hdr, t->shape[d]);
        }
        bd__buf_str(hdr, "],\"data_offsets\":[");
        bd__buf_i64(hdr, (int64_t)off);
        bd__buf_put(hdr, ",", 1);
        if ((uint64_t)numel * 4u > (uint64_t)INT64_MAX - off)
            BD__FAIL(BD_ERROR_OVERFLOW, "safetensors: total data size overflows");
        off += (uint64_t)numel * 4u;
        bd__buf_i64(hdr, (int64_t)off);
        bd__buf_str(hdr, "]}");
    }
    bd__buf_put(hdr, "}", 1);
    while (!hdr->failed && hdr->n % 8 != 0) bd__buf_put(hdr, " ", 1);
    if (hdr->failed) BD__FAIL(BD_ERROR_OUT_OF_MEMORY, "safetensors: building the header failed");
    bd_free(ctx, morder);
    *order_out = order;
    *data_bytes = off;
    return BD_SUCCESS;
fail:
    bd_free(ctx, order);
    bd_free(ctx, morder);
    bd_free(ctx, hdr->p);
    hdr->p = NULL;
    return r;
}

BDAPI bd_result bd_safetensors_write(bd_context *ctx, const char *path,
                                     const bd_st_write_tensor *tensors, int64_t n_tensors,
                                     const bd_st_kv *metadata, int64_t n_metadata) {
    bd__buf hdr;
    const bd_st_write_tensor **order;
    uint64_t data_bytes;
    unsigned char len8[8];
    float *chunk = NULL;
    bd__afile af;
    bd_result r;
    int64_t i;
    int swap = !bd__host_is_le();
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    r = bd__st_prepare(ctx, tensors, n_tensors, metadata, n_metadata, &hdr, &order, &data_bytes);
    if (r != BD_SUCCESS) return r;
    if (swap) {
        chunk = BD__CAST(float *, bd_alloc_array(ctx, 4096, sizeof(float)));
        if (!chunk) { r = BD_ERROR_OUT_OF_MEMORY; goto done; }
    }
    r = bd__afile_open(ctx, &af, path);
    if (r != BD_SUCCESS) goto done;
    bd__wr_le64(len8, (uint64_t)hdr.n);
    r = bd__afile_write(&af, len8, 8);
    if (r == BD_SUCCESS) r = bd__afile_write(&af, hdr.p, hdr.n);
    for (i = 0; i < n_tensors && r == BD_SUCCESS; i++) {
        int64_t numel = 0, k;
        bd__st_numel(order[i]->shape, order[i]->ndim, &numel);
        if (!swap) {
            r = bd__afile_write(&af, order[i]->data, (size_t)numel * 4u);
            continue;
        }
        for (k = 0; k < numel && r == BD_SUCCESS; k += 4096) {
            int64_t m = numel - k < 4096 ? numel - k : 4096;
            memcpy(chunk, order[i]->data + k, (size_t)m * 4u);
            bd__bswap32_array(chunk, (size_t)m);
            r = bd__afile_write(&af, chunk, (size_t)m * 4u);
        }
    }
    if (r == BD_SUCCESS) r = bd__afile_commit(&af);
done:
    bd_free(ctx, chunk);
    bd_free(ctx, order);
    bd_free(ctx, hdr.p);
    return r;
}

BDAPI bd_result bd_safetensors_write_memory(bd_context *ctx, const bd_st_write_tensor *tensors,
                                            int64_t n_tensors, const bd_st_kv *metadata,
                                            int64_t n_metadata, void **out, size_t *out_size) {
    bd__buf hdr;
    const bd_st_write_tensor **order;
    uint64_t data_bytes;
    unsigned char *buf, *p;
    size_t total;
    bd_result r;
    int64_t i;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!out || !out_size) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "safetensors: NULL output");
    *out = NULL; *out_size = 0;
    r = bd__st_prepare(ctx, tensors, n_tensors, metadata, n_metadata, &hdr, &order, &data_bytes);
    if (r != BD_SUCCESS) return r;
    if (data_bytes > (uint64_t)SIZE_MAX || !bd_size_add(8 + hdr.n, (size_t)data_bytes, &total)) {
        r = bd_error(ctx, BD_ERROR_OVERFLOW, "safetensors: file size overflows");
        goto done;
    }
    buf = BD__CAST(unsigned char *, bd_alloc(ctx, total));
    if (!buf) { r = BD_ERROR_OUT_OF_MEMORY; goto done; }
    bd__wr_le64(buf, (uint64_t)hdr.n);
    memcpy(buf + 8, hdr.p, hdr.n);
    p = buf + 8 + hdr.n;
    for (i = 0; i < n_tensors; i++) {
        int64_t numel = 0;
        bd__st_numel(order[i]->shape, order[i]->ndim, &numel);
        if (numel) memcpy(p, order[i]->data, (size_t)numel * 4u);
        if (!bd__host_is_le()) bd__bswap32_array(p, (size_t)numel);
        p += (size_t)numel * 4u;
    }
    *out = buf; *out_size = total;
done:
    bd_free(ctx, order);
    bd_free(ctx, hdr.p);
    return r;
}

/* ---- safetensors: reader ---- */
typedef struct bd__st_ent {
    bd_st_tensor t;
    int64_t begin, end;
} bd__st_ent;
static int bd__st_ent_name_cmp(const void *a, const void *b) {
    return strcmp(BD__CAST(const bd__st_ent *, a)->t.name, BD__CAST(const bd__st_ent *, b)->t.name);
}
static int bd__st_ent_off_cmp(const void *a, const void *b) {
    const bd__st_ent *x = BD__CAST(const bd__st_ent *, a), *y = BD__CAST(const bd__st_ent *, b);
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}
static int bd__st_kv_cmp(const void *a, const void *b) {
    return strcmp(BD__CAST(const bd_st_kv *, a)->key, BD__CAST(const bd_st_kv *, b)->key);
}
static int bd__st_known_dtype(const char *s, const bd__jtok *t) {
    static const char *const names[] = {"F64", "F16", "BF16", "I8", "I16", "I32", "I64", "U8",
                                        "U16", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2",
                                        "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"};
    size_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (bd__json_eq(s, t, names[i])) return 1;
    return 0;
}

/* Parse and validate the header; on success st->table holds the tables and
   *ents_out the tensor entries (sorted by name, offsets kept). */
static bd_result bd__st_parse(bd_context *ctx, const char *h, size_t hlen, uint64_t data_len,
                              bd_safetensors *st, bd__st_ent **ents_out) {
    bd__jtok *tok = NULL;
    int64_t ntok = 0, nt = 0, nm = 0, i, j, k, it = 0, im = 0, meta_tok = -1;
    bd__st_ent *ents = NULL;
    bd_st_kv *kv = NULL;
    char *pool = NULL, *pp;
    size_t pool_bytes, sz_ents, sz_kv, total;
    unsigned char *block = NULL;
    bd_result r;
    *ents_out = NULL;
    r = bd__json_parse(ctx, "safetensors header", h, hlen, &tok, &ntok);
    if (r != BD_SUCCESS) return r;
    if (tok[0].type != BD__J_OBJ)
        BD__FAIL(BD_ERROR_FORMAT, "safetensors: header is not a JSON object");
    /* count tensors and metadata entries */
    for (j = 1, k = 0; k < tok[0].size; k++, j = tok[j + 1].next) {
        if (bd__json_eq(h, &tok[j], "__metadata__")) {
            if (meta_tok >= 0)
                BD__FAIL(BD_ERROR_FORMAT, "safetensors: duplicate __metadata__");
            meta_tok = j + 1;
            if (tok[meta_tok].type != BD__J_OBJ)
                BD__FAIL(BD_ERROR_FORMAT, "safetensors: __metadata__ is not an object");
            nm = tok[meta_tok].size;
        } else {
            nt++;
        }
    }
    /* one block: entries, key/values, string pool (decoded strings are
       never longer than their raw text; one NUL per string) */
    if (!bd_size_mul((size_t)nt, sizeof(bd__st_ent), &sz_ents) ||
        !bd_size_mul((size_t)nm, sizeof(bd_st_kv), &sz_kv) ||
        !bd_size_add(hlen, (size_t)ntok + 1, &pool_bytes) ||
        !bd_size_add(sz_ents, sz_kv, &total) || !bd_size_add(total, pool_bytes, &total))
        BD__FAIL(BD_ERROR_OVERFLOW, "safetensors: header tables overflow");
    block = BD__CAST(unsigned char *, bd_alloc(ctx, total));
    if (!block) { r = BD_ERROR_OUT_OF_MEMORY; goto fail; }
    ents = BD__CAST(bd__st_ent *, (void *)block);
    kv = BD__CAST(bd_st_kv *, (void *)(block + sz_ents));
    pool = BD__CAST(char *, (void *)(block + sz_ents + sz_kv));
    pp = pool;
    if (meta_tok >= 0) {
        for (j = meta_tok + 1, k = 0; k < tok[meta_tok].size; k++, j = tok[j + 1].next) {
            int64_t lk, lv;
            char *key = pp;
            lk = bd__json_decode(h, &tok[j], pp);
            if (lk < 0) BD__FAIL(BD_ERROR_FORMAT, "safetensors: metadata key contains U+0000");
            pp += lk + 1;
            if (tok[j + 1].type != BD__J_STR)
                BD__FAIL(BD_ERROR_FORMAT, "safetensors: __metadata__ value of '%s' is not a string", key);
            lv = bd__json_decode(h, &tok[j + 1], pp);
            if (lv < 0)
                BD__FAIL(BD_ERROR_FORMAT, "safetensors: metadata value of '%s' contains U+0000", key);
            kv[im].key = key; kv[im].value = pp; im++;
            pp += lv + 1;
        }
        if (nm > 1) qsort(kv, (size_t)nm, sizeof *kv, bd__st_kv_cmp);
        for (i = 1; i < nm; i++)
            if (strcmp(kv[i - 1].key, kv[i].key) == 0)
                BD__FAIL(BD_ERROR_FORMAT, "safetensors: duplicate metadata key '%s'", kv[i].key);
    }
    for (j = 1, k = 0; k < tok[0].size; k++, j = tok[j + 1].next) {
        const bd__jtok *obj;
        int64_t f, fj, dtype_t = -1, shape_t = -1, offs_t = -1, numel, d;
        bd__st_ent *e;
        char *name;
        if (j + 1 == meta_tok) continue;
        name = pp;
        if (bd__json_decode(h, &tok[j], pp) < 0)
            BD__FAIL(BD_ERROR_FORMAT, "safetensors: tensor name contains U+0000");
        pp += strlen(pp) + 1;
        e = &ents[it++];
        memset(e, 0, sizeof *e);
        e->t.name = name;
        obj = &tok[j + 1];
        if (obj->type != BD__J_OBJ)
            BD__FAIL(BD_ERROR_FORMAT, "safetensors: entry '%s' is not an object", name);
        for (fj = j + 2, f = 0; f < obj->size; f++, fj = tok[fj + 1].next) {
            int64_t *slot;
            if (bd__json_eq(h, &tok[fj], "dtype")) slot = &dtype_t;
            else if (bd__json_eq(h, &tok[fj], "shape")) slot = &shape_t;
            else if (bd__json_eq(h, &tok[fj], "data_offsets")) slot = &offs_t;
            else
                BD__FAIL(BD_ERROR_FORMAT, "safetensors: tensor '%s' has an unknown field", name);
            if (*slot >= 0)
                BD__FAIL(BD_ERROR_FORMAT, "safetensors: tensor '%s' repeats a field", name);
            *slot = fj + 1;
        }
        if (dtype_t < 0 || shape_t < 0 || offs_t < 0)
            BD__FAIL(BD_ERROR_FORMAT, "safetensors: tensor '%s' lacks %s", name,
                     dtype_t < 0 ? "dtype" : shape_t < 0 ? "shape" : "data_offsets");
        if (!bd__json_eq(h, &tok[dtype_t], "F32")) {
            if (bd__st_known_dtype(h, &tok[dtype_t]))
                BD__FAIL(BD_ERROR_UNSUPPORTED, "safetensors: tensor '%s' has dtype %.*s; bdense reads only F32", name,
                         (int)(tok[dtype_t].end - tok[dtype_t].start), h + tok[dtype_t].start);
            BD__FAIL(BD_ERROR_FORMAT, "safetensors: tensor '%s' has an unknown dtype", name);
        }
        if (tok[shape_t].type != BD__J_ARR)
            BD__FAIL(BD_ERROR_FORMAT, "safetensors: shape of '%s' is not an array", name);
        if (tok[shape_t].size > BD_ST_MAX_DIMS)
            BD__FAIL(BD_ERROR_UNSUPPORTED, "safetensors: tensor '%s' has %lld dimensions (max %d)",
                     name, (long long)tok[shape_t].size, BD_ST_MAX_DIMS);
        e->t.ndim = (int)tok[shape_t].size;
        for (d = 0; d < e->t.ndim; d++) {
            if (!bd__json_u63(h, &tok[shape_t + 1 + d], &e->t.shape[d]))
                BD__FAIL(BD_ERROR_FORMAT,
                         "safetensors: shape of '%s' has an entry that is not a non-negative integer", name);
        }
        if (!bd__st_numel(e->t.shape, e->t.ndim, &numel))
            BD__FAIL(BD_ERROR_FORMAT, "safetensors: shape of '%s' overflows", name);
        e->t.numel = numel;
        if (tok[offs_t].type != BD__J_ARR || tok[offs_t].size != 2 ||
            !bd__json_u63(h, &tok[offs_t + 1], &e->begin) ||
            !bd__json_u63(h, &tok[offs_t + 2], &e->end))
            BD__FAIL(BD_ERROR_FORMAT, "safetensors: data_offsets of '%s' is not a pair of non-negative integers",
                     name);
        if (e->begin > e->end || (uint64_t)e->end > data_len)
            BD__FAIL(BD_ERROR_FORMAT,
                     "safetensors: data_offsets [%lld, %lld] of '%s' outside the %llu-byte data section",
                     (long long)e->begin, (long long)e->end, name, (unsigned long long)data_len);
        if (e->end - e->begin != numel * 4)
            BD__FAIL(BD_ERROR_FORMAT,
                     "safetensors: shape of '%s' needs %lld bytes but data_offsets span %lld",
                     name, (long long)(numel * 4), (long long)(e->end - e->begin));
    }
    /* offsets: sorted, each begins where the previous ended, all covered */
    if (nt > 1) qsort(ents, (size_t)nt, sizeof *ents, bd__st_ent_off_cmp);
    {
        int64_t pos = 0;
        for (i = 0; i < nt; i++) {
            if (ents[i].begin < pos)
                BD__FAIL(BD_ERROR_FORMAT, "safetensors: tensors '%s' and '%s' overlap",
                         ents[i - 1].t.name, ents[i].t.name);
            if (ents[i].begin > pos)
                BD__FAIL(BD_ERROR_FORMAT, "safetensors: gap of %lld bytes before tensor '%s'",
                         (long long)(ents[i].begin - pos), ents[i].t.name);
            pos = ents[i].end;
        }
        if ((uint64_t)pos != data_len)
            BD__FAIL(BD_ERROR_FORMAT,
                     "safetensors: %llu bytes at the end of the data section belong to no tensor",
                     (unsigned long long)(data_len - (uint64_t)pos));
    }
    if (nt > 1) qsort(ents, (size_t)nt, sizeof *ents, bd__st_ent_name_cmp);
    for (i = 1; i < nt; i++)
        if (strcmp(ents[i - 1].t.name, ents[i].t.name) == 0)
            BD__FAIL(BD_ERROR_FORMAT, "safetensors: duplicate tensor name '%s'", ents[i].t.name);
    bd_free(ctx, tok);
    st->table = block;
    st->n_tensors = nt;
    st->n_metadata = nm;
    st->metadata = kv;
    *ents_out = ents;
    return BD_SUCCESS;
fail:
    bd_free(ctx, tok);
    bd_free(ctx, block);
    return r;
}

/* Shared tail of both loaders: the data section comes from memory (src) or
   from the file f positioned at its start. */
static bd_result bd__st_load(bd_context *ctx, const char *h, size_t hlen, const unsigned char *src,
                             FILE *f, uint64_t data_len, bd_safetensors **out) {
    bd_safetensors *st;
    bd__st_ent *ents;
    bd_st_tensor *tens;
    unsigned char *data;
    int64_t i;
    bd_result r;
    if (data_len > (uint64_t)SIZE_MAX)
        return bd_error(ctx, BD_ERROR_OVERFLOW, "safetensors: data section too large for this host");
    st = BD__CAST(bd_safetensors *, bd_alloc(ctx, sizeof *st));
    if (!st) return BD_ERROR_OUT_OF_MEMORY;
    memset(st, 0, sizeof *st);
    st->ctx = ctx;
    r = bd__st_parse(ctx, h, hlen, data_len, st, &ents);
    if (r != BD_SUCCESS) { bd_free(ctx, st); return r; }
    data = BD__CAST(unsigned char *, bd_alloc(ctx, (size_t)data_len ? (size_t)data_len : 1));
    if (!data) { bd_free(ctx, st->table); bd_free(ctx, st); return BD_ERROR_OUT_OF_MEMORY; }
    if (src) {
        if (data_len) memcpy(data, src, (size_t)data_len);
    } else if (data_len && fread(data, 1, (size_t)data_len, f) != (size_t)data_len) {
        bd_free(ctx, data); bd_free(ctx, st->table); bd_free(ctx, st);
        return bd_error(ctx, BD_ERROR_IO, "safetensors: reading the data section failed");
    }
    if (!bd__host_is_le()) bd__bswap32_array(data, (size_t)(data_len / 4));
    /* the entries become the public table in place (bd_st_tensor first) */
    tens = &ents[0].t;
    for (i = 0; i < st->n_tensors; i++) {
        bd_st_tensor t = ents[i].t;
        t.data = BD__CAST(const float *, (const void *)(data + ents[i].begin));
        tens[i] = t;
    }
    st->tensors = tens;
    st->data = data;
    *out = st;
    return BD_SUCCESS;
}

BDAPI bd_result bd_safetensors_load_memory(bd_context *ctx, const void *bytes, size_t size,
                                           bd_safetensors **out) {
    const unsigned char *b = BD__CAST(const unsigned char *, bytes);
    uint64_t hlen;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "safetensors: NULL output");
    *out = NULL;
    if (!bytes && size) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "safetensors: NULL bytes");
    if (size < 8)
        return bd_error(ctx, BD_ERROR_FORMAT, "safetensors: %zu bytes, shorter than the 8-byte header length", size);
    hlen = bd__rd_le64(b);
    if (hlen > BD_ST_MAX_HEADER)
        return bd_error(ctx, BD_ERROR_FORMAT, "safetensors: header length %llu exceeds the limit %d",
                        (unsigned long long)hlen, BD_ST_MAX_HEADER);
    if (hlen > size - 8)
        return bd_error(ctx, BD_ERROR_FORMAT, "safetensors: header length %llu exceeds the file size %zu",
                        (unsigned long long)hlen, size);
    return bd__st_load(ctx, BD__CAST(const char *, (const void *)(b + 8)), (size_t)hlen, b + 8 + hlen, NULL,
                       (uint64_t)(size - 8 - hlen), out);
}

BDAPI bd_result bd_safetensors_load(bd_context *ctx, const char *path, bd_safetensors **out) {
    FILE *f;
    long end;
    unsigned char len8[8];
    uint64_t hlen, fsize;
    char *h;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "safetensors: NULL output");
    *out = NULL;
    if (!path) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "safetensors: NULL path");
    if (!(f = bd__open_sized(ctx, path, &end))) return ctx->last_result;
    fsize = (uint64_t)end;
    if (fsize < 8 || fread(len8, 1, 8, f) != 8) {
        fclose(f);
        return bd_error(ctx, BD_ERROR_FORMAT, "safetensors: '%s' is %llu bytes, shorter than the 8-byte header length",
                        path, (unsigned long long)fsize);
    }
    hlen = bd__rd_le64(len8);
    if (hlen > BD_ST_MAX_HEADER || hlen > fsize - 8) {
        fclose(f);
        return bd_error(ctx, BD_ERROR_FORMAT, "safetensors: header length %llu of '%s' exceeds %s",
                        (unsigned long long)hlen, path,
                        hlen > BD_ST_MAX_HEADER ? "the limit" : "the file size");
    }
    h = BD__CAST(char *, bd_alloc(ctx, (size_t)hlen + 1));
    if (!h) { fclose(f); return BD_ERROR_OUT_OF_MEMORY; }
    if (hlen && fread(h, 1, (size_t)hlen, f) != (size_t)hlen) {
        bd_free(ctx, h);
        fclose(f);
        return bd_error(ctx, BD_ERROR_IO, "safetensors: reading the header of '%s' failed", path);
    }
    r = bd__st_load(ctx, h, (size_t)hlen, NULL, f, fsize - 8 - hlen, out);
    bd_free(ctx, h);
    fclose(f);
    return r;
}

BDAPI void bd_safetensors_free(bd_safetensors *st) {
    bd_context *ctx;
    if (!st) return;
    ctx = st->ctx;
    bd_free(ctx, st->data);
    bd_free(ctx, st->table);
    bd_free(ctx, st);
}

BDAPI const bd_st_tensor *bd_safetensors_find(const bd_safetensors *st, const char *name) {
    int64_t lo = 0, hi;
    if (!st || !name) return NULL;
    hi = st->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[mid].name, name);
        if (c == 0) return &st->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

BDAPI const char *bd_safetensors_meta(const bd_safetensors *st, const char *key) {
    int64_t lo = 0, hi;
    if (!st || !key) return NULL;
    hi = st->n_metadata;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->metadata[mid].key, key);
        if (c == 0) return st->metadata[mid].value;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- bd_model and checkpoints (docs/spec.md sec. 7) --------------------- */
/* A growable-once string pool for metadata values and prefixed names. */
typedef struct bd__spool {
    char *buf;
    size_t cap, len;
    int overflow;
} bd__spool;

static const char *bd__spool_printf(bd__spool *p, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static const char *bd__spool_printf(bd__spool *p, const char *fmt, ...) {
    va_list ap;
    int k;
    char *s = p->buf + p->len;
    if (p->overflow || p->len >= p->cap) { p->overflow = 1; return ""; }
    va_start(ap, fmt);
    k = vsnprintf(s, p->cap - p->len, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= p->cap - p->len) { p->overflow = 1; return ""; }
    p->len += (size_t)k + 1;
    return s;
}
/* append to the string started last (no NUL bookkeeping beyond the end) */
static void bd__spool_append(bd__spool *p, const char *fmt, double v) {
    int k;
    if (p->overflow || p->len == 0) { p->overflow = 1; return; }
    p->len--; /* over the previous NUL */
    k = snprintf(p->buf + p->len, p->cap - p->len, fmt, v);
    if (k < 0 || (size_t)k >= p->cap - p->len) { p->overflow = 1; p->len++; return; }
    p->len += (size_t)k + 1;
}

static const char *bd__rng_format(bd__spool *p, const bd_rng *r) {
    return bd__spool_printf(p, "%016llx,%016llx,%016llx,%016llx,%d,%.17g", (unsigned long long)r->s[0],
                            (unsigned long long)r->s[1], (unsigned long long)r->s[2],
                            (unsigned long long)r->s[3], r->has_spare ? 1 : 0, r->spare);
}
static int bd__rng_parse(const char *s, bd_rng *r) {
    int i;
    char *end;
    for (i = 0; i < 4; i++) {
        int k;
        uint64_t v = 0;
        for (k = 0; k < 16; k++) {
            char ch = s[k];
            int dgt = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
            if (dgt < 0) return 0;
            v = (v << 4) | (uint64_t)dgt;
        }
        if (s[16] != ',') return 0;
        r->s[i] = v;
        s += 17;
    }
    if ((s[0] != '0' && s[0] != '1') || s[1] != ',') return 0;
    r->has_spare = s[0] == '1';
    s += 2;
    if (!*s) return 0;
    r->spare = strtod(s, &end);
    return *end == '\0' && r->spare == r->spare;
}

static bd_result bd__model_save_ext(bd_context *ctx, const bd_model *m, const char *path, const float *ema,
                                    const float *raw, const bd_adam *adam, const bd_rng *rng,
                                    const bd_rng *data_rng, const bd_st_kv *xkv, int64_t nx,
                                    const float *teacher) {
    bd_st_write_tensor *wt = NULL;
    bd_st_kv kv[64];
    bd__spool pool;
    const bd_denoiser *d;
    const float *main_w;
    int64_t nk = 0, nt = 0, i, per = 1;
    bd_result r;
    char tmp[256];
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!m || !m->net || !path) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_save: NULL argument");
    d = m->net;
    if (adam && adam->n != d->n_params)
        return bd_error(ctx, BD_ERROR_SHAPE, "bd_model_save: optimiser has %lld floats, the network %lld", (long long)adam->n, (long long)d->n_params);
    main_w = ema ? ema : m->ema ? m->ema : d->params;
    if ((main_w == d->params || raw == d->params) && bd_backend_on_device(d->ctx))
        return bd_error(ctx, BD_ERROR_UNSUPPORTED, "bd_model_save_state: the network lives on a device context; pass host weights (ema) or use bd_model_save");
    memset(&pool, 0, sizeof pool);
    pool.cap = 8192 + (size_t)d->n_tensors * 4 * 96 + ((size_t)m->steps + 1) * 32;
    pool.buf = BD__CAST(char *, bd_alloc(ctx, pool.cap));
    if (raw) per++;
    if (adam) per += 2;
    if (teacher) per++;
    if (nx < 0 || nx > 32) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_save: %lld extra metadata entries", (long long)nx);
    wt = BD__CAST(bd_st_write_tensor *, bd_alloc_array(ctx, (size_t)(d->n_tensors * per), sizeof(bd_st_write_tensor)));
    if (!pool.buf || !wt) { bd_free(ctx, pool.buf); bd_free(ctx, wt); return ctx->last_result; }
#define BD__KV(k, v) do { kv[nk].key = (k); kv[nk].value = (v); nk++; } while (0)
    BD__KV("bdense.version", BDENSE_VERSION_STRING);
    if (strcmp(m->arch, "unet") == 0) {
        const bd_unet_config *c = &m->cfg;
        BD__KV("in_ch", bd__spool_printf(&pool, "%lld", (long long)c->in_ch));
        BD__KV("image_size", bd__spool_printf(&pool, "%lld", (long long)c->image_size));
        BD__KV("ch", bd__spool_printf(&pool, "%lld", (long long)c->ch));
        bd_unet_format_mult(c, tmp, sizeof tmp);
        BD__KV("ch_mult", bd__spool_printf(&pool, "%s", tmp));
        BD__KV("nres", bd__spool_printf(&pool, "%lld", (long long)c->nres));
        bd_unet_format_attn(c, tmp, sizeof tmp);
        BD__KV("attn_levels", bd__spool_printf(&pool, "%s", tmp));
        BD__KV("groups", bd__spool_printf(&pool, "%lld", (long long)c->groups));
        BD__KV("heads", bd__spool_printf(&pool, "%lld", (long long)c->heads));
        BD__KV("branches", bd__spool_printf(&pool, "%lld", (long long)c->branches));
    } else {
        const bd_mlp_config *c = &m->mlp;
        BD__KV("arch", "mlp");
        BD__KV("dim", bd__spool_printf(&pool, "%lld", (long long)c->dim));
        BD__KV("hidden", bd__spool_printf(&pool, "%lld", (long long)c->hidden));
        BD__KV("depth", bd__spool_printf(&pool, "%lld", (long long)c->depth));
        BD__KV("temb_dim", bd__spool_printf(&pool, "%lld", (long long)c->temb_dim));
        BD__KV("branches", bd__spool_printf(&pool, "%lld", (long long)c->branches));
    }
    BD__KV("param", bd_param_name(m->param));
    BD__KV("schedule", bd_schedule_name(m->schedule));
    if (m->steps > 0 && m->grid) {
        const char *g;
        BD__KV("steps", bd__spool_printf(&pool, "%lld", (long long)m->steps));
        g = bd__spool_printf(&pool, "%.17g", m->grid[0]);
        for (i = 1; i <= m->steps; i++) bd__spool_append(&pool, ",%.17g", m->grid[i]);
        BD__KV("grid", g);
    }
    if (adam) BD__KV("optim.step", bd__spool_printf(&pool, "%lld", (long long)adam->step));
    if (rng) BD__KV("train.rng", bd__rng_format(&pool, rng));
    if (data_rng) BD__KV("train.data_rng", bd__rng_format(&pool, data_rng));
    for (i = 0; i < nx; i++) BD__KV(xkv[i].key, xkv[i].value);
#undef BD__KV
    for (i = 0; i < d->n_tensors; i++) {
        const bd_param_tensor *pt = &d->tensors[i];
        int k, j;
        for (k = 0; k < 5; k++) {
            bd_st_write_tensor *w;
            const float *src;
            const char *name;
            if (k == 0) { src = main_w; name = pt->name; }
            else if (k == 1) { if (!raw) continue; src = raw; name = bd__spool_printf(&pool, "train.raw.%s", pt->name); }
            else if (k == 2) { if (!adam) continue; src = adam->m; name = bd__spool_printf(&pool, "optim.m.%s", pt->name); }
            else if (k == 3) { if (!adam) continue; src = adam->v; name = bd__spool_printf(&pool, "optim.v.%s", pt->name); }
            else { if (!teacher) continue; src = teacher; name = bd__spool_printf(&pool, "distill.teacher.%s", pt->name); }
            w = &wt[nt++];
            memset(w, 0, sizeof *w);
            w->name = name;
            w->data = src + pt->offset;
            w->ndim = pt->ndim;
            for (j = 0; j < pt->ndim; j++) w->shape[j] = pt->shape[j];
        }
    }
    if (pool.overflow) r = bd_error(ctx, BD_ERROR_OVERFLOW, "bd_model_save: metadata too long");
    else r = bd_safetensors_write(ctx, path, wt, nt, kv, nk);
    bd_free(ctx, wt);
    bd_free(ctx, pool.buf);
    return r;
}

/* strict non-negative decimal integer metadata value */
static bd_result bd__meta_int(bd_context *ctx, const bd_safetensors *st, const char *path,
                              const char *key, int64_t *out, int required) {
    const char *s = bd_safetensors_meta(st, key), *p;
    int64_t v = 0;
    if (!s) {
        if (!required) return BD_SUCCESS;
        return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: metadata key \"%s\" is missing", path, key);
    }
    for (p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10 || p - s > 17) break;
        v = v * 10 + (*p - '0');
    }
    if (*p || p == s)
        return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: metadata %s = \"%s\" is not a non-negative integer", path, key, s);
    *out = v;
    return BD_SUCCESS;
}

BDAPI bd_result bd_model_init(bd_context *ctx, bd_denoiser *net, bd_param_kind param,
                              bd_schedule_kind schedule, bd_model **out) {
    bd_model *m;
    const char *kind;
    if (!ctx || !out || !net) {
        bd_denoiser_free(net);
        return ctx ? bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_init: NULL argument") : BD_ERROR_INVALID_ARGUMENT;
    }
    *out = NULL;
    kind = net->vt && net->vt->kind ? net->vt->kind : "";
    if ((int)param < 0 || (int)param > 2 || (int)schedule < 0 || (int)schedule > 1) {
        bd_denoiser_free(net);
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_init: unknown param (%d) or schedule (%d)", (int)param, (int)schedule);
    }
    if (strcmp(kind, "unet") != 0 && strcmp(kind, "mlp") != 0) {
        bd_denoiser_free(net);
        return bd_error(ctx, BD_ERROR_UNSUPPORTED, "bd_model_init: a model holds a \"unet\" or \"mlp\" network, not \"%s\"", kind);
    }
    m = BD__CAST(bd_model *, bd_alloc(ctx, sizeof(bd_model)));
    if (!m) { bd_denoiser_free(net); return ctx->last_result; }
    memset(m, 0, sizeof *m);
    m->ctx = ctx;
    m->net = net;
    snprintf(m->arch, sizeof m->arch, "%s", kind);
    if (kind[0] == 'u') bd_unet_get_config(net, &m->cfg);
    else m->mlp = BD__CAST(const bd__mlp *, net->impl)->cfg;
    m->param = param;
    m->schedule = schedule;
    *out = m;
    return BD_SUCCESS;
}

BDAPI bd_result bd_model_init_unet(bd_context *ctx, const bd_unet_config *cfg,
                                   bd_param_kind param, bd_schedule_kind schedule, bd_rng *rng,
                                   bd_model **out) {
    bd_denoiser *net = NULL;
    bd_result r;
    if (out) *out = NULL;
    if ((r = bd_unet_init(ctx, cfg, rng, &net)) != BD_SUCCESS) return r;
    return bd_model_init(ctx, net, param, schedule, out);
}

BDAPI void bd_model_free(bd_model *m) {
    bd_context *ctx;
    if (!m) return;
    ctx = m->ctx;
    bd_denoiser_free(m->net);
    bd_free(ctx, m->grid);
    bd_free(ctx, m->ema);
    bd_free(ctx, m);
}

static bd_result bd__model_check_grid(bd_context *ctx, const double *g, int64_t steps,
                                      const char *where) {
    int64_t i;
    if (steps < 1 || steps > 100000)
        return bd_error(ctx, BD_ERROR_CONFIG, "%s: steps %lld not in 1..100000", where, (long long)steps);
    if (g[0] != 1.0 || g[steps] != 0.0)
        return bd_error(ctx, BD_ERROR_CONFIG, "%s: grid must run from 1 to 0 (got %.17g .. %.17g)", where, g[0], g[steps]);
    for (i = 0; i < steps; i++)
        if (!(g[i + 1] < g[i]))
            return bd_error(ctx, BD_ERROR_CONFIG, "%s: grid is not strictly decreasing at entry %lld (%.17g, %.17g)", where, (long long)i, g[i], g[i + 1]);
    return BD_SUCCESS;
}

BDAPI bd_result bd_model_set_grid(bd_model *m, const double *grid, int64_t steps) {
    double *g;
    bd_result r;
    if (!m) return BD_ERROR_INVALID_ARGUMENT;
    if (steps == 0 || !grid) {
        bd_free(m->ctx, m->grid);
        m->grid = NULL;
        m->steps = 0;
        return BD_SUCCESS;
    }
    if ((r = bd__model_check_grid(m->ctx, grid, steps, "bd_model_set_grid")) != BD_SUCCESS) return r;
    g = BD__CAST(double *, bd_alloc_array(m->ctx, (size_t)steps + 1, sizeof(double)));
    if (!g) return m->ctx->last_result;
    memcpy(g, grid, ((size_t)steps + 1) * sizeof(double));
    bd_free(m->ctx, m->grid);
    m->grid = g;
    m->steps = steps;
    return BD_SUCCESS;
}

BDAPI bd_result bd_model_enable_ema(bd_model *m) {
    if (!m) return BD_ERROR_INVALID_ARGUMENT;
    if (m->ema) return BD_SUCCESS;
    m->ema = BD__CAST(float *, bd_alloc_array(m->ctx, (size_t)m->net->n_params, sizeof(float)));
    if (!m->ema) return m->ctx->last_result;
    memcpy(m->ema, m->net->params, (size_t)m->net->n_params * sizeof(float));
    return BD_SUCCESS;
}

BDAPI bd_result bd_model_student_init(bd_context *ctx, const bd_model *teacher, int64_t branches,
                                      const double *grid, int64_t steps, bd_rng *rng,
                                      bd_model **out) {
    bd_denoiser *net = NULL;
    bd_model *m = NULL;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (out) *out = NULL;
    if (!teacher || !teacher->net || !rng || !out)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_student_init: NULL argument");
    if ((r = bd_denoiser_create_like(teacher->net, branches, rng, &net)) != BD_SUCCESS) return r;
    if ((r = bd_denoiser_copy_weights(net, teacher->net)) != BD_SUCCESS) {
        bd_denoiser_free(net);
        return r;
    }
    if ((r = bd_model_init(ctx, net, teacher->param, teacher->schedule, &m)) != BD_SUCCESS) return r;
    if (grid && steps > 0 && (r = bd_model_set_grid(m, grid, steps)) != BD_SUCCESS) {
        bd_model_free(m);
        return r;
    }
    *out = m;
    return BD_SUCCESS;
}

/* bd_model_save_state, plus nx metadata entries xkv and (teacher != NULL)
   a second network of m->net's shape as distill.teacher.<name> tensors:
   the distiller's state (bd_distill_save_state) */
static bd_result bd__model_save_ext(bd_context *ctx, const bd_model *m, const char *path, const float *ema,
                                    const float *raw, const bd_adam *adam, const bd_rng *rng,
                                    const bd_rng *data_rng, const bd_st_kv *xkv, int64_t nx,
                                    const float *teacher);
BDAPI bd_result bd_model_save_state(bd_context *ctx, const bd_model *m, const char *path,
                                    const float *ema, const float *raw, const bd_adam *adam,
                                    const bd_rng *rng, const bd_rng *data_rng) {
    return bd__model_save_ext(ctx, m, path, ema, raw, adam, rng, data_rng, NULL, 0, NULL);
}

/* The trainer's tensors (raw weights, EMA, Adam m and v; and the network's
   weights when tr is NULL) as host arrays: the arrays themselves on a host
   backend, else downloaded into one block *blk (bd_free it on ctx). */
static bd_result bd__train_state_host(bd_context *ctx, bd_denoiser *d, const bd_trainer *tr, float **blk,
                                      float **raw, float **ema, bd_adam *adam) {
    bd_context *bc = d->ctx;
    size_t bytes = (size_t)d->n_params * sizeof(float);
    bd_result r = BD_SUCCESS;
    *blk = NULL;
    *raw = d->params;
    if (tr) {
        *ema = tr->ema;
        *adam = tr->adam;
    }
    if (!bd_backend_on_device(bc)) return BD_SUCCESS;
    *blk = BD__CAST(float *, bd_alloc_array(ctx, (size_t)d->n_params, tr ? 4 * sizeof(float) : sizeof(float)));
    if (!*blk) return ctx->last_result;
    *raw = *blk;
    r = bd_backend_download(bc, *raw, d->params, bytes);
    if (tr) {
        *ema = *blk + d->n_params;
        adam->m = *ema + d->n_params;
        adam->v = adam->m + d->n_params;
        if (r == BD_SUCCESS) r = bd_backend_download(bc, *ema, tr->ema, bytes);
        if (r == BD_SUCCESS) r = bd_backend_download(bc, adam->m, tr->adam.m, bytes);
        if (r == BD_SUCCESS) r = bd_backend_download(bc, adam->v, tr->adam.v, bytes);
    }
    return bd__relay(ctx, bc, r);
}

BDAPI bd_result bd_model_save(bd_context *ctx, const bd_model *m, const char *path,
                              const bd_trainer *tr) {
    float *blk = NULL, *raw = NULL, *ema = NULL;
    bd_adam adam;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!m || !m->net) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_save: NULL model");
    if (tr && tr->model != m->net)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_save: the trainer does not train this model's network");
    memset(&adam, 0, sizeof adam);
    if ((r = bd__train_state_host(ctx, m->net, tr, &blk, &raw, &ema, &adam)) != BD_SUCCESS) return r;
    if (tr) r = bd_model_save_state(ctx, m, path, ema, raw, &adam, &tr->rng, &tr->data_rng);
    else r = bd_model_save_state(ctx, m, path, m->ema ? m->ema : raw, NULL, NULL, NULL, NULL);
    bd_free(ctx, blk);
    return r;
}

/* Checks every tensor of st against the network d: each model tensor present
   with the same shape, no unexpected tensor; optim.m./optim.v./train.raw.
   (and the distiller's distill.teacher.) tensors must name a model tensor
   and have its shape.  *flags: 1 all optim.m and optim.v present, 2 all
   train.raw present, 4 all distill.teacher present. */
static bd_result bd__model_check_tensors(bd_context *ctx, const bd_safetensors *st,
                                         const char *path, const bd_denoiser *d, int *flags) {
    static const char *const prefixes[4] = {"optim.m.", "optim.v.", "train.raw.", "distill.teacher."};
    int64_t i, counts[4] = {0, 0, 0, 0};
    int j, k;
    for (i = 0; i < d->n_tensors; i++) {
        const bd_param_tensor *pt = &d->tensors[i];
        const bd_st_tensor *t = bd_safetensors_find(st, pt->name);
        if (!t) return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: tensor %s is missing", path, pt->name);
    }
    for (i = 0; i < st->n_tensors; i++) {
        const bd_st_tensor *t = &st->tensors[i];
        const char *base = t->name;
        const bd_param_tensor *pt;
        int kind = -1, same;
        for (k = 0; k < 4; k++)
            if (strncmp(t->name, prefixes[k], strlen(prefixes[k])) == 0) { kind = k; base = t->name + strlen(prefixes[k]); }
        pt = bd_denoiser_find_tensor(d, base);
        if (!pt)
            return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: unexpected tensor %s (not part of this %s network)", path, t->name, d->vt->kind);
        same = t->ndim == pt->ndim;
        for (j = 0; same && j < pt->ndim; j++) same = t->shape[j] == pt->shape[j];
        if (!same) {
            char a[96], b[96];
            size_t la = 0, lb = 0;
            a[0] = b[0] = '\0';
            for (j = 0; j < t->ndim && la < sizeof a - 24; j++) la += (size_t)snprintf(a + la, sizeof a - la, j ? ",%lld" : "%lld", (long long)t->shape[j]);
            for (j = 0; j < pt->ndim && lb < sizeof b - 24; j++) lb += (size_t)snprintf(b + lb, sizeof b - lb, j ? ",%lld" : "%lld", (long long)pt->shape[j]);
            return bd_error(ctx, BD_ERROR_SHAPE, "checkpoint %s: tensor %s has shape [%s], the config needs [%s]", path, t->name, a, b);
        }
        if (kind >= 0) counts[kind]++;
    }
    for (k = 0; k < 4; k++)
        if (counts[k] != 0 && counts[k] != d->n_tensors)
            return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: %lld of %lld %s* tensors present (need all or none)", path, (long long)counts[k], (long long)d->n_tensors, prefixes[k]);
    if (counts[0] != counts[1])
        return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: optim.m.* and optim.v.* must both be present", path);
    if (flags) *flags = (counts[0] ? 1 : 0) | (counts[2] ? 2 : 0) | (counts[3] ? 4 : 0);
    return BD_SUCCESS;
}

static void bd__model_copy_tensors(const bd_safetensors *st, const bd_denoiser *d, const char *prefix,
                                   float *dst) {
    int64_t i;
    char name[128];
    for (i = 0; i < d->n_tensors; i++) {
        const bd_param_tensor *pt = &d->tensors[i];
        const bd_st_tensor *t;
        snprintf(name, sizeof name, "%s%s", prefix, pt->name);
        t = bd_safetensors_find(st, name);
        if (t && pt->numel) memcpy(dst + pt->offset, t->data, (size_t)pt->numel * sizeof(float));
    }
}

static bd_result bd__model_from_st(bd_context *ctx, const bd_safetensors *st, const char *path,
                                   bd_model **out) {
    const char *arch = bd_safetensors_meta(st, "arch"), *s;
    bd_denoiser *net = NULL;
    bd_param_kind param;
    bd_schedule_kind sched;
    bd_model *m = NULL;
    bd_result r;
    bd_rng rng = bd_rng_init(0); /* weights are overwritten from the file */
    int64_t steps = 0, ostep = 0, need = 0, have = 0, ti;
    char why[sizeof ctx->message];
    for (ti = 0; ti < st->n_tensors; ti++) have += st->tensors[ti].numel;
    if (!bd_safetensors_meta(st, "bdense.version"))
        return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: metadata key \"bdense.version\" is missing (not a bdense checkpoint?)", path);
    s = bd_safetensors_meta(st, "param");
    if (!s || bd_param_parse(s, &param) != BD_SUCCESS)
        return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: metadata param = \"%s\" (need eps, x0 or v)", path, s ? s : "(missing)");
    s = bd_safetensors_meta(st, "schedule");
    if (!s || bd_schedule_parse(s, &sched) != BD_SUCCESS)
        return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: metadata schedule = \"%s\" (need cosine or linear)", path, s ? s : "(missing)");
    if (!arch || strcmp(arch, "unet") == 0) {
        bd_unet_config c;
        memset(&c, 0, sizeof c);
        if ((r = bd__meta_int(ctx, st, path, "in_ch", &c.in_ch, 1)) != BD_SUCCESS ||
            (r = bd__meta_int(ctx, st, path, "image_size", &c.image_size, 1)) != BD_SUCCESS ||
            (r = bd__meta_int(ctx, st, path, "ch", &c.ch, 1)) != BD_SUCCESS ||
            (r = bd__meta_int(ctx, st, path, "nres", &c.nres, 1)) != BD_SUCCESS ||
            (r = bd__meta_int(ctx, st, path, "groups", &c.groups, 1)) != BD_SUCCESS ||
            (r = bd__meta_int(ctx, st, path, "heads", &c.heads, 1)) != BD_SUCCESS ||
            (r = bd__meta_int(ctx, st, path, "branches", &c.branches, 1)) != BD_SUCCESS)
            return r;
        s = bd_safetensors_meta(st, "ch_mult");
        if (!s) return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: metadata key \"ch_mult\" is missing", path);
        if (bd_unet_parse_mult(ctx, s, &c) != BD_SUCCESS)
            return (memcpy(why, ctx->message, sizeof why), bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: %s", path, why));
        s = bd_safetensors_meta(st, "attn_levels");
        if (!s) return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: metadata key \"attn_levels\" is missing", path);
        if (bd_unet_parse_attn(ctx, s, &c) != BD_SUCCESS)
            return (memcpy(why, ctx->message, sizeof why), bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: %s", path, why));
        if (bd_unet_config_validate(ctx, &c) != BD_SUCCESS)
            return (memcpy(why, ctx->message, sizeof why), bd_error(ctx, BD_ERROR_CONFIG, "checkpoint %s: %s", path, why));
        /* a few bytes of metadata must not make us allocate a huge network:
           the file has to hold at least the config's parameters */
        if ((r = bd_unet_config_stats(ctx, &c, &need, NULL, NULL)) != BD_SUCCESS) return r;
        if (need > have)
            return bd_error(ctx, BD_ERROR_SHAPE, "checkpoint %s: the config needs %lld parameters, the file holds %lld floats", path, (long long)need, (long long)have);
        if ((r = bd_unet_init(ctx, &c, &rng, &net)) != BD_SUCCESS) return r;
    } else if (strcmp(arch, "mlp") == 0) {
        bd_mlp_config c = bd_mlp_config_init(1);
        if ((r = bd__meta_int(ctx, st, path, "dim", &c.dim, 1)) != BD_SUCCESS ||
            (r = bd__meta_int(ctx, st, path, "hidden", &c.hidden, 1)) != BD_SUCCESS ||
            (r = bd__meta_int(ctx, st, path, "depth", &c.depth, 1)) != BD_SUCCESS ||
            (r = bd__meta_int(ctx, st, path, "temb_dim", &c.temb_dim, 1)) != BD_SUCCESS ||
            (r = bd__meta_int(ctx, st, path, "branches", &c.branches, 1)) != BD_SUCCESS)
            return r;
        {   /* parameters of the config (in double: the fields are unchecked here) */
            double H = (double)c.hidden, E = (double)c.temb_dim, D = (double)c.dim, K = (double)c.branches;
            double np = H * E + H + H * H + H + D * H + H + (double)(c.depth > 1 ? c.depth - 1 : 0) * (H * H + H) + K * D * H + K * D;
            if (np > (double)have)
                return bd_error(ctx, BD_ERROR_SHAPE, "checkpoint %s: the config needs %.0f parameters, the file holds %lld floats", path, np, (long long)have);
        }
        if ((r = bd_mlp_create(ctx, &c, &rng, &net)) != BD_SUCCESS)
            return (memcpy(why, ctx->message, sizeof why), bd_error(ctx, r, "checkpoint %s: %s", path, why));
    } else {
        return bd_error(ctx, BD_ERROR_UNSUPPORTED, "checkpoint %s: arch \"%s\" (need unet or mlp)", path, arch);
    }
    if ((r = bd__model_check_tensors(ctx, st, path, net, NULL)) != BD_SUCCESS) {
        bd_denoiser_free(net);
        return r;
    }
    bd__model_copy_tensors(st, net, "", net->params);
    if ((r = bd_model_init(ctx, net, param, sched, &m)) != BD_SUCCESS) return r;
    if ((r = bd__meta_int(ctx, st, path, "steps", &steps, 0)) != BD_SUCCESS ||
        (r = bd__meta_int(ctx, st, path, "optim.step", &ostep, 0)) != BD_SUCCESS) {
        bd_model_free(m);
        return r;
    }
    m->train_step = ostep;
    s = bd_safetensors_meta(st, "grid");
    if ((steps > 0) != (s != NULL)) {
        bd_model_free(m);
        return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: a student needs both \"steps\" (> 0) and \"grid\" metadata", path);
    }
    if (steps > 0) {
        double *g;
        int64_t i;
        const char *p = s;
        if (steps > 100000) {
            bd_model_free(m);
            return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: steps %lld > 100000", path, (long long)steps);
        }
        g = BD__CAST(double *, bd_alloc_array(ctx, (size_t)steps + 1, sizeof(double)));
        if (!g) { bd_model_free(m); return ctx->last_result; }
        for (i = 0; i <= steps; i++) {
            char *end;
            if (*p == '\0' || *p == ' ' || *p == '\t') break;
            g[i] = strtod(p, &end);
            if (end == p || g[i] != g[i] || (i < steps && *end != ',') || (i == steps && *end != '\0')) break;
            p = end + (i < steps ? 1 : 0);
        }
        if (i <= steps) {
            bd_free(ctx, g);
            bd_model_free(m);
            return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: grid is not %lld comma-separated numbers (problem at entry %lld)", path, (long long)(steps + 1), (long long)i);
        }
        r = bd__model_check_grid(ctx, g, steps, "checkpoint grid");
        if (r == BD_SUCCESS) r = bd_model_set_grid(m, g, steps);
        bd_free(ctx, g);
        if (r != BD_SUCCESS) {
            bd_model_free(m);
            return (memcpy(why, ctx->message, sizeof why), bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: %s", path, why));
        }
    }
    *out = m;
    return BD_SUCCESS;
}

BDAPI bd_result bd_model_load(bd_context *ctx, const char *path, bd_model **out) {
    bd_safetensors *st = NULL;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!path || !out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_load: NULL argument");
    *out = NULL;
    if ((r = bd_safetensors_load(ctx, path, &st)) != BD_SUCCESS) return r;
    r = bd__model_from_st(ctx, st, path, out);
    bd_safetensors_free(st);
    return r;
}

BDAPI bd_result bd_model_load_state(bd_context *ctx, const char *path, const bd_model *m,
                                    float *ema, float *raw, bd_adam *adam, bd_rng *rng,
                                    bd_rng *data_rng, int *found) {
    bd_safetensors *st = NULL;
    bd_result r;
    int flags = 0, fl = 0;
    int64_t ostep = 0;
    bd_rng r1, r2;
    const char *s1, *s2;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (found) *found = 0;
    if (!m || !m->net || !path) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_load_state: NULL argument");
    if (adam && adam->n != m->net->n_params)
        return bd_error(ctx, BD_ERROR_SHAPE, "bd_model_load_state: optimiser has %lld floats, the network %lld", (long long)adam->n, (long long)m->net->n_params);
    if (raw == m->net->params && bd_backend_on_device(m->net->ctx))
        return bd_error(ctx, BD_ERROR_UNSUPPORTED, "bd_model_load_state: the network lives on a device context; load into host arrays or use bd_model_resume");
    if ((r = bd_safetensors_load(ctx, path, &st)) != BD_SUCCESS) return r;
    /* validate everything before touching any output */
    r = bd__model_check_tensors(ctx, st, path, m->net, &fl);
    if (r == BD_SUCCESS && (fl & 1)) {
        r = bd__meta_int(ctx, st, path, "optim.step", &ostep, 1);
        if (r == BD_SUCCESS) flags |= 1;
    }
    if (fl & 2) flags |= 2;
    s1 = bd_safetensors_meta(st, "train.rng");
    s2 = bd_safetensors_meta(st, "train.data_rng");
    if (r == BD_SUCCESS && s1) {
        if (!bd__rng_parse(s1, &r1)) r = bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: metadata train.rng = \"%s\" is malformed", path, s1);
        else flags |= 4;
    }
    if (r == BD_SUCCESS && s2) {
        if (!bd__rng_parse(s2, &r2)) r = bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: metadata train.data_rng = \"%s\" is malformed", path, s2);
        else flags |= 8;
    }
    if (r == BD_SUCCESS) {
        if (ema) bd__model_copy_tensors(st, m->net, "", ema);
        if (raw) bd__model_copy_tensors(st, m->net, (flags & 2) ? "train.raw." : "", raw);
        if (adam && (flags & 1)) {
            bd__model_copy_tensors(st, m->net, "optim.m.", adam->m);
            bd__model_copy_tensors(st, m->net, "optim.v.", adam->v);
            adam->step = ostep;
        }
        if (rng && (flags & 4)) *rng = r1;
        if (data_rng && (flags & 8)) *data_rng = r2;
        if (found) *found = flags;
    }
    bd_safetensors_free(st);
    return r;
}

BDAPI bd_result bd_model_resume(bd_context *ctx, const char *path, bd_model *m, bd_trainer *tr) {
    bd_safetensors *st = NULL;
    bd_result r;
    int fl = 0;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!m || !tr || !path) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_resume: NULL argument");
    if (tr->model != m->net)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_model_resume: the trainer does not train this model's network");
    /* refuse files without optimiser state before changing anything */
    if ((r = bd_safetensors_load(ctx, path, &st)) != BD_SUCCESS) return r;
    r = bd__model_check_tensors(ctx, st, path, m->net, &fl);
    bd_safetensors_free(st);
    if (r != BD_SUCCESS) return r;
    if (!(fl & 1))
        return bd_error(ctx, BD_ERROR_FORMAT, "checkpoint %s: no optimiser state (optim.m.*/optim.v.*) to resume from", path);
    {   /* into host arrays (the trainer's own on a host backend), then uploaded */
        float *blk = NULL, *raw = NULL, *ema = NULL;
        bd_context *bc = m->net->ctx;
        size_t bytes = (size_t)m->net->n_params * sizeof(float);
        bd_adam adam;
        memset(&adam, 0, sizeof adam);
        if ((r = bd__train_state_host(ctx, m->net, tr, &blk, &raw, &ema, &adam)) != BD_SUCCESS) return r;
        r = bd_model_load_state(ctx, path, m, ema, raw, &adam, &tr->rng, &tr->data_rng, &fl);
        if (r == BD_SUCCESS && blk) {
            r = bd_backend_upload(bc, m->net->params, raw, bytes);
            if (r == BD_SUCCESS) r = bd_backend_upload(bc, tr->ema, ema, bytes);
            if (r == BD_SUCCESS) r = bd_backend_upload(bc, tr->adam.m, adam.m, bytes);
            if (r == BD_SUCCESS) r = bd_backend_upload(bc, tr->adam.v, adam.v, bytes);
            if (r == BD_SUCCESS) r = bd_backend_sync(bc);
            r = bd__relay(ctx, bc, r);
        }
        bd_free(ctx, blk);
        if (r == BD_SUCCESS) tr->adam.step = adam.step;
    }
    if (r == BD_SUCCESS) m->train_step = tr->adam.step;
    return r;
}

/* the student as a bd_model (no ownership; for the checkpoint writer) */
static bd_result bd__distill_model(bd_distill *d, bd_model *m) {
    const char *kind = d->student->vt && d->student->vt->kind ? d->student->vt->kind : "";
    memset(m, 0, sizeof *m);
    if (strcmp(kind, "unet") != 0 && strcmp(kind, "mlp") != 0)
        return bd_error(d->ctx, BD_ERROR_UNSUPPORTED, "distill state: the student is a \"%s\" network; the state is a "
                        "model checkpoint, which holds \"unet\" or \"mlp\"", kind);
    m->ctx = d->ctx;
    m->net = d->student;
    snprintf(m->arch, sizeof m->arch, "%s", kind);
    if (kind[0] == 'u') bd_unet_get_config(d->student, &m->cfg);
    else m->mlp = BD__CAST(const bd__mlp *, d->student->impl)->cfg;
    m->param = d->config.param;
    m->schedule = d->config.schedule;
    m->steps = d->N;
    m->grid = d->grid;
    return BD_SUCCESS;
}

static void bd__dstate_doubles(char *buf, size_t cap, const double *v, int64_t n) {
    size_t len = 0;
    int64_t i;
    buf[0] = '\0';
    for (i = 0; i < n && len < cap; i++) {
        int w = snprintf(buf + len, cap - len, i ? ",%.17g" : "%.17g", v[i]);
        if (w < 0) break;
        len += (size_t)w;
    }
}
/* parse exactly n comma-separated doubles */
static int bd__dstate_parse_doubles(const char *s, double *v, int64_t n) {
    int64_t i;
    char *end;
    if (!s) return 0;
    for (i = 0; i < n; i++) {
        v[i] = strtod(s, &end);
        if (end == s) return 0;
        s = end;
        if (i + 1 < n) {
            if (*s != ',') return 0;
            s++;
        }
    }
    return *s == '\0';
}

/* The state is a model checkpoint of the student (bd_model_save_state: the
   EMA as the model tensors, its grid; train.raw.*, optim.m.*, optim.v.*,
   optim.step, train.rng) with the distiller's own metadata bdense.distill.*
   and, after a PD round, the owned teacher as distill.teacher.* */
BDAPI bd_result bd_distill_save_state(bd_distill *dist, const char *path) {
    bd_context *ctx;
    float *blk = NULL, *hp, *he, *hm, *hv, *ht;
    bd_st_kv kv[10];
    bd_model m;
    bd_adam ha;
    char *buf, small[7][96];
    size_t cap;
    int64_t nm = 0;
    bd_result r;
    if (!dist) return BD_ERROR_INVALID_ARGUMENT;
    ctx = dist->ctx;
    if (!path) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "save_state: NULL path");
    if ((r = bd__distill_model(dist, &m)) != BD_SUCCESS) return r;
    cap = (size_t)(dist->S + 1 + dist->K) * 32 + 64;
    buf = BD__CAST(char *, bd_alloc(ctx, 2 * cap));
    if (!buf) return ctx->last_result;
    if ((r = bd__distill_host_state(dist, &blk, &hp, &he, &hm, &hv, &ht)) != BD_SUCCESS) {
        bd_free(ctx, buf);
        return r;
    }
    bd__dstate_doubles(buf, cap, dist->tgrid, dist->S + 1);
    bd__dstate_doubles(buf + cap, cap, dist->branch_ema, dist->K);
    snprintf(small[0], 96, "%s", bd_distill_method_name(dist->config.method));
    snprintf(small[1], 96, "%lld", (long long)dist->K);
    snprintf(small[2], 96, "%lld", (long long)dist->Kt);
    snprintf(small[3], 96, "%lld", (long long)dist->step);
    snprintf(small[4], 96, "%lld", (long long)dist->round);
    snprintf(small[5], 96, "%lld", (long long)dist->branch_ema_count);
    snprintf(small[6], 96, "%.17g,%lld", dist->agree_ema, (long long)dist->agree_count);
    kv[nm].key = "bdense.distill.method"; kv[nm++].value = small[0];
    kv[nm].key = "bdense.distill.branches"; kv[nm++].value = small[1];
    kv[nm].key = "bdense.distill.teacher_substeps"; kv[nm++].value = small[2];
    kv[nm].key = "bdense.distill.step"; kv[nm++].value = small[3];
    kv[nm].key = "bdense.distill.round"; kv[nm++].value = small[4];
    kv[nm].key = "bdense.distill.teacher_grid"; kv[nm++].value = buf;
    kv[nm].key = "bdense.distill.branch_ema"; kv[nm++].value = buf + cap;
    kv[nm].key = "bdense.distill.branch_ema_count"; kv[nm++].value = small[5];
    kv[nm].key = "bdense.distill.agree"; kv[nm++].value = small[6];
    kv[nm].key = "bdense.distill.weights"; kv[nm++].value = bd_distill_weights_name(dist->config.weights);
    ha = dist->adam;
    ha.m = hm;
    ha.v = hv;
    r = bd__model_save_ext(ctx, &m, path, he, hp, &ha, &dist->rng, NULL, kv, nm, ht);
    bd_free(ctx, buf);
    bd_free(ctx, blk);
    return r;
}

BDAPI bd_result bd_distill_load_state(bd_distill *dist, const char *path) {
    bd_context *ctx;
    bd_safetensors *st = NULL;
    int64_t K, Kt, step, round, N, astep, bcount, np, i;
    double grid[BD_SAMPLER_MAX_STEPS + 1], bema[BD_DISTILL_MAX_BRANCHES];
    double *tgrid_saved = NULL;
    float *blk = NULL, *hp, *he, *hm, *hv, *ht;
    bd_rng rng;
    int fl = 0;
    double ae = 0.0;
    long long ac = -1;
    const char *m, *gs, *ag;
    bd_result r;
    if (!dist) return BD_ERROR_INVALID_ARGUMENT;
    ctx = dist->ctx;
    if (!path) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "load_state: NULL path");
    if ((r = bd_safetensors_load(ctx, path, &st)) != BD_SUCCESS) return r;
    np = dist->student->n_params;
    m = bd_safetensors_meta(st, "bdense.distill.method");
    K = Kt = -1;
    if (!m || strcmp(m, bd_distill_method_name(dist->config.method)) != 0 ||
        bd__meta_int(ctx, st, path, "bdense.distill.branches", &K, 1) != BD_SUCCESS || K != dist->K ||
        bd__meta_int(ctx, st, path, "bdense.distill.teacher_substeps", &Kt, 1) != BD_SUCCESS || Kt != dist->Kt) {
        r = bd_error(ctx, BD_ERROR_CONFIG, "load_state %s: not a %s distillation with K=%lld, Kt=%lld", path,
                     bd_distill_method_name(dist->config.method), (long long)dist->K, (long long)dist->Kt);
        goto done;
    }
    if ((r = bd__meta_int(ctx, st, path, "bdense.distill.step", &step, 1)) != BD_SUCCESS ||
        (r = bd__meta_int(ctx, st, path, "bdense.distill.round", &round, 1)) != BD_SUCCESS ||
        (r = bd__meta_int(ctx, st, path, "steps", &N, 1)) != BD_SUCCESS ||
        (r = bd__meta_int(ctx, st, path, "optim.step", &astep, 1)) != BD_SUCCESS ||
        (r = bd__meta_int(ctx, st, path, "bdense.distill.branch_ema_count", &bcount, 1)) != BD_SUCCESS)
        goto done;
    ag = bd_safetensors_meta(st, "bdense.distill.agree"); /* agree weights' running cosine */
    if (N < 1 || N > dist->N_max || !bd__dstate_parse_doubles(bd_safetensors_meta(st, "bdense.distill.branch_ema"), bema, K) ||
        !bd_safetensors_meta(st, "train.rng") || !bd__rng_parse(bd_safetensors_meta(st, "train.rng"), &rng) ||
        !ag || sscanf(ag, "%lg,%lld", &ae, &ac) != 2 || ac < 0 || !(ae == ae)) {
        r = bd_error(ctx, BD_ERROR_FORMAT, "load_state %s: missing or malformed bdense.distill metadata", path);
        goto done;
    }
    gs = bd_safetensors_meta(st, "grid");
    if (!bd__dstate_parse_doubles(gs, grid, N + 1) || grid[0] != 1.0 || grid[N] != 0.0) {
        r = bd_error(ctx, BD_ERROR_FORMAT, "load_state %s: bad grid", path);
        goto done;
    }
    /* every tensor a tensor of this student: the model tensors (EMA),
       train.raw, optim.m/v, and the owned teacher after a PD round */
    if ((r = bd__model_check_tensors(ctx, st, path, dist->student, &fl)) != BD_SUCCESS) goto done;
    if ((fl & 3) != 3 || (round > 0 && dist->config.method == BD_DISTILL_PD && !(fl & 4))) {
        r = bd_error(ctx, BD_ERROR_FORMAT, "load_state %s: a model checkpoint without the distiller's raw weights, "
                     "optimiser%s (not a distillation state?)", path, round > 0 ? " or round teacher" : "");
        goto done;
    }
    if (round > 0 && dist->config.method == BD_DISTILL_PD && dist->teacher != dist->owned_teacher &&
        (r = bd__distill_own_teacher(dist)) != BD_SUCCESS)
        goto done;
    /* into wherever the state lives (host arrays, uploaded on a device) */
    if ((r = bd__distill_host_state(dist, &blk, &hp, &he, &hm, &hv, &ht)) != BD_SUCCESS) goto done;
    bd__model_copy_tensors(st, dist->student, "train.raw.", hp);
    bd__model_copy_tensors(st, dist->student, "", he);
    bd__model_copy_tensors(st, dist->student, "optim.m.", hm);
    bd__model_copy_tensors(st, dist->student, "optim.v.", hv);
    if (ht && (fl & 4)) bd__model_copy_tensors(st, dist->student, "distill.teacher.", ht);
    if (blk) {
        bd_context *bc = dist->mctx;
        size_t bytes = (size_t)np * sizeof(float);
        r = bd_backend_upload(bc, dist->student->params, hp, bytes);
        if (r == BD_SUCCESS) r = bd_backend_upload(bc, dist->ema, he, bytes);
        if (r == BD_SUCCESS) r = bd_backend_upload(bc, dist->adam.m, hm, bytes);
        if (r == BD_SUCCESS) r = bd_backend_upload(bc, dist->adam.v, hv, bytes);
        if (r == BD_SUCCESS && ht && (fl & 4)) r = bd_backend_upload(bc, dist->teacher->params, ht, bytes);
        if (r != BD_SUCCESS) {
            r = bd__relay(ctx, bc, r);
            goto done;
        }
    }
    dist->adam.step = astep;
    for (i = 0; i <= N; i++) dist->grid[i] = grid[i];
    dist->N = N;
    dist->config.student_steps = N;
    if ((r = bd__distill_grids(dist)) != BD_SUCCESS) goto done;
    /* after a PD round the teacher grid is the previous student grid, not a
       subdivision of this one */
    if (round > 0 && bd_safetensors_meta(st, "bdense.distill.teacher_grid")) {
        tgrid_saved = BD__CAST(double *, bd_alloc_array(ctx, (size_t)(dist->S + 1), sizeof(double)));
        if (!tgrid_saved) { r = ctx->last_result; goto done; }
        if (!bd__dstate_parse_doubles(bd_safetensors_meta(st, "bdense.distill.teacher_grid"), tgrid_saved, dist->S + 1)) {
            r = bd_error(ctx, BD_ERROR_FORMAT, "load_state %s: bad bdense.distill.teacher_grid", path);
            goto done;
        }
        for (i = 0; i < dist->S; i++)
            if ((i % dist->Kt == 0 && tgrid_saved[i] != grid[i / dist->Kt]) || !(tgrid_saved[i] > tgrid_saved[i + 1]))
                break;
        if (i < dist->S || tgrid_saved[dist->S] != grid[N]) {
            r = bd_error(ctx, BD_ERROR_FORMAT, "load_state %s: bdense.distill.teacher_grid does not nest the grid", path);
            goto done;
        }
        memcpy(dist->tgrid, tgrid_saved, (size_t)(dist->S + 1) * sizeof(double));
        if ((r = bd__distill_fine(dist)) != BD_SUCCESS) goto done;
    }
    dist->rng = rng;
    for (i = 0; i < K; i++) dist->branch_ema[i] = bema[i];
    dist->branch_ema_count = bcount;
    dist->agree_ema = ae;
    dist->agree_count = (int64_t)ac;
    dist->step = step;
    dist->round = round;
done:
    bd_free(ctx, blk);
    bd_free(ctx, tgrid_saved);
    bd_safetensors_free(st);
    return r;
}

/* ------------------------------------------------------------------------ */
/* >>formats                                                                */
/* ------------------------------------------------------------------------ */
/* ---- .npy ---- */
static int bd__npy_tok(const char *h, size_t n, size_t *i, const char *lit) {
    size_t k = strlen(lit);
    if (n - *i < k || memcmp(h + *i, lit, k) != 0) return 0;
    *i += k;
    return 1;
}
static void bd__npy_ws(const char *h, size_t n, size_t *i) {
    while (*i < n && (h[*i] == ' ' || h[*i] == '\t')) (*i)++;
}
/* Magic, version and header length of a .npy prefix (avail bytes at b):
   the header dictionary is hlen bytes at hstart. */
static bd_result bd__npy_prefix(bd_context *ctx, const unsigned char *b, size_t avail, size_t *hlen,
                                size_t *hstart) {
    if (avail < 10 || memcmp(b, "\x93NUMPY", 6) != 0) return bd_error(ctx, BD_ERROR_FORMAT, "npy: bad magic");
    if (b[6] == 1 && b[7] == 0) {
        *hlen = (size_t)b[8] | ((size_t)b[9] << 8);
        *hstart = 10;
    } else if ((b[6] == 2 || b[6] == 3) && b[7] == 0) {
        if (avail < 12) return bd_error(ctx, BD_ERROR_FORMAT, "npy: truncated header length");
        *hlen = (size_t)b[8] | ((size_t)b[9] << 8) | ((size_t)b[10] << 16) | ((size_t)b[11] << 24);
        *hstart = 12;
    } else {
        return bd_error(ctx, BD_ERROR_UNSUPPORTED, "npy: format version %d.%d", b[6], b[7]);
    }
    return BD_SUCCESS;
}
/* n elements of `item` bytes (4: float32, 8: float64; byte-swapped when
   swap) at b into floats */
static void bd__npy_convert(float *out, const unsigned char *b, int64_t n, int item, int swap) {
    int64_t i;
    int k;
    for (i = 0; i < n; i++) {
        unsigned char e[8];
        for (k = 0; k < item; k++) e[k] = b[i * item + (swap ? item - 1 - k : k)];
        if (item == 8) {
            double v;
            memcpy(&v, e, 8);
            out[i] = (float)v;
        } else {
            memcpy(&out[i], e, 4);
        }
    }
}
/* Parse the header dictionary (a Python literal) strictly:
   {'descr': <str>, 'fortran_order': <bool>, 'shape': <tuple>} in any order,
   optional trailing comma, then spaces and one '\n'; *numel: the product
   of the shape (at most INT64_MAX / 8). */
static bd_result bd__npy_header(bd_context *ctx, const char *h, size_t n, int *swap, int *f8,
                                int *ndim, int64_t *shape, int64_t *numel) {
    size_t i = 0;
    int seen_descr = 0, seen_fo = 0, seen_shape = 0, fortran = 0, k;
    char descr[16];
    if (!bd__npy_tok(h, n, &i, "{")) return bd_error(ctx, BD_ERROR_FORMAT, "npy: header does not start with '{'");
    for (k = 0; k < 3; k++) {
        char q;
        size_t ks, kl;
        bd__npy_ws(h, n, &i);
        if (i >= n || (h[i] != '\'' && h[i] != '"')) break;
        q = h[i++];
        ks = i;
        while (i < n && h[i] != q) i++;
        if (i >= n) return bd_error(ctx, BD_ERROR_FORMAT, "npy: unterminated key in header");
        kl = i - ks;
        i++;
        bd__npy_ws(h, n, &i);
        if (!bd__npy_tok(h, n, &i, ":")) return bd_error(ctx, BD_ERROR_FORMAT, "npy: expected ':' in header");
        bd__npy_ws(h, n, &i);
        if (kl == 5 && memcmp(h + ks, "descr", 5) == 0 && !seen_descr) {
            size_t vs;
            seen_descr = 1;
            if (i >= n || (h[i] != '\'' && h[i] != '"')) return bd_error(ctx, BD_ERROR_FORMAT, "npy: descr is not a string");
            q = h[i++];
            vs = i;
            while (i < n && h[i] != q) i++;
            if (i >= n) return bd_error(ctx, BD_ERROR_FORMAT, "npy: unterminated descr");
            if (i - vs >= sizeof descr) return bd_error(ctx, BD_ERROR_UNSUPPORTED, "npy: unsupported dtype");
            memcpy(descr, h + vs, i - vs);
            descr[i - vs] = 0;
            i++;
        } else if (kl == 13 && memcmp(h + ks, "fortran_order", 13) == 0 && !seen_fo) {
            seen_fo = 1;
            if (bd__npy_tok(h, n, &i, "False")) fortran = 0;
            else if (bd__npy_tok(h, n, &i, "True")) fortran = 1;
            else return bd_error(ctx, BD_ERROR_FORMAT, "npy: fortran_order is not True or False");
        } else if (kl == 5 && memcmp(h + ks, "shape", 5) == 0 && !seen_shape) {
            int nd = 0, last_comma = 0;
            seen_shape = 1;
            if (!bd__npy_tok(h, n, &i, "(")) return bd_error(ctx, BD_ERROR_FORMAT, "npy: shape is not a tuple");
            for (;;) {
                uint64_t v = 0;
                size_t ds;
                bd__npy_ws(h, n, &i);
                if (bd__npy_tok(h, n, &i, ")")) break;
                ds = i;
                while (i < n && h[i] >= '0' && h[i] <= '9') {
                    if (v > (UINT64_C(0x7FFFFFFFFFFFFFFF) - (uint64_t)(h[i] - '0')) / 10)
                        return bd_error(ctx, BD_ERROR_FORMAT, "npy: shape entry overflows");
                    v = v * 10 + (uint64_t)(h[i] - '0');
                    i++;
                }
                if (i == ds) return bd_error(ctx, BD_ERROR_FORMAT, "npy: shape entry is not a non-negative integer");
                if (nd >= BD_NPY_MAX_DIMS) return bd_error(ctx, BD_ERROR_UNSUPPORTED, "npy: more than %d dimensions", BD_NPY_MAX_DIMS);
                shape[nd++] = (int64_t)v;
                bd__npy_ws(h, n, &i);
                if (bd__npy_tok(h, n, &i, ",")) { last_comma = 1; continue; }
                last_comma = 0;
                if (bd__npy_tok(h, n, &i, ")")) break;
                return bd_error(ctx, BD_ERROR_FORMAT, "npy: bad shape tuple");
            }
            /* (5) is an int in Python, not a tuple: a 1-d shape is (5,) */
            if (nd == 1 && !last_comma) return bd_error(ctx, BD_ERROR_FORMAT, "npy: one-element shape lacks its comma");
            *ndim = nd;
        } else {
            return bd_error(ctx, BD_ERROR_FORMAT, "npy: unknown or repeated key in header");
        }
        bd__npy_ws(h, n, &i);
        if (!bd__npy_tok(h, n, &i, ",")) break;
    }
    bd__npy_ws(h, n, &i);
    if (!bd__npy_tok(h, n, &i, "}")) return bd_error(ctx, BD_ERROR_FORMAT, "npy: header dictionary not closed");
    if (!seen_descr || !seen_fo || !seen_shape)
        return bd_error(ctx, BD_ERROR_FORMAT, "npy: header lacks %s",
                        !seen_descr ? "descr" : !seen_fo ? "fortran_order" : "shape");
    while (i < n && h[i] == ' ') i++;
    if (i + 1 != n || h[i] != '\n') return bd_error(ctx, BD_ERROR_FORMAT, "npy: header does not end in spaces and '\\n'");
    if (fortran) return bd_error(ctx, BD_ERROR_UNSUPPORTED, "npy: Fortran-order arrays are not supported");
    if (strcmp(descr, "<f4") == 0) { *swap = !bd__host_is_le(); *f8 = 0; }
    else if (strcmp(descr, ">f4") == 0) { *swap = bd__host_is_le(); *f8 = 0; }
    else if (strcmp(descr, "<f8") == 0) { *swap = !bd__host_is_le(); *f8 = 1; }
    else if (strcmp(descr, ">f8") == 0) { *swap = bd__host_is_le(); *f8 = 1; }
    else return bd_error(ctx, BD_ERROR_UNSUPPORTED, "npy: dtype '%s' is not supported (float32/float64 only)", descr);
    for (*numel = 1, k = 0; k < *ndim; k++) {
        if (shape[k] != 0 && *numel > (INT64_MAX / 8) / shape[k]) return bd_error(ctx, BD_ERROR_FORMAT, "npy: shape overflows");
        *numel *= shape[k];
    }
    return BD_SUCCESS;
}

BDAPI bd_result bd_npy_read_memory(bd_context *ctx, const void *bytes, size_t size, bd_npy *out) {
    const unsigned char *b = BD__CAST(const unsigned char *, bytes);
    size_t hlen, hstart, need, item;
    int swap = 0, f8 = 0, ndim = 0, d;
    int64_t shape[BD_NPY_MAX_DIMS], numel = 1;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "npy: NULL output");
    memset(out, 0, sizeof *out);
    if (!bytes && size) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "npy: NULL bytes");
    if ((r = bd__npy_prefix(ctx, b, size, &hlen, &hstart)) != BD_SUCCESS) return r;
    if (hlen > size - hstart) return bd_error(ctx, BD_ERROR_FORMAT, "npy: header length %zu exceeds the file", hlen);
    r = bd__npy_header(ctx, BD__CAST(const char *, (const void *)(b + hstart)), hlen, &swap, &f8, &ndim, shape,
                       &numel);
    if (r != BD_SUCCESS) return r;
    item = f8 ? 8 : 4;
    if ((uint64_t)numel > (uint64_t)(SIZE_MAX / 8)) return bd_error(ctx, BD_ERROR_OVERFLOW, "npy: array too large");
    need = (size_t)numel * item;
    if (size - hstart - hlen != need)
        return bd_error(ctx, BD_ERROR_FORMAT, "npy: data is %zu bytes, shape needs %zu",
                        size - hstart - hlen, need);
    out->data = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(numel ? numel : 1), sizeof(float)));
    if (!out->data) return ctx->last_result;
    b += hstart + hlen;
    if (!f8 && !swap) {
        if (numel) memcpy(out->data, b, need);
    } else {
        bd__npy_convert(out->data, b, numel, (int)item, swap);
    }
    out->ndim = ndim;
    for (d = 0; d < ndim; d++) out->shape[d] = shape[d];
    out->numel = numel;
    return BD_SUCCESS;
}

BDAPI bd_result bd_npy_read(bd_context *ctx, const char *path, bd_npy *out) {
    unsigned char *buf;
    size_t n;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (out) memset(out, 0, sizeof *out);
    r = bd__read_file(ctx, path, SIZE_MAX, &buf, &n);
    if (r != BD_SUCCESS) return r;
    r = bd_npy_read_memory(ctx, buf, n, out);
    bd_free(ctx, buf);
    return r;
}

BDAPI void bd_npy_free(bd_context *ctx, bd_npy *a) {
    if (!a) return;
    bd_free(ctx, a->data);
    memset(a, 0, sizeof *a);
}

BDAPI bd_result bd_npy_stream_open(bd_context *ctx, const char *path, bd_npy_stream *s) {
    unsigned char pre[12];
    char *h = NULL;
    size_t hlen, hstart;
    long end;
    int f8 = 0, swap = 0, ndim = 0, d;
    int64_t shape[BD_NPY_MAX_DIMS], numel = 1;
    FILE *f;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!s) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "npy stream: NULL stream");
    memset(s, 0, sizeof *s);
    if (!path || !path[0]) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "npy stream: empty path");
    if (!(f = bd__open_sized(ctx, path, &end))) return ctx->last_result;
    r = bd__npy_prefix(ctx, pre, fread(pre, 1, end < 12 ? (size_t)end : 12, f), &hlen, &hstart);
    if (r != BD_SUCCESS) goto fail;
    if (fseek(f, (long)hstart, SEEK_SET) != 0) BD__FAIL(BD_ERROR_IO, "npy stream: %s: cannot seek", path);
    if (hlen > (size_t)end - hstart || hlen > ((size_t)1 << 20))
        BD__FAIL(BD_ERROR_FORMAT, "npy stream: %s: header length %zu exceeds the file", path, hlen);
    h = BD__CAST(char *, bd_alloc(ctx, hlen ? hlen : 1));
    if (!h) { r = ctx->last_result; goto fail; }
    if (fread(h, 1, hlen, f) != hlen) BD__FAIL(BD_ERROR_IO, "npy stream: %s: short read of the header", path);
    r = bd__npy_header(ctx, h, hlen, &swap, &f8, &ndim, shape, &numel);
    if (r != BD_SUCCESS) goto fail;
    if ((uint64_t)(end - (long)(hstart + hlen)) != (uint64_t)numel * (f8 ? 8u : 4u))
        BD__FAIL(BD_ERROR_FORMAT, "npy stream: %s: data is %ld bytes, shape needs %lld", path,
                 end - (long)(hstart + hlen), (long long)(numel * (f8 ? 8 : 4)));
    bd_free(ctx, h);
    s->file = f;
    s->ndim = ndim;
    for (d = 0; d < ndim; d++) s->shape[d] = shape[d];
    s->numel = numel;
    s->data_offset = (int64_t)(hstart + hlen);
    s->item = f8 ? 8 : 4;
    s->swap = swap;
    return BD_SUCCESS;
fail:
    bd_free(ctx, h);
    fclose(f);
    return r;
}

BDAPI bd_result bd_npy_stream_read(bd_context *ctx, bd_npy_stream *s, int64_t first, int64_t count, float *out) {
    FILE *f;
    int64_t done = 0, off;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!s || !s->file) return bd_error(ctx, BD_ERROR_STATE, "npy stream: not open");
    if (!out || first < 0 || count < 0 || first > s->numel || count > s->numel - first)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "npy stream: elements [%lld, +%lld) outside 0..%lld",
                        (long long)first, (long long)count, (long long)s->numel);
    f = BD__CAST(FILE *, s->file);
    off = s->data_offset + first * s->item;
    if (off > (int64_t)LONG_MAX || fseek(f, (long)off, SEEK_SET) != 0)
        return bd_error(ctx, BD_ERROR_IO, "npy stream: cannot seek to byte %lld", (long long)off);
    if (s->item == 4 && !s->swap) {
        if (count && fread(out, 4, (size_t)count, f) != (size_t)count)
            return bd_error(ctx, BD_ERROR_IO, "npy stream: short read at element %lld", (long long)first);
        return BD_SUCCESS;
    }
    while (done < count) { /* convert through a small stack buffer */
        unsigned char buf[2048];
        int64_t n = (int64_t)sizeof buf / s->item;
        if (n > count - done) n = count - done;
        if (fread(buf, (size_t)s->item, (size_t)n, f) != (size_t)n)
            return bd_error(ctx, BD_ERROR_IO, "npy stream: short read at element %lld", (long long)(first + done));
        bd__npy_convert(out + done, buf, n, s->item, s->swap);
        done += n;
    }
    return BD_SUCCESS;
}

BDAPI void bd_npy_stream_close(bd_npy_stream *s) {
    if (!s) return;
    if (s->file) fclose(BD__CAST(FILE *, s->file));
    memset(s, 0, sizeof *s);
}

BDAPI bd_result bd_npy_write(bd_context *ctx, const char *path, const float *data, int ndim,
                             const int64_t *shape) {
    char h[256];
    int len, d, total;
    int64_t numel = 1;
    unsigned char pre[10];
    bd__afile af;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (ndim < 0 || ndim > BD_NPY_MAX_DIMS || (ndim > 0 && !shape))
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "npy: ndim must be 0..%d", BD_NPY_MAX_DIMS);
    if (!bd__st_numel(shape, ndim, &numel))
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "npy: bad shape");
    if (numel > 0 && !data) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "npy: NULL data");
    len = snprintf(h, sizeof h, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (d = 0; d < ndim; d++)
        len += snprintf(h + len, sizeof h - (size_t)len, ndim == 1 ? "%lld," : d + 1 < ndim ? "%lld, " : "%lld",
                        (long long)shape[d]);
    len += snprintf(h + len, sizeof h - (size_t)len, "), }");
    total = 10 + len + 1;
    while (total % 64) { h[len++] = ' '; total++; }
    h[len++] = '\n';
    memcpy(pre, "\x93NUMPY\x01\x00", 8);
    pre[8] = (unsigned char)(len & 0xff);
    pre[9] = (unsigned char)(len >> 8);
    r = bd__afile_open(ctx, &af, path);
    if (r != BD_SUCCESS) return r;
    r = bd__afile_write(&af, pre, 10);
    if (r == BD_SUCCESS) r = bd__afile_write(&af, h, (size_t)len);
    if (r == BD_SUCCESS && bd__host_is_le()) {
        r = bd__afile_write(&af, data, (size_t)numel * 4u);
    } else if (r == BD_SUCCESS) {
        int64_t i;
        for (i = 0; i < numel && r == BD_SUCCESS; i++) {
            unsigned char e[4], s[4];
            memcpy(e, &data[i], 4);
            s[0] = e[3]; s[1] = e[2]; s[2] = e[1]; s[3] = e[0];
            r = bd__afile_write(&af, s, 4);
        }
    }
    if (r == BD_SUCCESS) r = bd__afile_commit(&af);
    return r;
}

/* ---- CRC-32, Adler-32 ---- */
BDAPI uint32_t bd_crc32(uint32_t crc, const void *data, size_t n) {
    uint32_t table[256]; /* built per call: no static mutable state */
    const unsigned char *p = BD__CAST(const unsigned char *, data);
    uint32_t i, k;
    for (i = 0; i < 256; i++) {
        uint32_t c = i;
        for (k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    crc = ~crc;
    while (n--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}
BDAPI uint32_t bd_adler32(uint32_t adler, const void *data, size_t n) {
    const unsigned char *p = BD__CAST(const unsigned char *, data);
    uint32_t a = adler & 0xffff, b = adler >> 16;
    while (n) {
        size_t k = n < 5552 ? n : 5552;
        n -= k;
        while (k--) { a += *p++; b += a; }
        a %= 65521u; b %= 65521u;
    }
    return (b << 16) | a;
}

/* ---- inflate (RFC 1951), after Mark Adler's puff: canonical Huffman
   decoding one bit at a time, every input read and every back-reference
   bounds-checked ---- */
typedef struct bd__inf {
    bd_context *ctx;
    const unsigned char *in;
    size_t inlen, incnt;
    uint32_t bitbuf;
    int bitcnt;
    unsigned char *out;
    size_t outcap, outcnt, max_out;
    const char *err; /* first error, NULL = none */
    int oom;
    size_t want; /* > 0: stop once this many bytes are out (a prefix) */
} bd__inf;
static const char bd__inf_enough[] = "prefix complete"; /* err value: stopped at want */
typedef struct bd__huff {
    short count[16];
    short symbol[320];
} bd__huff;

static int bd__inf_bits(bd__inf *s, int need) {
    uint32_t val = s->bitbuf;
    while (s->bitcnt < need) {
        if (s->incnt == s->inlen) {
            if (!s->err) s->err = "unexpected end of compressed data";
            return 0;
        }
        val |= (uint32_t)s->in[s->incnt++] << s->bitcnt;
        s->bitcnt += 8;
    }
    s->bitbuf = val >> need;
    s->bitcnt -= need;
    return (int)(val & ((1u << need) - 1));
}
static int bd__inf_room(bd__inf *s, size_t extra) {
    size_t need, cap;
    unsigned char *np;
    if (!bd_size_add(s->outcnt, extra, &need) || need > s->max_out) {
        if (!s->err) s->err = "decoded size exceeds the limit";
        return 0;
    }
    if (need <= s->outcap) return 1;
    cap = s->outcap ? s->outcap : 4096;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > s->max_out) cap = s->max_out;
    np = BD__CAST(unsigned char *, bd_alloc(s->ctx, cap));
    if (!np) {
        if (!s->err) s->err = "out of memory";
        s->oom = 1;
        return 0;
    }
    if (s->outcnt) memcpy(np, s->out, s->outcnt);
    bd_free(s->ctx, s->out);
    s->out = np;
    s->outcap = cap;
    return 1;
}
static int bd__inf_stored(bd__inf *s) {
    size_t len;
    s->bitbuf = 0; s->bitcnt = 0;
    if (s->inlen - s->incnt < 4) { s->err = "truncated stored block"; return 0; }
    len = (size_t)s->in[s->incnt] | ((size_t)s->in[s->incnt + 1] << 8);
    if (s->in[s->incnt + 2] != (~len & 0xff) || s->in[s->incnt + 3] != ((~len >> 8) & 0xff)) {
        s->err = "stored block length check failed";
        return 0;
    }
    s->incnt += 4;
    if (s->inlen - s->incnt < len) { s->err = "truncated stored block"; return 0; }
    if (!bd__inf_room(s, len)) return 0;
    if (len) memcpy(s->out + s->outcnt, s->in + s->incnt, len);
    s->outcnt += len;
    s->incnt += len;
    if (s->want && s->outcnt >= s->want) { s->err = bd__inf_enough; return 0; }
    return 1;
}
static int bd__inf_decode(bd__inf *s, const bd__huff *h) {
    /* puff's fast decode: the bits come straight from the bit buffer (which
       holds fewer than 8 between calls), one input byte at a time */
    int len = 1, code = 0, first = 0, count, index = 0, left = s->bitcnt;
    uint32_t bitbuf = s->bitbuf;
    const short *next = h->count + 1;
    for (;;) {
        while (left--) {
            code |= (int)(bitbuf & 1);
            bitbuf >>= 1;
            count = *next++;
            if (code - count < first) {
                s->bitbuf = bitbuf;
                s->bitcnt = (s->bitcnt - len) & 7;
                return h->symbol[index + (code - first)];
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
            len++;
        }
        left = 16 - len;
        if (left == 0) break;
        if (s->incnt == s->inlen) {
            if (!s->err) s->err = "unexpected end of compressed data";
            return -1;
        }
        bitbuf = s->in[s->incnt++];
        if (left > 8) left = 8;
    }
    if (!s->err) s->err = "invalid Huffman code";
    return -1;
}
/* Returns 0 for a complete code, > 0 incomplete, < 0 over-subscribed. */
static int bd__huff_build(bd__huff *h, const short *length, int n) {
    int sym, len, left;
    short offs[16];
    for (len = 0; len <= 15; len++) h->count[len] = 0;
    for (sym = 0; sym < n; sym++) h->count[length[sym]]++;
    if (h->count[0] == n) return 0;
    left = 1;
    for (len = 1; len <= 15; len++) {
        left <<= 1;
        left -= h->count[len];
        if (left < 0) return left;
    }
    offs[1] = 0;
    for (len = 1; len < 15; len++) offs[len + 1] = (short)(offs[len] + h->count[len]);
    for (sym = 0; sym < n; sym++)
        if (length[sym] != 0) h->symbol[offs[length[sym]]++] = (short)sym;
    return left;
}
/* DEFLATE length and distance codes (RFC 1951 3.2.5): base values and extra bits */
static const short bd__lbase[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const short bd__lext[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const short bd__dbase[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
                                    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const short bd__dext[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
static int bd__inf_codes(bd__inf *s, const bd__huff *lencode, const bd__huff *distcode) {
    for (;;) {
        int sym;
        if (s->want && s->outcnt >= s->want) { s->err = bd__inf_enough; return 0; }
        sym = bd__inf_decode(s, lencode);
        if (sym < 0) return 0;
        if (sym < 256) {
            if (!bd__inf_room(s, 1)) return 0;
            s->out[s->outcnt++] = (unsigned char)sym;
        } else if (sym == 256) {
            return 1;
        } else {
            size_t len, dist, k;
            sym -= 257;
            if (sym >= 29) { s->err = "invalid length symbol"; return 0; }
            len = (size_t)bd__lbase[sym] + (size_t)bd__inf_bits(s, bd__lext[sym]);
            sym = bd__inf_decode(s, distcode);
            if (sym < 0) return 0;
            if (sym >= 30) { s->err = "invalid distance symbol"; return 0; }
            dist = (size_t)bd__dbase[sym] + (size_t)bd__inf_bits(s, bd__dext[sym]);
            if (s->err) return 0;
            if (dist > s->outcnt) { s->err = "distance too far back"; return 0; }
            if (!bd__inf_room(s, len)) return 0;
            for (k = 0; k < len; k++, s->outcnt++) s->out[s->outcnt] = s->out[s->outcnt - dist];
        }
    }
}
static int bd__inf_fixed(bd__inf *s) {
    bd__huff lencode, distcode;
    short lengths[288];
    int sym;
    for (sym = 0; sym < 144; sym++) lengths[sym] = 8;
    for (; sym < 256; sym++) lengths[sym] = 9;
    for (; sym < 280; sym++) lengths[sym] = 7;
    for (; sym < 288; sym++) lengths[sym] = 8;
    bd__huff_build(&lencode, lengths, 288);
    for (sym = 0; sym < 30; sym++) lengths[sym] = 5;
    bd__huff_build(&distcode, lengths, 30);
    return bd__inf_codes(s, &lencode, &distcode);
}
static int bd__inf_dynamic(bd__inf *s) {
    static const short order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    short lengths[320];
    bd__huff lencode, distcode;
    int nlen, ndist, ncode, index, err;
    nlen = bd__inf_bits(s, 5) + 257;
    ndist = bd__inf_bits(s, 5) + 1;
    ncode = bd__inf_bits(s, 4) + 4;
    if (s->err) return 0;
    if (nlen > 286 || ndist > 30) { s->err = "bad dynamic block counts"; return 0; }
    for (index = 0; index < ncode; index++) lengths[order[index]] = (short)bd__inf_bits(s, 3);
    for (; index < 19; index++) lengths[order[index]] = 0;
    if (s->err) return 0;
    if (bd__huff_build(&lencode, lengths, 19) != 0) { s->err = "incomplete code-length code"; return 0; }
    index = 0;
    while (index < nlen + ndist) {
        int sym = bd__inf_decode(s, &lencode), len = 0, rep;
        if (sym < 0) return 0;
        if (sym < 16) {
            lengths[index++] = (short)sym;
            continue;
        }
        if (sym == 16) {
            if (index == 0) { s->err = "repeat with no previous length"; return 0; }
            len = lengths[index - 1];
            rep = 3 + bd__inf_bits(s, 2);
        } else if (sym == 17) {
            rep = 3 + bd__inf_bits(s, 3);
        } else {
            rep = 11 + bd__inf_bits(s, 7);
        }
        if (s->err) return 0;
        if (index + rep > nlen + ndist) { s->err = "too many code lengths"; return 0; }
        while (rep--) lengths[index++] = (short)len;
    }
    if (lengths[256] == 0) { s->err = "no end-of-block code"; return 0; }
    err = bd__huff_build(&lencode, lengths, nlen);
    if (err < 0 || (err > 0 && nlen - lencode.count[0] != 1)) { s->err = "bad literal/length code"; return 0; }
    err = bd__huff_build(&distcode, lengths + nlen, ndist);
    if (err < 0 || (err > 0 && ndist - distcode.count[0] != 1)) { s->err = "bad distance code"; return 0; }
    return bd__inf_codes(s, &lencode, &distcode);
}

/* want > 0: decode only until `want` bytes are out (a few more may come:
   the rest of a stored block or of a match), and succeed then. */
static bd_result bd__inflate_run(bd_context *ctx, const void *in, size_t n, size_t max_out, size_t want,
                                 unsigned char **out, size_t *out_size, size_t *consumed) {
    bd__inf s;
    int last, type;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!out || !out_size || (!in && n)) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "inflate: NULL argument");
    *out = NULL; *out_size = 0;
    memset(&s, 0, sizeof s);
    s.ctx = ctx;
    s.in = BD__CAST(const unsigned char *, in);
    s.inlen = n;
    s.max_out = max_out;
    s.want = want;
    do {
        last = bd__inf_bits(&s, 1);
        type = bd__inf_bits(&s, 2);
        if (s.err) break;
        if (type == 0) bd__inf_stored(&s);
        else if (type == 1) bd__inf_fixed(&s);
        else if (type == 2) bd__inf_dynamic(&s);
        else s.err = "invalid block type";
    } while (!last && !s.err);
    if (s.err == bd__inf_enough) s.err = NULL;
    if (s.err) {
        bd_free(ctx, s.out);
        if (s.oom) return BD_ERROR_OUT_OF_MEMORY;
        return bd_error(ctx, BD_ERROR_FORMAT, "deflate: %s", s.err);
    }
    *out = s.out ? s.out : BD__CAST(unsigned char *, bd_alloc(ctx, 1));
    if (!*out) return BD_ERROR_OUT_OF_MEMORY;
    *out_size = s.outcnt;
    if (consumed) *consumed = s.incnt;
    return BD_SUCCESS;
}
BDAPI bd_result bd_inflate(bd_context *ctx, const void *in, size_t n, size_t max_out,
                           unsigned char **out, size_t *out_size, size_t *consumed) {
    return bd__inflate_run(ctx, in, n, max_out, 0, out, out_size, consumed);
}

/* A gzip member's header at b[*pos..n) (RFC 1952); *pos <- its deflate data. */
static bd_result bd__gz_header(bd_context *ctx, const unsigned char *b, size_t n, size_t *pos_io) {
    size_t pos = *pos_io, hs = pos;
    unsigned flg;
    if (n - pos < 18) return bd_error(ctx, BD_ERROR_FORMAT, "gzip: truncated member at byte %zu", pos);
    if (b[pos] != 0x1f || b[pos + 1] != 0x8b) return bd_error(ctx, BD_ERROR_FORMAT, "gzip: bad magic at byte %zu", pos);
    if (b[pos + 2] != 8) return bd_error(ctx, BD_ERROR_UNSUPPORTED, "gzip: compression method %d", b[pos + 2]);
    flg = b[pos + 3];
    if (flg & 0xe0) return bd_error(ctx, BD_ERROR_FORMAT, "gzip: reserved flag bits set");
    pos += 10;
    if (flg & 4) { /* FEXTRA */
        size_t xlen;
        if (n - pos < 2) return bd_error(ctx, BD_ERROR_FORMAT, "gzip: truncated extra field");
        xlen = (size_t)b[pos] | ((size_t)b[pos + 1] << 8);
        pos += 2;
        if (n - pos < xlen) return bd_error(ctx, BD_ERROR_FORMAT, "gzip: truncated extra field");
        pos += xlen;
    }
    if (flg & 8) { /* FNAME */
        while (pos < n && b[pos]) pos++;
        if (pos >= n) return bd_error(ctx, BD_ERROR_FORMAT, "gzip: unterminated file name");
        pos++;
    }
    if (flg & 16) { /* FCOMMENT */
        while (pos < n && b[pos]) pos++;
        if (pos >= n) return bd_error(ctx, BD_ERROR_FORMAT, "gzip: unterminated comment");
        pos++;
    }
    if (flg & 2) { /* FHCRC: low 16 bits of the header's CRC-32 */
        uint32_t c;
        if (n - pos < 2) return bd_error(ctx, BD_ERROR_FORMAT, "gzip: truncated header CRC");
        c = bd_crc32(0, b + hs, pos - hs) & 0xffff;
        if (c != ((uint32_t)b[pos] | ((uint32_t)b[pos + 1] << 8)))
            return bd_error(ctx, BD_ERROR_FORMAT, "gzip: header CRC mismatch");
        pos += 2;
    }
    *pos_io = pos;
    return BD_SUCCESS;
}

BDAPI bd_result bd_gunzip(bd_context *ctx, const void *in, size_t n, size_t max_out,
                          unsigned char **out, size_t *out_size) {
    const unsigned char *b = BD__CAST(const unsigned char *, in);
    size_t pos = 0;
    bd__buf acc;
    bd_result r = BD_SUCCESS;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!out || !out_size || (!in && n)) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "gunzip: NULL argument");
    *out = NULL; *out_size = 0;
    memset(&acc, 0, sizeof acc);
    acc.ctx = ctx;
    do { /* one member per pass */
        size_t used, mlen;
        unsigned char *m;
        r = bd__gz_header(ctx, b, n, &pos);
        if (r != BD_SUCCESS) break;
        r = bd_inflate(ctx, b + pos, n - pos, max_out - acc.n, &m, &mlen, &used);
        if (r != BD_SUCCESS) break;
        pos += used;
        if (n - pos < 8) {
            bd_free(ctx, m);
            r = bd_error(ctx, BD_ERROR_FORMAT, "gzip: truncated trailer");
            break;
        }
        if (bd_crc32(0, m, mlen) != ((uint32_t)b[pos] | ((uint32_t)b[pos + 1] << 8) |
                                     ((uint32_t)b[pos + 2] << 16) | ((uint32_t)b[pos + 3] << 24))) {
            bd_free(ctx, m);
            r = bd_error(ctx, BD_ERROR_FORMAT, "gzip: CRC-32 mismatch (corrupted data)");
            break;
        }
        if ((uint32_t)mlen != ((uint32_t)b[pos + 4] | ((uint32_t)b[pos + 5] << 8) |
                               ((uint32_t)b[pos + 6] << 16) | ((uint32_t)b[pos + 7] << 24))) {
            bd_free(ctx, m);
            r = bd_error(ctx, BD_ERROR_FORMAT, "gzip: length trailer mismatch");
            break;
        }
        pos += 8;
        if (acc.n == 0 && pos == n) { /* the common single-member case: no copy */
            *out = m;
            *out_size = mlen;
            return BD_SUCCESS;
        }
        bd__buf_put(&acc, m, mlen);
        bd_free(ctx, m);
        if (acc.failed) { r = BD_ERROR_OUT_OF_MEMORY; break; }
    } while (pos < n);
    if (r != BD_SUCCESS) {
        bd_free(ctx, acc.p);
        return r;
    }
    if (!acc.p) acc.p = BD__CAST(unsigned char *, bd_alloc(ctx, 1));
    if (!acc.p) return BD_ERROR_OUT_OF_MEMORY;
    *out = acc.p;
    *out_size = acc.n;
    return BD_SUCCESS;
}

/* ---- IDX ---- */
/* Validates an unsigned-byte IDX header (the first bytes of the decoded
   file) with `want_dims` dimensions: dims and the payload size it claims. */
static bd_result bd__idx_header(bd_context *ctx, const unsigned char *b, size_t n, int want_dims,
                                int64_t *dims, size_t *hdr_out, size_t *total_out) {
    size_t hdr, total = 1, span = 1;
    int d;
    if (n < 4) return bd_error(ctx, BD_ERROR_FORMAT, "idx: %zu bytes, no room for the magic number", n);
    if (b[0] != 0 || b[1] != 0) return bd_error(ctx, BD_ERROR_FORMAT, "idx: bad magic (first two bytes must be 0)");
    if (b[2] != 0x08) {
        if (b[2] == 0x09 || b[2] == 0x0B || b[2] == 0x0C || b[2] == 0x0D || b[2] == 0x0E)
            return bd_error(ctx, BD_ERROR_UNSUPPORTED, "idx: element type 0x%02x (only unsigned bytes, 0x08)", b[2]);
        return bd_error(ctx, BD_ERROR_FORMAT, "idx: unknown element type 0x%02x", b[2]);
    }
    if (b[3] != want_dims)
        return bd_error(ctx, BD_ERROR_FORMAT, "idx: %d dimensions, expected %d (%s)", b[3], want_dims,
                        want_dims == 3 ? "images" : "labels");
    hdr = 4 + 4 * (size_t)want_dims;
    if (n < hdr) return bd_error(ctx, BD_ERROR_FORMAT, "idx: truncated header");
    for (d = 0; d < want_dims; d++) {
        dims[d] = (int64_t)bd__rd_be32(b + 4 + 4 * d);
        if (!bd_size_mul(total, (size_t)dims[d], &total))
            return bd_error(ctx, BD_ERROR_FORMAT, "idx: dimensions overflow");
        /* the product of the non-zero dimensions is bounded too: a zero
           dimension must not let 2^32 x 2^32 through (int64 products of
           the dimensions overflowed later; found by fuzz_idx) */
        if (!bd_size_mul(span, dims[d] ? (size_t)dims[d] : 1, &span) || span > BD_IDX_MAX_BYTES)
            return bd_error(ctx, BD_ERROR_FORMAT, "idx: dimensions too large (limit %zu bytes)",
                            (size_t)BD_IDX_MAX_BYTES);
    }
    *hdr_out = hdr;
    *total_out = total;
    return BD_SUCCESS;
}
/* Validates a whole decoded IDX buffer: header, then payload size. */
static bd_result bd__idx_parse(bd_context *ctx, const unsigned char *b, size_t n, int want_dims,
                               int64_t *dims, const unsigned char **payload) {
    size_t hdr = 0, total = 0;
    bd_result r = bd__idx_header(ctx, b, n, want_dims, dims, &hdr, &total);
    if (r != BD_SUCCESS) return r;
    if (n - hdr != total)
        return bd_error(ctx, BD_ERROR_FORMAT, "idx: payload is %zu bytes, dimensions need %zu", n - hdr, total);
    *payload = b + hdr;
    return BD_SUCCESS;
}
/* Header first: the dims from the first bytes (of a gzip file only those
   are decompressed) and the size they claim checked against the input
   before any allocation or decompression of the rest.  Deflate expands at
   most 1032:1, so a gzip file cannot hold more than 1032 times its size. */
static bd_result bd__idx_peek(bd_context *ctx, const void *bytes, size_t size, int want_dims, int64_t *dims,
                              size_t *decoded) {
    const unsigned char *p = BD__CAST(const unsigned char *, bytes);
    size_t hdr = 0, total = 0, pos = 0;
    bd_result r;
    if (!bytes && size) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "idx: NULL bytes");
    if (size >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
        unsigned char head[16];
        size_t hn = 0, want = 4 + 4 * (size_t)want_dims;
        do { /* members until the header is complete (a member may be tiny) */
            unsigned char *m = NULL;
            size_t mn = 0, used = 0, take;
            r = bd__gz_header(ctx, p, size, &pos);
            if (r == BD_SUCCESS)
                r = bd__inflate_run(ctx, p + pos, size - pos, want + 65536 + 258, want - hn, &m, &mn, &used);
            if (r != BD_SUCCESS) return r;
            take = mn < want - hn ? mn : want - hn;
            if (take) memcpy(head + hn, m, take);
            hn += take;
            bd_free(ctx, m);
            pos += used;
            if (hn < want) { /* this member ended: skip its trailer */
                if (size - pos < 8) break;
                pos += 8;
            }
        } while (hn < want && pos < size);
        r = bd__idx_header(ctx, head, hn, want_dims, dims, &hdr, &total);
        if (r != BD_SUCCESS) return r;
        if ((hdr + total) / 1032 > size)
            return bd_error(ctx, BD_ERROR_FORMAT,
                            "idx: the header claims %zu bytes of data but a %zu-byte gzip file cannot hold more "
                            "than %zu (truncated file or forged header)",
                            hdr + total, size, size * 1032);
    } else {
        r = bd__idx_header(ctx, p, size, want_dims, dims, &hdr, &total);
        if (r != BD_SUCCESS) return r;
        if (size - hdr != total)
            return bd_error(ctx, BD_ERROR_FORMAT, "idx: payload is %zu bytes, dimensions need %zu", size - hdr,
                            total);
    }
    *decoded = hdr + total;
    return BD_SUCCESS;
}
/* The decoded bytes (gzip decompressed up to the `decoded` size the header
   claimed, never further); *owned is the buffer to free. */
static bd_result bd__idx_bytes(bd_context *ctx, const void *bytes, size_t size, size_t decoded,
                               const unsigned char **b, size_t *n, unsigned char **owned) {
    const unsigned char *p = BD__CAST(const unsigned char *, bytes);
    *owned = NULL;
    if (size >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
        bd_result r = bd_gunzip(ctx, p, size, decoded, owned, n);
        if (r == BD_ERROR_FORMAT && strstr(ctx->message, "exceeds the limit"))
            return bd_error(ctx, BD_ERROR_FORMAT, "idx: the gzip data is longer than the %zu bytes its header claims",
                            decoded);
        if (r != BD_SUCCESS) return r;
        *b = *owned;
        return BD_SUCCESS;
    }
    *b = p;
    *n = size;
    return BD_SUCCESS;
}

BDAPI bd_result bd_idx_read_images_memory(bd_context *ctx, const void *bytes, size_t size,
                                          bd_tensor *out) {
    const unsigned char *b = NULL, *px = NULL;
    unsigned char *owned = NULL;
    size_t n = 0, i, total, decoded = 0;
    int64_t dims[3] = {0, 0, 0};
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "idx: NULL output");
    memset(out, 0, sizeof *out);
    /* the header, then the output (the caller's allocator may refuse it),
       and only then the rest of the data */
    r = bd__idx_peek(ctx, bytes, size, 3, dims, &decoded);
    if (r == BD_SUCCESS) r = bd_tensor_init(ctx, out, dims[0], 1, dims[1], dims[2]);
    if (r == BD_SUCCESS) r = bd__idx_bytes(ctx, bytes, size, decoded, &b, &n, &owned);
    if (r == BD_SUCCESS) r = bd__idx_parse(ctx, b, n, 3, dims, &px);
    if (r == BD_SUCCESS) {
        total = (size_t)dims[0] * (size_t)dims[1] * (size_t)dims[2];
        for (i = 0; i < total; i++) out->data[i] = (float)px[i] / 127.5f - 1.0f;
    } else {
        bd_tensor_free(ctx, out);
    }
    bd_free(ctx, owned);
    return r;
}

BDAPI bd_result bd_idx_read_labels_memory(bd_context *ctx, const void *bytes, size_t size,
                                          uint8_t **labels, int64_t *count) {
    const unsigned char *b = NULL, *px = NULL;
    unsigned char *owned = NULL;
    size_t n = 0;
    int64_t dims[1] = {0};
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!labels || !count) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "idx: NULL output");
    *labels = NULL; *count = 0;
    r = bd__idx_peek(ctx, bytes, size, 1, dims, &n);
    if (r == BD_SUCCESS) r = bd__idx_bytes(ctx, bytes, size, n, &b, &n, &owned);
    if (r != BD_SUCCESS) return r;
    r = bd__idx_parse(ctx, b, n, 1, dims, &px);
    if (r == BD_SUCCESS) {
        *labels = BD__CAST(uint8_t *, bd_alloc(ctx, (size_t)dims[0]));
        if (!*labels) r = BD_ERROR_OUT_OF_MEMORY;
        else {
            if (dims[0]) memcpy(*labels, px, (size_t)dims[0]);
            *count = dims[0];
        }
    }
    bd_free(ctx, owned);
    return r;
}

BDAPI bd_result bd_idx_read_images(bd_context *ctx, const char *path, bd_tensor *out) {
    unsigned char *buf;
    size_t n;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (out) memset(out, 0, sizeof *out);
    r = bd__read_file(ctx, path, BD_IDX_MAX_BYTES, &buf, &n);
    if (r != BD_SUCCESS) return r;
    r = bd_idx_read_images_memory(ctx, buf, n, out);
    bd_free(ctx, buf);
    return r;
}

BDAPI bd_result bd_idx_read_labels(bd_context *ctx, const char *path, uint8_t **labels,
                                   int64_t *count) {
    unsigned char *buf;
    size_t n;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    r = bd__read_file(ctx, path, BD_IDX_MAX_BYTES, &buf, &n);
    if (r != BD_SUCCESS) return r;
    r = bd_idx_read_labels_memory(ctx, buf, n, labels, count);
    bd_free(ctx, buf);
    return r;
}

/* ---- PNG ---- */
static bd_result bd__png_chunk(bd__afile *af, const char *type, const unsigned char *data,
                               size_t n) {
    unsigned char b[8];
    uint32_t crc;
    bd_result r;
    bd__wr_be32(b, (uint32_t)n);
    memcpy(b + 4, type, 4);
    crc = bd_crc32(0, type, 4);
    crc = bd_crc32(crc, data, n);
    r = bd__afile_write(af, b, 8);
    if (r == BD_SUCCESS) r = bd__afile_write(af, data, n);
    bd__wr_be32(b, crc);
    if (r == BD_SUCCESS) r = bd__afile_write(af, b, 4);
    return r;
}

/* ---- deflate, compressing side: LZ77 over the 32 KiB window with hash
   chains (at most 48 candidates per position) and the fixed Huffman codes
   of RFC 1951 3.2.6, in one block.  Pictures of plots and image grids are
   mostly runs and repeated rows: 20-60x smaller than stored blocks. ---- */
typedef struct bd__bitw {
    unsigned char *p;
    size_t n;
    uint32_t bits;
    int nb;
} bd__bitw;
static void bd__bw_put(bd__bitw *w, uint32_t v, int nbits) { /* LSB first */
    w->bits |= v << w->nb;
    w->nb += nbits;
    while (w->nb >= 8) {
        w->p[w->n++] = (unsigned char)w->bits;
        w->bits >>= 8;
        w->nb -= 8;
    }
}
static void bd__bw_huff(bd__bitw *w, uint32_t code, int len) { /* Huffman codes go MSB first */
    uint32_t r = 0;
    int i;
    for (i = 0; i < len; i++, code >>= 1) r = (r << 1) | (code & 1);
    bd__bw_put(w, r, len);
}
static void bd__bw_lit(bd__bitw *w, int sym) {
    if (sym < 144) bd__bw_huff(w, (uint32_t)(0x30 + sym), 8);
    else if (sym < 256) bd__bw_huff(w, (uint32_t)(0x190 + sym - 144), 9);
    else if (sym < 280) bd__bw_huff(w, (uint32_t)(sym - 256), 7);
    else bd__bw_huff(w, (uint32_t)(0xC0 + sym - 280), 8);
}
static void bd__bw_match(bd__bitw *w, int len, int dist) {
    int ls = 28, ds = 29;
    while (bd__lbase[ls] > len) ls--;
    while (bd__dbase[ds] > dist) ds--;
    bd__bw_lit(w, 257 + ls);
    if (bd__lext[ls]) bd__bw_put(w, (uint32_t)(len - bd__lbase[ls]), bd__lext[ls]);
    bd__bw_huff(w, (uint32_t)ds, 5);
    if (bd__dext[ds]) bd__bw_put(w, (uint32_t)(dist - bd__dbase[ds]), bd__dext[ds]);
}
/* zlib stream (RFC 1950) of in[0..n) into *out (allocated on ctx). */
static bd_result bd__zlib_compress(bd_context *ctx, const unsigned char *in, size_t n, unsigned char **out,
                                   size_t *out_n) {
    enum { WIN = 32768, HBITS = 15, CHAIN = 48 };
    int32_t *head, *prev;
    bd__bitw w;
    size_t cap, i;
    uint32_t adler = bd_adler32(1, in, n);
    /* worst case: a length-3 match may cost 31 bits, a literal 9 */
    if (!bd_size_mul(n, 2, &cap) || !bd_size_add(cap, 64, &cap))
        return bd_error(ctx, BD_ERROR_OVERFLOW, "deflate: input too large");
    w.p = BD__CAST(unsigned char *, bd_alloc(ctx, cap));
    head = BD__CAST(int32_t *, bd_alloc_array(ctx, (size_t)1 << HBITS, sizeof(int32_t)));
    prev = BD__CAST(int32_t *, bd_alloc_array(ctx, WIN, sizeof(int32_t)));
    if (!w.p || !head || !prev) {
        bd_free(ctx, w.p);
        bd_free(ctx, head);
        bd_free(ctx, prev);
        return BD_ERROR_OUT_OF_MEMORY;
    }
    for (i = 0; i < ((size_t)1 << HBITS); i++) head[i] = -1;
    w.n = 0; w.bits = 0; w.nb = 0;
    w.p[w.n++] = 0x78; w.p[w.n++] = 0x01; /* deflate, 32K window, no dictionary */
    bd__bw_put(&w, 1, 1);                 /* BFINAL */
    bd__bw_put(&w, 1, 2);                 /* fixed Huffman codes */
#define BD__ZH(p) ((((uint32_t)(p)[0] << 10) ^ ((uint32_t)(p)[1] << 5) ^ (uint32_t)(p)[2]) & ((1u << HBITS) - 1))
    for (i = 0; i < n;) {
        size_t best = 0, bdist = 0, k;
        if (n - i >= 3 && n <= (size_t)INT32_MAX) {
            uint32_t h = BD__ZH(in + i);
            int32_t cand = head[h];
            size_t maxlen = n - i < 258 ? n - i : 258;
            int chain = CHAIN;
            while (cand >= 0 && i - (size_t)cand <= WIN && chain-- > 0) {
                const unsigned char *a = in + cand, *b = in + i;
                int32_t next;
                if (a[best] == b[best]) {
                    size_t l = 0;
                    while (l < maxlen && a[l] == b[l]) l++;
                    if (l > best) {
                        best = l;
                        bdist = i - (size_t)cand;
                        if (l == maxlen) break;
                    }
                }
                next = prev[cand & (WIN - 1)];
                if (next >= cand) break; /* a slot reused by a newer position */
                cand = next;
            }
        }
        if (best < 3) best = 1;
        if (best >= 3) bd__bw_match(&w, (int)best, (int)bdist);
        else bd__bw_lit(&w, in[i]);
        for (k = 0; k < best; k++, i++) { /* every covered position joins the chains */
            if (n - i >= 3 && n <= (size_t)INT32_MAX) {
                uint32_t h = BD__ZH(in + i);
                prev[i & (WIN - 1)] = head[h];
                head[h] = (int32_t)i;
            }
        }
    }
#undef BD__ZH
    bd__bw_lit(&w, 256);
    if (w.nb) bd__bw_put(&w, 0, 8 - w.nb);
    bd__wr_be32(w.p + w.n, adler);
    w.n += 4;
    bd_free(ctx, head);
    bd_free(ctx, prev);
    *out = w.p;
    *out_n = w.n;
    return BD_SUCCESS;
}

/* pixels (H,W,channels), or palette indices (H,W) with plte (n_plte RGB) */
static bd_result bd__png_write(bd_context *ctx, const char *path, const uint8_t *pixels, int64_t width,
                               int64_t height, int channels, const unsigned char *plte, int n_plte) {
    static const unsigned char ctype[5] = {0, 0, 4, 2, 6};
    size_t row, raw_n, z_n = 0, y, x, done;
    unsigned char *z = NULL, *raw, ihdr[13];
    bd__afile af;
    bd_result r;
    /* raw = height rows of (filter byte + width*channels bytes) */
    if (!bd_size_mul((size_t)width, (size_t)channels, &row) || !bd_size_add(row, 1, &row) ||
        !bd_size_mul(row, (size_t)height, &raw_n) || raw_n > ((size_t)1 << 31))
        return bd_error(ctx, BD_ERROR_OVERFLOW, "png: image too large");
    raw = BD__CAST(unsigned char *, bd_alloc(ctx, raw_n));
    if (!raw) return BD_ERROR_OUT_OF_MEMORY;
    /* per row the filter (None, Sub, Up, Paeth) with the smallest sum of
       absolute residuals, the usual heuristic */
    for (y = 0; y < (size_t)height; y++) {
        const uint8_t *cur = pixels + y * (row - 1), *up = y ? cur - (row - 1) : NULL;
        unsigned char *o = raw + y * row;
        size_t bpp = (size_t)channels, best_sum = (size_t)-1;
        int f, best_f = 0;
        for (f = 0; f < 4; f++) {
            size_t sum = 0;
            if (plte && f != 0 && f != 2) continue; /* indices: None or Up only */
            for (x = 0; x < row - 1; x++) {
                int a = x >= bpp ? cur[x - bpp] : 0, b = up ? up[x] : 0, c = (x >= bpp && up) ? up[x - bpp] : 0, pr;
                if (f == 0) pr = 0;
                else if (f == 1) pr = a;
                else if (f == 2) pr = b;
                else {
                    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
                    pr = (pa <= pb && pa <= pc) ? a : pb <= pc ? b : c;
                }
                {
                    int v = (int)(signed char)(unsigned char)(cur[x] - pr);
                    sum += (size_t)(v < 0 ? -v : v);
                }
            }
            if (sum < best_sum) best_sum = sum, best_f = f;
        }
        o[0] = (unsigned char)(best_f == 3 ? 4 : best_f);
        for (x = 0; x < row - 1; x++) {
            int a = x >= bpp ? cur[x - bpp] : 0, b = up ? up[x] : 0, c = (x >= bpp && up) ? up[x - bpp] : 0, pr;
            if (best_f == 0) pr = 0;
            else if (best_f == 1) pr = a;
            else if (best_f == 2) pr = b;
            else {
                int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
                pr = (pa <= pb && pa <= pc) ? a : pb <= pc ? b : c;
            }
            o[1 + x] = (unsigned char)(cur[x] - pr);
        }
    }
    r = bd__zlib_compress(ctx, raw, raw_n, &z, &z_n);
    bd_free(ctx, raw);
    if (r != BD_SUCCESS) return r;
    bd__wr_be32(ihdr, (uint32_t)width);
    bd__wr_be32(ihdr + 4, (uint32_t)height);
    ihdr[8] = 8; ihdr[9] = plte ? 3 : ctype[channels]; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
    r = bd__afile_open(ctx, &af, path);
    if (r == BD_SUCCESS) r = bd__afile_write(&af, "\x89PNG\r\n\x1a\n", 8);
    if (r == BD_SUCCESS) r = bd__png_chunk(&af, "IHDR", ihdr, 13);
    if (r == BD_SUCCESS && plte) r = bd__png_chunk(&af, "PLTE", plte, (size_t)n_plte * 3);
    for (done = 0; r == BD_SUCCESS && done < z_n;) {
        size_t len = z_n - done < ((size_t)1 << 20) ? z_n - done : ((size_t)1 << 20);
        r = bd__png_chunk(&af, "IDAT", z + done, len);
        done += len;
    }
    if (r == BD_SUCCESS) r = bd__png_chunk(&af, "IEND", ihdr, 0);
    if (r == BD_SUCCESS) r = bd__afile_commit(&af);
    bd_free(ctx, z);
    return r;
}

BDAPI bd_result bd_png_write_u8(bd_context *ctx, const char *path, const uint8_t *pixels,
                                int64_t width, int64_t height, int channels) {
    size_t npx, i;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!pixels || width < 1 || height < 1 || width > 0x7fffffff || height > 0x7fffffff ||
        channels < 1 || channels > 4)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "png: bad image (%lld x %lld x %d)",
                        (long long)width, (long long)height, channels);
    if (channels == 3 && bd_size_mul((size_t)width, (size_t)height, &npx) && npx <= ((size_t)1 << 28)) {
        /* at most 256 distinct colours (plots, labelled grey grids): an
           indexed PNG, a third of the data before compression */
        enum { HS = 1024 };
        uint32_t keys[HS];
        unsigned char plte[256 * 3], *idx;
        short slot[HS];
        int n_plte = 0;
        bd_result r;
        for (i = 0; i < HS; i++) slot[i] = -1;
        for (i = 0; i < npx && n_plte <= 256; i++) {
            uint32_t key = ((uint32_t)pixels[3 * i] << 16) | ((uint32_t)pixels[3 * i + 1] << 8) | pixels[3 * i + 2];
            uint32_t h = (key * 2654435761u) >> 22;
            while (slot[h] >= 0 && keys[h] != key) h = (h + 1) & (HS - 1);
            if (slot[h] < 0) {
                if (n_plte == 256) { n_plte = 257; break; }
                keys[h] = key;
                slot[h] = (short)n_plte;
                memcpy(plte + 3 * n_plte, pixels + 3 * i, 3);
                n_plte++;
            }
        }
        if (n_plte <= 256) {
            idx = BD__CAST(unsigned char *, bd_alloc(ctx, npx));
            if (!idx) return BD_ERROR_OUT_OF_MEMORY;
            for (i = 0; i < npx; i++) {
                uint32_t key = ((uint32_t)pixels[3 * i] << 16) | ((uint32_t)pixels[3 * i + 1] << 8) | pixels[3 * i + 2];
                uint32_t h = (key * 2654435761u) >> 22;
                while (keys[h] != key) h = (h + 1) & (HS - 1);
                idx[i] = (unsigned char)slot[h];
            }
            r = bd__png_write(ctx, path, idx, width, height, 1, plte, n_plte);
            bd_free(ctx, idx);
            return r;
        }
    }
    return bd__png_write(ctx, path, pixels, width, height, channels, NULL, 0);
}

static uint8_t bd__to_u8(float v) {
    float s = (v + 1.0f) * 127.5f + 0.5f;
    if (!(s > 0.0f)) return 0; /* also NaN */
    if (s >= 255.0f) return 255;
    return (uint8_t)s;
}

BDAPI bd_result bd_png_write(bd_context *ctx, const char *path, const float *img, int64_t c,
                             int64_t h, int64_t w) {
    uint8_t *px;
    size_t hw, total, i;
    int64_t ch;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!img || (c != 1 && c != 3) || h < 1 || w < 1)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "png: need a (1 or 3, H, W) image");
    if (!bd_size_mul((size_t)h, (size_t)w, &hw) || !bd_size_mul(hw, (size_t)c, &total))
        return bd_error(ctx, BD_ERROR_OVERFLOW, "png: image too large");
    px = BD__CAST(uint8_t *, bd_alloc(ctx, total));
    if (!px) return BD_ERROR_OUT_OF_MEMORY;
    for (ch = 0; ch < c; ch++)
        for (i = 0; i < hw; i++) px[i * (size_t)c + (size_t)ch] = bd__to_u8(img[(size_t)ch * hw + i]);
    r = bd_png_write_u8(ctx, path, px, w, h, (int)c);
    bd_free(ctx, px);
    return r;
}

BDAPI void bd_image_grid(float *out, int64_t *out_h, int64_t *out_w, const float *x, int64_t n,
                         int64_t c, int64_t h, int64_t w, int64_t cols, int64_t pad,
                         float pad_value) {
    int64_t rows, gh, gw, i, ch, yy;
    if (n < 1) n = 1;
    if (pad < 0) pad = 0;
    if (cols <= 0) {
        cols = (int64_t)ceil(sqrt((double)n));
        if (cols < 1) cols = 1;
    }
    if (cols > n) cols = n;
    rows = (n + cols - 1) / cols;
    gh = rows * (h + pad) + pad;
    gw = cols * (w + pad) + pad;
    if (out_h) *out_h = gh;
    if (out_w) *out_w = gw;
    if (!out || !x) return;
    for (i = 0; i < c * gh * gw; i++) out[i] = pad_value;
    for (i = 0; i < n; i++) {
        int64_t oy = pad + (i / cols) * (h + pad), ox = pad + (i % cols) * (w + pad);
        for (ch = 0; ch < c; ch++)
            for (yy = 0; yy < h; yy++)
                memcpy(out + (ch * gh + oy + yy) * gw + ox, x + ((i * c + ch) * h + yy) * w,
                       (size_t)w * sizeof(float));
    }
}

BDAPI bd_result bd_png_write_grid(bd_context *ctx, const char *path, const float *x, int64_t n,
                                  int64_t c, int64_t h, int64_t w, int64_t cols, int64_t pad) {
    int64_t gh, gw;
    float *g;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!x || n < 1 || (c != 1 && c != 3) || h < 1 || w < 1 || pad < 0 || pad > 64 ||
        n > ((int64_t)1 << 24) || h > 65536 || w > 65536)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "png grid: bad arguments (n %lld, c %lld, %lld x %lld)",
                        (long long)n, (long long)c, (long long)h, (long long)w);
    bd_image_grid(NULL, &gh, &gw, x, n, c, h, w, cols, pad, 0.0f);
    if (gh > 0x7fffffff / (gw > 0 ? gw : 1))
        return bd_error(ctx, BD_ERROR_OVERFLOW, "png grid: image too large");
    g = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(c * gh * gw), sizeof(float)));
    if (!g) return ctx->last_result;
    bd_image_grid(g, &gh, &gw, x, n, c, h, w, cols, pad, 0.0f);
    r = bd_png_write(ctx, path, g, c, gh, gw);
    bd_free(ctx, g);
    return r;
}

/* ---- text, line plot ---- */
/* 5x7 glyphs of printable ASCII (32..126), one byte per row, bit 4 = the
   leftmost pixel (the HD44780 character set's shapes). */
static const unsigned char bd__font5x7[95][7] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x04, 0x04, 0x04, 0x04, 0x00, 0x00, 0x04}, {0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00}, /* space ! " */
    {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}, {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04}, {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}, /* # $ % */
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D}, {0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00}, {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}, /* & ' ( */
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}, {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00}, {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}, /* ) * + */
    {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}, {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}, /* , - . */
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}, {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}, {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}, /* / 0 1 */
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}, {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}, {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}, /* 2 3 4 */
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}, {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}, /* 5 6 7 */
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}, {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}, {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}, /* 8 9 : */
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08}, {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}, {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}, /* ; < = */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}, {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}, {0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E}, /* > ? @ */
    {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11}, {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}, {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}, /* A B C */
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}, {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}, {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}, /* D E F */
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}, {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}, {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}, /* G H I */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}, {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}, {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}, /* J K L */
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}, {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}, {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}, /* M N O */
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}, {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}, {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}, /* P Q R */
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}, {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}, /* S T U */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}, {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}, {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}, /* V W X */
    {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}, {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E}, /* Y Z [ */
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00}, {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E}, {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00}, /* backslash ] ^ */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}, {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F}, /* _ ` a */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}, {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}, {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}, /* b c d */
    {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}, {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}, {0x00, 0x00, 0x0F, 0x11, 0x0F, 0x01, 0x0E}, /* e f g */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}, {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E}, {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C}, /* h i j */
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}, {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}, {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11}, /* k l m */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}, {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E}, {0x00, 0x00, 0x1E, 0x11, 0x11, 0x1E, 0x10}, /* n o p */
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01}, {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}, {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E}, /* q r s */
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}, {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D}, {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}, /* t u v */
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A}, {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}, {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E}, /* w x y */
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}, {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02}, {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, /* z { | */
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08}, {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00}, /* } ~ */
};
typedef struct bd__canvas {
    uint8_t *px; /* (H,W,ch) */
    int64_t w, h;
    int ch;                 /* 1 (grey) or 3 (RGB) */
    int64_t x0, y0, x1, y1; /* clip rectangle, inclusive */
    uint8_t *cov;           /* (H,W) or NULL: lines record coverage 0..255 here */
} bd__canvas;
/* a line's coverage of a pixel: kept as the maximum over the strokes (so
   the series is composited once, bd__cov_flush) */
static void bd__cover(bd__canvas *cv, int64_t x, int64_t y, double a) {
    uint8_t *p, v;
    if (x < cv->x0 || x > cv->x1 || y < cv->y0 || y > cv->y1 || !(a > 0)) return;
    if (a > 1) a = 1;
    p = cv->cov + y * cv->w + x;
    v = (uint8_t)(a * 255 + 0.5);
    if (v > *p) *p = v;
}
static void bd__blend(bd__canvas *cv, int64_t x, int64_t y, const uint8_t *rgb, double a) {
    uint8_t *p;
    int k;
    if (x < cv->x0 || x > cv->x1 || y < cv->y0 || y > cv->y1 || !(a > 0)) return;
    if (a > 1) a = 1;
    p = cv->px + (y * cv->w + x) * cv->ch;
    if (cv->ch == 1) {
        double g = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
        p[0] = (uint8_t)(p[0] * (1 - a) + g * a + 0.5);
        return;
    }
    for (k = 0; k < 3; k++) p[k] = (uint8_t)(p[k] * (1 - a) + rgb[k] * a + 0.5);
}
static void bd__fill(bd__canvas *cv, int64_t xa, int64_t ya, int64_t xb, int64_t yb, const uint8_t *rgb) {
    int64_t x, y;
    for (y = ya; y <= yb; y++)
        for (x = xa; x <= xb; x++) bd__blend(cv, x, y, rgb, 1.0);
}
/* Xiaolin Wu's anti-aliased line, drawn twice one pixel apart (2 px wide). */
static void bd__line(bd__canvas *cv, double xa, double ya, double xb, double yb, const uint8_t *rgb) {
    int steep = fabs(yb - ya) > fabs(xb - xa);
    double t, grad, x, dx, dy;
    int pass;
    if (steep) { t = xa; xa = ya; ya = t; t = xb; xb = yb; yb = t; }
    if (xa > xb) { t = xa; xa = xb; xb = t; t = ya; ya = yb; yb = t; }
    dx = xb - xa; dy = yb - ya;
    grad = dx < 1e-12 ? 0.0 : dy / dx;
    /* coordinates come from finite data inside the box; refuse anything else
       (a float-to-integer conversion of NaN or 1e300 is undefined) */
    if (!(fabs(xa) < 1e6 && fabs(xb) < 1e6 && fabs(ya) < 1e6 && fabs(yb) < 1e6)) return;
    for (pass = 0; pass < 2; pass++) {
        double off = pass ? 0.5 : -0.5;
        for (x = floor(xa); x <= ceil(xb); x += 1.0) {
            double yy = ya + grad * (x - xa) + off, fl = floor(yy), fr = yy - fl;
            double cover = 1.0;
            if (x < xa) cover = 1.0 - (xa - x);
            if (x > xb) cover = 1.0 - (x - xb);
            if (cover <= 0) continue;
            if (cv->cov) {
                if (steep) {
                    bd__cover(cv, (int64_t)fl, (int64_t)x, (1 - fr) * cover);
                    bd__cover(cv, (int64_t)fl + 1, (int64_t)x, fr * cover);
                } else {
                    bd__cover(cv, (int64_t)x, (int64_t)fl, (1 - fr) * cover);
                    bd__cover(cv, (int64_t)x, (int64_t)fl + 1, fr * cover);
                }
            } else if (steep) {
                bd__blend(cv, (int64_t)fl, (int64_t)x, rgb, (1 - fr) * cover * 0.8);
                bd__blend(cv, (int64_t)fl + 1, (int64_t)x, rgb, fr * cover * 0.8);
            } else {
                bd__blend(cv, (int64_t)x, (int64_t)fl, rgb, (1 - fr) * cover * 0.8);
                bd__blend(cv, (int64_t)x, (int64_t)fl + 1, rgb, fr * cover * 0.8);
            }
        }
    }
}
/* composite the recorded coverage in rgb, in 4 opacity levels (few
   distinct colours: plots fit an indexed PNG), and clear it */
static void bd__cov_flush(bd__canvas *cv, const uint8_t *rgb) {
    int64_t x, y;
    for (y = cv->y0; y <= cv->y1; y++)
        for (x = cv->x0; x <= cv->x1; x++) {
            uint8_t *p = cv->cov + y * cv->w + x;
            if (*p) {
                int level = (*p * 4 + 127) / 255; /* 0..4 */
                if (level) bd__blend(cv, x, y, rgb, level * 0.22);
                *p = 0;
            }
        }
}
/* width in pixels of s at `scale` (6 px per character, the last column blank) */
static int64_t bd__text_w(const char *s, int scale) {
    size_t n = s ? strlen(s) : 0;
    return n ? (int64_t)n * 6 * scale - scale : 0;
}
/* s with its top-left corner at (x, y); rot = 1: turned 90 degrees
   counter-clockwise (reading upwards), (x, y) then the bottom-left corner.
   Characters outside printable ASCII draw as '?'. */
static void bd__text_ink(bd__canvas *cv, int64_t x, int64_t y, const char *s, int scale, int rot, const uint8_t *ink) {
    int64_t k = 0;
    for (; s && *s; s++, k++) {
        int g = (unsigned char)*s, r, c, sy, sx;
        if (g < 32 || g > 126) g = '?';
        g -= 32;
        for (r = 0; r < 7; r++)
            for (c = 0; c < 5; c++)
                if (bd__font5x7[g][r] & (0x10 >> c))
                    for (sy = 0; sy < scale; sy++)
                        for (sx = 0; sx < scale; sx++) {
                            int64_t u = k * 6 * scale + c * scale + sx, v = r * scale + sy;
                            if (rot) bd__blend(cv, x + v, y - u, ink, 1.0);
                            else bd__blend(cv, x + u, y + v, ink, 1.0);
                        }
    }
}
static void bd__text(bd__canvas *cv, int64_t x, int64_t y, const char *s, int scale) {
    static const uint8_t ink[3] = {40, 40, 40};
    bd__text_ink(cv, x, y, s, scale, 0, ink);
}
/* ticks at multiples of a 1-2-5 step covering [lo, hi]; returns count */
static int bd__ticks(double lo, double hi, double *ticks, int max, double *step_out) {
    double raw = (hi - lo) / 5.0, mag, step, v;
    int n = 0;
    if (!(raw > 0)) raw = 1;
    mag = pow(10.0, floor(log10(raw)));
    step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
    for (v = ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9 && n < max; v += step)
        ticks[n++] = fabs(v) < step * 1e-9 ? 0.0 : v;
    *step_out = step;
    return n;
}
static void bd__fmt(char *buf, size_t n, double v) {
    if (fabs(v) >= 1 && fabs(v) < 1e7 && v == floor(v)) snprintf(buf, n, "%.0f", v); /* 20000, not 2e+04 */
    else snprintf(buf, n, "%.4g", v);
}

BDAPI bd_plot_config bd_plot_config_init(void) {
    bd_plot_config c;
    memset(&c, 0, sizeof c);
    c.width = 640;
    c.height = 400;
    c.log_y = 0;
    return c;
}

BDAPI bd_result bd_plot_png(bd_context *ctx, const char *path, const bd_plot_config *cfg,
                            const bd_plot_series *series, int64_t n_series) {
    static const uint8_t pal[10][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
                                       {148, 103, 189}, {140, 86, 75}, {227, 119, 194},
                                       {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
    static const uint8_t gridc[3] = {226, 226, 226}, axisc[3] = {90, 90, 90}, white[3] = {255, 255, 255};
    static const uint8_t ink[3] = {40, 40, 40};
    double xlo = HUGE_VAL, xhi = -HUGE_VAL, ylo = HUGE_VAL, yhi = -HUGE_VAL, xt[32], yt[32], st;
    int64_t s, i, W, H, left, right = 14, top = 10, bottom, maxlab = 1, n_named = 0, legend_w = 0;
    int nxt, nyt, k, scale;
    char lab[32];
    bd__canvas cv;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!cfg || cfg->width < 64 || cfg->height < 64 || cfg->width > 16384 || cfg->height > 16384 ||
        n_series < 0 || (n_series > 0 && !series))
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "plot: bad configuration or series");
    W = cfg->width; H = cfg->height;
    scale = H >= 800 ? 2 : 1;
    for (s = 0; s < n_series; s++) {
        if (series[s].n < 0 || (series[s].n > 0 && !series[s].y))
            return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "plot: series %lld has no y values", (long long)s);
        if (cfg->legend && cfg->legend[s] && cfg->legend[s][0]) {
            int64_t lw = bd__text_w(cfg->legend[s], scale);
            n_named++;
            if (lw > legend_w) legend_w = lw;
        }
        for (i = 0; i < series[s].n; i++) {
            double xv = series[s].x ? series[s].x[i] : (double)i, yv = series[s].y[i];
            if (cfg->log_y) yv = yv > 0 ? log10(yv) : HUGE_VAL;
            if (!isfinite(xv) || !isfinite(yv)) continue;
            if (xv < xlo) xlo = xv;
            if (xv > xhi) xhi = xv;
            if (yv < ylo) ylo = yv;
            if (yv > yhi) yhi = yv;
        }
    }
    if (xlo > xhi) { xlo = 0; xhi = 1; }
    if (ylo > yhi) { ylo = 0; yhi = 1; }
    /* a flat range (or one beyond double precision) is widened around it */
    if (!(xhi - xlo >= 1e-9 * (fabs(xlo) + fabs(xhi) + 1e-300)) || !isfinite(xhi - xlo)) {
        double d = 1e-3 * fabs(xlo) + 0.5;
        if (!isfinite(xhi - xlo)) { xlo = -DBL_MAX / 4; xhi = DBL_MAX / 4; }
        else { xlo -= d; xhi += d; }
    }
    if (!(yhi - ylo >= 1e-9 * (fabs(ylo) + fabs(yhi) + 1e-300)) || !isfinite(yhi - ylo)) {
        double d = 1e-3 * fabs(ylo) + 0.5;
        if (!isfinite(yhi - ylo)) { ylo = -DBL_MAX / 4; yhi = DBL_MAX / 4; }
        else { ylo -= d; yhi += d; }
    }
    { /* a little headroom on y */
        double m = 0.04 * (yhi - ylo);
        ylo -= m; yhi += m;
    }
    nxt = bd__ticks(xlo, xhi, xt, 32, &st);
    nyt = bd__ticks(ylo, yhi, yt, 32, &st);
    if (cfg->log_y && st < 1) {
        if (yhi - ylo >= 4.0) { /* decades */
            nyt = bd__ticks(floor(ylo), ceil(yhi), yt, 32, &st);
            if (st < 1) nyt = bd__ticks(floor(ylo), ceil(yhi), yt, 32, &st);
        } else if (yhi - ylo >= 1.0) { /* 1, 2, 5 times the powers of ten */
            double e;
            nyt = 0;
            for (e = floor(ylo); e <= ceil(yhi) && nyt < 30; e += 1.0) {
                static const double m[3] = {1, 2, 5};
                for (k = 0; k < 3; k++) {
                    double v = e + log10(m[k]);
                    if (v >= ylo && v <= yhi && (yhi - ylo < 2.0 || k != 1)) yt[nyt++] = v;
                }
            }
        } else { /* less than a decade: round values, placed on the log scale */
            double lt[32], lst;
            int nl = bd__ticks(pow(10.0, ylo), pow(10.0, yhi), lt, 32, &lst);
            nyt = 0;
            for (k = 0; k < nl; k++)
                if (lt[k] > 0) yt[nyt++] = log10(lt[k]);
        }
    }
    for (k = 0; k < nyt; k++) {
        int64_t len;
        bd__fmt(lab, sizeof lab, cfg->log_y ? pow(10.0, yt[k]) : yt[k]);
        len = (int64_t)strlen(lab);
        if (len > maxlab) maxlab = len;
    }
    left = 10 + maxlab * 6 * scale;
    bottom = 8 + 10 * scale;
    if (cfg->title && cfg->title[0]) top += 14 * scale + 8;
    if (cfg->y_label && cfg->y_label[0]) left += 7 * scale + 8;
    if (cfg->x_label && cfg->x_label[0]) bottom += 7 * scale + 8;
    if (left + right + 16 > W || top + bottom + 16 > H)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "plot: image too small for the axes");
    cv.w = W; cv.h = H; cv.ch = 3; cv.cov = NULL;
    cv.px = BD__CAST(uint8_t *, bd_alloc_array(ctx, (size_t)(W * H), 3));
    if (!cv.px) return ctx->last_result;
    memset(cv.px, 255, (size_t)(W * H * 3));
    {
        int64_t ax0 = left, ax1 = W - right, ay0 = top, ay1 = H - bottom; /* plot box */
        double sx = (double)(ax1 - ax0) / (xhi - xlo), sy = (double)(ay1 - ay0) / (yhi - ylo);
        cv.x0 = 0; cv.y0 = 0; cv.x1 = W - 1; cv.y1 = H - 1;
        if (cfg->title && cfg->title[0]) /* centred over the box, 2x */
            bd__text_ink(&cv, ax0 + (ax1 - ax0 - bd__text_w(cfg->title, 2 * scale)) / 2, 8, cfg->title, 2 * scale, 0,
                         ink);
        if (cfg->x_label && cfg->x_label[0])
            bd__text_ink(&cv, ax0 + (ax1 - ax0 - bd__text_w(cfg->x_label, scale)) / 2, H - 4 - 7 * scale,
                         cfg->x_label, scale, 0, ink);
        if (cfg->y_label && cfg->y_label[0])
            bd__text_ink(&cv, 6, ay0 + (ay1 - ay0 + bd__text_w(cfg->y_label, scale)) / 2, cfg->y_label, scale, 1,
                         ink);
        for (k = 0; k < nxt; k++) { /* vertical grid + labels */
            int64_t gx = ax0 + (int64_t)floor((xt[k] - xlo) * sx + 0.5), yy, len;
            if (gx < ax0 || gx > ax1) continue;
            for (yy = ay0; yy <= ay1; yy++) bd__blend(&cv, gx, yy, gridc, 1.0);
            bd__fmt(lab, sizeof lab, xt[k]);
            len = (int64_t)strlen(lab);
            bd__text(&cv, gx - len * 3 * scale, ay1 + 5, lab, scale);
        }
        for (k = 0; k < nyt; k++) { /* horizontal grid + labels */
            int64_t gy = ay1 - (int64_t)floor((yt[k] - ylo) * sy + 0.5), xx, len;
            if (gy < ay0 || gy > ay1) continue;
            for (xx = ax0; xx <= ax1; xx++) bd__blend(&cv, xx, gy, gridc, 1.0);
            bd__fmt(lab, sizeof lab, cfg->log_y ? pow(10.0, yt[k]) : yt[k]);
            len = (int64_t)strlen(lab);
            bd__text(&cv, ax0 - 5 - len * 6 * scale, gy - 3 * scale, lab, scale);
        }
        for (i = ax0; i <= ax1; i++) { bd__blend(&cv, i, ay0, axisc, 1.0); bd__blend(&cv, i, ay1, axisc, 1.0); }
        for (i = ay0; i <= ay1; i++) { bd__blend(&cv, ax0, i, axisc, 1.0); bd__blend(&cv, ax1, i, axisc, 1.0); }
        cv.x0 = ax0 + 1; cv.x1 = ax1 - 1; cv.y0 = ay0 + 1; cv.y1 = ay1 - 1;
        cv.cov = BD__CAST(uint8_t *, bd_alloc_array(ctx, (size_t)W, (size_t)H));
        if (cv.cov) memset(cv.cov, 0, (size_t)(W * H)); /* else: plain blending */
        for (s = 0; s < n_series; s++) {
            int have = 0;
            double px0 = 0, py0 = 0;
            for (i = 0; i < series[s].n; i++) {
                double xv = series[s].x ? series[s].x[i] : (double)i, yv = series[s].y[i], px, py;
                if (cfg->log_y) yv = yv > 0 ? log10(yv) : HUGE_VAL;
                if (!isfinite(xv) || !isfinite(yv)) { have = 0; continue; }
                px = ax0 + (xv - xlo) * sx;
                py = ay1 - (yv - ylo) * sy;
                if (have) bd__line(&cv, px0, py0, px, py, pal[s % 10]);
                else if (series[s].n == 1) bd__line(&cv, px - 1, py, px + 1, py, pal[s % 10]);
                px0 = px; py0 = py; have = 1;
            }
            if (cv.cov) bd__cov_flush(&cv, pal[s % 10]);
        }
        bd_free(ctx, cv.cov);
        cv.cov = NULL;
        if (n_named > 0) { /* legend: top right inside the box, one row per named series */
            int64_t row = 11 * scale, bw = 10 + 22 * scale + legend_w, bh = 8 + row * n_named;
            int64_t bx1 = ax1 - 6, bx0 = bx1 - bw, by0 = ay0 + 6, yy = by0 + 5;
            if (bx0 > ax0 + 4 && by0 + bh < ay1 - 4) {
                bd__fill(&cv, bx0, by0, bx1, by0 + bh, white);
                for (i = bx0; i <= bx1; i++) { bd__blend(&cv, i, by0, axisc, 1.0); bd__blend(&cv, i, by0 + bh, axisc, 1.0); }
                for (i = by0; i <= by0 + bh; i++) { bd__blend(&cv, bx0, i, axisc, 1.0); bd__blend(&cv, bx1, i, axisc, 1.0); }
                for (s = 0; s < n_series; s++) {
                    if (!cfg->legend[s] || !cfg->legend[s][0]) continue;
                    bd__line(&cv, bx0 + 5, yy + 3.5 * scale, bx0 + 5 + 16 * scale, yy + 3.5 * scale, pal[s % 10]);
                    bd__text_ink(&cv, bx0 + 9 + 18 * scale, yy, cfg->legend[s], scale, 0, ink);
                    yy += row;
                }
            }
        }
    }
    r = bd_png_write_u8(ctx, path, cv.px, W, H, 3);
    bd_free(ctx, cv.px);
    return r;
}

/* ---- labelled image grid ---- */
BDAPI bd_result bd_png_write_grid_labeled(bd_context *ctx, const char *path, const float *x, int64_t n,
                                          int64_t c, int64_t h, int64_t w, int64_t cols, int64_t zoom,
                                          const char *title, const char *const *row_labels, int64_t n_labels) {
    static const uint8_t ink[3] = {20, 20, 20};
    int64_t gh, gw, lw = 0, th = 0, W, H, rows, r_, yy, xx, ch;
    int scale = 1;
    float *g;
    bd__canvas cv;
    bd_result r;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!x || n < 1 || (c != 1 && c != 3) || h < 1 || w < 1 || zoom < 1 || zoom > 64 || n_labels < 0 ||
        (n_labels > 0 && !row_labels) || n > ((int64_t)1 << 24) || h > 65536 || w > 65536)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT,
                        "png grid: bad arguments (n %lld, c %lld, %lld x %lld, zoom %lld, %lld labels)",
                        (long long)n, (long long)c, (long long)h, (long long)w, (long long)zoom, (long long)n_labels);
    bd_image_grid(NULL, &gh, &gw, x, n, c, h, w, cols, 1, 0.0f);
    rows = (gh - 1) / (h + 1);
    if (gh > 65536 / zoom || gw > 65536 / zoom) return bd_error(ctx, BD_ERROR_OVERFLOW, "png grid: image too large");
    if (h * zoom >= 40) scale = 2;
    for (r_ = 0; r_ < n_labels && r_ < rows; r_++)
        if (row_labels[r_] && bd__text_w(row_labels[r_], scale) > lw) lw = bd__text_w(row_labels[r_], scale);
    if (lw > 0) lw += 12;
    if (title && title[0]) th = 7 * scale + 10;
    W = lw + gw * zoom;
    H = th + gh * zoom;
    if (title && title[0] && bd__text_w(title, scale) + 12 > W) W = bd__text_w(title, scale) + 12;
    g = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(c * gh * gw), sizeof(float)));
    if (!g) return ctx->last_result;
    cv.w = W; cv.h = H; cv.ch = (int)c; cv.cov = NULL;
    cv.px = BD__CAST(uint8_t *, bd_alloc_array(ctx, (size_t)(W * H), (size_t)c));
    if (!cv.px) {
        bd_free(ctx, g);
        return ctx->last_result;
    }
    bd_image_grid(g, &gh, &gw, x, n, c, h, w, cols, 1, 0.0f);
    memset(cv.px, 255, (size_t)(W * H * c));
    for (yy = 0; yy < gh * zoom; yy++)
        for (xx = 0; xx < gw * zoom; xx++)
            for (ch = 0; ch < c; ch++)
                cv.px[((th + yy) * W + lw + xx) * c + ch] = bd__to_u8(g[(ch * gh + yy / zoom) * gw + xx / zoom]);
    bd_free(ctx, g);
    cv.x0 = 0; cv.y0 = 0; cv.x1 = W - 1; cv.y1 = H - 1;
    if (th) bd__text_ink(&cv, 6, 5, title, scale, 0, ink);
    for (r_ = 0; r_ < n_labels && r_ < rows; r_++) /* right-aligned, centred on its row */
        if (row_labels[r_])
            bd__text_ink(&cv, lw - 6 - bd__text_w(row_labels[r_], scale),
                         th + (1 + r_ * (h + 1)) * zoom + (h * zoom - 7 * scale) / 2, row_labels[r_], scale, 0, ink);
    r = bd_png_write_u8(ctx, path, cv.px, W, H, (int)c);
    bd_free(ctx, cv.px);
    return r;
}

/* ---- CSV ---- */
BDAPI bd_result bd_csv_write(bd_context *ctx, const char *path, const char *const *names,
                             const double *const *columns, int64_t n_cols, int64_t n_rows) {
    bd__buf b;
    bd__afile af;
    bd_result r;
    int64_t i, j;
    char num[40];
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (n_cols < 1 || n_rows < 0 || !names || !columns)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "csv: need names and columns");
    for (j = 0; j < n_cols; j++)
        if (!names[j] || (n_rows > 0 && !columns[j]) || strpbrk(names[j], ",\"\n\r"))
            return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "csv: column %lld has a NULL or unquotable name or NULL data",
                            (long long)j);
    memset(&b, 0, sizeof b);
    b.ctx = ctx;
    for (j = 0; j < n_cols; j++) {
        if (j) bd__buf_put(&b, ",", 1);
        bd__buf_str(&b, names[j]);
    }
    bd__buf_put(&b, "\n", 1);
    for (i = 0; i < n_rows && !b.failed; i++) {
        for (j = 0; j < n_cols; j++) {
            if (j) bd__buf_put(&b, ",", 1);
            snprintf(num, sizeof num, "%.9g", columns[j][i]);
            bd__buf_str(&b, num);
        }
        bd__buf_put(&b, "\n", 1);
    }
    if (b.failed) { bd_free(ctx, b.p); return bd_error(ctx, BD_ERROR_OUT_OF_MEMORY, "csv: out of memory"); }
    r = bd__afile_open(ctx, &af, path);
    if (r == BD_SUCCESS) r = bd__afile_write(&af, b.p, b.n);
    if (r == BD_SUCCESS) r = bd__afile_commit(&af);
    bd_free(ctx, b.p);
    return r;
}

/* ---- built-in shapes ---- */
/* Signed distances (negative inside), in pixels. */
static double bd__sd_box(double px, double py, double b) {
    double dx = fabs(px) - b, dy = fabs(py) - b;
    double ox = dx > 0 ? dx : 0, oy = dy > 0 ? dy : 0, in = dx > dy ? dx : dy;
    return sqrt(ox * ox + oy * oy) + (in < 0 ? in : 0);
}
static double bd__sd_tri(double px, double py, double r) { /* equilateral, half side r */
    const double k = 1.7320508075688772;
    double qx, qy, c;
    px = fabs(px) - r;
    py = py + r / k;
    if (px + k * py > 0) {
        qx = (px - k * py) / 2; qy = (-k * px - py) / 2;
        px = qx; py = qy;
    }
    c = px < -2 * r ? -2 * r : px > 0 ? 0 : px;
    px -= c;
    return -sqrt(px * px + py * py) * (py > 0 ? 1.0 : py < 0 ? -1.0 : 0.0);
}

BDAPI bd_result bd_builtin_shapes_ex(bd_context *ctx, float *out, uint8_t *labels,
                                     int64_t first, int64_t n, int64_t size, uint64_t seed) {
    int64_t i, x, y;
    if (!out || n < 0 || first < 0 || n > INT64_MAX - first || size < 8 || size > 1024)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "builtin shapes: need out, n >= 0, first >= 0, first + n in range, 8 <= size <= 1024");
    for (i = 0; i < n; i++) {
        bd_rng rng = bd_rng_init(seed ^ ((uint64_t)(first + i) + 1) * 0xD1B54A32D192ED03ull);
        double S = (double)size;
        int kind = (int)(bd_rng_u64(&rng) % 4);
        double cx = S * (0.3 + 0.4 * bd_rng_uniform(&rng));
        double cy = S * (0.3 + 0.4 * bd_rng_uniform(&rng));
        double R = S * (0.16 + 0.16 * bd_rng_uniform(&rng));
        double th = 2 * BD__PI * bd_rng_uniform(&rng), cs = cos(th), sn = sin(th);
        double inten = 0.45 + 0.55 * bd_rng_uniform(&rng);
        double ringw = R * (0.22 + 0.2 * bd_rng_uniform(&rng));
        float *o = out + i * size * size;
        if (labels) labels[i] = (uint8_t)kind;
        for (y = 0; y < size; y++) {
            for (x = 0; x < size; x++) {
                double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
                double u = cs * dx + sn * dy, v = -sn * dx + cs * dy, d, cov;
                switch (kind) {
                case 0: d = sqrt(u * u + v * v) - R; break;
                case 1: d = bd__sd_box(u, v, R * 0.8); break;
                case 2: d = bd__sd_tri(u, -v, R * 1.05); break;
                default: d = fabs(sqrt(u * u + v * v) - (R - ringw / 2)) - ringw / 2; break;
                }
                cov = 0.5 - d; /* one-pixel linear ramp across the edge */
                cov = cov < 0 ? 0 : cov > 1 ? 1 : cov;
                o[y * size + x] = (float)(-1.0 + 2.0 * inten * cov);
            }
        }
    }
    return BD_SUCCESS;
}

BDAPI bd_result bd_builtin_shapes(bd_context *ctx, float *out, int64_t n, int64_t size,
                                  uint64_t seed) {
    return bd_builtin_shapes_ex(ctx, out, NULL, 0, n, size, seed);
}

/* IO-IMPLEMENTATION */

#ifdef __cplusplus
}
#endif
#endif /* BDENSE_IMPLEMENTATION_DONE */
#endif /* BDENSE_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
VERSION HISTORY
    0.1.0 (2026-11-26)  first version: foundation
------------------------------------------------------------------------------
LICENSE: MIT
Copyright (c) 2026 the bdense authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
*/
