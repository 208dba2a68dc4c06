using System.Globalization;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>
/// Rows cut to the model's MaxSequenceLength while `predict` or `evaluate` scored a file. The transformers count cuts
/// since they were loaded, so the summary is the difference between a snapshot taken before scoring and one after.
/// </summary>
internal sealed class TruncationSummary
{
    private readonly ITransformer _model;
    private readonly long _rows, _tokens;

    private TruncationSummary(ITransformer model)
    {
        _model = model;
        (_rows, _tokens) = Counters(model);
    }

    /// <summary>Takes the snapshot before scoring.</summary>
    public static TruncationSummary Start(ITransformer model) => new(model);

    private static (long Rows, long Tokens) Counters(ITransformer model)
    {
        long rows = 0, tokens = 0;
        foreach (var t in LinearAttentionModel.TransformersIn(model)) { rows += t.TruncatedRows; tokens += t.TruncatedTokens; }
        return (rows, tokens);
    }

    /// <summary>The summary line once <paramref name="scoredRows"/> rows were scored; null when nothing was cut.</summary>
    public string? Line(long scoredRows)
    {
        var (rows, tokens) = Counters(_model);
        rows -= _rows;
        tokens -= _tokens;
        if (rows <= 0) return null;
        var limit = LinearAttentionModel.TransformersIn(_model).Select(t => t.MaxSequenceLength).DefaultIfEmpty(0).Min();
        var inv = CultureInfo.InvariantCulture;
        return $"{rows.ToString("N0", inv)} of {scoredRows.ToString("N0", inv)} rows were longer than MaxSequenceLength = {limit.ToString("N0", inv)} and were cut " +
               $"({tokens.ToString("N0", inv)} tokens dropped); train with a larger MaxSequenceLength (--max-length) to score them whole.";
    }
}
