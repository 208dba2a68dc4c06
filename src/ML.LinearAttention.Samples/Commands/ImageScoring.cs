using System.Globalization;
using System.Text;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Samples.Reporting;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>`predict` and `evaluate` for a model trained on images: a folder (of images, or a subfolder per class) or a CSV/TSV of paths.</summary>
internal static class ImageScoring
{
    public const string PredictUsage = """
          predict --model IMAGE-MODEL --images DIR | --data FILE [--image COL] [--image-root DIR] [--out FILE]
                                   an image model's predictions for every image under DIR (subfolders included) or named by FILE;
                                   writes ImagePath, Predicted, Probability (default DIR.predictions.csv or DATA.predictions.csv)
        """;

    public const string EvaluateUsage = """
          evaluate --model IMAGE-MODEL --images DIR | --data FILE [--image COL --label COL] [--image-root DIR] [--confusion FILE.png]
                                   an image model's metrics on a folder with a subfolder per class, or on a CSV/TSV of paths and classes
        """;

    public static int Predict(MLContext ml, SavedModel saved, CommandLine cl, TextWriter output)
    {
        var source = ImageTrainCommand.Read(ml, cl, "images", "data", requireLabel: false, card: saved.Card);
        var stem = source.Separator.Length == 0 ? source.Path.TrimEnd(Path.DirectorySeparatorChar) : Path.Combine(Path.GetDirectoryName(source.Path)!, Path.GetFileNameWithoutExtension(source.Path));
        char sep = source.Separator == "tab" ? '\t' : ',';
        var outPath = Path.GetFullPath(cl.String("out") ?? stem + ".predictions" + (sep == '\t' ? ".tsv" : ".csv"));
        cl.RejectUnknown();
        var scored = saved.Model.Transform(ml.Data.LoadFromEnumerable(source.Rows));
        long rows = 0;
        try
        {
            AtomicFile.Write(outPath, temp =>
            {
                using var w = new StreamWriter(temp, false, new UTF8Encoding(false));
                w.WriteLine(string.Join(sep, source.ImageColumn ?? "ImagePath", "Predicted", "Probability"));
                var schema = scored.Schema;
                using var cursor = scored.GetRowCursor(new[] { schema[nameof(ImageInput.Shown)], schema["Predicted"], schema["Score"] });
                var shown = cursor.GetGetter<ReadOnlyMemory<char>>(schema[nameof(ImageInput.Shown)]);
                var predicted = cursor.GetGetter<ReadOnlyMemory<char>>(schema["Predicted"]);
                var probabilities = cursor.GetGetter<VBuffer<float>>(schema["Score"]);
                ReadOnlyMemory<char> s = default, p = default;
                VBuffer<float> scores = default;
                while (cursor.MoveNext())
                {
                    shown(ref s);
                    predicted(ref p);
                    probabilities(ref scores);
                    w.WriteLine(string.Join(sep, Quote(s.ToString(), sep), Quote(p.ToString(), sep), scores.DenseValues().Max().ToString("F4", CultureInfo.InvariantCulture)));
                    rows++;
                }
            });
        }
        catch (InvalidDataException e) { throw ImageSet.Undecodable(source.Rows, e) ?? throw e; }
        output.WriteLine($"Wrote {rows:N0} prediction(s) to {outPath}.");
        return 0;
    }

    public static int Evaluate(MLContext ml, SavedModel saved, CommandLine cl, TextWriter output)
    {
        var source = ImageTrainCommand.Read(ml, cl, "images", "data", requireLabel: true, card: saved.Card);
        var modelPath = cl.String("model")!;
        var name = Path.GetFileNameWithoutExtension(source.Path.TrimEnd(Path.DirectorySeparatorChar));
        var confusionPath = cl.String("confusion") ?? TrainCommand.Stem(Path.GetFullPath(modelPath)) + $".{name}.confusion.png";
        cl.RejectUnknown();
        var classes = saved.Classes;
        var view = ml.Data.LoadFromEnumerable(source.Rows);
        // Keyed with the model's own class order; classes the model never saw become missing and are reported.
        var keyData = ml.Data.LoadFromEnumerable(classes.Select(c => new ImageTrainCommand.ClassName { Value = c }));
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label", "Label", keyData: keyData).Fit(view).Transform(view);
        var unknown = source.Rows.Select(r => r.Label).Where(l => !classes.Contains(l)).Distinct().ToList();
        MulticlassClassificationMetrics m;
        try { m = ml.MulticlassClassification.Evaluate(saved.Model.Transform(keyed), "Label", "Score", "PredictedLabel"); }
        catch (InvalidDataException e) { throw ImageSet.Undecodable(source.Rows, e) ?? throw e; }
        var inv = CultureInfo.InvariantCulture;
        output.WriteLine($"Evaluating {Path.GetFileName(modelPath)} on {source.Description} ({source.Rows.Count:N0} images):");
        output.WriteLine("| metric | value |");
        output.WriteLine("| --- | ---: |");
        output.WriteLine($"| MicroAccuracy | {m.MicroAccuracy.ToString("F4", inv)} |");
        output.WriteLine($"| MacroAccuracy | {m.MacroAccuracy.ToString("F4", inv)} |");
        output.WriteLine($"| LogLoss | {m.LogLoss.ToString("F4", inv)} |");
        output.WriteLine();
        output.WriteLine(m.ConfusionMatrix.GetFormattedConfusionTable());
        if (unknown.Count > 0)
            output.WriteLine($"warning: class(es) {string.Join(", ", unknown)} are not among the model's ({string.Join(", ", classes)}); their images are left out of the metrics.");
        AtomicFile.WriteAllBytes(confusionPath, Charts.ConfusionMatrix(classes, m.ConfusionMatrix.Counts, $"CONFUSION MATRIX - {name.ToUpperInvariant()}"));
        output.WriteLine($"Confusion matrix: {confusionPath}");
        return 0;
    }

    private static string Quote(string field, char separator)
        => field.IndexOfAny(new[] { separator, '"', '\n', '\r' }) >= 0 ? "\"" + field.Replace("\"", "\"\"") + "\"" : field;
}
