using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.PlainLinear;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// The causal part of `bench kernels --verify-fused`: <see cref="FusedLinearAttention.Causal"/> (tensor-core kernels)
/// against <see cref="LinearAttentionKernels.CausalNaive"/> on the mapped fp32 inputs: outputs and q, k, v gradients,
/// maps relu / elu / identity, bf16 and fp16, T ∈ {1, 37, 512, 1000}, B 1 and 3 (padded), (D, Dv) ∈ {(64, 64), (32, 48)};
/// the TorchSharp chunk form's error is printed beside it. Then LinearMixer (relu, causal, bf16) and HedgehogMixer
/// (causal, bf16: the kernels at D = 128, Dv = 64) with the fused causal path on vs off
/// (<see cref="FusedKernelOptions.CausalEnabled"/> forced on for the "on" pass).
/// </summary>
public static class FusedCausalVerification
{
    private const long Heads = 2;

    public static void Run(Device device, TextWriter log, ref int cases, ref int failures, ref double worst)
    {
        foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float16 })
        foreach (var map in new[] { FusedFeatureMap.Relu, FusedFeatureMap.Elu, FusedFeatureMap.Identity })
        foreach (var (d, dv) in new[] { (64L, 64L), (32L, 48L) })
        foreach (long t in new long[] { 1, 37, 512, 1000 })
        foreach (long b in new long[] { 1, 3 })
        {
            var (pass, fusedErr, torchErr, path) = Check(device, dtype, map, b, t, d, dv);
            FusedKernelVerification.RecordCase(log,
                $"causal {path,-8} {map,-8} {FusedKernelVerification.Short(dtype),-4} B={b} T={t,4} D={d} Dv={dv} {(b > 1 ? "padded" : "      ")}",
                pass, fusedErr, torchErr, ref cases, ref failures, ref worst);
        }
        var mixer = new LinearMixer(new MixerConfig(128, 2, Causal: true), new LinearMixerOptions { FeatureMap = "relu" }).to(device).to(ScalarType.BFloat16);
        var before = FusedKernelOptions.Current;
        // MixerCheck toggles FusedKernelOptions.Enabled: "on" takes the causal kernels, "off" the TorchSharp ops.
        FusedKernelOptions.Current = before with { CausalEnabled = true };
        // Hedgehog: φ is 2·D wide, so its causal kernels run at D = 128, Dv = 64.
        var hedgehog = new HedgehogMixer(new MixerConfig(128, 2, Causal: true), new HedgehogOptions { UseFusedKernel = true }).to(device).to(ScalarType.BFloat16);
        try
        {
            FusedKernelVerification.RecordMixerCheck(log, "linear relu causal (mma): fused on vs off", () => FusedKernelVerification.MixerCheck(mixer, device, ScalarType.BFloat16), ref cases, ref failures);
            FusedKernelVerification.RecordMixerCheck(log, "hedgehog causal (mma): fused on vs off", () => FusedKernelVerification.MixerCheck(hedgehog, device, ScalarType.BFloat16), ref cases, ref failures);
        }
        finally { FusedKernelOptions.Current = before; }
    }

    private static (bool pass, double fused, double torch, string path) Check(Device device, ScalarType dtype, FusedFeatureMap map, long b, long t, long d, long dv)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(1000 * t + 10 * d + b + 7);
        var q = torch.randn(b, Heads, t, d).to(device);
        var k = torch.randn(b, Heads, t, d).to(device);
        if (map == FusedFeatureMap.Identity) { q = q.abs(); k = k.abs(); }   // precomputed maps are non-negative
        var v = torch.randn(b, Heads, t, dv).to(device);
        var mask = FusedKernelVerification.PaddingMask(b, t, device);
        q = q.to(dtype); k = k.to(dtype); v = v.to(dtype);
        // "fused" when the causal kernels take the inputs; otherwise the call falls back and the case checks nothing new.
        string path = FusedLinearAttention.CausalReason(q, k, v, mask) is null ? "mma" : "fallback";
        var upstream = torch.randn(b, Heads, t, dv).to(device).to(dtype);
        var naive = FusedKernelVerification.Run((x, y, z) => FusedLinearAttention.CausalNaive(x, y, z, mask, map), q, k, v, upstream, ScalarType.Float32);
        var fused = FusedKernelVerification.Run((x, y, z) => FusedLinearAttention.Causal(x, y, z, mask, map), q, k, v, upstream, dtype);
        var reference = FusedKernelVerification.Run((x, y, z) => LinearAttentionKernels.Causal(FusedLinearAttention.ApplyFeatureMap(map, x), FusedLinearAttention.ApplyFeatureMap(map, y), z, mask), q, k, v, upstream, dtype);
        var (fusedErr, torchErr) = FusedKernelVerification.WorstErrors(naive, fused, reference);
        // (On the CPU this is a smoke test of the fallback.) Same rule as the bidirectional 16-bit cases: within 3e-2, or no worse than twice TorchSharp's own error.
        bool pass = (path == "mma" || device.type != DeviceType.CUDA) && !double.IsNaN(fusedErr) && (fusedErr <= 3e-2 || fusedErr <= 2 * torchErr);
        return (pass, fusedErr, torchErr, path);
    }
}
