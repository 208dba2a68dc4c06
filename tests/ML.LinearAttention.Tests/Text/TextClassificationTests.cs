using System.Diagnostics;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Text;

public sealed class TextClassificationTests(ITestOutputHelper output)
{
    internal static TextClassificationOptions Tiny() => new()
    {
        ModelDimension = 32, NumberOfLayers = 1, NumberOfHeads = 2, FeedForwardMultiplier = 2, Dropout = 0.1,
        MaxSequenceLength = 128, BatchSize = 32, MaxEpochs = 3, LearningRate = 3e-3, LogEverySteps = 0, CpuThreads = 1, // tiny models: one libtorch thread is fastest, above all on a busy machine
        InferenceBatchSize = 64,
    };

    [SharedDataFact("uci-sentiment-sentences")]
    public void FitAndEvaluateOnRealSentimentFarAboveMajority()
    {
        var sw = Stopwatch.StartNew();
        var ml = new MLContext(seed: 1);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.Message); };
        var rows = SharedData.UciSentiment();
        var train = ml.Data.LoadFromEnumerable(rows.Take(2400));
        var test = ml.Data.LoadFromEnumerable(rows.Skip(2400));

        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: Tiny()))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedSentiment", "PredictedLabel"));
        var model = pipeline.Fit(train);
        var scored = model.Transform(test);
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        foreach (var line in log) output.WriteLine(line);
        output.WriteLine($"micro {metrics.MicroAccuracy:F3} macro {metrics.MacroAccuracy:F3} logloss {metrics.LogLoss:F3} in {sw.Elapsed.TotalSeconds:F1}s");

        Assert.True(metrics.MicroAccuracy > 0.70, $"accuracy {metrics.MicroAccuracy:F3} should be far above the 0.5 majority class");
        var predicted = scored.GetColumn<string>("PredictedSentiment").ToList();
        Assert.All(predicted, p => Assert.Contains(p, new[] { "positive", "negative" }));
        var slotNames = default(VBuffer<ReadOnlyMemory<char>>);
        scored.Schema["Score"].GetSlotNames(ref slotNames);
        Assert.Equal(2, slotNames.Length);
        Assert.Contains(log, l => l.Contains("tokens/s") && l.Contains("ETA"));
        Assert.Contains(log, l => l.Contains("No training row was truncated"));
    }
}
