using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Lina;

/// <summary>
/// LINA's KV-gated bidirectional linear attention (Wang et al., arXiv 2601.22630; <c>techmonsterwang/LINA</c>
/// <c>LinearAttentionDecoder</c>): data-independent learned weights per head and position scale the keys and values
/// before the division-normalized linear attention, giving token-wise memory weights like a forget gate:
/// <code>o_i = φ(q_i)ᵀ Σ_j g^k_j φ(k_j) (g^v_j v_j)ᵀ / n ÷ (φ(q_i) · mean_j g^k_j φ(k_j) + eps)</code>
/// Shapes: q, k [B, H, T, D] (feature-mapped, ReLU + 1e-6), v [B, H, T, Dv], keyGate / valueGate [B or 1, H, T]
/// (scalar per token) or null, mask [B, T] bool or null; result [B, H, T, Dv] in v's dtype, zero at padded
/// positions. Computed in fp32 as in the reference (fp32_attention = True).
/// </summary>
public static class LinaKernels
{
    public const double DefaultEps = 1e-6;

    /// <summary>Fast form, O(T·D·Dv), fp32.</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyGate, Tensor? valueGate, Tensor? keyPaddingMask, double eps = DefaultEps)
    {
        Check(q, k, v, keyGate, valueGate, keyPaddingMask);
        using var scope = NewDisposeScope();
        var qf = q.to(ScalarType.Float32);
        var kf = k.to(ScalarType.Float32);
        var vf = v.to(ScalarType.Float32);
        if (keyGate is not null) kf = kf * keyGate.to(ScalarType.Float32).unsqueeze(-1);
        if (valueGate is not null) vf = vf * valueGate.to(ScalarType.Float32).unsqueeze(-1);
        kf = Heads.ZeroPadded(kf, keyPaddingMask);
        var n = Heads.ValidCount(keyPaddingMask, k.shape[2], ScalarType.Float32, q.device);
        var state = kf.transpose(-1, -2).matmul(vf / n);                                      // [B, H, D, Dv]
        var z = qf.matmul((kf.sum(2, keepdim: true) / n).transpose(-1, -2));                  // [B, H, T, 1]
        var o = qf.matmul(state) / (z + eps);
        return Heads.ZeroPadded(o.to(v.dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin: explicit T×T gated weights, fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor? keyGate, Tensor? valueGate, Tensor? keyPaddingMask, double eps = DefaultEps)
    {
        Check(q, k, v, keyGate, valueGate, keyPaddingMask);
        using var scope = NewDisposeScope();
        long t = k.shape[2];
        var keyMask = keyPaddingMask is null ? torch.ones(1, 1, 1, t) : keyPaddingMask.to(ScalarType.Float32).view(-1, 1, 1, t);
        var n = keyMask.sum(-1, keepdim: true).clamp_min(1);
        var gk = keyGate is null ? torch.ones(1, 1, 1, t) : keyGate.to(ScalarType.Float32).unsqueeze(2);   // [B, H, 1, T]
        var gv = valueGate is null ? torch.ones(1, 1, t, 1) : valueGate.to(ScalarType.Float32).unsqueeze(-1);
        var a = q.to(ScalarType.Float32).matmul(k.to(ScalarType.Float32).transpose(-1, -2)) * gk * keyMask;
        var w = a / n / (a.sum(-1, keepdim: true) / n + eps);
        var o = w.matmul(v.to(ScalarType.Float32) * gv);
        return Heads.ZeroPadded(o.to(v.dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    private static void Check(Tensor q, Tensor k, Tensor v, Tensor? keyGate, Tensor? valueGate, Tensor? keyPaddingMask)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        foreach (var (gate, name) in new[] { (keyGate, "keyGate"), (valueGate, "valueGate") })
        {
            if (gate is null) continue;
            if (gate.dim() != 3 || (gate.shape[0] != 1 && gate.shape[0] != k.shape[0]) || gate.shape[1] != k.shape[1] || gate.shape[2] != k.shape[2])
                throw new ArgumentException($"{name} must be [B or 1, H, T] = [{k.shape[0]}, {k.shape[1]}, {k.shape[2]}]; got {Heads.Shape(gate)}.");
        }
    }
}
