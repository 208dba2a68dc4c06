using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kda;

/// <summary>
/// Kernel benchmark cases of KDA: L2 norm of q and k, β = sigmoid(·) and the per-channel gate
/// −exp(A_log)·softplus(f + dt_bias) run inside the timed call, as fla computes them in-kernel.
/// </summary>
internal static class KdaBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() =>
        [
            .. s.Qkv(), s.Gates(), s.ChannelGates(), s.Gates(), s.ChannelGates(),
            torch.empty(s.H, device: s.Device).uniform_(1, 16).log().requires_grad_(true),
            torch.zeros(s.H * s.D, device: s.Device).requires_grad_(true),
        ];
        Tensor Gate(Tensor[] i, int f) => KdaKernels.Gate(i[f], i[7], i[8]);
        yield return new KernelBenchCase("causal chunk64", true, Make,
            i => KdaKernels.Causal(DeltaRule.L2Normalize(i[0]), DeltaRule.L2Normalize(i[1]), i[2], torch.sigmoid(i[3]), Gate(i, 4), null));
        yield return new KernelBenchCase("bidirectional chunk64", false, Make,
            i => KdaKernels.Bidirectional(DeltaRule.L2Normalize(i[0]), DeltaRule.L2Normalize(i[1]), i[2],
                torch.sigmoid(i[3]), Gate(i, 4), torch.sigmoid(i[5]), Gate(i, 6), null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Two chunkwise WY delta-rule scans (per-channel decays) on Dk = D·ExpandK, Dv = D·ExpandV.</summary>
    internal static double Flops(FlopShape s, KdaOptions o)
        => 2 * FlopShape.DeltaScan(o.ChunkSize, s.HeadDim * o.ExpandK, s.HeadDim * o.ExpandV) * s.Heads;
}
