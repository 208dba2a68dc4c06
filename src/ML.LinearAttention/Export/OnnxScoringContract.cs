using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.LinearAttention.Export;

/// <summary>
/// What a scoring application needs besides the ONNX graph, saved as JSON beside it (<c>model.onnx.json</c>): the
/// graph's input and output names, how to tokenize (the vocabulary file, lower-casing, the [CLS]/[SEP]/[PAD] ids, the
/// maximum length and the longest-first truncation) and the class names in score order. An application that reads it
/// needs only Microsoft.ML.Tokenizers and ONNX Runtime, not this library. An image classifier's contract has no
/// tokenizer; its <see cref="Image"/> says how to turn a picture into the graph's input instead.
/// </summary>
public sealed record OnnxScoringContract
{
    /// <summary>The format name and version of this file.</summary>
    public string Format { get; init; } = "ML.LinearAttention.Onnx/1";
    /// <summary>"Classification" or "Regression" (text), "ImageClassification" (images).</summary>
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
    /// <summary>The tokenizer's settings (null for an image classifier).</summary>
    public OnnxTokenizerSettings? Tokenizer { get; init; }
    /// <summary>How to prepare an image for the graph (image classifiers), or null.</summary>
    public OnnxImageSettings? Image { get; init; }
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
    /// <summary>The image tensor (float [batch, 3, height, width]) of an image classifier, or null.</summary>
    public string? Image { get; init; }
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

/// <summary>
/// How a scoring application turns a picture into the graph's <c>image</c> input, exactly as the library's
/// <c>Transform</c> does: decode to RGB, resize to <see cref="Width"/> × <see cref="Height"/> by <see cref="Resize"/>
/// (bilinear, antialiased when shrinking, rounded to bytes), then planes R, G, B of float pixel values 0..255 in
/// [batch, 3, height, width] order — ML.NET's <c>ExtractPixels(colorsToExtract: Rgb, orderOfExtraction: Rgb)</c> with
/// no offset or scale. The model's normalisation is inside the graph.
/// </summary>
public sealed record OnnxImageSettings
{
    /// <summary>The image column the model was trained on.</summary>
    public string Column { get; init; } = "";
    /// <summary>Width in pixels of the graph's input.</summary>
    public int Width { get; init; }
    /// <summary>Height in pixels of the graph's input.</summary>
    public int Height { get; init; }
    /// <summary>"CenterCrop" (scale the shorter side to fit, cut the centre), "Stretch" (scale each side) or "Pad" (scale
    /// the longer side to fit, pad the rest with black, centred).</summary>
    public string Resize { get; init; } = "";
    /// <summary>Resampling of the resize.</summary>
    public string Interpolation { get; init; } = "bilinear, half-pixel centres, antialiased when shrinking, rounded to bytes";
    /// <summary>Channel order of the input planes.</summary>
    public string Channels { get; init; } = "RGB";
    /// <summary>Tensor layout of the input.</summary>
    public string Layout { get; init; } = "NCHW";
    /// <summary>Range of the input values (the graph normalises them).</summary>
    public string PixelRange { get; init; } = "0..255";
}
