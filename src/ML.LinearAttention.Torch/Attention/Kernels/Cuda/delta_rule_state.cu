// NVRTC module "delta_rule_state" (kernels.json; FusedDeltaRuleState): the sequential part of the chunkwise delta rule
// (DeltaRule.ChunkedCore: DeltaNet, Gated DeltaNet, KDA, MoM) as one launch each way instead of a host loop of three
// small ops per chunk. Per head n and chunk i, with the fp32 state X [dk, dv] starting at zero:
//   out_state[i] = X;   x_i = P_i + sign1 · A_i X   (A_i [C, dk]);   X ← d_i ⊙ X + sign2 · B_iᵀ x_i + R_i   (B_i [C, dk])
// Forward (chunks in order): P = U, A = W, sign1 = −1, B = K̃ (keys decayed to the chunk's end), sign2 = +1, no R:
//   the state before each chunk and V' = U − W S.
// Backward (chunks in reverse, reverse = 1): P = dV', A = K̃, sign1 = +1, B = W, sign2 = −1, R = the upstream gradient
//   of the states: Λ_{i+1} (the gradient reaching the state after chunk i) and the total dV'_i = dV'_i + K̃_i Λ_{i+1};
//   the caller forms dW, dK̃ and dd from them with batched matmuls (DeltaRuleState.cs).
// d_i [dk] is the chunk's total decay per key channel (null: none). Every column j of X evolves on its own, so a block
// owns DVB columns of one head (grid: ⌈dv / DVB⌉ × heads) and keeps its slice of X in shared memory. Tensors are
// fp32; each has a per-chunk stride (elements) and a contiguous [rows, columns] layout inside a chunk, so the caller
// can pack the state and x outputs into one tensor. (D, DV, TT are NVRTC -D macros of the shared prelude, so the
// parameters have other names.)
#include "common.cuh"
#ifndef LA_DELTA_RULE_STATE_CU
#define LA_DELTA_RULE_STATE_CU

#define DVB 16          // state columns per block
#define MAXC 128        // largest chunk

// Shared memory (floats): A and B of the chunk [C][dk + 1] each, x [C][DVB], X [dk][DVB].
extern "C" __global__ void __launch_bounds__(NT) delta_state_scan(
        const float* __restrict__ p, long long p_stride,
        const float* __restrict__ a, const float* __restrict__ bmat, long long ab_stride,
        const float* __restrict__ r, long long r_stride,
        const float* __restrict__ decay,
        float* __restrict__ out_state, float* __restrict__ out_x, long long out_stride,
        int chunks, int chunk, int dk, int dv, float sign1, float sign2, int reverse) {
    extern __shared__ float4 smem4[];
    float* As = (float*)smem4;                          // [chunk][dk + 1]
    float* Bs = As + chunk * (dk + 1);                  // [chunk][dk + 1]
    float* xs = Bs + chunk * (dk + 1);                  // [chunk][DVB]
    float* Xs = xs + chunk * DVB;                       // [dk][DVB]
    const long long n = blockIdx.y;
    const int j0 = blockIdx.x * DVB, tid = threadIdx.x, jl = tid % DVB, row0 = tid / DVB;   // NT / DVB = 16 rows per pass
    const int ld = dk + 1, cols = min(DVB, dv - j0);
    const bool live = jl < cols;
    for (int e = tid; e < dk * DVB; e += NT) Xs[e] = 0.f;
    for (int step = 0; step < chunks; ++step) {
        const int i = reverse ? chunks - 1 - step : step;
        const long long ci = n * chunks + i;
        const float* ai = a + ci * ab_stride;
        const float* bi = bmat + ci * ab_stride;
        for (int e = tid; e < chunk * dk; e += NT) {
            const int c = e / dk, k = e - c * dk;
            As[c * ld + k] = ai[e];
            Bs[c * ld + k] = bi[e];
        }
        __syncthreads();   // A, B loaded; X final from the previous step
        // out_state[i] = X (this block's columns); x = P + sign1 · A X.
        float* os = out_state + ci * out_stride;
        for (int k = row0; k < dk; k += NT / DVB)
            if (live) os[(long long)k * dv + j0 + jl] = Xs[k * DVB + jl];
        const float* pi = p + ci * p_stride;
        float* ox = out_x + ci * out_stride;
        for (int c = row0; c < chunk; c += NT / DVB) {
            float s = 0.f;
            const float* arow = As + c * ld;
            for (int k = 0; k < dk; ++k) s = fmaf(arow[k], Xs[k * DVB + jl], s);
            const float x = live ? pi[(long long)c * dv + j0 + jl] + sign1 * s : 0.f;
            xs[c * DVB + jl] = x;
            if (live) ox[(long long)c * dv + j0 + jl] = x;
        }
        __syncthreads();   // x complete; every read of X for this chunk done
        // X ← d ⊙ X + sign2 · Bᵀ x + R.
        const float* di = decay == nullptr ? nullptr : decay + ci * dk;
        const float* ri = r == nullptr ? nullptr : r + ci * r_stride;
        for (int k = row0; k < dk; k += NT / DVB) {
            float s = 0.f;
            for (int c = 0; c < chunk; ++c) s = fmaf(Bs[c * ld + k], xs[c * DVB + jl], s);
            float X = Xs[k * DVB + jl];
            if (di != nullptr) X *= di[k];
            X = fmaf(sign2, s, X);
            if (ri != nullptr && live) X += ri[(long long)k * dv + j0 + jl];
            Xs[k * DVB + jl] = live ? X : 0.f;
        }
        __syncthreads();   // X updated before the next chunk's loads overwrite A and B
    }
}
#endif
