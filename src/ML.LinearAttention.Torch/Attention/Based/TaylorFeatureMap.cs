using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Based;

/// <summary>
/// BASED's second-order Taylor feature map (fla <c>TaylorFeatureMap</c>, HazyResearch/based <c>TaylorExp</c>):
/// φ(x) = [1, x/F^{1/4}, diag(xxᵀ)/(√F·√2), offdiag_upper(xxᵀ)/√F] for x of F dims, so that
/// φ(q)·φ(k) = 1 + q·k/√F + (q·k)²/(2F), the second-order Taylor expansion of exp(q·k/√F). The kernel is ≥ 1/2, so
/// the normalized linear form never divides by zero.
/// <para>The map squares the dimension: 1 + F + F(F+1)/2 features (153 for BASED's F = 16, 2145 for F = 64), which
/// is why BASED projects queries and keys to a small F per head.</para>
/// <para>Shapes: x [.., F] → [.., 1 + F + F(F+1)/2], in x's dtype.</para>
/// </summary>
public static class TaylorFeatureMap
{
    /// <summary>Size of φ for an input of <paramref name="featureDim"/> dims: 1 + F + F(F+1)/2.</summary>
    public static long FeatureSize(long featureDim) => 1 + featureDim + featureDim * (featureDim + 1) / 2;

    /// <summary>Applies the map over the last dimension.</summary>
    public static Tensor Map(Tensor x)
    {
        long f = x.shape[^1];
        if (f <= 0) throw new ArgumentException($"The Taylor feature map needs a non-empty last dimension; got {Heads.Shape(x)}.", nameof(x));
        using var scope = NewDisposeScope();
        double rd = Math.Sqrt(f), rrd = Math.Sqrt(rd);
        var outer = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2);                 // [.., F·F]
        var upper = torch.triu_indices(f, f, 1, device: x.device);                    // [2, F(F−1)/2], row-major like fla
        var offIndex = upper[0] * f + upper[1];
        var diagIndex = torch.arange(f, device: x.device) * (f + 1);
        var phi = torch.cat(new[]
        {
            torch.ones_like(x.narrow(-1, 0, 1)),
            x / rrd,
            outer.index_select(-1, diagIndex) / (rd * Math.Sqrt(2)),
            outer.index_select(-1, offIndex) / rd,
        }, -1);
        return phi.MoveToOuterDisposeScope();
    }

    /// <summary>The kernel φ(q)·φ(k) computed directly: 1 + s/√F + s²/(2F) with s = q·k; q [.., Tq, F], k [.., Tk, F]
    /// → [.., Tq, Tk], fp32. Used by the naive twins (no feature expansion, so it also checks <see cref="Map"/>).</summary>
    public static Tensor Kernel(Tensor q, Tensor k)
    {
        using var scope = NewDisposeScope();
        long f = q.shape[^1];
        var s = q.to(ScalarType.Float32).matmul(k.to(ScalarType.Float32).transpose(-1, -2));
        return (1 + s / Math.Sqrt(f) + s.square() / (2.0 * f)).MoveToOuterDisposeScope();
    }
}
