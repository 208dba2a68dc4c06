using Microsoft.ML.LinearAttention.Attention.LinearKernel;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Hedgehog;

/// <summary>Options of Hedgehog attention.</summary>
public sealed record HedgehogOptions : MixerOptions
{
    /// <summary>Feature dimension F per half (φ has 2F dims); 0 = the head dimension (fla's identity-initialised map).
    /// LoLCATs uses 64.</summary>
    public int FeatureDim { get; init; }
    /// <summary>One map shared by queries and keys (LoLCATs: untied, false).</summary>
    public bool TieQueryKeyMaps { get; init; }
    /// <summary>Chunk length of the causal chunkwise kernel.</summary>
    public int ChunkSize { get; init; } = LinearAttentionKernels.DefaultChunk;
}

/// <summary>
/// Hedgehog linear attention: learnable softmax-mimicking feature maps on q and k, the normalized linear kernel.
/// The feature maps are what softmax→linear conversion trains (attention transfer).
/// </summary>
public sealed class HedgehogMixer : ProjectedMixer
{
    private readonly HedgehogFeatureMap q_map;
    private readonly HedgehogFeatureMap? k_map;
    private readonly int _chunk;

    public HedgehogMixer(MixerConfig config, HedgehogOptions options) : base(nameof(HedgehogMixer), config)
    {
        int f = options.FeatureDim == 0 ? config.HeadDim : options.FeatureDim;
        q_map = new HedgehogFeatureMap(config.NumHeads, config.HeadDim, f);
        if (!options.TieQueryKeyMaps) k_map = new HedgehogFeatureMap(config.NumHeads, config.HeadDim, f);
        _chunk = options.ChunkSize;
        RegisterComponents();
    }

    /// <summary>The query feature map (trainable).</summary>
    public HedgehogFeatureMap QueryMap => q_map;
    /// <summary>The key feature map (the query map when tied).</summary>
    public HedgehogFeatureMap KeyMap => k_map ?? q_map;

    protected override Tensor MixHeads(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
    {
        var fq = q_map.forward(q);
        var fk = KeyMap.forward(k);
        return Config.Causal
            ? LinearAttentionKernels.Causal(fq, fk, v, keyPaddingMask, normalize: true, chunk: _chunk)
            : LinearAttentionKernels.Bidirectional(fq, fk, v, keyPaddingMask, normalize: true);
    }
}
