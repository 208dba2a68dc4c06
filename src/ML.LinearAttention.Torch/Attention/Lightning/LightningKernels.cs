using Microsoft.ML.LinearAttention.Attention.Decay;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Lightning;

/// <summary>
/// Lightning attention (TransNormerLLM / Lightning Attention-2, arXiv 2307.14995, 2401.04658): decayed linear attention
/// without softmax or denominator, O = ((Q Kᵀ) ⊙ M) V with M_ts = exp(−s_h (t − s)) for s ≤ t
/// (<c>lightning_attn/ops/torch/linear_attention.py</c>). The per-head slopes s_h are ALiBi's geometric sequence
/// (<see cref="Slopes"/>), scaled with depth by <see cref="LayerSlopes"/> as TNL's attention module does. The reference
/// applies no query scale, so <c>scale</c> defaults to 1.
/// <para>Shapes: q, k [B, H, T, Dk]; v [B, H, T, Dv]; slopes [H] (positive); keyPaddingMask [B, T] bool (true = real,
/// right padding) or null; result [B, H, T, Dv], zero at padded positions.</para>
/// <para>Bidirectional form: the symmetric mask M_ts = exp(−s_h |t − s|) (§1.5's library note), computed as a forward
/// and a row-reversed scan with the same slopes, o = o^fwd + o^bwd − scale (q·k) v (diagonal counted once, as LION-d).</para>
/// </summary>
public static class LightningKernels
{
    /// <summary>ALiBi slopes of <c>_build_slope_tensor(H)</c>: for H a power of two, s_h = start^(h+1) with
    /// start = 2^(−2^(−(log2 H − 3))); otherwise the closest lower power of two plus every other slope of twice it.</summary>
    public static double[] Slopes(int numHeads)
    {
        if (numHeads <= 0) throw new ArgumentOutOfRangeException(nameof(numHeads), numHeads, "The number of heads must be positive.");
        static double[] PowerOfTwo(int n)
        {
            double start = Math.Pow(2, -Math.Pow(2, -(Math.Log2(n) - 3)));
            return Enumerable.Range(0, n).Select(i => start * Math.Pow(start, i)).ToArray();
        }
        double log2 = Math.Log2(numHeads);
        if (log2 == Math.Floor(log2)) return PowerOfTwo(numHeads);
        int closest = 1 << (int)Math.Floor(log2);
        return PowerOfTwo(closest).Concat(Slopes(2 * closest).Where((_, i) => i % 2 == 0).Take(numHeads - closest)).ToArray();
    }

    /// <summary>TNL's depth schedule: s_h · (1 − layerIndex / (numLayers − 1) + 1e-5), weaker decay in deeper layers.
    /// A single-layer model (where the reference would divide by zero) uses the factor of layer 0, 1 + 1e-5.</summary>
    public static double[] LayerSlopes(int numHeads, int layerIndex, int numLayers)
    {
        if (numLayers <= 0 || layerIndex < 0 || layerIndex >= numLayers)
            throw new ArgumentOutOfRangeException(nameof(layerIndex), layerIndex, $"Layer index must lie in 0..{numLayers - 1}.");
        double factor = numLayers == 1 ? 1 + 1e-5 : 1 - layerIndex / (double)(numLayers - 1) + 1e-5;
        return Slopes(numHeads).Select(s => s * factor).ToArray();
    }

    /// <summary>Causal chunkwise form (chunk <paramref name="chunk"/>, any T).</summary>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor slopes, Tensor? keyPaddingMask, double scale = 1.0, int chunk = DecayKernels.DefaultChunk)
    {
        using var scope = NewDisposeScope();
        return DecayKernels.Causal(q, k, v, Gates(q, slopes), keyPaddingMask, scale, chunk).MoveToOuterDisposeScope();
    }

    /// <summary>Step-by-step recurrent twin of <see cref="Causal"/>, fp32.</summary>
    public static Tensor CausalRecurrent(Tensor q, Tensor k, Tensor v, Tensor slopes, Tensor? keyPaddingMask, double scale = 1.0)
    {
        using var scope = NewDisposeScope();
        return DecayKernels.CausalRecurrent(q, k, v, Gates(q, slopes), keyPaddingMask, scale).MoveToOuterDisposeScope();
    }

    /// <summary>Bidirectional form with the symmetric mask exp(−s_h |t − s|).</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor slopes, Tensor? keyPaddingMask, double scale = 1.0, int chunk = DecayKernels.DefaultChunk)
    {
        using var scope = NewDisposeScope();
        var g = Gates(q, slopes);
        return DecayKernels.Bidirectional(q, k, v, g, g, keyPaddingMask, scale, chunk).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Bidirectional"/>: explicit exp(−s_h |t − s|) mask, fp32, quadratic.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor slopes, Tensor? keyPaddingMask, double scale = 1.0)
    {
        using var scope = NewDisposeScope();
        var g = Gates(q, slopes);
        return DecayKernels.BidirectionalNaive(q, k, v, g, g, keyPaddingMask, scale).MoveToOuterDisposeScope();
    }

    private static Tensor Gates(Tensor q, Tensor slopes)
    {
        if (q.dim() != 4) throw new ArgumentException($"q must be [B, H, T, D]; got {Heads.Shape(q)}.", nameof(q));
        long b = q.shape[0], h = q.shape[1], t = q.shape[2];
        if (slopes.dim() != 1 || slopes.shape[0] != h)
            throw new ArgumentException($"slopes must be [H] = [{h}]; got {Heads.Shape(slopes)}.", nameof(slopes));
        return (-slopes.to(ScalarType.Float32).to(q.device)).view(1, h, 1).expand(b, h, t);
    }
}
