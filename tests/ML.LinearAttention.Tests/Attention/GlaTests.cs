using Microsoft.ML.LinearAttention.Attention.Gla;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class GlaTests
{
    [Theory]
    [InlineData(new long[] { 50, 33, 1 }, ScalarType.Float32, 16.0)]
    [InlineData(new long[] { 37 }, ScalarType.Float32, 1.0)]
    [InlineData(new long[] { 41, 20 }, ScalarType.BFloat16, 16.0)]
    public void KernelsMatchTheirNaiveTwinsIncludingGateGradients(long[] lengths, ScalarType dtype, double normalizer)
    {
        Tensor G(Tensor pre) => GlaKernels.Gate(pre, normalizer);
        DecayKernelTests.GatedKernelsMatchNaive(lengths, dtype, perChannel: true, "gla",
            (i, m) => GlaKernels.Causal(i[0], i[1], i[2], G(i[3]), m, chunk: 32),
            (i, m) => GlaKernels.CausalRecurrent(i[0], i[1], i[2], G(i[3]), m),
            (i, m) => GlaKernels.Bidirectional(i[0], i[1], i[2], G(i[3]), G(i[4]), m, chunk: 48),
            (i, m) => GlaKernels.BidirectionalNaive(i[0], i[1], i[2], G(i[3]), G(i[4]), m));
    }

    [Fact]
    public void GateClampsAndChecksItsShape()
    {
        var pre = torch.tensor(new[] { -100f, 0f });
        KernelAssert.Close(GlaKernels.Gate(pre, 1.0, clampMin: -5), torch.tensor(new[] { -5f, (float)Math.Log(0.5) }), 1e-6, 1e-6, "clamped gate");
        var q = torch.zeros(1, 1, 3, 2);
        var ex = Assert.Throws<ArgumentException>(() => GlaKernels.Causal(q, q, q, torch.zeros(1, 1, 3), null));
        Assert.Contains("SimpleGlaKernels", ex.Message);
    }

    [Fact]
    public void MixerIsCausalOrBidirectionalAndIgnoresPadding() => DecayMixerAssert.CausalityAndPadding("gla");
}
