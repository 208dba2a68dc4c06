using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.LinearKernel;

/// <summary>Options of plain linear attention (fla's <c>LinearAttention</c> layer).</summary>
public sealed record LinearAttentionOptions : MixerOptions
{
    /// <summary>Feature map: "elu" (elu+1, Katharopoulos et al.), "relu" or "identity".</summary>
    public string FeatureMap { get; init; } = "elu";
    /// <summary>Divide by φ(q)·Σφ(k) (the normalized form). Off = TransNormer-style, stabilised by the output norm.</summary>
    public bool Normalize { get; init; } = true;
    /// <summary>Per-head RMSNorm on the output before the output projection (fla's default <c>output_norm='rmsnorm'</c>).</summary>
    public bool OutputNorm { get; init; } = true;
    /// <summary>Chunk length of the causal chunkwise kernel.</summary>
    public int ChunkSize { get; init; } = LinearAttentionKernels.DefaultChunk;
}

/// <summary>Linear attention with a fixed feature map: bidirectional O(T) state, or causal chunkwise.</summary>
public sealed class LinearMixer : ProjectedMixer
{
    private readonly LinearAttentionOptions _options;
    private readonly RmsNorm? out_norm;

    public LinearMixer(MixerConfig config, LinearAttentionOptions options) : base(nameof(LinearMixer), config)
    {
        _ = FeatureMaps.Apply(options.FeatureMap, torch.zeros(1)); // validates the name early
        if (options.FeatureMap == "identity" && options.Normalize)
            throw new ArgumentException("The identity feature map can be negative, so the normalized form may divide by zero; set Normalize = false (with OutputNorm) or use 'elu' or 'relu'.");
        if (options.ChunkSize <= 0) throw new ArgumentOutOfRangeException(nameof(options), options.ChunkSize, "ChunkSize must be positive.");
        _options = options;
        if (options.OutputNorm) out_norm = new RmsNorm(config.HeadDim);
        RegisterComponents();
    }

    protected override Tensor MixHeads(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
    {
        var fq = FeatureMaps.Apply(_options.FeatureMap, q);
        var fk = FeatureMaps.Apply(_options.FeatureMap, k);
        var o = Config.Causal
            ? LinearAttentionKernels.Causal(fq, fk, v, keyPaddingMask, _options.Normalize, chunk: _options.ChunkSize)
            : LinearAttentionKernels.Bidirectional(fq, fk, v, keyPaddingMask, _options.Normalize);
        return out_norm is null ? o : out_norm.forward(o);
    }
}
