using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Persistence;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LinearAttention;

/// <summary>
/// <c>mlContext.Transforms.LinearAttention</c>: the text and sequence estimators of ML.LinearAttention, each with a
/// flat-parameter overload and an options overload, as ML.NET's own catalogs have.
/// </summary>
public sealed partial class LinearAttentionCatalog
{
    private readonly IHostEnvironment _env;

    internal LinearAttentionCatalog(IHostEnvironment env)
    {
        _env = env;
        LinearAttentionModel.Register(env.ComponentCatalog); // every estimator comes from here, so Model.Load works in the same MLContext
    }

    /// <summary>Text classification on one or more text columns (+ optional numeric side features).</summary>
    /// <param name="labelColumnName">Key&lt;UInt32&gt; label (MapValueToKey first).</param>
    /// <param name="textColumnNames">Text columns, joined with separator tokens and segment ids; null = { "Text" }.</param>
    /// <param name="featureColumnName">Optional Single / vector&lt;Single&gt; side features fused into the head.</param>
    /// <param name="scoreColumnName">Output class probabilities.</param>
    /// <param name="predictedLabelColumnName">Output predicted class (key).</param>
    /// <param name="attention">Registry name of the attention mechanism.</param>
    /// <param name="maxSequenceLength">Longest input in tokens: up to <see cref="LinearAttentionOptions.MaxSupportedSequenceLength"/>
    /// (1,048,576) with rotary or no positions, <see cref="LinearAttentionOptions.MaxLearnedPositionsSequenceLength"/> (131,072) with learned ones.</param>
    /// <param name="batchSize">Rows per batch.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="validationSet">Optional validation data (early stopping, best weights restored).</param>
    /// <param name="options">Every other setting; the parameters above override its fields.</param>
    public TextClassificationEstimator TextClassification(string labelColumnName = "Label", string[]? textColumnNames = null, string? featureColumnName = null,
        string scoreColumnName = "Score", string predictedLabelColumnName = "PredictedLabel", string? attention = null, int? maxSequenceLength = null,
        int? batchSize = null, int? maxEpochs = null, IDataView? validationSet = null, TextClassificationOptions? options = null)
    {
        var o = Clone(options ?? new TextClassificationOptions());
        o.LabelColumnName = labelColumnName;
        o.TextColumnNames = textColumnNames ?? o.TextColumnNames;
        o.FeatureColumnName = featureColumnName ?? o.FeatureColumnName;
        o.ScoreColumnName = scoreColumnName;
        o.PredictedLabelColumnName = predictedLabelColumnName;
        o.Attention = attention ?? o.Attention;
        o.MaxSequenceLength = maxSequenceLength ?? o.MaxSequenceLength;
        o.BatchSize = batchSize ?? o.BatchSize;
        o.MaxEpochs = maxEpochs ?? o.MaxEpochs;
        o.ValidationSet = validationSet ?? o.ValidationSet;
        return new TextClassificationEstimator(_env, o);
    }

    /// <summary>Text classification configured entirely by <paramref name="options"/>.</summary>
    public TextClassificationEstimator TextClassification(TextClassificationOptions options)
        => new(_env, Clone(options ?? throw new ArgumentNullException(nameof(options))));

    /// <summary>Regression on text columns, or on a numeric sequence column (T × F values per row).</summary>
    /// <param name="labelColumnName">Single label.</param>
    /// <param name="textColumnNames">Text columns; null = { "Text" } unless <paramref name="sequenceColumnName"/> is given.</param>
    /// <param name="sequenceColumnName">vector&lt;Single&gt; of T × <paramref name="sequenceFeatureCount"/> values (row-major) instead of text.</param>
    /// <param name="sequenceFeatureCount">Features per step F.</param>
    /// <param name="featureColumnName">Optional side features fused into the head.</param>
    /// <param name="scoreColumnName">Output prediction.</param>
    /// <param name="attention">Registry name of the attention mechanism.</param>
    /// <param name="maxSequenceLength">Longest input in tokens or steps.</param>
    /// <param name="batchSize">Rows per batch.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="validationSet">Optional validation data.</param>
    /// <param name="options">Every other setting; the parameters above override its fields.</param>
    public SequenceRegressionEstimator SequenceRegression(string labelColumnName = "Label", string[]? textColumnNames = null, string? sequenceColumnName = null,
        int? sequenceFeatureCount = null, string? featureColumnName = null, string scoreColumnName = "Score", string? attention = null, int? maxSequenceLength = null,
        int? batchSize = null, int? maxEpochs = null, IDataView? validationSet = null, SequenceRegressionOptions? options = null)
    {
        var o = Clone(options ?? new SequenceRegressionOptions());
        o.LabelColumnName = labelColumnName;
        o.TextColumnNames = textColumnNames ?? o.TextColumnNames;
        o.SequenceColumnName = sequenceColumnName ?? o.SequenceColumnName;
        o.SequenceFeatureCount = sequenceFeatureCount ?? o.SequenceFeatureCount;
        o.FeatureColumnName = featureColumnName ?? o.FeatureColumnName;
        o.ScoreColumnName = scoreColumnName;
        o.Attention = attention ?? o.Attention;
        o.MaxSequenceLength = maxSequenceLength ?? o.MaxSequenceLength;
        o.BatchSize = batchSize ?? o.BatchSize;
        o.MaxEpochs = maxEpochs ?? o.MaxEpochs;
        o.ValidationSet = validationSet ?? o.ValidationSet;
        return new SequenceRegressionEstimator(_env, o);
    }

    /// <summary>Sequence regression configured entirely by <paramref name="options"/>.</summary>
    public SequenceRegressionEstimator SequenceRegression(SequenceRegressionOptions options)
        => new(_env, Clone(options ?? throw new ArgumentNullException(nameof(options))));

    // The estimator keeps its own copy, so changing the caller's options after creating it changes nothing.
    private static T Clone<T>(T options) where T : LinearAttentionOptions => (T)options.ShallowCopy();
}

/// <summary>
/// Entry points on ML.NET's catalogs (C# 14 extension members):
/// <c>mlContext.Transforms.LinearAttention.TextClassification(...)</c>,
/// <c>mlContext.MulticlassClassification.Trainers.LinearAttentionTextClassification(...)</c> and
/// <c>mlContext.Regression.Trainers.LinearAttentionSequenceRegression(...)</c>.
/// </summary>
public static class LinearAttentionCatalogExtensions
{
    extension(TransformsCatalog catalog)
    {
        /// <summary>The ML.LinearAttention estimators.</summary>
        public LinearAttentionCatalog LinearAttention => new(MLNetBridge.GetEnvironment(catalog));
    }

    extension(MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog)
    {
        /// <summary>Same as <c>mlContext.Transforms.LinearAttention.TextClassification(options)</c>.</summary>
        public TextClassificationEstimator LinearAttentionTextClassification(TextClassificationOptions options)
            => new LinearAttentionCatalog(MLNetBridge.GetEnvironment(catalog)).TextClassification(options);

        /// <summary>Same as <c>mlContext.Transforms.LinearAttention.TextClassification(...)</c>.</summary>
        public TextClassificationEstimator LinearAttentionTextClassification(string labelColumnName = "Label", string[]? textColumnNames = null,
            string? featureColumnName = null, string scoreColumnName = "Score", string predictedLabelColumnName = "PredictedLabel", int? maxEpochs = null,
            IDataView? validationSet = null, TextClassificationOptions? options = null)
            => new LinearAttentionCatalog(MLNetBridge.GetEnvironment(catalog)).TextClassification(labelColumnName, textColumnNames, featureColumnName,
                scoreColumnName, predictedLabelColumnName, maxEpochs: maxEpochs, validationSet: validationSet, options: options);
    }

    extension(RegressionCatalog.RegressionTrainers catalog)
    {
        /// <summary>Same as <c>mlContext.Transforms.LinearAttention.SequenceRegression(options)</c>.</summary>
        public SequenceRegressionEstimator LinearAttentionSequenceRegression(SequenceRegressionOptions options)
            => new LinearAttentionCatalog(MLNetBridge.GetEnvironment(catalog)).SequenceRegression(options);

        /// <summary>Same as <c>mlContext.Transforms.LinearAttention.SequenceRegression(...)</c>.</summary>
        public SequenceRegressionEstimator LinearAttentionSequenceRegression(string labelColumnName = "Label", string[]? textColumnNames = null,
            string? sequenceColumnName = null, int? sequenceFeatureCount = null, string? featureColumnName = null, string scoreColumnName = "Score",
            int? maxEpochs = null, IDataView? validationSet = null, SequenceRegressionOptions? options = null)
            => new LinearAttentionCatalog(MLNetBridge.GetEnvironment(catalog)).SequenceRegression(labelColumnName, textColumnNames, sequenceColumnName,
                sequenceFeatureCount, featureColumnName, scoreColumnName, maxEpochs: maxEpochs, validationSet: validationSet, options: options);
    }
}
