using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Decay;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using Microsoft.ML.LinearAttention.Attention.Lightning;
using Microsoft.ML.LinearAttention.Attention.RetNet;
using Microsoft.ML.LinearAttention.Attention.SimpleGla;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// The causal decay part of `bench kernels --verify-fused`: <see cref="FusedDecayAttention.Causal"/> (tensor-core kernels
/// of simple GLA, RetNet and Lightning) against the recurrent twin <see cref="DecayKernels.CausalRecurrent"/> on fp32
/// copies of the inputs: outputs and q, k, v and log-decay gradients, bf16 and fp16, T ∈ {1, 37, 512, 1000}, B 1 and 3
/// (padded), (D, Dv) ∈ {(64, 64), (32, 48), (64, 128)}, gates logsigmoid(x)/16 (simple GLA's) and, at D = Dv = 64,
/// logsigmoid(x) (strong decay); the TorchSharp chunk form's error is printed beside it. Then the simple GLA, RetNet and
/// Lightning mixers (bf16, causal and bidirectional) with the routing to the kernels on vs off
/// (<see cref="FusedKernelOptions.DecayEnabled"/>).
/// </summary>
public static class FusedDecayVerification
{
    private const long Heads = 2;

    public static void Run(Device device, TextWriter log, ref int cases, ref int failures, ref double worst)
    {
        foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float16 })
        foreach (var (d, dv) in new[] { (64L, 64L), (32L, 48L), (64L, 128L) })
        foreach (double strength in d == 64 && dv == 64 ? new[] { 1.0 / 16, 1.0 } : new[] { 1.0 / 16 })
        foreach (long t in new long[] { 1, 37, 512, 1000 })
        foreach (long b in new long[] { 1, 3 })
        {
            var (pass, fusedErr, torchErr, path) = Check(device, dtype, b, t, d, dv, strength);
            FusedKernelVerification.RecordCase(log,
                $"decay {path,-8} gate/{1 / strength,-2} {FusedKernelVerification.Short(dtype),-4} B={b} T={t,4} D={d} Dv={dv} {(b > 1 ? "padded" : "      ")}",
                pass, fusedErr, torchErr, ref cases, ref failures, ref worst);
        }
        foreach (bool causal in new[] { true, false })
        foreach (var (name, mixer) in Mixers(device, causal))
            FusedKernelVerification.RecordMixerCheck(log, $"{name} {(causal ? "causal" : "bidirectional")} (decay mma): fused on vs off",
                () => FusedKernelVerification.MixerCheck(mixer, device, ScalarType.BFloat16,
                    fused => FusedKernelVerification.Switch(o => o with { DecayEnabled = fused })), ref cases, ref failures);
    }

    private static IEnumerable<(string, TokenMixer)> Mixers(Device device, bool causal)
    {
        var config = new MixerConfig(128, 2, Causal: causal);
        yield return ("simple_gla", new SimpleGlaMixer(config, new SimpleGlaOptions()).to(device).to(ScalarType.BFloat16));
        yield return ("retnet", new RetNetMixer(config, new RetNetOptions()).to(device).to(ScalarType.BFloat16));   // Dv = 128
        yield return ("lightning", new LightningMixer(config, new LightningOptions()).to(device).to(ScalarType.BFloat16));
    }

    private static (bool pass, double fused, double torch, string path) Check(Device device, ScalarType dtype, long b, long t, long d, long dv, double strength)
    {
        using var scope = NewDisposeScope();
        // Drawn on the CPU (seeded) so that every run checks the same inputs.
        torch.manual_seed(1000 * t + 10 * d + b + (strength < 1 ? 11 : 13));
        var q = torch.randn(b, Heads, t, d).to(device);
        var k = torch.randn(b, Heads, t, d).to(device);
        var v = torch.randn(b, Heads, t, dv).to(device);
        var g = (nn.functional.logsigmoid(torch.randn(b, Heads, t) * 2) * strength).to(device);
        var mask = FusedKernelVerification.PaddingMask(b, t, device);
        var upstream = torch.randn(b, Heads, t, dv).to(device).to(dtype);
        // "mma" when the kernels take the inputs; otherwise the call falls back and the case checks nothing new.
        string path = FusedDecayAttention.Reason(q.to(dtype), k.to(dtype), v.to(dtype), g, mask) is null ? "mma" : "fallback";
        var naive = OutputAndGradients(x => DecayKernels.CausalRecurrent(x[0], x[1], x[2], x[3], mask), q, k, v, g, upstream, ScalarType.Float32);
        var fused = OutputAndGradients(x => FusedDecayAttention.Causal(x[0], x[1], x[2], x[3], mask), q, k, v, g, upstream, dtype);
        var reference = OutputAndGradients(x => DecayKernels.CausalChunked(x[0], x[1], x[2], x[3], mask, null, DecayKernels.DefaultChunk), q, k, v, g, upstream, dtype);
        var (fusedErr, torchErr) = FusedKernelVerification.WorstErrors(naive, fused, reference);
        // (On the CPU this is a smoke test of the fallback.) The 16-bit rule of the other fused cases.
        bool pass = (path == "mma" || device.type != DeviceType.CUDA) && FusedKernelVerification.Passes(dtype, fusedErr, torchErr, 3e-2);
        return (pass, fusedErr, torchErr, path);
    }

    /// <summary>Output and gradients of q, k, v (as <paramref name="dtype"/>) and of the fp32 log decays g, all as fp32.</summary>
    private static Tensor[] OutputAndGradients(Func<Tensor[], Tensor> f, Tensor q, Tensor k, Tensor v, Tensor g, Tensor upstream, ScalarType dtype)
    {
        var x = new[] { q, k, v }.Select(a => a.detach().to(dtype).requires_grad_(true)).Append(g.detach().clone().requires_grad_(true)).ToArray();
        var o = f(x);
        var grads = torch.autograd.grad(new[] { o }, x, new[] { upstream.to(o.dtype) });
        return new[] { o }.Concat(grads).Select(a => a.detach().to(ScalarType.Float32)).ToArray();
    }
}
