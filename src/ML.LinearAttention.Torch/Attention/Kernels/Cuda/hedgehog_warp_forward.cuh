// Hedgehog's warp-by-warp forward pass (MMA = 1, HH = 1): each warp owns 16 token rows per step, projects its x
// rows by MMA, takes both softmaxes along its rows in registers (a row's F columns lie in one quad of lanes) and
// feeds φ to the next MMA as A fragments, as flash attention feeds P to PV. No shared φ tile and no block barrier;
// each warp copies its next rows into its own buffers with cp.async. hh_out_pass is mma_fwd_head's query pass,
// o = φq S / (φq·z + eps·n).
#ifndef LA_HEDGEHOG_WARP_FORWARD_CUH
#define LA_HEDGEHOG_WARP_FORWARD_CUH
#include "hedgehog_projection_helpers.cuh"
#if MMA && HH
#define HH_KS (HF / 16)         // φ₊'s 16-wide k steps; φ₋'s follow: φ as A fragments [2·HH_KS][4]
#define HH_NJ (HF / 8)          // 8-column n-tiles of y (and of each half of φ)

// Starts copying rows r0 .. r0 + 15 of src [·][C] into dst [16][ld] (one warp; zeros where t ≥ t1 or, with a mask,
// where the token is not real). The caller commits the group.
template <int C>
__device__ __forceinline__ void warp_fetch_rows(u16* dst, int ld, const in_t* __restrict__ src, int r0, int t1,
        const u8* __restrict__ mask, int b, int T) {
    const int lane = threadIdx.x & 31;
    for (int c = lane; c < 16 * (C / 8); c += 32) {
        const int r = c / (C / 8), col = (c % (C / 8)) * 8, t = r0 + r;
        const bool ok = t < t1 && real_token(mask, b, t, T);
        cp16(dst + r * ld + col, src + (size_t)(ok ? t : 0) * C + col, ok);
    }
}

// φ = [softmax(xW) | softmax(−xW)] of this warp's 16 rows X [16][LDX] as bf16 A fragments: A[h·HH_KS + kk] covers
// columns h·F + 16kk .. + 15 (h = 0: φ₊, 1: φ₋); its word r holds n-tile 2kk + r/2 of the half, row g + 8(r & 1),
// columns 2q, 2q + 1 (hh_phi_word finds it). Rows of zeros (padding) give the uniform softmax: callers mask the rows.
__device__ __forceinline__ void hh_warp_phi(const u16* X, const u16* Wt, unsigned (&A)[2 * HH_KS][4]) {
    unsigned xa[HX / 16][4];
#pragma unroll
    for (int kk = 0; kk < HX / 16; ++kk) frag_a(xa[kk], X, LDX, 0, 16 * kk);
    float y[HH_NJ][4], m[HH_NJ][4];
#pragma unroll
    for (int j = 0; j < HH_NJ; ++j) y[j][0] = y[j][1] = y[j][2] = y[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HX / 16; ++kk)
#pragma unroll
        for (int j = 0; j < HH_NJ; ++j) {
            unsigned bb[2];
            frag_b(bb, Wt, LDX, 8 * j, 16 * kk);
            mma16816<HBF>(y[j], xa[kk], bb);
        }
    // Both softmaxes along rows g and g + 8: a row's F columns lie in this quad, so its sums are whole.
    float hi[2], lo[2], sp[2], sm[2], sc[2][2];     // sc[s][h]: 1 / the row's sum of φ₊, φ₋
    hh_quad_softmax(y, m, hi, lo, sp, sm);
#pragma unroll
    for (int s = 0; s < 2; ++s) {
        sc[s][0] = 1.f / sp[s];
        sc[s][1] = 1.f / sm[s];
    }
#pragma unroll
    for (int kk = 0; kk < HH_KS; ++kk)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int j = 2 * kk + (r >> 1), s = r & 1;
            A[kk][r] = f2m2<true>(y[j][2 * s] * sc[s][0], y[j][2 * s + 1] * sc[s][0]);
            A[HH_KS + kk][r] = f2m2<true>(m[j][2 * s] * sc[s][1], m[j][2 * s + 1] * sc[s][1]);
        }
}

// φ at row g + 8s, columns h·F + 8j + 2q and + 1 (n-tile j of half h) as a bf16 pair, from hh_warp_phi's fragments.
__device__ __forceinline__ unsigned hh_phi_word(const unsigned (&A)[2 * HH_KS][4], int h, int j, int s) {
    return A[h * HH_KS + (j >> 1)][2 * (j & 1) + s];
}

// bz[h][s] = this lane's part of ⟨φ_h, z_h⟩ for row g + 8s (h = 0: φ₊ and z's first F entries, 1: φ₋ and the rest),
// from hh_warp_phi's fragments; group_sum over the quad completes it.
__device__ __forceinline__ void hh_phi_dot(const unsigned (&A)[2 * HH_KS][4], const float* zs, float (&bz)[2][2]) {
    const int q = threadIdx.x & 3;
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int s = 0; s < 2; ++s) {
            bz[h][s] = 0.f;
#pragma unroll
            for (int j = 0; j < HH_NJ; ++j) {
                const unsigned pk = hh_phi_word(A, h, j, s);
                const int col = h * HF + 8 * j + 2 * q;
                bz[h][s] = fmaf(bf2f((u16)(pk & 0xffffu)), zs[col], fmaf(bf2f((u16)(pk >> 16)), zs[col + 1], bz[h][s]));
            }
        }
}

// acc[n] = φ·M over the 2F rows of M (high, low) [D][LDE], DV columns: o = φq S, dv = φk dS (M read transposed).
__device__ __forceinline__ void hh_phi_times(const unsigned (&A)[2 * HH_KS][4], const u16* Mh, const u16* Ml, float (&acc)[DV / 8][4]) {
#pragma unroll
    for (int n = 0; n < DV / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < 2 * HH_KS; ++kk)
#pragma unroll
        for (int n = 0; n < DV / 8; ++n) {
            unsigned bb[2];
            frag_b_t(bb, Mh, LDE, 8 * n, 16 * kk);
            mma16816<true>(acc[n], A[kk], bb);
            if (SPLIT) {
                frag_b_t(bb, Ml, LDE, 8 * n, 16 * kk);
                mma16816<true>(acc[n], A[kk], bb);
            }
        }
}

// Stores acc [16][W] (C fragments, times scale[s] per row) as rows r0 + g + 8s, columns c0 .. c0 + W − 1 of dst [·][LD]
// below t1, zeros where keep[s] is false.
template <int W, int LD = W>
__device__ __forceinline__ void warp_store_rows(const float (&acc)[W / 8][4], const float (&scale)[2], const bool (&keep)[2],
        in_t* __restrict__ dst, int r0, int t1, int c0 = 0) {
    const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
#pragma unroll
    for (int s = 0; s < 2; ++s) {
        const int t = r0 + g + 8 * s;
        if (t < t1) {
#pragma unroll
            for (int n = 0; n < W / 8; ++n)
                *(unsigned*)(dst + (size_t)t * LD + c0 + 8 * n + 2 * q) =
                    stx2(keep[s] ? acc[n][2 * s] * scale[s] : 0.f, keep[s] ? acc[n][2 * s + 1] * scale[s] : 0.f);
        }
    }
}

// The whole-head forward's query pass over rows [t0, t1): o = φq S / (φq·z + en), den from the same rounded φ as the
// MMA. S (high, low) [D][LDE] and zs [D] in shared memory; Xw [NW][16][LDX] the warps' x rows.
__device__ __forceinline__ void hh_out_pass(u16* Xw, const u16* Sh, const u16* Sl, const float* zs, const u16* Wt,
        const in_t* __restrict__ qb, in_t* __restrict__ ob, const u8* __restrict__ mask, int b, float en, int t0, int t1, int T) {
    const int w = threadIdx.x >> 5, q = threadIdx.x & 3, g = (threadIdx.x & 31) >> 2;
    u16* X = Xw + w * 16 * LDX;
    int r0 = t0 + 16 * w;
    if (r0 < t1) warp_fetch_rows<HX>(X, LDX, qb, r0, t1, mask, b, T);
    cp_commit();
    for (; r0 < t1; r0 += 16 * NW) {
        cp_wait<0>();
        __syncwarp();
        unsigned A[2 * HH_KS][4];
        hh_warp_phi(X, Wt, A);
        __syncwarp();                           // every lane is past its reads of X
        if (r0 + 16 * NW < t1) warp_fetch_rows<HX>(X, LDX, qb, r0 + 16 * NW, t1, mask, b, T);
        cp_commit();
        float dz[2][2];
        hh_phi_dot(A, zs, dz);
        float inv[2];
        bool keep[2];
#pragma unroll
        for (int s = 0; s < 2; ++s) {
            inv[s] = 1.f / (group_sum(dz[0][s] + dz[1][s], 4) + en);
            keep[s] = real_token(mask, b, r0 + g + 8 * s, T);
        }
        float o[DV / 8][4];
        hh_phi_times(A, Sh, Sl, o);
        warp_store_rows<DV>(o, inv, keep, ob, r0, t1);
    }
}

#endif
#endif
