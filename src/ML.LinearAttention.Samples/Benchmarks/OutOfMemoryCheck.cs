using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>Command-line options of `bench oom`.</summary>
public sealed record OutOfMemoryCheckOptions
{
    public string OutputDirectory { get; init; } = Path.Combine("docs", "benchmarks");
    public string Mechanism { get; init; } = "softmax";
    public int Length { get; init; } = 8192;
    /// <summary>Rows per optimizer step: far more than fits (512 × 8,192 tokens through 12 × 768 layers ≈ terabytes of activations).</summary>
    public int BatchRows { get; init; } = 512;
    public int Steps { get; init; } = 2;
    public int Layers { get; init; } = 12;
    public int Hidden { get; init; } = 768;
    public int Heads { get; init; } = 12;
    public string Commit { get; init; } = "unknown";
    public string Machine { get; init; } = "unknown";
    public string CommandLine { get; init; } = "";

    public static OutOfMemoryCheckOptions Parse(string[] args)
    {
        var o = new OutOfMemoryCheckOptions { CommandLine = "bench oom " + string.Join(' ', args) };
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"Option {args[i]} needs a value.");
            int Int(string v) => int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0
                ? n : throw new ArgumentException($"'{v}' is not a positive integer (option {args[i - 1]}).");
            o = args[i] switch
            {
                "--out" => o with { OutputDirectory = Value() },
                "--mechanism" => o with { Mechanism = Value() },
                "--length" => o with { Length = Int(Value()) },
                "--batch" => o with { BatchRows = Int(Value()) },
                "--steps" => o with { Steps = Int(Value()) },
                "--layers" => o with { Layers = Int(Value()) },
                "--hidden" => o with { Hidden = Int(Value()) },
                "--heads" => o with { Heads = Int(Value()) },
                "--commit" => o with { Commit = Value() },
                "--machine" => o with { Machine = Value() },
                _ => throw new ArgumentException($"Unknown option '{args[i]}' for bench oom."),
            };
        }
        return o;
    }
}

/// <summary>
/// `bench oom`: the fault-suite row "GPU out of memory" on a real GPU. Trains the text encoder through ML.NET Fit with
/// batches far larger than the GPU holds, with libtorch's ordinary caching allocator, and checks that the trainer's
/// out-of-memory retry catches libtorch's real error, frees the failed attempt's memory, splits the batch (halving until it
/// fits), finishes every optimizer step, and yields a model that scores. Writes docs/benchmarks/oom.md. Needs CUDA.
/// </summary>
public static class OutOfMemoryCheck
{
    public static int Run(OutOfMemoryCheckOptions o, TextWriter log)
    {
        TorchRuntime.EnsureLoaded();
        if (!torch.cuda.is_available())
            throw new ArgumentException("bench oom checks recovery from a real GPU out-of-memory error, so it needs CUDA: " +
                                        DevicePolicy.DescribeMissingCudaForSamples());
        var warnings = new List<string>();
        var ml = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = false };
        ml.Log += (_, e) =>
        {
            if (e.Kind == Microsoft.ML.Runtime.ChannelMessageKind.Warning && e.Message.Contains("ran out of memory", StringComparison.Ordinal))
                lock (warnings) warnings.Add(e.Message);
        };
        int rows = o.BatchRows * o.Steps;
        var data = ml.Data.LoadFromEnumerable(SyntheticCorpus.Rows(rows, o.Length, seed: 7));
        var options = new TextClassificationOptions
        {
            TextColumnNames = new[] { nameof(BenchmarkRow.Text) }, Attention = o.Mechanism,
            ModelDimension = o.Hidden, NumberOfLayers = o.Layers, NumberOfHeads = o.Heads,
            MaxSequenceLength = o.Length, BatchSize = o.BatchRows, MaxBatchTokens = (long)o.BatchRows * o.Length, MaxEpochs = 1,
            EarlyStoppingPatience = 0, ShuffleBufferRows = o.BatchRows, Seed = 1, InferenceBatchSize = 4,
        };
        log.WriteLine($"bench oom on cuda:0 ({o.Machine}), commit {o.Commit}: {o.Mechanism}, {o.Layers} layers × {o.Hidden}, " +
                      $"{o.Steps} steps of {o.BatchRows} rows × {o.Length:N0} tokens");
        var clock = Stopwatch.StartNew();
        string outcome;
        bool pass;
        int steps = 0;
        float[]? scores = null;
        try
        {
            options.Progress = new InlineProgress(p => steps = (int)Math.Max(steps, p.Step));
            using var model = ml.MulticlassClassification.Trainers.LinearAttentionTextClassification(options).Fit(data);
            var scored = model.Transform(ml.Data.LoadFromEnumerable(SyntheticCorpus.Rows(4, 64, seed: 9)));
            scores = scored.GetColumn<float[]>("Score").SelectMany(s => s).ToArray();
            bool finite = scores.All(float.IsFinite);
            pass = warnings.Count > 0 && steps >= o.Steps && finite;
            outcome = warnings.Count == 0
                ? "FAIL: no out-of-memory error happened; raise --batch or --length so the batch does not fit"
                : !finite ? "FAIL: the model's scores are not finite"
                : steps < o.Steps ? $"FAIL: {steps} of {o.Steps} optimizer steps ran"
                : $"PASS: {warnings.Count} out-of-memory retries, then all {o.Steps} optimizer steps of {o.BatchRows} rows finished";
        }
        catch (Exception e)
        {
            pass = false;
            outcome = "FAIL: " + e.GetType().Name + ": " + e.Message.Split('\n')[0];
        }
        double seconds = clock.Elapsed.TotalSeconds;
        log.WriteLine(outcome);
        foreach (var w in warnings) log.WriteLine("  warning: " + w.Split('\n')[0]);

        var md = new StringBuilder();
        md.AppendLine("# GPU out-of-memory recovery (`bench oom`)").AppendLine();
        md.AppendLine("Generated by the command; do not edit by hand.").AppendLine();
        md.AppendLine($"- command: `dotnet ML.LinearAttention.Samples.dll {o.CommandLine.Trim()}`");
        md.AppendLine($"- commit: {o.Commit}; machine: {o.Machine}; libtorch {torch.__version__}; allocator: " +
                      (Environment.GetEnvironmentVariable("PYTORCH_CUDA_ALLOC_CONF") ?? "libtorch's default caching allocator"));
        md.AppendLine($"- date: {DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture)}");
        md.AppendLine($"- model: {o.Mechanism}, {o.Layers} layers × hidden {o.Hidden} × {o.Heads} heads; {o.Steps} optimizer steps of " +
                      $"{o.BatchRows} rows × {o.Length:N0} tokens ({(long)o.BatchRows * o.Length:N0} tokens per step, bf16 mixed precision)");
        md.AppendLine($"- result: **{outcome}** in {seconds:F1} s; optimizer steps reported: {steps}; " +
                      $"scores of 4 rows after training: {(scores is null ? "—" : string.Join(", ", scores.Take(8).Select(s => s.ToString("F3", CultureInfo.InvariantCulture))))}");
        md.AppendLine().AppendLine("Warnings the trainer wrote to MLContext.Log, in order:").AppendLine();
        foreach (var w in warnings) md.AppendLine($"- {w.Split('\n')[0]}");
        if (warnings.Count == 0) md.AppendLine("- (none)");
        Directory.CreateDirectory(o.OutputDirectory);
        File.WriteAllText(Path.Combine(o.OutputDirectory, "oom.md"), md.ToString());
        return pass ? 0 : 1;
    }
}
