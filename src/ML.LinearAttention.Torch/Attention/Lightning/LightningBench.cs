using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Lightning;

/// <summary>Kernel benchmark cases of Lightning attention (ALiBi slopes of layer 0, no projections).</summary>
internal static class LightningBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        var slopes = torch.tensor(LightningKernels.Slopes((int)s.H), device: s.Device);
        // "chunk64": the TorchSharp chunk form; "fused mma": the routed call, on the fused decay kernels where they apply.
        foreach (bool fused in new[] { false, true })
        {
            string path = fused ? "fused mma" : "chunk64";
            Tensor Route(Func<Tensor> call) => fused ? call() : FusedDecayAttention.Unrouted(call);
            yield return new KernelBenchCase($"causal {path}", true, Make, i => Route(() => LightningKernels.Causal(i[0], i[1], i[2], slopes, null)));
            yield return new KernelBenchCase($"bidirectional {path}", false, Make, i => Route(() => LightningKernels.Bidirectional(i[0], i[1], i[2], slopes, null)));
        }
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Chunkwise decayed linear attention in both directions (the symmetric decay), Dk = Dv = D.</summary>
    internal static double Flops(FlopShape s, LightningOptions o)
        => 2 * FlopShape.DecayScan(o.ChunkSize, s.HeadDim, s.HeadDim) * s.Heads;
}
