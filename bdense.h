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
#ifdef _OPENMP
#include <omp.h>
#endif
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(BDENSE_NO_SIMD)
#include <immintrin.h>
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
/* Threads: OpenMP when compiled with -fopenmp (else everything runs on the
   calling thread).  Kernels take the team size from OpenMP's nthreads ICV,
   which the denoiser entry points set from the context's n_threads for the
   duration of each call; parallel loops split independent outputs only, so
   results are the same bits for every thread count. */
#ifdef _OPENMP
#define BD__PRAGMA(x) _Pragma(#x)
#define BD__OMP_FOR_IF(cond) BD__PRAGMA(omp parallel for schedule(static) if (cond))
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

/* element (r, kk) is p[r*ld + kk]: A as stored, or B transposed */
static void bd__pack_rowmajor(const bd__gsrc *s, float *dst, int64_t r0, int64_t nr, int64_t k0,
                              int64_t kc, int64_t w) {
    int64_t pr, r, kk;
    for (pr = 0; pr < nr; pr += w) {
        int64_t lanes = nr - pr < w ? nr - pr : w;
        float *d = dst + pr * kc;
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

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(BDENSE_NO_SIMD)
#define BD__X86 1
__attribute__((target("avx512f"))) static void
bd__ukernel_avx512(int64_t kc, const float *a, const float *b, float *C, int64_t ldc, float alpha,
                   int64_t mr, int64_t nr) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00,
           c61 = c00, c70 = c00, c71 = c00;
    int64_t k, i;
    for (k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), ai;
        ai = _mm512_set1_ps(a[0]); c00 = _mm512_fmadd_ps(ai, b0, c00); c01 = _mm512_fmadd_ps(ai, b1, c01);
        ai = _mm512_set1_ps(a[1]); c10 = _mm512_fmadd_ps(ai, b0, c10); c11 = _mm512_fmadd_ps(ai, b1, c11);
        ai = _mm512_set1_ps(a[2]); c20 = _mm512_fmadd_ps(ai, b0, c20); c21 = _mm512_fmadd_ps(ai, b1, c21);
        ai = _mm512_set1_ps(a[3]); c30 = _mm512_fmadd_ps(ai, b0, c30); c31 = _mm512_fmadd_ps(ai, b1, c31);
        ai = _mm512_set1_ps(a[4]); c40 = _mm512_fmadd_ps(ai, b0, c40); c41 = _mm512_fmadd_ps(ai, b1, c41);
        ai = _mm512_set1_ps(a[5]); c50 = _mm512_fmadd_ps(ai, b0, c50); c51 = _mm512_fmadd_ps(ai, b1, c51);
        ai = _mm512_set1_ps(a[6]); c60 = _mm512_fmadd_ps(ai, b0, c60); c61 = _mm512_fmadd_ps(ai, b1, c61);
        ai = _mm512_set1_ps(a[7]); c70 = _mm512_fmadd_ps(ai, b0, c70); c71 = _mm512_fmadd_ps(ai, b1, c71);
        a += BD__MR;
        b += BD__NR;
    }
    {
        __m512 al = _mm512_set1_ps(alpha);
        __m512 r[16];
        r[0] = c00; r[1] = c01; r[2] = c10; r[3] = c11; r[4] = c20; r[5] = c21; r[6] = c30; r[7] = c31;
        r[8] = c40; r[9] = c41; r[10] = c50; r[11] = c51; r[12] = c60; r[13] = c61; r[14] = c70; r[15] = c71;
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
    if (__builtin_cpu_supports("avx512f")) return bd__ukernel_avx512;
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

/* Plain reference conv2d (im2col + bd_sgemm per sample), kept beside the
   fast kernels below; tests/test_kernels_fast.c compares the two. */
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

/* number of column blocks (multiples of NR) per sample so that N * blocks
   gives every thread work */
static int64_t bd__col_blocks(int64_t N, int64_t P, int nt) {
    int64_t panels = (P + BD__NR - 1) / BD__NR, want;
    if (nt <= 1) return 1;
    want = (2 * nt + N - 1) / N;
    if (want > panels) want = panels;
    return want < 1 ? 1 : want;
}

BDAPI void bd_conv2d_forward(float *out, float *col, const float *x, const float *w,
                             const float *b, int64_t N, int64_t Cin, int64_t H, int64_t W,
                             int64_t Cout, int64_t k, int64_t stride, int64_t pad) {
    int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    int64_t P = Ho * Wo, KK = Cin * k * k, nb, cb, t;
    int nt = bd__omp_threads();
    (void)col;
    if (N <= 0 || Cout <= 0 || P <= 0) return;
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

BDAPI void bd_conv2d_backward(float *dx, float *dw, float *db, float *col, const float *dout,
                              const float *x, const float *w, int64_t N, int64_t Cin,
                              int64_t H, int64_t W, int64_t Cout, int64_t k, int64_t stride,
                              int64_t pad) {
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
    if (dw) {
        /* dw (Cout, KK) += dout_cat (Cout, N*P) . im2col_cat^T (N*P, KK) */
        int64_t nbj = (KK + BD__NR - 1) / BD__NR, per = nbj, nblk;
        if (nt > 1) per = (nbj + 2 * nt - 1) / (2 * nt);
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
            } else {
                sb.pack = bd__pack_im2col_t; sb.C = Cin; sb.H = H; sb.W = W; sb.k = k;
                sb.stride = stride; sb.pad = pad;
            }
            bd__gemm_run(&sa, 0, &sb, j0, Cout, m, N * P, 1.0f, dw + j0, KK, buf);
        }
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

/* GroupNorm.  Statistics per (n, g) over Cg*HW values, two-pass in double
   (mean first, then the centred sum of squares: no cancellation). */
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

/* ---- fast elementwise helpers ----
   bd__expf: exp for |x| <= 87 to ~2 ulp (Cody-Waite reduction x = n ln2 + r,
   degree-6 polynomial, 2^n built in the exponent bits), branch-free so that
   loops over it vectorise; inputs are clamped to [-87, 87]. */
static float bd__expf(float x) {
    float n, r, p, sc, hi = (float)(x > 87.0f), lo = (float)(x < -87.0f);
    int32_t e;
    /* clamp with arithmetic, not branches: GCC vectorises this form */
    x = x * (1.0f - hi - lo) + 87.0f * hi - 87.0f * lo;
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
   result for every thread count, and vectorisable. */
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
    int nt = bd__omp_threads();
    (void)nt;
    BD__OMP_FOR_IF(nt > 1 && N * C * HW >= 32768)
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

/* GroupNorm backward; with silu, dout is the gradient of silu(GN(x)) and
   y = GN(x) is recomputed from x, mean, rstd, gamma, beta (never stored):
   g = dout * s (1 + y (1 - s)), s = sigmoid(y).  gbuf: HW floats scratch on
   the stack when small, else the gradient is recomputed per pass. */
static void bd__gn_bwd(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                       const float *mean, const float *rstd, const float *gamma,
                       const float *beta, int64_t N, int64_t C, int64_t HW, int64_t G, int silu) {
    int64_t Cg = C / G, M = Cg * HW, g;
    int nt = bd__omp_threads();
    (void)nt;
    BD__OMP_FOR_IF(nt > 1 && N * C * HW >= 32768)
    for (g = 0; g < G; g++) {
        int64_t n, c, i;
        for (n = 0; n < N; n++) {
            float mu = mean[n * G + g], rs = rstd[n * G + g], mg, mgx;
            double sg = 0.0, sgx = 0.0;
            for (c = 0; c < Cg; c++) {
                int64_t ch = g * Cg + c;
                const float *xc = x + (n * C + ch) * HW;
                const float *dc = dout + (n * C + ch) * HW;
                float sd8[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sx8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                float a = rs * gamma[ch], bb = (beta ? beta[ch] : 0.0f) - mu * a;
                double sd = 0.0, sdx = 0.0;
                int e;
                for (i = 0; i + 8 <= HW; i += 8)
                    for (e = 0; e < 8; e++) {
                        float xh = (xc[i + e] - mu) * rs, d = dc[i + e];
                        if (silu) {
                            float y = xc[i + e] * a + bb, s = 1.0f / (1.0f + bd__expf(-y));
                            d *= s * (1.0f + y * (1.0f - s));
                        }
                        sd8[e] += d;
                        sx8[e] += d * xh;
                    }
                for (; i < HW; i++) {
                    float xh = (xc[i] - mu) * rs, d = dc[i];
                    if (silu) {
                        float y = xc[i] * a + bb, s = 1.0f / (1.0f + bd__expf(-y));
                        d *= s * (1.0f + y * (1.0f - s));
                    }
                    sd += d;
                    sdx += (double)d * xh;
                }
                for (e = 0; e < 8; e++) { sd += sd8[e]; sdx += sx8[e]; }
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
                for (i = 0; i < HW; i++) {
                    float xh = (xc[i] - mu) * rs, d = dc[i];
                    if (silu) {
                        float y = xc[i] * a + bb, s = 1.0f / (1.0f + bd__expf(-y));
                        d *= s * (1.0f + y * (1.0f - s));
                    }
                    dxc[i] += rs * (d * gm - mg - xh * mgx);
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

BDAPI void bd_silu_forward(float *out, const float *x, int64_t n) { bd__silu_rows(out, x, n); }
BDAPI void bd_silu_backward(float *dx, const float *dout, const float *x, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + bd__expf(-x[i]));
        dx[i] += dout[i] * s * (1.0f + x[i] * (1.0f - s));
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
/* one (n, h) item of the forward */
static void bd__att_fwd_item(float *o, float *a, const float *q, const float *kk, const float *v,
                             int64_t Ch, int64_t HW, float scale, float *buf) {
    bd__gsrc sa, sb;
    /* S (HW,HW) = scale Q^T K: A(i,c) = q[c*HW+i], B(c,j) = k[c*HW+j] */
    memset(a, 0, (size_t)(HW * HW) * sizeof(float));
    bd__gsrc_plain(&sa, q, HW, 1);
    bd__gsrc_plain(&sb, kk, HW, 1);
    bd__gemm_run(&sa, 0, &sb, 0, HW, HW, Ch, scale, a, HW, buf);
    bd__softmax_rows(a, HW, HW);
    /* O (Ch,HW) = V A^T: A(c,j) = v[c*HW+j], B(j,i) = a[i*HW+j] */
    memset(o, 0, (size_t)(Ch * HW) * sizeof(float));
    bd__gsrc_plain(&sa, v, HW, 0);
    bd__gsrc_plain(&sb, a, HW, 0);
    bd__gemm_run(&sa, 0, &sb, 0, Ch, HW, HW, 1.0f, o, HW, buf);
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
    int64_t Ch = C / heads, t;
    float scale = (float)(1.0 / sqrt((double)Ch));
    int nt = bd__omp_threads();
    (void)nt;
    BD__OMP_FOR_IF(nt > 1 && N * heads > 1)
    for (t = 0; t < N * heads; t++) {
        float buf[BD__GEMM_STACK_FLOATS];
        int64_t n = t / heads, h = t % heads;
        const float *q = qkv + (n * 3 * C + h * Ch) * HW;
        bd__att_fwd_item(out + (n * C + h * Ch) * HW, att + t * HW * HW, q, q + C * HW,
                         q + 2 * C * HW, Ch, HW, scale, buf);
    }
}

BDAPI void bd_attention_backward(float *dqkv, float *scratch, const float *dout,
                                 const float *qkv, const float *att, int64_t N, int64_t C,
                                 int64_t HW, int64_t heads) {
    int64_t Ch = C / heads, t;
    float scale = (float)(1.0 / sqrt((double)Ch));
    int nt = bd__omp_threads(), small = HW * HW <= BD__ATT_STACK;
    (void)nt;
    BD__OMP_FOR_IF(nt > 1 && small && N * heads > 1)
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
