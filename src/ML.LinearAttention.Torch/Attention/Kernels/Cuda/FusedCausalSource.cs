namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// Tensor-core kernels of CAUSAL normalized linear attention (chunk form, chunk = MTT = 64 tokens), appended after
/// <see cref="FusedKernelSource.Source"/> and <see cref="FusedMmaSource.Source"/> (whose helpers they use) and compiled
/// with MMA = 1 into their own module (<see cref="FusedCausalLaunch"/>). o_t = Σ_{s≤t} a_ts v_s / (Σ_{s≤t} a_ts +
/// eps·(t+1)), a_ts = φq_t·φk_s over real keys s, zero rows at padded queries.
/// <para>Forward: <c>causal_state</c> per (chunk c, b·h) writes the chunk state S_c = φK_cᵀV_c and z_c = Σ φK_c (fp32,
/// one [D·DV + D] record per chunk); <c>causal_scan</c> turns the records into exclusive prefixes P_c = Σ_{c'&lt;c}
/// (in place, fp32, sequential over chunks, parallel over elements and heads); <c>causal_out</c> per (chunk, b·h):
/// A = tril(φQ_c φK_cᵀ), num = A V_c + φQ_c P_c, den = rowsum(A) + φQ_c·z_prefix + eps·(t+1), o = num/den, and
/// saves 1/den (fp32 [B·H, T]) for the backward pass.</para>
/// <para>Operands are bf16 (φ applied and padded keys zeroed while loading), products accumulate in fp32, and the
/// fp32 prefix states are bf16 operands, split into high and low parts for fp16 inputs, as in the bidirectional kernels.</para>
/// </summary>
internal static class FusedCausalSource
{
    public const string Source = """

#if MMA
#define CS (D * DV + D)         // floats per chunk record: state [D][DV], then z [D]
#define XN (D * LDE > DV * LDD ? D * LDE : DV * LDD)   // u16 per state operand buffer of causal_bwd
#define XQ (XN > MTT * LDD ? XN : MTT * LDD)           // u16 of causal_bwd's φq tile, reused for the state operand

// One chunk's record at Pb: the [D][DV] product held in acc_, then the column sums of the transposed tile XT [D][LDT2]
// (weighted by w[token] when W) added after it (the buffer starts zeroed). causal_state and causal_bwd_state.
template <bool W>
__device__ __forceinline__ void store_record(const float (&acc_)[TPW(D, DV)][4], const u16* XT, const float* w, float* Pb) {
    FOR_TILE_PAIRS(D, DV, { Pb[row * DV + col] = c0; Pb[row * DV + col + 1] = c1; })
    float zacc[ZP];
#pragma unroll
    for (int j = 0; j < ZP; ++j) zacc[j] = 0.f;
    colsum<true, W>(XT, w, zacc);
    colsum_flush(zacc, Pb + D * DV);
}

extern "C" __global__ void __launch_bounds__(NT) causal_state(const in_t* __restrict__ k, const in_t* __restrict__ v,
        const u8* __restrict__ mask, int T, int H, int nc, float* __restrict__ P) {
    extern __shared__ float4 smem4[];
    u16* KT = (u16*)smem4;              // [D][LDT2]   φkᵀ
    u16* VT = KT + D * LDT2;            // [DV][LDT2]  vᵀ
    const int bh = blockIdx.y, b = bh / H, c = blockIdx.x, ts = c * MTT;
    const in_t* kb = k + (size_t)bh * T * D;
    const in_t* vb = v + (size_t)bh * T * DV;
    LOAD_COLS(KT, D, true, kb, real_token(mask, b, t, T), phi(x))
    LOAD_COLS(VT, DV, true, vb, t < T, x)
    __syncthreads();
    float acc_[TPW(D, DV)][4];
    zero_tiles<D, DV>(acc_);
    wmm<D, DV, MTT, true>(KT, LDT2, VT, nullptr, LDT2, acc_);
    store_record<false>(acc_, KT, nullptr, P + ((size_t)bh * nc + c) * CS);
}

// In-place exclusive scan over the nc chunk records of each head (reverse order when rev), n floats per record.
extern "C" __global__ void __launch_bounds__(NT) causal_scan(float* __restrict__ X, int nc, int n, int rev) {
    const int i = blockIdx.x * NT + threadIdx.x;
    if (i >= n) return;
    float* p = X + (size_t)blockIdx.y * nc * n + i;
    float run = 0.f;
    // 8 records' loads in flight at a time (the chain over chunks is latency-bound otherwise).
    for (int j0 = 0; j0 < nc; j0 += 8) {
        float x[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int j = j0 + u;
            x[u] = j < nc ? p[(size_t)(rev ? nc - 1 - j : j) * n] : 0.f;
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int j = j0 + u;
            if (j < nc) p[(size_t)(rev ? nc - 1 - j : j) * n] = run;
            run += x[u];
        }
    }
}

// Causal scores of the chunk into A [t][s] (and its transpose AT [s][t] when AT is given), zero above the diagonal;
// acc_ holds the fp32 products, add[t] (when given) is added to every kept entry of row t.
#define STORE_TRIL(A, AT, add) \
    FOR_TILE_PAIRS(MTT, MTT, { \
        const float a0 = col <= row ? c0 + ((add) ? (add)[row] : 0.f) : 0.f; \
        const float a1 = col + 1 <= row ? c1 + ((add) ? (add)[row] : 0.f) : 0.f; \
        *(unsigned*)((A) + row * LDT2 + col) = f2m2<true>(a0, a1); \
        if ((AT) != nullptr) { (AT)[col * LDT2 + row] = f2bf(a0); (AT)[(col + 1) * LDT2 + row] = f2bf(a1); } })

extern "C" __global__ void __launch_bounds__(NT) causal_out(const in_t* __restrict__ q, const in_t* __restrict__ k,
        const in_t* __restrict__ v, const float* __restrict__ P, const u8* __restrict__ mask, float eps, int T, int H,
        int nc, in_t* __restrict__ o, float* __restrict__ rden) {
    extern __shared__ float4 smem4[];
    u16* Sh = (u16*)smem4;              // [DV][LDD]   prefix Sᵀ high
    u16* Sl = Sh + DV * LDD;            // [DV][LDD]   prefix Sᵀ low
    u16* Qs = Sl + DV * LDD;            // [MTT][LDD]  φq
    u16* Ks = Qs + MTT * LDD;           // [MTT][LDD]  φk
    u16* VT = Ks + MTT * LDD;           // [DV][LDT2]  vᵀ
    u16* As = VT + DV * LDT2;           // [MTT][LDT2] tril(φq φkᵀ)
    float* zs = (float*)(As + MTT * LDT2);  // [D] prefix z
    float* den = zs + D;                // [MTT] 1/den
    const int bh = blockIdx.y, b = bh / H, c = blockIdx.x, ts = c * MTT, tid = threadIdx.x;
    const float* Pb = P + ((size_t)bh * nc + c) * CS;
    load_split(Pb, Sh, Sl, LDD, true);
    if (tid < D) zs[tid] = Pb[D * DV + tid];
    const in_t* qb = q + (size_t)bh * T * D;
    const in_t* kb = k + (size_t)bh * T * D;
    const in_t* vb = v + (size_t)bh * T * DV;
    LOAD_ROWS(Qs, LDD, D, qb, real_token(mask, b, t, T), phi(x))
    LOAD_ROWS(Ks, LDD, D, kb, real_token(mask, b, t, T), phi(x))
    LOAD_COLS(VT, DV, true, vb, t < T, x)
    __syncthreads();
    {
        float acc_[TPW(MTT, MTT)][4];
        zero_tiles<MTT, MTT>(acc_);
        wmm<MTT, MTT, D, true>(Qs, LDD, Ks, nullptr, LDD, acc_);
        STORE_TRIL(As, (u16*)nullptr, (const float*)nullptr)
    }
    __syncthreads();
    {   // den = Σ_s A[t][s] + φq_t·z_prefix + eps·(t+1), 4 threads per row (the same rounded values as the numerator).
        const int r = tid >> 2, part = tid & 3;
        float s = 0.f;
        for (int i = part * (D / 4); i < (part + 1) * (D / 4); ++i) s = fmaf(bf2f(Qs[r * LDD + i]), zs[i], s);
        for (int i = part * (MTT / 4); i < (part + 1) * (MTT / 4); ++i) s += bf2f(As[r * LDT2 + i]);
        s += __shfl_xor_sync(0xffffffffu, s, 1);
        s += __shfl_xor_sync(0xffffffffu, s, 2);
        if (part == 0) {
            const float inv = 1.f / (s + eps * (float)(ts + r + 1));
            den[r] = inv;
            if (ts + r < T) rden[(size_t)bh * T + ts + r] = inv;
        }
    }
    float acc_[TPW(MTT, DV)][4];
    zero_tiles<MTT, DV>(acc_);
    wmm<MTT, DV, MTT, true>(As, LDT2, VT, nullptr, LDT2, acc_);
    wmm<MTT, DV, D, true>(Qs, LDD, Sh, SPLIT ? Sl : nullptr, LDD, acc_);
    __syncthreads();
    in_t* ob = o + (size_t)bh * T * DV;
    store_out(acc_, ob, den, mask, b, ts, T);
}
#endif
""";
}
