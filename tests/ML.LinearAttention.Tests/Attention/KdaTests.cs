using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Kda;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class KdaTests
{
    public static IEnumerable<object[]> Cases() => DeltaTestInputs.Cases(oddChunk: true);

    [Theory]
    [MemberData(nameof(Cases))]
    public void CausalChunkedMatchesRecurrentOutputsAndGradients(long[] lengths, int h, int dk, int dv, ScalarType dtype, int chunk)
        => DeltaTestInputs.CheckAgainstNaive(lengths, h, dk, dv, dtype, chunk, DecayKind.Channel, bidirectional: false);

    [Theory]
    [MemberData(nameof(Cases))]
    public void BidirectionalMatchesRecurrentOutputsAndGradients(long[] lengths, int h, int dk, int dv, ScalarType dtype, int chunk)
        => DeltaTestInputs.CheckAgainstNaive(lengths, h, dk, dv, dtype, chunk, DecayKind.Channel, bidirectional: true);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PaddingTouchesNoStateAndRowsMatchTheirTrueLength(bool bidirectional)
        => DeltaTestInputs.CheckPadding(DecayKind.Channel, bidirectional);

    [Fact]
    public void PublicKernelsMatchTheirNaiveTwinsAndRejectScalarGates()
    {
        var x = DeltaTestInputs.Make(new long[] { 21, 13 }, 2, 4, 4, ScalarType.Float32, DecayKind.Channel, bidirectional: true);
        var mask = KernelAssert.LengthMask(21, 13);
        KernelAssert.SameOutputsAndGradients(
            i => KdaKernels.Bidirectional(i[0], i[1], i[2], i[3], i[4], i[5], i[6], mask, chunk: 8),
            i => KdaKernels.BidirectionalNaive(i[0], i[1], i[2], i[3], i[4], i[5], i[6], mask),
            x, ScalarType.Float32, "KDA bidirectional", KernelAssert.HeadMask(mask));
        KernelAssert.SameOutputsAndGradients(
            i => KdaKernels.Causal(i[0], i[1], i[2], i[3], i[4], mask, chunk: 8),
            i => KdaKernels.CausalNaive(i[0], i[1], i[2], i[3], i[4], mask),
            x.Take(5).ToArray(), ScalarType.Float32, "KDA causal", KernelAssert.HeadMask(mask));
        var ex = Assert.Throws<ArgumentException>(() => KdaKernels.Causal(x[0], x[1], x[2], x[3], torch.zeros(2, 2, 21), null));
        Assert.Contains("one decay per head is Gated DeltaNet", ex.Message);
    }

    [Fact]
    public void VeryStrongPerChannelDecaysStayFinite()
    {
        // Per-channel log-decays down to −80 per token: e^{−G} would overflow fp32 within a chunk; the sub-chunk
        // reference points keep every exponent ≤ 0. Compared with the recurrence (which never exponentiates a sum).
        var x = DeltaTestInputs.Make(new long[] { 50 }, 1, 8, 4, ScalarType.Float32, DecayKind.Channel, bidirectional: false);
        Torch.Seed(7);
        x[4] = (-80 * torch.rand(1, 1, 50, 8) * (torch.rand(1, 1, 50, 8) > 0.5).to(ScalarType.Float32)).requires_grad_(true);
        KernelAssert.SameOutputsAndGradients(
            i => KdaKernels.Causal(i[0], i[1], i[2], i[3], i[4], null),
            i => KdaKernels.CausalNaive(i[0], i[1], i[2], i[3], i[4], null),
            x, ScalarType.Float32, "KDA strong decays");
    }

    [Fact]
    public void GateMatchesFlaFormulas()
    {
        Torch.Seed();
        var raw = torch.randn(2, 3, 5, 4) * 5;
        var aLog = torch.randn(3);
        var dt = torch.randn(12);
        var g = KdaKernels.Gate(raw, aLog, dt);
        var x = raw + dt.view(1, 3, 1, 4);
        KernelAssert.Close(g, -aLog.exp().view(1, 3, 1, 1) * torch.log1p(torch.exp(x)), 1e-5, 1e-5, "softplus gate");
        var lb = KdaKernels.Gate(raw, aLog, dt, -5.0);
        KernelAssert.Close(lb, -5.0 * torch.sigmoid(aLog.exp().view(1, 3, 1, 1) * x), 1e-6, 1e-6, "lower-bound gate");
        Assert.True((g <= 0).all().item<bool>() && (lb >= -5).all().item<bool>());
    }

    [Fact]
    public void MixerIgnoresPaddingAndMatchesUnpaddedRows()
        => DeltaTestInputs.CheckMixerPadding("kda");

    [Fact]
    public void MixerVariantsBuildRunAndTrain()
    {
        var variants = new[]
        {
            new KdaOptions { GateLowerBound = -5, AllowNegativeEigenvalues = true, ChunkSize = 8 },
            new KdaOptions { UseShortConv = false, ExpandV = 2 },
        };
        foreach (var options in variants)
            foreach (bool causal in new[] { true, false })
            {
                Torch.Seed();
                using var mixer = new KdaMixer(new MixerConfig(16, 2, causal), options);
                var y = mixer.forward(torch.randn(2, 9, 16), KernelAssert.LengthMask(9, 4));
                Assert.False(y.isnan().any().item<bool>(), $"NaN with {options}");
                y.square().sum().backward();
                Assert.All(mixer.parameters(), p => Assert.NotNull(p.grad));
            }
        Assert.Throws<ArgumentOutOfRangeException>(() => new KdaMixer(new MixerConfig(16, 2), new KdaOptions { GateLowerBound = 1 }));
        var opts = new KdaOptions { GateLowerBound = -5, ExpandV = 2 };
        Assert.Equal(opts, MixerRegistry.DeserializeOptions("kda", MixerRegistry.SerializeOptions(opts)));
    }
}
