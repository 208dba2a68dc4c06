using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Distributed;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Distributed;

/// <summary>
/// LASP-2 sequence parallelism on thread ranks: the slices' outputs and the gradients of q, k, v equal those of the
/// unsplit bidirectional kernel (odd T split unevenly, padding, both normalisations), and mean pooling over slices
/// equals the whole-sequence mean.
/// </summary>
public sealed class SequenceParallelTests
{
    [Theory]
    [InlineData(2, 13, true, true)]
    [InlineData(3, 17, true, false)]
    [InlineData(3, 11, false, true)]
    [InlineData(2, 9, false, false)]
    public void SlicesEqualTheUnsplitKernelInOutputsAndGradients(int world, int t, bool padded, bool normalize)
    {
        Torch.Seed(3);
        const int b = 2, h = 2, d = 8;
        var q = nn.functional.relu(randn(b, h, t, d)) + 0.1;
        var k = nn.functional.relu(randn(b, h, t, d)) + 0.1;
        var v = randn(b, h, t, d);
        var mask = padded ? arange(t).unsqueeze(0).lt(tensor(new long[] { t, t - 6 }).unsqueeze(1)) : null; // row 1: last 6 padded
        var upstream = randn(b, h, t, d);

        var (qf, kf, vf) = (q.clone().requires_grad_(), k.clone().requires_grad_(), v.clone().requires_grad_());
        var expected = LinearAttentionKernels.Bidirectional(qf, kf, vf, mask, normalize);
        expected.backward(new[] { upstream });

        var outs = new Tensor[world];
        var grads = new Tensor[world][];
        ThreadCollectives.Run(world, c =>
        {
            Tensor S(Tensor x) => SequenceParallel.Slice(x, 2, c.Rank, c.WorldSize).clone();
            var (qs, ks, vs) = (S(q).requires_grad_(), S(k).requires_grad_(), S(v).requires_grad_());
            var maskSlice = mask is null ? null : SequenceParallel.Slice(mask, 1, c.Rank, c.WorldSize).contiguous();
            var o = SequenceParallel.Bidirectional(qs, ks, vs, maskSlice, c, normalize);
            o.backward(new[] { S(upstream) });
            SequenceParallel.ThrowIfBackwardFailed();
            outs[c.Rank] = o.detach();
            grads[c.Rank] = new[] { qs.grad!, ks.grad!, vs.grad! };
        });
        Assert.Equal(t / world + 1, outs[0].shape[2]); // uneven split: the first ranks take one more token
        Close(cat(outs, 2), expected.detach(), "output");
        var names = new[] { "dq", "dk", "dv" };
        var full = new[] { qf.grad!, kf.grad!, vf.grad! };
        for (int i = 0; i < 3; i++) Close(cat(grads.Select(g => g[i]).ToArray(), 2), full[i], names[i]);
    }

    [Fact]
    public void MeanPoolOverSlicesEqualsTheWholeMeanWithGradients()
    {
        Torch.Seed(4);
        var x = randn(2, 7, 3);
        var mask = arange(7).unsqueeze(0).lt(tensor(new long[] { 7, 4 }).unsqueeze(1));
        var xf = x.clone().requires_grad_();
        var w = mask.to(ScalarType.Float32).unsqueeze(-1);
        var expected = (xf * w).sum(1) / w.sum(1);
        expected.sum().backward();
        var outs = new Tensor[2];
        var grads = new Tensor[2];
        ThreadCollectives.Run(2, c =>
        {
            var xs = SequenceParallel.Slice(x, 1, c.Rank, 2).clone().requires_grad_();
            var pooled = SequenceParallel.MeanPool(xs, SequenceParallel.Slice(mask, 1, c.Rank, 2).contiguous(), c);
            (pooled.sum() / 2).backward(); // the replicated loss over W: see MeanPool's note on gradients
            outs[c.Rank] = pooled.detach();
            grads[c.Rank] = xs.grad!;
        });
        Close(outs[0], expected.detach(), "pooled (rank 0)");
        Close(outs[1], expected.detach(), "pooled (rank 1)");
        Close(cat(grads, 1), xf.grad!, "pooled gradient");
    }

    [Fact]
    public void RotaryPositionsOfSlicesEqualThoseOfTheWholeSequence()
    {
        Torch.Seed(6);
        var x = randn(2, 3, 11, 8);
        var whole = Microsoft.ML.LinearAttention.Attention.Rotary.Apply(x);
        var parts = Enumerable.Range(0, 3).Select(r => SequenceParallel.RotaryAt(SequenceParallel.Slice(x, 2, r, 3), SequenceParallel.SliceStart(11, r, 3))).ToArray();
        Close(cat(parts, 2), whole, "rotary slices");
    }

    [Fact]
    public void SlicingAndBadInputsAreClearErrors()
    {
        Assert.Equal(new long[] { 4, 3, 3 }, Enumerable.Range(0, 3).Select(r => SequenceParallel.SliceLength(10, r, 3)).ToArray());
        Assert.Equal(new long[] { 0, 4, 7 }, Enumerable.Range(0, 3).Select(r => SequenceParallel.SliceStart(10, r, 3)).ToArray());
        var e = Assert.Throws<ArgumentException>(() => SequenceParallel.SliceLength(2, 0, 3));
        Assert.Contains("cannot be split over 3 ranks", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => SequenceParallel.SliceStart(10, 3, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => SequenceParallel.SliceStart(10, 0, 0));
    }

    private static void Close(Tensor actual, Tensor expected, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        double scale = Math.Max(1e-6, expected.abs().max().item<float>());
        double err = (actual - expected).abs().max().item<float>();
        Assert.True(err <= 1e-4 * scale + 1e-6, $"{what}: max error {err:G3} (scale {scale:G3})");
    }
}
