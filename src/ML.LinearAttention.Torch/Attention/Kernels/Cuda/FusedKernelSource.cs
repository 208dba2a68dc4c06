namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// CUDA C source of the fused bidirectional normalized linear attention kernels, compiled at run time by NVRTC with
/// the shape, dtype and feature map as macros (<see cref="FusedModuleCache"/>): D, DV (head dims), TT (token tile),
/// PD, PDV (D and DV rounded up to 16), LDT (TT + 4: row stride of transposed tiles), IN_T (0 fp32, 1 bf16, 2 fp16),
/// FMAP (0 identity, 1 relu, 2 elu+1). No CUDA headers: 16-bit floats are converted with bit operations / PTX cvt.
/// <para>Every product is C[m][n] = Σ_k A[k][m]·B[k][n] on fp32 tiles in shared memory (both operands k-major), a
/// 16×16 thread grid with a register block per thread. Work is split over (T-chunk, b·h); per-head states and their
/// gradients are reduced with fp32 atomics.</para>
/// </summary>
internal static class FusedKernelSource
{
    public const string Source = """
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
""" + FusedKernelSourceBackward.Source;
}
