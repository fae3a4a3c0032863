/* bd_cuda_emu.h - a host emulation of the small CUDA/cuBLAS subset that
   bdense_cuda.cu uses, so its kernels and launchers can be tested on a
   machine without a GPU (and under ASan: device buffers are host mallocs).

   Compile bdense_cuda.cu as C++ with -DBDENSE_CUDA_EMULATE -Itests/cuda/emu.
   It is a test tool, not a GPU: single-threaded, slow, test sizes only.

   Execution model: a launch runs its blocks one after another; the threads
   of a block are ucontext fibers scheduled round-robin.  A fiber runs until
   it finishes or reaches a barrier:
     __syncthreads()        waits for every thread of the block that has
                            not exited;
     __shfl_*_sync()        exchange through a per-warp slot array between
                            two warp barriers (every not-exited lane).
   A barrier that can never be released (divergent __syncthreads, or a warp
   whose lanes wait at different barriers) aborts with a message: on a GPU
   that would be a hang or undefined behaviour.  __shared__ becomes static:
   right because blocks never run concurrently here.
   cuBLAS: cublasSgemm / cublasSgemmStridedBatched are naive column-major
   loops (double accumulation) that check their arguments as cuBLAS does
   (CUBLAS_STATUS_INVALID_VALUE for a leading dimension that is too small).
   cudaGetDeviceCount reports one device unless BD_EMU_NO_DEVICE is set in
   the environment (to test the skip path). */
#ifndef BD_CUDA_EMU_H
#define BD_CUDA_EMU_H

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
};
static dim3 threadIdx = {0, 1, 1}, blockIdx = {0, 1, 1}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};

/* ---- runtime ---- */
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100
} cudaError_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3
};
typedef struct bd__emu_stream *cudaStream_t;
#define cudaStreamNonBlocking 0x01

static cudaError_t bd__emu_last = cudaSuccess;
static int bd__emu_streams = 0;

static inline const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error (emulated)";
    case cudaErrorInvalidValue: return "invalid argument (emulated)";
    case cudaErrorMemoryAllocation: return "out of memory (emulated)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulated)";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected (emulated)";
    }
    return "unknown error (emulated)";
}
static inline cudaError_t cudaGetLastError(void) {
    cudaError_t e = bd__emu_last;
    bd__emu_last = cudaSuccess;
    return e;
}
static inline cudaError_t cudaGetDeviceCount(int *n) {
    if (getenv("BD_EMU_NO_DEVICE")) {
        *n = 0;
        return cudaErrorNoDevice;
    }
    *n = 1;
    return cudaSuccess;
}
static inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
    *s = (cudaStream_t)(uintptr_t)(0x1000 + 16 * ++bd__emu_streams);
    return cudaSuccess;
}
static inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
static inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
static inline cudaError_t cudaMalloc(void **p, size_t bytes) {
    *p = bytes ? malloc(bytes) : NULL;
    if (!*p) return cudaErrorMemoryAllocation;
    /* garbage, as fresh device memory would be */
    memset(*p, 0xA5, bytes);
    return cudaSuccess;
}
static inline cudaError_t cudaFree(void *p) {
    free(p);
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t) {
    if (n && (!d || !s)) return cudaErrorInvalidValue;
    if (n) memmove(d, s, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t) {
    if (n && !d) return cudaErrorInvalidValue;
    if (n) memset(d, v, n);
    return cudaSuccess;
}

/* ---- fibers ---- */
enum { BD__EMU_RUN = 0, BD__EMU_BAR_BLOCK, BD__EMU_BAR_WARP, BD__EMU_DONE };
struct bd__emu_fiber {
    ucontext_t uc;
    char *stack;
    int state;
};
static std::vector<bd__emu_fiber> bd__emu_f;
static ucontext_t bd__emu_sched;
static int bd__emu_cur = 0;
static const std::function<void()> *bd__emu_fn = NULL;
static double bd__emu_slot[32][32];
#define BD__EMU_STACK (256 * 1024)

/* frees the fiber stacks at exit (keeps leak checkers quiet) */
static struct bd__emu_cleanup {
    ~bd__emu_cleanup() {
        for (size_t i = 0; i < bd__emu_f.size(); i++) free(bd__emu_f[i].stack);
        bd__emu_f.clear();
    }
} bd__emu_cleanup_at_exit;

static void bd__emu_entry(void) {
    (*bd__emu_fn)();
    bd__emu_f[bd__emu_cur].state = BD__EMU_DONE;
}

static inline void bd__emu_wait(int kind) {
    bd__emu_f[bd__emu_cur].state = kind;
    swapcontext(&bd__emu_f[bd__emu_cur].uc, &bd__emu_sched);
}
static inline void __syncthreads(void) { bd__emu_wait(BD__EMU_BAR_BLOCK); }

static void bd__emu_launch(unsigned grid, unsigned block, const std::function<void()> &fn) {
    unsigned b, t;
    if (grid == 0 || block == 0 || block > 1024) {
        bd__emu_last = cudaErrorInvalidConfiguration;
        return;
    }
    if (bd__emu_f.size() < block) {
        size_t old = bd__emu_f.size();
        bd__emu_f.resize(block);
        for (size_t i = old; i < block; i++) bd__emu_f[i].stack = (char *)malloc(BD__EMU_STACK);
    }
    gridDim.x = grid;
    blockDim.x = block;
    bd__emu_fn = &fn;
    for (b = 0; b < grid; b++) {
        blockIdx.x = b;
        for (t = 0; t < block; t++) {
            bd__emu_fiber *f = &bd__emu_f[t];
            getcontext(&f->uc);
            f->uc.uc_stack.ss_sp = f->stack;
            f->uc.uc_stack.ss_size = BD__EMU_STACK;
            f->uc.uc_link = &bd__emu_sched;
            makecontext(&f->uc, bd__emu_entry, 0);
            f->state = BD__EMU_RUN;
        }
        for (;;) {
            unsigned done = 0, atblock = 0, released = 0, w;
            for (t = 0; t < block; t++)
                if (bd__emu_f[t].state == BD__EMU_RUN) {
                    bd__emu_cur = (int)t;
                    threadIdx.x = t;
                    swapcontext(&bd__emu_sched, &bd__emu_f[t].uc);
                }
            for (t = 0; t < block; t++) {
                done += bd__emu_f[t].state == BD__EMU_DONE;
                atblock += bd__emu_f[t].state == BD__EMU_BAR_BLOCK;
            }
            if (done == block) break;
            /* warp barriers: all not-exited lanes of the warp arrived */
            for (w = 0; w * 32 < block; w++) {
                unsigned l, live = 0, atw = 0;
                for (l = w * 32; l < block && l < w * 32 + 32; l++) {
                    live += bd__emu_f[l].state != BD__EMU_DONE;
                    atw += bd__emu_f[l].state == BD__EMU_BAR_WARP;
                }
                if (atw && atw == live) {
                    for (l = w * 32; l < block && l < w * 32 + 32; l++)
                        if (bd__emu_f[l].state == BD__EMU_BAR_WARP) bd__emu_f[l].state = BD__EMU_RUN;
                    released++;
                }
            }
            if (!released && atblock && atblock + done == block) {
                for (t = 0; t < block; t++)
                    if (bd__emu_f[t].state == BD__EMU_BAR_BLOCK) bd__emu_f[t].state = BD__EMU_RUN;
                released++;
            }
            if (!released) {
                fprintf(stderr, "bd_cuda_emu: deadlock in block %u (%u done, %u at __syncthreads)\n", b,
                        done, atblock);
                abort();
            }
        }
    }
    bd__emu_fn = NULL;
}

/* shuffles: every live lane deposits, warp barrier, read, warp barrier */
template <class T>
static inline T bd__emu_shfl(T v, int src, int valid) {
    unsigned t = threadIdx.x, w = t / 32, l = t % 32;
    T r;
    bd__emu_slot[w][l] = (double)v;
    bd__emu_wait(BD__EMU_BAR_WARP);
    r = valid ? (T)bd__emu_slot[w][src] : v;
    bd__emu_wait(BD__EMU_BAR_WARP);
    return r;
}
template <class T>
static inline T __shfl_down_sync(unsigned, T v, int o) {
    int l = (int)(threadIdx.x % 32);
    return bd__emu_shfl(v, l + o, l + o < 32);
}
template <class T>
static inline T __shfl_xor_sync(unsigned, T v, int o) {
    int l = (int)(threadIdx.x % 32);
    return bd__emu_shfl(v, l ^ o, 1);
}

/* ---- cuBLAS ---- */
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;
typedef struct bd__emu_blas *cublasHandle_t;

static inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = (cublasHandle_t)malloc(16);
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
static inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
    free(h);
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t) {
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}
static inline cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t) {
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

/* column-major C = alpha op(A) op(B) + beta C; op(A) m x k, op(B) k x n */
static inline cublasStatus_t cublasSgemmStridedBatched(
    cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    const float *alpha, const float *A, int lda, long long sA, const float *B, int ldb,
    long long sB, const float *beta, float *C, int ldc, long long sC, int batch) {
    int i, j, p, b;
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < (ta == CUBLAS_OP_N ? (m > 1 ? m : 1) : (k > 1 ? k : 1))) return CUBLAS_STATUS_INVALID_VALUE;
    if (ldb < (tb == CUBLAS_OP_N ? (k > 1 ? k : 1) : (n > 1 ? n : 1))) return CUBLAS_STATUS_INVALID_VALUE;
    if (ldc < (m > 1 ? m : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    for (b = 0; b < batch; b++) {
        const float *Ab = A + b * sA, *Bb = B + b * sB;
        float *Cb = C + b * sC;
        for (j = 0; j < n; j++)
            for (i = 0; i < m; i++) {
                double s = 0.0;
                for (p = 0; p < k; p++) {
                    float a = ta == CUBLAS_OP_N ? Ab[i + (long long)p * lda] : Ab[p + (long long)i * lda];
                    float bb = tb == CUBLAS_OP_N ? Bb[p + (long long)j * ldb] : Bb[j + (long long)p * ldb];
                    s += (double)a * (double)bb;
                }
                float *c = &Cb[i + (long long)j * ldc];
                *c = *beta == 0.0f ? (float)(*alpha * s) : (float)(*alpha * s + (double)*beta * *c);
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                         int m, int n, int k, const float *alpha, const float *A,
                                         int lda, const float *B, int ldb, const float *beta,
                                         float *C, int ldc) {
    return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc,
                                     0, 1);
}

#endif
