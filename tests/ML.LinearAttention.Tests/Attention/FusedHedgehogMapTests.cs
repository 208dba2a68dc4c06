using Microsoft.ML.LinearAttention.Attention.LinearKernel;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// Hedgehog's fused feature map on the CPU (the libtorch form, which the GPU kernels are checked against by
/// `bench kernels --verify-fused` and tests/FusedKernelEmulator) and its refusals; FusedLinearAttentionTests compiles its
/// CUDA source.
/// </summary>
public class FusedHedgehogMapTests
{
    [Fact]
    public void On_the_cpu_it_is_the_softmax_of_both_halves()
    {
        var y = torch.randn(2, 3, 5, 7, dtype: ScalarType.Float64);
        var phi = FusedHedgehogMap.Apply(y);
        Assert.Equal(new long[] { 2, 3, 5, 14 }, phi.shape);
        var plus = y.softmax(-1);
        var minus = (-y).softmax(-1);
        Assert.True(phi.narrow(-1, 0, 7).allclose(plus, rtol: 1e-12, atol: 1e-12));
        Assert.True(phi.narrow(-1, 7, 7).allclose(minus, rtol: 1e-12, atol: 1e-12));
        Assert.Contains("CUDA", FusedHedgehogMap.UnavailableReason(y));
    }

    [Fact]
    public void A_scalar_is_refused_with_the_reason()
    {
        var e = Assert.Throws<ArgumentException>(() => FusedHedgehogMap.Apply(torch.tensor(1.0)));
        Assert.Contains("at least one dimension", e.Message);
    }
}
