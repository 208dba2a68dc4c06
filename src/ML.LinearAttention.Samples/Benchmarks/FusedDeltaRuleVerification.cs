using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using Microsoft.ML.LinearAttention.Attention.GatedDeltaNet;
using Microsoft.ML.LinearAttention.Attention.Kda;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// The delta-rule part of `bench kernels --verify-fused` (--only delta): <see cref="DeltaRule.Chunked"/> and
/// <see cref="DeltaRule.Bidirectional"/> with the chunk scan on <see cref="FusedDeltaRuleState"/>'s kernels
/// against the token-by-token twins (<see cref="DeltaRule.Recurrent"/>, <see cref="DeltaRule.BidirectionalRecurrent"/>)
/// in fp32: output and the gradients of q, k, v, β and the log decays; the chunk loop's own error is printed beside it.
/// No decay (DeltaNet), one per head (Gated DeltaNet) and one per key channel (KDA); T ∈ {1, 37, 200, 1000}, B 1 and 3
/// (padded), (Dk, Dv) ∈ {(64, 64), (32, 48)}, fp32 and bf16 inputs. Then the DeltaNet, Gated DeltaNet and KDA mixers
/// (bf16, causal and bidirectional) with the kernels on vs off (<see cref="FusedKernelOptions.DeltaRuleEnabled"/>).
/// </summary>
public static class FusedDeltaRuleVerification
{
    private const long Heads = 2;

    public static void Run(Device device, TextWriter log, ref int cases, ref int failures, ref double worst)
    {
        foreach (var gate in new[] { "none", "head", "channel" })
        foreach (bool causal in new[] { true, false })
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        foreach (var (dk, dv) in new[] { (64L, 64L), (32L, 48L) })
        foreach (long t in causal ? new long[] { 1, 37, 200, 1000 } : new long[] { 37, 200 })
        foreach (long b in new long[] { 1, 3 })
        {
            var (pass, fusedErr, torchErr, path) = Check(device, gate, causal, dtype, b, t, dk, dv);
            FusedKernelVerification.RecordCase(log,
                $"delta {path,-6} {(causal ? "causal" : "bidir "),-6} gate={gate,-7} {FusedKernelVerification.Short(dtype),-4} B={b} T={t,4} Dk={dk} Dv={dv} {(b > 1 ? "padded" : "      ")}",
                pass, fusedErr, torchErr, ref cases, ref failures, ref worst);
        }
        foreach (bool causal in new[] { true, false })
        foreach (var (name, mixer) in Mixers(device, causal))
            FusedKernelVerification.RecordMixerCheck(log, $"{name} {(causal ? "causal" : "bidirectional")} (delta scan): fused on vs off",
                () => FusedKernelVerification.MixerCheck(mixer, device, ScalarType.BFloat16,
                    fused => FusedKernelVerification.Switch(o => o with { DeltaRuleEnabled = fused })), ref cases, ref failures);
    }

    private static IEnumerable<(string, TokenMixer)> Mixers(Device device, bool causal)
    {
        var config = new MixerConfig(128, 2, Causal: causal);
        yield return ("deltanet", new DeltaNetMixer(config, new DeltaNetOptions()).to(device).to(ScalarType.BFloat16));
        yield return ("gated_deltanet", new GatedDeltaNetMixer(config, new GatedDeltaNetOptions()).to(device).to(ScalarType.BFloat16));
        yield return ("kda", new KdaMixer(config, new KdaOptions()).to(device).to(ScalarType.BFloat16));
    }

    private static (bool pass, double fused, double torch, string path) Check(Device device, string gate, bool causal, ScalarType dtype,
        long b, long t, long dk, long dv)
    {
        using var scope = NewDisposeScope();
        // Drawn on the CPU (seeded) so that every run checks the same inputs; q and k L2-normalized as the layers pass them.
        torch.manual_seed(1000 * t + 10 * dk + b + gate.Length + (causal ? 0 : 5));
        var q = DeltaRule.L2Normalize(torch.randn(b, Heads, t, dk)).to(device);
        var k = DeltaRule.L2Normalize(torch.randn(b, Heads, t, dk)).to(device);
        var v = torch.randn(b, Heads, t, dv).to(device);
        var beta = torch.sigmoid(torch.randn(b, Heads, t)).to(device);
        Tensor? g = gate switch
        {
            "head" => nn.functional.logsigmoid(torch.randn(b, Heads, t) * 2 + 2).to(device),
            "channel" => nn.functional.logsigmoid(torch.randn(b, Heads, t, dk) * 2 + 2).to(device),
            _ => null,
        };
        var mask = FusedKernelVerification.PaddingMask(b, t, device);
        var upstream = torch.randn(b, Heads, t, dv).to(device);
        var inputs = g is null ? new[] { q, k, v, beta } : new[] { q, k, v, beta, g };
        Tensor Call(Tensor[] x, bool naive)
        {
            var gx = x.Length > 4 ? x[4] : null;
            if (causal) return naive ? DeltaRule.Recurrent(x[0], x[1], x[2], x[3], gx, mask) : DeltaRule.Chunked(x[0], x[1], x[2], x[3], gx, mask);
            // The reverse scan reuses the forward's β and gates (the mixers give it its own; the kernels do not care).
            return naive ? DeltaRule.BidirectionalRecurrent(x[0], x[1], x[2], x[3], gx, x[3], gx, mask)
                         : DeltaRule.Bidirectional(x[0], x[1], x[2], x[3], gx, x[3], gx, mask);
        }
        Tensor[] Pass(bool naive, bool fused, ScalarType type)
        {
            using var _ = FusedKernelVerification.Switch(o => o with { DeltaRuleEnabled = fused });
            // β and the gates stay fp32 (the layers compute them in fp32); q, k, v take the case's dtype.
            var x = inputs.Select((a, i) => (i < 3 ? a.detach().to(type) : a.detach().clone()).requires_grad_(true)).ToArray();
            var o = Call(x, naive);
            var grads = torch.autograd.grad(new[] { o }, x, new[] { upstream.to(o.dtype) });
            return new[] { o }.Concat(grads).Select(a => a.detach().to(ScalarType.Float32)).ToArray();
        }
        string path = device.type == DeviceType.CUDA && FusedDeltaRuleState.Reason(torch.empty(1, 1, DeltaRule.DefaultChunk, dk, device: device), dv) is null ? "fused" : "loop";
        var naive = Pass(naive: true, fused: false, ScalarType.Float32);
        var fusedOut = Pass(naive: false, fused: true, dtype);
        var reference = Pass(naive: false, fused: false, dtype);
        var (fusedErr, torchErr) = FusedKernelVerification.WorstErrors(naive, fusedOut, reference);
        // (On the CPU this is a smoke test of the loop.) fp32: the chunk form's reassociation only.
        bool pass = (path == "fused" || device.type != DeviceType.CUDA)
                    && FusedKernelVerification.Passes(dtype, fusedErr, torchErr, dtype == ScalarType.Float32 ? 1e-3 : 3e-2);
        return (pass, fusedErr, torchErr, path);
    }
}
