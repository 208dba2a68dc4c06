using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Conversion;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Tests.Pretrained;
using Microsoft.ML.LinearAttention.Tests.Text;
using Xunit;
using Xunit.Abstractions;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Tests.Conversion;

/// <summary>The estimators with a pretrained backbone (a tiny BERT in a Hugging Face folder) and with conversion.</summary>
public sealed class PretrainedEstimatorTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = TinyBert.TempFolder("pretrained-estimator");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string[] Good = { "good", "very good", "the movie was good", "a good dog", "good and very good" };
    private static readonly string[] Bad = { "bad", "very bad", "the movie was bad", "a bad cat", "not good , bad" };

    /// <summary>Sentences of the tiny vocabulary, labelled by their sentiment word.</summary>
    private static List<SentimentRow> Rows(int n, int seed)
    {
        var rng = new Random(seed);
        var fillers = new[] { "the cat sat on the mat", "it was", "a dog", "the movie", "on the mat ." };
        return Enumerable.Range(0, n).Select(i =>
        {
            bool good = i % 2 == 0;
            var core = (good ? Good : Bad)[rng.Next(5)];
            var text = rng.Next(2) == 0 ? core + " " + fillers[rng.Next(fillers.Length)] : fillers[rng.Next(fillers.Length)] + " " + core;
            return new SentimentRow { Text = text, Sentiment = good ? "positive" : "negative" };
        }).ToList();
    }

    private TextClassificationOptions Options(string folder) => new()
    {
        PretrainedBackbone = folder, BatchSize = 8, MaxEpochs = 2, LearningRate = 1e-3, Dropout = 0, LogEverySteps = 0, CpuThreads = 1,
    };

    [Fact]
    public void ConvertedBackboneTrainsInTwoStagesAndRoundTripsThroughSaveAndLoad()
    {
        var folder = TinyBert.WriteHuggingFaceFolder(Path.Combine(_dir, "tiny-bert"));
        var ml = new MLContext(seed: 1);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.RawMessage); };
        var rows = Rows(48, 1);
        var train = ml.Data.LoadFromEnumerable(rows);
        var unlabelled = ml.Data.LoadFromEnumerable(Rows(32, 2).Select(r => new TextOnly { Text = r.Text }));
        var o = Options(folder);
        o.Conversion = new ConversionOptions { HybridPlan = "softmax@-1", TransferData = unlabelled, TransferSteps = 8, TransferBatchSize = 8 };
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o))
            .Fit(train);
        foreach (var line in log) output.WriteLine(line);

        var classifier = model.LastTransformer;
        var config = classifier.Configuration;
        Assert.Equal(EncoderArchitecture.BertPostNorm, config.Architecture);
        Assert.Equal(new[] { "hedgehog", "softmax" }, config.Layers!.Select(l => l.Name));
        Assert.Equal((8, 2, 16), (config.ModelDim, config.NumLayers, config.MaxPositions));
        Assert.True(classifier.TrainingReport!.Steps > 0);
        Assert.Contains(log, l => l.StartsWith("Pretrained backbone"));
        Assert.Contains(log, l => l.StartsWith("Stage 1/2 done"));
        Assert.Contains(log, l => l.StartsWith("Stage 2/2 (fine-tuning on the labelled task): method 'lora'"));
        Assert.Contains(log, l => l.StartsWith("Fine-tuning 'lora'") && l.Contains("blocks.0.mixer.q_proj"));

        var path = Path.Combine(_dir, "converted.zip");
        ml.Model.Save(model, train.Schema, path);
        var test = ml.Data.LoadFromEnumerable(Rows(16, 3));
        var expected = model.Transform(test).GetColumn<float[]>("Score").ToList();
        var serving = new MLContext();
        LinearAttentionModel.Register(serving);
        var loaded = serving.Model.Load(path, out _);
        var actual = loaded.Transform(serving.Data.LoadFromEnumerable(Rows(16, 3))).GetColumn<float[]>("Score").ToList();
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i], actual[i]);
        (loaded as IDisposable)?.Dispose();
        (model as IDisposable)?.Dispose();
    }

    [Fact]
    public void ConvertedBackboneCacheIsReusedByALaterFitAndADamagedEntryStopsTheFit()
    {
        var folder = TinyBert.WriteHuggingFaceFolder(Path.Combine(_dir, "tiny-bert"));
        var cache = Path.Combine(_dir, "cache");
        (List<string> Log, List<float[]> Scores) Fit()
        {
            var ml = new MLContext(seed: 1);
            var log = new List<string>();
            ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.RawMessage); };
            var o = Options(folder);
            o.MaxEpochs = 1;
            o.Conversion = new ConversionOptions { TransferSteps = 6, CacheDirectory = cache };
            var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
                .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o))
                .Fit(ml.Data.LoadFromEnumerable(Rows(24, 1)));
            var scores = model.Transform(ml.Data.LoadFromEnumerable(Rows(8, 3))).GetColumn<float[]>("Score").ToList();
            (model as IDisposable)?.Dispose();
            return (log, scores);
        }

        var first = Fit();
        foreach (var line in first.Log) output.WriteLine(line);
        // 6 steps of 64 rows would see the 24 training texts 16 times: generic text joins them.
        Assert.Contains(first.Log, l => l.StartsWith("Stage 1 texts: 24 of the user's (training data) and ") && l.Contains("generic"));
        Assert.Contains(first.Log, l => l.StartsWith("Stage 1/2 done"));
        Assert.Contains(first.Log, l => l.Contains("saved to the cache"));
        var entry = Assert.Single(Directory.GetFiles(cache));

        var second = Fit();
        Assert.Contains(second.Log, l => l.Contains("loaded from the converted-backbone cache"));
        Assert.DoesNotContain(second.Log, l => l.StartsWith("Stage 1/2 done"));
        Assert.Equal(first.Scores, second.Scores);

        var bytes = File.ReadAllBytes(entry);
        File.WriteAllBytes(entry, bytes[..(bytes.Length - 10)]);
        var e = Assert.Throws<ConversionCacheException>(() => Fit());
        Assert.Contains(entry, e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void OptionsThatContradictTheBackboneFailBeforeTraining()
    {
        var folder = TinyBert.WriteHuggingFaceFolder(Path.Combine(_dir, "tiny-bert"));
        var ml = new MLContext(seed: 1);
        var train = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Fit(ml.Data.LoadFromEnumerable(Rows(8, 1)))
            .Transform(ml.Data.LoadFromEnumerable(Rows(8, 1)));
        string Error(Action<TextClassificationOptions> change)
        {
            var o = Options(folder);
            o.TextColumnNames = new[] { "Text" };
            change(o);
            return Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.LinearAttention.TextClassification(o).Fit(train)).Message;
        }
        Assert.Contains("ModelDimension = 64 contradicts", Error(o => o.ModelDimension = 64));
        Assert.Contains("has 8", Error(o => o.ModelDimension = 64));
        Assert.Contains("NumberOfLayers", Error(o => o.NumberOfLayers = 6));
        Assert.Contains("Position", Error(o => o.Position = PositionEncoding.None));
        Assert.Contains("Conversion = new ConversionOptions", Error(o => o.Attention = "gla"));
        Assert.Contains("own WordPiece vocabulary", Error(o => o.Tokenizer.VocabularyFile = "vocab.txt"));
        Assert.Contains("16 positions", Error(o => o.MaxSequenceLength = 100));
        // Past the learned-position cap and up to 2²⁰ the backbone's own table still decides (its message, not the cap's).
        Assert.Contains("16 positions", Error(o => { o.Position = PositionEncoding.Learned; o.MaxSequenceLength = 200_000; }));
        Assert.Contains("16 positions", Error(o => o.MaxSequenceLength = LinearAttentionOptions.MaxSupportedSequenceLength));
        Assert.Contains("HybridPlan do not apply", Error(o => o.HybridPlan = "3:1"));
        Assert.Contains("Two stage-2 fine-tuning methods", Error(o => { o.FineTuning = "bitfit"; o.Conversion = new ConversionOptions { TransferSteps = 1 }; }));
        Assert.Contains("all-MiniLM-L6-v2", Error(o => o.PretrainedBackbone = "no-such-model"));
        var empty = Options(Directory.CreateDirectory(Path.Combine(_dir, "empty")).FullName);
        Assert.Contains("config.json", Assert.Throws<FileNotFoundException>(() => ml.Transforms.LinearAttention.TextClassification(empty).Fit(train)).Message);
    }

    [Theory]
    [InlineData("psrp")]
    [InlineData("lora")]
    public void CatalogMethodsReachTheBertLayoutBlocks(string method)
    {
        // MP+ recalibrates every PostNormBlock's FFN branch; LoRA wraps its FFN layers as well as q/k/v/o.
        var folder = TinyBert.WriteHuggingFaceFolder(Path.Combine(_dir, "tiny-bert"));
        var ml = new MLContext(seed: 1);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.RawMessage); };
        var train = ml.Data.LoadFromEnumerable(Rows(24, 1));
        var o = Options(folder);
        o.MaxEpochs = 1;
        o.FineTuning = method;
        o.FineTuningOptions = method == "lora"
            ? new global::Microsoft.ML.LinearAttention.FineTuning.Lora.LoraOptions { Targets = new[] { "q_proj", "k_proj", "v_proj", "o_proj", "ffn_in", "ffn_out" }, MergeAfterTraining = false }
            : new global::Microsoft.ML.LinearAttention.FineTuning.MomentProbing.PsrpOptions { Probe = new global::Microsoft.ML.LinearAttention.FineTuning.MomentProbing.MomentProbingOptions { HiddenDim = 32, Heads = 2 }, Bottleneck = 4 };
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o))
            .Fit(train);
        var summary = log.Single(l => l.StartsWith($"Fine-tuning '{method}'"));
        output.WriteLine(summary);
        if (method == "lora") { Assert.Contains("on 12 layer(s)", summary); Assert.DoesNotContain("could not be wrapped", summary); }
        var path = Path.Combine(_dir, method + ".zip");
        ml.Model.Save(model, train.Schema, path);
        var expected = model.Transform(train).GetColumn<float[]>("Score").ToList();
        var serving = new MLContext();
        LinearAttentionModel.Register(serving);
        var loaded = serving.Model.Load(path, out _);
        Assert.Equal(expected, loaded.Transform(train).GetColumn<float[]>("Score").ToList());
        (loaded as IDisposable)?.Dispose();
        (model as IDisposable)?.Dispose();
    }

    private sealed class TextOnly
    {
        public string Text { get; set; } = "";
    }
}
