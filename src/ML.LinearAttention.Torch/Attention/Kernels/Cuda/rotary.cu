// NVRTC module "rotary" (kernels.json; FusedRotary): rotate-half rotary positions on [B, H, T, D] in one pass,
// out[i] = in[i] · c[t][i] + in[p(i)] · s[t][backward ? p(i) : i] with p(i) = i ± D/2 (the channel i is paired with),
// from the fp32 tables of Rotary.HalfSplitTables: c = cos | cos, s = −sin | sin. Forward (in = x) gives
// (x₁cos − x₂sin, x₂cos + x₁sin); backward (in = dy) gives dx = (dy₁cos + dy₂sin, dy₂cos − dy₁sin). Products and the
// sum are rounded separately (__fmul_rn, __fadd_rn: no contraction into an FMA), as libtorch's separate kernels do, so
// the result equals Rotary.Apply's libtorch form to the bit. The input may be a strided view (the head split's
// transpose: strides per b, h, t; channels contiguous), and so is the output (the launcher writes the forward's
// contiguous [B, H, T, D], and the backward's dx in x's own [B, T, H, D] layout, so that the head split's transpose
// needs no copy on the way back). (D, T and the like are NVRTC -D macros of the shared prelude, so the parameters
// have other names.)
#include "common.cuh"
#ifndef LA_ROTARY_CU
#define LA_ROTARY_CU

// One warp per (b, h, t) row, eight rows per block; a warp past the last row leaves whole.
extern "C" __global__ void __launch_bounds__(NT) rotary_half_split(const in_t* __restrict__ in, const float* __restrict__ cos_table,
        const float* __restrict__ sin_table, in_t* __restrict__ out, long long rows, long long heads, long long length, int dim,
        long long stride_b, long long stride_h, long long stride_t, long long out_b, long long out_h, long long out_t, int backward) {
    const long long row = (long long)blockIdx.x * (NT / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const long long b = row / (heads * length), rest = row - b * (heads * length), h = rest / length, t = rest - h * length;
    const in_t* x = in + b * stride_b + h * stride_h + t * stride_t;
    in_t* y = out + b * out_b + h * out_h + t * out_t;
    const float* c = cos_table + t * dim;
    const float* s = sin_table + t * dim;
    const int half = dim / 2;
    for (int i = lane; i < dim; i += 32) {
        const int p = i < half ? i + half : i - half;
        y[i] = stx(__fadd_rn(__fmul_rn(ldx(x[i]), c[i]), __fmul_rn(ldx(x[p]), s[backward ? p : i])));
    }
}
#endif
