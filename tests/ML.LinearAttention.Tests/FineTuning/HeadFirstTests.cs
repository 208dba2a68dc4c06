using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.FineTuning;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.FineTuning;

/// <summary>MP+ with HeadFirst: its Moment Probing head trains first on cached features while PSRP waits, then both
/// through the encoder, the head-only weights kept unless an epoch validates better.</summary>
public sealed class HeadFirstTests
{
    private static readonly MomentProbingOptions Small = new() { HiddenDim = 64, Heads = 4, Epochs = 6, LearningRate = 1e-2 };
    private static readonly CollateSpec Spec = new(LabelKind.Key, 0, 0, 0, null);

    private static SequenceModel Psrp(bool headFirst)
    {
        Torch.Seed(5);
        var model = new SequenceModel(TinyModels.Config());
        FineTuningRegistry.Apply(model, "psrp", new PsrpOptions { Probe = Small, Bottleneck = 4, HeadFirst = headFirst });
        return model;
    }

    private static Dictionary<string, Tensor> Weights(SequenceModel model)
        => model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

    [Fact]
    public void TheHeadTrainsAloneFirstWhilePsrpAndTheEncoderWaitAndStayTrainable()
    {
        var rows = Enumerable.Range(0, 48).Select(i => TinyModels.Row(4 + i % 5, i)).ToList();
        using var model = Psrp(headFirst: true);
        var before = Weights(model);
        var psrp = model.named_parameters().Where(p => p.name.Contains(".ffn_recalibration.", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(psrp);
        Assert.All(psrp.Where(p => p.name.Contains(".up_", StringComparison.Ordinal)), p => Assert.True(p.parameter.eq(0).all().item<bool>(), $"{p.name}: HeadFirst starts PSRP as the identity"));
        var log = new ListLog();
        var report = FrozenHeadTrainer.TryTrainHeadFirst(model, Spec, () => rows, () => rows, new TrainingSettings { BatchSize = 16, Seed = 1 }, CPU, log);
        Assert.NotNull(report);
        Assert.Equal(2 * 6, report!.Epochs); // the head's probe first, then the whole head (ProbeFirst)
        Assert.Contains(log.Lines, l => l.StartsWith("Head first: the head trains alone", StringComparison.Ordinal));
        foreach (var (name, p) in model.named_parameters().Where(p => !p.name.StartsWith("probe_head.", StringComparison.Ordinal)))
            Assert.True(p.eq(before[name]).all().item<bool>(), $"{name} changed outside the head");
        foreach (var name in new[] { "probe_head.classifier1.weight", "probe_head.classifier2.weight", "probe_head.proj.weight" })
            Assert.False(model.get_parameter(name).eq(before[name]).all().item<bool>(), $"{name}: the head did not train");
        Assert.All(psrp, p => Assert.True(p.parameter.requires_grad, $"{p.name} is trainable again for the next stage"));
        Assert.Null(FrozenHeadTrainer.TryTrain(model, Spec, () => rows, () => rows, new TrainingSettings { BatchSize = 16 }, CPU, new ListLog()));
        using (var reference = Psrp(headFirst: false))
            Assert.Null(FrozenHeadTrainer.TryTrainHeadFirst(reference, Spec, () => rows, () => rows, new TrainingSettings { BatchSize = 16 }, CPU, new ListLog()));
    }

    [Fact]
    public void TheStartingWeightsCompeteAsEpochZeroAndStayWhenNoEpochValidatesBetter()
    {
        var rows = Enumerable.Range(0, 48).Select(i => TinyModels.Row(4 + i % 5, i)).ToList();
        using var model = Psrp(headFirst: true);
        var settings = new TrainingSettings { BatchSize = 16, Seed = 1, MaxEpochs = 2, LearningRate = 0.5, WarmupRatio = 0, LogEverySteps = 0, CalibrateTemperature = false };
        FrozenHeadTrainer.TryTrainHeadFirst(model, Spec, () => rows, () => rows, settings, CPU, new ListLog());
        using var batch = TinyModels.Batch(rows.Take(8).ToList());
        var headOnly = TinyModels.Eval(model, batch).detach().clone();
        // A learning rate far too high: the epochs through the encoder validate worse than the head trained first.
        var log = new ListLog();
        var report = ModelTrainer.Train(model, Spec, () => rows, rows.Count, () => rows, settings with { ScoreStartingWeights = true }, CPU, log);
        Assert.Contains(log.Lines, l => l.StartsWith("Starting weights (epoch 0): validation log-loss", StringComparison.Ordinal));
        if (report.BestEpoch == 0)
        {
            Assert.Contains(log.Lines, l => l.StartsWith("Restored the weights of epoch 0", StringComparison.Ordinal));
            KernelAssert.Close(headOnly, TinyModels.Eval(model, batch), 1e-5, 1e-4, "the head-only weights restored");
        }
        else Assert.True(report.BestValidationLogLoss < ValidationLogLossOf(log, 0), "an epoch replaced the starting weights without validating better");
        var without = new ListLog();
        ModelTrainer.Train(model, Spec, () => rows, rows.Count, () => rows, settings, CPU, without);
        Assert.DoesNotContain(without.Lines, l => l.StartsWith("Starting weights", StringComparison.Ordinal));
    }

    private static double ValidationLogLossOf(ListLog log, int epoch)
    {
        var line = log.Lines.First(l => l.StartsWith($"Starting weights (epoch {epoch}): validation log-loss ", StringComparison.Ordinal));
        var text = line["Starting weights (epoch 0): validation log-loss ".Length..].Split(',', ';')[0];
        return double.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
    }
}
