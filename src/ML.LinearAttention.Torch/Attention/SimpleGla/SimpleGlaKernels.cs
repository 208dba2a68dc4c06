using Microsoft.ML.LinearAttention.Attention.Decay;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.SimpleGla;

/// <summary>
/// Simple gated linear attention (fla's <c>chunk_simple_gla</c>): one data-dependent decay per head and step,
/// S_t = exp(g_t) S_{t−1} + k_t v_tᵀ, o_t = scale · S_tᵀ q_t (scale null = 1/√Dk), g ≤ 0 the log decay — in fla's
/// layer g = logsigmoid(gk_proj(x)) / 16, see <see cref="Gate"/>.
/// <para>Shapes: q, k [B, H, T, Dk]; v [B, H, T, Dv]; g [B, H, T]; keyPaddingMask [B, T] bool (true = real, right
/// padding) or null; result [B, H, T, Dv], zero at padded positions.</para>
/// <para>Bidirectional form: a forward scan with gates gF and a scan of each row reversed within its true length with
/// its own gates gB, merged LION-style with the diagonal counted once, o = o^fwd + o^bwd − scale (q·k) v (see
/// <see cref="DecayKernels"/> for the exact weights).</para>
/// </summary>
public static class SimpleGlaKernels
{
    /// <summary>fla's gate: logsigmoid(pre) / normalizer (normalizer 16 by default), a log decay in (−∞, 0).</summary>
    public static Tensor Gate(Tensor preActivation, double normalizer = 16.0)
    {
        if (normalizer <= 0) throw new ArgumentOutOfRangeException(nameof(normalizer), normalizer, "The gate logit normalizer must be positive (fla: 16).");
        return nn.functional.logsigmoid(preActivation.to(ScalarType.Float32)) / normalizer;
    }

    /// <summary>Causal chunkwise form (chunk <paramref name="chunk"/>, any T); g [B, H, T] log decays.</summary>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? keyPaddingMask, double? scale = null, int chunk = DecayKernels.DefaultChunk)
    {
        CheckScalarGate(g, nameof(g));
        return DecayKernels.Causal(q, k, v, g, keyPaddingMask, scale, chunk);
    }

    /// <summary>Step-by-step recurrent twin of <see cref="Causal"/> (fla's <c>naive_recurrent_simple_gla</c>), fp32.</summary>
    public static Tensor CausalRecurrent(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? keyPaddingMask, double? scale = null)
    {
        CheckScalarGate(g, nameof(g));
        return DecayKernels.CausalRecurrent(q, k, v, g, keyPaddingMask, scale);
    }

    /// <summary>Bidirectional form; gForward and gBackward [B, H, T], the backward gates indexed by original position.</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor gForward, Tensor gBackward, Tensor? keyPaddingMask,
        double? scale = null, int chunk = DecayKernels.DefaultChunk)
    {
        CheckScalarGate(gForward, nameof(gForward));
        CheckScalarGate(gBackward, nameof(gBackward));
        return DecayKernels.Bidirectional(q, k, v, gForward, gBackward, keyPaddingMask, scale, chunk);
    }

    /// <summary>Naive twin of <see cref="Bidirectional"/>: explicit T×T decay mask, fp32, quadratic.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor gForward, Tensor gBackward, Tensor? keyPaddingMask, double? scale = null)
    {
        CheckScalarGate(gForward, nameof(gForward));
        CheckScalarGate(gBackward, nameof(gBackward));
        return DecayKernels.BidirectionalNaive(q, k, v, gForward, gBackward, keyPaddingMask, scale);
    }

    private static void CheckScalarGate(Tensor g, string name)
    {
        if (g.dim() != 3)
            throw new ArgumentException($"Simple GLA takes one log decay per head and step, {name} [B, H, T]; got {Heads.Shape(g)}. " +
                                        "For one decay per key channel use GlaKernels.", name);
    }
}
