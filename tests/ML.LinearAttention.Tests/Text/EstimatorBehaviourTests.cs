using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.SampleData;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Text;

public sealed class EstimatorBehaviourTests(ITestOutputHelper output)
{
    private static TextClassificationOptions Micro(int epochs = 1)
    {
        var o = TextClassificationTests.Tiny();
        o.ModelDimension = 16;
        o.FeedForwardMultiplier = 1;
        o.MaxEpochs = epochs;
        o.BatchSize = 16;
        return o;
    }

    private sealed class Wrong
    {
        public string Text { get; set; } = "";
        public float Label { get; set; }
        public string Numbers { get; set; } = "";
    }

    [Fact]
    public void SchemaErrorsNameTheColumnTheExpectedAndTheActualType()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(new[] { new Wrong { Text = "a", Label = 1, Numbers = "x" } });

        var missing = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Body" }, options: Micro()).Fit(data));
        Assert.Contains("'Body'", missing.Message);
        Assert.Contains("String", missing.Message);
        Assert.Contains("Available columns", missing.Message);

        var label = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: Micro()).Fit(data));
        Assert.Contains("'Label'", label.Message);
        Assert.Contains("Key<UInt32>", label.Message);
        Assert.Contains("Single", label.Message);
        Assert.Contains("MapValueToKey", label.Message);

        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
        var side = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" },
            featureColumnName: "Numbers", options: Micro()).Fit(keyed));
        Assert.Contains("'Numbers'", side.Message);
        Assert.Contains("String", side.Message);

        // The same checks on a SchemaShape (estimator.GetOutputSchema), before any data is read.
        var shape = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.LinearAttention.SequenceRegression(textColumnNames: new[] { "Nope" })
            .GetOutputSchema(MLNetBridge.ShapeOf(data.Schema)));
        Assert.Contains("'Nope'", shape.Message);
    }

    [Fact]
    public void OutputSchemaShapeMatchesTheTransformedSchema()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(48));
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.MulticlassClassification.Trainers.LinearAttentionTextClassification(textColumnNames: new[] { "Text" }, options: Micro()));
        var shape = pipeline.GetOutputSchema(MLNetBridge.ShapeOf(data.Schema));
        var score = shape.Single(c => c.Name == "Score");
        var predicted = shape.Single(c => c.Name == "PredictedLabel");
        Assert.Equal(SchemaShape.Column.VectorKind.Vector, score.Kind);
        Assert.Equal(NumberDataViewType.Single, score.ItemType);
        Assert.True(predicted.IsKey);
        Assert.Contains(predicted.Annotations, a => a.Name == "KeyValues");

        using var model = pipeline.Fit(data);
        var schema = model.Transform(data).Schema;
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 2), schema["Score"].Type);
        Assert.Equal(2UL, ((KeyDataViewType)schema["PredictedLabel"].Type).Count);
    }

    public sealed class Prediction
    {
        public uint PredictedLabel { get; set; }
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    [Fact]
    public void PredictionEngineAgreesWithBatchedTransformAndFitIsRepeatable()
    {
        var ml = new MLContext(seed: 1);
        var rows = PersistenceTests.SmallRows(64);
        var data = ml.Data.LoadFromEnumerable(rows);
        var estimator = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: Micro()));
        using var model = estimator.Fit(data);
        var batched = model.Transform(data).GetColumn<float[]>("Score").ToList();
        using (var engine = ml.Model.CreatePredictionEngine<SentimentRow, Prediction>(model))
        {
            for (int i = 0; i < 5; i++)
            {
                var p = engine.Predict(rows[i]);
                Assert.Equal(batched[i][0], p.Score[0], 4);
                Assert.Equal(batched[i][1] > batched[i][0] ? 2u : 1u, p.PredictedLabel);
            }
        }
        // Deterministic on the CPU for a fixed seed, and refittable: the same estimator fitted again gives the same model.
        using var again = estimator.Fit(data);
        Assert.Equal(batched.SelectMany(x => x), again.Transform(data).GetColumn<float[]>("Score").SelectMany(x => x));
        // No shape is cached: the same estimator object fits data with three classes.
        var three = ml.Data.LoadFromEnumerable(rows.Select((r, i) => new SentimentRow { Text = r.Text, Sentiment = (i % 3).ToString() }));
        using var threeModel = estimator.Fit(three);
        Assert.Equal(3, threeModel.Transform(three).GetColumn<float[]>("Score").First().Length);
    }

    [Fact]
    public void SixteenThousandTokenInputIsProcessedWithoutTruncation()
    {
        var ml = new MLContext(seed: 1);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.RawMessage); };
        var rows = PersistenceTests.SmallRows(8);
        var words = new[] { "the", "server", "is", "down", "again", "and", "login", "fails" };
        var longText = string.Join(" ", Enumerable.Range(0, 16_500).Select(i => words[i % words.Length]));
        int tokens = TextTokenizer.Create(null).EncodePiece(longText).Count + 2; // + [CLS] and [SEP]
        Assert.True(tokens >= 16_384, $"the long row has {tokens} tokens");
        rows.Add(new SentimentRow { Text = longText, Sentiment = "negative" });
        var o = Micro();
        o.MaxSequenceLength = 32_768;
        o.BatchSize = 4;
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o))
            .Fit(ml.Data.LoadFromEnumerable(rows));
        var info = log.Single(l => l.StartsWith("No training row was truncated", StringComparison.Ordinal));
        output.WriteLine(info);
        Assert.Contains($"{tokens:N0} tokens", info);
        var score = model.Transform(ml.Data.LoadFromEnumerable(rows.Skip(8))).GetColumn<float[]>("Score").Single();
        Assert.All(score, s => Assert.True(float.IsFinite(s)));

        // The same row with a short limit is cut, and the log says so.
        log.Clear();
        o.MaxSequenceLength = 512;
        using var cut = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o))
            .Fit(ml.Data.LoadFromEnumerable(rows));
        Assert.Contains(log, l => l.Contains("1 training row(s) were longer than MaxSequenceLength = 512") && l.Contains($"{tokens - 512:N0} tokens dropped"));
    }

    [Fact]
    public void CancellationStopsWithinOneStep()
    {
        var ml = new MLContext(seed: 1);
        using var cts = new CancellationTokenSource();
        var steps = new List<long>();
        var o = Micro(epochs: 5);
        o.BatchSize = 4;
        o.LogEverySteps = 1;
        o.CancellationToken = cts.Token;
        o.Progress = new SyncProgress(p => { steps.Add(p.Step); if (p.Step == 2) cts.Cancel(); });
        var estimator = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o));
        Assert.ThrowsAny<OperationCanceledException>(() => estimator.Fit(ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(64))));
        Assert.Equal(new long[] { 1, 2 }, steps);

        // ML.NET's own cancel (what AutoML calls on a trial's MLContext) stops training the same way.
        var automl = new MLContext(seed: 1);
        steps.Clear();
        var cancelExecution = typeof(MLContext).GetMethod("CancelExecution", System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic)!;
        o.CancellationToken = default;
        o.Progress = new SyncProgress(p => { steps.Add(p.Step); if (p.Step == 1) cancelExecution.Invoke(automl, null); });
        var second = automl.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(automl.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o));
        Assert.ThrowsAny<OperationCanceledException>(() => second.Fit(automl.Data.LoadFromEnumerable(PersistenceTests.SmallRows(64))));
        Assert.Equal(new long[] { 1 }, steps);
    }

    [Fact]
    public void PredictionEnginesServeInParallelAndDisposeReleasesTheModel()
    {
        var ml = new MLContext(seed: 1);
        var rows = PersistenceTests.SmallRows(48);
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: Micro()))
            .Fit(ml.Data.LoadFromEnumerable(rows));
        float[] Score(PredictionEngine<SentimentRow, Prediction> e, int i) => e.Predict(rows[i]).Score;
        // ML.NET's engines own (and dispose) the model by default; engines that share one model say they do not.
        var shared = new PredictionEngineOptions { OwnsTransformer = false };
        using var single = ml.Model.CreatePredictionEngine<SentimentRow, Prediction>(model, shared);
        var expected = Enumerable.Range(0, 12).Select(i => Score(single, i)).ToList();
        var results = new float[4][][];
        Parallel.For(0, 4, t =>
        {
            using var engine = ml.Model.CreatePredictionEngine<SentimentRow, Prediction>(model, shared); // one engine per thread, as PredictionEnginePool does
            results[t] = Enumerable.Range(0, 12).Select(i => Score(engine, i)).ToArray();
        });
        Assert.All(results, r => Assert.Equal(expected.SelectMany(x => x), r.SelectMany(x => x)));

        model.Dispose();
        var classifier = model.LastTransformer;
        Assert.Throws<ObjectDisposedException>(() => classifier.Transform(ml.Data.LoadFromEnumerable(rows)));
    }

    private sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }

    [Fact]
    public void SyntheticTicketsAreDeterministicAndUseEveryPriority()
    {
        var a = SupportTickets.Generate(400, seed: 5);
        var b = SupportTickets.Generate(400, seed: 5);
        Assert.Equal(a.Select(t => t.Title + t.Body + t.Priority + string.Join(",", t.Numbers)), b.Select(t => t.Title + t.Body + t.Priority + string.Join(",", t.Numbers)));
        Assert.Equal(SupportTickets.Priorities.OrderBy(p => p), a.Select(t => t.Priority).Distinct().OrderBy(p => p));
        Assert.All(a, t => Assert.True(t.ResolutionHours > 0));
        Assert.NotEqual(a.Select(t => t.Body), SupportTickets.Generate(400, seed: 6).Select(t => t.Body));
    }

    [Fact]
    public void TabularTextTicketsWithSideFeaturesBeatTheMajorityClass()
    {
        var ml = new MLContext(seed: 1);
        var tickets = SupportTickets.Generate(900, seed: 1);
        var train = ml.Data.LoadFromEnumerable(tickets.Take(700));
        var test = ml.Data.LoadFromEnumerable(tickets.Skip(700));
        var o = Micro(epochs: 3);
        o.ModelDimension = 32;
        o.BatchSize = 32;
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", nameof(SupportTicket.Priority))
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Title", "Body" }, featureColumnName: "Numbers", options: o))
            .Fit(train);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        double majority = tickets.Skip(700).GroupBy(t => t.Priority).Max(g => g.Count()) / 200.0;
        output.WriteLine($"tickets: accuracy {metrics.MicroAccuracy:F3} vs majority {majority:F3}");
        Assert.True(metrics.MicroAccuracy > majority + 0.1, $"accuracy {metrics.MicroAccuracy:F3}, majority class {majority:F3}");
    }
}
