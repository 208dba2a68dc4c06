using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// The rotary part of `bench kernels --verify-fused`: <see cref="Rotary.Apply"/> with <see cref="FusedRotary"/>'s kernel
/// (switch on) against its naive twin, the libtorch form (switch off) evaluated in fp32: the output and the gradient of
/// the projection output it rotates, reached through the head split's strided view as the mixers pass it; fp32, bf16
/// and fp16, head sizes 64, 32 and 128, lengths 1, 37 and 600, two bases. The kernel must also equal the libtorch form
/// in the input dtype to the bit (the same fp32 products and sum, rounded once); the libtorch form's own error against
/// the fp32 twin is printed beside it.
/// </summary>
public static class FusedRotaryVerification
{
    public static void Run(Device device, TextWriter log, ref int cases, ref int failures, ref double worst)
    {
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
        foreach (var (b, t, h, d, theta) in new[] { (3L, 37L, 2, 64, 10000.0), (1L, 1L, 4, 32, 10000.0), (2L, 600L, 3, 128, 500000.0), (4L, 37L, 12, 64, 10000.0) })
        {
            var (fusedErr, torchErr, bitwise) = Check(device, dtype, b, t, h, d, theta);
            bool pass = bitwise && FusedKernelVerification.Passes(dtype, fusedErr, torchErr, dtype == ScalarType.Float32 ? 1e-6 : 1e-2);
            FusedKernelVerification.RecordCase(log, $"rotary {FusedKernelVerification.Short(dtype),-4} B={b} T={t,4} H={h,2} D={d,3} θ={theta:G6} {(bitwise ? "bitwise = libtorch" : "DIFFERS from libtorch")}",
                pass, fusedErr, torchErr, ref cases, ref failures, ref worst);
        }
    }

    private static (double fused, double torch, bool bitwise) Check(Device device, ScalarType dtype, long b, long t, int h, int d, double theta)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(b * 1000 + t * 10 + d);
        var x = (torch.randn(b, t, h * d) * 2).to(device);
        var upstream = torch.randn(b, h, t, d).to(device);
        var before = FusedKernelOptions.Current;
        Tensor[] Run(bool fused, ScalarType runType)
        {
            FusedKernelOptions.Current = before with { RotaryEnabled = fused };
            try { return FusedKernelVerification.OutputAndGradients(i => Rotary.Apply(Attention.Heads.Split(i[0], h), theta), new[] { x }, upstream, runType); }
            finally { FusedKernelOptions.Current = before; }
        }
        var naive = Run(false, ScalarType.Float32);
        var fusedOut = Run(true, dtype);
        var reference = Run(false, dtype);
        if (FusedRotary.UnavailableReason(Attention.Heads.Split(x.to(dtype), h)) is { } why)
            throw new InvalidOperationException("The rotary kernel does not take the verification's input: " + why);
        bool bitwise = fusedOut.Zip(reference).All(p => p.First.allclose(p.Second, rtol: 0, atol: 0));
        var (fusedErr, torchErr) = FusedKernelVerification.WorstErrors(naive, fusedOut, reference);
        return (fusedErr, torchErr, bitwise);
    }
}
