using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.EfficientVit;

/// <summary>
/// EfficientViT's ReLU linear attention (Cai et al., ICCV 2023; timm <c>efficientvit_mit.py</c> <c>LiteMLA._attn</c>):
/// <code>o_i = ReLU(q_i)ᵀ Σ_j ReLU(k_j) v_jᵀ ÷ (ReLU(q_i) · Σ_j ReLU(k_j) + eps)</code>
/// computed in fp32 (the reference disables autocast) with v padded by a column of ones, so one pair of matmuls
/// yields numerator and denominator. Sums (not means) over real keys, eps = 1e-5 as in the reference.
/// Shapes: q, k [B, H, T, Dk] (already ReLU-mapped), v [B, H, T, Dv], mask [B, T] bool or null; result
/// [B, H, T, Dv] in v's dtype, zero at padded positions.
/// </summary>
public static class EfficientVitKernels
{
    public const double DefaultEps = 1e-5;

    /// <summary>Fast form, O(T·Dk·Dv), fp32.</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, double eps = DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var dtype = v.dtype;
        var qf = q.to(ScalarType.Float32);
        var kf = Heads.ZeroPadded(k, keyPaddingMask).to(ScalarType.Float32);
        var vf = v.to(ScalarType.Float32);
        var v1 = torch.cat(new[] { vf, torch.ones_like(vf.narrow(-1, 0, 1)) }, -1);
        var out1 = qf.matmul(kf.transpose(-1, -2).matmul(v1));                          // [B, H, T, Dv+1]
        long dv = v.shape[3];
        var o = out1.narrow(-1, 0, dv) / (out1.narrow(-1, dv, 1) + eps);
        return Heads.ZeroPadded(o.to(dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin: explicit T×T scores a_ij = q_i·k_j over real keys, row-normalized, fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, double eps = DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        long t = k.shape[2];
        var a = q.to(ScalarType.Float32).matmul(k.to(ScalarType.Float32).transpose(-1, -2));
        if (keyPaddingMask is not null) a = a * keyPaddingMask.to(ScalarType.Float32).view(-1, 1, 1, t);
        var o = a.matmul(v.to(ScalarType.Float32)) / (a.sum(-1, keepdim: true) + eps);
        return Heads.ZeroPadded(o.to(v.dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
