using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.SlidingWindow;
using Microsoft.ML.LinearAttention.Attention.Softmax;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class SlidingWindowTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths, causal, window, block, dtype
        new object[] { new long[] { 37 }, false, 5, 4, ScalarType.Float32 },
        new object[] { new long[] { 45, 30, 1 }, false, 3, 64, ScalarType.Float32 },
        new object[] { new long[] { 45, 30, 1 }, true, 7, 4, ScalarType.Float32 },
        new object[] { new long[] { 23 }, true, 1, 8, ScalarType.Float32 },
        new object[] { new long[] { 19, 12 }, false, 40, 16, ScalarType.Float32 },
        new object[] { new long[] { 70, 33 }, false, 9, 8, ScalarType.BFloat16 },
        new object[] { new long[] { 70, 33 }, true, 9, 64, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void BandedMatchesDenseNaiveOutputsAndGradients(long[] lengths, bool causal, int window, int block, ScalarType dtype)
    {
        Torch.Seed();
        var mask = KernelAssert.LengthMask(lengths);
        var (q, k, v) = KernelAssert.Qkv(lengths, dtype);
        KernelAssert.SameOutputsAndGradients(
            i => SlidingWindowKernels.Attention(i[0], i[1], i[2], mask, window, causal, block),
            i => SlidingWindowKernels.AttentionNaive(i[0], i[1], i[2], mask, window, causal),
            new[] { q, k, v }, dtype, $"swa causal={causal} window={window} block={block}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void GroupedQueryHeadsAndNoMaskMatchNaive()
    {
        Torch.Seed();
        var q = KernelAssert.Random(new long[] { 2, 4, 21, 8 }, ScalarType.Float32);
        var k = KernelAssert.Random(new long[] { 2, 2, 21, 8 }, ScalarType.Float32);
        var v = KernelAssert.Random(new long[] { 2, 2, 21, 8 }, ScalarType.Float32);
        KernelAssert.SameOutputsAndGradients(
            i => SlidingWindowKernels.Attention(i[0], i[1], i[2], null, 4, block: 8),
            i => SlidingWindowKernels.AttentionNaive(i[0], i[1], i[2], null, 4),
            new[] { q, k, v }, ScalarType.Float32, "grouped swa");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SwaMixerEqualsTheSoftmaxMixerWithTheSameWindow(bool causal)
    {
        Torch.Seed();
        var config = new MixerConfig(16, 2, causal);
        using var swa = MixerRegistry.Create("swa", config, new SlidingWindowOptions { Window = 3, BlockSize = 2 });
        using var dense = MixerRegistry.Create("softmax", config, new SoftmaxOptions { Window = 3 });
        dense.load_state_dict(swa.state_dict());
        var x = torch.randn(2, 11, 16);
        var mask = KernelAssert.LengthMask(11, 6);
        KernelAssert.Close(swa.forward(x, mask), dense.forward(x, mask), 1e-5, 1e-4, "swa vs softmax window");
        Assert.Equal(512, new SlidingWindowOptions().Window);
    }

    [Fact]
    public void BadWindowIsRejectedWithTheRule()
    {
        var x = torch.zeros(1, 1, 4, 2);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => SlidingWindowKernels.Attention(x, x, x, null, 0));
        Assert.Contains("window must be positive", ex.Message);
        var mixerEx = Assert.Throws<ArgumentOutOfRangeException>(() => MixerRegistry.Create("swa", new MixerConfig(8, 2), new SlidingWindowOptions { Window = 0 }));
        Assert.Contains("use \"softmax\" for full attention", mixerEx.Message);
    }
}
