using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// The RMSNorm part of `bench kernels --verify-fused`: <see cref="FusedRmsNorm"/>'s kernels (run whatever its switch
/// says) against its naive twin, the libtorch form, evaluated in fp32 on fp32 copies of the inputs: the output and the
/// gradients of x and w, fp32, bf16 and fp16, widths below, at and above the warp (and the encoder's 768), with and
/// without a weight, rows that do not fill a block and enough rows for several dw slices; the libtorch form's own error
/// in the input dtype is printed beside it.
/// </summary>
public static class FusedRmsNormVerification
{
    public static void Run(Device device, TextWriter log, ref int cases, ref int failures, ref double worst)
    {
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
        foreach (var shape in new[] { new long[] { 3, 37, 64 }, new long[] { 2, 5, 768 }, new long[] { 1, 1, 100 }, new long[] { 4, 300, 24 } })
        foreach (bool weighted in new[] { true, false })
        {
            var (fusedErr, torchErr) = Check(device, dtype, shape, weighted);
            bool pass = FusedKernelVerification.Passes(dtype, fusedErr, torchErr, dtype == ScalarType.Float32 ? 1e-5 : 3e-2);
            FusedKernelVerification.RecordCase(log, $"rms norm {FusedKernelVerification.Short(dtype),-4} x [{string.Join(", ", shape)}]{(weighted ? " · w" : "    ")}",
                pass, fusedErr, torchErr, ref cases, ref failures, ref worst);
        }
    }

    private static (double fused, double torch) Check(Device device, ScalarType dtype, long[] shape, bool weighted)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(shape.Aggregate(23L, (a, n) => a * 31 + n));
        var x = (torch.randn(shape) * 3 + 0.5).to(device).to(dtype);
        var w = (torch.rand(shape[^1]) + 0.5).to(device).to(dtype);
        var upstream = torch.randn(shape).to(device).to(dtype);
        Tensor[] Run(Func<Tensor, Tensor?, Tensor> f, ScalarType runType)
            => FusedKernelVerification.OutputAndGradients(i => f(i[0], weighted ? i[1] : null), weighted ? new[] { x, w } : new[] { x }, upstream, runType);
        var naive = Run((a, b) => FusedRmsNorm.Reference(a, b), ScalarType.Float32);
        var fused = Run((a, b) => FusedRmsNorm.Apply(a, b, 1e-5, fused: true), dtype);
        var reference = Run((a, b) => FusedRmsNorm.Reference(a, b), dtype);
        return FusedKernelVerification.WorstErrors(naive, fused, reference);
    }
}
