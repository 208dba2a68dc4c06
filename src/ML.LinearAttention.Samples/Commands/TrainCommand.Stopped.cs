using System.Text.RegularExpressions;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Samples.Reporting;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>
/// Training stopped by Ctrl+C (or another cancellation) after the current batch. The message is one line saying where
/// it stopped and what was kept; the samples program prints it and exits with 130.
/// </summary>
public sealed class TrainingStoppedException(string message, Exception inner) : OperationCanceledException(message, inner);

public static partial class TrainCommand
{
    /// <summary>
    /// What an interrupted run kept. A model is never written from an unfinished run (its weights would be neither the
    /// best nor the last epoch's); with checkpoints on, the newest checkpoint holds the weights, the optimizer state and
    /// the best weights so far, and the same command resumes from it.
    /// </summary>
    private static TrainingStoppedException Stopped(TrainingMonitor monitor, LinearAttentionOptions options, OperationCanceledException cause)
    {
        var where = StoppedAt(monitor);
        string kept;
        if (options.CheckpointDirectory is null)
            kept = "nothing was kept (give --checkpoint-dir DIR to make an interrupted run resumable)";
        else
        {
            var dir = Path.GetFullPath(options.CheckpointDirectory);
            long? newest = NewestCheckpointStep(dir);
            kept = newest is { } step
                ? $"kept the checkpoint of step {step:N0} in {dir} (weights, optimizer state, best weights so far): run the same command again to resume from it"
                : $"no checkpoint had been written yet (the first comes at step {options.CheckpointEverySteps:N0} or at the end of epoch 1), so nothing was kept";
        }
        return new TrainingStoppedException($"Stopped {where}: no model was written; {kept}.", cause);
    }

    /// <summary>Where an interrupted run stopped, for its one-line message.</summary>
    internal static string StoppedAt(TrainingMonitor monitor)
        => monitor.Last is { } p ? $"at step {p.Step:N0}/{p.TotalSteps:N0} (epoch {p.Epoch})" : "before the first training step";

    /// <summary>The step of the newest checkpoint file (named checkpoint-STEP-e|s.lacheckpoint by the trainer), if any.</summary>
    internal static long? NewestCheckpointStep(string directory)
    {
        if (!Directory.Exists(directory)) return null;
        return Directory.EnumerateFiles(directory, "checkpoint-*.lacheckpoint")
            .Select(f => Regex.Match(Path.GetFileName(f), @"^checkpoint-(\d+)-[es]\.lacheckpoint$"))
            .Where(m => m.Success).Select(m => (long?)long.Parse(m.Groups[1].Value)).Max();
    }
}
