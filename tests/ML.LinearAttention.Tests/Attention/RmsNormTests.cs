using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// RmsNorm against y = x / √(Σx²/n + eps) · weight written out in fp32 (n = elements normalized together), and fla's
/// gated variant (GatedRmsNorm: the same times act(gate), act = SiLU or sigmoid, all in fp32).
/// </summary>
public class RmsNormTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // shape, input scale, eps, dtype
        new object[] { new long[] { 1, 7, 8 }, 1.0, 1e-5, ScalarType.Float32 },
        new object[] { new long[] { 3, 5, 2, 6 }, 3.0, 1e-5, ScalarType.Float32 },     // any leading dimensions
        new object[] { new long[] { 2, 5, 8 }, 1e-3, 1e-5, ScalarType.Float32 },       // eps dominates mean(x²) ≈ 1e-6
        new object[] { new long[] { 2, 5, 8 }, 1.0, 0.5, ScalarType.Float32 },         // a non-default eps is honoured
        new object[] { new long[] { 2, 9, 16 }, 1.0, 1e-5, ScalarType.BFloat16 },
        new object[] { new long[] { 2, 9, 16 }, 40.0, 1e-5, ScalarType.BFloat16 },     // large inputs: fp32 statistics
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void ModuleMatchesTheFormula(long[] shape, double scale, double eps, ScalarType dtype)
    {
        Torch.Seed();
        using var norm = new RmsNorm(shape[^1], eps);
        using (no_grad())
            foreach (var (_, p) in norm.named_parameters()) p.copy_(torch.rand(p.shape) + 0.5);  // not the identity init
        norm.to(dtype);
        var x = KernelAssert.Random(shape, dtype, requiresGrad: false, scale: scale);
        ModuleAssert.SameOutputsAndGradients(norm, xi => norm.forward(xi),
            (xi, p) => NaiveLastDim(xi, p["weight"], eps), x, dtype, $"RmsNorm {string.Join("x", shape)} scale={scale} eps={eps} {dtype}");
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void FunctionalWithoutWeightAndNormalizeOverHeadsMatchTheFormula(ScalarType dtype)
    {
        Torch.Seed();
        var x = KernelAssert.Random(new long[] { 2, 3, 5, 4 }, dtype);                     // [B, H, T, D]
        KernelAssert.SameOutputsAndGradients(i => RmsNorm.Functional(i[0], null),
            i => NaiveLastDim(i[0], null, 1e-5), new[] { x }, dtype, $"Functional, no weight {dtype}");
        // TransNormer's joint normalization over heads and features: one statistic per (b, t) over H·D elements.
        KernelAssert.SameOutputsAndGradients(i => RmsNorm.Normalize(i[0], new long[] { 1, 3 }, 1e-4),
            i => NaiveOverHeads(i[0], 1e-4), new[] { x }, dtype, $"Normalize over dims 1 and 3 {dtype}");
    }

    [Theory]
    [InlineData("swish", ScalarType.Float32)]
    [InlineData("sigmoid", ScalarType.Float32)]
    [InlineData("swish", ScalarType.BFloat16)]
    [InlineData("sigmoid", ScalarType.BFloat16)]
    public void GatedVariantMatchesTheFormula(string activation, ScalarType dtype)
    {
        Torch.Seed();
        const long d = 6;
        using var norm = new GatedRmsNorm(d, 1e-5, activation);
        using (no_grad())
            foreach (var (_, p) in norm.named_parameters()) p.copy_(torch.rand(p.shape) + 0.5);
        norm.to(dtype);
        // o and gate travel as one input [B, H, T, 2D] so both get their gradients compared.
        var x = KernelAssert.Random(new[] { 2L, 2, 5, 2 * d }, dtype, requiresGrad: false, scale: 2.0);
        ModuleAssert.SameOutputsAndGradients(norm, xi => norm.forward(xi.narrow(-1, 0, d), xi.narrow(-1, d, d)),
            (xi, p) =>
            {
                var g = xi.narrow(-1, d, d).to(ScalarType.Float32);
                var act = activation == "sigmoid" ? 1 / (1 + (-g).exp()) : g / (1 + (-g).exp());
                return (NaiveLastDim(xi.narrow(-1, 0, d).to(ScalarType.Float32), p["weight"], 1e-5) * act).to(xi.dtype);
            },
            x, dtype, $"GatedRmsNorm {activation} {dtype}");
        Assert.Throws<ArgumentException>(() => new GatedRmsNorm(d, 1e-5, "relu"));
    }

    [Fact]
    public void ZeroInputGivesZeroOutputAndFiniteGradients()
    {
        Torch.Seed();
        using var norm = new RmsNorm(4);
        var x = torch.zeros(2, 3, 4).requires_grad_(true);
        var y = norm.forward(x);
        Assert.Equal(0.0f, y.abs().sum().item<float>());
        y.backward(new[] { torch.randn(2, 3, 4) });
        Assert.False(x.grad!.isnan().any().item<bool>() || x.grad!.isinf().any().item<bool>());
    }

    /// <summary>Per row: r = √(Σ_d x_d² / D + eps), y = x / r · w, all fp32.</summary>
    private static Tensor NaiveLastDim(Tensor x, Tensor? weight, double eps)
    {
        var xf = x.to(ScalarType.Float32);
        long d = x.shape[^1];
        var r = ((xf * xf).sum(-1, keepdim: true) / d + eps).sqrt();
        var y = xf / r;
        return (weight is null ? y : y * weight.to(ScalarType.Float32)).to(x.dtype);
    }

    /// <summary>[B, H, T, D]: one r per (b, t) from the H·D values of that token, fp32.</summary>
    private static Tensor NaiveOverHeads(Tensor x, double eps)
    {
        var xf = x.to(ScalarType.Float32);
        long h = x.shape[1], d = x.shape[3];
        var perToken = (xf * xf).sum(-1, keepdim: true).sum(1, keepdim: true);                 // [B, 1, T, 1]
        return (xf / (perToken / (h * d) + eps).sqrt()).to(x.dtype);
    }
}
