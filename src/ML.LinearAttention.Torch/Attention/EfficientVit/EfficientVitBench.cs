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
}
