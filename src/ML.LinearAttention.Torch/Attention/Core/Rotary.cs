using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
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
        var (cos, signedSin) = HalfSplitTables(t, d, theta, x.device);
        if (x.device_type == DeviceType.CUDA && FusedKernelOptions.Current.RotaryEnabled && FusedRotary.UnavailableReason(x) is null)
            return FusedRotary.Apply(x, cos, signedSin).MoveToOuterDisposeScope();
        // (x₁cos − x₂sin, x₂cos + x₁sin) = x·(cos | cos) + roll(x, D/2)·(−sin | sin): five kernels each way instead of
        // nine, the same fp32 products and sums. x goes to fp32 first so that its gradient is summed in fp32 and rounded once.
        var xf = x.to(ScalarType.Float32);
        var y = xf * cos + xf.roll(half, -1) * signedSin;
        return y.to(x.dtype).MoveToOuterDisposeScope();
    }

    private static readonly object TableGate = new();
    private static readonly Dictionary<(long D, double Theta, string Device), (Tensor Cos, Tensor SignedSin)> Tables = new();

    /// <summary>
    /// fp32 tables [T, D] of <see cref="Apply"/>: cos(t·θ_i) twice, and −sin | sin, θ_i = theta^(−2i/D). Kept per head
    /// size, base and device at the longest length asked so far (the rows of a position do not depend on the length), so
    /// a training step does not rebuild them in every layer.
    /// </summary>
    internal static (Tensor Cos, Tensor SignedSin) HalfSplitTables(long t, long d, double theta, Device device)
    {
        var key = (d, theta, device.ToString());
        lock (TableGate)
        {
            if (!Tables.TryGetValue(key, out var tables) || tables.Cos.shape[0] < t)
            {
                using (NewDisposeScope())
                {
                    long rows = Math.Max(t, tables.Cos is null ? 0 : 2 * tables.Cos.shape[0]);
                    var invFreq = (torch.arange(0, d, 2, dtype: ScalarType.Float32, device: device) * (-Math.Log(theta) / d)).exp();   // [D/2]
                    var angles = torch.arange(rows, dtype: ScalarType.Float32, device: device).unsqueeze(1) * invFreq.unsqueeze(0);   // [T, D/2]
                    var cos = angles.cos();
                    var sin = angles.sin();
                    var fresh = (torch.cat(new[] { cos, cos }, -1).DetachFromDisposeScope(), torch.cat(new[] { -sin, sin }, -1).DetachFromDisposeScope());
                    tables.Cos?.Dispose();
                    tables.SignedSin?.Dispose();
                    Tables[key] = tables = fresh;
                }
            }
            return (tables.Cos.narrow(0, 0, t), tables.SignedSin.narrow(0, 0, t));
        }
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
