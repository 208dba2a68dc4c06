using Microsoft.ML.LinearAttention.Attention.Decay;
using Microsoft.ML.LinearAttention.Attention.SlidingWindow;
using Microsoft.ML.LinearAttention.Attention.Softmax;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Liger;

/// <summary>
/// Liger Attention (Lan et al., ICML 2025; <c>fla-org/distillation-fla: liger/models/liger_gla/modeling_liger_gla.py</c>):
/// an intra-layer hybrid o = 0.5·softmax-attention(q_rope, k_rope, v) + 0.5·GLA(φq, φk, v, g), where Liger builds the
/// GLA inputs from the pretrained projections with no new parameters: φ = softmax over the head dim, log-decay
/// g = logsigmoid(k)/16 per channel (<see cref="Gate"/>).
/// <para>Shapes: q/k [B, H, T, D] (rotated, for the softmax branch), fq/fk [B, H, T, Dk] (feature-mapped),
/// logDecay [B, H, T, Dk], v [B, H, T, Dv], keyPaddingMask [B, T] bool (true = real) or null; result
/// [B, H, T, Dv], zero at padded positions.</para>
/// <para>Window: 0 = full softmax (the stored code's <c>window_size=None</c>); &gt; 0 = sliding window (the paper),
/// bidirectional |i−j| ≤ window or causal 0 ≤ i−j &lt; window (flash-attn's <c>(window−1, 0)</c>).</para>
/// </summary>
public static class LigerKernels
{
    /// <summary>Liger's <c>gate_logit_normalizer</c>.</summary>
    public const double GateNormalizer = 16;

    /// <summary>Liger's feature map: softmax over the head dimension, computed in fp32.</summary>
    public static Tensor FeatureMap(Tensor x) => x.to(ScalarType.Float32).softmax(-1).to(x.dtype);

    /// <summary>Liger's gate from the (unrotated) keys: log α = logsigmoid(k)/normalizer, fp32, ≤ 0.</summary>
    public static Tensor Gate(Tensor k, double normalizer = GateNormalizer)
        => nn.functional.logsigmoid(k.to(ScalarType.Float32)) / normalizer;

    /// <summary>Fast form: banded sliding-window (or SDPA full) softmax plus the shared chunkwise GLA kernel of
    /// <see cref="DecayKernels"/> with Liger's unscaled queries (bidirectional: two scans sharing Liger's gates).</summary>
    public static Tensor Attention(Tensor q, Tensor k, Tensor fq, Tensor fk, Tensor logDecay, Tensor v, Tensor? keyPaddingMask,
        int window, bool causal = false, int chunk = DecayKernels.DefaultChunk)
    {
        CheckWindow(window);
        using var scope = NewDisposeScope();
        var soft = window > 0
            ? SlidingWindowKernels.Attention(q, k, v, keyPaddingMask, window, causal)
            : SoftmaxKernels.Attention(q, k, v, keyPaddingMask, causal);
        var gla = causal
            ? DecayKernels.Causal(fq, fk, v, logDecay, keyPaddingMask, scale: 1.0, chunk)
            : DecayKernels.Bidirectional(fq, fk, v, logDecay, logDecay, keyPaddingMask, scale: 1.0, chunk);
        return (0.5 * soft + 0.5 * gla).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin: dense masked softmax plus the explicit GLA decay products, fp32.</summary>
    public static Tensor AttentionNaive(Tensor q, Tensor k, Tensor fq, Tensor fk, Tensor logDecay, Tensor v, Tensor? keyPaddingMask,
        int window, bool causal = false)
    {
        CheckWindow(window);
        using var scope = NewDisposeScope();
        var soft = SoftmaxKernels.AttentionNaive(q, k, v, keyPaddingMask, causal, window);
        var gla = LigerGlaKernels.Naive(fq, fk, v, logDecay, keyPaddingMask, causal);
        return (0.5 * soft + 0.5 * gla).MoveToOuterDisposeScope();
    }

    private static void CheckWindow(int window)
    {
        if (window < 0)
            throw new ArgumentOutOfRangeException(nameof(window), window, "Liger window must be 0 (full softmax) or positive (sliding window).");
    }
}
