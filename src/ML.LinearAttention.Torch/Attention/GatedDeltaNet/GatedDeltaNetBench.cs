using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.GatedDeltaNet;

/// <summary>
/// Kernel benchmark cases of Gated DeltaNet: L2 norm of q and k, β = sigmoid(·) and the Mamba2 gate
/// −exp(A_log)·softplus(a + dt_bias) run inside the timed call, as fla computes them in-kernel.
/// </summary>
internal static class GatedDeltaNetBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make()
        {
            var (aLog, dt) = DeltaMixing.Mamba2Init(s.H);
            return [.. s.Qkv(), s.Gates(), s.Gates(), s.Gates(), s.Gates(),
                aLog.view(s.H, 1).to(s.Device).requires_grad_(true), dt.view(s.H, 1).to(s.Device).requires_grad_(true)];
        }
        Tensor Gate(Tensor[] i, int a) => DeltaRule.Mamba2Gate(i[a], i[7], i[8]);
        yield return new KernelBenchCase("causal chunk64", true, Make,
            i => GatedDeltaNetKernels.Causal(DeltaRule.L2Normalize(i[0]), DeltaRule.L2Normalize(i[1]), i[2], torch.sigmoid(i[3]), Gate(i, 4), null));
        yield return new KernelBenchCase("bidirectional chunk64", false, Make,
            i => GatedDeltaNetKernels.Bidirectional(DeltaRule.L2Normalize(i[0]), DeltaRule.L2Normalize(i[1]), i[2],
                torch.sigmoid(i[3]), Gate(i, 4), torch.sigmoid(i[5]), Gate(i, 6), null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Two chunkwise WY delta-rule scans on Dk = D·ExpandK, Dv = D·ExpandV.</summary>
    internal static double Flops(FlopShape s, GatedDeltaNetOptions o)
        => 2 * FlopShape.DeltaScan(o.ChunkSize, s.HeadDim * o.ExpandK, s.HeadDim * o.ExpandV) * s.Heads;
}
