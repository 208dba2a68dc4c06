// NVRTC module "multi_tensor_adamw" (kernels.json; FusedMultiTensorAdamW): one AdamW step over every parameter tensor
// of a model in one launch, the update written to the fp32 master and rounded into the low-precision copy the model
// runs (in_t: IN_T 1 bf16, 2 fp16; 0 fp32) in the same pass, with global-norm gradient clipping whose norm never leaves
// the device. Same arithmetic as TorchSharp's AdamW (decoupled decay first, then the moments, bias corrections on the
// step count) and nn.utils.clip_grad_norm_ (coefficient max / (norm + 1e-6), capped at 1).
//
// The tensors are described by a table of TSLOTS int64 per tensor (TAB_*), the work by chunks of CHUNK elements, two
// int32 per chunk: (tensor, chunk index inside the tensor). One block per chunk, so a block never straddles tensors.
#include "common.cuh"
#ifndef LA_MULTI_TENSOR_ADAMW_CU
#define LA_MULTI_TENSOR_ADAMW_CU
#define CHUNK 4096
#define TSLOTS 8
#define TAB_PARAM 0        // float*: fp32 master weights
#define TAB_GRAD 1         // const float*: their gradients
#define TAB_EXP_AVG 2      // float*: first moment
#define TAB_EXP_AVG_SQ 3   // float*: second moment
#define TAB_LOW 4          // in_t*: the low-precision copy, or 0 (none)
#define TAB_NUMEL 5        // elements
#define TAB_DECAY 6        // weight decay, as float bits

__device__ __forceinline__ void chunk_of(const long long* table, const int* chunks, int& tensor, long long& start, int& count) {
    tensor = chunks[2 * blockIdx.x];
    start = (long long)chunks[2 * blockIdx.x + 1] * CHUNK;
    const long long left = table[tensor * TSLOTS + TAB_NUMEL] - start;
    count = left < CHUNK ? (int)left : CHUNK;
}

// Σ g² of each chunk into partial[chunk] (fixed order: the sum is the same on every run).
extern "C" __global__ void __launch_bounds__(NT) mt_grad_sumsq(const long long* __restrict__ table, const int* __restrict__ chunks,
        float* __restrict__ partial) {
    extern __shared__ float4 smem4[];
    float* warp_sums = (float*)smem4;
    int tensor, count;
    long long start;
    chunk_of(table, chunks, tensor, start, count);
    const float* g = (const float*)table[tensor * TSLOTS + TAB_GRAD] + start;
    float s = 0.f;
    for (int i = threadIdx.x; i < count; i += NT) s = fmaf(g[i], g[i], s);
    for (int m = 16; m > 0; m >>= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
    if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.f;
        for (int w = 0; w < NT / 32; ++w) total += warp_sums[w];
        partial[blockIdx.x] = total;
    }
}

// One block: Σ partial[0 .. n) in fp64, fixed order, into *sumsq (fp32).
extern "C" __global__ void __launch_bounds__(NT) mt_grad_sumsq_finish(const float* __restrict__ partial, int n, float* __restrict__ sumsq) {
    extern __shared__ float4 smem4[];
    double* sums = (double*)smem4;
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += NT) s += (double)partial[i];
    sums[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int t = 0; t < NT; ++t) total += sums[t];
        *sumsq = (float)total;
    }
}

// The AdamW step of one chunk. sumsq: the gradients' Σ g² from mt_grad_sumsq_finish, or null (no clipping).
// step_size = lr / (1 − β1^step), inv_sqrt_bc2 = 1 / sqrt(1 − β2^step); 1 − β1 and 1 − β2 come from the host in fp64
// (rounded from the fp32 β, 1 − 0.999f is 1.3e-5 off 0.001, which TorchSharp's fp64 options do not have).
extern "C" __global__ void __launch_bounds__(NT) mt_adamw(const long long* __restrict__ table, const int* __restrict__ chunks,
        const float* __restrict__ sumsq, float max_norm, float lr, float beta1, float beta2, float one_minus_beta1, float one_minus_beta2,
        float eps, float step_size, float inv_sqrt_bc2) {
    int tensor, count;
    long long start;
    chunk_of(table, chunks, tensor, start, count);
    const long long* row = table + tensor * TSLOTS;
    float* p = (float*)row[TAB_PARAM] + start;
    const float* g = (const float*)row[TAB_GRAD] + start;
    float* m = (float*)row[TAB_EXP_AVG] + start;
    float* v = (float*)row[TAB_EXP_AVG_SQ] + start;
    in_t* low = row[TAB_LOW] == 0 ? nullptr : (in_t*)row[TAB_LOW] + start;
    const float decay = 1.f - lr * __uint_as_float((unsigned)row[TAB_DECAY]);
    const float coef = sumsq == nullptr ? 1.f : fminf(1.f, max_norm / (sqrtf(*sumsq) + 1e-6f));
    for (int i = threadIdx.x; i < count; i += NT) {
        const float gi = g[i] * coef;
        const float mi = beta1 * m[i] + one_minus_beta1 * gi;
        const float vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
        const float pi = p[i] * decay - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
        if (low != nullptr) low[i] = stx(pi);
    }
}
#endif
