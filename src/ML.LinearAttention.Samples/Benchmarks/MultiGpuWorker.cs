using System.Diagnostics;
using Microsoft.ML.LinearAttention.Distributed;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>What one rank measured in one run of `bench multigpu`.</summary>
public sealed record RankResult(int Rank, int World, string Mode, string Mechanism, long T, long BatchPerGpu, int Steps, double? MsPerStep,
    double? TokensPerSecond, double? PeakGiB, double? CommShare, string? Status);

/// <summary>
/// One rank of `bench multigpu`: a data-parallel run (the `bench training` encoder trained by <see cref="ModelTrainer"/>
/// with <see cref="TrainingSettings.Distributed"/>), a sequence-parallel run (<see cref="SequenceParallelStack"/>:
/// forward, backward and gradient all-reduce, bf16), or the checks of `--verify`. On CUDA each rank is its own process
/// with <see cref="NcclCollectives"/>; on the CPU the ranks are threads with <see cref="ThreadCollectives"/>.
/// </summary>
internal static class MultiGpuWorker
{
    public static RankResult DataParallelRun(MultiGpuOptions o, ICollectives? c, Device device, string mechanismEntry, TextWriter log)
    {
        int rank = c?.Rank ?? 0, world = c?.WorldSize ?? 1;
        long t = o.Length, b = Math.Max(1, o.TokensPerGpu / t);
        var mechanism = BenchmarkMechanism.Parse(mechanismEntry, o.Layers, "3:1", "hedgehog");
        var config = TrainingBenchmark.Config(o.AsTraining(), mechanism, mechanism.Position(o.Hidden, o.Heads)) with { MaxPositions = (int)Math.Max(4096, t) };
        torch.random.manual_seed(1);
        using var model = new SequenceModel(config);
        model.to(device);
        int every = Math.Max(1, o.Warmup), steps = (o.Steps + every - 1) / every * every;
        var rows = Rows((int)(world * b * (o.Warmup + steps)), (int)t, seed: 7);
        var memory = device.type == DeviceType.CUDA ? new CudaMemoryProbe(0) : null;
        var nccl = c as NcclCollectives;
        if (nccl is not null) nccl.TimeCommunication = true;
        var clock = Stopwatch.StartNew();
        double? t0 = null, t1 = null, comm = null;
        var progress = new InlineProgress(p =>
        {
            if (p.Step == o.Warmup) { t0 = clock.Elapsed.TotalSeconds; memory?.ResetPeak(); nccl?.TakeCommunicationMilliseconds(); }
            // The end-of-epoch report repeats the last step: take the time and the communication only once.
            else if (p.Step == o.Warmup + steps && t1 is null) { t1 = clock.Elapsed.TotalSeconds; comm = nccl?.TakeCommunicationMilliseconds(); }
        });
        var settings = new TrainingSettings
        {
            BatchSize = (int)b, MaxBatchTokens = b * t, MaxEpochs = 1, MaxSteps = o.Warmup + steps, LearningRate = 1e-4, WarmupRatio = 0,
            Decay = LearningRateDecay.Constant, EarlyStoppingPatience = 0, ShuffleBufferRows = (int)b, Seed = 1, LogEverySteps = every, Progress = progress,
            Distributed = c is null ? null : new DistributedOptions { Collectives = c },
        };
        string? status = null;
        try { ModelTrainer.Train(model, new CollateSpec(LabelKind.Key, 0, 0, 0, null), () => rows, rows.Count, null, settings, device, new ConsoleLog(log, rank)); }
        catch (Exception e) when (!Debugger.IsAttached) { status = "error: " + TrainingBenchmark.FirstLine(e); }
        return Result(rank, world, world == 1 ? "1 GPU" : "data parallel", mechanism.Label, t, b, steps, t0, t1, comm, memory, status);
    }

    public static RankResult SequenceParallelRun(MultiGpuOptions o, ICollectives? c, Device device, long t, TextWriter log)
    {
        int rank = c?.Rank ?? 0, world = c?.WorldSize ?? 1;
        long b = o.SpBatch;
        torch.random.manual_seed(1);
        using var model = new SequenceParallelStack(30522, o.Layers, o.Hidden, o.Heads, c) { Offset = c is null ? 0 : SequenceParallel.SliceStart(t, rank, world) };
        model.to(device);
        if (device.type == DeviceType.CUDA) model.to(ScalarType.BFloat16);
        if (c is not null) DataParallel.BroadcastState(model, c);
        var parameters = model.parameters().ToList();
        var generator = new Random(11);
        using var ids = tensor(Enumerable.Range(0, (int)(b * t)).Select(_ => (long)generator.Next(1000, 30000)).ToArray(), new[] { b, t });
        using var local = (c is null ? ids : SequenceParallel.Slice(ids, 1, rank, world)).contiguous().to(device);
        using var labels = tensor(Enumerable.Range(0, (int)b).Select(i => (long)(i % 2)).ToArray(), device: device);
        var memory = device.type == DeviceType.CUDA ? new CudaMemoryProbe(0) : null;
        var nccl = c as NcclCollectives;
        if (nccl is not null) nccl.TimeCommunication = true;
        void Step()
        {
            using var scope = NewDisposeScope();
            var loss = nn.functional.cross_entropy(model.forward(local, null).to(ScalarType.Float32), labels);
            loss.backward();
            SequenceParallel.ThrowIfBackwardFailed();
            if (c is not null) DataParallel.AllReduceGradients(parameters.Cast<TorchSharp.Modules.Parameter>().ToList(), c);
            model.zero_grad();
        }
        void Sync() { if (device.type == DeviceType.CUDA) cuda.synchronize(); c?.Barrier(); }
        string? status = null;
        double? t0 = null, t1 = null, comm = null;
        var clock = Stopwatch.StartNew();
        try
        {
            for (int i = 0; i < o.Warmup; i++) Step();
            Sync(); memory?.ResetPeak(); nccl?.TakeCommunicationMilliseconds();
            t0 = clock.Elapsed.TotalSeconds;
            for (int i = 0; i < o.Steps; i++) Step();
            Sync();
            t1 = clock.Elapsed.TotalSeconds;
            comm = nccl?.TakeCommunicationMilliseconds();
        }
        catch (Exception e) when (!Debugger.IsAttached)
        {
            status = TrainingBenchmark.IsOutOfMemory(e) ? "OOM" : "error: " + TrainingBenchmark.FirstLine(e);
        }
        long slice = c is null ? t : SequenceParallel.SliceLength(t, rank, world);
        log.WriteLine($"[rank {rank}] sequence parallel T={t} ({slice} tokens here) B={b}: {(t1 - t0) * 1000 / o.Steps:F1} ms/step {status}");
        return Result(rank, world, world == 1 ? "1 GPU (SP model)" : "sequence parallel", SpLabel, t, b, o.Steps, t0, t1, comm, memory, status, slice);
    }

    /// <summary>The mechanism column of the sequence-parallel rows (its own model: see <see cref="SequenceParallelStack"/>).</summary>
    public const string SpLabel = "linear_relu (SP stack)";

    private static RankResult Result(int rank, int world, string mode, string mechanism, long t, long b, int steps, double? t0, double? t1, double? commMs,
        CudaMemoryProbe? memory, string? status, long? tokensHere = null)
    {
        double? seconds = t0 is double a && t1 is double z && z > a ? z - a : null;
        double? tps = seconds is double s ? b * (tokensHere ?? t) * steps / s : null;
        double? peak = memory?.PeakBytes() is long bytes ? bytes / (double)(1L << 30) : null;
        double? share = seconds is double s2 && commMs is double ms ? ms / 1000 / s2 : null;
        return new RankResult(rank, world, mode, mechanism, t, b, seconds is null ? 0 : steps, seconds * 1000 / steps, tps, peak, share, status ?? (seconds is null ? "no timed step" : null));
    }

    /// <summary>Synthetic rows of exactly <paramref name="t"/> token ids (no padding), labels 0/1.</summary>
    public static List<Example> Rows(int count, int t, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(i =>
        {
            var ids = new int[t];
            for (int j = 0; j < t; j++) ids[j] = rng.Next(1000, 30000);
            return new Example { Ids = ids, Segments = new int[t], Label = i % 2, Length = t };
        }).ToList();
    }

    private sealed class ConsoleLog(TextWriter log, int rank) : ITrainingLog
    {
        public void Info(string message) { lock (log) log.WriteLine($"[rank {rank}] {message}"); }
        public void Warning(string message) { lock (log) log.WriteLine($"[rank {rank}] warning: {message}"); }
    }
}
