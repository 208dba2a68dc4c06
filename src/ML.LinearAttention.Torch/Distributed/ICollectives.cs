using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Distributed;

/// <summary>
/// Collective operations over a group of ranks (one per GPU, or one per thread on the CPU). Every rank of the group
/// must call the same operations in the same order with tensors of the same shape and dtype; a rank that skips one
/// leaves the others waiting. Tensors must be contiguous and live on the device of the implementation
/// (<see cref="NcclCollectives"/>: the rank's CUDA device; <see cref="ThreadCollectives"/>: the CPU).
/// </summary>
public interface ICollectives : IDisposable
{
    /// <summary>This rank, 0 … <see cref="WorldSize"/> − 1.</summary>
    int Rank { get; }

    /// <summary>Number of ranks in the group.</summary>
    int WorldSize { get; }

    /// <summary>The device the tensors of this rank live on.</summary>
    Device Device { get; }

    /// <summary>Replaces <paramref name="tensor"/> by the element-wise sum over all ranks (the same result on every rank).</summary>
    void AllReduceSum(Tensor tensor);

    /// <summary>Every rank's <paramref name="tensor"/>, stacked in rank order: shape [WorldSize, …shape of tensor].</summary>
    Tensor AllGather(Tensor tensor);

    /// <summary>Overwrites <paramref name="tensor"/> on every rank with rank <paramref name="root"/>'s values.</summary>
    void Broadcast(Tensor tensor, int root = 0);

    /// <summary>Returns when every rank has reached it (and, on a GPU, when the queued work has finished).</summary>
    void Barrier();
}

/// <summary>Argument checks shared by the implementations.</summary>
internal static class CollectiveChecks
{
    public static void RankAndWorld(int rank, int worldSize)
    {
        if (worldSize < 1) throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, "The world size (number of ranks) must be at least 1.");
        if (rank < 0 || rank >= worldSize)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"The rank must lie in 0 … {worldSize - 1} for a world of {worldSize} rank(s).");
    }

    public static void Tensor(Tensor tensor, Device device, string what)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!tensor.is_contiguous()) throw new ArgumentException($"{what} needs a contiguous tensor; call .contiguous() first.", nameof(tensor));
        if (tensor.device.type != device.type)
            throw new ArgumentException($"{what}: the tensor is on {tensor.device} but this group's collectives work on {device}; move it with .to(device).", nameof(tensor));
    }

    public static void Root(int root, int worldSize)
    {
        if (root < 0 || root >= worldSize) throw new ArgumentOutOfRangeException(nameof(root), root, $"The broadcast root must lie in 0 … {worldSize - 1}.");
    }
}
