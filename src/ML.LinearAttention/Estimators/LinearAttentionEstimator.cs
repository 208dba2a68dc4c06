using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Conversion;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.FineTuning;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.Runtime;
using TorchSharp;
using static Microsoft.ML.SchemaShape.Column;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Estimators;

/// <summary>
/// Shared Fit of the text and sequence estimators: schema checks, tokenizer, one cheap statistics pass, a fresh
/// model sized from the data (nothing is cached between Fit calls, so AutoML can refit per fold), streaming training,
/// and the fitted transformer.
/// </summary>
public abstract class LinearAttentionEstimator<TTransformer> : IEstimator<TTransformer> where TTransformer : LinearAttentionTransformer
{
    private protected readonly IHostEnvironment Env;
    private protected readonly LinearAttentionOptions Options;

    private protected LinearAttentionEstimator(IHostEnvironment env, LinearAttentionOptions options)
    {
        Env = env ?? throw new ArgumentNullException(nameof(env));
        Options = options ?? throw new ArgumentNullException(nameof(options));
    }

    private protected abstract string TaskName { get; }
    private protected abstract InputColumns ResolveColumns();
    private protected abstract int OutputCount(DataViewSchema schema);
    private protected abstract IEnumerable<SchemaShape.Column> OutputColumns(SchemaShape input);
    private protected abstract TTransformer CreateTransformer(SequenceModel model, TextTokenizer? tokenizer, InputColumns columns, CollateSpec spec,
        torch.Device device, DataViewSchema trainSchema);

    /// <summary>Trains a new model on <paramref name="input"/>.</summary>
    public TTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var o = Options;
        var columns = ResolveColumns();
        SchemaChecks.Check(input.Schema, columns, withLabel: true);
        if (o.ValidationSet is not null) SchemaChecks.Check(o.ValidationSet.Schema, columns, withLabel: true);
        CheckSequenceLength(o);
        FineTuningRegistry.Check(string.IsNullOrWhiteSpace(o.FineTuning) ? "full" : o.FineTuning, o.FineTuningOptions);
        SmallDataDefaults.Check(o);
        var token = o.CancellationToken;
        token.ThrowIfCancellationRequested();

        var log = new EnvLog(Env, TaskName);
        var device = LinearAttentionTransformer.ResolveDevice(Env, o.CpuThreads);
        ScoringPrecision.Resolve(o.InferencePrecision, device); // e.g. Float16 on the CPU: refused before training, not after
        int seed = o.Seed ?? MLNetBridge.Seed(Env) ?? 1;
        ConversionStage.Validate(o);
        var backbone = o.PretrainedBackbone is null ? null : BackboneSetup.Prepare(o, columns, log);   // pretrained backbone (Conversion/)
        var tokenizer = backbone?.Tokenizer ?? (columns.TextColumns.Count > 0 ? TextTokenizer.Create(o.Tokenizer) : null);
        var stats = DataStatistics.Compute(input, columns, token);
        if (stats.Rows == 0)
            throw new InvalidOperationException($"The training data has no row with a label in column '{columns.LabelColumn}' (missing keys and NaN labels are skipped).");
        TrainingDataChecks.Check(stats, columns, input.Schema, log);

        var config = new EncoderConfig
        {
            VocabularySize = tokenizer?.VocabularySize ?? 0,
            PadId = tokenizer?.PadId ?? 0,
            NumericFeatures = columns.SequenceColumn is null ? 0 : columns.SequenceFeatures,
            NumSegments = Math.Max(1, columns.TextColumns.Count),
            ModelDim = o.ModelDimension,
            NumLayers = o.NumberOfLayers,
            NumHeads = o.NumberOfHeads,
            FfnMultiplier = o.FeedForwardMultiplier,
            Dropout = o.Dropout,
            Position = o.Position,
            MaxPositions = o.MaxSequenceLength + 1,
            Pooling = o.Pooling,
            Mixer = o.Attention,
            MixerOptionsJson = o.AttentionOptions is null ? null : MixerRegistry.SerializeOptions(o.AttentionOptions),
            Layers = EncoderConfig.Plan(ResolveLayerPlan(o)),
            SideFeatures = stats.SideLength,
            Outputs = OutputCount(input.Schema),
        };
        if (backbone is not null) config = backbone.Configure(config);
        config.Validate();

        torch.random.manual_seed(seed);
        var model = new SequenceModel(config);
        try
        {
            model.SetNormalization(stats.SideMean, stats.SideStd, stats.ValueMean, stats.ValueStd, stats.TargetMean, stats.TargetStd);
            backbone?.LoadWeights(model, log);
            if (o.InitialWeightsFile is not null) LinearAttentionTransformer.LoadWeightsInto(model, o.InitialWeightsFile);
            model.to(device);
            var (fineTuning, fineTuningOptions) = (string.IsNullOrWhiteSpace(o.FineTuning) ? "full" : o.FineTuning, o.FineTuningOptions);
            if (o.Conversion is not null)
            {
                // softmax→linear conversion, stage 1 (attention transfer); the training below is stage 2 (LoRA by default)
                model = ConversionStage.Run(model, o, columns, tokenizer, input, seed, device, log,
                    () => { token.ThrowIfCancellationRequested(); if (MLNetBridge.IsCanceled(Env)) throw new OperationCanceledException("Training was cancelled through MLContext (CancelExecution)."); });
                config = model.Config;
                (fineTuning, fineTuningOptions) = ConversionStage.StageTwoMethod(o, log);
            }
            // Fine-tuning catalog: after every step that loads or replaces weights, before the optimizer (which takes only trainable parameters).
            var applied = FineTuningRegistry.Apply(model, fineTuning, fineTuningOptions);
            // Nothing pretrained to fine-tune: "Fine-tuning 'full'" would misdescribe training a fresh network.
            bool fromScratch = backbone is null && o.InitialWeightsFile is null && o.Conversion is null && applied.Method == "full";
            log.Info(fromScratch ? $"Training from scratch: all {applied.TotalParameters:N0} parameters trainable." : applied.ToString());
            if (fromScratch && tokenizer is not null && SmallDataDefaults.ReferencedPretrainedBackbone() is { } pretrained)
                log.Info($"This application references the pretrained '{pretrained}' package: PretrainedBackbone = \"{pretrained}\" (with LearningRate = 5e-5) " +
                         "would likely do better than training from scratch, above all on a few thousand rows.");
            var spec = new CollateSpec(columns.LabelKind, config.PadId, config.NumericFeatures, stats.SideLength, stats.SideMean);
            log.Info($"{TaskName}: {DescribeBlocks(config)}, hidden {config.ModelDim}, " +
                     $"{config.NumHeads} heads, {config.Position} positions, {config.Pooling} pooling, {model.parameters().Sum(p => p.numel()):N0} parameters" +
                     (tokenizer is null ? $", numeric input of {config.NumericFeatures} feature(s) per step."
                         : $", tokenizer {(backbone is null ? tokenizer.ToString() : BackboneSetup.DescribeTokenizer(tokenizer, o.PretrainedBackbone!))}, MaxSequenceLength {o.MaxSequenceLength}."));

            var readers = new List<ExampleReader>();
            IEnumerable<Example> Rows(IDataView data, bool track)
            {
                var reader = new ExampleReader(columns, tokenizer, o.MaxSequenceLength);
                if (track) readers.Add(reader);
                return reader.ReadParallel(data, ExampleReader.TokenizerThreads(device), cancellation: token);
            }
            var heldOut = SmallDataDefaults.ChooseValidationRows(o, stats.Rows, seed, log);
            Func<IEnumerable<Example>> trainRows = heldOut is null ? () => Rows(input, true) : () => SmallDataDefaults.Select(Rows(input, true), heldOut, keep: false);
            Func<IEnumerable<Example>>? validationRows = o.ValidationSet is not null ? () => Rows(o.ValidationSet, false)
                : heldOut is null ? null : () => SmallDataDefaults.Select(Rows(input, false), heldOut, keep: true);
            long trainCount = stats.Rows - (heldOut is null ? 0 : CountSet(heldOut));
            // A frozen encoder (linear probe, Moment Probing) is run once and its head trained on the cached features.
            var settings = o.ToTrainingSettings(seed, SmallDataDefaults.Epochs(o, fromScratch, validationRows is not null, trainCount,
                (double)applied.TrainableParameters / Math.Max(1, applied.TotalParameters), log));
            // MP+ trains its head that way first (HeadFirst), then everything it trains from there, the head-only result kept unless beaten.
            var report = FrozenHeadTrainer.TryTrain(model, spec, trainRows, validationRows, settings, device, log, () => MLNetBridge.IsCanceled(Env));
            if (report is null)
            {
                var headFirst = FrozenHeadTrainer.TryTrainHeadFirst(model, spec, trainRows, validationRows, settings, device, log, () => MLNetBridge.IsCanceled(Env));
                report = ModelTrainer.Train(model, spec, trainRows, trainCount, validationRows, headFirst is null ? settings : settings with { ScoreStartingWeights = true },
                    device, log, () => MLNetBridge.IsCanceled(Env));
            }
            if (report.Temperature is { } temperature) SmallDataDefaults.StoreTemperature(model, temperature);
            ReportTruncation(log, readers.FirstOrDefault(), o.MaxSequenceLength);
            if (FineTuningRegistry.Finish(model) is { } finished) log.Info($"Fine-tuning: {finished}.");
            var transformer = CreateTransformer(model, tokenizer, columns, spec, device, input.Schema);
            transformer.TrainingReport = report;
            transformer.Precision = o.InferencePrecision;
            log.Info($"{TaskName}: trained {report.Steps} steps in {report.Epochs} epoch(s), {report.Elapsed:hh\\:mm\\:ss}; final training loss {report.FinalTrainLoss:F4}.");
            return transformer;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private static long CountSet(System.Collections.BitArray bits)
    {
        long n = 0;
        foreach (bool b in bits) if (b) n++;
        return n;
    }

    /// <summary>"6 × hedgehog blocks" when every layer has one mechanism (a plan or a conversion can give that too), else the plan's layers in order.</summary>
    internal static string DescribeBlocks(EncoderConfig config)
    {
        if (config.Layers is not { Count: > 0 } layers) return $"{config.NumLayers} × {config.Mixer} blocks";
        var names = layers.Select(l => l.Name).ToList();
        return names.Distinct(StringComparer.OrdinalIgnoreCase).Count() == 1
            ? $"{names.Count} × {names[0]} blocks"
            : $"{names.Count} blocks, hybrid plan {string.Join(", ", names)}";
    }

    private static void ReportTruncation(ITrainingLog log, ExampleReader? reader, int maxLength)
    {
        if (reader is null) return;
        if (reader.TruncatedRows > 0)
            log.Warning($"{reader.TruncatedRows:N0} training row(s) were longer than MaxSequenceLength = {maxLength:N0} and were cut " +
                        $"({reader.TruncatedTokens:N0} tokens dropped, longest text first). Raise MaxSequenceLength ({LinearAttentionOptions.SequenceLengthLimits}) to keep them whole.");
        else
            log.Info($"No training row was truncated (longest row: {reader.LongestRow:N0} tokens; MaxSequenceLength = {maxLength:N0}).");
    }

    /// <summary>
    /// Refuses a <see cref="LinearAttentionOptions.MaxSequenceLength"/> outside 8..<see cref="LinearAttentionOptions.MaxSupportedSequenceLength"/>,
    /// and above <see cref="LinearAttentionOptions.MaxLearnedPositionsSequenceLength"/> with learned positions, whose table
    /// grows with the length (a pretrained backbone's own table is checked against its checkpoint in BackboneSetup).
    /// </summary>
    internal static void CheckSequenceLength(LinearAttentionOptions o)
    {
        const int max = LinearAttentionOptions.MaxSupportedSequenceLength, learnedMax = LinearAttentionOptions.MaxLearnedPositionsSequenceLength;
        if (o.MaxSequenceLength is < 8 or > max)
            throw new ArgumentOutOfRangeException($"MaxSequenceLength must lie in 8..{max} (it is {o.MaxSequenceLength})" +
                (o.MaxSequenceLength > max ? $": {max} tokens (LinearAttentionOptions.MaxSupportedSequenceLength) is the longest row Fit takes; " +
                                             $"set MaxSequenceLength to at most {max} (longer rows are cut to it)." : "."), (Exception?)null);
        if (o.Position == PositionEncoding.Learned && o.MaxSequenceLength > learnedMax && o.PretrainedBackbone is null)
            throw new ArgumentOutOfRangeException($"MaxSequenceLength = {o.MaxSequenceLength} is too long for Position = Learned, whose table of " +
                $"MaxSequenceLength + 1 learned position vectors allows at most {learnedMax} (LinearAttentionOptions.MaxLearnedPositionsSequenceLength). " +
                $"Set Position = PositionEncoding.Rope (rotary positions, the default: no table, up to {max} tokens) or PositionEncoding.None, " +
                $"or lower MaxSequenceLength to {learnedMax} or less.", (Exception?)null);
    }

    /// <summary>The output shape: the input columns plus the task's output columns; checks the input columns first.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        SchemaChecks.Check(inputSchema, ResolveColumns(), withLabel: true);
        var columns = inputSchema.ToDictionary(c => c.Name);
        foreach (var c in OutputColumns(inputSchema)) columns[c.Name] = c;
        return new SchemaShape(columns.Values);
    }

    private protected static SchemaShape KindAnnotations(params SchemaShape.Column[] extra)
        => new(extra.Concat(new[]
        {
            MLNetBridge.Column(AnnotationNames.ScoreColumnKind, VectorKind.Scalar, TextDataViewType.Instance, false),
            MLNetBridge.Column(AnnotationNames.ScoreValueKind, VectorKind.Scalar, TextDataViewType.Instance, false),
        }));

    /// <summary>The per-layer mechanisms from <see cref="LinearAttentionOptions.HybridPlan"/> or <see cref="LinearAttentionOptions.LayerPlan"/>.</summary>
    internal static IReadOnlyList<LayerMixer>? ResolveLayerPlan(LinearAttentionOptions o)
    {
        if (string.IsNullOrWhiteSpace(o.HybridPlan)) return o.LayerPlan;
        if (o.LayerPlan is not null)
            throw new ArgumentException($"Both HybridPlan ('{o.HybridPlan}') and LayerPlan are set; set one of them (HybridPlan for a text layout such as \"3:1\", LayerPlan for an explicit list).");
        Attention.Hybrid.HybridPlan plan;
        try { plan = Attention.Hybrid.HybridPlan.Parse(o.HybridPlan); }
        catch (FormatException e) { throw new ArgumentException($"Option HybridPlan: {e.Message}", e); }
        if (plan.IsNone) return null;
        return plan.Resolve(o.NumberOfLayers, o.Attention, o.AttentionOptions).Select(m => new LayerMixer(m.Name, m.Options)).ToList();
    }
}
