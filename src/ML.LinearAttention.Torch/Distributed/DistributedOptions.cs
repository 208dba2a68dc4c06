namespace Microsoft.ML.LinearAttention.Distributed;

/// <summary>How the ranks of a distributed run split the work.</summary>
public enum DistributedMode
{
    /// <summary>Every rank holds the whole model and trains on its own share of the batches; gradients are summed.</summary>
    DataParallel,
}

/// <summary>
/// Multi-GPU (or multi-thread) training for <see cref="Training.ModelTrainer"/>, set through
/// <see cref="Training.TrainingSettings.Distributed"/>. Every rank runs the same training call with the same settings,
/// data and seed; the ranks differ only in <see cref="ICollectives.Rank"/>.
/// </summary>
public sealed record DistributedOptions
{
    /// <summary>This rank's collectives (<see cref="NcclCollectives"/> on GPUs, <see cref="ThreadCollectives"/> on the CPU).</summary>
    public required ICollectives Collectives { get; init; }

    public DistributedMode Mode { get; init; } = DistributedMode.DataParallel;

    /// <summary>Size of one flattened gradient bucket in MiB (one all-reduce each; default 25 as in PyTorch DDP).</summary>
    public int BucketMegabytes { get; init; } = 25;

    /// <summary>All-reduce the gradients in bf16 (half the traffic, rounding of the sum) instead of fp32.</summary>
    public bool ReduceInBFloat16 { get; init; }

    internal void Validate()
    {
        if (Collectives is null) throw new ArgumentException("DistributedOptions.Collectives is required (NcclCollectives on GPUs, ThreadCollectives on the CPU).");
        CollectiveChecks.RankAndWorld(Collectives.Rank, Collectives.WorldSize);
        if (BucketMegabytes < 1) throw new ArgumentOutOfRangeException(nameof(BucketMegabytes), BucketMegabytes, "BucketMegabytes must be at least 1.");
        if (!Enum.IsDefined(Mode)) throw new ArgumentOutOfRangeException(nameof(Mode), Mode, "Unknown distributed mode.");
    }
}
