using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.LinearAttention.Export;

/// <summary>
/// What a scoring application needs besides the ONNX graph, saved as JSON beside it (<c>model.onnx.json</c>): the
/// graph's input and output names, how to tokenize (the vocabulary file, lower-casing, the [CLS]/[SEP]/[PAD] ids, the
/// maximum length and the longest-first truncation) and the class names in score order. An application that reads it
/// needs only Microsoft.ML.Tokenizers and ONNX Runtime, not this library.
/// </summary>
public sealed record OnnxScoringContract
{
    /// <summary>The format name and version of this file.</summary>
    public string Format { get; init; } = "ML.LinearAttention.Onnx/1";
    /// <summary>"Classification" or "Regression".</summary>
    public string Task { get; init; } = "";
    /// <summary>File name of the graph (beside this file).</summary>
    public string Graph { get; init; } = "";
    /// <summary>Opset of the graph (ai.onnx).</summary>
    public int Opset { get; init; }
    /// <summary>Graph input names: token ids and attention mask (int64 [batch, sequence]); segment ids when the model has
    /// several text columns (null otherwise); side features (float [batch, <see cref="SideFeatureCount"/>]) or null.</summary>
    public OnnxInputNames Inputs { get; init; } = new();
    /// <summary>Graph output names: scores (probabilities [batch, classes], or the value [batch, 1]) and the predicted
    /// class index (int64 [batch]; null for regression).</summary>
    public OnnxOutputNames Outputs { get; init; } = new();
    /// <summary>Text columns the model was trained on, in segment order (segment id i = column i).</summary>
    public IReadOnlyList<string> TextColumns { get; init; } = Array.Empty<string>();
    /// <summary>Side features per row (0 = none); NaN is allowed and stands for "missing" (the graph fills the training mean).</summary>
    public int SideFeatureCount { get; init; }
    /// <summary>Longest token sequence, [CLS] and separators included; longer texts are cut longest-first.</summary>
    public int MaxSequenceLength { get; init; }
    /// <summary>The tokenizer's settings.</summary>
    public OnnxTokenizerSettings Tokenizer { get; init; } = new();
    /// <summary>Class names in score order (classification), or null.</summary>
    public IReadOnlyList<string>? Labels { get; init; }

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.Never };

    /// <summary>The JSON form.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Reads <see cref="ToJson"/>.</summary>
    public static OnnxScoringContract FromJson(string json)
        => JsonSerializer.Deserialize<OnnxScoringContract>(json, Json) ?? throw new InvalidDataException("The ONNX scoring contract is empty.");
}

/// <summary>Input names of an exported graph.</summary>
public sealed record OnnxInputNames
{
    public string InputIds { get; init; } = "";
    public string AttentionMask { get; init; } = "";
    public string? SegmentIds { get; init; }
    public string? SideFeatures { get; init; }
}

/// <summary>Output names of an exported graph.</summary>
public sealed record OnnxOutputNames
{
    public string Scores { get; init; } = "";
    public string? PredictedLabel { get; init; }
}

/// <summary>How the scoring application must tokenize: Microsoft.ML.Tokenizers' BertTokenizer over
/// <see cref="VocabularyFile"/> with <c>LowerCaseBeforeTokenization = LowerCase</c> (WordPiece), then
/// [CLS] piece₁ [SEP] piece₂ [SEP] … with segment id i on column i's pieces and its [SEP].</summary>
public sealed record OnnxTokenizerSettings
{
    /// <summary>"WordPiece", "Bpe" or "Tiktoken".</summary>
    public string Kind { get; init; } = "";
    public bool LowerCase { get; init; }
    /// <summary>File name of the vocabulary (beside the graph).</summary>
    public string VocabularyFile { get; init; } = "";
    /// <summary>File name of the BPE merges, or null.</summary>
    public string? MergesFile { get; init; }
    /// <summary>Tiktoken model name (Tiktoken only).</summary>
    public string? TiktokenModel { get; init; }
    public int ClsId { get; init; }
    public int SepId { get; init; }
    public int PadId { get; init; }
    /// <summary>How over-long rows are cut: "longest-first" (tokens leave the longest column until it ties the next).</summary>
    public string Truncation { get; init; } = "longest-first";
}
