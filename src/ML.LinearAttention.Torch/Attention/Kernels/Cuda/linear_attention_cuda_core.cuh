// CUDA-core (fp32 math) kernels of bidirectional normalized linear attention, o = φq S / (φq·z + eps·n) with
// S = Σ φkᵀv and z = Σ φk over real keys: fwd_state, fwd_out, then the backward bwd_q (g = dO/den,
// dden = −(dO·o)/den, dφq = g Sᵀ + dden zᵀ, dS = Σ φqᵀ g, dz = Σ φq dden) and bwd_kv (dφk = dS v + dz, dv = φk dS).
// Products are C[m][n] = Σ_k A[k][m]·B[k][n] on fp32 shared-memory tiles (mm), work split over (T-chunk, b·h),
// per-head sums reduced with fp32 atomics. Every module carries them (the launchers of the other modules do not
// call them); they are the reference the emulator compares the tensor-core kernels with.
#ifndef LA_LINEAR_ATTENTION_CUDA_CORE_CUH
#define LA_LINEAR_ATTENTION_CUDA_CORE_CUH
#include "common.cuh"
// Pass 1 of the forward: S += Σ_t φ(k_t)ᵀ v_t, z += Σ_t φ(k_t) over real keys of this block's chunk.
extern "C" __global__ void __launch_bounds__(NT) fwd_state(const in_t* __restrict__ k, const in_t* __restrict__ v,
        const u8* __restrict__ mask, int T, int H, int tpb, float* __restrict__ S, float* __restrict__ z) {
    extern __shared__ float4 smem4[];
    float* Ks = (float*)smem4;          // [TT][PD]
    float* Vs = Ks + TT * PD;           // [TT][PDV]
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * TT, t1 = min(T, t0 + tpb * TT);
    const in_t* kb = k + (size_t)bh * T * D;
    const in_t* vb = v + (size_t)bh * T * DV;
    float acc[RD][RDV];
    zero<D, DV>(acc);
    float zacc = 0.f;
    for (int ts = t0; ts < t1; ts += TT) {
        __syncthreads();
        for (int i = tid; i < TT * D; i += NT) {
            int r = i / D, c = i % D, t = ts + r;
            Ks[r * PD + c] = real_token(mask, b, t, T) ? phi(ldx(kb[(size_t)t * D + c])) : 0.f;
        }
        for (int i = tid; i < TT * DV; i += NT) {
            int r = i / DV, c = i % DV, t = ts + r;
            Vs[r * PDV + c] = t < T ? ldx(vb[(size_t)t * DV + c]) : 0.f;
        }
        __syncthreads();
        mm<D, DV, TT>(Ks, PD, Vs, PDV, acc);
        if (tid < D)
            for (int r = 0; r < TT; ++r) zacc += Ks[r * PD + tid];
    }
    const int tx = tid & 15, ty = tid >> 4;
    float* Sb = S + (size_t)bh * D * DV;
#pragma unroll
    for (int r = 0; r < RD; ++r)
#pragma unroll
        for (int c = 0; c < RDV; ++c) {
            int m = ty * RD + r, n = tx * RDV + c;
            if (m < D && n < DV) atomicAdd(Sb + m * DV + n, acc[r][c]);
        }
    if (tid < D) atomicAdd(z + (size_t)bh * D + tid, zacc);
}

// Pass 2 of the forward: o_t = φ(q_t) S / (φ(q_t)·z + eps·n), zero at padded rows.
extern "C" __global__ void __launch_bounds__(NT) fwd_out(const in_t* __restrict__ q, const float* __restrict__ S,
        const float* __restrict__ z, const u8* __restrict__ mask, const float* __restrict__ epsn, int T, int H, int tpb,
        in_t* __restrict__ o) {
    extern __shared__ float4 smem4[];
    float* Ss = (float*)smem4;          // [D][PDV]
    float* QT = Ss + D * PDV;           // [D][LDT]
    float* zs = QT + D * LDT;           // [D]
    float* den = zs + D;                // [TT]
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int t0 = blockIdx.x * tpb * TT, t1 = min(T, t0 + tpb * TT);
    for (int i = tid; i < D * DV; i += NT) Ss[(i / DV) * PDV + i % DV] = S[(size_t)bh * D * DV + i];
    if (tid < D) zs[tid] = z[(size_t)bh * D + tid];
    const float en = epsn[b];
    const in_t* qb = q + (size_t)bh * T * D;
    in_t* ob = o + (size_t)bh * T * DV;
    for (int ts = t0; ts < t1; ts += TT) {
        __syncthreads();
        for (int i = tid; i < TT * D; i += NT) {
            int r = i / D, c = i % D, t = ts + r;
            QT[c * LDT + r] = real_token(mask, b, t, T) ? phi(ldx(qb[(size_t)t * D + c])) : 0.f;
        }
        __syncthreads();
        if (tid < TT) {
            float d = 0.f;
            for (int i = 0; i < D; ++i) d = fmaf(QT[i * LDT + tid], zs[i], d);
            den[tid] = d + en;
        }
        float acc[RTT][RDV];
        zero<TT, DV>(acc);
        mm<TT, DV, D>(QT, LDT, Ss, PDV, acc);
        __syncthreads();
#pragma unroll
        for (int r = 0; r < RTT; ++r) {
            int m = ty * RTT + r, t = ts + m;
            if (m >= TT || t >= T) continue;
            bool real = real_token(mask, b, t, T);
            float inv = 1.f / den[m];
#pragma unroll
            for (int c = 0; c < RDV; ++c) {
                int n = tx * RDV + c;
                if (n < DV) ob[(size_t)t * DV + n] = stx(real ? acc[r][c] * inv : 0.f);
            }
        }
    }
}
extern "C" __global__ void __launch_bounds__(NT) bwd_q(const in_t* __restrict__ q, const in_t* __restrict__ dout,
        const in_t* __restrict__ out,
        const float* __restrict__ S, const float* __restrict__ z, const u8* __restrict__ mask,
        const float* __restrict__ epsn, int T, int H, int tpb, in_t* __restrict__ dq, float* __restrict__ dS,
        float* __restrict__ dz) {
    extern __shared__ float4 smem4[];
    float* Ss = (float*)smem4;          // [D][PDV]   S
    float* STs = Ss + D * PDV;          // [DV][PD]   Sᵀ
    float* Qs = STs + DV * PD;          // [TT][PD]   φq
    float* QT = Qs + TT * PD;           // [D][LDT]   φqᵀ
    float* Gs = QT + D * LDT;           // [TT][PDV]  dO, then g
    float* GT = Gs + TT * PDV;          // [DV][LDT]  gᵀ
    float* zs = GT + DV * LDT;          // [D]
    float* den = zs + D;                // [TT]
    float* dden = den + TT;             // [TT]
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int t0 = blockIdx.x * tpb * TT, t1 = min(T, t0 + tpb * TT);
    for (int i = tid; i < D * DV; i += NT) {
        int r = i / DV, c = i % DV;
        float s = S[(size_t)bh * D * DV + i];
        Ss[r * PDV + c] = s;
        STs[c * PD + r] = s;
    }
    if (tid < D) zs[tid] = z[(size_t)bh * D + tid];
    const float en = epsn[b];
    const in_t* qb = q + (size_t)bh * T * D;
    const in_t* gb = dout + (size_t)bh * T * DV;
    const in_t* ob = out + (size_t)bh * T * DV;
    in_t* dqb = dq + (size_t)bh * T * D;
    float accS[RD][RDV];
    zero<D, DV>(accS);
    float dzacc = 0.f;
    for (int ts = t0; ts < t1; ts += TT) {
        __syncthreads();
        for (int i = tid; i < TT * D; i += NT) {
            int r = i / D, c = i % D, t = ts + r;
            float p = real_token(mask, b, t, T) ? phi(ldx(qb[(size_t)t * D + c])) : 0.f;
            Qs[r * PD + c] = p;
            QT[c * LDT + r] = p;
        }
        for (int i = tid; i < TT * DV; i += NT) {
            int r = i / DV, c = i % DV, t = ts + r;
            Gs[r * PDV + c] = real_token(mask, b, t, T) ? ldx(gb[(size_t)t * DV + c]) : 0.f;
        }
        __syncthreads();
        if (tid < TT) {
            float d = 0.f;
            for (int i = 0; i < D; ++i) d = fmaf(QT[i * LDT + tid], zs[i], d);
            den[tid] = d + en;
        }
        __syncthreads();
        // dden = −(dO·o)/den with the saved output o: one warp per row.
        for (int r = tid >> 5; r < TT; r += NT / 32) {
            int t = ts + r;
            float s = 0.f;
            if (t < T)
                for (int j = tid & 31; j < DV; j += 32) s = fmaf(Gs[r * PDV + j], ldx(ob[(size_t)t * DV + j]), s);
#pragma unroll
            for (int w = 16; w > 0; w >>= 1) s += __shfl_xor_sync(0xffffffffu, s, w);
            if ((tid & 31) == 0) dden[r] = -s / den[r];
        }
        __syncthreads();
        for (int i = tid; i < TT * DV; i += NT) {
            int r = i / DV, c = i % DV;
            float g = Gs[r * PDV + c] / den[r];
            Gs[r * PDV + c] = g;
            GT[c * LDT + r] = g;
        }
        __syncthreads();
        // dφq = g Sᵀ + dden zᵀ, times φ'(q).
        float acc2[RTT][RD];
        zero<TT, D>(acc2);
        mm<TT, D, DV>(GT, LDT, STs, PD, acc2);
#pragma unroll
        for (int r = 0; r < RTT; ++r) {
            int m = ty * RTT + r, t = ts + m;
            if (m >= TT || t >= T) continue;
#pragma unroll
            for (int c = 0; c < RD; ++c) {
                int n = tx * RD + c;
                if (n < D) dqb[(size_t)t * D + n] = stx((acc2[r][c] + dden[m] * zs[n]) * dphi(Qs[m * PD + n]));
            }
        }
        // dS += φqᵀ g, dz += φqᵀ dden.
        mm<D, DV, TT>(Qs, PD, Gs, PDV, accS);
        if (tid < D)
            for (int r = 0; r < TT; ++r) dzacc = fmaf(Qs[r * PD + tid], dden[r], dzacc);
    }
    float* dSb = dS + (size_t)bh * D * DV;
#pragma unroll
    for (int r = 0; r < RD; ++r)
#pragma unroll
        for (int c = 0; c < RDV; ++c) {
            int m = ty * RD + r, n = tx * RDV + c;
            if (m < D && n < DV) atomicAdd(dSb + m * DV + n, accS[r][c]);
        }
    if (tid < D) atomicAdd(dz + (size_t)bh * D + tid, dzacc);
}

extern "C" __global__ void __launch_bounds__(NT) bwd_kv(const in_t* __restrict__ k, const in_t* __restrict__ v,
        const float* __restrict__ dS, const float* __restrict__ dz, const u8* __restrict__ mask, int T, int H, int tpb,
        in_t* __restrict__ dk, in_t* __restrict__ dv) {
    extern __shared__ float4 smem4[];
    float* dSs = (float*)smem4;         // [D][PDV]   dS
    float* dST = dSs + D * PDV;         // [DV][PD]   dSᵀ
    float* KT = dST + DV * PD;          // [D][LDT]   φkᵀ
    float* VT = KT + D * LDT;           // [DV][LDT]  vᵀ
    float* dzs = VT + DV * LDT;         // [D]
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int t0 = blockIdx.x * tpb * TT, t1 = min(T, t0 + tpb * TT);
    for (int i = tid; i < D * DV; i += NT) {
        int r = i / DV, c = i % DV;
        float s = dS[(size_t)bh * D * DV + i];
        dSs[r * PDV + c] = s;
        dST[c * PD + r] = s;
    }
    if (tid < D) dzs[tid] = dz[(size_t)bh * D + tid];
    const in_t* kb = k + (size_t)bh * T * D;
    const in_t* vb = v + (size_t)bh * T * DV;
    in_t* dkb = dk + (size_t)bh * T * D;
    in_t* dvb = dv + (size_t)bh * T * DV;
    for (int ts = t0; ts < t1; ts += TT) {
        __syncthreads();
        for (int i = tid; i < TT * D; i += NT) {
            int r = i / D, c = i % D, t = ts + r;
            KT[c * LDT + r] = real_token(mask, b, t, T) ? phi(ldx(kb[(size_t)t * D + c])) : 0.f;
        }
        for (int i = tid; i < TT * DV; i += NT) {
            int r = i / DV, c = i % DV, t = ts + r;
            VT[c * LDT + r] = t < T ? ldx(vb[(size_t)t * DV + c]) : 0.f;
        }
        __syncthreads();
        float acc[RTT][RD];
        zero<TT, D>(acc);
        mm<TT, D, DV>(VT, LDT, dST, PD, acc);
#pragma unroll
        for (int r = 0; r < RTT; ++r) {
            int m = ty * RTT + r, t = ts + m;
            if (m >= TT || t >= T) continue;
            bool real = real_token(mask, b, t, T);
#pragma unroll
            for (int c = 0; c < RD; ++c) {
                int n = tx * RD + c;
                if (n < D) dkb[(size_t)t * D + n] = stx(real ? (acc[r][c] + dzs[n]) * dphi(KT[n * LDT + m]) : 0.f);
            }
        }
        float acc2[RTT][RDV];
        zero<TT, DV>(acc2);
        mm<TT, DV, D>(KT, LDT, dSs, PDV, acc2);
#pragma unroll
        for (int r = 0; r < RTT; ++r) {
            int m = ty * RTT + r, t = ts + m;
            if (m >= TT || t >= T) continue;
            bool real = real_token(mask, b, t, T);
#pragma unroll
            for (int c = 0; c < RDV; ++c) {
                int n = tx * RDV + c;
                if (n < DV) dvb[(size_t)t * DV + n] = stx(real ? acc2[r][c] : 0.f);
            }
        }
    }
}
#endif
