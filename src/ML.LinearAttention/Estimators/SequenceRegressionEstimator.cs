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
/// Trains a linear-attention regressor on text columns or on a numeric sequence (T steps × F features per row, e.g.
/// sensor windows), with optional side features. Output: <c>Score</c> (Single, in the label's units).
/// Normalization needed: no (targets and numeric inputs are standardised internally). Exportable to ONNX: no.
/// </summary>
public sealed class SequenceRegressionEstimator : LinearAttentionEstimator<SequenceRegressionTransformer>
{
    private readonly SequenceRegressionOptions _options;

    internal SequenceRegressionEstimator(IHostEnvironment env, SequenceRegressionOptions options) : base(env, options)
    {
        _options = options;
        if (options.SequenceColumnName is not null && options.TextColumnNames is { Length: > 0 })
            throw new ArgumentException("SequenceRegression reads either text columns or a numeric sequence column, not both; set TextColumnNames or SequenceColumnName.");
        if (options.SequenceFeatureCount <= 0)
            throw new ArgumentOutOfRangeException($"SequenceFeatureCount must be at least 1 (it is {options.SequenceFeatureCount}).", (Exception?)null);
    }

    private protected override string TaskName => "SequenceRegression";

    private protected override InputColumns ResolveColumns() => new()
    {
        TextColumns = _options.SequenceColumnName is not null ? Array.Empty<string>() : _options.TextColumnNames is { Length: > 0 } t ? t : new[] { "Text" },
        SequenceColumn = _options.SequenceColumnName,
        SequenceFeatures = _options.SequenceFeatureCount,
        SideFeaturesColumn = _options.FeatureColumnName,
        LabelColumn = _options.LabelColumnName,
        LabelKind = LabelKind.Float,
    };

    private protected override int OutputCount(DataViewSchema schema) => 1;

    private protected override IEnumerable<SchemaShape.Column> OutputColumns(SchemaShape input)
    {
        yield return MLNetBridge.Column(_options.ScoreColumnName, VectorKind.Scalar, NumberDataViewType.Single, false, KindAnnotations());
    }

    private protected override SequenceRegressionTransformer CreateTransformer(SequenceModel model, TextTokenizer? tokenizer, InputColumns columns,
        CollateSpec spec, torch.Device device, DataViewSchema trainSchema)
        => new(Env, model, tokenizer, columns, _options.MaxSequenceLength, spec, _options.InferenceBatchSize, device, _options.ScoreColumnName);
}
