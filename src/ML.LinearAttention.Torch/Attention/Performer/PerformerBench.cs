using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Performer;

/// <summary>Kernel benchmark cases of FAVOR+ with the default m = ⌊D·ln D⌋ features (feature maps inside the timed call).</summary>
internal static class PerformerBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        int m = PerformerKernels.DefaultNumFeatures((int)s.D);
        Tensor[] Make() => [.. s.Qkv(), PerformerKernels.OrthogonalRandomMatrix(m, (int)s.D).to(s.Device)];
        yield return new KernelBenchCase($"favor+ m={m} bidirectional", false, Make, i => PerformerKernels.Attention(i[0], i[1], i[2], i[3], null));
        yield return new KernelBenchCase($"favor+ m={m} causal chunk64", true, Make, i => PerformerKernels.Attention(i[0], i[1], i[2], i[3], null, causal: true));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Random-feature maps of q and k (D → m, fixed features, not parameters) plus normalised linear attention on m features.</summary>
    internal static double Flops(FlopShape s, PerformerOptions o)
    {
        double m = o.NumFeatures > 0 ? o.NumFeatures : PerformerKernels.DefaultNumFeatures(s.HeadDim);
        return (2 * 2 * s.HeadDim * m + FlopShape.LinearKernel(m, s.HeadDim)) * s.Heads;
    }
}
