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
/* The reference UNet of SPEC 6 behind the bd_denoiser interface (kind
   "unet"), the bd_model that pairs a network with its diffusion settings,
   and SPEC 7 checkpoints.  docs/unet.md walks through the architecture. */
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

/* SPEC 6 `small`: C=1, 28x28, ch=32, m=(1,2,2), nres=1, attention at level 2
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
    op->a[BD__R_N1] = bd__ub_cache(u, bd__umul(u, cin, hw));
    op->a[BD__R_A1] = bd__ub_cache(u, bd__umul(u, cin, hw));
    op->a[BD__R_H1] = bd__ub_cache(u, bd__umul(u, cout, hw));
    op->a[BD__R_N2] = bd__ub_cache(u, bd__umul(u, cout, hw));
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

/* Builds the plan (SPEC 6).  With NULL arrays it only counts. */
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
    u->a_nout = bd__ub_cache(u, bd__umul(u, cc, hw));
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
    if (n < 1) return bd_error(ctx, BD_ERROR_CONFIG, "unet config: ch_mult \"%s\" is not 1..%d comma-separated integers", s ? s : "(null)", BD_UNET_MAX_LEVELS);
    for (l = 0; l < BD_UNET_MAX_LEVELS; l++) cfg->ch_mult[l] = l < n ? v[l] : 0;
    cfg->levels = n;
    return BD_SUCCESS;
}
BDAPI bd_result bd_unet_parse_attn(bd_context *ctx, const char *s, bd_unet_config *cfg) {
    int64_t v[BD_UNET_MAX_LEVELS], n = bd__unet_parse_list(s, v, BD_UNET_MAX_LEVELS), l;
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
        float *n1 = BD__UACT(u, op->a[BD__R_N1]), *a1 = BD__UACT(u, op->a[BD__R_A1]);
        float *h1 = BD__UACT(u, op->a[BD__R_H1]), *n2 = BD__UACT(u, op->a[BD__R_N2]);
        float *a2 = BD__UACT(u, op->a[BD__R_A2]), *tp = BD__UACT(u, op->a[BD__R_TPROJ]);
        int64_t co = op->cout;
        if (op->skip >= 0) {
            float *cat = BD__UACT(u, op->a[BD__R_CAT]);
            bd_concat_forward(cat, x, BD__UVAL(u, op->skip), n, op->cin_h, op->cskip, hw);
            x = cat;
        }
        bd_groupnorm_forward(n1, BD__UACT(u, op->a[BD__R_MEAN1]), BD__UACT(u, op->a[BD__R_RSTD1]), x,
                             BD__UP(d, u, op, BD__RP_N1W), BD__UP(d, u, op, BD__RP_N1B), n, c, hw, G);
        bd_silu_forward(a1, n1, n * c * hw);
        bd_conv2d_forward(h1, u->col, a1, BD__UP(d, u, op, BD__RP_C1W), BD__UP(d, u, op, BD__RP_C1B),
                          n, c, op->h, op->w, co, 3, 1, 1);
        bd_linear_forward(tp, BD__UACT(u, u->a_stemb), BD__UP(d, u, op, BD__RP_TW),
                          BD__UP(d, u, op, BD__RP_TB), n, tc, co);
        bd_add_channel_forward(h1, tp, n, co, hw);
        bd_groupnorm_forward(n2, BD__UACT(u, op->a[BD__R_MEAN2]), BD__UACT(u, op->a[BD__R_RSTD2]), h1,
                             BD__UP(d, u, op, BD__RP_N2W), BD__UP(d, u, op, BD__RP_N2B), n, co, hw, G);
        bd_silu_forward(a2, n2, n * co * hw);
        bd_conv2d_forward(y, u->col, a2, BD__UP(d, u, op, BD__RP_C2W), BD__UP(d, u, op, BD__RP_C2B),
                          n, co, op->h, op->w, co, 3, 1, 1);
        if (op->has_skip_conv) {
            bd_conv2d_forward(u->s1, u->col, x, BD__UP(d, u, op, BD__RP_SW), BD__UP(d, u, op, BD__RP_SB),
                              n, c, op->h, op->w, co, 1, 1, 0);
            bd_add_forward(y, y, u->s1, n * co * hw);
        } else {
            bd_add_forward(y, y, x, n * co * hw);
        }
    } else if (op->type == BD__UOP_ATTN) {
        float *nn = BD__UACT(u, op->a[BD__A_N]), *qkv = BD__UACT(u, op->a[BD__A_QKV]);
        float *o = BD__UACT(u, op->a[BD__A_O]);
        bd_groupnorm_forward(nn, BD__UACT(u, op->a[BD__A_MEAN]), BD__UACT(u, op->a[BD__A_RSTD]), x,
                             BD__UP(d, u, op, BD__AP_NW), BD__UP(d, u, op, BD__AP_NB), n, c, hw, G);
        bd_conv2d_forward(qkv, u->col, nn, BD__UP(d, u, op, BD__AP_QW), BD__UP(d, u, op, BD__AP_QB),
                          n, c, op->h, op->w, 3 * c, 1, 1, 0);
        bd_attention_forward(o, BD__UACT(u, op->a[BD__A_ATT]), qkv, n, c, hw, u->cfg.heads);
        bd_conv2d_forward(y, u->col, o, BD__UP(d, u, op, BD__AP_PW), BD__UP(d, u, op, BD__AP_PB),
                          n, c, op->h, op->w, c, 1, 1, 0);
        bd_add_forward(y, y, x, n * c * hw);
    } else if (op->type == BD__UOP_DOWN) {
        bd_conv2d_forward(y, u->col, x, BD__UP(d, u, op, 0), BD__UP(d, u, op, 1), n, c, op->h, op->w,
                          c, 3, 2, 1);
    } else {
        float *up = BD__UACT(u, op->a[BD__U_UP]);
        bd_upsample2x_forward(up, x, n, c, op->h, op->w);
        bd_conv2d_forward(y, u->col, up, BD__UP(d, u, op, 0), BD__UP(d, u, op, 1), n, c, 2 * op->h,
                          2 * op->w, c, 3, 1, 1);
    }
}

static void bd__unet_zero(float *p, int64_t n) { memset(p, 0, (size_t)n * sizeof(float)); }

static void bd__unet_op_backward(bd_denoiser *d, bd__unet *u, const bd__unet_op *op, int64_t n) {
    int64_t G = u->cfg.groups, tc = 4 * u->cfg.ch, hw = op->h * op->w, c = op->cin;
    const float *x = BD__UVAL(u, op->in);
    const float *gy = BD__UGRAD(u, op->out);
    float *gx = BD__UGRAD(u, op->in);
    if (op->type == BD__UOP_RES) {
        const float *n1 = BD__UACT(u, op->a[BD__R_N1]), *a1 = BD__UACT(u, op->a[BD__R_A1]);
        const float *h1 = BD__UACT(u, op->a[BD__R_H1]), *n2 = BD__UACT(u, op->a[BD__R_N2]);
        const float *a2 = BD__UACT(u, op->a[BD__R_A2]);
        int64_t co = op->cout;
        float *gin = gx; /* gradient of the block's (concatenated) input */
        if (op->skip >= 0) {
            x = BD__UACT(u, op->a[BD__R_CAT]);
            gin = u->s3;
            bd__unet_zero(gin, n * c * hw);
        }
        /* out = skip(x) + conv2(a2) */
        if (op->has_skip_conv)
            bd_conv2d_backward(gin, BD__UG(d, u, op, BD__RP_SW), BD__UG(d, u, op, BD__RP_SB), u->col, gy, x,
                               BD__UP(d, u, op, BD__RP_SW), n, c, op->h, op->w, co, 1, 1, 0);
        else
            bd_add_backward(gin, NULL, gy, n * c * hw);
        bd__unet_zero(u->s1, n * co * hw);
        bd_conv2d_backward(u->s1, BD__UG(d, u, op, BD__RP_C2W), BD__UG(d, u, op, BD__RP_C2B), u->col, gy,
                           a2, BD__UP(d, u, op, BD__RP_C2W), n, co, op->h, op->w, co, 3, 1, 1);
        bd__unet_zero(u->s2, n * co * hw);
        bd_silu_backward(u->s2, u->s1, n2, n * co * hw);
        bd__unet_zero(u->s1, n * co * hw); /* s1 = d h1 */
        bd_groupnorm_backward(u->s1, BD__UG(d, u, op, BD__RP_N2W), BD__UG(d, u, op, BD__RP_N2B), u->s2, h1,
                              BD__UACT(u, op->a[BD__R_MEAN2]), BD__UACT(u, op->a[BD__R_RSTD2]),
                              BD__UP(d, u, op, BD__RP_N2W), n, co, hw, G);
        bd__unet_zero(u->gsmall, n * co);
        bd_add_channel_backward(u->gsmall, u->s1, n, co, hw);
        bd_linear_backward(u->grad + u->g_stemb * u->batch, BD__UG(d, u, op, BD__RP_TW),
                           BD__UG(d, u, op, BD__RP_TB), u->gsmall, BD__UACT(u, u->a_stemb),
                           BD__UP(d, u, op, BD__RP_TW), n, tc, co);
        bd__unet_zero(u->s2, n * c * hw); /* s2 = d a1 */
        bd_conv2d_backward(u->s2, BD__UG(d, u, op, BD__RP_C1W), BD__UG(d, u, op, BD__RP_C1B), u->col, u->s1,
                           a1, BD__UP(d, u, op, BD__RP_C1W), n, c, op->h, op->w, co, 3, 1, 1);
        bd__unet_zero(u->s1, n * c * hw); /* s1 = d n1 */
        bd_silu_backward(u->s1, u->s2, n1, n * c * hw);
        bd_groupnorm_backward(gin, BD__UG(d, u, op, BD__RP_N1W), BD__UG(d, u, op, BD__RP_N1B), u->s1, x,
                              BD__UACT(u, op->a[BD__R_MEAN1]), BD__UACT(u, op->a[BD__R_RSTD1]),
                              BD__UP(d, u, op, BD__RP_N1W), n, c, hw, G);
        if (op->skip >= 0)
            bd_concat_backward(gx, BD__UGRAD(u, op->skip), gin, n, op->cin_h, op->cskip, hw);
    } else if (op->type == BD__UOP_ATTN) {
        bd_add_backward(gx, NULL, gy, n * c * hw);
        bd__unet_zero(u->s1, n * c * hw); /* d o */
        bd_conv2d_backward(u->s1, BD__UG(d, u, op, BD__AP_PW), BD__UG(d, u, op, BD__AP_PB), u->col, gy,
                           BD__UACT(u, op->a[BD__A_O]), BD__UP(d, u, op, BD__AP_PW), n, c, op->h, op->w,
                           c, 1, 1, 0);
        bd__unet_zero(u->s2, n * 3 * c * hw); /* d qkv */
        bd_attention_backward(u->s2, u->ascr, u->s1, BD__UACT(u, op->a[BD__A_QKV]),
                              BD__UACT(u, op->a[BD__A_ATT]), n, c, hw, u->cfg.heads);
        bd__unet_zero(u->s3, n * c * hw); /* d n */
        bd_conv2d_backward(u->s3, BD__UG(d, u, op, BD__AP_QW), BD__UG(d, u, op, BD__AP_QB), u->col, u->s2,
                           BD__UACT(u, op->a[BD__A_N]), BD__UP(d, u, op, BD__AP_QW), n, c, op->h, op->w,
                           3 * c, 1, 1, 0);
        bd_groupnorm_backward(gx, BD__UG(d, u, op, BD__AP_NW), BD__UG(d, u, op, BD__AP_NB), u->s3, x,
                              BD__UACT(u, op->a[BD__A_MEAN]), BD__UACT(u, op->a[BD__A_RSTD]),
                              BD__UP(d, u, op, BD__AP_NW), n, c, hw, G);
    } else if (op->type == BD__UOP_DOWN) {
        bd_conv2d_backward(gx, BD__UG(d, u, op, 0), BD__UG(d, u, op, 1), u->col, gy, x, BD__UP(d, u, op, 0),
                           n, c, op->h, op->w, c, 3, 2, 1);
    } else {
        bd__unet_zero(u->s1, n * c * hw * 4);
        bd_conv2d_backward(u->s1, BD__UG(d, u, op, 0), BD__UG(d, u, op, 1), u->col, gy,
                           BD__UACT(u, op->a[BD__U_UP]), BD__UP(d, u, op, 0), n, c, 2 * op->h, 2 * op->w,
                           c, 3, 1, 1);
        bd_upsample2x_backward(gx, u->s1, n, c, op->h, op->w);
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
    slab = BD__CAST(float *, bd_alloc_array(d->ctx, total, sizeof(float)));
    if (!slab) return d->ctx->last_result;
    memset(slab, 0, total * sizeof(float));
    bd_free(d->ctx, u->slab);
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
    float *st = BD__UACT(u, u->a_stemb), *no = BD__UACT(u, u->a_nout), *ao = BD__UACT(u, u->a_aout);
    if (n > u->batch) return bd_error(d->ctx, BD_ERROR_STATE, "unet forward: batch %lld > reserved %lld", (long long)n, (long long)u->batch);
    u->last_train = 0;
    memcpy(zc, z, (size_t)(n * C * HW) * sizeof(float));
    for (i = 0; i < n; i++) cn[i] = 1000.0f * t[i];
    bd_timestep_embedding_forward(emb, cn, n, ch);
    bd_linear_forward(t1, emb, P + T[u->pt_time].offset, P + T[u->pt_time + 1].offset, n, ch, tc);
    bd_silu_forward(t1s, t1, n * tc);
    bd_linear_forward(temb, t1s, P + T[u->pt_time + 2].offset, P + T[u->pt_time + 3].offset, n, tc, tc);
    bd_silu_forward(st, temb, n * tc);
    bd_conv2d_forward(BD__UVAL(u, u->v_in), u->col, zc, P + T[u->pt_conv_in].offset,
                      P + T[u->pt_conv_in + 1].offset, n, C, H, H, ch, 3, 1, 1);
    for (i = 0; i < u->n_ops; i++) bd__unet_op_forward(d, u, &u->ops[i], n);
    bd_groupnorm_forward(no, BD__UACT(u, u->a_mout), BD__UACT(u, u->a_rout), BD__UVAL(u, u->v_final),
                         P + T[u->pt_out].offset, P + T[u->pt_out + 1].offset, n, cf, HW, c->groups);
    bd_silu_forward(ao, no, n * cf * HW);
    bd_conv2d_forward(out, u->col, ao, P + T[u->pt_out + 2].offset, P + T[u->pt_out + 3].offset, n, cf,
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
    bd__unet_zero(u->grad, u->grad_ps * u->batch);
    /* output head */
    bd__unet_zero(u->s1, n * cf * HW);
    bd_conv2d_backward(u->s1, Gp + T[u->pt_out + 2].offset, Gp + T[u->pt_out + 3].offset, u->col, dout,
                       BD__UACT(u, u->a_aout), P + T[u->pt_out + 2].offset, n, cf, H, H, c->branches * C,
                       3, 1, 1);
    bd__unet_zero(u->s2, n * cf * HW);
    bd_silu_backward(u->s2, u->s1, BD__UACT(u, u->a_nout), n * cf * HW);
    bd_groupnorm_backward(BD__UGRAD(u, u->v_final), Gp + T[u->pt_out].offset, Gp + T[u->pt_out + 1].offset,
                          u->s2, BD__UVAL(u, u->v_final), BD__UACT(u, u->a_mout), BD__UACT(u, u->a_rout),
                          P + T[u->pt_out].offset, n, cf, HW, c->groups);
    for (i = u->n_ops - 1; i >= 0; i--) bd__unet_op_backward(d, u, &u->ops[i], n);
    bd_conv2d_backward(dz, Gp + T[u->pt_conv_in].offset, Gp + T[u->pt_conv_in + 1].offset, u->col,
                       BD__UGRAD(u, u->v_in), BD__UACT(u, u->a_z), P + T[u->pt_conv_in].offset, n, C, H, H,
                       ch, 3, 1, 1);
    /* time MLP: st = silu(temb), temb = L2(silu(t1)), t1 = L0(emb) */
    bd__unet_zero(u->s1, n * tc);
    bd_silu_backward(u->s1, gst, BD__UACT(u, u->a_temb), n * tc);
    bd__unet_zero(u->s2, n * tc);
    bd_linear_backward(u->s2, Gp + T[u->pt_time + 2].offset, Gp + T[u->pt_time + 3].offset, u->s1,
                       BD__UACT(u, u->a_t1s), P + T[u->pt_time + 2].offset, n, tc, tc);
    bd__unet_zero(u->s3, n * tc);
    bd_silu_backward(u->s3, u->s2, BD__UACT(u, u->a_t1), n * tc);
    bd_linear_backward(NULL, Gp + T[u->pt_time].offset, Gp + T[u->pt_time + 1].offset, u->s3,
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
        bd_free(ctx, u->slab);
        bd_free(ctx, u->tensors);
        bd_free(ctx, u->tfan);
        bd_free(ctx, u->vals);
        bd_free(ctx, u->ops);
        bd_free(ctx, u);
    }
    bd_free(ctx, d->params);
    bd_free(ctx, d->grads);
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
    d->params = BD__CAST(float *, bd_alloc_array(ctx, (size_t)u->n_params, sizeof(float)));
    d->grads = BD__CAST(float *, bd_alloc_array(ctx, (size_t)u->n_params, sizeof(float)));
    if (!u->tensors || !u->tfan || !u->vals || !u->ops || !d->params || !d->grads) {
        r = ctx->last_result;
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
    memset(d->grads, 0, (size_t)u->n_params * sizeof(float));
    for (i = 0; i < u->n_tensors; i++) {
        const bd_param_tensor *t = &u->tensors[i];
        float *p = d->params + t->offset;
        if (u->tfan[i] > 0) {
            float bound = (float)(1.0 / sqrt((double)u->tfan[i]));
            bd_rng_uniform_fill(rng, p, t->numel, -bound, bound);
        } else {
            float v = u->tfan[i] < 0 ? 1.0f : 0.0f;
            for (j = 0; j < t->numel; j++) p[j] = v;
        }
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
