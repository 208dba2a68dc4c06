using Microsoft.ML.LinearAttention.Attention.Softmax;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.SlidingWindow;

/// <summary>
/// Sliding-window softmax attention without a [T, T] mask. Shapes: q [B, Hq, T, D], k [B, H, T, D], v [B, H, T, Dv]
/// (Hq a multiple of H: grouped heads), keyPaddingMask [B, T] bool (true = real token, right padding) or null;
/// result [B, Hq, T, Dv], zero at padded positions.
/// <para>Window convention (the library's, as <see cref="SoftmaxKernels"/>): bidirectional, query i sees keys with
/// |i−j| ≤ window (2·window + 1 keys); causal, keys with 0 ≤ i−j &lt; window (the last window keys, itself included;
/// flash-attn's <c>window_size=(window−1, 0)</c>).</para>
/// </summary>
public static class SlidingWindowKernels
{
    /// <summary>Default query block length of the banded form.</summary>
    public const int DefaultBlock = 64;

    /// <summary>
    /// Banded fast form: queries in blocks of Q = min(<paramref name="block"/>, window) attend to their key span
    /// (Q + 2·window keys bidirectional, Q + window − 1 causal) through <c>scaled_dot_product_attention</c> with a
    /// per-block band mask, the blocks folded into the batch. Memory O(T·(Q + 2·window)), never [T, T].
    /// </summary>
    /// <param name="q">Queries [B, Hq, T, D].</param>
    /// <param name="k">Keys [B, H, T, D].</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="keyPaddingMask">[B, T] bool, true = real token; null = no padding.</param>
    /// <param name="window">Window radius (bidirectional) or length (causal), ≥ 1.</param>
    /// <param name="causal">Left-to-right window.</param>
    /// <param name="block">Query block length (≥ 1); smaller blocks waste fewer span entries.</param>
    public static Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, int window, bool causal = false, int block = DefaultBlock)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        BandedBlocks.CheckWindow(window, "Sliding-window attention");
        if (block <= 0) throw new ArgumentOutOfRangeException(nameof(block), block, "The query block length must be positive.");
        using var scope = NewDisposeScope();
        (k, v) = BandedBlocks.RepeatKv(q, k, v);
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], dv = v.shape[3];
        long qb = Math.Min(block, window);
        var (before, after) = BandedBlocks.BandReach(window, causal);
        var qs = BandedBlocks.Blocks(q, qb);                                  // [B, H, NC, Q, D]
        var ks = BandedBlocks.Spans(k, qb, before, after);                    // [B, H, NC, L, D]
        var vs = BandedBlocks.Spans(v, qb, before, after);                    // [B, H, NC, L, Dv]
        long nc = qs.shape[2], span = ks.shape[3];
        var offsets = BandedBlocks.Offsets(qb, before, after, q.device);      // [Q, L] = i − j
        // A padded query keeps itself so no row is empty (its output is zeroed below).
        var allowed = BandedBlocks.Band(offsets, window, causal)
                      & (BandedBlocks.SpanKeyValid(keyPaddingMask, t, qb, before, after, q.device) | offsets.eq(0));
        // SDPA's fused kernels take 4-D inputs: fold the blocks into the batch ([B·NC, H, Q, ·]).
        var q4 = qs.permute(0, 2, 1, 3, 4).reshape(b * nc, h, qb, d);
        var k4 = ks.permute(0, 2, 1, 3, 4).reshape(b * nc, h, span, d);
        var v4 = vs.permute(0, 2, 1, 3, 4).reshape(b * nc, h, span, dv);
        var m4 = allowed.expand(b, 1, nc, qb, span).permute(0, 2, 1, 3, 4).reshape(b * nc, 1, qb, span);
        var o4 = nn.functional.scaled_dot_product_attention(q4, k4, v4, attn_mask: m4);
        var o = BandedBlocks.Unblock(o4.view(b, nc, h, qb, dv).permute(0, 2, 1, 3, 4), t);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin: the dense [T, T] masked softmax of <see cref="SoftmaxKernels.AttentionNaive"/>, fp32.</summary>
    public static Tensor AttentionNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, int window, bool causal = false)
    {
        BandedBlocks.CheckWindow(window, "Sliding-window attention");
        return SoftmaxKernels.AttentionNaive(q, k, v, keyPaddingMask, causal, window);
    }
}
