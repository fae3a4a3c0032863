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

   QUICK START
       bd_context *ctx;  bd_context_config cc = bd_context_config_init();
       if (bd_context_init(&cc, &ctx) != BD_SUCCESS) return 1;
       bd_rng rng = bd_rng_init(42);
       float x[4]; bd_rng_normal(&rng, x, 4);        // 4 N(0,1) draws
       ...                                           // see the MANUAL
       bd_context_free(ctx);

   MANUAL
       1. Errors          every fallible call returns bd_result; the detail is in
                          bd_context_message(ctx) and goes to the log callback.
       2. Memory          bd_allocator {alloc, free, user_data} in the context
                          config; kernels never allocate.
       3. Kernels         one function per layer direction, forward and backward
                          side by side.  ALL backward kernels ACCUMULATE (+=)
                          into every gradient they write, parameter or
                          activation; the caller zeroes gradient buffers.
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
/* SCHEDULE-DECLARATIONS */

/* ======================================================================== */
/* >>sampler                                                                */
/* ======================================================================== */
/* SAMPLER-DECLARATIONS */

/* ======================================================================== */
/* >>adam                                                                   */
/* ======================================================================== */
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
/* B-DENSE distillation (SPEC 5).  A K-branch student learns, from every
   student step t -> u, the x_hat that one DDIM jump from (z_t, t) needs to
   land on each of the teacher's intermediate states z_{s_1..s_K}.
   Layouts: a batch of N samples of D = C*H*W floats; student output o is
   (N, K*D) branch-major (branch k = o[n, k*D .. k*D+D-1]); per-branch
   quantities (teacher states, targets, times s_k) are (K, N, ...). */
typedef enum bd_distill_method { BD_DISTILL_PD = 0, BD_DISTILL_TD = 1 } bd_distill_method;
typedef enum bd_distill_weights {
    BD_WEIGHTS_UNIFORM = 0,  /* w_k = 1/K */
    BD_WEIGHTS_FINAL = 1,    /* w_K = 1, others 0 (sparse) */
    BD_WEIGHTS_LINEAR = 2,   /* w_k = k / (K(K+1)/2) */
    BD_WEIGHTS_AUX = 3,      /* w_K = 1, w_k = beta for k < K */
    BD_WEIGHTS_ANNEAL = 4,   /* w_k = (1-tau)/K + tau [k=K] */
    BD_WEIGHTS_ADAPTIVE = 5  /* loss-balanced, see bd_distill_branch_weights */
} bd_distill_weights;
typedef enum bd_distill_space { BD_DISTILL_SPACE_X = 0, BD_DISTILL_SPACE_Z = 1 } bd_distill_space;
typedef enum bd_distill_distance { BD_DISTILL_L2 = 0, BD_DISTILL_L1 = 1 } bd_distill_distance;

BDAPI const char *bd_distill_method_name(bd_distill_method m);        /* "pd", "td" */
BDAPI bd_result bd_distill_method_parse(const char *name, bd_distill_method *out);
BDAPI const char *bd_distill_weights_name(bd_distill_weights w);      /* "uniform", ... */
BDAPI bd_result bd_distill_weights_parse(const char *name, bd_distill_weights *out);

/* Branch target x_tilde (N,D) of one teacher state (SPEC 5):
       x_tilde = (z_s - (sigma_s/sigma_t) z_t) / (alpha_s - (sigma_s/sigma_t) alpha_t)
   and x_tilde = z_s where sigma_s == 0 (s = 0).  z_t, z_s (N,D); alpha_t,
   sigma_t, alpha_s, sigma_s (N) per sample.  Computed in double. */
BDAPI void bd_distill_target(float *x_tilde, const float *z_t, const float *z_s,
                             const double *alpha_t, const double *sigma_t,
                             const double *alpha_s, const double *sigma_s, int64_t N, int64_t D);

/* Coefficients of the (linear) parametrisation maps of SPEC 2 for one
   alpha, sigma:  x_hat = xz z + xo o,  eps_hat = ez z + eo o. */
BDAPI void bd_distill_param_coeffs(bd_param_kind param, double alpha, double sigma, double *xz,
                                   double *xo, double *ez, double *eo);

/* lambda(t) = max(alpha_t^2 / sigma_t^2, 1) (SPEC 5); 1e30 cap at sigma = 0. */
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
   of each branch's own loss (NULL or non-positive entries = not yet known,
   treated as equal):  w_K = 1/2 and w_k = (1/(2(K-1))) ema_K / ema_k for
   k < K, so the final branch always carries half the scale-normalised loss
   and the K-1 dense branches share the other half equally; K = 1 gives
   w = 1.  See docs/distillation.md.  Invalid arguments: BD_ERROR_INVALID_ARGUMENT. */
BDAPI bd_result bd_distill_branch_weights(bd_context *ctx, double *w, bd_distill_weights kind,
                                          int64_t K, double beta, double tau,
                                          const double *ema);

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

/* MLP-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>schedule                                                               */
/* ------------------------------------------------------------------------ */
/* SCHEDULE-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>sampler                                                                */
/* ------------------------------------------------------------------------ */
/* SAMPLER-IMPLEMENTATION */

/* ------------------------------------------------------------------------ */
/* >>adam                                                                   */
/* ------------------------------------------------------------------------ */
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
static const char *const bd__distill_method_names[] = {"pd", "td"};
static const char *const bd__distill_weights_names[] = {"uniform", "final", "linear",
                                                        "aux", "anneal", "adaptive"};

BDAPI const char *bd_distill_method_name(bd_distill_method m) {
    return (m >= 0 && (int)m < 2) ? bd__distill_method_names[m] : "unknown";
}
BDAPI bd_result bd_distill_method_parse(const char *name, bd_distill_method *out) {
    int i;
    if (!name || !out) return BD_ERROR_INVALID_ARGUMENT;
    for (i = 0; i < 2; i++)
        if (strcmp(name, bd__distill_method_names[i]) == 0) {
            *out = (bd_distill_method)i;
            return BD_SUCCESS;
        }
    return BD_ERROR_INVALID_ARGUMENT;
}
BDAPI const char *bd_distill_weights_name(bd_distill_weights w) {
    return (w >= 0 && (int)w < 6) ? bd__distill_weights_names[w] : "unknown";
}
BDAPI bd_result bd_distill_weights_parse(const char *name, bd_distill_weights *out) {
    int i;
    if (!name || !out) return BD_ERROR_INVALID_ARGUMENT;
    for (i = 0; i < 6; i++)
        if (strcmp(name, bd__distill_weights_names[i]) == 0) {
            *out = (bd_distill_weights)i;
            return BD_SUCCESS;
        }
    return BD_ERROR_INVALID_ARGUMENT;
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

BDAPI void bd_distill_param_coeffs(bd_param_kind param, double alpha, double sigma, double *xz,
                                   double *xo, double *ez, double *eo) {
    switch (param) {
    case BD_PARAM_EPS: *xz = 1.0 / alpha; *xo = -sigma / alpha; *ez = 0.0; *eo = 1.0; break;
    case BD_PARAM_X0:  *xz = 0.0; *xo = 1.0; *ez = 1.0 / sigma; *eo = -alpha / sigma; break;
    default:           *xz = alpha; *xo = -sigma; *ez = sigma; *eo = alpha; break; /* v */
    }
}

BDAPI double bd_distill_lambda(double alpha_t, double sigma_t) {
    double snr;
    if (sigma_t <= 0.0) return 1e30;
    snr = (alpha_t * alpha_t) / (sigma_t * sigma_t);
    return snr > 1.0 ? snr : 1.0;
}

/* All maps are linear in o, so the loss gradient is a per-(sample, branch)
   scalar times the residual:  x space  dL/do = lambda w_k 2 r xo / (N D),
   z space  dL/do = w_k dist'(r) (alpha_s xo + sigma_s eo) / (N D). */
BDAPI double bd_distill_loss(float *dout, double *branch_loss, const float *o, const float *z_t,
                             const float *x_tilde, const float *z_s, const double *alpha_t,
                             const double *sigma_t, const double *alpha_s, const double *sigma_s,
                             const double *w, bd_param_kind param, bd_distill_space space,
                             bd_distill_distance distance, int64_t N, int64_t K, int64_t D,
                             double grad_scale) {
    int64_t n, k, d;
    double total = 0.0;
    double inv_nd = 1.0 / ((double)N * (double)D);
    if (branch_loss)
        for (k = 0; k < K; k++) branch_loss[k] = 0.0;
    for (n = 0; n < N; n++) {
        double xz, xo, ez, eo;
        const float *zt = z_t + n * D;
        bd_distill_param_coeffs(param, alpha_t[n], sigma_t[n], &xz, &xo, &ez, &eo);
        for (k = 0; k < K; k++) {
            const float *ok = o + (n * K + k) * D;
            float *dk = dout ? dout + (n * K + k) * D : NULL;
            double acc = 0.0, g;
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
                double cz = as * xz + ss * ez, co = as * xo + ss * eo;
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
        double final_scale = (ema && ema[K - 1] > 0.0) ? ema[K - 1] : 0.0;
        if (K == 1) { w[0] = 1.0; break; }
        for (k = 0; k < K - 1; k++) {
            double ratio = 1.0;
            if (final_scale > 0.0 && ema[k] > 0.0) ratio = final_scale / ema[k];
            /* guard against a branch whose loss collapsed to ~0 taking over */
            if (ratio > 1e3) ratio = 1e3;
            w[k] = ratio / (2.0 * (double)(K - 1));
        }
        w[K - 1] = 0.5;
        break;
    }
    default:
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "branch weights: unknown schedule %d", (int)kind);
    }
    return BD_SUCCESS;
}

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
