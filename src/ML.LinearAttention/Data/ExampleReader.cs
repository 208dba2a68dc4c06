using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Vision;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Data;

/// <summary>
/// Turns rows of an <see cref="IDataView"/> into <see cref="Example"/>s through cursors, one row at a time (the data
/// set is never loaded whole). Counts truncated rows so the caller can report them.
/// </summary>
public sealed class ExampleReader
{
    private readonly InputColumns _columns;
    private readonly TextTokenizer? _tokenizer;
    private readonly int _maxLength;
    private long _truncatedRows;
    private long _truncatedTokens;
    private long _longestRow;

    public ExampleReader(InputColumns columns, TextTokenizer? tokenizer, int maxSequenceLength)
    {
        _columns = columns;
        _tokenizer = tokenizer;
        _maxLength = maxSequenceLength;
        if (columns.TextColumns.Count > 0 && tokenizer is null) throw new ArgumentNullException(nameof(tokenizer), "Text columns need a tokenizer.");
    }

    /// <summary>Rows cut to MaxSequenceLength so far.</summary>
    public long TruncatedRows => Interlocked.Read(ref _truncatedRows);
    /// <summary>Tokens dropped by truncation so far.</summary>
    public long TruncatedTokens => Interlocked.Read(ref _truncatedTokens);
    /// <summary>Longest row (in tokens or steps, after truncation) seen so far.</summary>
    public long LongestRow => Interlocked.Read(ref _longestRow);

    /// <summary>Input columns a cursor must make active.</summary>
    public IEnumerable<DataViewSchema.Column> ColumnsNeeded(DataViewSchema schema, bool withLabel)
    {
        foreach (var name in _columns.TextColumns) yield return schema[name];
        if (_columns.ImageColumn is not null) yield return schema[_columns.ImageColumn];
        if (_columns.SequenceColumn is not null) yield return schema[_columns.SequenceColumn];
        if (_columns.SideFeaturesColumn is not null) yield return schema[_columns.SideFeaturesColumn];
        if (withLabel) yield return schema[_columns.LabelColumn];
    }

    /// <summary>
    /// Binds getters to <paramref name="row"/>; the returned function reads the current row, or returns null for a row
    /// that training must skip (missing label) when <paramref name="withLabel"/> is true.
    /// </summary>
    public Func<Example?> Bind(DataViewRow row, bool withLabel)
    {
        var schema = row.Schema;
        var textGetters = _columns.TextColumns.Select(n => row.GetGetter<ReadOnlyMemory<char>>(schema[n])).ToArray();
        var texts = new ReadOnlyMemory<char>[textGetters.Length];
        ValueGetter<VBuffer<float>>? seqGetter = _columns.SequenceColumn is null ? null : row.GetGetter<VBuffer<float>>(schema[_columns.SequenceColumn]);
        Func<float[]>? sideReader = _columns.SideFeaturesColumn is null ? null : FloatsReader(row, schema[_columns.SideFeaturesColumn]);
        Func<float>? labelReader = withLabel ? LabelReader(row, schema[_columns.LabelColumn]) : null;
        Func<byte[]>? imageReader = _columns.ImageColumn is null ? null
            : ImageDecoder.Reader(row, schema[_columns.ImageColumn], _columns.Image ?? throw new InvalidOperationException("An image column needs an image geometry."));
        VBuffer<float> seq = default;
        int f = _columns.SequenceFeatures;
        return () =>
        {
            float label = 0;
            if (labelReader is not null)
            {
                label = labelReader();
                if (float.IsNaN(label)) return null;
            }
            float[]? side = sideReader?.Invoke();
            if (imageReader is not null) return new Example { Pixels = imageReader(), Side = side, Label = label, Length = 1 };
            if (seqGetter is not null)
            {
                seqGetter(ref seq);
                int steps = seq.Length / f;
                if (seq.Length % f != 0)
                    throw new InvalidOperationException($"Column '{_columns.SequenceColumn}' holds {seq.Length} values, not a multiple of SequenceFeatureCount = {f}.");
                float[] values;
                if (steps == 0) { steps = 1; values = new float[f]; }
                else values = seq.DenseValues().ToArray();
                if (steps > _maxLength)
                {
                    Interlocked.Increment(ref _truncatedRows);
                    Interlocked.Add(ref _truncatedTokens, steps - _maxLength);
                    values = values.AsSpan((steps - _maxLength) * f).ToArray(); // keep the most recent steps
                    steps = _maxLength;
                }
                for (int i = 0; i < values.Length; i++) if (!float.IsFinite(values[i])) values[i] = 0;
                Track(steps);
                return new Example { Values = values, Side = side, Label = label, Length = steps };
            }
            for (int i = 0; i < textGetters.Length; i++) textGetters[i](ref texts[i]);
            return EncodeText(texts, side, label);
        };
    }

    /// <summary>Tokenizes one row's texts (thread-safe: the counters are interlocked, the tokenizer is shared read-only).</summary>
    private Example EncodeText(IReadOnlyList<ReadOnlyMemory<char>> texts, float[]? side, float label)
    {
        var enc = _tokenizer!.Encode(texts, _maxLength);
        if (enc.TruncatedTokens > 0)
        {
            Interlocked.Increment(ref _truncatedRows);
            Interlocked.Add(ref _truncatedTokens, enc.TruncatedTokens);
        }
        Track(enc.Ids.Length);
        return new Example { Ids = enc.Ids, Segments = enc.Segments, Side = side, Label = label, Length = enc.Ids.Length };
    }

    /// <summary>
    /// <see cref="Read"/> with the tokenizer on up to <paramref name="threads"/> threads: one cursor reads blocks of
    /// <paramref name="block"/> rows (copying their texts), each block is tokenized in parallel, and the examples come
    /// out in the cursor's order, so the stream is identical to <see cref="Read"/>'s. Numeric sequences and
    /// <paramref name="threads"/> ≤ 1 use <see cref="Read"/> itself.
    /// </summary>
    public IEnumerable<Example> ReadParallel(IDataView data, int threads, int block = 64, CancellationToken cancellation = default)
    {
        if (threads <= 1 || _columns.TextColumns.Count == 0) return Read(data, cancellation);
        return ReadBlocks(data, threads, Math.Max(1, block), cancellation);
    }

    /// <summary>
    /// Tokenizer threads for training on <paramref name="device"/>: on CUDA half the cores (at most 8), so that
    /// tokenization keeps ahead of small fast models; on the CPU one, since libtorch's own threads use the cores.
    /// </summary>
    public static int TokenizerThreads(TorchSharp.torch.Device device)
        => device.type == TorchSharp.DeviceType.CUDA ? Math.Clamp(Environment.ProcessorCount / 2, 1, 8) : 1;

    private IEnumerable<Example> ReadBlocks(IDataView data, int threads, int block, CancellationToken cancellation)
    {
        using var cursor = data.GetRowCursor(ColumnsNeeded(data.Schema, withLabel: true));
        foreach (var e in ReadBlocks(cursor, threads, block, withLabel: true, cancellation)) yield return e;
    }

    /// <summary>
    /// The rows of an open <paramref name="cursor"/> (text columns, optional side features) tokenized on up to
    /// <paramref name="threads"/> threads, in the cursor's order: what scoring reads (no label: every row gives an
    /// example, as <see cref="Bind"/> with <c>withLabel: false</c> does). Other inputs, or one thread, read row by row.
    /// </summary>
    public IEnumerable<Example> ReadScoringRows(DataViewRowCursor cursor, int threads, int block = 64)
    {
        ArgumentNullException.ThrowIfNull(cursor);
        return threads > 1 && _columns.TextColumns.Count > 0 && _columns.ImageColumn is null && _columns.SequenceColumn is null
            ? ReadBlocks(cursor, threads, Math.Max(1, block), withLabel: false, default)
            : RowByRow(cursor, Bind(cursor, withLabel: false));
    }

    private static IEnumerable<Example> RowByRow(DataViewRowCursor cursor, Func<Example?> read)
    {
        while (cursor.MoveNext()) yield return read()!;
    }

    private IEnumerable<Example> ReadBlocks(DataViewRowCursor cursor, int threads, int block, bool withLabel, CancellationToken cancellation)
    {
        var schema = cursor.Schema;
        var textGetters = _columns.TextColumns.Select(n => cursor.GetGetter<ReadOnlyMemory<char>>(schema[n])).ToArray();
        Func<float[]>? sideReader = _columns.SideFeaturesColumn is null ? null : FloatsReader(cursor, schema[_columns.SideFeaturesColumn]);
        Func<float>? labelReader = withLabel ? LabelReader(cursor, schema[_columns.LabelColumn]) : null;
        var pending = new List<(ReadOnlyMemory<char>[] Texts, float[]? Side, float Label)>(block);
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = threads, CancellationToken = cancellation };
        bool more = true;
        while (more)
        {
            while (pending.Count < block && (more = cursor.MoveNext()))
            {
                cancellation.ThrowIfCancellationRequested();
                float label = labelReader?.Invoke() ?? 0;
                if (float.IsNaN(label)) continue;
                var side = sideReader?.Invoke();
                var texts = new ReadOnlyMemory<char>[textGetters.Length];
                for (int i = 0; i < texts.Length; i++)
                {
                    ReadOnlyMemory<char> text = default;
                    textGetters[i](ref text);
                    texts[i] = text.ToArray(); // the cursor may reuse its buffer on the next row
                }
                pending.Add((texts, side, label));
            }
            var examples = new Example[pending.Count];
            Parallel.For(0, pending.Count, parallel, i => examples[i] = EncodeText(pending[i].Texts, pending[i].Side, pending[i].Label));
            pending.Clear();
            foreach (var e in examples) yield return e;
        }
    }

    private void Track(long length)
    {
        long cur;
        while (length > (cur = Interlocked.Read(ref _longestRow)) && Interlocked.CompareExchange(ref _longestRow, length, cur) != cur) { }
    }

    /// <summary>Streams the examples of <paramref name="data"/> (rows with a missing label are skipped).</summary>
    public IEnumerable<Example> Read(IDataView data, CancellationToken cancellation = default)
    {
        using var cursor = data.GetRowCursor(ColumnsNeeded(data.Schema, withLabel: true));
        var next = Bind(cursor, withLabel: true);
        while (cursor.MoveNext())
        {
            cancellation.ThrowIfCancellationRequested();
            var e = next();
            if (e is not null) yield return e;
        }
    }

    private Func<float> LabelReader(DataViewRow row, DataViewSchema.Column column)
    {
        if (_columns.LabelKind == LabelKind.Key)
        {
            var g = row.GetGetter<uint>(column);
            uint key = 0;
            return () => { g(ref key); return key == 0 ? float.NaN : key - 1; };
        }
        if (column.Type == NumberDataViewType.Double)
        {
            var gd = row.GetGetter<double>(column);
            double d = 0;
            return () => { gd(ref d); return (float)d; };
        }
        var gf = row.GetGetter<float>(column);
        float v = 0;
        return () => { gf(ref v); return v; };
    }

    internal static Func<float[]> FloatsReader(DataViewRow row, DataViewSchema.Column column)
    {
        if (column.Type is VectorDataViewType)
        {
            var g = row.GetGetter<VBuffer<float>>(column);
            VBuffer<float> buf = default;
            return () =>
            {
                g(ref buf);
                var a = buf.DenseValues().ToArray();
                for (int i = 0; i < a.Length; i++) if (!float.IsFinite(a[i])) a[i] = float.NaN;
                return a;
            };
        }
        var gs = row.GetGetter<float>(column);
        float s = 0;
        return () => { gs(ref s); return new[] { s }; };
    }
}
