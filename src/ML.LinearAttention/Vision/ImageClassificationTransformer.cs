using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.Runtime;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Vision;

/// <summary>
/// Fitted image classifier. Outputs <c>Score</c> (vector of class probabilities, SlotNames = class names) and
/// <c>PredictedLabel</c> (key carrying the label's KeyValues), exactly as the text classifier, so
/// MulticlassClassification.Evaluate and MapKeyToValue work unchanged. Transform is lazy and batched; PredictionEngine,
/// <c>mlContext.Model.Save/Load</c>, SaveWeights/LoadWeights and Dispose behave as for the text estimators.
/// </summary>
public sealed class ImageClassificationTransformer : LinearAttentionTransformer
{
    private readonly LabelKeyValues? _labels;

    internal ImageClassificationTransformer(IHostEnvironment env, VisionModel model, InputColumns columns, CollateSpec spec, int inferenceBatchSize,
        Device device, string scoreColumnName, string predictedLabelColumnName, int classCount, LabelKeyValues? labels)
        : base(env, model, tokenizer: null, columns, maxSequenceLength: 1, spec, inferenceBatchSize, device, scoreColumnName)
    {
        PredictedLabelColumnName = predictedLabelColumnName;
        ClassCount = classCount;
        _labels = labels;
    }

    /// <summary>Name of the predicted-label output column.</summary>
    public string PredictedLabelColumnName { get; }

    /// <summary>Number of classes.</summary>
    public int ClassCount { get; }

    /// <summary>Class names in key order (key 1 first), or null when the label had no KeyValues.</summary>
    public IReadOnlyList<string>? ClassNames => _labels?.Names().Select(n => n.ToString()).ToArray();

    /// <summary>Sizes, backbone and mechanisms of the network.</summary>
    public VisionConfig VisionConfiguration => ((VisionModel)Model).Config;

    /// <summary>Name of the image input column.</summary>
    public string ImageColumnName => Columns.ImageColumn!;

    private protected override byte TaskCode => 3;

    private protected override Tensor Finish(Tensor output) => nn.functional.softmax(output, -1);

    private protected override void AddOutputColumns(DataViewSchema.Builder builder)
    {
        var score = new DataViewSchema.Annotations.Builder();
        if (_labels is not null)
        {
            var names = _labels.Names();
            ValueGetter<VBuffer<ReadOnlyMemory<char>>> slotNames = (ref VBuffer<ReadOnlyMemory<char>> dst) =>
                new VBuffer<ReadOnlyMemory<char>>(names.Length, (ReadOnlyMemory<char>[])names.Clone()).CopyTo(ref dst);
            score.Add(AnnotationNames.SlotNames, new VectorDataViewType(TextDataViewType.Instance, names.Length), slotNames);
        }
        TextClassificationTransformer.AddKind(score, AnnotationNames.ScoreColumnKind, AnnotationNames.MulticlassClassification);
        TextClassificationTransformer.AddKind(score, AnnotationNames.ScoreValueKind, AnnotationNames.Score);
        builder.AddColumn(ScoreColumnName, new VectorDataViewType(NumberDataViewType.Single, ClassCount), score.ToAnnotations());

        var predicted = new DataViewSchema.Annotations.Builder();
        _labels?.AddKeyValues(predicted);
        TextClassificationTransformer.AddKind(predicted, AnnotationNames.ScoreColumnKind, AnnotationNames.MulticlassClassification);
        TextClassificationTransformer.AddKind(predicted, AnnotationNames.ScoreValueKind, AnnotationNames.PredictedLabel);
        builder.AddColumn(PredictedLabelColumnName, new KeyDataViewType(typeof(uint), ClassCount), predicted.ToAnnotations());
    }

    internal override ValueGetter<TValue> OutputGetter<TValue>(int outputIndex, Func<float[]> current)
        => ClassificationOutputs.Getter<TValue>(outputIndex, current, ScoreColumnName, PredictedLabelColumnName);

    // *** Binary format (task block) ***: string predicted-label column, int class count, label KeyValues block,
    // string image column, int width, int height, int resize mode
    private protected override void WriteTask(BinaryWriter w)
    {
        w.Write(PredictedLabelColumnName);
        w.Write(ClassCount);
        LabelKeyValues.Write(w, _labels);
        var g = Columns.Image!;
        w.Write(Columns.ImageColumn!);
        w.Write(g.Width);
        w.Write(g.Height);
        w.Write((int)g.Resize);
    }

    internal static ImageClassificationTransformer Read(BinaryReader r, IHostEnvironment env, VisionModel model, InputColumns columns, CollateSpec spec,
        int inferenceBatch, Device device, string score)
    {
        string predicted = r.ReadString();
        int classes = r.ReadInt32();
        var labels = LabelKeyValues.Read(r);
        string image = r.ReadString();
        var geometry = new ImageGeometry(r.ReadInt32(), r.ReadInt32(), (ImageResizeMode)r.ReadInt32());
        return new ImageClassificationTransformer(env, model, columns with { ImageColumn = image, Image = geometry }, spec, inferenceBatch, device, score,
            predicted, classes, labels);
    }
}
