using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.NaLaFormer;

/// <summary>Options of NaLaFormer's attention (defaults from the official <c>NormAwareLinearAttn</c>).</summary>
public sealed record NaLaFormerOptions : MixerOptions
{
    /// <summary>Rotary embedding on the numerator's feature maps (1D for text, 2D on a grid). Reference: on.</summary>
    public bool Rope { get; init; } = true;
    /// <summary>Kernel of the depthwise LePE convolution on v (k×k on a grid, k along text); 0 = off. Reference: 5.</summary>
    public int LepeKernel { get; init; } = 5;
    /// <summary>Multiply the normalized output by SiLU(g), g = W_g x (the fused qkvg projection). Reference: on.</summary>
    public bool OutputGate { get; init; } = true;
}

/// <summary>
/// NaLaFormer token mixer: x → (q, k, v, g) → <see cref="NaLaFormerKernels"/> → + LePE(v) → LayerNorm → × SiLU(g) →
/// out_proj. The reference computes the projections' outputs and the attention in fp32.
/// </summary>
public sealed class NaLaFormerMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> qkvg;
    private readonly nn.Module<Tensor, Tensor> out_proj;
    private readonly LayerNorm ln;
    private readonly DepthwiseConv? lepe;
    private readonly NaLaFormerOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "qkvg", "out_proj" };

    public NaLaFormerMixer(MixerConfig config, NaLaFormerOptions options) : base(nameof(NaLaFormerMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.LepeKernel < 0 || (options.LepeKernel > 0 && options.LepeKernel % 2 == 0))
            throw new ArgumentOutOfRangeException(nameof(options), options.LepeKernel, "NaLaFormerOptions.LepeKernel must be 0 (off) or a positive odd number such as 5.");
        if (options.Rope) VisionKit.Rope.CheckDim(config.HeadDim, null);
        _options = options;
        int c = config.ModelDim;
        qkvg = nn.Linear(c, (options.OutputGate ? 4 : 3) * c);
        out_proj = nn.Linear(c, c);
        ln = nn.LayerNorm(c);
        if (options.LepeKernel > 0) lepe = new DepthwiseConv(c, options.LepeKernel);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        MixerInput.Check(this, x, keyPaddingMask);
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        var parts = qkvg.forward(x).chunk(_options.OutputGate ? 4 : 3, -1);
        var v = parts[2];
        Tensor? cos = null, sin = null;
        if (_options.Rope) (cos, sin) = VisionKit.Rope.Tables(x.shape[1], Config.HeadDim, Grid, x.device);
        var o = Heads.Merge(NaLaFormerKernels.Bidirectional(Heads.Split(parts[0], h), Heads.Split(parts[1], h), Heads.Split(v, h), keyPaddingMask, cos, sin));
        if (lepe is not null) o = o + lepe.Forward(v, keyPaddingMask, Grid);
        o = ln.forward(o);
        if (_options.OutputGate) o = o * nn.functional.silu(parts[3]);
        return Heads.ZeroPadded(out_proj.forward(o), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
