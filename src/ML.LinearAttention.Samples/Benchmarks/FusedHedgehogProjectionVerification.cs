using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// The Hedgehog projection part of `bench kernels --verify-fused`: <see cref="FusedHedgehogProjection"/>'s kernels (run
/// whatever its switch says) against a per-head fp32 loop (y = x W_h, then the explicit softmaxes) on fp32 copies of the
/// inputs: φ and the gradients of x and W, bf16 and fp16, D and F from 16 to 128, one row to several tiles of rows
/// across batch rows; the libtorch path's error (matmul, then the map) is printed beside it. Then HedgehogMixer (bf16)
/// with the projection kernels on vs off.
/// </summary>
public static class FusedHedgehogProjectionVerification
{
    public static void Run(Device device, TextWriter log, ref int cases, ref int failures, ref double worst)
    {
        foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float16 })
        foreach (var (b, h, t, d, f) in new[] { (2L, 3L, 37L, 64L, 64L), (1L, 2L, 130L, 32L, 48L), (3L, 1L, 5L, 128L, 128L), (1L, 2L, 1L, 16L, 32L), (4L, 12L, 512L, 64L, 64L) })
        {
            double fusedErr, torchErr;
            try { (fusedErr, torchErr) = Check(device, dtype, b, h, t, d, f); }
            catch (Exception e)
            {
                log.WriteLine($"hedgehog projection {FusedKernelVerification.Short(dtype)} failed to run: {e.Message}");
                (fusedErr, torchErr) = (double.NaN, double.NaN);
            }
            FusedKernelVerification.RecordCase(log, $"hedgehog projection {FusedKernelVerification.Short(dtype),-4} x [{b}, {h}, {t}, {d}] w [{h}, {d}, {f}]",
                FusedKernelVerification.Passes(dtype, fusedErr, torchErr, 3e-2), fusedErr, torchErr, ref cases, ref failures, ref worst);
        }
        var mixer = new HedgehogMixer(new MixerConfig(128, 2), new HedgehogOptions { UseFusedKernel = true }).to(device).to(ScalarType.BFloat16);
        FusedKernelVerification.RecordMixerCheck(log, "hedgehog (mma): projection kernels on vs off",
            () => FusedKernelVerification.MixerCheck(mixer, device, ScalarType.BFloat16, ProjectionKernels), ref cases, ref failures);
    }

    internal static IDisposable ProjectionKernels(bool on)
        => FusedKernelVerification.Switch(o => o with { HedgehogProjectionEnabled = on });

    private static (double fused, double torch) Check(Device device, ScalarType dtype, long b, long h, long t, long d, long f)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(b * 1000003 + h * 10007 + t * 101 + d + f);
        var x = torch.randn(b, h, t, d).to(device).to(dtype);
        var w = (torch.randn(h, d, f) / Math.Sqrt(d) * 2).to(device).to(dtype);
        var upstream = torch.randn(b, h, t, 2 * f).to(device).to(dtype);
        var naive = Run(Naive, x, w, upstream, ScalarType.Float32);
        Tensor[] fused, reference;
        using (ProjectionKernels(true)) fused = Run(FusedHedgehogProjection.Apply, x, w, upstream, dtype);   // whatever the switch said
        using (ProjectionKernels(false)) reference = Run(FusedHedgehogProjection.Apply, x, w, upstream, dtype);
        return FusedKernelVerification.WorstErrors(naive, fused, reference);
    }

    /// <summary>y = x W_h head by head (fp32), then the map's explicit softmaxes.</summary>
    internal static Tensor Naive(Tensor x, Tensor w)
        => FusedHedgehogMapVerification.Naive(torch.stack(Enumerable.Range(0, (int)x.shape[1]).Select(h => x.select(1, h).matmul(w[h])).ToArray(), 1));

    /// <summary>φ, dx and dW of <paramref name="map"/> on copies of x and w in <paramref name="dtype"/>, as fp32.</summary>
    private static Tensor[] Run(Func<Tensor, Tensor, Tensor> map, Tensor x, Tensor w, Tensor upstream, ScalarType dtype)
        => FusedKernelVerification.OutputAndGradients(i => map(i[0], i[1]), new[] { x, w }, upstream, dtype);
}
