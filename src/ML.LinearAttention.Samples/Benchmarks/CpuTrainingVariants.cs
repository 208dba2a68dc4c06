using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Samples.Reporting;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>The variants `bench cpu-training` compares in one process: the CPU fast paths of the training loop off
/// (baseline, fp32) or on (optimized, fp32), and bf16 (the fast paths on, Precision = BFloat16).</summary>
public static class CpuTrainingVariants
{
    public static readonly string[] Names = { "baseline", "optimized", "bf16" };

    /// <summary>Sets the process-wide switches of <paramref name="variant"/>; disposing restores them.</summary>
    public static IDisposable Apply(string variant)
    {
        if (!Names.Contains(variant)) throw new ArgumentException($"Unknown variant '{variant}'; use {string.Join(" or ", Names)}.");
        var (adamW, dropout, scores) = (CpuFastPaths.FusedAdamW, CpuFastPaths.FastDropout, CpuFastPaths.ExplicitScoresForShortSequences);
        bool on = variant != "baseline";
        (CpuFastPaths.FusedAdamW, CpuFastPaths.FastDropout, CpuFastPaths.ExplicitScoresForShortSequences) = (on, on, on);
        return new Restore(() => (CpuFastPaths.FusedAdamW, CpuFastPaths.FastDropout, CpuFastPaths.ExplicitScoresForShortSequences) = (adamW, dropout, scores));
    }

    /// <summary>The training precision of <paramref name="variant"/>: explicit, so that the record does not depend on what
    /// Auto picks on the machine (bf16 for MiniLM on a CPU with bf16 instructions).</summary>
    public static Training.TrainingPrecision Precision(string variant) =>
        variant == "bf16" ? Training.TrainingPrecision.BFloat16 : Training.TrainingPrecision.Float32;

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }
}

/// <summary>
/// The builds `bench cpu-training --baseline-harness … --current-harness …` compares: the same console harness
/// (tools/cpu-baseline) built once against an older tree of the library (e.g. commit df3f3f1) and once against the
/// current one. Each fit is a fresh `dotnet CpuBaseline.dll` process on the same rows file, old and new alternating
/// (ABBA over the repeats), with the warm-up and timed steps of the in-process variants; the medians are compared.
/// </summary>
public static class CpuTrainingBuilds
{
    /// <summary>The start of the harness's result line on stdout.</summary>
    public const string ResultPrefix = "CPU-BASELINE-RESULT ";
    /// <summary>Issue 26: the current build's CPU tokens/s of MiniLM full fine-tuning at least this multiple of df3f3f1's.</summary>
    public const double Target = 3.0;
    /// <summary>The harness's precision settings: the options' Precision left at Auto (each build's own default), Float32, BFloat16.</summary>
    public static readonly string[] Precisions = { "auto", "fp32", "bf16" };

    /// <summary>One fit of one build. <paramref name="TokenCount"/>: "exact" (TrainingProgress.TokensSeen) or "reconstructed"
    /// (TokensPerSecond × the time since the trainer's "Training:" log line, for builds without TokensSeen).</summary>
    public sealed record Run(string Build, string Label, string Workload, string Precision, string PrecisionUsed, int Repeat, int Threads,
        int TimedSteps, long Tokens, string TokenCount, double ReconstructedTokens, double Seconds, double TokensPerSecond, double FitSeconds, string LibraryRoot);

    /// <summary>The fits of one build at one (workload, precision, threads): median tokens/s, min–max.</summary>
    public sealed record Summary(string Build, string Label, string Workload, string Precision, int Threads, string PrecisionUsed,
        double MedianTokensPerSecond, double MinTokensPerSecond, double MaxTokensPerSecond, double TokensPerStep, int Fits);

    /// <summary>Current against baseline at one (workload, precision, threads): the ratio of the medians and whether it reaches <see cref="Target"/>.</summary>
    public sealed record Comparison(string Workload, string Precision, int Threads, Summary Baseline, Summary Current, double Ratio, bool MeetsTarget);

    /// <summary>Everything the builds part of a run measured.</summary>
    public sealed record Report(string BaselineLabel, string CurrentLabel, string BaselineRoot, string CurrentRoot, string BaselineHarness, string CurrentHarness,
        List<Run> Runs, List<Summary> Summaries, List<Comparison> Comparisons, double MaxReconstructionError);

    /// <summary>The harness's JSON line (tools/cpu-baseline/Program.cs, record Result).</summary>
    internal sealed record HarnessResult(string LibraryRoot, string LibraryCommit, string LibraryAssembly, string Workload, string Precision, string PrecisionUsed,
        int Threads, int Rows, int WarmupSteps, int TimedSteps, long Tokens, string TokenCount, double ReconstructedTokens, double Seconds,
        double TokensPerSecond, double FitSeconds);

    /// <summary>Fits every (workload, threads, precision) with both builds, alternating, <see cref="CpuTrainingBenchmarkOptions.Repeats"/> times.</summary>
    public static Report Measure(CpuTrainingBenchmarkOptions o, IEnumerable<QualityRow> rows, TextWriter log)
    {
        string baseline = o.BaselineHarness ?? throw new ArgumentException("--baseline-harness is not set.");
        string current = o.CurrentHarness ?? throw new ArgumentException("--current-harness is not set.");
        var rowsFile = Path.Combine(Path.GetTempPath(), $"bench-cpu-training-rows-{Environment.ProcessId}.jsonl");
        File.WriteAllLines(rowsFile, rows.Select(r => JsonSerializer.Serialize(new { r.Text, r.Label })));
        var runs = new List<Run>();
        try
        {
            log.WriteLine($"builds: baseline {baseline}, current {current}; one process a fit, alternating.");
            for (int repeat = 1; repeat <= o.Repeats; repeat++)
            foreach (var workload in o.Workloads)
            foreach (int threads in o.Threads)
            foreach (var precision in o.HarnessPrecisions)
            foreach (var (build, harness) in repeat % 2 == 1 ? new[] { ("baseline", baseline), ("current", current) } : new[] { ("current", current), ("baseline", baseline) })
            {
                var r = Fit(harness, rowsFile, o, workload, precision, threads);
                var run = new Run(build, r.LibraryCommit.Length > 0 ? r.LibraryCommit : build, workload, precision, r.PrecisionUsed, repeat, r.Threads, r.TimedSteps,
                    r.Tokens, r.TokenCount, r.ReconstructedTokens, r.Seconds, r.TokensPerSecond, r.FitSeconds, GeneratedMarkdown.Portable(r.LibraryRoot));
                runs.Add(run);
                log.WriteLine($"  {workload,-12} {build,-8} {run.Label,-8} precision {precision} ({run.PrecisionUsed}) #{repeat}: {run.TokensPerSecond,8:N0} tokens/s over {run.TimedSteps} steps " +
                              $"({run.Tokens:N0} tokens, {run.TokenCount}; fit {run.FitSeconds:F1} s; {run.Threads} threads)");
            }
        }
        finally { File.Delete(rowsFile); }
        var summaries = runs.GroupBy(r => (r.Build, r.Workload, r.Precision, r.Threads)).Select(g => Summarize(g.ToList())).ToList();
        var comparisons = Compare(summaries);
        foreach (var c in comparisons)
            log.WriteLine($"{c.Workload,-12} precision {c.Precision}: {c.Current.Label} {c.Current.MedianTokensPerSecond:N0} tokens/s against {c.Baseline.Label} {c.Baseline.MedianTokensPerSecond:N0}: {c.Ratio:F2}× ({(c.MeetsTarget ? "≥" : "<")} {Target}×)");
        var first = (Baseline: runs.First(r => r.Build == "baseline"), Current: runs.First(r => r.Build == "current"));
        return new Report(first.Baseline.Label, first.Current.Label, first.Baseline.LibraryRoot, first.Current.LibraryRoot,
            GeneratedMarkdown.Portable(baseline), GeneratedMarkdown.Portable(current), runs, summaries, comparisons, MaxReconstructionError(runs));
    }

    /// <summary>Runs one fit in a fresh process and reads its result line.</summary>
    private static HarnessResult Fit(string harness, string rowsFile, CpuTrainingBenchmarkOptions o, string workload, string precision, int threads)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { harness, "--rows-file", rowsFile, "--workload", workload, "--precision", precision, "--warmup", I(o.WarmupSteps), "--steps", I(o.Steps),
                     "--threads", I(threads), "--seed", I(o.Seed), "--backbone", o.Backbone })
            psi.ArgumentList.Add(a);
        using var process = Process.Start(psi) ?? throw new InvalidOperationException("Could not start `dotnet`; is the .NET SDK on PATH?");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(20)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{harness} ({workload}, {precision}) ran for more than 20 minutes; stopped.");
        }
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{harness} ({workload}, {precision}) ended with exit code {process.ExitCode}: {Tail(stderr.Result + stdout.Result)}");
        return ParseResult(stdout.Result, harness);
    }

    private static string I(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Tail(string text) => text.Length <= 2000 ? text.Trim() : "…" + text[^2000..].Trim();

    /// <summary>The harness's result from its stdout (the last line that starts with <see cref="ResultPrefix"/>).</summary>
    internal static HarnessResult ParseResult(string stdout, string harness)
    {
        var line = stdout.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.StartsWith(ResultPrefix, StringComparison.Ordinal))
            ?? throw new InvalidDataException($"{harness} printed no '{ResultPrefix.Trim()}' line; is it the tools/cpu-baseline harness? Its output: {Tail(stdout)}");
        return JsonSerializer.Deserialize<HarnessResult>(line[ResultPrefix.Length..])
            ?? throw new InvalidDataException($"{harness}: an empty result line.");
    }

    internal static double Median(IEnumerable<double> values)
    {
        var v = values.OrderBy(x => x).ToArray();
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    private static Summary Summarize(List<Run> runs) => new(runs[0].Build, runs[0].Label, runs[0].Workload, runs[0].Precision, runs[0].Threads,
        string.Join("/", runs.Select(r => r.PrecisionUsed).Distinct()), Median(runs.Select(r => r.TokensPerSecond)), runs.Min(r => r.TokensPerSecond),
        runs.Max(r => r.TokensPerSecond), Median(runs.Select(r => (double)r.Tokens / r.TimedSteps)), runs.Count);

    /// <summary>Pairs each current summary with the baseline's at the same (workload, precision, threads).</summary>
    internal static List<Comparison> Compare(IReadOnlyList<Summary> summaries) =>
        summaries.Where(s => s.Build == "current")
            .Select(c => (Current: c, Baseline: summaries.FirstOrDefault(b => b.Build == "baseline" && (b.Workload, b.Precision, b.Threads) == (c.Workload, c.Precision, c.Threads))))
            .Where(p => p.Baseline is not null)
            .Select(p =>
            {
                double ratio = p.Current.MedianTokensPerSecond / p.Baseline!.MedianTokensPerSecond;
                return new Comparison(p.Current.Workload, p.Current.Precision, p.Current.Threads, p.Baseline, p.Current, ratio, ratio >= Target);
            }).ToList();

    /// <summary>The record's section "Against &lt;baseline&gt; (same run)": the target's verdict, how the builds were measured, the table.</summary>
    internal static string Markdown(Report r, CpuTrainingBenchmarkOptions o, int trainRows)
    {
        var inv = CultureInfo.InvariantCulture;
        string N(double v) => v.ToString("N0", inv);
        var sb = new StringBuilder();
        sb.AppendLine($"## Against {r.BaselineLabel} (same run)");
        sb.AppendLine();
        var minilm = r.Comparisons.Where(c => c.Workload == "minilm-full").ToList();
        string Verdict(Comparison c) => $"{c.Ratio.ToString("F2", inv)}× with Precision {PrecisionName(c.Precision)}" +
            (c.Precision == "auto" ? $" (each build's default: {c.Current.PrecisionUsed} on {c.Current.Label}, {c.Baseline.PrecisionUsed} on {c.Baseline.Label})" : "") +
            (o.Threads.Length > 1 ? $", {c.Threads} threads" : "");
        string headline = minilm.Count == 0 ? "not measured (the run left out minilm-full)"
            : minilm.All(c => c.MeetsTarget) ? "**met**" : minilm.Any(c => c.MeetsTarget) ? "**met at some settings only**" : "**missed**";
        sb.AppendLine($"Issue 26's target, CPU tokens/s of MiniLM full fine-tuning at least {Target.ToString("F0", inv)}× the {r.BaselineLabel} build's on the same machine " +
                      $"in the same run: {headline}" + (minilm.Count == 0 ? "." : ": " + string.Join("; ", minilm.Select(Verdict)) + "."));
        sb.AppendLine();
        sb.AppendLine($"- Builds: one harness (tools/cpu-baseline, the same Program.cs) built by `tools/cpu-baseline/build.sh <commit>` against a `git archive` of each commit: " +
                      $"baseline = {r.BaselineLabel} (library `{r.BaselineRoot}`, harness `{r.BaselineHarness}`), current = {r.CurrentLabel} (library `{r.CurrentRoot}`, harness `{r.CurrentHarness}`). " +
                      "Each build with the package versions its tree names (ML.NET, tokenizers; TorchSharp 0.107 and libtorch 2.10 CPU in both).");
        sb.AppendLine($"- Workloads: the options above, set through the public estimator API both builds have; what they do not name is each build's own default " +
                      "(`default` = each build's `new TextClassificationOptions()`; the current build also holds out 10 % of the rows for validation, which runs after the timed steps). " +
                      "Precision `auto` = left at Auto (what each build chose is under \"precision used\"), `fp32` = Float32, `bf16` = BFloat16.");
        sb.AppendLine($"- Each fit is a fresh process (`dotnet CpuBaseline.dll`; libtorch, the backbone and the rows load before the timing) on the same {N(trainRows)} rows, " +
                      $"written once by this command: {o.WarmupSteps} warm-up steps, then {o.Steps} timed optimizer steps. Builds alternate (baseline first in odd repeats, current " +
                      $"first in even ones); {o.Repeats} fits per build and row, the median reported, min–max beside it; ratio = current median / baseline median.");
        string error = double.IsNaN(r.MaxReconstructionError) ? "not checked (no build reported exact counts)"
            : $"within {(r.MaxReconstructionError * 100).ToString("F2", inv)} % of the exact count on every fit of the current build, which reports both";
        sb.AppendLine("- Tokens = real (unpadded) tokens of the timed steps. A build whose `TrainingProgress` has no `TokensSeen` (df3f3f1) gets them reconstructed from its " +
                      $"per-step progress reports: TokensPerSecond × the time since its \"Training:\" log line, where its token clock starts; the reconstruction is {error}. " +
                      "The builds batch the rows differently, so their timed steps are not the same rows: tokens/step beside each median.");
        sb.AppendLine();
        sb.AppendLine($"| workload | precision | threads | {r.BaselineLabel} tokens/s | min – max | precision used | tokens/step | {r.CurrentLabel} tokens/s | min – max | precision used | tokens/step | ratio | ≥ {Target.ToString("F0", inv)}× |");
        sb.AppendLine("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |");
        foreach (var c in r.Comparisons)
        {
            string Cells(Summary s) => $"{N(s.MedianTokensPerSecond)} | {N(s.MinTokensPerSecond)} – {N(s.MaxTokensPerSecond)} | {s.PrecisionUsed} | {s.TokensPerStep.ToString("F0", inv)}";
            sb.AppendLine($"| {c.Workload} | {c.Precision} | {c.Threads} | {Cells(c.Baseline)} | {Cells(c.Current)} | {c.Ratio.ToString("F2", inv)}× | {(c.MeetsTarget ? "yes" : "no")} |");
        }
        return sb.ToString();
    }

    private static string PrecisionName(string precision) => precision switch { "fp32" => "Float32", "bf16" => "BFloat16", _ => "Auto" };

    /// <summary>The largest relative gap between the reconstructed and the exact token count over the fits that have both.</summary>
    internal static double MaxReconstructionError(IEnumerable<Run> runs) =>
        runs.Where(r => r.TokenCount == "exact" && r.Tokens > 0).Select(r => Math.Abs(r.ReconstructedTokens - r.Tokens) / r.Tokens).DefaultIfEmpty(double.NaN).Max();
}
