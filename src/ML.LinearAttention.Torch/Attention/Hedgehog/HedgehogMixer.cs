using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

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
    /// <summary>On CUDA, run the bidirectional form as fused kernels when the tensor-core kernels take the inputs
    /// (bf16/fp16, head dims multiples of 16): <see cref="FusedHedgehogAttention"/> (φ computed inside the attention
    /// kernels) for F up to 64, else the projection kernels and <see cref="FusedLinearAttention"/> on the mapped q, k
    /// (identity map; same result); the causal form through the fused causal kernels. On an H200 they beat the
    /// TorchSharp ops, while the CUDA-core kernels were slower for Hedgehog's 2·D-wide features
    /// (docs/benchmarks/kernels.md). Off = always the TorchSharp ops.</summary>
    public bool UseFusedKernel { get; init; } = true;
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
    private readonly bool _fused;

    public HedgehogMixer(MixerConfig config, HedgehogOptions options) : base(nameof(HedgehogMixer), config)
    {
        int f = options.FeatureDim == 0 ? config.HeadDim : options.FeatureDim;
        q_map = new HedgehogFeatureMap(config.NumHeads, config.HeadDim, f);
        if (!options.TieQueryKeyMaps) k_map = new HedgehogFeatureMap(config.NumHeads, config.HeadDim, f);
        _chunk = options.ChunkSize;
        _fused = options.UseFusedKernel;
        RegisterComponents();
    }

    /// <summary>The query feature map (trainable).</summary>
    public HedgehogFeatureMap QueryMap => q_map;
    /// <summary>The key feature map (the query map when tied).</summary>
    public HedgehogFeatureMap KeyMap => k_map ?? q_map;

    protected override Tensor MixHeads(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
    {
        // Bidirectional on CUDA: φ computed inside the tensor-core attention kernels where they apply (never stored).
        if (!Config.Causal && _fused && q.device.type == DeviceType.CUDA
            && FusedHedgehogAttention.UnavailableReason(q, k, v, q_map.Weight, KeyMap.Weight, keyPaddingMask) is null)
            return FusedHedgehogAttention.Bidirectional(q, k, v, q_map.Weight, KeyMap.Weight, keyPaddingMask);
        var fq = q_map.forward(q);
        var fk = KeyMap.forward(k);
        if (Config.Causal)
            return _fused && FusedLinearAttention.ShouldUseCausal(fq, v)
                ? FusedLinearAttention.Causal(fq, fk, v, keyPaddingMask, FusedFeatureMap.Identity)
                : LinearAttentionKernels.Causal(fq, fk, v, keyPaddingMask, normalize: true, chunk: _chunk);
        return _fused && FusedLinearAttention.ShouldUse(fq, v) && FusedLinearAttention.TensorCoresApply(fq, v)
            ? FusedLinearAttention.Bidirectional(fq, fk, v, keyPaddingMask, FusedFeatureMap.Identity)
            : LinearAttentionKernels.Bidirectional(fq, fk, v, keyPaddingMask, normalize: true);
    }
}
