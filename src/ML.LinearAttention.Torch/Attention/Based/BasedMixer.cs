using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Based;

/// <summary>Options of Taylor linear attention (BASED's linear layer, fla <c>BasedLinearAttention</c>).</summary>
public sealed record TaylorOptions : MixerOptions
{
    /// <summary>Per-head dimension F that queries and keys are projected to before the Taylor map (BASED and fla:
    /// 16, giving 153 features). 0 = the head dimension with no reduction: φ then has 1 + D + D(D+1)/2 dims
    /// (2145 for D = 64), so cost and state grow quadratically in D.</summary>
    public int FeatureDim { get; init; } = 16;
    /// <summary>Chunk length of the causal chunkwise kernel.</summary>
    public int ChunkSize { get; init; } = LinearAttentionKernels.DefaultChunk;
}

/// <summary>Options of the BASED layer: Taylor linear attention plus sliding-window softmax in one layer.</summary>
public sealed record BasedOptions : MixerOptions
{
    /// <summary>Per-head Taylor feature dimension F (see <see cref="TaylorOptions.FeatureDim"/>); BASED: 16.</summary>
    public int FeatureDim { get; init; } = 16;
    /// <summary>Sliding window of the softmax branch (bidirectional: |i−j| ≤ Window; causal: the last Window keys).
    /// BASED's published 360M config uses 256 (<c>based-360m.yaml</c>; the paper's "tiny" windows go down to 64).
    /// 0 = no softmax branch (the same as "taylor").</summary>
    public int Window { get; init; } = 256;
    /// <summary>Chunk length of the causal chunkwise linear kernel.</summary>
    public int ChunkSize { get; init; } = LinearAttentionKernels.DefaultChunk;
}

/// <summary>
/// BASED token mixer. Queries and keys of the linear branch are projected to F dims per head (C → H·F, no bias, as in
/// BASED) and expanded by the <see cref="TaylorFeatureMap"/>; values and the output projection are C → C.
/// With a window, a softmax branch with its own full-width q/k projections runs sliding-window attention over the same
/// values, and the two branch outputs are summed before the output projection.
/// <para>Reference: BASED interleaves these as separate layers (per 5 layers: 3 BaseConv, 1 Taylor linear, 1 SWA(256));
/// that layout is available through "taylor" and "swa" layers in a <c>HybridPlan</c>. This mixer is the in-layer
/// form: the parallel sum of the two branches.</para>
/// </summary>
public sealed class BasedMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> q_proj;
    private readonly nn.Module<Tensor, Tensor> k_proj;
    private readonly nn.Module<Tensor, Tensor> v_proj;
    private readonly nn.Module<Tensor, Tensor> o_proj;
    private readonly nn.Module<Tensor, Tensor>? swa_q_proj;
    private readonly nn.Module<Tensor, Tensor>? swa_k_proj;
    private readonly int _featureDim;
    private readonly int _window;
    private readonly int _chunk;

    /// <summary>Taylor linear attention alone ("taylor").</summary>

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets
        => new (nn.Module<Tensor, Tensor>? Layer, string Name)[] { (q_proj, "q_proj"), (k_proj, "k_proj"), (v_proj, "v_proj"), (o_proj, "o_proj"), (swa_q_proj, "swa_q_proj"), (swa_k_proj, "swa_k_proj") }.Where(p => p.Layer is not null).Select(p => p.Name).ToArray();
    public BasedMixer(MixerConfig config, TaylorOptions options)
        : this(config, new BasedOptions { FeatureDim = options.FeatureDim, Window = 0, ChunkSize = options.ChunkSize }, nameof(BasedMixer))
    {
    }

    /// <summary>The BASED layer ("based").</summary>
    public BasedMixer(MixerConfig config, BasedOptions options) : this(config, options, nameof(BasedMixer))
    {
    }

    private BasedMixer(MixerConfig config, BasedOptions options, string name) : base(name, config)
    {
        if (options.FeatureDim < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.FeatureDim, "FeatureDim must be 0 (the head dimension) or positive; BASED uses 16.");
        if (options.Window < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.Window, "Window must be 0 (no softmax branch) or positive; BASED uses 256.");
        MixerChecks.ChunkSize(options.ChunkSize, "Based");
        int c = config.ModelDim, h = config.NumHeads;
        _featureDim = options.FeatureDim == 0 ? config.HeadDim : options.FeatureDim;
        _window = options.Window;
        _chunk = options.ChunkSize;
        q_proj = nn.Linear(c, h * _featureDim, hasBias: false);
        k_proj = nn.Linear(c, h * _featureDim, hasBias: false);
        v_proj = nn.Linear(c, c, hasBias: false);
        o_proj = nn.Linear(c, c, hasBias: false);
        if (_window > 0)
        {
            swa_q_proj = nn.Linear(c, c, hasBias: false);
            swa_k_proj = nn.Linear(c, c, hasBias: false);
        }
        RegisterComponents();
    }

    /// <summary>Per-head Taylor input dimension F in use.</summary>
    public int FeatureDim => _featureDim;

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        var qf = Heads.Split(q_proj.forward(x), h);
        var kf = Heads.Split(k_proj.forward(x), h);
        var v = Heads.Split(v_proj.forward(x), h);
        Tensor o;
        if (swa_q_proj is null || swa_k_proj is null)
        {
            o = BasedKernels.Linear(qf, kf, v, keyPaddingMask, Config.Causal, _chunk);
        }
        else
        {
            var q = Heads.Split(swa_q_proj.forward(x), h);
            var k = Heads.Split(swa_k_proj.forward(x), h);
            o = BasedKernels.Attention(qf, kf, q, k, v, keyPaddingMask, _window, Config.Causal, _chunk);
        }
        return Heads.ZeroPadded(o_proj.forward(Heads.Merge(o)), keyPaddingMask).MoveToOuterDisposeScope();
    }
}
