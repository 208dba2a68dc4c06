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
}
