using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Agent;

/// <summary>Options of agent attention (defaults from <c>LeapLabTHU/Agent-Attention</c> <c>agent_deit.py</c>).</summary>
public sealed record AgentOptions : MixerOptions
{
    /// <summary>Number of agent tokens n (a perfect square on a grid: p×p pooling cells). Reference: 49.</summary>
    public int NumAgents { get; init; } = 49;
    /// <summary>Kernel of the depthwise convolution on v (k×k on a grid, k along text); 0 = off. Reference: 3.</summary>
    public int DwcKernel { get; init; } = 3;
    /// <summary>Learned agent–token position biases (7×7 tables resized to the layout). Reference: on.</summary>
    public bool PositionBias { get; init; } = true;
    /// <summary>Bias on the qkv projection (the DeiT models pass qkv_bias = True).</summary>
    public bool QkvBias { get; init; } = true;
}

/// <summary>
/// Agent attention token mixer: qkv → agents = masked adaptive pool of q over real tokens → agent gather/broadcast
/// softmaxes with position biases → + DWC(v) → proj.
/// <para>Differences from the reference: the per-axis biases (ah/aw/ha/wa, sized to a fixed image) and the class-token
/// biases are left out, since sequence lengths and grids vary here; the 7×7 tables are kept and resized to the input.</para>
/// </summary>
public sealed class AgentMixer : TokenMixer
{
    private const int TableSize = 7;
    private readonly nn.Module<Tensor, Tensor> qkv;
    private readonly nn.Module<Tensor, Tensor> proj;
    private readonly Parameter? an_bias;
    private readonly Parameter? na_bias;
    private readonly DepthwiseConv? dwc;
    private readonly AgentOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "qkv", "proj" };

    public AgentMixer(MixerConfig config, AgentOptions options) : base(nameof(AgentMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.NumAgents <= 0) throw new ArgumentOutOfRangeException(nameof(options), options.NumAgents, "AgentOptions.NumAgents must be positive (reference: 49).");
        if (options.DwcKernel < 0 || (options.DwcKernel > 0 && options.DwcKernel % 2 == 0))
            throw new ArgumentOutOfRangeException(nameof(options), options.DwcKernel, "AgentOptions.DwcKernel must be 0 (off) or a positive odd number such as 3.");
        _options = options;
        int c = config.ModelDim, h = config.NumHeads;
        qkv = nn.Linear(c, 3 * c, hasBias: options.QkvBias);
        proj = nn.Linear(c, c);
        if (options.PositionBias)
        {
            an_bias = new Parameter(TruncNormal(h, options.NumAgents));
            na_bias = new Parameter(TruncNormal(h, options.NumAgents));
        }
        if (options.DwcKernel > 0) dwc = new DepthwiseConv(c, options.DwcKernel);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        MixerInput.Check(this, x, keyPaddingMask);
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        long b = x.shape[0], t = x.shape[1];
        var parts = qkv.forward(x).chunk(3, -1);
        var q = Heads.Split(parts[0], h);
        var (agents, valid) = AgentKernels.PoolAgents(q, keyPaddingMask, _options.NumAgents, Grid);
        Tensor? gatherBias = null, broadcastBias = null;
        if (an_bias is not null && na_bias is not null)
        {
            gatherBias = AgentPositionBias.Resize(an_bias, keyPaddingMask, b, t, Grid).to(x.dtype);
            broadcastBias = AgentPositionBias.Resize(na_bias, keyPaddingMask, b, t, Grid).transpose(-1, -2).to(x.dtype);
        }
        var o = Heads.Merge(AgentKernels.Bidirectional(q, Heads.Split(parts[1], h), Heads.Split(parts[2], h), agents, valid,
            gatherBias, broadcastBias, keyPaddingMask));
        if (dwc is not null) o = o + dwc.Forward(parts[2], keyPaddingMask, Grid);
        return Heads.ZeroPadded(proj.forward(o), keyPaddingMask).MoveToOuterDisposeScope();
    }

    // trunc_normal_(std=.02) as in the reference: normal(0, 0.02) truncated to ±2 (i.e. essentially untruncated).
    private static Tensor TruncNormal(int heads, int agents)
    {
        using var noGrad = torch.no_grad();
        return (torch.randn(heads, agents, TableSize, TableSize) * 0.02).clamp(-2, 2);
    }
}
