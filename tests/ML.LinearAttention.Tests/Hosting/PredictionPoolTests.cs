using Microsoft.Extensions.DependencyInjection;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Hosting;
using Microsoft.ML.LinearAttention.Tests.Resilience;
using Microsoft.ML.LinearAttention.Tests.Text;
using Xunit;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Tests.Hosting;

public sealed class PredictionPoolTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-pool-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public sealed class Prediction
    {
        public uint PredictedLabel { get; set; }
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    /// <summary>Trains a tiny classifier and saves it atomically (temporary file, then a rename over <paramref name="path"/>).</summary>
    internal static void SaveModel(string path, int seed, int rows = 32)
    {
        var ml = new MLContext(seed);
        var o = CheckpointTests.Options(checkpoints: null!);
        o.CheckpointDirectory = null;
        o.MaxEpochs = 1;
        o.LogEverySteps = 0;
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(rows));
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o)).Fit(data);
        var temp = path + ".tmp";
        ml.Model.Save(model, data.Schema, temp);
        File.Move(temp, path, overwrite: true);
    }

    internal static List<float[]> Expected(string path, IEnumerable<SentimentRow> rows)
    {
        var ml = new MLContext();
        var model = LinearAttentionModel.Load(ml, path, out var schema);
        using var engine = ml.Model.CreatePredictionEngine<SentimentRow, Prediction>(model, schema);
        return rows.Select(r => engine.Predict(r).Score).ToList();
    }

    [Fact]
    public void PoolFromDependencyInjectionServesConcurrentRequestsLikeOneEngine()
    {
        var path = Path.Combine(_dir, "model.zip");
        SaveModel(path, seed: 1);
        var rows = PersistenceTests.SmallRows(24);
        var expected = Expected(path, rows);

        var provider = new ServiceCollection().AddLinearAttentionPredictionPool<SentimentRow, Prediction>(path, o => o.WatchForChanges = false).BuildServiceProvider();
        var pool = provider.GetRequiredService<LinearAttentionPredictionPool<SentimentRow, Prediction>>();
        Assert.Same(pool, provider.GetRequiredService<LinearAttentionPredictionPool<SentimentRow, Prediction>>());
        var results = new float[8][][];
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, t => results[t] = rows.Select(r => pool.Predict(r).Score).ToArray());
        Assert.All(results, r => Assert.Equal(expected.SelectMany(x => x), r.SelectMany(x => x)));

        var batch = pool.PredictBatch(rows);
        for (int i = 0; i < rows.Count; i++)
            for (int j = 0; j < expected[i].Length; j++) Assert.Equal(expected[i][j], batch[i].Score[j], 5);

        provider.Dispose(); // the container disposes the pool and its model
        Assert.Throws<ObjectDisposedException>(() => pool.Predict(rows[0]));
    }

    [Fact]
    public async Task ReloadsWhenTheFileChangesAndDisposesTheOldModelAfterItsLastPrediction()
    {
        var path = Path.Combine(_dir, "model.zip");
        SaveModel(path, seed: 1);
        var rows = PersistenceTests.SmallRows(6);
        var first = Expected(path, rows);
        using var pool = new LinearAttentionPredictionPool<SentimentRow, Prediction>(path, new PredictionPoolOptions { ReloadDelay = TimeSpan.FromMilliseconds(150) });
        var reloads = new List<ModelReloadedEventArgs>();
        var reloaded = new SemaphoreSlim(0);
        pool.Reloaded += (_, e) => { lock (reloads) reloads.Add(e); reloaded.Release(); };
        Assert.Equal(1, pool.Version);

        var lease = pool.Rent(); // an in-flight request on version 1
        var old = lease.Generation;
        SaveModel(path, seed: 2);
        Assert.True(await reloaded.WaitAsync(TimeSpan.FromSeconds(20)), "no reload after the model file was replaced");
        Assert.Null(reloads[^1].Error);
        Assert.Equal(2, pool.Version);
        var second = Expected(path, rows);
        Assert.NotEqual(first.SelectMany(x => x), second.SelectMany(x => x));
        Assert.Equal(second.SelectMany(x => x), rows.SelectMany(r => pool.Predict(r).Score));

        Assert.False(old.IsDisposed); // still in use by the lease
        Assert.Equal(first[0], lease.Predict(rows[0]).Score);
        lease.Dispose();
        Assert.True(old.IsDisposed);

        // A damaged file (a copy in progress) is refused; version 2 keeps serving.
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes.AsSpan(0, bytes.Length / 2).ToArray());
        Assert.True(await reloaded.WaitAsync(TimeSpan.FromSeconds(20)), "no reload attempt after the model file was damaged");
        while (reloaded.CurrentCount > 0) await reloaded.WaitAsync(); // a write can raise several events
        Assert.NotNull(reloads[^1].Error);
        Assert.Contains("save the model again", reloads[^1].Error!.Message);
        Assert.Equal(2, pool.Version);
        Assert.Equal(second[0], pool.Predict(rows[0]).Score);
    }
}
