using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.MoM;

/// <summary>
/// Mixture-of-Memories kernels (arXiv 2502.13685; fla <c>fla/layers/mom.py</c>): M gated-delta-rule memories per head,
/// each with its own keys, values, β and decay; a router sends every token to its top-k memories. A token writes to
/// (and decays) only the memories it is routed to, and its output mixes the memories it is routed to:
/// <code>
///   S^m_t = S^m_{t−1}                                        if token t is not routed to m
///   S^m_t = α^m_t (I − β^m_t k^m_t k^mᵀ_t) S^m_{t−1} + β^m_t k^m_t v^mᵀ_t   otherwise
///   o_t  = Σ_m w_{t,m} · S^mᵀ_t (scale · q_t)                 (w_{t,m} = 0 unless routed)
/// </code>
/// fla packs each memory's tokens into a shorter sequence; here every memory scans the whole sequence with β = 0 and
/// g = 0 at tokens not routed to it, which gives the same states with static shapes (no host sync, one batched
/// kernel over B·M) at M / top-k times the arithmetic.
/// <para>Shapes: q [B, H, T, Dk] (shared by the memories); k [B, M, H, T, Dk]; v [B, M, H, T, Dv]; β and g
/// [B, M, H, T] (g = log-decay ≤ 0, or null for plain delta memories); routing weights [B, T, M], non-zero exactly at
/// the routed memories (see <see cref="Route"/>); keyPaddingMask [B, T] bool (true = real) or null.
/// Result [B, H, T, Dv] in v's dtype, zero at padded positions.</para>
/// </summary>
public static class MomKernels
{
    /// <summary>Fast causal form: the chunkwise gated delta rule over all memories at once (batch B·M).</summary>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor routingWeights, Tensor? keyPaddingMask,
        double? scale = null, int chunk = DeltaRule.DefaultChunk)
    {
        Check(q, k, v, beta, g, routingWeights);
        using var scope = NewDisposeScope();
        var (qm, km, vm, bm, gm, mask) = Flatten(q, k, v, beta, g, routingWeights, keyPaddingMask);
        DeltaRule.Check(qm, km, vm, bm, gm, mask, chunk);
        var o = DeltaRule.ChunkedCore(qm, km, vm, bm, gm, mask, exclusiveFrom: qm.shape[0], scale, chunk);
        return Mix(o, routingWeights, keyPaddingMask, v.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Causal"/>: one token-by-token recurrence per memory (fp32), then the weighted sum.</summary>
    public static Tensor CausalNaive(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor routingWeights, Tensor? keyPaddingMask, double? scale = null)
    {
        Check(q, k, v, beta, g, routingWeights);
        using var scope = NewDisposeScope();
        return PerMemory(routingWeights, keyPaddingMask, v.dtype, (m, routed) =>
            DeltaRule.RecurrentCore(q, k.select(1, m), v.select(1, m), beta.select(1, m) * routed,
                g is null ? null : g.select(1, m) * routed, keyPaddingMask, exclusive: false, scale)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Bidirectional encoder form: every memory runs the forward scan (inclusive) and the reverse scan (from each row's
    /// last real token, exclusive of the current token) with its own β and g per direction, see
    /// <see cref="DeltaRule.Bidirectional"/>; the routing (and so the weights) is shared by both directions.
    /// </summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor betaForward, Tensor? gForward, Tensor betaBackward, Tensor? gBackward,
        Tensor routingWeights, Tensor? keyPaddingMask, double? scale = null, int chunk = DeltaRule.DefaultChunk)
    {
        Check(q, k, v, betaForward, gForward, routingWeights);
        Check(q, k, v, betaBackward, gBackward, routingWeights);
        using var scope = NewDisposeScope();
        var (qm, km, vm, bf, gf, mask) = Flatten(q, k, v, betaForward, gForward, routingWeights, keyPaddingMask);
        var (_, _, _, bb, gb, _) = Flatten(q, k, v, betaBackward, gBackward, routingWeights, keyPaddingMask);
        DeltaRule.Check(qm, km, vm, bf, gf, mask, chunk);
        var o = DeltaRule.BidirectionalCore(qm, km, vm, bf, gf, bb, gb, mask, scale, chunk);
        return Mix(o, routingWeights, keyPaddingMask, v.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Bidirectional"/>: two recurrences per memory (fp32), then the weighted sum.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor betaForward, Tensor? gForward, Tensor betaBackward, Tensor? gBackward,
        Tensor routingWeights, Tensor? keyPaddingMask, double? scale = null)
    {
        Check(q, k, v, betaForward, gForward, routingWeights);
        Check(q, k, v, betaBackward, gBackward, routingWeights);
        using var scope = NewDisposeScope();
        return PerMemory(routingWeights, keyPaddingMask, v.dtype, (m, routed) =>
            DeltaRule.BidirectionalRecurrentCore(q, k.select(1, m), v.select(1, m),
                betaForward.select(1, m) * routed, gForward is null ? null : gForward.select(1, m) * routed,
                betaBackward.select(1, m) * routed, gBackward is null ? null : gBackward.select(1, m) * routed, keyPaddingMask, scale)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// fla's top-k router: softmax over the memories in fp32, the top-k probabilities renormalised to sum to 1, scattered
    /// into dense weights [B, T, M] (zero elsewhere and at padded tokens). logits [B, T, M].
    /// </summary>
    public static Tensor Route(Tensor logits, int topK, Tensor? keyPaddingMask)
    {
        long m = logits.shape[^1];
        if (topK < 1 || topK > m) throw new ArgumentOutOfRangeException(nameof(topK), topK, $"MoM TopK must lie in 1..{m} (the number of memories).");
        using var scope = NewDisposeScope();
        var scores = logits.to(ScalarType.Float32).softmax(-1);
        var (w, idx) = scores.topk(topK, -1);
        w = w / w.sum(-1, keepdim: true);
        var dense = torch.zeros_like(scores).scatter(-1, idx, w);
        if (keyPaddingMask is not null) dense = dense * keyPaddingMask.to(ScalarType.Float32).unsqueeze(-1);
        return dense.MoveToOuterDisposeScope();
    }

    // Memories folded into the batch; β and g zeroed where a token is not routed to the memory.
    private static (Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor? mask) Flatten(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g,
        Tensor routingWeights, Tensor? keyPaddingMask)
    {
        long b = k.shape[0], m = k.shape[1], h = k.shape[2], t = k.shape[3];
        var routed = Routed(routingWeights).unsqueeze(2);                                    // [B, M, 1, T]
        var qm = q.unsqueeze(1).expand(b, m, h, t, q.shape[3]).reshape(b * m, h, t, q.shape[3]);
        var gm = g is null ? null : (g.to(ScalarType.Float32) * routed).reshape(b * m, h, t);
        var mask = keyPaddingMask?.unsqueeze(1).expand(b, m, t).reshape(b * m, t);
        return (qm, k.reshape(b * m, h, t, k.shape[4]), v.reshape(b * m, h, t, v.shape[4]),
            (beta.to(ScalarType.Float32) * routed).reshape(b * m, h, t), gm, mask);
    }

    // o [B·M, H, T, Dv] fp32 → Σ_m w_{t,m} o^m, zero at padding, in the output dtype.
    private static Tensor Mix(Tensor o, Tensor routingWeights, Tensor? keyPaddingMask, ScalarType dtype)
    {
        long b = routingWeights.shape[0], t = routingWeights.shape[1], m = routingWeights.shape[2];
        var w = routingWeights.to(ScalarType.Float32).permute(0, 2, 1).reshape(b, m, 1, t, 1);
        var mixed = (o.reshape(b, m, o.shape[1], t, o.shape[3]) * w).sum(1);
        return Heads.ZeroPadded(mixed, keyPaddingMask).to(dtype);
    }

    private static Tensor PerMemory(Tensor routingWeights, Tensor? keyPaddingMask, ScalarType dtype, Func<long, Tensor, Tensor> memory)
    {
        var routed = Routed(routingWeights);                                                 // [B, M, T]
        var w = routingWeights.to(ScalarType.Float32);
        Tensor? sum = null;
        for (long m = 0; m < routingWeights.shape[2]; m++)
        {
            var om = memory(m, routed.select(1, m).unsqueeze(1)).to(ScalarType.Float32);     // [B, H, T, Dv]
            var term = om * w.select(2, m).unsqueeze(1).unsqueeze(-1);
            sum = sum is null ? term : sum + term;
        }
        return Heads.ZeroPadded(sum!, keyPaddingMask).to(dtype);
    }

    private static Tensor Routed(Tensor routingWeights) => routingWeights.ne(0).to(ScalarType.Float32).permute(0, 2, 1);

    private static void Check(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor routingWeights)
    {
        if (q.dim() != 4 || k.dim() != 5 || v.dim() != 5)
            throw new ArgumentException($"MoM takes q [B, H, T, Dk], k [B, M, H, T, Dk] and v [B, M, H, T, Dv]; got q {Heads.Shape(q)}, k {Heads.Shape(k)}, v {Heads.Shape(v)}.");
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], m = k.shape[1];
        if (k.shape[0] != b || k.shape[2] != h || k.shape[3] != t || k.shape[4] != q.shape[3] || v.shape[0] != b || v.shape[1] != m || v.shape[2] != h || v.shape[3] != t)
            throw new ArgumentException($"MoM q, k and v disagree: q {Heads.Shape(q)}, k {Heads.Shape(k)}, v {Heads.Shape(v)} (expected k [B, M, H, T, Dk], v [B, M, H, T, Dv]).");
        if (beta.dim() != 4 || beta.shape[0] != b || beta.shape[1] != m || beta.shape[2] != h || beta.shape[3] != t)
            throw new ArgumentException($"MoM beta must be [B, M, H, T] = [{b}, {m}, {h}, {t}]; got {Heads.Shape(beta)}.");
        if (g is not null && (g.dim() != 4 || !g.shape.SequenceEqual(beta.shape)))
            throw new ArgumentException($"MoM g must be [B, M, H, T] = [{b}, {m}, {h}, {t}] (one decay per memory, head and token); got {Heads.Shape(g)}.");
        if (routingWeights.dim() != 3 || routingWeights.shape[0] != b || routingWeights.shape[1] != t || routingWeights.shape[2] != m)
            throw new ArgumentException($"MoM routing weights must be [B, T, M] = [{b}, {t}, {m}]; got {Heads.Shape(routingWeights)}.");
    }
}
