using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.InLine;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class InLineTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (batch = count), feature map, dtype
        new object[] { new long[] { 41 }, "identity", ScalarType.Float32 },
        new object[] { new long[] { 45, 29, 2 }, "identity", ScalarType.Float32 },
        new object[] { new long[] { 35, 18 }, "relu", ScalarType.Float32 },
        new object[] { new long[] { 33, 21 }, "identity", ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesNaiveOutputsAndGradients(long[] lengths, string map, ScalarType dtype)
    {
        Torch.Seed();
        var mask = KernelAssert.LengthMask(lengths);
        var (q, k, v) = KernelAssert.Qkv(lengths, dtype, dv: 5);
        KernelAssert.SameOutputsAndGradients(
            i => InLineKernels.Bidirectional(InLineKernels.FeatureMap(map, i[0]), InLineKernels.FeatureMap(map, i[1]), i[2], mask),
            i => InLineKernels.BidirectionalNaive(InLineKernels.FeatureMap(map, i[0]), InLineKernels.FeatureMap(map, i[1]), i[2], mask),
            new[] { q, k, v }, dtype, $"inline {map}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void WeightsSumToOneEvenWithNegativeFeatures()
    {
        Torch.Seed();
        var mask = KernelAssert.LengthMask(10, 3);
        var o = InLineKernels.Bidirectional(torch.randn(2, 2, 10, 4), torch.randn(2, 2, 10, 4), torch.full(2, 2, 10, 3, -1.5f), mask);
        KernelAssert.Close(o, torch.full(2, 2, 10, 3, -1.5f), 1e-5, 1e-5, "rows sum to one", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void MixerRespectsPaddingAndItsLocalResidualTrainsIn1DAnd2D()
    {
        Torch.Seed();
        using var mixer = new InLineMixer(new MixerConfig(16, 2), new InLineOptions());
        MixerAssert.PaddingNeverLeaks(mixer, new long[] { 12, 7, 1 });
        // Grid 3×4 after one class token: the predicted 3×3 kernel is used in full.
        MixerAssert.TrainsOnGrid(mixer, (3, 4), 13, new long[] { 13, 10 });
        using var exp = new InLineMixer(new MixerConfig(16, 4), new InLineOptions { FeatureMap = "exp", ResidualKernel = 0 });
        MixerAssert.PaddingNeverLeaks(exp, new long[] { 9, 4 });
    }

    [Fact]
    public void BadOptionsAreReported()
    {
        var ex = Assert.Throws<ArgumentException>(() => new InLineMixer(new MixerConfig(16, 2), new InLineOptions { FeatureMap = "softmax" }));
        Assert.Contains("identity", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new InLineMixer(new MixerConfig(16, 2), new InLineOptions { ResidualKernel = 2 }));
    }
}
