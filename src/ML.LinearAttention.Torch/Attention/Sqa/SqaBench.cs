using Microsoft.ML.LinearAttention.Attention.Softmax;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Sqa;

/// <summary>Kernel benchmark cases of SQA: SDPA with H/2 query heads over H/4 key/value heads (standard SQA), full and causal.</summary>
internal static class SqaBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        var (hq, hkv) = new SqaOptions().Resolve((int)s.H);
        Tensor[] Make() => [s.Randn(s.B, hq, s.T, s.D), s.Randn(s.B, hkv, s.T, s.D), s.Randn(s.B, hkv, s.T, s.D)];
        yield return new KernelBenchCase($"sdpa Hq={hq} Hkv={hkv}", false, Make, i => SoftmaxKernels.Attention(i[0], i[1], i[2], null));
        yield return new KernelBenchCase($"sdpa causal Hq={hq} Hkv={hkv}", true, Make, i => SoftmaxKernels.Attention(i[0], i[1], i[2], null, causal: true));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Softmax attention of the Hq query heads (each over all keys, or the band of Window keys).</summary>
    internal static double Flops(FlopShape s, SqaOptions o)
        => 4 * (o.Window > 0 ? s.BandKeys(o.Window) : s.T) * s.HeadDim * o.Resolve(s.Heads).QueryHeads;
}
