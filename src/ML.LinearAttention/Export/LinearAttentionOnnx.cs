using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Vision;

namespace Microsoft.ML.LinearAttention.Export;

/// <summary>What <see cref="LinearAttentionOnnx.Export(LinearAttentionTransformer, string)"/> wrote.</summary>
/// <param name="GraphPath">The ONNX graph.</param>
/// <param name="ContractPath">The scoring contract (JSON) beside it.</param>
/// <param name="VocabularyPath">The tokenizer's vocabulary file (null for an image classifier).</param>
/// <param name="MergesPath">The BPE merges file, or null.</param>
/// <param name="Contract">The contract's content.</param>
/// <param name="Nodes">Nodes in the graph.</param>
public sealed record OnnxExportResult(string GraphPath, string ContractPath, string? VocabularyPath, string? MergesPath, OnnxScoringContract Contract, int Nodes);

/// <summary>
/// Exports fitted text classification, sequence regression and image classification transformers to ONNX, so that
/// they score without TorchSharp or libtorch (ONNX Runtime, or ML.NET's <c>ApplyOnnxModel</c>). A text graph takes
/// token ids and an attention mask (plus segment ids and side features when the model uses them), an image graph the
/// resized RGB pixels; both return the same scores as <c>Transform</c>. The tokenizer's settings and vocabulary, or the
/// image preparation, are written beside it (<see cref="OnnxScoringContract"/>). docs/onnx-export.md lists what can be
/// exported.
/// </summary>
public static class LinearAttentionOnnx
{
    /// <summary>Attention mechanisms that can be exported (per layer, so hybrids of them too).</summary>
    public static IReadOnlyList<string> SupportedMechanisms => MixerExport.Supported;

    /// <summary>Image backbones, mechanisms and heads that can be exported, in words.</summary>
    public static string SupportedImageModels => VisionModelExport.ExportableSummary;

    /// <summary>
    /// Writes <paramref name="graphPath"/> (the ONNX graph), <c>graphPath + ".json"</c> (the scoring contract) and, for a
    /// text model, the tokenizer's vocabulary beside it (<c>model.vocab.txt</c> for <c>model.onnx</c>). Throws
    /// <see cref="NotSupportedException"/> naming the part that has no ONNX form (a mechanism, numeric-sequence input)
    /// before anything is written.
    /// </summary>
    public static OnnxExportResult Export(LinearAttentionTransformer transformer, string graphPath)
    {
        ArgumentNullException.ThrowIfNull(transformer);
        ArgumentException.ThrowIfNullOrWhiteSpace(graphPath);
        if (transformer is ImageClassificationTransformer image)
        {
            var vision = CheckImage(image);
            var path = ExportFolder(graphPath);
            int imageNodes;
            using (var stream = File.Create(path)) imageNodes = VisionModelExport.Write(vision, stream);
            var imageContract = Contract(image, Path.GetFileName(path));
            File.WriteAllText(path + ".json", imageContract.ToJson());
            return new OnnxExportResult(path, path + ".json", null, null, imageContract, imageNodes);
        }
        var (model, settings) = Check(transformer);
        var full = ExportFolder(graphPath);
        var dir = Path.GetDirectoryName(full)!;
        var stem = Path.Combine(dir, Path.GetFileNameWithoutExtension(full));
        var tokenizer = transformer.Tokenizer!;
        var (vocabulary, merges) = tokenizer.Files;
        var vocabularyPath = stem + tokenizer.Kind switch { TokenizerKind.Bpe => ".vocab.json", TokenizerKind.Tiktoken => ".tiktoken", _ => ".vocab.txt" };
        var mergesPath = merges is null ? null : stem + ".merges.txt";

        int nodes;
        using (var stream = File.Create(full)) nodes = SequenceModelExport.Write(model, settings, stream);
        File.WriteAllBytes(vocabularyPath, vocabulary);
        if (mergesPath is not null) File.WriteAllBytes(mergesPath, merges!);
        var contract = Contract(transformer, Path.GetFileName(full), Path.GetFileName(vocabularyPath), mergesPath is null ? null : Path.GetFileName(mergesPath));
        var contractPath = full + ".json";
        File.WriteAllText(contractPath, contract.ToJson());
        return new OnnxExportResult(full, contractPath, vocabularyPath, mergesPath, contract, nodes);
    }

    /// <summary>Writes only the ONNX graph of <paramref name="transformer"/> to <paramref name="stream"/>; returns its node count.</summary>
    public static int Export(LinearAttentionTransformer transformer, Stream stream)
    {
        ArgumentNullException.ThrowIfNull(transformer);
        ArgumentNullException.ThrowIfNull(stream);
        if (transformer is ImageClassificationTransformer image) return VisionModelExport.Write(CheckImage(image), stream);
        var (model, settings) = Check(transformer);
        return SequenceModelExport.Write(model, settings, stream);
    }

    /// <summary>The scoring contract of <paramref name="transformer"/> for a graph and vocabulary of the given file names.</summary>
    public static OnnxScoringContract Contract(LinearAttentionTransformer transformer, string graphFile = "model.onnx", string vocabularyFile = "model.vocab.txt", string? mergesFile = null)
    {
        ArgumentNullException.ThrowIfNull(transformer);
        if (transformer is ImageClassificationTransformer image) return ImageContract(image, graphFile);
        var (model, settings) = Check(transformer);
        var tokenizer = transformer.Tokenizer!;
        bool classification = settings.Task == SequenceExportTask.Classification;
        return new OnnxScoringContract
        {
            Task = settings.Task.ToString(),
            Graph = graphFile,
            Opset = OnnxGraphBuilder.DefaultOpset,
            Inputs = new OnnxInputNames
            {
                InputIds = SequenceModelExport.InputIds,
                AttentionMask = SequenceModelExport.AttentionMask,
                SegmentIds = SequenceModelExport.UsesSegments(model) ? SequenceModelExport.SegmentIds : null,
                SideFeatures = model.Config.SideFeatures > 0 ? SequenceModelExport.SideFeatures : null,
            },
            Outputs = new OnnxOutputNames
            {
                Scores = classification ? SequenceModelExport.Scores : SequenceModelExport.Score,
                PredictedLabel = classification ? SequenceModelExport.PredictedLabel : null,
            },
            TextColumns = transformer.Columns.TextColumns.ToArray(),
            SideFeatureCount = model.Config.SideFeatures,
            MaxSequenceLength = transformer.MaxSequenceLength,
            Tokenizer = new OnnxTokenizerSettings
            {
                Kind = tokenizer.Kind.ToString(),
                LowerCase = tokenizer.LowerCase,
                VocabularyFile = vocabularyFile,
                MergesFile = mergesFile,
                TiktokenModel = tokenizer.Kind == TokenizerKind.Tiktoken ? tokenizer.TiktokenModel : null,
                ClsId = tokenizer.ClsId,
                SepId = tokenizer.SepId,
                PadId = tokenizer.PadId,
            },
            Labels = transformer is TextClassificationTransformer t
                ? t.ClassNames ?? Enumerable.Range(0, t.ClassCount).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray()
                : null,
        };
    }

    private static OnnxScoringContract ImageContract(ImageClassificationTransformer transformer, string graphFile)
    {
        var config = CheckImage(transformer).Config;
        var geometry = transformer.Columns.Image!;
        return new OnnxScoringContract
        {
            Task = "ImageClassification",
            Graph = graphFile,
            Opset = OnnxGraphBuilder.DefaultOpset,
            Inputs = new OnnxInputNames { Image = VisionModelExport.Image },
            Outputs = new OnnxOutputNames { Scores = VisionModelExport.Scores, PredictedLabel = VisionModelExport.PredictedLabel },
            Image = new OnnxImageSettings
            {
                Column = transformer.ImageColumnName, Width = config.ImageWidth, Height = config.ImageHeight, Resize = geometry.Resize.ToString(),
            },
            Labels = transformer.ClassNames ?? Enumerable.Range(0, transformer.ClassCount).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
        };
    }

    private static VisionModel CheckImage(ImageClassificationTransformer transformer)
    {
        var model = (VisionModel)transformer.Model;
        var geometry = transformer.Columns.Image!;
        if (geometry.Width != model.Config.ImageWidth || geometry.Height != model.Config.ImageHeight)
            throw new NotSupportedException($"The transformer resizes images to {geometry.Width}×{geometry.Height} but its network was built for " +
                                            $"{model.Config.ImageWidth}×{model.Config.ImageHeight}; such a model cannot be exported to ONNX.");
        VisionModelExport.CheckSupported(model);
        return model;
    }

    private static string ExportFolder(string graphPath)
    {
        var full = Path.GetFullPath(graphPath);
        var dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"The folder '{dir}' of the ONNX file does not exist; create it or choose another path.");
        return full;
    }

    private static (SequenceModel Model, SequenceExportSettings Settings) Check(LinearAttentionTransformer transformer)
    {
        if (transformer.Model is not SequenceModel model)
            throw new NotSupportedException($"A transformer over a {transformer.Model.GetType().Name} cannot be exported to ONNX.");
        if (transformer.Tokenizer is null || transformer.Columns.TextColumns.Count == 0)
            throw new NotSupportedException("Models over numeric sequences (a SequenceColumn) cannot be exported to ONNX; only text input can.");
        SequenceModelExport.CheckSupported(model);
        var task = transformer switch
        {
            TextClassificationTransformer => SequenceExportTask.Classification,
            SequenceRegressionTransformer => SequenceExportTask.Regression,
            _ => throw new NotSupportedException($"{transformer.GetType().Name} cannot be exported to ONNX."),
        };
        double temperature = transformer is TextClassificationTransformer classifier ? classifier.Temperature : 1.0;
        return (model, new SequenceExportSettings(task, transformer.MaxSequenceLength, transformer.Spec.SideFill, temperature));
    }
}
