using TorchSharp;
using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kda;

/// <summary>
/// Kimi Delta Attention kernels (fla <c>fla/ops/kda</c>, arXiv 2510.26692): the gated delta rule with a decay per key
/// channel, S ← diag(exp(g_t)) S; S ← S + β_t k_t (v_t − Sᵀ k_t)ᵀ; o_t = Sᵀ (scale · q_t).
/// Shapes: q, k [B, H, T, Dk]; v [B, H, T, Dv]; β [B, H, T]; g [B, H, T, Dk] (log-decay, ≤ 0); keyPaddingMask [B, T]
/// bool (true = real) or null; result [B, H, T, Dv], zero at padded positions (padded tokens get β = 0, g = 0).
/// The chunkwise form uses sub-chunk reference points so that only exponents ≤ 0 are evaluated, see
/// <see cref="DeltaRule"/>.
/// </summary>
public static class KdaKernels
{
    /// <summary>Fast causal chunkwise form (WY / UT transform, chunk 64 by default, any T).</summary>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor g, Tensor? keyPaddingMask, double? scale = null, int chunk = DeltaRule.DefaultChunk)
        => DeltaRule.Chunked(q, k, v, beta, CheckChannel(g), keyPaddingMask, exclusive: false, scale, chunk);

    /// <summary>Naive twin of <see cref="Causal"/>: fla's <c>naive_recurrent_kda</c>, token by token in fp32.</summary>
    public static Tensor CausalNaive(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor g, Tensor? keyPaddingMask, double? scale = null)
        => DeltaRule.Recurrent(q, k, v, beta, CheckChannel(g), keyPaddingMask, exclusive: false, scale);

    /// <summary>
    /// Bidirectional encoder form: forward scan (β_fwd, g_fwd; inclusive of the current token) + reverse scan
    /// (β_bwd, g_bwd; from each row's last real token, exclusive of the current token), so the diagonal counts once.
    /// </summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor betaForward, Tensor gForward, Tensor betaBackward, Tensor gBackward,
        Tensor? keyPaddingMask, double? scale = null, int chunk = DeltaRule.DefaultChunk)
        => DeltaRule.Bidirectional(q, k, v, betaForward, CheckChannel(gForward), betaBackward, CheckChannel(gBackward), keyPaddingMask, scale, chunk);

    /// <summary>Naive twin of <see cref="Bidirectional"/>: two recurrences in fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor betaForward, Tensor gForward, Tensor betaBackward, Tensor gBackward,
        Tensor? keyPaddingMask, double? scale = null)
        => DeltaRule.BidirectionalRecurrent(q, k, v, betaForward, CheckChannel(gForward), betaBackward, CheckChannel(gBackward), keyPaddingMask, scale);

    /// <summary>
    /// KDA's gate in fp32 (fla <c>naive_kda_gate</c>): g = −exp(A_log_h) · softplus(raw + dt_bias), or with a lower
    /// bound lb: g = lb · sigmoid(exp(A_log_h) · (raw + dt_bias)). raw [B, H, T, Dk]; aLog [H]; dtBias [H, Dk].
    /// </summary>
    public static Tensor Gate(Tensor raw, Tensor aLog, Tensor dtBias, double? lowerBound = null)
    {
        using var scope = NewDisposeScope();
        long h = raw.shape[1], dk = raw.shape[3];
        var a = aLog.to(ScalarType.Float32).view(1, h, 1, 1).exp();
        var x = raw.to(ScalarType.Float32) + dtBias.to(ScalarType.Float32).view(1, h, 1, dk);
        var g = lowerBound is double lb ? lb * torch.sigmoid(a * x) : -a * nn.functional.softplus(x);
        return g.MoveToOuterDisposeScope();
    }

    private static Tensor CheckChannel(Tensor g)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (g.dim() != 4)
            throw new ArgumentException($"KDA takes one decay per key channel, g [B, H, T, Dk]; got {Heads.Shape(g)} (one decay per head is Gated DeltaNet).");
        return g;
    }
}
