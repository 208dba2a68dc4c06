using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.Runtime;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Persistence;

/// <summary>
/// Model-file helpers. ML.NET finds the loader of a saved component in the MLContext's ComponentCatalog; this
/// library registers its loader whenever it is used through an MLContext (any catalog entry point), so a program
/// that only loads a model calls <see cref="Register(MLContext)"/> once, as ML.NET's custom-mapping docs ask:
/// <code>
/// var mlContext = new MLContext();
/// LinearAttentionModel.Register(mlContext);
/// var model = mlContext.Model.Load("model.zip", out var schema);
/// </code>
/// </summary>
public static class LinearAttentionModel
{
    /// <summary>Registers the loader of this library's transformers in <paramref name="mlContext"/> (idempotent).</summary>
    public static void Register(MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        Register(mlContext.ComponentCatalog);
    }

    /// <summary>Registers the loader in a component catalog (idempotent).</summary>
    public static void Register(ComponentCatalog catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        // Unwrapped: ML.NET calls the loader through MethodInfo.Invoke, which would hand mlContext.Model.Load's caller a bare
        // TargetInvocationException instead of the loader's own error.
        var create = MLNetBridge.Unwrapping(typeof(ModelLoader).GetMethod(nameof(ModelLoader.Create))!);
        MLNetBridge.RegisterLoader(catalog, typeof(LinearAttentionTransformer), LinearAttentionTransformer.LoaderSignature, LinearAttentionTransformer.UserName, create);
        MLNetBridge.UnwrapChainLoader(catalog);
    }

    /// <summary>
    /// Registers the loader, then loads a model saved with <c>mlContext.Model.Save</c>. A missing, damaged or foreign file,
    /// or a model saved by a newer ML.LinearAttention, gives an error naming the problem and the fix
    /// (<see cref="ModelFormatException"/>, or <see cref="FileNotFoundException"/>).
    /// </summary>
    public static ITransformer Load(MLContext mlContext, string path, out DataViewSchema inputSchema)
    {
        Register(mlContext);
        return ModelFiles.Load(mlContext, path, out inputSchema);
    }

    /// <summary>Registers the loader, then loads a model from a seekable stream (same checks and errors as the path overload).</summary>
    public static ITransformer Load(MLContext mlContext, Stream stream, out DataViewSchema inputSchema)
        => Load(mlContext, stream, "The model stream", out inputSchema);

    /// <summary>
    /// Loads a model from a seekable stream read from <paramref name="source"/> (e.g. the file's path, quoted): errors name
    /// it instead of "The model stream".
    /// </summary>
    public static ITransformer Load(MLContext mlContext, Stream stream, string source, out DataViewSchema inputSchema)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        Register(mlContext);
        return ModelFiles.Load(mlContext, stream, source, out inputSchema);
    }

    /// <summary>
    /// The ML.LinearAttention transformers in a model: the model itself, or those inside a (nested) TransformerChain,
    /// e.g. to read <see cref="LinearAttentionTransformer.TruncatedRows"/> after scoring.
    /// </summary>
    public static IEnumerable<LinearAttentionTransformer> TransformersIn(ITransformer model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model is LinearAttentionTransformer t) yield return t;
        else if (model is IEnumerable<ITransformer> chain)
            foreach (var inner in chain)
                foreach (var found in TransformersIn(inner)) yield return found;
    }
}
