using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Estimators;

/// <summary>
/// The lazy result of <see cref="LinearAttentionTransformer.Transform"/>: the input's columns plus the output columns.
/// Scoring is batched: a look-ahead cursor, read on the scoring pipeline's background threads (tokenization, length
/// bucketing, collation: <see cref="ScoringPipeline"/>), feeds forward passes of up to <c>InferenceBatchSize</c> rows,
/// while the main cursor serves the input columns row by row; the scores come back in input order.
/// </summary>
internal sealed class ScoredDataView : IDataView
{
    private readonly LinearAttentionTransformer _parent;
    private readonly IDataView _input;

    public ScoredDataView(LinearAttentionTransformer parent, IDataView input)
    {
        _parent = parent;
        _input = input;
        Schema = parent.GetOutputSchema(input.Schema);
    }

    public bool CanShuffle => false;
    public DataViewSchema Schema { get; }
    public long? GetRowCount() => _input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        int n = _input.Schema.Count;
        var needed = columnsNeeded.Select(c => c.Index).ToHashSet();
        var inputNeeded = needed.Where(i => i < n).Select(i => _input.Schema[i]).ToList();
        bool anyOutput = needed.Any(i => i >= n);
        // CanShuffle is false: both cursors must see the input in the same order, so rand is not passed on.
        var main = _input.GetRowCursor(inputNeeded);
        if (!anyOutput) return new ScoringCursor(this, main, null, needed);
        var reader = new ExampleReader(_parent.Columns, _parent.Tokenizer, _parent.MaxSequenceLength);
        var lookahead = _input.GetRowCursor(reader.ColumnsNeeded(_input.Schema, withLabel: false));
        return new ScoringCursor(this, main, (lookahead, reader), needed);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null)
        => new[] { GetRowCursor(columnsNeeded, rand) };

    private sealed class ScoringCursor : DataViewRowCursor
    {
        private readonly ScoredDataView _view;
        private readonly DataViewRowCursor _main;
        private readonly DataViewRowCursor? _lookahead;
        private readonly ExampleReader? _reader;
        private readonly IEnumerator<float[]>? _scores;
        private readonly HashSet<int> _active;
        private float[] _current = Array.Empty<float>();
        private long _served;
        private bool _disposed;

        public ScoringCursor(ScoredDataView view, DataViewRowCursor main, (DataViewRowCursor Cursor, ExampleReader Reader)? lookahead, HashSet<int> active)
        {
            _view = view;
            _main = main;
            _active = active;
            if (lookahead is { } la)
            {
                _lookahead = la.Cursor;
                _reader = la.Reader;
                var parent = view._parent;
                var scoring = parent.ScoringModel; // fixed for this cursor: a later Precision change applies to new cursors
                // Enumerated on the pipeline's reader thread (the look-ahead cursor is used by that thread only), tokenizing
                // on as many threads as training does on this device.
                var rows = la.Reader.ReadScoringRows(la.Cursor, ExampleReader.TokenizerThreads(parent.Device));
                _scores = ScoringPipeline.Score(rows, parent.Spec, parent.InferenceBatchSize, parent.Device,
                    batch => parent.Score(scoring, batch)).GetEnumerator();
            }
        }

        public override DataViewSchema Schema => _view.Schema;
        public override long Position => _main.Position;
        public override long Batch => _main.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => _main.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) => _active.Contains(column.Index);

        public override bool MoveNext()
        {
            if (!_main.MoveNext()) return false;
            if (_scores is null) return true;
            _current = _scores.MoveNext() ? _scores.Current
                : throw new InvalidOperationException("The input data returned fewer rows on a second cursor than on the first; scoring needs a data view that can be read twice in the same order.");
            if (++_served % _view._parent.InferenceBatchSize == 0) CountTruncation();
            return true;
        }

        private long _countedRows, _countedTokens;

        // Counted per batch of served rows, so the transformer's counters and its InputsTruncated event follow the scoring
        // as it goes (the reader thread may be a little ahead; the rest is counted when the cursor is disposed).
        private void CountTruncation()
        {
            long rows = _reader!.TruncatedRows, tokens = _reader.TruncatedTokens;
            _view._parent.CountTruncation(rows - _countedRows, tokens - _countedTokens);
            (_countedRows, _countedTokens) = (rows, tokens);
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            int n = _view._input.Schema.Count;
            if (column.Index < n) return _main.GetGetter<TValue>(_view._input.Schema[column.Index]);
            if (!_active.Contains(column.Index)) throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was created.");
            return _view._parent.OutputGetter<TValue>(column.Index - n, () => _current);
        }

        protected override void Dispose(bool disposing)
        {
            if (_disposed) return;
            if (disposing)
            {
                _main.Dispose();
                _scores?.Dispose(); // stops and joins the pipeline's threads before their cursor goes
                _lookahead?.Dispose();
                if (_reader is not null) CountTruncation();
                if (_reader is { TruncatedRows: > 0 } r)
                    EnvLog.Warning(_view._parent.Environment, "Transform",
                        $"{r.TruncatedRows:N0} scored row(s) were longer than MaxSequenceLength = {_view._parent.MaxSequenceLength:N0} and were cut " +
                        $"({r.TruncatedTokens:N0} tokens dropped). Train with a larger MaxSequenceLength ({LinearAttentionOptions.SequenceLengthLimits}) to score them whole.");
            }
            _disposed = true;
            base.Dispose(disposing);
        }
    }
}

/// <summary>The row-to-row form (PredictionEngine): one forward per new input row, shared by all output getters.</summary>
internal sealed class ScoringRowMapper : IRowToRowMapper
{
    private readonly LinearAttentionTransformer _parent;

    public ScoringRowMapper(LinearAttentionTransformer parent, DataViewSchema inputSchema)
    {
        _parent = parent;
        InputSchema = inputSchema;
        OutputSchema = parent.GetOutputSchema(inputSchema);
    }

    public DataViewSchema InputSchema { get; }
    public DataViewSchema OutputSchema { get; }

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        int n = InputSchema.Count;
        var cols = dependingColumns.ToList();
        var deps = cols.Where(c => c.Index < n).Select(c => InputSchema[c.Index]).ToList();
        if (cols.Any(c => c.Index >= n))
            deps.AddRange(new ExampleReader(_parent.Columns, _parent.Tokenizer, _parent.MaxSequenceLength).ColumnsNeeded(InputSchema, withLabel: false));
        return deps.DistinctBy(c => c.Index);
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
        => new Row(this, input, activeColumns.Select(c => c.Index).ToHashSet());

    private sealed class Row : DataViewRow
    {
        private readonly ScoringRowMapper _mapper;
        private readonly DataViewRow _input;
        private readonly HashSet<int> _active;
        private readonly Lazy<ExampleReader> _reader;
        private readonly Lazy<Func<Example?>> _read;
        private long _cachedPosition = long.MinValue;
        private float[] _cached = Array.Empty<float>();

        public Row(ScoringRowMapper mapper, DataViewRow input, HashSet<int> active)
        {
            _mapper = mapper;
            _input = input;
            _active = active;
            _reader = new(() => new ExampleReader(mapper._parent.Columns, mapper._parent.Tokenizer, mapper._parent.MaxSequenceLength));
            _read = new(() => _reader.Value.Bind(input, withLabel: false));
        }

        public override DataViewSchema Schema => _mapper.OutputSchema;
        public override long Position => _input.Position;
        public override long Batch => _input.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) => _active.Contains(column.Index);

        private float[] Current()
        {
            if (_cachedPosition != _input.Position || _input.Position < 0)
            {
                var reader = _reader.Value;
                long before = reader.TruncatedTokens;
                var example = _read.Value()!;
                if (reader.TruncatedTokens > before) ReportTruncation(reader.TruncatedTokens - before);
                _cached = _mapper._parent.Predict(new[] { example })[0];
                _cachedPosition = _input.Position;
            }
            return _cached;
        }

        // One engine predicts one row per call, so a warning per cut row could flood a server's log: the first cut row is
        // reported, then the 10th, 100th, ... (the transformer's counters and InputsTruncated event count every one).
        private void ReportTruncation(long tokens)
        {
            var parent = _mapper._parent;
            long total = parent.CountTruncation(1, tokens);
            if (!IsPowerOfTen(total)) return;
            EnvLog.Warning(parent.Environment, "Predict",
                $"An input row was longer than MaxSequenceLength = {parent.MaxSequenceLength:N0} and was cut ({tokens:N0} tokens dropped); " +
                $"{total:N0} row(s) scored by this model have been cut so far ({parent.TruncatedTokens:N0} tokens; further cuts are reported at " +
                $"every tenfold count). Its score saw only part of the input: train with a larger MaxSequenceLength ({LinearAttentionOptions.SequenceLengthLimits}) to score such rows whole.");
        }

        private static bool IsPowerOfTen(long n)
        {
            while (n >= 10 && n % 10 == 0) n /= 10;
            return n == 1;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            int n = _mapper.InputSchema.Count;
            if (column.Index < n) return _input.GetGetter<TValue>(_mapper.InputSchema[column.Index]);
            return _mapper._parent.OutputGetter<TValue>(column.Index - n, Current);
        }
    }
}
