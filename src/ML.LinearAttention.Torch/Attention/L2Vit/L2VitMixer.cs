using Microsoft.ML.LinearAttention.Attention.HiLo;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.L2Vit;

/// <summary>Which of L²ViT's two attentions a layer runs.</summary>
public enum L2VitRole
{
    /// <summary>By layer index, as L²ViT's stages alternate them: even layers local window attention, odd layers linear global attention.</summary>
    Alternate,
    /// <summary>Local window attention (LWA): softmax inside non-overlapping windows.</summary>
    Local,
    /// <summary>Linear global attention (LGA): normalized ReLU linear attention with a local concentration module.</summary>
    Global,
}

/// <summary>
/// Options of L²ViT (Zheng et al., "The Linear Attention Resurrection in Vision Transformer"). Defaults follow the
/// paper's description (window 7, ReLU kernel, depthwise local concentration); its reference code was not read.
/// </summary>
public sealed record L2VitOptions : MixerOptions
{
    /// <summary>Local or global attention, or alternate by layer index (the paper's layout). Default: Alternate.</summary>
    public L2VitRole Role { get; init; } = L2VitRole.Alternate;
    /// <summary>Window side of the local attention (7 × 7 on a grid, 49 consecutive tokens for text). Default: 7.</summary>
    public int WindowSize { get; init; } = 7;
    /// <summary>Depthwise kernel of the local concentration module after the global attention (two convolutions with a GELU); 0 = off. Default: 7.</summary>
    public int ConcentrationKernel { get; init; } = 7;
    /// <summary>Biases on the q/k/v projections. Default: on.</summary>
    public bool QkvBias { get; init; } = true;
}

/// <summary>
/// L²ViT's attention: local window softmax attention (LWA, the HiLo Hi-Fi window kernel) on some layers, and on the
/// others linear global attention (LGA): φ = ReLU, o_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / (φ(q_i) · Σ_j φ(k_j)), then a local
/// concentration module o + DW(GELU(DW(o))) that gives the dispersed linear attention its local focus back. Reads
/// <see cref="TokenMixer.Grid"/> for 2D windows and convolutions.
/// </summary>
public sealed class L2VitMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> qkv;
    private readonly nn.Module<Tensor, Tensor> proj;
    private readonly DepthwiseConv? lcm1;
    private readonly DepthwiseConv? lcm2;
    private readonly L2VitOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "qkv", "proj" };

    public L2VitMixer(MixerConfig config, L2VitOptions options) : base(nameof(L2VitMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.WindowSize < 1) throw new ArgumentOutOfRangeException(nameof(options), options.WindowSize, "L2VitOptions.WindowSize must be at least 1 (7 in L²ViT).");
        if (options.ConcentrationKernel < 0 || (options.ConcentrationKernel > 0 && options.ConcentrationKernel % 2 == 0))
            throw new ArgumentOutOfRangeException(nameof(options), options.ConcentrationKernel, "L2VitOptions.ConcentrationKernel must be 0 (off) or a positive odd number such as 7.");
        _options = options;
        IsGlobal = options.Role == L2VitRole.Global || (options.Role == L2VitRole.Alternate && config.LayerIndex % 2 == 1);
        int c = config.ModelDim;
        qkv = nn.Linear(c, 3L * c, hasBias: options.QkvBias);
        proj = nn.Linear(c, c);
        if (IsGlobal && options.ConcentrationKernel > 0)
        {
            lcm1 = new DepthwiseConv(c, options.ConcentrationKernel);
            lcm2 = new DepthwiseConv(c, options.ConcentrationKernel);
        }
        RegisterComponents();
    }

    /// <summary>True when this layer runs the linear global attention, false for the local windows.</summary>
    public bool IsGlobal { get; }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        MixerInput.Check(this, x, keyPaddingMask);
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        var parts = qkv.forward(x).chunk(3, -1);
        var q = Heads.Split(parts[0], h);
        var k = Heads.Split(parts[1], h);
        var v = Heads.Split(parts[2], h);
        Tensor o;
        if (IsGlobal)
        {
            o = Heads.Merge(LinearAttentionKernels.Bidirectional(nn.functional.relu(q), nn.functional.relu(k), v, keyPaddingMask));
            if (lcm1 is not null) o = o + lcm2!.Forward(nn.functional.gelu(lcm1.Forward(o, keyPaddingMask, Grid)), keyPaddingMask, Grid);
        }
        else o = Heads.Merge(HiLoKernels.LocalWindow(q, k, v, keyPaddingMask, Grid, _options.WindowSize));
        return Heads.ZeroPadded(proj.forward(o), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
