using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.DeltaNet;

/// <summary>Options of DeltaNet, defaults from fla's <c>fla/layers/delta_net.py</c>.</summary>
public sealed record DeltaNetOptions : MixerOptions
{
    /// <summary>Key width = ExpandK · hidden size (fla <c>expand_k</c> = 1).</summary>
    public double ExpandK { get; init; } = 1.0;
    /// <summary>Value width = ExpandV · hidden size (fla <c>expand_v</c> = 1).</summary>
    public double ExpandV { get; init; } = 1.0;
    /// <summary>β = sigmoid(b_proj(x)) per head; false = β ≡ 1 (fla <c>use_beta</c> = true).</summary>
    public bool UseBeta { get; init; } = true;
    /// <summary>Short depthwise convolutions with SiLU on q, k, v; fla warns they are "crucial to the performance".</summary>
    public bool UseShortConv { get; init; } = true;
    /// <summary>Width of the short convolutions (fla <c>conv_size</c> = 4).</summary>
    public int ConvSize { get; init; } = 4;
    /// <summary>Bias in the short convolutions (fla <c>conv_bias</c> = false).</summary>
    public bool ConvBias { get; init; }
    /// <summary>Output gate: RMSNorm(o) · SiLU(g_proj(x)) instead of plain RMSNorm(o) (fla <c>use_gate</c> = false).</summary>
    public bool UseOutputGate { get; init; }
    /// <summary>β ∈ (0, 2): the transition I − βkkᵀ may have negative eigenvalues (arXiv 2411.12537). Default false.</summary>
    public bool AllowNegativeEigenvalues { get; init; }
    /// <summary>Activation of q and k: "silu" (default; applied by the short convolution), "relu", "elu" (elu+1), "identity".</summary>
    public string QkActivation { get; init; } = "silu";
    /// <summary>Normalisation of q and k: "l2" (default) or "sum" (divide by the feature sum; needs "relu" or "elu").</summary>
    public string QkNorm { get; init; } = "l2";
    /// <summary>eps of the output RMSNorm (fla <c>norm_eps</c> = 1e-5).</summary>
    public double NormEps { get; init; } = 1e-5;
    /// <summary>Chunk length of the chunkwise kernels (fla: 64).</summary>
    public int ChunkSize { get; init; } = DeltaRule.DefaultChunk;
}

/// <summary>
/// DeltaNet token mixer (arXiv 2406.06484; fla <c>DeltaNet</c>): q/k/v projections, short convolutions with SiLU,
/// L2-normalised q and k, β = sigmoid(b_proj(x)) per head, the delta rule, per-head RMSNorm (optionally gated) and the
/// output projection. Causal: chunkwise delta rule. Bidirectional: forward + reverse scan with their own β projections
/// (b_proj, b_proj_rev) and a centred short convolution, see <see cref="DeltaRule.Bidirectional"/>.
/// </summary>
public sealed class DeltaNetMixer : TokenMixer
{
    private static readonly string[] Activations = { "silu", "relu", "elu", "identity" };

    private readonly nn.Module<Tensor, Tensor> q_proj;
    private readonly nn.Module<Tensor, Tensor> k_proj;
    private readonly nn.Module<Tensor, Tensor> v_proj;
    private readonly Linear? b_proj;
    private readonly Linear? b_proj_rev;
    private readonly ShortConvolution? q_conv1d;
    private readonly ShortConvolution? k_conv1d;
    private readonly ShortConvolution? v_conv1d;
    private readonly Linear? g_proj;
    private readonly GatedRmsNorm? o_norm_gated;
    private readonly RmsNorm? o_norm;
    private readonly nn.Module<Tensor, Tensor> o_proj;
    private readonly DeltaNetOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "q_proj", "k_proj", "v_proj", "o_proj" };

    public DeltaNetMixer(MixerConfig config, DeltaNetOptions options) : base(nameof(DeltaNetMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!Activations.Contains(options.QkActivation))
            throw new ArgumentException($"DeltaNet QkActivation '{options.QkActivation}' is unknown; use one of {string.Join(", ", Activations)}.");
        if (options.QkNorm != "l2" && options.QkNorm != "sum")
            throw new ArgumentException($"DeltaNet QkNorm '{options.QkNorm}' is unknown; use 'l2' or 'sum'.");
        if (options.QkNorm == "sum" && options.QkActivation is not ("relu" or "elu"))
            throw new ArgumentException($"DeltaNet QkNorm 'sum' divides by the feature sum, which needs non-negative features; use QkActivation 'relu' or 'elu' (got '{options.QkActivation}').");
        MixerChecks.ChunkSize(options.ChunkSize, "DeltaNet");
        _options = options;
        var (keyDim, valueDim) = DeltaMixing.Dims(config, options.ExpandK, options.ExpandV, "DeltaNet");
        int c = config.ModelDim, h = config.NumHeads;
        q_proj = nn.Linear(c, keyDim, hasBias: false);
        k_proj = nn.Linear(c, keyDim, hasBias: false);
        v_proj = nn.Linear(c, valueDim, hasBias: false);
        if (options.UseBeta)
        {
            b_proj = nn.Linear(c, h, hasBias: false);
            if (!config.Causal) b_proj_rev = nn.Linear(c, h, hasBias: false);
        }
        if (options.UseShortConv)
        {
            bool qkSilu = options.QkActivation == "silu";
            q_conv1d = new ShortConvolution(keyDim, options.ConvSize, config.Causal, options.ConvBias, qkSilu);
            k_conv1d = new ShortConvolution(keyDim, options.ConvSize, config.Causal, options.ConvBias, qkSilu);
            v_conv1d = new ShortConvolution(valueDim, options.ConvSize, config.Causal, options.ConvBias, silu: true);
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
        bool silu = _options.QkActivation == "silu";
        var q = Heads.Split(ShortConvolution.Project(q_proj, q_conv1d, x, null, silu), h);
        var k = Heads.Split(ShortConvolution.Project(k_proj, k_conv1d, x, null, silu), h);
        var v = Heads.Split(ShortConvolution.Project(v_proj, v_conv1d, x, null, siluWithoutConv: true), h);
        (q, k) = (Activate(q), Activate(k));
        (q, k) = _options.QkNorm == "l2"
            ? (DeltaRule.L2Normalize(q), DeltaRule.L2Normalize(k))
            : (q / q.sum(-1, keepdim: true).clamp_min(1e-6), k / k.sum(-1, keepdim: true).clamp_min(1e-6));

        Tensor Beta(Linear? proj) => proj is null
            ? torch.ones(x.shape[0], h, x.shape[1], dtype: x.dtype, device: x.device) * (_options.AllowNegativeEigenvalues ? 2 : 1)
            : DeltaMixing.Beta(proj, x, _options.AllowNegativeEigenvalues);
        var o = Config.Causal
            ? DeltaNetKernels.Causal(q, k, v, Beta(b_proj), keyPaddingMask, chunk: _options.ChunkSize)
            : DeltaNetKernels.Bidirectional(q, k, v, Beta(b_proj), Beta(b_proj_rev), keyPaddingMask, chunk: _options.ChunkSize);

        o = o_norm_gated is not null
            ? o_norm_gated.forward(o, Heads.Split(g_proj!.forward(x), h))
            : o_norm!.forward(o);
        return Heads.ZeroPadded(o_proj.forward(Heads.Merge(o)), keyPaddingMask).MoveToOuterDisposeScope();
    }

    private Tensor Activate(Tensor x) => _options.QkActivation switch
    {
        "relu" => nn.functional.relu(x),
        "elu" => nn.functional.elu(x, 1.0) + 1,
        _ => x,   // silu was applied with the convolution (or the projection); identity
    };
}
