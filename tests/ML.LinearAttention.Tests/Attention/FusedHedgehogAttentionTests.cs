using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// Hedgehog's attention with φ computed inside the tensor-core kernels (FusedHedgehogAttention): on the CPU the path
/// without them, against the naive twins (projection, explicit softmaxes, explicit T×T weights) for the output and
/// every gradient; the reasons it declines; its shared-memory plan. The GPU kernels are checked against the naive twins
/// by `bench kernels --verify-fused` and tests/FusedKernelEmulator (hedgehog_attn.cpp); FusedLinearAttentionTests
/// compiles their CUDA source.
/// </summary>
public class FusedHedgehogAttentionTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OnTheCpuItMatchesTheNaiveTwinsWithEveryGradient(bool padded)
    {
        torch.manual_seed(5);
        long b = 3, h = 2, t = 7, hx = 16, f = 8, dv = 12;
        var inputs = new[]
        {
            torch.randn(b, h, t, hx, dtype: ScalarType.Float64), torch.randn(b, h, t, hx, dtype: ScalarType.Float64),
            torch.randn(b, h, t, dv, dtype: ScalarType.Float64),
            torch.randn(h, hx, f, dtype: ScalarType.Float64) * 0.5, torch.randn(h, hx, f, dtype: ScalarType.Float64) * 0.5,
        };
        Tensor? mask = padded ? torch.arange(t).unsqueeze(0).lt(torch.tensor(new long[] { 7, 3, 1 }).unsqueeze(1)) : null;
        var (o, grads) = Run(x => FusedHedgehogAttention.Bidirectional(x[0], x[1], x[2], x[3], x[4], mask), inputs);
        var (naive, naiveGrads) = Run(x => LinearAttentionKernels.BidirectionalNaive(HedgehogFeatureMap.MapNaive(x[0], x[3]),
            HedgehogFeatureMap.MapNaive(x[1], x[4]), x[2], mask, normalize: true, LinearAttentionKernels.DefaultEps), inputs);
        // The naive map computes in fp32 (as the projection's tests), so fp32 tolerances.
        Assert.True(o.allclose(naive, rtol: 1e-5, atol: 1e-6), $"output: max diff {(o - naive).abs().max().item<double>()}");
        for (int i = 0; i < grads.Length; i++)
            Assert.True(grads[i].allclose(naiveGrads[i], rtol: 1e-4, atol: 1e-5), $"gradient {i}: max diff {(grads[i] - naiveGrads[i]).abs().max().item<double>()}");
        if (padded) Assert.Equal(0.0, o[2, .., 1..].abs().max().item<double>());   // padded rows are zero
    }

    private static (Tensor output, Tensor[] gradients) Run(Func<Tensor[], Tensor> attention, Tensor[] inputs)
    {
        var x = inputs.Select(a => a.detach().requires_grad_(true)).ToArray();
        var o = attention(x);
        var up = torch.ones_like(o) + torch.arange(o.numel(), dtype: o.dtype).reshape(o.shape) * 1e-3;
        return (o.detach(), torch.autograd.grad(new[] { o }, x, new[] { up }).Select(g => g.detach()).ToArray());
    }

    [Fact]
    public void MismatchedShapesAreRefusedWithTheShapes()
    {
        var x = torch.zeros(1, 2, 4, 16);
        var v = torch.zeros(1, 2, 4, 16);
        var e = Assert.Throws<ArgumentException>(() => FusedHedgehogAttention.Bidirectional(x, x, v, torch.zeros(2, 16, 8), torch.zeros(2, 16, 4), null));
        Assert.Contains("wq [2, 16, 8]", e.Message);
        Assert.Contains("wk [2, 16, 4]", e.Message);
        e = Assert.Throws<ArgumentException>(() => FusedHedgehogAttention.Bidirectional(x, x, v, torch.zeros(3, 16, 8), torch.zeros(3, 16, 8), null));
        Assert.Contains("[H, HX, F]", e.Message);
    }

    [Fact]
    public void DisagreeingInputsAreRefusedBeforeAnyKernel()
    {
        var x = torch.zeros(2, 2, 4, 16);
        var v = torch.zeros(2, 2, 4, 8);
        var w = torch.zeros(2, 16, 8);
        var e = Assert.Throws<ArgumentException>(() => FusedHedgehogAttention.Bidirectional(x, x, v, w, w, torch.ones(2, 5, dtype: ScalarType.Bool)));
        Assert.Contains("keyPaddingMask must be [B, T] = [2, 4]", e.Message);
        e = Assert.Throws<ArgumentException>(() => FusedHedgehogAttention.Bidirectional(x, torch.zeros(2, 2, 5, 16), torch.zeros(2, 2, 5, 8), w, w, null));
        Assert.Contains("same [B, H, T, HX] shape", e.Message);
        e = Assert.Throws<ArgumentException>(() => FusedHedgehogAttention.Bidirectional(x, x, torch.zeros(2, 2, 3, 8), w, w, null));
        Assert.Contains("disagree on batch, heads or length", e.Message);
        e = Assert.Throws<ArgumentException>(() => FusedHedgehogAttention.Bidirectional(x, x, v.to(ScalarType.Float64), w, w, null));
        Assert.Contains("share one dtype", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => FusedHedgehogAttention.Bidirectional(x, x, v, w, w, null, eps: 0));
    }

    [Fact]
    public void ItSaysWhyItDoesNotRun()
    {
        var x = torch.zeros(1, 2, 4, 64, dtype: ScalarType.BFloat16);
        var w = torch.zeros(2, 64, 64, dtype: ScalarType.BFloat16);
        Assert.Contains("CUDA", FusedHedgehogAttention.UnavailableReason(x, x, x, w, w, null));
        var before = FusedKernelOptions.Current;
        try
        {
            FusedKernelOptions.Current = before with { HedgehogAttentionEnabled = false };
            Assert.Contains(FusedHedgehogAttention.EnableVariable, FusedHedgehogAttention.UnavailableReason(x, x, x, w, w, null));
        }
        finally { FusedKernelOptions.Current = before; }
    }

    [Theory]
    [InlineData(64, 64, 0)]      // Hedgehog's default (F = D = 64): x's tile fits in φ's (128 wide)
    [InlineData(32, 32, 0)]
    [InlineData(128, 64, 0)]
    [InlineData(64, 16, 1)]      // φ (32 wide) narrower than x: the x tile gets its own space
    [InlineData(64, 32, 0)]
    public void TheXTileSharesThePhiTileOnlyWhereItFits(int hx, int f, int ownTile)
    {
        int baseBytes = 2 * f * (hx + 8) + 4 * 2 * 64 * 4;
        Assert.Equal(baseBytes + ownTile * 2 * 64 * (hx + 8), FusedModuleCache.HedgehogBytes(hx, f));
        var tiles = FusedModuleCache.Tiling.For(2 * f, 64);
        Assert.True(tiles.MmaMaxBytes + FusedModuleCache.HedgehogBytes(hx, f) <= 227 * 1024, "fits an sm_80/sm_90 block's opt-in shared memory");
    }

    [Theory]
    [InlineData(1, null)]
    [InlineData(512, null)]         // two blocks per SM at 64-wide x and v: faster at T = 512
    [InlineData(2047, null)]
    [InlineData(2048, 1)]           // one block per SM from 2K tokens per sequence on
    [InlineData(32768, 1)]
    public void TheDefaultBuildTakesOneBlockPerSmFrom2KTokens(long t, int? expected)
    {
        Assert.Equal(expected, FusedHedgehogAttention.BlocksPerSmFor(t));
    }

    [Fact]
    public void TheBackwardLauncherRefusesAPartialHedgehogCallBeforeAnyKernel()
    {
        using var scope = NewDisposeScope();
        var x = torch.zeros(1, 2, 8, 16, dtype: ScalarType.BFloat16);
        var w = torch.zeros(2, 16, 16, dtype: ScalarType.BFloat16);
        var sums = torch.zeros(1, 2, 32, 16);
        var hh = new HedgehogWeights(w, w);
        (Tensor, Tensor, Tensor) dx = (torch.zeros_like(x), torch.zeros_like(x), torch.zeros(2, 2, 16, 16));
        // The query kernel zeroes the dW sums that the key kernel adds into: one without the other would leave them unset.
        var partial = Assert.Throws<ArgumentException>(() => FusedLaunch.Backward(x, x, x, null, torch.ones(1), sums, sums[.., .., .., 0], x, x,
            FusedFeatureMap.Identity, tensorCores: true, FusedKernels.BackwardKv, hh, dx));
        Assert.Equal("run", partial.ParamName);
        Assert.Contains("FusedKernels.All", partial.Message);
        var noDx = Assert.Throws<ArgumentNullException>(() => FusedLaunch.Backward(x, x, x, null, torch.ones(1), sums, sums[.., .., .., 0], x, x,
            FusedFeatureMap.Identity, tensorCores: true, hh: hh));
        Assert.Equal("hhDx", noDx.ParamName);
    }

    [Theory]
    [InlineData(64, 64, 64, 1, true)]     // Hedgehog's default width in bf16: the sums [64][72] fill dS's low half exactly
    [InlineData(64, 64, 64, 2, false)]    // fp16 splits dS into high and low parts: no space, hedgehog_dw_bwd takes both maps
    [InlineData(32, 32, 48, 1, true)]
    [InlineData(64, 16, 32, 1, false)]    // x wider than the space: 64 × 24 sums against 16 × 40
    [InlineData(16, 32, 16, 1, false)]    // the sums fit (16 × 40 ≤ 32 × 24), dy (32 wide) not in the v rows (16 wide)
    public void TheKeyMapsWeightGradientIsReducedInTheKernelWhereItsSumsFit(int hx, int f, int dv, int inType, bool expected)
    {
        var tiles = FusedModuleCache.Tiling.For(2 * f, dv);
        Assert.Equal(expected, FusedModuleCache.HedgehogKeyWeightsInKernel(tiles, hx, f, inType));
        if (expected) Assert.True(hx * (f + 8) * 4 <= 2 * f * (dv + 8) * 2, "the fp32 sums fit in dS's low half");
    }

    [Fact]
    public void AtHedgehogsDefaultWidthTwoBlocksFitOnAnSm()
    {
        // 228 KB of shared memory per SM on sm_80 and sm_90, 1 KB reserved per block.
        var tiles = FusedModuleCache.Tiling.For(128, 64);
        int extra = FusedModuleCache.HedgehogBytes(64, 64);
        foreach (int bytes in new[] { tiles.MmaStateBytes, tiles.MmaOutBytes })
            Assert.True(2 * (bytes + extra + 1024) <= 228 * 1024, $"{bytes + extra} bytes per block");
        foreach (int inType in new[] { 1, 2 })                           // mma_bwd_kv warp by warp: its own layout
        {
            int kv = FusedModuleCache.HedgehogKvBytes(tiles, 64, 64, inType);
            Assert.True(2 * (kv + 1024) <= 228 * 1024, $"mma_bwd_kv: {kv} bytes per block");
            // dS high and low [128][72], 8 warps × 16 rows of x [72] and of v [72], dz [128] fp32, W_kᵀ [64][72]; for bf16
            // a second buffer of x rows, as it reduces dW itself (its fp32 sums take dS's unused low half, dy the v rows).
            Assert.Equal(2 * (2 * 128 * 72 + 128 * 72 + 128 * 72 + (inType == 1 ? 128 * 72 : 0)) + 4 * 128 + 2 * 64 * 72, kv);
        }
        int q = FusedModuleCache.HedgehogQBytes(tiles, 64, 64);         // mma_bwd_q warp by warp
        Assert.True(2 * (q + 1024) <= 228 * 1024, $"mma_bwd_q: {q} bytes per block");
        // S high and low [128][72], the block's φq [128][136] and g [128][72] tiles, z [128] fp32, W_qᵀ [64][72].
        Assert.Equal(2 * (2 * 128 * 72 + 128 * 136 + 128 * 72) + 4 * 128 + 2 * 64 * 72, q);
        int head = FusedModuleCache.HedgehogHeadBytes(tiles, 64, 64);   // the whole-head forward: both maps' weights
        Assert.True(2 * (head + 1024) <= 228 * 1024, $"whole-head forward: {head} bytes per block");
        // The two forward kernels' tiles less fwd_out's φq tile (φq takes φk's space), plus the second map's W_hᵀ.
        Assert.Equal(tiles.MmaStateBytes + tiles.MmaOutBytes - 2 * 64 * (128 + 8) + extra + 2 * 64 * (64 + 8), head);
    }

    [Fact]
    public void AMalformedBlocksKnobIsAnErrorNamingTheVariable()
    {
        Assert.Null(FusedKernelOptions.ParseAttentionBlocks(null));
        Assert.Equal(1, FusedKernelOptions.ParseAttentionBlocks("1"));
        foreach (var bad in new[] { "0", "9", "two" })
        {
            var e = Assert.Throws<InvalidOperationException>(() => FusedKernelOptions.ParseAttentionBlocks(bad));
            Assert.Contains(FusedKernelOptions.HedgehogAttentionBlocksVariable, e.Message);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new FusedKernelOptions { HedgehogAttentionBlocksPerSm = 9 });
        // The knob reaches the compiler as HH_MINB; an explicit build choice (benchmarks) wins over it.
        var before = FusedKernelOptions.Current;
        try
        {
            FusedKernelOptions.Current = before with { HedgehogAttentionBlocksPerSm = 3 };
            Assert.Equal(new[] { "HX=64", "HF=32", "HH_MINB=3" }, FusedModuleCache.HedgehogDefines(64, 32));
            Assert.Equal(new[] { "HX=64", "HF=32", "HH_MINB=1" }, FusedModuleCache.HedgehogDefines(64, 32, blocksPerSm: 1));
            FusedKernelOptions.Current = before with { HedgehogAttentionBlocksPerSm = null };
            Assert.Equal(new[] { "HX=64", "HF=32" }, FusedModuleCache.HedgehogDefines(64, 32));
        }
        finally { FusedKernelOptions.Current = before; }
    }

    [Fact]
    public void TheMixerKeepsItsCpuPath()
    {
        torch.manual_seed(2);
        var mixer = new HedgehogMixer(new MixerConfig(32, 2), new HedgehogOptions { UseFusedKernel = true });
        var x = torch.randn(2, 5, 32);
        var mask = torch.tensor(new[,] { { true, true, true, true, true }, { true, true, false, false, false } });
        var o = mixer.forward(x, mask);
        Assert.Equal(new long[] { 2, 5, 32 }, o.shape);
        Assert.False(o.isnan().any().item<bool>());
    }
}
