using System.Globalization;
using System.Text;
using Microsoft.ML.Data;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>`predict`: scores a CSV/TSV with a saved model and writes the rows with their predictions.</summary>
public static class PredictCommand
{
    public const string Usage = """
          predict --model FILE --data FILE [--out FILE] [--separator ...] [--precision auto|fp32|bf16] [--threads N]
                                   predictions of a model saved by 'train' for every row (the label column may be absent);
                                   writes the input columns plus Predicted (and Probability) to FILE (default DATA.predictions.csv/.tsv)
        """ + "\n" + ImageScoring.PredictUsage;

    public static int Run(IReadOnlyList<string> args, TextWriter output)
    {
        var cl = new CommandLine("predict", args);
        var ml = new MLContext(1);
        using var saved = SavedModel.Load(ml, cl);
        if (saved.IsImage) return ImageScoring.Predict(ml, saved, cl, output);
        var data = TabularData.Open(cl.Required("data", "CSV or TSV to score"), cl.String("separator"));
        var ext = data.Separator == '\t' ? ".tsv" : ".csv";
        var outPath = Path.GetFullPath(cl.String("out") ?? Path.Combine(Path.GetDirectoryName(data.Path)!, data.Stem + ".predictions" + ext));
        cl.RejectUnknown();
        var columns = saved.Columns(ml, data, withLabel: false);
        var truncation = TruncationSummary.Start(saved.Model);
        var scored = saved.Model.Transform(data.Load(ml, columns));

        long rows = 0;
        Reporting.AtomicFile.Write(outPath, temp =>
        {
            using var w = new StreamWriter(temp, false, new UTF8Encoding(false));
            var header = columns.Select(c => c.Name).Append("Predicted");
            if (saved.Classify) header = header.Append("Probability");
            w.WriteLine(string.Join(data.Separator, header.Select(h => Quote(h, data.Separator))));
            var schema = scored.Schema;
            using var cursor = scored.GetRowCursor(columns.Select(c => schema[c.Name]).Append(schema[saved.Classify ? "Predicted" : "Score"]).Append(schema["Score"]));
            var readers = columns.Select(c => Reader(cursor, schema[c.Name])).ToList();
            var predicted = saved.Classify ? Reader(cursor, schema["Predicted"]) : null;
            var score = saved.Classify ? null : cursor.GetGetter<float>(schema["Score"]);
            var probabilities = saved.Classify ? cursor.GetGetter<VBuffer<float>>(schema["Score"]) : null;
            VBuffer<float> p = default;
            float s = 0;
            var fields = new List<string>();
            while (cursor.MoveNext())
            {
                fields.Clear();
                fields.AddRange(readers.Select(r => r()));
                if (saved.Classify)
                {
                    fields.Add(predicted!());
                    probabilities!(ref p);
                    fields.Add(p.DenseValues().Max().ToString("F4", CultureInfo.InvariantCulture));
                }
                else
                {
                    score!(ref s);
                    fields.Add(s.ToString("R", CultureInfo.InvariantCulture));
                }
                w.WriteLine(string.Join(data.Separator, fields.Select(f => Quote(f, data.Separator))));
                rows++;
            }
        });
        output.WriteLine($"Wrote {rows:N0} prediction(s) to {outPath}.");
        if (truncation.Line(rows) is { } cut) output.WriteLine(cut);
        return 0;
    }

    private static Func<string> Reader(DataViewRow row, DataViewSchema.Column column)
    {
        if (column.Type is TextDataViewType)
        {
            var g = row.GetGetter<ReadOnlyMemory<char>>(column);
            ReadOnlyMemory<char> v = default;
            return () => { g(ref v); return v.ToString(); };
        }
        var gf = row.GetGetter<float>(column);
        float f = 0;
        return () => { gf(ref f); return float.IsNaN(f) ? "" : f.ToString("R", CultureInfo.InvariantCulture); };
    }

    private static string Quote(string field, char separator)
        => field.IndexOfAny(new[] { separator, '"', '\n', '\r' }) >= 0 ? "\"" + field.Replace("\"", "\"\"") + "\"" : field;
}
