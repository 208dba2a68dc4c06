using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.VisionKit;

/// <summary>
/// Normalized bidirectional linear attention whose numerator sees rotated features and whose denominator sees the
/// plain ones (flash-bidirectional-linear-attention's <c>decoupled_la</c>, used by MLLA, RALA and NaLaFormer):
/// <code>o_i = RoPE(q_i)ᵀ Σ_j RoPE(k_j) v_jᵀ / n  ÷  (q_i · mean_j k_j + eps)</code>
/// over real keys j, n = true length. Shapes: q, k [B, H, T, Dk] (non-negative features), v [B, H, T, Dv],
/// rope tables [T, Dk] or null (no rotation), mask [B, T] bool or null; result [B, H, T, Dv], zero at padded positions.
/// </summary>
public static class DecoupledLinearKernels
{
    public const double DefaultEps = 1e-6;

    /// <summary>Fast form, O(T·Dk·Dv): one [Dk, Dv] state and one [Dk] key mean per head.</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, Tensor? ropeCos = null, Tensor? ropeSin = null, double eps = DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var n = Heads.ValidCount(keyPaddingMask, k.shape[2], q.dtype, q.device);
        k = Heads.ZeroPadded(k, keyPaddingMask);
        var kMean = k.sum(2, keepdim: true) / n;                                      // [B, H, 1, Dk]
        var z = q.matmul(kMean.transpose(-1, -2));                                     // [B, H, T, 1]
        var (qr, kr) = Rotate(q, k, ropeCos, ropeSin);
        var state = kr.transpose(-1, -2).matmul(v / n);                               // [B, H, Dk, Dv]
        var o = qr.matmul(state) / (z + eps);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin: explicit T×T weights w_ij = RoPE(q_i)·RoPE(k_j) / (n·(q_i·k̄ + eps)), fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, Tensor? ropeCos = null, Tensor? ropeSin = null, double eps = DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        long t = k.shape[2];
        var qf = q.to(ScalarType.Float32);
        var kf = k.to(ScalarType.Float32);
        var keyMask = keyPaddingMask is null ? torch.ones(1, 1, 1, t) : keyPaddingMask.to(ScalarType.Float32).view(-1, 1, 1, t);
        var n = keyMask.sum(-1, keepdim: true).clamp_min(1);                           // [B, 1, 1, 1]
        var (qr, kr) = Rotate(qf, kf, ropeCos, ropeSin);
        var a = qr.matmul(kr.transpose(-1, -2)) * keyMask;                             // [B, H, T, T]
        var plain = qf.matmul(kf.transpose(-1, -2)) * keyMask;
        var z = plain.sum(-1, keepdim: true) / n;
        var w = a / n / (z + eps);
        var o = w.matmul(v.to(ScalarType.Float32));
        return Heads.ZeroPadded(o.to(dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    internal static (Tensor q, Tensor k) Rotate(Tensor q, Tensor k, Tensor? cos, Tensor? sin)
    {
        if (cos is null || sin is null) return (q, k);
        return (Rope.Apply(q, cos, sin), Rope.Apply(k, cos, sin));
    }
}
