using Microsoft.ML.LinearAttention.Attention.Decay;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.SimpleGla;

/// <summary>Options of simple GLA; defaults are fla's <c>SimpleGatedLinearAttention</c> layer.</summary>
public sealed record SimpleGlaOptions : MixerOptions
{
    /// <summary>Key width = hidden size × ExpandK (fla: 1.0).</summary>
    public double ExpandK { get; init; } = 1.0;
    /// <summary>Value width = hidden size × ExpandV (fla: 1.0).</summary>
    public double ExpandV { get; init; } = 1.0;
    /// <summary>Depthwise causal short convolutions + SiLU on q, k, v (fla's signature default: true).</summary>
    public bool UseShortConv { get; init; } = true;
    /// <summary>Short convolution size (fla: 4).</summary>
    public int ConvSize { get; init; } = 4;
    /// <summary>Bias in the short convolutions (fla: false).</summary>
    public bool ConvBias { get; init; }
    /// <summary>Log decay = logsigmoid(gk_proj(x)) / GateLogitNormalizer (fla: 16).</summary>
    public double GateLogitNormalizer { get; init; } = 16.0;
    /// <summary>Epsilon of the per-head RMSNorm before the swish output gate (fla: 1e-5).</summary>
    public double NormEps { get; init; } = 1e-5;
    /// <summary>Chunk length of the chunkwise kernel.</summary>
    public int ChunkSize { get; init; } = DecayKernels.DefaultChunk;
}

/// <summary>
/// Simple GLA as fla's <c>SimpleGatedLinearAttention</c>: q/k/v projections with short convolutions, one decay per
/// head and step from <c>gk_proj: Linear(C → H)</c> (logsigmoid / 16), per-head RMSNorm with a swish output gate from
/// <c>g_proj</c>, output projection. The bidirectional form adds <c>gk_proj_bwd</c>, the reversed scan's own gate
/// (ViG-style direction-wise gating), and merges as in <see cref="SimpleGlaKernels"/>.
/// </summary>
public sealed class SimpleGlaMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> q_proj;
    private readonly nn.Module<Tensor, Tensor> k_proj;
    private readonly nn.Module<Tensor, Tensor> v_proj;
    private readonly Linear g_proj;
    private readonly Linear gk_proj;
    private readonly Linear? gk_proj_bwd;
    private readonly nn.Module<Tensor, Tensor> o_proj;
    private readonly ShortConvolution? q_conv;
    private readonly ShortConvolution? k_conv;
    private readonly ShortConvolution? v_conv;
    private readonly RmsNorm g_norm;
    private readonly SimpleGlaOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "q_proj", "k_proj", "v_proj", "o_proj" };

    public SimpleGlaMixer(MixerConfig config, SimpleGlaOptions options) : base(nameof(SimpleGlaMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        int dk = MixerChecks.ExpandedWidth(config, options.ExpandK, nameof(options.ExpandK), "Simple GLA") / config.NumHeads;
        int dv = MixerChecks.ExpandedWidth(config, options.ExpandV, nameof(options.ExpandV), "Simple GLA") / config.NumHeads;
        if (options.GateLogitNormalizer <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.GateLogitNormalizer, "GateLogitNormalizer must be positive (fla: 16).");
        MixerChecks.ChunkSize(options.ChunkSize, "Simple GLA");
        _options = options;
        int c = config.ModelDim, h = config.NumHeads;
        q_proj = nn.Linear(c, h * dk, hasBias: false);
        k_proj = nn.Linear(c, h * dk, hasBias: false);
        v_proj = nn.Linear(c, h * dv, hasBias: false);
        g_proj = nn.Linear(c, h * dv, hasBias: false);
        gk_proj = nn.Linear(c, h, hasBias: true);
        if (!config.Causal) gk_proj_bwd = nn.Linear(c, h, hasBias: true);
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

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        var q = ShortConvolution.Project(q_proj, q_conv, x, keyPaddingMask, siluWithoutConv: false);
        var k = ShortConvolution.Project(k_proj, k_conv, x, keyPaddingMask, siluWithoutConv: false);
        var v = ShortConvolution.Project(v_proj, v_conv, x, keyPaddingMask, siluWithoutConv: false);
        var (qh, kh, vh) = (Heads.Split(q, h), Heads.Split(k, h), Heads.Split(v, h));
        var gf = SimpleGlaKernels.Gate(gk_proj.forward(x).transpose(1, 2), _options.GateLogitNormalizer);    // [B, H, T]
        var o = gk_proj_bwd is null
            ? SimpleGlaKernels.Causal(qh, kh, vh, gf, keyPaddingMask, chunk: _options.ChunkSize)
            : SimpleGlaKernels.Bidirectional(qh, kh, vh, gf, SimpleGlaKernels.Gate(gk_proj_bwd.forward(x).transpose(1, 2), _options.GateLogitNormalizer),
                keyPaddingMask, chunk: _options.ChunkSize);
        o = g_norm.forward(o) * nn.functional.silu(Heads.Split(g_proj.forward(x), h));
        return Heads.ZeroPadded(o_proj.forward(Heads.Merge(o)), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
