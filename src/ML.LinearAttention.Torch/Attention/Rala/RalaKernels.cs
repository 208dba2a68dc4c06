using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Rala;

/// <summary>
/// RALA, rank-augmented linear attention ("Breaking the Low-Rank Dilemma of Linear Attention", Fan et al., CVPR 2025,
/// arXiv 2411.07635; <c>flash_bla/layers/rala.py</c>). Query-guided key reweighting, then decoupled normalized linear
/// attention (RoPE in the numerator only):
/// <code>
/// α_j = softmax_j(s · mean_i q_i · k_j)          (over real keys; s = Dk^−½)
/// k̃_j = k_j · α_j · n
/// o_i = RoPE(q_i)ᵀ Σ_j RoPE(k̃_j) v_jᵀ / n ÷ (q_i · mean_j k̃_j + eps)
/// </code>
/// Shapes: q, k [B, H, T, Dk] (feature-mapped, elu+1), v [B, H, T, Dv], RoPE tables [T, Dk] or null,
/// mask [B, T] bool or null; result [B, H, T, Dv], zero at padded positions. Means, n and α use real tokens only.
/// </summary>
public static class RalaKernels
{
    /// <summary>Fast form, O(T·Dk·Dv). <paramref name="scale"/> ≤ 0 means Dk^−½.</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, Tensor? ropeCos = null, Tensor? ropeSin = null,
        double scale = 0, double eps = DecoupledLinearKernels.DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        double s = scale > 0 ? scale : 1.0 / Math.Sqrt(q.shape[3]);
        long t = k.shape[2];
        var n = Heads.ValidCount(keyPaddingMask, t, ScalarType.Float32, q.device);
        var qMean = Heads.ZeroPadded(q, keyPaddingMask).to(ScalarType.Float32).sum(2, keepdim: true) / n;   // [B, H, 1, Dk]
        var logits = qMean.matmul(k.to(ScalarType.Float32).transpose(-1, -2)) * s;                          // [B, H, 1, T]
        if (keyPaddingMask is not null) logits = logits.masked_fill(keyPaddingMask.logical_not().view(-1, 1, 1, t), double.NegativeInfinity);
        var weight = (logits.softmax(-1) * n).transpose(-1, -2).to(k.dtype);                                // [B, H, T, 1]
        var o = DecoupledLinearKernels.Bidirectional(q, k * weight, v, keyPaddingMask, ropeCos, ropeSin, eps);
        return o.MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin: the reweighting written out as exp / sum over real keys, then explicit T×T weights, fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, Tensor? ropeCos = null, Tensor? ropeSin = null,
        double scale = 0, double eps = DecoupledLinearKernels.DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        double s = scale > 0 ? scale : 1.0 / Math.Sqrt(q.shape[3]);
        long t = k.shape[2];
        var qf = q.to(ScalarType.Float32);
        var kf = k.to(ScalarType.Float32);
        var keyMask = keyPaddingMask is null ? torch.ones(1, 1, t, 1) : keyPaddingMask.to(ScalarType.Float32).view(-1, 1, t, 1);
        var n = keyMask.sum(2, keepdim: true).clamp_min(1);                                                  // [B, 1, 1, 1]
        var qMean = (qf * keyMask).sum(2, keepdim: true) / n;
        var score = (kf * qMean).sum(-1, keepdim: true) * s;                                                 // [B, H, T, 1]
        var e = (score - score.max()).exp() * keyMask;
        var alpha = e / e.sum(2, keepdim: true);
        var o = DecoupledLinearKernels.BidirectionalNaive(qf, kf * alpha * n, v.to(ScalarType.Float32), keyPaddingMask, ropeCos, ropeSin, eps);
        return o.to(dtype).MoveToOuterDisposeScope();
    }
}
