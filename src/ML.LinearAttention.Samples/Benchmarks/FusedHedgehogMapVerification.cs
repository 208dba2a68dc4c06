using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// The Hedgehog feature-map part of `bench kernels --verify-fused`: <see cref="FusedHedgehogMap"/>'s kernels (run
/// whatever its switch says) against an explicit fp32 softmax of both halves on fp32 copies of the inputs: φ and the
/// gradient of y, fp32, bf16 and fp16, F a multiple of the warp, not one, and below it; the libtorch form's error is
/// printed beside it. Then HedgehogMixer (bf16, tensor-core attention, projection kernels off) with the map's kernels on vs off.
/// </summary>
public static class FusedHedgehogMapVerification
{
    public static void Run(Device device, TextWriter log, ref int cases, ref int failures, ref double worst)
    {
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
        foreach (var shape in new[] { new long[] { 2, 3, 37, 64 }, new long[] { 1, 2, 5, 100 }, new long[] { 3, 1, 512, 16 } })
        {
            var (fusedErr, torchErr) = Check(device, dtype, shape);
            bool pass = FusedKernelVerification.Passes(dtype, fusedErr, torchErr, dtype == ScalarType.Float32 ? 1e-5 : 3e-2);
            FusedKernelVerification.RecordCase(log, $"hedgehog map {FusedKernelVerification.Short(dtype),-4} y [{string.Join(", ", shape)}]",
                pass, fusedErr, torchErr, ref cases, ref failures, ref worst);
        }
        // The projection as a libtorch matmul, so that the map kernels are what the switch changes.
        var mixer = new HedgehogMixer(new MixerConfig(128, 2), new HedgehogOptions { UseFusedKernel = true }).to(device).to(ScalarType.BFloat16);
        using (FusedHedgehogProjectionVerification.ProjectionKernels(false))
            FusedKernelVerification.RecordMixerCheck(log, "hedgehog (mma): map kernels on vs off",
                () => FusedKernelVerification.MixerCheck(mixer, device, ScalarType.BFloat16, MapKernels), ref cases, ref failures);
    }

    private static IDisposable MapKernels(bool on) => FusedKernelVerification.Switch(o => o with { HedgehogMapEnabled = on });

    private static (double fused, double torch) Check(Device device, ScalarType dtype, long[] shape)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(shape.Aggregate(17L, (a, n) => a * 31 + n));
        var y = (torch.randn(shape) * 2).to(device).to(dtype);
        var upstream = torch.randn(shape[..^1].Append(2 * shape[^1]).ToArray()).to(device).to(dtype);
        var naive = Run(Naive, y, upstream, ScalarType.Float32);
        Tensor[] fused;
        using (MapKernels(true)) fused = Run(FusedHedgehogMap.Apply, y, upstream, dtype);   // whatever the switch said
        var reference = Run(FusedHedgehogMap.Reference, y, upstream, dtype);
        return FusedKernelVerification.WorstErrors(naive, fused, reference);
    }

    /// <summary>[exp(y − max y) / Σ, exp(−y − max(−y)) / Σ] written out, fp32.</summary>
    internal static Tensor Naive(Tensor y)
    {
        var plus = (y - y.amax(new long[] { -1 }, keepdim: true)).exp();
        var minus = (-y - (-y).amax(new long[] { -1 }, keepdim: true)).exp();
        return torch.cat(new[] { plus / plus.sum(-1, keepdim: true), minus / minus.sum(-1, keepdim: true) }, -1);
    }

    private static Tensor[] Run(Func<Tensor, Tensor> f, Tensor y, Tensor upstream, ScalarType dtype)
        => FusedKernelVerification.OutputAndGradients(i => f(i[0]), new[] { y }, upstream, dtype);
}
