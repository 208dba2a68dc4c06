using System.Diagnostics;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Tests.Text;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Resilience;

/// <summary>Bad input rows of the fault suite (docs/fault-suite.md): each is a clear error or a logged recovery.</summary>
public sealed class BadInputTests(ITestOutputHelper output)
{
    private static TextClassificationOptions Micro()
    {
        var o = CheckpointTests.Options(checkpoints: null!);
        o.CheckpointDirectory = null;
        o.MaxEpochs = 1;
        o.LogEverySteps = 0;
        return o;
    }

    private static (MLContext Ml, List<string> Log) Context()
    {
        var ml = new MLContext(seed: 1);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.RawMessage); };
        return (ml, log);
    }

    private static EstimatorChain<TextClassificationTransformer> Classifier(MLContext ml, TextClassificationOptions? o = null, string? features = null)
        => ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, featureColumnName: features, options: o ?? Micro()));

    public sealed class Prediction
    {
        public uint PredictedLabel { get; set; }
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    [Fact]
    public void NullAndEmptyTextAreEmptyRowsInTrainingAndPrediction()
    {
        var (ml, _) = Context();
        var rows = PersistenceTests.SmallRows(32);
        rows[0].Text = null!;
        rows[1].Text = "";
        using var model = Classifier(ml).Fit(ml.Data.LoadFromEnumerable(rows));
        using var engine = ml.Model.CreatePredictionEngine<SentimentRow, Prediction>(model);
        var fromNull = engine.Predict(new SentimentRow { Text = null!, Sentiment = "positive" }).Score;
        var fromEmpty = engine.Predict(new SentimentRow { Text = "", Sentiment = "positive" }).Score;
        Assert.All(fromNull, s => Assert.True(float.IsFinite(s)));
        Assert.Equal(fromEmpty, fromNull); // null is read as empty text: [CLS] [SEP]
    }

    public sealed class RowWithNumbers
    {
        public string Text { get; set; } = "";
        public string Sentiment { get; set; } = "";
        [VectorType(2)] public float[] Numbers { get; set; } = new float[2];
    }

    [Fact]
    public void NonFiniteFeaturesBecomeTheTrainingMeanAndAreReported()
    {
        var (ml, log) = Context();
        var rows = PersistenceTests.SmallRows(32).Select((r, i) => new RowWithNumbers { Text = r.Text, Sentiment = r.Sentiment, Numbers = new[] { i % 5f, i % 3 == 0 ? 10f : -2f } }).ToList();
        rows[3].Numbers = new[] { float.NaN, 1f };
        rows[4].Numbers = new[] { float.PositiveInfinity, float.NegativeInfinity };
        using var model = Classifier(ml, features: "Numbers").Fit(ml.Data.LoadFromEnumerable(rows));
        Assert.Contains(log, l => l.Contains("3 numeric input value(s) are NaN or ±∞") && l.Contains("training mean"));

        var finite = rows.Where(r => r.Numbers.All(float.IsFinite)).ToList();
        var mean = new[] { finite.Average(r => r.Numbers[0]), rows.Where(r => float.IsFinite(r.Numbers[1])).Average(r => r.Numbers[1]) };
        using var engine = ml.Model.CreatePredictionEngine<RowWithNumbers, Prediction>(model);
        var bad = engine.Predict(new RowWithNumbers { Text = "good", Numbers = new[] { float.NaN, float.NegativeInfinity } }).Score;
        var atMean = engine.Predict(new RowWithNumbers { Text = "good", Numbers = new[] { (float)mean[0], (float)mean[1] } }).Score;
        for (int i = 0; i < bad.Length; i++) Assert.Equal(atMean[i], bad[i], 5);
    }

    public sealed class RegressionRow
    {
        public string Text { get; set; } = "";
        public float Target { get; set; }
    }

    [Fact]
    public void NaNLabelsAreSkippedAndCounted()
    {
        var (ml, log) = Context();
        var rows = PersistenceTests.SmallRows(32).Select((r, i) => new RegressionRow { Text = r.Text, Target = i % 7 == 0 ? float.NaN : r.Text.Length }).ToList();
        var o = new SequenceRegressionOptions { ModelDimension = 16, NumberOfLayers = 1, NumberOfHeads = 2, FeedForwardMultiplier = 1, MaxSequenceLength = 64, BatchSize = 8, MaxEpochs = 1, CpuThreads = 1, LogEverySteps = 0 };
        using var model = ml.Transforms.LinearAttention.SequenceRegression(labelColumnName: "Target", textColumnNames: new[] { "Text" }, options: o)
            .Fit(ml.Data.LoadFromEnumerable(rows));
        Assert.Contains(log, l => l.StartsWith("5 training row(s) have no label in column 'Target'", StringComparison.Ordinal) && l.Contains("Fill or remove"));
        Assert.Equal(27 / 8 + 1, model.TrainingReport!.Steps); // 27 labelled rows in batches of 8

        var none = rows.Select(r => new RegressionRow { Text = r.Text, Target = float.NaN });
        var e = Assert.Throws<InvalidOperationException>(() => ml.Transforms.LinearAttention.SequenceRegression(labelColumnName: "Target", textColumnNames: new[] { "Text" }, options: o)
            .Fit(ml.Data.LoadFromEnumerable(none)));
        Assert.Contains("no row with a label", e.Message);
    }

    [Fact]
    public void SingleClassTrainingDataIsRefusedWithTheFix()
    {
        var (ml, _) = Context();
        var rows = PersistenceTests.SmallRows(16).Select(r => new SentimentRow { Text = r.Text, Sentiment = "positive" }).ToList();
        var one = Assert.ThrowsAny<ArgumentException>(() => Classifier(ml).Fit(ml.Data.LoadFromEnumerable(rows)));
        Assert.Contains("single class, 'positive' (16 row(s)) in label column 'Label'", one.Message);
        Assert.Contains("at least two classes", one.Message);

        // Two known classes (the key was fitted on all data) but a split that kept only one of them.
        var all = ml.Data.LoadFromEnumerable(rows.Append(new SentimentRow { Text = "awful", Sentiment = "negative" }));
        var key = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Fit(all);
        var onlyPositive = key.Transform(ml.Data.LoadFromEnumerable(rows));
        var e = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: Micro()).Fit(onlyPositive));
        output.WriteLine(e.Message);
        Assert.Contains("single class, 'positive'", e.Message);
        Assert.Contains("stratified split", e.Message);
    }

    [Fact]
    public void ALabelUnseenInTrainingDoesNotStopPredictionAndIsMissingInEvaluation()
    {
        var (ml, _) = Context();
        var rows = PersistenceTests.SmallRows(32);
        using var model = Classifier(ml).Fit(ml.Data.LoadFromEnumerable(rows));
        using var engine = ml.Model.CreatePredictionEngine<SentimentRow, Prediction>(model);
        var p = engine.Predict(new SentimentRow { Text = "fine but slow", Sentiment = "neutral" }); // "neutral" was never seen
        Assert.InRange(p.PredictedLabel, 1u, 2u);

        var test = rows.Take(10).Append(new SentimentRow { Text = "meh", Sentiment = "neutral" }).ToList();
        var scored = model.Transform(ml.Data.LoadFromEnumerable(test));
        Assert.Equal(0u, scored.GetColumn<uint>("Label").Last()); // the unseen label maps to the missing key
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        output.WriteLine($"accuracy over rows with known labels: {metrics.MicroAccuracy:F3}");
        Assert.Equal(10, metrics.ConfusionMatrix.Counts.Sum(r => r.Sum())); // ML.NET's evaluator skips the missing label
    }

    [Fact]
    public void SchemaMismatchAtPredictionTimeNamesTheColumn()
    {
        var (ml, _) = Context();
        using var model = Classifier(ml).Fit(ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(16)));
        var wrong = ml.Data.LoadFromEnumerable(new[] { new RegressionRow { Text = "x", Target = 1 } }); // no Sentiment, Text ok
        var e1 = Assert.ThrowsAny<Exception>(() => model.Transform(wrong));
        Assert.Contains("Sentiment", e1.Message);

        var classifier = model.LastTransformer;
        var noText = ml.Data.LoadFromEnumerable(new[] { new { Body = "x" } }.Select(a => new BodyOnly { Body = a.Body }));
        var e2 = Assert.ThrowsAny<ArgumentException>(() => classifier.GetOutputSchema(noText.Schema));
        Assert.Contains("'Text'", e2.Message);
        Assert.Contains("Available columns: Body", e2.Message);
        var e3 = Assert.ThrowsAny<ArgumentException>(() => ml.Model.CreatePredictionEngine<BodyOnly, Prediction>(classifier));
        Assert.Contains("'Text'", e3.Message);
    }

    public sealed class BodyOnly
    {
        public string Body { get; set; } = "";
    }

    [Fact]
    public void TextFarOverTheMaximumLengthIsCutAndReported()
    {
        var (ml, log) = Context();
        using var model = Classifier(ml).Fit(ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(16)));
        var huge = string.Join(" ", Enumerable.Repeat("great service but the login page fails", 25_000)); // ~1 MB, ~200K tokens vs 128
        var sw = Stopwatch.StartNew();
        var scored = model.Transform(ml.Data.LoadFromEnumerable(new[] { new SentimentRow { Text = huge, Sentiment = "positive" } }));
        var score = scored.GetColumn<float[]>("Score").Single();
        output.WriteLine($"1 MB row scored in {sw.ElapsedMilliseconds} ms");
        Assert.All(score, s => Assert.True(float.IsFinite(s)));
        Assert.Contains(log, l => l.Contains("1 scored row(s) were longer than MaxSequenceLength = 128") && l.Contains("larger MaxSequenceLength"));
    }

    [Fact]
    public void CudaRequestedButAbsentIsAClearErrorFromFit()
    {
        if (TorchSharp.torch.cuda.is_available()) return; // only meaningful on the CPU backend
        var ml = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = false };
        var e = Assert.Throws<InvalidOperationException>(() => Classifier(ml).Fit(ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(8))));
        Assert.Contains("TorchSharp-cuda-linux", e.Message);
        Assert.Contains("FallbackToCpu", e.Message);
    }
}
