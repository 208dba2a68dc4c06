using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.FineTuning;
using Microsoft.ML.LinearAttention.FineTuning.LinearProbe;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.FineTuning;

/// <summary>Heads trained on cached features of a frozen encoder (<see cref="FrozenHeadTrainer"/>), and Moment Probing's layout choice.</summary>
public sealed class FrozenHeadTests
{
    private static readonly MomentProbingOptions Small = new() { HiddenDim = 64, Heads = 4 }; // heads of 16 → 7 → 3

    private static SequenceModel Probed(string method, FineTuningOptions options, int side = 0)
    {
        Torch.Seed(3);
        var model = new SequenceModel(TinyModels.Config(side: side));
        FineTuningRegistry.Apply(model, method, options);
        return model;
    }

    private static readonly CollateSpec Spec = new(LabelKind.Key, 0, 0, 0, null);

    [Fact]
    public void CachedFeaturesGiveExactlyTheEncodersOutputWhateverTheRowsAreBatchedWith()
    {
        using var model = Probed("moment_probing", Small);
        // The label carries the row's index, so each cached row can be matched with its own forward pass.
        var rows = Enumerable.Range(0, 7).Select(i => { var r = TinyModels.Row(3 + i * 2 % 9, i + 1); return new Example { Ids = r.Ids, Segments = r.Segments, Label = i, Length = r.Length }; }).ToList();
        using var cache = FrozenFeatures.Compute(model, rows, Spec, batchSize: 3, maxBatchTokens: 1 << 16, CPU, withStates: true, long.MaxValue, () => { });
        Assert.NotNull(cache);
        Assert.Equal(rows.Count, cache!.Count);
        Assert.Equal(rows.Sum(r => r.Length), cache.Tokens);
        using var _ = no_grad();
        model.eval();
        var all = Enumerable.Range(0, cache.Count).ToList();
        var (states, mask, pooled, labels) = cache.Batch(all, LabelKind.Key, CPU);
        var cached = model.Head(states, mask, pooled);
        for (int i = 0; i < all.Count; i++)
        {
            int row = (int)labels[i].item<long>();
            using var alone = TinyModels.Eval(model, TinyModels.Batch(new[] { rows[row] }));
            KernelAssert.Close(cached[i].unsqueeze(0), alone, 1e-5, 1e-4, $"row {row}");
        }
    }

    [Fact]
    public void MomentProbingLearnsFromTheCacheWhatTheLinearProbeCannotAndTheEncoderStaysUnchanged()
    {
        // 48 rows of 3 classes drawn from one token pattern: a frozen 16-wide encoder's mean vector separates them
        // poorly (a linear probe stays far from fitting them), its second-order statistics do.
        var rows = Enumerable.Range(0, 48).Select(i => TinyModels.Row(4 + i % 5, i)).ToList();
        var settings = new TrainingSettings { BatchSize = 16, Seed = 1 };
        double Fit(string method, FineTuningOptions options, out TrainingReport report, out ListLog log)
        {
            using var model = Probed(method, options);
            var encoderBefore = model.named_parameters().Where(p => !p.name.StartsWith("probe_head.")).ToDictionary(p => p.name, p => p.parameter.detach().clone());
            log = new ListLog();
            report = FrozenHeadTrainer.TryTrain(model, Spec, () => rows, () => rows, settings, CPU, log)!;
            Assert.NotNull(report);
            foreach (var (name, p) in model.named_parameters().Where(p => !p.name.StartsWith("probe_head.")))
                Assert.True(p.eq(encoderBefore[name]).all().item<bool>(), $"{method}: {name} changed");
            return ModelTrainer.Evaluate(model, Spec, rows, 16, 1 << 16, CPU);
        }
        double probe = Fit("linear_probe", new LinearProbeOptions { Epochs = 30, LearningRate = 1e-2 }, out _, out _);
        double mp = Fit("moment_probing", Small with { Epochs = 30, LearningRate = 1e-2 }, out var report, out var log);
        Assert.True(mp >= 0.75 && mp >= probe + 0.2, $"training accuracy: Moment Probing {mp:F3}, linear probe {probe:F3}");
        Assert.Equal(2 * 30, report.Epochs); // ProbeFirst: the probe inside the head, then the whole head
        Assert.Equal(2 * 30 * 3, report.Steps);
        Assert.Contains(log.Lines, l => l.StartsWith("Frozen encoder, stage 1 of 2", StringComparison.Ordinal));
        Fit("moment_probing", Small with { Epochs = 30, LearningRate = 1e-2, ProbeFirst = false }, out var single, out var singleLog);
        Assert.Equal(30, single.Epochs);
        Assert.Equal(30 * 3, single.Steps);
        Assert.DoesNotContain(singleLog.Lines, l => l.Contains("stage 1 of 2", StringComparison.Ordinal));
        Assert.Contains(log.Lines, l => l.StartsWith("Frozen encoder: features of 48 training row(s) and 48 validation row(s)", StringComparison.Ordinal));
        Assert.Contains(log.Lines, l => l.StartsWith("Restored the head of epoch", StringComparison.Ordinal));
    }

    [Fact]
    public void ProbeFirstTrainsOnlyTheProbeInsideTheHeadAndKeepsItWhenValidationPrefersIt()
    {
        var rows = Enumerable.Range(0, 48).Select(i => TinyModels.Row(4 + i % 5, i)).ToList();
        using var model = Probed("moment_probing", Small with { Epochs = 4, LearningRate = 1e-2 });
        var head = (MomentProbingHead)model.ProbeHead!;
        var staged = (IProbeFirstHead)head;
        var headBefore = head.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        staged.SilenceSecondOrder();
        var features = FrozenFeatures.Compute(model, rows, Spec, 16, 1 << 16, CPU, withStates: true, long.MaxValue, () => { })!;
        using (features)
        using (no_grad())
        {
            // Silenced, the head averages its probe's logits with zero; adopted, it gives the probe's logits themselves
            // (what stage 1 trained and validated).
            var (states, mask, pooled, _) = features.Batch(Enumerable.Range(0, features.Count).ToList(), LabelKind.Key, CPU);
            var probeLogits = staged.FirstOrderOutput(states, mask, pooled);
            KernelAssert.Close(probeLogits / 2, head.forward(states, mask, pooled), 1e-6, 1e-5, "silenced head");
            staged.AdoptFirstOrder();
            KernelAssert.Close(probeLogits, head.forward(states, mask, pooled), 1e-6, 1e-5, "adopted head");
            staged.SilenceSecondOrder();
            KernelAssert.Close(probeLogits * 2, staged.FirstOrderOutput(states, mask, pooled), 1e-6, 1e-5, "doubled probe");
        }
        // The best validation epoch is restored whichever stage it came from: from stage 1 (epochs 1–4) the head is a
        // probe, its second-order classifier zero and the rest of the second order as initialised; from stage 2 not.
        var shuffled = rows.Select((r, i) => new Example { Ids = r.Ids, Segments = r.Segments, Length = r.Length, Label = (r.Label + 1 + i % 2) % 3 }).ToList();
        var log = new ListLog();
        var report = FrozenHeadTrainer.TryTrain(model, Spec, () => rows, () => shuffled, new TrainingSettings { BatchSize = 16, Seed = 1 }, CPU, log)!;
        Assert.Equal(8, report.Epochs);
        Assert.Contains(log.Lines, l => l.StartsWith($"Restored the head of epoch {report.BestEpoch} ", StringComparison.Ordinal));
        var after = head.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach());
        bool fromStageOne = report.BestEpoch <= 4;
        Assert.Equal(fromStageOne, after["classifier2.weight"].eq(0).all().item<bool>());
        foreach (var name in new[] { "proj.weight", "conv1.weight", "conv2.weight" })
            Assert.Equal(fromStageOne, after[name].eq(headBefore[name]).all().item<bool>());
        Assert.False(after["classifier1.weight"].eq(headBefore["classifier1.weight"]).all().item<bool>(), "the probe did not train");
    }

    [Fact]
    public void MomentProbingsFirstStageIsTheLinearProbeItselfAndARestoredStageOneEpochScoresAsTheProbe()
    {
        // Same seed, rows, validation rows and recipe: stage 1 of Moment Probing must retrace linear_probe epoch by epoch
        // (same losses and validation accuracies), so that MP can only add to the probe. Validation labels that contradict
        // the training labels make the probe's early epochs (before it fits them) the best ones of both stages.
        var rows = Enumerable.Range(0, 48).Select(i => TinyModels.Row(4 + i % 5, i)).ToList();
        var validation = rows.Select((r, i) => new Example { Ids = r.Ids, Segments = r.Segments, Length = r.Length, Label = (r.Label + 1 + i % 2) % 3 }).ToList();
        var settings = new TrainingSettings { BatchSize = 16, Seed = 1 };
        var recipe = new LinearProbeOptions { Epochs = 10, LearningRate = 1e-2 };
        (List<string> Epochs, Tensor Scores, TrainingReport Report) Fit(string method, FineTuningOptions options)
        {
            using var model = Probed(method, options);
            var log = new ListLog();
            var report = FrozenHeadTrainer.TryTrain(model, Spec, () => rows, () => validation, settings, CPU, log)!;
            var epochs = log.Lines.Where(l => l.StartsWith("Head epoch", StringComparison.Ordinal)).ToList();
            using var _ = no_grad();
            return (epochs, TinyModels.Eval(model, TinyModels.Batch(rows.Take(8).ToList())).detach().clone(), report);
        }
        var probe = Fit("linear_probe", recipe);
        var mp = Fit("moment_probing", Small with { Epochs = 10, LearningRate = 1e-2 });
        Assert.Equal(10, probe.Epochs.Count);
        Assert.Equal(20, mp.Epochs.Count);
        Assert.Equal(probe.Epochs, mp.Epochs.Take(10));
        // Both calibrate their probabilities on the validation rows, as the streaming trainer does.
        Assert.True(probe.Report.Temperature is > 0 && mp.Report.Temperature is > 0, $"temperatures {probe.Report.Temperature}, {mp.Report.Temperature}");
        if (mp.Report.BestEpoch <= 10)
        {
            Assert.Equal(probe.Report.BestEpoch, mp.Report.BestEpoch);
            KernelAssert.Close(probe.Scores, mp.Scores, 1e-5, 1e-4, "restored stage-1 epoch vs the linear probe");
        }
        else Assert.True(mp.Report.CalibratedValidationLogLoss < probe.Report.CalibratedValidationLogLoss, $"stage 2 won with calibrated validation log-loss {mp.Report.CalibratedValidationLogLoss} against the probe's {probe.Report.CalibratedValidationLogLoss}");
    }

    [Fact]
    public void TheCacheStepsAsideWhenItCannotStandInForTheEncoder()
    {
        var rows = Enumerable.Range(0, 300).Select(i => TinyModels.Row(64, i)).ToList();
        var settings = new TrainingSettings { BatchSize = 32 };
        var log = new ListLog();
        // 300 rows × 64 tokens × 16 channels of fp32 states is more than 1 MiB.
        using (var model = Probed("moment_probing", Small with { CacheMegabytes = 1 }))
            Assert.Null(FrozenHeadTrainer.TryTrain(model, Spec, () => rows, null, settings, CPU, log));
        Assert.Contains(log.Lines, l => l.Contains("CacheMegabytes = 1", StringComparison.Ordinal));
        using (var model = Probed("moment_probing", Small with { CacheFeatures = false }))
            Assert.Null(FrozenHeadTrainer.TryTrain(model, Spec, () => rows, null, settings, CPU, log));
        using (var model = Probed("linear_probe", new LinearProbeOptions(), side: 2))
            Assert.Null(FrozenHeadTrainer.TryTrain(model, Spec with { SideLength = 2 }, () => rows, null, settings, CPU, log));
        Assert.Contains(log.Lines, l => l.Contains("side features", StringComparison.Ordinal));
        using (var model = Probed("linear_probe", new LinearProbeOptions()))
            Assert.Null(FrozenHeadTrainer.TryTrain(model, Spec, () => rows, null, settings with { CheckpointDirectory = "x" }, CPU, log));
        using (var model = Probed("lora", new Microsoft.ML.LinearAttention.FineTuning.Lora.LoraOptions()))
            Assert.Null(FrozenHeadTrainer.TryTrain(model, Spec, () => rows, null, settings, CPU, log));
    }

    [Fact]
    public void NewMomentProbingHeadsNormalizeTheSecondOrderAndOldSavedOnesKeepTheirLayout()
    {
        using var model = Probed("moment_probing", Small);
        Assert.Contains(model.state_dict().Keys, k => k.StartsWith("probe_head.fc_norm2.", StringComparison.Ordinal));
        var recorded = (MomentProbingOptions)FineTuningRegistry.OptionsOf(model.Config)!;
        Assert.True(recorded.NormalizeSecondOrder);
        using (var rebuilt = FineTuningRegistry.CreateModel(model.Config))
            Assert.Equal(model.state_dict().Keys.OrderBy(k => k), rebuilt.state_dict().Keys.OrderBy(k => k));

        // A model saved before the option existed recorded options without it: it is rebuilt without the norm, so its weights still load.
        var old = new SequenceModel(TinyModels.Config());
        FineTuningRegistry.Restore(old, new FineTuningSpec("moment_probing", """{"HiddenDim":64,"Heads":4,"Pairs":0,"Centering":0}""", Finished: true));
        Assert.DoesNotContain(old.state_dict().Keys, k => k.Contains("fc_norm2", StringComparison.Ordinal));
        Assert.Equal(model.state_dict().Count - 2, old.state_dict().Count);

        using var psrp = Probed("psrp", new PsrpOptions { Probe = Small });
        Assert.Contains(psrp.state_dict().Keys, k => k.StartsWith("probe_head.fc_norm2.", StringComparison.Ordinal));
    }

    [Fact]
    public void TheHeadRecipeIsCheckedAndItsDefaultEpochsFollowTheSteps()
    {
        var o = new LinearProbeOptions();
        Assert.Equal(47, o.EpochsFor(32));    // 1,000 rows in batches of 32: about 1,500 steps
        Assert.Equal(5, o.EpochsFor(2000));   // at least 5
        Assert.Equal(100, o.EpochsFor(1));    // at most 100
        Assert.Equal(7, (o with { Epochs = 7 }).EpochsFor(32));
        var model = new SequenceModel(TinyModels.Config());
        Assert.Contains("LearningRate", Assert.Throws<ArgumentOutOfRangeException>(() => FineTuningRegistry.Apply(model, "linear_probe", new LinearProbeOptions { LearningRate = 0 })).Message);
        Assert.Contains("LabelSmoothing", Assert.Throws<ArgumentOutOfRangeException>(() => FineTuningRegistry.Apply(model, "moment_probing", Small with { LabelSmoothing = 1 })).Message);
        Assert.Contains("Epochs", Assert.Throws<ArgumentOutOfRangeException>(() => FineTuningRegistry.Apply(model, "moment_probing", Small with { Epochs = 0 })).Message);
    }
}
