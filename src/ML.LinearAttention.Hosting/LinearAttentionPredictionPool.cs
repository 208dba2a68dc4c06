using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.ObjectPool;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Hosting;

/// <summary>
/// Thread-safe predictions from a saved ML.LinearAttention model (any ML.NET pipeline that contains one): one loaded model
/// shared by a pool of <see cref="PredictionEngine{TSrc, TDst}"/>s (created with <c>OwnsTransformer = false</c>, so the pool
/// owns the model). When the model file changes, the new model is loaded in the background and swapped in; the old model is
/// disposed once the predictions that were running on it have finished. A reload that fails (a half-copied or damaged
/// file) is logged and the previous model keeps serving.
/// <code>
/// services.AddLinearAttentionPredictionPool&lt;Ticket, TicketPrediction&gt;("models/tickets.zip");
/// // in a handler:
/// var prediction = pool.Predict(ticket);
/// </code>
/// </summary>
public sealed class LinearAttentionPredictionPool<TIn, TOut> : IDisposable where TIn : class where TOut : class, new()
{
    private readonly PredictionPoolOptions _options;
    private readonly ILogger _logger;
    private readonly MLContext _ml;
    private readonly SemaphoreSlim _reloadGate = new(1, 1);
    private readonly FileSystemWatcher? _watcher;
    private readonly Timer? _debounce;
    private Generation? _current;
    private int _version;
    private bool _disposed;

    /// <summary>Loads <paramref name="modelPath"/> (errors name the problem and the fix) and starts watching it.</summary>
    public LinearAttentionPredictionPool(string modelPath, PredictionPoolOptions? options = null, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelPath);
        ModelPath = Path.GetFullPath(modelPath);
        _options = options ?? new PredictionPoolOptions();
        _logger = logger ?? NullLogger.Instance;
        _ml = _options.Seed is { } seed ? new MLContext(seed) : new MLContext();
        _options.ConfigureContext?.Invoke(_ml);
        LinearAttentionModel.Register(_ml);
        _ml.Log += ForwardWarnings;

        var sw = Stopwatch.StartNew();
        _current = Load(++_version);
        _logger.LogInformation("Loaded model {Path} (version {Version}) in {Ms:F0} ms.", ModelPath, _version, sw.Elapsed.TotalMilliseconds);

        if (_options.WatchForChanges)
        {
            _debounce = new Timer(_ => _ = ReloadAsync(), null, Timeout.Infinite, Timeout.Infinite);
            _watcher = new FileSystemWatcher(Path.GetDirectoryName(ModelPath)!, Path.GetFileName(ModelPath))
            {
                NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.CreationTime,
            };
            _watcher.Changed += OnFileEvent;
            _watcher.Created += OnFileEvent;
            _watcher.Renamed += OnFileEvent;
            _watcher.EnableRaisingEvents = true;
        }
    }

    /// <summary>Full path of the model file.</summary>
    public string ModelPath { get; }

    /// <summary>Version of the model now served: 1 after the first load, +1 per successful reload.</summary>
    public int Version => Volatile.Read(ref _current)?.Version ?? 0;

    /// <summary>Input schema saved with the model now served.</summary>
    public DataViewSchema InputSchema => Current().InputSchema;

    /// <summary>Output schema of the model now served (e.g. the SlotNames of a classifier's Score column: its class names).</summary>
    public DataViewSchema OutputSchema
    {
        get
        {
            var g = Acquire();
            try { return g.Model.GetOutputSchema(g.InputSchema); }
            finally { g.Release(); }
        }
    }

    /// <summary>Raised after every reload attempt (with the error of a failed one).</summary>
    public event EventHandler<ModelReloadedEventArgs>? Reloaded;

    /// <summary>Predicts one row with a pooled engine. Thread-safe.</summary>
    public TOut Predict(TIn input)
    {
        return WithScalarRaceRetry(() =>
        {
            using var lease = Rent();
            return lease.Predict(input);
        });
    }

    /// <summary>
    /// Predicts many rows in batched forward passes (the model's InferenceBatchSize rows per pass) through
    /// <c>Transform</c>: far faster than one <see cref="Predict"/> per row. Thread-safe. Rows are padded together, so
    /// scores may differ from single-row predictions in the last bits.
    /// </summary>
    public IReadOnlyList<TOut> PredictBatch(IEnumerable<TIn> inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var rows = inputs as IReadOnlyList<TIn> ?? inputs.ToList();
        return WithScalarRaceRetry(() =>
        {
            var g = Acquire();
            try
            {
                var view = _ml.Data.LoadFromEnumerable(rows, g.InputSchemaDefinition);
                return (IReadOnlyList<TOut>)_ml.Data.CreateEnumerable<TOut>(g.Model.Transform(view), reuseRowObject: false).ToList();
            }
            finally
            {
                g.Release();
            }
        });
    }

    /// <summary>
    /// Input rows cut to the model's MaxSequenceLength since the pool started (all versions, Predict and PredictBatch): their
    /// scores saw only part of the input. The cuts are also logged as warnings (per PredictBatch call; for Predict the first
    /// cut row, then every tenfold count).
    /// </summary>
    public long TruncatedRows => Interlocked.Read(ref _truncatedRows);

    /// <summary>Tokens (or steps) dropped from the rows counted by <see cref="TruncatedRows"/>.</summary>
    public long TruncatedTokens => Interlocked.Read(ref _truncatedTokens);
    private long _truncatedRows, _truncatedTokens;

    private void CountTruncation(object? sender, InputsTruncatedEventArgs e)
    {
        Interlocked.Add(ref _truncatedRows, e.Rows);
        Interlocked.Add(ref _truncatedTokens, e.Tokens);
    }

    /// <summary>Prediction calls retried after TorchSharp's Scalar finalizer race (see <see cref="WithScalarRaceRetry{T}"/>).</summary>
    public long ScalarRaceRetries => Interlocked.Read(ref _scalarRaceRetries);
    private long _scalarRaceRetries;

    /// <summary>
    /// TorchSharp 0.107 passes temporary <c>Scalar</c> objects (e.g. the 1 of every tensor addition) to native calls
    /// without keeping them alive, so under concurrent load a garbage collection can finalize one while libtorch still
    /// reads it (dotnet/TorchSharp PR #1496, open): the call fails with a c10 Scalar assertion. Nothing else is affected,
    /// so such a call is retried (twice at most) and counted; any other error passes through.
    /// </summary>
    private T WithScalarRaceRetry<T>(Func<T> predict)
    {
        for (int attempt = 0; ; attempt++)
        {
            try { return predict(); }
            catch (System.Runtime.InteropServices.ExternalException e) when (attempt < 2 && e.Message.Contains("c10/core/Scalar.h", StringComparison.Ordinal))
            {
                Interlocked.Increment(ref _scalarRaceRetries);
                _logger.LogWarning("A prediction hit TorchSharp's Scalar finalizer race (dotnet/TorchSharp PR #1496) and is retried: {Message}",
                    e.Message.Split('\n')[0]);
            }
        }
    }

    /// <summary>
    /// Rents an engine for several predictions in a row (dispose the lease to return it). The model behind the lease stays
    /// alive until the lease is disposed, even across a reload.
    /// </summary>
    public Lease Rent()
    {
        var g = Acquire();
        try { return new Lease(g, g.Engines.Get()); }
        catch { g.Release(); throw; }
    }

    /// <summary>A rented engine; dispose it to return the engine to the pool.</summary>
    public readonly struct Lease : IDisposable
    {
        private readonly Generation _generation;

        internal Lease(Generation generation, PredictionEngine<TIn, TOut> engine)
        {
            _generation = generation;
            Engine = engine;
        }

        /// <summary>The engine (use it on this thread only, until the lease is disposed).</summary>
        public PredictionEngine<TIn, TOut> Engine { get; }

        internal Generation Generation => _generation;

        /// <summary>Version of the model this lease predicts with.</summary>
        public int Version => _generation.Version;

        /// <summary>Predicts one row.</summary>
        public TOut Predict(TIn input) => Engine.Predict(input);

        /// <summary>Returns the engine.</summary>
        public void Dispose()
        {
            _generation.Engines.Return(Engine);
            _generation.Release();
        }
    }

    /// <summary>Loads the model file again now (also what the file watcher does); false when the load failed.</summary>
    public async Task<bool> ReloadAsync()
    {
        if (Volatile.Read(ref _disposed)) return false;
        await _reloadGate.WaitAsync().ConfigureAwait(false);
        var sw = Stopwatch.StartNew();
        try
        {
            if (_disposed) return false;
            var next = Load(_version + 1);
            _version++;
            var old = Interlocked.Exchange(ref _current, next);
            old?.Retire(); // disposed when its last in-flight prediction returns
            _logger.LogInformation("Reloaded model {Path}: version {Version} in {Ms:F0} ms.", ModelPath, _version, sw.Elapsed.TotalMilliseconds);
            Reloaded?.Invoke(this, new ModelReloadedEventArgs(_version, null, sw.Elapsed));
            return true;
        }
        catch (Exception e) when (e is IOException or FormatException or InvalidOperationException or ArgumentException or UnauthorizedAccessException)
        {
            _logger.LogError(e, "Reloading {Path} failed; version {Version} keeps serving. {Message}", ModelPath, _version, e.Message);
            Reloaded?.Invoke(this, new ModelReloadedEventArgs(_version, e, sw.Elapsed));
            return false;
        }
        finally
        {
            _reloadGate.Release();
        }
    }

    private void OnFileEvent(object sender, FileSystemEventArgs e)
    {
        if (e is RenamedEventArgs r && !string.Equals(r.FullPath, ModelPath, StringComparison.Ordinal)) return; // renamed away
        try { _debounce?.Change(_options.ReloadDelay, Timeout.InfiniteTimeSpan); }
        catch (ObjectDisposedException) { }
    }

    private Generation Load(int version)
    {
        // Read the whole file once: a file replaced while we read it can then not mix two versions.
        var bytes = File.ReadAllBytes(ModelPath);
        using var stream = new MemoryStream(bytes, writable: false);
        var model = LinearAttentionModel.Load(_ml, stream, $"'{ModelPath}'", out var schema);
        try
        {
            if (_options.Precision is { } precision)
                foreach (var t in LinearAttentionModel.TransformersIn(model)) t.Precision = precision;
            var definition = _options.InputSchemaDefinition ?? InputDefinition(schema);
            CheckOutputFits(model, definition);
            // IgnoreMissingColumns = false: a TOut member without a column fails instead of staying at its default value.
            var engineOptions = new PredictionEngineOptions { OwnsTransformer = false, InputSchemaDefinition = definition, IgnoreMissingColumns = false };
            var policy = new EnginePolicy(() => _ml.Model.CreatePredictionEngine<TIn, TOut>(model, engineOptions));
            var engines = new DefaultObjectPoolProvider { MaximumRetained = Math.Max(1, _options.MaximumRetainedEngines) }.Create(policy);
            var g = new Generation(version, model, schema, definition, engines);
            g.Engines.Return(g.Engines.Get()); // create one engine now: a model that does not fit TIn/TOut fails here, not on the first request
            foreach (var t in LinearAttentionModel.TransformersIn(model)) t.InputsTruncated += CountTruncation;
            return g;
        }
        catch
        {
            (model as IDisposable)?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Every column <typeparamref name="TOut"/> reads must be produced by the model: ML.NET's engine would otherwise leave
    /// the member at its default value (a typo in the output class, or a model of another pipeline, serves empty answers).
    /// </summary>
    private void CheckOutputFits(ITransformer model, SchemaDefinition inputDefinition)
    {
        var input = _ml.Data.LoadFromEnumerable(Array.Empty<TIn>(), inputDefinition).Schema;
        var output = model.GetOutputSchema(input);
        var missing = SchemaDefinition.Create(typeof(TOut), SchemaDefinition.Direction.Write)
            .Where(c => output.GetColumnOrNull(c.ColumnName) is null).ToList();
        if (missing.Count == 0) return;
        var members = string.Join(", ", missing.Select(c => c.MemberName == c.ColumnName ? $"'{c.MemberName}'" : $"'{c.MemberName}' (column '{c.ColumnName}')"));
        var produced = string.Join(", ", output.Where(c => !c.IsHidden).Select(c => c.Name).Distinct());
        throw new InvalidOperationException(
            $"The model '{ModelPath}' has no column for {typeof(TOut).Name} {(missing.Count > 1 ? "members" : "member")} {members}, which would " +
            $"stay at {(missing.Count > 1 ? "their" : "its")} default value: the model's columns are {produced}. Rename the member, or name its column with [ColumnName(\"...\")], to one of those; or serve a model " +
            "whose pipeline writes that column (e.g. append MapKeyToValue(\"Predicted\", \"PredictedLabel\") for class names).");
    }

    // The input class's schema with the vector sizes the model was saved with (as ML.NET's engine does for a loaded schema).
    private static SchemaDefinition InputDefinition(DataViewSchema saved)
    {
        var definition = SchemaDefinition.Create(typeof(TIn), SchemaDefinition.Direction.Read);
        foreach (var column in definition)
        {
            if (saved.GetColumnOrNull(column.ColumnName) is not { } s) continue;
            if (s.Type is VectorDataViewType sv && column.ColumnType is VectorDataViewType cv && sv.ItemType.RawType == cv.ItemType.RawType)
                column.ColumnType = s.Type;
        }
        return definition;
    }

    private Generation Current()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed), this);
        return Volatile.Read(ref _current) ?? throw new ObjectDisposedException(GetType().Name);
    }

    private Generation Acquire()
    {
        while (true)
        {
            var g = Current();
            if (g.TryAcquire()) return g;
            // Retired between the read and the acquire: the next read sees its successor.
        }
    }

    private void ForwardWarnings(object? sender, LoggingEventArgs e)
    {
        if (e.Kind is Microsoft.ML.Runtime.ChannelMessageKind.Warning or Microsoft.ML.Runtime.ChannelMessageKind.Error && e.Source.StartsWith("LinearAttention", StringComparison.Ordinal))
            _logger.LogWarning("{Source}: {Message}", e.Source, e.RawMessage);
    }

    /// <summary>Stops watching and disposes the model once in-flight predictions have finished.</summary>
    public void Dispose()
    {
        _reloadGate.Wait();
        try
        {
            if (_disposed) return;
            Volatile.Write(ref _disposed, true);
            _watcher?.Dispose();
            _debounce?.Dispose();
            Interlocked.Exchange(ref _current, null)?.Retire();
            _ml.Log -= ForwardWarnings;
        }
        finally
        {
            _reloadGate.Release();
        }
    }

    /// <summary>One loaded model and its engines, alive while anyone uses it.</summary>
    internal sealed class Generation(int version, ITransformer model, DataViewSchema inputSchema, SchemaDefinition definition, ObjectPool<PredictionEngine<TIn, TOut>> engines)
    {
        private int _users;
        private int _retired;
        private int _disposed;

        public int Version { get; } = version;
        public ITransformer Model { get; } = model;
        public DataViewSchema InputSchema { get; } = inputSchema;
        public SchemaDefinition InputSchemaDefinition { get; } = definition;
        public ObjectPool<PredictionEngine<TIn, TOut>> Engines { get; } = engines;
        public bool IsDisposed => Volatile.Read(ref _disposed) == 1;

        public bool TryAcquire()
        {
            Interlocked.Increment(ref _users);
            if (Volatile.Read(ref _retired) == 0) return true;
            Release();
            return false;
        }

        public void Release()
        {
            if (Interlocked.Decrement(ref _users) == 0 && Volatile.Read(ref _retired) == 1) DisposeOnce();
        }

        public void Retire()
        {
            Interlocked.Exchange(ref _retired, 1);
            if (Volatile.Read(ref _users) == 0) DisposeOnce();
        }

        private void DisposeOnce()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
            (Engines as IDisposable)?.Dispose(); // disposes the retained engines (they do not own the model)
            (Model as IDisposable)?.Dispose();
        }
    }

    private sealed class EnginePolicy(Func<PredictionEngine<TIn, TOut>> create) : IPooledObjectPolicy<PredictionEngine<TIn, TOut>>
    {
        public PredictionEngine<TIn, TOut> Create() => create();
        public bool Return(PredictionEngine<TIn, TOut> obj) => true;
    }
}
