using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.SlidingWindow;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Based;

/// <summary>
/// BASED (Arora et al. 2024; fla <c>BasedLinearAttention</c>): normalized linear attention with the second-order
/// <see cref="TaylorFeatureMap"/>, optionally plus sliding-window softmax.
/// <para>Shapes: qf/kf [B, H, T, F] are the small feature projections (F = 16 in BASED) that the Taylor map
/// expands; q/k [B, H, T, D] are the softmax branch's queries and keys; v [B, H, T, Dv]; keyPaddingMask [B, T] bool
/// (true = real) or null; result [B, H, T, Dv], zero at padded positions.</para>
/// <para>Linear branch: o_i = Σ_j κ(q_i, k_j) v_j / Σ_j κ(q_i, k_j), κ = 1 + q·k/√F + (q·k)²/(2F), over real keys
/// (j ≤ i when causal) — fla's <c>forward_reference</c> (normalize=True, scale=1). The eps of the reference
/// (1e-12 on the sum) is immaterial since κ ≥ 1/2.</para>
/// </summary>
public static class BasedKernels
{
    // ---- Taylor linear attention ----

    /// <summary>Fast Taylor linear attention: φ = <see cref="TaylorFeatureMap.Map"/> then the O(T) bidirectional
    /// state or the causal chunkwise form of <see cref="LinearAttentionKernels"/> (chunk <paramref name="chunk"/>).</summary>
    public static Tensor Linear(Tensor qf, Tensor kf, Tensor v, Tensor? keyPaddingMask, bool causal = false, int chunk = LinearAttentionKernels.DefaultChunk)
    {
        Heads.CheckQkv(qf, kf, v, keyPaddingMask);
        CheckFeatureDims(qf, kf);
        using var scope = NewDisposeScope();
        var pq = TaylorFeatureMap.Map(qf);
        var pk = TaylorFeatureMap.Map(kf);
        var o = causal
            ? LinearAttentionKernels.Causal(pq, pk, v, keyPaddingMask, normalize: true, chunk: chunk)
            : LinearAttentionKernels.Bidirectional(pq, pk, v, keyPaddingMask, normalize: true);
        return o.MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Linear"/>: the [T, T] kernel κ from dot products (no feature expansion), fp32.</summary>
    public static Tensor LinearNaive(Tensor qf, Tensor kf, Tensor v, Tensor? keyPaddingMask, bool causal = false)
    {
        Heads.CheckQkv(qf, kf, v, keyPaddingMask);
        CheckFeatureDims(qf, kf);
        using var scope = NewDisposeScope();
        long t = kf.shape[2];
        var a = TaylorFeatureMap.Kernel(qf, kf);                                           // [B, H, T, T]
        if (keyPaddingMask is not null) a = a * keyPaddingMask.to(ScalarType.Float32).view(-1, 1, 1, t);
        if (causal) a = a.tril();
        var o = a.matmul(v.to(ScalarType.Float32)) / a.sum(-1, keepdim: true);
        return Heads.ZeroPadded(o.to(v.dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    // ---- BASED layer core: Taylor linear + sliding-window softmax ----

    /// <summary>
    /// Fast form of the BASED layer core: <see cref="Linear"/>(qf, kf, v) + <see cref="SlidingWindowKernels.Attention"/>(q, k, v)
    /// (banded, no [T, T] tensor); <paramref name="window"/> 0 drops the softmax branch. The two branches share v and
    /// are summed, as the two residual layers of BASED's layout would add them.
    /// </summary>
    public static Tensor Attention(Tensor qf, Tensor kf, Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, int window,
        bool causal = false, int chunk = LinearAttentionKernels.DefaultChunk, int block = SlidingWindowKernels.DefaultBlock)
    {
        CheckWindow(window);
        using var scope = NewDisposeScope();
        var o = Linear(qf, kf, v, keyPaddingMask, causal, chunk);
        if (window > 0) o = o + SlidingWindowKernels.Attention(q, k, v, keyPaddingMask, window, causal, block);
        return o.MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Attention"/>: <see cref="LinearNaive"/> + dense masked softmax, fp32.</summary>
    public static Tensor AttentionNaive(Tensor qf, Tensor kf, Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, int window, bool causal = false)
    {
        CheckWindow(window);
        using var scope = NewDisposeScope();
        var o = LinearNaive(qf, kf, v, keyPaddingMask, causal);
        if (window > 0) o = o + SlidingWindowKernels.AttentionNaive(q, k, v, keyPaddingMask, window, causal);
        return o.MoveToOuterDisposeScope();
    }

    private static void CheckWindow(int window)
    {
        if (window < 0)
            throw new ArgumentOutOfRangeException(nameof(window), window, "BASED window must be 0 (Taylor linear attention only) or positive.");
    }

    private static void CheckFeatureDims(Tensor qf, Tensor kf)
    {
        if (qf.shape[3] != kf.shape[3])
            throw new ArgumentException($"Taylor queries and keys need the same feature dim; got qf {Heads.Shape(qf)}, kf {Heads.Shape(kf)}.");
    }
}
