using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Tests.Text;
using Microsoft.ML.LinearAttention.Training;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Resilience;

/// <summary>
/// Checkpoints change nothing about the model: the same seed gives the same weights with them on or off, and a resumed
/// run says where it resumed and counts only its own tokens in the throughput.
/// </summary>
public sealed class CheckpointSeedTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-ckseed-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed record Outcome(List<float> Scores, List<TrainingProgress> Progress, TrainingReport Report, List<string> Log);

    private static Outcome Fit(TextClassificationOptions o, List<SentimentRow> rows, Func<long, bool>? cancelAt = null)
    {
        var ml = new MLContext(seed: 1);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.RawMessage); };
        var progress = new List<TrainingProgress>();
        using var cts = new CancellationTokenSource();
        o.CancellationToken = cts.Token;
        o.Progress = new CheckpointTests.SyncProgress(p => { progress.Add(p); if (cancelAt?.Invoke(p.Step) == true) cts.Cancel(); });
        var data = ml.Data.LoadFromEnumerable(rows);
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o))
            .Fit(data);
        var core = model.OfType<LinearAttentionTransformer>().Single();
        return new(model.Transform(data).GetColumn<float[]>("Score").SelectMany(s => s).ToList(), progress, core.TrainingReport!, log);
    }

    [Fact]
    public void SameSeedGivesBitIdenticalModelWithOrWithoutCheckpoints()
    {
        var rows = PersistenceTests.SmallRows(64);
        var withoutCheckpoints = CheckpointTests.Options(checkpoints: null);
        Assert.True(withoutCheckpoints.Dropout > 0); // dropout draws from libtorch's RNG: checkpoint writes must not disturb it
        var plain = Fit(withoutCheckpoints, rows);
        var checkpointed = Fit(CheckpointTests.Options(Path.Combine(_dir, "on"), everySteps: 2), rows);
        Assert.Equal(plain.Progress.Select(p => p.Loss), checkpointed.Progress.Select(p => p.Loss));
        Assert.Equal(plain.Scores, checkpointed.Scores);
        Assert.Null(plain.Report.ResumedFromStep);
    }

    [Fact]
    public void ResumedRunSaysWhereItResumedAndCountsOnlyItsOwnTokens()
    {
        var rows = PersistenceTests.SmallRows(64); // 8 batches per epoch, 16 steps
        var reference = Fit(CheckpointTests.Options(Path.Combine(_dir, "a")), rows);
        var dir = Path.Combine(_dir, "b");
        Assert.ThrowsAny<OperationCanceledException>(() => Fit(CheckpointTests.Options(dir), rows, cancelAt: s => s == 11));
        var resumed = Fit(CheckpointTests.Options(dir), rows);

        Assert.Equal(9, resumed.Report.ResumedFromStep); // the newest checkpoint was written at step 9
        Assert.Contains(resumed.Log, l => l.StartsWith("Resuming from step 9 ", StringComparison.Ordinal));
        var atNine = reference.Progress.First(p => p.Step == 9).TokensSeen;
        Assert.All(resumed.Progress, p =>
        {
            Assert.Equal(9, p.ResumedFromStep);
            Assert.Equal(atNine, p.TokensBeforeResume);
            // The throughput is this process's tokens over this process's training time, not the whole run's tokens.
            double expected = (p.TokensSeen - p.TokensBeforeResume) / p.TrainingTime.TotalSeconds;
            Assert.InRange(p.TokensPerSecond, expected * 0.999, expected * 1.001);
        });
        Assert.Equal(reference.Report.TokensSeen, resumed.Report.TokensSeen);
        Assert.Equal(atNine, resumed.Report.TokensBeforeResume);
        Assert.Equal(reference.Scores, resumed.Scores);
    }
}
