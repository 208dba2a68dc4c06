using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Gla;

/// <summary>Kernel benchmark cases of GLA (per-channel gate logsigmoid(pre)/16 applied inside the timed call).</summary>
internal static class GlaBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv(5);
        yield return new KernelBenchCase("causal chunk64", true, Make,
            i => GlaKernels.Causal(i[0], i[1], i[2], GlaKernels.Gate(i[3]), null));
        yield return new KernelBenchCase("bidirectional chunk64", false, Make,
            i => GlaKernels.Bidirectional(i[0], i[1], i[2], GlaKernels.Gate(i[3]), GlaKernels.Gate(i[4]), null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Two chunkwise scans with per-channel decays on Dk = D·ExpandK, Dv = D·ExpandV.</summary>
    internal static double Flops(FlopShape s, GlaOptions o)
        => 2 * FlopShape.DecayScan(o.ChunkSize, s.HeadDim * o.ExpandK, s.HeadDim * o.ExpandV) * s.Heads;
}
