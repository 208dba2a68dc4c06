namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// Tensor-core backward kernels of causal normalized linear attention (after <see cref="FusedCausalSource.Source"/>).
/// <para>Derivation. Forward per query t: num_t = Σ_{s≤t} a_ts v_s, den_t = Σ_{s≤t} a_ts + eps·(t+1), o_t = num_t/den_t,
/// a_ts = φq_t·φk_s. With the upstream gradient dO_t: g_t = dO_t/den_t (∂L/∂num_t) and dden_t = −(dO_t·o_t)/den_t
/// (∂L/∂den_t), both zero at padded queries (their output is the constant 0). Then ∂L/∂a_ts = dA_ts = g_t·v_s + dden_t
/// for s ≤ t, and
///   dφq_t = Σ_{s≤t} dA_ts φk_s   = [tril(dA_c) φK_c]_t + g_t P_cᵀ + dden_t z_c          (P_c, z_c: forward prefixes)
///   dφk_s = Σ_{t≥s} dA_ts φq_t   = [tril(dA_c)ᵀ φQ_c]_s + dP_c v_s + dz_c              (dP_c, dz_c: reverse prefixes)
///   dv_s  = Σ_{t≥s} a_ts g_t     = [tril(A_c)ᵀ G_c]_s + φk_s dP_c
/// with the reverse exclusive prefixes dP_c = Σ_{c'&gt;c} φQ_c'ᵀ G_c' and dz_c = Σ_{c'&gt;c} φQ_c'ᵀ dden_c'
/// (<c>causal_bwd_state</c> writes each chunk's term, <c>causal_scan</c> with rev = 1 sums them). Finally
/// dq = dφq·φ'(q), dk = dφk·φ'(k) and dv are zero at padded keys (their φk and v never reach the output).</para>
/// </summary>
internal static class FusedCausalSourceBackward
{
    public const string Source = """

#if MMA
// dden = −(dO·o)·(1/den) per row of the chunk into dd[MTT] (one warp per row; zero at padded rows); rd[MTT] holds 1/den.
#define CAUSAL_DDEN(dd, rd) \
    for (int r = threadIdx.x >> 5; r < MTT; r += NW) { \
        const int t = ts + r; \
        float s_ = 0.f; \
        if (real_token(mask, b, t, T)) \
            for (int j = threadIdx.x & 31; j < DV; j += 32) s_ = fmaf(ldx(gb[(size_t)t * DV + j]), ldx(ob[(size_t)t * DV + j]), s_); \
        _Pragma("unroll") for (int w = 16; w > 0; w >>= 1) s_ += __shfl_xor_sync(0xffffffffu, s_, w); \
        if ((threadIdx.x & 31) == 0) dd[r] = -s_ * rd[r]; }

extern "C" __global__ void __launch_bounds__(NT) causal_bwd_state(const in_t* __restrict__ q, const in_t* __restrict__ dout,
        const in_t* __restrict__ out, const float* __restrict__ rden, const u8* __restrict__ mask, int T, int H, int nc,
        float* __restrict__ dP) {
    extern __shared__ float4 smem4[];
    u16* QT = (u16*)smem4;              // [D][LDT2]   φqᵀ
    u16* GT = QT + D * LDT2;            // [DV][LDT2]  gᵀ
    float* rd = (float*)(GT + DV * LDT2);   // [MTT] 1/den
    float* dd = rd + MTT;               // [MTT] dden
    const int bh = blockIdx.y, b = bh / H, c = blockIdx.x, ts = c * MTT, tid = threadIdx.x;
    const in_t* qb = q + (size_t)bh * T * D;
    const in_t* gb = dout + (size_t)bh * T * DV;
    const in_t* ob = out + (size_t)bh * T * DV;
    if (tid < MTT) rd[tid] = ts + tid < T ? rden[(size_t)bh * T + ts + tid] : 0.f;
    __syncthreads();
    CAUSAL_DDEN(dd, rd)
    LOAD_COLS(QT, D, true, qb, real_token(mask, b, t, T), phi(x))
    LOAD_COLS(GT, DV, true, gb, real_token(mask, b, t, T), x * rd[r])
    __syncthreads();
    float acc_[TPW(D, DV)][4];
    zero_tiles<D, DV>(acc_);
    wmm<D, DV, MTT, true>(QT, LDT2, GT, nullptr, LDT2, acc_);
    store_record<true>(acc_, QT, dd, dP + ((size_t)bh * nc + c) * CS);
}

// Writes dst[t][col..col+1] = f(c0), f(c1) for the tile pairs of a [MTT][N] product at real rows t < T.
#define STORE_ROWS(N, dst, V0, V1) \
    FOR_TILE_PAIRS(MTT, N, { \
        const int t = ts + row; \
        if (t < T) { const size_t at = (size_t)t * (N) + col; *(unsigned*)((dst) + at) = stx2(V0, V1); } })

extern "C" __global__ void __launch_bounds__(NT, 1) causal_bwd(const in_t* __restrict__ q, const in_t* __restrict__ k,
        const in_t* __restrict__ v, const in_t* __restrict__ dout, const in_t* __restrict__ out,
        const float* __restrict__ rden, const float* __restrict__ P, const float* __restrict__ dP,
        const u8* __restrict__ mask, int T, int H, int nc, in_t* __restrict__ dq, in_t* __restrict__ dk,
        in_t* __restrict__ dv) {
    extern __shared__ float4 smem4[];
    // Qs is only read by the score products; its space then holds the high part of the state operand (2 blocks per
    // SM at D = Dv = 64 on an H200 instead of 1).
    u16* Qs = (u16*)smem4;              // [MTT][LDD]  φq
    u16* Xh = Qs;                       // state operand, high part: P_c, then dP_c, then dP_cᵀ (after the scores)
    u16* Ks = Qs + XQ;                  // [MTT][LDD]  φk
    u16* QT = Ks + MTT * LDD;           // [D][LDT2]   φqᵀ
    u16* KT = QT + D * LDT2;            // [D][LDT2]   φkᵀ
    u16* Gs = KT + D * LDT2;            // [MTT][LDE]  g
    u16* Vs = Gs + MTT * LDE;           // [MTT][LDE]  v
    u16* GT = Vs + MTT * LDE;           // [DV][LDT2]  gᵀ
    u16* As = GT + DV * LDT2;           // [MTT][LDT2] tril(A)
    u16* AT = As + MTT * LDT2;          // [MTT][LDT2] tril(A)ᵀ
    u16* dAs = AT + MTT * LDT2;         // [MTT][LDT2] tril(dA)
    u16* dAT = dAs + MTT * LDT2;        // [MTT][LDT2] tril(dA)ᵀ
    u16* Xl = dAT + MTT * LDT2;         // state operand, low part
    float* zs = (float*)(Xl + XN);      // [D] z_c, then dz_c
    float* rd = zs + D;                 // [MTT] 1/den
    float* dd = rd + MTT;               // [MTT] dden
    const int bh = blockIdx.y, b = bh / H, c = blockIdx.x, ts = c * MTT, tid = threadIdx.x;
    const in_t* qb = q + (size_t)bh * T * D;
    const in_t* kb = k + (size_t)bh * T * D;
    const in_t* vb = v + (size_t)bh * T * DV;
    const in_t* gb = dout + (size_t)bh * T * DV;
    const in_t* ob = out + (size_t)bh * T * DV;
    const float* Pb = P + ((size_t)bh * nc + c) * CS;
    const float* dPb = dP + ((size_t)bh * nc + c) * CS;
    if (tid < MTT) rd[tid] = ts + tid < T ? rden[(size_t)bh * T + ts + tid] : 0.f;
    __syncthreads();
    CAUSAL_DDEN(dd, rd)
    LOAD_ROWS(Qs, LDD, D, qb, real_token(mask, b, t, T), phi(x))
    LOAD_ROWS(Ks, LDD, D, kb, real_token(mask, b, t, T), phi(x))
    LOAD_COLS(QT, D, true, qb, real_token(mask, b, t, T), phi(x))
    LOAD_COLS(KT, D, true, kb, real_token(mask, b, t, T), phi(x))
    LOAD_ROWS(Gs, LDE, DV, gb, real_token(mask, b, t, T), x * rd[r])
    LOAD_ROWS(Vs, LDE, DV, vb, t < T, x)
    LOAD_COLS(GT, DV, true, gb, real_token(mask, b, t, T), x * rd[r])
    __syncthreads();
    {   // A = tril(φq φkᵀ), dA = tril(g vᵀ + dden), both layouts.
        float acc_[TPW(MTT, MTT)][4];
        zero_tiles<MTT, MTT>(acc_);
        wmm<MTT, MTT, D, true>(Qs, LDD, Ks, nullptr, LDD, acc_);
        STORE_TRIL(As, AT, (const float*)nullptr)
        zero_tiles<MTT, MTT>(acc_);
        wmm<MTT, MTT, DV, true>(Gs, LDE, Vs, nullptr, LDE, acc_);
        STORE_TRIL(dAs, dAT, dd)
    }
    __syncthreads();
    load_split(Pb, Xh, Xl, LDE, false);
    if (tid < D) zs[tid] = Pb[D * DV + tid];
    __syncthreads();
    {   // dq = (tril(dA) φK + g P_cᵀ + dden z_cᵀ)·φ'(q)
        float acc_[TPW(MTT, D)][4];
        zero_tiles<MTT, D>(acc_);
        wmm<MTT, D, MTT, true>(dAs, LDT2, KT, nullptr, LDT2, acc_);
        wmm<MTT, D, DV, true>(Gs, LDE, Xh, SPLIT ? Xl : nullptr, LDE, acc_);
        STORE_ROWS(D, dq + (size_t)bh * T * D, (c0 + dd[row] * zs[col]) * dphix(ldx(qb[at])),
                   (c1 + dd[row] * zs[col + 1]) * dphix(ldx(qb[at + 1])))
    }
    __syncthreads();
    load_split(dPb, Xh, Xl, LDE, false);
    if (tid < D) zs[tid] = dPb[D * DV + tid];
    __syncthreads();
    {   // dk = (tril(dA)ᵀ φQ + V dP_cᵀ + dz_c)·φ'(k), zero at padded keys
        float acc_[TPW(MTT, D)][4];
        zero_tiles<MTT, D>(acc_);
        wmm<MTT, D, MTT, true>(dAT, LDT2, QT, nullptr, LDT2, acc_);
        wmm<MTT, D, DV, true>(Vs, LDE, Xh, SPLIT ? Xl : nullptr, LDE, acc_);
        STORE_ROWS(D, dk + (size_t)bh * T * D, real_token(mask, b, t, T) ? (c0 + zs[col]) * dphix(ldx(kb[at])) : 0.f,
                   real_token(mask, b, t, T) ? (c1 + zs[col + 1]) * dphix(ldx(kb[at + 1])) : 0.f)
    }
    __syncthreads();
    load_split(dPb, Xh, Xl, LDD, true);
    __syncthreads();
    {   // dv = tril(A)ᵀ G + φK dP_c, zero at padded keys
        float acc_[TPW(MTT, DV)][4];
        zero_tiles<MTT, DV>(acc_);
        wmm<MTT, DV, MTT, true>(AT, LDT2, GT, nullptr, LDT2, acc_);
        wmm<MTT, DV, D, true>(Ks, LDD, Xh, SPLIT ? Xl : nullptr, LDD, acc_);
        STORE_ROWS(DV, dv + (size_t)bh * T * DV, real_token(mask, b, t, T) ? c0 : 0.f, real_token(mask, b, t, T) ? c1 : 0.f)
    }
}
#endif
""";
}
