namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// Tensor-core (warp-level <c>mma.sync.m16n8k16</c>, fp32 accumulation) versions of the four fused kernels, appended to
/// <see cref="FusedKernelSource.Source"/> and compiled only when the macro MMA is 1 (bf16/fp16 inputs, D and DV
/// multiples of 16, sm_80 or newer; see <see cref="FusedModuleCache"/>). Same arguments and results as the CUDA-core
/// kernels; the helpers are here, the forward pair in <see cref="FusedMmaSourceForward"/>, the backward pair in <see cref="FusedMmaSourceBackward"/>.
/// <para>Operands live in shared memory as 16-bit values. Token tiles are stored as rows (token-major, as they come from
/// memory: 16-byte stores, no bank conflicts); a product that reduces over tokens (S = φkᵀv, dS = φqᵀg) and one that
/// reads the state the other way (φk·dS, φq·S) take their fragments transposed by ldmatrix.trans (frag_a_t, frag_b_t);
/// the others read k-contiguous fragments as aligned 32-bit loads. Products that read the fp32 state S or its gradient dS use bf16
/// MMAs (fp16 could overflow at long T), with S rounded to bf16 for bf16 inputs and split into a high and a low bf16
/// part for fp16 inputs (two MMAs, about 16 significant bits; macro SPLIT), and the token-side operand converted to
/// bf16 (exact for bf16 inputs). Only fwd_state, whose
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
// S and dS as MMA operands: high + low bf16 parts (1) or high only (0). bf16 inputs take the high part alone, as bf16
// as libtorch's own bf16 state (φkᵀv rounded to bf16 by the matmul) and the kernels' bf16 output, with half the MMAs
// of every product with S or dS; fp16 inputs keep both parts (their
// scale follows 1/den, which fp16's range does not hold, and their 11-bit significand deserves more than bf16's 8).
#ifndef SPLIT
#define SPLIT (IN_T == 1 ? 0 : 1)
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

// fp32 → bf16, round to nearest even (one cvt; the emulator rounds in software, NaN kept NaN).
__device__ __forceinline__ u16 f2bf(float f) {
#ifdef MMA_EMULATION
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (u16)(u >> 16);
#else
    u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#endif
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
// Two floats as a packed 16-bit pair of type BF (bf16 or fp16, round to nearest even), lo in the low half: one cvt.
template <bool BF> __device__ __forceinline__ unsigned f2m2(float lo, float hi) {
#ifdef MMA_EMULATION
    return pack2(f2m<BF>(lo), f2m<BF>(hi));
#else
    unsigned r;
    if constexpr (BF) asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    else asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#endif
}
// Two results as a packed pair of the input type (the tensor-core kernels take bf16 or fp16 inputs): one cvt for both
// (stx rounds bf16 in software, about ten integer instructions a value, which ncu found in every epilogue).
__device__ __forceinline__ unsigned stx2(float lo, float hi) { return f2m2<IN_T == 1>(lo, hi); }


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

// The same fragments from operands stored k-major (A as [K][ld], m contiguous; B as [K][ld], n contiguous): a token
// tile stored as rows, read as its transpose for a product that reduces over tokens, or a state read either way. One
// ldmatrix.trans per fragment: lanes 8i..8i+7 give the addresses of the eight k rows of 8×8 matrix i, and each lane
// receives two k-adjacent values of its column (each row address is 16-byte aligned: every row stride and tile offset
// is a multiple of 8 u16). The emulator reads the values one by one.
#ifndef MMA_EMULATION
__device__ __forceinline__ unsigned smem_addr(const u16* p) { return (unsigned)__cvta_generic_to_shared(p); }
#endif
__device__ __forceinline__ void frag_a_t(unsigned (&a)[4], const u16* s, int ld, int m0, int k0) {
    const int lane = threadIdx.x & 31;
#ifdef MMA_EMULATION
    const int g = lane >> 2, q = lane & 3;
    auto at = [&](int m, int k) { return pack2(s[k * ld + m], s[(k + 1) * ld + m]); };
    a[0] = at(m0 + g, k0 + 2 * q); a[1] = at(m0 + g + 8, k0 + 2 * q);
    a[2] = at(m0 + g, k0 + 2 * q + 8); a[3] = at(m0 + g + 8, k0 + 2 * q + 8);
#else
    // Matrices (k rows, m columns): (k0, m0), (k0, m0 + 8), (k0 + 8, m0), (k0 + 8, m0 + 8): a[0..3] in fragment order.
    const int i = lane >> 3;
    const u16* p = s + (k0 + (lane & 7) + (i >> 1) * 8) * ld + m0 + (i & 1) * 8;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3]) : "r"(smem_addr(p)));
#endif
}
__device__ __forceinline__ void frag_b_t(unsigned (&b)[2], const u16* s, int ld, int n0, int k0) {
    const int lane = threadIdx.x & 31;
#ifdef MMA_EMULATION
    const int g = lane >> 2, q = lane & 3;
    b[0] = pack2(s[(k0 + 2 * q) * ld + n0 + g], s[(k0 + 2 * q + 1) * ld + n0 + g]);
    b[1] = pack2(s[(k0 + 2 * q + 8) * ld + n0 + g], s[(k0 + 2 * q + 9) * ld + n0 + g]);
#else
    // Matrices (k rows, n columns): (k0, n0), (k0 + 8, n0); lanes 16..31's addresses are not read (kept in range).
    const u16* p = s + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0;
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];" : "=r"(b[0]), "=r"(b[1]) : "r"(smem_addr(p)));
#endif
}

// acc[j] += A·B (+ A·Bl when Bl is given) for this warp's 16×8 output tiles of the M×N product over K.
// A [M][lda], B and Bl [N][ldb], all k-contiguous 16-bit; AT: A stored k-major instead ([K][lda]), BT: B and Bl too
// ([K][ldb]). Every branch is warp-uniform (mma.sync needs the whole warp).
template <bool T_>
__device__ __forceinline__ void frag_a_any(unsigned (&a)[4], const u16* s, int ld, int m0, int k0) {
    if constexpr (T_) frag_a_t(a, s, ld, m0, k0); else frag_a(a, s, ld, m0, k0);
}
template <bool T_>
__device__ __forceinline__ void frag_b_any(unsigned (&b)[2], const u16* s, int ld, int n0, int k0) {
    if constexpr (T_) frag_b_t(b, s, ld, n0, k0); else frag_b(b, s, ld, n0, k0);
}
template <int M, int N, int K, bool BF, bool AT = false, bool BT = false>
__device__ __forceinline__ void wmm(const u16* A, int lda, const u16* B, const u16* Bl, int ldb, float (&acc)[TPW(M, N)][4]) {
    constexpr int MT = M / 16, TOT = MT * (N / 8);
    const int w = threadIdx.x >> 5;
#pragma unroll 2
    for (int k0 = 0; k0 < K; k0 += 16) {
        if constexpr (NW % MT == 0) {
            // Every tile of this warp is in row tile w % MT: one A fragment per k step (half the shared-memory reads).
            unsigned a[4];
            frag_a_any<AT>(a, A, lda, (w % MT) * 16, k0);
#pragma unroll
            for (int j = 0; j < TPW(M, N); ++j) {
                const int idx = w + NW * j;
                if (TOT % NW != 0 && idx >= TOT) break;
                const int n0 = (idx / MT) * 8;
                unsigned b[2];
                frag_b_any<BT>(b, B, ldb, n0, k0);
                mma16816<BF>(acc[j], a, b);
                if (Bl != nullptr) {
                    frag_b_any<BT>(b, Bl, ldb, n0, k0);
                    mma16816<BF>(acc[j], a, b);
                }
            }
        } else {
#pragma unroll
            for (int j = 0; j < TPW(M, N); ++j) {
                const int idx = w + NW * j;
                if (TOT % NW != 0 && idx >= TOT) break;
                const int m0 = (idx % MT) * 16, n0 = (idx / MT) * 8;
                unsigned a[4], b[2];
                frag_a_any<AT>(a, A, lda, m0, k0);
                frag_b_any<BT>(b, B, ldb, n0, k0);
                mma16816<BF>(acc[j], a, b);
                if (Bl != nullptr) {
                    frag_b_any<BT>(b, Bl, ldb, n0, k0);
                    mma16816<BF>(acc[j], a, b);
                }
            }
        }
    }
}

template <int M, int N>
__device__ __forceinline__ void zero_tiles(float (&acc)[TPW(M, N)][4]) {
#pragma unroll
    for (int j = 0; j < TPW(M, N); ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
}

// A block's share of a per-head fp32 sum (S, z, dS, dz): stored when the launch gives each head one block (gridDim.x
// == 1; the host then leaves the buffer unset), else added atomically into the zeros the host wrote.
__device__ __forceinline__ void put_sum(float* at, float v) {
    if (gridDim.x == 1) *at = v;
    else atomicAdd(at, v);
}

// p[0] += a and p[1] += b in global memory (p 8-byte aligned): one vector reduction on sm_90 and newer where the
// compiler knows it (PTX ISA 8.1, CUDA 12.1), else two atomics.
#if defined(__CUDACC_VER_MAJOR__) && (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 1))
#define RED_V2_KNOWN 1
#else
#define RED_V2_KNOWN 0
#endif
__device__ __forceinline__ void red_add2(float* p, float a, float b) {
#if !defined(MMA_EMULATION) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && RED_V2_KNOWN
    asm volatile("red.global.add.v2.f32 [%0], {%1, %2};" :: "l"(p), "f"(a), "f"(b) : "memory");
#else
    atomicAdd(p, a);
    atomicAdd(p + 1, b);
#endif
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

// Output rows of a token tile from the accumulators of o = num (MTT × DV), times 1/den per row; zero at padded rows.
__device__ __forceinline__ void store_out(const float (&acc_)[TPW(MTT, DV)][4], in_t* ob, const float* den, const u8* mask,
        int b, int ts, int T) {
    FOR_TILE_PAIRS(MTT, DV, {
        const int t = ts + row;
        if (t < T) {
            const bool real = real_token(mask, b, t, T);
            const float inv = den[row];
            *(unsigned*)(ob + (size_t)t * DV + col) = stx2(real ? c0 * inv : 0.f, real ? c1 * inv : 0.f);
        }
    })
}

// S (high, low) into shared memory as [rows][ld] with S[d][e] at (d·ld + e), or transposed (e·ld + d).
__device__ __forceinline__ void load_split(const float* __restrict__ src, u16* hi, u16* lo, int ld, bool transposed) {
    for (int i = threadIdx.x; i < D * DV; i += NT) {
        const int d = i / DV, e = i % DV, at = transposed ? e * ld + d : d * ld + e;
        const float s = src[i];
        const u16 h = f2bf(s);
        hi[at] = h;
        if (SPLIT) lo[at] = f2bf(s - bf2f(h));
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
            w_[j_] = f2m2<true>(y0, y1); } \
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

// 1/(Σ_d φq[t][d]·z[d] + en) for the tile's MTT rows of P [MTT][ld] (bf16), 4 threads per row in a fixed order (the
// forward and the backward get the same value from the same rounded φq). Called by every thread (shuffles). Thread
// `part` takes the contiguous quarter d ∈ [part·D/4, (part + 1)·D/4), four values per 8-byte load (z: 16 bytes).
__device__ __forceinline__ void inv_den(const u16* P, int ld, const float* zs, float en, float* den) {
    const int t = threadIdx.x >> 2, part = threadIdx.x & 3;
    const u16* p = P + t * ld + part * (D / 4);
    const float* z = zs + part * (D / 4);
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < D / 4; i += 4) {
        const uint2 u = *(const uint2*)(p + i);
        const float4 w = *(const float4*)(z + i);
        s = fmaf(__uint_as_float(u.x << 16), w.x, s);
        s = fmaf(__uint_as_float(u.x & 0xffff0000u), w.y, s);
        s = fmaf(__uint_as_float(u.y << 16), w.z, s);
        s = fmaf(__uint_as_float(u.y & 0xffff0000u), w.w, s);
    }
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

// Software pipelining of the bidirectional kernels: a thread fetches its 16-byte pieces of the next token tile into
// registers (Rows below) before the current tile's MMAs, and stores them to shared memory after the next barrier, so
// global-memory latency overlaps the tensor-core work instead of stalling every tile. Tiles are stored as rows; the
// products that reduce over tokens read them transposed (frag_a_t, frag_b_t).
// Rows<C>: item i = threadIdx.x + j·NT is token r = i / (C/8), columns (i % (C/8))·8 .. +8 (tile [MTT][ld]).
#define RITEMS(C) ((MTT * ((C) / 8) + NT - 1) / NT)
template <int C> struct Rows { uint4 u[RITEMS(C)]; unsigned ok; };

__device__ __forceinline__ uint4 ld16(const in_t* p, bool ok) {
    uint4 u;
    if (ok) u = *(const uint4*)p; else u.x = u.y = u.z = u.w = 0u;
    return u;
}
__device__ __forceinline__ void unpack8(const uint4& u, in_t (&e)[8]) {
    e[0] = (in_t)(u.x & 0xffffu); e[1] = (in_t)(u.x >> 16); e[2] = (in_t)(u.y & 0xffffu); e[3] = (in_t)(u.y >> 16);
    e[4] = (in_t)(u.z & 0xffffu); e[5] = (in_t)(u.z >> 16); e[6] = (in_t)(u.w & 0xffffu); e[7] = (in_t)(u.w >> 16);
}

// Loads tile ts of src [T][C]; tokens that are not real (mask, or t ≥ T; mask = nullptr: t ≥ T only) are not read.
template <int C>
__device__ __forceinline__ void fetch_rows(Rows<C>& f, const in_t* src, const u8* mask, int b, int ts, int T) {
    f.ok = 0u;
#pragma unroll
    for (int j = 0; j < RITEMS(C); ++j) {
        const int i = threadIdx.x + j * NT, r = i / (C / 8), c = (i % (C / 8)) * 8;
        const bool ok = i < MTT * (C / 8) && real_token(mask, b, ts + r, T);
        f.u[j] = ld16(src + (size_t)(ts + r) * C + c, ok);
        f.ok |= (ok ? 1u : 0u) << j;
    }
}
// Value maps of the stores: φ(x), x, or x·scale[r] (r = token row in the tile).
#define MAP_PHI 0
#define MAP_ID 1
#define MAP_SCALE 2
template <int KIND> __device__ __forceinline__ float mapv(float x, const float* scale, int r) {
    if constexpr (KIND == MAP_PHI) return phi(x);
    else if constexpr (KIND == MAP_ID) return x;
    else return x * scale[r];
}
// True when the map can work on the raw 16-bit input words (no conversion): the tile's type is the input's, and the
// map is the identity or relu (sign bit set: +0; tiles of tokens that are not real were fetched as zeros).
template <int KIND, bool BF> __device__ constexpr bool raw_map_ok() {
    return (BF ? IN_T == 1 : IN_T == 2) && (KIND == MAP_ID || (KIND == MAP_PHI && (FMAP == 0 || FMAP == 1)));
}
template <int KIND> __device__ __forceinline__ unsigned raw_map(unsigned w) {
    if constexpr (KIND == MAP_PHI && FMAP == 1) return w & ~(((w & 0x80008000u) >> 15) * 0xffffu);
    else return w;
}
template <int KIND> __device__ __forceinline__ uint4 raw_map4(uint4 u) {
    u.x = raw_map<KIND>(u.x); u.y = raw_map<KIND>(u.y); u.z = raw_map<KIND>(u.z); u.w = raw_map<KIND>(u.w);
    return u;
}

// Stores a fetched tile as [MTT][ld] in type BF (bf16 or fp16), value map of the input (zero where the token is not real).
template <int KIND, int C, bool BF = true>
__device__ __forceinline__ void store_rows(u16* dst, int ld, const Rows<C>& f, const float* scale = nullptr) {
#pragma unroll
    for (int j = 0; j < RITEMS(C); ++j) {
        const int i = threadIdx.x + j * NT, r = i / (C / 8), c = (i % (C / 8)) * 8;
        if (i >= MTT * (C / 8)) break;
        uint4 o;
        if constexpr (raw_map_ok<KIND, BF>()) o = raw_map4<KIND>(f.u[j]);
        else {
            const bool ok = (f.ok >> j) & 1u;
            in_t e[8]; unpack8(f.u[j], e);
            unsigned w[4];
#pragma unroll
            for (int k = 0; k < 4; ++k)
                w[k] = f2m2<BF>(ok ? mapv<KIND>(ldx(e[2 * k]), scale, r) : 0.f, ok ? mapv<KIND>(ldx(e[2 * k + 1]), scale, r) : 0.f);
            o.x = w[0]; o.y = w[1]; o.z = w[2]; o.w = w[3];
        }
        *(uint4*)(dst + r * ld + c) = o;
    }
}
// Σ over this thread's 8 columns of a·b for each row item of two fetched tiles (zero where not real), into dot[r]
// (zeroed by the caller). When the C/8 items of a row are a power-of-two group of lanes, they are summed with shuffles
// and stored once (eight lanes' shared-memory atomics on one address serialize); otherwise added atomically.
template <int C>
__device__ __forceinline__ void row_dots(const Rows<C>& a, const Rows<C>& b, float* dot) {
    constexpr int L = C / 8;
    constexpr bool grouped = (L & (L - 1)) == 0 && L <= 32;
#pragma unroll
    for (int j = 0; j < RITEMS(C); ++j) {
        const int i = threadIdx.x + j * NT, r = i / L;
        if (i >= MTT * L) break;            // warp-uniform: MTT·L is a multiple of 32
        const bool ok = (a.ok >> j) & 1u;
        float s = 0.f;
        if (ok) {
            in_t x[8], y[8]; unpack8(a.u[j], x); unpack8(b.u[j], y);
#pragma unroll
            for (int k = 0; k < 8; ++k) s = fmaf(ldx(x[k]), ldx(y[k]), s);
        }
        if constexpr (grouped) {
#pragma unroll
            for (int m = L >> 1; m > 0; m >>= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
            if ((i & (L - 1)) == 0) dot[r] = s;
        } else if (ok) atomicAdd(dot + r, s);
    }
}

// φ'(x) at the epilogue's (token row, column) from the φ tile in shared memory, which takes a dependent global load
// (and for elu+1 an exp) off the epilogue's path. relu: φ > 0 exactly where x > 0 (the bf16 tile keeps the sign of
// every bf16 or fp16 input). elu+1: φ' = 1 where x > 0 (φ = x + 1 > 1, or 1 after rounding, where φ' = 1 too), else
// exp(x) = φ, within the tile's bf16 rounding (2⁻⁹ relative). The identity reads nothing.
__device__ __forceinline__ float dphi_tile(float p) {
#if FMAP == 1
    return p > 0.f ? 1.f : 0.f;
#else
    return p > 1.f ? 1.f : p;
#endif
}
#if FMAP == 1 || FMAP == 2
#define DPHI_AT(tile, tile_index, src, at) dphi_tile(bf2f((tile)[tile_index]))
#else
#define DPHI_AT(tile, tile_index, src, at) 1.f
#endif

// Hedgehog's attention kernels (HH = 1, FMAP = 0): q and k are x before Hedgehog's projection (XD = HX wide), the
// loaders map each x tile to φ with hh_phi_tile (FusedHedgehogProjectionSource, compiled between these helpers and the
// kernels), the projection weight hw [H][HX][HF] comes as each kernel's last argument, and D = 2F is φ's width.
// HH_SMEM carves W_hᵀ, the x tile and the softmax exchange after a kernel's own shared memory and loads W_hᵀ.
#if HH
#define XD HX
#define HH_W , const in_t* __restrict__ hw
// Backward kernels: also dx = dy Wᵀ [B][H][T][HX], and the fp32 sums of both maps' dW = xᵀdy [2][H][HX][HF] (query's,
// key's): mma_bwd_q zeroes them (the host leaves them unset), mma_bwd_kv adds the key map's where HH_KV_DW, and
// hedgehog_dw_bwd the rest after them.
#define HH_WB HH_W, in_t* __restrict__ hdx, float* __restrict__ hdw
// mma_bwd_kv reduces the key map's dW = xᵀdy itself (hh_kv_pass, 128 rows at a time, into fp32 sums [HX][LDW] where
// dS's low half would be: free without SPLIT, that is for bf16 inputs, when they fit; dy in the v rows' space, which
// F ≤ DV lets it take), so dy_k never goes to memory and hedgehog_dw_bwd takes the query map alone.
// FusedModuleCache.HedgehogKeyWeightsInKernel must agree.
#define LDW (HF + 8)
#define HH_KV_DW (!SPLIT && HF <= DV && HX * LDW <= HF * LDE)
// The x tile [MTT][LDX] lives in the φ tile's space (XS_IN, [MTT][LDD]) when it fits (hh_phi_tile's MMAs read all of
// x before its softmax barrier and it writes φ only after that), else after the exchange. FusedModuleCache.HedgehogBytes
// counts the same.
#define HH_XS_FITS (LDD >= LDX)
#define HH_SMEM(after, XS_IN) \
    u16* Wt = (u16*)(after); float* red = (float*)(Wt + HF * LDX); \
    u16* Xs = HH_XS_FITS ? (XS_IN) : (u16*)(red + 2 * MTT * 4); \
    hh_load_w(hw + (size_t)(blockIdx.y % H) * HX * HF, Wt, nullptr);
// Two blocks per SM where x and v are at most 64 wide (one 256-thread block per SM left the kernels latency-bound);
// wider shapes keep the registers they need (capped at 128 they spilled hundreds of bytes). A tuning knob can set it.
#ifndef HH_MINB
#define HH_MINB (HX <= 64 && DV <= 64 ? 2 : 1)
#endif
#define MMA_BOUNDS __launch_bounds__(NT, HH_MINB)
// A fetched tile as it came (x's type; tokens that are not real were fetched as zeros).
template <int C>
__device__ __forceinline__ void store_rows_raw(u16* dst, int ld, const Rows<C>& f) {
#pragma unroll
    for (int j = 0; j < RITEMS(C); ++j) {
        const int i = threadIdx.x + j * NT, r = i / (C / 8), c = (i % (C / 8)) * 8;
        if (i >= MTT * (C / 8)) break;
        *(uint4*)(dst + r * ld + c) = f.u[j];
    }
}
#else
#define XD D
#define HH_W
#define HH_WB
#define MMA_BOUNDS __launch_bounds__(NT)
#endif

// A loader's q or k tile in two steps, with or without Hedgehog. STAGE_PHI(f, store), after the barrier that frees the
// tile: the raw x tile for Hedgehog, else `store` (φ(x) straight into the kernel's tile). FINISH_PHI(BF, dst, ld),
// after the next barrier: Hedgehog's φ from x into the rows of dst and a barrier; nothing otherwise. Parenthesize a
// `store` with template commas.
#if HH
#define STAGE_PHI(f, store) store_rows_raw(Xs, LDX, f)
#define FINISH_PHI(BF, dst, ld) { hh_phi_tile<BF>(Xs, Wt, red, dst, ld, mask, b, ts, T); __syncthreads(); }
#else
#define STAGE_PHI(f, store) store
#define FINISH_PHI(BF, dst, ld)
#endif

#endif
""";
}
