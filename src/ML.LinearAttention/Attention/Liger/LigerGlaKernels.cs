using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Liger;

/// <summary>
/// Gated linear attention (GLA, fla <c>chunk_gla</c> with scale 1, no normalizer) as Liger uses it: per-channel decays
/// S_t = diag(α_t) S_{t−1} + k_t v_tᵀ, o_t = S_tᵀ q_t, with log α_t = <c>logDecay</c> ≤ 0.
/// <para>Shapes: q/k [B, H, T, Dk], v [B, H, T, Dv], logDecay [B, H, T, Dk] (fp32 or the input dtype),
/// keyPaddingMask [B, T] bool (true = real) or null; result [B, H, T, Dv], zero at padded positions. Padded keys write
/// nothing and their decays are ignored (set to 1), so padding changes no real output.</para>
/// <para>Bidirectional (a library extension; Liger is causal): a forward scan plus a reverse scan that excludes the
/// diagonal, so pair (i, j) has weight Σ_d q_id k_jd Π α_sd over the positions s strictly after the key up to and
/// including the query in the direction of travel (j &lt; s ≤ i forward, i ≤ s &lt; j backward).</para>
/// </summary>
public static class LigerGlaKernels
{
    /// <summary>Default chunk length.</summary>
    public const int DefaultChunk = 64;

    /// <summary>
    /// Causal chunkwise form (chunk C, any T). Within a chunk the decays are taken relative to the chunk's middle
    /// position, so the exponents stay within the decay of half a chunk (exact in fp32 while the log-decay of one
    /// channel over C/2 steps stays above −88, e.g. Liger's logsigmoid(k)/16 gate unless k &lt; −44 for 32 tokens);
    /// between chunks the state S is carried by one multiply-add per chunk (a T/C-step loop: per-channel decays have no
    /// cheap closed-form prefix without an O((T/C)²·Dk) pairwise tensor). States and decays in fp32.
    /// </summary>
    /// <param name="q">Queries [B, H, T, Dk] (feature-mapped).</param>
    /// <param name="k">Keys [B, H, T, Dk] (feature-mapped).</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="logDecay">log α [B, H, T, Dk], ≤ 0.</param>
    /// <param name="keyPaddingMask">[B, T] bool, true = real token; null = no padding.</param>
    /// <param name="chunk">Chunk length C ≥ 1.</param>
    /// <param name="includeCurrent">False excludes the diagonal (o_t = q_t·α_t S_{t−1}); used by the reverse scan.</param>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor logDecay, Tensor? keyPaddingMask, int chunk = DefaultChunk, bool includeCurrent = true)
    {
        Check(q, k, v, logDecay, keyPaddingMask, chunk);
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        k = Heads.ZeroPadded(k, keyPaddingMask);
        v = Heads.ZeroPadded(v, keyPaddingMask);
        var g = Heads.ZeroPadded(logDecay.to(ScalarType.Float32), keyPaddingMask);
        long nc = (t + chunk - 1) / chunk, tp = nc * chunk;
        if (tp != t)
        {
            var pad = new long[] { 0, 0, 0, tp - t };
            (q, k, v, g) = (nn.functional.pad(q, pad), nn.functional.pad(k, pad), nn.functional.pad(v, pad), nn.functional.pad(g, pad));
        }
        var qc = q.view(b, h, nc, chunk, dk);
        var kc = k.view(b, h, nc, chunk, dk);
        var vc = v.view(b, h, nc, chunk, dv);
        var cum = g.view(b, h, nc, chunk, dk).cumsum(3);                                  // inclusive, ≤ 0, decreasing
        var last = cum.narrow(3, chunk - 1, 1);                                           // [B, H, NC, 1, Dk]
        var mid = cum.narrow(3, chunk / 2, 1);

        // Intra-chunk: Σ_d q_rd k_cd exp(cum_r − cum_c), split around the middle position.
        var qs = qc.to(ScalarType.Float32) * (cum - mid).exp();
        var ks = kc.to(ScalarType.Float32) * (mid - cum).exp();
        var keep = torch.ones(chunk, chunk, dtype: ScalarType.Bool, device: q.device).tril(includeCurrent ? 0 : -1);
        var scores = qs.matmul(ks.transpose(-1, -2)).masked_fill(keep.logical_not(), 0.0);
        var intra = scores.to(dtype).matmul(vc);

        // Inter-chunk: state before each chunk, carried with the chunk's total decay.
        var writes = (kc.to(ScalarType.Float32) * (last - cum).exp()).to(dtype).transpose(-1, -2).matmul(vc).to(ScalarType.Float32);
        var decay = last.exp().transpose(-1, -2);                                          // [B, H, NC, Dk, 1]
        var states = new Tensor[nc];
        states[0] = torch.zeros(b, h, dk, dv, device: q.device);
        for (long c = 1; c < nc; c++)
            states[c] = states[c - 1] * decay.select(2, c - 1) + writes.select(2, c - 1);
        var before = torch.stack(states, 2);                                               // [B, H, NC, Dk, Dv]
        var inter = (qc.to(ScalarType.Float32) * cum.exp()).to(dtype).matmul(before.to(dtype));

        var o = (intra + inter).view(b, h, tp, dv).narrow(2, 0, t);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Bidirectional form: <see cref="Causal"/> forward plus <see cref="Causal"/> on the reversed sequence
    /// without the diagonal (the reversed rows start at each row's last real token, since padding turns into leading
    /// keys that write nothing).</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor logDecay, Tensor? keyPaddingMask, int chunk = DefaultChunk)
    {
        Check(q, k, v, logDecay, keyPaddingMask, chunk);
        using var scope = NewDisposeScope();
        var forward = Causal(q, k, v, logDecay, keyPaddingMask, chunk);
        var backward = Causal(q.flip(2), k.flip(2), v.flip(2), logDecay.flip(2), keyPaddingMask?.flip(1), chunk, includeCurrent: false).flip(2);
        return (forward + backward).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of both forms: the explicit [T, T, Dk] decay products, fp32.</summary>
    public static Tensor Naive(Tensor q, Tensor k, Tensor v, Tensor logDecay, Tensor? keyPaddingMask, bool causal)
    {
        Check(q, k, v, logDecay, keyPaddingMask, 1);
        using var scope = NewDisposeScope();
        long t = q.shape[2];
        var g = Heads.ZeroPadded(logDecay.to(ScalarType.Float32), keyPaddingMask);
        var inclusive = g.cumsum(2);                                                       // G_t = Σ_{s ≤ t} g_s
        var exclusive = torch.cat(new[] { torch.zeros_like(g.narrow(2, 0, 1)), inclusive.narrow(2, 0, t - 1) }, 2);  // Σ_{s < t} g_s (shifted)
        var i = torch.arange(t, device: q.device).view(t, 1, 1);
        var j = torch.arange(t, device: q.device).view(1, t, 1);
        // Forward (j ≤ i): Σ_{j < s ≤ i} g = G_i − G_j. Backward (j > i): Σ_{i ≤ s < j} g = E_j − E_i.
        var fwd = inclusive.unsqueeze(3) - inclusive.unsqueeze(2);                         // [B, H, T(i), T(j), Dk]
        var bwd = exclusive.unsqueeze(2) - exclusive.unsqueeze(3);
        var exponent = torch.where(j.le(i), fwd, causal ? torch.full_like(bwd, double.NegativeInfinity) : bwd);
        var a = (q.to(ScalarType.Float32).unsqueeze(3) * k.to(ScalarType.Float32).unsqueeze(2) * exponent.exp()).sum(-1);
        if (keyPaddingMask is not null) a = a * keyPaddingMask.to(ScalarType.Float32).view(-1, 1, 1, t);
        var o = a.matmul(v.to(ScalarType.Float32)).to(v.dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Step-by-step recurrent twin of <see cref="Causal"/> (fp32; slow, for tests).</summary>
    public static Tensor Recurrent(Tensor q, Tensor k, Tensor v, Tensor logDecay, Tensor? keyPaddingMask)
    {
        Check(q, k, v, logDecay, keyPaddingMask, 1);
        using var scope = NewDisposeScope();
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        var kf = Heads.ZeroPadded(k, keyPaddingMask).to(ScalarType.Float32);
        var vf = Heads.ZeroPadded(v, keyPaddingMask).to(ScalarType.Float32);
        var alpha = Heads.ZeroPadded(logDecay.to(ScalarType.Float32), keyPaddingMask).exp();
        var qf = q.to(ScalarType.Float32);
        var s = torch.zeros(b, h, dk, dv, device: q.device);
        var outs = new Tensor[t];
        for (long step = 0; step < t; step++)
        {
            s = s * alpha.select(2, step).unsqueeze(-1) + kf.select(2, step).unsqueeze(-1).matmul(vf.select(2, step).unsqueeze(-2));
            outs[step] = qf.select(2, step).unsqueeze(-2).matmul(s);
        }
        var o = torch.cat(outs, 2).to(v.dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    private static void Check(Tensor q, Tensor k, Tensor v, Tensor logDecay, Tensor? keyPaddingMask, int chunk)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        if (!q.shape.SequenceEqual(k.shape))
            throw new ArgumentException($"GLA needs q and k of one shape; got q {Heads.Shape(q)}, k {Heads.Shape(k)}.");
        if (!logDecay.shape.SequenceEqual(k.shape))
            throw new ArgumentException($"The log-decay must be per key channel, [B, H, T, Dk] = {Heads.Shape(k)}; got {Heads.Shape(logDecay)}.");
        if (chunk <= 0) throw new ArgumentOutOfRangeException(nameof(chunk), chunk, "Chunk size must be positive (64 is the default).");
    }
}
