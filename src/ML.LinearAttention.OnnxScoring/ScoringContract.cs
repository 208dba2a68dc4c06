using System.Text.Json;

namespace Microsoft.ML.LinearAttention.OnnxScoring;

/// <summary>
/// The JSON written beside an exported graph (<c>model.onnx.json</c>), read without the library: input and output
/// names, the tokenizer's settings and the class names. Only the fields a scoring app needs are declared.
/// </summary>
public sealed record ScoringContract
{
    public string Format { get; init; } = "";
    public string Task { get; init; } = "";
    public string Graph { get; init; } = "";
    public InputNames Inputs { get; init; } = new();
    public OutputNames Outputs { get; init; } = new();
    public string[] TextColumns { get; init; } = Array.Empty<string>();
    public int SideFeatureCount { get; init; }
    public int MaxSequenceLength { get; init; }
    public TokenizerSettings Tokenizer { get; init; } = new();
    public string[]? Labels { get; init; }

    public sealed record InputNames
    {
        public string InputIds { get; init; } = "";
        public string AttentionMask { get; init; } = "";
        public string? SegmentIds { get; init; }
        public string? SideFeatures { get; init; }
    }

    public sealed record OutputNames
    {
        public string Scores { get; init; } = "";
        public string? PredictedLabel { get; init; }
    }

    public sealed record TokenizerSettings
    {
        public string Kind { get; init; } = "";
        public bool LowerCase { get; init; }
        public string VocabularyFile { get; init; } = "";
        public int ClsId { get; init; }
        public int SepId { get; init; }
        public int PadId { get; init; }
        public string Truncation { get; init; } = "";
    }

    /// <summary>Reads <paramref name="path"/> and checks that this app can score the graph it describes.</summary>
    public static ScoringContract Read(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"The scoring contract '{path}' does not exist; export the model with LinearAttentionOnnx.Export (it writes model.onnx.json beside model.onnx).", path);
        var contract = JsonSerializer.Deserialize<ScoringContract>(File.ReadAllText(path), new JsonSerializerOptions { PropertyNameCaseInsensitive = true })
                       ?? throw new InvalidDataException($"'{path}' is empty.");
        if (!contract.Format.StartsWith("ML.LinearAttention.Onnx/", StringComparison.Ordinal))
            throw new InvalidDataException($"'{path}' is not an ML.LinearAttention ONNX scoring contract (format '{contract.Format}').");
        if (contract.Tokenizer.Kind != "WordPiece")
            throw new NotSupportedException($"This sample tokenizes WordPiece (BERT) vocabularies; the model uses a {contract.Tokenizer.Kind} tokenizer.");
        if (contract.Tokenizer.Truncation != "longest-first")
            throw new NotSupportedException($"Unknown truncation rule '{contract.Tokenizer.Truncation}'.");
        if (contract.TextColumns.Length == 0 || contract.MaxSequenceLength < contract.TextColumns.Length + 2)
            throw new InvalidDataException($"'{path}' names {contract.TextColumns.Length} text columns and a maximum length of {contract.MaxSequenceLength}; it is damaged.");
        return contract;
    }
}
