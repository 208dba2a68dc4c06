using Microsoft.ML.LinearAttention.Attention;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// <see cref="Rotary.Apply"/> (cached tables, x·cos + roll(x)·signed sin) against its naive twin, the textbook
/// rotate-half form computed from fresh angles: the same fp32 products and sums, so equal to the bit, outputs and
/// gradients, in fp32 and bf16, and for lengths below, at and above the cached table's.
/// </summary>
public class RotaryTests
{
    private static Tensor Naive(Tensor x, double theta)
    {
        long t = x.shape[2], d = x.shape[3], half = d / 2;
        var invFreq = (torch.arange(0, d, 2, dtype: ScalarType.Float32) * (-Math.Log(theta) / d)).exp();
        var angles = torch.arange(t, dtype: ScalarType.Float32).unsqueeze(1) * invFreq.unsqueeze(0);
        var (cos, sin) = (angles.cos(), angles.sin());
        var xf = x.to(ScalarType.Float32);
        var x1 = xf.narrow(-1, 0, half);
        var x2 = xf.narrow(-1, half, half);
        return torch.cat(new[] { x1 * cos - x2 * sin, x2 * cos + x1 * sin }, -1).to(x.dtype);
    }

    [Theory]
    [InlineData(ScalarType.Float32, 37)]
    [InlineData(ScalarType.BFloat16, 37)]
    [InlineData(ScalarType.Float32, 300)]   // longer than the table built before: it grows
    [InlineData(ScalarType.Float32, 5)]     // shorter: rows of the cached table
    public void EqualsTheTextbookFormToTheBitWithGradients(ScalarType dtype, long t)
    {
        torch.manual_seed(3);
        double theta = 5000 + t;   // a base of its own, so each case starts from its own table
        Rotary.Apply(torch.randn(1, 1, 64, 16).to(dtype), theta).Dispose();   // a table of 64 rows exists before the call under test
        var x = torch.randn(2, 3, t, 16).to(dtype).requires_grad_();
        var upstream = torch.randn(2, 3, t, 16).to(dtype);
        var y = Rotary.Apply(x, theta);
        var gx = torch.autograd.grad(new[] { y }, new[] { x }, new[] { upstream })[0];
        var xn = x.detach().clone().requires_grad_();
        var yn = Naive(xn, theta);
        var gn = torch.autograd.grad(new[] { yn }, new[] { xn }, new[] { upstream })[0];
        Assert.Equal(dtype, y.dtype);
        Assert.True(y.allclose(yn, rtol: 0, atol: 0), $"output differs: max {(y - yn).abs().max().to(ScalarType.Float32).item<float>()}");
        Assert.True(gx.allclose(gn, rtol: 1e-6, atol: 1e-6), $"gradient differs: max {(gx - gn).abs().max().to(ScalarType.Float32).item<float>()}");
    }

    [Fact]
    public void TakesTheTransposedViewOfTheHeadSplit()
    {
        var x = Heads.Split(torch.randn(2, 9, 4 * 8), 4);   // [B, H, T, D] as a strided view, as ProjectedMixer passes it
        Assert.True(Rotary.Apply(x).allclose(Naive(x, 10000), rtol: 0, atol: 0));
    }
}
