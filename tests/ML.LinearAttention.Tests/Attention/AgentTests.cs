using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Agent;
using Microsoft.ML.LinearAttention.Attention.VisionKit;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class AgentTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (batch = count), agents, grid (0 = text), dtype
        new object[] { new long[] { 41 }, 9, 0, ScalarType.Float32 },
        new object[] { new long[] { 45, 23, 3 }, 9, 0, ScalarType.Float32 },
        new object[] { new long[] { 17, 12 }, 4, 4, ScalarType.Float32 },
        new object[] { new long[] { 35, 14 }, 9, 0, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesNaiveIncludingPoolingAndBiases(long[] lengths, int n, int side, ScalarType dtype)
    {
        Torch.Seed();
        long t = lengths.Max();
        (int, int)? grid = side > 0 ? (side, side) : null;
        var mask = KernelAssert.LengthMask(lengths);
        var (q, k, v) = KernelAssert.Qkv(lengths, dtype, dv: 5);
        var gatherBias = KernelAssert.Random(new[] { 1, 2, (long)n, t }, dtype, scale: 0.3);
        var broadcastBias = KernelAssert.Random(new[] { 1, 2, t, (long)n }, dtype, scale: 0.3);
        KernelAssert.SameOutputsAndGradients(
            i =>
            {
                var (agents, valid) = AgentKernels.PoolAgents(i[0], mask, n, grid);
                return AgentKernels.Bidirectional(i[0], i[1], i[2], agents, valid, i[3], i[4], mask);
            },
            i =>
            {
                var (agents, valid) = AdaptivePool.PoolNaive(i[0], mask, n, grid);
                return AgentKernels.BidirectionalNaive(i[0], i[1], i[2], agents, valid, i[3], i[4], mask);
            },
            new[] { q, k, v, gatherBias, broadcastBias }, dtype, $"agent n={n} grid={side}", KernelAssert.HeadMask(mask));
    }

    [Theory]
    [InlineData(13)]
    [InlineData(4)]
    [InlineData(7)]
    public void BiasResizeMatchesLinearInterpolation(long length)
    {
        Torch.Seed();
        var table = torch.randn(3, 7);
        var expected = nn.functional.interpolate(table.unsqueeze(0), new[] { length }, mode: InterpolationMode.Linear, align_corners: false).squeeze(0);
        var w = AgentPositionBias.Weights(torch.tensor(new float[] { length }), length, 7, torch.CPU).squeeze(0);
        KernelAssert.Close(table.matmul(w.t()), expected, 1e-5, 1e-5, "linear resize");
        // On a grid the 7×7 table is resized bilinearly, like the reference's F.interpolate(mode='bilinear').
        var table2 = torch.randn(1, 2, 7, 7);
        var expected2 = nn.functional.interpolate(table2, new[] { length, 5L }, mode: InterpolationMode.Bilinear, align_corners: false);
        var resized = AgentPositionBias.Resize(table2.view(1, 2, 7, 7), null, 1, length * 5, ((int)length, 5));
        KernelAssert.Close(resized.view(1, 2, length, 5), expected2, 1e-5, 1e-5, "bilinear resize");
    }

    [Fact]
    public void MixerRespectsPaddingAndTrainsOnAGrid()
    {
        Torch.Seed();
        using var mixer = new AgentMixer(new MixerConfig(16, 2), new AgentOptions { NumAgents = 4 });
        MixerAssert.PaddingNeverLeaks(mixer, new long[] { 13, 6, 2 });
        MixerAssert.TrainsOnGrid(mixer, (4, 4), 17, new long[] { 17, 15 });
        using var defaults = new AgentMixer(new MixerConfig(16, 2), new AgentOptions());
        MixerAssert.PaddingNeverLeaks(defaults, new long[] { 60, 9 });
        using var ten = new AgentMixer(new MixerConfig(16, 2), new AgentOptions { NumAgents = 10 });
        ten.Grid = (3, 3);
        var ex = Assert.Throws<ArgumentException>(() => ten.forward(torch.randn(1, 9, 16), null));
        Assert.Contains("perfect square", ex.Message);
    }
}
