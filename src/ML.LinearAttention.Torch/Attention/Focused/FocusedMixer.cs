using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Focused;

/// <summary>Options of focused linear attention (defaults from <c>flash_bla/layers/focused_la.py</c> / FLatten-PVT).</summary>
public sealed record FocusedOptions : MixerOptions
{
    /// <summary>Focusing factor p of φ_p. Reference: 3.</summary>
    public double FocusingFactor { get; init; } = 3;
    /// <summary>Kernel of the depthwise convolution on v, shared by the heads (k×k on a grid, k along text); 0 = off. Reference: 5.</summary>
    public int DwcKernel { get; init; } = 5;
    /// <summary>Bias on the q and kv projections. Reference layer default: false.</summary>
    public bool QkvBias { get; init; }
    /// <summary>
    /// Length of the learned positional encoding added to k (the reference adds one per patch of a fixed-size image).
    /// 0 = off (default here, because text lengths vary); otherwise sequences longer than this are refused.
    /// </summary>
    public int PositionalEncodingLength { get; init; }
}

/// <summary>
/// Focused linear attention token mixer: q, (k, v) → focused map (learned scale) → normalized linear attention →
/// + DWC(v) → proj.
/// </summary>
public sealed class FocusedMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> q_proj;
    private readonly nn.Module<Tensor, Tensor> kv_proj;
    private readonly nn.Module<Tensor, Tensor> proj;
    private readonly Parameter scale;
    private readonly Parameter? positional_encoding;
    private readonly DepthwiseConv? dwc;
    private readonly FocusedOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "q_proj", "kv_proj", "proj" };

    public FocusedMixer(MixerConfig config, FocusedOptions options) : base(nameof(FocusedMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!(options.FocusingFactor >= 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.FocusingFactor, "FocusedOptions.FocusingFactor must be at least 1 (reference: 3).");
        if (options.DwcKernel < 0 || (options.DwcKernel > 0 && options.DwcKernel % 2 == 0))
            throw new ArgumentOutOfRangeException(nameof(options), options.DwcKernel, "FocusedOptions.DwcKernel must be 0 (off) or a positive odd number such as 5.");
        if (options.PositionalEncodingLength < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.PositionalEncodingLength, "FocusedOptions.PositionalEncodingLength must be 0 (off) or the longest sequence length.");
        _options = options;
        int c = config.ModelDim;
        q_proj = nn.Linear(c, c, hasBias: options.QkvBias);
        kv_proj = nn.Linear(c, 2 * c, hasBias: options.QkvBias);
        proj = nn.Linear(c, c);
        scale = new Parameter(torch.zeros(c));
        if (options.PositionalEncodingLength > 0) positional_encoding = new Parameter(torch.zeros(options.PositionalEncodingLength, c));
        if (options.DwcKernel > 0) dwc = new DepthwiseConv(config.HeadDim, options.DwcKernel, tile: config.NumHeads);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        MixerInput.Check(this, x, keyPaddingMask);
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        long t = x.shape[1];
        var kv = kv_proj.forward(x).chunk(2, -1);
        var k = kv[0];
        if (positional_encoding is not null)
        {
            if (t > positional_encoding.shape[0])
                throw new ArgumentException($"The sequence has {t} tokens but the focused attention positional encoding covers {positional_encoding.shape[0]}; raise FocusedOptions.PositionalEncodingLength or set it to 0.");
            k = k + positional_encoding.narrow(0, 0, t).to(k.dtype);
        }
        var o = Heads.Merge(FocusedKernels.Bidirectional(Heads.Split(q_proj.forward(x), h), Heads.Split(k, h), Heads.Split(kv[1], h), scale,
            keyPaddingMask, _options.FocusingFactor));
        if (dwc is not null) o = o + dwc.Forward(kv[1], keyPaddingMask, Grid);
        return Heads.ZeroPadded(proj.forward(o), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
