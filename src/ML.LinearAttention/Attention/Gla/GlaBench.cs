using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Gla;

/// <summary>Kernel benchmark cases of GLA (per-channel gate logsigmoid(pre)/16 applied inside the timed call).</summary>
internal static class GlaBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => Enumerable.Range(0, 5)
            .Select(_ => torch.randn(s.B, s.H, s.T, s.D, dtype: s.DType, device: s.Device).requires_grad_(true)).ToArray();
        yield return new KernelBenchCase("causal chunk64", true, Make,
            i => GlaKernels.Causal(i[0], i[1], i[2], GlaKernels.Gate(i[3]), null));
        yield return new KernelBenchCase("bidirectional chunk64", false, Make,
            i => GlaKernels.Bidirectional(i[0], i[1], i[2], GlaKernels.Gate(i[3]), GlaKernels.Gate(i[4]), null));
    }
}
