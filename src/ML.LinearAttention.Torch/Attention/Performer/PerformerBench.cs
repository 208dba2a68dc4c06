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
}
