using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels;

public static partial class LinearAttentionKernels
{
    /// <summary>
    /// Causal chunkwise form with the normalizer folded into the value products: v gets a column of ones, so the state
    /// products, the inter-chunk product with q and the masked intra-chunk product each yield numerator and
    /// denominator at once (the idea of issue 3: one prefix sum, two matmuls fewer, no separate row sums of the scores).
    /// Same semantics and shapes as <see cref="Causal"/>: q, k [B, H, T, Dk] (feature-mapped), v [B, H, T, Dv], mask [B, T]
    /// bool or null; result [B, H, T, Dv], zero at padded positions. Normalized form only.
    /// </summary>
    public static Tensor CausalFoldedNormalizer(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, double eps = DefaultEps, int chunk = DefaultChunk)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        if (chunk <= 0) throw new ArgumentOutOfRangeException(nameof(chunk), chunk, "Chunk size must be positive.");
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dv = v.shape[3];
        var v1 = torch.cat(new[] { v, torch.ones(b, h, t, 1, dtype: dtype, device: v.device) }, -1);   // [B, H, T, Dv + 1]
        var (qc, kc, vc, tp) = Chunks(q, Heads.ZeroPadded(k, keyPaddingMask), v1, chunk);
        var inter = InterChunk(qc, kc, vc);                                                    // [B, H, NC, C, Dv + 1]
        var causalMask = torch.ones(chunk, chunk, dtype: dtype, device: q.device).tril();
        var scores = qc.matmul(kc.transpose(-1, -2)) * causalMask;
        var full = (inter + scores.matmul(vc)).view(b, h, tp, dv + 1).narrow(2, 0, t);
        var pos = torch.arange(1, t + 1, dtype: dtype, device: q.device).view(1, 1, t, 1);
        var o = full.narrow(-1, 0, dv) / (full.narrow(-1, dv, 1) + pos * eps);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }
}
