using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>A model saved by `train`, with the column roles of its card (or of --text/--features/--label).</summary>
public sealed class SavedModel : IDisposable
{
    private SavedModel(ITransformer model, DataViewSchema inputSchema, ModelCard? card, string[] text, string[] features, string label, bool classify)
    {
        Model = model; InputSchema = inputSchema; Card = card; Text = text; Features = features; Label = label; Classify = classify;
    }

    public ITransformer Model { get; }
    public DataViewSchema InputSchema { get; }
    public ModelCard? Card { get; }
    public string[] Text { get; }
    public string[] Features { get; }
    public string Label { get; }
    public bool Classify { get; }

    /// <summary>Class names in key order (classification).</summary>
    public string[] Classes => LinearAttentionModel.TransformersIn(Model).Select(t => t switch
                                   {
                                       TextClassificationTransformer c => c.ClassNames,
                                       Vision.ImageClassificationTransformer i => i.ClassNames,
                                       _ => null,
                                   }).Single()?.ToArray()
                               ?? throw new InvalidOperationException("The model's classes have no names.");

    /// <summary>An image classifier (trained by `train --images`/`--image`): its input is an image file's path.</summary>
    public bool IsImage => LinearAttentionModel.TransformersIn(Model).OfType<Vision.ImageClassificationTransformer>().Any();

    public static SavedModel Load(MLContext ml, CommandLine cl)
    {
        var path = cl.Required("model", "a model saved by 'train'");
        var model = LinearAttentionModel.Load(ml, path, out var schema); // clear errors for missing, damaged or foreign files
        try { ApplyPrecision(model, cl); }
        catch { (model as IDisposable)?.Dispose(); throw; }
        var (json, _) = ModelCard.PathsFor(path);
        var card = File.Exists(json) ? ModelCard.FromJson(File.ReadAllText(json)) : null;
        bool image = LinearAttentionModel.TransformersIn(model).OfType<Vision.ImageClassificationTransformer>().Any();
        if (image) return new SavedModel(model, schema, card, Array.Empty<string>(), Array.Empty<string>(), card?.Data.LabelColumn ?? "", classify: true);
        var text = cl.List("text") is { Length: > 0 } t ? t : card?.Data.TextColumns
                   ?? throw new ArgumentException($"No model card ({json}) next to the model: give the columns with --text (and --features, --label).");
        var features = cl.List("features") is { Length: > 0 } f ? f : card?.Data.FeatureColumns ?? Array.Empty<string>();
        var label = cl.String("label") ?? card?.Data.LabelColumn ?? "";
        bool classify = ((IEnumerable<ITransformer>)model).OfType<TextClassificationTransformer>().Any();
        return new SavedModel(model, schema, card, text, features, label, classify);
    }

    /// <summary>--precision auto|fp32|bf16|fp16: the scoring precision of every transformer of the model (a scoring-time setting);
    /// --threads N: libtorch's CPU threads while scoring (default: all cores).</summary>
    internal static void ApplyPrecision(ITransformer model, CommandLine cl)
    {
        if (cl.String("threads") is not null)
        {
            int threads = cl.Int("threads", 0);
            if (threads < 1) throw new ArgumentException($"--threads {threads}: give a positive number of libtorch CPU threads.");
            Runtime.TorchRuntime.SetCpuThreads(threads);
        }
        if (cl.String("precision") is not { } text) return;
        var precision = Training.ScoringPrecision.Parse(text);
        try { foreach (var t in LinearAttentionModel.TransformersIn(model)) t.Precision = precision; }
        catch (NotSupportedException e) { throw new ArgumentException("--precision " + text + ": " + e.Message, e); } // a usage error: one line, exit code 2
    }

    /// <summary>The input columns to read from <paramref name="data"/> (plus the label when <paramref name="withLabel"/>).</summary>
    public List<(string Name, DataKind Kind)> Columns(MLContext ml, TabularData data, bool withLabel)
    {
        var columns = Text.Select(t => (t, DataKind.String)).Concat(Features.Select(f => (f, DataKind.Single))).ToList();
        if (withLabel)
        {
            if (Label.Length == 0) throw new ArgumentException("Which column holds the label? Give --label (the model card would tell, but none was found).");
            data.IndexOf(Label);
            columns.Add((Label, Classify ? DataKind.String : DataKind.Single));
        }
        foreach (var (name, _) in columns) data.IndexOf(name);
        foreach (var f in Features) data.RequireNumbers(ml, f, "a feature column of the model");
        return columns;
    }

    public void Dispose() => (Model as IDisposable)?.Dispose();
}
