using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class HedgehogTests
{
    [Theory]
    // lengths (padding when they differ), causal, dtype
    [InlineData(new long[] { 41, 20 }, false, ScalarType.Float32)]
    [InlineData(new long[] { 41, 20 }, true, ScalarType.Float32)]
    [InlineData(new long[] { 29 }, false, ScalarType.Float32)]
    [InlineData(new long[] { 29 }, true, ScalarType.Float32)]
    [InlineData(new long[] { 41, 20 }, false, ScalarType.BFloat16)]
    [InlineData(new long[] { 41, 20 }, true, ScalarType.BFloat16)]
    public void FastMatchesNaiveIncludingFeatureMapWeightGradients(long[] lengths, bool causal, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        var mask = KernelAssert.LengthMask(lengths);
        var q = KernelAssert.Random(new[] { b, 2, t, 8 }, dtype);
        var k = KernelAssert.Random(new[] { b, 2, t, 8 }, dtype);
        var v = KernelAssert.Random(new[] { b, 2, t, 8 }, dtype);
        var wq = KernelAssert.Random(new long[] { 2, 8, 6 }, dtype, scale: 0.3);
        var wk = KernelAssert.Random(new long[] { 2, 8, 6 }, dtype, scale: 0.3);
        Func<Tensor[], Tensor> fast = i => causal
            ? LinearAttentionKernels.Causal(HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]), i[2], mask, chunk: 16)
            : LinearAttentionKernels.Bidirectional(HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]), i[2], mask);
        Func<Tensor[], Tensor> naive = i => causal
            ? LinearAttentionKernels.CausalNaive(HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]), i[2], mask)
            : LinearAttentionKernels.BidirectionalNaive(HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]), i[2], mask);
        KernelAssert.SameOutputsAndGradients(fast, naive, new[] { q, k, v, wq, wk }, dtype, $"hedgehog causal={causal}", KernelAssert.HeadMask(mask));
    }

    [Theory]
    // feature dim F (D = 8), dtype
    [InlineData(8, ScalarType.Float32)]
    [InlineData(5, ScalarType.Float32)]
    [InlineData(8, ScalarType.BFloat16)]
    [InlineData(5, ScalarType.BFloat16)]
    public void FeatureMapMatchesItsNaivePerHeadTwinOutputsAndGradients(int featureDim, ScalarType dtype)
    {
        Torch.Seed();
        var x = KernelAssert.Random(new long[] { 2, 3, 7, 8 }, dtype);
        var w = KernelAssert.Random(new long[] { 3, 8, featureDim }, dtype, scale: 0.5);
        KernelAssert.SameOutputsAndGradients(
            i => HedgehogFeatureMap.Map(i[0], i[1]),
            i => HedgehogFeatureMap.MapNaive(i[0], i[1]),
            new[] { x, w }, dtype, $"hedgehog feature map F={featureDim}");
    }

    [Fact]
    public void FeatureMapIsAPositiveDistributionPerHalf()
    {
        Torch.Seed();
        var phi = HedgehogFeatureMap.Map(torch.randn(1, 2, 5, 4), torch.randn(2, 4, 3));
        Assert.Equal(new long[] { 1, 2, 5, 6 }, phi.shape);
        Assert.True((phi > 0).all().item<bool>());
        KernelAssert.Close(phi.narrow(-1, 0, 3).sum(-1), torch.ones(1, 2, 5), 1e-5, 1e-5, "softmax half sums to 1");
    }

    [Fact]
    public void IdentityInitialisedMapWhenFeatureDimIsHeadDim()
    {
        var map = new HedgehogFeatureMap(3, 4, 4);
        KernelAssert.Close(map.Weight[1], torch.eye(4), 0, 0, "identity init");
    }
}
