using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.SearchSpace;
using LayerLayout = Microsoft.ML.LinearAttention.Attention.Hybrid.HybridPlan;

namespace Microsoft.ML.LinearAttention.Vision;

/// <summary>
/// Options of <see cref="ImageClassificationEstimator"/>: columns, preprocessing and augmentation, backbone, encoder
/// and training. Public fields, as ML.NET options are; <c>[Range]</c>/<c>[Choice]</c> make them an AutoML search space.
/// The training fields mean what they mean for the text estimators (docs/text-estimators.md).
/// </summary>
public sealed class ImageClassificationOptions
{
    // ---- columns ----
    /// <summary>Key&lt;UInt32&gt; label column (MapValueToKey first).</summary>
    public string LabelColumnName = "Label";
    /// <summary>Image column: an MLImage (LoadImages, LoadRawImageBytes + decoding) or encoded image bytes (byte[] / VBuffer&lt;byte&gt;).</summary>
    public string ImageColumnName = "Image";
    /// <summary>Output class probabilities (vector of Single, SlotNames = class names).</summary>
    public string ScoreColumnName = "Score";
    /// <summary>Output predicted class (key with the label's values).</summary>
    public string PredictedLabelColumnName = "PredictedLabel";

    // ---- preprocessing and augmentation ----
    /// <summary>Width every image is resized to (any size; a multiple of PatchSize for the patch encoder).</summary>
    [Range(32, 1024, 224, true)]
    public int ImageWidth = 224;
    /// <summary>Height every image is resized to.</summary>
    [Range(32, 1024, 224, true)]
    public int ImageHeight = 224;
    /// <summary>How images of another size or aspect ratio are resized (centre crop by default).</summary>
    public ImageResizeMode ResizeMode = ImageResizeMode.CenterCrop;
    /// <summary>Random resized crops and flips during training (on the model's device; never at inference).</summary>
    public bool Augment = true;
    /// <summary>Smallest crop area of the random resized crop, as a fraction of the image.</summary>
    [Range(0.08, 1.0, 0.35)]
    public double MinCropScale = 0.35;
    /// <summary>Random horizontal flips during training (switch off for digits, text, or anything with a handedness).</summary>
    public bool HorizontalFlip = true;
    /// <summary>Per-channel RGB mean in [0, 1] for the patch encoder (ImageNet's by default; the pretrained stem brings its own).</summary>
    public float[] Mean = { 0.485f, 0.456f, 0.406f };
    /// <summary>Per-channel RGB standard deviation in [0, 1] for the patch encoder.</summary>
    public float[] Std = { 0.229f, 0.224f, 0.225f };

    // ---- backbone ----
    /// <summary>Patch encoder trained from scratch, or a pretrained convolutional stem (ResNet18) followed by attention blocks.</summary>
    public VisionBackbone Backbone = VisionBackbone.PatchEncoder;
    /// <summary>Patch side in pixels (patch encoder): 224 px / 16 → 196 tokens; 1024 px / 16 → 4,096 tokens.</summary>
    [Choice(4, 8, 16, 32)]
    public int PatchSize = 16;
    /// <summary>Stack of 3×3 stride-2 convolutions instead of one patchifying convolution (steadier training on small data).</summary>
    public bool ConvStem;
    /// <summary>The pretrained stem's ONNX file; null = ResNet18.onnx of the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18,
    /// which copies it under DnnImageModels/ResNet18Onnx/ in the application's output folder.</summary>
    public string? PretrainedModelPath;
    /// <summary>Feature level of the pretrained stem the tokens come from: ResNet18 1..4 = stride 4/8/16/32 with 64/128/256/512 channels.</summary>
    [Range(1, 4, 4)]
    public int PretrainedStemLevel = 4;
    /// <summary>Keep the pretrained stem's weights fixed (true) or fine-tune them with the rest (false).</summary>
    public bool FreezeStem = true;

    // ---- encoder ----
    /// <summary>Registry name of the mixer of every block: bidirectional 2D-aware linear attention such as "mala", "rala",
    /// "inline", "agent", "focused", "efficientvit", "nalaformer", the vision mechanisms "hilo", "l2vit", "van", or
    /// "linear"/"softmax" (see MixerRegistry.All).</summary>
    [Choice("mala", "rala", "focused", "agent", "hilo", "l2vit", "van", "softmax")]
    public string Attention = "mala";
    /// <summary>Options of <see cref="Attention"/> (null = the mechanism's defaults).</summary>
    public MixerOptions? AttentionOptions;
    /// <summary>One mechanism per block over all stages (a hybrid layout); overrides <see cref="Attention"/>.</summary>
    public IReadOnlyList<LayerMixer>? LayerPlan;
    /// <summary>Hybrid layout as text, as for the text estimators: "softmax@-1" (last block softmax, linear before it:
    /// linear early, softmax late), "3:1", …; blocks it does not name use <see cref="Attention"/>. Not with LayerPlan.</summary>
    [Choice("none", "softmax@-1", "3:1")]
    public string? HybridPlan;
    /// <summary>Hidden size (single-stage encoder; ignored when <see cref="Stages"/> is set).</summary>
    [Range(16, 768, 128, true)]
    public int ModelDimension = 128;
    /// <summary>Blocks (single-stage encoder). 0 with a pretrained stem = a linear probe on the stem's pooled features.</summary>
    [Range(0, 24, 4)]
    public int NumberOfLayers = 4;
    /// <summary>Attention heads (single-stage encoder; must divide ModelDimension).</summary>
    [Choice(1, 2, 4, 8)]
    public int NumberOfHeads = 4;
    /// <summary>Hierarchical encoder: one entry per stage (each later stage halves the grid), e.g. {2×64, 2×128, 6×256, 2×512}.</summary>
    public IReadOnlyList<VisionStage>? Stages;
    /// <summary>FFN width as a multiple of the hidden size.</summary>
    [Range(1.0, 8.0, 4.0)]
    public double FeedForwardMultiplier = 4;
    /// <summary>Dropout on residual branches and before the classifier.</summary>
    [Range(0.0, 0.5, 0.0)]
    public double Dropout;
    /// <summary>Position term: a depthwise convolution before every block (default), a learned table, or none.</summary>
    public VisionPosition Position = VisionPosition.Convolution;
    /// <summary>Classifier: mean-pooled linear layer (default) or Moment Probing (first- and second-order features of the tokens).</summary>
    public VisionHead Head = VisionHead.Linear;
    /// <summary>Sizes of the Moment Probing head (null = reference defaults: 512 hidden, 4 heads).</summary>
    public MomentProbingOptions? MomentProbing;
    /// <summary>Optional weights (from SaveWeights of a transformer with the same configuration) to start training from.</summary>
    public string? InitialWeightsFile;

    // ---- training (as the text estimators) ----
    /// <summary>Images per batch.</summary>
    [Range(4, 256, 32, true)]
    public int BatchSize = 32;
    /// <summary>Passes over the training data.</summary>
    [Range(1, 300, 10)]
    public int MaxEpochs = 10;
    /// <summary>Stop after this many optimizer steps (0 = no limit).</summary>
    public long MaxSteps;
    /// <summary>Peak learning rate of AdamW.</summary>
    [Range(1e-5, 1e-2, 1e-3, true)]
    public double LearningRate = 1e-3;
    /// <summary>Decoupled weight decay (not on norms, biases or position tables).</summary>
    [Range(0.0, 0.3, 0.05)]
    public double WeightDecay = 0.05;
    /// <summary>Fraction of steps of linear warm-up.</summary>
    [Range(0.0, 0.3, 0.1)]
    public double WarmupRatio = 0.1;
    /// <summary>Decay after warm-up.</summary>
    public LearningRateDecay LearningRateDecay = LearningRateDecay.Cosine;
    /// <summary>Final learning rate as a fraction of the peak.</summary>
    public double FinalLearningRateRatio = 0.01;
    /// <summary>Gradient-norm clip (0 = off).</summary>
    public double MaxGradientNorm = 1.0;
    /// <summary>Batches per optimizer step.</summary>
    public int GradientAccumulationSteps = 1;
    /// <summary>Decoded images held for seeded shuffling (each takes width × height × 3 bytes).</summary>
    public int ShuffleBufferRows = 1024;
    /// <summary>Seed of weights, augmentation, dropout and shuffling; null = the MLContext seed, or 1.</summary>
    public int? Seed;
    /// <summary>Optional validation data (with the key label already mapped): accuracy each epoch, early stopping, best weights restored.</summary>
    public IDataView? ValidationSet;
    /// <summary>Epochs without validation improvement before stopping (0 = never).</summary>
    public int EarlyStoppingPatience = 3;
    /// <summary>Log progress every this many optimizer steps (0 = per epoch only).</summary>
    public int LogEverySteps = 50;
    /// <summary>Optional callback with the same progress as the log (throughput in images per second).</summary>
    public IProgress<TrainingProgress>? Progress;
    /// <summary>Cancels Fit within one batch (an OperationCanceledException).</summary>
    public CancellationToken CancellationToken;
    /// <summary>Auto = bf16 mixed precision (fp32 master weights) on CUDA, fp32 on the CPU.</summary>
    public TrainingPrecision Precision = TrainingPrecision.Auto;
    /// <summary>CPU threads for libtorch (null = leave the process setting).</summary>
    public int? CpuThreads;
    /// <summary>Images per forward pass when scoring with Transform.</summary>
    public int InferenceBatchSize = 32;

    internal ImageClassificationOptions ShallowCopy() => (ImageClassificationOptions)MemberwiseClone();

    internal TrainingSettings ToTrainingSettings(int seed) => new()
    {
        BatchSize = BatchSize, MaxBatchTokens = long.MaxValue, MaxEpochs = MaxEpochs, MaxSteps = MaxSteps,
        LearningRate = LearningRate, WeightDecay = WeightDecay, WarmupRatio = WarmupRatio, Decay = LearningRateDecay,
        FinalLearningRateRatio = FinalLearningRateRatio, MaxGradientNorm = MaxGradientNorm,
        GradientAccumulationSteps = GradientAccumulationSteps, ShuffleBufferRows = ShuffleBufferRows, Seed = seed,
        EarlyStoppingPatience = EarlyStoppingPatience, LogEverySteps = LogEverySteps, Progress = Progress,
        CancellationToken = CancellationToken, Precision = Precision, ThroughputUnit = "images",
    };

    /// <summary>The stages: <see cref="Stages"/>, or one stage of NumberOfLayers × ModelDimension.</summary>
    internal List<VisionStage> ResolveStages()
        => Stages is { Count: > 0 } s ? s.ToList() : new List<VisionStage> { new(NumberOfLayers, ModelDimension, NumberOfHeads) };

    /// <summary>The per-block mechanisms from <see cref="HybridPlan"/> or <see cref="LayerPlan"/>.</summary>
    internal IReadOnlyList<LayerMixer>? ResolveLayerPlan(int layers)
    {
        if (string.IsNullOrWhiteSpace(HybridPlan)) return LayerPlan;
        if (LayerPlan is not null)
            throw new ArgumentException($"Both HybridPlan ('{HybridPlan}') and LayerPlan are set; set one of them.");
        LayerLayout plan;
        try { plan = LayerLayout.Parse(HybridPlan); }
        catch (FormatException e) { throw new ArgumentException($"Option HybridPlan: {e.Message}", nameof(HybridPlan), e); }
        if (plan.IsNone || layers == 0) return null;
        return plan.Resolve(layers, Attention, AttentionOptions).Select(m => new LayerMixer(m.Name, m.Options)).ToList();
    }
}
