using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Softmax;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Text;

public sealed class EncoderTests
{
    private static Example Row(int length, int seed) => new()
    {
        Ids = Enumerable.Range(0, length).Select(i => 5 + (i * 7 + seed * 13) % 90).ToArray(),
        Segments = Enumerable.Range(0, length).Select(i => i < length / 2 ? 0 : 1).ToArray(),
        Side = new[] { seed * 0.5f, 1f },
        Length = length,
    };

    [Theory]
    [InlineData("linear", PositionEncoding.Rope, Pooling.Mean)]
    [InlineData("softmax", PositionEncoding.Learned, Pooling.Cls)]
    [InlineData("hedgehog", PositionEncoding.None, Pooling.Mean)]
    public void PaddingNeverChangesARowsOutput(string mixer, PositionEncoding position, Pooling pooling)
    {
        Torch.Seed();
        using var model = new SequenceModel(new EncoderConfig
        {
            VocabularySize = 100, PadId = 0, NumSegments = 2, ModelDim = 16, NumLayers = 2, NumHeads = 2, FfnMultiplier = 2,
            Position = position, MaxPositions = 64, Pooling = pooling, Mixer = mixer, SideFeatures = 2, Outputs = 3,
        });
        model.eval();
        using var _ = no_grad();
        var shortRow = Row(7, 1);
        var alone = Forward(model, new[] { shortRow });
        var padded = Forward(model, new[] { shortRow, Row(33, 2) });
        KernelAssert.Close(padded[0], alone[0], 1e-5, 1e-4, $"{mixer}/{position}/{pooling}: padded row");
    }

    [Fact]
    public void NumericSequencesArePaddingInvariantToo()
    {
        Torch.Seed();
        using var model = new SequenceModel(new EncoderConfig { NumericFeatures = 3, ModelDim = 16, NumHeads = 2, Pooling = Pooling.Cls, Outputs = 1 });
        model.eval();
        using var _ = no_grad();
        var a = new Example { Values = Enumerable.Range(0, 15).Select(i => (float)Math.Sin(i)).ToArray(), Length = 5 };
        var b = new Example { Values = Enumerable.Range(0, 60).Select(i => (float)Math.Cos(i)).ToArray(), Length = 20 };
        using var one = Batching.Collate(new[] { a }, CPU, 0, 3, 0, null, null);
        using var two = Batching.Collate(new[] { a, b }, CPU, 0, 3, 0, null, null);
        KernelAssert.Close(model.Forward(two)[0], model.Forward(one)[0], 1e-5, 1e-4, "numeric padded row");
    }

    private static Tensor Forward(SequenceModel model, IReadOnlyList<Example> rows)
    {
        using var batch = Batching.Collate(rows, CPU, 0, 0, 2, null, null);
        return model.Forward(batch);
    }

    [Fact]
    public void RotaryKeepsNormsAndDependsOnlyOnRelativePosition()
    {
        Torch.Seed();
        var q = randn(1, 1, 1, 8).expand(1, 1, 12, 8).contiguous();
        var k = randn(1, 1, 1, 8).expand(1, 1, 12, 8).contiguous();
        var rq = Rotary.Apply(q);
        var rk = Rotary.Apply(k);
        KernelAssert.Close(rq.square().sum(-1), q.square().sum(-1), 1e-5, 1e-5, "norm");
        var scores = rq.matmul(rk.transpose(-1, -2)).squeeze();   // [12, 12]
        KernelAssert.Close(scores.diagonal(offset: 2)[..8], scores.diagonal(offset: 2)[2..], 1e-4, 1e-4, "relative");
    }

    [Fact]
    public void ConfigurationWithAHybridPlanRoundTripsThroughJson()
    {
        var config = new EncoderConfig
        {
            VocabularySize = 10, NumLayers = 2, ModelDim = 16, NumHeads = 2, Outputs = 2,
            Layers = EncoderConfig.Plan(i => i == 0 ? new LayerMixer("softmax", new SoftmaxOptions { Window = 4 }) : new LayerMixer("linear"), 2),
        };
        var back = EncoderConfig.FromJson(config.ToJson());
        Assert.Equal(config.ToJson(), back.ToJson());
        Assert.Equal(4, ((SoftmaxOptions)back.MixerFor(0).Options).Window);
        Assert.Equal("linear", back.MixerFor(1).Name);
        var wrong = config with { Layers = config.Layers!.Take(1).ToList() };
        Assert.Contains("lists 1 layers but NumLayers is 2", Assert.Throws<ArgumentException>(() => wrong.Validate()).Message);
    }

    [Fact]
    public void ScheduleWarmsUpThenDecaysToTheFinalRatio()
    {
        Assert.Equal(0.1, LearningRateSchedule.At(0, 100, 10, 1.0, LearningRateDecay.Cosine, 0.1), 6);
        Assert.Equal(1.0, LearningRateSchedule.At(9, 100, 10, 1.0, LearningRateDecay.Cosine, 0.1), 6);
        Assert.Equal(0.1, LearningRateSchedule.At(100, 100, 10, 1.0, LearningRateDecay.Cosine, 0.1), 6);
        Assert.Equal(0.55, LearningRateSchedule.At(55, 100, 10, 1.0, LearningRateDecay.Linear, 0.1), 6);
        Assert.Equal(1.0, LearningRateSchedule.At(80, 100, 10, 1.0, LearningRateDecay.Constant, 0.1), 6);
    }

    [Fact]
    public void BucketingKeepsEveryRowOnceIsSeededAndCapsPaddedTokens()
    {
        var rows = Enumerable.Range(0, 100).Select(i => new Example { Ids = new int[1 + i % 37], Segments = new int[1 + i % 37], Length = 1 + i % 37, Label = i }).ToList();
        List<List<Example>> Run(int seed) => Batching.Bucketed(rows, 8, 120, 40, new Random(seed)).ToList();
        var a = Run(5);
        Assert.Equal(Enumerable.Range(0, 100).Select(i => (float)i), a.SelectMany(b => b).Select(e => e.Label).OrderBy(x => x));
        Assert.All(a, b => Assert.True(b.Count * b.Max(e => e.Length) <= 120 || b.Count == 1));
        Assert.Equal(a.SelectMany(b => b).Select(e => e.Label), Run(5).SelectMany(b => b).Select(e => e.Label));
        Assert.NotEqual(a.SelectMany(b => b).Select(e => e.Label), Run(6).SelectMany(b => b).Select(e => e.Label));
    }
}
