using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Samples.Reporting;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench kernels`: fwd and fwd+bwd milliseconds and peak memory of every registered kernel benchmark case next to
/// SDPA, at a fixed token budget per batch (B = tokens / T), in one process, written to kernels.md and kernels.json.
/// </summary>
public static class KernelBenchmark
{
    /// <summary>One case at one length: wall milliseconds (median synchronized step, host overhead included), GPU milliseconds
    /// per step (CUDA events behind a spin kernel: device time alone; null on the CPU, and null with
    /// <paramref name="GpuHostBound"/> when the host could not stay ahead of the GPU, e.g. a step that synchronizes),
    /// peak memory, or the error.</summary>
    public sealed record Result(string Mechanism, string Case, bool Causal, long T, long B, double? FwdMs, double? FwdBwdMs, double? PeakMiB, string? Error,
        double? GpuFwdMs = null, double? GpuFwdBwdMs = null, bool GpuHostBound = false);

    public static int Run(KernelBenchmarkOptions options, TextWriter log)
    {
        TorchRuntime.EnsureLoaded();
        bool cuda = options.Device is null ? torch.cuda.is_available() : options.Device == "cuda";
        if (cuda && !torch.cuda.is_available())
            throw new ArgumentException("--device cuda was asked for but CUDA is not available: " + DevicePolicy.DescribeMissingCudaForSamples());
        var device = cuda ? new Device(DeviceType.CUDA, 0) : torch.CPU;
        var dtype = (options.DType ?? (cuda ? "bf16" : "fp32")) switch
        {
            "bf16" => ScalarType.BFloat16,
            "fp32" => ScalarType.Float32,
            var d => throw new ArgumentException($"--dtype {d} is not supported; use bf16 or fp32."),
        };
        if (options.VerifyFused) return VerifyFused(options, device, log);
        if (options.ProfileFused) return FusedKernelProfile.Run(options, device, dtype, log);
        if (options.ProfileDelta) return DeltaRuleProfile.Run(options, device, dtype, log);
        bool gpuTime = cuda && FusedLinearAttention.UnavailableReason(device) is null;
        var memory = cuda ? new CudaMemoryProbe(0) : null;
        if (options.Only != null)
            foreach (var unknown in options.Only.Where(n => !MixerRegistry.Contains(n)))
                throw new ArgumentException($"--only names an unknown mechanism '{unknown}'. Known: {string.Join(", ", MixerRegistry.All.Select(m => m.Name))}.");
        if (options.From != null && !MixerRegistry.Contains(options.From))
            throw new ArgumentException($"--from names an unknown mechanism '{options.From}'. Known: {string.Join(", ", MixerRegistry.All.Select(m => m.Name))}.");
        var mechanisms = MixerRegistry.All.Where(m => m.BenchCases != null
            && (options.Only == null || options.Only.Contains(m.Name, StringComparer.OrdinalIgnoreCase))
            && (options.From == null || string.Compare(m.Name, options.From, StringComparison.OrdinalIgnoreCase) >= 0)).ToList();
        log.WriteLine($"bench kernels on {device} ({options.Machine}), {dtype}, {options.TokensPerBatch} tokens per batch, H={options.Heads}, D={options.HeadDim}; memory: {memory?.Unavailable ?? (cuda ? "cudaMallocAsync pool high-water mark" : "not measured on CPU")}");

        var results = new List<Result>();
        var tooSlow = new HashSet<string>();
        foreach (var mechanism in mechanisms)
        foreach (long t in options.Lengths)
        {
            long b = Math.Max(1, options.TokensPerBatch / t);
            var shape = new KernelBenchShape(b, options.Heads, t, options.HeadDim, dtype, device);
            foreach (var benchCase in mechanism.BenchCases!(shape))
            {
                if (options.Cases != null && !options.Cases.Any(c => benchCase.Name.Contains(c, StringComparison.OrdinalIgnoreCase))) continue;
                string key = mechanism.Name + "/" + benchCase.Name;
                if (tooSlow.Contains(key)) { results.Add(new Result(mechanism.Name, benchCase.Name, benchCase.Causal, t, b, null, null, null, "skipped: over 5 s per step at a shorter length")); continue; }
                var watch = Stopwatch.StartNew();
                var result = Measure(mechanism.Name, benchCase, t, b, cuda, gpuTime, device, memory, options.SecondsPerCase);
                results.Add(result);
                if (result.FwdBwdMs > 5000) tooSlow.Add(key);
                log.WriteLine($"{key,-40} T={t,6} B={b,3}  fwd {Fmt(result.FwdMs)} ms  fwd+bwd {Fmt(result.FwdBwdMs)} ms  GPU {Fmt(result.GpuFwdMs)} | {Fmt(result.GpuFwdBwdMs)} ms{(result.GpuHostBound ? " (host-bound)" : "")}  peak {Fmt(result.PeakMiB)} MiB  [{watch.Elapsed.TotalSeconds:F1} s] {result.Error}");
            }
            // Rewritten after every length: a run cut short (time limit) still leaves the rows measured so far.
            Write(options, device, dtype, memory, results, complete: false);
        }
        Write(options, device, dtype, memory, results, complete: true);
        log.WriteLine($"wrote {Path.Combine(options.OutputDirectory, "kernels.md")} and kernels.json");
        return 0;
    }

    /// <summary>Runs the verification, printing as it goes, and writes its whole output to fused-verification.md with the
    /// command, commit and machine.</summary>
    private static int VerifyFused(KernelBenchmarkOptions options, Device device, TextWriter log)
    {
        var output = new StringWriter();
        int exit = FusedKernelVerification.Run(device, new TeeWriter(log, output), options.Only);
        var md = new StringBuilder();
        GeneratedMarkdown.Header(md, "`bench kernels --verify-fused`", GeneratedMarkdown.SamplesCommand(options.CommandLine));
        md.AppendLine($"- commit: `{options.Commit}`; machine: {options.Machine}; device: {device}; libtorch {torch.__version__}; exit code {exit}");
        md.AppendLine("- each line: path (cuda = CUDA-core kernels, mma = tensor-core kernels), feature map, dtype, shape, and the worst relative error of the output and q/k/v gradients against the naive fp32 twin, beside the TorchSharp path's own error; then the mixers with the fused path on vs off; then the causal kernels");
        md.AppendLine();
        md.AppendLine("```");
        md.Append(output.ToString());
        md.AppendLine("```");
        Directory.CreateDirectory(options.OutputDirectory);
        var path = Path.Combine(options.OutputDirectory, "fused-verification.md");
        File.WriteAllText(path, md.ToString());
        log.WriteLine("wrote " + path);
        return exit;
    }

    private sealed class TeeWriter(TextWriter first, TextWriter second) : TextWriter
    {
        public override Encoding Encoding => first.Encoding;
        public override void Write(char value) { first.Write(value); second.Write(value); }
        public override void Write(string? value) { first.Write(value); second.Write(value); }
        public override void WriteLine(string? value) { first.WriteLine(value); second.WriteLine(value); }
    }

    private static void Write(KernelBenchmarkOptions options, Device device, ScalarType dtype, CudaMemoryProbe? memory, List<Result> results, bool complete)
    {
        Directory.CreateDirectory(options.OutputDirectory);
        File.WriteAllText(Path.Combine(options.OutputDirectory, "kernels.json"), JsonSerializer.Serialize(new { CommandLine = GeneratedMarkdown.Portable(options.CommandLine), options.Commit, options.Machine, Device = device.ToString(), DType = dtype.ToString(), options.TokensPerBatch, options.Heads, options.HeadDim, Complete = complete, Results = results }, new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(options.OutputDirectory, "kernels.md"), Markdown(options, device, dtype, memory, results, complete));
    }

    private static Result Measure(string mechanism, KernelBenchCase benchCase, long t, long b, bool cuda, bool gpuTime, Device device, CudaMemoryProbe? memory, double seconds)
    {
        try
        {
            using var scope = NewDisposeScope();
            var inputs = benchCase.MakeInputs();
            void Sync() { if (cuda) torch.cuda.synchronize(device); }
            void Forward() { using var s = NewDisposeScope(); using var _ = torch.no_grad(); benchCase.Run(inputs); }
            var learned = inputs.Where(i => i.requires_grad).ToArray();
            Tensor? upstream = null;
            // torch.autograd.grad returns fresh gradients: no accumulation pass into .grad is timed.
            void ForwardBackward()
            {
                using var s = NewDisposeScope();
                var output = benchCase.Run(inputs);
                upstream ??= torch.ones_like(output).DetachFromDisposeScope();
                torch.autograd.grad(new[] { output }, learned, new[] { upstream }, allow_unused: true);
            }
            // Warm-up (kernel selection, allocator), then time until the budget is spent (at least 3 repetitions).
            ForwardBackward(); Forward(); Sync();
            double fwd = Time(Forward, Sync, seconds / 2);
            memory?.ResetPeak();
            double fwdBwd = Time(ForwardBackward, Sync, seconds / 2);
            double? peak = memory?.PeakBytes() is long bytes ? bytes / (1024.0 * 1024.0) : null;
            double? gpuFwd = null, gpuFwdBwd = null;
            bool hostBound = false;
            if (gpuTime)
            {
                // As many repetitions as the wall budget allows (3 to 50), all enqueued behind one spin kernel. A host-bound
                // figure includes idle gaps (and, for a step that synchronizes, the hold itself): it is left out.
                int Reps(double ms) => (int)Math.Clamp(seconds / 2 * 1000 / Math.Max(ms, 1e-3), 3, 50);
                var forward = GpuTimer.Measure(device, Forward, Reps(fwd));
                var forwardBackward = GpuTimer.Measure(device, ForwardBackward, Reps(fwdBwd));
                hostBound = forward.HostBound || forwardBackward.HostBound;
                if (!hostBound) (gpuFwd, gpuFwdBwd) = (forward.GpuMilliseconds, forwardBackward.GpuMilliseconds);
                else Console.Error.WriteLine($"{mechanism}/{benchCase.Name} T={t}: host-bound GPU timing (host {forward.HostMilliseconds:F3} | {forwardBackward.HostMilliseconds:F3} ms per step, GPU {forward.GpuMilliseconds:F3} | {forwardBackward.GpuMilliseconds:F3} ms with gaps)");
            }
            upstream?.Dispose();
            return new Result(mechanism, benchCase.Name, benchCase.Causal, t, b, fwd, fwdBwd, peak, null, gpuFwd, gpuFwdBwd, hostBound);
        }
        catch (Exception e)
        {
            string message = e.Message.Split('\n')[0];
            return new Result(mechanism, benchCase.Name, benchCase.Causal, t, b, null, null, null, "error: " + (message.Length > 160 ? message[..160] : message));
        }
    }

    /// <summary>Median of synchronized steps (at least 3, up to 50 or the time budget): a garbage collection or
    /// allocator stall in one step does not move it.</summary>
    private static double Time(Action step, Action sync, double seconds)
    {
        var steps = new List<double>();
        var total = Stopwatch.StartNew();
        sync();
        do
        {
            long start = Stopwatch.GetTimestamp();
            step();
            sync();
            steps.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        } while (steps.Count < 3 || (total.Elapsed.TotalSeconds < seconds && steps.Count < 50));
        steps.Sort();
        return steps.Count % 2 == 1 ? steps[steps.Count / 2] : (steps[steps.Count / 2 - 1] + steps[steps.Count / 2]) / 2;
    }

    private static void Table(StringBuilder md, string title, List<long> lengths, List<Result> results, Func<Result, string?> cell)
    {
        md.AppendLine("## " + title);
        md.AppendLine();
        md.AppendLine("| mechanism | case | " + string.Join(" | ", lengths.Select(t => $"T={t}")) + " |");
        md.AppendLine("|---|---|" + string.Concat(lengths.Select(_ => "---|")));
        foreach (var group in results.GroupBy(r => (r.Mechanism, r.Case)))
        {
            var cells = lengths.Select(t => group.FirstOrDefault(r => r.T == t) is { } r
                ? r.Error is null ? cell(r) ?? "—" : r.Error.Replace("|", "/")
                : "");
            md.AppendLine($"| {group.Key.Mechanism} | {group.Key.Case} | {string.Join(" | ", cells)} |");
        }
        md.AppendLine();
    }

    private static string SpeedUp(List<Result> results, Result r, Func<Result, double?> time)
    {
        var sdpa = results.FirstOrDefault(x => x.Mechanism == "softmax" && x.T == r.T && x.Case == (r.Causal ? "sdpa causal" : "sdpa"));
        return time(r) is double mine && sdpa is not null && time(sdpa) is double reference ? (reference / mine).ToString("F2", CultureInfo.InvariantCulture) + "×" : "—";
    }

    private static string Fmt(double? v) => v is null ? "—" : v.Value.ToString(v < 10 ? "F3" : v < 100 ? "F2" : "F1", CultureInfo.InvariantCulture);

    private static string Markdown(KernelBenchmarkOptions o, Device device, ScalarType dtype, CudaMemoryProbe? memory, List<Result> results, bool complete)
    {
        var md = new StringBuilder();
        GeneratedMarkdown.Header(md, "Attention kernel benchmark", GeneratedMarkdown.SamplesCommand(o.CommandLine),
            complete ? null : "**Partial: the run ended before every mechanism was measured.**");
        md.AppendLine($"- commit: `{o.Commit}`; machine: {o.Machine}; device: {device}; dtype: {dtype}; libtorch {torch.__version__}");
        md.AppendLine($"- {o.TokensPerBatch} tokens per batch (B = tokens / T), H = {o.Heads}, D = {o.HeadDim}; kernels only (no projections); fwd under no_grad, fwd+bwd with an all-ones upstream gradient (torch.autograd.grad, no accumulation into .grad)");
        md.AppendLine($"- peak memory: {(memory == null ? "not measured on CPU" : memory.Unavailable ?? "high-water mark of the CUDA default memory pool during fwd+bwd (PyTorch allocator backend cudaMallocAsync), inputs included")}");
        md.AppendLine();
        var lengths = results.Select(r => r.T).Distinct().OrderBy(t => t).ToList();
        bool gpu = results.Any(r => r.GpuFwdBwdMs is not null);
        if (gpu)
        {
            md.AppendLine("Two clocks: **GPU** = device time per step between CUDA events, every repetition enqueued behind a spin kernel so that the");
            md.AppendLine("host's launch overhead is hidden (as CUTLASS's profiler and nvbench measure; a training loop overlaps that overhead");
            md.AppendLine("with other layers' GPU work); **wall** = median host milliseconds of steps each followed by a synchronization (host");
            md.AppendLine("overhead included: TorchSharp's managed autograd functions cost more of it than libtorch's built-in operators).");
            md.AppendLine();
            Table(md, "GPU milliseconds, `fwd | fwd+bwd` (host-bound: the GPU may have idled between runs — a host slower than the GPU, a step that synchronizes, or a step of more kernels than the launch queue holds, which the timer cannot tell apart; see the wall table)", lengths, results,
                r => r.GpuHostBound ? "host-bound" : r.GpuFwdBwdMs is null ? null : $"{Fmt(r.GpuFwdMs)} \\| {Fmt(r.GpuFwdBwdMs)}");
            Table(md, "GPU fwd+bwd speed-up over SDPA of the same direction (SDPA time / kernel time; > 1 is faster)", lengths, results,
                r => SpeedUp(results, r, x => x.GpuFwdBwdMs));
        }
        Table(md, (gpu ? "Wall milliseconds" : "Milliseconds") + ", `fwd | fwd+bwd`, and peak MiB", lengths, results,
            r => $"{Fmt(r.FwdMs)} \\| {Fmt(r.FwdBwdMs)}" + (r.PeakMiB is null ? "" : $" ({r.PeakMiB:F0} MiB)"));
        Table(md, (gpu ? "Wall " : "") + "fwd+bwd speed-up over SDPA of the same direction (SDPA time / kernel time; > 1 is faster)", lengths, results,
            r => SpeedUp(results, r, x => x.FwdBwdMs));
        return md.ToString();
    }
}
