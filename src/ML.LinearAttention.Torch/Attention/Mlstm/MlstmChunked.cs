using Microsoft.ML.LinearAttention.Attention.Decay;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Mlstm;

/// <summary>
/// The chunkwise core of <see cref="MlstmKernels"/> (TFLA's form, fla's <c>naive_chunk_mlstm</c> without the loop over
/// chunks): on scaled q, masked k, input-gate pre-activations i and fp32 masked log forget gates, returns the
/// max-stabilised numerator, normaliser and max state of every position.
/// <para>Log weight of key c at query r (c ≤ r): log D_rc = F_r − F_c + i_c with F the cumulative log forget gate. The
/// max state m_r = max_c log D_rc (the recurrent m_t = max(m_{t−1} + log f_t, i_t)) is found per chunk and carried
/// across chunks by a max-plus scan; it is detached (the output does not depend on it mathematically). Every exponent
/// taken is log D − m ≤ 0, for sigmoid and exponential forget gates alike. Chunk states C, n are stored divided by
/// exp(m at the chunk end) and carried by the same log-depth scan as <see cref="DecayChunked"/>.</para>
/// </summary>
internal static class MlstmChunked
{
    /// <returns>num [B, H, T, Dv], den [B, H, T], m [B, H, T], all fp32: h = num / max(|den|, exp(−m) + eps).</returns>
    internal static (Tensor num, Tensor den, Tensor m) Parts(Tensor q, Tensor k, Tensor v, Tensor i, Tensor logF, int chunk)
    {
        var dtype = q.dtype;
        var f32 = ScalarType.Float32;
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        long nc = (t + chunk - 1) / chunk, tp = nc * chunk;
        i = i.to(f32);
        if (tp != t)
        {
            var pad = new long[] { 0, 0, 0, tp - t };
            q = nn.functional.pad(q, pad);
            k = nn.functional.pad(k, pad);
            v = nn.functional.pad(v, pad);
            i = nn.functional.pad(i, new long[] { 0, tp - t });
            logF = nn.functional.pad(logF, new long[] { 0, tp - t });
        }
        var qc = q.view(b, h, nc, chunk, dk);
        var kc = k.view(b, h, nc, chunk, dk);
        var vc = v.view(b, h, nc, chunk, dv);
        var ic = i.view(b, h, nc, chunk);
        var cum = logF.view(b, h, nc, chunk).cumsum(3);                                   // F, local to the chunk
        var above = torch.ones(chunk, chunk, dtype: ScalarType.Bool, device: q.device).triu(1);
        var logD = (cum.unsqueeze(-1) - cum.unsqueeze(-2) + ic.unsqueeze(-2)).masked_fill(above, double.NegativeInfinity);
        var last = cum.narrow(3, chunk - 1, 1);                                            // [B, H, NC, 1]

        Tensor m, mPrev, mEnd;
        using (torch.no_grad())
        {
            var local = logD.amax(new long[] { -1 });                                     // max within the chunk
            var ends = MaxPlusScan(last.squeeze(-1), local.select(3, chunk - 1));
            mPrev = DecayChunked.ShiftRight(ends, 1, double.NegativeInfinity).unsqueeze(-1); // [B, H, NC, 1]
            m = torch.maximum(mPrev + cum, local);                                         // [B, H, NC, C]
            mEnd = m.narrow(3, chunk - 1, 1);
        }

        var e = qc.matmul(kc.transpose(-1, -2)).to(f32) * (logD - m.unsqueeze(-1)).exp();  // [B, H, NC, C, C]
        var numIntra = e.to(dtype).matmul(vc).to(f32);
        var denIntra = e.sum(-1);

        var v1 = torch.cat(new[] { vc, torch.ones_like(vc.narrow(-1, 0, 1)) }, -1);        // normaliser rides along as a column
        var kw = (last - cum + ic - mEnd).exp();                                           // ≤ 1
        var states = (kc.to(f32) * kw.unsqueeze(-1)).to(dtype).transpose(-1, -2).matmul(v1).to(f32); // [B, H, NC, Dk, Dv+1]
        var mEndPrev = DecayChunked.ShiftRight(mEnd, 1, double.NegativeInfinity);
        var logDecay = (last + mEndPrev - mEnd).clamp_max(0.0);                           // −∞ for the first chunk
        var carried = DecayChunked.ShiftRight(DecayChunked.Scan(states, logDecay.unsqueeze(-1)), 1);
        var qf = (mPrev + cum - m).exp();                                                  // 0 in the first chunk
        var inter = (qc.to(f32) * qf.unsqueeze(-1)).to(dtype).matmul(carried.to(dtype)).to(f32); // [B, H, NC, C, Dv+1]

        var num = (numIntra + inter.narrow(-1, 0, dv)).view(b, h, tp, dv).narrow(2, 0, t);
        var den = (denIntra + inter.select(-1, dv)).view(b, h, tp).narrow(2, 0, t);
        return (num, den, m.view(b, h, tp).narrow(2, 0, t));
    }

    /// <summary>x_j = max(x_{j−1} + a_j, b_j) over dim 2 (x_{−1} = −∞), Hillis–Steele in ⌈log2 NC⌉ steps.</summary>
    internal static Tensor MaxPlusScan(Tensor a, Tensor b)
    {
        long n = a.shape[2];
        var x = b;
        for (long off = 1; off < n; off *= 2)
        {
            x = torch.maximum(x, DecayChunked.ShiftRight(x, off, double.NegativeInfinity) + a);
            a = a + DecayChunked.ShiftRight(a, off);
        }
        return x;
    }
}
