using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Focused;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class FocusedTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (batch = count), focusing factor, dtype
        new object[] { new long[] { 43 }, 3.0, ScalarType.Float32 },
        new object[] { new long[] { 45, 27, 1 }, 3.0, ScalarType.Float32 },
        new object[] { new long[] { 30, 19 }, 2.0, ScalarType.Float32 },
        new object[] { new long[] { 37, 16 }, 3.0, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesNaiveIncludingTheLearnedScale(long[] lengths, double p, ScalarType dtype)
    {
        Torch.Seed();
        var mask = KernelAssert.LengthMask(lengths);
        var (q, k, v) = KernelAssert.Qkv(lengths, dtype, dv: 5);
        var scale = KernelAssert.Random(new long[] { 16 }, ScalarType.Float32, scale: 0.5);
        KernelAssert.SameOutputsAndGradients(
            i => FocusedKernels.Bidirectional(i[0], i[1], i[2], i[3], mask, p),
            i => FocusedKernels.BidirectionalNaive(i[0], i[1], i[2], i[3], mask, p),
            new[] { q, k, v, scale }, dtype, $"focused p={p}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void FocusedMapKeepsTheNormAndSharpensTheDirection()
    {
        Torch.Seed();
        var x = torch.randn(1, 2, 5, 4);
        var scale = torch.zeros(8);
        var phi = FocusedKernels.FeatureMap(x, scale, 3);
        var relu = (nn.functional.relu(x) + 1e-6) / nn.functional.softplus(scale).view(1, 2, 1, 4);
        var dims = new long[] { 1, 3 };
        KernelAssert.Close(phi.square().sum(dims).sqrt(), relu.square().sum(dims).sqrt(), 1e-5, 1e-5, "norm kept");
        // Sharper: the largest channel's share of the norm grows.
        var share = phi.amax(dims) / phi.square().sum(dims).sqrt();
        var share0 = relu.amax(dims) / relu.square().sum(dims).sqrt();
        Assert.True((share >= share0 - 1e-6).all().item<bool>());
    }

    [Fact]
    public void MixerRespectsPaddingAndTrainsOnAGrid()
    {
        Torch.Seed();
        using var mixer = new FocusedMixer(new MixerConfig(16, 2), new FocusedOptions());
        MixerAssert.PaddingNeverLeaks(mixer, new long[] { 11, 5, 2 });
        MixerAssert.TrainsOnGrid(mixer, (3, 3), 10, new long[] { 10, 8 });
        using var withPe = new FocusedMixer(new MixerConfig(16, 2), new FocusedOptions { PositionalEncodingLength = 12 });
        MixerAssert.PaddingNeverLeaks(withPe, new long[] { 12, 6 });
        var ex = Assert.Throws<ArgumentException>(() => withPe.forward(torch.randn(1, 13, 16), null));
        Assert.Contains("PositionalEncodingLength", ex.Message);
    }
}
