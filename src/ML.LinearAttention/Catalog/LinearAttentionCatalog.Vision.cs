using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Vision;

namespace Microsoft.ML.LinearAttention;

public sealed partial class LinearAttentionCatalog
{
    /// <summary>Image classification on an image column (MLImage or encoded bytes) with a key label.</summary>
    /// <param name="labelColumnName">Key&lt;UInt32&gt; label (MapValueToKey first).</param>
    /// <param name="imageColumnName">MLImage column (LoadImages / LoadRawImageBytes) or encoded image bytes.</param>
    /// <param name="scoreColumnName">Output class probabilities.</param>
    /// <param name="predictedLabelColumnName">Output predicted class (key).</param>
    /// <param name="attention">Registry name of the attention mechanism of the blocks (e.g. "mala", "rala", "softmax").</param>
    /// <param name="imageSize">Width and height every image is resized to (square).</param>
    /// <param name="batchSize">Images per batch.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="validationSet">Optional validation data (early stopping, best weights restored).</param>
    /// <param name="options">Every other setting; the parameters above override its fields.</param>
    public ImageClassificationEstimator ImageClassification(string labelColumnName = "Label", string imageColumnName = "Image", string scoreColumnName = "Score",
        string predictedLabelColumnName = "PredictedLabel", string? attention = null, int? imageSize = null, int? batchSize = null, int? maxEpochs = null,
        IDataView? validationSet = null, ImageClassificationOptions? options = null)
    {
        var o = (options ?? new ImageClassificationOptions()).ShallowCopy();
        o.LabelColumnName = labelColumnName;
        o.ImageColumnName = imageColumnName;
        o.ScoreColumnName = scoreColumnName;
        o.PredictedLabelColumnName = predictedLabelColumnName;
        o.Attention = attention ?? o.Attention;
        if (imageSize is { } size) { o.ImageWidth = size; o.ImageHeight = size; }
        o.BatchSize = batchSize ?? o.BatchSize;
        o.MaxEpochs = maxEpochs ?? o.MaxEpochs;
        o.ValidationSet = validationSet ?? o.ValidationSet;
        return new ImageClassificationEstimator(_env, o);
    }

    /// <summary>Image classification configured entirely by <paramref name="options"/>.</summary>
    public ImageClassificationEstimator ImageClassification(ImageClassificationOptions options)
        => new(_env, (options ?? throw new ArgumentNullException(nameof(options))).ShallowCopy());
}

/// <summary><c>mlContext.MulticlassClassification.Trainers.LinearAttentionImageClassification(...)</c> (C# 14 extension members).</summary>
public static class LinearAttentionVisionCatalogExtensions
{
    extension(MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog)
    {
        /// <summary>Same as <c>mlContext.Transforms.LinearAttention.ImageClassification(options)</c>.</summary>
        public ImageClassificationEstimator LinearAttentionImageClassification(ImageClassificationOptions options)
            => new LinearAttentionCatalog(MLNetBridge.GetEnvironment(catalog)).ImageClassification(options);

        /// <summary>Same as <c>mlContext.Transforms.LinearAttention.ImageClassification(...)</c>.</summary>
        public ImageClassificationEstimator LinearAttentionImageClassification(string labelColumnName = "Label", string imageColumnName = "Image",
            string scoreColumnName = "Score", string predictedLabelColumnName = "PredictedLabel", int? maxEpochs = null, IDataView? validationSet = null,
            ImageClassificationOptions? options = null)
            => new LinearAttentionCatalog(MLNetBridge.GetEnvironment(catalog)).ImageClassification(labelColumnName, imageColumnName, scoreColumnName,
                predictedLabelColumnName, maxEpochs: maxEpochs, validationSet: validationSet, options: options);
    }
}
