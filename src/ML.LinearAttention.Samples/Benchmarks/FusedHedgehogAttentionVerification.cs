using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// The Hedgehog attention part of `bench kernels --verify-fused`: <see cref="FusedHedgehogAttention"/>'s kernels (φ
/// computed inside the attention kernels; run whatever its switch says) against fp32 naive twins (per-head projection,
/// explicit softmaxes, explicit T×T weights) on fp32 copies of the inputs: the output and the gradients of xq, xk, v,
/// wq and wk, bf16 and fp16, padded rows, one token to 2,100 (from 2K on, the default build takes one block per SM and
/// the key pass splits over blocks), F from 16 to 64. The error of the path without
/// these kernels (the projection kernels, then the fused attention on φ) is printed beside it. Then HedgehogMixer (bf16,
/// untied and tied maps) with the kernels on vs off.
/// </summary>
public static class FusedHedgehogAttentionVerification
{
    public static void Run(Device device, TextWriter log, ref int cases, ref int failures, ref double worst)
    {
        foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float16 })
        foreach (var (b, h, t, hx, f, dv) in new[] { (3L, 2L, 37L, 64L, 64L, 64L), (1L, 2L, 130L, 32L, 32L, 48L), (3L, 1L, 5L, 64L, 16L, 32L), (1L, 2L, 1L, 16L, 16L, 16L), (4L, 12L, 512L, 64L, 64L, 64L),
                     (2L, 2L, 2100L, 64L, 64L, 64L) })
        {
            double fusedErr, otherErr;
            try { (fusedErr, otherErr) = Check(device, dtype, b, h, t, hx, f, dv); }
            catch (Exception e)
            {
                log.WriteLine($"hedgehog attention {FusedKernelVerification.Short(dtype)} failed to run: {e.Message}");
                (fusedErr, otherErr) = (double.NaN, double.NaN);
            }
            FusedKernelVerification.RecordCase(log,
                $"hedgehog attention {FusedKernelVerification.Short(dtype),-4} x [{b}, {h}, {t}, {hx}] w [{h}, {hx}, {f}] Dv {dv}{(b > 1 ? " padded" : "")}",
                FusedKernelVerification.Passes(dtype, fusedErr, otherErr, 3e-2), fusedErr, otherErr, ref cases, ref failures, ref worst);
        }
        foreach (bool tied in new[] { false, true })
        {
            var mixer = new HedgehogMixer(new MixerConfig(128, 2), new HedgehogOptions { UseFusedKernel = true, TieQueryKeyMaps = tied })
                .to(device).to(ScalarType.BFloat16);
            FusedKernelVerification.RecordMixerCheck(log, $"hedgehog (mma{(tied ? ", tied maps" : "")}): φ inside the attention kernels on vs off",
                () => FusedKernelVerification.MixerCheck(mixer, device, ScalarType.BFloat16, AttentionKernels), ref cases, ref failures);
        }
    }

    internal static IDisposable AttentionKernels(bool on)
        => FusedKernelVerification.Switch(o => o with { HedgehogAttentionEnabled = on });

    private static (double fused, double other) Check(Device device, ScalarType dtype, long b, long h, long t, long hx, long f, long dv)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(b * 1000003 + h * 10007 + t * 101 + hx + f + dv);
        var inputs = new[]
        {
            torch.randn(b, h, t, hx), torch.randn(b, h, t, hx), torch.randn(b, h, t, dv),
            torch.randn(h, hx, f) / Math.Sqrt(hx) * 2, torch.randn(h, hx, f) / Math.Sqrt(hx) * 2,
        }.Select(x => x.to(device)).ToArray();
        var upstream = torch.randn(b, h, t, dv).to(device).to(dtype);
        Tensor? mask = null;
        if (b > 1)
        {
            var lengths = torch.tensor(Enumerable.Range(0, (int)b).Select(i => i == 0 ? t : Math.Max(1, i == 1 ? t / 2 : t - 5)).ToArray(), device: device);
            mask = torch.arange(t, device: device).unsqueeze(0).lt(lengths.unsqueeze(1));
        }
        var naive = Run(i => FusedLinearAttention.Naive(Map(i[0], i[3]), Map(i[1], i[4]), i[2], mask, FusedFeatureMap.Identity),
            inputs, upstream, ScalarType.Float32);
        Tensor[] fused, other;
        using (AttentionKernels(true)) fused = Run(i => FusedHedgehogAttention.Bidirectional(i[0], i[1], i[2], i[3], i[4], mask), inputs, upstream, dtype);
        using (AttentionKernels(false)) other = Run(i => FusedHedgehogAttention.Bidirectional(i[0], i[1], i[2], i[3], i[4], mask), inputs, upstream, dtype);
        return FusedKernelVerification.WorstErrors(naive, fused, other);
    }

    /// <summary>φ = [softmax(x W_h), softmax(−x W_h)] head by head (the projection verification's naive twin).</summary>
    private static Tensor Map(Tensor x, Tensor w) => FusedHedgehogProjectionVerification.Naive(x, w);

    /// <summary>Output and gradients of xq, xk, v, wq, wk of <paramref name="attention"/> on copies of the inputs in <paramref name="dtype"/>, as fp32.</summary>
    private static Tensor[] Run(Func<Tensor[], Tensor> attention, Tensor[] inputs, Tensor upstream, ScalarType dtype)
        => FusedKernelVerification.OutputAndGradients(attention, inputs, upstream, dtype);
}
