using System.Globalization;
using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.PlainLinear;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench kernels --verify-fused`: the fused CUDA linear attention kernels against the naive twin (explicit T×T
/// weights, fp32, on fp32 copies of the same inputs): outputs and q, k, v gradients for every feature map, dtype,
/// odd and tile-sized lengths, batch 1 (no mask) and 3 (padding), D = Dv = 64, D = 32 / Dv = 48 and D = 64 / Dv = 40 (not a
/// multiple of 16: the tensor-core request falls back to CUDA cores), bf16 and fp16 on both the CUDA-core and the
/// tensor-core kernels (<see cref="FusedKernelOptions.UseTensorCores"/>). The TorchSharp
/// fast form's error against the same naive result is printed beside it as the yardstick. Exit code 1 on failure,
/// 2 when the fused kernels are unavailable on CUDA. Then LinearMixer (relu, elu) and HedgehogMixer with the fused path
/// on and off (fp32; and bf16 on both kernel families). Then the causal kernels (<see cref="FusedCausalVerification"/>)
/// and Hedgehog's feature-map kernels (<see cref="FusedHedgehogMapVerification"/>) and projection kernels
/// (<see cref="FusedHedgehogProjectionVerification"/>), the causal decay kernels of simple GLA, RetNet and Lightning
/// (<see cref="FusedDecayVerification"/>), the RMSNorm kernels (<see cref="FusedRmsNormVerification"/>), the multi-tensor AdamW (<see cref="FusedAdamWVerification"/>) the rotary kernel (<see cref="FusedRotaryVerification"/>) and the delta-rule chunk scan (<see cref="FusedDeltaRuleVerification"/>).
/// </summary>
public static class FusedKernelVerification
{
    private const long Heads = 2;

    /// <summary>The parts of the check, for `--only` (all when none is named).</summary>
    public static readonly string[] Parts = { "linear", "causal", "hedgehog", "decay", "rmsnorm", "adamw", "rotary", "delta" };

    public static int Run(Device device, TextWriter log, IReadOnlyCollection<string>? only = null)
    {
        var unknown = only?.Where(p => !Parts.Contains(p, StringComparer.OrdinalIgnoreCase)).ToList();
        if (unknown is { Count: > 0 })
            throw new ArgumentException($"--only {string.Join(",", unknown)}: with --verify-fused, --only names parts of the check: {string.Join(", ", Parts)}.");
        bool Wanted(string part) => only is null || only.Count == 0 || only.Contains(part, StringComparer.OrdinalIgnoreCase);
        var reason = FusedLinearAttention.UnavailableReason(device);
        if (reason is not null)
        {
            log.WriteLine($"fused kernels unavailable on {device}: {reason}");
            if (device.type == DeviceType.CUDA) return 2;
            log.WriteLine("checking the CPU fallback path instead (a smoke test of this command, not of the kernels)");
        }
        int failures = 0, cases = 0;
        double worst = 0;
        var optionsBefore = FusedKernelOptions.Current;
        try
        {
            if (Wanted("linear"))
            foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
            foreach (bool mma in dtype == ScalarType.Float32 ? new[] { false } : new[] { false, true })
            foreach (var map in new[] { FusedFeatureMap.Relu, FusedFeatureMap.Elu, FusedFeatureMap.Identity })
            foreach (var (d, dv) in new[] { (64L, 64L), (32L, 48L), (64L, 40L) })
            foreach (long t in new long[] { 1, 37, 512, 1000 })
            foreach (long b in new long[] { 1, 3 })
            {
                // Path: CUDA cores, or tensor cores (bf16/fp16 with D, Dv multiples of 16; Dv = 40 checks the fallback).
                FusedKernelOptions.Current = FusedKernelOptions.Current with { UseTensorCores = mma };
                string path = !mma ? "cuda" : d % 16 == 0 && dv % 16 == 0 ? "mma " : "mma→cuda";
                var (pass, fusedErr, torchErr) = Check(device, dtype, map, b, t, d, dv);
                RecordCase(log, $"{path,-8} {map,-8} {Short(dtype),-4} B={b} T={t,4} D={d} Dv={dv} {(b > 1 ? "padded" : "      ")}",
                    pass, fusedErr, torchErr, ref cases, ref failures, ref worst);
            }
            if (Wanted("linear"))
            foreach (bool mma in new[] { false, true })
            foreach (var (name, mixer, dtype) in Mixers(device))
            {
                if (mma && dtype == ScalarType.Float32) continue;   // fp32 never takes the tensor cores
                if (!mma && name == "hedgehog") continue;            // Hedgehog routes to the fused kernels only on tensor cores
                FusedKernelOptions.Current = FusedKernelOptions.Current with { UseTensorCores = mma };
                double err;
                try { err = MixerCheck(mixer, device, dtype); }
                catch (Exception e) when (dtype != ScalarType.Float32)
                {
                    log.WriteLine($"mixer {name} {Short(dtype)} failed to run: {e.Message}");
                    err = double.NaN;
                }
                // bf16: the fused and TorchSharp paths each round differently; both are within bf16 error of the truth.
                bool pass = err <= (dtype == ScalarType.Float32 ? 1e-4 : 5e-2);   // NaN fails
                cases++;
                if (!pass) failures++;
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{(pass ? "PASS" : "FAIL")}  mixer {name} ({(mma ? "mma" : "cuda")}): fused on vs off, {Short(dtype)}, B=3 T=37 padded, max err of output and input gradient {err:E2}"));
            }
        }
        finally { FusedKernelOptions.Current = optionsBefore; }
        if (Wanted("causal")) FusedCausalVerification.Run(device, log, ref cases, ref failures, ref worst);
        if (Wanted("hedgehog")) FusedHedgehogMapVerification.Run(device, log, ref cases, ref failures, ref worst);
        if (Wanted("hedgehog")) FusedHedgehogProjectionVerification.Run(device, log, ref cases, ref failures, ref worst);
        if (Wanted("hedgehog")) FusedHedgehogAttentionVerification.Run(device, log, ref cases, ref failures, ref worst);
        if (Wanted("decay")) FusedDecayVerification.Run(device, log, ref cases, ref failures, ref worst);
        if (Wanted("rmsnorm")) FusedRmsNormVerification.Run(device, log, ref cases, ref failures, ref worst);
        if (Wanted("adamw")) FusedAdamWVerification.Run(device, log, ref cases, ref failures, ref worst);
        if (Wanted("rotary")) FusedRotaryVerification.Run(device, log, ref cases, ref failures, ref worst);
        if (Wanted("delta")) FusedDeltaRuleVerification.Run(device, log, ref cases, ref failures, ref worst);
        log.WriteLine($"{cases - failures} passed, {failures} failed (worst fused relative error {worst.ToString("E2", CultureInfo.InvariantCulture)})");
        return failures == 0 ? 0 : 1;
    }

    private static IEnumerable<(string, TokenMixer, ScalarType)> Mixers(Device device)
    {
        var config = new MixerConfig(128, 2);
        yield return ("linear relu", new LinearMixer(config, new LinearMixerOptions { FeatureMap = "relu" }).to(device), ScalarType.Float32);
        yield return ("linear elu", new LinearMixer(config, new LinearMixerOptions { FeatureMap = "elu" }).to(device), ScalarType.Float32);
        // bf16 mixers (head dim 64): the tensor-core kernels when the switch is on.
        yield return ("linear relu", new LinearMixer(config, new LinearMixerOptions { FeatureMap = "relu" }).to(device).to(ScalarType.BFloat16), ScalarType.BFloat16);
        yield return ("hedgehog", new HedgehogMixer(config, new HedgehogOptions { UseFusedKernel = true }).to(device).to(ScalarType.BFloat16), ScalarType.BFloat16);
    }

    /// <summary>
    /// The mixer with the fused path on and off (same weights): output and input-gradient difference. <paramref name="route"/>
    /// switches the path (default: <see cref="FusedKernelOptions.Enabled"/>, short inputs included) and restores it.
    /// </summary>
    internal static double MixerCheck(TokenMixer mixer, Device device, ScalarType dtype, Func<bool, IDisposable>? route = null)
    {
        route ??= FusedAttentionRoute;
        using var scope = NewDisposeScope();
        torch.manual_seed(7);
        var x = torch.randn(3, 37, 128).to(device).to(dtype);
        var lengths = torch.tensor(new long[] { 37, 20, 1 }, device: device);
        var mask = torch.arange(37, device: device).unsqueeze(0).lt(lengths.unsqueeze(1));
        var upstream = torch.randn(3, 37, 128).to(device).to(dtype);
        Tensor[] Pass(bool fused)
        {
            using var _ = route(fused);
            var input = x.detach().requires_grad_(true);
            var o = mixer.forward(input, mask);
            var g = torch.autograd.grad(new[] { o }, new[] { input }, new[] { upstream })[0];
            return new[] { o.detach(), g.detach() };
        }
        var on = Pass(true);
        var off = Pass(false);
        return Math.Max(Relative(on[0].to(ScalarType.Float32), off[0].to(ScalarType.Float32)), Relative(on[1].to(ScalarType.Float32), off[1].to(ScalarType.Float32)));
    }

    private static IDisposable FusedAttentionRoute(bool fused)
    {
        var before = FusedKernelOptions.Current;
        int minimum = FusedLinearAttention.MinimumLength;
        FusedKernelOptions.Current = before with { Enabled = fused };
        FusedLinearAttention.MinimumLength = 0; // route this short input through the fused path too
        return new Restore(() => { FusedKernelOptions.Current = before; FusedLinearAttention.MinimumLength = minimum; });
    }

    /// <summary>Undoes a switch when disposed.</summary>
    internal sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    /// <summary>Applies <paramref name="change"/> to the process-wide kernel switches until the result is disposed.</summary>
    internal static IDisposable Switch(Func<FusedKernelOptions, FusedKernelOptions> change)
    {
        var before = FusedKernelOptions.Current;
        FusedKernelOptions.Current = change(before);
        return new Restore(() => FusedKernelOptions.Current = before);
    }

    /// <summary>Runs a mixer on-vs-off check (bf16 bound 5e-2; a failure to run or NaN fails) and logs it.</summary>
    internal static void RecordMixerCheck(TextWriter log, string label, Func<double> check, ref int cases, ref int failures)
    {
        double err;
        try { err = check(); }
        catch (Exception e)
        {
            log.WriteLine($"mixer {label} failed to run: {e.Message}");
            err = double.NaN;
        }
        bool ok = err <= 5e-2;   // NaN fails
        cases++;
        if (!ok) failures++;
        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{(ok ? "PASS" : "FAIL")}  mixer {label}, bf16, B=3 T=37 padded, max err of output and input gradient {err:E2}"));
    }

    /// <summary>
    /// The cases' key-padding mask [B, T] for B = 3 (null for one row): rows of T, T/2 and T − 5 real tokens (at least 1),
    /// so a padded tail lands inside a chunk, on its boundary and across several chunks.
    /// </summary>
    internal static Tensor? PaddingMask(long b, long t, Device device)
    {
        if (b <= 1) return null;
        var lengths = torch.tensor(new[] { t, Math.Max(1, t / 2), Math.Max(1, t - 5) }, device: device);
        return torch.arange(t, device: device).unsqueeze(0).lt(lengths.unsqueeze(1));
    }

    internal static string Short(ScalarType dtype) => dtype switch { ScalarType.Float32 => "fp32", ScalarType.BFloat16 => "bf16", _ => "fp16" };

    /// <summary>Largest error over output, dq, dk, dv relative to max(1, max |naive|) of that tensor (tiny gradients,
    /// e.g. of q at T = 1 where o ≈ v, are compared absolutely); both fused and TorchSharp.</summary>
    private static (bool pass, double fused, double torch) Check(Device device, ScalarType dtype, FusedFeatureMap map, long b, long t, long d, long dv)
    {
        using var scope = NewDisposeScope();
        // Drawn on the CPU (seeded; TorchSharp's manual_seed leaves the CUDA generator alone) so every run checks the same inputs.
        torch.manual_seed(1000 * t + 10 * d + b);
        var q = torch.randn(b, Heads, t, d).to(device);
        var k = torch.randn(b, Heads, t, d).to(device);
        if (map == FusedFeatureMap.Identity) { q = q.abs(); k = k.abs(); }   // precomputed maps are non-negative
        var v = torch.randn(b, Heads, t, dv).to(device);
        var mask = PaddingMask(b, t, device);
        q = q.to(dtype); k = k.to(dtype); v = v.to(dtype);
        var upstream = torch.randn(b, Heads, t, dv).to(device).to(dtype);
        var naive = Run((x, y, z) => FusedLinearAttention.Naive(x, y, z, mask, map), q, k, v, upstream, ScalarType.Float32);
        var fused = Run((x, y, z) => FusedLinearAttention.Bidirectional(x, y, z, mask, map), q, k, v, upstream, dtype);
        var reference = Run((x, y, z) => FusedLinearAttention.Reference(x, y, z, mask, map), q, k, v, upstream, dtype);
        var (fusedErr, torchErr) = WorstErrors(naive, fused, reference);
        return (Passes(dtype, fusedErr, torchErr, dtype == ScalarType.Float32 ? 1e-4 : 3e-2), fusedErr, torchErr);
    }

    /// <summary>Output and gradients (of q, k, v) of <paramref name="f"/> on copies of the inputs in <paramref name="dtype"/>.</summary>
    internal static Tensor[] Run(Func<Tensor, Tensor, Tensor, Tensor> f, Tensor q, Tensor k, Tensor v, Tensor upstream, ScalarType dtype)
        => OutputAndGradients(x => f(x[0], x[1], x[2]), new[] { q, k, v }, upstream, dtype);

    /// <summary>
    /// The output of <paramref name="f"/> on copies of <paramref name="inputs"/> in <paramref name="dtype"/> (detached,
    /// requiring gradients), then the gradient of each input under <paramref name="upstream"/>, all as fp32.
    /// </summary>
    internal static Tensor[] OutputAndGradients(Func<Tensor[], Tensor> f, Tensor[] inputs, Tensor upstream, ScalarType dtype)
    {
        var x = inputs.Select(a => a.detach().to(dtype).requires_grad_(true)).ToArray();
        var o = f(x);
        var grads = torch.autograd.grad(new[] { o }, x, new[] { upstream.to(o.dtype) });
        return new[] { o }.Concat(grads).Select(g => g.detach().to(ScalarType.Float32)).ToArray();
    }

    /// <summary>The largest <see cref="Relative"/> error over the outputs (same order) of the fused and of the TorchSharp path against the naive one.</summary>
    internal static (double fused, double torch) WorstErrors(Tensor[] naive, Tensor[] fused, Tensor[] reference)
    {
        double fusedErr = 0, torchErr = 0;
        for (int i = 0; i < naive.Length; i++)
        {
            fusedErr = Math.Max(fusedErr, Relative(fused[i], naive[i]));
            torchErr = Math.Max(torchErr, Relative(reference[i], naive[i]));
        }
        return (fusedErr, torchErr);
    }

    /// <summary>
    /// The pass rule of a kernel case: NaN fails; within <paramref name="tolerance"/> passes, and in 16-bit dtypes so does
    /// an error no worse than twice the TorchSharp path's own on the same inputs.
    /// </summary>
    internal static bool Passes(ScalarType dtype, double fusedErr, double torchErr, double tolerance)
        => !double.IsNaN(fusedErr) && (fusedErr <= tolerance || (dtype != ScalarType.Float32 && fusedErr <= 2 * torchErr));

    /// <summary>Counts one kernel case and logs it: "PASS|FAIL  label  max err fused …  torchsharp …".</summary>
    internal static void RecordCase(TextWriter log, string label, bool pass, double fusedErr, double torchErr, ref int cases, ref int failures, ref double worst)
    {
        cases++;
        if (!pass) failures++;
        if (!double.IsNaN(fusedErr)) worst = Math.Max(worst, fusedErr);
        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{(pass ? "PASS" : "FAIL")}  {label}  max err fused {fusedErr:E2}  torchsharp {torchErr:E2}"));
    }

    internal static double Relative(Tensor actual, Tensor expected)
    {
        double scale = Math.Max(1.0, expected.abs().max().item<float>());
        return (actual - expected).abs().max().item<float>() / scale;
    }
}
