using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Lolcats;

/// <summary>Kernel benchmark cases of LoLCATs window attention (window 64, Hedgehog maps with F = D inside the timed call).</summary>
internal static class LolcatsBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => [.. s.Qkv(), s.Identities(), s.Identities(), torch.full(s.H, -2.197, device: s.Device).requires_grad_(true)];
        Tensor Run(Tensor[] i, bool causal) => LolcatsKernels.Attention(i[0], i[1], HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]),
            i[2], i[5].sigmoid(), null, null, LolcatsKernels.DefaultWindow, causal);
        yield return new KernelBenchCase("window 64 + hedgehog bidirectional", false, Make, i => Run(i, false));
        yield return new KernelBenchCase("window 64 + hedgehog causal", true, Make, i => Run(i, true));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Window softmax (QKᵀ, PV over the band) plus Hedgehog linear attention on F = 2·FeatureDim.</summary>
    internal static double Flops(FlopShape s, LolcatsOptions o)
        => (4 * s.BandKeys(o.Window) * s.HeadDim + FlopShape.LinearKernel(2.0 * o.FeatureDim, s.HeadDim)) * s.Heads;
}
