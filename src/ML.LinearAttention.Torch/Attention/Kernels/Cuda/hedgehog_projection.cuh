// Hedgehog's whole feature map with its projection (MMA = 1, D = head dim, DV = F, both multiples of 16 up to 128):
// hedgehog_proj_fwd, φ = [softmax(x W_h), softmax(−x W_h)] with y = xW kept in the MMA accumulators;
// hedgehog_proj_bwd, dx = dy Wᵀ and dW += xᵀdy (fp32 atomics into a zeroed buffer) recomputing y; hedgehog_dw_bwd,
// dW alone for two projections at once (the attention kernels form dx themselves).
// x [B, H, T, D], W [H, D, F] → φ [B, H, T, 2F]. A block takes one head (grid y) and strides over its 64-row tiles
// (grid x), copying the next tile with cp.async while it computes the current one.
#ifndef LA_HEDGEHOG_PROJECTION_CUH
#define LA_HEDGEHOG_PROJECTION_CUH
#include "hedgehog_projection_helpers.cuh"
#if MMA
// Forward. Grid (stride, H): block x takes tiles x, x + stride, … of head blockIdx.y's N = B·T rows; the next tile's
// rows are copied asynchronously into the other x buffer while this one is computed.
extern "C" __global__ void __launch_bounds__(NT, HFWD_BOUND) hedgehog_proj_fwd(const in_t* __restrict__ x, const in_t* __restrict__ w,
        in_t* __restrict__ phi, int T, int H, long long N, int stride, unsigned long long M) {
    extern __shared__ float4 smem4[];
    u16* Wt = (u16*)smem4;                  // [F][LDX]       W_hᵀ
    u16* Xs = Wt + HF * LDX;                // [2][MTT][LDX]  x tiles (double buffer)
    u16* Ps = Xs + 2 * MTT * LDX;           // [MTT][LDP]     φ tile
    float* red = (float*)(Ps + MTT * LDP);  // [2][MTT][4]    softmax halves
    const int h = blockIdx.y, warp = threadIdx.x >> 5, gr = (threadIdx.x & 31) >> 2, q = threadIdx.x & 3;
    const HRows g{N, M, T, H, h};
    const int m0 = (warp & 3) * 16, nb = (warp >> 2) * (HF / 2);
    const long long step = (long long)stride * MTT;
    long long n0 = (long long)blockIdx.x * MTT;
    long long row = hh_my_row(n0, g);
    if (n0 < N) hh_fetch_row(Xs, LDX, x, HX, row);
    cp_commit();
    hh_load_w(w + (size_t)h * HX * HF, Wt, nullptr);
    for (int buf = 0; n0 < N; n0 += step, buf ^= 1) {
        // The other buffer was last read by the previous tile's MMAs, before its softmax barrier.
        const long long next = hh_my_row(n0 + step, g);
        if (n0 + step < N) hh_fetch_row(Xs + (buf ^ 1) * MTT * LDX, LDX, x, HX, next);
        cp_commit();
        cp_wait<1>();
        __syncthreads();
        float pp[HNJ][4], pm[HNJ][4];
        hh_project(Xs + buf * MTT * LDX, Wt, pp);
        hh_softmax(pp, pm, red);
#pragma unroll
        for (int j = 0; j < HNJ; ++j)
#pragma unroll
            for (int s = 0; s < 2; ++s) {
                const int row = m0 + gr + 8 * s, col = nb + 8 * j + 2 * q;
                *(unsigned*)(Ps + row * LDP + col) = f2m2<HBF>(pp[j][2 * s], pp[j][2 * s + 1]);
                *(unsigned*)(Ps + row * LDP + HF + col) = f2m2<HBF>(pm[j][2 * s], pm[j][2 * s + 1]);
            }
        __syncthreads();
        hh_store_row(phi, 2 * HF, Ps, LDP, row);
        row = next;
    }
}

// Backward: dx = dy Wᵀ and dW += xᵀ dy; dw [H][HX][F] fp32, zeroed by the caller. Grid as the forward; x and the
// incoming gradient of the next tile are copied asynchronously meanwhile. hedgehog_proj_bwd takes dφ [·][2F] and forms
// dy = φ₊ ⊙ (dφ₊ − ⟨φ₊, dφ₊⟩) − φ₋ ⊙ (dφ₋ − ⟨φ₋, dφ₋⟩) per row (recomputing φ). Both products read their transposed
// operands (xᵀ, dyᵀ, and W from W_hᵀ) by ldmatrix.trans, and dx goes from the accumulators straight to memory, so a
// tile takes two barriers and no copies between shared tiles (shared bytes: FusedHedgehogProjection.BackwardBytes).
// (Hedgehog's attention kernels form dy and dx = dy Wᵀ in their warp passes, where φ is at hand: hedgehog_dw_bwd below
// then reduces dW alone, for the query map only where mma_bwd_kv reduces the key map's.)
__device__ __forceinline__ void hh_bwd(const in_t* __restrict__ x, const in_t* __restrict__ w, const in_t* __restrict__ gin,
        in_t* __restrict__ dx, float* __restrict__ dw, int T, int H, int h, long long N, int stride, unsigned long long M) {
    extern __shared__ float4 smem4[];
    u16* Wt = (u16*)smem4;                  // [F][LDX]       W_hᵀ (B of y = xW; read transposed, B of dx = dy Wᵀ)
    u16* Xs = Wt + HF * LDX;                // [2][MTT][LDX]  x tiles (double buffer)
    u16* Ds = Xs + 2 * MTT * LDX;           // [2][MTT][LDP]  dφ tiles (double buffer)
    u16* Gs = Ds + 2 * MTT * LDP;           // [MTT][LDF]     dy formed from dφ
    float* red = (float*)(Gs + MTT * LDF);  // [2][MTT][4]    softmax halves
    float* red2 = red + 2 * MTT * 4;        // [2][MTT][2]    halves of ⟨φ₊, dφ₊⟩, ⟨φ₋, dφ₋⟩
    const int warp = threadIdx.x >> 5, gr = (threadIdx.x & 31) >> 2, q = threadIdx.x & 3;
    const HRows g{N, M, T, H, h};
    const int half = warp >> 2, m0 = (warp & 3) * 16, nb = half * (HF / 2);
    const long long step = (long long)stride * MTT;
    long long n0 = (long long)blockIdx.x * MTT;
    long long row = hh_my_row(n0, g);
    if (n0 < N) { hh_fetch_row(Xs, LDX, x, HX, row); hh_fetch_row(Ds, LDP, gin, 2 * HF, row); }
    cp_commit();
    hh_load_w(w + (size_t)h * HX * HF, Wt, nullptr);
    float acc_[TPW(HX, HF)][4];             // dW_h, this warp's tiles
    zero_tiles<HX, HF>(acc_);
    for (int buf = 0; n0 < N; n0 += step, buf ^= 1) {
        // The other buffers were last read before the previous tile's final barrier.
        const long long next = hh_my_row(n0 + step, g);
        if (n0 + step < N) {
            hh_fetch_row(Xs + (buf ^ 1) * MTT * LDX, LDX, x, HX, next);
            hh_fetch_row(Ds + (buf ^ 1) * MTT * LDP, LDP, gin, 2 * HF, next);
        }
        cp_commit();
        cp_wait<1>();
        __syncthreads();
        const u16* Xb = Xs + buf * MTT * LDX;
        const u16* Db = Ds + buf * MTT * LDP;
        // dy from dφ: the softmaxes' backward along each warp's rows, into Gs.
        float pp[HNJ][4], pm[HNJ][4];
        hh_project(Xb, Wt, pp);
        hh_softmax(pp, pm, red);
        // dφ at this lane's accumulator positions (row m0 + gr + 8s, columns nb + 8j + 2q, +1), as 16-bit pairs.
#define DPHI_PAIR(j, s, off) (*(const unsigned*)(Db + (m0 + gr + 8 * (s)) * LDP + (off) + nb + 8 * (j) + 2 * q))
        float dp[2], dm[2];
#pragma unroll
        for (int s = 0; s < 2; ++s) {
            dp[s] = dm[s] = 0.f;
#pragma unroll
            for (int j = 0; j < HNJ; ++j) {
                const unsigned gp = DPHI_PAIR(j, s, 0), gm = DPHI_PAIR(j, s, HF);
                dp[s] += pp[j][2 * s] * m2f<HBF>((u16)(gp & 0xffffu)) + pp[j][2 * s + 1] * m2f<HBF>((u16)(gp >> 16));
                dm[s] += pm[j][2 * s] * m2f<HBF>((u16)(gm & 0xffffu)) + pm[j][2 * s + 1] * m2f<HBF>((u16)(gm >> 16));
            }
        }
        hh_row_sums(dp, dm, red2, half, m0, gr);
#pragma unroll
        for (int j = 0; j < HNJ; ++j)
#pragma unroll
            for (int s = 0; s < 2; ++s) {
                const int row = m0 + gr + 8 * s, col = nb + 8 * j + 2 * q;
                const unsigned gp = DPHI_PAIR(j, s, 0), gm = DPHI_PAIR(j, s, HF);
                const float d0 = pp[j][2 * s] * (m2f<HBF>((u16)(gp & 0xffffu)) - dp[s]) - pm[j][2 * s] * (m2f<HBF>((u16)(gm & 0xffffu)) - dm[s]);
                const float d1 = pp[j][2 * s + 1] * (m2f<HBF>((u16)(gp >> 16)) - dp[s]) - pm[j][2 * s + 1] * (m2f<HBF>((u16)(gm >> 16)) - dm[s]);
                *(unsigned*)(Gs + row * LDF + col) = f2m2<HBF>(d0, d1);
            }
#undef DPHI_PAIR
        __syncthreads();
        wmm<HX, HF, MTT, HBF, true, true>(Xb, LDX, Gs, nullptr, LDF, acc_);   // dW += xᵀ dy
        {   // dx = dy Wᵀ: this warp's 16 rows × HX/2 columns, straight to memory.
            float xa[HX / 16][4];
#pragma unroll
            for (int j = 0; j < HX / 16; ++j) xa[j][0] = xa[j][1] = xa[j][2] = xa[j][3] = 0.f;
#pragma unroll
            for (int k0 = 0; k0 < HF; k0 += 16) {
                unsigned a[4];
                frag_a(a, Gs, LDF, m0, k0);
#pragma unroll
                for (int j = 0; j < HX / 16; ++j) {
                    unsigned b[2];
                    frag_b_t(b, Wt, LDX, half * (HX / 2) + 8 * j, k0);
                    mma16816<HBF>(xa[j], a, b);
                }
            }
#pragma unroll
            for (int s = 0; s < 2; ++s) {
                const long long n = n0 + m0 + gr + 8 * s;
                if (n < N) {
                    in_t* dr = dx + hh_row(g, n) * HX + half * (HX / 2) + 2 * q;
#pragma unroll
                    for (int j = 0; j < HX / 16; ++j) *(unsigned*)(dr + 8 * j) = stx2(xa[j][2 * s], xa[j][2 * s + 1]);
                }
            }
        }
        row = next;
        __syncthreads();                    // the next tile's copies go into these buffers
    }
    float* dwh = dw + (size_t)h * HX * HF;
    FOR_TILE_PAIRS(HX, HF, { atomicAdd(dwh + row * HF + col, c0); atomicAdd(dwh + row * HF + col + 1, c1); })
}
extern "C" __global__ void __launch_bounds__(NT, HBWD_BOUND) hedgehog_proj_bwd(const in_t* __restrict__ x, const in_t* __restrict__ w,
        const in_t* __restrict__ dphi, in_t* __restrict__ dx, float* __restrict__ dw, int T, int H, long long N, int stride,
        unsigned long long M) {
    hh_bwd(x, w, dphi, dx, dw, T, H, blockIdx.y, N, stride, M);
}
// dW += xᵀ dy over head h's rows, from x [·][HX] and dy [·][F]: a loop of copies and one small product per tile, so it
// keeps HDW_STAGES − 1 tiles in flight while it multiplies (three stages beat double buffering), with one barrier per
// tile: the copy into the buffer that the previous tile's product read starts after that barrier. Shared bytes: FusedHedgehogProjection.WeightGradientBytes.
#define HDW_STAGES 3
__device__ __forceinline__ void hh_dw(const in_t* __restrict__ x, const in_t* __restrict__ dy, float* __restrict__ dw, int T, int H,
        int h, long long N, int stride, unsigned long long M) {
    extern __shared__ float4 smem4[];
    u16* Xs = (u16*)smem4;                      // [HDW_STAGES][MTT][LDX]  x tiles
    u16* Ds = Xs + HDW_STAGES * MTT * LDX;      // [HDW_STAGES][MTT][LDF]  dy tiles
    const HRows g{N, M, T, H, h};
    const long long step = (long long)stride * MTT;
    auto fetch = [&](long long n, int buf) {
        const long long row = hh_my_row(n, g);
        if (n < N) { hh_fetch_row(Xs + buf * MTT * LDX, LDX, x, HX, row); hh_fetch_row(Ds + buf * MTT * LDF, LDF, dy, HF, row); }
        cp_commit();
    };
    long long n0 = (long long)blockIdx.x * MTT;
#pragma unroll
    for (int s = 0; s < HDW_STAGES - 1; ++s) fetch(n0 + s * step, s);
    float acc_[TPW(HX, HF)][4];                 // dW_h, this warp's tiles
    zero_tiles<HX, HF>(acc_);
    for (int buf = 0; n0 < N; n0 += step, buf = buf == HDW_STAGES - 1 ? 0 : buf + 1) {
        cp_wait<HDW_STAGES - 2>();              // this tile's group is done (the later ones may fly)
        __syncthreads();                        // its rows are visible, and every warp is past the previous product
        fetch(n0 + (HDW_STAGES - 1) * step, buf == 0 ? HDW_STAGES - 1 : buf - 1);
        wmm<HX, HF, MTT, HBF, true, true>(Xs + buf * MTT * LDX, LDX, Ds + buf * MTT * LDF, nullptr, LDF, acc_);
    }
    float* dwh = dw + (size_t)h * HX * HF;
    FOR_TILE_PAIRS(HX, HF, { red_add2(dwh + row * HF + col, c0, c1); })   // vector reductions where the GPU has them
}
// dW of two projections in one launch (grid y = 2H: blocks y < H take x0, dy0 into dw0, the rest x1, dy1 into dw1), for
// the query and key maps of Hedgehog's attention; dx is the attention kernels' own.
extern "C" __global__ void __launch_bounds__(NT, HDW_BOUND) hedgehog_dw_bwd(const in_t* __restrict__ x0, const in_t* __restrict__ dy0,
        float* __restrict__ dw0, const in_t* __restrict__ x1, const in_t* __restrict__ dy1, float* __restrict__ dw1, int T, int H,
        long long N, int stride, unsigned long long M) {
    const bool second = (int)blockIdx.y >= H;
    hh_dw(second ? x1 : x0, second ? dy1 : dy0, second ? dw1 : dw0, T, H, blockIdx.y % H, N, stride, M);
}
#endif
#endif
