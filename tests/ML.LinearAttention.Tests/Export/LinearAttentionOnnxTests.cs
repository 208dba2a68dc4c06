using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Export;
using Microsoft.ML.LinearAttention.OnnxScoring;
using Microsoft.ML.LinearAttention.Tests.Text;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Export;

/// <summary>
/// Fitted ML.NET transformers exported with <see cref="LinearAttentionOnnx"/> and scored by the TorchSharp-free sample
/// (tokenizer from the contract, ML.NET's ApplyOnnxModel): the same scores as <c>Transform</c>, the same classes.
/// </summary>
public sealed class LinearAttentionOnnxTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-onnx-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed class ReviewRow
    {
        public string Text { get; set; } = "";
        public string Title { get; set; } = "";
        [VectorType(2)] public float[] Extra { get; set; } = new float[2];
        public float Rating { get; set; }
    }

    private static List<ReviewRow> Reviews(int n) => PersistenceTests.SmallRows(n).Select((r, i) => new ReviewRow
    {
        Text = r.Text, Title = i % 3 == 0 ? "" : "title " + r.Text.Split(' ')[0],
        Extra = new[] { (float)Math.Sin(i), i % 5 == 0 ? float.NaN : i % 7 },
        Rating = (r.Sentiment == "positive" ? 4 : 1) + (float)Math.Cos(i),
    }).ToList();

    [Fact]
    public void ExportedClassifierScoresLikeTransformThroughApplyOnnxModel()
    {
        var ml = new MLContext(seed: 1);
        var o = TextClassificationTests.Tiny();
        o.MaxEpochs = 1;
        o.BatchSize = 16;
        o.MaxSequenceLength = 12; // some rows are cut: the sample must truncate as the library does
        o.Attention = "softmax";
        var rows = PersistenceTests.SmallRows(96);
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o))
            .Fit(ml.Data.LoadFromEnumerable(rows));
        var transformer = model.LastTransformer;
        var test = rows.Take(40).ToList();
        var scored = model.Transform(ml.Data.LoadFromEnumerable(test));
        var expected = scored.GetColumn<float[]>("Score").ToList();
        var names = transformer.ClassNames!;
        var expectedLabels = scored.GetColumn<uint>("PredictedLabel").Select(k => names[(int)k - 1]).ToList();

        var result = LinearAttentionOnnx.Export(transformer, Path.Combine(_dir, "sentiment.onnx"));
        Assert.True(File.Exists(result.VocabularyPath) && File.Exists(result.ContractPath));
        Assert.Equal(names, result.Contract.Labels);
        Assert.Equal(12, result.Contract.MaxSequenceLength);
        Assert.Null(result.Contract.Inputs.SegmentIds);

        using var scorer = new OnnxTextScorer(result.GraphPath);
        var actual = scorer.Score(test.Select(r => new[] { r.Text }).ToList());
        OnnxParity.AssertClose(expected.ToArray(), actual.Select(a => a.Scores).ToArray(), what: "classifier");
        Assert.Equal(expectedLabels, actual.Select(a => a.PredictedLabel));
        // One row per call pads to shorter lengths (8, or the model's 12): the same scores.
        var oneByOne = test.Take(8).Select(r => scorer.Score(new[] { new[] { r.Text } })[0].Scores).ToArray();
        OnnxParity.AssertClose(expected.Take(8).ToArray(), oneByOne, what: "one row per call");
        model.Dispose();
    }

    [Fact]
    public void ExportedClassifierKeepsTheCalibrationTemperature()
    {
        var ml = new MLContext(seed: 2);
        var o = TextClassificationTests.Tiny();
        o.MaxEpochs = 2;
        o.Attention = "linear";
        var rows = PersistenceTests.SmallRows(640);   // enough for the automatic validation split, so a temperature is fit
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o))
            .Fit(ml.Data.LoadFromEnumerable(rows));
        var transformer = model.LastTransformer;
        Assert.NotEqual(1.0, transformer.Temperature);
        var test = rows.Take(48).ToList();
        var expected = model.Transform(ml.Data.LoadFromEnumerable(test)).GetColumn<float[]>("Score").ToArray();

        var result = LinearAttentionOnnx.Export(transformer, Path.Combine(_dir, "calibrated.onnx"));
        using var scorer = new OnnxTextScorer(result.GraphPath);
        OnnxParity.AssertClose(expected, scorer.Score(test.Select(r => new[] { r.Text }).ToList()).Select(a => a.Scores).ToArray(), what: "calibrated classifier");
        model.Dispose();
    }

    [Fact]
    public void ExportedRegressorWithTwoTextColumnsAndMissingSideFeaturesScoresLikeTransform()
    {
        var ml = new MLContext(seed: 2);
        var o = new SequenceRegressionOptions
        {
            ModelDimension = 16, NumberOfLayers = 2, NumberOfHeads = 2, FeedForwardMultiplier = 2, MaxSequenceLength = 32, BatchSize = 16, MaxEpochs = 1,
            LogEverySteps = 0, CpuThreads = 1, HybridPlan = "hedgehog@1", Position = Encoder.PositionEncoding.Learned,
        };
        var rows = Reviews(64);
        var model = ml.Transforms.LinearAttention.SequenceRegression(labelColumnName: "Rating", textColumnNames: new[] { "Text", "Title" }, featureColumnName: "Extra", options: o)
            .Fit(ml.Data.LoadFromEnumerable(rows));
        var expected = model.Transform(ml.Data.LoadFromEnumerable(rows)).GetColumn<float>("Score").Select(s => new[] { s }).ToArray();

        var result = LinearAttentionOnnx.Export(model, Path.Combine(_dir, "rating.onnx"));
        Assert.Equal("Regression", result.Contract.Task);
        Assert.Equal(new[] { "Text", "Title" }, result.Contract.TextColumns);
        Assert.NotNull(result.Contract.Inputs.SegmentIds);
        Assert.Equal(2, result.Contract.SideFeatureCount);

        using var scorer = new OnnxTextScorer(result.GraphPath);
        var actual = scorer.Score(rows.Select(r => new[] { r.Text, r.Title }).ToList(), rows.Select(r => r.Extra).ToList());
        OnnxParity.AssertClose(expected, actual.Select(a => a.Scores).ToArray(), what: "regressor");
        Assert.All(actual, a => Assert.Null(a.PredictedLabel));
        model.Dispose();
    }

    [Fact]
    public void UnsupportedMechanismIsRefusedByNameAndNothingIsWritten()
    {
        var ml = new MLContext(seed: 3);
        var o = TextClassificationTests.Tiny();
        o.MaxEpochs = 1;
        o.Attention = "gla";
        o.Position = Encoder.PositionEncoding.None;
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o))
            .Fit(ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(32)));
        var e = Assert.Throws<NotSupportedException>(() => LinearAttentionOnnx.Export(model.LastTransformer, Path.Combine(_dir, "gla.onnx")));
        Assert.Contains("'gla'", e.Message);
        Assert.Contains("softmax, linear, hedgehog", e.Message);
        Assert.False(File.Exists(Path.Combine(_dir, "gla.onnx")));
        model.Dispose();
    }

    [SharedDataFact(Vision.ImageData.Mnist)]
    public void ImageClassifierWithAnUnsupportedMechanismIsRefusedWithWhatCanBeExported()
    {
        var ml = new MLContext(seed: 4);
        var o = Vision.ImageClassificationTests.TinyDigits();
        o.MaxEpochs = 1;
        o.NumberOfLayers = 1;
        o.Attention = "rala";
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Digit")
            .Append(ml.Transforms.LinearAttention.ImageClassification(options: o))
            .Fit(ml.Data.LoadFromEnumerable(Vision.ImageData.MnistRows(0, 32)));
        var e = Assert.Throws<NotSupportedException>(() => LinearAttentionOnnx.Export(model.LastTransformer, Path.Combine(_dir, "digits.onnx")));
        Assert.Contains("'rala' (block 0)", e.Message);
        Assert.Contains("softmax, linear, hedgehog, mala", e.Message);
        Assert.Contains("pretrained ResNet18 stem", e.Message);
        Assert.False(File.Exists(Path.Combine(_dir, "digits.onnx")));
        model.Dispose();
    }

    [Fact]
    public void ScorerRefusesAGraphWithoutItsContract()
    {
        var graph = Path.Combine(_dir, "lonely.onnx");
        File.WriteAllBytes(graph, new byte[] { 8, 8 });
        var e = Assert.Throws<FileNotFoundException>(() => new OnnxTextScorer(graph));
        Assert.Contains("lonely.onnx.json", e.Message);
    }
}
