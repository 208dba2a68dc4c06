using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Soft;

/// <summary>Kernel benchmark cases of SOFT: 49 landmarks pooled from q, 20 Newton–Schulz steps, inside the timed call.</summary>
internal static class SoftBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv(2);
        yield return new KernelBenchCase("49 landmarks, 20 NS steps", false, Make, i =>
        {
            var (w, valid) = AdaptivePool.Weights(null, s.B, s.T, 49, null, s.Device);
            var landmarks = AdaptivePool.Pool(SoftKernels.Scale(i[0]), w);
            return SoftKernels.Attention(i[0], landmarks, i[1], valid, null);
        });
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Nyström with m landmarks: κ(q̃, L) (shared by the tied keys), κ(L, q̃)ᵀV and the read-out, 6·m·D per token; κ(L, L), the Newton–Schulz steps and NS·(κᵀV) once per sequence.</summary>
    internal static double Flops(FlopShape s, SoftOptions o)
    {
        double m = o.NumLandmarks, d = s.HeadDim;
        double perSequence = 2 * m * m * d + o.NewtonIterations * 2 * (2 * m * m * m) + 2 * m * m * d;
        return (6 * m * d + perSequence / s.T) * s.Heads;
    }
}
