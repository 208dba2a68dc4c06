using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Samples.Reporting;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>`evaluate`: metrics of a saved model on a labelled CSV/TSV, and (classification) a confusion matrix PNG.</summary>
public static class EvaluateCommand
{
    public const string Usage = """
          evaluate --model FILE --data FILE [--confusion FILE.png] [--separator ...] [--precision auto|fp32|bf16] [--threads N]
                                   metrics of a model saved by 'train' on labelled data (columns from its model card,
                                   or --text/--features/--label); classification also writes a confusion matrix PNG
        """ + "\n" + ImageScoring.EvaluateUsage;

    public static int Run(IReadOnlyList<string> args, TextWriter output)
    {
        var cl = new CommandLine("evaluate", args);
        var ml = new MLContext(1);
        using var saved = SavedModel.Load(ml, cl);
        if (saved.IsImage) return ImageScoring.Evaluate(ml, saved, cl, output);
        var data = TabularData.Open(cl.Required("data", "labelled CSV or TSV"), cl.String("separator"));
        var confusionPath = cl.String("confusion") ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(cl.String("model")!))!,
            $"{Path.GetFileNameWithoutExtension(cl.String("model")!)}.{data.Stem}.confusion.png");
        cl.RejectUnknown();
        var view = data.Load(ml, saved.Columns(ml, data, withLabel: true));
        var inv = CultureInfo.InvariantCulture;
        var truncation = TruncationSummary.Start(saved.Model);
        output.WriteLine($"Evaluating {Path.GetFileName(cl.String("model"))} on {data.Path}:");
        output.WriteLine("| metric | value |");
        output.WriteLine("| --- | ---: |");
        if (saved.Classify)
        {
            // The label is keyed with the model's own class order, so keys mean the same classes; labels the model never saw become missing.
            var classes = saved.Classes;
            var keyData = ml.Data.LoadFromEnumerable(classes.Select(c => new ClassName { Value = c }));
            var keyed = ml.Transforms.Conversion.MapValueToKey("Label", saved.Label, keyData: keyData).Fit(view).Transform(view);
            var scored = saved.Model.Transform(keyed);
            long unseen = scored.GetColumn<uint>("Label").Count(k => k == 0);
            var m = ml.MulticlassClassification.Evaluate(scored, "Label", "Score", "PredictedLabel");
            output.WriteLine($"| MicroAccuracy | {m.MicroAccuracy.ToString("F4", inv)} |");
            output.WriteLine($"| MacroAccuracy | {m.MacroAccuracy.ToString("F4", inv)} |");
            output.WriteLine($"| LogLoss | {m.LogLoss.ToString("F4", inv)} |");
            output.WriteLine();
            output.WriteLine(m.ConfusionMatrix.GetFormattedConfusionTable());
            if (unseen > 0)
                output.WriteLine($"warning: {unseen:N0} row(s) have a label the model was not trained on (or none); they are left out of the metrics. " +
                                 $"The model knows: {string.Join(", ", classes)}.");
            AtomicFile.WriteAllBytes(confusionPath, Charts.ConfusionMatrix(classes, m.ConfusionMatrix.Counts, $"CONFUSION MATRIX - {Path.GetFileName(data.Path).ToUpperInvariant()}"));
            output.WriteLine($"Confusion matrix: {confusionPath}");
        }
        else
        {
            var scored = saved.Model.Transform(view);
            var m = ml.Regression.Evaluate(scored, saved.Label, "Score");
            output.WriteLine($"| RMSE | {m.RootMeanSquaredError.ToString("F4", inv)} |");
            output.WriteLine($"| MAE | {m.MeanAbsoluteError.ToString("F4", inv)} |");
            output.WriteLine($"| RSquared | {m.RSquared.ToString("F4", inv)} |");
        }
        if (truncation.Line(CountRows(view)) is { } cut) output.WriteLine(cut);
        return 0;
    }

    private static long CountRows(IDataView view)
    {
        using var cursor = view.GetRowCursor(Array.Empty<DataViewSchema.Column>());
        long n = 0;
        while (cursor.MoveNext()) n++;
        return n;
    }

    private sealed class ClassName
    {
        public string Value { get; set; } = "";
    }
}
