using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Persistence;
using Microsoft.ML.LinearAttention.Tests.Resilience;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Text;

/// <summary>Rows cut to MaxSequenceLength while scoring are counted on the transformer and reported in MLContext.Log.</summary>
public sealed class PredictionTruncationTests
{
    public sealed class Prediction
    {
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    internal static TextClassificationOptions ShortOptions()
    {
        var o = CheckpointTests.Options(checkpoints: null!);
        o.CheckpointDirectory = null;
        o.MaxEpochs = 1;
        o.LogEverySteps = 0;
        o.MaxSequenceLength = 16;
        return o;
    }

    internal static SentimentRow LongRow(int words = 60)
        => new() { Text = string.Join(" ", Enumerable.Range(0, words).Select(i => i % 2 == 0 ? "great" : "awful")), Sentiment = "positive" };

    [Fact]
    public void PredictionEngineAndTransformCountAndReportCutRows()
    {
        var ml = new MLContext(1);
        var warnings = new List<string>();
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(16));
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: ShortOptions())).Fit(data);
        var path = Path.Combine(Path.GetTempPath(), $"la-trunc-{Guid.NewGuid():N}.zip");
        ml.Model.Save(model, data.Schema, path);

        var serving = new MLContext();
        serving.Log += (_, e) => { if (e.Kind == Microsoft.ML.Runtime.ChannelMessageKind.Warning && e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (warnings) warnings.Add(e.RawMessage); };
        var loaded = LinearAttentionModel.Load(serving, path, out var schema);
        File.Delete(path);
        var transformer = Assert.Single(LinearAttentionModel.TransformersIn(loaded));
        Assert.Equal(16, transformer.MaxSequenceLength);
        int cuts = 0;
        transformer.InputsTruncated += (_, e) => cuts += (int)e.Rows;

        using var engine = serving.Model.CreatePredictionEngine<SentimentRow, Prediction>(loaded, schema);
        engine.Predict(new SentimentRow { Text = "great fine", Sentiment = "positive" }); // short: nothing to report
        Assert.Equal(0, transformer.TruncatedRows);
        Assert.Empty(warnings);

        engine.Predict(LongRow());
        Assert.Equal(1, transformer.TruncatedRows);
        Assert.True(transformer.TruncatedTokens > 30, $"{transformer.TruncatedTokens} tokens counted");
        var first = Assert.Single(warnings);
        Assert.Contains("MaxSequenceLength = 16", first);

        for (int i = 0; i < 8; i++) engine.Predict(LongRow());
        Assert.Equal(9, transformer.TruncatedRows);
        Assert.Single(warnings); // the first cut, then every tenfold count: no flood from a busy engine
        engine.Predict(LongRow());
        Assert.Equal(2, warnings.Count);
        Assert.Contains("10 row(s)", warnings[1]);

        // Transform (what batch scoring and the CLI use): counted per batch, one summary warning per pass.
        var rows = serving.Data.LoadFromEnumerable(new[] { LongRow(), LongRow(40), new SentimentRow { Text = "fine", Sentiment = "positive" } });
        Assert.Equal(3, serving.Data.CreateEnumerable<Prediction>(loaded.Transform(rows), reuseRowObject: false).Count());
        Assert.Equal(12, transformer.TruncatedRows);
        Assert.Equal(12, cuts);
        Assert.Contains("2 scored row(s)", warnings[^1]);
        (loaded as IDisposable)?.Dispose();
    }
}
