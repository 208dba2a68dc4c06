using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// Hedgehog's projection + map kernels: on the CPU the libtorch path (the GPU kernels are checked against the naive
/// twin by `bench kernels --verify-fused` and tests/FusedKernelEmulator), the reasons it declines, and its grid.
/// FusedLinearAttentionTests compiles its CUDA source.
/// </summary>
public class FusedHedgehogProjectionTests
{
    [Fact]
    public void OnTheCpuItIsTheNaiveMapWithGradients()   // the naive twin computes in fp32
    {
        torch.manual_seed(3);
        var x = torch.randn(2, 3, 5, 16, dtype: ScalarType.Float64).requires_grad_(true);
        var w = torch.randn(3, 16, 8, dtype: ScalarType.Float64).requires_grad_(true);
        var phi = FusedHedgehogProjection.Apply(x, w);
        var naive = HedgehogFeatureMap.MapNaive(x, w);
        Assert.Equal(new long[] { 2, 3, 5, 16 }, phi.shape);
        Assert.True(phi.allclose(naive, rtol: 1e-5, atol: 1e-6), $"max diff {(phi - naive).abs().max().item<double>()}");
        var up = torch.randn_like(phi);
        var g = torch.autograd.grad(new[] { phi }, new[] { x, w }, new[] { up });
        var gn = torch.autograd.grad(new[] { naive }, new[] { x, w }, new[] { up });
        Assert.True(g[0].allclose(gn[0], rtol: 1e-4, atol: 1e-5));
        Assert.True(g[1].allclose(gn[1], rtol: 1e-4, atol: 1e-5));
    }

    [Theory]
    [InlineData(new long[] { 2, 3, 5, 16 }, new long[] { 2, 16, 8 })]   // heads differ
    [InlineData(new long[] { 2, 3, 5, 16 }, new long[] { 3, 12, 8 })]   // head dims differ
    [InlineData(new long[] { 3, 5, 16 }, new long[] { 3, 16, 8 })]      // x not split into heads
    public void MismatchedShapesAreRefusedWithBothShapes(long[] xShape, long[] wShape)
    {
        var e = Assert.Throws<ArgumentException>(() => FusedHedgehogProjection.Apply(torch.zeros(xShape), torch.zeros(wShape)));
        Assert.Contains($"x [{string.Join(", ", xShape)}]", e.Message);
        Assert.Contains($"weight [{string.Join(", ", wShape)}]", e.Message);
        Assert.Contains("[B, H, T, D]", e.Message);
    }

    [Fact]
    public void ItSaysWhyItDoesNotRun()
    {
        var x = torch.zeros(1, 2, 4, 64, dtype: ScalarType.BFloat16);
        Assert.Contains("CUDA", FusedHedgehogProjection.UnavailableReason(x, torch.zeros(2, 64, 64, dtype: ScalarType.BFloat16)));
    }

    [Theory]
    [InlineData(32768, 12, 528, 44)]    // T = 512 × 64 rows per head, one wave of 528 resident blocks: 44 per head
    [InlineData(32768, 24, 396, 16)]    // both maps (2H = 24) at three blocks per SM: 17 × 24 = 408 would spill past the wave
    [InlineData(100, 12, 528, 2)]       // two tiles per head: at most one block per tile
    [InlineData(1, 1, 528, 1)]
    [InlineData(32768, 1000, 264, 1)]   // more heads than resident blocks: still one per head
    public void BlocksPerHeadFillOneWaveAndNeverExceedTheTiles(long rowsPerHead, long heads, long resident, int expected)
    {
        Assert.Equal(expected, FusedHedgehogProjection.BlocksPerHead(rowsPerHead, heads, resident));
    }

    [Fact]
    public void SharedMemoryFitsTheDefaultLimitAtHedgehogsDefaultWidth()
    {
        Assert.True(FusedHedgehogProjection.ForwardBytes(64, 64) <= 48 * 1024, "the forward runs without the opt-in at D = F = 64");
        Assert.True(FusedHedgehogProjection.BackwardBytes(FusedHedgehogProjection.MaxDim, FusedHedgehogProjection.MaxDim) <= 227 * 1024,
            "the widest backward fits an sm_80/sm_90 block's opt-in shared memory");
    }

    [Theory]
    [InlineData("3,2", 3, 2)]
    [InlineData("1,1", 1, 1)]
    [InlineData("0,2", null, null)]
    [InlineData("3", null, null)]
    [InlineData("a,b", null, null)]
    [InlineData(null, null, null)]
    public void TheBlocksKnobTakesTwoSmallCounts(string? value, int? forward, int? backward)
    {
        var parsed = FusedKernelOptions.ParseProjectionBlocks(value);
        Assert.Equal(forward, parsed?.Forward);
        Assert.Equal(backward, parsed?.Backward);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(37)]
    [InlineData(512)]
    [InlineData(4097)]
    [InlineData(65536)]
    [InlineData(2147483647)]
    public void TheRowSplitMultiplierDividesEvery32BitRowIndex(long t)
    {
        ulong m = FusedHedgehogProjection.DivisionMultiplier(t);
        var rng = new Random((int)(t % int.MaxValue));
        var samples = new List<ulong> { 0, 1, (ulong)t - 1, (ulong)t, (ulong)t + 1, uint.MaxValue, uint.MaxValue - 1, (ulong)t * 1000 % ((ulong)uint.MaxValue + 1) };
        for (int i = 0; i < 2000; i++) samples.Add((ulong)rng.NextInt64(0, (long)uint.MaxValue + 1));
        foreach (ulong n in samples)
            Assert.Equal(n / (ulong)t, (ulong)(((UInt128)m * n) >> 64));
        Assert.Equal(0UL, FusedHedgehogProjection.DivisionMultiplier(1));   // the kernels take b = n for T = 1
    }

    [Fact]
    public void AMalformedBlocksKnobIsAnErrorNamingTheVariable()
    {
        Assert.Null(FusedKernelOptions.ParseProjectionBlocksVariable(null));
        Assert.Empty(FusedHedgehogProjection.BlocksDefines(FusedKernelOptions.ParseProjectionBlocksVariable(" ")));
        Assert.Equal(new[] { "HFWD_MINB=3", "HBWD_MINB=2" }, FusedHedgehogProjection.BlocksDefines(FusedKernelOptions.ParseProjectionBlocksVariable("3,2")));
        var e = Assert.Throws<InvalidOperationException>(() => FusedKernelOptions.ParseProjectionBlocksVariable("9"));
        Assert.Contains(FusedKernelOptions.HedgehogProjectionBlocksVariable, e.Message);
        Assert.Contains("'2,2'", e.Message);
    }
}
