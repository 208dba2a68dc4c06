using Microsoft.ML.LinearAttention.Distributed;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Distributed;

/// <summary>Data parallelism through ML.NET: two thread ranks each run the text classifier's Fit with their collectives.</summary>
public sealed class DataParallelFitTests
{
    [Fact]
    public void TwoRanksFitTheSameModelThroughMLNet()
    {
        var scores = new float[2][];
        var steps = new long[2];
        ThreadCollectives.Run(2, c =>
        {
            var ml = new Microsoft.ML.MLContext(seed: 1);
            var data = ml.Data.LoadFromEnumerable(Microsoft.ML.LinearAttention.Tests.Text.PersistenceTests.SmallRows(128));
            var o = Microsoft.ML.LinearAttention.Tests.Text.TextClassificationTests.Tiny();
            o.MaxEpochs = 1; o.Dropout = 0;
            o.Distributed = new DistributedOptions { Collectives = c };
            var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
                .Append(ml.MulticlassClassification.Trainers.LinearAttentionTextClassification(textColumnNames: new[] { "Text" }, options: o));
            using var model = pipeline.Fit(data);
            steps[c.Rank] = model.LastTransformer.TrainingReport!.Steps;
            scores[c.Rank] = ml.Data.CreateEnumerable<ScoreRow>(model.Transform(data), reuseRowObject: false).SelectMany(r => r.Score).ToArray();
        });
        Assert.Equal(2, steps[0]); // 4 batches of 32 rows over 2 ranks
        Assert.Equal(steps[0], steps[1]);
        Assert.Equal(scores[0], scores[1]); // identical weights on both ranks
    }

    private sealed class ScoreRow
    {
        public float[] Score { get; set; } = Array.Empty<float>();
    }
}
