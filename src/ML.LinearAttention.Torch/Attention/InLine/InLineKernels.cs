using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;

namespace Microsoft.ML.LinearAttention.Attention.InLine;

/// <summary>
/// InLine attention, injective linear attention (Han et al., NeurIPS 2024, "Bridging the Divide";
/// <c>LeapLabTHU/InLine</c> <c>InLineAttention</c>). Normalization by subtraction instead of division:
/// <code>o_i = s/n · φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ + (1 − s · φ(q_i) · mean_j φ(k_j)) · mean_j v_j</code>
/// i.e. weights w_ij = s·φ(q_i)·φ(k_j)/n + (1 − s·φ(q_i)·k̄)/n that always sum to one (s = Dk^−½), which makes the
/// map from queries to attention distributions injective. Means and n run over real tokens only.
/// Shapes: q, k [B, H, T, Dk] (already feature-mapped; φ may be the identity, so values may be negative),
/// v [B, H, T, Dv], mask [B, T] bool or null; result [B, H, T, Dv], zero at padded positions.
/// </summary>
public static class InLineKernels
{
    /// <summary>Names of the kernel functions φ of the reference code.</summary>
    public static readonly IReadOnlyList<string> FeatureMaps = new[] { "identity", "relu", "leakyrelu", "exp" };

    /// <summary>Applies φ: identity, relu, leakyrelu (slope 0.01) or exp (exp(0.2·x), the reference's exp_kernel).</summary>
    public static Tensor FeatureMap(string name, Tensor x) => name.ToLowerInvariant() switch
    {
        "identity" => x.alias(),
        "relu" => nn.functional.relu(x),
        "leakyrelu" => nn.functional.leaky_relu(x, 0.01),
        "exp" => (x * 0.2).exp(),
        _ => throw new ArgumentException($"Unknown InLine feature map '{name}'. Known maps: {string.Join(", ", FeatureMaps)}.", nameof(name)),
    };

    /// <summary>Fast form, O(T·Dk·Dv). <paramref name="scale"/> ≤ 0 means Dk^−½.</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, double scale = 0)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        double s = scale > 0 ? scale : 1.0 / Math.Sqrt(q.shape[3]);
        var n = Heads.ValidCount(keyPaddingMask, k.shape[2], q.dtype, q.device);
        k = Heads.ZeroPadded(k, keyPaddingMask);
        v = Heads.ZeroPadded(v, keyPaddingMask);
        var state = k.transpose(-1, -2).matmul(v * s / n);                             // [B, H, Dk, Dv]
        var kMean = k.sum(2, keepdim: true) / n;
        var vMean = v.sum(2, keepdim: true) / n;
        var o = q.matmul(state) + (1 - q.matmul(kMean.transpose(-1, -2)) * s) * vMean;
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin: the explicit T×T weights w_ij, fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, double scale = 0)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        long t = k.shape[2];
        double s = scale > 0 ? scale : 1.0 / Math.Sqrt(q.shape[3]);
        var keyMask = keyPaddingMask is null ? torch.ones(1, 1, 1, t) : keyPaddingMask.to(ScalarType.Float32).view(-1, 1, 1, t);
        var n = keyMask.sum(-1, keepdim: true).clamp_min(1);
        var a = q.to(ScalarType.Float32).matmul(k.to(ScalarType.Float32).transpose(-1, -2)) * keyMask;   // [B, H, T, T]
        var kBarScore = a.sum(-1, keepdim: true) / n;                                  // q_i · k̄
        var w = (a * s / n + (1 - s * kBarScore) / n) * keyMask;
        var o = w.matmul(v.to(ScalarType.Float32));
        return Heads.ZeroPadded(o.to(dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
