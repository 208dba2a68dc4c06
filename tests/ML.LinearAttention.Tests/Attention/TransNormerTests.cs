using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.TransNormer;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class TransNormerTests
{
    [Theory]
    // feature map, lengths, causal, rmsnorm weight, per head, dtype
    [InlineData("1+elu", new long[] { 37, 20 }, false, false, false, ScalarType.Float32)]
    [InlineData("1+elu", new long[] { 37, 20, 1 }, true, true, false, ScalarType.Float32)]
    [InlineData("elu", new long[] { 29 }, true, false, true, ScalarType.Float32)]
    [InlineData("1+elu", new long[] { 29 }, false, true, false, ScalarType.Float32)]
    [InlineData("elu", new long[] { 41, 8 }, false, true, true, ScalarType.Float32)]
    [InlineData("1+elu", new long[] { 33, 17 }, false, true, false, ScalarType.BFloat16)]
    [InlineData("1+elu", new long[] { 33, 17 }, true, false, false, ScalarType.BFloat16)]
    public void FastMatchesNaiveOutputsAndGradients(string map, long[] lengths, bool causal, bool weight, bool perHead, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        const int h = 2, d = 8;
        var mask = KernelAssert.LengthMask(lengths);
        var inputs = new List<Tensor>
        {
            KernelAssert.Random(new[] { b, h, t, d }, dtype),
            KernelAssert.Random(new[] { b, h, t, d }, dtype),
            KernelAssert.Random(new[] { b, h, t, d }, dtype),
        };
        if (weight) inputs.Add((1 + KernelAssert.Random(new long[] { h, d }, dtype, requiresGrad: false, scale: 0.3)).requires_grad_(true));
        Tensor? W(Tensor[] i) => weight ? i[3] : null;
        Tensor Phi(Tensor x) => TransNormerKernels.FeatureMap(map, x);
        KernelAssert.SameOutputsAndGradients(
            i => TransNormerKernels.NormAttention(Phi(i[0]), Phi(i[1]), i[2], mask, causal, W(i), perHead, chunk: 16),
            i => TransNormerKernels.NormAttentionNaive(Phi(i[0]), Phi(i[1]), i[2], mask, causal, W(i), perHead),
            inputs.ToArray(), dtype, $"norm attention {map} causal={causal} weight={weight} perHead={perHead}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void OutputHasUnitRmsPerTokenAndNoDenominator()
    {
        Torch.Seed();
        var q = TransNormerKernels.FeatureMap("1+elu", torch.randn(1, 2, 6, 4));
        var k = TransNormerKernels.FeatureMap("1+elu", torch.randn(1, 2, 6, 4));
        var v = torch.randn(1, 2, 6, 4);
        var o = TransNormerKernels.NormAttention(q, k, v, null);
        KernelAssert.Close(o.square().mean(new long[] { 1, 3 }), torch.ones(1, 6), 1e-4, 1e-4, "joint rms");
        // Without denominator: the result is SRMSNorm(q (kᵀv)) exactly.
        var raw = q.matmul(k.transpose(-1, -2).matmul(v));
        var expected = raw / raw.square().mean(new long[] { 1, 3 }, keepdim: true).sqrt();
        KernelAssert.Close(o, expected, 1e-4, 1e-4, "O = Norm(Q(KᵀV))");
    }

    [Fact]
    public void PlainEluIsTheT1MapAndUnknownOptionsAreListed()
    {
        var x = torch.tensor(new float[] { -1f, 0f, 2f });
        KernelAssert.Close(TransNormerKernels.FeatureMap("elu", x), nn.functional.elu(x, 1.0), 0, 0, "plain elu");
        KernelAssert.Close(TransNormerKernels.FeatureMap("elu+1", x), nn.functional.elu(x, 1.0) + 1, 0, 0, "1+elu");
        Assert.Contains("1+elu", Assert.Throws<ArgumentException>(() => new TransNormerMixer(new MixerConfig(8, 2), new TransNormerOptions { FeatureMap = "exp" })).Message);
        Assert.Contains("srmsnorm", Assert.Throws<ArgumentException>(() => new TransNormerMixer(new MixerConfig(8, 2), new TransNormerOptions { OutputNorm = "layernorm" })).Message);
    }

    [Fact]
    public void OptionsRoundTripThroughJson()
    {
        var options = new TransNormerOptions { FeatureMap = "elu", OutputNorm = "rmsnorm", NormPerHead = true, NormEps = 1e-6, ChunkSize = 32 };
        Assert.Equal(options, MixerRegistry.DeserializeOptions("transnormer", MixerRegistry.SerializeOptions(options)));
    }

    [Theory]
    [InlineData("srmsnorm", false, 0)]
    [InlineData("rmsnorm", false, 16)]
    [InlineData("rmsnorm", true, 4)]
    public void MixerNormWeightShapesAndTraining(string norm, bool perHead, int weightSize)
    {
        Torch.Seed();
        using var mixer = MixerRegistry.Create("transnormer", new MixerConfig(16, 4, Causal: true), new TransNormerOptions { OutputNorm = norm, NormPerHead = perHead });
        var weight = mixer.named_parameters().Where(p => p.name == "norm_weight").Select(p => p.parameter).ToList();
        Assert.Equal(weightSize == 0 ? 0 : 1, weight.Count);
        var y = mixer.forward(torch.randn(2, 9, 16), KernelAssert.LengthMask(9, 4));
        y.square().sum().backward();
        if (weightSize > 0)
        {
            Assert.Equal(weightSize, weight[0].numel());
            Assert.True(weight[0].grad!.abs().sum().item<float>() > 0);
        }
    }
}
