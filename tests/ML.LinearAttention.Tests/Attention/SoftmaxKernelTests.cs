using Microsoft.ML.LinearAttention.Attention.Softmax;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class SoftmaxKernelTests
{
    [Theory]
    // lengths (padding when they differ), causal, window, dtype
    [InlineData(new long[] { 23, 9, 1 }, false, 0, ScalarType.Float32)]
    [InlineData(new long[] { 23, 9, 1 }, true, 0, ScalarType.Float32)]
    [InlineData(new long[] { 23, 9, 1 }, false, 5, ScalarType.Float32)]
    [InlineData(new long[] { 23, 9, 1 }, true, 7, ScalarType.Float32)]
    [InlineData(new long[] { 17 }, false, 0, ScalarType.Float32)]
    [InlineData(new long[] { 17 }, true, 5, ScalarType.Float32)]
    [InlineData(new long[] { 23, 9, 1 }, false, 0, ScalarType.BFloat16)]
    [InlineData(new long[] { 23, 9, 1 }, true, 4, ScalarType.BFloat16)]
    public void SdpaMatchesNaiveWithPadding(long[] lengths, bool causal, int window, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        var mask = KernelAssert.LengthMask(lengths);
        var q = KernelAssert.Random(new[] { b, 2, t, 8 }, dtype);
        var k = KernelAssert.Random(new[] { b, 2, t, 8 }, dtype);
        var v = KernelAssert.Random(new[] { b, 2, t, 8 }, dtype);
        KernelAssert.SameOutputsAndGradients(
            i => SoftmaxKernels.Attention(i[0], i[1], i[2], mask, causal, window),
            i => SoftmaxKernels.AttentionNaive(i[0], i[1], i[2], mask, causal, window),
            new[] { q, k, v }, dtype, $"softmax causal={causal} window={window}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void GroupedQueryHeadsMatchNaive()
    {
        Torch.Seed();
        var q = KernelAssert.Random(new long[] { 2, 4, 11, 8 }, ScalarType.Float32);
        var k = KernelAssert.Random(new long[] { 2, 2, 11, 8 }, ScalarType.Float32);
        var v = KernelAssert.Random(new long[] { 2, 2, 11, 8 }, ScalarType.Float32);
        KernelAssert.SameOutputsAndGradients(
            i => SoftmaxKernels.Attention(i[0], i[1], i[2], null),
            i => SoftmaxKernels.AttentionNaive(i[0], i[1], i[2], null),
            new[] { q, k, v }, ScalarType.Float32, "grouped softmax");
    }

    [Fact]
    public void NoMaskEqualsFullLengthMask()
    {
        Torch.Seed();
        var q = torch.randn(2, 2, 9, 8);
        var plain = SoftmaxKernels.Attention(q, q, q, null);
        var masked = SoftmaxKernels.Attention(q, q, q, KernelAssert.LengthMask(9, 9));
        KernelAssert.Close(masked, plain, 1e-5, 1e-5, "full mask");
    }
}
