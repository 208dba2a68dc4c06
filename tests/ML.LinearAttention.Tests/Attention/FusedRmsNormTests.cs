using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// The fused RMSNorm on the CPU: the routing (kernels on CUDA only; the CPU keeps the libtorch form, unchanged), its
/// refusals, the dw slicing arithmetic, and the closed forms rms_norm.cu computes (y, dx = r·(g − x̂·mean(g ⊙ x̂)),
/// dw = Σ dy ⊙ x̂) against autograd through the libtorch form. The kernels are checked against fp64 by
/// tests/FusedKernelEmulator (rms_norm.cpp), compiled by FusedLinearAttentionTests and run on a GPU by
/// `bench kernels --verify-fused`.
/// </summary>
public class FusedRmsNormTests
{
    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void OnTheCpuTheModuleRunsTheLibtorchFormUnchanged(ScalarType dtype)
    {
        using var norm = new RmsNorm(24);
        using (no_grad()) norm.parameters().First().copy_(torch.rand(24) + 0.5);
        norm.to(dtype);
        var x = torch.randn(3, 5, 24).to(dtype);
        var w = norm.parameters().First();
        var y = norm.forward(x);
        Assert.True(y.allclose(RmsNorm.Functional(x, w), rtol: 0, atol: 0));
        Assert.True(y.allclose(FusedRmsNorm.Reference(x, w), rtol: 0, atol: 0));
        Assert.True(FusedRmsNorm.Apply(x, w, 1e-5, fused: true).allclose(y, rtol: 0, atol: 0));   // no kernel off CUDA, whatever the switch
        Assert.Contains("CUDA", FusedRmsNorm.UnavailableReason(x, w));
    }

    [Fact]
    public void InputsTheKernelsDoNotTakeAreRefusedWithTheReason()
    {
        Assert.Contains("at least one dimension", Assert.Throws<ArgumentException>(() => FusedRmsNorm.Apply(torch.tensor(1f), null)).Message);
        // Shapes and dtypes are checked before the device, so the reasons read the same on the CPU.
        Assert.Contains("not a vector of x's dtype", FusedRmsNorm.UnavailableReason(torch.randn(2, 8), torch.ones(8, dtype: ScalarType.Float64)));
        Assert.Contains("not a vector of x's dtype", FusedRmsNorm.UnavailableReason(torch.randn(2, 8), torch.ones(7)));
        Assert.Contains("Int64 is not fp32, bf16 or fp16", FusedRmsNorm.UnavailableReason(torch.ones(2, 8, dtype: ScalarType.Int64), null));
        Assert.Contains("empty", FusedRmsNorm.UnavailableReason(torch.ones(0, 8), null));
    }

    [Fact]
    public void TheDwSlicesStayWithinTheGridAndCoverEveryRow()
    {
        foreach (long rows in new long[] { 1, 255, 256, 257, 65536, 65535L * 256 + 1, 40_000_000 })
        {
            long perSlice = FusedRmsNorm.RowsPerSlice(rows), slices = (rows + perSlice - 1) / perSlice;
            Assert.True(perSlice >= 256 && slices <= 65535 && slices * perSlice >= rows && (slices - 1) * perSlice < rows, $"rows {rows}");
        }
        Assert.Equal(1, FusedRmsNorm.RowBlocks(8));
        Assert.Equal(2, FusedRmsNorm.RowBlocks(9));
    }

    [Fact]
    public void TheKernelsClosedFormsMatchAutogradThroughTheLibtorchForm()
    {
        torch.manual_seed(4);
        const double eps = 1e-5;
        var x = (torch.randn(7, 33, dtype: ScalarType.Float64) * 3 + 0.5).requires_grad_(true);
        var w = (torch.rand(33, dtype: ScalarType.Float64) + 0.5).requires_grad_(true);
        var dy = torch.randn(7, 33, dtype: ScalarType.Float64);
        var y = FusedRmsNorm.Reference(x, w, eps);   // its statistics in fp32, hence the fp32 tolerances below
        var grads = torch.autograd.grad(new[] { y }, new[] { x, w }, new[] { dy });
        using (no_grad())
        {
            var r = (x.square().mean(new long[] { -1 }, keepdim: true) + eps).rsqrt();
            var xh = x * r;
            Assert.True((xh * w).allclose(y, rtol: 1e-5, atol: 1e-6));
            var g = dy * w;
            var dx = r * (g - xh * (g * xh).mean(new long[] { -1 }, keepdim: true));
            Assert.True(dx.allclose(grads[0], rtol: 1e-5, atol: 1e-6));
            Assert.True((dy * xh).sum(new long[] { 0 }).allclose(grads[1], rtol: 1e-5, atol: 1e-6));
            // A wrong closed form would be far off: the mean term matters at this scale.
            Assert.False((r * g).allclose(grads[0], rtol: 1e-3, atol: 1e-3));
        }
    }
}
