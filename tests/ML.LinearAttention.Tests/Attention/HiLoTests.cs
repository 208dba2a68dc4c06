using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.HiLo;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class HiLoTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (batch = count), grid (null = sequence), window, dtype
        new object[] { new long[] { 43 }, null!, 2, ScalarType.Float32 },
        new object[] { new long[] { 45, 27, 1 }, null!, 2, ScalarType.Float32 },
        new object[] { new long[] { 30, 19 }, null!, 3, ScalarType.Float32 },
        new object[] { new long[] { 30, 22 }, new[] { 5, 6 }, 2, ScalarType.Float32 },            // 2D windows, no class token
        new object[] { new long[] { 36, 31 }, new[] { 5, 7 }, 2, ScalarType.Float32 },            // 1 class token, partial windows
        new object[] { new long[] { 37, 16 }, null!, 2, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesNaiveForBothHalves(long[] lengths, int[]? grid, int window, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        (int, int)? g = grid is null ? null : (grid[0], grid[1]);
        var mask = KernelAssert.LengthMask(lengths);
        var q = KernelAssert.Random(new[] { b, 2, t, 8 }, dtype);
        var k = KernelAssert.Random(new[] { b, 2, t, 8 }, dtype);
        var v = KernelAssert.Random(new[] { b, 2, t, 5 }, dtype);
        KernelAssert.SameOutputsAndGradients(
            i => HiLoKernels.LocalWindow(i[0], i[1], i[2], mask, g, window),
            i => HiLoKernels.LocalWindowNaive(i[0], i[1], i[2], mask, g, window),
            new[] { q, k, v }, dtype, $"hi-fi s={window} grid={g}", KernelAssert.HeadMask(mask));
        KernelAssert.SameOutputsAndGradients(
            i => HiLoKernels.PooledGlobal(i[0], i[1], i[2], mask, g, window),
            i => HiLoKernels.PooledGlobalNaive(i[0], i[1], i[2], mask, g, window),
            new[] { q, k, v }, dtype, $"lo-fi s={window} grid={g}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void WindowsFollowTheGridAndWindowOneIsPlainAttention()
    {
        // 4 × 4 grid, s = 2: four 2 × 2 windows in row-major order
        Assert.Equal(new[] { 0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3 }, HiLoKernels.WindowIds(16, (4, 4), 2));
        // a class token forms window 0
        Assert.Equal(new[] { 0, 1, 1, 2, 1, 1, 2 }, HiLoKernels.WindowIds(7, (2, 3), 2));
        Torch.Seed();
        var q = torch.randn(1, 2, 9, 4);
        var k = torch.randn(1, 2, 9, 4);
        var v = torch.randn(1, 2, 9, 4);
        var full = nn.functional.softmax(q.matmul(k.transpose(-1, -2)) / 2.0, -1).matmul(v);
        KernelAssert.Close(HiLoKernels.PooledGlobal(q, k, v, null, (3, 3), 1), full, 1e-5, 1e-5, "s = 1 pools nothing");
        KernelAssert.Close(HiLoKernels.LocalWindow(q, k, v, null, null, 3), full, 1e-5, 1e-5, "one window of 9 tokens is full attention");
    }

    [Fact]
    public void MixerSplitsHeadsRespectsPaddingAndTrainsOnAGrid()
    {
        Torch.Seed();
        using var mixer = new HiLoMixer(new MixerConfig(16, 4), new HiLoOptions());
        Assert.Equal((1, 3), (mixer.HiFiHeads, mixer.LoFiHeads));
        MixerAssert.PaddingNeverLeaks(mixer, new long[] { 11, 5, 2 });
        MixerAssert.TrainsOnGrid(mixer, (3, 3), 10, new long[] { 10, 8 });
        using var plain = new HiLoMixer(new MixerConfig(16, 2), new HiLoOptions { WindowSize = 1 });
        Assert.Equal((0, 2), (plain.HiFiHeads, plain.LoFiHeads));
        Assert.Throws<ArgumentOutOfRangeException>(() => new HiLoMixer(new MixerConfig(16, 2), new HiLoOptions { Alpha = 1.5 }));
    }
}
