// Hedgehog's feature map φ(y) = [softmax(y), softmax(−y)] over the last dimension (F) and its backward
// dy = φ₊ ⊙ (dφ₊ − ⟨φ₊, dφ₊⟩) − φ₋ ⊙ (dφ₋ − ⟨φ₋, dφ₋⟩), fp32 math; y [rows, F] → φ [rows, 2F].
// The vector kernels (_vec) take F = L·V with V = 16 / sizeof(in_t) and L a power of two up to 32: a group of L
// lanes shares a row, V features per lane from one 16-byte load, so a warp has 32 / L rows in flight. The generic
// kernels take any F, one warp per row. group_max and group_sum are also used by the projection kernels.
#ifndef LA_HEDGEHOG_MAP_CUH
#define LA_HEDGEHOG_MAP_CUH
#include "common.cuh"
// Max and sum over a group of L lanes (L a power of two up to 32; 32 = the whole warp).
__device__ __forceinline__ float group_max(float x, int L) {
    for (int m = L >> 1; m > 0; m >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, m));
    return x;
}
__device__ __forceinline__ float group_sum(float x, int L) {
    for (int m = L >> 1; m > 0; m >>= 1) x += __shfl_xor_sync(0xffffffffu, x, m);
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
    hi = group_max(hi, 32);
    lo = -group_max(-lo, 32);
    float sp = 0.f, sm = 0.f;
    for (int j = lane; j < F; j += 32) { const float a = ldx(yr[j]); sp += expf(a - hi); sm += expf(lo - a); }
    const float ip = 1.f / group_sum(sp, 32), im = 1.f / group_sum(sm, 32);
    for (int j = lane; j < F; j += 32) {
        const float a = ldx(yr[j]);
        pr[j] = stx(expf(a - hi) * ip);
        pr[F + j] = stx(expf(lo - a) * im);
    }
}

// Vector forms: lanes [g·L, g·L + L) of a warp own row (thread index) / L; shuffles stay inside the group (xor masks
// below L). Lanes past the last row still join the shuffles (with zeros) and store nothing.
#define HV (16 / (int)sizeof(in_t))
union hvec { uint4 u; in_t e[HV]; };

__device__ __forceinline__ hvec load_vec(const in_t* p, bool live) {
    hvec v;
    if (live) v.u = *(const uint4*)p; else { v.u.x = 0u; v.u.y = 0u; v.u.z = 0u; v.u.w = 0u; }
    return v;
}

extern "C" __global__ void __launch_bounds__(NT) hedgehog_map_fwd_vec(const in_t* __restrict__ y, in_t* __restrict__ phi,
        long long rows, int L) {
    const int F = L * HV;
    const long long row = ((long long)blockIdx.x * NT + threadIdx.x) / L;
    const int col = (threadIdx.x & (L - 1)) * HV;
    const bool live = row < rows;
    const hvec in = load_vec(y + row * F + col, live);
    float a[HV], hi = -3.402823466e38f, lo = 3.402823466e38f;
#pragma unroll
    for (int v = 0; v < HV; ++v) { a[v] = ldx(in.e[v]); hi = fmaxf(hi, a[v]); lo = fminf(lo, a[v]); }
    hi = group_max(hi, L);
    lo = -group_max(-lo, L);
    float ep[HV], em[HV], sp = 0.f, sm = 0.f;
#pragma unroll
    for (int v = 0; v < HV; ++v) { ep[v] = expf(a[v] - hi); em[v] = expf(lo - a[v]); sp += ep[v]; sm += em[v]; }
    const float ip = 1.f / group_sum(sp, L), im = 1.f / group_sum(sm, L);
    hvec plus, minus;
#pragma unroll
    for (int v = 0; v < HV; ++v) { plus.e[v] = stx(ep[v] * ip); minus.e[v] = stx(em[v] * im); }
    if (live) {
        *(uint4*)(phi + row * 2 * F + col) = plus.u;
        *(uint4*)(phi + row * 2 * F + F + col) = minus.u;
    }
}

extern "C" __global__ void __launch_bounds__(NT) hedgehog_map_bwd_vec(const in_t* __restrict__ phi,
        const in_t* __restrict__ dphi, in_t* __restrict__ dy, long long rows, int L) {
    const int F = L * HV;
    const long long row = ((long long)blockIdx.x * NT + threadIdx.x) / L;
    const int col = (threadIdx.x & (L - 1)) * HV;
    const bool live = row < rows;
    const hvec pp = load_vec(phi + row * 2 * F + col, live), pm = load_vec(phi + row * 2 * F + F + col, live);
    const hvec gp = load_vec(dphi + row * 2 * F + col, live), gm = load_vec(dphi + row * 2 * F + F + col, live);
    float sp = 0.f, sm = 0.f;
#pragma unroll
    for (int v = 0; v < HV; ++v) { sp += ldx(pp.e[v]) * ldx(gp.e[v]); sm += ldx(pm.e[v]) * ldx(gm.e[v]); }
    sp = group_sum(sp, L);
    sm = group_sum(sm, L);
    hvec out;
#pragma unroll
    for (int v = 0; v < HV; ++v)
        out.e[v] = stx(ldx(pp.e[v]) * (ldx(gp.e[v]) - sp) - ldx(pm.e[v]) * (ldx(gm.e[v]) - sm));
    if (live) *(uint4*)(dy + row * F + col) = out.u;
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
    sp = group_sum(sp, 32);
    sm = group_sum(sm, 32);
    in_t* dr = dy + row * F;
    for (int j = lane; j < F; j += 32)
        dr[j] = stx(ldx(pr[j]) * (ldx(gr[j]) - sp) - ldx(pr[F + j]) * (ldx(gr[F + j]) - sm));
}
#endif
