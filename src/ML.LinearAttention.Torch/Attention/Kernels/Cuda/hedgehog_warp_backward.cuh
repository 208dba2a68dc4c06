// Hedgehog's warp-by-warp backward passes (MMA = 1, HH = 1): hh_kv_pass (mma_bwd_kv: dv = φk dS, dy_k from
// dφk = v dSᵀ + dz, dx_k = dy_k W_kᵀ, and where HH_KV_DW the key map's dW = xᵀdy reduced in the kernel) and
// hh_q_pass (mma_bwd_q: dy_q, dx_q = dy_q W_qᵀ and the block's share of dS and dz; φq and g meet in shared tiles
// for dS = φqᵀ g, which reduces over tokens). hedgehog_dw_bwd reduces the dW the passes leave as stored dy.
#ifndef LA_HEDGEHOG_WARP_BACKWARD_CUH
#define LA_HEDGEHOG_WARP_BACKWARD_CUH
#include "hedgehog_warp_forward.cuh"
#if MMA && HH
// Two input-type values as a bf16 pair (the products with S and dS are bf16 MMAs): as is for bf16 inputs.
__device__ __forceinline__ unsigned in2bf2(unsigned w) {
    if constexpr (IN_T == 1) return w;
    else return pack2(f2bf(m2f<false>((u16)(w & 0xffffu))), f2bf(m2f<false>((u16)(w >> 16))));
}

// The projection's backward along this warp's 16 rows, from dy = ∂L/∂(xW) as C fragments [HH_NJ][4] (zeroed where
// keep[s] is false): dy as rows r0 + g + 8s of dyb [·][F] below t1 (for hedgehog_dw_bwd's dW = xᵀdy, which reduces
// over tokens), or with TILE_LD as rows g + 8s of the warp's tile dyb [16][TILE_LD] in shared memory (every row: the
// block reduces dW itself), and dx = dy Wᵀ as rows of dxb [·][HX] (Wt = W_hᵀ [F][LDX] read transposed), below t1. dy
// is rounded to x's type once, as stored, and feeds the MMA as A fragments (the C tiles of n-tiles 2kk, 2kk + 1 are A
// fragment kk); dx is formed four n-tiles at a time, so at most 16 accumulators are live.
template <int TILE_LD = 0>
__device__ __forceinline__ void hh_dy_dx_rows(const float (&dy)[HH_NJ][4], const bool (&keep)[2], const u16* Wt,
        u16* __restrict__ dyb, in_t* __restrict__ dxb, int r0, int t1) {
    constexpr bool TILE = TILE_LD > 0;
    const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    unsigned a[HH_KS][4];
#pragma unroll
    for (int kk = 0; kk < HH_KS; ++kk)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int j = 2 * kk + (r >> 1), s = r & 1;
            a[kk][r] = keep[s] ? f2m2<HBF>(dy[j][2 * s], dy[j][2 * s + 1]) : 0u;
        }
#pragma unroll
    for (int s = 0; s < 2; ++s) {
        const int t = r0 + g + 8 * s;
        const size_t at = TILE ? (size_t)(g + 8 * s) * TILE_LD : (size_t)t * HF;
        if (TILE || t < t1) {
#pragma unroll
            for (int kk = 0; kk < HH_KS; ++kk) {
                *(unsigned*)(dyb + at + 16 * kk + 2 * q) = a[kk][s];
                *(unsigned*)(dyb + at + 16 * kk + 8 + 2 * q) = a[kk][2 + s];
            }
        }
    }
    constexpr int NG = (HX / 8) % 4 == 0 ? 4 : 2;   // n-tiles of dx per group
    const float one[2] = {1.f, 1.f};
#pragma unroll
    for (int n0 = 0; n0 < HX / 8; n0 += NG) {
        float dx[NG][4];
#pragma unroll
        for (int n = 0; n < NG; ++n) dx[n][0] = dx[n][1] = dx[n][2] = dx[n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < HH_KS; ++kk)
#pragma unroll
            for (int n = 0; n < NG; ++n) {
                unsigned bb[2];
                frag_b_t(bb, Wt, LDX, 8 * (n0 + n), 16 * kk);
                mma16816<HBF>(dx[n], a[kk], bb);
            }
        warp_store_rows<8 * NG, HX>(dx, one, keep, dxb, r0, t1, 8 * n0);
    }
}

// mma_bwd_kv's pass over key rows [t0, t1): dv = φk dS, dφk = v dSᵀ + dz and dy = φ₊ ⊙ (dφ₊ − ⟨φ₊, dφ₊⟩) −
// φ₋ ⊙ (dφ₋ − ⟨φ₋, dφ₋⟩) (the projection's output gradient, F wide), with dx = dy Wᵀ (hh_dy_dx_rows, dxb [T][HX]); all
// zero at padded keys. dS (high, low) [D][LDE] and dzs [D] in shared memory; Xw [NW][16][LDX] and Vw [NW][16][LDE] the
// warps' x and v rows. dφk is never whole: each 8-column tile goes into u = φ₊ ⊙ dφ₊ − φ₋ ⊙ dφ₋ and the row dots as it
// leaves the MMA, and dy = u − φ₊⟨φ₊, dφ₊⟩ + φ₋⟨φ₋, dφ₋⟩ at the end (128 registers at two blocks per SM hold no more).
// Without HH_KV_DW each warp runs ahead on its own rows and stores dy (dyb [T][F]) for hedgehog_dw_bwd. With it the
// warps go 16·NW rows at a time with x double buffered (Xw [2][NW][16][LDX]): dy goes to the warp's v rows, read
// already, and after a barrier each warp adds its tiles of xᵀdy over the block's rows into the fp32 sums dWs
// [HX][LDW], which the caller flushes; the next x rows are fetched into the other buffer early, the next v rows only
// after the product.
__device__ __forceinline__ void hh_kv_pass(u16* Xw, u16* Vw, const u16* Dh, const u16* Dl, const float* dzs, const u16* Wt,
        const in_t* __restrict__ kb, const in_t* __restrict__ vb, in_t* __restrict__ dyb, in_t* __restrict__ dxb,
        in_t* __restrict__ dvb, float* dWs, const u8* __restrict__ mask, int b, int t0, int t1, int T) {
    const int w = threadIdx.x >> 5, q = threadIdx.x & 3, g = (threadIdx.x & 31) >> 2;
    u16* X = Xw + w * 16 * LDX;
    u16* V = Vw + w * 16 * LDE;
    int r0 = t0 + 16 * w;
    // With HH_KV_DW every warp fetches, zeros past t1, so that the block's product sees zero x rows there.
    if (HH_KV_DW || r0 < t1) warp_fetch_rows<HX>(X, LDX, kb, r0, t1, mask, b, T);
    if (r0 < t1) warp_fetch_rows<DV>(V, LDE, vb, r0, t1, nullptr, b, T);
    cp_commit();
    const float one[2] = {1.f, 1.f};
    for (int base = t0, buf = 0; base < t1; base += 16 * NW, r0 += 16 * NW, buf ^= 1) {
        if (!HH_KV_DW && r0 >= t1) break;
        cp_wait<0>();
        __syncwarp();
        unsigned A[2 * HH_KS][4], va[DV / 16][4];
        hh_warp_phi(HH_KV_DW ? X + buf * NW * 16 * LDX : X, Wt, A);
#pragma unroll
        for (int kk = 0; kk < DV / 16; ++kk) {
            frag_a(va[kk], V, LDE, 0, 16 * kk);
#pragma unroll
            for (int r = 0; r < 4; ++r) va[kk][r] = in2bf2(va[kk][r]);
        }
        __syncwarp();                           // every lane is past its reads of X and V
        if (HH_KV_DW) {
            if (base + 16 * NW < t1) warp_fetch_rows<HX>(X + (buf ^ 1) * NW * 16 * LDX, LDX, kb, r0 + 16 * NW, t1, mask, b, T);
        } else if (r0 + 16 * NW < t1) {
            warp_fetch_rows<HX>(X, LDX, kb, r0 + 16 * NW, t1, mask, b, T);
            warp_fetch_rows<DV>(V, LDE, vb, r0 + 16 * NW, t1, nullptr, b, T);
        }
        cp_commit();
        bool keep[2];
#pragma unroll
        for (int s = 0; s < 2; ++s) keep[s] = r0 + g + 8 * s < t1 && real_token(mask, b, r0 + g + 8 * s, T);
        float u[HH_NJ][4], dot[2][2] = {{0.f, 0.f}, {0.f, 0.f}};   // dot[h][s]: ⟨φ₊, dφ₊⟩, ⟨φ₋, dφ₋⟩ of row g + 8s
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int j = 0; j < HH_NJ; ++j) {
                float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
                for (int kk = 0; kk < DV / 16; ++kk) {
                    unsigned bb[2];
                    frag_b(bb, Dh, LDE, h * HF + 8 * j, 16 * kk);
                    mma16816<true>(d, va[kk], bb);
                    if (SPLIT) {
                        frag_b(bb, Dl, LDE, h * HF + 8 * j, 16 * kk);
                        mma16816<true>(d, va[kk], bb);
                    }
                }
#pragma unroll
                for (int s = 0; s < 2; ++s) {
                    const unsigned pk = hh_phi_word(A, h, j, s);
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const float pd = bf2f((u16)(pk >> (16 * e))) * (d[2 * s + e] + dzs[h * HF + 8 * j + 2 * q + e]);
                        dot[h][s] += pd;
                        u[j][2 * s + e] = h == 0 ? pd : u[j][2 * s + e] - pd;
                    }
                }
            }
#pragma unroll
        for (int s = 0; s < 2; ++s) { dot[0][s] = group_sum(dot[0][s], 4); dot[1][s] = group_sum(dot[1][s], 4); }
#pragma unroll
        for (int j = 0; j < HH_NJ; ++j)
#pragma unroll
            for (int s = 0; s < 2; ++s) {
                const unsigned pp = hh_phi_word(A, 0, j, s), pm = hh_phi_word(A, 1, j, s);
#pragma unroll
                for (int e = 0; e < 2; ++e)
                    u[j][2 * s + e] += bf2f((u16)(pm >> (16 * e))) * dot[1][s] - bf2f((u16)(pp >> (16 * e))) * dot[0][s];
            }
        if (HH_KV_DW) hh_dy_dx_rows<LDE>(u, keep, Wt, V, dxb, r0, t1);
        else hh_dy_dx_rows(u, keep, Wt, dyb, dxb, r0, t1);
        float dv[DV / 8][4];                    // after dy: u, va and dv are never live together
        hh_phi_times(A, Dh, Dl, dv);
        warp_store_rows<DV>(dv, one, keep, dvb, r0, t1);
#if HH_KV_DW
        __syncthreads();                        // every warp's dy rows are in Vw
        {
            float acc_[TPW(HX, HF)][4];
            zero_tiles<HX, HF>(acc_);
            wmm<HX, HF, 16 * NW, true, true, true>(Xw + buf * NW * 16 * LDX, LDX, Vw, nullptr, LDE, acc_);
            FOR_TILE_PAIRS(HX, HF, {            // this warp's own tiles of the sums: no other warp writes them
                dWs[row * LDW + col] += c0;
                dWs[row * LDW + col + 1] += c1;
            })
        }
        __syncthreads();                        // the product's reads of this x buffer and of Vw are done
        if (r0 + 16 * NW < t1) warp_fetch_rows<DV>(V, LDE, vb, r0 + 16 * NW, t1, nullptr, b, T);
        cp_commit();
#endif
    }
}

// One 16×8 tile of P = dO Sᵀ: columns n0.. of the 2F, from dO's bf16 A fragments ga and S (high, low) [D][LDE].
__device__ __forceinline__ void hh_p_tile(float (&p)[4], const unsigned (&ga)[DV / 16][4], const u16* Sh, const u16* Sl, int n0) {
    p[0] = p[1] = p[2] = p[3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < DV / 16; ++kk) {
        unsigned bb[2];
        frag_b(bb, Sh, LDE, n0, 16 * kk);
        mma16816<true>(p, ga[kk], bb);
        if (SPLIT) {
            frag_b(bb, Sl, LDE, n0, 16 * kk);
            mma16816<true>(p, ga[kk], bb);
        }
    }
}

// mma_bwd_q's pass over query rows [t0, t1), 16·NW rows per step for the block (every warp takes part in each step's dS
// product, with zero rows past t1). Per warp: φq in registers (hh_warp_phi), b± = ⟨φ±, z±⟩ (den = b₊ + b₋ + en), then
// P = dO Sᵀ tile by tile into u = φ₊ ⊙ P₊ − φ₋ ⊙ P₋ and a± = ⟨φ±, P±⟩, so that dO·o = (a₊ + a₋)/den needs no saved
// output, dden = −dO·o/den, dφ = P/den + dden z, ⟨φ±, dφ±⟩ = a±/den + dden b±, and the softmaxes' backward
// dy = u/den + dden (φ₊ ⊙ z₊ − φ₋ ⊙ z₋) − φ₊ ⟨φ₊, dφ₊⟩ + φ₋ ⟨φ₋, dφ₋⟩, stored with dx = dy Wᵀ (hh_dy_dx_rows: dyb [T][F],
// dxb [T][HX]).
// φq and g = dO/den (dden in columns DV, DV + 1 as high and low bf16, zeros to DV + 8) go to the block's tiles
// Qs [16·NW][LDD] and Gs [16·NW][LDE] for dS += φqᵀ g and dz += φqᵀ dden (accS, two barriers per step). Each warp's
// next x rows (in its own Qs rows where they fit, HH_XQ_FITS, else Xo [NW][16][LDX]) and dO rows (its Gs rows) are
// copied with cp.async once the step's dS product is done. φ is read back from Qs, not kept in registers: next to accS
// (36 registers at F = Dv = 64) the live values must stay near 128.
#define HH_XQ_FITS (LDX <= LDD)
__device__ __forceinline__ void hh_q_pass(float (&accS)[TPW(D, DV + 8)][4], u16* Qs, u16* Gs, u16* Xo, const u16* Sh,
        const u16* Sl, const float* zs, const u16* Wt, const in_t* __restrict__ qb, const in_t* __restrict__ gb,
        in_t* __restrict__ dyb, in_t* __restrict__ dxb, const u8* __restrict__ mask, int b, float en, int t0, int t1, int T) {
    const int w = threadIdx.x >> 5, q = threadIdx.x & 3, g = (threadIdx.x & 31) >> 2;
    u16* Qw = Qs + w * 16 * LDD;
    u16* Gw = Gs + w * 16 * LDE;
    u16* X = HH_XQ_FITS ? Qw : Xo + w * 16 * LDX;
    auto fetch = [&](int r) {
        warp_fetch_rows<HX>(X, LDX, qb, r, t1, mask, b, T);
        warp_fetch_rows<DV>(Gw, LDE, gb, r, t1, mask, b, T);
    };
    fetch(t0 + 16 * w);
    cp_commit();
    for (int base = t0; base < t1; base += 16 * NW) {
        const int r0 = base + 16 * w;
        bool keep[2];
#pragma unroll
        for (int s = 0; s < 2; ++s) keep[s] = r0 + g + 8 * s < t1 && real_token(mask, b, r0 + g + 8 * s, T);
        cp_wait<0>();
        __syncwarp();
        float bz[2][2];                         // [h][s]
        {
            unsigned A[2 * HH_KS][4];
            hh_warp_phi(X, Wt, A);
            __syncwarp();                       // every lane is past its reads of X (Qw's rows, where it fits)
            hh_phi_dot(A, zs, bz);
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int j = 0; j < HH_NJ; ++j)
#pragma unroll
                    for (int s = 0; s < 2; ++s)
                        *(unsigned*)(Qw + (g + 8 * s) * LDD + h * HF + 8 * j + 2 * q) = keep[s] ? hh_phi_word(A, h, j, s) : 0u;
        }
        float inv[2];
#pragma unroll
        for (int s = 0; s < 2; ++s) {
            bz[0][s] = group_sum(bz[0][s], 4);
            bz[1][s] = group_sum(bz[1][s], 4);
            inv[s] = 1.f / (bz[0][s] + bz[1][s] + en);
        }
        unsigned ga[DV / 16][4];
#pragma unroll
        for (int kk = 0; kk < DV / 16; ++kk) {
            frag_a(ga[kk], Gw, LDE, 0, 16 * kk);
#pragma unroll
            for (int r = 0; r < 4; ++r) ga[kk][r] = in2bf2(ga[kk][r]);
        }
        // Each lane reads back only the φ words it wrote (same positions): no barrier needed.
        float u[HH_NJ][4], ap[2][2] = {{0.f, 0.f}, {0.f, 0.f}};   // ap[h][s] = a±
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int j = 0; j < HH_NJ; ++j) {
                float p[4];
                hh_p_tile(p, ga, Sh, Sl, h * HF + 8 * j);
#pragma unroll
                for (int s = 0; s < 2; ++s) {
                    const unsigned pk = *(const unsigned*)(Qw + (g + 8 * s) * LDD + h * HF + 8 * j + 2 * q);
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const float pd = bf2f((u16)(pk >> (16 * e))) * p[2 * s + e];
                        ap[h][s] += pd;
                        u[j][2 * s + e] = h == 0 ? pd : u[j][2 * s + e] - pd;
                    }
                }
            }
        float dden[2], dp[2], dm[2];
#pragma unroll
        for (int s = 0; s < 2; ++s) {
            ap[0][s] = group_sum(ap[0][s], 4);
            ap[1][s] = group_sum(ap[1][s], 4);
            dden[s] = keep[s] ? -(ap[0][s] + ap[1][s]) * inv[s] * inv[s] : 0.f;
            dp[s] = ap[0][s] * inv[s] + dden[s] * bz[0][s];
            dm[s] = ap[1][s] * inv[s] + dden[s] * bz[1][s];
        }
#pragma unroll
        for (int j = 0; j < HH_NJ; ++j)
#pragma unroll
            for (int s = 0; s < 2; ++s) {
                const int f = 8 * j + 2 * q;
                const unsigned pp = *(const unsigned*)(Qw + (g + 8 * s) * LDD + f);
                const unsigned pm = *(const unsigned*)(Qw + (g + 8 * s) * LDD + HF + f);
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const float fp = bf2f((u16)(pp >> (16 * e))), fm = bf2f((u16)(pm >> (16 * e)));
                    u[j][2 * s + e] = u[j][2 * s + e] * inv[s] + dden[s] * (fp * zs[f + e] - fm * zs[HF + f + e]) - fp * dp[s] + fm * dm[s];
                }
            }
        // g = dO/den into Gs at the A fragments' positions (word r: row g + 8(r & 1), columns 8(r >> 1) + 2q), where each
        // lane overwrites only the dO words it read itself: no warp barrier needed. Then dden.
#pragma unroll
        for (int kk = 0; kk < DV / 16; ++kk)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int s = r & 1;
                unsigned* at = (unsigned*)(Gw + (g + 8 * s) * LDE + 16 * kk + 8 * (r >> 1) + 2 * q);
                // fp16 inputs: g from dO as it came (this lane's own word), not from its bf16 rounding in ga.
                const unsigned wd = IN_T == 1 ? ga[kk][r] : *at;
                *at = keep[s] ? f2m2<true>(m2f<IN_T == 1>((u16)(wd & 0xffffu)) * inv[s], m2f<IN_T == 1>((u16)(wd >> 16)) * inv[s]) : 0u;
            }
        if (q == 0) {
#pragma unroll
            for (int s = 0; s < 2; ++s) {
                const u16 hi = f2bf(dden[s]);
                uint4 cols;
                cols.x = pack2(hi, f2bf(dden[s] - bf2f(hi)));
                cols.y = cols.z = cols.w = 0u;
                *(uint4*)(Gw + (g + 8 * s) * LDE + DV) = cols;
            }
        }
        // The projection's backward last: u, then dx's accumulators, live only once ga is done with.
        hh_dy_dx_rows(u, keep, Wt, dyb, dxb, r0, t1);
        __syncthreads();                        // every warp's rows of Qs and Gs are written
        wmm<D, DV + 8, 16 * NW, true, true, true>(Qs, LDD, Gs, nullptr, LDE, accS);
        __syncthreads();                        // the product's reads are done before the next step's copies
        if (r0 + 16 * NW < t1) fetch(r0 + 16 * NW);
        cp_commit();
    }
}
#endif
#endif
