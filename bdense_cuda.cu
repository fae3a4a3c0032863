/* bdense_cuda.cu - CUDA backend for bdense.h (optional translation unit).

   Build: compile this file with nvcc next to the C/C++ file that defines
   BDENSE_IMPLEMENTATION, link cuBLAS and the CUDA runtime:
       nvcc -O2 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
            -I. -c bdense_cuda.cu -o bdense_cuda.o
       cc ... main.c bdense_cuda.o -lcublas -lcudart -lstdc++ -lm
   (`make CUDA=1` does this.)  Not usable with BDENSE_STATIC.

   Use:
       bd_cuda_init(ctx, 0);                    // installs the CUDA table on ctx
       void *p; bd_backend_alloc(ctx, bytes, &p) // device memory from now on
       BD_OP(ctx, conv2d_forward, ...)           // runs on the GPU
       bd_backend_sync(ctx);                     // errors surface here
       bd_cuda_shutdown(ctx);                    // back to the CPU table

   Layout of this file: state and error plumbing, device helpers, kernels,
   then launchers (bd_<kernel>_cuda: the CPU kernel's name with a _cuda
   suffix, the same argument order after the state, the same accumulation
   rule: every backward ADDS into every gradient it writes), then the table
   and the public API.

   Design notes
   - One non-blocking stream and one cuBLAS handle per context.  Kernels are
     queued; only results the host needs (mse loss, sum of squares) and
     device-to-host copies wait.
   - GEMMs: cuBLAS in float32 (CUBLAS_DEFAULT_MATH: no TF32) unless
     bd_cuda_set_tf32(ctx, 1).  Row-major C = op(A) op(B) is computed as the
     column-major C^T = op(B)^T op(A)^T, i.e. cublasSgemm with A and B
     swapped and M and N swapped.
   - conv2d works on the whole batch at once: col is (Cin*k*k, N*Ho*Wo) in
     an internal scratch slab (the caller's per-sample `col` is not used),
     the forward is one strided-batched GEMM writing NCHW directly, dW is one
     GEMM over the N*Ho*Wo columns, dx is a strided-batched GEMM then a
     gather col2im (no atomics: deterministic).
   - attention: strided-batched GEMMs over the batch, one set per head;
     softmax one warp per row.  Its backward uses scratch for dA of the whole
     batch.
   - Reductions (GroupNorm statistics and gradients, bias gradients, mse,
     sum of squares) accumulate in double, one block or warp per output, in
     a fixed order: results are deterministic run to run.
   - The scratch slab (plain cudaMalloc) grows to the largest request, which
     happens during the first step; later steps allocate nothing.
   - Errors: a failed launch, cuBLAS call or scratch allocation is recorded
     (first one wins), later kernels are skipped, and the next sync returns
     it through bd_error.  Nothing exits or aborts. */
#ifdef BDENSE_CUDA_EMULATE
#include "bd_cuda_emu.h" /* host emulation for testing without a GPU */
#else
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bdense.h"

/* ------------------------------------------------------------------------ */
/* state and errors                                                         */
/* ------------------------------------------------------------------------ */
#define BD__CU_THREADS 256
#define BD__CU_RED_BLOCKS 1024

typedef struct bd_cuda {
    bd_backend be; /* be.state == this */
    int device;
    int tf32;
    cudaStream_t stream;
    cublasHandle_t blas;
    float *scratch; /* grows on demand */
    size_t scratch_floats;
    double *red; /* BD__CU_RED_BLOCKS + 1 doubles: block partials, total */
    bd_result err; /* first recorded failure (BD_SUCCESS if none) */
    char msg[384];
} bd_cuda;

static void bd__cu_fail(bd_cuda *cu, bd_result code, const char *fmt, ...) {
    va_list ap;
    if (cu->err != BD_SUCCESS) return; /* keep the first */
    cu->err = code;
    va_start(ap, fmt);
    vsnprintf(cu->msg, sizeof cu->msg, fmt, ap);
    va_end(ap);
}

static const char *bd__cublas_string(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
    }
}

/* For functions that return bd_result: report through bd_error at once. */
#define BD__CUDA_CHECK(ctx, call)                                                            \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess)                                                               \
            return bd_error((ctx), BD_ERROR_BACKEND, "%s:%d: %s: %s", __FILE__, __LINE__,    \
                            #call, cudaGetErrorString(e_));                                  \
    } while (0)

/* After a kernel launch inside a void launcher: record, do not return. */
#define BD__CU_LAUNCHED(cu, name) bd__cu_after_launch((cu), (name), __LINE__)
static void bd__cu_after_launch(bd_cuda *cu, const char *name, int line) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        bd__cu_fail(cu, BD_ERROR_BACKEND, "bdense_cuda.cu:%d: kernel %s: %s", line, name,
                    cudaGetErrorString(e));
}

static unsigned bd__cu_blocks(int64_t n) {
    int64_t b = (n + BD__CU_THREADS - 1) / BD__CU_THREADS;
    if (b < 1) b = 1;
    if (b > 65535LL * 16) b = 65535LL * 16; /* kernels grid-stride */
    return (unsigned)b;
}

/* scratch slab of at least `floats` floats; NULL (and an error recorded)
   on failure.  Growing frees the old slab (cudaFree waits for the device). */
static float *bd__cu_scratch(bd_cuda *cu, size_t floats) {
    if (cu->err != BD_SUCCESS) return NULL;
    if (floats <= cu->scratch_floats) return cu->scratch;
    if (cu->scratch) cudaFree(cu->scratch);
    cu->scratch = NULL;
    cu->scratch_floats = 0;
    floats = (floats + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    if (cudaMalloc((void **)&cu->scratch, floats * sizeof(float)) != cudaSuccess) {
        cudaGetLastError();
        cu->scratch = NULL;
        bd__cu_fail(cu, BD_ERROR_OUT_OF_MEMORY, "cuda scratch: cudaMalloc of %zu floats failed",
                    floats);
        return NULL;
    }
    cu->scratch_floats = floats;
    return cu->scratch;
}

/* ------------------------------------------------------------------------ */
/* device helpers                                                           */
/* ------------------------------------------------------------------------ */
#define BD__GRID_LOOP(i, n)                                                                  \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);               \
         i += (int64_t)blockDim.x * gridDim.x)
/* The same with index type I: the layout kernels below are templated on
   int (32-bit division is several times cheaper than 64-bit on a GPU) and
   int64_t, picked per launch by BD__KCALL_I (bd__cu_small). */
#define BD__GRID_LOOP_T(I, i, n)                                                             \
    for (I i = (I)(blockIdx.x * blockDim.x + threadIdx.x); i < (n);                          \
         i += (I)blockDim.x * (I)gridDim.x)

__device__ __forceinline__ double bd__warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v; /* in lane 0 */
}
__device__ __forceinline__ double bd__warp_allsum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v; /* in every lane */
}
__device__ __forceinline__ float bd__warp_allmax(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block, returned to every thread.  blockDim.x must be a
   multiple of 32 (<= 1024); every thread of the block must call it. */
__device__ double bd__block_allsum(double v) {
    __shared__ double sh[33];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = bd__warp_sum(v);
    __syncthreads(); /* previous call's readers are done */
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < nw ? sh[lane] : 0.0;
        v = bd__warp_sum(v);
        if (lane == 0) sh[32] = v;
    }
    __syncthreads();
    return sh[32];
}

/* ------------------------------------------------------------------------ */
/* kernels                                                                  */
/* ------------------------------------------------------------------------ */
__global__ void bd__k_scale(float *C, int64_t M, int64_t N, int64_t ldc, float beta) {
    BD__GRID_LOOP(i, M * N) {
        float *c = C + (i / N) * ldc + (i % N);
        *c = beta == 0.0f ? 0.0f : beta * *c;
    }
}

__global__ void bd__k_bias_rows(float *out, const float *b, int64_t N, int64_t Out) {
    BD__GRID_LOOP(i, N * Out) out[i] += b[i % Out];
}

/* db[o] += sum_n dout[n, o]: one thread per column */
__global__ void bd__k_colsum_add(float *db, const float *dout, int64_t N, int64_t Out) {
    BD__GRID_LOOP(o, Out) {
        double s = 0.0;
        for (int64_t n = 0; n < N; n++) s += dout[n * Out + o];
        db[o] += (float)s;
    }
}

__global__ void bd__k_silu_forward(float *out, const float *x, int64_t n) {
    BD__GRID_LOOP(i, n) {
        float v = x[i];
        out[i] = v / (1.0f + expf(-v));
    }
}

__global__ void bd__k_silu_backward(float *dx, const float *dout, const float *x, int64_t n) {
    BD__GRID_LOOP(i, n) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] += dout[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

/* col (Cin*k*k, N*P), P = Ho*Wo: row r = (ci*k + ky)*k + kx, column n*P + oy*Wo + ox.
   One thread per (ci, column) writes its k*k rows (coalesced along columns). */
template <typename I>
__global__ void bd__k_im2col(float *col, const float *x, I N, I Cin, I H, I W, I k, I s, I p,
                             I Ho, I Wo) {
    I P = Ho * Wo, NP = N * P, total = Cin * NP;
    BD__GRID_LOOP_T(I, i, total) {
        I ci = i / NP, q = i - ci * NP;
        I n = q / P, pix = q - n * P;
        I oy = pix / Wo, ox = pix - oy * Wo;
        I iy0 = oy * s - p, ix0 = ox * s - p;
        const float *xc = x + (n * Cin + ci) * H * W;
        float *c = col + ci * k * k * NP + q;
        for (I ky = 0; ky < k; ky++) {
            I iy = iy0 + ky;
            int rowok = iy >= 0 && iy < H;
            for (I kx = 0; kx < k; kx++, c += NP) {
                I ix = ix0 + kx;
                *c = (rowok && ix >= 0 && ix < W) ? xc[iy * W + ix] : 0.0f;
            }
        }
    }
}

/* dx (N,Cin,H,W) += col2im(dcol), dcol laid out as in bd__k_im2col; one
   thread per dx element gathers its k*k contributions. */
template <typename I>
__global__ void bd__k_col2im_add(float *dx, const float *dcol, I N, I Cin, I H, I W, I k, I s,
                                 I p, I Ho, I Wo) {
    I P = Ho * Wo, NP = N * P, total = N * Cin * H * W;
    BD__GRID_LOOP_T(I, i, total) {
        I row = i / W, ix = i - row * W, plane = row / H, iy = row - plane * H;
        I n = plane / Cin, ci = plane - n * Cin;
        float acc = 0.0f;
        for (I ky = 0; ky < k; ky++) {
            I ty = iy + p - ky;
            if (ty < 0 || ty % s) continue;
            I oy = ty / s;
            if (oy >= Ho) continue;
            for (I kx = 0; kx < k; kx++) {
                I tx = ix + p - kx;
                if (tx < 0 || tx % s) continue;
                I ox = tx / s;
                if (ox >= Wo) continue;
                acc += dcol[((ci * k + ky) * k + kx) * NP + n * P + oy * Wo + ox];
            }
        }
        dx[i] += acc;
    }
}

/* out (N,C,P) += b[c] */
template <typename I>
__global__ void bd__k_bias_nchw(float *out, const float *b, I N, I C, I P) {
    BD__GRID_LOOP_T(I, i, N * C * P) out[i] += b[(i / P) % C];
}

/* dtmp (C, N*P) <- dout (N, C, P) */
template <typename I>
__global__ void bd__k_nchw_to_cnp(float *dtmp, const float *dout, I N, I C, I P) {
    BD__GRID_LOOP_T(I, i, N * C * P) {
        I row = i / P, pix = i - row * P, n = row / C, c = row - n * C;
        dtmp[(c * N + n) * P + pix] = dout[i];
    }
}

/* Per-channel sums in two deterministic passes (fixed order, no atomics):
   part[r] = sum of row r (length L) of src, one warp per row; then
   dst[c] += sum over n of part[n*C + c], one warp per channel. */
__global__ void bd__k_rowsum_part(double *part, const float *src, int64_t rows, int64_t L) {
    int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return; /* whole warps leave together */
    const float *row = src + r * L;
    double s = 0.0;
    for (int64_t j = lane; j < L; j += 32) s += row[j];
    s = bd__warp_sum(s);
    if (lane == 0) part[r] = s;
}

__global__ void bd__k_chanpart_add(float *dst, const double *part, int64_t N, int64_t C) {
    int64_t c = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (c >= C) return;
    double s = 0.0;
    for (int64_t n = lane; n < N; n += 32) s += part[n * C + c];
    s = bd__warp_sum(s);
    if (lane == 0) dst[c] += (float)s;
}

/* one block per (n, g): two-pass statistics in double, then normalise */
__global__ void bd__k_groupnorm_forward(float *out, float *mean, float *rstd, const float *x,
                                        const float *gamma, const float *beta, int64_t C,
                                        int64_t HW, int64_t G, int silu) {
    int64_t ng = blockIdx.x, n = ng / G, g = ng % G, Cg = C / G, M = Cg * HW;
    const float *xg = x + (n * C + g * Cg) * HW;
    float *og = out + (n * C + g * Cg) * HW;
    double s = 0.0, v = 0.0, mu, rs;
    for (int i = threadIdx.x; i < (int)M; i += blockDim.x) s += xg[i];
    mu = bd__block_allsum(s) / (double)M;
    for (int i = threadIdx.x; i < (int)M; i += blockDim.x) {
        double d = xg[i] - mu;
        v += d * d;
    }
    v = bd__block_allsum(v);
    rs = 1.0 / sqrt(v / (double)M + 1e-5);
    if (threadIdx.x == 0) {
        mean[ng] = (float)mu;
        rstd[ng] = (float)rs;
    }
    for (int i = threadIdx.x; i < (int)M; i += blockDim.x) {
        int ch = (int)(g * Cg) + i / (int)HW;
        float a = (float)rs * gamma[ch];
        float bb = beta[ch] - (float)mu * a;
        float y = xg[i] * a + bb;
        og[i] = silu ? y / (1.0f + expf(-y)) : y;
    }
}

/* fused GroupNorm + SiLU backward: the gradient at the GroupNorm output,
   g = dout * silu'(y), with y = x a + b recomputed (a = rstd gamma,
   b = beta - mean a), as the CPU kernel does */
__device__ __forceinline__ float bd__gn_grad(const float *dout, const float *x, const float *gamma,
                                             const float *beta, float mu, float rs, int64_t idx,
                                             int64_t ch, int silu) {
    float d = dout[idx];
    if (silu) {
        float a = rs * gamma[ch], bb = (beta ? beta[ch] : 0.0f) - mu * a;
        float y = x[idx] * a + bb, sg = 1.0f / (1.0f + expf(-y));
        d = d * (sg * (1.0f + y * (1.0f - sg)));
    }
    return d;
}

/* dx += rstd (g - mean(g) - xh mean(g xh)), g = dout*gamma: block per (n, g) */
__global__ void bd__k_groupnorm_backward_dx(float *dx, const float *dout, const float *x,
                                            const float *mean, const float *rstd,
                                            const float *gamma, const float *beta, int64_t C,
                                            int64_t HW, int64_t G, int silu) {
    int64_t ng = blockIdx.x, n = ng / G, g = ng % G, Cg = C / G, M = Cg * HW;
    int64_t base = (n * C + g * Cg) * HW;
    float mu = mean[ng], rs = rstd[ng];
    double sg = 0.0, sgx = 0.0;
    for (int i = threadIdx.x; i < (int)M; i += blockDim.x) {
        int ch = (int)(g * Cg) + i / (int)HW;
        float gm = gamma[ch];
        float xh = (x[base + i] - mu) * rs;
        double d = bd__gn_grad(dout, x, gamma, beta, mu, rs, base + i, ch, silu);
        sg += gm * d;
        sgx += gm * d * xh;
    }
    sg = bd__block_allsum(sg);
    sgx = bd__block_allsum(sgx);
    float mg = (float)(sg / (double)M), mgx = (float)(sgx / (double)M);
    for (int i = threadIdx.x; i < (int)M; i += blockDim.x) {
        int ch = (int)(g * Cg) + i / (int)HW;
        float gm = gamma[ch];
        float xh = (x[base + i] - mu) * rs;
        float d = bd__gn_grad(dout, x, gamma, beta, mu, rs, base + i, ch, silu);
        dx[base + i] += rs * (d * gm - mg - xh * mgx);
    }
}

/* dgamma[c] += sum dout xh, dbeta[c] += sum dout, in two deterministic
   passes: part[n C + c] and part[N C + n C + c] = the two sums over one
   (n, c) plane (one warp per plane), then bd__k_chanpart_add sums each
   over n. */
__global__ void bd__k_groupnorm_backward_params_part(double *part, const float *dout,
                                                     const float *x, const float *mean,
                                                     const float *rstd, const float *gamma,
                                                     const float *beta, int64_t N, int64_t C,
                                                     int64_t HW, int64_t G, int silu) {
    int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= N * C) return; /* whole warps leave together */
    int64_t n = r / C, c = r - n * C, g = c / (C / G), base = r * HW;
    float mu = mean[n * G + g], rs = rstd[n * G + g];
    double sd = 0.0, sdx = 0.0;
    for (int64_t j = lane; j < HW; j += 32) {
        float xh = (x[base + j] - mu) * rs;
        float d = bd__gn_grad(dout, x, gamma, beta, mu, rs, base + j, c, silu);
        sd += d;
        sdx += (double)d * xh;
    }
    sd = bd__warp_sum(sd);
    sdx = bd__warp_sum(sdx);
    if (lane == 0) {
        part[r] = sdx;
        part[N * C + r] = sd;
    }
}

template <typename I>
__global__ void bd__k_upsample2x_forward(float *out, const float *x, I NC, I H, I W) {
    I W2 = 2 * W, P4 = 4 * H * W;
    BD__GRID_LOOP_T(I, i, NC * P4) {
        I nc = i / P4, r = i - nc * P4, oy = r / W2, ox = r - oy * W2;
        out[i] = x[nc * H * W + (oy / 2) * W + ox / 2];
    }
}

template <typename I>
__global__ void bd__k_upsample2x_backward(float *dx, const float *dout, I NC, I H, I W) {
    I W2 = 2 * W;
    BD__GRID_LOOP_T(I, i, NC * H * W) {
        I row = i / W, xx = i - row * W, nc = row / H, y = row - nc * H;
        const float *r0 = dout + nc * 4 * H * W + (2 * y) * W2, *r1 = r0 + W2;
        dx[i] += (r0[2 * xx] + r0[2 * xx + 1]) + (r1[2 * xx] + r1[2 * xx + 1]);
    }
}

template <typename I>
__global__ void bd__k_concat_forward(float *out, const float *a, const float *b, I N, I C1, I C2,
                                     I HW) {
    I S = (C1 + C2) * HW, S1 = C1 * HW, S2 = C2 * HW;
    BD__GRID_LOOP_T(I, i, N * S) {
        I n = i / S, r = i - n * S;
        out[i] = r < S1 ? a[n * S1 + r] : b[n * S2 + (r - S1)];
    }
}

template <typename I>
__global__ void bd__k_concat_backward(float *da, float *db, const float *dout, I N, I C1, I C2,
                                      I HW) {
    I S = (C1 + C2) * HW, S1 = C1 * HW, S2 = C2 * HW;
    BD__GRID_LOOP_T(I, i, N * S) {
        I n = i / S, r = i - n * S;
        if (r < S1) {
            if (da) da[n * S1 + r] += dout[i];
        } else if (db) {
            db[n * S2 + (r - S1)] += dout[i];
        }
    }
}

template <typename I>
__global__ void bd__k_add_channel_forward(float *x, const float *e, I NC, I HW) {
    BD__GRID_LOOP_T(I, i, NC * HW) x[i] += e[i / HW];
}

/* dst[r] += sum of row r (length L) of src: one warp per row */
__global__ void bd__k_rowsum_add(float *dst, const float *src, int64_t rows, int64_t L) {
    int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return; /* whole warps leave together */
    double s = 0.0;
    for (int64_t j = lane; j < L; j += 32) s += src[r * L + j];
    s = bd__warp_sum(s);
    if (lane == 0) dst[r] += (float)s;
}

__global__ void bd__k_add_forward(float *out, const float *a, const float *b, int64_t n) {
    BD__GRID_LOOP(i, n) out[i] = a[i] + b[i];
}

__global__ void bd__k_add_backward(float *da, float *db, const float *dout, int64_t n) {
    BD__GRID_LOOP(i, n) {
        float d = dout[i];
        if (da) da[i] += d;
        if (db) db[i] += d;
    }
}

/* in-place row softmax (max subtracted), one warp per row */
__global__ void bd__k_softmax_rows(float *a, int64_t rows, int64_t L) {
    int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    float *row = a + r * L;
    float m = -INFINITY;
    for (int64_t j = lane; j < L; j += 32) m = fmaxf(m, row[j]);
    m = bd__warp_allmax(m);
    double s = 0.0;
    for (int64_t j = lane; j < L; j += 32) {
        float e = expf(row[j] - m);
        row[j] = e;
        s += e;
    }
    s = bd__warp_allsum(s);
    float inv = (float)(1.0 / s);
    for (int64_t j = lane; j < L; j += 32) row[j] *= inv;
}

/* ds = A * (dA - rowsum(dA * A)) * scale for head h; dA rows are scratch
   rows n*HW + i, A rows are att[n, h, i, :].  One warp per row. */
__global__ void bd__k_softmax_backward(float *ds, const float *att, int64_t N, int64_t HW,
                                       int64_t heads, int64_t h, float scale) {
    int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= N * HW) return;
    int64_t n = r / HW, i = r % HW;
    const float *ar = att + ((n * heads + h) * HW + i) * HW;
    float *dr = ds + r * HW;
    double s = 0.0;
    for (int64_t j = lane; j < HW; j += 32) s += (double)dr[j] * ar[j];
    float sf = (float)bd__warp_allsum(s);
    for (int64_t j = lane; j < HW; j += 32) dr[j] = ar[j] * (dr[j] - sf) * scale;
}

__global__ void bd__k_timestep_embedding(float *out, const float *c_noise, int64_t N,
                                         int64_t dim) {
    int64_t half = dim / 2;
    BD__GRID_LOOP(i, N * dim) {
        int64_t n = i / dim, j = i % dim;
        double c = c_noise[n];
        if (j < half) {
            out[i] = (float)cos(c * exp(-log(10000.0) * (double)j / (double)half));
        } else if (j < 2 * half) {
            out[i] = (float)sin(c * exp(-log(10000.0) * (double)(j - half) / (double)half));
        } else {
            out[i] = 0.0f;
        }
    }
}

/* block partials of sum_n w_n sum_d (pred - target)^2 (w NULL = 1) */
__global__ void bd__k_mse_partial(double *part, const float *pred, const float *target,
                                  const float *w, int64_t N, int64_t D) {
    double s = 0.0;
    BD__GRID_LOOP(i, N * D) {
        double e = (double)pred[i] - (double)target[i];
        s += (w ? (double)w[i / D] : 1.0) * e * e;
    }
    s = bd__block_allsum(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

/* block partials of sum x^2 */
__global__ void bd__k_sumsq_partial(double *part, const float *x, int64_t n) {
    double s = 0.0;
    BD__GRID_LOOP(i, n) s += (double)x[i] * (double)x[i];
    s = bd__block_allsum(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

/* part[nb] = scale * sum of part[0..nb-1], one block, fixed order */
__global__ void bd__k_finish_sum(double *part, int nb, double scale) {
    double s = 0.0;
    for (int j = threadIdx.x; j < nb; j += blockDim.x) s += part[j];
    s = bd__block_allsum(s);
    if (threadIdx.x == 0) part[nb] = s * scale;
}

__global__ void bd__k_mse_backward(float *dpred, const float *pred, const float *target,
                                   const float *w, int64_t N, int64_t D) {
    BD__GRID_LOOP(i, N * D) {
        float c = (float)(2.0 * (w ? (double)w[i / D] : 1.0) / ((double)N * (double)D));
        dpred[i] += c * (pred[i] - target[i]);
    }
}

__global__ void bd__k_vec_axpby(float *out, int64_t ldo, const float *x, int64_t ldx,
                                const float *a, float sa, const float *y, int64_t ldy,
                                const float *b, float sb, int64_t N, int64_t D) {
    BD__GRID_LOOP(i, N * D) {
        int64_t n = i / D, d = i % D;
        float ca = sa * (a ? a[n] : 1.0f);
        float v = ca * x[n * ldx + d];
        if (y) {
            float cb = sb * (b ? b[n] : 1.0f);
            v = ca * x[n * ldx + d] + cb * y[n * ldy + d];
        }
        out[n * ldo + d] = v;
    }
}

__global__ void bd__k_vec_fill(float *out, float value, int64_t n) {
    BD__GRID_LOOP(i, n) out[i] = value;
}

__global__ void bd__k_vec_adam(float *p, const float *g, float *m, float *v, int64_t n,
                               bd_vec_adam_args a) {
    double decay = 1.0 - a.lr * a.weight_decay, step = a.lr / a.bias_c1;
    double sq2 = sqrt(a.bias_c2);
    BD__GRID_LOOP(i, n) {
        double gi = a.grad_scale * (double)g[i];
        double mi = a.beta1 * (double)m[i] + (1.0 - a.beta1) * gi;
        double vi = a.beta2 * (double)v[i] + (1.0 - a.beta2) * gi * gi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)((double)p[i] * decay - step * mi / (sqrt(vi) / sq2 + a.eps));
    }
}

__global__ void bd__k_vec_ema(float *ema, const float *p, int64_t n, double decay) {
    BD__GRID_LOOP(i, n) ema[i] = (float)(decay * (double)ema[i] + (1.0 - decay) * (double)p[i]);
}

/* ------------------------------------------------------------------------ */
/* launchers                                                                */
/* ------------------------------------------------------------------------ */
#define BD__CU(st) bd_cuda *cu = (bd_cuda *)(st)
#define BD__CU_SKIP(cu) if ((cu)->err != BD_SUCCESS) return
/* Every launch: BD__CU_THREADS threads per block on the context's stream.
   Under BDENSE_CUDA_EMULATE (tests/cuda/emu) it runs on the host. */
#ifdef BDENSE_CUDA_EMULATE
#define BD__KCALL(kernel, grid, ...)                                                         \
    bd__emu_launch((unsigned)(grid), BD__CU_THREADS, [=]() { kernel(__VA_ARGS__); })
#else
#define BD__KCALL(kernel, grid, ...)                                                         \
    kernel<<<(unsigned)(grid), BD__CU_THREADS, 0, cu->stream>>>(__VA_ARGS__)
#endif
#define BD__WARPS_PER_BLOCK (BD__CU_THREADS / 32)
static unsigned bd__cu_row_blocks(int64_t rows) {
    return (unsigned)((rows + BD__WARPS_PER_BLOCK - 1) / BD__WARPS_PER_BLOCK);
}

static int bd__cu_fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }
/* an index space small enough for the 32-bit kernel instances: the grid-
   stride loop (at most 65535*16*256 past the end) must not overflow int */
static int bd__cu_small(int64_t total) { return total >= 0 && total <= ((int64_t)1 << 30); }
/* the index space of im2col / col2im: the larger of col and the image */
static int64_t bd__cu_col_span(int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t KK, int64_t NP) {
    return KK * NP > N * Cin * H * W ? KK * NP : N * Cin * H * W;
}
#define BD__KCALL_I(total, kernel, grid, ...)                                                \
    do {                                                                                     \
        if (bd__cu_small(total)) BD__KCALL(kernel<int>, grid, __VA_ARGS__);                  \
        else BD__KCALL(kernel<int64_t>, grid, __VA_ARGS__);                                  \
    } while (0)

/* Row-major strided-batched GEMM (batch 1 = plain GEMM): for b < batch,
   C_b = alpha op(A_b) op(B_b) + beta C_b, X_b = X + b * strideX. */
static void bd__cu_gemm(bd_cuda *cu, int ta, int tb, int64_t M, int64_t N, int64_t K,
                        float alpha, const float *A, int64_t lda, int64_t sA, const float *B,
                        int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC,
                        int64_t batch) {
    cublasStatus_t st;
    BD__CU_SKIP(cu);
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (K <= 0 || alpha == 0.0f) { /* C = beta C, batch by batch */
        for (int64_t b = 0; b < batch; b++) {
            BD__KCALL(bd__k_scale, bd__cu_blocks(M * N), C + b * sC, M, N, ldc, beta);
            BD__CU_LAUNCHED(cu, "scale");
        }
        return;
    }
    if (!bd__cu_fits_int(M) || !bd__cu_fits_int(N) || !bd__cu_fits_int(K) ||
        !bd__cu_fits_int(lda) || !bd__cu_fits_int(ldb) || !bd__cu_fits_int(ldc) ||
        !bd__cu_fits_int(batch)) {
        bd__cu_fail(cu, BD_ERROR_OVERFLOW, "cuda sgemm: a dimension exceeds INT_MAX");
        return;
    }
    if (batch == 1) {
        st = cublasSgemm(cu->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                         (int)N, (int)M, (int)K, &alpha, B, (int)ldb, A, (int)lda, &beta, C,
                         (int)ldc);
    } else {
        st = cublasSgemmStridedBatched(cu->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                       ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K,
                                       &alpha, B, (int)ldb, (long long)sB, A, (int)lda,
                                       (long long)sA, &beta, C, (int)ldc, (long long)sC,
                                       (int)batch);
    }
    if (st != CUBLAS_STATUS_SUCCESS)
        bd__cu_fail(cu, BD_ERROR_BACKEND,
                    "cuBLAS sgemm (ta=%d tb=%d M=%lld N=%lld K=%lld batch=%lld): %s", ta, tb,
                    (long long)M, (long long)N, (long long)K, (long long)batch,
                    bd__cublas_string(st));
}

extern "C" {

void bd_sgemm_cuda(void *st, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                   int64_t ldc) {
    BD__CU(st);
    bd__cu_gemm(cu, ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

void bd_linear_forward_cuda(void *st, float *out, const float *x, const float *w, const float *b,
                            int64_t N, int64_t In, int64_t Out) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (N <= 0 || Out <= 0) return;
    bd__cu_gemm(cu, 0, 1, N, Out, In, 1.0f, x, In, 0, w, In, 0, 0.0f, out, Out, 0, 1);
    if (b) {
        BD__KCALL(bd__k_bias_rows, bd__cu_blocks(N * Out), out, b, N, Out);
        BD__CU_LAUNCHED(cu, "bias_rows");
    }
}

void bd_linear_backward_cuda(void *st, float *dx, float *dw, float *db, const float *dout,
                             const float *x, const float *w, int64_t N, int64_t In, int64_t Out) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (N <= 0 || Out <= 0) return;
    if (dx) bd__cu_gemm(cu, 0, 0, N, In, Out, 1.0f, dout, Out, 0, w, In, 0, 1.0f, dx, In, 0, 1);
    if (dw) bd__cu_gemm(cu, 1, 0, Out, In, N, 1.0f, dout, Out, 0, x, In, 0, 1.0f, dw, In, 0, 1);
    if (db) {
        BD__KCALL(bd__k_colsum_add, bd__cu_blocks(Out), db, dout, N, Out);
        BD__CU_LAUNCHED(cu, "colsum_add");
    }
}

void bd_silu_forward_cuda(void *st, float *out, const float *x, int64_t n) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (n <= 0) return;
    BD__KCALL(bd__k_silu_forward, bd__cu_blocks(n), out, x, n);
    BD__CU_LAUNCHED(cu, "silu_forward");
}

void bd_silu_backward_cuda(void *st, float *dx, const float *dout, const float *x, int64_t n) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (n <= 0 || !dx) return;
    BD__KCALL(bd__k_silu_backward, bd__cu_blocks(n), dx, dout, x, n);
    BD__CU_LAUNCHED(cu, "silu_backward");
}

/* `col` (the caller's per-sample workspace) is not used: the batch-wide
   col lives in the backend's scratch slab. */
void bd_conv2d_forward_cuda(void *st, float *out, float *col_unused, const float *x,
                            const float *w, const float *b, int64_t N, int64_t Cin, int64_t H,
                            int64_t W, int64_t Cout, int64_t k, int64_t s, int64_t p) {
    BD__CU(st);
    int64_t Ho, Wo, P, KK, NP;
    float *col;
    (void)col_unused;
    BD__CU_SKIP(cu);
    if (N <= 0 || Cout <= 0 || Cin <= 0 || k <= 0 || s <= 0 || p < 0) return;
    Ho = (H + 2 * p - k) / s + 1;
    Wo = (W + 2 * p - k) / s + 1;
    if (Ho <= 0 || Wo <= 0) return;
    P = Ho * Wo;
    KK = Cin * k * k;
    NP = N * P;
    if (k == 1 && s == 1 && p == 0) {
        /* out_n (Cout, P) = w (Cout, Cin) x_n (Cin, P) */
        bd__cu_gemm(cu, 0, 0, Cout, P, Cin, 1.0f, w, Cin, 0, x, P, Cin * P, 0.0f, out, P,
                    Cout * P, N);
    } else {
        col = bd__cu_scratch(cu, (size_t)(KK * NP));
        if (!col) return;
        BD__KCALL_I(bd__cu_col_span(N, Cin, H, W, KK, NP), bd__k_im2col, bd__cu_blocks(Cin * NP),
                    col, x, N, Cin, H, W, k, s, p, Ho, Wo);
        BD__CU_LAUNCHED(cu, "im2col");
        /* out_n (Cout, P) = w (Cout, KK) col[:, nP:(n+1)P] */
        bd__cu_gemm(cu, 0, 0, Cout, P, KK, 1.0f, w, KK, 0, col, NP, P, 0.0f, out, P, Cout * P, N);
    }
    if (b) {
        BD__KCALL_I(N * Cout * P, bd__k_bias_nchw, bd__cu_blocks(N * Cout * P), out, b, N, Cout, P);
        BD__CU_LAUNCHED(cu, "bias_nchw");
    }
}

void bd_conv2d_backward_cuda(void *st, float *dx, float *dw, float *db, float *col_unused,
                             const float *dout, const float *x, const float *w, int64_t N,
                             int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t k,
                             int64_t s, int64_t p) {
    BD__CU(st);
    int64_t Ho, Wo, P, KK, NP, poff;
    float *col, *dtmp;
    double *part;
    int fast = k == 1 && s == 1 && p == 0;
    (void)col_unused;
    BD__CU_SKIP(cu);
    if (N <= 0 || Cout <= 0 || Cin <= 0 || k <= 0 || s <= 0 || p < 0) return;
    Ho = (H + 2 * p - k) / s + 1;
    Wo = (W + 2 * p - k) / s + 1;
    if (Ho <= 0 || Wo <= 0) return;
    P = Ho * Wo;
    KK = Cin * k * k;
    NP = N * P;
    /* scratch: [bias partials: 2 N Cout floats, rounded up to 256 bytes] [col] [dtmp] */
    poff = (2 * N * Cout + 63) / 64 * 64;
    col = bd__cu_scratch(cu, (size_t)(poff + (dx || dw ? KK * NP + Cout * NP : 0)));
    if (!col) return;
    part = (double *)col;
    col += poff;
    dtmp = col + KK * NP;
    if (db) { /* the bias gradient, two deterministic passes */
        BD__KCALL(bd__k_rowsum_part, bd__cu_row_blocks(N * Cout), part, dout, N * Cout, P);
        BD__CU_LAUNCHED(cu, "rowsum_part");
        BD__KCALL(bd__k_chanpart_add, bd__cu_row_blocks(Cout), db, part, N, Cout);
        BD__CU_LAUNCHED(cu, "chanpart_add");
    }
    if (!dx && !dw) return;
    if (dw) {
        /* dw (Cout, KK) += dtmp (Cout, NP) col^T */
        BD__KCALL_I(N * Cout * P, bd__k_nchw_to_cnp, bd__cu_blocks(N * Cout * P), dtmp, dout, N,
                    Cout, P);
        BD__CU_LAUNCHED(cu, "nchw_to_cnp");
        BD__KCALL_I(bd__cu_col_span(N, Cin, H, W, KK, NP), bd__k_im2col, bd__cu_blocks(Cin * NP),
                    col, x, N, Cin, H, W, k, s, p, Ho, Wo);
        BD__CU_LAUNCHED(cu, "im2col");
        bd__cu_gemm(cu, 0, 1, Cout, KK, NP, 1.0f, dtmp, NP, 0, col, NP, 0, 1.0f, dw, KK, 0, 1);
    }
    if (dx) {
        if (fast) {
            /* dx_n (Cin, P) += w^T (Cin, Cout) dout_n (Cout, P) */
            bd__cu_gemm(cu, 1, 0, Cin, P, Cout, 1.0f, w, Cin, 0, dout, P, Cout * P, 1.0f, dx, P,
                        Cin * P, N);
        } else {
            /* dcol[:, nP:(n+1)P] = w^T (KK, Cout) dout_n (Cout, P), then col2im += */
            bd__cu_gemm(cu, 1, 0, KK, P, Cout, 1.0f, w, KK, 0, dout, P, Cout * P, 0.0f, col, NP,
                        P, N);
            BD__KCALL_I(bd__cu_col_span(N, Cin, H, W, KK, NP), bd__k_col2im_add,
                        bd__cu_blocks(N * Cin * H * W), dx, col, N, Cin, H, W, k, s, p, Ho, Wo);
            BD__CU_LAUNCHED(cu, "col2im_add");
        }
    }
}

static void bd__cu_groupnorm_forward(bd_cuda *cu, float *out, float *mean, float *rstd,
                                     const float *x, const float *gamma, const float *beta,
                                     int64_t N, int64_t C, int64_t HW, int64_t G, int silu) {
    BD__CU_SKIP(cu);
    if (N <= 0 || C <= 0 || HW <= 0 || G <= 0) return;
    BD__KCALL(bd__k_groupnorm_forward, (unsigned)(N * G), out, mean, rstd, x, gamma, beta, C, HW, G,
              silu);
    BD__CU_LAUNCHED(cu, "groupnorm_forward");
}

static void bd__cu_groupnorm_backward(bd_cuda *cu, float *dx, float *dgamma, float *dbeta,
                                      const float *dout, const float *x, const float *mean,
                                      const float *rstd, const float *gamma, const float *beta,
                                      int64_t N, int64_t C, int64_t HW, int64_t G, int silu) {
    BD__CU_SKIP(cu);
    if (N <= 0 || C <= 0 || HW <= 0 || G <= 0) return;
    if (dgamma || dbeta) {
        double *part = (double *)bd__cu_scratch(cu, (size_t)(4 * N * C));
        if (!part) return;
        BD__KCALL(bd__k_groupnorm_backward_params_part, bd__cu_row_blocks(N * C), part, dout, x,
                  mean, rstd, gamma, beta, N, C, HW, G, silu);
        BD__CU_LAUNCHED(cu, "groupnorm_backward_params_part");
        if (dgamma) BD__KCALL(bd__k_chanpart_add, bd__cu_row_blocks(C), dgamma, part, N, C);
        if (dbeta) BD__KCALL(bd__k_chanpart_add, bd__cu_row_blocks(C), dbeta, part + N * C, N, C);
        BD__CU_LAUNCHED(cu, "chanpart_add");
    }
    if (dx) {
        BD__KCALL(bd__k_groupnorm_backward_dx, (unsigned)(N * G), dx, dout, x, mean, rstd, gamma,
                  beta, C, HW, G, silu);
        BD__CU_LAUNCHED(cu, "groupnorm_backward_dx");
    }
}

void bd_groupnorm_forward_cuda(void *st, float *out, float *mean, float *rstd, const float *x,
                               const float *gamma, const float *beta, int64_t N, int64_t C,
                               int64_t HW, int64_t G) {
    bd__cu_groupnorm_forward((bd_cuda *)st, out, mean, rstd, x, gamma, beta, N, C, HW, G, 0);
}

void bd_groupnorm_backward_cuda(void *st, float *dx, float *dgamma, float *dbeta,
                                const float *dout, const float *x, const float *mean,
                                const float *rstd, const float *gamma, int64_t N, int64_t C,
                                int64_t HW, int64_t G) {
    bd__cu_groupnorm_backward((bd_cuda *)st, dx, dgamma, dbeta, dout, x, mean, rstd, gamma, NULL, N,
                              C, HW, G, 0);
}

/* fused GroupNorm + SiLU (out = silu(GN(x)); backward recomputes GN(x)) */
void bd_groupnorm_silu_forward_cuda(void *st, float *out, float *mean, float *rstd,
                                    const float *x, const float *gamma, const float *beta,
                                    int64_t N, int64_t C, int64_t HW, int64_t G) {
    bd__cu_groupnorm_forward((bd_cuda *)st, out, mean, rstd, x, gamma, beta, N, C, HW, G, 1);
}

void bd_groupnorm_silu_backward_cuda(void *st, float *dx, float *dgamma, float *dbeta,
                                     const float *dout, const float *x, const float *mean,
                                     const float *rstd, const float *gamma, const float *beta,
                                     int64_t N, int64_t C, int64_t HW, int64_t G) {
    bd__cu_groupnorm_backward((bd_cuda *)st, dx, dgamma, dbeta, dout, x, mean, rstd, gamma, beta, N,
                              C, HW, G, 1);
}

void bd_upsample2x_forward_cuda(void *st, float *out, const float *x, int64_t N, int64_t C,
                                int64_t H, int64_t W) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (N * C * H * W <= 0) return;
    BD__KCALL_I(N * C * 4 * H * W, bd__k_upsample2x_forward, bd__cu_blocks(N * C * 4 * H * W), out,
                x, N * C, H, W);
    BD__CU_LAUNCHED(cu, "upsample2x_forward");
}

void bd_upsample2x_backward_cuda(void *st, float *dx, const float *dout, int64_t N, int64_t C,
                                 int64_t H, int64_t W) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (N * C * H * W <= 0 || !dx) return;
    BD__KCALL_I(N * C * 4 * H * W, bd__k_upsample2x_backward, bd__cu_blocks(N * C * H * W), dx,
                dout, N * C, H, W);
    BD__CU_LAUNCHED(cu, "upsample2x_backward");
}

void bd_concat_forward_cuda(void *st, float *out, const float *a, const float *b, int64_t N,
                            int64_t C1, int64_t C2, int64_t HW) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (N * (C1 + C2) * HW <= 0) return;
    BD__KCALL_I(N * (C1 + C2) * HW, bd__k_concat_forward, bd__cu_blocks(N * (C1 + C2) * HW), out, a,
                b, N, C1, C2, HW);
    BD__CU_LAUNCHED(cu, "concat_forward");
}

void bd_concat_backward_cuda(void *st, float *da, float *db, const float *dout, int64_t N,
                             int64_t C1, int64_t C2, int64_t HW) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (N * (C1 + C2) * HW <= 0 || (!da && !db)) return;
    BD__KCALL_I(N * (C1 + C2) * HW, bd__k_concat_backward, bd__cu_blocks(N * (C1 + C2) * HW), da,
                db, dout, N, C1, C2, HW);
    BD__CU_LAUNCHED(cu, "concat_backward");
}

void bd_add_channel_forward_cuda(void *st, float *x, const float *e, int64_t N, int64_t C,
                                 int64_t HW) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (N * C * HW <= 0) return;
    BD__KCALL_I(N * C * HW, bd__k_add_channel_forward, bd__cu_blocks(N * C * HW), x, e, N * C, HW);
    BD__CU_LAUNCHED(cu, "add_channel_forward");
}

void bd_add_channel_backward_cuda(void *st, float *de, const float *dout, int64_t N, int64_t C,
                                  int64_t HW) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (N * C <= 0 || HW <= 0 || !de) return;
    BD__KCALL(bd__k_rowsum_add, bd__cu_row_blocks(N * C), de, dout, N * C, HW);
    BD__CU_LAUNCHED(cu, "rowsum_add");
}

void bd_add_forward_cuda(void *st, float *out, const float *a, const float *b, int64_t n) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (n <= 0) return;
    BD__KCALL(bd__k_add_forward, bd__cu_blocks(n), out, a, b, n);
    BD__CU_LAUNCHED(cu, "add_forward");
}

void bd_add_backward_cuda(void *st, float *da, float *db, const float *dout, int64_t n) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (n <= 0 || (!da && !db)) return;
    BD__KCALL(bd__k_add_backward, bd__cu_blocks(n), da, db, dout, n);
    BD__CU_LAUNCHED(cu, "add_backward");
}

void bd_attention_forward_cuda(void *st, float *out, float *att, const float *qkv, int64_t N,
                               int64_t C, int64_t HW, int64_t heads) {
    BD__CU(st);
    int64_t Ch, h;
    float scale;
    BD__CU_SKIP(cu);
    if (N <= 0 || C <= 0 || HW <= 0 || heads <= 0) return;
    Ch = C / heads;
    scale = (float)(1.0 / sqrt((double)Ch));
    for (h = 0; h < heads; h++) {
        const float *q = qkv + h * Ch * HW, *kk = q + C * HW;
        /* att[n,h] (HW, HW) = scale q_n^T k_n */
        bd__cu_gemm(cu, 1, 0, HW, HW, Ch, scale, q, HW, 3 * C * HW, kk, HW, 3 * C * HW, 0.0f,
                    att + h * HW * HW, HW, heads * HW * HW, N);
    }
    BD__KCALL(bd__k_softmax_rows, bd__cu_row_blocks(N * heads * HW), att, N * heads * HW, HW);
    BD__CU_LAUNCHED(cu, "softmax_rows");
    for (h = 0; h < heads; h++) {
        const float *v = qkv + 2 * C * HW + h * Ch * HW;
        /* out_n[h] (Ch, HW) = v_n att[n,h]^T */
        bd__cu_gemm(cu, 0, 1, Ch, HW, HW, 1.0f, v, HW, 3 * C * HW, att + h * HW * HW, HW,
                    heads * HW * HW, 0.0f, out + h * Ch * HW, HW, C * HW, N);
    }
}

void bd_attention_backward_cuda(void *st, float *dqkv, float *scratch_unused, const float *dout,
                                const float *qkv, const float *att, int64_t N, int64_t C,
                                int64_t HW, int64_t heads) {
    BD__CU(st);
    int64_t Ch, h, S3 = 3 * C * HW, SA = heads * HW * HW;
    float scale, *ds;
    (void)scratch_unused;
    BD__CU_SKIP(cu);
    if (N <= 0 || C <= 0 || HW <= 0 || heads <= 0 || !dqkv) return;
    Ch = C / heads;
    scale = (float)(1.0 / sqrt((double)Ch));
    ds = bd__cu_scratch(cu, (size_t)(N * HW * HW));
    if (!ds) return;
    for (h = 0; h < heads; h++) {
        const float *q = qkv + h * Ch * HW, *kk = q + C * HW, *v = kk + C * HW;
        float *dq = dqkv + h * Ch * HW, *dk = dq + C * HW, *dv = dk + C * HW;
        const float *a = att + h * HW * HW, *dO = dout + h * Ch * HW;
        /* dv += dO a */
        bd__cu_gemm(cu, 0, 0, Ch, HW, HW, 1.0f, dO, HW, C * HW, a, HW, SA, 1.0f, dv, HW, S3, N);
        /* dA = dO^T v */
        bd__cu_gemm(cu, 1, 0, HW, HW, Ch, 1.0f, dO, HW, C * HW, v, HW, S3, 0.0f, ds, HW, HW * HW,
                    N);
        BD__KCALL(bd__k_softmax_backward, bd__cu_row_blocks(N * HW), ds, att, N, HW, heads, h, scale);
        BD__CU_LAUNCHED(cu, "softmax_backward");
        /* dq += k dS^T;  dk += q dS */
        bd__cu_gemm(cu, 0, 1, Ch, HW, HW, 1.0f, kk, HW, S3, ds, HW, HW * HW, 1.0f, dq, HW, S3, N);
        bd__cu_gemm(cu, 0, 0, Ch, HW, HW, 1.0f, q, HW, S3, ds, HW, HW * HW, 1.0f, dk, HW, S3, N);
    }
}

void bd_timestep_embedding_forward_cuda(void *st, float *out, const float *c_noise, int64_t N,
                                        int64_t dim) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (N <= 0 || dim <= 0) return;
    BD__KCALL(bd__k_timestep_embedding, bd__cu_blocks(N * dim), out, c_noise, N, dim);
    BD__CU_LAUNCHED(cu, "timestep_embedding");
}

/* reduction epilogue: finish the block partials and fetch the total */
static double bd__cu_finish(bd_cuda *cu, int nb, double scale) {
    double total = NAN;
    cudaError_t e;
    BD__KCALL(bd__k_finish_sum, 1, cu->red, nb, scale);
    BD__CU_LAUNCHED(cu, "finish_sum");
    if (cu->err != BD_SUCCESS) return NAN;
    e = cudaMemcpyAsync(&total, cu->red + nb, sizeof(double), cudaMemcpyDeviceToHost, cu->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(cu->stream);
    if (e != cudaSuccess) {
        bd__cu_fail(cu, BD_ERROR_BACKEND, "cuda reduction result: %s", cudaGetErrorString(e));
        return NAN;
    }
    return total;
}

static int bd__cu_red_blocks(int64_t n) {
    int64_t b = (n + BD__CU_THREADS - 1) / BD__CU_THREADS;
    if (b < 1) b = 1;
    if (b > BD__CU_RED_BLOCKS) b = BD__CU_RED_BLOCKS;
    return (int)b;
}

double bd_mse_forward_cuda(void *st, const float *pred, const float *target, const float *w,
                           int64_t N, int64_t D) {
    BD__CU(st);
    int nb;
    if (cu->err != BD_SUCCESS) return NAN;
    if (N <= 0 || D <= 0) return 0.0;
    nb = bd__cu_red_blocks(N * D);
    BD__KCALL(bd__k_mse_partial, (unsigned)nb, cu->red, pred, target, w,
                                                                        N, D);
    BD__CU_LAUNCHED(cu, "mse_partial");
    return bd__cu_finish(cu, nb, 1.0 / ((double)N * (double)D));
}

void bd_mse_backward_cuda(void *st, float *dpred, const float *pred, const float *target,
                          const float *w, int64_t N, int64_t D) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (N <= 0 || D <= 0 || !dpred) return;
    BD__KCALL(bd__k_mse_backward, bd__cu_blocks(N * D), dpred, pred, target, w, N, D);
    BD__CU_LAUNCHED(cu, "mse_backward");
}

void bd_vec_axpby_cuda(void *st, float *out, int64_t ldo, const float *x, int64_t ldx,
                       const float *a, float sa, const float *y, int64_t ldy, const float *b,
                       float sb, int64_t N, int64_t D) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (N <= 0 || D <= 0) return;
    BD__KCALL(bd__k_vec_axpby, bd__cu_blocks(N * D), out, ldo, x, ldx, a, sa, y, ldy, b, sb, N, D);
    BD__CU_LAUNCHED(cu, "vec_axpby");
}

void bd_vec_fill_cuda(void *st, float *out, float value, int64_t n) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (n <= 0) return;
    BD__KCALL(bd__k_vec_fill, bd__cu_blocks(n), out, value, n);
    BD__CU_LAUNCHED(cu, "vec_fill");
}

void bd_vec_adam_cuda(void *st, float *p, const float *g, float *m, float *v, int64_t n,
                      const bd_vec_adam_args *args) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (n <= 0) return;
    BD__KCALL(bd__k_vec_adam, bd__cu_blocks(n), p, g, m, v, n, *args);
    BD__CU_LAUNCHED(cu, "vec_adam");
}

void bd_vec_ema_cuda(void *st, float *ema, const float *p, int64_t n, double decay) {
    BD__CU(st);
    BD__CU_SKIP(cu);
    if (n <= 0) return;
    BD__KCALL(bd__k_vec_ema, bd__cu_blocks(n), ema, p, n, decay);
    BD__CU_LAUNCHED(cu, "vec_ema");
}

double bd_vec_sumsq_cuda(void *st, const float *x, int64_t n) {
    BD__CU(st);
    int nb;
    if (cu->err != BD_SUCCESS) return NAN;
    if (n <= 0) return 0.0;
    nb = bd__cu_red_blocks(n);
    BD__KCALL(bd__k_sumsq_partial, (unsigned)nb, cu->red, x, n);
    BD__CU_LAUNCHED(cu, "sumsq_partial");
    return bd__cu_finish(cu, nb, 1.0);
}

} /* extern "C" */

/* ------------------------------------------------------------------------ */
/* buffers                                                                  */
/* ------------------------------------------------------------------------ */
static bd_result bd__cu_buffer_alloc(void *st, bd_context *ctx, size_t bytes, void **out) {
    cudaError_t e;
    (void)st;
    if (!out) return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "cuda buffer_alloc: out is NULL");
    *out = NULL;
    e = cudaMalloc(out, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *out = NULL;
        return bd_error(ctx, BD_ERROR_OUT_OF_MEMORY, "cudaMalloc of %zu bytes failed: %s", bytes,
                        cudaGetErrorString(e));
    }
    return BD_SUCCESS;
}

static void bd__cu_buffer_free(void *st, bd_context *ctx, void *p) {
    (void)st;
    (void)ctx;
    if (p) cudaFree(p);
}

static bd_result bd__cu_buffer_zero(void *st, bd_context *ctx, void *p, size_t bytes) {
    BD__CU(st);
    BD__CUDA_CHECK(ctx, cudaMemsetAsync(p, 0, bytes, cu->stream));
    return BD_SUCCESS;
}

/* Host-to-device waits for the copy, so the caller may reuse or free its
   host buffer at once (pinned or not). */
static bd_result bd__cu_copy_h2d(void *st, bd_context *ctx, void *dst, const void *src,
                                 size_t bytes) {
    BD__CU(st);
    BD__CUDA_CHECK(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cu->stream));
    BD__CUDA_CHECK(ctx, cudaStreamSynchronize(cu->stream));
    return BD_SUCCESS;
}

static bd_result bd__cu_copy_d2h(void *st, bd_context *ctx, void *dst, const void *src,
                                 size_t bytes) {
    BD__CU(st);
    BD__CUDA_CHECK(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cu->stream));
    BD__CUDA_CHECK(ctx, cudaStreamSynchronize(cu->stream));
    return BD_SUCCESS;
}

static bd_result bd__cu_copy_d2d(void *st, bd_context *ctx, void *dst, const void *src,
                                 size_t bytes) {
    BD__CU(st);
    if (dst == src) return BD_SUCCESS;
    BD__CUDA_CHECK(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cu->stream));
    return BD_SUCCESS;
}

static bd_result bd__cu_sync(void *st, bd_context *ctx) {
    BD__CU(st);
    cudaError_t e = cudaStreamSynchronize(cu->stream);
    if (cu->err != BD_SUCCESS) {
        bd_result r = cu->err;
        cu->err = BD_SUCCESS;
        return bd_error(ctx, r, "%s", cu->msg);
    }
    if (e != cudaSuccess)
        return bd_error(ctx, BD_ERROR_BACKEND, "cudaStreamSynchronize: %s", cudaGetErrorString(e));
    return BD_SUCCESS;
}

static void bd__cu_destroy(bd_cuda *cu) {
    if (cu->scratch) cudaFree(cu->scratch);
    if (cu->red) cudaFree(cu->red);
    if (cu->blas) cublasDestroy(cu->blas);
    if (cu->stream) cudaStreamDestroy(cu->stream);
    cu->scratch = NULL;
    cu->red = NULL;
    cu->blas = NULL;
    cu->stream = NULL;
}

static void bd__cu_release(void *st, bd_context *ctx) {
    BD__CU(st);
    if (ctx && ctx->backend == &cu->be) ctx->backend = bd_backend_cpu();
    if (cu->stream) cudaStreamSynchronize(cu->stream);
    bd__cu_destroy(cu);
    bd_free(ctx, cu);
}

/* ------------------------------------------------------------------------ */
/* public API                                                               */
/* ------------------------------------------------------------------------ */
extern "C" int bd_cuda_probe(char *why, size_t cap) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (why && cap) snprintf(why, cap, "cudaGetDeviceCount: %s", cudaGetErrorString(e));
        return 0;
    }
    if (why && cap) snprintf(why, cap, n > 0 ? "%d device(s)" : "cudaGetDeviceCount: 0 devices", n);
    return n;
}

extern "C" int bd_cuda_device_count(void) { return bd_cuda_probe(NULL, 0); }

static bd_cuda *bd__cu_of(bd_context *ctx) {
    if (!ctx || !ctx->backend || ctx->backend->release != bd__cu_release) return NULL;
    return (bd_cuda *)ctx->backend->state;
}

extern "C" bd_result bd_cuda_init(bd_context *ctx, int device) {
    bd_cuda *cu;
    cudaError_t e;
    cublasStatus_t bs;
    bd_result r;
    int count;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (bd__cu_of(ctx)) return bd_error(ctx, BD_ERROR_STATE, "bd_cuda_init: CUDA already installed on this context");
    if (ctx->backend && ctx->backend->device_memory)
        return bd_error(ctx, BD_ERROR_STATE, "bd_cuda_init: context already has device backend '%s'", ctx->backend->name);
    count = bd_cuda_device_count();
    if (count <= 0) return bd_error(ctx, BD_ERROR_UNSUPPORTED, "bd_cuda_init: no CUDA device (driver missing or no GPU)");
    if (device < 0 || device >= count)
        return bd_error(ctx, BD_ERROR_INVALID_ARGUMENT, "bd_cuda_init: device %d not in 0..%d", device, count - 1);
    cu = (bd_cuda *)bd_alloc(ctx, sizeof(bd_cuda));
    if (!cu) return ctx->last_result;
    memset(cu, 0, sizeof *cu);
    cu->device = device;
    cu->err = BD_SUCCESS;
    r = BD_SUCCESS;
    e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaMalloc((void **)&cu->red, (BD__CU_RED_BLOCKS + 1) * sizeof(double));
    if (e != cudaSuccess) {
        cudaGetLastError();
        r = bd_error(ctx, BD_ERROR_BACKEND, "bd_cuda_init(device %d): %s", device, cudaGetErrorString(e));
    }
    if (r == BD_SUCCESS) {
        bs = cublasCreate(&cu->blas);
        if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(cu->blas, cu->stream);
        if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetMathMode(cu->blas, CUBLAS_DEFAULT_MATH);
        if (bs != CUBLAS_STATUS_SUCCESS)
            r = bd_error(ctx, BD_ERROR_BACKEND, "bd_cuda_init: cuBLAS: %s", bd__cublas_string(bs));
    }
    if (r != BD_SUCCESS) {
        bd__cu_destroy(cu);
        bd_free(ctx, cu);
        return r;
    }
    cu->be.name = "cuda";
    cu->be.device_memory = 1;
    cu->be.state = cu;
    cu->be.release = bd__cu_release;
    cu->be.buffer_alloc = bd__cu_buffer_alloc;
    cu->be.buffer_free = bd__cu_buffer_free;
    cu->be.buffer_zero = bd__cu_buffer_zero;
    cu->be.copy_h2d = bd__cu_copy_h2d;
    cu->be.copy_d2h = bd__cu_copy_d2h;
    cu->be.copy_d2d = bd__cu_copy_d2d;
    cu->be.sync = bd__cu_sync;
    cu->be.sgemm = bd_sgemm_cuda;
    cu->be.linear_forward = bd_linear_forward_cuda;
    cu->be.linear_backward = bd_linear_backward_cuda;
    cu->be.silu_forward = bd_silu_forward_cuda;
    cu->be.silu_backward = bd_silu_backward_cuda;
    cu->be.conv2d_forward = bd_conv2d_forward_cuda;
    cu->be.conv2d_backward = bd_conv2d_backward_cuda;
    cu->be.groupnorm_forward = bd_groupnorm_forward_cuda;
    cu->be.groupnorm_backward = bd_groupnorm_backward_cuda;
    cu->be.groupnorm_silu_forward = bd_groupnorm_silu_forward_cuda;
    cu->be.groupnorm_silu_backward = bd_groupnorm_silu_backward_cuda;
    cu->be.upsample2x_forward = bd_upsample2x_forward_cuda;
    cu->be.upsample2x_backward = bd_upsample2x_backward_cuda;
    cu->be.concat_forward = bd_concat_forward_cuda;
    cu->be.concat_backward = bd_concat_backward_cuda;
    cu->be.add_channel_forward = bd_add_channel_forward_cuda;
    cu->be.add_channel_backward = bd_add_channel_backward_cuda;
    cu->be.add_forward = bd_add_forward_cuda;
    cu->be.add_backward = bd_add_backward_cuda;
    cu->be.attention_forward = bd_attention_forward_cuda;
    cu->be.attention_backward = bd_attention_backward_cuda;
    cu->be.timestep_embedding_forward = bd_timestep_embedding_forward_cuda;
    cu->be.mse_forward = bd_mse_forward_cuda;
    cu->be.mse_backward = bd_mse_backward_cuda;
    cu->be.vec_axpby = bd_vec_axpby_cuda;
    cu->be.vec_fill = bd_vec_fill_cuda;
    cu->be.vec_adam = bd_vec_adam_cuda;
    cu->be.vec_ema = bd_vec_ema_cuda;
    cu->be.vec_sumsq = bd_vec_sumsq_cuda;
    r = bd_context_set_backend(ctx, &cu->be);
    if (r != BD_SUCCESS) {
        bd__cu_destroy(cu);
        bd_free(ctx, cu);
    }
    return r;
}

extern "C" bd_result bd_cuda_set_tf32(bd_context *ctx, int on) {
    bd_cuda *cu = bd__cu_of(ctx);
    cublasStatus_t s;
    if (!ctx) return BD_ERROR_INVALID_ARGUMENT;
    if (!cu) return bd_error(ctx, BD_ERROR_STATE, "bd_cuda_set_tf32: CUDA is not installed on this context");
    s = cublasSetMathMode(cu->blas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    if (s != CUBLAS_STATUS_SUCCESS)
        return bd_error(ctx, BD_ERROR_BACKEND, "cublasSetMathMode: %s", bd__cublas_string(s));
    cu->tf32 = on ? 1 : 0;
    return BD_SUCCESS;
}

extern "C" void bd_cuda_shutdown(bd_context *ctx) {
    bd_cuda *cu = bd__cu_of(ctx);
    if (cu) bd__cu_release(cu, ctx);
}
