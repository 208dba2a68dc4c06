using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Distributed;

/// <summary>
/// The pieces of data-parallel training: the same starting weights on every rank, a disjoint share of the batches
/// per rank, and gradients summed over the ranks in flat buckets and divided by the world size, so that every rank
/// applies the identical update: that of one rank accumulating the gradients of all ranks' batches.
/// </summary>
public static class DataParallel
{
    /// <summary>Copies rank <paramref name="root"/>'s parameters and buffers to every rank (before training starts).</summary>
    public static void BroadcastState(nn.Module model, ICollectives collectives, int root = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(collectives);
        if (collectives.WorldSize == 1) return;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var t in model.parameters().Cast<Tensor>().Concat(model.buffers()))
        {
            if (t.device.type != collectives.Device.type)
                throw new ArgumentException($"The model is on {t.device} but the collectives work on {collectives.Device}; move the model to the rank's device first.");
            if (t.is_contiguous()) { collectives.Broadcast(t, root); continue; }
            var copy = t.contiguous();
            collectives.Broadcast(copy, root);
            t.copy_(copy);
        }
    }

    /// <summary>
    /// Sums the gradients of <paramref name="parameters"/> over the ranks and divides by the world size, in flat
    /// buckets of about <paramref name="bucketBytes"/> (fp32, or bf16 when <paramref name="bfloat16"/>). A parameter
    /// without a gradient on this rank counts as zeros (and receives the others' gradient), so the ranks always issue
    /// the same collectives.
    /// </summary>
    public static void AllReduceGradients(IReadOnlyList<Parameter> parameters, ICollectives collectives, long bucketBytes = 25L << 20, bool bfloat16 = false)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(collectives);
        if (collectives.WorldSize == 1) return;
        var dtype = bfloat16 ? ScalarType.BFloat16 : ScalarType.Float32;
        long perElement = bfloat16 ? 2 : 4;
        double scale = 1.0 / collectives.WorldSize;
        var bucket = new List<Parameter>();
        long elements = 0;
        foreach (var p in parameters)
        {
            bucket.Add(p);
            elements += p.numel();
            if (elements * perElement >= bucketBytes) { Reduce(bucket, collectives, dtype, scale); bucket.Clear(); elements = 0; }
        }
        if (bucket.Count > 0) Reduce(bucket, collectives, dtype, scale);
    }

    private static void Reduce(List<Parameter> bucket, ICollectives collectives, ScalarType dtype, double scale)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var flat = cat(bucket.Select(p => (p.grad is { } g ? g : zeros_like(p)).reshape(-1).to(dtype)).ToArray());
        collectives.AllReduceSum(flat);
        flat.mul_(scale);
        long offset = 0;
        foreach (var p in bucket)
        {
            long n = p.numel();
            var slice = flat.narrow(0, offset, n).view(p.shape);
            offset += n;
            if (p.grad is { } g) g.copy_(slice);
            else p.grad = slice.to(p.dtype).clone().DetachFromDisposeScope();
        }
    }

    /// <summary>
    /// This rank's share of a batch stream: of every group of <paramref name="worldSize"/> consecutive batches, the
    /// one at position <paramref name="rank"/>. A last, incomplete group is dropped on every rank (each rank must run
    /// the same number of steps, or the collectives would wait forever); <paramref name="drop"/> disposes what is skipped.
    /// </summary>
    public static IEnumerable<T> Shard<T>(IEnumerable<T> batches, int rank, int worldSize, Action<T>? drop = null)
    {
        CollectiveChecks.RankAndWorld(rank, worldSize);
        if (worldSize == 1) { foreach (var b in batches) yield return b; yield break; }
        var group = new List<T>(worldSize);
        foreach (var b in batches)
        {
            group.Add(b);
            if (group.Count < worldSize) continue;
            for (int r = 0; r < worldSize; r++) if (r != rank) drop?.Invoke(group[r]);
            var mine = group[rank];
            group.Clear();
            yield return mine;
        }
        foreach (var b in group) drop?.Invoke(b);
    }
}
