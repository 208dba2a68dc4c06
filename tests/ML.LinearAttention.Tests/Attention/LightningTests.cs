using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Lightning;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class LightningTests
{
    [Fact]
    public void SlopesFollowAlibiIncludingNonPowersOfTwo()
    {
        Assert.Equal(new[] { 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625 }, LightningKernels.Slopes(8));
        Assert.Equal(new[] { 0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125 }, LightningKernels.Slopes(6));
        var last = LightningKernels.LayerSlopes(8, 3, 4);
        Assert.Equal(0.5 * 1e-5, last[0], 12);
        Assert.Equal(0.5 * (1 + 1e-5), LightningKernels.LayerSlopes(8, 0, 1)[0], 12);
    }

    [Theory]
    [InlineData(new long[] { 50, 33, 1 }, ScalarType.Float32)]
    [InlineData(new long[] { 37 }, ScalarType.Float32)]
    [InlineData(new long[] { 41, 20 }, ScalarType.BFloat16)]
    public void KernelsMatchTheirNaiveTwins(long[] lengths, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        // SiLU-activated q/k/v as in TNL; no query scale, so keep the values modest.
        var x = new[]
        {
            KernelAssert.Random(new[] { b, 4, t, 8 }, dtype, scale: 0.5), KernelAssert.Random(new[] { b, 4, t, 8 }, dtype, scale: 0.5),
            KernelAssert.Random(new[] { b, 4, t, 4 }, dtype),
        };
        var slopes = torch.tensor(LightningKernels.Slopes(4));
        var mask = KernelAssert.LengthMask(lengths);
        KernelAssert.SameOutputsAndGradients(
            i => LightningKernels.Causal(i[0], i[1], i[2], slopes, mask, chunk: 16),
            i => LightningKernels.CausalRecurrent(i[0], i[1], i[2], slopes, mask),
            x, dtype, "lightning causal", KernelAssert.HeadMask(mask));
        KernelAssert.SameOutputsAndGradients(
            i => LightningKernels.Bidirectional(i[0], i[1], i[2], slopes, mask, chunk: 16),
            i => LightningKernels.BidirectionalNaive(i[0], i[1], i[2], slopes, mask),
            x, dtype, "lightning bidirectional", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void CausalKernelEqualsReferenceMaskForm()
    {
        Torch.Seed();
        var q = torch.randn(1, 2, 9, 4);
        var k = torch.randn(1, 2, 9, 4);
        var v = torch.randn(1, 2, 9, 3);
        var s = torch.tensor(new[] { 0.5f, 0.25f });
        var idx = torch.arange(9, dtype: ScalarType.Float32);
        var dist = idx.view(9, 1) - idx.view(1, 9);
        var m = (-s.view(2, 1, 1) * dist).exp() * (dist >= 0).to(ScalarType.Float32);    // exp(−s(i−j)), j ≤ i
        var expected = (q.matmul(k.transpose(-1, -2)) * m).matmul(v);
        KernelAssert.Close(LightningKernels.Causal(q, k, v, s, null, chunk: 4), expected, 1e-5, 1e-4, "((QKᵀ)⊙M)V");
    }

    [Fact]
    public void MixerSlopesWeakenWithDepthAndMixerIsCausalOrBidirectional()
    {
        using var first = new LightningMixer(new MixerConfig(32, 4, LayerIndex: 0, NumLayers: 3), new LightningOptions());
        using var deepest = new LightningMixer(new MixerConfig(32, 4, LayerIndex: 2, NumLayers: 3), new LightningOptions());
        Assert.True(deepest.SlopeRates[0] < first.SlopeRates[0] * 1e-3);
        DecayMixerAssert.CausalityAndPadding("lightning");
    }
}
