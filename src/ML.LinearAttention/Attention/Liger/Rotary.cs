using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Liger;

/// <summary>
/// Rotary position embedding, rotate-half layout (fla <c>RotaryEmbedding</c> default, Llama/Qwen):
/// x·cos(tθ) + rotate_half(x)·sin(tθ) with θ_i = base^(−2i/D) and positions t = 0 … T−1 (right padding keeps them).
/// </summary>
public static class Rotary
{
    /// <summary>x [B, H, T, D] (D even) → same shape and dtype; angles in fp32.</summary>
    public static Tensor Apply(Tensor x, double theta)
    {
        long t = x.shape[2], d = x.shape[3];
        if (d % 2 != 0) throw new ArgumentException($"Rotary embedding needs an even head dimension; got {d}. Set RopeTheta = 0 to disable it.");
        if (!(theta > 0)) throw new ArgumentOutOfRangeException(nameof(theta), theta, "The rotary base must be positive (10000 in Llama).");
        using var scope = NewDisposeScope();
        var invFreq = (torch.arange(0, d, 2, dtype: ScalarType.Float32, device: x.device) * (-Math.Log(theta) / d)).exp();   // [D/2]
        var angles = torch.arange(t, dtype: ScalarType.Float32, device: x.device).unsqueeze(1) * invFreq.unsqueeze(0);         // [T, D/2]
        var full = torch.cat(new[] { angles, angles }, -1);                                                                     // [T, D]
        var xf = x.to(ScalarType.Float32);
        var rotated = torch.cat(new[] { -xf.narrow(-1, d / 2, d / 2), xf.narrow(-1, 0, d / 2) }, -1);
        return (xf * full.cos() + rotated * full.sin()).to(x.dtype).MoveToOuterDisposeScope();
    }
}
