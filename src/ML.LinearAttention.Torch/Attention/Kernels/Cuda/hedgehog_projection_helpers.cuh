// Helpers of Hedgehog's projection + map kernels and of its attention kernels (MMA = 1): HX/HF/LDX and the
// blocks-per-SM bounds (HFWD_MINB, HBWD_MINB, HDW_MINB: -D options override them), fast division of row indices,
// W_h staging, cp.async copies, one row per thread group for loads and stores, y = x W per warp by MMA, both
// softmaxes along a row split over two warps (merged through shared memory as in online softmax), and, for HH = 1,
// hh_phi_tile: φ from a raw x tile inside the attention kernels' loaders.
#ifndef LA_HEDGEHOG_PROJECTION_HELPERS_CUH
#define LA_HEDGEHOG_PROJECTION_HELPERS_CUH
#include "mma_tiles.cuh"
#include "hedgehog_map.cuh"
#if MMA
#ifndef HX
#define HX D                    // x's width: the head dim (Hedgehog's attention kernels set HX, HF and D = 2F)
#endif
#ifndef HF
#define HF DV                   // Hedgehog's feature dim F
#endif
#define LDX (HX + 8)            // u16 row stride of x-wide tiles
#define LDF (HF + 8)            // u16 row stride of F-wide tiles
#define HNJ (HF / 16)           // 8-column output tiles per warp of y: a warp holds 16 rows × F/2 columns
#define LDP (2 * HF + 8)        // u16 row stride of the φ staging tile
#define HBF (IN_T == 1)         // MMAs in the input type: bf16, else fp16
// Blocks per SM each kernel is compiled for (__launch_bounds__' minimum) up to HX·F = 64·64: two caps a thread at 128
// registers (the backward takes more unbounded, and one 256-thread block per SM left it latency-bound); wider shapes
// keep what they need. FusedHedgehogProjection can set other values (a tuning knob).
#ifndef HFWD_MINB
#define HFWD_MINB 2
#endif
#ifndef HBWD_MINB
#define HBWD_MINB 2
#endif
#define HFWD_BOUND (HX * HF <= 64 * 64 ? HFWD_MINB : 1)
#define HBWD_BOUND (HX * HF <= 64 * 64 ? HBWD_MINB : 1)
// hedgehog_dw_bwd keeps few values live (dW's accumulators and two fragments): three blocks per SM (four, at 64
// registers, was no faster).
#ifndef HDW_MINB
#define HDW_MINB 3
#endif
#define HDW_BOUND (HX * HF <= 64 * 64 ? HDW_MINB : 1)
#if NT != 256 || MTT != 64
#error "the projection kernels take 8 warps over 64-row tiles: 4 row groups by 2 column halves"
#endif

// Head h's rows n = b·T + t (0 ≤ n < N = B·T < 2³²) in the [B, H, T, ·] layout. b = n / T by a multiply: M = ⌊(2⁶⁴ − 1) / T⌋ + 1
// from the host gives ⌊n / T⌋ = high 64 bits of M·n for every 32-bit n (Lemire, Kaser and Kurz, "Faster remainder by
// direct computation", 2019); T = 1 has M = 0 (2⁶⁴ wraps) and b = n. A 64-bit division is a long software routine
// (Nsight Compute found the first version of these kernels issue-bound on it), and every thread needs a row address
// per tile.
struct HRows { long long N; unsigned long long M; int T, H, h; };
__device__ __forceinline__ long long hh_row(const HRows& g, long long n) {
#ifdef MMA_EMULATION
    const long long b = g.M == 0 ? n : (long long)(((unsigned __int128)g.M * (unsigned long long)n) >> 64);
#else
    const long long b = g.M == 0 ? n : (long long)__umul64hi(g.M, (unsigned long long)n);
#endif
    return (b * g.H + g.h) * g.T + (n - b * g.T);
}

// W_h [HX][F] into Wt [F][LDX] (B operand of y = x W, k = d contiguous) and, when Wr is given, Wr [HX][LDF] (B operand
// of dx = dy Wᵀ, k = f contiguous).
__device__ __forceinline__ void hh_load_w(const in_t* __restrict__ w, u16* Wt, u16* Wr) {
    for (int i = threadIdx.x; i < HX * HF; i += NT) {
        const int d = i / HF, f = i % HF;
        const u16 v = (u16)w[i];
        Wt[f * LDX + d] = v;
        if (Wr != nullptr) Wr[d * LDF + f] = v;
    }
}

// 16-byte asynchronous copy global → shared (cp.async, sm_80+; no registers held while it flies), zeros when !ok
// (src-size 0: nothing is read). cp_commit closes a group of copies; cp_wait<N> waits until at most N groups are pending.
__device__ __forceinline__ void cp16(u16* dst, const in_t* src, bool ok) {
#ifdef MMA_EMULATION
    if (ok) memcpy(dst, src, 16); else memset(dst, 0, 16);
#else
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(s), "l"(src), "r"(ok ? 16 : 0));
#endif
}
__device__ __forceinline__ void cp_commit() {
#ifndef MMA_EMULATION
    asm volatile("cp.async.commit_group;");
#endif
}
template <int N> __device__ __forceinline__ void cp_wait() {
#ifndef MMA_EMULATION
    asm volatile("cp.async.wait_group %0;" :: "n"(N));
#endif
}

// Loads and stores take one tile row per thread group: row r = threadIdx.x / 4 (MTT·4 = NT), its four threads taking
// 16-byte chunks c = (threadIdx.x mod 4) + 4k, so each step covers 64 contiguous bytes of a row (whole sectors) and a
// thread computes one row address per tile. Its global row for the tile at n0, or −1 past the head's N rows:
__device__ __forceinline__ long long hh_my_row(long long n0, const HRows& g) {
    const long long n = n0 + (threadIdx.x >> 2);
    return n < g.N ? hh_row(g, n) : -1;
}

// Starts copying this thread's row (global row `row`; −1: zeros) of src [·][C] into dst [MTT][ld].
__device__ __forceinline__ void hh_fetch_row(u16* dst, int ld, const in_t* __restrict__ src, int C, long long row) {
    const int r = threadIdx.x >> 2;
    for (int c = threadIdx.x & 3; c < C / 8; c += 4)
        cp16(dst + r * ld + c * 8, src + (row >= 0 ? row * C + c * 8 : 0), row >= 0);
}

// Stores this thread's row of the tile src [MTT][ld] to global row `row` of dst [·][C] (nothing for −1).
__device__ __forceinline__ void hh_store_row(in_t* __restrict__ dst, int C, const u16* src, int ld, long long row) {
    if (row < 0) return;
    const int r = threadIdx.x >> 2;
    for (int c = threadIdx.x & 3; c < C / 8; c += 4)
        *(uint4*)(dst + row * C + c * 8) = *(const uint4*)(src + r * ld + c * 8);
}

// y = x W for this warp's 16 rows (row group warp & 3) and F/2 columns (half warp >> 2).
__device__ __forceinline__ void hh_project(const u16* Xs, const u16* Wt, float (&acc)[HNJ][4]) {
    const int warp = threadIdx.x >> 5, m0 = (warp & 3) * 16, nb = (warp >> 2) * (HF / 2);
#pragma unroll
    for (int j = 0; j < HNJ; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
#pragma unroll
    for (int k0 = 0; k0 < HX; k0 += 16) {
        unsigned a[4];
        frag_a(a, Xs, LDX, m0, k0);
#pragma unroll
        for (int j = 0; j < HNJ; ++j) {
            unsigned b[2];
            frag_b(b, Wt, LDX, nb + 8 * j, k0);
            mma16816<HBF>(acc[j], a, b);
        }
    }
}

// 2^x by the SFU's ex2.approx (a couple of ulp: far below the 16-bit rounding of φ).
__device__ __forceinline__ float hh_exp2(float x) {
#ifdef MMA_EMULATION
    return exp2f(x);
#else
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
#endif
}
#define HL2E 1.4426950408889634f    // log2(e): e^(y − m) = 2^(y·log2e − m·log2e), one FFMA and the SFU

// The part of both softmaxes a quad of lanes can take alone, for the rows g (s = 0: entries 0, 1) and g + 8 (s = 1:
// entries 2, 3) of NJ 16×8 accumulator tiles y: y becomes 2^((y − max)·log2e), m 2^((min − y)·log2e), and hi, lo, sp,
// sm the max, min and sums of both over the quad's columns (the whole row when the quad holds all of it).
template <int NJ>
__device__ __forceinline__ void hh_quad_softmax(float (&y)[NJ][4], float (&m)[NJ][4], float (&hi)[2], float (&lo)[2],
        float (&sp)[2], float (&sm)[2]) {
#pragma unroll
    for (int s = 0; s < 2; ++s) {
        hi[s] = -3.402823466e38f;
        lo[s] = 3.402823466e38f;
#pragma unroll
        for (int j = 0; j < NJ; ++j) {
            hi[s] = fmaxf(hi[s], fmaxf(y[j][2 * s], y[j][2 * s + 1]));
            lo[s] = fminf(lo[s], fminf(y[j][2 * s], y[j][2 * s + 1]));
        }
        hi[s] = group_max(hi[s], 4);
        lo[s] = -group_max(-lo[s], 4);
        sp[s] = sm[s] = 0.f;
        const float hl = hi[s] * HL2E, ll = lo[s] * HL2E;
#pragma unroll
        for (int j = 0; j < NJ; ++j)
#pragma unroll
            for (int e = 2 * s; e < 2 * s + 2; ++e) {
                const float v = y[j][e];
                y[j][e] = hh_exp2(fmaf(v, HL2E, -hl));
                m[j][e] = hh_exp2(fmaf(-v, HL2E, ll));
                sp[s] += y[j][e];
                sm[s] += m[j][e];
            }
        sp[s] = group_sum(sp[s], 4);
        sm[s] = group_sum(sm[s], 4);
    }
}

// φ₊ = softmax(y) into acc (in place of y) and φ₋ = softmax(−y) into pm, along each row. A lane holds rows g and g + 8
// of its warp's 16 (s = 0, 1: accumulator entries 2s, 2s + 1); a row's F columns lie in two warps of four lanes each.
// Each half reduces its max, min and sums over its quad, then the halves merge through red [2][MTT][4] as online
// softmax does (sums rescaled to the common max). Synchronizes the block once.
__device__ __forceinline__ void hh_softmax(float (&acc)[HNJ][4], float (&pm)[HNJ][4], float* red) {
    const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, q = threadIdx.x & 3;
    const int half = warp >> 2, m0 = (warp & 3) * 16;
    float hi[2], lo[2], sp[2], sm[2];
    hh_quad_softmax(acc, pm, hi, lo, sp, sm);
#pragma unroll
    for (int s = 0; s < 2; ++s) {
        if (q == 0) {
            float* p = red + (half * MTT + m0 + g + 8 * s) * 4;
            p[0] = hi[s]; p[1] = sp[s]; p[2] = lo[s]; p[3] = sm[s];
        }
    }
    __syncthreads();
#pragma unroll
    for (int s = 0; s < 2; ++s) {
        const float* o = red + ((1 - half) * MTT + m0 + g + 8 * s) * 4;
        const float M = fmaxf(hi[s], o[0]), L = fminf(lo[s], o[2]);
        const float kp = __expf(hi[s] - M), km = __expf(L - lo[s]);
        const float fp = __fdividef(kp, sp[s] * kp + o[1] * __expf(o[0] - M)), fm = __fdividef(km, sm[s] * km + o[3] * __expf(L - o[2]));
#pragma unroll
        for (int j = 0; j < HNJ; ++j)
#pragma unroll
            for (int e = 2 * s; e < 2 * s + 2; ++e) { acc[j][e] *= fp; pm[j][e] *= fm; }
    }
}

// Completes two per-row sums a[s], b[s] (rows m0 + g + 8s of a warp's 16) that the four lanes of a quad and the two
// warps sharing those rows (half 0 and 1) each hold in part: shuffles within the quad, then the halves swap through
// x [2][MTT][2]. Synchronizes the block once.
__device__ __forceinline__ void hh_row_sums(float (&a)[2], float (&b)[2], float* x, int half, int m0, int g) {
    const int q = threadIdx.x & 3;
#pragma unroll
    for (int s = 0; s < 2; ++s) {
        a[s] = group_sum(a[s], 4);
        b[s] = group_sum(b[s], 4);
        if (q == 0) { float* p = x + (half * MTT + m0 + g + 8 * s) * 2; p[0] = a[s]; p[1] = b[s]; }
    }
    __syncthreads();
#pragma unroll
    for (int s = 0; s < 2; ++s) {
        const float* o = x + ((1 - half) * MTT + m0 + g + 8 * s) * 2;
        a[s] += o[0];
        b[s] += o[1];
    }
}

#if HH
// Hedgehog's attention kernels (linear_attention_mma_*.cuh with HH = 1) compute φ in their tile loaders from the raw x tile
// Xs [MTT][LDX] (x's type), so φ never goes to memory: φ = [φ₊ | φ₋] (2F = D columns) into the rows of dst
// (dst[r·ld + c]) in type BF, and zero for rows whose token is not real (padding or t ≥ T: their x rows were fetched as
// zeros, whose softmax is not). Synchronizes the block once (hh_softmax); the caller syncs before reading dst.
template <bool BF>
__device__ __forceinline__ void hh_phi_tile(const u16* Xs, const u16* Wt, float* red, u16* dst, int ld,
        const u8* mask, int b, int ts, int T) {
    const int warp = threadIdx.x >> 5, gr = (threadIdx.x & 31) >> 2, q = threadIdx.x & 3;
    const int m0 = (warp & 3) * 16, nb = (warp >> 2) * (HF / 2);
    float pp[HNJ][4], pm[HNJ][4];
    hh_project(Xs, Wt, pp);
    hh_softmax(pp, pm, red);
#pragma unroll
    for (int s = 0; s < 2; ++s) {
        const int row = m0 + gr + 8 * s;
        const float keep = real_token(mask, b, ts + row, T) ? 1.f : 0.f;
#pragma unroll
        for (int j = 0; j < HNJ; ++j) {
            const int col = nb + 8 * j + 2 * q;
            const unsigned p = f2m2<BF>(pp[j][2 * s] * keep, pp[j][2 * s + 1] * keep);
            const unsigned m = f2m2<BF>(pm[j][2 * s] * keep, pm[j][2 * s + 1] * keep);
            *(unsigned*)(dst + row * ld + col) = p;
            *(unsigned*)(dst + row * ld + HF + col) = m;
        }
    }
}

#endif

#endif
#endif
