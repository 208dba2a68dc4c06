using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.DeltaNet;

/// <summary>
/// Kernel benchmark cases of DeltaNet: the L2 norm of q and k and β = sigmoid(·) run inside the timed call, as fla
/// fuses them into its kernel (<c>use_qk_l2norm_in_kernel</c>).
/// </summary>
internal static class DeltaNetBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => [.. s.Qkv(), s.Gates(), s.Gates()];
        yield return new KernelBenchCase("causal chunk64", true, Make,
            i => DeltaNetKernels.Causal(DeltaRule.L2Normalize(i[0]), DeltaRule.L2Normalize(i[1]), i[2], torch.sigmoid(i[3]), null));
        yield return new KernelBenchCase("bidirectional chunk64", false, Make,
            i => DeltaNetKernels.Bidirectional(DeltaRule.L2Normalize(i[0]), DeltaRule.L2Normalize(i[1]), i[2], torch.sigmoid(i[3]), torch.sigmoid(i[4]), null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Two chunkwise WY delta-rule scans on Dk = D·ExpandK, Dv = D·ExpandV.</summary>
    internal static double Flops(FlopShape s, DeltaNetOptions o)
        => 2 * FlopShape.DeltaScan(o.ChunkSize, s.HeadDim * o.ExpandK, s.HeadDim * o.ExpandV) * s.Heads;
}
