using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Encoder;

/// <summary>Rotary position embedding (RoFormer, rotate-half form) on [B, H, T, D] queries or keys.</summary>
public static class Rotary
{
    /// <summary>Rotates channel pairs (i, i + D/2) of every position t by angle t·θ^(−2i/D).</summary>
    public static Tensor Apply(Tensor x, double theta = 10000)
    {
        using var scope = NewDisposeScope();
        long t = x.shape[^2], d = x.shape[^1], half = d / 2;
        var invFreq = (arange(0, half, dtype: ScalarType.Float32, device: x.device) * (-2.0 * Math.Log(theta) / d)).exp();
        var angles = arange(t, dtype: ScalarType.Float32, device: x.device).unsqueeze(1) * invFreq.unsqueeze(0); // [T, D/2]
        var cos = angles.cos().to(x.dtype);
        var sin = angles.sin().to(x.dtype);
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        return cat(new[] { x1 * cos - x2 * sin, x2 * cos + x1 * sin }, -1).MoveToOuterDisposeScope();
    }
}
