using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Mala;

/// <summary>Options of MALA (defaults from <c>qhfan/MALA</c> <c>AddLinearAttention</c>).</summary>
public sealed record MalaOptions : MixerOptions
{
    /// <summary>Rotary embedding on the numerator's q and k (1D for text, 2D on a grid). Reference: on.</summary>
    public bool Rope { get; init; } = true;
    /// <summary>Kernel of the depthwise LePE convolution on v (k×k on a grid, k along text); 0 = off. Reference: 5.</summary>
    public int LepeKernel { get; init; } = 5;
    /// <summary>Multiply the output by a linear gate o = W_o x before the projection (the fused qkvo). Reference: on.</summary>
    public bool OutputGate { get; init; } = true;
    /// <summary>Biases on the qkvo and output projections (the reference uses 1×1 convolutions with bias).</summary>
    public bool Bias { get; init; } = true;
}

/// <summary>
/// MALA token mixer: x → (q, k, v, o) → φ = elu+1 on q, k → <see cref="MalaKernels"/> → + LePE(v) → × o → proj.
/// The reference classifier uses MALA in the two high-resolution stages and softmax attention in the later ones.
/// </summary>
public sealed class MalaMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> qkvo;
    private readonly nn.Module<Tensor, Tensor> proj;
    private readonly DepthwiseConv? lepe;
    private readonly MalaOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "qkvo", "proj" };

    public MalaMixer(MixerConfig config, MalaOptions options) : base(nameof(MalaMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.LepeKernel < 0 || (options.LepeKernel > 0 && options.LepeKernel % 2 == 0))
            throw new ArgumentOutOfRangeException(nameof(options), options.LepeKernel, "MalaOptions.LepeKernel must be 0 (off) or a positive odd number such as 5.");
        if (options.Rope) VisionKit.Rope.CheckDim(config.HeadDim, null);
        _options = options;
        int c = config.ModelDim;
        qkvo = nn.Linear(c, (options.OutputGate ? 4 : 3) * c, hasBias: options.Bias);
        proj = nn.Linear(c, c, hasBias: options.Bias);
        if (options.LepeKernel > 0) lepe = new DepthwiseConv(c, options.LepeKernel);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        MixerInput.Check(this, x, keyPaddingMask);
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        long t = x.shape[1];
        var parts = qkvo.forward(x).chunk(_options.OutputGate ? 4 : 3, -1);
        var v = parts[2];
        var q = nn.functional.elu(Heads.Split(parts[0], h), 1.0) + 1;
        var k = nn.functional.elu(Heads.Split(parts[1], h), 1.0) + 1;
        Tensor? cos = null, sin = null;
        if (_options.Rope) (cos, sin) = VisionKit.Rope.Tables(t, Config.HeadDim, Grid, x.device);
        var o = Heads.Merge(MalaKernels.Bidirectional(q, k, Heads.Split(v, h), keyPaddingMask, cos, sin));
        if (lepe is not null) o = o + lepe.Forward(v, keyPaddingMask, Grid);
        if (_options.OutputGate) o = o * parts[3];
        return Heads.ZeroPadded(proj.forward(o), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
