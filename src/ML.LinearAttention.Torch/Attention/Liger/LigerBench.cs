using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Liger;

/// <summary>Kernel benchmark cases of Liger Attention (window 64 + GLA chunk 64; feature maps and gates inside the call)
/// and of the GLA half alone.</summary>
internal static class LigerBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        Tensor Run(Tensor[] i, bool causal) => LigerKernels.Attention(i[0], i[1], LigerKernels.FeatureMap(i[0]), LigerKernels.FeatureMap(i[1]),
            LigerKernels.Gate(i[1]), i[2], null, 64, causal);
        yield return new KernelBenchCase("swa 64 + gla bidirectional", false, Make, i => Run(i, false));
        yield return new KernelBenchCase("swa 64 + gla causal", true, Make, i => Run(i, true));
        yield return new KernelBenchCase("gla causal chunk64", true, Make,
            i => Decay.DecayKernels.Causal(LigerKernels.FeatureMap(i[0]), LigerKernels.FeatureMap(i[1]), i[2], LigerKernels.Gate(i[1]), null, scale: 1.0));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Window softmax over the band plus two GLA scans with D-sized keys and values.</summary>
    internal static double Flops(FlopShape s, LigerOptions o)
        => (4 * s.BandKeys(o.Window) * s.HeadDim + 2 * FlopShape.DecayScan(o.ChunkSize, s.HeadDim, s.HeadDim)) * s.Heads;
}
