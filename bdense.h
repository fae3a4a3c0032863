/* bdense.h - v0.1.0 - diffusion training, B-DENSE distillation and fast sampling
   in one C99 header.  Licence: MIT (see end of file).

   Do this:
       #define BDENSE_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the
   implementation.  Every other file includes it plainly.

   OPTION MACROS (define before the implementation include)
       BDENSE_STATIC          all functions `static` (private to one TU)
       BDENSE_USE_CBLAS       route GEMMs through cblas_sgemm (link a CBLAS,
                              e.g. -lopenblas); otherwise a built-in
                              cache-blocked GEMM is used (zero dependencies)
       BDENSE_CBLAS_HEADER    header to include for CBLAS (default <cblas.h>)
       BDENSE_MALLOC(sz) / BDENSE_FREE(p)
                              default allocator (define both or neither)

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
       buffers.  GEMMs go through bd_sgemm (CBLAS with BDENSE_USE_CBLAS,
       else the built-in blocked GEMM).
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
       or linear, SPEC 1).  The network output is read as eps, x0 or v (v by
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
       bd_trainer does SPEC 3: t ~ U, eps, z_t, loss in the model's
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

   (further sections are added as the library grows)

   TABLE OF CONTENTS (search for the tag)
       >>result     result codes, messages, log callback
       >>context    context, allocator, overflow-checked sizes
       >>rng        explicit, portable random numbers
       >>tensor     float32 NCHW tensors
       >>gemm       bd__sgemm: CBLAS or built-in blocked GEMM
       >>layers     layer kernels, forward and backward
       >>denoiser   the network interface samplers and training use
       >>schedule   noise schedules, parametrisations, time grids
       >>sampler    DDIM, DDPM, Euler, Heun, DPM-Solver++(2M)
       >>adam       Adam/AdamW, EMA, teacher training
       >>unet       the reference UNet (SPEC 6) and the MLP denoiser
       >>io         safetensors, .npy, IDX, PNG, built-in data
       >>distill    B-DENSE distillation (PD and TD)
       >>backend    kernel table (CPU default, CUDA override)
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
/* >>result                                                                 */
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

/* ======================================================================== */
/* >>context                                                                */
/* ======================================================================== */
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

/* ======================================================================== */
/* >>rng                                                                    */
/* ======================================================================== */
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

/* ======================================================================== */
/* >>tensor                                                                 */
/* ======================================================================== */
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
   bd_sgemm_builtin is always the built-in one (tests compare the two). */
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
   col: workspace of bd_conv2d_workspace_floats(...) floats (may be NULL when
   that is 0).  Backward: dx (N,Cin,H,W) +=, dw +=, db +=. */
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

/* ======================================================================== */
/* >>denoiser                                                               */
/* ======================================================================== */
/* A denoiser maps noisy inputs z (N,C,H,W) and times t (N, in [0,1]) to
   raw network outputs o (N,K*C,H,W): K branches, branch-major (channel
   k*C + c is branch k).  Samplers, training and distillation only talk to
   this interface, so the UNet and the MLP denoiser are interchangeable.
   Parameters and their gradients are flat float slabs; `tensors` names the
   pieces (SPEC 6 names for the UNet).  Memory for activations is reserved
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
/* >>schedule                                                               */
/* ======================================================================== */
typedef enum bd_param_kind { BD_PARAM_EPS = 0, BD_PARAM_X0 = 1, BD_PARAM_V = 2 } bd_param_kind;
typedef enum bd_schedule_kind { BD_SCHEDULE_COSINE = 0, BD_SCHEDULE_LINEAR = 1 } bd_schedule_kind;

/* The only thing that knows alpha_t and sigma_t (SPEC 1).  `linear` keeps the
   log(alpha_bar) table of SPEC 6 (entries 0..1000, entry 0 = 0). */
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

/* Parametrisations (SPEC 2), per sample n with its own alpha[n], sigma[n]
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

/* Time grids (SPEC 4, details): steps+1 doubles, out[0] = 1 > ... >
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
       HEUN      EDM Heun (2nd order); the last step to sig = 0 is Euler  (2S-1 NFE)
       DPMPP_2M  DPM-Solver++(2M), data prediction, multistep; first and
                 last (to t = 0) steps first order                          (S NFE)
   A sampler object reserves every buffer for max_batch once; runs then
   allocate nothing.  Batches larger than max_batch run in chunks. */
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
    bd_context *ctx;
    bd_denoiser *model;
    int64_t max_batch, D, KD;
    bd_schedule sched; /* cached for the last run's schedule kind */
    int sched_valid;
    double grid[BD_SAMPLER_MAX_STEPS + 1];
    /* buffers (max_batch rows): */
    float *out;     /* (B, K*D) raw network output */
    float *tbuf;    /* (B) */
    float *x_hat;   /* (B, D) */
    float *eps_hat; /* (B, D) */
    float *x_prev;  /* (B, D) DPM++ previous x_hat / Heun first eps_hat */
    float *z_tmp;   /* (B, D) Heun predictor */
    float *noise;   /* (B, D) */
    double *alpha, *sigma; /* (B) */
} bd_sampler;

BDAPI bd_result bd_sampler_init(bd_context *ctx, bd_denoiser *model, int64_t max_batch,
                                bd_sampler **out);
BDAPI void bd_sampler_free(bd_sampler *s);
/* x (n, C, H, W): in the starting noise, out the samples.  rng: needed by
   DDPM and DDIM with eta > 0 (may be NULL otherwise).  nfe (may be NULL):
   network calls made per sample (the same for every chunk). */
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
/* >>adam                                                                   */
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

/* Optimiser state: m, v (n floats each) and the step count are public so a
   checkpoint can save and restore them. */
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
/* One AdamW step on params (n) with grads (n): clip by the global norm,
   bias-corrected moments, decoupled weight decay (PyTorch AdamW order).
   A non-finite gradient returns BD_ERROR_NONFINITE and changes nothing.
   grad_norm (may be NULL): the norm before clipping. */
BDAPI bd_result bd_adam_step(bd_adam *a, float *params, const float *grads, double *grad_norm);
/* ema = decay*ema + (1-decay)*params over n floats */
BDAPI void bd_ema_update(float *ema, const float *params, int64_t n, double decay);
/* L2 norm (double accumulation) of n floats */
BDAPI double bd_l2_norm(const float *x, int64_t n);

/* Teacher training (SPEC 3). */
typedef enum bd_loss_weight { BD_WEIGHT_NONE = 0, BD_WEIGHT_SNR_TRUNC = 1 } bd_loss_weight;
BDAPI const char *bd_loss_weight_name(bd_loss_weight w); /* "none", "snr_trunc" */
BDAPI bd_result bd_loss_weight_parse(const char *name, bd_loss_weight *out);

typedef struct bd_trainer_config {
    bd_param_kind param;       /* v */
    bd_schedule_kind schedule; /* cosine */
    bd_loss_weight weighting;  /* none */
    bd_adam_config adam;
    double ema_decay;    /* 0.999 */
    int ema_warmup;      /* 1: decay_k = min(ema_decay, (1+k)/(10+k)) at step k */
    double t_min;        /* t = max(1 - u, t_min), u ~ U[0,1): t in [t_min, 1]  (1e-5) */
    uint64_t seed;       /* trainer rng (t, eps) and data rng (a jumped copy) */
    int skip_nonfinite;  /* bd_trainer_run: skip non-finite steps instead of stopping */
} bd_trainer_config;

BDAPI bd_trainer_config bd_trainer_config_init(void);

/* Everything a resume needs is public: the model's params, ema, adam (m, v,
   step), rng and data_rng. */
typedef struct bd_trainer {
    bd_context *ctx;
    bd_denoiser *model;  /* not owned */
    bd_trainer_config config;
    bd_schedule sched;
    bd_adam adam;
    float *ema;          /* (n_params) EMA weights: what gets sampled */
    bd_rng rng;          /* draws t and eps */
    bd_rng data_rng;     /* handed to bd_trainer_run's data provider */
    int64_t max_batch, D, KD;
    double last_loss, last_grad_norm, last_lr;
    int64_t skipped;     /* non-finite steps skipped by bd_trainer_run */
    /* buffers (max_batch rows) */
    float *t, *eps, *z, *out, *target, *dout, *xbuf;
    double *alpha, *sigma;
} bd_trainer;

/* The trainer keeps `model` (not owned); EMA starts as a copy of its
   weights.  Reserves the model and every buffer for max_batch. */
BDAPI bd_result bd_trainer_init(bd_context *ctx, bd_denoiser *model,
                                const bd_trainer_config *config, int64_t max_batch,
                                bd_trainer **out);
BDAPI void bd_trainer_free(bd_trainer *tr);
/* One optimisation step on x (n, C, H, W), n <= max_batch: t, eps from the
   trainer rng, z_t, forward, loss (every branch gets the same target, the
   loss is the mean over branches), backward, clip, AdamW, EMA.  loss (may
   be NULL) receives the loss.  Non-finite loss or gradient: returns
   BD_ERROR_NONFINITE and leaves weights, EMA, Adam state and step as they
   were (the rng has advanced). */
BDAPI bd_result bd_trainer_step(bd_trainer *tr, const float *x, int64_t n, double *loss);
/* Copy the EMA weights into dst (same n_params), e.g. a sampling copy. */
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
/* >>unet                                                                   */
/* ======================================================================== */
/* UNET-DECLARATIONS */

/* ======================================================================== */
/* >>io                                                                     */
/* ======================================================================== */
/* IO-DECLARATIONS */

/* ======================================================================== */
/* >>distill                                                                */
/* ======================================================================== */
/* DISTILL-DECLARATIONS */

/* ======================================================================== */
/* >>backend                                                                */
/* ======================================================================== */
/* BACKEND-DECLARATIONS */

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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
/* >>result                                                                 */
/* ------------------------------------------------------------------------ */
BDAPI const char *bd_result_string(bd_result r) {
    switch (r) {
#define BD__STR(name, str) case name: return str;
        BD_RESULT_LIST(BD__STR)
#undef BD__STR
    default: break;
    }
    return "unknown result";
}

/* ------------------------------------------------------------------------ */
/* >>context                                                                */
/* ------------------------------------------------------------------------ */
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

/* ------------------------------------------------------------------------ */
/* >>rng                                                                    */
/* ------------------------------------------------------------------------ */
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

/* ------------------------------------------------------------------------ */
/* >>tensor                                                                 */
/* ------------------------------------------------------------------------ */
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

/* ------------------------------------------------------------------------ */
/* >>gemm                                                                   */
/* ------------------------------------------------------------------------ */
/* Built-in GEMM: C is scaled by beta once, then accumulated in blocks of
   (BM x BK) of A against (BK x BN) of B.  Element access goes through the
   two index macros so all four transpose cases share one loop nest. */
#define BD__GEMM_BM 64
#define BD__GEMM_BN 256
#define BD__GEMM_BK 128
BDAPI void bd_sgemm_builtin(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                            float alpha, const float *A, int64_t lda, const float *B,
                            int64_t ldb, float beta, float *C, int64_t ldc) {
    int64_t i, j, p, i0, j0, p0;
    for (i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f) for (j = 0; j < N; j++) c[j] = 0.0f;
        else if (beta != 1.0f) for (j = 0; j < N; j++) c[j] *= beta;
    }
    if (alpha == 0.0f || K == 0) return;
    for (i0 = 0; i0 < M; i0 += BD__GEMM_BM) {
        int64_t i1 = i0 + BD__GEMM_BM < M ? i0 + BD__GEMM_BM : M;
        for (p0 = 0; p0 < K; p0 += BD__GEMM_BK) {
            int64_t p1 = p0 + BD__GEMM_BK < K ? p0 + BD__GEMM_BK : K;
            for (j0 = 0; j0 < N; j0 += BD__GEMM_BN) {
                int64_t j1 = j0 + BD__GEMM_BN < N ? j0 + BD__GEMM_BN : N;
                for (i = i0; i < i1; i++) {
                    float *c = C + i * ldc;
                    for (p = p0; p < p1; p++) {
                        float a = alpha * (trans_a ? A[p * lda + i] : A[i * lda + p]);
                        if (a == 0.0f) continue;
                        if (!trans_b) {
                            const float *b = B + p * ldb;
                            for (j = j0; j < j1; j++) c[j] += a * b[j];
                        } else {
                            for (j = j0; j < j1; j++) c[j] += a * B[j * ldb + p];
                        }
                    }
                }
            }
        }
    }
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
    bd_sgemm(0, 1, N, Out, In, 1.0f, x, In, w, In, 0.0f, out, Out);
    if (b)
        for (n = 0; n < N; n++)
            for (o = 0; o < Out; o++) out[n * Out + o] += b[o];
}

BDAPI void bd_linear_backward(float *dx, float *dw, float *db, const float *dout,
                              const float *x, const float *w, int64_t N, int64_t In, int64_t Out) {
    int64_t n, o;
    if (dx) bd_sgemm(0, 0, N, In, Out, 1.0f, dout, Out, w, In, 1.0f, dx, In);   /* dx += dout w   */
    if (dw) bd_sgemm(1, 0, Out, In, N, 1.0f, dout, Out, x, In, 1.0f, dw, In);   /* dw += dout^T x */
    if (db)
        for (n = 0; n < N; n++)
            for (o = 0; o < Out; o++) db[o] += dout[n * Out + o];
}

BDAPI void bd_silu_forward(float *out, const float *x, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) {
        float v = x[i];
        out[i] = v / (1.0f + expf(-v));
    }
}

BDAPI void bd_silu_backward(float *dx, const float *dout, const float *x, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] += dout[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

/* conv2d.  im2col layout: col is (Cin*k*k, Ho*Wo) row-major; row
   r = (ci*k + ky)*k + kx holds x[ci, oy*s - p + ky, ox*s - p + kx] (0 outside
   the image) at column oy*Wo + ox.  Then out[n] (Cout, Ho*Wo) =
   w (Cout, Cin*k*k) col, which is one GEMM per sample. */
static int bd__conv_is_1x1(int64_t k, int64_t stride, int64_t pad) {
    return k == 1 && stride == 1 && pad == 0;
}

BDAPI int64_t bd_conv2d_workspace_floats(int64_t Cin, int64_t H, int64_t W, int64_t k,
                                         int64_t stride, int64_t pad) {
    int64_t Ho, Wo;
    if (Cin <= 0 || H <= 0 || W <= 0 || k <= 0 || stride <= 0 || pad < 0) return 0;
    if (bd__conv_is_1x1(k, stride, pad)) return 0;
    Ho = (H + 2 * pad - k) / stride + 1;
    Wo = (W + 2 * pad - k) / stride + 1;
    if (Ho <= 0 || Wo <= 0) return 0;
    return Cin * k * k * Ho * Wo;
}

/* col (Cin*k*k, Ho*Wo) <- x (Cin,H,W) of one sample */
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

BDAPI void bd_conv2d_forward(float *out, float *col, const float *x, const float *w,
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
BDAPI void bd_conv2d_backward(float *dx, float *dw, float *db, float *col, const float *dout,
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

/* GroupNorm.  Statistics per (n, g) over Cg*HW values, two-pass in double
   (mean first, then the centred sum of squares: no cancellation). */
BDAPI void bd_groupnorm_forward(float *out, float *mean, float *rstd, const float *x,
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
BDAPI void bd_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout,
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

BDAPI void bd_upsample2x_forward(float *out, const float *x, int64_t N, int64_t C, int64_t H,
                                 int64_t W) {
    int64_t p, y, xx, W2 = 2 * W;
    for (p = 0; p < N * C; p++) {
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
    int64_t p, y, xx, W2 = 2 * W;
    for (p = 0; p < N * C; p++) {
        float *xp = dx + p * H * W;
        const float *op = dout + p * 4 * H * W;
        for (y = 0; y < H; y++) {
            const float *r0 = op + (2 * y) * W2, *r1 = r0 + W2;
            for (xx = 0; xx < W; xx++)
                xp[y * W + xx] += (r0[2 * xx] + r0[2 * xx + 1]) + (r1[2 * xx] + r1[2 * xx + 1]);
        }
    }
}

BDAPI void bd_concat_forward(float *out, const float *a, const float *b, int64_t N, int64_t C1,
                             int64_t C2, int64_t HW) {
    int64_t n;
    for (n = 0; n < N; n++) {
        float *on = out + n * (C1 + C2) * HW;
        memcpy(on, a + n * C1 * HW, (size_t)(C1 * HW) * sizeof(float));
        memcpy(on + C1 * HW, b + n * C2 * HW, (size_t)(C2 * HW) * sizeof(float));
    }
}

BDAPI void bd_concat_backward(float *da, float *db, const float *dout, int64_t N, int64_t C1,
                              int64_t C2, int64_t HW) {
    int64_t n, i;
    for (n = 0; n < N; n++) {
        const float *dn = dout + n * (C1 + C2) * HW;
        if (da) {
            float *an = da + n * C1 * HW;
            for (i = 0; i < C1 * HW; i++) an[i] += dn[i];
        }
        if (db) {
            float *bn = db + n * C2 * HW;
            const float *d2 = dn + C1 * HW;
            for (i = 0; i < C2 * HW; i++) bn[i] += d2[i];
        }
    }
}

BDAPI void bd_add_channel_forward(float *x, const float *e, int64_t N, int64_t C, int64_t HW) {
    int64_t p, i;
    for (p = 0; p < N * C; p++) {
        float v = e[p], *r = x + p * HW;
        for (i = 0; i < HW; i++) r[i] += v;
    }
}

BDAPI void bd_add_channel_backward(float *de, const float *dout, int64_t N, int64_t C,
                                   int64_t HW) {
    int64_t p, i;
    for (p = 0; p < N * C; p++) {
        const float *r = dout + p * HW;
        double s = 0.0;
        for (i = 0; i < HW; i++) s += r[i];
        de[p] += (float)s;
    }
}

BDAPI void bd_add_forward(float *out, const float *a, const float *b, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) out[i] = a[i] + b[i];
}

BDAPI void bd_add_backward(float *da, float *db, const float *dout, int64_t n) {
    int64_t i;
    if (da) for (i = 0; i < n; i++) da[i] += dout[i];
    if (db) for (i = 0; i < n; i++) db[i] += dout[i];
}

/* Attention, per (n, head): Q, K, V are (Ch, HW) row-major blocks of qkv.
   S = Q^T K / sqrt(Ch) (HW, HW) -> row softmax (max subtracted) = A;
   O = V A^T (Ch, HW). */
BDAPI void bd_attention_forward(float *out, float *att, const float *qkv, int64_t N, int64_t C,
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
BDAPI void bd_attention_backward(float *dqkv, float *scratch, const float *dout,
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

/* LAYERS-IMPLEMENTATION */

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
    return d->vt->forward(d, out, z, t, n, train);
}

BDAPI bd_result bd_denoiser_backward(bd_denoiser *d, float *dz, const float *dout, int64_t n) {
    if (!d || !d->vt) return BD_ERROR_INVALID_ARGUMENT;
    if (!dout) return bd_error(d->ctx, BD_ERROR_INVALID_ARGUMENT, "denoiser backward: NULL dout");
    if (n < 1 || n > d->reserved_batch)
        return bd_error(d->ctx, BD_ERROR_STATE, "denoiser backward: batch %lld does not match the reserved caches", (long long)n);
    return d->vt->backward(d, dz, dout, n);
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
    if (d && d->grads) memset(d->grads, 0, (size_t)d->n_params * sizeof(float));
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
    if (!dst || !src) return BD_ERROR_INVALID_ARGUMENT;
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

/* SPEC 6 sinusoidal embedding [cos(c f_i), sin(c f_i)], f_i =
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

BDAPI const char *bd_schedule_name(bd_schedule_kind k) {
    switch (k) {
    case BD_SCHEDULE_COSINE: return "cosine";
    case BD_SCHEDULE_LINEAR: return "linear";
    default: return "unknown";
    }
}

BDAPI bd_result bd_schedule_parse(const char *name, bd_schedule_kind *out) {
    if (!name || !out) return BD_ERROR_INVALID_ARGUMENT;
    if (strcmp(name, "cosine") == 0) *out = BD_SCHEDULE_COSINE;
    else if (strcmp(name, "linear") == 0) *out = BD_SCHEDULE_LINEAR;
    else return BD_ERROR_INVALID_ARGUMENT;
    return BD_SUCCESS;
}

BDAPI const char *bd_param_name(bd_param_kind k) {
    switch (k) {
    case BD_PARAM_EPS: return "eps";
    case BD_PARAM_X0: return "x0";
    case BD_PARAM_V: return "v";
    default: return "unknown";
    }
}

BDAPI bd_result bd_param_parse(const char *name, bd_param_kind *out) {
    if (!name || !out) return BD_ERROR_INVALID_ARGUMENT;
    if (strcmp(name, "eps") == 0) *out = BD_PARAM_EPS;
    else if (strcmp(name, "x0") == 0) *out = BD_PARAM_X0;
    else if (strcmp(name, "v") == 0) *out = BD_PARAM_V;
    else return BD_ERROR_INVALID_ARGUMENT;
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

BDAPI const char *bd_grid_name(bd_grid_kind k) {
    switch (k) {
    case BD_GRID_UNIFORM_T: return "uniform_t";
    case BD_GRID_LOGSNR: return "logsnr";
    case BD_GRID_KARRAS: return "karras";
    default: return "unknown";
    }
}

BDAPI bd_result bd_grid_parse(const char *name, bd_grid_kind *out) {
    if (!name || !out) return BD_ERROR_INVALID_ARGUMENT;
    if (strcmp(name, "uniform_t") == 0 || strcmp(name, "uniform") == 0) *out = BD_GRID_UNIFORM_T;
    else if (strcmp(name, "logsnr") == 0) *out = BD_GRID_LOGSNR;
    else if (strcmp(name, "karras") == 0) *out = BD_GRID_KARRAS;
    else return BD_ERROR_INVALID_ARGUMENT;
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

BDAPI const char *bd_sampler_name(bd_sampler_kind k) {
    switch (k) {
    case BD_SAMPLER_DDIM: return "ddim";
    case BD_SAMPLER_DDPM: return "ddpm";
    case BD_SAMPLER_EULER: return "euler";
    case BD_SAMPLER_HEUN: return "heun";
    case BD_SAMPLER_DPMPP_2M: return "dpmpp2m";
    default: return "unknown";
    }
}

BDAPI bd_result bd_sampler_parse(const char *name, bd_sampler_kind *out) {
    if (!name || !out) return BD_ERROR_INVALID_ARGUMENT;
    if (strcmp(name, "ddim") == 0) *out = BD_SAMPLER_DDIM;
    else if (strcmp(name, "ddpm") == 0) *out = BD_SAMPLER_DDPM;
    else if (strcmp(name, "euler") == 0) *out = BD_SAMPLER_EULER;
    else if (strcmp(name, "heun") == 0) *out = BD_SAMPLER_HEUN;
    else if (strcmp(name, "dpmpp2m") == 0 || strcmp(name, "dpmpp") == 0) *out = BD_SAMPLER_DPMPP_2M;
    else return BD_ERROR_INVALID_ARGUMENT;
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

BDAPI bd_result bd_sampler_init(bd_context *ctx, bd_denoiser *model, int64_t max_batch,
                                bd_sampler **out) {
    bd_sampler *s;
    bd_result r;
    int64_t D, KD;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!model || !out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_init: NULL argument");
    *out = NULL;
    if (max_batch < 1) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_init: max_batch %lld < 1", (long long)max_batch);
    D = bd_denoiser_sample_size(model);
    KD = D * model->branches;
    if (D < 1 || KD < 1 || max_batch > (((int64_t)1 << 40) / KD))
        return bd_error(ctx, BD_ERROR_OVERFLOW, "bd_sampler_init: batch %lld of %lld floats is too large",
                        (long long)max_batch, (long long)KD);
    r = bd_denoiser_reserve(model, max_batch);
    if (r != BD_SUCCESS) return r;
    s = BD__CAST(bd_sampler *, bd_alloc(ctx, sizeof(bd_sampler)));
    if (!s) return ctx->last_result;
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->model = model;
    s->max_batch = max_batch;
    s->D = D;
    s->KD = KD;
    s->out = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(max_batch * KD), sizeof(float)));
    s->tbuf = BD__CAST(float *, bd_alloc_array(ctx, (size_t)max_batch, sizeof(float)));
    s->x_hat = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(max_batch * D), sizeof(float)));
    s->eps_hat = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(max_batch * D), sizeof(float)));
    s->x_prev = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(max_batch * D), sizeof(float)));
    s->z_tmp = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(max_batch * D), sizeof(float)));
    s->noise = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(max_batch * D), sizeof(float)));
    s->alpha = BD__CAST(double *, bd_alloc_array(ctx, (size_t)max_batch, sizeof(double)));
    s->sigma = BD__CAST(double *, bd_alloc_array(ctx, (size_t)max_batch, sizeof(double)));
    if (!s->out || !s->tbuf || !s->x_hat || !s->eps_hat || !s->x_prev || !s->z_tmp || !s->noise ||
        !s->alpha || !s->sigma) {
        r = ctx->last_result;
        bd_sampler_free(s);
        return r;
    }
    *out = s;
    return BD_SUCCESS;
}

BDAPI void bd_sampler_free(bd_sampler *s) {
    bd_context *ctx;
    if (!s) return;
    ctx = s->ctx;
    bd_free(ctx, s->out);
    bd_free(ctx, s->tbuf);
    bd_free(ctx, s->x_hat);
    bd_free(ctx, s->eps_hat);
    bd_free(ctx, s->x_prev);
    bd_free(ctx, s->z_tmp);
    bd_free(ctx, s->noise);
    bd_free(ctx, s->alpha);
    bd_free(ctx, s->sigma);
    bd_free(ctx, s);
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

/* model call at one time t for the chunk: x_hat, eps_hat (and clipping) */
static bd_result bd__sampler_eval(bd_sampler *s, const bd_sampler_config *cfg, int64_t branch,
                                  const float *z, double t, int64_t nb, float *x_hat,
                                  float *eps_hat) {
    int64_t j, D = s->D;
    double al, sg;
    bd_result r;
    bd_schedule_alpha_sigma(&s->sched, t, &al, &sg);
    for (j = 0; j < nb; j++) {
        s->tbuf[j] = (float)t;
        s->alpha[j] = al;
        s->sigma[j] = sg;
    }
    r = bd_denoiser_forward(s->model, s->out, z, s->tbuf, nb, 0);
    if (r != BD_SUCCESS) return r;
    bd_param_predict(cfg->param, x_hat, eps_hat, s->out, s->model->branches, branch, z, s->alpha,
                     s->sigma, nb, D);
    if (cfg->clip_x) {
        for (j = 0; j < nb * D; j++) {
            float v = x_hat[j] < -1.0f ? -1.0f : (x_hat[j] > 1.0f ? 1.0f : x_hat[j]);
            if (v != x_hat[j] && sg > 0.0) eps_hat[j] = (float)(((double)z[j] - al * (double)v) / sg);
            x_hat[j] = v;
        }
    }
    for (j = 0; j < nb * D; j++)
        if (!isfinite(x_hat[j]))
            return bd_error(s->ctx, BD_ERROR_NONFINITE, "sampler: non-finite model prediction at t = %g", t);
    return BD_SUCCESS;
}

BDAPI bd_result bd_sampler_run(bd_sampler *s, const bd_sampler_config *cfg, float *x, int64_t n,
                               bd_rng *rng, int64_t *nfe) {
    bd_context *ctx;
    int64_t S, i, j, c0, D, branch, count = 0;
    bd_result r;
    if (!s) return BD_ERROR_INVALID_ARGUMENT;
    ctx = s->ctx;
    if (!cfg || !x) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: NULL argument");
    if (n < 1) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: n %lld < 1", (long long)n);
    if (cfg->kind < BD_SAMPLER_DDIM || cfg->kind > BD_SAMPLER_DPMPP_2M)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: unknown sampler kind %d", (int)cfg->kind);
    if (cfg->param != BD_PARAM_EPS && cfg->param != BD_PARAM_X0 && cfg->param != BD_PARAM_V)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: unknown param kind %d", (int)cfg->param);
    if (!(cfg->eta >= 0.0))
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: eta must be >= 0 (got %g)", cfg->eta);
    branch = cfg->branch < 0 ? s->model->branches - 1 : cfg->branch;
    if (branch >= s->model->branches)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: branch %lld but the model has %lld",
                        (long long)cfg->branch, (long long)s->model->branches);
    if (!rng && (cfg->kind == BD_SAMPLER_DDPM || (cfg->kind == BD_SAMPLER_DDIM && cfg->eta > 0.0)))
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_sampler_run: %s needs an rng", bd_sampler_name(cfg->kind));
    r = bd_sampler_grid(ctx, cfg, s->grid);
    if (r != BD_SUCCESS) return r;
    if (!s->sched_valid || s->sched.kind != cfg->schedule) {
        if (bd_schedule_init(&s->sched, cfg->schedule) != BD_SUCCESS)
            return bd_error(ctx, BD_ERROR_CONFIG, "sampler: unknown schedule %d", (int)cfg->schedule);
        s->sched_valid = 1;
    }
    S = cfg->steps;
    D = s->D;
    for (c0 = 0; c0 < n; c0 += s->max_batch) {
        int64_t nb = n - c0 < s->max_batch ? n - c0 : s->max_batch;
        float *z = x + c0 * D;
        double h_prev = 0.0;
        int have_prev = 0;
        count = 0;
        for (i = 0; i < S; i++) {
            double t = s->grid[i], u = s->grid[i + 1];
            double at, st, as, ss;
            int64_t m = nb * D;
            bd_schedule_alpha_sigma(&s->sched, t, &at, &st);
            bd_schedule_alpha_sigma(&s->sched, u, &as, &ss);
            r = bd__sampler_eval(s, cfg, branch, z, t, nb, s->x_hat, s->eps_hat);
            if (r != BD_SUCCESS) return r;
            count++;
            if (cfg->callback && cfg->callback(cfg->user_data, i, t, u, z, s->x_hat, nb, D, c0))
                return bd_error(ctx, BD_ERROR_STATE, "sampler: stopped by the callback at step %lld", (long long)i);
            if (ss <= 0.0) { /* landing on t = 0: every sampler returns x_hat */
                memcpy(z, s->x_hat, (size_t)m * sizeof(float));
                continue;
            }
            switch (cfg->kind) {
            case BD_SAMPLER_DDIM: {
                double c = 0.0, dir;
                if (cfg->eta > 0.0) {
                    double q = 1.0 - (at * at) / (as * as);
                    c = cfg->eta * (ss / st) * sqrt(q > 0.0 ? q : 0.0);
                    if (c > ss) c = ss;
                    bd_rng_normal(rng, s->noise, m);
                }
                dir = sqrt(ss * ss - c * c);
                for (j = 0; j < m; j++) {
                    double v = as * (double)s->x_hat[j] + dir * (double)s->eps_hat[j];
                    if (c > 0.0) v += c * (double)s->noise[j];
                    z[j] = (float)v;
                }
                break;
            }
            case BD_SAMPLER_DDPM: {
                /* q(z_s | z_t, x): sigma_ts^2 = alpha_t^2 (sig_t^2 - sig_s^2) with
                   sig = sigma/alpha; mean = (alpha_t/alpha_s)(sigma_s^2/sigma_t^2) z_t
                   + alpha_s sigma_ts^2/sigma_t^2 x; var = sigma_ts^2 sigma_s^2/sigma_t^2 */
                double gt = st / at, gs = ss / as;
                double vts = at * at * (gt * gt - gs * gs), cz, cx, sd;
                if (vts < 0.0) vts = 0.0;
                cz = (at / as) * (ss * ss) / (st * st);
                cx = as * vts / (st * st);
                sd = sqrt(vts * ss * ss / (st * st));
                bd_rng_normal(rng, s->noise, m);
                for (j = 0; j < m; j++)
                    z[j] = (float)(cz * (double)z[j] + cx * (double)s->x_hat[j] + sd * (double)s->noise[j]);
                break;
            }
            case BD_SAMPLER_EULER: {
                /* EDM Euler in x = z/alpha, sig = sigma/alpha:
                   d = (x - D(x))/sig_t, x_s = x + (sig_s - sig_t) d */
                double gt = st / at, gs = ss / as;
                for (j = 0; j < m; j++) {
                    double xt = (double)z[j] / at;
                    double dd = (xt - (double)s->x_hat[j]) / gt;
                    z[j] = (float)(as * (xt + (gs - gt) * dd));
                }
                break;
            }
            case BD_SAMPLER_HEUN: {
                double gt = st / at, gs = ss / as;
                float *d1 = s->x_prev;
                for (j = 0; j < m; j++) {
                    double xt = (double)z[j] / at;
                    double dd = (xt - (double)s->x_hat[j]) / gt;
                    d1[j] = (float)dd;
                    s->z_tmp[j] = (float)(as * (xt + (gs - gt) * dd));
                }
                r = bd__sampler_eval(s, cfg, branch, s->z_tmp, u, nb, s->x_hat, s->eps_hat);
                if (r != BD_SUCCESS) return r;
                count++;
                for (j = 0; j < m; j++) {
                    double xt = (double)z[j] / at;
                    double d2 = ((double)s->z_tmp[j] / as - (double)s->x_hat[j]) / gs;
                    z[j] = (float)(as * (xt + (gs - gt) * 0.5 * ((double)d1[j] + d2)));
                }
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
                for (j = 0; j < m; j++) {
                    double Dv = w1 * (double)s->x_hat[j] + (have_prev ? w0 * (double)s->x_prev[j] : 0.0);
                    z[j] = (float)(cz * (double)z[j] + cx * Dv);
                }
                memcpy(s->x_prev, s->x_hat, (size_t)m * sizeof(float));
                have_prev = 1;
                h_prev = h;
                break;
            }
            default:
                return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "sampler: unknown kind");
            }
            for (j = 0; j < m; j++)
                if (!isfinite(z[j]))
                    return bd_error(ctx, BD_ERROR_NONFINITE, "sampler: non-finite state after step %lld", (long long)i);
        }
    }
    if (nfe) *nfe = count;
    return BD_SUCCESS;
}
/* SAMPLER-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>adam                                                                   */
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

BDAPI bd_result bd_adam_init(bd_context *ctx, const bd_adam_config *config, int64_t n,
                             bd_adam *out) {
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!config || !out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_adam_init: NULL argument");
    memset(out, 0, sizeof *out);
    if (n < 0) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_adam_init: n %lld < 0", (long long)n);
    if (!(config->lr >= 0.0) || !(config->beta1 >= 0.0 && config->beta1 < 1.0) ||
        !(config->beta2 >= 0.0 && config->beta2 < 1.0) || !(config->eps > 0.0) ||
        !(config->weight_decay >= 0.0) || config->warmup_steps < 0 ||
        (config->lr_schedule != BD_LR_CONSTANT && config->lr_schedule != BD_LR_COSINE))
        return bd_error(ctx, BD_ERROR_CONFIG, "bd_adam_init: need lr >= 0, betas in [0,1), eps > 0, weight_decay >= 0, warmup >= 0");
    out->m = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(n ? n : 1), sizeof(float)));
    out->v = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(n ? n : 1), sizeof(float)));
    if (!out->m || !out->v) {
        bd_result r = ctx->last_result;
        bd_free(ctx, out->m);
        bd_free(ctx, out->v);
        memset(out, 0, sizeof *out);
        return r;
    }
    memset(out->m, 0, (size_t)n * sizeof(float));
    memset(out->v, 0, (size_t)n * sizeof(float));
    out->ctx = ctx;
    out->config = *config;
    out->n = n;
    out->step = 0;
    return BD_SUCCESS;
}

BDAPI void bd_adam_free(bd_adam *a) {
    if (!a || !a->ctx) return;
    bd_free(a->ctx, a->m);
    bd_free(a->ctx, a->v);
    memset(a, 0, sizeof *a);
}

BDAPI double bd_l2_norm(const float *x, int64_t n) {
    double s = 0.0;
    int64_t i;
    for (i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return sqrt(s);
}

BDAPI bd_result bd_adam_step(bd_adam *a, float *params, const float *grads, double *grad_norm) {
    const bd_adam_config *c;
    double gn, scale = 1.0, lr, b1, b2, bc1, bc2, sbc2, decay;
    int64_t i, k;
    if (!a || !a->ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!params || !grads) return bd_error(a->ctx, BD_ERROR_INVALID_ARGUMENT, "bd_adam_step: NULL argument");
    c = &a->config;
    gn = bd_l2_norm(grads, a->n);
    if (grad_norm) *grad_norm = gn;
    if (!isfinite(gn))
        return bd_error(a->ctx, BD_ERROR_NONFINITE, "adam: non-finite gradient norm at step %lld; nothing changed",
                        (long long)(a->step + 1));
    /* torch.nn.utils.clip_grad_norm_: scale by clip / (norm + 1e-6) when < 1 */
    if (c->grad_clip > 0.0 && gn > c->grad_clip) scale = c->grad_clip / (gn + 1e-6);
    k = a->step + 1;
    lr = bd_adam_lr(c, k);
    b1 = c->beta1;
    b2 = c->beta2;
    bc1 = 1.0 - pow(b1, (double)k);
    bc2 = 1.0 - pow(b2, (double)k);
    sbc2 = sqrt(bc2);
    decay = 1.0 - lr * c->weight_decay;
    for (i = 0; i < a->n; i++) {
        double g = (double)grads[i] * scale;
        double m = b1 * (double)a->m[i] + (1.0 - b1) * g;
        double v = b2 * (double)a->v[i] + (1.0 - b2) * g * g;
        double p = (double)params[i] * decay;
        a->m[i] = (float)m;
        a->v[i] = (float)v;
        /* PyTorch AdamW: p -= (lr/bc1) m / (sqrt(v)/sqrt(bc2) + eps) */
        params[i] = (float)(p - (lr / bc1) * m / (sqrt(v) / sbc2 + c->eps));
    }
    a->step = k;
    return BD_SUCCESS;
}

BDAPI void bd_ema_update(float *ema, const float *params, int64_t n, double decay) {
    int64_t i;
    for (i = 0; i < n; i++) ema[i] = (float)(decay * (double)ema[i] + (1.0 - decay) * (double)params[i]);
}

BDAPI const char *bd_loss_weight_name(bd_loss_weight w) {
    switch (w) {
    case BD_WEIGHT_NONE: return "none";
    case BD_WEIGHT_SNR_TRUNC: return "snr_trunc";
    default: return "unknown";
    }
}

BDAPI bd_result bd_loss_weight_parse(const char *name, bd_loss_weight *out) {
    if (!name || !out) return BD_ERROR_INVALID_ARGUMENT;
    if (strcmp(name, "none") == 0) *out = BD_WEIGHT_NONE;
    else if (strcmp(name, "snr_trunc") == 0) *out = BD_WEIGHT_SNR_TRUNC;
    else return BD_ERROR_INVALID_ARGUMENT;
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
    bd_context *ctx;
    if (!tr) return;
    ctx = tr->ctx;
    bd_adam_free(&tr->adam);
    bd_free(ctx, tr->ema);
    bd_free(ctx, tr->t);
    bd_free(ctx, tr->eps);
    bd_free(ctx, tr->z);
    bd_free(ctx, tr->out);
    bd_free(ctx, tr->target);
    bd_free(ctx, tr->dout);
    bd_free(ctx, tr->xbuf);
    bd_free(ctx, tr->alpha);
    bd_free(ctx, tr->sigma);
    bd_free(ctx, tr);
}

BDAPI bd_result bd_trainer_init(bd_context *ctx, bd_denoiser *model,
                                const bd_trainer_config *config, int64_t max_batch,
                                bd_trainer **out) {
    bd_trainer *tr;
    bd_result r;
    int64_t D, KD, B = max_batch, P;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!model || !config || !out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_trainer_init: NULL argument");
    *out = NULL;
    if (B < 1) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_trainer_init: max_batch %lld < 1", (long long)B);
    if ((config->param != BD_PARAM_EPS && config->param != BD_PARAM_X0 && config->param != BD_PARAM_V) ||
        (config->weighting != BD_WEIGHT_NONE && config->weighting != BD_WEIGHT_SNR_TRUNC) ||
        !(config->ema_decay >= 0.0 && config->ema_decay <= 1.0) || !(config->t_min >= 0.0 && config->t_min < 1.0))
        return bd_error(ctx, BD_ERROR_CONFIG, "bd_trainer_init: need a known param and weighting, ema_decay in [0,1], t_min in [0,1)");
    if (model->n_params < 1 || !model->params || !model->grads)
        return bd_error(ctx, BD_ERROR_CONFIG, "bd_trainer_init: the model has no trainable parameters");
    D = bd_denoiser_sample_size(model);
    KD = D * model->branches;
    if (D < 1 || B > (((int64_t)1 << 40) / KD))
        return bd_error(ctx, BD_ERROR_OVERFLOW, "bd_trainer_init: batch %lld of %lld floats is too large", (long long)B, (long long)KD);
    r = bd_denoiser_reserve(model, B);
    if (r != BD_SUCCESS) return r;
    tr = BD__CAST(bd_trainer *, bd_alloc(ctx, sizeof(bd_trainer)));
    if (!tr) return ctx->last_result;
    memset(tr, 0, sizeof *tr);
    tr->ctx = ctx;
    tr->model = model;
    tr->config = *config;
    tr->max_batch = B;
    tr->D = D;
    tr->KD = KD;
    P = model->n_params;
    if (bd_schedule_init(&tr->sched, config->schedule) != BD_SUCCESS) {
        bd_free(ctx, tr);
        return bd_error(ctx, BD_ERROR_CONFIG, "bd_trainer_init: unknown schedule %d", (int)config->schedule);
    }
    r = bd_adam_init(ctx, &config->adam, P, &tr->adam);
    if (r != BD_SUCCESS) {
        bd_free(ctx, tr);
        return r;
    }
    tr->ema = BD__CAST(float *, bd_alloc_array(ctx, (size_t)P, sizeof(float)));
    tr->t = BD__CAST(float *, bd_alloc_array(ctx, (size_t)B, sizeof(float)));
    tr->eps = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(B * D), sizeof(float)));
    tr->z = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(B * D), sizeof(float)));
    tr->out = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(B * KD), sizeof(float)));
    tr->target = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(B * D), sizeof(float)));
    tr->dout = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(B * KD), sizeof(float)));
    tr->xbuf = BD__CAST(float *, bd_alloc_array(ctx, (size_t)(B * D), sizeof(float)));
    tr->alpha = BD__CAST(double *, bd_alloc_array(ctx, (size_t)B, sizeof(double)));
    tr->sigma = BD__CAST(double *, bd_alloc_array(ctx, (size_t)B, sizeof(double)));
    if (!tr->ema || !tr->t || !tr->eps || !tr->z || !tr->out || !tr->target || !tr->dout ||
        !tr->xbuf || !tr->alpha || !tr->sigma) {
        r = ctx->last_result;
        bd_trainer_free(tr);
        return r;
    }
    memcpy(tr->ema, model->params, (size_t)P * sizeof(float));
    tr->rng = bd_rng_init(config->seed);
    tr->data_rng = tr->rng;
    bd_rng_jump(&tr->data_rng);
    *out = tr;
    return BD_SUCCESS;
}

BDAPI bd_result bd_trainer_step(bd_trainer *tr, const float *x, int64_t n, double *loss_out) {
    bd_context *ctx;
    bd_denoiser *d;
    const bd_trainer_config *c;
    int64_t D, K, KD, j, k, i;
    double loss = 0.0, scale, gn, decay;
    bd_result r;
    if (!tr) return BD_ERROR_INVALID_ARGUMENT;
    ctx = tr->ctx;
    if (!x) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_trainer_step: NULL batch");
    if (n < 1 || n > tr->max_batch)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_trainer_step: batch %lld not in 1..%lld",
                        (long long)n, (long long)tr->max_batch);
    d = tr->model;
    c = &tr->config;
    D = tr->D;
    K = d->branches;
    KD = tr->KD;
    /* t ~ U(0, 1] (as 1 - U[0,1)), clamped below at t_min; eps ~ N(0, I) */
    for (j = 0; j < n; j++) {
        double t = 1.0 - bd_rng_uniform(&tr->rng);
        if (t < c->t_min) t = c->t_min;
        tr->t[j] = (float)t;
        bd_schedule_alpha_sigma(&tr->sched, (double)tr->t[j], &tr->alpha[j], &tr->sigma[j]);
    }
    bd_rng_normal(&tr->rng, tr->eps, n * D);
    for (j = 0; j < n; j++)
        for (i = 0; i < D; i++) {
            int64_t q = j * D + i;
            tr->z[q] = (float)(tr->alpha[j] * (double)x[q] + tr->sigma[j] * (double)tr->eps[q]);
        }
    bd_denoiser_zero_grad(d);
    r = bd_denoiser_forward(d, tr->out, tr->z, tr->t, n, 1);
    if (r != BD_SUCCESS) return r;
    /* loss = 1/(N K) sum_{n,k} w_n mean_d (y_nk - y*_n)^2, with y the output
       and w = 1 (none), or y = x_hat = a z + c o and w = max(snr, 1)
       (snr_trunc); dout = 2 w dy/do (y - y*) / (N K D) */
    if (c->weighting == BD_WEIGHT_NONE)
        bd_param_target(c->param, tr->target, x, tr->eps, tr->alpha, tr->sigma, n, D);
    scale = 1.0 / ((double)n * (double)K * (double)D);
    for (j = 0; j < n; j++) {
        double w = 1.0, ca = 0.0, cc = 1.0;
        if (c->weighting == BD_WEIGHT_SNR_TRUNC) {
            double snr = (tr->alpha[j] * tr->alpha[j]) / (tr->sigma[j] * tr->sigma[j]);
            w = snr > 1.0 ? snr : 1.0;
            bd_param_x_coeffs(c->param, tr->alpha[j], tr->sigma[j], &ca, &cc);
        }
        for (k = 0; k < K; k++) {
            const float *o = tr->out + j * KD + k * D;
            float *g = tr->dout + j * KD + k * D;
            for (i = 0; i < D; i++) {
                double y, ys, e;
                if (c->weighting == BD_WEIGHT_SNR_TRUNC) {
                    y = ca * (double)tr->z[j * D + i] + cc * (double)o[i];
                    ys = (double)x[j * D + i];
                } else {
                    y = (double)o[i];
                    ys = (double)tr->target[j * D + i];
                }
                e = y - ys;
                loss += w * e * e;
                g[i] = (float)(2.0 * w * cc * e * scale);
            }
        }
    }
    loss *= scale;
    tr->last_loss = loss;
    if (loss_out) *loss_out = loss;
    if (!isfinite(loss))
        return bd_error(ctx, BD_ERROR_NONFINITE, "trainer: non-finite loss at step %lld; nothing changed",
                        (long long)(tr->adam.step + 1));
    r = bd_denoiser_backward(d, NULL, tr->dout, n);
    if (r != BD_SUCCESS) return r;
    r = bd_adam_step(&tr->adam, d->params, d->grads, &gn);
    tr->last_grad_norm = gn;
    if (r != BD_SUCCESS) return r;
    tr->last_lr = bd_adam_lr(&c->adam, tr->adam.step);
    decay = c->ema_decay;
    if (c->ema_warmup) {
        double w = (1.0 + (double)tr->adam.step) / (10.0 + (double)tr->adam.step);
        if (w < decay) decay = w;
    }
    bd_ema_update(tr->ema, d->params, d->n_params, decay);
    return BD_SUCCESS;
}

BDAPI bd_result bd_trainer_copy_ema(const bd_trainer *tr, bd_denoiser *dst) {
    if (!tr || !dst) return BD_ERROR_INVALID_ARGUMENT;
    if (dst->n_params != tr->model->n_params || !dst->params)
        return bd_error(tr->ctx, BD_ERROR_SHAPE, "bd_trainer_copy_ema: destination has %lld params, EMA has %lld",
                        (long long)dst->n_params, (long long)tr->model->n_params);
    memcpy(dst->params, tr->ema, (size_t)dst->n_params * sizeof(float));
    return BD_SUCCESS;
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
/* >>unet                                                                   */
/* ------------------------------------------------------------------------ */
/* UNET-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>io                                                                     */
/* ------------------------------------------------------------------------ */
/* IO-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>distill                                                                */
/* ------------------------------------------------------------------------ */
/* DISTILL-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>backend                                                                */
/* ------------------------------------------------------------------------ */
/* BACKEND-IMPLEMENTATION */
struct bd_backend {
    const char *name;
};
static const bd_backend bd__cpu_backend = {"cpu"};
static const bd_backend *bd__backend_cpu(void) { return &bd__cpu_backend; }

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
