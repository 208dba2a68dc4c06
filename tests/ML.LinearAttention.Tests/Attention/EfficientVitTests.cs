using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.EfficientVit;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class EfficientVitTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        new object[] { new long[] { 41 }, ScalarType.Float32 },
        new object[] { new long[] { 45, 22, 1 }, ScalarType.Float32 },
        new object[] { new long[] { 33, 20 }, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesNaiveOutputsAndGradients(long[] lengths, ScalarType dtype)
    {
        Torch.Seed();
        var mask = KernelAssert.LengthMask(lengths);
        var (q, k, v) = KernelAssert.Qkv(lengths, dtype);
        KernelAssert.SameOutputsAndGradients(
            i => EfficientVitKernels.Bidirectional(nn.functional.relu(i[0]), nn.functional.relu(i[1]), i[2], mask),
            i => EfficientVitKernels.BidirectionalNaive(nn.functional.relu(i[0]), nn.functional.relu(i[1]), i[2], mask),
            new[] { q, k, v }, dtype, "efficientvit", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void MixerRespectsPaddingAndItsMultiScaleBranchTrainsOnAGrid()
    {
        Torch.Seed();
        using var mixer = new EfficientVitMixer(new MixerConfig(16, 2), new EfficientVitOptions());
        MixerAssert.PaddingNeverLeaks(mixer, new long[] { 12, 6, 3 });
        MixerAssert.TrainsOnGrid(mixer, (3, 5), 15, new long[] { 15, 9 });
        using var single = new EfficientVitMixer(new MixerConfig(16, 2), new EfficientVitOptions { AggregationKernel = 0 });
        MixerAssert.PaddingNeverLeaks(single, new long[] { 7, 4 });
    }
}
