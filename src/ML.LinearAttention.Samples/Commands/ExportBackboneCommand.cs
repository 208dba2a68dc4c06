using Microsoft.ML.LinearAttention.Pretrained;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>
/// `export-backbone`: writes a pretrained backbone (the built-in MiniLM / Arctic-embed-xs, an .onnx file or a Hugging
/// Face folder) as a Hugging Face BERT folder, optionally in half precision: how the quality benchmark's backbone
/// travels to the GPU machine, which has no NuGet packages and takes at most 64 MiB per call.
/// </summary>
public static class ExportBackboneCommand
{
    public const string Usage = """
          export-backbone NAME|PATH --out FOLDER [--f16|--bf16] [--overwrite]
                                   a pretrained backbone as a Hugging Face folder (config.json, model.safetensors, vocab.txt)
        """;

    public static int Run(IReadOnlyList<string> args, TextWriter output)
    {
        string? source = null, folder = null;
        var precision = SafeTensorsPrecision.F32;
        bool overwrite = false;
        for (int i = 0; i < args.Count; i++)
        {
            string Value() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"Option {args[i]} needs a value.");
            switch (args[i])
            {
                case "--out": folder = Value(); break;
                case "--f16": precision = SafeTensorsPrecision.F16; break;
                case "--bf16": precision = SafeTensorsPrecision.BF16; break;
                case "--overwrite": overwrite = true; break;
                case var a when a.StartsWith("--", StringComparison.Ordinal): throw new ArgumentException($"Unknown option '{a}' for export-backbone.\n{Usage}");
                case var a when source is null: source = a; break;
                default: throw new ArgumentException($"export-backbone takes one backbone, got '{source}' and '{args[i]}'.\n{Usage}");
            }
        }
        if (source is null) throw new ArgumentException($"export-backbone needs the backbone to export: {string.Join(", ", PretrainedBackbones.KnownNames)}, an .onnx file or a Hugging Face folder.\n{Usage}");
        if (folder is null) throw new ArgumentException($"export-backbone needs --out FOLDER.\n{Usage}");
        var checkpoint = PretrainedBackbones.Load(source);
        checkpoint.SaveHuggingFaceFolder(folder, precision, overwrite);
        long bytes = new FileInfo(Path.Combine(folder, "model.safetensors")).Length;
        output.WriteLine($"wrote {checkpoint.Config.NumLayers}-layer BERT ({checkpoint.Weights.Count} tensors, {precision}, {bytes / 1e6:F1} MB) from {source} to {folder}");
        return 0;
    }
}
