using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// Batched scoring of a stream of rows, in input order, with the host work off the scoring thread (as training has it):
/// one background thread reads and tokenizes rows, a second sorts each window of rows by length, cuts it into batches
/// that pad little, collates them and (for CUDA) pins them; the scoring thread copies a batch to the device without
/// blocking and queues its forward pass before it reads back the previous batch's scores. TorchSharp 0.107 has no CUDA
/// events, so that read-back also waits for the batch just queued: the device stays busy through the wait and idles
/// only while the host queues the next batch, where the one-batch-at-a-time path left it idle through tokenization,
/// collation and the copy back. Scores come out in the order the rows went in.
/// </summary>
public static class ScoringPipeline
{
    /// <summary>Scores of every row of <paramref name="rows"/>, in order.</summary>
    /// <param name="rows">Enumerated once, on a background thread.</param>
    /// <param name="spec">How rows are collated.</param>
    /// <param name="batchRows">Rows per forward pass (at most).</param>
    /// <param name="device">Where the forward pass runs.</param>
    /// <param name="score">Forward pass: a batch on <paramref name="device"/> to per-row scores [B, W] (any float type);
    /// called without gradients, inside a dispose scope per batch.</param>
    /// <param name="windowRows">Rows sorted by length together (at least <paramref name="batchRows"/>); 0 = 8 batches.</param>
    public static IEnumerable<float[]> Score(IEnumerable<Example> rows, CollateSpec spec, int batchRows, Device device,
        Func<ModelBatch, Tensor> score, int windowRows = 0)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(score);
        if (batchRows < 1) throw new ArgumentOutOfRangeException(nameof(batchRows), batchRows, "Rows per scoring batch must be at least 1.");
        if (windowRows < 0) throw new ArgumentOutOfRangeException(nameof(windowRows), windowRows, "The bucketing window must be 0 (8 batches) or positive.");
        int window = Math.Max(batchRows, windowRows == 0 ? 8 * batchRows : windowRows);
        bool pin = device.type == DeviceType.CUDA && BatchTransfer.UsePinnedMemory;
        return Run(rows, spec, batchRows, window, device, pin, score);
    }

    /// <summary>One collated batch of a window: where its rows sit in the window, and whether it completes the window.</summary>
    internal sealed record Planned(int[] Positions, int WindowCount, bool LastOfWindow, ModelBatch Host);

    private static IEnumerable<float[]> Run(IEnumerable<Example> rows, CollateSpec spec, int batchRows, int window, Device device,
        bool pin, Func<ModelBatch, Tensor> score)
    {
        var rowsAhead = Prefetch.Ahead(rows, window, name: "LinearAttention scoring rows");
        var planned = Prefetch.Ahead(Plan(rowsAhead, spec, batchRows, window, pin), ModelTrainer.PrefetchBatches,
            p => p.Host.Dispose(), "LinearAttention scoring batches");
        float[][]? results = null;
        (Tensor Scores, Planned Plan)? inFlight = null;
        try
        {
            foreach (var plan in planned)
            {
                Tensor queued;
                using (plan.Host)
                using (no_grad())
                using (var scope = NewDisposeScope())
                {
                    var batch = BatchTransfer.ToDevice(plan.Host, device, nonBlocking: pin);
                    queued = score(batch).to(ScalarType.Float32).MoveToOuterDisposeScope();
                    if (!ReferenceEquals(batch, plan.Host)) batch.Dispose();
                }
                // The next batch is queued; only now wait for the previous one's scores.
                if (inFlight is { } previous)
                {
                    results = ReadBack(previous, results);
                    if (previous.Plan.LastOfWindow) { foreach (var r in results!) yield return r; results = null; }
                }
                inFlight = (queued, plan);
            }
            if (inFlight is { } last)
            {
                inFlight = null;
                results = ReadBack(last, results);
                foreach (var r in results!) yield return r;
            }
        }
        finally
        {
            inFlight?.Scores.Dispose();
            (planned as IDisposable)?.Dispose();
        }
    }

    private static float[][] ReadBack((Tensor Scores, Planned Plan) item, float[][]? results)
    {
        var (scores, plan) = item;
        results ??= new float[plan.WindowCount][];
        using (scores)
        using (var host = scores.cpu().contiguous())
        {
            int width = (int)host.shape[1];
            var flat = host.data<float>().ToArray();
            for (int i = 0; i < plan.Positions.Length; i++) results[plan.Positions[i]] = flat.AsSpan(i * width, width).ToArray();
        }
        return results;
    }

    /// <summary>Windows of rows sorted by length (stable), cut into batches of at most <paramref name="batchRows"/>, collated on the CPU.</summary>
    internal static IEnumerable<Planned> Plan(IEnumerable<Example> rows, CollateSpec spec, int batchRows, int window, bool pin)
    {
        var buffer = new List<Example>(window);
        foreach (var row in rows)
        {
            buffer.Add(row);
            if (buffer.Count < window) continue;
            foreach (var p in Cut(buffer, spec, batchRows, pin)) yield return p;
            buffer = new List<Example>(window);
        }
        if (buffer.Count > 0)
            foreach (var p in Cut(buffer, spec, batchRows, pin)) yield return p;
    }

    private static IEnumerable<Planned> Cut(List<Example> window, CollateSpec spec, int batchRows, bool pin)
    {
        var order = Enumerable.Range(0, window.Count).OrderBy(i => window[i].Length).ToArray(); // OrderBy is stable
        for (int start = 0; start < order.Length; start += batchRows)
        {
            var positions = order.AsSpan(start, Math.Min(batchRows, order.Length - start)).ToArray();
            var host = Batching.Collate(positions.Select(i => window[i]).ToList(), CPU, spec.PadId, spec.NumericFeatures, spec.SideLength, spec.SideFill, null);
            yield return new Planned(positions, window.Count, start + batchRows >= order.Length, pin ? BatchTransfer.Pinned(host) : host);
        }
    }
}
