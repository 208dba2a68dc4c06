using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.Runtime;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Estimators;

/// <summary>
/// Fitted text classifier. Outputs <c>Score</c> (vector of class probabilities with SlotNames = class names) and
/// <c>PredictedLabel</c> (key carrying the label's KeyValues), so MulticlassClassification.Evaluate and
/// MapKeyToValue work unchanged.
/// </summary>
public sealed class TextClassificationTransformer : LinearAttentionTransformer
{
    private readonly LabelKeyValues? _labels;

    internal TextClassificationTransformer(IHostEnvironment env, SequenceModel model, TextTokenizer? tokenizer, InputColumns columns, int maxSequenceLength,
        CollateSpec spec, int inferenceBatchSize, Device device, string scoreColumnName, string predictedLabelColumnName, int classCount, LabelKeyValues? labels)
        : base(env, model, tokenizer, columns, maxSequenceLength, spec, inferenceBatchSize, device, scoreColumnName)
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

    private protected override byte TaskCode => 1;

    /// <summary>Temperature that calibrates the probabilities (fit on validation rows; 1 for models saved before it existed).</summary>
    public double Temperature => Model is SequenceModel m ? SmallDataDefaults.TemperatureOf(m.Config) : 1.0;

    private protected override Tensor Finish(Tensor output)
    {
        double t = Temperature;
        return nn.functional.softmax(t == 1.0 ? output : output / t, -1);
    }

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
        AddKind(score, AnnotationNames.ScoreColumnKind, AnnotationNames.MulticlassClassification);
        AddKind(score, AnnotationNames.ScoreValueKind, AnnotationNames.Score);
        builder.AddColumn(ScoreColumnName, new VectorDataViewType(NumberDataViewType.Single, ClassCount), score.ToAnnotations());

        var predicted = new DataViewSchema.Annotations.Builder();
        _labels?.AddKeyValues(predicted);
        AddKind(predicted, AnnotationNames.ScoreColumnKind, AnnotationNames.MulticlassClassification);
        AddKind(predicted, AnnotationNames.ScoreValueKind, AnnotationNames.PredictedLabel);
        builder.AddColumn(PredictedLabelColumnName, new KeyDataViewType(typeof(uint), ClassCount), predicted.ToAnnotations());
    }

    internal static void AddKind(DataViewSchema.Annotations.Builder b, string name, string value)
    {
        ValueGetter<ReadOnlyMemory<char>> g = (ref ReadOnlyMemory<char> dst) => dst = value.AsMemory();
        b.Add(name, TextDataViewType.Instance, g);
    }

    internal override ValueGetter<TValue> OutputGetter<TValue>(int outputIndex, Func<float[]> current)
        => ClassificationOutputs.Getter<TValue>(outputIndex, current, ScoreColumnName, PredictedLabelColumnName);

    // *** Binary format (task block) ***: string predicted-label column, int class count, label KeyValues block
    private protected override void WriteTask(BinaryWriter w)
    {
        w.Write(PredictedLabelColumnName);
        w.Write(ClassCount);
        LabelKeyValues.Write(w, _labels);
    }

    internal static TextClassificationTransformer Read(BinaryReader r, IHostEnvironment env, SequenceModel model, TextTokenizer? tokenizer, InputColumns columns,
        int maxLength, CollateSpec spec, int inferenceBatch, Device device, string score)
    {
        string predicted = r.ReadString();
        int classes = r.ReadInt32();
        var labels = LabelKeyValues.Read(r);
        return new TextClassificationTransformer(env, model, tokenizer, columns, maxLength, spec, inferenceBatch, device, score, predicted, classes, labels);
    }
}
