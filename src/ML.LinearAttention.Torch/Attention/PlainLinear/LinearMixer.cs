using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

namespace Microsoft.ML.LinearAttention.Attention.PlainLinear;

/// <summary>Options of plain linear attention (fla's <c>LinearAttention</c> layer).</summary>
public sealed record LinearMixerOptions : MixerOptions
{
    /// <summary>
    /// Feature map (<see cref="LearnableFeatureMap.Names"/>): "elu" (elu+1, Katharopoulos et al.; our default),
    /// "relu", "identity", "dpfp" (parameter-free, 2·D·<see cref="DpfpNu"/> features), "t2r" (relu(Linear(x)), learned)
    /// or "elementwise_product" (Linear1(x)·Linear2(x), learned; fla's default, which fla runs without the
    /// denominator). "identity" and "elementwise_product" can be negative and need <see cref="Normalize"/> = false.
    /// </summary>
    public string FeatureMap { get; init; } = "elu";
    /// <summary>Divide by φ(q)·Σφ(k) (the normalized form). Off = TransNormer-style, stabilised by the output norm.</summary>
    public bool Normalize { get; init; } = true;
    /// <summary>Per-head RMSNorm on the output before the output projection (fla's default <c>output_norm='rmsnorm'</c>).</summary>
    public bool OutputNorm { get; init; } = true;
    /// <summary>Chunk length of the causal chunkwise kernel.</summary>
    public int ChunkSize { get; init; } = LinearAttentionKernels.DefaultChunk;
    /// <summary>Output size F of the learned maps ("t2r", "elementwise_product"); 0 = the head dimension (fla).</summary>
    public int FeatureDim { get; init; }
    /// <summary>One learned map shared by queries and keys (fla's <c>tie_feature_map_qk</c>, default false).</summary>
    public bool TieFeatureMaps { get; init; }
    /// <summary>ν of the "dpfp" map (fla: 4).</summary>
    public int DpfpNu { get; init; } = 4;
    /// <summary>
    /// On CUDA, run the bidirectional normalized form with the "relu" or "elu" map as fused kernels
    /// (<see cref="FusedLinearAttention"/>; same result, fewer passes). Off = always the TorchSharp ops.
    /// </summary>
    public bool UseFusedKernel { get; init; } = true;
}

/// <summary>Linear attention with a fixed or small learned feature map: bidirectional O(T) state, or causal chunkwise.</summary>
public sealed class LinearMixer : ProjectedMixer
{
    private readonly LinearMixerOptions _options;
    private readonly LearnableFeatureMap q_map;
    private readonly LearnableFeatureMap? k_map;
    private readonly RmsNorm? out_norm;
    private readonly FusedFeatureMap? _fusedMap;

    public LinearMixer(MixerConfig config, LinearMixerOptions options) : base(nameof(LinearMixer), config)
    {
        var name = LearnableFeatureMap.Normalize(options.FeatureMap); // validates the name early
        if (options.Normalize && !LearnableFeatureMap.IsNonNegative(name))
            throw new ArgumentException($"The '{name}' feature map can be negative, so the normalized form may divide by zero; set Normalize = false (with OutputNorm) or use 'elu', 'relu', 'dpfp' or 't2r'.");
        MixerChecks.ChunkSize(options.ChunkSize, "Linear attention");
        _options = options;
        _fusedMap = name is "relu" or "elu" ? FusedLinearAttention.ParseFeatureMap(name) : null;
        q_map = new LearnableFeatureMap(name, config.HeadDim, options.FeatureDim, options.DpfpNu);
        bool learned = name is "t2r" or "elementwise_product";
        if (learned && !options.TieFeatureMaps) k_map = new LearnableFeatureMap(name, config.HeadDim, options.FeatureDim, options.DpfpNu);
        if (options.OutputNorm) out_norm = new RmsNorm(config.HeadDim);
        RegisterComponents();
    }

    /// <summary>The query feature map (holds the weights of a learned map).</summary>
    public LearnableFeatureMap QueryMap => q_map;
    /// <summary>The key feature map (the query map when tied or parameter-free).</summary>
    public LearnableFeatureMap KeyMap => k_map ?? q_map;

    protected override Tensor MixHeads(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
    {
        if (!Config.Causal && _options.Normalize && _options.UseFusedKernel && _fusedMap is { } map && FusedLinearAttention.ShouldUse(q, v))
        {
            var fused = FusedLinearAttention.Bidirectional(q, k, v, keyPaddingMask, map);
            return out_norm is null ? fused : out_norm.forward(fused);
        }
        // Causal fused kernels: only when switched on (FusedKernelOptions.Current.CausalEnabled) and the tensor cores apply.
        if (Config.Causal && _options.Normalize && _options.UseFusedKernel && _fusedMap is { } cmap && FusedLinearAttention.ShouldUseCausal(q, v))
        {
            var fused = FusedLinearAttention.Causal(q, k, v, keyPaddingMask, cmap);
            return out_norm is null ? fused : out_norm.forward(fused);
        }
        var fq = q_map.forward(q);
        var fk = KeyMap.forward(k);
        var o = Config.Causal
            ? LinearAttentionKernels.Causal(fq, fk, v, keyPaddingMask, _options.Normalize, chunk: _options.ChunkSize)
            : LinearAttentionKernels.Bidirectional(fq, fk, v, keyPaddingMask, _options.Normalize);
        return out_norm is null ? o : out_norm.forward(o);
    }
}
