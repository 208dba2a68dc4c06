using Microsoft.ML.LinearAttention.Attention.Decay;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// The fused causal DECAY entry point (simple GLA, RetNet, Lightning) on the CPU, where it falls back to the TorchSharp
/// chunk form, against the recurrent twin; the gradient identity its backward relies on; the routing switch; bad
/// inputs; the kernels' shared memory. The kernels themselves are checked on the CPU by tests/FusedKernelEmulator/run.sh
/// (decay.cpp, fp64 reference) and on a GPU by `bench kernels --verify-fused`.
/// </summary>
public class FusedDecayTests
{
    private static Tensor Gate(Tensor pre) => nn.functional.logsigmoid(pre) / 4;

    private static Tensor[] Inputs(long[] lengths, int h, int d, int dv, ScalarType dtype)
    {
        var (q, k, v) = KernelAssert.Qkv(lengths, dtype, h, d, dv);
        var pre = KernelAssert.Random(new[] { lengths.Length, h, lengths.Max() }, ScalarType.Float32);
        return new[] { q, k, v, pre };
    }

    [Theory]
    [InlineData(new long[] { 1 }, ScalarType.Float32)]
    [InlineData(new long[] { 70, 45, 1 }, ScalarType.Float32)]
    [InlineData(new long[] { 65, 64 }, ScalarType.BFloat16)]
    public void CausalEntryMatchesRecurrentOutputsAndGradientsIncludingTheGates(long[] lengths, ScalarType dtype)
    {
        Torch.Seed();
        var x = Inputs(lengths, 2, 16, 16, dtype);
        var mask = lengths.Distinct().Count() > 1 ? KernelAssert.LengthMask(lengths) : null;
        KernelAssert.SameOutputsAndGradients(
            i => FusedDecayAttention.Causal(i[0], i[1], i[2], Gate(i[3]), mask),
            i => DecayKernels.CausalRecurrent(i[0], i[1], i[2], Gate(i[3]), mask),
            x, dtype, "fused decay causal", mask is null ? null : KernelAssert.HeadMask(mask));
    }

    /// <summary>
    /// The backward kernel forms the gates' gradient from dq and dk alone: dL/dG_t = q_t·dq_t − k_t·dk_t (G the cumulative
    /// log decay), then dg = reverse cumulative sum, zero at padding. Checked here against autograd of the recurrent twin.
    /// </summary>
    [Fact]
    public void GateGradientIsTheReverseSumOfQueryMinusKeyGradientProducts()
    {
        Torch.Seed();
        long[] lengths = { 23, 9 };
        var x = Inputs(lengths, 2, 8, 6, ScalarType.Float32);
        var mask = KernelAssert.LengthMask(lengths);
        var g = Gate(x[3].detach()).requires_grad_(true);
        var o = DecayKernels.CausalRecurrent(x[0], x[1], x[2], g, mask, scale: 0.3);
        var upstream = torch.randn_like(o);
        var grads = torch.autograd.grad(new[] { o }, new[] { x[0], x[1], g }, new[] { upstream });
        var dG = (x[0].detach() * grads[0]).sum(-1) - (x[1].detach() * grads[1]).sum(-1);
        var fromIdentity = FusedDecayLaunch.ReverseCumulative(dG, mask);
        KernelAssert.Close(fromIdentity, grads[2], 1e-5, 1e-4, "dg from q·dq − k·dk");
        Assert.Equal(0f, fromIdentity.select(0, 1).narrow(-1, 9, 14).abs().max().item<float>());
    }

    [Fact]
    public void RoutingFollowsItsSwitchAndIsNeverOnOnTheCpu()
    {
        bool expected = Environment.GetEnvironmentVariable(FusedDecayAttention.EnableVariable) != "0";
        Assert.Equal(expected, new FusedKernelOptions().DecayEnabled);
        var q = torch.zeros(1, 1, 8, 64, dtype: ScalarType.BFloat16);
        var g = torch.zeros(1, 1, 8);
        var before = FusedKernelOptions.Current;
        try
        {
            FusedKernelOptions.Current = before with { DecayEnabled = true };
            Assert.False(FusedDecayAttention.ShouldUse(q, q));
            Assert.NotNull(FusedDecayAttention.Reason(q, q, q, g, null));
        }
        finally { FusedKernelOptions.Current = before; }
    }

    [Fact]
    public void BadInputsAreRejectedNamingTheFix()
    {
        var q = torch.zeros(2, 3, 5, 16);
        var perChannel = Assert.Throws<ArgumentException>(() => FusedDecayAttention.Causal(q, q, q, torch.zeros(2, 3, 5, 16), null));
        Assert.Contains("GlaKernels", perChannel.Message);
        var shape = Assert.Throws<ArgumentException>(() => FusedDecayAttention.Causal(q, q, q, torch.zeros(2, 3, 4), null));
        Assert.Contains("[B, H, T]", shape.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => FusedDecayAttention.Causal(q, q, q, torch.zeros(2, 3, 5), null, scale: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => FusedDecayAttention.Causal(q, q, q, torch.zeros(2, 3, 5), null, scale: double.NaN));
    }

    [Fact]
    public void DecayKernelsFitAnH200BlockAndTheCommonOnesAnA100Block()
    {
        const int h200 = 227 * 1024;
        foreach (var (d, dv) in new[] { (64, 64), (32, 48), (16, 128), (128, 64), (128, 128) })
            Assert.True(new FusedDecayLaunch.Sizes(d, dv).Max <= h200, $"D={d}, Dv={dv}: {new FusedDecayLaunch.Sizes(d, dv).Max} bytes");
        Assert.True(new FusedDecayLaunch.Sizes(64, 64).Max <= 163 * 1024);
        Assert.True(new FusedDecayLaunch.Sizes(64, 128).Max <= 163 * 1024);   // RetNet's value width (ExpandV = 2)
    }
}
