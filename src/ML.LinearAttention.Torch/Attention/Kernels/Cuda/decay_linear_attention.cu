// NVRTC module "decay_linear_attention" (kernels.json; FusedDecayLaunch): tensor-core kernels of CAUSAL decayed linear
// attention with one log decay per head and token (simple GLA, RetNet, Lightning: DecayKernels with g [B, H, T]) in chunk
// form (chunk = MTT = 64 tokens), compiled with MMA = 1. No feature map, no denominator:
//   o_t = scale · Σ_{s≤t} exp(G_t − G_s) (q_t·k_s) v_s,  G_t = Σ_{u≤t} g_u,  over real keys s; zero rows at padded queries,
// padded tokens neither write nor decay the state (their g counts as 0). Within a chunk, b_r = Σ_{u≤r} g_u from the
// chunk's start (fp32, the same order of sums in every kernel) and Λ = b_last; every exponent taken is ≤ 0.
// Forward: decay_state writes U_c = Σ_s exp(Λ_c − b_s) k_s v_sᵀ (fp32 [D·DV] per chunk) and Λ_c; decay_scan turns them
// into the decayed exclusive prefixes P_{c+1} = exp(Λ_c) P_c + U_c (in place); decay_out:
//   o = scale · (exp(b) ⊙ Q P_c + (Q Kᵀ ⊙ M) V),  M_rs = exp(b_r − b_s)·[r ≥ s]  (M formed in the kernel).
// Backward (scale folded in at the epilogues), with dA = (dO Vᵀ) ⊙ M and A = (Q Kᵀ) ⊙ M:
//   dq = scale · (exp(b) ⊙ dO P_cᵀ + dA K)
//   dk = scale · (exp(Λ − b) ⊙ V dP_cᵀ + dAᵀ Q),  dv = scale · (exp(Λ − b) ⊙ K dP_c + Aᵀ dO)
// with the reverse prefixes dP_c = Σ_{t after chunk c} exp(G_t − G_end(c)) q_t dO_tᵀ: decay_bwd_state writes each chunk's
// V_c = Σ_t exp(b_t) q_t dO_tᵀ and decay_scan with rev = 1 forms dP_{c−1} = exp(Λ_c) dP_c + V_c. The log decays' gradient
// per token, dG_t = q_t·dq_t − k_t·dk_t (fp32, before rounding), goes to dG; the host's reverse cumulative sum gives dg.
// Operands are bf16 (fp32 states split into high and low parts for fp16 inputs), products accumulate in fp32.
#include "common.cuh"
#include "mma_common.cuh"
#include "mma_tiles.cuh"
#if MMA
#define DCS (D * DV)            // floats per chunk record: a [D][DV] state
#define DXN (D * LDE > DV * LDD ? D * LDE : DV * LDD)   // u16 per state operand buffer of decay_bwd
#define DXQ (DXN > MTT * LDD ? DXN : MTT * LDD)         // u16 of decay_bwd's q tile, reused for the state operand

// bs[r] = Σ_{u≤r} g_u over the chunk's tokens (0 where not real), summed in the same fixed order in every kernel so that
// forward and backward see identical decays: prefix sums within runs of 8 tokens, then the totals of the runs before
// (a dependent chain of 15 adds instead of 64). Called by every thread (barriers).
__device__ __forceinline__ void chunk_log_decay(const float* __restrict__ gh, const u8* mask, int b, int ts, int T, float* bs) {
    const int tid = threadIdx.x;
    if (tid < MTT) bs[tid] = real_token(mask, b, ts + tid, T) ? gh[ts + tid] : 0.f;
    __syncthreads();
    if (tid < MTT / 8) {
        float s = 0.f;
#pragma unroll
        for (int u = 0; u < 8; ++u) { s += bs[tid * 8 + u]; bs[tid * 8 + u] = s; }
    }
    __syncthreads();
    float before = 0.f;
    if (tid < MTT)
        for (int j = 0; j < tid / 8; ++j) before += bs[j * 8 + 7];
    __syncthreads();
    if (tid < MTT) bs[tid] += before;
    __syncthreads();
}

// Rows of this warp's accumulators of an M×N product times w[row].
template <int M, int N>
__device__ __forceinline__ void scale_rows(float (&acc)[TPW(M, N)][4], const float* w) {
    constexpr int MT = M / 16, TOT = MT * (N / 8);
    const int wi = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2;
#pragma unroll
    for (int j = 0; j < TPW(M, N); ++j) {
        const int idx = wi + NW * j;
        if (TOT % NW != 0 && idx >= TOT) break;
        const int r = (idx % MT) * 16 + g;
        acc[j][0] *= w[r]; acc[j][1] *= w[r]; acc[j][2] *= w[r + 8]; acc[j][3] *= w[r + 8];
    }
}

// Decayed causal scores of the chunk into A [t][s] (and its transpose AT [s][t] when AT is given): the fp32 products
// in acc_ times exp(b_t − b_s) for s ≤ t, zero above the diagonal.
#define STORE_DECAYED_TRIL(A, AT, bs) \
    FOR_TILE_PAIRS(MTT, MTT, { \
        const float a0 = col <= row ? c0 * expf((bs)[row] - (bs)[col]) : 0.f; \
        const float a1 = col + 1 <= row ? c1 * expf((bs)[row] - (bs)[col + 1]) : 0.f; \
        *(unsigned*)((A) + row * LDT2 + col) = f2m2<true>(a0, a1); \
        if ((AT) != nullptr) { (AT)[col * LDT2 + row] = f2bf(a0); (AT)[(col + 1) * LDT2 + row] = f2bf(a1); } })

// One chunk's [D][DV] record at Pb from the accumulators acc_.
#define STORE_RECORD(Pb) FOR_TILE_PAIRS(D, DV, { (Pb)[row * DV + col] = c0; (Pb)[row * DV + col + 1] = c1; })

extern "C" __global__ void __launch_bounds__(NT) decay_state(const in_t* __restrict__ k, const in_t* __restrict__ v,
        const float* __restrict__ g, const u8* __restrict__ mask, int T, int H, int nc, float* __restrict__ U,
        float* __restrict__ L) {
    extern __shared__ float4 smem4[];
    u16* KT = (u16*)smem4;              // [D][LDT2]   (exp(Λ − b) ⊙ k)ᵀ
    u16* VT = KT + D * LDT2;            // [DV][LDT2]  vᵀ
    float* bs = (float*)(VT + DV * LDT2);   // [MTT] b
    float* wk = bs + MTT;               // [MTT] exp(Λ − b)
    const int bh = blockIdx.y, b = bh / H, c = blockIdx.x, ts = c * MTT, tid = threadIdx.x;
    const in_t* kb = k + (size_t)bh * T * D;
    const in_t* vb = v + (size_t)bh * T * DV;
    chunk_log_decay(g + (size_t)bh * T, mask, b, ts, T, bs);
    if (tid < MTT) wk[tid] = expf(bs[MTT - 1] - bs[tid]);
    if (tid == 0) L[(size_t)bh * nc + c] = bs[MTT - 1];
    __syncthreads();
    LOAD_COLS(KT, D, true, kb, real_token(mask, b, t, T), x * wk[r])
    LOAD_COLS(VT, DV, true, vb, t < T, x)
    __syncthreads();
    float acc_[TPW(D, DV)][4];
    zero_tiles<D, DV>(acc_);
    wmm<D, DV, MTT, true>(KT, LDT2, VT, nullptr, LDT2, acc_);
    float* Ub = U + ((size_t)bh * nc + c) * DCS;
    STORE_RECORD(Ub)
}

// In-place decayed exclusive scan over the nc chunk records of each head, n floats per record:
// out_c = run, run = exp(L_c)·run + X_c, in chunk order or (rev) from the last chunk down.
extern "C" __global__ void __launch_bounds__(NT) decay_scan(float* __restrict__ X, const float* __restrict__ L, int nc, int n, int rev) {
    const int i = blockIdx.x * NT + threadIdx.x;
    if (i >= n) return;
    float* p = X + (size_t)blockIdx.y * nc * n + i;
    const float* l = L + (size_t)blockIdx.y * nc;
    float run = 0.f;
    // 8 records' loads in flight at a time (the chain over chunks is latency-bound otherwise).
    for (int j0 = 0; j0 < nc; j0 += 8) {
        float x[8], e[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int j = j0 + u, cj = rev ? nc - 1 - j : j;
            x[u] = j < nc ? p[(size_t)cj * n] : 0.f;
            e[u] = j < nc ? expf(l[cj]) : 0.f;
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int j = j0 + u;
            if (j < nc) p[(size_t)(rev ? nc - 1 - j : j) * n] = run;
            run = fmaf(e[u], run, x[u]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(NT) decay_out(const in_t* __restrict__ q, const in_t* __restrict__ k,
        const in_t* __restrict__ v, const float* __restrict__ g, const float* __restrict__ P, const u8* __restrict__ mask,
        float scale, int T, int H, int nc, in_t* __restrict__ o) {
    extern __shared__ float4 smem4[];
    u16* Sh = (u16*)smem4;              // [DV][LDD]   prefix Pᵀ high
    u16* Sl = Sh + DV * LDD;            // [DV][LDD]   prefix Pᵀ low
    u16* Qs = Sl + DV * LDD;            // [MTT][LDD]  q
    u16* Ks = Qs + MTT * LDD;           // [MTT][LDD]  k
    u16* VT = Ks + MTT * LDD;           // [DV][LDT2]  vᵀ
    u16* As = VT + DV * LDT2;           // [MTT][LDT2] (q kᵀ) ⊙ M
    float* bs = (float*)(As + MTT * LDT2);  // [MTT] b
    float* eb = bs + MTT;               // [MTT] exp(b)
    float* sc = eb + MTT;               // [MTT] scale (the output's row factor)
    const int bh = blockIdx.y, b = bh / H, c = blockIdx.x, ts = c * MTT, tid = threadIdx.x;
    load_split(P + ((size_t)bh * nc + c) * DCS, Sh, Sl, LDD, true);
    const in_t* qb = q + (size_t)bh * T * D;
    const in_t* kb = k + (size_t)bh * T * D;
    const in_t* vb = v + (size_t)bh * T * DV;
    chunk_log_decay(g + (size_t)bh * T, mask, b, ts, T, bs);
    if (tid < MTT) { eb[tid] = expf(bs[tid]); sc[tid] = scale; }
    LOAD_ROWS(Qs, LDD, D, qb, real_token(mask, b, t, T), x)
    LOAD_ROWS(Ks, LDD, D, kb, real_token(mask, b, t, T), x)
    LOAD_COLS(VT, DV, true, vb, t < T, x)
    __syncthreads();
    {
        float acc_[TPW(MTT, MTT)][4];
        zero_tiles<MTT, MTT>(acc_);
        wmm<MTT, MTT, D, true>(Qs, LDD, Ks, nullptr, LDD, acc_);
        STORE_DECAYED_TRIL(As, (u16*)nullptr, bs)
    }
    float acc_[TPW(MTT, DV)][4];
    zero_tiles<MTT, DV>(acc_);
    wmm<MTT, DV, D, true>(Qs, LDD, Sh, SPLIT ? Sl : nullptr, LDD, acc_);
    scale_rows<MTT, DV>(acc_, eb);
    __syncthreads();
    wmm<MTT, DV, MTT, true>(As, LDT2, VT, nullptr, LDT2, acc_);
    store_out(acc_, o + (size_t)bh * T * DV, sc, mask, b, ts, T);
}

extern "C" __global__ void __launch_bounds__(NT) decay_bwd_state(const in_t* __restrict__ q, const in_t* __restrict__ dout,
        const float* __restrict__ g, const u8* __restrict__ mask, int T, int H, int nc, float* __restrict__ dP) {
    extern __shared__ float4 smem4[];
    u16* QT = (u16*)smem4;              // [D][LDT2]   qᵀ
    u16* GT = QT + D * LDT2;            // [DV][LDT2]  (exp(b) ⊙ dO)ᵀ
    float* bs = (float*)(GT + DV * LDT2);   // [MTT] b
    float* eb = bs + MTT;               // [MTT] exp(b)
    const int bh = blockIdx.y, b = bh / H, c = blockIdx.x, ts = c * MTT, tid = threadIdx.x;
    const in_t* qb = q + (size_t)bh * T * D;
    const in_t* gb = dout + (size_t)bh * T * DV;
    chunk_log_decay(g + (size_t)bh * T, mask, b, ts, T, bs);
    if (tid < MTT) eb[tid] = expf(bs[tid]);
    __syncthreads();
    LOAD_COLS(QT, D, true, qb, real_token(mask, b, t, T), x)
    LOAD_COLS(GT, DV, true, gb, real_token(mask, b, t, T), x * eb[r])
    __syncthreads();
    float acc_[TPW(D, DV)][4];
    zero_tiles<D, DV>(acc_);
    wmm<D, DV, MTT, true>(QT, LDT2, GT, nullptr, LDT2, acc_);
    float* Vb = dP + ((size_t)bh * nc + c) * DCS;
    STORE_RECORD(Vb)
}
#endif
#if MMA
// Writes dst[t][col..col+1] = V0, V1 for the tile pairs of a [MTT][N] product at rows t < T, and adds SIGN·(V0·x0 + V1·x1)
// to dG's row sum gd[row] at real rows, x from the transposed operand tile XT [N][LDT2]: the bf16 values the products
// used, so that q·dq and k·dk cancel as exactly as they do in the sums (fp16 inputs' own values leave a rounding residue).
#define STORE_ROWS_DG(N, dst, XT, V0, V1, SIGN) \
    FOR_TILE_PAIRS(MTT, N, { \
        const int t = ts + row; \
        if (t < T) { \
            const size_t at = (size_t)t * (N) + col; \
            const float v0 = (V0); const float v1 = (V1); \
            *(unsigned*)((dst) + at) = stx2(v0, v1); \
            if (real_token(mask, b, t, T)) \
                atomicAdd(gd + row, (SIGN) * (v0 * bf2f((XT)[col * LDT2 + row]) + v1 * bf2f((XT)[(col + 1) * LDT2 + row]))); } })

extern "C" __global__ void __launch_bounds__(NT, 1) decay_bwd(const in_t* __restrict__ q, const in_t* __restrict__ k,
        const in_t* __restrict__ v, const in_t* __restrict__ dout, const float* __restrict__ g, const float* __restrict__ P,
        const float* __restrict__ dP, const u8* __restrict__ mask, float scale, int T, int H, int nc, in_t* __restrict__ dq,
        in_t* __restrict__ dk, in_t* __restrict__ dv, float* __restrict__ dG) {
    extern __shared__ float4 smem4[];
    // Qs is only read by the score products; its space then holds the high part of the state operand.
    u16* Qs = (u16*)smem4;              // [MTT][LDD]  q
    u16* Xh = Qs;                       // state operand, high part: P_c, then dP_c, then dP_cᵀ (after the scores)
    u16* Ks = Qs + DXQ;                 // [MTT][LDD]  k
    u16* QT = Ks + MTT * LDD;           // [D][LDT2]   qᵀ
    u16* KT = QT + D * LDT2;            // [D][LDT2]   kᵀ
    u16* Gs = KT + D * LDT2;            // [MTT][LDE]  dO
    u16* Vs = Gs + MTT * LDE;           // [MTT][LDE]  v
    u16* GT = Vs + MTT * LDE;           // [DV][LDT2]  dOᵀ
    u16* As = GT + DV * LDT2;           // [MTT][LDT2] A
    u16* AT = As + MTT * LDT2;          // [MTT][LDT2] Aᵀ
    u16* dAs = AT + MTT * LDT2;         // [MTT][LDT2] dA
    u16* dAT = dAs + MTT * LDT2;        // [MTT][LDT2] dAᵀ
    u16* Xl = dAT + MTT * LDT2;         // state operand, low part
    float* bs = (float*)(Xl + DXN);     // [MTT] b
    float* eb = bs + MTT;               // [MTT] exp(b)
    float* el = eb + MTT;               // [MTT] exp(Λ − b)
    float* gd = el + MTT;               // [MTT] dG
    const int bh = blockIdx.y, b = bh / H, c = blockIdx.x, ts = c * MTT, tid = threadIdx.x;
    const in_t* qb = q + (size_t)bh * T * D;
    const in_t* kb = k + (size_t)bh * T * D;
    const in_t* vb = v + (size_t)bh * T * DV;
    const in_t* gb = dout + (size_t)bh * T * DV;
    const float* Pb = P + ((size_t)bh * nc + c) * DCS;
    const float* dPb = dP + ((size_t)bh * nc + c) * DCS;
    chunk_log_decay(g + (size_t)bh * T, mask, b, ts, T, bs);
    if (tid < MTT) { eb[tid] = expf(bs[tid]); el[tid] = expf(bs[MTT - 1] - bs[tid]); gd[tid] = 0.f; }
    LOAD_ROWS(Qs, LDD, D, qb, real_token(mask, b, t, T), x)
    LOAD_ROWS(Ks, LDD, D, kb, real_token(mask, b, t, T), x)
    LOAD_COLS(QT, D, true, qb, real_token(mask, b, t, T), x)
    LOAD_COLS(KT, D, true, kb, real_token(mask, b, t, T), x)
    LOAD_ROWS(Gs, LDE, DV, gb, real_token(mask, b, t, T), x)
    LOAD_ROWS(Vs, LDE, DV, vb, t < T, x)
    LOAD_COLS(GT, DV, true, gb, real_token(mask, b, t, T), x)
    __syncthreads();
    {   // A = (q kᵀ) ⊙ M, dA = (dO vᵀ) ⊙ M, both layouts.
        float acc_[TPW(MTT, MTT)][4];
        zero_tiles<MTT, MTT>(acc_);
        wmm<MTT, MTT, D, true>(Qs, LDD, Ks, nullptr, LDD, acc_);
        STORE_DECAYED_TRIL(As, AT, bs)
        zero_tiles<MTT, MTT>(acc_);
        wmm<MTT, MTT, DV, true>(Gs, LDE, Vs, nullptr, LDE, acc_);
        STORE_DECAYED_TRIL(dAs, dAT, bs)
    }
    __syncthreads();
    load_split(Pb, Xh, Xl, LDE, false);
    __syncthreads();
    {   // dq = scale · (exp(b) ⊙ dO P_cᵀ + dA K); dG += q·dq
        float acc_[TPW(MTT, D)][4];
        zero_tiles<MTT, D>(acc_);
        wmm<MTT, D, DV, true>(Gs, LDE, Xh, SPLIT ? Xl : nullptr, LDE, acc_);
        scale_rows<MTT, D>(acc_, eb);
        wmm<MTT, D, MTT, true>(dAs, LDT2, KT, nullptr, LDT2, acc_);
        STORE_ROWS_DG(D, dq + (size_t)bh * T * D, QT, scale * c0, scale * c1, 1.f)
    }
    __syncthreads();
    load_split(dPb, Xh, Xl, LDE, false);
    __syncthreads();
    {   // dk = scale · (exp(Λ − b) ⊙ V dP_cᵀ + dAᵀ Q), zero at padded keys; dG −= k·dk
        float acc_[TPW(MTT, D)][4];
        zero_tiles<MTT, D>(acc_);
        wmm<MTT, D, DV, true>(Vs, LDE, Xh, SPLIT ? Xl : nullptr, LDE, acc_);
        scale_rows<MTT, D>(acc_, el);
        wmm<MTT, D, MTT, true>(dAT, LDT2, QT, nullptr, LDT2, acc_);
        STORE_ROWS_DG(D, dk + (size_t)bh * T * D, KT, real_token(mask, b, t, T) ? scale * c0 : 0.f,
                      real_token(mask, b, t, T) ? scale * c1 : 0.f, -1.f)
    }
    __syncthreads();
    load_split(dPb, Xh, Xl, LDD, true);
    __syncthreads();
    {   // dv = scale · (exp(Λ − b) ⊙ K dP_c + Aᵀ dO), zero at padded keys
        float acc_[TPW(MTT, DV)][4];
        zero_tiles<MTT, DV>(acc_);
        wmm<MTT, DV, D, true>(Ks, LDD, Xh, SPLIT ? Xl : nullptr, LDD, acc_);
        scale_rows<MTT, DV>(acc_, el);
        wmm<MTT, DV, MTT, true>(AT, LDT2, GT, nullptr, LDT2, acc_);
        FOR_TILE_PAIRS(MTT, DV, {
            const int t = ts + row;
            if (t < T) {
                const bool real = real_token(mask, b, t, T);
                *(unsigned*)(dv + (size_t)bh * T * DV + (size_t)t * DV + col) = stx2(real ? scale * c0 : 0.f, real ? scale * c1 : 0.f);
            } })
    }
    __syncthreads();
    if (tid < MTT && ts + tid < T) dG[(size_t)bh * T + ts + tid] = real_token(mask, b, ts + tid, T) ? gd[tid] : 0.f;
}
#endif
