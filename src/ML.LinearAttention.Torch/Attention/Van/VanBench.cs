using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Van;

/// <summary>Kernel benchmark case of VAN's large-kernel attention: 5 × 5 then 7 × 7 dilation 3 depthwise, C = H·D channels, sequence layout.</summary>
internal static class VanBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        long c = s.H * s.D;
        Tensor[] Make() => new[]
        {
            torch.randn(s.B, s.T, c, dtype: s.DType, device: s.Device).requires_grad_(true),
            (torch.randn(c, 1, 5, 5, device: s.Device) * 0.2).to(s.DType).requires_grad_(true),
            torch.zeros(c, dtype: s.DType, device: s.Device).requires_grad_(true),
            (torch.randn(c, 1, 7, 7, device: s.Device) * 0.14).to(s.DType).requires_grad_(true),
            torch.zeros(c, dtype: s.DType, device: s.Device).requires_grad_(true),
        };
        yield return new KernelBenchCase("lka 5x5 + 7x7 d3", false, Make, i => VanKernels.LargeKernel(i[0], i[1], i[2], i[3], i[4], 3, null, null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): None: no token-token products; its depthwise and 1×1 convolutions are parameters (counted as 2·N).</summary>
    internal static double Flops(FlopShape s, VanOptions o)
        => 0;
}
