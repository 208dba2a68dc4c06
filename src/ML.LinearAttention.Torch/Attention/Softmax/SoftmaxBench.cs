using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Softmax;

/// <summary>Kernel benchmark cases of softmax attention: SDPA full and causal, and a sliding window of 512.</summary>
internal static class SoftmaxBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        yield return new KernelBenchCase("sdpa", false, Make, i => SoftmaxKernels.Attention(i[0], i[1], i[2], null));
        yield return new KernelBenchCase("sdpa causal", true, Make, i => SoftmaxKernels.Attention(i[0], i[1], i[2], null, causal: true));
        if (s.T > 512)
            yield return new KernelBenchCase("swa 512 (masked sdpa)", false, Make, i => SoftmaxKernels.Attention(i[0], i[1], i[2], null, window: 512));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): QKᵀ and PV over every key, or over the band of Window keys each side.</summary>
    internal static double Flops(FlopShape s, SoftmaxOptions o)
        => 4 * (o.Window > 0 ? s.BandKeys(o.Window) : s.T) * s.HeadDim * s.Heads;
}
