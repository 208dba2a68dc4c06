using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Mala;

/// <summary>
/// MALA, Magnitude-Aware Linear Attention (Fan et al., ICCV 2025; <c>qhfan/MALA</c> <c>AddLinearAttention</c>).
/// Inputs are feature-mapped (φ = elu+1, non-negative): q, k [B, H, T, Dk], v [B, H, T, Dv], optional RoPE tables
/// [T, Dk], mask [B, T] bool or null; result [B, H, T, Dv], zero at padded positions.
/// <code>
/// z_i = s · q_i · mean_j k_j                      (before RoPE, as in the original; s = Dk^−½)
/// o_i = RoPE(q_i)ᵀ Σ_j RoPE(k_j) v_jᵀ · s/n · (1 + 1/(z_i + eps)) − z_i · mean_j v_j
/// </code>
/// The implied weights w_ij = (1 + 1/z_i)·s·q̃_i·k̃_j/n − z_i/n sum to one (exactly without RoPE) and may be negative: scaling and offset
/// instead of division keep the query magnitude in the output. Means and n run over real tokens only.
/// </summary>
public static class MalaKernels
{
    public const double DefaultEps = 1e-6;

    /// <summary>Fast form, O(T·Dk·Dv). <paramref name="scale"/> ≤ 0 means Dk^−½.</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, Tensor? ropeCos = null, Tensor? ropeSin = null,
        double scale = 0, double eps = DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        double s = scale > 0 ? scale : 1.0 / Math.Sqrt(q.shape[3]);
        var n = Heads.ValidCount(keyPaddingMask, k.shape[2], q.dtype, q.device);
        k = Heads.ZeroPadded(k, keyPaddingMask);
        var vz = Heads.ZeroPadded(v, keyPaddingMask);
        var z = q.matmul((k.sum(2, keepdim: true) / n).transpose(-1, -2)) * s;         // [B, H, T, 1]
        var vMean = vz.sum(2, keepdim: true) / n;                                        // [B, H, 1, Dv]
        var (qr, kr) = DecoupledLinearKernels.Rotate(q, k, ropeCos, ropeSin);
        var state = kr.transpose(-1, -2).matmul(vz * s / n);                               // [B, H, Dk, Dv]
        var o = qr.matmul(state) * (1 + 1 / (z + eps)) - z * vMean;
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin: the explicit T×T weights w_ij, fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, Tensor? ropeCos = null, Tensor? ropeSin = null,
        double scale = 0, double eps = DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        long t = k.shape[2];
        double s = scale > 0 ? scale : 1.0 / Math.Sqrt(q.shape[3]);
        var qf = q.to(ScalarType.Float32);
        var kf = k.to(ScalarType.Float32);
        var keyMask = keyPaddingMask is null ? torch.ones(1, 1, 1, t) : keyPaddingMask.to(ScalarType.Float32).view(-1, 1, 1, t);
        var n = keyMask.sum(-1, keepdim: true).clamp_min(1);
        var z = (qf.matmul(kf.transpose(-1, -2)) * keyMask).sum(-1, keepdim: true) * s / n;
        var (qr, kr) = DecoupledLinearKernels.Rotate(qf, kf, ropeCos, ropeSin);
        var w = (qr.matmul(kr.transpose(-1, -2)) * s / n * (1 + 1 / (z + eps)) - z / n) * keyMask;
        var o = w.matmul(v.to(ScalarType.Float32));
        return Heads.ZeroPadded(o.to(dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
