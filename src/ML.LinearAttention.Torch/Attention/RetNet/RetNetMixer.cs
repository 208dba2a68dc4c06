using Microsoft.ML.LinearAttention.Attention.Decay;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.RetNet;

/// <summary>Options of multi-scale retention; defaults are fla's <c>MultiScaleRetention</c> layer.</summary>
public sealed record RetNetOptions : MixerOptions
{
    /// <summary>Key width = hidden size × ExpandK (fla: 1.0).</summary>
    public double ExpandK { get; init; } = 1.0;
    /// <summary>Value width = hidden size × ExpandV (fla: 2.0).</summary>
    public double ExpandV { get; init; } = 2.0;
    /// <summary>Swish output gate: o = RMSNorm(o) · silu(g_proj(x)) (fla: true, fused). Off = RMSNorm only.</summary>
    public bool UseOutputGate { get; init; } = true;
    /// <summary>Rotary embedding on q and k (fla always applies it; RetNet's xPos role).</summary>
    public bool UseRotary { get; init; } = true;
    /// <summary>Rotary base θ (fla: 10000).</summary>
    public double RotaryTheta { get; init; } = 10000.0;
    /// <summary>Depthwise causal short convolutions + SiLU on q, k, v (fla: false).</summary>
    public bool UseShortConv { get; init; }
    /// <summary>Short convolution size (fla: 4).</summary>
    public int ConvSize { get; init; } = 4;
    /// <summary>Epsilon of the per-head RMSNorm (fla: 1e-5).</summary>
    public double NormEps { get; init; } = 1e-5;
    /// <summary>Chunk length of the chunkwise kernel.</summary>
    public int ChunkSize { get; init; } = DecayKernels.DefaultChunk;
}

/// <summary>
/// Multi-scale retention (RetNet) as fla's <c>MultiScaleRetention</c>: q/k/v projections (key width C·ExpandK, value
/// width C·ExpandV), rotary on q and k, fixed per-head decays γ_h = 1 − 2^(−5−h), per-head RMSNorm with a swish output
/// gate, output projection. Causal: chunkwise retention. Bidirectional: forward + reversed scans with the same γ_h
/// (see <see cref="RetNetKernels"/>).
/// </summary>
public sealed class RetNetMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> q_proj;
    private readonly nn.Module<Tensor, Tensor> k_proj;
    private readonly nn.Module<Tensor, Tensor> v_proj;
    private readonly Linear? g_proj;
    private readonly nn.Module<Tensor, Tensor> o_proj;
    private readonly ShortConvolution? q_conv;
    private readonly ShortConvolution? k_conv;
    private readonly ShortConvolution? v_conv;
    private readonly RmsNorm g_norm;
    private readonly RetNetOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "q_proj", "k_proj", "v_proj", "o_proj" };

    public RetNetMixer(MixerConfig config, RetNetOptions options) : base(nameof(RetNetMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        int dk = MixerChecks.ExpandedWidth(config, options.ExpandK, nameof(options.ExpandK), "RetNet") / config.NumHeads;
        int dv = MixerChecks.ExpandedWidth(config, options.ExpandV, nameof(options.ExpandV), "RetNet") / config.NumHeads;
        if (options.UseRotary && dk % 2 != 0)
            throw new ArgumentException($"Rotary embedding needs an even key head dimension; got {dk}. Change ExpandK or the head count, or set UseRotary = false.");
        MixerChecks.ChunkSize(options.ChunkSize, "RetNet");
        _options = options;
        int c = config.ModelDim, h = config.NumHeads;
        q_proj = nn.Linear(c, h * dk, hasBias: false);
        k_proj = nn.Linear(c, h * dk, hasBias: false);
        v_proj = nn.Linear(c, h * dv, hasBias: false);
        if (options.UseOutputGate) g_proj = nn.Linear(c, h * dv, hasBias: false);
        o_proj = nn.Linear(h * dv, c, hasBias: false);
        if (options.UseShortConv)
        {
            q_conv = new ShortConvolution(h * dk, options.ConvSize, causal: true);
            k_conv = new ShortConvolution(h * dk, options.ConvSize, causal: true);
            v_conv = new ShortConvolution(h * dv, options.ConvSize, causal: true);
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
        var qh = Heads.Split(q, h);
        var kh = Heads.Split(k, h);
        if (_options.UseRotary)
        {
            qh = Rotary.Apply(qh, _options.RotaryTheta);
            kh = Rotary.Apply(kh, _options.RotaryTheta);
        }
        var vh = Heads.Split(v, h);
        var o = Config.Causal
            ? RetNetKernels.Causal(qh, kh, vh, keyPaddingMask, chunk: _options.ChunkSize)
            : RetNetKernels.Bidirectional(qh, kh, vh, keyPaddingMask, chunk: _options.ChunkSize);
        o = g_norm.forward(o);
        if (g_proj is not null) o = o * nn.functional.silu(Heads.Split(g_proj.forward(x), h));
        return Heads.ZeroPadded(o_proj.forward(Heads.Merge(o)), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
