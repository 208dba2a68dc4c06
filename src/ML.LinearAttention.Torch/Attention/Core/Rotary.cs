using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>
/// Rotary position embedding (RoPE), shared by the mechanisms that rotate q and k. Two channel layouts exist in the
/// reference code and both are kept, chosen explicitly:
/// <list type="bullet">
/// <item><see cref="Apply"/>: rotate-half (fla's <c>RotaryEmbedding</c> default, Llama/Qwen; used by RetNet and
/// Liger): channel i pairs with i + D/2, θ_i = base^(−2i/D), positions t = 0 … T−1.</item>
/// <item><see cref="ApplyTables"/> with <see cref="RotaryLayout.Interleaved"/>: "rotate every two" (MALA / NaLaFormer /
/// RALA / LinA reference code): channels (2i, 2i+1) pair up; the tables come from <c>VisionKit.Rope.Tables</c>, whose
/// frequency schedule (10000^−linspace(0, 1, ·)) and 2D grid layout are those of the vision papers.</item>
/// </list>
/// Angles and the rotation are computed in fp32 and the result is returned in x's dtype. Right padding keeps the
/// positions of real tokens, so no mask is needed.
/// </summary>
public static class Rotary
{
    /// <summary>
    /// Rotate-half RoPE of x [B, H, T, D] (D even) by position t·θ_i, θ_i = <paramref name="theta"/>^(−2i/D) → same shape
    /// and dtype.
    /// </summary>
    public static Tensor Apply(Tensor x, double theta = 10000.0)
    {
        long t = x.shape[2], d = x.shape[3], half = d / 2;
        if (d % 2 != 0) throw new ArgumentException($"RoPE needs an even head dimension; got {d}. Change the head count or switch rotary embedding off in the options.");
        if (!(theta > 0)) throw new ArgumentOutOfRangeException(nameof(theta), theta, "The rotary base must be positive (10000 in Llama).");
        using var scope = NewDisposeScope();
        var invFreq = (torch.arange(0, d, 2, dtype: ScalarType.Float32, device: x.device) * (-Math.Log(theta) / d)).exp();   // [D/2]
        var angles = torch.arange(t, dtype: ScalarType.Float32, device: x.device).unsqueeze(1) * invFreq.unsqueeze(0);         // [T, D/2]
        var cos = angles.cos();
        var sin = angles.sin();
        var xf = x.to(ScalarType.Float32);
        var x1 = xf.narrow(-1, 0, half);
        var x2 = xf.narrow(-1, half, half);
        var y = torch.cat(new[] { x1 * cos - x2 * sin, x2 * cos + x1 * sin }, -1);
        return y.to(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// x·cos + rotate(x)·sin with precomputed tables [T, D] (fp32) on x [.., T, D]; <paramref name="layout"/> says which
    /// channels pair up (the tables must have been built for that layout). Computed in fp32, returned in x's dtype.
    /// </summary>
    public static Tensor ApplyTables(Tensor x, Tensor cos, Tensor sin, RotaryLayout layout)
    {
        if (cos.dim() != 2 || cos.shape[0] != x.shape[^2] || cos.shape[1] != x.shape[^1] || !cos.shape.SequenceEqual(sin.shape))
            throw new ArgumentException($"RoPE tables must be [T, D] = [{x.shape[^2]}, {x.shape[^1]}]; got cos {Heads.Shape(cos)}, sin {Heads.Shape(sin)}.");
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var rotated = layout == RotaryLayout.Interleaved ? RotateEveryTwo(xf) : RotateHalf(xf);
        return (xf * cos + rotated * sin).to(x.dtype).MoveToOuterDisposeScope();
    }

    // (-x₂, x₁) per channel pair (2i, 2i+1).
    private static Tensor RotateEveryTwo(Tensor x)
    {
        var pairs = x.unflatten(x.dim() - 1, new long[] { x.shape[^1] / 2, 2 });
        return torch.stack(new[] { -pairs.select(-1, 1), pairs.select(-1, 0) }, -1).flatten(-2);
    }

    // (-x₂, x₁) with x₁ the first and x₂ the second half of the channels.
    private static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        return torch.cat(new[] { -x.narrow(-1, half, half), x.narrow(-1, 0, half) }, -1);
    }
}

/// <summary>Which channels a rotary embedding rotates together.</summary>
public enum RotaryLayout
{
    /// <summary>Channel i with channel i + D/2 (fla / Llama "rotate_half").</summary>
    HalfSplit,
    /// <summary>Channels 2i and 2i+1 ("rotate every two", the vision papers' reference code).</summary>
    Interleaved,
}
