using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kda;

/// <summary>Options of Kimi Delta Attention, defaults from fla's <c>fla/layers/kda.py</c>.</summary>
public sealed record KdaOptions : MixerOptions
{
    /// <summary>Key head width = ExpandK · (hidden size / heads). Default 1 (fla: 16 heads × 128 = hidden 2048).</summary>
    public double ExpandK { get; init; } = 1.0;
    /// <summary>Value head width = ExpandV · key head width (fla <c>expand_v</c> = 1).</summary>
    public double ExpandV { get; init; } = 1.0;
    /// <summary>Short depthwise convolutions with SiLU on q, k, v (fla <c>use_short_conv</c> = true).</summary>
    public bool UseShortConv { get; init; } = true;
    /// <summary>Width of the short convolutions (fla <c>conv_size</c> = 4).</summary>
    public int ConvSize { get; init; } = 4;
    /// <summary>Bias in the short convolutions (fla <c>conv_bias</c> = false).</summary>
    public bool ConvBias { get; init; }
    /// <summary>β ∈ (0, 2): negative eigenvalues allowed (arXiv 2411.12537). Default false.</summary>
    public bool AllowNegativeEigenvalues { get; init; }
    /// <summary>
    /// null (default): g = −exp(A_log)·softplus(f + dt_bias). A negative value lb switches to fla's lower-bounded gate
    /// g = lb·sigmoid(exp(A_log)·(f + dt_bias)) (Kimi Linear's config uses −5).
    /// </summary>
    public double? GateLowerBound { get; init; }
    /// <summary>eps of the gated output RMSNorm (fla <c>norm_eps</c> = 1e-5).</summary>
    public double NormEps { get; init; } = 1e-5;
    /// <summary>Chunk length of the chunkwise kernels (fla: 64).</summary>
    public int ChunkSize { get; init; } = DeltaRule.DefaultChunk;
}

/// <summary>
/// Kimi Delta Attention token mixer (fla <c>KimiDeltaAttention</c>): q/k/v projections with short convolutions and
/// SiLU, L2-normalised q and k, β = sigmoid(b_proj(x)), a per-channel decay from the low-rank f_proj
/// (C → Dv_head → H·Dk) through −exp(A_log)·softplus(· + dt_bias) (A ~ U(1, 16) per head, dt_bias = 0 per channel),
/// the per-channel gated delta rule, RMSNorm gated by sigmoid(g_proj(x)) (low rank, with bias) and the output
/// projection. Bidirectional: the reverse scan has its own f/b projections, A_log and dt_bias (suffix <c>_rev</c>).
/// </summary>
public sealed class KdaMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> q_proj;
    private readonly nn.Module<Tensor, Tensor> k_proj;
    private readonly nn.Module<Tensor, Tensor> v_proj;
    private readonly Sequential f_proj;
    private readonly Linear b_proj;
    private readonly Parameter A_log;
    private readonly Parameter dt_bias;
    private readonly Sequential? f_proj_rev;
    private readonly Linear? b_proj_rev;
    private readonly Parameter? A_log_rev;
    private readonly Parameter? dt_bias_rev;
    private readonly ShortConvolution? q_conv1d;
    private readonly ShortConvolution? k_conv1d;
    private readonly ShortConvolution? v_conv1d;
    private readonly Sequential g_proj;
    private readonly GatedRmsNorm o_norm;
    private readonly nn.Module<Tensor, Tensor> o_proj;
    private readonly KdaOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "q_proj", "k_proj", "v_proj", "o_proj" };

    public KdaMixer(MixerConfig config, KdaOptions options) : base(nameof(KdaMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        MixerChecks.ChunkSize(options.ChunkSize, "KDA");
        if (options.GateLowerBound is double lb && !(lb < 0))
            throw new ArgumentOutOfRangeException(nameof(options), lb, "KDA GateLowerBound must be negative (Kimi Linear uses −5), or null for the softplus gate.");
        _options = options;
        int c = config.ModelDim, h = config.NumHeads;
        var (keyDim, valueDim) = DeltaMixing.Dims(config, options.ExpandK, options.ExpandK * options.ExpandV, "KDA", "ExpandK·ExpandV");
        int headV = valueDim / h;
        q_proj = nn.Linear(c, keyDim, hasBias: false);
        k_proj = nn.Linear(c, keyDim, hasBias: false);
        v_proj = nn.Linear(c, valueDim, hasBias: false);
        Sequential GateProj() => nn.Sequential(nn.Linear(c, headV, hasBias: false), nn.Linear(headV, keyDim, hasBias: false));
        f_proj = GateProj();
        b_proj = nn.Linear(c, h, hasBias: false);
        A_log = new Parameter(torch.empty(h).uniform_(1, 16).log());
        dt_bias = new Parameter(torch.zeros(keyDim));
        if (!config.Causal)
        {
            f_proj_rev = GateProj();
            b_proj_rev = nn.Linear(c, h, hasBias: false);
            A_log_rev = new Parameter(torch.empty(h).uniform_(1, 16).log());
            dt_bias_rev = new Parameter(torch.zeros(keyDim));
        }
        if (options.UseShortConv)
        {
            q_conv1d = new ShortConvolution(keyDim, options.ConvSize, config.Causal, options.ConvBias);
            k_conv1d = new ShortConvolution(keyDim, options.ConvSize, config.Causal, options.ConvBias);
            v_conv1d = new ShortConvolution(valueDim, options.ConvSize, config.Causal, options.ConvBias);
        }
        g_proj = nn.Sequential(nn.Linear(c, headV, hasBias: false), nn.Linear(headV, valueDim, hasBias: true));
        o_norm = new GatedRmsNorm(headV, options.NormEps, "sigmoid");
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
        Tensor Gate(Sequential proj, Tensor aLog, Tensor dtBias) => KdaKernels.Gate(Heads.Split(proj.forward(x), h), aLog, dtBias, _options.GateLowerBound);
        var o = Config.Causal
            ? KdaKernels.Causal(q, k, v, DeltaMixing.Beta(b_proj, x, neg), Gate(f_proj, A_log, dt_bias), keyPaddingMask, chunk: _options.ChunkSize)
            : KdaKernels.Bidirectional(q, k, v, DeltaMixing.Beta(b_proj, x, neg), Gate(f_proj, A_log, dt_bias),
                DeltaMixing.Beta(b_proj_rev!, x, neg), Gate(f_proj_rev!, A_log_rev!, dt_bias_rev!), keyPaddingMask, chunk: _options.ChunkSize);
        o = o_norm.forward(o, Heads.Split(g_proj.forward(x), h));
        return Heads.ZeroPadded(o_proj.forward(Heads.Merge(o)), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
