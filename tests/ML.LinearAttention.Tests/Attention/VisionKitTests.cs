using Microsoft.ML.LinearAttention.Attention.VisionKit;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class VisionKitTests
{
    [Theory]
    [InlineData(false, ScalarType.Float32)]
    [InlineData(true, ScalarType.Float32)]
    [InlineData(false, ScalarType.BFloat16)]
    [InlineData(true, ScalarType.BFloat16)]
    public void DepthwiseConvMatchesNaiveIn1DAnd2D(bool onGrid, ScalarType dtype)
    {
        Torch.Seed();
        // Grid 4×5 plus one class token = 21 tokens; the second row is padded after 17 tokens.
        (int, int)? grid = onGrid ? (4, 5) : null;
        long[] lengths = onGrid ? new long[] { 21, 17 } : new long[] { 23, 10 };
        var mask = KernelAssert.LengthMask(lengths);
        var x = KernelAssert.Random(new[] { 2L, lengths.Max(), 6 }, dtype);
        var w = KernelAssert.Random(new long[] { 6, 1, 5, 5 }, dtype, scale: 0.3);
        var bias = KernelAssert.Random(new long[] { 6 }, dtype, scale: 0.3);
        KernelAssert.SameOutputsAndGradients(
            i => LocalConv.Depthwise(i[0], i[1], i[2], mask, grid),
            i => LocalConv.DepthwiseNaive(i[0], i[1], i[2], mask, grid),
            new[] { x, w, bias }, dtype, $"depthwise grid={onGrid}", mask.unsqueeze(-1));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PerSampleConvMatchesNaive(bool onGrid)
    {
        Torch.Seed();
        (int, int)? grid = onGrid ? (3, 3) : null;
        long[] lengths = { 9, 6, 1 };
        var mask = KernelAssert.LengthMask(lengths);
        var x = KernelAssert.Random(new long[] { 3, 9, 4 }, ScalarType.Float32);
        var w = KernelAssert.Random(new long[] { 3, 4, 3, 3 }, ScalarType.Float32);
        KernelAssert.SameOutputsAndGradients(
            i => LocalConv.DepthwisePerSample(i[0], i[1], null, mask, grid),
            i => LocalConv.DepthwisePerSampleNaive(i[0], i[1], null, mask, grid),
            new[] { x, w }, ScalarType.Float32, $"per-sample depthwise grid={onGrid}", mask.unsqueeze(-1));
    }

    [Fact]
    public void PaddedTokensNeverReachRealTokensThroughTheConv()
    {
        Torch.Seed();
        var mask = KernelAssert.LengthMask(7, 4);
        var x = torch.randn(2, 7, 3);
        var w = torch.randn(3, 1, 5, 5);
        var y = LocalConv.Depthwise(x, w, null, mask, null);
        var x2 = x.clone(); x2[1, 4.., ..] = torch.full(new long[] { 3, 3 }, 1e4f);
        KernelAssert.Close(LocalConv.Depthwise(x2, w, null, mask, null), y, 1e-6, 1e-6, "padding leak");
        // Sequence mode uses the centre row of the k×k kernel: a kernel that is zero there gives zero.
        var w0 = w.clone(); w0[.., .., 2, ..] = torch.zeros(3, 1, 5);
        Assert.Equal(0.0, LocalConv.Depthwise(x, w0, null, null, null).abs().max().item<float>());
    }

    [Fact]
    public void GridThatDoesNotFitIsReported()
    {
        var ex = Assert.Throws<ArgumentException>(() => LocalConv.Depthwise(torch.zeros(1, 8, 2), torch.zeros(2, 1, 3, 3), null, null, (3, 3)));
        Assert.Contains("3×3", ex.Message);
    }

    [Fact]
    public void RopeScoresDependOnRelativePositionOnly()
    {
        Torch.Seed();
        var (cos, sin) = Rope.Tables(12, 8, null, torch.CPU);
        var q = torch.randn(8).expand(12, 8);
        var k = torch.randn(8).expand(12, 8);
        var s = Rope.Apply(q, cos, sin).matmul(Rope.Apply(k, cos, sin).t());
        KernelAssert.Close(s.diagonal(2), s[0, 2].expand(10), 1e-5, 1e-5, "shift invariance along the diagonal");
        // On a grid, moving both tokens by one row leaves the score unchanged; class token is not rotated.
        var (gc, gs) = Rope.Tables(1 + 3 * 4, 8, (3, 4), torch.CPU);
        var qq = Rope.Apply(torch.randn(8).expand(13, 8), gc, gs);
        var kk = Rope.Apply(torch.randn(8).expand(13, 8), gc, gs);
        var g = qq.matmul(kk.t());
        KernelAssert.Close(g[1 + 1, 1 + 2], g[1 + 5, 1 + 6], 1e-5, 1e-5, "row shift invariance");
        KernelAssert.Close(gc[0], torch.ones(8), 0, 0, "class token unrotated");
        Assert.Throws<ArgumentException>(() => Rope.Tables(4, 6, (2, 2), torch.CPU));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AdaptivePoolUsesRealTokensOnlyAndMatchesNaive(bool onGrid)
    {
        Torch.Seed();
        (int, int)? grid = onGrid ? (4, 6) : null;
        long[] lengths = onGrid ? new long[] { 25, 14 } : new long[] { 19, 5, 3 };
        int m = onGrid ? 4 : 4;
        var mask = KernelAssert.LengthMask(lengths);
        long b = lengths.Length, t = lengths.Max();
        var x = torch.randn(b, 2, t, 3);
        var (w, valid) = AdaptivePool.Weights(mask, b, t, m, grid, torch.CPU);
        var pooled = AdaptivePool.Pool(x, w);
        var (naive, naiveValid) = AdaptivePool.PoolNaive(x, mask, m, grid);
        KernelAssert.Close(pooled, naive, 1e-5, 1e-5, "pooled tokens");
        Assert.True(valid.eq(naiveValid).all().item<bool>());
        // Pads never contribute.
        Assert.Equal(0.0, (w * mask.logical_not().unsqueeze(1)).abs().sum().item<float>());
        Assert.Throws<ArgumentException>(() => AdaptivePool.Weights(null, 1, 25, 5, (5, 5), torch.CPU));
    }
}
