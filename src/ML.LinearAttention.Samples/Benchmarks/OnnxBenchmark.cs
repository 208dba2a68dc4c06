using System.Diagnostics;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Export;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench onnx`: for each exportable mechanism (and the fine-tuned forms), fit a small SST-2 classifier on real rows
/// of ../shared/data (and, for the image mechanisms, an MNIST digit classifier: <see cref="OnnxImageBenchmark"/>), export it, and score the same held-out rows with TorchSharp (ML.NET Transform; a prediction
/// engine for one row) and ONNX Runtime (InferenceSession, the same tokenizer): max |Δ| of the class probabilities,
/// agreement of the predicted class, rows/s and one-row p50 latency. Adds the published size of the TorchSharp-free
/// scoring app beside a TorchSharp one, and writes onnx.md / onnx.json.
/// </summary>
public static class OnnxBenchmark
{
    public const string Usage = """
          bench onnx [options]     export SST-2 classifiers of every exportable mechanism to ONNX; scores vs TorchSharp
                                   (max |Δ|, agreement), rows/s and one-row p50 of both, published app sizes; writes onnx.md
              --train N --rows N   training and scored rows from sst2/dev.tsv (default 3000, 2000)
              --latency-rows N     rows timed one by one (default 200)   --threads N (both runtimes, default 1)
              --image-train N --image-rows N   MNIST images for the image cases (default 2000, 1000)
              --only a,b           only these cases (softmax,linear_elu,linear_relu,linear_t2r,linear_dpfp,hedgehog,hybrid,lora,mp,
                                   image_mala,image_linear,image_hedgehog,image_softmax)
              --no-publish         skip the published sizes   --data DIR (default ../shared/data)   --out DIR --commit C --machine M
        """;

    public sealed record Options(int Train = 3000, int Rows = 2000, int ImageTrain = 2000, int ImageRows = 1000, int LatencyRows = 200, int Threads = 1, string[]? Only = null, bool Publish = true,
        string Data = "../shared/data", string OutputDirectory = "docs/benchmarks", string? Commit = null, string? Machine = null);

    /// <summary>One mechanism's row of the table.</summary>
    public sealed record Result(string Case, string Description, int Rows, double MaxAbsDelta, double Agreement, double Accuracy, int Nodes,
        double TorchRowsPerSecond, double OnnxRowsPerSecond, double TorchP50Ms, double OnnxP50Ms, double FitSeconds);

    private sealed class Review
    {
        public string Text { get; set; } = "";
        public string Sentiment { get; set; } = "";
    }

    private sealed class Scored
    {
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    internal static readonly (string Name, string Description, Action<TextClassificationOptions> Configure)[] Cases =
    {
        ("softmax", "softmax (SDPA)", o => o.Attention = "softmax"),
        ("linear_elu", "linear, elu+1", o => o.Attention = "linear"),
        ("linear_relu", "linear, relu", o => { o.Attention = "linear"; o.AttentionOptions = new Attention.PlainLinear.LinearMixerOptions { FeatureMap = "relu" }; }),
        ("linear_t2r", "linear, T2R (learned)", o => { o.Attention = "linear"; o.AttentionOptions = new Attention.PlainLinear.LinearMixerOptions { FeatureMap = "t2r" }; }),
        ("linear_dpfp", "linear, DPFP", o => { o.Attention = "linear"; o.AttentionOptions = new Attention.PlainLinear.LinearMixerOptions { FeatureMap = "dpfp" }; }),
        ("hedgehog", "Hedgehog (learned softmax map)", o => o.Attention = "hedgehog"),
        ("hybrid", "hybrid: hedgehog + softmax@1", o => { o.Attention = "hedgehog"; o.HybridPlan = "softmax@1"; }),
        ("lora", "linear relu, LoRA r=8 (merged)", o => { o.Attention = "linear"; o.AttentionOptions = new Attention.PlainLinear.LinearMixerOptions { FeatureMap = "relu" }; o.FineTuning = "lora"; }),
        ("mp", "linear elu, Moment Probing head", o => { o.Attention = "linear"; o.FineTuning = "moment_probing"; o.FineTuningOptions = new MomentProbingOptions { HiddenDim = 64, Heads = 4 }; }),
    };

    private static (List<Review> Train, List<Review> Test) Sst2(Options o)
    {
        var file = Path.Combine(o.Data, "sst2", "dev.tsv");
        if (!File.Exists(file)) throw new FileNotFoundException($"SST-2 is not at {file}; pass --data with the folder holding sst2/ (the repository's ../shared/data).", file);
        var all = File.ReadLines(file).Skip(1).Select(l => l.Split('\t')).Where(p => p.Length == 2)
            .Select(p => new Review { Text = p[0].Trim(), Sentiment = p[1].Trim() == "1" ? "positive" : "negative" }).ToList();
        if (all.Count < o.Train + o.Rows) throw new ArgumentException($"sst2/dev.tsv has {all.Count} rows; --train {o.Train} + --rows {o.Rows} need more.");
        return (all.Take(o.Train).ToList(), all.Skip(o.Train).Take(o.Rows).ToList());
    }

    /// <summary>Every case name, text then image.</summary>
    internal static IReadOnlyList<string> CaseNames => Cases.Select(c => c.Name).Concat(OnnxImageBenchmark.Cases.Select(c => c.Name)).ToList();

    public static int Run(Options o, TextWriter log)
    {
        var cases = Cases.Where(c => o.Only is null || o.Only.Contains(c.Name)).ToList();
        var imageCases = OnnxImageBenchmark.Cases.Where(c => o.Only is null || o.Only.Contains(c.Name)).ToList();
        if (cases.Count + imageCases.Count == 0) throw new ArgumentException($"--only names no case; the cases are {string.Join(", ", CaseNames)}.");
        var (train, test) = cases.Count > 0 ? Sst2(o) : (new List<Review>(), new List<Review>());
        var meta = OnnxBenchmarkReport.Meta(o);
        log.WriteLine($"bench onnx: {cases.Count} text cases ({train.Count} training rows, {test.Count} scored rows of SST-2), {imageCases.Count} image cases " +
                      $"({o.ImageTrain} training and {o.ImageRows} scored MNIST images), {o.Threads} threads, commit {meta["commit"]} ({meta["machine"]})");
        var results = new List<Result>();
        var dir = Directory.CreateTempSubdirectory("la-bench-onnx-").FullName;
        try
        {
            foreach (var c in cases)
            {
                var r = Measure(c, train, test, o, Path.Combine(dir, c.Name + ".onnx"));
                results.Add(r);
                Report(log, r);
                OnnxBenchmarkReport.Write(o, meta, results, null);
            }
            if (imageCases.Count > 0)
            {
                var (imageTrain, imageTest) = OnnxImageBenchmark.Data(o);
                foreach (var c in imageCases)
                {
                    var r = OnnxImageBenchmark.Measure(c, imageTrain, imageTest, o, Path.Combine(dir, c.Name + ".onnx"));
                    results.Add(r);
                    Report(log, r);
                    OnnxBenchmarkReport.Write(o, meta, results, null);
                }
            }
            var sizes = o.Publish ? OnnxBenchmarkReport.PublishedSizes(log) : null;
            OnnxBenchmarkReport.Write(o, meta, results, sizes);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
        log.WriteLine($"wrote onnx.md and onnx.json to {o.OutputDirectory}");
        return results.All(r => r.MaxAbsDelta <= 1e-4 && r.Agreement >= 0.999) ? 0 : 1;
    }

    private static Result Measure((string Name, string Description, Action<TextClassificationOptions> Configure) c, List<Review> train, List<Review> test, Options o, string graphPath)
    {
        var ml = new MLContext(seed: 1);
        var options = new TextClassificationOptions
        {
            ModelDimension = 64, NumberOfLayers = 2, NumberOfHeads = 4, FeedForwardMultiplier = 2, MaxSequenceLength = 128, BatchSize = 32,
            MaxEpochs = 1, LearningRate = 2e-3, LogEverySteps = 0, CpuThreads = o.Threads, InferenceBatchSize = 64,
        };
        c.Configure(options);
        var (model, fitSeconds, torchScores, torchRate) = FitAndScore(ml, ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: options)), train, test);
        var transformer = model.LastTransformer;

        var export = LinearAttentionOnnx.Export(transformer, graphPath);
        using var session = new InferenceSession(graphPath, new SessionOptions { IntraOpNumThreads = o.Threads, InterOpNumThreads = 1 });
        // Tokenized as a TorchSharp-free app does: BertTokenizer over the exported vocabulary, [CLS] pieces [SEP], cut to the maximum length.
        var settings = export.Contract.Tokenizer!;
        var tokenizer = Microsoft.ML.Tokenizers.BertTokenizer.Create(export.VocabularyPath!, new Microsoft.ML.Tokenizers.BertOptions { LowerCaseBeforeTokenization = settings.LowerCase });
        int[] Encode(string text) => new[] { settings.ClsId }
            .Concat(tokenizer.EncodeToIds(text, addSpecialTokens: false).Take(export.Contract.MaxSequenceLength - 2)).Append(settings.SepId).ToArray();
        float[][] Score(IReadOnlyList<Review> rows) => RunOnnx(session, rows.Select(r => Encode(r.Text)).ToList(), settings.PadId);
        Score(test.Take(64).ToList());
        var watch = Stopwatch.StartNew();
        var onnxScores = new List<float[]>();
        for (int i = 0; i < test.Count; i += options.InferenceBatchSize) onnxScores.AddRange(Score(test.Skip(i).Take(options.InferenceBatchSize).ToList()));
        double onnxRate = test.Count / watch.Elapsed.TotalSeconds;

        var (maxDelta, agreement, accuracy) = Compare(torchScores, onnxScores, transformer.ClassNames!, test.Select(r => r.Sentiment).ToList());

        var latencyRows = test.Take(o.LatencyRows).ToList();
        using var engine = ml.Model.CreatePredictionEngine<Review, Scored>(model);
        engine.Predict(latencyRows[0]);
        double torchP50 = Median(latencyRows.Select(r => Time(() => engine.Predict(r))));
        double onnxP50 = Median(latencyRows.Select(r => Time(() => Score(new[] { r }))));
        model.Dispose();
        return new Result(c.Name, c.Description, test.Count, maxDelta, agreement, accuracy, export.Nodes,
            torchRate, onnxRate, torchP50, onnxP50, fitSeconds);
    }

    private static float[][] RunOnnx(InferenceSession session, IReadOnlyList<int[]> ids, int padId)
    {
        int b = ids.Count, t = ids.Max(r => r.Length);
        var tokens = new DenseTensor<long>(new[] { b, t });
        var mask = new DenseTensor<long>(new[] { b, t });
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++)
            {
                tokens[i, j] = j < ids[i].Length ? ids[i][j] : padId;
                mask[i, j] = j < ids[i].Length ? 1 : 0;
            }
        using var results = session.Run(new[]
        {
            NamedOnnxValue.CreateFromTensor(SequenceModelExport.InputIds, tokens),
            NamedOnnxValue.CreateFromTensor(SequenceModelExport.AttentionMask, mask),
        });
        var scores = results.First(r => r.Name == SequenceModelExport.Scores).AsTensor<float>();
        int k = scores.Dimensions[1];
        var flat = scores.ToArray();
        return Enumerable.Range(0, b).Select(i => flat.AsSpan(i * k, k).ToArray()).ToArray();
    }

    private static void Report(TextWriter log, Result r)
        => log.WriteLine($"{r.Case,-14} max |Δ| {r.MaxAbsDelta:E2}  agree {r.Agreement:P2}  acc {r.Accuracy:P1}  torch {r.TorchRowsPerSecond,8:N0} rows/s p50 {r.TorchP50Ms:F2} ms  " +
                         $"onnx {r.OnnxRowsPerSecond,8:N0} rows/s p50 {r.OnnxP50Ms:F2} ms");

    /// <summary>
    /// Fits <paramref name="pipeline"/> on <paramref name="train"/> and scores <paramref name="test"/> with ML.NET
    /// Transform after a warm-up batch: the model, fit seconds, the Score column and rows/s.
    /// </summary>
    internal static (TransformerChain<T> Model, double FitSeconds, List<float[]> Scores, double RowsPerSecond) FitAndScore<T, TRow>(
        MLContext ml, EstimatorChain<T> pipeline, List<TRow> train, List<TRow> test) where T : class, ITransformer where TRow : class
    {
        var watch = Stopwatch.StartNew();
        var model = pipeline.Fit(ml.Data.LoadFromEnumerable(train));
        double fitSeconds = watch.Elapsed.TotalSeconds;
        model.Transform(ml.Data.LoadFromEnumerable(test.Take(64))).GetColumn<float[]>("Score").ToList(); // warm-up
        watch.Restart();
        var scores = model.Transform(ml.Data.LoadFromEnumerable(test)).GetColumn<float[]>("Score").ToList();
        return (model, fitSeconds, scores, test.Count / watch.Elapsed.TotalSeconds);
    }

    /// <summary>Max |Δ| over all probabilities, the share of rows with the same predicted class, and the ONNX side's accuracy.</summary>
    internal static (double MaxAbsDelta, double Agreement, double Accuracy) Compare(IReadOnlyList<float[]> torchScores, IReadOnlyList<float[]> onnxScores,
        IReadOnlyList<string> classNames, IReadOnlyList<string> truth)
    {
        double maxDelta = 0;
        int agree = 0, correct = 0;
        for (int i = 0; i < truth.Count; i++)
        {
            for (int j = 0; j < torchScores[i].Length; j++) maxDelta = Math.Max(maxDelta, Math.Abs(torchScores[i][j] - onnxScores[i][j]));
            int a = ArgMax(torchScores[i]), b = ArgMax(onnxScores[i]);
            if (a == b) agree++;
            if (classNames[b] == truth[i]) correct++;
        }
        return (maxDelta, (double)agree / truth.Count, (double)correct / truth.Count);
    }

    private static int ArgMax(float[] s)
    {
        int best = 0;
        for (int i = 1; i < s.Length; i++) if (s[i] > s[best]) best = i;
        return best;
    }

    internal static double Time(Action a)
    {
        var w = Stopwatch.StartNew();
        a();
        return w.Elapsed.TotalMilliseconds;
    }

    internal static double Median(IEnumerable<double> values)
    {
        var v = values.OrderBy(x => x).ToArray();
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    public static Options Parse(IReadOnlyList<string> args)
    {
        var o = new Options();
        for (int i = 0; i < args.Count; i++)
        {
            string Value() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"Option {args[i]} needs a value.");
            int Positive() => int.TryParse(Value(), out int n) && n > 0 ? n : throw new ArgumentException($"{args[i - 1]} needs a positive integer.");
            o = args[i] switch
            {
                "--train" => o with { Train = Positive() },
                "--rows" => o with { Rows = Positive() },
                "--latency-rows" => o with { LatencyRows = Positive() },
                "--image-train" => o with { ImageTrain = Positive() },
                "--image-rows" => o with { ImageRows = Positive() },
                "--threads" => o with { Threads = Positive() },
                "--only" => o with { Only = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) },
                "--no-publish" => o with { Publish = false },
                "--data" => o with { Data = Value() },
                "--out" => o with { OutputDirectory = Value() },
                "--commit" => o with { Commit = Value() },
                "--machine" => o with { Machine = Value() },
                var a => throw new ArgumentException($"Unknown option '{a}' for bench onnx.\n{Usage}"),
            };
        }
        if (o.Only?.FirstOrDefault(n => !CaseNames.Contains(n)) is { } unknown)
            throw new ArgumentException($"--only: unknown case '{unknown}'; the cases are {string.Join(", ", CaseNames)}.");
        return o;
    }
}
