using Microsoft.ML.LinearAttention.Attention.Decay;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Gla;

/// <summary>Options of gated linear attention; defaults are fla's <c>GatedLinearAttention</c> layer.</summary>
public sealed record GlaOptions : MixerOptions
{
    /// <summary>Key width = hidden size × ExpandK (fla: 0.5).</summary>
    public double ExpandK { get; init; } = 0.5;
    /// <summary>Value width = hidden size × ExpandV (fla: 1.0).</summary>
    public double ExpandV { get; init; } = 1.0;
    /// <summary>Depthwise causal short convolutions + SiLU on q, k, v (fla: false).</summary>
    public bool UseShortConv { get; init; }
    /// <summary>Short convolution size (fla: 4).</summary>
    public int ConvSize { get; init; } = 4;
    /// <summary>Bias in the short convolutions (fla: false).</summary>
    public bool ConvBias { get; init; }
    /// <summary>Swish output gate: o = RMSNorm(o) · silu(g_proj(x)) (fla: true). Off = RMSNorm only.</summary>
    public bool UseOutputGate { get; init; } = true;
    /// <summary>Rank of the gate projection Linear(C → r) → Linear(r → key width, bias) (fla: 16).</summary>
    public int GateLowRankDim { get; init; } = 16;
    /// <summary>Log decay = logsigmoid(gk_proj(x)) / GateLogitNormalizer (fla: 16).</summary>
    public double GateLogitNormalizer { get; init; } = 16.0;
    /// <summary>Lower bound of the log decay (fla: none).</summary>
    public double? ClampMin { get; init; }
    /// <summary>Epsilon of the per-head RMSNorm (fla: 1e-5).</summary>
    public double NormEps { get; init; } = 1e-5;
    /// <summary>Chunk length of the chunkwise kernel.</summary>
    public int ChunkSize { get; init; } = DecayKernels.DefaultChunk;
}

/// <summary>
/// GLA as fla's <c>GatedLinearAttention</c>: q/k/v projections (key width C·ExpandK), per-channel decays from the
/// low-rank <c>gk_proj</c> (logsigmoid / 16), per-head RMSNorm with a swish output gate, output projection. The
/// bidirectional form adds <c>gk_proj_bwd</c>, the reversed scan's own low-rank gate (ViG's direction-wise gating),
/// merged as in <see cref="GlaKernels"/>.
/// </summary>
public sealed class GlaMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> q_proj;
    private readonly nn.Module<Tensor, Tensor> k_proj;
    private readonly nn.Module<Tensor, Tensor> v_proj;
    private readonly Linear? g_proj;
    private readonly Sequential gk_proj;
    private readonly Sequential? gk_proj_bwd;
    private readonly nn.Module<Tensor, Tensor> o_proj;
    private readonly ShortConvolution? q_conv;
    private readonly ShortConvolution? k_conv;
    private readonly ShortConvolution? v_conv;
    private readonly RmsNorm g_norm;
    private readonly GlaOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "q_proj", "k_proj", "v_proj", "o_proj" };

    public GlaMixer(MixerConfig config, GlaOptions options) : base(nameof(GlaMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        int dk = MixerChecks.ExpandedWidth(config, options.ExpandK, nameof(options.ExpandK), "GLA") / config.NumHeads;
        int dv = MixerChecks.ExpandedWidth(config, options.ExpandV, nameof(options.ExpandV), "GLA") / config.NumHeads;
        if (options.GateLowRankDim <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.GateLowRankDim, "GateLowRankDim must be positive (fla: 16).");
        if (options.GateLogitNormalizer <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.GateLogitNormalizer, "GateLogitNormalizer must be positive (fla: 16).");
        if (options.ClampMin is > 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.ClampMin, "ClampMin bounds a log decay, so it must be ≤ 0 (or null for none).");
        MixerChecks.ChunkSize(options.ChunkSize, "GLA");
        _options = options;
        int c = config.ModelDim, h = config.NumHeads;
        q_proj = nn.Linear(c, h * dk, hasBias: false);
        k_proj = nn.Linear(c, h * dk, hasBias: false);
        v_proj = nn.Linear(c, h * dv, hasBias: false);
        if (options.UseOutputGate) g_proj = nn.Linear(c, h * dv, hasBias: false);
        gk_proj = LowRankGate(c, options.GateLowRankDim, h * dk);
        if (!config.Causal) gk_proj_bwd = LowRankGate(c, options.GateLowRankDim, h * dk);
        o_proj = nn.Linear(h * dv, c, hasBias: false);
        if (options.UseShortConv)
        {
            q_conv = new ShortConvolution(h * dk, options.ConvSize, causal: true, options.ConvBias);
            k_conv = new ShortConvolution(h * dk, options.ConvSize, causal: true, options.ConvBias);
            v_conv = new ShortConvolution(h * dv, options.ConvSize, causal: true, options.ConvBias);
        }
        g_norm = new RmsNorm(dv, options.NormEps);
        RegisterComponents();
    }

    private static Sequential LowRankGate(int c, int rank, int keyWidth)
        => nn.Sequential(("0", nn.Linear(c, rank, hasBias: false)), ("1", nn.Linear(rank, keyWidth, hasBias: true)));

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        var q = ShortConvolution.Project(q_proj, q_conv, x, keyPaddingMask, siluWithoutConv: false);
        var k = ShortConvolution.Project(k_proj, k_conv, x, keyPaddingMask, siluWithoutConv: false);
        var v = ShortConvolution.Project(v_proj, v_conv, x, keyPaddingMask, siluWithoutConv: false);
        var (qh, kh, vh) = (Heads.Split(q, h), Heads.Split(k, h), Heads.Split(v, h));
        Tensor Gate(Sequential proj) => GlaKernels.Gate(Heads.Split(proj.forward(x), h), _options.GateLogitNormalizer, _options.ClampMin);
        var o = gk_proj_bwd is null
            ? GlaKernels.Causal(qh, kh, vh, Gate(gk_proj), keyPaddingMask, chunk: _options.ChunkSize)
            : GlaKernels.Bidirectional(qh, kh, vh, Gate(gk_proj), Gate(gk_proj_bwd), keyPaddingMask, chunk: _options.ChunkSize);
        o = g_norm.forward(o);
        if (g_proj is not null) o = o * nn.functional.silu(Heads.Split(g_proj.forward(x), h));
        return Heads.ZeroPadded(o_proj.forward(Heads.Merge(o)), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
