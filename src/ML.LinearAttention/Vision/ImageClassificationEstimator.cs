using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.Runtime;
using TorchSharp;
using static Microsoft.ML.SchemaShape.Column;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Vision;

/// <summary>
/// Trains an image classifier inside an ML.NET pipeline: a patch encoder from scratch, or a pretrained ResNet18 stem,
/// followed by linear/hybrid attention blocks over the token grid.
/// <para>Input: an image column (MLImage from LoadImages / LoadRawImageBytes, or encoded bytes) and a key&lt;UInt32&gt;
/// label. Output: <c>Score</c> (class probabilities) and <c>PredictedLabel</c> (key with the label's values).
/// Normalization needed: no (images are resized and normalised inside). Exportable to ONNX: no. Runs on the CPU or,
/// with MLContext.GpuDeviceId, on CUDA, with the text estimators' training loop, progress, cancellation and
/// persistence.</para>
/// </summary>
public sealed class ImageClassificationEstimator : IEstimator<ImageClassificationTransformer>
{
    private const string TaskName = "ImageClassification";
    private readonly IHostEnvironment _env;
    private readonly ImageClassificationOptions _options;

    internal ImageClassificationEstimator(IHostEnvironment env, ImageClassificationOptions options)
    {
        _env = env ?? throw new ArgumentNullException(nameof(env));
        _options = options ?? throw new ArgumentNullException(nameof(options));
    }

    private InputColumns Columns() => new()
    {
        ImageColumn = _options.ImageColumnName,
        Image = new ImageGeometry(_options.ImageWidth, _options.ImageHeight, _options.ResizeMode),
        LabelColumn = _options.LabelColumnName,
        LabelKind = LabelKind.Key,
    };

    /// <summary>Trains a new model on <paramref name="input"/>.</summary>
    public ImageClassificationTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var o = _options;
        var columns = Columns();
        SchemaChecks.Check(input.Schema, columns, withLabel: true);
        if (o.ValidationSet is not null) SchemaChecks.Check(o.ValidationSet.Schema, columns, withLabel: true);
        int classes = (int)((KeyDataViewType)input.Schema[o.LabelColumnName].Type).Count;
        if (classes < 2)
            throw new ArgumentOutOfRangeException(nameof(input), $"The label column '{o.LabelColumnName}' has {classes} class(es); classification needs at least 2.");
        var token = o.CancellationToken;
        token.ThrowIfCancellationRequested();

        var log = new EnvLog(_env, TaskName);
        var device = LinearAttentionTransformer.ResolveDevice(_env, o.CpuThreads);
        int seed = o.Seed ?? MLNetBridge.Seed(_env) ?? 1;
        ImportedStem? stem = o.Backbone == VisionBackbone.PretrainedStem ? ImportStem(o) : null;
        var stages = o.ResolveStages();
        var config = new VisionConfig
        {
            ImageWidth = o.ImageWidth, ImageHeight = o.ImageHeight, Mean = o.Mean, Std = o.Std,
            Augment = o.Augment, MinCropScale = o.MinCropScale, HorizontalFlip = o.HorizontalFlip,
            Backbone = o.Backbone, PatchSize = o.PatchSize, ConvStem = o.ConvStem,
            Stem = stem?.Spec, StemBgr = stem?.Bgr ?? false, StemMeanHeight = stem?.MeanHeight ?? 0, StemMeanWidth = stem?.MeanWidth ?? 0,
            FreezeStem = o.FreezeStem, Stages = stages, Mixer = o.Attention,
            MixerOptionsJson = o.AttentionOptions is null ? null : MixerRegistry.SerializeOptions(o.AttentionOptions),
            Layers = EncoderConfig.Plan(o.ResolveLayerPlan(stages.Sum(s => s.Depth))),
            FfnMultiplier = o.FeedForwardMultiplier, Dropout = o.Dropout, Position = o.Position, Outputs = classes,
            Head = o.Head, MomentProbing = o.MomentProbing,
        };
        config.Validate();
        var stats = DataStatistics.Compute(input, columns, token);
        if (stats.Rows == 0)
            throw new InvalidOperationException($"The training data has no row with a label in column '{o.LabelColumnName}' (missing keys are skipped).");

        torch.random.manual_seed(seed);
        var model = new VisionModel(config);
        try
        {
            if (stem is not null) model.LoadStem(stem);
            if (o.InitialWeightsFile is not null) LinearAttentionTransformer.LoadWeightsInto(model, o.InitialWeightsFile);
            model.to(device);
            var spec = new CollateSpec(LabelKind.Key, 0, 0, 0, null);
            var grids = config.Grids();
            long trainable = model.parameters().Where(p => p.requires_grad).Sum(p => p.numel());
            log.Info($"{TaskName}: {config.ImageWidth}×{config.ImageHeight} images ({o.ResizeMode}), " +
                     (stem is null ? $"patch encoder (patch {config.PatchSize}{(config.ConvStem ? ", conv stem" : "")})" : $"pretrained stem {stem.Spec.Source} ({(config.FreezeStem ? "frozen" : "fine-tuned")})") +
                     $", token grids {string.Join(" → ", grids.Select(g => $"{g.Height}×{g.Width}"))}, {config.NumLayers} × {(config.Layers is { Count: > 0 } ? "hybrid plan" : config.Mixer)} blocks, " +
                     $"{model.parameters().Sum(p => p.numel()):N0} parameters ({trainable:N0} trainable), {classes} classes.");

            IEnumerable<Example> Rows(IDataView data) => new ExampleReader(columns, null, 1).Read(data, token);
            var report = ModelTrainer.Train(model, spec, () => Rows(input), stats.Rows,
                o.ValidationSet is null ? null : () => Rows(o.ValidationSet),
                o.ToTrainingSettings(seed), device, log, () => MLNetBridge.IsCanceled(_env));
            var transformer = new ImageClassificationTransformer(_env, model, columns, spec, o.InferenceBatchSize, device, o.ScoreColumnName,
                o.PredictedLabelColumnName, classes, LabelKeyValues.From(input.Schema[o.LabelColumnName]))
            { TrainingReport = report };
            log.Info($"{TaskName}: trained {report.Steps} steps in {report.Epochs} epoch(s), {report.Elapsed:hh\\:mm\\:ss}; final training loss {report.FinalTrainLoss:F4}.");
            return transformer;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private static ImportedStem ImportStem(ImageClassificationOptions o)
    {
        var (modelPath, prepPath) = PretrainedImageModels.LocateResNet18(o.PretrainedModelPath);
        return OnnxStemImporter.Import(File.ReadAllBytes(modelPath), File.ReadAllBytes(prepPath), o.PretrainedStemLevel, Path.GetFileName(modelPath));
    }

    /// <summary>The output shape: the input columns plus Score and PredictedLabel; checks the input columns first.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        SchemaChecks.Check(inputSchema, Columns(), withLabel: true);
        var columns = inputSchema.ToDictionary(c => c.Name);
        var label = inputSchema.First(c => c.Name == _options.LabelColumnName);
        var keyValues = label.Annotations.FirstOrDefault(a => a.Name == AnnotationNames.KeyValues);
        bool hasNames = keyValues.Name is not null && keyValues.Kind == VectorKind.Vector;
        columns[_options.ScoreColumnName] = MLNetBridge.Column(_options.ScoreColumnName, VectorKind.Vector, NumberDataViewType.Single, false,
            hasNames ? Kinds(MLNetBridge.Column(AnnotationNames.SlotNames, VectorKind.Vector, TextDataViewType.Instance, false)) : Kinds());
        columns[_options.PredictedLabelColumnName] = MLNetBridge.Column(_options.PredictedLabelColumnName, VectorKind.Scalar, NumberDataViewType.UInt32, true,
            hasNames ? Kinds(keyValues) : Kinds());
        return new SchemaShape(columns.Values);
    }

    private static SchemaShape Kinds(params SchemaShape.Column[] extra)
        => new(extra.Concat(new[]
        {
            MLNetBridge.Column(AnnotationNames.ScoreColumnKind, VectorKind.Scalar, TextDataViewType.Instance, false),
            MLNetBridge.Column(AnnotationNames.ScoreValueKind, VectorKind.Scalar, TextDataViewType.Instance, false),
        }));
}
