// Tensor-core backward kernels of bidirectional linear attention (MMA = 1), same arguments and results as bwd_q and
// bwd_kv: g = dO/den, dden = −(dO·o)/den, dq = (g Sᵀ + dden zᵀ)·φ'(q), dS += φqᵀ g, dz += φqᵀ dden (mma_bwd_q);
// dk = (v dSᵀ + dz)·φ'(k), dv = φk dS over real keys (mma_bwd_kv). g is a bf16 operand; S and dS are bf16 (split
// for fp16 inputs); dO·o, den, dden, dz stay fp32. Built for Hedgehog (HH = 1) both run warp by warp
// (hh_q_pass, hh_kv_pass in hedgehog_warp_backward.cuh) and return dx = dy Wᵀ with the fp32 dW sums as their last
// arguments (HH_WB); mma_bwd_q zeroes the sums, mma_bwd_kv adds the key map's where HH_KV_DW.
#ifndef LA_LINEAR_ATTENTION_MMA_BACKWARD_CUH
#define LA_LINEAR_ATTENTION_MMA_BACKWARD_CUH
#include "mma_tiles.cuh"
#if HH
#include "hedgehog_warp_backward.cuh"
#endif
#if MMA
extern "C" __global__ void MMA_BOUNDS mma_bwd_q(const in_t* __restrict__ q, const in_t* __restrict__ dout,
        const in_t* __restrict__ out,
        const float* __restrict__ S, const float* __restrict__ z, const u8* __restrict__ mask,
        const float* __restrict__ epsn, int T, int H, int tpb, in_t* __restrict__ dq, float* __restrict__ dS,
        float* __restrict__ dz HH_WB) {
    extern __shared__ float4 smem4[];
#if HH
    // Hedgehog: warp by warp (hh_q_pass). FusedModuleCache.HedgehogQBytes must match this layout.
    u16* Sh = (u16*)smem4;              // [D][LDE]    S high (B of dO·Sᵀ: n = d, k = e)
    u16* Sl = Sh + D * LDE;             // [D][LDE]    S low
    u16* Qs = Sl + D * LDE;             // [16·NW][LDD]  φq (A of the dS product read transposed)
    u16* Gs = Qs + 16 * NW * LDD;       // [16·NW][LDE]  g, dden high and low in columns DV, DV + 1, zeros
    float* zs = (float*)(Gs + 16 * NW * LDE);   // [D]
    u16* Wt = (u16*)(zs + D);           // [F][LDX]    W_qᵀ
    u16* Xo = Wt + HF * LDX;            // [NW][16][LDX]  the warps' x rows where they do not fit in Qs (!HH_XQ_FITS)
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    hh_load_w(hw + (size_t)(bh % H) * HX * HF, Wt, nullptr);
    if (blockIdx.x == 0 && bh < H)      // head bh's first block of batch row 0 zeroes its dW sums of both maps
        for (int i = tid; i < HX * HF; i += NT) hdw[(size_t)bh * HX * HF + i] = hdw[((size_t)H + bh) * HX * HF + i] = 0.f;
    load_split(S + (size_t)bh * D * DV, Sh, Sl, LDE, false);
    if (tid < D) zs[tid] = z[(size_t)bh * D + tid];
    float accS[TPW(D, DV + 8)][4];
    zero_tiles<D, DV + 8>(accS);
    __syncthreads();
    hh_q_pass(accS, Qs, Gs, Xo, Sh, Sl, zs, Wt, q + (size_t)bh * T * XD, dout + (size_t)bh * T * DV, dq + (size_t)bh * T * HF,
              hdx + (size_t)bh * T * HX, mask, b, epsn[b], t0, t1, T);
#else
    u16* Sh = (u16*)smem4;              // [D][LDE]    S high (B of g·Sᵀ: n = d, k = e)
    u16* Sl = Sh + D * LDE;             // [D][LDE]    S low
    u16* Qs = Sl + D * LDE;             // [MTT][LDD]  φq (A of the dS product read transposed)
    u16* Gs = Qs + MTT * LDD;           // [MTT][LDE]  g, then dden as high and low bf16 columns DV, DV + 1 (dz from the dS MMA), zeros
    float* zs = (float*)(Gs + MTT * LDE);   // [D]
    float* den = zs + D;                // [MTT]  1/den
    float* dden = den + MTT;            // [MTT]
    float* dot = dden + MTT;            // [MTT]  dO·o
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    load_split(S + (size_t)bh * D * DV, Sh, Sl, LDE, false);
    if (tid < D) zs[tid] = z[(size_t)bh * D + tid];
    const float en = epsn[b];
    const in_t* qb = q + (size_t)bh * T * XD;
    const in_t* gb = dout + (size_t)bh * T * DV;
    const in_t* ob = out + (size_t)bh * T * DV;
    in_t* dqb = dq + (size_t)bh * T * D;
    float accS[TPW(D, DV + 8)][4];
    zero_tiles<D, DV + 8>(accS);
    for (int i = tid; i < 6 * MTT; i += NT) Gs[(i / 6) * LDE + DV + 2 + i % 6] = 0;
    // Tile inputs fetched one tile ahead: q (φq, or x for Hedgehog), dO (g, dO·o) and o as rows.
    Rows<XD> qf;
    Rows<DV> gf, of;
    if (t0 < t1) { fetch_rows(qf, qb, mask, b, t0, T); fetch_rows(gf, gb, mask, b, t0, T); fetch_rows(of, ob, mask, b, t0, T); }
    for (int ts = t0; ts < t1; ts += MTT) {
        __syncthreads();                    // the previous tile's readers are done
        STAGE_PHI(qf, store_rows<MAP_PHI>(Qs, LDD, qf));
        if (tid < MTT) dot[tid] = 0.f;
        __syncthreads();
        FINISH_PHI(true, Qs, LDD)
        inv_den(Qs, LDD, zs, en, den);   // 1/den, the same value as the forward's
        row_dots(gf, of, dot);              // dO·o with the saved output o; zero at padded rows
        __syncthreads();
        store_rows<MAP_SCALE>(Gs, LDE, gf, den);
        if (tid < MTT) {
            const float dd = -dot[tid] * den[tid];
            const u16 hi = f2bf(dd);
            dden[tid] = dd;
            Gs[tid * LDE + DV] = hi;
            Gs[tid * LDE + DV + 1] = f2bf(dd - bf2f(hi));
        }
        if (ts + MTT < t1) {
            fetch_rows(qf, qb, mask, b, ts + MTT, T); fetch_rows(gf, gb, mask, b, ts + MTT, T); fetch_rows(of, ob, mask, b, ts + MTT, T);
        }
        __syncthreads();
        {   // dφq = g Sᵀ + dden zᵀ, times φ'(q).
            float acc_[TPW(MTT, D)][4];
            zero_tiles<MTT, D>(acc_);
            wmm<MTT, D, DV, true>(Gs, LDE, Sh, SPLIT ? Sl : nullptr, LDE, acc_);
            FOR_TILE_PAIRS(MTT, D, {
                const int t = ts + row;
                if (t < T) {
                    const size_t at = (size_t)t * D + col;
                    const float d0 = (c0 + dden[row] * zs[col]) * DPHI_AT(Qs, row * LDD + col, qb, at);
                    const float d1 = (c1 + dden[row] * zs[col + 1]) * DPHI_AT(Qs, row * LDD + col + 1, qb, at + 1);
                    *(unsigned*)(dqb + at) = stx2(d0, d1);
                }
            })
        }
        // dS += φqᵀ g and, in columns DV and DV + 1, dz += φqᵀ dden (high and low parts): both operands read transposed.
        wmm<D, DV + 8, MTT, true, true, true>(Qs, LDD, Gs, nullptr, LDE, accS);
    }
#endif
    float* dSb = dS + (size_t)bh * D * DV;
    float* dzb = dz + (size_t)bh * D;
    {
        float (&acc_)[TPW(D, DV + 8)][4] = accS;
        FOR_TILE_PAIRS(D, DV + 8, {
            if (col < DV) { put_sum(dSb + row * DV + col, c0); put_sum(dSb + row * DV + col + 1, c1); }
            else if (col == DV) put_sum(dzb + row, c0 + c1);
        })
    }
}

extern "C" __global__ void MMA_BOUNDS mma_bwd_kv(const in_t* __restrict__ k, const in_t* __restrict__ v,
        const float* __restrict__ dS, const float* __restrict__ dz, const u8* __restrict__ mask, int T, int H, int tpb,
        in_t* __restrict__ dk, in_t* __restrict__ dv HH_WB) {
    extern __shared__ float4 smem4[];
#if HH
    // Hedgehog: warp by warp (hh_kv_pass), no φ tile. FusedModuleCache.HedgehogKvBytes must match this layout.
    u16* Dh = (u16*)smem4;              // [D][LDE]    dS high (B of v·dSᵀ; read transposed, B of φk·dS)
    u16* Dl = Dh + D * LDE;             // [D][LDE]    dS low; with HH_KV_DW (no low half) the fp32 sums of dW [HX][LDW]
    u16* Xw = Dl + D * LDE;             // [NW][16][LDX]  each warp's x rows; with HH_KV_DW two such buffers
    u16* Vw = Xw + (HH_KV_DW ? 2 : 1) * NW * 16 * LDX;    // [NW][16][LDE]  each warp's v rows, with HH_KV_DW then its dy
    float* dzs = (float*)(Vw + NW * 16 * LDE);  // [D]
    u16* Wt = (u16*)(dzs + D);          // [F][LDX]    W_kᵀ
    float* dWs = (float*)Dl;
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    hh_load_w(hw + (size_t)(bh % H) * HX * HF, Wt, nullptr);
    load_split(dS + (size_t)bh * D * DV, Dh, Dl, LDE, false);
    if (tid < D) dzs[tid] = dz[(size_t)bh * D + tid];
    if (HH_KV_DW) for (int i = tid; i < HX * LDW; i += NT) dWs[i] = 0.f;
    __syncthreads();
    hh_kv_pass(Xw, Vw, Dh, Dl, dzs, Wt, k + (size_t)bh * T * XD, v + (size_t)bh * T * DV, dk + (size_t)bh * T * HF,
               hdx + (size_t)bh * T * HX, dv + (size_t)bh * T * DV, dWs, mask, b, t0, t1, T);
#if HH_KV_DW
    // The block's sums into head h's dW (the last step's barrier ordered every warp's additions before these reads).
    float* dwh = hdw + ((size_t)H + bh % H) * HX * HF;   // the key map's sums
    for (int i = tid; i < HX * HF / 2; i += NT) {
        const int r = 2 * i / HF, c = 2 * i % HF;
        red_add2(dwh + r * HF + c, dWs[r * LDW + c], dWs[r * LDW + c + 1]);
    }
#endif
#else
    u16* Dh = (u16*)smem4;              // [D][LDE]    dS high (B of v·dSᵀ: n = d, k = e; read transposed, B of φk·dS)
    u16* Dl = Dh + D * LDE;             // [D][LDE]    dS low
    u16* Vs = Dl + D * LDE;             // [MTT][LDE]  v
    u16* Ks = Vs + MTT * LDE;           // [MTT][LDD]  φk
    float* dzs = (float*)(Ks + MTT * LDD);  // [D]
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    load_split(dS + (size_t)bh * D * DV, Dh, Dl, LDE, false);
    if (tid < D) dzs[tid] = dz[(size_t)bh * D + tid];
    const in_t* kb = k + (size_t)bh * T * XD;
    const in_t* vb = v + (size_t)bh * T * DV;
    in_t* dkb = dk + (size_t)bh * T * D;
    in_t* dvb = dv + (size_t)bh * T * DV;
    Rows<XD> kf; Rows<DV> vf;
    if (t0 < t1) { fetch_rows(kf, kb, mask, b, t0, T); fetch_rows(vf, vb, nullptr, b, t0, T); }
    for (int ts = t0; ts < t1; ts += MTT) {
        __syncthreads();
        STAGE_PHI(kf, store_rows<MAP_PHI>(Ks, LDD, kf));
        store_rows<MAP_ID>(Vs, LDE, vf);
        if (ts + MTT < t1) { fetch_rows(kf, kb, mask, b, ts + MTT, T); fetch_rows(vf, vb, nullptr, b, ts + MTT, T); }
        __syncthreads();
        FINISH_PHI(true, Ks, LDD)
        {   // dk = (v dSᵀ + dz)·φ'(k), zero at padded keys.
            float acc_[TPW(MTT, D)][4];
            zero_tiles<MTT, D>(acc_);
            wmm<MTT, D, DV, true>(Vs, LDE, Dh, SPLIT ? Dl : nullptr, LDE, acc_);
            FOR_TILE_PAIRS(MTT, D, {
                const int t = ts + row;
                if (t < T) {
                    const bool real = real_token(mask, b, t, T);
                    const size_t at = (size_t)t * D + col;
                    const float d0 = real ? (c0 + dzs[col]) * DPHI_AT(Ks, row * LDD + col, kb, at) : 0.f;
                    const float d1 = real ? (c1 + dzs[col + 1]) * DPHI_AT(Ks, row * LDD + col + 1, kb, at + 1) : 0.f;
                    *(unsigned*)(dkb + at) = stx2(d0, d1);
                }
            })
        }
        {   // dv = φk dS (dS read transposed), zero at padded keys.
            float acc_[TPW(MTT, DV)][4];
            zero_tiles<MTT, DV>(acc_);
            wmm<MTT, DV, D, true, false, true>(Ks, LDD, Dh, SPLIT ? Dl : nullptr, LDE, acc_);
            FOR_TILE_PAIRS(MTT, DV, {
                const int t = ts + row;
                if (t < T) {
                    const bool real = real_token(mask, b, t, T);
                    *(unsigned*)(dvb + (size_t)t * DV + col) = stx2(real ? c0 : 0.f, real ? c1 : 0.f);
                }
            })
        }
    }
#endif
}
#endif
#endif
