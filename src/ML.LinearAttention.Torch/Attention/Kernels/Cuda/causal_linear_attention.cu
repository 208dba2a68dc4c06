// NVRTC module "causal_linear_attention" (kernels.json; FusedCausalLaunch): tensor-core kernels of CAUSAL normalized
// linear attention in chunk form (chunk = MTT = 64 tokens), compiled with MMA = 1.
// o_t = Σ_{s≤t} a_ts v_s / (Σ_{s≤t} a_ts + eps·(t+1)), a_ts = φq_t·φk_s over real keys s, zero rows at padded queries.
// Forward: causal_state writes each chunk's S_c = φK_cᵀV_c and z_c (fp32, one [D·DV + D] record per chunk);
// causal_scan turns the records into exclusive prefixes P_c = Σ_{c'<c} (in place, sequential over chunks);
// causal_out: A = tril(φQ_c φK_cᵀ), num = A V_c + φQ_c P_c, den = rowsum(A) + φQ_c·z_prefix + eps·(t+1), o = num/den,
// saving 1/den for the backward.
// Backward, with g_t = dO_t/den_t and dden_t = −(dO_t·o_t)/den_t (zero at padded queries), dA_ts = g_t·v_s + dden_t:
//   dφq_t = [tril(dA_c) φK_c]_t + g_t P_cᵀ + dden_t z_c          (P_c, z_c: forward prefixes)
//   dφk_s = [tril(dA_c)ᵀ φQ_c]_s + dP_c v_s + dz_c              (dP_c, dz_c: reverse prefixes)
//   dv_s  = [tril(A_c)ᵀ G_c]_s + φk_s dP_c
// with dP_c = Σ_{c'>c} φQ_c'ᵀ G_c' and dz_c = Σ_{c'>c} φQ_c'ᵀ dden_c' (causal_bwd_state writes each chunk's term,
// causal_scan with rev = 1 sums them). Operands are bf16 (fp32 prefix states split into high and low parts for fp16
// inputs), products accumulate in fp32.
// The module also carries the CUDA-core kernels, which its launcher does not call.
#include "common.cuh"
#include "linear_attention_cuda_core.cuh"
#include "mma_common.cuh"
#include "mma_tiles.cuh"
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
    // SM at D = Dv = 64 instead of 1).
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
