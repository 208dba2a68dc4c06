using Microsoft.ML.LinearAttention.Distributed;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Distributed;

/// <summary>
/// Data-parallel training through <see cref="ModelTrainer"/> on two thread ranks (running concurrently): after a few
/// steps every rank holds the parameters of one rank training on all the batches with the gradients of two batches
/// accumulated per step, and the ranks start from rank 0's weights even when they were built differently.
/// </summary>
public sealed class DataParallelTests
{
    private static List<Example> Rows(int n)
    {
        var rng = new Random(7);
        return Enumerable.Range(0, n).Select(i =>
        {
            int len = 3 + rng.Next(6);
            var ids = Enumerable.Range(0, len).Select(_ => 1 + rng.Next(40)).ToArray();
            return new Example { Ids = ids, Segments = new int[len], Label = ids.Count(x => x < 20) * 2 >= len ? 1 : 0, Length = len };
        }).ToList();
    }

    private static SequenceModel Model(long seed)
    {
        Torch.Seed(seed);
        return new SequenceModel(new EncoderConfig { VocabularySize = 48, PadId = 0, ModelDim = 16, NumLayers = 1, NumHeads = 2, FfnMultiplier = 1, Dropout = 0, Outputs = 2, Mixer = "linear" });
    }

    private static float[] Weights(SequenceModel m) => m.parameters().SelectMany(p => p.detach().cpu().data<float>().ToArray()).ToArray();

    private static TrainingSettings Settings(int accumulation, DistributedOptions? dist) => new()
    {
        BatchSize = 4, MaxEpochs = 2, LogEverySteps = 1, Seed = 3, GradientAccumulationSteps = accumulation, ShuffleBufferRows = 64, Distributed = dist,
        MaxGradientNorm = 0.5, // clipping must act on the averaged gradient
    };

    [Fact]
    public void TwoRanksTrainToTheParametersOfOneRankOnAllBatches()
    {
        var rows = Rows(32);
        var spec = new CollateSpec(LabelKind.Key, 0, 0, 0, null);
        using var single = Model(5);
        ModelTrainer.Train(single, spec, () => rows, rows.Count, null, Settings(2, null), torch.CPU, new ListLog());
        var expected = Weights(single);

        var models = new[] { Model(5), Model(99) }; // rank 1 starts from other weights: the broadcast must fix that
        var logs = new[] { new ListLog(), new ListLog() };
        var reports = new TrainingReport[2];
        ThreadCollectives.Run(2, c =>
            reports[c.Rank] = ModelTrainer.Train(models[c.Rank], spec, () => rows, rows.Count, null,
                Settings(1, new DistributedOptions { Collectives = c, BucketMegabytes = 1 }), torch.CPU, logs[c.Rank]));
        Assert.Equal(reports[0].Steps, reports[1].Steps);
        Assert.Equal(8, reports[0].Steps); // 8 batches per epoch over 2 ranks, 2 epochs
        foreach (var m in models)
        {
            var actual = Weights(m);
            Assert.Equal(expected.Length, actual.Length);
            for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-4, $"parameter {i}: {actual[i]} vs {expected[i]}");
            m.Dispose();
        }
        Assert.Contains(logs[0].Lines, l => l.Contains("Data parallel over 2 ranks"));
        Assert.Empty(logs[1].Lines); // only rank 0 logs
    }

    [Fact]
    public void ShardingGivesEveryRankTheSameNumberOfDisjointBatches()
    {
        var items = Enumerable.Range(0, 7).ToList();
        var dropped = new List<int>();
        var r0 = DataParallel.Shard(items, 0, 3, dropped.Add).ToList();
        var r2 = DataParallel.Shard(items, 2, 3).ToList();
        Assert.Equal(new[] { 0, 3 }, r0);
        Assert.Equal(new[] { 2, 5 }, r2);
        Assert.Equal(new[] { 1, 2, 4, 5, 6 }, dropped); // other ranks' batches and the incomplete last group
    }

    [Fact]
    public void CheckpointsWithDistributedTrainingAreRefusedClearly()
    {
        using var m = Model(1);
        var rows = Rows(8);
        var s = Settings(1, new DistributedOptions { Collectives = new ThreadCollectives.Group(1).ForRank(0) }) with { CheckpointDirectory = Path.GetTempPath() };
        var e = Assert.Throws<NotSupportedException>(() => ModelTrainer.Train(m, new CollateSpec(LabelKind.Key, 0, 0, 0, null), () => rows, rows.Count, null, s, torch.CPU, new ListLog()));
        Assert.Contains("distributed", e.Message);
    }
}
