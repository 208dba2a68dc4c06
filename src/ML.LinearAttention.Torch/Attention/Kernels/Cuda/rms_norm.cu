// NVRTC module "rms_norm" (kernels.json; FusedRmsNorm): RMSNorm over the last dimension, y = x · r · w with
// r = rsqrt(mean(x²) + eps), statistics and arithmetic in fp32, x, w, y, dy, dx, dw in in_t. Forward keeps r per row
// for the backward. Backward: dx = r · (g − x̂ · mean(g ⊙ x̂)) with g = dy ⊙ w, x̂ = x · r (one warp per row, like the
// forward); dw = Σ_rows dy ⊙ x̂ in two passes with a fixed summation order (column sums of row slices, then of the
// slices), so the result is the same on every run.
#include "common.cuh"
#ifndef LA_RMS_NORM_CU
#define LA_RMS_NORM_CU

__device__ __forceinline__ float warp_sum(float s) {
    for (int m = 16; m > 0; m >>= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
    return s;
}

// One warp per row; w may be null (no weight). A warp past the last row leaves whole.
extern "C" __global__ void __launch_bounds__(NT) rms_norm_fwd(const in_t* __restrict__ x, const in_t* __restrict__ w, in_t* __restrict__ y,
        float* __restrict__ rstd, long long rows, int C, float eps) {
    const long long row = (long long)blockIdx.x * (NT / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const in_t* xr = x + row * C;
    in_t* yr = y + row * C;
    float s = 0.f;
    for (int j = lane; j < C; j += 32) { const float a = ldx(xr[j]); s = fmaf(a, a, s); }
    const float r = rsqrtf(warp_sum(s) / (float)C + eps);
    if (lane == 0) rstd[row] = r;
    for (int j = lane; j < C; j += 32) yr[j] = stx(ldx(xr[j]) * r * (w == nullptr ? 1.f : ldx(w[j])));
}

extern "C" __global__ void __launch_bounds__(NT) rms_norm_bwd_dx(const in_t* __restrict__ x, const in_t* __restrict__ w,
        const float* __restrict__ rstd, const in_t* __restrict__ dy, in_t* __restrict__ dx, long long rows, int C) {
    const long long row = (long long)blockIdx.x * (NT / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const in_t* xr = x + row * C;
    const in_t* gr = dy + row * C;
    const float r = rstd[row];
    float dot = 0.f;
    for (int j = lane; j < C; j += 32) dot = fmaf(ldx(gr[j]) * (w == nullptr ? 1.f : ldx(w[j])), ldx(xr[j]) * r, dot);
    const float mean = warp_sum(dot) / (float)C;
    in_t* dr = dx + row * C;
    for (int j = lane; j < C; j += 32)
        dr[j] = stx(r * (ldx(gr[j]) * (w == nullptr ? 1.f : ldx(w[j])) - ldx(xr[j]) * r * mean));
}

// partial[slice][c] = Σ over the slice's rows of dy · x̂ in column c: grid (⌈C / NT⌉, slices), a thread per column,
// rows [slice · per_slice, …) in order.
extern "C" __global__ void __launch_bounds__(NT) rms_norm_bwd_dw_partial(const in_t* __restrict__ x, const float* __restrict__ rstd,
        const in_t* __restrict__ dy, float* __restrict__ partial, long long rows, int C, long long per_slice) {
    const int c = blockIdx.x * NT + threadIdx.x;
    if (c >= C) return;
    const long long first = (long long)blockIdx.y * per_slice;
    const long long last = first + per_slice < rows ? first + per_slice : rows;
    float s = 0.f;
    for (long long r = first; r < last; ++r) s = fmaf(ldx(dy[r * C + c]), ldx(x[r * C + c]) * rstd[r], s);
    partial[(long long)blockIdx.y * C + c] = s;
}

// dw[c] = Σ_slices partial[slice][c], in order.
extern "C" __global__ void __launch_bounds__(NT) rms_norm_bwd_dw_finish(const float* __restrict__ partial, int slices, int C, in_t* __restrict__ dw) {
    const int c = blockIdx.x * NT + threadIdx.x;
    if (c >= C) return;
    float s = 0.f;
    for (int k = 0; k < slices; ++k) s += partial[(long long)k * C + c];
    dw[c] = stx(s);
}
#endif
