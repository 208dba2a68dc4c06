using Microsoft.Extensions.Logging;
using Microsoft.ML.LinearAttention.Hosting;
using Microsoft.ML.LinearAttention.Tests.Text;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Hosting;

/// <summary>The pool counts rows cut to MaxSequenceLength (Predict and PredictBatch) and logs them as warnings.</summary>
public sealed class PredictionPoolTruncationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-pooltrunc-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed class ListLogger : ILogger
    {
        public List<(LogLevel Level, string Message)> Entries { get; } = new();
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Entries) Entries.Add((logLevel, formatter(state, exception)));
        }
    }

    [Fact]
    public void PoolCountsAndLogsCutRows()
    {
        var ml = new MLContext(1);
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(16));
        var path = Path.Combine(_dir, "model.zip");
        using (var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
                   .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: PredictionTruncationTests.ShortOptions())).Fit(data))
            ml.Model.Save(model, data.Schema, path);

        var logger = new ListLogger();
        using var pool = new LinearAttentionPredictionPool<SentimentRow, PredictionPoolTests.Prediction>(path, new() { WatchForChanges = false }, logger);
        pool.Predict(new SentimentRow { Text = "good", Sentiment = "positive" });
        Assert.Equal(0, pool.TruncatedRows);

        pool.Predict(PredictionTruncationTests.LongRow());
        Assert.Equal(1, pool.TruncatedRows);
        pool.PredictBatch(new[] { PredictionTruncationTests.LongRow(), PredictionTruncationTests.LongRow(30), new SentimentRow { Text = "bad" } });
        Assert.Equal(3, pool.TruncatedRows);
        Assert.True(pool.TruncatedTokens > 40, $"{pool.TruncatedTokens} tokens counted");
        var warnings = logger.Entries.Where(e => e.Level == LogLevel.Warning).Select(e => e.Message).ToList();
        Assert.Equal(2, warnings.Count(w => w.Contains("MaxSequenceLength = 16", StringComparison.Ordinal)));
    }
}
