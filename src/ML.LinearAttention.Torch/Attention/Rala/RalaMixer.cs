using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Rala;

/// <summary>Options of RALA (defaults from <c>flash_bla/layers/rala.py</c>, <c>RALALinearAttention</c>).</summary>
public sealed record RalaOptions : MixerOptions
{
    /// <summary>Rotary embedding on the numerator's q and k (1D for text, 2D on a grid). Reference: on.</summary>
    public bool Rope { get; init; } = true;
    /// <summary>Kernel of the depthwise LePE convolution on v (k×k on a grid, k along text); 0 = off. Reference: 5.</summary>
    public int LepeKernel { get; init; } = 5;
    /// <summary>Multiply the output by a linear gate o = W_o x (the fused qkvo projection). Reference: on.</summary>
    public bool OutputGate { get; init; } = true;
    /// <summary>Bias on the qkvo projection (reference qkv_bias = True). The output projection always has a bias.</summary>
    public bool QkvBias { get; init; } = true;
}

/// <summary>
/// RALA token mixer: x → (q, k, v, o) → φ = elu+1 → <see cref="RalaKernels"/> → + LePE(v) → × o → proj.
/// </summary>
public sealed class RalaMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> qkvo;
    private readonly nn.Module<Tensor, Tensor> proj;
    private readonly DepthwiseConv? lepe;
    private readonly RalaOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "qkvo", "proj" };

    public RalaMixer(MixerConfig config, RalaOptions options) : base(nameof(RalaMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.LepeKernel < 0 || (options.LepeKernel > 0 && options.LepeKernel % 2 == 0))
            throw new ArgumentOutOfRangeException(nameof(options), options.LepeKernel, "RalaOptions.LepeKernel must be 0 (off) or a positive odd number such as 5.");
        if (options.Rope) VisionKit.Rope.CheckDim(config.HeadDim, null);
        _options = options;
        int c = config.ModelDim;
        qkvo = nn.Linear(c, (options.OutputGate ? 4 : 3) * c, hasBias: options.QkvBias);
        proj = nn.Linear(c, c);
        if (options.LepeKernel > 0) lepe = new DepthwiseConv(c, options.LepeKernel);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        MixerInput.Check(this, x, keyPaddingMask);
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        var parts = qkvo.forward(x).chunk(_options.OutputGate ? 4 : 3, -1);
        var v = parts[2];
        var q = nn.functional.elu(Heads.Split(parts[0], h), 1.0) + 1;
        var k = nn.functional.elu(Heads.Split(parts[1], h), 1.0) + 1;
        Tensor? cos = null, sin = null;
        if (_options.Rope) (cos, sin) = VisionKit.Rope.Tables(x.shape[1], Config.HeadDim, Grid, x.device);
        var o = Heads.Merge(RalaKernels.Bidirectional(q, k, Heads.Split(v, h), keyPaddingMask, cos, sin));
        if (lepe is not null) o = o + lepe.Forward(v, keyPaddingMask, Grid);
        if (_options.OutputGate) o = o * parts[3];
        return Heads.ZeroPadded(proj.forward(o), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
