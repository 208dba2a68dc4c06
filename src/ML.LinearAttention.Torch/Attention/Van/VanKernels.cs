using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Van;

/// <summary>
/// The spatial part of VAN's large-kernel attention (Guo et al. 2022, <c>Visual-Attention-Network/VAN-Classification</c>
/// <c>LKA</c>): a depthwise k₀ × k₀ convolution followed by a depthwise dilated k₁ × k₁ convolution (dilation d), which
/// together see a (k₁ − 1)·d + k₀ receptive field at depthwise cost (5, 7, 3: the paper's decomposition of a 21 × 21
/// kernel, whose exact field is 23 × 23).
/// <para>Shapes: x [B, T, C]; weights [C, 1, k, k] with biases [C]; keyPaddingMask [B, T] bool or null; result
/// [B, T, C], zero at padded positions. Grid (Height, Width): the last Height·Width tokens are the patches (2D
/// convolutions with zero padding at the image border); leading class tokens get 0. Sequence: 1D convolutions with
/// the centre row of each kernel (the convention of <see cref="LocalConv"/>). Padded tokens are zeroed before each
/// convolution, so they never reach real ones.</para>
/// </summary>
public static class VanKernels
{
    /// <summary>Fast form: two grouped convolutions (conv2d / conv1d, groups = C).</summary>
    public static Tensor LargeKernel(Tensor x, Tensor w0, Tensor? b0, Tensor w1, Tensor? b1, int dilation, Tensor? keyPaddingMask, (int Height, int Width)? grid)
    {
        long prefix = Check(x, w0, w1, dilation, keyPaddingMask, grid);
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], c = x.shape[2];
        int k0 = (int)w0.shape[2], k1 = (int)w1.shape[2];
        var z = Heads.ZeroPadded(x, keyPaddingMask);
        Tensor y;
        if (grid is null)
        {
            var s = z.transpose(1, 2);                                                     // [B, C, T]
            s = nn.functional.conv1d(s, w0.select(2, k0 / 2).to(x.dtype), b0?.to(x.dtype), padding: k0 / 2, groups: c);
            s = Heads.ZeroPadded(s.transpose(1, 2), keyPaddingMask).transpose(1, 2);
            s = nn.functional.conv1d(s, w1.select(2, k1 / 2).to(x.dtype), b1?.to(x.dtype), padding: k1 / 2 * dilation, dilation: dilation, groups: c);
            y = s.transpose(1, 2);
        }
        else
        {
            var (gh, gw) = grid.Value;
            var maskMap = keyPaddingMask is null ? null
                : keyPaddingMask.narrow(1, prefix, (long)gh * gw).view(b, 1, gh, gw).to(x.dtype);
            var m = z.narrow(1, prefix, (long)gh * gw).transpose(1, 2).reshape(b, c, gh, gw);
            m = nn.functional.conv2d(m, w0.to(x.dtype), b0?.to(x.dtype), padding: new long[] { k0 / 2, k0 / 2 }, groups: c);
            if (maskMap is not null) m = m * maskMap;
            m = nn.functional.conv2d(m, w1.to(x.dtype), b1?.to(x.dtype), padding: new long[] { k1 / 2 * dilation, k1 / 2 * dilation },
                dilation: new long[] { dilation, dilation }, groups: c);
            y = m.reshape(b, c, (long)gh * gw).transpose(1, 2);
            if (prefix > 0) y = torch.cat(new[] { torch.zeros(b, prefix, c, dtype: y.dtype, device: y.device), y }, 1);
        }
        return Heads.ZeroPadded(y, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin: each convolution as an explicit sum of shifted copies, one kernel tap at a time, fp32.</summary>
    public static Tensor LargeKernelNaive(Tensor x, Tensor w0, Tensor? b0, Tensor w1, Tensor? b1, int dilation, Tensor? keyPaddingMask, (int Height, int Width)? grid)
    {
        long prefix = Check(x, w0, w1, dilation, keyPaddingMask, grid);
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], c = x.shape[2];
        var xf = Heads.ZeroPadded(x.to(ScalarType.Float32), keyPaddingMask);
        var (gh, gw) = grid ?? (1, (int)t);
        bool is2D = grid is not null;
        // [B, C, gh, gw] maps; a sequence is one row, convolved with the kernels' centre rows.
        var map = xf.narrow(1, prefix, (long)gh * gw).transpose(1, 2).reshape(b, c, gh, gw);
        var real = keyPaddingMask is null ? torch.ones(b, 1, gh, gw) : keyPaddingMask.narrow(1, prefix, (long)gh * gw).to(ScalarType.Float32).view(b, 1, gh, gw);
        var first = Taps(map, w0.to(ScalarType.Float32), b0?.to(ScalarType.Float32), 1, is2D) * real;
        var second = Taps(first, w1.to(ScalarType.Float32), b1?.to(ScalarType.Float32), dilation, is2D);
        var y = second.reshape(b, c, (long)gh * gw).transpose(1, 2);
        if (prefix > 0) y = torch.cat(new[] { torch.zeros(b, prefix, c), y }, 1);
        return Heads.ZeroPadded(y, keyPaddingMask).to(x.dtype).MoveToOuterDisposeScope();
    }

    // y[c, i, j] = bias[c] + Σ_taps w[c, dy, dx] · x[c, i + (dy − k/2)·d, j + (dx − k/2)·d], zero outside the map.
    private static Tensor Taps(Tensor map, Tensor w, Tensor? bias, int d, bool is2D)
    {
        long b = map.shape[0], c = map.shape[1], h = map.shape[2], wd = map.shape[3];
        int k = (int)w.shape[2], half = k / 2;
        long padH = is2D ? half * d : 0, padW = half * d;
        var padded = nn.functional.pad(map, new[] { padW, padW, padH, padH });
        var y = bias is null ? torch.zeros(b, c, h, wd) : bias.view(1, c, 1, 1).expand(b, c, h, wd);
        for (int dy = 0; dy < k; dy++)
        {
            if (!is2D && dy != half) continue;
            for (int dx = 0; dx < k; dx++)
            {
                var tap = w.select(1, 0).select(1, dy).select(1, dx).view(1, c, 1, 1);
                long rowStart = is2D ? dy * d : 0;
                y = y + tap * padded.narrow(2, rowStart, h).narrow(3, dx * d, wd);
            }
        }
        return y;
    }

    private static long Check(Tensor x, Tensor w0, Tensor w1, int dilation, Tensor? keyPaddingMask, (int Height, int Width)? grid)
    {
        if (x.dim() != 3) throw new ArgumentException($"x must be [B, T, C]; got {Heads.Shape(x)}.");
        long c = x.shape[2];
        foreach (var w in new[] { w0, w1 })
            if (w.dim() != 4 || w.shape[0] != c || w.shape[1] != 1 || w.shape[2] != w.shape[3] || w.shape[2] % 2 == 0)
                throw new ArgumentException($"Depthwise kernels must be [C, 1, k, k] with C = {c} and k odd; got {Heads.Shape(w)}.");
        if (dilation < 1) throw new ArgumentOutOfRangeException(nameof(dilation), dilation, "The dilation must be at least 1 (3 in VAN).");
        if (keyPaddingMask is not null && (keyPaddingMask.dim() != 2 || keyPaddingMask.shape[0] != x.shape[0] || keyPaddingMask.shape[1] != x.shape[1]))
            throw new ArgumentException($"keyPaddingMask must be [B, T] = [{x.shape[0]}, {x.shape[1]}]; got {Heads.Shape(keyPaddingMask)}.");
        return LocalConv.GridPrefix(x.shape[1], grid);
    }
}
