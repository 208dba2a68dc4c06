using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.SimpleGla;

/// <summary>Kernel benchmark cases of simple GLA (gate logsigmoid(pre)/16 applied inside the timed call).</summary>
internal static class SimpleGlaBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => [.. s.Qkv(), s.Gates(), s.Gates()];
        // "chunk64": the TorchSharp chunk form; "fused mma": the routed call, on the fused decay kernels where they apply.
        foreach (bool fused in new[] { false, true })
        {
            string path = fused ? "fused mma" : "chunk64";
            Tensor Route(Func<Tensor> call) => fused ? call() : FusedDecayAttention.Unrouted(call);
            yield return new KernelBenchCase($"causal {path}", true, Make,
                i => Route(() => SimpleGlaKernels.Causal(i[0], i[1], i[2], SimpleGlaKernels.Gate(i[3]), null)));
            yield return new KernelBenchCase($"bidirectional {path}", false, Make,
                i => Route(() => SimpleGlaKernels.Bidirectional(i[0], i[1], i[2], SimpleGlaKernels.Gate(i[3]), SimpleGlaKernels.Gate(i[4]), null)));
        }
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Two chunkwise scans with their own gates on Dk = D·ExpandK, Dv = D·ExpandV.</summary>
    internal static double Flops(FlopShape s, SimpleGlaOptions o)
        => 2 * FlopShape.DecayScan(o.ChunkSize, s.HeadDim * o.ExpandK, s.HeadDim * o.ExpandV) * s.Heads;
}
