using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning.MomentProbing;

/// <summary>
/// The masked cross-covariance at the heart of MHC³: for each head pair (i, j) and row,
/// C = (1/N) · X̃ᵢᵀ X̃ⱼ [d, d] over the N real tokens, with X̃ the centred features, then each column L2-normalized
/// (the reference's <c>F.normalize(dim=2)</c>). Padded tokens contribute to nothing: not to the means, not to the sums,
/// not to N.
/// </summary>
public static class MomentProbingKernels
{
    /// <summary>
    /// heads [B, H, T, d] (per-head features after the LayerNorm), mask [B, T] bool (true = token to use) →
    /// [B, P, d, d] for the P pairs. Accumulates in fp32; returns fp32.
    /// </summary>
    public static Tensor CrossCovariance(Tensor heads, Tensor mask, IReadOnlyList<(int First, int Second)> pairs, CovarianceCentering centering)
    {
        if (heads.dim() != 4) throw new ArgumentException($"heads must be [B, H, T, d]; got [{string.Join(", ", heads.shape)}].");
        if (mask.dim() != 2 || mask.shape[0] != heads.shape[0] || mask.shape[1] != heads.shape[2])
            throw new ArgumentException($"mask must be [B, T] = [{heads.shape[0]}, {heads.shape[2]}]; got [{string.Join(", ", mask.shape)}].");
        using var scope = NewDisposeScope();
        var m = mask.to(ScalarType.Float32).unsqueeze(1).unsqueeze(-1);              // [B, 1, T, 1]
        var n = m.sum(2, keepdim: true).clamp_min(1);                                // [B, 1, 1, 1] real tokens
        var x = heads.to(ScalarType.Float32) * m;
        var mean = centering == CovarianceCentering.Global
            ? x.sum(new long[] { 2, 3 }, keepdim: true) / (n * heads.shape[3])      // one mean per row and head
            : x.sum(2, keepdim: true) / n;                                           // one mean per channel
        x = (x - mean) * m;
        var first = x.index_select(1, tensor(pairs.Select(p => (long)p.First).ToArray(), device: x.device));
        var second = x.index_select(1, tensor(pairs.Select(p => (long)p.Second).ToArray(), device: x.device));
        var cov = first.transpose(-1, -2).matmul(second) / n;                        // [B, P, d, d]
        return nn.functional.normalize(cov, p: 2, dim: 2).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Naive twin of <see cref="CrossCovariance"/>: row by row, the real tokens sliced out, plain sums. Same shapes.
    /// </summary>
    public static Tensor CrossCovarianceNaive(Tensor heads, Tensor mask, IReadOnlyList<(int First, int Second)> pairs, CovarianceCentering centering)
    {
        using var scope = NewDisposeScope();
        long b = heads.shape[0], d = heads.shape[3];
        var rows = new List<Tensor>();
        for (long r = 0; r < b; r++)
        {
            var keep = mask[r].nonzero().squeeze(-1);
            var x = heads[r].to(ScalarType.Float32).index_select(1, keep);             // [H, N, d]
            long count = Math.Max(1, keep.shape[0]);
            var maps = new List<Tensor>();
            foreach (var (i, j) in pairs)
            {
                Tensor Centre(Tensor h) => centering == CovarianceCentering.Global ? h - h.mean() : h - h.mean(new long[] { 0 }, keepdim: true);
                var xi = keep.shape[0] == 0 ? zeros(0, d) : Centre(x[i]);
                var xj = keep.shape[0] == 0 ? zeros(0, d) : Centre(x[j]);
                var c = xi.t().matmul(xj) / count;
                maps.Add(c / c.norm(0, keepdim: true).clamp_min(1e-12));
            }
            rows.Add(stack(maps));
        }
        return stack(rows).MoveToOuterDisposeScope();
    }
}
