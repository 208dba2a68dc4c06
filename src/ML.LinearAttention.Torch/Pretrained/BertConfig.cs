namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>
/// Shape and numerics of a BERT-family encoder, named as in a Hugging Face <c>config.json</c>
/// (vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, max_position_embeddings,
/// type_vocab_size, layer_norm_eps, hidden_act).
/// </summary>
public sealed record BertConfig
{
    /// <summary>Activations understood by the reference forward: "gelu" (erf, BERT's), "gelu_new" / "gelu_pytorch_tanh" (tanh approximation), "relu".</summary>
    public static readonly IReadOnlyList<string> SupportedActivations = new[] { "gelu", "gelu_new", "gelu_pytorch_tanh", "relu" };

    /// <summary>Rows of the word-embedding table (may exceed the vocabulary file when padded).</summary>
    public required int VocabSize { get; init; }
    /// <summary>Model width (C).</summary>
    public required int HiddenSize { get; init; }
    /// <summary>Number of encoder layers.</summary>
    public required int NumLayers { get; init; }
    /// <summary>Attention heads per layer; must divide <see cref="HiddenSize"/>.</summary>
    public required int NumHeads { get; init; }
    /// <summary>Width of the feed-forward (intermediate) layer.</summary>
    public required int IntermediateSize { get; init; }
    /// <summary>Rows of the learned position-embedding table: the longest input in tokens, [CLS] and [SEP] included.</summary>
    public required int MaxPositions { get; init; }
    /// <summary>Rows of the token-type (segment) embedding table (2 for BERT).</summary>
    public int TypeVocabSize { get; init; } = 2;
    /// <summary>LayerNorm epsilon (BERT: 1e-12).</summary>
    public double LayerNormEps { get; init; } = 1e-12;
    /// <summary>Feed-forward activation, see <see cref="SupportedActivations"/> (BERT: "gelu", the exact erf form).</summary>
    public string Activation { get; init; } = "gelu";

    /// <summary>Per-head width, <see cref="HiddenSize"/> / <see cref="NumHeads"/>.</summary>
    public int HeadDim => HiddenSize / NumHeads;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first inconsistent field.</summary>
    public void Validate()
    {
        Positive(VocabSize, nameof(VocabSize));
        Positive(HiddenSize, nameof(HiddenSize));
        Positive(NumLayers, nameof(NumLayers));
        Positive(NumHeads, nameof(NumHeads));
        Positive(IntermediateSize, nameof(IntermediateSize));
        Positive(MaxPositions, nameof(MaxPositions));
        Positive(TypeVocabSize, nameof(TypeVocabSize));
        if (HiddenSize % NumHeads != 0)
            throw new ArgumentException($"BertConfig: HiddenSize {HiddenSize} is not divisible by NumHeads {NumHeads}.");
        if (!(LayerNormEps > 0) || double.IsInfinity(LayerNormEps))
            throw new ArgumentException($"BertConfig: LayerNormEps must be a positive number (got {LayerNormEps}).");
        if (!SupportedActivations.Contains(Activation))
            throw new ArgumentException($"BertConfig: activation '{Activation}' is not supported; use one of {string.Join(", ", SupportedActivations)}.");
    }

    private static void Positive(int value, string name)
    {
        if (value <= 0) throw new ArgumentException($"BertConfig: {name} must be positive (got {value}).");
    }
}
