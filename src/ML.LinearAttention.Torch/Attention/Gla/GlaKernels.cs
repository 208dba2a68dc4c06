using Microsoft.ML.LinearAttention.Attention.Decay;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Gla;

/// <summary>
/// Gated linear attention (GLA, arXiv 2312.06635; fla's <c>chunk_gla</c>): one data-dependent decay per head, step and
/// key channel, S_t = diag(exp(g_t)) S_{t−1} + k_t v_tᵀ, o_t = scale · S_tᵀ q_t (scale null = 1/√Dk), g ≤ 0 the log decay
/// — in fla's layer g = logsigmoid(gk_proj(x)) / 16, see <see cref="Gate"/>.
/// <para>Shapes: q, k [B, H, T, Dk]; v [B, H, T, Dv]; g [B, H, T, Dk]; keyPaddingMask [B, T] bool (true = real, right
/// padding) or null; result [B, H, T, Dv], zero at padded positions.</para>
/// <para>Chunkwise: D_rc = exp(G_r − G_c) per key channel; within a 64-token chunk, pairs in different 16-token
/// sub-chunks factor through a reference point between them (both factors ≤ 1), pairs inside one sub-chunk use the
/// explicit masked ratio (fla's secondary chunking), so no exp of a positive number is ever taken.</para>
/// <para>Bidirectional form (ViG, arXiv 2405.18425; merge as LION, arXiv 2502.16249): forward scan with gF, scan of each
/// row reversed within its true length with its own gB, o = o^fwd + o^bwd − scale (q·k) v (diagonal counted once; see
/// <see cref="DecayKernels"/> for the exact weights).</para>
/// </summary>
public static class GlaKernels
{
    /// <summary>fla's gate: logsigmoid(pre) / normalizer (16 by default), then clamp_min(<paramref name="clampMin"/>) if given.</summary>
    public static Tensor Gate(Tensor preActivation, double normalizer = 16.0, double? clampMin = null)
    {
        if (normalizer <= 0) throw new ArgumentOutOfRangeException(nameof(normalizer), normalizer, "The gate logit normalizer must be positive (fla: 16).");
        var g = nn.functional.logsigmoid(preActivation.to(ScalarType.Float32)) / normalizer;
        return clampMin is double m ? g.clamp_min(m) : g;
    }

    /// <summary>Causal chunkwise form (chunk <paramref name="chunk"/>, any T); g [B, H, T, Dk] log decays.</summary>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? keyPaddingMask, double? scale = null, int chunk = DecayKernels.DefaultChunk)
    {
        CheckChannelGate(g, nameof(g));
        return DecayKernels.Causal(q, k, v, g, keyPaddingMask, scale, chunk);
    }

    /// <summary>Step-by-step recurrent twin of <see cref="Causal"/> (fla's <c>naive_recurrent_gla</c>), fp32.</summary>
    public static Tensor CausalRecurrent(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? keyPaddingMask, double? scale = null)
    {
        CheckChannelGate(g, nameof(g));
        return DecayKernels.CausalRecurrent(q, k, v, g, keyPaddingMask, scale);
    }

    /// <summary>Bidirectional form; gForward and gBackward [B, H, T, Dk], the backward gates indexed by original position.</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor gForward, Tensor gBackward, Tensor? keyPaddingMask,
        double? scale = null, int chunk = DecayKernels.DefaultChunk)
    {
        CheckChannelGate(gForward, nameof(gForward));
        CheckChannelGate(gBackward, nameof(gBackward));
        return DecayKernels.Bidirectional(q, k, v, gForward, gBackward, keyPaddingMask, scale, chunk);
    }

    /// <summary>Naive twin of <see cref="Bidirectional"/>: explicit T×T×Dk decay mask, fp32, quadratic.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor gForward, Tensor gBackward, Tensor? keyPaddingMask, double? scale = null)
    {
        CheckChannelGate(gForward, nameof(gForward));
        CheckChannelGate(gBackward, nameof(gBackward));
        return DecayKernels.BidirectionalNaive(q, k, v, gForward, gBackward, keyPaddingMask, scale);
    }

    private static void CheckChannelGate(Tensor g, string name)
    {
        if (g.dim() != 4)
            throw new ArgumentException($"GLA takes one log decay per key channel, {name} [B, H, T, Dk]; got {Heads.Shape(g)}. " +
                                        "For one decay per head and step use SimpleGlaKernels.", name);
    }
}
