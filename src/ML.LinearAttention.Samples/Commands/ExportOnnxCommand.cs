using Microsoft.ML.LinearAttention.Export;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>
/// `export-onnx`: writes a text or image model saved by `train` as an ONNX graph with its scoring contract (and, for
/// text, the vocabulary), for scoring without TorchSharp (src/ML.LinearAttention.OnnxScoring, or any ONNX Runtime host).
/// </summary>
public static class ExportOnnxCommand
{
    public const string Usage = """
          export-onnx MODEL.zip OUT.onnx
                                   a saved text classifier, regressor or image classifier as ONNX (opset 18) + OUT.onnx.json
                                   (inputs, outputs, tokenizer or image preparation, labels) + the vocabulary of a text
                                   model, to score without TorchSharp (docs/onnx-export.md)
        """;

    public static int Run(IReadOnlyList<string> args, TextWriter output, TextWriter error)
    {
        if (args.Count != 2 || args.Any(a => a.StartsWith("--", StringComparison.Ordinal)))
            throw new ArgumentException($"export-onnx takes the saved model and the ONNX file to write.\n{Usage}");
        var ml = new MLContext();
        var model = LinearAttentionModel.Load(ml, args[0], out _);
        try
        {
            var transformers = LinearAttentionModel.TransformersIn(model).ToList();
            if (transformers.Count != 1)
                throw new ArgumentException($"'{args[0]}' holds {transformers.Count} linear-attention transformers; export-onnx exports a model with exactly one.");
            var result = LinearAttentionOnnx.Export(transformers[0], args[1]);
            long bytes = new FileInfo(result.GraphPath).Length;
            output.WriteLine($"wrote {result.GraphPath} ({result.Nodes} nodes, {bytes / 1e6:F1} MB), {Path.GetFileName(result.ContractPath)}" +
                             (result.VocabularyPath is { } vocabulary ? $" and {Path.GetFileName(vocabulary)}" : ""));
            if (result.Contract.Image is { } image)
            {
                output.WriteLine($"input: {result.Contract.Inputs.Image} float [batch, 3, {image.Height}, {image.Width}], RGB 0..255 after a {image.Resize} resize; " +
                                 $"outputs: {result.Contract.Outputs.Scores}, {result.Contract.Outputs.PredictedLabel}");
                return 0;
            }
            output.WriteLine($"inputs: {result.Contract.Inputs.InputIds}, {result.Contract.Inputs.AttentionMask}" +
                             (result.Contract.Inputs.SegmentIds is { } s ? $", {s}" : "") + (result.Contract.Inputs.SideFeatures is { } f ? $", {f}" : "") +
                             $"; outputs: {result.Contract.Outputs.Scores}" + (result.Contract.Outputs.PredictedLabel is { } p ? $", {p}" : ""));
            return 0;
        }
        catch (NotSupportedException e)
        {
            error.WriteLine("error: " + e.Message);
            return 2;
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }
}
