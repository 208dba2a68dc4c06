// Shared prelude of every fused kernel module: the input type in_t (IN_T: 0 fp32, 1 bf16, 2 fp16) with its
// conversions ldx/stx (no CUDA headers: bit operations and PTX cvt), the feature map φ and φ' (FMAP: 0 identity,
// 1 relu, 2 elu+1), and the fp32 register-blocked tile product mm of the CUDA-core kernels.
// Shape macros come as NVRTC -D options (FusedModuleCache.Options): D, DV (head dims), TT (token tile), PD, PDV
// (D and DV rounded up to 16), LDT (TT + 4: row stride of transposed tiles), MMA (1: tensor-core kernels too).
#ifndef LA_COMMON_CUH
#define LA_COMMON_CUH
typedef unsigned short u16;
typedef unsigned char u8;
#define NT 256

#if IN_T == 0
typedef float in_t;
__device__ __forceinline__ float ldx(in_t x) { return x; }
__device__ __forceinline__ in_t stx(float f) { return f; }
#elif IN_T == 1
typedef u16 in_t;
__device__ __forceinline__ float ldx(in_t x) { return __uint_as_float(((unsigned)x) << 16); }
__device__ __forceinline__ in_t stx(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);   // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                          // round to nearest even
    return (u16)(u >> 16);
}
#else
typedef u16 in_t;
__device__ __forceinline__ float ldx(in_t x) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x)); return f; }
__device__ __forceinline__ in_t stx(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
#endif

__device__ __forceinline__ float phi(float x) {
#if FMAP == 1
    return fmaxf(x, 0.f);
#elif FMAP == 2
    return x > 0.f ? x + 1.f : expf(x);
#else
    return x;
#endif
}

// φ'(x) from p = φ(x): relu: p > 0; elu+1: 1 for x > 0 (p > 1), else exp(x) = p; identity: 1.
__device__ __forceinline__ float dphi(float p) {
#if FMAP == 1
    return p > 0.f ? 1.f : 0.f;
#elif FMAP == 2
    return p > 1.f ? 1.f : p;
#else
    return 1.f;
#endif
}

// acc[r][c] += Σ_k A[k·lda + m]·B[k·ldb + n], m = ty·RM + r, n = tx·RN + c (padded columns are read, never written).
template <int M, int N, int K>
__device__ __forceinline__ void mm(const float* __restrict__ A, int lda, const float* __restrict__ B, int ldb,
                                   float (&acc)[(M + 15) / 16][(N + 15) / 16]) {
    constexpr int RM = (M + 15) / 16, RN = (N + 15) / 16;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const float* a0 = A + ty * RM;
    const float* b0 = B + tx * RN;
#pragma unroll 4
    for (int k = 0; k < K; ++k) {
        float a[RM], b[RN];
        if constexpr (RM % 4 == 0) {
#pragma unroll
            for (int r = 0; r < RM; r += 4) { float4 x = *(const float4*)(a0 + k * lda + r); a[r] = x.x; a[r + 1] = x.y; a[r + 2] = x.z; a[r + 3] = x.w; }
        } else {
#pragma unroll
            for (int r = 0; r < RM; ++r) a[r] = a0[k * lda + r];
        }
        if constexpr (RN % 4 == 0) {
#pragma unroll
            for (int c = 0; c < RN; c += 4) { float4 x = *(const float4*)(b0 + k * ldb + c); b[c] = x.x; b[c + 1] = x.y; b[c + 2] = x.z; b[c + 3] = x.w; }
        } else {
#pragma unroll
            for (int c = 0; c < RN; ++c) b[c] = b0[k * ldb + c];
        }
#pragma unroll
        for (int r = 0; r < RM; ++r)
#pragma unroll
            for (int c = 0; c < RN; ++c) acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
    }
}

template <int M, int N>
__device__ __forceinline__ void zero(float (&acc)[(M + 15) / 16][(N + 15) / 16]) {
#pragma unroll
    for (int r = 0; r < (M + 15) / 16; ++r)
#pragma unroll
        for (int c = 0; c < (N + 15) / 16; ++c) acc[r][c] = 0.f;
}

#define RTT ((TT + 15) / 16)
#define RD ((D + 15) / 16)
#define RDV ((DV + 15) / 16)

__device__ __forceinline__ bool real_token(const u8* mask, int b, int t, int T) {
    return t < T && (mask == nullptr || mask[(size_t)b * T + t] != 0);
}
#endif
