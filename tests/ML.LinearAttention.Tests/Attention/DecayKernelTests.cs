using Microsoft.ML.LinearAttention.Attention.Decay;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>The shared decayed-linear-attention kernel (RetNet, Lightning, simple GLA, GLA) with learned gates.</summary>
public class DecayKernelTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (padding when they differ), heads, dk, dv, dtype, per-channel gate
        // (batch 1, bf16 and the fla gate scale are covered by SimpleGlaTests and GlaTests)
        new object[] { new long[] { 70, 45, 1 }, 2, 8, 5, ScalarType.Float32, false },
        new object[] { new long[] { 70, 45, 1 }, 2, 4, 5, ScalarType.Float32, true },
    };

    /// <summary>q, k, v and two gate pre-activations (forward, backward); log decay = logsigmoid(pre)/normalizer.</summary>
    internal static Tensor[] Inputs(long[] lengths, int h, int dk, int dv, ScalarType dtype, bool perChannel, double gateScale = 2.0)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        var gShape = perChannel ? new[] { b, h, t, dk } : new[] { b, h, t };
        return new[]
        {
            KernelAssert.Random(new[] { b, h, t, dk }, dtype),
            KernelAssert.Random(new[] { b, h, t, dk }, dtype),
            KernelAssert.Random(new[] { b, h, t, dv }, dtype),
            KernelAssert.Random(gShape, ScalarType.Float32, scale: gateScale),
            KernelAssert.Random(gShape, ScalarType.Float32, scale: gateScale),
        };
    }

    /// <summary>
    /// A gated mechanism's causal (q, k, v, gate) and bidirectional (q, k, v, forward gate, backward gate) fast kernels
    /// against their naive twins on <see cref="Inputs"/>(lengths, 2 heads, dk 8, dv 6); each function gets the inputs
    /// and the padding mask.
    /// </summary>
    internal static void GatedKernelsMatchNaive(long[] lengths, ScalarType dtype, bool perChannel, string what,
        Func<Tensor[], Tensor, Tensor> causal, Func<Tensor[], Tensor, Tensor> causalNaive,
        Func<Tensor[], Tensor, Tensor> bidirectional, Func<Tensor[], Tensor, Tensor> bidirectionalNaive)
    {
        var x = Inputs(lengths, 2, 8, 6, dtype, perChannel);
        var mask = KernelAssert.LengthMask(lengths);
        KernelAssert.SameOutputsAndGradients(i => causal(i, mask), i => causalNaive(i, mask),
            x.Take(4).ToArray(), dtype, $"{what} causal", KernelAssert.HeadMask(mask));
        KernelAssert.SameOutputsAndGradients(i => bidirectional(i, mask), i => bidirectionalNaive(i, mask),
            x, dtype, $"{what} bidirectional", KernelAssert.HeadMask(mask));
    }

    internal static Tensor Log(Tensor pre, double normalizer = 4.0) => nn.functional.logsigmoid(pre) / normalizer;

    [Theory]
    [MemberData(nameof(Cases))]
    public void CausalChunkedMatchesRecurrentOutputsAndGradients(long[] lengths, int h, int dk, int dv, ScalarType dtype, bool perChannel)
    {
        var x = Inputs(lengths, h, dk, dv, dtype, perChannel);
        x[4].requires_grad_(false);
        var mask = KernelAssert.LengthMask(lengths);
        // 24 has 12-token sub-chunks (two per chunk) for per-channel gates; 64 (the default) over T = 70 is two chunks,
        // the second partial; bf16 on CPU is slow, one chunk size suffices.
        var chunks = dtype == ScalarType.BFloat16 ? new[] { 16 } : perChannel ? new[] { 16, 24, 64 } : new[] { 16, 64 };
        foreach (int chunk in chunks)
            KernelAssert.SameOutputsAndGradients(
                i => DecayKernels.Causal(i[0], i[1], i[2], Log(i[3]), mask, chunk: chunk),
                i => DecayKernels.CausalRecurrent(i[0], i[1], i[2], Log(i[3]), mask),
                x, dtype, $"causal decay chunk {chunk} perChannel={perChannel}", KernelAssert.HeadMask(mask));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BidirectionalMatchesNaiveOutputsAndGradients(long[] lengths, int h, int dk, int dv, ScalarType dtype, bool perChannel)
    {
        var x = Inputs(lengths, h, dk, dv, dtype, perChannel);
        var mask = KernelAssert.LengthMask(lengths);
        foreach (int chunk in dtype == ScalarType.BFloat16 ? new[] { 16 } : new[] { 16, 64 })
            KernelAssert.SameOutputsAndGradients(
                i => DecayKernels.Bidirectional(i[0], i[1], i[2], Log(i[3]), Log(i[4]), mask, chunk: chunk),
                i => DecayKernels.BidirectionalNaive(i[0], i[1], i[2], Log(i[3]), Log(i[4]), mask),
                x, dtype, $"bidirectional decay chunk {chunk} perChannel={perChannel}", KernelAssert.HeadMask(mask));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BidirectionalIsForwardScanPlusReversedScanMinusDiagonal(bool perChannel)
    {
        var x = Inputs(new long[] { 23 }, 2, 4, 3, ScalarType.Float32, perChannel);
        var (q, k, v, gf, gb) = (x[0], x[1], x[2], Log(x[3]), Log(x[4]));
        double scale = 0.5;
        var fwd = DecayKernels.CausalRecurrent(q, k, v, gf, null, scale);
        var bwd = DecayKernels.CausalRecurrent(q.flip(2), k.flip(2), v.flip(2), gb.flip(2), null, scale).flip(2);
        var expected = fwd + bwd - scale * (q * k).sum(-1, keepdim: true) * v;
        KernelAssert.Close(DecayKernels.BidirectionalNaive(q, k, v, gf, gb, null, scale), expected, 1e-5, 1e-4, "LION merge");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PaddedTailChangesNothingAndReverseScanStartsAtLastRealToken(bool perChannel)
    {
        var x = Inputs(new long[] { 30 }, 2, 4, 4, ScalarType.Float32, perChannel);
        var (q, k, v, gf, gb) = (x[0].detach(), x[1].detach(), x[2].detach(), Log(x[3]).detach(), Log(x[4]).detach());
        var mask = KernelAssert.LengthMask(new long[] { 30, 19 });
        Tensor Two(Tensor a) => torch.cat(new[] { a, a }, 0);
        var (q2, k2, v2, gf2, gb2) = (Two(q), Two(k), Two(v), Two(gf), Two(gb));
        // Garbage (large keys, strong decays) in row 1's padded tail.
        k2[1, .., 19.., ..] = torch.full(new long[] { 2, 11, 4 }, 50.0f);
        v2[1, .., 19.., ..] = torch.full(new long[] { 2, 11, 4 }, -50.0f);
        if (perChannel) gb2[1, .., 19.., ..] = torch.full(new long[] { 2, 11, 4 }, -30.0f);
        else gb2[1, .., 19..] = torch.full(new long[] { 2, 11 }, -30.0f);
        var padded = DecayKernels.Bidirectional(q2, k2, v2, gf2, gb2, mask, chunk: 8);
        var trimmed = DecayKernels.Bidirectional(q[.., .., ..19], k[.., .., ..19], v[.., .., ..19],
            perChannel ? gf[.., .., ..19, ..] : gf[.., .., ..19], perChannel ? gb[.., .., ..19, ..] : gb[.., .., ..19], null, chunk: 8);
        KernelAssert.Close(padded[1, .., ..19, ..].unsqueeze(0), trimmed, 1e-5, 1e-4, "padded row equals its trimmed row");
        Assert.Equal(0.0, padded[1, .., 19.., ..].abs().sum().item<float>());
        var full = DecayKernels.Bidirectional(q, k, v, gf, gb, null, chunk: 8);
        KernelAssert.Close(padded[0].unsqueeze(0), full, 1e-5, 1e-4, "unpadded row unchanged");
    }

    [Fact]
    public void VeryStrongGatesStayFiniteAndExact()
    {
        // logsigmoid of N(0, 8²) pre-activations: per-step log decays down to about −30, so cumulative decays within a
        // chunk reach −1000s; every exponent the fast kernel takes must stay ≤ 0.
        foreach (bool perChannel in new[] { false, true })
        {
            var x = Inputs(new long[] { 100, 61 }, 2, 4, 4, ScalarType.Float32, perChannel, gateScale: 8.0);
            var mask = KernelAssert.LengthMask(100, 61);
            KernelAssert.SameOutputsAndGradients(
                i => DecayKernels.Causal(i[0], i[1], i[2], Log(i[3], 1.0), mask),
                i => DecayKernels.CausalRecurrent(i[0], i[1], i[2], Log(i[3], 1.0), mask),
                x.Take(4).ToArray(), ScalarType.Float32, $"strong gates perChannel={perChannel}", KernelAssert.HeadMask(mask));
        }
    }

    [Fact]
    public void ChunkScanEqualsSequentialRecurrence()
    {
        Torch.Seed();
        var u = torch.randn(new long[] { 1, 2, 13, 3, 2 });
        var a = nn.functional.logsigmoid(torch.randn(new long[] { 1, 2, 13, 3, 1 }));
        var s = torch.zeros(1, 2, 3, 2);
        var expected = new List<Tensor>();
        for (int i = 0; i < 13; i++) { s = a[.., .., i].exp() * s + u[.., .., i]; expected.Add(s.unsqueeze(2)); }
        KernelAssert.Close(DecayChunked.Scan(u, a), torch.cat(expected.ToArray(), 2), 1e-5, 1e-5, "log-depth scan");
    }

    [Fact]
    public void BadGateShapesAreNamed()
    {
        var q = torch.zeros(2, 2, 5, 4);
        var ex = Assert.Throws<ArgumentException>(() => DecayKernels.Causal(q, q, q, torch.zeros(2, 2, 4), null));
        Assert.Contains("g must be [B, H, T] = [2, 2, 5]", ex.Message);
        var ex2 = Assert.Throws<ArgumentException>(() => DecayKernels.Bidirectional(q, q, q, torch.zeros(2, 2, 5), torch.zeros(2, 2, 5, 4), null));
        Assert.Contains("same shape", ex2.Message);
    }
}
