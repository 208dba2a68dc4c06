using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class LinearKernelTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // batch, heads, lengths (padding when they differ), dk, dv, dtype, normalize
        new object[] { new long[] { 37 }, 2, 8, 8, ScalarType.Float32, true },
        new object[] { new long[] { 70, 45, 1 }, 3, 8, 5, ScalarType.Float32, true },
        new object[] { new long[] { 70, 33 }, 2, 16, 8, ScalarType.Float32, false },
        new object[] { new long[] { 65, 64 }, 2, 8, 8, ScalarType.BFloat16, true },
    };

    private static Tensor[] Inputs(long[] lengths, int h, int dk, int dv, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        var q = nn.functional.relu(KernelAssert.Random(new[] { b, h, t, dk }, dtype, requiresGrad: false)).requires_grad_(true);
        var k = nn.functional.relu(KernelAssert.Random(new[] { b, h, t, dk }, dtype, requiresGrad: false)).requires_grad_(true);
        var v = KernelAssert.Random(new[] { b, h, t, dv }, dtype);
        return new[] { q, k, v };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BidirectionalMatchesNaiveOutputsAndGradients(long[] lengths, int h, int dk, int dv, ScalarType dtype, bool normalize)
    {
        var x = Inputs(lengths, h, dk, dv, dtype);
        var mask = KernelAssert.LengthMask(lengths);
        KernelAssert.SameOutputsAndGradients(
            i => LinearAttentionKernels.Bidirectional(i[0], i[1], i[2], mask, normalize),
            i => LinearAttentionKernels.BidirectionalNaive(i[0], i[1], i[2], mask, normalize),
            x, dtype, "bidirectional linear", KernelAssert.HeadMask(mask));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void CausalChunkedMatchesNaiveOutputsAndGradients(long[] lengths, int h, int dk, int dv, ScalarType dtype, bool normalize)
    {
        var x = Inputs(lengths, h, dk, dv, dtype);
        var mask = KernelAssert.LengthMask(lengths);
        foreach (int chunk in new[] { 16, 64 })
            KernelAssert.SameOutputsAndGradients(
                i => LinearAttentionKernels.Causal(i[0], i[1], i[2], mask, normalize, chunk: chunk),
                i => LinearAttentionKernels.CausalNaive(i[0], i[1], i[2], mask, normalize),
                x, dtype, $"causal linear chunk {chunk}", KernelAssert.HeadMask(mask));
    }

    public static IEnumerable<object[]> NormalizedCases() => Cases().Where(c => (bool)c[5]);

    [Theory]
    [MemberData(nameof(NormalizedCases))]
    public void CausalFoldedNormalizerMatchesNaiveOutputsAndGradients(long[] lengths, int h, int dk, int dv, ScalarType dtype, bool normalize)
    {
        Assert.True(normalize); // the folded form is the normalized one
        var x = Inputs(lengths, h, dk, dv, dtype);
        var mask = KernelAssert.LengthMask(lengths);
        foreach (int chunk in new[] { 16, 64 })
            KernelAssert.SameOutputsAndGradients(
                i => LinearAttentionKernels.CausalFoldedNormalizer(i[0], i[1], i[2], mask, chunk: chunk),
                i => LinearAttentionKernels.CausalNaive(i[0], i[1], i[2], mask),
                x, dtype, $"causal linear (folded normalizer) chunk {chunk}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void LongSequencesUseBlockedStateAndStillMatchNaive()
    {
        // T > 2048 takes the 1024-token partial-product path of the state, with a remainder block.
        var x = Inputs(new long[] { 2300, 2100 }, 1, 4, 4, ScalarType.Float32);
        var mask = KernelAssert.LengthMask(2300, 2100);
        KernelAssert.SameOutputsAndGradients(
            i => LinearAttentionKernels.Bidirectional(i[0], i[1], i[2], mask),
            i => LinearAttentionKernels.BidirectionalNaive(i[0], i[1], i[2], mask),
            x, ScalarType.Float32, "blocked bidirectional", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void CausalRecurrentAgreesWithNaive()
    {
        var x = Inputs(new long[] { 19, 11 }, 2, 4, 3, ScalarType.Float32);
        var mask = KernelAssert.LengthMask(19, 11);
        KernelAssert.SameOutputsAndGradients(
            i => LinearAttentionKernels.CausalRecurrent(i[0], i[1], i[2], mask),
            i => LinearAttentionKernels.CausalNaive(i[0], i[1], i[2], mask),
            x, ScalarType.Float32, "causal recurrent", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void PaddedKeysContributeNothing()
    {
        Torch.Seed();
        var q = nn.functional.relu(torch.randn(1, 2, 10, 4));
        var k = nn.functional.relu(torch.randn(1, 2, 10, 4));
        var v = torch.randn(1, 2, 10, 4);
        var mask = torch.arange(10).unsqueeze(0) < 6;
        var padded = LinearAttentionKernels.Bidirectional(q, k, v, mask);
        // Garbage in the padded tail must not change the real outputs.
        var k2 = k.clone(); k2[.., .., 6.., ..] = torch.full(new long[] { 1, 2, 4, 4 }, 100.0f);
        var v2 = v.clone(); v2[.., .., 6.., ..] = torch.full(new long[] { 1, 2, 4, 4 }, -100.0f);
        var again = LinearAttentionKernels.Bidirectional(q, k2, v2, mask);
        KernelAssert.Close(again, padded, 1e-5, 1e-5, "padding invariance");
        // And equals the unpadded computation on the first 6 tokens.
        var trimmed = LinearAttentionKernels.Bidirectional(q[.., .., ..6, ..], k[.., .., ..6, ..], v[.., .., ..6, ..], null);
        KernelAssert.Close(padded[.., .., ..6, ..], trimmed, 1e-5, 1e-5, "true-length normalizer");
        Assert.Equal(0.0, padded[.., .., 6.., ..].abs().sum().item<float>());
    }

    [Fact]
    public void BadShapesAreReportedWithTheActualShapes()
    {
        var q = torch.zeros(2, 2, 5, 4);
        var ex = Assert.Throws<ArgumentException>(() => LinearAttentionKernels.Bidirectional(q, torch.zeros(2, 2, 6, 4), torch.zeros(2, 2, 5, 4), null));
        Assert.Contains("[2, 2, 6, 4]", ex.Message);
        var ex2 = Assert.Throws<ArgumentException>(() => LinearAttentionKernels.Bidirectional(q, q, q, torch.ones(2, 4, dtype: ScalarType.Bool)));
        Assert.Contains("keyPaddingMask must be [B, T] = [2, 5]", ex2.Message);
    }
}
