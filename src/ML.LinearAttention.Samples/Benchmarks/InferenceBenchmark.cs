using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Data;
using TorchSharp;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench inference`: batched scoring through the real ML.NET path — a TextClassificationTransformer (fitted for one
/// step) whose <c>Transform</c> output is read with a cursor, so tokenization, batching and the forward pass all
/// count — in rows/s and tokens/s at each length, for each mechanism. Writes inference.json and inference.md.
/// </summary>
public static class InferenceBenchmark
{
    /// <summary>Defaults of `bench inference` (before its command-line options).</summary>
    public static TrainingBenchmarkOptions Defaults { get; } = new() { Mechanisms = "linear_relu,hedgehog,softmax", Lengths = new long[] { 512, 8192 } };

    /// <summary>One measured (mechanism, T, precision) point.</summary>
    public sealed record Point(string Mechanism, long T, int BatchRows, int Rows, double? Seconds, double? RowsPerSecond, double? TokensPerSecond, double? PeakGiB, string? Status,
        string Precision = "fp32");

    /// <summary>The scoring precisions of --precision (default fp32,bf16 on CUDA, fp32 on the CPU); fp16 on the CPU is refused here.</summary>
    public static List<InferencePrecision> Precisions(TrainingBenchmarkOptions o, bool cuda)
    {
        var list = (o.Precisions ?? (cuda ? "fp32,bf16" : "fp32")).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(ScoringPrecision.Parse).Distinct().ToList();
        var device = cuda ? DeviceType.CUDA : DeviceType.CPU;
        try { foreach (var p in list) ScoringPrecision.Resolve(p, device); }
        catch (NotSupportedException e) { throw new ArgumentException("--precision: " + e.Message, e); }
        return list;
    }

    public static int Run(TrainingBenchmarkOptions o, TextWriter log)
    {
        var (cuda, memory) = TrainingBenchmark.Start(o, log, "bench inference");
        if (cuda && o.Tf32) torch.backends.cuda.matmul.allow_tf32 = true;
        var precisions = Precisions(o, cuda);
        var mechanisms = BenchmarkMechanism.ParseList(o.Mechanisms, o.Layers, o.HybridPlan, o.HybridBase);
        var points = new List<Point>();
        var agreement = new List<InferenceAgreement.Point>();
        var total = Stopwatch.StartNew();
        var meta = TrainingBenchmark.Meta(o, cuda, memory);
        meta["precision"] = "scoring precision per row of the table (InferencePrecision: fp32 = the fitted fp32 model, bf16/fp16 = a copy of its weights " +
                            "in that type); TF32 matmuls " + (cuda && o.Tf32 ? "allowed (--tf32)" : "off (libtorch's default)");
        foreach (var mechanism in mechanisms)
        {
            var position = mechanism.Position(o.Hidden, o.Heads);
            foreach (long t in o.Lengths)
            {
                var measured = o.BudgetSeconds > 0 && total.Elapsed.TotalSeconds > o.BudgetSeconds
                    ? precisions.Select(p => new Point(mechanism.Label, t, (int)Math.Max(1, o.TokensPerStep / t), 0, null, null, null, null,
                        $"skipped: the command's {o.BudgetSeconds:F0} s budget was spent", ScoringPrecision.Name(p))).ToList()
                    : Measure(o, mechanism, position, t, cuda, memory, precisions);
                foreach (var point in measured)
                {
                    points.Add(point);
                    log.WriteLine($"{mechanism.Label,-34} {point.Precision} T={t,6} batch {point.BatchRows,4}  {TrainingBenchmark.Fmt(point.RowsPerSecond, "N1"),10} rows/s  " +
                                  $"{TrainingBenchmark.Fmt(point.TokensPerSecond, "N0"),10} tok/s  peak {TrainingBenchmark.Fmt(point.PeakGiB, "F2")} GiB  ({point.Rows} rows) {point.Status}");
                }
                Write(o, meta, points, agreement); // after every point: a run cut short keeps what it measured
            }
            if (o.AgreementTrainRows > 0 && precisions.Any(p => ScoringPrecision.Resolve(p, cuda ? DeviceType.CUDA : DeviceType.CPU) != torch.ScalarType.Float32))
            {
                agreement.AddRange(InferenceAgreement.Measure(o, mechanism, position, precisions, cuda, log));
                Write(o, meta, points, agreement);
            }
        }
        log.WriteLine($"wrote inference.md and inference.json to {o.OutputDirectory}");
        return 0;
    }

    private static void Write(TrainingBenchmarkOptions o, Dictionary<string, string> meta, List<Point> points, List<InferenceAgreement.Point> agreement)
    {
        Directory.CreateDirectory(o.OutputDirectory);
        File.WriteAllText(Path.Combine(o.OutputDirectory, "inference.json"), JsonSerializer.Serialize(new { meta, o.TokensPerStep, o.Layers, o.Hidden, o.Heads, Points = points, Agreement = agreement },
            new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(o.OutputDirectory, "inference.md"), Markdown(o, meta, points, agreement));
    }

    private static List<Point> Measure(TrainingBenchmarkOptions o, BenchmarkMechanism mechanism, Encoder.PositionEncoding position, long t, bool cuda, CudaMemoryProbe? memory,
        List<InferencePrecision> precisions)
    {
        int b = (int)Math.Max(1, o.TokensPerStep / t);
        int rows = Math.Max(o.InferenceRows, 8 * b);
        var points = new List<Point>();
        try
        {
            var ml = new MLContext(seed: 1) { GpuDeviceId = cuda ? 0 : null, FallbackToCpu = false };
            var options = TrainingBenchmark.EstimatorOptions(o, mechanism, position, t, b);
            options.MaxSteps = 1;
            options.LogEverySteps = 0;
            using var model = ml.MulticlassClassification.Trainers.LinearAttentionTextClassification(options)
                .Fit(ml.Data.LoadFromEnumerable(SyntheticCorpus.Rows((int)Math.Max(2, b), (int)t, seed: 7).ToList()));   // both classes
            var scoring = SyntheticCorpus.Rows(rows + b, (int)t, seed: 11).ToList(); // made before timing: only scoring is timed
            foreach (var precision in precisions)
            {
                string name = ScoringPrecision.Name(precision == InferencePrecision.Auto ? Effective(model, precision) : precision);
                try
                {
                    model.Precision = precision;
                    // Warm-up: two batches (the low-precision copy, kernel compilation, the JIT's second tier).
                    ReadScores(model.Transform(ml.Data.LoadFromEnumerable(scoring.Take(2 * b))));
                    memory?.ResetPeak();
                    var timed = ml.Data.LoadFromEnumerable(scoring.Skip(b));
                    var clock = Stopwatch.StartNew();
                    int read = 0;
                    do read += ReadScores(model.Transform(timed));
                    while (clock.Elapsed.TotalSeconds < o.InferenceSeconds);
                    double seconds = clock.Elapsed.TotalSeconds;
                    double? peak = memory?.PeakBytes() is long bytes ? bytes / (1024.0 * 1024 * 1024) : null;
                    points.Add(new Point(mechanism.Label, t, b, read, seconds, read / seconds, read * t / seconds, peak, null, name));
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    points.Add(new Point(mechanism.Label, t, b, 0, null, null, null, null, TrainingBenchmark.IsOutOfMemory(e) ? "OOM" : "error: " + TrainingBenchmark.FirstLine(e), name));
                }
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            string status = TrainingBenchmark.IsOutOfMemory(e) ? "OOM" : "error: " + TrainingBenchmark.FirstLine(e);
            points.AddRange(precisions.Skip(points.Count).Select(p => new Point(mechanism.Label, t, b, 0, null, null, null, null, status, ScoringPrecision.Name(p))));
        }
        finally
        {
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
        }
        return points;
    }

    private static InferencePrecision Effective(Estimators.LinearAttentionTransformer model, InferencePrecision precision)
    {
        var before = model.Precision;
        model.Precision = precision;
        var effective = model.EffectivePrecision;
        model.Precision = before;
        return effective;
    }

    /// <summary>Reads every row's Score through a cursor (what an ML.NET evaluator or a data-view consumer does).</summary>
    private static int ReadScores(IDataView scored)
    {
        var column = scored.Schema["Score"];
        using var cursor = scored.GetRowCursor(new[] { column });
        var getter = cursor.GetGetter<VBuffer<float>>(column);
        VBuffer<float> value = default;
        int n = 0;
        while (cursor.MoveNext()) { getter(ref value); n++; }
        return n;
    }

    private static string Markdown(TrainingBenchmarkOptions o, Dictionary<string, string> meta, List<Point> points, List<InferenceAgreement.Point> agreement)
    {
        var md = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        var lengths = points.Select(p => p.T).Distinct().OrderBy(t => t).ToList();
        GeneratedMarkdown.Header(md, "Batched inference through ML.NET Transform", meta["command"],
            "See [docs/gpu-training.md](../gpu-training.md).");
        md.AppendLine($"- commit `{meta["commit"]}`; machine: {meta["machine"]}; device {meta["device"]}; libtorch {meta["libtorch"]}; {meta["date"]}");
        md.AppendLine($"- model: {o.Layers} layers, hidden {o.Hidden}, {o.Heads} heads, FFN 4×, fitted for one step (weights do not change the speed); " +
                      $"InferenceBatchSize = {o.TokensPerStep:N0} / T rows per forward pass; synthetic documents of exactly T tokens");
        md.AppendLine("- timed: `transformer.Transform(data)` read with a row cursor over the Score column (tokenization, batching, forward pass, " +
                      $"copy back), after two warm-up batches, repeated over the rows for at least {o.InferenceSeconds:G3} s; the rows are made before timing");
        md.AppendLine($"- precision: {meta["precision"]}; peak memory: {meta["memory"]}");
        md.AppendLine();
        string Label(Point p) => points.Select(q => q.Precision).Distinct().Count() > 1 ? $"{p.Mechanism} ({p.Precision})" : p.Mechanism;
        md.AppendLine("| mechanism | " + string.Join(" | ", lengths.Select(t => $"T={TrainingReport.L(t)} rows/s · tokens/s · peak")) + " |");
        md.AppendLine("|---|" + string.Concat(lengths.Select(_ => "---:|")));
        foreach (var g in points.GroupBy(Label))
            md.AppendLine($"| {g.Key} | " + string.Join(" | ", lengths.Select(t => g.FirstOrDefault(p => p.T == t) is { } p
                ? p.RowsPerSecond is null ? (p.Status ?? "—").Replace("|", "/")
                  : $"{p.RowsPerSecond.Value.ToString(p.RowsPerSecond < 100 ? "F1" : "F0", inv)} · {TrainingReport.Short(p.TokensPerSecond)} · {(p.PeakGiB is double gib ? gib.ToString("F1", inv) + " GiB" : "—")}"
                : "")) + " |");
        md.AppendLine();
        md.AppendLine("Rows/s relative to softmax at the same precision (> 1 is faster):");
        md.AppendLine();
        md.AppendLine("| mechanism | " + string.Join(" | ", lengths.Select(t => $"T={TrainingReport.L(t)}")) + " |");
        md.AppendLine("|---|" + string.Concat(lengths.Select(_ => "---:|")));
        foreach (var g in points.Where(p => p.Mechanism != "softmax").GroupBy(Label))
            md.AppendLine($"| {g.Key} | " + string.Join(" | ", lengths.Select(t =>
                g.FirstOrDefault(p => p.T == t) is { RowsPerSecond: double mine } p
                && points.FirstOrDefault(q => q.Mechanism == "softmax" && q.T == t && q.Precision == p.Precision)?.RowsPerSecond is double s
                    ? (mine / s).ToString("F2", inv) + "×" : "—")) + " |");
        if (agreement.Count == 0) return md.ToString();
        md.AppendLine();
        md.AppendLine($"Agreement with fp32 on real rows: a classifier of this shape (MaxSequenceLength 256) trained for 2 epochs on {o.AgreementTrainRows:N0} AG News rows " +
                      $"(title and description; --data-folder {o.DataFolder}), then the same {o.AgreementRows:N0} held-out rows scored at fp32 and at each precision:");
        md.AppendLine();
        md.AppendLine("| mechanism | precision | rows | rows whose class changes | largest probability difference | mean difference | accuracy (fp32) |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|");
        foreach (var a in agreement)
            md.AppendLine(a.ChangedShare is double changed
                ? $"| {a.Mechanism} | {a.Precision} | {a.Rows:N0} | {changed.ToString("P2", inv)} | {a.MaxScoreDifference!.Value.ToString("F4", inv)} | {a.MeanScoreDifference!.Value.ToString("E1", inv)} | {a.Accuracy!.Value.ToString("P1", inv)} ({a.Fp32Accuracy!.Value.ToString("P1", inv)}) |"
                : $"| {a.Mechanism} | {a.Precision} | — | {(a.Status ?? "—").Replace("|", "/")} | | | |");
        return md.ToString();
    }
}
