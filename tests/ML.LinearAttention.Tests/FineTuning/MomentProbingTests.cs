using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.FineTuning;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.FineTuning;

public sealed class MomentProbingTests
{
    private static readonly MomentProbingOptions Small = new() { HiddenDim = 32, Heads = 4 }; // heads of 8 → 3 → 1

    [Fact]
    public void FeatureCountMatchesThePaperAt2883AndFollowsTheConvolutionArithmetic()
    {
        var defaults = new MomentProbingOptions();
        Assert.Equal(128, defaults.HeadDim);
        Assert.Equal(63, MomentProbingOptions.ConvOut(128));
        Assert.Equal(31, MomentProbingOptions.ConvOut(63));
        Assert.Equal(2883, defaults.FeatureCount); // 3 neighbouring pairs × 31 × 31
        Assert.Equal(2 * 961, (defaults with { Pairs = CrossPairs.Half }).FeatureCount);
        Assert.Equal(6 * 961, (defaults with { Pairs = CrossPairs.All }).FeatureCount);
        Assert.Equal(3, Small.FeatureCount);
        Torch.Seed();
        using var head = new MomentProbingHead(16, 5, Pooling.Mean);
        using var _ = no_grad();
        using var states = randn(2, 6, 16);
        using var mask = ones(2, 6, dtype: ScalarType.Bool);
        Assert.Equal(new long[] { 2, 2883 }, head.SecondOrderFeatures(states, mask).shape);
        Assert.Equal(new long[] { 2, 5 }, head.forward(states, mask, states.mean(new long[] { 1 })).shape);
        Assert.Equal(147, new MomentProbingOptions { HiddenDim = 128 }.FeatureCount);
        // ViT-B/16 sizes of the paper (C = 768, 1000 classes, CLS token): 4,047,146 = 769,000 + 393,728 + 256 + 162 + 2,884,000.
        using (var vit = new MomentProbingHead(768, 1000, Pooling.Cls)) Assert.Equal(4_047_146, vit.parameters().Sum(p => p.numel()));
        Assert.Throws<ArgumentException>(() => new MomentProbingHead(16, 5, Pooling.Mean, new MomentProbingOptions { HiddenDim = 24, Heads = 4 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MomentProbingHead(16, 5, Pooling.Mean, new MomentProbingOptions { Heads = 1 }));
    }

    [Theory]
    [InlineData(CrossPairs.Near, CovarianceCentering.Global)]
    [InlineData(CrossPairs.Half, CovarianceCentering.PerChannel)]
    [InlineData(CrossPairs.All, CovarianceCentering.Global)]
    public void MaskedCrossCovarianceMatchesItsNaiveTwinAndIgnoresPadding(CrossPairs pairs, CovarianceCentering centering)
    {
        Torch.Seed();
        var options = Small with { Pairs = pairs };
        using var heads = randn(3, 4, 9, 8);
        using var mask = tensor(new long[] { 9, 4, 6 }).unsqueeze(1) > arange(9).unsqueeze(0);
        var fast = MomentProbingKernels.CrossCovariance(heads, mask, options.HeadPairs(), centering);
        var naive = MomentProbingKernels.CrossCovarianceNaive(heads, mask, options.HeadPairs(), centering);
        Assert.Equal(new long[] { 3, options.HeadPairs().Count, 8, 8 }, fast.shape);
        KernelAssert.Close(fast, naive, 1e-5, 1e-4, $"{pairs}/{centering}");
        // Garbage in the padded positions changes nothing.
        using var noisy = heads.clone();
        noisy.masked_fill_(mask.logical_not().unsqueeze(1).unsqueeze(-1), 1e3f);
        KernelAssert.Close(MomentProbingKernels.CrossCovariance(noisy, mask, options.HeadPairs(), centering), fast, 1e-5, 1e-4, "padded garbage");
    }

    [Theory]
    [InlineData("moment_probing", Pooling.Mean)]
    [InlineData("moment_probing", Pooling.Cls)]
    [InlineData("psrp", Pooling.Mean)]
    public void PaddingNeverChangesTheProbedOutput(string method, Pooling pooling)
    {
        Torch.Seed();
        using var model = new SequenceModel(TinyModels.Config(pooling: pooling, side: 2));
        FineTuningRegistry.Apply(model, method, method == "psrp" ? new PsrpOptions { Probe = Small } : Small);
        var shortRow = TinyModels.Row(5, 1, side: 2);
        using var alone = TinyModels.Batch(new[] { shortRow }, side: 2);
        using var padded = TinyModels.Batch(new[] { shortRow, TinyModels.Row(17, 2, side: 2) }, side: 2);
        var a = TinyModels.Eval(model, alone);
        var p = TinyModels.Eval(model, padded);
        Assert.Equal(new long[] { 2, 3 }, p.shape);
        KernelAssert.Close(p[0], a[0], 1e-5, 1e-4, $"{method}/{pooling}: padded row");
    }

    [Fact]
    public void NumericSequencesWithAPrependedClsStepArePaddingInvariantToo()
    {
        Torch.Seed();
        using var model = new SequenceModel(new EncoderConfig { NumericFeatures = 3, ModelDim = 16, NumHeads = 2, Pooling = Pooling.Cls, Outputs = 1, Dropout = 0 });
        FineTuningRegistry.Apply(model, "moment_probing", Small);
        var a = new Microsoft.ML.LinearAttention.Training.Example { Values = Enumerable.Range(0, 15).Select(i => (float)Math.Sin(i)).ToArray(), Length = 5 };
        var b = new Microsoft.ML.LinearAttention.Training.Example { Values = Enumerable.Range(0, 60).Select(i => (float)Math.Cos(i)).ToArray(), Length = 20 };
        using var one = Microsoft.ML.LinearAttention.Training.Batching.Collate(new[] { a }, CPU, 0, 3, 0, null, null);
        using var two = Microsoft.ML.LinearAttention.Training.Batching.Collate(new[] { a, b }, CPU, 0, 3, 0, null, null);
        KernelAssert.Close(TinyModels.Eval(model, two)[0], TinyModels.Eval(model, one)[0], 1e-5, 1e-4, "numeric CLS row");
    }

    [Theory]
    [InlineData("moment_probing")]
    [InlineData("psrp")]
    public void GradientsReachTheHeadAndPsrpOnly(string method)
    {
        Torch.Seed();
        using var model = new SequenceModel(TinyModels.Config());
        // PSRP with the reference's init (HeadFirst starts its up-projections at zero, so its down-projection gets no
        // gradient until they move).
        FineTuningRegistry.Apply(model, method, method == "psrp" ? new PsrpOptions { Probe = Small, HeadFirst = false } : Small);
        using var batch = TinyModels.Batch(6, 3, 9);
        model.train();
        nn.functional.cross_entropy(model.Forward(batch), batch.Labels!).backward();
        var all = ModelParameter.All(model);
        foreach (var p in all)
        {
            bool expected = p.Part == ModelPart.Head || (method == "psrp" && p.Name.Contains("ffn_recalibration"));
            Assert.True(expected == p.Parameter.requires_grad, $"{method}: {p.Name} requires_grad {p.Parameter.requires_grad}");
            if (expected) Assert.True(p.Parameter.grad is { } g && g.abs().sum().item<float>() > 0, $"{method}: {p.Name} got no gradient");
            else Assert.Null(p.Parameter.grad);
        }
        Assert.Contains(all, p => p.Name == "probe_head.conv1.weight");
        Assert.Contains(all, p => p.Name == "probe_head.classifier2.weight");
        Assert.DoesNotContain(all, p => p.Name.StartsWith("head_dense", StringComparison.Ordinal));
        if (method == "psrp") Assert.Contains(all, p => p.Name == "blocks.1.ffn_recalibration.up_bias.weight");
    }

    [Fact]
    public void PsrpRecalibratesTheFfnBranchAndZeroInitKeepsTheBlock()
    {
        Torch.Seed();
        using var model = new SequenceModel(TinyModels.Config(layers: 1));
        using var x = randn(2, 5, 16);
        var block = (EncoderBlock)Microsoft.ML.LinearAttention.FineTuning.ModuleSurgery.Find(model, "blocks.0");
        block.eval();
        using var _ = no_grad();
        var plain = block.forward(x, null);
        block.FfnRecalibration = new PsrpRecalibration(16, 4, zeroInitUp: true);
        KernelAssert.Close(block.forward(x, null), plain, 1e-6, 1e-6, "zero-initialised PSRP");
        block.FfnRecalibration = new PsrpRecalibration(16, 4);
        Assert.True((block.forward(x, null) - plain).abs().max().item<float>() > 1e-4, "PSRP at the reference init changes the block");
        Assert.Contains(block.named_parameters(), p => p.name == "ffn_recalibration.down.weight");
    }
}
