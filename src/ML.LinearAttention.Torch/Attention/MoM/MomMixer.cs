using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.MoM;

/// <summary>Options of Mixture-of-Memories, defaults from fla's <c>fla/layers/mom.py</c>.</summary>
public sealed record MomOptions : MixerOptions
{
    /// <summary>Number of memories M (fla <c>num_memories</c> = 8).</summary>
    public int NumMemories { get; init; } = 8;
    /// <summary>Memories each token is routed to (fla <c>topk</c> = 2).</summary>
    public int TopK { get; init; } = 2;
    /// <summary>Key head width = ExpandK · (hidden size / heads). Default 1 (fla: 4 heads × head_dim 256).</summary>
    public double ExpandK { get; init; } = 1.0;
    /// <summary>Value head width = ExpandV · key head width (fla <c>expand_v</c> = 2).</summary>
    public double ExpandV { get; init; } = 2.0;
    /// <summary>Output gate: RMSNorm(o) · SiLU(g_proj(x)) (fla <c>use_output_gate</c> = true); false = plain RMSNorm.</summary>
    public bool UseOutputGate { get; init; } = true;
    /// <summary>Short depthwise convolutions with SiLU on q, k, v (fla <c>use_short_conv</c> = true; shared by the memories).</summary>
    public bool UseShortConv { get; init; } = true;
    /// <summary>Width of the short convolutions (fla <c>conv_size</c> = 4).</summary>
    public int ConvSize { get; init; } = 4;
    /// <summary>Bias in the short convolutions (fla <c>conv_bias</c> = false).</summary>
    public bool ConvBias { get; init; }
    /// <summary>eps of the output norm (fla <c>norm_eps</c> = 1e-5).</summary>
    public double NormEps { get; init; } = 1e-5;
    /// <summary>Chunk length of the chunkwise kernels (fla: 64).</summary>
    public int ChunkSize { get; init; } = DeltaRule.DefaultChunk;
}

/// <summary>
/// Mixture-of-Memories token mixer (arXiv 2502.13685; fla <c>MomAttention</c>): a router Linear(C → M) with softmax and
/// top-k selects memories per token; each memory has its own k/v/β/decay projections (one fused Linear per kind,
/// equivalent to fla's per-memory ModuleLists) and is a Gated DeltaNet memory (Mamba2 decay with A_log and dt_bias
/// shared across memories, as in fla); q is shared. Short convolutions with SiLU (weights shared by the memories), L2
/// norm of q and k, gated RMSNorm and the output projection. Linear layers use fla's Xavier-uniform init (gain 2^−2.5).
/// Bidirectional: forward and reverse scans per memory with their own β/decay projections (suffix <c>_rev</c>) and the
/// same routing, see <see cref="MomKernels.Bidirectional"/>.
/// </summary>
public sealed class MomMixer : TokenMixer
{
    private readonly Linear gate;
    private readonly nn.Module<Tensor, Tensor> q_proj;
    private readonly Linear k_proj;
    private readonly Linear v_proj;
    private readonly Linear b_proj;
    private readonly Linear a_proj;
    private readonly Parameter A_log;
    private readonly Parameter dt_bias;
    private readonly Linear? b_proj_rev;
    private readonly Linear? a_proj_rev;
    private readonly Parameter? A_log_rev;
    private readonly Parameter? dt_bias_rev;
    private readonly ShortConvolution? q_conv1d;
    private readonly ShortConvolution? k_conv1d;
    private readonly ShortConvolution? v_conv1d;
    private readonly Linear? g_proj;
    private readonly GatedRmsNorm? o_norm_gated;
    private readonly RmsNorm? o_norm;
    private readonly nn.Module<Tensor, Tensor> o_proj;
    private readonly MomOptions _options;
    private readonly int _keyDim;
    private readonly int _valueDim;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "q_proj", "o_proj" };

    public MomMixer(MixerConfig config, MomOptions options) : base(nameof(MomMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.NumMemories < 1) throw new ArgumentOutOfRangeException(nameof(options), options.NumMemories, "MoM NumMemories must be at least 1 (fla uses 8).");
        if (options.TopK < 1 || options.TopK > options.NumMemories)
            throw new ArgumentOutOfRangeException(nameof(options), options.TopK, $"MoM TopK must lie in 1..NumMemories = {options.NumMemories} (fla uses 2 of 8).");
        MixerChecks.ChunkSize(options.ChunkSize, "MoM");
        _options = options;
        int c = config.ModelDim, h = config.NumHeads, m = options.NumMemories;
        (_keyDim, _valueDim) = DeltaMixing.Dims(config, options.ExpandK, options.ExpandK * options.ExpandV, "MoM", "ExpandK·ExpandV");
        gate = nn.Linear(c, m, hasBias: false);
        q_proj = nn.Linear(c, _keyDim, hasBias: false);
        k_proj = nn.Linear(c, m * _keyDim, hasBias: false);
        v_proj = nn.Linear(c, m * _valueDim, hasBias: false);
        b_proj = nn.Linear(c, m * h, hasBias: false);
        a_proj = nn.Linear(c, m * h, hasBias: false);
        var (aLog, dt) = DeltaMixing.Mamba2Init(h);
        A_log = new Parameter(aLog);
        dt_bias = new Parameter(dt);
        var linears = new List<Linear> { gate, (Linear)q_proj, k_proj, v_proj, b_proj, a_proj };
        if (!config.Causal)
        {
            b_proj_rev = nn.Linear(c, m * h, hasBias: false);
            a_proj_rev = nn.Linear(c, m * h, hasBias: false);
            var (aLogRev, dtRev) = DeltaMixing.Mamba2Init(h);
            A_log_rev = new Parameter(aLogRev);
            dt_bias_rev = new Parameter(dtRev);
            linears.AddRange(new[] { b_proj_rev, a_proj_rev });
        }
        if (options.UseShortConv)
        {
            q_conv1d = new ShortConvolution(_keyDim, options.ConvSize, config.Causal, options.ConvBias);
            k_conv1d = new ShortConvolution(_keyDim, options.ConvSize, config.Causal, options.ConvBias);
            v_conv1d = new ShortConvolution(_valueDim, options.ConvSize, config.Causal, options.ConvBias);
        }
        if (options.UseOutputGate)
        {
            g_proj = nn.Linear(c, _valueDim, hasBias: false);
            o_norm_gated = new GatedRmsNorm(_valueDim / h, options.NormEps);
            linears.Add(g_proj);
        }
        else
        {
            o_norm = new RmsNorm(_valueDim / h, options.NormEps);
        }
        o_proj = nn.Linear(_valueDim, c, hasBias: false);
        linears.Add((Linear)o_proj);
        using (torch.no_grad())
            foreach (var linear in linears)
            {
                // The fused k/v/b/a projections are initialised per memory block, like fla's separate Linears.
                long blocks = linear == k_proj || linear == v_proj || linear == b_proj || linear == a_proj || linear == b_proj_rev || linear == a_proj_rev ? m : 1;
                foreach (var block in linear.weight!.chunk(blocks, 0))
                    nn.init.xavier_uniform_(block, gain: Math.Pow(2, -2.5));
            }
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        int h = Config.NumHeads, m = _options.NumMemories;
        long b = x.shape[0], t = x.shape[1];
        x = Heads.ZeroPadded(x, keyPaddingMask);
        var weights = MomKernels.Route(gate.forward(x), _options.TopK, keyPaddingMask);             // [B, T, M]
        var q = DeltaRule.L2Normalize(Heads.Split(ShortConvolution.Project(q_proj, q_conv1d, x, null, siluWithoutConv: true), h));
        var k = DeltaRule.L2Normalize(PerMemory(k_proj, k_conv1d, x, _keyDim));
        var v = PerMemory(v_proj, v_conv1d, x, _valueDim);
        Tensor Beta(Linear proj) => torch.sigmoid(proj.forward(x)).view(b, t, m, h).permute(0, 2, 3, 1);
        Tensor Gate(Linear proj, Tensor aLog, Tensor dtBias) => DeltaRule.Mamba2Gate(proj.forward(x).view(b, t, m, h), aLog, dtBias).permute(0, 2, 3, 1);
        var o = Config.Causal
            ? MomKernels.Causal(q, k, v, Beta(b_proj), Gate(a_proj, A_log, dt_bias), weights, keyPaddingMask, chunk: _options.ChunkSize)
            : MomKernels.Bidirectional(q, k, v, Beta(b_proj), Gate(a_proj, A_log, dt_bias), Beta(b_proj_rev!), Gate(a_proj_rev!, A_log_rev!, dt_bias_rev!),
                weights, keyPaddingMask, chunk: _options.ChunkSize);
        o = o_norm_gated is not null
            ? o_norm_gated.forward(o, Heads.Split(g_proj!.forward(x), h))
            : o_norm!.forward(o);
        return Heads.ZeroPadded(o_proj.forward(Heads.Merge(o)), keyPaddingMask).MoveToOuterDisposeScope();
    }

    // [B, T, M·W] projection → per-memory short convolution (shared weights) → [B, M, H, T, W/H].
    private Tensor PerMemory(Linear proj, ShortConvolution? conv, Tensor x, int width)
    {
        int h = Config.NumHeads, m = _options.NumMemories;
        long b = x.shape[0], t = x.shape[1];
        var y = proj.forward(x).view(b, t, m, width).permute(0, 2, 1, 3).reshape(b * m, t, width);
        y = conv is not null ? conv.forward(y, null) : nn.functional.silu(y);
        return y.view(b, m, t, h, width / h).permute(0, 1, 3, 2, 4);
    }
}
