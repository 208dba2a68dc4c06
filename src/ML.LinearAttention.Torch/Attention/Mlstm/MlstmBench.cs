using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Mlstm;

/// <summary>Kernel benchmark cases of mLSTM (sigmoid forget gate biased as xLSTM initialises it, no projections).</summary>
internal static class MlstmBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => [.. s.Qkv(), s.Gates(), s.Gates(mean: 4), s.Gates(mean: 4)];
        yield return new KernelBenchCase("causal chunk64", true, Make, i => MlstmKernels.Causal(i[0], i[1], i[2], i[3], i[4], null));
        yield return new KernelBenchCase("bidirectional chunk64", false, Make, i => MlstmKernels.Bidirectional(i[0], i[1], i[2], i[3], i[4], i[5], null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Two chunkwise scans on the inner width (C·ProjFactor rounded up to RoundUpTo) split over the heads.</summary>
    internal static double Flops(FlopShape s, MlstmOptions o)
    {
        double inner = Math.Ceiling(o.ProjFactor * s.ModelDim / o.RoundUpTo) * o.RoundUpTo, d = inner / s.Heads;
        return 2 * FlopShape.DecayScan(o.ChunkSize, d, d) * s.Heads;
    }
}
