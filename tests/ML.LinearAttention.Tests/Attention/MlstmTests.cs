using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Mlstm;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class MlstmTests
{
    /// <summary>q, k, v, input-gate pre-activations, forward and backward forget-gate pre-activations.</summary>
    private static Tensor[] Inputs(long[] lengths, ScalarType dtype, double inputScale = 1.0, double forgetShift = 2.0)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        return new[]
        {
            KernelAssert.Random(new[] { b, 2, t, 8 }, dtype), KernelAssert.Random(new[] { b, 2, t, 8 }, dtype),
            KernelAssert.Random(new[] { b, 2, t, 6 }, dtype),
            KernelAssert.Random(new[] { b, 2, t }, ScalarType.Float32, scale: inputScale),
            (torch.randn(b, 2, t) * 2 + forgetShift).requires_grad_(true),
            (torch.randn(b, 2, t) * 2 + forgetShift).requires_grad_(true),
        };
    }

    public static IEnumerable<object[]> Cases() => new[]
    {
        new object[] { new long[] { 50, 33, 1 }, ScalarType.Float32, MlstmForgetGate.Sigmoid },
        new object[] { new long[] { 37 }, ScalarType.Float32, MlstmForgetGate.Exponential },
        new object[] { new long[] { 41, 20 }, ScalarType.BFloat16, MlstmForgetGate.Sigmoid },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void CausalChunkedMatchesRecurrentIncludingGateGradients(long[] lengths, ScalarType dtype, MlstmForgetGate gate)
    {
        // The exponential forget gate gets pre-activations around −0.5 (f ≈ 0.6, sometimes above 1).
        var x = Inputs(lengths, dtype, forgetShift: gate == MlstmForgetGate.Sigmoid ? 2.0 : -0.5).Take(5).ToArray();
        if (gate == MlstmForgetGate.Exponential) x[4] = (x[4].detach() * 0.25).requires_grad_(true);
        var mask = KernelAssert.LengthMask(lengths);
        foreach (int chunk in dtype == ScalarType.BFloat16 ? new[] { 16 } : new[] { 16, 64 })
            KernelAssert.SameOutputsAndGradients(
                i => MlstmKernels.Causal(i[0], i[1], i[2], i[3], i[4], mask, forgetGate: gate, chunk: chunk),
                i => MlstmKernels.CausalRecurrent(i[0], i[1], i[2], i[3], i[4], mask, forgetGate: gate),
                x, dtype, $"mlstm causal chunk {chunk} {gate}", KernelAssert.HeadMask(mask));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BidirectionalMatchesNaiveIncludingGateGradients(long[] lengths, ScalarType dtype, MlstmForgetGate gate)
    {
        var x = Inputs(lengths, dtype, forgetShift: gate == MlstmForgetGate.Sigmoid ? 2.0 : -0.5);
        if (gate == MlstmForgetGate.Exponential)
        {
            x[4] = (x[4].detach() * 0.25).requires_grad_(true);
            x[5] = (x[5].detach() * 0.25).requires_grad_(true);
        }
        var mask = KernelAssert.LengthMask(lengths);
        KernelAssert.SameOutputsAndGradients(
            i => MlstmKernels.Bidirectional(i[0], i[1], i[2], i[3], i[4], i[5], mask, forgetGate: gate, chunk: 16),
            i => MlstmKernels.BidirectionalNaive(i[0], i[1], i[2], i[3], i[4], i[5], mask, forgetGate: gate),
            x, dtype, $"mlstm bidirectional {gate}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void BidirectionalWithAClosedBackwardGateIsTheCausalMlstm()
    {
        var x = Inputs(new long[] { 29, 17 }, ScalarType.Float32);
        var mask = KernelAssert.LengthMask(29, 17);
        var closed = torch.full_like(x[5], -1e4);
        var bi = MlstmKernels.Bidirectional(x[0], x[1], x[2], x[3], x[4], closed, mask, chunk: 8);
        var causal = MlstmKernels.CausalRecurrent(x[0], x[1], x[2], x[3], x[4], mask);
        KernelAssert.Close(bi, causal, 1e-5, 1e-4, "closed backward gate");
    }

    [Fact]
    public void LargeInputGatesAndGrowingForgetGatesStayFiniteAndExact()
    {
        // Input gates up to ±30 and exponential forget gates with log f up to about +1: raw weights reach e^60; the
        // max state keeps every exponent ≤ 0.
        var x = Inputs(new long[] { 100, 61 }, ScalarType.Float32, inputScale: 10.0, forgetShift: 0.0).Take(5).ToArray();
        x[4] = (x[4].detach() * 0.3).requires_grad_(true);
        var mask = KernelAssert.LengthMask(100, 61);
        KernelAssert.SameOutputsAndGradients(
            i => MlstmKernels.Causal(i[0], i[1], i[2], i[3], i[4], mask, forgetGate: MlstmForgetGate.Exponential),
            i => MlstmKernels.CausalRecurrent(i[0], i[1], i[2], i[3], i[4], mask, forgetGate: MlstmForgetGate.Exponential),
            x, ScalarType.Float32, "strong mlstm gates", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void MixerIsCausalOrBidirectionalAndIgnoresPadding()
    {
        DecayMixerAssert.CausalityAndPadding("mlstm");
        using var mixer = new MlstmMixer(new MixerConfig(32, 4), new MlstmOptions());
        Assert.Equal(64, mixer.InnerDim);
        var ex = Assert.Throws<ArgumentException>(() => new MlstmMixer(new MixerConfig(48, 3), new MlstmOptions()));
        Assert.Contains("RoundUpTo", ex.Message);
    }

    [Fact]
    public void OptionsRoundTripThroughJson()
    {
        var mlstm = new MlstmOptions { ForgetGate = MlstmForgetGate.Exponential, ProjFactor = 1.5, ChunkSize = 32 };
        Assert.Equal(mlstm, MixerRegistry.DeserializeOptions("mlstm", MixerRegistry.SerializeOptions(mlstm)));
        var gla = new Microsoft.ML.LinearAttention.Attention.Gla.GlaOptions { ClampMin = -3, UseShortConv = true };
        Assert.Equal(gla, MixerRegistry.DeserializeOptions("gla", MixerRegistry.SerializeOptions(gla)));
    }
}
