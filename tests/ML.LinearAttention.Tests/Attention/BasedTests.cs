using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Based;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class BasedTests
{
    [Fact]
    public void TaylorMapReproducesTheSecondOrderExpansionOfExp()
    {
        Torch.Seed();
        var q = torch.randn(2, 3, 16);
        var k = torch.randn(2, 5, 16);
        var pq = TaylorFeatureMap.Map(q);
        Assert.Equal(153, pq.shape[^1]);
        Assert.Equal(153, TaylorFeatureMap.FeatureSize(16));
        var viaFeatures = pq.matmul(TaylorFeatureMap.Map(k).transpose(-1, -2));
        var s = q.matmul(k.transpose(-1, -2));
        KernelAssert.Close(viaFeatures, 1 + s / 4.0 + s.square() / 32.0, 1e-5, 1e-5, "φ(q)·φ(k)");
        KernelAssert.Close(viaFeatures, TaylorFeatureMap.Kernel(q, k), 1e-5, 1e-5, "Kernel");
        Assert.True((viaFeatures >= 0.5 - 1e-5).all().item<bool>(), "the Taylor kernel is at least 1/2");
    }

    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (padding when they differ), causal, dtype, chunk
        new object[] { new long[] { 37 }, false, ScalarType.Float32, 16 },
        new object[] { new long[] { 37 }, true, ScalarType.Float32, 16 },
        new object[] { new long[] { 45, 30, 1 }, true, ScalarType.Float32, 16 },
        new object[] { new long[] { 70, 33 }, false, ScalarType.BFloat16, 64 },
        new object[] { new long[] { 70, 33 }, true, ScalarType.BFloat16, 16 },
    };

    private static Tensor[] Inputs(long[] lengths, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        return new[]
        {
            KernelAssert.Random(new[] { b, 2, t, 4 }, dtype, scale: 0.7),   // qf (F = 4 → 15 features)
            KernelAssert.Random(new[] { b, 2, t, 4 }, dtype, scale: 0.7),   // kf
            KernelAssert.Random(new[] { b, 2, t, 8 }, dtype),               // q (softmax branch)
            KernelAssert.Random(new[] { b, 2, t, 8 }, dtype),               // k
            KernelAssert.Random(new[] { b, 2, t, 8 }, dtype),               // v
        };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TaylorLinearMatchesNaiveOutputsAndGradients(long[] lengths, bool causal, ScalarType dtype, int chunk)
    {
        var x = Inputs(lengths, dtype);
        var mask = KernelAssert.LengthMask(lengths);
        KernelAssert.SameOutputsAndGradients(
            i => BasedKernels.Linear(i[0], i[1], i[2], mask, causal, chunk),
            i => BasedKernels.LinearNaive(i[0], i[1], i[2], mask, causal),
            new[] { x[0], x[1], x[4] }, dtype, $"taylor causal={causal}", KernelAssert.HeadMask(mask));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BasedLinearPlusWindowMatchesNaiveOutputsAndGradients(long[] lengths, bool causal, ScalarType dtype, int chunk)
    {
        var x = Inputs(lengths, dtype);
        var mask = KernelAssert.LengthMask(lengths);
        KernelAssert.SameOutputsAndGradients(
            i => BasedKernels.Attention(i[0], i[1], i[2], i[3], i[4], mask, window: 5, causal, chunk, block: 4),
            i => BasedKernels.AttentionNaive(i[0], i[1], i[2], i[3], i[4], mask, window: 5, causal),
            x, dtype, $"based causal={causal}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void TaylorMixerProjectsToTheFeatureDimAndBasedAddsAWindowBranch()
    {
        Torch.Seed();
        using var taylor = (BasedMixer)MixerRegistry.Create("taylor", new MixerConfig(32, 4));
        Assert.Equal(16, taylor.FeatureDim);
        Assert.Equal(2, taylor.parameters().Count(p => p.shape[0] == 4 * 16));        // q/k feature projections
        using var based = MixerRegistry.Create("based", new MixerConfig(32, 4, Causal: true), new BasedOptions { FeatureDim = 0, Window = 3 });
        Assert.Equal(6, based.parameters().Count());                                  // + softmax-branch q/k
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => MixerRegistry.Create("based", new MixerConfig(32, 4), new BasedOptions { Window = -1 }));
        Assert.Contains("Window", ex.Message);
    }
}
