using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Focused;

/// <summary>Kernel benchmark cases of focused linear attention (map with focusing factor 3 inside the timed call).</summary>
internal static class FocusedBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => [.. s.Qkv(), torch.zeros(s.H * s.D, device: s.Device).requires_grad_(true)];
        yield return new KernelBenchCase("bidirectional p=3", false, Make, i => FocusedKernels.Bidirectional(i[0], i[1], i[2], i[3], null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Normalised linear attention on the focused ReLU map, F = D; the depthwise conv on v is a parameter.</summary>
    internal static double Flops(FlopShape s, FocusedOptions o)
        => FlopShape.LinearKernel(s.HeadDim, s.HeadDim) * s.Heads;
}
