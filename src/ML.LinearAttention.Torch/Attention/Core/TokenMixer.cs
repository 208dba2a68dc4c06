using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>
/// A token mixer: the attention sub-layer of an encoder block, chosen by name through <see cref="MixerRegistry"/>.
/// <para>Shapes: <c>x</c> is [B, T, C]; <c>keyPaddingMask</c> is [B, T] bool, true at real tokens (null = no padding).
/// The result is [B, T, C]; rows at padded positions are zero.</para>
/// </summary>
public abstract class TokenMixer : nn.Module<Tensor, Tensor?, Tensor>
{
    protected TokenMixer(string name, MixerConfig config) : base(name)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
    }

    /// <summary>Sizes and layout this mixer was built for.</summary>
    public MixerConfig Config { get; }

    /// <summary>
    /// Height × width of the token grid when tokens are image patches in row-major order (null for sequences).
    /// Mixers with 2D terms (depthwise-conv position terms, local windows) use it; the rest ignore it.
    /// </summary>
    public (int Height, int Width)? Grid { get; set; }

    /// <summary>
    /// Optional transform of queries and keys ([B, H, T, D] each) applied before the kernel, e.g. rotary positions set by
    /// the encoder. Only mixers that report <see cref="SupportsQueryKeyTransform"/> apply it.
    /// </summary>
    public Func<Tensor, Tensor>? QueryKeyTransform { get; set; }

    /// <summary>True when this mixer applies <see cref="QueryKeyTransform"/> (projected q/k mixers do).</summary>
    public virtual bool SupportsQueryKeyTransform => false;

    /// <summary>
    /// Names (relative to this mixer) of the linear projections LoRA adapts by default: the q/k/v/output projections or
    /// their fused forms, not gates. Each is held in a field typed <c>nn.Module&lt;Tensor, Tensor&gt;</c> so that a
    /// wrapper can take its place (TorchSharp's <c>Linear</c> is sealed). Empty for a mixer without projections.
    /// </summary>
    public virtual IReadOnlyList<string> LoraTargets => Array.Empty<string>();
}

/// <summary>Sizes of a mixer and where it sits in the encoder.</summary>
/// <param name="ModelDim">Hidden size C of the block.</param>
/// <param name="NumHeads">Number of heads H; C must be divisible by H.</param>
/// <param name="Causal">True for a causal (left-to-right) mixer; false for a bidirectional encoder mixer.</param>
/// <param name="LayerIndex">0-based index of the layer (some mechanisms vary with depth).</param>
/// <param name="NumLayers">Number of layers of the encoder.</param>
public sealed record MixerConfig(int ModelDim, int NumHeads, bool Causal = false, int LayerIndex = 0, int NumLayers = 1)
{
    /// <summary>Per-head dimension D = C / H.</summary>
    public int HeadDim => ModelDim / NumHeads;

    /// <summary>
    /// Biases on the q/k/v/o projections of <see cref="ProjectedMixer"/>s (BERT-family checkpoints have them);
    /// false by default. Mixers without those projections ignore it.
    /// </summary>
    public bool ProjectionBias { get; init; }

    internal void Validate()
    {
        if (ModelDim <= 0) throw new ArgumentOutOfRangeException(nameof(ModelDim), ModelDim, "The hidden size must be positive.");
        if (NumHeads <= 0) throw new ArgumentOutOfRangeException(nameof(NumHeads), NumHeads, "The number of heads must be positive.");
        if (ModelDim % NumHeads != 0)
            throw new ArgumentException($"The hidden size {ModelDim} is not divisible by the number of heads {NumHeads}; choose a head count that divides it.");
        if (NumLayers <= 0 || LayerIndex < 0 || LayerIndex >= NumLayers)
            throw new ArgumentOutOfRangeException(nameof(LayerIndex), LayerIndex, $"Layer index must lie in 0..{NumLayers - 1}.");
    }
}

/// <summary>
/// Base of every mechanism's options record. Each mechanism defines a sealed record with defaults from its paper or
/// reference code; records round-trip through JSON (<see cref="MixerRegistry.SerializeOptions"/>).
/// </summary>
public abstract record MixerOptions;

/// <summary>For mechanisms without options of their own.</summary>
public sealed record NoMixerOptions : MixerOptions;
