namespace Microsoft.ML.LinearAttention.Attention.LinearKernel.Cuda;

/// <summary>
/// Tensor-core forward kernels (appended after <see cref="FusedMmaSource.Source"/>, same MMA guard and helpers), with
/// the same arguments and results as <c>fwd_state</c> and <c>fwd_out</c>: S = φkᵀ v and z = φkᵀ·1 over real keys from one
/// MMA (a row of ones after vᵀ), then o = φq S / (φq·z + eps·n). Each loop fetches the next token tile into registers
/// before the current tile's MMAs.
/// </summary>
internal static class FusedMmaSourceForward
{
    public const string Source = """

#if MMA
extern "C" __global__ void __launch_bounds__(NT) mma_fwd_state(const in_t* __restrict__ k, const in_t* __restrict__ v,
        const u8* __restrict__ mask, int T, int H, int tpb, float* __restrict__ S, float* __restrict__ z) {
    extern __shared__ float4 smem4[];
    u16* KT = (u16*)smem4;              // [D][LDT2]       φkᵀ
    u16* VT = KT + D * LDT2;            // [DV + 8][LDT2]  vᵀ, then a row of ones (z = φkᵀ·1 from the same MMA) and zeros
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    const in_t* kb = k + (size_t)bh * T * D;
    const in_t* vb = v + (size_t)bh * T * DV;
    float acc_[TPW(D, DV + 8)][4];
    zero_tiles<D, DV + 8>(acc_);
    for (int i = tid; i < 8 * MTT; i += NT) VT[DV * LDT2 + (i / MTT) * LDT2 + i % MTT] = i < MTT ? (ST_BF ? 0x3f80 : 0x3c00) : 0;
    Cols<D> kf; Cols<DV> vf;
    if (t0 < t1) { fetch_cols(kf, kb, mask, b, t0, T); fetch_cols(vf, vb, nullptr, b, t0, T); }
    for (int ts = t0; ts < t1; ts += MTT) {
        __syncthreads();
        store_cols<MAP_PHI, ST_BF>(KT, kf);
        store_cols<MAP_ID, ST_BF>(VT, vf);
        if (ts + MTT < t1) { fetch_cols(kf, kb, mask, b, ts + MTT, T); fetch_cols(vf, vb, nullptr, b, ts + MTT, T); }
        __syncthreads();
        wmm<D, DV + 8, MTT, ST_BF>(KT, LDT2, VT, nullptr, LDT2, acc_);
    }
    float* Sb = S + (size_t)bh * D * DV;
    float* zb = z + (size_t)bh * D;
    FOR_TILE_PAIRS(D, DV + 8, {
        if (col < DV) { atomicAdd(Sb + row * DV + col, c0); atomicAdd(Sb + row * DV + col + 1, c1); }
        else if (col == DV) atomicAdd(zb + row, c0);
    })
}

extern "C" __global__ void __launch_bounds__(NT) mma_fwd_out(const in_t* __restrict__ q, const float* __restrict__ S,
        const float* __restrict__ z, const u8* __restrict__ mask, const float* __restrict__ epsn, int T, int H, int tpb,
        in_t* __restrict__ o) {
    extern __shared__ float4 smem4[];
    u16* Sh = (u16*)smem4;              // [DV][LDD]  Sᵀ high
    u16* Sl = Sh + DV * LDD;            // [DV][LDD]  Sᵀ low
    u16* Qs = Sl + DV * LDD;            // [MTT][LDD] φq
    float* zs = (float*)(Qs + MTT * LDD);   // [D]
    float* den = zs + D;                // [MTT]  1/den
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    load_split(S + (size_t)bh * D * DV, Sh, Sl, LDD, true);
    if (tid < D) zs[tid] = z[(size_t)bh * D + tid];
    const float en = epsn[b];
    const in_t* qb = q + (size_t)bh * T * D;
    in_t* ob = o + (size_t)bh * T * DV;
    Rows<D> qf;
    if (t0 < t1) fetch_rows(qf, qb, mask, b, t0, T);
    for (int ts = t0; ts < t1; ts += MTT) {
        __syncthreads();
        store_rows<MAP_PHI>(Qs, LDD, qf);
        if (ts + MTT < t1) fetch_rows(qf, qb, mask, b, ts + MTT, T);
        __syncthreads();
        inv_den(Qs, LDD, 1, zs, en, den);   // den holds 1/den
        float acc_[TPW(MTT, DV)][4];
        zero_tiles<MTT, DV>(acc_);
        wmm<MTT, DV, D, true>(Qs, LDD, Sh, SPLIT ? Sl : nullptr, LDD, acc_);
        __syncthreads();
        store_out(acc_, ob, den, mask, b, ts, T);
    }
}
// Variant of mma_fwd_out in which every warp owns whole 16-token row tiles (no block barrier in the loop): φq A
// fragments come straight from global memory into registers (the next row tile's words fetched before the current
// tile's MMAs), den = φq·z is reduced within the 4 lanes of a row, and o leaves from the accumulators. Same arguments
// and result; smem holds Sᵀ (high, low) and z only. Selected by FusedLinearAttention.RowOwnedKernels.
// A fragment words of row tile r0 (see mma16816): w[kk][0] = q[r0+g][16kk+2qq..], w[kk][1] = q[r0+g+8][16kk+2qq..],
// w[kk][2] = q[r0+g][16kk+2qq+8..], w[kk][3] = q[r0+g+8][16kk+2qq+8..] (two 16-bit inputs each; zero where not real).
template <int C> struct RowWords { unsigned w[C / 16][4]; bool ok0, ok1; };
template <int C>
__device__ __forceinline__ void fetch_words(RowWords<C>& f, const in_t* base, const u8* mask, int b, int r0, int T) {
    const int lane = threadIdx.x & 31, g = lane >> 2, qq = lane & 3;
    f.ok0 = real_token(mask, b, r0 + g, T);
    f.ok1 = real_token(mask, b, r0 + g + 8, T);
    const in_t* p0 = base + (size_t)(r0 + g) * C + 2 * qq;
    const in_t* p1 = base + (size_t)(r0 + g + 8) * C + 2 * qq;
#pragma unroll
    for (int kk = 0; kk < C / 16; ++kk) {
        f.w[kk][0] = f.ok0 ? *(const unsigned*)(p0 + 16 * kk) : 0u;
        f.w[kk][1] = f.ok1 ? *(const unsigned*)(p1 + 16 * kk) : 0u;
        f.w[kk][2] = f.ok0 ? *(const unsigned*)(p0 + 16 * kk + 8) : 0u;
        f.w[kk][3] = f.ok1 ? *(const unsigned*)(p1 + 16 * kk + 8) : 0u;
    }
}
// Two 16-bit inputs mapped (φ or identity) as a bf16 pair (raw for bf16 relu/identity; zero where not real).
template <int KIND> __device__ __forceinline__ unsigned map_word(unsigned w, bool ok) {
    if constexpr (raw_map_ok<KIND, true>()) return raw_map<KIND>(w);
    else return ok ? f2m2<true>(mapv<KIND>(ldx((in_t)(w & 0xffffu)), nullptr, 0), mapv<KIND>(ldx((in_t)(w >> 16)), nullptr, 0)) : 0u;
}

// c = A·B (+ A·Bl, the low part, when SPLIT) for one 16×8 output tile of a row tile: A fragments over K in registers,
// B and Bl [N][ld] (k contiguous) in shared memory at columns n0.. n0 + 7.
template <int K>
__device__ __forceinline__ void row_tile_mma(float (&c)[4], const unsigned (&a)[K / 16][4], const u16* B, const u16* Bl, int ld, int n0) {
    c[0] = c[1] = c[2] = c[3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
        unsigned bw[2];
        frag_b(bw, B, ld, n0, 16 * kk);
        mma16816<true>(c, a[kk], bw);
#if SPLIT
        frag_b(bw, Bl, ld, n0, 16 * kk);
        mma16816<true>(c, a[kk], bw);
#endif
    }
}

extern "C" __global__ void __launch_bounds__(NT) mma_fwd_out_rows(const in_t* __restrict__ q, const float* __restrict__ S,
        const float* __restrict__ z, const u8* __restrict__ mask, const float* __restrict__ epsn, int T, int H, int tpb,
        in_t* __restrict__ o) {
    extern __shared__ float4 smem4[];
    u16* Sh = (u16*)smem4;              // [DV][LDD]  Sᵀ high
    u16* Sl = Sh + DV * LDD;            // [DV][LDD]  Sᵀ low
    float* zs = (float*)(Sl + DV * LDD);    // [D]
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, qq = lane & 3;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    load_split(S + (size_t)bh * D * DV, Sh, Sl, LDD, true);
    if (tid < D) zs[tid] = z[(size_t)bh * D + tid];
    __syncthreads();
    const float en = epsn[b];
    const in_t* qb = q + (size_t)bh * T * D;
    in_t* ob = o + (size_t)bh * T * DV;
    RowWords<D> f;
    int r0 = t0 + 16 * w;
    if (r0 < t1) fetch_words(f, qb, mask, b, r0, T);
    for (; r0 < t1; r0 += 16 * NW) {
        unsigned a[D / 16][4];
        float d0 = 0.f, d1 = 0.f;       // φq·z of rows g and g + 8, this lane's columns
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
            for (int i = 0; i < 4; ++i) a[kk][i] = map_word<MAP_PHI>(f.w[kk][i], (i & 1) ? f.ok1 : f.ok0);
            const int c = 16 * kk + 2 * qq;
            d0 += bf2f((u16)(a[kk][0] & 0xffffu)) * zs[c] + bf2f((u16)(a[kk][0] >> 16)) * zs[c + 1]
                + bf2f((u16)(a[kk][2] & 0xffffu)) * zs[c + 8] + bf2f((u16)(a[kk][2] >> 16)) * zs[c + 9];
            d1 += bf2f((u16)(a[kk][1] & 0xffffu)) * zs[c] + bf2f((u16)(a[kk][1] >> 16)) * zs[c + 1]
                + bf2f((u16)(a[kk][3] & 0xffffu)) * zs[c + 8] + bf2f((u16)(a[kk][3] >> 16)) * zs[c + 9];
        }
        const bool real0 = f.ok0, real1 = f.ok1;
        if (r0 + 16 * NW < t1) fetch_words(f, qb, mask, b, r0 + 16 * NW, T);
        d0 += __shfl_xor_sync(0xffffffffu, d0, 1); d0 += __shfl_xor_sync(0xffffffffu, d0, 2);
        d1 += __shfl_xor_sync(0xffffffffu, d1, 1); d1 += __shfl_xor_sync(0xffffffffu, d1, 2);
        const float inv0 = real0 ? 1.f / (d0 + en) : 0.f, inv1 = real1 ? 1.f / (d1 + en) : 0.f;
#pragma unroll
        for (int j = 0; j < DV / 8; ++j) {
            float c[4];
            row_tile_mma<D>(c, a, Sh, Sl, LDD, 8 * j);
            const int col = 8 * j + 2 * qq;
            if (r0 + g < T) *(unsigned*)(ob + (size_t)(r0 + g) * DV + col) = pack2(stx(c[0] * inv0), stx(c[1] * inv0));
            if (r0 + g + 8 < T) *(unsigned*)(ob + (size_t)(r0 + g + 8) * DV + col) = pack2(stx(c[2] * inv1), stx(c[3] * inv1));
        }
    }
}
#endif
""";
}
