using System.Globalization;
using Microsoft.ML.LinearAttention.OnnxScoring;

// Scores text with a model exported by `ML.LinearAttention.Samples export-onnx` (or LinearAttentionOnnx.Export),
// without TorchSharp: ML.LinearAttention.OnnxScoring <model.onnx> [text ...]; with no texts, one row per stdin line
// (text columns separated by tabs).
if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine("usage: ML.LinearAttention.OnnxScoring <model.onnx> [text ...]");
    Console.WriteLine("  Scores each text (or each line of standard input; tab-separated for several text columns) with an exported model.");
    Console.WriteLine("  model.onnx.json and the vocabulary it names must lie beside model.onnx.");
    return args.Length == 0 ? 2 : 0;
}
try
{
    using var scorer = new OnnxTextScorer(args[0]);
    var rows = args.Length > 1
        ? args.Skip(1).Select(t => new[] { t }).ToList()
        : ReadLines().Select(l => l.Split('\t')).ToList();
    if (scorer.Contract.SideFeatureCount > 0)
    {
        Console.Error.WriteLine($"The model fuses {scorer.Contract.SideFeatureCount} side features; score it through OnnxTextScorer.Score with them.");
        return 2;
    }
    var scored = scorer.Score(rows);
    for (int i = 0; i < rows.Count; i++)
    {
        var scores = string.Join(" ", scored[i].Scores.Select(s => s.ToString("F4", CultureInfo.InvariantCulture)));
        Console.WriteLine(scored[i].PredictedLabel is { } label ? $"{label}\t{scores}\t{string.Join(" | ", rows[i])}" : $"{scores}\t{string.Join(" | ", rows[i])}");
    }
    return 0;
}
catch (Exception e) when (e is FileNotFoundException or InvalidDataException or NotSupportedException or ArgumentException)
{
    Console.Error.WriteLine(e.Message);
    return 1;
}

static IEnumerable<string> ReadLines()
{
    string? line;
    while ((line = Console.ReadLine()) is not null)
        if (line.Length > 0) yield return line;
}
