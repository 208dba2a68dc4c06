using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Softmax;
using Microsoft.ML.LinearAttention.Attention.Sqa;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class SqaTests
{
    [Theory]
    // query heads, kv heads, lengths, causal, window, dtype
    [InlineData(4, 2, new long[] { 37, 20 }, false, 0, ScalarType.Float32)]
    [InlineData(4, 1, new long[] { 37, 20, 1 }, true, 0, ScalarType.Float32)]
    [InlineData(2, 2, new long[] { 29 }, true, 5, ScalarType.Float32)]
    [InlineData(4, 2, new long[] { 33, 17 }, false, 0, ScalarType.BFloat16)]
    [InlineData(2, 1, new long[] { 33, 17 }, true, 0, ScalarType.BFloat16)]
    public void GroupedSdpaMatchesNaiveWithPadding(int hq, int hkv, long[] lengths, bool causal, int window, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        var mask = KernelAssert.LengthMask(lengths);
        var q = KernelAssert.Random(new long[] { b, hq, t, 8 }, dtype);
        var k = KernelAssert.Random(new long[] { b, hkv, t, 8 }, dtype);
        var v = KernelAssert.Random(new long[] { b, hkv, t, 8 }, dtype);
        KernelAssert.SameOutputsAndGradients(
            i => SoftmaxKernels.Attention(i[0], i[1], i[2], mask, causal, window),
            i => SoftmaxKernels.AttentionNaive(i[0], i[1], i[2], mask, causal, window),
            new[] { q, k, v }, dtype, $"sqa {hq}/{hkv} causal={causal}", KernelAssert.HeadMask(mask));
    }

    [Theory]
    // model heads, variant → (Hq, Hkv)
    [InlineData(16, "sqa", 8, 4)]
    [InlineData(16, "ssqa", 8, 8)]
    [InlineData(16, "xsqa", 4, 4)]
    [InlineData(12, "sqa", 6, 3)]
    [InlineData(10, "sqa", 5, 1)]   // H/4 = 2 does not divide 5: the largest divisor below it
    [InlineData(4, "sqa", 2, 1)]
    [InlineData(1, "sqa", 1, 1)]
    [InlineData(2, "xsqa", 1, 1)]
    public void DefaultHeadCountsFollowThePaperVariants(int heads, string variant, int hq, int hkv)
        => Assert.Equal((hq, hkv), new SqaOptions { Variant = variant }.Resolve(heads));

    [Fact]
    public void MixerProjectsToFewerHeadsAndEqualsTheNaiveComputation()
    {
        Torch.Seed();
        foreach (bool causal in new[] { false, true })
        {
            using var mixer = (SqaMixer)MixerRegistry.Create("sqa", new MixerConfig(32, 8, causal)); // D = 4, Hq = 4, Hkv = 2
            Assert.Equal((4, 2), (mixer.QueryHeads, mixer.KeyValueHeads));
            var p = mixer.named_parameters().ToDictionary(n => n.name, n => n.parameter);
            Assert.Equal(new long[] { 16, 32 }, p["q_proj.weight"].shape);
            Assert.Equal(new long[] { 8, 32 }, p["k_proj.weight"].shape);
            Assert.Equal(new long[] { 32, 16 }, p["o_proj.weight"].shape);
            var mask = KernelAssert.LengthMask(13, 6);
            var x = torch.randn(2, 13, 32);
            var y = mixer.forward(x, mask);
            var q = Heads.Split(x.matmul(p["q_proj.weight"].t()), 4);
            var k = Heads.Split(x.matmul(p["k_proj.weight"].t()), 2);
            var v = Heads.Split(x.matmul(p["v_proj.weight"].t()), 2);
            var expected = Heads.ZeroPadded(Heads.Merge(SoftmaxKernels.AttentionNaive(q, k, v, mask, causal)).matmul(p["o_proj.weight"].t()), mask);
            KernelAssert.Close(y, expected, 1e-5, 1e-4, $"sqa mixer causal={causal}");
        }
    }

    [Fact]
    public void OptionsRoundTripThroughJson()
    {
        var options = new SqaOptions { Variant = "xsqa", QueryHeads = 4, KeyValueHeads = 2, Window = 16 };
        Assert.Equal(options, MixerRegistry.DeserializeOptions("sqa", MixerRegistry.SerializeOptions(options)));
    }

    [Fact]
    public void BadHeadCountsAreExplained()
    {
        var config = new MixerConfig(32, 8);
        var ex = Assert.Throws<ArgumentException>(() => new SqaMixer(config, new SqaOptions { QueryHeads = 4, KeyValueHeads = 3 }));
        Assert.Contains("multiple of KeyValueHeads", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new SqaMixer(config, new SqaOptions { QueryHeads = 9 }));
        Assert.Contains("Known variants", Assert.Throws<ArgumentException>(() => new SqaMixer(config, new SqaOptions { Variant = "gqa" })).Message);
    }
}
