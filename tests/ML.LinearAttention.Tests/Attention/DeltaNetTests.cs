using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class DeltaNetTests
{
    public static IEnumerable<object[]> Cases() => DeltaTestInputs.Cases();

    [Theory]
    [MemberData(nameof(Cases))]
    public void CausalChunkedMatchesRecurrentOutputsAndGradients(long[] lengths, int h, int dk, int dv, ScalarType dtype, int chunk)
        => DeltaTestInputs.CheckAgainstNaive(lengths, h, dk, dv, dtype, chunk, DecayKind.None, bidirectional: false);

    [Theory]
    [MemberData(nameof(Cases))]
    public void BidirectionalMatchesRecurrentOutputsAndGradients(long[] lengths, int h, int dk, int dv, ScalarType dtype, int chunk)
        => DeltaTestInputs.CheckAgainstNaive(lengths, h, dk, dv, dtype, chunk, DecayKind.None, bidirectional: true);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PaddingTouchesNoStateAndRowsMatchTheirTrueLength(bool bidirectional)
        => DeltaTestInputs.CheckPadding(DecayKind.None, bidirectional);

    [Fact]
    public void PublicKernelsAreTheDeltaRuleWithoutDecay()
    {
        var x = DeltaTestInputs.Make(new long[] { 19, 12 }, 2, 4, 4, ScalarType.Float32, DecayKind.None, bidirectional: true);
        var mask = KernelAssert.LengthMask(19, 12);
        KernelAssert.SameOutputsAndGradients(
            i => DeltaNetKernels.Bidirectional(i[0], i[1], i[2], i[3], i[4], mask, chunk: 8),
            i => DeltaNetKernels.BidirectionalNaive(i[0], i[1], i[2], i[3], i[4], mask),
            x, ScalarType.Float32, "DeltaNet bidirectional", KernelAssert.HeadMask(mask));
        KernelAssert.SameOutputsAndGradients(
            i => DeltaNetKernels.Causal(i[0], i[1], i[2], i[3], mask, chunk: 8),
            i => DeltaNetKernels.CausalNaive(i[0], i[1], i[2], i[3], mask),
            x.Take(4).ToArray(), ScalarType.Float32, "DeltaNet causal", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void BidirectionalCountsTheCurrentTokenOnceAndReversesFromTheLastRealToken()
    {
        var x = DeltaTestInputs.Make(new long[] { 13, 13 }, 2, 4, 4, ScalarType.Float32, DecayKind.None, bidirectional: true).Select(t => t.detach()).ToArray();
        var mask = KernelAssert.LengthMask(13, 5);
        // Without forward writes, the last real token of each row reads an empty reverse state (it is not its own
        // neighbour), and every other token reads only the tokens after it.
        var onlyReverse = DeltaNetKernels.Bidirectional(x[0], x[1], x[2], torch.zeros_like(x[3]), x[4], mask, chunk: 4);
        Assert.Equal(0.0, onlyReverse[0, .., 12, ..].abs().max().item<float>());
        Assert.Equal(0.0, onlyReverse[1, .., 4, ..].abs().max().item<float>());
        Assert.True(onlyReverse[1, .., 3, ..].abs().max().item<float>() > 0);
        // Without reverse writes the encoder form is the causal form (the diagonal comes from the forward scan).
        var onlyForward = DeltaNetKernels.Bidirectional(x[0], x[1], x[2], x[3], torch.zeros_like(x[4]), mask, chunk: 4);
        KernelAssert.Close(onlyForward, DeltaNetKernels.Causal(x[0], x[1], x[2], x[3], mask, chunk: 4), 1e-6, 1e-6, "forward part");
    }

    [Fact]
    public void BetaOneAndOrthonormalKeysStoreValuesExactly()
    {
        // With β = 1 the delta rule overwrites: after writing v to an orthonormal key, reading that key returns v.
        Torch.Seed();
        var k = torch.eye(4).view(1, 1, 4, 4);
        var v = torch.randn(1, 1, 4, 3);
        var o = DeltaNetKernels.Causal(k, k, v, torch.ones(1, 1, 4), null, scale: 1.0, chunk: 2);
        KernelAssert.Close(o, v, 1e-5, 1e-5, "stored values");
        // Writing the same key twice keeps only the last value.
        var k2 = torch.cat(new[] { k, k }, 2);
        var v2 = torch.cat(new[] { v, -v }, 2);
        var o2 = DeltaNetKernels.Causal(k2, k2, v2, torch.ones(1, 1, 8), null, scale: 1.0, chunk: 3);
        KernelAssert.Close(o2.narrow(2, 4, 4), -v, 1e-5, 1e-5, "overwritten values");
    }

    [Fact]
    public void BadInputsAreReportedWithTheirShapes()
    {
        var q = torch.zeros(2, 2, 5, 4);
        var ex = Assert.Throws<ArgumentException>(() => DeltaNetKernels.Causal(q, q, q, torch.zeros(2, 2, 4), null));
        Assert.Contains("beta must be [B, H, T] = [2, 2, 5]", ex.Message);
        var ex2 = Assert.Throws<ArgumentException>(() => DeltaRule.Chunked(q, q, q, torch.zeros(2, 2, 5), torch.zeros(2, 2, 5, 3), null));
        Assert.Contains("[B, H, T, Dk] = [2, 2, 5, 4]", ex2.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => DeltaNetKernels.Causal(q, q, q, torch.zeros(2, 2, 5), null, chunk: 0));
    }

    [Fact]
    public void MixerIgnoresPaddingAndMatchesUnpaddedRows()
        => DeltaTestInputs.CheckMixerPadding("deltanet");

    [Fact]
    public void MixerVariantsBuildRunAndTrain()
    {
        var variants = new[]
        {
            new DeltaNetOptions { UseOutputGate = true, AllowNegativeEigenvalues = true, ChunkSize = 8 },
            new DeltaNetOptions { UseShortConv = false, QkActivation = "relu", QkNorm = "sum", UseBeta = false },
            new DeltaNetOptions { QkActivation = "elu", ExpandV = 2, ConvSize = 3, ConvBias = true },
        };
        foreach (var options in variants)
            foreach (bool causal in new[] { true, false })
            {
                Torch.Seed();
                using var mixer = new DeltaNetMixer(new MixerConfig(16, 2, causal), options);
                var y = mixer.forward(torch.randn(2, 9, 16), KernelAssert.LengthMask(9, 4));
                Assert.False(y.isnan().any().item<bool>(), $"NaN with {options}");
                y.square().sum().backward();
                Assert.All(mixer.parameters(), p => Assert.NotNull(p.grad));
            }
    }

    [Fact]
    public void MixerOptionsAreValidatedAndRoundTrip()
    {
        var ex = Assert.Throws<ArgumentException>(() => new DeltaNetMixer(new MixerConfig(16, 2), new DeltaNetOptions { QkActivation = "gelu" }));
        Assert.Contains("QkActivation 'gelu'", ex.Message);
        var ex2 = Assert.Throws<ArgumentException>(() => new DeltaNetMixer(new MixerConfig(16, 2), new DeltaNetOptions { ExpandK = 0.3 }));
        Assert.Contains("ExpandK", ex2.Message);
        Assert.Throws<ArgumentException>(() => new DeltaNetMixer(new MixerConfig(16, 2), new DeltaNetOptions { QkNorm = "sum" }));
        var options = new DeltaNetOptions { UseOutputGate = true, QkNorm = "sum", QkActivation = "elu", ChunkSize = 32 };
        Assert.Equal(options, MixerRegistry.DeserializeOptions("deltanet", MixerRegistry.SerializeOptions(options)));
    }
}
