using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Van;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class VanTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (batch = count), grid (null = sequence), dilation, dtype
        new object[] { new long[] { 43 }, null!, 3, ScalarType.Float32 },
        new object[] { new long[] { 45, 27, 1 }, null!, 3, ScalarType.Float32 },
        new object[] { new long[] { 30, 22 }, new[] { 5, 6 }, 3, ScalarType.Float32 },
        new object[] { new long[] { 36, 31 }, new[] { 5, 7 }, 2, ScalarType.Float32 },            // one class token
        new object[] { new long[] { 37, 16 }, null!, 3, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesNaiveIncludingTheKernels(long[] lengths, int[]? grid, int dilation, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max(), c = 6;
        (int, int)? g = grid is null ? null : (grid[0], grid[1]);
        var mask = KernelAssert.LengthMask(lengths);
        var x = KernelAssert.Random(new[] { b, t, c }, dtype);
        var w0 = KernelAssert.Random(new[] { c, 1, 5, 5 }, dtype, scale: 0.3);
        var b0 = KernelAssert.Random(new[] { c }, dtype, scale: 0.3);
        var w1 = KernelAssert.Random(new[] { c, 1, 7, 7 }, dtype, scale: 0.2);
        var b1 = KernelAssert.Random(new[] { c }, dtype, scale: 0.3);
        KernelAssert.SameOutputsAndGradients(
            i => VanKernels.LargeKernel(i[0], i[1], i[2], i[3], i[4], dilation, mask, g),
            i => VanKernels.LargeKernelNaive(i[0], i[1], i[2], i[3], i[4], dilation, mask, g),
            new[] { x, w0, b0, w1, b1 }, dtype, $"lka d={dilation} grid={g}", mask.unsqueeze(-1));
    }

    [Fact]
    public void ReferenceKernelsDecomposeA21KernelIntoA23By23Field()
    {
        var x = torch.zeros(1, 41 * 41, 1);
        x[0, 20 * 41 + 20, 0] = 1;                                                       // one pixel in the middle
        var y = VanKernels.LargeKernel(x, torch.ones(1, 1, 5, 5), null, torch.ones(1, 1, 7, 7), null, 3, null, (41, 41));
        var reached = (y.view(41, 41).abs() > 0).nonzero();
        Assert.Equal(9, reached[.., 0].min().item<long>());                               // ±(2 + 3·3): rows 9..31
        Assert.Equal(31, reached[.., 0].max().item<long>());
        Assert.Equal(9, reached[.., 1].min().item<long>());
    }

    [Fact]
    public void MixerRespectsPaddingAndTrainsOnAGrid()
    {
        Torch.Seed();
        using var mixer = new VanMixer(new MixerConfig(16, 2), new VanOptions());
        MixerAssert.PaddingNeverLeaks(mixer, new long[] { 11, 5, 2 });
        MixerAssert.TrainsOnGrid(mixer, (3, 3), 10, new long[] { 10, 8 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new VanMixer(new MixerConfig(16, 2), new VanOptions { LocalKernel = 4 }));
    }
}
