namespace Microsoft.ML.LinearAttention.Attention.LinearKernel.Cuda;

/// <summary>
/// Tensor-core (warp-level <c>mma.sync.m16n8k16</c>, fp32 accumulation) versions of the four fused kernels, appended to
/// <see cref="FusedKernelSource.Source"/> and compiled only when the macro MMA is 1 (bf16/fp16 inputs, D and DV
/// multiples of 16, sm_80 or newer; see <see cref="FusedModuleCache"/>). Same arguments and results as the CUDA-core
/// kernels; <c>mma_fwd_state</c> and <c>mma_fwd_out</c> are here, the backward pair in <see cref="FusedMmaSourceBackward"/>.
/// <para>Operands live in shared memory as 16-bit values, every tile stored with the reduction (k) index contiguous, so
/// each fragment register is one aligned 32-bit load. Products that read the fp32 state S or its gradient dS use bf16
/// MMAs with S split into a high and a low bf16 part (two MMAs, about 16 significant bits, fp32 range; fp16 could
/// overflow at long T), and the token-side operand converted to bf16 (exact for bf16 inputs). Only fwd_state, whose
/// operands are φ(k) and v themselves, uses the input type (fp16 MMAs for fp16 inputs). z, den, dO·o, dz stay fp32.</para>
/// </summary>
internal static class FusedMmaSource
{
    public const string Source = """

#if MMA
#define MTT 64                  // tokens per tile
#define NW (NT / 32)            // warps per block
#define LDT2 (MTT + 8)          // u16 row stride of token-contiguous (transposed) tiles: conflict-free fragment loads
#define LDD (D + 8)             // u16 row stride of d-contiguous tiles
#define LDE (DV + 8)            // u16 row stride of e-contiguous tiles
#ifndef SPLIT
#define SPLIT 1                 // S and dS as high + low bf16 parts (1) or high only (0)
#endif
#if IN_T == 2
#define ST_BF false             // fwd_state multiplies φ(k) and v in the input type: fp16
#else
#define ST_BF true
#endif
// 16×8 output tiles per warp for an M×N product (tile index w + NW·j: row tile idx % (M/16), column tile idx / (M/16)).
#if MTT * 4 != NT
#error inv_den takes 4 threads per token row
#endif
#define TPW(m, n) ((((m) / 16) * ((n) / 8) + NW - 1) / NW)

__device__ __forceinline__ u16 f2bf(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (u16)(u >> 16);
}
__device__ __forceinline__ float bf2f(u16 x) { return __uint_as_float(((unsigned)x) << 16); }
#ifndef MMA_EMULATION
__device__ __forceinline__ u16 f2h(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
__device__ __forceinline__ float h2f(u16 x) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x)); return f; }
#endif
// 16-bit operand of type BF ? bf16 : fp16, and back.
template <bool BF> __device__ __forceinline__ u16 f2m(float f) { if constexpr (BF) return f2bf(f); else return f2h(f); }
template <bool BF> __device__ __forceinline__ float m2f(u16 x) { if constexpr (BF) return bf2f(x); else return h2f(x); }
__device__ __forceinline__ unsigned pack2(u16 lo, u16 hi) { return (unsigned)lo | ((unsigned)hi << 16); }

// φ'(x) from the raw input x: relu: x > 0; elu+1: 1 for x > 0, else exp(x); identity: 1.
__device__ __forceinline__ float dphix(float x) {
#if FMAP == 1
    return x > 0.f ? 1.f : 0.f;
#elif FMAP == 2
    return x > 0.f ? 1.f : expf(x);
#else
    return 1.f;
#endif
}

// D = A·B + D for one m16n8k16 tile (warp-collective). Fragment layouts from the PTX ISA ("Matrix fragments for
// mma.m16n8k16" with .f16/.bf16 multiplicands, .f32 accumulators). lane = 4·g + q, g = lane >> 2 (group),
// q = lane & 3 (thread in group); a 32-bit register holds two 16-bit values, the lower index in the low half:
//   A (16×16, row-major, .row): a[0] = A[g][2q..2q+1]   a[1] = A[g+8][2q..2q+1]
//                               a[2] = A[g][2q+8..2q+9] a[3] = A[g+8][2q+8..2q+9]
//   B (16×8 = k×n, .col):       b[0] = B[2q..2q+1][g]   b[1] = B[2q+8..2q+9][g]
//   C, D (16×8, fp32):          c[0] = C[g][2q]  c[1] = C[g][2q+1]  c[2] = C[g+8][2q]  c[3] = C[g+8][2q+1]
template <bool BF>
__device__ __forceinline__ void mma16816(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
#ifdef MMA_EMULATION
    mma_emulated(BF, c, a, b);
#else
    if constexpr (BF)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// A fragment of the 16×16 tile at rows m0.., k k0.. of A stored [M][ld] (k contiguous).
__device__ __forceinline__ void frag_a(unsigned (&a)[4], const u16* s, int ld, int m0, int k0) {
    const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const u16* p = s + (m0 + g) * ld + k0 + 2 * q;
    a[0] = *(const unsigned*)p;
    a[1] = *(const unsigned*)(p + 8 * ld);
    a[2] = *(const unsigned*)(p + 8);
    a[3] = *(const unsigned*)(p + 8 * ld + 8);
}

// B fragment of the 16×8 (k×n) tile at k0.., columns n0.. of B stored transposed, [N][ld] (k contiguous).
__device__ __forceinline__ void frag_b(unsigned (&b)[2], const u16* s, int ld, int n0, int k0) {
    const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const u16* p = s + (n0 + g) * ld + k0 + 2 * q;
    b[0] = *(const unsigned*)p;
    b[1] = *(const unsigned*)(p + 8);
}

// acc[j] += A·B (+ A·Bl when Bl is given) for this warp's 16×8 output tiles of the M×N product over K.
// A [M][lda], B and Bl [N][ldb], all k-contiguous 16-bit. Every branch is warp-uniform (mma.sync needs the whole warp).
template <int M, int N, int K, bool BF>
__device__ __forceinline__ void wmm(const u16* A, int lda, const u16* B, const u16* Bl, int ldb, float (&acc)[TPW(M, N)][4]) {
    constexpr int MT = M / 16, TOT = MT * (N / 8);
    const int w = threadIdx.x >> 5;
#pragma unroll 2
    for (int k0 = 0; k0 < K; k0 += 16) {
#pragma unroll
        for (int j = 0; j < TPW(M, N); ++j) {
            const int idx = w + NW * j;
            if (TOT % NW != 0 && idx >= TOT) break;
            const int m0 = (idx % MT) * 16, n0 = (idx / MT) * 8;
            unsigned a[4], b[2];
            frag_a(a, A, lda, m0, k0);
            frag_b(b, B, ldb, n0, k0);
            mma16816<BF>(acc[j], a, b);
            if (Bl != nullptr) {
                frag_b(b, Bl, ldb, n0, k0);
                mma16816<BF>(acc[j], a, b);
            }
        }
    }
}

template <int M, int N>
__device__ __forceinline__ void zero_tiles(float (&acc)[TPW(M, N)][4]) {
#pragma unroll
    for (int j = 0; j < TPW(M, N); ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
}

// Calls f(j, row, col, c0, c1) for the two row pairs (row, col..col+1) this lane holds in each of its output tiles.
#define FOR_TILE_PAIRS(M, N, BODY) { \
    constexpr int MT_ = (M) / 16, TOT_ = MT_ * ((N) / 8); \
    const int w_ = threadIdx.x >> 5, g_ = (threadIdx.x & 31) >> 2, q_ = threadIdx.x & 3; \
    _Pragma("unroll") for (int j = 0; j < TPW(M, N); ++j) { \
        const int idx_ = w_ + NW * j; \
        if (TOT_ % NW != 0 && idx_ >= TOT_) break; \
        const int m0_ = (idx_ % MT_) * 16, col = (idx_ / MT_) * 8 + 2 * q_; \
        _Pragma("unroll") for (int h_ = 0; h_ < 2; ++h_) { \
            const int row = m0_ + g_ + 8 * h_; const float c0 = acc_[j][2 * h_], c1 = acc_[j][2 * h_ + 1]; \
            BODY \
        } } }

// S (high, low) into shared memory as [rows][ld] with S[d][e] at (d·ld + e), or transposed (e·ld + d).
__device__ __forceinline__ void load_split(const float* __restrict__ src, u16* hi, u16* lo, int ld, bool transposed) {
    for (int i = threadIdx.x; i < D * DV; i += NT) {
        const int d = i / DV, e = i % DV, at = transposed ? e * ld + d : d * ld + e;
        const float s = src[i];
        const u16 h = f2bf(s);
        hi[at] = h;
        lo[at] = f2bf(s - bf2f(h));
    }
}

// 8 consecutive 16-bit inputs at p (16-byte aligned: the launcher aligns the tensors, C is a multiple of 16), or zeros.
__device__ __forceinline__ void ld8(const in_t* p, bool ok, in_t (&e)[8]) {
    uint4 u;
    if (ok) u = *(const uint4*)p; else u.x = u.y = u.z = u.w = 0u;
    e[0] = (in_t)(u.x & 0xffffu); e[1] = (in_t)(u.x >> 16); e[2] = (in_t)(u.y & 0xffffu); e[3] = (in_t)(u.y >> 16);
    e[4] = (in_t)(u.z & 0xffffu); e[5] = (in_t)(u.z >> 16); e[6] = (in_t)(u.w & 0xffffu); e[7] = (in_t)(u.w >> 16);
}

// Token tile [MTT][ld] (columns contiguous, bf16) of src [T][C]: 8 columns per thread (one 16-byte load and store).
// OK: whether token t is loaded (else zeros); MAP: the value from x = the input at (token row r, column).
#define LOAD_ROWS(dst, ld, C, src, OK, MAP) \
    for (int i_ = threadIdx.x; i_ < MTT * ((C) / 8); i_ += NT) { \
        const int r = i_ / ((C) / 8), c_ = (i_ % ((C) / 8)) * 8, t = ts + r; \
        const bool ok_ = (OK); \
        in_t e_[8]; ld8((src) + (size_t)t * (C) + c_, ok_, e_); \
        unsigned w_[4]; \
        _Pragma("unroll") for (int j_ = 0; j_ < 4; ++j_) { \
            float x = ldx(e_[2 * j_]); const float y0 = ok_ ? (MAP) : 0.f; \
            x = ldx(e_[2 * j_ + 1]); const float y1 = ok_ ? (MAP) : 0.f; \
            w_[j_] = pack2(f2bf(y0), f2bf(y1)); } \
        uint4 u_; u_.x = w_[0]; u_.y = w_[1]; u_.z = w_[2]; u_.w = w_[3]; \
        *(uint4*)((dst) + r * (ld) + c_) = u_; }

// Transposed token tile [C][LDT2] (tokens contiguous, type BF) of src [T][C]: 8 columns of 2 tokens per thread, tokens
// fastest across a warp (bank-conflict-free 32-bit shared stores).
#define LOAD_COLS(dst, C, BF, src, OK, MAP) \
    for (int i_ = threadIdx.x; i_ < (MTT / 2) * ((C) / 8); i_ += NT) { \
        const int r0_ = (i_ % (MTT / 2)) * 2, c_ = (i_ / (MTT / 2)) * 8; \
        bool ok0_, ok1_; { const int t = ts + r0_; ok0_ = (OK); } { const int t = ts + r0_ + 1; ok1_ = (OK); } \
        in_t e0_[8], e1_[8]; \
        ld8((src) + (size_t)(ts + r0_) * (C) + c_, ok0_, e0_); \
        ld8((src) + (size_t)(ts + r0_ + 1) * (C) + c_, ok1_, e1_); \
        _Pragma("unroll") for (int j_ = 0; j_ < 8; ++j_) { \
            float y0 = 0.f, y1 = 0.f; \
            if (ok0_) { const int r = r0_; const float x = ldx(e0_[j_]); y0 = (MAP); } \
            if (ok1_) { const int r = r0_ + 1; const float x = ldx(e1_[j_]); y1 = (MAP); } \
            *(unsigned*)((dst) + (c_ + j_) * LDT2 + r0_) = pack2(f2m<BF>(y0), f2m<BF>(y1)); } }

// 1/(Σ_d φq[t][d]·z[d] + en) for the tile's MTT rows, 4 threads per row in a fixed order (the forward and the backward
// get the same value from the same rounded φq at P[t·st + d·sd]). Called by every thread (shuffles).
__device__ __forceinline__ void inv_den(const u16* P, int st, int sd, const float* zs, float en, float* den) {
    const int t = threadIdx.x >> 2, part = threadIdx.x & 3;
    float s = 0.f;
    for (int i = part * (D / 4); i < (part + 1) * (D / 4); ++i) s = fmaf(bf2f(P[t * st + i * sd]), zs[i], s);
    s += __shfl_xor_sync(0xffffffffu, s, 1);
    s += __shfl_xor_sync(0xffffffffu, s, 2);
    if (part == 0) den[t] = 1.f / (s + en);
}

// Column sums of a transposed tile P [D][LDT2] (weighted by w[token] when W), 4 threads per column (a quarter of the
// tokens each), kept per thread across tiles; colsum_flush reduces the 4 partial sums and adds them to dst[d].
#define ZP ((D * 4 + NT - 1) / NT)
template <bool BF, bool W>
__device__ __forceinline__ void colsum(const u16* P, const float* w, float (&acc)[ZP]) {
#pragma unroll
    for (int j = 0; j < ZP; ++j) {
        const int p = threadIdx.x + j * NT, d = p >> 2, r0 = (p & 3) * (MTT / 4);
        if (p < D * 4)
            for (int r = r0; r < r0 + MTT / 4; ++r) acc[j] = fmaf(m2f<BF>(P[d * LDT2 + r]), W ? w[r] : 1.f, acc[j]);
    }
}
__device__ __forceinline__ void colsum_flush(float (&acc)[ZP], float* dst) {
#pragma unroll
    for (int j = 0; j < ZP; ++j) {
        const int p = threadIdx.x + j * NT;
        if (p < D * 4) {   // warp-uniform: D·4 is a multiple of 64
            float s = acc[j];
            s += __shfl_xor_sync(0xffffffffu, s, 1);
            s += __shfl_xor_sync(0xffffffffu, s, 2);
            if ((p & 3) == 0) atomicAdd(dst + (p >> 2), s);
        }
    }
}

extern "C" __global__ void __launch_bounds__(NT) mma_fwd_state(const in_t* __restrict__ k, const in_t* __restrict__ v,
        const u8* __restrict__ mask, int T, int H, int tpb, float* __restrict__ S, float* __restrict__ z) {
    extern __shared__ float4 smem4[];
    u16* KT = (u16*)smem4;              // [D][LDT2]   φkᵀ
    u16* VT = KT + D * LDT2;            // [DV][LDT2]  vᵀ
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    const in_t* kb = k + (size_t)bh * T * D;
    const in_t* vb = v + (size_t)bh * T * DV;
    float acc_[TPW(D, DV)][4];
    zero_tiles<D, DV>(acc_);
    float zacc[ZP];
#pragma unroll
    for (int j = 0; j < ZP; ++j) zacc[j] = 0.f;
    for (int ts = t0; ts < t1; ts += MTT) {
        __syncthreads();
        LOAD_COLS(KT, D, ST_BF, kb, real_token(mask, b, t, T), phi(x))
        LOAD_COLS(VT, DV, ST_BF, vb, t < T, x)
        __syncthreads();
        wmm<D, DV, MTT, ST_BF>(KT, LDT2, VT, nullptr, LDT2, acc_);
        colsum<ST_BF, false>(KT, nullptr, zacc);   // z from the same rounded φk as S
    }
    float* Sb = S + (size_t)bh * D * DV;
    FOR_TILE_PAIRS(D, DV, { atomicAdd(Sb + row * DV + col, c0); atomicAdd(Sb + row * DV + col + 1, c1); })
    colsum_flush(zacc, z + (size_t)bh * D);
}

extern "C" __global__ void __launch_bounds__(NT) mma_fwd_out(const in_t* __restrict__ q, const float* __restrict__ S,
        const float* __restrict__ z, const u8* __restrict__ mask, const float* __restrict__ epsn, int T, int H, int tpb,
        in_t* __restrict__ o) {
    extern __shared__ float4 smem4[];
    u16* Sh = (u16*)smem4;              // [DV][LDD]  Sᵀ high
    u16* Sl = Sh + DV * LDD;            // [DV][LDD]  Sᵀ low
    u16* Qs = Sl + DV * LDD;            // [MTT][LDD] φq
    float* zs = (float*)(Qs + MTT * LDD);   // [D]
    float* den = zs + D;                // [MTT]  1/den
    const int bh = blockIdx.y, b = bh / H, tid = threadIdx.x;
    const int t0 = blockIdx.x * tpb * MTT, t1 = min(T, t0 + tpb * MTT);
    load_split(S + (size_t)bh * D * DV, Sh, Sl, LDD, true);
    if (tid < D) zs[tid] = z[(size_t)bh * D + tid];
    const float en = epsn[b];
    const in_t* qb = q + (size_t)bh * T * D;
    in_t* ob = o + (size_t)bh * T * DV;
    for (int ts = t0; ts < t1; ts += MTT) {
        __syncthreads();
        LOAD_ROWS(Qs, LDD, D, qb, real_token(mask, b, t, T), phi(x))
        __syncthreads();
        inv_den(Qs, LDD, 1, zs, en, den);   // den holds 1/den
        float acc_[TPW(MTT, DV)][4];
        zero_tiles<MTT, DV>(acc_);
        wmm<MTT, DV, D, true>(Qs, LDD, Sh, SPLIT ? Sl : nullptr, LDD, acc_);
        __syncthreads();
        FOR_TILE_PAIRS(MTT, DV, {
            const int t = ts + row;
            if (t < T) {
                const bool real = real_token(mask, b, t, T);
                const float inv = den[row];
                *(unsigned*)(ob + (size_t)t * DV + col) = pack2(stx(real ? c0 * inv : 0.f), stx(real ? c1 * inv : 0.f));
            }
        })
    }
}
#endif
""";
}
