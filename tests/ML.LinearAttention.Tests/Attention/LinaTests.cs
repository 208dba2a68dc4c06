using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Lina;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class LinaTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (batch = count), gates, dtype
        new object[] { new long[] { 41 }, true, ScalarType.Float32 },
        new object[] { new long[] { 45, 28, 1 }, true, ScalarType.Float32 },
        new object[] { new long[] { 30, 11 }, false, ScalarType.Float32 },
        new object[] { new long[] { 37, 19 }, true, ScalarType.BFloat16 },
    };

    private static Tensor Phi(Tensor x) => nn.functional.relu(x) + 1e-6;

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesNaiveIncludingGateGradients(long[] lengths, bool gated, ScalarType dtype)
    {
        Torch.Seed();
        long t = lengths.Max();
        var mask = KernelAssert.LengthMask(lengths);
        var (q, k, v) = KernelAssert.Qkv(lengths, dtype);
        // Positive gates near 1 (their initial value), one per head and position, shared by the batch.
        var gk = (KernelAssert.Random(new[] { 1, 2, t }, ScalarType.Float32, requiresGrad: false, scale: 0.2) + 1).to(dtype).requires_grad_(true);
        var gv = (KernelAssert.Random(new[] { 1, 2, t }, ScalarType.Float32, requiresGrad: false, scale: 0.2) + 1).to(dtype).requires_grad_(true);
        var inputs = gated ? new[] { q, k, v, gk, gv } : new[] { q, k, v };
        KernelAssert.SameOutputsAndGradients(
            i => LinaKernels.Bidirectional(Phi(i[0]), Phi(i[1]), i[2], gated ? i[3] : null, gated ? i[4] : null, mask),
            i => LinaKernels.BidirectionalNaive(Phi(i[0]), Phi(i[1]), i[2], gated ? i[3] : null, gated ? i[4] : null, mask),
            inputs, dtype, $"lina gated={gated}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void AZeroGateRemovesATokenFromMemory()
    {
        Torch.Seed();
        var q = Phi(torch.randn(1, 1, 6, 4));
        var k = Phi(torch.randn(1, 1, 6, 4));
        var v = torch.randn(1, 1, 6, 3);
        var gate = torch.ones(1, 1, 6); gate[0, 0, 5] = torch.tensor(0f);
        var gated = LinaKernels.Bidirectional(q, k, v, gate, null, null);
        // Same as attending over tokens 0..4 only (the 1/n of the means cancels in the division).
        var a = q.matmul(k.narrow(2, 0, 5).transpose(-1, -2));
        var expected = a.matmul(v.narrow(2, 0, 5)) / a.sum(-1, true);
        KernelAssert.Close(gated, expected, 1e-4, 1e-4, "zero key gate");
    }

    [Fact]
    public void MixerRespectsPaddingTrainsOnAGridAndRefusesSequencesPastTheGate()
    {
        Torch.Seed();
        using var mixer = new LinaMixer(new MixerConfig(16, 2), new LinaOptions { MaxLength = 20 });
        MixerAssert.PaddingNeverLeaks(mixer, new long[] { 13, 8, 1 });
        MixerAssert.TrainsOnGrid(mixer, (3, 5), 17, new long[] { 17, 12 });
        var ex = Assert.Throws<ArgumentException>(() => mixer.forward(torch.randn(1, 21, 16), null));
        Assert.Contains("MaxLength", ex.Message);
    }
}
