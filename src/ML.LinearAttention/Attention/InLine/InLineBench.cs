using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.InLine;

/// <summary>Kernel benchmark cases of InLine attention (identity φ, the DeiT default).</summary>
internal static class InLineBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => Enumerable.Range(0, 3)
            .Select(_ => torch.randn(s.B, s.H, s.T, s.D, dtype: s.DType, device: s.Device).requires_grad_(true)).ToArray();
        yield return new KernelBenchCase("bidirectional", false, Make, i => InLineKernels.Bidirectional(i[0], i[1], i[2], null));
    }
}
