using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.VisionKit;

/// <summary>
/// Masked adaptive average pooling of tokens into M summary tokens (Agent attention's agents, SOFT's landmarks),
/// computed from real tokens only.
/// <para>Sequence: M adaptive-pooling segments over each row's TRUE length L, segment a = [⌊a·L/M⌋, ⌈(a+1)·L/M⌉)
/// (PyTorch's AdaptiveAvgPool1d boundaries), so every row gets M agents whatever its padding.
/// Grid (Height, Width): M = p×p cells of AdaptiveAvgPool2d over the patch grid (leading class tokens excluded);
/// padded patches are left out of each cell's mean and a cell with no real patch is marked invalid.</para>
/// </summary>
public static class AdaptivePool
{
    /// <summary>
    /// Pooling weights [B, M, T] (each valid row sums to 1 over the real tokens it pools) and validity [B, M] bool.
    /// </summary>
    public static (Tensor Weights, Tensor Valid) Weights(Tensor? keyPaddingMask, long batch, long t, int m, (int Height, int Width)? grid, Device device)
    {
        if (m <= 0) throw new ArgumentOutOfRangeException(nameof(m), m, "The number of pooled tokens (agents / landmarks) must be positive.");
        using var scope = NewDisposeScope();
        Tensor member;                                                               // [B or 1, M, T] in {0, 1}
        if (grid is null)
        {
            var lengths = keyPaddingMask is null
                ? torch.full(new long[] { batch }, t, dtype: ScalarType.Int64, device: device)
                : keyPaddingMask.sum(1, type: ScalarType.Int64);
            var a = torch.arange(m, dtype: ScalarType.Int64, device: device).view(1, m, 1);
            var len = lengths.view(-1, 1, 1);
            var start = (a * len).div(m, rounding_mode: RoundingMode.floor);
            var end = ((a + 1) * len + (m - 1)).div(m, rounding_mode: RoundingMode.floor);
            var pos = torch.arange(t, dtype: ScalarType.Int64, device: device).view(1, 1, t);
            member = ((pos >= start) & (pos < end)).to(ScalarType.Float32);
        }
        else
        {
            var (gh, gw) = grid.Value;
            long prefix = LocalConv.GridPrefix(t, grid);
            int p = (int)Math.Round(Math.Sqrt(m));
            if (p * p != m)
                throw new ArgumentException($"On a token grid the {m} agents/landmarks are pooled as p×p cells, so their number must be a perfect square (e.g. 49 = 7×7); got {m}.");
            var rows = AxisCells(gh, p, device);                                     // [p, gh]
            var cols = AxisCells(gw, p, device);                                     // [p, gw]
            var cells = (rows.view(p, 1, gh, 1) * cols.view(1, p, 1, gw)).reshape(m, (long)gh * gw);
            if (prefix > 0) cells = torch.cat(new[] { torch.zeros(m, prefix, device: device), cells }, 1);
            member = cells.unsqueeze(0);
            if (keyPaddingMask is not null) member = member * keyPaddingMask.to(ScalarType.Float32).unsqueeze(1);
        }
        if (member.shape[0] != batch) member = member.expand(batch, m, t);
        var count = member.sum(-1, keepdim: true);
        var weights = member / count.clamp_min(1);
        var valid = count.squeeze(-1) > 0;
        return (weights.MoveToOuterDisposeScope(), valid.MoveToOuterDisposeScope());
    }

    /// <summary>Pools x [B, H, T, D] with weights [B, M, T] → [B, H, M, D] (a batched matmul).</summary>
    public static Tensor Pool(Tensor x, Tensor weights) => weights.unsqueeze(1).to(x.dtype).matmul(x);

    /// <summary>Naive twin of <see cref="Weights"/> + <see cref="Pool"/>: explicit slices and means per row and cell, fp32.</summary>
    public static (Tensor Pooled, Tensor Valid) PoolNaive(Tensor x, Tensor? keyPaddingMask, int m, (int Height, int Width)? grid)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], h = x.shape[1], t = x.shape[2], d = x.shape[3];
        var xf = x.to(ScalarType.Float32);
        var rowsOut = new List<Tensor>();
        var valid = torch.ones(b, m, dtype: ScalarType.Bool);
        for (long i = 0; i < b; i++)
        {
            var agents = new List<Tensor>();
            long len = keyPaddingMask is null ? t : keyPaddingMask[i].sum().item<long>();
            if (grid is null)
            {
                for (long a = 0; a < m; a++)
                {
                    long s = a * len / m, e = ((a + 1) * len + m - 1) / m;
                    agents.Add(e > s ? xf[i].narrow(1, s, e - s).mean(new long[] { 1 }) : torch.zeros(h, d));
                    if (e <= s) valid[i, a] = false;
                }
            }
            else
            {
                var (gh, gw) = grid.Value;
                long prefix = t - (long)gh * gw;
                int p = (int)Math.Round(Math.Sqrt(m));
                for (int r = 0; r < p; r++)
                    for (int c = 0; c < p; c++)
                    {
                        long r0 = r * gh / p, r1 = ((r + 1) * gh + p - 1) / p, c0 = c * gw / p, c1 = ((c + 1) * gw + p - 1) / p;
                        var sum = torch.zeros(h, d);
                        long n = 0;
                        for (long y = r0; y < r1; y++)
                            for (long z = c0; z < c1; z++)
                            {
                                long tok = prefix + y * gw + z;
                                if (tok >= len) continue;                           // right padding
                                sum = sum + xf[i, .., tok, ..];
                                n++;
                            }
                        agents.Add(n > 0 ? sum / n : sum);
                        if (n == 0) valid[i, r * p + c] = false;
                    }
            }
            rowsOut.Add(torch.stack(agents, 1));                                   // [H, M, D]
        }
        return (torch.stack(rowsOut, 0).to(x.dtype).MoveToOuterDisposeScope(), valid.MoveToOuterDisposeScope());
    }

    // Membership of each of n positions in the p adaptive-pooling cells of one axis: [p, n].
    private static Tensor AxisCells(long n, int p, Device device)
    {
        var a = torch.arange(p, dtype: ScalarType.Int64, device: device).view(p, 1);
        var start = (a * n).div(p, rounding_mode: RoundingMode.floor);
        var end = ((a + 1) * n + (p - 1)).div(p, rounding_mode: RoundingMode.floor);
        var pos = torch.arange(n, dtype: ScalarType.Int64, device: device).view(1, n);
        return ((pos >= start) & (pos < end)).to(ScalarType.Float32);
    }
}
