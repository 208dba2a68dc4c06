using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// Runs an enumeration on its own background thread, up to <c>capacity</c> items ahead of the consumer, so that
/// reading, tokenizing and collating rows happen while the device computes. Order is kept exactly (the consumer sees
/// the same sequence as a plain foreach, so seeded shuffles give the same batches); an exception of the producer is
/// rethrown to the consumer at the position it happened; when the consumer stops early (break, exception, dispose),
/// the producer is stopped and joined, and items it had made but nobody took are handed to <c>discard</c>.
/// </summary>
public static class Prefetch
{
    /// <summary>The items of <paramref name="source"/>, produced on a background thread.</summary>
    /// <param name="source">Enumerated on the background thread only (once).</param>
    /// <param name="capacity">Items made ahead of the consumer (at least 1).</param>
    /// <param name="discard">Called for items made but never delivered (e.g. to dispose host tensors).</param>
    /// <param name="name">Thread name (shows in debuggers and dumps).</param>
    public static IEnumerable<T> Ahead<T>(IEnumerable<T> source, int capacity, Action<T>? discard = null, string name = "LinearAttention prefetch")
    {
        ArgumentNullException.ThrowIfNull(source);
        if (capacity < 1) throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "Prefetch capacity must be at least 1.");
        return Iterate(source, capacity, discard, name);
    }

    private static IEnumerable<T> Iterate<T>(IEnumerable<T> source, int capacity, Action<T>? discard, string name)
    {
        using var queue = new BlockingCollection<T>(capacity);
        using var stop = new CancellationTokenSource();
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                foreach (var item in source)
                {
                    try { queue.Add(item, stop.Token); }
                    catch (OperationCanceledException) when (stop.IsCancellationRequested)
                    {
                        discard?.Invoke(item);
                        return;
                    }
                }
            }
            catch (Exception e) { failure = ExceptionDispatchInfo.Capture(e); }
            finally { queue.CompleteAdding(); }
        }) { IsBackground = true, Name = name };
        thread.Start();
        try
        {
            foreach (var item in queue.GetConsumingEnumerable()) yield return item;
            thread.Join();
            failure?.Throw();
        }
        finally
        {
            stop.Cancel();
            thread.Join();
            while (queue.TryTake(out var left)) discard?.Invoke(left);
        }
    }
}
