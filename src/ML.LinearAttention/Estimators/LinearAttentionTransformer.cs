using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Estimators;

/// <summary>
/// A fitted linear-attention model inside an ML.NET pipeline. <see cref="Transform"/> is lazy and scores in batches;
/// <see cref="GetRowToRowMapper"/> serves PredictionEngine; <c>mlContext.Model.Save/Load</c> round-trips it (call
/// <see cref="LinearAttentionModel.Register(MLContext)"/> once in a program that only loads). Dispose releases the native weights.
/// <para>Like every IDisposable model, it is disposed by a PredictionEngine that owns it (ML.NET's default); engines that share
/// one model, e.g. one per thread or in a pool, are created with <c>new PredictionEngineOptions { OwnsTransformer = false }</c>.
/// Scoring is thread-safe: no tensor is shared or mutated between engines.</para>
/// </summary>
public abstract partial class LinearAttentionTransformer : ITransformer, IDisposable
{
    private protected readonly IHostEnvironment Env;
    private bool _disposed;

    private protected LinearAttentionTransformer(IHostEnvironment env, TrainableModel model, TextTokenizer? tokenizer, InputColumns columns,
        int maxSequenceLength, CollateSpec spec, int inferenceBatchSize, Device device, string scoreColumnName)
    {
        Env = env;
        Model = model;
        Tokenizer = tokenizer;
        Columns = columns;
        MaxSequenceLength = maxSequenceLength;
        Spec = spec;
        InferenceBatchSize = Math.Max(1, inferenceBatchSize);
        Device = device;
        ScoreColumnName = scoreColumnName;
        Model.eval();
    }

    internal IHostEnvironment Environment => Env;
    internal TrainableModel Model { get; }
    internal TextTokenizer? Tokenizer { get; }
    internal InputColumns Columns { get; }
    /// <summary>Longest input (tokens, or steps of a numeric sequence) the model scores; longer rows are cut to it.</summary>
    public int MaxSequenceLength { get; }
    internal CollateSpec Spec { get; }
    internal int InferenceBatchSize { get; }
    internal Device Device { get; }

    /// <summary>Name of the score output column.</summary>
    public string ScoreColumnName { get; }

    /// <summary>Sizes and mechanisms of the network (text and sequence models; an image classifier has
    /// <c>ImageClassificationTransformer.VisionConfiguration</c> instead).</summary>
    public EncoderConfig Configuration => Model is SequenceModel s ? s.Config
        : throw new InvalidOperationException("This transformer holds an image model; read ImageClassificationTransformer.VisionConfiguration.");

    /// <summary>What training did (null for a loaded model).</summary>
    public TrainingReport? TrainingReport { get; internal set; }

    /// <summary>
    /// Rows cut to <see cref="MaxSequenceLength"/> while scoring with this transformer (Transform and PredictionEngine, all
    /// threads, since it was created or loaded): their scores saw only part of the input. A tool that scores a file can
    /// read it before and after to report how many rows were cut.
    /// </summary>
    public long TruncatedRows => Interlocked.Read(ref _truncatedRows);

    /// <summary>Tokens (or steps) dropped from the rows counted by <see cref="TruncatedRows"/>.</summary>
    public long TruncatedTokens => Interlocked.Read(ref _truncatedTokens);
    private long _truncatedRows, _truncatedTokens;

    /// <summary>Raised when scored rows were cut to <see cref="MaxSequenceLength"/> (on the scoring thread).</summary>
    public event EventHandler<InputsTruncatedEventArgs>? InputsTruncated;

    /// <summary>Counts rows cut while scoring; returns the total of cut rows so far.</summary>
    internal long CountTruncation(long rows, long tokens)
    {
        if (rows <= 0) return TruncatedRows;
        long total = Interlocked.Add(ref _truncatedRows, rows);
        Interlocked.Add(ref _truncatedTokens, tokens);
        InputsTruncated?.Invoke(this, new InputsTruncatedEventArgs(rows, tokens, MaxSequenceLength));
        return total;
    }

    /// <summary>Trainable parameters of the network.</summary>
    public long ParameterCount => Model.parameters().Sum(p => p.numel());

    private protected abstract byte TaskCode { get; }

    /// <summary>Adds the output columns (after every input column) to a schema.</summary>
    private protected abstract void AddOutputColumns(DataViewSchema.Builder builder);

    /// <summary>Getter of output column <paramref name="outputIndex"/> reading the current row's scores.</summary>
    internal abstract ValueGetter<TValue> OutputGetter<TValue>(int outputIndex, Func<float[]> current);

    /// <summary>Turns head outputs [B, Outputs] into per-row scores.</summary>
    private protected abstract Tensor Finish(Tensor output);

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        SchemaChecks.Check(inputSchema, Columns, withLabel: false);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        AddOutputColumns(builder);
        return builder.ToSchema();
    }

    /// <inheritdoc/>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new ScoredDataView(this, input);
    }

    /// <inheritdoc/>
    public bool IsRowToRowMapper => true;

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new ScoringRowMapper(this, inputSchema);
    }

    /// <summary>Scores a batch of rows in one forward pass (no gradients, its own dispose scope).</summary>
    internal float[][] Predict(IReadOnlyList<Example> rows)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (rows.Count == 0) return Array.Empty<float[]>();
        using var _ = torch.no_grad();
        using var scope = NewDisposeScope();
        using var batch = Batching.Collate(rows, Device, Spec.PadId, Spec.NumericFeatures, Spec.SideLength, Spec.SideFill, null);
        var scores = Score(ScoringModel, batch).cpu().contiguous();
        int width = (int)scores.shape[1];
        var flat = scores.data<float>().ToArray();
        var result = new float[rows.Count][];
        for (int i = 0; i < rows.Count; i++) result[i] = flat.AsSpan(i * width, width).ToArray();
        return result;
    }

    /// <summary>Per-row scores [B, W] in fp32 of a batch on the device, through <paramref name="scoring"/> (the model at the
    /// scoring precision); finishing (softmax, de-standardisation) runs in fp32 with the master model's statistics.</summary>
    internal Tensor Score(TrainableModel scoring, ModelBatch batch) => Finish(scoring.Forward(batch).to(ScalarType.Float32));

    /// <summary>
    /// Writes the network's weights alone (TorchSharp format) to <paramref name="path"/>, through a temporary file
    /// so that a failure leaves no partial file. Load them with <see cref="LoadWeights"/> or the estimators'
    /// <c>InitialWeightsFile</c> option.
    /// </summary>
    public void SaveWeights(string path)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var full = Path.GetFullPath(path);
        var temp = full + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            using (var stream = File.Create(temp))
            using (var writer = new BinaryWriter(stream))
                Model.save(writer);
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Replaces the weights with those of <paramref name="path"/> (same configuration required).</summary>
    public void LoadWeights(string path)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        LoadWeightsInto(Model, path);
        ReleaseScoringCopies(); // the next score copies the new weights
    }

    internal static void LoadWeightsInto(TrainableModel model, string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Weights file '{path}' does not exist.", path);
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream);
        try { model.load(reader, strict: true); }
        catch (Exception e) when (e is not IOException)
        {
            throw new InvalidDataException($"The weights in '{path}' do not fit this model ({model.Describe()}): {e.Message}", e);
        }
    }

    /// <summary>Releases the native tensors of the network.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (_disposed) return;
        _disposed = true;
        if (disposing)
        {
            ReleaseScoringCopies();
            Model.Dispose();
        }
    }

    internal static Device ResolveDevice(IHostEnvironment env, int? cpuThreads)
    {
        TorchRuntime.EnsureLoaded();
        if (cpuThreads is not null) TorchRuntime.SetCpuThreads(cpuThreads); // null leaves the process's setting alone
        return DevicePolicy.Resolve(MLNetBridge.GpuDeviceId(env), MLNetBridge.FallbackToCpu(env), TorchCudaProbe.Instance,
            w => EnvLog.Warning(env, "DevicePolicy", w));
    }
}

/// <summary>Rows cut to the model's MaxSequenceLength during one scoring call.</summary>
/// <param name="Rows">Rows cut.</param>
/// <param name="Tokens">Tokens (or steps) dropped from them.</param>
/// <param name="MaxSequenceLength">The model's limit.</param>
public sealed record InputsTruncatedEventArgs(long Rows, long Tokens, int MaxSequenceLength);

/// <summary>Writes into MLContext.Log from an environment (catalog extensions get no MLContext).</summary>
internal sealed class EnvLog(IHostEnvironment env, string component) : ITrainingLog
{
    public void Info(string message) => Info(env, component, message);
    public void Warning(string message) => Warning(env, component, message);

    public static void Info(IHostEnvironment env, string component, string message)
    {
        using var ch = env.Register("LinearAttention." + component).Start(component);
        ch.Info(MessageSensitivity.None, message);
    }

    public static void Warning(IHostEnvironment env, string component, string message)
    {
        using var ch = env.Register("LinearAttention." + component).Start(component);
        ch.Warning(MessageSensitivity.None, message);
    }
}
