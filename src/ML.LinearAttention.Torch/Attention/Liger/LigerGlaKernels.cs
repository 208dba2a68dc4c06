using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Liger;

/// <summary>
/// Gated linear attention (GLA, fla <c>chunk_gla</c> with scale 1, no normalizer) as Liger uses it: per-channel decays
/// S_t = diag(α_t) S_{t−1} + k_t v_tᵀ, o_t = S_tᵀ q_t, with log α_t = <c>logDecay</c> ≤ 0.
/// <para>Shapes: q/k [B, H, T, Dk], v [B, H, T, Dv], logDecay [B, H, T, Dk] (fp32 or the input dtype),
/// keyPaddingMask [B, T] bool (true = real) or null; result [B, H, T, Dv], zero at padded positions. Padded keys write
/// nothing and their decays are ignored (set to 1), so padding changes no real output.</para>
/// <para>Bidirectional (a library extension; Liger is causal): a forward scan plus a reverse scan that excludes the
/// diagonal, so pair (i, j) has weight Σ_d q_id k_jd Π α_sd over the positions s strictly after the key up to and
/// including the query in the direction of travel (j &lt; s ≤ i forward, i ≤ s &lt; j backward).</para>
/// </summary>
public static class LigerGlaKernels
{
    /// <summary>Default chunk length.</summary>
    public const int DefaultChunk = 64;

    /// <summary>Naive twin of both forms: the explicit [T, T, Dk] decay products, fp32.</summary>
    public static Tensor Naive(Tensor q, Tensor k, Tensor v, Tensor logDecay, Tensor? keyPaddingMask, bool causal)
    {
        Check(q, k, v, logDecay, keyPaddingMask);
        using var scope = NewDisposeScope();
        long t = q.shape[2];
        var g = Heads.ZeroPadded(logDecay.to(ScalarType.Float32), keyPaddingMask);
        var inclusive = g.cumsum(2);                                                       // G_t = Σ_{s ≤ t} g_s
        var exclusive = torch.cat(new[] { torch.zeros_like(g.narrow(2, 0, 1)), inclusive.narrow(2, 0, t - 1) }, 2);  // Σ_{s < t} g_s (shifted)
        var i = torch.arange(t, device: q.device).view(t, 1, 1);
        var j = torch.arange(t, device: q.device).view(1, t, 1);
        // Forward (j ≤ i): Σ_{j < s ≤ i} g = G_i − G_j. Backward (j > i): Σ_{i ≤ s < j} g = E_j − E_i.
        var fwd = inclusive.unsqueeze(3) - inclusive.unsqueeze(2);                         // [B, H, T(i), T(j), Dk]
        var bwd = exclusive.unsqueeze(2) - exclusive.unsqueeze(3);
        var exponent = torch.where(j.le(i), fwd, causal ? torch.full_like(bwd, double.NegativeInfinity) : bwd);
        var a = (q.to(ScalarType.Float32).unsqueeze(3) * k.to(ScalarType.Float32).unsqueeze(2) * exponent.exp()).sum(-1);
        if (keyPaddingMask is not null) a = a * keyPaddingMask.to(ScalarType.Float32).view(-1, 1, 1, t);
        var o = a.matmul(v.to(ScalarType.Float32)).to(v.dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    private static void Check(Tensor q, Tensor k, Tensor v, Tensor logDecay, Tensor? keyPaddingMask)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        if (!q.shape.SequenceEqual(k.shape))
            throw new ArgumentException($"GLA needs q and k of one shape; got q {Heads.Shape(q)}, k {Heads.Shape(k)}.");
        if (!logDecay.shape.SequenceEqual(k.shape))
            throw new ArgumentException($"The log-decay must be per key channel, [B, H, T, Dk] = {Heads.Shape(k)}; got {Heads.Shape(logDecay)}.");
    }
}
