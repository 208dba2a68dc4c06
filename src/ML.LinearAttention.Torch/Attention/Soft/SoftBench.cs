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
}
