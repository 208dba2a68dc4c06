using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Decay;

/// <summary>
/// Decayed (gated) linear attention, the kernel shared by RetNet, Lightning, simple GLA and GLA (fla's
/// <c>chunk_simple_gla</c> / <c>chunk_gla</c> without initial state).
/// <para>Causal recurrence, with <c>g</c> the log of the decay (g ≤ 0, fp32 recommended):
/// S_t = diag(exp(g_t)) S_{t−1} + k_t v_tᵀ, o_t = scale · S_tᵀ q_t.</para>
/// <para>Shapes: q, k [B, H, T, Dk]; v [B, H, T, Dv]; g [B, H, T] (one decay per head and step: RetNet, Lightning,
/// simple GLA) or [B, H, T, Dk] (one per key channel: GLA); keyPaddingMask [B, T] bool (true = real token, right
/// padding) or null. Result [B, H, T, Dv] in q's dtype, zero at padded positions. Padded keys write nothing and do not
/// decay the state (their k and g are zeroed). scale null = 1/√Dk (fla's default).</para>
/// <para>Bidirectional (encoder) form, LION's "full linear attention" as two scans (arXiv 2502.16249): a forward
/// scan with gates gF and a reversed scan with its own gates gB, merged with the diagonal counted once:
/// o_t = o^fwd_t + o^bwd_t − scale (q_t·k_t) v_t. Equivalently o_t = scale Σ_s w_ts (q_t·k_s) v_s over real keys s with
/// w_tt = 1, w_ts = Π_{u=s+1..t} exp(gF_u) for s &lt; t and w_ts = Π_{u=t..s−1} exp(gB_u) for s &gt; t: each scan's decay is
/// produced by the token the scan arrives at, exactly as when the causal kernel runs on each row reversed within its
/// true length (ViG's direction-wise gating).</para>
/// </summary>
public static class DecayKernels
{
    /// <summary>Chunk length of the chunkwise kernels (fla's 64).</summary>
    public const int DefaultChunk = 64;

    // ---- causal ----

    /// <summary>
    /// Causal chunkwise form (chunk <paramref name="chunk"/>, any T): the §1.0 form. Gates are accumulated in fp32
    /// within each chunk; every decay ratio is exp of a non-positive number (within a chunk exp(G_r − G_c) only for
    /// r ≥ c, masked before the exp; per-channel gates use 16-token sub-chunks so that no exp of a positive number is
    /// taken). Chunk states are carried across chunks by a log-depth scan in fp32 (no loop over chunks). With one decay
    /// per head and step on CUDA (bf16/fp16, head dims multiples of 16 up to 128, sm_80+) it runs
    /// <see cref="FusedDecayAttention"/>'s fused kernels instead (<see cref="FusedKernelOptions.DecayEnabled"/>).
    /// </summary>
    /// <param name="q">Queries [B, H, T, Dk].</param>
    /// <param name="k">Keys [B, H, T, Dk].</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="g">Log decays, [B, H, T] or [B, H, T, Dk], ≤ 0.</param>
    /// <param name="keyPaddingMask">[B, T] bool, true at real tokens, or null.</param>
    /// <param name="scale">Query scale; null = 1/√Dk.</param>
    /// <param name="chunk">Chunk length.</param>
    /// <returns>[B, H, T, Dv], zero at padded positions.</returns>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? keyPaddingMask, double? scale = null, int chunk = DefaultChunk)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        CheckGate(g, k, nameof(g));
        CheckChunk(chunk);
        // One decay per head and step on CUDA: the fused kernels (their own chunk of 64; the result does not depend on it).
        if (UseFused(q, k, v, g, keyPaddingMask))
            return FusedDecayFunction.Run(q, k, v, g, keyPaddingMask, scale ?? 1.0 / Math.Sqrt(q.shape[3]));
        return CausalChunked(q, k, v, g, keyPaddingMask, scale, chunk);
    }

    /// <summary><see cref="Causal"/>'s TorchSharp chunk form, never routed to the fused kernels (their fallback).</summary>
    internal static Tensor CausalChunked(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? keyPaddingMask, double? scale, int chunk)
    {
        using var scope = NewDisposeScope();
        var (qs, km, gm) = Prepare(q, k, g, keyPaddingMask, scale);
        var o = DecayChunked.Forward(qs, km, v, gm, chunk);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive step-by-step recurrent twin of <see cref="Causal"/> (fla's <c>naive_recurrent_gla</c>), fp32;
    /// slow, for tests. Same shapes and arguments.</summary>
    public static Tensor CausalRecurrent(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? keyPaddingMask, double? scale = null)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        CheckGate(g, k, nameof(g));
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        var (qs, km, gm) = Prepare(q.to(ScalarType.Float32), k.to(ScalarType.Float32), g, keyPaddingMask, scale);
        var vf = v.to(ScalarType.Float32);
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        bool perChannel = g.dim() == 4;
        var s = torch.zeros(b, h, dk, dv, device: q.device);
        var outs = new Tensor[t];
        for (long i = 0; i < t; i++)
        {
            var gi = gm.select(2, i).exp();                                  // [B, H] or [B, H, Dk]
            var decay = perChannel ? gi.unsqueeze(-1) : gi.view(b, h, 1, 1);
            s = decay * s + km.select(2, i).unsqueeze(-1).matmul(vf.select(2, i).unsqueeze(-2));
            outs[i] = qs.select(2, i).unsqueeze(-2).matmul(s);              // [B, H, 1, Dv]
        }
        var o = torch.cat(outs, 2).to(dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    // ---- bidirectional ----

    /// <summary>
    /// Bidirectional form: the causal chunkwise kernel on each row and on each row reversed within its true length
    /// (one batched call), merged as o = o^fwd + o^bwd − scale (q·k) v (see the class remarks).
    /// </summary>
    /// <param name="q">Queries [B, H, T, Dk].</param>
    /// <param name="k">Keys [B, H, T, Dk].</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="gForward">Log decays of the forward scan, [B, H, T] or [B, H, T, Dk].</param>
    /// <param name="gBackward">Log decays of the reversed scan, same shape as <paramref name="gForward"/>, indexed by
    /// original position.</param>
    /// <param name="keyPaddingMask">[B, T] bool, true at real tokens, or null.</param>
    /// <param name="scale">Query scale; null = 1/√Dk.</param>
    /// <param name="chunk">Chunk length.</param>
    /// <returns>[B, H, T, Dv], zero at padded positions.</returns>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor gForward, Tensor gBackward, Tensor? keyPaddingMask,
        double? scale = null, int chunk = DefaultChunk)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        CheckGate(gForward, k, nameof(gForward));
        CheckGate(gBackward, k, nameof(gBackward));
        if (!gForward.shape.SequenceEqual(gBackward.shape))
            throw new ArgumentException($"gForward and gBackward must have the same shape; got {Heads.Shape(gForward)} and {Heads.Shape(gBackward)}.");
        CheckChunk(chunk);
        using var scope = NewDisposeScope();
        long b = q.shape[0];
        var (qs, km, gf) = Prepare(q, k, gForward, keyPaddingMask, scale);
        var gb = MaskGate(gBackward, keyPaddingMask);
        var idx = RowReversal.Indices(keyPaddingMask, q.shape[2], q.device);
        var (qa, ka, va, ga) = (torch.cat(new[] { qs, RowReversal.Apply(qs, idx) }, 0), torch.cat(new[] { km, RowReversal.Apply(km, idx) }, 0),
            torch.cat(new[] { v, RowReversal.Apply(v, idx) }, 0), torch.cat(new[] { gf, RowReversal.Apply(gb, idx) }, 0));
        // Both scans as one causal call on the doubled batch (already scaled and masked: no mask, scale 1).
        var both = UseFused(qa, ka, va, ga, null) ? FusedDecayFunction.Run(qa, ka, va, ga, null, 1.0) : DecayChunked.Forward(qa, ka, va, ga, chunk);
        var fwd = both.narrow(0, 0, b).to(ScalarType.Float32);
        var bwd = RowReversal.Apply(both.narrow(0, b, b), idx).to(ScalarType.Float32);
        var diag = (qs.to(ScalarType.Float32) * km.to(ScalarType.Float32)).sum(-1, keepdim: true) * v.to(ScalarType.Float32);
        var o = (fwd + bwd - diag).to(q.dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Bidirectional"/>: the explicit T×T (×Dk) decay mask w_ts, fp32, quadratic.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor gForward, Tensor gBackward, Tensor? keyPaddingMask, double? scale = null)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        CheckGate(gForward, k, nameof(gForward));
        CheckGate(gBackward, k, nameof(gBackward));
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        long t = q.shape[2], dk = q.shape[3];
        var (qs, km, gf) = Prepare(q.to(ScalarType.Float32), k.to(ScalarType.Float32), gForward, keyPaddingMask, scale);
        var gb = MaskGate(gBackward, keyPaddingMask);
        if (gf.dim() == 3) { gf = gf.unsqueeze(-1).expand(-1, -1, -1, dk); gb = gb.unsqueeze(-1).expand(-1, -1, -1, dk); }
        var pf = gf.cumsum(2);                                                // Σ_{u≤t} gF_u
        var pb = torch.cat(new[] { torch.zeros_like(gb.narrow(2, 0, 1)), gb.narrow(2, 0, t - 1).cumsum(2) }, 2); // Σ_{u<t} gB_u
        var logFwd = pf.unsqueeze(3) - pf.unsqueeze(2);                      // [B, H, T(t), T(s), Dk]: Σ_{s<u≤t} gF_u
        var logBwd = pb.unsqueeze(2) - pb.unsqueeze(3);                      // Σ_{t≤u<s} gB_u
        var lower = torch.ones(t, t, dtype: ScalarType.Bool, device: q.device).tril().view(1, 1, t, t, 1);
        var w = torch.where(lower, logFwd, logBwd).exp();
        var a = (qs.unsqueeze(3) * km.unsqueeze(2) * w).sum(-1);             // [B, H, T, T]
        var o = a.matmul(v.to(ScalarType.Float32)).to(dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    // ---- shared checks and masking ----

    /// <summary>Whether a call goes to <see cref="FusedDecayAttention"/>'s kernels: a [B, H, T] gate, routing on, and the kernels take the inputs.</summary>
    private static bool UseFused(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? keyPaddingMask)
        => g.dim() == 3 && FusedDecayAttention.ShouldUse(q, v) && FusedDecayAttention.Reason(q, k, v, g, keyPaddingMask) is null;

    internal static (Tensor q, Tensor k, Tensor g) Prepare(Tensor q, Tensor k, Tensor g, Tensor? keyPaddingMask, double? scale)
    {
        double s = scale ?? 1.0 / Math.Sqrt(q.shape[3]);
        return (q * s, Heads.ZeroPadded(k, keyPaddingMask), MaskGate(g, keyPaddingMask));
    }

    /// <summary>Gate in fp32 with zeros (no decay) at padded steps.</summary>
    internal static Tensor MaskGate(Tensor g, Tensor? keyPaddingMask)
    {
        var gf = g.to(ScalarType.Float32);
        if (keyPaddingMask is null) return gf;
        var m = keyPaddingMask.to(ScalarType.Float32).unsqueeze(1);
        return gf * (g.dim() == 4 ? m.unsqueeze(-1) : m);
    }

    internal static void CheckGate(Tensor g, Tensor k, string name)
    {
        bool scalar = g.dim() == 3 && g.shape[0] == k.shape[0] && g.shape[1] == k.shape[1] && g.shape[2] == k.shape[2];
        bool perChannel = g.dim() == 4 && g.shape.SequenceEqual(k.shape);
        if (!scalar && !perChannel)
            throw new ArgumentException($"{name} must be [B, H, T] = [{k.shape[0]}, {k.shape[1]}, {k.shape[2]}] (one decay per head and step) " +
                                        $"or [B, H, T, Dk] = {Heads.Shape(k)} (one per key channel); got {Heads.Shape(g)}.", name);
        if (!g.is_floating_point())
            throw new ArgumentException($"{name} must be a floating-point tensor of log decays; got {g.dtype}.", name);
    }

    internal static void CheckChunk(int chunk)
    {
        if (chunk <= 0) throw new ArgumentOutOfRangeException(nameof(chunk), chunk, "Chunk size must be positive (64 is the default).");
    }
}
