using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using Microsoft.ML.LinearAttention.Attention.GatedDeltaNet;
using Microsoft.ML.LinearAttention.Attention.MoM;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class MomTests
{
    /// <summary>q, k, v, β, g (then β, g of the reverse scan) and routing weights (a leaf, zero at unrouted memories).</summary>
    private static Tensor[] Inputs(long[] lengths, int m, int topK, int h, int dk, int dv, ScalarType dtype, bool bidirectional)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        Tensor Leaf(Tensor x) => x.to(dtype).detach().requires_grad_(true);
        var list = new List<Tensor>
        {
            Leaf(DeltaRule.L2Normalize(torch.randn(b, h, t, dk))),
            Leaf(DeltaRule.L2Normalize(torch.randn(new[] { b, m, h, t, dk }))),
            Leaf(torch.randn(new[] { b, m, h, t, dv })),
        };
        for (int dir = 0; dir < (bidirectional ? 2 : 1); dir++)
        {
            list.Add(Leaf(torch.sigmoid(torch.randn(b, m, h, t))));
            list.Add(Leaf(nn.functional.logsigmoid(torch.randn(b, m, h, t) * 3 + 1)));
        }
        list.Add(Leaf(MomKernels.Route(torch.randn(b, t, m) * 2, topK, KernelAssert.LengthMask(lengths))));
        return list.ToArray();
    }

    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths, memories, top-k, dtype, chunk
        new object[] { new long[] { 31 }, 4, 2, ScalarType.Float32, 16 },
        new object[] { new long[] { 45, 20, 1 }, 3, 1, ScalarType.Float32, 64 },
        new object[] { new long[] { 70, 41 }, 2, 1, ScalarType.Float32, 64 },   // two chunks of 64, the second partial
        new object[] { new long[] { 23, 20 }, 4, 2, ScalarType.BFloat16, 8 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void CausalMatchesPerMemoryRecurrencesOutputsAndGradients(long[] lengths, int m, int topK, ScalarType dtype, int chunk)
    {
        var x = Inputs(lengths, m, topK, 2, 4, 4, dtype, bidirectional: false);
        var mask = KernelAssert.LengthMask(lengths);
        KernelAssert.SameOutputsAndGradients(
            i => MomKernels.Causal(i[0], i[1], i[2], i[3], i[4], i[5], mask, chunk: chunk),
            i => MomKernels.CausalNaive(i[0], i[1], i[2], i[3], i[4], i[5], mask),
            x, dtype, $"MoM causal M={m} top-{topK}", KernelAssert.HeadMask(mask));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BidirectionalMatchesPerMemoryRecurrencesOutputsAndGradients(long[] lengths, int m, int topK, ScalarType dtype, int chunk)
    {
        var x = Inputs(lengths, m, topK, 2, 4, 4, dtype, bidirectional: true);
        var mask = KernelAssert.LengthMask(lengths);
        KernelAssert.SameOutputsAndGradients(
            i => MomKernels.Bidirectional(i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7], mask, chunk: chunk),
            i => MomKernels.BidirectionalNaive(i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7], mask),
            x, dtype, $"MoM bidirectional M={m} top-{topK}", KernelAssert.HeadMask(mask));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TokensTouchOnlyTheirRoutedMemories(bool bidirectional)
    {
        var x = Inputs(new long[] { 29, 17 }, 4, 2, 2, 4, 4, ScalarType.Float32, bidirectional).Select(t => t.detach()).ToArray();
        var mask = KernelAssert.LengthMask(29, 17);
        Tensor Run(Tensor[] i) => bidirectional
            ? MomKernels.Bidirectional(i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7], mask, chunk: 8)
            : MomKernels.Causal(i[0], i[1], i[2], i[3], i[4], i[5], mask, chunk: 8);
        var reference = Run(x);
        // Garbage keys, values, β and decays wherever a token is not routed to a memory change nothing.
        var unrouted = x[^1].eq(0).permute(0, 2, 1).unsqueeze(2);                        // [B, M, 1, T]
        var y = x.Select(t => t.clone()).ToArray();
        y[1] = torch.where(unrouted.unsqueeze(-1), torch.full_like(y[1], 5.0), y[1]);
        y[2] = torch.where(unrouted.unsqueeze(-1), torch.full_like(y[2], -9.0), y[2]);
        for (int j = 3; j < x.Length - 1; j++)
            y[j] = torch.where(unrouted, torch.full_like(y[j], j % 2 == 1 ? 0.9 : -30.0), y[j]);
        KernelAssert.Close(Run(y), reference, 1e-5, 1e-5, "unrouted inputs are ignored");
        Assert.Equal(0.0, reference[1, .., 17.., ..].abs().sum().item<float>());
    }

    [Fact]
    public void OneMemoryWithTop1IsGatedDeltaNet()
    {
        var x = Inputs(new long[] { 26, 11 }, 1, 1, 2, 4, 4, ScalarType.Float32, bidirectional: true).Select(t => t.detach()).ToArray();
        var mask = KernelAssert.LengthMask(26, 11);
        var mom = MomKernels.Bidirectional(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], mask, chunk: 8);
        var gdn = GatedDeltaNetKernels.Bidirectional(x[0], x[1].squeeze(1), x[2].squeeze(1), x[3].squeeze(1), x[4].squeeze(1), x[5].squeeze(1), x[6].squeeze(1), mask, chunk: 8);
        KernelAssert.Close(mom, gdn, 1e-6, 1e-6, "MoM(1 memory) = GDN");
    }

    [Fact]
    public void RouterKeepsTopKRenormalisedWeightsAndZeroesPadding()
    {
        Torch.Seed();
        var mask = KernelAssert.LengthMask(7, 4);
        var w = MomKernels.Route(torch.randn(2, 7, 5), 2, mask);
        Assert.Equal(new long[] { 2, 7, 5 }, w.shape);
        KernelAssert.Close(w.sum(-1), mask.to(ScalarType.Float32), 1e-6, 1e-6, "weights sum to 1 at real tokens, 0 at padding");
        Assert.True(((w > 0).sum(-1) == mask.to(ScalarType.Int64) * 2).all().item<bool>());
        Assert.Throws<ArgumentOutOfRangeException>(() => MomKernels.Route(torch.randn(1, 3, 4), 5, null));
    }

    [Fact]
    public void MixerIgnoresPaddingAndMatchesUnpaddedRows()
        => DeltaTestInputs.CheckMixerPadding("mom", new MomOptions { NumMemories = 3 });

    [Fact]
    public void MixerVariantsBuildRunAndTrainAndValidate()
    {
        foreach (var options in new[] { new MomOptions { UseOutputGate = false, TopK = 1, NumMemories = 2 }, new MomOptions { UseShortConv = false, ChunkSize = 8 } })
            foreach (bool causal in new[] { true, false })
            {
                Torch.Seed();
                using var mixer = new MomMixer(new MixerConfig(16, 2, causal), options);
                var y = mixer.forward(torch.randn(2, 9, 16), KernelAssert.LengthMask(9, 4));
                Assert.False(y.isnan().any().item<bool>(), $"NaN with {options}");
                y.square().sum().backward();
                Assert.True(mixer.parameters().All(p => p.grad is not null), $"a parameter got no gradient with {options}");
            }
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new MomMixer(new MixerConfig(16, 2), new MomOptions { TopK = 9 }));
        Assert.Contains("TopK", ex.Message);
        var opts = new MomOptions { NumMemories = 4, TopK = 1, UseOutputGate = false };
        Assert.Equal(opts, MixerRegistry.DeserializeOptions("mom", MixerRegistry.SerializeOptions(opts)));
    }

    [Fact]
    public void BadShapesAreReported()
    {
        var q = torch.zeros(1, 2, 5, 4);
        var ex = Assert.Throws<ArgumentException>(() => MomKernels.Causal(q, torch.zeros(new long[] { 1, 3, 2, 5, 4 }), torch.zeros(new long[] { 1, 3, 2, 5, 4 }), torch.zeros(1, 3, 2, 5), null, torch.zeros(1, 5, 2), null));
        Assert.Contains("routing weights must be [B, T, M] = [1, 5, 3]", ex.Message);
    }
}
