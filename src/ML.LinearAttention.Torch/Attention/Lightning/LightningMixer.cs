using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Runtime;

namespace Microsoft.ML.LinearAttention.Attention.Lightning;

/// <summary>Options of TransNormerLLM (Lightning) attention; defaults are <c>TnlAttention</c>'s
/// (<c>OpenNLPLab/lightning-attention:examples/module/tnl_attn.py</c>).</summary>
public sealed record LightningOptions : MixerOptions
{
    /// <summary>Bias in the q/k/v/o projections and the output gate (reference: false).</summary>
    public bool Bias { get; init; }
    /// <summary>Chunk length of the chunkwise kernel (Lightning Attention-2's block).</summary>
    public int ChunkSize { get; init; } = Decay.DecayKernels.DefaultChunk;
}

/// <summary>
/// TransNormerLLM attention as <c>TnlAttention</c>: q, k, v = SiLU(projections); Lightning decayed linear attention with
/// ALiBi slopes scaled by depth, s_h · (1 − LayerIndex/(NumLayers − 1) + 1e-5) (from <see cref="MixerConfig"/>); LayerNorm
/// over the merged heads; a sigmoid output gate through a low-rank Linear(C → head dim) → Linear(head dim → C);
/// output projection. Bidirectional: the symmetric mask exp(−s_h |t − s|) (see <see cref="LightningKernels"/>).
/// </summary>
public sealed class LightningMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> q_proj;
    private readonly nn.Module<Tensor, Tensor> k_proj;
    private readonly nn.Module<Tensor, Tensor> v_proj;
    private readonly nn.Module<Tensor, Tensor> o_proj;
    private readonly LayerNorm norm;
    private readonly Sequential output_gate;
    private readonly float[] _slopes;
    private readonly string _slopesKey;
    private readonly int _chunk;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "q_proj", "k_proj", "v_proj", "o_proj" };

    public LightningMixer(MixerConfig config, LightningOptions options) : base(nameof(LightningMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        MixerChecks.ChunkSize(options.ChunkSize, "Lightning Attention");
        int c = config.ModelDim, d = config.HeadDim;
        q_proj = nn.Linear(c, c, hasBias: options.Bias);
        k_proj = nn.Linear(c, c, hasBias: options.Bias);
        v_proj = nn.Linear(c, c, hasBias: options.Bias);
        o_proj = nn.Linear(c, c, hasBias: options.Bias);
        norm = nn.LayerNorm(c);
        output_gate = nn.Sequential(("0", nn.Linear(c, d, hasBias: options.Bias)), ("1", nn.Linear(d, c, hasBias: options.Bias)));
        _slopes = LightningKernels.LayerSlopes(config.NumHeads, config.LayerIndex, config.NumLayers).Select(s => (float)s).ToArray();
        _slopesKey = DeviceConstants.KeyOf("lightning slopes", _slopes);
        _chunk = options.ChunkSize;
        RegisterComponents();
    }

    /// <summary>The per-head slopes this layer uses (after the depth schedule).</summary>
    public IReadOnlyList<float> SlopeRates => _slopes;

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        var q = Heads.Split(nn.functional.silu(q_proj.forward(x)), h);
        var k = Heads.Split(nn.functional.silu(k_proj.forward(x)), h);
        var v = Heads.Split(nn.functional.silu(v_proj.forward(x)), h);
        var slopes = DeviceConstants.Get(_slopesKey, x.device, () => _slopes);   // not copied from .NET memory per call: that syncs
        var o = Config.Causal
            ? LightningKernels.Causal(q, k, v, slopes, keyPaddingMask, chunk: _chunk)
            : LightningKernels.Bidirectional(q, k, v, slopes, keyPaddingMask, chunk: _chunk);
        var y = norm.forward(Heads.Merge(o)) * torch.sigmoid(output_gate.forward(x));
        return Heads.ZeroPadded(o_proj.forward(y), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
