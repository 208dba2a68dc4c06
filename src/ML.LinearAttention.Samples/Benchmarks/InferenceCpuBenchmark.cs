using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench inference-cpu`: CPU serving numbers a .NET developer compares with what they have. Text classifiers are trained
/// on a few thousand real IMDb reviews (each cut to its first 120 words, which the attention models read as 128 tokens),
/// then scored on held-out reviews: one-row <c>PredictionEngine</c> latency (p50/p95) and batch <c>Transform</c> rows/s,
/// for the estimator's default model, linear_relu and softmax (at each --precision), beside ML.NET's FeaturizeText +
/// SdcaMaximumEntropy pipeline trained and scored on the same rows. Writes inference-cpu.md and .json.
/// </summary>
public static class InferenceCpuBenchmark
{
    public const string Usage = """
          bench inference-cpu [options]  CPU one-row PredictionEngine latency and batch Transform rows/s at 128 tokens, beside
                                   ML.NET FeaturizeText + SdcaMaximumEntropy on the same IMDb rows (writes inference-cpu.md/.json)
              --models default,linear_relu,softmax   --precision fp32,bf16   --threads N (libtorch CPU threads, default 1)
              --train N (default 3000) --test N (default 1000) --predictions N (timed one-row calls, default 300) --epochs N (default 1)
              --data-folder DIR (holds imdb-reviews/, default ../shared/data) --out DIR --commit C --machine M
        """;

    /// <summary>One IMDb review.</summary>
    public sealed class Review
    {
        public string Text { get; set; } = "";
        public string Sentiment { get; set; } = "";
    }

    /// <summary>What a PredictionEngine returns.</summary>
    public sealed class ReviewScore
    {
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    /// <summary>One measured model.</summary>
    public sealed record Point(string Model, string Precision, double TrainSeconds, double Accuracy, double LatencyP50Ms, double LatencyP95Ms,
        double BatchRowsPerSecond, long Parameters, double? RowsAt128Tokens);

    private const int Words = 120, MaxTokens = 128;

    public static int Run(string[] args, TextWriter log)
    {
        var cl = new Commands.CommandLine("bench inference-cpu", args);
        var models = cl.List("models") is { Length: > 0 } m ? m : new[] { "default", "linear_relu", "softmax" };
        var precisions = (cl.List("precision") is { Length: > 0 } p ? p : new[] { "fp32", "bf16" }).Select(ScoringPrecision.Parse).Distinct().ToList();
        int threads = cl.Int("threads", 1), trainRows = cl.Int("train", 3000), testRows = cl.Int("test", 1000);
        int predictions = cl.Int("predictions", 300), epochs = cl.Int("epochs", 1);
        var dataFolder = cl.String("data-folder", Path.Combine("..", "shared", "data"))!;
        var outDir = cl.String("out", Path.Combine("docs", "benchmarks"))!;
        var info = new TrainingBenchmarkOptions { Commit = cl.String("commit") ?? new TrainingBenchmarkOptions().Commit, Machine = cl.String("machine") ?? new TrainingBenchmarkOptions().Machine };
        cl.RejectUnknown();
        if (threads < 1 || trainRows < 10 || testRows < 10 || predictions < 10 || epochs < 1)
            throw new ArgumentException("--threads and --epochs must be at least 1, --train, --test and --predictions at least 10.");
        foreach (var name in models.Where(n => n is not ("default" or "linear_relu" or "softmax")))
            throw new ArgumentException($"--models {name}: use default, linear_relu or softmax.");
        foreach (var precision in precisions.Where(x => x == InferencePrecision.Float16))
            throw new ArgumentException("--precision fp16: " + Assert(() => ScoringPrecision.Resolve(precision, DeviceType.CPU)));

        TorchRuntime.EnsureLoaded();
        TorchRuntime.SetCpuThreads(threads);
        var (train, test) = Load(dataFolder, trainRows, testRows);
        log.WriteLine($"bench inference-cpu: {train.Count:N0} training and {test.Count:N0} test IMDb reviews, libtorch {torch.__version__}, {threads} thread(s), {info.Machine}");
        var meta = new Dictionary<string, string>
        {
            ["command"] = GeneratedMarkdown.SamplesCommand("bench inference-cpu " + string.Join(' ', args.Select(a => a.Any(char.IsWhiteSpace) ? "'" + a + "'" : a))),
            ["commit"] = info.Commit, ["machine"] = info.Machine, ["libtorch"] = torch.__version__, ["threads"] = threads.ToString(CultureInfo.InvariantCulture),
            ["loadBefore"] = LoadAverage(), ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture),
        };
        meta["matmul"] = string.Join(", ", new[] { torch.ScalarType.Float32, torch.ScalarType.BFloat16, torch.ScalarType.Float16 }
            .Select(t => $"{ScoringPrecision.Name(t)} {MatmulMilliseconds(t)}"));
        meta["cpu"] = CpuDescription();
        log.WriteLine($"{meta["cpu"]}; libtorch CPU matmul [2048×128]·[128×512], median of 20: {meta["matmul"]}");
        var points = new List<Point>();
        void Add(Point point)
        {
            points.Add(point);
            log.WriteLine($"{point.Model,-28} {point.Precision,-5} acc {point.Accuracy:P1}  one row p50 {point.LatencyP50Ms:F2} ms p95 {point.LatencyP95Ms:F2} ms  " +
                          $"batch {point.BatchRowsPerSecond:N0} rows/s  (trained in {point.TrainSeconds:F0} s)" +
                          (point.RowsAt128Tokens is double share ? $"; {share:P0} of scored rows filled all {MaxTokens} tokens" : ""));
            meta["loadAfter"] = LoadAverage();
            Write(outDir, meta, points, train.Count, test.Count, predictions, epochs);
        }

        var ml = new MLContext(seed: 1);
        Add(MeasureMlNet(ml, train, test, predictions));
        foreach (var name in models)
        {
            var clock = Stopwatch.StartNew();
            var key = ml.Transforms.Conversion.MapValueToKey("Label", nameof(Review.Sentiment)).Fit(ml.Data.LoadFromEnumerable(train));
            using var model = ml.MulticlassClassification.Trainers.LinearAttentionTextClassification(Options(name, threads, epochs))
                .Fit(key.Transform(ml.Data.LoadFromEnumerable(train)));
            double trainSeconds = clock.Elapsed.TotalSeconds;
            var chain = key.Append(model);
            foreach (var precision in precisions)
            {
                model.Precision = precision;
                long cutBefore = model.TruncatedRows;
                var (acc, p50, p95, rowsPerSecond) = Measure(ml, chain, test, predictions);
                long scored = Math.Min(64, test.Count) + test.Count + 20 + predictions; // warm-up, batch, engine warm-up, timed calls
                Add(new Point(Label(name), ScoringPrecision.Name(model.EffectivePrecision), trainSeconds, acc, p50, p95, rowsPerSecond, model.ParameterCount,
                    (model.TruncatedRows - cutBefore) / (double)scored));
            }
        }
        log.WriteLine($"wrote inference-cpu.md and inference-cpu.json to {outDir}");
        return 0;
    }

    /// <summary>Median time of one CPU matmul of the model's width in <paramref name="dtype"/> (why fp16 is refused on the CPU, why bf16 is not Auto there).</summary>
    private static string MatmulMilliseconds(torch.ScalarType dtype)
    {
        try
        {
            using var scope = torch.NewDisposeScope();
            var a = torch.randn(2048, 128).to(dtype);
            var b = torch.randn(128, 512).to(dtype);
            a.matmul(b);
            var ms = new double[20];
            for (int i = 0; i < ms.Length; i++)
            {
                var clock = Stopwatch.StartNew();
                using (a.matmul(b)) ms[i] = clock.Elapsed.TotalMilliseconds;
            }
            Array.Sort(ms);
            return ms[ms.Length / 2].ToString("F2", CultureInfo.InvariantCulture) + " ms";
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return "fails: " + TrainingBenchmark.FirstLine(e);
        }
    }

    private static string Assert(Action a)
    {
        try { a(); return "accepted"; }
        catch (NotSupportedException e) { return e.Message; }
    }

    private static string Label(string name) => name switch
    {
        "default" => "default (linear, 2×128)",
        _ => name + " (2×128)",
    };

    /// <summary>The estimator's defaults at 128 tokens, or the same size with another mechanism.</summary>
    internal static TextClassificationOptions Options(string name, int threads, int epochs)
    {
        var o = new TextClassificationOptions
        {
            TextColumnNames = new[] { nameof(Review.Text) }, MaxSequenceLength = MaxTokens, MaxEpochs = epochs, CpuThreads = threads,
            LogEverySteps = 0, Seed = 1,
        };
        if (name == "linear_relu") o.AttentionOptions = new Attention.PlainLinear.LinearMixerOptions { FeatureMap = "relu" };
        if (name == "softmax") o.Attention = "softmax";
        return o;
    }

    private static Point MeasureMlNet(MLContext ml, List<Review> train, List<Review> test, int predictions)
    {
        var clock = Stopwatch.StartNew();
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", nameof(Review.Sentiment))
            .Append(ml.Transforms.Text.FeaturizeText("Features", nameof(Review.Text)))
            .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy());
        var model = pipeline.Fit(ml.Data.LoadFromEnumerable(train));
        double trainSeconds = clock.Elapsed.TotalSeconds;
        var (acc, p50, p95, rowsPerSecond) = Measure(ml, model, test, predictions);
        return new Point("ML.NET FeaturizeText + SdcaMaximumEntropy", "fp32", trainSeconds, acc, p50, p95, rowsPerSecond, 0, null);
    }

    /// <summary>Accuracy and batch rows/s through Transform, then one-row PredictionEngine latencies.</summary>
    private static (double Accuracy, double P50, double P95, double RowsPerSecond) Measure(MLContext ml, ITransformer model, List<Review> test, int predictions)
    {
        var data = ml.Data.LoadFromEnumerable(test);
        Count(model.Transform(ml.Data.LoadFromEnumerable(test.Take(64)))); // warm-up (and the low-precision copy)
        var clock = Stopwatch.StartNew();
        var (rows, correct) = Count(model.Transform(data));
        double rowsPerSecond = rows / clock.Elapsed.TotalSeconds;

        using var engine = ml.Model.CreatePredictionEngine<Review, ReviewScore>(model, new PredictionEngineOptions { OwnsTransformer = false });
        for (int i = 0; i < 20; i++) engine.Predict(test[i % test.Count]);
        var ms = new double[predictions];
        for (int i = 0; i < predictions; i++)
        {
            var one = Stopwatch.StartNew();
            engine.Predict(test[i % test.Count]);
            ms[i] = one.Elapsed.TotalMilliseconds;
        }
        Array.Sort(ms);
        return (correct / (double)rows, ms[(int)(0.50 * (ms.Length - 1))], ms[(int)Math.Ceiling(0.95 * (ms.Length - 1))], rowsPerSecond);
    }

    private static (int Rows, int Correct) Count(IDataView scored)
    {
        using var cursor = scored.GetRowCursor(new[] { scored.Schema["Label"], scored.Schema["PredictedLabel"] });
        var label = cursor.GetGetter<uint>(scored.Schema["Label"]);
        var predicted = cursor.GetGetter<uint>(scored.Schema["PredictedLabel"]);
        uint l = 0, p = 0;
        int rows = 0, correct = 0;
        while (cursor.MoveNext())
        {
            label(ref l); predicted(ref p);
            rows++;
            if (l == p) correct++;
        }
        return (rows, correct);
    }

    /// <summary>Seeded samples of reviews with at least 120 words, each cut to its first 120 (HTML line breaks as spaces).</summary>
    internal static (List<Review> Train, List<Review> Test) Load(string dataFolder, int trainRows, int testRows)
    {
        var folder = Path.Combine(dataFolder, "imdb-reviews");
        if (!Directory.Exists(folder))
            throw new ArgumentException($"'{folder}' does not exist: pass --data-folder with the folder that holds imdb-reviews/ (../shared/data from the repository root).");
        return (Sample(Read(Path.Combine(folder, "imdb-train.tsv.gz")), trainRows, 1), Sample(Read(Path.Combine(folder, "imdb-test.tsv.gz")), testRows, 2));
    }

    private static List<Review> Sample(List<Review> rows, int count, int seed)
    {
        var rng = new Random(seed);
        return rows.OrderBy(_ => rng.Next()).Take(count).ToList();
    }

    // Converted TSV (see ../shared/data/README.md): header id, label, rating, url, text; text fields escaped.
    private static List<Review> Read(string path)
    {
        using var reader = new StreamReader(new GZipStream(File.OpenRead(path), CompressionMode.Decompress));
        var header = reader.ReadLine()!.Split('\t');
        int iLabel = Array.IndexOf(header, "label"), iText = Array.IndexOf(header, "text");
        var rows = new List<Review>();
        for (string? line; (line = reader.ReadLine()) is not null;)
        {
            var f = line.Split('\t');
            var words = Unescape(f[iText]).Replace("<br />", " ").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (words.Length < Words) continue;
            rows.Add(new Review { Text = string.Join(' ', words.Take(Words)), Sentiment = f[iLabel] });
        }
        return rows;
    }

    private static string Unescape(string s) => s.Replace("\\t", "\t").Replace("\\n", "\n").Replace("\\r", "\r").Replace("\\\\", "\\");

    /// <summary>Model name and bf16/fp16 instruction sets from /proc/cpuinfo (Linux), else the processor count.</summary>
    private static string CpuDescription()
    {
        try
        {
            var lines = File.ReadLines("/proc/cpuinfo").Take(64).ToList();
            string model = lines.FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown processor";
            var flags = (lines.FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal))?.Split(':', 2)[1] ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var half = flags.Where(f => f is "avx512_bf16" or "avx512_fp16" or "amx_bf16" or "amx_fp16" or "amx_tile").ToList();
            return $"{model}, {Environment.ProcessorCount} logical cores, {(half.Count == 0 ? "no bf16/fp16 instructions" : string.Join(" ", half))}";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"{Environment.ProcessorCount} logical cores";
        }
    }

    private static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Trim(); }
        catch (IOException) { return "unknown"; }
        catch (UnauthorizedAccessException) { return "unknown"; }
    }

    private static void Write(string outDir, Dictionary<string, string> meta, List<Point> points, int train, int test, int predictions, int epochs)
    {
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "inference-cpu.json"), JsonSerializer.Serialize(new { meta, Points = points }, new JsonSerializerOptions { WriteIndented = true }));
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        GeneratedMarkdown.Header(md, "CPU inference: one-row latency and batch throughput beside ML.NET", meta["command"],
            "See [docs/serving.md](../serving.md).");
        md.AppendLine($"- commit `{meta["commit"]}`; machine: {meta["machine"]}; libtorch {meta["libtorch"]}, {meta["threads"]} libtorch thread(s); {meta["date"]}");
        md.AppendLine($"- processor: {meta["cpu"]}; libtorch CPU matmul [2048×128]·[128×512] (median of 20): {meta["matmul"]} " +
                      "(fp16 is refused on the CPU; bf16 is fast only where the processor has bf16 instructions, so Auto stays fp32 there and bf16 is a choice)");
        md.AppendLine($"- load average (1, 5, 15 min) before: {meta["loadBefore"]}; after the last row: {meta.GetValueOrDefault("loadAfter", "—")}");
        md.AppendLine($"- data: IMDb reviews (../shared/data/imdb-reviews) with at least {Words} words, each cut to its first {Words}: {train:N0} training rows (seeded sample of " +
                      $"imdb-train), {test:N0} test rows (seeded sample of imdb-test); the attention models read the first {MaxTokens} WordPiece tokens (MaxSequenceLength = {MaxTokens}), " +
                      "ML.NET's pipeline the whole 120 words");
        md.AppendLine($"- trained for {epochs} epoch(s) with the estimator's defaults otherwise (2 layers, hidden 128, 4 heads); ML.NET: `FeaturizeText` + `SdcaMaximumEntropy` with defaults");
        md.AppendLine($"- one row: `PredictionEngine.Predict` of a single review, {predictions} timed calls after 20 warm-up calls; batch: `Transform` of the {test:N0} test rows read " +
                      "with a cursor (tokenization, batching, forward, copy back) after a 64-row warm-up");
        md.AppendLine();
        md.AppendLine("| model | precision | parameters | accuracy | one row p50 | one row p95 | batch rows/s | rows at 128 tokens | training |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var p in points)
            md.AppendLine($"| {p.Model} | {p.Precision} | {(p.Parameters > 0 ? p.Parameters.ToString("N0", inv) : "—")} | {p.Accuracy.ToString("P1", inv)} | " +
                          $"{p.LatencyP50Ms.ToString("F2", inv)} ms | {p.LatencyP95Ms.ToString("F2", inv)} ms | {p.BatchRowsPerSecond.ToString("N0", inv)} | " +
                          $"{(p.RowsAt128Tokens is double share ? share.ToString("P0", inv) : "—")} | {p.TrainSeconds.ToString("F0", inv)} s |");
        File.WriteAllText(Path.Combine(outDir, "inference-cpu.md"), md.ToString());
    }
}
