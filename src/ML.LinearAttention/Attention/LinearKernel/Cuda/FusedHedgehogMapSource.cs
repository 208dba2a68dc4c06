namespace Microsoft.ML.LinearAttention.Attention.LinearKernel.Cuda;

/// <summary>
/// CUDA C of Hedgehog's feature map φ(y) = [softmax(y), softmax(−y)] over the last dimension (F) and its backward,
/// compiled after <see cref="FusedKernelSource.Source"/> (which supplies in_t, ldx and stx for IN_T). One warp per row,
/// fp32 math, one pass over the input each way: the libtorch form (negate, stack, softmax; and back) makes five.
/// Shapes: y [rows, F] → φ [rows, 2F]; backward: φ, dφ [rows, 2F] → dy [rows, F] with
/// dy = φ₊ ⊙ (dφ₊ − ⟨φ₊, dφ₊⟩) − φ₋ ⊙ (dφ₋ − ⟨φ₋, dφ₋⟩).
/// </summary>
internal static class FusedHedgehogMapSource
{
    public const string Source = """
__device__ __forceinline__ float warp_max(float x) {
    for (int m = 16; m > 0; m >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, m));
    return x;
}
__device__ __forceinline__ float warp_sum(float x) {
    for (int m = 16; m > 0; m >>= 1) x += __shfl_xor_sync(0xffffffffu, x, m);
    return x;
}

// A whole warp shares one row, so a warp past the end leaves together (no partial-warp shuffles).
extern "C" __global__ void __launch_bounds__(NT) hedgehog_map_fwd(const in_t* __restrict__ y, in_t* __restrict__ phi,
        long long rows, int F) {
    const long long row = (long long)blockIdx.x * (NT / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const in_t* yr = y + row * F;
    in_t* pr = phi + row * 2 * F;
    float hi = -3.402823466e38f, lo = 3.402823466e38f;
    for (int j = lane; j < F; j += 32) { const float a = ldx(yr[j]); hi = fmaxf(hi, a); lo = fminf(lo, a); }
    hi = warp_max(hi);
    lo = -warp_max(-lo);
    float sp = 0.f, sm = 0.f;
    for (int j = lane; j < F; j += 32) { const float a = ldx(yr[j]); sp += expf(a - hi); sm += expf(lo - a); }
    const float ip = 1.f / warp_sum(sp), im = 1.f / warp_sum(sm);
    for (int j = lane; j < F; j += 32) {
        const float a = ldx(yr[j]);
        pr[j] = stx(expf(a - hi) * ip);
        pr[F + j] = stx(expf(lo - a) * im);
    }
}

extern "C" __global__ void __launch_bounds__(NT) hedgehog_map_bwd(const in_t* __restrict__ phi, const in_t* __restrict__ dphi,
        in_t* __restrict__ dy, long long rows, int F) {
    const long long row = (long long)blockIdx.x * (NT / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const in_t* pr = phi + row * 2 * F;
    const in_t* gr = dphi + row * 2 * F;
    float sp = 0.f, sm = 0.f;
    for (int j = lane; j < F; j += 32) { sp += ldx(pr[j]) * ldx(gr[j]); sm += ldx(pr[F + j]) * ldx(gr[F + j]); }
    sp = warp_sum(sp);
    sm = warp_sum(sm);
    in_t* dr = dy + row * F;
    for (int j = lane; j < F; j += 32)
        dr[j] = stx(ldx(pr[j]) * (ldx(gr[j]) - sp) - ldx(pr[F + j]) * (ldx(gr[F + j]) - sm));
}
""";
}
