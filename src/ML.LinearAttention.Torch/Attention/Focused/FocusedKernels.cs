using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Focused;

/// <summary>
/// Focused linear attention (FLatten Transformer, Han et al., ICCV 2023; <c>flash_bla/layers/focused_la.py</c>).
/// The focused map sharpens a ReLU kernel while keeping its norm:
/// <code>
/// x' = (ReLU(x) + 1e-6) / softplus(s)            (s: learned per channel, initialised to 0)
/// φ_p(x) = x'^p / ‖x'^p‖ · ‖x'‖                   (norms over all C = H·D channels of a token, p = focusing factor)
/// </code>
/// followed by normalized bidirectional linear attention o_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ ÷ (φ(q_i)·Σ_j φ(k_j) + eps·n).
/// Shapes: q, k [B, H, T, D] (raw projections), v [B, H, T, Dv], scale [H·D], mask [B, T] bool or null;
/// result [B, H, T, Dv], zero at padded positions. The map runs in fp32.
/// </summary>
public static class FocusedKernels
{
    public const double DefaultEps = 1e-6;

    /// <summary>The focused feature map on [B, H, T, D] with the norms taken over heads and channels together.</summary>
    public static Tensor FeatureMap(Tensor x, Tensor scale, double focusingFactor)
    {
        Check(x, scale, focusingFactor);
        using var scope = NewDisposeScope();
        long h = x.shape[1], d = x.shape[3];
        var s = nn.functional.softplus(scale.to(ScalarType.Float32)).view(1, h, 1, d);
        var y = (nn.functional.relu(x.to(ScalarType.Float32)) + 1e-6) / s;
        var dims = new long[] { 1, 3 };
        var norm = y.square().sum(dims, keepdim: true).sqrt();
        var yp = y.pow(focusingFactor);
        var phi = yp / yp.square().sum(dims, keepdim: true).sqrt() * norm;
        return phi.to(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="FeatureMap"/>: merged [B, T, C] layout, vector norms per token, fp32.</summary>
    public static Tensor FeatureMapNaive(Tensor x, Tensor scale, double focusingFactor)
    {
        Check(x, scale, focusingFactor);
        using var scope = NewDisposeScope();
        long h = x.shape[1];
        var merged = Heads.Merge(x.to(ScalarType.Float32));                                  // [B, T, C]
        var y = (merged.clamp_min(0) + 1e-6) / (scale.to(ScalarType.Float32).exp() + 1).log();
        var yp = (y.log() * focusingFactor).exp();
        var phi = yp * (y.norm(-1, true) / yp.norm(-1, true));
        return Heads.Split(phi, (int)h).to(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Fast form: focused maps + the O(T·D·Dv) normalized bidirectional kernel.</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor scale, Tensor? keyPaddingMask, double focusingFactor = 3, double eps = DefaultEps)
        => LinearAttentionKernels.Bidirectional(FeatureMap(q, scale, focusingFactor), FeatureMap(k, scale, focusingFactor), v, keyPaddingMask, true, eps);

    /// <summary>Naive twin: naive maps + explicit T×T weights, fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor scale, Tensor? keyPaddingMask, double focusingFactor = 3, double eps = DefaultEps)
        => LinearAttentionKernels.BidirectionalNaive(FeatureMapNaive(q, scale, focusingFactor), FeatureMapNaive(k, scale, focusingFactor), v, keyPaddingMask, true, eps);

    private static void Check(Tensor x, Tensor scale, double focusingFactor)
    {
        if (x.dim() != 4) throw new ArgumentException($"Focused feature map input must be [B, H, T, D]; got {Heads.Shape(x)}.");
        if (scale.numel() != x.shape[1] * x.shape[3])
            throw new ArgumentException($"Focused feature map scale must have H·D = {x.shape[1] * x.shape[3]} elements; got {Heads.Shape(scale)}.");
        if (!(focusingFactor >= 1))
            throw new ArgumentOutOfRangeException(nameof(focusingFactor), focusingFactor, "The focusing factor must be at least 1 (reference: 3).");
    }
}
