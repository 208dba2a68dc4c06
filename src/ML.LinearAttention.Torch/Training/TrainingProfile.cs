using System.Diagnostics;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// Where the training loop's time goes, phase by phase: waiting for the next collated batch (reading, tokenizing and
/// collating, when the producer threads fall behind), forward (model and loss), backward, and the optimizer step
/// (gradient clipping, AdamW, zeroing the gradients). Off unless <see cref="Start"/> is called; `bench cpu-training
/// --profile` prints it.
/// <para>The times are host wall-clock times. On the CPU every operation runs when it is called, so they are the real
/// cost of each phase; on CUDA the kernels run asynchronously and a phase's time is mostly the time to queue its work.</para>
/// </summary>
public sealed class TrainingProfile
{
    private static TrainingProfile? _current;
    private long _waitTicks, _forwardTicks, _backwardTicks, _optimizerTicks, _batches, _steps;

    private TrainingProfile() { }

    /// <summary>Starts collecting the phases of every training run in this process until <see cref="Stop"/>.</summary>
    public static TrainingProfile Start()
    {
        var profile = new TrainingProfile();
        Interlocked.Exchange(ref _current, profile);
        return profile;
    }

    /// <summary>Stops collecting (the returned profile keeps its totals).</summary>
    public static void Stop() => Interlocked.Exchange(ref _current, null);

    internal static TrainingProfile? Current => Volatile.Read(ref _current);

    /// <summary>Time the training thread waited for the next collated batch.</summary>
    public TimeSpan WaitingForBatches => Ticks(Interlocked.Read(ref _waitTicks));
    /// <summary>Forward passes and losses.</summary>
    public TimeSpan Forward => Ticks(Interlocked.Read(ref _forwardTicks));
    /// <summary>Backward passes (with mixed precision, moving the gradients into the fp32 master weights).</summary>
    public TimeSpan Backward => Ticks(Interlocked.Read(ref _backwardTicks));
    /// <summary>Optimizer steps: gradient clipping, AdamW, zeroing the gradients.</summary>
    public TimeSpan Optimizer => Ticks(Interlocked.Read(ref _optimizerTicks));
    /// <summary>Batches trained.</summary>
    public long Batches => Interlocked.Read(ref _batches);
    /// <summary>Optimizer steps taken.</summary>
    public long Steps => Interlocked.Read(ref _steps);

    /// <summary>Clears the totals (e.g. after warm-up steps).</summary>
    public void Reset()
    {
        Interlocked.Exchange(ref _waitTicks, 0); Interlocked.Exchange(ref _forwardTicks, 0); Interlocked.Exchange(ref _backwardTicks, 0);
        Interlocked.Exchange(ref _optimizerTicks, 0); Interlocked.Exchange(ref _batches, 0); Interlocked.Exchange(ref _steps, 0);
    }

    internal void AddWait(long ticks) => Interlocked.Add(ref _waitTicks, ticks);
    internal void AddForward(long ticks) => Interlocked.Add(ref _forwardTicks, ticks);
    internal void AddBackward(long ticks) { Interlocked.Add(ref _backwardTicks, ticks); Interlocked.Increment(ref _batches); }
    internal void AddOptimizer(long ticks) { Interlocked.Add(ref _optimizerTicks, ticks); Interlocked.Increment(ref _steps); }

    private static TimeSpan Ticks(long stopwatchTicks) => TimeSpan.FromSeconds((double)stopwatchTicks / Stopwatch.Frequency);
}
