using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.RetNet;

/// <summary>Kernel benchmark cases of retention (fixed per-head decays, no projections).</summary>
internal static class RetNetBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        // "chunk64": the TorchSharp chunk form; "fused mma": the routed call, on the fused decay kernels where they apply.
        foreach (bool fused in new[] { false, true })
        {
            string path = fused ? "fused mma" : "chunk64";
            Tensor Route(Func<Tensor> call) => fused ? call() : FusedDecayAttention.Unrouted(call);
            yield return new KernelBenchCase($"causal {path}", true, Make, i => Route(() => RetNetKernels.Causal(i[0], i[1], i[2], null)));
            yield return new KernelBenchCase($"bidirectional {path}", false, Make, i => Route(() => RetNetKernels.Bidirectional(i[0], i[1], i[2], null)));
        }
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Two chunkwise retention scans (forward and reversed) on Dk = D·ExpandK, Dv = D·ExpandV.</summary>
    internal static double Flops(FlopShape s, RetNetOptions o)
        => 2 * FlopShape.DecayScan(o.ChunkSize, s.HeadDim * o.ExpandK, s.HeadDim * o.ExpandV) * s.Heads;
}
