using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.DeltaNet;

/// <summary>
/// Intra-chunk pieces of the chunkwise delta rule, all fp32 and per chunk (G = inclusive cumulative log-decay):
/// A_kk[r,c] = Σ_d k_r k_c e^{G_r − G_c}, A_qk[r,c] = Σ_d q_r k_c e^{G_r − G_c} (meaningful for r ≥ c; the caller
/// masks), Q ⊙ e^G, K ⊙ e^G, K ⊙ e^{G_last − G} and e^{G_last}.
/// </summary>
internal static class DeltaRuleIntra
{
    internal sealed record Parts(Tensor Akk, Tensor Aqk, Tensor QDecayed, Tensor KDecayed, Tensor KToEnd, Tensor? EndDecay);

    /// <param name="q">[N, NC, C, Dk] (already scaled).</param>
    /// <param name="k">[N, NC, C, Dk].</param>
    /// <param name="g">Log-decay per token: null, [N, NC, C] or [N, NC, C, Dk].</param>
    /// <param name="chunk">C.</param>
    internal static Parts Compute(Tensor q, Tensor k, Tensor? g, int chunk)
    {
        if (g is null)
        {
            var kt = k.transpose(-1, -2);
            return new Parts(k.matmul(kt), q.matmul(kt), q, k, k, null);
        }
        var cum = g.cumsum(2);
        if (g.dim() == 3) return Scalar(q, k, cum, chunk);
        return PerChannel(q, k, cum, chunk);
    }

    // Scalar decay per head: the [C, C] ratio matrix exp(G_r − G_c) on and below the diagonal, zero above.
    private static Parts Scalar(Tensor q, Tensor k, Tensor cum, int chunk)
    {
        var lower = torch.ones(chunk, chunk, dtype: ScalarType.Bool, device: q.device).tril();
        var diff = cum.unsqueeze(-1) - cum.unsqueeze(-2);                                   // [N, NC, C, C]
        var ratio = diff.masked_fill(lower.logical_not(), 0.0).exp() * lower.to(ScalarType.Float32);
        var kt = k.transpose(-1, -2);
        var last = cum.narrow(2, chunk - 1, 1);                                             // [N, NC, 1]
        var eg = cum.exp().unsqueeze(-1);
        return new Parts(k.matmul(kt) * ratio, q.matmul(kt) * ratio, q * eg, k * eg,
            k * (last - cum).exp().unsqueeze(-1), last.exp().unsqueeze(-1));
    }

    /// <summary>
    /// Per-channel decay (KDA). A single matmul would need e^{G_r} · e^{−G_c}, whose second factor overflows for
    /// strong decays, and the explicit [C, C, Dk] ratio tensor is C times the size of K. Instead the chunk is cut into
    /// sub-chunks of s ≈ √C tokens: for a row sub-chunk I starting at n_I and a column c &lt; n_I,
    /// e^{G_r − G_c} = e^{G_r − G_{n_I}} · e^{G_{n_I} − G_c} with both exponents ≤ 0 (one batched matmul per I);
    /// within a diagonal s × s block the ratios are formed explicitly. Memory ≈ (C/s + s) · C · Dk per chunk.
    /// </summary>
    private static Parts PerChannel(Tensor q, Tensor k, Tensor cum, int chunk)
    {
        long n = q.shape[0], nc = q.shape[1], dk = q.shape[3];
        int s = SubChunk(chunk), ns = chunk / s;
        var dev = q.device;
        var f32 = ScalarType.Float32;

        var cs = cum.view(n, nc, ns, s, dk);
        var start = cs.narrow(3, 0, 1);                                                     // G at n_I: [N, NC, ns, 1, Dk]
        var rowDecay = (cs - start).exp();                                                  // e^{G_r − G_{n_I}}, ≤ 1
        var qs = q.view(n, nc, ns, s, dk);
        var ks = k.view(n, nc, ns, s, dk);
        var rows = torch.cat(new[] { qs * rowDecay, ks * rowDecay }, 3);                    // [N, NC, ns, 2s, Dk]

        // Columns strictly before each row sub-chunk, scaled by e^{G_{n_I} − G_c} ≤ 1; later columns zeroed.
        var colPos = torch.arange(chunk, device: dev).view(1, chunk);
        var starts = (torch.arange(ns, device: dev) * s).view(ns, 1);
        var earlier = (colPos < starts).view(1, 1, ns, chunk, 1);                           // [1, 1, ns, C, 1]
        var colExp = (start - cum.unsqueeze(2)).masked_fill(earlier.logical_not(), 0.0);   // [N, NC, ns, C, Dk]
        var cols = k.unsqueeze(2) * colExp.exp() * earlier.to(f32);
        var off = rows.matmul(cols.transpose(-1, -2));                                      // [N, NC, ns, 2s, C]
        var qkOff = off.narrow(3, 0, s).reshape(n, nc, chunk, chunk);
        var kkOff = off.narrow(3, s, s).reshape(n, nc, chunk, chunk);

        // Diagonal s × s blocks: explicit ratios e^{G_r − G_c} for r ≥ c within the block.
        var lower = torch.ones(s, s, dtype: ScalarType.Bool, device: dev).tril().view(1, 1, 1, s, s, 1);
        var dExp = (cs.unsqueeze(4) - cs.unsqueeze(3)).masked_fill(lower.logical_not(), 0.0);  // [N, NC, ns, s, s, Dk]
        var colFactor = dExp.exp() * lower.to(f32) * ks.unsqueeze(3);                       // k_c e^{G_r − G_c}
        var diag = colFactor.matmul(torch.stack(new[] { qs, ks }, -1));                     // [N, NC, ns, s(r), s(c), 2]
        var eye = torch.eye(ns, dtype: f32, device: dev).view(1, 1, ns, 1, ns, 1);
        Tensor Place(Tensor blocks) => (blocks.unsqueeze(4) * eye).reshape(n, nc, chunk, chunk);
        var aqk = qkOff + Place(diag.select(-1, 0));
        var akk = kkOff + Place(diag.select(-1, 1));

        var last = cum.narrow(2, chunk - 1, 1);                                             // [N, NC, 1, Dk]
        var eg = cum.exp();
        return new Parts(akk, aqk, q * eg, k * eg, k * (last - cum).exp(), last.exp().transpose(-1, -2));
    }

    /// <summary>The divisor of <paramref name="chunk"/> closest to √chunk (8 for 64).</summary>
    internal static int SubChunk(int chunk)
    {
        int best = 1;
        double root = Math.Sqrt(chunk);
        for (int d = 1; d <= chunk; d++)
            if (chunk % d == 0 && Math.Abs(d - root) < Math.Abs(best - root)) best = d;
        return best;
    }
}
