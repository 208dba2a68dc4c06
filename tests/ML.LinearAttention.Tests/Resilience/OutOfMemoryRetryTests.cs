using System.Runtime.InteropServices;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Resilience;

/// <summary>
/// GPU out-of-memory during training, on the CPU through an injected fault that throws libtorch's CUDA message: the
/// batch is retried in halves, training goes on, and the result equals that of training without the fault (the pieces'
/// gradients are accumulated). The real OOM is exercised on the GPU machine.
/// </summary>
public sealed class OutOfMemoryRetryTests
{
    private const string CudaOom = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 139.81 GiB of which 1.06 GiB is free.\nException raised from malloc";

    private sealed class ListLog : ITrainingLog
    {
        public readonly List<string> Warnings = new();
        public void Info(string message) { }
        public void Warning(string message) => Warnings.Add(message);
    }

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

    private static (float[] Weights, ListLog Log) Train(Action<ModelBatch>? fault, bool checkpointing = false)
    {
        Torch.Seed(5);
        var config = new EncoderConfig { VocabularySize = 48, PadId = 0, ModelDim = 16, NumLayers = 1, NumHeads = 2, FfnMultiplier = 1, Dropout = 0, Outputs = 2 };
        using var model = new SequenceModel(config);
        var rows = Rows(32);
        var log = new ListLog();
        var s = new TrainingSettings { BatchSize = 8, MaxEpochs = 1, LogEverySteps = 0, Seed = 3, FaultInjection = fault, ActivationCheckpointing = checkpointing };
        ModelTrainer.Train(model, new CollateSpec(LabelKind.Key, 0, 0, 0, null), () => rows, rows.Count, null, s, torch.CPU, log);
        var weights = model.parameters().SelectMany(p => p.detach().cpu().data<float>().ToArray()).ToArray();
        return (weights, log);
    }

    [Fact]
    public void AFailedAttemptsTensorsAreFreedBeforeTheRetry()
    {
        // On an H200 the retries used to run with the failed attempts' activations still allocated (they lived until the
        // batch ended); each attempt now has its own dispose scope.
        var failed = new List<torch.Tensor>();
        bool stillAlive = false;
        Train(batch =>
        {
            stillAlive |= failed.Any(t => !t.IsInvalid);
            if (batch.Size <= 2) return;
            failed.Add(torch.ones(1024)); // stands for the activations of a forward pass that runs out of memory
            throw new ExternalException(CudaOom);
        });
        Assert.NotEmpty(failed);
        Assert.False(stillAlive, "a retry started while tensors of the failed attempt were still allocated");
    }

    [Fact]
    public void OutOfMemoryHalvesTheBatchLogsItAndTrainsToTheSameWeights()
    {
        var (expected, _) = Train(null);
        int calls = 0;
        var (actual, log) = Train(batch => { calls++; if (batch.Size > 2) throw new ExternalException(CudaOom); });
        // Only the memory warnings: on a loaded machine (CI) training may also warn that the CPU is busy.
        var oom = log.Warnings.Where(w => w.Contains("ran out of memory", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, oom.Count); // 8 → 4 → 2 rows, then every later batch is split in four from the start
        Assert.Contains("ran out of memory on a batch of 8 rows", oom[0]);
        Assert.Contains("at most 4 rows", oom[0]);
        Assert.Contains("at most 2 rows", oom[1]);
        Assert.Contains("Lower BatchSize or MaxBatchTokens", oom[1]);
        Assert.Equal(2 + 4 * 4, calls); // 2 failed attempts, then 4 batches × 4 pieces
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 4);
    }

    [Fact]
    public void ASingleRowThatDoesNotFitIsAClearErrorAndOtherErrorsPassThrough()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Train(_ => throw new ExternalException(CudaOom)));
        Assert.Contains("single row", e.Message);
        Assert.Contains("MaxSequenceLength", e.Message);
        Assert.IsType<ExternalException>(e.InnerException);
        Assert.Contains("turn on ActivationCheckpointing", e.Message);
        // With checkpointing already on, the message does not suggest it.
        var checkpointed = Assert.Throws<InvalidOperationException>(() => Train(_ => throw new ExternalException(CudaOom), checkpointing: true));
        Assert.Contains("single row", checkpointed.Message);
        Assert.DoesNotContain("ActivationCheckpointing", checkpointed.Message);

        var other = Assert.Throws<ExternalException>(() => Train(_ => throw new ExternalException("shape '[2, 3]' is invalid for input of size 5")));
        Assert.Contains("shape", other.Message);
    }
}
