using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.PlainLinear;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class LearnableFeatureMapTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (var map in new[] { "t2r", "elementwise_product", "dpfp" })
        {
            // map, lengths (padding when they differ), causal, dtype
            yield return new object[] { map, new long[] { 37, 20 }, false, ScalarType.Float32 };
            yield return new object[] { map, new long[] { 37, 20 }, true, ScalarType.Float32 };
            yield return new object[] { map, new long[] { 29 }, true, ScalarType.Float32 };
            yield return new object[] { map, new long[] { 33, 17 }, false, ScalarType.BFloat16 };
            yield return new object[] { map, new long[] { 33, 17 }, true, ScalarType.BFloat16 };
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesNaiveIncludingFeatureMapWeightGradients(string map, long[] lengths, bool causal, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        const int h = 2, d = 8, f = 6;
        var mask = KernelAssert.LengthMask(lengths);
        var inputs = new List<Tensor>
        {
            KernelAssert.Random(new[] { b, h, t, d }, dtype),
            KernelAssert.Random(new[] { b, h, t, d }, dtype),
            KernelAssert.Random(new[] { b, h, t, d }, dtype),
        };
        // φ of the queries (key = false) or keys (key = true) from the inputs.
        Func<Tensor[], bool, Tensor> fastMap, naiveMap;
        bool normalize = map != "elementwise_product"; // fla runs elementwise_product without the denominator
        switch (map)
        {
            case "t2r": // separate q and k weights, F ≠ D, no bias (fla)
                inputs.Add(KernelAssert.Random(new long[] { f, d }, dtype, scale: 0.4));
                inputs.Add(KernelAssert.Random(new long[] { f, d }, dtype, scale: 0.4));
                fastMap = (i, key) => FeatureMapKernels.T2R(i[key ? 1 : 0], i[key ? 4 : 3], null);
                naiveMap = (i, key) => FeatureMapKernels.T2RNaive(i[key ? 1 : 0], i[key ? 4 : 3], null);
                break;
            case "elementwise_product": // one tied map with biases
                inputs.Add(KernelAssert.Random(new long[] { d, d }, dtype, scale: 0.4));
                inputs.Add(KernelAssert.Random(new long[] { d }, dtype, scale: 0.2));
                inputs.Add(KernelAssert.Random(new long[] { d, d }, dtype, scale: 0.4));
                inputs.Add(KernelAssert.Random(new long[] { d }, dtype, scale: 0.2));
                fastMap = (i, key) => FeatureMapKernels.ElementwiseProduct(i[key ? 1 : 0], i[3], i[4], i[5], i[6]);
                naiveMap = (i, key) => FeatureMapKernels.ElementwiseProductNaive(i[key ? 1 : 0], i[3], i[4], i[5], i[6]);
                break;
            default:
                fastMap = (i, key) => FeatureMapKernels.Dpfp(i[key ? 1 : 0]);
                naiveMap = (i, key) => FeatureMapKernels.DpfpNaive(i[key ? 1 : 0]);
                break;
        }
        Func<Tensor[], Tensor> fast = i => causal
            ? LinearAttentionKernels.Causal(fastMap(i, false), fastMap(i, true), i[2], mask, normalize, chunk: 16)
            : LinearAttentionKernels.Bidirectional(fastMap(i, false), fastMap(i, true), i[2], mask, normalize);
        Func<Tensor[], Tensor> naive = i => causal
            ? LinearAttentionKernels.CausalNaive(naiveMap(i, false), naiveMap(i, true), i[2], mask, normalize)
            : LinearAttentionKernels.BidirectionalNaive(naiveMap(i, false), naiveMap(i, true), i[2], mask, normalize);
        KernelAssert.SameOutputsAndGradients(fast, naive, inputs.ToArray(), dtype, $"{map} causal={causal}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void DpfpHas2DNuNonNegativeFeaturesAndMatchesTheRollDefinition()
    {
        Torch.Seed();
        var x = torch.randn(2, 3, 5, 4);
        var phi = FeatureMapKernels.Dpfp(x, 3);
        Assert.Equal(new long[] { 2, 3, 5, 24 }, phi.shape);
        Assert.True((phi >= 0).all().item<bool>());
        KernelAssert.Close(phi, FeatureMapKernels.DpfpNaive(x, 3), 0, 0, "gather = rolls");
        Assert.Throws<ArgumentOutOfRangeException>(() => FeatureMapKernels.Dpfp(x, 8));
    }

    [Theory]
    [InlineData("t2r", false, 2)]
    [InlineData("t2r", true, 1)]
    [InlineData("elementwise_product", false, 8)]
    [InlineData("dpfp", false, 0)]
    public void LinearMixerTrainsTheFeatureMapWeights(string map, bool tie, int expectedMapParameters)
    {
        Torch.Seed();
        foreach (bool causal in new[] { false, true })
        {
            var options = new LinearMixerOptions { FeatureMap = map, TieFeatureMaps = tie, Normalize = map != "elementwise_product", FeatureDim = map == "t2r" ? 12 : 0 };
            using var mixer = (LinearMixer)MixerRegistry.Create("linear", new MixerConfig(16, 2, causal), options);
            var mapParameters = mixer.named_parameters().Where(p => p.name.Contains("_map.")).ToList();
            Assert.Equal(expectedMapParameters, mapParameters.Count);
            var mask = KernelAssert.LengthMask(11, 6);
            var y = mixer.forward(torch.randn(2, 11, 16), mask);
            Assert.False(y.isnan().any().item<bool>());
            Assert.Equal(0.0, y[1, 6.., ..].abs().sum().item<float>());
            y.square().sum().backward();
            Assert.All(mapParameters, p => Assert.True(p.parameter.grad is not null && p.parameter.grad.abs().sum().item<float>() > 0, $"{p.name} has no gradient"));
        }
    }

    [Fact]
    public void NewLinearOptionsRoundTripThroughJson()
    {
        var options = new LinearMixerOptions { FeatureMap = "t2r", FeatureDim = 12, TieFeatureMaps = true, DpfpNu = 2 };
        Assert.Equal(options, MixerRegistry.DeserializeOptions("linear", MixerRegistry.SerializeOptions(options)));
    }

    [Fact]
    public void NegativeMapsRequireTheUnnormalizedFormAndUnknownNamesAreListed()
    {
        var config = new MixerConfig(16, 2);
        var ex = Assert.Throws<ArgumentException>(() => new LinearMixer(config, new LinearMixerOptions { FeatureMap = "elementwise_product" }));
        Assert.Contains("Normalize = false", ex.Message);
        var ex2 = Assert.Throws<ArgumentException>(() => new LinearMixer(config, new LinearMixerOptions { FeatureMap = "taylor" }));
        Assert.Contains("dpfp", ex2.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new LinearMixer(config, new LinearMixerOptions { FeatureMap = "dpfp", DpfpNu = 16 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LinearMixer(config, new LinearMixerOptions { FeatureMap = "t2r", FeatureDim = -1 }));
    }
}
