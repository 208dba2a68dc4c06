using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.RetNet;

/// <summary>Kernel benchmark cases of retention (fixed per-head decays, no projections).</summary>
internal static class RetNetBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        yield return new KernelBenchCase("causal chunk64", true, Make, i => RetNetKernels.Causal(i[0], i[1], i[2], null));
        yield return new KernelBenchCase("bidirectional chunk64", false, Make, i => RetNetKernels.Bidirectional(i[0], i[1], i[2], null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Two chunkwise retention scans (forward and reversed) on Dk = D·ExpandK, Dv = D·ExpandV.</summary>
    internal static double Flops(FlopShape s, RetNetOptions o)
        => 2 * FlopShape.DecayScan(o.ChunkSize, s.HeadDim * o.ExpandK, s.HeadDim * o.ExpandV) * s.Heads;
}
