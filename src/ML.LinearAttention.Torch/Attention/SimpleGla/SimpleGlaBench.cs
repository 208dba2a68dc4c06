using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.SimpleGla;

/// <summary>Kernel benchmark cases of simple GLA (gate logsigmoid(pre)/16 applied inside the timed call).</summary>
internal static class SimpleGlaBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => [.. s.Qkv(), s.Gates(), s.Gates()];
        yield return new KernelBenchCase("causal chunk64", true, Make,
            i => SimpleGlaKernels.Causal(i[0], i[1], i[2], SimpleGlaKernels.Gate(i[3]), null));
        yield return new KernelBenchCase("bidirectional chunk64", false, Make,
            i => SimpleGlaKernels.Bidirectional(i[0], i[1], i[2], SimpleGlaKernels.Gate(i[3]), SimpleGlaKernels.Gate(i[4]), null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Two chunkwise scans with their own gates on Dk = D·ExpandK, Dv = D·ExpandV.</summary>
    internal static double Flops(FlopShape s, SimpleGlaOptions o)
        => 2 * FlopShape.DecayScan(o.ChunkSize, s.HeadDim * o.ExpandK, s.HeadDim * o.ExpandV) * s.Heads;
}
