using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;

using Microsoft.ML.LinearAttention.Tests.Text;
using Microsoft.ML.LinearAttention.Training;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Resilience;

/// <summary>Resumable checkpoints: cancel (or crash) mid-epoch, resume, and end where an uninterrupted run ends.</summary>
public sealed class CheckpointTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static TextClassificationOptions Options(string? checkpoints, int everySteps = 3)
    {
        var o = TextClassificationTests.Tiny();
        o.ModelDimension = 16;
        o.FeedForwardMultiplier = 1;
        o.MaxEpochs = 2;
        o.BatchSize = 8;
        o.LogEverySteps = 1;
        o.CheckpointDirectory = checkpoints;
        o.CheckpointEverySteps = everySteps;
        return o;
    }

    private static (List<float> Scores, List<long> Steps) Fit(TextClassificationOptions o, List<SentimentRow> rows, Func<long, bool>? cancelAt = null)
    {
        var ml = new MLContext(seed: 1);
        var steps = new List<long>();
        using var cts = new CancellationTokenSource();
        o.CancellationToken = cts.Token;
        o.Progress = new SyncProgress(p => { steps.Add(p.Step); if (cancelAt?.Invoke(p.Step) == true) cts.Cancel(); });
        var data = ml.Data.LoadFromEnumerable(rows);
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o))
            .Fit(data);
        return (model.Transform(data).GetColumn<float[]>("Score").SelectMany(s => s).ToList(), steps);
    }

    [Fact]
    public void CancelledRunLeavesOnlyCompleteCheckpointsAndResumesToTheUninterruptedResult()
    {
        var rows = PersistenceTests.SmallRows(64); // 8 batches per epoch, 16 steps
        var reference = Fit(Options(Path.Combine(_dir, "a")), rows);
        Assert.Equal(Enumerable.Range(1, 16).Select(i => (long)i), reference.Steps.Distinct());
        Assert.Empty(Directory.GetFiles(Path.Combine(_dir, "a"))); // a completed run removes its checkpoints

        var dir = Path.Combine(_dir, "b");
        Assert.ThrowsAny<OperationCanceledException>(() => Fit(Options(dir), rows, cancelAt: s => s == 11)); // mid-epoch 2
        var files = Directory.GetFiles(dir).Select(Path.GetFileName).OrderBy(f => f).ToList();
        output.WriteLine(string.Join(", ", files));
        Assert.DoesNotContain(files, f => f!.Contains(".tmp-"));
        Assert.Equal(2, files.Count); // the newest two: end of epoch 1 (step 8) and step 9
        Assert.EndsWith("0000000009-s.lacheckpoint", files[^1]);

        var resumed = Fit(Options(dir), rows);
        Assert.Equal(10, resumed.Steps.First()); // steps 10 and 11 are redone: at most one checkpoint interval lost
        Assert.Equal(16, resumed.Steps.Last());
        Assert.Equal(reference.Scores, resumed.Scores); // bit-identical on the CPU: weights, AdamW moments, RNG and data order restored
        Assert.Empty(Directory.GetFiles(dir));
    }

    [Fact]
    public void DamagedNewestCheckpointFallsBackAndAnotherRunsCheckpointIsRefused()
    {
        var rows = PersistenceTests.SmallRows(32);
        var dir = Path.Combine(_dir, "c");
        Assert.ThrowsAny<OperationCanceledException>(() => Fit(Options(dir, everySteps: 1), rows, cancelAt: s => s == 3));
        var newest = Directory.GetFiles(dir).OrderBy(f => f).Last();
        using (var f = new FileStream(newest, FileMode.Open)) f.SetLength(f.Length / 2); // as a disk fault would leave it

        var log = new List<string>();
        var o = Options(dir, everySteps: 1);
        var ml = new MLContext(seed: 1);
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.RawMessage); };
        var steps = new List<long>();
        o.Progress = new SyncProgress(p => steps.Add(p.Step));
        using (var m = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
                   .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o)).Fit(ml.Data.LoadFromEnumerable(rows))) { }
        Assert.Contains(log, l => l.Contains("cannot be read") && l.Contains("older one"));
        Assert.Equal(3, steps.First()); // resumed from step 2

        // A checkpoint of another configuration is never used silently.
        Assert.ThrowsAny<OperationCanceledException>(() => Fit(Options(dir, everySteps: 1), rows, cancelAt: s => s == 2));
        var other = Options(dir, everySteps: 1);
        other.ModelDimension = 32;
        var e = Assert.Throws<CheckpointMismatchException>(() => Fit(other, rows));
        Assert.Contains("another training run", e.Message);
        Assert.Contains("Delete the checkpoint directory", e.Message);
    }

    internal sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }

    /// <summary>Progress reported on the calling thread (System.Progress posts to the thread pool).</summary>
    internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
