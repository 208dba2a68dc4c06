using System.Diagnostics;
using System.Reflection;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.CpuBaseline;

/// <summary>One training row of the rows file.</summary>
public sealed class Row
{
    /// <summary>The sentence.</summary>
    public string Text { get; set; } = "";
    /// <summary>The class (a string; mapped to a key before the estimator).</summary>
    public string Label { get; set; } = "";
}

/// <summary>
/// What one fit measured, printed as JSON after <see cref="Program.ResultPrefix"/>. Tokens are real (unpadded) tokens of
/// the timed steps: exact where the library's <c>TrainingProgress</c> has <c>TokensSeen</c>; otherwise (older builds)
/// reconstructed from its progress reports as TokensPerSecond × the time since the "Training:" log line, the moment the
/// trainer's token clock starts (<see cref="ReconstructedTokens"/> is computed on every build, to check that).
/// </summary>
public sealed record Result(string LibraryRoot, string LibraryCommit, string LibraryAssembly, string Workload, string Precision, string PrecisionUsed,
    int Threads, int Rows, int WarmupSteps, int TimedSteps, long Tokens, string TokenCount, double ReconstructedTokens, double Seconds,
    double TokensPerSecond, double FitSeconds);

/// <summary>
/// The CPU training harness: fits one `bench cpu-training` workload through the public ML.NET estimator API of the
/// library this build references (any commit since df3f3f1 compiles it) and prints one result line. Each fit runs in
/// its own process, so an old and a new build can be measured alternately by one benchmark command.
/// </summary>
public static class Program
{
    /// <summary>The start of the result line on stdout.</summary>
    public const string ResultPrefix = "CPU-BASELINE-RESULT ";

    /// <summary>Exit codes: 0 measured, 2 bad arguments or rows file, 1 the fit failed.</summary>
    public static int Main(string[] args)
    {
        HarnessOptions o;
        List<Row> rows;
        try
        {
            o = HarnessOptions.Parse(args);
            rows = ReadRows(o.RowsFile, (o.WarmupSteps + o.Steps) * 32);
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or JsonException)
        {
            Console.Error.WriteLine(e.Message);
            Console.Error.WriteLine(HarnessOptions.Usage);
            return 2;
        }
        var result = Fit(o, rows);
        Console.WriteLine(ResultPrefix + JsonSerializer.Serialize(result));
        return 0;
    }

    private static List<Row> ReadRows(string file, int needed)
    {
        var rows = File.ReadLines(file).Where(l => l.Trim().Length > 0)
            .Select((l, i) => JsonSerializer.Deserialize<Row>(l) ?? throw new InvalidDataException($"{file}:{i + 1}: not a {{\"Text\", \"Label\"}} object.")).ToList();
        if (rows.Count < needed)
            throw new InvalidDataException($"{file} has {rows.Count} rows; the warm-up and timed steps of 32 rows need at least {needed}.");
        return rows;
    }

    /// <summary>The workload's options as `bench cpu-training` sets them; everything not named keeps the build's default.</summary>
    private static TextClassificationOptions Options(HarnessOptions o)
    {
        var options = o.Workload == "minilm-full"
            ? new TextClassificationOptions
            {
                TextColumnNames = new[] { "Text" }, PretrainedBackbone = o.Backbone, FineTuning = "full", LearningRate = 1e-4, MaxSequenceLength = 128, Seed = o.Seed,
            }
            : new TextClassificationOptions { TextColumnNames = new[] { "Text" }, Seed = o.Seed };
        options.MaxSteps = o.WarmupSteps + o.Steps;
        options.LogEverySteps = 1;
        options.MaxEpochs = 1;
        options.EarlyStoppingPatience = 0;
        if (o.Threads > 0) options.CpuThreads = o.Threads;
        options.Precision = o.Precision switch
        {
            "fp32" => TrainingPrecision.Float32,
            "bf16" => TrainingPrecision.BFloat16,
            _ => TrainingPrecision.Auto,
        };
        return options;
    }

    private static Result Fit(HarnessOptions o, List<Row> rows)
    {
        var ml = new MLContext(seed: o.Seed) { GpuDeviceId = null, FallbackToCpu = true };
        var options = Options(o);
        var clock = Stopwatch.StartNew();
        double trainingStart = double.NaN, start = double.NaN, end = double.NaN;
        double startRebuilt = 0, endRebuilt = 0;
        long? startExact = null, endExact = null;
        long endStep = 0;
        string precisionUsed = "unknown";
        ml.Log += (_, e) =>
        {
            double now = clock.Elapsed.TotalSeconds;
            if (!double.IsNaN(trainingStart) || !e.Message.Contains("] Training: ", StringComparison.Ordinal)) return;
            trainingStart = now; // the trainer starts its token clock right after this line
            precisionUsed = e.Message.Contains("bf16 mixed precision", StringComparison.Ordinal) ? "bf16" : "fp32";
        };
        var tokensSeen = typeof(TrainingProgress).GetProperty("TokensSeen", BindingFlags.Public | BindingFlags.Instance);
        options.Progress = new InlineProgress(p =>
        {
            double now = clock.Elapsed.TotalSeconds;
            long? exact = tokensSeen?.GetValue(p) is long t ? t : null;
            double rebuilt = p.TokensPerSecond * (now - trainingStart);
            if (p.Step == o.WarmupSteps && double.IsNaN(start)) (start, startExact, startRebuilt) = (now, exact, rebuilt);
            else if (p.Step > o.WarmupSteps && p.Step > endStep) (end, endExact, endRebuilt, endStep) = (now, exact, rebuilt, p.Step);
        });
        var fitClock = Stopwatch.StartNew();
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", nameof(Row.Label))
            .Append(ml.Transforms.LinearAttention.TextClassification(options));
        var model = pipeline.Fit(ml.Data.LoadFromEnumerable(rows));
        double fitSeconds = fitClock.Elapsed.TotalSeconds;
        (model as IDisposable)?.Dispose();
        int timed = (int)(endStep - o.WarmupSteps);
        if (timed <= 0 || double.IsNaN(start) || double.IsNaN(trainingStart))
            throw new InvalidOperationException($"{o.Workload}: no step was timed (warm-up {o.WarmupSteps}, last step seen {endStep}; the 'Training:' log line {(double.IsNaN(trainingStart) ? "never came" : "came")}).");
        double reconstructed = endRebuilt - startRebuilt;
        long tokens = startExact is { } a && endExact is { } b ? b - a : (long)Math.Round(reconstructed);
        double seconds = end - start;
        var assembly = typeof(TextClassificationOptions).Assembly;
        string Meta(string key) => typeof(Program).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(m => m.Key == key)?.Value ?? "";
        return new Result(Meta("CpuBaselineLibraryRoot"), Meta("CpuBaselineLibraryCommit"), assembly.Location, o.Workload, o.Precision, precisionUsed,
            TorchSharp.torch.get_num_threads(), rows.Count, o.WarmupSteps, timed, tokens, startExact is null ? "reconstructed" : "exact", reconstructed, seconds,
            tokens / seconds, fitSeconds);
    }

    /// <summary>Runs the callback at once on the reporting thread (<see cref="Progress{T}"/> would post it later).</summary>
    private sealed class InlineProgress(Action<TrainingProgress> callback) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => callback(value);
    }
}
