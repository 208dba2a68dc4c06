using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>Kind of decay of a delta-rule test: none (DeltaNet), one per head (GDN), one per key channel (KDA).</summary>
public enum DecayKind { None, Scalar, Channel }

/// <summary>Shared inputs and checks of the delta-rule family tests (DeltaNet, Gated DeltaNet, KDA, MoM).</summary>
internal static class DeltaTestInputs
{
    /// <summary>
    /// Leaves q, k (L2-normalised, as the layers feed the kernel), v, β ∈ (0, 1), then the log-decay g when
    /// <paramref name="decay"/> is not None; with <paramref name="bidirectional"/> a second β (and g) for the reverse
    /// scan follows. The decays mix mild and very strong values (down to about −12 per token).
    /// </summary>
    internal static Tensor[] Make(long[] lengths, int h, int dk, int dv, ScalarType dtype, DecayKind decay, bool bidirectional, long seed = 1234)
    {
        Torch.Seed(seed);
        long b = lengths.Length, t = lengths.Max();
        Tensor Leaf(Tensor x) => x.to(dtype).detach().requires_grad_(true);
        var list = new List<Tensor>
        {
            Leaf(DeltaRule.L2Normalize(torch.randn(b, h, t, dk))),
            Leaf(DeltaRule.L2Normalize(torch.randn(b, h, t, dk))),
            Leaf(torch.randn(b, h, t, dv)),
        };
        for (int dir = 0; dir < (bidirectional ? 2 : 1); dir++)
        {
            list.Add(Leaf(torch.sigmoid(torch.randn(b, h, t))));
            if (decay != DecayKind.None)
            {
                var shape = decay == DecayKind.Scalar ? new[] { b, h, t } : new[] { b, h, t, (long)dk };
                list.Add(Leaf(nn.functional.logsigmoid(torch.randn(shape) * 3 + 1)));
            }
        }
        return list.ToArray();
    }

    /// <summary>The causal kernel call on inputs laid out by <see cref="Make"/>.</summary>
    internal static Tensor Causal(Tensor[] i, DecayKind decay, Tensor? mask, bool naive, int chunk)
    {
        var g = decay == DecayKind.None ? null : i[4];
        return naive
            ? DeltaRule.Recurrent(i[0], i[1], i[2], i[3], g, mask)
            : DeltaRule.Chunked(i[0], i[1], i[2], i[3], g, mask, chunk: chunk);
    }

    /// <summary>The bidirectional kernel call on inputs laid out by <see cref="Make"/> with bidirectional = true.</summary>
    internal static Tensor Bidirectional(Tensor[] i, DecayKind decay, Tensor? mask, bool naive, int chunk)
    {
        bool gated = decay != DecayKind.None;
        var (bf, gf, bb, gb) = gated ? (i[3], i[4], i[5], i[6]) : (i[3], (Tensor?)null, i[4], (Tensor?)null);
        return naive
            ? DeltaRule.BidirectionalRecurrent(i[0], i[1], i[2], bf, gf, bb, gb, mask)
            : DeltaRule.Bidirectional(i[0], i[1], i[2], bf, gf, bb, gb, mask, chunk: chunk);
    }

    /// <summary>Cases: lengths (padding when they differ), heads, Dk, Dv, dtype, chunk.</summary>
    internal static IEnumerable<object[]> Cases(bool oddChunk = false)
    {
        yield return new object[] { new long[] { 37 }, 2, 8, 8, ScalarType.Float32, 16 };
        yield return new object[] { new long[] { 67, 45, 1 }, 2, 8, 5, ScalarType.Float32, 64 };
        yield return new object[] { new long[] { 41, 40 }, 2, 8, 8, ScalarType.BFloat16, 16 };
        // A chunk that is not a power of two (sub-chunks of 4 for per-channel decays) with Dk = 16.
        if (oddChunk) yield return new object[] { new long[] { 53, 30 }, 1, 16, 8, ScalarType.Float32, 24 };
    }

    /// <summary>Fast vs naive, outputs and gradients of q, k, v, β and g (both directions when bidirectional).</summary>
    internal static void CheckAgainstNaive(long[] lengths, int h, int dk, int dv, ScalarType dtype, int chunk, DecayKind decay, bool bidirectional)
    {
        var x = Make(lengths, h, dk, dv, dtype, decay, bidirectional);
        var mask = KernelAssert.LengthMask(lengths);
        Func<Tensor[], Tensor> fast = bidirectional ? i => Bidirectional(i, decay, mask, false, chunk) : i => Causal(i, decay, mask, false, chunk);
        Func<Tensor[], Tensor> naive = bidirectional ? i => Bidirectional(i, decay, mask, true, chunk) : i => Causal(i, decay, mask, true, chunk);
        KernelAssert.SameOutputsAndGradients(fast, naive, x, dtype, $"delta rule {decay} bidirectional={bidirectional} chunk {chunk}", KernelAssert.HeadMask(mask));
    }

    /// <summary>
    /// Garbage in a padded tail changes nothing, padded outputs are zero, and each row equals the same row run alone
    /// at its true length (so the reverse scan starts at the last real token).
    /// </summary>
    internal static void CheckPadding(DecayKind decay, bool bidirectional)
    {
        var x = Make(new long[] { 23, 23 }, 2, 4, 4, ScalarType.Float32, decay, bidirectional).Select(t => t.detach()).ToArray();
        var mask = KernelAssert.LengthMask(23, 9);
        Tensor Run(Tensor[] i, Tensor? m) => bidirectional ? Bidirectional(i, decay, m, false, 8) : Causal(i, decay, m, false, 8);
        var padded = Run(x, mask);
        var garbage = x.Select(t => t.clone()).ToArray();
        foreach (var t in garbage) t[1, .., 9.., TensorIndex.Ellipsis] = torch.full_like(t[1, .., 9.., TensorIndex.Ellipsis], -0.7);
        KernelAssert.Close(Run(garbage, mask), padded, 1e-6, 1e-6, "padded tail is ignored");
        Assert.Equal(0.0, padded[1, .., 9.., ..].abs().sum().item<float>());
        var row = x.Select(t => t[1..2, .., ..9, TensorIndex.Ellipsis]).ToArray();
        KernelAssert.Close(padded[1..2, .., ..9, ..], Run(row, null), 1e-5, 1e-5, "row equals its unpadded run");
    }

    /// <summary>
    /// End to end through a registered mixer, both directions: garbage in padded rows changes nothing, and a padded
    /// row equals the same row run alone at its true length (short convolutions included).
    /// </summary>
    internal static void CheckMixerPadding(string name, Microsoft.ML.LinearAttention.Attention.MixerOptions? options = null)
    {
        foreach (bool causal in new[] { true, false })
        {
            Torch.Seed();
            using var mixer = Microsoft.ML.LinearAttention.Attention.MixerRegistry.Create(name,
                new Microsoft.ML.LinearAttention.Attention.MixerConfig(16, 2, causal), options);
            using var noGrad = torch.no_grad();
            var x = torch.randn(2, 11, 16);
            var mask = KernelAssert.LengthMask(11, 6);
            var y = mixer.forward(x, mask);
            var x2 = x.clone();
            x2[1, 6.., ..] = torch.full(new long[] { 5, 16 }, 3.0f);
            KernelAssert.Close(mixer.forward(x2, mask), y, 1e-5, 1e-5, $"{name} causal={causal}: padded input is ignored");
            var alone = mixer.forward(x[1..2, ..6, ..], null);
            KernelAssert.Close(y[1..2, ..6, ..], alone, 1e-5, 1e-4, $"{name} causal={causal}: row equals its unpadded run");
        }
    }
}
