using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Lolcats;
using Microsoft.ML.LinearAttention.Attention.Softmax;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class LolcatsTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths, causal, terraced, window, affine factors, dtype
        new object[] { new long[] { 37 }, false, false, 5, false, ScalarType.Float32 },
        new object[] { new long[] { 37 }, true, false, 5, false, ScalarType.Float32 },
        new object[] { new long[] { 45, 30, 1 }, true, false, 4, true, ScalarType.Float32 },
        new object[] { new long[] { 45, 30, 1 }, false, true, 6, false, ScalarType.Float32 },
        new object[] { new long[] { 41, 20 }, true, true, 5, false, ScalarType.Float32 },
        new object[] { new long[] { 19, 12 }, false, false, 64, false, ScalarType.Float32 },
        new object[] { new long[] { 70, 33 }, false, false, 8, false, ScalarType.BFloat16 },
        new object[] { new long[] { 70, 33 }, true, false, 8, true, ScalarType.BFloat16 },
    };

    /// <summary>q, k, v, Hedgehog weights (q, k), window-factor logits — all with gradients.</summary>
    private static Tensor[] Inputs(long[] lengths, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        return new[]
        {
            KernelAssert.Random(new[] { b, 2, t, 8 }, dtype),
            KernelAssert.Random(new[] { b, 2, t, 8 }, dtype),
            KernelAssert.Random(new[] { b, 2, t, 6 }, dtype),
            KernelAssert.Random(new long[] { 2, 8, 4 }, dtype, scale: 0.5),
            KernelAssert.Random(new long[] { 2, 8, 4 }, dtype, scale: 0.5),
            KernelAssert.Random(new long[] { 2 }, ScalarType.Float32),
        };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesNaiveIncludingFeatureMapAndWindowFactorGradients(long[] lengths, bool causal, bool terraced, int window, bool affine, ScalarType dtype)
    {
        var x = Inputs(lengths, dtype);
        var mask = KernelAssert.LengthMask(lengths);
        Tensor Run(Tensor[] i, bool fast)
        {
            var gamma = i[5].sigmoid();
            var lambda = affine ? 1 - gamma : null;
            var fq = HedgehogFeatureMap.Map(i[0], i[3]);
            var fk = HedgehogFeatureMap.Map(i[1], i[4]);
            return fast
                ? LolcatsKernels.Attention(i[0], i[1], fq, fk, i[2], gamma, lambda, mask, window, causal, terraced)
                : LolcatsKernels.AttentionNaive(i[0], i[1], fq, fk, i[2], gamma, lambda, mask, window, causal, terraced);
        }
        KernelAssert.SameOutputsAndGradients(i => Run(i, true), i => Run(i, false), x, dtype,
            $"lolcats causal={causal} terraced={terraced} window={window}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void WindowCoveringEveryKeyWithNoLinearWeightIsSoftmaxAttention()
    {
        Torch.Seed();
        var q = torch.randn(2, 2, 11, 8);
        var k = torch.randn(2, 2, 11, 8);
        var v = torch.randn(2, 2, 11, 8);
        var f = torch.rand(2, 2, 11, 4);
        var mask = KernelAssert.LengthMask(11, 6);
        var o = LolcatsKernels.Attention(q, k, f, f, v, torch.full(2, 0.3), torch.zeros(2), mask, window: 16);
        KernelAssert.Close(o, SoftmaxKernels.AttentionNaive(q, k, v, mask), 1e-5, 1e-4, "window ⊇ all keys", KernelAssert.HeadMask(mask));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GradientsStayFiniteWhenBlockPaddingRowsSeeOnlyPaddedKeys(bool causal)
    {
        // T = 13 is padded to 16 with W = 4; in row 1 (length 9) the extra rows' windows hold only padded keys, and
        // zero features there give them no linear terms either: they must not produce 0/0.
        Torch.Seed();
        var q = torch.randn(2, 2, 13, 8).requires_grad_(true);
        var k = torch.randn(2, 2, 13, 8).requires_grad_(true);
        var v = torch.randn(2, 2, 13, 8).requires_grad_(true);
        var fq = torch.rand(2, 2, 13, 6).requires_grad_(true);
        var fk = torch.rand(2, 2, 13, 6).requires_grad_(true);
        var logits = torch.zeros(2).requires_grad_(true);
        var y = LolcatsKernels.Attention(q, k, fq, fk, v, logits.sigmoid(), null, KernelAssert.LengthMask(13, 9), 4, causal);
        y.square().sum().backward();
        foreach (var p in new[] { q, k, v, fq, fk, logits })
            Assert.False(p.grad!.isnan().any().item<bool>(), "NaN gradient");
    }

    [Fact]
    public void MixerTrainsFeatureMapsAndWindowFactorsInitialisedToOneTenth()
    {
        Torch.Seed();
        using var mixer = (LolcatsMixer)MixerRegistry.Create("lolcats", new MixerConfig(32, 4, Causal: true), new LolcatsOptions { Window = 4, FeatureDim = 6 });
        KernelAssert.Close(mixer.WindowFactors.sigmoid(), torch.full(4, 0.1), 1e-4, 0, "γ init");
        var y = mixer.forward(torch.randn(2, 13, 32), KernelAssert.LengthMask(13, 9));
        y.square().sum().backward();
        Assert.True(mixer.WindowFactors.grad is not null && mixer.WindowFactors.grad.abs().sum().item<float>() > 0, "window factors get gradients");
        Assert.True(mixer.QueryMap.Weight.grad is not null && mixer.KeyMap.Weight.grad is not null, "feature maps get gradients");
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => MixerRegistry.Create("lolcats", new MixerConfig(32, 4), new LolcatsOptions { Window = 0 }));
        Assert.Contains("Window must be positive", ex.Message);
    }
}
