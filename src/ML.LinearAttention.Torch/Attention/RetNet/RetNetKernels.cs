using Microsoft.ML.LinearAttention.Attention.Decay;
using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.RetNet;

/// <summary>
/// Retention (RetNet, arXiv 2307.08621) with its fixed per-head decay γ_h = 1 − 2^(−5−h), h = 0..H−1, exactly as
/// fla's <c>chunk_retention</c> and torchscale's <c>RetNetRelPos</c>: S_t = γ_h S_{t−1} + k_t v_tᵀ,
/// o_t = scale · S_tᵀ q_t (scale null = 1/√Dk). Runs on <see cref="DecayKernels"/> with g = log γ_h at every step.
/// <para>Shapes: q, k [B, H, T, Dk]; v [B, H, T, Dv]; keyPaddingMask [B, T] bool (true = real, right padding) or null;
/// result [B, H, T, Dv], zero at padded positions.</para>
/// <para>Bidirectional form (LION-d, arXiv 2502.16249): the same γ_h in both directions, o = o^fwd + o^bwd − scale (q·k) v,
/// i.e. the symmetric mask w_ts = γ_h^|t−s| with the diagonal counted once.</para>
/// </summary>
public static class RetNetKernels
{
    /// <summary>log γ_h = log(1 − 2^(−5−h)) for h = 0..<paramref name="numHeads"/>−1, fp32 [H].</summary>
    public static Tensor LogDecays(long numHeads, Device? device = null)
    {
        if (numHeads <= 0) throw new ArgumentOutOfRangeException(nameof(numHeads), numHeads, "The number of heads must be positive.");
        return torch.tensor(LogDecayValues(numHeads), device: device);
    }

    private static float[] LogDecayValues(long numHeads)
        => Enumerable.Range(0, (int)numHeads).Select(h => (float)Math.Log(1.0 - Math.Pow(2.0, -5.0 - h))).ToArray();

    /// <summary>Causal chunkwise retention (chunk <paramref name="chunk"/>, any T).</summary>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, double? scale = null, int chunk = DecayKernels.DefaultChunk)
    {
        using var scope = NewDisposeScope();
        return DecayKernels.Causal(q, k, v, Gates(q), keyPaddingMask, scale, chunk).MoveToOuterDisposeScope();
    }

    /// <summary>Step-by-step recurrent twin of <see cref="Causal"/>, fp32.</summary>
    public static Tensor CausalRecurrent(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, double? scale = null)
    {
        using var scope = NewDisposeScope();
        return DecayKernels.CausalRecurrent(q, k, v, Gates(q), keyPaddingMask, scale).MoveToOuterDisposeScope();
    }

    /// <summary>Bidirectional retention: forward and row-reversed chunkwise scans with the same γ_h, diagonal counted once.</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, double? scale = null, int chunk = DecayKernels.DefaultChunk)
    {
        using var scope = NewDisposeScope();
        var g = Gates(q);
        return DecayKernels.Bidirectional(q, k, v, g, g, keyPaddingMask, scale, chunk).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Bidirectional"/>: explicit γ_h^|t−s| mask, fp32, quadratic.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, double? scale = null)
    {
        using var scope = NewDisposeScope();
        var g = Gates(q);
        return DecayKernels.BidirectionalNaive(q, k, v, g, g, keyPaddingMask, scale).MoveToOuterDisposeScope();
    }

    private static Tensor Gates(Tensor q)
    {
        if (q.dim() != 4) throw new ArgumentException($"q must be [B, H, T, D]; got {Heads.Shape(q)}.", nameof(q));
        long b = q.shape[0], h = q.shape[1], t = q.shape[2];
        // Kept on the device: a fresh copy from .NET memory per call would synchronize the host with the GPU.
        return DeviceConstants.Get("retnet log decays, H = " + h, q.device, () => LogDecayValues(h)).view(1, h, 1).expand(b, h, t);
    }
}
