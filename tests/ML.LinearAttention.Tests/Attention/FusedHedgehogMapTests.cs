using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// Hedgehog's fused feature map on the CPU (the libtorch form, which the GPU kernels are checked against by
/// `bench kernels --verify-fused` and tests/FusedKernelEmulator) and its refusals; FusedLinearAttentionTests compiles its
/// CUDA source.
/// </summary>
public class FusedHedgehogMapTests
{
    [Fact]
    public void OnTheCpuItIsTheSoftmaxOfBothHalves()
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
    public void AScalarIsRefusedWithTheReason()
    {
        var e = Assert.Throws<ArgumentException>(() => FusedHedgehogMap.Apply(torch.tensor(1.0)));
        Assert.Contains("at least one dimension", e.Message);
    }

    [Theory]
    [InlineData(64, 2, 8)]      // Hedgehog's default F = D = 64 in bf16: eight lanes of eight features
    [InlineData(64, 4, 16)]     // fp32: four features per lane
    [InlineData(8, 2, 1)]
    [InlineData(256, 2, 32)]
    [InlineData(512, 2, 0)]     // more than a warp per row: the generic kernels
    [InlineData(100, 2, 0)]     // not a multiple of eight
    [InlineData(48, 2, 0)]      // six lanes: not a power of two
    [InlineData(0, 2, 0)]
    public void VectorKernelsTakeRowsOfAPowerOfTwoOf16ByteLanes(long features, int elementSize, int lanes)
    {
        Assert.Equal(lanes, FusedHedgehogMap.VectorLanes(features, elementSize));
    }

    [Fact]
    public void VectorBlocksCoverEveryRow()
    {
        Assert.Equal(1, FusedHedgehogMap.VectorBlocks(32, 8));      // 32 rows × 8 lanes = one 256-thread block
        Assert.Equal(2, FusedHedgehogMap.VectorBlocks(33, 8));
        Assert.Equal(1, FusedHedgehogMap.VectorBlocks(1, 32));
        Assert.Equal(5, FusedHedgehogMap.Blocks(37));               // generic: eight rows (warps) per block
    }
}
