using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Lolcats;

/// <summary>Options of LoLCATs window attention (defaults from <c>distill_llama3_8b_lk_smd_wtk64_fd64_w01.yaml</c>).</summary>
public sealed record LolcatsOptions : MixerOptions
{
    /// <summary>Window W of the softmax part: 64 (<c>window_size: 64</c>). Bidirectional: |i−j| ≤ W; causal: the last W keys.</summary>
    public int Window { get; init; } = LolcatsKernels.DefaultWindow;
    /// <summary>Hedgehog feature dimension F per half (φ has 2F dims): 64 (<c>feature_dim: 64</c>); 0 = the head dimension.</summary>
    public int FeatureDim { get; init; } = 64;
    /// <summary>One feature map for queries and keys (<c>tie_qk_kernels: false</c>).</summary>
    public bool TieQueryKeyMaps { get; init; }
    /// <summary>Initial per-head window-factor logit: −2.197 = logit(0.1), so the window softmax starts at weight 0.1
    /// (<c>init_window_factor</c>).</summary>
    public double InitWindowFactor { get; init; } = -2.197;
    /// <summary>Weight the linear terms by 1 − γ instead of 1 (<c>affine_attention_factors: false</c>).</summary>
    public bool AffineFactors { get; init; }
    /// <summary>The reference's terraced block windows (own block + previous, bidirectional also next) instead of a
    /// sliding band. Off by default: the band is what <c>swa</c>/<c>softmax</c> windows mean in this library.</summary>
    public bool Terraced { get; init; }
}

/// <summary>
/// LoLCATs window attention: sliding-window softmax plus Hedgehog linear attention outside the window, one normalizer
/// (<see cref="LolcatsKernels"/>). Trainable beyond q/k/v/o: the Hedgehog maps and a per-head window factor — what
/// LoLCATs' attention transfer trains while q/k/v/o stay frozen.
/// </summary>
public sealed class LolcatsMixer : ProjectedMixer
{
    private readonly HedgehogFeatureMap q_map;
    private readonly HedgehogFeatureMap? k_map;
    private readonly Parameter window_factors;
    private readonly LolcatsOptions _options;

    public LolcatsMixer(MixerConfig config, LolcatsOptions options) : base(nameof(LolcatsMixer), config)
    {
        if (options.Window <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.Window, "LoLCATs Window must be positive (LoLCATs uses 64).");
        if (options.FeatureDim < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.FeatureDim, "LoLCATs FeatureDim must be 0 (the head dimension) or positive (LoLCATs uses 64).");
        if (double.IsNaN(options.InitWindowFactor) || double.IsInfinity(options.InitWindowFactor))
            throw new ArgumentOutOfRangeException(nameof(options), options.InitWindowFactor, "InitWindowFactor is a logit and must be finite (LoLCATs: −2.197 = logit(0.1)).");
        _options = options;
        int f = options.FeatureDim == 0 ? config.HeadDim : options.FeatureDim;
        q_map = new HedgehogFeatureMap(config.NumHeads, config.HeadDim, f);
        if (!options.TieQueryKeyMaps) k_map = new HedgehogFeatureMap(config.NumHeads, config.HeadDim, f);
        window_factors = new Parameter(torch.full(config.NumHeads, options.InitWindowFactor));
        RegisterComponents();
    }

    /// <summary>The query feature map (trainable).</summary>
    public HedgehogFeatureMap QueryMap => q_map;
    /// <summary>The key feature map (the query map when tied).</summary>
    public HedgehogFeatureMap KeyMap => k_map ?? q_map;
    /// <summary>Per-head window-factor logits [H]; γ = sigmoid(logits).</summary>
    public Parameter WindowFactors => window_factors;

    protected override Tensor MixHeads(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        var gamma = window_factors.sigmoid();
        var lambda = _options.AffineFactors ? 1 - gamma : null;
        var o = LolcatsKernels.Attention(q, k, q_map.forward(q), KeyMap.forward(k), v, gamma, lambda, keyPaddingMask,
            _options.Window, Config.Causal, _options.Terraced);
        return o.MoveToOuterDisposeScope();
    }
}
