using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.DeltaNet;

/// <summary>
/// DeltaNet kernels (Yang et al., arXiv 2406.06484): the delta rule without decay,
/// S_t = (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ, o_t = S_tᵀ (scale · q_t). The layer L2-normalises q and k first.
/// Shapes: q, k [B, H, T, Dk]; v [B, H, T, Dv]; β [B, H, T]; keyPaddingMask [B, T] bool (true = real) or null;
/// result [B, H, T, Dv], zero at padded positions (padded tokens get β = 0). See <see cref="DeltaRule"/>.
/// </summary>
public static class DeltaNetKernels
{
    /// <summary>Fast causal chunkwise form (WY / UT transform, chunk 64 by default, any T).</summary>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? keyPaddingMask, double? scale = null, int chunk = DeltaRule.DefaultChunk)
        => DeltaRule.Chunked(q, k, v, beta, null, keyPaddingMask, exclusive: false, scale, chunk);

    /// <summary>Naive twin of <see cref="Causal"/>: the token-by-token recurrence in fp32.</summary>
    public static Tensor CausalNaive(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? keyPaddingMask, double? scale = null)
        => DeltaRule.Recurrent(q, k, v, beta, null, keyPaddingMask, exclusive: false, scale);

    /// <summary>
    /// Bidirectional encoder form: forward scan (β_fwd, inclusive of the current token) + reverse scan (β_bwd,
    /// starting at each row's last real token, exclusive of the current token), so the diagonal is counted once.
    /// </summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor betaForward, Tensor betaBackward, Tensor? keyPaddingMask,
        double? scale = null, int chunk = DeltaRule.DefaultChunk)
        => DeltaRule.Bidirectional(q, k, v, betaForward, null, betaBackward, null, keyPaddingMask, scale, chunk);

    /// <summary>Naive twin of <see cref="Bidirectional"/>: two recurrences in fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor betaForward, Tensor betaBackward, Tensor? keyPaddingMask, double? scale = null)
        => DeltaRule.BidirectionalRecurrent(q, k, v, betaForward, null, betaBackward, null, keyPaddingMask, scale);
}
