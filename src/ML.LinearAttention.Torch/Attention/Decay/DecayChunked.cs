using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Decay;

/// <summary>
/// The chunkwise core of <see cref="DecayKernels"/> on already scaled q, masked k and fp32 masked log decays g.
/// Within chunk i, with G the inclusive cumulative sum of g from the chunk start (fp32):
/// O = (Q ⊙ exp(G)) S_{i−1} + (Q Kᵀ ⊙ D) V, D_rc = exp(G_r − G_c) for r ≥ c (per key channel for GLA), and
/// S_i = exp(G_last) ⊙ S_{i−1} + (K ⊙ exp(G_last − G))ᵀ V. Every exponent is ≤ 0.
/// </summary>
internal static class DecayChunked
{
    /// <summary>Sub-chunk of the per-channel intra-chunk product (fla's BC = 16).</summary>
    internal const int SubChunk = 16;

    internal static Tensor Forward(Tensor q, Tensor k, Tensor v, Tensor g, int chunk)
    {
        var dtype = q.dtype;
        var f32 = ScalarType.Float32;
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        bool perChannel = g.dim() == 4;
        long nc = (t + chunk - 1) / chunk, tp = nc * chunk;
        if (tp != t)
        {
            var pad = new long[] { 0, 0, 0, tp - t };
            q = nn.functional.pad(q, pad);
            k = nn.functional.pad(k, pad);
            v = nn.functional.pad(v, pad);
            g = nn.functional.pad(g, perChannel ? pad : new long[] { 0, tp - t });
        }
        var qc = q.view(b, h, nc, chunk, dk);
        var kc = k.view(b, h, nc, chunk, dk);
        var vc = v.view(b, h, nc, chunk, dv);
        var gc = perChannel ? g.view(b, h, nc, chunk, dk) : g.view(b, h, nc, chunk, 1);
        var cum = gc.cumsum(3);                                              // [B, H, NC, C, Dk|1], ≤ 0, non-increasing
        var last = cum.narrow(3, chunk - 1, 1);                              // [B, H, NC, 1, Dk|1]

        var scores = perChannel ? IntraPerChannel(qc, kc, cum, chunk) : IntraScalar(qc, kc, cum.squeeze(-1), chunk);
        var intra = scores.to(dtype).matmul(vc);

        var kDecayed = (kc.to(f32) * (last - cum).exp()).to(dtype);
        var chunkStates = kDecayed.transpose(-1, -2).matmul(vc).to(f32);   // [B, H, NC, Dk, Dv]
        var states = Scan(chunkStates, last.transpose(-1, -2));              // decay [B, H, NC, Dk|1, 1]
        var before = ShiftRight(states, 1);
        var inter = (qc.to(f32) * cum.exp()).to(dtype).matmul(before.to(dtype));
        return (inter + intra).view(b, h, tp, dv).narrow(2, 0, t);
    }

    /// <summary>Q Kᵀ ⊙ exp(G_r − G_c) (r ≥ c) for one decay per head and step; [B, H, NC, C, C] fp32.</summary>
    private static Tensor IntraScalar(Tensor qc, Tensor kc, Tensor cum, int chunk)
    {
        var above = torch.ones(chunk, chunk, dtype: ScalarType.Bool, device: qc.device).triu(1);
        var decay = (cum.unsqueeze(-1) - cum.unsqueeze(-2)).masked_fill(above, double.NegativeInfinity).exp();
        return qc.matmul(kc.transpose(-1, -2)).to(ScalarType.Float32) * decay;
    }

    /// <summary>
    /// Σ_d q_rd k_cd exp(G_rd − G_cd) for r ≥ c with per-channel decays, stably: pairs in different sub-chunks go through
    /// a reference point between them (the end of the sub-chunk before r's), q_r exp(G_r − G_ref) · k_c exp(G_ref − G_c),
    /// both factors ≤ 1, as one matmul; pairs inside one sub-chunk use the explicit masked per-channel ratio.
    /// </summary>
    private static Tensor IntraPerChannel(Tensor qc, Tensor kc, Tensor cum, int chunk)
    {
        var f32 = ScalarType.Float32;
        var dtype = qc.dtype;
        var dev = qc.device;
        long b = qc.shape[0], h = qc.shape[1], nc = qc.shape[2], dk = qc.shape[4];
        int sub = SubChunkFor(chunk);
        long ns = chunk / sub;
        var cs = cum.view(b, h, nc, ns, sub, dk);

        // Reference of sub-chunk i: G at the end of sub-chunk i−1 (sub-chunk 0 has no earlier keys).
        var refs = ns == 1
            ? torch.zeros(new long[] { b, h, nc, 1, dk }, device: dev)
            : torch.cat(new[] { torch.zeros(new long[] { b, h, nc, 1, dk }, device: dev), cs.narrow(3, 0, ns - 1).select(4, sub - 1) }, 3); // [B,H,NC,ns,Dk]
        var qRef = (qc.view(b, h, nc, ns, sub, dk).to(f32) * (cs - refs.unsqueeze(4)).exp()).to(dtype);
        var subOfKey = torch.arange(chunk, device: dev).floor_divide(sub);       // [C]
        var earlier = subOfKey.view(1, chunk) < torch.arange(ns, device: dev).view(ns, 1);                 // [ns, C]
        var kExp = (refs.unsqueeze(4) - cum.unsqueeze(3))                                                  // [B,H,NC,ns,C,Dk]
            .masked_fill(earlier.logical_not().view(ns, chunk, 1), double.NegativeInfinity).exp();
        var kRef = (kc.unsqueeze(3).to(f32) * kExp).to(dtype);
        var across = qRef.matmul(kRef.transpose(-1, -2)).to(f32);                                          // [B,H,NC,ns,S,C]

        var above = torch.ones(sub, sub, dtype: ScalarType.Bool, device: dev).triu(1).view(sub, sub, 1);
        var within = (cs.unsqueeze(5) - cs.unsqueeze(4)).masked_fill(above, double.NegativeInfinity).exp(); // [B,H,NC,ns,S,S,Dk]
        var qs = qc.view(b, h, nc, ns, sub, 1, dk).to(f32);
        var ks = kc.view(b, h, nc, ns, 1, sub, dk).to(f32);
        var diag = (qs * within * ks).sum(-1);                                                             // [B,H,NC,ns,S,S]
        var blockEye = torch.eye(ns, dtype: f32, device: dev).view(ns, 1, ns, 1);
        var full = across.view(b, h, nc, ns, sub, ns, sub) + diag.unsqueeze(-2) * blockEye;
        return full.view(b, h, nc, chunk, chunk);
    }

    /// <summary>Largest divisor of the chunk that is at most <see cref="SubChunk"/>.</summary>
    private static int SubChunkFor(int chunk)
    {
        for (int s = Math.Min(SubChunk, chunk); s > 1; s--)
            if (chunk % s == 0) return s;
        return 1;
    }

    /// <summary>
    /// Inclusive scan of S_i = exp(a_i) ⊙ S_{i−1} + U_i over dim 2 (chunks), Hillis–Steele in ⌈log2 NC⌉ steps; a ≤ 0
    /// so every factor is ≤ 1. <paramref name="u"/> [B, H, NC, X, Y] fp32, <paramref name="logDecay"/> broadcastable
    /// to it, [B, H, NC, X|1, 1].
    /// </summary>
    internal static Tensor Scan(Tensor u, Tensor logDecay)
    {
        long n = u.shape[2];
        var s = u;
        var a = logDecay;
        for (long off = 1; off < n; off *= 2)
        {
            s = s + a.exp() * ShiftRight(s, off);
            a = a + ShiftRight(a, off);
        }
        return s;
    }

    /// <summary>Shifts dim 2 right by <paramref name="off"/>, filling with <paramref name="fill"/> (exclusive prefixes are
    /// built by shifting, never by subtracting).</summary>
    internal static Tensor ShiftRight(Tensor x, long off, double fill = 0.0)
    {
        long n = x.shape[2];
        if (off >= n) return torch.full_like(x, fill);
        var shape = x.shape.ToArray();
        shape[2] = off;
        return torch.cat(new[] { torch.full(shape, fill, dtype: x.dtype, device: x.device), x.narrow(2, 0, n - off) }, 2);
    }
}
