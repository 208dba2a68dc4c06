using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.Runtime;
using TorchSharp;
using static Microsoft.ML.SchemaShape.Column;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Estimators;

/// <summary>
/// Trains a linear-attention text classifier from scratch inside an ML.NET pipeline.
/// <para>Input: one or more text columns, an optional side-feature column, a key&lt;UInt32&gt; label.
/// Output: <c>Score</c> (vector of class probabilities) and <c>PredictedLabel</c> (key with the label's values).
/// Normalization needed: no. Exportable to ONNX: no. Runs on the CPU or, with MLContext.GpuDeviceId, on CUDA.</para>
/// </summary>
public sealed class TextClassificationEstimator : LinearAttentionEstimator<TextClassificationTransformer>
{
    private readonly TextClassificationOptions _options;

    internal TextClassificationEstimator(IHostEnvironment env, TextClassificationOptions options) : base(env, options)
        => _options = options;

    private protected override string TaskName => "TextClassification";

    private protected override InputColumns ResolveColumns() => new()
    {
        TextColumns = _options.TextColumnNames is { Length: > 0 } t ? t : new[] { "Text" },
        SideFeaturesColumn = _options.FeatureColumnName,
        LabelColumn = _options.LabelColumnName,
        LabelKind = LabelKind.Key,
    };

    private protected override int OutputCount(DataViewSchema schema)
    {
        var count = (int)((KeyDataViewType)schema[_options.LabelColumnName].Type).Count;
        if (count < 2)
            throw new ArgumentOutOfRangeException($"The label column '{_options.LabelColumnName}' has {count} class(es); classification needs at least 2. " +
                "The training data holds a single label value: check the label column, and the filter or split that produced this data.", (Exception?)null);
        return count;
    }

    private protected override IEnumerable<SchemaShape.Column> OutputColumns(SchemaShape input)
    {
        var label = input.First(c => c.Name == _options.LabelColumnName);
        var keyValues = label.Annotations.FirstOrDefault(a => a.Name == AnnotationNames.KeyValues);
        bool hasNames = keyValues.Name is not null && keyValues.Kind == VectorKind.Vector;
        yield return MLNetBridge.Column(_options.ScoreColumnName, VectorKind.Vector, NumberDataViewType.Single, false,
            hasNames ? KindAnnotations(MLNetBridge.Column(AnnotationNames.SlotNames, VectorKind.Vector, TextDataViewType.Instance, false)) : KindAnnotations());
        yield return MLNetBridge.Column(_options.PredictedLabelColumnName, VectorKind.Scalar, NumberDataViewType.UInt32, true,
            hasNames ? KindAnnotations(keyValues) : KindAnnotations());
    }

    private protected override TextClassificationTransformer CreateTransformer(SequenceModel model, TextTokenizer? tokenizer, InputColumns columns,
        CollateSpec spec, torch.Device device, DataViewSchema trainSchema)
        => new(Env, model, tokenizer, columns, _options.MaxSequenceLength, spec, _options.InferenceBatchSize, device, _options.ScoreColumnName,
            _options.PredictedLabelColumnName, model.Config.Outputs, LabelKeyValues.From(trainSchema[_options.LabelColumnName]));
}
