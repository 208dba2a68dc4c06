using Microsoft.ML.LinearAttention.Distributed;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench multigpu --verify`, on every rank (rank 0 also runs the single-device references and judges), in fp32 on a
/// small encoder: (1) data parallel: after N optimizer steps on W ranks the parameters equal those of one device
/// training on all the batches with W-fold gradient accumulation; (2) sequence parallel: the logits and the averaged
/// parameter gradients of the sliced model (odd T, uneven slices, a padded row) equal those of the unsplit model.
/// </summary>
internal static class MultiGpuVerify
{
    public static bool Run(ICollectives c, Device device, TextWriter log)
    {
        bool dp = DataParallelMatchesOneDevice(c, device, log);
        bool sp = SequenceParallelMatchesUnsplit(c, device, log);
        if (device.type == DeviceType.CUDA) AllReduceBandwidth(c, log);
        return dp && sp;
    }

    /// <summary>Times a 256 MiB fp32 all-reduce (the size of a few gradient buckets' worth of traffic) and prints nccl-tests' bus bandwidth.</summary>
    private static void AllReduceBandwidth(ICollectives c, TextWriter log)
    {
        const long elements = 64L << 20;
        using var buffer = ones(elements, device: c.Device);
        c.AllReduceSum(buffer); c.Barrier();                                      // warm-up (NCCL sets up its channels)
        const int repeats = 10;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < repeats; i++) c.AllReduceSum(buffer);
        c.Barrier();
        double seconds = clock.Elapsed.TotalSeconds / repeats;
        double algorithm = elements * 4 / seconds / 1e9, bus = algorithm * 2 * (c.WorldSize - 1) / c.WorldSize;
        if (c.Rank == 0)
            log.WriteLine($"info NCCL all-reduce of 256 MiB fp32 over {c.WorldSize} GPUs: {seconds * 1000:F2} ms, algorithm bandwidth {algorithm:F0} GB/s, bus bandwidth {bus:F0} GB/s");
    }

    private static EncoderConfig Config => new()
    {
        VocabularySize = 30522, ModelDim = 128, NumLayers = 2, NumHeads = 4, FfnMultiplier = 4, Dropout = 0, Outputs = 2,
        Mixer = "linear", MixerOptionsJson = "{\"FeatureMap\":\"relu\"}", Position = PositionEncoding.Rope,
    };

    private static TrainingSettings Settings(int accumulation, DistributedOptions? dist) => new()
    {
        BatchSize = 4, MaxEpochs = 1, LearningRate = 1e-3, WarmupRatio = 0, Decay = LearningRateDecay.Constant, EarlyStoppingPatience = 0,
        ShuffleBufferRows = 1024, Seed = 1, LogEverySteps = 0, Precision = TrainingPrecision.Float32, GradientAccumulationSteps = accumulation, Distributed = dist,
    };

    private static bool DataParallelMatchesOneDevice(ICollectives c, Device device, TextWriter log)
    {
        const int steps = 4, t = 96;
        var rows = MultiGpuWorker.Rows(c.WorldSize * 4 * steps, t, seed: 3);
        var spec = new CollateSpec(LabelKind.Key, 0, 0, 0, null);
        using var model = Build(c.Rank == 0 ? 1 : 1000 + c.Rank, () => new SequenceModel(Config)); // other ranks start elsewhere: the broadcast must fix it
        model.to(device);
        ModelTrainer.Train(model, spec, () => rows, rows.Count, null, Settings(1, new DistributedOptions { Collectives = c }), device, Silent);
        var mine = Flat(model);
        var first = c.AllGather(mine);                    // every rank's parameters, to check that they agree
        bool agree = true;
        for (int r = 1; r < c.WorldSize; r++) agree &= first[r].eq(first[0]).all().item<bool>();
        if (c.Rank != 0) return true;
        using var single = Build(1, () => new SequenceModel(Config));
        single.to(device);
        var initial = Flat(single);
        ModelTrainer.Train(single, spec, () => rows, rows.Count, null, Settings(c.WorldSize, null), device, Silent);
        var expected = Flat(single);
        double diff = (mine - expected).abs().max().item<float>();
        double moved = (expected - initial).abs().max().item<float>();
        bool pass = agree && diff <= 0.1 * moved; // a wrong shard or a missing reduction moves parameters by about the whole movement
        log.WriteLine($"{(pass ? "PASS" : "FAIL")} data parallel: {c.WorldSize} ranks × {steps} steps vs one device with {c.WorldSize}× accumulation: " +
                      $"max |Δparameter| {diff:G3} (parameters moved up to {moved:G3}; tolerance 10 % of that), ranks bit-identical: {agree}");
        return pass;
    }

    private static bool SequenceParallelMatchesUnsplit(ICollectives c, Device device, TextWriter log)
    {
        const long t = 1031, b = 2; // odd T: uneven slices
        var generator = new Random(5);
        using var ids = tensor(Enumerable.Range(0, (int)(b * t)).Select(_ => (long)generator.Next(1000, 30000)).ToArray(), new[] { b, t });
        using var mask = arange(t).unsqueeze(0).lt(tensor(new[] { t, t - 300 }).unsqueeze(1)); // row 1: the last 300 tokens are padding
        using var labels = tensor(new long[] { 0, 1 }, device: device);
        (Tensor Logits, Tensor Grads) Run(SequenceParallelStack model, Tensor x, Tensor m, ICollectives? group)
        {
            model.to(device);
            var logits = model.forward(x.to(device), m.to(device));
            nn.functional.cross_entropy(logits, labels).backward();
            SequenceParallel.ThrowIfBackwardFailed();
            var parameters = model.parameters().ToList();
            if (group is not null) DataParallel.AllReduceGradients(parameters, group);
            return (logits.detach(), cat(parameters.Select(p => p.grad!.reshape(-1)).ToArray()));
        }
        using var sliced = Build(2, () => new SequenceParallelStack(30522, 2, 128, 4, c) { Offset = SequenceParallel.SliceStart(t, c.Rank, c.WorldSize) });
        var (logits, grads) = Run(sliced, SequenceParallel.Slice(ids, 1, c.Rank, c.WorldSize).contiguous(), SequenceParallel.Slice(mask, 1, c.Rank, c.WorldSize).contiguous(), c);
        if (c.Rank != 0) return true;
        using var whole = Build(2, () => new SequenceParallelStack(30522, 2, 128, 4, null));
        var (expectedLogits, expectedGrads) = Run(whole, ids, mask, null);
        double logitErr = (logits - expectedLogits).abs().max().item<float>() / Math.Max(1e-6, expectedLogits.abs().max().item<float>());
        double gradErr = (grads - expectedGrads).abs().max().item<float>() / Math.Max(1e-12, expectedGrads.abs().max().item<float>());
        bool pass = logitErr < 1e-4 && gradErr < 1e-3;
        log.WriteLine($"{(pass ? "PASS" : "FAIL")} sequence parallel: T={t} in {c.WorldSize} slices (one padded row) vs unsplit: " +
                      $"logits max rel. error {logitErr:G3} (< 1e-4), parameter gradients max rel. error {gradErr:G3} (< 1e-3)");
        return pass;
    }

    /// <summary>Seeds and builds atomically: thread ranks (CPU) share one generator.</summary>
    private static T Build<T>(long seed, Func<T> build)
    {
        lock (SeedLock) { torch.random.manual_seed(seed); return build(); }
    }

    private static readonly object SeedLock = new();

    private static Tensor Flat(nn.Module m) => cat(m.parameters().Select(p => p.detach().reshape(-1)).ToArray()).clone();

    private static readonly ITrainingLog Silent = new NoLog();

    private sealed class NoLog : ITrainingLog
    {
        public void Info(string message) { }
        public void Warning(string message) { }
    }
}
