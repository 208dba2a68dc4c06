using Microsoft.ML.LinearAttention.Attention.RetNet;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class RetNetTests
{
    [Fact]
    public void DecaysAreOneMinusTwoToMinusFiveMinusH()
    {
        var g = RetNetKernels.LogDecays(4);
        var expected = torch.tensor(new[] { 1 - 1 / 32.0, 1 - 1 / 64.0, 1 - 1 / 128.0, 1 - 1 / 256.0 }).log().to(ScalarType.Float32);
        KernelAssert.Close(g, expected, 1e-7, 1e-6, "log gamma");
    }

    [Theory]
    [InlineData(new long[] { 50, 33, 1 }, ScalarType.Float32)]
    [InlineData(new long[] { 37 }, ScalarType.Float32)]
    [InlineData(new long[] { 41, 20 }, ScalarType.BFloat16)]
    public void KernelsMatchTheirNaiveTwins(long[] lengths, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        var x = new[]
        {
            KernelAssert.Random(new[] { b, 2, t, 8 }, dtype), KernelAssert.Random(new[] { b, 2, t, 8 }, dtype),
            KernelAssert.Random(new[] { b, 2, t, 6 }, dtype),
        };
        var mask = KernelAssert.LengthMask(lengths);
        KernelAssert.SameOutputsAndGradients(
            i => RetNetKernels.Causal(i[0], i[1], i[2], mask, chunk: 16),
            i => RetNetKernels.CausalRecurrent(i[0], i[1], i[2], mask),
            x, dtype, "retnet causal", KernelAssert.HeadMask(mask));
        KernelAssert.SameOutputsAndGradients(
            i => RetNetKernels.Bidirectional(i[0], i[1], i[2], mask, chunk: 16),
            i => RetNetKernels.BidirectionalNaive(i[0], i[1], i[2], mask),
            x, dtype, "retnet bidirectional", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void BidirectionalMaskIsSymmetricGammaPowerDistance()
    {
        Torch.Seed();
        // With one-hot keys and q = k the weight of key s at query t is γ^|t−s| (times q·k = 1 on the diagonal only).
        var e = torch.eye(6).view(1, 1, 6, 6);
        var v = torch.arange(6, dtype: ScalarType.Float32).view(1, 1, 6, 1);
        var q = torch.ones(1, 1, 6, 6);
        var o = RetNetKernels.Bidirectional(q, e, v, null, scale: 1.0);
        double gamma = 1 - 1 / 32.0;
        var expected = torch.tensor(Enumerable.Range(0, 6).Select(t => (float)Enumerable.Range(0, 6).Sum(s => Math.Pow(gamma, Math.Abs(t - s)) * s)).ToArray()).view(1, 1, 6, 1);
        KernelAssert.Close(o, expected, 1e-5, 1e-5, "gamma^|t-s|");
    }

    [Fact]
    public void MixerIsCausalOrBidirectionalAndIgnoresPadding() => DecayMixerAssert.CausalityAndPadding("retnet");

    [Fact]
    public void MixerOptionsAreChecked()
    {
        var ex = Assert.Throws<ArgumentException>(() => new RetNetMixer(new Microsoft.ML.LinearAttention.Attention.MixerConfig(32, 4), new RetNetOptions { ExpandK = 0.3 }));
        Assert.Contains("ExpandK", ex.Message);
    }
}
