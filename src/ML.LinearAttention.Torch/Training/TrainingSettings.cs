namespace Microsoft.ML.LinearAttention.Training;

/// <summary>Shape of the learning-rate decay after warm-up.</summary>
public enum LearningRateDecay
{
    /// <summary>Half-cosine from the peak to FinalLearningRateRatio × peak.</summary>
    Cosine,
    /// <summary>Straight line from the peak to FinalLearningRateRatio × peak.</summary>
    Linear,
    /// <summary>Stays at the peak.</summary>
    Constant,
}

/// <summary>What a training run reports to an <see cref="IProgress{T}"/> callback (after every logged step and epoch).</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Step">Optimizer steps done.</param>
/// <param name="TotalSteps">Planned optimizer steps.</param>
/// <param name="Loss">Mean training loss since the last report.</param>
/// <param name="LearningRate">Current learning rate.</param>
/// <param name="TokensPerSecond">Real (unpadded) tokens processed per second by this process (after a resume, the
/// checkpoint's tokens are not counted).</param>
/// <param name="Eta">Estimated time left.</param>
/// <param name="ValidationMetric">Validation accuracy (classification) or RMSE (regression) at the end of an epoch, else null.</param>
public sealed record TrainingProgress(int Epoch, long Step, long TotalSteps, double Loss, double LearningRate, double TokensPerSecond, TimeSpan Eta, double? ValidationMetric)
{
    /// <summary>Optimizer step of the checkpoint this run resumed from; null when it started afresh. A caller that
    /// keeps curves or history should keep the earlier run's points up to this step.</summary>
    public long? ResumedFromStep { get; init; }
    /// <summary>Real tokens (or images) trained on so far, the resumed part included.</summary>
    public long TokensSeen { get; init; }
    /// <summary>Of <see cref="TokensSeen"/>, those trained before the checkpoint this run resumed from.</summary>
    public long TokensBeforeResume { get; init; }
    /// <summary>Time this process has spent training (the clock of <see cref="TokensPerSecond"/>).</summary>
    public TimeSpan TrainingTime { get; init; }
}

/// <summary>Hyper-parameters of one training run (the estimators fill them from their options).</summary>
public sealed record TrainingSettings
{
    public int BatchSize { get; init; } = 32;
    public long MaxBatchTokens { get; init; } = 65536;
    public int MaxEpochs { get; init; } = 3;
    /// <summary>Stop after this many optimizer steps (0 = no limit).</summary>
    public long MaxSteps { get; init; }
    public double LearningRate { get; init; } = 1e-3;
    public double WeightDecay { get; init; } = 0.01;
    public double WarmupRatio { get; init; } = 0.06;
    public LearningRateDecay Decay { get; init; } = LearningRateDecay.Cosine;
    public double FinalLearningRateRatio { get; init; } = 0.1;
    /// <summary>Global gradient-norm clip (0 = off).</summary>
    public double MaxGradientNorm { get; init; } = 1.0;
    public int GradientAccumulationSteps { get; init; } = 1;
    /// <summary>Rows in the shuffling/bucketing buffer.</summary>
    public int ShuffleBufferRows { get; init; } = 4096;
    public int Seed { get; init; } = 1;
    /// <summary>Epochs without validation improvement before stopping (0 = never stop early). Classification is judged
    /// on the validation log-loss (smoother than accuracy on a few hundred rows, and what calibrated probabilities
    /// need), regression on the RMSE.</summary>
    public int EarlyStoppingPatience { get; init; } = 2;
    /// <summary>Label smoothing of the classification loss: the target puts 1 − ε on the true class and spreads ε over
    /// all classes (0 = off). Regression ignores it.</summary>
    public double LabelSmoothing { get; init; }
    /// <summary>After training, fit one temperature on the validation rows so that softmax(logits / T) is calibrated
    /// (classification with validation rows only); see <see cref="ValidationScoring.FitTemperature"/>.</summary>
    public bool CalibrateTemperature { get; init; } = true;
    /// <summary>Score the starting weights on the validation rows before the first epoch, as "epoch 0": an epoch then
    /// replaces them only if it validates better (a head trained first, <see cref="FineTuning.IHeadFirstOptions"/>).</summary>
    public bool ScoreStartingWeights { get; init; }
    /// <summary>Log every this many optimizer steps (0 = epochs only).</summary>
    public int LogEverySteps { get; init; } = 50;
    /// <summary>fp32, or bf16 mixed precision (Auto: on CUDA only).</summary>
    public TrainingPrecision Precision { get; init; } = TrainingPrecision.Auto;
    /// <summary>Recompute each block's activations in the backward pass instead of storing them (less memory, about one
    /// extra forward pass of compute); see <see cref="TrainableModel.CheckpointActivations"/>.</summary>
    public bool ActivationCheckpointing { get; init; }
    public IProgress<TrainingProgress>? Progress { get; init; }
    /// <summary>What <see cref="Example.Length"/> counts, for the throughput in the log ("tokens"; "images" for images).</summary>
    public string ThroughputUnit { get; init; } = "tokens";
    public CancellationToken CancellationToken { get; init; }
    /// <summary>Directory of resumable checkpoints (null = none); see <see cref="TrainingCheckpoints"/>.</summary>
    public string? CheckpointDirectory { get; init; }
    /// <summary>Optimizer steps between checkpoints (0 = only at the end of each epoch).</summary>
    public int CheckpointEverySteps { get; init; } = 500;
    /// <summary>Multi-GPU data-parallel training (null = one device); see <see cref="Microsoft.ML.LinearAttention.Distributed.DistributedOptions"/>.</summary>
    public Distributed.DistributedOptions? Distributed { get; init; }
    /// <summary>Test hook: called with the batch of each forward pass before it runs (fault injection).</summary>
    internal Action<ModelBatch>? FaultInjection { get; init; }

    internal void Validate()
    {
        if (CheckpointEverySteps < 0) throw new ArgumentOutOfRangeException(nameof(CheckpointEverySteps), CheckpointEverySteps, "CheckpointEverySteps must be 0 (end of each epoch only) or positive.");
        if (BatchSize <= 0) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "BatchSize must be positive.");
        if (MaxEpochs <= 0) throw new ArgumentOutOfRangeException(nameof(MaxEpochs), MaxEpochs, "MaxEpochs must be at least 1.");
        if (LearningRate <= 0) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "LearningRate must be positive.");
        if (GradientAccumulationSteps <= 0) throw new ArgumentOutOfRangeException(nameof(GradientAccumulationSteps), GradientAccumulationSteps, "GradientAccumulationSteps must be at least 1.");
        if (WarmupRatio is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(WarmupRatio), WarmupRatio, "WarmupRatio must lie in [0, 1).");
        if (FinalLearningRateRatio is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(FinalLearningRateRatio), FinalLearningRateRatio, "FinalLearningRateRatio must lie in [0, 1].");
        if (MaxGradientNorm < 0) throw new ArgumentOutOfRangeException(nameof(MaxGradientNorm), MaxGradientNorm, "MaxGradientNorm must be 0 (off) or positive.");
        if (EarlyStoppingPatience < 0) throw new ArgumentOutOfRangeException(nameof(EarlyStoppingPatience), EarlyStoppingPatience, "EarlyStoppingPatience must be 0 (never stop early) or a positive number of epochs.");
        if (LabelSmoothing is < 0 or >= 1 || double.IsNaN(LabelSmoothing)) throw new ArgumentOutOfRangeException(nameof(LabelSmoothing), LabelSmoothing, "LabelSmoothing must lie in [0, 1): 0 turns it off, 0.1 is a common value.");
        if (WeightDecay < 0 || double.IsNaN(WeightDecay)) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "WeightDecay must be 0 (off) or positive, e.g. 0.01.");
        if (MaxBatchTokens <= 0) throw new ArgumentOutOfRangeException(nameof(MaxBatchTokens), MaxBatchTokens, "MaxBatchTokens must be positive.");
    }
}

/// <summary>Linear warm-up to the peak, then cosine, linear or constant decay.</summary>
public static class LearningRateSchedule
{
    /// <summary>Learning rate at optimizer step <paramref name="step"/> (0-based) of <paramref name="total"/>.</summary>
    public static double At(long step, long total, long warmup, double peak, LearningRateDecay decay, double finalRatio)
    {
        if (warmup > 0 && step < warmup) return peak * (step + 1) / warmup;
        if (decay == LearningRateDecay.Constant || total <= warmup) return peak;
        double progress = Math.Clamp((double)(step - warmup) / Math.Max(1, total - warmup), 0, 1);
        double factor = decay == LearningRateDecay.Cosine ? 0.5 * (1 + Math.Cos(Math.PI * progress)) : 1 - progress;
        return peak * (finalRatio + (1 - finalRatio) * factor);
    }
}
