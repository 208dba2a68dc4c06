using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.VisionKit;

/// <summary>
/// Depthwise convolution over the token sequence: the local terms of the vision-born mechanisms (LePE, InLine's
/// local residual, focused attention's DWC, Agent's DWC, LiteMLA's multi-scale aggregation).
/// <para>Shapes: x [B, T, C]; mask [B, T] bool (true = real) or null; result [B, T, C], zero at padded positions.
/// Kernels are k×k (k odd) as in the reference code. For a sequence (no grid) the convolution is 1D along T with the
/// centre row of each k×k kernel, so the same parameters serve text and images (a text-trained kernel acts along
/// rows of a grid). With a grid (Height, Width), the last Height·Width tokens are the patches in row-major order and
/// get a 2D convolution; the leading T − Height·Width tokens (class/register tokens) get no local term, as in the
/// DeiT variants of the reference code.</para>
/// <para>Padded positions are zeroed before the convolution, so they never leak into real tokens.</para>
/// </summary>
public static class LocalConv
{
    /// <summary>Fast form: conv1d / conv2d with groups = C. <paramref name="weight"/> [C, 1, k, k], <paramref name="bias"/> [C] or null.</summary>
    public static Tensor Depthwise(Tensor x, Tensor weight, Tensor? bias, Tensor? keyPaddingMask, (int Height, int Width)? grid)
        => Fast(x, weight, bias, keyPaddingMask, grid, perSample: false);

    /// <summary>Fast form with one kernel per sample (InLine's predicted residual kernel): <paramref name="weight"/> [B, C, k, k].</summary>
    public static Tensor DepthwisePerSample(Tensor x, Tensor weight, Tensor? bias, Tensor? keyPaddingMask, (int Height, int Width)? grid)
        => Fast(x, weight, bias, keyPaddingMask, grid, perSample: true);

    /// <summary>Naive twin of <see cref="Depthwise"/>.</summary>
    public static Tensor DepthwiseNaive(Tensor x, Tensor weight, Tensor? bias, Tensor? keyPaddingMask, (int Height, int Width)? grid)
        => Naive(x, weight, bias, keyPaddingMask, grid, perSample: false);

    /// <summary>Naive twin of <see cref="DepthwisePerSample"/>.</summary>
    public static Tensor DepthwisePerSampleNaive(Tensor x, Tensor weight, Tensor? bias, Tensor? keyPaddingMask, (int Height, int Width)? grid)
        => Naive(x, weight, bias, keyPaddingMask, grid, perSample: true);

    private static Tensor Fast(Tensor x, Tensor weight, Tensor? bias, Tensor? keyPaddingMask, (int Height, int Width)? grid, bool perSample)
    {
        var (k, prefix) = Check(x, weight, bias, keyPaddingMask, grid, perSample);
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], c = x.shape[2];
        x = Heads.ZeroPadded(x, keyPaddingMask);
        var w = weight.to(x.dtype);
        var bs = bias?.to(x.dtype);
        Tensor y;
        if (grid is null)
        {
            var w1 = w.select(2, k / 2);                                     // centre row: [C, 1, k] or [B, C, k]
            var input = x.transpose(1, 2);                                   // [B, C, T]
            if (perSample)
            {
                y = nn.functional.conv1d(input.reshape(1, b * c, t), w1.reshape(b * c, 1, k), null, padding: k / 2, groups: b * c)
                    .view(b, c, t);
                if (bs is not null) y = y + bs.view(1, c, 1);
            }
            else
            {
                y = nn.functional.conv1d(input, w1, bs, padding: k / 2, groups: c);
            }
            y = y.transpose(1, 2);
        }
        else
        {
            var (gh, gw) = grid.Value;
            var patches = x.narrow(1, prefix, (long)gh * gw).transpose(1, 2).reshape(b, c, gh, gw);
            var pad = new long[] { k / 2, k / 2 };
            Tensor z;
            if (perSample)
            {
                z = nn.functional.conv2d(patches.reshape(1, b * c, gh, gw), w.reshape(b * c, 1, k, k), null, padding: pad, groups: b * c)
                    .view(b, c, gh, gw);
                if (bs is not null) z = z + bs.view(1, c, 1, 1);
            }
            else
            {
                z = nn.functional.conv2d(patches, w, bs, padding: pad, groups: c);
            }
            y = z.reshape(b, c, (long)gh * gw).transpose(1, 2);
            if (prefix > 0) y = torch.cat(new[] { torch.zeros(b, prefix, c, dtype: y.dtype, device: y.device), y }, 1);
        }
        return Heads.ZeroPadded(y, keyPaddingMask).MoveToOuterDisposeScope();
    }

    // Explicit sum of shifted copies (zero outside the sequence/grid), fp32.
    private static Tensor Naive(Tensor x, Tensor weight, Tensor? bias, Tensor? keyPaddingMask, (int Height, int Width)? grid, bool perSample)
    {
        var (k, prefix) = Check(x, weight, bias, keyPaddingMask, grid, perSample);
        using var scope = NewDisposeScope();
        var dtype = x.dtype;
        long b = x.shape[0], t = x.shape[1], c = x.shape[2];
        var xf = Heads.ZeroPadded(x, keyPaddingMask).to(ScalarType.Float32);
        var wf = weight.to(ScalarType.Float32);
        var w4 = perSample ? wf : wf.squeeze(1).unsqueeze(0);            // [B or 1, C, k, k]
        int r = k / 2;
        Tensor y;
        if (grid is null)
        {
            y = torch.zeros(b, t, c);
            for (int o = -r; o <= r; o++)
            {
                var tap = w4[.., .., r, o + r].unsqueeze(1);                 // [B or 1, 1, C]
                // y[t] += w[o] · x[t + o], zero where t + o falls outside [0, T).
                var shifted = Shift(xf, 1, o);
                y = y + tap * shifted;
            }
        }
        else
        {
            var (gh, gw) = grid.Value;
            var g = xf.narrow(1, prefix, (long)gh * gw).reshape(b, gh, gw, c);
            var acc = torch.zeros(b, gh, gw, c);
            for (int dy = -r; dy <= r; dy++)
                for (int dx = -r; dx <= r; dx++)
                {
                    var tap = w4[.., .., dy + r, dx + r].unsqueeze(1).unsqueeze(1);   // [B or 1, 1, 1, C]
                    acc = acc + tap * Shift(Shift(g, 1, dy), 2, dx);
                }
            y = torch.cat(new[] { torch.zeros(b, prefix, c), acc.reshape(b, (long)gh * gw, c) }, 1);
        }
        if (bias is not null)
        {
            var bb = bias.to(ScalarType.Float32).view(1, 1, c);
            if (grid is not null && prefix > 0)
                bb = bb * (torch.arange(t) >= prefix).to(ScalarType.Float32).view(1, t, 1);
            y = y + bb;
        }
        return Heads.ZeroPadded(y.to(dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>result[i] = x[i + offset] along <paramref name="dim"/>, zero where i + offset is out of range.</summary>
    private static Tensor Shift(Tensor x, int dim, int offset)
    {
        if (offset == 0) return x;
        long n = x.shape[dim];
        if (Math.Abs(offset) >= n) return torch.zeros_like(x);
        var zeros = torch.zeros_like(x.narrow(dim, 0, Math.Abs(offset)));
        return offset > 0
            ? torch.cat(new[] { x.narrow(dim, offset, n - offset), zeros }, dim)
            : torch.cat(new[] { zeros, x.narrow(dim, 0, n + offset) }, dim);
    }

    private static (int k, long prefix) Check(Tensor x, Tensor weight, Tensor? bias, Tensor? keyPaddingMask, (int Height, int Width)? grid, bool perSample)
    {
        if (x.dim() != 3) throw new ArgumentException($"Local convolution input must be [B, T, C]; got {Heads.Shape(x)}.");
        long b = x.shape[0], t = x.shape[1], c = x.shape[2];
        long expect0 = perSample ? b : c, expect1 = perSample ? c : 1;
        if (weight.dim() != 4 || weight.shape[0] != expect0 || weight.shape[1] != expect1 || weight.shape[2] != weight.shape[3] || weight.shape[2] % 2 == 0)
            throw new ArgumentException($"Local convolution weight must be [{(perSample ? "B, C" : "C, 1")}, k, k] = [{expect0}, {expect1}, k, k] with k odd; got {Heads.Shape(weight)}.");
        if (bias is not null && (bias.dim() != 1 || bias.shape[0] != c))
            throw new ArgumentException($"Local convolution bias must be [C] = [{c}]; got {Heads.Shape(bias)}.");
        if (keyPaddingMask is not null && (keyPaddingMask.dim() != 2 || keyPaddingMask.shape[0] != b || keyPaddingMask.shape[1] != t))
            throw new ArgumentException($"keyPaddingMask must be [B, T] = [{b}, {t}]; got {Heads.Shape(keyPaddingMask)}.");
        return ((int)weight.shape[2], GridPrefix(t, grid));
    }

    /// <summary>
    /// Number of leading non-grid tokens (T − Height·Width) for a grid, 0 without one; throws when the grid does not fit.
    /// </summary>
    public static long GridPrefix(long t, (int Height, int Width)? grid)
    {
        if (grid is null) return 0;
        var (gh, gw) = grid.Value;
        if (gh <= 0 || gw <= 0) throw new ArgumentException($"Grid must have positive height and width; got {gh}×{gw}.");
        long cells = (long)gh * gw;
        if (t < cells)
            throw new ArgumentException($"The token grid {gh}×{gw} has {cells} patches but the sequence has only {t} tokens; set TokenMixer.Grid to the patch grid of the input (extra leading tokens such as a class token are allowed) or null for text.");
        return t - cells;
    }
}

/// <summary>
/// A learned depthwise k×k convolution (weight [Cw, 1, k, k], PyTorch Conv2d initialisation) applied through
/// <see cref="LocalConv"/>. The weight may cover fewer channels than the input and be expanded: <c>tile</c> repeats
/// the whole block (focused attention's DWC shared by heads: Cw = head dim), <c>interleave</c> repeats each channel
/// (SOFT's per-head conv shared by a head's channels: Cw = heads).
/// </summary>
public sealed class DepthwiseConv : nn.Module
{
    private readonly Parameter weight;
    private readonly Parameter? bias;
    private readonly int _tile, _interleave;

    public DepthwiseConv(long channels, int kernelSize, bool hasBias = true, int tile = 1, int interleave = 1) : base(nameof(DepthwiseConv))
    {
        if (kernelSize <= 0 || kernelSize % 2 == 0)
            throw new ArgumentOutOfRangeException(nameof(kernelSize), kernelSize, "The local convolution kernel size must be a positive odd number (e.g. 3 or 5), or 0 to switch the local term off in the options.");
        if (tile <= 0 || interleave <= 0) throw new ArgumentOutOfRangeException(nameof(tile), "Channel expansion factors must be positive.");
        _tile = tile;
        _interleave = interleave;
        // PyTorch Conv2d default: kaiming_uniform(a=√5) → U(±1/√fan_in), fan_in = k·k for a depthwise kernel.
        double bound = 1.0 / kernelSize;
        weight = new Parameter(torch.empty(channels, 1, kernelSize, kernelSize).uniform_(-bound, bound));
        if (hasBias) bias = new Parameter(torch.empty(channels).uniform_(-bound, bound));
        RegisterComponents();
    }

    /// <summary>The [Cw, 1, k, k] kernel.</summary>
    public Parameter Weight => weight;

    /// <summary>x [B, T, C] → [B, T, C] (see <see cref="LocalConv"/>).</summary>
    public Tensor Forward(Tensor x, Tensor? keyPaddingMask, (int Height, int Width)? grid)
    {
        var (w, b) = Expanded();
        return LocalConv.Depthwise(x, w, b, keyPaddingMask, grid);
    }

    private (Tensor w, Tensor? b) Expanded()
    {
        Tensor w = weight;
        Tensor? b = bias;
        if (_interleave > 1) { w = w.repeat_interleave(_interleave, dim: 0); b = b?.repeat_interleave(_interleave, dim: 0); }
        if (_tile > 1) { w = w.repeat(_tile, 1, 1, 1); b = b?.repeat(_tile); }
        return (w, b);
    }
}
