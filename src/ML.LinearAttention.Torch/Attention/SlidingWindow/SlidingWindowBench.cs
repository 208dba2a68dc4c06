using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.SlidingWindow;

/// <summary>Kernel benchmark cases of banded sliding-window softmax (compare with softmax's "swa 512 (masked sdpa)").</summary>
internal static class SlidingWindowBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        yield return new KernelBenchCase("banded 512", false, Make, i => SlidingWindowKernels.Attention(i[0], i[1], i[2], null, 512));
        yield return new KernelBenchCase("banded 512 causal", true, Make, i => SlidingWindowKernels.Attention(i[0], i[1], i[2], null, 512, causal: true));
        yield return new KernelBenchCase("banded 128", false, Make, i => SlidingWindowKernels.Attention(i[0], i[1], i[2], null, 128));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): QKᵀ and PV over the band of Window keys each side.</summary>
    internal static double Flops(FlopShape s, SlidingWindowOptions o)
        => 4 * s.BandKeys(o.Window) * s.HeadDim * s.Heads;
}
