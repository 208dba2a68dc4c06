using Microsoft.ML.LinearAttention.Samples.Reporting;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench training`: trains the text encoder through the real ML.NET estimator (TextClassificationEstimator.Fit on a
/// synthetic corpus: tokenizer, producer threads, bf16 mixed precision on CUDA, AdamW) for a few steps per point, at
/// each sequence length T with a fixed token budget per step (B = tokens / T, every row exactly T tokens), and records
/// tokens/s, ms per step, peak CUDA memory and model FLOP utilisation. Writes training.json, training.md and two PNG
/// plots. A point that runs out of memory is recorded as OOM; one over the time bound stops early or is skipped.
/// </summary>
public static class TrainingBenchmark
{
    /// <summary>One measured (mechanism, T) point.</summary>
    public sealed record Point(string Mechanism, long T, long B, long TokensPerStep, int MeasuredSteps, double? SetupSeconds, double? MsPerStep,
        double? TokensPerSecond, double? PeakGiB, double GflopPerToken, bool FlopsComplete, double? Tflops, double? Mfu, string? Status, bool Checkpointed = false);

    public static int Run(TrainingBenchmarkOptions o, TextWriter log)
    {
        var (cuda, memory) = Start(o, log, "bench training");
        var total = Stopwatch.StartNew();
        bool pinned = BatchTransfer.UsePinnedMemory;
        BatchTransfer.UsePinnedMemory = o.PinnedMemory;
        try { return Run(o, log, cuda, memory, total); }
        finally { BatchTransfer.UsePinnedMemory = pinned; }
    }

    private static int Run(TrainingBenchmarkOptions o, TextWriter log, bool cuda, CudaMemoryProbe? memory, Stopwatch total)
    {
        var mechanisms = BenchmarkMechanism.ParseList(o.Mechanisms, o.Layers, o.HybridPlan, o.HybridBase);
        int every = Math.Max(1, o.WarmupSteps);
        int steps = (o.Steps + every - 1) / every * every; // timestamps come every `every` steps
        var points = new List<Point>();
        var info = new Dictionary<string, (string Position, long MatrixParameters)>();
        var meta = Meta(o, cuda, memory);
        bool isolate = o.ChildResults is null && (o.Isolate ?? cuda);
        if (isolate) log.WriteLine("each mechanism runs in its own process (a CUDA error cannot take the others down)");
        bool stoppedByOom = false;
        foreach (var mechanism in mechanisms)
        {
            var position = mechanism.Position(o.Hidden, o.Heads);
            long matrix = ModelFlops.MatrixParameters(Config(o, mechanism, position));
            info[mechanism.Label] = (position.ToString(), matrix);
            Point Skipped(long t, string why)
            {
                long b = Math.Max(1, o.TokensPerStep / t);
                double flops = ModelFlops.TrainingPerToken(matrix, mechanism.Layers, t, o.Heads, o.Hidden / o.Heads, out bool complete);
                return new Point(mechanism.Label, t, b, b * t, 0, null, null, null, null, flops / 1e9, complete, null, null, why);
            }
            var results = isolate
                ? IsolatedRuns.Mechanism(o, mechanism, total, log, Skipped)
                : Lengths(o, mechanism, position, matrix, every, steps, cuda, memory, total, log, Skipped);
            foreach (var point in results)
            {
                points.Add(point);
                if (o.ChildResults is not null)
                {
                    File.AppendAllText(o.ChildResults, JsonSerializer.Serialize(point) + "\n");
                    stoppedByOom |= point.Status == "OOM";
                }
                else Write(o, meta, cuda, steps, info, points); // after every point: a run cut short keeps what it measured
            }
        }
        if (o.ChildResults is not null) return stoppedByOom ? IsolatedRuns.OutOfMemoryExitCode : 0;
        log.WriteLine($"wrote training.md, training.json, training-throughput.png and training-memory.png to {o.OutputDirectory}");
        return 0;
    }

    /// <summary>The points of one mechanism in this process, in order of length.</summary>
    private static IEnumerable<Point> Lengths(TrainingBenchmarkOptions o, BenchmarkMechanism mechanism, PositionEncoding position, long matrix, int every, int steps,
        bool cuda, CudaMemoryProbe? memory, Stopwatch total, TextWriter log, Func<long, string, Point> skipped)
    {
        string? skipRest = null;
        foreach (long t in o.Lengths)
        {
            long b = Math.Max(1, o.TokensPerStep / t);
            double flops = ModelFlops.TrainingPerToken(matrix, mechanism.Layers, t, o.Heads, o.Hidden / o.Heads, out bool complete);
            if (skipRest is null && o.BudgetSeconds > 0 && total.Elapsed.TotalSeconds > o.BudgetSeconds)
                skipRest = $"skipped: the command's {o.BudgetSeconds:F0} s budget was spent";
            if (skipRest is null && !o.ActivationCheckpointing && o.SimulatedFailure == $"exit@{t}") Environment.Exit(134);
            var point = skipRest is not null ? skipped(t, skipRest)
                : !o.ActivationCheckpointing && o.SimulatedFailure == $"oom@{t}" ? skipped(t, "OOM")
                : Measure(o, mechanism, position, t, b, every, steps, flops, complete, cuda, memory, o.ActivationCheckpointing);
            log.WriteLine($"{mechanism.Label,-34} T={t,6} B={b,4}  {Fmt(point.TokensPerSecond, "N0"),10} tok/s  {Fmt(point.MsPerStep, "F1"),8} ms/step  " +
                          $"peak {Fmt(point.PeakGiB, "F2")} GiB  MFU {Fmt(point.Mfu * 100, "F1")}%  ({point.MeasuredSteps} steps, setup {Fmt(point.SetupSeconds, "F1")} s" +
                          $"{(point.Checkpointed ? ", checkpointing" : "")}) {point.Status}");
            yield return point;
            if (skipRest is null && point.MsPerStep is double ms && ms / 1000 * (o.WarmupSteps + steps) > o.SecondsPerPoint)
                skipRest = $"skipped: {ms / 1000:F1} s per step at T={t} already exceeds the {o.SecondsPerPoint:F0} s bound per point";
            // After an out-of-memory error libtorch may hold on to memory or fail later where .NET cannot catch it (seen on
            // the H200: an abort from the autograd thread), so this process tries no more of this mechanism; isolated
            // runs measure the rest in a fresh process, with activation checkpointing.
            if (point.Status == "OOM")
            {
                if (o.ChildResults is not null) yield break;
                skipRest ??= $"skipped: out of memory at T={t}";
            }
        }
    }

    private static void Write(TrainingBenchmarkOptions o, Dictionary<string, string> meta, bool cuda, int steps,
        Dictionary<string, (string Position, long MatrixParameters)> info, List<Point> points)
    {
        Directory.CreateDirectory(o.OutputDirectory);
        File.WriteAllText(Path.Combine(o.OutputDirectory, "training.json"), JsonSerializer.Serialize(new
        {
            meta, o.TokensPerStep, o.Layers, o.Hidden, o.Heads, o.Dropout, o.WarmupSteps, Steps = steps, o.ActivationCheckpointing, o.PeakTflops,
            Mechanisms = info.Select(kv => new { Mechanism = kv.Key, kv.Value.Position, kv.Value.MatrixParameters }), Points = points,
        }, new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(o.OutputDirectory, "training.md"), Markdown(o, meta, cuda, steps, info, points));
        Plot(points, p => p.TokensPerSecond, "Encoder training throughput (tokens/s, higher is better)", "tokens / s")
            .Save(Path.Combine(o.OutputDirectory, "training-throughput.png"));
        Plot(points, p => p.PeakGiB, "Peak CUDA memory of a training step (GiB)", "GiB")
            .Save(Path.Combine(o.OutputDirectory, "training-memory.png"));
    }

    private static Point Measure(TrainingBenchmarkOptions o, BenchmarkMechanism mechanism, PositionEncoding position, long t, long b, int every, int steps,
        double flopsPerToken, bool complete, bool cuda, CudaMemoryProbe? memory, bool checkpoint)
    {
        var clock = Stopwatch.StartNew();
        var stamps = new SortedDictionary<long, double>();
        double? peak = null;
        using var stop = new CancellationTokenSource();
        var progress = new InlineProgress(p =>
        {
            if (stamps.ContainsKey(p.Step)) return; // the end-of-epoch report repeats the last step
            stamps[p.Step] = clock.Elapsed.TotalSeconds;
            if (p.Step == o.WarmupSteps) memory?.ResetPeak();
            else if (p.Step > o.WarmupSteps && memory?.PeakBytes() is long bytes) peak = bytes / (1024.0 * 1024 * 1024);
            if (clock.Elapsed.TotalSeconds > o.SecondsPerPoint) stop.Cancel();
        });
        var ml = new MLContext(seed: 1) { GpuDeviceId = cuda ? 0 : null, FallbackToCpu = false };
        int rows = (int)Math.Max(2, (o.WarmupSteps + steps + 1) * b);   // two rows at least: a classifier needs both classes
        var data = ml.Data.LoadFromEnumerable(SyntheticCorpus.Rows(rows, (int)t, seed: 7));
        var options = EstimatorOptions(o, mechanism, position, t, b);
        options.ActivationCheckpointing = checkpoint;
        options.MaxSteps = o.WarmupSteps + steps;
        options.LogEverySteps = every;
        options.Progress = progress;
        options.CancellationToken = stop.Token;
        string? status = null;
        try
        {
            using var model = ml.MulticlassClassification.Trainers.LinearAttentionTextClassification(options).Fit(data);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            status = $"time bound {o.SecondsPerPoint:F0} s";
        }
        catch (Exception e)
        {
            status = IsOutOfMemory(e) ? "OOM" : "error: " + FirstLine(e);
        }
        finally
        {
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect(); // release the point's native tensors before the next
        }
        double? setup = stamps.TryGetValue(o.WarmupSteps, out double s0) ? s0 : null;
        long last = stamps.Keys.LastOrDefault();
        int measured = setup is null ? 0 : (int)(last - o.WarmupSteps);
        if (status == "OOM") return new Point(mechanism.Label, t, b, b * t, 0, setup, null, null, null, flopsPerToken / 1e9, complete, null, null, status, checkpoint);
        if (measured <= 0)
            return new Point(mechanism.Label, t, b, b * t, 0, setup, null, null, null, flopsPerToken / 1e9, complete, null, null,
                status ?? "no timed step", checkpoint);
        double seconds = stamps[last] - setup!.Value;
        double msPerStep = seconds * 1000 / measured;
        double tokensPerSecond = b * t * measured / seconds;
        double tflops = tokensPerSecond * flopsPerToken / 1e12;
        if (status is not null && status.StartsWith("time bound", StringComparison.Ordinal)) status = $"{measured} of {steps} steps ({status})";
        return new Point(mechanism.Label, t, b, b * t, measured, setup, msPerStep, tokensPerSecond, peak, flopsPerToken / 1e9, complete, tflops,
            cuda ? tflops / o.PeakTflops : null, status, checkpoint);
    }

    /// <summary>The estimator options of one point (shared with `bench inference`).</summary>
    internal static TextClassificationOptions EstimatorOptions(TrainingBenchmarkOptions o, BenchmarkMechanism mechanism, PositionEncoding position, long t, long b)
    {
        var options = new TextClassificationOptions
        {
            TextColumnNames = new[] { nameof(BenchmarkRow.Text) },
            ModelDimension = o.Hidden, NumberOfLayers = o.Layers, NumberOfHeads = o.Heads, FeedForwardMultiplier = 4, Dropout = o.Dropout,
            Position = position, MaxSequenceLength = (int)t, BatchSize = (int)b, MaxBatchTokens = b * t, MaxEpochs = 1,
            LearningRate = 1e-4, WarmupRatio = 0, LearningRateDecay = LearningRateDecay.Constant, EarlyStoppingPatience = 0,
            ShuffleBufferRows = (int)b, Seed = 1, ActivationCheckpointing = o.ActivationCheckpointing, InferenceBatchSize = (int)b,
        };
        var first = mechanism.Layers[0];
        if (mechanism.Layers.All(l => l.Name == first.Name && Equals(l.Options, first.Options)))
        {
            options.Attention = first.Name;
            options.AttentionOptions = first.Options;
        }
        else options.LayerPlan = mechanism.Layers;
        return options;
    }

    /// <summary>The encoder configuration the estimator builds for these options (for counting parameters).</summary>
    internal static EncoderConfig Config(TrainingBenchmarkOptions o, BenchmarkMechanism mechanism, PositionEncoding position) => new()
    {
        VocabularySize = 30522, ModelDim = o.Hidden, NumLayers = o.Layers, NumHeads = o.Heads, FfnMultiplier = 4, Dropout = o.Dropout,
        Position = position, Layers = EncoderConfig.Plan(mechanism.Layers), Outputs = 2,
    };

    internal static (bool Cuda, CudaMemoryProbe? Memory) Start(TrainingBenchmarkOptions o, TextWriter log, string what)
    {
        TorchRuntime.EnsureLoaded();
        bool cuda = o.Device is null ? torch.cuda.is_available() : o.Device == "cuda";
        if (cuda && !torch.cuda.is_available())
            throw new ArgumentException("--device cuda was asked for but CUDA is not available: " + DevicePolicy.DescribeMissingCudaForSamples());
        var memory = cuda ? new CudaMemoryProbe(0) : null;
        log.WriteLine($"{what} on {(cuda ? "cuda:0" : "cpu")} ({o.Machine}), commit {o.Commit}, libtorch {torch.__version__}; " +
                      $"{o.Layers} layers × hidden {o.Hidden} × {o.Heads} heads, {o.TokensPerStep} tokens per step; memory: " +
                      (memory?.Unavailable ?? (cuda ? "cudaMallocAsync pool high-water mark" : "not measured on the CPU")));
        return (cuda, memory);
    }

    internal static Dictionary<string, string> Meta(TrainingBenchmarkOptions o, bool cuda, CudaMemoryProbe? memory) => new()
    {
        ["command"] = GeneratedMarkdown.SamplesCommand(o.CommandLine),
        ["commit"] = o.Commit,
        ["machine"] = o.Machine,
        ["device"] = cuda ? "cuda:0" : "cpu",
        ["libtorch"] = torch.__version__,
        ["precision"] = cuda ? "bf16 mixed precision (fp32 master weights), the estimators' default on CUDA" : "fp32 (CPU)",
        ["memory"] = memory is null ? "not measured on the CPU" : memory.Unavailable ?? "high-water mark of the CUDA default memory pool (PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync), weights, optimizer state and both precisions' copies included",
        ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture),
    };

    /// <summary>True for libtorch's CUDA out-of-memory errors (anywhere in the inner exceptions).</summary>
    public static bool IsOutOfMemory(Exception e)
    {
        for (var x = e; x is not null; x = x.InnerException)
            if (x.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase) || x.Message.Contains("OutOfMemory", StringComparison.Ordinal)) return true;
        return false;
    }

    internal static string FirstLine(Exception e)
    {
        string message = e.Message.Split('\n')[0].Trim();
        return message.Length > 160 ? message[..160] : message;
    }

    internal static string Fmt(double? v, string format) => v is double d && double.IsFinite(d) ? d.ToString(format, CultureInfo.InvariantCulture) : "—";

    private static PlotLines Plot(List<Point> points, Func<Point, double?> value, string title, string yLabel)
    {
        var chart = new PlotLines { Title = title, XLabel = "sequence length T (tokens per step fixed)", YLabel = yLabel };
        foreach (var group in points.GroupBy(p => p.Mechanism))
            chart.Series.Add(new PlotSeries(group.Key, group.Select(p => ((double)p.T, value(p))).ToList()));
        return chart;
    }

    private static string Markdown(TrainingBenchmarkOptions o, Dictionary<string, string> meta, bool cuda, int steps,
        Dictionary<string, (string Position, long MatrixParameters)> info, List<Point> points)
        => TrainingReport.Markdown(o, meta, cuda, steps, info, points);
}

/// <summary>An <see cref="IProgress{T}"/> that runs its callback at once on the reporting thread (Progress&lt;T&gt; posts it later).</summary>
internal sealed class InlineProgress(Action<TrainingProgress> callback) : IProgress<TrainingProgress>
{
    public void Report(TrainingProgress value) => callback(value);
}
