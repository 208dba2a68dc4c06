using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.HiLo;

/// <summary>
/// The two halves of HiLo attention (LITv2, Pan et al. 2022, <c>ziplab/LITv2</c> <c>HiLo</c>), both softmax:
/// <list type="bullet">
/// <item>Hi-Fi <see cref="LocalWindow"/>: every token attends to the tokens of its own non-overlapping window
/// (s × s on a grid; s² consecutive tokens for a sequence), O(T·s²).</item>
/// <item>Lo-Fi <see cref="PooledGlobal"/>: every token attends to the window means (s × s average pooling) of the keys
/// and values, O(T²/s²).</item>
/// </list>
/// Shapes: q, k [B, H, T, Dk], v [B, H, T, Dv], keyPaddingMask [B, T] bool (true = real, right padding) or null;
/// results [B, H, T, Dv], zero at padded positions. Grid (Height, Width): the last Height·Width tokens are the patches
/// in row-major order; leading class tokens form one window of their own (and one pooled token). A grid side that is
/// not a multiple of s gets a partial last window; window means are over real tokens only, so padding never counts.
/// </summary>
public static class HiLoKernels
{
    private const float Masked = -1e30f;

    /// <summary>How tokens fall into windows.</summary>
    internal readonly record struct Layout(long Prefix, int Gh, int Gw, int Wh, int Ww)
    {
        public int Hp => (Gh + Wh - 1) / Wh * Wh;
        public int Wp => (Gw + Ww - 1) / Ww * Ww;
        public int Windows => Hp / Wh * (Wp / Ww);
        public int PooledCount => Windows + (Prefix > 0 ? 1 : 0);

        public static Layout Of(long t, (int Height, int Width)? grid, int window)
        {
            if (window < 1) throw new ArgumentOutOfRangeException(nameof(window), window, "The HiLo window size must be at least 1 (2 in the reference).");
            if (grid is null) return new Layout(0, 1, (int)t, 1, window * window);
            long prefix = LocalConv.GridPrefix(t, grid);
            return new Layout(prefix, grid.Value.Height, grid.Value.Width, window, window);
        }
    }

    /// <summary>Hi-Fi, fast form: one batched softmax per window ([B, H, windows, s², s²] scores).</summary>
    public static Tensor LocalWindow(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, (int Height, int Width)? grid, int window, double? scale = null)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var lay = Layout.Of(q.shape[2], grid, window);
        double sc = scale ?? 1.0 / Math.Sqrt(q.shape[^1]);
        var maskF = MaskAsFloat(keyPaddingMask, q);
        var qw = ToWindows(q, lay);
        var kw = ToWindows(k, lay);
        var vw = ToWindows(Heads.ZeroPadded(v, keyPaddingMask), lay);
        var keys = ToWindows(maskF, lay).transpose(-1, -2) > 0.5;                   // [B, 1, W, 1, s²]
        var o = Attend(qw, kw, vw, keys, sc);
        var grid_o = FromWindows(o, lay);
        if (lay.Prefix > 0)
        {
            long p = lay.Prefix;
            var keysP = (maskF.narrow(2, 0, p) > 0.5).transpose(-1, -2);           // [B, 1, 1, P]
            var prefixO = Attend(q.narrow(2, 0, p), k.narrow(2, 0, p), Heads.ZeroPadded(v, keyPaddingMask).narrow(2, 0, p), keysP, sc);
            grid_o = torch.cat(new[] { prefixO, grid_o }, 2);
        }
        return Heads.ZeroPadded(grid_o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Lo-Fi, fast form: pool k and v per window (means of real tokens), then one softmax over the pooled tokens.</summary>
    public static Tensor PooledGlobal(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, (int Height, int Width)? grid, int window, double? scale = null)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var (kp, valid) = PoolWindows(k, keyPaddingMask, grid, window);
        var (vp, _) = PoolWindows(v, keyPaddingMask, grid, window);
        return AttendPooled(q, kp, vp, valid, keyPaddingMask, scale ?? 1.0 / Math.Sqrt(q.shape[^1])).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Window means of x [B, H, T, D] over real tokens: pooled [B, H, M, D] (M = windows, + 1 for the class tokens of a
    /// grid, first) and validity [B, M] bool (false for a window holding only padding).
    /// </summary>
    public static (Tensor Pooled, Tensor Valid) PoolWindows(Tensor x, Tensor? keyPaddingMask, (int Height, int Width)? grid, int window)
    {
        using var scope = NewDisposeScope();
        var lay = Layout.Of(x.shape[2], grid, window);
        var maskF = MaskAsFloat(keyPaddingMask, x);                                  // [B or 1, 1, T, 1]
        var sum = ToWindows(Heads.ZeroPadded(x, keyPaddingMask), lay).sum(3);        // [B, H, W, D]
        var count = ToWindows(maskF.expand(x.shape[0], 1, x.shape[2], 1), lay).sum(3); // [B, 1, W, 1]
        if (lay.Prefix > 0)
        {
            sum = torch.cat(new[] { Heads.ZeroPadded(x, keyPaddingMask).narrow(2, 0, lay.Prefix).sum(2, keepdim: true), sum }, 2);
            count = torch.cat(new[] { maskF.expand(x.shape[0], 1, x.shape[2], 1).narrow(2, 0, lay.Prefix).sum(2, keepdim: true), count }, 2);
        }
        var pooled = sum / count.clamp_min(1).to(x.dtype);
        var valid = count.squeeze(-1).squeeze(1) > 0.5;
        return (pooled.MoveToOuterDisposeScope(), valid.MoveToOuterDisposeScope());
    }

    /// <summary>Softmax attention of q [B, H, T, D] over pooled keys/values [B, H, M, D] with validity [B, M]; fp32 scores.</summary>
    internal static Tensor AttendPooled(Tensor q, Tensor kp, Tensor vp, Tensor valid, Tensor? keyPaddingMask, double scale)
    {
        using var scope = NewDisposeScope();
        var o = Attend(q, kp, vp, valid.unsqueeze(1).unsqueeze(1), scale);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="LocalWindow"/>: a [T, T] same-window mask built token by token, fp32.</summary>
    public static Tensor LocalWindowNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, (int Height, int Width)? grid, int window, double? scale = null)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        long t = q.shape[2];
        var ids = WindowIds(t, grid, window);
        var same = new bool[t * t];
        for (long i = 0; i < t; i++)
            for (long j = 0; j < t; j++) same[i * t + j] = ids[i] == ids[j];
        var allowed = torch.tensor(same, new long[] { 1, 1, t, t });
        if (keyPaddingMask is not null) allowed = allowed & keyPaddingMask.view(-1, 1, 1, t);
        var o = NaiveSoftmax(q, k, v, allowed, scale ?? 1.0 / Math.Sqrt(q.shape[^1]));
        return Heads.ZeroPadded(o.to(q.dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="PooledGlobal"/>: window memberships listed token by token, explicit means, fp32.</summary>
    public static Tensor PooledGlobalNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, (int Height, int Width)? grid, int window, double? scale = null)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        long b = q.shape[0], t = q.shape[2];
        var ids = WindowIds(t, grid, window);
        int m = ids.Max() + 1;
        var member = new float[m * t];
        for (long j = 0; j < t; j++) member[ids[j] * t + j] = 1;
        var real = keyPaddingMask is null ? torch.ones(b, 1, t) : keyPaddingMask.to(ScalarType.Float32).view(b, 1, t);
        var w = torch.tensor(member, new long[] { 1, m, t }) * real;                  // [B, M, T]
        var count = w.sum(-1, keepdim: true);                                        // [B, M, 1]
        var means = w / count.clamp_min(1);
        var kp = means.unsqueeze(1).matmul(k.to(ScalarType.Float32));                // [B, H, M, D]
        var vp = means.unsqueeze(1).matmul(v.to(ScalarType.Float32));
        var allowed = (count.squeeze(-1) > 0).view(b, 1, 1, m);
        var o = NaiveSoftmax(q, kp, vp, allowed, scale ?? 1.0 / Math.Sqrt(q.shape[^1]));
        return Heads.ZeroPadded(o.to(q.dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    // Window index of every token: class tokens of a grid share window 0; patches count row-major over the windows.
    internal static int[] WindowIds(long t, (int Height, int Width)? grid, int window)
    {
        var lay = Layout.Of(t, grid, window);
        var ids = new int[t];
        int first = lay.Prefix > 0 ? 1 : 0;
        int perRow = lay.Wp / lay.Ww;
        for (long i = lay.Prefix; i < t; i++)
        {
            long cell = i - lay.Prefix;
            long r = cell / lay.Gw, c = cell % lay.Gw;
            ids[i] = first + (int)(r / lay.Wh * perRow + c / lay.Ww);
        }
        return ids;
    }

    private static Tensor NaiveSoftmax(Tensor q, Tensor k, Tensor v, Tensor allowed, double scale)
    {
        var scores = q.to(ScalarType.Float32).matmul(k.to(ScalarType.Float32).transpose(-1, -2)) * scale;
        var weights = torch.where(allowed, scores, torch.tensor(float.NegativeInfinity)).softmax(-1);
        weights = torch.where(allowed.any(-1, keepdim: true), weights, torch.zeros_like(weights));
        return weights.matmul(v.to(ScalarType.Float32));
    }

    // Masked softmax attention with fp32 scores; a query with no allowed key gets zeros (its row is padding anyway).
    private static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor allowed, double scale)
    {
        var scores = q.to(ScalarType.Float32).matmul(k.to(ScalarType.Float32).transpose(-1, -2)) * scale;
        var weights = scores.masked_fill(allowed.logical_not(), Masked).softmax(-1) * allowed.to(ScalarType.Float32);
        return weights.to(v.dtype).matmul(v);
    }

    private static Tensor MaskAsFloat(Tensor? keyPaddingMask, Tensor like)
        => keyPaddingMask is null
            ? torch.ones(1, 1, like.shape[2], 1, dtype: like.dtype, device: like.device)
            : keyPaddingMask.to(like.dtype).view(-1, 1, like.shape[2], 1);

    // [B, H, T, D] → [B, H, windows, s², D] for the grid part (partial windows padded with zeros).
    private static Tensor ToWindows(Tensor x, Layout lay)
    {
        long b = x.shape[0], h = x.shape[1], d = x.shape[3];
        var g = x.narrow(2, lay.Prefix, (long)lay.Gh * lay.Gw).reshape(b, h, lay.Gh, lay.Gw, d);
        if (lay.Hp != lay.Gh || lay.Wp != lay.Gw) g = nn.functional.pad(g, new long[] { 0, 0, 0, lay.Wp - lay.Gw, 0, lay.Hp - lay.Gh });
        return g.reshape(b, h, lay.Hp / lay.Wh, lay.Wh, lay.Wp / lay.Ww, lay.Ww, d).permute(0, 1, 2, 4, 3, 5, 6)
            .reshape(b, h, lay.Windows, (long)lay.Wh * lay.Ww, d);
    }

    // Inverse of ToWindows: [B, H, windows, s², D] → [B, H, Gh·Gw, D].
    private static Tensor FromWindows(Tensor w, Layout lay)
    {
        long b = w.shape[0], h = w.shape[1], d = w.shape[4];
        var g = w.reshape(b, h, lay.Hp / lay.Wh, lay.Wp / lay.Ww, lay.Wh, lay.Ww, d).permute(0, 1, 2, 4, 3, 5, 6).reshape(b, h, lay.Hp, lay.Wp, d);
        return g.narrow(2, 0, lay.Gh).narrow(3, 0, lay.Gw).reshape(b, h, (long)lay.Gh * lay.Gw, d);
    }
}
