using System.Diagnostics;
using Microsoft.ML.LinearAttention.Hosting;
using Microsoft.ML.LinearAttention.Tests.Resilience;
using Microsoft.ML.LinearAttention.Tests.Text;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Hosting;

/// <summary>
/// 16 threads × 100,000 predictions each through one pool: every thread gets bit-identical results, and memory is
/// flat after the first round (no per-prediction leak of native tensors or managed buffers).
/// </summary>
public sealed class ConcurrencyStressTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-stress-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const int Threads = 16;
    private static readonly int PredictionsPerThread = int.TryParse(Environment.GetEnvironmentVariable("LA_STRESS_PREDICTIONS"), out var n) ? n : 100_000;
    private const int Chunk = 1000;

    [Fact]
    public void SixteenThreadsTimesAHundredThousandPredictionsAreIdenticalWithFlatMemory()
    {
        var path = Path.Combine(_dir, "tiny.zip");
        var ml = new MLContext(1);
        var o = CheckpointTests.Options(checkpoints: null!);
        o.CheckpointDirectory = null;
        o.MaxEpochs = 1;
        o.LogEverySteps = 0;
        o.InferenceBatchSize = Chunk; // one forward pass per PredictBatch call: op overhead, not arithmetic, dominates a model this small
        var train = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(32));
        using (var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
                   .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o)).Fit(train))
            ml.Model.Save(model, train.Schema, path);

        var rows = PersistenceTests.SmallRows(Chunk);
        using var pool = new LinearAttentionPredictionPool<SentimentRow, PredictionPoolTests.Prediction>(path, new PredictionPoolOptions { WatchForChanges = false });
        var reference = pool.PredictBatch(rows).SelectMany(p => p.Score).ToArray();

        long Private() { GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect(); using var p = Process.GetCurrentProcess(); return p.PrivateMemorySize64; }
        int rounds = PredictionsPerThread / Chunk;
        var memory = new long[rounds];
        int mismatches = 0;
        long done = 0;
        var sw = Stopwatch.StartNew();
        // Sixteen dedicated threads (not the thread pool, which would keep adding threads) run the rounds in lock step.
        using var barrier = new Barrier(Threads + 1);
        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        var workers = Enumerable.Range(0, Threads).Select(_ => new Thread(() =>
        {
            for (int round = 0; round < rounds; round++)
            {
                barrier.SignalAndWait(); // start together
                IReadOnlyList<PredictionPoolTests.Prediction> scores;
                try { scores = pool.PredictBatch(rows); }
                catch (Exception e) { errors.Enqueue(e); scores = Array.Empty<PredictionPoolTests.Prediction>(); }
                int k = 0;
                foreach (var p in scores)
                    foreach (var s in p.Score)
                        if (BitConverter.SingleToInt32Bits(s) != BitConverter.SingleToInt32Bits(reference[k++])) Interlocked.Increment(ref mismatches);
                Interlocked.Add(ref done, scores.Count);
                barrier.SignalAndWait(); // round done: memory is measured while nobody predicts
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        for (int round = 0; round < rounds; round++)
        {
            // One round: every thread predicts the 1,000 rows once; rounds repeat until each thread has made 100,000 predictions.
            barrier.SignalAndWait();
            barrier.SignalAndWait();
            if (round % Math.Max(1, rounds / 10) == 0 || round == rounds - 1) memory[round] = Private();
        }
        workers.ForEach(w => w.Join());
        var elapsed = sw.Elapsed;
        var sampled = memory.Where(m => m > 0).ToArray();
        output.WriteLine($"{done:N0} predictions ({Threads} threads × {PredictionsPerThread:N0}) in {elapsed.TotalSeconds:F1} s = {done / elapsed.TotalSeconds:N0}/s on {Environment.ProcessorCount} cores; " +
                         $"private memory MB by round: {string.Join(", ", sampled.Select(m => m / (1024 * 1024)))}; calls retried after TorchSharp's Scalar race: {pool.ScalarRaceRetries}");
        Assert.True(errors.IsEmpty, $"{errors.Count} prediction call(s) failed; first: {errors.FirstOrDefault()}");
        Assert.Equal((long)Threads * rounds * Chunk, done);
        Assert.Equal(0, mismatches);
        // Flat memory: after the first round (engines, caches, thread-pool threads), growth stays small.
        Assert.True(sampled[^1] - sampled[Math.Min(1, sampled.Length - 1)] < 150L * 1024 * 1024,
            $"private memory grew from {sampled[Math.Min(1, sampled.Length - 1)] / 1048576} MB to {sampled[^1] / 1048576} MB");
    }
}
