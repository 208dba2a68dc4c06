using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Rala;
using Microsoft.ML.LinearAttention.Attention.VisionKit;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class RalaTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (batch = count), rope, dtype
        new object[] { new long[] { 39 }, true, ScalarType.Float32 },
        new object[] { new long[] { 47, 26, 1 }, true, ScalarType.Float32 },
        new object[] { new long[] { 31, 17 }, false, ScalarType.Float32 },
        new object[] { new long[] { 35, 12 }, true, ScalarType.BFloat16 },
    };

    private static Tensor Phi(Tensor x) => nn.functional.elu(x, 1.0) + 1;

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesNaiveOutputsAndGradients(long[] lengths, bool rope, ScalarType dtype)
        => RopeKernelAssert.SameOutputsAndGradients(lengths, rope, dtype,
            (q, k, v, m, c, s) => RalaKernels.Bidirectional(Phi(q), Phi(k), v, m, c, s),
            (q, k, v, m, c, s) => RalaKernels.BidirectionalNaive(Phi(q), Phi(k), v, m, c, s), "rala");

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void DecoupledKernelMatchesNaive(ScalarType dtype)
    {
        Torch.Seed();
        var mask = KernelAssert.LengthMask(29, 14);
        var q = KernelAssert.Random(new long[] { 2, 3, 29, 8 }, dtype);
        var k = KernelAssert.Random(new long[] { 2, 3, 29, 8 }, dtype);
        var v = KernelAssert.Random(new long[] { 2, 3, 29, 4 }, dtype);
        var (cos, sin) = Rope.Tables(29, 8, null, torch.CPU);
        KernelAssert.SameOutputsAndGradients(
            i => DecoupledLinearKernels.Bidirectional(Phi(i[0]), Phi(i[1]), i[2], mask, cos, sin),
            i => DecoupledLinearKernels.BidirectionalNaive(Phi(i[0]), Phi(i[1]), i[2], mask, cos, sin),
            new[] { q, k, v }, dtype, "decoupled", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void MixerRespectsPaddingAndTrainsOnAGrid()
    {
        Torch.Seed();
        using var mixer = new RalaMixer(new MixerConfig(16, 2), new RalaOptions());
        MixerAssert.PaddingNeverLeaks(mixer, new long[] { 10, 7, 2 });
        MixerAssert.TrainsOnGrid(mixer, (4, 4), 16, new long[] { 16, 11 });
    }
}
