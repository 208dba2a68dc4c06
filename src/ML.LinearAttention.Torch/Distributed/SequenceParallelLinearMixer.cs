using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.PlainLinear;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Distributed;

/// <summary>
/// Bidirectional linear attention with a parameter-free feature map ("relu" or "elu"), sequence parallel over
/// <see cref="Collectives"/>: the input x [B, T_r, C] is this rank's slice of every sequence and the attention reads the
/// whole sequence through one state collective per layer (<see cref="SequenceParallel.Bidirectional"/>). Its weights
/// have the names and shapes of a <see cref="LinearMixer"/> with the same options, so a state dictionary moves
/// between the two. With <see cref="Collectives"/> null it is the unsplit layer (the reference of the checks).
/// </summary>
public sealed class SequenceParallelLinearMixer : ProjectedMixer
{
    private readonly string _featureMap;
    private readonly bool _normalize;
    private readonly RmsNorm? out_norm;

    public SequenceParallelLinearMixer(MixerConfig config, LinearMixerOptions options, ICollectives? collectives)
        : base(nameof(SequenceParallelLinearMixer), config)
    {
        if (config.Causal)
            throw new NotSupportedException("Sequence parallelism is implemented for bidirectional (encoder) linear attention; causal layers would read the prefix of the gathered states (not built).");
        _featureMap = options.FeatureMap.ToLowerInvariant();
        if (_featureMap is not ("relu" or "elu"))
            throw new NotSupportedException($"The sequence-parallel linear layer supports the parameter-free 'relu' and 'elu' feature maps, not '{options.FeatureMap}'.");
        _normalize = options.Normalize;
        if (options.OutputNorm) out_norm = new RmsNorm(config.HeadDim);
        Collectives = collectives;
        RegisterComponents();
    }

    /// <summary>The sequence-parallel group (null = unsplit, the whole sequence on this rank).</summary>
    public ICollectives? Collectives { get; set; }

    protected override Tensor MixHeads(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
    {
        var fq = FeatureMaps.Apply(_featureMap, q);
        var fk = FeatureMaps.Apply(_featureMap, k);
        var o = Collectives is null
            ? LinearAttentionKernels.Bidirectional(fq, fk, v, keyPaddingMask, _normalize)
            : SequenceParallel.Bidirectional(fq, fk, v, keyPaddingMask, Collectives, _normalize);
        return out_norm is null ? o : out_norm.forward(o);
    }
}
