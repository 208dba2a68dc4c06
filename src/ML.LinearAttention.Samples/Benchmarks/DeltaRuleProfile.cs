using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench kernels --profile-delta`: forward + backward milliseconds of each stage of the delta rule's chunk form
/// (<see cref="DeltaRule.ChunkedCore"/>) at the benchmark's token budget and lengths, for no decay (DeltaNet), one decay
/// per head (Gated DeltaNet) and one per key channel (KDA), written to delta-profile.md (artifacts/benchmarks/ unless
/// --out says otherwise). Each stage runs alone on inputs the stages before it produced from random L2-normalised q
/// and k (detached, so its own backward is all that is timed), with an upstream gradient of ones; the whole causal
/// call is timed beside them. On CUDA the times are device time (<see cref="GpuTimer"/>); on the CPU, wall clock.
/// </summary>
internal static class DeltaRuleProfile
{
    private const int Repetitions = 5;

    public static int Run(KernelBenchmarkOptions options, Device device, ScalarType dtype, TextWriter log)
    {
        bool cuda = device.type == DeviceType.CUDA;
        if (cuda && FusedLinearAttention.UnavailableReason(device) is { } reason)
            throw new ArgumentException("--profile-delta times device work on CUDA and needs the driver and NVRTC: " + reason);
        var rows = new List<(string Gate, string Stage, long T, double Ms)>();
        foreach (var gate in new[] { "none", "head", "channel" })
        foreach (long t in options.Lengths)
        {
            long b = Math.Max(1, options.TokensPerBatch / t);
            foreach (var (stage, ms) in Stages(device, dtype, gate, b, options.Heads, t, options.HeadDim))
            {
                rows.Add((gate, stage, t, ms));
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"gate={gate,-7} T={t,6} {stage,-34} {ms,9:F3} ms"));
            }
        }
        var md = new StringBuilder();
        GeneratedMarkdown.Header(md, "Delta-rule chunk form, stage by stage", GeneratedMarkdown.SamplesCommand(options.CommandLine));
        md.AppendLine($"- commit: `{options.Commit}`; machine: {options.Machine}; device: {device}; q, k, v dtype: {dtype} (the stages compute in fp32); libtorch {torch.__version__}");
        md.AppendLine($"- {options.TokensPerBatch} tokens per batch (B = tokens / T), H = {options.Heads}, Dk = Dv = {options.HeadDim}, chunk {DeltaRule.DefaultChunk}, no mask; " +
                      $"the chunk scan on {(cuda && FusedKernelOptions.Current.DeltaRuleEnabled ? "the fused kernel (FusedDeltaRuleState)" : "the TorchSharp loop")}");
        md.AppendLine($"- milliseconds of forward + backward per run ({(cuda ? "device time, CUDA events, the host's launch overhead hidden" : "wall clock")}), " +
                      $"mean of {Repetitions} runs after one warm-up; each stage alone on detached inputs, upstream gradient of ones.");
        md.AppendLine();
        var lengths = rows.Select(r => r.T).Distinct().OrderBy(t => t).ToList();
        md.AppendLine("| decay | stage | " + string.Join(" | ", lengths.Select(t => $"T={t}")) + " |");
        md.AppendLine("|---|---|" + string.Concat(lengths.Select(_ => "---:|")));
        foreach (var group in rows.GroupBy(r => (r.Gate, r.Stage)))
            md.AppendLine($"| {group.Key.Gate} | {group.Key.Stage} | " +
                          string.Join(" | ", lengths.Select(t => group.FirstOrDefault(r => r.T == t) is { Stage: not null } x ? x.Ms.ToString("F3", CultureInfo.InvariantCulture) : "")) + " |");
        Directory.CreateDirectory(options.OutputDirectory);
        var path = Path.Combine(options.OutputDirectory, "delta-profile.md");
        File.WriteAllText(path, md.ToString());
        log.WriteLine("wrote " + path);
        return 0;
    }

    /// <summary>The stages of one shape, each forward + backward alone, then the whole call.</summary>
    private static IEnumerable<(string Stage, double Ms)> Stages(Device device, ScalarType dtype, string gate, long b, long h, long t, long d)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(17);
        var q = DeltaRule.L2Normalize(torch.randn(b, h, t, d)).to(device).to(dtype);
        var k = DeltaRule.L2Normalize(torch.randn(b, h, t, d)).to(device).to(dtype);
        var v = torch.randn(b, h, t, d).to(device).to(dtype);
        var beta = torch.sigmoid(torch.randn(b, h, t)).to(device);
        Tensor? g = gate switch
        {
            "head" => nn.functional.logsigmoid(torch.randn(b, h, t) + 3).to(device),
            "channel" => nn.functional.logsigmoid(torch.randn(b, h, t, d) + 3).to(device),
            _ => null,
        };
        int chunk = DeltaRule.DefaultChunk;
        // One pass through the stages for realistic inputs of each.
        var c = DeltaRule.ToChunks(q, k, v, beta, g, null, null, chunk);
        var intra = DeltaRuleIntra.Compute(c.Q, c.K, c.G, chunk);
        var (akk, aqk) = DeltaRule.Masked(intra, c.Beta, 0, b, h, chunk);
        var (w, u) = DeltaRule.UtTransform(akk, intra.KDecayed, c.V, c.Beta, d);
        var (before, vNew) = DeltaRule.InterChunk(w, u, intra.KToEnd, intra.EndDecay, b * h, d, d);

        Tensor Leaf(Tensor x) => x.detach().clone().requires_grad_(true);
        var (qc, kc, gc) = (Leaf(c.Q), Leaf(c.K), c.G is null ? null : Leaf(c.G));
        yield return ("intra-chunk products and decays", Time(device, gc is null ? new[] { qc, kc } : new[] { qc, kc, gc }, () =>
        {
            var p = DeltaRuleIntra.Compute(qc, kc, gc, chunk);
            return new[] { p.Akk, p.Aqk, p.QDecayed, p.KDecayed, p.KToEnd, p.EndDecay }.Where(x => x is not null).Cast<Tensor>().ToArray();
        }));
        var (lakk, lkd, lv, lb) = (Leaf(akk), Leaf(intra.KDecayed), Leaf(c.V), Leaf(c.Beta));
        yield return ("UT transform (triangular solve)", Time(device, new[] { lakk, lkd, lv, lb }, () =>
        {
            var (ww, uu) = DeltaRule.UtTransform(lakk, lkd, lv, lb, d);
            return new[] { ww, uu };
        }));
        var (lw, lu, lkt) = (Leaf(w), Leaf(u), Leaf(intra.KToEnd));
        var ld = intra.EndDecay is null ? null : Leaf(intra.EndDecay);
        var scanInputs = ld is null ? new[] { lw, lu, lkt } : new[] { lw, lu, lkt, ld };
        yield return ($"chunk scan ({(device.type == DeviceType.CUDA && FusedDeltaRuleState.Reason(w, d) is null ? "fused kernel" : "loop")})", Time(device, scanInputs, () =>
        {
            var (s, x) = DeltaRule.InterChunk(lw, lu, lkt, ld, b * h, d, d);
            return new[] { s, x };
        }));
        var (lqd, lbefore, laqk, lvn) = (Leaf(intra.QDecayed), Leaf(before), Leaf(aqk), Leaf(vNew));
        yield return ("outputs (Q S + A_qk V')", Time(device, new[] { lqd, lbefore, laqk, lvn }, () => new[] { DeltaRule.Outputs(lqd, lbefore, laqk, lvn) }));
        var whole = g is null ? new[] { Leaf(q), Leaf(k), Leaf(v), Leaf(beta) } : new[] { Leaf(q), Leaf(k), Leaf(v), Leaf(beta), Leaf(g) };
        yield return ("whole causal call (DeltaRule.Chunked)", Time(device, whole,
            () => new[] { DeltaRule.Chunked(whole[0], whole[1], whole[2], whole[3], whole.Length > 4 ? whole[4] : null, null) }));
    }

    /// <summary>Forward + backward milliseconds per run of <paramref name="forward"/> (upstream gradients of ones).</summary>
    private static double Time(Device device, Tensor[] inputs, Func<Tensor[]> forward)
    {
        void Step()
        {
            using var inner = NewDisposeScope();
            var ys = forward();
            torch.autograd.grad(ys, inputs, ys.Select(y => ones_like(y)).ToArray(), allow_unused: true);
        }
        Step();   // warm-up: allocator, module load
        if (device.type == DeviceType.CUDA) return GpuTimer.Measure(device, Step, Repetitions).GpuMilliseconds;
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < Repetitions; i++) Step();
        return watch.Elapsed.TotalMilliseconds / Repetitions;
    }
}
