using Microsoft.ML.LinearAttention.Attention.SimpleGla;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class SimpleGlaTests
{
    [Theory]
    [InlineData(new long[] { 50, 33, 1 }, ScalarType.Float32, 16.0)]
    [InlineData(new long[] { 37 }, ScalarType.Float32, 1.0)]
    [InlineData(new long[] { 41, 20 }, ScalarType.BFloat16, 16.0)]
    public void KernelsMatchTheirNaiveTwinsIncludingGateGradients(long[] lengths, ScalarType dtype, double normalizer)
    {
        Tensor G(Tensor pre) => SimpleGlaKernels.Gate(pre, normalizer);
        DecayKernelTests.GatedKernelsMatchNaive(lengths, dtype, perChannel: false, "simple_gla",
            (i, m) => SimpleGlaKernels.Causal(i[0], i[1], i[2], G(i[3]), m, chunk: 16),
            (i, m) => SimpleGlaKernels.CausalRecurrent(i[0], i[1], i[2], G(i[3]), m),
            (i, m) => SimpleGlaKernels.Bidirectional(i[0], i[1], i[2], G(i[3]), G(i[4]), m, chunk: 16),
            (i, m) => SimpleGlaKernels.BidirectionalNaive(i[0], i[1], i[2], G(i[3]), G(i[4]), m));
    }

    [Fact]
    public void GateIsLogsigmoidOverNormalizer()
    {
        var pre = torch.tensor(new[] { -3f, 0f, 4f });
        KernelAssert.Close(SimpleGlaKernels.Gate(pre), nn.functional.logsigmoid(pre) / 16, 1e-7, 1e-6, "gate");
        Assert.Throws<ArgumentException>(() => SimpleGlaKernels.Causal(torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2), null));
    }

    [Fact]
    public void MixerIsCausalOrBidirectionalAndIgnoresPadding() => DecayMixerAssert.CausalityAndPadding("simple_gla");
}
