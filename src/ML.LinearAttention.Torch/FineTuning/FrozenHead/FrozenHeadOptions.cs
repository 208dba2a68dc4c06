namespace Microsoft.ML.LinearAttention.FineTuning;

/// <summary>
/// Options shared by the methods that train only a head on a frozen encoder (<c>linear_probe</c>,
/// <c>moment_probing</c>): the head's own training recipe. Because the encoder does not change, its final token states
/// are computed once (eval mode, no dropout) and cached, and the head then trains many epochs on the cache
/// (<see cref="FrozenHeadTrainer"/>), as Moment Probing's paper trains its heads: AdamW, a learning rate larger than
/// full fine-tuning's, warm-up then cosine decay, weight decay, label smoothing. The estimator's MaxEpochs and
/// LearningRate do not apply to such a head; these options do.
/// </summary>
public abstract record FrozenHeadOptions : FineTuningOptions
{
    /// <summary>Compute the encoder once and train the head on cached features (default). False streams every epoch
    /// through the encoder with the estimator's own schedule, as before.</summary>
    public bool CacheFeatures { get; init; } = true;

    /// <summary>Epochs over the cached features; null = enough for about <see cref="TargetSteps"/> optimizer steps,
    /// at least 5 and at most 100.</summary>
    public int? Epochs { get; init; }

    /// <summary>Optimizer steps that a null <see cref="Epochs"/> aims at.</summary>
    public int TargetSteps { get; init; } = 1500;

    /// <summary>Peak learning rate of the head (AdamW).</summary>
    public double LearningRate { get; init; } = 2e-3;

    /// <summary>Decoupled weight decay on the head's matrices (none on biases and norms).</summary>
    public double WeightDecay { get; init; } = 0.05;

    /// <summary>Share of the steps spent warming up linearly before the cosine decay to zero.</summary>
    public double WarmupRatio { get; init; } = 0.1;

    /// <summary>Label smoothing of the cross-entropy (classification only).</summary>
    public double LabelSmoothing { get; init; } = 0.1;

    /// <summary>For a head that contains a linear probe (<see cref="IProbeFirstHead"/>: Moment Probing), train that probe
    /// first, then the whole head from it, keeping the best validation epoch of both stages, so that the head does not
    /// fall below its own probe on small data (default). False trains the whole head from the start, as the reference.</summary>
    public bool ProbeFirst { get; init; } = true;

    /// <summary>Most memory the cached features may take (training and validation rows together); beyond it the
    /// head trains by streaming through the encoder instead, and the log says so.</summary>
    public int CacheMegabytes { get; init; } = 2048;

    /// <summary>Epochs for <paramref name="stepsPerEpoch"/> optimizer steps per epoch.</summary>
    public int EpochsFor(long stepsPerEpoch)
        => Epochs ?? (int)Math.Clamp((TargetSteps + Math.Max(1, stepsPerEpoch) - 1) / Math.Max(1, stepsPerEpoch), 5, 100);

    /// <summary>Throws a clear error for a setting out of range.</summary>
    public void ValidateRecipe()
    {
        if (Epochs is <= 0) throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, "Epochs must be at least 1 (or null for the default).");
        if (TargetSteps <= 0) throw new ArgumentOutOfRangeException(nameof(TargetSteps), TargetSteps, "TargetSteps must be at least 1.");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "The head's LearningRate must be a positive number (default 2e-3).");
        if (!(WeightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "WeightDecay must be 0 or more.");
        if (!(WarmupRatio is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(WarmupRatio), WarmupRatio, "WarmupRatio must lie in [0, 1).");
        if (!(LabelSmoothing is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(LabelSmoothing), LabelSmoothing, "LabelSmoothing must lie in [0, 1).");
        if (CacheMegabytes <= 0) throw new ArgumentOutOfRangeException(nameof(CacheMegabytes), CacheMegabytes, "CacheMegabytes must be positive; set CacheFeatures = false to stream instead.");
    }
}
