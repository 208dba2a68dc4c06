using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// Host → device movement of collated batches without stalling the device: the producer thread collates on the CPU
/// and copies into pinned (page-locked) memory; the training thread then issues asynchronous copies
/// (<c>non_blocking</c>), which queue behind the running kernels instead of synchronising the stream as copies from
/// ordinary memory do.
/// </summary>
public static class BatchTransfer
{
    /// <summary>
    /// Process-wide switch for the pinned-memory path of CUDA training (on by default). Turn it off only for a libtorch
    /// build without pinned host memory; batches are then copied synchronously from ordinary memory.
    /// </summary>
    public static bool UsePinnedMemory { get; set; } = true;

    /// <summary>The same batch in pinned host memory (needs a CUDA build of libtorch); disposes <paramref name="host"/>.</summary>
    public static ModelBatch Pinned(ModelBatch host)
    {
        ArgumentNullException.ThrowIfNull(host);
        try
        {
            return new ModelBatch
            {
                Tokens = host.Tokens?.pin_memory(), Segments = host.Segments?.pin_memory(), Values = host.Values?.pin_memory(),
                Mask = host.Mask.pin_memory(), Side = host.Side?.pin_memory(), Labels = host.Labels?.pin_memory(), Pixels = host.Pixels?.pin_memory(),
                RealTokens = host.RealTokens, HasPadding = host.HasPadding,
            };
        }
        finally { host.Dispose(); }
    }

    /// <summary>
    /// The batch on <paramref name="device"/>; with <paramref name="nonBlocking"/> the copies from pinned memory are
    /// asynchronous (the host tensors may be disposed right away: libtorch keeps pinned blocks until their copies end).
    /// Returns <paramref name="batch"/> itself when it is already there.
    /// </summary>
    public static ModelBatch ToDevice(ModelBatch batch, Device device, bool nonBlocking)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.Mask.device_type == device.type && (device.type == DeviceType.CPU || batch.Mask.device_index == device.index)) return batch;
        Tensor? Move(Tensor? t) => t?.to(device, non_blocking: nonBlocking);
        return new ModelBatch
        {
            Tokens = Move(batch.Tokens), Segments = Move(batch.Segments), Values = Move(batch.Values),
            Mask = Move(batch.Mask)!, Side = Move(batch.Side), Labels = Move(batch.Labels), Pixels = Move(batch.Pixels),
            RealTokens = batch.RealTokens, HasPadding = batch.HasPadding,
        };
    }
}
