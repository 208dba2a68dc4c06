using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.InLine;

/// <summary>Kernel benchmark cases of InLine attention (identity φ, the DeiT default).</summary>
internal static class InLineBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        yield return new KernelBenchCase("bidirectional", false, Make, i => InLineKernels.Bidirectional(i[0], i[1], i[2], null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Injective linear attention, F = D: state, read-out and the row sums subtracted; the residual conv is a parameter.</summary>
    internal static double Flops(FlopShape s, InLineOptions o)
        => FlopShape.LinearKernel(s.HeadDim, s.HeadDim) * s.Heads;
}
