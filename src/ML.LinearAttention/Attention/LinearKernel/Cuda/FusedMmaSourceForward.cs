namespace Microsoft.ML.LinearAttention.Attention.LinearKernel.Cuda;

/// <summary>
/// Tensor-core forward kernels (appended after <see cref="FusedMmaSource.Source"/>, same MMA guard and helpers), with
/// the same arguments and results as <c>fwd_state</c> and <c>fwd_out</c>: S = φkᵀ v and z = φkᵀ·1 over real keys from one
/// MMA (a row of ones after vᵀ), then o = φq S / (φq·z + eps·n). Each loop fetches the next token tile into registers
/// before the current tile's MMAs. Built for Hedgehog (HH = 1), the loaders compute φ from x with hh_phi_tile.
/// </summary>
internal static class FusedMmaSourceForward
{
    public const string Source = """

#if MMA
extern "C" __global__ void MMA_BOUNDS mma_fwd_state(const in_t* __restrict__ k, const in_t* __restrict__ v,
        const u8* __restrict__ mask, int T, int H, int tpb, float* __restrict__ S, float* __restrict__ z HH_W) {
    extern __shared__ float4 smem4[];
    u16* KT = (u16*)smem4;              // [D][LDT2]       φkᵀ
    u16* VT = KT + D * LDT2;            // [DV + 8][LDT2]  vᵀ, then a row of ones (z = φkᵀ·1 from the same MMA) and zeros
#if HH
    HH_SMEM(VT + (DV + 8) * LDT2, KT)
#endif
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    const in_t* kb = k + (size_t)bh * T * XD;
    const in_t* vb = v + (size_t)bh * T * DV;
    float acc_[TPW(D, DV + 8)][4];
    zero_tiles<D, DV + 8>(acc_);
    for (int i = tid; i < 8 * MTT; i += NT) VT[DV * LDT2 + (i / MTT) * LDT2 + i % MTT] = i < MTT ? (ST_BF ? 0x3f80 : 0x3c00) : 0;
#if HH
    Rows<XD> kf;
#define FETCH_K fetch_rows
#else
    Cols<D> kf;
#define FETCH_K fetch_cols
#endif
    Cols<DV> vf;
    if (t0 < t1) { FETCH_K(kf, kb, mask, b, t0, T); fetch_cols(vf, vb, nullptr, b, t0, T); }
    for (int ts = t0; ts < t1; ts += MTT) {
        __syncthreads();
#if HH
        store_rows_raw(Xs, LDX, kf);
#else
        store_cols<MAP_PHI, ST_BF>(KT, kf);
#endif
        store_cols<MAP_ID, ST_BF>(VT, vf);
        if (ts + MTT < t1) { FETCH_K(kf, kb, mask, b, ts + MTT, T); fetch_cols(vf, vb, nullptr, b, ts + MTT, T); }
        __syncthreads();
#if HH
        hh_phi_tile<ST_BF, true>(Xs, Wt, red, KT, LDT2, mask, b, ts, T);
        __syncthreads();
#endif
        wmm<D, DV + 8, MTT, ST_BF>(KT, LDT2, VT, nullptr, LDT2, acc_);
    }
    float* Sb = S + (size_t)bh * D * DV;
    float* zb = z + (size_t)bh * D;
    FOR_TILE_PAIRS(D, DV + 8, {
        if (col < DV) { atomicAdd(Sb + row * DV + col, c0); atomicAdd(Sb + row * DV + col + 1, c1); }
        else if (col == DV) atomicAdd(zb + row, c0);
    })
#undef FETCH_K
}

extern "C" __global__ void MMA_BOUNDS mma_fwd_out(const in_t* __restrict__ q, const float* __restrict__ S,
        const float* __restrict__ z, const u8* __restrict__ mask, const float* __restrict__ epsn, int T, int H, int tpb,
        in_t* __restrict__ o HH_W) {
    extern __shared__ float4 smem4[];
    u16* Sh = (u16*)smem4;              // [DV][LDD]  Sᵀ high
    u16* Sl = Sh + DV * LDD;            // [DV][LDD]  Sᵀ low
    u16* Qs = Sl + DV * LDD;            // [MTT][LDD] φq
    float* zs = (float*)(Qs + MTT * LDD);   // [D]
    float* den = zs + D;                // [MTT]  1/den
#if HH
    HH_SMEM(den + MTT, Qs)
#endif
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    load_split(S + (size_t)bh * D * DV, Sh, Sl, LDD, true);
    if (tid < D) zs[tid] = z[(size_t)bh * D + tid];
    const float en = epsn[b];
    const in_t* qb = q + (size_t)bh * T * XD;
    in_t* ob = o + (size_t)bh * T * DV;
    Rows<XD> qf;
    if (t0 < t1) fetch_rows(qf, qb, mask, b, t0, T);
    for (int ts = t0; ts < t1; ts += MTT) {
        __syncthreads();
#if HH
        store_rows_raw(Xs, LDX, qf);
#else
        store_rows<MAP_PHI>(Qs, LDD, qf);
#endif
        if (ts + MTT < t1) fetch_rows(qf, qb, mask, b, ts + MTT, T);
        __syncthreads();
#if HH
        hh_phi_tile<true, false>(Xs, Wt, red, Qs, LDD, mask, b, ts, T);
        __syncthreads();
#endif
        inv_den(Qs, LDD, 1, zs, en, den);   // den holds 1/den
        float acc_[TPW(MTT, DV)][4];
        zero_tiles<MTT, DV>(acc_);
        wmm<MTT, DV, D, true>(Qs, LDD, Sh, SPLIT ? Sl : nullptr, LDD, acc_);
        __syncthreads();
        store_out(acc_, ob, den, mask, b, ts, T);
    }
}
#endif
""";
}
