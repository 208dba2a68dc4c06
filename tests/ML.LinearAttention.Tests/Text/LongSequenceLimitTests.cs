using System.Diagnostics;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Training;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Text;

/// <summary>
/// MaxSequenceLength's limits (issue #23, one 1,048,576-token document): rotary or no positions go up to
/// <see cref="LinearAttentionOptions.MaxSupportedSequenceLength"/> (2²⁰) and a row longer than the old 131,072 cap trains
/// and scores; learned positions, whose table grows with the length, stop at
/// <see cref="LinearAttentionOptions.MaxLearnedPositionsSequenceLength"/> with a message that names the fix; past 2²⁰
/// everything is refused.
/// </summary>
public sealed class LongSequenceLimitTests(ITestOutputHelper output)
{
    private static TextClassificationOptions Tiny(int maxLength, PositionEncoding position) => new()
    {
        ModelDimension = 16, NumberOfLayers = 1, NumberOfHeads = 2, FeedForwardMultiplier = 2, Dropout = 0,
        MaxSequenceLength = maxLength, Position = position, BatchSize = 1, MaxEpochs = 1, MaxSteps = 1, ValidationFraction = 0,
        EarlyStoppingPatience = 0, LearningRate = 1e-3, LogEverySteps = 0, CpuThreads = 2, InferenceBatchSize = 1, Seed = 1,
    };

    /// <summary>A row of <paramref name="words"/> copies of one word (one WordPiece token each, plus [CLS] and [SEP]).</summary>
    private static SentimentRow Row(string word, int words, string label)
        => new() { Text = string.Join(' ', Enumerable.Repeat(word, words)), Sentiment = label };

    private static Exception FitError(TextClassificationOptions o)
    {
        var ml = new MLContext(1);
        var data = ml.Data.LoadFromEnumerable(new[] { Row("good", 8, "positive"), Row("bad", 8, "negative") });
        return Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o)).Fit(data));
    }

    [Theory]
    [InlineData(PositionEncoding.Rope)]
    [InlineData(PositionEncoding.None)]
    public void RowLongerThanTheOldCapTrainsOneStepAndScoresWithoutALearnedTable(PositionEncoding position)
    {
        const int words = 150_000;
        var sw = Stopwatch.StartNew();
        var ml = new MLContext(1);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.RawMessage); };
        var data = ml.Data.LoadFromEnumerable(new[] { Row("good", words, "positive"), Row("bad", words, "negative") });
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: Tiny(262_144, position))).Fit(data);
        double fit = sw.Elapsed.TotalSeconds;

        var transformer = model.LastTransformer;
        Assert.Equal(262_144, transformer.MaxSequenceLength);
        Assert.Equal(1, transformer.TrainingReport!.Steps);
        Assert.Equal(words + 2, transformer.TrainingReport.TokensSeen);   // one row of [CLS] + 150,000 words + [SEP], whole
        Assert.Contains(log, l => l.Contains($"No training row was truncated (longest row: {words + 2:N0} tokens", StringComparison.Ordinal));

        sw.Restart();
        var scored = model.Transform(ml.Data.LoadFromEnumerable(new[] { Row("good", words, "positive") }));
        var scores = scored.GetColumn<float[]>("Score").Single();
        output.WriteLine($"{position}: Fit {fit:F1}s, Transform {sw.Elapsed.TotalSeconds:F1}s, scores {string.Join(", ", scores)}");
        Assert.Equal(2, scores.Length);
        Assert.All(scores, s => Assert.True(float.IsFinite(s)));
        Assert.Equal(1, scores.Sum(), 3);
        Assert.Equal(0, transformer.TruncatedRows);
    }

    [Fact]
    public void LearnedPositionsAboveTheirCapAreRefusedWithTheFix()
    {
        var e = FitError(Tiny(LinearAttentionOptions.MaxLearnedPositionsSequenceLength + 1, PositionEncoding.Learned));
        output.WriteLine(e.Message);
        Assert.Contains("MaxSequenceLength = 131073", e.Message);
        Assert.Contains("Position = Learned", e.Message);
        Assert.Contains("at most 131072", e.Message);
        Assert.Contains("Position = PositionEncoding.Rope", e.Message);
        Assert.DoesNotContain("(Parameter", e.Message);

        // The boundaries: 131,072 with a learned table, 2²⁰ without one.
        Assert.Equal(131_072, LinearAttentionOptions.MaxLearnedPositionsSequenceLength);
        Assert.Equal(1_048_576, LinearAttentionOptions.MaxSupportedSequenceLength);
        LinearAttentionEstimator<TextClassificationTransformer>.CheckSequenceLength(Tiny(131_072, PositionEncoding.Learned));
        LinearAttentionEstimator<TextClassificationTransformer>.CheckSequenceLength(Tiny(1_048_576, PositionEncoding.Rope));
        LinearAttentionEstimator<TextClassificationTransformer>.CheckSequenceLength(Tiny(1_048_576, PositionEncoding.None));
    }

    [Theory]
    [InlineData(PositionEncoding.Rope)]
    [InlineData(PositionEncoding.None)]
    [InlineData(PositionEncoding.Learned)]
    public void LengthsAboveTwoToTheTwentiethAreRefused(PositionEncoding position)
    {
        var e = FitError(Tiny(LinearAttentionOptions.MaxSupportedSequenceLength + 1, position));
        output.WriteLine(e.Message);
        Assert.Contains("MaxSequenceLength must lie in 8..1048576 (it is 1048577)", e.Message);
        Assert.Contains("MaxSupportedSequenceLength", e.Message);
        Assert.DoesNotContain("(Parameter", e.Message);
    }

    [Fact]
    public void BatchesPastOneHostBufferAreRefusedBeforeAnIntWraps()
    {
        Batching.CheckCells(64, 1 << 20, 0);   // 2²⁶ tokens: fine
        var e = Assert.Throws<InvalidOperationException>(() => Batching.CheckCells(4096, 1 << 20, 0));
        Assert.Contains("4096 row(s) × 1048576 tokens = 4294967296", e.Message);
        Assert.Contains("InferenceBatchSize", e.Message);
        var numeric = Assert.Throws<InvalidOperationException>(() => Batching.CheckCells(64, 1 << 20, 64));
        Assert.Contains("× 64 features", numeric.Message);
    }
}
