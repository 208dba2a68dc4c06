using System.Globalization;
using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.LinearKernel;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench kernels --verify-fused`: the fused CUDA linear attention kernels against the naive twin (explicit T×T
/// weights, fp32, on fp32 copies of the same inputs): outputs and q, k, v gradients for every feature map, dtype,
/// odd and tile-sized lengths, batch 1 (no mask) and 3 (padding), D = Dv = 64 and D = 32 / Dv = 48. The TorchSharp
/// fast form's error against the same naive result is printed beside it as the yardstick. Exit code 1 on failure,
/// 2 when the fused kernels are unavailable on CUDA. Then LinearMixer (relu, elu) and HedgehogMixer with the fused path
/// on and off.
/// </summary>
public static class FusedKernelVerification
{
    private const long Heads = 2;

    public static int Run(Device device, TextWriter log)
    {
        var reason = FusedLinearAttention.UnavailableReason(device);
        if (reason is not null)
        {
            log.WriteLine($"fused kernels unavailable on {device}: {reason}");
            if (device.type == DeviceType.CUDA) return 2;
            log.WriteLine("checking the CPU fallback path instead (a smoke test of this command, not of the kernels)");
        }
        int failures = 0, cases = 0;
        double worst = 0;
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
        foreach (var map in new[] { FusedFeatureMap.Relu, FusedFeatureMap.Elu, FusedFeatureMap.Identity })
        foreach (var (d, dv) in new[] { (64L, 64L), (32L, 48L) })
        foreach (long t in new long[] { 1, 37, 512, 1000 })
        foreach (long b in new long[] { 1, 3 })
        {
            if (dtype == ScalarType.Float16 && (d != 64 || b != 3)) continue;   // fp16: conversion check only
            var (pass, fusedErr, torchErr) = Check(device, dtype, map, b, t, d, dv);
            cases++;
            if (!pass) failures++;
            worst = Math.Max(worst, fusedErr);
            log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{(pass ? "PASS" : "FAIL")}  {map,-8} {Short(dtype),-4} B={b} T={t,4} D={d} Dv={dv} {(b > 1 ? "padded" : "      ")}  max err fused {fusedErr:E2}  torchsharp {torchErr:E2}"));
        }
        foreach (var (name, mixer) in Mixers(device))
        {
            double err = MixerCheck(mixer, device);
            bool pass = err <= 1e-4;
            cases++;
            if (!pass) failures++;
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{(pass ? "PASS" : "FAIL")}  mixer {name}: fused on vs off, fp32, B=3 T=37 padded, max err of output and input gradient {err:E2}"));
        }
        log.WriteLine($"{cases - failures} passed, {failures} failed (worst fused relative error {worst.ToString("E2", CultureInfo.InvariantCulture)})");
        return failures == 0 ? 0 : 1;
    }

    private static IEnumerable<(string, TokenMixer)> Mixers(Device device)
    {
        var config = new MixerConfig(128, 2);
        yield return ("linear relu", new LinearMixer(config, new LinearAttentionOptions { FeatureMap = "relu" }).to(device));
        yield return ("linear elu", new LinearMixer(config, new LinearAttentionOptions { FeatureMap = "elu" }).to(device));
        yield return ("hedgehog", new HedgehogMixer(config, new HedgehogOptions { UseFusedKernel = true }).to(device));
    }

    /// <summary>The mixer with the fused path on and off (same weights): output and input-gradient difference.</summary>
    private static double MixerCheck(TokenMixer mixer, Device device)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(7);
        var x = torch.randn(3, 37, 128, device: device);
        var lengths = torch.tensor(new long[] { 37, 20, 1 }, device: device);
        var mask = torch.arange(37, device: device).unsqueeze(0).lt(lengths.unsqueeze(1));
        var upstream = torch.randn(3, 37, 128, device: device);
        Tensor[] Pass(bool fused)
        {
            bool before = FusedLinearAttention.Enabled;
            int minimum = FusedLinearAttention.MinimumLength;
            FusedLinearAttention.Enabled = fused;
            FusedLinearAttention.MinimumLength = 0; // route this short input through the fused path too
            try
            {
                var input = x.detach().requires_grad_(true);
                var o = mixer.forward(input, mask);
                var g = torch.autograd.grad(new[] { o }, new[] { input }, new[] { upstream })[0];
                return new[] { o.detach(), g.detach() };
            }
            finally { FusedLinearAttention.Enabled = before; FusedLinearAttention.MinimumLength = minimum; }
        }
        var on = Pass(true);
        var off = Pass(false);
        return Math.Max(Relative(on[0], off[0]), Relative(on[1], off[1]));
    }

    private static string Short(ScalarType dtype) => dtype switch { ScalarType.Float32 => "fp32", ScalarType.BFloat16 => "bf16", _ => "fp16" };

    /// <summary>Largest error over output, dq, dk, dv relative to max(1, max |naive|) of that tensor (tiny gradients,
    /// e.g. of q at T = 1 where o ≈ v, are compared absolutely); both fused and TorchSharp.</summary>
    private static (bool pass, double fused, double torch) Check(Device device, ScalarType dtype, FusedFeatureMap map, long b, long t, long d, long dv)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(1000 * t + 10 * d + b);
        var q = torch.randn(b, Heads, t, d, device: device);
        var k = torch.randn(b, Heads, t, d, device: device);
        if (map == FusedFeatureMap.Identity) { q = q.abs(); k = k.abs(); }   // precomputed maps are non-negative
        var v = torch.randn(b, Heads, t, dv, device: device);
        Tensor? mask = null;
        if (b > 1)
        {
            var lengths = torch.tensor(new[] { t, Math.Max(1, t / 2), Math.Max(1, t - 5) }, device: device);
            mask = torch.arange(t, device: device).unsqueeze(0).lt(lengths.unsqueeze(1));
        }
        q = q.to(dtype); k = k.to(dtype); v = v.to(dtype);
        var upstream = torch.randn(b, Heads, t, dv, device: device).to(dtype);
        var naive = Run((x, y, z) => FusedLinearAttention.Naive(x, y, z, mask, map), q, k, v, upstream, ScalarType.Float32);
        var fused = Run((x, y, z) => FusedLinearAttention.Bidirectional(x, y, z, mask, map), q, k, v, upstream, dtype);
        var reference = Run((x, y, z) => FusedLinearAttention.Reference(x, y, z, mask, map), q, k, v, upstream, dtype);
        double fusedErr = 0, torchErr = 0;
        for (int i = 0; i < naive.Length; i++)
        {
            fusedErr = Math.Max(fusedErr, Relative(fused[i], naive[i]));
            torchErr = Math.Max(torchErr, Relative(reference[i], naive[i]));
        }
        double tolerance = dtype == ScalarType.Float32 ? 1e-4 : 3e-2;
        // Low precision: also pass when no worse than twice TorchSharp's own error on the same inputs.
        bool pass = !double.IsNaN(fusedErr) && (fusedErr <= tolerance || (dtype != ScalarType.Float32 && fusedErr <= 2 * torchErr));
        return (pass, fusedErr, torchErr);
    }

    /// <summary>Output and gradients (of q, k, v) of <paramref name="f"/> on copies of the inputs in <paramref name="dtype"/>.</summary>
    private static Tensor[] Run(Func<Tensor, Tensor, Tensor, Tensor> f, Tensor q, Tensor k, Tensor v, Tensor upstream, ScalarType dtype)
    {
        var x = new[] { q, k, v }.Select(a => a.detach().to(dtype).requires_grad_(true)).ToArray();
        var o = f(x[0], x[1], x[2]);
        var grads = torch.autograd.grad(new[] { o }, x, new[] { upstream.to(o.dtype) });
        return new[] { o }.Concat(grads).Select(g => g.detach().to(ScalarType.Float32)).ToArray();
    }

    private static double Relative(Tensor actual, Tensor expected)
    {
        double scale = Math.Max(1.0, expected.abs().max().item<float>());
        return (actual - expected).abs().max().item<float>() / scale;
    }
}
