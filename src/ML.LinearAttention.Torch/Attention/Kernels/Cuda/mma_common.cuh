// Tensor-core helpers (MMA = 1): tile strides, bf16/fp16 conversions, the warp-level mma.sync.m16n8k16 wrapper
// (fp32 accumulation) with its PTX fragment layouts, ldmatrix fragment loads, the warp product mma_tiles_acc, the
// sums' stores and reductions. Operands are 16-bit values in shared memory; products with the fp32 state S or its
// gradient dS use bf16 MMAs, S split into high and low bf16 parts for fp16 inputs (SPLIT). MMA_EMULATION (the CPU
// emulator in tests/FusedKernelEmulator) swaps the PTX for software.
#ifndef LA_MMA_COMMON_CUH
#define LA_MMA_COMMON_CUH
#include "common.cuh"
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

#endif
#endif
