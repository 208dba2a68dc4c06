using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.NaLaFormer;

/// <summary>Kernel benchmark cases of NaLaFormer (norm-aware maps and 1D RoPE inside the timed call; fp32 core).</summary>
internal static class NaLaFormerBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        yield return new KernelBenchCase("bidirectional rope fp32", false, Make, i =>
        {
            var (cos, sin) = Rope.Tables(s.T, s.D, null, s.Device);
            return NaLaFormerKernels.Bidirectional(i[0], i[1], i[2], null, cos, sin);
        });
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Normalised linear attention on the sign-split maps, F = 2·D.</summary>
    internal static double Flops(FlopShape s, NaLaFormerOptions o)
        => FlopShape.LinearKernel(2.0 * s.HeadDim, s.HeadDim) * s.Heads;
}
