using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.HiLo;

/// <summary>Kernel benchmark cases of HiLo: the Hi-Fi local windows and the Lo-Fi pooled global attention (s = 2, sequence layout).</summary>
internal static class HiLoBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => new[]
        {
            torch.randn(s.B, s.H, s.T, s.D, dtype: s.DType, device: s.Device).requires_grad_(true),
            torch.randn(s.B, s.H, s.T, s.D, dtype: s.DType, device: s.Device).requires_grad_(true),
            torch.randn(s.B, s.H, s.T, s.D, dtype: s.DType, device: s.Device).requires_grad_(true),
        };
        yield return new KernelBenchCase("hi-fi windows s=2", false, Make, i => HiLoKernels.LocalWindow(i[0], i[1], i[2], null, null, 2));
        yield return new KernelBenchCase("lo-fi pooled s=2", false, Make, i => HiLoKernels.PooledGlobal(i[0], i[1], i[2], null, null, 2));
    }
}
