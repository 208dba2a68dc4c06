using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.HiLo;

/// <summary>Options of HiLo attention (defaults of LITv2's configurations, <c>ziplab/LITv2</c>).</summary>
public sealed record HiLoOptions : MixerOptions
{
    /// <summary>Fraction of the heads given to Lo-Fi (pooled global attention); the rest do Hi-Fi (local windows). LITv2: 0.9.</summary>
    public double Alpha { get; init; } = 0.9;
    /// <summary>Window side s: Hi-Fi windows are s × s, Lo-Fi pools s × s (s² consecutive tokens for text). 1 = plain softmax attention. LITv2: 2.</summary>
    public int WindowSize { get; init; } = 2;
    /// <summary>Biases on the q/k/v projections (the reference's qkv_bias). LITv2: on.</summary>
    public bool QkvBias { get; init; } = true;
}

/// <summary>
/// HiLo attention: ⌊H·α⌋ Lo-Fi heads attend from every token to the s × s window means of the input (global, low
/// frequencies), the other heads attend inside s × s windows (local, high frequencies); the two outputs, each with its
/// own projection, are concatenated. Reads <see cref="TokenMixer.Grid"/> for 2D windows; a sequence uses windows of s²
/// consecutive tokens. Efficient (T·s² + T²/s²) rather than linear.
/// </summary>
public sealed class HiLoMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor>? h_qkv;
    private readonly nn.Module<Tensor, Tensor>? h_proj;
    private readonly nn.Module<Tensor, Tensor>? l_q;
    private readonly nn.Module<Tensor, Tensor>? l_kv;
    private readonly Linear? l_proj;
    private readonly int _hiHeads, _loHeads, _window;
    private readonly double _scale;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets
        => new (nn.Module<Tensor, Tensor>? Layer, string Name)[] { (h_qkv, "h_qkv"), (h_proj, "h_proj"), (l_q, "l_q"), (l_kv, "l_kv") }.Where(p => p.Layer is not null).Select(p => p.Name).ToArray();

    public HiLoMixer(MixerConfig config, HiLoOptions options) : base(nameof(HiLoMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Alpha is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(options), options.Alpha, "HiLoOptions.Alpha (the Lo-Fi share of the heads) must lie in [0, 1]; LITv2 uses 0.9.");
        if (options.WindowSize < 1) throw new ArgumentOutOfRangeException(nameof(options), options.WindowSize, "HiLoOptions.WindowSize must be at least 1; LITv2 uses 2.");
        int h = config.NumHeads, d = config.HeadDim, c = config.ModelDim;
        _window = options.WindowSize;
        _loHeads = _window == 1 ? h : (int)(h * options.Alpha);                    // window 1 is plain multi-head attention
        _hiHeads = h - _loHeads;
        _scale = 1.0 / Math.Sqrt(d);
        if (_hiHeads > 0)
        {
            h_qkv = nn.Linear(c, 3L * _hiHeads * d, hasBias: options.QkvBias);
            h_proj = nn.Linear((long)_hiHeads * d, (long)_hiHeads * d);
        }
        if (_loHeads > 0)
        {
            l_q = nn.Linear(c, (long)_loHeads * d, hasBias: options.QkvBias);
            l_kv = nn.Linear(c, 2L * _loHeads * d, hasBias: options.QkvBias);
            l_proj = nn.Linear((long)_loHeads * d, (long)_loHeads * d);
        }
        RegisterComponents();
    }

    /// <summary>Heads doing local-window (Hi-Fi) attention.</summary>
    public int HiFiHeads => _hiHeads;

    /// <summary>Heads doing pooled global (Lo-Fi) attention.</summary>
    public int LoFiHeads => _loHeads;

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        MixerInput.Check(this, x, keyPaddingMask);
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>(2);
        if (h_qkv is not null)
        {
            var qkv = h_qkv.forward(x).chunk(3, -1);
            var o = HiLoKernels.LocalWindow(Heads.Split(qkv[0], _hiHeads), Heads.Split(qkv[1], _hiHeads), Heads.Split(qkv[2], _hiHeads),
                keyPaddingMask, Grid, _window, _scale);
            parts.Add(h_proj!.forward(Heads.Merge(o)));
        }
        if (l_q is not null)
        {
            // Pool the input, then project: the same as pooling k and v (the projections are affine), on s² fewer tokens.
            var (pooled, valid) = HiLoKernels.PoolWindows(x.unsqueeze(1), keyPaddingMask, Grid, _window);
            var kv = l_kv!.forward(pooled.squeeze(1)).chunk(2, -1);
            var o = HiLoKernels.AttendPooled(Heads.Split(l_q.forward(x), _loHeads), Heads.Split(kv[0], _loHeads), Heads.Split(kv[1], _loHeads),
                valid, keyPaddingMask, _scale);
            parts.Add(l_proj!.forward(Heads.Merge(o)));
        }
        var y = parts.Count == 1 ? parts[0] : torch.cat(parts.ToArray(), -1);
        return Heads.ZeroPadded(y, keyPaddingMask).MoveToOuterDisposeScope();
    }
}
