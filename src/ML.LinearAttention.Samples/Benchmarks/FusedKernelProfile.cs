using System.Globalization;
using System.Text;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Samples.Reporting;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench kernels --profile-fused`: GPU milliseconds of each fused bidirectional kernel (FusedLinearAttentionProfile)
/// at the benchmark's token budget and lengths, written to fused-profile.md (artifacts/benchmarks/ unless --out says
/// otherwise): where the fused fwd+bwd time goes.
/// </summary>
internal static class FusedKernelProfile
{
    public static int Run(KernelBenchmarkOptions options, Device device, ScalarType dtype, TextWriter log)
    {
        if (FusedLinearAttention.UnavailableReason(device) is { } reason)
            throw new ArgumentException("--profile-fused needs a CUDA device with the driver and NVRTC: " + reason);
        var rows = new List<(string Variant, string Part, long T, GpuTiming Timing)>();
        foreach (var map in new[] { FusedFeatureMap.Relu, FusedFeatureMap.Elu })
        foreach (bool mma in new[] { true, false })
        foreach (long t in options.Lengths)
        {
            using var scope = NewDisposeScope();
            long b = Math.Max(1, options.TokensPerBatch / t);
            var q = torch.randn(new[] { b, options.Heads, t, options.HeadDim }, dtype: dtype, device: device);
            var k = torch.randn(new[] { b, options.Heads, t, options.HeadDim }, dtype: dtype, device: device);
            var v = torch.randn(new[] { b, options.Heads, t, options.HeadDim }, dtype: dtype, device: device);
            string variant = $"{map.ToString().ToLowerInvariant()} {(mma ? "tensor-core" : "CUDA-core")}";
            foreach (var (part, timing) in FusedLinearAttentionProfile.Run(q, k, v, map, mma))
            {
                rows.Add((variant, part, t, timing));
                log.WriteLine($"{variant,-20} {part,-18} T={t,6}  GPU {timing.GpuMilliseconds:F4} ms  host {timing.HostMilliseconds:F4} ms{(timing.HostBound ? "  (host-bound)" : "")}");
            }
        }
        var md = new StringBuilder();
        GeneratedMarkdown.Header(md, "Fused kernel profile", GeneratedMarkdown.SamplesCommand(options.CommandLine));
        md.AppendLine($"- commit: `{options.Commit}`; machine: {options.Machine}; device: {device}; dtype: {dtype}; libtorch {torch.__version__}");
        md.AppendLine($"- {options.TokensPerBatch} tokens per batch (B = tokens / T), H = {options.Heads}, D = Dv = {options.HeadDim}, no mask");
        md.AppendLine("- GPU: device milliseconds per run (CUDA events, runs enqueued behind a spin kernel); host: milliseconds the host took to enqueue one run. Each kernel row includes its buffer allocation (zeroed fp32 state or gradient).");
        md.AppendLine();
        var lengths = rows.Select(r => r.T).Distinct().OrderBy(t => t).ToList();
        md.AppendLine("| variant | part | " + string.Join(" | ", lengths.Select(t => $"T={t} GPU \\| host")) + " |");
        md.AppendLine("|---|---|" + string.Concat(lengths.Select(_ => "---|")));
        foreach (var group in rows.GroupBy(r => (r.Variant, r.Part)))
        {
            var cells = lengths.Select(t => group.FirstOrDefault(r => r.T == t) is { Timing: { } x }
                ? string.Create(CultureInfo.InvariantCulture, $"{x.GpuMilliseconds:F3} \\| {x.HostMilliseconds:F3}{(x.HostBound ? " (host-bound)" : "")}")
                : "");
            md.AppendLine($"| {group.Key.Variant} | {group.Key.Part} | {string.Join(" | ", cells)} |");
        }
        Directory.CreateDirectory(options.OutputDirectory);
        var path = Path.Combine(options.OutputDirectory, "fused-profile.md");
        File.WriteAllText(path, md.ToString());
        log.WriteLine("wrote " + path);
        return 0;
    }
}
