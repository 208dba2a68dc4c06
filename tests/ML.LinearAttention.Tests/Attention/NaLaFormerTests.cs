using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.NaLaFormer;
using Microsoft.ML.LinearAttention.Attention.VisionKit;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class NaLaFormerTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (batch = count), rope, dtype
        new object[] { new long[] { 37 }, true, ScalarType.Float32 },
        new object[] { new long[] { 43, 25, 1 }, true, ScalarType.Float32 },
        new object[] { new long[] { 29, 13 }, false, ScalarType.Float32 },
        new object[] { new long[] { 33, 18 }, true, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesNaiveOutputsAndGradients(long[] lengths, bool rope, ScalarType dtype)
        => RopeKernelAssert.SameOutputsAndGradients(lengths, rope, dtype,
            (q, k, v, m, c, s) => NaLaFormerKernels.Bidirectional(q, k, v, m, c, s),
            (q, k, v, m, c, s) => NaLaFormerKernels.BidirectionalNaive(q, k, v, m, c, s), "nalaformer");

    [Fact]
    public void LargerQueryNormGivesASpikierDistribution()
    {
        Torch.Seed();
        // Same direction, growing norm: the implied attention weights get lower entropy.
        var k = torch.randn(1, 1, 16, 8);
        var dir = torch.randn(1, 1, 1, 8);
        double Entropy(double norm)
        {
            var q = dir / dir.norm(-1, true) * norm;
            var (pq, pk) = NaLaFormerKernels.FeatureMaps(q, k);
            var w = pq.matmul(pk.transpose(-1, -2)).squeeze();
            w = w / w.sum();
            return -(w * (w + 1e-12).log()).sum().item<float>();
        }
        Assert.True(Entropy(3.0) < Entropy(0.2));
    }

    [Fact]
    public void MixerRespectsPaddingAndTrainsOnAGrid()
    {
        Torch.Seed();
        using var mixer = new NaLaFormerMixer(new MixerConfig(16, 2), new NaLaFormerOptions());
        MixerAssert.PaddingNeverLeaks(mixer, new long[] { 10, 6, 1 });
        MixerAssert.TrainsOnGrid(mixer, (2, 6), 13, new long[] { 13, 13 });
    }
}
