using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Text;

/// <summary>The training loop's CPU fast paths against the composite TorchSharp operations they replace, and the
/// per-phase training profile.</summary>
[Collection(ProcessWideSwitches.Name)]
public sealed class CpuFastPathTests
{
    // Shapes: a matrix larger than one work chunk (split over threads), a vector whose length is no multiple of the
    // SIMD width (scalar tail), and a bias.
    private static readonly long[][] Shapes = { new long[] { 700, 400 }, new long[] { 1001 }, new long[] { 7, 3 } };

    private static List<Parameter> Parameters(int seed)
    {
        using var g = new Generator((ulong)seed);
        return Shapes.Select(s => new Parameter(torch.randn(s, generator: g))).ToList();
    }

    private static AdamW Optimizer(List<Parameter> ps, bool amsgrad = false) => torch.optim.AdamW(new[]
    {
        new AdamW.ParamGroup(ps.Take(2), lr: 1e-2, weight_decay: 0.05, amsgrad: amsgrad),
        new AdamW.ParamGroup(ps.Skip(2), lr: 1e-2, weight_decay: 0, amsgrad: amsgrad),
    }, lr: 1e-2);

    [Fact]
    public void FusedAdamWMatchesTorchSharpAdamWWithClippingOverSeveralSteps()
    {
        var reference = Parameters(1);
        var fused = Parameters(1);
        using var referenceOptimizer = Optimizer(reference);
        using var fusedOptimizer = Optimizer(fused);
        for (int step = 0; step < 4; step++)
        {
            using var gen = new Generator((ulong)(100 + step));
            for (int i = 0; i < Shapes.Length; i++)
            {
                var grad = torch.randn(Shapes[i], generator: gen) * (step + 1);
                reference[i].grad = grad.clone();
                fused[i].grad = grad.clone();
            }
            if (step == 2) { reference[2].grad = null; fused[2].grad = null; } // a parameter without gradient keeps its state
            double lr = 1e-2 * (step + 1); // the schedule changes the groups' rates between steps
            foreach (var g in referenceOptimizer.ParamGroups.Concat(fusedOptimizer.ParamGroups)) g.LearningRate = lr;

            GradientClipping.ClipByGlobalNorm(reference, 1.0);
            referenceOptimizer.step();
            referenceOptimizer.zero_grad();
            Assert.True(CpuAdamW.CanStep(fusedOptimizer));
            float factor = GradientClipping.CoefficientOnHost(fused, 1.0);
            Assert.InRange(factor, 1e-4f, 0.999f); // the gradients are far above the limit: clipping acts
            CpuAdamW.Step(fusedOptimizer, factor);

            Assert.All(fused, p => Assert.Null(p.grad)); // released, as zero_grad(set_to_none) does
            for (int i = 0; i < Shapes.Length; i++)
                KernelAssert.Close(fused[i].detach(), reference[i].detach(), 1e-6, 1e-5, $"step {step}, parameter {i}");
        }
        var expectedStates = referenceOptimizer.state_dict().State.Cast<AdamW.State>().ToList();
        var actualStates = fusedOptimizer.state_dict().State.Cast<AdamW.State>().ToList();
        for (int i = 0; i < expectedStates.Count; i++)
        {
            Assert.Equal(expectedStates[i].step, actualStates[i].step);
            KernelAssert.Close(actualStates[i].exp_avg, expectedStates[i].exp_avg, 1e-6, 1e-5, $"first moment {i}");
            KernelAssert.Close(actualStates[i].exp_avg_sq, expectedStates[i].exp_avg_sq, 1e-6, 1e-5, $"second moment {i}");
        }
        Assert.Equal(3, actualStates[2].step); // skipped once, like the reference
    }

    [Fact]
    public void FusedAdamWStepsAsideForWhatItDoesNotCover()
    {
        var ps = Parameters(2);
        foreach (var p in ps) p.grad = torch.ones_like(p);
        using (var amsgrad = Optimizer(ps, amsgrad: true)) Assert.False(CpuAdamW.CanStep(amsgrad));
        using (var plain = Optimizer(ps)) Assert.True(CpuAdamW.CanStep(plain));

        var doubles = Shapes.Select(s => new Parameter(torch.randn(s, dtype: ScalarType.Float64))).ToList();
        using (var fp64 = Optimizer(doubles)) Assert.False(CpuAdamW.CanStep(fp64));

        bool was = CpuFastPaths.FusedAdamW;
        try
        {
            CpuFastPaths.FusedAdamW = false;
            using var off = Optimizer(ps);
            Assert.False(CpuAdamW.CanStep(off));
        }
        finally { CpuFastPaths.FusedAdamW = was; }
    }

    [Fact]
    public void FusedAdamWUsesTheCpuThreadSetting()
    {
        int before = torch.get_num_threads();
        try
        {
            TorchRuntime.SetCpuThreads(1);
            Assert.Equal(1, torch.get_num_threads());
            Assert.Equal(1, CpuAdamW.Parallelism);
            TorchRuntime.SetCpuThreads(2);
            Assert.Equal(2, CpuAdamW.Parallelism);
        }
        finally { TorchRuntime.SetCpuThreads(before); }
    }

    [Fact]
    public void BusyMachineWarningNamesTheFixOnlyWhenThreadsOutnumberTheFreeCores()
    {
        var message = CpuLoadHint.Message(threads: 2, cores: 2, loadAverage: 40);
        Assert.NotNull(message);
        Assert.Contains("CpuThreads = 1", message);
        Assert.Contains("load average 40.0", message);
        Assert.Null(CpuLoadHint.Message(threads: 1, cores: 2, loadAverage: 40)); // already one thread
        Assert.Null(CpuLoadHint.Message(threads: 2, cores: 2, loadAverage: 2.5)); // within the cores (and one for the producers)
        Assert.Null(CpuLoadHint.Message(threads: 8, cores: 8, loadAverage: null)); // no load average (not Linux)
    }

    [Fact]
    public void TrainingWithTheFusedOptimizerMatchesTheCompositeOneAndTheProfileSeesEveryPhase()
    {
        var rows = Enumerable.Range(0, 48).Select(i => new Example
        {
            Ids = Enumerable.Range(0, 3 + i % 9).Select(j => 5 + (j * 7 + i * 13) % 90).ToArray(),
            Segments = new int[3 + i % 9], Length = 3 + i % 9, Label = i % 3,
        }).ToList();
        var spec = new CollateSpec(LabelKind.Key, 0, 0, 0, null);
        var settings = new TrainingSettings { BatchSize = 8, MaxEpochs = 2, LogEverySteps = 0, Seed = 3, ShuffleBufferRows = 64, MaxGradientNorm = 0.5, EarlyStoppingPatience = 0 };
        float[] Train(bool fusedOn, out TrainingProfile profile)
        {
            bool was = CpuFastPaths.FusedAdamW;
            CpuFastPaths.FusedAdamW = fusedOn;
            profile = TrainingProfile.Start();
            try
            {
                torch.manual_seed(11);
                using var model = new SequenceModel(new EncoderConfig
                {
                    VocabularySize = 100, PadId = 0, ModelDim = 16, NumLayers = 2, NumHeads = 2, FfnMultiplier = 2, Dropout = 0.1, Mixer = "linear", Outputs = 3,
                });
                ModelTrainer.Train(model, spec, () => rows, rows.Count, null, settings, torch.CPU, TrainingLog.Silent);
                return model.parameters().SelectMany(p => p.detach().data<float>().ToArray()).ToArray();
            }
            finally { TrainingProfile.Stop(); CpuFastPaths.FusedAdamW = was; }
        }
        var composite = Train(false, out _);
        var fused = Train(true, out var profile);
        Assert.Equal(composite.Length, fused.Length);
        for (int i = 0; i < composite.Length; i++) Assert.True(Math.Abs(composite[i] - fused[i]) < 1e-4, $"parameter element {i}: {fused[i]} vs {composite[i]}");
        Assert.Equal(12, profile.Steps); // 6 batches × 2 epochs, one optimizer step each
        Assert.Equal(12, profile.Batches);
        Assert.True(profile.Forward > TimeSpan.Zero && profile.Backward > TimeSpan.Zero && profile.Optimizer > TimeSpan.Zero, "every phase was timed");
        Assert.Null(TrainingProfile.Current); // stopped: later runs are not profiled
    }

    [Theory]
    [InlineData(0.0)]  // no clipping: the two paths differ by float rounding only
    [InlineData(0.5)]  // clipping: the fused path takes the gradient norm from the bf16 gradients
    public void BFloat16TrainingWithGradientsLeftInTheCopyMatchesMovingThem(double maxNorm)
    {
        var rows = Enumerable.Range(0, 40).Select(i => new Example
        {
            Ids = Enumerable.Range(0, 4 + i % 7).Select(j => 5 + (j * 11 + i * 17) % 90).ToArray(),
            Segments = new int[4 + i % 7], Length = 4 + i % 7, Label = i % 2,
        }).ToList();
        var spec = new CollateSpec(LabelKind.Key, 0, 0, 0, null);
        var settings = new TrainingSettings { BatchSize = 8, MaxEpochs = 2, LogEverySteps = 0, Seed = 5, ShuffleBufferRows = 64, MaxGradientNorm = maxNorm,
            EarlyStoppingPatience = 0, Precision = TrainingPrecision.BFloat16 };
        float[] Train(bool fusedOn)
        {
            bool was = CpuFastPaths.FusedAdamW;
            CpuFastPaths.FusedAdamW = fusedOn;
            try
            {
                torch.manual_seed(13);
                using var model = new SequenceModel(new EncoderConfig
                {
                    VocabularySize = 100, PadId = 0, ModelDim = 32, NumLayers = 2, NumHeads = 2, FfnMultiplier = 2, Dropout = 0.1, Mixer = "softmax", Outputs = 2,
                });
                ModelTrainer.Train(model, spec, () => rows, rows.Count, null, settings, torch.CPU, TrainingLog.Silent);
                return model.parameters().SelectMany(p => p.detach().data<float>().ToArray()).ToArray();
            }
            finally { CpuFastPaths.FusedAdamW = was; }
        }
        var moved = Train(false);
        var inCopy = Train(true);
        Assert.Equal(moved.Length, inCopy.Length);
        // With clipping, the bf16 per-tensor norms round the clipping factor to about 3 digits, and ten Adam steps carry
        // that into a few weights; without it the paths differ by float rounding.
        double tolerance = maxNorm > 0 ? 2e-3 : 1e-4;
        int far = Enumerable.Range(0, moved.Length).Count(i => Math.Abs(moved[i] - inCopy[i]) > tolerance);
        Assert.True(far <= (maxNorm > 0 ? moved.Length / 1000 : 0), $"{far} of {moved.Length} weights differ by more than {tolerance}");
        Assert.All(Enumerable.Range(0, moved.Length), i => Assert.True(Math.Abs(moved[i] - inCopy[i]) < 10 * tolerance, $"weight {i}: {inCopy[i]} vs {moved[i]}"));
        Assert.True(Enumerable.Range(0, moved.Length).Any(i => moved[i] != inCopy[i]) || maxNorm == 0, "the paths are not distinct");
    }

    [Fact]
    public void TheFusedStepWritesTheBFloat16CopyAndReleasesItsGradients()
    {
        torch.manual_seed(3);
        using var master = new SequenceModel(new EncoderConfig { VocabularySize = 50, PadId = 0, ModelDim = 24, NumLayers = 1, NumHeads = 2, FfnMultiplier = 2, Outputs = 2 });
        using var mp = new MixedPrecision(master, torch.CPU) { GradientsStayInCopy = true };
        var parameters = master.parameters().ToList();
        using var fused = torch.optim.AdamW(new[] { new AdamW.ParamGroup(parameters, lr: 1e-2, weight_decay: 0.1) }, lr: 1e-2);
        var reference = parameters.Select(p => new Parameter(p.detach().clone())).ToList();
        using var composite = torch.optim.AdamW(new[] { new AdamW.ParamGroup(reference, lr: 1e-2, weight_decay: 0.1) }, lr: 1e-2);
        for (int step = 0; step < 3; step++)
        {
            for (int i = 0; i < parameters.Count; i++)
            {
                var g = torch.randn(parameters[i].shape).to(ScalarType.BFloat16);
                mp.Copies[i].grad = g;
                reference[i].grad = g.to(ScalarType.Float32);
            }
            Assert.True(CpuAdamW.CanStep(fused, mp));
            CpuAdamW.Step(fused, 1f, mp);
            composite.step();
            composite.zero_grad();
            Assert.All(mp.Copies, c => Assert.Null(c.grad));
            for (int i = 0; i < parameters.Count; i++)
            {
                KernelAssert.Close(parameters[i].detach(), reference[i].detach(), 1e-6, 1e-5, $"step {step}, master {i}");
                Assert.True(mp.Copies[i].detach().eq(parameters[i].detach().to(ScalarType.BFloat16)).all().item<bool>(), $"step {step}: copy {i} is not the master rounded to bf16");
            }
        }
    }

    [Fact]
    public void AutoPrecisionTrainsWideSoftmaxModelsInBFloat16OnACpuWithBFloat16Instructions()
    {
        var rows = Enumerable.Range(0, 8).Select(i => new Example { Ids = new[] { 5 + i, 6, 7 }, Segments = new int[3], Length = 3, Label = i % 2 }).ToList();
        var spec = new CollateSpec(LabelKind.Key, 0, 0, 0, null);
        SequenceModel Model(int width, string mixer = "softmax")
        {
            torch.manual_seed(1);
            return new SequenceModel(new EncoderConfig { VocabularySize = 20, PadId = 0, ModelDim = width, NumLayers = 1, NumHeads = 2, FfnMultiplier = 1, Outputs = 2, Mixer = mixer });
        }
        bool hasBf16 = CpuFeatures.HasBFloat16Instructions;
        using (var wide = Model(256))
        {
            Assert.Equal(hasBf16, MixedPrecision.Applies(TrainingPrecision.Auto, cuda: false, wide));
            Assert.True(MixedPrecision.Applies(TrainingPrecision.Auto, cuda: true, wide));
            Assert.False(MixedPrecision.Applies(TrainingPrecision.Float32, cuda: false, wide));
            Assert.True(MixedPrecision.Applies(TrainingPrecision.BFloat16, cuda: false, wide));
            var log = new Conversion.ConversionTests.ListLog();
            ModelTrainer.Train(wide, spec, () => rows, rows.Count, null, new TrainingSettings { BatchSize = 8, MaxEpochs = 1, LogEverySteps = 0 }, torch.CPU, log);
            Assert.Equal(hasBf16, log.Lines.Any(l => l.Contains("bf16 mixed precision (fp32 master weights) on this CPU", StringComparison.Ordinal)));
            Assert.All(wide.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype)); // the master weights stay fp32
        }
        using (var narrow = Model(32)) Assert.False(MixedPrecision.Applies(TrainingPrecision.Auto, cuda: false, narrow)); // bf16 gains little
        using (var linear = Model(256, "linear")) Assert.False(MixedPrecision.Applies(TrainingPrecision.Auto, cuda: false, linear)); // not measured in bf16
        using (var linearOnGpu = Model(256, "linear")) Assert.True(MixedPrecision.Applies(TrainingPrecision.Auto, cuda: true, linearOnGpu));
    }
}
