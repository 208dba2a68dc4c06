using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.GatedDeltaNet;

/// <summary>Options of Gated DeltaNet, defaults from fla's <c>fla/layers/gated_deltanet.py</c>.</summary>
public sealed record GatedDeltaNetOptions : MixerOptions
{
    /// <summary>
    /// Key head width = ExpandK · (hidden size / heads). Default 1 (the mixer's head size). fla sizes GDN as
    /// num_heads · head_dim = 0.75 · hidden (about 6·C² parameters with the gate); 0.75 reproduces that budget.
    /// </summary>
    public double ExpandK { get; init; } = 1.0;
    /// <summary>Value head width = ExpandV · key head width (fla <c>expand_v</c> = 2).</summary>
    public double ExpandV { get; init; } = 2.0;
    /// <summary>Output gate: RMSNorm(o) · SiLU(g_proj(x)) (fla <c>use_gate</c> = true); false = plain RMSNorm.</summary>
    public bool UseOutputGate { get; init; } = true;
    /// <summary>Short depthwise convolutions with SiLU on q, k, v (fla <c>use_short_conv</c> = true).</summary>
    public bool UseShortConv { get; init; } = true;
    /// <summary>Width of the short convolutions (fla <c>conv_size</c> = 4).</summary>
    public int ConvSize { get; init; } = 4;
    /// <summary>Bias in the short convolutions (fla <c>conv_bias</c> = false).</summary>
    public bool ConvBias { get; init; }
    /// <summary>β ∈ (0, 2): negative eigenvalues allowed (arXiv 2411.12537). Default false.</summary>
    public bool AllowNegativeEigenvalues { get; init; }
    /// <summary>eps of the output norm (fla <c>norm_eps</c> = 1e-5).</summary>
    public double NormEps { get; init; } = 1e-5;
    /// <summary>Chunk length of the chunkwise kernels (fla: 64).</summary>
    public int ChunkSize { get; init; } = DeltaRule.DefaultChunk;
}

/// <summary>
/// Gated DeltaNet token mixer (arXiv 2412.06464; fla <c>GatedDeltaNet</c>): q/k/v projections with short convolutions
/// and SiLU, L2-normalised q and k, β = sigmoid(b_proj(x)), Mamba2-style decay g = −exp(A_log)·softplus(a_proj(x) +
/// dt_bias) per head (A ~ U(0, 16), dt log-uniform in [1e-3, 0.1]), the gated delta rule, gated RMSNorm and the output
/// projection. Bidirectional: the reverse scan has its own b/a projections, A_log and dt_bias (suffix <c>_rev</c>), see
/// <see cref="DeltaRule.Bidirectional"/>.
/// </summary>
public sealed class GatedDeltaNetMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> q_proj;
    private readonly nn.Module<Tensor, Tensor> k_proj;
    private readonly nn.Module<Tensor, Tensor> v_proj;
    private readonly Linear a_proj;
    private readonly Linear b_proj;
    private readonly Parameter A_log;
    private readonly Parameter dt_bias;
    private readonly Linear? a_proj_rev;
    private readonly Linear? b_proj_rev;
    private readonly Parameter? A_log_rev;
    private readonly Parameter? dt_bias_rev;
    private readonly ShortConvolution? q_conv1d;
    private readonly ShortConvolution? k_conv1d;
    private readonly ShortConvolution? v_conv1d;
    private readonly Linear? g_proj;
    private readonly GatedRmsNorm? o_norm_gated;
    private readonly RmsNorm? o_norm;
    private readonly nn.Module<Tensor, Tensor> o_proj;
    private readonly GatedDeltaNetOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "q_proj", "k_proj", "v_proj", "o_proj" };

    public GatedDeltaNetMixer(MixerConfig config, GatedDeltaNetOptions options) : base(nameof(GatedDeltaNetMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        MixerChecks.ChunkSize(options.ChunkSize, "Gated DeltaNet");
        _options = options;
        int c = config.ModelDim, h = config.NumHeads;
        var (keyDim, valueDim) = DeltaMixing.Dims(config, options.ExpandK, options.ExpandK * options.ExpandV, "Gated DeltaNet", "ExpandK·ExpandV");
        q_proj = nn.Linear(c, keyDim, hasBias: false);
        k_proj = nn.Linear(c, keyDim, hasBias: false);
        v_proj = nn.Linear(c, valueDim, hasBias: false);
        a_proj = nn.Linear(c, h, hasBias: false);
        b_proj = nn.Linear(c, h, hasBias: false);
        var (aLog, dt) = DeltaMixing.Mamba2Init(h);
        A_log = new Parameter(aLog);
        dt_bias = new Parameter(dt);
        if (!config.Causal)
        {
            a_proj_rev = nn.Linear(c, h, hasBias: false);
            b_proj_rev = nn.Linear(c, h, hasBias: false);
            var (aLogRev, dtRev) = DeltaMixing.Mamba2Init(h);
            A_log_rev = new Parameter(aLogRev);
            dt_bias_rev = new Parameter(dtRev);
        }
        if (options.UseShortConv)
        {
            q_conv1d = new ShortConvolution(keyDim, options.ConvSize, config.Causal, options.ConvBias);
            k_conv1d = new ShortConvolution(keyDim, options.ConvSize, config.Causal, options.ConvBias);
            v_conv1d = new ShortConvolution(valueDim, options.ConvSize, config.Causal, options.ConvBias);
        }
        if (options.UseOutputGate)
        {
            g_proj = nn.Linear(c, valueDim, hasBias: false);
            o_norm_gated = new GatedRmsNorm(valueDim / h, options.NormEps);
        }
        else
        {
            o_norm = new RmsNorm(valueDim / h, options.NormEps);
        }
        o_proj = nn.Linear(valueDim, c, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        x = Heads.ZeroPadded(x, keyPaddingMask);
        var q = DeltaRule.L2Normalize(Heads.Split(ShortConvolution.Project(q_proj, q_conv1d, x, null, siluWithoutConv: true), h));
        var k = DeltaRule.L2Normalize(Heads.Split(ShortConvolution.Project(k_proj, k_conv1d, x, null, siluWithoutConv: true), h));
        var v = Heads.Split(ShortConvolution.Project(v_proj, v_conv1d, x, null, siluWithoutConv: true), h);
        bool neg = _options.AllowNegativeEigenvalues;
        var beta = DeltaMixing.Beta(b_proj, x, neg);
        var g = DeltaRule.Mamba2Gate(a_proj.forward(x), A_log, dt_bias).transpose(1, 2);       // [B, H, T] fp32
        var o = Config.Causal
            ? GatedDeltaNetKernels.Causal(q, k, v, beta, g, keyPaddingMask, chunk: _options.ChunkSize)
            : GatedDeltaNetKernels.Bidirectional(q, k, v, beta, g, DeltaMixing.Beta(b_proj_rev!, x, neg),
                DeltaRule.Mamba2Gate(a_proj_rev!.forward(x), A_log_rev!, dt_bias_rev!).transpose(1, 2), keyPaddingMask, chunk: _options.ChunkSize);
        o = o_norm_gated is not null
            ? o_norm_gated.forward(o, Heads.Split(g_proj!.forward(x), h))
            : o_norm!.forward(o);
        return Heads.ZeroPadded(o_proj.forward(Heads.Merge(o)), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
