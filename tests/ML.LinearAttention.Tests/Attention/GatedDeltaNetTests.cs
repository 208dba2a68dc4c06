using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using Microsoft.ML.LinearAttention.Attention.GatedDeltaNet;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class GatedDeltaNetTests
{
    public static IEnumerable<object[]> Cases() => DeltaTestInputs.Cases();

    [Theory]
    [MemberData(nameof(Cases))]
    public void CausalChunkedMatchesRecurrentOutputsAndGradients(long[] lengths, int h, int dk, int dv, ScalarType dtype, int chunk)
        => DeltaTestInputs.CheckAgainstNaive(lengths, h, dk, dv, dtype, chunk, DecayKind.Scalar, bidirectional: false);

    [Theory]
    [MemberData(nameof(Cases))]
    public void BidirectionalMatchesRecurrentOutputsAndGradients(long[] lengths, int h, int dk, int dv, ScalarType dtype, int chunk)
        => DeltaTestInputs.CheckAgainstNaive(lengths, h, dk, dv, dtype, chunk, DecayKind.Scalar, bidirectional: true);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PaddingTouchesNoStateAndRowsMatchTheirTrueLength(bool bidirectional)
        => DeltaTestInputs.CheckPadding(DecayKind.Scalar, bidirectional);

    [Fact]
    public void PublicKernelsMatchTheirNaiveTwinsAndRejectPerChannelGates()
    {
        var x = DeltaTestInputs.Make(new long[] { 21, 13 }, 2, 4, 4, ScalarType.Float32, DecayKind.Scalar, bidirectional: true);
        var mask = KernelAssert.LengthMask(21, 13);
        KernelAssert.SameOutputsAndGradients(
            i => GatedDeltaNetKernels.Bidirectional(i[0], i[1], i[2], i[3], i[4], i[5], i[6], mask, chunk: 8),
            i => GatedDeltaNetKernels.BidirectionalNaive(i[0], i[1], i[2], i[3], i[4], i[5], i[6], mask),
            x, ScalarType.Float32, "GDN bidirectional", KernelAssert.HeadMask(mask));
        KernelAssert.SameOutputsAndGradients(
            i => GatedDeltaNetKernels.Causal(i[0], i[1], i[2], i[3], i[4], mask, chunk: 8),
            i => GatedDeltaNetKernels.CausalNaive(i[0], i[1], i[2], i[3], i[4], mask),
            x.Take(5).ToArray(), ScalarType.Float32, "GDN causal", KernelAssert.HeadMask(mask));
        var ex = Assert.Throws<ArgumentException>(() => GatedDeltaNetKernels.Causal(x[0], x[1], x[2], x[3], torch.zeros(2, 2, 21, 4), null));
        Assert.Contains("per-channel decays are KDA", ex.Message);
    }

    [Fact]
    public void StrongDecaysStayFiniteAndForget()
    {
        // g = −60 per token: exp(g) underflows to 0, and the chunked form never evaluates a positive exponent.
        var x = DeltaTestInputs.Make(new long[] { 40 }, 1, 4, 4, ScalarType.Float32, DecayKind.Scalar, bidirectional: false);
        var g = torch.full(new long[] { 1, 1, 40 }, -60f).requires_grad_(true);
        var o = GatedDeltaNetKernels.Causal(x[0], x[1], x[2], x[3], g, null, chunk: 16);
        o.sum().backward();
        Assert.True(o.isfinite().all().item<bool>() && g.grad!.isfinite().all().item<bool>() && x[0].grad!.isfinite().all().item<bool>());
        // Total forgetting: each output only sees its own token's write.
        var own = (x[0] * x[1]).sum(-1, keepdim: true) / 2 * x[3].unsqueeze(-1) * x[2];
        KernelAssert.Close(o, own, 1e-5, 1e-4, "only the current token survives");
    }

    [Fact]
    public void Mamba2GateIsNonPositiveAndMatchesItsFormula()
    {
        Torch.Seed();
        var a = torch.randn(2, 5, 3) * 10;
        var (aLog, dt) = (torch.randn(3), torch.randn(3));
        var g = DeltaRule.Mamba2Gate(a, aLog, dt);
        Assert.True((g <= 0).all().item<bool>());
        KernelAssert.Close(g, -aLog.exp() * torch.log1p(torch.exp(a + dt)), 1e-5, 1e-5, "gate formula");
    }

    [Fact]
    public void MixerIgnoresPaddingAndMatchesUnpaddedRows()
        => DeltaTestInputs.CheckMixerPadding("gated_deltanet");

    [Fact]
    public void MixerVariantsBuildRunAndTrain()
    {
        var variants = new[]
        {
            new GatedDeltaNetOptions { UseOutputGate = false, AllowNegativeEigenvalues = true, ChunkSize = 8 },
            new GatedDeltaNetOptions { UseShortConv = false, ExpandK = 0.75, ExpandV = 1 },
        };
        foreach (var options in variants)
            foreach (bool causal in new[] { true, false })
            {
                Torch.Seed();
                using var mixer = new GatedDeltaNetMixer(new MixerConfig(16, 2, causal), options);
                var y = mixer.forward(torch.randn(2, 9, 16), KernelAssert.LengthMask(9, 4));
                Assert.False(y.isnan().any().item<bool>(), $"NaN with {options}");
                y.square().sum().backward();
                Assert.All(mixer.parameters(), p => Assert.NotNull(p.grad));
            }
        var ex = Assert.Throws<ArgumentException>(() => new GatedDeltaNetMixer(new MixerConfig(16, 2), new GatedDeltaNetOptions { ExpandK = 0.3 }));
        Assert.Contains("ExpandK", ex.Message);
        var opts = new GatedDeltaNetOptions { ExpandV = 1, UseOutputGate = false };
        Assert.Equal(opts, MixerRegistry.DeserializeOptions("gated_deltanet", MixerRegistry.SerializeOptions(opts)));
    }
}
