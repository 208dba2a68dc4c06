using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.Runtime;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Estimators;

/// <summary>Fitted sequence regressor: outputs <c>Score</c> (Single, in the label's units), so Regression.Evaluate works.</summary>
public sealed class SequenceRegressionTransformer : LinearAttentionTransformer
{
    internal SequenceRegressionTransformer(IHostEnvironment env, SequenceModel model, TextTokenizer? tokenizer, InputColumns columns, int maxSequenceLength,
        CollateSpec spec, int inferenceBatchSize, Device device, string scoreColumnName)
        : base(env, model, tokenizer, columns, maxSequenceLength, spec, inferenceBatchSize, device, scoreColumnName) { }

    private protected override byte TaskCode => 2;

    private protected override Tensor Finish(Tensor output) => Model.DestandardizeTarget(output);

    private protected override void AddOutputColumns(DataViewSchema.Builder builder)
    {
        var a = new DataViewSchema.Annotations.Builder();
        TextClassificationTransformer.AddKind(a, AnnotationNames.ScoreColumnKind, AnnotationNames.Regression);
        TextClassificationTransformer.AddKind(a, AnnotationNames.ScoreValueKind, AnnotationNames.Score);
        builder.AddColumn(ScoreColumnName, NumberDataViewType.Single, a.ToAnnotations());
    }

    internal override ValueGetter<TValue> OutputGetter<TValue>(int outputIndex, Func<float[]> current)
    {
        if (typeof(TValue) != typeof(float))
            throw new InvalidOperationException($"Column '{ScoreColumnName}' is Single, not {typeof(TValue).Name}.");
        ValueGetter<float> g = (ref float dst) => dst = current()[0];
        return (ValueGetter<TValue>)(Delegate)g;
    }

    private protected override void WriteTask(BinaryWriter w) { }
}
