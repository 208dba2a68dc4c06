// Tensor-core tile movement (MMA = 1): token-tile loaders (LOAD_ROWS, LOAD_COLS), the software pipeline of the
// bidirectional kernels (Rows: the next tile fetched into registers before the current tile's MMAs), 1/den and
// column sums, value maps, φ' at the epilogue, and the Hedgehog switches (HH = 1: q and k are x before the
// projection, φ computed in the loaders; HH_SMEM, HH_MINB, MMA_BOUNDS, STAGE_PHI, FINISH_PHI).
#ifndef LA_MMA_TILES_CUH
#define LA_MMA_TILES_CUH
#include "mma_common.cuh"
#if MMA
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
// loaders map each x tile to φ with hh_phi_tile (hedgehog_projection_helpers.cuh, included between these helpers and the
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
#endif
