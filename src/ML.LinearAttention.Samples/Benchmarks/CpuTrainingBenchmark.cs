using Microsoft.ML.LinearAttention.Samples.Reporting;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench cpu-training`: CPU training throughput on real rows (SST-2 from ../shared/data, lengths as in the data,
/// the estimator's default batch) through the ordinary ML.NET estimator, for MiniLM full fine-tuning and the default
/// from-scratch text classifier. Each (workload, variant) is fitted several times for a few optimizer steps; the
/// tokens/s of the steps after the warm-up are taken, and the median of the repeats is reported, with the per-phase
/// breakdown of <see cref="TrainingProfile"/>. The variants (the CPU fast paths off, then on) alternate, so both see the
/// same machine load. With --baseline-harness and --current-harness it also measures an older build of the library
/// (df3f3f1, issue 26's baseline) against the current one, alternating (<see cref="CpuTrainingBuilds"/>).
/// Writes training-cpu.md and training-cpu.json.
/// </summary>
public static class CpuTrainingBenchmark
{
    /// <summary>One fit: tokens/s over the timed steps and the phase times per timed step.</summary>
    public sealed record Run(string Workload, string Variant, int Repeat, int TimedSteps, long TimedTokens, double Seconds, double TokensPerSecond,
        double WaitMs, double ForwardMs, double BackwardMs, double OptimizerMs, double OtherMs, int Threads);

    /// <summary>Median of the repeats of one (workload, variant).</summary>
    public sealed record Summary(string Workload, string Variant, int Threads, double MedianTokensPerSecond, double MinTokensPerSecond, double MaxTokensPerSecond,
        double WaitMs, double ForwardMs, double BackwardMs, double OptimizerMs, double OtherMs, double TokensPerStep);

    public static int Execute(CpuTrainingBenchmarkOptions o, TextWriter log)
    {
        TorchRuntime.EnsureLoaded();
        var data = QualityData.Load("sst2", o.DataFolder, o.TrainRows, 1, o.Seed);
        log.WriteLine($"bench cpu-training on the CPU ({Environment.ProcessorCount} cores, libtorch {torch.get_num_threads()} threads by default): {data.Description}.");
        int processThreads = torch.get_num_threads(); // what "0" means: a fit with CpuThreads set changes the process setting
        var runs = new List<Run>();
        foreach (var workload in o.Workloads)
        {
            for (int repeat = 1; repeat <= o.Repeats; repeat++)
            {
                foreach (int threads in o.Threads)
                foreach (var variant in o.Variants)
                {
                    var run = Measure(o, data, workload, variant, threads > 0 ? threads : processThreads, repeat, log);
                    runs.Add(run);
                    log.WriteLine($"  {workload,-12} {variant,-9} #{repeat}: {run.TokensPerSecond,8:N0} tokens/s over {run.TimedSteps} steps " +
                                  $"(per step: wait {run.WaitMs:F0} ms, forward {run.ForwardMs:F0}, backward {run.BackwardMs:F0}, optimizer {run.OptimizerMs:F0}, other {run.OtherMs:F0}; {run.Threads} threads)");
                }
            }
        }
        var summaries = runs.GroupBy(r => (r.Workload, r.Variant, r.Threads)).Select(g => Summarize(g.ToList())).ToList();
        foreach (var s in summaries) log.WriteLine($"{s.Workload,-12} {s.Variant,-9} {s.Threads} thread(s): median {s.MedianTokensPerSecond:N0} tokens/s (min {s.MinTokensPerSecond:N0}, max {s.MaxTokensPerSecond:N0})");
        // The older build against the current one, each through the tools/cpu-baseline harness in its own processes.
        var builds = o.BaselineHarness is null ? null : CpuTrainingBuilds.Measure(o, data.Train, log);
        Directory.CreateDirectory(o.OutputDirectory);
        var meta = new Dictionary<string, string>
        {
            ["command"] = GeneratedMarkdown.Portable(o.CommandLine), ["commit"] = o.Commit, ["machine"] = o.Machine, ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
            ["cpuFlags"] = CpuFlags(),
        };
        File.WriteAllText(Path.Combine(o.OutputDirectory, "training-cpu.json"), JsonSerializer.Serialize(new { meta, o.TrainRows, o.WarmupSteps, o.Steps, o.Repeats, Summaries = summaries, Runs = runs, AgainstBaseline = builds },
            new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(o.OutputDirectory, "training-cpu.md"),
            Markdown(o, meta, data, summaries) + (builds is null ? "" : Environment.NewLine + CpuTrainingBuilds.Markdown(builds, o, data.Train.Count)));
        log.WriteLine($"wrote training-cpu.md and training-cpu.json to {o.OutputDirectory}");
        return 0;
    }

    private static Run Measure(CpuTrainingBenchmarkOptions o, QualityData data, string workload, string variant, int threads, int repeat, TextWriter log)
    {
        var ml = new MLContext(seed: o.Seed) { GpuDeviceId = null, FallbackToCpu = true };
        var options = Options(o, data, workload);
        options.MaxSteps = o.WarmupSteps + o.Steps;
        options.LogEverySteps = 1;
        options.MaxEpochs = 1;
        options.EarlyStoppingPatience = 0;
        options.CpuThreads = threads;
        options.Precision = CpuTrainingVariants.Precision(variant);
        var clock = Stopwatch.StartNew();
        double start = double.NaN, end = double.NaN;
        long startTokens = 0, endTokens = 0, endStep = 0;
        TrainingProfile? profile = null;
        options.Progress = new InlineProgress(p =>
        {
            if (p.Step == o.WarmupSteps && double.IsNaN(start))
            {
                (start, startTokens) = (clock.Elapsed.TotalSeconds, p.TokensSeen);
                profile!.Reset(); // the warm-up steps are not timed
            }
            else if (p.Step > o.WarmupSteps && p.Step > endStep)
            {
                (end, endTokens, endStep) = (clock.Elapsed.TotalSeconds, p.TokensSeen, p.Step);
            }
        });
        using (CpuTrainingVariants.Apply(variant))
        {
            profile = TrainingProfile.Start();
            try
            {
                var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", nameof(QualityRow.Label))
                    .Append(ml.Transforms.LinearAttention.TextClassification(options));
                using var model = pipeline.Fit(ml.Data.LoadFromEnumerable(data.Train));
            }
            finally { TrainingProfile.Stop(); }
        }
        GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
        int timed = (int)(endStep - o.WarmupSteps);
        if (timed <= 0 || profile is null) throw new InvalidOperationException($"{workload}/{variant}: no step was timed; raise --rows or lower --warmup.");
        double seconds = end - start, perStep = 1.0 / timed;
        // The profile's totals stop at the last step's end; the end-of-epoch report adds nothing timed.
        double wait = profile.WaitingForBatches.TotalMilliseconds * perStep, fwd = profile.Forward.TotalMilliseconds * perStep,
            bwd = profile.Backward.TotalMilliseconds * perStep, opt = profile.Optimizer.TotalMilliseconds * perStep;
        double other = Math.Max(0, seconds * 1000 / timed - wait - fwd - bwd - opt);
        return new Run(workload, variant, repeat, timed, endTokens - startTokens, seconds, (endTokens - startTokens) / seconds, wait, fwd, bwd, opt, other, torch.get_num_threads());
    }

    /// <summary>The estimator options of a workload; everything not named keeps the estimator's default.</summary>
    internal static TextClassificationOptions Options(CpuTrainingBenchmarkOptions o, QualityData data, string workload) => workload switch
    {
        // As `bench quality`'s full fine-tune row, with the estimator's default batch (32).
        "minilm-full" => new TextClassificationOptions
        {
            TextColumnNames = data.TextColumns, PretrainedBackbone = o.Backbone, FineTuning = "full", LearningRate = 1e-4, MaxSequenceLength = 128, Seed = o.Seed,
        },
        "default" => new TextClassificationOptions { TextColumnNames = data.TextColumns, Seed = o.Seed },
        _ => throw new ArgumentException($"Unknown workload '{workload}'; use minilm-full or default."),
    };

    private static Summary Summarize(List<Run> runs)
    {
        static double Median(IEnumerable<double> values)
        {
            var v = values.OrderBy(x => x).ToArray();
            return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
        }
        return new Summary(runs[0].Workload, runs[0].Variant, runs[0].Threads, Median(runs.Select(r => r.TokensPerSecond)), runs.Min(r => r.TokensPerSecond), runs.Max(r => r.TokensPerSecond),
            Median(runs.Select(r => r.WaitMs)), Median(runs.Select(r => r.ForwardMs)), Median(runs.Select(r => r.BackwardMs)), Median(runs.Select(r => r.OptimizerMs)),
            Median(runs.Select(r => r.OtherMs)), Median(runs.Select(r => (double)r.TimedTokens / r.TimedSteps)));
    }

    private static string Markdown(CpuTrainingBenchmarkOptions o, Dictionary<string, string> meta, QualityData data, List<Summary> summaries)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# CPU training throughput: MiniLM full fine-tuning and the default text classifier");
        sb.AppendLine();
        sb.AppendLine($"Generated by `dotnet run -c Release --project src/ML.LinearAttention.Samples -- {o.CommandLine}`");
        sb.AppendLine($"on {meta["machine"]}, commit {meta["commit"]}, {meta["date"]}. CPU flags of note: {meta["cpuFlags"]}.");
        sb.AppendLine();
        sb.AppendLine($"- Data: {data.Description}; lengths as in the data (MiniLM's WordPiece, or the default tokenizer).");
        sb.AppendLine($"- Workloads: `minilm-full` = PretrainedBackbone {o.Backbone}, FineTuning full, lr 1e-4, MaxSequenceLength 128; " +
                      "`default` = `new TextClassificationOptions()` (linear attention, hidden 128, 2 layers). Precision as the variant says " +
                      $"(Precision Auto on this machine: {(CpuFeatures.HasBFloat16Instructions ? "bf16 for minilm-full, fp32 for default" : "fp32")}), " +
                      "the estimator's default batch (32 rows), AdamW, gradient clipping at 1.");
        sb.AppendLine($"- Each fit: {o.WarmupSteps} warm-up steps, then {o.Steps} timed optimizer steps; {o.Repeats} fits per row, variants alternating " +
                      "(the machine is shared; the median is reported, min–max beside it). Tokens = real (unpadded) tokens.");
        sb.AppendLine("- Variants: `baseline` = the CPU fast paths (`CpuFastPaths`: fused AdamW, the vectorised dropout mask, explicit attention scores " +
                      "for short sequences) off and fp32, the training loop as before them; `optimized` = the fast paths on, fp32; `bf16` = the fast paths on " +
                      "with Precision BFloat16 (bf16 mixed precision, fp32 master weights). " +
                      "Threads = libtorch's CPU threads (the options' CpuThreads); speed-up = against `baseline` at the first thread count listed.");
        sb.AppendLine();
        sb.AppendLine("| workload | variant | threads | tokens/s (median) | min – max | speed-up | tokens/step | wait ms | forward ms | backward ms | optimizer ms | other ms |");
        sb.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var s in summaries)
        {
            var baseline = summaries.FirstOrDefault(b => b.Workload == s.Workload && b.Variant == "baseline"); // the first thread setting listed
            string speedup = baseline is null ? "–" : (s.MedianTokensPerSecond / baseline.MedianTokensPerSecond).ToString("F2", inv) + "×";
            sb.AppendLine($"| {s.Workload} | {s.Variant} | {s.Threads} | {s.MedianTokensPerSecond.ToString("N0", inv)} | {s.MinTokensPerSecond.ToString("N0", inv)} – {s.MaxTokensPerSecond.ToString("N0", inv)} | " +
                          $"{speedup} | {s.TokensPerStep.ToString("F0", inv)} | {s.WaitMs.ToString("F0", inv)} | {s.ForwardMs.ToString("F0", inv)} | {s.BackwardMs.ToString("F0", inv)} | " +
                          $"{s.OptimizerMs.ToString("F0", inv)} | {s.OtherMs.ToString("F0", inv)} |");
        }
        sb.AppendLine();
        sb.AppendLine("Phase times are per optimizer step (medians of the fits; `TrainingProfile`): wait = the training thread waiting for the next " +
                      "collated batch; forward = model and loss; backward; optimizer = clipping, AdamW, zeroing gradients; other = the rest of the step " +
                      "(loss read-back for the per-step progress report, dispose scopes).");
        return sb.ToString();
    }

    private static string CpuFlags() => !CpuFeatures.FlagsKnown ? "unknown" :
        string.Join(", ", new[] { "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile" }.Select(f => CpuFeatures.Has(f) ? f : "no " + f));
}
