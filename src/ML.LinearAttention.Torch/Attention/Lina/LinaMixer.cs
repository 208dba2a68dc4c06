using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Lina;

/// <summary>Options of LINA's attention (defaults from <c>techmonsterwang/LINA</c>, <c>LinearAttentionDecoder</c> of the kvscale1 models).</summary>
public sealed record LinaOptions : MixerOptions
{
    /// <summary>Learned per-head, per-position key and value gates (initialised to 1). Reference: on.</summary>
    public bool KvGate { get; init; } = true;
    /// <summary>
    /// Positions covered by the KV gate (the reference fixes the token count of its images, 320). Longer sequences are
    /// refused with an error; positions follow the token order (row-major on a grid).
    /// </summary>
    public int MaxLength { get; init; } = 512;
    /// <summary>Rotary embedding on q and k before the ReLU map (1D for text, 2D on a grid). Reference: on (3D RoPE).</summary>
    public bool Rope { get; init; } = true;
    /// <summary>Kernel of the depthwise convolution on the block input x added to the output (k×k on a grid, k along text); 0 = off. Reference: 5.</summary>
    public int ConvKernel { get; init; } = 5;
}

/// <summary>
/// LINA token mixer: qkv → RoPE → φ = ReLU + 1e-6 → KV gates → division-normalized linear attention (fp32) → + DWC(x)
/// → proj.
/// </summary>
public sealed class LinaMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> qkv;
    private readonly nn.Module<Tensor, Tensor> proj;
    private readonly Parameter? key_gate;
    private readonly Parameter? value_gate;
    private readonly DepthwiseConv? dw_conv;
    private readonly LinaOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "qkv", "proj" };

    public LinaMixer(MixerConfig config, LinaOptions options) : base(nameof(LinaMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.KvGate && options.MaxLength <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxLength, "LinaOptions.MaxLength must be positive (the longest sequence the KV gate covers).");
        if (options.ConvKernel < 0 || (options.ConvKernel > 0 && options.ConvKernel % 2 == 0))
            throw new ArgumentOutOfRangeException(nameof(options), options.ConvKernel, "LinaOptions.ConvKernel must be 0 (off) or a positive odd number such as 5.");
        if (options.Rope) VisionKit.Rope.CheckDim(config.HeadDim, null);
        _options = options;
        int c = config.ModelDim;
        qkv = nn.Linear(c, 3 * c);
        proj = nn.Linear(c, c);
        if (options.KvGate)
        {
            key_gate = new Parameter(torch.ones(config.NumHeads, options.MaxLength));
            value_gate = new Parameter(torch.ones(config.NumHeads, options.MaxLength));
        }
        if (options.ConvKernel > 0) dw_conv = new DepthwiseConv(c, options.ConvKernel);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        MixerInput.Check(this, x, keyPaddingMask);
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        long t = x.shape[1];
        var parts = qkv.forward(x).chunk(3, -1);
        var q = Heads.Split(parts[0], h);
        var k = Heads.Split(parts[1], h);
        if (_options.Rope)
        {
            var (cos, sin) = VisionKit.Rope.Tables(t, Config.HeadDim, Grid, x.device);
            q = VisionKit.Rope.Apply(q, cos, sin);
            k = VisionKit.Rope.Apply(k, cos, sin);
        }
        Tensor? gk = null, gv = null;
        if (key_gate is not null && value_gate is not null)
        {
            if (t > _options.MaxLength)
                throw new ArgumentException($"The sequence has {t} tokens but LINA's KV gate covers {_options.MaxLength} positions; raise LinaOptions.MaxLength or set KvGate = false.");
            gk = key_gate.narrow(1, 0, t).unsqueeze(0);
            gv = value_gate.narrow(1, 0, t).unsqueeze(0);
        }
        var o = Heads.Merge(LinaKernels.Bidirectional(nn.functional.relu(q) + 1e-6, nn.functional.relu(k) + 1e-6, Heads.Split(parts[2], h),
            gk, gv, keyPaddingMask));
        if (dw_conv is not null) o = o + dw_conv.Forward(x, keyPaddingMask, Grid);
        return Heads.ZeroPadded(proj.forward(o), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
