using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.DeltaNet;

public static partial class DeltaRule
{
    /// <summary>
    /// Bidirectional (encoder) delta rule, ViG / LION style: a forward scan and a reverse scan over the same q, k, v,
    /// each with its own write strengths and decays, summed:
    /// <code>
    ///   o_t = fwd_t + bwd_t
    ///   fwd_t = forward scan over tokens 0..t, inclusive (token t's own write is read, as in the causal form)
    ///   bwd_t = reverse scan over tokens L−1..t+1, exclusive (the state decayed by g_bwd[t], before token t writes)
    /// </code>
    /// so the current token (the diagonal) is counted exactly once, by the forward scan. L is the row's true length:
    /// the reverse scan starts at the last real token of each row (each row is flipped within its length by gathered
    /// indices, so a padded tail neither decays nor pollutes it), and padded tokens write nothing in either direction.
    /// </summary>
    /// <param name="q">[B, H, T, Dk].</param>
    /// <param name="k">[B, H, T, Dk].</param>
    /// <param name="v">[B, H, T, Dv].</param>
    /// <param name="betaForward">[B, H, T] write strengths of the forward scan.</param>
    /// <param name="gForward">Log-decay of the forward scan: null, [B, H, T] or [B, H, T, Dk].</param>
    /// <param name="betaBackward">[B, H, T] write strengths of the reverse scan (indexed by original position).</param>
    /// <param name="gBackward">Log-decay of the reverse scan (original positions), same kind as the forward one.</param>
    /// <param name="keyPaddingMask">[B, T] bool, true at real tokens (right padding), or null.</param>
    /// <param name="scale">Query scale; null = Dk^−½.</param>
    /// <param name="chunk">Chunk length of both scans.</param>
    /// <returns>[B, H, T, Dv] in v's dtype, zero at padded positions.</returns>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor betaForward, Tensor? gForward,
        Tensor betaBackward, Tensor? gBackward, Tensor? keyPaddingMask, double? scale = null, int chunk = DefaultChunk)
    {
        Check(q, k, v, betaForward, gForward, keyPaddingMask, chunk);
        Check(q, k, v, betaBackward, gBackward, keyPaddingMask, chunk);
        using var scope = NewDisposeScope();
        var o = BidirectionalCore(q, k, v, betaForward, gForward, betaBackward, gBackward, keyPaddingMask, scale, chunk);
        return Heads.ZeroPadded(o, keyPaddingMask).to(v.dtype).MoveToOuterDisposeScope();
    }

    /// <summary><see cref="Bidirectional"/> without the checks, the padding zeroing and the final cast (fp32 result).</summary>
    internal static Tensor BidirectionalCore(Tensor q, Tensor k, Tensor v, Tensor betaForward, Tensor? gForward,
        Tensor betaBackward, Tensor? gBackward, Tensor? keyPaddingMask, double? scale, int chunk)
    {
        // Both scans in one call: the reversed rows are appended to the batch, so the sequential chunk loop runs once.
        long b = q.shape[0];
        var idx = RowReversal.Indices(keyPaddingMask, q.shape[2], q.device);
        Tensor Both(Tensor fwd, Tensor bwd) => torch.cat(new[] { fwd, RowReversal.Apply(bwd, idx) }, 0);
        Tensor? gates = gForward is null && gBackward is null ? null
            : Both(gForward?.to(ScalarType.Float32) ?? torch.zeros_like(gBackward!, dtype: ScalarType.Float32),
                   gBackward?.to(ScalarType.Float32) ?? torch.zeros_like(gForward!, dtype: ScalarType.Float32));
        var o = ChunkedCore(Both(q, q), Both(k, k), Both(v, v), Both(betaForward.to(ScalarType.Float32), betaBackward.to(ScalarType.Float32)), gates,
            keyPaddingMask is null ? null : torch.cat(new[] { keyPaddingMask, keyPaddingMask }, 0), exclusiveFrom: b, scale, chunk);
        var fwd = o.narrow(0, 0, b);
        var bwd = o.narrow(0, b, b);
        return fwd + RowReversal.Apply(bwd, idx);
    }

    /// <summary>
    /// Naive twin of <see cref="Bidirectional"/>: two token-by-token recurrences in fp32; the reverse one simply walks
    /// the padded row from T−1 down to 0 (padded tokens have β = 0 and g = 0, so the state stays empty until the
    /// last real token), which checks the gathered per-row flip of the fast form independently.
    /// </summary>
    public static Tensor BidirectionalRecurrent(Tensor q, Tensor k, Tensor v, Tensor betaForward, Tensor? gForward,
        Tensor betaBackward, Tensor? gBackward, Tensor? keyPaddingMask, double? scale = null)
    {
        Check(q, k, v, betaForward, gForward, keyPaddingMask, 1);
        Check(q, k, v, betaBackward, gBackward, keyPaddingMask, 1);
        using var scope = NewDisposeScope();
        var o = BidirectionalRecurrentCore(q, k, v, betaForward, gForward, betaBackward, gBackward, keyPaddingMask, scale);
        return Heads.ZeroPadded(o, keyPaddingMask).to(v.dtype).MoveToOuterDisposeScope();
    }

    /// <summary><see cref="BidirectionalRecurrent"/> without the checks, the padding zeroing and the final cast (fp32).</summary>
    internal static Tensor BidirectionalRecurrentCore(Tensor q, Tensor k, Tensor v, Tensor betaForward, Tensor? gForward,
        Tensor betaBackward, Tensor? gBackward, Tensor? keyPaddingMask, double? scale)
    {
        var fwd = RecurrentCore(q, k, v, betaForward, gForward, keyPaddingMask, exclusive: false, scale);
        var bwd = RecurrentCore(q.flip(2), k.flip(2), v.flip(2), betaBackward.flip(2), gBackward?.flip(2),
            keyPaddingMask?.flip(1), exclusive: true, scale).flip(2);
        return fwd + bwd;
    }
}
