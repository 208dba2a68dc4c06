using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Data;
using TorchSharp;
using Microsoft.ML.LinearAttention.Samples.Reporting;

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

    /// <summary>One measured (mechanism, T) point.</summary>
    public sealed record Point(string Mechanism, long T, int BatchRows, int Rows, double? Seconds, double? RowsPerSecond, double? TokensPerSecond, double? PeakGiB, string? Status);

    public static int Run(TrainingBenchmarkOptions o, TextWriter log)
    {
        var (cuda, memory) = TrainingBenchmark.Start(o, log, "bench inference");
        if (cuda && o.Tf32) torch.backends.cuda.matmul.allow_tf32 = true;
        var mechanisms = BenchmarkMechanism.ParseList(o.Mechanisms, o.Layers, o.HybridPlan, o.HybridBase);
        var points = new List<Point>();
        var total = Stopwatch.StartNew();
        var meta = TrainingBenchmark.Meta(o, cuda, memory);
        meta["precision"] = "fp32 weights and activations (the fitted transformer scores with its fp32 master model); TF32 matmuls " +
                            (cuda && o.Tf32 ? "allowed (--tf32)" : "off (libtorch's default)");
        foreach (var mechanism in mechanisms)
        {
            var position = mechanism.Position(o.Hidden, o.Heads);
            foreach (long t in o.Lengths)
            {
                var point = o.BudgetSeconds > 0 && total.Elapsed.TotalSeconds > o.BudgetSeconds
                    ? new Point(mechanism.Label, t, (int)Math.Max(1, o.TokensPerStep / t), 0, null, null, null, null, $"skipped: the command's {o.BudgetSeconds:F0} s budget was spent")
                    : Measure(o, mechanism, position, t, cuda, memory);
                points.Add(point);
                log.WriteLine($"{mechanism.Label,-34} T={t,6} batch {point.BatchRows,4}  {TrainingBenchmark.Fmt(point.RowsPerSecond, "N1"),10} rows/s  " +
                              $"{TrainingBenchmark.Fmt(point.TokensPerSecond, "N0"),10} tok/s  peak {TrainingBenchmark.Fmt(point.PeakGiB, "F2")} GiB  ({point.Rows} rows) {point.Status}");
                Write(o, meta, points); // after every point: a run cut short keeps what it measured
            }
        }
        log.WriteLine($"wrote inference.md and inference.json to {o.OutputDirectory}");
        return 0;
    }

    private static void Write(TrainingBenchmarkOptions o, Dictionary<string, string> meta, List<Point> points)
    {
        Directory.CreateDirectory(o.OutputDirectory);
        File.WriteAllText(Path.Combine(o.OutputDirectory, "inference.json"), JsonSerializer.Serialize(new { meta, o.TokensPerStep, o.Layers, o.Hidden, o.Heads, Points = points },
            new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(o.OutputDirectory, "inference.md"), Markdown(o, meta, points));
    }

    private static Point Measure(TrainingBenchmarkOptions o, BenchmarkMechanism mechanism, Encoder.PositionEncoding position, long t, bool cuda, CudaMemoryProbe? memory)
    {
        int b = (int)Math.Max(1, o.TokensPerStep / t);
        int rows = Math.Max(o.InferenceRows, 4 * b);
        try
        {
            var ml = new MLContext(seed: 1) { GpuDeviceId = cuda ? 0 : null, FallbackToCpu = false };
            var options = TrainingBenchmark.EstimatorOptions(o, mechanism, position, t, b);
            options.MaxSteps = 1;
            options.LogEverySteps = 0;
            using var model = ml.MulticlassClassification.Trainers.LinearAttentionTextClassification(options)
                .Fit(ml.Data.LoadFromEnumerable(SyntheticCorpus.Rows((int)Math.Max(2, b), (int)t, seed: 7).ToList()));   // both classes
            var scoring = SyntheticCorpus.Rows(rows + b, (int)t, seed: 11).ToList(); // made before timing: only scoring is timed
            ReadScores(model.Transform(ml.Data.LoadFromEnumerable(scoring.Take(b))));    // warm-up batch
            memory?.ResetPeak();
            var clock = Stopwatch.StartNew();
            int read = ReadScores(model.Transform(ml.Data.LoadFromEnumerable(scoring.Skip(b))));
            double seconds = clock.Elapsed.TotalSeconds;
            double? peak = memory?.PeakBytes() is long bytes ? bytes / (1024.0 * 1024 * 1024) : null;
            return new Point(mechanism.Label, t, b, read, seconds, read / seconds, read * t / seconds, peak, null);
        }
        catch (Exception e)
        {
            return new Point(mechanism.Label, t, b, 0, null, null, null, null, TrainingBenchmark.IsOutOfMemory(e) ? "OOM" : "error: " + TrainingBenchmark.FirstLine(e));
        }
        finally
        {
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
        }
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

    private static string Markdown(TrainingBenchmarkOptions o, Dictionary<string, string> meta, List<Point> points)
    {
        var md = new StringBuilder();
        var lengths = points.Select(p => p.T).Distinct().OrderBy(t => t).ToList();
        GeneratedMarkdown.Header(md, "Batched inference through ML.NET Transform", meta["command"],
            "See [docs/gpu-training.md](../gpu-training.md).");
        md.AppendLine($"- commit `{meta["commit"]}`; machine: {meta["machine"]}; device {meta["device"]}; libtorch {meta["libtorch"]}; {meta["date"]}");
        md.AppendLine($"- model: {o.Layers} layers, hidden {o.Hidden}, {o.Heads} heads, FFN 4×, fitted for one step (weights do not change the speed); " +
                      $"InferenceBatchSize = {o.TokensPerStep:N0} / T rows per forward pass; synthetic documents of exactly T tokens");
        md.AppendLine("- timed: `transformer.Transform(data)` read with a row cursor over the Score column (tokenization, batching, forward pass, " +
                      "copy back), after one warm-up batch; the rows are made before timing");
        md.AppendLine($"- precision: {meta["precision"]}; peak memory: {meta["memory"]}");
        md.AppendLine();
        md.AppendLine("| mechanism | " + string.Join(" | ", lengths.Select(t => $"T={TrainingReport.L(t)} rows/s · tokens/s · peak")) + " |");
        md.AppendLine("|---|" + string.Concat(lengths.Select(_ => "---:|")));
        foreach (var g in points.GroupBy(p => p.Mechanism))
            md.AppendLine($"| {g.Key} | " + string.Join(" | ", lengths.Select(t => g.FirstOrDefault(p => p.T == t) is { } p
                ? p.RowsPerSecond is null ? (p.Status ?? "—").Replace("|", "/")
                  : $"{p.RowsPerSecond.Value.ToString(p.RowsPerSecond < 100 ? "F1" : "F0", CultureInfo.InvariantCulture)} · {TrainingReport.Short(p.TokensPerSecond)} · {(p.PeakGiB is double gib ? gib.ToString("F1", CultureInfo.InvariantCulture) + " GiB" : "—")}"
                : "")) + " |");
        md.AppendLine();
        md.AppendLine("Rows/s relative to softmax (> 1 is faster):");
        md.AppendLine();
        md.AppendLine("| mechanism | " + string.Join(" | ", lengths.Select(t => $"T={TrainingReport.L(t)}")) + " |");
        md.AppendLine("|---|" + string.Concat(lengths.Select(_ => "---:|")));
        foreach (var g in points.GroupBy(p => p.Mechanism).Where(g => g.Key != "softmax"))
            md.AppendLine($"| {g.Key} | " + string.Join(" | ", lengths.Select(t =>
                g.FirstOrDefault(p => p.T == t)?.RowsPerSecond is double mine && points.FirstOrDefault(p => p.Mechanism == "softmax" && p.T == t)?.RowsPerSecond is double s
                    ? (mine / s).ToString("F2", CultureInfo.InvariantCulture) + "×" : "—")) + " |");
        return md.ToString();
    }
}
