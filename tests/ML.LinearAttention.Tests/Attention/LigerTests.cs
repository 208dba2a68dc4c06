using Microsoft.ML.LinearAttention.Attention;
using DecayKernels = Microsoft.ML.LinearAttention.Attention.Decay.DecayKernels;
using Microsoft.ML.LinearAttention.Attention.Liger;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class LigerTests
{
    public static IEnumerable<object[]> GlaCases() => new[]
    {
        // lengths, causal, chunk, dtype
        new object[] { new long[] { 37 }, true, 16, ScalarType.Float32 },
        new object[] { new long[] { 45, 30, 1 }, true, 64, ScalarType.Float32 },
        new object[] { new long[] { 45, 30, 1 }, false, 16, ScalarType.Float32 },
        new object[] { new long[] { 70, 33 }, false, 64, ScalarType.BFloat16 },
        new object[] { new long[] { 70, 33 }, true, 16, ScalarType.BFloat16 },
    };

    /// <summary>q, k, v and the raw gate input (gates = logsigmoid(3·x)/2: strong decays stress the chunk split).</summary>
    private static Tensor[] GlaInputs(long[] lengths, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        return new[]
        {
            KernelAssert.Random(new[] { b, 2, t, 6 }, dtype),
            KernelAssert.Random(new[] { b, 2, t, 6 }, dtype),
            KernelAssert.Random(new[] { b, 2, t, 5 }, dtype),
            KernelAssert.Random(new[] { b, 2, t, 6 }, ScalarType.Float32),
        };
    }

    private static Tensor Decay(Tensor x) => LigerKernels.Gate(3 * x, 2);

    [Theory]
    [MemberData(nameof(GlaCases))]
    public void SharedGlaKernelWithLigersGatesMatchesAnIndependentNaiveTwin(long[] lengths, bool causal, int chunk, ScalarType dtype)
    {
        var x = GlaInputs(lengths, dtype);
        var mask = KernelAssert.LengthMask(lengths);
        KernelAssert.SameOutputsAndGradients(
            i => causal
                ? DecayKernels.Causal(i[0], i[1], i[2], Decay(i[3]), mask, scale: 1.0, chunk)
                : DecayKernels.Bidirectional(i[0], i[1], i[2], Decay(i[3]), Decay(i[3]), mask, scale: 1.0, chunk),
            i => LigerGlaKernels.Naive(i[0], i[1], i[2], Decay(i[3]), mask, causal),
            x, dtype, $"gla causal={causal} chunk={chunk}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void BidirectionalGlaIgnoresAPaddedTail()
    {
        Torch.Seed();
        var x = GlaInputs(new long[] { 12 }, ScalarType.Float32).Select(t => t.detach()).ToArray();
        var mask = KernelAssert.LengthMask(new long[] { 12 }).logical_and(torch.arange(12).lt(8).unsqueeze(0));
        var padded = DecayKernels.Bidirectional(x[0], x[1], x[2], Decay(x[3]), Decay(x[3]), mask, scale: 1.0, chunk: 4);
        var garbage = x.Select(t => t.clone()).ToArray();
        foreach (var t in garbage) t[.., .., 8.., ..] = torch.full_like(t[.., .., 8.., ..], 50.0);
        var again = DecayKernels.Bidirectional(garbage[0], garbage[1], garbage[2], Decay(garbage[3]), Decay(garbage[3]), mask, scale: 1.0, chunk: 4);
        KernelAssert.Close(again, padded, 1e-5, 1e-5, "padded tail");
        var cut = x.Select(t => t.narrow(2, 0, 8)).ToArray();
        var unpadded = DecayKernels.Bidirectional(cut[0], cut[1], cut[2], Decay(cut[3]), Decay(cut[3]), null, scale: 1.0, chunk: 4);
        KernelAssert.Close(padded.narrow(2, 0, 8), unpadded, 1e-5, 1e-5, "equals the unpadded row");
    }

    public static IEnumerable<object[]> LigerCases() => new[]
    {
        // lengths, causal, window, dtype
        new object[] { new long[] { 37 }, false, 5, ScalarType.Float32 },
        new object[] { new long[] { 45, 30, 1 }, true, 7, ScalarType.Float32 },
        new object[] { new long[] { 29, 14 }, true, 0, ScalarType.Float32 },
        new object[] { new long[] { 70, 33 }, false, 9, ScalarType.BFloat16 },
        new object[] { new long[] { 41, 20 }, true, 6, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(LigerCases))]
    public void LigerAttentionMatchesNaiveWithGatesFromKeys(long[] lengths, bool causal, int window, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        var mask = KernelAssert.LengthMask(lengths);
        var x = new[]
        {
            KernelAssert.Random(new[] { b, 2, t, 8 }, dtype),
            KernelAssert.Random(new[] { b, 2, t, 8 }, dtype),
            KernelAssert.Random(new[] { b, 2, t, 8 }, dtype),
        };
        Tensor Run(Tensor[] i, bool fast)
        {
            var (q, k) = (Rotary.Apply(i[0], 10000), Rotary.Apply(i[1], 10000));
            var (fq, fk, g) = (LigerKernels.FeatureMap(i[0]), LigerKernels.FeatureMap(i[1]), LigerKernels.Gate(i[1]));
            return fast
                ? LigerKernels.Attention(q, k, fq, fk, g, i[2], mask, window, causal, chunk: 16)
                : LigerKernels.AttentionNaive(q, k, fq, fk, g, i[2], mask, window, causal);
        }
        KernelAssert.SameOutputsAndGradients(i => Run(i, true), i => Run(i, false), x, dtype,
            $"liger causal={causal} window={window}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void RotaryScoresDependOnlyOnTheOffset()
    {
        Torch.Seed();
        var q = torch.randn(1, 1, 1, 8).expand(1, 1, 10, 8);
        var k = torch.randn(1, 1, 1, 8).expand(1, 1, 10, 8);
        var s = Rotary.Apply(q, 10000).matmul(Rotary.Apply(k, 10000).transpose(-1, -2))[0, 0];
        KernelAssert.Close(s.diagonal(2), s.diagonal(2).narrow(0, 0, 1).expand(8), 1e-5, 1e-5, "offset 2");
        KernelAssert.Close(s.diagonal(), (q[0, 0, 0] * k[0, 0, 0]).sum().expand(10), 1e-5, 1e-5, "offset 0 = plain dot product");
    }

    [Fact]
    public void MixerAddsNoParametersAndValidatesOptions()
    {
        using var mixer = MixerRegistry.Create("liger", new MixerConfig(32, 4, Causal: true));
        Assert.Equal(4, mixer.parameters().Count());
        var ex = Assert.Throws<ArgumentException>(() => MixerRegistry.Create("liger", new MixerConfig(36, 4)));
        Assert.Contains("RoPE needs an even head dimension", ex.Message);
        using var noRope = MixerRegistry.Create("liger", new MixerConfig(36, 4), new LigerOptions { RopeTheta = 0, Window = 0 });
        Assert.Equal(new long[] { 1, 5, 36 }, noRope.forward(torch.randn(1, 5, 36), null).shape);
    }
}
