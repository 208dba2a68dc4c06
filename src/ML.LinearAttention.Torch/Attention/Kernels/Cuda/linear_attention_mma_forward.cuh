// Tensor-core forward kernels of bidirectional linear attention (MMA = 1), same arguments and results as fwd_state
// and fwd_out: S = φkᵀv and z = φkᵀ·1 over real keys in one MMA (a column of ones after v), then
// o = φq S / (φq·z + eps·n). Each loop fetches the next token tile into registers before the current tile's MMAs.
// Built for Hedgehog (HH = 1) the loaders compute φ from x (hh_phi_tile), and mma_fwd_head runs the key pass and
// the query pass (hh_out_pass) in one block per head.
#ifndef LA_LINEAR_ATTENTION_MMA_FORWARD_CUH
#define LA_LINEAR_ATTENTION_MMA_FORWARD_CUH
#include "mma_tiles.cuh"
#if HH
#include "hedgehog_warp_forward.cuh"
#endif
#if MMA
// Hedgehog builds pass W_hᵀ, the x tile and the softmax exchange to the loaders; other builds pass nulls.
#if HH
#define HH_ARGS Xs, Wt, red
#else
#define HH_ARGS nullptr, nullptr, nullptr
#endif

// The key pass over tiles [t0, t1) of one head: acc_ += φkᵀ [v | 1] (S and z from one MMA, both tiles read
// transposed). Ks [MTT][LDD], Vs [MTT][LDE] with the column of ones already set. Ends with every thread past its last
// MMA's shared reads only when the caller syncs.
__device__ __forceinline__ void fwd_state_pass(float (&acc_)[TPW(D, DV + 8)][4], u16* Ks, u16* Vs, u16* Xs, const u16* Wt,
        float* red, const in_t* __restrict__ kb, const in_t* __restrict__ vb, const u8* __restrict__ mask, int b, int t0,
        int t1, int T) {
    Rows<XD> kf;
    Rows<DV> vf;
    if (t0 < t1) { fetch_rows(kf, kb, mask, b, t0, T); fetch_rows(vf, vb, nullptr, b, t0, T); }
    for (int ts = t0; ts < t1; ts += MTT) {
        __syncthreads();
        STAGE_PHI(kf, (store_rows<MAP_PHI, XD, ST_BF>(Ks, LDD, kf)));
        store_rows<MAP_ID, DV, ST_BF>(Vs, LDE, vf);
        if (ts + MTT < t1) { fetch_rows(kf, kb, mask, b, ts + MTT, T); fetch_rows(vf, vb, nullptr, b, ts + MTT, T); }
        __syncthreads();
        FINISH_PHI(ST_BF, Ks, LDD)
        wmm<D, DV + 8, MTT, ST_BF, true, true>(Ks, LDD, Vs, nullptr, LDE, acc_);
    }
}

// The query pass over tiles [t0, t1): o = φq S / (φq·z + en) per row, from S (high, low) [D][LDE] (read transposed) and
// z in shared memory; Qs [MTT][LDD] takes φq, den [MTT] 1/den.
__device__ __forceinline__ void fwd_out_pass(u16* Qs, const u16* Sh, const u16* Sl, const float* zs, float* den, u16* Xs,
        const u16* Wt, float* red, const in_t* __restrict__ qb, in_t* __restrict__ ob, const u8* __restrict__ mask, int b,
        float en, int t0, int t1, int T) {
    Rows<XD> qf;
    if (t0 < t1) fetch_rows(qf, qb, mask, b, t0, T);
    for (int ts = t0; ts < t1; ts += MTT) {
        __syncthreads();
        STAGE_PHI(qf, store_rows<MAP_PHI>(Qs, LDD, qf));
        if (ts + MTT < t1) fetch_rows(qf, qb, mask, b, ts + MTT, T);
        __syncthreads();
        FINISH_PHI(true, Qs, LDD)
        inv_den(Qs, LDD, zs, en, den);   // den holds 1/den
        float acc_[TPW(MTT, DV)][4];
        zero_tiles<MTT, DV>(acc_);
        wmm<MTT, DV, D, true, false, true>(Qs, LDD, Sh, SPLIT ? Sl : nullptr, LDE, acc_);
        __syncthreads();
        store_out(acc_, ob, den, mask, b, ts, T);
    }
}

// Columns DV.. of the value tile Vs [MTT][LDE]: ones (z = φkᵀ·1 from the S MMA), then zeros up to DV + 8.
__device__ __forceinline__ void ones_col(u16* Vs) {
    for (int i = threadIdx.x; i < 8 * MTT; i += NT) Vs[(i / 8) * LDE + DV + i % 8] = i % 8 == 0 ? (ST_BF ? 0x3f80 : 0x3c00) : 0;
}

extern "C" __global__ void MMA_BOUNDS mma_fwd_state(const in_t* __restrict__ k, const in_t* __restrict__ v,
        const u8* __restrict__ mask, int T, int H, int tpb, float* __restrict__ S, float* __restrict__ z HH_W) {
    extern __shared__ float4 smem4[];
    u16* Ks = (u16*)smem4;              // [MTT][LDD]  φk
    u16* Vs = Ks + MTT * LDD;           // [MTT][LDE]  v, then a column of ones (z = φkᵀ·1 from the same MMA) and zeros
#if HH
    HH_SMEM(Vs + MTT * LDE, Ks)
#endif
    const int bh = blockIdx.y, b = bh / H;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    float acc_[TPW(D, DV + 8)][4];
    zero_tiles<D, DV + 8>(acc_);
    ones_col(Vs);
    fwd_state_pass(acc_, Ks, Vs, HH_ARGS, k + (size_t)bh * T * XD, v + (size_t)bh * T * DV, mask, b, t0, t1, T);
    float* Sb = S + (size_t)bh * D * DV;
    float* zb = z + (size_t)bh * D;
    FOR_TILE_PAIRS(D, DV + 8, {
        if (col < DV) { put_sum(Sb + row * DV + col, c0); put_sum(Sb + row * DV + col + 1, c1); }
        else if (col == DV) put_sum(zb + row, c0);
    })
}

extern "C" __global__ void MMA_BOUNDS mma_fwd_out(const in_t* __restrict__ q, const float* __restrict__ S,
        const float* __restrict__ z, const u8* __restrict__ mask, const float* __restrict__ epsn, int T, int H, int tpb,
        in_t* __restrict__ o HH_W) {
    extern __shared__ float4 smem4[];
    u16* Sh = (u16*)smem4;              // [D][LDE]   S high
    u16* Sl = Sh + D * LDE;             // [D][LDE]   S low
    u16* Qs = Sl + D * LDE;             // [MTT][LDD] φq
    float* zs = (float*)(Qs + MTT * LDD);   // [D]
    float* den = zs + D;                // [MTT]  1/den
#if HH
    HH_SMEM(den + MTT, Qs)
#endif
    const int bh = blockIdx.y, b = bh / H;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    load_split(S + (size_t)bh * D * DV, Sh, Sl, LDE, false);
    if (threadIdx.x < D) zs[threadIdx.x] = z[(size_t)bh * D + threadIdx.x];
    fwd_out_pass(Qs, Sh, Sl, zs, den, HH_ARGS, q + (size_t)bh * T * XD, o + (size_t)bh * T * DV, mask, b, epsn[b], t0, t1, T);
}

#if HH
// The query pass's x rows (NW × 16 rows of LDX u16) fit in the whole-head forward's φk and v tiles (free by then).
#define HH_XW_FITS (MTT * (LDD + LDE) >= NW * 16 * LDX)
// Hedgehog, a whole head per block (the launcher uses it when the split gives one block per head, as at T = 512): the
// key pass, then S and z go to global memory with plain stores (the backward reads them; one block per head needs no
// atomics) and straight from the accumulators into shared memory as S high/low (what fwd_out loads), then the query
// pass — one launch, and no S round trip or atomics in between. Arguments: fwd_state's and fwd_out's, except that with
// eps > 0 it counts eps·n per batch row itself and writes epsn [B] for the backward (eps ≤ 0: epsn is given), then the
// key map's weight and the query map's. φq's tile Qs reuses φk's (the key pass is over by then).
extern "C" __global__ void MMA_BOUNDS mma_fwd_head(const in_t* __restrict__ q, const in_t* __restrict__ k,
        const in_t* __restrict__ v, const u8* __restrict__ mask, float* __restrict__ epsn, float eps, int T, int H,
        float* __restrict__ S, float* __restrict__ z, in_t* __restrict__ o, const in_t* __restrict__ wk,
        const in_t* __restrict__ wq) {
    extern __shared__ float4 smem4[];
    u16* Ks = (u16*)smem4;              // [MTT][LDD]  φk; then (with Vs) the query pass's x rows where they fit
    u16* Vs = Ks + MTT * LDD;           // [MTT][LDE]  v, the column of ones, zeros
    u16* Sh = Vs + MTT * LDE;           // [D][LDE]    S high
    u16* Sl = Sh + D * LDE;             // [D][LDE]    S low
    float* zs = (float*)(Sl + D * LDE);     // [D], then [MTT] unused (the query pass keeps 1/den in registers)
    u16* Wk = (u16*)(zs + D + MTT);     // [F][LDX]        W_kᵀ
    u16* Wq = Wk + HF * LDX;            // [F][LDX]        W_qᵀ
    float* red = (float*)(Wq + HF * LDX);   // [2][MTT][4]
    u16* own = (u16*)(red + 2 * MTT * 4);   // the key pass's x tile where it does not fit in Ks; then the query pass's x rows where they do not fit in Ks and Vs
    u16* Xs = HH_XS_FITS ? Ks : own;
    u16* Xw = HH_XW_FITS ? Ks : own;    // [NW][16][LDX]
    const int bh = blockIdx.y, b = bh / H, h = bh % H;
    // eps·n of batch row b (n = its real tokens, at least 1), counted here instead of by a launch of the host's; each
    // row's first head stores it for the backward. The warps' counts meet in zs's [MTT] part, which the passes leave.
    {
        float n = 0.f;
        for (int t = threadIdx.x; t < T; t += NT) n += real_token(mask, b, t, T) ? 1.f : 0.f;
        n = group_sum(n, 32);
        if ((threadIdx.x & 31) == 0) zs[D + (threadIdx.x >> 5)] = n;
    }
    hh_load_w(wk + (size_t)h * HX * HF, Wk, nullptr);
    hh_load_w(wq + (size_t)h * HX * HF, Wq, nullptr);
    float acc_[TPW(D, DV + 8)][4];
    zero_tiles<D, DV + 8>(acc_);
    ones_col(Vs);
    fwd_state_pass(acc_, Ks, Vs, Xs, Wk, red, k + (size_t)bh * T * XD, v + (size_t)bh * T * DV, mask, b, 0, T, T);
    float* Sb = S + (size_t)bh * D * DV;
    float* zb = z + (size_t)bh * D;
    FOR_TILE_PAIRS(D, DV + 8, {
        if (col < DV) {
            Sb[row * DV + col] = c0;
            Sb[row * DV + col + 1] = c1;
            const u16 h0 = f2bf(c0);
            const u16 h1 = f2bf(c1);
            *(unsigned*)(Sh + row * LDE + col) = pack2(h0, h1);
            if (SPLIT) *(unsigned*)(Sl + row * LDE + col) = pack2(f2bf(c0 - bf2f(h0)), f2bf(c1 - bf2f(h1)));
        } else if (col == DV) { zb[row] = c0; zs[row] = c0; }
    })
    __syncthreads();                    // the key pass's tiles are free, and S and zs are complete
    float en = 0.f;                     // (the counts were written before the key pass's first barrier)
#pragma unroll
    for (int i = 0; i < NW; ++i) en += zs[D + i];
    en = eps > 0.f ? eps * fmaxf(en, 1.f) : epsn[b];
    if (eps > 0.f && h == 0 && threadIdx.x == 0) epsn[b] = en;
    hh_out_pass(Xw, Sh, Sl, zs, Wq, q + (size_t)bh * T * XD, o + (size_t)bh * T * DV, mask, b, en, 0, T, T);
}
#endif
#endif
#endif
