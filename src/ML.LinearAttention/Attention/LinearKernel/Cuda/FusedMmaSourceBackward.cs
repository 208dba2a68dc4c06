namespace Microsoft.ML.LinearAttention.Attention.LinearKernel.Cuda;

/// <summary>
/// Tensor-core backward kernels (appended after <see cref="FusedMmaSource.Source"/>, same MMA guard and helpers), with
/// the same arguments and results as <c>bwd_q</c> and <c>bwd_kv</c>: g = dO/den, dden = −(dO·o)/den,
/// dq = (g Sᵀ + dden zᵀ)·φ'(q), dS += φqᵀ g, dz += φqᵀ dden (<c>mma_bwd_q</c>); dk = (v dSᵀ + dz)·φ'(k) and
/// dv = φk dS over real keys (<c>mma_bwd_kv</c>). g is rounded to bf16 for the MMAs (its range follows 1/den, which
/// fp16 could not hold at long T); S and dS are split into high and low bf16 parts; dO·o, den, dden, dz are fp32.
/// </summary>
internal static class FusedMmaSourceBackward
{
    public const string Source = """

#if MMA
extern "C" __global__ void __launch_bounds__(NT) mma_bwd_q(const in_t* __restrict__ q, const in_t* __restrict__ dout,
        const in_t* __restrict__ out,
        const float* __restrict__ S, const float* __restrict__ z, const u8* __restrict__ mask,
        const float* __restrict__ epsn, int T, int H, int tpb, in_t* __restrict__ dq, float* __restrict__ dS,
        float* __restrict__ dz) {
    extern __shared__ float4 smem4[];
    u16* Sh = (u16*)smem4;              // [D][LDE]    S high (B of g·Sᵀ: n = d, k = e)
    u16* Sl = Sh + D * LDE;             // [D][LDE]    S low
    u16* QT = Sl + D * LDE;             // [D][LDT2]   φqᵀ
    u16* Gs = QT + D * LDT2;            // [MTT][LDE]  g
    u16* GT = Gs + MTT * LDE;           // [DV][LDT2]  gᵀ
    float* zs = (float*)(GT + DV * LDT2);   // [D]
    float* den = zs + D;                // [MTT]  1/den
    float* dden = den + MTT;            // [MTT]
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    load_split(S + (size_t)bh * D * DV, Sh, Sl, LDE, false);
    if (tid < D) zs[tid] = z[(size_t)bh * D + tid];
    const float en = epsn[b];
    const in_t* qb = q + (size_t)bh * T * D;
    const in_t* gb = dout + (size_t)bh * T * DV;
    const in_t* ob = out + (size_t)bh * T * DV;
    in_t* dqb = dq + (size_t)bh * T * D;
    float accS[TPW(D, DV)][4];
    zero_tiles<D, DV>(accS);
    float dzacc[ZP];
#pragma unroll
    for (int j = 0; j < ZP; ++j) dzacc[j] = 0.f;
    for (int ts = t0; ts < t1; ts += MTT) {
        __syncthreads();
        LOAD_COLS(QT, D, true, qb, real_token(mask, b, t, T), phi(x))
        __syncthreads();
        inv_den(QT, 1, LDT2, zs, en, den);   // 1/den, the same value as the forward's
        __syncthreads();
        // dden = −(dO·o)/den with the saved output o: one warp per row; zero at padded rows.
        for (int r = tid >> 5; r < MTT; r += NW) {
            const int t = ts + r;
            float s = 0.f;
            if (real_token(mask, b, t, T))
                for (int j = tid & 31; j < DV; j += 32) s = fmaf(ldx(gb[(size_t)t * DV + j]), ldx(ob[(size_t)t * DV + j]), s);
#pragma unroll
            for (int w = 16; w > 0; w >>= 1) s += __shfl_xor_sync(0xffffffffu, s, w);
            if ((tid & 31) == 0) dden[r] = -s * den[r];
        }
        LOAD_ROWS(Gs, LDE, DV, gb, real_token(mask, b, t, T), x * den[r])
        LOAD_COLS(GT, DV, true, gb, real_token(mask, b, t, T), x * den[r])
        __syncthreads();
        {   // dφq = g Sᵀ + dden zᵀ, times φ'(q).
            float acc_[TPW(MTT, D)][4];
            zero_tiles<MTT, D>(acc_);
            wmm<MTT, D, DV, true>(Gs, LDE, Sh, SPLIT ? Sl : nullptr, LDE, acc_);
            FOR_TILE_PAIRS(MTT, D, {
                const int t = ts + row;
                if (t < T) {
                    const size_t at = (size_t)t * D + col;
                    const float d0 = (c0 + dden[row] * zs[col]) * dphix(ldx(qb[at]));
                    const float d1 = (c1 + dden[row] * zs[col + 1]) * dphix(ldx(qb[at + 1]));
                    *(unsigned*)(dqb + at) = pack2(stx(d0), stx(d1));
                }
            })
        }
        // dS += φqᵀ g, dz += φqᵀ dden.
        wmm<D, DV, MTT, true>(QT, LDT2, GT, nullptr, LDT2, accS);
        colsum<true, true>(QT, dden, dzacc);
    }
    float* dSb = dS + (size_t)bh * D * DV;
    {
        float (&acc_)[TPW(D, DV)][4] = accS;
        FOR_TILE_PAIRS(D, DV, { atomicAdd(dSb + row * DV + col, c0); atomicAdd(dSb + row * DV + col + 1, c1); })
    }
    colsum_flush(dzacc, dz + (size_t)bh * D);
}

extern "C" __global__ void __launch_bounds__(NT) mma_bwd_kv(const in_t* __restrict__ k, const in_t* __restrict__ v,
        const float* __restrict__ dS, const float* __restrict__ dz, const u8* __restrict__ mask, int T, int H, int tpb,
        in_t* __restrict__ dk, in_t* __restrict__ dv) {
    extern __shared__ float4 smem4[];
    u16* Dh = (u16*)smem4;              // [D][LDE]    dS high (B of v·dSᵀ: n = d, k = e)
    u16* Dl = Dh + D * LDE;             // [D][LDE]    dS low
    u16* DTh = Dl + D * LDE;            // [DV][LDD]   dSᵀ high (B of φk·dS: n = e, k = d)
    u16* DTl = DTh + DV * LDD;          // [DV][LDD]   dSᵀ low
    u16* Vs = DTl + DV * LDD;           // [MTT][LDE]  v
    u16* Ks = Vs + MTT * LDE;           // [MTT][LDD]  φk
    float* dzs = (float*)(Ks + MTT * LDD);  // [D]
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    load_split(dS + (size_t)bh * D * DV, Dh, Dl, LDE, false);
    load_split(dS + (size_t)bh * D * DV, DTh, DTl, LDD, true);
    if (tid < D) dzs[tid] = dz[(size_t)bh * D + tid];
    const in_t* kb = k + (size_t)bh * T * D;
    const in_t* vb = v + (size_t)bh * T * DV;
    in_t* dkb = dk + (size_t)bh * T * D;
    in_t* dvb = dv + (size_t)bh * T * DV;
    for (int ts = t0; ts < t1; ts += MTT) {
        __syncthreads();
        LOAD_ROWS(Ks, LDD, D, kb, real_token(mask, b, t, T), phi(x))
        LOAD_ROWS(Vs, LDE, DV, vb, t < T, x)
        __syncthreads();
        {   // dk = (v dSᵀ + dz)·φ'(k), zero at padded keys.
            float acc_[TPW(MTT, D)][4];
            zero_tiles<MTT, D>(acc_);
            wmm<MTT, D, DV, true>(Vs, LDE, Dh, SPLIT ? Dl : nullptr, LDE, acc_);
            FOR_TILE_PAIRS(MTT, D, {
                const int t = ts + row;
                if (t < T) {
                    const bool real = real_token(mask, b, t, T);
                    const size_t at = (size_t)t * D + col;
                    const float d0 = real ? (c0 + dzs[col]) * dphix(ldx(kb[at])) : 0.f;
                    const float d1 = real ? (c1 + dzs[col + 1]) * dphix(ldx(kb[at + 1])) : 0.f;
                    *(unsigned*)(dkb + at) = pack2(stx(d0), stx(d1));
                }
            })
        }
        {   // dv = φk dS, zero at padded keys.
            float acc_[TPW(MTT, DV)][4];
            zero_tiles<MTT, DV>(acc_);
            wmm<MTT, DV, D, true>(Ks, LDD, DTh, SPLIT ? DTl : nullptr, LDD, acc_);
            FOR_TILE_PAIRS(MTT, DV, {
                const int t = ts + row;
                if (t < T) {
                    const bool real = real_token(mask, b, t, T);
                    *(unsigned*)(dvb + (size_t)t * DV + col) = pack2(stx(real ? c0 : 0.f), stx(real ? c1 : 0.f));
                }
            })
        }
    }
}
#endif
""";
}
