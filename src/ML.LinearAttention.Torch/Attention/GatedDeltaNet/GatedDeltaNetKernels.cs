using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.GatedDeltaNet;

/// <summary>
/// Gated DeltaNet kernels (Yang et al., arXiv 2412.06464): S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ with one
/// scalar decay α_t = exp(g_t) per head and token, o_t = S_tᵀ (scale · q_t).
/// Shapes: q, k [B, H, T, Dk]; v [B, H, T, Dv]; β [B, H, T]; g [B, H, T] (log α, ≤ 0, e.g.
/// <see cref="DeltaRule.Mamba2Gate"/>); keyPaddingMask [B, T] bool (true = real) or null; result [B, H, T, Dv], zero at
/// padded positions (padded tokens get β = 0 and g = 0). See <see cref="DeltaRule"/>.
/// </summary>
public static class GatedDeltaNetKernels
{
    /// <summary>Fast causal chunkwise form (WY / UT transform, chunk 64 by default, any T); decay ratios exp(G_r − G_c), r ≥ c.</summary>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor g, Tensor? keyPaddingMask, double? scale = null, int chunk = DeltaRule.DefaultChunk)
        => DeltaRule.Chunked(q, k, v, beta, CheckScalar(g), keyPaddingMask, exclusive: false, scale, chunk);

    /// <summary>Naive twin of <see cref="Causal"/>: the token-by-token recurrence in fp32.</summary>
    public static Tensor CausalNaive(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor g, Tensor? keyPaddingMask, double? scale = null)
        => DeltaRule.Recurrent(q, k, v, beta, CheckScalar(g), keyPaddingMask, exclusive: false, scale);

    /// <summary>
    /// Bidirectional encoder form: forward scan (β_fwd, g_fwd; inclusive of the current token) + reverse scan
    /// (β_bwd, g_bwd; from each row's last real token, exclusive of the current token), so the diagonal counts once.
    /// </summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor betaForward, Tensor gForward, Tensor betaBackward, Tensor gBackward,
        Tensor? keyPaddingMask, double? scale = null, int chunk = DeltaRule.DefaultChunk)
        => DeltaRule.Bidirectional(q, k, v, betaForward, CheckScalar(gForward), betaBackward, CheckScalar(gBackward), keyPaddingMask, scale, chunk);

    /// <summary>Naive twin of <see cref="Bidirectional"/>: two recurrences in fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor betaForward, Tensor gForward, Tensor betaBackward, Tensor gBackward,
        Tensor? keyPaddingMask, double? scale = null)
        => DeltaRule.BidirectionalRecurrent(q, k, v, betaForward, CheckScalar(gForward), betaBackward, CheckScalar(gBackward), keyPaddingMask, scale);

    private static Tensor CheckScalar(Tensor g)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (g.dim() != 3)
            throw new ArgumentException($"Gated DeltaNet takes one decay per head and token, g [B, H, T]; got {Heads.Shape(g)} (per-channel decays are KDA).");
        return g;
    }
}
