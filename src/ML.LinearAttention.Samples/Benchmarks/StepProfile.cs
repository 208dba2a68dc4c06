using System.Diagnostics;
using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench profile`: where a training step's time goes, per category (GEMMs, attention, norms, elementwise, optimizer,
/// mixed-precision copies, the rest, host/idle). TorchSharp 0.107 exposes no profiler (no kineto binding), so this is a
/// component model: the step is measured whole, then each of its components is run alone at the step's exact shapes
/// (read from forward hooks on the model's own modules) and timed the same way. On CUDA the times are device times
/// between CUDA events with the host's launch overhead hidden (<see cref="GpuTimer"/>); on the CPU, wall-clock times.
/// Whatever the components do not cover (embedding, loss and head, masks, copies inside modules) is the step's
/// remainder; the gap between the step's wall-clock time and its device time is host overhead and idle GPU.
/// </summary>
public static class StepProfile
{
    /// <summary>The defaults of `bench profile`: the two mechanisms and lengths issue #23 asks about.</summary>
    public static TrainingBenchmarkOptions Defaults => new()
    {
        Mechanisms = "softmax,linear_relu", Lengths = new long[] { 512, 16384 }, WarmupSteps = 2, Steps = 5,
    };

    /// <summary>One category of one profiled point: total milliseconds per step and what it is made of.</summary>
    public sealed record Component(string Category, string What, int Count, double MsEach, double MsPerStep);

    /// <summary>One profiled (mechanism, T) point.</summary>
    public sealed record Point(string Mechanism, long T, long B, double WallMsPerStep, double DeviceMsPerStep, bool DeviceTimeHasGaps,
        IReadOnlyList<Component> Components, string? Status);

    public static int Run(TrainingBenchmarkOptions o, TextWriter log)
    {
        var (cuda, memory) = TrainingBenchmark.Start(o, log, "bench profile");
        var meta = TrainingBenchmark.Meta(o, cuda, memory);
        var points = new List<Point>();
        foreach (var mechanism in BenchmarkMechanism.ParseList(o.Mechanisms, o.Layers, o.HybridPlan, o.HybridBase))
            foreach (long t in o.Lengths)
            {
                long b = Math.Max(1, o.TokensPerStep / t);
                Point point;
                try { point = Profile(o, mechanism, t, b, cuda); }
                catch (Exception e) when (TrainingBenchmark.IsOutOfMemory(e))
                {
                    point = new Point(mechanism.Label, t, b, double.NaN, double.NaN, false, [], "OOM");
                }
                finally { GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect(); }
                points.Add(point);
                log.WriteLine(StepProfileReport.Line(point));
                StepProfileReport.Write(o, meta, cuda, points);
            }
        log.WriteLine($"wrote training-profile.md and training-profile.json to {o.OutputDirectory}");
        return 0;
    }

    private static Point Profile(TrainingBenchmarkOptions o, BenchmarkMechanism mechanism, long t, long b, bool cuda)
    {
        var device = cuda ? CUDA : CPU;
        var position = mechanism.Position(o.Hidden, o.Heads);
        var config = TrainingBenchmark.Config(o, mechanism, position) with { MaxPositions = (int)Math.Max(512, t) };
        using var step = new ProfiledStep(config, device, cuda, b, t);
        var timer = new ComponentTimer(device, cuda, o.Steps);
        for (int i = 0; i < o.WarmupSteps; i++) step.Run();
        double wall = timer.WallClock(step.Run);
        var (deviceMs, gaps) = timer.Measure(step.Run);
        var shapes = step.Shapes();
        var components = new List<Component>();
        var gemms = new GemmTimes();
        components.AddRange(ProfileComponents.Gemms(shapes, step, timer, gemms));
        components.AddRange(ProfileComponents.Attention(shapes, step, timer, gemms));
        components.AddRange(ProfileComponents.Norms(shapes, step, timer));
        components.AddRange(ProfileComponents.Elementwise(shapes, step, timer));
        components.AddRange(ProfileComponents.Optimizer(step, timer));
        components.AddRange(ProfileComponents.Copies(step, timer));
        double covered = components.Sum(c => c.MsPerStep);
        components.AddRange(ProfileComponents.AttentionParts(shapes, step, timer));   // a breakdown of "attention", outside the sum
        components.Add(new Component("other", "the step's device time not covered above: embeddings, loss and head, masks, copies inside modules, "
            + "launch gaps (negative when the components run slower alone than inside the step)", 1, deviceMs - covered, deviceMs - covered));
        components.Add(new Component("host/idle", cuda ? "wall-clock time per step minus device time: host work the GPU waited for" : "— (CPU: device time is wall-clock time)",
            1, cuda ? wall - deviceMs : 0, cuda ? wall - deviceMs : 0));
        return new Point(mechanism.Label, t, b, wall, deviceMs, gaps, components, null);
    }
}

/// <summary>Times a piece of work per run: CUDA events behind a spin kernel on CUDA (<see cref="GpuTimer"/>), a stopwatch on the CPU.</summary>
internal sealed class ComponentTimer(Device device, bool cuda, int repetitions)
{
    /// <summary>Milliseconds of device time per run of <paramref name="work"/> (after one untimed run), and whether the device may have idled.</summary>
    public (double Ms, bool Gaps) Measure(Action work)
    {
        work();
        if (cuda)
        {
            var timing = GpuTimer.Measure(device, work, repetitions);
            return (timing.GpuMilliseconds, timing.HostBound);
        }
        return (WallClock(work), false);
    }

    /// <summary>Wall-clock milliseconds per run, the device synchronized before and after.</summary>
    public double WallClock(Action work)
    {
        if (cuda) torch.cuda.synchronize(device);
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < repetitions; i++) work();
        if (cuda) torch.cuda.synchronize(device);
        return watch.Elapsed.TotalMilliseconds / repetitions;
    }
}

/// <summary>The shapes the model's modules saw in one forward pass (from forward hooks).</summary>
internal sealed record StepShapes(
    IReadOnlyList<(string Name, long Rows, long In, long Out, bool Bias)> Linears,
    IReadOnlyList<(string Name, long[] Shape)> Norms,
    IReadOnlyList<(string Name, long[] Shape, double P)> Dropouts,
    IReadOnlyList<(string Prefix, TokenMixer Mixer)> Mixers,
    long[] BlockShape, int PreNormBlocks);

/// <summary>
/// One training step as <c>TrainingRun</c> takes it, on synthetic tokens: forward and backward through the bf16 copy
/// (CUDA) or the fp32 model (CPU), gradients into the fp32 masters, clipping, AdamW and the weight copy back.
/// </summary>
internal sealed class ProfiledStep : IDisposable
{
    private readonly SequenceModel _model;
    private readonly MixedPrecision? _mp;
    private readonly TrainingSettings _settings = new() { LearningRate = 1e-4, WeightDecay = 0.01, MaxGradientNorm = 1.0, Decay = LearningRateDecay.Constant, WarmupRatio = 0 };
    private readonly ModelBatch _batch;
    private long _step;

    public ProfiledStep(EncoderConfig config, Device device, bool cuda, long b, long t)
    {
        _model = new SequenceModel(config);
        _model.to(device);
        _mp = cuda ? new MixedPrecision(_model, device) : null;
        Runner = _mp?.Model ?? _model;
        _model.train(); Runner.train();
        Parameters = _model.parameters().Where(p => p.requires_grad).ToList();
        Optimizer = ModelTrainer.CreateOptimizer(_model, _settings);
        Device = device;
        _batch = new ModelBatch
        {
            Tokens = randint(1, config.VocabularySize, new[] { b, t }, dtype: ScalarType.Int64, device: device),
            Mask = ones(new[] { b, t }, dtype: ScalarType.Bool, device: device),
            Labels = randint(0, 2, new[] { b }, dtype: ScalarType.Int64, device: device),
            RealTokens = b * t, HasPadding = false,
        };
    }

    public TrainableModel Runner { get; }
    public List<Parameter> Parameters { get; }
    public AdamW Optimizer { get; }
    public Device Device { get; }
    public ScalarType RunDtype => _mp is null ? ScalarType.Float32 : ScalarType.BFloat16;
    public MixedPrecision? MixedPrecision => _mp;
    public TrainingSettings Settings => _settings;

    /// <summary>Forward, backward and the optimizer step, as the trainer runs them (no host synchronisation).</summary>
    public void Run()
    {
        using (var scope = NewDisposeScope())
        {
            ModelTrainer.Loss(Runner, _batch, LabelKind.Key).backward();
            _mp?.MoveGradients();
        }
        ModelTrainer.OptimizerStep(Optimizer, Parameters, _settings, ref _step, long.MaxValue, 0, mixedPrecision: _mp);
    }

    /// <summary>
    /// The shapes each module works at, from the model's structure (TorchSharp runs forward hooks only through
    /// <c>call</c>, which the blocks do not use): the blocks' linear layers at B·T rows (a mixer's layer narrower than
    /// the model, e.g. a per-head feature map, at B·T·C / in rows), the head's at B rows; the blocks' norms and dropouts
    /// at [B, T, C]. A mixer's own norms and dropouts are part of its time (attention).
    /// </summary>
    public StepShapes Shapes()
    {
        var model = (SequenceModel)Runner;
        long b = _batch.Mask.shape[0], t = _batch.Mask.shape[1], c = model.Config.ModelDim;
        var linears = new List<(string, long, long, long, bool)>();
        var norms = new List<(string, long[])>();
        foreach (var (name, module) in model.named_modules())
        {
            bool inBlocks = name.StartsWith("blocks.", StringComparison.Ordinal), inMixer = name.Contains(".mixer", StringComparison.Ordinal);
            if (module is Linear linear)
            {
                long inFeatures = linear.weight!.shape[1], outFeatures = linear.weight.shape[0];
                long rows = !inBlocks ? b : inMixer && inFeatures < c && c % inFeatures == 0 ? b * t * (c / inFeatures) : b * t;
                linears.Add((name, rows, inFeatures, outFeatures, linear.bias is not null));
            }
            else if (module is RmsNorm && !inMixer)
                norms.Add((name, name.StartsWith("head", StringComparison.Ordinal) ? new[] { b, c } : new[] { b, t, c }));
        }
        var blockNames = model.named_modules().Where(m => m.module is IEncoderBlock).Select(m => m.name).ToList();
        var mixers = model.Blocks.Select((blk, i) => (blockNames[i] + ".mixer", blk.Mixer)).ToList();
        int preNorm = model.Blocks.Count(blk => blk is EncoderBlock);
        // Two dropouts per block on [B, T, C], one on the embeddings, one on the head's [B, C].
        var dropouts = Enumerable.Repeat(("blocks.*.drop", new[] { b, t, c }, model.Config.Dropout), 2 * preNorm)
            .Append(("drop (embeddings)", new[] { b, t, c }, model.Config.Dropout)).Append(("drop (head)", new[] { b, c }, model.Config.Dropout)).ToList();
        return new StepShapes(linears, norms, dropouts, mixers, new[] { b, t, c }, preNorm);
    }

    public void Dispose()
    {
        _batch.Dispose();
        Optimizer.Dispose();
        _mp?.Dispose();
        _model.Dispose();
    }
}
