using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.LinearAttention.Attention;

namespace Microsoft.ML.LinearAttention.Encoder;

/// <summary>How token positions reach the model.</summary>
public enum PositionEncoding
{
    /// <summary>Rotary positions on queries and keys (any length, no parameters); needs a mixer with q/k projections.</summary>
    Rope,
    /// <summary>A learned table of <see cref="EncoderConfig.MaxPositions"/> vectors added to the embeddings.</summary>
    Learned,
    /// <summary>No explicit positions (for mixers with decays or convolutions that already see order).</summary>
    None,
}

/// <summary>How the per-token states become one vector per row.</summary>
public enum Pooling
{
    /// <summary>Mean over the true (unpadded) tokens.</summary>
    Mean,
    /// <summary>The state of the first ([CLS]) token.</summary>
    Cls,
}

/// <summary>The mixer of one layer of a hybrid encoder.</summary>
/// <param name="Name">Registry name (see <see cref="MixerRegistry"/>).</param>
/// <param name="Options">Its options; null = the mechanism's defaults.</param>
public sealed record LayerMixer(string Name, MixerOptions? Options = null);

/// <summary>
/// Every size and choice of a <see cref="SequenceModel"/>; saved as JSON next to the weights so a model rebuilds
/// itself exactly. Built by the estimators from their options and the training data.
/// </summary>
public sealed record EncoderConfig
{
    /// <summary>Rows of the token embedding table (0 for numeric-sequence input).</summary>
    public int VocabularySize { get; init; }
    /// <summary>Padding token id (token input only).</summary>
    public int PadId { get; init; }
    /// <summary>Features per step F of numeric-sequence input (0 for token input).</summary>
    public int NumericFeatures { get; init; }
    /// <summary>Number of segments (text columns); segment embeddings are used when above 1.</summary>
    public int NumSegments { get; init; } = 1;
    /// <summary>Hidden size C.</summary>
    public int ModelDim { get; init; } = 128;
    /// <summary>Number of encoder blocks.</summary>
    public int NumLayers { get; init; } = 2;
    /// <summary>Attention heads per block.</summary>
    public int NumHeads { get; init; } = 4;
    /// <summary>FFN hidden size as a multiple of C.</summary>
    public double FfnMultiplier { get; init; } = 4;
    /// <summary>Dropout on the residual branches and the head.</summary>
    public double Dropout { get; init; } = 0.1;
    /// <summary>Position scheme.</summary>
    public PositionEncoding Position { get; init; } = PositionEncoding.Rope;
    /// <summary>Size of the learned position table (Learned only).</summary>
    public int MaxPositions { get; init; } = 4096;
    /// <summary>Rotary base θ (Rope only).</summary>
    public double RopeTheta { get; init; } = 10000;
    /// <summary>Pooling of token states.</summary>
    public Pooling Pooling { get; init; } = Pooling.Mean;
    /// <summary>Registry name of the mixer of every layer (unless <see cref="Layers"/> is given).</summary>
    public string Mixer { get; init; } = "linear";
    /// <summary>Options of <see cref="Mixer"/> as registry JSON (null = defaults).</summary>
    public string? MixerOptionsJson { get; init; }
    /// <summary>Per-layer plan of a hybrid encoder: (name, options JSON) for each layer, or null.</summary>
    public List<LayerSpec>? Layers { get; init; }
    /// <summary>Length of the numeric side-feature vector fused into the head (0 = none).</summary>
    public int SideFeatures { get; init; }
    /// <summary>Outputs of the head: classes for classification, 1 for regression.</summary>
    public int Outputs { get; init; } = 2;
    /// <summary>
    /// Records that code wrapping the model from outside keeps with its configuration, by name (the fine-tuning
    /// catalog keeps "FineTuning" here, so a saved model rebuilds the same adapters). The encoder saves and loads them
    /// but never reads them; in the JSON they sit at the top level beside the encoder's own fields.
    /// </summary>
    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Extensions { get; init; }

    // ---- BERT-compatible layout (Architecture = BertPostNorm; see docs/pretrained-and-conversion.md) ----
    /// <summary>Block layout: the library's pre-norm encoder (default) or BERT's post-norm one (pretrained checkpoints).</summary>
    public EncoderArchitecture Architecture { get; init; } = EncoderArchitecture.PreNorm;
    /// <summary>Exact FFN hidden size (BERT's intermediate_size); 0 = ModelDim × <see cref="FfnMultiplier"/>.</summary>
    public int FfnHiddenSize { get; init; }
    /// <summary>BertPostNorm: LayerNorm epsilon (BERT: 1e-12).</summary>
    public double LayerNormEpsilon { get; init; } = 1e-12;
    /// <summary>BertPostNorm: FFN activation, one of <see cref="PostNormBlock.Activations"/> (BERT: "gelu", the erf form).</summary>
    public string Activation { get; init; } = "gelu";
    /// <summary>BertPostNorm: rows of the token-type table (BERT: 2). Segments beyond the last row share it.</summary>
    public int TokenTypes { get; init; } = 2;

    /// <summary>The FFN hidden size actually built.</summary>
    public int FfnHidden => FfnHiddenSize > 0 ? FfnHiddenSize : Math.Max(1, (int)Math.Round(ModelDim * FfnMultiplier));

    /// <summary>One layer's mixer, serialized.</summary>
    public sealed record LayerSpec(string Name, string? OptionsJson);

    /// <summary>The (name, options) of layer <paramref name="layer"/>.</summary>
    public (string Name, MixerOptions Options) MixerFor(int layer)
    {
        if (Layers is { Count: > 0 })
        {
            var spec = Layers[layer];
            return (spec.Name, spec.OptionsJson is null ? MixerRegistry.DefaultOptions(spec.Name) : MixerRegistry.DeserializeOptions(spec.Name, spec.OptionsJson));
        }
        return (Mixer, MixerOptionsJson is null ? MixerRegistry.DefaultOptions(Mixer) : MixerRegistry.DeserializeOptions(Mixer, MixerOptionsJson));
    }

    /// <summary>Serializes a plan given as a list of layer mixers.</summary>
    public static List<LayerSpec>? Plan(IReadOnlyList<LayerMixer>? layers)
        => layers?.Select(l => new LayerSpec(l.Name, l.Options is null ? null : MixerRegistry.SerializeOptions(l.Options))).ToList();

    /// <summary>Serializes a plan given as a function of the layer index.</summary>
    public static List<LayerSpec> Plan(Func<int, LayerMixer> perLayer, int numLayers)
        => Plan(Enumerable.Range(0, numLayers).Select(perLayer).ToList())!;

    /// <summary>Throws a clear error for any inconsistent setting.</summary>
    public void Validate()
    {
        if (ModelDim <= 0) throw new ArgumentOutOfRangeException(nameof(ModelDim), ModelDim, "ModelDim must be positive.");
        if (NumHeads <= 0 || ModelDim % NumHeads != 0)
            throw new ArgumentException($"ModelDim {ModelDim} must be a positive multiple of NumHeads {NumHeads}.");
        if (Position == PositionEncoding.Rope && (ModelDim / NumHeads) % 2 != 0)
            throw new ArgumentException($"Rotary positions need an even head size; ModelDim / NumHeads = {ModelDim / NumHeads}. Change NumHeads or ModelDim, or use Position = Learned.");
        if (NumLayers <= 0) throw new ArgumentOutOfRangeException(nameof(NumLayers), NumLayers, "NumLayers must be at least 1.");
        if (FfnMultiplier <= 0) throw new ArgumentOutOfRangeException(nameof(FfnMultiplier), FfnMultiplier, "FfnMultiplier must be positive.");
        if (Dropout is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "Dropout must lie in [0, 1).");
        if ((VocabularySize > 0) == (NumericFeatures > 0))
            throw new ArgumentException("Exactly one input kind is needed: tokens (VocabularySize > 0) or a numeric sequence (NumericFeatures > 0).");
        if (Outputs <= 0) throw new ArgumentOutOfRangeException(nameof(Outputs), Outputs, "The head needs at least one output.");
        if (Position == PositionEncoding.Learned && MaxPositions <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxPositions), MaxPositions, "Learned positions need MaxPositions > 0.");
        if (Layers is { Count: > 0 } && Layers.Count != NumLayers)
            throw new ArgumentException($"The per-layer mixer plan lists {Layers.Count} layers but NumLayers is {NumLayers}.");
        foreach (var name in (Layers is { Count: > 0 } ? Layers.Select(l => l.Name) : new[] { Mixer }))
            MixerRegistry.Get(name);
        if (FfnHiddenSize < 0) throw new ArgumentOutOfRangeException(nameof(FfnHiddenSize), FfnHiddenSize, "FfnHiddenSize must be 0 (from FfnMultiplier) or positive.");
        if (Architecture == EncoderArchitecture.BertPostNorm)
        {
            if (VocabularySize <= 0)
                throw new ArgumentException("Architecture BertPostNorm reads tokens (a BERT vocabulary); numeric-sequence input needs Architecture PreNorm.");
            if (Position != PositionEncoding.Learned)
                throw new ArgumentException($"Architecture BertPostNorm has learned absolute positions; set Position = Learned (got {Position}).");
            if (TokenTypes <= 0) throw new ArgumentOutOfRangeException(nameof(TokenTypes), TokenTypes, "BertPostNorm needs at least one token type.");
            if (!(LayerNormEpsilon > 0)) throw new ArgumentOutOfRangeException(nameof(LayerNormEpsilon), LayerNormEpsilon, "LayerNormEpsilon must be positive.");
            if (!PostNormBlock.Activations.Contains(Activation))
                throw new ArgumentException($"FFN activation '{Activation}' is not supported; use one of {string.Join(", ", PostNormBlock.Activations)}.");
        }
    }

    private static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() } };

    /// <summary>JSON form (stored in saved models).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Reads <see cref="ToJson"/>.</summary>
    public static EncoderConfig FromJson(string json)
        => JsonSerializer.Deserialize<EncoderConfig>(json, Json) ?? throw new InvalidDataException("The model's encoder configuration is empty.");
}
