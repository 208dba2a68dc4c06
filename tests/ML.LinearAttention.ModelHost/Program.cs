using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Persistence;

// usage: ML.LinearAttention.ModelHost <model.zip> <rows.tsv: Text<TAB>Sentiment, no header> <out.txt>
// Writes one line per row: the PredictedLabel key and the Score floats as raw bits (hex), then one line from a
// PredictionEngine for the first row. Exit code 0 on success.
if (args.Length != 3)
{
    Console.Error.WriteLine("usage: ML.LinearAttention.ModelHost <model.zip> <rows.tsv> <out.txt>");
    return 2;
}
var ml = new MLContext(seed: 1);
LinearAttentionModel.Register(ml); // the one documented line for programs that only load
var model = ml.Model.Load(args[0], out var inputSchema);
var data = ml.Data.LoadFromTextFile(args[1], new[]
{
    new TextLoader.Column("Text", DataKind.String, 0),
    new TextLoader.Column("Sentiment", DataKind.String, 1),
}, separatorChar: '\t', hasHeader: false, allowQuoting: false);
var scored = model.Transform(data);
var keys = scored.GetColumn<uint>("PredictedLabel").ToList();
var scores = scored.GetColumn<float[]>("Score").ToList();
using var writer = new StreamWriter(args[2]);
for (int i = 0; i < keys.Count; i++)
    writer.WriteLine(keys[i].ToString(CultureInfo.InvariantCulture) + " " + string.Join(" ", scores[i].Select(Bits)));
using (var engine = ml.Model.CreatePredictionEngine<Row, Prediction>(model, inputSchema))
{
    var first = File.ReadLines(args[1]).First().Split('\t');
    var p = engine.Predict(new Row { Text = first[0], Sentiment = first[1] });
    writer.WriteLine("engine " + p.PredictedLabel + " " + string.Join(" ", p.Score.Select(Bits)));
}
(model as IDisposable)?.Dispose();
return 0;

static string Bits(float f) => BitConverter.SingleToInt32Bits(f).ToString("x8", CultureInfo.InvariantCulture);

internal sealed class Row
{
    public string Text { get; set; } = "";
    public string Sentiment { get; set; } = "";
}

internal sealed class Prediction
{
    public uint PredictedLabel { get; set; }
    public float[] Score { get; set; } = Array.Empty<float>();
}
