using Microsoft.ML.LinearAttention.Attention.PlainLinear;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// The fused CAUSAL entry point on the CPU (where it falls back to the TorchSharp chunk form) against the naive causal
/// twin, the routing switch (off by default), and the shared memory of the causal kernels. The kernels themselves are
/// checked on the CPU by tests/FusedKernelEmulator/run.sh (fp64 reference) and on a GPU by `bench kernels --verify-fused`.
/// </summary>
public class FusedCausalTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (padding when they differ), heads, d, dv, dtype, feature map
        new object[] { new long[] { 1 }, 2, 8, 8, ScalarType.Float32, FusedFeatureMap.Relu },
        new object[] { new long[] { 70, 45, 1 }, 2, 8, 5, ScalarType.Float32, FusedFeatureMap.Elu },
        new object[] { new long[] { 37, 20 }, 2, 16, 8, ScalarType.Float32, FusedFeatureMap.Identity },
        new object[] { new long[] { 130 }, 1, 8, 16, ScalarType.Float32, FusedFeatureMap.Relu },
        new object[] { new long[] { 65, 64 }, 2, 16, 16, ScalarType.BFloat16, FusedFeatureMap.Elu },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void CausalEntryMatchesNaiveOutputsAndGradients(long[] lengths, int h, int d, int dv, ScalarType dtype, FusedFeatureMap map)
    {
        Torch.Seed();
        var (x, mask) = KernelAssert.FusedInputs(lengths, h, d, dv, dtype, nonNegative: map == FusedFeatureMap.Identity);
        KernelAssert.SameOutputsAndGradients(
            i => FusedLinearAttention.Causal(i[0], i[1], i[2], mask, map),
            i => FusedLinearAttention.CausalNaive(i[0], i[1], i[2], mask, map),
            x, dtype, $"fused causal {map}", mask is null ? null : KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void CausalRoutingIsOffByDefaultAndNeverOnTheCpu()
    {
        bool expected = Environment.GetEnvironmentVariable(FusedLinearAttention.CausalEnableVariable) != "0";
        Assert.Equal(expected, new FusedKernelOptions().CausalEnabled);
        var q = torch.zeros(1, 1, 8, 64, dtype: ScalarType.BFloat16);
        var before = FusedKernelOptions.Current;
        try
        {
            FusedKernelOptions.Current = before with { CausalEnabled = true };
            Assert.False(FusedLinearAttention.ShouldUseCausal(q, q));   // CPU
            Assert.NotNull(FusedLinearAttention.CausalReason(q, q, q, null));
        }
        finally { FusedKernelOptions.Current = before; }
    }

    [Fact]
    public void CausalMixerWithTheSwitchOnMatchesTheSwitchOffOnTheCpu()
    {
        Torch.Seed();
        var mixer = new LinearMixer(new Microsoft.ML.LinearAttention.Attention.MixerConfig(16, 2, Causal: true), new LinearMixerOptions { FeatureMap = "relu" });
        var x = torch.randn(2, 9, 16);
        var mask = KernelAssert.LengthMask(new long[] { 9, 4 });
        var before = FusedKernelOptions.Current;
        try
        {
            FusedKernelOptions.Current = before with { CausalEnabled = true };
            using var on = mixer.forward(x, mask);
            FusedKernelOptions.Current = before with { CausalEnabled = false };
            using var off = mixer.forward(x, mask);
            Assert.True(on.allclose(off));
        }
        finally { FusedKernelOptions.Current = before; }
    }

    [Fact]
    public void CausalKernelsFitAnH200Block()
    {
        const int h200 = 227 * 1024;
        foreach (var (d, dv) in new[] { (64, 64), (32, 48), (16, 128), (128, 64), (128, 128) })
            Assert.True(new FusedCausalLaunch.Sizes(d, dv).Max <= h200, $"D={d}, Dv={dv}: {new FusedCausalLaunch.Sizes(d, dv).Max} bytes");
        // sm_80 (A100, 163 KB): the common head dims fit.
        Assert.True(new FusedCausalLaunch.Sizes(64, 64).Max <= 163 * 1024);
    }
}
