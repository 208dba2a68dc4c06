using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;

namespace Microsoft.ML.LinearAttention.Attention.NaLaFormer;

/// <summary>
/// NaLaFormer's norm-aware linear attention (Meng et al., "Norm×Direction: Restoring the Missing Query Norm in Vision
/// Linear Attention", arXiv 2506.21137; official <c>NormAwareLinearAttn</c>). Queries and keys are split into norm and
/// direction; the query norm sets the power of the map (a larger ‖q‖ gives a spikier, lower-entropy distribution,
/// as in softmax), and a sign split keeps negative interactions instead of zeroing them:
/// <code>
/// φ(q) = [ReLU(q)/‖q‖, ReLU(−q)/‖q‖]^p,  p = 3·(0.5 + tanh ‖q‖)      (per token and head)
/// φ(k) = [ReLU(k³), ReLU(−k³)]
/// o_i  = RoPE(φ(q_i))ᵀ Σ_j RoPE(φ(k_j)) v_jᵀ / n ÷ (φ(q_i) · mean_j φ(k_j) + eps)
/// </code>
/// Shapes: q, k [B, H, T, D] (raw projections), v [B, H, T, Dv], RoPE tables [T, D] or null (applied to both
/// halves), mask [B, T] bool or null; result [B, H, T, Dv] in v's dtype, zero at padded positions. Everything runs in
/// fp32 as in the reference.
/// </summary>
public static class NaLaFormerKernels
{
    /// <summary>The norm-aware feature maps (φ(q), φ(k)), each [B, H, T, 2D] in fp32.</summary>
    public static (Tensor Q, Tensor K) FeatureMaps(Tensor q, Tensor k)
    {
        using var scope = NewDisposeScope();
        var qf = q.to(ScalarType.Float32);
        var k3 = k.to(ScalarType.Float32).pow(3);
        var norm = qf.square().sum(-1, keepdim: true).sqrt().clamp_min(1e-6);          // ‖q‖ per token and head
        var power = (norm.tanh() + 0.5) * 3;
        var dir = qf / norm;
        var phiQ = torch.cat(new[] { nn.functional.relu(dir).pow(power), nn.functional.relu(-dir).pow(power) }, -1);
        var phiK = torch.cat(new[] { nn.functional.relu(k3), nn.functional.relu(-k3) }, -1);
        return (phiQ.MoveToOuterDisposeScope(), phiK.MoveToOuterDisposeScope());
    }

    /// <summary>Fast form: the maps + decoupled normalized linear attention, O(T·D·Dv).</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, Tensor? ropeCos = null, Tensor? ropeSin = null,
        double eps = DecoupledLinearKernels.DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var (pq, pk) = FeatureMaps(q, k);
        var (cos, sin) = Tables(ropeCos, ropeSin);
        var o = DecoupledLinearKernels.Bidirectional(pq, pk, v.to(ScalarType.Float32), keyPaddingMask, cos, sin, eps);
        return o.to(v.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin: the maps written per half with exp/log powers, then explicit T×T weights, fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, Tensor? ropeCos = null, Tensor? ropeSin = null,
        double eps = DecoupledLinearKernels.DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var qf = q.to(ScalarType.Float32);
        var kf = k.to(ScalarType.Float32);
        var norm = qf.norm(-1, true).clamp_min(1e-6);
        var p = 1.5 + 3 * norm.tanh();
        Tensor Pow(Tensor x) => torch.where(x > 0, (p * x.clamp_min(1e-30).log()).exp(), torch.zeros_like(x));
        var pos = (qf / norm).clamp_min(0);
        var neg = (-qf / norm).clamp_min(0);
        var pq = torch.cat(new[] { Pow(pos), Pow(neg) }, -1);
        var pk = torch.cat(new[] { (kf * kf * kf).clamp_min(0), (-(kf * kf * kf)).clamp_min(0) }, -1);
        var (cos, sin) = Tables(ropeCos, ropeSin);
        var o = DecoupledLinearKernels.BidirectionalNaive(pq, pk, v.to(ScalarType.Float32), keyPaddingMask, cos, sin, eps);
        return o.to(v.dtype).MoveToOuterDisposeScope();
    }

    private static (Tensor? cos, Tensor? sin) Tables(Tensor? cos, Tensor? sin)
    {
        if (cos is null || sin is null) return (null, null);
        var (c, s) = Rope.Repeat((cos, sin), 2);                                          // one copy per sign half
        return (c, s);
    }
}
