using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Agent;

/// <summary>
/// Agent attention's agent–token position biases: a learned P×P table per head and agent (P = 7), resized to the
/// token layout by (bi)linear interpolation with PyTorch's align_corners=False rule. On a grid the table is resized to
/// Height×Width (the reference's an_bias / na_bias); along text its centre row is resized to each row's TRUE length,
/// so padding does not stretch it. Leading class tokens get no bias.
/// </summary>
public static class AgentPositionBias
{
    /// <summary>
    /// Resizes a table [H, n, P, P] to token positions: [B or 1, H, n, T], in fp32.
    /// </summary>
    public static Tensor Resize(Tensor table, Tensor? keyPaddingMask, long batch, long t, (int Height, int Width)? grid)
    {
        if (table.dim() != 4 || table.shape[2] != table.shape[3])
            throw new ArgumentException($"The agent position-bias table must be [H, n, P, P]; got {Heads.Shape(table)}.");
        using var scope = NewDisposeScope();
        long h = table.shape[0], n = table.shape[1], p = table.shape[2];
        var device = table.device;
        table = table.to(ScalarType.Float32);
        Tensor bias;
        if (grid is null)
        {
            var lengths = keyPaddingMask is null
                ? torch.full(new long[] { 1 }, (double)t, device: device)
                : keyPaddingMask.sum(1, type: ScalarType.Float32).clamp_min(1);
            var w = Weights(lengths, t, p, device);                                            // [B or 1, T, P]
            var row = table.select(2, p / 2);                                                 // [H, n, P]
            bias = row.unsqueeze(0).matmul(w.transpose(-1, -2).unsqueeze(1));                 // [B or 1, H, n, T]
        }
        else
        {
            var (gh, gw) = grid.Value;
            long prefix = LocalConv.GridPrefix(t, grid);
            var wh = Weights(torch.full(new long[] { 1 }, (double)gh, device: device), gh, p, device).squeeze(0);   // [gh, P]
            var ww = Weights(torch.full(new long[] { 1 }, (double)gw, device: device), gw, p, device).squeeze(0);   // [gw, P]
            var resized = wh.matmul(table).matmul(ww.t());                                    // [H, n, gh, gw]
            bias = resized.reshape(1, h, n, (long)gh * gw);
            if (prefix > 0) bias = torch.cat(new[] { torch.zeros(1, h, n, prefix, device: device), bias }, -1);
        }
        return bias.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Linear-interpolation weights [B, T, P] from P table points to positions 0..T−1 of rows of the given lengths
    /// (align_corners=False: src = (t + ½)·P/L − ½, clamped at 0; positions ≥ L get weights too but are padding).
    /// </summary>
    public static Tensor Weights(Tensor lengths, long t, long p, Device device)
    {
        using var scope = NewDisposeScope();
        var pos = torch.arange(t, dtype: ScalarType.Float32, device: device).view(1, t);
        var src = ((pos + 0.5) * p / lengths.to(ScalarType.Float32).view(-1, 1) - 0.5).clamp(0, p - 1);   // [B, T]
        var i0 = src.floor();
        var frac = (src - i0).unsqueeze(-1);
        var i1 = (i0 + 1).clamp_max(p - 1);
        var points = torch.arange(p, dtype: ScalarType.Float32, device: device).view(1, 1, p);
        var w = (points == i0.unsqueeze(-1)).to(ScalarType.Float32) * (1 - frac)
              + (points == i1.unsqueeze(-1)).to(ScalarType.Float32) * frac;
        return w.MoveToOuterDisposeScope();
    }
}
