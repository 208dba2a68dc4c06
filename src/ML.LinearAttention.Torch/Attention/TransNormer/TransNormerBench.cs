using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.TransNormer;

/// <summary>Kernel benchmark cases of NormAttention: 1+elu maps, no denominator, SRMSNorm over all heads (all inside the timed call).</summary>
internal static class TransNormerBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        Tensor Map(Tensor x) => TransNormerKernels.FeatureMap("1+elu", x);
        yield return new KernelBenchCase("norm attention bidirectional", false, Make, i => TransNormerKernels.NormAttention(Map(i[0]), Map(i[1]), i[2], null));
        yield return new KernelBenchCase("norm attention causal chunk64", true, Make, i => TransNormerKernels.NormAttention(Map(i[0]), Map(i[1]), i[2], null, causal: true));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Linear attention on 1+elu features (F = D) without denominator.</summary>
    internal static double Flops(FlopShape s, TransNormerOptions o)
        => FlopShape.LinearKernel(s.HeadDim, s.HeadDim, normalized: false) * s.Heads;
}
