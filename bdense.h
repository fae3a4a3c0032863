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
/* DISTILL-DECLARATIONS */

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
   bd_vec_adam (PyTorch AdamW order), per element with g' = grad_scale * g:
       m = beta1 m + (1-beta1) g';  v = beta2 v + (1-beta2) g'^2;
       p = p * (1 - lr*weight_decay);
       p = p - (lr/bias_c1) * m / (sqrt(v)/sqrt(bias_c2) + eps)
   with bias_c1 = 1-beta1^t, bias_c2 = 1-beta2^t (caller computes them).
   bd_vec_ema: ema = decay*ema + (1-decay)*p.
   bd_vec_sumsq: sum of squares in double (NaN/Inf propagate: a finite
   result means every element is finite). */
typedef struct bd_vec_adam_args {
    float lr, beta1, beta2, eps, weight_decay, grad_scale, bias_c1, bias_c2;
} bd_vec_adam_args;
BDAPI void bd_vec_axpby(float *out, int64_t ldo, const float *x, int64_t ldx, const float *a,
                        float sa, const float *y, int64_t ldy, const float *b, float sb,
                        int64_t N, int64_t D);
BDAPI void bd_vec_fill(float *out, float value, int64_t n);
BDAPI void bd_vec_adam(float *p, const float *g, float *m, float *v, int64_t n,
                       const bd_vec_adam_args *args);
BDAPI void bd_vec_ema(float *ema, const float *p, int64_t n, float decay);
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
    void (*vec_ema)(void *state, float *ema, const float *p, int64_t n, float decay);
    double (*vec_sumsq)(void *state, const float *x, int64_t n);
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
/* Run kernel `op` of ctx's backend: BD_OP(ctx, silu_forward, out, x, n). */
#define BD_OP(ctx, op, ...) ((ctx)->backend->op((ctx)->backend->state, __VA_ARGS__))

/* CUDA backend, defined in bdense_cuda.cu (link it and cuBLAS; not
   available with BDENSE_STATIC).  bd_cuda_init selects `device`, creates a
   stream and a cuBLAS handle, and installs the CUDA table on ctx (float32
   GEMMs, TF32 off).  bd_cuda_shutdown puts the CPU table back and frees
   everything (bd_context_free does it too).  bd_cuda_device_count is 0 when
   there is no driver or no GPU. */
extern int bd_cuda_device_count(void);
extern bd_result bd_cuda_init(bd_context *ctx, int device);
extern bd_result bd_cuda_set_tf32(bd_context *ctx, int on);
extern void bd_cuda_shutdown(bd_context *ctx);

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
/* DISTILL-IMPLEMENTATION */

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
    float decay = 1.0f - a->lr * a->weight_decay, step = a->lr / a->bias_c1;
    float sq2 = sqrtf(a->bias_c2);
    for (i = 0; i < n; i++) {
        float gi = a->grad_scale * g[i];
        float mi = a->beta1 * m[i] + (1.0f - a->beta1) * gi;
        float vi = a->beta2 * v[i] + (1.0f - a->beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step * mi / (sqrtf(vi) / sq2 + a->eps);
    }
}

BDAPI void bd_vec_ema(float *ema, const float *p, int64_t n, float decay) {
    int64_t i;
    for (i = 0; i < n; i++) ema[i] = decay * ema[i] + (1.0f - decay) * p[i];
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
static void bd__cpu_vec_ema(void *st, float *ema, const float *p, int64_t n, float decay) {
    (void)st;
    bd_vec_ema(ema, p, n, decay);
}
static double bd__cpu_vec_sumsq(void *st, const float *x, int64_t n) {
    (void)st;
    return bd_vec_sumsq(x, n);
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
    bd__cpu_vec_axpby, bd__cpu_vec_fill, bd__cpu_vec_adam, bd__cpu_vec_ema, bd__cpu_vec_sumsq};

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
    X(mse_forward) X(mse_backward) X(vec_axpby) X(vec_fill) X(vec_adam) X(vec_ema) X(vec_sumsq)
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

/* BACKEND-IMPLEMENTATION */

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
