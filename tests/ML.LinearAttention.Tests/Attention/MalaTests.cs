using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Mala;
using Microsoft.ML.LinearAttention.Attention.VisionKit;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class MalaTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (batch = count), rope, dtype
        new object[] { new long[] { 37 }, true, ScalarType.Float32 },
        new object[] { new long[] { 45, 30, 1 }, true, ScalarType.Float32 },
        new object[] { new long[] { 45, 30 }, false, ScalarType.Float32 },
        new object[] { new long[] { 33, 20 }, true, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesNaiveOutputsAndGradients(long[] lengths, bool rope, ScalarType dtype)
        => RopeKernelAssert.SameOutputsAndGradients(lengths, rope, dtype,
            (q, k, v, m, c, s) => MalaKernels.Bidirectional(Phi(q), Phi(k), v, m, c, s),
            (q, k, v, m, c, s) => MalaKernels.BidirectionalNaive(Phi(q), Phi(k), v, m, c, s), "mala");

    private static Tensor Phi(Tensor x) => nn.functional.elu(x, 1.0) + 1;

    [Fact]
    public void WeightsSumToOneSoConstantValuesPassThrough()
    {
        Torch.Seed();
        var mask = KernelAssert.LengthMask(9, 4);
        var q = nn.functional.elu(torch.randn(2, 2, 9, 4), 1.0) + 1;
        var k = nn.functional.elu(torch.randn(2, 2, 9, 4), 1.0) + 1;
        // Without RoPE (which rotates the numerator only) the weights sum to one exactly.
        var o = MalaKernels.Bidirectional(q, k, torch.full(2, 2, 9, 3, 2.5f), mask);
        KernelAssert.Close(o, torch.full(2, 2, 9, 3, 2.5f), 1e-4, 1e-4, "rows sum to one", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void MixerRespectsPaddingInTextAndTrainsOnAGrid()
    {
        Torch.Seed();
        using var mixer = new MalaMixer(new MixerConfig(16, 2), new MalaOptions());
        MixerAssert.PaddingNeverLeaks(mixer, new long[] { 11, 6, 3 });
        MixerAssert.TrainsOnGrid(mixer, (3, 4), 13, new long[] { 13, 13 });
        using var noGate = new MalaMixer(new MixerConfig(16, 4), new MalaOptions { OutputGate = false, LepeKernel = 0, Rope = false });
        MixerAssert.PaddingNeverLeaks(noGate, new long[] { 8, 5 });
    }

    [Fact]
    public void BadOptionsAreReported()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new MalaMixer(new MixerConfig(16, 2), new MalaOptions { LepeKernel = 4 }));
        Assert.Contains("LepeKernel", ex.Message);
        Assert.Throws<ArgumentException>(() => new MalaMixer(new MixerConfig(15, 5), new MalaOptions()));
    }
}
