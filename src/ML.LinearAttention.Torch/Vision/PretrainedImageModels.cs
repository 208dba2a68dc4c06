namespace Microsoft.ML.LinearAttention.Vision;

/// <summary>
/// Finds the pretrained ResNet18 of the NuGet package <c>Microsoft.ML.DnnImageFeaturizer.ResNet18</c> (0.24.0). The
/// library does not depend on that 64 MB package: an application that wants the pretrained stem references it, and
/// the package's build step copies <c>ResNet18.onnx</c> and its preprocessing graph <c>ResNetPreprocess.onnx</c> into
/// <c>DnnImageModels/ResNet18Onnx/</c> and <c>DnnImageModels/ResNetPrepOnnx/</c> of the output folder.
/// </summary>
public static class PretrainedImageModels
{
    /// <summary>The NuGet package that ships the model.</summary>
    public const string ResNet18Package = "Microsoft.ML.DnnImageFeaturizer.ResNet18";

    /// <summary>Path of ResNet18.onnx relative to the application's output folder.</summary>
    public static readonly string ResNet18RelativePath = Path.Combine("DnnImageModels", "ResNet18Onnx", "ResNet18.onnx");

    /// <summary>Path of the preprocessing graph relative to the application's output folder.</summary>
    public static readonly string ResNetPreprocessRelativePath = Path.Combine("DnnImageModels", "ResNetPrepOnnx", "ResNetPreprocess.onnx");

    /// <summary>
    /// The ResNet18 ONNX file and its preprocessing graph: <paramref name="explicitPath"/> when given (the preprocessing
    /// graph is looked for next to it and in ../ResNetPrepOnnx/), else the copy in the application's folder.
    /// Throws a <see cref="FileNotFoundException"/> that says which package to reference when it is absent.
    /// </summary>
    public static (string Model, string Preprocessing) LocateResNet18(string? explicitPath = null) => LocateResNet18(explicitPath, Roots());

    internal static (string Model, string Preprocessing) LocateResNet18(string? explicitPath, IEnumerable<string> roots)
    {
        if (explicitPath is not null)
        {
            var full = Path.GetFullPath(explicitPath);
            if (!File.Exists(full))
                throw new FileNotFoundException($"The pretrained model '{full}' (option PretrainedModelPath) does not exist.", full);
            var dir = Path.GetDirectoryName(full)!;
            var prep = new[] { Path.Combine(dir, "ResNetPreprocess.onnx"), Path.Combine(dir, "..", "ResNetPrepOnnx", "ResNetPreprocess.onnx") }
                .Select(Path.GetFullPath).FirstOrDefault(File.Exists)
                ?? throw new FileNotFoundException($"The preprocessing graph ResNetPreprocess.onnx (BGR order and mean image) was not found next to '{full}' " +
                                                   "or in ../ResNetPrepOnnx/; copy it from the package " + ResNet18Package + ".");
            return (full, prep);
        }
        foreach (var root in roots)
        {
            var model = Path.Combine(root, ResNet18RelativePath);
            var prep = Path.Combine(root, ResNetPreprocessRelativePath);
            if (File.Exists(model) && File.Exists(prep)) return (model, prep);
        }
        throw new FileNotFoundException(
            $"The pretrained ResNet18 stem needs {ResNet18RelativePath} in the application's output folder ({AppContext.BaseDirectory}), which is not there. " +
            $"Reference the NuGet package {ResNet18Package} 0.24.0 from the application (its build step copies the model into the output folder) " +
            "and rebuild, or set ImageClassificationOptions.PretrainedModelPath to the ResNet18.onnx file.");
    }

    private static IEnumerable<string> Roots()
    {
        yield return AppContext.BaseDirectory;
        var lib = Path.GetDirectoryName(typeof(PretrainedImageModels).Assembly.Location);
        if (!string.IsNullOrEmpty(lib)) yield return lib;
        yield return Directory.GetCurrentDirectory();
    }
}
