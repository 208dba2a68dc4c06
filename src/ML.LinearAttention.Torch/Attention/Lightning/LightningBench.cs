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
        yield return new KernelBenchCase("causal chunk64", true, Make, i => LightningKernels.Causal(i[0], i[1], i[2], slopes, null));
        yield return new KernelBenchCase("bidirectional chunk64", false, Make, i => LightningKernels.Bidirectional(i[0], i[1], i[2], slopes, null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Chunkwise decayed linear attention in both directions (the symmetric decay), Dk = Dv = D.</summary>
    internal static double Flops(FlopShape s, LightningOptions o)
        => 2 * FlopShape.DecayScan(o.ChunkSize, s.HeadDim, s.HeadDim) * s.Heads;
}
