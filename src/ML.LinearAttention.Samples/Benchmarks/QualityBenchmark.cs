using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Conversion;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.Runtime;
using TorchSharp;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>One measured (or skipped) point: a method on a data set at a training size.</summary>
public sealed record QualityPoint(string Dataset, string Size, int TrainRows, string Key, string Method)
{
    /// <summary>"ok", "failed" or "skipped".</summary>
    public string Status { get; init; } = "ok";
    public double? Accuracy { get; init; }
    public double? MacroF1 { get; init; }
    public double? LogLoss { get; init; }
    public double? RSquared { get; init; }
    public double? Rmse { get; init; }
    public double? TrainSeconds { get; init; }
    /// <summary>Real training tokens per second (the fine-tuning rows).</summary>
    public double? TokensPerSecond { get; init; }
    public long? TrainableParameters { get; init; }
    public long? TotalParameters { get; init; }
    public string Note { get; init; } = "";
}

/// <summary>
/// `bench quality`: every method on every shared data set at each training size, through the public ML.NET API: the
/// FeaturizeText + SDCA baseline, the default from-scratch model, MiniLM fully fine-tuned, linear probe, Moment Probing
/// (MP, MP+), LoRA, and the softmax→linear conversion (full fine-tune and LoRA). Writes quality.md and quality.json.
/// </summary>
public static class QualityBenchmark
{
    private static readonly Regex TrainableLine = new(@"Fine-tuning '[^']+': ([\d,]+) of ([\d,]+) parameters trainable|Training from scratch: all ([\d,]+) parameters", RegexOptions.CultureInvariant);

    private sealed record MethodSpec(string Key, string Method, Func<QualityData, LinearAttentionOptions>? Options, string Note);

    public static int Run(QualityBenchmarkOptions o, TextWriter log)
    {
        TorchRuntime.EnsureLoaded();
        bool cuda = o.Device is null ? torch.cuda.is_available() : o.Device == "cuda";
        if (cuda && !torch.cuda.is_available())
            throw new ArgumentException("--device cuda was asked for but CUDA is not available: " + DevicePolicy.DescribeMissingCudaForSamples());
        if (o.Threads is { } threads) TorchRuntime.SetCpuThreads(threads);
        var clock = Stopwatch.StartNew();
        var points = new List<QualityPoint>();
        var datasets = new List<QualityData>();
        log.WriteLine($"bench quality on {(cuda ? "cuda:0" : $"cpu ({Environment.ProcessorCount} cores)")}: {string.Join(", ", o.Datasets)} at {string.Join(", ", o.Sizes.Select(QualityBenchmarkOptions.SizeText))} rows.");
        foreach (var name in o.Datasets)
        {
            var data = QualityData.Load(name, o.DataFolder, o.TestRows);
            datasets.Add(data);
            log.WriteLine($"{name}: {data.Description}.");
            var done = new HashSet<int>();
            foreach (int size in o.Sizes)
            {
                int rows = Math.Min(size, data.Train.Count);
                // A size beyond the data set's training rows is all of them, and says so.
                string sizeText = rows < size ? $"all ({rows:N0})" : QualityBenchmarkOptions.SizeText(size);
                if (!done.Add(rows))
                {
                    log.WriteLine($"  {sizeText}: the same {rows:N0} rows as a size already run; not repeated.");
                    continue;
                }
                var train = QualityData.Sample(data.Train, rows, o.Seed);
                foreach (var m in Methods(o).Where(m => o.Only is null || o.Only.Contains(m.Key)))
                {
                    var point = new QualityPoint(name, sizeText, train.Count, m.Key, m.Method) { Note = m.Note };
                    if (o.BudgetSeconds is { } budget && clock.Elapsed.TotalSeconds > budget)
                    {
                        points.Add(point with { Status = "skipped", Note = $"not run: the budget of {budget:N0} s was spent" });
                        continue;
                    }
                    log.WriteLine($"- {name}, {sizeText} rows: {m.Method}");
                    var measured = Measure(point, data, train, m, o, cuda, log);
                    log.WriteLine(measured.Status != "ok" ? $"    {measured.Note}"
                        : $"    {(data.Regression ? $"R² {measured.RSquared:F4}" : $"accuracy {measured.Accuracy:F4}, log-loss {measured.LogLoss:F4}")}, {measured.TrainSeconds:F1} s");
                    points.Add(measured);
                    // After every point, so that a run stopped part-way (a long CPU run, a killed job) still leaves its record.
                    Write(o, cuda, datasets, points, clock.Elapsed, partial: true);
                }
            }
        }
        var (md, json) = Write(o, cuda, datasets, points, clock.Elapsed, partial: false);
        log.WriteLine($"wrote {md} and {json}");
        return points.Any(p => p.Status == "failed") ? 1 : 0;
    }

    private static (string Markdown, string Json) Write(QualityBenchmarkOptions o, bool cuda, List<QualityData> datasets, List<QualityPoint> points, TimeSpan elapsed, bool partial)
    {
        Directory.CreateDirectory(o.OutputDirectory);
        var md = Path.Combine(o.OutputDirectory, "quality.md");
        var json = Path.Combine(o.OutputDirectory, "quality.json");
        File.WriteAllText(md, QualityReport.Markdown(o, cuda, datasets, points, elapsed, partial));
        File.WriteAllText(json, QualityReport.Json(o, cuda, datasets, points, elapsed, partial));
        return (md, json);
    }

    private static IEnumerable<MethodSpec> Methods(QualityBenchmarkOptions o)
    {
        string Lr(double v) => "lr " + v.ToString("G3", CultureInfo.InvariantCulture);
        LinearAttentionOptions Pretrained(QualityData d, string? fineTuning, double lr, ConversionOptions? conversion = null)
        {
            var options = Fresh(d, o);
            options.PretrainedBackbone = o.Backbone;
            options.MaxSequenceLength = o.MaxLength ?? d.MaxLength;
            options.BatchSize = o.BatchSize;
            options.MaxEpochs = o.Epochs;
            options.LearningRate = lr;
            options.FineTuning = fineTuning;
            options.Conversion = conversion;
            return options;
        }
        yield return new("sdca", "FeaturizeText + SDCA (ML.NET baseline)", null, "SdcaMaximumEntropy (regression: Sdca) on FeaturizeText's default n-grams");
        yield return new("scratch", "Default from-scratch model (no backbone)", d => Fresh(d, o), "the estimator's default options");
        yield return new("full", $"{o.Backbone} softmax, full fine-tune", d => Pretrained(d, "full", o.LearningRate), $"every parameter trains; {Lr(o.LearningRate)}");
        yield return new("probe", "Linear probe (frozen encoder)", d => Pretrained(d, "linear_probe", o.LearningRate), "cached features; LinearProbeOptions defaults");
        yield return new("mp", "Moment Probing (MP)", d => Pretrained(d, "moment_probing", o.LearningRate), "cached features; MomentProbingOptions defaults");
        yield return new("mp+", "MP+ (MP head + PSRP in every block)", d => Pretrained(d, "psrp", o.PsrpLearningRate), Lr(o.PsrpLearningRate));
        yield return new("lora", "LoRA r 8, α 16 (q, k, v, o) + head", d => Pretrained(d, "lora", o.LoraLearningRate), $"merged after training; {Lr(o.LoraLearningRate)}");
        yield return new("converted", $"{o.Backbone} → linear (default conversion), full fine-tune", d => Pretrained(d, null, o.LearningRate, Conversion(o, "full")),
            $"ConversionOptions defaults, stage 2 every parameter; {Lr(o.LearningRate)}");
        yield return new("converted+lora", $"{o.Backbone} → linear (default conversion), LoRA", d => Pretrained(d, null, o.LoraLearningRate, Conversion(o, null)),
            $"ConversionOptions defaults (stage 2 LoRA); {Lr(o.LoraLearningRate)}");
    }

    /// <summary>ConversionOptions' defaults, but for --convert-to / --transfer-steps and the stage-2 method (null = its default, LoRA).</summary>
    private static ConversionOptions Conversion(QualityBenchmarkOptions o, string? stageTwo)
    {
        var c = new ConversionOptions();
        if (o.ConvertTo is { } mechanism) c.Attention = mechanism;
        if (o.TransferSteps is { } steps) c.TransferSteps = steps;
        if (stageTwo is not null) c.FineTuning = stageTwo;
        return c;
    }

    /// <summary>The estimator's defaults, with the data set's columns and the run's seed.</summary>
    private static LinearAttentionOptions Fresh(QualityData d, QualityBenchmarkOptions o) => d.Regression
        ? new SequenceRegressionOptions { LabelColumnName = nameof(QualityRow.Target), TextColumnNames = d.TextColumns, Seed = o.Seed, LogEverySteps = 0 }
        : new TextClassificationOptions { TextColumnNames = d.TextColumns, Seed = o.Seed, LogEverySteps = 0 };

    private static QualityPoint Measure(QualityPoint point, QualityData data, List<QualityRow> train, MethodSpec m, QualityBenchmarkOptions o, bool cuda, TextWriter log)
    {
        var ml = new MLContext(seed: o.Seed) { GpuDeviceId = cuda ? 0 : null, FallbackToCpu = !cuda };
        long? trainable = null, total = null;
        ml.Log += (_, e) =>
        {
            if (e.Kind is not (ChannelMessageKind.Info or ChannelMessageKind.Warning) || !e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)
                || e.RawMessage.StartsWith("Channel", StringComparison.Ordinal)) return;
            log.WriteLine("    " + e.RawMessage);
            var match = TrainableLine.Match(e.RawMessage);
            if (!match.Success) return;
            long Parse(Group g) => long.Parse(g.Value, NumberStyles.AllowThousands, CultureInfo.InvariantCulture);
            (trainable, total) = match.Groups[1].Success ? (Parse(match.Groups[1]), Parse(match.Groups[2])) : (Parse(match.Groups[3]), Parse(match.Groups[3]));
        };
        var trainView = ml.Data.LoadFromEnumerable(train);
        var testView = ml.Data.LoadFromEnumerable(data.Test);
        var clock = Stopwatch.StartNew();
        try
        {
            IEstimator<ITransformer> pipeline;
            var options = m.Options?.Invoke(data);
            if (options is not null && o.Precision is { } precision) options.Precision = precision;
            if (options is null) pipeline = Baseline(ml, data);
            else if (data.Regression) pipeline = ml.Transforms.LinearAttention.SequenceRegression((SequenceRegressionOptions)options);
            else pipeline = ml.Transforms.Conversion.MapValueToKey("Label", nameof(QualityRow.Label))
                .Append(ml.Transforms.LinearAttention.TextClassification((TextClassificationOptions)options));
            var model = pipeline.Fit(trainView);
            double seconds = clock.Elapsed.TotalSeconds;
            var trained = model as LinearAttentionTransformer ?? (model as TransformerChain<ITransformer>)?.LastTransformer as LinearAttentionTransformer;
            var report = trained?.TrainingReport;
            var scored = model.Transform(testView);
            var measured = point with
            {
                TrainSeconds = seconds, TrainableParameters = trainable, TotalParameters = total,
                TokensPerSecond = m.Key is "full" or "converted" && report is { TokensSeen: > 0 } ? report.TokensSeen / Math.Max(1e-9, report.Elapsed.TotalSeconds) : null,
            };
            // Transform is lazy: evaluate before the model (and its native weights) is disposed.
            var result = data.Regression ? WithRegression(measured, ml.Regression.Evaluate(scored, labelColumnName: nameof(QualityRow.Target)))
                                         : WithClassification(measured, ml.MulticlassClassification.Evaluate(scored));
            (model as IDisposable)?.Dispose();
            return result;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // One failing point (a bug, out of memory) is recorded; the others still run.
            return point with { Status = "failed", TrainSeconds = clock.Elapsed.TotalSeconds, Note = $"FAILED: {e.GetType().Name}: {e.Message.Split('\n')[0].Trim()}" };
        }
    }

    /// <summary>FeaturizeText + SdcaMaximumEntropy (classification) or Sdca (regression) with ML.NET's defaults.</summary>
    private static IEstimator<ITransformer> Baseline(MLContext ml, QualityData data)
    {
        var features = ml.Transforms.Text.FeaturizeText("Features", new Transforms.Text.TextFeaturizingEstimator.Options(), data.TextColumns);
        return data.Regression
            ? features.Append(ml.Regression.Trainers.Sdca(labelColumnName: nameof(QualityRow.Target)))
            : ml.Transforms.Conversion.MapValueToKey("Label", nameof(QualityRow.Label)).Append(features).Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy());
    }

    private static QualityPoint WithClassification(QualityPoint p, MulticlassClassificationMetrics metrics)
    {
        var precision = metrics.ConfusionMatrix.PerClassPrecision;
        var recall = metrics.ConfusionMatrix.PerClassRecall;
        // A class never predicted has no precision (NaN); its F1 counts as 0, as scikit-learn's zero_division default.
        double F1(double pr, double re) => double.IsNaN(pr) || double.IsNaN(re) || pr + re <= 0 ? 0 : 2 * pr * re / (pr + re);
        double macroF1 = Enumerable.Range(0, precision.Count).Average(i => F1(precision[i], recall[i]));
        return p with { Accuracy = metrics.MicroAccuracy, LogLoss = metrics.LogLoss, MacroF1 = precision.Count > 2 ? macroF1 : null };
    }

    private static QualityPoint WithRegression(QualityPoint p, RegressionMetrics metrics) => p with { RSquared = metrics.RSquared, Rmse = metrics.RootMeanSquaredError };
}
