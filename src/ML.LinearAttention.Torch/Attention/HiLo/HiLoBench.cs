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

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Hi-Fi heads attend inside s² windows, Lo-Fi heads to the T/s² window means (⌊α·H⌋ of the heads; all when s = 1).</summary>
    internal static double Flops(FlopShape s, HiLoOptions o)
    {
        int w = o.WindowSize, lo = w == 1 ? s.Heads : (int)(s.Heads * o.Alpha), hi = s.Heads - lo;
        double window = Math.Min(s.T, (long)w * w), pooled = Math.Ceiling((double)s.T / ((long)w * w));
        return 4 * s.HeadDim * (hi * window + lo * pooled);
    }
}
