using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Runtime;

/// <summary>The CPU dropout mask: its rate, scale, independence, gradient and reproducibility.</summary>
public class FastDropoutTests
{
    [Theory]
    [InlineData(0.1)]
    [InlineData(0.5)]
    [InlineData(0.9)]
    public void DropsAtTheRateAndKeepsTheExpectation(double p)
    {
        Torch.Seed();
        const long n = 1 << 20;
        var x = torch.ones(n);
        var y = DropoutKernels.Dropout(x, p, training: true);
        double dropped = (y == 0).to(ScalarType.Float64).mean().item<double>();
        double sd = Math.Sqrt(p * (1 - p) / n);
        Assert.InRange(dropped, p - 5 * sd, p + 5 * sd);
        var kept = y.masked_select(y != 0);
        Assert.InRange(kept.min().item<float>() * (1 - p), 1 - 1e-4, 1 + 1e-4); // the mask's own keep rate, 1/65536 steps
        Assert.Equal(kept.min().item<float>(), kept.max().item<float>());
        Assert.InRange(y.to(ScalarType.Float64).mean().item<double>(), 1 - 6 * sd / (1 - p), 1 + 6 * sd / (1 - p));
    }

    [Fact]
    public void NeighbouringElementsAreIndependent()
    {
        // Four elements share one 64-bit hash; pairs within and across hashes must drop independently (p² together).
        Torch.Seed();
        const long n = 1 << 20;
        const double p = 0.3;
        var dropped = (DropoutKernels.Dropout(torch.ones(n), p, training: true) == 0).to(ScalarType.Float64);
        double sd = Math.Sqrt(p * p * (1 - p * p) / (n - 4));
        for (int lag = 1; lag <= 4; lag++)
        {
            double both = (dropped.narrow(0, 0, n - lag) * dropped.narrow(0, lag, n - lag)).mean().item<double>();
            Assert.InRange(both, p * p - 6 * sd, p * p + 6 * sd);
        }
    }

    [Fact]
    public void TheGradientIsTheSameMaskTimesTheUpstreamGradient()
    {
        Torch.Seed();
        var x = (torch.rand(64, 33) + 0.5).requires_grad_(true);
        var y = DropoutKernels.Dropout(x, 0.25, training: true);
        var upstream = torch.randn(64, 33);
        y.backward(new[] { upstream });
        var mask = y.detach() / x.detach();
        KernelAssert.Close(x.grad!, upstream * mask, 1e-6, 1e-6, "gradient");
        Assert.True((mask == 0).any().item<bool>() && (mask != 0).any().item<bool>());
    }

    [Fact]
    public void TheSeedReproducesTheMaskAndTheThreadCountDoesNot()
    {
        var shape = new long[] { 3, 100_003 }; // several parallel chunks, a length not a multiple of 4
        Tensor Mask(int threads, long seed)
        {
            int before = torch.get_num_threads();
            torch.set_num_threads(threads);
            try { torch.manual_seed(seed); return DropoutKernels.Dropout(torch.ones(shape), 0.2, training: true); }
            finally { torch.set_num_threads(before); }
        }
        var a = Mask(1, 11);
        Assert.True(Same(a, Mask(2, 11)), "the mask changed with the thread count");
        Assert.True(Same(a, Mask(1, 11)), "the same seed gave another mask");
        Assert.False(Same(a, Mask(1, 12)), "another seed gave the same mask");
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void TheVectorFillEqualsTheScalarFill(ScalarType dtype)
    {
        var shape = new long[] { 5, 70_001 }; // several chunks, a tail shorter than a vector
        foreach (double p in new[] { 0.1, 0.5 })
        {
            var vector = DropoutKernels.ScaledMask(shape, dtype, p, 42, vectorized: true);
            var scalar = DropoutKernels.ScaledMask(shape, dtype, p, 42, vectorized: false);
            Assert.True(Same(vector, scalar), $"{dtype} p={p}: the vector fill differs from the scalar one");
        }
    }

    [Theory]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void LowPrecisionMasksKeepTheInputType(ScalarType dtype)
    {
        Torch.Seed();
        var x = torch.ones(4096, dtype: dtype);
        var y = DropoutKernels.Dropout(x, 0.1, training: true);
        Assert.Equal(dtype, y.dtype);
        var values = y.to(ScalarType.Float32).unique().Item1.data<float>().ToArray();
        Assert.Equal(2, values.Length);
        Assert.Equal(0f, values[0]);
        Assert.Equal(1 / 0.9, values[1], 2);
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [Fact]
    public void TheModuleIsTheIdentityInEvalModeAndRefusesABadRate()
    {
        Torch.Seed();
        using var drop = new FastDropout(0.5);
        var x = torch.randn(8, 8);
        drop.eval();
        Assert.True(Same(drop.forward(x), x));
        drop.train();
        Assert.False(Same(drop.forward(x), x));
        Assert.Empty(drop.parameters());
        Assert.True(Same(DropoutKernels.Dropout(x, 0, training: true), x));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new FastDropout(1.0));
        Assert.Contains("[0, 1)", e.Message);
        Assert.Throws<ArgumentException>(() => DropoutKernels.ScaledMask(new long[] { 4 }, ScalarType.Float64, 0.1, 1));
    }

    [Fact]
    public void OtherTypesUseLibtorchsDropout()
    {
        Torch.Seed();
        var y = DropoutKernels.Dropout(torch.ones(10_000, dtype: ScalarType.Float64), 0.5, training: true);
        Assert.Equal(ScalarType.Float64, y.dtype);
        Assert.InRange((y == 0).to(ScalarType.Float64).mean().item<double>(), 0.45, 0.55);
    }
}
