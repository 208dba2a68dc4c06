using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// fla's ShortConvolution against an explicit loop over time: y_t = b + Σ_{j&lt;K} w[:, j] · x_{t − left + j} with
/// left = K − 1 (causal) or K − 1 − ⌊(K − 1)/2⌋ (centred), zero outside [0, T) and at padded positions, then SiLU.
/// </summary>
public class ShortConvolutionTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (batch = count), K, causal, bias, SiLU, dtype
        new object[] { new long[] { 13 }, 4, true, false, true, ScalarType.Float32 },          // fla's default
        new object[] { new long[] { 13, 9, 1 }, 4, true, true, true, ScalarType.Float32 },     // padded rows, one of length 1
        new object[] { new long[] { 11, 6 }, 3, false, true, true, ScalarType.Float32 },       // centred, odd K: 1 left, 1 right
        new object[] { new long[] { 10, 7 }, 4, false, false, false, ScalarType.Float32 },     // centred, even K: 2 left, 1 right; no SiLU
        new object[] { new long[] { 3 }, 5, true, true, false, ScalarType.Float32 },           // K > T
        new object[] { new long[] { 7, 5 }, 1, false, true, true, ScalarType.Float32 },        // K = 1: pointwise scale
        new object[] { new long[] { 13, 8 }, 4, true, true, true, ScalarType.BFloat16 },
        new object[] { new long[] { 9, 4 }, 3, false, false, true, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void ModuleMatchesAnExplicitLoopOverTime(long[] lengths, int kernelSize, bool causal, bool useBias, bool silu, ScalarType dtype)
    {
        Torch.Seed();
        const long c = 6;
        long b = lengths.Length, t = lengths.Max();
        using var conv = new ShortConvolution(c, kernelSize, causal, useBias, silu);
        conv.to(dtype);
        var mask = lengths.Distinct().Count() > 1 ? KernelAssert.LengthMask(lengths) : null;
        var x = KernelAssert.Random(new[] { b, t, c }, dtype, requiresGrad: false);
        ModuleAssert.SameOutputsAndGradients(conv,
            xi => conv.forward(xi, mask),
            (xi, p) => Naive(xi, p, mask, kernelSize, causal, silu),
            x, dtype, $"short conv K={kernelSize} causal={causal} bias={useBias} silu={silu} {dtype}",
            mask?.unsqueeze(-1));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void PaddedGarbageNeverReachesRealTokens(bool causal)
    {
        Torch.Seed();
        using var conv = new ShortConvolution(4, 3, causal, useBias: true);
        using var _ = no_grad();
        long[] lengths = { 9, 4 };
        var mask = KernelAssert.LengthMask(lengths);
        var real = mask.unsqueeze(-1);
        var x = torch.randn(2, 9, 4);
        var garbage = x + real.logical_not().to(ScalarType.Float32) * 50 * torch.randn(2, 9, 4);
        var y = conv.forward(x, mask);
        KernelAssert.Close(conv.forward(garbage, mask), y, 1e-6, 1e-6, "garbage in the padded tail changed real outputs", real);
        for (int i = 0; i < lengths.Length; i++)
        {
            var alone = conv.forward(x[i..(i + 1), ..(int)lengths[i], ..], null);
            KernelAssert.Close(y[i..(i + 1), ..(int)lengths[i], ..], alone, 1e-6, 1e-6, $"row {i} differs from running it alone");
        }
        // The mask is what protects them: without it the centred kernel reads its right neighbour, the causal one never does.
        var unmasked = conv.forward(garbage, null);
        bool lastRealChanged = (unmasked[1, 3] - y[1, 3]).abs().max().item<float>() > 1e-3;
        Assert.Equal(!causal, lastRealChanged);
    }

    [Fact]
    public void ACausalKernelReadsOnlyTheLastKTokens()
    {
        Torch.Seed();
        using var conv = new ShortConvolution(3, 4, useBias: true);
        using var _ = no_grad();
        var x = torch.randn(1, 12, 3);
        var x2 = x.clone();
        x2[0, 5] = x2[0, 5] + 5;
        var changed = ((conv.forward(x2, null) - conv.forward(x, null)).abs().sum(-1).squeeze(0) > 1e-6).nonzero().flatten();
        Assert.Equal(new long[] { 5, 6, 7, 8 }, changed.data<long>().ToArray());
    }

    [Fact]
    public void ParametersFollowFlaLayoutAndTheSizeIsValidated()
    {
        Torch.Seed();
        using var conv = new ShortConvolution(5, 4, useBias: true);
        var p = conv.named_parameters().ToDictionary(n => n.Item1, n => n.Item2);
        Assert.Equal(new long[] { 5, 1, 4 }, p["weight"].shape);
        Assert.Equal(new long[] { 5 }, p["bias"].shape);
        Assert.True(p["weight"].abs().max().item<float>() <= 0.5f);                          // uniform ±1/√K
        using var noBias = new ShortConvolution(5, 4);
        Assert.DoesNotContain(noBias.named_parameters(), n => n.Item1 == "bias");
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShortConvolution(5, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShortConvolution(5, -3));
    }

    [Fact]
    public void ProjectConvolvesTheProjectionOrAppliesSiLUAlone()
    {
        Torch.Seed();
        using var proj = nn.Linear(4, 6);
        using var conv = new ShortConvolution(6, 3, causal: false);
        using var _ = no_grad();
        var mask = KernelAssert.LengthMask(5, 3);
        var x = torch.randn(2, 5, 4);
        var y = proj.forward(x);
        KernelAssert.Close(ShortConvolution.Project(proj, conv, x, mask, siluWithoutConv: false), conv.forward(y, mask), 1e-6, 1e-6, "with a conv");
        KernelAssert.Close(ShortConvolution.Project(proj, null, x, mask, siluWithoutConv: true), y * torch.sigmoid(y), 1e-6, 1e-6, "SiLU alone");
        KernelAssert.Close(ShortConvolution.Project(proj, null, x, mask, siluWithoutConv: false), y, 0, 0, "projection alone");
    }

    /// <summary>The documented convolution as a loop over output positions and taps, fp32.</summary>
    private static Tensor Naive(Tensor x, IReadOnlyDictionary<string, Tensor> p, Tensor? mask, int k, bool causal, bool silu)
    {
        long b = x.shape[0], t = x.shape[1], c = x.shape[2];
        var xf = x.to(ScalarType.Float32);
        if (mask is not null) xf = xf * mask.unsqueeze(-1).to(ScalarType.Float32);          // fla multiplies by the mask
        var w = p["weight"].select(1, 0);                                                   // [C, K]
        int right = causal ? 0 : (k - 1) / 2, left = k - 1 - right;
        var rows = new List<Tensor>();
        for (long i = 0; i < t; i++)
        {
            var acc = p.TryGetValue("bias", out var bias) ? bias.unsqueeze(0).expand(b, c) : torch.zeros(b, c);
            for (int j = 0; j < k; j++)
            {
                long src = i - left + j;                                                    // the last tap reads x_{i + right}
                if (src < 0 || src >= t) continue;                                          // zero padding
                acc = acc + w.select(1, j).unsqueeze(0) * xf.select(1, src);
            }
            rows.Add(acc);
        }
        var y = torch.stack(rows, 1);
        return silu ? y / (1 + torch.exp(-y)) : y;
    }
}
