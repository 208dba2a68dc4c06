using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.EfficientVit;

/// <summary>Kernel benchmark cases of EfficientViT's ReLU linear attention (ReLU inside the timed call; fp32 core).</summary>
internal static class EfficientVitBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        yield return new KernelBenchCase("relu bidirectional fp32", false, Make,
            i => EfficientVitKernels.Bidirectional(nn.functional.relu(i[0]), nn.functional.relu(i[1]), i[2], null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): ReLU linear attention with v padded by a ones column (Dv = D + 1), on H heads plus H aggregated ones when AggregationKernel > 0.</summary>
    internal static double Flops(FlopShape s, EfficientVitOptions o)
        => 4.0 * s.HeadDim * (s.HeadDim + 1) * s.Heads * (o.AggregationKernel > 0 ? 2 : 1);
}
