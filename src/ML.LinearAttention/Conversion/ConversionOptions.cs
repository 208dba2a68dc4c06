using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.FineTuning;

namespace Microsoft.ML.LinearAttention.Conversion;

/// <summary>
/// Softmax→linear conversion of a pretrained (or trained) softmax encoder, the Hedgehog / LoLCATs recipe
/// (docs/pretrained-and-conversion.md): the chosen softmax layers are replaced by a linear mechanism that keeps their
/// q/k/v/o weights; stage 1 (attention transfer) trains only the new parameters (feature maps, LoLCATs window factors)
/// to reproduce each frozen softmax layer's output on the user's own unlabelled text (topped up with generated generic
/// text when it is short; steps and batch follow the data unless set; optionally cached); stage 2 is the estimator's
/// ordinary training on the labelled task (its MaxEpochs / MaxSteps / LearningRate) with LoRA (r 8, α 16 on q, k, v, o,
/// plus the head; LoLCATs) unless <see cref="FineTuning"/> says otherwise.
/// Set it as <c>LinearAttentionOptions.Conversion</c>, usually together with <c>PretrainedBackbone</c>.
/// </summary>
public sealed class ConversionOptions
{
    // ---- what is converted ----
    /// <summary>Registry name of the mechanism that replaces softmax (Hedgehog by default; any registry mixer).</summary>
    public string Attention = "hedgehog";
    /// <summary>Options of <see cref="Attention"/> (null = its defaults; Hedgehog: feature dimension = head dimension, untied maps).</summary>
    public MixerOptions? AttentionOptions;
    /// <summary>Layers to convert (0-based; negative counts from the end). Null = every softmax layer.</summary>
    public int[]? Layers;
    /// <summary>
    /// Alternative to <see cref="Layers"/>: a hybrid plan in <c>HybridPlan</c> text form whose base mechanism is
    /// <see cref="Attention"/>; layers the plan leaves at plain softmax keep their pretrained softmax, e.g.
    /// <c>"softmax@-1"</c> (all but the last layer converted), <c>"2:1"</c> (every third layer stays softmax),
    /// <c>"lolcats@0"</c> (layer 0 to LoLCATs, the rest to <see cref="Attention"/>).
    /// </summary>
    public string? HybridPlan;

    // ---- stage 1: attention transfer ----
    /// <summary>Unlabelled text for stage 1, with the estimator's text columns (no label needed). Null = the training data.</summary>
    public IDataView? TransferData;
    /// <summary>
    /// Optimizer steps of stage 1. Null (default) = auto: two passes over the transfer texts, at least 1,000 and at
    /// most 4,000 steps (<see cref="TransferBudget"/>); 0 = skip stage 1 (the new parameters keep their
    /// initialisation). The texts are cycled when they have fewer batches.
    /// </summary>
    public int? TransferSteps;
    /// <summary>Rows per stage-1 batch. Null (default) = auto: about 1,024 tokens a batch, 8 to 64 rows.</summary>
    public int? TransferBatchSize;
    /// <summary>
    /// Fewest distinct texts stage 1 should see (default 4,000). When the user's texts are fewer and the steps would
    /// cycle them more than twice, generated generic English text (<see cref="GenericCorpus"/>: reviews, tickets,
    /// e-mail, news; shipped with the library) fills up to this number. 0 = the user's texts only.
    /// </summary>
    public int MinimumTransferTexts = TransferBudget.DefaultMinimumTexts;
    /// <summary>
    /// Folder of converted backbones (null = no cache, the default). When set, the result of stage 1 is stored there
    /// under a key made of the teacher's weights, the converted layers and mechanism options, the stage-1 settings, the
    /// transfer texts and the seed; a later fit with the same key loads it instead of transferring again. A file that
    /// does not match (foreign, truncated, another key) stops the fit with a message naming it.
    /// <see cref="DefaultCacheDirectory"/> is a per-user folder for it.
    /// </summary>
    public string? CacheDirectory;

    /// <summary>A per-user folder for <see cref="CacheDirectory"/>: LocalApplicationData/ML.LinearAttention/converted-backbones.</summary>
    public static string DefaultCacheDirectory =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "ML.LinearAttention", "converted-backbones");
    /// <summary>AdamW learning rate of stage 1 (LoLCATs: 1e-2, weight decay 0), cosine-decayed to a tenth.</summary>
    public double TransferLearningRate = 1e-2;
    /// <summary>Weight of the output MSE between the linear and the softmax layer (LoLCATs: 1000).</summary>
    public double OutputMseWeight = 1000;
    /// <summary>Weight of the attention-weight cross-entropy (Hedgehog's loss; LoLCATs: 0). Needs a mechanism with
    /// explicit feature maps: "hedgehog".</summary>
    public double AttentionCrossEntropyWeight;

    // ---- stage 2 ----
    /// <summary>
    /// Fine-tuning method of stage 2 (FineTuningRegistry): "lora" by default (LoLCATs: r 8, α 16 on q, k, v, o; train
    /// the head too), "full" for every parameter, or any other method. Null = the estimator's own <c>FineTuning</c> option.
    /// </summary>
    public string? FineTuning = "lora";
    /// <summary>Options of <see cref="FineTuning"/> (null = the method's defaults; LoRA's are LoLCATs').</summary>
    public FineTuningOptions? FineTuningOptions;

    /// <summary>The layers of <paramref name="config"/> these options convert (see <see cref="SoftmaxConversion.Plan"/>).</summary>
    internal IReadOnlyList<ConvertedLayer> PlanFor(Encoder.EncoderConfig config)
    {
        Validate();
        return SoftmaxConversion.Plan(config, Attention, AttentionOptions, Layers, HybridPlan);
    }

    internal void Validate()
    {
        if (FineTuning is not null) FineTuningRegistry.Check(FineTuning, FineTuningOptions);
        else if (FineTuningOptions is not null)
            throw new ArgumentException("ConversionOptions.FineTuningOptions is set but FineTuning is null; name the stage-2 method, or set the estimator's FineTuningOptions instead.");
        MixerRegistry.Get(Attention);
        if (Layers is not null && HybridPlan is not null)
            throw new ArgumentException("ConversionOptions: give either Layers or HybridPlan, not both.");
        if (TransferSteps < 0) throw new ArgumentOutOfRangeException(nameof(TransferSteps), TransferSteps, "TransferSteps must be null (auto), 0 (skip stage 1) or positive.");
        if (TransferBatchSize <= 0) throw new ArgumentOutOfRangeException(nameof(TransferBatchSize), TransferBatchSize, "TransferBatchSize must be null (auto) or positive.");
        if (MinimumTransferTexts < 0)
            throw new ArgumentOutOfRangeException(nameof(MinimumTransferTexts), MinimumTransferTexts, "MinimumTransferTexts must be 0 (the user's texts only) or positive (default 4,000).");
        if (CacheDirectory is not null && string.IsNullOrWhiteSpace(CacheDirectory))
            throw new ArgumentException("ConversionOptions.CacheDirectory is empty; give a folder (e.g. ConversionOptions.DefaultCacheDirectory) or null for no cache.");
        if (CacheDirectory is not null && File.Exists(CacheDirectory))
            throw new ArgumentException($"ConversionOptions.CacheDirectory '{CacheDirectory}' is a file, not a folder; give a folder for the converted-backbone cache, or null for no cache.");
        if (!(TransferLearningRate > 0)) throw new ArgumentOutOfRangeException(nameof(TransferLearningRate), TransferLearningRate, "TransferLearningRate must be positive (LoLCATs: 1e-2).");
        if (OutputMseWeight < 0 || AttentionCrossEntropyWeight < 0 || OutputMseWeight + AttentionCrossEntropyWeight <= 0)
            throw new ArgumentOutOfRangeException(nameof(OutputMseWeight), "The stage-1 loss weights must be non-negative and not both zero (LoLCATs: OutputMseWeight 1000, AttentionCrossEntropyWeight 0).");
    }
}
