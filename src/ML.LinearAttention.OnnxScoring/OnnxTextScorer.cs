using Microsoft.ML.Data;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.LinearAttention.OnnxScoring;

/// <summary>One scored row: the class probabilities (or the regression value) and the predicted class name.</summary>
public sealed record ScoredText(float[] Scores, string? PredictedLabel);

/// <summary>
/// Scores text with an exported graph through an ordinary ML.NET pipeline: tokenize as the library does (BERT WordPiece,
/// [CLS] pieces [SEP] per column, longest-first truncation), <c>ApplyOnnxModel</c>, and map the predicted index back to
/// the class name. ML.NET's ONNX transformer needs fixed vector sizes, so each call pads its rows to a power of two at
/// least as long as its longest row (at most the model's maximum length), with one ONNX transformer per such length;
/// the graph masks padding, so the scores do not depend on it.
/// </summary>
public sealed class OnnxTextScorer : IDisposable
{
    private readonly MLContext _ml = new();
    private readonly BertTokenizer _tokenizer;
    private readonly string _graphPath;
    private readonly Dictionary<int, ITransformer> _byLength = new();
    private readonly int _maxLength;

    public OnnxTextScorer(string graphPath)
    {
        if (!File.Exists(graphPath)) throw new FileNotFoundException($"The ONNX graph '{graphPath}' does not exist.", graphPath);
        Contract = ScoringContract.Read(graphPath + ".json");
        var dir = Path.GetDirectoryName(Path.GetFullPath(graphPath))!;
        var vocabulary = Path.Combine(dir, Contract.Tokenizer.VocabularyFile);
        if (!File.Exists(vocabulary)) throw new FileNotFoundException($"The vocabulary '{vocabulary}' named by the contract does not exist; copy it beside the graph.", vocabulary);
        _tokenizer = BertTokenizer.Create(vocabulary, new BertOptions { LowerCaseBeforeTokenization = Contract.Tokenizer.LowerCase });
        _maxLength = Contract.MaxSequenceLength;
        _graphPath = graphPath;
        OnnxFor(Math.Min(_maxLength, 8)); // loads the graph now, so a broken file fails here
    }

    // ApplyOnnxModel over rows padded to `length` tokens.
    private ITransformer OnnxFor(int length)
    {
        if (_byLength.TryGetValue(length, out var onnx)) return onnx;
        var inputs = new List<string> { Contract.Inputs.InputIds, Contract.Inputs.AttentionMask };
        if (Contract.Inputs.SegmentIds is { } s) inputs.Add(s);
        if (Contract.Inputs.SideFeatures is { } f) inputs.Add(f);
        var shapes = inputs.ToDictionary(n => n, n => n == Contract.Inputs.SideFeatures ? new[] { 1, Contract.SideFeatureCount } : new[] { 1, length });
        var empty = _ml.Data.LoadFromEnumerable(Array.Empty<TokenRow>(), RowSchema(length));
        onnx = _ml.Transforms.ApplyOnnxModel(new[] { Contract.Outputs.Scores }, inputs.ToArray(), _graphPath, shapes, gpuDeviceId: null, fallbackToCpu: false, recursionLimit: 100).Fit(empty);
        _byLength[length] = onnx;
        return onnx;
    }

    /// <summary>The contract read beside the graph.</summary>
    public ScoringContract Contract { get; }

    /// <summary>Scores rows of text (one string per text column, in <see cref="ScoringContract.TextColumns"/> order) and,
    /// when the model fuses them, their side features (NaN = missing).</summary>
    public IReadOnlyList<ScoredText> Score(IReadOnlyList<string[]> texts, IReadOnlyList<float[]>? sideFeatures = null)
    {
        if (Contract.SideFeatureCount > 0 && (sideFeatures is null || sideFeatures.Count != texts.Count))
            throw new ArgumentException($"The model fuses {Contract.SideFeatureCount} side features per row; pass one array per text row.", nameof(sideFeatures));
        if (texts.Count == 0) return Array.Empty<ScoredText>();
        var encoded = texts.Select(Encode).ToList();
        int longest = encoded.Max(e => e.Ids.Count), length = 8;
        while (length < longest) length *= 2;
        length = Math.Min(length, _maxLength);
        var rows = encoded.Select((e, i) => Pad(e, length, sideFeatures?[i])).ToList();
        var scored = OnnxFor(length).Transform(_ml.Data.LoadFromEnumerable(rows, RowSchema(length)));
        var scores = scored.GetColumn<float[]>(Contract.Outputs.Scores).ToList();
        return scores.Select(s => new ScoredText(s, Contract.Labels is { } names ? names[ArgMax(s)] : null)).ToList();
    }

    private static int ArgMax(float[] s)
    {
        int best = 0;
        for (int i = 1; i < s.Length; i++) if (s[i] > s[best]) best = i;
        return best;
    }

    // TextTokenizer.Encode of the library: [CLS], then each column's pieces and a [SEP] with segment id = column;
    // over-long rows lose tokens from their longest column until it ties the next.
    private (List<long> Ids, List<long> Segments) Encode(string[] texts)
    {
        int n = Contract.TextColumns.Length;
        if (texts.Length != n)
            throw new ArgumentException($"The model reads {n} text column(s) ({string.Join(", ", Contract.TextColumns)}); a row has {texts.Length}.", nameof(texts));
        var pieces = texts.Select(t => string.IsNullOrEmpty(t) ? (IReadOnlyList<int>)Array.Empty<int>() : _tokenizer.EncodeToIds(t, addSpecialTokens: false)).ToArray();
        var keep = pieces.Select(p => p.Count).ToArray();
        long excess = keep.Sum() - (_maxLength - 1 - n);
        while (excess > 0)
        {
            int longest = 0;
            for (int i = 1; i < n; i++) if (keep[i] > keep[longest]) longest = i;
            int second = 0;
            for (int i = 0; i < n; i++) if (i != longest) second = Math.Max(second, keep[i]);
            int cut = (int)Math.Min(excess, Math.Max(1, keep[longest] - second));
            keep[longest] -= cut;
            excess -= cut;
        }
        var ids = new List<long> { Contract.Tokenizer.ClsId };
        var segments = new List<long> { 0 };
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < keep[i]; j++) { ids.Add(pieces[i][j]); segments.Add(i); }
            ids.Add(Contract.Tokenizer.SepId);
            segments.Add(i);
        }
        return (ids, segments);
    }

    private TokenRow Pad((List<long> Ids, List<long> Segments) e, int length, float[]? side)
    {
        var row = new TokenRow { InputIds = new long[length], AttentionMask = new long[length], SegmentIds = new long[length], SideFeatures = side ?? new float[Math.Max(1, Contract.SideFeatureCount)] };
        Array.Fill(row.InputIds, Contract.Tokenizer.PadId);
        for (int j = 0; j < e.Ids.Count; j++) { row.InputIds[j] = e.Ids[j]; row.AttentionMask[j] = 1; row.SegmentIds[j] = e.Segments[j]; }
        return row;
    }

    // The vector sizes are known only at run time (the model's maximum length), so the schema is built here.
    private SchemaDefinition RowSchema(int length)
    {
        var schema = SchemaDefinition.Create(typeof(TokenRow));
        foreach (var column in new[] { nameof(TokenRow.InputIds), nameof(TokenRow.AttentionMask), nameof(TokenRow.SegmentIds) })
            schema[column].ColumnType = new VectorDataViewType(NumberDataViewType.Int64, length);
        schema[nameof(TokenRow.SideFeatures)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, Math.Max(1, Contract.SideFeatureCount));
        schema[nameof(TokenRow.InputIds)].ColumnName = Contract.Inputs.InputIds;
        schema[nameof(TokenRow.AttentionMask)].ColumnName = Contract.Inputs.AttentionMask;
        schema[nameof(TokenRow.SegmentIds)].ColumnName = Contract.Inputs.SegmentIds ?? "segment_ids";
        schema[nameof(TokenRow.SideFeatures)].ColumnName = Contract.Inputs.SideFeatures ?? "side_features";
        return schema;
    }

    public void Dispose()
    {
        foreach (var onnx in _byLength.Values) (onnx as IDisposable)?.Dispose();
        _byLength.Clear();
    }

    private sealed class TokenRow
    {
        public long[] InputIds = Array.Empty<long>();
        public long[] AttentionMask = Array.Empty<long>();
        public long[] SegmentIds = Array.Empty<long>();
        public float[] SideFeatures = Array.Empty<float>();
    }
}
