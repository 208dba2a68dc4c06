using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.LinearKernel;

/// <summary>Kernel benchmark cases of plain linear attention (relu and elu+1 maps applied inside the timed call).</summary>
internal static class LinearBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => Enumerable.Range(0, 3)
            .Select(_ => torch.randn(s.B, s.H, s.T, s.D, dtype: s.DType, device: s.Device).requires_grad_(true)).ToArray();
        foreach (var map in new[] { "relu", "elu" })
            yield return new KernelBenchCase($"{map} bidirectional", false, Make,
                i => LinearAttentionKernels.Bidirectional(FeatureMaps.Apply(map, i[0]), FeatureMaps.Apply(map, i[1]), i[2], null));
        foreach (int chunk in new[] { 64, 128 })
            yield return new KernelBenchCase($"relu causal chunk{chunk}", true, Make,
                i => LinearAttentionKernels.Causal(FeatureMaps.Apply("relu", i[0]), FeatureMaps.Apply("relu", i[1]), i[2], null, chunk: chunk));
    }
}
