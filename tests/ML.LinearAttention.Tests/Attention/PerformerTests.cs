using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Performer;
using Microsoft.ML.LinearAttention.Attention.Softmax;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class PerformerTests
{
    [Theory]
    // lengths (padding when they differ), causal, dtype; m = 20 is not a multiple of D = 8 (a truncated last block)
    [InlineData(new long[] { 37, 20 }, false, ScalarType.Float32)]
    [InlineData(new long[] { 37, 20, 1 }, true, ScalarType.Float32)]
    [InlineData(new long[] { 29 }, false, ScalarType.Float32)]
    [InlineData(new long[] { 29 }, true, ScalarType.Float32)]
    [InlineData(new long[] { 33, 17 }, false, ScalarType.BFloat16)]
    [InlineData(new long[] { 33, 17 }, true, ScalarType.BFloat16)]
    public void FastMatchesNaiveOutputsAndGradients(long[] lengths, bool causal, ScalarType dtype)
    {
        Torch.Seed();
        var mask = KernelAssert.LengthMask(lengths);
        var (q, k, v) = KernelAssert.Qkv(lengths, dtype, dv: 8);
        var w = PerformerKernels.OrthogonalRandomMatrix(20, 8);
        KernelAssert.SameOutputsAndGradients(
            i => PerformerKernels.Attention(i[0], i[1], i[2], w, mask, causal, chunk: 16),
            i => PerformerKernels.AttentionNaive(i[0], i[1], i[2], w, mask, causal),
            new[] { q, k, v }, dtype, $"favor+ causal={causal}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void RandomMatrixHasOrthogonalBlocksAndChiOrFixedNorms()
    {
        using var g = new Generator(7);
        var w = PerformerKernels.OrthogonalRandomMatrix(10, 4, generator: g);
        Assert.Equal(new long[] { 10, 4 }, w.shape);
        var unit = w / w.norm(1, keepdim: true);
        foreach (var (start, rows) in new[] { (0, 4), (4, 4), (8, 2) })
        {
            var block = unit.narrow(0, start, rows);
            KernelAssert.Close(block.matmul(block.t()), torch.eye(rows), 1e-5, 1e-5, $"block at {start} is orthonormal");
        }
        var norms = w.norm(1);
        Assert.True(norms.std().item<float>() > 1e-3, "chi norms vary");
        // Directions are uniform: without the sign correction every block's first row would point to negative x₀.
        var many = PerformerKernels.OrthogonalRandomMatrix(4 * 2000, 4, generator: g);
        var firstRows = (many / many.norm(1, keepdim: true)).view(2000, 4, 4).select(1, 0);
        Assert.True(firstRows.mean(new long[] { 0 }).abs().max().item<float>() < 0.05, "first rows of the blocks are not biased");
        var fixedNorm = PerformerKernels.OrthogonalRandomMatrix(10, 4, fixedNorm: true);
        KernelAssert.Close(fixedNorm.norm(1), torch.full(10, 2.0f), 1e-5, 1e-5, "√D norms");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ManyFeaturesApproximateSoftmaxAttention(bool causal)
    {
        using var g = new Generator(11);
        var q = torch.randn(new long[] { 2, 1, 24, 4 }, generator: g) * 0.7;
        var k = torch.randn(new long[] { 2, 1, 24, 4 }, generator: g) * 0.7;
        var v = torch.randn(new long[] { 2, 1, 24, 4 }, generator: g);
        var mask = KernelAssert.LengthMask(24, 15);
        var w = PerformerKernels.OrthogonalRandomMatrix(16384, 4, generator: g);
        var approx = PerformerKernels.Attention(q, k, v, w, mask, causal);
        var exact = SoftmaxKernels.AttentionNaive(q, k, v, mask, causal);
        double err = (approx - exact).abs().mean().item<float>();
        Assert.True(err < 0.015, $"mean |FAVOR+ − softmax| = {err}");
    }

    [Fact]
    public void PaddingGarbageAndOtherRowsDoNotChangeARow()
    {
        Torch.Seed();
        var w = PerformerKernels.OrthogonalRandomMatrix(16, 4);
        var q = torch.randn(2, 2, 10, 4);
        var k = torch.randn(2, 2, 10, 4);
        var v = torch.randn(2, 2, 10, 4);
        var mask = KernelAssert.LengthMask(10, 6);
        var o = PerformerKernels.Attention(q, k, v, w, mask);
        var k2 = k.clone(); k2[1, .., 6.., ..] = torch.full(new long[] { 2, 4, 4 }, 300.0f);
        var v2 = v.clone(); v2[1, .., 6.., ..] = torch.full(new long[] { 2, 4, 4 }, -300.0f);
        var again = PerformerKernels.Attention(q, k2, v2, w, mask);
        Assert.False(again.isnan().any().item<bool>());
        KernelAssert.Close(again, o, 1e-6, 1e-5, "padding invariance");
        var alone = PerformerKernels.Attention(q[1..2, .., ..6, ..], k[1..2, .., ..6, ..], v[1..2, .., ..6, ..], w, null);
        KernelAssert.Close(o[1..2, .., ..6, ..], alone, 1e-6, 1e-5, "a row alone equals the row in a padded batch");
    }

    [Fact]
    public void FeaturesAreARedrawableSeededBuffer()
    {
        Torch.Seed();
        var config = new MixerConfig(16, 2);
        using var a = (PerformerMixer)MixerRegistry.Create("performer", config, new PerformerOptions { Seed = 5, RedrawInterval = 2 });
        using var b = new PerformerMixer(config, new PerformerOptions { Seed = 5 });
        Assert.Equal(PerformerKernels.DefaultNumFeatures(8), a.NumFeatures);   // ⌊8·ln 8⌋ = 16
        Assert.Equal(16, a.NumFeatures);
        KernelAssert.Close(a.ProjectionMatrix, b.ProjectionMatrix, 0, 0, "same seed, same features");
        Assert.Contains(a.named_buffers(), n => n.name == "projection_matrix");
        Assert.Contains("projection_matrix", a.state_dict().Keys);
        var first = a.ProjectionMatrix.clone();
        var x = torch.randn(1, 5, 16);
        a.eval();
        for (int i = 0; i < 3; i++) a.forward(x, null);
        KernelAssert.Close(a.ProjectionMatrix, first, 0, 0, "evaluation never redraws");
        a.train();
        a.forward(x, null); a.forward(x, null);
        KernelAssert.Close(a.ProjectionMatrix, first, 0, 0, "no redraw before the interval");
        a.forward(x, null);
        Assert.True((a.ProjectionMatrix - first).abs().max().item<float>() > 1e-3, "redrawn after RedrawInterval training passes");
        b.RedrawFeatures(9);
        a.RedrawFeatures(9);
        KernelAssert.Close(a.ProjectionMatrix, b.ProjectionMatrix, 0, 0, "seeded redraw");
    }

    [Fact]
    public void OptionsRoundTripThroughJson()
    {
        var options = new PerformerOptions { NumFeatures = 32, FixedNorm = true, RedrawInterval = 0, Seed = 3, FeatureEps = 1e-6, ChunkSize = 32 };
        Assert.Equal(options, MixerRegistry.DeserializeOptions("performer", MixerRegistry.SerializeOptions(options)));
    }

    [Fact]
    public void BadOptionsAndProjectionShapesAreExplained()
    {
        var config = new MixerConfig(16, 2);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PerformerMixer(config, new PerformerOptions { NumFeatures = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PerformerMixer(config, new PerformerOptions { RedrawInterval = -5 }));
        var ex = Assert.Throws<ArgumentException>(() => PerformerKernels.Attention(torch.zeros(1, 1, 3, 8), torch.zeros(1, 1, 3, 8), torch.zeros(1, 1, 3, 8), torch.zeros(16, 4), null));
        Assert.Contains("[m, D] with D = 8", ex.Message);
    }
}
